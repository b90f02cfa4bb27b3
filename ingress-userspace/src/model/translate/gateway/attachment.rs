//! Which listeners a route attaches to (Gateway API v1 `ParentReference`): the named
//! Gateway's listeners, narrowed by `sectionName` and `port`, that are accepted, take the
//! route's kind from the route's namespace (`allowedRoutes`), and share a hostname with the
//! route. Each parent that is ours gets its `Accepted` condition with the spec's reason:
//! `NoMatchingParent` (no listener has that sectionName/port), `NotAllowedByListeners` (none
//! takes the route), `NoMatchingListenerHostname` (no hostname in common), else `Accepted`.
//! One core ([`parents`]) for every route kind; [`attach`] is the HTTPRoute (and GRPCRoute)
//! view of it.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::HttpRoute;
use gateway_api::apis::standard::gateways::Gateway;

use super::{GROUP, hostnames, listeners};
use crate::{
    model::{ListenerStatus, ObjectKind, ParentRef, StatusCondition},
    store::{Key, Objects},
};

/// A Gateway of ours with its listeners and their status (attachedRoutes counted by the
/// route kinds' translations).
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
    /// The Gateway it is on (the parentRef's, or its ListenerSet's).
    pub gateway: Key,
    pub accepted: StatusCondition,
    /// The listeners it attached to (Gateway, index in `spec.listeners`) with the hostnames
    /// the route is served under there (exact, `*.` wildcard, `""` for any).
    pub listeners: Vec<(Key, usize, Vec<String>)>,
}

/// What a route says about where it attaches, whatever its kind.
#[derive(Debug)]
pub struct RouteParents<'a> {
    /// `HTTPRoute`, `TCPRoute`, ...: listeners' `allowedRoutes.kinds` must include it.
    pub kind: &'a str,
    pub namespace: &'a str,
    pub generation: i64,
    /// `spec.hostnames` (empty for kinds without hostnames: every listener's hostname fits).
    pub hostnames: &'a [String],
    /// `spec.parentRefs` with group and kind defaulted.
    pub parent_refs: Vec<ParentRef>,
}

/// A generated `ParentReference` as [`ParentRef`] (group and kind defaulted to Gateway).
pub fn parent_ref(
    group: Option<&str>,
    kind: Option<&str>,
    namespace: Option<&str>,
    name: &str,
    section_name: Option<&str>,
    port: Option<i32>,
) -> ParentRef {
    ParentRef {
        group: group.unwrap_or(GROUP).into(),
        kind: kind.unwrap_or("Gateway").into(),
        namespace: namespace.map(str::to_string),
        name: name.into(),
        section_name: section_name.map(str::to_string),
        port,
    }
}

/// A route's generated `spec.parentRefs` (optional or required list, whatever the kind's
/// generated `ParentReference` type) as [`ParentRef`]s: the one mapping for every route kind.
macro_rules! parent_refs {
    ($list:expr) => {
        $crate::model::translate::gateway::Listed::listed(&$list)
            .iter()
            .map(|p| {
                $crate::model::translate::gateway::attachment::parent_ref(
                    p.group.as_deref(),
                    p.kind.as_deref(),
                    p.namespace.as_deref(),
                    &p.name,
                    p.section_name.as_deref(),
                    p.port,
                )
            })
            .collect::<Vec<$crate::model::ParentRef>>()
    };
}
pub(crate) use parent_refs;

/// The parents of ours of route `r`, each with its `Accepted` condition and the listeners
/// it attached to. Does not count `attachedRoutes` (the kind's translation does, for what it
/// serves).
pub fn parents(r: &RouteParents<'_>, gateways: &Gateways<'_>, objects: &Objects) -> Vec<Parent> {
    let cond = |ok: bool, reason: &str, msg: String| {
        StatusCondition::new("Accepted", ok, reason, msg, r.generation)
    };
    let mut out = Vec::new();
    for p in &r.parent_refs {
        if p.group != GROUP {
            continue;
        }
        let parent_key = Key::new(
            p.namespace.as_deref().unwrap_or(r.namespace),
            p.name.clone(),
        );
        // A Gateway parent reaches the Gateway's own listeners; a ListenerSet parent, that
        // set's (GEP-1713 "Route Attachment"), merged into its Gateway's list.
        let (gw_key, set) = match p.kind.as_str() {
            "Gateway" => (parent_key, None),
            "ListenerSet" => {
                let Some(ls) = objects.listener_sets.get(&parent_key) else {
                    continue;
                };
                let g = &ls.spec.parent_ref;
                let gw = Key::new(
                    g.namespace.as_deref().unwrap_or(&parent_key.namespace),
                    g.name.clone(),
                );
                (gw, Some(parent_key))
            }
            _ => continue,
        };
        let Some((_, ls, _)) = gateways.get(&gw_key) else {
            continue; // Not ours (or absent): not ours to report on.
        };
        let candidates: Vec<usize> = ls
            .iter()
            .enumerate()
            .filter(|(_, l)| l.set == set)
            .filter(|(_, l)| p.section_name.as_deref().is_none_or(|s| s == l.name))
            .filter(|(_, l)| p.port.is_none_or(|port| port == l.port))
            .map(|(i, _)| i)
            .collect();
        let mut attached = Vec::new();
        let accepted = if candidates.is_empty() {
            let msg = match &set {
                Some(set) if !ls.iter().any(|l| l.set.as_ref() == Some(set)) => {
                    "the ListenerSet is not attached to its Gateway".into()
                }
                _ => "no listener matches the parentRef's sectionName and port".into(),
            };
            cond(false, "NoMatchingParent", msg)
        } else {
            let allowed: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| {
                    let l = &ls[i];
                    l.attachable
                        && l.route_kinds.iter().any(|k| k == r.kind)
                        && listeners::namespace_allowed(
                            &l.namespaces,
                            l.owner_namespace,
                            r.namespace,
                            objects,
                        )
                })
                .collect();
            if allowed.is_empty() {
                let why: Vec<String> = candidates
                    .iter()
                    .map(|&i| refusal(&ls[i], r.kind, r.namespace))
                    .collect();
                cond(false, "NotAllowedByListeners", why.join("; "))
            } else {
                for i in allowed {
                    if let Some(hs) = hostnames::intersect(ls[i].hostname, r.hostnames) {
                        attached.push((gw_key.clone(), i, hs));
                    }
                }
                if attached.is_empty() {
                    cond(
                        false,
                        "NoMatchingListenerHostname",
                        "no listener hostname matches the route's hostnames".into(),
                    )
                } else {
                    cond(true, "Accepted", "route accepted".into())
                }
            }
        };
        out.push(Parent {
            parent_ref: p.clone(),
            gateway: gw_key,
            accepted,
            listeners: attached,
        });
    }
    out
}

/// Why listener `l` does not take a route of `kind` from `namespace`: its Gateway's state,
/// else its `allowedRoutes.kinds`, else its `allowedRoutes.namespaces` (the first that
/// refuses, in the order [`parents`] checks them).
fn refusal(l: &listeners::Listener<'_>, kind: &str, namespace: &str) -> String {
    if !l.attachable {
        return l
            .not_served
            .clone()
            .unwrap_or_else(|| format!("listener {} takes no routes", l.name));
    }
    if !l.route_kinds.iter().any(|k| k == kind) {
        return format!(
            "listener {} does not allow {kind}s (allowedRoutes.kinds / supportedKinds: [{}])",
            l.name,
            l.route_kinds.join(", ")
        );
    }
    format!(
        "listener {} does not allow routes from namespace {namespace} (allowedRoutes.namespaces)",
        l.name
    )
}

/// Where an HTTPRoute (or a GRPCRoute read as one) attached.
#[derive(Debug, Default)]
pub struct Attached {
    pub parents: Vec<Parent>,
    /// Each listener attached to: `(Gateway, listener index, how it serves, host patterns)`.
    pub listeners: Vec<(Key, usize, ListenerVia, Vec<String>)>,
}

/// How one listener serves: HTTPS or plain HTTP, and on which port.
#[derive(Clone, Copy, Debug)]
pub struct ListenerVia {
    pub https: bool,
    pub port: Option<u16>,
}

/// The listeners a route is served through under one host pattern.
#[derive(Debug, Default)]
pub struct Via {
    pub http: bool,
    pub https: bool,
    /// Their ports.
    pub ports: BTreeSet<u16>,
}

impl Via {
    fn add(&mut self, l: ListenerVia) {
        if l.https {
            self.https = true;
        } else {
            self.http = true;
        }
        self.ports.extend(l.port);
    }
}

impl Attached {
    /// Host patterns the route is served under (exact, `*.` wildcard, `""` for any) -> through
    /// which listeners, leaving out the listeners of the Gateways in `dropped`, and split by
    /// the addresses (`at`, sorted) of the Gateway each listener belongs to: `None` for
    /// Gateways served on every address no Gateway claims.
    pub fn served<'a>(
        &self,
        dropped: &[Key],
        at: impl Fn(&Key) -> Option<&'a [std::net::IpAddr]>,
    ) -> BTreeMap<(String, Option<Vec<std::net::IpAddr>>), Via> {
        let mut out = BTreeMap::<_, Via>::new();
        for (gw, _, via, hs) in &self.listeners {
            if dropped.contains(gw) {
                continue;
            }
            let addresses = at(gw).map(<[_]>::to_vec);
            for h in hs {
                let k = (h.clone(), addresses.clone());
                out.entry(k).or_default().add(*via);
            }
        }
        out
    }
}

/// [`parents`] of an HTTPRoute, or of a GRPCRoute read as one (`route_kind`, see
/// [`super::grpc`]), counting it in the `attachedRoutes` of its listeners.
pub fn attach(
    hr: &HttpRoute,
    route_kind: ObjectKind,
    key: &Key,
    gateways: &mut Gateways<'_>,
    objects: &Objects,
) -> Attached {
    let route_hosts = hr.spec.hostnames.clone().unwrap_or_default();
    let r = RouteParents {
        kind: match route_kind {
            ObjectKind::GRPCRoute => "GRPCRoute",
            _ => "HTTPRoute",
        },
        namespace: &key.namespace,
        generation: hr.metadata.generation.unwrap_or(0),
        hostnames: &route_hosts,
        parent_refs: parent_refs!(hr.spec.parent_refs),
    };
    let mut out = Attached {
        parents: parents(&r, gateways, objects),
        ..Default::default()
    };
    for p in &out.parents {
        for (gw_key, i, hs) in &p.listeners {
            let Some((_, ls, statuses)) = gateways.get_mut(gw_key) else {
                continue;
            };
            statuses[*i].attached_routes += 1;
            if !ls[*i].served {
                continue; // Attached, but its certificate does not resolve.
            }
            let via = ListenerVia {
                https: ls[*i].https,
                port: ls[*i].served_port,
            };
            out.listeners.push((gw_key.clone(), *i, via, hs.clone()));
        }
    }
    out
}
