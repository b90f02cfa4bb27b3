//! Gateway API (standard channel, v1): GatewayClasses of our controller, their Gateways and
//! the HTTPRoutes attached to them, translated into the same L7 tables as Ingresses, plus the
//! status the spec asks for. Pure, like the rest of translation.
//!
//! - [`addresses`]: which addresses each Gateway is served on (`--gateway-address-pool`).
//! - [`listeners`]: which listeners are served, certificates, `allowedRoutes`.
//! - [`listener_sets`]: ListenerSets' listeners merged into their Gateway's (GEP-1713).
//! - [`attachment`]: parentRefs -> listeners, with the route parent's conditions.
//! - [`hostnames`]: listener x route hostname intersection (multi-label wildcards).
//! - [`matching`]: HTTPRoute matches and the precedence across routes.
//! - [`filters`]: header modifiers, redirect, URL rewrite.
//! - [`backends`]: weighted backendRefs; unresolvable shares answer 500.
//! - [`backend_tls`]: BackendTLSPolicies: verified TLS to the Services they target.
//! - [`grpc`]: GRPCRoutes, read as the HTTPRoutes they are equivalent to.
//! - [`reference_grant`]: cross-namespace permission.
//! - [`l4`]: TCPRoute and UDPRoute on TCP/UDP listeners, as L4 services of the XDP path.
//! - [`ports`]: which listener holds which port, for every protocol.
//! - [`tls_passthrough`]: TLSRoute on TLS passthrough listeners, as the proxy's SNI table.
//! - [`timeouts`]: `rules[].timeouts` (request, backendRequest).
//! - [`retry`]: `rules[].retry` (experimental, GEP-1731) on the proxy's retry machinery.

pub mod addresses;
pub mod attachment;
pub mod backend_client_cert;
pub mod backend_tls;
pub mod backends;
pub mod cel;
pub mod features;
pub mod filters;
pub mod frontend_tls;
pub mod grpc;
pub mod hostnames;
pub mod l4;
pub mod listener_sets;
pub mod listeners;
pub mod matching;
pub mod ports;
pub mod reference_grant;
pub mod retry;
pub mod strays;
pub mod timeouts;
pub mod tls_passthrough;

#[cfg(test)]
mod address_tests;
#[cfg(test)]
mod frontend_tls_tests;
#[cfg(test)]
mod l4_tests;
#[cfg(test)]
mod listener_set_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use crate::store::httproutes::HttpRoute;

pub use listeners::{PortRange, ProxyPorts};

use super::{diagnostics::Diagnostics, endpoints::EndpointIndex, tls::TlsCache};
use crate::{
    model::{
        BackendProtocol, GatewayApiStatus, GatewayStatusOut, L7Config, ListenerProtocol,
        ObjectKind, ObjectRef, PathMatch, PathModifier, Route, RouteAction, RouteOrigin,
        RoutePolicy, StatusCondition, TlsCertificate, VirtualHost,
    },
    store::{Key, Objects},
};

/// `gateway.networking.k8s.io`.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// A list field of a generated type, optional (`Option<Vec<T>>`) or required (`Vec<T>`)
/// depending on the API version and gateway-api release: read the same way.
pub(crate) trait Listed<T> {
    fn listed(&self) -> &[T];
}

impl<T> Listed<T> for Option<Vec<T>> {
    fn listed(&self) -> &[T] {
        self.as_deref().unwrap_or_default()
    }
}

impl<T> Listed<T> for Vec<T> {
    fn listed(&self) -> &[T] {
        self
    }
}

/// What the Gateway API objects add to a snapshot.
#[derive(Debug, Default)]
pub struct Output {
    /// Host pattern (exact, `*.` wildcard, `""` for any host) -> routes, most specific first.
    pub hosts: BTreeMap<String, Vec<Route>>,
    /// HTTPS listener certificates by hostname (`""`: a listener without one).
    pub certificates: BTreeMap<String, Arc<TlsCertificate>>,
    /// Ports served listeners claimed besides the proxy's own, with their protocol.
    pub listener_ports: BTreeMap<u16, ListenerProtocol>,
    /// The proxy's own ports (HTTP, HTTPS) a served HTTP or HTTPS listener shares.
    pub shared_ports: BTreeSet<u16>,
    /// Hostnames of served HTTPS listeners by port (`""`: a listener without one), sorted.
    pub https_hosts: BTreeMap<u16, Vec<String>>,
    pub status: GatewayApiStatus,
    /// Client-certificate validation of served HTTPS listeners of Gateways without
    /// addresses ([`frontend_tls`]; [`L7Config::gateway_client_validation`]).
    pub client_validation: crate::model::ClientValidationByPort,
    /// SNI table of TLS passthrough listeners and TLSRoutes on the proxy's HTTPS port
    /// ([`tls_passthrough`]).
    pub sni: BTreeMap<String, crate::model::SniAction>,
    /// No HTTPS listener shares that port with the passthrough ones: what `sni` does not
    /// cover is closed ([`crate::model::SniPort::terminates`]).
    pub sni_closes_unmatched: bool,
    /// The same for the other ports TLS passthrough listeners open.
    pub sni_ports: BTreeMap<u16, crate::model::SniPort>,
    /// L4 services of TCP and UDP listeners ([`l4`]), sorted by id.
    pub l4: Vec<crate::model::L4Service>,
    /// What Gateways with addresses serve, by address ([`L7Config::gateway_addresses`]).
    pub addresses: BTreeMap<std::net::IpAddr, crate::model::GatewayAddress>,
    /// Services, Secrets and ConfigMaps looked up (for re-translation on their changes).
    pub services: HashSet<Key>,
    pub secrets: HashSet<Key>,
    pub config_maps: HashSet<Key>,
}

/// Inputs besides the objects.
pub struct Context<'a> {
    pub controller_name: &'a str,
    pub ports: ProxyPorts,
    /// What Gateways' `status.addresses` say (IPs or host names).
    pub addresses: &'a [String],
    /// `--gateway-address-pool` ([`addresses`]).
    pub pool: &'a addresses::AddressPool,
    /// The Services' L4 services: their node ports are not free for TCP/UDP listeners.
    pub l4_services: &'a [crate::model::L4Service],
}

pub fn translate(
    objects: &Objects,
    cx: &Context<'_>,
    endpoints: &EndpointIndex<'_>,
    tls: &mut TlsCache,
    diags: &mut Diagnostics,
) -> Output {
    let mut out = Output::default();
    strays::report(objects, cx.controller_name, diags);
    // GatewayClasses of our controller: Accepted, unless they name parameters. No parameters
    // kind is ours to read, so the spec's "If the referent cannot be found, refers to an
    // unsupported kind ... the GatewayClass SHOULD be rejected with the Accepted condition
    // set to False and an InvalidParameters reason" applies (GatewayClassSpec.parametersRef),
    // and its Gateways are not ours to serve.
    let mut classes = HashSet::new();
    for (key, gc) in &objects.gateway_classes {
        if gc.spec.controller_name != cx.controller_name {
            continue;
        }
        let generation = gc.metadata.generation.unwrap_or(0);
        let oref = ObjectRef::new(ObjectKind::GatewayClass, "", key.name.clone());
        let accepted = match &gc.spec.parameters_ref {
            None => StatusCondition::new(
                "Accepted",
                true,
                "Accepted",
                "handled by xdp-ingress",
                generation,
            ),
            Some(p) => {
                let msg = format!(
                    "parametersRef names {}/{} {}, which xdp-ingress does not read; \
                     its Gateways are not served",
                    p.group, p.kind, p.name
                );
                diags.error(&oref, "InvalidParameters", msg.clone());
                StatusCondition::new("Accepted", false, "InvalidParameters", msg, generation)
            }
        };
        if accepted.status {
            classes.insert(key.name.clone());
        }
        out.status.classes.insert(oref, vec![accepted]);
    }
    // Our Gateways and their listeners; then their ports, for every protocol in one pass
    // (the oldest Gateway's listener keeps a port another wants).
    // A Gateway's listeners are its own then its ListenerSets', in the spec's precedence.
    let ours: Vec<&Key> = (objects.gateways.iter())
        .filter(|(_, gw)| classes.contains(&gw.spec.gateway_class_name))
        .map(|(k, _)| k)
        .collect();
    let assigned = addresses::assign(
        (ours.iter()).filter_map(|k| objects.gateways.get(*k).map(|gw| (*k, gw.as_ref()))),
        cx.pool,
    );
    // A Gateway with addresses keeps its certificates to itself (chosen on its addresses).
    let mut own_certificates: BTreeMap<Key, BTreeMap<String, Arc<TlsCertificate>>> =
        BTreeMap::new();
    let sets = listener_sets::read(objects, &ours);
    let mut verdicts = listener_sets::Verdicts::new();
    let mut gateways = BTreeMap::new();
    for key in ours {
        let Some(gw) = objects.gateways.get(key) else {
            continue;
        };
        let addressed = assigned.get(key).and_then(|a| a.assigned()).is_some();
        let mut mine = BTreeMap::new();
        let certificates = if addressed {
            &mut mine
        } else {
            &mut out.certificates
        };
        let (mut ls, mut statuses) = listeners::listeners(
            &listeners::Owner::gateway(gw),
            objects,
            cx.ports,
            tls,
            certificates,
            &mut out.secrets,
            &mut out.config_maps,
        );
        for set in sets.iter().filter(|s| s.gateway == *key) {
            let namespace = &set.key.namespace;
            if !listener_sets::admitted(gw, namespace, objects) {
                verdicts.insert(set.key.clone(), listener_sets::Verdict::NotAllowed);
                continue;
            }
            let entries = match &set.listeners {
                Ok(entries) => entries,
                Err(e) => {
                    verdicts.insert(set.key.clone(), listener_sets::Verdict::Invalid(e.clone()));
                    continue;
                }
            };
            let owner = listeners::Owner {
                kind: "ListenerSet",
                namespace,
                generation: set.generation(),
                listeners: entries,
                set: Some(set.key.clone()),
                gateway: key.clone(),
                frontend: (gw.spec.tls.as_ref()).and_then(|t| t.frontend.as_ref()),
            };
            let certificates = if addressed {
                &mut mine
            } else {
                &mut out.certificates
            };
            let (more, more_statuses) = listeners::listeners(
                &owner,
                objects,
                cx.ports,
                tls,
                certificates,
                &mut out.secrets,
                &mut out.config_maps,
            );
            let from = ls.len();
            ls.extend(more);
            statuses.extend(more_statuses);
            listener_sets::conflicts(&mut ls, &mut statuses, from);
            verdicts.insert(set.key.clone(), listener_sets::Verdict::Attached);
        }
        if addressed {
            own_certificates.insert(key.clone(), mine);
        }
        gateways.insert(key.clone(), (gw.as_ref(), ls, statuses));
    }
    // `spec.infrastructure.parametersRef`: no parameters kind is ours to read, so the spec's
    // "cannot be found, refers to an unsupported kind" applies: the Gateway is rejected and
    // serves nothing (its ports stay free for others).
    let mut rejected = BTreeMap::new();
    for (key, (gw, ls, statuses)) in gateways.iter_mut() {
        let Some(p) = (gw.spec.infrastructure.as_ref()).and_then(|i| i.parameters_ref.as_ref())
        else {
            continue;
        };
        let msg = format!(
            "infrastructure.parametersRef names {}/{} {}, which xdp-ingress does not read",
            p.group, p.kind, p.name
        );
        let oref = ObjectRef::new(ObjectKind::Gateway, &key.namespace, &key.name);
        diags.error(&oref, "InvalidParameters", msg.clone());
        for (l, s) in ls.iter_mut().zip(statuses.iter_mut()) {
            listeners::unprogram(l, s, "the Gateway is not accepted (InvalidParameters)");
        }
        rejected.insert(key.clone(), ("InvalidParameters", msg));
    }
    // Addresses it cannot be served on: an unsupported type rejects the Gateway; an address
    // not usable or not assignable leaves it accepted but not programmed. Either way it
    // serves nothing (its ports stay free for others).
    let mut unprogrammed: BTreeMap<Key, (&'static str, String)> = BTreeMap::new();
    for (key, (_, ls, statuses)) in gateways.iter_mut() {
        let (reason, msg, accepted) = match assigned.get(key) {
            Some(addresses::Addresses::Unsupported(m)) => ("UnsupportedAddress", m, false),
            Some(addresses::Addresses::NotUsable(m)) => ("AddressNotUsable", m, true),
            Some(addresses::Addresses::NotAssigned(m)) => ("AddressNotAssigned", m, true),
            _ => continue,
        };
        if rejected.contains_key(key) {
            continue;
        }
        let oref = ObjectRef::new(ObjectKind::Gateway, &key.namespace, &key.name);
        diags.error(&oref, reason, msg.clone());
        let why = format!("the Gateway has no address to be served on ({reason})");
        for (l, s) in ls.iter_mut().zip(statuses.iter_mut()) {
            listeners::unprogram(l, s, &why);
        }
        if accepted {
            unprogrammed.insert(key.clone(), (reason, msg.clone()));
        } else {
            rejected.insert(key.clone(), (reason, msg.clone()));
        }
    }
    ports::claim(&mut gateways, ports::held(cx.l4_services, cx.ports), |k| {
        assigned.get(k).and_then(|a| a.assigned())
    });
    // A Gateway none of whose own listeners is accepted serves no ListenerSet either.
    for (_, (_, ls, statuses)) in gateways.iter_mut() {
        let own_accepted = ls.iter().zip(statuses.iter()).any(|(l, s)| {
            l.set.is_none()
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Accepted" && c.status)
        });
        if own_accepted {
            continue;
        }
        for (l, s) in ls.iter_mut().zip(statuses.iter_mut()) {
            if l.set.is_some() && l.served {
                listeners::refuse(
                    l,
                    s,
                    "ParentNotAccepted",
                    "the Gateway is not accepted".into(),
                );
                // Routes do not attach through a Gateway that is not accepted.
                l.attachable = false;
            }
        }
    }
    let at = |key: &Key| assigned.get(key).and_then(|a| a.assigned());
    for (key, (_, ls, _)) in gateways.iter() {
        let mut own = crate::model::GatewayAddress {
            certificates: own_certificates.remove(key).unwrap_or_default(),
            ..Default::default()
        };
        for l in ls.iter().filter(|l| l.l4.is_none()) {
            let Some(p) = l.served_port else { continue };
            let protocol = if l.tls_passthrough && p != cx.ports.https {
                ListenerProtocol::TlsPassthrough
            } else if l.https || l.tls_passthrough {
                ListenerProtocol::Https
            } else {
                ListenerProtocol::Http
            };
            join_protocol(&mut own.ports, p, protocol);
            if p != cx.ports.http && p != cx.ports.https {
                join_protocol(&mut out.listener_ports, p, protocol);
            } else if !l.tls_passthrough {
                out.shared_ports.insert(p);
            }
            if l.https {
                let host = l.hostname.unwrap_or_default().to_ascii_lowercase();
                if let Some(v) = &l.client_validation {
                    let by_host = own.client_validation.entry(p).or_default();
                    by_host.entry(host.clone()).or_insert_with(|| Arc::clone(v));
                }
                own.https_hosts.entry(p).or_default().push(host);
            }
        }
        match at(key) {
            Some(ips) => {
                for ip in ips {
                    out.addresses.insert(*ip, own.clone());
                }
            }
            None => {
                for (p, hosts) in own.https_hosts {
                    out.https_hosts.entry(p).or_default().extend(hosts);
                }
                // Gateways in age order: the oldest keeps a port and hostname both name.
                for (p, by_host) in own.client_validation {
                    let mine = out.client_validation.entry(p).or_default();
                    for (host, v) in by_host {
                        mine.entry(host).or_insert(v);
                    }
                }
            }
        }
    }
    let https_hosts = (out.https_hosts.values_mut()).chain(
        out.addresses
            .values_mut()
            .flat_map(|a| a.https_hosts.values_mut()),
    );
    for hosts in https_hosts {
        hosts.sort();
        hosts.dedup();
    }
    // Routes: attachment, status, and the routes they add.
    let policies = backend_tls::Policies::read(objects);
    out.config_maps.extend(policies.config_maps.iter().cloned());
    // Gateways' client certificates toward backends, and their age (the oldest parent of a
    // route that has one decides).
    let backend_certs: BTreeMap<Key, (i64, _)> = (gateways.iter())
        .filter_map(|(key, (gw, _, _))| {
            let resolved = backend_client_cert::resolve(key, gw, objects, tls, &mut out.secrets)?;
            let created = (gw.metadata.creation_timestamp.as_ref()).map(|t| t.0.as_second());
            Some((key.clone(), (created.unwrap_or(0), resolved)))
        })
        .collect();
    // A policy not as written says so where Events and `explain` look.
    for p in policies.all.values() {
        for c in p.conditions.iter().filter(|c| !c.status) {
            diags.error(&p.object, &c.reason, c.message.clone());
        }
    }
    let mut cache = HashMap::new();
    let mut routes: Vec<(String, Route)> = Vec::new();
    let mut grpc_routes = Vec::new();
    for (key, gr) in &objects.grpc_routes {
        match grpc::as_http_route(gr) {
            Ok(hr) => grpc_routes.push((key, hr)),
            Err(e) => {
                let oref = ObjectRef::new(ObjectKind::GRPCRoute, &key.namespace, &key.name);
                diags.error(&oref, "InvalidRoute", format!("not served: {e}"));
            }
        }
    }
    let all = (objects.http_routes.iter())
        .map(|(k, r)| (ObjectKind::HTTPRoute, k, &**r))
        .chain(
            grpc_routes
                .iter()
                .map(|(k, r)| (ObjectKind::GRPCRoute, *k, r)),
        );
    let attached: Vec<_> = all
        .map(|(kind, key, hr)| {
            let a = attachment::attach(hr, kind, key, &mut gateways, objects);
            (kind, key, hr, a)
        })
        .collect();
    let lost = kind_conflicts(&attached, &mut gateways);
    for (kind, key, hr, mut attached) in attached {
        let oref = ObjectRef::new(kind, key.namespace.clone(), key.name.clone());
        if attached.parents.is_empty() {
            continue;
        }
        let generation = hr.metadata.generation.unwrap_or(0);
        // Lost to a route of the other kind on a Gateway: not served through it.
        let lost_on: Vec<Key> = (lost.iter())
            .filter(|(k, r, _)| *k == kind && *r == key)
            .map(|(_, _, gw)| gw.clone())
            .collect();
        if !lost_on.is_empty() {
            for p in &mut attached.parents {
                if lost_on.contains(&p.gateway) && p.accepted.status {
                    p.accepted = StatusCondition::new(
                        "Accepted",
                        false,
                        "HostnameConflict",
                        "an older HTTPRoute or GRPCRoute serves a hostname of this route on the same listener",
                        generation,
                    );
                }
            }
        }
        let used = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let client_certificate = (attached.parents.iter())
            .filter(|p| p.accepted.status)
            .filter_map(|p| match backend_certs.get(&p.gateway) {
                Some((created, Ok(c))) => Some(((*created, p.gateway.clone()), c)),
                _ => None,
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, c)| c);
        let mut built = build_routes(
            hr,
            key,
            &oref,
            (&policies, &used, client_certificate),
            objects,
            endpoints,
            &mut cache,
            &mut out.services,
            diags,
        );
        // A refused route serves none of its rules.
        if built.rejected.is_some() {
            built.routes.clear();
        }
        // The policies this route's backends use get an ancestor per Gateway it is on.
        for policy in used.into_inner() {
            let Some(p) = policies.all.get(&policy) else {
                continue;
            };
            for parent in attached.parents.iter().filter(|p| p.accepted.status) {
                let ns = &key.namespace;
                backend_tls::add_ancestor(&mut out.status.policies, p, &parent.parent_ref, ns);
            }
        }
        let resolved = match &built.problem {
            Some((reason, msg)) => {
                StatusCondition::new("ResolvedRefs", false, reason, msg.clone(), generation)
            }
            None => StatusCondition::new(
                "ResolvedRefs",
                true,
                "ResolvedRefs",
                "all references resolved",
                generation,
            ),
        };
        let mut parents = Vec::new();
        let served = attached.served(&lost_on, at);
        for p in attached.parents {
            let mut conditions = vec![p.accepted.clone()];
            let mut partially = None;
            if let (Some(msg), true) = (&built.rejected, conditions[0].status) {
                conditions[0] = StatusCondition::new(
                    "Accepted",
                    false,
                    "UnsupportedValue",
                    msg.clone(),
                    generation,
                );
            } else if let (Some(msg), true) = (&built.unsupported, conditions[0].status) {
                if built.routes.is_empty() {
                    conditions[0] = StatusCondition::new(
                        "Accepted",
                        false,
                        "UnsupportedValue",
                        msg.clone(),
                        generation,
                    );
                } else {
                    // Spec (RouteConditionPartiallyInvalid, "Drop Rule(s)"): the valid rules
                    // are served, the route stays Accepted, and the message says what was
                    // dropped.
                    partially = Some(StatusCondition::new(
                        "PartiallyInvalid",
                        true,
                        "UnsupportedValue",
                        format!("Dropped Rule(s): {msg}"),
                        generation,
                    ));
                }
            }
            // Spec (ListenerStatus.attachedRoutes): only routes `Accepted: True` count.
            if p.accepted.status && !conditions[0].status {
                for (gw, li, _) in &p.listeners {
                    if let Some(s) = (gateways.get_mut(gw)).and_then(|g| g.2.get_mut(*li)) {
                        s.attached_routes = (s.attached_routes - 1).max(0);
                    }
                }
            }
            conditions.push(resolved.clone());
            conditions.extend(partially);
            parents.push(crate::model::RouteParentStatus {
                parent_ref: p.parent_ref,
                conditions,
            });
        }
        out.status.routes.insert(oref, parents);
        // One copy per host and address set: a Gateway with addresses serves the route only
        // on them, the others on every address no Gateway claims.
        for ((host, addresses), via) in served {
            // A route attached to HTTP listeners only is not served over TLS, and the
            // reverse; and only on its listeners' ports (the proxy keys routes by host).
            let tls = match (via.http, via.https) {
                (true, false) => Some(false),
                (false, true) => Some(true),
                _ => None,
            };
            let ports: Vec<u16> = via.ports.into_iter().collect();
            for r in &built.routes {
                let mut r = r.clone();
                r.matches.tls = tls;
                r.matches.set_more(|m| {
                    m.listener_ports = Some(ports.clone());
                    m.gateway_addresses = addresses.clone();
                });
                routes.push((host.clone(), r));
            }
        }
    }
    out.l4 = l4::translate(
        objects,
        &mut gateways,
        at,
        endpoints,
        &mut out.services,
        diags,
        &mut out.status.routes,
    );
    let sni = tls_passthrough::translate(
        objects,
        &mut gateways,
        at,
        (endpoints, &policies),
        &mut cache,
        &mut out.services,
        diags,
        (&mut out.status.routes, &mut out.status.policies),
    );
    for ((ips, port), table) in sni {
        match ips {
            None if port == cx.ports.https => {
                out.sni = table.sni;
                out.sni_closes_unmatched = !table.terminates;
            }
            None => {
                out.sni_ports.insert(port, table);
            }
            Some(ips) => {
                for ip in ips {
                    let a = out.addresses.entry(ip).or_default();
                    if port == cx.ports.https {
                        a.sni = table.sni.clone();
                        a.sni_closes_unmatched = !table.terminates;
                    } else {
                        a.sni_ports.insert(port, table.clone());
                    }
                }
            }
        }
    }
    routes.sort_by_cached_key(|(h, r)| (h.clone(), matching::precedence(&r.matches, &r.origin)));
    for (host, r) in routes {
        out.hosts.entry(host).or_default().push(r);
    }
    let mut set_listeners: BTreeMap<Key, Vec<crate::model::ListenerStatus>> = BTreeMap::new();
    let mut parent_accepted: BTreeMap<Key, bool> = BTreeMap::new();
    for (key, (gw, ls, statuses)) in gateways {
        let generation = gw.metadata.generation.unwrap_or(0);
        // The Gateway's status is about its own listeners; each ListenerSet's, about its.
        let mut own = Vec::new();
        for (l, s) in ls.iter().zip(statuses) {
            match &l.set {
                None => own.push(s),
                Some(set) => set_listeners.entry(set.clone()).or_default().push(s),
            }
        }
        let mut conditions = gateway_conditions(&own, generation);
        // Spec (GatewaySpec.tls.frontend, mode): a Gateway that lets clients through without
        // a valid certificate says so.
        let frontend = (gw.spec.tls.as_ref()).and_then(|t| t.frontend.as_ref());
        if frontend.is_some_and(frontend_tls::insecure_fallback) {
            conditions.push(StatusCondition::new(
                "InsecureFrontendValidationMode",
                true,
                "ConfigurationChanged",
                "client certificate validation allows connections without a valid certificate \
                 (mode AllowInsecureFallback)",
                generation,
            ));
        }
        if let Some((reason, msg)) = rejected.get(&key) {
            conditions[0] = StatusCondition::new("Accepted", false, reason, &**msg, generation);
        }
        if let Some((reason, msg)) = unprogrammed.get(&key) {
            conditions[1] = StatusCondition::new("Programmed", false, reason, &**msg, generation);
        }
        parent_accepted.insert(key.clone(), conditions[0].status);
        let oref = ObjectRef::new(ObjectKind::Gateway, key.namespace.clone(), key.name.clone());
        if let Some((_, resolved)) = backend_certs.get(&key) {
            let c = backend_client_cert::condition(resolved, generation);
            if !c.status {
                diags.error(&oref, &c.reason, c.message.clone());
            }
            conditions.push(c);
        }
        // InvalidParameters said so already.
        if !rejected.contains_key(&key) {
            listeners::diagnose(&oref, &conditions, &own, diags);
        }
        let attached_listener_sets = (sets.iter().filter(|s| s.gateway == key))
            .filter(|s| matches!(verdicts.get(&s.key), Some(listener_sets::Verdict::Attached)))
            .filter(|s| {
                let listeners = set_listeners
                    .get(&s.key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let c = listener_sets::conditions(
                    &listener_sets::Verdict::Attached,
                    listeners,
                    conditions[0].status,
                    0,
                );
                c[0].status
            })
            .count();
        out.status.gateways.insert(
            oref,
            GatewayStatusOut {
                // Where it is served: its own addresses, else the node's; none when it has
                // no address it can use.
                addresses: match assigned.get(&key) {
                    Some(addresses::Addresses::Assigned(ips)) => {
                        ips.iter().map(ToString::to_string).collect()
                    }
                    None | Some(addresses::Addresses::Node) => cx.addresses.to_vec(),
                    Some(_) => Vec::new(),
                },
                conditions,
                listeners: own,
                attached_listener_sets: i32::try_from(attached_listener_sets).unwrap_or(i32::MAX),
            },
        );
    }
    for set in &sets {
        let Some(verdict) = verdicts.get(&set.key) else {
            continue;
        };
        let listeners = set_listeners.remove(&set.key).unwrap_or_default();
        let parent_ok = parent_accepted.get(&set.gateway).copied().unwrap_or(false);
        let oref = ObjectRef::new(ObjectKind::ListenerSet, &set.key.namespace, &set.key.name);
        let conditions =
            listener_sets::conditions(verdict, &listeners, parent_ok, set.generation());
        listeners::diagnose(&oref, &conditions, &listeners, diags);
        out.status.listener_sets.insert(
            oref,
            crate::model::ListenerSetStatusOut {
                conditions,
                listeners,
            },
        );
    }
    out
}

/// A Gateway's `Accepted` and `Programmed` from its listeners' conditions: accepted while
/// any listener is, programmed while any is served. The reason is `ListenersNotValid` when a
/// listener is not accepted or is `Conflicted` (accepted or not): Gateway API v1
/// `GatewayConditionAccepted` and the `Listeners` field's conflict rules ("MUST set a
/// ListenersNotValid condition ... when the Gateway contains Conflicted Listeners whether or
/// not they accept the Gateway"); the message names those listeners.
pub fn gateway_conditions(
    statuses: &[crate::model::ListenerStatus],
    generation: i64,
) -> Vec<StatusCondition> {
    let has = |s: &crate::model::ListenerStatus, t: &str| {
        s.conditions.iter().any(|c| c.type_ == t && c.status)
    };
    let served = statuses.iter().filter(|s| has(s, "Programmed")).count();
    let accepted_listeners = statuses.iter().filter(|s| has(s, "Accepted")).count();
    let not_valid: Vec<&str> = statuses
        .iter()
        .filter(|s| !has(s, "Accepted") || has(s, "Conflicted"))
        .map(|s| s.name.as_str())
        .collect();
    let mut conditions = Vec::new();
    conditions.push(if not_valid.is_empty() {
        StatusCondition::new("Accepted", true, "Accepted", "Gateway accepted", generation)
    } else {
        StatusCondition::new(
            "Accepted",
            accepted_listeners > 0,
            "ListenersNotValid",
            format!(
                "listeners not accepted or conflicted: {}",
                not_valid.join(", ")
            ),
            generation,
        )
    });
    conditions.push(if served > 0 {
        StatusCondition::new(
            "Programmed",
            true,
            "Programmed",
            "served by the proxy",
            generation,
        )
    } else {
        StatusCondition::new(
            "Programmed",
            false,
            "Invalid",
            "no listener is served",
            generation,
        )
    });
    conditions
}

/// The spec's rule for an HTTPRoute and a GRPCRoute on one listener with a hostname in common
/// (`GrpcRouteSpec.hostnames`): exactly one is accepted, the older, then the first by
/// `namespace/name`. Returns `(kind, route, Gateway)` for each route that lost on a listener of
/// that Gateway; their listeners' `attachedRoutes` no longer count them.
fn kind_conflicts<'a>(
    attached: &[(ObjectKind, &'a Key, &HttpRoute, attachment::Attached)],
    gateways: &mut attachment::Gateways<'_>,
) -> Vec<(ObjectKind, &'a Key, Key)> {
    let age = |hr: &HttpRoute, key: &Key| {
        let created = (hr.metadata.creation_timestamp.as_ref()).map(|t| t.0.as_second());
        (
            created.unwrap_or(0),
            key.namespace.clone(),
            key.name.clone(),
        )
    };
    // Oldest first: a route loses only to one of the other kind that is itself still attached
    // on that Gateway ("already has another Route (B) of the other type attached"), so a loser
    // never makes a third route lose. At equal age an HTTPRoute goes first.
    let mut order: Vec<_> = attached
        .iter()
        .filter(|a| matches!(a.0, ObjectKind::HTTPRoute | ObjectKind::GRPCRoute))
        .collect();
    order.sort_by_key(|a| (age(a.2, a.1), a.0 != ObjectKind::HTTPRoute));
    let mut lost: Vec<(ObjectKind, &'a Key, Key)> = Vec::new();
    for (i, (kind, key, _, a)) in order.iter().enumerate() {
        for (gw, li, _, hosts) in &a.listeners {
            let clash = order[..i].iter().any(|(bk, bkey, _, b)| {
                bk != kind
                    && !lost.contains(&(*bk, *bkey, gw.clone()))
                    && b.listeners.iter().any(|(gw2, li2, _, bhosts)| {
                        gw2 == gw
                            && li2 == li
                            && hosts
                                .iter()
                                .any(|h| bhosts.iter().any(|o| hostnames::overlap(h, o)))
                    })
            });
            let loser = (*kind, *key, gw.clone());
            if clash && !lost.contains(&loser) {
                lost.push(loser);
            }
        }
    }
    for (kind, key, gw) in &lost {
        let Some((_, _, statuses)) = gateways.get_mut(gw) else {
            continue;
        };
        let a = attached.iter().find(|a| a.0 == *kind && a.1 == *key);
        for (g, li, _, _) in a.iter().flat_map(|a| &a.3.listeners) {
            if g == gw
                && let Some(s) = statuses.get_mut(*li)
            {
                s.attached_routes = (s.attached_routes - 1).max(0);
            }
        }
    }
    lost
}

/// The routes of one HTTPRoute (one per rule and match, host-independent), the first
/// unresolvable reference (`ResolvedRefs: False`), the first rule that cannot be served
/// (dropped: `PartiallyInvalid`), and why the whole route is refused, if it is.
struct Built {
    routes: Vec<Route>,
    problem: Option<(&'static str, String)>,
    unsupported: Option<String>,
    /// The route is not `Accepted` (`UnsupportedValue`) and serves nothing.
    rejected: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn build_routes(
    hr: &HttpRoute,
    key: &Key,
    oref: &ObjectRef,
    (policies, used, client_certificate): (
        &backend_tls::Policies,
        &std::cell::RefCell<std::collections::BTreeSet<ObjectRef>>,
        Option<&Arc<TlsCertificate>>,
    ),
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    cache: &mut HashMap<backends::CacheKey, Arc<crate::model::Upstream>>,
    services: &mut HashSet<Key>,
    diags: &mut Diagnostics,
) -> Built {
    let created = hr
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let mut built = Built {
        routes: Vec::new(),
        problem: None,
        unsupported: None,
        rejected: None,
    };
    // gRPC backends speak HTTP/2 (h2c; TLS by a BackendTLSPolicy).
    let from = match oref.kind {
        ObjectKind::GRPCRoute => backends::Referrer {
            namespace: &key.namespace,
            kind: "GRPCRoute",
            protocol: BackendProtocol::Grpc,
            policies,
            used,
            client_certificate,
        },
        _ => backends::Referrer {
            namespace: &key.namespace,
            kind: "HTTPRoute",
            protocol: BackendProtocol::Http,
            policies,
            used,
            client_certificate,
        },
    };
    let default_match = [Default::default()];
    for (ri, rule) in hr.spec.rules.iter().flatten().enumerate() {
        let matches: &[_] = match rule.matches.as_deref() {
            Some(m) if !m.is_empty() => m,
            _ => &default_match,
        };
        let (mut gp, mirrors) = match filters::policy(rule.filters.as_deref().unwrap_or_default()) {
            Ok(p) => p,
            Err(filters::FilterError::Unimplemented { reason, message }) => {
                // Never skipped (spec `HTTPRouteFilter.type`): the rule keeps its matches and
                // answers 500, so its requests cannot fall through to a broader rule.
                let msg = format!("rule {ri}: {message}; its requests get 500");
                diags.error(oref, reason, msg.clone());
                built.problem.get_or_insert((reason, msg));
                let action = RouteAction::Respond {
                    status: 500,
                    reason: UNIMPLEMENTED_FILTER.into(),
                };
                let policy = Arc::new(RoutePolicy {
                    ssl_redirect: Some(false),
                    force_ssl_redirect: Some(false),
                    gateway: Some(Default::default()),
                    ..Default::default()
                });
                push_matches(
                    &mut built,
                    matches,
                    ri,
                    (action, policy),
                    false,
                    oref,
                    created,
                    diags,
                );
                continue;
            }
            Err(filters::FilterError::Invalid(e)) => {
                diags.error(
                    oref,
                    "UnsupportedValue",
                    format!("rule {ri}: {e}; rule not served"),
                );
                built.unsupported.get_or_insert(format!("rule {ri}: {e}"));
                continue;
            }
        };
        let t = rule.timeouts.as_ref();
        let timeouts = match timeouts::rule(
            t.and_then(|t| t.request.as_deref()),
            t.and_then(|t| t.backend_request.as_deref()),
        ) {
            Ok(t) => t,
            Err(e) => {
                diags.error(
                    oref,
                    "UnsupportedValue",
                    format!("rule {ri}: {e}; rule not served"),
                );
                built.unsupported.get_or_insert(format!("rule {ri}: {e}"));
                continue;
            }
        };
        if oref.kind == ObjectKind::HTTPRoute {
            for m in cel::rule_warnings(rule, timeouts) {
                diags.warn(
                    oref,
                    cel::REASON,
                    format!("rule {ri}: {m} (the CRD's validation); served as read"),
                );
            }
        }
        gp.request_timeout = timeouts.request;
        let next_upstream = match rule.retry.as_ref().map(retry::next_upstream).transpose() {
            Ok(n) => n.unwrap_or_default(),
            Err(e) => {
                diags.error(
                    oref,
                    "UnsupportedValue",
                    format!("rule {ri}: {e}; rule not served"),
                );
                built.unsupported.get_or_insert(format!("rule {ri}: {e}"));
                continue;
            }
        };
        for m in mirrors {
            match backends::one(&from, &m.backend, objects, endpoints, cache, services) {
                Ok(upstream) => gp.mirrors.push(crate::model::RequestMirror {
                    upstream,
                    numerator: m.numerator,
                    denominator: m.denominator,
                }),
                Err((reason, msg)) => {
                    // The rule is served; only the copies are not made.
                    diags.error(
                        oref,
                        reason,
                        format!("rule {ri}: RequestMirror: {msg}; not mirrored"),
                    );
                    built.problem.get_or_insert((reason, msg));
                }
            }
        }
        let b = backends::resolve(
            &from,
            rule.backend_refs.as_deref().unwrap_or_default(),
            objects,
            endpoints,
            cache,
            services,
        );
        if let Some((reason, msg)) = &b.problem {
            diags.error(
                oref,
                reason,
                format!("rule {ri}: {msg}; its share of requests gets 500"),
            );
            if built.problem.is_none() {
                built.problem = Some((reason, msg.clone()));
            }
        }
        gp.invalid_weight = b.invalid_weight;
        if b.headers.iter().any(|h| *h != Default::default()) {
            gp.backend_headers = b.headers.clone();
        }
        // Spec (`HTTPRouteRule.backendRefs`): with none, or none valid, and no filter that
        // answers (a RequestRedirect, which the proxy applies first), the client gets 500;
        // a GRPCRoute's (`GRPCRouteRule.backendRefs`) `UNAVAILABLE`, which is 503's gRPC
        // status ([`crate::proxy::grpc_reject::code_of`]).
        let action = if b.forward.is_empty() {
            let none = rule.backend_refs.as_deref().unwrap_or_default().is_empty();
            RouteAction::Respond {
                status: if oref.kind == ObjectKind::GRPCRoute {
                    503
                } else {
                    500
                },
                reason: if none {
                    "no backendRefs".into()
                } else {
                    "no valid backendRef".into()
                },
            }
        } else {
            RouteAction::Forward(b.forward)
        };
        let prefix_modifier = matches!(
            (&gp.redirect, &gp.rewrite),
            (
                Some(crate::model::GatewayRedirect {
                    path: Some(PathModifier::ReplacePrefixMatch(_)),
                    ..
                }),
                _
            ) | (
                _,
                Some(crate::model::GatewayRewrite {
                    path: Some(PathModifier::ReplacePrefixMatch(_)),
                    ..
                })
            )
        );
        let policy = Arc::new(RoutePolicy {
            // A Gateway route redirects only by its RequestRedirect filter, whatever the
            // controller ConfigMap says.
            ssl_redirect: Some(false),
            force_ssl_redirect: Some(false),
            // `backendRequest`: each try's wait for the backend's answer (the read timeout;
            // unset or `0s`: the proxy's).
            timeouts: crate::model::Timeouts {
                read: timeouts.backend_request,
                ..Default::default()
            },
            // URLRewrite's hostname is the Host the backend sees (`upstream-vhost`'s job).
            rewrite: crate::model::Rewrite {
                upstream_vhost: gp.rewrite.as_ref().and_then(|r| r.hostname.clone()),
                ..Default::default()
            },
            // CORS: the proxy's one decision ([`crate::proxy::cors`]) reads it here.
            response: crate::model::ResponsePolicy {
                cors: gp.cors.take(),
                ..Default::default()
            },
            gateway: Some(Arc::new(gp)),
            // `retry` (GEP-1731), on the proxy's `proxy-next-upstream` machinery.
            next_upstream,
            ..Default::default()
        });
        push_matches(
            &mut built,
            matches,
            ri,
            (action, policy),
            prefix_modifier,
            oref,
            created,
            diags,
        );
    }
    built
}

/// The reason a rule with a filter that is not implemented answers with (its 500 and the
/// reason header; [`filters::FilterError::Unimplemented`]).
pub const UNIMPLEMENTED_FILTER: &str = "filter not implemented";

/// Adds a route per match of rule `ri` with `action` and `policy`. A match that cannot be
/// served is left out (`PartiallyInvalid`); a `ReplacePrefixMatch` (`prefix_modifier`) with a
/// match that is not `PathPrefix` refuses the whole route (spec `HTTPPathModifier`
/// `ReplacePrefixMatch`: "Using any other HTTPRouteMatch type on the same HTTPRouteRule will
/// result in the implementation setting the Accepted Condition for the Route to `status:
/// False`").
#[allow(clippy::too_many_arguments)]
fn push_matches(
    built: &mut Built,
    matches: &[crate::store::httproutes::HttpRouteRulesMatches],
    ri: usize,
    (action, policy): (RouteAction, Arc<RoutePolicy>),
    prefix_modifier: bool,
    oref: &ObjectRef,
    created: i64,
    diags: &mut Diagnostics,
) {
    for (mi, m) in matches.iter().enumerate() {
        let rm = match matching::route_match(m) {
            Ok(rm) => rm,
            Err(e) => {
                diags.error(
                    oref,
                    "UnsupportedValue",
                    format!("rule {ri} match {mi}: {e}; not served"),
                );
                built
                    .unsupported
                    .get_or_insert(format!("rule {ri} match {mi}: {e}"));
                continue;
            }
        };
        if prefix_modifier && !matches!(rm.path, PathMatch::Prefix(_)) {
            let e = format!(
                "rule {ri} match {mi}: ReplacePrefixMatch needs a PathPrefix match; \
                 the route is not accepted"
            );
            diags.error(oref, "UnsupportedValue", e.clone());
            built.rejected.get_or_insert(e);
            continue;
        }
        let written = m
            .path
            .as_ref()
            .and_then(|p| p.value.clone())
            .unwrap_or_else(|| "/".into());
        built.routes.push(Route {
            matches: rm,
            action: action.clone(),
            policy: policy.clone(),
            origin: RouteOrigin {
                object: oref.clone(),
                rule: RouteOrigin::index(ri),
                path: RouteOrigin::index(mi),
                created,
                written_path: Some(written.into()),
            },
            canary: None,
            errors: None,
        });
    }
}

/// Adds the Gateway API hosts and certificates to the Ingress-built tables. A host both
/// serve keeps the Ingress routes first; certificates named by Ingresses win.
pub fn merge(l7: &mut L7Config, out: &mut Output) {
    // A catch-all Ingress rule takes every name on the HTTPS port, as ingress-nginx's
    // default server does (an HTTPRoute without hostnames only the names of its listeners).
    let ingress_catch_all = l7.any_host.is_some();
    for (host, routes) in std::mem::take(&mut out.hosts) {
        let joined = |old: Option<&Arc<VirtualHost>>| -> Arc<VirtualHost> {
            match old {
                Some(vh) => {
                    let mut vh = (**vh).clone();
                    vh.routes = vh.routes.iter().chain(routes.iter()).cloned().collect();
                    Arc::new(vh)
                }
                None => Arc::new(VirtualHost {
                    host: host.clone(),
                    routes: routes.as_slice().into(),
                    tls: false,
                    app_root: None,
                    client_auth: None,
                }),
            }
        };
        if host.is_empty() {
            l7.any_host = Some(joined(l7.any_host.as_ref()));
        } else if let Some(suffix) = host.strip_prefix("*.") {
            let vh = joined(l7.gateway_wildcard_hosts.get(suffix));
            l7.gateway_wildcard_hosts.insert(suffix.to_string(), vh);
        } else {
            let vh = joined(l7.hosts.get(&host));
            l7.hosts.insert(host, vh);
        }
    }
    l7.gateway_sni = std::mem::take(&mut out.sni);
    // A host served here (Ingress or HTTPRoute) under a passthrough listener's wildcard
    // stays terminated where the port terminates; an equal TLSRoute or listener hostname
    // decides for itself. The same on each Gateway address with passthrough listeners (its
    // own hosts and every exact host: one not served there is terminated and gets 404, never
    // passed). A port of passthrough listeners only terminates nothing.
    let mut terminating = vec![&mut l7.gateway_sni];
    fn ports(
        t: &mut crate::model::SniPort,
    ) -> Option<&mut BTreeMap<String, crate::model::SniAction>> {
        t.terminates.then_some(&mut t.sni)
    }
    terminating.extend(out.sni_ports.values_mut().filter_map(ports));
    for a in out.addresses.values_mut() {
        terminating.push(&mut a.sni);
        terminating.extend(a.sni_ports.values_mut().filter_map(ports));
    }
    let wildcards = (l7.wildcard_hosts.keys()).chain(l7.gateway_wildcard_hosts.keys());
    let wildcards: Vec<String> = wildcards.map(|suffix| format!("*.{suffix}")).collect();
    for table in terminating.into_iter().filter(|t| !t.is_empty()) {
        for host in l7.hosts.keys().chain(&wildcards) {
            (table.entry(host.clone())).or_insert(crate::model::SniAction::Terminate);
        }
    }
    l7.gateway_sni_closes_unmatched = out.sni_closes_unmatched && !ingress_catch_all;
    l7.gateway_sni_ports = std::mem::take(&mut out.sni_ports);
    l7.gateway_listeners = std::mem::take(&mut out.listener_ports);
    l7.gateway_https_hosts = std::mem::take(&mut out.https_hosts);
    l7.gateway_client_validation = std::mem::take(&mut out.client_validation);
    l7.gateway_shared_ports = std::mem::take(&mut out.shared_ports);
    l7.gateway_addresses = std::mem::take(&mut out.addresses);
    for (host, cert) in std::mem::take(&mut out.certificates) {
        if host.is_empty() {
            l7.default_certificate.get_or_insert(cert);
        } else if let Some(suffix) = host.strip_prefix("*.") {
            // One or more labels, unlike an Ingress wildcard's one.
            (l7.gateway_wildcard_certificates)
                .entry(suffix.to_string())
                .or_insert(cert);
        } else {
            l7.certificates.entry(host).or_insert(cert);
        }
    }
}

/// Records that Gateway port `port` speaks `protocol`: HTTPS and TLS passthrough listeners
/// share a port ([`ports`]), which then terminates what no TLSRoute takes (HTTPS wins).
fn join_protocol(
    ports: &mut BTreeMap<u16, ListenerProtocol>,
    port: u16,
    protocol: ListenerProtocol,
) {
    let e = ports.entry(port).or_insert(protocol);
    if *e == ListenerProtocol::TlsPassthrough && protocol == ListenerProtocol::Https {
        *e = protocol;
    }
}
