//! Gateway API TLSRoute passthrough end to end on loopback: manifests translated as the
//! control plane does, the proxy in-process, pods that terminate TLS themselves with their own
//! certificates. Expected behaviour from the Gateway API reference (v1 `Listener` with
//! `tls.mode: Passthrough`, TLSRoute `hostnames`: a wildcard takes one or more labels, the
//! most specific match wins, a connection no route matches is closed) and the decisions of
//! deploy/docs/gateway-api.md (the HTTPS port is shared with terminating listeners).

mod l7common;

use std::sync::Arc;

use http::StatusCode;
use l7common::*;
use testbed::http_backend::HttpBackend;
use tokio::net::TcpStream;
use xdp_ingress::{
    model::{Snapshot, translate::gateway::ProxyPorts},
    proxy::tls::self_signed_pem,
};

const VAULT: &str = "vault.pass.example";
const DEEP: &str = "a.b.deep.pass.example";
const WWW: &str = "www.example";

/// `vault` and `deep` serve TLS themselves (their own certificates), `web` plain HTTP.
struct Pods {
    vault: HttpBackend,
    vault_cert: Vec<u8>,
    deep: HttpBackend,
    deep_cert: Vec<u8>,
    web: HttpBackend,
    /// The HTTPS listener's certificate for [`WWW`] (PEM chain, key).
    ours: (String, String),
}

fn pods() -> Pods {
    let (vcrt, vkey) = self_signed_pem(&[VAULT]).unwrap();
    let (dcrt, dkey) = self_signed_pem(&["*.deep.pass.example"]).unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    Pods {
        vault: HttpBackend::start_tls(any, "vault-pod", &vcrt, &vkey).expect("TLS pod"),
        vault_cert: pem_der(&vcrt),
        deep: HttpBackend::start_tls(any, "deep-pod", &dcrt, &dkey).expect("TLS pod"),
        deep_cert: pem_der(&dcrt),
        web: HttpBackend::start(any, "web-pod").expect("pod"),
        ours: self_signed_pem(&[WWW]).unwrap(),
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One Gateway on the proxy's HTTPS port: a `TLS` passthrough listener for
/// `*.pass.example` with two TLSRoutes (`vault.pass.example`, `*.deep.pass.example`), and an
/// `HTTPS` listener for `www.example` with an HTTPRoute.
fn manifests(p: &Pods, https: u16) -> String {
    let (vault, deep, web) = (
        service_yaml("vault", p.vault.addr),
        service_yaml("deep", p.deep.addr),
        service_yaml("web", p.web.addr),
    );
    let (crt, key) = (b64(&p.ours.0), b64(&p.ours.1));
    format!(
        r#"{vault}{deep}{web}apiVersion: v1
kind: Secret
metadata: {{name: www-tls, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
---
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
  listeners:
  - {{name: pass, port: {https}, protocol: TLS, hostname: "*.pass.example", tls: {{mode: Passthrough}}}}
  - {{name: web, port: {https}, protocol: HTTPS, hostname: {WWW}, tls: {{certificateRefs: [{{name: www-tls}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: vault, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [{VAULT}]
  rules: [{{backendRefs: [{{name: vault, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: deep, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: ["*.deep.pass.example"]
  rules: [{{backendRefs: [{{name: deep, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: www, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: web}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
"#
    )
}

async fn started(p: &Pods) -> (TestProxy, Arc<Snapshot>) {
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let ports = ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        ..ProxyPorts::default()
    };
    let s = translate_manifests(1, &manifests(p, ports.https), |c| c.gateway_ports = ports);
    proxy.handle.apply(s.clone());
    (proxy, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_routes_pass_by_sni_untouched_and_https_listeners_still_terminate() {
    let p = pods();
    let (proxy, snap) = started(&p).await;
    let errors: Vec<_> = snap
        .diagnostics
        .iter()
        .filter(|d| d.severity == xdp_ingress::model::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    // The route's exact hostname: the pod's own certificate reaches the client, and the pod
    // answers over the spliced stream.
    for h2 in [false, true] {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        let (s, der) = tls_connect(proxy.https(), VAULT, alpn).await;
        assert_eq!(der, p.vault_cert, "the backend's certificate (h2: {h2})");
        let got = request_over(s, h2, req(proxy.https(), VAULT, "/")).await;
        assert_eq!(
            (got.status, got.pod()),
            (StatusCode::OK, "vault-pod".into())
        );
    }
    // A wildcard route takes two labels in front of its suffix, and beats the listener's
    // less specific `*.pass.example`.
    let (s, der) = tls_connect(proxy.https(), DEEP, &[b"http/1.1"]).await;
    assert_eq!(der, p.deep_cert);
    let got = request_over(s, false, req(proxy.https(), DEEP, "/")).await;
    assert_eq!(got.pod(), "deep-pod");
    // A name of the passthrough listener that no route serves: closed, nothing terminated.
    for sni in ["nothing.pass.example", "deep.pass.example"] {
        let tcp = TcpStream::connect(proxy.https()).await.unwrap();
        assert!(tls_try(tcp, sni).await.is_err(), "{sni} is closed");
    }
    // The HTTPS listener on the same port terminates with its certificate and routes.
    let (ours, _) = &p.ours;
    let (s, der) = tls_connect(proxy.https(), WWW, &[b"http/1.1"]).await;
    assert_eq!(der, pem_der(ours), "terminated here");
    let got = request_over(s, false, req(proxy.https(), WWW, "/")).await;
    assert_eq!((got.status, got.pod()), (StatusCode::OK, "web-pod".into()));
    let text = proxy.handle.metrics_text();
    assert!(
        text.contains(
            "xdp_ingress_ssl_passthrough_connections_total{host=\"vault.pass.example\",result=\"passed\"} 2"
        ),
        "{text}"
    );
}
