//! A Gateway's client certificate toward backends (Gateway API v1.5+
//! `GatewaySpec.tls.backend.clientCertificateRef`, feature GatewayBackendClientCertificate):
//! presented in the TLS handshakes the proxy makes to backends a BackendTLSPolicy makes
//! HTTPS, for the routes of that Gateway.
//!
//! - The reference: a core Secret (`kubernetes.io/tls`, `tls.crt` and `tls.key`), in another
//!   namespace with a ReferenceGrant from `Gateway`. The Gateway gets a `ResolvedRefs`
//!   condition: `True`, or `False` with `InvalidClientCertificateRef` (missing Secret, keys,
//!   a certificate that does not parse; another kind) or `RefNotPermitted`; the Gateway is
//!   still served, connecting without a certificate (the backend decides).
//! - A route attached to several Gateways presents the certificate of the oldest of them
//!   that has one (routes are compiled once, not per Gateway).

use std::{collections::HashSet, sync::Arc};

use gateway_api::apis::standard::gateways::Gateway;

use super::{listeners, reference_grant::ObjectReference};
use crate::{
    model::translate::tls::TlsCache,
    model::{StatusCondition, TlsCertificate},
    store::{Key, Objects},
};

/// The certificate of Gateway `gw` (at `key`), or why its reference does not resolve
/// (reason, message); `None`: it names none. The Secret looked up goes to `secrets`.
pub fn resolve(
    key: &Key,
    gw: &Gateway,
    objects: &Objects,
    tls: &mut TlsCache,
    secrets: &mut HashSet<Key>,
) -> Option<Result<Arc<TlsCertificate>, (&'static str, String)>> {
    let r = (gw.spec.tls.as_ref())
        .and_then(|t| t.backend.as_ref())
        .and_then(|b| b.client_certificate_ref.as_ref())?;
    let reference = ObjectReference {
        field: "clientCertificateRef",
        from_kind: "Gateway",
        from_namespace: &key.namespace,
        to_kind: "Secret",
        group: r.group.as_deref(),
        kind: r.kind.as_deref(),
        namespace: r.namespace.as_deref(),
        name: &r.name,
    };
    Some(listeners::tls_secret(
        objects,
        &reference,
        "InvalidClientCertificateRef",
        tls,
        secrets,
    ))
}

/// The Gateway's `ResolvedRefs` condition for what [`resolve`] said.
pub fn condition(
    resolved: &Result<Arc<TlsCertificate>, (&'static str, String)>,
    generation: i64,
) -> StatusCondition {
    match resolved {
        Ok(_) => StatusCondition::new(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "all references resolved",
            generation,
        ),
        Err((reason, msg)) => StatusCondition::new(
            "ResolvedRefs",
            false,
            reason,
            format!("{msg}; backends are connected to without a client certificate"),
            generation,
        ),
    }
}
