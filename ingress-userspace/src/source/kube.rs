//! The Kubernetes API source: one kube-rs watcher per kind (Ingress, IngressClass, Service,
//! EndpointSlice, Secrets, ConfigMaps, Node), with backoff. Secrets are watched by type,
//! only those translation reads: `kubernetes.io/tls` (certificates) and `Opaque` (basic-auth
//! htpasswd files, as `kubectl create secret generic` makes them), two watches merged into one
//! view of the kind; service-account tokens, Helm releases and the like never reach the store.
//! With `--secret-namespaces`, Secrets and ConfigMaps are watched in each listed namespace
//! instead (one namespaced watch per namespace and type, merged into one view of the kind), so
//! no cluster-wide Secret access is needed. ConfigMaps (the controller's `--configmap`, those
//! `custom-headers` names) are watched where Secrets are, plus the `--configmap` namespace.
//!
//! A watcher's (re-)list is buffered and sent as one `ReplaceKind`, so objects deleted while the
//! connection was down disappear on reconnect; `410 Gone` makes kube-rs re-list, which lands
//! here the same way. Errors only log: the store, and so the live snapshot, stay as they were
//! until the API server answers again.

use std::{collections::BTreeMap, fmt::Debug, path::Path, time::Duration};

use futures::StreamExt;
use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy,
    gatewayclasses::GatewayClass,
    gateways::Gateway,
    grpcroutes::GrpcRoute,
    listenersets::ListenerSet,
    referencegrants::{ReferenceGrant, ReferenceGrantSpec},
    tlsroutes::{TlsRouteSpec, TlsRouteStatus},
};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Namespace, Node, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};
use kube::{
    Api, Client, Resource,
    api::ListParams,
    core::NotUsed,
    runtime::{
        WatchStreamExt,
        utils::Backoff,
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{
    EventSender, SourceEvent,
    served_versions::{self, ServedVersions},
};
use crate::{
    model::ObjectKind,
    store::{ALL_KINDS, Change, HttpRoute, Key, Object, SourceId, TcpRoute, TlsRoute, UdpRoute},
};
use gateway_api::apis::experimental::{
    tcproutes::{TcpRouteSpec, TcpRouteStatus},
    udproutes::{UdpRouteSpec, UdpRouteStatus},
};
/// A Gateway API object of a kind [`served_versions::candidates`] lists, at whichever version
/// the cluster serves (the schema of what translation reads is the same at each).
type VersionedObject<S, U> = kube::core::Object<S, U>;

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("reading kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    #[error("building the client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `--kubeconfig`, else the in-cluster service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeSourceError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |message: String| KubeSourceError::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| err(e.to_string()))?
        }
        None => kube::Config::incluster().map_err(|e| KubeSourceError::InCluster(e.to_string()))?,
    };
    Ok(Client::try_from(config)?)
}

/// Capped exponential backoff: 200 ms doubling to 5 s, reset after a success. Shorter than
/// kube-rs's default so a returning API server is picked up quickly.
#[derive(Debug, Clone)]
pub struct QuickBackoff {
    next: Duration,
}

impl Default for QuickBackoff {
    fn default() -> Self {
        QuickBackoff {
            next: Duration::from_millis(200),
        }
    }
}

impl Iterator for QuickBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        Some(d)
    }
}

impl Backoff for QuickBackoff {
    fn reset(&mut self) {
        *self = QuickBackoff::default();
    }
}

/// Where the source watches.
#[derive(Clone, Debug, Default)]
pub struct WatchScope {
    /// Limits every namespaced kind (`--namespace`); `None`: all namespaces.
    pub namespace: Option<String>,
    /// `--secret-namespaces`: TLS Secrets only in these, one namespaced watch each.
    pub secret_namespaces: Option<Vec<String>>,
    /// `--configmap`: the ingress-nginx controller ConfigMap; its namespace's ConfigMaps are
    /// watched too.
    pub configmap: Option<Key>,
    /// Where the source records the version TCPRoute and UDPRoute are watched at (for the
    /// status writer, which writes through the same version).
    pub served_versions: ServedVersions,
}

/// Starts one watcher task per kind. `namespace` limits namespaced kinds.
pub fn spawn(
    client: Client,
    namespace: Option<&str>,
    events: EventSender,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scope = WatchScope {
        namespace: namespace.map(str::to_string),
        secret_namespaces: None,
        configmap: None,
        served_versions: ServedVersions::default(),
    };
    spawn_scoped(client, &scope, events)
}

/// Starts one watcher task per kind, in `scope`.
pub fn spawn_scoped(
    client: Client,
    scope: &WatchScope,
    events: EventSender,
) -> Vec<tokio::task::JoinHandle<()>> {
    let namespace = scope.namespace.as_deref();
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let cfg = watcher::Config::default;
    // Watchers report to the gatherer, which holds everything back until every kind has been
    // listed once (or INITIAL_SYNC_TIMEOUT passed), then forwards.
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let events_out = events;
    let events = tx;
    let secret_apis: Vec<Api<Secret>> = match &scope.secret_namespaces {
        Some(list) => list
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect(),
        None => vec![api::<Secret>(&client, namespace)],
    };
    // A Secret's type is immutable, so the two selectors never both see one Secret.
    let secret_scopes: Vec<(Api<Secret>, watcher::Config)> = secret_apis
        .into_iter()
        .flat_map(|api| {
            SECRET_TYPES
                .iter()
                .map(move |t| (api.clone(), cfg().fields(&format!("type={t}"))))
        })
        .collect();
    // One watcher for the kind (a second one's re-list would replace the first's objects).
    let configmap_scopes: Vec<(Api<ConfigMap>, watcher::Config)> = match configmap_namespaces(
        scope.secret_namespaces.as_deref(),
        namespace,
        &scope.configmap,
    ) {
        Some(list) => list
            .iter()
            .map(|ns| (Api::namespaced(client.clone(), ns), cfg()))
            .collect(),
        None => vec![(Api::all(client.clone()), cfg())],
    };
    // Every kind the store holds is watched, and every scope's first list counts: the Secret
    // kind is listed once per namespace and type, the ConfigMap kind once per namespace.
    let mut lists: BTreeMap<ObjectKind, usize> = ALL_KINDS.iter().map(|k| (*k, 1)).collect();
    lists.insert(ObjectKind::Secret, secret_scopes.len());
    lists.insert(ObjectKind::ConfigMap, configmap_scopes.len());
    let gatherer = tokio::spawn(gather_initial_sync(rx, events_out, lists));
    let mut tasks = vec![tokio::spawn(watch_kind(
        configmap_scopes,
        ObjectKind::ConfigMap,
        |o| Object::ConfigMap(trim_configmap(o).into()),
        events.clone(),
    ))];
    // The kinds watched at whichever version the cluster serves (`ServedVersions`): a watch of
    // the versioned object, made into the store's object by `$build`.
    macro_rules! served_version {
        ($kind:ident, $spec:ty, $status:ty, |$o:ident| $build:expr) => {
            tokio::spawn(watch_served_version(
                client.clone(),
                namespace.map(str::to_string),
                ObjectKind::$kind,
                scope.served_versions.clone(),
                |$o: VersionedObject<$spec, $status>| Object::$kind($build.into()),
                events.clone(),
            ))
        };
    }
    tasks.extend([
        gatherer,
        tokio::spawn(watch_kind(
            vec![(api::<Ingress>(&client, namespace), cfg())],
            ObjectKind::Ingress,
            // The compact Ingress drops the status (ours to write, never to read: kept, our own
            // status writes would come back as changes that trigger another translation).
            |o| Object::Ingress(std::sync::Arc::new(trim(o).into())),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            vec![(Api::<IngressClass>::all(client.clone()), cfg())],
            ObjectKind::IngressClass,
            |o| Object::IngressClass(o.into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            vec![(api::<Service>(&client, namespace), cfg())],
            ObjectKind::Service,
            // Compact: what translation reads (`compact::service`).
            |o| Object::Service(std::sync::Arc::new(o.into())),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            vec![(api::<EndpointSlice>(&client, namespace), cfg())],
            ObjectKind::EndpointSlice,
            // Compact: what translation reads (`compact::endpoint_slice`).
            |o| Object::EndpointSlice(std::sync::Arc::new(o.into())),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            secret_scopes,
            ObjectKind::Secret,
            |o| Object::Secret(o.into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            vec![(Api::<Node>::all(client.clone()), cfg())],
            ObjectKind::Node,
            |o| Object::Node(trim_node(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_optional_kind(
            Api::<Namespace>::all(client.clone()),
            ObjectKind::Namespace,
            |o| Object::Namespace(trim_namespace(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_optional_kind(
            Api::<GatewayClass>::all(client.clone()),
            ObjectKind::GatewayClass,
            |o| Object::GatewayClass(trim_status(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_optional_kind(
            api::<Gateway>(&client, namespace),
            ObjectKind::Gateway,
            |o| Object::Gateway(trim_gateway(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_optional_kind(
            api::<HttpRoute>(&client, namespace),
            ObjectKind::HTTPRoute,
            |o| Object::HTTPRoute(trim_status(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_optional_kind(
            api::<GrpcRoute>(&client, namespace),
            ObjectKind::GRPCRoute,
            |o| Object::GRPCRoute(trim_status(o).into()),
            events.clone(),
        )),
        served_version!(ReferenceGrant, ReferenceGrantSpec, NotUsed, |o| {
            ReferenceGrant {
                metadata: o.metadata,
                spec: o.spec,
            }
        }),
        served_version!(TCPRoute, TcpRouteSpec, TcpRouteStatus, |o| TcpRoute {
            metadata: o.metadata,
            spec: o.spec,
            status: None,
        }),
        served_version!(UDPRoute, UdpRouteSpec, UdpRouteStatus, |o| UdpRoute {
            metadata: o.metadata,
            spec: o.spec,
            status: None,
        }),
        served_version!(TLSRoute, TlsRouteSpec, TlsRouteStatus, |o| TlsRoute {
            metadata: o.metadata,
            spec: o.spec,
            status: None,
        }),
        tokio::spawn(watch_optional_kind(
            api::<BackendTlsPolicy>(&client, namespace),
            ObjectKind::BackendTLSPolicy,
            |o| Object::BackendTLSPolicy(trim_status(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_optional_kind(
            api::<ListenerSet>(&client, namespace),
            ObjectKind::ListenerSet,
            |o| Object::ListenerSet(trim_status(o).into()),
            events,
        )),
    ]);
    tasks
}

/// The Secret types translation reads: TLS certificates and basic-auth files.
const SECRET_TYPES: [&str; 2] = ["kubernetes.io/tls", "Opaque"];

/// Where ConfigMaps are watched: where Secrets are (`--secret-namespaces`, else `--namespace`)
/// and the controller ConfigMap's namespace; `None`: every namespace.
fn configmap_namespaces(
    secret_namespaces: Option<&[String]>,
    namespace: Option<&str>,
    controller: &Option<Key>,
) -> Option<Vec<String>> {
    let mut list: Vec<String> = match (secret_namespaces, namespace) {
        (Some(l), _) => l.to_vec(),
        (None, Some(ns)) => vec![ns.to_string()],
        (None, None) => return None,
    };
    list.extend(controller.iter().map(|k| k.namespace.clone()));
    list.sort();
    list.dedup();
    Some(list)
}

/// Translation reads only a ConfigMap's `data`: `binaryData` can be large and is never used.
fn trim_configmap(mut o: ConfigMap) -> ConfigMap {
    o.binary_data = None;
    trim(o)
}

/// How long the first snapshot waits for every kind's first list before going ahead with what
/// it has (e.g. when RBAC forbids one kind).
pub const INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the first complete list of every kind as one `Batch` (so no snapshot sees Ingresses
/// without their Services, nor an auth route without its Secret, which would answer 503 during
/// a rolling restart), then forwards. `lists`: how many first lists (scopes) each kind has.
async fn gather_initial_sync(
    mut rx: tokio::sync::mpsc::Receiver<SourceEvent>,
    events: EventSender,
    lists: BTreeMap<ObjectKind, usize>,
) {
    let deadline = tokio::time::Instant::now() + INITIAL_SYNC_TIMEOUT;
    let mut held: Vec<Change> = Vec::new();
    let mut first_at = None;
    let mut listed: BTreeMap<ObjectKind, usize> = BTreeMap::new();
    while lists
        .iter()
        .any(|(k, n)| listed.get(k).copied().unwrap_or(0) < *n)
    {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                first_at.get_or_insert(ev.at);
                if let Change::ReplaceKind(kind, _) = &ev.change {
                    *listed.entry(*kind).or_default() += 1;
                }
                held.push(ev.change);
            }
            Ok(None) => return,
            Err(_) => {
                warn!(listed = ?listed, "not every kind listed in time; serving what there is");
                break;
            }
        }
    }
    if !held.is_empty() {
        let ev = SourceEvent {
            source: SourceId::Kube,
            change: Change::Batch(held),
            at: first_at.unwrap_or_else(std::time::Instant::now),
        };
        if events.send(ev).await.is_err() {
            return;
        }
    }
    info!("initial list of every kind done");
    while let Some(ev) = rx.recv().await {
        if events.send(ev).await.is_err() {
            return;
        }
    }
}

/// Drops what translation never reads: managed fields and the last-applied copy are often most
/// of an object's bytes.
fn trim<K: Resource>(mut o: K) -> K {
    let m = o.meta_mut();
    m.managed_fields = None;
    // The watcher keeps its own resourceVersion; in the store it would make every no-op
    // update (our own status writes) look like a change.
    m.resource_version = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    o
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Gateway API objects whose status is ours to write: without it, our own status writes do
/// not come back as changes that trigger another translation.
trait HasStatus {
    fn clear_status(&mut self);
}
macro_rules! has_status {
    ($($t:ty),*) => {$(impl HasStatus for $t { fn clear_status(&mut self) { self.status = None; } })*};
}
has_status!(
    GatewayClass,
    HttpRoute,
    GrpcRoute,
    BackendTlsPolicy,
    TlsRoute,
    ListenerSet
);

fn trim_status<K: HasStatus>(mut o: K) -> K {
    o.clear_status();
    o
}

/// A Gateway's status is ours to write as well, except that its `addresses` are also an
/// input: the last assignment from `--gateway-address-pool`, kept as MetalLB keeps its
/// allocation in status (`model::translate::gateway::addresses`). Only they stay; our own
/// condition and listener writes still do not come back as changes.
fn trim_gateway(mut o: Gateway) -> Gateway {
    let addresses = o.status.and_then(|s| s.addresses).filter(|a| !a.is_empty());
    o.status = addresses.map(|a| gateway_api::apis::standard::gateways::GatewayStatus {
        addresses: Some(a),
        ..Default::default()
    });
    o
}

/// Of a Namespace only the labels matter (Gateway `allowedRoutes.namespaces.selector`).
fn trim_namespace(o: Namespace) -> Namespace {
    Namespace {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: o.metadata.name,
            labels: o.metadata.labels,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// How often a kind whose API is absent (CRD not installed) or forbidden is looked for again.
const ABSENT_KIND_RETRY: Duration = Duration::from_secs(30);

/// [`watch_kind`] for a kind that may not exist in the cluster (Gateway API CRDs) or that RBAC
/// may not grant (Namespaces): while a one-object list answers 404 or 403, the kind counts as
/// listed and empty (one log line, then a quiet retry every [`ABSENT_KIND_RETRY`]), so the
/// first snapshot does not wait for it; once the list answers, it is watched as any other.
async fn watch_optional_kind<K>(
    api: Api<K>,
    kind: ObjectKind,
    wrap: fn(K) -> Object,
    events: EventSender,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let Some((api, _)) = first_served(vec![(api, "")], kind, &events).await else {
        return;
    };
    watch_kind(vec![(api, watcher::Config::default())], kind, wrap, events).await
}

/// A kind served at several versions ([`served_versions::candidates`]: TCPRoute, UDPRoute,
/// TLSRoute, ReferenceGrant): watched at the newest the cluster serves (one log line when that
/// is an older one, from CRDs of an earlier Gateway API release), else absent as in
/// [`watch_optional_kind`]. The version watched goes to `versions`, for the writers of status
/// and Events.
async fn watch_served_version<S, U>(
    client: Client,
    namespace: Option<String>,
    kind: ObjectKind,
    versions: ServedVersions,
    wrap: fn(VersionedObject<S, U>) -> Object,
    events: EventSender,
) where
    S: Clone + Debug + Send + Sync + 'static,
    U: Clone + Debug + Send + Sync + 'static,
    VersionedObject<S, U>: DeserializeOwned,
{
    let apis: Vec<(Api<VersionedObject<S, U>>, &'static str)> =
        (served_versions::candidates(kind).iter().copied())
            .filter_map(|version| {
                let ar = served_versions::api_resource(kind, version)?;
                let api = match &namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                    None => Api::all_with(client.clone(), &ar),
                };
                Some((api, version))
            })
            .collect();
    let Some((api, version)) = first_served(apis, kind, &events).await else {
        return;
    };
    if Some(&version) != served_versions::candidates(kind).first() {
        info!(
            ?kind,
            version,
            "served only at an older version (CRDs of an earlier Gateway API release); \
             watching it"
        );
    }
    versions.set(kind, version);
    watch_kind(vec![(api, watcher::Config::default())], kind, wrap, events).await
}

/// The first of `apis` (one kind at several versions, preferred first) whose one-object list
/// does not answer 404 or 403. While every one does, the kind counts as listed and empty (one
/// log line, then a quiet retry every [`ABSENT_KIND_RETRY`]). `None`: the control loop is gone.
async fn first_served<K>(
    mut apis: Vec<(Api<K>, &'static str)>,
    kind: ObjectKind,
    events: &EventSender,
) -> Option<(Api<K>, &'static str)>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut reported = false;
    loop {
        let mut code = None;
        let mut served = None;
        for (i, (api, _)) in apis.iter().enumerate() {
            match api.list(&ListParams::default().limit(1)).await {
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => code = Some(e.code),
                // Anything else (API server away): the watcher's own backoff and logging
                // handle it.
                _ => {
                    served = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = served {
            return Some(apis.swap_remove(i));
        }
        if !reported {
            info!(
                ?kind,
                code, "kind not served by the API server (no CRD, or not allowed); skipped"
            );
            reported = true;
            let empty = SourceEvent::new(SourceId::Kube, Change::ReplaceKind(kind, Vec::new()));
            if events.send(empty).await.is_err() {
                return None;
            }
        }
        tokio::time::sleep(ABSENT_KIND_RETRY).await;
    }
}

/// Of a Node only the addresses matter; heartbeats and conditions would re-translate for nothing.
fn trim_node(mut o: Node) -> Node {
    o.spec = None;
    o.status = o.status.map(|s| k8s_openapi::api::core::v1::NodeStatus {
        addresses: s.addresses,
        ..Default::default()
    });
    trim(o)
}

/// Watches one kind through one or more APIs (scopes: namespaces, Secret types), each with its
/// own list/watch options. Each scope's (re-)list is
/// buffered; when one completes, the kind is replaced whole by what every scope listed so far
/// and updated since, so one namespace's re-list never drops another's.
async fn watch_kind<K>(
    apis: Vec<(Api<K>, watcher::Config)>,
    kind: ObjectKind,
    wrap: fn(K) -> Object,
    events: EventSender,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let scopes = apis.len();
    let mut stream =
        futures::stream::select_all(apis.into_iter().enumerate().map(|(i, (api, config))| {
            watcher::watcher(api, config)
                .backoff(QuickBackoff::default())
                .map(move |item| (i, item))
                .boxed()
        }));
    let mut buffers: Vec<Vec<Object>> = vec![Vec::new(); scopes];
    // With several scopes: each scope's current objects, `None` until its first list (and
    // always with one scope, whose list is the whole kind).
    let mut current: Vec<Option<BTreeMap<Key, Object>>> = vec![None; scopes];
    let mut failing = false;
    while let Some((scope, item)) = stream.next().await {
        let change = match item {
            Ok(ev) => {
                if failing {
                    info!(?kind, "API watch recovered");
                    failing = false;
                }
                match ev {
                    Event::Init => {
                        buffers[scope].clear();
                        continue;
                    }
                    Event::InitApply(o) => {
                        buffers[scope].push(wrap(trim(o)));
                        continue;
                    }
                    Event::InitDone => {
                        let listed = std::mem::take(&mut buffers[scope]);
                        debug!(?kind, scope, objects = listed.len(), "listed");
                        if scopes == 1 {
                            Change::ReplaceKind(kind, listed)
                        } else {
                            // Scopes not listed yet add nothing: one namespace that cannot
                            // be listed (no Role there yet) must not hold back the others.
                            current[scope] =
                                Some(listed.into_iter().map(|o| (o.key(), o)).collect());
                            let all = current.iter().flatten().flat_map(|m| m.values().cloned());
                            Change::ReplaceKind(kind, all.collect())
                        }
                    }
                    Event::Apply(o) => {
                        let o = wrap(trim(o));
                        if let Some(m) = current[scope].as_mut() {
                            m.insert(o.key(), o.clone());
                        }
                        Change::Upsert(o)
                    }
                    Event::Delete(o) => {
                        let m = o.meta();
                        let key = Key::new(
                            m.namespace.clone().unwrap_or_default(),
                            m.name.clone().unwrap_or_default(),
                        );
                        if let Some(m) = current[scope].as_mut() {
                            m.remove(&key);
                        }
                        Change::Delete(kind, key)
                    }
                }
            }
            Err(e) => {
                // Keep serving; kube-rs re-lists (410) or retries with backoff.
                if !failing {
                    warn!(?kind, error = %e, "API watch failed; serving the last good snapshot");
                }
                failing = true;
                continue;
            }
        };
        if events
            .send(SourceEvent::new(SourceId::Kube, change))
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod trim_tests {
    use std::sync::Arc;

    use k8s_openapi::api::{
        core::v1::ObjectReference,
        discovery::v1::{EndpointHints, ForZone},
    };

    use super::*;
    use crate::{
        model::translate::{TranslateConfig, fixtures::*, translate},
        store::Objects,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// A Gateway keeps only its status addresses (the sticky input of address assignment):
    /// the conditions and listeners we write never come back as a change.
    #[test]
    fn a_gateway_keeps_only_its_status_addresses() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: n}\nspec:\n  gatewayClassName: xdp\n  listeners: [{name: http, port: 80, protocol: HTTP}]\nstatus:\n  addresses: [{type: IPAddress, value: 10.0.0.1}]\n  conditions: [{type: Accepted, status: \"True\", reason: Accepted, message: ok, lastTransitionTime: \"2024-01-01T00:00:00Z\"}]\n";
        let gw: Gateway = yaml_serde::from_str(yaml).unwrap();
        let status = trim_gateway(gw).status.expect("addresses kept");
        let addresses = status.addresses.unwrap_or_default();
        assert_eq!(addresses.len(), 1);
        assert_eq!(addresses[0].value, "10.0.0.1");
        assert!(status.conditions.unwrap_or_default().is_empty());
        let mut bare: Gateway = yaml_serde::from_str(yaml).unwrap();
        bare.status = Some(Default::default());
        assert!(trim_gateway(bare).status.is_none());
    }

    /// A slice as the EndpointSlice controller writes it (hints, hostnames, more addresses and
    /// labels, a full targetRef) translates exactly as a bare one: nothing the store's compact
    /// slice drops is read.
    #[test]
    fn full_endpoint_slice_translates_as_a_bare_one() {
        let Object::EndpointSlice(slice) = mk_slice(
            "default",
            "web-1",
            "web",
            "IPv4",
            &[(Some("http"), 8080)],
            &[
                ("198.19.0.2", None, None, None),
                ("198.19.1.2", Some(false), Some(true), Some(true)),
            ],
        ) else {
            unreachable!()
        };
        // Bare: each endpoint's targetRef has only its name and namespace.
        let mut bare = EndpointSlice::from((*slice).clone());
        for (i, ep) in bare.endpoints.iter_mut().flatten().enumerate() {
            ep.target_ref = Some(ObjectReference {
                name: Some(format!("pod-{i}")),
                namespace: Some("default".into()),
                ..Default::default()
            });
        }
        let mut full = bare.clone();
        full.metadata
            .labels
            .get_or_insert_default()
            .insert("endpointslice.kubernetes.io/managed-by".into(), "x".into());
        for (i, ep) in full.endpoints.iter_mut().flatten().enumerate() {
            ep.addresses.push(format!("198.19.9.{i}"));
            ep.hostname = Some(format!("pod-{i}"));
            ep.hints = Some(EndpointHints {
                for_zones: Some(vec![ForZone { name: "a".into() }]),
                ..Default::default()
            });
            ep.target_ref = Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(format!("pod-{i}")),
                namespace: Some("default".into()),
                uid: Some("0000".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            });
        }
        assert_ne!(full, bare);
        let objects = |slice: EndpointSlice| {
            Objects::from_objects([
                svc(mk_service(
                    "default",
                    "web",
                    "ClusterIP",
                    vec![mk_port(Some("http"), 80, IntOrString::Int(8080))],
                )),
                ing(mk_ingress(
                    "default",
                    "web",
                    0,
                    vec![("a.example.com", vec![("/", "Prefix", "web", "80")])],
                )),
                Object::EndpointSlice(Arc::new(slice.into())),
            ])
        };
        let cfg = TranslateConfig::default();
        let (a, b) = (
            translate(&objects(full), &cfg),
            translate(&objects(bare), &cfg),
        );
        assert_eq!(format!("{:?}", a.l7), format!("{:?}", b.l7));
        let ups = &a.l7.hosts["a.example.com"].routes[0].action;
        let crate::model::RouteAction::Forward(ups) = ups else {
            panic!("{ups:?}")
        };
        let targets: Vec<_> = ups[0]
            .upstream
            .endpoints
            .iter()
            .map(|e| e.target.as_deref())
            .collect();
        assert_eq!(targets, [Some("default/pod-0"), Some("default/pod-1")]);
    }
}
