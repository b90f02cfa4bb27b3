//! The L7 proxy in the netns test bed: the proxy runs in the node namespace on ports 80/443,
//! echo backends run in pod namespaces, and clients (curl, hyper, rustls) run in the client
//! namespace and reach the node over its "NIC", IPv4 and IPv6.

mod l7common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use http::StatusCode;
use l7common::*;
use testbed::{Topology, http_backend::HttpBackend};
use xdp_ingress::{
    model::{ObjectKind, ObjectRef, Snapshot, TlsCertificate, Upstream},
    proxy::{ProxyArgs, fixtures::*, tls::self_signed_pem},
};

/// One echo backend per pod on `[::]:8080` (IPv4 and IPv6), named like the pod.
fn backends(topo: &Topology) -> Vec<HttpBackend> {
    topo.pods
        .iter()
        .map(|p| {
            HttpBackend::start_in(&p.ns, "[::]:8080".parse().unwrap(), &p.name).expect("backend")
        })
        .collect()
}

/// Upstream `default/<service>:80` over these pods' IPv4 addresses, port 8080.
fn pods_upstream(topo: &Topology, service: &str, pods: &[usize]) -> Arc<Upstream> {
    let addrs: Vec<SocketAddr> = pods
        .iter()
        .map(|&i| SocketAddr::new(topo.pods[i].v4.into(), 8080))
        .collect();
    upstream_at(service, &addrs)
}

fn proxy_args(topo: &Topology) -> ProxyArgs {
    ProxyArgs {
        metrics_addr: Some(SocketAddr::new(topo.node_v4.into(), 9100)),
        ..TestProxy::quiet_args()
    }
}

/// curl in the client namespace; returns (body, "<code> <http_version>").
fn curl(topo: &Topology, args: &[&str]) -> (String, String) {
    let mut all = vec!["-sS", "-m", "10", "-w", "\n%{http_code} %{http_version}"];
    all.extend_from_slice(args);
    let out = topo.client.run("curl", &all).expect("curl");
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (body.to_string(), status.to_string())
}

fn pod_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["pod"].as_str().unwrap_or_default().to_string()
}

/// The Kubernetes documentation's "simple fanout" and "name based virtual hosting"
/// examples, plus TLS, redirect and HTTP/2, driven with curl over IPv4 and IPv6.
#[test]
fn ingress_spec_examples_tls_and_http2_with_curl() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(3).expect("topology");
    let _b = backends(&topo);
    let proxy = NsProxy::start(&topo.node, proxy_args(&topo));
    let (s1, s2, s3) = (
        pods_upstream(&topo, "service1", &[0]),
        pods_upstream(&topo, "service2", &[1]),
        pods_upstream(&topo, "service3", &[2]),
    );
    let secure = self_signed_pem(&["secure.test"]).unwrap();
    let mut l7 = l7_with(
        vec![
            vhost(
                "foo.bar.com",
                vec![
                    route_to(path("Prefix", "/foo"), s1.clone()),
                    route_to(path("Prefix", "/bar"), s2.clone()),
                ],
                false,
            ),
            vhost(
                "bar.foo.com",
                vec![route_to(path("Prefix", "/"), s2.clone())],
                false,
            ),
            vhost("", vec![route_to(path("Prefix", "/"), s3)], false),
            vhost("secure.test", vec![route_to(path("Prefix", "/"), s1)], true),
        ],
        None,
    );
    l7.certificates.insert(
        "secure.test".into(),
        Arc::new(TlsCertificate {
            secret: ObjectRef {
                kind: ObjectKind::Secret,
                namespace: "default".into(),
                name: "secure-tls".into(),
            },
            chain_pem: secure.0.as_bytes().into(),
            key_pem: secure.1.as_bytes().into(),
        }),
    );
    proxy.handle.apply(snapshot(1, l7));

    let v4 = "http://198.18.0.2";
    let v6 = "http://[2001:db8::2]";
    for (base, host, path, want) in [
        (v4, "foo.bar.com", "/foo", "pod0"),
        (v4, "foo.bar.com", "/foo/x", "pod0"),
        (v4, "foo.bar.com", "/bar", "pod1"),
        (v6, "foo.bar.com", "/foo", "pod0"),
        (v4, "bar.foo.com", "/anything", "pod1"),
        (v6, "bar.foo.com", "/", "pod1"),
        (v4, "other.example", "/", "pod2"),
        (v6, "other.example", "/x", "pod2"),
    ] {
        let url = format!("{base}{path}");
        let (body, status) = curl(&topo, &["-H", &format!("Host: {host}"), &url]);
        assert_eq!(status, "200 1.1", "{host}{path}: {body}");
        assert_eq!(pod_of(&body), want, "{host}{path}");
    }
    // The host matched but no path did, and there is no default backend.
    let (_, status) = curl(&topo, &["-H", "Host: foo.bar.com", "http://198.18.0.2/baz"]);
    assert_eq!(status, "404 1.1");
    // h2c with prior knowledge on the HTTP port.
    let (body, status) = curl(
        &topo,
        &[
            "--http2-prior-knowledge",
            "-H",
            "Host: foo.bar.com",
            "http://198.18.0.2/bar",
        ],
    );
    assert_eq!((pod_of(&body).as_str(), status.as_str()), ("pod1", "200 2"));
    // TLS with SNI, ALPN h2.
    let (body, status) = curl(
        &topo,
        &[
            "-k",
            "--http2",
            "--resolve",
            "secure.test:443:198.18.0.2",
            "https://secure.test/tls",
        ],
    );
    assert_eq!((pod_of(&body).as_str(), status.as_str()), ("pod0", "200 2"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
    assert_eq!(v["headers"]["x-real-ip"], "198.18.0.1");
    // HTTP to a TLS host: 308.
    let out = topo
        .client
        .run(
            "curl",
            &[
                "-sS",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                "-H",
                "Host: secure.test",
                "http://198.18.0.2/p?q=1",
            ],
        )
        .unwrap();
    assert_eq!(out, "308 https://secure.test/p?q=1");
    // The certificate presented for secure.test is the Secret's; others get the generated one.
    let node: IpAddr = topo.node_v4.into();
    let (exact, other) = in_ns(&topo.client, move || async move {
        let (_, exact) = tls_connect(SocketAddr::new(node, 443), "secure.test", &[]).await;
        let (_, other) = tls_connect(SocketAddr::new(node, 443), "nope.test", &[]).await;
        (exact, other)
    });
    assert_eq!(exact, pem_der(&secure.0));
    assert_ne!(other, exact);
    // Metrics and readiness on the node.
    let m = topo
        .node
        .run(
            "curl",
            &["-sS", "-m", "5", "http://198.18.0.2:9100/metrics"],
        )
        .unwrap();
    assert!(m.contains("xdp_ingress_requests_total{ingress=\"default/ing\",host=\"foo.bar.com\",path=\"/foo\",status=\"200\"} 3"), "{m}");
    assert!(
        m.contains("xdp_ingress_tls_handshakes_total{result=\"ok\"}"),
        "{m}"
    );
}

/// 1000 configuration changes while clients send requests (GET, and POST with a body)
/// without pause, a pod's backend dies half-way (its endpoint stays in the snapshot), and a WebSocket opened at the start
/// stays open throughout: no request fails.
#[test]
fn thousand_reloads_dead_pod_and_websocket_under_load() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(3).expect("topology");
    let mut bes: Vec<Option<HttpBackend>> = backends(&topo).into_iter().map(Some).collect();
    let proxy = NsProxy::start(&topo.node, proxy_args(&topo));
    let all = pods_upstream(&topo, "svc", &[0, 1, 2]);
    let snap = |v: u64| -> Arc<Snapshot> {
        let mut u = (*all).clone();
        u.endpoints.rotate_left((v % 3) as usize);
        let mut hosts = vec![vhost(
            "load.test",
            vec![
                route_to(path("Prefix", &format!("/v{v}")), all.clone()),
                route_to(path("Prefix", "/"), Arc::new(u)),
            ],
            false,
        )];
        hosts.extend((0..v % 5).map(|i| {
            vhost(
                &format!("extra{i}.test"),
                vec![route(path("Prefix", "/"), "none")],
                false,
            )
        }));
        snapshot(v, l7_with(hosts, None))
    };
    proxy.handle.apply(snap(1));

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let node: SocketAddr = SocketAddr::new(topo.node_v4.into(), 80);
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        topo.client.spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let (mut ws, ws_pod) = websocket_open(node, "load.test").await;
                    ws_echo(&mut ws, b"hello").await;
                    let mut workers = Vec::new();
                    for w in 0..6 {
                        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                        workers.push(tokio::spawn(async move {
                            let c = if w % 2 == 0 {
                                http1_client()
                            } else {
                                h2c_client()
                            };
                            // Bounded in count as well as by the stop flag.
                            for _ in 0..300_000 {
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                let mut r = req(node, "load.test", "/x");
                                if w == 2 {
                                    // Non-idempotent with a body: may only move on while unread.
                                    *r.method_mut() = http::Method::POST;
                                    *r.body_mut() = http_body_util::Full::new(
                                        bytes::Bytes::from_static(b"payload"),
                                    );
                                }
                                match send(&c, r).await {
                                    Ok(g) if g.status == StatusCode::OK => {
                                        ok.fetch_add(1, Ordering::Relaxed)
                                    }
                                    other => {
                                        eprintln!("failed: {other:?}");
                                        failed.fetch_add(1, Ordering::Relaxed)
                                    }
                                };
                            }
                        }));
                    }
                    for w in workers {
                        w.await.unwrap();
                    }
                    // The stop flag is set after the last change: the WebSocket opened before
                    // them must still echo (unless it was on the pod that went away).
                    if ws_pod != "pod1" {
                        ws_echo(&mut ws, b"after 1000 changes").await;
                    }
                    ws_pod
                })
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    for v in 2..=1001 {
        proxy.handle.apply(snap(v));
        if v == 500 {
            // pod1's server goes away; its endpoint stays in the snapshots.
            bes[1] = None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let ws_pod = load.join().expect("load thread");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("requests ok {ok} failed {failed}; websocket on {ws_pod}");
    assert_eq!(failed, 0);
    assert!(ok > 1000, "too little load to mean anything: {ok}");
    assert_eq!(proxy.handle.version(), 1001);
}
