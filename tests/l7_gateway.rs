//! Gateway API HTTPRoutes end to end on loopback: the upstream conformance suite's
//! GATEWAY-HTTP core tests (kubernetes-sigs/gateway-api, conformance/tests/*.go), their
//! manifests copied unchanged into `gateway_conformance/` and their expected responses ported
//! as tables. Manifests are translated as the control plane does, the proxy runs in-process,
//! and each case checks what the client gets (status, `Location`, headers) and what the pod
//! receives (path, `Host`, headers).
//!
//! Two things differ from a conformance run, both forced by the bed: Gateway listener ports
//! 80 and 443 are mapped to the proxy's own ports and 8080 to a port the proxy opens for
//! Gateways, all picked at random, so a redirect that keeps the listener port names that
//! port; and requests name `gw.example` where the suite sends the Gateway's address.

mod l7common;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use http::{Request, StatusCode};
use l7common::*;
use testbed::http_backend::HttpBackend;
use xdp_ingress::model::{ObjectKind, ObjectRef, Snapshot, translate::gateway::ProxyPorts};

/// `(namespace, Service)` of the conformance base manifests (conformance/base/manifests.yaml)
/// that the HTTP tests route to; each gets one pod answering as its Service name.
const BACKENDS: &[(&str, &str)] = &[
    ("gateway-conformance-infra", "infra-backend-v1"),
    ("gateway-conformance-infra", "infra-backend-v2"),
    ("gateway-conformance-infra", "infra-backend-v3"),
    ("gateway-conformance-app-backend", "app-backend-v1"),
    ("gateway-conformance-app-backend", "app-backend-v2"),
    ("gateway-conformance-web-backend", "web-backend"),
    ("gateway-conformance-infra", "grpc-infra-backend-v1"),
    ("gateway-conformance-infra", "grpc-infra-backend-v2"),
    ("gateway-conformance-infra", "grpc-infra-backend-v3"),
];

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

/// The part of conformance/base/manifests.yaml the HTTP tests use: namespaces (with the
/// labels `backend-namespaces` selects), the three HTTP Gateways, and the backend Services
/// (port 8080) with one ready pod each.
fn base(pods: &BTreeMap<&str, SocketAddr>) -> String {
    let mut out = String::from(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {gateway-conformance: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-app-backend, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: all-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: backend-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-conformance: backend}}
"#,
    );
    for (ns, name) in BACKENDS {
        let addr = pods[name];
        let (ip, port) = (addr.ip(), addr.port());
        out.push_str(&format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: first-port, port: 8080, targetPort: 3000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: first-port, port: {port}, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {name}-0}}}}
"#
        ));
    }
    out
}

/// Every document of `yaml` with the class name filled in and the Gateways' (and
/// ListenerSets') listener ports
/// 80 and 443 mapped to the proxy's, and 8080 to the port the proxy may open for Gateways
/// (`ports.gateway_range`, one port per bed).
fn localize(yaml: &str, ports: ProxyPorts) -> String {
    use serde::Deserialize;
    let yaml = yaml.replace("{GATEWAY_CLASS_NAME}", "xdp");
    let mut docs = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(&yaml) {
        let mut v = yaml_serde::Value::deserialize(doc).expect("manifest parses");
        if v.is_null() {
            continue;
        }
        if (v["kind"] == "Gateway" || v["kind"] == "ListenerSet")
            && let Some(ls) = v["spec"]["listeners"].as_sequence_mut()
        {
            for l in ls {
                let port = match l["port"].as_u64() {
                    Some(80) => ports.http,
                    Some(443) => ports.https,
                    Some(8080) => ports.gateway_range.first,
                    _ => continue,
                };
                l["port"] = port.into();
            }
        }
        docs.push(yaml_serde::to_string(&v).expect("serializes"));
    }
    docs.join("---\n")
}

/// A bed: one pod per base Service and a proxy.
struct Bed {
    _pods: Vec<HttpBackend>,
    pod_addrs: BTreeMap<&'static str, SocketAddr>,
    proxy: TestProxy,
    client: Http1,
    /// Where Gateway listeners on port 8080 go: a port free when the bed started.
    alt_port: u16,
}

impl Bed {
    async fn start() -> Bed {
        let pods: Vec<HttpBackend> = BACKENDS.iter().map(|(_, n)| backend(n)).collect();
        let pod_addrs = BACKENDS
            .iter()
            .zip(&pods)
            .map(|((_, n), p)| (*n, p.addr))
            .collect();
        Bed {
            _pods: pods,
            pod_addrs,
            proxy: TestProxy::start(TestProxy::quiet_args()).await,
            client: http1_client(),
            alt_port: std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port(),
        }
    }

    /// The pod of base Service `name`.
    fn pod(&self, name: &str) -> &HttpBackend {
        let i = BACKENDS
            .iter()
            .position(|(_, n)| *n == name)
            .expect("a base Service");
        &self._pods[i]
    }

    fn ports(&self) -> ProxyPorts {
        ProxyPorts {
            http: self.proxy.http().port(),
            https: self.proxy.https().port(),
            gateway_range: xdp_ingress::model::translate::gateway::PortRange {
                first: self.alt_port,
                last: self.alt_port,
            },
        }
    }

    /// Translates the base manifests and `tests` (conformance manifests), serves them, and
    /// returns the snapshot.
    fn serve(&self, tests: &[&str]) -> Arc<Snapshot> {
        let yaml = format!("{}---\n{}", base(&self.pod_addrs), tests.join("\n---\n"));
        let ports = self.ports();
        let s = translate_manifests(1, &localize(&yaml, ports), |c| c.gateway_ports = ports);
        self.proxy.handle.apply(s.clone());
        s
    }

    async fn check(&self, cases: &[Case]) {
        for c in cases {
            c.check(self).await;
        }
    }
}

/// One `http.ExpectedResponse` of the conformance suite.
#[derive(Clone, Debug)]
struct Case {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
    /// The pod that answers (`Backend`); empty when the proxy answers itself.
    backend: &'static str,
    /// `ExpectedRequest`: what the pod receives.
    sees_path: Option<&'static str>,
    sees_host: Option<&'static str>,
    sees: Vec<(&'static str, &'static str)>,
    absent: Vec<&'static str>,
    /// Headers the client gets (`Response.Headers`) and does not (`Response.AbsentHeaders`).
    gets: Vec<(&'static str, &'static str)>,
    gets_no: Vec<&'static str>,
    /// `BackendSetResponseHeaders`: what the pod adds to its answer (`X-Echo-Set-Header`).
    backend_sets: Vec<(&'static str, &'static str)>,
    /// `RedirectRequest` as the whole `Location`; `{P}` stands for the proxy's HTTP port,
    /// `{A}` for the port of Gateway listeners on 8080.
    location: Option<&'static str>,
    /// Sent to the Gateway listeners on port 8080 (the bed's `alt_port`), not to port 80.
    on_8080: bool,
}

fn get(path: &'static str) -> Case {
    Case {
        host: "gw.example",
        method: "GET",
        path,
        headers: vec![],
        status: 200,
        backend: "",
        sees_path: None,
        sees_host: None,
        sees: vec![],
        absent: vec![],
        gets: vec![],
        gets_no: vec![],
        backend_sets: vec![],
        location: None,
        on_8080: false,
    }
}

impl Case {
    fn on_8080(mut self) -> Self {
        self.on_8080 = true;
        self
    }
    fn host(mut self, h: &'static str) -> Self {
        self.host = h;
        self
    }
    fn method(mut self, m: &'static str) -> Self {
        self.method = m;
        self
    }
    fn h(mut self, k: &'static str, v: &'static str) -> Self {
        self.headers.push((k, v));
        self
    }
    fn to(mut self, backend: &'static str) -> Self {
        self.backend = backend;
        self
    }
    fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
    fn sees_path(mut self, p: &'static str) -> Self {
        self.sees_path = Some(p);
        self
    }
    fn sees_host(mut self, h: &'static str) -> Self {
        self.sees_host = Some(h);
        self
    }
    fn sees(mut self, k: &'static str, v: &'static str) -> Self {
        self.sees.push((k, v));
        self
    }
    fn absent(mut self, k: &'static str) -> Self {
        self.absent.push(k);
        self
    }
    fn gets(mut self, k: &'static str, v: &'static str) -> Self {
        self.gets.push((k, v));
        self
    }
    fn gets_no(mut self, k: &'static str) -> Self {
        self.gets_no.push(k);
        self
    }
    fn backend_sets(mut self, k: &'static str, v: &'static str) -> Self {
        self.backend_sets.push((k, v));
        self
    }
    fn redirect(mut self, status: u16, location: &'static str) -> Self {
        self.status = status;
        self.location = Some(location);
        self
    }

    async fn check(&self, bed: &Bed) {
        let addr = if self.on_8080 {
            SocketAddr::from(([127, 0, 0, 1], bed.alt_port))
        } else {
            bed.proxy.http()
        };
        let mut b = Request::builder()
            .method(self.method)
            .uri(format!("http://{addr}{}", self.path))
            .header("host", self.host);
        for (k, v) in &self.headers {
            b = b.header(*k, *v);
        }
        if !self.backend_sets.is_empty() {
            let set: Vec<String> = self
                .backend_sets
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            b = b.header("X-Echo-Set-Header", set.join(","));
        }
        let req = b
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let got = send(&bed.client, req).await.expect("request completes");
        let what = format!(
            "{} {}{} {:?}",
            self.method, self.host, self.path, self.headers
        );
        assert_eq!(
            got.status,
            StatusCode::from_u16(self.status).unwrap(),
            "{what}: {:?}",
            got.body
        );
        if let Some(loc) = self.location {
            let want = loc
                .replace("{P}", &bed.proxy.http().port().to_string())
                .replace("{A}", &bed.alt_port.to_string());
            assert_eq!(got.header("location"), want, "{what}");
        }
        for (k, v) in &self.gets {
            assert_eq!(joined(&got.headers, k), *v, "{what}: response header {k}");
        }
        for k in &self.gets_no {
            assert!(
                got.headers.get(*k).is_none(),
                "{what}: response header {k} should be absent"
            );
        }
        if self.backend.is_empty() {
            return;
        }
        let json = got.json();
        assert_eq!(json["pod"], self.backend, "{what}");
        let seen = |k: &str| {
            json["headers"][k.to_ascii_lowercase()]
                .as_str()
                .map(|v| v.replace(", ", ","))
        };
        if let Some(p) = self.sees_path {
            assert_eq!(json["path"], p, "{what}");
        }
        if let Some(h) = self.sees_host {
            assert_eq!(seen("host").as_deref(), Some(h), "{what}");
        }
        for (k, v) in &self.sees {
            assert_eq!(seen(k).as_deref(), Some(*v), "{what}: request header {k}");
        }
        for k in &self.absent {
            assert_eq!(seen(k), None, "{what}: request header {k} should be absent");
        }
    }
}

/// All values of `name`, joined with `,` as the suite compares them.
fn joined(h: &http::HeaderMap, name: &str) -> String {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",")
}

macro_rules! conformance {
    ($name:literal) => {
        include_str!(concat!("gateway_conformance/", $name, ".yaml"))
    };
}

/// The route parent condition `type` of `route` in namespace gateway-conformance-infra.
fn route_condition(s: &Snapshot, ns: &str, route: &str, type_: &str) -> (bool, String) {
    let parents = s
        .gateway_status
        .routes
        .get(&ObjectRef::new(ObjectKind::HTTPRoute, ns, route))
        .unwrap_or_else(|| panic!("no status for {ns}/{route}"));
    let c = parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} on {route}"));
    (c.status, c.reason.clone())
}

const INFRA: &str = "gateway-conformance-infra";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_matching_conformance() {
    let bed = Bed::start().await;

    // httproute-simple-same-namespace.
    let s = bed.serve(&[conformance!("httproute-simple-same-namespace")]);
    assert_eq!(
        route_condition(&s, INFRA, "gateway-conformance-infra-test", "Accepted"),
        (true, "Accepted".into())
    );
    bed.check(&[get("/").to(V1)]).await;

    // httproute-matching.
    bed.serve(&[conformance!("httproute-matching")]);
    bed.check(&[
        get("/").to(V1),
        get("/example").to(V1),
        get("/").h("Version", "one").to(V1),
        get("/v2").to(V2),
        get("/v2/example").to(V2),
        get("/").h("Version", "two").to(V2),
        get("/v2/").to(V2),
        get("/v2example").to(V1),
        get("/foo/v2/example").to(V1),
    ])
    .await;

    // httproute-matching-across-routes.
    bed.serve(&[conformance!("httproute-matching-across-routes")]);
    bed.check(&[
        get("/").host("example.com").to(V1),
        get("/example").host("example.com").to(V1),
        get("/example").host("example.net").to(V1),
        get("/example")
            .host("example.com")
            .h("Version", "one")
            .to(V1),
        get("/v2").host("example.com").to(V2),
        get("/v2").host("example.net").to(V1),
        get("/v2/example").host("example.com").to(V2),
        get("/").host("example.com").h("Version", "two").to(V2),
    ])
    .await;

    // httproute-header-matching.
    bed.serve(&[conformance!("httproute-header-matching")]);
    bed.check(&[
        get("/").h("Version", "one").to(V1),
        get("/").h("Version", "two").to(V2),
        get("/").h("Version", "two").h("Color", "orange").to(V1),
        get("/").h("Version", "two").h("Color", "blue").to(V2),
        get("/").h("Color", "orange").status(404),
        get("/").h("Some-Other-Header", "one").status(404),
        get("/").h("Color", "blue").to(V1),
        get("/").h("Color", "green").to(V1),
        get("/").h("Color", "red").to(V2),
        get("/").h("Color", "yellow").to(V2),
        get("/").h("Color", "purple").status(404),
    ])
    .await;

    // httproute-query-param-matching.
    bed.serve(&[conformance!("httproute-query-param-matching")]);
    bed.check(&[
        get("/?animal=whale").to(V1),
        get("/?animal=dolphin").to(V2),
        get("/?animal=dolphin&color=blue").to(V3),
        get("/?ANIMAL=Whale").to(V3),
        get("/?animal=whale&otherparam=irrelevant").to(V1),
        get("/?animal=dolphin&color=yellow").to(V2),
        get("/?color=blue").status(404),
        get("/?animal=dog").status(404),
        get("/?animal=whaledolphin").status(404),
        get("/").status(404),
    ])
    .await;

    // httproute-method-matching.
    bed.serve(&[conformance!("httproute-method-matching")]);
    bed.check(&[
        get("/").method("POST").to(V1),
        get("/").method("GET").to(V2),
        get("/").method("HEAD").status(404),
        get("/path1").method("GET").to(V1),
        get("/").h("version", "one").method("PUT").to(V2),
        get("/path2").h("version", "two").method("POST").to(V3),
        get("/path3").method("PATCH").to(V1),
        get("/path4").h("version", "three").method("DELETE").to(V1),
        get("/").method("PUT").status(404),
        get("/path4").method("DELETE").status(404),
        get("/path5").method("PATCH").to(V1),
        get("/").h("version", "four").method("PATCH").to(V2),
    ])
    .await;

    // httproute-path-match-order.
    bed.serve(&[conformance!("httproute-path-match-order")]);
    bed.check(&[
        get("/match/exact/one").to(V3),
        get("/match/exact").to(V2),
        get("/match").to(V1),
        get("/match/prefix/one/any").to(V2),
        get("/match/prefix/any").to(V1),
        get("/match/any").to(V3),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_hostnames_conformance() {
    let bed = Bed::start().await;
    // httproute-hostname-intersection.
    bed.serve(&[conformance!("httproute-hostname-intersection")]);
    bed.check(&[
        get("/s1").host("very.specific.com").to(V1),
        get("/s1").host("very.specific.com:1234").to(V1),
        get("/s1").host("non.matching.com").status(404),
        get("/s1").host("foo.nonmatchingwildcard.io").status(404),
        get("/s1").host("foo.wildcard.io").status(404),
        get("/non-matching-prefix")
            .host("very.specific.com")
            .status(404),
        get("/s2").host("foo.wildcard.io").to(V2),
        get("/s2").host("bar.wildcard.io").to(V2),
        get("/s2").host("foo.bar.wildcard.io").to(V2),
        get("/s2").host("non.matching.com").status(404),
        get("/s2").host("wildcard.io").status(404),
        get("/s2").host("very.specific.com").status(404),
        get("/non-matching-prefix")
            .host("foo.wildcard.io")
            .status(404),
        get("/s3").host("very.specific.com").to(V3),
        get("/s3").host("non.matching.com").status(404),
        get("/s3").host("foo.specific.com").status(404),
        get("/s3").host("foo.wildcard.io").status(404),
        get("/s4").host("foo.anotherwildcard.io").to(V1),
        get("/s4").host("bar.anotherwildcard.io").to(V1),
        get("/s4").host("foo.bar.anotherwildcard.io").to(V1),
        get("/s4").host("anotherwildcard.io").status(404),
        get("/s4").host("foo.wildcard.io").status(404),
        get("/s4").host("very.specific.com").status(404),
        get("/non-matching-prefix")
            .host("foo.anotherwildcard.io")
            .status(404),
        get("/s5").host("specific.but.wrong.com").status(404),
        get("/s5").host("wildcard.io").status(404),
        get("/").host("first.com").to(V2),
        get("/").host("sub.first.com").to(V2),
        get("/").host("second.com").to(V2),
        get("/").host("sub.second.com").to(V2),
        get("/").host("third.com").status(404),
        get("/").host("sub.third.com").status(404),
    ])
    .await;

    // httproute-listener-hostname-matching: a Gateway wildcard takes one or more labels.
    bed.serve(&[conformance!("httproute-listener-hostname-matching")]);
    bed.check(&[
        get("/").host("bar.com").to(V1),
        get("/").host("foo.bar.com").to(V2),
        get("/").host("baz.bar.com").to(V3),
        get("/").host("boo.bar.com").to(V3),
        get("/").host("multiple.prefixes.bar.com").to(V3),
        get("/").host("multiple.prefixes.foo.com").to(V3),
        get("/").host("foo.com").status(404),
        get("/").host("no.matching.host").status(404),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_filters_conformance() {
    let bed = Bed::start().await;
    // httproute-request-header-modifier.
    bed.serve(&[conformance!("httproute-request-header-modifier")]);
    bed.check(&[
        get("/set")
            .h("Some-Other-Header", "val")
            .to(V1)
            .sees_path("/set")
            .sees("Some-Other-Header", "val")
            .sees("X-Header-Set", "set-overwrites-values"),
        get("/set")
            .h("Some-Other-Header", "val")
            .h("X-Header-Set", "some-other-value")
            .to(V1)
            .sees("Some-Other-Header", "val")
            .sees("X-Header-Set", "set-overwrites-values"),
        get("/add")
            .h("Some-Other-Header", "val")
            .to(V1)
            .sees("Some-Other-Header", "val")
            .sees("X-Header-Add", "add-appends-values"),
        get("/add")
            .h("Some-Other-Header", "val")
            .h("X-Header-Add", "some-other-value")
            .to(V1)
            .sees("X-Header-Add", "some-other-value,add-appends-values"),
        get("/remove")
            .h("X-Header-Remove", "val")
            .to(V1)
            .sees_path("/remove")
            .absent("X-Header-Remove"),
        get("/multiple")
            .h("X-Header-Set-2", "set-val-2")
            .h("X-Header-Add-2", "add-val-2")
            .h("X-Header-Remove-2", "remove-val-2")
            .h("Another-Header", "another-header-val")
            .to(V1)
            .sees("X-Header-Set-1", "header-set-1")
            .sees("X-Header-Set-2", "header-set-2")
            .sees("X-Header-Add-1", "header-add-1")
            .sees("X-Header-Add-2", "add-val-2,header-add-2")
            .sees("X-Header-Add-3", "header-add-3")
            .sees("Another-Header", "another-header-val")
            .absent("X-Header-Remove-1")
            .absent("X-Header-Remove-2"),
        get("/case-insensitivity")
            .h("x-header-set", "original-val-set")
            .h("x-header-add", "original-val-add")
            .h("x-header-remove", "original-val-remove")
            .h("Another-Header", "another-header-val")
            .to(V1)
            .sees("X-Header-Set", "header-set")
            .sees("X-Header-Add", "original-val-add,header-add")
            .sees("Another-Header", "another-header-val")
            .absent("X-Header-Remove"),
    ])
    .await;

    // httproute-response-header-modifier.
    bed.serve(&[conformance!("httproute-response-header-modifier")]);
    bed.check(&[
        get("/set")
            .backend_sets("Some-Other-Header", "val")
            .to(V1)
            .gets("Some-Other-Header", "val")
            .gets("X-Header-Set", "set-overwrites-values"),
        get("/set")
            .backend_sets("Some-Other-Header", "val")
            .backend_sets("X-Header-Set", "some-other-value")
            .to(V1)
            .gets("Some-Other-Header", "val")
            .gets("X-Header-Set", "set-overwrites-values"),
        get("/add")
            .backend_sets("Some-Other-Header", "val")
            .to(V1)
            .gets("Some-Other-Header", "val")
            .gets("X-Header-Add", "add-appends-values"),
        get("/add")
            .backend_sets("Some-Other-Header", "val")
            .backend_sets("X-Header-Add", "some-other-value")
            .to(V1)
            .gets("Some-Other-Header", "val")
            .gets("X-Header-Add", "some-other-value,add-appends-values"),
        get("/remove")
            .backend_sets("X-Header-Remove", "val")
            .to(V1)
            .gets_no("X-Header-Remove"),
        get("/multiple")
            .backend_sets("X-Header-Set-2", "set-val-2")
            .backend_sets("X-Header-Add-2", "add-val-2")
            .backend_sets("X-Header-Remove-2", "remove-val-2")
            .backend_sets("Another-Header", "another-header-val")
            .backend_sets("X-Header-Remove-1", "val")
            .to(V1)
            .gets("X-Header-Set-1", "header-set-1")
            .gets("X-Header-Set-2", "header-set-2")
            .gets("X-Header-Add-1", "header-add-1")
            .gets("X-Header-Add-2", "add-val-2,header-add-2")
            .gets("X-Header-Add-3", "header-add-3")
            .gets("Another-Header", "another-header-val")
            .gets_no("X-Header-Remove-1")
            .gets_no("X-Header-Remove-2"),
        get("/case-insensitivity")
            .backend_sets("x-header-set", "original-val-set")
            .backend_sets("x-header-add", "original-val-add")
            .backend_sets("x-header-remove", "original-val-remove")
            .backend_sets("Another-Header", "another-header-val")
            .to(V1)
            .gets("X-Header-Set", "header-set")
            .gets("X-Header-Add", "original-val-add,header-add")
            .gets("X-Lowercase-Add", "lowercase-add")
            .gets("X-Mixedcase-Add-1", "mixedcase-add-1")
            .gets("X-Mixedcase-Add-2", "mixedcase-add-2")
            .gets("X-Uppercase-Add", "uppercase-add")
            .gets("Another-Header", "another-header-val")
            .gets_no("X-Header-Remove"),
        get("/response-and-request-header-modifiers")
            .h("X-Header-Remove", "remove-val")
            .h("X-Header-Add-Append", "append-val-1")
            .h("X-Header-Echo", "echo")
            .backend_sets("X-Header-Set-2", "set-val-2")
            .backend_sets("X-Header-Add-2", "add-val-2")
            .backend_sets("X-Header-Remove-2", "remove-val-2")
            .backend_sets("Another-Header", "another-header-val")
            .backend_sets("X-Header-Remove-1", "remove-val-1")
            .backend_sets("X-Header-Echo", "echo")
            .to(V1)
            .sees("X-Header-Add", "header-val-1")
            .sees("X-Header-Set", "set-overwrites-values")
            .sees("X-Header-Add-Append", "append-val-1,header-val-2")
            .sees("X-Header-Echo", "echo")
            .absent("X-Header-Remove")
            .gets("X-Header-Set-1", "header-set-1")
            .gets("X-Header-Set-2", "header-set-2")
            .gets("X-Header-Add-1", "header-add-1")
            .gets("X-Header-Add-2", "add-val-2,header-add-2")
            .gets("Another-Header", "another-header-val")
            .gets("X-Header-Echo", "echo")
            .gets_no("X-Header-Remove-1")
            .gets_no("X-Header-Remove-2"),
    ])
    .await;

    // httproute-rewrite-path.
    bed.serve(&[conformance!("httproute-rewrite-path")]);
    bed.check(&[
        get("/prefix/one/two").to(V1).sees_path("/one/two"),
        get("/strip-prefix/three").to(V1).sees_path("/three"),
        get("/strip-prefix").to(V1).sees_path("/"),
        get("/full/one/two").to(V1).sees_path("/one"),
        get("/full/rewrite-path-and-modify-headers/test")
            .h("X-Header-Remove", "remove-val")
            .h("X-Header-Add-Append", "append-val-1")
            .h("X-Header-Set", "set-val")
            .to(V1)
            .sees_path("/test")
            .sees("X-Header-Add", "header-val-1")
            .sees("X-Header-Add-Append", "append-val-1,header-val-2")
            .sees("X-Header-Set", "set-overwrites-values")
            .absent("X-Header-Remove"),
        get("/prefix/rewrite-path-and-modify-headers/one")
            .h("X-Header-Remove", "remove-val")
            .h("X-Header-Add-Append", "append-val-1")
            .h("X-Header-Set", "set-val")
            .to(V1)
            .sees_path("/prefix/one")
            .sees("X-Header-Add", "header-val-1")
            .sees("X-Header-Add-Append", "append-val-1,header-val-2")
            .sees("X-Header-Set", "set-overwrites-values")
            .absent("X-Header-Remove"),
    ])
    .await;

    // httproute-rewrite-host.
    bed.serve(&[conformance!("httproute-rewrite-host")]);
    bed.check(&[
        get("/one")
            .host("rewrite.example")
            .to(V1)
            .sees_path("/one")
            .sees_host("one.example.org"),
        get("/two")
            .host("rewrite.example")
            .to(V2)
            .sees_path("/two")
            .sees_host("example.org"),
        get("/rewrite-host-and-modify-headers")
            .host("rewrite.example")
            .h("X-Header-Remove", "remove-val")
            .h("X-Header-Add-Append", "append-val-1")
            .to(V2)
            .sees_host("test.example.org")
            .sees("X-Header-Add", "header-val-1")
            .sees("X-Header-Add-Append", "append-val-1,header-val-2")
            .sees("X-Header-Set", "set-overwrites-values")
            .absent("X-Header-Remove"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_redirects_conformance() {
    let bed = Bed::start().await;
    // The listener port (the suite's 80) is kept when neither scheme nor port is set.
    bed.serve(&[conformance!("httproute-redirect-host-and-status")]);
    bed.check(&[
        get("/hostname-redirect").redirect(302, "http://example.org:{P}/hostname-redirect"),
        get("/host-and-status").redirect(301, "http://example.org:{P}/host-and-status"),
    ])
    .await;
    bed.serve(&[conformance!("httproute-redirect-path")]);
    bed.check(&[
        get("/original-prefix/lemon")
            .redirect(302, "http://gw.example:{P}/replacement-prefix/lemon"),
        get("/full/path/original").redirect(302, "http://gw.example:{P}/full-path-replacement"),
        get("/path-and-host").redirect(302, "http://example.org:{P}/replacement-prefix"),
        get("/path-and-status").redirect(301, "http://gw.example:{P}/replacement-prefix"),
        get("/full-path-and-host").redirect(302, "http://example.org:{P}/replacement-full"),
        get("/full-path-and-status").redirect(301, "http://gw.example:{P}/replacement-full"),
    ])
    .await;
    bed.serve(&[conformance!("httproute-redirect-port")]);
    bed.check(&[
        get("/port").redirect(302, "http://gw.example:8083/port"),
        get("/port-and-host").redirect(302, "http://example.org:8083/port-and-host"),
        get("/port-and-status").redirect(301, "http://gw.example:8083/port-and-status"),
        get("/port-and-host-and-status")
            .redirect(302, "http://example.org:8083/port-and-host-and-status"),
    ])
    .await;
    bed.serve(&[conformance!("httproute-redirect-scheme")]);
    bed.check(&[
        get("/scheme").redirect(302, "https://gw.example/scheme"),
        get("/scheme-and-host").redirect(302, "https://example.org/scheme-and-host"),
        get("/scheme-and-status").redirect(301, "https://gw.example/scheme-and-status"),
        get("/scheme-and-host-and-status")
            .redirect(302, "https://example.org/scheme-and-host-and-status"),
    ])
    .await;
    // httproute-redirect-port-and-scheme: the Gateway on the HTTP port, and the one on 8080
    // (the proxy opens that port; a redirect that keeps the port names the listener's).
    let s = bed.serve(&[conformance!("httproute-redirect-port-and-scheme")]);
    bed.check(&[
        get("/scheme-nil-and-port-nil")
            .redirect(302, "http://example.org:{P}/scheme-nil-and-port-nil"),
        get("/scheme-nil-and-port-80").redirect(302, "http://example.org/scheme-nil-and-port-80"),
        get("/scheme-nil-and-port-8080")
            .redirect(302, "http://example.org:8080/scheme-nil-and-port-8080"),
        get("/scheme-https-and-port-nil")
            .redirect(302, "https://example.org/scheme-https-and-port-nil"),
        get("/scheme-https-and-port-443")
            .redirect(302, "https://example.org/scheme-https-and-port-443"),
        get("/scheme-https-and-port-8443")
            .redirect(302, "https://example.org:8443/scheme-https-and-port-8443"),
        get("/scheme-nil-and-port-nil")
            .on_8080()
            .redirect(302, "http://example.org:{A}/scheme-nil-and-port-nil"),
        get("/scheme-nil-and-port-80")
            .on_8080()
            .redirect(302, "http://example.org/scheme-nil-and-port-80"),
        get("/scheme-https-and-port-nil")
            .on_8080()
            .redirect(302, "https://example.org/scheme-https-and-port-nil"),
        // Each Gateway's routes on its own port only.
        get("/scheme-nil-and-port-8080").on_8080().status(404),
    ])
    .await;
    let gw = &s.gateway_status.gateways[&ObjectRef::new(
        ObjectKind::Gateway,
        INFRA,
        "same-namespace-with-http-listener-on-8080",
    )];
    let accepted = gw.listeners[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status, accepted.reason.as_str()),
        (true, "Accepted")
    );
    assert_eq!(
        route_condition(
            &s,
            INFRA,
            "http-route-for-listener-on-port-8080",
            "Accepted"
        ),
        (true, "Accepted".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_backends_and_references_conformance() {
    let bed = Bed::start().await;
    // httproute-weight: 70/30/0. Over 300 requests both weighted backends answer (the chance
    // that one of them never does is below 1e-15) and the weight-0 one never does.
    bed.serve(&[conformance!("httproute-weight")]);
    let mut seen = BTreeMap::new();
    for _ in 0..300 {
        let g = l7common::get(&bed.client, bed.proxy.http(), "gw.example", "/").await;
        assert_eq!(g.status, StatusCode::OK);
        *seen.entry(g.pod()).or_insert(0u32) += 1;
    }
    assert!(
        seen.get(V1)
            .is_some_and(|n| *n > seen.get(V2).copied().unwrap_or(0)),
        "{seen:?}"
    );
    assert!(seen.contains_key(V2) && !seen.contains_key(V3), "{seen:?}");

    // The httproute-invalid-* tests: 500 and ResolvedRefs False with the spec's reason.
    for (file, route, path, reason) in [
        (
            conformance!("httproute-invalid-nonexistent-backendref"),
            "invalid-nonexistent-backend-ref",
            "/",
            "BackendNotFound",
        ),
        (
            conformance!("httproute-invalid-backendref-unknown-kind"),
            "invalid-backend-ref-unknown-kind",
            "/v2",
            "InvalidKind",
        ),
        (
            conformance!("httproute-invalid-cross-namespace-backend-ref"),
            "invalid-cross-namespace-backend-ref",
            "/",
            "RefNotPermitted",
        ),
        (
            conformance!("httproute-invalid-reference-grant"),
            "reference-grant",
            "/",
            "RefNotPermitted",
        ),
    ] {
        let s = bed.serve(&[file]);
        assert_eq!(
            route_condition(&s, INFRA, route, "ResolvedRefs"),
            (false, reason.into()),
            "{route}"
        );
        assert!(route_condition(&s, INFRA, route, "Accepted").0, "{route}");
        bed.check(&[get(path).status(500)]).await;
    }

    // httproute-reference-grant: with the grant the web backend answers; without it, 500.
    let grant = conformance!("httproute-reference-grant");
    let s = bed.serve(&[grant]);
    assert_eq!(
        route_condition(&s, INFRA, "reference-grant", "ResolvedRefs"),
        (true, "ResolvedRefs".into())
    );
    bed.check(&[get("/").to("web-backend")]).await;
    let without: Vec<&str> = grant
        .split("\n---\n")
        .filter(|d| !d.contains("kind: ReferenceGrant"))
        .collect();
    bed.serve(&[&without.join("\n---\n")]);
    bed.check(&[get("/").status(500)]).await;

    // The httproute-invalid-parentref-* tests: not accepted, nothing served, no route counted.
    for (file, ns, route, reason) in [
        (
            conformance!("httproute-invalid-parentref-not-matching-section-name"),
            INFRA,
            "httproute-listener-not-matching-section-name",
            "NoMatchingParent",
        ),
        (
            conformance!("httproute-invalid-parentref-not-matching-listener-port"),
            INFRA,
            "httproute-listener-not-matching-route-port",
            "NoMatchingParent",
        ),
        (
            conformance!("httproute-invalid-cross-namespace-parent-ref"),
            "gateway-conformance-web-backend",
            "invalid-cross-namespace-parent-ref",
            "NotAllowedByListeners",
        ),
    ] {
        let s = bed.serve(&[file]);
        assert_eq!(
            route_condition(&s, ns, route, "Accepted"),
            (false, reason.into()),
            "{route}"
        );
        let gw = &s.gateway_status.gateways
            [&ObjectRef::new(ObjectKind::Gateway, INFRA, "same-namespace")];
        assert_eq!(gw.listeners[0].attached_routes, 0, "{route}");
        bed.check(&[get("/").status(404)]).await;
    }
}

/// The HTTPS listeners of the conformance base Gateway `same-namespace-with-https-listener`
/// (conformance/base/manifests.yaml: no hostname, `second-example.org`, `*.wildcard.org`,
/// `fourth-example.wildcard.org`, all on 443 with one certificate), one HTTPRoute per
/// listener (`sectionName`), and an Ingress with TLS for `shop.test` on the same port.
fn misdirected_manifests(pods: &BTreeMap<&str, SocketAddr>) -> String {
    use base64::Engine as _;
    let names = [
        "example.org",
        "second-example.org",
        "*.wildcard.org",
        "fourth-example.wildcard.org",
        "shop.test",
    ];
    let (cert, key) = xdp_ingress::proxy::tls::self_signed_pem(&names).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let listener = |name: &str, host: Option<&str>| {
        let host = host
            .map(|h| format!(", hostname: \"{h}\""))
            .unwrap_or_default();
        format!(
            "  - {{name: {name}, port: 443, protocol: HTTPS{host}, allowedRoutes: {{namespaces: {{from: Same}}}}, tls: {{certificateRefs: [{{name: misdirected-cert}}]}}}}\n"
        )
    };
    let route = |name: &str, section: &str, backend: &str| {
        // The catch-all listener's route names its host, as the suite's does.
        let hostnames = if section == "https" {
            "  hostnames: [example.org]\n"
        } else {
            ""
        };
        format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace-with-https-listener, sectionName: {section}}}]
{hostnames}  rules:
  - matches: [{{path: {{type: PathPrefix, value: /detect-misdirected-requests}}}}]
    backendRefs: [{{name: {backend}, port: 8080}}]
"#
        )
    };
    let shop = pods[V3];
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: misdirected-cert, namespace: gateway-conformance-infra}}
type: kubernetes.io/tls
data: {{tls.crt: {}, tls.key: {}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: same-namespace-with-https-listener, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: "{{GATEWAY_CLASS_NAME}}"
  listeners:
{}{}{}{}{}{}{}{}---
apiVersion: v1
kind: Service
metadata: {{name: shop, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: shop-1, namespace: default, labels: {{kubernetes.io/service-name: shop}}}}
addressType: IPv4
ports: [{{name: http, port: {}, protocol: TCP}}]
endpoints:
- {{addresses: ["{}"], conditions: {{ready: true}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: shop, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  tls: [{{hosts: [shop.test], secretName: shop-tls}}]
  rules:
  - host: shop.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: shop, port: {{number: 80}}}}}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: shop-tls, namespace: default}}
type: kubernetes.io/tls
data: {{tls.crt: {}, tls.key: {}}}
"#,
        b64(&cert),
        b64(&key),
        listener("https", None),
        listener("https-with-hostname", Some("second-example.org")),
        listener("https-with-wildcard-hostname", Some("*.wildcard.org")),
        listener(
            "https-with-hostname-matching-wildcard",
            Some("fourth-example.wildcard.org")
        ),
        route("catch-all", "https", V1),
        route("second", "https-with-hostname", V2),
        route("wildcard", "https-with-wildcard-hostname", V3),
        route("fourth", "https-with-hostname-matching-wildcard", V1),
        shop.port(),
        shop.port(),
        shop.ip(),
        b64(&cert),
        b64(&key),
    )
}

/// `HTTPSListenerDetectMisdirectedRequests` (feature
/// `GatewayHTTPSListenerDetectMisdirectedRequests`, GEP-3567; RFC 9110 section 15.5.20): a
/// request whose Host selects another HTTPS listener than the one the TLS handshake's SNI
/// selected gets 421, over HTTP/1.1 and HTTP/2 (connection coalescing); the same listener
/// serves it. A host an Ingress serves on the same port is never answered 421.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_detects_misdirected_requests() {
    let bed = Bed::start().await;
    bed.serve(&[&misdirected_manifests(&bed.pod_addrs)]);
    let https = bed.proxy.https();
    // (SNI, Host, status, the pod that answers).
    let cases: &[(&str, &str, u16, &str)] = &[
        ("example.org", "example.org", 200, V1),
        ("example.org", "second-example.org", 421, ""),
        ("example.org", "unknown-example.org", 404, ""),
        ("second-example.org", "second-example.org", 200, V2),
        ("second-example.org", "example.org", 421, ""),
        ("second-example.org", "unknown-example.org", 421, ""),
        (
            "third-example.wildcard.org",
            "third-example.wildcard.org",
            200,
            V3,
        ),
        (
            "third-example.wildcard.org",
            "fith-example.wildcard.org",
            200,
            V3,
        ),
        (
            "third-example.wildcard.org",
            "fourth-example.wildcard.org",
            421,
            "",
        ),
        (
            "fourth-example.wildcard.org",
            "fourth-example.wildcard.org",
            200,
            V1,
        ),
        ("fourth-example.wildcard.org", "second-example.org", 421, ""),
        // The Ingress's host, whatever the SNI: ingress-nginx semantics.
        ("second-example.org", "shop.test", 200, V3),
        ("shop.test", "shop.test", 200, V3),
    ];
    for h2 in [false, true] {
        for &(sni, host, status, pod) in cases {
            let (stream, _) =
                tls_connect(https, sni, &[if h2 { b"h2" } else { b"http/1.1" }]).await;
            let path = if host == "shop.test" {
                "/"
            } else {
                "/detect-misdirected-requests"
            };
            let g = request_over(stream, h2, req(https, host, path)).await;
            let what = format!("SNI {sni}, Host {host}, h2 {h2}");
            assert_eq!(g.status.as_u16(), status, "{what}");
            if !pod.is_empty() {
                assert_eq!(g.pod(), pod, "{what}");
            }
        }
    }
    // Plain HTTP on the proxy's HTTP port is never checked.
    let g = l7common::get(
        &bed.client,
        bed.proxy.http(),
        "second-example.org",
        "/detect-misdirected-requests",
    )
    .await;
    assert_ne!(g.status.as_u16(), 421);
}

/// Listener ports follow the Gateways, in process: a Gateway's HTTPS listener on another
/// port than the proxy's is opened with its certificate and serves its routes only; the
/// proxy's own ports keep serving theirs; removing the Gateway closes the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_https_listener_on_its_own_port() {
    let bed = Bed::start().await;
    // A port nothing listens on now, allowed by the translation's range.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let manifests =
        misdirected_manifests(&bed.pod_addrs).replace("port: 443", &format!("port: {port}"));
    let ports = ProxyPorts {
        gateway_range: format!("{port}").parse().unwrap(),
        ..bed.ports()
    };
    let yaml = format!("{}---\n{}", base(&bed.pod_addrs), manifests);
    let s = translate_manifests(1, &localize(&yaml, ports), |c| c.gateway_ports = ports);
    bed.proxy.handle.apply(s.clone());
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_eq!(bed.proxy.handle.gateway_listeners().get(&port), Some(&addr));
    let (stream, _) = tls_connect(addr, "second-example.org", &[b"http/1.1"]).await;
    let g = request_over(
        stream,
        false,
        req(addr, "second-example.org", "/detect-misdirected-requests"),
    )
    .await;
    assert_eq!((g.status.as_u16(), g.pod()), (200, V2.to_string()));
    // The Ingress is served on the proxy's HTTPS port, not on the Gateway's.
    let (stream, _) = tls_connect(addr, "shop.test", &[b"http/1.1"]).await;
    let g = request_over(stream, false, req(addr, "shop.test", "/")).await;
    assert_eq!(g.status.as_u16(), 404);
    let (stream, _) = tls_connect(bed.proxy.https(), "shop.test", &[b"http/1.1"]).await;
    let g = request_over(stream, false, req(bed.proxy.https(), "shop.test", "/")).await;
    assert_eq!((g.status.as_u16(), g.pod()), (200, V3.to_string()));
    // And the Gateway's routes are not on the proxy's HTTPS port.
    let (stream, _) = tls_connect(bed.proxy.https(), "second-example.org", &[b"http/1.1"]).await;
    let g = request_over(
        stream,
        false,
        req(
            bed.proxy.https(),
            "second-example.org",
            "/detect-misdirected-requests",
        ),
    )
    .await;
    assert_eq!(g.status.as_u16(), 404);
    // Gone: the port closes.
    let s = translate_manifests(2, &localize(&base(&bed.pod_addrs), ports), |c| {
        c.gateway_ports = ports
    });
    bed.proxy.handle.apply(s);
    assert!(bed.proxy.handle.gateway_listeners().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} still accepts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `(service, method)` of the conformance suite's gRPC echo server.
const GRPC_ECHO: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
const G1: &str = "grpc-infra-backend-v1";
const G2: &str = "grpc-infra-backend-v2";
const G3: &str = "grpc-infra-backend-v3";

/// What a gRPC client reads from one unary call.
#[derive(Debug)]
struct GrpcGot {
    /// The gRPC status code: `grpc-status`, else the HTTP status mapped as gRPC clients do
    /// (grpc/doc/http-grpc-status-mapping.md: 404 is UNIMPLEMENTED).
    code: u32,
    /// The echo's JSON, from the one response message.
    echo: Option<serde_json::Value>,
}

impl GrpcGot {
    fn pod(&self) -> &str {
        self.echo
            .as_ref()
            .and_then(|e| e["pod"].as_str())
            .unwrap_or_default()
    }
    /// Every value of request header `name` the backend saw, joined by `, `.
    fn saw(&self, name: &str) -> Option<&str> {
        self.echo.as_ref()?["headers"][name].as_str()
    }
}

const OK: u32 = 0;
const UNIMPLEMENTED: u32 = 12;

/// One unary call of `method` on the echo service, as a gRPC client makes it: HTTP/2 POST
/// of one length-prefixed (empty) message with `te: trailers`, to `authority`, with
/// `metadata`; over h2c (prior knowledge) or, with `tls`, TLS with ALPN `h2`.
async fn grpc_call(
    bed: &Bed,
    tls: bool,
    authority: &str,
    method: &str,
    metadata: &[(&str, &str)],
) -> GrpcGot {
    let addr = if tls {
        bed.proxy.https()
    } else {
        bed.proxy.http()
    };
    let mut r = req(addr, authority, &format!("/{GRPC_ECHO}/{method}"));
    *r.method_mut() = http::Method::POST;
    *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]));
    let h = r.headers_mut();
    h.insert("content-type", "application/grpc".parse().unwrap());
    h.insert("te", "trailers".parse().unwrap());
    for (k, v) in metadata {
        h.append(
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let got = if tls {
        let (stream, _) = tls_connect(addr, authority, &[b"h2"]).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        request_over(stream, true, r).await
    } else {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        request_over(tcp, true, r).await
    };
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
    let echo = (got.body.len() > 5 && got.body[0] == 0)
        .then(|| serde_json::from_slice(&got.body[5..]).ok())
        .flatten();
    GrpcGot { code, echo }
}

/// The route parent condition `type` of GRPCRoute `route` in gateway-conformance-infra.
fn grpc_condition(s: &Snapshot, route: &str, type_: &str) -> (bool, String) {
    let parents = &s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, INFRA, route)];
    let c = parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} on {route}"));
    (c.status, c.reason.clone())
}

/// The GRPCRoute conformance tests (conformance/tests/grpcroute-*.go) with real gRPC calls
/// over h2c: exact method matching, header matching, listener hostnames, request header
/// modifiers, weights; each answered by the backend the suite expects, unmatched calls
/// `UNIMPLEMENTED`. The pods speak gRPC's HTTP/2 framing and trailers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcroute_conformance() {
    let bed = Bed::start().await;
    let call =
        |authority: &'static str, method: &'static str, md: Vec<(&'static str, &'static str)>| {
            let bed = &bed;
            async move { grpc_call(bed, false, authority, method, &md).await }
        };

    // grpcroute-exact-method-matching.
    let s = bed.serve(&[conformance!("grpcroute-exact-method-matching")]);
    assert_eq!(
        grpc_condition(&s, "exact-matching", "Accepted"),
        (true, "Accepted".into())
    );
    for (method, want) in [
        ("Echo", Some(G1)),
        ("EchoTwo", Some(G2)),
        ("EchoThree", None),
    ] {
        let g = call("gw.example", method, vec![]).await;
        match want {
            Some(pod) => assert_eq!((g.code, g.pod()), (OK, pod), "{method}"),
            None => assert_eq!(g.code, UNIMPLEMENTED, "{method}"),
        }
    }

    // grpcroute-header-matching.
    bed.serve(&[conformance!("grpcroute-header-matching")]);
    for (md, want) in [
        (vec![("Version", "one")], Some(G1)),
        (vec![("Version", "two")], Some(G2)),
        (vec![("Version", "two"), ("Color", "orange")], Some(G1)),
        (vec![("Version", "two"), ("Color", "blue")], Some(G2)),
        (vec![("Color", "orange")], None),
        (vec![("Some-Other-Header", "one")], None),
        (vec![("Color", "blue")], Some(G1)),
        (vec![("Color", "green")], Some(G1)),
        (vec![("Color", "red")], Some(G2)),
        (vec![("Color", "yellow")], Some(G2)),
        (vec![("Color", "purple")], None),
    ] {
        let g = call("gw.example", "Echo", md.clone()).await;
        match want {
            Some(pod) => assert_eq!((g.code, g.pod()), (OK, pod), "{md:?}"),
            None => assert_eq!(g.code, UNIMPLEMENTED, "{md:?}"),
        }
    }

    // grpcroute-listener-hostname-matching.
    let s = bed.serve(&[conformance!("grpcroute-listener-hostname-matching")]);
    for r in ["backend-v1", "backend-v2", "backend-v3"] {
        assert_eq!(
            grpc_condition(&s, r, "Accepted"),
            (true, "Accepted".into()),
            "{r}"
        );
    }
    for (authority, want) in [
        ("bar.com", Some(G1)),
        ("foo.bar.com", Some(G2)),
        ("baz.bar.com", Some(G3)),
        ("boo.bar.com", Some(G3)),
        ("multiple.prefixes.bar.com", Some(G3)),
        ("multiple.prefixes.foo.com", Some(G3)),
        ("foo.com", None),
        ("no.matching.host", None),
    ] {
        let g = call(authority, "Echo", vec![]).await;
        match want {
            Some(pod) => assert_eq!((g.code, g.pod()), (OK, pod), "{authority}"),
            None => assert_eq!(g.code, UNIMPLEMENTED, "{authority}"),
        }
    }

    // grpcroute-request-header-modifier: the first of the equal Echo rules wins (set).
    bed.serve(&[conformance!("grpcroute-request-header-modifier")]);
    let g = call(
        "gw.example",
        "Echo",
        vec![
            ("Some-Other-Header", "this-header-should-be-set"),
            ("X-Header-Set", "this-value-should-be-overwritten"),
        ],
    )
    .await;
    assert_eq!((g.code, g.pod()), (OK, G1));
    assert_eq!(
        g.saw("some-other-header"),
        Some("this-header-should-be-set")
    );
    assert_eq!(g.saw("x-header-set"), Some("set-overwrites-values"));
    let g = call(
        "gw.example",
        "EchoTwo",
        vec![
            ("X-Header-Set-1", "original-value-set"),
            ("X-Header-Add-1", "original-value-add"),
            ("X-Header-Remove-1", "to-be-removed"),
            ("X-Header-Remove-2", "to-be-removed"),
        ],
    )
    .await;
    assert_eq!((g.code, g.pod()), (OK, G2));
    assert_eq!(g.saw("x-header-set-1"), Some("header-set-1"));
    assert_eq!(g.saw("x-header-set-2"), Some("header-set-2"));
    assert_eq!(
        g.saw("x-header-add-1"),
        Some("original-value-add, header-add-1")
    );
    assert_eq!(g.saw("x-header-add-2"), Some("header-add-2"));
    assert_eq!(g.saw("x-header-remove-1"), None);
    assert_eq!(g.saw("x-header-remove-2"), None);

    // grpcroute-weight: 70/30/0 over 200 calls: both weighted backends answer (the chance
    // that one never does is below 1e-30), v1 more often, the weight-0 one never.
    bed.serve(&[conformance!("grpcroute-weight")]);
    let mut seen = BTreeMap::new();
    for _ in 0..200 {
        let g = call("gw.example", "Echo", vec![]).await;
        assert_eq!(g.code, OK);
        *seen.entry(g.pod().to_string()).or_insert(0u32) += 1;
    }
    assert!(
        seen.get(G1).copied().unwrap_or(0) > seen.get(G2).copied().unwrap_or(0)
            && seen.contains_key(G2)
            && !seen.contains_key(G3),
        "{seen:?}"
    );
}

/// GRPCRoute on an HTTPS listener: the client negotiates `h2` by ALPN (the spec's
/// requirement for HTTPS listeners) and the call reaches the gRPC backend over h2c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcroute_over_tls() {
    use base64::Engine as _;
    let bed = Bed::start().await;
    let (crt, key) = xdp_ingress::proxy::tls::self_signed_pem(&["grpc.example"]).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: grpc-tls, namespace: gateway-conformance-infra}}
type: kubernetes.io/tls
data: {{tls.crt: {}, tls.key: {}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tls-gw, namespace: gateway-conformance-infra}}
spec:
  gatewayClassName: "{{GATEWAY_CLASS_NAME}}"
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: grpc.example
    tls: {{certificateRefs: [{{name: grpc-tls}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: over-tls, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: tls-gw}}]
  rules:
  - matches: [{{method: {{service: {GRPC_ECHO}, method: Echo}}}}]
    backendRefs: [{{name: grpc-infra-backend-v2, port: 8080}}]
"#,
        b64(&crt),
        b64(&key)
    );
    let s = bed.serve(&[&yaml]);
    assert_eq!(
        grpc_condition(&s, "over-tls", "Accepted"),
        (true, "Accepted".into())
    );
    let g = grpc_call(&bed, true, "grpc.example", "Echo", &[]).await;
    assert_eq!((g.code, g.pod()), (OK, G2));
    let echo = g.echo.as_ref().expect("echo");
    assert_eq!(
        echo["version"], "HTTP/2.0",
        "the backend is spoken to over HTTP/2"
    );
    assert_eq!(
        grpc_call(&bed, true, "grpc.example", "EchoTwo", &[])
            .await
            .code,
        UNIMPLEMENTED
    );
    // Only the HTTPS listener takes the route: plain h2c gets no route.
    assert_eq!(
        grpc_call(&bed, false, "grpc.example", "Echo", &[])
            .await
            .code,
        UNIMPLEMENTED
    );
}

/// httproute-timeout-request and httproute-timeout-backend-request: a backend that answers
/// after 1 s gets the client 504 under a 500 ms timeout, 200 when the timeout is `0s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_timeouts_conformance() {
    let bed = Bed::start().await;
    bed.serve(&[
        conformance!("httproute-timeout-request"),
        conformance!("httproute-timeout-backend-request"),
    ]);
    bed.check(&[
        get("/request-timeout").to(V1),
        get("/request-timeout?delay=1s").status(504),
        get("/disable-request-timeout?delay=1s").to(V1),
        get("/backend-timeout").to(V1),
        get("/backend-timeout?delay=1s").status(504),
        get("/disable-backend-timeout?delay=1s").to(V1),
    ])
    .await;
}

/// Waits (bounded: 10 s) until `pod` has served `n` requests; false if it never does.
async fn served(pod: &HttpBackend, n: u64) -> bool {
    for _ in 0..200 {
        if pod.requests() >= n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// httproute-request-mirror and httproute-request-multiple-mirrors: the client is answered by
/// the route's backend, every mirror backend gets a copy (after the request header
/// modifier), and a mirror that never answers does not hold the client's answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_request_mirror_conformance() {
    let bed = Bed::start().await;
    bed.serve(&[conformance!("httproute-request-mirror")]);
    let (v2, v3) = (bed.pod(V2), bed.pod(V3));
    let before = v2.requests();
    bed.check(&[get("/mirror").to(V1)]).await;
    assert!(served(v2, before + 1).await, "v2 got the copy");
    let before = v2.requests();
    bed.check(&[get("/mirror-and-modify-headers")
        .h("X-Header-Remove", "remove-val")
        .h("X-Header-Add-Append", "append-val-1")
        .to(V1)
        .sees("X-Header-Add", "header-val-1")
        .sees("X-Header-Add-Append", "append-val-1,header-val-2")
        .sees("X-Header-Set", "set-overwrites-values")
        .absent("X-Header-Remove")])
        .await;
    assert!(served(v2, before + 1).await, "v2 got the modified copy");

    bed.serve(&[conformance!("httproute-request-multiple-mirrors")]);
    let (b2, b3) = (v2.requests(), v3.requests());
    bed.check(&[get("/multi-mirror").to(V1)]).await;
    assert!(served(v2, b2 + 1).await && served(v3, b3 + 1).await);

    // A mirror backend that accepts and never answers: the client still gets its answer,
    // while the copy is pending there.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel(4);
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = sink.accept().await {
            let _ = held_tx.send(()).await;
            held.push(s);
        }
    });
    let route = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: sink, namespace: gateway-conformance-infra}}
spec:
  ports: [{{name: first-port, port: 8080, targetPort: 3000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: sink-1
  namespace: gateway-conformance-infra
  labels: {{kubernetes.io/service-name: sink}}
addressType: IPv4
ports: [{{name: first-port, port: {}, protocol: TCP}}]
endpoints:
- {{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: mirror-to-sink, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules:
  - filters:
    - {{type: RequestMirror, requestMirror: {{backendRef: {{name: sink, port: 8080}}}}}}
    backendRefs: [{{name: infra-backend-v1, port: 8080}}]
"#,
        sink_addr.port()
    );
    bed.serve(&[&route]);
    for _ in 0..3 {
        bed.check(&[get("/to-sink").to(V1)]).await;
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), held_rx.recv())
        .await
        .expect("the copy reached the sink")
        .expect("sink runs");
    holder.abort();
}

/// httproute-cors (conformance/tests/httproute-cors.go): preflights from allowed origins are
/// answered here with the route's CORS headers, others reach the backend with none; simple
/// requests get the allowed origin back, with credentials when the route allows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_cors_conformance() {
    let bed = Bed::start().await;
    bed.serve(&[conformance!("httproute-cors")]);
    let preflight = |path: &'static str, origin: &'static str, method: &'static str| {
        get(path)
            .method("OPTIONS")
            .h("Origin", origin)
            .h("access-control-request-method", method)
    };
    bed.check(&[
        preflight("/cors-1", "https://www.foo.com", "GET")
            .h("access-control-request-headers", "x-header-1, x-header-2")
            .status(204)
            .gets("access-control-allow-origin", "https://www.foo.com")
            .gets("access-control-allow-methods", "GET, OPTIONS")
            .gets("access-control-allow-headers", "x-header-1, x-header-2")
            .gets("access-control-expose-headers", "x-header-3, x-header-4")
            .gets("access-control-max-age", "3600")
            .gets("access-control-allow-credentials", "true"),
        preflight("/cors-1", "https://www.bar.com", "GET")
            .status(204)
            .gets("access-control-allow-origin", "https://www.bar.com"),
        preflight("/cors-1", "https://xpto.www.bar.com", "GET")
            .status(204)
            .gets("access-control-allow-origin", "https://xpto.www.bar.com"),
        preflight("/cors-1", "https://foobar.com", "GET")
            .to(V1)
            .gets_no("access-control-allow-origin"),
        get("/cors-1")
            .h("Origin", "https://www.foo.com")
            .to(V1)
            .gets("access-control-allow-origin", "https://www.foo.com"),
        get("/cors-1")
            .h("Origin", "https://foobar.com")
            .to(V1)
            .gets_no("access-control-allow-origin"),
        preflight("/cors-2", "https://www.foo.com", "POST")
            .status(204)
            .gets("access-control-allow-methods", "POST")
            .gets_no("access-control-allow-credentials"),
        preflight("/cors-wildcard-origin", "https://foobar.com:12345", "PUT")
            .status(204)
            .gets("access-control-allow-origin", "*")
            .gets("access-control-allow-methods", "PUT")
            .gets_no("access-control-allow-credentials"),
        preflight(
            "/cors-wildcard-methods-headers",
            "https://other.foo.com",
            "PUT",
        )
        .h("access-control-request-headers", "x-header-1, x-header-2")
        .status(204)
        .gets("access-control-allow-origin", "https://other.foo.com")
        .gets("access-control-allow-methods", "PUT")
        .gets("access-control-allow-headers", "x-header-1, x-header-2")
        .gets("access-control-allow-credentials", "true"),
        get("/cors-wildcard-methods-headers-unauth")
            .h("Origin", "https://other.foo.com")
            .to(V1)
            .gets("access-control-allow-origin", "*")
            .gets_no("access-control-allow-credentials"),
    ])
    .await;
}

/// Waits (bounded: 10 s) until `pod`'s request count stays put for half a second; returns it.
async fn settled(pod: &HttpBackend) -> u64 {
    let mut last = pod.requests();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = pod.requests();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// httproute-request-percentage-mirror: `percent: 20` and `fraction: 25/50` copy about that
/// share of requests. Over 400 requests the bounds are six standard deviations wide (a false
/// failure is below 1e-8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_request_percentage_mirror_conformance() {
    let bed = Bed::start().await;
    bed.serve(&[conformance!("httproute-request-percentage-mirror")]);
    let v2 = bed.pod(V2);
    for (path, low, high) in [
        ("/percent-mirror", 32u64, 128u64),
        ("/percent-mirror-fraction", 140, 260),
    ] {
        let before = settled(v2).await;
        for _ in 0..400 {
            let g = l7common::get(&bed.client, bed.proxy.http(), "gw.example", path).await;
            assert_eq!(g.pod(), V1);
        }
        let copies = settled(v2).await - before;
        assert!(
            (low..=high).contains(&copies),
            "{path}: {copies} copies of 400"
        );
    }
}

/// BackendTLSPolicy: a route's Service behind a policy is reached over TLS, verified with the
/// policy's CA and hostname; a policy whose hostname the pod's certificate does not carry
/// leaves the client with a 5xx (spec: connections MUST fail), and the policy gets its
/// ancestor status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy() {
    let bed = Bed::start().await;
    let (crt, key) = xdp_ingress::proxy::tls::self_signed_pem(&["abc.example.com"]).unwrap();
    let tls_pod =
        HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), "tls-backend", &crt, &key).unwrap();
    let indented: String = crt.lines().map(|l| format!("    {l}\n")).collect();
    let policy = |name: &str, svc: &str, host: &str| {
        format!(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: gateway-conformance-infra}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {svc}}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-tls-checks-certificate}}]
    hostname: {host}
"#
        )
    };
    let service = |svc: &str| {
        format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: {svc}, namespace: gateway-conformance-infra}}
spec: {{ports: [{{name: btls, port: 443, targetPort: 8443}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {svc}-1
  namespace: gateway-conformance-infra
  labels: {{kubernetes.io/service-name: {svc}}}
addressType: IPv4
ports: [{{name: btls, port: {}, protocol: TCP}}]
endpoints:
- {{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}
"#,
            tls_pod.addr.port()
        )
    };
    let yaml = format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-tls-checks-certificate, namespace: gateway-conformance-infra}}
data:
  ca.crt: |
{indented}{}{}{}{}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: backendtlspolicy, namespace: gateway-conformance-infra}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [abc.example.com]
  rules:
  - matches: [{{path: {{type: Exact, value: /backendtlspolicy}}}}]
    backendRefs: [{{name: backendtlspolicy-test, port: 443}}]
  - matches: [{{path: {{type: Exact, value: /backendtlspolicy-host-mismatch}}}}]
    backendRefs: [{{name: backendtlspolicy-host-mismatch-test, port: 443}}]
"#,
        service("backendtlspolicy-test"),
        service("backendtlspolicy-host-mismatch-test"),
        policy(
            "normative-test-backendtlspolicy",
            "backendtlspolicy-test",
            "abc.example.com"
        ),
        policy(
            "backendtlspolicy-host-mismatch",
            "backendtlspolicy-host-mismatch-test",
            "mismatch.example.com"
        ),
    );
    let s = bed.serve(&[&yaml]);
    bed.check(&[
        get("/backendtlspolicy")
            .host("abc.example.com")
            .to("tls-backend"),
        get("/backendtlspolicy-host-mismatch")
            .host("abc.example.com")
            .status(502),
    ])
    .await;
    let ancestors = &s.gateway_status.policies[&ObjectRef::new(
        ObjectKind::BackendTLSPolicy,
        INFRA,
        "normative-test-backendtlspolicy",
    )];
    assert_eq!(ancestors[0].parent_ref.name, "same-namespace");
    assert!(
        ancestors[0].conditions.iter().all(|c| c.status),
        "{ancestors:?}"
    );
}

/// ListenerSets (GEP-1713): conformance/tests/listenerset-http-routing.go, all 36 requests:
/// a Gateway parentRef reaches the Gateway's own listeners only, a ListenerSet parentRef
/// that set's (sectionName narrows to one). Then a ListenerSet listener on another port
/// (the suite's 8080, which the proxy opens): a route attached to it serves 200 there and
/// nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listenerset_http_routing_conformance() {
    let bed = Bed::start().await;
    let s = bed.serve(&[conformance!("listenerset-http-routing")]);
    bed.check(&[
        get("/route").host("gateway-listener-1.com").to(V1),
        get("/route").host("gateway-listener-2.com").to(V1),
        get("/route")
            .host("listener-set-http-routing-1-listener-1.com")
            .to(V1),
        get("/route")
            .host("listener-set-http-routing-1-listener-2.com")
            .to(V1),
        get("/route")
            .host("listener-set-http-routing-2-listener-1.com")
            .to(V1),
        get("/route")
            .host("listener-set-http-routing-2-listener-2.com")
            .to(V1),
        get("/gateway-route").host("gateway-listener-1.com").to(V2),
        get("/gateway-route").host("gateway-listener-2.com").to(V2),
        get("/gateway-route")
            .host("listener-set-http-routing-1-listener-1.com")
            .status(404),
        get("/gateway-route")
            .host("listener-set-http-routing-1-listener-2.com")
            .status(404),
        get("/gateway-route")
            .host("listener-set-http-routing-2-listener-1.com")
            .status(404),
        get("/gateway-route")
            .host("listener-set-http-routing-2-listener-2.com")
            .status(404),
        get("/gateway-section-route")
            .host("gateway-listener-1.com")
            .to(V3),
        get("/gateway-section-route")
            .host("gateway-listener-2.com")
            .status(404),
        get("/gateway-section-route")
            .host("listener-set-http-routing-1-listener-1.com")
            .status(404),
        get("/gateway-section-route")
            .host("listener-set-http-routing-1-listener-2.com")
            .status(404),
        get("/gateway-section-route")
            .host("listener-set-http-routing-2-listener-1.com")
            .status(404),
        get("/gateway-section-route")
            .host("listener-set-http-routing-2-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-1-route")
            .host("gateway-listener-1.com")
            .status(404),
        get("/listener-set-http-routing-1-route")
            .host("gateway-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-1-route")
            .host("listener-set-http-routing-1-listener-1.com")
            .to(V2),
        get("/listener-set-http-routing-1-route")
            .host("listener-set-http-routing-1-listener-2.com")
            .to(V2),
        get("/listener-set-http-routing-1-route")
            .host("listener-set-http-routing-2-listener-1.com")
            .status(404),
        get("/listener-set-http-routing-1-route")
            .host("listener-set-http-routing-2-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-1-section-route")
            .host("gateway-listener-1.com")
            .status(404),
        get("/listener-set-http-routing-1-section-route")
            .host("gateway-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-1-section-route")
            .host("listener-set-http-routing-1-listener-1.com")
            .to(V3),
        get("/listener-set-http-routing-1-section-route")
            .host("listener-set-http-routing-1-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-1-section-route")
            .host("listener-set-http-routing-2-listener-1.com")
            .status(404),
        get("/listener-set-http-routing-1-section-route")
            .host("listener-set-http-routing-2-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-2-route")
            .host("gateway-listener-1.com")
            .status(404),
        get("/listener-set-http-routing-2-route")
            .host("gateway-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-2-route")
            .host("listener-set-http-routing-1-listener-1.com")
            .status(404),
        get("/listener-set-http-routing-2-route")
            .host("listener-set-http-routing-1-listener-2.com")
            .status(404),
        get("/listener-set-http-routing-2-route")
            .host("listener-set-http-routing-2-listener-1.com")
            .to(V2),
        get("/listener-set-http-routing-2-route")
            .host("listener-set-http-routing-2-listener-2.com")
            .to(V2),
    ])
    .await;
    let attached = s.gateway_status.gateways[&ObjectRef::new(
        ObjectKind::Gateway,
        INFRA,
        "gateway-with-listener-sets-http-routing",
    )]
        .attached_listener_sets;
    assert_eq!(attached, 2);

    let s = bed.serve(&[r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  allowedListeners: {namespaces: {from: All}}
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: team-listeners, namespace: gateway-conformance-app-backend}
spec:
  parentRef: {name: shared, namespace: gateway-conformance-infra}
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: team-route, namespace: gateway-conformance-app-backend}
spec:
  parentRefs: [{kind: ListenerSet, name: team-listeners, sectionName: http}]
  rules: [{backendRefs: [{name: app-backend-v1, port: 8080}]}]
"#]);
    bed.check(&[
        get("/team").on_8080().to("app-backend-v1"),
        get("/team").status(404),
    ])
    .await;
    let set = &s.gateway_status.listener_sets[&ObjectRef::new(
        ObjectKind::ListenerSet,
        "gateway-conformance-app-backend",
        "team-listeners",
    )];
    assert_eq!(set.listeners[0].attached_routes, 1);
}

/// `(namespace, ListenerSet)` -> `(Accepted, Programmed)` as `(status, reason)`; `""`: any
/// reason (as the suite's `Reason: ""`).
type SetExpectation = (
    &'static str,
    &'static str,
    (bool, &'static str),
    (bool, &'static str),
);

/// The ListenerSet status conformance tests (conformance/tests/listenerset-*.go) that need no
/// traffic: each manifest translated as the control plane does, then the Gateway's
/// `Accepted` and `attachedListenerSets`, each ListenerSet's `Accepted`/`Programmed`, and the
/// named listeners' conditions (`Some(reason)`: conflicted with that reason, which the suite
/// expects on `Accepted: False`, `Programmed: False` and `Conflicted: True`; `None`: accepted,
/// programmed and resolved), as the suite expects them.
#[test]
fn listenerset_status_conformance() {
    const NS: &str = INFRA;
    type ListenerExpectation = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    );
    /// `(manifest, Gateway, attachedListenerSets, ListenerSets, listeners)`.
    type StatusCase = (
        &'static str,
        &'static str,
        i32,
        Vec<SetExpectation>,
        Vec<ListenerExpectation>,
    );
    let cases: [StatusCase; 6] = [
        (
            conformance!("listenerset-default-not-allowed"),
            "gateway-default-does-not-allow-listenerset",
            0,
            vec![(
                NS,
                "listenerset-default-not-allowed",
                (false, "NotAllowed"),
                (false, "NotAllowed"),
            )],
            vec![],
        ),
        (
            conformance!("listenerset-allowed-namespace-none"),
            "gateway-does-not-allow-listenerset",
            0,
            vec![(
                NS,
                "listenerset-not-allowed",
                (false, "NotAllowed"),
                (false, "NotAllowed"),
            )],
            vec![],
        ),
        (
            conformance!("listenerset-allowed-namespace-same"),
            "gateway-allows-listenerset-in-same-namespace",
            1,
            vec![
                (
                    NS,
                    "listenerset-in-same-namespace",
                    (true, "Accepted"),
                    (true, "Programmed"),
                ),
                (
                    "gateway-api-listenerset-not-allowed-ns",
                    "listenerset-in-different-namespace",
                    (false, "NotAllowed"),
                    (false, "NotAllowed"),
                ),
            ],
            vec![(
                NS,
                "listenerset-in-same-namespace",
                "listenerset-in-same-namespace-listener",
                None,
            )],
        ),
        (
            conformance!("listenerset-allowed-namespace-selector"),
            "gateway-allows-listenerset-in-selected-namespace",
            1,
            vec![
                (
                    "gateway-api-listenerset-selector-allowed-ns",
                    "listenerset-in-selected-namespace",
                    (true, "Accepted"),
                    (true, "Programmed"),
                ),
                (
                    "gateway-api-listenerset-selector-not-allowed-ns",
                    "listenerset-not-in-selected-namespace",
                    (false, "NotAllowed"),
                    (false, "NotAllowed"),
                ),
            ],
            vec![(
                "gateway-api-listenerset-selector-allowed-ns",
                "listenerset-in-selected-namespace",
                "listenerset-in-selected-namespace-listener",
                None,
            )],
        ),
        (
            conformance!("listenerset-hostname-conflict"),
            "gateway-with-listenerset-hostname-conflict",
            2,
            vec![
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-gateway-1",
                    (true, ""),
                    (true, "Programmed"),
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-gateway-2",
                    (false, "ListenersNotValid"),
                    (false, "ListenersNotValid"),
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-listener-set-1",
                    (true, ""),
                    (true, "Programmed"),
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-listener-set-2",
                    (false, "ListenersNotValid"),
                    (false, "ListenersNotValid"),
                ),
            ],
            vec![
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-gateway-1",
                    "listener-set-1-listener",
                    None,
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-gateway-1",
                    "hostname-conflict-with-gateway-listener",
                    Some("HostnameConflict"),
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-gateway-1",
                    "hostname-conflict-with-listener-set-listener",
                    None,
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-gateway-2",
                    "hostname-conflict-with-gateway-listener",
                    Some("HostnameConflict"),
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-listener-set-1",
                    "listener-set-2-listener",
                    None,
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-listener-set-1",
                    "hostname-conflict-with-listener-set-listener",
                    Some("HostnameConflict"),
                ),
                (
                    NS,
                    "listenerset-with-hostname-conflict-with-listener-set-2",
                    "hostname-conflict-with-listener-set-listener",
                    Some("HostnameConflict"),
                ),
            ],
        ),
        (
            conformance!("listenerset-protocol-conflict"),
            "gateway-with-listenerset-protocol-conflict",
            2,
            vec![
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-gateway-1",
                    (true, ""),
                    (true, "Programmed"),
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-gateway-2",
                    (false, "ListenersNotValid"),
                    (false, "ListenersNotValid"),
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-listener-set-1",
                    (true, ""),
                    (true, "Programmed"),
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-listener-set-2",
                    (false, "ListenersNotValid"),
                    (false, "ListenersNotValid"),
                ),
            ],
            vec![
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-gateway-1",
                    "listener-set-1-listener",
                    None,
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-gateway-1",
                    "protocol-conflict-with-gateway-listener",
                    Some("ProtocolConflict"),
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-gateway-1",
                    "protocol-conflict-with-listener-set-listener",
                    None,
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-gateway-2",
                    "protocol-conflict-with-gateway-listener",
                    Some("ProtocolConflict"),
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-listener-set-1",
                    "listener-set-2-listener",
                    None,
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-listener-set-1",
                    "protocol-conflict-with-listener-set-listener",
                    Some("ProtocolConflict"),
                ),
                (
                    NS,
                    "listenerset-with-protocol-conflict-with-listener-set-2",
                    "protocol-conflict-with-listener-set-listener",
                    Some("ProtocolConflict"),
                ),
            ],
        ),
    ];
    let class = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp}\nspec: {controllerName: xdp-ingress.dev/controller}\n---\n";
    for (yaml, gateway, attached, sets, listeners) in cases {
        let yaml = format!("{class}{}", yaml.replace("{GATEWAY_CLASS_NAME}", "xdp"));
        let s = translate_manifests(1, &yaml, |_| {});
        let st = &s.gateway_status;
        let gw = &st.gateways[&ObjectRef::new(ObjectKind::Gateway, NS, gateway)];
        let cond = |list: &[xdp_ingress::model::StatusCondition], t: &str| -> (bool, String) {
            let c = list
                .iter()
                .find(|c| c.type_ == t)
                .unwrap_or_else(|| panic!("{gateway}: no {t}"));
            (c.status, c.reason.clone())
        };
        assert!(cond(&gw.conditions, "Accepted").0, "{gateway}");
        assert_eq!(gw.attached_listener_sets, attached, "{gateway}");
        for l in &gw.listeners {
            assert!(
                cond(&l.conditions, "Accepted").0,
                "{gateway} listener {}",
                l.name
            );
        }
        let set = |ns: &str, name: &str| {
            st.listener_sets
                .get(&ObjectRef::new(ObjectKind::ListenerSet, ns, name))
                .unwrap_or_else(|| panic!("{gateway}: no status for ListenerSet {ns}/{name}"))
        };
        for (ns, name, accepted, programmed) in sets {
            let c = &set(ns, name).conditions;
            for (t, (want, reason)) in [("Accepted", accepted), ("Programmed", programmed)] {
                let (got, got_reason) = cond(c, t);
                assert_eq!(got, want, "{ns}/{name} {t}: {c:?}");
                if !reason.is_empty() {
                    assert_eq!(got_reason, reason, "{ns}/{name} {t}");
                }
            }
        }
        for (ns, name, listener, conflict) in listeners {
            let ls = &set(ns, name).listeners;
            let l = ls
                .iter()
                .find(|l| l.name == listener)
                .unwrap_or_else(|| panic!("{ns}/{name}: no listener {listener} in {ls:?}"));
            let what = format!("{ns}/{name} listener {listener}");
            match conflict {
                Some(reason) => {
                    for (t, want) in [
                        ("Accepted", false),
                        ("Programmed", false),
                        ("Conflicted", true),
                    ] {
                        assert_eq!(
                            cond(&l.conditions, t),
                            (want, reason.to_string()),
                            "{what} {t}"
                        );
                    }
                }
                None => {
                    for t in ["Accepted", "Programmed", "ResolvedRefs"] {
                        assert!(cond(&l.conditions, t).0, "{what} {t}: {:?}", l.conditions);
                    }
                }
            }
        }
    }
}
