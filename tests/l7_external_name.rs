//! Ingress backends whose Service is of type ExternalName, end to end on loopback: from Ingress
//! YAML through translation to the real proxy. Expected behaviour from ingress-nginx's e2e
//! suite (`test/e2e/servicebackend/service_externalname.go`) and its controller
//! (`controller.go` `serviceEndpoints`/`externalNamePorts`, `endpointslices.go`): the upstream
//! is the name, resolved when requests come, at the backend's port (a number the Service does
//! not list is used as it is; a listed one or a port name gives the Service port's target
//! port); the `Host` sent is the client's unless `upstream-vhost`; a name that does not
//! resolve is a 502; `--disable-svc-external-name` leaves the backend without endpoints (503).
//!
//! The pods listen on loopback and the Service names `localhost`: ingress-nginx refuses that
//! name (its own nginx listens there); this proxy refuses it as it refuses loopback endpoint
//! addresses, unless `--allow-node-local-endpoints`, which these tests set
//! ([`translate_manifests`]).

mod l7common;

use std::net::SocketAddr;

use l7common::*;
use xdp_ingress::{
    model::{Severity, Snapshot},
    proxy::REASON_HEADER,
};

/// An Ingress for `host`, path `/`, to Service `ext` at `port` (`number: 80` or `name: http`
/// form, as written), with `annotations`.
fn ingress(host: &str, port: &str, annotations: &[(&str, &str)]) -> String {
    let ann = nginx_annotations_yaml(annotations);
    format!(
        r#"---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ext
  namespace: default
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {{service: {{name: ext, port: {{{port}}}}}}}
"#
    )
}

/// Service `ext` of type ExternalName for `name`, listing `ports` (YAML flow items).
fn external_service(name: &str, ports: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: default}}
spec:
  type: ExternalName
  externalName: {name}
  ports: [{ports}]
"#
    )
}

fn http_port(pod: SocketAddr) -> String {
    format!("{{name: http, port: 80, targetPort: {}}}", pod.port())
}

fn errors(s: &Snapshot) -> Vec<String> {
    s.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}: {}", d.reason, d.message))
        .collect()
}

fn no_errors(s: std::sync::Arc<Snapshot>) -> std::sync::Arc<Snapshot> {
    assert!(errors(&s).is_empty(), "{:?}", errors(&s));
    s
}

/// "with a port defined", "without a port defined", "using a port name", "FQDN with trailing
/// dot": 200 from the name's address, with the client's Host unless `upstream-vhost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_name_is_proxied_at_the_backend_port() {
    let pod = backend("pod");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();

    // A listed port by number: its target port.
    let yaml = external_service("localhost", &http_port(pod.addr))
        + &ingress("ext.test", "number: 80", &[]);
    proxy
        .handle
        .apply(no_errors(translate_manifests(1, &yaml, |_| {})));
    let g = get(&c, proxy.http(), "ext.test", "/a").await;
    assert_eq!((g.status.as_u16(), g.pod()), (200, "pod".into()));
    assert_eq!(g.json()["headers"]["host"], "ext.test");

    // By name, with `upstream-vhost`.
    let yaml = external_service("localhost", &http_port(pod.addr))
        + &ingress(
            "ext.test",
            "name: http",
            &[("upstream-vhost", "echo.example")],
        );
    proxy
        .handle
        .apply(no_errors(translate_manifests(2, &yaml, |_| {})));
    let g = get(&c, proxy.http(), "ext.test", "/").await;
    assert_eq!((g.status.as_u16(), g.pod()), (200, "pod".into()));
    assert_eq!(g.json()["headers"]["host"], "echo.example");

    // No ports on the Service: the backend's number as it is.
    let yaml = external_service("localhost", "")
        + &ingress("ext.test", &format!("number: {}", pod.addr.port()), &[]);
    proxy
        .handle
        .apply(no_errors(translate_manifests(3, &yaml, |_| {})));
    let g = get(&c, proxy.http(), "ext.test", "/").await;
    assert_eq!((g.status.as_u16(), g.pod()), (200, "pod".into()));
    assert_eq!(pod.requests(), 3);
}

/// "should update the external name after a service update" and "should sync ingress on
/// external name service addition/deletion": the Service's changes take effect; without it,
/// 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_updates_addition_and_deletion_are_followed() {
    let (a, b) = (backend("a"), backend("b"));
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let ing = ingress("ext.test", "name: http", &[]);

    proxy.handle.apply(translate_manifests(1, &ing, |_| {}));
    assert_eq!(get(&c, proxy.http(), "ext.test", "/").await.status, 503);

    proxy.handle.apply(no_errors(translate_manifests(
        2,
        &(external_service("localhost", &http_port(a.addr)) + &ing),
        |_| {},
    )));
    assert_eq!(get(&c, proxy.http(), "ext.test", "/").await.pod(), "a");

    proxy.handle.apply(no_errors(translate_manifests(
        3,
        &(external_service("localhost", &http_port(b.addr)) + &ing),
        |_| {},
    )));
    assert_eq!(get(&c, proxy.http(), "ext.test", "/").await.pod(), "b");

    proxy.handle.apply(translate_manifests(4, &ing, |_| {}));
    assert_eq!(get(&c, proxy.http(), "ext.test", "/").await.status, 503);
}

/// "should return status 502 for service type=ExternalName with an invalid host".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_is_a_502() {
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = external_service("invalid.hostname.invalid", "{name: http, port: 80}")
        + &ingress("ext.test", "number: 80", &[]);
    proxy
        .handle
        .apply(no_errors(translate_manifests(1, &yaml, |_| {})));
    let g = get(&c, proxy.http(), "ext.test", "/").await;
    assert_eq!(g.status, 502);
}

/// `--disable-svc-external-name` (ingress-nginx's flag): 503 and an Error naming the flag;
/// and without `--allow-node-local-endpoints`, `localhost` is refused (503) before any
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_names_answer_503() {
    let pod = backend("pod");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let yaml = external_service("localhost", &http_port(pod.addr))
        + &ingress("ext.test", "number: 80", &[]);

    let s = translate_manifests(1, &yaml, |c| c.disable_svc_external_name = true);
    assert!(
        errors(&s)
            .iter()
            .any(|e| e.starts_with("ExternalNameDisabled")),
        "{:?}",
        errors(&s)
    );
    proxy.handle.apply(s);
    let g = get(&c, proxy.http(), "ext.test", "/").await;
    assert_eq!(g.status, 503);
    assert!(
        g.header(REASON_HEADER).contains("ExternalNameDisabled"),
        "{:?}",
        g.headers
    );

    let s = translate_manifests(2, &yaml, |c| c.allow_node_local_endpoints = false);
    assert!(
        errors(&s)
            .iter()
            .any(|e| e.starts_with("InvalidExternalName")),
        "{:?}",
        errors(&s)
    );
    proxy.handle.apply(s);
    assert_eq!(get(&c, proxy.http(), "ext.test", "/").await.status, 503);
    assert_eq!(pod.requests(), 0);
}
