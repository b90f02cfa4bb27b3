//! A Gateway's listeners: which are served, on which port, their certificates, which routes
//! they take (`allowedRoutes`), and their status conditions (Gateway API v1 `Listener`,
//! `ListenerStatus`, `ListenerConditionType` and its reasons).
//!
//! Served: `HTTP` listeners and `HTTPS` (`mode: Terminate`) listeners on the proxy's own port
//! of that protocol, or on any port inside `--gateway-listener-ports`, which the proxy then
//! opens ([`crate::model::L7Config::gateway_listeners`]); `TLS` (`mode: Passthrough`)
//! listeners likewise on the proxy's HTTPS port or a port of that range; `TCP` and `UDP`
//! listeners on any port, served by the XDP path. A port outside the range or the proxy's port of the other protocol gets
//! `Accepted: False, PortUnavailable`; so does a port another protocol family holds
//! ([`super::ports`] decides that for every protocol in one pass, oldest Gateway first).
//! Any other protocol gets `UnsupportedProtocol`.

use std::{collections::BTreeMap, fmt, str::FromStr, sync::Arc};

use gateway_api::apis::standard::gateways::{
    Gateway, GatewayListeners, GatewayListenersAllowedRoutesNamespacesFrom as From,
    GatewayListenersAllowedRoutesNamespacesSelector as Selector, GatewayListenersTlsMode,
    GatewayTlsFrontend,
};

use super::{GROUP, reference_grant};
use crate::{
    model::{ListenerStatus, ObjectKind, ObjectRef, StatusCondition, TlsCertificate},
    store::{Key, Objects},
};

/// The proxy's own ports, and the ports Gateway listeners may open besides them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyPorts {
    pub http: u16,
    pub https: u16,
    /// `--gateway-listener-ports`.
    pub gateway_range: PortRange,
}

impl Default for ProxyPorts {
    fn default() -> Self {
        ProxyPorts {
            http: 80,
            https: 443,
            gateway_range: PortRange::default(),
        }
    }
}

/// An inclusive range of TCP ports, written `first-last` (or one port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// 1024-29999: no privileged port (on a host network those name the node's own services),
/// below the NodePort range (30000-32767: the XDP path or kube-proxy takes that traffic
/// before any socket sees it) and Linux's ephemeral range (32768-60999: the proxy's own
/// connections to pods take local ports there, so a bind could fail at random).
impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            first: 1024,
            last: 29999,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why a port range does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortRangeError {
    #[error("{0:?} is not a port (1-65535)")]
    Port(String),
    #[error("{first}-{last}: the first port is after the last")]
    Reversed { first: u16, last: u16 },
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    /// `1024-29999`, or `8080` alone.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(PortRangeError::Port(p.trim().to_string())),
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(PortRangeError::Reversed { first, last });
        }
        Ok(PortRange { first, last })
    }
}

/// Which namespaces' routes a listener takes.
#[derive(Clone, Debug)]
pub enum AllowedNamespaces {
    Same,
    All,
    Selector(Selector),
}

/// Whose `listeners` are read: a Gateway's own, or a ListenerSet's (GEP-1713) merged into
/// its parent Gateway's list.
#[derive(Debug)]
pub struct Owner<'a> {
    /// `Gateway` or `ListenerSet`: the `from` kind of certificateRefs' ReferenceGrants.
    pub kind: &'static str,
    pub namespace: &'a str,
    pub generation: i64,
    pub listeners: &'a [GatewayListeners],
    /// The ListenerSet (`None`: the Gateway).
    pub set: Option<Key>,
    /// The Gateway (the ListenerSet's parent), and its `spec.tls.frontend`: client-certificate
    /// validation by port, for HTTPS listeners ([`super::frontend_tls`]).
    pub gateway: Key,
    pub frontend: Option<&'a GatewayTlsFrontend>,
}

impl<'a> Owner<'a> {
    pub fn gateway(gw: &'a Gateway) -> Owner<'a> {
        Owner {
            kind: "Gateway",
            namespace: gw.metadata.namespace.as_deref().unwrap_or_default(),
            generation: gw.metadata.generation.unwrap_or(0),
            listeners: &gw.spec.listeners,
            set: None,
            gateway: Key::new(
                gw.metadata.namespace.clone().unwrap_or_default(),
                gw.metadata.name.clone().unwrap_or_default(),
            ),
            frontend: (gw.spec.tls.as_ref()).and_then(|t| t.frontend.as_ref()),
        }
    }
}

/// One listener as attachment sees it.
#[derive(Debug)]
pub struct Listener<'a> {
    pub name: &'a str,
    /// The ListenerSet it comes from (`None`: the Gateway's own `spec.listeners`); routes
    /// reach it through a parentRef of that kind only (GEP-1713 "Route Attachment").
    pub set: Option<Key>,
    /// Namespace of the Gateway or ListenerSet that declares it (`allowedRoutes` `Same`).
    pub owner_namespace: &'a str,
    /// `protocol` as written.
    pub protocol: &'a str,
    pub hostname: Option<&'a str>,
    pub port: i32,
    pub https: bool,
    pub namespaces: AllowedNamespaces,
    /// `TLS`: its TLSRoutes are passed by SNI (through the proxy's SNI tables).
    pub tls_passthrough: bool,
    /// `TLS` with `tls.mode: Terminate` (the default): the proxy terminates TLS with the
    /// listener's certificate, then passes the plain bytes.
    pub tls_terminate: bool,
    /// `TCP` or `UDP`: served by the XDP path.
    pub l4: Option<crate::model::L4Protocol>,
    /// Route kinds it takes: `allowedRoutes.kinds` of those its protocol supports (by
    /// default all of them: HTTPRoute and GRPCRoute on HTTP and HTTPS listeners).
    pub route_kinds: Vec<String>,
    /// Accepted and programmed: its routes are served.
    pub served: bool,
    /// Routes attach to it and count in its `attachedRoutes` whatever its own conditions
    /// (Gateway API v1 `ListenerStatus.attachedRoutes`: attachment depends on
    /// `allowedRoutes` and parentRefs only, "even if the Accepted condition of an individual
    /// Listener is set to False"; conformance GatewayWithAttachedRoutes), but are served
    /// through it only when it is [`Self::served`]. False only when its Gateway (or
    /// ListenerSet's Gateway) is not accepted or has no address ([`unprogram`]).
    pub attachable: bool,
    /// Why it is not served, for the routes that name it.
    pub not_served: Option<String>,
    /// The port it is served on when served (`port`, checked).
    pub served_port: Option<u16>,
    /// An HTTPS listener's client-certificate validation (`None`: none).
    pub client_validation: Option<Arc<crate::model::FrontendValidation>>,
}

/// The listeners of `owner` and their status (in spec order); each HTTPS listener's
/// certificate goes into `certificates` by hostname (`""`: no hostname). Secrets and
/// ConfigMaps looked up go to `secrets` and `config_maps` (their changes re-translate). Whether another Gateway's listener holds the port is [`super::ports`]'s to
/// decide; conflicts with the listeners of another owner, [`super::listener_sets`]'.
pub fn listeners<'a>(
    owner: &Owner<'a>,
    objects: &Objects,
    ports: ProxyPorts,
    tls: &mut super::super::tls::TlsCache,
    certificates: &mut BTreeMap<String, Arc<TlsCertificate>>,
    secrets: &mut std::collections::HashSet<Key>,
    config_maps: &mut std::collections::HashSet<Key>,
) -> (Vec<Listener<'a>>, Vec<ListenerStatus>) {
    let generation = owner.generation;
    let cond = |t: &str, ok: bool, reason: &str, msg: &str| {
        StatusCondition::new(t, ok, reason, msg, generation)
    };
    let mut out = Vec::new();
    let mut statuses = Vec::new();
    // A ListenerSet's listeners are checked in the merged list's precedence instead, its own
    // earlier ones included ([`super::listener_sets::conflicts`]).
    let conflicts = match owner.set {
        None => conflicts(owner.listeners),
        Some(_) => vec![None; owner.listeners.len()],
    };
    for (i, l) in owner.listeners.iter().enumerate() {
        let https = l.protocol == "HTTPS";
        let l4 = match l.protocol.as_str() {
            "TCP" => Some(crate::model::L4Protocol::Tcp),
            "UDP" => Some(crate::model::L4Protocol::Udp),
            _ => None,
        };
        let mut conditions = Vec::new();
        let mut problem: Option<(String, String)> = None; // (reason, message): not accepted
        let mut resolved: Option<(String, String)> = None; // (reason, message): refs broken
        // The certificate an accepted listener presents: (its hostname, the certificate).
        let mut listener_cert = None;
        let (kinds, kinds_ok) = supported_kinds(l);
        // `allowedRoutes.kinds` naming a kind the listener cannot take: `ResolvedRefs: False,
        // InvalidRouteKinds` (conformance GatewayInvalidRouteKind), kept apart from the other
        // references: the kinds it can take are still served (`supportedKinds`), a listener
        // left with none serves nothing.
        let invalid_kinds = (!kinds_ok).then(|| {
            (
                "InvalidRouteKinds".to_string(),
                format!(
                    "allowedRoutes.kinds names a kind a {} listener does not take",
                    l.protocol
                ),
            )
        });
        let mut port = None;
        if l4.is_some() {
            if !(1..=65535).contains(&l.port) {
                problem = Some((
                    "PortUnavailable".into(),
                    format!("port {} is not a port number", l.port),
                ));
            }
        } else if l.protocol == "TLS" {
            // The HTTPS port (shared with HTTPS listeners and Ingresses) or a port of the
            // Gateway range, as HTTPS listeners: both are TLS on TCP. Passthrough or
            // Terminate (feature TLSRouteModeTerminate), both by SNI.
            match listener_port(l.port, true, "TLS", ports) {
                Ok(p) => port = Some(p),
                Err(msg) => problem = Some(("PortUnavailable".into(), msg)),
            }
            // A terminating one presents its certificate, as an HTTPS listener does.
            if problem.is_none() && !passthrough(l) {
                let refs = (l.tls.as_ref()).and_then(|t| t.certificate_refs.as_deref());
                match certificate(owner, refs.unwrap_or_default(), objects, tls, secrets) {
                    Ok(cert) => {
                        let host = l.hostname.clone().unwrap_or_default().to_ascii_lowercase();
                        listener_cert = Some((host, cert));
                    }
                    Err((reason, msg)) => resolved = Some((reason.into(), msg)),
                }
            }
        } else if l.protocol != "HTTP" && !https {
            problem = Some((
                "UnsupportedProtocol".into(),
                format!(
                    "protocol {} is not supported yet (HTTP, HTTPS, TLS, TCP and UDP are)",
                    l.protocol
                ),
            ));
        } else {
            match listener_port(l.port, https, &l.protocol, ports) {
                Ok(p) => port = Some(p),
                Err(msg) => problem = Some(("PortUnavailable".into(), msg)),
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
                    owner,
                    t.certificate_refs.as_deref().unwrap_or_default(),
                    objects,
                    tls,
                    secrets,
                ) {
                    Ok(cert) => {
                        let host = l.hostname.clone().unwrap_or_default().to_ascii_lowercase();
                        listener_cert = Some((host, cert));
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
        let mut client_validation = None;
        if https && problem.is_none() {
            let v = super::frontend_tls::resolve(
                &owner.gateway,
                owner.frontend,
                l.port,
                objects,
                config_maps,
            );
            if let Some((reason, msg)) = v.unresolved {
                resolved.get_or_insert((reason.into(), msg));
            }
            if let Some(msg) = v.no_valid_ca {
                problem = Some(("NoValidCACertificate".into(), msg));
            }
            client_validation = v.policy;
        }
        let conflicted = conflicts[i].clone();
        // A conflicted listener is not accepted, as a ListenerSet's is not
        // ([`super::listener_sets::conflicts`]), and the conflict is the reason even where
        // the listener has a problem of its own: conformance ListenerSetProtocolConflict and
        // TLSRouteListenerMixedTerminationNotSupported (whose Terminate listener is also
        // unsupported) expect `Accepted: False` with the conflict's reason.
        if let Some(reason) = &conflicted {
            problem = Some((reason.clone(), conflict_message(reason).into()));
        }
        match &problem {
            Some((reason, msg)) => conditions.push(cond("Accepted", false, reason, msg)),
            None => conditions.push(cond("Accepted", true, "Accepted", "listener accepted")),
        }
        // Only an accepted listener presents its certificate: one that is not accepted
        // (a conflict, no valid client CA) takes no connections of its own, so a client
        // gets no handshake that would verify against it (conformance
        // GatewayFrontendInvalidDefaultClientCertificateValidation).
        if let (None, Some((host, cert))) = (&problem, listener_cert) {
            certificates.entry(host).or_insert(cert);
        }
        let no_kinds = invalid_kinds.is_some() && kinds.is_empty();
        let resolved_any = resolved.as_ref().or(invalid_kinds.as_ref());
        match resolved_any {
            Some((reason, msg)) => conditions.push(cond("ResolvedRefs", false, reason, msg)),
            None => conditions.push(cond(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "references resolved",
            )),
        }
        match &conflicted {
            Some(reason) => {
                conditions.push(cond("Conflicted", true, reason, conflict_message(reason)))
            }
            None => conditions.push(cond("Conflicted", false, "NoConflicts", "no conflicts")),
        }
        // A listener whose certificate does not resolve serves nothing: HTTPS without a
        // certificate of its own would present another listener's.
        let served = problem.is_none() && resolved.is_none() && conflicted.is_none() && !no_kinds;
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
                conflicted.as_deref().unwrap_or("Invalid"),
                "listener is not served",
            ));
        }
        let not_served = (!served).then(|| {
            let why = problem
                .as_ref()
                .or(resolved_any)
                .map(|(r, m)| format!("{r}: {m}"))
                .or(conflicted.clone())
                .unwrap_or_default();
            format!("listener {} is not served ({why})", l.name)
        });
        let served_port = port.filter(|_| served);
        statuses.push(ListenerStatus {
            name: l.name.clone(),
            supported_kinds: kinds.clone(),
            attached_routes: 0,
            conditions,
            port: served_port.filter(|p| *p != ports.http && *p != ports.https),
        });
        out.push(Listener {
            name: &l.name,
            set: owner.set.clone(),
            owner_namespace: owner.namespace,
            protocol: &l.protocol,
            hostname: l.hostname.as_deref().filter(|h| !h.is_empty()),
            port: l.port,
            https,
            namespaces: allowed_namespaces(l),
            l4,
            tls_passthrough: l.protocol == "TLS",
            tls_terminate: l.protocol == "TLS" && !passthrough(l),
            route_kinds: kinds.iter().map(|(_, k)| k.clone()).collect(),
            served,
            // Spec (ListenerStatus.attachedRoutes): "Listener or Route status does not
            // impact successful attachment ... even if the Accepted condition of an
            // individual Listener is set to False"; `route_kinds` and `namespaces` decide.
            attachable: true,
            not_served,
            served_port,
            client_validation,
        });
    }
    (out, statuses)
}

/// The port a listener of `protocol` is served on, or why it cannot be: the proxy's own
/// port of its transport (`https`: TLS, the HTTPS port; else the HTTP port), or a port in
/// the Gateway range that is not the proxy's other port.
fn listener_port(port: i32, https: bool, protocol: &str, ports: ProxyPorts) -> Result<u16, String> {
    let (own, other) = if https {
        (ports.https, ports.http)
    } else {
        (ports.http, ports.https)
    };
    let name = |h: bool| if h { "HTTPS" } else { "HTTP" };
    let Ok(p) = u16::try_from(port) else {
        return Err(format!("port {port} is not a TCP port"));
    };
    if p == own {
        Ok(p)
    } else if p == other {
        Err(format!(
            "port {p} is the proxy's {} port; {protocol} listeners use {own} or a port in \
             --gateway-listener-ports ({})",
            name(!https),
            ports.gateway_range
        ))
    } else if ports.gateway_range.contains(p) {
        Ok(p)
    } else {
        Err(format!(
            "port {p} is outside --gateway-listener-ports ({}) and is not the proxy's {} \
             port ({own})",
            ports.gateway_range,
            name(https)
        ))
    }
}

/// The route kinds a listener protocol takes (Gateway API v1 `Listener.protocol`; GRPCRoute
/// on HTTP and HTTPS listeners as `GRPCRouteSpec` says).
pub fn route_kinds_of(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "HTTP" | "HTTPS" => &["HTTPRoute", "GRPCRoute"],
        "TLS" => &["TLSRoute"],
        "TCP" => &["TCPRoute"],
        "UDP" => &["UDPRoute"],
        _ => &[],
    }
}

/// `supportedKinds` (the protocol's route kinds unless `allowedRoutes.kinds` leaves them out)
/// and whether every kind listed is one the listener's protocol takes.
fn supported_kinds(l: &GatewayListeners) -> (Vec<(String, String)>, bool) {
    let own = route_kinds_of(&l.protocol);
    if own.is_empty() {
        return (Vec::new(), true);
    }
    let all = || {
        own.iter()
            .map(|k| (GROUP.to_string(), k.to_string()))
            .collect()
    };
    let listed = l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref());
    match listed {
        None => (all(), true),
        Some(kinds) if kinds.is_empty() => (all(), true),
        Some(kinds) => {
            let mut ok = true;
            let mut out = Vec::new();
            for k in kinds {
                let group = k.group.as_deref().unwrap_or(GROUP);
                if group == GROUP && own.contains(&k.kind.as_str()) {
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

/// A Gateway's or ListenerSet's problems where Events and `explain` look (a ListenerSet's
/// owner may not read its Gateway's status, nor a Gateway's its listeners'): the owner not
/// accepted (`ListenersNotValid`, `NotAllowed`, `ParentNotAccepted`, `InvalidParameters`, ...),
/// and each listener not accepted, `Conflicted`, or whose references do not resolve
/// (`InvalidCertificateRef`, `RefNotPermitted`, `InvalidRouteKinds`), with the condition's
/// reason and message.
pub fn diagnose(
    owner: &ObjectRef,
    conditions: &[StatusCondition],
    listeners: &[ListenerStatus],
    diags: &mut super::super::diagnostics::Diagnostics,
) {
    if let Some(c) = conditions
        .iter()
        .find(|c| c.type_ == "Accepted" && !c.status)
    {
        diags.error(owner, &c.reason, c.message.clone());
    }
    for l in listeners {
        let mut said: Vec<&str> = Vec::new();
        for c in &l.conditions {
            let problem = match c.type_.as_str() {
                "Accepted" | "ResolvedRefs" => !c.status,
                "Conflicted" => c.status,
                _ => false,
            };
            // A conflict refuses the listener with the same reason: one Event.
            if problem && !said.contains(&c.reason.as_str()) {
                said.push(&c.reason);
                diags.error(
                    owner,
                    &c.reason,
                    format!("listener {}: {}", l.name, c.message),
                );
            }
        }
    }
}

/// Takes a listener out of service for its Gateway's sake (its own conditions stand):
/// `Programmed: False, Invalid` with `message`, no port.
pub fn unprogram(l: &mut Listener<'_>, status: &mut ListenerStatus, message: &str) {
    let generation = (status.conditions.first()).map_or(0, |c| c.observed_generation);
    for c in status
        .conditions
        .iter_mut()
        .filter(|c| c.type_ == "Programmed")
    {
        *c = StatusCondition::new("Programmed", false, "Invalid", message, generation);
    }
    l.served = false;
    l.attachable = false;
    l.not_served = Some(format!("listener {} is not served ({message})", l.name));
    l.served_port = None;
    status.port = None;
}

/// Takes a listener that was served out of service: `Accepted: False` with `reason`,
/// `Programmed: False`. Routes still attach to it ([`Listener::attachable`]) and are not
/// served through it.
pub fn refuse(l: &mut Listener<'_>, status: &mut ListenerStatus, reason: &str, message: String) {
    let generation = status
        .conditions
        .first()
        .map(|c| c.observed_generation)
        .unwrap_or(0);
    for c in &mut status.conditions {
        match c.type_.as_str() {
            "Accepted" => {
                *c = StatusCondition::new("Accepted", false, reason, message.clone(), generation)
            }
            "Programmed" => {
                *c = StatusCondition::new(
                    "Programmed",
                    false,
                    "Invalid",
                    "listener is not served",
                    generation,
                )
            }
            _ => {}
        }
    }
    l.served = false;
    l.served_port = None;
    status.port = None;
    l.not_served = Some(format!(
        "listener {} is not served ({reason}: {message})",
        l.name
    ));
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

/// Whether a `TLS` listener passes connections through (`tls.mode: Passthrough`) rather
/// than terminating them (`Terminate`, the default).
fn passthrough(l: &GatewayListeners) -> bool {
    l.tls.as_ref().and_then(|t| t.mode.as_ref()) == Some(&GatewayListenersTlsMode::Passthrough)
}

fn conflict_message(reason: &str) -> &'static str {
    if reason == "ProtocolConflict" {
        "another listener on the same port has a protocol (or TLS mode) this one cannot share it with"
    } else {
        "another listener has the same port and hostname"
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
                if i == j {
                    continue;
                }
                let hostname = |l: &'_ GatewayListeners| l.hostname.clone();
                match conflict(
                    (&a.protocol, a.port, hostname(a).as_deref()),
                    (&b.protocol, b.port, hostname(b).as_deref()),
                ) {
                    Some(r @ "ProtocolConflict") => {
                        found = Some(r.to_string());
                        break;
                    }
                    Some(r) => found = Some(r.to_string()),
                    None => {}
                }
            }
            found
        })
        .collect()
}

/// Why two listeners `(protocol, port, hostname)` of one Gateway (its own and its
/// ListenerSets' merged) cannot both be served: `ProtocolConflict` (one port, protocols that
/// cannot share it), `HostnameConflict` (one port, same protocol, same hostname); `None`
/// when they can.
pub fn conflict(
    (pa, port_a, ha): (&str, i32, Option<&str>),
    (pb, port_b, hb): (&str, i32, Option<&str>),
) -> Option<&'static str> {
    if port_a != port_b {
        return None;
    }
    // Different transports never collide (DNS serves both on 53): UDP is the only listener
    // protocol over UDP, every other one (HTTP, HTTPS, TLS, TCP) is over TCP. The spec's
    // distinctness rules compare listeners that one connection could reach.
    if (pa == "UDP") != (pb == "UDP") {
        return None;
    }
    // HTTPS and TLS listeners share a port, told apart by SNI (hostname); so do TLS ones
    // that terminate and ones that pass through (TLSRouteModeMixed: each SNI entry says).
    let tls_pair = |x: &str, y: &str| (x == "HTTPS" && y == "TLS") || (x == "TLS" && y == "HTTPS");
    if pa != pb && !tls_pair(pa, pb) {
        return Some("ProtocolConflict");
    }
    let host = |h: Option<&str>| h.unwrap_or("").to_ascii_lowercase();
    (host(ha) == host(hb)).then_some("HostnameConflict")
}

/// The first certificate of `refs` (Secrets only; another namespace needs a ReferenceGrant
/// from the Gateway), or the reason it does not resolve (`InvalidCertificateRef`,
/// `RefNotPermitted`).
fn certificate(
    owner: &Owner<'_>,
    refs: &[gateway_api::apis::standard::gateways::GatewayListenersTlsCertificateRefs],
    objects: &Objects,
    tls: &mut super::super::tls::TlsCache,
    secrets: &mut std::collections::HashSet<Key>,
) -> Result<Arc<TlsCertificate>, (&'static str, String)> {
    let Some(r) = refs.first() else {
        return Err((
            "InvalidCertificateRef",
            "tls.certificateRefs is empty".into(),
        ));
    };
    let reference = reference_grant::ObjectReference {
        field: "certificateRef",
        from_kind: owner.kind,
        from_namespace: owner.namespace,
        to_kind: "Secret",
        group: r.group.as_deref(),
        kind: r.kind.as_deref(),
        namespace: r.namespace.as_deref(),
        name: &r.name,
    };
    tls_secret(objects, &reference, "InvalidCertificateRef", tls, secrets)
}

/// The certificate and key of the `kubernetes.io/tls` Secret `reference` names (another
/// namespace needs a ReferenceGrant), or why not: `invalid` (the field's own reason, e.g.
/// `InvalidCertificateRef`) for another kind, a missing Secret or one that does not parse,
/// `RefNotPermitted` without a grant. The Secret looked up goes to `secrets`.
pub(super) fn tls_secret(
    objects: &Objects,
    reference: &reference_grant::ObjectReference<'_>,
    invalid: &'static str,
    tls: &mut super::super::tls::TlsCache,
    secrets: &mut std::collections::HashSet<Key>,
) -> Result<Arc<TlsCertificate>, (&'static str, String)> {
    let key = reference_grant::checked(objects, reference).map_err(|p| match p {
        reference_grant::RefProblem::WrongKind(m) => (invalid, m),
        reference_grant::RefProblem::NotPermitted(m) => ("RefNotPermitted", m),
    })?;
    secrets.insert(key.clone());
    let Some(secret) = objects.secrets.get(&key) else {
        return Err((invalid, format!("Secret {key} does not exist")));
    };
    let oref = ObjectRef::new(ObjectKind::Secret, key.namespace.clone(), key.name.clone());
    tls.get(&oref, secret)
        .map_err(|e| (invalid, format!("Secret {key}: {e}")))
}

/// Whether namespace `ns` (its labels from the store, with the `kubernetes.io/metadata.name`
/// label the API server gives every Namespace) is allowed by `allowed` for a listener
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
            let mut labels = objects
                .namespaces
                .get(&Key::new("", ns))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default();
            // The API server gives every Namespace this label (Kubernetes 1.22+); a Namespace
            // from the manifest directory, or not in the store yet, has it too.
            labels
                .entry("kubernetes.io/metadata.name".into())
                .or_insert_with(|| ns.to_string());
            let labels = &labels;
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
