//! Client-certificate validation on a Gateway's HTTPS listeners (Gateway API v1.5+
//! `GatewaySpec.tls.frontend`, features GatewayFrontendClientCertificateValidation and
//! ...InsecureFallback): which validation a listener's port gets, its CA certificates, and
//! the listener conditions the spec gives when they do not resolve.
//!
//! - `perPort[]` entry of the listener's port, else `default`; an entry without `validation`
//!   turns validation off on that port. It applies to `HTTPS` listeners only (an `HTTP` or
//!   `TLS` passthrough listener never terminates a client's TLS here), of the Gateway and of
//!   its ListenerSets alike (the configuration is the Gateway's, by port).
//! - `caCertificateRefs`: core ConfigMaps with a PEM bundle in `ca.crt` (Core support); another
//!   kind is `ResolvedRefs: False, InvalidCACertificateKind`, a missing ConfigMap, key or
//!   certificate `InvalidCACertificateRef`, another namespace without a ReferenceGrant
//!   `RefNotPermitted`. When none resolves, the listener is also `Accepted: False,
//!   NoValidCACertificate` and not served (a listener that must verify and cannot would
//!   otherwise serve everyone).
//! - `mode: AllowInsecureFallback` sets the Gateway's `InsecureFrontendValidationMode: True`
//!   condition (reason `ConfigurationChanged`), as the spec asks of a Gateway that lets
//!   clients through without a valid certificate.

use std::{collections::HashSet, sync::Arc};

use gateway_api::apis::standard::gateways::{
    GatewayTlsFrontend, GatewayTlsFrontendDefaultValidationMode as DefaultMode,
    GatewayTlsFrontendPerPortTlsValidationMode as PortMode,
};

use super::{
    backend_tls::ca_bundle,
    reference_grant::{self, ObjectReference, RefProblem},
};
use crate::{
    model::{FrontendValidation, ObjectKind, ObjectRef},
    store::{Key, Objects},
};

/// One `caCertificateRefs` entry, whichever generated type it came from.
struct CaRef<'a> {
    group: &'a str,
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

/// The validation in effect on one port, as written.
struct Validation<'a> {
    refs: Vec<CaRef<'a>>,
    insecure_fallback: bool,
}

/// The validation of `port` (its `perPort` entry, else `default`); `None`: none.
fn for_port(frontend: &GatewayTlsFrontend, port: i32) -> Option<Validation<'_>> {
    if let Some(p) = (frontend.per_port.iter().flatten()).find(|p| p.port == port) {
        let v = p.tls.validation.as_ref()?;
        return Some(Validation {
            refs: (v.ca_certificate_refs.iter())
                .map(|r| CaRef {
                    group: &r.group,
                    kind: &r.kind,
                    name: &r.name,
                    namespace: r.namespace.as_deref(),
                })
                .collect(),
            insecure_fallback: v.mode == Some(PortMode::AllowInsecureFallback),
        });
    }
    let v = frontend.default.validation.as_ref()?;
    Some(Validation {
        refs: (v.ca_certificate_refs.iter())
            .map(|r| CaRef {
                group: &r.group,
                kind: &r.kind,
                name: &r.name,
                namespace: r.namespace.as_deref(),
            })
            .collect(),
        insecure_fallback: v.mode == Some(DefaultMode::AllowInsecureFallback),
    })
}

/// Whether any validation of `frontend` lets clients through without a valid certificate.
pub fn insecure_fallback(frontend: &GatewayTlsFrontend) -> bool {
    let default = (frontend.default.validation.as_ref())
        .is_some_and(|v| v.mode == Some(DefaultMode::AllowInsecureFallback));
    let per_port = (frontend.per_port.iter().flatten()).any(|p| {
        (p.tls.validation.as_ref()).is_some_and(|v| v.mode == Some(PortMode::AllowInsecureFallback))
    });
    default || per_port
}

/// What a listener's validation came to.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The policy to serve with (`None`: no validation on the port, or none usable).
    pub policy: Option<Arc<FrontendValidation>>,
    /// `ResolvedRefs: False` (reason, message): a reference did not resolve.
    pub unresolved: Option<(&'static str, String)>,
    /// `Accepted: False, NoValidCACertificate` (message): no reference resolved.
    pub no_valid_ca: Option<String>,
}

/// The validation of an HTTPS listener on `port` of Gateway `gateway` (whose `spec.tls.frontend`
/// is `frontend`), its references resolved against `objects`; the ConfigMaps it looks up
/// (found or not) go to `config_maps`.
pub fn resolve(
    gateway: &Key,
    frontend: Option<&GatewayTlsFrontend>,
    port: i32,
    objects: &Objects,
    config_maps: &mut HashSet<Key>,
) -> Resolved {
    let Some(v) = frontend.and_then(|f| for_port(f, port)) else {
        return Resolved::default();
    };
    let mut out = Resolved::default();
    let mut ca_der = Vec::new();
    for r in &v.refs {
        let reference = ObjectReference {
            field: "caCertificateRef",
            from_kind: "Gateway",
            from_namespace: &gateway.namespace,
            to_kind: "ConfigMap",
            group: Some(r.group),
            kind: Some(r.kind),
            namespace: r.namespace,
            name: r.name,
        };
        let problem = match reference_grant::checked(objects, &reference) {
            Ok(key) => match ca_bundle(objects, &key, config_maps) {
                Ok(mut der) => {
                    ca_der.append(&mut der);
                    continue;
                }
                Err(e) => ("InvalidCACertificateRef", format!("caCertificateRef: {e}")),
            },
            Err(RefProblem::WrongKind(m)) => ("InvalidCACertificateKind", m),
            Err(RefProblem::NotPermitted(m)) => ("RefNotPermitted", m),
        };
        // The first problem is the one the condition names.
        out.unresolved.get_or_insert(problem);
    }
    if ca_der.is_empty() {
        out.no_valid_ca = Some(match &out.unresolved {
            Some((_, m)) => format!("no caCertificateRef holds a usable CA certificate ({m})"),
            None => "validation names no caCertificateRef".into(),
        });
        return out;
    }
    out.policy = Some(Arc::new(FrontendValidation {
        gateway: ObjectRef::new(ObjectKind::Gateway, &gateway.namespace, &gateway.name),
        ca_der,
        insecure_fallback: v.insecure_fallback,
    }));
    out
}
