//! The controller ConfigMap's client-facing TLS keys as a client sees them (ingress-nginx's
//! `ssl-protocols`, `ssl-ciphers`, `ssl-ecdh-curve`, `use-http2`, `ssl-session-tickets`,
//! `ssl-reject-handshake`): rustls clients pinned to versions, suites and groups complete or
//! fail the handshake against the in-process proxy, and say what was negotiated.

mod l7common;

use std::{net::SocketAddr, sync::Arc};

use http::StatusCode;
use l7common::*;
use rustls::{
    ClientConfig, HandshakeKind, ProtocolVersion, SupportedCipherSuite, SupportedProtocolVersion,
    crypto::{SupportedKxGroup, ring},
    pki_types::ServerName,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use xdp_ingress::{model::Snapshot, proxy::tls::self_signed_pem};

const HOST: &str = "tls.test";

/// A Service, an Ingress for [`HOST`] with `spec.tls` (a self-signed ECDSA P-256 certificate,
/// rcgen's default key) and the ConfigMap `ingress-nginx/cm` with `data`.
fn site(backend: SocketAddr, data: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    let (cert, key) = self_signed_pem(&[HOST]).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        r#"{service}apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: site, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  tls:
  - {{hosts: [{HOST}], secretName: site-tls}}
  rules:
  - host: {HOST}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: site-tls, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
{cm}"#,
        service = service_yaml("web", backend),
        crt = b64(&cert),
        key = b64(&key),
        cm = configmap_yaml(data),
    )
}

fn translated(version: u64, yaml: &str) -> Arc<Snapshot> {
    translate_manifests(version, yaml, |c| {
        c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"))
    })
}

/// What a test client offers: `None` keeps rustls's defaults.
#[derive(Default)]
struct Offer {
    versions: Option<Vec<&'static SupportedProtocolVersion>>,
    suites: Option<Vec<SupportedCipherSuite>>,
    groups: Option<Vec<&'static dyn SupportedKxGroup>>,
    alpn: Vec<&'static [u8]>,
}

impl Offer {
    fn versions(v: &[&'static SupportedProtocolVersion]) -> Offer {
        Offer {
            versions: Some(v.to_vec()),
            ..Offer::default()
        }
    }

    fn config(self) -> Arc<ClientConfig> {
        let mut provider = ring::default_provider();
        if let Some(s) = self.suites {
            provider.cipher_suites = s;
        }
        if let Some(g) = self.groups {
            provider.kx_groups = g;
        }
        let provider = Arc::new(provider);
        let versions = self
            .versions
            .unwrap_or_else(|| vec![&rustls::version::TLS13, &rustls::version::TLS12]);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut cfg = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recorder(provider, seen)))
            .with_no_client_auth();
        cfg.alpn_protocols = self.alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A handshake with `cfg` naming `sni` (`None`: no SNI, as a client connecting by address).
async fn handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    cfg: &Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::clone(cfg))
        .connect(name, tcp)
        .await
}

fn version(s: &TlsStream<TcpStream>) -> Option<ProtocolVersion> {
    s.get_ref().1.protocol_version()
}

/// `ssl-protocols` (default "TLSv1.2 TLSv1.3"): `TLSv1.3` alone refuses a TLS 1.2 client, as
/// nginx's `ssl_protocols TLSv1.3` does (a handshake failure); `TLSv1.2` alone refuses a
/// client that offers only 1.3 and serves a default client over 1.2; a list of only versions
/// rustls cannot speak (`TLSv1 TLSv1.1`) offers the default. Found by the key's row in the
/// support table ("not yet").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_protocols_decide_the_versions_offered() {
    let app = backend("app");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let (tls12, tls13) = (
        Offer::versions(&[&rustls::version::TLS12]).config(),
        Offer::versions(&[&rustls::version::TLS13]).config(),
    );
    let any = Offer::default().config();

    proxy.handle.apply(translated(1, &site(app.addr, &[])));
    let s = handshake(proxy.https(), Some(HOST), &tls12).await.unwrap();
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_2));
    let s = handshake(proxy.https(), Some(HOST), &any).await.unwrap();
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_3));

    let only13 = site(app.addr, &[("ssl-protocols", "TLSv1.3")]);
    proxy.handle.apply(translated(2, &only13));
    assert!(handshake(proxy.https(), Some(HOST), &tls12).await.is_err());
    let s = handshake(proxy.https(), Some(HOST), &tls13).await.unwrap();
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_3));
    let g = request_over(s, false, req(proxy.https(), HOST, "/v13")).await;
    assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));

    let only12 = site(app.addr, &[("ssl-protocols", "TLSv1.2")]);
    proxy.handle.apply(translated(3, &only12));
    assert!(handshake(proxy.https(), Some(HOST), &tls13).await.is_err());
    let s = handshake(proxy.https(), Some(HOST), &any).await.unwrap();
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_2));

    let old = site(app.addr, &[("ssl-protocols", "TLSv1 TLSv1.1")]);
    let snapshot = translated(4, &old);
    assert!(
        (snapshot.diagnostics.iter()).any(|d| d.message.contains("ssl-protocols")),
        "{:?}",
        snapshot.diagnostics
    );
    proxy.handle.apply(snapshot);
    let s = handshake(proxy.https(), Some(HOST), &tls12).await.unwrap();
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_2));
    let s = handshake(proxy.https(), Some(HOST), &tls13).await.unwrap();
    assert_eq!(version(&s), Some(ProtocolVersion::TLSv1_3));
}

/// `ssl-ciphers`: the TLS 1.2 suites offered, in the server's order (ingress-nginx's
/// `ssl_prefer_server_ciphers on`): a client preferring AES-128-GCM gets ChaCha20 when the
/// string lists it first, and a client offering only a suite the string leaves out fails the
/// handshake; TLS 1.3 is not governed by it (every TLS 1.3 suite still works).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_ciphers_choose_tls12_suites_in_server_order() {
    use ring::cipher_suite as cs;
    let app = backend("app");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let tls12 = |suites: Vec<SupportedCipherSuite>| {
        Offer {
            versions: Some(vec![&rustls::version::TLS12]),
            suites: Some(suites),
            ..Offer::default()
        }
        .config()
    };
    let prefers_aes128 = tls12(vec![
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]);
    let suite = |s: &TlsStream<TcpStream>| s.get_ref().1.negotiated_cipher_suite().unwrap().suite();

    // ingress-nginx's default order puts AES-128-GCM first.
    proxy.handle.apply(translated(1, &site(app.addr, &[])));
    let s = handshake(proxy.https(), Some(HOST), &prefers_aes128)
        .await
        .unwrap();
    assert_eq!(
        suite(&s),
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite()
    );

    let ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
                   ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384";
    let snapshot = translated(2, &site(app.addr, &[("ssl-ciphers", ciphers)]));
    assert!(
        (snapshot.diagnostics.iter()).any(|d| d.message.contains("DHE-RSA-AES256-GCM-SHA384")),
        "{:?}",
        snapshot.diagnostics
    );
    proxy.handle.apply(snapshot);
    let s = handshake(proxy.https(), Some(HOST), &prefers_aes128)
        .await
        .unwrap();
    assert_eq!(
        suite(&s),
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256.suite()
    );
    let g = request_over(s, false, req(proxy.https(), HOST, "/chacha")).await;
    assert_eq!(g.status, StatusCode::OK);
    let only_aes128 = tls12(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]);
    assert!(
        handshake(proxy.https(), Some(HOST), &only_aes128)
            .await
            .is_err()
    );
    for s13 in [
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let c = Offer {
            suites: Some(vec![s13]),
            ..Offer::default()
        }
        .config();
        let s = handshake(proxy.https(), Some(HOST), &c).await.unwrap();
        assert_eq!(suite(&s), s13.suite());
    }

    // OpenSSL keywords: `HIGH:!aNULL:!MD5` keeps every suite rustls has.
    let high = site(app.addr, &[("ssl-ciphers", "HIGH:!aNULL:!MD5")]);
    proxy.handle.apply(translated(3, &high));
    let s = handshake(proxy.https(), Some(HOST), &only_aes128)
        .await
        .unwrap();
    assert_eq!(
        suite(&s),
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite()
    );
}

/// `ssl-ecdh-curve`: the key-exchange groups, in order: `secp384r1` alone refuses a client
/// with only X25519 and P-256 and uses P-384 with a client that has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_ecdh_curve_picks_the_groups() {
    use ring::kx_group;
    let app = backend("app");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let with = |groups: Vec<&'static dyn SupportedKxGroup>| {
        Offer {
            groups: Some(groups),
            ..Offer::default()
        }
        .config()
    };
    let group = |s: &TlsStream<TcpStream>| {
        s.get_ref()
            .1
            .negotiated_key_exchange_group()
            .unwrap()
            .name()
    };
    let no_p384 = with(vec![kx_group::X25519, kx_group::SECP256R1]);
    let both = with(vec![kx_group::X25519, kx_group::SECP384R1]);

    proxy.handle.apply(translated(1, &site(app.addr, &[])));
    let s = handshake(proxy.https(), Some(HOST), &both).await.unwrap();
    assert_eq!(group(&s), kx_group::X25519.name());

    let p384 = site(app.addr, &[("ssl-ecdh-curve", "secp384r1")]);
    proxy.handle.apply(translated(2, &p384));
    assert!(
        handshake(proxy.https(), Some(HOST), &no_p384)
            .await
            .is_err()
    );
    let s = handshake(proxy.https(), Some(HOST), &both).await.unwrap();
    assert_eq!(group(&s), kx_group::SECP384R1.name());
    // Over TLS 1.2 too.
    let tls12 = Offer {
        versions: Some(vec![&rustls::version::TLS12]),
        groups: Some(vec![kx_group::X25519, kx_group::SECP384R1]),
        ..Offer::default()
    }
    .config();
    let s = handshake(proxy.https(), Some(HOST), &tls12).await.unwrap();
    assert_eq!(group(&s), kx_group::SECP384R1.name());
}

/// `use-http2: "false"`: ALPN offers only http/1.1, so a browser offering h2 and http/1.1
/// speaks HTTP/1.1 (nginx without `http2 on`), and the plain port no longer takes HTTP/2 with
/// prior knowledge (nginx detects the HTTP/2 preface on plain listeners only with `http2
/// on`); the default offers both again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_http2_false_offers_http11_only() {
    let app = backend("app");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let browser = Offer {
        alpn: vec![b"h2", b"http/1.1"],
        ..Offer::default()
    }
    .config();
    let alpn = |s: &TlsStream<TcpStream>| s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);

    proxy
        .handle
        .apply(translated(1, &site(app.addr, &[("use-http2", "false")])));
    let s = handshake(proxy.https(), Some(HOST), &browser)
        .await
        .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"http/1.1"[..]));
    let g = request_over(s, false, req(proxy.https(), HOST, "/h1")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(
        send(&h2c_client(), req(proxy.http(), HOST, "/h2c"))
            .await
            .is_err()
    );
    // nginx answers the preface's `PRI * HTTP/2.0` request line 505 and closes.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let answer = raw(proxy.http(), preface, std::time::Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 505 "), "{answer}");
    // The plain port answers HTTP/1.1 (a redirect to HTTPS for this TLS host).
    let g = get(&http1_client(), proxy.http(), HOST, "/h1").await;
    assert_eq!(g.status, StatusCode::PERMANENT_REDIRECT);

    proxy.handle.apply(translated(2, &site(app.addr, &[])));
    let s = handshake(proxy.https(), Some(HOST), &browser)
        .await
        .unwrap();
    assert_eq!(alpn(&s).as_deref(), Some(&b"h2"[..]));
    let g = request_over(s, true, h2_req(proxy.https(), HOST, "/h2")).await;
    assert_eq!(g.status, StatusCode::OK);
    let g = send(&h2c_client(), req(proxy.http(), HOST, "/h2c")).await;
    assert_eq!(g.unwrap().status, StatusCode::PERMANENT_REDIRECT);
}

/// Session resumption: by default (`ssl-session-tickets: "false"`, ingress-nginx's default)
/// a client resumes from the proxy's session cache (nginx's `ssl_session_cache`), over TLS
/// 1.2 and 1.3; with `"true"` the tickets are stateless (rustls's Ticketer, whose keys the
/// proxy keeps across configuration changes), so a session resumes after the TLS settings
/// changed, which rebuilt the server configurations and their caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumption_with_and_without_tickets() {
    let app = backend("app");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    // The first handshake's session must be stored before the next one starts: a request
    // over it reads the TLS 1.3 tickets the server sends after the handshake.
    let resumed = |cfg: Arc<ClientConfig>| {
        let addr = proxy.https();
        async move {
            let s = handshake(addr, Some(HOST), &cfg).await.unwrap();
            let kind = s.get_ref().1.handshake_kind();
            let g = request_over(s, false, req(addr, HOST, "/")).await;
            assert_eq!(g.status, StatusCode::OK);
            kind == Some(HandshakeKind::Resumed)
        }
    };
    proxy.handle.apply(translated(1, &site(app.addr, &[])));
    for versions in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let c = Offer::versions(&[versions]).config();
        assert!(!resumed(Arc::clone(&c)).await);
        assert!(resumed(c).await, "{versions:?}");
    }

    let tickets = |n, extra: &[(&str, &str)]| {
        let mut data = vec![("ssl-session-tickets", "true")];
        data.extend_from_slice(extra);
        translated(n, &site(app.addr, &data))
    };
    proxy.handle.apply(tickets(2, &[]));
    for (n, versions) in [(3, &rustls::version::TLS12), (4, &rustls::version::TLS13)] {
        let c = Offer::versions(&[versions]).config();
        assert!(!resumed(Arc::clone(&c)).await);
        assert!(resumed(Arc::clone(&c)).await, "{versions:?}");
        // Another TLS setting: new configurations, the same ticket keys.
        let curve = if n == 3 { "X25519:prime256v1" } else { "auto" };
        proxy.handle.apply(tickets(n, &[("ssl-ecdh-curve", curve)]));
        assert!(resumed(c).await, "{versions:?} after a change");
    }
}

/// `ssl-reject-handshake: "true"`: a handshake naming no host the proxy has (or naming none)
/// is refused, as nginx's `ssl_reject_handshake on` in ingress-nginx's default server; hosts
/// are served as before. Without it, the default certificate is served to any name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_reject_handshake_refuses_unknown_names() {
    let app = backend("app");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let any = Offer::default().config();
    let tls12 = Offer::versions(&[&rustls::version::TLS12]).config();

    proxy.handle.apply(translated(1, &site(app.addr, &[])));
    assert!(
        handshake(proxy.https(), Some("unknown.test"), &any)
            .await
            .is_ok()
    );
    assert!(handshake(proxy.https(), None, &any).await.is_ok());

    let reject = site(app.addr, &[("ssl-reject-handshake", "true")]);
    proxy.handle.apply(translated(2, &reject));
    for c in [&any, &tls12] {
        assert!(
            handshake(proxy.https(), Some("unknown.test"), c)
                .await
                .is_err()
        );
        assert!(handshake(proxy.https(), None, c).await.is_err());
        let s = handshake(proxy.https(), Some(HOST), c).await.unwrap();
        let g = request_over(s, false, req(proxy.https(), HOST, "/")).await;
        assert_eq!((g.status, g.pod().as_str()), (StatusCode::OK, "app"));
    }
}
