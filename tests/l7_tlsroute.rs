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

/// TLSRouteTerminateSimpleSameNamespace, TLSRouteListenerTerminateSupportedKinds and
/// TLSRouteMixedTerminationSameNamespace (features TLSRouteModeTerminate, TLSRouteModeMixed):
/// a `TLS` listener with `tls.mode: Terminate` on a Gateway port of its own presents its
/// certificate, terminates, and passes the plain bytes to the TLSRoute's backend (a plain
/// HTTP pod here: it answers the request sent inside the TLS stream); a Passthrough listener
/// on the same port passes its name untouched (the pod's own certificate); a name no route
/// serves is closed, never terminated; the listeners support TLSRoute and are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_listener_passes_the_plain_bytes() {
    const HOST: &str = "tls.example.com";
    let web = HttpBackend::start("127.0.0.1:0".parse().unwrap(), "plain-pod").expect("pod");
    let (vcrt, vkey) = self_signed_pem(&[VAULT]).unwrap();
    let vault = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), "vault-pod", &vcrt, &vkey)
        .expect("TLS pod");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let port = testbed::ports::reserve(1);
    let (crt, key) = self_signed_pem(&[HOST]).unwrap();
    let services = [
        service_yaml("web", web.addr),
        service_yaml("vault", vault.addr),
    ]
    .concat();
    let yaml = format!(
        r#"{svc}apiVersion: v1
kind: Secret
metadata: {{name: term-tls, namespace: default}}
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
  - name: tlsterminate
    port: {port}
    protocol: TLS
    hostname: {HOST}
    allowedRoutes: {{namespaces: {{from: Same}}, kinds: [{{kind: TLSRoute}}]}}
    tls: {{mode: Terminate, certificateRefs: [{{name: term-tls}}]}}
  - {{name: pass, port: {port}, protocol: TLS, hostname: {VAULT}, tls: {{mode: Passthrough}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: passed, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [{VAULT}]
  rules: [{{backendRefs: [{{name: vault, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: terminated, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: tlsterminate}}]
  hostnames: [{HOST}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
"#,
        svc = services,
        crt = b64(&crt),
        key = b64(&key),
    );
    let ports = ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        gateway_range: format!("{port}").parse().unwrap(),
    };
    let s = translate_manifests(1, &yaml, |c| c.gateway_ports = ports);
    let gw = &s.gateway_status.gateways[&xdp_ingress::model::ObjectRef::new(
        xdp_ingress::model::ObjectKind::Gateway,
        "default",
        "gw",
    )];
    for l in &gw.listeners {
        assert_eq!(
            l.supported_kinds,
            [("gateway.networking.k8s.io".into(), "TLSRoute".into())]
        );
        assert!(
            l.conditions
                .iter()
                .all(|c| c.status != (c.type_ == "Conflicted")),
            "{l:?}"
        );
        assert_eq!(l.attached_routes, 1);
    }
    proxy.handle.apply(s);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    for _ in 0..2 {
        let (stream, der) = tls_connect(addr, HOST, &[b"http/1.1"]).await;
        assert_eq!(der, pem_der(&crt), "the listener's certificate");
        let g = request_over(stream, false, req(addr, HOST, "/plain")).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.pod(), "plain-pod");
        assert_eq!(g.json()["path"], "/plain");
    }
    let (stream, der) = tls_connect(addr, VAULT, &[b"http/1.1"]).await;
    assert_eq!(
        der,
        pem_der(&vcrt),
        "the pod's own certificate, passed through"
    );
    let g = request_over(stream, false, req(addr, VAULT, "/")).await;
    assert_eq!(g.pod(), "vault-pod");
    // Another name on the port: closed before any certificate is presented.
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert!(tls_try(tcp, "other.example.com").await.is_err());
}

/// Conformance TLSRouteHostnameIntersection on the proxy's HTTPS port: with TLS passthrough
/// listeners only there (one without a hostname), a name no TLSRoute takes is closed, not
/// terminated with a default certificate; a name an Ingress serves on the same port is still
/// terminated and routed, and a catch-all Ingress rule (no host) keeps every other name
/// terminated, as ingress-nginx's default server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_names_are_closed_when_only_passthrough_listeners_share_the_https_port() {
    const ING: &str = "ing.example";
    let p = pods();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let ports = ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        ..ProxyPorts::default()
    };
    let https = ports.https;
    let (crt, key) = self_signed_pem(&[ING]).unwrap();
    let ingress = |host: Option<&str>| {
        let rule_host = host.map(|h| format!("host: {h}\n    ")).unwrap_or_default();
        format!(
            r#"---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: ing, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  tls: [{{hosts: [{ING}], secretName: ing-tls}}]
  rules:
  - {rule_host}http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
        )
    };
    let yaml = |ing: String| {
        format!(
            r#"{vault}{web}apiVersion: v1
kind: Secret
metadata: {{name: ing-tls, namespace: default}}
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
  - {{name: pass, port: {https}, protocol: TLS, tls: {{mode: Passthrough}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: vault, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [{VAULT}]
  rules: [{{backendRefs: [{{name: vault, port: 80}}]}}]
{ing}"#,
            vault = service_yaml("vault", p.vault.addr),
            web = service_yaml("web", p.web.addr),
            crt = b64(&crt),
            key = b64(&key),
        )
    };

    // An Ingress for one host: its name terminates, the route's passes, others close.
    let s = translate_manifests(1, &yaml(ingress(Some(ING))), |c| c.gateway_ports = ports);
    proxy.handle.apply(s);
    let (_, der) = tls_connect(proxy.https(), VAULT, &[b"http/1.1"]).await;
    assert_eq!(der, p.vault_cert, "passed to the TLSRoute's pod");
    let (s, der) = tls_connect(proxy.https(), ING, &[b"http/1.1"]).await;
    assert_eq!(der, pem_der(&crt), "the Ingress host is terminated here");
    let got = request_over(s, false, req(proxy.https(), ING, "/")).await;
    assert_eq!((got.status, got.pod()), (StatusCode::OK, "web-pod".into()));
    for sni in ["non.matching.org", "other.pass.example"] {
        let tcp = TcpStream::connect(proxy.https()).await.unwrap();
        assert!(tls_try(tcp, sni).await.is_err(), "{sni} is closed");
    }

    // A catch-all Ingress rule takes every other name: terminated (and routed) here.
    let s = translate_manifests(2, &yaml(ingress(None)), |c| c.gateway_ports = ports);
    proxy.handle.apply(s);
    let tcp = TcpStream::connect(proxy.https()).await.unwrap();
    assert!(
        tls_try(tcp, "non.matching.org").await.is_ok(),
        "terminated for the catch-all rule"
    );
    let (_, der) = tls_connect(proxy.https(), VAULT, &[b"http/1.1"]).await;
    assert_eq!(der, p.vault_cert, "still passed");
}

/// BackendTLSPolicyTLSRouteTerminate: a TLSRoute on a `tls.mode: Terminate` listener whose
/// Service has a BackendTLSPolicy re-encrypts toward the pod, verified with the policy's CA
/// and hostname (the pod, speaking only TLS, answers the request sent inside the client's
/// stream); a policy whose hostname the pod's certificate lacks leaves the connection closed;
/// the policy gets the Gateway as its ancestor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_listener_re_encrypts_to_a_backend_tls_policy_service() {
    const HOST: &str = "tls.example.com";
    const BAD: &str = "bad.example.com";
    let (pod_crt, pod_key) = self_signed_pem(&["abc.example.com"]).unwrap();
    let pod = HttpBackend::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        "tcp-backend",
        &pod_crt,
        &pod_key,
    )
    .expect("TLS pod");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let port = testbed::ports::reserve(1);
    let (crt, key) = self_signed_pem(&[HOST, BAD]).unwrap();
    let ca = pod_crt.replace('\n', "\n    ");
    let yaml = format!(
        r#"{svc}{bad_svc}apiVersion: v1
kind: Secret
metadata: {{name: term-tls, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {key}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: pod-ca, namespace: default}}
data:
  ca.crt: |
    {ca}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: verified, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: tls-pod}}]
  validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: pod-ca}}], hostname: abc.example.com}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: misnamed, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: tls-pod-misnamed}}]
  validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: pod-ca}}], hostname: other.example.com}}
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
  - {{name: term, port: {port}, protocol: TLS, hostname: {HOST}, tls: {{mode: Terminate, certificateRefs: [{{name: term-tls}}]}}}}
  - {{name: bad, port: {port}, protocol: TLS, hostname: {BAD}, tls: {{mode: Terminate, certificateRefs: [{{name: term-tls}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: terminated, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: term}}]
  hostnames: [{HOST}]
  rules: [{{backendRefs: [{{name: tls-pod, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: misnamed, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: bad}}]
  hostnames: [{BAD}]
  rules: [{{backendRefs: [{{name: tls-pod-misnamed, port: 80}}]}}]
"#,
        svc = service_yaml("tls-pod", pod.addr),
        bad_svc = service_yaml("tls-pod-misnamed", pod.addr),
        crt = b64(&crt),
        key = b64(&key),
    );
    let ports = ProxyPorts {
        http: proxy.http().port(),
        https: proxy.https().port(),
        gateway_range: format!("{port}").parse().unwrap(),
    };
    let s = translate_manifests(1, &yaml, |c| c.gateway_ports = ports);
    let ancestors = &s.gateway_status.policies[&xdp_ingress::model::ObjectRef::new(
        xdp_ingress::model::ObjectKind::BackendTLSPolicy,
        "default",
        "verified",
    )];
    assert_eq!(ancestors[0].parent_ref.name, "gw");
    assert!(
        ancestors[0].conditions.iter().all(|c| c.status),
        "{ancestors:?}"
    );
    proxy.handle.apply(s);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (stream, der) = tls_connect(addr, HOST, &[b"http/1.1"]).await;
    assert_eq!(der, pem_der(&crt), "the listener's certificate");
    let g = request_over(stream, false, req(addr, HOST, "/re-encrypted")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.pod(), "tcp-backend");
    assert_eq!(g.json()["path"], "/re-encrypted");
    // The pod's certificate does not name the policy's hostname: nothing reaches it.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tls_try(tcp, BAD).await.expect("terminated here");
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let _ = stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: {BAD}\r\n\r\n").as_bytes())
            .await;
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        buf
    })
    .await
    .expect("closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}
