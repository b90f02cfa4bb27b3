//! A Gateway's listeners: which are served, their certificates, which routes they take
//! (`allowedRoutes`), and their status conditions (Gateway API v1 `Listener`,
//! `ListenerStatus`, `ListenerConditionType` and its reasons).
//!
//! Served now: `HTTP` listeners on the proxy's HTTP port and `HTTPS` (`mode: Terminate`)
//! listeners on its HTTPS port. Any other port gets `Accepted: False, PortUnavailable`
//! (listener ports that follow the Gateways are a later step), any other protocol
//! `UnsupportedProtocol`.

use std::{collections::BTreeMap, sync::Arc};

use gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
    GatewayListenersAllowedRoutesNamespacesSelector as Selector, GatewayListenersTlsMode,
};

use super::{GROUP, reference_grant};
use crate::{
    model::{ListenerStatus, ObjectKind, ObjectRef, StatusCondition, TlsCertificate},
    store::{Key, Objects},
};

/// The proxy's own ports: the only listener ports served for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyPorts {
    pub http: u16,
    pub https: u16,
}

impl Default for ProxyPorts {
    fn default() -> Self {
        ProxyPorts {
            http: 80,
            https: 443,
        }
    }
}

/// Which namespaces' routes a listener takes.
#[derive(Clone, Debug)]
pub enum AllowedNamespaces {
    Same,
    All,
    Selector(Selector),
}

/// One listener as attachment sees it.
#[derive(Debug)]
pub struct Listener<'a> {
    pub name: &'a str,
    pub hostname: Option<&'a str>,
    pub port: i32,
    pub https: bool,
    pub namespaces: AllowedNamespaces,
    /// `allowedRoutes.kinds` includes HTTPRoute (the default).
    pub takes_http_routes: bool,
    /// `allowedRoutes.kinds` includes GRPCRoute (the default).
    pub takes_grpc_routes: bool,
    /// Accepted and programmed: its routes are served.
    pub served: bool,
    /// Why it is not served, for the routes that name it.
    pub not_served: Option<String>,
}

/// The listeners of `gw` and their status (in spec order); each HTTPS listener's certificate
/// goes into `certificates` by hostname (`""`: no hostname). Secrets looked up go to `secrets`.
#[allow(clippy::too_many_arguments)]
pub fn listeners<'a>(
    gw: &'a Gateway,
    gw_key: &Key,
    objects: &Objects,
    ports: ProxyPorts,
    tls: &mut super::super::tls::TlsCache,
    certificates: &mut BTreeMap<String, Arc<TlsCertificate>>,
    secrets: &mut std::collections::HashSet<Key>,
) -> (Vec<Listener<'a>>, Vec<ListenerStatus>) {
    let generation = gw.metadata.generation.unwrap_or(0);
    let cond = |t: &str, ok: bool, reason: &str, msg: &str| {
        StatusCondition::new(t, ok, reason, msg, generation)
    };
    let mut out = Vec::new();
    let mut statuses = Vec::new();
    let conflicts = conflicts(&gw.spec.listeners);
    for (i, l) in gw.spec.listeners.iter().enumerate() {
        let https = l.protocol == "HTTPS";
        let mut conditions = Vec::new();
        let mut problem: Option<(String, String)> = None; // (reason, message): not accepted
        let mut resolved: Option<(String, String)> = None; // (reason, message): refs broken
        let (kinds, kinds_ok) = supported_kinds(l);
        if !kinds_ok {
            resolved = Some((
                "InvalidRouteKinds".into(),
                "allowedRoutes.kinds names a kind other than HTTPRoute and GRPCRoute".into(),
            ));
        }
        if l.protocol != "HTTP" && !https {
            problem = Some((
                "UnsupportedProtocol".into(),
                format!(
                    "protocol {} is not supported yet (HTTP and HTTPS are)",
                    l.protocol
                ),
            ));
        } else {
            let want = if https { ports.https } else { ports.http };
            if l.port != i32::from(want) {
                problem = Some((
                    "PortUnavailable".into(),
                    format!(
                        "only the proxy's ports are served for now ({} for HTTP, {} for \
                         HTTPS); listener ports that follow the Gateways are not implemented yet",
                        ports.http, ports.https
                    ),
                ));
            }
        }
        if https && problem.is_none() {
            match l.tls.as_ref() {
                Some(t) if t.mode == Some(GatewayListenersTlsMode::Passthrough) => {
                    problem = Some((
                        "UnsupportedValue".into(),
                        "tls.mode Passthrough is not supported on HTTPS listeners".into(),
                    ));
                }
                Some(t) => match certificate(
                    gw,
                    t.certificate_refs.as_deref().unwrap_or_default(),
                    objects,
                    tls,
                    secrets,
                ) {
                    Ok(cert) => {
                        let host = l.hostname.clone().unwrap_or_default().to_ascii_lowercase();
                        certificates.entry(host).or_insert(cert);
                    }
                    Err((reason, msg)) => resolved = Some((reason.into(), msg)),
                },
                None => {
                    resolved = Some((
                        "InvalidCertificateRef".into(),
                        "an HTTPS listener needs tls.certificateRefs".into(),
                    ))
                }
            }
        }
        let conflicted = conflicts[i].clone();
        match &problem {
            Some((reason, msg)) => conditions.push(cond("Accepted", false, reason, msg)),
            None => conditions.push(cond("Accepted", true, "Accepted", "listener accepted")),
        }
        match &resolved {
            Some((reason, msg)) => conditions.push(cond("ResolvedRefs", false, reason, msg)),
            None => conditions.push(cond(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "references resolved",
            )),
        }
        match &conflicted {
            Some(reason) => conditions.push(cond(
                "Conflicted",
                true,
                reason,
                "another listener has the same port and hostname",
            )),
            None => conditions.push(cond("Conflicted", false, "NoConflicts", "no conflicts")),
        }
        // A listener whose certificate does not resolve serves nothing: HTTPS without a
        // certificate of its own would present another listener's.
        let served = problem.is_none() && resolved.is_none() && conflicted.is_none();
        if served {
            conditions.push(cond(
                "Programmed",
                true,
                "Programmed",
                "listener programmed",
            ));
        } else {
            conditions.push(cond(
                "Programmed",
                false,
                "Invalid",
                "listener is not served",
            ));
        }
        let not_served = (!served).then(|| {
            let why = problem
                .as_ref()
                .or(resolved.as_ref())
                .map(|(r, m)| format!("{r}: {m}"))
                .or(conflicted.clone())
                .unwrap_or_default();
            format!("listener {} is not served ({why})", l.name)
        });
        statuses.push(ListenerStatus {
            name: l.name.clone(),
            supported_kinds: kinds.clone(),
            attached_routes: 0,
            conditions,
        });
        let _ = gw_key;
        out.push(Listener {
            name: &l.name,
            hostname: l.hostname.as_deref().filter(|h| !h.is_empty()),
            port: l.port,
            https,
            namespaces: allowed_namespaces(l),
            takes_http_routes: kinds.iter().any(|(_, k)| k == "HTTPRoute"),
            takes_grpc_routes: kinds.iter().any(|(_, k)| k == "GRPCRoute"),
            served,
            not_served,
        });
    }
    (out, statuses)
}

/// `supportedKinds` (HTTPRoute and GRPCRoute unless `allowedRoutes.kinds` leaves them out)
/// and whether every kind listed is one we support.
fn supported_kinds(l: &GatewayListeners) -> (Vec<(String, String)>, bool) {
    const KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];
    let all = || KINDS.map(|k| (GROUP.to_string(), k.to_string())).to_vec();
    let listed = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref());
    match listed {
        None => (all(), true),
        Some(kinds) if kinds.is_empty() => (all(), true),
        Some(kinds) => {
            let mut ok = true;
            let mut out = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GROUP);
                if group == GROUP && KINDS.contains(&k.kind.as_str()) {
                    out.push((GROUP.to_string(), k.kind.clone()));
                } else {
                    ok = false;
                }
            }
            out.dedup();
            (out, ok)
        }
    }
}

fn allowed_namespaces(l: &GatewayListeners) -> AllowedNamespaces {
    let ns = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match ns.and_then(|n| n.from.clone()) {
        Some(From::All) => AllowedNamespaces::All,
        Some(From::Selector) => {
            AllowedNamespaces::Selector(ns.and_then(|n| n.selector.clone()).unwrap_or_default())
        }
        _ => AllowedNamespaces::Same,
    }
}

/// `Conflicted` reasons per listener: two listeners on one port with different protocols
/// (`ProtocolConflict`), or the same protocol and hostname (`HostnameConflict`).
fn conflicts(listeners: &[GatewayListeners]) -> Vec<Option<String>> {
    listeners
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut found = None;
            for (j, b) in listeners.iter().enumerate() {
                if i == j || a.port != b.port {
                    continue;
                }
                if a.protocol != b.protocol {
                    found = Some("ProtocolConflict".to_string());
                    break;
                }
                if a.hostname
                    .as_deref()
                    .unwrap_or("")
                    .eq_ignore_ascii_case(b.hostname.as_deref().unwrap_or(""))
                {
                    found = Some("HostnameConflict".to_string());
                }
            }
            found
        })
        .collect()
}

/// The first certificate of `refs` (Secrets only; another namespace needs a ReferenceGrant
/// from the Gateway), or the reason it does not resolve (`InvalidCertificateRef`,
/// `RefNotPermitted`).
fn certificate(
    gw: &Gateway,
    refs: &[gateway_api::apis::standard::gateways::GatewayListenersTlsCertificateRefs],
    objects: &Objects,
    tls: &mut super::super::tls::TlsCache,
    secrets: &mut std::collections::HashSet<Key>,
) -> Result<Arc<TlsCertificate>, (&'static str, String)> {
    let gw_ns = gw.metadata.namespace.as_deref().unwrap_or_default();
    let Some(r) = refs.first() else {
        return Err((
            "InvalidCertificateRef",
            "tls.certificateRefs is empty".into(),
        ));
    };
    let key = reference_grant::checked(
        objects,
        &reference_grant::ObjectReference {
            field: "certificateRef",
            from_kind: "Gateway",
            from_namespace: gw_ns,
            to_kind: "Secret",
            group: r.group.as_deref(),
            kind: r.kind.as_deref(),
            namespace: r.namespace.as_deref(),
            name: &r.name,
        },
    )
    .map_err(|p| match p {
        reference_grant::RefProblem::WrongKind(m) => ("InvalidCertificateRef", m),
        reference_grant::RefProblem::NotPermitted(m) => ("RefNotPermitted", m),
    })?;
    secrets.insert(key.clone());
    let Some(secret) = objects.secrets.get(&key) else {
        return Err((
            "InvalidCertificateRef",
            format!("Secret {key} does not exist"),
        ));
    };
    let oref = ObjectRef::new(ObjectKind::Secret, key.namespace.clone(), key.name.clone());
    tls.get(&oref, secret)
        .map_err(|e| ("InvalidCertificateRef", format!("Secret {key}: {e}")))
}

/// Whether namespace `ns` (its labels from the store) is allowed by `allowed` for a listener
/// of a Gateway in `gw_ns` (`metav1.LabelSelector` semantics).
pub fn namespace_allowed(
    allowed: &AllowedNamespaces,
    gw_ns: &str,
    ns: &str,
    objects: &Objects,
) -> bool {
    match allowed {
        AllowedNamespaces::Same => ns == gw_ns,
        AllowedNamespaces::All => true,
        AllowedNamespaces::Selector(sel) => {
            let empty = BTreeMap::new();
            let labels = objects
                .namespaces
                .get(&Key::new("", ns))
                .and_then(|n| n.metadata.labels.as_ref())
                .unwrap_or(&empty);
            let labels_ok = sel
                .match_labels
                .iter()
                .flatten()
                .all(|(k, v)| labels.get(k) == Some(v));
            let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
                let values = e.values.as_deref().unwrap_or_default();
                let have = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => have.is_some_and(|v| values.contains(v)),
                    "NotIn" => have.is_none_or(|v| !values.contains(v)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            });
            labels_ok && exprs_ok
        }
    }
}
