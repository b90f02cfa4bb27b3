//! Expected values from ingress-nginx's annotations page ("External Authentication"), its
//! ConfigMap page (`global-auth-*`, `no-auth-locations`), its template (`buildAuthSignURL`,
//! `shouldApplyGlobalAuth`, `isLocationInLocationList`) and `annotations/authreq`.

use std::sync::Arc;

use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::util::intstr::IntOrString};

use super::super::{fixtures::*, translate};
use crate::{
    model::{ForwardAuth, RouteAuth, Severity, Snapshot},
    store::{Key, Object, Objects},
};

fn cm(ns: &str, name: &str, data: &[(&str, &str)]) -> Object {
    Object::ConfigMap(Arc::new(ConfigMap {
        metadata: meta(ns, name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }))
}

/// Ingress `default/a` for `a.test` with paths `/` and `/.well-known/acme-challenge/x`, and an
/// auth Service `authelia.default` (port 80 -> 9091, one pod 198.19.9.9).
fn objects(annotations: &[(&str, &str)], extra: Vec<Object>) -> Objects {
    let mut o = services_with_one_pod(&["web"]);
    o.upsert(svc(mk_service(
        "default",
        "authelia",
        "ClusterIP",
        vec![mk_port(Some("http"), 80, IntOrString::Int(9091))],
    )));
    o.upsert(mk_slice(
        "default",
        "authelia-abc",
        "authelia",
        "IPv4",
        &[(Some("http"), 9091)],
        &[("198.19.9.9", Some(true), None, None)],
    ));
    let mut i = mk_ingress(
        "default",
        "a",
        1,
        vec![(
            "a.test",
            vec![
                ("/", "Prefix", "web", "80"),
                ("/.well-known/acme-challenge/x", "Prefix", "web", "80"),
            ],
        )],
    );
    for (k, v) in annotations {
        i = with_annotation(i, &format!("nginx.ingress.kubernetes.io/{k}"), v);
    }
    o.upsert(ing(i));
    for x in extra {
        o.upsert(x);
    }
    o
}

fn route<'s>(s: &'s Snapshot, path: &str) -> &'s crate::model::Route {
    s.l7.hosts["a.test"]
        .routes
        .iter()
        .find(|r| r.origin.written_path.as_deref() == Some(path))
        .unwrap_or_else(|| panic!("no route {path}"))
}

fn forward(s: &Snapshot) -> Arc<ForwardAuth> {
    route(s, "/")
        .policy
        .forward_auth
        .clone()
        .unwrap_or_else(|| panic!("{:?}", route(s, "/").policy.auth))
}

fn reasons(s: &Snapshot) -> Vec<(Severity, String)> {
    s.diagnostics
        .iter()
        .map(|d| (d.severity, d.reason.clone()))
        .collect()
}

/// oauth2-proxy's documented set (ingress-nginx docs/examples/auth/oauth-external-auth): the
/// sign-in URL already has `rd`, so it is used as written.
#[test]
fn oauth2_proxy_annotations() {
    let o = objects(
        &[
            ("auth-url", "https://$host/oauth2/auth"),
            (
                "auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
        ],
        vec![],
    );
    let s = translate(&o, &mk_config());
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let f = forward(&s);
    assert_eq!(f.url.as_str(), "https://$host/oauth2/auth");
    assert_eq!(f.host.as_str(), "$host");
    assert_eq!(
        f.signin.as_ref().map(|s| s.as_str()),
        Some("https://$host/oauth2/start?rd=$escaped_request_uri")
    );
    assert_eq!(f.method, None);
    assert_eq!(f.service, None);
    assert!(!f.global);
}

/// Authelia's documented set: a Service URL resolved to its endpoints, `rd` appended after the
/// sign-in URL's own query (`buildAuthSignURL`).
#[test]
fn authelia_annotations_and_service_resolution() {
    let o = objects(
        &[
            ("auth-method", "GET"),
            (
                "auth-url",
                "http://authelia.default.svc.cluster.local/api/authz/auth-request",
            ),
            ("auth-signin", "https://auth.example.com?rm=$request_method"),
            (
                "auth-response-headers",
                "Remote-User,Remote-Name,Remote-Groups,Remote-Email",
            ),
        ],
        vec![],
    );
    let s = translate(&o, &mk_config());
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let f = forward(&s);
    assert_eq!(f.method.as_deref(), Some("GET"));
    assert_eq!(
        f.signin.as_ref().map(|s| s.as_str()),
        Some(
            "https://auth.example.com?rm=$request_method\
             &rd=$pass_access_scheme://$http_host$escaped_request_uri"
        )
    );
    assert_eq!(
        f.response_headers,
        [
            "Remote-User",
            "Remote-Name",
            "Remote-Groups",
            "Remote-Email"
        ]
    );
    let svc = f.service.as_ref().expect("resolved");
    assert_eq!(svc.endpoints, ["198.19.9.9:9091".parse().unwrap()]);
    assert_eq!(
        (svc.host.as_str(), svc.port),
        ("authelia.default.svc.cluster.local", 80)
    );
    assert_eq!(f.host.as_str(), "authelia.default.svc.cluster.local");
}

#[test]
fn signin_redirect_param_and_url_forms() {
    use super::signin_url;
    let orig = "$pass_access_scheme://$http_host$escaped_request_uri";
    assert_eq!(
        signin_url("https://auth/start", "rd"),
        format!("https://auth/start?rd={orig}")
    );
    assert_eq!(
        signin_url("https://auth/start?x=1", "return_to"),
        format!("https://auth/start?x=1&return_to={orig}")
    );
    assert_eq!(
        signin_url("https://auth/start?rd=/home", "rd"),
        "https://auth/start?rd=/home"
    );
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-signin", "https://auth.example.com/login"),
            ("auth-signin-redirect-param", "next"),
        ],
        vec![],
    );
    let f = forward(&translate(&o, &mk_config()));
    assert_eq!(
        f.signin.as_ref().unwrap().as_str(),
        format!("https://auth.example.com/login?next={orig}")
    );
    // A path, as ingress-nginx takes it (`return 302 /oauth2/start?rd=...`), kept as written
    // (the proxy completes it as nginx's `absolute_redirect` does); a relative one without
    // `/` is still refused.
    assert!(super::check_signin("/oauth2/start").is_ok());
    assert!(super::check_signin("oauth2/start").is_err());
    assert!(super::check_signin("//evil.example/x").is_ok());
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-signin", "/oauth2/start"),
        ],
        vec![],
    );
    let f = forward(&translate(&o, &mk_config()));
    assert_eq!(
        f.signin.as_ref().unwrap().as_str(),
        format!("/oauth2/start?rd={orig}")
    );
    assert!(!f.signin_relative);
}

/// The key of ingress-nginx's own examples (annotations.md `auth-cache-key`, configmap.md
/// `global-auth-cache-key`: `$remote_user$http_authorization`) is accepted, not a denial.
#[test]
fn documented_cache_key_example_is_accepted() {
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-cache-key", "$remote_user$http_authorization"),
        ],
        vec![],
    );
    let s = translate(&o, &mk_config());
    assert!(route(&s, "/").policy.response.denied.is_none());
    assert_eq!(
        forward(&s).cache.as_ref().unwrap().key.as_str(),
        "$remote_user$http_authorization"
    );
    assert_eq!(reasons(&s), []);
}

#[test]
fn cache_key_duration_and_cookies() {
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-cache-key", "$remote_addr$http_authorization"),
            ("auth-cache-duration", "200 202 10m, 401 1m 30s"),
            ("auth-always-set-cookie", "true"),
            ("auth-request-redirect", "https://$host/landing"),
        ],
        vec![],
    );
    let f = forward(&translate(&o, &mk_config()));
    let c = f.cache.as_ref().unwrap();
    assert_eq!(c.key.as_str(), "$remote_addr$http_authorization");
    assert_eq!(c.valid.len(), 2);
    assert_eq!(
        (c.valid[0].statuses.clone(), c.valid[0].ttl.as_secs()),
        (vec![200, 202], 600)
    );
    assert_eq!(
        (c.valid[1].statuses.clone(), c.valid[1].ttl.as_secs()),
        (vec![401], 90)
    );
    assert!(f.always_set_cookie);
    assert_eq!(
        f.request_redirect.as_ref().unwrap().as_str(),
        "https://$host/landing"
    );
    // Without auth-cache-duration: ingress-nginx's `200 202 401 5m`.
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-cache-key", "$cookie_session"),
        ],
        vec![],
    );
    let f = forward(&translate(&o, &mk_config()));
    let v = &f.cache.as_ref().unwrap().valid;
    assert_eq!(
        (v[0].statuses.clone(), v[0].ttl.as_secs()),
        (vec![200, 202, 401], 300)
    );
    // No code: nginx's 200 301 302; `any`: every status.
    let v = super::parse_cache_durations("5m, any 1h").unwrap();
    assert_eq!(v[0].statuses, [200, 301, 302]);
    assert!(v[1].statuses.is_empty());
}

#[test]
fn proxy_set_headers_from_a_configmap_of_the_namespace() {
    let headers = cm("default", "auth-headers", &[("X-Client", "$remote_addr")]);
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-proxy-set-headers", "auth-headers"),
        ],
        vec![headers],
    );
    let f = forward(&translate(&o, &mk_config()));
    assert_eq!(f.proxy_set_headers.len(), 1);
    assert_eq!(f.proxy_set_headers[0].0, "X-Client");
    assert_eq!(f.proxy_set_headers[0].1.as_str(), "$remote_addr");
}

/// Every value that keeps the auth from being set up as written denies the location (503),
/// never serves it open; the warning names the value.
#[test]
fn bad_values_deny_the_location() {
    let url = ("auth-url", "http://auth.example.com/check");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("auth-url", "http://$upstream_addr/x")],
            "unknown nginx variable",
        ),
        (vec![("auth-url", "ftp://auth/x")], "not an http"),
        // ingress-nginx's e2e "with invalid auth-url should deny whole location" (503).
        (
            vec![("auth-url", "https://invalid..auth.url")],
            "empty label",
        ),
        (vec![url, ("auth-method", "FETCH")], "not an HTTP method"),
        (
            vec![url, ("auth-response-headers", "X-Ok, Bad Header")],
            "not a header name",
        ),
        (
            vec![url, ("auth-response-headers", "Content-Length")],
            "not a header name",
        ),
        (
            vec![url, ("auth-signin", "https://$hots/start")],
            "unknown nginx variable",
        ),
        (
            vec![
                url,
                ("auth-cache-key", "$remote_addr"),
                ("auth-cache-duration", "5x"),
            ],
            "not a time",
        ),
        (
            vec![url, ("auth-proxy-set-headers", "missing")],
            "not found",
        ),
        (
            vec![url, ("auth-proxy-set-headers", "other/h")],
            "namespace",
        ),
    ];
    for (annotations, why) in cases {
        let o = objects(&annotations, vec![cm("other", "h", &[("X-A", "b")])]);
        let s = translate(&o, &mk_config());
        let r = route(&s, "/");
        match &r.policy.auth {
            Some(RouteAuth::Unavailable { reason }) => {
                assert!(reason.contains(why), "{annotations:?}: {reason}")
            }
            other => panic!("{annotations:?}: {other:?}"),
        }
        assert_eq!(r.policy.forward_auth, None);
        assert_eq!(
            s.diagnostics.len(),
            1,
            "{annotations:?}: {:?}",
            s.diagnostics
        );
        // It denies the location: an error (manifest-directory.md's log levels).
        assert_eq!(s.diagnostics[0].severity, Severity::Error);
    }
}

fn controller(data: &[(&str, &str)]) -> (Object, crate::model::translate::TranslateConfig) {
    let mut cfg = mk_config();
    cfg.configmap = Some(Key::new("ingress", "controller"));
    (cm("ingress", "controller", data), cfg)
}

/// `global-auth-url` covers every Ingress without its own `auth-url` unless it says
/// `enable-global-auth: "false"`; `no-auth-locations` (default `/.well-known/acme-challenge`)
/// takes authentication off its paths.
#[test]
fn global_auth_opt_out_and_no_auth_locations() {
    let (c, cfg) = controller(&[
        ("global-auth-url", "http://authelia.default.svc/api/verify"),
        ("global-auth-signin", "https://auth.example.com/"),
        ("global-auth-response-headers", "Remote-User"),
        ("global-auth-method", "POST"),
    ]);
    let s = translate(&objects(&[], vec![c.clone()]), &cfg);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let f = forward(&s);
    assert!(f.global);
    assert_eq!(f.method.as_deref(), Some("POST"));
    assert_eq!(f.response_headers, ["Remote-User"]);
    assert!(
        f.service.is_some(),
        "svc without cluster domain resolves too"
    );
    // The default no-auth-locations entry.
    let acme = route(&s, "/.well-known/acme-challenge/x");
    assert_eq!(
        (acme.policy.forward_auth.clone(), acme.policy.auth.clone()),
        (None, None)
    );

    let s = translate(
        &objects(&[("enable-global-auth", "false")], vec![c.clone()]),
        &cfg,
    );
    assert_eq!(route(&s, "/").policy.forward_auth, None);

    // The Ingress's own auth-url wins over the global one.
    let s = translate(
        &objects(&[("auth-url", "http://own.example.com/")], vec![c]),
        &cfg,
    );
    assert!(!forward(&s).global);

    // An operator's own list replaces the default; basic auth is lifted there too.
    let (c, cfg) = controller(&[
        ("global-auth-url", "http://auth.example.com/"),
        ("no-auth-locations", "/public, /.well-known"),
    ]);
    let mut o = objects(&[], vec![c]);
    let mut i = mk_ingress(
        "default",
        "b",
        2,
        vec![(
            "b.test",
            vec![
                ("/public/x", "Prefix", "web", "80"),
                ("/p", "Prefix", "web", "80"),
            ],
        )],
    );
    i = with_annotation(i, "nginx.ingress.kubernetes.io/auth-type", "basic");
    i = with_annotation(i, "nginx.ingress.kubernetes.io/auth-secret", "missing");
    o.upsert(ing(i));
    let s = translate(&o, &cfg);
    let b = &s.l7.hosts["b.test"].routes;
    let of = |p: &str| {
        b.iter()
            .find(|r| r.origin.written_path.as_deref() == Some(p))
            .unwrap()
    };
    assert_eq!(of("/public/x").policy.auth, None);
    assert_eq!(of("/public/x").policy.forward_auth, None);
    assert!(of("/p").policy.forward_auth.is_some());
    assert!(matches!(
        of("/p").policy.auth,
        Some(RouteAuth::Unavailable { .. })
    ));
}

/// A bad global value denies what global auth covers (ingress-nginx would drop the value, and
/// with an invalid URL turn global auth off: open).
#[test]
fn a_bad_global_value_denies_never_opens() {
    let (c, cfg) = controller(&[
        ("global-auth-url", "http://auth.example.com/"),
        ("global-auth-method", "FETCH"),
    ]);
    let s = translate(&objects(&[], vec![c]), &cfg);
    assert!(matches!(
        route(&s, "/").policy.auth,
        Some(RouteAuth::Unavailable { .. })
    ));
    assert_eq!(
        reasons(&s),
        [(Severity::Error, "GlobalAuthDenied".to_string())]
    );
}

/// The auth Service's endpoint changes reach the route (the fast endpoints-only path must not
/// keep the old ones).
#[test]
fn auth_service_endpoints_follow_their_slices() {
    use std::collections::HashSet;
    let mut o = objects(
        &[("auth-url", "http://authelia.default.svc.cluster.local/")],
        vec![],
    );
    let mut t = super::super::Translator::new(mk_config());
    let first = t.translate_shared(&o, None);
    let eps = |s: &Snapshot| forward(s).service.clone().unwrap().endpoints;
    assert_eq!(eps(&first), ["198.19.9.9:9091".parse().unwrap()]);
    o.upsert(mk_slice(
        "default",
        "authelia-abc",
        "authelia",
        "IPv4",
        &[(Some("http"), 9091)],
        &[("198.19.9.10", Some(true), None, None)],
    ));
    let changed: HashSet<Key> = [Key::new("default", "authelia")].into();
    let next = t.translate_shared(&o, Some(&changed));
    assert_eq!(eps(&next), ["198.19.9.10:9091".parse().unwrap()]);
}

/// The `auth-proxy-set-headers` ConfigMap is a dependency: its creation re-translates (hot),
/// another ConfigMap's does not.
#[test]
fn the_proxy_set_headers_configmap_is_a_dependency() {
    use crate::store::Change;
    let o = objects(
        &[
            ("auth-url", "http://auth.example.com/check"),
            ("auth-proxy-set-headers", "auth-headers"),
        ],
        vec![],
    );
    let mut t = super::super::Translator::new(mk_config());
    let first = t.translate(&o);
    assert!(matches!(
        route(&first, "/").policy.auth,
        Some(RouteAuth::Unavailable { .. })
    ));
    let created = Change::Upsert(cm("default", "auth-headers", &[("X-A", "b")]));
    assert!(t.affects(&o, &created));
    assert!(!t.affects(&o, &Change::Upsert(cm("default", "unrelated", &[]))));
}

/// Our own prefix works as ingress-nginx's (and wins when both are set).
#[test]
fn our_prefix() {
    let mut o = objects(&[("auth-url", "http://nginx.example.com/")], vec![]);
    let mut i = mk_ingress(
        "default",
        "a",
        1,
        vec![("a.test", vec![("/", "Prefix", "web", "80")])],
    );
    i = with_annotation(
        i,
        "nginx.ingress.kubernetes.io/auth-url",
        "http://nginx.example.com/",
    );
    i = with_annotation(i, "xdp-ingress.dev/auth-url", "http://ours.example.com/");
    i = with_annotation(i, "xdp-ingress.dev/auth-method", "HEAD");
    o.upsert(ing(i));
    let s = translate(&o, &mk_config());
    let f = s.l7.hosts["a.test"].routes[0]
        .policy
        .forward_auth
        .clone()
        .unwrap();
    assert_eq!(f.url.as_str(), "http://ours.example.com/");
    assert_eq!(f.method.as_deref(), Some("HEAD"));
}

/// The sign-in location's `absolute_redirect`: the ConfigMap's `relative-redirects` (written
/// in nginx's http block) reaches it, for an Ingress's own `auth-signin` and the global one;
/// the annotation (written in the path's location, a sibling of the sign-in location) does not.
#[test]
fn signin_is_relative_under_the_configmap_key_only() {
    let own = [
        ("auth-url", "http://auth.example.com/check"),
        ("auth-signin", "/oauth2/start"),
    ];
    let (c, cfg) = controller(&[("relative-redirects", "true")]);
    let f = forward(&translate(&objects(&own, vec![c]), &cfg));
    assert!(f.signin_relative);
    let (c, cfg) = controller(&[
        ("relative-redirects", "true"),
        ("global-auth-url", "http://auth.example.com/check"),
        ("global-auth-signin", "/oauth2/start"),
    ]);
    let f = forward(&translate(&objects(&[], vec![c]), &cfg));
    assert!(f.global && f.signin_relative);
    let mut with_annotation = own.to_vec();
    with_annotation.push(("relative-redirects", "true"));
    let f = forward(&translate(&objects(&with_annotation, vec![]), &mk_config()));
    assert!(!f.signin_relative);
}
