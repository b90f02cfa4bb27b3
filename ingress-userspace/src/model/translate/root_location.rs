//! ingress-nginx's implicit root location, where error pages need it.
//!
//! ingress-nginx gives every server (host) a `location /` of its own: `createServers`
//! (internal/ingress/controller/controller.go) creates it with the first (oldest) Ingress that
//! names the host, proxying to the default upstream (that Ingress's `spec.defaultBackend`,
//! else the controller's default backend, whose built-in server answers 404), and applies
//! that Ingress's annotations to it (`locationApplyAnnotations`: auth, allowlist, CORS, custom
//! headers, redirects, rewrite, timeouts, `default-backend`, `custom-http-errors`, ...). A
//! `Prefix /` path of any Ingress replaces it. So on a host whose paths do not cover `/`, an
//! unmatched request gets the first Ingress's `custom-http-errors`: the default backend's 404
//! is replaced by the error backend's answer (`X-Code: 404`).
//!
//! Here an unmatched request goes to the default backend or the built-in 404 without any
//! Ingress's annotations (the Ingress API's behaviour), unless the first Ingress of a host has
//! an annotation that changes what such a request gets: error pages (`custom-http-errors`, its
//! own or the ConfigMap's), an access check (source ranges, basic or external auth, a denied
//! location), a redirect (`permanent-redirect`, `temporal-redirect`, `force-ssl-redirect`, or
//! `ssl-redirect` on a host with TLS), rate limits, CORS or custom response headers. Then the
//! host gets ingress-nginx's root location, a catch-all route tried last, served as an
//! unmatched request ([`RouteAction::DefaultBackend`]) with that Ingress's policy and error
//! pages. A host named by a rule without paths keeps its root location whatever it holds
//! (its requests are its own, not the default server's). The root location of requests
//! without a host (ingress-nginx's default server `_`) takes no Ingress's annotations, so
//! rules without a host never get one, unless a catch-all Ingress sets it ([`super::ingress`]);
//! a `spec.defaultBackend` of the first Ingress naming a host already makes such a route for
//! it (the fallback in [`super::ingress`]).

use std::sync::Arc;

use super::annotations::IngressOptions;
use crate::model::{ErrorPages, ObjectRef, PathMatch, Route, RouteAction, RouteMatch, RouteOrigin};
#[cfg(test)]
use crate::store::Object;

/// The root location the first Ingress of a host gives it. Whether a host keeps it is
/// [`needed`]'s decision, once the host's TLS is known (a host without any route keeps it
/// whatever it holds: it stands for the host's server, which answers every path).
/// `errors`: the Ingress's error pages ([`super::errors::parse`]); `created`: its creation
/// time (seconds).
pub(super) fn of_first_ingress(
    opts: &IngressOptions,
    errors: Option<&Arc<ErrorPages>>,
    object: &ObjectRef,
    created: i64,
) -> Route {
    let errors = errors.filter(|e| !e.intercept.is_empty());
    // ingress-nginx applies `rewrite-target` to `location /` as to any path written `/`.
    let policy = super::rewrite::for_location(&opts.policy, "/");
    Route {
        matches: RouteMatch::path(PathMatch::Prefix("/".into())),
        action: RouteAction::DefaultBackend,
        policy,
        origin: RouteOrigin {
            object: object.clone(),
            rule: None,
            path: None,
            created,
            // nginx's implicit `location /`.
            written_path: Some("/".into()),
        },
        canary: None,
        errors: errors.cloned(),
    }
}

/// Whether a host keeps its root location `root` ([`of_first_ingress`]); `tls`: whether the
/// host has a certificate (for `ssl-redirect`).
pub(super) fn needed(root: &Route, tls: bool) -> bool {
    root.errors.is_some() || changes_answer(&root.policy) || root.policy.redirects_to_https(tls)
}

/// Whether `p` changes what a request no path takes gets, whatever the host's TLS: an access
/// check (a client outside an allowlist gets 403 on a path no rule has, not the 404), a
/// redirect, a rate limit, CORS or response headers. ingress-nginx runs them all in its
/// `location /`.
fn changes_answer(p: &crate::model::RoutePolicy) -> bool {
    let access = !p.allow_source_ranges.is_empty()
        || !p.deny_source_ranges.is_empty()
        || p.auth.is_some()
        || p.forward_auth.is_some()
        || p.response.denied.is_some();
    access
        || p.redirect.is_some()
        || p.force_ssl_redirect == Some(true)
        || p.rate_limit.is_some()
        || p.response.cors.is_some()
        || !p.response.headers.is_empty()
}

/// Whether some route of a host takes every path, so that the root location is never reached
/// (ingress-nginx: a path `/` replaces it).
pub(super) fn covered(routes: &[Route]) -> bool {
    routes.iter().any(|r| {
        r.matches.headers().is_empty()
            && r.matches.method().is_none()
            && r.matches.query().is_empty()
            && matches!(
                &r.matches.path,
                PathMatch::Prefix(p) | PathMatch::CharPrefix(p) | PathMatch::Regex(p) if p == "/"
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Snapshot,
        translate::{fixtures::*, translate},
    };

    const ERRORS: &str = "nginx.ingress.kubernetes.io/custom-http-errors";
    const DEFAULT_BACKEND: &str = "nginx.ingress.kubernetes.io/default-backend";

    /// Ingress `name` (created at `created`) routing `host` `path` (Prefix) to `web`.
    fn app(name: &str, created: i64, host: &str, path: &str, ann: &[(&str, &str)]) -> Object {
        let mut i = mk_ingress(
            "default",
            name,
            created,
            vec![(host, vec![(path, "Prefix", "web", "80")])],
        );
        for (k, v) in ann {
            i = with_annotation(i, k, v);
        }
        ing(i)
    }

    fn snapshot(ingresses: Vec<Object>) -> Snapshot {
        let mut o = services_with_one_pod(&["web", "errors"]);
        for i in ingresses {
            o.upsert(i);
        }
        translate(&o, &mk_config())
    }

    /// The host's routes as (path, served as an unmatched request, Ingress).
    fn routes(s: &Snapshot, host: &str) -> Vec<(PathMatch, bool, String)> {
        let vh = if host.is_empty() {
            s.l7.any_host.as_ref().unwrap()
        } else {
            &s.l7.hosts[host]
        };
        vh.routes
            .iter()
            .map(|r| {
                (
                    r.matches.path.clone(),
                    matches!(r.action, RouteAction::DefaultBackend),
                    r.origin.object.name.clone(),
                )
            })
            .collect()
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    #[test]
    fn a_host_without_slash_gets_the_first_ingress_root_location_last() {
        let s = snapshot(vec![app(
            "app",
            1,
            "a.test",
            "/app",
            &[(DEFAULT_BACKEND, "errors"), (ERRORS, "404")],
        )]);
        assert_eq!(
            routes(&s, "a.test"),
            [
                (prefix("/app"), false, "app".into()),
                (prefix("/"), true, "app".into())
            ]
        );
        let root = s.l7.hosts["a.test"].routes.last().unwrap();
        let errors = root.errors.as_ref().unwrap();
        assert_eq!(errors.intercept, [404]);
        assert_eq!(
            errors.default_backend.as_ref().unwrap().service.name,
            "errors"
        );
        assert_eq!(root.origin.rule, None);
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    }

    #[test]
    fn without_intercepted_statuses_nothing_changes() {
        // No annotation, or `default-backend` alone: the root location would only send to the
        // default backend, which an unmatched request reaches anyway.
        for ann in [&[][..], &[(DEFAULT_BACKEND, "errors")][..]] {
            let s = snapshot(vec![app("app", 1, "a.test", "/app", ann)]);
            assert_eq!(
                routes(&s, "a.test"),
                [(prefix("/app"), false, "app".into())]
            );
        }
    }

    #[test]
    fn the_oldest_ingress_of_the_host_decides() {
        // The older Ingress intercepts nothing: no root location, whatever the newer asks.
        let s = snapshot(vec![
            app("new", 2, "a.test", "/new", &[(ERRORS, "404")]),
            app("old", 1, "a.test", "/old", &[]),
        ]);
        assert!(routes(&s, "a.test").iter().all(|(_, root, _)| !root));
        // The older one intercepts: its root location, its error pages.
        let s = snapshot(vec![
            app("new", 2, "a.test", "/new", &[(ERRORS, "503")]),
            app("old", 1, "a.test", "/old", &[(ERRORS, "404")]),
        ]);
        let root = s.l7.hosts["a.test"].routes.last().unwrap();
        assert!(matches!(root.action, RouteAction::DefaultBackend));
        assert_eq!(root.origin.object.name, "old");
        assert_eq!(root.errors.as_ref().unwrap().intercept, [404]);
    }

    #[test]
    fn a_path_slash_of_any_ingress_replaces_it() {
        for (path, ty) in [("/", "Prefix"), ("/", "ImplementationSpecific")] {
            let newer = ing(mk_ingress(
                "default",
                "root",
                2,
                vec![("a.test", vec![(path, ty, "web", "80")])],
            ));
            let s = snapshot(vec![
                app("app", 1, "a.test", "/app", &[(ERRORS, "404")]),
                newer,
            ]);
            assert!(
                routes(&s, "a.test").iter().all(|(_, root, _)| !root),
                "{ty}"
            );
        }
        // An Exact `/` does not take every path.
        let exact = ing(mk_ingress(
            "default",
            "root",
            2,
            vec![("a.test", vec![("/", "Exact", "web", "80")])],
        ));
        let s = snapshot(vec![
            app("app", 1, "a.test", "/app", &[(ERRORS, "404")]),
            exact,
        ]);
        assert!(routes(&s, "a.test").last().unwrap().1);
    }

    #[test]
    fn rules_without_host_get_none() {
        // ingress-nginx's default server keeps its own root location.
        let s = snapshot(vec![app("app", 1, "", "/app", &[(ERRORS, "404")])]);
        assert_eq!(routes(&s, ""), [(prefix("/app"), false, "app".into())]);
    }

    #[test]
    fn the_root_location_takes_the_first_ingress_annotations() {
        // ingress-nginx's `locationApplyAnnotations`: allowlist, auth, redirects, timeouts...
        // all apply to `location /` as to the Ingress's own paths.
        let s = snapshot(vec![app(
            "app",
            1,
            "a.test",
            "/app",
            &[
                (ERRORS, "404"),
                (
                    "nginx.ingress.kubernetes.io/allowlist-source-range",
                    "10.0.0.0/8",
                ),
                ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            ],
        )]);
        let vh = &s.l7.hosts["a.test"];
        let (own, root) = (&vh.routes[0], &vh.routes[1]);
        assert_eq!(root.policy, own.policy);
        assert_eq!(root.policy.allow_source_ranges.len(), 1);
        assert_eq!(root.policy.ssl_redirect, Some(false));
    }

    /// An access check alone gives the host its root location (found by a fresh-user trial:
    /// a client outside the allowlist got 404 on a path no rule has, where ingress-nginx's
    /// `location /` answers 403); an Ingress with neither checks nor error pages gives none.
    #[test]
    fn an_access_check_alone_gives_a_root_location() {
        for ann in [
            (
                "nginx.ingress.kubernetes.io/allowlist-source-range",
                "10.0.0.0/8",
            ),
            (
                "nginx.ingress.kubernetes.io/denylist-source-range",
                "10.0.0.0/8",
            ),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "not a cidr",
            ),
        ] {
            let s = snapshot(vec![app("app", 1, "a.test", "/app", &[ann])]);
            let routes = routes(&s, "a.test");
            assert_eq!(routes.len(), 2, "{ann:?}");
            assert_eq!(routes[1], (prefix("/"), true, "app".into()), "{ann:?}");
            assert_eq!(s.l7.hosts["a.test"].routes[1].errors, None);
        }
    }

    /// Redirects, rate limits and CORS of the first Ingress also reach a path no rule has, as
    /// in ingress-nginx's `location /`; `ssl-redirect` (on by default) only on a host with TLS.
    #[test]
    fn redirects_rate_limits_and_cors_give_a_root_location() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        for (k, v) in [
            ("limit-rps", "5"),
            ("permanent-redirect", "https://elsewhere.test/"),
            ("force-ssl-redirect", "true"),
            ("enable-cors", "true"),
        ] {
            let s = snapshot(vec![app(
                "app",
                1,
                "a.test",
                "/app",
                &[(&format!("{N}{k}"), v)],
            )]);
            assert_eq!(
                routes(&s, "a.test").last().unwrap(),
                &(prefix("/"), true, "app".into()),
                "{k}"
            );
        }
        // No TLS and nothing else: an unmatched request gets the plain 404.
        let s = snapshot(vec![app("app", 1, "a.test", "/app", &[])]);
        assert_eq!(
            routes(&s, "a.test"),
            [(prefix("/app"), false, "app".into())]
        );
        // TLS (here from a newer Ingress): `ssl-redirect` redirects every path, unless off.
        for (ssl_redirect, root) in [("true", true), ("false", false)] {
            let tls = with_tls(
                mk_ingress(
                    "default",
                    "tls",
                    2,
                    vec![("a.test", vec![("/tls", "Prefix", "web", "80")])],
                ),
                &["a.test"],
                "cert",
            );
            let s = snapshot(vec![
                app(
                    "app",
                    1,
                    "a.test",
                    "/app",
                    &[(&format!("{N}ssl-redirect"), ssl_redirect)],
                ),
                ing(tls),
            ]);
            assert_eq!(
                routes(&s, "a.test").last().unwrap().1,
                root,
                "ssl-redirect {ssl_redirect}"
            );
        }
    }

    #[test]
    fn the_router_tries_it_only_when_no_path_matches() {
        use crate::proxy::router::{CompiledAction, Lookup, RequestView, RouteTable};
        let s = snapshot(vec![app("app", 1, "a.test", "/app", &[(ERRORS, "404")])]);
        let (table, errors) = RouteTable::build(&s.l7, Arc::clone);
        assert!(errors.is_empty());
        let headers = http::HeaderMap::new();
        let served = |path: &str| {
            let view = RequestView {
                host: "a.test",
                path,
                query: None,
                method: "GET",
                headers: &headers,
                tls: false,
                listener_port: None,
                gateway_listener: false,
                local_addr: None,
            };
            match table.lookup(&view) {
                Lookup::Route { route, .. } => match route.action {
                    CompiledAction::DefaultBackend => "root location",
                    _ => "app",
                },
                _ => "unmatched",
            }
        };
        assert_eq!(served("/app/x"), "app");
        assert_eq!(served("/nothing"), "root location");
        assert_eq!(served("/"), "root location");
    }
}
