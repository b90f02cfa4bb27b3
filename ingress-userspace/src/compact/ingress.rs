//! An Ingress (`networking.k8s.io/v1`) as the store keeps it.
//!
//! Kept: the object's name, namespace and annotations (all of them: translation reads several
//! prefixes) as [`super::meta::Meta`] rather than the ~330-byte `ObjectMeta`, its
//! `creationTimestamp` (conflict precedence: oldest first), and the whole `spec`, as the API
//! names it, so translation reads it as before. Dropped: labels and the rest of the metadata,
//! and `status` (ours to write, never read; the API source already dropped it). At 10k
//! Ingresses: ~300 bytes less per Ingress, before its strings.

use k8s_openapi::{
    api::networking::v1::{self as api, IngressSpec},
    apimachinery::pkg::apis::meta::v1::Time,
};
use serde::{Deserialize, Serialize};

use super::meta::{Meta, Namespaced, shrink};

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

impl Namespaced for Ingress {
    fn namespace_mut(&mut self) -> &mut Option<String> {
        &mut self.metadata.namespace
    }
}

impl From<api::Ingress> for Ingress {
    fn from(i: api::Ingress) -> Self {
        let creation_timestamp = i.metadata.creation_timestamp.clone();
        let mut spec = i.spec;
        if let Some(spec) = &mut spec {
            shrink(&mut spec.rules);
            for rule in spec.rules.iter_mut().flatten() {
                if let Some(http) = &mut rule.http {
                    http.paths.shrink_to_fit();
                }
            }
            shrink(&mut spec.tls);
            for tls in spec.tls.iter_mut().flatten() {
                shrink(&mut tls.hosts);
            }
        }
        Ingress {
            // Every annotation: the empty prefix keeps all.
            metadata: Meta::from_api(i.metadata, Some("")),
            creation_timestamp,
            spec,
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
            spec: i.spec,
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
