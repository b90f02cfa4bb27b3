//! Ingress -> L7: virtual hosts with sorted routes, certificates by SNI name, default backend.
//!
//! Ingresses are added oldest first (creation timestamp, then namespace/name), so on a conflict
//! (same host and same path match) the first one keeps the route and the later one gets a
//! `RouteConflict` diagnostic. A backend that cannot be resolved (missing Service, unknown port)
//! turns its route into a 503 answer with a diagnostic; the rest of the Ingress is served.
//!
//! `defaultBackend` follows ingress-nginx's `createServers` (internal/ingress/controller/
//! controller.go): on an Ingress without rules (a catch-all Ingress; the oldest one wins) it
//! answers the default server `_` — requests for a host no rule names and the unmatched paths
//! of rules without a host — as a last `Prefix /` route of the any-host virtual host, with the
//! Ingress's annotations except its redirects and rewrites (`catch_all_policy`). On an
//! Ingress with rules it catches the unmatched paths of the hosts that Ingress is the first
//! (oldest) to name (a `Prefix /` route, added only where no Ingress routes `/` itself); never
//! for rules without a host, whose server `_` already exists. Every other unmatched path
//! goes to the controller's default backend ([`L7Config::default_backend`],
//! `--default-backend-service`), else gets the built-in 404 — never the catch-all Ingress.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use crate::compact::ingress::{HTTPIngressPath, IngressBackend, IngressServiceBackend};

use super::{
    TranslateConfig,
    annotations::{self, IngressOptions},
    canary::{self, CanaryOptions},
    compat::{self, HostRoute},
    diagnostics::Diagnostics,
    endpoints::EndpointIndex,
    errors, passthrough, root_location,
    server_cert::{self, Choice, ServerCert, TlsEntry},
    tls::TlsCache,
};
use crate::{
    compact::ingress::Ingress,
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
    ing.creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
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
        PathMatch::Regex(p) | PathMatch::FullRegex(p) => (Reverse(p.len()), 3),
    }
}

/// Host as the proxy keys it, or why it is not acceptable.
pub(super) fn normalize_host(host: &str) -> Result<String, String> {
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
pub(super) struct HostBuilder {
    pub(super) routes: Vec<HostRoute>,
    taken: BTreeMap<PathMatch, ObjectRef>,
    /// The certificate of this server ([`server_cert`]), from the first Ingress with rules
    /// for it and a `spec.tls` section; `None`: not configured for TLS.
    cert: Option<ServerCert>,
    pub(super) fallback: Option<Route>,
    /// Some Ingress of this host has `use-regex` or `rewrite-target`: every path of the host
    /// is a regex (ingress-nginx's `enforceRegexModifier`).
    regex: bool,
    /// `server-alias` names of the Ingresses of this host, with the Ingress that asked.
    aliases: Vec<(String, ObjectRef)>,
    /// `from-to-www-redirect` asked by this Ingress (first one wins).
    from_to_www: Option<RouteOrigin>,
    /// `app-root` (first Ingress of the host that sets one wins).
    app_root: Option<String>,
    /// `auth-tls-*` of the host's Ingresses ([`super::client_auth::merge`]).
    client_auth: Option<crate::model::ClientAuth>,
    /// The first Ingress that asked for `ssl-passthrough` on this host (see [`passthrough`]).
    pub(super) passthrough: Option<ObjectRef>,
    /// ingress-nginx's root location from the first (oldest) Ingress naming this host
    /// ([`root_location`]); `None`: no Ingress with rules names the host (its rules without a
    /// host, or only `spec.tls` or a canary names it).
    root: Option<Route>,
}

pub struct L7Builder<'a> {
    pub(super) objects: &'a Objects,
    pub(super) endpoints: &'a EndpointIndex<'a>,
    tls: &'a mut TlsCache,
    pub(super) diags: &'a mut Diagnostics,
    pub(super) hosts: BTreeMap<String, HostBuilder>,
    /// Canary Ingresses, merged into the main routes by [`canary::merge`] in `finish`.
    pub(super) canaries: Vec<(&'a Ingress, ObjectRef, IngressOptions, CanaryOptions)>,
    default_certificate: Option<Arc<TlsCertificate>>,
    /// The oldest catch-all Ingress (`spec.defaultBackend`, no rules) and the root route it
    /// gives the default server `_`.
    catch_all: Option<(ObjectRef, Route)>,
    resolved: HashMap<(&'a str, &'a str, i32), Vec<Arc<Upstream>>>,
    /// `--secret-namespaces`: the only namespaces whose Secrets are read.
    secret_namespaces: Option<Vec<String>>,
    /// `--nginx-compatible-class`.
    compatible_classes: Vec<String>,
    /// Services and Secrets the routes depend on (found or not).
    pub refs: super::References,
    /// The controller ConfigMap: route defaults under the annotations, proxy settings.
    pub controller: super::configmap::ControllerConfig,
    /// `--enable-ssl-passthrough`.
    enable_passthrough: bool,
    /// `--disable-svc-external-name`.
    disable_external_name: bool,
    /// Route policies already made in this translation, for Ingresses whose policy is equal
    /// to share one ([`Self::share_policy`]).
    policies: Vec<Arc<crate::model::RoutePolicy>>,
}

/// How many distinct route policies [`L7Builder::share_policy`] remembers: most Ingresses of
/// a cluster have one of a few (no annotation, or the same few), and each Ingress compares
/// its own against every one remembered.
const SHARED_POLICIES: usize = 4;

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
            canaries: Vec::new(),
            default_certificate: None,
            catch_all: None,
            resolved: HashMap::new(),
            secret_namespaces: cfg.secret_namespaces.clone(),
            compatible_classes: cfg.nginx_compatible_classes.clone(),
            refs: super::References::default(),
            controller: Default::default(),
            enable_passthrough: cfg.enable_ssl_passthrough,
            disable_external_name: cfg.disable_svc_external_name,
            policies: Vec::new(),
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
                    super::tls::invalid_message(&key, &e),
                );
                None
            }
        }
    }

    /// The Ingress's `spec.tls` entries with their Secrets looked up: every Secret named is
    /// checked and a problem reported on the Ingress, whether or not a host takes it.
    fn tls_entries(
        &mut self,
        spec: &crate::compact::ingress::IngressSpec,
        ns: &str,
        oref: &ObjectRef,
    ) -> Vec<TlsEntry> {
        let mut entries = Vec::new();
        for tls in spec.tls.iter().flatten() {
            let secret = tls.secret_name.clone().filter(|s| !s.is_empty());
            let cert = secret.as_ref().and_then(|name| {
                let secret = ObjectRef::new(ObjectKind::Secret, ns, name.clone());
                self.certificate(&secret, oref)
            });
            let mut hosts = Vec::new();
            for host in tls.hosts.iter().flatten() {
                match normalize_host(host) {
                    Ok(h) if !h.is_empty() => hosts.push(h),
                    Ok(_) => {}
                    Err(e) => self
                        .diags
                        .error(oref, "InvalidHost", format!("spec.tls: {e}")),
                }
            }
            entries.push(TlsEntry {
                hosts,
                secret,
                cert,
            });
        }
        entries
    }

    /// Gives this Ingress's rule hosts that have no certificate yet theirs from its
    /// `spec.tls` ([`server_cert::choose`]), and says what an operator may not expect:
    /// a certificate not valid for a host it names, a `spec.tls` host without a rule here,
    /// a certificate valid for none of the rule hosts, a host left with the default.
    fn server_certificates(
        &mut self,
        spec: &crate::compact::ingress::IngressSpec,
        entries: &[TlsEntry],
        oref: &ObjectRef,
    ) {
        if entries.is_empty() {
            return;
        }
        let mut rule_hosts: Vec<String> = (spec.rules.iter().flatten())
            .filter_map(|r| normalize_host(r.host.as_deref().unwrap_or_default()).ok())
            .filter(|h| !h.is_empty())
            .collect();
        rule_hosts.dedup();
        let secret_of = |c: &TlsCertificate| format!("{}/{}", c.secret.namespace, c.secret.name);
        for e in entries {
            for h in e.hosts.iter().filter(|h| !rule_hosts.contains(h)) {
                let from = e.secret.as_deref().unwrap_or("(no secretName)");
                self.diags.warn(
                    oref,
                    "TlsHostWithoutRule",
                    format!(
                        "spec.tls host {h} has no rule in this Ingress, and only an Ingress's \
                         own rule hosts take its certificates: {h} is not served with secret \
                         {from} from here"
                    ),
                );
            }
            if let Some(c) = &e.cert
                && e.hosts.is_empty()
                && rule_hosts.is_empty()
            {
                self.diags.warn(
                    oref,
                    "TlsHostWithoutRule",
                    format!(
                        "the spec.tls entry of secret {} names no host and this Ingress has no \
                         rule host: it configures no certificate (the default certificate is \
                         --default-ssl-certificate's)",
                        secret_of(c)
                    ),
                );
            }
            if let Some(c) = &e.cert
                && e.hosts.is_empty()
                && !rule_hosts.is_empty()
                && rule_hosts
                    .iter()
                    .all(|h| super::cert_host::covers(&c.chain_pem, h) == Some(false))
            {
                self.diags.warn(
                    oref,
                    "TlsCertificateHostMismatch",
                    format!(
                        "the certificate of secret {} is valid for none of this Ingress's \
                         hosts ({}): no host is served with it",
                        secret_of(c),
                        rule_hosts.join(", ")
                    ),
                );
            }
        }
        for host in &rule_hosts {
            let choice = server_cert::choose(host, entries);
            let hb = self.hosts.entry(host.clone()).or_default();
            if let Some(have) = &hb.cert {
                let named = match &choice {
                    Choice::Named(ServerCert::Own(c)) | Choice::NotValidFor(c) => Some(c),
                    _ => None,
                };
                if let (ServerCert::Own(have), Some(c)) = (have, named)
                    && have.secret != c.secret
                {
                    let msg = format!(
                        "host {host} already has a certificate from secret {}",
                        secret_of(have)
                    );
                    self.diags.warn(oref, "TlsHostConflict", msg);
                }
                continue;
            }
            hb.cert = Some(choice.cert());
            match choice {
                Choice::NotValidFor(c) => self.diags.warn(
                    oref,
                    "TlsCertificateHostMismatch",
                    format!(
                        "the certificate of secret {} names host {host} neither as a subject \
                         alternative name nor as common name: the default certificate is \
                         served for it",
                        secret_of(&c)
                    ),
                ),
                Choice::Nothing => self.diags.warn(
                    oref,
                    "TlsHostWithoutCertificate",
                    format!(
                        "no spec.tls entry names host {host} and no certificate of them is \
                         valid for it: it is served with the default certificate, and plain \
                         HTTP is redirected to HTTPS"
                    ),
                ),
                Choice::Named(_) | Choice::Covering(_) => {}
            }
        }
    }

    /// `policy` as one equal policy already made, if one is remembered: 10k Ingresses without
    /// annotations then hold one policy (~1 KB) rather than 10k equal copies (issue 13's
    /// memory target). The snapshot is the same by value; a route that changes its policy
    /// copies it first (`Arc::make_mut`).
    fn share_policy(&mut self, policy: &mut Arc<crate::model::RoutePolicy>) {
        match self
            .policies
            .iter()
            .find(|p| Arc::ptr_eq(p, policy) || ***p == **policy)
        {
            Some(p) => *policy = Arc::clone(p),
            None if self.policies.len() < SHARED_POLICIES => self.policies.push(Arc::clone(policy)),
            None => {}
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
        let mut opts = annotations::parse_with(
            ing.metadata.annotations.as_ref(),
            &self.controller.annotation_defaults,
            &oref,
            self.diags,
        );
        self.controller.apply_defaults(&mut opts.policy);
        opts.service_upstream = opts.service_upstream.or(self.controller.service_upstream);
        if let Some(k) = super::custom_headers::apply(
            ing.metadata.annotations.as_ref(),
            self.secret_namespaces.as_deref(),
            self.objects,
            &self.controller,
            &oref,
            self.diags,
            &mut Arc::make_mut(&mut opts.policy).response,
        ) {
            self.refs.config_maps.insert(k);
        }
        if let Some(c) = canary::parse(ing.metadata.annotations.as_ref(), &oref, self.diags) {
            // Serves nothing of its own: merged into the main routes once all are known.
            passthrough::ignored_on_canary(ing.metadata.annotations.as_ref(), &oref, self.diags);
            self.canaries.push((ing, oref, opts, c));
            return;
        }
        let passthrough = passthrough::requested(
            ing.metadata.annotations.as_ref(),
            &oref,
            self.enable_passthrough,
            self.diags,
        );
        let mut reader =
            annotations::Reader::new(ing.metadata.annotations.as_ref(), &oref, self.diags);
        reader.allow_cross_namespace = self.controller.allow_cross_namespace_resources;
        if let Some(auth) = super::auth::parse(
            &mut reader,
            &ns,
            self.objects,
            self.secret_namespaces.as_deref(),
            &mut self.refs.secrets,
        ) {
            Arc::make_mut(&mut opts.policy).auth = Some(auth);
        }
        let client_auth = super::client_auth::parse(
            &mut reader,
            &ns,
            self.objects,
            self.secret_namespaces.as_deref(),
            &mut self.refs.secrets,
        );
        match super::proxy_ssl::parse(
            &mut reader,
            &ns,
            self.objects,
            self.secret_namespaces.as_deref(),
            &mut self.refs.secrets,
        ) {
            None => {}
            Some(Ok(tls)) => opts.upstream_tls = Some(tls),
            // ingress-nginx's LocationDenied: 503, diagnosed where it was parsed.
            Some(Err(reason)) => {
                let p = Arc::make_mut(&mut opts.policy);
                p.response.denied.get_or_insert(reason);
            }
        }
        match super::forward_auth::for_ingress(
            &mut reader,
            &ns,
            self.objects,
            self.endpoints,
            &self.controller,
            &mut self.refs,
        ) {
            None => {}
            Some(Ok(f)) => Arc::make_mut(&mut opts.policy).forward_auth = Some(f),
            // Denied wins over any other authentication of the Ingress.
            Some(Err(reason)) => {
                Arc::make_mut(&mut opts.policy).auth =
                    Some(crate::model::RouteAuth::Unavailable { reason })
            }
        }
        if let Some(m) =
            super::mirror::for_ingress(&mut reader, self.objects, self.endpoints, &mut self.refs)
        {
            Arc::make_mut(&mut opts.policy).mirror = Some(m);
        }
        self.share_policy(&mut opts.policy);
        let compatible = compat::is_compatible(ing, &self.compatible_classes);
        let Some(spec) = ing.spec.as_ref() else {
            self.diags
                .warn(&oref, "EmptyIngress", "Ingress has no spec");
            return;
        };
        let errors = errors::parse(self, ing.metadata.annotations.as_ref(), &oref, &opts);

        let tls_entries = self.tls_entries(spec, &ns, &oref);
        self.server_certificates(spec, &tls_entries, &oref);

        let created = created(ing);
        let rules = spec.rules.as_deref().unwrap_or_default();
        let fallback_action = spec.default_backend.as_ref().map(|b| {
            let d = has_default_backend(errors.as_deref());
            self.action(ns_ref, b, &opts, &oref, "spec.defaultBackend", d)
        });
        let fallback = fallback_action.as_ref().map(|action| Route {
            matches: RouteMatch::path(PathMatch::Prefix("/".into())),
            action: action.clone(),
            policy: opts.policy.clone(),
            origin: RouteOrigin {
                object: oref.clone(),
                rule: None,
                path: None,
                created,
                written_path: None,
            },
            canary: None,
            errors: errors.clone(),
        });

        if rules.is_empty() {
            // ingress-nginx takes a Service backend only (`DefaultBackend.Service != nil`).
            let service = spec
                .default_backend
                .as_ref()
                .is_some_and(|b| b.service.is_some());
            if let Some(f) = fallback.filter(|_| service) {
                match &self.catch_all {
                    None => {
                        let route = Route {
                            policy: catch_all_policy(&f.policy),
                            ..f
                        };
                        self.catch_all = Some((oref.clone(), route));
                    }
                    Some((winner, _)) => self.diags.warn(
                        &oref,
                        "DefaultBackendConflict",
                        format!(
                            "the default server's backend (requests for hosts no rule names) \
                             is already set by the older catch-all Ingress {winner}"
                        ),
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
            let hb = self.hosts.entry(host.clone()).or_default();
            // The first (oldest) Ingress naming a host makes its root location: its own
            // `spec.defaultBackend`, else the controller's default backend. The default
            // server `_` (no host) has its own, which no Ingress with rules changes.
            if hb.root.is_none() && !host.is_empty() {
                hb.root = Some(root_location::of_first_ingress(
                    &opts,
                    errors.as_ref(),
                    &oref,
                    created,
                ));
                hb.fallback = fallback.clone();
            }
            if passthrough {
                hb.passthrough.get_or_insert_with(|| oref.clone());
            }
            let written_path = |p: &HTTPIngressPath| {
                p.path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("/".into())
            };
            let target = opts.policy.rewrite.target.as_deref();
            let use_regex = opts.use_regex
                || rule
                    .http
                    .iter()
                    .flat_map(|h| &h.paths)
                    .any(|p| super::rewrite::needs_rewrite(target, &written_path(p)));
            if rule.http.is_some() {
                let hb = self.hosts.entry(host.clone()).or_default();
                hb.regex |= use_regex;
                let aliases = opts.hosts.aliases.iter();
                hb.aliases
                    .extend(aliases.map(|a| (a.clone(), oref.clone())));
                if opts.hosts.from_to_www && hb.from_to_www.is_none() {
                    hb.from_to_www = Some(RouteOrigin {
                        object: oref.clone(),
                        rule: RouteOrigin::index(ri),
                        path: None,
                        created,
                        written_path: None,
                    });
                }
                if hb.app_root.is_none() {
                    hb.app_root = opts.paths.app_root.clone();
                }
                if let Some(c) = &client_auth {
                    super::client_auth::merge(&mut hb.client_auth, c);
                }
            }
            let Some(http) = &rule.http else { continue };
            for (pi, p) in http.paths.iter().enumerate() {
                let path = match path_match(p.path.as_deref(), &p.path_type, use_regex) {
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
                let written = written_path(p);
                // ingress-nginx keeps `/foo` and `/foo/` apart (two nginx locations); the
                // Ingress API calls them one Prefix match.
                let key = match &path {
                    PathMatch::Prefix(_) if compatible || use_regex => {
                        PathMatch::Prefix(written.clone())
                    }
                    other => other.clone(),
                };
                let hb = self.hosts.entry(host.clone()).or_default();
                if let Some(winner) = hb.taken.get(&key) {
                    let msg = format!(
                        "host {:?} path {path:?} is already routed by {winner}; this path is ignored",
                        host
                    );
                    self.diags.warn(&oref, "RouteConflict", msg);
                    continue;
                }
                hb.taken.insert(key, oref.clone());
                let what = format!("spec.rules[{ri}].http.paths[{pi}]");
                let d = has_default_backend(errors.as_deref());
                let action = self.action(ns_ref, &p.backend, &opts, &oref, &what, d);
                let route = Route {
                    matches: RouteMatch::path(path),
                    action,
                    policy: {
                        let mut p = super::rewrite::for_location(&opts.policy, &written);
                        self.no_auth_location(&mut p, &written);
                        self.no_tls_redirect_location(&mut p, &written);
                        p
                    },
                    origin: RouteOrigin {
                        object: oref.clone(),
                        rule: RouteOrigin::index(ri),
                        path: RouteOrigin::index(pi),
                        created,
                        written_path: Some(written.as_str().into()),
                    },
                    canary: None,
                    errors: errors.clone(),
                };
                if let Some(hb) = self.hosts.get_mut(&host) {
                    hb.routes.push(HostRoute {
                        route,
                        written,
                        compatible,
                    });
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
        default_backend: bool,
    ) -> RouteAction {
        if let Some(why) = &opts.policy.response.denied {
            // ingress-nginx's denied location (`custom-headers` refused): 503, diagnosed once
            // where it was parsed.
            return RouteAction::Respond {
                status: 503,
                reason: why.clone(),
            };
        }
        if backend.service.is_none() {
            // A `resource` backend (not a Service): ingress-nginx proxies the location to its
            // default backend (e2e `service_nil_backend.go`: 404 from the default backend).
            self.diags.warn(
                oref,
                "ResourceBackend",
                format!("{what}: a resource backend is served by the default backend"),
            );
            return RouteAction::DefaultBackend;
        }
        match self.upstream(ns, backend, opts, oref) {
            Ok(u) => RouteAction::Forward(vec![WeightedUpstream {
                upstream: u,
                weight: 1,
            }]),
            Err((reason, msg)) => {
                self.diags.error(oref, reason, format!("{what}: {msg}"));
                match &backend.service {
                    // The route's `default-backend` serves a missing Service's requests with
                    // the Service as written in `X-Service-Name` / `X-Service-Port` (nginx.tmpl
                    // sets `$service_name` / `$service_port` from the Ingress; e2e
                    // `default_backend.go`): an upstream of no endpoints names it.
                    Some(b) if default_backend && reason == "ServiceNotFound" => {
                        RouteAction::Forward(vec![WeightedUpstream {
                            upstream: Arc::new(missing_service(ns, b, opts)),
                            weight: 1,
                        }])
                    }
                    _ => RouteAction::Respond {
                        status: 503,
                        reason: format!("{reason}: {msg}"),
                    },
                }
            }
        }
    }

    /// `no-auth-locations`: a path starting with one of its entries has no authentication
    /// (ingress-nginx's template skips `auth_request` and `auth_basic` there).
    fn no_auth_location(&self, policy: &mut Arc<crate::model::RoutePolicy>, written: &str) {
        let list = &self.controller.no_auth_locations;
        if (policy.auth.is_some() || policy.forward_auth.is_some())
            && super::location_list::contains(list, written)
        {
            let p = Arc::make_mut(policy);
            p.auth = None;
            p.forward_auth = None;
        }
    }

    /// `no-tls-redirect-locations`: a path starting with one of its entries is never
    /// redirected to HTTPS (ingress-nginx's `$force_no_ssl_redirect`, which its Lua redirect
    /// checks before `force-ssl-redirect` and `ssl-redirect`).
    fn no_tls_redirect_location(&self, policy: &mut Arc<crate::model::RoutePolicy>, written: &str) {
        let list = &self.controller.no_tls_redirect_locations;
        if policy.redirects_to_https(true) && super::location_list::contains(list, written) {
            let p = Arc::make_mut(policy);
            p.ssl_redirect = Some(false);
            p.force_ssl_redirect = Some(false);
        }
    }

    pub(super) fn upstream(
        &mut self,
        ns: &'a str,
        backend: &'a IngressBackend,
        opts: &IngressOptions,
        user: &ObjectRef,
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
        if spec.and_then(|s| s.type_.as_deref()) == Some(super::external_name::TYPE) {
            return self.external_name_upstream(ns, b, &key, opts);
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
        use super::service_upstream::ClusterIp;
        let cluster_ip = match opts.service_upstream {
            Some(true) => super::service_upstream::cluster_ip(
                svc,
                &key,
                port,
                opts,
                (user, self.endpoints),
                self.diags,
            ),
            _ => ClusterIp::Endpoints,
        };
        let service_upstream = !matches!(cluster_ip, ClusterIp::Endpoints);
        // kube-proxy balances over the ClusterIP: no affinity or balancing of ours.
        let (load_balancing, affinity) = if service_upstream {
            (crate::model::LoadBalancing::RoundRobin, None)
        } else {
            (opts.load_balancing.clone(), opts.affinity.clone())
        };
        // One Upstream per Service port and options, shared by every route that uses it (the
        // proxy keys pools by id; sharing also saves copying endpoint lists).
        let variants = self
            .resolved
            .entry((ns, b.name.as_str(), port.port))
            .or_default();
        // `proxy-ssl-*` shape the TLS of HTTPS and gRPCS upstreams (and AUTO_HTTP's HTTPS).
        let tls = match opts.protocol {
            crate::model::BackendProtocol::Https
            | crate::model::BackendProtocol::Grpcs
            | crate::model::BackendProtocol::AutoHttp => opts.upstream_tls.clone(),
            _ => None,
        };
        if let Some(u) = variants.iter().find(|u| {
            u.protocol == opts.protocol
                && u.load_balancing == load_balancing
                && u.affinity == affinity
                && u.service_upstream == service_upstream
                && u.tls == tls
        }) {
            return Ok(u.clone());
        }
        let endpoints = match (cluster_ip, variants.iter().find(|u| !u.service_upstream)) {
            (ClusterIp::Use(ep), _) => vec![ep],
            (ClusterIp::Refused, _) => Vec::new(),
            (ClusterIp::Endpoints, Some(u)) => u.endpoints.clone(),
            (ClusterIp::Endpoints, None) => self.endpoints.resolve(ns, &b.name, port),
        };
        let u = Arc::new(Upstream {
            id: super::proxy_ssl::upstream_id(
                super::service_upstream::upstream_id(&key, port.port, service_upstream),
                tls.as_deref(),
            ),
            service: ObjectRef::new(ObjectKind::Service, ns, b.name.clone()),
            protocol: opts.protocol,
            endpoints,
            load_balancing,
            affinity,
            service_upstream,
            external_name: None,
            tls,
        });
        variants.push(u.clone());
        Ok(u)
    }

    /// The upstream of an ExternalName Service's backend: no endpoints, the name and port the
    /// proxy resolves and connects to ([`super::external_name::target`]). `service-upstream`
    /// does not apply (there is no clusterIP); balancing and affinity do, over the addresses.
    fn external_name_upstream(
        &mut self,
        ns: &str,
        b: &IngressServiceBackend,
        key: &Key,
        opts: &IngressOptions,
    ) -> Result<Arc<Upstream>, (&'static str, String)> {
        let Some(svc) = self.objects.services.get(key) else {
            return Err(("ServiceNotFound", format!("service {key} does not exist")));
        };
        let endpoints = self.endpoints;
        let guard = |ip| endpoints.refusal(ip, ns, &b.name);
        let target = super::external_name::target(
            svc,
            key,
            b.port.as_ref(),
            self.disable_external_name,
            &guard,
        )?;
        let tls = match opts.protocol {
            crate::model::BackendProtocol::Https
            | crate::model::BackendProtocol::Grpcs
            | crate::model::BackendProtocol::AutoHttp => opts.upstream_tls.clone(),
            _ => None,
        };
        Ok(Arc::new(Upstream {
            id: super::proxy_ssl::upstream_id(
                super::service_upstream::upstream_id(key, i32::from(target.port), false),
                tls.as_deref(),
            ),
            service: ObjectRef::new(ObjectKind::Service, ns, b.name.clone()),
            protocol: opts.protocol,
            endpoints: Vec::new(),
            load_balancing: opts.load_balancing.clone(),
            affinity: opts.affinity.clone(),
            service_upstream: false,
            external_name: Some(Box::new(target)),
            tls,
        }))
    }

    pub fn finish(mut self) -> (L7Config, super::References) {
        canary::merge(&mut self);
        let mut catch_all = self.catch_all.take();
        if catch_all.is_some() {
            self.hosts.entry(String::new()).or_default();
        }
        let redirect_code = self.controller.settings.http_redirect_code;
        let tls_upstreams = passthrough::tls_upstreams(&self.hosts);
        let passthrough = if self.enable_passthrough {
            passthrough::select(&self.hosts, self.diags)
        } else {
            BTreeMap::new()
        };
        let other_names = other_names(&self.hosts, self.diags);
        let names = served_names(&self.hosts, &other_names, self.default_certificate.as_ref());
        let mut cfg = L7Config {
            passthrough,
            certificates: certificates(&names, self.default_certificate.as_ref()),
            default_certificate: self.default_certificate,
            settings: self.controller.settings.clone(),
            ..Default::default()
        };
        let mut other_names = other_names.into_iter().peekable();
        let mut extra: Vec<(String, Arc<VirtualHost>)> = Vec::new();
        for (host, mut hb) in self.hosts {
            let (aliases, www) = match other_names.next_if(|(h, _, _)| *h == host) {
                Some((_, aliases, www)) => (aliases, www),
                None => (Vec::new(), None),
            };
            if let Some(f) = hb.fallback.take()
                && !hb.taken.contains_key(&f.matches.path)
            {
                hb.routes.push(HostRoute {
                    route: f,
                    written: "/".into(),
                    compatible: false,
                });
            }
            let catch_all = catch_all.take_if(|_| host.is_empty());
            if let Some((winner, _)) = &catch_all {
                drop_default_server_root(&mut hb.routes, winner, self.diags);
            }
            // A host an Ingress rule names is a server of its own even without a path (a
            // rule without `http`, or whose paths are all invalid): its requests get its root
            // location, not the default server's (a catch-all Ingress's) backend.
            if hb.routes.is_empty() && hb.root.is_none() && catch_all.is_none() {
                continue;
            }
            let tls = server_cert::configured(&names, &host);
            passthrough::speak_tls(&mut hb.routes, &tls_upstreams);
            let mut routes = if hb.regex {
                regex_routes(hb.routes, self.diags)
            } else {
                let mut routes: Vec<Route> = compat::trailing_slash_redirects(&hb.routes);
                routes.extend(hb.routes.into_iter().map(|r| r.route));
                // Stable: among equals, the older Ingress stays first (and a trailing-slash
                // redirect, pushed first, before the Exact path it stands for).
                routes.sort_by_key(|r| specificity(&r.matches.path));
                routes
            };
            // Last: tried only when no path of the host matched.
            if let Some(root) = hb.root
                && !root_location::covered(&routes)
                && (routes.is_empty() || root_location::needed(&root, tls))
            {
                routes.push(root);
            }
            // The default server's root location, tried last.
            routes.extend(catch_all.map(|(_, r)| r));
            let vh = Arc::new(VirtualHost {
                host: host.clone(),
                routes: routes.into(),
                tls,
                app_root: hb.app_root.map(Into::into),
                client_auth: hb.client_auth.map(Box::new),
            });
            for alias in aliases {
                // The redirect follows the request's own name (lua_ingress.lua), so an alias
                // the certificate is not valid for is not redirected.
                let alias_tls = server_cert::configured(&names, &alias);
                let vh = if alias_tls == tls {
                    vh.clone()
                } else {
                    Arc::new(VirtualHost {
                        tls: alias_tls,
                        ..(*vh).clone()
                    })
                };
                extra.push((alias, vh));
            }
            if let Some((other, origin)) = www {
                let code = redirect_code.unwrap_or(super::redirect::FROM_TO_WWW_CODE);
                let vh = www_redirect(&other, &host, origin, code);
                extra.push((other, Arc::new(vh)));
            }
            extra.push((host, vh));
        }
        for (host, vh) in extra {
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

/// The policy of the default server's root location that a catch-all Ingress sets: its
/// annotations except redirects and rewrites, which ingress-nginx keeps as they were there
/// (`createServers`: "Redirect and rewrite can affect the catch all behavior, skip for now";
/// its rewrite configuration includes `ssl-redirect`, `force-ssl-redirect` and
/// `preserve-trailing-slash`).
fn catch_all_policy(p: &Arc<crate::model::RoutePolicy>) -> Arc<crate::model::RoutePolicy> {
    let mut p = (**p).clone();
    p.redirect = None;
    p.rewrite.target = None;
    p.ssl_redirect = Some(false);
    p.force_ssl_redirect = Some(false);
    p.preserve_trailing_slash = false;
    Arc::new(p)
}

/// Drops the `Prefix /` routes of rules without a host where a catch-all Ingress (`winner`)
/// is the default server's root location: ingress-nginx's catch-all location is no longer a
/// default one, so a later `Prefix /` of the same server is "already configured"
/// (`getBackendServers`) and skipped.
fn drop_default_server_root(
    routes: &mut Vec<HostRoute>,
    winner: &ObjectRef,
    diags: &mut Diagnostics,
) {
    routes.retain(|r| {
        let root = r.route.matches.path == PathMatch::Prefix("/".into());
        if root {
            diags.warn(
                &r.route.origin.object,
                "RouteConflict",
                format!(
                    "path \"/\" of a rule without a host is already routed by the catch-all \
                     Ingress {winner} (spec.defaultBackend); this path is ignored"
                ),
            );
        }
        !root
    });
}

/// A served host with the `server-alias` names it is given and its `from-to-www-redirect`
/// name (with the rule that asked), in host order.
type OtherNames = Vec<(String, Vec<String>, Option<(String, RouteOrigin)>)>;

/// The names hosts serve besides their own: `server-alias` names and the
/// `from-to-www-redirect` name, each unless a rule or an earlier host already takes it
/// (ingress-nginx adds no alias or redirect server for a name an Ingress serves).
fn other_names(hosts: &BTreeMap<String, HostBuilder>, diags: &mut Diagnostics) -> OtherNames {
    let served = |hb: &HostBuilder| !hb.routes.is_empty() || hb.fallback.is_some();
    let mut claimed: std::collections::HashSet<String> = (hosts.iter())
        .filter(|(_, hb)| served(hb))
        .map(|(h, _)| h.clone())
        .collect();
    let mut out = Vec::new();
    for (host, hb) in hosts.iter().filter(|(_, hb)| served(hb)) {
        let mut aliases = Vec::new();
        for (alias, by) in &hb.aliases {
            if claimed.insert(alias.clone()) {
                aliases.push(alias.clone());
            } else {
                diags.warn(
                    by,
                    "ServerAliasConflict",
                    format!("server-alias {alias:?} is already a host or alias; ignored"),
                );
            }
        }
        let www = match &hb.from_to_www {
            Some(origin) if !host.is_empty() && !host.starts_with("*.") => {
                let other = match host.strip_prefix("www.") {
                    Some(bare) => bare.to_string(),
                    None => format!("www.{host}"),
                };
                claimed
                    .insert(other.clone())
                    .then(|| (other, origin.clone()))
            }
            _ => None,
        };
        if !aliases.is_empty() || www.is_some() {
            out.push((host.clone(), aliases, www));
        }
    }
    out
}

/// Every name configured for TLS and with what (ingress-nginx's `certificate_servers`): the
/// hosts with a certificate, and the other names of a host its certificate is valid for
/// ([`server_cert::for_other_name`]).
fn served_names(
    hosts: &BTreeMap<String, HostBuilder>,
    other: &OtherNames,
    default: Option<&Arc<TlsCertificate>>,
) -> BTreeMap<String, ServerCert> {
    let mut names: BTreeMap<String, ServerCert> = (hosts.iter())
        .filter_map(|(h, hb)| Some((h.clone(), hb.cert.clone()?)))
        .collect();
    for (host, aliases, www) in other {
        let Some(cert) = hosts.get(host).and_then(|hb| hb.cert.clone()) else {
            continue;
        };
        let www = www.iter().map(|(name, _)| name);
        for name in aliases.iter().chain(www) {
            if let Some(c) = server_cert::for_other_name(&cert, name, default) {
                names.insert(name.clone(), c);
            }
        }
    }
    names
}

/// The certificates handshakes are given by name: a Secret's, or the configured default
/// certificate where a name is configured with it (so that it, not a wildcard's, is served;
/// certificate.lua looks the exact name up first). A name configured with the generated
/// default has no entry.
fn certificates(
    names: &BTreeMap<String, ServerCert>,
    default: Option<&Arc<TlsCertificate>>,
) -> crate::model::NameMap<TlsCertificate> {
    (names.iter())
        .filter_map(|(name, c)| match c {
            ServerCert::Own(c) => Some((name.clone(), c.clone())),
            ServerCert::Default => default.map(|d| (name.clone(), d.clone())),
        })
        .collect()
}

/// The routes of a host where some Ingress asked for regex paths: every path as written
/// becomes a case-insensitive regex anchored at the start, ordered by descending length and
/// then descending path (ingress-nginx sorts a server's locations so, then writes them as
/// `location ~* "^<path>"`; user-guide/ingress-path-matching.md, "Path Priority").
fn regex_routes(routes: Vec<HostRoute>, diags: &mut Diagnostics) -> Vec<Route> {
    let mut out: Vec<(String, Route)> = routes
        .into_iter()
        .map(|mut r| {
            if !matches!(r.route.matches.path, PathMatch::Regex(_)) {
                match regex::Regex::new(&format!("(?i)^(?:{})", r.written)) {
                    Ok(_) => r.route.matches.path = PathMatch::Regex(r.written.clone()),
                    Err(e) => diags.warn(
                        &r.route.origin.object,
                        "InvalidPath",
                        format!(
                            "path {:?} is not a valid regular expression, which use-regex or \
                             rewrite-target on this host makes it: {e}; matched as written",
                            r.written
                        ),
                    ),
                }
            }
            (r.written, r.route)
        })
        .collect();
    out.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| b.cmp(a)));
    out.into_iter().map(|(_, r)| r).collect()
}

/// ingress-nginx's redirect server for `from-to-www-redirect`: every request to `from` is
/// redirected to `to` with ConfigMap `http-redirect-code` (`status`, 308 by default).
fn www_redirect(from: &str, to: &str, origin: RouteOrigin, status: u16) -> VirtualHost {
    let policy = crate::model::RoutePolicy {
        // The redirect server answers on both ports itself.
        ssl_redirect: Some(false),
        force_ssl_redirect: Some(false),
        redirect: Some(crate::model::Redirect {
            to: crate::model::RedirectTo::Host(to.to_string()),
            status,
        }),
        ..Default::default()
    };
    VirtualHost {
        host: from.to_string(),
        routes: vec![Route {
            matches: RouteMatch::path(PathMatch::CharPrefix("/".into())),
            action: RouteAction::Respond {
                status,
                reason: "from-to-www-redirect".into(),
            },
            policy: Arc::new(policy),
            origin,
            canary: None,
            errors: None,
        }]
        .into(),
        tls: false,
        app_root: None,
        client_auth: None,
    }
}

/// Whether the Ingress's `default-backend` annotation names a Service that serves its routes.
fn has_default_backend(errors: Option<&crate::model::ErrorPages>) -> bool {
    errors.is_some_and(|e| e.default_backend.is_some())
}

/// An upstream of no endpoints for Service `b` of namespace `ns`, which does not exist: the
/// port as written (a number, or a name).
fn missing_service(ns: &str, b: &IngressServiceBackend, opts: &IngressOptions) -> Upstream {
    let port = super::service_upstream::PortId::written(b.port.as_ref());
    Upstream {
        id: super::service_upstream::upstream_id(&Key::new(ns, &b.name), port, false),
        service: ObjectRef::new(ObjectKind::Service, ns, &b.name),
        protocol: opts.protocol,
        endpoints: Vec::new(),
        load_balancing: opts.load_balancing.clone(),
        affinity: None,
        service_upstream: false,
        external_name: None,
        tls: None,
    }
}
