//! What the Gateway API translation tests share: one base of objects (our GatewayClass `xdp`,
//! another controller's `other`, the Services and EndpointSlices the tests' routes name, a
//! labelled Namespace), the snapshot of that base plus a test's YAML, condition lookup, and a
//! Gateway builder.

use super::super::{TranslateConfig, translate};
use crate::{
    model::{Snapshot, StatusCondition},
    source::files::parse_manifests,
    store::{Object, Objects},
};

/// Objects every test starts from. A test's own YAML comes after, so it may redefine one.
pub(super) const BASE: &str = r#"
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
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: infra}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: team, labels: {listeners: "yes"}}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: app}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: app, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints: [{addresses: ["10.0.0.1"], conditions: {ready: true}}]
---
apiVersion: v1
kind: Service
metadata: {name: db2, namespace: app}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db2-1, namespace: app, labels: {kubernetes.io/service-name: db2}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: ["10.0.1.1"], conditions: {ready: true}}
- {addresses: ["10.0.1.2"], conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: app}
spec: {ports: [{name: dns, port: 53, protocol: UDP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: app, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}]
endpoints: [{addresses: ["10.0.2.1"], conditions: {ready: true}}]
"#;

/// The snapshot of [`BASE`] and `yaml` (manifests, `---`-separated).
pub(super) fn snapshot(yaml: &str) -> Snapshot {
    snapshot_with(yaml, Vec::new())
}

/// [`snapshot`] with objects YAML cannot carry as easily (Secrets built in the test).
pub(super) fn snapshot_with(yaml: &str, extra: Vec<Object>) -> Snapshot {
    let mut objects = parse_manifests(&format!("{BASE}---\n{yaml}")).expect("manifests parse");
    objects.extend(extra);
    translate(&Objects::from_objects(objects), &TranslateConfig::default())
}

/// `(status, reason)` of the condition of type `t`; panics when there is none.
pub(super) fn cond<'a>(list: &'a [StatusCondition], t: &str) -> (bool, &'a str) {
    let c = list
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} in {list:?}"));
    (c.status, c.reason.as_str())
}

/// A Gateway of class `xdp` as a YAML document: `metadata` as a flow mapping (`{name: gw,
/// namespace: app}`), `spec` as the lines after `gatewayClassName` (two-space indented,
/// `listeners` among them).
pub(super) fn gateway_yaml(metadata: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {metadata}\nspec:\n  gatewayClassName: xdp\n{spec}"
    )
}
