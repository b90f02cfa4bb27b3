//! BackendTLSPolicy (Gateway API v1, standard channel since v1.4): TLS to a Service's pods,
//! verified ([`crate::model::UpstreamTls`]; the proxy's side is
//! [`crate::proxy::upstream::verified_tls`]).
//!
//! - Targets: `targetRefs` to core Services of the policy's namespace, optionally one port
//!   (`sectionName` = the port's name). A policy naming the port takes precedence over one
//!   naming the whole Service; among policies naming the same target, the oldest, then the
//!   first by `namespace/name` (spec); the others are `Accepted: False, Conflicted`.
//! - `validation.caCertificateRefs`: ConfigMaps of the policy's namespace, PEM bundle in
//!   `ca.crt`. A reference to another kind is `ResolvedRefs: False, InvalidKind`; a missing
//!   ConfigMap, key or certificate `InvalidCACertificateRef`. When no reference is usable the
//!   policy is `Accepted: False, NoValidCACertificate` and connections fail (spec: "MUST
//!   fail, and the client MUST receive an HTTP 5xx"): the upstream keeps TLS with no root.
//! - `wellKnownCACertificates: System`: the Mozilla roots; another value is
//!   `Accepted: False, Invalid`.
//! - `hostname`: SNI, and the name verified unless `subjectAltNames` (DNS names or URIs) are
//!   given.
//! - The backend is then spoken to over TLS: HTTPS for HTTPRoutes, gRPC over TLS (ALPN `h2`)
//!   for GRPCRoutes.
//! - Status: one `ancestors` entry per Gateway whose routes use the policy, with `Accepted`
//!   and `ResolvedRefs`.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use gateway_api::apis::standard::backendtlspolicies::{
    BackendTlsPolicy, BackendTlsPolicyValidationSubjectAltNamesType as SanType,
};

use crate::{
    model::{ObjectKind, ObjectRef, StatusCondition, TlsRoots, UpstreamTls},
    store::{Key, Objects},
};

/// A policy as translation reads it.
#[derive(Debug, Clone)]
pub struct Policy {
    pub object: ObjectRef,
    pub generation: i64,
    pub tls: Arc<UpstreamTls>,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<StatusCondition>,
}

/// Every BackendTLSPolicy, by what it targets.
#[derive(Debug, Default)]
pub struct Policies {
    /// `(Service, port name or "")` -> the policy in effect.
    by_target: BTreeMap<(Key, String), Policy>,
    /// `(Service, port name or "")` -> the policies that lost it to an older one.
    lost: BTreeMap<(Key, String), Vec<ObjectRef>>,
    /// Every policy read, with its conditions (the ones that lost a conflict say so).
    pub all: BTreeMap<ObjectRef, Policy>,
    /// The ConfigMaps the policies name (their changes re-translate).
    pub config_maps: HashSet<Key>,
}

impl Policies {
    pub fn read(objects: &Objects) -> Policies {
        let mut out = Policies::default();
        let mut sorted: Vec<(&Key, &Arc<BackendTlsPolicy>)> =
            objects.backend_tls_policies.iter().collect();
        sorted.sort_by_key(|(k, p)| {
            let created = (p.metadata.creation_timestamp.as_ref()).map(|t| t.0.as_second());
            (created.unwrap_or(0), k.namespace.clone(), k.name.clone())
        });
        for (key, p) in sorted {
            let mut policy = read_one(key, p, objects, &mut out.config_maps);
            let mut conflicted = false;
            for t in &p.spec.target_refs {
                if !t.group.is_empty() || t.kind != "Service" {
                    continue;
                }
                let target = (
                    Key::new(key.namespace.clone(), t.name.clone()),
                    t.section_name.clone().unwrap_or_default(),
                );
                match out.by_target.entry(target) {
                    std::collections::btree_map::Entry::Occupied(e) => {
                        conflicted = true;
                        let lost = out.lost.entry(e.key().clone()).or_default();
                        lost.push(policy.object.clone());
                    }
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(policy.clone());
                    }
                }
            }
            if conflicted {
                policy.conditions[0] = StatusCondition::new(
                    "Accepted",
                    false,
                    "Conflicted",
                    "an older BackendTLSPolicy targets the same Service and sectionName",
                    policy.generation,
                );
            }
            out.all.insert(policy.object.clone(), policy);
        }
        out
    }

    /// The policies that lost port `port_name` of Service `svc` (or the whole Service) to an
    /// older one: they get the same ancestors, `Conflicted`.
    pub fn conflicting(&self, svc: &Key, port_name: Option<&str>) -> Vec<ObjectRef> {
        let mut out = Vec::new();
        for section in [port_name.unwrap_or_default(), ""] {
            if let Some(l) = self.lost.get(&(svc.clone(), section.to_string())) {
                out.extend(l.iter().cloned());
            }
        }
        out
    }

    /// The policy for port `port_name` of Service `svc`: one naming the port, else one
    /// naming the whole Service.
    pub fn lookup(&self, svc: &Key, port_name: Option<&str>) -> Option<&Policy> {
        port_name
            .filter(|n| !n.is_empty())
            .and_then(|n| self.by_target.get(&(svc.clone(), n.to_string())))
            .or_else(|| self.by_target.get(&(svc.clone(), String::new())))
    }
}

fn read_one(
    key: &Key,
    p: &BackendTlsPolicy,
    objects: &Objects,
    config_maps: &mut HashSet<Key>,
) -> Policy {
    let generation = p.metadata.generation.unwrap_or(0);
    let object = ObjectRef::new(ObjectKind::BackendTLSPolicy, &key.namespace, &key.name);
    let v = &p.spec.validation;
    let mut resolved: Result<(), (&str, String)> = Ok(());
    let mut accepted: Result<(), (&str, String)> = Ok(());
    let refs = v.ca_certificate_refs.as_deref().unwrap_or_default();
    let roots = if !refs.is_empty() {
        let mut ders = Vec::new();
        for r in refs {
            if !r.group.is_empty() || r.kind != "ConfigMap" {
                resolved = resolved.and(Err((
                    "InvalidKind",
                    format!(
                        "caCertificateRef {}/{}: only core ConfigMaps hold CA certificates",
                        r.kind, r.name
                    ),
                )));
                continue;
            }
            let cm = Key::new(key.namespace.clone(), r.name.clone());
            match ca_bundle(objects, &cm, config_maps) {
                Ok(mut d) => ders.append(&mut d),
                Err(e) => {
                    resolved = resolved.and(Err(("InvalidCACertificateRef", e)));
                }
            }
        }
        if ders.is_empty() {
            accepted = Err((
                "NoValidCACertificate",
                "no caCertificateRef holds a usable CA certificate".into(),
            ));
        }
        TlsRoots::Certificates(ders)
    } else {
        match v.well_known_ca_certificates.as_deref() {
            Some("System") => TlsRoots::System,
            other => {
                accepted = Err((
                    "Invalid",
                    format!("wellKnownCACertificates {other:?} is not supported (System is)"),
                ));
                TlsRoots::Certificates(Vec::new())
            }
        }
    };
    let subject_alt_names = (v.subject_alt_names.iter().flatten())
        .filter_map(|s| match s.r#type {
            SanType::Hostname => s.hostname.clone(),
            SanType::Uri => s.uri.clone(),
        })
        .collect();
    let cond = |t: &str, r: Result<(), (&str, String)>, ok: &str, msg: &str| match r {
        Ok(()) => StatusCondition::new(t, true, ok, msg, generation),
        Err((reason, m)) => StatusCondition::new(t, false, reason, m, generation),
    };
    Policy {
        conditions: vec![
            cond("Accepted", accepted, "Accepted", "policy accepted"),
            cond(
                "ResolvedRefs",
                resolved,
                "ResolvedRefs",
                "all references resolved",
            ),
        ],
        object,
        generation,
        tls: Arc::new(UpstreamTls {
            subject_alt_names,
            ..UpstreamTls::verified(v.hostname.clone(), roots)
        }),
    }
}

/// The DER certificates of the `ca.crt` PEM bundle of ConfigMap `key`, which goes to
/// `looked_up` whether it exists or not (its creation or change must re-translate).
pub(super) fn ca_bundle(
    objects: &Objects,
    key: &Key,
    looked_up: &mut HashSet<Key>,
) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    looked_up.insert(key.clone());
    let cm = objects
        .config_maps
        .get(key)
        .ok_or_else(|| format!("ConfigMap {key} does not exist"))?;
    let pem = (cm.data.as_ref())
        .and_then(|d| d.get("ca.crt"))
        .ok_or_else(|| format!("ConfigMap {key} has no ca.crt"))?;
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|c| x509_parser::parse_x509_certificate(c).is_ok())
        .map(|c| c.to_vec())
        .collect();
    if ders.is_empty() {
        return Err(format!("ConfigMap {key}: ca.crt holds no PEM certificate"));
    }
    Ok(ders)
}

/// Records `parent` (a Gateway a route in `route_ns` is accepted by, its section and port
/// dropped) as an ancestor of `policy`, whose backends the route uses, once, with the
/// policy's own conditions (BackendTLSPolicy `status.ancestors`).
pub fn add_ancestor(
    status: &mut BTreeMap<ObjectRef, Vec<crate::model::RouteParentStatus>>,
    policy: &Policy,
    parent: &crate::model::ParentRef,
    route_ns: &str,
) {
    let ancestor = crate::model::ParentRef {
        namespace: Some(
            parent
                .namespace
                .clone()
                .unwrap_or_else(|| route_ns.to_string()),
        ),
        section_name: None,
        port: None,
        ..parent.clone()
    };
    let ancestors = status.entry(policy.object.clone()).or_default();
    if !ancestors.iter().any(|a| a.parent_ref == ancestor) {
        ancestors.push(crate::model::RouteParentStatus {
            parent_ref: ancestor,
            conditions: policy.conditions.clone(),
        });
    }
}
