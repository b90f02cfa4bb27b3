//! TCPRoute and UDPRoute (Gateway API v1.6: `v1`, standard channel; `v1alpha2` before) on
//! `TCP` and `UDP` listeners, served by the XDP path exactly as NodePorts are (Maglev,
//! conntrack, NAT): each served listener with a route becomes one [`L4Service`] whose
//! frontend is the listener's port on every node address ([`Frontend::NodePort`]), or, for a
//! Gateway with addresses ([`super::addresses`]), on each of them ([`Frontend::Address`]).
//!
//! What this implementation decides where the spec leaves it open (see
//! deploy/docs/gateway-api.md):
//! - One route serves a listener. TCP and UDP carry nothing (no hostname, no match) to choose
//!   between routes, so the oldest route attached (creationTimestamp, then namespace/name:
//!   the spec's order for conflicting routes) takes the listener's connections; a later one is
//!   still `Accepted` there and counted in `attachedRoutes`, but receives none (Gateway API
//!   v1.6 conformance, TCPRouteMultipleRoutesAttachment / UDPRouteMultipleRoutesAttachment),
//!   with a warning.
//! - One rule per route: rules have no matches to tell them apart; the first rule's
//!   backendRefs serve, the others are ignored with a warning.
//! - backendRef weights split new connections (spec: "weight/(sum of all weights)"): each
//!   endpoint's Maglev weight is its backendRef's share divided among that Service's endpoints.
//! - A backendRef that does not resolve gives `ResolvedRefs: False` with the spec's reason; its
//!   share of new connections is refused (TCP RST / ICMP port unreachable, as for a NodePort
//!   without endpoints), as is the share of one whose Service has no endpoints (spec: "if an
//!   invalid backend is requested to have 80% of connections, then 80% of connections must be
//!   rejected"): [`L4Service::reject_weight`], Maglev entries holding no backend.
//! - Port collisions: a listener port held by a NodePort Service (same protocol), a health
//!   check node port, the proxy's HTTP/HTTPS ports or an HTTP/HTTPS Gateway listener's port
//!   (TCP), or an older Gateway's listener (same protocol; for Gateways with addresses, on
//!   one of the same addresses) gets `Accepted: False, PortUnavailable`; the holder keeps
//!   serving ([`super::ports`] decides).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    Listed,
    attachment::{self, Gateways, RouteParents},
    backends::{self, BackendRef},
};
use crate::{
    model::translate::{diagnostics::Diagnostics, endpoints::EndpointIndex},
    model::{
        Endpoint, EndpointState, Frontend, L4Protocol, L4Service, ObjectKind, ObjectRef, ParentRef,
        RouteParentStatus, StatusCondition,
    },
    store::{Key, Objects, TcpRoute, UdpRoute},
};

/// Total Maglev weight one L4 service's endpoints share (2^20): fine enough for any split of
/// backendRef weights (the spec allows 0 to 1000000) over a Maglev table.
const WEIGHT_SCALE: u128 = 1 << 20;

/// A TCPRoute or UDPRoute, as this module reads it (the generated types differ only in name).
struct L4Route<'a> {
    oref: ObjectRef,
    key: &'a Key,
    created: i64,
    generation: i64,
    protocol: L4Protocol,
    parent_refs: Vec<ParentRef>,
    /// backendRefs per rule.
    rules: Vec<Vec<(BackendRef<'a>, Option<i32>)>>,
}

macro_rules! l4_route {
    ($key:expr, $r:expr, $kind:expr, $protocol:expr) => {{
        let r = $r;
        L4Route {
            oref: ObjectRef::new($kind, $key.namespace.clone(), $key.name.clone()),
            key: $key,
            created: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0),
            generation: r.metadata.generation.unwrap_or(0),
            protocol: $protocol,
            parent_refs: attachment::parent_refs!(r.spec.parent_refs),
            rules: r
                .spec
                .rules
                .iter()
                .map(|rule| {
                    rule.backend_refs
                        .listed()
                        .iter()
                        .map(|b| {
                            (
                                BackendRef {
                                    from_kind: kind_name($kind),
                                    group: b.group.as_deref(),
                                    kind: b.kind.as_deref(),
                                    namespace: b.namespace.as_deref(),
                                    name: &b.name,
                                    port: b.port,
                                },
                                b.weight,
                            )
                        })
                        .collect()
                })
                .collect(),
        }
    }};
}

fn tcp_route<'a>(key: &'a Key, r: &'a TcpRoute) -> L4Route<'a> {
    l4_route!(key, r, ObjectKind::TCPRoute, L4Protocol::Tcp)
}

fn udp_route<'a>(key: &'a Key, r: &'a UdpRoute) -> L4Route<'a> {
    l4_route!(key, r, ObjectKind::UDPRoute, L4Protocol::Udp)
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::UDPRoute => "UDPRoute",
        _ => "TCPRoute",
    }
}

/// The L4 services of the TCPRoutes and UDPRoutes attached to `gateways`' listeners, sorted
/// by id; their status goes to `status`, Services looked up to `services`.
pub fn translate<'a>(
    objects: &Objects,
    gateways: &mut Gateways<'_>,
    at: impl Fn(&Key) -> Option<&'a [std::net::IpAddr]>,
    endpoints: &EndpointIndex<'_>,
    services: &mut HashSet<Key>,
    diags: &mut Diagnostics,
    status: &mut BTreeMap<ObjectRef, Vec<RouteParentStatus>>,
) -> Vec<L4Service> {
    let mut routes: Vec<L4Route<'_>> = objects
        .tcp_routes
        .iter()
        .map(|(k, r)| tcp_route(k, r))
        .chain(objects.udp_routes.iter().map(|(k, r)| udp_route(k, r)))
        .collect();
    routes.sort_by(|a, b| (a.created, &a.key, a.oref.kind).cmp(&(b.created, &b.key, b.oref.kind)));
    // (Gateway, listener index) -> the route serving it.
    let mut taken: HashMap<(Key, usize), ObjectRef> = HashMap::new();
    let mut out = Vec::new();
    for r in &routes {
        let kind = kind_name(r.oref.kind);
        let parents = attachment::parents(
            &RouteParents {
                kind,
                namespace: &r.key.namespace,
                generation: r.generation,
                hostnames: &[],
                parent_refs: r.parent_refs.clone(),
            },
            gateways,
            objects,
        );
        if parents.is_empty() {
            continue;
        }
        if r.rules.len() > 1 {
            diags.warn(
                &r.oref,
                "UnsupportedValue",
                format!(
                    "{} rules: a {kind} is served by its first rule only (rules have no \
                     matches to choose between them)",
                    r.rules.len()
                ),
            );
        }
        let (eps, reject_weight, problem) = resolve(
            r,
            r.rules.first().map(Vec::as_slice).unwrap_or_default(),
            objects,
            endpoints,
            services,
            diags,
        );
        let resolved = match &problem {
            Some((reason, msg)) => {
                StatusCondition::new("ResolvedRefs", false, reason, msg.clone(), r.generation)
            }
            None => StatusCondition::new(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "all references resolved",
                r.generation,
            ),
        };
        let mut statuses = Vec::new();
        for p in parents {
            let mut served_any = false;
            let mut holder = None;
            // Listeners this parent attaches the route to, each counted once.
            let mut counted: HashSet<(Key, usize)> = HashSet::new();
            for (gw_key, i, _) in &p.listeners {
                let slot = (gw_key.clone(), *i);
                if counted.insert(slot.clone())
                    && let Some((_, _, ls_status)) = gateways.get_mut(gw_key)
                {
                    ls_status[*i].attached_routes += 1;
                }
                if !gateways.get(gw_key).is_some_and(|(_, ls, _)| ls[*i].served) {
                    continue; // Attached to an accepted listener that is not programmed.
                }
                if let Some(h) = taken.get(&slot) {
                    if *h != r.oref {
                        holder = Some(h.clone());
                    } else {
                        served_any = true; // Named twice by this route's parentRefs.
                    }
                    continue;
                }
                taken.insert(slot, r.oref.clone());
                served_any = true;
                let Some((_, ls, _)) = gateways.get(gw_key) else {
                    continue;
                };
                let l = &ls[*i];
                let Ok(port) = u16::try_from(l.port) else {
                    continue;
                };
                out.push(L4Service {
                    id: match &l.set {
                        None => format!("gateway/{gw_key}:{}", l.name),
                        Some(set) => format!("listenerset/{set}:{}", l.name),
                    },
                    service: r.oref.clone(),
                    protocol: r.protocol,
                    // A Gateway with addresses: those addresses only (the XDP path looks
                    // an address frontend up before the port's NodePort one).
                    frontends: match at(gw_key) {
                        Some(ips) => (ips.iter())
                            .map(|ip| Frontend::Address(std::net::SocketAddr::new(*ip, port)))
                            .collect(),
                        None => vec![Frontend::NodePort(port)],
                    },
                    endpoints: eps.clone(),
                    client_ip_affinity: None,
                    source_ranges: Vec::new(),
                    local_proxy: false,
                    external_traffic_local: false,
                    health_check: None,
                    syn_rate_limit: None,
                    reject_weight,
                });
            }
            if p.accepted.status && !served_any {
                // Attached and accepted (v1.6 conformance), but an older route serves.
                diags.warn(
                    &r.oref,
                    "ListenerServedByOlderRoute",
                    format!(
                        "accepted, but receives no connections: the listener is served by {} \
                         (the oldest route takes a {} listener)",
                        holder.map(|h| h.to_string()).unwrap_or_default(),
                        match r.protocol {
                            L4Protocol::Tcp => "TCP",
                            L4Protocol::Udp => "UDP",
                        }
                    ),
                );
            }
            statuses.push(RouteParentStatus {
                parent_ref: p.parent_ref,
                conditions: vec![p.accepted, resolved.clone()],
            });
        }
        status.insert(r.oref.clone(), statuses);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The endpoints of a rule's backendRefs, weighted so that each backendRef gets its share of
/// new connections; the weight refused (the share of references that do not resolve or have
/// no endpoints); and the first reference that does not resolve (`(reason, message)`).
fn resolve(
    r: &L4Route<'_>,
    refs: &[(BackendRef<'_>, Option<i32>)],
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    services: &mut HashSet<Key>,
    diags: &mut Diagnostics,
) -> (Vec<Endpoint>, u32, Option<(&'static str, String)>) {
    let mut problem: Option<(&'static str, String)> = None;
    // An unresolved reference is a set without endpoints: its share is refused.
    let mut sets: Vec<(u32, Vec<Endpoint>)> = Vec::new();
    let want = match r.protocol {
        L4Protocol::Tcp => "TCP",
        L4Protocol::Udp => "UDP",
    };
    for (b, weight) in refs {
        // Spec: weight defaults to 1; 0 sends nothing.
        let weight = u32::try_from(weight.unwrap_or(1)).unwrap_or(0);
        let found = backends::service_port(&r.key.namespace, b, objects, services).and_then(
            |(key, port)| {
                let proto = port.protocol.as_deref().unwrap_or("TCP");
                if proto == want {
                    Ok(endpoints.resolve(&key.namespace, &key.name, port))
                } else {
                    Err((
                        "UnsupportedProtocol",
                        format!("Service {key} port {} is {proto}, not {want}", port.port),
                    ))
                }
            },
        );
        match found {
            Ok(eps) if weight > 0 => sets.push((weight, eps)),
            Ok(_) => {}
            Err((reason, msg)) => {
                diags.error(
                    &r.oref,
                    reason,
                    format!("{msg}; its share of connections is refused"),
                );
                problem.get_or_insert((reason, msg));
                sets.push((weight, Vec::new()));
            }
        }
    }
    let (eps, refused) = weighted(&sets);
    (eps, refused, problem)
}

/// One endpoint list from `(backendRef weight, its endpoints)`, and the weight refused: within
/// each set, the active endpoints share its part of [`WEIGHT_SCALE`] equally (as do the
/// terminating ones, used only when nothing is active); an address in several sets adds up. A
/// set without endpoints keeps its part, refused. Nothing but refusals: no endpoints and 0
/// (the service refuses everything anyway).
pub(super) fn weighted(sets: &[(u32, Vec<Endpoint>)]) -> (Vec<Endpoint>, u32) {
    let total: u128 = sets.iter().map(|(w, _)| u128::from(*w)).sum();
    let refused: u128 = sets
        .iter()
        .filter(|(_, eps)| eps.is_empty())
        .map(|(w, _)| u128::from(*w))
        .sum();
    let mut by_addr: BTreeMap<std::net::SocketAddr, Endpoint> = BTreeMap::new();
    if total == refused {
        return (Vec::new(), 0);
    }
    for (w, eps) in sets {
        for state in [EndpointState::Active, EndpointState::Terminating] {
            let n = eps.iter().filter(|e| e.state == state).count() as u128;
            if n == 0 {
                continue;
            }
            let each = (u128::from(*w) * WEIGHT_SCALE / (total * n)).max(1);
            let each = u32::try_from(each).unwrap_or(u32::MAX);
            for e in eps.iter().filter(|e| e.state == state) {
                by_addr
                    .entry(e.addr.socket())
                    .and_modify(|have| {
                        have.weight = have.weight.saturating_add(each);
                        if e.state == EndpointState::Active {
                            have.state = EndpointState::Active;
                        }
                    })
                    .or_insert_with(|| Endpoint {
                        weight: each,
                        ..e.clone()
                    });
            }
        }
    }
    let refused = u32::try_from(refused * WEIGHT_SCALE / total).unwrap_or(u32::MAX);
    (by_addr.into_values().collect(), refused)
}
