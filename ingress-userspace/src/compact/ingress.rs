//! An Ingress (`networking.k8s.io/v1`) as the store keeps it.
//!
//! Kept: the object's name, namespace and annotations (all of them: translation reads several
//! prefixes) as [`super::meta::Meta`] rather than the ~330-byte `ObjectMeta`, its
//! `creationTimestamp` (conflict precedence: oldest first), and the whole `spec`, in types of
//! our own that name every field as the API does ([`IngressSpec`] and below), so translation
//! reads it as it read the API's. Dropped: labels and the rest of the metadata, and `status`
//! (ours to write, never read; the API source already dropped it). At 10k Ingresses: ~300
//! bytes less per Ingress from the metadata, and ~200 from the spec's paths (an API path is
//! 176 bytes with every optional field inline, ours 96; issue 13).

use k8s_openapi::{
    api::{core::v1::TypedLocalObjectReference, networking::v1 as api},
    apimachinery::pkg::apis::meta::v1::Time,
};
use serde::{Deserialize, Serialize};

use super::{
    intern::Name,
    meta::{Meta, Namespaced, shrink},
};

/// An Ingress with what translation reads ([module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "api::Ingress", into = "api::Ingress")]
pub struct Ingress {
    /// `name`, `namespace` and every annotation.
    pub metadata: Meta,
    /// `metadata.creationTimestamp`: the older of two Ingresses wins a conflict.
    pub creation_timestamp: Option<Time>,
    pub spec: Option<IngressSpec>,
}

/// `IngressSpec`, field for field (the API's docs hold for each). Reads and writes the API's
/// JSON through the API struct.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(from = "api::IngressSpec", into = "api::IngressSpec")]
pub struct IngressSpec {
    /// Boxed: 64 bytes inline that few Ingresses fill.
    pub default_backend: Option<Box<IngressBackend>>,
    pub ingress_class_name: Option<String>,
    pub rules: Option<Vec<IngressRule>>,
    pub tls: Option<Vec<IngressTLS>>,
}

/// `IngressRule`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressRule {
    pub host: Option<String>,
    pub http: Option<HTTPIngressRuleValue>,
}

/// `HTTPIngressRuleValue`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HTTPIngressRuleValue {
    pub paths: Vec<HTTPIngressPath>,
}

/// `HTTPIngressPath`: 96 bytes where the API's is 176 (`pathType` one shared copy per value,
/// `backend.resource` boxed: nearly every path names a Service).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HTTPIngressPath {
    pub backend: IngressBackend,
    pub path: Option<String>,
    /// `Exact`, `Prefix` or `ImplementationSpecific` as written (required by the API).
    pub path_type: Name,
}

/// `IngressBackend`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressBackend {
    pub resource: Option<Box<TypedLocalObjectReference>>,
    pub service: Option<IngressServiceBackend>,
}

/// `IngressServiceBackend`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressServiceBackend {
    pub name: String,
    pub port: Option<ServiceBackendPort>,
}

/// `ServiceBackendPort`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceBackendPort {
    pub name: Option<String>,
    pub number: Option<i32>,
}

/// `IngressTLS`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngressTLS {
    pub hosts: Option<Vec<String>>,
    pub secret_name: Option<String>,
}

impl From<api::IngressSpec> for IngressSpec {
    fn from(s: api::IngressSpec) -> Self {
        let mut rules: Option<Vec<IngressRule>> = s.rules.map(|r| {
            r.into_iter()
                .map(|r| IngressRule {
                    host: r.host,
                    http: r.http.map(|h| {
                        let mut paths: Vec<HTTPIngressPath> = h
                            .paths
                            .into_iter()
                            .map(|p| HTTPIngressPath {
                                backend: p.backend.into(),
                                path: p.path,
                                path_type: p.path_type.into(),
                            })
                            .collect();
                        // The collect reuses the API's larger buffer (two 176-byte paths:
                        // room for three of ours); kept exact, as `shrink` does below.
                        paths.shrink_to_fit();
                        HTTPIngressRuleValue { paths }
                    }),
                })
                .collect()
        });
        shrink(&mut rules);
        let mut tls: Option<Vec<IngressTLS>> = s.tls.map(|t| {
            t.into_iter()
                .map(|t| {
                    let mut hosts = t.hosts;
                    shrink(&mut hosts);
                    IngressTLS {
                        hosts,
                        secret_name: t.secret_name,
                    }
                })
                .collect()
        });
        shrink(&mut tls);
        IngressSpec {
            default_backend: s.default_backend.map(|b| Box::new(b.into())),
            ingress_class_name: s.ingress_class_name,
            rules,
            tls,
        }
    }
}

impl From<IngressSpec> for api::IngressSpec {
    fn from(s: IngressSpec) -> Self {
        api::IngressSpec {
            default_backend: s.default_backend.map(|b| (*b).into()),
            ingress_class_name: s.ingress_class_name,
            rules: s.rules.map(|r| {
                r.into_iter()
                    .map(|r| api::IngressRule {
                        host: r.host,
                        http: r.http.map(|h| api::HTTPIngressRuleValue {
                            paths: h
                                .paths
                                .into_iter()
                                .map(|p| api::HTTPIngressPath {
                                    backend: p.backend.into(),
                                    path: p.path,
                                    path_type: p.path_type.into(),
                                })
                                .collect(),
                        }),
                    })
                    .collect()
            }),
            tls: s.tls.map(|t| {
                t.into_iter()
                    .map(|t| api::IngressTLS {
                        hosts: t.hosts,
                        secret_name: t.secret_name,
                    })
                    .collect()
            }),
        }
    }
}

impl From<api::IngressBackend> for IngressBackend {
    fn from(b: api::IngressBackend) -> Self {
        IngressBackend {
            resource: b.resource.map(Box::new),
            service: b.service.map(|s| IngressServiceBackend {
                name: s.name,
                port: s.port.map(|p| ServiceBackendPort {
                    name: p.name,
                    number: p.number,
                }),
            }),
        }
    }
}

impl From<IngressBackend> for api::IngressBackend {
    fn from(b: IngressBackend) -> Self {
        api::IngressBackend {
            resource: b.resource.map(|r| *r),
            service: b.service.map(|s| api::IngressServiceBackend {
                name: s.name,
                port: s.port.map(|p| api::ServiceBackendPort {
                    name: p.name,
                    number: p.number,
                }),
            }),
        }
    }
}

impl Namespaced for Ingress {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.metadata.namespace
    }
}

impl From<api::Ingress> for Ingress {
    fn from(i: api::Ingress) -> Self {
        let creation_timestamp = i.metadata.creation_timestamp.clone();
        Ingress {
            // Every annotation: the empty prefix keeps all.
            metadata: Meta::from_api(i.metadata, Some("")),
            creation_timestamp,
            spec: i.spec.map(Into::into),
        }
    }
}

impl From<Ingress> for api::Ingress {
    fn from(i: Ingress) -> Self {
        let mut metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            i.metadata.into();
        metadata.creation_timestamp = i.creation_timestamp;
        api::Ingress {
            metadata,
            spec: i.spec.map(Into::into),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field translation reads, each set (the API's JSON).
    fn read_fields() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web", "namespace": "shop",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/",
                                "kubernetes.io/ingress.class": "xdp-ingress",
                                "xdp-ingress.dev/l4-acceleration": "true"}
            },
            "spec": {
                "ingressClassName": "xdp-ingress",
                "defaultBackend": {"service": {"name": "default", "port": {"number": 80}}},
                "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                "rules": [{
                    "host": "a.example.com",
                    "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                        {"path": "/r", "pathType": "Exact",
                         "backend": {"resource": {"apiGroup": "x.dev", "kind": "Bucket",
                                                  "name": "b"}}}
                    ]}
                }]
            }
        })
    }

    /// The kept lists have no spare room: `collect` reuses the API list's buffer, sized for
    /// the API's larger items (a rule's two paths had room for three).
    #[test]
    fn kept_lists_are_exact() {
        let i: Ingress = serde_json::from_value(read_fields()).unwrap();
        let spec = i.spec.unwrap();
        let rules = spec.rules.as_ref().unwrap();
        assert_eq!(rules.capacity(), rules.len());
        let paths = &rules[0].http.as_ref().unwrap().paths;
        assert_eq!((paths.len(), paths.capacity()), (2, 2));
        let tls = spec.tls.as_ref().unwrap();
        assert_eq!(tls.capacity(), tls.len());
    }

    /// API JSON in, compact, API JSON out: every field translation reads comes back as it was.
    #[test]
    fn round_trip_keeps_every_field_translation_reads() {
        let i: Ingress = serde_json::from_value(read_fields()).unwrap();
        // Through the API struct, which writes its apiVersion and kind: a manifest file again.
        let out = serde_json::to_value(&i).unwrap();
        assert_eq!(out, read_fields());
        let again: Ingress = serde_json::from_value(out).unwrap();
        assert_eq!(again, i);
    }

    /// Labels, the rest of the metadata and the status leave the compact Ingress, hence
    /// everything translation sees of it, exactly as without them.
    #[test]
    fn dropped_fields_change_nothing_translation_sees() {
        let mut v = read_fields();
        let meta = v["metadata"].as_object_mut().unwrap();
        meta.insert("uid".into(), "u-1".into());
        meta.insert("generation".into(), 3.into());
        meta.insert("labels".into(), serde_json::json!({"app": "web"}));
        meta.insert("finalizers".into(), serde_json::json!(["x/y"]));
        v["status"] = serde_json::json!({"loadBalancer": {"ingress": [{"ip": "198.18.9.9"}]}});
        let full: Ingress = serde_json::from_value(v).unwrap();
        let read: Ingress = serde_json::from_value(read_fields()).unwrap();
        assert_eq!(full, read);
    }
}
