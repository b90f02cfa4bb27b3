//! ingress-nginx's basic authentication (`auth-type: basic`, `auth-secret`, `auth-secret-type`,
//! `auth-realm`) end to end on loopback: manifests (Ingress, htpasswd Secret) are translated as
//! the control plane does, the proxy runs in-process, and what the client gets (status,
//! `WWW-Authenticate`) and what the pod receives (requests counted, headers) is checked against
//! ingress-nginx's documentation and e2e tests (test/e2e/annotations/auth.go) and RFC 7617.
//!
//! Hashes of `s3cret` below were made by independent tools, never by this code: `openssl
//! passwd -apr1/-1/-5/-6`, libxcrypt's crypt(3) (DES, BSDi, bcrypt), Python's hashlib
//! (`{SHA}`, `{SSHA}`).

mod l7common;

use std::{net::SocketAddr, sync::Arc};

use base64::Engine as _;
use http::{Request, StatusCode};
use l7common::*;
use testbed::http_backend::HttpBackend;
use xdp_ingress::model::Snapshot;

const N: &str = "nginx.ingress.kubernetes.io/";

/// `(user, hash of "s3cret")`, one user per hash scheme nginx's auth_basic accepts.
const USERS: [(&str, &str); 13] = [
    ("apr1", "$apr1$Xy3kLm9q$hc3SRGwDRb7MUkg4w6KQp0"),
    (
        "bcrypt2y",
        "$2y$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK",
    ),
    (
        "bcrypt2a",
        "$2a$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK",
    ),
    (
        "bcrypt2b",
        "$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK",
    ),
    ("sha", "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg="),
    ("ssha", "{SSHA}xhwvAVlxQgjdD+6rzZoVg7iQWZROYUNs"),
    ("plain", "{PLAIN}s3cret"),
    ("md5", "$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/"),
    (
        "sha256",
        "$5$saltsalt$i1q2ZQzc.tl/BQ6CHiENAcVDvEY6nJ1OWlWXKh94b1.",
    ),
    (
        "sha512",
        "$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1",
    ),
    (
        "sha256r",
        "$5$rounds=10000$saltsalt$nmRrNTDhR61xj1I4NppbsXyABzvAHKeAodDPU/FhQi6",
    ),
    ("des", "abhWCwoTZY2c6"),
    ("bsdi", "_J9..saltlWd5FJP1T6."),
];

/// A Service `web` on `backend`, an Ingress `app` for `host` `/` with `annotations`, and `rest`
/// (Secrets).
fn manifests(backend: SocketAddr, host: &str, annotations: &[(&str, &str)], rest: &str) -> String {
    let service = service_yaml("web", backend);
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    format!(
        "{service}apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  namespace: default\n  annotations:\n{ann}    x: \"y\"\nspec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n{rest}"
    )
}

/// An Opaque Secret `name` in `default` with `data` as `stringData`.
fn secret(name: &str, data: &[(&str, String)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: Opaque\nstringData:\n{data}"
    )
}

fn htpasswd(users: &[(&str, &str)]) -> String {
    users.iter().map(|(u, h)| format!("{u}:{h}\n")).collect()
}

fn translated(yaml: &str, version: u64) -> Arc<Snapshot> {
    translate_manifests(version, yaml, |_| {})
}

fn with_basic(
    mut r: Request<http_body_util::Full<bytes::Bytes>>,
    user: &str,
    pass: &str,
) -> Request<http_body_util::Full<bytes::Bytes>> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    r.headers_mut()
        .insert("authorization", format!("Basic {b64}").parse().unwrap());
    r
}

const BASIC: [(&str, &str); 3] = [
    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
    ("nginx.ingress.kubernetes.io/auth-secret", "basic-auth"),
    (
        "nginx.ingress.kubernetes.io/auth-realm",
        "Authentication Required - foo",
    ),
];

/// examples/auth/basic: every hash scheme lets its user in; a wrong password or none gets 401
/// with `WWW-Authenticate: Basic realm="<auth-realm>"` and the pod sees none of them; the pod
/// does not get the credentials (ingress-nginx: `proxy_set_header Authorization ""`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hash_scheme_passes_and_everything_else_is_401_before_the_pod() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = manifests(
        pod.addr,
        "foo.bar.com",
        &BASIC,
        &secret("basic-auth", &[("auth", htpasswd(&USERS))]),
    );
    let snap = translated(&yaml, 1);
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    proxy.handle.apply(snap);
    let c = http1_client();
    let realm = "Basic realm=\"Authentication Required - foo\"";

    let before = pod.requests();
    let g = get(&c, proxy.http(), "foo.bar.com", "/").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("www-authenticate"), realm);
    // nginx's page (ingress-nginx e2e settings/no_auth_locations.go).
    assert!(
        String::from_utf8_lossy(&g.body).contains("401 Authorization Required"),
        "{:?}",
        g.body
    );
    assert_eq!(g.header("content-type"), "text/html");
    for (user, pass) in [
        ("apr1", "wrong"),
        ("bcrypt2y", "s3creT"),
        ("sha", ""),
        ("des", "s3cret2"),
        ("nobody", "s3cret"),
    ] {
        let r = with_basic(req(proxy.http(), "foo.bar.com", "/"), user, pass);
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.status, StatusCode::UNAUTHORIZED, "{user}:{pass}");
        assert_eq!(g.header("www-authenticate"), realm, "{user}");
    }
    // Not Basic, or not base64: no credentials.
    for bad in ["Bearer abc", "Basic !!!"] {
        let mut r = req(proxy.http(), "foo.bar.com", "/");
        r.headers_mut()
            .insert("authorization", bad.parse().unwrap());
        assert_eq!(
            send(&c, r).await.unwrap().status,
            StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }
    assert_eq!(
        pod.requests(),
        before,
        "the pod saw an unauthenticated request"
    );

    for (user, _) in USERS {
        let r = with_basic(req(proxy.http(), "foo.bar.com", "/x?y=1"), user, "s3cret");
        let g = send(&c, r).await.unwrap();
        assert_eq!(g.status, StatusCode::OK, "{user}");
        assert_eq!(g.json()["path"], "/x?y=1");
        assert!(
            g.json()["headers"]["authorization"].is_null(),
            "{user}: {}",
            g.json()
        );
    }
    assert_eq!(pod.requests(), before + USERS.len() as u64);
}

/// The same over HTTP/2 (h2c): 401 with the challenge, then 200 with credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_authenticated_the_same() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = manifests(
        pod.addr,
        "foo.bar.com",
        &BASIC,
        &secret("basic-auth", &[("auth", htpasswd(&USERS[..2]))]),
    );
    proxy.handle.apply(translated(&yaml, 1));
    let c = h2c_client();
    let g = send(&c, req(proxy.http(), "foo.bar.com", "/"))
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        g.header("www-authenticate"),
        "Basic realm=\"Authentication Required - foo\""
    );
    let r = with_basic(req(proxy.http(), "foo.bar.com", "/"), "bcrypt2y", "s3cret");
    let g = send(&c, r).await.unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.json()["headers"]["authorization"].is_null());
    assert_eq!(pod.requests(), 1);
}

/// auth.go "authentication is configured with a map": each key a user, its value the hash; no
/// auth-realm: `realm=""` (ingress-nginx renders `auth_basic ""`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_map_secret_and_the_default_realm() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = manifests(
        pod.addr,
        "map.bar.com",
        &[
            (&format!("{N}auth-type"), "basic"),
            (&format!("{N}auth-secret"), "default/users"),
            ("xdp-ingress.dev/auth-secret-type", "auth-map"),
        ],
        &secret(
            "users",
            &[
                ("foo", USERS[1].1.to_string()),
                ("bar", USERS[0].1.to_string()),
            ],
        ),
    );
    proxy.handle.apply(translated(&yaml, 1));
    let c = http1_client();
    let g = get(&c, proxy.http(), "map.bar.com", "/").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("www-authenticate"), "Basic realm=\"\"");
    for user in ["foo", "bar"] {
        let r = with_basic(req(proxy.http(), "map.bar.com", "/"), user, "s3cret");
        assert_eq!(send(&c, r).await.unwrap().status, StatusCode::OK, "{user}");
    }
    let r = with_basic(req(proxy.http(), "map.bar.com", "/"), "foo", "nope");
    assert_eq!(send(&c, r).await.unwrap().status, StatusCode::UNAUTHORIZED);
    assert_eq!(pod.requests(), 2);
}

/// auth.go "should return status code 503 when authentication is configured with an invalid
/// secret": a Secret that does not exist (or lacks `auth`, or sits in another namespace)
/// denies every request with 503, with or without credentials; the pod sees none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_auth_secret_is_503_never_open() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let cases = [
        (BASIC.to_vec(), String::new(), "AuthSecretNotFound"),
        (
            BASIC.to_vec(),
            secret("basic-auth", &[("htpasswd", htpasswd(&USERS))]),
            "InvalidAuthSecret",
        ),
        (
            vec![(BASIC[0].0, "digest"), (BASIC[1].0, "basic-auth")],
            secret("basic-auth", &[("auth", htpasswd(&USERS))]),
            "UnsupportedAuthType",
        ),
    ];
    for (i, (ann, rest, reason)) in cases.into_iter().enumerate() {
        let snap = translated(
            &manifests(pod.addr, "foo.bar.com", &ann, &rest),
            i as u64 + 1,
        );
        assert!(
            snap.diagnostics.iter().any(|d| d.reason == reason),
            "{reason}: {:?}",
            snap.diagnostics
        );
        proxy.handle.apply(snap);
        let g = get(&c, proxy.http(), "foo.bar.com", "/").await;
        assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{reason}");
        let r = with_basic(req(proxy.http(), "foo.bar.com", "/"), "plain", "s3cret");
        assert_eq!(
            send(&c, r).await.unwrap().status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{reason}"
        );
    }
    assert_eq!(pod.requests(), 0);
}

/// A changed Secret applies to the running proxy: a new user gets in, a removed one (whose
/// success was just remembered) is refused, and a Secret created after the Ingress turns the
/// 503 into authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_changes_apply_without_restart() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let ask = |user: &'static str| {
        let r = with_basic(req(proxy.http(), "foo.bar.com", "/"), user, "s3cret");
        let c = &c;
        async move { send(c, r).await.unwrap().status }
    };
    // The Ingress first, its Secret not yet there.
    proxy.handle.apply(translated(
        &manifests(pod.addr, "foo.bar.com", &BASIC, ""),
        1,
    ));
    assert_eq!(ask("apr1").await, StatusCode::SERVICE_UNAVAILABLE);
    let v2 = secret("basic-auth", &[("auth", htpasswd(&USERS[..1]))]);
    proxy.handle.apply(translated(
        &manifests(pod.addr, "foo.bar.com", &BASIC, &v2),
        2,
    ));
    assert_eq!(ask("apr1").await, StatusCode::OK);
    assert_eq!(ask("bcrypt2y").await, StatusCode::UNAUTHORIZED);
    // apr1 replaced by bcrypt2y.
    let v3 = secret("basic-auth", &[("auth", htpasswd(&USERS[1..2]))]);
    proxy.handle.apply(translated(
        &manifests(pod.addr, "foo.bar.com", &BASIC, &v3),
        3,
    ));
    assert_eq!(ask("bcrypt2y").await, StatusCode::OK);
    assert_eq!(ask("apr1").await, StatusCode::UNAUTHORIZED);
}

/// Nothing behind the auth step sees an unauthenticated request: not the canary a header
/// picks, not the `default-backend` that serves a route whose Service is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_and_default_backend_are_behind_the_auth_step() {
    let main = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "main").unwrap();
    let canary = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "canary").unwrap();
    let fallback = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "fallback").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let canary_ingress = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app-canary\n  \
         namespace: default\n  annotations:\n    {N}canary: \"true\"\n    {N}canary-by-header: x-canary\n\
         spec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: foo.bar.com\n    http:\n      \
         paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: canary, port: {{number: 80}}}}}}}}\n"
    );
    let gone_ingress = format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: gone\n  \
         namespace: default\n  annotations:\n    {N}default-backend: fallback\n    \
         {N}auth-type: basic\n    {N}auth-secret: basic-auth\n\
         spec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: gone.bar.com\n    http:\n      \
         paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: gone, port: {{number: 80}}}}}}}}\n"
    );
    let rest = [
        secret("basic-auth", &[("auth", htpasswd(&USERS[..1]))]),
        "---\n".to_string(),
        service_yaml("canary", canary.addr),
        service_yaml("fallback", fallback.addr),
        canary_ingress,
        gone_ingress,
    ]
    .concat();
    let snap = translated(&manifests(main.addr, "foo.bar.com", &BASIC, &rest), 1);
    proxy.handle.apply(snap);
    let c = http1_client();
    let mut r = req(proxy.http(), "foo.bar.com", "/");
    r.headers_mut()
        .insert("x-canary", "always".parse().unwrap());
    assert_eq!(send(&c, r).await.unwrap().status, StatusCode::UNAUTHORIZED);
    let g = get(&c, proxy.http(), "gone.bar.com", "/").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (main.requests(), canary.requests(), fallback.requests()),
        (0, 0, 0)
    );
    // With credentials each goes where it would go without auth.
    let mut r = with_basic(req(proxy.http(), "foo.bar.com", "/"), "apr1", "s3cret");
    r.headers_mut()
        .insert("x-canary", "always".parse().unwrap());
    let g = send(&c, r).await.unwrap();
    assert_eq!((g.status, g.pod()), (StatusCode::OK, "canary".to_string()));
    let r = with_basic(req(proxy.http(), "gone.bar.com", "/"), "apr1", "s3cret");
    let g = send(&c, r).await.unwrap();
    assert_eq!(
        (g.status, g.pod()),
        (StatusCode::OK, "fallback".to_string())
    );
}

/// A WebSocket upgrade without credentials is refused before any tunnel opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_needs_credentials_too() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let yaml = manifests(
        pod.addr,
        "foo.bar.com",
        &BASIC,
        &secret("basic-auth", &[("auth", htpasswd(&USERS[..1]))]),
    );
    proxy.handle.apply(translated(&yaml, 1));
    let head = raw(
        proxy.http(),
        b"GET /chat HTTP/1.1\r\nHost: foo.bar.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        std::time::Duration::from_millis(500),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"authentication required - foo\""),
        "{head}"
    );
    assert_eq!(pod.requests(), 0);
}

/// nginx `satisfy` (ingress-nginx's `satisfy` annotation) over the allowlist and basic auth,
/// the client being 127.0.0.1. `any`: a client inside the allowlist needs no credentials; one
/// outside gets the 401 challenge (a 401 outranks the allowlist's 403,
/// `ngx_http_core_access_phase`) and gets in with credentials. `all` (the default, and what
/// an invalid value means, with a Warning): both checks, the allowlist's 403 first. Refusals
/// are counted with the `basic_unauthorized` reason; the allowlist's 403 is no auth refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfy_any_admits_on_the_allowlist_or_credentials() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let users = secret("basic-auth", &[("auth", htpasswd(&USERS[..1]))]);
    let apply = |satisfy: Option<&str>, range: &str, version: u64| {
        let mut ann = BASIC.to_vec();
        let (s, r) = (format!("{N}satisfy"), format!("{N}whitelist-source-range"));
        if let Some(v) = satisfy {
            ann.push((&s, v));
        }
        ann.push((&r, range));
        let snap = translated(&manifests(pod.addr, "foo.bar.com", &ann, &users), version);
        let warned = snap
            .diagnostics
            .iter()
            .any(|d| d.message.contains("satisfy"));
        proxy.handle.apply(snap);
        warned
    };
    let anon = || async { get(&c, proxy.http(), "foo.bar.com", "/").await };
    let with = |pass: &'static str| {
        let r = with_basic(req(proxy.http(), "foo.bar.com", "/"), "apr1", pass);
        let c = &c;
        async move { send(c, r).await.unwrap() }
    };
    let realm = "Basic realm=\"Authentication Required - foo\"";

    // any, client inside the allowlist: in without credentials, and with them.
    assert!(!apply(Some("any"), "127.0.0.1/32", 1));
    assert_eq!(anon().await.status, StatusCode::OK);
    assert_eq!(with("s3cret").await.status, StatusCode::OK);
    assert_eq!(with("wrong").await.status, StatusCode::OK);
    // any, client outside: basic auth decides.
    apply(Some("any"), "10.0.0.0/8", 2);
    let g = anon().await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(g.header("www-authenticate"), realm);
    let g = with("wrong").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    let g = with("s3cret").await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.json()["headers"]["authorization"].is_null());
    assert_eq!(pod.requests(), 4);

    // all (explicit, default, or an invalid value): the allowlist and the credentials.
    for (version, satisfy) in [(3, Some("all")), (4, None), (5, Some("some"))] {
        let warned = apply(satisfy, "127.0.0.1/32", version);
        assert_eq!(warned, satisfy == Some("some"), "{satisfy:?}");
        assert_eq!(anon().await.status, StatusCode::UNAUTHORIZED, "{satisfy:?}");
        assert_eq!(with("s3cret").await.status, StatusCode::OK, "{satisfy:?}");
        apply(satisfy, "10.0.0.0/8", version + 10);
        let g = with("s3cret").await;
        assert_eq!(g.status, StatusCode::FORBIDDEN, "{satisfy:?}");
        assert_eq!(g.header("www-authenticate"), "", "{satisfy:?}");
    }
    assert_eq!(pod.requests(), 7);

    // Basic-auth refusals counted by reason: 2 (any, outside) + 3 (all, inside, no credentials).
    let m = proxy.handle.metrics_addr().unwrap();
    let text = String::from_utf8_lossy(&get(&c, m, "admin", "/metrics").await.body).to_string();
    let series = "xdp_ingress_auth_refused_requests_total{ingress=\"default/app\",host=\"foo.bar.com\",path=\"/\",reason=\"basic_unauthorized\"} 5";
    assert!(text.contains(series), "{series} not in\n{text}");
}

/// ingress-nginx's `allow-cross-namespace-resources` (default false; annotations/auth: "cross
/// namespace usage of secrets is not allowed", the location denied): an `auth-secret` in
/// another namespace denies the Ingress's routes with 503 until the controller ConfigMap sets
/// it to `"true"`; then the Secret there authenticates as one of the Ingress's own would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_namespace_auth_secret_needs_allow_cross_namespace_resources() {
    let pod = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "a").unwrap();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let other_ns = secret("basic-auth", &[("auth", htpasswd(&USERS[..1]))])
        .replace("namespace: default", "namespace: vault");
    let annotations = [(BASIC[0].0, BASIC[0].1), (BASIC[1].0, "vault/basic-auth")];
    let yaml = |allow: &str| {
        let cm = format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ingress-nginx-controller, \
             namespace: ingress-nginx}}\ndata: {{allow-cross-namespace-resources: {allow:?}}}\n"
        );
        manifests(
            pod.addr,
            "foo.bar.com",
            &annotations,
            &(other_ns.clone() + &cm),
        )
    };
    let snap = |v: u64, allow: &str| {
        translate_manifests(v, &yaml(allow), |c| {
            c.configmap = Some(xdp_ingress::store::Key::new(
                "ingress-nginx",
                "ingress-nginx-controller",
            ));
        })
    };
    let s = snap(1, "false");
    let reasons: Vec<_> = s.diagnostics.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, ["CrossNamespaceAuthSecret"]);
    proxy.handle.apply(s);
    let ok = || with_basic(req(proxy.http(), "foo.bar.com", "/"), USERS[0].0, "s3cret");
    assert_eq!(
        send(&c, ok()).await.unwrap().status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let s = snap(2, "true");
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    proxy.handle.apply(s);
    let g = get(&c, proxy.http(), "foo.bar.com", "/").await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&c, ok()).await.unwrap().status, StatusCode::OK);
}
