//! Builders for the Kubernetes and Gateway API objects the scenarios of `l7_gateway` serve:
//! each returns the object as JSON (a YAML document too), so that a scenario is a few lines,
//! e.g. `http_route("weights").rule(rule().weighted(V1, 70).weighted(V2, 30))`. Defaults
//! are the common case of the tables: namespace [`EDGE`], parent Gateway [`GW_SAME`],
//! backend port 8080.

use std::net::SocketAddr;

use serde_json::{Map, Value, json};

/// The namespace of the Gateways, the main backends and most routes.
pub const EDGE: &str = "edge";
/// Namespaces holding other teams' backends (label `tier: apps`).
pub const SHOP: &str = "shop";
pub const BLOG: &str = "blog";
/// The base Gateways on port 80: routes from their own namespace, from all namespaces, and
/// from namespaces labelled `tier: apps`.
pub const GW_SAME: &str = "gw-same";
pub const GW_ALL: &str = "gw-all";
pub const GW_APPS: &str = "gw-apps";
/// The GatewayClass of every Gateway here.
pub const CLASS: &str = "xdp";

/// The Gateway API group, as ReferenceGrants name it.
pub const GW_GROUP: &str = "gateway.networking.k8s.io";
const GW_API: &str = "gateway.networking.k8s.io/v1";

fn meta(ns: &str, name: &str) -> Value {
    json!({"name": name, "namespace": ns})
}

/// Our GatewayClass.
pub fn gateway_class() -> Value {
    json!({"apiVersion": GW_API, "kind": "GatewayClass", "metadata": {"name": CLASS},
        "spec": {"controllerName": "xdp-ingress.dev/controller"}})
}

/// A Namespace with one label.
pub fn namespace(name: &str, label: (&str, &str)) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {label.0: label.1}}})
}

/// One port of a [`service`]: `(name, port, appProtocol)`; pods listen on the pod's port.
pub type SvcPort<'a> = (&'a str, u16, Option<&'a str>);

/// The usual Service port: `http`, 8080.
pub const HTTP_8080: SvcPort<'static> = ("http", 8080, None);

/// Service `ns/name` with `ports`, and an EndpointSlice with the one ready pod at `pod` (every
/// Service port's target is that pod's port).
pub fn service(ns: &str, name: &str, ports: &[SvcPort], pod: SocketAddr) -> [Value; 2] {
    let svc_ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, app)| {
            let mut v = json!({"name": n, "port": p, "targetPort": 3000});
            if let Some(app) = app {
                v["appProtocol"] = json!(app);
            }
            v
        })
        .collect();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(ns, name),
        "spec": {"ports": svc_ports}});
    [
        svc,
        endpoint_slice(ns, name, &format!("{name}-a"), ports, Some(pod)),
    ]
}

/// An EndpointSlice `slice` of Service `ns/svc` naming `ports` at `pod`'s port, with that pod
/// ready, or with no endpoints at all.
pub fn endpoint_slice(
    ns: &str,
    svc: &str,
    slice: &str,
    ports: &[SvcPort],
    pod: Option<SocketAddr>,
) -> Value {
    let port = pod.map(|p| p.port()).unwrap_or(3000);
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, _, _)| json!({"name": n, "port": port, "protocol": "TCP"}))
        .collect();
    let endpoints: Vec<Value> = pod
        .iter()
        .map(|p| json!({"addresses": [p.ip().to_string()], "conditions": {"ready": true}}))
        .collect();
    let family = match pod {
        Some(SocketAddr::V6(_)) => "IPv6",
        _ => "IPv4",
    };
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice, "namespace": ns,
            "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family, "ports": ports, "endpoints": endpoints})
}

/// A ReferenceGrant in `ns` from `(group, kind, namespace)` to `(group, kind, name)`.
pub fn grant(ns: &str, name: &str, from: (&str, &str, &str), to: (&str, &str, &str)) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": meta(ns, name),
        "spec": {"from": [{"group": from.0, "kind": from.1, "namespace": from.2}],
                 "to": [{"group": to.0, "kind": to.1, "name": to.2}]}})
}

/// A kubernetes.io/tls Secret in `ns` (PEM, as the API server stores it: base64).
pub fn tls_secret(ns: &str, name: &str, cert_pem: &str, key_pem: &str) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(ns, name),
        "type": "kubernetes.io/tls", "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem)}})
}

/// A Gateway listener under construction.
pub struct Listener(Value);

/// Listener `name` on `port` speaking `protocol` (`HTTP`, `HTTPS`, `TLS`...), routes from the
/// Gateway's namespace.
pub fn listener(name: &str, port: u16, protocol: &str) -> Listener {
    Listener(json!({"name": name, "port": port, "protocol": protocol,
        "allowedRoutes": {"namespaces": {"from": "Same"}}}))
}

impl Listener {
    pub fn host(mut self, h: &str) -> Self {
        self.0["hostname"] = json!(h);
        self
    }
    /// Routes from every namespace.
    pub fn all_namespaces(mut self) -> Self {
        self.0["allowedRoutes"]["namespaces"] = json!({"from": "All"});
        self
    }
    /// Routes from the namespaces labelled `k: v`.
    pub fn namespaces_labelled(mut self, k: &str, v: &str) -> Self {
        self.0["allowedRoutes"]["namespaces"] =
            json!({"from": "Selector", "selector": {"matchLabels": {k: v}}});
        self
    }
    /// Only routes of these kinds.
    pub fn kinds(mut self, kinds: &[&str]) -> Self {
        let kinds: Vec<Value> = kinds.iter().map(|k| json!({"kind": k})).collect();
        self.0["allowedRoutes"]["kinds"] = json!(kinds);
        self
    }
    /// TLS terminated with the certificate of Secret `secret` (same namespace).
    pub fn cert(mut self, secret: &str) -> Self {
        self.0["tls"] = json!({"certificateRefs": [{"name": secret}]});
        self
    }
    /// TLS passed through to the routes' backends.
    pub fn passthrough(mut self) -> Self {
        self.0["tls"] = json!({"mode": "Passthrough"});
        self
    }
}

/// Gateway `ns/name` of class [`CLASS`] with `listeners`.
pub fn gateway(ns: &str, name: &str, listeners: Vec<Listener>) -> Value {
    let ls: Vec<Value> = listeners.into_iter().map(|l| l.0).collect();
    json!({"apiVersion": GW_API, "kind": "Gateway", "metadata": meta(ns, name),
        "spec": {"gatewayClassName": CLASS, "listeners": ls}})
}

/// An HTTPRoute or GRPCRoute under construction; [`Route::build`] gives the object.
pub struct Route {
    kind: &'static str,
    ns: String,
    name: String,
    parents: Vec<Value>,
    hostnames: Vec<String>,
    rules: Vec<Value>,
}

/// HTTPRoute `name` in [`EDGE`]; without a parent it attaches to [`GW_SAME`].
pub fn http_route(name: &str) -> Route {
    Route {
        kind: "HTTPRoute",
        ns: EDGE.into(),
        name: name.into(),
        parents: vec![],
        hostnames: vec![],
        rules: vec![],
    }
}

/// GRPCRoute `name` in [`EDGE`]; without a parent it attaches to [`GW_SAME`].
pub fn grpc_route(name: &str) -> Route {
    Route {
        kind: "GRPCRoute",
        ..http_route(name)
    }
}

impl Route {
    pub fn ns(mut self, ns: &str) -> Self {
        self.ns = ns.into();
        self
    }
    /// Parent Gateway `gw` in the route's namespace.
    pub fn parent(mut self, gw: &str) -> Self {
        self.parents.push(json!({"name": gw}));
        self
    }
    /// Any parentRef (`namespace`, `sectionName`, `port`...).
    pub fn parent_ref(mut self, r: Value) -> Self {
        self.parents.push(r);
        self
    }
    /// Parent listener `section` of Gateway `gw` in [`EDGE`].
    pub fn section(self, gw: &str, section: &str) -> Self {
        self.parent_ref(json!({"name": gw, "namespace": EDGE, "sectionName": section}))
    }
    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hostnames.extend(hosts.iter().map(|h| h.to_string()));
        self
    }
    pub fn rule(mut self, r: Rule) -> Self {
        self.rules.push(r.0);
        self
    }
    pub fn build(self) -> Value {
        let parents = if self.parents.is_empty() {
            vec![json!({"name": GW_SAME})]
        } else {
            self.parents
        };
        let mut spec = json!({"parentRefs": parents, "rules": self.rules});
        if !self.hostnames.is_empty() {
            spec["hostnames"] = json!(self.hostnames);
        }
        json!({"apiVersion": GW_API, "kind": self.kind, "metadata": meta(&self.ns, &self.name),
            "spec": spec})
    }
}

/// A route rule under construction.
pub struct Rule(Value);

/// A rule with no matches (every request), filters or backends yet.
pub fn rule() -> Rule {
    Rule(json!({}))
}

fn push(v: &mut Value, field: &str, item: Value) {
    match v[field].as_array_mut() {
        Some(a) => a.push(item),
        None => v[field] = json!([item]),
    }
}

impl Rule {
    /// One more match (they are ORed).
    pub fn when(mut self, m: Match) -> Self {
        push(&mut self.0, "matches", m.0);
        self
    }
    /// One more match: `PathPrefix` `p`.
    pub fn prefix(self, p: &str) -> Self {
        self.when(prefix(p))
    }
    /// One more match: `Exact` `p`.
    pub fn exact(self, p: &str) -> Self {
        self.when(exact(p))
    }
    pub fn filter(mut self, f: Value) -> Self {
        push(&mut self.0, "filters", f);
        self
    }
    /// Backend Service `svc` (port 8080, the route's namespace).
    pub fn to(self, svc: &str) -> Self {
        self.backend(json!({"name": svc, "port": 8080}))
    }
    /// Backend Service `svc` with `weight`.
    pub fn weighted(self, svc: &str, weight: u32) -> Self {
        self.backend(json!({"name": svc, "port": 8080, "weight": weight}))
    }
    /// Any backendRef.
    pub fn backend(mut self, b: Value) -> Self {
        push(&mut self.0, "backendRefs", b);
        self
    }
    /// `backendRefs: []`, written out (as opposed to left out).
    pub fn no_backends(mut self) -> Self {
        self.0["backendRefs"] = json!([]);
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.0["name"] = json!(name);
        self
    }
    /// `timeouts` (`request`, `backendRequest`: Gateway API durations).
    pub fn timeouts(mut self, t: Value) -> Self {
        self.0["timeouts"] = t;
        self
    }
}

/// One match of a rule.
pub struct Match(Value);

/// Matches every request.
pub fn any() -> Match {
    Match(json!({}))
}

/// Paths under `p` (whole segments).
pub fn prefix(p: &str) -> Match {
    Match(json!({"path": {"type": "PathPrefix", "value": p}}))
}

/// Path `p` only.
pub fn exact(p: &str) -> Match {
    Match(json!({"path": {"type": "Exact", "value": p}}))
}

/// A gRPC method (`Exact` service and method).
pub fn grpc_method(service: &str, method: &str) -> Match {
    Match(json!({"method": {"service": service, "method": method}}))
}

impl Match {
    pub fn header(mut self, k: &str, v: &str) -> Self {
        push(&mut self.0, "headers", json!({"name": k, "value": v}));
        self
    }
    pub fn query(mut self, k: &str, v: &str) -> Self {
        push(&mut self.0, "queryParams", json!({"name": k, "value": v}));
        self
    }
    pub fn method(mut self, m: &str) -> Self {
        self.0["method"] = json!(m);
        self
    }
}

/// A header modifier's body: `set`, `add` (name, value) and `remove`.
fn modifier(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> Value {
    let pairs = |l: &[(&str, &str)]| -> Vec<Value> {
        l.iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect()
    };
    let mut m = Map::new();
    if !set.is_empty() {
        m.insert("set".into(), json!(pairs(set)));
    }
    if !add.is_empty() {
        m.insert("add".into(), json!(pairs(add)));
    }
    if !remove.is_empty() {
        m.insert("remove".into(), json!(remove));
    }
    Value::Object(m)
}

/// `RequestHeaderModifier`.
pub fn request_headers(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> Value {
    json!({"type": "RequestHeaderModifier",
        "requestHeaderModifier": modifier(set, add, remove)})
}

/// `ResponseHeaderModifier`.
pub fn response_headers(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> Value {
    json!({"type": "ResponseHeaderModifier",
        "responseHeaderModifier": modifier(set, add, remove)})
}

/// `RequestRedirect` with the given fields (`scheme`, `hostname`, `port`, `path`,
/// `statusCode`).
pub fn redirect(fields: Value) -> Value {
    json!({"type": "RequestRedirect", "requestRedirect": fields})
}

/// `URLRewrite` with the given fields (`hostname`, `path`).
pub fn rewrite(fields: Value) -> Value {
    json!({"type": "URLRewrite", "urlRewrite": fields})
}

/// `ReplacePrefixMatch` / `ReplaceFullPath` path modifiers.
pub fn replace_prefix(p: &str) -> Value {
    json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": p})
}
pub fn replace_full(p: &str) -> Value {
    json!({"type": "ReplaceFullPath", "replaceFullPath": p})
}

/// `RequestMirror` to Service `svc` (port 8080, [`EDGE`]) with extra fields (`percent`,
/// `fraction`), `{}` for none.
pub fn mirror(svc: &str, extra: Value) -> Value {
    let mut m = json!({"backendRef": {"name": svc, "namespace": EDGE, "port": 8080}});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    json!({"type": "RequestMirror", "requestMirror": m})
}

/// `CORS` with the given fields.
pub fn cors(fields: Value) -> Value {
    json!({"type": "CORS", "cors": fields})
}

/// The objects as a multi-document manifest.
pub fn manifest(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join("\n---\n")
}
