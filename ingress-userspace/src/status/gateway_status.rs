//! Status of Gateway API objects (Gateway API v1 `GatewayClassStatus`, `GatewayStatus`,
//! `RouteParentStatus`), as translation computed it ([`GatewayApiStatus`]). Only writes what
//! differs from what this leader last wrote; `lastTransitionTime` is the time of that write.
//! A route's (HTTPRoute, GRPCRoute, TCPRoute, UDPRoute, TLSRoute, each through its own API)
//! `status.parents` entries of other controllers are kept; when a route this leader wrote
//! stops naming a Gateway of ours, its entries of ours are removed. A BackendTLSPolicy's
//! `status.ancestors` likewise. A ListenerSet's status (GEP-1713) is all ours: its parent
//! Gateway is.
//!
//! Objects that stop being ours do not keep what we wrote:
//! - A Gateway or ListenerSet that leaves (moved to another class; its class or parent gone)
//!   gets back, for each condition we wrote that is still as we wrote it, what the CRD shows
//!   before any controller (`Unknown`, `Pending`); our listeners, addresses and
//!   `attachedListenerSets` go. What another controller wrote since stays: a read-modify-write
//!   under the object's resourceVersion, as the spec asks of condition writers.
//! - A new leader term does not know what earlier leaders wrote: it lists each route kind and
//!   BackendTLSPolicies once (within `--namespace` when given), and removes our entries from
//!   those that are not ours any more.

use std::collections::BTreeMap;

use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway,
    grpcroutes::GrpcRoute, httproutes::HttpRoute, listenersets::ListenerSet,
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::model::{
    GatewayApiStatus, GatewayStatusOut, ListenerSetStatusOut, ListenerStatus, ObjectKind,
    ObjectRef, RouteParentStatus, StatusCondition,
};
use crate::source::served_versions::ServedVersions;

pub struct GatewayStatusWriter {
    client: kube::Client,
    controller_name: String,
    /// The status last written, without times (`Null`: entries of ours an earlier leader
    /// wrote, found by [`Self::sweep`]).
    written: BTreeMap<ObjectRef, Value>,
    /// Whether this term's [`Self::sweep`] is done.
    swept: bool,
    /// `--namespace`: the sweep looks no further (`None`: every namespace).
    namespace: Option<String>,
    /// The version the API source watches TCPRoute and UDPRoute at: their status is written
    /// through it.
    served_versions: ServedVersions,
}

/// A GatewayClass's status: its `conditions` stamped `now` (RFC 3339), and the features
/// this implementation supports (`supportedFeatures`, [`SUPPORTED_FEATURES`], sorted as the
/// spec requires).
///
/// [`SUPPORTED_FEATURES`]: crate::model::translate::gateway::features::SUPPORTED_FEATURES
pub fn gateway_class_json(conditions: &[StatusCondition], now: &str) -> Value {
    let features = crate::model::translate::gateway::features::SUPPORTED_FEATURES;
    json!({
        "conditions": conditions_json(conditions, now),
        "supportedFeatures": features.iter().map(|f| json!({"name": f})).collect::<Vec<_>>(),
    })
}

/// `conditions` as the API wants them, stamped `now` (RFC 3339).
pub fn conditions_json(conditions: &[StatusCondition], now: &str) -> Value {
    Value::Array(
        conditions
            .iter()
            .map(|c| {
                json!({
                    "type": c.type_,
                    "status": if c.status { "True" } else { "False" },
                    "reason": c.reason,
                    "message": c.message,
                    "observedGeneration": c.observed_generation,
                    "lastTransitionTime": now,
                })
            })
            .collect(),
    )
}

/// `status` of a Gateway.
pub fn gateway_json(s: &GatewayStatusOut, now: &str) -> Value {
    let addresses: Vec<Value> = s
        .addresses
        .iter()
        .map(|a| {
            let ty = if a.parse::<std::net::IpAddr>().is_ok() {
                "IPAddress"
            } else {
                "Hostname"
            };
            json!({"type": ty, "value": a})
        })
        .collect();
    json!({
        "addresses": addresses,
        "conditions": conditions_json(&s.conditions, now),
        "listeners": listeners_json(&s.listeners, now),
        "attachedListenerSets": s.attached_listener_sets,
    })
}

/// `status.listeners` of a Gateway or ListenerSet (`ListenerStatus`, `ListenerEntryStatus`).
fn listeners_json(listeners: &[ListenerStatus], now: &str) -> Vec<Value> {
    listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "supportedKinds": l.supported_kinds.iter()
                    .map(|(g, k)| json!({"group": g, "kind": k})).collect::<Vec<_>>(),
                "attachedRoutes": l.attached_routes,
                "conditions": conditions_json(&l.conditions, now),
            })
        })
        .collect()
}

/// `status` of a ListenerSet.
pub fn listener_set_json(s: &ListenerSetStatusOut, now: &str) -> Value {
    json!({
        "conditions": conditions_json(&s.conditions, now),
        "listeners": listeners_json(&s.listeners, now),
    })
}

/// `status.parents` entries of ours.
pub fn route_parents_json(
    parents: &[RouteParentStatus],
    controller: &str,
    now: &str,
) -> Vec<Value> {
    parents
        .iter()
        .map(|p| {
            let mut r = json!({
                "group": p.parent_ref.group,
                "kind": p.parent_ref.kind,
                "name": p.parent_ref.name,
            });
            if let Some(ns) = &p.parent_ref.namespace {
                r["namespace"] = json!(ns);
            }
            if let Some(s) = &p.parent_ref.section_name {
                r["sectionName"] = json!(s);
            }
            if let Some(port) = p.parent_ref.port {
                r["port"] = json!(port);
            }
            json!({
                "parentRef": r,
                "controllerName": controller,
                "conditions": conditions_json(&p.conditions, now),
            })
        })
        .collect()
}

impl GatewayStatusWriter {
    /// `namespace`: the one the sources are limited to (`--namespace`), if any.
    pub fn new(
        client: kube::Client,
        controller_name: String,
        namespace: Option<String>,
    ) -> GatewayStatusWriter {
        GatewayStatusWriter {
            client,
            controller_name,
            written: BTreeMap::new(),
            swept: false,
            namespace,
            served_versions: ServedVersions::default(),
        }
    }

    /// Writes TCPRoute and UDPRoute status through the version `versions` says the source
    /// watches (default: `v1`).
    pub fn with_served_versions(mut self, versions: ServedVersions) -> GatewayStatusWriter {
        self.served_versions = versions;
        self
    }

    /// The API resource of a Gateway API kind whose status this writer touches: a kind served
    /// at several versions (TCPRoute, UDPRoute, TLSRoute) at the one the API source watches,
    /// the others at the crate's.
    fn resource(&self, kind: ObjectKind) -> ApiResource {
        if let Some(served) = self.served_versions.api_resource(kind) {
            return served;
        }
        match kind {
            ObjectKind::GRPCRoute => ApiResource::erase::<GrpcRoute>(&()),
            ObjectKind::BackendTLSPolicy => ApiResource::erase::<BackendTlsPolicy>(&()),
            ObjectKind::Gateway => ApiResource::erase::<Gateway>(&()),
            ObjectKind::ListenerSet => ApiResource::erase::<ListenerSet>(&()),
            ObjectKind::GatewayClass => ApiResource::erase::<GatewayClass>(&()),
            _ => ApiResource::erase::<HttpRoute>(&()),
        }
    }

    pub fn forget(&mut self) {
        self.written.clear();
        self.swept = false;
    }

    pub async fn sync(&mut self, status: &GatewayApiStatus) {
        if !self.swept {
            self.swept = self.sweep(status).await;
        }
        // Compared without times: an unchanged status is not written again.
        for (r, conds) in &status.classes {
            let want = gateway_class_json(conds, "");
            if self.written.get(r) == Some(&want) {
                continue;
            }
            let body = json!({"status": gateway_class_json(conds, &now())});
            let api: Api<GatewayClass> = Api::all(self.client.clone());
            if patch(&api, r, &body).await {
                self.written.insert(r.clone(), want);
            }
        }
        for (r, s) in &status.gateways {
            let want = gateway_json(s, "");
            if self.written.get(r) == Some(&want) {
                continue;
            }
            let body = json!({"status": gateway_json(s, &now())});
            let api: Api<Gateway> = Api::namespaced(self.client.clone(), &r.namespace);
            if patch(&api, r, &body).await {
                self.written.insert(r.clone(), want);
            }
        }
        for (r, s) in &status.listener_sets {
            let want = listener_set_json(s, "");
            if self.written.get(r) == Some(&want) {
                continue;
            }
            let body = json!({"status": listener_set_json(s, &now())});
            let api: Api<ListenerSet> = Api::namespaced(self.client.clone(), &r.namespace);
            if patch(&api, r, &body).await {
                self.written.insert(r.clone(), want);
            }
        }
        // Gateways and ListenerSets we wrote that are not ours any more.
        let left: Vec<ObjectRef> = (self.written.keys())
            .filter(|r| {
                (r.kind == ObjectKind::Gateway && !status.gateways.contains_key(r))
                    || (r.kind == ObjectKind::ListenerSet && !status.listener_sets.contains_key(r))
            })
            .cloned()
            .collect();
        for r in left {
            if self.release(&r).await {
                self.written.remove(&r);
            }
        }
        // Routes and policies we wrote that are gone from the status (deleted, or no longer
        // naming a parent of ours): our entries go (other controllers' stay).
        let gone: Vec<ObjectRef> = self
            .written
            .keys()
            .filter(|r| {
                (is_route(r.kind) && !status.routes.contains_key(r))
                    || (r.kind == ObjectKind::BackendTLSPolicy && !status.policies.contains_key(r))
            })
            .cloned()
            .collect();
        for r in gone {
            let done = if r.kind == ObjectKind::BackendTLSPolicy {
                self.write_ancestors(&r, &[]).await
            } else {
                self.write_route(&r, &[]).await
            };
            if done {
                self.written.remove(&r);
            }
        }
        for (r, ancestors) in &status.policies {
            let want = Value::Array(route_parents_json(ancestors, &self.controller_name, ""));
            if self.written.get(r) == Some(&want) {
                continue;
            }
            if self.write_ancestors(r, ancestors).await {
                self.written.insert(r.clone(), want);
            }
        }
        for (r, parents) in &status.routes {
            let want = Value::Array(route_parents_json(parents, &self.controller_name, ""));
            if self.written.get(r) == Some(&want) {
                continue;
            }
            if self.write_route(r, parents).await {
                self.written.insert(r.clone(), want);
            }
        }
    }

    /// Finds the routes and BackendTLSPolicies with entries of ours (`controllerName`) that
    /// are not in `status` (they stopped naming a parent of ours while no leader ran) and
    /// marks them written, so that [`Self::sync`] removes those entries. One list per kind; a
    /// kind the API server does not serve is skipped. True when every kind was listed.
    async fn sweep(&mut self, status: &GatewayApiStatus) -> bool {
        let kinds = [
            (ObjectKind::HTTPRoute, "parents"),
            (ObjectKind::GRPCRoute, "parents"),
            (ObjectKind::TCPRoute, "parents"),
            (ObjectKind::UDPRoute, "parents"),
            (ObjectKind::TLSRoute, "parents"),
            (ObjectKind::BackendTLSPolicy, "ancestors"),
        ];
        let mut done = true;
        for (kind, field) in kinds {
            let api: Api<DynamicObject> = match &self.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.resource(kind)),
                None => Api::all_with(self.client.clone(), &self.resource(kind)),
            };
            let list = match api.list(&ListParams::default()).await {
                Ok(l) => l,
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => continue,
                Err(e) => {
                    warn!(?kind, error = %e, "listing for status of ours failed; will retry");
                    done = false;
                    continue;
                }
            };
            for o in list {
                let entries = o.data["status"][field]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !(entries.iter()).any(|p| p["controllerName"] == self.controller_name.as_str()) {
                    continue;
                }
                let r = ObjectRef::new(
                    kind,
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                );
                if !status.routes.contains_key(&r) && !status.policies.contains_key(&r) {
                    self.written.entry(r).or_insert(Value::Null);
                }
            }
        }
        done
    }

    /// Gives up Gateway or ListenerSet `r`, no longer ours: each condition of its status that
    /// is still as we last wrote it becomes what the CRD shows before any controller
    /// (`Unknown`, `Pending`); listeners and addresses still as we wrote them go, and so does
    /// `attachedListenerSets`. Another controller's writes stay. Read and written under the
    /// object's resourceVersion (a conflict is retried on the next sync). True when done (or
    /// the object no longer exists).
    async fn release(&self, r: &ObjectRef) -> bool {
        let ours = self.written.get(r).cloned().unwrap_or(Value::Null);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &r.namespace, &self.resource(r.kind));
        let o = match api.get_status(&r.name).await {
            Ok(o) => o,
            Err(kube::Error::Api(e)) if e.code == 404 => return true,
            Err(e) => {
                warn!(object = %r, error = %e, "reading status to give up failed; will retry");
                return false;
            }
        };
        let now = &o.data["status"];
        let mine = |field: &str, item: &Value| {
            (ours[field].as_array()).is_some_and(|a| a.contains(&without_times(item)))
        };
        let list = |field: &str| now[field].as_array().cloned().unwrap_or_default();
        let conditions: Vec<Value> = (list("conditions").into_iter())
            .map(|c| match c["type"].as_str().map(str::to_string) {
                Some(t) if mine("conditions", &c) => pending(&t),
                _ => c,
            })
            .collect();
        let listeners: Vec<Value> = (list("listeners").into_iter())
            .filter(|l| !mine("listeners", l))
            .collect();
        let mut st = json!({"conditions": conditions, "listeners": listeners});
        if r.kind == ObjectKind::Gateway {
            let addresses: Vec<Value> = (list("addresses").into_iter())
                .filter(|a| !mine("addresses", a))
                .collect();
            st["addresses"] = json!(addresses);
            if now.get("attachedListenerSets").is_some()
                && now["attachedListenerSets"] == ours["attachedListenerSets"]
            {
                st["attachedListenerSets"] = Value::Null; // A merge patch's removal.
            }
        }
        let body = json!({
            "metadata": {"resourceVersion": o.metadata.resource_version},
            "status": st,
        });
        patch(&api, r, &body).await
    }

    /// Writes our `parents` entries of route `r` (none: removes ours), keeping other
    /// controllers'. True when done (or the route no longer exists).
    async fn write_route(&self, r: &ObjectRef, parents: &[RouteParentStatus]) -> bool {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &r.namespace, &self.resource(r.kind));
        // Other controllers' entries stay: read them, then write theirs and ours under the
        // resourceVersion read (the spec's read-modify-write; a conflict is retried).
        let (others, version): (Vec<Value>, _) = match api.get_status(&r.name).await {
            Ok(o) => (
                o.data
                    .pointer("/status/parents")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| {
                        p.get("controllerName").and_then(Value::as_str)
                            != Some(self.controller_name.as_str())
                    })
                    .collect(),
                o.metadata.resource_version,
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => return true,
            Err(e) => {
                warn!(route = %r, error = %e, "reading route status failed; will retry");
                return false;
            }
        };
        let mut all = others;
        all.extend(route_parents_json(parents, &self.controller_name, &now()));
        let body = json!({"metadata": {"resourceVersion": version}, "status": {"parents": all}});
        patch(&api, r, &body).await
    }

    /// Writes our `status.ancestors` entries of BackendTLSPolicy `r`, keeping other
    /// controllers' (`PolicyAncestorStatus`: the `parentRef` shape, named `ancestorRef`).
    async fn write_ancestors(&self, r: &ObjectRef, ancestors: &[RouteParentStatus]) -> bool {
        let api: Api<BackendTlsPolicy> = Api::namespaced(self.client.clone(), &r.namespace);
        let (others, version): (Vec<Value>, _) = match api.get_status(&r.name).await {
            Ok(o) => (
                serde_json::to_value(&o)
                    .ok()
                    .and_then(|mut v| v["status"]["ancestors"].as_array_mut().map(std::mem::take))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p["controllerName"].as_str() != Some(&self.controller_name))
                    .collect(),
                o.metadata.resource_version,
            ),
            Err(kube::Error::Api(e)) if e.code == 404 => return true,
            Err(e) => {
                warn!(policy = %r, error = %e, "reading BackendTLSPolicy status failed; will retry");
                return false;
            }
        };
        let mut all = others;
        for mut a in route_parents_json(ancestors, &self.controller_name, &now()) {
            if let Some(r) = a.as_object_mut().and_then(|o| o.remove("parentRef")) {
                a["ancestorRef"] = r;
            }
            all.push(a);
        }
        let body = json!({"metadata": {"resourceVersion": version}, "status": {"ancestors": all}});
        patch(&api, r, &body).await
    }
}

/// A condition as the Gateway and ListenerSet CRDs default it, before any controller writes.
fn pending(type_: &str) -> Value {
    json!({
        "type": type_,
        "status": "Unknown",
        "reason": "Pending",
        "message": "Waiting for controller",
        "lastTransitionTime": "1970-01-01T00:00:00Z",
    })
}

/// `v` with every `lastTransitionTime` blank, as [`GatewayStatusWriter::written`] keeps it.
fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| match k.as_str() {
                    "lastTransitionTime" => (k.clone(), json!("")),
                    _ => (k.clone(), without_times(x)),
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        _ => v.clone(),
    }
}

/// Kinds whose `status.parents` this writer keeps.
fn is_route(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::HTTPRoute
            | ObjectKind::GRPCRoute
            | ObjectKind::TCPRoute
            | ObjectKind::UDPRoute
            | ObjectKind::TLSRoute
    )
}

fn now() -> String {
    // RFC 3339 with whole seconds, as metav1.Time serialises.
    format!("{:.0}", k8s_openapi::jiff::Timestamp::now())
}

/// True when done (or the object no longer exists).
async fn patch<K>(api: &Api<K>, r: &ObjectRef, body: &Value) -> bool
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    debug_assert!(
        matches!(
            r.kind,
            ObjectKind::GatewayClass
                | ObjectKind::Gateway
                | ObjectKind::BackendTLSPolicy
                | ObjectKind::ListenerSet
        ) || is_route(r.kind)
    );
    match api
        .patch_status(&r.name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(_) => {
            debug!(object = %r, "status written");
            true
        }
        Err(kube::Error::Api(e)) if e.code == 404 => true,
        Err(e) => {
            warn!(object = %r, error = %e, "writing status failed; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GatewayClass status written carries `supportedFeatures` as the API wants it
    /// (`[{name}]`, ascending) beside the conditions (GatewayClassStatus).
    #[test]
    fn gateway_class_status_names_the_supported_features() {
        let c = StatusCondition::new("Accepted", true, "Accepted", "ok", 1);
        let v = gateway_class_json(&[c], "2026-01-01T00:00:00Z");
        assert_eq!(v["conditions"][0]["type"], "Accepted");
        let names: Vec<&str> = (v["supportedFeatures"].as_array().unwrap().iter())
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"HTTPRoute") && names.contains(&"Gateway"));
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert!(!names.contains(&"HTTPRouteBackendURLRewrite"));
    }
}
