//! The L7 proxy end to end on loopback (no privileges needed): the proxy runs in-process on
//! 127.0.0.1 with ephemeral ports, echo backends run on their own threads, and real clients
//! (hyper HTTP/1.1 and HTTP/2, rustls, raw TCP) check what arrives on the wire.

mod l7common;

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use l7common::*;
use testbed::http_backend::HttpBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xdp_ingress::{
    model::{
        BackendProtocol, CookieAffinity, L7Config, LoadBalancing, ObjectKind, ObjectRef,
        RoutePolicy, Snapshot, TlsCertificate, Upstream,
    },
    proxy::{ProxyArgs, REASON_HEADER, SOURCE_DENIED, fixtures::*, tls::self_signed_pem},
};

fn backend(name: &str) -> HttpBackend {
    HttpBackend::start("127.0.0.1:0".parse().unwrap(), name).unwrap()
}

fn up(service: &str, backends: &[&HttpBackend]) -> Arc<Upstream> {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    upstream_at(service, &addrs)
}

fn with(u: Arc<Upstream>, f: impl FnOnce(&mut Upstream)) -> Arc<Upstream> {
    let mut u = (*u).clone();
    f(&mut u);
    Arc::new(u)
}

/// A port on loopback nobody listens on.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_with_default_backend_and_404() {
    let (a, b, w, any, def) = (
        backend("a"),
        backend("b"),
        backend("w"),
        backend("any"),
        backend("def"),
    );
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let l7 = l7_with(
        vec![
            vhost(
                "foo.example.com",
                vec![
                    route_to(path("Exact", "/exact"), up("b", &[&b])),
                    route_to(path("Prefix", "/api"), up("b", &[&b])),
                    route_to(path("Prefix", "/"), up("a", &[&a])),
                ],
                false,
            ),
            vhost(
                "*.example.com",
                vec![route_to(path("Prefix", "/"), up("w", &[&w]))],
                false,
            ),
            vhost(
                "",
                vec![route_to(path("Prefix", "/any"), up("any", &[&any]))],
                false,
            ),
        ],
        None,
    );
    proxy.handle.apply(snapshot(1, l7.clone()));
    let c = http1_client();
    let p = proxy.http();
    let cases = [
        ("foo.example.com", "/", "a"),
        ("foo.example.com", "/exact", "b"),
        ("foo.example.com", "/exact/", "a"),
        ("foo.example.com", "/api", "b"),
        ("foo.example.com", "/api/v1", "b"),
        ("foo.example.com", "/apiv1", "a"),
        ("FOO.example.com:80", "/api", "b"),
        ("bar.example.com", "/x", "w"),
        ("x.bar.example.com", "/any/1", "any"),
        ("other.test", "/any", "any"),
    ];
    for (host, path, pod) in cases {
        let g = get(&c, p, host, path).await;
        assert_eq!(g.status, StatusCode::OK, "{host}{path}");
        assert_eq!(g.pod(), pod, "{host}{path}");
        assert_eq!(g.json()["path"], path, "path passed unchanged");
    }
    let g = get(&c, p, "other.test", "/nothing").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.header(REASON_HEADER), "no path matched");
    assert!(g.body.len() < 100);

    // With a default backend, unmatched requests go there.
    let mut l7b = l7;
    l7b.default_backend = Some(up("def", &[&def]));
    proxy.handle.apply(snapshot(2, l7b));
    assert_eq!(get(&c, p, "other.test", "/nothing").await.pod(), "def");
    assert_eq!(get(&c, p, "foo.example.com", "/").await.pod(), "a");
    assert_eq!(proxy.handle.version(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "h.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    let c = http1_client();
    let mut r = req(proxy.http(), "h.test", "/p?q=1");
    let h = r.headers_mut();
    h.insert("connection", "x-drop-me".parse().unwrap());
    h.insert("x-drop-me", "secret".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    h.insert("x-custom", "kept".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    let j = g.json();
    let hd = &j["headers"];
    assert_eq!(j["path"], "/p?q=1");
    assert_eq!(hd["host"], "h.test");
    assert_eq!(hd["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(hd["x-real-ip"], "127.0.0.1");
    assert_eq!(hd["x-forwarded-proto"], "http");
    assert_eq!(hd["x-forwarded-host"], "h.test");
    assert_eq!(hd["x-forwarded-port"], proxy.http().port().to_string());
    assert_eq!(hd["forwarded"], "for=127.0.0.1;host=h.test;proto=http");
    assert_eq!(hd["x-custom"], "kept");
    assert_eq!(hd["x-request-id"].as_str().unwrap().len(), 32);
    assert!(
        hd.get("x-drop-me").is_none() && hd.get("keep-alive").is_none(),
        "{hd}"
    );

    let mut r = req(proxy.http(), "h.test", "/");
    r.headers_mut()
        .insert("x-request-id", "given-id".parse().unwrap());
    assert_eq!(
        send(&c, r).await.unwrap().json()["headers"]["x-request-id"],
        "given-id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_and_h2c_upstream_and_grpc_trailers() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let h1 = up("h1", &[&a]);
    let h2 = with(up("h2", &[&a]), |u| u.protocol = BackendProtocol::H2c);
    let grpc = with(up("grpc", &[&a]), |u| u.protocol = BackendProtocol::Grpc);
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "g.test",
                vec![
                    route_to(path("Prefix", "/h2"), h2),
                    route_to(path("Prefix", "/trailers"), grpc),
                    route_to(path("Prefix", "/"), h1),
                ],
                false,
            )],
            None,
        ),
    ));
    let c = h2c_client();
    // Client speaks h2c with prior knowledge; the upstream gets HTTP/1.1 with a Host header.
    let g = get(&c, proxy.http(), "g.test", "/plain").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["version"], "HTTP/1.1");
    assert_eq!(g.json()["headers"]["host"], "g.test");
    let g = get(&c, proxy.http(), "g.test", "/h2").await;
    assert_eq!(g.json()["version"], "HTTP/2.0");

    // gRPC: h2 both ways, TE: trailers passes, trailers come back.
    let mut r = req(proxy.http(), "g.test", "/trailers");
    *r.method_mut() = Method::POST;
    r.headers_mut().insert("te", "trailers".parse().unwrap());
    r.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    *r.body_mut() = Full::new(Bytes::from_static(b"\0\0\0\0\x02hi"));
    let g = send(&c, r).await.unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["te"], "trailers");
    assert_eq!(g.json()["body_len"], 7);
    let t = g.trailers.expect("trailers forwarded");
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["grpc-message"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_and_body_limit() {
    let a = backend("a");
    let mut args = TestProxy::quiet_args();
    args.max_body_bytes = 64 << 20;
    let proxy = TestProxy::start(args).await;
    let small = Arc::new(RoutePolicy {
        max_body_bytes: Some(1000),
        ..RoutePolicy::default()
    });
    let mut limited = route_to(path("Prefix", "/small"), up("a", &[&a]));
    limited.policy = small;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "b.test",
                vec![limited, route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    let c = http1_client();
    let mut r = req(proxy.http(), "b.test", "/upload");
    *r.method_mut() = Method::POST;
    *r.body_mut() = Full::new(Bytes::from(vec![b'y'; 20 << 20]));
    let g = send(&c, r).await.unwrap();
    assert_eq!(g.json()["body_len"], 20 << 20);
    let g = get(&c, proxy.http(), "b.test", &format!("/bytes/{}", 30 << 20)).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body.len(), 30 << 20);

    let mut r = req(proxy.http(), "b.test", "/small");
    *r.method_mut() = Method::POST;
    *r.body_mut() = Full::new(Bytes::from(vec![b'y'; 2000]));
    let g = send(&c, r).await.unwrap();
    assert_eq!(g.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_stays_open_across_configuration_changes() {
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let to = |be: &HttpBackend, v: u64| {
        snapshot(
            v,
            l7_with(
                vec![vhost(
                    "ws.test",
                    vec![route_to(path("Prefix", "/"), up(be.name.as_str(), &[be]))],
                    false,
                )],
                None,
            ),
        )
    };
    proxy.handle.apply(to(&a, 1));
    let (mut ws, pod) = websocket_open(proxy.http(), "ws.test").await;
    assert_eq!(pod, "a");
    ws_echo(&mut ws, b"before").await;
    // Move the route to another backend, then remove it entirely, 100 times over.
    for v in 0..100u64 {
        proxy.handle.apply(if v.is_multiple_of(2) {
            to(&b, v + 2)
        } else {
            snapshot(v + 2, L7Config::default())
        });
    }
    proxy.handle.apply(to(&b, 200));
    ws_echo(&mut ws, b"after 101 configuration changes").await;
    // New connections follow the new configuration.
    let (_ws2, pod2) = websocket_open(proxy.http(), "ws.test").await;
    assert_eq!(pod2, "b");
    ws_echo(&mut ws, b"still here").await;
}

fn tls_cert(secret: &str, pem: &(String, String)) -> Arc<TlsCertificate> {
    Arc::new(TlsCertificate {
        secret: ObjectRef {
            kind: ObjectKind::Secret,
            namespace: "default".into(),
            name: secret.into(),
        },
        chain_pem: pem.0.as_bytes().into(),
        key_pem: pem.1.as_bytes().into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_wildcard_default_rotation_and_redirect() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let exact = self_signed_pem(&["secure.test"]).unwrap();
    let wild = self_signed_pem(&["*.wild.test"]).unwrap();
    let mut l7 = l7_with(
        vec![
            vhost(
                "secure.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                true,
            ),
            vhost(
                "open.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            ),
        ],
        None,
    );
    l7.certificates
        .insert("secure.test".into(), tls_cert("exact", &exact));
    l7.certificates
        .insert("*.wild.test".into(), tls_cert("wild", &wild));
    proxy.handle.apply(snapshot(1, l7.clone()));

    let (s, der) = tls_connect(proxy.https(), "secure.test", &[b"http/1.1"]).await;
    assert_eq!(der, pem_der(&exact.0));
    let g = request_over(s, false, req(proxy.https(), "secure.test", "/x")).await;
    assert_eq!(g.pod(), "a");
    assert_eq!(g.json()["headers"]["x-forwarded-proto"], "https");

    let (_, der) = tls_connect(proxy.https(), "a.wild.test", &[]).await;
    assert_eq!(der, pem_der(&wild.0));
    // A wildcard covers one label only: default (generated) certificate otherwise.
    let (_, der_default) = tls_connect(proxy.https(), "a.b.wild.test", &[]).await;
    assert_ne!(der_default, pem_der(&wild.0));
    assert_ne!(der_default, pem_der(&exact.0));
    let (_, der_unknown) = tls_connect(proxy.https(), "unknown.test", &[]).await;
    assert_eq!(der_default, der_unknown);

    // HTTP/2 over TLS via ALPN.
    let (s, _) = tls_connect(proxy.https(), "secure.test", &[b"h2"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let g = request_over(s, true, req(proxy.https(), "secure.test", "/h2")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.pod(), "a");

    // Plain HTTP to a TLS host: 308 to https, path and query kept; other hosts not redirected.
    let c = http1_client();
    let g = get(&c, proxy.http(), "secure.test", "/a/b?c=d").await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        g.header("location"),
        format!("https://secure.test:{}/a/b?c=d", proxy.https().port())
    );
    assert_eq!(
        get(&c, proxy.http(), "open.test", "/").await.status,
        StatusCode::OK
    );

    // Rotation without restart.
    let rotated = self_signed_pem(&["secure.test"]).unwrap();
    l7.certificates
        .insert("secure.test".into(), tls_cert("exact", &rotated));
    proxy.handle.apply(snapshot(2, l7));
    let (_, der) = tls_connect(proxy.https(), "secure.test", &[]).await;
    assert_eq!(der, pem_der(&rotated.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_default_certificate() {
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let fallback = self_signed_pem(&["fallback.test"]).unwrap();
    let l7 = L7Config {
        default_certificate: Some(tls_cert("fallback", &fallback)),
        ..L7Config::default()
    };
    proxy.handle.apply(snapshot(1, l7));
    let (_, der) = tls_connect(proxy.https(), "nothing.test", &[]).await;
    assert_eq!(der, pem_der(&fallback.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_and_hash_stickiness() {
    let bs: Vec<HttpBackend> = (0..3).map(|i| backend(&format!("p{i}"))).collect();
    let refs: Vec<&HttpBackend> = bs.iter().collect();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let sticky = with(up("sticky", &refs), |u| {
        u.affinity = Some(CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            max_age: Some(Duration::from_secs(172800)),
            path: Some("/".into()),
            same_site: Some("Lax".into()),
            secure: false,
        })
    });
    let hashed = with(up("hashed", &refs), |u| {
        u.load_balancing = LoadBalancing::Hash(xdp_ingress::model::HashOn::Header("x-user".into()))
    });
    let l7 = |sticky: Arc<Upstream>| {
        l7_with(
            vec![vhost(
                "s.test",
                vec![
                    route_to(path("Prefix", "/hash"), hashed.clone()),
                    route_to(path("Prefix", "/"), sticky),
                ],
                false,
            )],
            None,
        )
    };
    proxy.handle.apply(snapshot(1, l7(sticky.clone())));
    let c = http1_client();
    let first = get(&c, proxy.http(), "s.test", "/").await;
    let set = first.header("set-cookie");
    assert!(
        set.starts_with("INGRESSCOOKIE=")
            && set.contains("Max-Age=172800")
            && set.contains("SameSite=Lax"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let pod = first.pod();
    let with_cookie = || {
        let mut r = req(proxy.http(), "s.test", "/");
        r.headers_mut().insert("cookie", cookie.parse().unwrap());
        r
    };
    for _ in 0..10 {
        let g = send(&c, with_cookie()).await.unwrap();
        assert_eq!(g.pod(), pod);
        assert!(g.header("set-cookie").is_empty());
    }
    // Endpoint changes (another pod removed, order changed): the cookie keeps its pod.
    let removed = bs.iter().find(|b| b.name != pod).unwrap().name.clone();
    let keep: Vec<&HttpBackend> = bs.iter().rev().filter(|b| b.name != removed).collect();
    proxy.handle.apply(snapshot(
        2,
        l7(with(sticky, |u| {
            u.endpoints = up("sticky", &keep).endpoints.clone()
        })),
    ));
    for _ in 0..10 {
        assert_eq!(send(&c, with_cookie()).await.unwrap().pod(), pod);
    }
    // Without a cookie, requests spread over pods.
    let pods: HashSet<String> =
        futures::future::join_all((0..6).map(|_| get(&c, proxy.http(), "s.test", "/")))
            .await
            .iter()
            .map(|g| g.pod())
            .collect();
    assert!(pods.len() >= 2, "{pods:?}");

    // Consistent hash on a header: same user, same pod.
    let mut by_user = BTreeMap::new();
    for round in 0..3 {
        for user in 0..10 {
            let mut r = req(proxy.http(), "s.test", "/hash");
            r.headers_mut()
                .insert("x-user", user.to_string().parse().unwrap());
            let pod = send(&c, r).await.unwrap().pod();
            if round == 0 {
                by_user.insert(user, pod);
            } else {
                assert_eq!(by_user[&user], pod);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_ejected_without_failed_idempotent_requests() {
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let mut u = (*up("svc", &[&a, &b])).clone();
    let dead = upstream_at("svc", &[dead_addr()]).endpoints[0].clone();
    u.endpoints.insert(1, dead);
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "d.test",
                vec![route_to(path("Prefix", "/"), Arc::new(u))],
                false,
            )],
            None,
        ),
    ));
    let c = http1_client();
    let mut pods = HashSet::new();
    // POSTs with a body first: a connect failure leaves the body unread, so it goes on to
    // the next endpoint.
    for i in 0..30 {
        let mut r = req(proxy.http(), "d.test", "/post");
        *r.method_mut() = Method::POST;
        *r.body_mut() = Full::new(Bytes::from(format!("body {i}")));
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.status, StatusCode::OK, "{g:?}");
        assert_eq!(g.json()["body"], format!("body {i}"));
        pods.insert(g.pod());
    }
    for _ in 0..30 {
        let g = get(&c, proxy.http(), "d.test", "/").await;
        assert_eq!(g.status, StatusCode::OK);
        pods.insert(g.pod());
    }
    assert_eq!(pods, HashSet::from(["a".to_string(), "b".to_string()]));
    let m = proxy.handle.metrics_text();
    let failures: u64 = m
        .lines()
        .filter(|l| l.starts_with("xdp_ingress_upstream_failures_total"))
        .filter_map(|l| l.rsplit(" ").next()?.parse::<u64>().ok())
        .sum();
    // Ejected after 3 consecutive failures: far fewer than the 20 a round robin would hit.
    assert!((1..=5).contains(&failures), "failures {failures}\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_answer_502_503_504_with_reason() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let slow = Arc::new(RoutePolicy {
        timeouts: xdp_ingress::model::Timeouts {
            read: Some(Duration::from_millis(300)),
            ..Default::default()
        },
        ..RoutePolicy::default()
    });
    let mut timed = route_to(path("Prefix", "/delay"), up("a", &[&a]));
    timed.policy = slow;
    let mut respond = route_to(path("Prefix", "/missing"), up("x", &[]));
    respond.action = xdp_ingress::model::RouteAction::Respond {
        status: 503,
        reason: "service default/missing not found".into(),
    };
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "e.test",
                vec![
                    timed,
                    respond,
                    route_to(path("Prefix", "/dead"), upstream_at("dead", &[dead_addr()])),
                    route_to(path("Prefix", "/empty"), up("empty", &[])),
                ],
                false,
            )],
            None,
        ),
    ));
    let c = http1_client();
    let g = get(&c, proxy.http(), "e.test", "/delay/2000").await;
    assert_eq!(g.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(g.header(REASON_HEADER), "upstream timed out");
    assert_eq!(
        get(&c, proxy.http(), "e.test", "/delay/10").await.status,
        StatusCode::OK
    );
    let g = get(&c, proxy.http(), "e.test", "/dead").await;
    assert_eq!(g.status, StatusCode::BAD_GATEWAY);
    assert_eq!(g.header(REASON_HEADER), "upstream connect failed");
    let g = get(&c, proxy.http(), "e.test", "/empty").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(g.header(REASON_HEADER), "no endpoint available");
    let g = get(&c, proxy.http(), "e.test", "/missing").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(g.header(REASON_HEADER), "service default/missing not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_oversized_headers_are_cut_off() {
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        client_header_timeout: Duration::from_millis(500),
        max_header_bytes: 16 << 10,
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "l.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    // Slowloris: headers never finish; the proxy closes the connection.
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: l.test\r\nX-a: 1\r\n")
        .await
        .unwrap();
    let mut drip = tokio::time::interval(Duration::from_millis(100));
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                // Closed, reset, or an error response: the proxy gave up on this client.
                _ = s.read(&mut buf) => return,
                _ = drip.tick() => { let _ = s.write_all(b"X-b: 2\r\n").await; }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "slow client still connected after 10 s");
    assert_eq!(a.requests(), 0);

    // A TLS client that never sends its ClientHello is cut off the same way.
    let silent = tokio::net::TcpStream::connect(proxy.https()).await.unwrap();
    let mut silent = silent;
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0) | Err(_))),
        "silent TLS client not closed: {r:?}"
    );

    // Oversized headers: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: l.test\r\nX-Big: {}\r\n\r\n",
        "z".repeat(40 << 10)
    );
    let out = raw(proxy.http(), big.as_bytes(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // Normal requests still work.
    let out = raw(
        proxy.http(),
        b"GET / HTTP/1.1\r\nHost: l.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_configuration_changes_under_load_fail_no_request() {
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let snap = |v: u64| -> Arc<Snapshot> {
        // Alternate backends, paths and extra hosts so every snapshot really differs.
        let target = if v.is_multiple_of(2) {
            up("a", &[&a])
        } else {
            up("b", &[&b, &a])
        };
        let mut hosts = vec![vhost(
            "load.test",
            vec![
                route_to(path("Prefix", &format!("/v{v}")), up("a", &[&a])),
                route_to(path("Prefix", "/"), target),
            ],
            false,
        )];
        hosts.extend((0..(v % 7)).map(|i| {
            vhost(
                &format!("h{i}.test"),
                vec![route(path("Prefix", "/"), "none")],
                false,
            )
        }));
        snapshot(v, l7_with(hosts, None))
    };
    proxy.handle.apply(snap(1));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let addr = proxy.http();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = if w % 2 == 0 {
                http1_client()
            } else {
                h2c_client()
            };
            let mut n = 0u64;
            // Bounded: stops when told, and never more than 200k requests.
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                n += 1;
                let mut r = req(addr, "load.test", "/x");
                if n.is_multiple_of(3) {
                    *r.method_mut() = Method::POST;
                    *r.body_mut() = Full::new(Bytes::from_static(b"payload"));
                }
                match send(&c, r).await {
                    Ok(g) if g.status == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for v in 2..=1001 {
        proxy.handle.apply(snap(v));
        // Spread the changes over about a second of load.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "requests ok {ok}, failed {failed}, version {}",
        proxy.handle.version()
    );
    assert_eq!(failed, 0);
    assert!(ok > 500, "load too small to mean anything: {ok}");
    assert_eq!(proxy.handle.version(), 1001);
    assert!(
        proxy
            .handle
            .metrics_text()
            .contains("xdp_ingress_config_reloads_total 1001")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_graceful_shutdown() {
    let a = backend("a");
    let mut proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let m = proxy.handle.metrics_addr().unwrap();
    let c = http1_client();
    let readyz = |c: Http1| async move { get(&c, m, "admin", "/readyz").await.status };
    assert_eq!(
        readyz(c.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before a snapshot"
    );
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "m.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    assert_eq!(readyz(c.clone()).await, StatusCode::OK);
    assert_eq!(get(&c, m, "admin", "/healthz").await.status, StatusCode::OK);
    assert_eq!(
        get(&c, proxy.http(), "m.test", "/").await.status,
        StatusCode::OK
    );
    let text = String::from_utf8_lossy(&get(&c, m, "admin", "/metrics").await.body).to_string();
    for needle in [
        "xdp_ingress_requests_total{ingress=\"default/ing\",host=\"m.test\",path=\"/\",status=\"200\"} 1",
        "xdp_ingress_request_duration_seconds_bucket",
        "xdp_ingress_upstream_response_seconds_bucket",
        "xdp_ingress_active_connections",
        "xdp_ingress_config_reloads_total 1",
        "xdp_ingress_config_version 1",
    ] {
        assert!(text.contains(needle), "missing {needle}\n{text}");
    }

    // An in-flight request finishes after shutdown begins; new connections are refused.
    let slow = tokio::spawn({
        let c = http1_client();
        let addr = proxy.http();
        async move { get(&c, addr, "m.test", "/delay/700").await.status }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(proxy.handle.is_draining());
    assert_eq!(readyz(c.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        tokio::net::TcpStream::connect(proxy.http()).await.is_err(),
        "still accepting"
    );
    assert_eq!(slow.await.unwrap(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), proxy.handle.finished())
        .await
        .expect("drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_and_idle_timeout() {
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        max_connections: 2,
        max_connections_per_client: Some(2),
        keepalive_timeout: Duration::from_millis(500),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "c.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    let closed_within = |mut s: tokio::net::TcpStream, wait: Duration| async move {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(wait, s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    };
    // Two keep-alive connections, each after one request.
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: c.test\r\n\r\n")
            .await
            .unwrap();
        let out = read_h1_response(&mut c).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        kept.push(c);
    }
    let (c2, c1) = (kept.pop().unwrap(), kept.pop().unwrap());
    // A third connection is over the limit: closed at once.
    let c3 = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    assert!(
        closed_within(c3, Duration::from_secs(2)).await,
        "third connection not closed"
    );
    // The two idle ones are closed by the idle timeout, not before.
    let t = std::time::Instant::now();
    assert!(
        closed_within(c1, Duration::from_secs(5)).await,
        "idle connection kept open"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        t.elapsed()
    );
    assert!(closed_within(c2, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Slots are free again.
    let out = raw(
        proxy.http(),
        b"GET / HTTP/1.1\r\nHost: c.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(proxy.handle.metrics_text().contains(
        "xdp_ingress_rejected_connections_total{listener=\"http\",reason=\"max_connections\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_grpcs_upstreams() {
    let (crt, key) = self_signed_pem(&["backend.internal"]).unwrap();
    let b = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), "tls-pod", &crt, &key).unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let https = with(up("https", &[&b]), |u| u.protocol = BackendProtocol::Https);
    let grpcs = with(up("grpcs", &[&b]), |u| u.protocol = BackendProtocol::Grpcs);
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "t.test",
                vec![
                    route_to(path("Prefix", "/trailers"), grpcs),
                    route_to(path("Prefix", "/"), https),
                ],
                false,
            )],
            None,
        ),
    ));
    let c = http1_client();
    let g = get(&c, proxy.http(), "t.test", "/x").await;
    assert_eq!(g.status, StatusCode::OK, "{:?}", g);
    assert_eq!(g.pod(), "tls-pod");
    assert_eq!(g.json()["version"], "HTTP/1.1");
    let mut r = req(proxy.http(), "t.test", "/trailers");
    *r.method_mut() = Method::POST;
    r.headers_mut().insert("te", "trailers".parse().unwrap());
    let g = send(&h2c_client(), r).await.unwrap();
    assert_eq!(g.json()["version"], "HTTP/2.0");
    assert_eq!(g.trailers.expect("trailers")["grpc-status"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_errors_and_harm_nobody() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "h.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    let wait = Duration::from_secs(5);
    let cases: [(&[u8], &str); 3] = [
        (b"GARBAGE\r\n\r\n", "HTTP/1.1 400"),
        (
            b"GET / HTTP/1.1\r\nHost: h.test\r\nBad Header\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h.test\r\nContent-Length: abc\r\n\r\n",
            "HTTP/1.1 400",
        ),
    ];
    for (bytes, want) in cases {
        let out = raw(proxy.http(), bytes, wait).await;
        assert!(
            out.starts_with(want),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Request smuggling: both framings at once, and a second request hidden behind the
    // chunked end. The proxy re-frames the first and closes; the hidden one never runs.
    let out = raw(
        proxy.http(),
        b"POST / HTTP/1.1\r\nHost: h.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h.test\r\n\r\n",
        wait,
    )
    .await;
    assert!(out.matches("HTTP/1.1 ").count() <= 1, "{out}");
    assert!(!out.contains("/smuggled"), "{out}");
    let smuggling_requests = a.requests();
    assert!(smuggling_requests <= 1);

    // Too many headers.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h.test\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = raw(proxy.http(), many.as_bytes(), wait).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    // Junk instead of a TLS ClientHello.
    let out = raw(proxy.https(), b"GET / HTTP/1.1\r\n\r\n", wait).await;
    assert!(!out.contains("200"), "{out:?}");
    assert_eq!(
        a.requests(),
        smuggling_requests,
        "nothing else hostile reached the backend"
    );
    // Everyone else is served as before.
    let g = get(&http1_client(), proxy.http(), "h.test", "/ok").await;
    assert_eq!(g.status, StatusCode::OK);
}

/// Ingress YAML for one host whose `/` goes to a Service with one endpoint at `backend`,
/// with these annotations (`key: value` lines, prefix included).
fn ingress_yaml(host: &str, backend: SocketAddr, annotations: &[(&str, &str)]) -> String {
    let port = backend.port();
    let ip = backend.ip();
    let mut ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    if !ann.is_empty() {
        ann.insert_str(0, "  annotations:\n");
    }
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: web-0}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: guarded
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

/// Translates manifests as the control plane does (manifest parser, store, translation).
fn translated(version: u64, yaml: &str) -> Arc<Snapshot> {
    use xdp_ingress::{
        model::translate::{TranslateConfig, translate},
        source::files::parse_manifests,
        store::Objects,
    };
    let objects = Objects::from_objects(parse_manifests(yaml).expect("manifests parse"));
    let mut s = translate(&objects, &TranslateConfig::default());
    s.version = version;
    Arc::new(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_source_range_from_ingress_yaml_answers_403_outside_it() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    const ALLOW: &str = "nginx.ingress.kubernetes.io/allowlist-source-range";
    const WHITELIST: &str = "nginx.ingress.kubernetes.io/whitelist-source-range";
    let cases: [(&[(&str, &str)], StatusCode); 6] = [
        // Client 127.0.0.1 outside the ranges: 403, the backend never sees it.
        (
            &[(ALLOW, "198.18.0.0/15, 2001:db8::/32")],
            StatusCode::FORBIDDEN,
        ),
        (&[(ALLOW, "10.0.0.0/8,127.0.0.0/8")], StatusCode::OK),
        (&[(ALLOW, "127.0.0.1/32")], StatusCode::OK),
        (&[(ALLOW, "127.0.0.2/32")], StatusCode::FORBIDDEN),
        // The older annotation name works the same; a bad CIDR fails closed.
        (&[(WHITELIST, "0.0.0.0/0")], StatusCode::OK),
        (&[(ALLOW, "127.0.0.0/8, not-a-cidr")], StatusCode::FORBIDDEN),
    ];
    let mut forbidden = 0;
    for (v, (annotations, want)) in cases.into_iter().enumerate() {
        let snap = translated(
            v as u64 + 1,
            &ingress_yaml("guarded.test", a.addr, annotations),
        );
        proxy.handle.apply(snap);
        let before = a.requests();
        let g = get(&c, proxy.http(), "guarded.test", "/x").await;
        assert_eq!(g.status, want, "{annotations:?}");
        if want == StatusCode::FORBIDDEN {
            forbidden += 1;
            assert_eq!(g.header(REASON_HEADER), SOURCE_DENIED);
            assert_eq!(&g.body[..], b"403 Forbidden\n");
            assert_eq!(a.requests(), before, "denied request reached the backend");
        } else {
            assert_eq!(g.pod(), "a");
        }
    }
    // Without the annotation everyone is served.
    proxy
        .handle
        .apply(translated(10, &ingress_yaml("guarded.test", a.addr, &[])));
    assert_eq!(
        get(&c, proxy.http(), "guarded.test", "/").await.status,
        StatusCode::OK
    );
    // Counted like every other answer.
    let m = proxy.handle.metrics_text();
    let line = format!(
        "xdp_ingress_requests_total{{ingress=\"default/guarded\",host=\"guarded.test\",path=\"/\",status=\"403\"}} {forbidden}"
    );
    assert!(m.contains(&line), "{line}\n{m}");
}

/// `proxy-send-timeout` as nginx: it bounds how long a write to the endpoint stays blocked,
/// not the upload; a slow client is not the endpoint's fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_timeout_cuts_off_an_endpoint_that_stops_reading() {
    let a = backend("a");
    // An endpoint that accepts and then never reads: its socket buffers fill up.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = stalled.accept().await {
            held.push(s);
        }
    });
    let proxy = TestProxy::start(ProxyArgs {
        max_body_bytes: 0,
        proxy_send_timeout: Duration::from_millis(700),
        ..TestProxy::quiet_args()
    })
    .await;
    let send_300ms = Arc::new(RoutePolicy {
        timeouts: xdp_ingress::model::Timeouts {
            send: Some(Duration::from_millis(300)),
            ..Default::default()
        },
        ..RoutePolicy::default()
    });
    let mut annotated = route_to(
        path("Prefix", "/annotated"),
        upstream_at("st", &[stalled_addr]),
    );
    annotated.policy = Arc::clone(&send_300ms);
    let mut slow_client = route_to(path("Prefix", "/echo"), up("a", &[&a]));
    slow_client.policy = send_300ms;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "s.test",
                vec![
                    annotated,
                    slow_client,
                    route_to(path("Prefix", "/flag"), upstream_at("sf", &[stalled_addr])),
                ],
                false,
            )],
            None,
        ),
    ));

    // A large upload toward the stalled endpoint: 504 once writes have been blocked for the
    // route's (or the flag's) send timeout.
    for (p, timeout) in [("/annotated", 300), ("/flag", 700)] {
        let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
        let total: usize = 256 << 20;
        let head = format!("POST {p} HTTP/1.1\r\nHost: s.test\r\nContent-Length: {total}\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            let chunk = vec![b'u'; 64 << 10];
            let mut sent = 0;
            while sent < total && wr.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
        });
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Up to the end of the head is enough.
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
                other => panic!("{p}: no response: {other:?}"),
            }
        }
        writer.abort();
        let out = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(out.starts_with("http/1.1 504"), "{p}: {out}");
        assert!(
            out.contains(&format!("{REASON_HEADER}: upstream send timed out")),
            "{p}: {out}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(timeout),
            "{p}: cut off after {:?}",
            started.elapsed()
        );
    }

    // A client that sends its body slowly (1 s in all, gaps of 100 ms) to a healthy endpoint
    // is served even though the upload takes longer than the 300 ms send timeout.
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: s.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[b'z'; 100]).await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"body_len\":1000"), "{out}");
}

/// Upgraded connections close after the route's read timeout (`--proxy-read-timeout` here)
/// without traffic either way, as ingress-nginx; traffic keeps them open indefinitely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_is_closed_after_the_read_timeout() {
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        proxy_read_timeout: Duration::from_millis(700),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "ws.test",
                vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    let (mut ws, pod) = websocket_open(proxy.http(), "ws.test").await;
    assert_eq!(pod, "a");
    // 2 s of messages 300 ms apart: nearly three idle timeouts long, never idle for one.
    for i in 0..7 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws_echo(&mut ws, format!("message {i}").as_bytes()).await;
    }
    let quiet = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), ws.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0) | Err(_))),
        "idle WebSocket not closed: {r:?}"
    );
    assert!(
        quiet.elapsed() >= Duration::from_millis(600),
        "closed early: {:?}",
        quiet.elapsed()
    );
    // New upgrades still work.
    let (mut ws2, _) = websocket_open(proxy.http(), "ws.test").await;
    ws_echo(&mut ws2, b"fresh").await;
}

/// One host `{host}` whose `/` goes to `a`.
fn one_route(host: &str, a: &HttpBackend) -> Arc<Snapshot> {
    snapshot(
        1,
        l7_with(
            vec![vhost(
                host,
                vec![route_to(path("Prefix", "/"), up("a", &[a]))],
                false,
            )],
            None,
        ),
    )
}

/// As nginx since 1.19.7 (client_header_timeout for HTTP/2): a connection that never
/// completes a first request is closed after the client-header timeout, however steadily it
/// trickles bytes — an HTTP/2 preface one byte at a time, a whole preface then frames one
/// byte at a time, or nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_a_first_request_is_closed_after_the_client_header_timeout() {
    use h2raw::*;
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        client_header_timeout: Duration::from_millis(400),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("t.test", &a));
    let every = Duration::from_millis(50);
    let limit = Duration::from_secs(4);
    let settings = frame(SETTINGS, 0, 0, &[]);
    let ping = frame(PING, 0, 0, &[7; 8]);
    // The preface trickled, then empty SETTINGS frames trickled.
    let trickled_preface = trickle_until_closed(
        tokio::net::TcpStream::connect(proxy.http()).await.unwrap(),
        PREFACE
            .iter()
            .copied()
            .chain(settings.iter().copied().cycle()),
        every,
        limit,
    );
    // The preface and SETTINGS at once (the HTTP/2 connection is up), then PINGs trickled.
    let mut started = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    started
        .write_all(&[PREFACE, &settings[..]].concat())
        .await
        .unwrap();
    let trickled_pings = trickle_until_closed(started, ping.iter().copied().cycle(), every, limit);
    let silent = async {
        let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
        let t = std::time::Instant::now();
        closed_within(&mut s, limit).await.then(|| t.elapsed())
    };
    let (preface, pings, silent) = tokio::join!(trickled_preface, trickled_pings, silent);
    for (what, took) in [
        ("trickled preface", preface),
        ("PINGs before any request", pings),
        ("silent connection", silent),
    ] {
        let took = took.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
        // The timeout, plus at most as long again to finish a graceful close.
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(1500),
            "{what}: closed after {took:?}"
        );
    }
    assert_eq!(a.requests(), 0);
    // Prompt clients are served.
    let g = send(&h2c_client(), req(proxy.http(), "t.test", "/"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
}

/// After its last request, an HTTP/2 connection that sends only control frames (PING,
/// SETTINGS, WINDOW_UPDATE, PRIORITY) is idle: GOAWAY and close after the keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_sending_only_control_frames_is_closed_after_the_keepalive_timeout() {
    use h2raw::*;
    let a = backend("a");
    let keepalive = Duration::from_millis(500);
    let proxy = TestProxy::start(ProxyArgs {
        keepalive_timeout: keepalive,
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("p.test", &a));
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    let hello = [PREFACE, &frame(SETTINGS, 0, 0, &[]), &get(1, "p.test", "/")].concat();
    s.write_all(&hello).await.unwrap();
    let control = [
        frame(PING, 0, 0, &[1; 8]),
        frame(SETTINGS, 0, 0, &[]),
        frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()),
        frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 16]),
    ];
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let (mut answered, mut goaway, mut sent) = (None, None, 0usize);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let start = std::time::Instant::now();
    let closed = loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still open after 5 s"
        );
        tokio::select! {
            r = s.read(&mut chunk) => {
                let n = match r { Ok(0) | Err(_) => break std::time::Instant::now(), Ok(n) => n };
                buf.extend_from_slice(&chunk[..n]);
                for (kind, flags, stream, payload) in take_frames(&mut buf) {
                    match kind {
                        SETTINGS if flags & ACK == 0 => {
                            s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
                        }
                        PING if flags & ACK == 0 => {
                            s.write_all(&frame(PING, ACK, 0, &payload)).await.unwrap();
                        }
                        GOAWAY => { goaway.get_or_insert_with(std::time::Instant::now); }
                        _ if stream == 1 && flags & END_STREAM != 0 => {
                            answered = Some(std::time::Instant::now());
                        }
                        _ => {}
                    }
                }
            }
            // Control frames only, once the request was answered.
            _ = tick.tick(), if answered.is_some() => {
                let _ = s.write_all(&control[sent % control.len()]).await;
                sent += 1;
            }
        }
    };
    let answered = answered.expect("the request was answered");
    assert!(sent >= 3, "only {sent} control frames sent");
    let goaway = goaway.expect("GOAWAY before close");
    let idle = goaway - answered;
    assert!(
        idle >= keepalive - Duration::from_millis(50) && idle < keepalive * 3,
        "GOAWAY after {idle:?} idle"
    );
    assert!(closed - goaway < keepalive + Duration::from_millis(500));
    assert_eq!(a.requests(), 1);
}

/// A request whose response is still streaming is progress: its connection is not idle, even
/// when the stream is quiet for longer than the keep-alive timeout, and serves the next
/// request after it — over HTTP/2 and HTTP/1.1. Idle afterwards, it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_response_keeps_its_connection_past_the_keepalive_timeout() {
    let a = backend("a");
    let keepalive = Duration::from_millis(300);
    let proxy = TestProxy::start(ProxyArgs {
        keepalive_timeout: keepalive,
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("s.test", &a));
    // Four lines 500 ms apart: each gap longer than the keep-alive timeout.
    let drip = "/drip/4/500";
    let ticks = "tick 0\ntick 1\ntick 2\ntick 3\n";

    let io =
        hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(proxy.http()).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let resp = h2
        .send_request(req(proxy.http(), "s.test", drip))
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("the whole stream")
        .to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), ticks);
    let next = h2
        .send_request(req(proxy.http(), "s.test", "/after"))
        .await
        .expect("same HTTP/2 connection serves the next request");
    assert_eq!(next.status(), StatusCode::OK);
    http_body_util::BodyExt::collect(next.into_body())
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(3), conn)
        .await
        .expect("idle HTTP/2 connection closed");

    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(format!("GET {drip} HTTP/1.1\r\nHost: s.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let out = read_h1_response(&mut s).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("tick 3"),
        "{out}"
    );
    s.write_all(b"GET /after HTTP/1.1\r\nHost: s.test\r\n\r\n")
        .await
        .unwrap();
    let out = read_h1_response(&mut s).await;
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "same HTTP/1.1 connection serves the next request: {out:?}"
    );
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

/// One client address holding its share of connections (`--max-connections-per-client`)
/// cannot take the rest: its next connections are closed on accept and counted, and another
/// client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_at_its_connection_cap_leaves_the_others_served() {
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        max_connections: 8,
        max_connections_per_client: Some(4),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("q.test", &a));
    let greedy: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    // The greedy client tries to take every slot with connections that say nothing.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from(greedy, proxy.http()).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut refused = 0;
    for s in &mut held[4..] {
        refused += usize::from(closed_within(s, Duration::from_secs(2)).await);
    }
    assert_eq!(refused, 4, "connections over the per-client cap not closed");
    for s in &mut held[..4] {
        assert!(
            !closed_within(s, Duration::from_millis(100)).await,
            "a connection within the cap was closed"
        );
    }
    let mut s = connect_from(other, proxy.http()).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: q.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let out = read_h1_response(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "other client: {out:?}");
    assert_eq!(a.requests(), 1);
    let text = proxy.handle.metrics_text();
    assert!(
        text.contains(
            "xdp_ingress_rejected_connections_total{listener=\"http\",reason=\"max_connections_per_client\"} 4"
        ),
        "{text}"
    );
}

/// The admin listener (`/metrics`, `/healthz`, `/readyz`; host network in the DaemonSet) gets
/// the proxy's protection: slowloris and idle connections are closed, one client cannot hold
/// every admin slot, and the kubelet still gets its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_closes_slow_clients_and_stays_reachable() {
    let proxy = TestProxy::start(ProxyArgs {
        client_header_timeout: Duration::from_millis(400),
        keepalive_timeout: Duration::from_millis(400),
        ..TestProxy::quiet_args()
    })
    .await;
    let admin = proxy.handle.metrics_addr().unwrap();
    let attacker: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let kubelet: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    // 20 slowloris connections: headers that never end, one byte every 50 ms.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = connect_from(attacker, admin).await;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n")
            .await
            .unwrap();
        let drip = b"X-Slow: 1\r\n".iter().copied().cycle();
        slow.push(tokio::spawn(trickle_until_closed(
            s,
            drip,
            Duration::from_millis(50),
            Duration::from_secs(4),
        )));
    }
    // Meanwhile, another client is answered.
    let mut probe = connect_from(kubelet, admin).await;
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let out = read_h1_response(&mut probe).await;
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "healthz during the flood: {out:?}"
    );
    // Its keep-alive connection is closed once idle.
    let t = std::time::Instant::now();
    assert!(closed_within(&mut probe, Duration::from_secs(3)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let mut closed = 0;
    for task in slow {
        let took = task.await.unwrap();
        assert!(
            took.is_some_and(|t| t < Duration::from_millis(2500)),
            "slowloris admin connection open for {took:?}"
        );
        closed += 1;
    }
    assert_eq!(closed, 20);
    let text = proxy.handle.metrics_text();
    assert!(
        text.contains(
            "xdp_ingress_rejected_connections_total{listener=\"admin\",reason=\"max_connections_per_client\"} 4"
        ),
        "{text}"
    );
    // The flooding address itself is served again once its connections are gone.
    let g = get(&http1_client(), admin, "admin", "/healthz").await;
    assert_eq!(g.status, StatusCode::OK);
}

/// As nginx's `send_timeout`: a response the client does not take — an HTTP/1.1 client that
/// stops reading, an HTTP/2 client that keeps its flow-control window shut — is no progress;
/// the connection is closed after the send timeout instead of holding its slot and its
/// upstream connection for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_the_client_does_not_take_is_cut_off_after_the_send_timeout() {
    use h2raw::*;
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        send_timeout: Duration::from_millis(500),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("w.test", &a));
    let size: usize = 64 << 20;

    // HTTP/1.1: ask for 64 MiB and read nothing for 3 s; then read what is left to read. A
    // small receive buffer, so the kernel does not take the whole response on the client's
    // behalf.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let mut s = socket.connect(proxy.http()).await.unwrap();
    s.write_all(format!("GET /bytes/{size} HTTP/1.1\r\nHost: w.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "connection still open, {got} bytes read");
    assert!(
        got < size,
        "the whole response arrived: the connection was kept"
    );

    // HTTP/2 with an initial window of 0: the response headers come, DATA never can.
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    let zero_window = [0, 4, 0, 0, 0, 0]; // SETTINGS_INITIAL_WINDOW_SIZE = 0
    let hello = [
        PREFACE,
        &frame(SETTINGS, 0, 0, &zero_window),
        &get(1, "w.test", &format!("/bytes/{size}")),
    ]
    .concat();
    s.write_all(&hello).await.unwrap();
    let (mut pending, mut chunk) = (Vec::new(), [0u8; 4096]);
    let mut headers_at = None;
    let start = std::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&chunk[..n]);
            for (kind, flags, stream, _) in take_frames(&mut pending) {
                if kind == SETTINGS && flags & ACK == 0 {
                    let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                if kind == HEADERS && stream == 1 {
                    headers_at.get_or_insert_with(std::time::Instant::now);
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "zero-window HTTP/2 connection still open after 5 s"
    );
    let headers_at = headers_at.expect("response headers");
    let took = start.elapsed() - (headers_at - start);
    assert!(
        took >= Duration::from_millis(400),
        "closed {took:?} after the headers"
    );
}
