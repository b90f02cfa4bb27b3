//! Gateway API HTTPRoutes and GRPCRoutes end to end on loopback: the scenarios of the
//! upstream conformance suite's GATEWAY-HTTP core tests (kubernetes-sigs/gateway-api,
//! conformance/tests/*.go), each named after the upstream test and written for this project:
//! the objects come from the builders in `l7_gateway/objects.rs`, the expected responses are
//! the upstream tests' assertions, as tables. Objects are translated as the control plane
//! does, the proxy runs in-process, and each case checks what the client gets (status,
//! `Location`, headers) and what the pod receives (path, `Host`, headers).
//!
//! Two things differ from a conformance run, both forced by the bed: Gateway listener ports
//! 80 and 443 are mapped to the proxy's own ports and 8080 and 8090 to ports the proxy opens
//! for Gateways, all picked at random, so a redirect that keeps the listener port names that
//! port; and requests name `gw.example` where the suite sends the Gateway's address.

mod l7common;
#[path = "l7_gateway/objects.rs"]
mod objects;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

use http::{Request, StatusCode};
use l7common::*;
use objects::*;
use serde_json::{Value, json};
use testbed::http_backend::HttpBackend;
use xdp_ingress::model::{ObjectKind, ObjectRef, Snapshot, translate::gateway::ProxyPorts};

/// `(namespace, Service)` of the bed's backends; each gets one pod answering as its Service
/// name.
const BACKENDS: &[(&str, &str)] = &[
    (EDGE, V1),
    (EDGE, V2),
    (EDGE, V3),
    (SHOP, "shop-v1"),
    (SHOP, "shop-v2"),
    (BLOG, "blog"),
    (EDGE, G1),
    (EDGE, G2),
    (EDGE, G3),
];

const V1: &str = "echo-v1";
const V2: &str = "echo-v2";
const V3: &str = "echo-v3";

/// `echo-v1`'s ports besides 8080: HTTP/2 with prior knowledge and WebSocket, by
/// `appProtocol` (Kubernetes' standard application protocols).
const V1_H2C: SvcPort<'static> = ("h2c", 8081, Some("kubernetes.io/h2c"));
const V1_WS: SvcPort<'static> = ("ws", 8082, Some("kubernetes.io/ws"));

/// What every scenario starts from: the GatewayClass, the namespaces (`shop` and `blog`
/// labelled `tier: apps`), the Gateways [`GW_SAME`], [`GW_ALL`] and [`GW_APPS`] (one HTTP
/// listener on 80 each), and the backend Services (port 8080) with one ready pod each.
fn base(pods: &BTreeMap<&str, SocketAddr>) -> Vec<Value> {
    let http = |name| listener(name, 80, "HTTP");
    let mut out = vec![
        gateway_class(),
        namespace(EDGE, ("tier", "edge")),
        namespace(SHOP, ("tier", "apps")),
        namespace(BLOG, ("tier", "apps")),
        gateway(EDGE, GW_SAME, vec![http("web")]),
        gateway(EDGE, GW_ALL, vec![http("web").all_namespaces()]),
        gateway(
            EDGE,
            GW_APPS,
            vec![http("web").namespaces_labelled("tier", "apps")],
        ),
    ];
    for (ns, name) in BACKENDS {
        let ports: &[SvcPort] = if *name == V1 {
            &[HTTP_8080, V1_H2C, V1_WS]
        } else {
            &[HTTP_8080]
        };
        out.extend(service(ns, name, ports, pods[name]));
    }
    out
}

/// Every document of `yaml` with the Gateway listener ports 80 and 443 mapped to the
/// proxy's, and 8080 and 8090 to the ports the proxy may open for Gateways
/// (`ports.gateway_range`, two ports per bed): in Gateways' listeners and in routes'
/// `parentRefs`.
fn localize(yaml: &str, ports: ProxyPorts) -> String {
    use serde::Deserialize;
    let map = |v: &mut yaml_serde::Value| {
        let port = match v["port"].as_u64() {
            Some(80) => ports.http,
            Some(443) => ports.https,
            Some(8080) => ports.gateway_range.first,
            Some(8090) => ports.gateway_range.last,
            _ => return,
        };
        v["port"] = port.into();
    };
    let mut docs = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(yaml) {
        let mut v = yaml_serde::Value::deserialize(doc).expect("manifest parses");
        if v.is_null() {
            continue;
        }
        let spec = &mut v["spec"];
        for field in ["listeners", "parentRefs"] {
            if let Some(items) = spec[field].as_sequence_mut() {
                items.iter_mut().for_each(map);
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
    /// Where Gateway listeners on port 8080 go (and, one above, those on 8090): ports free
    /// when the bed started.
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
            alt_port: testbed::ports::reserve(2),
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

    /// Where the Gateway listeners on `port` (80, 8080 or 8090) are served.
    fn addr(&self, port: u16) -> SocketAddr {
        match port {
            80 => self.proxy.http(),
            8080 => ([127, 0, 0, 1], self.alt_port).into(),
            8090 => ([127, 0, 0, 1], self.alt_port + 1).into(),
            _ => panic!("no listener port {port} in the bed"),
        }
    }

    fn ports(&self) -> ProxyPorts {
        ProxyPorts {
            http: self.proxy.http().port(),
            https: self.proxy.https().port(),
            gateway_range: xdp_ingress::model::translate::gateway::PortRange {
                first: self.alt_port,
                last: self.alt_port + 1,
            },
        }
    }

    /// Translates the base objects and `manifests` (YAML documents), serves them, and
    /// returns the snapshot.
    fn serve(&self, manifests: &[&str]) -> Arc<Snapshot> {
        let yaml = format!(
            "{}\n---\n{}",
            manifest(&base(&self.pod_addrs)),
            manifests.join("\n---\n")
        );
        let ports = self.ports();
        let s = translate_manifests(1, &localize(&yaml, ports), |c| c.gateway_ports = ports);
        self.proxy.handle.apply(s.clone());
        s
    }

    /// [`Bed::serve`] of built objects.
    fn apply(&self, objects: Vec<Value>) -> Arc<Snapshot> {
        self.serve(&[&manifest(&objects)])
    }

    async fn check(&self, cases: &[Case]) {
        for c in cases {
            c.check(self).await;
        }
    }
}

/// A route built with its defaults, as a one-object list for [`Bed::apply`].
fn one(r: Route) -> Vec<Value> {
    vec![r.build()]
}

/// One `http.ExpectedResponse` of the conformance suite: a request and what must come of it.
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
    /// The Gateway listener port it is sent to: 80 (the proxy's HTTP port), 8080 or 8090.
    port: u16,
    /// The address it is sent to instead of the listen address (a Gateway's own).
    ip: Option<std::net::IpAddr>,
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
        port: 80,
        ip: None,
    }
}

impl Case {
    fn at(mut self, ip: std::net::IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }
    fn on_port(mut self, port: u16) -> Self {
        self.port = port;
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
        let mut addr = bed.addr(self.port);
        if let Some(ip) = self.ip {
            addr.set_ip(ip);
        }
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

/// The route parent condition `type` of `kind` route `ns/route` (its first parent).
fn parent_condition(
    s: &Snapshot,
    kind: ObjectKind,
    ns: &str,
    route: &str,
    type_: &str,
) -> (bool, String) {
    let parents = s
        .gateway_status
        .routes
        .get(&ObjectRef::new(kind, ns, route))
        .unwrap_or_else(|| panic!("no status for {ns}/{route}"));
    let c = parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} on {route}"));
    (c.status, c.reason.clone())
}

/// The route parent condition `type` of HTTPRoute `ns/route`.
fn route_condition(s: &Snapshot, ns: &str, route: &str, type_: &str) -> (bool, String) {
    parent_condition(s, ObjectKind::HTTPRoute, ns, route, type_)
}

/// `(Accepted, ResolvedRefs)` both true with their positive reasons.
fn accepted_and_resolved(s: &Snapshot, ns: &str, route: &str) {
    assert_eq!(
        route_condition(s, ns, route, "Accepted"),
        (true, "Accepted".into()),
        "{route}"
    );
    assert_eq!(
        route_condition(s, ns, route, "ResolvedRefs"),
        (true, "ResolvedRefs".into()),
        "{route}"
    );
}

/// `attachedRoutes` of every listener of Gateway `EDGE/gw`.
fn attached_routes(s: &Snapshot, gw: &str) -> Vec<i32> {
    s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, EDGE, gw)]
        .listeners
        .iter()
        .map(|l| l.attached_routes)
        .collect()
}

/// A rule on requests with header `version: v` (and nothing else).
fn version(v: &str) -> Match {
    any().header("version", v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_matching_conformance() {
    let bed = Bed::start().await;

    // HTTPRouteSimpleSameNamespace.
    let s = bed.apply(one(http_route("plain").rule(rule().to(V1))));
    accepted_and_resolved(&s, EDGE, "plain");
    bed.check(&[get("/").to(V1)]).await;

    // HTTPRouteMatching: path prefix or header, ORed within a rule.
    let v1_or_v2 = |name: &str| {
        http_route(name)
            .rule(rule().prefix("/").when(version("one")).to(V1))
            .rule(rule().prefix("/v2").when(version("two")).to(V2))
    };
    bed.apply(one(v1_or_v2("prefix-or-header")));
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

    // HTTPRouteMatchingAcrossRoutes: the same two rules in two routes, on different hosts.
    bed.apply(vec![
        http_route("across-a")
            .hosts(&["example.com", "example.net"])
            .rule(rule().prefix("/").when(version("one")).to(V1))
            .build(),
        http_route("across-b")
            .hosts(&["example.com"])
            .rule(rule().prefix("/v2").when(version("two")).to(V2))
            .build(),
    ]);
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

    // HTTPRouteHeaderMatching.
    let color = |c: &str| any().header("color", c);
    bed.apply(one(http_route("by-header")
        .rule(rule().when(version("one")).to(V1))
        .rule(rule().when(version("two")).to(V2))
        .rule(rule().when(version("two").header("color", "orange")).to(V1))
        .rule(rule().when(color("blue")).when(color("green")).to(V1))
        .rule(rule().when(color("red")).when(color("yellow")).to(V2))));
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

    // HTTPRouteQueryParamMatching.
    let q = |k: &str, v: &str| any().query(k, v);
    bed.apply(one(http_route("by-query")
        .rule(rule().when(q("animal", "whale")).to(V1))
        .rule(rule().when(q("animal", "dolphin")).to(V2))
        .rule(
            rule()
                .when(q("animal", "dolphin").query("color", "blue"))
                .when(q("ANIMAL", "Whale"))
                .to(V3),
        )
        .rule(
            rule()
                .when(prefix("/path1").query("animal", "whale"))
                .to(V1),
        )
        .rule(rule().when(version("one").query("animal", "whale")).to(V2))
        .rule(
            rule()
                .when(
                    prefix("/path2")
                        .header("version", "two")
                        .query("animal", "whale"),
                )
                .to(V3),
        )
        .rule(rule().prefix("/path5").to(V1))
        .rule(rule().when(q("animal", "hydra")).to(V2))
        .rule(rule().when(version("four")).to(V3))));
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

    // HTTPRouteMethodMatching.
    let m = |method: &str| any().method(method);
    bed.apply(one(http_route("by-method")
        .rule(rule().when(m("POST")).to(V1))
        .rule(rule().when(m("GET")).to(V2))
        .rule(rule().when(prefix("/path1").method("GET")).to(V1))
        .rule(rule().when(version("one").method("PUT")).to(V2))
        .rule(
            rule()
                .when(prefix("/path2").header("version", "two").method("POST"))
                .to(V3),
        )
        .rule(
            rule()
                .when(prefix("/path3").method("PATCH"))
                .when(prefix("/path4").header("version", "three").method("DELETE"))
                .to(V1),
        )
        .rule(rule().prefix("/path5").to(V1))
        .rule(rule().when(m("PATCH")).to(V2))
        .rule(rule().when(version("four")).to(V3))));
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

    // HTTPRoutePathMatchOrder: Exact before PathPrefix, longer prefixes first.
    bed.apply(one(http_route("path-order")
        .rule(rule().exact("/match").to(V1))
        .rule(rule().exact("/match/exact").to(V2))
        .rule(rule().exact("/match/exact/one").to(V3))
        .rule(rule().prefix("/match/").to(V3))
        .rule(rule().prefix("/match/prefix/").to(V1))
        .rule(rule().prefix("/match/prefix/one").to(V2))));
    bed.check(&[
        get("/match/exact/one").to(V3),
        get("/match/exact").to(V2),
        get("/match").to(V1),
        get("/match/prefix/one/any").to(V2),
        get("/match/prefix/any").to(V1),
        get("/match/any").to(V3),
    ])
    .await;

    // HTTPRouteExactPathMatching.
    bed.apply(one(http_route("exact-only")
        .rule(rule().exact("/one").to(V1))
        .rule(rule().exact("/two").to(V2))));
    bed.check(&[
        get("/one").to(V1),
        get("/two").to(V2),
        get("/").status(404),
        get("/one/example").status(404),
        get("/two/").status(404),
        get("/Two").status(404),
    ])
    .await;

    // HTTPRouteNamedRule: a rule's name changes nothing about routing.
    let s = bed.apply(one(http_route("named-rules")
        .rule(rule().named("first").prefix("/named").to(V1))
        .rule(rule().prefix("/unnamed").to(V2))));
    accepted_and_resolved(&s, EDGE, "named-rules");
    bed.check(&[get("/named").to(V1), get("/unnamed").to(V2)])
        .await;
}

/// An HTTP listener on 80 for `host` (none: every host), routes from its namespace.
fn http_for(name: &str, host: Option<&str>) -> Listener {
    let l = listener(name, 80, "HTTP");
    match host {
        Some(h) => l.host(h),
        None => l,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_hostnames_conformance() {
    let bed = Bed::start().await;
    // HTTPRouteHostnameIntersection: one Gateway with a specific and two wildcard listeners,
    // routes whose hostnames intersect them (or not); and one listener for every host.
    let gw = "hosts";
    let on = |name: &str, hosts: &[&str], path: &str, to: &str| {
        http_route(name)
            .parent(gw)
            .hosts(hosts)
            .rule(rule().prefix(path).to(to))
            .build()
    };
    bed.apply(vec![
        gateway(
            EDGE,
            gw,
            vec![
                http_for("exact", Some("very.specific.com")),
                http_for("wild", Some("*.wildcard.io")),
                http_for("other-wild", Some("*.anotherwildcard.io")),
            ],
        ),
        gateway(EDGE, "any-host", vec![http_for("web", None)]),
        on(
            "specific-on-specific",
            &[
                "non.matching.com",
                "*.nonmatchingwildcard.io",
                "very.specific.com",
            ],
            "/s1",
            V1,
        ),
        on(
            "specific-on-wildcard",
            &[
                "non.matching.com",
                "wildcard.io",
                "foo.wildcard.io",
                "bar.wildcard.io",
                "foo.bar.wildcard.io",
            ],
            "/s2",
            V2,
        ),
        on(
            "wildcard-on-specific",
            &["non.matching.com", "*.specific.com"],
            "/s3",
            V3,
        ),
        on("wildcard-on-wildcard", &["*.anotherwildcard.io"], "/s4", V1),
        on(
            "no-intersection",
            &["specific.but.wrong.com", "wildcard.io"],
            "/s5",
            V2,
        ),
        http_route("on-any-host")
            .parent("any-host")
            .hosts(&["first.com", "sub.first.com", "second.com", "sub.second.com"])
            .rule(rule().to(V2))
            .build(),
    ]);
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

    // HTTPRouteListenerHostnameMatching: a Gateway wildcard takes one or more labels.
    bed.apply(vec![
        gateway(
            EDGE,
            gw,
            vec![
                http_for("bar", Some("bar.com")),
                http_for("foo-bar", Some("foo.bar.com")),
                http_for("any-bar", Some("*.bar.com")),
                http_for("any-foo", Some("*.foo.com")),
            ],
        ),
        http_route("to-v1")
            .section(gw, "bar")
            .rule(rule().to(V1))
            .build(),
        http_route("to-v2")
            .section(gw, "foo-bar")
            .rule(rule().to(V2))
            .build(),
        http_route("to-v3")
            .section(gw, "any-bar")
            .section(gw, "any-foo")
            .rule(rule().to(V3))
            .build(),
    ]);
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

    // GatewayHTTPListenerIsolation: a request goes to the listener with the most specific
    // matching hostname and only its routes; twice, with hostnames on the listeners only and
    // with the same hostnames on the routes too.
    let listeners: [(&str, Option<&str>); 4] = [
        ("no-host", None),
        ("any-example", Some("*.example.com")),
        ("any-foo-example", Some("*.foo.example.com")),
        ("abc-foo-example", Some("abc.foo.example.com")),
    ];
    for with_route_hosts in [false, true] {
        let mut objs = vec![gateway(
            EDGE,
            "isolated",
            listeners
                .iter()
                .map(|(n, h)| http_for(n, *h).all_namespaces())
                .collect(),
        )];
        for (name, host) in listeners {
            let mut r = http_route(&format!("only-{name}")).section("isolated", name);
            if with_route_hosts && let Some(h) = host {
                r = r.hosts(&[h]);
            }
            objs.push(r.rule(rule().prefix(&format!("/{name}")).to(V1)).build());
        }
        let s = bed.apply(objs);
        for (name, _) in listeners {
            accepted_and_resolved(&s, EDGE, &format!("only-{name}"));
        }
        let cases: Vec<Case> = [
            ("bar.com", "no-host"),
            ("bar.example.com", "any-example"),
            ("bar.foo.example.com", "any-foo-example"),
            ("abc.foo.example.com", "abc-foo-example"),
        ]
        .iter()
        .flat_map(|&(host, served_by)| {
            listeners.iter().map(move |&(path, _)| {
                let c = get(leak(format!("/{path}"))).host(host);
                if path == served_by {
                    c.to(V1)
                } else {
                    c.status(404)
                }
            })
        })
        .collect();
        bed.check(&cases).await;
    }
}

/// A `'static` copy of `s` (test tables hold `&'static str`; a handful per run).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The header modifier every "and modify headers" scenario applies besides its other filter.
fn modify_headers() -> Value {
    request_headers(
        &[("X-Header-Set", "set-overwrites-values")],
        &[
            ("X-Header-Add", "header-val-1"),
            ("X-Header-Add-Append", "header-val-2"),
        ],
        &["X-Header-Remove"],
    )
}

/// A request with the headers [`modify_headers`] acts on.
fn with_modified_headers(c: Case) -> Case {
    c.h("X-Header-Remove", "remove-val")
        .h("X-Header-Add-Append", "append-val-1")
}

/// What the pod sees of a request through [`modify_headers`].
fn sees_modified_headers(c: Case) -> Case {
    c.sees("X-Header-Add", "header-val-1")
        .sees("X-Header-Add-Append", "append-val-1,header-val-2")
        .sees("X-Header-Set", "set-overwrites-values")
        .absent("X-Header-Remove")
}

/// [`request_headers`] or [`response_headers`]: a filter from `(set, add, remove)`.
type ModifierFilter = fn(&[(&str, &str)], &[(&str, &str)], &[&str]) -> Value;

/// Header modifier rules shared by the request and response scenarios: `/set`, `/add`,
/// `/remove`, `/multiple`, `/case-insensitivity`, each with `modifier(set, add, remove)`.
fn modifier_rules(mut r: Route, modifier: ModifierFilter, extra_adds: &[(&str, &str)]) -> Route {
    let mut case_adds = vec![("X-Header-Add", "header-add")];
    case_adds.extend_from_slice(extra_adds);
    for (path, f) in [
        (
            "/set",
            modifier(&[("X-Header-Set", "set-overwrites-values")], &[], &[]),
        ),
        (
            "/add",
            modifier(&[], &[("X-Header-Add", "add-appends-values")], &[]),
        ),
        ("/remove", modifier(&[], &[], &["X-Header-Remove"])),
        (
            "/multiple",
            modifier(
                &[
                    ("X-Header-Set-1", "header-set-1"),
                    ("X-Header-Set-2", "header-set-2"),
                ],
                &[
                    ("X-Header-Add-1", "header-add-1"),
                    ("X-Header-Add-2", "header-add-2"),
                    ("X-Header-Add-3", "header-add-3"),
                ],
                &["X-Header-Remove-1", "X-Header-Remove-2"],
            ),
        ),
        (
            "/case-insensitivity",
            modifier(
                &[("X-Header-Set", "header-set")],
                &case_adds,
                &["X-Header-Remove"],
            ),
        ),
    ] {
        r = r.rule(rule().prefix(path).filter(f).to(V1));
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_filters_conformance() {
    let bed = Bed::start().await;
    // HTTPRouteRequestHeaderModifier.
    bed.apply(one(modifier_rules(
        http_route("request-headers"),
        request_headers,
        &[],
    )));
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

    // HTTPRouteResponseHeaderModifier.
    bed.apply(one(modifier_rules(
        http_route("response-headers"),
        response_headers,
        &[
            ("x-lowercase-add", "lowercase-add"),
            ("x-Mixedcase-ADD-1", "mixedcase-add-1"),
            ("X-mixeDcase-add-2", "mixedcase-add-2"),
            ("X-UPPERCASE-ADD", "uppercase-add"),
        ],
    )
    .rule(
        rule()
            .prefix("/response-and-request-header-modifiers")
            .filter(response_headers(
                &[
                    ("X-Header-Set-1", "header-set-1"),
                    ("X-Header-Set-2", "header-set-2"),
                ],
                &[
                    ("X-Header-Add-1", "header-add-1"),
                    ("X-Header-Add-2", "header-add-2"),
                ],
                &["X-Header-Remove-1", "X-Header-Remove-2"],
            ))
            .filter(modify_headers())
            .to(V1),
    )));
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

    // HTTPRouteRewritePath.
    let rewritten = |path: &str, p: Value| rule().prefix(path).filter(rewrite(json!({"path": p})));
    bed.apply(one(http_route("rewrite-path")
        .rule(rewritten("/prefix/one", replace_prefix("/one")).to(V1))
        .rule(rewritten("/strip-prefix", replace_prefix("/")).to(V1))
        .rule(rewritten("/full/one", replace_full("/one")).to(V1))
        .rule(
            rewritten(
                "/full/rewrite-path-and-modify-headers",
                replace_full("/test"),
            )
            .filter(modify_headers())
            .to(V1),
        )
        .rule(
            rewritten(
                "/prefix/rewrite-path-and-modify-headers",
                replace_prefix("/prefix"),
            )
            .filter(modify_headers())
            .to(V1),
        )));
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

    // HTTPRouteRewriteHost.
    let host_to = |h: &str| rewrite(json!({"hostname": h}));
    bed.apply(one(http_route("rewrite-host")
        .hosts(&["rewrite.example"])
        .rule(
            rule()
                .prefix("/one")
                .filter(host_to("one.example.org"))
                .to(V1),
        )
        .rule(rule().filter(host_to("example.org")).to(V2))
        .rule(
            rule()
                .prefix("/rewrite-host-and-modify-headers")
                .filter(host_to("test.example.org"))
                .filter(modify_headers())
                .to(V2),
        )));
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

/// A rule redirecting requests under `path` with `fields` (a `RequestRedirect`).
fn redirect_rule(path: &str, fields: Value) -> Rule {
    rule().prefix(path).filter(redirect(fields))
}

/// A route of one redirect rule per `(path, fields)`, on `gw`.
fn redirects(name: &str, gw: &str, rules: &[(&str, Value)]) -> Value {
    rules
        .iter()
        .fold(http_route(name).parent(gw), |r, (path, fields)| {
            r.rule(redirect_rule(path, fields.clone()))
        })
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_redirects_conformance() {
    let bed = Bed::start().await;
    // HTTPRouteRedirectHostAndStatus. The listener port (the suite's 80) is kept when
    // neither scheme nor port is set.
    bed.apply(vec![redirects(
        "redirect-host",
        GW_SAME,
        &[
            ("/hostname-redirect", json!({"hostname": "example.org"})),
            (
                "/host-and-status",
                json!({"hostname": "example.org", "statusCode": 301}),
            ),
        ],
    )]);
    bed.check(&[
        get("/hostname-redirect").redirect(302, "http://example.org:{P}/hostname-redirect"),
        get("/host-and-status").redirect(301, "http://example.org:{P}/host-and-status"),
    ])
    .await;
    // HTTPRouteRedirectPath.
    bed.apply(vec![redirects(
        "redirect-path",
        GW_SAME,
        &[
            (
                "/original-prefix",
                json!({"path": replace_prefix("/replacement-prefix")}),
            ),
            (
                "/full",
                json!({"path": replace_full("/full-path-replacement")}),
            ),
            (
                "/path-and-host",
                json!({"hostname": "example.org", "path": replace_prefix("/replacement-prefix")}),
            ),
            (
                "/path-and-status",
                json!({"statusCode": 301, "path": replace_prefix("/replacement-prefix")}),
            ),
            (
                "/full-path-and-host",
                json!({"hostname": "example.org", "path": replace_full("/replacement-full")}),
            ),
            (
                "/full-path-and-status",
                json!({"statusCode": 301, "path": replace_full("/replacement-full")}),
            ),
        ],
    )]);
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
    // HTTPRouteRedirectPort.
    bed.apply(vec![redirects(
        "redirect-port",
        GW_SAME,
        &[
            ("/port", json!({"port": 8083})),
            (
                "/port-and-host",
                json!({"port": 8083, "hostname": "example.org"}),
            ),
            ("/port-and-status", json!({"port": 8083, "statusCode": 301})),
            (
                "/port-and-host-and-status",
                json!({"port": 8083, "hostname": "example.org", "statusCode": 302}),
            ),
        ],
    )]);
    bed.check(&[
        get("/port").redirect(302, "http://gw.example:8083/port"),
        get("/port-and-host").redirect(302, "http://example.org:8083/port-and-host"),
        get("/port-and-status").redirect(301, "http://gw.example:8083/port-and-status"),
        get("/port-and-host-and-status")
            .redirect(302, "http://example.org:8083/port-and-host-and-status"),
    ])
    .await;
    // HTTPRouteRedirectScheme.
    bed.apply(vec![redirects(
        "redirect-scheme",
        GW_SAME,
        &[
            ("/scheme", json!({"scheme": "https"})),
            (
                "/scheme-and-host",
                json!({"scheme": "https", "hostname": "example.org"}),
            ),
            (
                "/scheme-and-status",
                json!({"scheme": "https", "statusCode": 301}),
            ),
            (
                "/scheme-and-host-and-status",
                json!({"scheme": "https", "statusCode": 302, "hostname": "example.org"}),
            ),
        ],
    )]);
    bed.check(&[
        get("/scheme").redirect(302, "https://gw.example/scheme"),
        get("/scheme-and-host").redirect(302, "https://example.org/scheme-and-host"),
        get("/scheme-and-status").redirect(301, "https://gw.example/scheme-and-status"),
        get("/scheme-and-host-and-status")
            .redirect(302, "https://example.org/scheme-and-host-and-status"),
    ])
    .await;
    // HTTPRouteRedirectPortAndScheme: the Gateway on the HTTP port, and one on 8080 (the
    // proxy opens that port; a redirect that keeps the port names the listener's).
    let to_org = |extra: Value| {
        let mut f = json!({"hostname": "example.org"});
        if let (Some(f), Some(extra)) = (f.as_object_mut(), extra.as_object()) {
            f.extend(extra.clone());
        }
        f
    };
    let s = bed.apply(vec![
        gateway(EDGE, "gw-8080", vec![listener("web", 8080, "HTTP")]),
        redirects(
            "redirects-on-80",
            GW_SAME,
            &[
                ("/scheme-nil-and-port-nil", to_org(json!({}))),
                ("/scheme-nil-and-port-80", to_org(json!({"port": 80}))),
                ("/scheme-nil-and-port-8080", to_org(json!({"port": 8080}))),
                (
                    "/scheme-https-and-port-nil",
                    to_org(json!({"scheme": "https"})),
                ),
                (
                    "/scheme-https-and-port-443",
                    to_org(json!({"scheme": "https", "port": 443})),
                ),
                (
                    "/scheme-https-and-port-8443",
                    to_org(json!({"scheme": "https", "port": 8443})),
                ),
            ],
        ),
        redirects(
            "redirects-on-8080",
            "gw-8080",
            &[
                ("/scheme-nil-and-port-nil", to_org(json!({}))),
                ("/scheme-nil-and-port-80", to_org(json!({"port": 80}))),
                (
                    "/scheme-https-and-port-nil",
                    to_org(json!({"scheme": "https"})),
                ),
            ],
        ),
    ]);
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
            .on_port(8080)
            .redirect(302, "http://example.org:{A}/scheme-nil-and-port-nil"),
        get("/scheme-nil-and-port-80")
            .on_port(8080)
            .redirect(302, "http://example.org/scheme-nil-and-port-80"),
        get("/scheme-https-and-port-nil")
            .on_port(8080)
            .redirect(302, "https://example.org/scheme-https-and-port-nil"),
        // Each Gateway's routes on its own port only.
        get("/scheme-nil-and-port-8080").on_port(8080).status(404),
    ])
    .await;
    let gw = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, EDGE, "gw-8080")];
    let accepted = gw.listeners[0]
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status, accepted.reason.as_str()),
        (true, "Accepted")
    );
    accepted_and_resolved(&s, EDGE, "redirects-on-8080");

    // HTTPRoute303Redirect, HTTPRoute307Redirect, HTTPRoute308Redirect: the status code as
    // configured, the path kept (303 for a POST).
    bed.apply(vec![redirects(
        "redirect-codes",
        GW_SAME,
        &[
            ("/see-other", json!({"statusCode": 303})),
            ("/temporary-redirect", json!({"statusCode": 307})),
            ("/permanent-redirect", json!({"statusCode": 308})),
        ],
    )]);
    bed.check(&[
        get("/see-other")
            .method("POST")
            .redirect(303, "http://gw.example:{P}/see-other"),
        get("/temporary-redirect").redirect(307, "http://gw.example:{P}/temporary-redirect"),
        get("/permanent-redirect").redirect(308, "http://gw.example:{P}/permanent-redirect"),
    ])
    .await;
}

/// Sends `n` requests for `path` and counts the pods that answered (the proxy's own answers
/// under their status, e.g. `"500"`).
async fn spread(bed: &Bed, path: &str, n: usize) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let g = l7common::get(&bed.client, bed.proxy.http(), "gw.example", path).await;
        let who = if g.status == StatusCode::OK {
            g.pod().to_string()
        } else {
            g.status.as_u16().to_string()
        };
        *seen.entry(who).or_insert(0u32) += 1;
    }
    seen
}

/// A backendRef to Service `ns/name` port 8080.
fn svc_in(ns: &str, name: &str) -> Value {
    json!({"name": name, "namespace": ns, "port": 8080})
}

/// A route allowed by no listener, or by none it names: not accepted with `reason`, counted
/// by no listener, served nowhere. Returns the snapshot.
async fn not_attached(
    bed: &Bed,
    objs: Vec<Value>,
    ns: &str,
    route: &str,
    gw: &str,
    reason: &str,
) -> Arc<Snapshot> {
    let s = bed.apply(objs);
    assert_eq!(
        route_condition(&s, ns, route, "Accepted"),
        (false, reason.into()),
        "{route}"
    );
    assert!(attached_routes(&s, gw).iter().all(|n| *n == 0), "{route}");
    bed.check(&[get("/").status(404)]).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_backends_and_references_conformance() {
    let bed = Bed::start().await;
    // HTTPRouteWeight: 70/30/0. Over 300 requests both weighted backends answer (the chance
    // that one of them never does is below 1e-15) and the weight-0 one never does.
    bed.apply(one(
        http_route("weights").rule(rule().weighted(V1, 70).weighted(V2, 30).weighted(V3, 0))
    ));
    let seen = spread(&bed, "/", 300).await;
    assert!(
        seen.get(V1)
            .is_some_and(|n| *n > seen.get(V2).copied().unwrap_or(0)),
        "{seen:?}"
    );
    assert!(seen.contains_key(V2) && seen.len() == 2, "{seen:?}");

    // Every backend at weight 0: nothing may be forwarded, and the rule has no backend to
    // serve it, so 500 (as for a rule whose backends are all invalid).
    bed.apply(one(
        http_route("all-weights-zero").rule(rule().weighted(V1, 0).weighted(V2, 0))
    ));
    bed.check(&[get("/").status(500), get("/any").status(500)])
        .await;

    // HTTPRouteRequestHeaderModifierBackendWeights: each backendRef's own filter applies to
    // the requests sent to it, and only to those (and so does a response header modifier).
    let tagged = |svc: &str| {
        let mut b = json!({"name": svc, "port": 8080, "weight": 10});
        b["filters"] = json!([
            request_headers(&[("Backend", svc)], &[], &[]),
            response_headers(&[("Served-By", svc)], &[], &[]),
        ]);
        b
    };
    let s = bed.apply(one(
        http_route("per-backend-headers").rule(rule().backend(tagged(V1)).backend(tagged(V2)))
    ));
    accepted_and_resolved(&s, EDGE, "per-backend-headers");
    for _ in 0..100 {
        let g = l7common::get(&bed.client, bed.proxy.http(), "gw.example", "/").await;
        assert_eq!(g.status, StatusCode::OK);
        let json = g.json();
        assert_eq!(json["headers"]["backend"], json["pod"], "{json}");
        assert_eq!(json["pod"], g.header("served-by"), "{json}");
    }

    // The invalid-backendRef tests (HTTPRouteInvalidNonExistentBackendRef,
    // HTTPRouteInvalidBackendRefUnknownKind, HTTPRouteInvalidCrossNamespaceBackendRef,
    // HTTPRouteInvalidReferenceGrant): 500 and ResolvedRefs False with the spec's reason.
    let to_blog = || rule().backend(svc_in(BLOG, "blog"));
    // Grants that each miss by one field: their namespace, from group, from kind, from
    // namespace, to group, to kind, to name.
    let near_misses = [
        grant(
            EDGE,
            "wrong-namespace",
            (GW_GROUP, "HTTPRoute", EDGE),
            ("", "Service", "blog"),
        ),
        grant(
            BLOG,
            "wrong-from-group",
            ("example.com", "HTTPRoute", EDGE),
            ("", "Service", "blog"),
        ),
        grant(
            BLOG,
            "wrong-from-kind",
            (GW_GROUP, "Gateway", EDGE),
            ("", "Service", "blog"),
        ),
        grant(
            BLOG,
            "wrong-from-ns",
            (GW_GROUP, "HTTPRoute", SHOP),
            ("", "Service", "blog"),
        ),
        grant(
            BLOG,
            "wrong-to-group",
            (GW_GROUP, "HTTPRoute", EDGE),
            ("example.com", "Service", "blog"),
        ),
        grant(
            BLOG,
            "wrong-to-kind",
            (GW_GROUP, "HTTPRoute", EDGE),
            ("", "Secret", "blog"),
        ),
        grant(
            BLOG,
            "wrong-to-name",
            (GW_GROUP, "HTTPRoute", EDGE),
            ("", "Service", "other"),
        ),
    ];
    for (objs, route, path, reason) in [
        (
            one(http_route("to-nothing").rule(rule().backend(svc_in(EDGE, "missing")))),
            "to-nothing",
            "/",
            "BackendNotFound",
        ),
        (
            one(http_route("to-unknown-kind").rule(rule().backend(json!({
                "group": "things.example.com", "kind": "Thing", "name": V1, "port": 8080
            })))),
            "to-unknown-kind",
            "/v2",
            "InvalidKind",
        ),
        (
            one(http_route("to-blog").rule(to_blog())),
            "to-blog",
            "/",
            "RefNotPermitted",
        ),
        (
            near_misses
                .iter()
                .cloned()
                .chain(one(http_route("to-blog").rule(to_blog())))
                .collect(),
            "to-blog",
            "/",
            "RefNotPermitted",
        ),
    ] {
        let s = bed.apply(objs);
        assert_eq!(
            route_condition(&s, EDGE, route, "ResolvedRefs"),
            (false, reason.into()),
            "{route}"
        );
        assert!(route_condition(&s, EDGE, route, "Accepted").0, "{route}");
        bed.check(&[get(path).status(500)]).await;
    }

    // HTTPRouteReferenceGrant: with the grant the blog backend answers; without it, 500.
    let granted = grant(
        BLOG,
        "edge-routes",
        (GW_GROUP, "HTTPRoute", EDGE),
        ("", "Service", "blog"),
    );
    let s = bed.apply(vec![granted, http_route("to-blog").rule(to_blog()).build()]);
    accepted_and_resolved(&s, EDGE, "to-blog");
    bed.check(&[get("/").to("blog")]).await;
    bed.apply(one(http_route("to-blog").rule(to_blog())));
    bed.check(&[get("/").status(500)]).await;

    // HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: a grant for shop-v1 only; the rule
    // to shop-v2 gets 500, its sibling to shop-v1 is served.
    let s = bed.apply(vec![
        grant(
            SHOP,
            "v1-only",
            (GW_GROUP, "HTTPRoute", EDGE),
            ("", "Service", "shop-v1"),
        ),
        http_route("to-shop")
            .rule(rule().prefix("/v2").backend(svc_in(SHOP, "shop-v2")))
            .rule(rule().backend(svc_in(SHOP, "shop-v1")))
            .build(),
    ]);
    assert_eq!(
        route_condition(&s, EDGE, "to-shop", "ResolvedRefs"),
        (false, "RefNotPermitted".into())
    );
    assert!(route_condition(&s, EDGE, "to-shop", "Accepted").0);
    bed.check(&[get("/v2").status(500), get("/").to("shop-v1")])
        .await;

    // HTTPRouteNoBackendRefs: rules with backendRefs left out or empty answer 500.
    let s = bed.apply(one(http_route("no-backends")
        .rule(rule().exact("/omitted-no-forward"))
        .rule(rule().exact("/empty-no-forward").no_backends())
        .rule(rule().prefix("/").to(V1))));
    accepted_and_resolved(&s, EDGE, "no-backends");
    bed.check(&[
        get("/forward").to(V1),
        get("/omitted-no-forward").status(500),
        get("/empty-no-forward").status(500),
    ])
    .await;

    // HTTPRouteServiceTypes: a Service without selector whose EndpointSlices are written by
    // hand (one IPv4 with the pod, one IPv6 without endpoints), a headless Service with the
    // slice its controller writes, and a headless Service with hand-written slices: each is
    // served by its pod.
    let pod = bed.pod_addrs[V1];
    let hand = |name: &str, headless: bool| {
        let mut spec = json!({"ports": [{"name": "http", "port": 8080, "targetPort": 3000}]});
        if headless {
            spec["clusterIP"] = json!("None");
        }
        let mut v6 = endpoint_slice(EDGE, name, &format!("{name}-v6"), &[HTTP_8080], None);
        v6["addressType"] = json!("IPv6");
        vec![
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": EDGE}, "spec": spec}),
            endpoint_slice(EDGE, name, &format!("{name}-v4"), &[HTTP_8080], Some(pod)),
            v6,
        ]
    };
    let mut objs = hand("hand-sliced", false);
    objs.extend(hand("headless-hand-sliced", true));
    objs.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "headless", "namespace": EDGE},
        "spec": {"clusterIP": "None", "selector": {"app": V1},
                 "ports": [{"name": "http", "port": 8080, "targetPort": 3000}]}}));
    objs.push(endpoint_slice(
        EDGE,
        "headless",
        "headless-x1",
        &[HTTP_8080],
        Some(pod),
    ));
    let mut route = http_route("service-types");
    for svc in ["hand-sliced", "headless", "headless-hand-sliced"] {
        route = route.rule(rule().exact(&format!("/{svc}")).to(svc));
    }
    objs.push(route.build());
    let s = bed.apply(objs);
    accepted_and_resolved(&s, EDGE, "service-types");
    bed.check(&[
        get("/hand-sliced").to(V1),
        get("/headless").to(V1),
        get("/headless-hand-sliced").to(V1),
    ])
    .await;

    // The parentRef tests: not accepted, nothing served, no route counted.
    // HTTPRouteInvalidParentRefNotMatchingSectionName.
    let plain = |name: &str, parent: Value| http_route(name).parent_ref(parent).rule(rule().to(V1));
    not_attached(
        &bed,
        one(plain(
            "no-such-section",
            json!({"name": GW_SAME, "namespace": EDGE, "port": 80, "sectionName": "web2"}),
        )),
        EDGE,
        "no-such-section",
        GW_SAME,
        "NoMatchingParent",
    )
    .await;
    // HTTPRouteInvalidParentRefNotMatchingListenerPort.
    not_attached(
        &bed,
        one(plain(
            "no-such-port",
            json!({"name": GW_SAME, "namespace": EDGE, "port": 81}),
        )),
        EDGE,
        "no-such-port",
        GW_SAME,
        "NoMatchingParent",
    )
    .await;
    // HTTPRouteInvalidParentRefSectionNameNotMatchingPort: the listener exists, its port is
    // another.
    not_attached(
        &bed,
        vec![
            gateway(
                EDGE,
                "gw-any-ns",
                vec![
                    listener("web", 80, "HTTP")
                        .all_namespaces()
                        .kinds(&["HTTPRoute"]),
                ],
            ),
            plain(
                "section-on-other-port",
                json!({"name": "gw-any-ns", "namespace": EDGE, "sectionName": "web", "port": 81}),
            )
            .build(),
        ],
        EDGE,
        "section-on-other-port",
        "gw-any-ns",
        "NoMatchingParent",
    )
    .await;
    // HTTPRouteInvalidCrossNamespaceParentRef.
    not_attached(
        &bed,
        one(plain("from-blog", json!({"name": GW_SAME, "namespace": EDGE})).ns(BLOG)),
        BLOG,
        "from-blog",
        GW_SAME,
        "NotAllowedByListeners",
    )
    .await;
    // HTTPRouteDisallowedKind: a Gateway whose only listener takes TLSRoutes; the route's
    // references still resolve.
    let s = not_attached(
        &bed,
        vec![
            gateway(
                EDGE,
                "tls-only",
                vec![
                    listener("passthrough", 443, "TLS")
                        .passthrough()
                        .kinds(&["TLSRoute"]),
                ],
            ),
            plain(
                "on-tls-only",
                json!({"name": "tls-only", "namespace": EDGE}),
            )
            .build(),
        ],
        EDGE,
        "on-tls-only",
        "tls-only",
        "NotAllowedByListeners",
    )
    .await;
    assert_eq!(
        route_condition(&s, EDGE, "on-tls-only", "ResolvedRefs"),
        (true, "ResolvedRefs".into())
    );

    // HTTPRouteCrossNamespace: a route in blog on the Gateway that takes routes from
    // namespaces labelled `tier: apps`.
    let s = bed.apply(one(http_route("blog-on-apps-gw")
        .ns(BLOG)
        .parent_ref(json!({"name": GW_APPS, "namespace": EDGE}))
        .rule(rule().to("blog"))));
    accepted_and_resolved(&s, BLOG, "blog-on-apps-gw");
    bed.check(&[get("/").to("blog")]).await;

    // A route on two Gateways on ports 80 and 8080 is served by both; each Gateway's own
    // route only by it. (HTTPRouteMultipleGateways itself, two Gateways on port 80 told
    // apart by address: `http_route_multiple_gateways`.)
    let s = bed.apply(vec![
        gateway(
            EDGE,
            "gw-8080",
            vec![listener("web", 8080, "HTTP").all_namespaces()],
        ),
        http_route("shared")
            .parent(GW_SAME)
            .parent("gw-8080")
            .rule(rule().prefix("/shared").to(V1))
            .build(),
        http_route("on-80-only")
            .parent(GW_SAME)
            .rule(rule().prefix("/").to(V2))
            .build(),
        http_route("on-8080-only")
            .parent("gw-8080")
            .rule(rule().prefix("/").to(V3))
            .build(),
    ]);
    for r in ["shared", "on-80-only", "on-8080-only"] {
        assert_eq!(
            route_condition(&s, EDGE, r, "Accepted"),
            (true, "Accepted".into()),
            "{r}"
        );
    }
    bed.check(&[
        get("/shared").to(V1),
        get("/").to(V2),
        get("/shared").on_port(8080).to(V1),
        get("/").on_port(8080).to(V3),
    ])
    .await;

    // HTTPRouteListenerPortMatching: listeners for foo.com on 80, 8080 and 8090 and for
    // bar.com on 8080 and 8090; routes by parentRef port (and section on 8090).
    let gw = "by-port";
    let on = |name: &str, port: u16, host: &str| listener(name, port, "HTTP").host(host);
    let s = bed.apply(vec![
        gateway(
            EDGE,
            gw,
            vec![
                on("foo-80", 80, "foo.com"),
                on("foo-8080", 8080, "foo.com"),
                on("bar-8080", 8080, "bar.com"),
                on("foo-8090", 8090, "foo.com"),
                on("bar-8090", 8090, "bar.com"),
            ],
        ),
        plain("port-80", json!({"name": gw, "port": 80})).build(),
        http_route("port-8080")
            .parent_ref(json!({"name": gw, "port": 8080}))
            .rule(rule().to(V2))
            .build(),
        http_route("port-8090-foo")
            .parent_ref(json!({"name": gw, "port": 8090, "sectionName": "foo-8090"}))
            .rule(rule().to(V3))
            .build(),
    ]);
    for r in ["port-80", "port-8080", "port-8090-foo"] {
        accepted_and_resolved(&s, EDGE, r);
    }
    bed.check(&[
        get("/").host("foo.com").to(V1),
        get("/").host("foo.com:8080").on_port(8080).to(V2),
        get("/").host("bar.com:8080").on_port(8080).to(V2),
        get("/").host("foo.com:8090").on_port(8090).to(V3),
        get("/").host("bar.com:8090").on_port(8090).status(404),
    ])
    .await;
}

/// The TLS Gateway `gw-tls` in [`EDGE`]: HTTPS listeners on `port` with no hostname,
/// `second-example.org`, `*.wildcard.org` and `fourth-example.wildcard.org`, one certificate
/// for all; one HTTPRoute per listener (`sectionName`, under
/// `/detect-misdirected-requests`), and an Ingress with TLS for `shop.test` on the same port.
fn misdirected_manifests(pods: &BTreeMap<&str, SocketAddr>, port: u16) -> String {
    let names = [
        "example.org",
        "second-example.org",
        "*.wildcard.org",
        "fourth-example.wildcard.org",
        "shop.test",
    ];
    let (cert, key) = xdp_ingress::proxy::tls::self_signed_pem(&names).unwrap();
    let https = |name: &str, host: Option<&str>| {
        let l = listener(name, port, "HTTPS").cert("gw-tls-cert");
        match host {
            Some(h) => l.host(h),
            None => l,
        }
    };
    let route = |name: &str, section: &str, backend: &str| {
        let r = http_route(name).section("gw-tls", section);
        // The catch-all listener's route names its host.
        let r = if section == "any-host" {
            r.hosts(&["example.org"])
        } else {
            r
        };
        r.rule(rule().prefix("/detect-misdirected-requests").to(backend))
            .build()
    };
    let mut objs = vec![
        tls_secret(EDGE, "gw-tls-cert", &cert, &key),
        gateway(
            EDGE,
            "gw-tls",
            vec![
                https("any-host", None),
                https("second", Some("second-example.org")),
                https("wildcard", Some("*.wildcard.org")),
                https("fourth", Some("fourth-example.wildcard.org")),
            ],
        ),
        route("catch-all", "any-host", V1),
        route("second", "second", V2),
        route("wildcard", "wildcard", V3),
        route("fourth", "fourth", V1),
        tls_secret("default", "shop-tls", &cert, &key),
    ];
    objs.extend(service("default", "shop", &[("http", 80, None)], pods[V3]));
    let ingress = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: default}
spec:
  ingressClassName: xdp-ingress
  tls: [{hosts: [shop.test], secretName: shop-tls}]
  rules:
  - host: shop.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
"#;
    format!("{}\n---\n{ingress}", manifest(&objs))
}
/// `HTTPSListenerDetectMisdirectedRequests` (feature
/// `GatewayHTTPSListenerDetectMisdirectedRequests`, GEP-3567; RFC 9110 section 15.5.20): a
/// request whose Host selects another HTTPS listener than the one the TLS handshake's SNI
/// selected gets 421, over HTTP/1.1 and HTTP/2 (connection coalescing); the same listener
/// serves it. A host an Ingress serves on the same port is never answered 421.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_detects_misdirected_requests() {
    let bed = Bed::start().await;
    bed.serve(&[&misdirected_manifests(&bed.pod_addrs, 443)]);
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
                // ingress-nginx's HSTS default is the Ingress's, never a Gateway route's.
                let hsts = g.header("strict-transport-security");
                assert_eq!(hsts.is_empty(), host != "shop.test", "{what}: {hsts:?}");
            }
        }
    }
    // A path no route of the Gateway's host takes: the Gateway's 404, without ingress-nginx's
    // HSTS default (found by a conformance walk: the proxy's own misses got it).
    for host in ["second-example.org", "fourth-example.wildcard.org"] {
        let (stream, _) = tls_connect(https, host, &[b"http/1.1"]).await;
        let g = request_over(stream, false, req(https, host, "/nothing-routes-this")).await;
        assert_eq!(g.status.as_u16(), 404, "{host}");
        assert_eq!(g.header("strict-transport-security"), "", "{host}");
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
    let port = testbed::ports::reserve(1);
    let manifests = misdirected_manifests(&bed.pod_addrs, port);
    let ports = ProxyPorts {
        gateway_range: format!("{port}").parse().unwrap(),
        ..bed.ports()
    };
    let yaml = format!("{}\n---\n{}", manifest(&base(&bed.pod_addrs)), manifests);
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
    let s = translate_manifests(2, &localize(&manifest(&base(&bed.pod_addrs)), ports), |c| {
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

/// HTTPRouteHTTPSListener: routes on a Gateway's HTTPS listeners, one by hostname on the
/// listener without one, one by `sectionName` on the listener for `second-example.org`;
/// requests over TLS (SNI as the Host) reach theirs, an unknown host gets 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_https_listener_conformance() {
    let bed = Bed::start().await;
    let (cert, key) =
        xdp_ingress::proxy::tls::self_signed_pem(&["example.org", "second-example.org"]).unwrap();
    let https = |name: &str| listener(name, 443, "HTTPS").cert("gw-tls-cert");
    let s = bed.apply(vec![
        tls_secret(EDGE, "gw-tls-cert", &cert, &key),
        gateway(
            EDGE,
            "gw-tls",
            vec![
                https("any-host"),
                https("second").host("second-example.org"),
            ],
        ),
        http_route("by-host")
            .parent("gw-tls")
            .hosts(&["example.org"])
            .rule(rule().to(V1))
            .build(),
        http_route("by-section")
            .section("gw-tls", "second")
            .rule(rule().to(V2))
            .build(),
    ]);
    accepted_and_resolved(&s, EDGE, "by-host");
    accepted_and_resolved(&s, EDGE, "by-section");
    let https = bed.proxy.https();
    for (host, status, pod) in [
        ("example.org", 200, V1),
        ("unknown-example.org", 404, ""),
        ("second-example.org", 200, V2),
    ] {
        let (stream, _) = tls_connect(https, host, &[b"http/1.1"]).await;
        let g = request_over(stream, false, req(https, host, "/")).await;
        assert_eq!(g.status.as_u16(), status, "{host}");
        if !pod.is_empty() {
            assert_eq!(g.pod(), pod, "{host}");
        }
    }
}
/// The gRPC service the echo pods answer (any service name works; this is ours).
const GRPC_ECHO: &str = "echo.v1.Echo";
const G1: &str = "grpc-v1";
const G2: &str = "grpc-v2";
const G3: &str = "grpc-v3";

/// What a gRPC client reads from one unary call.
#[derive(Debug)]
struct GrpcGot {
    /// The gRPC status code: `grpc-status`, else the HTTP status mapped as gRPC clients do
    /// (grpc/doc/http-grpc-status-mapping.md: 404 is UNIMPLEMENTED).
    code: u32,
    /// A Trailers-Only response (grpc/doc/PROTOCOL-HTTP2.md): HTTP 200 with `grpc-status` in
    /// the headers and no message, as the proxy answers a gRPC call nothing routes.
    trailers_only: bool,
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
    let trailers_only =
        got.status == 200 && got.headers.contains_key("grpc-status") && got.body.is_empty();
    let echo = (got.body.len() > 5 && got.body[0] == 0)
        .then(|| serde_json::from_slice(&got.body[5..]).ok())
        .flatten();
    GrpcGot {
        code,
        trailers_only,
        echo,
    }
}

/// The route parent condition `type` of GRPCRoute `route` in [`EDGE`].
fn grpc_condition(s: &Snapshot, route: &str, type_: &str) -> (bool, String) {
    parent_condition(s, ObjectKind::GRPCRoute, EDGE, route, type_)
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

    // GRPCExactMethodMatching.
    let s = bed.apply(one(grpc_route("by-method")
        .rule(rule().when(grpc_method(GRPC_ECHO, "Echo")).to(G1))
        .rule(rule().when(grpc_method(GRPC_ECHO, "EchoTwo")).to(G2))));
    assert_eq!(
        grpc_condition(&s, "by-method", "Accepted"),
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
            None => assert_eq!((g.code, g.trailers_only), (UNIMPLEMENTED, true), "{method}"),
        }
    }

    // GRPCRouteHeaderMatching.
    let color = |c: &str| any().header("color", c);
    bed.apply(one(grpc_route("by-header")
        .rule(rule().when(version("one")).to(G1))
        .rule(rule().when(version("two")).to(G2))
        .rule(rule().when(version("two").header("color", "orange")).to(G1))
        .rule(rule().when(color("blue")).when(color("green")).to(G1))
        .rule(rule().when(color("red")).when(color("yellow")).to(G2))));
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
            None => assert_eq!((g.code, g.trailers_only), (UNIMPLEMENTED, true), "{md:?}"),
        }
    }

    // GRPCRouteListenerHostnameMatching.
    let gw = "hosts";
    let s = bed.apply(vec![
        gateway(
            EDGE,
            gw,
            vec![
                http_for("bar", Some("bar.com")),
                http_for("foo-bar", Some("foo.bar.com")),
                http_for("any-bar", Some("*.bar.com")),
                http_for("any-foo", Some("*.foo.com")),
            ],
        ),
        grpc_route("to-v1")
            .section(gw, "bar")
            .rule(rule().to(G1))
            .build(),
        grpc_route("to-v2")
            .section(gw, "foo-bar")
            .rule(rule().to(G2))
            .build(),
        grpc_route("to-v3")
            .section(gw, "any-bar")
            .section(gw, "any-foo")
            .rule(rule().to(G3))
            .build(),
    ]);
    for r in ["to-v1", "to-v2", "to-v3"] {
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
            None => assert_eq!(
                (g.code, g.trailers_only),
                (UNIMPLEMENTED, true),
                "{authority}"
            ),
        }
    }

    // A gRPC call to a host only an Ingress serves, on the same port, that no path of it
    // takes: ingress-nginx's 404 page (which gRPC clients read as UNIMPLEMENTED), not the
    // Gateway API's Trailers-Only answer.
    let shop = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: shop.test
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: shop-v1, port: {number: 8080}}}}
"#;
    bed.serve(&[shop]);
    let g = call("shop.test", "Echo", vec![]).await;
    assert_eq!((g.code, g.trailers_only), (UNIMPLEMENTED, false));

    // GRPCRouteRequestHeaderModifier: the first of the equal Echo rules wins (set).
    let echo = |f: Value| rule().when(grpc_method(GRPC_ECHO, "Echo")).filter(f).to(G1);
    bed.apply(one(grpc_route("request-headers")
        .rule(echo(request_headers(
            &[("X-Header-Set", "set-overwrites-values")],
            &[],
            &[],
        )))
        .rule(echo(request_headers(
            &[],
            &[("X-Header-Add", "add-appends-values")],
            &[],
        )))
        .rule(echo(request_headers(&[], &[], &["X-Header-Remove"])))
        .rule(
            rule()
                .when(grpc_method(GRPC_ECHO, "EchoTwo"))
                .filter(request_headers(
                    &[
                        ("X-Header-Set-1", "header-set-1"),
                        ("X-Header-Set-2", "header-set-2"),
                    ],
                    &[
                        ("X-Header-Add-1", "header-add-1"),
                        ("X-Header-Add-2", "header-add-2"),
                    ],
                    &["X-Header-Remove-1", "X-Header-Remove-2"],
                ))
                .to(G2),
        )));
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

    // GRPCRouteWeight: 70/30/0 over 200 calls: both weighted backends answer (the chance
    // that one never does is below 1e-30), v1 more often, the weight-0 one never.
    bed.apply(one(
        grpc_route("weights").rule(rule().weighted(G1, 70).weighted(G2, 30).weighted(G3, 0))
    ));
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

    // Gateways on the proxy's own port without a route: a call no host takes is still the
    // Gateways' to reject (v1.6: gRPC gets UNIMPLEMENTED), in the gRPC form.
    bed.apply(vec![]);
    let g = call("no-route.example", "Echo", vec![]).await;
    assert_eq!((g.code, g.trailers_only), (UNIMPLEMENTED, true));
}

/// GRPCRoute on an HTTPS listener: the client negotiates `h2` by ALPN (the spec's
/// requirement for HTTPS listeners) and the call reaches the gRPC backend over h2c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcroute_over_tls() {
    let bed = Bed::start().await;
    let (crt, key) = xdp_ingress::proxy::tls::self_signed_pem(&["grpc.example"]).unwrap();
    let s = bed.apply(vec![
        tls_secret(EDGE, "grpc-tls", &crt, &key),
        gateway(
            EDGE,
            "tls-gw",
            vec![
                listener("https", 443, "HTTPS")
                    .host("grpc.example")
                    .cert("grpc-tls"),
            ],
        ),
        grpc_route("over-tls")
            .parent("tls-gw")
            .rule(rule().when(grpc_method(GRPC_ECHO, "Echo")).to(G2))
            .build(),
    ]);
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

/// HTTPRouteRequestTimeout and HTTPRouteBackendRequestTimeout: a backend that answers after
/// 1 s gets the client 504 under a 500 ms timeout, 200 when the timeout is `0s`; a response
/// body still streaming when `request` expires is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_timeouts_conformance() {
    let bed = Bed::start().await;
    let timed = |path: &str, field: &str, t: &str| {
        let mut timeouts = json!({});
        timeouts[field] = json!(t);
        rule().prefix(path).to(V1).timeouts(timeouts)
    };
    bed.apply(vec![
        http_route("request-timeouts")
            .rule(timed("/request-timeout", "request", "500ms"))
            .rule(timed("/disable-request-timeout", "request", "0s"))
            .build(),
        http_route("backend-timeouts")
            .rule(timed("/backend-timeout", "backendRequest", "500ms"))
            .rule(timed("/disable-backend-timeout", "backendRequest", "0s"))
            .build(),
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

    // `timeouts.request` covers the whole answer, the body included: a body still streaming
    // at the deadline is cut (the connection closes before its end); one that ends before it
    // is untouched.
    bed.apply(one(
        http_route("timed-body").rule(timed("/drip", "request", "1s"))
    ));
    let drip = |path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n");
        let addr = bed.addr(80);
        async move { raw(addr, request.as_bytes(), std::time::Duration::from_secs(15)).await }
    };
    let whole = drip("/drip/2/10").await;
    assert!(whole.starts_with("HTTP/1.1 200"), "{whole}");
    assert!(whole.contains("tick 1\n"), "{whole}");
    // 20 lines 200 ms apart: 4 s, far past the 1 s deadline.
    let cut = drip("/drip/20/200").await;
    assert!(cut.starts_with("HTTP/1.1 200"), "{cut}");
    assert!(cut.contains("tick 0\n"), "{cut}");
    assert!(!cut.contains("tick 19\n"), "the body was not cut: {cut}");
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

/// HTTPRouteRequestMirror and HTTPRouteRequestMultipleMirrors: the client is answered by
/// the route's backend, every mirror backend gets a copy (after the request header
/// modifier), and a mirror that never answers does not hold the client's answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_request_mirror_conformance() {
    let bed = Bed::start().await;
    bed.apply(one(http_route("mirrors")
        .rule(
            rule()
                .prefix("/mirror")
                .filter(mirror(V2, json!({})))
                .to(V1),
        )
        .rule(
            rule()
                .prefix("/mirror-and-modify-headers")
                .filter(modify_headers())
                .filter(mirror(V2, json!({})))
                .to(V1),
        )));
    let (v2, v3) = (bed.pod(V2), bed.pod(V3));
    let before = v2.requests();
    bed.check(&[get("/mirror").to(V1)]).await;
    assert!(served(v2, before + 1).await, "v2 got the copy");
    let before = v2.requests();
    bed.check(&[sees_modified_headers(with_modified_headers(
        get("/mirror-and-modify-headers").to(V1),
    ))])
    .await;
    assert!(served(v2, before + 1).await, "v2 got the modified copy");

    bed.apply(one(http_route("two-mirrors").rule(
        rule()
            .prefix("/multi-mirror")
            .filter(mirror(V2, json!({})))
            .filter(mirror(V3, json!({})))
            .to(V1),
    )));
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
    let mut objs = service(
        EDGE,
        "sink",
        &[HTTP_8080],
        SocketAddr::from(([127, 0, 0, 1], sink_addr.port())),
    )
    .to_vec();
    objs.push(
        http_route("mirror-to-sink")
            .rule(rule().filter(mirror("sink", json!({}))).to(V1))
            .build(),
    );
    bed.apply(objs);
    for _ in 0..3 {
        bed.check(&[get("/to-sink").to(V1)]).await;
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), held_rx.recv())
        .await
        .expect("the copy reached the sink")
        .expect("sink runs");
    holder.abort();
}

/// HTTPRouteCORS (v1.6.1): preflights from allowed origins are
/// answered here with the route's CORS headers, others reach the backend with none; simple
/// requests get the allowed origin back, with credentials when the route allows them. v1.6
/// keys the `*` rules on `allowCredentials`, not on whether the request carries credentials:
/// with it, no `*` is ever sent (the origin is echoed, unasked methods and headers are left
/// out); cookies on the request change nothing (v1.5's allow-credentials-behavior cases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_cors_conformance() {
    let bed = Bed::start().await;
    let cors_rule = |path: &str, fields: Value| rule().prefix(path).filter(cors(fields)).to(V1);
    bed.apply(vec![
        http_route("cors-listed")
            .rule(cors_rule(
                "/cors-1",
                json!({
                    "allowOrigins": ["https://www.foo.com", "https://*.bar.com"],
                    "allowMethods": ["GET", "OPTIONS"],
                    "allowHeaders": ["x-header-1", "x-header-2"],
                    "exposeHeaders": ["x-header-3", "x-header-4"],
                    "allowCredentials": true,
                    "maxAge": 3600
                }),
            ))
            .build(),
        http_route("cors-any-method")
            .rule(cors_rule(
                "/cors-2",
                json!({"allowOrigins": ["https://www.foo.com"], "allowMethods": ["*"]}),
            ))
            .build(),
        http_route("cors-any-origin")
            .rule(cors_rule(
                "/cors-wildcard-origin",
                json!({"allowOrigins": ["*"], "allowMethods": ["PUT"], "allowCredentials": false}),
            ))
            .build(),
        http_route("cors-any")
            .rule(cors_rule(
                "/cors-wildcard-methods-headers",
                json!({"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"],
                    "allowCredentials": true}),
            ))
            .rule(cors_rule(
                "/cors-wildcard-methods-headers-unauth",
                json!({"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"],
                    "allowCredentials": false}),
            ))
            .build(),
        http_route("cors-credentials")
            .rule(cors_rule(
                "/cors-behavior-creds-false",
                json!({"allowOrigins": ["https://app.example"], "allowCredentials": false}),
            ))
            .rule(cors_rule(
                "/cors-behavior-creds-true",
                json!({"allowOrigins": ["https://app.example"], "allowCredentials": true}),
            ))
            .build(),
        http_route("cors-expose")
            .rule(cors_rule(
                "/cors-expose-creds",
                json!({"allowOrigins": ["*"], "exposeHeaders": ["*", "x-header-3"],
                    "allowCredentials": true}),
            ))
            .rule(cors_rule(
                "/cors-expose-any",
                json!({"allowOrigins": ["*"], "exposeHeaders": ["*", "x-header-3"]}),
            ))
            .build(),
    ]);
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
        // allowCredentials: true and `*` everywhere: a simple request asks for no method or
        // header, so neither list is sent (never `*`); one without Origin is no CORS request.
        get("/cors-wildcard-methods-headers")
            .h("Origin", "https://other.foo.com")
            .to(V1)
            .gets("access-control-allow-origin", "https://other.foo.com")
            .gets("access-control-allow-credentials", "true")
            .gets_no("access-control-allow-methods")
            .gets_no("access-control-allow-headers"),
        get("/cors-wildcard-methods-headers")
            .to(V1)
            .gets_no("access-control-allow-origin")
            .gets_no("access-control-allow-credentials"),
        // allowCredentials: false: `*` may be sent for what the preflight did not ask.
        preflight(
            "/cors-wildcard-methods-headers-unauth",
            "https://other.foo.com",
            "PUT",
        )
        .h("access-control-request-headers", "x-header-1, x-header-2")
        .status(204)
        .gets("access-control-allow-origin", "*")
        .gets("access-control-allow-methods", "PUT")
        .gets("access-control-allow-headers", "x-header-1, x-header-2")
        .gets_no("access-control-allow-credentials"),
        get("/cors-behavior-creds-false")
            .h("Origin", "https://app.example")
            .h("Cookie", "sid=abc123")
            .h("Authorization", "Bearer test")
            .to(V1)
            .gets("access-control-allow-origin", "https://app.example")
            .gets_no("access-control-allow-credentials"),
        get("/cors-behavior-creds-true")
            .h("Origin", "http://not-app.example")
            .h("Cookie", "sid=abc123")
            .to(V1)
            .gets_no("access-control-allow-origin")
            .gets_no("access-control-allow-credentials"),
        get("/cors-behavior-creds-true")
            .h("Origin", "https://app.example")
            .h("Cookie", "sid=abc123")
            .h("Authorization", "Bearer test")
            .to(V1)
            .gets("access-control-allow-origin", "https://app.example")
            .gets("access-control-allow-credentials", "true"),
        // exposeHeaders `*`: only without allowCredentials.
        get("/cors-expose-creds")
            .h("Origin", "https://app.example")
            .to(V1)
            .gets("access-control-expose-headers", "x-header-3"),
        get("/cors-expose-any")
            .h("Origin", "https://app.example")
            .to(V1)
            .gets("access-control-expose-headers", "*, x-header-3"),
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

/// HTTPRouteRequestPercentageMirror: `percent: 20` and `fraction: 25/50` copy about that
/// share of requests. Over 400 requests the bounds are six standard deviations wide (a false
/// failure is below 1e-8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_request_percentage_mirror_conformance() {
    let bed = Bed::start().await;
    bed.apply(one(http_route("some-mirrored")
        .rule(
            rule()
                .prefix("/percent-mirror")
                .filter(mirror(V2, json!({"percent": 20})))
                .to(V1),
        )
        .rule(
            rule()
                .prefix("/percent-mirror-fraction")
                .filter(mirror(
                    V2,
                    json!({"fraction": {"numerator": 25, "denominator": 50}}),
                ))
                .to(V1),
        )));
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
    let policy = |name: &str, svc: &str, host: &str| {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
        "metadata": {"name": name, "namespace": EDGE},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": svc}],
            "validation": {
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "pod-ca"}],
                "hostname": host
            }
        }})
    };
    let tls_port: SvcPort = ("https", 443, None);
    let mut objs = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "pod-ca", "namespace": EDGE}, "data": {"ca.crt": crt}}),
        policy("verified", "tls-pod", "abc.example.com"),
        policy("wrong-name", "tls-pod-misnamed", "mismatch.example.com"),
        http_route("to-tls-pods")
            .hosts(&["abc.example.com"])
            .rule(
                rule()
                    .exact("/verified")
                    .backend(json!({"name": "tls-pod", "port": 443})),
            )
            .rule(
                rule()
                    .exact("/wrong-name")
                    .backend(json!({"name": "tls-pod-misnamed", "port": 443})),
            )
            .build(),
    ];
    for svc in ["tls-pod", "tls-pod-misnamed"] {
        objs.extend(service(EDGE, svc, &[tls_port], tls_pod.addr));
    }
    let s = bed.apply(objs);
    bed.check(&[
        get("/verified").host("abc.example.com").to("tls-backend"),
        get("/wrong-name").host("abc.example.com").status(502),
    ])
    .await;
    let ancestors =
        &s.gateway_status.policies[&ObjectRef::new(ObjectKind::BackendTLSPolicy, EDGE, "verified")];
    assert_eq!(ancestors[0].parent_ref.name, GW_SAME);
    assert!(
        ancestors[0].conditions.iter().all(|c| c.status),
        "{ancestors:?}"
    );
}

/// Listeners of a scenario's Gateway or ListenerSet: `(name, port, protocol, hostname)`, each
/// taking routes from every namespace.
type Listeners<'a> = &'a [(&'a str, u16, &'a str, Option<&'a str>)];

fn ls_listeners(listeners: Listeners<'_>) -> String {
    listeners
        .iter()
        .map(|(name, port, protocol, host)| {
            let host = host.map(|h| format!(", hostname: {h}")).unwrap_or_default();
            format!(
                "  - {{name: {name}, port: {port}, protocol: {protocol}{host}, \
                 allowedRoutes: {{namespaces: {{from: All}}}}}}\n"
            )
        })
        .collect()
}

/// A Gateway of namespace [`EDGE`] with `allowedListeners.namespaces` (YAML, or none).
fn ls_gateway(name: &str, allowed: Option<&str>, listeners: Listeners<'_>) -> String {
    let allowed = allowed
        .map(|a| format!("  allowedListeners: {{namespaces: {a}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {EDGE}}}\nspec:\n  gatewayClassName: {CLASS}\n{allowed}  listeners:\n{}",
        ls_listeners(listeners)
    )
}

/// A ListenerSet `ns/name` whose parent is Gateway `EDGE/gateway`.
fn listener_set(ns: &str, name: &str, gateway: &str, listeners: Listeners<'_>) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRef: {{kind: Gateway, group: gateway.networking.k8s.io, name: {gateway}, namespace: {EDGE}}}\n  listeners:\n{}",
        ls_listeners(listeners)
    )
}

/// An HTTPRoute of [`EDGE`]: `parents` (YAML flow list), one PathPrefix rule to `backend`.
fn ls_route(name: &str, parents: &str, path: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {EDGE}}}\nspec:\n  parentRefs: {parents}\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}], backendRefs: [{{name: {backend}, port: 8080}}]}}]\n"
    )
}

/// ListenerSetHTTPRouting (GEP-1713 "Route Attachment"), the upstream test's scenario with
/// this project's names: a Gateway with two listeners and two ListenerSets with two each,
/// all on port 80 with their own hostnames; a route on the Gateway and both sets, a route
/// on the Gateway (and one on one of its listeners), a route on each set (and one on one
/// listener of the first). A Gateway parentRef reaches the Gateway's own listeners only, a
/// ListenerSet parentRef that set's; 6 paths x 6 hosts, as upstream. Then a ListenerSet
/// of another namespace with a listener on another port (8080, which the proxy opens): a
/// route attached to it serves 200 there and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listenerset_http_routing() {
    const GW: &str = "ls-routing";
    const HOSTS: [&str; 6] = [
        "gw-1.routing.test",
        "gw-2.routing.test",
        "set-1-a.routing.test",
        "set-1-b.routing.test",
        "set-2-a.routing.test",
        "set-2-b.routing.test",
    ];
    let bed = Bed::start().await;
    let h = |i: usize| Some(HOSTS[i]);
    let all = format!(
        "[{{name: {GW}}}, {{kind: ListenerSet, name: ls-routing-1}}, {{kind: ListenerSet, name: ls-routing-2}}]"
    );
    let s = bed.serve(&[
        &ls_gateway(
            GW,
            Some("{from: All}"),
            &[("gw-1", 80, "HTTP", h(0)), ("gw-2", 80, "HTTP", h(1))],
        ),
        &listener_set(
            EDGE,
            "ls-routing-1",
            GW,
            &[("set-1-a", 80, "HTTP", h(2)), ("set-1-b", 80, "HTTP", h(3))],
        ),
        &listener_set(
            EDGE,
            "ls-routing-2",
            GW,
            &[("set-2-a", 80, "HTTP", h(4)), ("set-2-b", 80, "HTTP", h(5))],
        ),
        &ls_route("all-listeners", &all, "/route", V1),
        &ls_route(
            "gateway-route",
            &format!("[{{name: {GW}}}]"),
            "/gateway-route",
            V2,
        ),
        &ls_route(
            "gateway-section-route",
            &format!("[{{name: {GW}, sectionName: gw-1}}]"),
            "/gateway-section-route",
            V3,
        ),
        &ls_route(
            "set-1-route",
            "[{kind: ListenerSet, name: ls-routing-1}]",
            "/set-1-route",
            V2,
        ),
        &ls_route(
            "set-1-section-route",
            "[{kind: ListenerSet, name: ls-routing-1, sectionName: set-1-a}]",
            "/set-1-section-route",
            V3,
        ),
        &ls_route(
            "set-2-route",
            "[{kind: ListenerSet, name: ls-routing-2}]",
            "/set-2-route",
            V2,
        ),
    ]);
    // (path, backend, indices of the hosts that serve it; the others get 404).
    let table: [(&'static str, &'static str, &[usize]); 6] = [
        ("/route", V1, &[0, 1, 2, 3, 4, 5]),
        ("/gateway-route", V2, &[0, 1]),
        ("/gateway-section-route", V3, &[0]),
        ("/set-1-route", V2, &[2, 3]),
        ("/set-1-section-route", V3, &[2]),
        ("/set-2-route", V2, &[4, 5]),
    ];
    let mut cases = Vec::new();
    for (path, backend, served) in table {
        for (i, host) in HOSTS.iter().enumerate() {
            let c = get(path).host(host);
            cases.push(if served.contains(&i) {
                c.to(backend)
            } else {
                c.status(404)
            });
        }
    }
    assert_eq!(cases.len(), 36);
    bed.check(&cases).await;
    let gw = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, EDGE, GW)];
    assert_eq!(gw.attached_listener_sets, 2);

    let s = bed.serve(&[
        &ls_gateway("shared", Some("{from: All}"), &[("http", 80, "HTTP", None)]),
        &listener_set(SHOP, "team-listeners", "shared", &[("http", 8080, "HTTP", None)]),
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: team-route, namespace: {SHOP}}}\nspec:\n  parentRefs: [{{kind: ListenerSet, name: team-listeners, sectionName: http}}]\n  rules: [{{backendRefs: [{{name: shop-v1, port: 8080}}]}}]\n"
        ),
    ]);
    bed.check(&[
        get("/team").on_port(8080).to("shop-v1"),
        get("/team").status(404),
    ])
    .await;
    let set = &s.gateway_status.listener_sets
        [&ObjectRef::new(ObjectKind::ListenerSet, SHOP, "team-listeners")];
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

/// `(namespace, ListenerSet, listener)` and `Some(reason)`: conflicted with that reason (the
/// suite expects it on `Accepted: False`, `Programmed: False` and `Conflicted: True`);
/// `None`: accepted, programmed and resolved.
type ListenerExpectation = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// A conflict scenario's clashing listener: `(name, hostname)` -> the listener.
type Clash =
    fn(&'static str, &'static str) -> (&'static str, u16, &'static str, Option<&'static str>);

/// `(scenario, Gateway, attachedListenerSets, ListenerSets, listeners)`.
type StatusCase = (
    String,
    &'static str,
    i32,
    Vec<SetExpectation>,
    Vec<ListenerExpectation>,
);

/// The upstream ListenerSet status tests that need no traffic (ListenerSetDefaultNotAllowed,
/// ListenerSetAllowedNamespaceNone/Same/Selector, ListenerSetHostnameConflict,
/// ListenerSetProtocolConflict), their scenarios with this project's names: each
/// translated as the control plane does, then the Gateway's `Accepted`, every Gateway
/// listener accepted, `attachedListenerSets`, each ListenerSet's `Accepted`/`Programmed` and
/// the named listeners' conditions, as the upstream tests expect them. No creationTimestamps:
/// precedence among ListenerSets falls to `namespace/name`, as upstream.
#[test]
fn listenerset_status_conformance() {
    const NS: &str = EDGE;
    let set_http = |ns, name, gw, listener, host| {
        listener_set(ns, name, gw, &[(listener, 80, "HTTP", Some(host))])
    };
    let gw_http = |name, allowed| {
        ls_gateway(
            name,
            allowed,
            &[("gw-listener", 80, "HTTP", Some("gw.ls.test"))],
        )
    };
    let not_allowed = (false, "NotAllowed");
    let invalid = (false, "ListenersNotValid");
    let same = [
        gw_http("ls-same", Some("{from: Same}")),
        set_http(
            NS,
            "ls-same-set",
            "ls-same",
            "same-listener",
            "same.ls.test",
        ),
        set_http(
            "team-b",
            "ls-same-elsewhere",
            "ls-same",
            "elsewhere-listener",
            "b.ls.test",
        ),
    ]
    .join("---\n");
    let selector = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {listeners: allowed}}\n"
            .to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b, labels: {listeners: other}}\n"
            .to_string(),
        gw_http(
            "ls-selector",
            Some("{from: Selector, selector: {matchLabels: {listeners: allowed}}}"),
        ),
        set_http(
            "team-a",
            "ls-selected",
            "ls-selector",
            "selected-listener",
            "a.ls.test",
        ),
        set_http(
            "team-b",
            "ls-not-selected",
            "ls-selector",
            "unselected-listener",
            "b.ls.test",
        ),
    ]
    .join("---\n");
    // Conflicts: the Gateway's second listener and the first set's third are taken again by
    // later sets (hostname: same port, same hostname; protocol: a TCP listener on port 80).
    let conflicts = |gw: &str, clash: Clash| {
        [
            ls_gateway(
                gw,
                Some("{from: Same}"),
                &[
                    ("gw-listener", 80, "HTTP", Some("gw.ls.test")),
                    ("taken-by-gateway", 80, "HTTP", Some("taken-gw.ls.test")),
                ],
            ),
            listener_set(
                NS,
                &format!("{gw}-1"),
                gw,
                &[
                    ("set-1-listener", 80, "HTTP", Some("set-1.ls.test")),
                    clash("taken-by-gateway", "taken-gw.ls.test"),
                    ("taken-by-set", 80, "HTTP", Some("taken-set.ls.test")),
                ],
            ),
            listener_set(
                NS,
                &format!("{gw}-2"),
                gw,
                &[clash("taken-by-gateway", "taken-gw.ls.test")],
            ),
            listener_set(
                NS,
                &format!("{gw}-3"),
                gw,
                &[
                    ("set-3-listener", 80, "HTTP", Some("set-3.ls.test")),
                    clash("taken-by-set", "taken-set.ls.test"),
                ],
            ),
            listener_set(
                NS,
                &format!("{gw}-4"),
                gw,
                &[clash("taken-by-set", "taken-set.ls.test")],
            ),
        ]
        .join("---\n")
    };
    let conflict_expectations = |names: [&'static str; 4],
                                 reason: &'static str|
     -> (Vec<SetExpectation>, Vec<ListenerExpectation>) {
        let [one, two, three, four] = names;
        (
            vec![
                (NS, one, (true, ""), (true, "Programmed")),
                (NS, two, invalid, invalid),
                (NS, three, (true, ""), (true, "Programmed")),
                (NS, four, invalid, invalid),
            ],
            vec![
                (NS, one, "set-1-listener", None),
                (NS, one, "taken-by-gateway", Some(reason)),
                (NS, one, "taken-by-set", None),
                (NS, two, "taken-by-gateway", Some(reason)),
                (NS, three, "set-3-listener", None),
                (NS, three, "taken-by-set", Some(reason)),
                (NS, four, "taken-by-set", Some(reason)),
            ],
        )
    };
    let (hostname_sets, hostname_listeners) = conflict_expectations(
        [
            "ls-hostname-1",
            "ls-hostname-2",
            "ls-hostname-3",
            "ls-hostname-4",
        ],
        "HostnameConflict",
    );
    let (protocol_sets, protocol_listeners) = conflict_expectations(
        [
            "ls-protocol-1",
            "ls-protocol-2",
            "ls-protocol-3",
            "ls-protocol-4",
        ],
        "ProtocolConflict",
    );
    let cases: Vec<StatusCase> = vec![
        (
            [
                gw_http("ls-default", None),
                set_http(NS, "ls-default-set", "ls-default", "l", "set.ls.test"),
            ]
            .join("---\n"),
            "ls-default",
            0,
            vec![(NS, "ls-default-set", not_allowed, not_allowed)],
            vec![],
        ),
        (
            [
                gw_http("ls-none", Some("{from: None}")),
                set_http(NS, "ls-none-set", "ls-none", "l", "set.ls.test"),
            ]
            .join("---\n"),
            "ls-none",
            0,
            vec![(NS, "ls-none-set", not_allowed, not_allowed)],
            vec![],
        ),
        (
            same,
            "ls-same",
            1,
            vec![
                (NS, "ls-same-set", (true, "Accepted"), (true, "Programmed")),
                ("team-b", "ls-same-elsewhere", not_allowed, not_allowed),
            ],
            vec![(NS, "ls-same-set", "same-listener", None)],
        ),
        (
            selector,
            "ls-selector",
            1,
            vec![
                (
                    "team-a",
                    "ls-selected",
                    (true, "Accepted"),
                    (true, "Programmed"),
                ),
                ("team-b", "ls-not-selected", not_allowed, not_allowed),
            ],
            vec![("team-a", "ls-selected", "selected-listener", None)],
        ),
        (
            conflicts("ls-hostname", |name, host| (name, 80, "HTTP", Some(host))),
            "ls-hostname",
            2,
            hostname_sets,
            hostname_listeners,
        ),
        (
            conflicts("ls-protocol", |name, _| (name, 80, "TCP", None)),
            "ls-protocol",
            2,
            protocol_sets,
            protocol_listeners,
        ),
    ];
    let class = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {CLASS}}}\nspec: {{controllerName: xdp-ingress.dev/controller}}\n---\n"
    );
    for (yaml, gateway, attached, sets, listeners) in cases {
        let s = translate_manifests(1, &format!("{class}{yaml}"), |_| {});
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

/// HTTPRouteBackendProtocolH2C: a backendRef to a Service port with `appProtocol:
/// kubernetes.io/h2c` is spoken to over HTTP/2 with prior knowledge (Kubernetes' standard
/// application protocol, GEP-1911), for an h2c client as for an HTTP/1.1 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_backend_protocol_h2c_conformance() {
    let bed = Bed::start().await;
    let s = bed.apply(one(
        http_route("h2c-backend").rule(rule().backend(json!({"name": V1, "port": 8081})))
    ));
    accepted_and_resolved(&s, EDGE, "h2c-backend");
    for client in [h2c_client(), http1_client()] {
        let got = send(&client, req(bed.proxy.http(), "gw.example", "/"))
            .await
            .expect("request completes");
        assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
        assert_eq!(got.pod(), V1);
        assert_eq!(
            got.json()["version"],
            "HTTP/2.0",
            "the pod is spoken to over h2c"
        );
    }
}

/// HTTPRouteBackendProtocolWebSocket: a backendRef to a Service port with `appProtocol:
/// kubernetes.io/ws` carries a WebSocket: the upgrade reaches the pod, and text and binary
/// payloads come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_backend_protocol_websocket_conformance() {
    let bed = Bed::start().await;
    let s = bed.apply(one(
        http_route("ws-backend").rule(rule().backend(json!({"name": V1, "port": 8082})))
    ));
    accepted_and_resolved(&s, EDGE, "ws-backend");
    let (mut ws, pod) = websocket_open(bed.proxy.http(), "gw.example").await;
    assert_eq!(pod, V1);
    ws_echo(&mut ws, b"Websocket Support!").await;
    ws_echo(&mut ws, &[1, 2, 3, 4, 5, 6, 7]).await;
}

/// Two loopback addresses of a `--gateway-address-pool` for this process (127/8 is local on
/// Linux: nothing is added to any interface), different per process so side-by-side test
/// runs do not meet.
fn loopback_pool() -> (std::net::IpAddr, std::net::IpAddr, String) {
    let third = (std::process::id() % 250 + 1) as u8;
    let a = std::net::Ipv4Addr::new(127, 77, third, 1);
    let b = std::net::Ipv4Addr::new(127, 77, third, 2);
    (a.into(), b.into(), format!("{a}-{b}"))
}

/// Translates `objects` (no base Gateways: each would take a pool address) with
/// `--gateway-address-pool` `pool` and serves them.
fn serve_with_pool(bed: &Bed, objects: &[Value], pool: &str) -> Arc<Snapshot> {
    let ports = bed.ports();
    let yaml = localize(&manifest(objects), ports);
    let s = translate_manifests(1, &yaml, |c| {
        c.gateway_ports = ports;
        c.gateway_address_pool = xdp_ingress::model::translate::gateway::addresses::AddressPool {
            ranges: pool.split(',').map(|r| r.parse().unwrap()).collect(),
        };
    });
    bed.proxy.handle.apply(s.clone());
    s
}

/// The status addresses of Gateway `name` in [`EDGE`].
fn gateway_addresses(s: &Snapshot, name: &str) -> Vec<String> {
    let gw = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, EDGE, name)];
    gw.addresses.clone()
}

/// Gateway API v1.6 `HTTPRouteMultipleGateways` (core): two Gateways with an HTTP listener on
/// port 80 and no hostname, a route on both and one on each on `/`; the suite sends to each
/// Gateway's `status.addresses[0]`. Here each Gateway gets a loopback address of the pool:
/// each answers its own `/`, both answer the shared route, and the proxy's listen address
/// serves neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_route_multiple_gateways() {
    let bed = Bed::start().await;
    let (one, two, pool) = loopback_pool();
    let mut objects = vec![
        gateway_class(),
        namespace(EDGE, ("tier", "edge")),
        gateway(EDGE, "gateway-one", vec![listener("http", 80, "HTTP")]),
        gateway(EDGE, "gateway-two", vec![listener("http", 80, "HTTP")]),
        http_route("shared")
            .parent("gateway-one")
            .parent("gateway-two")
            .rule(rule().when(prefix("/shared")).to(V3))
            .build(),
        http_route("route-one")
            .parent("gateway-one")
            .rule(rule().to(V1))
            .build(),
        http_route("route-two")
            .parent("gateway-two")
            .rule(rule().to(V2))
            .build(),
    ];
    for name in [V1, V2, V3] {
        objects.extend(service(EDGE, name, &[HTTP_8080], bed.pod_addrs[name]));
    }
    let s = serve_with_pool(&bed, &objects, &pool);
    assert_eq!(gateway_addresses(&s, "gateway-one"), [one.to_string()]);
    assert_eq!(gateway_addresses(&s, "gateway-two"), [two.to_string()]);
    let port = bed.proxy.http().port();
    let mut open = bed.proxy.handle.gateway_address_listeners();
    open.sort();
    assert_eq!(
        open,
        [(one, port).into(), (two, port).into()] as [SocketAddr; 2]
    );
    for name in ["shared", "route-one", "route-two"] {
        accepted_and_resolved(&s, EDGE, name);
    }
    // One name per address: the test client pools connections by name.
    let (h1, h2) = ("one.example", "two.example");
    bed.check(&[
        get("/").host(h1).at(one).to(V1),
        get("/").host(h2).at(two).to(V2),
        get("/shared").host(h1).at(one).to(V3),
        get("/shared/x").host(h2).at(two).to(V3),
        // The listen address is no Gateway's: neither serves there.
        get("/").status(404),
        get("/shared").status(404),
    ])
    .await;
    // The Gateways gone, their addresses' sockets close.
    serve_with_pool(&bed, &objects[..2], &pool);
    assert!(bed.proxy.handle.gateway_address_listeners().is_empty());
    // The accept loops drop their sockets when told: a bounded wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(SocketAddr::new(one, port))
        .await
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{one}:{port} still accepts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The same two Gateways with HTTPS listeners on 443 and a certificate each: the handshake on
/// a Gateway's address presents that Gateway's certificate, and its routes answer there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_gateways_present_their_own_certificate_on_their_address() {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let bed = Bed::start().await;
    let (one, two, pool) = loopback_pool();
    let mut objects = vec![gateway_class(), namespace(EDGE, ("tier", "edge"))];
    let mut certs = Vec::new();
    for (gw, pod) in [("gateway-one", V1), ("gateway-two", V2)] {
        let (cert, key) = xdp_ingress::proxy::tls::self_signed_pem(&[gw]).unwrap();
        let secret = format!("{gw}-cert");
        objects.push(tls_secret(EDGE, &secret, &cert, &key));
        let l = listener("https", 443, "HTTPS").cert(&secret);
        objects.push(gateway(EDGE, gw, vec![l]));
        objects.push(http_route(gw).parent(gw).rule(rule().to(pod)).build());
        objects.extend(service(EDGE, pod, &[HTTP_8080], bed.pod_addrs[pod]));
        certs.push(
            CertificateDer::from_pem_slice(cert.as_bytes())
                .unwrap()
                .to_vec(),
        );
    }
    let s = serve_with_pool(&bed, &objects, &pool);
    assert_eq!(gateway_addresses(&s, "gateway-one"), [one.to_string()]);
    let port = bed.proxy.https().port();
    for (ip, cert, pod) in [(one, &certs[0], V1), (two, &certs[1], V2)] {
        let addr = SocketAddr::new(ip, port);
        let (stream, der) = tls_connect(addr, "any.example", &[b"http/1.1"]).await;
        assert_eq!(&der, cert, "{ip}: the certificate of its Gateway");
        let g = request_over(stream, false, req(addr, "any.example", "/")).await;
        assert_eq!((g.status.as_u16(), g.pod()), (200, pod.to_string()), "{ip}");
    }
    // The listen address shows neither Gateway's certificate.
    let (_, der) = tls_connect(bed.proxy.https(), "any.example", &[b"http/1.1"]).await;
    assert!(!certs.contains(&der));
}

/// TLS passthrough on a Gateway with an address: its passthrough listener's name is decided
/// there (no TLSRoute for it: the connection is closed, nothing terminated), while on the
/// listen address, which is no Gateway's, the same name is terminated as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_is_decided_per_gateway_address() {
    let bed = Bed::start().await;
    let (one, _, pool) = loopback_pool();
    let objects = vec![
        gateway_class(),
        namespace(EDGE, ("tier", "edge")),
        gateway(
            EDGE,
            "pass",
            vec![
                listener("pass", 443, "TLS")
                    .host("*.pass.example")
                    .passthrough(),
            ],
        ),
    ];
    let s = serve_with_pool(&bed, &objects, &pool);
    assert_eq!(gateway_addresses(&s, "pass"), [one.to_string()]);
    let port = bed.proxy.https().port();
    let tcp = tokio::net::TcpStream::connect(SocketAddr::new(one, port))
        .await
        .unwrap();
    assert!(
        tls_try(tcp, "db.pass.example").await.is_err(),
        "closed on the Gateway's address"
    );
    let tcp = tokio::net::TcpStream::connect(bed.proxy.https())
        .await
        .unwrap();
    assert!(
        tls_try(tcp, "db.pass.example").await.is_ok(),
        "terminated on the listen address"
    );
}

/// Listener isolation across Gateways: a request on a listener is routed by the routes
/// attached to that listener only, so a catch-all route of the Gateway on port 8080 is not
/// hidden by a route of another Gateway (on port 80) naming the request's host, nor by an
/// exact host only a wildcard of that other Gateway covers. On port 80 the named host keeps
/// its own route, and its miss stays a miss (no fall-through to port 80's catch-all when
/// the host has routes there). Found by a new user trying two Gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_all_is_not_hidden_by_another_listeners_hostname() {
    let bed = Bed::start().await;
    bed.apply(vec![
        gateway(EDGE, "alt", vec![listener("web", 8080, "HTTP")]),
        http_route("alt-catch-all")
            .parent("alt")
            .rule(rule().to(V1))
            .build(),
        http_route("named-on-80")
            .parent(GW_SAME)
            .hosts(&["shop.example", "*.wild.example"])
            .rule(rule().prefix("/cart").to(V2))
            .build(),
        http_route("catch-all-on-80")
            .parent(GW_SAME)
            .rule(rule().prefix("/").to(V3))
            .build(),
    ]);
    bed.check(&[
        get("/").host("shop.example:8080").on_port(8080).to(V1),
        get("/cart").host("shop.example:8080").on_port(8080).to(V1),
        get("/").host("a.wild.example:8080").on_port(8080).to(V1),
        get("/cart").host("shop.example").to(V2),
        get("/cart").host("a.wild.example").to(V2),
        get("/").host("other.example").to(V3),
    ])
    .await;
}

/// A pod (on loopback) that answers its first `fail` requests with 503 and the others with
/// 200; the counter says how many requests it read.
async fn recovering_pod(fail: u64) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    buf.clear();
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let answer: &[u8] = if n <= fail {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nsick\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nwell\n"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, hits)
}

/// HTTPRoute `retry` (experimental channel, GEP-1731; conformance HTTPRouteRetry): a backend
/// that answers 503 once and then recovers is retried (its one endpoint again, after the
/// backoff) when the rule's `codes` list 503, so the client gets 200 from the second attempt;
/// a rule without `retry` passes the 503 on after one attempt; `attempts: 1` with a backend
/// failing twice passes on the second 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_retry_retries_listed_codes() {
    use std::sync::atomic::Ordering;
    let bed = Bed::start().await;
    let pods = [
        ("retried", recovering_pod(1).await),
        ("not-retried", recovering_pod(1).await),
        ("exhausted", recovering_pod(2).await),
    ];
    let mut objects = Vec::new();
    for (name, (addr, _)) in &pods {
        objects.extend(service(EDGE, name, &[HTTP_8080], *addr));
        let mut r = http_route(name)
            .hosts(&[&format!("{name}.example")])
            .rule(rule().to(name))
            .build();
        let retry = match *name {
            "retried" => json!({"codes": [500, 503], "attempts": 2, "backoff": "20ms"}),
            "exhausted" => json!({"codes": [503], "attempts": 1}),
            _ => Value::Null,
        };
        if !retry.is_null() {
            r["spec"]["rules"][0]["retry"] = retry;
        }
        objects.push(r);
    }
    let s = bed.apply(objects);
    for (name, _) in &pods {
        let r = ObjectRef::new(ObjectKind::HTTPRoute, EDGE, *name);
        let accepted = s.gateway_status.routes[&r][0]
            .conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status);
        assert!(accepted, "{name}");
    }
    let hits = |i: usize| pods[i].1.1.load(Ordering::SeqCst);
    let g = l7common::get(&bed.client, bed.proxy.http(), "retried.example", "/").await;
    assert_eq!(g.status, StatusCode::OK, "{g:?}");
    assert_eq!(hits(0), 2, "the first attempt and one retry");
    let g = l7common::get(&bed.client, bed.proxy.http(), "not-retried.example", "/").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{g:?}");
    assert_eq!(hits(1), 1);
    let g = l7common::get(&bed.client, bed.proxy.http(), "exhausted.example", "/").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE, "{g:?}");
    assert_eq!(hits(2), 2, "attempts: 1 is one retry");
}

/// A self-signed certificate for `dns` names and `uris` (URI SANs such as SPIFFE IDs), PEM
/// chain and key.
fn cert_with_sans(dns: &[&str], uris: &[&str]) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
            .unwrap();
    for u in uris {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI((*u).try_into().unwrap()));
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// BackendTLSPolicy `validation.subjectAltNames` through the proxy (Gateway API v1
/// `BackendTLSPolicyValidation`: when SANs are given, the certificate MUST carry one of them
/// and `hostname` is then only the SNI): a pod whose certificate has the policy's DNS name or
/// URI (a SPIFFE ID) is reached (200); a pod whose certificate, trusted by the same CA
/// bundle and carrying the `hostname`, lacks every listed SAN is not: the client gets 502,
/// the proxy's answer to an upstream TLS failure, and the pod never sees the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_policy_subject_alt_names() {
    const SPIFFE: &str = "spiffe://cluster.local/ns/edge/sa/pod";
    let bed = Bed::start().await;
    // (Service, pod certificate's DNS names and URIs, the policy's subjectAltNames, status)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], Value, u16);
    let cases: [Case<'_>; 4] = [
        (
            "dns-listed",
            &["abc.example.com", "san.example.com"],
            &[],
            json!([{"type": "Hostname", "hostname": "san.example.com"}]),
            200,
        ),
        (
            "dns-missing",
            &["abc.example.com"],
            &[],
            json!([{"type": "Hostname", "hostname": "san.example.com"}]),
            502,
        ),
        (
            "uri-listed",
            &["abc.example.com"],
            &[SPIFFE],
            json!([{"type": "URI", "uri": SPIFFE}]),
            200,
        ),
        (
            "uri-missing",
            &["abc.example.com"],
            &["spiffe://cluster.local/ns/edge/sa/other"],
            json!([{"type": "URI", "uri": SPIFFE}]),
            502,
        ),
    ];
    let mut pods = Vec::new();
    let mut objs = Vec::new();
    let mut route = http_route("to-tls-pods").hosts(&["abc.example.com"]);
    let mut bundle = String::new();
    for (svc, dns, uris, _, _) in &cases {
        let (crt, key) = cert_with_sans(dns, uris);
        bundle.push_str(&crt);
        let pod = HttpBackend::start_tls("127.0.0.1:0".parse().unwrap(), svc, &crt, &key).unwrap();
        objs.extend(service(EDGE, svc, &[("https", 443, None)], pod.addr));
        route = route.rule(
            rule()
                .exact(&format!("/{svc}"))
                .backend(json!({"name": svc, "port": 443})),
        );
        pods.push(pod);
    }
    objs.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "pod-cas", "namespace": EDGE}, "data": {"ca.crt": bundle}}));
    for (svc, _, _, sans, _) in &cases {
        objs.push(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
            "metadata": {"name": svc, "namespace": EDGE},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": svc}],
                "validation": {
                    "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "pod-cas"}],
                    "hostname": "abc.example.com",
                    "subjectAltNames": sans
                }
            }}),
        );
    }
    objs.push(route.build());
    bed.apply(objs);
    for ((svc, _, _, _, status), pod) in cases.iter().zip(&pods) {
        let g = l7common::get(
            &bed.client,
            bed.proxy.http(),
            "abc.example.com",
            &format!("/{svc}"),
        )
        .await;
        assert_eq!(g.status.as_u16(), *status, "{svc}: {g:?}");
        if *status == 200 {
            assert_eq!(g.pod(), *svc);
        } else {
            assert_eq!(pod.requests(), 0, "{svc}: the pod saw no request");
        }
    }
}

/// Filters that are not implemented are never skipped (HTTPRouteFilter.type: "requests that
/// would have been processed by that filter MUST receive a HTTP error response"): an
/// `ExternalAuth` or `ExtensionRef` rule answers 500 instead of letting its requests fall
/// through to the route's catch-all (which would serve `/admin` unauthenticated), and the
/// catch-all still serves the rest. A GRPCRoute's `ExtensionRef` rule answers gRPC calls with
/// INTERNAL, a rule without valid backends with UNAVAILABLE (GRPCRouteRule.backendRefs); the
/// other rules are served. Found by a fresh-user trial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_filters_answer_errors_never_the_broader_rule() {
    let bed = Bed::start().await;
    let ext_ref = || json!({"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Auth", "name": "a"}});
    bed.apply(vec![
        http_route("ext")
            .hosts(&["ext.example"])
            .rule(
                rule()
                    .prefix("/admin")
                    .filter(json!({"type": "ExternalAuth", "externalAuth": {"protocol": "HTTP", "backendRef": {"name": V2, "port": 8080}}}))
                    .to(V1),
            )
            .rule(rule().prefix("/ext").filter(ext_ref()).to(V1))
            .rule(rule().to(V3))
            .build(),
        grpc_route("grpc-ext")
            .hosts(&["grpc.example"])
            .rule(
                rule()
                    .when(grpc_method(GRPC_ECHO, "EchoTwo"))
                    .filter(ext_ref())
                    .to(G2),
            )
            .rule(
                rule()
                    .when(grpc_method(GRPC_ECHO, "EchoThree"))
                    .backend(json!({"name": "missing", "port": 8080})),
            )
            .rule(rule().to(G1))
            .build(),
    ]);
    bed.check(&[
        get("/admin/x").host("ext.example").status(500),
        get("/ext").host("ext.example").status(500),
        get("/other").host("ext.example").to(V3),
    ])
    .await;
    const INTERNAL: u32 = 13;
    const UNAVAILABLE: u32 = 14;
    let g = grpc_call(&bed, false, "grpc.example", "EchoTwo", &[]).await;
    assert_eq!((g.code, g.trailers_only), (INTERNAL, true));
    let g = grpc_call(&bed, false, "grpc.example", "EchoThree", &[]).await;
    assert_eq!((g.code, g.trailers_only), (UNAVAILABLE, true));
    let g = grpc_call(&bed, false, "grpc.example", "Echo", &[]).await;
    assert_eq!((g.code, g.pod()), (OK, G1));
}

/// An HTTPS listener with hostname `*.wild.example` presents its certificate for every name
/// it takes, `a.b.wild.example` as well as `x.wild.example` (Gateway API v1
/// `Listener.hostname`: a wildcard covers one or more labels), as routing does; a name it
/// does not take gets another certificate. Found by a fresh-user trial (the generated
/// certificate was served for two labels).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_wildcard_listener_certificate_covers_several_labels() {
    let bed = Bed::start().await;
    let (cert, key) = xdp_ingress::proxy::tls::self_signed_pem(&["*.wild.example"]).unwrap();
    bed.apply(vec![
        tls_secret(EDGE, "wild-tls", &cert, &key),
        gateway(
            EDGE,
            "gw-wild",
            vec![
                listener("wild", 443, "HTTPS")
                    .host("*.wild.example")
                    .cert("wild-tls"),
            ],
        ),
        http_route("wild")
            .parent("gw-wild")
            .rule(rule().to(V1))
            .build(),
    ]);
    let https = bed.proxy.https();
    let (_, one_label) = tls_connect(https, "x.wild.example", &[b"http/1.1"]).await;
    let (_, other) = tls_connect(https, "other.example", &[b"http/1.1"]).await;
    assert_ne!(one_label, other);
    for host in ["x.wild.example", "a.b.wild.example"] {
        let (stream, der) = tls_connect(https, host, &[b"http/1.1"]).await;
        assert_eq!(der, one_label, "{host}: the listener's certificate");
        let g = request_over(stream, false, req(https, host, "/")).await;
        assert_eq!(
            (g.status.as_u16(), g.pod()),
            (200, V1.to_string()),
            "{host}"
        );
    }
}

/// A listener whose `allowedRoutes.kinds` lists HTTPRoute and a kind no listener takes
/// (`ResolvedRefs: False, InvalidRouteKinds`, conformance GatewayInvalidRouteKind) serves its
/// HTTPRoutes on its port, as its status says (`Programmed: True`, the route attached).
/// Found by a fresh-user trial (the port refused connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_with_an_invalid_kind_serves_its_valid_kinds() {
    let bed = Bed::start().await;
    let s = bed.apply(vec![
        gateway(
            EDGE,
            "mixed",
            vec![listener("mixed", 8080, "HTTP").kinds(&["HTTPRoute", "FooRoute"])],
        ),
        http_route("r").parent("mixed").rule(rule().to(V1)).build(),
    ]);
    accepted_and_resolved(&s, EDGE, "r");
    assert_eq!(attached_routes(&s, "mixed"), [1]);
    bed.check(&[get("/").on_port(8080).to(V1)]).await;
}

/// A route attached to one listener does not capture another listener's misses: with a
/// hostless route on the Gateway's listener on 8080 only, a gRPC call on its listener on 80
/// that nothing takes is the Gateway's miss, `UNIMPLEMENTED` as a Trailers-Only answer
/// (Gateway v1.6 `spec.listeners`), and a plain request there says no host matched; the
/// route still serves on 8080. Found by a fresh-user trial (HTTP/2 404 "no path matched").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_on_another_listener_leaves_the_miss_a_host_miss() {
    let bed = Bed::start().await;
    bed.apply(vec![
        gateway(
            EDGE,
            "two",
            vec![
                listener("http", 80, "HTTP"),
                listener("other", 8080, "HTTP"),
            ],
        ),
        http_route("only-other")
            .section("two", "other")
            .rule(rule().to(V1))
            .build(),
    ]);
    let g = grpc_call(&bed, false, "gw.example", "Echo", &[]).await;
    assert_eq!((g.code, g.trailers_only), (UNIMPLEMENTED, true));
    bed.check(&[
        get("/")
            .status(404)
            .gets("x-xdp-ingress-reason", "no host matched"),
        get("/").on_port(8080).to(V1),
    ])
    .await;
}
