//! The `apiVersion` each Gateway API kind that clusters serve at more than one version is read
//! and written at, shared by the API source (which decides once per watch) and by the writers
//! of status and Events (which name the object at the same version).
//!
//! The types read are those of Gateway API's current standard channel; older CRDs serve some
//! kinds only at versions of the same schema for what translation reads:
//! - TCPRoute and UDPRoute: `v1` since Gateway API v1.6, `v1alpha2` before (v1.6's standard
//!   CRDs no longer serve `v1alpha2`).
//! - TLSRoute: `v1` since v1.5, `v1alpha3` (v1.4 experimental) and `v1alpha2` before.
//! - ReferenceGrant: `v1` since v1.5, `v1beta1` only in v1.0 to v1.4 (still served after).
//!
//! The source prefers the newest the cluster serves.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use kube::{api::ApiResource, core::GroupVersionKind};

use crate::model::ObjectKind;

/// Gateway API's group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The versions of `kind` that may be served, newest (preferred) first; empty for kinds read
/// at one version only.
pub fn candidates(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::TCPRoute | ObjectKind::UDPRoute => &["v1", "v1alpha2"],
        ObjectKind::TLSRoute => &["v1", "v1alpha3", "v1alpha2"],
        ObjectKind::ReferenceGrant => &["v1", "v1beta1"],
        _ => &[],
    }
}

/// `(kind, plural)` of the kinds [`candidates`] lists.
fn names(kind: ObjectKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        ObjectKind::TCPRoute => ("TCPRoute", "tcproutes"),
        ObjectKind::UDPRoute => ("UDPRoute", "udproutes"),
        ObjectKind::TLSRoute => ("TLSRoute", "tlsroutes"),
        ObjectKind::ReferenceGrant => ("ReferenceGrant", "referencegrants"),
        _ => return None,
    })
}

/// The version each kind of [`candidates`] is watched at: its preferred one until the source
/// found the cluster serves only an older one. Cheap to clone (one shared map).
#[derive(Clone, Debug, Default)]
pub struct ServedVersions(Arc<Mutex<BTreeMap<ObjectKind, &'static str>>>);

impl ServedVersions {
    /// The version `kind` is watched at; `None` for kinds [`candidates`] does not list.
    pub fn get(&self, kind: ObjectKind) -> Option<&'static str> {
        let preferred = candidates(kind).first()?;
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Some(m.get(&kind).copied().unwrap_or(preferred))
    }

    pub fn set(&self, kind: ObjectKind, version: &'static str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(kind, version);
    }

    /// The API resource of `kind` at the version watched; `None` for kinds [`candidates`]
    /// does not list.
    pub fn api_resource(&self, kind: ObjectKind) -> Option<ApiResource> {
        api_resource(kind, self.get(kind)?)
    }

    /// `apiVersion` (`group/version`) of `kind` at the version watched, as an object
    /// reference names it; `None` for kinds [`candidates`] does not list.
    pub fn api_version(&self, kind: ObjectKind) -> Option<String> {
        Some(format!("{GROUP}/{}", self.get(kind)?))
    }
}

/// The API resource of `kind` at `version`; `None` for kinds [`candidates`] does not list.
pub fn api_resource(kind: ObjectKind, version: &str) -> Option<ApiResource> {
    let (name, plural) = names(kind)?;
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, version, name),
        plural,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_watched_at_their_newest_version_until_told_otherwise() {
        let v = ServedVersions::default();
        let shared = v.clone();
        assert_eq!(v.get(ObjectKind::TCPRoute), Some("v1"));
        shared.set(ObjectKind::UDPRoute, "v1alpha2");
        shared.set(ObjectKind::ReferenceGrant, "v1beta1");
        assert_eq!(v.get(ObjectKind::TCPRoute), Some("v1"));
        let ar = v.api_resource(ObjectKind::UDPRoute).expect("UDPRoute");
        assert_eq!(
            (
                ar.api_version.as_str(),
                ar.kind.as_str(),
                ar.plural.as_str()
            ),
            (
                "gateway.networking.k8s.io/v1alpha2",
                "UDPRoute",
                "udproutes"
            )
        );
        assert_eq!(
            v.api_version(ObjectKind::ReferenceGrant).as_deref(),
            Some("gateway.networking.k8s.io/v1beta1")
        );
        assert_eq!(
            v.api_version(ObjectKind::TLSRoute).as_deref(),
            Some("gateway.networking.k8s.io/v1")
        );
        assert!(v.api_resource(ObjectKind::HTTPRoute).is_none());
        assert!(v.get(ObjectKind::Gateway).is_none());
    }

    #[test]
    fn every_kind_with_candidates_has_names() {
        for kind in crate::store::ALL_KINDS {
            assert_eq!(
                candidates(*kind).is_empty(),
                names(*kind).is_none(),
                "{kind:?}"
            );
        }
    }
}
