//! The object store: every Kubernetes object the sources delivered, by kind and `namespace/name`.
//!
//! Each source (manifest directory, Kubernetes API) writes its own layer, so one source's
//! re-list never deletes what another delivered; translation reads the merged view. Values are
//! `Arc`s: a snapshot of the store is cheap, and an unchanged object keeps its pointer (which
//! lets translation cache parsed TLS secrets across runs).

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Node, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};

use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway,
    grpcroutes::GrpcRoute, httproutes::HttpRoute, referencegrants::ReferenceGrant,
};
use k8s_openapi::api::core::v1::Namespace;

/// Gateway API experimental-channel route kinds, named once here (their generated names
/// change across gateway-api releases).
pub type TcpRoute = gateway_api::apis::experimental::tcproutes::TcpRoute;
pub type UdpRoute = gateway_api::apis::experimental::udproutes::UdpRoute;
/// TLSRoute v1 (standard channel since Gateway API v1.5).
pub type TlsRoute = gateway_api::apis::standard::tlsroutes::TlsRoute;
/// `apiVersion` of [`TcpRoute`] and [`UdpRoute`].
pub const L4_ROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1alpha2";
/// `apiVersion` of [`TlsRoute`].
pub const TLS_ROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1";

use crate::object::{Diagnostic, ObjectKind};

/// `namespace/name` of an object; namespace is empty for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Key {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One object of a kind the controller reads. `Debug` shows a Secret's name, type and data
/// keys with their lengths, never the data (changes and stores get logged).
#[derive(Clone, PartialEq)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    Node(Arc<Node>),
    /// The ingress-nginx controller ConfigMap (`--configmap`); no other ConfigMap is read.
    ConfigMap(Arc<ConfigMap>),
    Namespace(Arc<Namespace>),
    /// Gateway API (standard channel, `gateway.networking.k8s.io`).
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    HTTPRoute(Arc<HttpRoute>),
    GRPCRoute(Arc<GrpcRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
    TCPRoute(Arc<TcpRoute>),
    UDPRoute(Arc<UdpRoute>),
    TLSRoute(Arc<TlsRoute>),
    BackendTLSPolicy(Arc<BackendTlsPolicy>),
}

/// A Secret as `Debug` may show it: no data bytes.
struct RedactedSecret<'a>(&'a Secret);

impl std::fmt::Debug for RedactedSecret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        let lens = |m: Option<&BTreeMap<String, k8s_openapi::ByteString>>| -> Vec<String> {
            m.into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}: <{} bytes>", v.0.len()))
                .collect()
        };
        let string_data: Vec<String> = s
            .string_data
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}: <{} bytes>", v.len()))
            .collect();
        f.debug_struct("Secret")
            .field("namespace", &s.metadata.namespace)
            .field("name", &s.metadata.name)
            .field("type", &s.type_)
            .field("data", &lens(s.data.as_ref()))
            .field("string_data", &string_data)
            .finish()
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Ingress(o) => f.debug_tuple("Ingress").field(o).finish(),
            Object::IngressClass(o) => f.debug_tuple("IngressClass").field(o).finish(),
            Object::Service(o) => f.debug_tuple("Service").field(o).finish(),
            Object::EndpointSlice(o) => f.debug_tuple("EndpointSlice").field(o).finish(),
            Object::Secret(o) => f.debug_tuple("Secret").field(&RedactedSecret(o)).finish(),
            Object::Node(o) => f.debug_tuple("Node").field(o).finish(),
            Object::ConfigMap(o) => f.debug_tuple("ConfigMap").field(o).finish(),
            Object::Namespace(o) => f.debug_tuple("Namespace").field(o).finish(),
            Object::GatewayClass(o) => f.debug_tuple("GatewayClass").field(o).finish(),
            Object::Gateway(o) => f.debug_tuple("Gateway").field(o).finish(),
            Object::HTTPRoute(o) => f.debug_tuple("HTTPRoute").field(o).finish(),
            Object::GRPCRoute(o) => f.debug_tuple("GRPCRoute").field(o).finish(),
            Object::ReferenceGrant(o) => f.debug_tuple("ReferenceGrant").field(o).finish(),
            Object::TCPRoute(o) => f.debug_tuple("TCPRoute").field(o).finish(),
            Object::UDPRoute(o) => f.debug_tuple("UDPRoute").field(o).finish(),
            Object::TLSRoute(o) => f.debug_tuple("TLSRoute").field(o).finish(),
            Object::BackendTLSPolicy(o) => f.debug_tuple("BackendTLSPolicy").field(o).finish(),
        }
    }
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Ingress(_) => ObjectKind::Ingress,
            Object::IngressClass(_) => ObjectKind::IngressClass,
            Object::Service(_) => ObjectKind::Service,
            Object::EndpointSlice(_) => ObjectKind::EndpointSlice,
            Object::Secret(_) => ObjectKind::Secret,
            Object::Node(_) => ObjectKind::Node,
            Object::ConfigMap(_) => ObjectKind::ConfigMap,
            Object::Namespace(_) => ObjectKind::Namespace,
            Object::GatewayClass(_) => ObjectKind::GatewayClass,
            Object::Gateway(_) => ObjectKind::Gateway,
            Object::HTTPRoute(_) => ObjectKind::HTTPRoute,
            Object::GRPCRoute(_) => ObjectKind::GRPCRoute,
            Object::ReferenceGrant(_) => ObjectKind::ReferenceGrant,
            Object::TCPRoute(_) => ObjectKind::TCPRoute,
            Object::UDPRoute(_) => ObjectKind::UDPRoute,
            Object::TLSRoute(_) => ObjectKind::TLSRoute,
            Object::BackendTLSPolicy(_) => ObjectKind::BackendTLSPolicy,
        }
    }

    pub fn key(&self) -> Key {
        let meta = match self {
            Object::Ingress(o) => &o.metadata,
            Object::IngressClass(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::HTTPRoute(o) => &o.metadata,
            Object::GRPCRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::TCPRoute(o) => &o.metadata,
            Object::UDPRoute(o) => &o.metadata,
            Object::TLSRoute(o) => &o.metadata,
            Object::BackendTLSPolicy(o) => &o.metadata,
        };
        Key::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// All objects of one layer (or the merged view), by kind then key. `Debug` redacts Secrets
/// as [`Object`]'s does.
#[derive(Clone, Default, PartialEq)]
pub struct Objects {
    pub ingresses: BTreeMap<Key, Arc<Ingress>>,
    pub ingress_classes: BTreeMap<Key, Arc<IngressClass>>,
    pub services: BTreeMap<Key, Arc<Service>>,
    pub endpoint_slices: BTreeMap<Key, Arc<EndpointSlice>>,
    pub secrets: BTreeMap<Key, Arc<Secret>>,
    pub nodes: BTreeMap<Key, Arc<Node>>,
    pub config_maps: BTreeMap<Key, Arc<ConfigMap>>,
    pub namespaces: BTreeMap<Key, Arc<Namespace>>,
    pub gateway_classes: BTreeMap<Key, Arc<GatewayClass>>,
    pub gateways: BTreeMap<Key, Arc<Gateway>>,
    pub http_routes: BTreeMap<Key, Arc<HttpRoute>>,
    pub grpc_routes: BTreeMap<Key, Arc<GrpcRoute>>,
    pub reference_grants: BTreeMap<Key, Arc<ReferenceGrant>>,
    pub tcp_routes: BTreeMap<Key, Arc<TcpRoute>>,
    pub udp_routes: BTreeMap<Key, Arc<UdpRoute>>,
    pub tls_routes: BTreeMap<Key, Arc<TlsRoute>>,
    pub backend_tls_policies: BTreeMap<Key, Arc<BackendTlsPolicy>>,
    /// Problems the sources found before translation (e.g. a manifest file that does not parse).
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: BTreeMap<&Key, RedactedSecret> = self
            .secrets
            .iter()
            .map(|(k, s)| (k, RedactedSecret(s)))
            .collect();
        f.debug_struct("Objects")
            .field("ingresses", &self.ingresses)
            .field("ingress_classes", &self.ingress_classes)
            .field("services", &self.services)
            .field("endpoint_slices", &self.endpoint_slices)
            .field("secrets", &secrets)
            .field("nodes", &self.nodes)
            .field("config_maps", &self.config_maps)
            .field("namespaces", &self.namespaces)
            .field("gateway_classes", &self.gateway_classes)
            .field("gateways", &self.gateways)
            .field("http_routes", &self.http_routes)
            .field("grpc_routes", &self.grpc_routes)
            .field("reference_grants", &self.reference_grants)
            .field("tcp_routes", &self.tcp_routes)
            .field("udp_routes", &self.udp_routes)
            .field("tls_routes", &self.tls_routes)
            .field("backend_tls_policies", &self.backend_tls_policies)
            .field("diagnostics", &self.diagnostics)
            .finish()
    }
}

impl Objects {
    /// Builds a layer from a list of objects; later duplicates replace earlier ones.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Objects {
        let mut all = Objects::default();
        for o in objects {
            all.upsert(o);
        }
        all
    }

    /// Inserts or replaces; returns whether anything changed.
    pub fn upsert(&mut self, object: Object) -> bool {
        fn put<T: PartialEq>(m: &mut BTreeMap<Key, Arc<T>>, k: Key, v: Arc<T>) -> bool {
            match m.get(&k) {
                Some(old) if Arc::ptr_eq(old, &v) || **old == *v => false,
                _ => {
                    m.insert(k, v);
                    true
                }
            }
        }
        let k = object.key();
        match object {
            Object::Ingress(o) => put(&mut self.ingresses, k, o),
            Object::IngressClass(o) => put(&mut self.ingress_classes, k, o),
            Object::Service(o) => put(&mut self.services, k, o),
            Object::EndpointSlice(o) => put(&mut self.endpoint_slices, k, o),
            Object::Secret(o) => put(&mut self.secrets, k, o),
            Object::Node(o) => put(&mut self.nodes, k, o),
            Object::ConfigMap(o) => put(&mut self.config_maps, k, o),
            Object::Namespace(o) => put(&mut self.namespaces, k, o),
            Object::GatewayClass(o) => put(&mut self.gateway_classes, k, o),
            Object::Gateway(o) => put(&mut self.gateways, k, o),
            Object::HTTPRoute(o) => put(&mut self.http_routes, k, o),
            Object::GRPCRoute(o) => put(&mut self.grpc_routes, k, o),
            Object::ReferenceGrant(o) => put(&mut self.reference_grants, k, o),
            Object::TCPRoute(o) => put(&mut self.tcp_routes, k, o),
            Object::UDPRoute(o) => put(&mut self.udp_routes, k, o),
            Object::TLSRoute(o) => put(&mut self.tls_routes, k, o),
            Object::BackendTLSPolicy(o) => put(&mut self.backend_tls_policies, k, o),
        }
    }

    /// Removes; returns whether it was there.
    pub fn delete(&mut self, kind: ObjectKind, key: &Key) -> bool {
        match kind {
            ObjectKind::Ingress => self.ingresses.remove(key).is_some(),
            ObjectKind::IngressClass => self.ingress_classes.remove(key).is_some(),
            ObjectKind::Service => self.services.remove(key).is_some(),
            ObjectKind::EndpointSlice => self.endpoint_slices.remove(key).is_some(),
            ObjectKind::Secret => self.secrets.remove(key).is_some(),
            ObjectKind::Node => self.nodes.remove(key).is_some(),
            ObjectKind::ConfigMap => self.config_maps.remove(key).is_some(),
            ObjectKind::Namespace => self.namespaces.remove(key).is_some(),
            ObjectKind::GatewayClass => self.gateway_classes.remove(key).is_some(),
            ObjectKind::Gateway => self.gateways.remove(key).is_some(),
            ObjectKind::HTTPRoute => self.http_routes.remove(key).is_some(),
            ObjectKind::GRPCRoute => self.grpc_routes.remove(key).is_some(),
            ObjectKind::ReferenceGrant => self.reference_grants.remove(key).is_some(),
            ObjectKind::TCPRoute => self.tcp_routes.remove(key).is_some(),
            ObjectKind::UDPRoute => self.udp_routes.remove(key).is_some(),
            ObjectKind::TLSRoute => self.tls_routes.remove(key).is_some(),
            ObjectKind::BackendTLSPolicy => self.backend_tls_policies.remove(key).is_some(),
            _ => false,
        }
    }

    /// Whether an object of `kind` with `key` is here.
    pub fn contains(&self, kind: ObjectKind, key: &Key) -> bool {
        match kind {
            ObjectKind::Ingress => self.ingresses.contains_key(key),
            ObjectKind::IngressClass => self.ingress_classes.contains_key(key),
            ObjectKind::Service => self.services.contains_key(key),
            ObjectKind::EndpointSlice => self.endpoint_slices.contains_key(key),
            ObjectKind::Secret => self.secrets.contains_key(key),
            ObjectKind::Node => self.nodes.contains_key(key),
            ObjectKind::ConfigMap => self.config_maps.contains_key(key),
            ObjectKind::Namespace => self.namespaces.contains_key(key),
            ObjectKind::GatewayClass => self.gateway_classes.contains_key(key),
            ObjectKind::Gateway => self.gateways.contains_key(key),
            ObjectKind::HTTPRoute => self.http_routes.contains_key(key),
            ObjectKind::ReferenceGrant => self.reference_grants.contains_key(key),
            ObjectKind::GRPCRoute => self.grpc_routes.contains_key(key),
            ObjectKind::TCPRoute => self.tcp_routes.contains_key(key),
            ObjectKind::UDPRoute => self.udp_routes.contains_key(key),
            ObjectKind::TLSRoute => self.tls_routes.contains_key(key),
            ObjectKind::BackendTLSPolicy => self.backend_tls_policies.contains_key(key),
            _ => false,
        }
    }

    /// Replaces every object of `kind` with `objects` (a re-list); returns whether anything changed.
    pub fn replace_kind(&mut self, kind: ObjectKind, objects: Vec<Object>) -> bool {
        let mut fresh = Objects::default();
        for o in objects.into_iter().filter(|o| o.kind() == kind) {
            fresh.upsert(o);
        }
        macro_rules! swap {
            ($f:ident) => {{
                let changed = self.$f != fresh.$f;
                self.$f = fresh.$f;
                changed
            }};
        }
        match kind {
            ObjectKind::Ingress => swap!(ingresses),
            ObjectKind::IngressClass => swap!(ingress_classes),
            ObjectKind::Service => swap!(services),
            ObjectKind::EndpointSlice => swap!(endpoint_slices),
            ObjectKind::Secret => swap!(secrets),
            ObjectKind::Node => swap!(nodes),
            ObjectKind::ConfigMap => swap!(config_maps),
            ObjectKind::Namespace => swap!(namespaces),
            ObjectKind::GatewayClass => swap!(gateway_classes),
            ObjectKind::Gateway => swap!(gateways),
            ObjectKind::HTTPRoute => swap!(http_routes),
            ObjectKind::GRPCRoute => swap!(grpc_routes),
            ObjectKind::ReferenceGrant => swap!(reference_grants),
            ObjectKind::TCPRoute => swap!(tcp_routes),
            ObjectKind::UDPRoute => swap!(udp_routes),
            ObjectKind::TLSRoute => swap!(tls_routes),
            ObjectKind::BackendTLSPolicy => swap!(backend_tls_policies),
            _ => false,
        }
    }

    /// Adds everything from `other` (which wins on duplicate keys).
    fn merge_from(&mut self, other: &Objects) {
        fn m<T>(a: &mut BTreeMap<Key, Arc<T>>, b: &BTreeMap<Key, Arc<T>>) {
            a.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        m(&mut self.ingresses, &other.ingresses);
        m(&mut self.ingress_classes, &other.ingress_classes);
        m(&mut self.services, &other.services);
        m(&mut self.endpoint_slices, &other.endpoint_slices);
        m(&mut self.secrets, &other.secrets);
        m(&mut self.nodes, &other.nodes);
        m(&mut self.config_maps, &other.config_maps);
        m(&mut self.namespaces, &other.namespaces);
        m(&mut self.gateway_classes, &other.gateway_classes);
        m(&mut self.gateways, &other.gateways);
        m(&mut self.http_routes, &other.http_routes);
        m(&mut self.grpc_routes, &other.grpc_routes);
        m(&mut self.reference_grants, &other.reference_grants);
        m(&mut self.tcp_routes, &other.tcp_routes);
        m(&mut self.udp_routes, &other.udp_routes);
        m(&mut self.tls_routes, &other.tls_routes);
        m(&mut self.backend_tls_policies, &other.backend_tls_policies);
        self.diagnostics.extend(other.diagnostics.iter().cloned());
    }

    pub fn len(&self) -> usize {
        self.ingresses.len()
            + self.ingress_classes.len()
            + self.services.len()
            + self.endpoint_slices.len()
            + self.secrets.len()
            + self.nodes.len()
            + self.config_maps.len()
            + self.namespaces.len()
            + self.gateway_classes.len()
            + self.gateways.len()
            + self.http_routes.len()
            + self.grpc_routes.len()
            + self.reference_grants.len()
            + self.tcp_routes.len()
            + self.udp_routes.len()
            + self.tls_routes.len()
            + self.backend_tls_policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where objects came from; each source owns one layer of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    /// `--manifests DIR` (or the embedded default manifests).
    Files,
    /// The Kubernetes API server.
    Kube,
    /// Tests and tools that feed objects directly.
    Other,
}

/// One change a source reports.
#[derive(Clone, Debug)]
pub enum Change {
    Upsert(Object),
    Delete(ObjectKind, Key),
    /// A complete re-list of one kind (after a watch restart or `410 Gone`).
    ReplaceKind(ObjectKind, Vec<Object>),
    /// The source's complete content (the manifest directory after any edit).
    ReplaceAll(Box<Objects>),
    /// Several changes that must land in the same snapshot (the first complete list of every
    /// kind, so no snapshot ever sees Ingresses without their Services).
    Batch(Vec<Change>),
}

fn apply_to(layer: &mut Objects, change: Change) -> bool {
    match change {
        Change::Upsert(o) => layer.upsert(o),
        Change::Delete(kind, key) => layer.delete(kind, &key),
        Change::ReplaceKind(kind, objects) => layer.replace_kind(kind, objects),
        Change::ReplaceAll(objects) => {
            let changed = *layer != *objects;
            *layer = *objects;
            changed
        }
        Change::Batch(changes) => changes
            .into_iter()
            .fold(false, |changed, c| apply_to(layer, c) | changed),
    }
}

/// The layered store. Single writer (the control loop); readers get [`Store::view`].
#[derive(Debug, Default)]
pub struct Store {
    layers: BTreeMap<SourceId, Objects>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Applies a change from `source`; returns whether the store's content changed.
    pub fn apply(&mut self, source: SourceId, change: Change) -> bool {
        apply_to(self.layers.entry(source).or_default(), change)
    }

    /// The merged view of all layers (later sources win on duplicate keys). Cheap with one
    /// layer; with several it clones `Arc`s, not objects.
    pub fn view(&self) -> std::borrow::Cow<'_, Objects> {
        let mut non_empty = self
            .layers
            .values()
            .filter(|l| !l.is_empty() || !l.diagnostics.is_empty());
        match (non_empty.next(), non_empty.next()) {
            (None, _) => std::borrow::Cow::Owned(Objects::default()),
            (Some(only), None) => std::borrow::Cow::Borrowed(only),
            (Some(_), Some(_)) => {
                let mut all = Objects::default();
                for l in self.layers.values() {
                    all.merge_from(l);
                }
                std::borrow::Cow::Owned(all)
            }
        }
    }

    pub fn layer(&self, source: SourceId) -> Option<&Objects> {
        self.layers.get(&source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, label: &str) -> Object {
        Object::Service(Arc::new(Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: Some([("l".to_string(), label.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }))
    }

    #[test]
    fn upsert_reports_change_only_when_content_differs() {
        let mut s = Store::new();
        assert!(s.apply(SourceId::Kube, Change::Upsert(svc("a", "x", "1"))));
        assert!(!s.apply(SourceId::Kube, Change::Upsert(svc("a", "x", "1"))));
        assert!(s.apply(SourceId::Kube, Change::Upsert(svc("a", "x", "2"))));
        assert_eq!(s.view().services.len(), 1);
        assert!(s.apply(
            SourceId::Kube,
            Change::Delete(ObjectKind::Service, Key::new("a", "x"))
        ));
        assert!(!s.apply(
            SourceId::Kube,
            Change::Delete(ObjectKind::Service, Key::new("a", "x"))
        ));
        assert!(s.view().services.is_empty());
    }

    #[test]
    fn relist_replaces_one_kind_of_one_layer_only() {
        let mut s = Store::new();
        s.apply(SourceId::Files, Change::Upsert(svc("f", "file", "1")));
        s.apply(SourceId::Kube, Change::Upsert(svc("k", "old", "1")));
        assert!(s.apply(
            SourceId::Kube,
            Change::ReplaceKind(ObjectKind::Service, vec![svc("k", "new", "1")])
        ));
        let keys: Vec<String> = s.view().services.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["f/file", "k/new"]);
    }

    #[test]
    fn batch_applies_all_and_reports_any_change() {
        let mut s = Store::new();
        let batch = |label: &str| {
            Change::Batch(vec![
                Change::ReplaceKind(ObjectKind::Service, vec![svc("a", "x", label)]),
                Change::Upsert(svc("a", "y", "1")),
            ])
        };
        assert!(s.apply(SourceId::Kube, batch("1")));
        assert_eq!(s.view().services.len(), 2);
        assert!(s.apply(SourceId::Kube, batch("2")));
        assert!(!s.apply(
            SourceId::Kube,
            Change::Batch(vec![Change::Upsert(svc("a", "y", "1"))])
        ));
    }
}
