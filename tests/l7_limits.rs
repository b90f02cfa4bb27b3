//! ingress-nginx's per-client rate limits (`limit-rps`, `limit-rpm`, `limit-burst-multiplier`,
//! `limit-connections`, `limit-allowlist`) end to end through the proxy on loopback: Ingress
//! YAML translated and served. Expected values from ingress-nginx's annotations page ("Rate
//! Limiting") and nginx's `limit_req ... burst=<limit x multiplier> nodelay` / `limit_conn`:
//! a quiet client gets `1 + burst` requests at once, then one per interval; the rest get 503
//! (or the ConfigMap's `limit-req-status-code` / `limit-conn-status-code`). nginx's
//! `limit_conn` holds a request's place for the request's lifetime: for a WebSocket, until it
//! closes. The global per-client limit (our `global-limit-*` keys) is one `limit_req` zone
//! that every request of a client counts in, whatever its Ingress.

mod l7common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::StatusCode;
use l7common::*;
use xdp_ingress::{
    model::{Severity, Snapshot},
    store::Key,
};

/// Ingress `default/api` for `host` with two paths, `/a` and `/b`, both to the pod. Annotation
/// keys without a prefix get `nginx.ingress.kubernetes.io/`.
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
      - {{path: /a, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
      - {{path: /b, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

fn translated(version: u64, yaml: &str) -> Arc<Snapshot> {
    translate_manifests(version, yaml, |c| {
        c.configmap = Some(Key::new("ingress-nginx", "cm"));
    })
}

/// Statuses of `n` requests sent one after another (alternating the Ingress's two paths).
async fn burst(proxy: &TestProxy, host: &str, n: usize) -> Vec<u16> {
    let c = http1_client();
    let mut out = Vec::new();
    for i in 0..n {
        let path = if i % 2 == 0 { "/a" } else { "/b" };
        out.push(get(&c, proxy.http(), host, path).await.status.as_u16());
    }
    out
}

/// limit-rps 2, multiplier 1 (burst 2): of 10 quick requests, 3 pass (1 + burst) and the
/// others get 503, on both paths of the Ingress (one zone); after the bucket drains, requests
/// pass again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_rps_admits_one_plus_burst_then_503_and_recovers() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translated(
        1,
        &ingress(
            "rps.test",
            a.addr,
            &[("limit-rps", "2"), ("limit-burst-multiplier", "1")],
            "",
        ),
    ));
    let got = burst(&proxy, "rps.test", 10).await;
    let ok = got.iter().filter(|&&s| s == 200).count();
    // Sent within well under a second: 3, perhaps 4 if the loop took half a second.
    assert!((3..=4).contains(&ok), "{got:?}");
    assert!(got[..3].iter().all(|&s| s == 200), "{got:?}");
    assert!(
        got.iter().all(|&s| s == 200 || s == 503),
        "refusals are 503: {got:?}"
    );
    // A swap with the same limits keeps the counters.
    proxy.handle.apply(translated(
        2,
        &ingress(
            "rps.test",
            a.addr,
            &[("limit-rps", "2"), ("limit-burst-multiplier", "1")],
            "",
        ),
    ));
    assert_eq!(burst(&proxy, "rps.test", 1).await, [503]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(burst(&proxy, "rps.test", 3).await, [200, 200, 200]);
}

/// The ConfigMap's `limit-req-status-code: 429` is the status of refusals; a client in
/// `limit-allowlist` is never limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_req_status_code_and_allowlist() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let cm = configmap_yaml(&[("limit-req-status-code", "429")]);
    proxy.handle.apply(translated(
        1,
        &ingress(
            "rps.test",
            a.addr,
            &[("limit-rps", "1"), ("limit-burst-multiplier", "1")],
            &format!("{cm}---\n"),
        ),
    ));
    let got = burst(&proxy, "rps.test", 4).await;
    assert_eq!(&got[..2], [200, 200], "{got:?}");
    assert!(got[2..].iter().all(|&s| s == 429), "{got:?}");

    proxy.handle.apply(translated(
        2,
        &ingress(
            "rps.test",
            a.addr,
            &[
                ("limit-rps", "1"),
                ("limit-burst-multiplier", "1"),
                ("limit-allowlist", "10.0.0.0/8, 127.0.0.1/32"),
            ],
            &format!("{cm}---\n"),
        ),
    ));
    assert_eq!(burst(&proxy, "rps.test", 8).await, [200; 8]);
}

/// limit-connections 1: while the pod holds a request (`/delay/...`), a second one from the
/// same client gets 503; once the first is answered, requests pass again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_connections_refuses_a_second_request_in_progress() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = ingress("conn.test", a.addr, &[("limit-connections", "1")], "")
        .replace("path: /a,", "path: /delay,");
    proxy.handle.apply(translated(1, &yaml));
    let addr = proxy.http();
    let slow = tokio::spawn(async move {
        let c = http1_client();
        get(&c, addr, "conn.test", "/delay/1500").await.status
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = http1_client();
    assert_eq!(
        get(&c, addr, "conn.test", "/b").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    assert_eq!(
        get(&c, addr, "conn.test", "/b").await.status,
        StatusCode::OK
    );
}

/// A limit that does not parse never drops the limit: ingress-nginx refuses such an Ingress
/// (`parser.ValidateInt`), so here its routes answer 503 (both paths; the pod sees nothing)
/// with a Warning that says so, until the value is fixed; another Ingress is served as before.
/// A bad `limit-allowlist` only exempts nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_limit_denies_its_routes_and_spares_other_ingresses() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let mut version = 0;
    for bad in [
        [("limit-rps", "ten"), ("limit-burst-multiplier", "1")],
        [("limit-rpm", "60"), ("limit-burst-multiplier", "lots")],
        [("limit-connections", "-1"), ("limit-rps", "5")],
    ] {
        version += 1;
        let yaml = format!(
            "{}{}",
            ingress("bad.test", a.addr, &bad, ""),
            plain_ingress("other", "other.test")
        );
        let s = translated(version, &yaml);
        assert!(
            s.diagnostics.iter().any(|d| d.severity == Severity::Error
                && d.object.name == "api"
                && d.reason == "InvalidAnnotation"
                && d.message.contains("503 until fixed")
                && d.message.contains("ingress-nginx rejects the Ingress")),
            "{bad:?}: {:?}",
            s.diagnostics
        );
        proxy.handle.apply(s);
        let before = a.requests();
        assert_eq!(burst(&proxy, "bad.test", 4).await, [503; 4], "{bad:?}");
        assert_eq!(
            a.requests(),
            before,
            "the pod sees no request of a denied route"
        );
        assert_eq!(burst(&proxy, "other.test", 1).await, [200], "{bad:?}");
    }
    // Fixed: served (under the limit) again.
    let s = translated(
        version + 1,
        &ingress("bad.test", a.addr, &[("limit-rps", "10")], ""),
    );
    proxy.handle.apply(s);
    assert_eq!(burst(&proxy, "bad.test", 2).await, [200; 2]);
}

/// Our own prefix works the same; `limit-rpm 60` with multiplier 2 admits 1 + 120 at once, and
/// `limit-conn-status-code: 429` is the status of `limit-connections` refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_rpm_under_our_prefix_and_limit_conn_status_code() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translated(
        1,
        &ingress(
            "rpm.test",
            a.addr,
            &[
                ("xdp-ingress.dev/limit-rpm", "2"),
                ("xdp-ingress.dev/limit-burst-multiplier", "2"),
            ],
            "",
        ),
    ));
    // 1 + 2 x 2 = 5 at once, then one per 30 s.
    let got = burst(&proxy, "rpm.test", 8).await;
    assert_eq!(got, [200, 200, 200, 200, 200, 503, 503, 503]);

    let cm = configmap_yaml(&[("limit-conn-status-code", "429")]);
    let yaml = ingress(
        "conn.test",
        a.addr,
        &[("limit-connections", "1")],
        &format!("{cm}---\n"),
    )
    .replace("path: /a,", "path: /delay,");
    proxy.handle.apply(translated(2, &yaml));
    let addr = proxy.http();
    let slow = tokio::spawn(async move {
        let c = http1_client();
        get(&c, addr, "conn.test", "/delay/1500").await.status
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let c = http1_client();
    assert_eq!(
        get(&c, addr, "conn.test", "/b").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
}

/// limit-connections 1: an open WebSocket is a request in progress until it closes (nginx's
/// `limit_conn` counts a request until it ends, and an upgraded one ends when its connection
/// does), so a second request from the client is refused while it is open and passes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_connections_counts_an_open_websocket_until_it_closes() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = ingress("ws.test", a.addr, &[("limit-connections", "1")], "")
        .replace("path: /a,", "path: /chat,");
    proxy.handle.apply(translated(1, &yaml));
    let (mut ws, _) = websocket_open(proxy.http(), "ws.test").await;
    ws_echo(&mut ws, b"still open").await;
    let c = http1_client();
    assert_eq!(
        get(&c, proxy.http(), "ws.test", "/b").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a second request while the WebSocket is open"
    );
    drop(ws);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = get(&c, proxy.http(), "ws.test", "/b").await.status;
        if got == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after the WebSocket closed: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ingress `default/<name>` for `host` with one path `/` to the pod, without annotations.
fn plain_ingress(name: &str, host: &str) -> String {
    format!(
        r#"---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

/// The ConfigMap's global per-client limit (`global-limit-rps 2`, multiplier 2: nginx's
/// `limit_req rate=2r/s burst=4 nodelay` in one zone for every request) counts requests to
/// two Ingresses without limits of their own together: 1 + 4 pass, the rest get
/// `limit-req-status-code`; a client in `global-limit-allowlist` is not counted; the flag
/// gives the same limit without the ConfigMap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_limit_counts_every_ingress_of_a_client() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let both = format!(
        "{}{}{}",
        service_yaml("web", a.addr),
        plain_ingress("one", "one.test"),
        plain_ingress("two", "two.test")
    );
    let with_cm = |data: &[(&str, &str)]| format!("{both}{}", configmap_yaml(data));
    let limit = [
        ("global-limit-rps", "2"),
        ("global-limit-burst-multiplier", "2"),
        ("limit-req-status-code", "429"),
    ];
    proxy.handle.apply(translated(1, &with_cm(&limit)));
    let c = http1_client();
    let mut got = Vec::new();
    for i in 0..10 {
        let host = if i % 2 == 0 { "one.test" } else { "two.test" };
        got.push(get(&c, proxy.http(), host, "/").await.status.as_u16());
    }
    assert_eq!(&got[..5], [200; 5], "{got:?}");
    assert!(got[5..].iter().all(|&s| s == 429), "{got:?}");
    // A host no Ingress serves is counted too (and refused the same way).
    assert_eq!(get(&c, proxy.http(), "none.test", "/").await.status, 429);

    let mut exempt = limit.to_vec();
    exempt.push(("global-limit-allowlist", "127.0.0.0/8"));
    proxy.handle.apply(translated(2, &with_cm(&exempt)));
    for host in ["one.test", "two.test"].repeat(5) {
        assert_eq!(get(&c, proxy.http(), host, "/").await.status, 200);
    }

    // The flag alone, 503 by default.
    let mut args = TestProxy::quiet_args();
    args.global_limit_rps = Some(1);
    args.global_limit_burst_multiplier = 1;
    let flagged = TestProxy::start(args).await;
    flagged.handle.apply(translated(1, &both));
    let mut got = Vec::new();
    for host in ["one.test", "two.test"].repeat(3) {
        got.push(get(&c, flagged.http(), host, "/").await.status.as_u16());
    }
    assert_eq!(got, [200, 200, 503, 503, 503, 503]);
}

/// Reads an HTTP/1.1 response to `GET path` on a new connection until `len` body bytes came:
/// (when the first `first` body bytes had arrived, when all had), from the request's start.
async fn timed_download(
    proxy: &TestProxy,
    host: &str,
    path: &str,
    first: usize,
    len: usize,
) -> (Duration, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut body = 0usize;
    let mut first_at = None;
    let deadline = Duration::from_secs(20);
    loop {
        let n = tokio::time::timeout(deadline, s.read(&mut buf))
            .await
            .expect("response within 20 s")
            .unwrap();
        assert!(n > 0, "connection closed after {body} body bytes");
        if body == 0 && head.windows(4).all(|w| w != b"\r\n\r\n") {
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                assert!(
                    head.starts_with(b"HTTP/1.1 200"),
                    "{}",
                    String::from_utf8_lossy(&head)
                );
                body = head.len() - i - 4;
            }
        } else {
            body += n;
        }
        if body >= first && first_at.is_none() {
            first_at = Some(start.elapsed());
        }
        if body >= len {
            // Chunked framing adds a few bytes per chunk: enough once the payload is there.
            return (first_at.unwrap(), start.elapsed());
        }
    }
}

/// `limit-rate` (KB/s, nginx `limit_rate Nk`) and `limit-rate-after` (KB) on the response
/// body, per request: 512 KiB at 256 KB/s takes about 2 s (at least 1.5 s) over HTTP/1.1 and
/// HTTP/2 alike; with `limit-rate-after: 384` the first 384 KiB come at once and the other
/// 128 KiB still at the rate; the ConfigMap's `limit-rate` is the default of routes without
/// the annotation, and `limit-rate: "0"` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_rate_paces_the_response_body() {
    const SIZE: usize = 512 * 1024;
    let pod = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    // The pod streams `/bytes/<n>`; the route's own path is rewritten to it.
    let path = "/a";
    let to_bytes = format!("/bytes/{SIZE}");
    let rw = ("rewrite-target", to_bytes.as_str());
    proxy.handle.apply(translated(
        1,
        &ingress("rate.test", pod.addr, &[rw, ("limit-rate", "256")], ""),
    ));
    let (_, took) = timed_download(&proxy, "rate.test", path, SIZE, SIZE).await;
    assert!(took >= Duration::from_millis(1500), "HTTP/1.1: {took:?}");
    let c = h2c_client();
    let start = std::time::Instant::now();
    let g = get(&c, proxy.http(), "rate.test", path).await;
    let took = start.elapsed();
    assert_eq!((g.status, g.body.len()), (StatusCode::OK, SIZE));
    assert!(took >= Duration::from_millis(1500), "HTTP/2: {took:?}");

    proxy.handle.apply(translated(
        2,
        &ingress(
            "rate.test",
            pod.addr,
            &[rw, ("limit-rate", "256"), ("limit-rate-after", "384")],
            "",
        ),
    ));
    let (first, took) = timed_download(&proxy, "rate.test", path, 384 * 1024, SIZE).await;
    assert!(
        first < Duration::from_millis(1000),
        "first 384 KiB: {first:?}"
    );
    assert!(took >= Duration::from_millis(300), "the rest: {took:?}");

    // The ConfigMap's default, and the annotation's 0 over it.
    let cm = format!("{}---\n", configmap_yaml(&[("limit-rate", "256")]));
    proxy
        .handle
        .apply(translated(3, &ingress("rate.test", pod.addr, &[rw], &cm)));
    let (_, took) = timed_download(&proxy, "rate.test", path, SIZE, SIZE).await;
    assert!(took >= Duration::from_millis(1500), "ConfigMap: {took:?}");
    proxy.handle.apply(translated(
        4,
        &ingress("rate.test", pod.addr, &[rw, ("limit-rate", "0")], &cm),
    ));
    let (_, took) = timed_download(&proxy, "rate.test", path, SIZE, SIZE).await;
    assert!(took < Duration::from_millis(1500), "limit-rate 0: {took:?}");
}
