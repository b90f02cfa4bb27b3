//! Pure translation: store objects in, one immutable [`Snapshot`] out. No I/O here.
//!
//! - [`class`]: which Ingresses are ours.
//! - [`ingress`]: L7 virtual hosts, routes, certificates, default backend.
//! - [`service`]: L4 services the XDP path takes over.
//! - [`endpoints`]: Service port -> endpoints from EndpointSlices.
//! - [`annotations`]: ingress-nginx annotations -> route policy and upstream options.
//! - [`tls`]: TLS Secret validation.
//!
//! Every problem becomes a [`crate::model::Diagnostic`] on the object it belongs to; nothing
//! here fails as a whole.

pub mod annotations;
pub mod class;
pub mod diagnostics;
pub mod endpoints;
pub mod ingress;
pub mod service;
pub mod tls;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::{
    model::{ObjectKind, ObjectRef, Snapshot},
    store::{Key, Objects},
};

pub const DEFAULT_CONTROLLER_NAME: &str = "xdp-ingress.dev/controller";
pub const DEFAULT_INGRESS_CLASS: &str = "xdp-ingress";
/// Services with this annotation set to `"true"` are taken over by the XDP path.
pub const L4_ACCELERATION_ANNOTATION: &str = "xdp-ingress.dev/l4-acceleration";

/// What translation needs to know besides the objects (from flags).
#[derive(Clone, Debug)]
pub struct TranslateConfig {
    /// `spec.controller` of IngressClasses that are ours.
    pub controller_name: String,
    /// Class name matched by `ingressClassName` (when no IngressClass object of that name
    /// exists) and by the legacy `kubernetes.io/ingress.class` annotation.
    pub ingress_class: String,
    /// Also take Ingresses that name no class at all.
    pub watch_without_class: bool,
    /// The ingress's own Service (its endpoints are the node proxies).
    pub ingress_service: Option<Key>,
    /// This node's name, for locality.
    pub node_name: Option<String>,
    /// Secret used for TLS handshakes that match no `spec.tls` host.
    pub default_tls_secret: Option<Key>,
}

impl Default for TranslateConfig {
    fn default() -> Self {
        TranslateConfig {
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
            ingress_class: DEFAULT_INGRESS_CLASS.into(),
            watch_without_class: false,
            ingress_service: None,
            node_name: None,
            default_tls_secret: None,
        }
    }
}

/// Translates repeatedly, numbering snapshots and keeping parsed TLS Secrets between runs.
#[derive(Debug)]
pub struct Translator {
    pub config: TranslateConfig,
    version: u64,
    tls: tls::TlsCache,
}

impl Translator {
    pub fn new(config: TranslateConfig) -> Translator {
        Translator {
            config,
            version: 0,
            tls: tls::TlsCache::default(),
        }
    }

    /// The version the last snapshot got.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn translate(&mut self, objects: &Objects) -> Snapshot {
        self.version += 1;
        let mut diags = diagnostics::Diagnostics::default();
        diags.0.extend(objects.diagnostics.iter().cloned());
        let classes = class::Classes::new(objects, &self.config);
        let endpoints = endpoints::EndpointIndex::new(objects);

        let mut owned: Vec<_> = objects
            .ingresses
            .values()
            .filter(|i| classes.owns(i, &self.config))
            .collect();
        owned.sort_by_cached_key(|i| ingress::order_key(i));
        let owned_ingresses: Vec<ObjectRef> = {
            let mut v: Vec<_> = owned
                .iter()
                .map(|i| {
                    ObjectRef::new(
                        ObjectKind::Ingress,
                        i.metadata.namespace.clone().unwrap_or_default(),
                        i.metadata.name.clone().unwrap_or_default(),
                    )
                })
                .collect();
            v.sort();
            v
        };

        let mut builder =
            ingress::L7Builder::new(objects, &endpoints, &mut self.tls, &mut diags, &self.config);
        for ing in &owned {
            builder.add_ingress(ing);
        }
        let l7 = builder.finish();
        let l4 = service::l4_services(objects, &endpoints, &self.config, &mut diags);
        self.tls.retain(|r| {
            objects
                .secrets
                .contains_key(&Key::new(r.namespace.clone(), r.name.clone()))
        });

        Snapshot {
            version: self.version,
            l7,
            l4,
            diagnostics: diags.finish(),
            owned_ingresses,
            local_node: self.config.node_name.clone(),
        }
    }
}

/// One-shot translation (tests, `explain`).
pub fn translate(objects: &Objects, config: &TranslateConfig) -> Snapshot {
    Translator::new(config.clone()).translate(objects)
}

#[cfg(test)]
mod tests;
