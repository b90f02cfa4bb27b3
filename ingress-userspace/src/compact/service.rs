//! A Service (`v1`) as the store keeps it.
//!
//! Kept, as the API names them: `metadata` name, namespace and the `xdp-ingress.dev/`
//! annotations ([`super::meta`]); of the spec `type`, `ports`, `clusterIP`, `externalIPs`,
//! `externalTrafficPolicy`, `healthCheckNodePort`, `loadBalancerSourceRanges`,
//! `sessionAffinity`, `sessionAffinityConfig` and `externalName`; of the status the load
//! balancer's ingress IPs. Dropped: labels and the rest of the metadata, `selector`,
//! `clusterIPs`, `ipFamilies`, `ipFamilyPolicy`, `internalTrafficPolicy`, `loadBalancerClass`,
//! `loadBalancerIP`, `publishNotReadyAddresses`, `allocateLoadBalancerNodePorts`,
//! `trafficDistribution`, status conditions and an ingress point's hostname, mode and ports.
//! Translation reads only what is kept (the field names are the API's and their types read
//! alike, `as_deref` giving the same `&str` or slice, and a dropped one is not there to read). Endpoints come from
//! EndpointSlices, so the selector is never needed. A Service with one port: ~390 bytes here
//! with its strings, against ~990 as the API struct (20k Services: 7.4 MiB against 18.8).

use k8s_openapi::api::core::v1::{
    self as api, LoadBalancerIngress, LoadBalancerStatus, ServicePort, SessionAffinityConfig,
};
use serde::{Deserialize, Serialize};

use super::{
    intern::{self, Name},
    meta::{Meta, Namespaced, shrink},
};

/// The annotations a Service keeps (`xdp-ingress.dev/l4-acceleration`, `.../syn-rate-limit`,
/// `.../syn-rate-limit-burst`): the only ones translation reads on a Service.
pub const KEPT_ANNOTATIONS: &str = "xdp-ingress.dev/";

/// A Service with what translation reads ([module docs](self)).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "api::Service", into = "api::Service")]
pub struct Service {
    pub metadata: Meta,
    pub spec: Option<ServiceSpec>,
    pub status: Option<ServiceStatus>,
}

/// The part of `spec` translation reads; fields as the API's `ServiceSpec` names them. Lists are
/// boxed slices (no spare capacity), the names many Services repeat (`type`, the policies)
/// shared [`Name`]s and the others boxed `str`s: 224 bytes with the rest of the Service, 240 in
/// its `Arc` (a 256-byte block), where `String`s and `Vec`s made it 312 (a 384-byte block).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSpec {
    pub type_: Option<Name>,
    pub ports: Option<Box<[ServicePort]>>,
    pub cluster_ip: Option<Box<str>>,
    pub external_ips: Option<Box<[String]>>,
    pub external_traffic_policy: Option<Name>,
    pub health_check_node_port: Option<i32>,
    pub load_balancer_source_ranges: Option<Box<[String]>>,
    pub session_affinity: Option<Name>,
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// Of an ExternalName Service: the name its Ingress backends are proxied to.
    pub external_name: Option<Box<str>>,
}

/// `status.loadBalancer`, its ingress points' `ip` only.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceStatus {
    pub load_balancer: Option<LoadBalancerStatus>,
}

impl Namespaced for Service {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.metadata.namespace
    }
}

impl From<api::Service> for Service {
    fn from(s: api::Service) -> Self {
        let spec = s.spec.map(|s| ServiceSpec {
            type_: s.type_.map(intern::name),
            ports: s.ports.map(Vec::into_boxed_slice),
            cluster_ip: s.cluster_ip.map(String::into_boxed_str),
            external_ips: s.external_ips.map(Vec::into_boxed_slice),
            external_traffic_policy: s.external_traffic_policy.map(intern::name),
            health_check_node_port: s.health_check_node_port,
            load_balancer_source_ranges: s.load_balancer_source_ranges.map(Vec::into_boxed_slice),
            session_affinity: s.session_affinity.map(intern::name),
            session_affinity_config: s.session_affinity_config,
            external_name: s.external_name.map(String::into_boxed_str),
        });
        let status = s.status.and_then(|st| {
            let ingress: Vec<LoadBalancerIngress> = st
                .load_balancer?
                .ingress?
                .into_iter()
                .filter(|i| i.ip.is_some())
                .map(|i| LoadBalancerIngress {
                    ip: i.ip,
                    ..Default::default()
                })
                .collect();
            let mut ingress = Some(ingress);
            shrink(&mut ingress);
            Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus { ingress }),
            })
        });
        Service {
            metadata: Meta::from_api(s.metadata, Some(KEPT_ANNOTATIONS)),
            spec,
            status,
        }
    }
}

impl From<Service> for api::Service {
    fn from(s: Service) -> Self {
        api::Service {
            metadata: s.metadata.into(),
            spec: s.spec.map(|s| api::ServiceSpec {
                type_: s.type_.map(String::from),
                ports: s.ports.map(Vec::from),
                cluster_ip: s.cluster_ip.map(String::from),
                external_ips: s.external_ips.map(Vec::from),
                external_traffic_policy: s.external_traffic_policy.map(String::from),
                health_check_node_port: s.health_check_node_port,
                load_balancer_source_ranges: s.load_balancer_source_ranges.map(Vec::from),
                session_affinity: s.session_affinity.map(String::from),
                session_affinity_config: s.session_affinity_config,
                external_name: s.external_name.map(String::from),
                ..Default::default()
            }),
            status: s.status.map(|st| api::ServiceStatus {
                load_balancer: st.load_balancer,
                conditions: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field translation reads, each set (the API's JSON).
    fn read_fields() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "shop",
                "annotations": {"xdp-ingress.dev/l4-acceleration": "true",
                                "xdp-ingress.dev/syn-rate-limit": "100",
                                "xdp-ingress.dev/syn-rate-limit-burst": "20"}
            },
            "spec": {
                "type": "LoadBalancer",
                "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080,
                           "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}],
                "clusterIP": "10.96.0.10",
                "externalIPs": ["198.18.5.5"],
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 32100,
                "loadBalancerSourceRanges": ["198.18.0.0/15"],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "externalName": "web.example.com"
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "198.18.9.9"}]}}
        })
    }

    /// `read_fields` plus every field the compact Service drops, set.
    fn with_dropped_fields() -> serde_json::Value {
        let mut v = read_fields();
        let extra = serde_json::json!({
            "metadata": {
                "uid": "u-1", "resourceVersion": "7", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "web"}, "finalizers": ["x/y"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "o"}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                "nginx.ingress.kubernetes.io/affinity": "cookie"}
            },
            "spec": {
                "selector": {"app": "web"}, "clusterIPs": ["10.96.0.10"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Local",
                "loadBalancerClass": "x/lb", "loadBalancerIP": "198.18.9.8",
                "publishNotReadyAddresses": true, "allocateLoadBalancerNodePorts": false,
                "trafficDistribution": "PreferClose"
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "R", "message": "",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "loadBalancer": {"ingress": [{"ip": "198.18.9.9", "hostname": "lb.example.com",
                                              "ipMode": "Proxy",
                                              "ports": [{"port": 80, "protocol": "TCP"}]},
                                             {"hostname": "only-a-name.example.com"}]}
            }
        });
        merge(&mut v, extra);
        v
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// API JSON in, compact, API JSON out: every field translation reads comes back as it was.
    #[test]
    fn round_trip_keeps_every_field_translation_reads() {
        let s: Service = serde_json::from_value(read_fields()).unwrap();
        let mut out = serde_json::to_value(&s).unwrap();
        // `into` the API struct, which names no apiVersion/kind of its own in serde's output.
        let map = out.as_object_mut().unwrap();
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "Service".into());
        assert_eq!(out, read_fields());
        let again: Service = serde_json::from_value(out).unwrap();
        assert_eq!(again, s);
    }

    /// What a user sets in the fields dropped here leaves the compact Service, hence everything
    /// translation sees of it, exactly as without them.
    #[test]
    fn dropped_fields_change_nothing_translation_sees() {
        let full: Service = serde_json::from_value(with_dropped_fields()).unwrap();
        let read: Service = serde_json::from_value(read_fields()).unwrap();
        assert_eq!(full, read);
    }
}
