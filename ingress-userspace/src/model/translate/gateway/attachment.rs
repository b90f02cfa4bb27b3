//! Which listeners an HTTPRoute attaches to (Gateway API v1 `ParentReference`): the named
//! Gateway's listeners, narrowed by `sectionName` and `port`, that are served, take HTTPRoutes
//! from the route's namespace (`allowedRoutes`), and share a hostname with the route. Each
//! parent that is ours gets its `Accepted` condition with the spec's reason:
//! `NoMatchingParent` (no listener has that sectionName/port), `NotAllowedByListeners` (none
//! takes the route), `NoMatchingListenerHostname` (no hostname in common), else `Accepted`.

use std::collections::BTreeMap;

use gateway_api::apis::standard::{gateways::Gateway, httproutes::HttpRoute};

use super::{GROUP, hostnames, listeners};
use crate::{
    model::{ListenerStatus, ObjectKind, ParentRef, StatusCondition},
    store::{Key, Objects},
};

/// A Gateway of ours with its listeners and their status (attachedRoutes counted here).
pub type Gateways<'a> = BTreeMap<
    Key,
    (
        &'a Gateway,
        Vec<listeners::Listener<'a>>,
        Vec<ListenerStatus>,
    ),
>;

/// One parentRef that names a Gateway of ours.
#[derive(Debug)]
pub struct Parent {
    pub parent_ref: ParentRef,
    pub accepted: StatusCondition,
}

/// Where a route attached.
#[derive(Debug, Default)]
pub struct Attached {
    pub parents: Vec<Parent>,
    /// Host patterns the route is served under (exact, `*.` wildcard, `""` for any) ->
    /// through which listeners: `(plain HTTP, HTTPS)`.
    pub hostnames: std::collections::BTreeMap<String, (bool, bool)>,
    /// Each listener attached to: `(Gateway, listener index, HTTPS, host patterns)`.
    pub listeners: Vec<(Key, usize, bool, Vec<String>)>,
}

impl Attached {
    /// [`Self::hostnames`] without the listeners of the Gateways in `dropped`.
    pub fn hostnames_without(
        &self,
        dropped: &[Key],
    ) -> std::collections::BTreeMap<String, (bool, bool)> {
        let mut out = std::collections::BTreeMap::<String, (bool, bool)>::new();
        for (gw, _, https, hs) in &self.listeners {
            if dropped.contains(gw) {
                continue;
            }
            for h in hs {
                let via = out.entry(h.clone()).or_default();
                if *https {
                    via.1 = true;
                } else {
                    via.0 = true;
                }
            }
        }
        out
    }
}

/// `kind`: HTTPRoute, or GRPCRoute read as one (see [`super::grpc`]).
pub fn attach(
    hr: &HttpRoute,
    route_kind: ObjectKind,
    key: &Key,
    gateways: &mut Gateways<'_>,
    objects: &Objects,
) -> Attached {
    let generation = hr.metadata.generation.unwrap_or(0);
    let cond = |ok: bool, reason: &str, msg: String| {
        StatusCondition::new("Accepted", ok, reason, msg, generation)
    };
    let route_hosts = hr.spec.hostnames.clone().unwrap_or_default();
    let mut out = Attached::default();
    for p in hr.spec.parent_refs.iter().flatten() {
        let group = p.group.as_deref().unwrap_or(GROUP);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        if group != GROUP || kind != "Gateway" {
            continue;
        }
        let gw_ns = p.namespace.as_deref().unwrap_or(&key.namespace);
        let gw_key = Key::new(gw_ns, p.name.clone());
        let Some((gw, ls, statuses)) = gateways.get_mut(&gw_key) else {
            continue; // Not ours (or absent): not ours to report on.
        };
        let parent_ref = ParentRef {
            group: group.into(),
            kind: kind.into(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            section_name: p.section_name.clone(),
            port: p.port,
        };
        let candidates: Vec<usize> = ls
            .iter()
            .enumerate()
            .filter(|(_, l)| p.section_name.as_deref().is_none_or(|s| s == l.name))
            .filter(|(_, l)| p.port.is_none_or(|port| port == l.port))
            .map(|(i, _)| i)
            .collect();
        let accepted = if candidates.is_empty() {
            cond(
                false,
                "NoMatchingParent",
                "no listener matches the parentRef's sectionName and port".into(),
            )
        } else {
            let gw_ns_own = gw.metadata.namespace.as_deref().unwrap_or_default();
            let allowed: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| {
                    let l = &ls[i];
                    l.served
                        && match route_kind {
                            ObjectKind::GRPCRoute => l.takes_grpc_routes,
                            _ => l.takes_http_routes,
                        }
                        && listeners::namespace_allowed(
                            &l.namespaces,
                            gw_ns_own,
                            &key.namespace,
                            objects,
                        )
                })
                .collect();
            if allowed.is_empty() {
                let why = candidates
                    .iter()
                    .find_map(|&i| ls[i].not_served.clone())
                    .unwrap_or_else(|| {
                        format!("no listener allows {route_kind:?}s from this namespace")
                    });
                cond(false, "NotAllowedByListeners", why)
            } else {
                let mut any = false;
                for i in allowed {
                    if let Some(hs) = hostnames::intersect(ls[i].hostname, &route_hosts) {
                        any = true;
                        statuses[i].attached_routes += 1;
                        out.listeners
                            .push((gw_key.clone(), i, ls[i].https, hs.clone()));
                        for h in hs {
                            let via = out.hostnames.entry(h).or_default();
                            if ls[i].https {
                                via.1 = true;
                            } else {
                                via.0 = true;
                            }
                        }
                    }
                }
                if any {
                    cond(true, "Accepted", "route accepted".into())
                } else {
                    cond(
                        false,
                        "NoMatchingListenerHostname",
                        "no listener hostname matches the route's hostnames".into(),
                    )
                }
            }
        };
        out.parents.push(Parent {
            parent_ref,
            accepted,
        });
    }
    out
}
