//! An EndpointSlice (`discovery.k8s.io/v1`) as the store keeps it.
//!
//! Kept: the object's name and namespace (as [`super::meta::Meta`], not the ~330-byte
//! `ObjectMeta`), and the Service its `kubernetes.io/service-name`
//! label names; `addressType`; the ports; and per endpoint its first
//! address (kube-proxy reads only that one), its three conditions, `nodeName`, `zone` and
//! `targetRef` as `namespace/name`. Dropped: hostnames, hints, deprecated topology, other
//! addresses, labels and annotations, owner references, the slice's uid and resourceVersion,
//! and the target's (new on every pod update: kept, they would re-translate for nothing). An
//! endpoint is 56 bytes here against ~360 bytes plus its strings in the API struct, and a
//! slice drops its label map (a B-tree node of ~500 bytes); node and zone names, the address
//! type and the ports' names and protocols are one copy each for the whole store
//! ([`super::intern::Name`], 8 bytes a field), and the snapshot's endpoints share them and the
//! target's `Arc<str>` in turn.

use std::{net::IpAddr, sync::Arc};

use k8s_openapi::api::{core::v1::ObjectReference, discovery::v1 as api};
use serde::{Deserialize, Serialize};

use super::{
    intern::{self, Name},
    meta::{Meta, Namespaced},
};

/// The label naming a slice's Service (set by the EndpointSlice controller).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An EndpointSlice with what translation reads ([module docs](self)).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "api::EndpointSlice", into = "api::EndpointSlice")]
pub struct EndpointSlice {
    /// `name` and `namespace` only.
    pub metadata: Meta,
    /// The Service this slice belongs to (its `kubernetes.io/service-name` label).
    pub service: Option<String>,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: Name,
    pub ports: Box<[EndpointPort]>,
    pub endpoints: Box<[Endpoint]>,
}

/// One of a slice's ports, fields as the API's `EndpointPort` names them, the names shared
/// ([`Name`]): 32 bytes and no allocation of its own, where the API's is 80 bytes and two
/// strings (`http`, `TCP`) per slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: Option<Name>,
    pub port: Option<i32>,
    pub protocol: Option<Name>,
    pub app_protocol: Option<Name>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The first address; `None` when there is none or it is not an IP address (FQDN slices).
    pub address: Option<IpAddr>,
    /// `conditions.ready`, `.serving`, `.terminating` as written (unset: `None`).
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    pub node_name: Option<Name>,
    pub zone: Option<Name>,
    /// `targetRef` as `namespace/name`, or `name` when it names no namespace.
    pub target: Option<Arc<str>>,
}

impl EndpointSlice {
    /// The Service this slice belongs to (`kubernetes.io/service-name`), if labelled.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }
}

impl Namespaced for EndpointSlice {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.metadata.namespace
    }
}

impl From<api::EndpointSlice> for EndpointSlice {
    fn from(s: api::EndpointSlice) -> Self {
        let m = s.metadata;
        let service = m.labels.and_then(|mut l| l.remove(SERVICE_NAME_LABEL));
        let endpoints = s
            .endpoints
            .into_iter()
            .flatten()
            .map(|ep| {
                let c = ep.conditions.unwrap_or_default();
                let target = ep.target_ref.and_then(|t| {
                    let name = t.name?;
                    Some(match t.namespace {
                        Some(ns) => format!("{ns}/{name}").into(),
                        None => name.into(),
                    })
                });
                Endpoint {
                    address: ep.addresses.first().and_then(|a| a.parse().ok()),
                    ready: c.ready,
                    serving: c.serving,
                    terminating: c.terminating,
                    node_name: ep.node_name.map(intern::name),
                    zone: ep.zone.map(intern::name),
                    target,
                }
            })
            .collect();
        EndpointSlice {
            metadata: Meta {
                name: m.name,
                namespace: m.namespace,
                annotations: None,
            },
            service,
            address_type: intern::name(s.address_type),
            ports: s
                .ports
                .into_iter()
                .flatten()
                .map(|p| EndpointPort {
                    name: p.name.map(intern::name),
                    port: p.port,
                    protocol: p.protocol.map(intern::name),
                    app_protocol: p.app_protocol.map(intern::name),
                })
                .collect(),
            endpoints,
        }
    }
}

impl From<EndpointSlice> for api::EndpointSlice {
    fn from(s: EndpointSlice) -> Self {
        let endpoints = s
            .endpoints
            .into_iter()
            .map(|ep| api::Endpoint {
                addresses: ep.address.iter().map(IpAddr::to_string).collect(),
                conditions: Some(api::EndpointConditions {
                    ready: ep.ready,
                    serving: ep.serving,
                    terminating: ep.terminating,
                }),
                node_name: ep.node_name.map(|n| n.to_string()),
                zone: ep.zone.map(|z| z.to_string()),
                target_ref: ep.target.map(|t| {
                    let (namespace, name) = match t.split_once('/') {
                        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
                        None => (None, t.to_string()),
                    };
                    ObjectReference {
                        name: Some(name),
                        namespace,
                        ..Default::default()
                    }
                }),
                ..Default::default()
            })
            .collect();
        let mut metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            s.metadata.into();
        metadata.labels = s
            .service
            .map(|svc| [(SERVICE_NAME_LABEL.to_string(), svc)].into());
        api::EndpointSlice {
            metadata,
            address_type: s.address_type.into(),
            ports: Some(
                s.ports
                    .into_iter()
                    .map(|p| api::EndpointPort {
                        name: p.name.map(String::from),
                        port: p.port,
                        protocol: p.protocol.map(String::from),
                        app_protocol: p.app_protocol.map(String::from),
                    })
                    .collect(),
            ),
            endpoints: Some(endpoints),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointHints;

    fn full() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-abc", "namespace": "shop", "uid": "u-1", "resourceVersion": "7",
                "labels": {"kubernetes.io/service-name": "web",
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "s"}]
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.1.0.2", "10.1.0.99"], "conditions": {"ready": true},
                 "nodeName": "node-a", "zone": "z1", "hostname": "p1",
                 "hints": {"forZones": [{"name": "z1"}]},
                 "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "p"}},
                {"addresses": ["10.1.0.3"],
                 "conditions": {"ready": false, "serving": true, "terminating": true},
                 "nodeName": "node-a", "targetRef": {"kind": "Pod", "name": "web-2"}},
                {"addresses": ["db.example.com"]}
            ]
        })
    }

    /// What translation reads survives; the rest is gone; node names are shared.
    #[test]
    fn keeps_what_translation_reads() {
        let s: EndpointSlice = serde_json::from_value(full()).unwrap();
        assert_eq!(s.service(), Some("web"));
        assert_eq!(
            s.metadata,
            Meta {
                name: Some("web-abc".into()),
                namespace: Some("shop".into()),
                annotations: None,
            }
        );
        assert_eq!(s.ports[0].port, Some(8080));
        let [a, b, c] = &s.endpoints[..] else {
            panic!("{s:?}")
        };
        assert_eq!(a.address, Some("10.1.0.2".parse().unwrap()));
        assert_eq!(
            (a.ready, a.serving, a.terminating),
            (Some(true), None, None)
        );
        assert_eq!(a.zone.as_deref(), Some("z1"));
        assert_eq!(a.target.as_deref(), Some("shop/web-1"));
        assert_eq!(
            (b.ready, b.serving, b.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(b.target.as_deref(), Some("web-2"));
        assert!(Name::ptr_eq(
            a.node_name.as_ref().unwrap(),
            b.node_name.as_ref().unwrap()
        ));
        assert_eq!(c.address, None);
    }

    /// Back to JSON it is still an EndpointSlice the API would take, and it reads back equal.
    #[test]
    fn round_trips_through_the_api_shape() {
        let s: EndpointSlice = serde_json::from_value(full()).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        let api: api::EndpointSlice = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(api.endpoints.as_ref().map(Vec::len), Some(3));
        assert_eq!(api.endpoints.unwrap()[0].hints, None::<EndpointHints>);
        let again: EndpointSlice = serde_json::from_value(json).unwrap();
        assert_eq!(again, s);
    }
}
