//! What the Gateway API adds to a snapshot: HTTPRoute filters and backend shares on a route
//! ([`GatewayRoutePolicy`]), and the status translation computed for GatewayClasses, Gateways
//! and HTTPRoutes ([`GatewayApiStatus`]), which the leader writes.
//!
//! Source of every behaviour: the Gateway API v1 reference (gateway.networking.k8s.io/v1,
//! `HTTPRouteFilter`, `HTTPRequestRedirectFilter`, `HTTPURLRewriteFilter`, `HTTPPathModifier`,
//! `HTTPHeaderFilter`, `HTTPBackendRef`).

use std::collections::BTreeMap;

use crate::object::ObjectRef;

/// The filters and backend shares of one HTTPRoute rule. Every field defaults to "nothing".
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GatewayRoutePolicy {
    /// `RequestHeaderModifier`: applied to the request sent to the backend.
    pub request_headers: HeaderModifier,
    /// `ResponseHeaderModifier`: applied to the backend's response.
    pub response_headers: HeaderModifier,
    /// `RequestRedirect`: answered by the proxy instead of forwarding.
    pub redirect: Option<GatewayRedirect>,
    /// `URLRewrite`: the path and Host the backend sees.
    pub rewrite: Option<GatewayRewrite>,
    /// Summed weight of the rule's backendRefs that do not resolve (missing Service, a kind
    /// other than Service, a cross-namespace reference no ReferenceGrant permits): that share
    /// of requests is answered 500, the rest is forwarded by the route's weights.
    pub invalid_weight: u32,
    /// `timeouts.request` (`HTTPRouteTimeouts`): how long the gateway may take to answer,
    /// counted from when the route is chosen, retries included; past it the client gets 504
    /// (spec: "MUST return a timeout error"). `None`: unset or `0s` (no deadline).
    pub request_timeout: Option<std::time::Duration>,
    /// `CORS` (HTTPCORSFilter): moved into the route's response policy, where the proxy's
    /// one CORS decision reads it.
    pub cors: Option<crate::model::Cors>,
    /// `RequestMirror` filters: a copy of each request (after the request header modifier)
    /// goes to each, fire-and-forget: its answer is dropped and it never delays the client.
    pub mirrors: Vec<RequestMirror>,
    /// The header modifiers of each forwarded backendRef's own filters (`HTTPBackendRef`
    /// `filters`), `(request, response)`, by position in the route's `Forward` upstreams:
    /// applied after the rule's when that backend is chosen, and only then. Empty when no
    /// backendRef has filters.
    pub backend_headers: Vec<(HeaderModifier, HeaderModifier)>,
}

/// `HTTPRequestMirrorFilter`: where copies go and which share of requests is copied.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RequestMirror {
    #[serde(serialize_with = "upstream_id")]
    pub upstream: std::sync::Arc<crate::model::Upstream>,
    /// `percent` or `fraction` as `numerator / denominator` (100 / 100 when neither is set).
    pub numerator: u32,
    pub denominator: u32,
}

/// `HTTPHeaderFilter`: header names as written (matched case-insensitively), in order:
/// `set` replaces, `add` appends, `remove` deletes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeaderModifier {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// `HTTPPathModifier`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PathModifier {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The part of the path the route's `PathPrefix` matched becomes this (element-wise:
    /// `/prefix` replaced by `/x` turns `/prefix/a` into `/x/a` and `/prefix` into `/x`).
    ReplacePrefixMatch(String),
}

fn upstream_id<S: serde::Serializer>(
    u: &std::sync::Arc<crate::model::Upstream>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&u.id)
}

/// `HTTPRequestRedirectFilter`: each `None` keeps the request's own part.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GatewayRedirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    /// Without it: the well-known port of a changed scheme, else the listener's port; 80 for
    /// `http` and 443 for `https` are left out of `Location`.
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    /// 301, 302 (the default), 303, 307 or 308 (`HTTPRequestRedirectFilter.statusCode`).
    pub status: u16,
}

/// `HTTPURLRewriteFilter`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GatewayRewrite {
    /// The `Host` sent to the backend.
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// One status condition (`metav1.Condition` without `lastTransitionTime`, which the writer
/// adds when it writes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatusCondition {
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub type_: String,
    pub status: bool,
    /// CamelCase reason from the Gateway API's constants (`Accepted`, `NotAllowedByListeners`...).
    pub reason: String,
    pub message: String,
    /// `metadata.generation` of the object the condition is about.
    pub observed_generation: i64,
}

impl StatusCondition {
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
    ) -> Self {
        StatusCondition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
        }
    }
}

/// `status.listeners[]` of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ListenerStatus {
    pub name: String,
    /// `(group, kind)` of the route kinds the listener takes.
    pub supported_kinds: Vec<(String, String)>,
    pub attached_routes: i32,
    pub conditions: Vec<StatusCondition>,
    /// The port the proxy opens for this listener (`None`: not served, or served on the
    /// proxy's own HTTP or HTTPS port): a failure to bind it is this listener's condition
    /// ([`GatewayApiStatus::with_unbound`]).
    #[serde(skip)]
    pub port: Option<u16>,
}

/// `status` of one Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GatewayStatusOut {
    /// The snapshot's status addresses (IPs or host names).
    pub addresses: Vec<String>,
    pub conditions: Vec<StatusCondition>,
    pub listeners: Vec<ListenerStatus>,
    /// `attachedListenerSets`: the ListenerSets attached with `Accepted: True` (GEP-1713).
    pub attached_listener_sets: i32,
}

/// `status` of one ListenerSet (GEP-1713): `Accepted`, `Programmed`, and its own listeners
/// (never its Gateway's).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListenerSetStatusOut {
    pub conditions: Vec<StatusCondition>,
    pub listeners: Vec<ListenerStatus>,
}

/// `parentRef` of a route's status entry, as the route wrote it (group and kind defaulted).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ParentRef {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

/// `status.parents[]` of one route, for the parents that are ours.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    pub conditions: Vec<StatusCondition>,
}

/// Every Gateway API status translation computed, by object. Objects that are not ours are
/// absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GatewayApiStatus {
    pub classes: BTreeMap<ObjectRef, Vec<StatusCondition>>,
    pub gateways: BTreeMap<ObjectRef, GatewayStatusOut>,
    /// ListenerSets whose parentRef names a Gateway of ours.
    pub listener_sets: BTreeMap<ObjectRef, ListenerSetStatusOut>,
    /// Every route kind: HTTPRoute, GRPCRoute, TCPRoute, UDPRoute, TLSRoute (the kind is the
    /// key's).
    pub routes: BTreeMap<ObjectRef, Vec<RouteParentStatus>>,
    /// BackendTLSPolicies: `status.ancestors`, one per Gateway whose routes use the policy
    /// (`parent_ref` is the `ancestorRef`).
    pub policies: BTreeMap<ObjectRef, Vec<RouteParentStatus>>,
}

impl GatewayApiStatus {
    /// This status with the proxy's bind failures (port -> error) written into the listeners
    /// that opened those ports: `Accepted: False, PortUnavailable` (the spec's reason for "the
    /// port is already in use") and `Programmed: False, Pending` (bound again when the port
    /// frees up), and their Gateways' conditions recomputed. The same status when nothing
    /// failed.
    pub fn with_unbound(&self, unbound: &BTreeMap<u16, String>) -> GatewayApiStatus {
        let mut out = self.clone();
        if unbound.is_empty() {
            return out;
        }
        for gw in out.gateways.values_mut() {
            if unbind(&mut gw.listeners, unbound) {
                let generation = gw
                    .conditions
                    .first()
                    .map(|c| c.observed_generation)
                    .unwrap_or(0);
                gw.conditions =
                    crate::model::translate::gateway::gateway_conditions(&gw.listeners, generation);
            }
        }
        // A ListenerSet's listeners open ports too; its own conditions summarise them.
        for ls in out.listener_sets.values_mut() {
            if unbind(&mut ls.listeners, unbound) {
                let generation = (ls.conditions.first()).map_or(0, |c| c.observed_generation);
                ls.conditions = crate::model::translate::gateway::listener_sets::conditions(
                    &crate::model::translate::gateway::listener_sets::Verdict::Attached,
                    &ls.listeners,
                    true,
                    generation,
                );
            }
        }
        out
    }
}

/// Writes the bind failures into the listeners that opened those ports; true when any did.
fn unbind(listeners: &mut [ListenerStatus], unbound: &BTreeMap<u16, String>) -> bool {
    let mut changed = false;
    for l in listeners {
        let Some((port, error)) = l.port.and_then(|p| unbound.get(&p).map(|e| (p, e))) else {
            continue;
        };
        for c in &mut l.conditions {
            let generation = c.observed_generation;
            match c.type_.as_str() {
                "Accepted" => {
                    *c = StatusCondition::new(
                        "Accepted",
                        false,
                        "PortUnavailable",
                        format!("port {port} cannot be bound: {error}"),
                        generation,
                    )
                }
                "Programmed" => {
                    *c = StatusCondition::new(
                        "Programmed",
                        false,
                        "Pending",
                        format!("waiting for port {port} to be bound"),
                        generation,
                    )
                }
                _ => {}
            }
        }
        changed = true;
    }
    changed
}
