//! `xdp-ingress explain`: what a request would match, as JSON — the Ingress (namespace/name,
//! rule, path and pathType), the backend service and port, and the endpoints it would go to;
//! or the default backend / 404 and why.
//!
//! [`explain`] is a pure function over a [`Snapshot`] and uses the proxy's own request front
//! (host checks, path normalisation) and route table, so what it says is what the proxy does.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header::HOST};
use serde::Serialize;

use crate::{
    model::translate::{
        DEFAULT_CONTROLLER_NAME, DEFAULT_INGRESS_CLASS, TranslateConfig, translate,
    },
    model::{
        BackendProtocol, CookieAffinity, Diagnostic, EndpointState, LoadBalancing, ObjectKind,
        ObjectRef, PathMatch, Snapshot, Upstream,
    },
    proxy::{
        request_target,
        router::{CompiledAction, CompiledHost, Lookup, Miss, RequestView, RouteTable},
    },
    source::files::ManifestDir,
};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Directory of Kubernetes manifests (multi-document YAML), as `run --manifests` reads it.
    #[arg(long)]
    pub manifests: PathBuf,
    /// Host of the request (port allowed).
    #[arg(long)]
    pub host: String,
    /// Request target as a client would send it, query string allowed; normalised (and
    /// refused with 400) exactly as the proxy does, and shown as `forwarded_path`.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Request header `Name:value`; repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request arrives over HTTPS (no HTTP → HTTPS redirect).
    #[arg(long)]
    pub https: bool,
    /// IngressClass name treated as ours (as `run --ingress-class`).
    #[arg(long, default_value = DEFAULT_INGRESS_CLASS)]
    pub ingress_class: String,
    /// `spec.controller` of IngressClasses that are ours (as `run --controller-name`).
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    pub controller_name: String,
    /// Also take Ingresses that name no class (as `run --watch-ingress-without-class`).
    #[arg(long)]
    pub watch_ingress_without_class: bool,
    /// Serve endpoints on loopback and node addresses (as `run --allow-node-local-endpoints`).
    #[arg(long)]
    pub allow_node_local_endpoints: bool,
    /// The controller ConfigMap in the directory (as `run --configmap`).
    #[arg(long, value_parser = crate::source::args::parse_key)]
    pub configmap: Option<crate::store::Key>,
    /// As `run --serve-ingresses-with-snippets`.
    #[arg(long)]
    pub serve_ingresses_with_snippets: bool,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not Name:value"))?;
    HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| format!("header name {k:?}: {e}"))?;
    HeaderValue::from_str(v.trim()).map_err(|e| format!("header value {v:?}: {e}"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// The request to explain.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub host: String,
    /// Request target as sent: a path with an optional `?query` (or absolute-form).
    pub path: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub https: bool,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Proxied to the route's backend.
    Route,
    /// Plain HTTP to a TLS host: 308 to HTTPS.
    Redirect,
    /// Answered by the proxy (e.g. the route's Service is missing).
    Respond,
    /// No route: the default backend takes it.
    DefaultBackend,
    /// No route and no default backend: 404.
    NotFound,
    /// Refused before routing: the target or host is invalid (400) or the method is CONNECT
    /// (405).
    Refused,
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
    /// The virtual host chosen (`*.example.com`, `""` for rules without host), if any.
    pub virtual_host: Option<String>,
    pub route: Option<RouteInfo>,
    pub backends: Vec<BackendInfo>,
    /// The path and query as routed and sent to the backend, after normalisation (absent
    /// when the request is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Problems the control plane reported for the Ingress that matched.
    pub diagnostics: Vec<Diagnostic>,
    pub snapshot_version: u64,
}

#[derive(Debug, Serialize)]
pub struct RouteInfo {
    pub ingress: ObjectRef,
    /// Index of the rule in `spec.rules` (`None` for a defaultBackend).
    pub rule: Option<usize>,
    /// Index of the path in the rule's `http.paths`.
    pub path_index: Option<usize>,
    pub path: String,
    pub path_type: &'static str,
}

#[derive(Debug, Serialize)]
pub struct BackendInfo {
    pub service: ObjectRef,
    /// The Service port, as the upstream id names it.
    pub port: String,
    pub weight: u32,
    pub protocol: BackendProtocol,
    pub load_balancing: LoadBalancing,
    pub affinity: Option<CookieAffinity>,
    pub endpoints: Vec<EndpointInfo>,
}

#[derive(Debug, Serialize)]
pub struct EndpointInfo {
    pub address: String,
    pub state: EndpointState,
    pub target: Option<String>,
    pub node: Option<String>,
}

/// What `q` would match in `snapshot`.
pub fn explain(snapshot: &Snapshot, q: &Query) -> Explanation {
    let (table, _) = RouteTable::build(&snapshot.l7, Arc::clone);
    let mut headers = HeaderMap::new();
    for (k, v) in &q.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let method = if q.method.is_empty() {
        "GET"
    } else {
        q.method.as_str()
    };
    let mut e = Explanation {
        outcome: Outcome::Refused,
        reason: String::new(),
        virtual_host: None,
        route: None,
        backends: Vec::new(),
        forwarded_path: None,
        redirect_to: None,
        status: None,
        diagnostics: Vec::new(),
        snapshot_version: snapshot.version,
    };
    // The proxy's own request front: the same host checks and path normalisation.
    let (Ok(host_value), Ok(uri), Ok(method_value)) = (
        HeaderValue::from_str(&q.host),
        Uri::try_from(q.path.as_str()),
        Method::from_bytes(method.as_bytes()),
    ) else {
        e.status = Some(400);
        e.reason = "request line or Host cannot be sent as given".into();
        return e;
    };
    headers.insert(HOST, host_value);
    let target = match request_target::resolve(&method_value, Version::HTTP_11, &uri, &headers) {
        Ok(t) => t,
        Err(r) => {
            e.status = Some(r.status.as_u16());
            e.reason = r.reason.into();
            return e;
        }
    };
    let view = RequestView {
        host: &target.host,
        path: target.path_and_query.path(),
        query: target.path_and_query.query(),
        method,
        headers: &headers,
    };
    e.forwarded_path = Some(target.path_and_query.to_string());
    let host_name = |h: &CompiledHost<Arc<Upstream>>| Some(h.host.clone());
    match table.lookup(&view) {
        Lookup::Route { host, route } => {
            e.virtual_host = host_name(host);
            let (path, path_type) = match &route.path {
                PathMatch::Exact(p) => (p.clone(), "Exact"),
                PathMatch::Prefix(p) => (p.clone(), "Prefix"),
                PathMatch::CharPrefix(p) => (p.clone(), "ImplementationSpecific"),
                PathMatch::Regex(r) => (r.clone(), "ImplementationSpecific (regex)"),
            };
            e.route = Some(RouteInfo {
                ingress: route.origin.object.clone(),
                rule: route.origin.rule,
                path_index: route.origin.path,
                path,
                path_type,
            });
            e.diagnostics = snapshot
                .diagnostics
                .iter()
                .filter(|d| d.object == route.origin.object)
                .cloned()
                .collect();
            match &route.action {
                CompiledAction::Forward(ups) => {
                    e.backends = ups.iter().map(|(u, w)| backend_info(u, *w)).collect();
                    if !q.https && host.tls && route.policy.ssl_redirect != Some(false) {
                        e.outcome = Outcome::Redirect;
                        e.status = Some(308);
                        let name = crate::proxy::router::normalize_host(&target.host);
                        e.redirect_to = Some(format!("https://{name}{}", target.path_and_query));
                        e.reason = "host has TLS and the request is plain HTTP".into();
                    } else {
                        e.outcome = Outcome::Route;
                        e.reason = format!(
                            "host {:?} matched virtual host {:?}; path {:?} matched",
                            q.host,
                            host.host,
                            target.path_and_query.path()
                        );
                    }
                }
                CompiledAction::Respond { status, reason } => {
                    e.outcome = Outcome::Respond;
                    e.status = Some(*status);
                    e.reason = reason.clone();
                }
            }
        }
        Lookup::Default { host, backend, why } => {
            e.virtual_host = host.and_then(host_name);
            e.outcome = Outcome::DefaultBackend;
            e.reason = miss_reason(why, &q.host, target.path_and_query.path());
            e.backends = vec![backend_info(backend, 1)];
        }
        Lookup::NotFound { host, why } => {
            e.virtual_host = host.and_then(host_name);
            e.outcome = Outcome::NotFound;
            e.status = Some(404);
            e.reason = format!(
                "{}; no default backend",
                miss_reason(why, &q.host, target.path_and_query.path())
            );
        }
    }
    e
}

fn miss_reason(why: Miss, host: &str, path: &str) -> String {
    match why {
        Miss::NoHost => format!("no rule for host {host:?} and no rule without host"),
        Miss::NoPath => format!("host {host:?} matched but no path matches {path:?}"),
    }
}

fn backend_info(u: &Upstream, weight: u32) -> BackendInfo {
    BackendInfo {
        service: ObjectRef {
            kind: ObjectKind::Service,
            ..u.service.clone()
        },
        port: u
            .id
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default(),
        weight,
        protocol: u.protocol,
        load_balancing: u.load_balancing.clone(),
        affinity: u.affinity.clone(),
        endpoints: u
            .endpoints
            .iter()
            .map(|ep| EndpointInfo {
                address: ep.addr.to_string(),
                state: ep.state,
                target: ep.target.clone(),
                node: ep.node_name.clone(),
            })
            .collect(),
    }
}

/// The snapshot the control plane builds from a manifest directory (same source, same
/// translation as `run --manifests`).
pub fn load_snapshot(dir: &std::path::Path, config: &TranslateConfig) -> anyhow::Result<Snapshot> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let objects = ManifestDir::new(dir).load();
    Ok(translate(&objects, config))
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let config = TranslateConfig {
        controller_name: args.controller_name.clone(),
        ingress_class: args.ingress_class.clone(),
        watch_without_class: args.watch_ingress_without_class,
        allow_node_local_endpoints: args.allow_node_local_endpoints,
        configmap: args.configmap.clone(),
        serve_ingresses_with_snippets: args.serve_ingresses_with_snippets,
        ..TranslateConfig::default()
    };
    let snapshot = load_snapshot(&args.manifests, &config)
        .with_context(|| format!("loading manifests from {}", args.manifests.display()))?;
    let e = explain(
        &snapshot,
        &Query {
            host: args.host,
            path: args.path,
            method: args.method,
            headers: args.headers,
            https: args.https,
        },
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&e).context("encoding JSON")?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Diagnostic, RouteAction, Severity},
        proxy::fixtures::*,
    };

    fn snap() -> Snapshot {
        let ep = "10.0.0.1:8080".parse().unwrap();
        let mut tls_route = route_to(path("Prefix", "/"), upstream_at("secure", &[ep]));
        tls_route.origin.rule = Some(1);
        let mut missing = route(path("Exact", "/missing"), "gone");
        missing.action = RouteAction::Respond {
            status: 503,
            reason: "service default/gone not found".into(),
        };
        let mut s = (*snapshot(
            7,
            l7_with(
                vec![
                    vhost(
                        "foo.example.com",
                        vec![
                            missing,
                            route_to(path("Prefix", "/api"), upstream_at("api", &[ep])),
                        ],
                        false,
                    ),
                    vhost("secure.example.com", vec![tls_route], true),
                ],
                None,
            ),
        ))
        .clone();
        s.diagnostics.push(Diagnostic {
            object: ObjectRef {
                kind: ObjectKind::Ingress,
                namespace: "default".into(),
                name: "ing".into(),
            },
            severity: Severity::Error,
            reason: "ServiceNotFound".into(),
            message: "service default/gone not found".into(),
        });
        s
    }

    fn q(host: &str, path: &str) -> Query {
        Query {
            host: host.into(),
            path: path.into(),
            ..Query::default()
        }
    }

    #[test]
    fn route_match_names_ingress_path_backend_and_endpoints() {
        let e = explain(&snap(), &q("foo.example.com", "/api/users?x=1"));
        assert_eq!(e.outcome, Outcome::Route);
        let r = e.route.as_ref().unwrap();
        assert_eq!(
            (r.ingress.namespace.as_str(), r.ingress.name.as_str()),
            ("default", "ing")
        );
        assert_eq!((r.path.as_str(), r.path_type), ("/api", "Prefix"));
        assert_eq!(e.backends[0].service.name, "api");
        assert_eq!(e.backends[0].port, "80");
        assert_eq!(e.backends[0].endpoints[0].address, "10.0.0.1:8080");
        assert_eq!(e.diagnostics.len(), 1);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["outcome"], "route");
        assert_eq!(json["route"]["path_type"], "Prefix");
        assert_eq!(json["backends"][0]["service"]["name"], "api");
    }

    /// `explain` runs the proxy's request front: the path it matches and shows is the
    /// normalised one the backend would get, and what the proxy refuses it refuses too.
    #[test]
    fn paths_are_normalised_and_bad_targets_refused_as_the_proxy_does() {
        let s = snap();
        for raw in [
            "/x/../api/users?a=/../",
            "//api/users?a=/../",
            "/%61pi/users?a=/../",
        ] {
            let e = explain(&s, &q("foo.example.com", raw));
            assert_eq!(e.outcome, Outcome::Route, "{raw}");
            assert_eq!(e.route.unwrap().path, "/api", "{raw}");
            assert_eq!(
                e.forwarded_path.as_deref(),
                Some("/api/users?a=/../"),
                "{raw}"
            );
        }
        let e = explain(&s, &q("secure.example.com", "/a/./b/../c?x"));
        assert_eq!(
            e.redirect_to.as_deref(),
            Some("https://secure.example.com/a/c?x")
        );
        for (host, path, status) in [
            ("foo.example.com", "/../api", 400),
            ("foo.example.com", "/api/..%2f..%2fx", 400),
            ("attacker/.secure.example.com", "/", 400),
            ("", "/", 400),
        ] {
            let e = explain(&s, &q(host, path));
            assert_eq!(e.outcome, Outcome::Refused, "{host}{path}");
            assert_eq!(e.status, Some(status), "{host}{path}");
            assert!(e.route.is_none() && e.forwarded_path.is_none());
        }
        // Absolute-form routes by its own host, as in the proxy.
        let e = explain(&s, &q("foo.example.com", "http://secure.example.com/x"));
        assert_eq!(
            e.redirect_to.as_deref(),
            Some("https://secure.example.com/x")
        );
        let mut connect = q("foo.example.com", "foo.example.com:443");
        connect.method = "CONNECT".into();
        assert_eq!(explain(&s, &connect).status, Some(405));
    }

    #[test]
    fn not_found_default_backend_respond_and_redirect_say_why() {
        let s = snap();
        let e = explain(&s, &q("foo.example.com", "/other"));
        assert_eq!(e.outcome, Outcome::NotFound);
        assert_eq!(e.status, Some(404));
        assert!(e.reason.contains("no path matches"), "{}", e.reason);
        let e = explain(&s, &q("nobody.example.com", "/"));
        assert!(e.reason.contains("no rule for host"), "{}", e.reason);

        let mut with_default = s.clone();
        with_default.l7.default_backend = Some(upstream("fallback"));
        let e = explain(&with_default, &q("nobody.example.com", "/"));
        assert_eq!(e.outcome, Outcome::DefaultBackend);
        assert_eq!(e.backends[0].service.name, "fallback");

        let e = explain(&s, &q("foo.example.com", "/missing"));
        assert_eq!((e.outcome, e.status), (Outcome::Respond, Some(503)));

        let e = explain(&s, &q("secure.example.com", "/x?y"));
        assert_eq!(e.outcome, Outcome::Redirect);
        assert_eq!(
            e.redirect_to.as_deref(),
            Some("https://secure.example.com/x?y")
        );
        assert_eq!(e.route.as_ref().unwrap().rule, Some(1));
        let e = explain(
            &s,
            &Query {
                https: true,
                ..q("secure.example.com", "/x")
            },
        );
        assert_eq!(e.outcome, Outcome::Route);
    }

    #[test]
    fn explains_the_default_manifests_like_run_serves_them() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/source/default_manifests");
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        let e = explain(
            &s,
            &Query {
                https: true,
                ..q("secure.example.com", "/api/v1")
            },
        );
        assert_eq!(e.outcome, Outcome::Route);
        let r = e.route.as_ref().unwrap();
        assert_eq!(
            (r.ingress.name.as_str(), r.path.as_str(), r.path_type),
            ("secure", "/api", "Prefix")
        );
        assert_eq!(e.backends[0].service.name, "api");
        assert!(e.backends[0].affinity.is_some());
        assert!(!e.backends[0].endpoints.is_empty());
        assert_eq!(
            explain(&s, &q("secure.example.com", "/")).outcome,
            Outcome::Redirect
        );
        let e = explain(&s, &q("unknown.example.com", "/"));
        assert_eq!(e.outcome, Outcome::DefaultBackend);
        assert_eq!(e.backends[0].service.name, "web");
        assert!(load_snapshot(&dir.join("nope"), &TranslateConfig::default()).is_err());
    }

    #[test]
    fn header_flag_parses() {
        assert_eq!(
            parse_header("X-Canary: always").unwrap(),
            ("X-Canary".into(), "always".into())
        );
        assert!(parse_header("nocolon").is_err());
    }
}
