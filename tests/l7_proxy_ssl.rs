//! ingress-nginx's backend certificate authentication (`proxy-ssl-secret`, `proxy-ssl-verify`,
//! `proxy-ssl-verify-depth`, `proxy-ssl-name`, `proxy-ssl-server-name`) end to end on
//! loopback: manifests are translated as the control plane does, the proxy runs in-process,
//! and rustls backends made here (certificates from rcgen) report the SNI they got and the
//! client certificates presented to them.
//!
//! Expected values come from ingress-nginx's annotations page ("Backend Certificate
//! Authentication": `tls.crt`/`tls.key` authenticate to the backend, `ca.crt` verifies it,
//! `proxy-ssl-verify` default `off`, `proxy-ssl-verify-depth` default 1,
//! `proxy-ssl-server-name` default `off`) and nginx's ngx_http_proxy_module
//! (`proxy_ssl_name`: the name verified and sent as SNI; default the `proxy_pass` host,
//! `upstream_balancer` in ingress-nginx's template; a failed verification is a failed
//! connection: 502).

mod l7common;

use std::{net::SocketAddr, sync::Arc};

use http::StatusCode;
use l7common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const N: &str = "nginx.ingress.kubernetes.io/";

/// A certificate and its key.
struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str, parent: Option<&Issued>) -> Issued {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = match parent {
        None => p.self_signed(&key).unwrap(),
        Some(i) => p.signed_by(&key, &i.cert, &i.key).unwrap(),
    };
    Issued { cert, key }
}

/// A leaf of `issuer` for DNS `names` with extended key usage `eku`.
fn leaf(issuer: &Issued, names: &[&str], eku: ExtendedKeyUsagePurpose) -> Issued {
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = dn(names[0]);
    p.extended_key_usages = vec![eku];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

/// A TLS backend presenting `chain` (leaf first; the leaf's key is `key`), requiring a client
/// certificate of `client_ca` when given; each request gets 200 and
/// `sni=<name or -> client-certs=<n>`. A failed handshake closes the connection.
async fn backend(chain: &[&Issued], client_ca: Option<&Issued>) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        }
    };
    let certs: Vec<CertificateDer<'static>> = chain.iter().map(|c| c.cert.der().clone()).collect();
    let key = PrivateKeyDer::Pkcs8(chain[0].key.serialize_der().into());
    let cfg = builder.with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let conn = tls.get_ref().1;
                let body = format!(
                    "sni={} client-certs={}",
                    conn.server_name().unwrap_or("-"),
                    conn.peer_certificates().map_or(0, |c| c.len())
                );
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// An HTTPS-backend Ingress `name` for `host` `/` -> Service `service` with `annotations`.
fn ingress(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = [("backend-protocol", "HTTPS")]
        .iter()
        .chain(annotations)
        .map(|(k, v)| format!("    {N}{k}: {v:?}\n"))
        .collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n{ann}spec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}\n"
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

/// The proxy serving `docs`, whose Services are `services` (name, pod).
async fn serve(services: &[(&str, SocketAddr)], docs: &[String]) -> TestProxy {
    serve_reporting(services, docs, &[]).await
}

/// [`serve`], where translation reports exactly these diagnostic reasons (sorted).
async fn serve_reporting(
    services: &[(&str, SocketAddr)],
    docs: &[String],
    reasons: &[&str],
) -> TestProxy {
    let svcs: String = services.iter().map(|(n, a)| service_yaml(n, *a)).collect();
    let snap = translate_manifests(1, &format!("{svcs}{}", docs.concat()), |_| {});
    let got: Vec<&str> = snap.diagnostics.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(got, reasons, "{:?}", snap.diagnostics);
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snap);
    proxy
}

async fn answer(proxy: &TestProxy, host: &str) -> (StatusCode, String) {
    let g = get(&http1_client(), proxy.http(), host, "/").await;
    (g.status, String::from_utf8_lossy(&g.body).into_owned())
}

/// `proxy-ssl-verify: on`: the backend's certificate must chain to `ca.crt` (else 502) and
/// name `proxy-ssl-name`, whose default `upstream_balancer` no certificate here carries;
/// `off` (the default) accepts a certificate of any CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_ca_and_the_name() {
    let (ours, other) = (ca("Backend CA", None), ca("Other CA", None));
    let cert = leaf(
        &ours,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let pod = backend(&[&cert], None).await;
    let on = |name: &'static str| vec![("proxy-ssl-verify", "on"), ("proxy-ssl-name", name)];
    let mut docs = vec![
        secret("ours", &[("ca.crt", ours.cert.pem())]),
        secret("other", &[("ca.crt", other.cert.pem())]),
    ];
    let with = |s: &str, rest: Vec<(&'static str, &'static str)>| {
        let mut v = vec![(
            "proxy-ssl-secret",
            if s == "ours" {
                "default/ours"
            } else {
                "default/other"
            },
        )];
        v.extend(rest);
        v
    };
    docs.push(ingress(
        "right",
        "right.test",
        "web",
        &with("ours", on("backend.app.svc")),
    ));
    docs.push(ingress(
        "wrong-ca",
        "wrong-ca.test",
        "web",
        &with("other", on("backend.app.svc")),
    ));
    docs.push(ingress(
        "wrong-name",
        "wrong-name.test",
        "web",
        &with("ours", on("other.app.svc")),
    ));
    docs.push(ingress(
        "no-name",
        "no-name.test",
        "web",
        &with("ours", vec![("proxy-ssl-verify", "on")]),
    ));
    docs.push(ingress("off", "off.test", "web", &with("other", vec![])));
    docs.push(ingress("plain", "plain.test", "web", &[]));
    let proxy = serve(&[("web", pod)], &docs).await;
    for (host, want) in [
        ("right.test", StatusCode::OK),
        ("wrong-ca.test", StatusCode::BAD_GATEWAY),
        ("wrong-name.test", StatusCode::BAD_GATEWAY),
        ("no-name.test", StatusCode::BAD_GATEWAY),
        ("off.test", StatusCode::OK),
        ("plain.test", StatusCode::OK),
    ] {
        let (status, body) = answer(&proxy, host).await;
        assert_eq!(status, want, "{host}: {body}");
    }
}

/// `tls.crt`/`tls.key` of the Secret are presented to a backend that requires a client
/// certificate (200); without the annotation the backend refuses the handshake (502); a key
/// that is not the certificate's denies the Ingress's routes (503, as ingress-nginx's denied
/// location: its Secret sync refuses the pair), never a connection without the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_is_presented() {
    let server_ca = ca("Backend CA", None);
    let client_ca = ca("Client CA", None);
    let cert = leaf(
        &server_ca,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let ours = leaf(
        &client_ca,
        &["ingress.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let pod = backend(&[&cert], Some(&client_ca)).await;
    let docs = [
        secret(
            "client",
            &[
                ("tls.crt", ours.cert.pem()),
                ("tls.key", ours.key.serialize_pem()),
                ("ca.crt", server_ca.cert.pem()),
            ],
        ),
        ingress(
            "mtls",
            "mtls.test",
            "web",
            &[
                ("proxy-ssl-secret", "default/client"),
                ("proxy-ssl-verify", "on"),
                ("proxy-ssl-name", "backend.app.svc"),
            ],
        ),
        ingress("without", "without.test", "web", &[]),
        // A key that is not the certificate's: PEM that parses, a pair that does not.
        secret(
            "mismatched",
            &[
                ("tls.crt", ours.cert.pem()),
                ("tls.key", KeyPair::generate().unwrap().serialize_pem()),
            ],
        ),
        ingress(
            "mismatched",
            "mismatched.test",
            "web",
            &[("proxy-ssl-secret", "default/mismatched")],
        ),
    ];
    let proxy = serve_reporting(&[("web", pod)], &docs, &["InvalidProxySslSecret"]).await;
    let (status, body) = answer(&proxy, "mtls.test").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.ends_with("client-certs=1"), "{body}");
    for (host, want) in [
        ("without.test", StatusCode::BAD_GATEWAY),
        ("mismatched.test", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let (status, body) = answer(&proxy, host).await;
        assert_eq!(status, want, "{host}: {body}");
    }
}

/// `proxy-ssl-server-name: on` sends `proxy-ssl-name` as SNI; `off` (the default), and
/// HTTPS without `proxy-ssl-secret`, send none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_sends_the_name_as_sni() {
    let server_ca = ca("Backend CA", None);
    let cert = leaf(
        &server_ca,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let pod = backend(&[&cert], None).await;
    let ps = |sni: &'static str| {
        vec![
            ("proxy-ssl-secret", "default/ca"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-name", "backend.app.svc"),
            ("proxy-ssl-server-name", sni),
        ]
    };
    let docs = [
        secret("ca", &[("ca.crt", server_ca.cert.pem())]),
        ingress("sni", "sni.test", "web", &ps("on")),
        ingress("no-sni", "no-sni.test", "web", &ps("off")),
        ingress("plain", "plain.test", "web", &[]),
    ];
    let proxy = serve(&[("web", pod)], &docs).await;
    for (host, want) in [
        ("sni.test", "sni=backend.app.svc client-certs=0"),
        ("no-sni.test", "sni=- client-certs=0"),
        ("plain.test", "sni=- client-certs=0"),
    ] {
        let (status, body) = answer(&proxy, host).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, want), "{host}");
    }
}

/// `proxy-ssl-verify-depth` (default 1, OpenSSL's count of intermediates): a chain through
/// one intermediate passes by default; through two it needs depth 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_depth_limits_the_intermediates() {
    let root = ca("Root", None);
    let i1 = ca("Intermediate 1", Some(&root));
    let i2 = ca("Intermediate 2", Some(&i1));
    let one = leaf(
        &i1,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let two = leaf(
        &i2,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (pod1, pod2) = (
        backend(&[&one, &i1], None).await,
        backend(&[&two, &i2, &i1], None).await,
    );
    let ps = |depth: &'static str| {
        let mut v = vec![
            ("proxy-ssl-secret", "default/root"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-name", "backend.app.svc"),
        ];
        if !depth.is_empty() {
            v.push(("proxy-ssl-verify-depth", depth));
        }
        v
    };
    let docs = [
        secret("root", &[("ca.crt", root.cert.pem())]),
        ingress("one", "one.test", "one", &ps("")),
        ingress("two", "two.test", "two", &ps("")),
        ingress("two-deep", "two-deep.test", "two", &ps("2")),
    ];
    let proxy = serve(&[("one", pod1), ("two", pod2)], &docs).await;
    for (host, want) in [
        ("one.test", StatusCode::OK),
        ("two.test", StatusCode::BAD_GATEWAY),
        ("two-deep.test", StatusCode::OK),
    ] {
        let (status, body) = answer(&proxy, host).await;
        assert_eq!(status, want, "{host}: {body}");
    }
}

/// Logs of this test binary, for the one test that reads them.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogSink;

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A backend certificate that fails verification is logged with its cause, as nginx's error
/// log names it ("upstream SSL certificate verify error"), not only as "upstream connect
/// failed" (found by a fresh-user trial).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_handshake_is_logged_with_its_cause() {
    // The only subscriber of this binary: a second `try_init` would fail, not replace it.
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(|| LogSink)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .try_init();
    let (ours, other) = (ca("Backend CA", None), ca("Other CA", None));
    let cert = leaf(
        &ours,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let pod = backend(&[&cert], None).await;
    let docs = vec![
        secret("other", &[("ca.crt", other.cert.pem())]),
        secret("ours", &[("ca.crt", ours.cert.pem())]),
        ingress(
            "wrong-ca",
            "wrong-ca.test",
            "web",
            &[
                ("proxy-ssl-secret", "default/other"),
                ("proxy-ssl-verify", "on"),
                ("proxy-ssl-name", "backend.app.svc"),
            ],
        ),
        ingress(
            "wrong-name",
            "wrong-name.test",
            "web",
            &[
                ("proxy-ssl-secret", "default/ours"),
                ("proxy-ssl-verify", "on"),
            ],
        ),
    ];
    let proxy = serve(&[("web", pod)], &docs).await;
    for (host, cause) in [
        ("wrong-ca.test", "UnknownIssuer"),
        (
            "wrong-name.test",
            "not valid for name \"upstream_balancer\"",
        ),
    ] {
        let (status, _) = answer(&proxy, host).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{host}");
        let logs = String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned();
        let line = logs
            .lines()
            .find(|l| l.contains("upstream connect failed") && l.contains(cause));
        assert!(
            line.is_some_and(|l| l.contains(&pod.to_string())),
            "{host}: {logs}"
        );
    }
}

/// `proxy-ssl-protocols` naming only versions older than TLS 1.2 (`TLSv1 TLSv1.1`): as
/// ingress-nginx, whose validator (`^(TLSv1\.2|TLSv1\.3| )*$`) refuses the whole value, a
/// Warning and the default `TLSv1.2`; the Ingress is served (it answered 503 before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_proxy_ssl_protocols_fall_back_to_tls12() {
    let ours = ca("Backend CA", None);
    let cert = leaf(
        &ours,
        &["backend.app.svc"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let pod = backend(&[&cert], None).await;
    let docs = [
        secret("ours", &[("ca.crt", ours.cert.pem())]),
        ingress(
            "old",
            "old.test",
            "web",
            &[
                ("proxy-ssl-secret", "default/ours"),
                ("proxy-ssl-protocols", "TLSv1 TLSv1.1"),
            ],
        ),
    ];
    let proxy = serve_reporting(&[("web", pod)], &docs, &["InvalidAnnotation"]).await;
    let (status, body) = answer(&proxy, "old.test").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
