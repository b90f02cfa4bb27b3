//! Services the XDP path takes over: the ingress's own Service (its endpoints are the node
//! proxies, `local_proxy`) and Services annotated `xdp-ingress.dev/l4-acceleration: "true"`.
//! Only NodePort and LoadBalancer types: frontends are the node ports, and LoadBalancer ingress
//! IPs and `externalIPs` as addresses. A Service whose `loadBalancerSourceRanges` do not parse is
//! not taken over at all (serving it unfiltered would open what the user meant to close).
//! Per-source SYN rate limits: [`super::syn_limit`].

use std::{net::SocketAddr, time::Duration};

use super::{
    L4_ACCELERATION_ANNOTATION, TranslateConfig, annotations::parse_prefix,
    diagnostics::Diagnostics, endpoints::EndpointIndex,
};
use k8s_openapi::api::core::v1::ServicePort;

use crate::{
    compact::service::ServiceSpec,
    model::{
        Endpoint, EndpointState, Frontend, HealthCheck, L4Protocol, L4Service, ObjectKind,
        ObjectRef,
    },
    store::{Key, Objects},
};

/// `sessionAffinityConfig.clientIP.timeoutSeconds` default.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10800);
/// `sessionAffinityConfig.clientIP.timeoutSeconds` the API server accepts (1 to 86400,
/// core/v1 validation); manifest files are not validated by anyone else, so checked here.
pub const AFFINITY_TIMEOUT_RANGE: std::ops::RangeInclusive<i32> = 1..=86400;

pub fn l4_services(
    objects: &Objects,
    endpoints: &EndpointIndex,
    cfg: &TranslateConfig,
    diags: &mut Diagnostics,
    refs: &mut super::References,
) -> Vec<L4Service> {
    let mut out = Vec::new();
    for (key, svc) in &objects.services {
        let own = cfg.ingress_service.as_ref() == Some(key);
        let annotated = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(L4_ACCELERATION_ANNOTATION))
            .is_some_and(|v| v == "true");
        if !own && !annotated {
            // A limit only the XDP path enforces: say so rather than let it look applied.
            if let Some(a) = svc.metadata.annotations.as_ref()
                && a.contains_key(super::syn_limit::SYN_RATE_LIMIT_ANNOTATION)
            {
                diags.warn(
                    &ObjectRef::new(ObjectKind::Service, key.namespace.clone(), key.name.clone()),
                    "InvalidSynRateLimit",
                    format!(
                        "{} applies only to Services with {L4_ACCELERATION_ANNOTATION}: \"true\"; \
                         not enforced",
                        super::syn_limit::SYN_RATE_LIMIT_ANNOTATION
                    ),
                );
            }
            continue;
        }
        refs.services.insert(key.clone());
        let oref = ObjectRef::new(ObjectKind::Service, key.namespace.clone(), key.name.clone());
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty != "NodePort" && ty != "LoadBalancer" {
            diags.warn(
                &oref,
                "L4AccelerationUnsupported",
                format!("type {ty}: only NodePort and LoadBalancer Services are accelerated"),
            );
            continue;
        }
        let mut source_ranges = Vec::new();
        let mut bad_range = None;
        for r in spec.load_balancer_source_ranges.iter().flatten() {
            match parse_prefix(r) {
                Some(p) => source_ranges.push(p),
                None => bad_range = Some(r.clone()),
            }
        }
        if let Some(r) = bad_range {
            diags.error(
                &oref,
                "InvalidSourceRange",
                format!("loadBalancerSourceRanges entry {r:?} is not a CIDR; not accelerated"),
            );
            continue;
        }
        let syn_rate_limit = super::syn_limit::parse(
            svc.metadata.annotations.as_ref(),
            cfg.proxy_syn_rate_limit.filter(|_| own),
            &oref,
            diags,
        );
        let client_ip_affinity =
            (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                let timeout = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds);
                match timeout {
                    None => DEFAULT_AFFINITY_TIMEOUT,
                    Some(t) if AFFINITY_TIMEOUT_RANGE.contains(&t) => {
                        Duration::from_secs(t.unsigned_abs().into())
                    }
                    Some(t) => {
                        diags.warn(
                            &oref,
                            "InvalidAffinityTimeout",
                            format!(
                                "sessionAffinityConfig.clientIP.timeoutSeconds {t} is outside \
                                 1 to 86400; using {}",
                                DEFAULT_AFFINITY_TIMEOUT.as_secs()
                            ),
                        );
                        DEFAULT_AFFINITY_TIMEOUT
                    }
                }
            });
        let mut addresses: Vec<std::net::IpAddr> = Vec::new();
        let lb_ips = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone());
        for ip in lb_ips.chain(spec.external_ips.iter().flatten().cloned()) {
            match ip.parse() {
                Ok(a) if !addresses.contains(&a) => addresses.push(a),
                Ok(_) => {}
                Err(_) => diags.warn(
                    &oref,
                    "InvalidAddress",
                    format!("{ip:?} is not an IP address"),
                ),
            }
        }
        for port in spec.ports.iter().flatten() {
            let port_label = port_label(port);
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => L4Protocol::Tcp,
                "UDP" => L4Protocol::Udp,
                other => {
                    diags.warn(
                        &oref,
                        "L4AccelerationUnsupported",
                        format!("port {port_label}: protocol {other} is not accelerated"),
                    );
                    continue;
                }
            };
            let mut frontends = Vec::new();
            if let Some(np) = port
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
            {
                frontends.push(Frontend::NodePort(np));
            }
            if let Ok(p) = u16::try_from(port.port) {
                frontends.extend(
                    addresses
                        .iter()
                        .map(|a| Frontend::Address(SocketAddr::new(*a, p))),
                );
            }
            if frontends.is_empty() {
                diags.warn(
                    &oref,
                    "NoFrontend",
                    format!("port {port_label} has no nodePort and no external address"),
                );
                continue;
            }
            let external_traffic_local = spec.external_traffic_policy.as_deref() == Some("Local");
            let PortEndpoints {
                endpoints,
                health_check,
            } = port_endpoints(endpoints, key, spec, port, cfg.node_name.as_deref());
            out.push(L4Service {
                id: format!("{key}:{port_label}"),
                service: oref.clone(),
                protocol,
                frontends,
                endpoints,
                client_ip_affinity,
                source_ranges: source_ranges.clone(),
                local_proxy: own,
                external_traffic_local,
                health_check,
                syn_rate_limit,
                reject_weight: 0,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// A Service port's name, or its number when unnamed: the last part of an L4 service's id.
pub(super) fn port_label(port: &ServicePort) -> String {
    port.name.clone().unwrap_or_else(|| port.port.to_string())
}

/// What a Service port's endpoints decide in its L4 service.
#[derive(Debug)]
pub(super) struct PortEndpoints {
    pub endpoints: Vec<Endpoint>,
    /// With `externalTrafficPolicy: Local` and a `healthCheckNodePort`: the health check,
    /// answering from the same endpoints.
    pub health_check: Option<HealthCheck>,
}

/// The endpoint fields of `port`'s L4 service: the one place both the full translation and
/// the endpoints-only fast path ([`super::incremental`]) take them from, so they cannot drift.
pub(super) fn port_endpoints(
    index: &EndpointIndex,
    service: &Key,
    spec: &ServiceSpec,
    port: &ServicePort,
    node_name: Option<&str>,
) -> PortEndpoints {
    let endpoints = index.resolve(&service.namespace, &service.name, port);
    let local = spec.external_traffic_policy.as_deref() == Some("Local");
    let health_check = spec
        .health_check_node_port
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| local && *p != 0)
        .map(|node_port| HealthCheck {
            node_port,
            local_endpoints: local_ready(&endpoints, node_name),
        });
    PortEndpoints {
        endpoints,
        health_check,
    }
}

/// Ready endpoints on `node`, as kube-proxy counts them for the health check node port; the
/// locality rule is the XDP path's (an unknown node name on either side is local).
fn local_ready(endpoints: &[Endpoint], node: Option<&str>) -> u32 {
    let n = endpoints
        .iter()
        .filter(|e| e.state == EndpointState::Active)
        .filter(|e| match (node, e.node_name.as_deref()) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}
