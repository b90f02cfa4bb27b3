//! HTTPRoute `backendRefs` (Gateway API v1 `HTTPBackendRef`) as weighted upstreams. A
//! reference that does not resolve keeps its weight: that share of requests gets 500 (spec:
//! "requests that would have otherwise been routed to an invalid backend MUST receive a 500").
//! Reasons for the route's `ResolvedRefs: False`: `InvalidKind` (not a core Service, or an
//! ExternalName Service),
//! `RefNotPermitted` (another namespace without a ReferenceGrant), `BackendNotFound` (no
//! such Service or port).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::store::httproutes::HttpRouteRulesBackendRefs;
use k8s_openapi::api::core::v1::ServicePort;

use super::reference_grant;
use crate::{
    model::translate::{endpoints::EndpointIndex, service_upstream::upstream_id},
    model::{
        BackendProtocol, HeaderModifier, LoadBalancing, ObjectKind, ObjectRef, Upstream,
        WeightedUpstream,
    },
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
    /// The header modifiers of each `forward` entry's own filters, `(request, response)`,
    /// in the same order ([`super::filters::backend_headers`]).
    pub headers: Vec<(HeaderModifier, HeaderModifier)>,
}

/// Upstreams shared across rules: Service, port, protocol.
/// Service, port, protocol, and the Secret of the client certificate presented (if any).
pub type CacheKey = (Key, i32, BackendProtocol, Option<ObjectRef>);

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
    /// The client certificate its Gateway presents to TLS backends
    /// ([`super::backend_client_cert`]).
    pub client_certificate: Option<&'a Arc<crate::model::TlsCertificate>>,
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
        // A filter of the backendRef's own that is not implemented is never skipped: the
        // requests it would have taken get 500, as those of an unresolvable reference
        // ([`super::filters`]).
        let headers = match super::filters::backend_headers(r) {
            Err(super::filters::FilterError::Unimplemented { reason, message }) => {
                out.invalid_weight = out.invalid_weight.saturating_add(weight);
                out.problem
                    .get_or_insert((reason, format!("backendRef {}: {message}", r.name)));
                continue;
            }
            // A filter that does not parse was refused by the API server's schema.
            Err(super::filters::FilterError::Invalid(_)) => Default::default(),
            Ok(h) => h,
        };
        match one(from, r, objects, endpoints, cache, services) {
            Ok(u) if weight > 0 => {
                out.forward.push(WeightedUpstream {
                    upstream: u,
                    weight,
                });
                out.headers.push(headers);
            }
            Ok(_) => {}
            Err(p) => {
                out.invalid_weight = out.invalid_weight.saturating_add(weight);
                out.problem.get_or_insert(p);
            }
        }
    }
    out
}

/// A `backendRef` of any route kind, as the spec spells it.
#[derive(Clone, Copy, Debug)]
pub struct BackendRef<'a> {
    /// The route's kind (`HTTPRoute`, `GRPCRoute`, `TCPRoute`, ...), for ReferenceGrants'
    /// `from`.
    pub from_kind: &'a str,
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub port: Option<i32>,
}

/// The Service port a backendRef of a route in `route_ns` names, or why it does not resolve
/// (`InvalidKind`, `RefNotPermitted`, `BackendNotFound`). Services looked up go to
/// `services`. The one check of backendRefs for every route kind.
pub fn service_port<'o>(
    route_ns: &str,
    r: &BackendRef<'_>,
    objects: &'o Objects,
    services: &mut HashSet<Key>,
) -> Result<(Key, &'o ServicePort), (&'static str, String)> {
    let key = reference_grant::checked(
        objects,
        &reference_grant::ObjectReference {
            field: "backendRef",
            from_kind: r.from_kind,
            from_namespace: route_ns,
            to_kind: "Service",
            group: r.group,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
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
    // Gateway API `BackendObjectReference.kind`: "Implementations SHOULD NOT support
    // ExternalName Services" (implementation-specific; no conformance test sends to one).
    // Refused as an unsupported kind of backend, never sent to a Service with no endpoints.
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some(crate::model::translate::external_name::TYPE) {
        return Err((
            "InvalidKind",
            format!(
                "Service {key} is of type ExternalName, which Gateway API routes do not take \
                 (implementations SHOULD NOT support them: CVE-2021-25740)"
            ),
        ));
    }
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
    Ok((key, port))
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
    let b = BackendRef {
        from_kind: from.kind,
        group: r.group.as_deref(),
        kind: r.kind.as_deref(),
        namespace: r.namespace.as_deref(),
        name: &r.name,
        port: r.port,
    };
    let (key, port) = service_port(from.namespace, &b, objects, services)?;
    // A BackendTLSPolicy for this port (or the whole Service): TLS, verified.
    let policy = from.policies.lookup(&key, port.name.as_deref());
    let protocol = match (from.protocol, policy) {
        (BackendProtocol::Http, Some(_)) => BackendProtocol::Https,
        (BackendProtocol::Grpc, Some(_)) => BackendProtocol::Grpcs,
        // The port's `appProtocol` (Kubernetes' standard application protocols, GEP-1911):
        // `kubernetes.io/h2c` is HTTP/2 with prior knowledge; `kubernetes.io/ws` is
        // HTTP/1.1, upgraded per request, as any plain HTTP port.
        (BackendProtocol::Http, None)
            if port.app_protocol.as_deref() == Some("kubernetes.io/h2c") =>
        {
            BackendProtocol::H2c
        }
        (p, _) => p,
    };
    if let Some(p) = policy {
        let mut used = from.used.borrow_mut();
        used.insert(p.object.clone());
        used.extend(from.policies.conflicting(&key, port.name.as_deref()));
    }
    // The Gateway's client certificate goes with the policy's verification.
    let tls = policy.map(|p| match from.client_certificate {
        Some(c) => Arc::new(crate::model::UpstreamTls {
            client_certificate: Some(Arc::clone(c)),
            ..(*p.tls).clone()
        }),
        None => p.tls.clone(),
    });
    Ok(cached(key, port, protocol, tls, endpoints, cache))
}

/// A TLSRoute backendRef's upstreams (shared through `cache`, one per Service port and way).
pub struct TlsRouteBackend {
    /// The bytes as they come, untouched (a `Passthrough` listener's).
    pub plain: Arc<Upstream>,
    /// On a `tls.mode: Terminate` listener: TLS to the pod, verified, when a BackendTLSPolicy
    /// targets the Service port (features BackendTLSPolicy and TLSRouteModeTerminate,
    /// conformance BackendTLSPolicyTLSRouteTerminate); else `plain`.
    pub terminated: Arc<Upstream>,
    /// That policy.
    pub policy: Option<ObjectRef>,
}

/// The upstreams a TLSRoute backendRef names, or why it does not resolve ([`service_port`]).
pub fn tls_route_backend(
    route_ns: &str,
    r: &BackendRef<'_>,
    objects: &Objects,
    policies: &super::backend_tls::Policies,
    endpoints: &EndpointIndex<'_>,
    cache: &mut HashMap<CacheKey, Arc<Upstream>>,
    services: &mut HashSet<Key>,
) -> Result<TlsRouteBackend, (&'static str, String)> {
    let (key, port) = service_port(route_ns, r, objects, services)?;
    let policy = policies.lookup(&key, port.name.as_deref());
    let plain = cached(
        key.clone(),
        port,
        BackendProtocol::Http,
        None,
        endpoints,
        cache,
    );
    Ok(match policy {
        None => TlsRouteBackend {
            terminated: Arc::clone(&plain),
            plain,
            policy: None,
        },
        Some(p) => TlsRouteBackend {
            terminated: cached(
                key,
                port,
                BackendProtocol::Https,
                Some(Arc::clone(&p.tls)),
                endpoints,
                cache,
            ),
            plain,
            policy: Some(p.object.clone()),
        },
    })
}

/// The upstream of Service `key` port `port` spoken to with `protocol`, from `cache` or new.
fn cached(
    key: Key,
    port: &ServicePort,
    protocol: BackendProtocol,
    tls: Option<Arc<crate::model::UpstreamTls>>,
    endpoints: &EndpointIndex<'_>,
    cache: &mut HashMap<CacheKey, Arc<Upstream>>,
) -> Arc<Upstream> {
    let number = port.port;
    let client = (tls.as_ref())
        .and_then(|t| t.client_certificate.as_ref())
        .map(|c| c.secret.clone());
    let cache_key = (key.clone(), number, protocol, client.clone());
    if let Some(u) = cache.get(&cache_key) {
        return u.clone();
    }
    let id = match protocol {
        BackendProtocol::Http => upstream_id(&key, number, false),
        // One pool per protocol: an h2c connection is not an HTTP/1.1 one.
        p => format!("{}:{p:?}", upstream_id(&key, number, false)),
    };
    // Connections presenting a client certificate are pooled apart from those that do not.
    let id = match &client {
        Some(secret) => format!("{id}+client-cert:{}/{}", secret.namespace, secret.name),
        None => id,
    };
    let u = Arc::new(Upstream {
        id,
        service: ObjectRef::new(ObjectKind::Service, key.namespace.clone(), key.name.clone()),
        protocol,
        endpoints: endpoints.resolve(&key.namespace, &key.name, port),
        load_balancing: LoadBalancing::RoundRobin,
        affinity: None,
        service_upstream: false,
        external_name: None,
        tls,
    });
    cache.insert(cache_key, u.clone());
    u
}
