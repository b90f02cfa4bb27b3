//! Small object builders for translation tests (`mk_*`).

use std::sync::Arc;

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Secret, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
        networking::v1::{IngressClass, IngressClassSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{ObjectMeta, Time},
        util::intstr::IntOrString,
    },
};

use super::TranslateConfig;
use crate::{
    compact::{
        ingress::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
            IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
        },
        meta::Meta,
    },
    store::Object,
};

pub fn mk_config() -> TranslateConfig {
    TranslateConfig::default()
}

/// The controller ConfigMap `ingress-nginx/cm` with `data`, and [`mk_config`] reading it.
pub fn with_controller_configmap(
    o: &mut crate::store::Objects,
    data: &[(&str, &str)],
) -> TranslateConfig {
    o.upsert(Object::ConfigMap(std::sync::Arc::new(
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: meta("ingress-nginx", "cm"),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
    )));
    TranslateConfig {
        configmap: Some(crate::store::Key::new("ingress-nginx", "cm")),
        ..mk_config()
    }
}

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

pub fn mk_class(name: &str, controller: &str, default: bool) -> Object {
    let mut m = meta("", name);
    if default {
        m.annotations = Some(
            [(
                super::class::DEFAULT_CLASS_ANNOTATION.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
    }
    Object::IngressClass(Arc::new(IngressClass {
        metadata: m,
        spec: Some(IngressClassSpec {
            controller: Some(controller.into()),
            parameters: None,
        }),
    }))
}

pub fn backend(svc: &str, port: &str) -> IngressBackend {
    IngressBackend {
        resource: None,
        service: Some(IngressServiceBackend {
            name: svc.into(),
            port: Some(match port.parse::<i32>() {
                Ok(n) => ServiceBackendPort {
                    number: Some(n),
                    name: None,
                },
                Err(_) => ServiceBackendPort {
                    number: None,
                    name: Some(port.into()),
                },
            }),
        }),
    }
}

/// `(host, [(path, pathType, service, port)])` per rule; class `xdp-ingress`.
pub type RuleSpec<'a> = (&'a str, Vec<(&'a str, &'a str, &'a str, &'a str)>);

pub fn mk_ingress(ns: &str, name: &str, created: i64, rules: Vec<RuleSpec>) -> Ingress {
    Ingress {
        metadata: Meta::from_api(meta(ns, name), None),
        creation_timestamp: k8s_openapi::jiff::Timestamp::from_second(created)
            .ok()
            .map(Time),
        spec: Some(IngressSpec {
            ingress_class_name: Some("xdp-ingress".into()),
            rules: Some(
                rules
                    .into_iter()
                    .map(|(host, paths)| IngressRule {
                        host: (!host.is_empty()).then(|| host.to_string()),
                        http: Some(HTTPIngressRuleValue {
                            paths: paths
                                .into_iter()
                                .map(|(path, ty, svc, port)| HTTPIngressPath {
                                    path: Some(path.into()),
                                    path_type: ty.into(),
                                    backend: backend(svc, port),
                                })
                                .collect(),
                        }),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

pub fn with_tls(mut ing: Ingress, hosts: &[&str], secret: &str) -> Ingress {
    ing.spec
        .get_or_insert_default()
        .tls
        .get_or_insert_default()
        .push(IngressTLS {
            hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
            secret_name: Some(secret.into()),
        });
    ing
}

pub fn with_annotation(mut ing: Ingress, k: &str, v: &str) -> Ingress {
    ing.metadata
        .annotations
        .get_or_insert_default()
        .insert(k.into(), v.into());
    ing
}

pub fn ing(i: Ingress) -> Object {
    Object::Ingress(Arc::new(i))
}

pub fn mk_port(name: Option<&str>, port: i32, target: IntOrString) -> ServicePort {
    ServicePort {
        name: name.map(str::to_string),
        port,
        target_port: Some(target),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub fn mk_service(ns: &str, name: &str, ty: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some(ty.into()),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}

/// The API Service (or a compact one taken from a store) as the store keeps it.
pub fn svc(s: impl Into<crate::compact::service::Service>) -> Object {
    Object::Service(Arc::new(s.into()))
}

/// `(address, ready, serving, terminating)`.
pub type EndpointSpec<'a> = (&'a str, Option<bool>, Option<bool>, Option<bool>);

/// Endpoints are on node `node-a`, zone `zone-1`.
pub fn mk_slice(
    ns: &str,
    name: &str,
    service: &str,
    family: &str,
    ports: &[(Option<&str>, i32)],
    endpoints: &[EndpointSpec],
) -> Object {
    let mut m = meta(ns, name);
    m.labels = Some(
        [(
            super::endpoints::SERVICE_NAME_LABEL.to_string(),
            service.to_string(),
        )]
        .into(),
    );
    Object::EndpointSlice(Arc::new(
        crate::compact::endpoint_slice::EndpointSlice::from(EndpointSlice {
            metadata: m,
            address_type: family.into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| EndpointPort {
                        name: n.map(str::to_string),
                        port: Some(*p),
                        protocol: Some("TCP".into()),
                        app_protocol: None,
                    })
                    .collect(),
            ),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|(a, ready, serving, terminating)| Endpoint {
                        addresses: vec![a.to_string()],
                        conditions: Some(EndpointConditions {
                            ready: *ready,
                            serving: *serving,
                            terminating: *terminating,
                        }),
                        node_name: Some("node-a".into()),
                        zone: Some("zone-1".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
    ))
}

pub fn mk_tls_secret(ns: &str, name: &str, crt: &str, key: &str) -> Secret {
    Secret {
        metadata: meta(ns, name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
                ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// A self-signed certificate and its key, as PEM.
pub fn mk_cert_pem(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

/// ClusterIP Services `names` in `default` (port 80 "http" -> 8080), the i-th with one ready
/// pod `198.19.<i>.2` in the EndpointSlice `<name>-abc`.
pub fn services_with_one_pod(names: &[&str]) -> crate::store::Objects {
    let mut o = crate::store::Objects::default();
    for (i, name) in names.iter().enumerate() {
        o.upsert(svc(mk_service(
            "default",
            name,
            "ClusterIP",
            vec![mk_port(Some("http"), 80, IntOrString::Int(8080))],
        )));
        o.upsert(mk_slice(
            "default",
            &format!("{name}-abc"),
            name,
            "IPv4",
            &[(Some("http"), 8080)],
            &[(&format!("198.19.{i}.2"), Some(true), None, None)],
        ));
    }
    o
}
