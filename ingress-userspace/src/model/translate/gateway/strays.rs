//! Gateway API objects that name something that is not there, which the spec gives no
//! status for (no controller owns them): a Gateway whose `gatewayClassName` names no
//! GatewayClass, a route whose parentRef names a Gateway (or ListenerSet) that does not
//! exist. ingress-nginx users expect to hear of a typo: each is a diagnostic (logged once
//! while it lasts, an Event on the object, shown by `explain`). A GatewayClass of another
//! controller is correctly ignored; it is noted once at info level, so a mistyped
//! `controllerName` is not silent either.

use super::{GROUP, attachment::parent_refs};
use crate::{
    model::{ObjectKind, ObjectRef, ParentRef, translate::diagnostics::Diagnostics},
    store::{Key, Objects},
};

/// Reports the strays of `objects` into `diags`; `controller_name` is ours.
pub fn report(objects: &Objects, controller_name: &str, diags: &mut Diagnostics) {
    for (key, gc) in &objects.gateway_classes {
        if gc.spec.controller_name != controller_name {
            diags.info(
                &ObjectRef::new(ObjectKind::GatewayClass, "", key.name.clone()),
                "NotOurController",
                format!(
                    "controllerName {:?} is not ours ({controller_name:?}): this GatewayClass \
                     and its Gateways are left to that controller",
                    gc.spec.controller_name
                ),
            );
        }
    }
    for (key, gw) in &objects.gateways {
        let class = &gw.spec.gateway_class_name;
        if !objects
            .gateway_classes
            .contains_key(&Key::new("", class.clone()))
        {
            diags.warn(
                &ObjectRef::new(ObjectKind::Gateway, key.namespace.clone(), key.name.clone()),
                "GatewayClassNotFound",
                format!(
                    "gatewayClassName {class:?} names no GatewayClass: no controller serves \
                     this Gateway (and none writes its status)"
                ),
            );
        }
    }
    for (route, refs) in route_parent_refs(objects) {
        for p in refs.iter().filter(|p| p.group == GROUP) {
            let target = Key::new(
                p.namespace.as_deref().unwrap_or(&route.namespace),
                p.name.clone(),
            );
            let exists = match p.kind.as_str() {
                "Gateway" => objects.gateways.contains_key(&target),
                "ListenerSet" => objects.listener_sets.contains_key(&target),
                _ => true, // Not a parent kind we know: not ours to judge.
            };
            if !exists {
                diags.warn(
                    &route,
                    "ParentNotFound",
                    format!(
                        "parentRef {} {}/{} does not exist: the route is not attached there",
                        p.kind, target.namespace, target.name
                    ),
                );
            }
        }
    }
}

/// Every route of every kind (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute) with its
/// `spec.parentRefs` (group and kind defaulted).
pub fn route_parent_refs(objects: &Objects) -> Vec<(ObjectRef, Vec<ParentRef>)> {
    let r = |kind: ObjectKind, k: &Key| ObjectRef::new(kind, k.namespace.clone(), k.name.clone());
    let mut out = Vec::new();
    for (k, x) in &objects.http_routes {
        out.push((
            r(ObjectKind::HTTPRoute, k),
            parent_refs!(x.spec.parent_refs),
        ));
    }
    for (k, x) in &objects.grpc_routes {
        out.push((
            r(ObjectKind::GRPCRoute, k),
            parent_refs!(x.spec.parent_refs),
        ));
    }
    for (k, x) in &objects.tls_routes {
        out.push((r(ObjectKind::TLSRoute, k), parent_refs!(x.spec.parent_refs)));
    }
    for (k, x) in &objects.tcp_routes {
        out.push((r(ObjectKind::TCPRoute, k), parent_refs!(x.spec.parent_refs)));
    }
    for (k, x) in &objects.udp_routes {
        out.push((r(ObjectKind::UDPRoute, k), parent_refs!(x.spec.parent_refs)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::snapshot;
    use crate::model::{Severity, Snapshot};

    fn reported(s: &Snapshot) -> Vec<(String, &str, Severity)> {
        (s.diagnostics.iter())
            .filter(|d| {
                ["NotOurController", "GatewayClassNotFound", "ParentNotFound"]
                    .contains(&d.reason.as_str())
            })
            .map(|d| (d.object.to_string(), d.reason.as_str(), d.severity))
            .collect()
    }

    /// Typos the spec gives no status for: a Gateway whose class does not exist, a route of
    /// each kind whose parentRef names no Gateway (or ListenerSet) are reported on the object
    /// (Warning: an Event and a log line); another controller's class is noted (Info); a
    /// route on another controller's existing Gateway and one on ours are not.
    #[test]
    fn a_missing_class_a_foreign_class_and_a_missing_parent_are_reported() {
        let s = snapshot(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: typo, namespace: app}
spec:
  gatewayClassName: xpd
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: app}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: app}
spec:
  parentRefs: [{name: gw}, {name: theirs}, {name: set, kind: ListenerSet}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: lost-grpc, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: lost-tcp, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {name: lost-udp, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: dns, port: 53}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: lost-tls, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.test]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fine, namespace: app}
spec:
  parentRefs: [{name: theirs}]
"#,
        );
        let r = reported(&s);
        let has = |o: &str, reason: &str, sev: Severity| {
            assert!(
                r.iter()
                    .any(|(ob, re, se)| ob.ends_with(o) && *re == reason && *se == sev),
                "{o} {reason} {sev:?} in {r:#?}"
            )
        };
        has("GatewayClass other", "NotOurController", Severity::Info);
        has("app/typo", "GatewayClassNotFound", Severity::Warning);
        for route in ["lost", "lost-grpc", "lost-tcp", "lost-udp", "lost-tls"] {
            has(&format!("app/{route}"), "ParentNotFound", Severity::Warning);
        }
        // One per missing parent: `gw` and the ListenerSet `set`, not `theirs`.
        let lost = (r.iter()).filter(|(o, ..)| o.ends_with("app/lost")).count();
        assert_eq!(lost, 2, "{r:#?}");
        assert!(!r.iter().any(|(o, ..)| o.ends_with("app/fine")), "{r:#?}");
        assert!(!r.iter().any(|(o, ..)| o.ends_with("app/theirs")), "{r:#?}");
        let msg = (s.diagnostics.iter())
            .find(|d| d.object.name == "lost-grpc")
            .map(|d| d.message.clone());
        assert!(msg.unwrap().contains("Gateway infra/gw"));
    }
}
