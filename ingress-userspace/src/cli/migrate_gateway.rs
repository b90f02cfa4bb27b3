//! `xdp-ingress migrate --to gateway-api`: the Gateway API objects equivalent to a set of
//! Ingresses, as YAML built from the gateway-api crate's types, with a `# note:` comment
//! wherever behaviour would change. Pure: Ingresses and Services in, text out.
//!
//! - One Gateway per namespace with Ingresses (`xdp-ingress`, of `--gateway-class`): an `http`
//!   listener on 80 and, per `spec.tls` host, an `HTTPS` listener on 443 terminating with the
//!   Ingress's Secret (same namespace, so no ReferenceGrant is needed).
//! - One HTTPRoute per Ingress rule host (and one without hostnames for `defaultBackend`),
//!   a rule per path: `Exact` stays Exact, `Prefix` becomes `PathPrefix`,
//!   `ImplementationSpecific` becomes `PathPrefix` (ingress-nginx reads it as a prefix), or
//!   `RegularExpression` under `use-regex` / a `rewrite-target`.
//! - Notes, where the Gateway would behave otherwise: a wildcard host (an Ingress `*` is one
//!   label, a Gateway's one or more), regular expressions (ingress-nginx's are
//!   case-insensitive prefixes, Gateway API's implementation-specific), the default backend
//!   (it catches every host of the Gateway), a named Service port that cannot be resolved, and
//!   every annotation without an equivalent. `rewrite-target` without capture groups becomes
//!   `URLRewrite` `ReplaceFullPath` (nginx's `rewrite` replaces the whole URI),
//!   `upstream-vhost` a `URLRewrite` hostname, `permanent-redirect` / `temporal-redirect` a
//!   `RequestRedirect`.
//! - HTTP to HTTPS, as ingress-nginx redirects (`ssl-redirect`, default the ConfigMap's, else
//!   true; `force-ssl-redirect`): for a rule host with TLS in the namespace's Ingresses, the
//!   HTTPRoute to the backends is attached to that host's HTTPS listener (`sectionName`), and
//!   a second HTTPRoute on the `http` listener redirects the same paths with `scheme: https`
//!   and the ConfigMap's `http-redirect-code` (308 by default). `ssl-redirect: "false"`
//!   keeps the route on both listeners; `force-ssl-redirect` on a host without TLS gets a
//!   note (the Gateway has no HTTPS listener to send it to).
//! - `ssl-passthrough` Ingresses: per host, a `TLS` listener on 443 with `tls.mode:
//!   Passthrough` and a TLSRoute to the backend of the host's `/` path (the Ingress's
//!   `defaultBackend` standing in), as ingress-nginx picks it; no HTTPS listener for that host
//!   (it would conflict), and a note (the Ingress's other paths and annotations play no part
//!   over TLS).
//! - ingress-nginx's TCP and UDP services (the `--tcp-services-configmap` and
//!   `--udp-services-configmap` ConfigMaps: `"<port>": "<namespace>/<service>:<port>"`): per
//!   entry, a `TCP` or `UDP` listener on the Gateway of the Service's namespace and a TCPRoute
//!   or UDPRoute (`v1`, Gateway API v1.6) to the Service port; `:PROXY` (PROXY protocol) gets a note, as does
//!   an entry that does not parse.

use std::collections::{BTreeMap, BTreeSet};

use gateway_api::apis::standard::{gateways::Gateway, httproutes::HttpRoute};

use crate::compact::ingress::IngressBackend;
use crate::store::{TcpRoute, TlsRoute, UdpRoute};
use serde_json::{Value, json};

use crate::model::translate::support;
use crate::{
    compact::{ingress::Ingress, service::Service},
    store::Key,
};

const GROUP_VERSION: &str = "gateway.networking.k8s.io/v1";
const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Annotations this conversion carries over (the rest get a note).
const CARRIED: &[&str] = &[
    "use-regex",
    "rewrite-target",
    "upstream-vhost",
    "permanent-redirect",
    "temporal-redirect",
    "ssl-passthrough",
    "ssl-redirect",
    "force-ssl-redirect",
];

/// The Gateway of one namespace.
#[derive(Default)]
struct GatewayPlan {
    /// `(host, Secret)` of its HTTPS listeners.
    tls: BTreeSet<(String, String)>,
    /// Hosts of its TLS passthrough listeners.
    passthrough: BTreeSet<String>,
    /// `(protocol, port)` of its TCP and UDP listeners.
    l4: BTreeSet<(&'static str, u16)>,
    notes: Vec<String>,
}

/// ingress-nginx's TCP and UDP services: the data of the ConfigMaps its
/// `--tcp-services-configmap` and `--udp-services-configmap` name (exposed port ->
/// `namespace/service:port[:PROXY[:PROXY]]`).
#[derive(Clone, Debug, Default)]
pub struct ExposedPorts {
    pub tcp: BTreeMap<String, String>,
    pub udp: BTreeMap<String, String>,
}

/// One YAML document and the notes printed above it.
struct Doc {
    notes: Vec<String>,
    yaml: String,
}

/// The Gateways and HTTPRoutes for `ingresses` (Services resolve named ports), as a YAML
/// stream with `# note:` comments.
pub fn convert<'a>(
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    services: &BTreeMap<Key, std::sync::Arc<Service>>,
    exposed: &ExposedPorts,
    controller: &BTreeMap<String, String>,
    gateway_class: &str,
) -> String {
    let ingresses: Vec<&Ingress> = ingresses.into_iter().collect();
    let mut gateways: BTreeMap<String, GatewayPlan> = BTreeMap::new();
    let mut docs = Vec::new();
    let redirect = SslRedirect::of(controller);
    // (namespace, host) of every TLS host: ingress-nginx redirects a host whose server has
    // TLS, whichever of its Ingresses gave it.
    let tls_hosts: BTreeSet<(String, String)> = (ingresses.iter())
        .flat_map(|ing| {
            let ns = ing
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let spec = ing.spec.clone().unwrap_or_default();
            (spec.tls.into_iter().flatten())
                .filter(|t| t.secret_name.is_some())
                .flat_map(|t| t.hosts.unwrap_or_default())
                .map(move |h| (ns.clone(), h))
                .collect::<Vec<_>>()
        })
        .collect();
    for ing in ingresses {
        let ns = ing
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = ing.metadata.name.clone().unwrap_or_default();
        let gw = gateways.entry(ns.clone()).or_default();
        let spec = ing.spec.clone().unwrap_or_default();
        for t in spec.tls.iter().flatten() {
            match &t.secret_name {
                Some(secret) => {
                    for h in t.hosts.iter().flatten() {
                        gw.tls.insert((h.clone(), secret.clone()));
                    }
                }
                None => gw.notes.push(format!(
                    "Ingress {name}: a tls entry without secretName uses the default \
                     certificate; a Gateway listener needs certificateRefs"
                )),
            }
        }
        let ann = ing.metadata.annotations.clone().unwrap_or_default();
        let get = |k: &str| ann.get(&format!("{PREFIX}{k}")).map(String::as_str);
        let mut common_notes = Vec::new();
        for k in ann.keys() {
            let Some(short) = k.strip_prefix(PREFIX) else {
                continue;
            };
            if CARRIED.contains(&short) {
                continue;
            }
            let why = match support::annotation(short) {
                Some(_) => "no Gateway API equivalent: dropped",
                None => "not an ingress-nginx annotation (a typo?): dropped",
            };
            common_notes.push(format!("annotation {k}: {why}"));
        }
        if get("ssl-passthrough") == Some("true") {
            passthrough(ing, &ns, services, gw, &mut docs);
        }
        let regex = get("use-regex") == Some("true") || get("rewrite-target").is_some();
        let filters = filters(&get, &mut common_notes);
        // ingress-nginx: the annotation, else the ConfigMap's key, else true / false.
        let flag = |k: &str, default: bool| {
            get(k)
                .or(controller.get(k).map(String::as_str))
                .map_or(default, |v| v == "true")
        };
        let (ssl_redirect, force_ssl_redirect) = (
            flag("ssl-redirect", true),
            flag("force-ssl-redirect", false),
        );
        let passthrough_ingress = get("ssl-passthrough") == Some("true");
        let parent = json!([{"name": "xdp-ingress"}]);
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let mut notes = common_notes.clone();
            let host = rule.host.clone().filter(|h| !h.is_empty());
            if let Some(h) = host.as_deref().filter(|h| h.starts_with("*.")) {
                notes.push(format!(
                    "host {h}: an Ingress wildcard matches exactly one label, a Gateway API \
                     one matches one or more (a.b{} matches here, not under ingress-nginx)",
                    &h[1..]
                ));
            }
            let mut rules = Vec::new();
            let mut redirect_matches = Vec::new();
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                let (ty, value) = match p.path_type.as_str() {
                    _ if regex => {
                        notes.push(format!(
                            "path {path}: ingress-nginx matches a regular expression as a \
                             case-insensitive prefix; Gateway API RegularExpression matching \
                             is implementation-specific (xdp-ingress: the whole path, case-sensitive)"
                        ));
                        ("RegularExpression", format!("{path}.*"))
                    }
                    "Exact" => ("Exact", path),
                    "Prefix" => ("PathPrefix", path),
                    _ => ("PathPrefix", path),
                };
                let m = json!({"path": {"type": ty, "value": value}});
                redirect_matches.push(m.clone());
                let mut r = json!({"matches": [m]});
                if filters.iter().any(is_redirect) {
                    // The HTTPRoute CRD's validation refuses a RequestRedirect beside
                    // backendRefs or a URLRewrite: a redirecting rule has neither.
                    let redirect: Vec<Value> =
                        filters.iter().filter(|f| is_redirect(f)).cloned().collect();
                    r["filters"] = Value::Array(redirect);
                } else {
                    let backend = backend_ref(&ns, &p.backend, services, &mut notes);
                    r["backendRefs"] = json!(backend.into_iter().collect::<Vec<_>>());
                    if !filters.is_empty() {
                        r["filters"] = Value::Array(filters.clone());
                    }
                }
                rules.push(r);
            }
            let has_rules = !rules.is_empty();
            let route_name = if spec.rules.as_ref().map_or(0, Vec::len) > 1 {
                format!("{name}-{ri}")
            } else {
                name.clone()
            };
            let mut route = json!({
                "apiVersion": GROUP_VERSION,
                "kind": "HTTPRoute",
                "metadata": {"name": route_name, "namespace": ns},
                "spec": {"parentRefs": parent, "rules": rules},
            });
            // The HTTP to HTTPS redirect, where ingress-nginx makes one: not for a rule that
            // redirects anyway (its own redirect comes first), nor a passthrough Ingress's.
            let mut redirect_doc = None;
            let redirects = !filters.iter().any(is_redirect)
                && !passthrough_ingress
                && (ssl_redirect || force_ssl_redirect);
            if let Some(h) = host.as_deref().filter(|_| redirects && has_rules) {
                if tls_hosts.contains(&(ns.clone(), h.to_string())) {
                    route["spec"]["parentRefs"] =
                        json!([{"name": "xdp-ingress", "sectionName": https_listener(h)}]);
                    let to_https = json!({
                        "apiVersion": GROUP_VERSION,
                        "kind": "HTTPRoute",
                        "metadata": {"name": format!("{route_name}-https-redirect"), "namespace": ns},
                        "spec": {
                            "parentRefs": [{"name": "xdp-ingress", "sectionName": "http"}],
                            "hostnames": [h],
                            "rules": [{
                                "matches": redirect_matches,
                                "filters": [{"type": "RequestRedirect", "requestRedirect": {
                                    "scheme": "https", "statusCode": redirect.code,
                                }}],
                            }],
                        },
                    });
                    redirect_doc = Some(typed::<HttpRoute>(to_https, redirect.notes.clone()));
                } else if force_ssl_redirect {
                    notes.push(format!(
                        "annotation force-ssl-redirect: host {h} has no TLS here (ingress-nginx \
                         redirects it anyway, for TLS ended before it); the Gateway has no HTTPS \
                         listener to send it to: not redirected"
                    ));
                }
            }
            if let Some(h) = host {
                route["spec"]["hostnames"] = json!([h]);
            }
            docs.push(typed::<HttpRoute>(route, notes));
            docs.extend(redirect_doc);
        }
        if let Some(d) = &spec.default_backend {
            let mut notes = vec![format!(
                "Ingress {name} defaultBackend: as an HTTPRoute without hostnames it takes every \
                 request no other route of the Gateway takes, in every namespace's hosts"
            )];
            let backend = backend_ref(&ns, d, services, &mut notes);
            let route = json!({
                "apiVersion": GROUP_VERSION,
                "kind": "HTTPRoute",
                "metadata": {"name": format!("{name}-default-backend"), "namespace": ns},
                "spec": {
                    "parentRefs": parent,
                    "rules": [{"backendRefs": backend.into_iter().collect::<Vec<_>>()}],
                },
            });
            docs.push(typed::<HttpRoute>(route, notes));
        }
    }
    for (protocol, entries) in [("TCP", &exposed.tcp), ("UDP", &exposed.udp)] {
        for (port, target) in entries {
            exposed_port(protocol, port, target, services, &mut gateways, &mut docs);
        }
    }
    let mut out = String::new();
    for (ns, plan) in gateways {
        let GatewayPlan {
            tls,
            passthrough,
            l4,
            notes,
        } = plan;
        let mut listeners = vec![json!({
            "name": "http", "port": 80, "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        })];
        // A passthrough host's connections are not terminated: no HTTPS listener for it. One
        // listener per host (routes name it): a second Secret for a host gets a note.
        let mut notes = notes;
        let mut named = BTreeSet::new();
        for (host, secret) in tls.iter().filter(|(h, _)| !passthrough.contains(h)) {
            if !named.insert(host) {
                notes.push(format!(
                    "host {host}: more than one TLS Secret; the listener uses the first, \
                     not {secret}"
                ));
                continue;
            }
            listeners.push(json!({
                "name": https_listener(host), "port": 443, "protocol": "HTTPS", "hostname": host,
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret}]},
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }));
        }
        for host in &passthrough {
            listeners.push(json!({
                "name": passthrough_listener(host), "port": 443, "protocol": "TLS",
                "hostname": host, "tls": {"mode": "Passthrough"},
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }));
        }
        for (protocol, port) in &l4 {
            listeners.push(json!({
                "name": l4_listener(protocol, *port), "port": port, "protocol": protocol,
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }));
        }
        let gw = json!({
            "apiVersion": GROUP_VERSION,
            "kind": "Gateway",
            "metadata": {"name": "xdp-ingress", "namespace": ns},
            "spec": {"gatewayClassName": gateway_class, "listeners": listeners},
        });
        write(&mut out, &typed::<Gateway>(gw, notes));
    }
    for d in &docs {
        write(&mut out, d);
    }
    out
}

/// The name of a host's HTTPS listener (`https-` and the host, dots as dashes, `*` as
/// `wildcard`: a `SectionName` is a DNS label-like name).
fn https_listener(host: &str) -> String {
    format!("https-{}", host.replace('*', "wildcard").replace('.', "-"))
}

/// ingress-nginx's HTTP to HTTPS redirect code: the ConfigMap's `http-redirect-code` (301,
/// 302, 307 or 308), else 308.
struct SslRedirect {
    code: u16,
    notes: Vec<String>,
}

impl SslRedirect {
    fn of(controller: &BTreeMap<String, String>) -> SslRedirect {
        let mut notes = Vec::new();
        let code = match controller
            .get("http-redirect-code")
            .map(|c| c.trim().parse())
        {
            None => 308,
            Some(Ok(c @ (301 | 302 | 307 | 308))) => c,
            Some(_) => {
                notes.push(
                    "ConfigMap http-redirect-code: not 301, 302, 307 or 308; ingress-nginx \
                     uses 308"
                        .into(),
                );
                308
            }
        };
        SslRedirect { code, notes }
    }
}

/// The listener name of a passthrough host (`tls-` and the host, dots as dashes: a
/// `SectionName` is a DNS label-like name).
fn passthrough_listener(host: &str) -> String {
    format!("tls-{}", host.replace('.', "-"))
}

fn l4_listener(protocol: &str, port: u16) -> String {
    format!("{}-{port}", protocol.to_ascii_lowercase())
}

/// An `ssl-passthrough` Ingress: a TLSRoute per (non-wildcard) host to the backend of the
/// host's `/` path, else the Ingress's defaultBackend (ingress-nginx's choice); the Gateway
/// gets a TLS passthrough listener for the host.
fn passthrough(
    ing: &Ingress,
    ns: &str,
    services: &BTreeMap<Key, std::sync::Arc<Service>>,
    gw: &mut GatewayPlan,
    docs: &mut Vec<Doc>,
) {
    let name = ing.metadata.name.clone().unwrap_or_default();
    let spec = ing.spec.clone().unwrap_or_default();
    for rule in spec.rules.iter().flatten() {
        let Some(host) = rule.host.clone().filter(|h| !h.is_empty()) else {
            continue;
        };
        let mut notes = vec![format!(
            "Ingress {name} ssl-passthrough: TLS connections for {host} are passed by SNI,              untouched, to the backend of its / path (a TLSRoute on a TLS Passthrough              listener); the Ingress's other paths and annotations play no part over TLS, and              its plain-HTTP routes are the HTTPRoute's"
        )];
        if host.starts_with("*.") {
            notes.push(format!(
                "host {host}: ingress-nginx matches passthrough SNI names exactly, so a                  wildcard was never passed through; no TLSRoute"
            ));
            docs.push(Doc {
                notes,
                yaml: String::new(),
            });
            continue;
        }
        let root = (rule.http.iter().flat_map(|h| &h.paths))
            .find(|p| p.path.as_deref().unwrap_or("/") == "/")
            .map(|p| &p.backend)
            .or(spec.default_backend.as_deref());
        let Some(backend) = root else {
            notes.push(format!(
                "host {host}: no / path and no defaultBackend, so ingress-nginx did not pass it                  through; no TLSRoute"
            ));
            docs.push(Doc {
                notes,
                yaml: String::new(),
            });
            continue;
        };
        let backend = backend_ref(ns, backend, services, &mut notes);
        gw.passthrough.insert(host.clone());
        let route = json!({
            "apiVersion": crate::store::TLS_ROUTE_API_VERSION,
            "kind": "TLSRoute",
            "metadata": {"name": format!("{name}-{}", passthrough_listener(&host)), "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "xdp-ingress", "sectionName": passthrough_listener(&host)}],
                "hostnames": [host],
                "rules": [{"backendRefs": backend.into_iter().collect::<Vec<_>>()}],
            },
        });
        docs.push(typed::<TlsRoute>(route, notes));
    }
}

/// One entry of the TCP or UDP services ConfigMap: a listener on the Gateway of the Service's
/// namespace and a TCPRoute or UDPRoute to it, or a note saying why not.
fn exposed_port(
    protocol: &'static str,
    port: &str,
    target: &str,
    services: &BTreeMap<Key, std::sync::Arc<Service>>,
    gateways: &mut BTreeMap<String, GatewayPlan>,
    docs: &mut Vec<Doc>,
) {
    let cm = format!("{}-services", protocol.to_ascii_lowercase());
    let unparsed = |why: &str| Doc {
        notes: vec![format!("{cm} {port:?}: {target:?}: {why}; not converted")],
        yaml: String::new(),
    };
    let Ok(exposed) = port.trim().parse::<u16>() else {
        docs.push(unparsed("the key is not a port"));
        return;
    };
    // `namespace/service:port[:PROXY[:PROXY]]` (ingress-nginx `tcp-services` format).
    let Some((ns, rest)) = target.trim().split_once('/') else {
        docs.push(unparsed("expected namespace/service:port"));
        return;
    };
    let mut parts = rest.split(':');
    let (Some(svc), Some(svc_port)) = (parts.next(), parts.next()) else {
        docs.push(unparsed("expected namespace/service:port"));
        return;
    };
    let mut notes = vec![format!(
        "{cm} {exposed}: the XDP path serves {protocol} port {exposed} on every node address          (Maglev, conntrack, NAT, as for NodePorts) instead of the controller's Service port"
    )];
    if parts.any(|p| p == "PROXY") {
        notes.push(format!(
            "{cm} {exposed}: PROXY protocol (:PROXY) has no TCPRoute equivalent; dropped (the              XDP path keeps the client's address by NAT instead)"
        ));
    }
    let number = svc_port.parse::<i32>().ok().or_else(|| {
        services
            .get(&Key::new(ns, svc))?
            .spec
            .as_ref()?
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(svc_port))
            .map(|p| p.port)
    });
    let backend = match number {
        Some(n) => json!({"name": svc, "port": n}),
        None => {
            notes.push(format!(
                "Service {ns}/{svc}: its port {svc_port:?} could not be resolved to a number;                  fill it in"
            ));
            json!({"name": svc})
        }
    };
    gateways
        .entry(ns.to_string())
        .or_default()
        .l4
        .insert((protocol, exposed));
    let route = json!({
        "apiVersion": crate::store::L4_ROUTE_API_VERSION,
        "kind": format!("{protocol}Route"),
        "metadata": {"name": format!("{svc}-{}", l4_listener(protocol, exposed)), "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "xdp-ingress", "sectionName": l4_listener(protocol, exposed)}],
            "rules": [{"backendRefs": [backend]}],
        },
    });
    let mut doc = match protocol {
        "UDP" => typed::<UdpRoute>(route, notes),
        _ => typed::<TcpRoute>(route, notes),
    };
    // The crate's types print their `v1alpha2`; the schema is the same at `v1`.
    doc.yaml = at_l4_route_version(&doc.yaml);
    docs.push(doc);
}

fn write(out: &mut String, d: &Doc) {
    out.push_str("---\n");
    for n in &d.notes {
        out.push_str(&format!("# note: {n}\n"));
    }
    out.push_str(&d.yaml);
}

/// `yaml` (a TCPRoute or UDPRoute as the crate's types print it) at
/// [`crate::store::L4_ROUTE_API_VERSION`].
fn at_l4_route_version(yaml: &str) -> String {
    let printed = format!(
        "apiVersion: {}\n",
        <TcpRoute as kube::Resource>::api_version(&())
    );
    match yaml.strip_prefix(printed.as_str()) {
        Some(rest) => format!("apiVersion: {}\n{rest}", crate::store::L4_ROUTE_API_VERSION),
        None => yaml.to_string(),
    }
}

/// `v` read as a `T` (so that only what the crate's types hold is printed) and written back
/// as YAML.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    v: Value,
    mut notes: Vec<String>,
) -> Doc {
    notes.dedup();
    let yaml = serde_json::from_value::<T>(v)
        .map_err(|e| e.to_string())
        .and_then(|t| yaml_serde::to_string(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| format!("# could not be built: {e}\n"));
    Doc { notes, yaml }
}

fn is_redirect(filter: &Value) -> bool {
    filter["type"] == "RequestRedirect"
}

/// The rule filters of the annotations that have an equivalent.
fn filters<'a>(get: &impl Fn(&str) -> Option<&'a str>, notes: &mut Vec<String>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rewrite = serde_json::Map::new();
    if let Some(t) = get("rewrite-target") {
        if t.contains('$') {
            notes.push(format!(
                "annotation rewrite-target {t:?}: capture groups have no Gateway API equivalent; dropped"
            ));
        } else {
            rewrite.insert(
                "path".into(),
                json!({"type": "ReplaceFullPath", "replaceFullPath": t}),
            );
        }
    }
    if let Some(h) = get("upstream-vhost") {
        rewrite.insert("hostname".into(), json!(h));
    }
    if !rewrite.is_empty() {
        out.push(json!({"type": "URLRewrite", "urlRewrite": rewrite}));
    }
    for (k, code) in [("permanent-redirect", 301), ("temporal-redirect", 302)] {
        let Some(to) = get(k) else { continue };
        match to.parse::<http::Uri>() {
            Ok(u) if u.host().is_some() => {
                let mut r = json!({"statusCode": code, "hostname": u.host()});
                if let Some(s) = u.scheme_str() {
                    r["scheme"] = json!(s);
                }
                if let Some(p) = u.port_u16() {
                    r["port"] = json!(p);
                }
                r["path"] = json!({"type": "ReplaceFullPath", "replaceFullPath": u.path()});
                notes.push(format!(
                    "annotation {k}: RequestRedirect keeps the request's query; ingress-nginx's \
                     redirect drops it unless the target has one"
                ));
                out.push(json!({"type": "RequestRedirect", "requestRedirect": r}));
            }
            _ => notes.push(format!(
                "annotation {k} {to:?}: not an absolute URL; dropped"
            )),
        }
    }
    out
}

/// The backendRef of an Ingress backend (a named port resolved through the Service).
fn backend_ref(
    ns: &str,
    b: &IngressBackend,
    services: &BTreeMap<Key, std::sync::Arc<Service>>,
    notes: &mut Vec<String>,
) -> Option<Value> {
    let Some(svc) = &b.service else {
        notes.push("a resource backend has no Gateway API equivalent; dropped".into());
        return None;
    };
    let port = svc.port.as_ref();
    let number = port.and_then(|p| p.number).or_else(|| {
        let name = port.and_then(|p| p.name.as_deref())?;
        services
            .get(&Key::new(ns, svc.name.clone()))?
            .spec
            .as_ref()?
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.port)
    });
    match number {
        Some(n) => Some(json!({"name": svc.name, "port": n})),
        None => {
            notes.push(format!(
                "Service {}: its port {:?} could not be resolved to a number (backendRefs need \
                 one); fill it in",
                svc.name,
                port.and_then(|p| p.name.clone()).unwrap_or_default()
            ));
            Some(json!({"name": svc.name}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::translate::{TranslateConfig, translate},
        source::files::parse_manifests,
        store::{Object, Objects},
    };

    const INGRESSES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: shop
  annotations:
    nginx.ingress.kubernetes.io/upstream-vhost: internal.shop
    nginx.ingress.kubernetes.io/limit-rps: "5"
spec:
  tls: [{hosts: [shop.example], secretName: shop-tls}]
  defaultBackend: {service: {name: web, port: {number: 8080}}}
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /cart, pathType: Exact, backend: {service: {name: web, port: {name: http}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
  - host: "*.shop.example"
    http:
      paths:
      - {path: /, pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 8080}}}}
"#;

    fn objects(yaml: &str) -> Objects {
        Objects::from_objects(parse_manifests(yaml).expect("parses"))
    }

    fn converted() -> String {
        let o = objects(INGRESSES);
        convert(
            o.ingresses.values().map(|i| &**i),
            &o.services,
            &ExposedPorts::default(),
            &BTreeMap::new(),
            "xdp",
        )
    }

    /// The output parses as Gateway API objects, and each change of behaviour has its note.
    #[test]
    fn ingresses_become_a_gateway_and_routes_with_notes() {
        let out = converted();
        for note in [
            "annotation nginx.ingress.kubernetes.io/limit-rps: no Gateway API equivalent",
            "an Ingress wildcard matches exactly one label",
            "defaultBackend: as an HTTPRoute without hostnames",
        ] {
            assert!(out.contains(note), "{note} in\n{out}");
        }
        let parsed = parse_manifests(&out).expect("the output parses");
        let kinds: Vec<_> = parsed.iter().map(|o| format!("{:?}", o.kind())).collect();
        // shop.example has TLS: its route, its HTTPS redirect, the wildcard's, the default.
        assert_eq!(
            kinds,
            [
                "Gateway",
                "HTTPRoute",
                "HTTPRoute",
                "HTTPRoute",
                "HTTPRoute"
            ],
            "{out}"
        );
        let Object::Gateway(gw) = &parsed[0] else {
            unreachable!()
        };
        let https = &gw.spec.listeners[1];
        assert_eq!(https.hostname.as_deref(), Some("shop.example"));
        assert_eq!(https.port, 443);
        let Object::HTTPRoute(r) = &parsed[1] else {
            unreachable!()
        };
        let rules = r.spec.rules.as_ref().unwrap();
        // The named port resolved through the Service.
        assert_eq!(rules[0].backend_refs.as_ref().unwrap()[0].port, Some(8080));
        assert!(format!("{:?}", rules[0].filters).contains("internal.shop"));
    }

    /// `permanent-redirect` becomes a rule with only the RequestRedirect: the HTTPRoute CRD
    /// refuses one beside `backendRefs` or a URLRewrite (`upstream-vhost` here), so the
    /// output must have neither to apply on a cluster; translated, the rule redirects.
    #[test]
    fn a_redirecting_rule_has_no_backend_refs_or_rewrite() {
        let yaml = INGRESSES.replace(
            "nginx.ingress.kubernetes.io/limit-rps: \"5\"",
            "nginx.ingress.kubernetes.io/permanent-redirect: https://new.example/moved",
        );
        let o = objects(&yaml);
        let out = convert(
            o.ingresses.values().map(|i| &**i),
            &o.services,
            &ExposedPorts::default(),
            &BTreeMap::new(),
            "xdp",
        );
        let parsed = parse_manifests(&out).expect("the output parses");
        let mut redirects = 0;
        for obj in &parsed {
            let Object::HTTPRoute(r) = obj else { continue };
            for rule in r.spec.rules.iter().flatten() {
                let filters = format!("{:?}", rule.filters);
                if filters.contains("RequestRedirect") {
                    redirects += 1;
                    assert!(
                        rule.backend_refs.as_ref().is_none_or(Vec::is_empty),
                        "{out}"
                    );
                    assert!(!filters.contains("URLRewrite"), "{out}");
                }
            }
        }
        assert!(redirects > 0, "{out}");
    }

    const TLS_INGRESSES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: shop}
spec:
  tls: [{hosts: [shop.example], secretName: shop-tls}]
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /cart, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: plain
  namespace: shop
  annotations: {nginx.ingress.kubernetes.io/force-ssl-redirect: "true"}
spec:
  rules:
  - host: plain.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
"#;

    fn convert_with(yaml: &str, controller: &[(&str, &str)]) -> String {
        let o = objects(yaml);
        let controller = (controller.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        convert(
            o.ingresses.values().map(|i| &**i),
            &o.services,
            &ExposedPorts::default(),
            &controller,
            "xdp",
        )
    }

    fn routes(
        out: &str,
    ) -> BTreeMap<String, std::sync::Arc<gateway_api::apis::experimental::httproutes::HttpRoute>>
    {
        (parse_manifests(out).expect("the output parses").into_iter())
            .filter_map(|o| match o {
                Object::HTTPRoute(r) => Some((r.metadata.name.clone().unwrap_or_default(), r)),
                _ => None,
            })
            .collect()
    }

    /// ingress-nginx redirects plain HTTP to HTTPS for a host with TLS (`ssl-redirect`,
    /// default true; 308 or the ConfigMap's `http-redirect-code`): the output has an HTTPRoute
    /// on the `http` listener redirecting the same paths with `scheme: https`, and the route
    /// to the backends on the host's HTTPS listener. Translated, a plain request is
    /// redirected to `https://` and an HTTPS one reaches the Service (the proxy's own
    /// decisions, through `explain`).
    #[test]
    fn ssl_redirect_becomes_an_https_redirect_route() {
        let out = convert_with(TLS_INGRESSES, &[]);
        assert!(!out.contains("annotation nginx.ingress.kubernetes.io/force-ssl-redirect"));
        let r = routes(&out);
        let redirect = &r["shop-https-redirect"];
        let parent = &redirect.spec.parent_refs.as_ref().unwrap()[0];
        assert_eq!(parent.section_name.as_deref(), Some("http"), "{out}");
        let f = format!("{:?}", redirect.spec.rules.as_ref().unwrap()[0].filters);
        assert!(
            f.contains("scheme: Some(Https)") && f.contains("status_code: Some(308)"),
            "{f}"
        );
        let backend = &r["shop"];
        let parent = &backend.spec.parent_refs.as_ref().unwrap()[0];
        assert_eq!(
            parent.section_name.as_deref(),
            Some("https-shop-example"),
            "{out}"
        );
        // force-ssl-redirect without TLS: no HTTPS listener to send it to; a note says so.
        assert!(
            out.contains("force-ssl-redirect: host plain.example has no TLS"),
            "{out}"
        );
        assert!(!r.contains_key("plain-https-redirect"));

        let (crt, key) = crate::model::translate::fixtures::mk_cert_pem(&["shop.example"]);
        let secret =
            crate::model::translate::fixtures::mk_tls_secret("shop", "shop-tls", &crt, &key);
        let class = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp}\nspec: {controllerName: xdp-ingress.dev/controller}\n";
        let svc = TLS_INGRESSES.split("---").next().unwrap();
        let mut all = parse_manifests(&format!("{svc}{class}{out}")).unwrap();
        all.push(Object::Secret(secret.into()));
        let s = translate(&Objects::from_objects(all), &TranslateConfig::default());
        use crate::cli::explain::{Outcome, Query, explain};
        let ask = |https: bool| {
            explain(
                &s,
                &Query {
                    host: "shop.example".into(),
                    path: "/cart/1?x=y".into(),
                    https,
                    ..Query::default()
                },
            )
        };
        let e = ask(false);
        assert_eq!(
            (&e.outcome, e.status, e.redirect_to.as_deref()),
            (
                &Outcome::Redirect,
                Some(308),
                Some("https://shop.example/cart/1?x=y")
            ),
            "{e:?}"
        );
        let e = ask(true);
        assert_eq!(e.outcome, Outcome::Route, "{e:?}");
        assert_eq!(e.backends[0].service.name, "web");
    }

    /// `ssl-redirect: "false"` (annotation or ConfigMap) keeps one route on every listener;
    /// the ConfigMap's `http-redirect-code` is the redirect's status; `force-ssl-redirect`
    /// redirects a TLS host even when `ssl-redirect` is off.
    #[test]
    fn ssl_redirect_follows_the_annotations_and_the_configmap() {
        let off = convert_with(TLS_INGRESSES, &[("ssl-redirect", "false")]);
        let r = routes(&off);
        assert!(!r.contains_key("shop-https-redirect"), "{off}");
        assert_eq!(
            r["shop"].spec.parent_refs.as_ref().unwrap()[0].section_name,
            None
        );
        let annotated = TLS_INGRESSES.replacen(
            "metadata: {name: shop, namespace: shop}",
            "metadata:\n  name: shop\n  namespace: shop\n  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}",
            1,
        );
        assert!(!routes(&convert_with(&annotated, &[])).contains_key("shop-https-redirect"));
        let forced = TLS_INGRESSES.replacen(
            "metadata: {name: shop, namespace: shop}",
            "metadata:\n  name: shop\n  namespace: shop\n  annotations: {nginx.ingress.kubernetes.io/force-ssl-redirect: \"true\"}",
            1,
        );
        let out = convert_with(
            &forced,
            &[("ssl-redirect", "false"), ("http-redirect-code", "301")],
        );
        let r = routes(&out);
        let f = format!(
            "{:?}",
            r["shop-https-redirect"].spec.rules.as_ref().unwrap()[0].filters
        );
        assert!(f.contains("301"), "{out}");
    }

    /// What the output serves is what the Ingresses serve: translated with a GatewayClass
    /// of ours, the same hosts and paths reach the same Service.
    #[test]
    fn the_routes_serve_the_ingresses_hosts_and_paths() {
        let class = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp}\nspec: {controllerName: xdp-ingress.dev/controller}\n";
        let services = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{name: http, port: 8080}]}\n";
        let yaml = format!("{services}{class}{}", converted());
        let s = translate(&objects(&yaml), &TranslateConfig::default());
        let paths: Vec<String> = s.l7.hosts["shop.example"]
            .routes
            .iter()
            .map(|r| format!("{:?}", r.matches.path))
            .collect();
        assert_eq!(paths, [r#"Exact("/cart")"#, r#"Prefix("/")"#]);
        assert!(s.l7.gateway_wildcard_hosts.contains_key("shop.example"));
        for (r, parents) in &s.gateway_status.routes {
            assert!(parents[0].conditions[0].status, "{r}: {parents:?}");
        }
    }

    /// `ssl-passthrough` (ingress-nginx: the host's `/` backend, SNI matched exactly) becomes a
    /// TLS Passthrough listener and a TLSRoute, without an HTTPS listener for that host; the
    /// TCP and UDP services ConfigMaps' entries become TCP/UDP listeners and routes. Translated
    /// with a class of ours, they serve: the SNI table passes the host, the listeners become
    /// L4 services of the XDP path, every route is accepted.
    #[test]
    fn passthrough_ingresses_and_exposed_ports_become_l4_routes() {
        let input = r#"
apiVersion: v1
kind: Service
metadata: {name: vault, namespace: sec}
spec: {ports: [{name: https, port: 8200}]}
---
apiVersion: v1
kind: Service
metadata: {name: pg, namespace: db}
spec: {ports: [{name: sql, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: db}
spec: {ports: [{name: dns, port: 53, protocol: UDP}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: vault
  namespace: sec
  annotations: {nginx.ingress.kubernetes.io/ssl-passthrough: "true"}
spec:
  tls: [{hosts: [vault.example], secretName: vault-tls}]
  rules:
  - host: vault.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: vault, port: {name: https}}}}
  - host: "*.vault.example"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: vault, port: {number: 8200}}}}
"#;
        let o = objects(input);
        let exposed = ExposedPorts {
            tcp: [
                ("5432".to_string(), "db/pg:sql".to_string()),
                ("6000".to_string(), "db/pg:5432:PROXY".to_string()),
                ("nope".to_string(), "db/pg:5432".to_string()),
            ]
            .into(),
            udp: [("5353".to_string(), "db/dns:53".to_string())].into(),
        };
        let out = convert(
            o.ingresses.values().map(|i| &**i),
            &o.services,
            &exposed,
            &BTreeMap::new(),
            "xdp",
        );
        for note in [
            "ssl-passthrough: TLS connections for vault.example are passed by SNI",
            "ingress-nginx matches passthrough SNI names exactly",
            "PROXY protocol (:PROXY) has no TCPRoute equivalent",
            "tcp-services \"nope\"",
            "the XDP path serves UDP port 5353 on every node address",
        ] {
            assert!(out.contains(note), "{note} in\n{out}");
        }
        assert!(
            !out.contains("annotation nginx.ingress.kubernetes.io/ssl-passthrough"),
            "{out}"
        );
        // Gateway API v1.6: TCPRoute and UDPRoute are `v1` (standard channel).
        for kind in ["TCPRoute", "UDPRoute"] {
            let at_v1 = format!("apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\n");
            assert!(out.contains(&at_v1), "{kind} at v1 in\n{out}");
        }
        assert!(!out.contains("v1alpha2"), "{out}");
        let parsed = parse_manifests(&out).expect("the output parses");
        let mut kinds: Vec<_> = parsed.iter().map(|o| format!("{:?}", o.kind())).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "Gateway",
                "Gateway",
                "HTTPRoute",
                "HTTPRoute",
                "TCPRoute",
                "TCPRoute",
                "TLSRoute",
                "UDPRoute"
            ],
            "{out}"
        );
        let gw = parsed
            .iter()
            .find_map(|o| match o {
                Object::Gateway(g) if g.metadata.namespace.as_deref() == Some("sec") => Some(g),
                _ => None,
            })
            .expect("the sec Gateway");
        let protocols: Vec<&str> = gw
            .spec
            .listeners
            .iter()
            .map(|l| l.protocol.as_str())
            .collect();
        assert_eq!(
            protocols,
            ["HTTP", "TLS"],
            "no HTTPS listener for a passthrough host"
        );

        let class = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: xdp}\nspec: {controllerName: xdp-ingress.dev/controller}\n";
        let svc_yaml: String = input.split("---").take(3).collect::<Vec<_>>().join("---");
        let s = translate(
            &objects(&format!("{svc_yaml}{class}{out}")),
            &TranslateConfig::default(),
        );
        assert!(
            matches!(
                s.l7.gateway_sni.get("vault.example"),
                Some(crate::model::SniAction::Pass { .. })
            ),
            "{:?}",
            s.l7.gateway_sni
        );
        let mut l4: Vec<(String, String)> =
            s.l4.iter()
                .map(|l| (l.id.clone(), format!("{:?}", l.frontends)))
                .collect();
        l4.sort();
        assert_eq!(
            l4,
            [
                (
                    "gateway/db/xdp-ingress:tcp-5432".to_string(),
                    "[NodePort(5432)]".to_string()
                ),
                (
                    "gateway/db/xdp-ingress:tcp-6000".to_string(),
                    "[NodePort(6000)]".to_string()
                ),
                (
                    "gateway/db/xdp-ingress:udp-5353".to_string(),
                    "[NodePort(5353)]".to_string()
                ),
            ]
        );
        for (r, parents) in &s.gateway_status.routes {
            assert!(parents[0].conditions[0].status, "{r}: {parents:?}");
        }
    }
}
