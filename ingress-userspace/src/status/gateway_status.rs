//! Status of Gateway API objects (Gateway API v1 `GatewayClassStatus`, `GatewayStatus`,
//! `RouteParentStatus`), as translation computed it ([`GatewayApiStatus`]). Only writes what
//! differs from what this leader last wrote; `lastTransitionTime` is the time of that write.
//! A route's (HTTPRoute, GRPCRoute, TCPRoute, UDPRoute, TLSRoute, each through its own API)
//! `status.parents` entries of other controllers are kept; when a route this leader wrote
//! stops naming a Gateway of ours, its entries of ours are removed. A BackendTLSPolicy's
//! `status.ancestors` likewise. A ListenerSet's status (GEP-1713) is all ours: its parent
//! Gateway is.

use std::collections::BTreeMap;

use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway,
    grpcroutes::GrpcRoute, httproutes::HttpRoute, listenersets::ListenerSet,
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::model::{
    GatewayApiStatus, GatewayStatusOut, ListenerSetStatusOut, ListenerStatus, ObjectKind,
    ObjectRef, RouteParentStatus, StatusCondition,
};
use crate::source::route_versions::RouteVersions;

pub struct GatewayStatusWriter {
    client: kube::Client,
    controller_name: String,
    /// The status last written, without times.
    written: BTreeMap<ObjectRef, Value>,
    /// The version the API source watches TCPRoute and UDPRoute at: their status is written
    /// through it.
    route_versions: RouteVersions,
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
    pub fn new(client: kube::Client, controller_name: String) -> GatewayStatusWriter {
        GatewayStatusWriter {
            client,
            controller_name,
            written: BTreeMap::new(),
            route_versions: RouteVersions::default(),
        }
    }

    /// Writes TCPRoute and UDPRoute status through the version `versions` says the source
    /// watches (default: `v1`).
    pub fn with_route_versions(mut self, versions: RouteVersions) -> GatewayStatusWriter {
        self.route_versions = versions;
        self
    }

    pub fn forget(&mut self) {
        self.written.clear();
    }

    pub async fn sync(&mut self, status: &GatewayApiStatus) {
        // Compared without times: an unchanged status is not written again.
        for (r, conds) in &status.classes {
            let want = json!({"conditions": conditions_json(conds, "")});
            if self.written.get(r) == Some(&want) {
                continue;
            }
            let now = now();
            let body = json!({"status": {"conditions": conditions_json(conds, &now)}});
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

    /// Writes our `parents` entries of route `r` (none: removes ours), keeping other
    /// controllers'. True when done (or the route no longer exists).
    async fn write_route(&self, r: &ObjectRef, parents: &[RouteParentStatus]) -> bool {
        let resource = match r.kind {
            ObjectKind::TCPRoute | ObjectKind::UDPRoute => {
                match self.route_versions.api_resource(r.kind) {
                    Some(resource) => resource,
                    None => return true,
                }
            }
            ObjectKind::TLSRoute => ApiResource::erase::<crate::store::TlsRoute>(&()),
            ObjectKind::GRPCRoute => ApiResource::erase::<GrpcRoute>(&()),
            _ => ApiResource::erase::<HttpRoute>(&()),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &r.namespace, &resource);
        // Other controllers' entries stay: read them, then write theirs and ours.
        let others: Vec<Value> = match api.get_status(&r.name).await {
            Ok(o) => o
                .data
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
            Err(kube::Error::Api(e)) if e.code == 404 => return true,
            Err(e) => {
                warn!(route = %r, error = %e, "reading route status failed; will retry");
                return false;
            }
        };
        let mut all = others;
        all.extend(route_parents_json(parents, &self.controller_name, &now()));
        let body = json!({"status": {"parents": all}});
        patch(&api, r, &body).await
    }

    /// Writes our `status.ancestors` entries of BackendTLSPolicy `r`, keeping other
    /// controllers' (`PolicyAncestorStatus`: the `parentRef` shape, named `ancestorRef`).
    async fn write_ancestors(&self, r: &ObjectRef, ancestors: &[RouteParentStatus]) -> bool {
        let api: Api<BackendTlsPolicy> = Api::namespaced(self.client.clone(), &r.namespace);
        let others: Vec<Value> = match api.get_status(&r.name).await {
            Ok(o) => serde_json::to_value(o)
                .ok()
                .and_then(|mut v| v["status"]["ancestors"].as_array_mut().map(std::mem::take))
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p["controllerName"].as_str() != Some(&self.controller_name))
                .collect(),
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
        let body = json!({"status": {"ancestors": all}});
        patch(&api, r, &body).await
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
