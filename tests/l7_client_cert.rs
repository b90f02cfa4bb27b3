//! ingress-nginx's client-certificate authentication (`auth-tls-secret`, `auth-tls-verify-client`,
//! `auth-tls-verify-depth`, `auth-tls-pass-certificate-to-upstream`, `auth-tls-error-page`,
//! `auth-tls-match-cn`) end to end on loopback: manifests (Ingress, CA Secret) are translated as
//! the control plane does, the proxy runs in-process, and real TLS clients (rustls, presenting
//! certificates made here with rcgen) check what they get and what the pod receives.
//!
//! Expected values come from ingress-nginx's annotations page ("Client Certificate
//! Authentication": 400 on a failed verification with `on` and `optional`, `optional_no_ca`
//! passes the result upstream, 403 for `auth-tls-match-cn`), its nginx.tmpl (the
//! `ssl-client-verify`, `ssl-client-subject-dn`, `ssl-client-issuer-dn` and `ssl-client-cert`
//! headers; `error_page 495 496 = <auth-tls-error-page>`; `return 403` for an `AuthTLSError`),
//! nginx's ssl module docs (`$ssl_client_verify` is `SUCCESS`, `FAILED:reason` or `NONE`; DNs in
//! RFC 2253 form; `$ssl_client_escaped_cert` is the URL-encoded PEM) and nginx's own test
//! ssl_verify_depth.t for how OpenSSL 1.1+ counts `ssl_verify_depth`.

mod l7common;

use std::{net::SocketAddr, sync::Arc};

use http::StatusCode;
use l7common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use xdp_ingress::model::{Severity, Snapshot};

const N: &str = "nginx.ingress.kubernetes.io/";

/// A certificate and its key.
struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Issued {
    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Acme");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = name(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn root(cn: &str) -> Issued {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(cn).self_signed(&key).unwrap();
    Issued { cert, key }
}

fn intermediate(parent: &Issued, cn: &str) -> Issued {
    let key = KeyPair::generate().unwrap();
    let cert = ca_params(cn)
        .signed_by(&key, &parent.cert, &parent.key)
        .unwrap();
    Issued { cert, key }
}

fn client(issuer: &Issued, cn: &str, serial: u64) -> Issued {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = name(cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from(serial));
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    Issued { cert, key }
}

/// A CRL of `ca` revoking `serials`.
fn crl(ca: &Issued, serials: &[u64]) -> String {
    rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca.cert, &ca.key)
    .unwrap()
    .pem()
    .unwrap()
}

/// An Ingress `name` for `host` `/` -> Service `web` with `annotations` (keys without prefix).
fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    {N}{k}: {v:?}\n"))
        .collect();
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: default\n  annotations:\n{ann}    x: \"y\"\nspec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    )
}

/// An Opaque Secret `name` in `default` with `data` as `stringData`.
fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: Opaque\nstringData:\n{data}"
    )
}

/// The proxy serving `docs` (after the Service `web` on `pod`).
async fn serve(pod: SocketAddr, docs: &[String]) -> (TestProxy, Arc<Snapshot>) {
    let yaml = format!("{}{}", service_yaml("web", pod), docs.concat());
    let snap = translate_manifests(1, &yaml, |_| {});
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(Arc::clone(&snap));
    (proxy, snap)
}

/// Records whether the server asked for a client certificate (rustls asks the resolver only
/// on a CertificateRequest), and presents `chain` if any.
#[derive(Debug)]
struct Presenter {
    certified: Option<Arc<rustls::sign::CertifiedKey>>,
    asked: std::sync::atomic::AtomicBool,
}

impl rustls::client::ResolvesClientCert for Presenter {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, std::sync::atomic::Ordering::SeqCst);
        self.certified.clone()
    }

    fn has_certs(&self) -> bool {
        self.certified.is_some()
    }
}

/// What one HTTPS request got, and whether the handshake asked for a certificate.
struct Answer {
    got: Got,
    asked: bool,
}

impl Answer {
    /// A header the pod received ("" if none).
    fn at_pod(&self, name: &str) -> String {
        self.got.json()["headers"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A TLS connection with SNI `sni` offering `alpn`, presenting `chain` (leaf first, key of
/// the leaf) if asked; the resolver says whether it was asked.
async fn connect(
    proxy: &TestProxy,
    sni: &str,
    chain: Option<(&[&Issued], &Issued)>,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Arc<Presenter>,
) {
    connect_presenting(proxy, sni, chain.map(presented), alpn, false).await
}

/// A certificate chain as sent (leaf first) and the leaf's key.
type Presented = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn presented((certs, leaf): (&[&Issued], &Issued)) -> Presented {
    let der = certs.iter().map(|c| c.der()).collect();
    (der, PrivateKeyDer::Pkcs8(leaf.key.serialize_der().into()))
}

/// [`connect`] with the chain as bytes (anything, even no certificate at all), over TLS 1.2
/// only if `tls12`.
async fn connect_presenting(
    proxy: &TestProxy,
    sni: &str,
    chain: Option<Presented>,
    alpn: &[&[u8]],
    tls12: bool,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Arc<Presenter>,
) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = chain.map(|(der, key)| {
        let signer = provider.key_provider.load_private_key(key).unwrap();
        Arc::new(rustls::sign::CertifiedKey::new(der, signer))
    });
    let presenter = Arc::new(Presenter {
        certified,
        asked: false.into(),
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(
            Arc::clone(&provider),
            Default::default(),
        )))
        .with_client_cert_resolver(Arc::clone(&presenter) as Arc<_>);
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(proxy.https()).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .expect("TLS handshake");
    (stream, presenter)
}

/// One HTTPS request (HTTP/1.1) with SNI `sni` and Host `host`, presenting `chain` if any,
/// with extra request headers.
async fn https(
    proxy: &TestProxy,
    sni: &str,
    host: &str,
    chain: Option<(&[&Issued], &Issued)>,
    headers: &[(&str, &str)],
) -> Answer {
    https_presenting(proxy, sni, host, chain.map(presented), headers, false).await
}

/// [`https`] with the chain as bytes, over TLS 1.2 only if `tls12`.
async fn https_presenting(
    proxy: &TestProxy,
    sni: &str,
    host: &str,
    chain: Option<Presented>,
    headers: &[(&str, &str)],
    tls12: bool,
) -> Answer {
    let (stream, presenter) = connect_presenting(proxy, sni, chain, &[], tls12).await;
    let mut r = req(proxy.https(), host, "/");
    for (k, v) in headers {
        r.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let got = request_over(stream, false, r).await;
    Answer {
        got,
        asked: presenter.asked.load(std::sync::atomic::Ordering::SeqCst),
    }
}

/// nginx's `$ssl_client_escaped_cert`, computed here from rcgen's PEM: `ngx_escape_uri` with
/// `NGX_ESCAPE_URI_COMPONENT` leaves letters, digits and `-._~`, and escapes every other byte.
fn nginx_escaped(pem: &str) -> String {
    pem.replace("\r\n", "\n")
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `kubernetes.io/tls` Secret in `default`.
fn tls_secret_yaml(name: &str, cert: &str, key: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {cert:?}\n  tls.key: {key:?}\n"
    )
}

fn ca_secret(name: &str, ca: &[&Issued]) -> String {
    let pem: String = ca.iter().map(|c| c.cert.pem()).collect();
    secret(name, &[("ca.crt", &pem)])
}

/// `on` (the default): a certificate the CA signed is served with `ssl-client-verify: SUCCESS`
/// and the RFC 2253 subject and issuer at the pod, with what the client claimed in those
/// headers replaced; no certificate, or one of another CA, is 400 and the pod sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_serves_a_verified_certificate_and_400s_the_rest() {
    let ca = root("Test CA");
    let other = root("Other CA");
    let alice = client(&ca, "alice", 10);
    let mallory = client(&other, "alice", 11);
    let pod = backend("a");
    let (proxy, snap) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            ingress(
                "app",
                "mtls.example.com",
                &[("auth-tls-secret", "default/ca")],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);

    let spoof = [
        ("ssl-client-verify", "SUCCESS"),
        ("ssl-client-subject-dn", "CN=admin"),
        ("ssl-client-issuer-dn", "CN=Test CA"),
        ("ssl-client-cert", "forged"),
    ];
    let a = https(
        &proxy,
        "mtls.example.com",
        "mtls.example.com",
        Some((&[&alice], &alice)),
        &spoof,
    )
    .await;
    assert!(a.asked, "the handshake asks for a certificate");
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
    assert_eq!(a.at_pod("ssl-client-subject-dn"), "CN=alice,O=Acme");
    assert_eq!(a.at_pod("ssl-client-issuer-dn"), "CN=Test CA,O=Acme");
    // Not asked for: the client's copy is gone too.
    assert_eq!(a.at_pod("ssl-client-cert"), "");

    // HTTP/2 (ALPN h2) on the host's own TLS configuration, the same verdict.
    let (stream, _) = connect(
        &proxy,
        "mtls.example.com",
        Some((&[&alice], &alice)),
        &[b"h2"],
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let g = request_over(stream, true, req(proxy.https(), "mtls.example.com", "/")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["ssl-client-verify"], "SUCCESS");

    let before = pod.requests();
    let none = https(&proxy, "mtls.example.com", "mtls.example.com", None, &spoof).await;
    assert_eq!(none.got.status, StatusCode::BAD_REQUEST);
    let wrong = https(
        &proxy,
        "mtls.example.com",
        "mtls.example.com",
        Some((&[&mallory], &mallory)),
        &spoof,
    )
    .await;
    assert_eq!(wrong.got.status, StatusCode::BAD_REQUEST);
    assert_eq!(pod.requests(), before, "the pod sees no refused request");
}

/// `optional`: no certificate is served with `ssl-client-verify: NONE` (and no DN); one that
/// fails verification is 400. `optional_no_ca`: a certificate of an unknown CA is served with
/// the failure in `ssl-client-verify` (OpenSSL's "unable to get local issuer certificate") and,
/// with `auth-tls-pass-certificate-to-upstream`, the certificate as nginx's
/// `$ssl_client_escaped_cert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_and_optional_no_ca_pass_the_verdict_upstream() {
    let ca = root("Test CA");
    let other = root("Other CA");
    let stranger = client(&other, "stranger", 20);
    let alice = client(&ca, "alice", 21);
    let pod = backend("a");
    let (proxy, snap) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            ingress(
                "opt",
                "opt.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-client", "optional"),
                ],
            ),
            ingress(
                "noca",
                "noca.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-client", "optional_no_ca"),
                    ("auth-tls-pass-certificate-to-upstream", "true"),
                ],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);

    let a = https(&proxy, "opt.example.com", "opt.example.com", None, &[]).await;
    assert!(a.asked);
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(a.at_pod("ssl-client-verify"), "NONE");
    assert_eq!(a.at_pod("ssl-client-subject-dn"), "");
    let a = https(
        &proxy,
        "opt.example.com",
        "opt.example.com",
        Some((&[&stranger], &stranger)),
        &[],
    )
    .await;
    assert_eq!(a.got.status, StatusCode::BAD_REQUEST);

    let a = https(
        &proxy,
        "noca.example.com",
        "noca.example.com",
        Some((&[&stranger], &stranger)),
        &[],
    )
    .await;
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(
        a.at_pod("ssl-client-verify"),
        "FAILED:unable to get local issuer certificate"
    );
    assert_eq!(a.at_pod("ssl-client-subject-dn"), "CN=stranger,O=Acme");
    assert_eq!(
        a.at_pod("ssl-client-cert"),
        nginx_escaped(&stranger.cert.pem())
    );
    assert!(
        a.at_pod("ssl-client-cert")
            .starts_with("-----BEGIN%20CERTIFICATE-----%0A")
    );

    let a = https(
        &proxy,
        "noca.example.com",
        "noca.example.com",
        Some((&[&alice], &alice)),
        &[],
    )
    .await;
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
    assert_eq!(
        a.at_pod("ssl-client-cert"),
        nginx_escaped(&alice.cert.pem())
    );
}

/// `auth-tls-verify-depth` as OpenSSL 1.1+ counts `ssl_verify_depth` (nginx's
/// ssl_verify_depth.t): the CA certificates between the client's and the root. With the default
/// 1, a chain through one intermediate passes and one through two is 400; depth 2 takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_depth_limits_the_intermediates() {
    let ca = root("Root CA");
    let int1 = intermediate(&ca, "Int 1");
    let int2 = intermediate(&int1, "Int 2");
    let near = client(&int1, "near", 30);
    let far = client(&int2, "far", 31);
    let pod = backend("a");
    let (proxy, snap) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            ingress("d1", "d1.example.com", &[("auth-tls-secret", "default/ca")]),
            ingress(
                "d2",
                "d2.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-depth", "2"),
                ],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let near_chain = [&near, &int1];
    let far_chain = [&far, &int2, &int1];
    for (host, chain, leaf, want) in [
        ("d1.example.com", &near_chain[..], &near, StatusCode::OK),
        (
            "d1.example.com",
            &far_chain[..],
            &far,
            StatusCode::BAD_REQUEST,
        ),
        ("d2.example.com", &far_chain[..], &far, StatusCode::OK),
    ] {
        let a = https(&proxy, host, host, Some((chain, leaf)), &[]).await;
        assert_eq!(
            a.got.status,
            want,
            "{host} with {} certificates",
            chain.len()
        );
        if want == StatusCode::OK {
            assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
        }
    }
}

/// `auth-tls-error-page`: a failed or missing certificate is a 302 to the page (nginx
/// `error_page 495 496 = <URL>`) instead of the 400; a page that is a path is served in its
/// place by the host's routes (nginx's internal redirect, as GET), with the verdict in
/// `ssl-client-verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_page_redirects_instead_of_the_400() {
    let ca = root("Test CA");
    let other = root("Other CA");
    let stranger = client(&other, "stranger", 40);
    let pod = backend("a");
    let page = "http://www.mysite.com/error-cert.html";
    let (proxy, _) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            ingress(
                "app",
                "mtls.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-error-page", page),
                ],
            ),
            ingress(
                "local",
                "local.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-error-page", "/cert-error.html"),
                ],
            ),
        ],
    )
    .await;
    let host = "mtls.example.com";
    for chain in [None, Some((&[&stranger][..], &stranger))] {
        let a = https(&proxy, host, host, chain, &[]).await;
        assert_eq!(a.got.status, StatusCode::FOUND);
        assert_eq!(a.got.header("location"), page);
    }
    let host = "local.example.com";
    let a = https(&proxy, host, host, Some((&[&stranger], &stranger)), &[]).await;
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(a.got.json()["path"], "/cert-error.html");
    assert_eq!(a.got.json()["method"], "GET");
    assert_eq!(
        a.at_pod("ssl-client-verify"),
        "FAILED:unable to get local issuer certificate"
    );
}

/// A host without the annotation on the same listener never asks for a certificate, and its
/// pod gets the client's headers untouched (ingress-nginx sets them only under
/// `auth-tls-secret`); a request on that connection naming the verifying host is 421 (nginx:
/// the Host names another server than the SNI, and that one verifies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_are_not_asked_and_cannot_borrow_the_connection() {
    let ca = root("Test CA");
    let alice = client(&ca, "alice", 50);
    let pod = backend("a");
    let (proxy, _) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            ingress(
                "app",
                "mtls.example.com",
                &[("auth-tls-secret", "default/ca")],
            ),
            ingress("plain", "plain.example.com", &[]),
        ],
    )
    .await;
    let a = https(
        &proxy,
        "plain.example.com",
        "plain.example.com",
        Some((&[&alice], &alice)),
        &[],
    )
    .await;
    assert!(
        !a.asked,
        "a host without auth-tls-secret asks for no certificate"
    );
    assert_eq!(a.got.status, StatusCode::OK);
    let a = https(
        &proxy,
        "plain.example.com",
        "mtls.example.com",
        Some((&[&alice], &alice)),
        &[],
    )
    .await;
    assert_eq!(a.got.status, StatusCode::MISDIRECTED_REQUEST);
}

/// An `auth-tls-secret` that cannot be used (missing Secret, no `ca.crt`, not PEM) is a Warning
/// and its host answers 403 to everything, over HTTPS and HTTP (ingress-nginx's `AuthTLSError`:
/// `return 403` in the server block); another host of the listener is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_ca_secret_denies_only_its_host() {
    let ca = root("Test CA");
    let alice = client(&ca, "alice", 60);
    let pod = backend("a");
    let (proxy, snap) = serve(
        pod.addr,
        &[
            secret("noca", &[("tls.crt", "x")]),
            secret("junk", &[("ca.crt", "not a certificate")]),
            ingress(
                "a",
                "missing.example.com",
                &[("auth-tls-secret", "default/nope")],
            ),
            ingress(
                "b",
                "noca.example.com",
                &[("auth-tls-secret", "default/noca")],
            ),
            ingress(
                "c",
                "junk.example.com",
                &[("auth-tls-secret", "default/junk")],
            ),
            ingress("d", "fine.example.com", &[]),
        ],
    )
    .await;
    // Each denies its host: an error.
    let errors: Vec<_> = snap
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.object.name.clone())
        .collect();
    assert_eq!(errors, ["a", "b", "c"], "{:?}", snap.diagnostics);
    assert!(snap.diagnostics.iter().all(|d| d.message.contains("403")));
    let before = pod.requests();
    for host in [
        "missing.example.com",
        "noca.example.com",
        "junk.example.com",
    ] {
        let a = https(&proxy, host, host, Some((&[&alice], &alice)), &[]).await;
        assert_eq!(a.got.status, StatusCode::FORBIDDEN, "{host}");
        let g = get(&http1_client(), proxy.http(), host, "/").await;
        assert_eq!(g.status, StatusCode::FORBIDDEN, "{host} over HTTP");
    }
    assert_eq!(pod.requests(), before);
    let a = https(&proxy, "fine.example.com", "fine.example.com", None, &[]).await;
    assert_eq!(a.got.status, StatusCode::OK);
}

/// `auth-tls-match-cn`: a verified certificate whose subject does not match is 403 ("client
/// certificate unauthorized"); `ca.crl`: a revoked certificate is 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_cn_and_revocation() {
    let ca = root("Test CA");
    let alice = client(&ca, "alice", 70);
    let bob = client(&ca, "bob", 71);
    let revoked = client(&ca, "alice", 72);
    let pod = backend("a");
    let crl = crl(&ca, &[72]);
    let (proxy, snap) = serve(
        pod.addr,
        &[
            secret("ca", &[("ca.crt", &ca.cert.pem()), ("ca.crl", &crl)]),
            ingress(
                "app",
                "mtls.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-match-cn", "CN=(alice|carol)"),
                ],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let host = "mtls.example.com";
    let a = https(&proxy, host, host, Some((&[&alice], &alice)), &[]).await;
    assert_eq!(a.got.status, StatusCode::OK);
    let a = https(&proxy, host, host, Some((&[&bob], &bob)), &[]).await;
    assert_eq!(a.got.status, StatusCode::FORBIDDEN);
    let a = https(&proxy, host, host, Some((&[&revoked], &revoked)), &[]).await;
    assert_eq!(a.got.status, StatusCode::BAD_REQUEST);
}

/// A new CA in the Secret applies to requests on connections already open: the certificate
/// they presented is judged again under the new `ca.crt` (ingress-nginx reloads and its old
/// workers finish their requests; nothing here keeps a verdict past a CA change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ca_applies_to_open_connections() {
    let old_ca = root("Old CA");
    let new_ca = root("New CA");
    let alice = client(&old_ca, "alice", 80);
    let pod = backend("a");
    let host = "mtls.example.com";
    let docs = |ca: &Issued| {
        vec![
            ca_secret("ca", &[ca]),
            ingress("app", host, &[("auth-tls-secret", "default/ca")]),
        ]
    };
    let (proxy, _) = serve(pod.addr, &docs(&old_ca)).await;
    let (stream, _) = connect(&proxy, host, Some((&[&alice], &alice)), &[]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender.ready().await.unwrap();
    let ask = || {
        http::Request::builder()
            .uri("/")
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let r = sender.send_request(ask()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // An HTTP/1.1 connection takes the next request once the last response's body is read
    // and its dispatcher has seen the end: read it, then wait until the sender is ready.
    http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap();
    sender.ready().await.unwrap();

    let yaml = format!(
        "{}{}",
        service_yaml("web", pod.addr),
        docs(&new_ca).concat()
    );
    proxy.handle.apply(translate_manifests(2, &yaml, |_| {}));
    let r = sender.send_request(ask()).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// With `--enable-ssl-passthrough` the ClientHello is read first and replayed: a
/// client-certificate host is still asked, verified and served, beside a passthrough host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_beside_ssl_passthrough() {
    let ca = root("Test CA");
    let alice = client(&ca, "alice", 90);
    let pod = backend("a");
    let host = "mtls.example.com";
    // The passthrough host's pods speak TLS: their own Service.
    let vault_pod = backend("vault");
    let vault = ingress("vault", "vault.example.com", &[("ssl-passthrough", "true")])
        .replace("name: web,", "name: vault,");
    let yaml = format!(
        "{}{}{}{}{}",
        service_yaml("web", pod.addr),
        service_yaml("vault", vault_pod.addr),
        ca_secret("ca", &[&ca]),
        ingress("app", host, &[("auth-tls-secret", "default/ca")]),
        vault,
    );
    let snap = translate_manifests(1, &yaml, |c| c.enable_ssl_passthrough = true);
    assert!(!snap.l7.passthrough.is_empty());
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snap);
    let a = https(&proxy, host, host, Some((&[&alice], &alice)), &[]).await;
    assert!(a.asked);
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
    let a = https(&proxy, host, host, None, &[]).await;
    assert_eq!(a.got.status, StatusCode::BAD_REQUEST);
}

/// Certificates made by the openssl CLI in a temporary directory, with the commands of
/// ingress-nginx's docs/examples/PREREQUISITES.md ("Client Certificate Authentication").
/// `openssl x509 -req` without an extfile makes X.509 v1 certificates.
struct OpenSsl {
    dir: tempfile::TempDir,
}

impl OpenSsl {
    fn new() -> Self {
        OpenSsl {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(file)).unwrap()
    }

    fn write(&self, file: &str, data: &str) {
        std::fs::write(self.dir.path().join(file), data).unwrap();
    }

    /// `openssl req -x509`, as PREREQUISITES.md makes the CA (`<name>.crt`, `<name>.key`).
    fn ca(&self, name: &str, subject: &str) {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        self.run(&[
            "req", "-x509", "-sha256", "-newkey", "rsa:2048", "-keyout", &key, "-out", &crt,
            "-days", "356", "-nodes", "-subj", subject,
        ]);
    }

    /// A self-signed v1 CA: `openssl x509 -req -signkey` without an extfile.
    fn v1_ca(&self, name: &str, subject: &str) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        self.run(&[
            "req", "-new", "-newkey", "rsa:2048", "-keyout", &key, "-out", &csr, "-nodes", "-subj",
            subject,
        ]);
        self.run(&[
            "x509", "-req", "-sha256", "-days", "365", "-in", &csr, "-signkey", &key, "-out", &crt,
        ]);
    }

    /// A client certificate `<name>.crt` of the CA `<ca>.crt`/`<ca>.key` as PREREQUISITES.md
    /// makes it (v1), or v3 with `extensions` (an extfile's lines).
    fn client(&self, name: &str, subject: &str, ca: &str, serial: &str, extensions: &str) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        self.run(&[
            "req", "-new", "-newkey", "rsa:2048", "-keyout", &key, "-out", &csr, "-nodes", "-subj",
            subject,
        ]);
        let mut args = vec![
            "x509",
            "-req",
            "-sha256",
            "-days",
            "365",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            serial,
            "-out",
            &crt,
        ];
        let ext = format!("{name}.ext");
        if !extensions.is_empty() {
            self.write(&ext, extensions);
            args.extend(["-extfile", &ext]);
        }
        self.run(&args);
    }

    /// An rcgen certificate and key as `<name>.crt`/`<name>.key`, to sign with the CLI.
    fn import(&self, name: &str, issued: &Issued) {
        self.write(&format!("{name}.crt"), &issued.cert.pem());
        self.write(&format!("{name}.key"), &issued.key.serialize_pem());
    }

    fn pem(&self, name: &str) -> String {
        String::from_utf8(self.read(&format!("{name}.crt"))).unwrap()
    }

    fn der(&self, name: &str) -> CertificateDer<'static> {
        let (crt, der) = (format!("{name}.crt"), format!("{name}.der"));
        self.run(&["x509", "-in", &crt, "-outform", "DER", "-out", &der]);
        self.read(&der).into()
    }

    /// The X.509 version `openssl x509 -text` reports (1 or 3).
    fn version(&self, name: &str) -> u8 {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in", &format!("{name}.crt")])
            .current_dir(self.dir.path())
            .output()
            .expect("openssl CLI");
        let text = String::from_utf8_lossy(&out.stdout);
        let at = text.find("Version: ").expect("a version line") + "Version: ".len();
        text[at..at + 1].parse().unwrap()
    }

    /// `<name>.crt` and `intermediates` as sent, with the key of `<name>.crt`.
    fn presented(&self, name: &str, intermediates: &[CertificateDer<'static>]) -> Presented {
        let (key, p8) = (format!("{name}.key"), format!("{name}.p8"));
        self.run(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER", "-out", &p8,
        ]);
        let mut chain = vec![self.der(name)];
        chain.extend_from_slice(intermediates);
        (chain, PrivateKeyDer::Pkcs8(self.read(&p8).into()))
    }
}

/// ingress-nginx's own recipe (PREREQUISITES.md) makes v1 client certificates, which nginx
/// (OpenSSL) verifies: with `on`, one of `ca.crt` is served with `ssl-client-verify: SUCCESS`
/// and its subject, over TLS 1.3 and 1.2 (the handshake checks the client's signature with the
/// v1 certificate's key); a v1 certificate of another CA is nginx's 400, an HTTP answer, not a
/// failed handshake. A self-signed v1 CA in `ca.crt` anchors v1 and v3 client certificates.
/// `optional_no_ca` passes a v1 certificate of an unknown CA on with OpenSSL's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_client_certificates_as_ingress_nginx_makes_them() {
    let ssl = OpenSsl::new();
    ssl.ca("ca", "/CN=My Cert Authority");
    ssl.client("client", "/CN=My Client", "ca", "02", "");
    ssl.ca("other", "/CN=Other Authority");
    ssl.client("stranger", "/CN=My Client", "other", "02", "");
    ssl.v1_ca("old", "/CN=Old Authority");
    ssl.client("old-v1", "/O=Acme/CN=old v1", "old", "03", "");
    ssl.client(
        "old-v3",
        "/O=Acme/CN=old v3",
        "old",
        "04",
        "extendedKeyUsage=clientAuth\n",
    );
    assert_eq!(
        ssl.version("client"),
        1,
        "the recipe makes a v1 certificate"
    );
    assert_eq!(ssl.version("old"), 1);
    assert_eq!(ssl.version("old-v1"), 1);
    assert_eq!(ssl.version("old-v3"), 3);

    let pod = backend("a");
    let cas = format!("{}{}", ssl.pem("ca"), ssl.pem("old"));
    let (proxy, snap) = serve(
        pod.addr,
        &[
            secret("ca", &[("ca.crt", &cas)]),
            ingress("on", "on.example.com", &[("auth-tls-secret", "default/ca")]),
            ingress(
                "noca",
                "noca.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-client", "optional_no_ca"),
                ],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let on = "on.example.com";
    for tls12 in [false, true] {
        let a = https_presenting(
            &proxy,
            on,
            on,
            Some(ssl.presented("client", &[])),
            &[],
            tls12,
        )
        .await;
        assert_eq!(a.got.status, StatusCode::OK, "TLS 1.2 only: {tls12}");
        assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
        assert_eq!(a.at_pod("ssl-client-subject-dn"), "CN=My Client");
        assert_eq!(a.at_pod("ssl-client-issuer-dn"), "CN=My Cert Authority");
    }
    for (name, subject) in [
        ("old-v1", "CN=old v1,O=Acme"),
        ("old-v3", "CN=old v3,O=Acme"),
    ] {
        let a = https_presenting(&proxy, on, on, Some(ssl.presented(name, &[])), &[], false).await;
        assert_eq!(a.got.status, StatusCode::OK, "{name}");
        assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS", "{name}");
        assert_eq!(a.at_pod("ssl-client-subject-dn"), subject);
    }

    let before = pod.requests();
    let a = https_presenting(
        &proxy,
        on,
        on,
        Some(ssl.presented("stranger", &[])),
        &[],
        false,
    )
    .await;
    assert_eq!(a.got.status, StatusCode::BAD_REQUEST);
    assert_eq!(pod.requests(), before, "the pod sees no refused request");

    let noca = "noca.example.com";
    let a = https_presenting(
        &proxy,
        noca,
        noca,
        Some(ssl.presented("stranger", &[])),
        &[],
        false,
    )
    .await;
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(
        a.at_pod("ssl-client-verify"),
        "FAILED:unable to get local issuer certificate"
    );
}

/// A self-signed client certificate made the usual way (`openssl req -x509 -newkey rsa:2048
/// -nodes -subj /CN=mallory`: CA:TRUE) is, as nginx serves it with `optional_no_ca`, passed on
/// with `ssl-client-verify: FAILED:self-signed certificate` (OpenSSL's
/// X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, one of `ngx_ssl_verify_error_optional`'s), and is
/// nginx's 400 with `on`; one such CA certificate that `ca.crt` signed is verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_ca_certificates_as_openssl_req_makes_them() {
    let ssl = OpenSsl::new();
    ssl.ca("ca", "/CN=My Cert Authority");
    ssl.ca("mallory", "/CN=mallory");
    ssl.client(
        "ca-signed",
        "/CN=ca signed",
        "ca",
        "05",
        "basicConstraints=CA:TRUE\n",
    );
    let pod = backend("a");
    let (proxy, snap) = serve(
        pod.addr,
        &[
            secret("ca", &[("ca.crt", &ssl.pem("ca"))]),
            ingress("on", "on.example.com", &[("auth-tls-secret", "default/ca")]),
            ingress(
                "noca",
                "noca.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-client", "optional_no_ca"),
                ],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let (on, noca) = ("on.example.com", "noca.example.com");
    let mallory = || Some(ssl.presented("mallory", &[]));
    let a = https_presenting(&proxy, noca, noca, mallory(), &[], false).await;
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(
        a.at_pod("ssl-client-verify"),
        "FAILED:self-signed certificate"
    );
    assert_eq!(a.at_pod("ssl-client-subject-dn"), "CN=mallory");
    let before = pod.requests();
    let a = https_presenting(&proxy, on, on, mallory(), &[], false).await;
    assert_eq!(a.got.status, StatusCode::BAD_REQUEST);
    assert_eq!(pod.requests(), before);
    let a = https_presenting(
        &proxy,
        on,
        on,
        Some(ssl.presented("ca-signed", &[])),
        &[],
        false,
    )
    .await;
    assert_eq!(a.got.status, StatusCode::OK);
    assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
}

/// v1 client certificates below an intermediate follow the rules v3 chains do:
/// `auth-tls-verify-depth` counts the intermediates (OpenSSL 1.1+), and with `ca.crl` each
/// certificate below the root must be covered by a CRL of its issuer, the client's listed one
/// revoked (`X509_V_FLAG_CRL_CHECK_ALL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_chains_follow_depth_and_revocation() {
    let ca = root("Root CA");
    let int = intermediate(&ca, "Int CA");
    let int2 = intermediate(&int, "Int 2");
    let ssl = OpenSsl::new();
    ssl.import("int", &int);
    ssl.import("int2", &int2);
    ssl.client("leaf", "/O=Acme/CN=leaf", "int", "02", "");
    ssl.client("deep", "/O=Acme/CN=deep", "int2", "03", "");
    assert_eq!(ssl.version("leaf"), 1);
    let pod = backend("a");
    let clean = format!("{}{}", crl(&ca, &[]), crl(&int, &[7]));
    let revoking = format!("{}{}", crl(&ca, &[]), crl(&int, &[2]));
    let (proxy, snap) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            secret("clean", &[("ca.crt", &ca.cert.pem()), ("ca.crl", &clean)]),
            secret(
                "revoking",
                &[("ca.crt", &ca.cert.pem()), ("ca.crl", &revoking)],
            ),
            secret(
                "half",
                &[("ca.crt", &ca.cert.pem()), ("ca.crl", &crl(&ca, &[]))],
            ),
            ingress("d1", "d1.example.com", &[("auth-tls-secret", "default/ca")]),
            ingress(
                "d2",
                "d2.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-depth", "2"),
                ],
            ),
            ingress(
                "clean",
                "clean.example.com",
                &[("auth-tls-secret", "default/clean")],
            ),
            ingress(
                "revoking",
                "revoking.example.com",
                &[("auth-tls-secret", "default/revoking")],
            ),
            ingress(
                "half",
                "half.example.com",
                &[("auth-tls-secret", "default/half")],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let deep = || ssl.presented("deep", &[int2.der(), int.der()]);
    for (host, want) in [
        ("d1.example.com", StatusCode::BAD_REQUEST),
        ("d2.example.com", StatusCode::OK),
    ] {
        let a = https_presenting(&proxy, host, host, Some(deep()), &[], false).await;
        assert_eq!(a.got.status, want, "{host} with two intermediates");
    }
    for (host, want) in [
        ("d1.example.com", StatusCode::OK),
        ("clean.example.com", StatusCode::OK),
        ("revoking.example.com", StatusCode::BAD_REQUEST),
        // No CRL of the intermediate: the client's revocation status is unknown.
        ("half.example.com", StatusCode::BAD_REQUEST),
    ] {
        let chain = ssl.presented("leaf", &[int.der()]);
        let a = https_presenting(&proxy, host, host, Some(chain), &[], false).await;
        assert_eq!(a.got.status, want, "{host}");
        if want == StatusCode::OK {
            assert_eq!(a.at_pod("ssl-client-verify"), "SUCCESS");
            assert_eq!(a.at_pod("ssl-client-issuer-dn"), "CN=Int CA,O=Acme");
        }
    }
    // Only the leaf, without the intermediate it needs: no chain.
    let a = https_presenting(
        &proxy,
        "d1.example.com",
        "d1.example.com",
        Some(ssl.presented("leaf", &[])),
        &[],
        false,
    )
    .await;
    assert_eq!(a.got.status, StatusCode::BAD_REQUEST);
}

/// A "certificate" that is no X.509 at all does not end the handshake with an alert: the
/// request gets nginx's 400 with `on`, and `optional_no_ca` passes the failure upstream in
/// `ssl-client-verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_certificate_is_a_400_not_a_handshake_alert() {
    let ca = root("Test CA");
    let pod = backend("a");
    let (proxy, snap) = serve(
        pod.addr,
        &[
            ca_secret("ca", &[&ca]),
            ingress("on", "on.example.com", &[("auth-tls-secret", "default/ca")]),
            ingress(
                "noca",
                "noca.example.com",
                &[
                    ("auth-tls-secret", "default/ca"),
                    ("auth-tls-verify-client", "optional_no_ca"),
                ],
            ),
        ],
    )
    .await;
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let garbage = || -> Presented {
        let key = KeyPair::generate().unwrap();
        (
            vec![CertificateDer::from(b"not a certificate".to_vec())],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    };
    for tls12 in [false, true] {
        let on = "on.example.com";
        let a = https_presenting(&proxy, on, on, Some(garbage()), &[], tls12).await;
        assert_eq!(
            a.got.status,
            StatusCode::BAD_REQUEST,
            "TLS 1.2 only: {tls12}"
        );
        let noca = "noca.example.com";
        let a = https_presenting(&proxy, noca, noca, Some(garbage()), &[], tls12).await;
        assert_eq!(a.got.status, StatusCode::OK);
        assert_eq!(
            a.at_pod("ssl-client-verify"),
            "FAILED:unable to decode certificate"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway API: `spec.tls.frontend` (client-certificate validation in the handshake).

/// Certificates as sent (leaf first) and the leaf, whose key signs.
type Chain<'a> = (&'a [&'a Issued], &'a Issued);

/// A TLS handshake and one HTTP/1.1 request to `addr` with SNI and Host `host`, presenting
/// `chain` if asked: the status, or `None` when the connection failed (handshake refused, or,
/// with TLS 1.3, the server's alert on the first read), which is what the conformance suite's
/// `MakeTLSRequestAndExpectFailureResponse` accepts as a refusal.
async fn gateway_request(
    addr: SocketAddr,
    host: &str,
    chain: Option<Chain<'_>>,
) -> (Option<u16>, bool) {
    use http_body_util::BodyExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = chain.map(presented).map(|(der, key)| {
        let signer = provider.key_provider.load_private_key(key).unwrap();
        Arc::new(rustls::sign::CertifiedKey::new(der, signer))
    });
    let presenter = Arc::new(Presenter {
        certified,
        asked: false.into(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(
            Arc::clone(&provider),
            Default::default(),
        )))
        .with_client_cert_resolver(Arc::clone(&presenter) as Arc<_>);
    let asked = || presenter.asked.load(std::sync::atomic::Ordering::SeqCst);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let Ok(stream) = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(host.to_string()).unwrap(), tcp)
        .await
    else {
        return (None, asked());
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
        return (None, asked());
    };
    tokio::spawn(conn);
    let r = http::Request::builder()
        .uri("/")
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let status = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sender.send_request(r),
    )
    .await
    {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            Some(status)
        }
        _ => None,
    };
    (status, asked())
}

/// GatewayFrontendClientCertificateValidation and ...InsecureFallback (Gateway API v1.6
/// `FrontendTLSValidation`): `AllowValidOnly` lets through only a client whose certificate
/// chains to the listener's CA; a certificate of another CA (the other port's) or none fails
/// the connection, with the certificate asked for in the handshake. A `perPort` entry
/// replaces `default` on its port; `AllowInsecureFallback` asks but lets every client
/// through. The HTTP listener is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_frontend_client_certificate_validation() {
    let default_ca = root("Default CA");
    let port_ca = root("Per-port CA");
    let alice = client(&default_ca, "alice", 20);
    let bob = client(&port_ca, "bob", 21);
    let pod = backend("gw");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let extra = testbed::ports::reserve(2);
    let (cert, key) =
        xdp_ingress::proxy::tls::self_signed_pem(&["example.org", "second-example.org"]).unwrap();
    let ca_map = |name: &str, ca: &Issued| {
        let pem: String = ca
            .cert
            .pem()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default}}\ndata:\n  ca.crt: |\n{pem}"
        )
    };
    let manifests = |mode: &str| {
        format!(
            r#"{svc}{ca}{port_ca}{tls}---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default: {{validation: {{mode: {mode}, caCertificateRefs: [{{group: "", kind: ConfigMap, name: default-ca}}]}}}}
      perPort:
      - port: {second}
        tls: {{validation: {{mode: {mode}, caCertificateRefs: [{{group: "", kind: ConfigMap, name: port-ca}}]}}}}
  listeners:
  - {{name: http, port: {http}, protocol: HTTP}}
  - {{name: https, port: {https}, protocol: HTTPS, tls: {{certificateRefs: [{{name: gw-tls}}]}}}}
  - {{name: https-with-hostname, port: {second}, hostname: second-example.org, protocol: HTTPS, tls: {{certificateRefs: [{{name: gw-tls}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: gw, port: 80}}]}}]
"#,
            svc = service_yaml("gw", pod.addr),
            ca = ca_map("default-ca", &default_ca),
            port_ca = ca_map("port-ca", &port_ca),
            tls = tls_secret_yaml("gw-tls", &cert, &key),
            http = proxy.http().port(),
            https = proxy.https().port(),
            second = extra,
        )
    };
    let ports = xdp_ingress::model::translate::gateway::ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        gateway_range: format!("{extra}").parse().unwrap(),
    };
    let snap = translate_manifests(1, &manifests("AllowValidOnly"), |c| c.gateway_ports = ports);
    proxy.handle.apply(Arc::clone(&snap));
    let second: SocketAddr = ([127, 0, 0, 1], extra).into();
    let https = proxy.https();
    // (address, host, presented, status or None for a refused connection).
    let cases: [(SocketAddr, &str, Option<Chain<'_>>, Option<u16>); 6] = [
        (https, "example.org", Some((&[&alice], &alice)), Some(200)),
        (https, "example.org", Some((&[&bob], &bob)), None),
        (https, "example.org", None, None),
        (
            second,
            "second-example.org",
            Some((&[&bob], &bob)),
            Some(200),
        ),
        (
            second,
            "second-example.org",
            Some((&[&alice], &alice)),
            None,
        ),
        (second, "second-example.org", None, None),
    ];
    for (addr, host, chain, want) in cases {
        let (got, asked) = gateway_request(addr, host, chain).await;
        assert_eq!(got, want, "AllowValidOnly, {addr} {host}");
        assert!(
            asked || chain.is_none(),
            "asked for a certificate at {addr}"
        );
    }
    let plain = l7common::get(&http1_client(), proxy.http(), "example.org", "/").await;
    assert_eq!(plain.status, StatusCode::OK);

    // AllowInsecureFallback: asked for, every client let through.
    let snap = translate_manifests(2, &manifests("AllowInsecureFallback"), |c| {
        c.gateway_ports = ports
    });
    proxy.handle.apply(Arc::clone(&snap));
    for (addr, host, chain, _) in cases {
        let (got, asked) = gateway_request(addr, host, chain).await;
        assert_eq!(got, Some(200), "AllowInsecureFallback, {addr} {host}");
        assert!(asked, "still asked for a certificate at {addr}");
    }
}

/// A TLS backend for `abc.example.com` that requires a client certificate of `ca` (rustls'
/// WebPKI client verifier) and answers each request on a connection with 200 and the
/// number of certificates the client presented; a client without one fails the handshake.
async fn mtls_backend(ca: &Issued) -> (SocketAddr, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (crt, key) = xdp_ingress::proxy::tls::self_signed_pem(&["abc.example.com"]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
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
                let presented = tls.get_ref().1.peer_certificates().map_or(0, |c| c.len());
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from(format!(
                            "client certificates: {presented}"
                        ))),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, crt)
}

/// GatewayBackendClientCertificate (Gateway API v1.6 `GatewayBackendTLSConfig`): with
/// `spec.tls.backend.clientCertificateRef`, the proxy presents that certificate to a backend
/// a BackendTLSPolicy verifies, and a backend that requires one serves the request; without
/// it, the backend refuses the handshake and the client gets 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tls_backend_client_certificate() {
    let ca = root("Backend client CA");
    let gateway_client = client(&ca, "gateway", 30);
    let (backend, backend_crt) = mtls_backend(&ca).await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let indented: String = backend_crt.lines().map(|l| format!("    {l}\n")).collect();
    let manifests = |backend_tls: &str| {
        format!(
            r#"{svc}{client_tls}---
apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca, namespace: default}}
data:
  ca.crt: |
{indented}---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: xdp
{backend_tls}  listeners: [{{name: http, port: {http}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: p, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web}}]
  validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}], hostname: abc.example.com}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [abc.example.com]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
"#,
            svc = service_yaml("web", backend),
            client_tls = tls_secret_yaml(
                "client-tls",
                &gateway_client.cert.pem(),
                &gateway_client.key.serialize_pem()
            ),
            http = proxy.http().port(),
        )
    };
    let ports = xdp_ingress::model::translate::gateway::ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        ..Default::default()
    };
    let with = manifests("  tls: {backend: {clientCertificateRef: {name: client-tls}}}\n");
    proxy
        .handle
        .apply(translate_manifests(1, &with, |c| c.gateway_ports = ports));
    let g = l7common::get(&http1_client(), proxy.http(), "abc.example.com", "/").await;
    assert_eq!(g.status, StatusCode::OK, "{:?}", g.body);
    assert_eq!(&g.body[..], b"client certificates: 1");
    proxy
        .handle
        .apply(translate_manifests(2, &manifests(""), |c| {
            c.gateway_ports = ports
        }));
    let g = l7common::get(&http1_client(), proxy.http(), "abc.example.com", "/").await;
    assert_eq!(g.status, StatusCode::BAD_GATEWAY);
}

/// The controller ConfigMap's TLS keys apply to a host that asks for client certificates as to
/// every other (ingress-nginx writes them in the `http` block, which every server inherits):
/// with `ssl-protocols: TLSv1.3` a TLS 1.2 client cannot reach the mTLS host, and with
/// `use-http2: "false"` its handshake offers no h2; the certificate is still asked for and
/// verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_tls_settings_apply_to_client_certificate_hosts() {
    let ca = root("Test CA");
    let alice = client(&ca, "alice", 90);
    let pod = backend("a");
    let host = "mtls.example.com";
    let yaml = [
        service_yaml("web", pod.addr),
        ca_secret("ca", &[&ca]),
        ingress("app", host, &[("auth-tls-secret", "default/ca")]),
        configmap_yaml(&[("ssl-protocols", "TLSv1.3"), ("use-http2", "false")]),
    ]
    .concat();
    let snap = translate_manifests(1, &yaml, |c| {
        c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"))
    });
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(snap);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls12 = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(provider, Default::default())))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(proxy.https()).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(tls12))
        .connect(ServerName::try_from(host).unwrap(), tcp)
        .await;
    assert!(refused.is_err(), "TLS 1.2 with ssl-protocols: TLSv1.3");

    let (s, presenter) = connect(
        &proxy,
        host,
        Some((&[&alice], &alice)),
        &[b"h2", b"http/1.1"],
    )
    .await;
    assert!(presenter.asked.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let g = request_over(s, false, req(proxy.https(), host, "/")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.json()["headers"]["ssl-client-verify"], "SUCCESS");
}
