//! ingress-nginx's controller ConfigMap keys on request and response headers and its global
//! blocks, end to end through the proxy: ConfigMaps and an Ingress from a manifest directory's
//! parser, translated, served; what the pod receives and what the client gets. Expected
//! values from ingress-nginx's nginx.tmpl (`proxy_set_header` lines of a location,
//! `proxy_hide_header`, the `$block_ua` / `$block_ref` maps) and its e2e tests
//! (test/e2e/settings).

mod l7common;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use l7common::*;
use xdp_ingress::{model::Snapshot, store::Key};

/// An Ingress for `host` to one pod at `backend`, after the `extra` manifests.
fn ingress(host: &str, backend: SocketAddr, annotations: &[(&str, &str)], extra: &str) -> String {
    let service = service_yaml("web", backend);
    let ann = nginx_annotations_yaml(annotations);
    format!(
        r#"{service}{extra}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: api
  namespace: default
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

/// Translated with `--configmap ingress-nginx/cm` (the ConfigMap of [`configmap_yaml`]).
fn translated(yaml: &str) -> Arc<Snapshot> {
    translate_manifests(1, yaml, |c| {
        c.configmap = Some(Key::new("ingress-nginx", "cm"));
    })
}

fn request(
    addr: SocketAddr,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .uri(format!("http://{addr}{target}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// The header `name` as the pod received it ("" without one).
fn at_pod(g: &Got, name: &str) -> String {
    g.json()["headers"][name]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `proxy-set-headers` (docs/examples/customization/custom-headers): the named ConfigMap's
/// headers reach the pod on every request, with nginx variables expanded and a client's own
/// value replaced; an empty value removes the field; an invalid or
/// hop-by-hop name is left out with a Warning, the rest apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_set_headers_reach_the_pod_on_every_request() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let cms = format!(
        "{}{}",
        configmap_yaml(&[("proxy-set-headers", "ingress-nginx/custom-headers")]),
        r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: custom-headers, namespace: ingress-nginx}
data:
  X-Different-Name: "true"
  X-Request-Start: "t=${msec}"
  X-Using-Nginx-Controller: "true"
  X-Original-Host: "$host$request_uri from ${remote_addr}"
  X-Agent: "$http_user_agent"
  X-Drop: ""
  Connection: close
"#
    );
    let snap = translated(&ingress("hdr.test", a.addr, &[], &cms));
    let mut warned: Vec<String> = snap
        .diagnostics
        .iter()
        .filter(|d| d.reason == "InvalidConfigMapValue")
        .map(|d| d.message.clone())
        .collect();
    warned.sort();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].contains("Connection"), "{warned:?}");
    assert!(warned[1].contains("$msec"), "{warned:?}");
    proxy.handle.apply(snap);
    let c = http1_client();
    let g = send(
        &c,
        request(
            proxy.http(),
            "hdr.test",
            "/p?q=1",
            &[
                ("user-agent", "curl/8"),
                ("x-different-name", "client's"),
                ("x-drop", "1"),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        at_pod(&g, "x-different-name"),
        "true",
        "replaces the client's"
    );
    assert_eq!(at_pod(&g, "x-using-nginx-controller"), "true");
    assert_eq!(
        at_pod(&g, "x-original-host"),
        "hdr.test/p?q=1 from 127.0.0.1"
    );
    assert_eq!(at_pod(&g, "x-agent"), "curl/8");
    assert_eq!(at_pod(&g, "x-request-start"), "", "left out");
    assert_eq!(at_pod(&g, "x-drop"), "", "an empty value sends no field");
    assert_ne!(at_pod(&g, "connection"), "close");
}

/// `hide-headers` (nginx `proxy_hide_header`): the pod's headers of those names do not reach
/// the client, any other does; `add-headers`, which nginx adds afterwards, still may set one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_headers_are_not_passed_to_the_client() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let cms = format!(
        "{}{}",
        configmap_yaml(&[
            ("hide-headers", "X-Powered-By, x-internal"),
            ("add-headers", "ingress-nginx/add"),
        ]),
        "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: add, namespace: ingress-nginx}\ndata: {X-Internal: proxy}\n"
    );
    let snap = translated(&ingress("hide.test", a.addr, &[], &cms));
    assert!(
        snap.diagnostics
            .iter()
            .all(|d| d.reason != "InvalidConfigMapValue"),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    let c = http1_client();
    let echo = [(
        "x-echo-set-header",
        "X-Powered-By:PHP/8,X-Internal:pod,X-Kept:yes",
    )];
    let g = send(&c, request(proxy.http(), "hide.test", "/", &echo))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.headers.get("x-powered-by").is_none(), "{:?}", g.headers);
    assert_eq!(g.header("x-kept"), "yes");
    assert_eq!(g.header("x-internal"), "proxy", "add-headers' own");
}

/// `proxy-add-original-uri-header: "true"`: the pod gets `X-Original-URI: $request_uri`, the
/// target as the client sent it (query included, before any rewrite), a client's own
/// replaced; without the key (default false) the client's own passes as any header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_uri_header_is_the_target_as_sent() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let spoof = [("x-original-uri", "/spoofed")];
    for (on, want) in [("true", "/a/./b?x=1&y"), ("false", "/spoofed")] {
        let cms = configmap_yaml(&[("proxy-add-original-uri-header", on)]);
        let rewrite = [("rewrite-target", "/other")];
        proxy
            .handle
            .apply(translated(&ingress("uri.test", a.addr, &rewrite, &cms)));
        let g = send(
            &c,
            request(proxy.http(), "uri.test", "/a/./b?x=1&y", &spoof),
        )
        .await
        .unwrap();
        assert_eq!(g.status, StatusCode::OK, "{on}");
        assert_eq!(g.json()["path"], "/other?x=1&y", "{on}");
        assert_eq!(at_pod(&g, "x-original-uri"), want, "{on}");
    }
}

/// `block-user-agents` / `block-referers` with ingress-nginx's own e2e values
/// (test/e2e/settings/global_access_block.go): a match is 403 on every request, a host no
/// Ingress has included (its `if ($block_ua)` opens every server block, the default one's too);
/// anything else passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_user_agents_and_referers_get_403_everywhere() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let cms = configmap_yaml(&[
        (
            "block-user-agents",
            "~*chrome\\/68\\.0\\.3440\\.106\\ safari\\/537\\.36,AlphaBot",
        ),
        ("block-referers", "~*example\\.com,qwerty"),
    ]);
    let snap = translated(&ingress("block.test", a.addr, &[], &cms));
    assert!(
        snap.diagnostics
            .iter()
            .all(|d| d.reason != "InvalidConfigMapValue"),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    let c = http1_client();
    let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/68.0.3440.106 Safari/537.36";
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 11_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/11.0 Mobile/15E148 Safari/604.1";
    for (host, header, value, want) in [
        ("block.test", "user-agent", chrome, StatusCode::FORBIDDEN),
        (
            "block.test",
            "user-agent",
            "AlphaBot",
            StatusCode::FORBIDDEN,
        ),
        ("block.test", "user-agent", iphone, StatusCode::OK),
        (
            "block.test",
            "referer",
            "example.com",
            StatusCode::FORBIDDEN,
        ),
        ("block.test", "referer", "qwerty", StatusCode::FORBIDDEN),
        ("block.test", "referer", "qwerty123", StatusCode::OK),
        (
            "nobody.test",
            "user-agent",
            "AlphaBot",
            StatusCode::FORBIDDEN,
        ),
        ("nobody.test", "user-agent", iphone, StatusCode::NOT_FOUND),
    ] {
        let g = send(&c, request(proxy.http(), host, "/", &[(header, value)]))
            .await
            .unwrap();
        assert_eq!(g.status, want, "{host} {header}: {value}");
        if want == StatusCode::OK {
            assert_eq!(g.pod(), "a");
        }
    }
    assert_eq!(a.requests(), 2, "no blocked request reaches the pod");
}

/// `proxy-redirect-from` / `-to` and `proxy-cookie-domain` / `-path` (ingress-nginx's e2e
/// values, test/e2e/annotations/proxy.go, and nginx's `proxy_redirect`, `proxy_cookie_*`): the
/// pod's `Location` start is replaced (made absolute when it starts with `/`), its cookies'
/// `Domain` and `Path` rewritten; `proxy-redirect-from: off` leaves `Location` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_redirect_and_cookie_rewrite_the_pods_answer() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let echo = [(
        "x-echo-set-header",
        "Location:http://pod.internal/one/x?y=1,Set-Cookie:s=1; Domain=.localhost; Path=/one/two",
    )];
    let annotations = [
        ("proxy-redirect-from", "http://pod.internal/one/"),
        ("proxy-redirect-to", "/app/"),
        ("proxy-cookie-domain", "localhost example.org"),
        ("proxy-cookie-path", "/one/ /"),
    ];
    let snap = translated(&ingress(
        "redir.test",
        a.addr,
        &annotations,
        &configmap_yaml(&[]),
    ));
    assert!(
        snap.diagnostics
            .iter()
            .all(|d| d.reason != "InvalidAnnotation"),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    let g = send(&c, request(proxy.http(), "redir.test:80", "/", &echo))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("location"), "http://redir.test/app/x?y=1");
    assert_eq!(
        g.header("set-cookie"),
        "s=1; Domain=.example.org; Path=/two"
    );

    let off = [
        ("proxy-redirect-from", "off"),
        ("proxy-redirect-to", "goodbye.com"),
    ];
    proxy.handle.apply(translated(&ingress(
        "redir.test",
        a.addr,
        &off,
        &configmap_yaml(&[]),
    )));
    let g = send(&c, request(proxy.http(), "redir.test", "/", &echo))
        .await
        .unwrap();
    assert_eq!(g.header("location"), "http://pod.internal/one/x?y=1");
    assert_eq!(
        g.header("set-cookie"),
        "s=1; Domain=.localhost; Path=/one/two"
    );

    // The ConfigMap keys of the same names are the annotations' defaults (ingress-nginx's
    // annotations/proxy parser falls back on defaults.Backend per key); an annotation wins.
    let defaults = configmap_yaml(&annotations);
    let path = [("proxy-cookie-path", "/one/ /other/")];
    proxy
        .handle
        .apply(translated(&ingress("redir.test", a.addr, &path, &defaults)));
    let g = send(&c, request(proxy.http(), "redir.test", "/", &echo))
        .await
        .unwrap();
    assert_eq!(g.header("location"), "http://redir.test/app/x?y=1");
    assert_eq!(
        g.header("set-cookie"),
        "s=1; Domain=.example.org; Path=/other/two"
    );
}

/// `connection-proxy-header` (test/e2e/annotations/connection.go): the pod sees
/// `Connection: keep-alive` (or `close`) whatever the client sent; without it, nginx's
/// `$connection_upgrade` sends none for a plain request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_proxy_header_is_what_the_pod_sees() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    for (value, want) in [
        (Some("keep-alive"), "keep-alive"),
        (Some("close"), "close"),
        (None, ""),
    ] {
        let annotations: Vec<(&str, &str)> = value
            .map(|v| ("connection-proxy-header", v))
            .into_iter()
            .collect();
        proxy.handle.apply(translated(&ingress(
            "conn.test",
            a.addr,
            &annotations,
            &configmap_yaml(&[]),
        )));
        for sent in [&[][..], &[("connection", "close")]] {
            let g = send(&c, request(proxy.http(), "conn.test", "/", sent))
                .await
                .unwrap();
            assert_eq!(g.status, StatusCode::OK, "{value:?}");
            assert_eq!(at_pod(&g, "connection"), want, "{value:?} {sent:?}");
        }
    }
}
