//! An object's metadata as the store keeps it: name, namespace, and the annotations
//! translation reads.
//!
//! `ObjectMeta` is ~330 bytes inline (fifteen optional fields) before any of its strings and
//! maps; this is 72. Labels, uid, resourceVersion, owner references, timestamps, finalizers and
//! managed fields are dropped: translation reads none of them for the kinds that use this (the
//! compiler holds it to that: the field is not there to read).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `metadata` with `name`, `namespace` and some `annotations` ([module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Only those whose key starts with the prefix the kind's conversion keeps; `None` when
    /// none is left (translation reads `Some(empty)` and `None` alike).
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Meta {
    /// `m`'s name and namespace, and its annotations whose key starts with `prefix` (`None`:
    /// no annotation).
    pub fn from_api(m: ObjectMeta, prefix: Option<&str>) -> Meta {
        let annotations = prefix.and_then(|p| {
            let kept: BTreeMap<String, String> = m
                .annotations?
                .into_iter()
                .filter(|(k, _)| k.starts_with(p))
                .collect();
            (!kept.is_empty()).then_some(kept)
        });
        Meta {
            name: m.name,
            namespace: m.namespace,
            annotations,
        }
    }
}

impl From<Meta> for ObjectMeta {
    fn from(m: Meta) -> ObjectMeta {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            annotations: m.annotations,
            ..Default::default()
        }
    }
}

/// Drops the spare capacity of an optional list. A list read straight from JSON text grows
/// as it is read (its length is not known before its end): one port's `Vec` holds four, and
/// the store keeps every object for as long as it lives.
pub fn shrink<T>(v: &mut Option<Vec<T>>) {
    if let Some(v) = v {
        v.shrink_to_fit();
    }
}

/// Store kinds of [`crate::compact`] whose manifests may leave the namespace out: the
/// manifest source fills in `default` through this, as it does through `kube::Resource` for
/// the API kinds.
pub trait Namespaced {
    fn namespace_mut(&mut self) -> &mut Option<String>;
}

impl<T: kube::Resource> Namespaced for T {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.meta_mut().namespace
    }
}
