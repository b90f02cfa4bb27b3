//! ReferenceGrant (gateway.networking.k8s.io/v1beta1): whether an object in one namespace may
//! name one in another. Same-namespace references need no grant.

use super::GROUP;
use crate::store::{Key, Objects};

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

/// A reference from a Gateway API object (`from_kind` in `from_namespace`) to a core-group
/// object of kind `to_kind`, as the spec's object references spell it (`group` and `kind`
/// defaulted, `namespace` defaulting to the referrer's).
pub struct ObjectReference<'a> {
    /// What the field is called in messages, e.g. `backendRef`.
    pub field: &'a str,
    pub from_kind: &'a str,
    pub from_namespace: &'a str,
    pub to_kind: &'a str,
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// Why an [`ObjectReference`] does not resolve to a key.
#[derive(Debug, PartialEq, Eq)]
pub enum RefProblem {
    /// Another group or kind than the one expected; the message names it.
    WrongKind(String),
    /// Another namespace without a ReferenceGrant there (the spec's `RefNotPermitted`).
    NotPermitted(String),
}

/// The key `r` names, once its group and kind are the expected ones and it is [`permitted`].
pub fn checked(objects: &Objects, r: &ObjectReference<'_>) -> Result<Key, RefProblem> {
    let group = r.group.unwrap_or("");
    let kind = r.kind.unwrap_or(r.to_kind);
    if !group.is_empty() || kind != r.to_kind {
        return Err(RefProblem::WrongKind(format!(
            "{} {group}/{kind} {} is not a {}",
            r.field, r.name, r.to_kind
        )));
    }
    let ns = r.namespace.unwrap_or(r.from_namespace);
    let grant = Reference {
        from_group: GROUP,
        from_kind: r.from_kind,
        from_namespace: r.from_namespace,
        to_group: "",
        to_kind: r.to_kind,
        to_namespace: ns,
        to_name: r.name,
    };
    if !permitted(objects, &grant) {
        return Err(RefProblem::NotPermitted(format!(
            "no ReferenceGrant in {ns} lets {}s of {} use {} {}",
            r.from_kind, r.from_namespace, r.to_kind, r.name
        )));
    }
    Ok(Key::new(ns, r.name.to_string()))
}
