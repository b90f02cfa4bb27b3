//! `xdp-ingress explain --gateway NS/NAME`: the status the daemon would write for a Gateway,
//! without a cluster — its GatewayClass's `Accepted`, the Gateway's `Accepted` and
//! `Programmed` with reasons, each listener's conditions and `attachedRoutes`, its
//! `addresses`, its ListenerSets', and each route's `status.parents` entries of ours — as
//! the JSON [`crate::status::gateway_status`] patches (the same functions; only
//! `lastTransitionTime`, the time of the write, is left out). A Gateway that is not ours says
//! why (no such Gateway, its class missing or another controller's).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::{
    model::{
        Diagnostic, ObjectKind, ObjectRef, Snapshot, translate::gateway::strays::route_parent_refs,
    },
    status::gateway_status::{
        gateway_class_json, gateway_json, listener_set_json, route_parents_json,
    },
    store::{Key, Objects},
};

/// What `explain --gateway` prints.
#[derive(Debug, Serialize)]
pub struct GatewayExplanation {
    pub gateway: ObjectRef,
    /// This controller serves the Gateway (and writes the status below).
    pub served: bool,
    /// Why, in words.
    pub reason: String,
    /// The Gateway's class, as the daemon sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_class: Option<ClassInfo>,
    /// The Gateway's `status` as written (without `lastTransitionTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// The ListenerSets whose parent is this Gateway, with their `status` as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_sets: Vec<ObjectStatus>,
    /// Each route naming this Gateway (or one of its ListenerSets): its `status.parents`
    /// entries of ours, as written (`null` when the daemon writes none: not ours).
    pub routes: Vec<ObjectStatus>,
    /// Problems reported for the Gateway, its class, its ListenerSets and its routes.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Serialize)]
pub struct ClassInfo {
    pub name: String,
    pub controller_name: String,
    /// `status` as written: `{"conditions": [Accepted]}`; `None` for another controller's.
    pub status: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct ObjectStatus {
    pub object: ObjectRef,
    pub status: Option<Value>,
}

/// `lastTransitionTime` is the time of the write: left out of what `explain` shows.
const UNSTAMPED: &str = "";

fn unstamped(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            if m.get("lastTransitionTime") == Some(&Value::String(UNSTAMPED.into())) {
                m.remove("lastTransitionTime");
            }
            for x in m.values_mut() {
                *x = unstamped(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = unstamped(x.take());
            }
        }
        _ => {}
    }
    v
}

/// The status of Gateway `key` as the daemon (controller `controller`) would write it.
pub fn explain_gateway(
    snapshot: &Snapshot,
    objects: &Objects,
    key: &Key,
    controller: &str,
) -> GatewayExplanation {
    let gw_ref = ObjectRef::new(ObjectKind::Gateway, key.namespace.clone(), key.name.clone());
    let status = &snapshot.gateway_status;
    let gw = objects.gateways.get(key);
    let class = gw.map(|g| g.spec.gateway_class_name.clone());
    let class_obj = class
        .as_ref()
        .and_then(|c| objects.gateway_classes.get(&Key::new("", c.clone())));
    let class_ref = class
        .as_ref()
        .map(|c| ObjectRef::new(ObjectKind::GatewayClass, "", c.clone()));
    let gateway_class = class_obj.zip(class_ref.as_ref()).map(|(gc, r)| ClassInfo {
        name: r.name.clone(),
        controller_name: gc.spec.controller_name.clone(),
        status: (status.classes.get(r)).map(|c| unstamped(gateway_class_json(c, UNSTAMPED))),
    });
    let gw_status = status.gateways.get(&gw_ref);
    let reason = match (gw, &class, class_obj, gw_status) {
        (None, ..) => format!("no Gateway {key} in the manifests"),
        (_, Some(c), None, _) => {
            format!("gatewayClassName {c:?} names no GatewayClass: no controller serves it")
        }
        (_, Some(c), Some(gc), _) if gc.spec.controller_name != controller => format!(
            "GatewayClass {c:?} is controller {:?}'s, not ours ({controller:?}): that \
             controller writes this Gateway's status",
            gc.spec.controller_name
        ),
        (_, Some(c), Some(_), None) => {
            format!("GatewayClass {c:?} is ours but not accepted: its Gateways are not served")
        }
        (_, _, _, Some(_)) => {
            "served by this controller: the status below is what it writes".into()
        }
        (_, None, ..) => unreachable!("a Gateway has a class name"),
    };
    // The ListenerSets attached to (or naming) this Gateway.
    let sets: Vec<ObjectRef> = (objects.listener_sets.iter())
        .filter(|(k, ls)| {
            let p = &ls.spec.parent_ref;
            p.name == key.name && p.namespace.as_deref().unwrap_or(&k.namespace) == key.namespace
        })
        .map(|(k, _)| ObjectRef::new(ObjectKind::ListenerSet, k.namespace.clone(), k.name.clone()))
        .collect();
    let listener_sets = (sets.iter())
        .map(|r| ObjectStatus {
            object: r.clone(),
            status: (status.listener_sets.get(r))
                .map(|s| unstamped(listener_set_json(s, UNSTAMPED))),
        })
        .collect();
    let mut route_refs = Vec::new();
    for (route, refs) in route_parent_refs(objects) {
        let names = refs.iter().any(|p| {
            let ns = p.namespace.as_deref().unwrap_or(&route.namespace);
            match p.kind.as_str() {
                "Gateway" => p.name == key.name && ns == key.namespace,
                "ListenerSet" => (sets.iter()).any(|s| s.name == p.name && s.namespace == ns),
                _ => false,
            }
        });
        if names {
            route_refs.push(route);
        }
    }
    let routes = (route_refs.iter())
        .map(|r| ObjectStatus {
            object: r.clone(),
            status: (status.routes.get(r)).map(|p| {
                unstamped(serde_json::json!({
                    "parents": route_parents_json(p, controller, UNSTAMPED)
                }))
            }),
        })
        .collect();
    let related: BTreeSet<&ObjectRef> = std::iter::once(&gw_ref)
        .chain(class_ref.as_ref())
        .chain(&sets)
        .chain(&route_refs)
        .collect();
    // The Services the routes send to, and their EndpointSlices: a refused endpoint (say) is
    // reported on a slice, and is why a backend answers 503.
    let services: BTreeSet<Key> = (route_refs.iter())
        .flat_map(|r| backend_services(objects, r))
        .collect();
    let backend_side = |d: &Diagnostic| match d.object.kind {
        ObjectKind::Service => {
            services.contains(&Key::new(d.object.namespace.clone(), d.object.name.clone()))
        }
        ObjectKind::EndpointSlice => (objects.endpoint_slices)
            .get(&Key::new(d.object.namespace.clone(), d.object.name.clone()))
            .and_then(|s| s.service())
            .is_some_and(|svc| {
                services.contains(&Key::new(d.object.namespace.clone(), svc.to_string()))
            }),
        _ => false,
    };
    GatewayExplanation {
        served: gw_status.is_some(),
        reason,
        gateway_class,
        status: gw_status.map(|s| unstamped(gateway_json(s, UNSTAMPED))),
        listener_sets,
        routes,
        diagnostics: (snapshot.diagnostics.iter())
            .filter(|d| related.contains(&d.object) || backend_side(d))
            .cloned()
            .collect(),
        gateway: gw_ref,
    }
}

/// The core Services the `backendRefs` of `route`'s rules name (any route kind: read from its
/// spec as the API spells it; the namespace defaults to the route's).
fn backend_services(objects: &Objects, route: &ObjectRef) -> Vec<Key> {
    let key = Key::new(route.namespace.clone(), route.name.clone());
    let spec = match route.kind {
        ObjectKind::HTTPRoute => objects
            .http_routes
            .get(&key)
            .map(|r| serde_json::to_value(&r.spec)),
        ObjectKind::GRPCRoute => objects
            .grpc_routes
            .get(&key)
            .map(|r| serde_json::to_value(&r.spec)),
        ObjectKind::TLSRoute => objects
            .tls_routes
            .get(&key)
            .map(|r| serde_json::to_value(&r.spec)),
        ObjectKind::TCPRoute => objects
            .tcp_routes
            .get(&key)
            .map(|r| serde_json::to_value(&r.spec)),
        ObjectKind::UDPRoute => objects
            .udp_routes
            .get(&key)
            .map(|r| serde_json::to_value(&r.spec)),
        _ => None,
    };
    let Some(Ok(spec)) = spec else {
        return Vec::new();
    };
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    (rules.iter())
        .flat_map(|rule| rule["backendRefs"].as_array().cloned().unwrap_or_default())
        .filter(|b| {
            b["group"].as_str().unwrap_or("").is_empty()
                && b["kind"].as_str().unwrap_or("Service") == "Service"
        })
        .filter_map(|b| {
            let name = b["name"].as_str()?;
            let ns = b["namespace"].as_str().unwrap_or(&route.namespace);
            Some(Key::new(ns.to_string(), name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::translate::{DEFAULT_CONTROLLER_NAME, TranslateConfig, translate};

    const YAML: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default, generation: 2}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.test
    tls: {certificateRefs: [{name: missing-cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: typo, namespace: default}
spec:
  gatewayClassName: xpd
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: default}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default, generation: 4}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: nowhere, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-section, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: grpc}]
"#;

    fn setup() -> (Snapshot, Objects) {
        let objects = Objects::from_objects(crate::source::files::parse_manifests(YAML).unwrap());
        (translate(&objects, &TranslateConfig::default()), objects)
    }

    fn explain(name: &str) -> Value {
        let (s, o) = setup();
        let e = explain_gateway(&s, &o, &Key::new("default", name), DEFAULT_CONTROLLER_NAME);
        serde_json::to_value(&e).unwrap()
    }

    fn cond<'a>(conds: &'a Value, t: &str) -> (&'a str, &'a str) {
        let c = (conds.as_array().unwrap().iter())
            .find(|c| c["type"] == t)
            .unwrap_or_else(|| panic!("no {t} in {conds}"));
        (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap())
    }

    /// The problems of the Services the Gateway's routes send to are listed too: a loopback
    /// endpoint refused on the route's Service's slice is why its backend answers 503
    /// (fresh-user trial: `diagnostics: []` beside all-True conditions).
    #[test]
    fn a_refused_endpoint_of_a_routes_service_is_listed() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other-1, namespace: shop, labels: {kubernetes.io/service-name: other}}
addressType: IPv4
ports: [{name: http, port: 80}]
endpoints: [{addresses: ["127.0.0.2"], conditions: {ready: true}}]
"#;
        let objects = Objects::from_objects(crate::source::files::parse_manifests(yaml).unwrap());
        let s = translate(&objects, &TranslateConfig::default());
        let e = explain_gateway(
            &s,
            &objects,
            &Key::new("shop", "gw"),
            DEFAULT_CONTROLLER_NAME,
        );
        let found: Vec<(&str, &str)> = (e.diagnostics.iter())
            .map(|d| (d.object.name.as_str(), d.reason.as_str()))
            .collect();
        assert!(
            found.contains(&("web-1", "EndpointAddressRefused")),
            "{found:?}"
        );
        assert!(!found.iter().any(|(o, _)| *o == "other-1"), "{found:?}");
    }

    /// What the daemon would write, by the spec's conditions and reasons: the class
    /// Accepted; the Gateway Accepted, and not Programmed while a listener's certificate does
    /// not resolve (`ListenersNotValid`... as the status writer computes it); each listener's
    /// conditions and attachedRoutes; each route's parent entries (`NoMatchingParent` for a
    /// sectionName no listener has, `ResolvedRefs: False, BackendNotFound`).
    #[test]
    fn a_gateway_shows_the_status_the_daemon_writes() {
        let v = explain("gw");
        assert_eq!(v["served"], true, "{v:#}");
        assert_eq!(
            cond(&v["gateway_class"]["status"]["conditions"], "Accepted"),
            ("True", "Accepted")
        );
        let st = &v["status"];
        assert_eq!(cond(&st["conditions"], "Accepted").0, "True", "{st:#}");
        let listeners = st["listeners"].as_array().unwrap();
        let http = listeners.iter().find(|l| l["name"] == "http").unwrap();
        assert_eq!(http["attachedRoutes"], 1);
        assert_eq!(
            cond(&http["conditions"], "Programmed"),
            ("True", "Programmed")
        );
        let https = listeners.iter().find(|l| l["name"] == "https").unwrap();
        assert_eq!(
            cond(&https["conditions"], "ResolvedRefs"),
            ("False", "InvalidCertificateRef")
        );
        assert!(st.get("addresses").is_some());
        // No time: it is the time of the write.
        assert!(!v.to_string().contains("lastTransitionTime"));
        let routes = v["routes"].as_array().unwrap();
        let parents = |name: &str| {
            routes.iter().find(|r| r["object"]["name"] == name).unwrap()["status"]["parents"][0]
                .clone()
        };
        let web = parents("web");
        assert_eq!(web["controllerName"], DEFAULT_CONTROLLER_NAME);
        assert_eq!(web["parentRef"]["sectionName"], "http");
        assert_eq!(cond(&web["conditions"], "Accepted"), ("True", "Accepted"));
        assert_eq!(
            cond(&web["conditions"], "ResolvedRefs"),
            ("False", "BackendNotFound")
        );
        assert_eq!(
            web["conditions"][0]["observedGeneration"], 4,
            "the route's generation"
        );
        let wrong = parents("wrong-section");
        assert_eq!(
            cond(&wrong["conditions"], "Accepted"),
            ("False", "NoMatchingParent")
        );
    }

    /// Exactly the writer's JSON, less `lastTransitionTime`: one computation.
    #[test]
    fn the_status_is_the_status_writers() {
        let (s, o) = setup();
        let e = explain_gateway(&s, &o, &Key::new("default", "gw"), DEFAULT_CONTROLLER_NAME);
        let r = ObjectRef::new(ObjectKind::Gateway, "default", "gw");
        let mut written = gateway_json(&s.gateway_status.gateways[&r], "2026-01-01T00:00:00Z");
        for c in written["conditions"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("lastTransitionTime");
        }
        for l in written["listeners"].as_array_mut().unwrap() {
            for c in l["conditions"].as_array_mut().unwrap() {
                c.as_object_mut().unwrap().remove("lastTransitionTime");
            }
        }
        assert_eq!(e.status, Some(written));
    }

    /// deploy/docs/gateway-api.md's first example, as printed there, with its Secret and a
    /// Service behind it: every condition the daemon writes is `True` (`Conflicted` is
    /// `False`), and a request over HTTP and over HTTPS reaches the Service.
    #[test]
    fn docs_example_is_served() {
        let doc = include_str!("../../../deploy/docs/gateway-api.md");
        let (_, after) = doc
            .split_once("<!-- tested: first-gateway -->\n```yaml\n")
            .expect("the tested example in gateway-api.md");
        let (example, _) = after.split_once("```").unwrap();
        let backend = r#"
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints: [{addresses: ["10.0.0.5"], conditions: {ready: true}}]
"#;
        let mut all = crate::source::files::parse_manifests(&format!("{example}{backend}"))
            .expect("the example parses");
        let (crt, key) = crate::model::translate::fixtures::mk_cert_pem(&["shop.example"]);
        all.push(crate::store::Object::Secret(
            crate::model::translate::fixtures::mk_tls_secret("shop", "shop-tls", &crt, &key).into(),
        ));
        let objects = Objects::from_objects(all);
        let s = translate(&objects, &TranslateConfig::default());
        let e = explain_gateway(
            &s,
            &objects,
            &Key::new("shop", "shop"),
            DEFAULT_CONTROLLER_NAME,
        );
        assert!(e.served, "{e:?}");
        let v = serde_json::to_value(&e).unwrap();
        let mut conditions = Vec::new();
        let mut collect = |c: &Value| conditions.extend(c.as_array().unwrap().iter().cloned());
        collect(&v["gateway_class"]["status"]["conditions"]);
        collect(&v["status"]["conditions"]);
        for l in v["status"]["listeners"].as_array().unwrap() {
            collect(&l["conditions"]);
        }
        for r in v["routes"].as_array().unwrap() {
            for p in r["status"]["parents"].as_array().unwrap() {
                collect(&p["conditions"]);
            }
        }
        assert!(conditions.len() > 10, "{v:#}");
        for c in &conditions {
            let want = if c["type"] == "Conflicted" {
                "False"
            } else {
                "True"
            };
            assert_eq!(c["status"], want, "{c}");
        }
        for https in [false, true] {
            let r = crate::cli::explain::explain(
                &s,
                &crate::cli::explain::Query {
                    host: "shop.example".into(),
                    path: "/cart".into(),
                    https,
                    ..Default::default()
                },
            );
            assert_eq!(r.outcome, crate::cli::explain::Outcome::Route, "{r:?}");
            assert_eq!(r.backends[0].endpoints.len(), 1, "{r:?}");
        }
    }

    /// A Gateway that is not ours says why, with the diagnostic the daemon logs.
    #[test]
    fn a_gateway_not_ours_says_why() {
        let v = explain("typo");
        assert_eq!(v["served"], false);
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains("names no GatewayClass"),
            "{v:#}"
        );
        assert!(v.get("status").is_none());
        assert!(
            (v["diagnostics"].as_array().unwrap().iter())
                .any(|d| d["reason"] == "GatewayClassNotFound"),
            "{v:#}"
        );
        let v = explain("theirs");
        assert!(
            v["reason"].as_str().unwrap().contains("example.com/other"),
            "{v:#}"
        );
        assert_eq!(v["gateway_class"]["status"], Value::Null);
        assert!(
            (v["diagnostics"].as_array().unwrap().iter())
                .any(|d| d["reason"] == "NotOurController" && d["severity"] == "Info"),
            "{v:#}"
        );
        let v = explain("absent");
        assert!(
            v["reason"].as_str().unwrap().starts_with("no Gateway"),
            "{v:#}"
        );
    }
}
