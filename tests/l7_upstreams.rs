//! ingress-nginx's upstream annotations end to end on loopback (no privileges needed):
//! `proxy-next-upstream`, `-tries`, `-timeout` (nginx's `proxy_next_upstream*`) and
//! `service-upstream`, from Ingress YAML through translation to the real proxy, with pods
//! that answer 503, never answer, or refuse connections. Expected behaviour from ingress-nginx's
//! annotations reference ("Custom timeouts", "Service Upstream") and nginx's
//! ngx_http_proxy_module documentation of `proxy_next_upstream`.

mod l7common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use http::Method;
use l7common::*;
use testbed::http_backend::HttpBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xdp_ingress::{
    model::Snapshot,
    proxy::{ProxyArgs, REASON_HEADER},
};

fn backend(addr: &str, name: &str) -> HttpBackend {
    HttpBackend::start(addr.parse().unwrap(), name).unwrap()
}

use testbed::ports::dead_addr;

/// What a pod that is not an echo backend does with each request head it reads.
#[derive(Clone, Copy)]
enum Pod {
    /// Answers with these bytes.
    Answers(&'static [u8]),
    /// Never answers (holds the connection).
    Silent,
}

/// A pod on loopback behaving as `pod`; the counter says how many requests it read.
async fn raw_pod(pod: Pod) -> (SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    buf.clear();
                    counter.fetch_add(1, Ordering::SeqCst);
                    match pod {
                        Pod::Answers(bytes) => {
                            if s.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        Pod::Silent => {
                            // Until the proxy gives up on it and closes.
                            let _ = s.read(&mut chunk).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, hits)
}

/// A 503 as a sick pod sends it, with its own header and body.
const SICK: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\nx-pod: sick\r\n\r\nsick pod\n";

/// Service `web` (port `port`, `clusterIP` if given) whose pods are `pods`, one EndpointSlice
/// each (so pods may listen on different ports), and an Ingress for `host` to it with these
/// annotations (prefix added).
fn manifests(
    host: &str,
    pods: &[SocketAddr],
    service: (u16, Option<&str>),
    annotations: &[(&str, &str)],
) -> String {
    let (port, cluster_ip) = service;
    let cluster_ip = cluster_ip
        .map(|ip| format!("  clusterIP: {ip:?}\n"))
        .unwrap_or_default();
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n\
         {cluster_ip}  ports: [{{name: http, port: {port}, targetPort: 8080}}]\n---\n"
    );
    for (i, pod) in pods.iter().enumerate() {
        out.push_str(&format!(
            r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-{i}
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {}, protocol: TCP}}]
endpoints:
- {{addresses: ["{}"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: web-{i}}}}}
---
"#,
            pod.port(),
            pod.ip()
        ));
    }
    let ann = nginx_annotations_yaml(annotations);
    out.push_str(&format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: {port}}}}}}}}}
"#
    ));
    out
}

/// The proxy without passive health: a failing pod keeps getting its share, so every request
/// meets the retry policy rather than an ejected pod.
fn args() -> ProxyArgs {
    ProxyArgs {
        max_fails: 0,
        ..TestProxy::quiet_args()
    }
}

/// Translates as the control plane does, reading `ingress-nginx/cm` as the controller
/// ConfigMap; no Error diagnostics.
fn translated(version: u64, yaml: &str) -> Arc<Snapshot> {
    let s = translate_manifests(version, yaml, |c| {
        c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"))
    });
    assert!(
        s.diagnostics
            .iter()
            .all(|d| d.severity != xdp_ingress::model::Severity::Error),
        "{:?}",
        s.diagnostics
    );
    s
}

/// Sends `n` requests with `method` (empty body) and returns them.
async fn requests(c: &Http1, proxy: &TestProxy, method: Method, n: usize) -> Vec<Got> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut r = req(proxy.http(), "u.test", "/");
        *r.method_mut() = method.clone();
        out.push(send(c, r).await.expect("request completes"));
    }
    out
}

fn statuses(got: &[Got]) -> Vec<u16> {
    got.iter().map(|g| g.status.as_u16()).collect()
}

/// A pod answering 503 gets its requests passed to the other pod only when
/// `proxy-next-upstream` lists `http_503`; `-tries: 1` is one attempt; a POST goes on only
/// with `non_idempotent`; and when every try answered 503, the last answer reaches the client
/// as the pod sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_goes_to_the_next_pod_only_when_http_503_is_listed() {
    let a = backend("127.0.0.1:0", "a");
    let (sick, sick_hits) = raw_pod(Pod::Answers(SICK)).await;
    let (sick2, _) = raw_pod(Pod::Answers(SICK)).await;
    let proxy = TestProxy::start(args()).await;
    let c = http1_client();
    let pods = [sick, a.addr];
    let version = std::cell::Cell::new(0);
    let apply_yaml = |yaml: &str| {
        version.set(version.get() + 1);
        proxy.handle.apply(translated(version.get(), yaml));
    };
    let apply = |pods: &[SocketAddr], ann: &[(&str, &str)]| {
        apply_yaml(&manifests("u.test", pods, (80, None), ann));
    };

    // The default (`error timeout`): the sick pod's 503s reach the client, as it sent them.
    apply(&pods, &[]);
    let got = requests(&c, &proxy, Method::GET, 6).await;
    let sick_answers: Vec<&Got> = got.iter().filter(|g| g.status == 503).collect();
    assert!(!sick_answers.is_empty(), "{:?}", statuses(&got));
    for g in &sick_answers {
        assert_eq!(g.header("x-pod"), "sick");
        assert_eq!(&g.body[..], b"sick pod\n");
    }

    let retry_503 = [("proxy-next-upstream", "error timeout http_503")];
    apply(&pods, &retry_503);
    let before = (sick_hits.load(Ordering::SeqCst), a.requests());
    let got = requests(&c, &proxy, Method::GET, 6).await;
    assert_eq!(statuses(&got), [200; 6]);
    assert!(got.iter().all(|g| g.pod() == "a"));
    assert_eq!(a.requests() - before.1, 6);
    assert!(
        sick_hits.load(Ordering::SeqCst) - before.0 >= 2,
        "the sick pod was tried first about half the time"
    );

    // The ConfigMap key is the default of every route.
    let yaml = manifests("u.test", &pods, (80, None), &[])
        + &configmap_yaml(&[("proxy-next-upstream", "error timeout http_503")]);
    apply_yaml(&yaml);
    let got = requests(&c, &proxy, Method::GET, 6).await;
    assert_eq!(statuses(&got), [200; 6]);

    // One try in all: nothing goes on.
    apply(&pods, &[retry_503[0], ("proxy-next-upstream-tries", "1")]);
    let got = requests(&c, &proxy, Method::GET, 6).await;
    assert!(statuses(&got).contains(&503), "{:?}", statuses(&got));

    // A POST reached the sick pod: passed on only with `non_idempotent`.
    apply(&pods, &retry_503);
    let got = requests(&c, &proxy, Method::POST, 6).await;
    assert!(statuses(&got).contains(&503), "{:?}", statuses(&got));
    apply(
        &pods,
        &[(
            "proxy-next-upstream",
            "error timeout http_503 non_idempotent",
        )],
    );
    let got = requests(&c, &proxy, Method::POST, 6).await;
    assert_eq!(statuses(&got), [200; 6]);

    // Every pod answers 503: the last one's answer is the client's, untouched.
    apply(&[sick, sick2], &retry_503);
    let got = requests(&c, &proxy, Method::GET, 4).await;
    for g in &got {
        assert_eq!(g.status, 503);
        assert_eq!(g.header("x-pod"), "sick");
        assert_eq!(
            g.header(REASON_HEADER),
            "",
            "the pod's answer, not the proxy's"
        );
        assert_eq!(&g.body[..], b"sick pod\n");
    }
}

/// nginx's rule for non-idempotent requests: a POST that reached a pod which then timed out is
/// not sent to another (504), a GET is (`timeout` is in the default), and `non_idempotent`
/// lets the POST go on too; without `timeout` in the list the GET is not retried either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_post_goes_on_only_with_non_idempotent() {
    let a = backend("127.0.0.1:0", "a");
    let (slow, slow_hits) = raw_pod(Pod::Silent).await;
    let proxy = TestProxy::start(args()).await;
    let c = http1_client();
    let pods = [slow, a.addr];
    let read = ("proxy-read-timeout", "300ms");
    let mut version = 0;
    let mut apply = |ann: &[(&str, &str)]| {
        version += 1;
        proxy.handle.apply(translated(
            version,
            &manifests("u.test", &pods, (80, None), ann),
        ));
    };

    apply(&[read]);
    let got = requests(&c, &proxy, Method::GET, 4).await;
    assert_eq!(statuses(&got), [200; 4]);
    assert!(slow_hits.load(Ordering::SeqCst) >= 1);
    let got = requests(&c, &proxy, Method::POST, 4).await;
    let s = statuses(&got);
    assert!(s.contains(&504) && s.contains(&200), "{s:?}");
    for g in got.iter().filter(|g| g.status == 504) {
        assert_eq!(g.header(REASON_HEADER), "upstream timed out");
    }

    apply(&[
        read,
        ("proxy-next-upstream", "error timeout non_idempotent"),
    ]);
    let got = requests(&c, &proxy, Method::POST, 4).await;
    assert_eq!(statuses(&got), [200; 4]);

    apply(&[read, ("proxy-next-upstream", "error")]);
    let got = requests(&c, &proxy, Method::GET, 4).await;
    assert!(statuses(&got).contains(&504), "{:?}", statuses(&got));
}

/// `off`: not even a refused connection goes to the next pod (by default it does, whatever
/// the method: nothing of the request was sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_leaves_even_a_refused_connection_unretried() {
    let a = backend("127.0.0.1:0", "a");
    let proxy = TestProxy::start(args()).await;
    let c = http1_client();
    let pods = [dead_addr(), a.addr];
    proxy.handle.apply(translated(
        1,
        &manifests(
            "u.test",
            &pods,
            (80, None),
            &[("proxy-next-upstream-tries", "0")],
        ),
    ));
    let got = requests(&c, &proxy, Method::POST, 6).await;
    assert_eq!(statuses(&got), [200; 6]);
    proxy.handle.apply(translated(
        2,
        &manifests(
            "u.test",
            &pods,
            (80, None),
            &[("proxy-next-upstream", "off")],
        ),
    ));
    let got = requests(&c, &proxy, Method::GET, 4).await;
    let s = statuses(&got);
    assert!(s.contains(&502), "{s:?}");
    let g = got.iter().find(|g| g.status == 502).unwrap();
    assert_eq!(g.header(REASON_HEADER), "upstream connect failed");
}

/// `proxy-next-upstream-timeout`: no attempt starts once that long has passed since the first
/// began, however many tries are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_upstream_timeout_ends_the_tries() {
    let proxy = TestProxy::start(args()).await;
    let c = http1_client();
    let mut slow = Vec::new();
    let mut hits = Vec::new();
    for _ in 0..3 {
        let (addr, h) = raw_pod(Pod::Silent).await;
        slow.push(addr);
        hits.push(h);
    }
    let total =
        |hits: &[Arc<AtomicU64>]| -> u64 { hits.iter().map(|h| h.load(Ordering::SeqCst)).sum() };
    let base = [
        ("proxy-read-timeout", "300ms"),
        ("proxy-next-upstream-tries", "0"),
    ];
    proxy.handle.apply(translated(
        1,
        &manifests("u.test", &slow, (80, None), &base),
    ));
    let got = requests(&c, &proxy, Method::GET, 1).await;
    assert_eq!(statuses(&got), [504]);
    assert_eq!(total(&hits), 3, "no limit: every pod tried");

    let mut ann = base.to_vec();
    ann.push(("proxy-next-upstream-timeout", "500ms"));
    proxy
        .handle
        .apply(translated(2, &manifests("u.test", &slow, (80, None), &ann)));
    let got = requests(&c, &proxy, Method::GET, 1).await;
    assert_eq!(statuses(&got), [504]);
    // Attempts start at 0 and 300 ms; at 600 ms the 500 ms are over.
    assert_eq!(total(&hits), 5, "two more pods tried, not three");
}

/// `service-upstream`: requests go to the Service's ClusterIP and Service port (the pod
/// behind it sees them arrive there), never to the endpoints, and are not retried elsewhere
/// when it fails; a headless Service keeps its endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_upstream_sends_to_the_cluster_ip() {
    let pod = backend("127.0.0.1:0", "pod");
    // The ClusterIP: another loopback address, on a port of its own, so only a connection
    // to exactly clusterIP:port reaches this listener.
    let cluster = backend("127.0.0.2:0", "cluster-ip");
    let (ip, port) = (cluster.addr.ip().to_string(), cluster.addr.port());
    let proxy = TestProxy::start(args()).await;
    let c = http1_client();
    let on = [("service-upstream", "true")];
    proxy.handle.apply(translated(
        1,
        &manifests("u.test", &[pod.addr], (port, Some(&ip)), &on),
    ));
    let got = requests(&c, &proxy, Method::GET, 4).await;
    assert!(
        got.iter()
            .all(|g| g.status == 200 && g.pod() == "cluster-ip")
    );
    assert_eq!((cluster.requests(), pod.requests()), (4, 0));

    // The ConfigMap key as every Ingress's default.
    let yaml = manifests("u.test", &[pod.addr], (port, Some(&ip)), &[])
        + &configmap_yaml(&[("service-upstream", "true")]);
    proxy.handle.apply(translated(10, &yaml));
    let got = requests(&c, &proxy, Method::GET, 2).await;
    assert!(got.iter().all(|g| g.pod() == "cluster-ip"));

    // Without the annotation: the endpoints.
    proxy.handle.apply(translated(
        11,
        &manifests("u.test", &[pod.addr], (port, Some(&ip)), &[]),
    ));
    let got = requests(&c, &proxy, Method::GET, 2).await;
    assert!(got.iter().all(|g| g.pod() == "pod"));

    // Headless: a warning, and the endpoints serve.
    let headless = translate_manifests(
        12,
        &manifests("u.test", &[pod.addr], (port, Some("None")), &on),
        |_| {},
    );
    assert!(
        headless
            .diagnostics
            .iter()
            .any(|d| d.reason == "ServiceUpstreamWithoutClusterIP"),
        "{:?}",
        headless.diagnostics
    );
    proxy.handle.apply(headless);
    let got = requests(&c, &proxy, Method::GET, 2).await;
    assert!(got.iter().all(|g| g.pod() == "pod"));

    // A ClusterIP nobody answers on: 502, and the endpoints are not a fallback.
    let dead = dead_addr();
    proxy.handle.apply(translated(
        13,
        &manifests(
            "u.test",
            &[pod.addr],
            (dead.port(), Some(&dead.ip().to_string())),
            &on,
        ),
    ));
    let before = pod.requests();
    let got = requests(&c, &proxy, Method::GET, 2).await;
    assert_eq!(statuses(&got), [502, 502]);
    assert_eq!(pod.requests(), before);
}

/// A loopback clusterIP is refused as a loopback EndpointSlice address is (one guard for every
/// address the proxy connects to): without `--allow-node-local-endpoints` an Error on the
/// Service and 503, nothing reaches the address, and the pods are not a fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_local_cluster_ip_is_refused_without_the_opt_in() {
    let pod = backend("127.0.0.1:0", "pod");
    let cluster = backend("127.0.0.2:0", "cluster-ip");
    let (ip, port) = (cluster.addr.ip().to_string(), cluster.addr.port());
    let yaml = manifests(
        "u.test",
        &[pod.addr],
        (port, Some(&ip)),
        &[("service-upstream", "true")],
    );
    let snap = translate_manifests(1, &yaml, |c| c.allow_node_local_endpoints = false);
    let refused: Vec<_> = snap
        .diagnostics
        .iter()
        .filter(|d| d.reason == "EndpointAddressRefused")
        .map(|d| (d.object.kind, d.message.contains(&ip)))
        .collect();
    assert!(
        refused.contains(&(xdp_ingress::model::ObjectKind::Service, true)),
        "{:?}",
        snap.diagnostics
    );
    let proxy = TestProxy::start(args()).await;
    proxy.handle.apply(snap);
    let got = requests(&http1_client(), &proxy, Method::GET, 2).await;
    assert_eq!(statuses(&got), [503, 503]);
    assert_eq!((cluster.requests(), pod.requests()), (0, 0));
}
