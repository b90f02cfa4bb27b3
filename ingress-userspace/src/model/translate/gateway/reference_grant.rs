//! ReferenceGrant (gateway.networking.k8s.io/v1beta1): whether an object in one namespace may
//! name one in another. Same-namespace references need no grant.

use crate::store::Objects;

/// `group`/`kind` of the referring object, its namespace; `group`/`kind`/`namespace`/`name` of
/// the target. The core group is `""`.
pub struct Reference<'a> {
    pub from_group: &'a str,
    pub from_kind: &'a str,
    pub from_namespace: &'a str,
    pub to_group: &'a str,
    pub to_kind: &'a str,
    pub to_namespace: &'a str,
    pub to_name: &'a str,
}

/// True when the reference stays in its namespace, or a ReferenceGrant in the target's
/// namespace lists the referrer in `from` and the target (by kind, and by name when it gives
/// one) in `to`.
pub fn permitted(objects: &Objects, r: &Reference<'_>) -> bool {
    if r.from_namespace == r.to_namespace {
        return true;
    }
    objects
        .reference_grants
        .iter()
        .filter(|(k, _)| k.namespace == r.to_namespace)
        .any(|(_, g)| {
            g.spec.from.iter().any(|f| {
                f.group == r.from_group && f.kind == r.from_kind && f.namespace == r.from_namespace
            }) && g.spec.to.iter().any(|t| {
                t.group == r.to_group
                    && t.kind == r.to_kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == r.to_name)
            })
        })
}
