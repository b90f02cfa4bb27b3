//! The `apiVersion` TCPRoute and UDPRoute are read and written at, shared by the API source
//! (which decides, once per watch) and the Gateway status writer (which writes each route's
//! status through the same version).
//!
//! Gateway API v1.6 promoted both kinds to `gateway.networking.k8s.io/v1` (standard channel,
//! storage version `v1`, same schema as `v1alpha2`); `v1alpha2` is still served there but
//! deprecated, and CRDs before v1.6 serve only `v1alpha2`. The source prefers `v1`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use kube::{api::ApiResource, core::GroupVersionKind};

use crate::model::ObjectKind;

/// Gateway API's group.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The version watched where the CRD serves it (Gateway API v1.6 and later).
pub const PREFERRED: &str = "v1";
/// The version of CRDs before Gateway API v1.6 (deprecated since).
pub const DEPRECATED: &str = "v1alpha2";

/// The version each of TCPRoute and UDPRoute is watched at; [`PREFERRED`] until the source
/// found the cluster serves only [`DEPRECATED`]. Cheap to clone (one shared map).
#[derive(Clone, Debug, Default)]
pub struct RouteVersions(Arc<Mutex<BTreeMap<ObjectKind, &'static str>>>);

impl RouteVersions {
    /// The version (`v1` or `v1alpha2`) `kind` is watched at.
    pub fn get(&self, kind: ObjectKind) -> &'static str {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&kind).copied().unwrap_or(PREFERRED)
    }

    pub fn set(&self, kind: ObjectKind, version: &'static str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(kind, version);
    }

    /// The API resource of TCPRoute or UDPRoute at the version watched; `None` for other kinds.
    pub fn api_resource(&self, kind: ObjectKind) -> Option<ApiResource> {
        api_resource(kind, self.get(kind))
    }
}

/// The API resource of TCPRoute or UDPRoute at `version`; `None` for other kinds.
pub fn api_resource(kind: ObjectKind, version: &str) -> Option<ApiResource> {
    let (name, plural) = match kind {
        ObjectKind::TCPRoute => ("TCPRoute", "tcproutes"),
        ObjectKind::UDPRoute => ("UDPRoute", "udproutes"),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, version, name),
        plural,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_watched_at_v1_until_told_otherwise() {
        let v = RouteVersions::default();
        let shared = v.clone();
        assert_eq!(v.get(ObjectKind::TCPRoute), "v1");
        shared.set(ObjectKind::UDPRoute, DEPRECATED);
        assert_eq!(v.get(ObjectKind::TCPRoute), "v1");
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
        assert!(v.api_resource(ObjectKind::HTTPRoute).is_none());
    }
}
