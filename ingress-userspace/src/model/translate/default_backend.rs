//! `--default-backend-service NAMESPACE/NAME`: the controller's default backend.
//!
//! ingress-nginx's `getDefaultUpstream` (internal/ingress/controller/controller.go) makes the
//! upstream `upstream-default-backend` from the first port of this Service and its ready
//! endpoints (EndpointSlices). It answers the default server `_` unless a catch-all Ingress
//! replaces it there, every host's root location whose first Ingress has no
//! `spec.defaultBackend`, and the `custom-http-errors` of locations without a
//! `default-backend` annotation (docs/user-guide/cli-arguments.md). When the Service does
//! not exist or has no ready endpoint, ingress-nginx logs a warning and uses its built-in
//! default backend (`DefaultEndpoint`: 404 to everything); here the model has no default
//! backend then ([`crate::model::L7Config::default_backend`] `None`: the built-in 404), with a
//! Warning diagnostic on the Service. A full translation follows the Service's and its
//! EndpointSlices' changes (the endpoints-only fast path steps aside for them).

use std::sync::Arc;

use super::{
    References, TranslateConfig, annotations::load_balance, configmap::ControllerConfig,
    diagnostics::Diagnostics, endpoints::EndpointIndex,
};
use crate::{
    model::{LoadBalancing, ObjectKind, ObjectRef, Upstream},
    store::{Key, Objects},
};

/// The upstream of `--default-backend-service`, or `None` (built-in 404) when the flag is not
/// given, or the Service does not exist, has no port or no ready endpoint (a Warning on the
/// Service says which). Its EndpointSlices are recorded in `refs` so their changes
/// re-translate.
pub(super) fn resolve(
    objects: &Objects,
    endpoints: &EndpointIndex,
    config: &TranslateConfig,
    controller: &ControllerConfig,
    diags: &mut Diagnostics,
    refs: &mut References,
) -> Option<Arc<Upstream>> {
    let key = config.default_backend_service.as_ref()?;
    refs.services.insert(key.clone());
    let object = ObjectRef::new(ObjectKind::Service, &key.namespace, &key.name);
    let builtin = "requests it would answer get the built-in 404";
    let Some(svc) = objects.services.get(key) else {
        diags.warn(
            &object,
            "DefaultBackendServiceNotFound",
            format!("--default-backend-service {key} does not exist: {builtin}"),
        );
        return None;
    };
    // ingress-nginx takes `Spec.Ports[0]`.
    let Some(port) = (svc.spec.as_ref())
        .and_then(|s| s.ports.as_deref())
        .and_then(|p| p.first())
    else {
        diags.warn(
            &object,
            "DefaultBackendServiceWithoutPort",
            format!("--default-backend-service {key} has no port: {builtin}"),
        );
        return None;
    };
    let found = endpoints.resolve(&key.namespace, &key.name, port);
    if !found
        .iter()
        .any(|e| e.state == crate::model::EndpointState::Active)
    {
        diags.warn(
            &object,
            "DefaultBackendWithoutEndpoints",
            format!(
                "--default-backend-service {key} has no ready endpoint (port {}): {builtin}",
                port.port
            ),
        );
        return None;
    }
    Some(Arc::new(Upstream {
        id: upstream_id(key, port.port),
        service: object,
        protocol: Default::default(),
        endpoints: found,
        load_balancing: (controller.annotation_defaults.0.get("load-balance"))
            .and_then(|v| load_balance(v))
            .unwrap_or(LoadBalancing::RoundRobin),
        affinity: None,
        service_upstream: false,
        external_name: None,
        tls: None,
    }))
}

/// The upstream id of port `port` of `key`, as a route to that Service port has it (the
/// proxy keeps one pool per id and spec).
fn upstream_id(key: &Key, port: i32) -> String {
    super::service_upstream::upstream_id(key, port, false)
}
