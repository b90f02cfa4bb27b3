//! The Kubernetes API source: one kube-rs watcher per kind (Ingress, IngressClass, Service,
//! EndpointSlice, TLS Secrets, Node), with backoff.
//!
//! A watcher's (re-)list is buffered and sent as one `ReplaceKind`, so objects deleted while the
//! connection was down disappear on reconnect; `410 Gone` makes kube-rs re-list, which lands
//! here the same way. Errors only log: the store, and so the live snapshot, stay as they were
//! until the API server answers again.

use std::{fmt::Debug, path::Path, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Node, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        utils::Backoff,
        watcher::{self, Event},
    },
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{EventSender, SourceEvent};
use crate::{
    model::ObjectKind,
    store::{Change, Key, Object, SourceId},
};

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

/// Starts one watcher task per kind. `namespace` limits namespaced kinds.
pub fn spawn(
    client: Client,
    namespace: Option<&str>,
    events: EventSender,
) -> Vec<tokio::task::JoinHandle<()>> {
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
    let gatherer = tokio::spawn(gather_initial_sync(rx, events));
    let events = tx;
    vec![
        gatherer,
        tokio::spawn(watch_kind(
            api::<Ingress>(&client, namespace),
            cfg(),
            ObjectKind::Ingress,
            |o| Object::Ingress(trim_ingress(o).into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            Api::<IngressClass>::all(client.clone()),
            cfg(),
            ObjectKind::IngressClass,
            |o| Object::IngressClass(o.into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            api::<Service>(&client, namespace),
            cfg(),
            ObjectKind::Service,
            |o| Object::Service(o.into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            api::<EndpointSlice>(&client, namespace),
            cfg(),
            ObjectKind::EndpointSlice,
            |o| Object::EndpointSlice(o.into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            api::<Secret>(&client, namespace),
            cfg().fields("type=kubernetes.io/tls"),
            ObjectKind::Secret,
            |o| Object::Secret(o.into()),
            events.clone(),
        )),
        tokio::spawn(watch_kind(
            Api::<Node>::all(client),
            cfg(),
            ObjectKind::Node,
            |o| Object::Node(trim_node(o).into()),
            events,
        )),
    ]
}

/// The kinds the source watches; the first snapshot waits for all of them.
const KINDS: usize = 6;

/// How long the first snapshot waits for every kind's first list before going ahead with what
/// it has (e.g. when RBAC forbids one kind).
pub const INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the first complete list of every kind as one `Batch` (so no snapshot sees Ingresses
/// without their Services, which would answer 503 during a rolling restart), then forwards.
async fn gather_initial_sync(
    mut rx: tokio::sync::mpsc::Receiver<SourceEvent>,
    events: EventSender,
) {
    let deadline = tokio::time::Instant::now() + INITIAL_SYNC_TIMEOUT;
    let mut held: Vec<Change> = Vec::new();
    let mut first_at = None;
    let mut listed = std::collections::BTreeSet::new();
    while listed.len() < KINDS {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                first_at.get_or_insert(ev.at);
                if let Change::ReplaceKind(kind, _) = &ev.change {
                    listed.insert(*kind);
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

/// Ingress status is ours to write, never to read: without it, our own status writes do not
/// come back as changes that trigger another translation.
fn trim_ingress(mut o: Ingress) -> Ingress {
    o.status = None;
    trim(o)
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

async fn watch_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: ObjectKind,
    wrap: fn(K) -> Object,
    events: EventSender,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = watcher::watcher(api, config)
        .backoff(QuickBackoff::default())
        .boxed();
    let mut buffer: Vec<Object> = Vec::new();
    let mut failing = false;
    while let Some(item) = stream.next().await {
        let change = match item {
            Ok(ev) => {
                if failing {
                    info!(?kind, "API watch recovered");
                    failing = false;
                }
                match ev {
                    Event::Init => {
                        buffer.clear();
                        continue;
                    }
                    Event::InitApply(o) => {
                        buffer.push(wrap(trim(o)));
                        continue;
                    }
                    Event::InitDone => {
                        debug!(?kind, objects = buffer.len(), "listed");
                        Change::ReplaceKind(kind, std::mem::take(&mut buffer))
                    }
                    Event::Apply(o) => Change::Upsert(wrap(trim(o))),
                    Event::Delete(o) => {
                        let m = o.meta();
                        Change::Delete(
                            kind,
                            Key::new(
                                m.namespace.clone().unwrap_or_default(),
                                m.name.clone().unwrap_or_default(),
                            ),
                        )
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
