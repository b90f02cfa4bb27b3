//! The L7 proxy end to end on loopback (no privileges needed): the proxy runs in-process on
//! 127.0.0.1 with ephemeral ports, echo backends run on their own threads, and real clients
//! (hyper HTTP/1.1 and HTTP/2, rustls, raw TCP) check what arrives on the wire.

mod l7common;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
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
        RoutePolicy, Snapshot, TlsCertificate, Upstream, VirtualHost, nginx_var::NginxString,
    },
    proxy::{
        ProxyArgs, REASON_HEADER, SOURCE_BLOCKED, SOURCE_DENIED, fixtures::*, tls::self_signed_pem,
    },
};

fn up(service: &str, backends: &[&HttpBackend]) -> Arc<Upstream> {
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    upstream_at(service, &addrs)
}

fn with(u: Arc<Upstream>, f: impl FnOnce(&mut Upstream)) -> Arc<Upstream> {
    let mut u = (*u).clone();
    f(&mut u);
    Arc::new(u)
}

use testbed::ports::dead_addr;

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
    // nginx's small page (ngx_http_special_response.c).
    assert!(g.body.len() < 200);
    assert!(String::from_utf8_lossy(&g.body).contains("<title>404 Not Found</title>"));

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
    h.insert("x-custom", "kept".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    let j = g.json();
    let hd = &j["headers"];
    assert_eq!(j["path"], "/p?q=1");
    assert_eq!(hd["host"], "h.test");
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1");
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

    // X-Forwarded-Host is the Host as sent, port included (ingress-nginx: `$best_http_host`).
    let g = send(&c, req(proxy.http(), "h.test:8080", "/"))
        .await
        .unwrap();
    assert_eq!(g.json()["headers"]["x-forwarded-host"], "h.test:8080");
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
        u.affinity = Some(Box::new(CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            mode: Default::default(),
            max_age: Some(Duration::from_secs(172800)),
            expires: None,
            path: Some("/".into()),
            domain: None,
            same_site: Some("Lax".into()),
            conditional_same_site_none: false,
            secure: false,
            change_on_failure: false,
        }))
    });
    let hashed = with(up("hashed", &refs), |u| {
        u.load_balancing = LoadBalancing::Hash(NginxString::parse("$http_x_user").unwrap())
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
    // Without a cookie, requests spread over pods. A new session's pod is random (balanced
    // mode: a random key on the consistent hash, as ingress-nginx's sticky_balanced): 48
    // requests all on one of two pods has odds of 2^-47, six had 1 in 32.
    let pods: HashSet<String> =
        futures::future::join_all((0..48).map(|_| get(&c, proxy.http(), "s.test", "/")))
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
    // Shutdown is a message to the proxy's task: it takes effect when that task runs, which
    // on a loaded machine may be well after any fixed sleep.
    assert!(
        eventually(Duration::from_secs(10), || proxy.handle.is_draining()).await,
        "not draining 10 s after shutdown"
    );
    assert_eq!(readyz(c.clone()).await, StatusCode::SERVICE_UNAVAILABLE);
    // Each worker closes its own listening socket when it sees the drain: poll, bounded.
    let addr = proxy.http();
    assert!(
        eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
        })
        .await,
        "still accepting 10 s after draining began"
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

/// Verified TLS to a backend (what a Gateway API BackendTLSPolicy asks for): the proxy sends
/// the policy's hostname as SNI and accepts the pod only when its certificate leads to the
/// policy's CA and names the hostname (or one of the subjectAltNames); a pod that fails is
/// not sent the request (502), while unverified HTTPS to the same pod still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_upstream_tls() {
    use xdp_ingress::model::{TlsRoots, UpstreamTls};
    let (crt, key) = self_signed_pem(&["backend.internal"]).unwrap();
    let der = pem_der(&crt);
    let b = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), "tls-pod", &crt, &key).unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let verified = |name: &str, host: &str, roots: TlsRoots, sans: &[&str]| {
        let tls = UpstreamTls {
            subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
            ..UpstreamTls::verified(host.into(), roots)
        };
        with(up(name, &[&b]), |u| {
            u.protocol = BackendProtocol::Https;
            u.tls = Some(Arc::new(tls));
        })
    };
    let ca = || TlsRoots::Certificates(vec![der.clone()]);
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "t.test",
                vec![
                    route_to(
                        path("Prefix", "/ok"),
                        verified("ok", "backend.internal", ca(), &[]),
                    ),
                    route_to(
                        path("Prefix", "/san"),
                        verified("san", "sni.internal", ca(), &["backend.internal"]),
                    ),
                    route_to(
                        path("Prefix", "/wrong-name"),
                        verified("wrong-name", "other.internal", ca(), &[]),
                    ),
                    route_to(
                        path("Prefix", "/system"),
                        verified("system", "backend.internal", TlsRoots::System, &[]),
                    ),
                    route_to(
                        path("Prefix", "/unverified"),
                        with(up("plain", &[&b]), |u| u.protocol = BackendProtocol::Https),
                    ),
                ],
                false,
            )],
            None,
        ),
    ));
    let c = http1_client();
    for (p, want) in [
        ("/ok", StatusCode::OK),
        ("/san", StatusCode::OK),
        ("/wrong-name", StatusCode::BAD_GATEWAY),
        ("/system", StatusCode::BAD_GATEWAY),
        ("/unverified", StatusCode::OK),
    ] {
        let g = get(&c, proxy.http(), "t.test", p).await;
        assert_eq!(g.status, want, "{p}: {g:?}");
        if want == StatusCode::OK {
            assert_eq!(g.pod(), "tls-pod", "{p}");
        }
    }
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

    // A head of 4000 short lines (about 50 KB): more lines than hyper parses for nginx's
    // 33 KiB of header buffers (one per 16 bytes), 431 before the proxy sees it (nginx: 400,
    // the buffers are full; l7_upstream_protocol has 150 short ones served).
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h.test\r\n");
    for i in 0..4000 {
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
    let service = service_yaml("web", backend);
    let mut ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    if !ann.is_empty() {
        ann.insert_str(0, "  annotations:\n");
    }
    format!(
        r#"{service}apiVersion: networking.k8s.io/v1
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
    translate_manifests(version, yaml, |_| {})
}

/// As [`translated`], with `--default-backend-service default/global`.
fn with_default_backend_service(version: u64, yaml: &str) -> Arc<Snapshot> {
    translate_manifests(version, yaml, |c| {
        c.default_backend_service = Some(xdp_ingress::store::Key::new("default", "global"))
    })
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
        // The older annotation name works the same; a bad CIDR fails closed as
        // ingress-nginx's denied location: 503 for everyone (ipallowlist LocationDeniedError).
        (&[(WHITELIST, "0.0.0.0/0")], StatusCode::OK),
        (
            &[(ALLOW, "127.0.0.0/8, not-a-cidr")],
            StatusCode::SERVICE_UNAVAILABLE,
        ),
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
            // nginx's page (ngx_http_special_response.c).
            assert!(
                String::from_utf8_lossy(&g.body).contains("<h1>403 Forbidden</h1>"),
                "{:?}",
                g.body
            );
            assert_eq!(a.requests(), before, "denied request reached the backend");
        } else if want == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(a.requests(), before, "denied location reached the backend");
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

/// `denylist-source-range` and the ConfigMap's `whitelist-source-range`,
/// `denylist-source-range` and `block-cidrs`, as ingress-nginx writes them into nginx's access
/// module: `deny` lines before `allow` lines (the first match decides), each annotation
/// replacing the ConfigMap key of its name, and `block-cidrs` in the `http` block, which a
/// location with `allow`/`deny` lines of its own does not inherit. The client is 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denylist_source_range_and_configmap_source_ranges() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";
    const ALLOW: &str = "nginx.ingress.kubernetes.io/allowlist-source-range";
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        StatusCode,
        &'a str,
    );
    let cases: [Case; 11] = [
        // Annotations only.
        (
            &[],
            &[(DENY, "127.0.0.1")],
            StatusCode::FORBIDDEN,
            SOURCE_BLOCKED,
        ),
        (&[], &[(DENY, "10.0.0.0/8")], StatusCode::OK, ""),
        // deny before allow: in both lists is denied.
        (
            &[],
            &[(DENY, "127.0.0.0/8"), (ALLOW, "127.0.0.1/32")],
            StatusCode::FORBIDDEN,
            SOURCE_BLOCKED,
        ),
        (
            &[],
            &[(DENY, "10.0.0.0/8"), (ALLOW, "127.0.0.1/32")],
            StatusCode::OK,
            "",
        ),
        (
            &[],
            &[(DENY, "127.0.0.1/33")],
            StatusCode::SERVICE_UNAVAILABLE,
            "",
        ),
        // The ConfigMap's defaults, and annotations replacing them.
        (
            &[("denylist-source-range", "127.0.0.0/8")],
            &[],
            StatusCode::FORBIDDEN,
            SOURCE_BLOCKED,
        ),
        (
            &[("denylist-source-range", "127.0.0.0/8")],
            &[(DENY, "10.0.0.0/8")],
            StatusCode::OK,
            "",
        ),
        (
            &[("whitelist-source-range", "10.0.0.0/8")],
            &[],
            StatusCode::FORBIDDEN,
            SOURCE_DENIED,
        ),
        (
            &[("whitelist-source-range", "10.0.0.0/8")],
            &[(ALLOW, "127.0.0.1")],
            StatusCode::OK,
            "",
        ),
        // block-cidrs: every route without lists of its own, not one with an allowlist.
        (
            &[("block-cidrs", "127.0.0.0/8")],
            &[],
            StatusCode::FORBIDDEN,
            SOURCE_BLOCKED,
        ),
        (
            &[("block-cidrs", "127.0.0.0/8")],
            &[(ALLOW, "127.0.0.0/8")],
            StatusCode::OK,
            "",
        ),
    ];
    for (v, (data, annotations, want, reason)) in cases.into_iter().enumerate() {
        let data: String = data
            .iter()
            .map(|(k, v)| format!("  {k}: {v:?}\n"))
            .collect();
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: ingress-nginx}}\n\
             data:\n  ssl-redirect: \"false\"\n{data}---\n{}",
            ingress_yaml("guarded.test", a.addr, annotations)
        );
        let snap = translate_manifests(v as u64 + 1, &yaml, |c| {
            c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"));
        });
        proxy.handle.apply(snap);
        let before = a.requests();
        let g = get(&c, proxy.http(), "guarded.test", "/x").await;
        assert_eq!(g.status, want, "{data} {annotations:?}");
        if want == StatusCode::OK {
            assert_eq!(g.pod(), "a");
        } else {
            assert_eq!(
                a.requests(),
                before,
                "a refused request reached the backend"
            );
        }
        if want == StatusCode::FORBIDDEN {
            assert_eq!(g.header(REASON_HEADER), reason, "{data} {annotations:?}");
        }
    }
    // A request no route takes: nginx's default server inherits `block-cidrs` too (found by
    // a fresh-user trial: unknown hosts were answered 404 to blocked clients).
    for (block, want) in [
        ("127.0.0.0/8", StatusCode::FORBIDDEN),
        ("10.0.0.0/8", StatusCode::NOT_FOUND),
        ("127.0.0.1/33", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: ingress-nginx}}\n\
             data:\n  block-cidrs: {block:?}\n---\n{}",
            ingress_yaml("guarded.test", a.addr, &[])
        );
        let snap = translate_manifests(100, &yaml, |c| {
            c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"));
        });
        proxy.handle.apply(snap);
        let g = get(&c, proxy.http(), "unknown.test", "/x").await;
        assert_eq!(g.status, want, "block-cidrs {block}, unknown host");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(g.header(REASON_HEADER), SOURCE_BLOCKED);
        }
    }
}

/// A path no rule of the host has meets the host's first Ingress's access checks before the
/// 404, as in ingress-nginx's implicit `location /` (found by a fresh-user trial: a client
/// outside the allowlist got 404, not 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_meet_the_first_ingress_access_checks() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    for (allow, want) in [
        ("10.0.0.0/8", StatusCode::FORBIDDEN),
        ("127.0.0.1", StatusCode::NOT_FOUND),
    ] {
        let yaml = ingress_yaml(
            "split.test",
            a.addr,
            &[("nginx.ingress.kubernetes.io/allowlist-source-range", allow)],
        )
        .replace("{path: /, ", "{path: /app, ");
        proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
        let g = get(&c, proxy.http(), "split.test", "/other").await;
        assert_eq!(g.status, want, "allowlist {allow}");
        let g = get(&c, proxy.http(), "split.test", "/app").await;
        let own = if want == StatusCode::FORBIDDEN {
            want
        } else {
            StatusCode::OK
        };
        assert_eq!(g.status, own, "allowlist {allow}, its own path");
    }
}

/// `--reason-header=false`: the proxy's own answers say only their status (no
/// `x-xdp-ingress-reason` naming the configuration to an anonymous client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reason_header_off_names_nothing() {
    let a = backend("a");
    let c = http1_client();
    let yaml = ingress_yaml(
        "guarded.test",
        a.addr,
        &[(
            "nginx.ingress.kubernetes.io/denylist-source-range",
            "127.0.0.1",
        )],
    );
    for on in [true, false] {
        let proxy = TestProxy::start(ProxyArgs {
            reason_header: on,
            ..TestProxy::quiet_args()
        })
        .await;
        proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
        for (host, want) in [
            ("guarded.test", StatusCode::FORBIDDEN),
            ("unknown.test", StatusCode::NOT_FOUND),
        ] {
            let g = get(&c, proxy.http(), host, "/x").await;
            assert_eq!(g.status, want, "{host}");
            assert_eq!(
                g.header(REASON_HEADER).is_empty(),
                !on,
                "{host} reason_header={on}"
            );
        }
    }
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
        // Before the head: the proxy's clock cannot start earlier than this (taken after the
        // writer started, a loaded machine made the lower bound below fail).
        let started = std::time::Instant::now();
        s.write_all(head.as_bytes()).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let writer = tokio::spawn(async move {
            let chunk = vec![b'u'; 64 << 10];
            let mut sent = 0;
            while sent < total && wr.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
        });
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

// ---------------------------------------------------------------------------------------------
// Client address trust (proxy/client_addr.rs, deploy/docs/client-address.md).

/// Provenance headers a client can forge.
const SPOOFED: [(&str, &str); 9] = [
    ("x-forwarded-scheme", "https"),
    ("x-scheme", "https"),
    ("x-original-forwarded-for", "198.18.0.9"),
    ("x-forwarded-for", "198.18.0.9"),
    ("forwarded", "for=198.18.0.9;proto=https"),
    ("x-real-ip", "198.18.0.9"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "spoofed.test"),
    ("x-forwarded-port", "8443"),
];

/// `open.test` goes to `a`; `guarded.test` only for 198.18.0.0/15 and 2001:db8::/32;
/// `secure.test` is a TLS host (plain HTTP is redirected).
fn trust_snapshot(a: &HttpBackend) -> Arc<Snapshot> {
    let mut guarded = route_to(path("Prefix", "/"), up("a", &[a]));
    Arc::make_mut(&mut guarded.policy).allow_source_ranges = ["198.18.0.0/15", "2001:db8::/32"]
        .map(|c| xdp_ingress::proxy::args::parse_cidr(c).unwrap())
        .to_vec();
    snapshot(
        1,
        l7_with(
            vec![
                vhost(
                    "open.test",
                    vec![route_to(path("Prefix", "/"), up("a", &[a]))],
                    false,
                ),
                vhost("guarded.test", vec![guarded], false),
                vhost(
                    "secure.test",
                    vec![route_to(path("Prefix", "/"), up("a", &[a]))],
                    true,
                ),
            ],
            None,
        ),
    )
}

fn spoofed(addr: SocketAddr, host: &str) -> http::Request<Full<Bytes>> {
    let mut r = req(addr, host, "/");
    for (k, v) in SPOOFED {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

/// Issue 9 class 2: by default (ingress-nginx `use-forwarded-headers: "false"`) what a client
/// says about itself is replaced with what the proxy saw, and it decides nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_provenance_headers_are_replaced_by_default() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(trust_snapshot(&a));
    let c = http1_client();
    let mut r = spoofed(proxy.http(), "open.test");
    // httpoxy: nginx.tmpl's `proxy_set_header Proxy ""`.
    r.headers_mut()
        .insert("proxy", "http://evil.test:3128".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    let hd = &g.json()["headers"];
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "{hd}");
    assert!(hd.get("proxy").is_none(), "{hd}");
    assert_eq!(hd["x-real-ip"], "127.0.0.1");
    assert_eq!(hd["forwarded"], "for=127.0.0.1;host=open.test;proto=http");
    assert_eq!(hd["x-forwarded-proto"], "http");
    assert_eq!(hd["x-forwarded-host"], "open.test");
    assert_eq!(hd["x-forwarded-port"], proxy.http().port().to_string());
    assert_eq!(
        (&hd["x-forwarded-scheme"], &hd["x-scheme"]),
        (&"http".into(), &"http".into())
    );
    // The client's own values, raw, as ingress-nginx's template passes them (its e2e
    // settings/forwarded_headers.go with use-forwarded-headers false).
    assert_eq!(hd["x-original-forwarded-for"], "198.18.0.9", "{hd}");
    assert_eq!(hd["x-original-forwarded-host"], "spoofed.test", "{hd}");
    // The allowlist sees the real peer, not the forged address inside its range.
    let g = send(&c, spoofed(proxy.http(), "guarded.test"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    assert_eq!(g.header(REASON_HEADER), SOURCE_DENIED);
    // A forged `X-Forwarded-Proto: https` does not skip ssl-redirect.
    let g = send(&c, spoofed(proxy.http(), "secure.test"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    // HTTP/2 the same.
    let g = send(&h2c_client(), spoofed(proxy.http(), "open.test"))
        .await
        .unwrap();
    assert_eq!(g.json()["headers"]["x-forwarded-for"], "127.0.0.1");
}

fn trusting(cidr: &str, f: impl FnOnce(&mut ProxyArgs)) -> ProxyArgs {
    let mut args = TestProxy::quiet_args();
    args.use_forwarded_headers = true;
    args.proxy_real_ip_cidr = vec![xdp_ingress::proxy::args::parse_cidr(cidr).unwrap()];
    f(&mut args);
    args
}

/// `use-forwarded-headers` with `proxy-real-ip-cidr`: from a trusted balancer the headers are
/// kept as ingress-nginx keeps them, and the client it names is the client; from anyone else
/// they are still replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_from_a_trusted_cidr_are_kept_as_ingress_nginx() {
    let a = backend("a");
    let c = http1_client();
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |_| {})).await;
    proxy.handle.apply(trust_snapshot(&a));
    let mut r = spoofed(proxy.http(), "open.test");
    r.headers_mut().insert(
        "x-forwarded-for",
        "203.0.113.1, 198.18.0.9, 127.0.0.5".parse().unwrap(),
    );
    let g = send(&c, r).await.unwrap();
    let hd = &g.json()["headers"];
    // realip, recursive: right to left past trusted 127.0.0.5 to 198.18.0.9; X-Forwarded-For
    // is then `$remote_addr` (compute-full-forwarded-for is off).
    assert_eq!(hd["x-forwarded-for"], "198.18.0.9", "{hd}");
    assert_eq!(hd["x-real-ip"], "198.18.0.9");
    assert_eq!(hd["x-forwarded-proto"], "https");
    assert_eq!(hd["x-forwarded-host"], "spoofed.test");
    assert_eq!(hd["x-forwarded-port"], "8443");
    assert_eq!(
        hd["forwarded"],
        "for=198.18.0.9;host=spoofed.test;proto=https"
    );
    // The allowlist sees the client the balancer named.
    let g = send(&c, spoofed(proxy.http(), "guarded.test"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    // A balancer that terminated TLS says so: no redirect loop.
    let g = send(&c, spoofed(proxy.http(), "secure.test"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    drop(proxy);

    // compute-full-forwarded-for: the balancer appended to the chain it received.
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |a| {
        a.compute_full_forwarded_for = true
    }))
    .await;
    proxy.handle.apply(trust_snapshot(&a));
    let mut r = spoofed(proxy.http(), "open.test");
    r.headers_mut().insert(
        "x-forwarded-for",
        "203.0.113.1, 198.18.0.9".parse().unwrap(),
    );
    let g = send(&c, r).await.unwrap();
    let hd = &g.json()["headers"];
    assert_eq!(
        hd["x-forwarded-for"], "203.0.113.1, 198.18.0.9, 127.0.0.1",
        "{hd}"
    );
    assert_eq!(hd["x-real-ip"], "198.18.0.9");
    assert_eq!(
        hd["forwarded"],
        "for=198.18.0.9;proto=https, for=127.0.0.1;host=spoofed.test;proto=https"
    );
    drop(proxy);

    // The peer is not inside proxy-real-ip-cidr: as by default.
    let proxy = TestProxy::start(trusting("10.0.0.0/8", |a| {
        a.compute_full_forwarded_for = true
    }))
    .await;
    proxy.handle.apply(trust_snapshot(&a));
    let g = send(&c, spoofed(proxy.http(), "open.test")).await.unwrap();
    let hd = &g.json()["headers"];
    assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "{hd}");
    assert_eq!(hd["x-forwarded-proto"], "http");
    assert_eq!(hd["x-forwarded-host"], "open.test");
    let g = send(&c, spoofed(proxy.http(), "guarded.test"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::FORBIDDEN);
}

/// A trusted balancer's `X-Forwarded-Host` chain (each proxy appends its own): ingress-nginx's
/// `$best_http_host` is its first element (lua_ingress.lua `parse_x_forwarded_host`), sent
/// upstream as `Host` and `X-Forwarded-Host` (nginx.tmpl `proxy_set_header`), and named, port
/// dropped, in the `ssl-redirect` `Location` (lua_ingress.lua `redirect_host`). Routing still
/// follows the request's own Host. HTTP/2 the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_forwarded_host_of_a_trusted_balancer_is_the_best_host() {
    let a = backend("a");
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |_| {})).await;
    proxy.handle.apply(trust_snapshot(&a));
    let chained = |host: &str, path: &str| {
        let mut r = req(proxy.http(), host, path);
        r.headers_mut().insert(
            "x-forwarded-host",
            // No leading whitespace: a field value starting with one is malformed in
            // HTTP/2 (RFC 9113 section 8.2.1); the element's own is still trimmed.
            "public.example:8443 , inner.example".parse().unwrap(),
        );
        r
    };
    for client in [http1_client(), h2c_client()] {
        let g = send(&client, chained("open.test", "/p")).await.unwrap();
        assert_eq!(g.pod(), "a");
        let hd = &g.json()["headers"];
        assert_eq!(hd["x-forwarded-host"], "public.example:8443", "{hd}");
        assert_eq!(hd["host"], "public.example:8443", "{hd}");
        assert_eq!(
            hd["forwarded"],
            "for=127.0.0.1;host=\"public.example:8443\";proto=http"
        );
        let g = send(&client, chained("secure.test", "/p?q=1"))
            .await
            .unwrap();
        assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
        let location = g.header("location");
        assert!(
            location.starts_with("https://public.example") && location.ends_with("/p?q=1"),
            "{location}"
        );
        assert!(!location.contains("8443"), "{location}");
    }
    // An empty first element is not a host: the request's own.
    let mut r = req(proxy.http(), "open.test", "/");
    r.headers_mut()
        .insert("x-forwarded-host", ", inner.example".parse().unwrap());
    let g = send(&http1_client(), r).await.unwrap();
    assert_eq!(g.json()["headers"]["x-forwarded-host"], "open.test");
}

fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.extend_from_slice(&[0x11, 0, 12]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            h.extend_from_slice(&[0x21, 0, 36]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
        }
        _ => unreachable!("one family"),
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// A connection that starts with `header`, then one request.
async fn via_proxy_protocol(
    to: SocketAddr,
    header: &[u8],
    tls: bool,
    r: http::Request<Full<Bytes>>,
) -> Got {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    s.write_all(header).await.unwrap();
    if tls {
        let (s, _) = tls_over(s, "guarded.test", &[]).await;
        request_over(s, false, r).await
    } else {
        request_over(s, false, r).await
    }
}

/// `use-proxy-protocol` (a node behind a TCP load balancer): the PROXY header's source is the
/// client for the allowlist and the pod, on HTTP and HTTPS; a connection without a valid
/// header is closed, as nginx does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_address_is_the_client_and_is_required() {
    let a = backend("a");
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |a| {
        a.use_forwarded_headers = false;
        a.use_proxy_protocol = true;
        a.client_header_timeout = Duration::from_secs(1);
    }))
    .await;
    proxy.handle.apply(trust_snapshot(&a));
    let (http, https) = (proxy.http(), proxy.https());
    let v1 = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 4711 80\r\n").into_bytes();

    let g = via_proxy_protocol(
        http,
        &v1("198.18.0.7"),
        false,
        spoofed(http, "guarded.test"),
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    let hd = &g.json()["headers"];
    assert_eq!(hd["x-real-ip"], "198.18.0.7", "{hd}");
    assert_eq!(hd["x-forwarded-for"], "198.18.0.7");
    assert_eq!(hd["x-forwarded-proto"], "http");

    // HTTP/2 with prior knowledge after the header: its preface is left intact.
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    s.write_all(&v1("198.18.0.8")).await.unwrap();
    let g = request_over(s, true, req(http, "guarded.test", "/")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["x-real-ip"], "198.18.0.8");

    // Outside the allowlist per the PROXY header, though the TCP peer (127.0.0.1) is too.
    let g = via_proxy_protocol(
        http,
        &v1("203.0.113.7"),
        false,
        req(http, "guarded.test", "/"),
    )
    .await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);

    // v2, IPv4 and IPv6, over HTTPS.
    let src: SocketAddr = "198.19.0.1:4711".parse().unwrap();
    let g = via_proxy_protocol(
        https,
        &proxy_v2(src, https),
        true,
        req(https, "guarded.test", "/"),
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["x-real-ip"], "198.19.0.1");
    assert_eq!(g.json()["headers"]["x-forwarded-proto"], "https");
    let (src, dst): (SocketAddr, SocketAddr) = (
        "[2001:db8::7]:4711".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    );
    let g = via_proxy_protocol(
        https,
        &proxy_v2(src, dst),
        true,
        req(https, "guarded.test", "/"),
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["x-forwarded-for"], "2001:db8::7");
    let g = via_proxy_protocol(
        http,
        &proxy_v2(src, dst),
        false,
        req(http, "open.test", "/"),
    )
    .await;
    // Destination port 443: the balancer's client spoke HTTPS (lua_ingress.lua).
    assert_eq!(
        g.json()["headers"]["forwarded"],
        "for=\"[2001:db8::7]\";host=open.test;proto=https"
    );

    // Without the header: closed without an answer, and the pod never sees it.
    let before = a.requests();
    let got = raw(
        http,
        b"GET / HTTP/1.1\r\nHost: open.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(got, "", "a request without a PROXY header is not answered");
    let s = tokio::net::TcpStream::connect(https).await.unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), tls_try(s, "guarded.test")).await;
    assert!(
        matches!(tls, Ok(Err(_))),
        "TLS without a PROXY header must fail"
    );
    // A header that never completes is cut off at the client-header timeout.
    let t0 = std::time::Instant::now();
    assert_eq!(
        raw(http, b"PROXY TCP4 198.18", Duration::from_secs(10)).await,
        ""
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(a.requests(), before);
}

/// The PROXY header's destination port is the port the client connected to (ingress-nginx
/// e2e settings/proxy_protocol.go): passed on as `X-Forwarded-Port`, and 443 makes the scheme
/// `https`, so a balancer terminating TLS and sending PROXY to the HTTP port gets the page,
/// not an endless `ssl-redirect` (lua_ingress.lua `rewrite`, nginx.tmpl `$pass_server_port`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_destination_port_is_the_forwarded_port_and_443_is_https() {
    let a = backend("a");
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |a| {
        a.use_forwarded_headers = false;
        a.use_proxy_protocol = true;
    }))
    .await;
    proxy.handle.apply(trust_snapshot(&a));
    let (http, https) = (proxy.http(), proxy.https());
    let v1 = |dport: u16| format!("PROXY TCP4 192.168.0.1 192.168.0.11 56324 {dport}\r\n");
    // "should respect port passed by the PROXY Protocol"
    let g = via_proxy_protocol(
        http,
        v1(1234).as_bytes(),
        false,
        req(http, "open.test", "/"),
    )
    .await;
    let hd = &g.json()["headers"];
    assert_eq!(
        (
            &hd["x-forwarded-port"],
            &hd["x-forwarded-proto"],
            &hd["x-forwarded-for"]
        ),
        (&"1234".into(), &"http".into(), &"192.168.0.1".into()),
        "{hd}"
    );
    // "should respect proto passed by the PROXY Protocol server port": and a TLS host's
    // ssl-redirect is satisfied.
    for host in ["open.test", "secure.test"] {
        let g = via_proxy_protocol(http, v1(443).as_bytes(), false, req(http, host, "/")).await;
        assert_eq!(g.status, StatusCode::OK, "{host}: no redirect to HTTPS");
        let hd = &g.json()["headers"];
        assert_eq!(
            (
                &hd["x-forwarded-port"],
                &hd["x-forwarded-proto"],
                &hd["x-scheme"]
            ),
            (&"443".into(), &"https".into(), &"https".into()),
            "{hd}"
        );
    }
    // Another destination port on the HTTP port: still redirected.
    let g = via_proxy_protocol(
        http,
        v1(80).as_bytes(),
        false,
        req(http, "secure.test", "/"),
    )
    .await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    // "should enable PROXY Protocol for HTTPS"
    let g = via_proxy_protocol(
        https,
        v1(1234).as_bytes(),
        true,
        req(https, "open.test", "/"),
    )
    .await;
    let hd = &g.json()["headers"];
    assert_eq!(
        (
            &hd["x-forwarded-port"],
            &hd["x-forwarded-proto"],
            &hd["x-scheme"]
        ),
        (&"1234".into(), &"https".into(), &"https".into()),
        "{hd}"
    );
}

/// `use-proxy-protocol` with `use-forwarded-headers`: when the PROXY header's source is inside
/// `proxy-real-ip-cidr` (an HTTP proxy in front of the TCP balancer), the client is taken
/// from `X-Forwarded-For`; otherwise it stays the PROXY source (ingress-nginx e2e
/// settings/proxy_protocol.go "should trust X-Forwarded headers when the client IP address
/// is trusted"; nginx.tmpl `X-Forwarded-For-Proxy-Protocol`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_with_forwarded_headers_trusts_a_trusted_proxy_source() {
    let a = backend("a");
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |a| {
        a.use_proxy_protocol = true;
        a.proxy_real_ip_cidr
            .push(xdp_ingress::proxy::args::parse_cidr("192.168.0.1/32").unwrap());
    }))
    .await;
    proxy.handle.apply(trust_snapshot(&a));
    let http = proxy.http();
    // (PROXY source, the client the pod is told of)
    for (src, client) in [
        ("192.168.0.1", "192.168.0.111"),
        ("192.168.0.2", "192.168.0.2"),
    ] {
        let mut r = req(http, "open.test", "/");
        r.headers_mut()
            .insert("x-forwarded-for", "192.168.0.111".parse().unwrap());
        let header = format!("PROXY TCP4 {src} 192.168.0.11 56324 1234\r\n");
        let g = via_proxy_protocol(http, header.as_bytes(), false, r).await;
        let hd = &g.json()["headers"];
        assert_eq!(
            (
                &hd["x-forwarded-for"],
                &hd["x-real-ip"],
                &hd["x-forwarded-port"]
            ),
            (&client.into(), &client.into(), &"1234".into()),
            "{src}: {hd}"
        );
    }
}

/// A request on a non-default `--https-port` is passed on with `X-Forwarded-Port: 443`, one on
/// a non-default `--http-port` with its port (ingress-nginx e2e
/// settings/listen_nondefault_ports.go; lua_ingress.lua maps `listen_ports.https` to 443).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_default_https_port_is_forwarded_as_443() {
    let a = backend("a");
    let mut args = TestProxy::quiet_args();
    args.ports.https_port = testbed::ports::reserve(1);
    let proxy = TestProxy::start(args).await;
    proxy.handle.apply(trust_snapshot(&a));
    let (http, https) = (proxy.http(), proxy.https());
    assert_ne!(https.port(), 443);
    let g = via_proxy_protocol(https, b"", true, req(https, "open.test", "/")).await;
    assert_eq!(g.json()["headers"]["x-forwarded-port"], "443");
    let g = via_proxy_protocol(http, b"", false, req(http, "open.test", "/")).await;
    assert_eq!(
        g.json()["headers"]["x-forwarded-port"],
        http.port().to_string()
    );
}

/// Hash balancing on the client address (`upstream-hash-by: $remote_addr`) hashes the client
/// the trust model yields: behind a trusted balancer every real client keeps its own pod
/// instead of all of them sharing the balancer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_address_hash_uses_the_trusted_client_address() {
    let (a, b) = (backend("a"), backend("b"));
    let by_client = with(up("ab", &[&a, &b]), |u| {
        u.load_balancing = LoadBalancing::Hash(NginxString::parse("$remote_addr").unwrap())
    });
    let snap = snapshot(
        1,
        l7_with(
            vec![vhost(
                "hash.test",
                vec![route_to(path("Prefix", "/"), by_client)],
                false,
            )],
            None,
        ),
    );
    let c = http1_client();
    let pod_for = |proxy: SocketAddr, client: String| {
        let c = c.clone();
        async move {
            let mut r = req(proxy, "hash.test", "/");
            r.headers_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
            send(&c, r).await.unwrap().pod()
        }
    };
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |_| {})).await;
    proxy.handle.apply(Arc::clone(&snap));
    let mut pods = HashSet::new();
    for i in 0..24 {
        let client = format!("198.18.{i}.1");
        let first = pod_for(proxy.http(), client.clone()).await;
        assert_eq!(
            pod_for(proxy.http(), client).await,
            first,
            "stable per client"
        );
        pods.insert(first);
    }
    assert_eq!(
        pods.len(),
        2,
        "24 clients behind one balancer spread over both pods"
    );
    drop(proxy);

    // The same requests from an untrusted peer: one client (the peer), one pod.
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snap);
    let mut pods = HashSet::new();
    for i in 0..8 {
        pods.insert(pod_for(proxy.http(), format!("198.18.{i}.1")).await);
    }
    assert_eq!(pods.len(), 1, "forged addresses do not choose the pod");
}

/// `upstream-hash-by: "$request_uri"` (ingress-nginx's headline example; chash.lua hashes the
/// expanded text of any variables): one URI keeps its pod, many URIs spread over the pods;
/// `$host$request_uri` mixes the host in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_by_any_variable_text() {
    let (a, b) = (backend("a"), backend("b"));
    let by = |name: &str, text: &str| {
        let by = NginxString::parse(text).unwrap();
        with(up(name, &[&a, &b]), move |u| {
            u.load_balancing = LoadBalancing::Hash(by)
        })
    };
    let snap = snapshot(
        1,
        l7_with(
            vec![vhost(
                "hash.test",
                vec![
                    route_to(path("Prefix", "/both"), by("both", "$host$request_uri")),
                    route_to(path("Prefix", "/"), by("uri", "$request_uri")),
                ],
                false,
            )],
            None,
        ),
    );
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snap);
    let c = http1_client();
    for prefix in ["/u", "/both/u"] {
        let mut pods = HashSet::new();
        for i in 0..24 {
            let uri = format!("{prefix}{i}?q={i}");
            let first = get(&c, proxy.http(), "hash.test", &uri).await;
            assert_eq!(first.status, 200);
            for _ in 0..3 {
                assert_eq!(
                    get(&c, proxy.http(), "hash.test", &uri).await.pod(),
                    first.pod(),
                    "{uri} keeps its pod"
                );
            }
            pods.insert(first.pod());
        }
        assert_eq!(
            pods.len(),
            2,
            "24 URIs under {prefix} spread over both pods"
        );
    }
}

/// `upstream-hash-by-subset: "true"` with `upstream-hash-by-subset-size: "2"` over three pods
/// (ingress-nginx's chashsubset.lua): the pods in order make subsets {p0, p1} and {p2, p0}
/// (the last filled up from the first); one URI's requests spread over exactly the pods of
/// one subset, and URIs spread over both subsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_by_subset_keeps_a_key_on_one_subset_of_pods() {
    let pods: Vec<HttpBackend> = (0..3).map(|i| backend(&format!("p{i}"))).collect();
    // Translation orders the endpoints by address: the subsets follow that order.
    let mut order: Vec<&HttpBackend> = pods.iter().collect();
    order.sort_by_key(|p| p.addr);
    let subset = |idx: &[usize]| -> BTreeSet<String> {
        idx.iter().map(|&i| order[i].name.clone()).collect()
    };
    let subsets = [subset(&[0, 1]), subset(&[2, 0])];
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let yaml = service_pods_yaml("web", &addrs)
        + &ingress_for(
            "subset.test",
            "subset",
            "web",
            "2024-01-01T00:00:00Z",
            &[
                ("upstream-hash-by", "$request_uri"),
                ("upstream-hash-by-subset", "true"),
                ("upstream-hash-by-subset-size", "2"),
            ],
        );
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translated(1, &yaml));
    let c = http1_client();
    let mut seen = HashSet::new();
    for i in 0..16 {
        let uri = format!("/u{i}");
        let mut reached = BTreeSet::new();
        // 40 requests over a subset of two: both pods reached unless 2^-39 bad luck.
        for _ in 0..40 {
            let g = get(&c, proxy.http(), "subset.test", &uri).await;
            assert_eq!(g.status, 200);
            reached.insert(g.pod());
        }
        let which = subsets.iter().position(|s| *s == reached);
        assert!(
            which.is_some(),
            "{uri} reached {reached:?}, not one of {subsets:?}"
        );
        seen.insert(which);
    }
    assert_eq!(seen.len(), 2, "16 URIs spread over both subsets");
}

// ---- The request front: one normalised path, a validated target (issue 9, classes 1 and 3).

/// A response read off a raw connection: status, head and body.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response with a `Content-Length` body (all the proxy's local answers and the
/// echo backend's have one).
async fn read_response(s: &mut tokio::net::TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("response in time")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head[9..12].parse().unwrap();
    let mut r = RawResponse {
        status,
        head,
        body: Vec::new(),
    };
    let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
    r.body = vec![0u8; len];
    s.read_exact(&mut r.body).await.unwrap();
    r
}

/// One raw HTTP/1.1 request (`head` without the final empty line) on a new connection.
async fn raw_request(addr: SocketAddr, head: &str) -> RawResponse {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(&mut s).await
}

/// `/admin` only for 198.18.0.0/15 (the test client, 127.0.0.1, gets 403); `/public` and
/// everything else open; `r.test` redirects to HTTPS; `d.test` has one Exact path and the
/// default backend `def` takes its other paths.
fn guarded_admin(a: &HttpBackend, def: &HttpBackend) -> L7Config {
    let mut admin = route_to(path("Prefix", "/admin"), up("a", &[a]));
    admin.policy = Arc::new(RoutePolicy {
        allow_source_ranges: vec![xdp_ingress::model::IpPrefix {
            addr: "198.18.0.0".parse().unwrap(),
            len: 15,
        }],
        ..RoutePolicy::default()
    });
    l7_with(
        vec![
            vhost(
                "n.test",
                vec![
                    admin,
                    route_to(path("Prefix", "/public"), up("a", &[a])),
                    route_to(path("Prefix", "/"), up("a", &[a])),
                ],
                false,
            ),
            vhost(
                "r.test",
                vec![route_to(path("Prefix", "/"), up("a", &[a]))],
                true,
            ),
            vhost(
                "d.test",
                vec![route_to(path("Exact", "/exact"), up("a", &[a]))],
                false,
            ),
        ],
        Some(up("def", &[def])),
    )
}

/// Paths that name `/admin` once normalised, paths with no safe normal form, and what
/// the backend gets otherwise; over HTTP/1.1 (raw bytes) and HTTP/2 (h2c).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_routed_and_checked_is_the_path_the_backend_reads() {
    let (a, def) = (backend("a"), backend("def"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snapshot(1, guarded_admin(&a, &def)));
    let p = proxy.http();
    let h2 = h2c_client();
    let denied = [
        "/public/../admin",
        "//admin",
        "/%61dmin",
        "/public/%2e%2e/admin",
        "/public/%2E./admin/x",
        "/./admin/",
        "/x//..//admin",
        // An encoded slash separates segments for routing, as nginx's locations see it: a
        // backend that decodes it would otherwise serve /admin/secret past the allowlist.
        "/admin%2fsecret",
        "/%2Fadmin",
    ];
    let unsafe_paths = [
        ("/../admin", "path climbs above the root"),
        ("/%2e%2e/admin", "path climbs above the root"),
        (
            "/public/..%2fadmin",
            "dot segment hidden by an encoded slash, a backslash or ;",
        ),
        (
            "/public/..%5Cadmin",
            "dot segment hidden by an encoded slash, a backslash or ;",
        ),
        (
            "/public\\..\\admin",
            "dot segment hidden by an encoded slash, a backslash or ;",
        ),
        (
            "/public/..;/admin",
            "dot segment hidden by an encoded slash, a backslash or ;",
        ),
        ("/admin%00", "NUL in path"),
        ("/a%zz", "invalid percent-encoding in path"),
    ];
    let before = a.requests();
    for target in denied {
        let r = raw_request(p, &format!("GET {target} HTTP/1.1\r\nHost: n.test")).await;
        assert_eq!(r.status, 403, "HTTP/1.1 {target}: {}", r.head);
        assert_eq!(r.header(REASON_HEADER), Some(SOURCE_DENIED), "{target}");
        let g = get(&h2, p, "n.test", target).await;
        assert_eq!(g.status, StatusCode::FORBIDDEN, "HTTP/2 {target}");
    }
    for (target, reason) in unsafe_paths {
        let r = raw_request(p, &format!("GET {target} HTTP/1.1\r\nHost: n.test")).await;
        assert_eq!(r.status, 400, "HTTP/1.1 {target}: {}", r.head);
        assert_eq!(r.header(REASON_HEADER), Some(reason), "{target}");
        let g = get(&h2, p, "n.test", target).await;
        assert_eq!(g.status, StatusCode::BAD_REQUEST, "HTTP/2 {target}");
        assert_eq!(g.header(REASON_HEADER), reason, "HTTP/2 {target}");
    }
    assert_eq!(a.requests(), before, "a refused request reached the pod");

    // What is served is served at its normal form; the query string goes as sent.
    let forwarded = [
        (
            "//public/./x/../y?a=/../%2e&b=%41",
            "a",
            "/public/y?a=/../%2e&b=%41",
        ),
        ("/public/%7Euser/%2f%41", "a", "/public/~user/%2FA"),
        ("/z/../exact", "a", "/exact"),
    ];
    for (target, pod, want) in forwarded {
        let host = if want == "/exact" { "d.test" } else { "n.test" };
        let r = raw_request(p, &format!("GET {target} HTTP/1.1\r\nHost: {host}")).await;
        assert_eq!(
            (r.status, r.json()["pod"].as_str()),
            (200, Some(pod)),
            "{target}"
        );
        assert_eq!(r.json()["path"], want, "HTTP/1.1 {target}");
        let g = get(&h2, p, host, target).await;
        assert_eq!(g.json()["path"], want, "HTTP/2 {target}");
    }
    // The default backend gets the normal form too.
    let r = raw_request(p, "GET //other/./x HTTP/1.1\r\nHost: d.test").await;
    assert_eq!(r.json()["pod"], "def");
    assert_eq!(r.json()["path"], "/other/x");
    // And so does the ssl-redirect Location (less the request URI's last `/`, as
    // lua_ingress.lua strips it even from a query).
    let r = raw_request(p, "GET /a/../b/%7e//c?x=/../ HTTP/1.1\r\nHost: r.test").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://r.test:{}/b/~/c?x=/..", proxy.https().port())
    );
}

/// RFC 9112 §3.2 and §3.2.2, RFC 9113 §8.3.1, RFC 9110 §9.3.6: the host a request names is
/// one valid authority, absolute-form names its own, and CONNECT is no tunnel here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_target_and_host_are_validated() {
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![
                vhost(
                    "a.test",
                    vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                    false,
                ),
                vhost(
                    "b.test",
                    vec![route_to(path("Prefix", "/"), up("b", &[&b]))],
                    false,
                ),
                vhost(
                    "*.w.example.test",
                    vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
                    true,
                ),
            ],
            None,
        ),
    ));
    let p = proxy.http();
    let before = (a.requests(), b.requests());
    let refused = [
        ("GET / HTTP/1.1", 400, "missing Host header"),
        (
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test",
            400,
            "more than one Host header",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test",
            400,
            "more than one Host header",
        ),
        (
            "GET /x HTTP/1.1\r\nHost: attacker/.w.example.test",
            400,
            "invalid Host header",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a.test:99999",
            400,
            "invalid Host header",
        ),
        ("GET / HTTP/1.1\r\nHost: ", 400, "invalid Host header"),
        ("GET http://b.test/ HTTP/1.1", 400, "missing Host header"),
        (
            "GET http://user@b.test/ HTTP/1.1\r\nHost: a.test",
            400,
            "invalid host in request target",
        ),
        (
            "GET a.test:80 HTTP/1.1\r\nHost: a.test",
            400,
            "authority-form request target",
        ),
        (
            "OPTIONS * HTTP/1.1\r\nHost: a.test",
            400,
            "request target is not an absolute path",
        ),
        // nginx's request-line parser refuses the authority-form target first.
        (
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443",
            400,
            "authority-form request target",
        ),
        (
            "CONNECT / HTTP/1.1\r\nHost: a.test",
            405,
            "CONNECT is not served",
        ),
        (
            "TRACE / HTTP/1.1\r\nHost: a.test",
            405,
            "TRACE is not served",
        ),
    ];
    for (head, status, reason) in refused {
        let r = raw_request(p, head).await;
        assert_eq!(r.status, status, "{head:?}: {}", r.head);
        assert_eq!(r.header(REASON_HEADER), Some(reason), "{head:?}");
        // nginx refuses these while reading the head, before keep-alive is decided.
        assert_eq!(r.header("connection"), Some("close"), "{head:?}");
        assert!(r.header("location").is_none(), "{head:?}");
        if status == 405 {
            assert!(r.header("allow").is_some_and(|v| !v.contains("CONNECT")));
        }
    }
    assert_eq!(
        (a.requests(), b.requests()),
        before,
        "a refused request reached a pod"
    );
    // A valid name on the same wildcard is redirected, to itself.
    let r = raw_request(p, "GET /x HTTP/1.1\r\nHost: x.w.example.test").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://x.w.example.test:{}/x", proxy.https().port())
    );
    // Absolute-form routes by its own authority, which replaces Host for the pod.
    let r = raw_request(p, "GET http://b.test//x/../y?q=1 HTTP/1.1\r\nHost: a.test").await;
    assert_eq!(r.status, 200, "{}", r.head);
    let j = r.json();
    assert_eq!(
        (j["pod"].as_str(), j["path"].as_str()),
        (Some("b"), Some("/y?q=1"))
    );
    assert_eq!(j["headers"]["host"], "b.test");
    // HTTP/1.0 may leave Host out.
    let r = raw_request(p, "GET http://a.test/ HTTP/1.0").await;
    assert_eq!(r.json()["pod"], "a");

    // HTTP/2: `:authority` and Host must agree; one of them must be there; no CONNECT.
    let before = (a.requests(), b.requests());
    let h2 = |r: http::Request<Full<Bytes>>| async move {
        let s = tokio::net::TcpStream::connect(p).await.unwrap();
        request_over(s, true, r).await
    };
    let build = |method: Method, uri: &str, host: Option<&str>, v: http::Version| {
        let mut b = http::Request::builder().method(method).uri(uri).version(v);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    let v2 = http::Version::HTTP_2;
    // (h2 sends a relative URI of an HTTP/1.1-versioned request without `:authority`.)
    let v1 = http::Version::HTTP_11;
    let g = h2(build(Method::GET, "http://a.test/x", Some("b.test"), v2)).await;
    assert_eq!(g.status, StatusCode::BAD_REQUEST);
    assert_eq!(g.header(REASON_HEADER), ":authority and Host differ");
    let g = h2(build(Method::GET, "/x", None, v1)).await;
    assert_eq!(g.status, StatusCode::BAD_REQUEST);
    assert_eq!(g.header(REASON_HEADER), "no :authority or Host");
    let g = h2(build(Method::CONNECT, "a.test:443", None, v2)).await;
    assert_eq!(g.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(g.header(REASON_HEADER), "CONNECT is not served");
    assert_eq!(
        (a.requests(), b.requests()),
        before,
        "a refused request reached a pod"
    );
    // Either one alone, or both naming the same host, is served.
    let g = h2(build(Method::GET, "/x", Some("b.test"), v1)).await;
    assert_eq!(g.pod(), "b");
    let g = h2(build(Method::GET, "http://b.test/x", None, v2)).await;
    assert_eq!(g.pod(), "b");
    let g = h2(build(Method::GET, "http://B.test/x", Some("b.test"), v2)).await;
    assert_eq!(g.pod(), "b");
    assert_eq!(g.json()["headers"]["host"], "b.test");
}

/// A backend that switches protocols whenever asked (`Upgrade` in the request), or always;
/// it records every byte it receives.
struct LenientBackend {
    addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LenientBackend {
    async fn start(always_switch: bool) -> LenientBackend {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let rec = Arc::clone(&rec);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    let mut switched = false;
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await
                    {
                        if n == 0 {
                            return;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                        if switched {
                            // A tunnel: answer anything as if it were served.
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ntunnel")
                                .await;
                            continue;
                        }
                        head.extend_from_slice(&buf[..n]);
                        if !head.ends_with(b"\r\n\r\n") {
                            continue;
                        }
                        let asked = String::from_utf8_lossy(&head)
                            .to_ascii_lowercase()
                            .contains("\r\nupgrade:");
                        head.clear();
                        let reply: &[u8] = if asked || always_switch {
                            switched = true;
                            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        LenientBackend { addr, received }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).to_ascii_lowercase()
    }
}

/// Only WebSocket is tunnelled: `Upgrade: h2c` is dropped and the request served plainly, so
/// the connection's later requests are still routed and checked; a 101 the proxy did not ask
/// for is a 502, never a tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_websocket_upgrades_reach_the_backend() {
    let lenient = LenientBackend::start(false).await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let lenient_up = upstream_at("lenient", &[lenient.addr]);
    let mut admin = route_to(path("Prefix", "/admin"), Arc::clone(&lenient_up));
    admin.policy = Arc::new(RoutePolicy {
        allow_source_ranges: vec![xdp_ingress::model::IpPrefix {
            addr: "198.18.0.0".parse().unwrap(),
            len: 15,
        }],
        ..RoutePolicy::default()
    });
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "u.test",
                vec![admin, route_to(path("Prefix", "/"), lenient_up)],
                false,
            )],
            None,
        ),
    ));
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: u.test\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, b"ok");
    // The same connection is still HTTP, routed and checked.
    s.write_all(b"GET /admin HTTP/1.1\r\nHost: u.test\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(r.status, 403, "{}", r.head);
    assert_eq!(r.header(REASON_HEADER), Some(SOURCE_DENIED));
    let seen = lenient.received();
    assert!(
        !seen.contains("upgrade") && !seen.contains("http2-settings"),
        "{seen}"
    );
    assert!(!seen.contains("/admin"), "{seen}");

    // A backend that switches protocols unasked gets no tunnel: 502.
    let rogue = LenientBackend::start(true).await;
    proxy.handle.apply(snapshot(
        2,
        l7_with(
            vec![vhost(
                "u.test",
                vec![route_to(
                    path("Prefix", "/"),
                    upstream_at("rogue", &[rogue.addr]),
                )],
                false,
            )],
            None,
        ),
    ));
    let r = raw_request(proxy.http(), "GET /x HTTP/1.1\r\nHost: u.test").await;
    assert_eq!(r.status, 502, "{}", r.head);
    assert_eq!(
        r.header(REASON_HEADER),
        Some("upstream switched protocols unasked")
    );
}

/// Sends raw bytes on a new connection and returns the response head (up to the blank line),
/// or what arrived before the connection closed or `wait` passed. The connection is returned
/// too, so a test can keep it open.
async fn raw_head(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> (String, tokio::net::TcpStream) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(wait, async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
    })
    .await;
    (String::from_utf8_lossy(&out).to_string(), s)
}

/// The value of a metric sample line starting with `prefix` (name and labels), 0 if absent.
fn metric(proxy: &TestProxy, prefix: &str) -> f64 {
    proxy
        .handle
        .metrics_text()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The pods that served `n` plain GETs to `c.test`.
async fn pods_served(c: &Http1, proxy: &TestProxy, n: usize) -> HashSet<String> {
    let mut pods = HashSet::new();
    for _ in 0..n {
        let g = get(c, proxy.http(), "c.test", "/after").await;
        assert_eq!(g.status, StatusCode::OK);
        pods.insert(g.pod());
    }
    pods
}

/// Client faults are answered as nginx answers them (413, 400, 408), and none is counted
/// against the endpoint: with `--max-fails 1` one failure would eject a pod, so after each
/// fault both pods must still be served in turn, and `upstream_failures` stays at zero. A
/// slow but steady upload is the client's business too, not the endpoint's read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_faults_get_413_400_408_and_never_eject_a_pod() {
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(ProxyArgs {
        max_fails: 1,
        fail_timeout: Duration::from_secs(60),
        client_body_timeout: Duration::from_millis(500),
        proxy_read_timeout: Duration::from_millis(700),
        ..TestProxy::quiet_args()
    })
    .await;
    let svc = up("svc", &[&a, &b]);
    let mut small = route_to(path("Prefix", "/small"), Arc::clone(&svc));
    small.policy = Arc::new(RoutePolicy {
        max_body_bytes: Some(1000),
        ..RoutePolicy::default()
    });
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "c.test",
                vec![small, route_to(path("Prefix", "/"), svc)],
                false,
            )],
            None,
        ),
    ));
    let failures = r#"xdp_ingress_upstream_failures_total{upstream="default/svc:80"}"#;
    let c = http1_client();
    let ab = HashSet::from(["a".to_string(), "b".to_string()]);
    let wait = Duration::from_secs(10);
    let chunk = format!("320\r\n{}\r\n", "y".repeat(0x320));

    // A chunked body over the route's 1000 bytes: 413, though streaming had begun.
    let oversized = format!(
        "POST /small HTTP/1.1\r\nHost: c.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n"
    );
    // A chunk size that is not hex: 400.
    let malformed = "POST /x HTTP/1.1\r\nHost: c.test\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5\r\nhello\r\nzz\r\nhello\r\n0\r\n\r\n"
        .to_string();
    for (name, bytes, want) in [
        ("oversized chunked body", oversized, "HTTP/1.1 413"),
        ("malformed chunk size", malformed, "HTTP/1.1 400"),
    ] {
        let (head, _conn) = raw_head(proxy.http(), bytes.as_bytes(), wait).await;
        assert!(head.starts_with(want), "{name}: {head:?}");
        assert_eq!(metric(&proxy, failures), 0.0, "{name}: counted upstream");
        assert_eq!(
            pods_served(&c, &proxy, 4).await,
            ab,
            "{name}: a pod was ejected"
        );
    }

    // A body that stalls: 408 after the client body timeout, not 504 after the read timeout.
    let started = std::time::Instant::now();
    let (head, _conn) = raw_head(
        proxy.http(),
        b"POST /x HTTP/1.1\r\nHost: c.test\r\nContent-Length: 100\r\n\r\nonly ten b",
        wait,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 408"), "stalled body: {head:?}");
    assert!(
        head.to_ascii_lowercase().contains("client body timed out"),
        "{head}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(metric(&proxy, failures), 0.0, "stall counted upstream");

    // A client that goes away mid-body.
    let (_, conn) = raw_head(
        proxy.http(),
        b"POST /x HTTP/1.1\r\nHost: c.test\r\nContent-Length: 100\r\n\r\npartial",
        Duration::from_millis(200),
    )
    .await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(&proxy, failures),
        0.0,
        "client abort counted upstream"
    );
    assert_eq!(
        pods_served(&c, &proxy, 4).await,
        ab,
        "a pod was ejected after stalled and aborted bodies"
    );

    // 1000 bytes over 1.5 s, never 500 ms apart: longer than the 700 ms read timeout, served.
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        b"POST /slow HTTP/1.1\r\nHost: c.test\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(&[b'z'; 100]).await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(wait, s.read_to_end(&mut out))
        .await
        .expect("response")
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"body_len\":1000"), "{out}");
    assert_eq!(metric(&proxy, failures), 0.0);
}

/// A request whose client goes away while the endpoint works on it (connection closed, or
/// an HTTP/2 stream reset) is not left counted in flight to that endpoint, which would
/// steer least-request balancing away from the pod for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reset_mid_request_leaves_nothing_in_flight() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "r.test",
                vec![route_to(path("Prefix", "/"), up("svc", &[&a]))],
                false,
            )],
            None,
        ),
    ));
    let in_flight = r#"xdp_ingress_upstream_in_flight{upstream="default/svc:80"}"#;
    // HTTP/1.1: the connection closes while the endpoint is still answering.
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"GET /delay/1500 HTTP/1.1\r\nHost: r.test\r\n\r\n")
        .await
        .unwrap();
    eventually(Duration::from_millis(1000), || {
        metric(&proxy, in_flight) == 1.0
    })
    .await;
    assert_eq!(metric(&proxy, in_flight), 1.0, "counted while it runs");
    drop(s);
    eventually(Duration::from_secs(5), || metric(&proxy, in_flight) == 0.0).await;
    assert_eq!(
        metric(&proxy, in_flight),
        0.0,
        "closed connection left it in flight"
    );

    // HTTP/2: the client resets the stream (dropping the response future sends RST_STREAM).
    let tcp = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let r = http::Request::builder()
        .uri("http://r.test/delay/1500")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let reset = tokio::time::timeout(Duration::from_millis(400), h2.send_request(r)).await;
    assert!(reset.is_err(), "the endpoint answered too early");
    eventually(Duration::from_secs(5), || metric(&proxy, in_flight) == 0.0).await;
    assert_eq!(
        metric(&proxy, in_flight),
        0.0,
        "reset stream left it in flight"
    );
    // The connection is still good, and a finished request leaves nothing either.
    let r = http::Request::builder()
        .uri("http://r.test/done")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.send_request(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    eventually(Duration::from_secs(5), || metric(&proxy, in_flight) == 0.0).await;
    assert_eq!(metric(&proxy, in_flight), 0.0);
}

/// An endpoint that answers with these raw bytes to every request it reads.
async fn raw_endpoint(answer: &'static [u8]) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
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
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// HTTP/2 to HTTP/1.1 and back (RFC 9113 8.2): cookies an HTTP/2 client sends one per field
/// reach an HTTP/1.1 pod as one `Cookie`; request trailers reach HTTP/1.1 and gRPC pods; `TE`
/// becomes `trailers` toward a gRPC pod; connection-specific fields of an HTTP/1.1 pod's
/// response never reach an HTTP/2 client, and the upstream request has exactly one `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_convert_cookies_trailers_te_and_connection_fields() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let hop = raw_endpoint(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\n\
          X-Hop: 1\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-End: kept\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let grpc = with(up("grpc", &[&a]), |u| u.protocol = BackendProtocol::Grpc);
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "x.test",
                vec![
                    route_to(path("Prefix", "/grpc"), grpc),
                    route_to(path("Prefix", "/hop"), upstream_at("hop", &[hop])),
                    route_to(path("Prefix", "/"), up("h1", &[&a])),
                ],
                false,
            )],
            None,
        ),
    ));
    let h2 = h2c_client();
    // Two cookie fields from an HTTP/2 client: one `Cookie: a=1; b=2` at the HTTP/1.1 pod
    // (the echo joins repeated fields with ", ", so two lines would show as "a=1, b=2").
    let mut r = req(proxy.http(), "x.test", "/cookies");
    r.headers_mut().append("cookie", "a=1".parse().unwrap());
    r.headers_mut().append("cookie", "b=2".parse().unwrap());
    let g = send(&h2, r).await.unwrap();
    assert_eq!(g.json()["version"], "HTTP/1.1");
    assert_eq!(g.json()["headers"]["cookie"], "a=1; b=2");
    assert_eq!(g.json()["headers"]["host"], "x.test", "exactly one Host");

    // Request trailers from an HTTP/2 client, declared in `Trailer`, to HTTP/1.1 and gRPC.
    type Boxed = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;
    let client: hyper_util::client::legacy::Client<_, Boxed> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(
                hyper_util::client::legacy::connect::HttpConnector::new_with_resolver({
                    // The virtual host travels as `:authority`, as a browser sends it.
                    let names = Names::default();
                    names.insert("x.test", proxy.http().ip());
                    names
                }),
            );
    for p in ["/upload", "/grpc"] {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let frames = vec![
            Ok(hyper::body::Frame::data(Bytes::from_static(b"payload"))),
            Ok(hyper::body::Frame::trailers(trailers)),
        ];
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(
            futures::stream::iter(frames),
        ));
        let r = http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://x.test:{}{p}", proxy.http().port()))
            .header("trailer", "x-checksum")
            .header("content-length", "7")
            .header("te", "trailers")
            .body(body)
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(r))
            .await
            .unwrap()
            .unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(j["body"], "payload", "{p}");
        assert_eq!(j["trailers"]["x-checksum"], "abc", "{p}: {j}");
    }

    // An HTTP/1.1 client accepting trailers among other codings: `TE: trailers` at gRPC.
    let mut r = req(proxy.http(), "x.test", "/grpc");
    r.headers_mut()
        .insert("te", "gzip;q=0.5, trailers".parse().unwrap());
    let g = send(&http1_client(), r).await.unwrap();
    assert_eq!(g.json()["headers"]["te"], "trailers");
    // None at an HTTP/1.1 pod, from either client: nginx's proxy module sends `TE ""`.
    for client in [h2c_client(), http1_client()] {
        let mut r = req(proxy.http(), "x.test", "/plain");
        r.headers_mut().insert("te", "trailers".parse().unwrap());
        let g = send(&client, r).await.unwrap();
        assert_eq!(g.json()["version"], "HTTP/1.1");
        assert!(g.json()["headers"].get("te").is_none(), "{}", g.json());
    }

    // An HTTP/1.1 pod's connection-specific fields never reach an HTTP/2 client (whose
    // library would reject the response), nor, as hop-by-hop, an HTTP/1.1 client.
    for (client, is_h2) in [(h2, true), (http1_client(), false)] {
        let g = get(&client, proxy.http(), "x.test", "/hop").await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(&g.body[..], b"hello");
        assert_eq!(g.header("x-end"), "kept");
        for name in [
            "connection",
            "keep-alive",
            "x-hop",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(
                !g.headers.contains_key(name),
                "{name} forwarded: {:?}",
                g.headers
            );
        }
        if is_h2 {
            assert!(!g.headers.contains_key("transfer-encoding"));
        }
    }
}

/// Issue 9, class 7: `proxy-read-timeout: "99999999999"` (and a value past what `Instant` can
/// hold). Out of the accepted range (1 ms to 7 days): a warning that `explain` shows, and the
/// default applies. Before, the value reached the tunnel's deadline arithmetic and the
/// WebSocket task panicked, closing the connection. The WebSocket keeps working and the other
/// routes keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_read_timeout_warns_and_websockets_keep_working() {
    use xdp_ingress::cli::explain::{Query, explain};
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    for (version, value) in [(1, "99999999999"), (2, "9999999999999999999")] {
        let ws = ingress_yaml(
            "ws.test",
            a.addr,
            &[("nginx.ingress.kubernetes.io/proxy-read-timeout", value)],
        );
        // A second Ingress and Service for the other route.
        let other = ingress_yaml("other.test", b.addr, &[])
            .replace("web", "other")
            .replace("guarded", "plain");
        let snap = translated(version, &format!("{ws}---\n{other}"));
        let e = explain(
            &snap,
            &Query {
                host: "ws.test".into(),
                path: "/".into(),
                method: "GET".into(),
                headers: vec![],
                https: false,
                ..Query::default()
            },
        );
        assert!(
            e.diagnostics
                .iter()
                .any(|d| d.reason == "AnnotationOutOfRange"
                    && d.message.contains("proxy-read-timeout")
                    && d.message.contains(value)
                    && d.message.contains("1ms to 604800s")),
            "{:?}",
            e.diagnostics
        );
        proxy.handle.apply(snap);
        let (mut ws, pod) = websocket_open(proxy.http(), "ws.test").await;
        assert_eq!(pod, "a");
        ws_echo(&mut ws, b"hello").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws_echo(&mut ws, b"still open").await;
        let g = get(&http1_client(), proxy.http(), "other.test", "/").await;
        assert_eq!((g.status, g.pod()), (StatusCode::OK, "b".to_string()));
        ws_echo(&mut ws, b"after the other route").await;
    }
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

/// ConfigMap `keep-alive: "0"` turns client keep-alive off (configmap.md: "The zero value
/// disables keep-alive client connections"; nginx `keepalive_timeout 0`): an HTTP/1.1 answer
/// says `Connection: close` and the connection closes after it; an HTTP/2 connection gets
/// GOAWAY once its stream is answered, then closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_keep_alive_closes_client_connections_after_the_answer() {
    use h2raw::*;
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let mut snap = (*one_route("k.test", &a)).clone();
    snap.l7.settings.keepalive_timeout = Some(Duration::ZERO);
    proxy.handle.apply(Arc::new(snap));

    let mut c = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: k.test\r\n\r\n")
        .await
        .unwrap();
    let out = read_h1_response(&mut c).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{out}"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {rest:?}");

    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    let hello = [PREFACE, &frame(SETTINGS, 0, 0, &[]), &get(1, "k.test", "/")].concat();
    s.write_all(&hello).await.unwrap();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let (mut answered, mut goaway) = (false, false);
    let read_all = async {
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            for (kind, flags, stream, _) in take_frames(&mut buf) {
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                    }
                    GOAWAY => goaway = true,
                    _ if stream == 1 && flags & END_STREAM != 0 => answered = true,
                    _ => {}
                }
            }
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), read_all)
            .await
            .is_ok(),
        "HTTP/2 connection still open"
    );
    assert!(answered && goaway, "answered {answered}, GOAWAY {goaway}");
    assert_eq!(a.requests(), 2);
}

/// ConfigMap `keep-alive-requests` (nginx `keepalive_requests`, HTTP/1 and, since nginx
/// 1.19.7, HTTP/2): an HTTP/1.1 connection's last request is answered with `Connection:
/// close` and the connection closes after it; an HTTP/2 connection gets GOAWAY once its last
/// request has started and closes when it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_closes_client_connections_after_the_last_request() {
    use h2raw::*;
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let mut snap = (*one_route("k.test", &a)).clone();
    snap.l7.settings.keepalive_requests = Some(3);
    proxy.handle.apply(Arc::new(snap));

    let mut c = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    for n in 1..=3 {
        c.write_all(b"GET / HTTP/1.1\r\nHost: k.test\r\n\r\n")
            .await
            .unwrap();
        let out = read_h1_response(&mut c).await;
        assert!(out.starts_with("HTTP/1.1 200"), "request {n}: {out}");
        let close = out
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n");
        assert_eq!(close, n == 3, "request {n}: {out}");
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {rest:?}");
    assert_eq!(
        a.connections(),
        1,
        "one client connection, one pooled upstream one"
    );

    let mut snap = (*one_route("k.test", &a)).clone();
    snap.version = 2;
    snap.l7.settings.keepalive_requests = Some(2);
    proxy.handle.apply(Arc::new(snap));
    let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    let hello = [
        PREFACE,
        &frame(SETTINGS, 0, 0, &[]),
        &get(1, "k.test", "/"),
        &get(3, "k.test", "/"),
    ]
    .concat();
    s.write_all(&hello).await.unwrap();
    let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
    let (mut answered, mut goaway) = (Vec::new(), false);
    let read_all = async {
        loop {
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            for (kind, flags, stream, _) in take_frames(&mut buf) {
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                    }
                    GOAWAY => goaway = true,
                    _ if stream != 0 && flags & END_STREAM != 0 => answered.push(stream),
                    _ => {}
                }
            }
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), read_all)
            .await
            .is_ok(),
        "HTTP/2 connection still open after its last request"
    );
    answered.sort();
    assert_eq!(answered, [1, 3]);
    assert!(goaway, "GOAWAY");
    assert_eq!(a.requests(), 5);
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
        .send_request(h2_req(proxy.http(), "s.test", drip))
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("the whole stream")
        .to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), ticks);
    let next = h2
        .send_request(h2_req(proxy.http(), "s.test", "/after"))
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

/// Behind a trusted balancer speaking PROXY protocol every connection comes from its address;
/// the per-client cap counts the clients its headers name, so one client at its cap leaves the
/// others served, and the balancer itself is never the one capped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_cap_counts_the_clients_a_trusted_proxy_header_names() {
    let a = backend("a");
    let proxy = TestProxy::start(trusting("127.0.0.0/8", |p| {
        p.use_forwarded_headers = false;
        p.use_proxy_protocol = true;
        p.max_connections = 16;
        p.max_connections_per_client = Some(2);
    }))
    .await;
    proxy.handle.apply(one_route("q.test", &a));
    let header = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 4711 80\r\n").into_bytes();
    // Client 198.18.0.7 opens four connections through the balancer: two fit its cap.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
        s.write_all(&header("198.18.0.7")).await.unwrap();
        held.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut refused = 0;
    for s in &mut held {
        refused += usize::from(closed_within(s, Duration::from_millis(500)).await);
    }
    assert_eq!(refused, 2, "a named client's connections over its cap");
    // Another client behind the same balancer (same TCP peer) is still served.
    let g = via_proxy_protocol(
        proxy.http(),
        &header("198.18.0.8"),
        false,
        req(proxy.http(), "q.test", "/"),
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(proxy.handle.metrics_text().contains(
        "xdp_ingress_rejected_connections_total{listener=\"http\",reason=\"max_connections_per_client\"} 2"
    ));
}

/// An Ingress `name` routing `canary.test` `/` (Prefix) to Service `service`.
fn ingress_to(name: &str, service: &str, created: &str, annotations: &[(&str, &str)]) -> String {
    ingress_for("canary.test", name, service, created, annotations)
}

/// An Ingress `name` routing `host` `/` (Prefix) to Service `service`.
fn ingress_for(
    host: &str,
    name: &str,
    service: &str,
    created: &str,
    annotations: &[(&str, &str)],
) -> String {
    let ann = nginx_annotations_yaml(annotations);
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  creationTimestamp: "{created}"
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}
---
"#
    )
}

/// Service `main` (pod "main") with Ingress `app`, and Service `next` (pod "canary") with the
/// canary Ingress `app-canary` carrying `canary: "true"` and `canary`.
fn canary_yaml(
    main: &HttpBackend,
    canary: &HttpBackend,
    main_annotations: &[(&str, &str)],
    canary_annotations: &[(&str, &str)],
) -> String {
    let mut c = vec![("canary", "true")];
    c.extend_from_slice(canary_annotations);
    [
        service_yaml("main", main.addr),
        service_yaml("next", canary.addr),
        // The canary is the older object: it must still not win the route.
        ingress_to("app-canary", "next", "2024-01-01T00:00:00Z", &c),
        ingress_to("app", "main", "2025-01-01T00:00:00Z", main_annotations),
    ]
    .concat()
}

/// How many of `n` plain requests the canary pod answers.
async fn canary_share(c: &Http1, proxy: &TestProxy, n: usize) -> usize {
    let mut canary = 0;
    for _ in 0..n {
        let g = get(c, proxy.http(), "canary.test", "/").await;
        assert_eq!(g.status, StatusCode::OK);
        match g.pod().as_str() {
            "canary" => canary += 1,
            "main" => {}
            other => panic!("answered by {other:?}"),
        }
    }
    canary
}

/// ingress-nginx `canary-weight` (of `canary-weight-total`, default 100): that share of
/// requests goes to the canary, the rest to the main Ingress's backend; the canary Ingress
/// serves nothing of its own. Bounds are ±5 points over 2000 requests (over 4.5 standard
/// deviations either side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weight_sends_its_share_to_the_canary() {
    let (main, canary) = (backend("main"), backend("canary"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    // (annotations, share wanted, requests: 2000 where the weight rolls, 200 where it cannot)
    type Annotations<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Annotations<'_>, f64, usize); 4] = [
        (&[("canary-weight", "20")], 0.20, 2000),
        (
            &[("canary-weight", "600"), ("canary-weight-total", "1000")],
            0.60,
            2000,
        ),
        (&[("canary-weight", "0")], 0.0, 200),
        (&[("canary-weight", "100")], 1.0, 200),
    ];
    for (v, (annotations, want, n)) in cases.into_iter().enumerate() {
        let snap = translated(v as u64 + 1, &canary_yaml(&main, &canary, &[], annotations));
        let diags: Vec<_> = snap.diagnostics.iter().map(|d| &d.reason).collect();
        assert!(diags.is_empty(), "{annotations:?}: {diags:?}");
        proxy.handle.apply(snap);
        let share = canary_share(&c, &proxy, n).await as f64 / n as f64;
        assert!(
            (share - want).abs() <= 0.05,
            "{annotations:?}: canary took {share:.3}, want {want}"
        );
    }
    // Without a main Ingress for its host and path the canary serves nothing (a Warning
    // says so): the request finds no route.
    let lonely = [
        service_yaml("next", canary.addr),
        ingress_to(
            "app-canary",
            "next",
            "2024-01-01T00:00:00Z",
            &[("canary", "true"), ("canary-weight", "100")],
        ),
    ]
    .concat();
    let snap = translated(10, &lonely);
    assert_eq!(snap.diagnostics[0].reason, "CanaryWithoutMain");
    proxy.handle.apply(snap);
    let before = canary.requests();
    let g = get(&c, proxy.http(), "canary.test", "/").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(canary.requests(), before, "the lone canary was not reached");
}

/// ingress-nginx's balancer.lua keeps no balancer for a backend without endpoints: a canary
/// with none leaves its whole share (weight, header, cookie) on the main backend
/// (`route_to_alternative_balancer` finds no alternative), and a main backend with none answers
/// 503 whatever the canary rule says (`get_balancer` returns nil before any canary step; the
/// ingress-nginx e2e test "should return the correct status codes when endpoints are
/// unavailable"). Found by a fresh-user trial: a canary whose pods were not ready yet took its
/// share and answered 503, an outage during a rollout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_without_endpoints_takes_no_canary_traffic() {
    let (main, canary) = (backend("main"), backend("canary"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let rule = [
        ("canary", "true"),
        ("canary-weight", "100"),
        ("canary-by-header", "x-canary"),
        ("canary-by-cookie", "cn"),
    ];
    let app = |main_pods: &[SocketAddr], canary_pods: &[SocketAddr]| {
        [
            service_pods_yaml("main", main_pods),
            service_pods_yaml("next", canary_pods),
            ingress_to("app-canary", "next", "2024-01-01T00:00:00Z", &rule),
            ingress_to("app", "main", "2025-01-01T00:00:00Z", &[]),
        ]
        .concat()
    };
    // Both have pods: the canary takes everything (weight 100).
    proxy
        .handle
        .apply(translated(1, &app(&[main.addr], &[canary.addr])));
    assert_eq!(canary_share(&c, &proxy, 20).await, 20);
    // The canary has none: everything stays on the main backend.
    proxy.handle.apply(translated(2, &app(&[main.addr], &[])));
    assert_eq!(canary_share(&c, &proxy, 20).await, 0);
    assert_eq!(pod_for(&c, &proxy, &[("x-canary", "always")]).await, "main");
    assert_eq!(
        pod_for(&c, &proxy, &[("cookie", "cn=always")]).await,
        "main"
    );
    // The main backend has none: 503, and the canary is not reached.
    proxy.handle.apply(translated(3, &app(&[], &[canary.addr])));
    let before = canary.requests();
    for headers in [&[][..], &[("x-canary", "always")][..]] {
        let mut r = req(proxy.http(), "canary.test", "/");
        for (k, v) in headers {
            r.headers_mut().insert(*k, v.parse().unwrap());
        }
        let g = send(&c, r).await.expect("request completes");
        assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{headers:?}");
    }
    assert_eq!(canary.requests(), before, "the canary was not reached");
}

/// A request with these `(name, value)` headers to `canary.test/`; the pod that answered.
async fn pod_for(c: &Http1, proxy: &TestProxy, headers: &[(&str, &str)]) -> String {
    let mut r = req(proxy.http(), "canary.test", "/");
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let g = send(c, r).await.expect("request completes");
    assert_eq!(g.status, StatusCode::OK, "{headers:?}");
    g.pod()
}

/// ingress-nginx's precedence: `canary-by-header` (`always`/`never`, or the exact
/// `canary-by-header-value`, or `canary-by-header-pattern`) over `canary-by-cookie`
/// (`always`/`never`) over `canary-weight`; a value that says nothing falls through. `explain`
/// says the same for the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_by_header_and_cookie_take_precedence_over_weight() {
    use xdp_ingress::cli::explain::{Query, explain};
    let (main, canary) = (backend("main"), backend("canary"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    type Case<'a> = (Pairs<'a>, &'a str);
    // (canary annotations, [(request headers, pod)])
    let plain: &[(&str, &str)] = &[
        ("canary-by-header", "X-Canary"),
        ("canary-by-cookie", "canary_cookie"),
        ("canary-weight", "100"),
    ];
    let by_value: &[(&str, &str)] = &[
        ("canary-by-header", "X-Region"),
        ("canary-by-header-value", "eu-west"),
        ("canary-by-cookie", "canary_cookie"),
    ];
    let by_pattern: &[(&str, &str)] = &[
        ("canary-by-header", "X-Region"),
        ("canary-by-header-pattern", "^eu-"),
    ];
    let table: [(Pairs<'_>, Vec<Case<'_>>); 3] = [
        (
            plain,
            vec![
                (&[], "canary"),
                (&[("x-canary", "never")], "main"),
                (&[("x-canary", "always")], "canary"),
                (
                    &[("x-canary", "never"), ("cookie", "canary_cookie=always")],
                    "main",
                ),
                (&[("cookie", "canary_cookie=never")], "main"),
                // Neither always nor never: on to the cookie, then the weight.
                (
                    &[("x-canary", "yes"), ("cookie", "canary_cookie=never")],
                    "main",
                ),
                (
                    &[("x-canary", "yes"), ("cookie", "x=1; canary_cookie=maybe")],
                    "canary",
                ),
            ],
        ),
        (
            by_value,
            vec![
                (&[("x-region", "eu-west")], "canary"),
                (&[("x-region", "EU-WEST")], "main"),
                // With a value set, `always` is just another value: weight 0 decides.
                (&[("x-region", "always")], "main"),
                (
                    &[("x-region", "us"), ("cookie", "canary_cookie=always")],
                    "canary",
                ),
            ],
        ),
        (
            by_pattern,
            vec![
                (&[("x-region", "eu-central")], "canary"),
                (&[("x-region", "us-east")], "main"),
                (&[], "main"),
            ],
        ),
    ];
    for (v, (annotations, cases)) in table.into_iter().enumerate() {
        let snap = translated(v as u64 + 1, &canary_yaml(&main, &canary, &[], annotations));
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        proxy.handle.apply(snap.clone());
        for (headers, want) in cases {
            for _ in 0..5 {
                assert_eq!(
                    pod_for(&c, &proxy, headers).await,
                    want,
                    "{annotations:?} {headers:?}"
                );
            }
            let q = Query {
                host: "canary.test".into(),
                path: "/".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Query::default()
            };
            let e = explain(&snap, &q);
            let info = e.canary.as_ref().expect("explain shows the canary");
            assert_eq!(info.ingress.name, "app-canary");
            assert_eq!(info.backend.service.name, "next");
            assert_eq!(e.backends[0].service.name, "main");
            let json = serde_json::to_value(info).unwrap();
            match json["takes"].as_str() {
                Some(side) => assert_eq!(side, if want == "canary" { "canary" } else { "main" }),
                // Only the weight decides: it is 100 or 0 in these cases.
                None => assert_eq!(
                    info.canary_probability,
                    if want == "canary" { 1.0 } else { 0.0 },
                    "{annotations:?} {headers:?}"
                ),
            }
        }
    }
}

/// `affinity-canary-behavior: sticky` (the default): the canary backend gets the main
/// Ingress's cookie affinity, and a client whose affinity cookie names a canary pod stays on
/// the canary — before the header is looked at — as one naming a main pod stays on main.
/// With `legacy` the canary has no affinity of its own here, so its clients are re-rolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_affinity_cookie_keeps_a_client_on_its_side() {
    let (main, canary) = (backend("main"), backend("canary"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let sticky_main: &[(&str, &str)] = &[("affinity", "cookie"), ("session-cookie-name", "route")];
    let canary_ann: &[(&str, &str)] = &[("canary-weight", "50"), ("canary-by-header", "X-Canary")];
    proxy.handle.apply(translated(
        1,
        &canary_yaml(&main, &canary, sticky_main, canary_ann),
    ));
    // A client on each side, by header; each gets an affinity cookie for its pod.
    let mut cookies = BTreeMap::new();
    for side in ["always", "never"] {
        let mut r = req(proxy.http(), "canary.test", "/");
        r.headers_mut().insert("x-canary", side.parse().unwrap());
        let g = send(&c, r).await.unwrap();
        let set = g.header("set-cookie");
        assert!(set.starts_with("route="), "{side}: {set:?}");
        cookies.insert(g.pod(), set.split(';').next().unwrap().to_string());
    }
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for _ in 0..40 {
        // Affinity first: even a header saying otherwise does not move the client.
        let canary_client = [
            ("cookie", cookies["canary"].as_str()),
            ("x-canary", "never"),
        ];
        assert_eq!(pod_for(&c, &proxy, &canary_client).await, "canary");
        let main_client = [("cookie", cookies["main"].as_str()), ("x-canary", "always")];
        assert_eq!(pod_for(&c, &proxy, &main_client).await, "main");
    }
    // `legacy`: the canary backend has no affinity, so its cookie keeps nobody there and the
    // 50% weight decides (both sides seen within 200 requests: a miss is 2^-200 likely).
    let legacy: Vec<(&str, &str)> =
        [canary_ann, &[("affinity-canary-behavior", "legacy")]].concat();
    proxy.handle.apply(translated(
        2,
        &canary_yaml(&main, &canary, sticky_main, &legacy),
    ));
    let mut seen = HashSet::new();
    for _ in 0..200 {
        seen.insert(pod_for(&c, &proxy, &[("cookie", cookies["canary"].as_str())]).await);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// A canary's answer caught by the main Ingress's `custom-http-errors` names the location's
/// Service in `X-Service-Name`, the main one: ingress-nginx sets `$service_name` per location,
/// whichever backend its balancer picked (found by a fresh-user trial: it named the canary's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_error_page_names_the_main_service() {
    let (main, canary, errs) = (backend("main"), backend("canary"), backend("errors"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = canary_yaml(
        &main,
        &canary,
        &[("default-backend", "errors"), ("custom-http-errors", "503")],
        &[("canary-weight", "100")],
    ) + &service_yaml("errors", errs.addr);
    proxy.handle.apply(translated(1, &yaml));
    let before = canary.requests();
    let g = get(&c, proxy.http(), "canary.test", "/status/503").await;
    assert_eq!(canary.requests(), before + 1, "the canary answered first");
    assert_eq!(g.pod(), "errors");
    let h = &g.json()["headers"];
    assert_eq!(h["x-code"], "503");
    assert_eq!(h["x-service-name"], "main");
    assert_eq!(h["x-ingress-name"], "app");
}

/// nginx's `error_page` runs from its special response handler, which ends keep-alive for
/// 400, 413, 414, 500 and 501 first: an intercepted 500 of the pod is the error backend's
/// answer with `Connection: close`; an intercepted 404 keeps the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_for_a_500_closes_the_connection_as_nginx() {
    let (app, errs) = (backend("app"), backend("errors"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = [
        service_yaml("main", app.addr),
        service_yaml("errors", errs.addr),
        ingress_for(
            "close.test",
            "app",
            "main",
            "2025-01-01T00:00:00Z",
            &[
                ("default-backend", "errors"),
                ("custom-http-errors", "404,500"),
            ],
        ),
    ]
    .concat();
    proxy.handle.apply(translated(1, &yaml));
    for (code, closes) in [("500", true), ("404", false)] {
        let g = get(&c, proxy.http(), "close.test", &format!("/status/{code}")).await;
        assert_eq!(
            (g.status, g.pod().as_str()),
            (StatusCode::OK, "errors"),
            "{code}"
        );
        let close = g
            .headers
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        assert_eq!(close, closes, "{code}: {:?}", g.headers);
    }
}

/// ingress-nginx `custom-http-errors` with `default-backend`: a listed status from the
/// endpoint is replaced by the error backend's answer to a request for `/` (query kept) that
/// carries X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name,
/// X-Service-Port and X-Request-ID; that answer reaches the client unchanged ("NGINX does not
/// change the response from the custom default backend"). Unlisted statuses pass through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_http_errors_are_served_by_the_default_backend_with_ingress_nginx_headers() {
    let (app, errs, global) = (backend("app"), backend("errors"), backend("global"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = |annotations: &[(&str, &str)]| {
        [
            service_yaml("main", app.addr),
            service_yaml("errors", errs.addr),
            ingress_for(
                "errors.test",
                "app",
                "main",
                "2025-01-01T00:00:00Z",
                annotations,
            ),
        ]
        .concat()
    };
    let snap = translated(
        1,
        &yaml(&[
            ("default-backend", "errors"),
            ("custom-http-errors", "404, 503,abc"),
        ]),
    );
    let reasons: Vec<_> = snap.diagnostics.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, ["InvalidAnnotation"], "the bad code is reported");
    // `explain` shows the same.
    let e = xdp_ingress::cli::explain::explain(
        &snap,
        &xdp_ingress::cli::explain::Query {
            host: "errors.test".into(),
            path: "/".into(),
            ..Default::default()
        },
    );
    let pages = e
        .error_pages
        .as_ref()
        .expect("explain shows the error pages");
    assert_eq!(pages.intercept, [404, 503]);
    assert_eq!(
        pages.intercepted_by.as_ref().map(|s| s.name.as_str()),
        Some("errors")
    );
    assert!(!pages.default_backend_serves);
    proxy.handle.apply(snap);
    for code in ["503", "404"] {
        let mut r = req(proxy.http(), "errors.test", &format!("/status/{code}?x=1"));
        r.headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.pod(), "errors", "{code}");
        assert_eq!(
            g.status,
            StatusCode::OK,
            "the error backend's own answer, unchanged"
        );
        let j = g.json();
        assert_eq!(j["path"], "/?x=1");
        let h = &j["headers"];
        assert_eq!(h["x-code"], code);
        assert_eq!(h["x-format"], "application/json");
        assert_eq!(h["x-original-uri"], format!("/status/{code}?x=1"));
        assert_eq!(h["x-namespace"], "default");
        assert_eq!(h["x-ingress-name"], "app");
        assert_eq!(h["x-service-name"], "main");
        assert_eq!(h["x-service-port"], "80");
        assert_eq!(h["x-request-id"].as_str().unwrap_or_default().len(), 32);
        assert_eq!(h["host"], "errors.test");
    }
    // Not listed: the endpoint's answer.
    let g = get(&c, proxy.http(), "errors.test", "/status/500").await;
    assert_eq!(
        (g.status, g.pod().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "app")
    );
    let g = get(&c, proxy.http(), "errors.test", "/fine").await;
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));

    // Without `default-backend` the controller's default backend (`--default-backend-service`)
    // serves the errors; with neither, nothing is intercepted.
    proxy
        .handle
        .apply(translated(2, &yaml(&[("custom-http-errors", "503")])));
    let g = get(&c, proxy.http(), "errors.test", "/status/503").await;
    assert_eq!(
        (g.status, g.pod().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "app")
    );
    let with_global = [
        yaml(&[("custom-http-errors", "503")]),
        service_yaml("global", global.addr),
    ]
    .concat();
    proxy
        .handle
        .apply(with_default_backend_service(3, &with_global));
    let g = get(&c, proxy.http(), "errors.test", "/status/503").await;
    assert_eq!(g.pod(), "global");
    assert_eq!(g.json()["headers"]["x-code"], "503");
    // No Accept from the client: no X-Format (nginx sends no empty header).
    assert!(g.json()["headers"].get("x-format").is_none());
}

/// The controller ConfigMap's `custom-http-errors`: routes of Ingresses without the annotation
/// have those statuses served by the controller's default backend (`--default-backend-service`)
/// or their `default-backend`; an Ingress's own annotation replaces the
/// list ("will override the global value", ingress-nginx's annotations reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_custom_http_errors_apply_where_no_annotation_does() {
    let (app, errs, global) = (backend("app"), backend("errors"), backend("global"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = [
        r#"apiVersion: v1
kind: ConfigMap
metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
data: {custom-http-errors: "404,503"}
---
"#
        .to_string(),
        service_yaml("main", app.addr),
        service_yaml("errors", errs.addr),
        service_yaml("global", global.addr),
        ingress_for("plain.test", "plain", "main", "2025-01-01T00:00:00Z", &[]),
        ingress_for(
            "own.test",
            "own",
            "main",
            "2025-01-01T00:00:00Z",
            &[("custom-http-errors", "500")],
        ),
        ingress_for(
            "db.test",
            "db",
            "main",
            "2025-01-01T00:00:00Z",
            &[("default-backend", "errors")],
        ),
    ]
    .concat();
    let snap = translate_manifests(1, &yaml, |c| {
        c.configmap = Some(xdp_ingress::store::Key::new(
            "ingress-nginx",
            "ingress-nginx-controller",
        ));
        c.default_backend_service = Some(xdp_ingress::store::Key::new("default", "global"));
    });
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let pod_of = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let addr = proxy.http();
        async move {
            let g = get(&c, addr, host, path).await;
            (g.status, g.pod(), g.json()["headers"]["x-code"].clone())
        }
    };
    // No annotation: the ConfigMap's codes go to the controller-wide default backend.
    assert_eq!(
        pod_of("plain.test", "/status/503").await,
        (StatusCode::OK, "global".into(), "503".into())
    );
    assert_eq!(pod_of("plain.test", "/status/404").await.1, "global");
    assert_eq!(
        pod_of("plain.test", "/status/500").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // `default-backend` without `custom-http-errors`: the ConfigMap's codes, its backend.
    assert_eq!(pod_of("db.test", "/status/503").await.1, "errors");
    // The Ingress's own list replaces the ConfigMap's.
    assert_eq!(
        pod_of("own.test", "/status/503").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(pod_of("own.test", "/status/500").await.1, "global");
}

/// The controller ConfigMap's `custom-http-errors` at the default server: ingress-nginx writes
/// the list's `error_page` lines and `proxy_intercept_errors on` in nginx's `http` block, so
/// its default server `_` (a host no rule names, served by `--default-backend-service`)
/// inherits them: the default backend's listed answer, and the server's own refusals
/// (`block-cidrs`' 403), are replaced by the default backend's answer to a request carrying
/// `X-Code` and `X-Original-URI`, and no Ingress or Service names (the default server's
/// location has none). `disable-proxy-intercept-errors: "true"` passes the backend's answer as
/// it is; the refusal stays replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_custom_http_errors_apply_at_the_default_server() {
    let (app, global) = (backend("app"), backend("global"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let snap = |v: u64, configmap: &str| {
        let yaml = [
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ingress-nginx-controller, \
                 namespace: ingress-nginx}}\ndata: {{{configmap}}}\n---\n"
            ),
            service_yaml("main", app.addr),
            service_yaml("global", global.addr),
            ingress_for("plain.test", "plain", "main", "2025-01-01T00:00:00Z", &[]),
        ]
        .concat();
        let snap = translate_manifests(v, &yaml, |c| {
            c.configmap = Some(xdp_ingress::store::Key::new(
                "ingress-nginx",
                "ingress-nginx-controller",
            ));
            c.default_backend_service = Some(xdp_ingress::store::Key::new("default", "global"));
        });
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        snap
    };
    let answer = |path: &'static str| {
        let c = c.clone();
        let addr = proxy.http();
        async move { get(&c, addr, "nobody.test", path).await }
    };

    proxy
        .handle
        .apply(snap(1, "custom-http-errors: \"404,403\""));
    let g = answer("/status/404?q=1").await;
    assert_eq!((g.status, g.pod()), (StatusCode::OK, "global".into()));
    let headers = &g.json()["headers"];
    assert_eq!(headers["x-code"], "404");
    assert_eq!(headers["x-original-uri"], "/status/404?q=1");
    for absent in ["x-namespace", "x-ingress-name", "x-service-name"] {
        assert!(headers.get(absent).is_none(), "{absent}: {headers}");
    }
    // nginx's `rewrite (.*) / break` keeps the query.
    assert_eq!(g.json()["path"], "/?q=1");
    // A status not listed passes as the default backend answered it.
    assert_eq!(
        answer("/status/503").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The server's own refusal is replaced too (nginx's `error_page` covers `deny`).
    proxy.handle.apply(snap(
        2,
        "custom-http-errors: \"404,403\", block-cidrs: \"127.0.0.0/8\"",
    ));
    let g = answer("/anything").await;
    assert_eq!((g.status, g.pod()), (StatusCode::OK, "global".into()));
    assert_eq!(g.json()["headers"]["x-code"], "403");

    // The ConfigMap key passes the backend's answers, not the refusals.
    proxy.handle.apply(snap(
        3,
        "custom-http-errors: \"404\", disable-proxy-intercept-errors: \"true\"",
    ));
    assert_eq!(answer("/status/404").await.status, StatusCode::NOT_FOUND);
}

/// ingress-nginx `disable-proxy-intercept-errors` (its e2e test
/// annotations/disableproxyintercepterrors.go): with `custom-http-errors: 404` and
/// `default-backend`, `"true"` passes the pod's 404 as it is and `"false"` sends it to the error
/// backend. The proxy's own answers stay replaced (nginx's `error_page` covers them whatever
/// `proxy_intercept_errors` says): an allowlist 403 still goes to the error backend. As
/// ingress-nginx's template writes `proxy_intercept_errors`, the annotation does not stop the
/// ConfigMap list's interception on an Ingress without its own list; the ConfigMap key does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_proxy_intercept_errors_passes_the_pods_answers_only() {
    let (app, errs) = (backend("app"), backend("errors"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = |disable: &str, configmap: &str| {
        [
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ingress-nginx-controller, \
                 namespace: ingress-nginx}}\ndata: {{{configmap}}}\n---\n"
            ),
            service_yaml("main", app.addr),
            service_yaml("errors", errs.addr),
            ingress_for(
                "pie.test",
                "pie",
                "main",
                "2025-01-01T00:00:00Z",
                &[
                    ("custom-http-errors", "404,403"),
                    ("disable-proxy-intercept-errors", disable),
                    ("default-backend", "errors"),
                ],
            ),
            ingress_for(
                "denied.test",
                "denied",
                "main",
                "2025-01-01T00:00:00Z",
                &[
                    ("custom-http-errors", "403"),
                    ("disable-proxy-intercept-errors", disable),
                    ("default-backend", "errors"),
                    ("whitelist-source-range", "192.0.2.0/24"),
                ],
            ),
            ingress_for(
                "plain.test",
                "plain",
                "main",
                "2025-01-01T00:00:00Z",
                &[
                    ("disable-proxy-intercept-errors", disable),
                    ("default-backend", "errors"),
                ],
            ),
        ]
        .concat()
    };
    let snap = |v: u64, disable: &str, configmap: &str| {
        let snap = translate_manifests(v, &yaml(disable, configmap), |c| {
            c.configmap = Some(xdp_ingress::store::Key::new(
                "ingress-nginx",
                "ingress-nginx-controller",
            ));
        });
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        snap
    };
    let answer = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let addr = proxy.http();
        async move {
            let g = get(&c, addr, host, path).await;
            (g.status.as_u16(), g.pod())
        }
    };

    let s = snap(1, "true", "");
    let q = xdp_ingress::cli::explain::Query {
        host: "pie.test".into(),
        path: "/".into(),
        ..Default::default()
    };
    let e = xdp_ingress::cli::explain::explain(&s, &q);
    assert!(e.error_pages.as_ref().unwrap().pod_answers_passed);
    proxy.handle.apply(s);
    assert_eq!(answer("pie.test", "/status/404").await, (404, "app".into()));
    assert_eq!(answer("denied.test", "/").await, (200, "errors".into()));

    proxy.handle.apply(snap(2, "false", ""));
    assert_eq!(
        answer("pie.test", "/status/404").await,
        (200, "errors".into())
    );
    assert_eq!(answer("denied.test", "/").await, (200, "errors".into()));

    // A ConfigMap list turns `proxy_intercept_errors on` in the `http` block, which the
    // annotated location then inherits: the annotation alone no longer passes the 404.
    proxy
        .handle
        .apply(snap(3, "true", "custom-http-errors: \"503\""));
    assert_eq!(
        answer("pie.test", "/status/404").await,
        (200, "errors".into())
    );
    assert_eq!(
        answer("plain.test", "/status/503").await,
        (200, "errors".into())
    );

    // The ConfigMap key: the routes on the ConfigMap's list pass the pod's answers; an
    // Ingress's own list (its location's `proxy_intercept_errors on`) is not affected.
    let cm = "custom-http-errors: \"503\", disable-proxy-intercept-errors: \"true\"";
    proxy.handle.apply(snap(4, "false", cm));
    assert_eq!(
        answer("plain.test", "/status/503").await,
        (503, "app".into())
    );
    assert_eq!(
        answer("pie.test", "/status/404").await,
        (200, "errors".into())
    );
}

/// ingress-nginx `default-backend`: while the Ingress's own backend has no endpoints (none
/// ready, or its Service missing), the annotation's Service serves its requests as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backend_annotation_serves_while_the_backend_has_no_endpoints() {
    let errs = backend("errors");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let empty_service = "apiVersion: v1
kind: Service
metadata: {name: empty, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
";
    for (v, service) in ["empty", "missing"].into_iter().enumerate() {
        let yaml = [
            empty_service.to_string(),
            service_yaml("errors", errs.addr),
            ingress_for(
                "db.test",
                "app",
                service,
                "2025-01-01T00:00:00Z",
                &[("default-backend", "errors")],
            ),
        ]
        .concat();
        let snap = translated(v as u64 + 1, &yaml);
        let q = xdp_ingress::cli::explain::Query {
            host: "db.test".into(),
            path: "/".into(),
            ..Default::default()
        };
        let e = xdp_ingress::cli::explain::explain(&snap, &q);
        assert!(e.error_pages.unwrap().default_backend_serves, "{service}");
        proxy.handle.apply(snap);
        let g = get(&c, proxy.http(), "db.test", "/some/page?q=1").await;
        assert_eq!(
            (g.status, g.pod().as_str()),
            (StatusCode::OK, "errors"),
            "{service}"
        );
        assert_eq!(g.json()["path"], "/some/page?q=1", "{service}");
        // The headers ingress-nginx sets in a location served by its custom default backend
        // (nginx.tmpl, "custom-default-backend-"); no Accept, so no X-Format.
        let h = &g.json()["headers"];
        assert_eq!(h["x-code"], "503", "{service}");
        assert_eq!(h["x-namespace"], "default", "{service}");
        assert_eq!(h["x-ingress-name"], "app", "{service}");
        assert!(h.get("x-format").is_none(), "{service}: {h}");
        assert_eq!(h["x-request-id"].as_str().unwrap_or_default().len(), 32);
        // The Service as the Ingress names it, whether or not it exists (ingress-nginx's e2e
        // default_backend.go: `x-service-name=invalid` for a Service that does not exist).
        assert_eq!(
            (&h["x-service-name"], &h["x-service-port"]),
            (&service.into(), &"80".into()),
            "{service}"
        );
        let mut r = req(proxy.http(), "db.test", "/");
        r.headers_mut()
            .insert("accept", "text/html".parse().unwrap());
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.json()["headers"]["x-format"], "text/html", "{service}");
    }
    // A default backend that does not exist: a Warning, and the Ingress answers as without it.
    let yaml = [
        empty_service.to_string(),
        ingress_for(
            "db.test",
            "app",
            "empty",
            "2025-01-01T00:00:00Z",
            &[("default-backend", "nowhere")],
        ),
    ]
    .concat();
    let snap = translated(5, &yaml);
    assert_eq!(snap.diagnostics[0].reason, "DefaultBackendNotFound");
    proxy.handle.apply(snap);
    let g = get(&c, proxy.http(), "db.test", "/").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// ingress-nginx's `custom-http-errors` are `error_page <code> = @custom_...` lines of the
/// location (nginx.tmpl), and nginx's `error_page` covers every status the location answers,
/// not only the upstream's (`proxy_intercept_errors`): its own refusals too. So an allowlist
/// `deny` (403), a `limit_req` refusal (503, `limit-req-status-code`), an `auth_basic`
/// challenge (401) and an `auth_request` refusal (401, 403, 500) go to the error backend with
/// their `X-Code`, and the client gets that backend's answer; a refusal whose status is not
/// listed is the proxy's own, and so is a denied location's 503. The root location (a path no
/// rule has) the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_http_errors_catch_the_proxys_own_refusals() {
    let (app, errs) = (backend("app"), backend("errors"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    // The Ingress routes `Prefix /app` only: `/other` is the host's root location.
    let yaml = |annotations: &[(&str, &str)], rest: &str| {
        [
            service_yaml("main", app.addr),
            service_yaml("errors", errs.addr),
            ingress_for(
                "refuse.test",
                "app",
                "main",
                "2025-01-01T00:00:00Z",
                annotations,
            )
            .replace("{path: /, ", "{path: /app, "),
            rest.to_string(),
        ]
        .concat()
    };
    let from_errors = |g: &Got, code: &str, path: &str| {
        assert_eq!(
            (g.status, g.pod().as_str()),
            (StatusCode::OK, "errors"),
            "{code} {path}: {}",
            g.header(REASON_HEADER)
        );
        let h = &g.json()["headers"];
        assert_eq!(h["x-code"], code, "{path}");
        assert_eq!(h["x-original-uri"], path);
        assert_eq!(h["x-ingress-name"], "app");
        assert_eq!(h["x-request-id"].as_str().unwrap_or_default().len(), 32);
    };

    // `allowlist-source-range` the client (127.0.0.1) is outside of.
    let allow = [
        ("allowlist-source-range", "10.0.0.0/8"),
        ("default-backend", "errors"),
    ];
    proxy.handle.apply(translated(
        1,
        &yaml(&[&allow[..], &[("custom-http-errors", "403")]].concat(), ""),
    ));
    for path in ["/app/x?q=1", "/other"] {
        let g = get(&c, proxy.http(), "refuse.test", path).await;
        from_errors(&g, "403", path);
    }
    let g = get(&c, proxy.http(), "refuse.test", "/app/x").await;
    assert_eq!(g.json()["headers"]["x-service-name"], "main");
    // 403 not listed: the proxy's own refusal.
    proxy.handle.apply(translated(
        2,
        &yaml(&[&allow[..], &[("custom-http-errors", "503")]].concat(), ""),
    ));
    let g = get(&c, proxy.http(), "refuse.test", "/app/x").await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    assert_eq!(g.header(REASON_HEADER), SOURCE_DENIED);

    // `limit-rps: 1` with a burst of 1: quick requests are soon refused with 503, each of
    // which the error backend answers; none reaches the client as the proxy's 503.
    proxy.handle.apply(translated(
        3,
        &yaml(
            &[
                ("limit-rps", "1"),
                ("limit-burst-multiplier", "1"),
                ("custom-http-errors", "403,503"),
                ("default-backend", "errors"),
            ],
            "",
        ),
    ));
    let mut caught = 0;
    for _ in 0..20 {
        let g = get(&c, proxy.http(), "refuse.test", "/app/limited").await;
        if g.pod() == "app" {
            assert_eq!(g.status, StatusCode::OK);
        } else {
            from_errors(&g, "503", "/app/limited");
            caught += 1;
        }
    }
    assert!(caught > 0, "no request was rate limited");

    // Basic auth without credentials: the 401 challenge is the error backend's answer.
    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: basic-auth, namespace: default}\ntype: Opaque\nstringData:\n  auth: \"u:_J9..saltlWd5FJP1T6.\\n\"\n";
    proxy.handle.apply(translated(
        4,
        &yaml(
            &[
                ("auth-type", "basic"),
                ("auth-secret", "basic-auth"),
                ("custom-http-errors", "401"),
                ("default-backend", "errors"),
            ],
            secret,
        ),
    ));
    for path in ["/app/x", "/other"] {
        let g = get(&c, proxy.http(), "refuse.test", path).await;
        from_errors(&g, "401", path);
        assert!(g.header("www-authenticate").is_empty(), "{path}");
    }

    // External auth: the auth service's 401 and 403 are the location's, any other answer is
    // its 500 (nginx `auth_request`); each goes to the error backend. (The echo pod answers
    // `/status/<code>` with that status.)
    for (version, answer, code) in [(6, "401", "401"), (7, "403", "403"), (8, "502", "500")] {
        let url = format!("http://127.0.0.1:{}/status/{answer}", app.addr.port());
        proxy.handle.apply(translated(
            version,
            &yaml(
                &[
                    ("auth-url", url.as_str()),
                    ("custom-http-errors", "401,403,500"),
                    ("default-backend", "errors"),
                ],
                "",
            ),
        ));
        let g = get(&c, proxy.http(), "refuse.test", "/app/x").await;
        from_errors(&g, code, "/app/x");
    }

    // `limit-req-status-code: 429` (ConfigMap): the refusal is a 429, caught when listed.
    let cm = configmap_yaml(&[("limit-req-status-code", "429")]);
    let limited = yaml(
        &[
            ("limit-rps", "1"),
            ("limit-burst-multiplier", "1"),
            ("custom-http-errors", "429"),
            ("default-backend", "errors"),
        ],
        &cm,
    );
    proxy.handle.apply(translated_with_configmap(9, &limited));
    let mut caught = 0;
    for _ in 0..20 {
        let g = get(&c, proxy.http(), "refuse.test", "/app/limited").await;
        if g.pod() == "errors" {
            from_errors(&g, "429", "/app/limited");
            caught += 1;
        } else {
            assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));
        }
    }
    assert!(caught > 0, "no request was rate limited");

    // A denied location (its auth Secret missing) is a bare `return 503` in ingress-nginx,
    // without the `error_page` lines: its 503 is the proxy's own.
    proxy.handle.apply(translated(
        10,
        &yaml(
            &[
                ("auth-type", "basic"),
                ("auth-secret", "missing"),
                ("custom-http-errors", "503"),
                ("default-backend", "errors"),
            ],
            "",
        ),
    ));
    let g = get(&c, proxy.http(), "refuse.test", "/app/x").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !g.header(REASON_HEADER).is_empty(),
        "the proxy's own answer"
    );
}

/// ingress-nginx's implicit root location (controller.go `createServers`): a host whose
/// Ingresses route no `/` still has a `location /` proxied to the default backend (the
/// built-in one answers 404) with the annotations of the host's first Ingress. So its
/// `custom-http-errors: 404` sends an unmatched request to its `default-backend` (else the
/// controller-wide one) with `X-Code: 404` and ingress-nginx's other headers (no
/// `X-Service-Name`/`-Port`: the location has no Service). A host whose first Ingress
/// intercepts nothing answers unmatched paths as the Ingress API says (default backend or 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_a_root_path_gets_its_first_ingress_error_pages() {
    let (app, errs, global) = (backend("app"), backend("errors"), backend("global"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    // Ingresses routing only `Prefix /app`.
    let on_app = |host: &str, name: &str, annotations: &[(&str, &str)]| {
        ingress_for(host, name, "main", "2025-01-01T00:00:00Z", annotations)
            .replace("{path: /, ", "{path: /app, ")
    };
    let yaml = |annotations: &[(&str, &str)]| {
        [
            service_yaml("main", app.addr),
            service_yaml("errors", errs.addr),
            on_app("root.test", "app", annotations),
            on_app("plain.test", "plain", &[]),
        ]
        .concat()
    };
    let global_yaml = service_yaml("global", global.addr);
    let explain = |snap: &Snapshot, host: &str, path: &str| {
        xdp_ingress::cli::explain::explain(
            snap,
            &xdp_ingress::cli::explain::Query {
                host: host.into(),
                path: path.into(),
                ..Default::default()
            },
        )
    };

    // `default-backend` + `custom-http-errors: 404`, no controller-wide default backend: the
    // built-in 404 is replaced by the error backend's answer.
    let snap = translated(
        1,
        &yaml(&[("default-backend", "errors"), ("custom-http-errors", "404")]),
    );
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let e = explain(&snap, "root.test", "/nothing");
    let route = e.route.as_ref().expect("explain shows the root location");
    assert_eq!(
        (route.ingress.name.as_str(), route.path.as_str()),
        ("app", "/")
    );
    assert_eq!(route.path_type, xdp_ingress::cli::explain::ROOT_LOCATION);
    assert_eq!(e.status, Some(404), "{}", e.reason);
    assert!(e.reason.contains("custom-http-errors"), "{}", e.reason);
    let pages = e.error_pages.as_ref().expect("and its error pages");
    assert_eq!(pages.intercept, [404]);
    assert_eq!(
        pages.intercepted_by.as_ref().map(|s| s.name.as_str()),
        Some("errors")
    );
    proxy.handle.apply(snap);
    let mut r = req(proxy.http(), "root.test", "/nothing?x=1");
    r.headers_mut()
        .insert("accept", "text/html".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "errors"));
    let j = g.json();
    assert_eq!(j["path"], "/?x=1");
    let h = &j["headers"];
    assert_eq!(h["x-code"], "404");
    assert_eq!(h["x-format"], "text/html");
    assert_eq!(h["x-original-uri"], "/nothing?x=1");
    assert_eq!(h["x-namespace"], "default");
    assert_eq!(h["x-ingress-name"], "app");
    assert!(h.get("x-service-name").is_none(), "{h}");
    assert!(h.get("x-service-port").is_none(), "{h}");
    assert_eq!(h["x-request-id"].as_str().unwrap_or_default().len(), 32);
    // Its own paths as before; a host whose first Ingress intercepts nothing: our 404.
    let g = get(&c, proxy.http(), "root.test", "/app/x").await;
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));
    let g = get(&c, proxy.http(), "plain.test", "/nothing").await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.header(REASON_HEADER), "no path matched");

    // With the controller's default backend (`--default-backend-service`) and no
    // `default-backend`: the default backend answers unmatched paths, and its 404 is replaced by its own answer to the error request.
    let snap = with_default_backend_service(
        2,
        &[yaml(&[("custom-http-errors", "404")]), global_yaml].concat(),
    );
    let e = explain(&snap, "root.test", "/status/404");
    assert_eq!(e.backends[0].service.name, "global", "{}", e.reason);
    proxy.handle.apply(snap);
    let g = get(&c, proxy.http(), "root.test", "/nothing").await;
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "global"));
    assert_eq!(g.json()["path"], "/nothing");
    assert!(g.json()["headers"].get("x-code").is_none());
    let g = get(&c, proxy.http(), "root.test", "/status/404").await;
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "global"));
    assert_eq!(g.json()["path"], "/");
    assert_eq!(g.json()["headers"]["x-code"], "404");
    assert_eq!(g.json()["headers"]["x-original-uri"], "/status/404");
    // The host without error pages: the default backend's 404 as it is.
    let g = get(&c, proxy.http(), "plain.test", "/status/404").await;
    assert_eq!(
        (g.status, g.pod().as_str()),
        (StatusCode::NOT_FOUND, "global")
    );
}

/// As [`translated`], reading the controller ConfigMap `ingress-nginx/cm` from the manifests.
fn translated_with_configmap(version: u64, yaml: &str) -> Arc<Snapshot> {
    translate_manifests(version, yaml, |c| {
        c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"))
    })
}

/// ConfigMap `enable-syslog` with `syslog-host` and `syslog-port` (ingress-nginx's nginx.tmpl
/// `access_log syslog:server=HOST:PORT`): each access log line arrives at the syslog server
/// as one UDP datagram with nginx's RFC 3164 header, `<190>` (local7.info) and the `nginx`
/// tag; a DNS name is resolved; the keys apply on a ConfigMap change, and without
/// `enable-syslog` nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_reach_the_syslog_server_over_udp() {
    let app = backend("app");
    let proxy = TestProxy::start(ProxyArgs {
        access_log_format: xdp_ingress::proxy::AccessLogFormat::Json,
        ..ProxyArgs::default()
    })
    .await;
    // The address the proxy's resolver gives `localhost` first: the server listens there.
    let local = tokio::net::lookup_host(("localhost", 0))
        .await
        .unwrap()
        .next()
        .unwrap()
        .ip();
    let server = tokio::net::UdpSocket::bind((local, 0)).await.unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let app_yaml = service_yaml("main", app.addr)
        + &ingress_for("log.test", "app", "main", "2024-01-01T00:00:00Z", &[]);
    let with_cm = |data: &[(&str, &str)]| format!("{app_yaml}{}", configmap_yaml(data));
    let c = http1_client();
    let mut buf = vec![0u8; 65536];
    for (version, host) in [(1, local.to_string()), (2, "localhost".to_string())] {
        proxy.handle.apply(translated_with_configmap(
            version,
            &with_cm(&[
                ("enable-syslog", "true"),
                ("syslog-host", &host),
                ("syslog-port", &port),
            ]),
        ));
        let uri = format!("/probe-{version}");
        assert_eq!(get(&c, proxy.http(), "log.test", &uri).await.status, 200);
        let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
            .await
            .expect("a datagram within 5 s")
            .unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (head, json) = line.split_once(" nginx: ").expect("the nginx tag");
        // `<190>Mmm dd hh:mm:ss HOSTNAME`
        assert!(head.starts_with("<190>"), "{line}");
        let fields: Vec<&str> = head["<190>".len()..].split_whitespace().collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!(fields[2].len(), 8, "hh:mm:ss: {line}");
        let entry: serde_json::Value = serde_json::from_str(json).expect("the JSON line");
        assert_eq!(entry["uri"], uri, "{line}");
        assert_eq!(entry["status"], 200, "{line}");
        assert_eq!(entry["host"], "log.test", "{line}");
    }
    // Off again: the line goes to stdout, none to the server.
    proxy.handle.apply(translated_with_configmap(
        3,
        &with_cm(&[("syslog-host", &local.to_string()), ("syslog-port", &port)]),
    ));
    assert_eq!(
        get(&c, proxy.http(), "log.test", "/after").await.status,
        200
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), server.recv(&mut buf))
            .await
            .is_err(),
        "no datagram without enable-syslog"
    );
}

/// ConfigMap `allow-backend-server-header`, default "false": the pod's `Server` never reaches
/// the client (nginx hides it, `proxy_hide_header` default; nginx.tmpl writes
/// `proxy_pass_header Server` only for "true"), over HTTP/1.1 and HTTP/2, from the route's
/// backend and from an error backend answering `custom-http-errors`; the proxy sends no
/// `Server` of its own (ingress-nginx's default `server-tokens: false` clears its own,
/// `more_clear_headers Server`). "true" passes the pod's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_server_header_is_hidden_unless_allowed() {
    let (app, errs) = (backend("app"), backend("errors"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let manifests = [
        service_yaml("main", app.addr),
        service_yaml("errors", errs.addr),
        ingress_for(
            "server.test",
            "app",
            "main",
            "2025-01-01T00:00:00Z",
            &[("default-backend", "errors"), ("custom-http-errors", "503")],
        ),
    ]
    .concat();
    // The pods answer with `Server: pod/1` (the echo backend's X-Echo-Set-Header).
    let server_of = |path: &'static str| {
        let addr = proxy.http();
        async move {
            let mut seen = Vec::new();
            for c in [http1_client(), h2c_client()] {
                let mut r = req(addr, "server.test", path);
                r.headers_mut()
                    .insert("x-echo-set-header", "Server:pod/1".parse().unwrap());
                let g = send(&c, r).await.unwrap();
                assert_eq!(g.status, StatusCode::OK, "{path}");
                seen.push(g.header("server"));
            }
            seen
        }
    };
    proxy.handle.apply(translated_with_configmap(1, &manifests));
    assert_eq!(server_of("/").await, ["", ""], "proxied");
    assert_eq!(server_of("/status/503").await, ["", ""], "error page");

    let allowed = configmap_yaml(&[("allow-backend-server-header", "true")]);
    let snap = translated_with_configmap(2, &format!("{manifests}{allowed}"));
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    assert_eq!(server_of("/").await, ["pod/1", "pod/1"], "proxied");
    assert_eq!(
        server_of("/status/503").await,
        ["pod/1", "pod/1"],
        "error page"
    );

    let off = configmap_yaml(&[("allow-backend-server-header", "false")]);
    proxy
        .handle
        .apply(translated_with_configmap(3, &format!("{manifests}{off}")));
    assert_eq!(server_of("/").await, ["", ""]);
}

/// A mirror backend that records each request it reads (head and body, as text) and answers
/// 200; keep-alive, `Content-Length` bodies only (what the proxy sends a mirror here).
async fn recording_backend() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                    buf.drain(..end + 4 + len);
                    let _ = tx.send(format!("{head}\r\n\r\n{body}"));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// ingress-nginx's `mirror-target` (annotations page, "Mirror"): a copy of each request goes
/// to the target (variables expanded: `$request_uri`), with the request's method, headers and
/// body and `Host` the target's host (or `mirror-host`); `mirror-request-body: off` sends no
/// body; the mirror's answer is ignored, and a mirror that cannot be reached changes nothing
/// for the client. A target naming a Service goes to its endpoints; an address is used as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_target_gets_a_copy_of_each_request() {
    let app = backend("app");
    let (mirror_addr, mut mirrored) = recording_backend().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let site = |annotations: &[(&str, &str)]| {
        [
            service_yaml("main", app.addr),
            service_yaml("mirror", mirror_addr),
            ingress_for(
                "app.test",
                "app",
                "main",
                "2025-01-01T00:00:00Z",
                annotations,
            ),
        ]
        .concat()
    };
    let post = |path: &'static str| {
        let mut r = req(proxy.http(), "app.test", path);
        *r.method_mut() = Method::POST;
        *r.body_mut() = Full::new(Bytes::from_static(b"hello mirror"));
        r.headers_mut().insert("x-trace", "t-1".parse().unwrap());
        let c = c.clone();
        async move { send(&c, r).await.unwrap() }
    };
    async fn next_copy(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a mirrored request")
            .expect("open")
    }

    // A Service's cluster DNS name, no mirror-host: Host is the target's host.
    let snap = translated(
        1,
        &site(&[(
            "mirror-target",
            "http://mirror.default.svc.cluster.local$request_uri",
        )]),
    );
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let g = post("/upload?x=1").await;
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));
    assert_eq!(
        g.json()["body"],
        "hello mirror",
        "the pod still gets the body"
    );
    let copy = next_copy(&mut mirrored).await;
    assert!(copy.starts_with("POST /upload?x=1 HTTP/1.1\r\n"), "{copy}");
    let lower = copy.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nhost: mirror.default.svc.cluster.local\r\n"),
        "{copy}"
    );
    assert!(lower.contains("\r\nx-trace: t-1\r\n"), "{copy}");
    assert!(copy.ends_with("\r\n\r\nhello mirror"), "{copy}");

    // An address, mirror-host, no body.
    let target = format!("http://{mirror_addr}/copy$request_uri");
    let snap = translated(
        2,
        &site(&[
            ("mirror-target", &target),
            ("mirror-host", "test.env.com"),
            ("mirror-request-body", "off"),
        ]),
    );
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let g = post("/p").await;
    assert_eq!(g.json()["body"], "hello mirror");
    let copy = next_copy(&mut mirrored).await;
    assert!(copy.starts_with("POST /copy/p HTTP/1.1\r\n"), "{copy}");
    let lower = copy.to_ascii_lowercase();
    assert!(lower.contains("\r\nhost: test.env.com\r\n"), "{copy}");
    assert!(!lower.contains("content-length: 12"), "{copy}");
    assert!(copy.ends_with("\r\n\r\n"), "no body: {copy}");

    // A literal target gets the request's query (nginx's mirror subrequest arguments).
    let snap = translated(
        3,
        &site(&[(
            "mirror-target",
            "http://mirror.default.svc.cluster.local/copy",
        )]),
    );
    proxy.handle.apply(snap);
    assert_eq!(post("/q?x=1").await.status, StatusCode::OK);
    let copy = next_copy(&mut mirrored).await;
    assert!(copy.starts_with("POST /copy?x=1 HTTP/1.1\r\n"), "{copy}");

    // A mirror nobody listens on: the client's request is served as before.
    let dead = dead_addr();
    let target = format!("http://{dead}$request_uri");
    let snap = translated(4, &site(&[("mirror-target", &target)]));
    proxy.handle.apply(snap);
    for _ in 0..3 {
        let g = post("/x").await;
        assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));
    }

    // Not a URL: a Warning, nothing mirrored, the route served.
    let snap = translated(5, &site(&[("mirror-target", "mirror.default.svc")]));
    assert!(
        snap.diagnostics
            .iter()
            .any(|d| d.message.contains("mirror-target")
                && d.message.contains("nothing is mirrored")),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    assert_eq!(post("/y").await.status, StatusCode::OK);
    assert!(mirrored.try_recv().is_err(), "nothing mirrored");
}

/// ConfigMap `use-gzip` and `enable-brotli`, as ingress-nginx's e2e tests (settings/gzip.go,
/// brotli.go) and nginx's gzip filter: off by default; on, a 200/403/404 answer of a listed
/// type at or above the minimum length is compressed for a client that accepts the coding,
/// brotli before gzip, over HTTP/1.1 and HTTP/2, with `Vary: Accept-Encoding` and no
/// `Content-Length`; `gzip-disable: msie6` spares IE6; `gzip-types` decides (text/html always);
/// HEAD answers and other statuses are left alone; a change applies hot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_gzip_and_brotli_compress_answers() {
    use std::io::Read;
    let a = backend("zip");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let site = ingress_yaml("zip.test", a.addr, &[]);
    let apply = |version, cm: &[(&str, &str)]| {
        let snap = translated_with_configmap(version, &format!("{site}{}", configmap_yaml(cm)));
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        proxy.handle.apply(snap);
    };
    let fetch = |method: Method, path: &'static str, accept: &'static str, ua: &'static str| {
        let addr = proxy.http();
        async move {
            let mut seen = Vec::new();
            for c in [http1_client(), h2c_client()] {
                let mut r = req(addr, "zip.test", path);
                *r.method_mut() = method.clone();
                r.headers_mut()
                    .insert("accept-encoding", accept.parse().unwrap());
                r.headers_mut().insert("user-agent", ua.parse().unwrap());
                seen.push(send(&c, r).await.unwrap());
            }
            seen
        }
    };
    let decoded = |g: &Got| -> Vec<u8> {
        let mut out = Vec::new();
        match g.header("content-encoding").as_str() {
            "gzip" => {
                flate2::read::GzDecoder::new(&g.body[..])
                    .read_to_end(&mut out)
                    .expect("gzip body");
            }
            "br" => {
                brotli::Decompressor::new(&g.body[..], 4096)
                    .read_to_end(&mut out)
                    .expect("brotli body");
            }
            _ => out = g.body.to_vec(),
        }
        out
    };
    const CURL: &str = "curl/8";

    // Off by default: no coding, no Vary.
    apply(1, &[]);
    for g in fetch(Method::GET, "/sized/1000", "gzip, br", CURL).await {
        assert_eq!(
            (g.status, g.header("content-encoding")),
            (StatusCode::OK, String::new())
        );
        assert_eq!(g.header("vary"), "");
    }

    apply(
        2,
        &[
            ("use-gzip", "true"),
            ("gzip-min-length", "100"),
            ("gzip-types", "application/octet-stream"),
            ("gzip-disable", "msie6"),
        ],
    );
    for g in fetch(Method::GET, "/sized/100", "gzip", CURL).await {
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.header("content-encoding"), "gzip");
        assert_eq!(g.header("vary"), "accept-encoding");
        assert_eq!(
            g.header("content-length"),
            "",
            "the length of the original is gone"
        );
        assert_eq!(decoded(&g), vec![b'x'; 100]);
        assert!(g.body.len() < 100, "compressed: {} bytes", g.body.len());
    }
    // Below the minimum (ingress-nginx's `/bytes/99` case), or a type not listed: as sent.
    for g in fetch(Method::GET, "/sized/99", "gzip", CURL).await {
        assert_eq!(g.header("content-encoding"), "");
        assert_eq!(g.body.len(), 99);
    }
    for g in fetch(Method::GET, "/json", "gzip", CURL).await {
        assert_eq!(
            (g.header("content-encoding"), g.header("vary")),
            (String::new(), String::new())
        );
        assert_eq!(g.pod(), "zip");
    }
    // The client does not accept gzip (or refuses it with q=0): as sent, but it varies.
    for accept in ["identity", "gzip;q=0, deflate"] {
        let got = fetch(Method::GET, "/sized/500", accept, CURL).await;
        for g in got {
            assert_eq!(g.header("content-encoding"), "", "{accept}");
            assert_eq!(g.header("vary"), "accept-encoding", "{accept}");
            assert_eq!(g.body.len(), 500);
        }
    }
    // IE6 (the msie6 mask) gets no gzip; ingress-nginx's test user agents.
    for g in fetch(
        Method::GET,
        "/sized/500",
        "gzip",
        "Mozilla/45.0 (compatible; MSIE 6.0; Windows NT 5.1)",
    )
    .await
    {
        assert_eq!(g.header("content-encoding"), "");
    }
    for g in fetch(
        Method::GET,
        "/sized/500",
        "gzip",
        "Mozilla/4.8 [en] (Windows NT 5.1; U)",
    )
    .await
    {
        assert_eq!(g.header("content-encoding"), "gzip");
    }
    // HEAD and statuses other than 200/403/404 are never compressed.
    for g in fetch(Method::HEAD, "/sized/500", "gzip", CURL).await {
        assert_eq!(
            (g.status, g.header("content-encoding")),
            (StatusCode::OK, String::new())
        );
    }

    // Both codings with their defaults: JSON is listed; brotli wins when both are accepted.
    apply(
        3,
        &[
            ("use-gzip", "true"),
            ("enable-brotli", "true"),
            ("gzip-min-length", "20"),
            ("brotli-types", "*"),
        ],
    );
    for (accept, coding) in [("gzip, deflate, br", "br"), ("gzip", "gzip"), ("br", "br")] {
        for g in fetch(Method::GET, "/json", accept, CURL).await {
            assert_eq!(g.header("content-encoding"), coding, "{accept}");
            let json: serde_json::Value = serde_json::from_slice(&decoded(&g)).expect("JSON");
            assert_eq!(json["pod"], "zip", "{accept}");
        }
    }
    for g in fetch(Method::GET, "/status/500", "gzip, br", CURL).await {
        assert_eq!(
            (g.status, g.header("content-encoding")),
            (StatusCode::INTERNAL_SERVER_ERROR, String::new())
        );
    }
    for g in fetch(Method::GET, "/status/404", "gzip", CURL).await {
        assert_eq!(
            (g.status, g.header("content-encoding")),
            (StatusCode::NOT_FOUND, "gzip".to_string())
        );
    }
    // A long streamed answer (16 KiB frames, no length, no type: `*` takes it) decodes
    // whole; gzip's list does not take an answer without a type.
    for g in fetch(Method::GET, "/bytes/200000", "br", CURL).await {
        assert_eq!(g.header("content-encoding"), "br");
        assert_eq!(decoded(&g), vec![b'x'; 200000]);
    }
    for g in fetch(Method::GET, "/bytes/200000", "gzip", CURL).await {
        assert_eq!(
            (g.header("content-encoding"), g.body.len()),
            (String::new(), 200000)
        );
    }

    // Off again, hot.
    apply(4, &[("use-gzip", "false")]);
    for g in fetch(Method::GET, "/json", "gzip, br", CURL).await {
        assert_eq!(
            (g.header("content-encoding"), g.header("vary")),
            (String::new(), String::new())
        );
    }
}

/// ConfigMap keys are defaults that apply hot: `hsts*` (on by default, as ingress-nginx:
/// `max-age=31536000; includeSubDomains` on HTTPS responses only, RFC 6797 section 7.2) and
/// `proxy-body-size` (413 above it), which an annotation overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_configmap_sets_hsts_and_body_size_hot() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let https_hsts = || async {
        let (s, _) = tls_connect(proxy.https(), "cm.test", &[b"http/1.1"]).await;
        let g = request_over(s, false, req(proxy.https(), "cm.test", "/")).await;
        assert_eq!(g.pod(), "a");
        g.header("strict-transport-security")
    };
    let post = |n: usize| {
        let mut r = req(proxy.http(), "cm.test", "/upload");
        *r.method_mut() = Method::POST;
        *r.body_mut() = Full::new(Bytes::from(vec![b'y'; n]));
        let c = c.clone();
        async move { send(&c, r).await.unwrap().status }
    };

    // No ConfigMap: ingress-nginx's defaults.
    let plain = ingress_yaml("cm.test", a.addr, &[]);
    proxy.handle.apply(translated_with_configmap(1, &plain));
    assert_eq!(https_hsts().await, "max-age=31536000; includeSubDomains");
    let g = get(&c, proxy.http(), "cm.test", "/").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        g.header("strict-transport-security"),
        "",
        "HSTS over plain HTTP"
    );
    assert_eq!(post(2000).await, StatusCode::OK);

    // The ConfigMap changes both, without a restart.
    let cm = configmap_yaml(&[
        ("hsts-max-age", "600"),
        ("hsts-preload", "true"),
        ("proxy-body-size", "1k"),
    ]);
    proxy
        .handle
        .apply(translated_with_configmap(2, &format!("{plain}{cm}")));
    assert_eq!(
        https_hsts().await,
        "max-age=600; includeSubDomains; preload"
    );
    assert_eq!(post(2000).await, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(post(1000).await, StatusCode::OK);

    // An annotation wins over the ConfigMap.
    let annotated = ingress_yaml(
        "cm.test",
        a.addr,
        &[("nginx.ingress.kubernetes.io/proxy-body-size", "4k")],
    );
    proxy
        .handle
        .apply(translated_with_configmap(3, &format!("{annotated}{cm}")));
    assert_eq!(post(2000).await, StatusCode::OK);

    // `hsts: "false"` turns it off; a bad value keeps the default (and warns on the ConfigMap).
    let off = configmap_yaml(&[("hsts", "false")]);
    proxy
        .handle
        .apply(translated_with_configmap(4, &format!("{plain}{off}")));
    assert_eq!(https_hsts().await, "");
    let bad = configmap_yaml(&[("hsts-max-age", "soon")]);
    let snap = translated_with_configmap(5, &format!("{plain}{bad}"));
    assert!(
        snap.diagnostics
            .iter()
            .any(|d| d.reason == "InvalidConfigMapValue" && d.object.kind == ObjectKind::ConfigMap),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    assert_eq!(https_hsts().await, "max-age=31536000; includeSubDomains");
}

/// The trust keys of the controller ConfigMap replace the flags without a restart:
/// `use-forwarded-headers` with `proxy-real-ip-cidr` makes a trusted sender's
/// `X-Forwarded-For` the client; `use-proxy-protocol` (a listener property) makes connections
/// accepted after the change start with a PROXY header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_configmap_trust_keys_apply_to_new_connections() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let http = proxy.http();
    let site = ingress_yaml("guarded.test", a.addr, &[]);
    let forwarded = || {
        let mut r = req(http, "guarded.test", "/");
        r.headers_mut()
            .insert("x-forwarded-for", "198.51.100.9".parse().unwrap());
        r
    };
    let real_ip = |g: &Got| {
        g.json()["headers"]["x-real-ip"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Flags only (the defaults): the peer is the client.
    proxy.handle.apply(translated_with_configmap(1, &site));
    let g = send(&http1_client(), forwarded()).await.unwrap();
    assert_eq!(real_ip(&g), "127.0.0.1");

    let cm = configmap_yaml(&[
        ("use-forwarded-headers", "true"),
        ("proxy-real-ip-cidr", "127.0.0.0/8"),
    ]);
    proxy
        .handle
        .apply(translated_with_configmap(2, &format!("{site}{cm}")));
    let g = send(&http1_client(), forwarded()).await.unwrap();
    assert_eq!(real_ip(&g), "198.51.100.9");

    let cm = configmap_yaml(&[
        ("use-proxy-protocol", "true"),
        ("proxy-real-ip-cidr", "127.0.0.0/8"),
    ]);
    proxy
        .handle
        .apply(translated_with_configmap(3, &format!("{site}{cm}")));
    let g = via_proxy_protocol(
        http,
        b"PROXY TCP4 198.18.0.7 127.0.0.1 4711 80\r\n",
        false,
        req(http, "guarded.test", "/"),
    )
    .await;
    assert_eq!(real_ip(&g), "198.18.0.7");
    // Without the header the connection is closed, as with the flag.
    let answer = raw(
        http,
        b"GET / HTTP/1.1\r\nHost: guarded.test\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

/// A host served by one upstream at `addr` speaking `protocol`.
/// The upstream keys of the controller ConfigMap are route defaults, as ingress-nginx's:
/// `proxy-read-timeout` (a pod slower than it gets 504), `proxy-connect-timeout` (a pod that
/// never completes the handshake gets 504 after it, not after our 5 s default), and
/// `compute-full-forwarded-for` (a trusted sender's X-Forwarded-For is appended to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_configmap_upstream_timeouts_and_forwarded_for_apply() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    // to it hangs until the caller gives up.
    let stuck = tokio::net::TcpSocket::new_v4().unwrap();
    stuck.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = stuck.listen(0).unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(stuck_addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let site = format!(
        "{}---\n{}",
        ingress_yaml("slow.test", a.addr, &[]),
        ingress_yaml("stuck.test", stuck_addr, &[])
            .replace("name: guarded", "name: stuck")
            .replace("name: web", "name: stuck")
    );
    // Within `limit`, or None when the client gave up first.
    let within = |host: &'static str, path: &'static str, limit: u64| {
        let c = c.clone();
        let r = req(proxy.http(), host, path);
        async move {
            tokio::time::timeout(Duration::from_secs(limit), send(&c, r))
                .await
                .ok()
                .map(|g| g.unwrap().status)
        }
    };

    // Defaults (60 s read, 5 s connect): a 2 s pod answers; the stuck one outlasts 3 s.
    proxy.handle.apply(translated_with_configmap(1, &site));
    assert_eq!(
        within("slow.test", "/delay/2000", 10).await,
        Some(StatusCode::OK)
    );
    assert_eq!(within("stuck.test", "/", 3).await, None);

    let cm = configmap_yaml(&[
        ("proxy-read-timeout", "1"),
        ("proxy-connect-timeout", "1"),
        ("compute-full-forwarded-for", "true"),
        ("use-forwarded-headers", "true"),
        ("proxy-real-ip-cidr", "127.0.0.0/8"),
    ]);
    proxy
        .handle
        .apply(translated_with_configmap(2, &format!("{site}{cm}")));
    assert_eq!(
        within("slow.test", "/delay/2000", 10).await,
        Some(StatusCode::GATEWAY_TIMEOUT)
    );
    assert_eq!(
        within("slow.test", "/delay/100", 10).await,
        Some(StatusCode::OK)
    );
    assert_eq!(
        within("stuck.test", "/", 3).await,
        Some(StatusCode::GATEWAY_TIMEOUT)
    );
    let mut r = req(proxy.http(), "slow.test", "/");
    r.headers_mut()
        .insert("x-forwarded-for", "198.51.100.9".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    assert_eq!(
        g.json()["headers"]["x-forwarded-for"],
        "198.51.100.9, 127.0.0.1"
    );
    drop(fillers);
}

/// `ingress_yaml` with `spec.tls` for `host` and its Secret (a self-signed certificate).
fn tls_ingress_yaml(host: &str, backend: SocketAddr, annotations: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    let (cert, key) = self_signed_pem(&[host]).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ingress = ingress_yaml(host, backend, annotations).replace(
        "  rules:\n",
        &format!("  tls:\n  - {{hosts: [{host}], secretName: site-tls}}\n  rules:\n"),
    );
    format!(
        "{ingress}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: site-tls, namespace: default}}\n\
         type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&cert),
        b64(&key)
    )
}

/// `use-port-in-redirects` (annotation; the ConfigMap key of that name is its default,
/// ingress-nginx's defaults.Backend): the HTTP to HTTPS redirect names the HTTPS port even when
/// it is 443 (lua_ingress.lua `https://host:<https port>/uri`); off, 443 is left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_port_in_redirects_names_the_https_port_443_included() {
    let a = backend("a");
    let mut args = TestProxy::quiet_args();
    args.ports.redirect_https_port = Some(443);
    let proxy = TestProxy::start(args).await;
    let c = http1_client();
    let force = ("nginx.ingress.kubernetes.io/force-ssl-redirect", "true");
    let port = ("nginx.ingress.kubernetes.io/use-port-in-redirects", "true");
    let no_port = ("nginx.ingress.kubernetes.io/use-port-in-redirects", "false");
    let cm = configmap_yaml(&[("use-port-in-redirects", "true")]);
    let empty = configmap_yaml(&[("use-port-in-redirects", "false")]);
    type Annotations<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Annotations, &str, &str); 4] = [
        (&[force], &empty, "https://p.test/x"),
        (&[force, port], &empty, "https://p.test:443/x"),
        (&[force], &cm, "https://p.test:443/x"),
        (&[force, no_port], &cm, "https://p.test/x"),
    ];
    for (v, (annotations, configmap, want)) in cases.into_iter().enumerate() {
        let yaml = format!("{}{configmap}", ingress_yaml("p.test", a.addr, annotations));
        let snap = translated_with_configmap(v as u64 + 1, &yaml);
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        proxy.handle.apply(snap);
        let g = get(&c, proxy.http(), "p.test", "/x").await;
        assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT, "{annotations:?}");
        assert_eq!(g.header("location"), want, "{annotations:?} {configmap}");
    }
}

/// The controller ConfigMap's `ssl-redirect` is the default of the annotation: a host with TLS
/// answers plain HTTP with 308 to HTTPS (ingress-nginx's default), not with `"false"`; the
/// annotation on the Ingress wins over the ConfigMap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_configmap_ssl_redirect_is_the_default_an_annotation_overrides() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let site = tls_ingress_yaml("tls.test", a.addr, &[]);
    let status = || async { get(&c, proxy.http(), "tls.test", "/x").await };

    proxy.handle.apply(translated_with_configmap(1, &site));
    let g = status().await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        g.header("location"),
        format!("https://tls.test:{}/x", proxy.https().port())
    );

    let off = configmap_yaml(&[("ssl-redirect", "false")]);
    proxy
        .handle
        .apply(translated_with_configmap(2, &format!("{site}{off}")));
    let g = status().await;
    assert_eq!((g.status, g.pod()), (StatusCode::OK, "a".to_string()));

    let annotated = tls_ingress_yaml(
        "tls.test",
        a.addr,
        &[("nginx.ingress.kubernetes.io/ssl-redirect", "true")],
    );
    proxy
        .handle
        .apply(translated_with_configmap(3, &format!("{annotated}{off}")));
    assert_eq!(status().await.status, StatusCode::PERMANENT_REDIRECT);

    // lua_ingress.lua: the Location drops one trailing `/` of the request URI unless
    // `preserve-trailing-slash`; ConfigMap `http-redirect-code` sets the status.
    let https = proxy.https().port();
    let g = get(&c, proxy.http(), "tls.test", "/tp/").await;
    assert_eq!(g.header("location"), format!("https://tls.test:{https}/tp"));
    let keep = tls_ingress_yaml(
        "tls.test",
        a.addr,
        &[(
            "nginx.ingress.kubernetes.io/preserve-trailing-slash",
            "true",
        )],
    );
    let code = configmap_yaml(&[("http-redirect-code", "301")]);
    proxy
        .handle
        .apply(translated_with_configmap(4, &format!("{keep}{code}")));
    let g = get(&c, proxy.http(), "tls.test", "/tp/").await;
    assert_eq!(g.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        g.header("location"),
        format!("https://tls.test:{https}/tp/")
    );
    let bad = configmap_yaml(&[("http-redirect-code", "303")]);
    let snap = translated_with_configmap(5, &format!("{site}{bad}"));
    assert!(
        snap.diagnostics
            .iter()
            .any(|d| d.reason == "InvalidConfigMapValue"),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    assert_eq!(status().await.status, StatusCode::PERMANENT_REDIRECT);
}

/// `force-ssl-redirect` redirects plain HTTP to HTTPS on a host without TLS too (TLS ended by a
/// load balancer in front): ingress-nginx's e2e test "should redirect to https" expects 308 to
/// `https://forcesslredirect.bar.com` for `GET /` on such a host (lua_ingress.lua
/// `redirect_to_https`: `force_ssl_redirect` before any certificate check). The ConfigMap's
/// value is the default, an annotation `"false"` overrides it, and a path no rule has gets it
/// from the host's first Ingress (its `location /`). Found by a fresh-user trial: the
/// annotation did nothing on a host without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_ssl_redirect_without_tls() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let https = proxy.https().port();
    let force = [("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")];
    proxy.handle.apply(translated_with_configmap(
        1,
        &ingress_yaml("f.test", a.addr, &force),
    ));
    let g = get(&c, proxy.http(), "f.test", "/").await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(g.header("location"), format!("https://f.test:{https}"));
    let g = get(&c, proxy.http(), "f.test", "/p/x?q=1").await;
    assert_eq!(
        g.header("location"),
        format!("https://f.test:{https}/p/x?q=1")
    );

    // Only `/app` is routed: the root location redirects the rest as well.
    let app = ingress_yaml("f.test", a.addr, &force).replace("{path: /,", "{path: /app,");
    proxy.handle.apply(translated_with_configmap(2, &app));
    let g = get(&c, proxy.http(), "f.test", "/elsewhere").await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        g.header("location"),
        format!("https://f.test:{https}/elsewhere")
    );

    // The ConfigMap's `force-ssl-redirect` is every Ingress's default; an annotation wins.
    let on = configmap_yaml(&[("force-ssl-redirect", "true")]);
    let plain = ingress_yaml("f.test", a.addr, &[]);
    proxy
        .handle
        .apply(translated_with_configmap(3, &format!("{plain}{on}")));
    let g = get(&c, proxy.http(), "f.test", "/").await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);
    let off = ingress_yaml(
        "f.test",
        a.addr,
        &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "false")],
    );
    proxy
        .handle
        .apply(translated_with_configmap(4, &format!("{off}{on}")));
    let g = get(&c, proxy.http(), "f.test", "/").await;
    assert_eq!((g.status, g.pod()), (StatusCode::OK, "a".to_string()));
    // Without the annotation or the key, a host without TLS is served over plain HTTP.
    proxy.handle.apply(translated_with_configmap(5, &plain));
    let g = get(&c, proxy.http(), "f.test", "/").await;
    assert_eq!((g.status, g.pod()), (StatusCode::OK, "a".to_string()));
}

fn host_to(host: &str, service: &str, addr: SocketAddr, protocol: BackendProtocol) -> VirtualHost {
    let u = with(upstream_at(service, &[addr]), |u| u.protocol = protocol);
    vhost(host, vec![route_to(path("Prefix", "/"), u)], false)
}

/// RFC 9113 §8.3.1: a request forwarded over HTTP/2 (h2c, gRPC, gRPCS) names the virtual host
/// in `:authority`, as the client named it, with no `Host` beside it, while the connection
/// still goes to the chosen endpoint; an HTTP/1.1 upstream gets an origin-form target and
/// exactly one `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstreams_see_the_virtual_host_as_authority() {
    let a = backend("a");
    let (crt, key) = self_signed_pem(&["backend.internal"]).unwrap();
    let t = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), "tls-pod", &crt, &key).unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let h2c = with(up("h2c", &[&a]), |u| u.protocol = BackendProtocol::H2c);
    let grpc = with(up("grpc", &[&a]), |u| u.protocol = BackendProtocol::Grpc);
    let grpcs = with(up("grpcs", &[&t]), |u| u.protocol = BackendProtocol::Grpcs);
    let https = with(up("https", &[&t]), |u| u.protocol = BackendProtocol::Https);
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![vhost(
                "v.test",
                vec![
                    route_to(path("Prefix", "/h2c"), h2c),
                    route_to(path("Prefix", "/grpcs"), grpcs),
                    route_to(path("Prefix", "/grpc"), grpc),
                    route_to(path("Prefix", "/https"), https),
                    route_to(path("Prefix", "/"), up("h1", &[&a])),
                ],
                false,
            )],
            None,
        ),
    ));
    for (client, kind) in [(http1_client(), "HTTP/1.1"), (h2c_client(), "HTTP/2")] {
        for host in ["v.test", "v.test:8080"] {
            for (p, scheme) in [("/h2c", "http"), ("/grpc", "http"), ("/grpcs", "https")] {
                let g = get(&client, proxy.http(), host, p).await;
                assert_eq!(g.status, StatusCode::OK, "{kind} {host}{p}: {g:?}");
                let j = g.json();
                assert_eq!(j["version"], "HTTP/2.0");
                assert_eq!(
                    j["uri"],
                    format!("{scheme}://{host}{p}"),
                    "{kind} {host}{p}: :authority is the virtual host"
                );
                assert!(
                    j["headers"].get("host").is_none(),
                    "{kind} {host}{p}: no Host beside :authority: {}",
                    j["headers"]
                );
            }
            for p in ["/h1", "/https"] {
                let j = get(&client, proxy.http(), host, p).await.json();
                assert_eq!(j["version"], "HTTP/1.1");
                assert_eq!(j["uri"], p, "{kind} {host}{p}: origin-form");
                assert_eq!(j["headers"]["host"], host, "{kind} {host}{p}: one Host");
            }
        }
    }
}

/// Polls `done` every 50 ms for at most `wait`.
async fn eventually(wait: Duration, done: impl Fn() -> bool) -> bool {
    let until = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// Keep-alive toward endpoints: sequential HTTP/1.1 requests share one connection, concurrent
/// HTTP/2 requests are multiplexed over one (also while it is being opened), and both are
/// closed once unused for `--upstream-keepalive-timeout`. One worker: each worker pools its
/// own connections (as each nginx worker process does), and the concurrent requests come on
/// several client connections, which the kernel spreads over the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_when_idle() {
    let a = backend("a");
    let b = backend("b");
    let proxy = TestProxy::start(ProxyArgs {
        proxy_workers: 1,
        upstream_keepalive_timeout: Duration::from_secs(1),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![
                host_to("h1.test", "a", a.addr, BackendProtocol::Http),
                host_to("h2.test", "b", b.addr, BackendProtocol::H2c),
            ],
            None,
        ),
    ));
    let c = http1_client();
    for _ in 0..5 {
        assert_eq!(
            get(&c, proxy.http(), "h1.test", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        a.connections(),
        1,
        "sequential requests share one connection"
    );
    let gets =
        futures::future::join_all((0..8).map(|_| get(&c, proxy.http(), "h2.test", "/delay/200")));
    for g in gets.await {
        assert_eq!(g.status, StatusCode::OK);
    }
    assert_eq!(
        b.connections(),
        1,
        "concurrent HTTP/2 requests share one connection"
    );
    assert_eq!(a.open_connections() + b.open_connections(), 2);
    assert!(
        eventually(Duration::from_secs(10), || a.open_connections() == 0
            && b.open_connections() == 0)
        .await,
        "idle upstream connections closed after the keep-alive timeout (open: {} and {})",
        a.open_connections(),
        b.open_connections()
    );
    for host in ["h1.test", "h2.test"] {
        assert_eq!(
            get(&c, proxy.http(), host, "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!((a.connections(), b.connections()), (2, 2));
}

/// ConfigMap `upstream-keepalive-requests` (nginx's upstream `keepalive_requests`): a
/// connection to a pod carries that many requests, then it is closed and the next request opens
/// another, HTTP/1.1 and HTTP/2 alike; `upstream-keepalive-time: 0` (nginx `keepalive_time`)
/// reuses none. One worker: each worker pools its own connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_carry_upstream_keepalive_requests_then_close() {
    let a = backend("a");
    let b = backend("b");
    let proxy = TestProxy::start(ProxyArgs {
        proxy_workers: 1,
        ..TestProxy::quiet_args()
    })
    .await;
    let l7 = |requests: Option<u64>, time: Option<Duration>| {
        let mut l7 = l7_with(
            vec![
                host_to("h1.test", "a", a.addr, BackendProtocol::Http),
                host_to("h2.test", "b", b.addr, BackendProtocol::H2c),
            ],
            None,
        );
        l7.settings.upstream_keepalive_requests = requests;
        l7.settings.upstream_keepalive_time = time;
        l7
    };
    proxy.handle.apply(snapshot(1, l7(Some(2), None)));
    let c = http1_client();
    for host in ["h1.test", "h2.test"] {
        for _ in 0..5 {
            assert_eq!(
                get(&c, proxy.http(), host, "/").await.status,
                StatusCode::OK
            );
        }
    }
    assert_eq!(
        (a.connections(), b.connections()),
        (3, 3),
        "five requests, two per connection"
    );
    assert!(
        eventually(Duration::from_secs(10), || a.open_connections() <= 1
            && b.open_connections() <= 1)
        .await,
        "connections past their requests are closed (open: {} and {})",
        a.open_connections(),
        b.open_connections()
    );

    proxy
        .handle
        .apply(snapshot(2, l7(None, Some(Duration::ZERO))));
    for _ in 0..3 {
        assert_eq!(
            get(&c, proxy.http(), "h1.test", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        a.connections(),
        6,
        "upstream-keepalive-time 0: a connection each"
    );
}

/// ConfigMap `upstream-keepalive-connections` and `upstream-keepalive-timeout` (nginx's
/// upstream `keepalive` and `keepalive_timeout`), changed on a running proxy: with 0
/// connections every request opens its own connection and tells the pod `Connection: close`
/// (ingress-nginx's `$connection_upgrade` map); with 1, the worker keeps one idle connection
/// over all pods, so alternating between two pods opens a new connection each time; a 1 s
/// timeout closes an idle pooled connection that the flag's 60 s had kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_keepalive_connections_and_timeout_come_from_the_configmap() {
    let a = backend("a");
    let b = backend("b");
    let proxy = TestProxy::start(ProxyArgs {
        proxy_workers: 1,
        ..TestProxy::quiet_args()
    })
    .await;
    let l7 = |connections: Option<u64>, timeout: Option<Duration>| {
        let mut l7 = l7_with(
            vec![
                host_to("a.test", "a", a.addr, BackendProtocol::Http),
                host_to("b.test", "b", b.addr, BackendProtocol::Http),
            ],
            None,
        );
        l7.settings.upstream_keepalive_connections = connections;
        l7.settings.upstream_keepalive_timeout = timeout;
        l7
    };
    let c = http1_client();
    proxy.handle.apply(snapshot(1, l7(Some(0), None)));
    for _ in 0..3 {
        let g = get(&c, proxy.http(), "a.test", "/").await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.json()["headers"]["connection"], "close", "{:?}", g.body);
    }
    assert_eq!(a.connections(), 3, "0 connections: a connection each");

    proxy.handle.apply(snapshot(2, l7(Some(1), None)));
    for host in ["a.test", "b.test", "a.test", "b.test"] {
        let g = get(&c, proxy.http(), host, "/").await;
        assert_eq!(g.status, StatusCode::OK);
        assert!(
            g.json()["headers"].get("connection").is_none(),
            "{:?}",
            g.body
        );
    }
    assert_eq!(
        (a.connections(), b.connections()),
        (3 + 2, 2),
        "one idle connection per worker: each pod's is closed when the other's is pooled"
    );
    assert!(
        eventually(Duration::from_secs(5), || a.open_connections()
            + b.open_connections()
            == 1)
        .await,
        "one idle connection kept (open: {} and {})",
        a.open_connections(),
        b.open_connections()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.open_connections(), 1, "the flag's 60 s keeps it");

    proxy
        .handle
        .apply(snapshot(3, l7(None, Some(Duration::from_secs(1)))));
    assert!(
        eventually(Duration::from_secs(5), || b.open_connections() == 0).await,
        "upstream-keepalive-timeout 1s closes the idle connection (open: {})",
        b.open_connections()
    );
    for _ in 0..3 {
        assert_eq!(
            get(&c, proxy.http(), "a.test", "/").await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        a.connections(),
        6,
        "sequential requests share one connection again"
    );
}

/// A pooled connection the endpoint closed (the pod restarted on the same address) is not
/// used again: a request that must not be retried (POST, no retries) still succeeds, on a
/// new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_endpoint_closed_is_not_reused() {
    let a = backend("a");
    let addr = a.addr;
    let proxy = TestProxy::start(ProxyArgs {
        proxy_retries: 0,
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(snapshot(
        1,
        l7_with(
            vec![
                host_to("h1.test", "a1", addr, BackendProtocol::Http),
                host_to("h2.test", "a2", addr, BackendProtocol::H2c),
            ],
            None,
        ),
    ));
    let c = http1_client();
    for host in ["h1.test", "h2.test"] {
        assert_eq!(get(&c, proxy.http(), host, "/").await.pod(), "a");
    }
    assert_eq!(a.connections(), 2);
    drop(a);
    let restarted = HttpBackend::start(addr, "restarted").unwrap();
    for host in ["h1.test", "h2.test"] {
        let mut r = req(proxy.http(), host, "/");
        *r.method_mut() = Method::POST;
        *r.body_mut() = Full::new(Bytes::from_static(b"once"));
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.status, StatusCode::OK, "{host}: {g:?}");
        assert_eq!(g.pod(), "restarted");
        assert_eq!(g.json()["body"], "once");
    }
    assert_eq!(restarted.connections(), 2);
}

/// nginx drops request fields whose names contain `_` (`underscores_in_headers off`, the
/// ingress-nginx default `enable-underscores-in-headers: "false"`): a WSGI/CGI application reads
/// `X_Forwarded_For` as `X-Forwarded-For`, so passing it on would undo the replaced provenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_with_underscores_are_dropped_unless_enabled() {
    let a = backend("a");
    for enabled in [false, true] {
        let proxy = TestProxy::start(ProxyArgs {
            enable_underscores_in_headers: enabled,
            ..TestProxy::quiet_args()
        })
        .await;
        proxy.handle.apply(one_route("u.test", &a));
        let mut r = req(proxy.http(), "u.test", "/");
        r.headers_mut()
            .insert("x_forwarded_for", "10.1.2.3".parse().unwrap());
        r.headers_mut()
            .insert("x_real_ip", "10.1.2.3".parse().unwrap());
        r.headers_mut().insert("x-kept", "yes".parse().unwrap());
        let g = send(&http1_client(), r).await.unwrap();
        let hd = &g.json()["headers"];
        assert_eq!(hd["x-kept"], "yes", "{hd}");
        assert_eq!(hd["x-forwarded-for"], "127.0.0.1", "{hd}");
        if enabled {
            assert_eq!(hd["x_forwarded_for"], "10.1.2.3", "{hd}");
        } else {
            assert!(hd.get("x_forwarded_for").is_none(), "{hd}");
            assert!(hd.get("x_real_ip").is_none(), "{hd}");
        }
    }
}

/// nginx's `ignore_invalid_headers on` (ingress-nginx's default `ignore-invalid-headers:
/// "true"`): request fields whose names hold other than letters, digits and `-` never reach the
/// pod; the ConfigMap's `"false"` passes every field, underscored ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_nginx_takes_as_invalid_are_dropped_unless_ignore_invalid_headers_is_off() {
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let plain = ingress_yaml("inv.test", a.addr, &[]);
    for (v, ignore) in [(1u64, None), (2, Some("false"))] {
        let yaml = match ignore {
            None => plain.clone(),
            Some(x) => format!(
                "{plain}{}",
                configmap_yaml(&[("ignore-invalid-headers", x)])
            ),
        };
        proxy.handle.apply(translated_with_configmap(v, &yaml));
        let mut r = req(proxy.http(), "inv.test", "/");
        for (name, value) in [
            ("x.foo", "1"),
            ("x!bar", "2"),
            ("x_baz", "3"),
            ("x-kept", "4"),
        ] {
            r.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.status, StatusCode::OK);
        let hd = &g.json()["headers"];
        assert_eq!(hd["x-kept"], "4", "{hd}");
        for name in ["x.foo", "x!bar", "x_baz"] {
            assert_eq!(hd.get(name).is_some(), ignore.is_some(), "{name}: {hd}");
        }
    }
}

/// nginx's `keepalive_timeout` is how long an idle keep-alive connection waits for its next
/// request, whatever `client_header_timeout` says (that one bounds reading a request head).
/// With a header timeout shorter than the keep-alive timeout, an idle HTTP/1.1 connection stays
/// open past the header timeout and is closed after the keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connection_lives_for_the_keepalive_timeout_not_the_header_timeout() {
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        client_header_timeout: Duration::from_millis(300),
        keepalive_timeout: Duration::from_millis(1500),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("k.test", &a));
    let mut c = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: k.test\r\n\r\n")
        .await
        .unwrap();
    let out = read_h1_response(&mut c).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let idle = std::time::Instant::now();
    assert!(
        !closed_within(&mut c, Duration::from_millis(900)).await,
        "closed after {:?} idle, before the keep-alive timeout",
        idle.elapsed()
    );
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "still open long after the keep-alive timeout"
    );
}

/// A request head trickled in after the first request of a kept-alive connection (a slowloris
/// that first behaves) is cut off as the first one is: the connection closes without
/// forwarding it, as nginx closes a keep-alive connection whose next request does not
/// arrive in time. The proxy arms no header timer of hyper's per request: the connection's
/// supervisor counts the time without a request in progress, trickled bytes or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_after_the_first_request_is_cut_off() {
    let a = backend("a");
    let proxy = TestProxy::start(ProxyArgs {
        client_header_timeout: Duration::from_millis(300),
        keepalive_timeout: Duration::from_millis(500),
        ..TestProxy::quiet_args()
    })
    .await;
    proxy.handle.apply(one_route("t.test", &a));
    let mut c = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .await
        .unwrap();
    let out = read_h1_response(&mut c).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    c.write_all(b"GET /second HTTP/1.1\r\nHost: t.test\r\n")
        .await
        .unwrap();
    let mut drip = tokio::time::interval(Duration::from_millis(100));
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                r = c.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return String::new(),
                    Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                },
                _ = drip.tick() => { let _ = c.write_all(b"X-b: 2\r\n").await; }
            }
        }
    })
    .await;
    assert_eq!(
        closed.as_deref(),
        Ok(""),
        "trickling client still connected after 10 s, or answered"
    );
    assert_eq!(a.requests(), 1, "the trickled request was forwarded");
}

/// Data-carrying TCP segments received on `s` so far (`TCP_INFO`'s `tcpi_data_segs_in`).
fn data_segments_in(s: &tokio::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, a plain C struct for which
    // all zeroes is a valid value.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_data_segs_in
    }
}

/// A small proxied response (the backend sends its head and 13-byte body in one write) comes
/// to the client in one TCP segment, over HTTP and over HTTPS, on every request of a kept-alive
/// connection: head and body leave the proxy in one write, as nginx sends a response it read
/// whole. A head flushed on its own before the body costs the client a segment, a TLS record
/// and a wake-up more per response (issue 13: HTTPS keep-alive at a third of nginx's req/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_response_arrives_in_one_segment_over_http_and_https() {
    const HOST: &str = "segments.test";
    let a = backend("a");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let mut l7 = l7_with(
        vec![vhost(
            HOST,
            vec![route_to(path("Prefix", "/"), up("a", &[&a]))],
            false,
        )],
        None,
    );
    let pem = self_signed_pem(&[HOST]).unwrap();
    l7.certificates
        .insert(HOST.into(), tls_cert("segments", &pem));
    proxy.handle.apply(snapshot(1, l7));
    let request = format!("GET /fixed HTTP/1.1\r\nHost: {HOST}\r\n\r\n");

    let mut plain = tokio::net::TcpStream::connect(proxy.http()).await.unwrap();
    let (mut tls, _) = tls_connect(proxy.https(), HOST, &[b"http/1.1"]).await;
    // Over TLS the first response can share the wire with the handshake's session tickets:
    // counted from the second request on, as the plain connection is.
    for n in 0..4 {
        let before = data_segments_in(&plain);
        plain.write_all(request.as_bytes()).await.unwrap();
        let resp = read_h1_response(&mut plain).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "HTTP request {n}: {resp}");
        if n > 0 {
            assert_eq!(
                data_segments_in(&plain) - before,
                1,
                "HTTP request {n}: the response came in more than one segment"
            );
        }

        let before = data_segments_in(tls.get_ref().0);
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let resp = read_h1_response(&mut tls).await;
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "HTTPS request {n}: {resp}"
        );
        if n > 0 {
            assert_eq!(
                data_segments_in(tls.get_ref().0) - before,
                1,
                "HTTPS request {n}: the response came in more than one segment"
            );
        }
    }
}
