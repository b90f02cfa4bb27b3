//! ListenerSets (GEP-1713, standard channel since Gateway API v1.5): more listeners for a
//! Gateway, declared in their own object (often another team's namespace).
//!
//! - A ListenerSet attaches to the Gateway its `parentRef` names only when that Gateway's
//!   `spec.allowedListeners.namespaces` admits the ListenerSet's namespace (`Same`, `All`,
//!   `Selector`; absent or `None`: no ListenerSet, the spec's default). Otherwise it gets
//!   `Accepted: False` and `Programmed: False`, reason `NotAllowed`.
//! - The Gateway is then served as if its `spec.listeners` were the merged list: its own
//!   first, then each attached ListenerSet's, oldest ListenerSet first (creationTimestamp,
//!   then `namespace/name`): the spec's "Listener Precedence". A ListenerSet listener that
//!   conflicts with one earlier in that list (same port and hostname, or a protocol that
//!   cannot share the port) is not served: `Conflicted: True` and `Accepted`/`Programmed:
//!   False` with the conflict's reason; the earlier one keeps serving, unconditioned.
//! - A ListenerSet whose listeners are all invalid gets `Accepted`/`Programmed: False,
//!   ListenersNotValid`; with some valid, `Accepted: True` (`ListenersNotValid` when some are
//!   not) and `Programmed: True`. A Gateway with no accepted listener of its own leaves its
//!   ListenerSets `ParentNotAccepted`.
//! - Routes reach a ListenerSet's listeners through a parentRef of kind `ListenerSet` only
//!   (with `sectionName`/`port`); a Gateway parentRef attaches to the Gateway's own listeners.
//!
//! Listener names may repeat across a Gateway and its ListenerSets (the spec allows it): each
//! listener is told apart by its owner ([`super::listeners::Listener::set`]).

use std::collections::BTreeMap;

use gateway_api::apis::standard::{
    gateways::{Gateway, GatewayAllowedListenersNamespacesFrom as From, GatewayListeners},
    listenersets::ListenerSet,
};

use super::{
    GROUP,
    listeners::{self, AllowedNamespaces, Listener},
};
use crate::{
    model::{ListenerStatus, StatusCondition},
    store::{Key, Objects},
};

/// One ListenerSet whose parentRef names a Gateway, its listeners read as a Gateway's.
#[derive(Debug)]
pub struct Set<'a> {
    pub key: Key,
    pub object: &'a ListenerSet,
    /// The Gateway its parentRef names.
    pub gateway: Key,
    /// `spec.listeners` as Gateway listeners (the same schema, `ListenerEntry`), or why they
    /// do not read as such.
    pub listeners: Result<Vec<GatewayListeners>, String>,
}

impl Set<'_> {
    pub fn generation(&self) -> i64 {
        self.object.metadata.generation.unwrap_or(0)
    }
}

/// The ListenerSets whose parentRef names one of `gateways`, in the spec's precedence:
/// creationTimestamp, then `namespace/name`.
pub fn read<'a>(objects: &'a Objects, gateways: &[&Key]) -> Vec<Set<'a>> {
    let mut out: Vec<(i64, Set<'a>)> = Vec::new();
    for (key, ls) in &objects.listener_sets {
        let p = &ls.spec.parent_ref;
        if p.group.as_deref().unwrap_or(GROUP) != GROUP
            || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        {
            continue;
        }
        let gateway = Key::new(
            p.namespace.clone().unwrap_or_else(|| key.namespace.clone()),
            p.name.clone(),
        );
        if !gateways.contains(&&gateway) {
            continue; // Not a Gateway of ours: not ours to report on.
        }
        // The generated Gateway and ListenerSet listener types differ only in name: read the
        // ListenerSet's through the Gateway's (one validation for both, as the spec asks).
        let listeners = serde_json::to_value(&ls.spec.listeners)
            .and_then(serde_json::from_value::<Vec<GatewayListeners>>)
            .map_err(|e| format!("spec.listeners: {e}"));
        let created = (ls.metadata.creation_timestamp.as_ref()).map(|t| t.0.as_second());
        out.push((
            created.unwrap_or(0),
            Set {
                key: key.clone(),
                object: ls,
                gateway,
                listeners,
            },
        ));
    }
    out.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
    out.into_iter().map(|(_, s)| s).collect()
}

/// Whether `gw`'s `spec.allowedListeners` admits ListenerSets from namespace `ns`.
pub fn admitted(gw: &Gateway, ns: &str, objects: &Objects) -> bool {
    let Some(n) = (gw.spec.allowed_listeners.as_ref()).and_then(|a| a.namespaces.as_ref()) else {
        return false;
    };
    let gw_ns = gw.metadata.namespace.as_deref().unwrap_or_default();
    let allowed = match n.from {
        Some(From::Same) => AllowedNamespaces::Same,
        Some(From::All) => AllowedNamespaces::All,
        Some(From::Selector) => {
            // The same `metav1.LabelSelector` as allowedRoutes', under another generated name.
            let selector = serde_json::to_value(&n.selector)
                .and_then(serde_json::from_value)
                .unwrap_or(None);
            match selector {
                Some(s) => AllowedNamespaces::Selector(s),
                None => return false,
            }
        }
        Some(From::None) | None => return false,
    };
    listeners::namespace_allowed(&allowed, gw_ns, ns, objects)
}

/// Takes out of service each listener of a ListenerSet (`from..` of `ls`) that conflicts
/// with a listener before it in the merged list (every one of the Gateway's; those of older
/// ListenerSets and earlier ones of its own set that are still served): `Conflicted: True`,
/// `Accepted` and `Programmed: False`, with the conflict's reason. The spec's precedence
/// decides, so the earlier listener of a conflicting pair is untouched (conformance
/// ListenerSetProtocolConflict: a set's TCP listener that loses to the Gateway's HTTP one on
/// its port leaves the set's own HTTP listeners there serving).
pub fn conflicts(ls: &mut [Listener<'_>], statuses: &mut [ListenerStatus], from: usize) {
    for (i, status) in statuses.iter_mut().enumerate().skip(from) {
        let (before, rest) = ls.split_at_mut(i);
        let Some(l) = rest.first_mut() else { break };
        let found = before
            .iter()
            .filter(|b| b.served || b.set.is_none())
            .find_map(|b| {
                listeners::conflict(
                    (b.protocol, b.port, b.hostname),
                    (l.protocol, l.port, l.hostname),
                )
                .map(|r| (r, b))
            });
        let Some((reason, b)) = found else { continue };
        let whose = match &b.set {
            None => "the Gateway's",
            Some(set) if l.set.as_ref() == Some(set) => "an earlier",
            Some(_) => "another ListenerSet's",
        };
        // GEP-1713: say why without exposing another team's objects.
        let msg = format!(
            "conflicts with {whose} listener on port {} ({reason}); the earlier listener \
             is served",
            l.port
        );
        let generation = (status.conditions.first()).map_or(0, |c| c.observed_generation);
        listeners::refuse(l, status, reason, msg.clone());
        for c in &mut status.conditions {
            match c.type_.as_str() {
                "Programmed" => {
                    *c = StatusCondition::new("Programmed", false, reason, &*msg, generation)
                }
                "Conflicted" => {
                    *c = StatusCondition::new("Conflicted", true, reason, &*msg, generation)
                }
                _ => {}
            }
        }
        l.served_port = None;
        status.port = None;
    }
}

/// What a ListenerSet's status says.
#[derive(Debug)]
pub enum Verdict {
    /// Not admitted by the Gateway's `allowedListeners`.
    NotAllowed,
    /// Its listeners do not read as listeners.
    Invalid(String),
    /// Attached: its listeners' statuses decide (and the parent's acceptance).
    Attached,
}

/// `Accepted` and `Programmed` of a ListenerSet from its verdict, its listeners' statuses and
/// whether its parent Gateway is accepted.
pub fn conditions(
    verdict: &Verdict,
    listeners: &[ListenerStatus],
    parent_accepted: bool,
    generation: i64,
) -> Vec<StatusCondition> {
    let both = |ok: bool, reason: &str, msg: &str, programmed_reason: &str| {
        vec![
            StatusCondition::new("Accepted", ok, reason, msg, generation),
            StatusCondition::new("Programmed", ok, programmed_reason, msg, generation),
        ]
    };
    match verdict {
        Verdict::NotAllowed => both(
            false,
            "NotAllowed",
            "the Gateway's allowedListeners does not admit ListenerSets from this namespace",
            "NotAllowed",
        ),
        Verdict::Invalid(msg) => both(false, "Invalid", msg, "Invalid"),
        Verdict::Attached if !parent_accepted => both(
            false,
            "ParentNotAccepted",
            "the parent Gateway is not accepted",
            "ParentNotAccepted",
        ),
        Verdict::Attached => {
            let has =
                |s: &ListenerStatus, t: &str| s.conditions.iter().any(|c| c.type_ == t && c.status);
            // A listener whose references do not resolve cannot be configured either
            // (GEP-1713 `ListenersNotValid`; conformance ListenerSetReferenceGrant: a set
            // whose one listener is `RefNotPermitted` is not accepted).
            let valid = listeners
                .iter()
                .filter(|s| has(s, "Accepted") && has(s, "ResolvedRefs") && !has(s, "Conflicted"))
                .count();
            let programmed = listeners.iter().filter(|s| has(s, "Programmed")).count();
            let accepted = if valid == 0 {
                StatusCondition::new(
                    "Accepted",
                    false,
                    "ListenersNotValid",
                    "no listener is valid",
                    generation,
                )
            } else if valid < listeners.len() {
                StatusCondition::new(
                    "Accepted",
                    true,
                    "ListenersNotValid",
                    "some listeners are not valid",
                    generation,
                )
            } else {
                StatusCondition::new(
                    "Accepted",
                    true,
                    "Accepted",
                    "attached to its Gateway",
                    generation,
                )
            };
            let programmed = if programmed > 0 {
                StatusCondition::new(
                    "Programmed",
                    true,
                    "Programmed",
                    "served by the proxy",
                    generation,
                )
            } else {
                StatusCondition::new(
                    "Programmed",
                    false,
                    if valid == 0 {
                        "ListenersNotValid"
                    } else {
                        "Invalid"
                    },
                    "no listener is served",
                    generation,
                )
            };
            vec![accepted, programmed]
        }
    }
}

/// Each ListenerSet's verdict, by key.
pub type Verdicts = BTreeMap<Key, Verdict>;
