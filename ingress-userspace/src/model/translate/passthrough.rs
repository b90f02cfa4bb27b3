//! ingress-nginx's `ssl-passthrough` annotation: TLS connections to the host are passed to the
//! pod untouched, chosen by SNI, when the controller runs with `--enable-ssl-passthrough`
//! (user guide "TLS/HTTPS", "SSL Passthrough"; annotations reference "SSL Passthrough").
//!
//! As ingress-nginx (`internal/ingress/controller/controller.go`, `getConfiguration` and
//! `createUpstreams`):
//! - a host is passed through when any non-canary Ingress with a rule for it asks;
//! - the connection goes to the backend of the host's `/` path (an Ingress's
//!   `spec.defaultBackend` stands in for a missing `/`); other paths play no part, and a host
//!   without one is not passed through;
//! - SNI names are matched exactly (`pkg/tcpproxy`), so a `*.` wildcard host never is;
//! - that backend is spoken to over HTTPS (the pod terminates TLS) wherever nginx itself proxies
//!   to it: plain HTTP on the HTTP port, and every connection when the flag is off;
//! - over HTTPS every other annotation of the Ingress is void (the proxy sees no request).
//!
//! Without the flag the annotation is ignored, as ingress-nginx ignores it, with a Warning.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use super::{
    annotations::Reader, compat::HostRoute, diagnostics::Diagnostics, ingress::HostBuilder,
    support::strip_prefix,
};
use crate::model::{
    BackendProtocol, ObjectRef, Passthrough, RouteAction, Upstream, WeightedUpstream,
};

/// The annotation, without prefix.
pub const ANNOTATION: &str = "ssl-passthrough";

/// Whether the Ingress asks for passthrough (`ssl-passthrough: "true"`), flag or not. With the
/// feature on, warns about the other annotations it sets (void over HTTPS); with it off, warns
/// that connections are terminated here.
pub(super) fn requested(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    enabled: bool,
    diags: &mut Diagnostics,
) -> bool {
    if Reader::new(annotations, object, diags).bool(ANNOTATION) != Some(true) {
        return false;
    }
    if !enabled {
        diags.warn(
            object,
            "SslPassthroughDisabled",
            "annotation ssl-passthrough needs --enable-ssl-passthrough (off, as in ingress-nginx): \
             TLS is terminated here and the pod is spoken to over HTTPS",
        );
        return true;
    }
    let mut others: Vec<&str> = annotations
        .into_iter()
        .flat_map(|a| a.keys())
        .filter_map(|k| strip_prefix(k))
        .filter(|name| *name != ANNOTATION)
        .collect();
    others.sort_unstable();
    others.dedup();
    if !others.is_empty() {
        diags.warn(
            object,
            "SslPassthroughAnnotationsVoid",
            format!(
                "ssl-passthrough passes TLS connections to the pod untouched, so these annotations \
                 do not apply to them (only to plain HTTP on the HTTP port): {}",
                others.join(", ")
            ),
        );
    }
    true
}

/// A canary Ingress passes nothing through (ingress-nginx skips canaries when it builds
/// servers): said with a Warning when it asks.
pub(super) fn ignored_on_canary(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    diags: &mut Diagnostics,
) {
    if Reader::new(annotations, object, diags).bool(ANNOTATION) == Some(true) {
        diags.warn(
            object,
            "SslPassthroughIgnored",
            "ssl-passthrough is ignored on a canary Ingress: only the main Ingress of a host \
             decides (as ingress-nginx)",
        );
    }
}

/// The route whose backend a passthrough host's connections go to: the `/` path, else the
/// Ingress default backend that catches `/`.
fn root_route(hb: &HostBuilder) -> Option<&crate::model::Route> {
    hb.routes
        .iter()
        .find(|r| r.written == "/")
        .map(|r| &r.route)
        .or(hb.fallback.as_ref())
}

/// Picks the upstream of every host an Ingress asked to pass through (see the module docs);
/// hosts that cannot be get a Warning on that Ingress.
pub(super) fn select(
    hosts: &BTreeMap<String, HostBuilder>,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Passthrough> {
    let mut out = BTreeMap::new();
    for (host, hb) in hosts {
        let Some(by) = &hb.passthrough else { continue };
        let ignored = |diags: &mut Diagnostics, why: &str| {
            diags.warn(
                by,
                "SslPassthroughIgnored",
                format!("ssl-passthrough for host {host:?} is ignored: {why}"),
            )
        };
        if host.is_empty() || host.starts_with("*.") {
            ignored(
                diags,
                "connections are passed by exact SNI name, and a rule without a host or with a \
                 wildcard host names none",
            );
            continue;
        }
        let upstream = match root_route(hb).map(|r| &r.action) {
            Some(RouteAction::Forward(ups)) => ups.first().map(|w| w.upstream.clone()),
            _ => None,
        };
        match upstream {
            Some(upstream) => {
                out.insert(
                    host.clone(),
                    Passthrough {
                        ingress: by.clone(),
                        upstream,
                    },
                );
            }
            None => ignored(diags, "the host has no path `/` with a working backend"),
        }
    }
    out
}

/// The Service ports an Ingress asked to pass through, flag or not: ingress-nginx marks their
/// upstream `SSLPassthrough`, which makes nginx proxy to them over HTTPS.
pub(super) fn tls_upstreams(hosts: &BTreeMap<String, HostBuilder>) -> HashSet<String> {
    hosts
        .iter()
        .filter(|(host, hb)| {
            hb.passthrough.is_some() && !host.is_empty() && !host.starts_with("*.")
        })
        .filter_map(|(_, hb)| match &root_route(hb)?.action {
            RouteAction::Forward(ups) => ups.first().map(|w| w.upstream.id.clone()),
            RouteAction::Respond { .. } | RouteAction::DefaultBackend => None,
        })
        .collect()
}

/// Routes to an upstream in `ids` over plain HTTP speak HTTPS to it instead (gRPC stays gRPC
/// over TLS), as nginx's `proxy_pass https://` for a passthrough upstream.
pub(super) fn speak_tls(routes: &mut [HostRoute], ids: &HashSet<String>) {
    if ids.is_empty() {
        return;
    }
    let tls = |u: &Arc<Upstream>| -> Arc<Upstream> {
        let protocol = match u.protocol {
            BackendProtocol::Http | BackendProtocol::H2c => BackendProtocol::Https,
            BackendProtocol::Grpc => BackendProtocol::Grpcs,
            p => p,
        };
        if !ids.contains(&u.id) || protocol == u.protocol {
            return u.clone();
        }
        Arc::new(Upstream {
            protocol,
            ..(**u).clone()
        })
    };
    for r in routes {
        if let RouteAction::Forward(ups) = &r.route.action {
            let ups = ups
                .iter()
                .map(|w| WeightedUpstream {
                    upstream: tls(&w.upstream),
                    weight: w.weight,
                })
                .collect();
            r.route.action = RouteAction::Forward(ups);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::translate::{TranslateConfig, Translator, fixtures::*, translate};
    use crate::{
        model::{Severity, Snapshot},
        store::{Key, Objects},
    };

    const ON: &str = "nginx.ingress.kubernetes.io/ssl-passthrough";

    fn config(enabled: bool) -> TranslateConfig {
        TranslateConfig {
            enable_ssl_passthrough: enabled,
            ..mk_config()
        }
    }

    /// `vault.example.com`: `/` to web, `/ui` to api, passthrough asked, with a rewrite;
    /// `www.example.com` plain, to web too.
    fn objects() -> Objects {
        let mut o = services_with_one_pod(&["web", "api"]);
        let vault = mk_ingress(
            "default",
            "vault",
            1,
            vec![(
                "vault.example.com",
                vec![("/", "Prefix", "web", "80"), ("/ui", "Prefix", "api", "80")],
            )],
        );
        let vault = with_annotation(vault, ON, "true");
        let vault = with_annotation(vault, "xdp-ingress.dev/rewrite-target", "/x");
        o.upsert(ing(vault));
        o.upsert(ing(mk_ingress(
            "default",
            "www",
            2,
            vec![("www.example.com", vec![("/", "Prefix", "web", "80")])],
        )));
        o
    }

    fn reasons(s: &Snapshot) -> Vec<(&str, Severity)> {
        s.diagnostics
            .iter()
            .map(|d| (d.reason.as_str(), d.severity))
            .collect()
    }

    fn protocols(s: &Snapshot, host: &str) -> Vec<BackendProtocol> {
        s.l7.hosts[host]
            .routes
            .iter()
            .filter_map(|r| match &r.action {
                RouteAction::Forward(ups) => Some(ups[0].upstream.protocol),
                RouteAction::Respond { .. } | RouteAction::DefaultBackend => None,
            })
            .collect()
    }

    #[test]
    fn with_the_flag_the_host_passes_to_its_root_path_backend() {
        let s = translate(&objects(), &config(true));
        let p = &s.l7.passthrough["vault.example.com"];
        assert_eq!(p.upstream.id, "default/web:80");
        assert_eq!(p.ingress.name, "vault");
        assert_eq!(s.l7.passthrough.len(), 1);
        // Other annotations are void over TLS: named in one warning.
        let void: Vec<_> = s
            .diagnostics
            .iter()
            .filter(|d| d.reason == "SslPassthroughAnnotationsVoid")
            .collect();
        assert_eq!(void.len(), 1, "{:?}", s.diagnostics);
        assert!(
            void[0].message.contains("rewrite-target"),
            "{}",
            void[0].message
        );
        assert!(!void[0].message.contains(": ssl-passthrough"));
        // nginx proxies plain HTTP to a passthrough upstream over HTTPS, wherever it is used;
        // /ui goes to another Service and keeps HTTP.
        assert_eq!(
            protocols(&s, "vault.example.com"),
            [BackendProtocol::Http, BackendProtocol::Https]
        );
        assert_eq!(protocols(&s, "www.example.com"), [BackendProtocol::Https]);
    }

    #[test]
    fn without_the_flag_it_is_terminated_with_a_warning() {
        let s = translate(&objects(), &config(false));
        assert!(s.l7.passthrough.is_empty());
        assert!(
            reasons(&s).contains(&("SslPassthroughDisabled", Severity::Warning)),
            "{:?}",
            s.diagnostics
        );
        assert!(
            !reasons(&s)
                .iter()
                .any(|(r, _)| *r == "SslPassthroughAnnotationsVoid")
        );
        // The pod terminates TLS itself, so it is spoken to over HTTPS (as ingress-nginx).
        assert_eq!(
            protocols(&s, "vault.example.com"),
            [BackendProtocol::Http, BackendProtocol::Https]
        );
        // Without the annotation nothing changes.
        let mut o = objects();
        o.upsert(ing(mk_ingress(
            "default",
            "vault",
            1,
            vec![("vault.example.com", vec![("/", "Prefix", "web", "80")])],
        )));
        let s = translate(&o, &config(true));
        assert!(s.l7.passthrough.is_empty());
        assert_eq!(protocols(&s, "www.example.com"), [BackendProtocol::Http]);
        assert!(
            reasons(&s)
                .iter()
                .all(|(r, _)| !r.starts_with("SslPassthrough"))
        );
    }

    #[test]
    fn hosts_without_a_root_path_or_an_exact_name_are_not_passed() {
        let mut o = services_with_one_pod(&["web"]);
        for (name, host, path) in [
            ("sub", "sub.example.com", "/sub"),
            ("wild", "*.wild.example.com", "/"),
        ] {
            let i = mk_ingress(
                "default",
                name,
                1,
                vec![(host, vec![(path, "Prefix", "web", "80")])],
            );
            o.upsert(ing(with_annotation(i, ON, "true")));
        }
        // An Ingress default backend stands in for a missing `/` (ingress-nginx's root location).
        let mut d = mk_ingress(
            "default",
            "dflt",
            1,
            vec![("d.example.com", vec![("/app", "Prefix", "web", "80")])],
        );
        d.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("web", "80")));
        o.upsert(ing(with_annotation(d, ON, "true")));
        let s = translate(&o, &config(true));
        assert_eq!(
            s.l7.passthrough.keys().collect::<Vec<_>>(),
            ["d.example.com"]
        );
        let ignored: Vec<_> = s
            .diagnostics
            .iter()
            .filter(|d| d.reason == "SslPassthroughIgnored")
            .map(|d| d.object.name.as_str())
            .collect();
        assert_eq!(ignored, ["sub", "wild"]);
        // A canary asks in vain, and is told.
        let mut o = objects();
        let c = mk_ingress(
            "default",
            "vault-canary",
            3,
            vec![("vault.example.com", vec![("/", "Prefix", "api", "80")])],
        );
        let c = with_annotation(c, "nginx.ingress.kubernetes.io/canary", "true");
        o.upsert(ing(with_annotation(c, ON, "true")));
        let s = translate(&o, &config(true));
        assert_eq!(
            s.l7.passthrough["vault.example.com"].upstream.id,
            "default/web:80"
        );
        assert!(
            s.diagnostics
                .iter()
                .any(|d| d.reason == "SslPassthroughIgnored" && d.object.name == "vault-canary")
        );
        // A bad value warns and means false.
        let mut o = services_with_one_pod(&["web"]);
        let i = mk_ingress(
            "default",
            "bad",
            1,
            vec![("b.example.com", vec![("/", "Prefix", "web", "80")])],
        );
        o.upsert(ing(with_annotation(i, ON, "yes")));
        let s = translate(&o, &config(true));
        assert!(s.l7.passthrough.is_empty());
        assert!(reasons(&s).contains(&("InvalidAnnotation", Severity::Warning)));
    }

    #[test]
    fn endpoint_changes_reach_the_passthrough_backend_on_the_fast_path() {
        let mut o = objects();
        let mut t = Translator::new(config(true));
        t.translate_shared(&o, None);
        o.upsert(mk_slice(
            "default",
            "web-abc",
            "web",
            "IPv4",
            &[(Some("http"), 8080)],
            &[("198.19.9.9", Some(true), None, None)],
        ));
        let touched: HashSet<Key> = [Key::new("default", "web")].into();
        assert!(t.endpoints_only(&o, &touched).is_some());
        let fast = t.translate_shared(&o, Some(&touched));
        let full = translate(&o, &config(true));
        assert_eq!(fast.l7.passthrough, full.l7.passthrough);
        let addrs: Vec<String> = fast.l7.passthrough["vault.example.com"]
            .upstream
            .endpoints
            .iter()
            .map(|e| e.addr.to_string())
            .collect();
        assert_eq!(addrs, ["198.19.9.9:8080"]);
    }
}
