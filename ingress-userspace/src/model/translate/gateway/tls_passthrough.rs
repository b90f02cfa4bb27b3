//! TLSRoute (v1alpha2, experimental channel) on `TLS` listeners with `tls.mode: Passthrough`:
//! the proxy reads the ClientHello's SNI without terminating and passes the connection to the
//! backends of the TLSRoute whose hostname matches (Gateway wildcards: one or more labels; the
//! most specific hostname wins). Everything lands in one SNI table,
//! [`crate::model::L7Config::gateway_sni`], that the proxy's passthrough step reads together
//! with ingress-nginx's `ssl-passthrough` hosts (one decision, `proxy::passthrough`), and
//! one per other port TLS listeners open ([`crate::model::L7Config::gateway_sni_ports`]).
//!
//! Entries (hostname pattern -> action):
//! - a TLSRoute hostname (intersected with its listener's): `Pass` to its backends;
//! - a passthrough listener's own hostname: `Close` (spec: a connection no route matches is
//!   closed), unless a route entry is more specific or equal;
//! - an HTTPS (terminating) listener's hostname, and every exact host the proxy serves
//!   (Ingresses, HTTPRoutes): `Terminate`, so that a name of theirs under a passthrough
//!   listener's wildcard is still terminated.
//!
//! Each port has its own table: a route is passed on its listeners' ports only. On a port
//! with an HTTPS listener a name outside the table is terminated; on a port of TLS
//! passthrough listeners only it is closed ([`SniPort::terminates`]). The proxy's HTTPS port
//! too, where its Ingress and HTTPRoute hosts keep `Terminate` entries; there a catch-all
//! Ingress rule (no host) keeps every other name terminated, as ingress-nginx's default
//! server ([`crate::model::L7Config::gateway_sni_closes_unmatched`]).
//!
//! Decisions where the spec leaves room (deploy/docs/gateway-api.md): a route and listener
//! pair without any hostname would take every name of the port, so it is not served
//! (`Accepted: False, UnsupportedValue`); two routes with one hostname on one port: the oldest
//! wins; one rule per route (rules have no matches); backendRefs split connections by weight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::{
    Listed,
    attachment::{self, Gateways, RouteParents},
    backends::{self, BackendRef},
};
use crate::{
    model::translate::{diagnostics::Diagnostics, endpoints::EndpointIndex},
    model::{
        ObjectKind, ObjectRef, RouteParentStatus, SniAction, SniPort, StatusCondition, Upstream,
        WeightedUpstream,
    },
    store::{Key, Objects},
};

/// Status by object: routes' parents, or policies' ancestors.
type RouteStatus = BTreeMap<ObjectRef, Vec<RouteParentStatus>>;

/// Which addresses a table serves: `None` for Gateways without addresses (every address no
/// Gateway claims), else the (sorted) addresses of the Gateways that share the table.
pub type Group = Option<Vec<IpAddr>>;

/// One SNI table per address set and port with a served TLS passthrough listener.
pub type Tables = BTreeMap<(Group, u16), SniPort>;

/// The SNI tables of `gateways`' TLS passthrough and HTTPS listeners and the TLSRoutes
/// attached, split by the addresses of each listener's Gateway (`at`) and its port.
/// Route status goes to `status`, Services looked up to `services`.
#[allow(clippy::too_many_arguments)]
pub fn translate<'a>(
    objects: &Objects,
    gateways: &mut Gateways<'_>,
    at: impl Fn(&Key) -> Option<&'a [IpAddr]>,
    (endpoints, policies): (&EndpointIndex<'_>, &super::backend_tls::Policies),
    cache: &mut HashMap<backends::CacheKey, Arc<Upstream>>,
    services: &mut HashSet<Key>,
    diags: &mut Diagnostics,
    (status, policy_status): (&mut RouteStatus, &mut RouteStatus),
) -> Tables {
    let group = |gw: &Key| at(gw).map(<[_]>::to_vec);
    let mut tables = Tables::new();
    let mut routes: Vec<(i64, &Key, &crate::store::TlsRoute)> = objects
        .tls_routes
        .iter()
        .map(|(k, r)| {
            let t = r
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            (t, k, r.as_ref())
        })
        .collect();
    routes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    // (table, hostname pattern) -> the route that passes it (the oldest).
    let mut owner: BTreeMap<((Group, u16), String), ObjectRef> = BTreeMap::new();
    for (_, key, tr) in routes {
        let oref = ObjectRef::new(
            ObjectKind::TLSRoute,
            key.namespace.clone(),
            key.name.clone(),
        );
        let generation = tr.metadata.generation.unwrap_or(0);
        let hostnames = tr.spec.hostnames.listed().to_vec();
        let parents = attachment::parents(
            &RouteParents {
                kind: "TLSRoute",
                namespace: &key.namespace,
                generation,
                hostnames: &hostnames,
                parent_refs: attachment::parent_refs!(tr.spec.parent_refs),
            },
            gateways,
            objects,
        );
        if parents.is_empty() {
            continue;
        }
        if tr.spec.rules.len() > 1 {
            diags.warn(
                &oref,
                "UnsupportedValue",
                format!(
                    "{} rules: a TLSRoute is served by its first rule only (rules have no \
                     matches to choose between them)",
                    tr.spec.rules.len()
                ),
            );
        }
        let mut forward = Vec::new();
        // On a `Terminate` listener: re-encrypted where a BackendTLSPolicy says so.
        let mut terminated = Vec::new();
        let mut used_policies = std::collections::BTreeSet::new();
        let mut problem: Option<(&'static str, String)> = None;
        let mut problems = Vec::new();
        let mut rejected_weight = 0u32;
        for b in tr
            .spec
            .rules
            .first()
            .map(|r| r.backend_refs.listed())
            .unwrap_or_default()
        {
            let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
            let r = BackendRef {
                from_kind: "TLSRoute",
                group: b.group.as_deref(),
                kind: b.kind.as_deref(),
                namespace: b.namespace.as_deref(),
                name: &b.name,
                port: b.port,
            };
            let ns = &key.namespace;
            match backends::tls_route_backend(ns, &r, objects, policies, endpoints, cache, services)
            {
                Ok(b) if weight > 0 => {
                    forward.push(WeightedUpstream {
                        upstream: b.plain,
                        weight,
                    });
                    terminated.push(WeightedUpstream {
                        upstream: b.terminated,
                        weight,
                    });
                    used_policies.extend(b.policy);
                }
                Ok(_) => {}
                Err((reason, msg)) => {
                    rejected_weight = rejected_weight.saturating_add(weight);
                    problems.push((reason, msg));
                }
            }
        }
        // What becomes of the connections a reference that does not resolve would have
        // taken: closed, in proportion to its weight.
        let fate = if forward.is_empty() {
            "the route's connections are closed"
        } else {
            "its share of connections (by weight) is closed"
        };
        for (reason, msg) in problems {
            diags.error(&oref, reason, format!("{msg}; {fate}"));
            problem.get_or_insert((reason, msg));
        }
        let resolved = match &problem {
            Some((reason, msg)) => {
                StatusCondition::new("ResolvedRefs", false, reason, msg.clone(), generation)
            }
            None => StatusCondition::new(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "all references resolved",
                generation,
            ),
        };
        let mut statuses = Vec::new();
        for p in parents {
            let mut accepted = p.accepted;
            let mut served_any = false;
            let mut why = None;
            for (gw_key, i, hs) in &p.listeners {
                let port = (gateways.get(gw_key)).and_then(|(_, ls, _)| ls[*i].served_port);
                let Some(port) = port.filter(|_| ls_served(gateways, gw_key, *i)) else {
                    // Attached to an accepted listener that is not programmed.
                    if let Some((_, _, ls_status)) = gateways.get_mut(gw_key) {
                        ls_status[*i].attached_routes += 1;
                    }
                    served_any = true;
                    continue;
                };
                let g = (group(gw_key), port);
                let mut here = false;
                for h in hs {
                    if h.is_empty() {
                        why = Some(
                            "neither the route nor its listener names a hostname: it would \
                             take every name of the port"
                                .to_string(),
                        );
                        continue;
                    }
                    let k = (g.clone(), h.clone());
                    match owner.get(&k) {
                        Some(o) if *o != oref => {
                            why = Some(format!("hostname {h} is passed to {o} (the oldest)"));
                            continue;
                        }
                        _ => {}
                    }
                    owner.insert(k, oref.clone());
                    let terminate = ls_terminates(gateways, gw_key, *i);
                    tables.entry(g.clone()).or_default().sni.insert(
                        h.clone(),
                        SniAction::Pass {
                            route: oref.clone(),
                            backends: if terminate { &terminated } else { &forward }.clone(),
                            rejected_weight,
                            terminate,
                        },
                    );
                    if terminate && accepted.status {
                        // The policies used get this Gateway as an ancestor, as for the
                        // HTTPRoutes whose backends use them.
                        for policy in used_policies.iter().filter_map(|o| policies.all.get(o)) {
                            let ns = &key.namespace;
                            super::backend_tls::add_ancestor(
                                policy_status,
                                policy,
                                &p.parent_ref,
                                ns,
                            );
                        }
                    }
                    here = true;
                }
                if here {
                    served_any = true;
                    if let Some((_, _, ls_status)) = gateways.get_mut(gw_key) {
                        ls_status[*i].attached_routes += 1;
                    }
                }
            }
            if accepted.status && !served_any {
                let msg = why.unwrap_or_default();
                diags.error(&oref, "UnsupportedValue", msg.clone());
                accepted =
                    StatusCondition::new("Accepted", false, "UnsupportedValue", msg, generation);
            }
            statuses.push(RouteParentStatus {
                parent_ref: p.parent_ref,
                conditions: vec![accepted, resolved.clone()],
            });
        }
        status.insert(oref, statuses);
    }
    // Without a served passthrough listener no connection needs its ClientHello read first.
    let served = |l: &&super::listeners::Listener<'_>| l.served && l.served_port.is_some();
    let passthrough_served: std::collections::BTreeSet<(Group, u16)> = (gateways.iter())
        .flat_map(|(k, (_, ls, _))| {
            (ls.iter().filter(served))
                .filter(|l| l.tls_passthrough)
                .filter_map(move |l| Some((group(k), l.served_port?)))
        })
        .collect();
    tables.retain(|g, _| passthrough_served.contains(g));
    // Listeners' own hostnames: passthrough ones close what no route took; terminating ones
    // keep their names terminated under a passthrough wildcard, and their port terminates.
    for (key, (_, ls, _)) in gateways.iter() {
        for l in ls.iter().filter(served) {
            let Some(port) = l.served_port else { continue };
            let g = (group(key), port);
            if !passthrough_served.contains(&g) {
                continue;
            }
            let table = tables.entry(g).or_default();
            // The HTTPS port's table terminates only with an HTTPS listener there too:
            // with passthrough listeners alone a name nothing takes is closed, as the spec
            // asks (conformance TLSRouteHostnameIntersection), the HTTPS port included;
            // Ingress hosts there keep `Terminate` entries (`gateway::apply`).
            table.terminates |= l.https;
            let Some(h) = l.hostname.map(str::to_ascii_lowercase) else {
                continue;
            };
            if l.tls_passthrough {
                table.sni.entry(h).or_insert(SniAction::Close);
            } else if l.https {
                table.sni.entry(h).or_insert(SniAction::Terminate);
            }
        }
    }
    tables
}

/// Whether listener `i` of Gateway `key` terminates TLS before passing (`tls.mode:
/// Terminate`).
fn ls_terminates(gateways: &Gateways<'_>, key: &Key, i: usize) -> bool {
    gateways
        .get(key)
        .is_some_and(|(_, ls, _)| ls[i].tls_terminate)
}

/// Whether listener `i` of Gateway `key` is served.
fn ls_served(gateways: &Gateways<'_>, key: &Key, i: usize) -> bool {
    gateways.get(key).is_some_and(|(_, ls, _)| ls[i].served)
}
