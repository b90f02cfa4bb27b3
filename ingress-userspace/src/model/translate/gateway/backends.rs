//! HTTPRoute `backendRefs` (Gateway API v1 `HTTPBackendRef`) as weighted upstreams. A
//! reference that does not resolve keeps its weight: that share of requests gets 500 (spec:
//! "requests that would have otherwise been routed to an invalid backend MUST receive a 500").
//! Reasons for the route's `ResolvedRefs: False`: `InvalidKind` (not a core Service),
//! `RefNotPermitted` (another namespace without a ReferenceGrant), `BackendNotFound` (no
//! such Service or port).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use gateway_api::apis::standard::httproutes::HttpRouteRulesBackendRefs;

use super::reference_grant;
use crate::{
    model::translate::{endpoints::EndpointIndex, service_upstream::upstream_id},
    model::{BackendProtocol, LoadBalancing, ObjectKind, ObjectRef, Upstream, WeightedUpstream},
    store::{Key, Objects},
};

/// A rule's backends.
#[derive(Debug, Default)]
pub struct Backends {
    /// Resolved references with a weight above zero.
    pub forward: Vec<WeightedUpstream>,
    /// Summed weight of the references that do not resolve.
    pub invalid_weight: u32,
    /// The first reference that does not resolve: `(reason, message)`.
    pub problem: Option<(&'static str, String)>,
}

/// Upstreams shared across rules: Service, port, protocol.
pub type CacheKey = (Key, i32, BackendProtocol);

/// The route that references backends.
#[derive(Clone, Copy, Debug)]
pub struct Referrer<'a> {
    pub namespace: &'a str,
    /// `HTTPRoute` or `GRPCRoute` (for ReferenceGrants' `from`).
    pub kind: &'static str,
    /// How its backends are spoken to (over TLS when a BackendTLSPolicy says so).
    pub protocol: BackendProtocol,
    pub policies: &'a super::backend_tls::Policies,
    /// The BackendTLSPolicies the references resolved so far used.
    pub used: &'a std::cell::RefCell<std::collections::BTreeSet<ObjectRef>>,
}

/// Resolves the references of one rule of route `from`. Upstreams are shared through
/// `cache` (one per Service port and protocol); Services looked up go to `services`.
pub fn resolve(
    from: &Referrer<'_>,
    refs: &[HttpRouteRulesBackendRefs],
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    cache: &mut HashMap<CacheKey, Arc<Upstream>>,
    services: &mut HashSet<Key>,
) -> Backends {
    let mut out = Backends::default();
    for r in refs {
        let weight = u32::try_from(r.weight.unwrap_or(1)).unwrap_or(0);
        match one(from, r, objects, endpoints, cache, services) {
            Ok(u) if weight > 0 => out.forward.push(WeightedUpstream {
                upstream: u,
                weight,
            }),
            Ok(_) => {}
            Err(p) => {
                out.invalid_weight = out.invalid_weight.saturating_add(weight);
                out.problem.get_or_insert(p);
            }
        }
    }
    out
}

/// One reference of route `from` (a backendRef, or a RequestMirror's): its upstream, or
/// `(reason, message)` for `ResolvedRefs: False`.
pub fn one(
    from: &Referrer<'_>,
    r: &HttpRouteRulesBackendRefs,
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    cache: &mut HashMap<CacheKey, Arc<Upstream>>,
    services: &mut HashSet<Key>,
) -> Result<Arc<Upstream>, (&'static str, String)> {
    let key = reference_grant::checked(
        objects,
        &reference_grant::ObjectReference {
            field: "backendRef",
            from_kind: from.kind,
            from_namespace: from.namespace,
            to_kind: "Service",
            group: r.group.as_deref(),
            kind: r.kind.as_deref(),
            namespace: r.namespace.as_deref(),
            name: &r.name,
        },
    )
    .map_err(|p| match p {
        reference_grant::RefProblem::WrongKind(m) => ("InvalidKind", m),
        reference_grant::RefProblem::NotPermitted(m) => ("RefNotPermitted", m),
    })?;
    services.insert(key.clone());
    let Some(svc) = objects.services.get(&key) else {
        return Err(("BackendNotFound", format!("Service {key} does not exist")));
    };
    let Some(number) = r.port else {
        return Err((
            "BackendNotFound",
            format!("backendRef to Service {key} names no port"),
        ));
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let Some(port) = ports.iter().find(|p| p.port == number) else {
        return Err((
            "BackendNotFound",
            format!("Service {key} has no port {number}"),
        ));
    };
    // A BackendTLSPolicy for this port (or the whole Service): TLS, verified.
    let policy = from.policies.lookup(&key, port.name.as_deref());
    let protocol = match (from.protocol, policy) {
        (BackendProtocol::Http, Some(_)) => BackendProtocol::Https,
        (BackendProtocol::Grpc, Some(_)) => BackendProtocol::Grpcs,
        (p, _) => p,
    };
    if let Some(p) = policy {
        let mut used = from.used.borrow_mut();
        used.insert(p.object.clone());
        used.extend(from.policies.conflicting(&key, port.name.as_deref()));
    }
    let cache_key = (key.clone(), number, protocol);
    if let Some(u) = cache.get(&cache_key) {
        return Ok(u.clone());
    }
    let id = match protocol {
        BackendProtocol::Http => upstream_id(&key, number, false),
        // One pool per protocol: an h2c connection is not an HTTP/1.1 one.
        p => format!("{}:{p:?}", upstream_id(&key, number, false)),
    };
    let u = Arc::new(Upstream {
        id,
        service: ObjectRef::new(ObjectKind::Service, key.namespace.clone(), key.name.clone()),
        protocol,
        endpoints: endpoints.resolve(&key.namespace, &key.name, port),
        load_balancing: LoadBalancing::RoundRobin,
        affinity: None,
        service_upstream: false,
        tls: policy.map(|p| p.tls.clone()),
    });
    cache.insert(cache_key, u.clone());
    Ok(u)
}
