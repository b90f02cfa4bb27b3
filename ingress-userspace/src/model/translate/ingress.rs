//! Ingress -> L7: virtual hosts with sorted routes, certificates by SNI name, default backend.
//!
//! Ingresses are added oldest first (creation timestamp, then namespace/name), so on a conflict
//! (same host and same path match) the first one keeps the route and the later one gets a
//! `RouteConflict` diagnostic. A backend that cannot be resolved (missing Service, unknown port)
//! turns its route into a 503 answer with a diagnostic; the rest of the Ingress is served.
//!
//! `defaultBackend`: on an Ingress without rules it becomes the controller-wide default backend
//! (oldest wins); on an Ingress with rules it catches what its hosts' paths do not (a `Prefix /`
//! route added only where no Ingress routes `/` itself).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::{
    TranslateConfig,
    annotations::{self, IngressOptions},
    diagnostics::Diagnostics,
    endpoints::EndpointIndex,
    tls::TlsCache,
};
use crate::{
    model::{
        L7Config, ObjectKind, ObjectRef, PathMatch, Route, RouteAction, RouteMatch, RouteOrigin,
        TlsCertificate, Upstream, VirtualHost, WeightedUpstream,
    },
    store::{Key, Objects},
};

/// Conflict precedence: oldest first, then namespace/name.
pub fn precedence(a: &Ingress, b: &Ingress) -> std::cmp::Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn created(ing: &Ingress) -> i64 {
    ing.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.timestamp())
        .unwrap_or(0)
}

/// Checks a path and turns it into a match. `Prefix` paths lose a trailing slash (`/foo/` and
/// `/foo` match the same requests).
pub fn path_match(
    path: Option<&str>,
    path_type: &str,
    use_regex: bool,
) -> Result<PathMatch, String> {
    let path = match path {
        None | Some("") => "/",
        Some(p) => p,
    };
    let absolute = || {
        if path.starts_with('/') {
            Ok(())
        } else {
            Err(format!("path {path:?} must start with '/'"))
        }
    };
    match path_type {
        "Exact" => absolute().map(|_| PathMatch::Exact(path.to_string())),
        "Prefix" => {
            absolute()?;
            let trimmed = path.trim_end_matches('/');
            Ok(PathMatch::Prefix(
                if trimmed.is_empty() { "/" } else { trimmed }.to_string(),
            ))
        }
        "ImplementationSpecific" if use_regex => regex::Regex::new(path)
            .map(|_| PathMatch::Regex(path.to_string()))
            .map_err(|e| format!("path {path:?} is not a valid regular expression: {e}")),
        "ImplementationSpecific" => absolute().map(|_| PathMatch::CharPrefix(path.to_string())),
        other => Err(format!("unknown pathType {other:?}")),
    }
}

/// Most specific first: longer before shorter, then Exact, Prefix, CharPrefix, Regex.
fn specificity(m: &PathMatch) -> (Reverse<usize>, u8) {
    match m {
        PathMatch::Exact(p) => (Reverse(p.len()), 0),
        PathMatch::Prefix(p) => (Reverse(p.len()), 1),
        PathMatch::CharPrefix(p) => (Reverse(p.len()), 2),
        PathMatch::Regex(p) => (Reverse(p.len()), 3),
    }
}

/// Host as the proxy keys it, or why it is not acceptable.
fn normalize_host(host: &str) -> Result<String, String> {
    let h = host.trim().to_ascii_lowercase();
    let name = h.strip_prefix("*.").unwrap_or(&h);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok || h.is_empty() {
        Ok(h)
    } else {
        Err(format!(
            "host {host:?} is not a DNS name or a `*.` wildcard"
        ))
    }
}

#[derive(Default)]
struct HostBuilder {
    routes: Vec<Route>,
    taken: BTreeMap<PathMatch, ObjectRef>,
    tls: bool,
    fallback: Option<Route>,
}

pub struct L7Builder<'a> {
    objects: &'a Objects,
    endpoints: &'a EndpointIndex<'a>,
    tls: &'a mut TlsCache,
    diags: &'a mut Diagnostics,
    hosts: BTreeMap<String, HostBuilder>,
    certificates: BTreeMap<String, Arc<TlsCertificate>>,
    default_certificate: Option<Arc<TlsCertificate>>,
    default_backend: Option<(ObjectRef, Arc<crate::model::Upstream>)>,
    resolved: HashMap<(&'a str, &'a str, i32), Vec<Arc<Upstream>>>,
    /// `--secret-namespaces`: the only namespaces whose Secrets are read.
    secret_namespaces: Option<Vec<String>>,
    /// Services and Secrets the routes depend on (found or not).
    pub refs: super::References,
    /// The controller ConfigMap: route defaults under the annotations, proxy settings.
    pub controller: super::configmap::ControllerConfig,
}

impl<'a> L7Builder<'a> {
    pub fn new(
        objects: &'a Objects,
        endpoints: &'a EndpointIndex<'a>,
        tls: &'a mut TlsCache,
        diags: &'a mut Diagnostics,
        cfg: &TranslateConfig,
    ) -> Self {
        let mut b = L7Builder {
            objects,
            endpoints,
            tls,
            diags,
            hosts: BTreeMap::new(),
            certificates: BTreeMap::new(),
            default_certificate: None,
            default_backend: None,
            resolved: HashMap::new(),
            secret_namespaces: cfg.secret_namespaces.clone(),
            refs: super::References::default(),
            controller: Default::default(),
        };
        if let Some(key) = &cfg.default_tls_secret {
            let oref = ObjectRef::new(ObjectKind::Secret, key.namespace.clone(), key.name.clone());
            b.default_certificate = b.certificate(&oref, &oref);
        }
        b
    }

    /// Looks up and checks a TLS Secret; a problem is reported on `user` (the Ingress).
    fn certificate(&mut self, secret: &ObjectRef, user: &ObjectRef) -> Option<Arc<TlsCertificate>> {
        let key = Key::new(secret.namespace.clone(), secret.name.clone());
        self.refs.secrets.insert(key.clone());
        if let Some(allowed) = &self.secret_namespaces
            && !allowed.contains(&key.namespace)
        {
            // Not watched, so "not found" would mislead: say why it is not read.
            self.diags.error(
                user,
                "TlsSecretNotWatched",
                format!(
                    "TLS secret {key} is outside --secret-namespaces ({}) and is not read; \
                     the default certificate is used",
                    allowed.join(", ")
                ),
            );
            return None;
        }
        let Some(s) = self.objects.secrets.get(&key) else {
            self.diags.error(
                user,
                "TlsSecretNotFound",
                format!("TLS secret {key} does not exist; the default certificate is used"),
            );
            return None;
        };
        match self.tls.get(secret, s) {
            Ok(c) => Some(c),
            Err(e) => {
                self.diags.error(
                    user,
                    "InvalidTlsSecret",
                    format!("TLS secret {key}: {e}; the default certificate is used"),
                );
                None
            }
        }
    }

    pub fn add_ingress(&mut self, ing: &'a Ingress) {
        let ns_ref: &'a str = ing.metadata.namespace.as_deref().unwrap_or_default();
        let ns = ns_ref.to_string();
        let oref = ObjectRef::new(
            ObjectKind::Ingress,
            ns.clone(),
            ing.metadata.name.clone().unwrap_or_default(),
        );
        let mut opts = annotations::parse(ing.metadata.annotations.as_ref(), &oref, self.diags);
        self.controller.apply_defaults(&mut opts.policy);
        let Some(spec) = ing.spec.as_ref() else {
            self.diags
                .warn(&oref, "EmptyIngress", "Ingress has no spec");
            return;
        };

        for tls in spec.tls.iter().flatten() {
            let cert = match &tls.secret_name {
                Some(name) => {
                    let secret = ObjectRef::new(ObjectKind::Secret, ns.clone(), name.clone());
                    self.certificate(&secret, &oref)
                }
                None => None,
            };
            let hosts = tls.hosts.as_deref().unwrap_or_default();
            if hosts.is_empty() {
                if self.default_certificate.is_none() {
                    self.default_certificate = cert;
                }
                continue;
            }
            for host in hosts {
                let host = match normalize_host(host) {
                    Ok(h) if !h.is_empty() => h,
                    Ok(_) => continue,
                    Err(e) => {
                        self.diags
                            .error(&oref, "InvalidHost", format!("spec.tls: {e}"));
                        continue;
                    }
                };
                self.hosts.entry(host.clone()).or_default().tls = true;
                if let Some(cert) = &cert {
                    match self.certificates.get(&host) {
                        Some(have) if have.secret != cert.secret => self.diags.warn(
                            &oref,
                            "TlsHostConflict",
                            format!(
                                "host {host} already has a certificate from secret {}/{}",
                                have.secret.namespace, have.secret.name
                            ),
                        ),
                        Some(_) => {}
                        None => {
                            self.certificates.insert(host, cert.clone());
                        }
                    }
                }
            }
        }

        let created = created(ing);
        let rules = spec.rules.as_deref().unwrap_or_default();
        let fallback_action = spec
            .default_backend
            .as_ref()
            .map(|b| self.action(ns_ref, b, &opts, &oref, "spec.defaultBackend"));
        let fallback = fallback_action.as_ref().map(|action| Route {
            matches: RouteMatch {
                path: PathMatch::Prefix("/".into()),
                headers: vec![],
                method: None,
                query: vec![],
            },
            action: action.clone(),
            policy: opts.policy.clone(),
            origin: RouteOrigin {
                object: oref.clone(),
                rule: None,
                path: None,
                created,
            },
        });

        if rules.is_empty() {
            if let Some(RouteAction::Forward(ups)) = &fallback_action {
                match &self.default_backend {
                    None => self.default_backend = Some((oref.clone(), ups[0].upstream.clone())),
                    Some((winner, _)) => self.diags.warn(
                        &oref,
                        "DefaultBackendConflict",
                        format!("the default backend is already set by {winner}"),
                    ),
                }
            }
            return;
        }

        for (ri, rule) in rules.iter().enumerate() {
            let host = match normalize_host(rule.host.as_deref().unwrap_or_default()) {
                Ok(h) => h,
                Err(e) => {
                    self.diags
                        .error(&oref, "InvalidHost", format!("spec.rules[{ri}]: {e}"));
                    continue;
                }
            };
            if let Some(f) = &fallback {
                let hb = self.hosts.entry(host.clone()).or_default();
                if hb.fallback.is_none() {
                    hb.fallback = Some(f.clone());
                }
            }
            let Some(http) = &rule.http else { continue };
            for (pi, p) in http.paths.iter().enumerate() {
                let path = match path_match(p.path.as_deref(), &p.path_type, opts.use_regex) {
                    Ok(m) => m,
                    Err(e) => {
                        self.diags.error(
                            &oref,
                            "InvalidPath",
                            format!("spec.rules[{ri}].http.paths[{pi}]: {e}"),
                        );
                        continue;
                    }
                };
                let hb = self.hosts.entry(host.clone()).or_default();
                if let Some(winner) = hb.taken.get(&path) {
                    let msg = format!(
                        "host {:?} path {path:?} is already routed by {winner}; this path is ignored",
                        host
                    );
                    self.diags.warn(&oref, "RouteConflict", msg);
                    continue;
                }
                hb.taken.insert(path.clone(), oref.clone());
                let what = format!("spec.rules[{ri}].http.paths[{pi}]");
                let action = self.action(ns_ref, &p.backend, &opts, &oref, &what);
                let route = Route {
                    matches: RouteMatch {
                        path,
                        headers: vec![],
                        method: None,
                        query: vec![],
                    },
                    action,
                    policy: opts.policy.clone(),
                    origin: RouteOrigin {
                        object: oref.clone(),
                        rule: Some(ri),
                        path: Some(pi),
                        created,
                    },
                };
                if let Some(hb) = self.hosts.get_mut(&host) {
                    hb.routes.push(route);
                }
            }
        }
    }

    /// A backend as a route action: forward to its upstream, or 503 with a diagnostic.
    fn action(
        &mut self,
        ns: &'a str,
        backend: &'a IngressBackend,
        opts: &IngressOptions,
        oref: &ObjectRef,
        what: &str,
    ) -> RouteAction {
        match self.upstream(ns, backend, opts) {
            Ok(u) => RouteAction::Forward(vec![WeightedUpstream {
                upstream: u,
                weight: 1,
            }]),
            Err((reason, msg)) => {
                self.diags.error(oref, reason, format!("{what}: {msg}"));
                RouteAction::Respond {
                    status: 503,
                    reason: format!("{reason}: {msg}"),
                }
            }
        }
    }

    fn upstream(
        &mut self,
        ns: &'a str,
        backend: &'a IngressBackend,
        opts: &IngressOptions,
    ) -> Result<Arc<Upstream>, (&'static str, String)> {
        let Some(b) = &backend.service else {
            return Err((
                "UnsupportedBackend",
                "only service backends are supported".into(),
            ));
        };
        let key = Key::new(ns, b.name.clone());
        self.refs.services.insert(key.clone());
        let Some(svc) = self.objects.services.get(&key) else {
            return Err(("ServiceNotFound", format!("service {key} does not exist")));
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return Err((
                "UnsupportedBackend",
                format!("service {key} is of type ExternalName"),
            ));
        }
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let port = match b.port.as_ref() {
            Some(p) if p.number.is_some() => ports.iter().find(|sp| Some(sp.port) == p.number),
            Some(p) if p.name.is_some() => ports.iter().find(|sp| sp.name == p.name),
            _ => {
                return Err(("InvalidBackend", format!("backend for {key} names no port")));
            }
        };
        let Some(port) = port else {
            let want = b
                .port
                .as_ref()
                .and_then(|p| p.name.clone().or_else(|| p.number.map(|n| n.to_string())));
            return Err((
                "ServicePortNotFound",
                format!("service {key} has no port {}", want.unwrap_or_default()),
            ));
        };
        // One Upstream per Service port and options, shared by every route that uses it (the
        // proxy keys pools by id; sharing also saves copying endpoint lists).
        let variants = self
            .resolved
            .entry((ns, b.name.as_str(), port.port))
            .or_default();
        if let Some(u) = variants.iter().find(|u| {
            u.protocol == opts.protocol
                && u.load_balancing == opts.load_balancing
                && u.affinity == opts.affinity
        }) {
            return Ok(u.clone());
        }
        let endpoints = match variants.first() {
            Some(u) => u.endpoints.clone(),
            None => self.endpoints.resolve(ns, &b.name, port),
        };
        let u = Arc::new(Upstream {
            id: format!("{key}:{}", port.port),
            service: ObjectRef::new(ObjectKind::Service, ns, b.name.clone()),
            protocol: opts.protocol,
            endpoints,
            load_balancing: opts.load_balancing.clone(),
            affinity: opts.affinity.clone(),
        });
        variants.push(u.clone());
        Ok(u)
    }

    pub fn finish(self) -> (L7Config, super::References) {
        let mut cfg = L7Config {
            certificates: self.certificates,
            default_certificate: self.default_certificate,
            default_backend: self.default_backend.map(|(_, u)| u),
            settings: self.controller.settings.clone(),
            ..Default::default()
        };
        for (host, mut hb) in self.hosts {
            if let Some(f) = hb.fallback.take()
                && !hb.taken.contains_key(&f.matches.path)
            {
                hb.routes.push(f);
            }
            if hb.routes.is_empty() {
                continue;
            }
            // Stable: among equals, the older Ingress stays first.
            hb.routes.sort_by_key(|r| specificity(&r.matches.path));
            let vh = Arc::new(VirtualHost {
                host: host.clone(),
                routes: hb.routes,
                tls: hb.tls,
            });
            if host.is_empty() {
                cfg.any_host = Some(vh);
            } else if let Some(suffix) = host.strip_prefix("*.") {
                cfg.wildcard_hosts.insert(suffix.to_string(), vh);
            } else {
                cfg.hosts.insert(host, vh);
            }
        }
        (cfg, self.refs)
    }
}
