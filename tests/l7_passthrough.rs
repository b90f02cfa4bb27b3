//! ingress-nginx's `ssl-passthrough` with `--enable-ssl-passthrough`, end to end on loopback:
//! manifests translated as the control plane does, the proxy in-process, a pod that terminates
//! TLS itself with its own certificate. Expected behaviour from ingress-nginx's user guide
//! ("TLS/HTTPS", "SSL Passthrough"), annotations reference ("SSL Passthrough") and its TCP
//! proxy (`pkg/tcpproxy/tcp.go`): SNI naming a passthrough host reaches the pod untouched;
//! any other name, or none, is terminated by the ingress as usual.

mod l7common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::StatusCode;
use l7common::*;
use testbed::http_backend::HttpBackend;
use tokio::{io::AsyncWriteExt, net::TcpStream};
use xdp_ingress::{
    model::{Severity, Snapshot},
    proxy::{ProxyArgs, tls::self_signed_pem},
};

const PASS: &str = "vault.example.com";
const OTHER: &str = "www.example.com";

/// The pods: `vault` serves TLS itself (its own certificate for [`PASS`]), `web` plain HTTP.
struct Pods {
    vault: HttpBackend,
    vault_cert: Vec<u8>,
    web: HttpBackend,
    /// Our certificate for [`OTHER`] (PEM chain, key).
    ours: (String, String),
}

fn pods() -> Pods {
    let (crt, key) = self_signed_pem(&[PASS]).unwrap();
    let vault = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), "vault-pod", &crt, &key)
        .expect("TLS pod");
    let web = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "web-pod").expect("pod");
    Pods {
        vault,
        vault_cert: pem_der(&crt),
        web,
        ours: self_signed_pem(&[OTHER]).unwrap(),
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `vault` (ssl-passthrough, with another annotation) on [`PASS`] `/`; `www` on [`OTHER`] with
/// our certificate.
fn manifests(p: &Pods) -> String {
    let (vault, web) = (
        service_yaml("vault", p.vault.addr),
        service_yaml("web", p.web.addr),
    );
    let (crt, key) = (b64(&p.ours.0), b64(&p.ours.1));
    format!(
        r#"{vault}{web}apiVersion: v1
kind: Secret
metadata: {{name: www-tls, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: vault
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/ssl-passthrough: "true"
    nginx.ingress.kubernetes.io/whitelist-source-range: "192.0.2.0/24"
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {PASS}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: vault, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: www, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  tls: [{{hosts: [{OTHER}], secretName: www-tls}}]
  rules:
  - host: {OTHER}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

fn snapshot(p: &Pods, enabled: bool) -> Arc<Snapshot> {
    translate_manifests(1, &manifests(p), |c| c.enable_ssl_passthrough = enabled)
}

async fn started(p: &Pods, enabled: bool, args: ProxyArgs) -> TestProxy {
    let proxy = TestProxy::start(args).await;
    proxy.handle.apply(snapshot(p, enabled));
    proxy
}

/// One HTTP/1.1 (or, with `h2`, HTTP/2) request for `host` over a TLS connection to `addr`
/// with `sni`; the certificate presented and the answer.
async fn over_tls(addr: SocketAddr, sni: &str, host: &str, h2: bool) -> (Vec<u8>, Got) {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let (s, der) = tls_connect(addr, sni, alpn).await;
    (der, request_over(s, h2, req(addr, host, "/")).await)
}

/// The example: SNI = the passthrough host sees the pod's own certificate and reaches the pod,
/// over HTTP/1.1 and HTTP/2 (ALPN is the pod's business too); counted per host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_of_a_passthrough_host_reaches_the_pod_with_its_own_certificate() {
    let p = pods();
    let proxy = started(&p, true, TestProxy::quiet_args()).await;
    for h2 in [false, true] {
        let (der, got) = over_tls(proxy.https(), PASS, PASS, h2).await;
        assert_eq!(der, p.vault_cert, "the pod's certificate (h2: {h2})");
        assert_eq!(got.status, StatusCode::OK, "{got:?}");
        assert_eq!(got.pod(), "vault-pod");
        // The allowlist of that Ingress is void over TLS: the proxy never saw the request.
        assert!(got.headers.get("x-forwarded-for").is_none());
    }
    // SNI compares without regard to case (RFC 6066 section 3).
    let (der, _) = over_tls(proxy.https(), "VAULT.example.com", PASS, false).await;
    assert_eq!(der, p.vault_cert);
    let text = proxy.handle.metrics_text();
    assert!(
        text.contains(
            "xdp_ingress_ssl_passthrough_connections_total{host=\"vault.example.com\",result=\"passed\"} 3"
        ),
        "{text}"
    );
}

/// A passthrough host whose `/` backend is an ExternalName Service: the connection is passed
/// to the address its name resolves to (at the Service port's target port), as its plain HTTP
/// is proxied to that name; a name that does not resolve closes the connection, counted
/// `unresolved`. (Was closed as `no_endpoint`: the name was never resolved for passthrough.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_host_on_an_external_name_service_reaches_the_name() {
    let p = pods();
    let external = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: vault, namespace: default}}\n\
             spec: {{type: ExternalName, externalName: {name}, \
             ports: [{{name: https, port: 80, targetPort: {}}}]}}\n---\n",
            p.vault.addr.port()
        )
    };
    let yaml =
        |name: &str| manifests(&p).replace(&service_yaml("vault", p.vault.addr), &external(name));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let s = translate_manifests(1, &yaml("localhost"), |c| c.enable_ssl_passthrough = true);
    let errors: Vec<_> = (s.diagnostics.iter())
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    proxy.handle.apply(s);
    let (der, got) = over_tls(proxy.https(), PASS, PASS, false).await;
    assert_eq!(der, p.vault_cert, "the pod's own certificate");
    assert_eq!(
        (got.status, got.pod()),
        (StatusCode::OK, "vault-pod".into())
    );

    proxy.handle.apply(translate_manifests(
        2,
        &yaml("invalid.hostname.invalid"),
        |c| c.enable_ssl_passthrough = true,
    ));
    let tcp = TcpStream::connect(proxy.https()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), tls_try(tcp, PASS)).await;
    assert!(closed.expect("closed in time").is_err());
    let text = proxy.handle.metrics_text();
    assert!(
        text.contains(
            "xdp_ingress_ssl_passthrough_connections_total{host=\"vault.example.com\",result=\"unresolved\"} 1"
        ),
        "{text}"
    );
}

/// Another host on the same port gets our certificate and normal routing; a connection
/// without SNI is terminated here too (ingress-nginx hands both to nginx), and a request for
/// the passthrough host over it is routed, to the pod over HTTPS (nginx's `proxy_pass
/// https://` for a passthrough upstream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_and_no_sni_are_terminated_here() {
    let p = pods();
    let proxy = started(&p, true, TestProxy::quiet_args()).await;
    let (der, got) = over_tls(proxy.https(), OTHER, OTHER, false).await;
    assert_eq!(der, pem_der(&p.ours.0), "our certificate");
    assert_eq!((got.status, got.pod()), (StatusCode::OK, "web-pod".into()));

    // An IP address as the server name: rustls sends no SNI.
    let (der, got) = over_tls(proxy.https(), "127.0.0.1", OTHER, true).await;
    assert_ne!(der, p.vault_cert);
    assert_eq!((got.status, got.pod()), (StatusCode::OK, "web-pod".into()));
    let (der, got) = over_tls(proxy.https(), "127.0.0.1", PASS, false).await;
    assert_ne!(der, p.vault_cert);
    // Routed by us, so the allowlist applies here (ingress-nginx's location on nginx's port).
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{got:?}");
}

/// Plain HTTP for the passthrough host goes to its pod over HTTPS (the pod speaks only TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_for_the_host_reaches_the_pod_over_https() {
    let p = pods();
    let yaml = manifests(&p).replace(
        "    nginx.ingress.kubernetes.io/whitelist-source-range: \"192.0.2.0/24\"\n",
        "",
    );
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translate_manifests(1, &yaml, |c| {
        c.enable_ssl_passthrough = true
    }));
    let g = get(&http1_client(), proxy.http(), PASS, "/plain").await;
    assert_eq!(
        (g.status, g.pod()),
        (StatusCode::OK, "vault-pod".into()),
        "{g:?}"
    );
    assert_eq!(g.json()["path"], "/plain");
}

/// Without `--enable-ssl-passthrough` (the default, as ingress-nginx) the annotation does not
/// pass anything: our certificate, normal routing (to the pod over HTTPS), and a Warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_tls_is_terminated_with_a_warning() {
    let p = pods();
    let snap = snapshot(&p, false);
    let warned: Vec<_> = snap
        .diagnostics
        .iter()
        .filter(|d| d.reason == "SslPassthroughDisabled")
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", snap.diagnostics);
    assert_eq!(warned[0].severity, Severity::Warning);
    assert!(warned[0].message.contains("--enable-ssl-passthrough"));
    let proxy = started(&p, false, TestProxy::quiet_args()).await;
    let (der, got) = over_tls(proxy.https(), PASS, PASS, false).await;
    assert_ne!(der, p.vault_cert, "terminated here");
    // The Ingress's allowlist applies, as every annotation does when we route.
    assert_eq!(got.status, StatusCode::FORBIDDEN, "{got:?}");
    assert!(
        !proxy
            .handle
            .metrics_text()
            .contains("ssl_passthrough_connections_total{")
    );
}

/// With `use-proxy-protocol` the PROXY header is read first and the ClientHello after it; the
/// pod gets the TLS bytes only, no PROXY header (ingress-nginx: `ProxyProtocol: false` for
/// passthrough servers) — a header would break the pod's handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_header_is_read_first_and_not_forwarded() {
    let p = pods();
    let mut args = TestProxy::quiet_args();
    args.use_proxy_protocol = true;
    args.proxy_real_ip_cidr = vec![xdp_ingress::proxy::args::parse_cidr("127.0.0.0/8").unwrap()];
    let proxy = started(&p, true, args).await;
    let mut tcp = TcpStream::connect(proxy.https()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 198.18.0.7 127.0.0.1 4711 443\r\n")
        .await
        .unwrap();
    let (s, der) = tls_over(tcp, PASS, &[b"http/1.1"]).await;
    assert_eq!(der, p.vault_cert);
    let got = request_over(s, false, req(proxy.https(), PASS, "/")).await;
    assert_eq!(
        (got.status, got.pod()),
        (StatusCode::OK, "vault-pod".into())
    );
}

/// ConfigMap `proxy-protocol-header-timeout` (with `use-proxy-protocol` from the ConfigMap
/// too): on the HTTPS port, where ssl-passthrough hosts make the proxy read ClientHellos (as
/// ingress-nginx's TLS proxy, its `ReadHeaderTimeout`), a connection that sends no PROXY
/// header is closed once it passes; the HTTP port keeps nginx's client-header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_its_proxy_header_is_closed_at_the_configmap_timeout() {
    let p = pods();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let cm = configmap_yaml(&[
        ("use-proxy-protocol", "true"),
        ("proxy-protocol-header-timeout", "300ms"),
    ]);
    let snap = translate_manifests(1, &format!("{}{cm}", manifests(&p)), |c| {
        c.enable_ssl_passthrough = true;
        c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"));
    });
    assert!(
        !snap
            .diagnostics
            .iter()
            .any(|d| d.severity != Severity::Info
                && d.message.contains("proxy-protocol-header-timeout")),
        "{:?}",
        snap.diagnostics
    );
    proxy.handle.apply(snap);
    let start = std::time::Instant::now();
    let mut https = TcpStream::connect(proxy.https()).await.unwrap();
    let mut http = TcpStream::connect(proxy.http()).await.unwrap();
    // Generous: the default (5 s) would not close it within 3 s.
    assert!(closed_within(&mut https, Duration::from_secs(3)).await);
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !closed_within(&mut http, Duration::from_millis(500)).await,
        "the HTTP port waits the client-header timeout (60 s)"
    );
    // A header in time still passes the connection on.
    let mut tcp = TcpStream::connect(proxy.https()).await.unwrap();
    tcp.write_all(b"PROXY TCP4 198.18.0.7 127.0.0.1 4711 443\r\n")
        .await
        .unwrap();
    let (s, der) = tls_over(tcp, PASS, &[b"http/1.1"]).await;
    assert_eq!(der, p.vault_cert);
    let got = request_over(s, false, req(proxy.https(), PASS, "/")).await;
    assert_eq!(got.pod(), "vault-pod");
}

/// The ClientHello shares the handshake's deadline (the client-header timeout): one sent a
/// byte at a time is closed as a slow handshake is, and counted as a handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_hello_is_closed_at_the_handshake_deadline() {
    let p = pods();
    let mut args = TestProxy::quiet_args();
    args.client_header_timeout = Duration::from_millis(500);
    let proxy = started(&p, true, args).await;
    // A TLS record header announcing a 512-byte handshake, then its bytes, slowly.
    let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]
        .into_iter()
        .chain(std::iter::repeat(0u8));
    let tcp = TcpStream::connect(proxy.https()).await.unwrap();
    let took = trickle_until_closed(
        tcp,
        hello,
        Duration::from_millis(50),
        Duration::from_secs(5),
    )
    .await
    .expect("closed");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        proxy
            .handle
            .metrics_text()
            .contains("xdp_ingress_tls_handshakes_total{result=\"timeout\"} 1")
    );
}

/// A passthrough host whose pods cannot be reached: the client's connection is closed (as
/// ingress-nginx's dial failure does) and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_pod_closes_the_connection() {
    let p = pods();
    let proxy = started(&p, true, TestProxy::quiet_args()).await;
    let dead = testbed::ports::dead_addr();
    let yaml = manifests(&p).replace(
        &service_yaml("vault", p.vault.addr),
        &service_yaml("vault", dead),
    );
    proxy.handle.apply(translate_manifests(2, &yaml, |c| {
        c.enable_ssl_passthrough = true
    }));
    let tcp = TcpStream::connect(proxy.https()).await.unwrap();
    assert!(tls_try(tcp, PASS).await.is_err());
    assert!(proxy.handle.metrics_text().contains(
        "xdp_ingress_ssl_passthrough_connections_total{host=\"vault.example.com\",result=\"connect_failed\"} 1"
    ));
}

/// Gateway API TLS passthrough on a port of its own (not the proxy's HTTPS port): a Gateway
/// `TLS` listener (`tls.mode: Passthrough`) on that port opens it, as HTTP and HTTPS Gateway
/// listeners open theirs, and each TLSRoute's hostname reaches its own pod untouched (the
/// pod's own certificate). A name no TLSRoute takes, or no SNI, is closed there (Gateway API:
/// a connection no route matches is rejected; no HTTPS listener shares the port), the
/// routes' names are not passed on the HTTPS port, and the port closes when the Gateway goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tls_listener_on_its_own_port_passes_by_sni() {
    const A: &str = "a.pass.example";
    const B: &str = "b.pass.example";
    let tls_pod = |name: &str, pod: &str| {
        let (crt, key) = self_signed_pem(&[name]).unwrap();
        let p = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), pod, &crt, &key)
            .expect("TLS pod");
        (p, pem_der(&crt))
    };
    let ((a, a_cert), (b, b_cert)) = (tls_pod(A, "a-pod"), tls_pod(B, "b-pod"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let port = testbed::ports::reserve(1);
    let ports = xdp_ingress::model::translate::gateway::ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        gateway_range: format!("{port}").parse().unwrap(),
    };
    let class = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp}\nspec: {controllerName: xdp-ingress.dev/controller}\n---\n";
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: pass, namespace: default}}\nspec:\n  gatewayClassName: xdp\n  listeners:\n  - {{name: tls, port: {port}, protocol: TLS, hostname: \"*.pass.example\", tls: {{mode: Passthrough}}}}\n---\n"
    );
    let route = |name: &str, host: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: pass}}]\n  hostnames: [{host}]\n  rules: [{{backendRefs: [{{name: {name}, port: 80}}]}}]\n---\n"
        )
    };
    let services = format!("{}{}", service_yaml("a", a.addr), service_yaml("b", b.addr));
    let yaml = format!(
        "{class}{services}{gateway}{}{}",
        route("a", A),
        route("b", B)
    );
    proxy
        .handle
        .apply(translate_manifests(1, &yaml, |c| c.gateway_ports = ports));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(proxy.handle.gateway_listeners().get(&port), Some(&addr));
    for (name, cert, pod) in [(A, &a_cert, "a-pod"), (B, &b_cert, "b-pod")] {
        let (der, got) = over_tls(addr, name, name, false).await;
        assert_eq!(&der, cert, "{name}: the pod's own certificate");
        assert_eq!((got.status, got.pod()), (StatusCode::OK, pod.to_string()));
    }
    for sni in ["c.pass.example", "other.example", "127.0.0.1"] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        assert!(tls_try(tcp, sni).await.is_err(), "{sni}: closed");
    }
    // The proxy's HTTPS port is not the listener's: the name is terminated there.
    let tcp = TcpStream::connect(proxy.https()).await.unwrap();
    let s = tls_try(tcp, A).await.expect("terminated on the HTTPS port");
    let presented = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_ne!(presented, a_cert);
    // Gone: the port closes.
    proxy
        .handle
        .apply(translate_manifests(2, &format!("{class}{services}"), |c| {
            c.gateway_ports = ports
        }));
    assert!(proxy.handle.gateway_listeners().is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "{port} still accepts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
