//! ingress-nginx's path, rewrite, redirect and host annotations and compatibility mode, end to
//! end on loopback: manifests are translated as the control plane does, the proxy runs
//! in-process, and what the client gets (status, `Location`) and the pod receives (path,
//! headers) is checked against ingress-nginx's documentation, cited at each case.

mod l7common;

use std::{net::SocketAddr, sync::Arc};

use http::StatusCode;
use l7common::*;
use testbed::http_backend::HttpBackend;
use xdp_ingress::model::Snapshot;

/// A Service `web` on `backend`, the IngressClass `nginx` served by us, and `ingresses`.
fn manifests(backend: SocketAddr, ingresses: &str) -> String {
    let service = service_yaml("web", backend);
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: nginx}}
spec: {{controller: xdp-ingress.dev/controller}}
---
{service}{ingresses}"#
    )
}

/// One Ingress of `class` for `host` with `paths` (`(path, pathType)`) to `web`.
fn ingress(
    name: &str,
    class: &str,
    host: &str,
    ann: &[(&str, &str)],
    paths: &[(&str, &str)],
) -> String {
    let ann: String = ann
        .iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    let paths: String = paths
        .iter()
        .map(|(p, t)| {
            format!(
                "      - {{path: {p:?}, pathType: {t}, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n{ann}    x: \"y\"\nspec:\n  ingressClassName: {class}\n  rules:\n  - host: {host}\n    http:\n      paths:\n{paths}"
    )
}

fn translated(yaml: &str) -> Arc<Snapshot> {
    let s = translate_manifests(0, yaml, |_| {});
    assert!(
        s.diagnostics.is_empty(),
        "unexpected diagnostics: {:?}",
        s.diagnostics
    );
    s
}

const N: &str = "nginx.ingress.kubernetes.io/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_target_capture_groups_prefix_header_and_regex_for_the_whole_host() {
    let a = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = manifests(
        a.addr,
        &[
            // examples/rewrite/README.md: `rewrite-target: /$2` on `/something(/|$)(.*)`,
            // with `x-forwarded-prefix: /something` (annotations.md, "X-Forwarded-Prefix").
            ingress(
                "rewrite",
                "xdp-ingress",
                "rewrite.bar.com",
                &[
                    (&format!("{N}rewrite-target"), "/$2"),
                    ("xdp-ingress.dev/x-forwarded-prefix", "/something"),
                ],
                &[("/something(/|$)(.*)", "ImplementationSpecific")],
            ),
            // Another Ingress of the same host, no annotation: its Prefix path becomes a
            // case-insensitive regex anchored at the start too (blog "Before you migrate",
            // sections 1-3; ingress-path-matching.md).
            ingress(
                "plain",
                "xdp-ingress",
                "rewrite.bar.com",
                &[],
                &[("/Plain", "Prefix")],
            ),
        ]
        .concat(),
    );
    proxy.handle.apply(translated(&yaml));
    // (request, path the pod receives): examples/rewrite's table.
    for (sent, want) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
        ("/SOMETHING/new?x=1", "/new?x=1"),
    ] {
        let g = get(&c, proxy.http(), "rewrite.bar.com", sent).await;
        assert_eq!(g.status, StatusCode::OK, "{sent}");
        assert_eq!(g.json()["path"], want, "{sent}");
        assert_eq!(g.json()["headers"]["x-forwarded-prefix"], "/something");
    }
    // The un-annotated Ingress: `~* "^/Plain"` matches `/plainly` (a Prefix would not),
    // forwarded unchanged and without X-Forwarded-Prefix.
    let g = get(&c, proxy.http(), "rewrite.bar.com", "/plainly").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["path"], "/plainly");
    assert!(g.json()["headers"]["x-forwarded-prefix"].is_null());

    // The blog's regex example: `/[A-Z]{3}` with use-regex matches `/abcd` (case-insensitive,
    // prefix).
    let yaml = manifests(
        a.addr,
        &ingress(
            "regex-match-ingress",
            "xdp-ingress",
            "regex-match.example.com",
            &[(&format!("{N}use-regex"), "true")],
            &[("/[A-Z]{3}", "ImplementationSpecific")],
        ),
    );
    proxy.handle.apply(translated(&yaml));
    let g = get(&c, proxy.http(), "regex-match.example.com", "/abcd").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["path"], "/abcd");
    let g = get(&c, proxy.http(), "regex-match.example.com", "/ab").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);

    // The blog, section 3 (with section 2's typo): `rewrite-target: "/uuid"` on Exact `/IP`
    // rewrites `/ip` to `/uuid`, and another Ingress's Exact `/Header` on the same host
    // matches `/headers`.
    let yaml = manifests(
        a.addr,
        &[
            ingress(
                "rewrite-target-ingress",
                "nginx",
                "rewrite-target.example.com",
                &[(&format!("{N}rewrite-target"), "/uuid")],
                &[("/IP", "Exact")],
            ),
            ingress(
                "rewrite-target-ingress-other",
                "nginx",
                "rewrite-target.example.com",
                &[],
                &[("/Header", "Exact")],
            ),
        ]
        .concat(),
    );
    proxy.handle.apply(translated(&yaml));
    let g = get(&c, proxy.http(), "rewrite-target.example.com", "/ip").await;
    assert_eq!(
        (g.status, g.json()["path"].clone()),
        (StatusCode::OK, "/uuid".into())
    );
    let g = get(&c, proxy.http(), "rewrite-target.example.com", "/headers").await;
    assert_eq!(
        (g.status, g.json()["path"].clone()),
        (StatusCode::OK, "/headers".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_app_root_aliases_www_and_upstream_vhost() {
    let a = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = manifests(
        a.addr,
        &[
            // annotations.md "Permanent Redirect": 301 by default, -code changes it.
            ingress(
                "perm",
                "xdp-ingress",
                "perm.test",
                &[(&format!("{N}permanent-redirect"), "https://www.google.com")],
                &[("/", "Prefix")],
            ),
            ingress(
                "perm308",
                "xdp-ingress",
                "perm308.test",
                &[
                    (&format!("{N}permanent-redirect"), "https://example.com/new"),
                    (&format!("{N}permanent-redirect-code"), "308"),
                ],
                &[("/", "Prefix")],
            ),
            // nginx's `return 301 URL` expands the URL's variables (a fresh-user trial found
            // `$request_uri` sent as written).
            ingress(
                "permvars",
                "xdp-ingress",
                "permvars.test",
                &[(
                    &format!("{N}permanent-redirect"),
                    "https://new.example$request_uri",
                )],
                &[("/", "Prefix")],
            ),
            ingress(
                "tempvars",
                "xdp-ingress",
                "tempvars.test",
                &[(
                    &format!("{N}temporal-redirect"),
                    "https://${host}.example/moved$is_args$args",
                )],
                &[("/", "Prefix")],
            ),
            // "Temporal Redirect": 302.
            ingress(
                "temp",
                "xdp-ingress",
                "temp.test",
                &[(
                    &format!("{N}temporal-redirect"),
                    "https://example.com/later",
                )],
                &[("/", "Prefix")],
            ),
            // examples/rewrite "App Root": `app-root: /app1` answers `/` with 302 to /app1.
            // "Server Alias" and "Custom upstream vhost" on the same Ingress.
            ingress(
                "approot",
                "xdp-ingress",
                "approot.bar.com",
                &[
                    (&format!("{N}app-root"), "/app1"),
                    (&format!("{N}server-alias"), "alias.bar.com"),
                    (&format!("{N}upstream-vhost"), "internal.svc"),
                ],
                &[("/", "Prefix")],
            ),
            // "Redirect from/to www": 308 (ConfigMap http-redirect-code) to the other name.
            ingress(
                "www",
                "xdp-ingress",
                "www.foo.test",
                &[(&format!("{N}from-to-www-redirect"), "true")],
                &[("/", "Prefix")],
            ),
        ]
        .concat(),
    );
    proxy.handle.apply(translated(&yaml));
    let location = |host: &'static str, path: &'static str| {
        let c = &c;
        let proxy = &proxy;
        async move {
            let g = get(c, proxy.http(), host, path).await;
            (g.status.as_u16(), g.header("location"))
        }
    };
    let before = a.requests();
    assert_eq!(
        location("perm.test", "/x").await,
        (301, "https://www.google.com".into())
    );
    assert_eq!(
        location("perm308.test", "/").await,
        (308, "https://example.com/new".into())
    );
    assert_eq!(
        location("temp.test", "/").await,
        (302, "https://example.com/later".into())
    );
    assert_eq!(
        location("permvars.test", "/a/b?c=1").await,
        (301, "https://new.example/a/b?c=1".into())
    );
    assert_eq!(
        location("tempvars.test", "/x?q=2").await,
        (302, "https://tempvars.test.example/moved?q=2".into())
    );
    assert_eq!(
        location("tempvars.test", "/x").await,
        (302, "https://tempvars.test.example/moved".into())
    );
    assert_eq!(
        location("approot.bar.com", "/").await,
        (302, "http://approot.bar.com/app1".into())
    );
    // ingress-nginx's redirect server (ngx_srv_redirect.lua): the request's scheme, the other
    // name, the port the request reached (always named), `$request_uri` less a trailing slash.
    assert_eq!(
        location("foo.test", "/a/b/").await,
        (
            308,
            format!("http://www.foo.test:{}/a/b", proxy.http().port())
        )
    );
    assert_eq!(a.requests(), before, "redirects never reach the pod");
    let g = get(&c, proxy.http(), "approot.bar.com", "/app1/x").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["host"], "internal.svc");
    assert_eq!(g.json()["headers"]["x-forwarded-host"], "approot.bar.com");
    let g = get(&c, proxy.http(), "alias.bar.com", "/y").await;
    assert_eq!(
        g.status,
        StatusCode::OK,
        "server-alias serves the Ingress's paths"
    );
    assert_eq!(g.json()["path"], "/y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash_redirect_in_compatibility_mode_only() {
    let a = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    // The blog "Before you migrate", section 4: Exact and Prefix paths `/my-path/` answer
    // `/my-path` with `301 Moved Permanently`, `Location: http://<host>/my-path/` (nginx's
    // `location` rule, ngx_http_core_module).
    let paths = [("/my-path/", "Prefix"), ("/exact/", "Exact")];
    let yaml = manifests(
        a.addr,
        &[
            ingress("compat", "nginx", "trailing.nginx.test", &[], &paths),
            ingress("plain", "xdp-ingress", "trailing.plain.test", &[], &paths),
        ]
        .concat(),
    );
    proxy.handle.apply(translated(&yaml));
    let before = a.requests();
    for (sent, want) in [
        ("/my-path", "http://trailing.nginx.test/my-path/"),
        ("/my-path?q=1", "http://trailing.nginx.test/my-path/?q=1"),
        ("/exact", "http://trailing.nginx.test/exact/"),
    ] {
        let g = get(&c, proxy.http(), "trailing.nginx.test", sent).await;
        assert_eq!(g.status, StatusCode::MOVED_PERMANENTLY, "{sent}");
        assert_eq!(g.header("location"), want, "{sent}");
    }
    assert_eq!(a.requests(), before);
    let g = get(&c, proxy.http(), "trailing.nginx.test", "/my-path/x").await;
    assert_eq!(
        (g.status, g.json()["path"].clone()),
        (StatusCode::OK, "/my-path/x".into())
    );
    // Another class: the Ingress API. Prefix `/my-path/` matches `/my-path`; Exact does not.
    let g = get(&c, proxy.http(), "trailing.plain.test", "/my-path").await;
    assert_eq!(
        (g.status, g.json()["path"].clone()),
        (StatusCode::OK, "/my-path".into())
    );
    let g = get(&c, proxy.http(), "trailing.plain.test", "/exact").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

/// ingress-nginx e2e `service_nil_backend.go` "should return 404 when backend service is
/// nil": a path whose backend is a `resource` (not a Service) is served by the default
/// backend (here the built-in 404), while another host's Service path serves as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_backend_is_served_by_the_default_backend() {
    let a = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let nil = "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: nil, namespace: default}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: nilbackend.svc.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend: {resource: {apiGroup: otherobj.testingress.com, kind: Anything, name: mytest}}\n";
    let yaml = manifests(
        a.addr,
        &(ingress("valid", "nginx", "valid.svc.com", &[], &[("/", "Prefix")]) + nil),
    );
    let s = translate_manifests(0, &yaml, |_| {});
    assert!(
        s.diagnostics.iter().all(|d| d.reason == "ResourceBackend"),
        "{:?}",
        s.diagnostics
    );
    proxy.handle.apply(s);
    let g = get(&c, proxy.http(), "valid.svc.com", "/").await;
    assert_eq!(g.status, StatusCode::OK);
    let before = a.requests();
    let g = get(&c, proxy.http(), "nilbackend.svc.com", "/").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(a.requests(), before);
}

/// ingress-nginx e2e `annotations/relativeredirects.go`: a relative `permanent-redirect` is a
/// 301 to `http://rr.foo.com/new-location` (nginx's `absolute_redirect`) and, with
/// `relative-redirects: "true"`, to `/new-location` as written; the compatibility mode's
/// trailing-slash 301 (nginx's own) is relative too under `relative-redirects`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_redirects_keep_the_locations_nginx_makes_relative() {
    let a = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let to = |rel: &str| {
        [
            (
                format!("{N}permanent-redirect"),
                "/new-location".to_string(),
            ),
            (format!("{N}relative-redirects"), rel.to_string()),
        ]
    };
    let (abs, rel) = (to("false"), to("true"));
    let slash = [(format!("{N}relative-redirects"), "true".to_string())];
    let yaml = manifests(
        a.addr,
        &[
            ingress(
                "abs",
                "nginx",
                "rr.foo.com",
                &ann(&abs),
                &[("/something", "Prefix")],
            ),
            ingress(
                "rel",
                "nginx",
                "rel.foo.com",
                &ann(&rel),
                &[("/something", "Prefix")],
            ),
            ingress(
                "slash",
                "nginx",
                "slash.foo.com",
                &ann(&slash),
                &[("/foo/", "Prefix")],
            ),
        ]
        .concat(),
    );
    proxy.handle.apply(translated(&yaml));
    let before = a.requests();
    for (host, sent, want) in [
        ("rr.foo.com", "/something", "http://rr.foo.com/new-location"),
        ("rel.foo.com", "/something", "/new-location"),
        ("slash.foo.com", "/foo?q=1", "/foo/?q=1"),
    ] {
        let g = get(&c, proxy.http(), host, sent).await;
        assert_eq!(g.status, StatusCode::MOVED_PERMANENTLY, "{host}{sent}");
        assert_eq!(g.header("location"), want, "{host}{sent}");
    }
    assert_eq!(a.requests(), before, "redirects never reach the pod");
}

fn ann(a: &[(String, String)]) -> Vec<(&str, &str)> {
    a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
