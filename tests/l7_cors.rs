//! ingress-nginx's CORS annotations and `custom-headers`, end to end through the proxy:
//! Ingress YAML (and ConfigMaps) from a manifest directory's parser, translated, served;
//! expected values from ingress-nginx's `annotations/cors` parser and template `CORS` block.

mod l7common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use l7common::*;
use xdp_ingress::{model::Snapshot, proxy::REASON_HEADER, store::Key};

fn ingress(host: &str, backend: SocketAddr, annotations: &[(&str, &str)], extra: &str) -> String {
    let service = service_yaml("web", backend);
    let ann = nginx_annotations_yaml(annotations);
    format!(
        r#"{service}{extra}apiVersion: networking.k8s.io/v1
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

fn translated(version: u64, yaml: &str) -> Arc<Snapshot> {
    translate_manifests(version, yaml, |c| {
        c.configmap = Some(Key::new("ingress-nginx", "ingress-nginx-controller"));
    })
}

fn with_headers(
    addr: SocketAddr,
    method: Method,
    host: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/items"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// The preflight's response head as it goes on the wire: status line, then the headers in
/// order (the `date` header left out).
fn head_lines(resp: &str) -> Vec<String> {
    resp.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .map(str::to_string)
        .collect()
}

/// `enable-cors` with ingress-nginx's defaults: every OPTIONS is a preflight answered 204 by
/// the ingress with the default headers and no body, type or length; the pod never sees it;
/// other requests reach the pod and come back with the same headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_defaults_answer_preflights_at_the_ingress() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translated(
        1,
        &ingress("cors.test", a.addr, &[("enable-cors", "true")], ""),
    ));
    let wire = raw(
        proxy.http(),
        b"OPTIONS /items HTTP/1.1\r\nHost: cors.test\r\nOrigin: https://app.test\r\n\
          Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        head_lines(&wire),
        [
            "HTTP/1.1 204 No Content",
            "access-control-allow-origin: *",
            "access-control-allow-credentials: true",
            "access-control-allow-methods: GET, PUT, POST, DELETE, PATCH, OPTIONS",
            "access-control-allow-headers: DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization",
            "access-control-max-age: 1728000",
            "connection: close",
        ],
        "{wire}"
    );
    assert!(wire.ends_with("\r\n\r\n"), "a 204 has no body: {wire:?}");
    assert_eq!(a.requests(), 0, "the preflight reached the pod");

    // The actual request goes to the pod and gets the headers too.
    let c = http1_client();
    let g = send(
        &c,
        with_headers(
            proxy.http(),
            Method::PUT,
            "cors.test",
            &[("origin", "https://app.test")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.pod(), "a");
    assert_eq!(g.header("access-control-allow-origin"), "*");
    assert_eq!(g.header("access-control-max-age"), "1728000");
    assert_eq!(g.header("access-control-allow-credentials"), "true");
    // Not on another Ingress's responses, and not once the annotation is gone.
    proxy
        .handle
        .apply(translated(2, &ingress("cors.test", a.addr, &[], "")));
    let g = send(
        &c,
        with_headers(
            proxy.http(),
            Method::OPTIONS,
            "cors.test",
            &[("origin", "https://app.test")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(g.pod(), "a");
    assert!(g.headers.get("access-control-allow-origin").is_none());
}

/// A list of origins: an allowed one is echoed (wildcard subdomains match one label), with
/// the annotations' values; any other origin gets no CORS header and its OPTIONS goes to the
/// pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origin_list_echoes_allowed_origins_only() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translated(
        1,
        &ingress(
            "cors.test",
            a.addr,
            &[
                ("enable-cors", "true"),
                (
                    "cors-allow-origin",
                    "https://app.example.com, https://*.example.org",
                ),
                ("cors-allow-methods", "GET, POST"),
                ("cors-allow-headers", "X-Custom, Authorization"),
                ("cors-allow-credentials", "false"),
                ("cors-expose-headers", "X-Total-Count"),
                ("cors-max-age", "600"),
            ],
            "",
        ),
    ));
    let c = http1_client();
    for origin in ["https://app.example.com", "https://Shop-1.example.org"] {
        let g = send(
            &c,
            with_headers(
                proxy.http(),
                Method::OPTIONS,
                "cors.test",
                &[("origin", origin)],
            ),
        )
        .await
        .unwrap();
        assert_eq!(g.status, StatusCode::NO_CONTENT, "{origin}");
        assert_eq!(g.header("access-control-allow-origin"), origin);
        assert_eq!(g.header("access-control-allow-methods"), "GET, POST");
        assert_eq!(
            g.header("access-control-allow-headers"),
            "X-Custom, Authorization"
        );
        assert_eq!(g.header("access-control-expose-headers"), "X-Total-Count");
        assert_eq!(g.header("access-control-max-age"), "600");
        assert!(g.headers.get("access-control-allow-credentials").is_none());
        assert!(g.headers.get("content-type").is_none());
        assert!(g.headers.get("content-length").is_none());
    }
    assert_eq!(a.requests(), 0);
    let g = send(
        &c,
        with_headers(
            proxy.http(),
            Method::GET,
            "cors.test",
            &[("origin", "https://app.example.com")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(g.pod(), "a");
    assert_eq!(
        g.header("access-control-allow-origin"),
        "https://app.example.com"
    );
    // Not listed, two labels under the wildcard, or no Origin at all: no CORS, and the
    // OPTIONS is the pod's to answer.
    for origin in [
        Some("https://evil.test"),
        Some("https://a.b.example.org"),
        None,
    ] {
        let before = a.requests();
        let h: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
        let g = send(
            &c,
            with_headers(proxy.http(), Method::OPTIONS, "cors.test", &h),
        )
        .await
        .unwrap();
        assert_eq!(g.pod(), "a", "{origin:?}");
        assert_eq!(a.requests(), before + 1);
        assert!(
            g.headers
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{origin:?}: {:?}",
            g.headers
        );
    }
}

const CONTROLLER_CM: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data:
  global-allowed-response-headers: "X-Frame-Options, Content-Security-Policy, X-Pod"
---
"#;

/// `custom-headers`: the ConfigMap's headers on every response of the Ingress (replacing the
/// pod's, and on preflights too); a ConfigMap that is missing or sets a header the controller
/// ConfigMap does not allow makes the routes answer 503, as ingress-nginx denies the location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_headers_come_from_a_configmap() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let headers_cm = |data: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: security-headers, namespace: default}}\ndata:\n{data}---\n"
        )
    };
    let good = format!(
        "{CONTROLLER_CM}{}",
        headers_cm(
            "  X-Frame-Options: DENY\n  Content-Security-Policy: \"default-src 'self'\"\n  X-Pod: from-ingress\n",
        )
    );
    proxy.handle.apply(translated(
        1,
        &ingress(
            "hdr.test",
            a.addr,
            &[
                ("custom-headers", "default/security-headers"),
                ("enable-cors", "true"),
            ],
            &good,
        ),
    ));
    let c = http1_client();
    let g = get(&c, proxy.http(), "hdr.test", "/").await;
    assert_eq!(g.pod(), "a");
    assert_eq!(g.header("x-frame-options"), "DENY");
    assert_eq!(g.header("content-security-policy"), "default-src 'self'");
    // The pod's own `X-Pod` is replaced, not doubled (nginx `more_set_headers`).
    let pods: Vec<_> = g.headers.get_all("x-pod").iter().collect();
    assert_eq!(pods, ["from-ingress"]);
    let g = send(
        &c,
        with_headers(proxy.http(), Method::OPTIONS, "hdr.test", &[]),
    )
    .await
    .unwrap();
    assert_eq!(g.status, StatusCode::NO_CONTENT);
    assert_eq!(g.header("x-frame-options"), "DENY");

    let refused = [
        // The ConfigMap does not exist.
        CONTROLLER_CM.to_string(),
        // A header the controller ConfigMap does not list.
        format!("{CONTROLLER_CM}{}", headers_cm("  X-Powered-By: me\n")),
        // Hop-by-hop.
        format!("{CONTROLLER_CM}{}", headers_cm("  Connection: close\n")),
    ];
    for (v, extra) in refused.iter().enumerate() {
        let before = a.requests();
        proxy.handle.apply(translated(
            v as u64 + 2,
            &ingress(
                "hdr.test",
                a.addr,
                &[("custom-headers", "security-headers")],
                extra,
            ),
        ));
        let g = get(&c, proxy.http(), "hdr.test", "/").await;
        assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{extra}");
        assert!(
            g.header(REASON_HEADER).contains("custom-headers"),
            "{extra}"
        );
        assert_eq!(a.requests(), before);
    }
    // Not even a `default-backend` serves a denied route.
    proxy.handle.apply(translated(
        9,
        &ingress(
            "hdr.test",
            a.addr,
            &[("custom-headers", "missing"), ("default-backend", "web")],
            CONTROLLER_CM,
        ),
    ));
    let g = get(&c, proxy.http(), "hdr.test", "/status/503").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(g.header(REASON_HEADER).contains("custom-headers"));
}

/// ingress-nginx answers the preflight in nginx's rewrite phase, before its Lua HTTPS redirect
/// and before the access phase's `allowlist-source-range`: a preflight to a TLS host over plain
/// HTTP, or from a client outside the allowlist, gets its 204; their other requests get the
/// redirect or the 403, with the CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_come_before_the_https_redirect_and_the_allowlist() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let cors = [("enable-cors", "true")];
    let denied = [
        ("enable-cors", "true"),
        ("allowlist-source-range", "192.0.2.0/24"),
    ];
    let with_tls = ingress("sec.test", a.addr, &cors, "").replace(
        "  rules:\n",
        "  tls: [{hosts: [sec.test], secretName: sec-tls}]\n  rules:\n",
    );
    for (v, yaml, other) in [
        (1, with_tls, StatusCode::PERMANENT_REDIRECT),
        (
            2,
            ingress("sec.test", a.addr, &denied, ""),
            StatusCode::FORBIDDEN,
        ),
    ] {
        proxy.handle.apply(translated(v, &yaml));
        let g = send(
            &c,
            with_headers(proxy.http(), Method::OPTIONS, "sec.test", &[]),
        )
        .await
        .unwrap();
        assert_eq!(g.status, StatusCode::NO_CONTENT, "{v}");
        let g = send(&c, with_headers(proxy.http(), Method::GET, "sec.test", &[]))
            .await
            .unwrap();
        assert_eq!(g.status, other, "{v}");
        assert_eq!(g.header("access-control-allow-origin"), "*", "{v}");
    }
    assert_eq!(a.requests(), 0);
}

/// The controller ConfigMap's `add-headers`: the named ConfigMap's headers on every response,
/// the proxy's own 404 included; a route's `custom-headers` win over them; a hop-by-hop one is
/// left out with a Warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_headers_are_set_on_every_response() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let cms = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data:
  add-headers: "ingress-nginx/everywhere"
  global-allowed-response-headers: "X-Frame-Options"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: everywhere, namespace: ingress-nginx}
data: {X-Served-By: xdp-ingress, X-Frame-Options: SAMEORIGIN, Connection: close}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: security-headers, namespace: default}
data: {X-Frame-Options: DENY}
---
"#;
    let snap = translated(
        1,
        &ingress(
            "hdr.test",
            a.addr,
            &[("custom-headers", "security-headers")],
            cms,
        ),
    );
    let warned: Vec<_> = snap
        .diagnostics
        .iter()
        .map(|d| (d.reason.as_str(), d.message.contains("Connection")))
        .collect();
    assert_eq!(warned, [("InvalidConfigMapValue", true)]);
    proxy.handle.apply(snap);
    let c = http1_client();
    let g = get(&c, proxy.http(), "hdr.test", "/").await;
    assert_eq!(g.pod(), "a");
    assert_eq!(g.header("x-served-by"), "xdp-ingress");
    assert_eq!(g.header("x-frame-options"), "DENY", "the route's own wins");
    assert!(g.headers.get("connection").is_none_or(|v| v != "close"));
    let g = get(&c, proxy.http(), "elsewhere.test", "/").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.header("x-served-by"), "xdp-ingress");
    assert_eq!(g.header("x-frame-options"), "SAMEORIGIN");
}
