//! Gateway API GRPCRoute and TLSRoute passthrough end to end in the netns bed: the real daemon
//! binary in the node namespace (XDP attached, as deployed) reads a `--manifests` directory,
//! the pods serve in their own namespaces and the client calls the node's address from its
//! own. Expected behaviour from the Gateway API reference (GRPCRoute method matches and
//! weighted `backendRefs`; a `TLS` listener with `tls.mode: Passthrough` hands the connection
//! to the TLSRoute's backend by SNI, untouched, and closes one no route takes), gRPC over
//! HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md) and Gateway API v1.6's rejection rule (a call no rule
//! takes gets the gRPC status `UNIMPLEMENTED`, answered Trailers-Only).

mod l7common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use http::StatusCode;
use l7common::*;
use testbed::{NODE_IFACE, Topology, http_backend::HttpBackend, pins::PinDir};
use xdp_ingress::proxy::tls::self_signed_pem;

/// The proxy's HTTP and HTTPS ports (the Gateway's listeners share them).
const HTTP: u16 = 8081;
const HTTPS: u16 = 8443;
/// The gRPC pods' port (h2c) and the TLS pod's port.
const GRPC_POD_PORT: u16 = 8080;
const TLS_POD_PORT: u16 = 9443;
/// The gRPC service the echo pods answer (any name works; this is ours).
const GRPC_ECHO: &str = "echo.v1.Echo";
/// The TLSRoute's hostname, inside the passthrough listener's `*.pass.test`.
const VAULT: &str = "vault.pass.test";

const OK: u32 = 0;
const UNIMPLEMENTED: u32 = 12;

/// A Service `name` (port 80 → `target`) with one IPv4 EndpointSlice over `pods`.
fn service(name: &str, pods: &[&testbed::Pod], target: u16) -> String {
    let eps: String = pods
        .iter()
        .map(|p| {
            format!(
                "- {{addresses: [\"{}\"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {}}}}}\n",
                p.v4, p.name
            )
        })
        .collect();
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{name: p, port: 80, targetPort: {target}}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p, port: {target}, protocol: TCP}}]
endpoints:
{eps}"
    )
}

/// A Gateway with an `HTTP` listener on the proxy's HTTP port and a `TLS` passthrough listener
/// for `*.pass.test` on its HTTPS port; a GRPCRoute sending `echo.v1.Echo/Echo` 2:1 to
/// Services `grpc-a` (pod 0) and `grpc-b` (pod 1); a TLSRoute for [`VAULT`] to `vault` (pod 2).
fn manifests(pods: &[testbed::Pod]) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
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
  - {{name: http, port: {HTTP}, protocol: HTTP}}
  - {{name: pass, port: {HTTPS}, protocol: TLS, hostname: \"*.pass.test\", tls: {{mode: Passthrough}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: echo, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: http}}]
  rules:
  - matches: [{{method: {{type: Exact, service: {GRPC_ECHO}, method: Echo}}}}]
    backendRefs: [{{name: grpc-a, port: 80, weight: 2}}, {{name: grpc-b, port: 80, weight: 1}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: vault, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [{VAULT}]
  rules: [{{backendRefs: [{{name: vault, port: 80}}]}}]
{}{}{}",
        service("grpc-a", &[&pods[0]], GRPC_POD_PORT),
        service("grpc-b", &[&pods[1]], GRPC_POD_PORT),
        service("vault", &[&pods[2]], TLS_POD_PORT),
    )
}

/// What a gRPC client reads from one unary call.
#[derive(Debug)]
struct GrpcGot {
    /// `grpc-status`, else the HTTP status mapped as gRPC clients do
    /// (grpc/doc/http-grpc-status-mapping.md: 404 is UNIMPLEMENTED).
    code: u32,
    /// A Trailers-Only response: HTTP 200, `grpc-status` in the headers, no message.
    trailers_only: bool,
    /// The pod named in the echo's JSON (the one response message).
    pod: String,
}

/// One unary call of `method` on [`GRPC_ECHO`] at `addr`, as a gRPC client makes it: h2c
/// with prior knowledge, an HTTP/2 POST of one length-prefixed (empty) message with
/// `content-type: application/grpc` and `te: trailers`. 10 s for the whole call.
async fn grpc_call(addr: SocketAddr, method: &str) -> anyhow::Result<GrpcGot> {
    // The name in `:authority` and no `Host` field, as HTTP/2 clients send it.
    let mut r = h2_req(addr, "grpc.test", &format!("/{GRPC_ECHO}/{method}"));
    *r.method_mut() = http::Method::POST;
    *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]));
    let h = r.headers_mut();
    h.insert("content-type", "application/grpc".parse()?);
    h.insert("te", "trailers".parse()?);
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        anyhow::Ok(request_over(tcp, true, r).await)
    })
    .await??;
    let status = got
        .trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or(got.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let code = status.unwrap_or(match got.status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    });
    let trailers_only =
        got.status == 200 && got.headers.contains_key("grpc-status") && got.body.is_empty();
    let pod = (got.body.len() > 5 && got.body[0] == 0)
        .then(|| serde_json::from_slice::<serde_json::Value>(&got.body[5..]).ok())
        .flatten()
        .and_then(|v| v["pod"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(GrpcGot {
        code,
        trailers_only,
        pod,
    })
}

/// The daemon as deployed: XDP on the node's NIC, the proxy on [`HTTP`]/[`HTTPS`] with host
/// networking, objects from `dir`.
fn daemon(topo: &Topology, pin: &PinDir, dir: &std::path::Path) -> testbed::process::KillOnDrop {
    let (http, https) = (HTTP.to_string(), HTTPS.to_string());
    testbed::process::KillOnDrop::spawn(
        topo.node
            .cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
            .args(["run", "--iface", NODE_IFACE, "--bpf-object"])
            .arg(testbed::bpf_object_path())
            .arg("--manifests")
            .arg(dir)
            .arg("--bpf-pin-root")
            .arg(pin)
            .args([
                "--http-port",
                http.as_str(),
                "--https-port",
                https.as_str(),
                "--metrics-addr",
                "127.0.0.1:9182",
            ]),
    )
    .expect("spawn xdp-ingress (cargo build -p ingress-userspace)")
}

#[test]
fn daemon_serves_a_grpcroute_and_a_tlsroute_passthrough_on_gateway_listeners() {
    if !testbed::require_root() {
        return;
    }
    testbed::built_xdp_ingress_bin();
    let topo = Topology::new(3).expect("topology");
    let any = |port| SocketAddr::new("::".parse().unwrap(), port);
    let _grpc: Vec<HttpBackend> = topo.pods[..2]
        .iter()
        .map(|p| HttpBackend::start_in(&p.ns, any(GRPC_POD_PORT), &p.name).expect("gRPC pod"))
        .collect();
    let (crt, key) = self_signed_pem(&[VAULT]).unwrap();
    let vault = &topo.pods[2];
    let _vault = HttpBackend::start_tls_in(&vault.ns, any(TLS_POD_PORT), &vault.name, &crt, &key)
        .expect("TLS pod");
    let pod_cert = pem_der(&crt);
    let pin = PinDir::new("gw");
    xdp_ingress::dataplane::l4::ensure_bpffs(&pin).expect("bpffs");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), manifests(&topo.pods)).unwrap();
    let mut daemon = daemon(&topo, &pin, dir.path());

    let nodes: [IpAddr; 2] = [topo.node_v4.into(), topo.node_v6.into()];
    // Served (bounded wait): the listeners bind before the first snapshot is applied, so wait
    // for a routed call, not a connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = SocketAddr::new(nodes[0], HTTP);
    loop {
        let got = in_ns(&topo.client, move || async move {
            grpc_call(first, "Echo").await
        });
        if got.as_ref().is_ok_and(|g| g.code == OK) {
            break;
        }
        assert!(!daemon.has_exited(), "daemon exited");
        assert!(
            std::time::Instant::now() < deadline,
            "GRPCRoute never served: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let (pod0, pod1) = (topo.pods[0].name.clone(), topo.pods[1].name.clone());
    let (grpc_pods, vault_name) = ([pod0.clone(), pod1.clone()], vault.name.clone());
    let client = move || async move {
        for ip in nodes {
            let http = SocketAddr::new(ip, HTTP);
            // The matched method: answered by the pods with grpc-status 0, split 2:1. Over 200
            // calls both answer and pod 0 more often (pod 1's count, mean 67, would have to
            // reach 100: 5 standard deviations).
            let mut seen: BTreeMap<String, u32> = BTreeMap::new();
            for _ in 0..200 {
                let g = grpc_call(http, "Echo").await.expect("gRPC call");
                assert_eq!(g.code, OK, "{ip}: {g:?}");
                assert!(grpc_pods.contains(&g.pod), "{ip}: {g:?}");
                *seen.entry(g.pod).or_insert(0) += 1;
            }
            assert_eq!(seen.len(), 2, "{ip}: {seen:?}");
            assert!(seen[&pod0] > seen[&pod1], "{ip}: weights 2:1, {seen:?}");
            // A method no rule matches: grpc-status UNIMPLEMENTED, Trailers-Only (Gateway API
            // v1.6, GRPCRoute).
            let g = grpc_call(http, "EchoTwo").await.expect("gRPC call");
            assert_eq!(
                (g.code, g.trailers_only, g.pod.as_str()),
                (UNIMPLEMENTED, true, ""),
                "{ip}"
            );

            // The TLSRoute's hostname: the pod's own certificate reaches the client (not
            // terminated at the node) and the pod answers over it, HTTP/1.1 and h2.
            let https = SocketAddr::new(ip, HTTPS);
            for h2 in [false, true] {
                let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
                let (s, der) =
                    tokio::time::timeout(Duration::from_secs(10), tls_connect(https, VAULT, alpn))
                        .await
                        .expect("TLS handshake in time");
                assert_eq!(der, pod_cert, "{ip}: the pod's certificate (h2: {h2})");
                let r = if h2 {
                    h2_req(https, VAULT, "/")
                } else {
                    req(https, VAULT, "/")
                };
                let got = tokio::time::timeout(Duration::from_secs(10), request_over(s, h2, r))
                    .await
                    .expect("answer in time");
                assert_eq!(got.status, StatusCode::OK, "{ip} (h2: {h2})");
                assert_eq!(got.pod(), vault_name, "{ip} (h2: {h2})");
            }
            // A name of the passthrough listener that no TLSRoute serves: closed.
            let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
            let tls =
                tokio::time::timeout(Duration::from_secs(10), tls_try(tcp, "nothing.pass.test"))
                    .await
                    .expect("closed in time");
            assert!(tls.is_err(), "{ip}: nothing.pass.test is closed");
        }
    };
    in_ns(&topo.client, client);
    let st = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
        .expect("wait")
        .expect("daemon exits on SIGTERM");
    assert!(st.success());
}
