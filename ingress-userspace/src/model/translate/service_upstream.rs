//! ingress-nginx's `service-upstream` (annotation, and ConfigMap key as its default): the
//! upstream of a backend is the Service's `spec.clusterIP` and Service port, one
//! pseudo-endpoint, instead of its endpoints (annotations reference, "Service Upstream";
//! ingress-nginx `getServiceClusterEndpoint`). kube-proxy (or whatever implements Services)
//! then picks the pod, so the proxy's balancing, affinity and retries across endpoints have
//! nothing to choose from: the proxy runs unchanged over a list of one.
//!
//! The clusterIP passes the guard EndpointSlice addresses pass ([`super::node_local`]): a
//! Service whose `clusterIP` is loopback, link-local or this node's address (a manifest
//! directory or an API user can write any) is refused with an Error and its upstream has no
//! endpoint (503), not its pods: the backend is not served, as a refused endpoint is not.

use std::net::IpAddr;

use crate::compact::ingress::ServiceBackendPort;
use k8s_openapi::api::core::v1::ServicePort;

use crate::compact::service::Service;

use super::{
    annotations::IngressOptions, diagnostics::Diagnostics, endpoints::EndpointIndex,
    endpoints::REFUSED_REASON,
};
use crate::{
    model::{Endpoint, EndpointAddr, EndpointState, ObjectRef},
    store::Key,
};

/// A Service port as an upstream id names it: the number, or the name an Ingress backend
/// writes (`port: {name: http}`) when no Service resolves it to a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortId<'a> {
    Number(i32),
    Name(&'a str),
}

impl From<i32> for PortId<'_> {
    fn from(n: i32) -> Self {
        PortId::Number(n)
    }
}

impl<'a> PortId<'a> {
    /// The port an Ingress backend writes: its number, else its name (empty when neither).
    pub fn written(port: Option<&'a ServiceBackendPort>) -> Self {
        match port {
            Some(ServiceBackendPort {
                number: Some(n), ..
            }) => PortId::Number(*n),
            Some(p) => PortId::Name(p.name.as_deref().unwrap_or_default()),
            None => PortId::Name(""),
        }
    }
}

impl std::fmt::Display for PortId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortId::Number(n) => write!(f, "{n}"),
            PortId::Name(name) => f.write_str(name),
        }
    }
}

/// The id of the upstream of Service `key`'s port `port`: `namespace/name:port`, and
/// `cluster-ip:namespace/name:port` for its ClusterIP (another set of endpoints, so other
/// pools and health state). Both end in `:port`, which the proxy reads back as the Service
/// port (`X-Service-Port` of error pages, [`crate::proxy::error_pages`]).
pub fn upstream_id<'a>(key: &Key, port: impl Into<PortId<'a>>, service_upstream: bool) -> String {
    let port = port.into();
    let mut id = if service_upstream {
        format!("cluster-ip:{key}:{port}")
    } else {
        format!("{key}:{port}")
    };
    // Kept in every upstream (20k at 10k Ingresses): without the room `format!` grew.
    id.shrink_to_fit();
    id
}

/// What `service-upstream` gives a backend.
#[derive(Debug)]
pub enum ClusterIp {
    /// The Service's clusterIP and port, the one endpoint.
    Use(Endpoint),
    /// The Service has no clusterIP: its endpoints, as ingress-nginx falls back to them.
    Endpoints,
    /// The clusterIP points into the node ([`EndpointIndex::refusal`]): no endpoint.
    Refused,
}

/// The ClusterIP pseudo-endpoint of `svc`'s `port`; [`ClusterIp::Endpoints`] with a Warning on
/// `user` when the Service has none (headless, `clusterIP: None`), [`ClusterIp::Refused`] with
/// an Error on the Service when the address is refused as an endpoint would be. Balancing
/// options that cannot apply get a Warning too.
pub fn cluster_ip(
    svc: &Service,
    key: &Key,
    port: &ServicePort,
    opts: &IngressOptions,
    (user, guard): (&ObjectRef, &EndpointIndex<'_>),
    diags: &mut Diagnostics,
) -> ClusterIp {
    let written = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    let Some(ip) = written.and_then(|ip| ip.parse::<IpAddr>().ok()) else {
        let why = match written {
            None | Some("") | Some("None") => "is headless (clusterIP: None)".to_string(),
            Some(other) => format!("has no usable clusterIP ({other:?})"),
        };
        diags.warn(
            user,
            "ServiceUpstreamWithoutClusterIP",
            format!("service-upstream: service {key} {why}; its endpoints are used instead"),
        );
        return ClusterIp::Endpoints;
    };
    if let Some(why) = guard.refusal(ip, &key.namespace, &key.name) {
        let hint = if why.opt_in_allows() {
            " (--allow-node-local-endpoints accepts it)"
        } else {
            ""
        };
        diags.error(
            &ObjectRef::new(
                crate::model::ObjectKind::Service,
                key.namespace.clone(),
                key.name.clone(),
            ),
            REFUSED_REASON,
            format!(
                "service-upstream: clusterIP {ip} of Service {key} is {}, which points into the \
                 node; not served{hint}",
                why.describe()
            ),
        );
        return ClusterIp::Refused;
    }
    if opts.affinity.is_some() || opts.load_balancing.hash_by().is_some() {
        diags.warn(
            user,
            "ServiceUpstreamIgnoresAffinity",
            format!(
                "service-upstream: requests for service {key} go to its ClusterIP, so \
                 affinity and upstream-hash-by do not apply (the Service's own \
                 sessionAffinity does)"
            ),
        );
    }
    let Ok(port) = u16::try_from(port.port) else {
        return ClusterIp::Endpoints;
    };
    ClusterIp::Use(Endpoint {
        addr: EndpointAddr::new(ip, port),
        state: EndpointState::Active,
        weight: 1,
        node_name: None,
        zone: None,
        target: None,
    })
}
