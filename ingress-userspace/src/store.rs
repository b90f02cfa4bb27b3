//! The object store: every Kubernetes object the sources delivered, by kind and `namespace/name`.
//!
//! Each source (manifest directory, Kubernetes API) writes its own layer, so one source's
//! re-list never deletes what another delivered; translation reads the merged view. Values are
//! `Arc`s: a snapshot of the store is cheap, and an unchanged object keeps its pointer (which
//! lets translation cache parsed TLS secrets across runs).

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Node, Secret},
    networking::v1::IngressClass,
};

use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway,
    grpcroutes::GrpcRoute, listenersets::ListenerSet, referencegrants::ReferenceGrant,
};
use k8s_openapi::api::core::v1::Namespace;

/// TCPRoute and UDPRoute, named once here (their generated names change across gateway-api
/// releases). The crate (0.22, Gateway API v1.5) has them at `v1alpha2` only; Gateway API v1.6
/// promoted them to `v1` with the same schema, so these types hold either version (the API
/// source watches the one served, [`crate::source::served_versions`]).
pub type TcpRoute = gateway_api::apis::experimental::tcproutes::TcpRoute;
pub type UdpRoute = gateway_api::apis::experimental::udproutes::UdpRoute;
/// HTTPRoute v1 as the experimental channel has it: the standard fields and the
/// experimental ones translation reads (`rules[].retry`, GEP-1731); a standard-channel object
/// reads the same, without them.
pub type HttpRoute = gateway_api::apis::experimental::httproutes::HttpRoute;
/// The types [`HttpRoute`] is made of.
pub use gateway_api::apis::experimental::httproutes;
/// TLSRoute v1 (standard channel since Gateway API v1.5).
pub type TlsRoute = gateway_api::apis::standard::tlsroutes::TlsRoute;
/// `apiVersion` of TCPRoute and UDPRoute since Gateway API v1.6 (standard channel, storage
/// version); `v1alpha2` is still served, deprecated.
pub const L4_ROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1";
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

/// The kinds the store holds, each named once: `Variant(ObjectKind) field: Type [scope]`, doc.
/// The variant is the Kubernetes `kind`; `scope` is `namespaced` or `cluster`, and
/// `namespaced, string_data` marks the Secret, whose `stringData` the manifest source merges
/// into `data`. Every per-kind match below ([`Object`], [`Objects`] and their methods), the
/// manifest decoding ([`crate::source::files`]) and [`ALL_KINDS`] are generated from this
/// list, so a new kind cannot be left out of one of them.
macro_rules! kinds {
    ($callback:ident) => {
        $callback! {
            /// Compact: what translation reads ([`crate::compact::ingress`]).
            Ingress ingresses: crate::compact::ingress::Ingress [namespaced],
            IngressClass ingress_classes: IngressClass [cluster],
            /// Compact: what translation reads ([`crate::compact::service`]).
            Service services: crate::compact::service::Service [namespaced],
            /// Compact: what translation reads ([`crate::compact::endpoint_slice`]).
            EndpointSlice endpoint_slices: crate::compact::endpoint_slice::EndpointSlice [namespaced],
            Secret secrets: Secret [namespaced, string_data],
            Node nodes: Node [cluster],
            /// The ingress-nginx controller ConfigMap (`--configmap`); no other ConfigMap is read.
            ConfigMap config_maps: ConfigMap [namespaced],
            Namespace namespaces: Namespace [cluster],
            /// Gateway API (`gateway.networking.k8s.io`).
            GatewayClass gateway_classes: GatewayClass [cluster],
            Gateway gateways: Gateway [namespaced],
            HTTPRoute http_routes: HttpRoute [namespaced],
            GRPCRoute grpc_routes: GrpcRoute [namespaced],
            ReferenceGrant reference_grants: ReferenceGrant [namespaced],
            TCPRoute tcp_routes: TcpRoute [namespaced],
            UDPRoute udp_routes: UdpRoute [namespaced],
            TLSRoute tls_routes: TlsRoute [namespaced],
            BackendTLSPolicy backend_tls_policies: BackendTlsPolicy [namespaced],
            /// GEP-1713: more listeners for a Gateway whose `allowedListeners` admits them.
            ListenerSet listener_sets: ListenerSet [namespaced],
        }
    };
}
pub(crate) use kinds;

/// `o` as `Debug` may show it: a Secret without its data bytes.
fn shown<T: std::fmt::Debug + 'static>(o: &T) -> Box<dyn std::fmt::Debug + '_> {
    match (o as &dyn std::any::Any).downcast_ref::<Secret>() {
        Some(s) => Box::new(RedactedSecret(s)),
        None => Box::new(o),
    }
}

macro_rules! define_store {
    ($($(#[$doc:meta])* $variant:ident $field:ident : $ty:ty [$($flag:ident),*],)*) => {
        /// Every kind the store holds, in the order of the list above.
        pub const ALL_KINDS: &[ObjectKind] = &[$(ObjectKind::$variant,)*];

        /// One object of a kind the controller reads. `Debug` shows a Secret's name, type and
        /// data keys with their lengths, never the data (changes and stores get logged).
        #[derive(Clone, PartialEq)]
        pub enum Object {
            $($(#[$doc])* $variant(Arc<$ty>),)*
        }

        impl std::fmt::Debug for Object {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $(Object::$variant(o) => {
                        f.debug_tuple(stringify!($variant)).field(&shown(&**o)).finish()
                    })*
                }
            }
        }

        impl Object {
            pub fn kind(&self) -> ObjectKind {
                match self {
                    $(Object::$variant(_) => ObjectKind::$variant,)*
                }
            }

            /// The object as JSON (as the API server has it).
            pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
                match self {
                    $(Object::$variant(o) => serde_json::to_value(&**o),)*
                }
            }

            pub fn key(&self) -> Key {
                // Per kind: compact kinds have their own metadata type, with the same fields.
                let (namespace, name) = match self {
                    $(Object::$variant(o) => (&o.metadata.namespace, &o.metadata.name),)*
                };
                Key::new(
                    namespace.clone().unwrap_or_default(),
                    name.clone().unwrap_or_default(),
                )
            }
        }

        /// All objects of one layer (or the merged view), by kind then key. `Debug` redacts
        /// Secrets as [`Object`]'s does.
        #[derive(Clone, Default, PartialEq)]
        pub struct Objects {
            $(pub $field: BTreeMap<Key, Arc<$ty>>,)*
            /// Problems the sources found before translation (e.g. a manifest file that does
            /// not parse).
            pub diagnostics: Vec<Diagnostic>,
        }

        impl std::fmt::Debug for Objects {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct("Objects");
                $(
                    let m: BTreeMap<&Key, Box<dyn std::fmt::Debug + '_>> =
                        self.$field.iter().map(|(k, o)| (k, shown(&**o))).collect();
                    d.field(stringify!($field), &m);
                )*
                d.field("diagnostics", &self.diagnostics).finish()
            }
        }

        impl Objects {
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
                    $(Object::$variant(o) => put(&mut self.$field, k, o),)*
                }
            }

            /// Removes; returns whether it was there.
            pub fn delete(&mut self, kind: ObjectKind, key: &Key) -> bool {
                match kind {
                    $(ObjectKind::$variant => self.$field.remove(key).is_some(),)*
                    _ => false,
                }
            }

            /// Whether an object of `kind` with `key` is here.
            pub fn contains(&self, kind: ObjectKind, key: &Key) -> bool {
                match kind {
                    $(ObjectKind::$variant => self.$field.contains_key(key),)*
                    _ => false,
                }
            }

            /// Replaces every object of `kind` with `objects` (a re-list); returns whether
            /// anything changed.
            pub fn replace_kind(&mut self, kind: ObjectKind, objects: Vec<Object>) -> bool {
                let fresh = Objects::from_objects(objects.into_iter().filter(|o| o.kind() == kind));
                match kind {
                    $(ObjectKind::$variant => {
                        let changed = self.$field != fresh.$field;
                        self.$field = fresh.$field;
                        changed
                    })*
                    _ => false,
                }
            }

            /// Builds a layer from a list of objects; later duplicates replace earlier ones.
            ///
            /// Each kind's map is built at once from its entries sorted by key, which fills
            /// the B-tree's nodes (11 entries each). Inserted one by one, in the files' order
            /// or the API's, a full node splits in two and nodes stay half to two thirds
            /// full: ~50 bytes more per object (an entry is 56: its [`Key`] and the `Arc`),
            /// 2-3 MiB of a layer at 10k Ingresses (`bench_control_plane`'s heap parts).
            pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Objects {
                #[derive(Default)]
                struct Entries {
                    $($field: Vec<(Key, Arc<$ty>)>,)*
                }
                let mut entries = Entries::default();
                for o in objects {
                    let k = o.key();
                    match o {
                        $(Object::$variant(v) => entries.$field.push((k, v)),)*
                    }
                }
                Objects {
                    $($field: bulk(entries.$field),)*
                    diagnostics: Vec::new(),
                }
            }

            /// Adds everything from `other` (which wins on duplicate keys).
            fn merge_from(&mut self, other: &Objects) {
                $(self.$field.extend(other.$field.iter().map(|(k, v)| (k.clone(), v.clone())));)*
                self.diagnostics.extend(other.diagnostics.iter().cloned());
            }

            /// Objects of every kind (diagnostics not counted).
            pub fn len(&self) -> usize {
                0 $(+ self.$field.len())*
            }
        }
    };
}

kinds!(define_store);

/// A map of `entries` (the last of equal keys wins), built from them sorted: `BTreeMap`'s
/// `FromIterator` then fills its nodes, sorting again in linear time (the input is one run).
fn bulk<T>(mut entries: Vec<(Key, Arc<T>)>) -> BTreeMap<Key, Arc<T>> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // Stable: equal keys stay in input order; `later` goes, its value kept in the earlier slot.
    entries.dedup_by(|later, kept| {
        let equal = later.0 == kept.0;
        if equal {
            std::mem::swap(&mut later.1, &mut kept.1);
        }
        equal
    });
    entries.into_iter().collect()
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

impl Objects {
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

    /// A Service whose content is `label` (its clusterIP: the store keeps no labels).
    fn svc(ns: &str, name: &str, label: &str) -> Object {
        use k8s_openapi::api::core::v1::{Service, ServiceSpec};
        let api = Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(label.into()),
                ..Default::default()
            }),
            status: None,
        };
        Object::Service(Arc::new(api.into()))
    }

    #[test]
    fn debug_never_shows_secret_data() {
        let secret = Object::Secret(Arc::new(Secret {
            metadata: ObjectMeta {
                namespace: Some("a".into()),
                name: Some("tls".into()),
                ..Default::default()
            },
            data: Some(
                [(
                    "tls.key".to_string(),
                    k8s_openapi::ByteString(b"hunter2".to_vec()),
                )]
                .into(),
            ),
            ..Default::default()
        }));
        let one = format!("{secret:?}");
        let all = format!("{:?}", Objects::from_objects([secret, svc("a", "x", "1")]));
        for shown in [&one, &all] {
            assert!(!shown.contains("104, 117"), "{shown}"); // b"hu..." as a list of bytes
            assert!(shown.contains("tls.key: <7 bytes>"), "{shown}");
        }
        assert!(all.contains("services"), "{all}");
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
    fn a_layer_built_at_once_equals_one_built_by_upserts() {
        let objects: Vec<Object> = [
            ("b", "2", "1"),
            ("a", "1", "1"),
            ("b", "2", "2"),
            ("a", "0", "1"),
        ]
        .iter()
        .map(|(ns, name, label)| svc(ns, name, label))
        .collect();
        let mut one_by_one = Objects::default();
        for o in objects.clone() {
            one_by_one.upsert(o);
        }
        let built = Objects::from_objects(objects);
        assert_eq!(built, one_by_one);
        // The later of the two `b/2` wins.
        assert_eq!(
            built.services[&Key::new("b", "2")],
            one_by_one.services[&Key::new("b", "2")]
        );
        let Object::Service(later) = svc("b", "2", "2") else {
            unreachable!()
        };
        assert_eq!(built.services[&Key::new("b", "2")], later);
        let keys: Vec<String> = built.services.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["a/0", "a/1", "b/2"]);
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
