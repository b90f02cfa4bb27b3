//! ingress-nginx's external authentication (`auth-url` and its family, `global-auth-url`;
//! nginx `auth_request`) end to end on loopback: manifests translated as the control plane
//! does, the proxy in-process, a small auth service (hyper on 127.0.0.1) that records what it
//! is sent, and the echo pod. Expected values from ingress-nginx's annotations page, its
//! template (the `/_external-auth-` location, `buildAuthSignURL`), its e2e tests
//! (test/e2e/annotations/auth.go: the `rd=` form, cookies kept or not by status) and the
//! oauth2-proxy and Authelia integration docs.

mod l7common;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use l7common::*;
use xdp_ingress::store::Key;

/// One request the auth service received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body_len: usize,
}

/// The auth service: answers by path and `Authorization`, as oauth2-proxy and Authelia do:
/// - `/slow`: 3 s, then 200;
/// - `/status/<n>`: that status;
/// - `Bearer good`: 202 with `X-Auth-Request-User`, `Remote-User` and a refreshed cookie;
/// - `Bearer forbidden`: 403; any `Basic` credentials: 200;
/// - anything else: 401 with `WWW-Authenticate: Bearer realm="test"` and a CSRF cookie.
struct AuthService {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl AuthService {
    async fn start() -> AuthService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (s, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                    _ = &mut rx => return,
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(Arc::clone(&log), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        AuthService {
            addr,
            seen,
            _stop: tx,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the auth service was asked")
    }
}

async fn answer(
    log: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers,
        body_len,
    });
    let mut r = Response::builder();
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        return Ok(r.status(200).body(Full::default()).unwrap());
    }
    if let Some(s) = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
    {
        return Ok(r.status(s).body(Full::default()).unwrap());
    }
    r = match auth.as_str() {
        "Bearer good" => r
            .status(202)
            .header("x-auth-request-user", "alice")
            .header("remote-user", "alice")
            .header("remote-groups", "admins,dev")
            .header("set-cookie", "session=refreshed; Path=/"),
        "Bearer forbidden" => r.status(403),
        a if a.starts_with("Basic ") => r.status(200),
        _ => r
            .status(401)
            .header("www-authenticate", "Bearer realm=\"test\"")
            .header("set-cookie", "csrf=1; Path=/"),
    };
    Ok(r.body(Full::default()).unwrap())
}

/// A Service `web` on `pod`, and an Ingress `name` for `host` `/` (and `paths`) with
/// `annotations` (without prefix), then `rest`.
fn ingress(name: &str, host: &str, paths: &[&str], annotations: &[(&str, &str)]) -> String {
    let ann = nginx_annotations_yaml(annotations);
    let paths: String = std::iter::once("/")
        .chain(paths.iter().copied())
        .map(|p| {
            format!(
                "      - {{path: {p}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n{ann}spec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: {host}\n    http:\n      paths:\n{paths}"
    )
}

fn bearer(mut r: Request<Full<Bytes>>, token: &str) -> Request<Full<Bytes>> {
    r.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// Allow, deny (401 with the service's challenge, 403), the auth request as ingress-nginx
/// sends it, a POST body delivered on allow, `auth-response-headers` replacing the client's,
/// and the auth service's cookie on a 2xx/3xx answer only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_deny_and_what_each_side_sees() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &ingress(
            "app",
            "a.test",
            &[],
            &[
                ("auth-url", url.as_str()),
                (
                    "auth-response-headers",
                    "X-Auth-Request-User, X-Auth-Request-Email",
                ),
            ],
        );
    let snap = translate_manifests(1, &yaml, |_| {});
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();

    // No credentials: 401 with the auth service's challenge; its cookie only with `always`.
    let g = get(&c, proxy.http(), "a.test", "/?a=b&c=d").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("www-authenticate"), "Bearer realm=\"test\"");
    assert_eq!(g.header("set-cookie"), "");
    let forbidden = bearer(req(proxy.http(), "a.test", "/"), "forbidden");
    assert_eq!(
        send(&c, forbidden).await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(pod.requests(), 0, "the pod saw a refused request");

    // Allowed: a POST with its body, and headers the client tried to set itself.
    let mut r = bearer(req(proxy.http(), "a.test", "/p/../q?x=1"), "good");
    *r.method_mut() = http::Method::POST;
    *r.body_mut() = Full::new(Bytes::from_static(b"hello body"));
    r.headers_mut()
        .insert("x-auth-request-user", "mallory".parse().unwrap());
    r.headers_mut()
        .insert("x-auth-request-email", "mallory@evil".parse().unwrap());
    r.headers_mut()
        .insert("cookie", "_oauth2_proxy=abc".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    assert_eq!(g.status, StatusCode::OK);
    let j = g.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["body"], "hello body");
    assert_eq!(j["headers"]["x-auth-request-user"], "alice");
    // Not in the auth answer: removed (`proxy_set_header` with an empty value).
    assert!(j["headers"]["x-auth-request-email"].is_null(), "{j}");
    // The pod's 200 gets the auth service's cookie (nginx `add_header`, 200 is listed).
    assert_eq!(g.header("set-cookie"), "session=refreshed; Path=/");

    // The auth request: no body, the client's headers, and ingress-nginx's own.
    let a = auth.last();
    assert_eq!(a.method, "GET", "an nginx subrequest is a GET");
    assert_eq!(a.path, "/check");
    assert_eq!(a.body_len, 0);
    let h = &a.headers;
    assert_eq!(header(h, "content-length"), None);
    assert_eq!(header(h, "host").as_deref(), Some("127.0.0.1"));
    assert_eq!(header(h, "authorization").as_deref(), Some("Bearer good"));
    assert_eq!(header(h, "cookie").as_deref(), Some("_oauth2_proxy=abc"));
    assert_eq!(
        header(h, "x-original-url").as_deref(),
        Some("http://a.test/p/../q?x=1")
    );
    assert_eq!(header(h, "x-original-method").as_deref(), Some("POST"));
    assert_eq!(
        header(h, "x-auth-request-redirect").as_deref(),
        Some("/p/../q?x=1")
    );
    assert_eq!(
        header(h, "x-sent-from").as_deref(),
        Some("nginx-ingress-controller")
    );
    assert_eq!(header(h, "x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(header(h, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(header(h, "x-forwarded-proto"), None);
    // Without auth-method: no X-Original-URI.
    assert_eq!(header(h, "x-original-uri"), None);
    // One request id for the auth service and the pod.
    assert_eq!(
        header(h, "x-request-id").as_deref(),
        j["headers"]["x-request-id"].as_str()
    );

    // Refusals counted by route and reason.
    let m = proxy.handle.metrics_addr().unwrap();
    let text = String::from_utf8_lossy(&get(&c, m, "admin", "/metrics").await.body).to_string();
    for reason in ["external_unauthorized", "external_forbidden"] {
        let series = format!(
            "xdp_ingress_auth_refused_requests_total{{ingress=\"default/app\",host=\"a.test\",path=\"/\",reason=\"{reason}\"}} 1"
        );
        assert!(text.contains(&series), "{series} not in\n{text}");
    }

    // ingress-nginx e2e "user does not retain cookie if upstream returns error status code".
    let g = send(
        &c,
        bearer(req(proxy.http(), "a.test", "/status/503"), "good"),
    )
    .await
    .unwrap();
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(g.header("set-cookie"), "");
}

/// `auth-always-set-cookie`: the cookie on every answer (e2e "user with annotated ingress
/// retains cookie if upstream returns error status code"), the 401 included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_set_cookie() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &ingress(
            "app",
            "a.test",
            &[],
            &[
                ("auth-url", url.as_str()),
                ("auth-always-set-cookie", "true"),
            ],
        );
    proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
    let c = http1_client();
    let g = send(
        &c,
        bearer(req(proxy.http(), "a.test", "/status/503"), "good"),
    )
    .await
    .unwrap();
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(g.header("set-cookie"), "session=refreshed; Path=/");
    let g = get(&c, proxy.http(), "a.test", "/").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("set-cookie"), "csrf=1; Path=/");
}

/// `auth-signin`: a 401 becomes 302 to the sign-in URL with `rd=` the original URL as
/// ingress-nginx builds it (`$pass_access_scheme://$http_host$escaped_request_uri`; e2e
/// expects `rd=http://<host>` + `url.QueryEscape("/?a=b&c=d")`), with the auth service's
/// cookie; `auth-signin-redirect-param` renames `rd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_redirect_with_rd() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &ingress(
            "app",
            "a.test",
            &[],
            &[
                ("auth-url", url.as_str()),
                ("auth-signin", "http://$host/auth/start"),
            ],
        )
        + &ingress(
            "other",
            "b.test",
            &[],
            &[
                ("auth-url", url.as_str()),
                ("auth-signin", "https://login.example.com/start?client=x"),
                ("auth-signin-redirect-param", "orig"),
            ],
        )
        + &ingress(
            "relative",
            "c.test",
            &[],
            &[("auth-url", url.as_str()), ("auth-signin", "/oauth2/start")],
        );
    proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
    let c = http1_client();
    let g = get(&c, proxy.http(), "a.test", "/?a=b&c=d").await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(
        g.header("location"),
        "http://a.test/auth/start?rd=http://a.test%2F%3Fa%3Db%26c%3Dd"
    );
    assert_eq!(g.header("set-cookie"), "csrf=1; Path=/");
    let g = get(&c, proxy.http(), "b.test", "/x").await;
    assert_eq!(
        g.header("location"),
        "https://login.example.com/start?client=x&orig=http://b.test%2Fx"
    );
    // A path (oauth2-proxy's usual `/oauth2/start`), accepted as ingress-nginx accepts it:
    // nginx's `absolute_redirect` gives it the scheme and host, no port.
    let g = get(&c, proxy.http(), "c.test:8080", "/x").await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(
        g.header("location"),
        "http://c.test/oauth2/start?rd=http://c.test:8080%2Fx"
    );
    // The same over HTTP/2 (h2c).
    let g = send(&h2c_client(), req(proxy.http(), "a.test", "/?a=b&c=d"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(
        g.header("location"),
        "http://a.test/auth/start?rd=http://a.test%2F%3Fa%3Db%26c%3Dd"
    );
    // Signed in: through.
    let g = send(&c, bearer(req(proxy.http(), "a.test", "/"), "good"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(pod.requests(), 1);
}

/// A sign-in path under `relative-redirects` (ingress-nginx e2e relativeredirects.go; nginx
/// `absolute_redirect off`): the ConfigMap key (nginx's http block, inherited by the sign-in
/// location) keeps the `Location` as written; the annotation (the path's own location) does
/// not reach the sign-in location, and `use-port-in-redirects` names no port there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_path_under_relative_redirects() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let signin = [("auth-url", url.as_str()), ("auth-signin", "/oauth2/start")];
    let annotated = [
        signin[0],
        signin[1],
        ("relative-redirects", "true"),
        ("use-port-in-redirects", "true"),
    ];
    let ingresses = service_yaml("web", pod.addr)
        + &ingress("plain", "a.test", &[], &signin)
        + &ingress("annotated", "b.test", &[], &annotated);
    let c = http1_client();
    proxy
        .handle
        .apply(translate_manifests(1, &ingresses, |_| {}));
    let g = get(&c, proxy.http(), "b.test:8080", "/x").await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(
        g.header("location"),
        "http://b.test/oauth2/start?rd=http://b.test:8080%2Fx"
    );
    let yaml = ingresses + &configmap_yaml(&[("relative-redirects", "true")]);
    let snap = translate_manifests(2, &yaml, |c| {
        c.configmap = Some(Key::new("ingress-nginx", "cm"));
    });
    proxy.handle.apply(snap);
    for host in ["a.test", "b.test"] {
        let g = get(&c, proxy.http(), &format!("{host}:8080"), "/x").await;
        assert_eq!(g.status, StatusCode::FOUND, "{host}");
        assert_eq!(
            g.header("location"),
            format!("/oauth2/start?rd=http://{host}:8080%2Fx"),
            "{host}"
        );
    }
    assert_eq!(pod.requests(), 0);
}

/// The auth service down, answering another status, or too slow: 500, never the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_500() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let closed = testbed::ports::dead_addr();
    // An HTTPS auth service whose certificate no public root signs: verified, so refused.
    let (crt, key) = xdp_ingress::proxy::tls::self_signed_pem(&["localhost"]).unwrap();
    let tls = testbed::http_backend::HttpBackend::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        "tls-auth",
        &crt,
        &key,
    )
    .unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let base = format!("http://127.0.0.1:{}", auth.addr.port());
    let down = format!("http://127.0.0.1:{}/check", closed.port());
    let mut yaml = service_yaml("web", pod.addr);
    let cases = [
        ("down.test", down.clone()),
        ("s404.test", format!("{base}/status/404")),
        ("s302.test", format!("{base}/status/302")),
        ("s503.test", format!("{base}/status/503")),
        (
            "nodns.test",
            "http://no-such-host.invalid/check".to_string(),
        ),
        ("slow.test", format!("{base}/slow")),
        (
            "untrusted.test",
            format!("https://localhost:{}/status/200", tls.addr.port()),
        ),
    ];
    for (i, (host, url)) in cases.iter().enumerate() {
        yaml += &ingress(
            &format!("i{i}"),
            host,
            &[],
            &[("auth-url", url.as_str()), ("proxy-read-timeout", "1")],
        );
    }
    proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
    let c = http1_client();
    for (host, _) in &cases {
        let started = Instant::now();
        let g = send(&c, bearer(req(proxy.http(), host, "/"), "good"))
            .await
            .unwrap();
        assert_eq!(g.status, StatusCode::INTERNAL_SERVER_ERROR, "{host}");
        assert!(
            started.elapsed() < Duration::from_millis(2900),
            "{host}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(pod.requests(), 0);
    assert_eq!(
        tls.requests(),
        0,
        "no request over an unverified connection"
    );
}

/// `auth-cache-key` + `auth-cache-duration`: a second request with the same key is answered
/// from the cache (the auth service is not asked), another key is asked, and the cache is per
/// location (e2e "should deny login for different location on same server").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hit() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &ingress(
            "app",
            "a.test",
            &[],
            &[
                ("auth-url", url.as_str()),
                ("auth-cache-key", "$http_authorization"),
                ("auth-cache-duration", "200 202 401 5m"),
            ],
        );
    proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
    let c = http1_client();
    // 401 with Set-Cookie: nginx never caches an answer with Set-Cookie.
    for _ in 0..2 {
        assert_eq!(get(&c, proxy.http(), "a.test", "/").await.status, 401);
    }
    assert_eq!(auth.seen().len(), 2);
    // 202 with Set-Cookie is not cached either; the forbidden 403 is not a listed status.
    for _ in 0..2 {
        let g = send(&c, bearer(req(proxy.http(), "a.test", "/"), "forbidden"))
            .await
            .unwrap();
        assert_eq!(g.status, 403);
    }
    assert_eq!(auth.seen().len(), 4);
    drop(auth);
    let auth = AuthService::start().await;
    let url = format!("http://127.0.0.1:{}/status/200", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &ingress(
            "app",
            "a.test",
            &["/bar"],
            &[
                ("auth-url", url.as_str()),
                ("auth-cache-key", "$http_authorization"),
            ],
        );
    proxy.handle.apply(translate_manifests(2, &yaml, |_| {}));
    for _ in 0..3 {
        let g = send(&c, bearer(req(proxy.http(), "a.test", "/"), "t1"))
            .await
            .unwrap();
        assert_eq!(g.status, 200);
    }
    assert_eq!(auth.seen().len(), 1, "answered from the cache");
    send(&c, bearer(req(proxy.http(), "a.test", "/"), "t2"))
        .await
        .unwrap();
    assert_eq!(auth.seen().len(), 2, "another key is asked");
    send(&c, bearer(req(proxy.http(), "a.test", "/bar"), "t1"))
        .await
        .unwrap();
    assert_eq!(auth.seen().len(), 3, "another location is asked");
}

/// oauth2-proxy's documented annotations (ingress-nginx docs/examples/auth/oauth-external-auth,
/// `https://$host/oauth2/auth` and `https://$host/oauth2/start?rd=$escaped_request_uri`), with
/// `http://$host:<port>` for the auth URL: this bed has no certificate a public root signs.
/// `$host` is the request's host (`localhost`, resolved by the system).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_proxy_annotation_set() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://$host:{}/oauth2/auth", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &ingress(
            "app",
            "localhost",
            &[],
            &[
                ("auth-url", url.as_str()),
                (
                    "auth-signin",
                    "https://$host/oauth2/start?rd=$escaped_request_uri",
                ),
            ],
        );
    let snap = translate_manifests(1, &yaml, |_| {});
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();
    let g = get(&c, proxy.http(), "localhost", "/dash?x=1").await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(
        g.header("location"),
        "https://localhost/oauth2/start?rd=%2Fdash%3Fx%3D1"
    );
    assert_eq!(
        header(&auth.last().headers, "host").as_deref(),
        Some("localhost")
    );
    let g = send(&c, bearer(req(proxy.http(), "localhost", "/dash"), "good"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(auth.last().path, "/oauth2/auth");
}

/// Authelia's documented annotations: a `svc.cluster.local` auth URL (resolved to the Service's
/// endpoints from the snapshot), `auth-method: GET`, a sign-in URL with its own query, and the
/// `Remote-*` headers copied to the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authelia_annotation_set() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = service_yaml("web", pod.addr)
        + &service_yaml("authelia", auth.addr)
        + &ingress(
            "app",
            "app.test",
            &[],
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
        );
    let snap = translate_manifests(1, &yaml, |_| {});
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();
    let g = get(&c, proxy.http(), "app.test", "/secret").await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert_eq!(
        g.header("location"),
        "https://auth.example.com?rm=GET&rd=http://app.test%2Fsecret"
    );
    let a = auth.last();
    assert_eq!(a.path, "/api/authz/auth-request");
    let h = &a.headers;
    assert_eq!(
        header(h, "host").as_deref(),
        Some("authelia.default.svc.cluster.local")
    );
    assert_eq!(
        header(h, "x-original-url").as_deref(),
        Some("http://app.test/secret")
    );
    assert_eq!(header(h, "x-original-method").as_deref(), Some("GET"));
    // With auth-method: X-Original-URI and X-Scheme too.
    assert_eq!(header(h, "x-original-uri").as_deref(), Some("/secret"));
    assert_eq!(header(h, "x-scheme").as_deref(), Some("http"));
    let g = send(&c, bearer(req(proxy.http(), "app.test", "/secret"), "good"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    let j = g.json();
    assert_eq!(j["headers"]["remote-user"], "alice");
    assert_eq!(j["headers"]["remote-groups"], "admins,dev");
    assert!(j["headers"]["remote-email"].is_null());
}

/// `global-auth-url` in the controller ConfigMap covers every Ingress without its own
/// `auth-url`; `enable-global-auth: "false"` opts one out; `no-auth-locations` (default
/// `/.well-known/acme-challenge`) leaves those paths open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_auth_opt_out_and_no_auth_locations() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + &configmap_yaml(&[
            ("global-auth-url", url.as_str()),
            ("global-auth-response-headers", "Remote-User"),
        ])
        + &ingress("a", "a.test", &["/.well-known/acme-challenge"], &[])
        + &ingress("b", "b.test", &[], &[("enable-global-auth", "false")]);
    let snap = translate_manifests(1, &yaml, |c| {
        c.configmap = Some(Key::new("ingress-nginx", "cm"));
    });
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();
    assert_eq!(get(&c, proxy.http(), "a.test", "/").await.status, 401);
    let g = send(&c, bearer(req(proxy.http(), "a.test", "/"), "good"))
        .await
        .unwrap();
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["headers"]["remote-user"], "alice");
    let asked = auth.seen().len();
    let g = get(
        &c,
        proxy.http(),
        "a.test",
        "/.well-known/acme-challenge/token",
    )
    .await;
    assert_eq!(g.status, 200);
    assert_eq!(get(&c, proxy.http(), "b.test", "/").await.status, 200);
    assert_eq!(auth.seen().len(), asked, "no auth request for those");
}

/// `$request_uri` and friends in the auth URL, and an unknown variable: the location is
/// denied (503) with a Warning, never served open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_in_the_url_and_unknown_ones() {
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!(
        "http://127.0.0.1:{}/check?uri=$escaped_request_uri&m=$request_method&t=$arg_token",
        auth.addr.port()
    );
    let bad = format!(
        "http://127.0.0.1:{}/check?u=$upstream_addr",
        auth.addr.port()
    );
    let yaml = service_yaml("web", pod.addr)
        + &ingress("a", "a.test", &[], &[("auth-url", url.as_str())])
        + &ingress("b", "b.test", &[], &[("auth-url", bad.as_str())]);
    let snap = translate_manifests(1, &yaml, |_| {});
    assert_eq!(snap.diagnostics.len(), 1, "{:?}", snap.diagnostics);
    assert!(snap.diagnostics[0].message.contains("$upstream_addr"));
    proxy.handle.apply(snap);
    let c = http1_client();
    let g = send(
        &c,
        bearer(req(proxy.http(), "a.test", "/x?token=t1"), "good"),
    )
    .await
    .unwrap();
    assert_eq!(g.status, 200);
    assert_eq!(auth.last().path, "/check?uri=%2Fx%3Ftoken%3Dt1&m=GET&t=t1");
    let g = send(&c, bearer(req(proxy.http(), "b.test", "/"), "good"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(pod.requests(), 1);
}

/// Basic auth and external auth on one Ingress (nginx `satisfy all`: `auth_basic`, then
/// `auth_request`): wrong basic credentials are 401 before the auth service is asked; good ones
/// go on to it with the client's `Authorization`, which the pod does not get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_then_external_auth() {
    use base64::Engine as _;
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let url = format!("http://127.0.0.1:{}/check", auth.addr.port());
    let yaml = service_yaml("web", pod.addr)
        + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\n\
           type: Opaque\nstringData: {auth: \"alice:{PLAIN}s3cret\\n\"}\n"
        + &ingress(
            "app",
            "a.test",
            &[],
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-url", url.as_str()),
            ],
        );
    let snap = translate_manifests(1, &yaml, |_| {});
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();
    let basic = |pass: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("alice:{pass}"));
        let mut r = req(proxy.http(), "a.test", "/");
        r.headers_mut()
            .insert("authorization", format!("Basic {b64}").parse().unwrap());
        r
    };
    let g = send(&c, basic("wrong")).await.unwrap();
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("www-authenticate"), "Basic realm=\"\"");
    assert!(
        auth.seen().is_empty(),
        "asked despite wrong basic credentials"
    );
    let g = send(&c, basic("s3cret")).await.unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.json()["headers"]["authorization"].is_null());
    assert!(
        header(&auth.last().headers, "authorization").is_some_and(|a| a.starts_with("Basic ")),
        "the auth service gets the client's Authorization"
    );
}

/// ingress-nginx e2e (annotations/satisfy.go) "should allow multiple auth with satisfy any":
/// basic auth and an auth URL that refuses everyone (401) with `auth-signin`; under `satisfy:
/// any` good basic credentials get in, none get the sign-in redirect (nginx's `error_page 401`
/// of the final 401). The allowlist joins the same way: a client inside it needs no auth and
/// no auth request is sent; outside, the auth service decides (a 403 from both is 403; a
/// failing auth service is 500 at once, never open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_any_with_external_auth() {
    use base64::Engine as _;
    let pod = backend("a");
    let auth = AuthService::start().await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let base = format!("http://127.0.0.1:{}", auth.addr.port());
    let refuse_all = format!("{base}/status/401");
    let users = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: users, namespace: default}\n\
                 type: Opaque\nstringData: {auth: \"uname:{PLAIN}pwd\\n\"}\n";
    let yaml = service_yaml("web", pod.addr)
        + users
        + &ingress(
            "app",
            "auth.test",
            &[],
            &[
                ("auth-type", "basic"),
                ("auth-secret", "users"),
                ("auth-realm", "test basic auth"),
                ("auth-url", refuse_all.as_str()),
                ("auth-signin", "http://$host/auth/start"),
                ("satisfy", "any"),
            ],
        );
    let snap = translate_manifests(1, &yaml, |_| {});
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();
    let b64 = base64::engine::general_purpose::STANDARD.encode("uname:pwd");
    let mut r = req(proxy.http(), "auth.test", "/");
    r.headers_mut()
        .insert("authorization", format!("Basic {b64}").parse().unwrap());
    let g = send(&c, r).await.unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert!(auth.seen().is_empty(), "asked after basic auth let it in");
    let g = get(&c, proxy.http(), "auth.test", "/?a=b&c=d").await;
    assert_eq!(g.status, StatusCode::FOUND);
    assert!(
        g.header("location")
            .starts_with("http://auth.test/auth/start?rd="),
        "{}",
        g.header("location")
    );
    assert_eq!(auth.seen().len(), 1);
    assert_eq!(pod.requests(), 1);

    // The allowlist and the auth URL.
    let with_allowlist = |range: &str, url: &str, version: u64| {
        let yaml = service_yaml("web", pod.addr)
            + &ingress(
                "app",
                "a.test",
                &[],
                &[
                    ("whitelist-source-range", range),
                    ("auth-url", url),
                    ("satisfy", "any"),
                ],
            );
        proxy
            .handle
            .apply(translate_manifests(version, &yaml, |_| {}));
    };
    let check = format!("{base}/check");
    with_allowlist("127.0.0.0/8", &check, 2);
    let asked = auth.seen().len();
    let g = get(&c, proxy.http(), "a.test", "/").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        auth.seen().len(),
        asked,
        "asked for a client in the allowlist"
    );
    with_allowlist("10.0.0.0/8", &check, 3);
    // No token: the auth service's 401 (with its challenge) outranks the allowlist's 403.
    let g = get(&c, proxy.http(), "a.test", "/").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("www-authenticate"), "Bearer realm=\"test\"");
    let g = send(&c, bearer(req(proxy.http(), "a.test", "/"), "good"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::OK);
    let g = send(&c, bearer(req(proxy.http(), "a.test", "/"), "forbidden"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    with_allowlist("10.0.0.0/8", &format!("{base}/status/500"), 4);
    let g = get(&c, proxy.http(), "a.test", "/").await;
    assert_eq!(g.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(pod.requests(), 3);
}
