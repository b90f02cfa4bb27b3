//! An in-process Kubernetes API-server double, for driving the real kube-rs client.
//!
//! It speaks the parts of the wire protocol the controller uses, over plain HTTP/1.1 on
//! 127.0.0.1: list (one page) and watch with resourceVersions, bookmarks, `410 Gone` (as a watch
//! `ERROR` event, as the real server sends it) for versions older than the retained history,
//! get/create/replace/merge-patch/delete including the `status` subresource (a resourceVersion
//! in a replace or patch is a precondition, `409 Conflict`), label and field
//! selectors (equality only). Any resource in [`RESOURCES`] works, so Leases and Events too.
//! Tests also reach into the state directly (`put`, `remove`, `compact`) and can take the server
//! down and bring it back on the same port.

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{Method, Request, Response, StatusCode, body::Frame, service::service_fn};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{broadcast, mpsc, watch},
};

/// `(plural, group/version, kind, namespaced)`.
pub const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("ingresses", "networking.k8s.io/v1", "Ingress", true),
    (
        "ingressclasses",
        "networking.k8s.io/v1",
        "IngressClass",
        false,
    ),
    ("services", "v1", "Service", true),
    (
        "endpointslices",
        "discovery.k8s.io/v1",
        "EndpointSlice",
        true,
    ),
    ("secrets", "v1", "Secret", true),
    ("nodes", "v1", "Node", false),
    ("configmaps", "v1", "ConfigMap", true),
    ("leases", "coordination.k8s.io/v1", "Lease", true),
    ("events", "events.k8s.io/v1", "Event", true),
    ("namespaces", "v1", "Namespace", false),
    (
        "gatewayclasses",
        "gateway.networking.k8s.io/v1",
        "GatewayClass",
        false,
    ),
    ("gateways", "gateway.networking.k8s.io/v1", "Gateway", true),
    (
        "httproutes",
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        true,
    ),
    (
        "backendtlspolicies",
        "gateway.networking.k8s.io/v1",
        "BackendTLSPolicy",
        true,
    ),
    (
        "grpcroutes",
        "gateway.networking.k8s.io/v1",
        "GRPCRoute",
        true,
    ),
    (
        "referencegrants",
        "gateway.networking.k8s.io/v1beta1",
        "ReferenceGrant",
        true,
    ),
    (
        "tcproutes",
        "gateway.networking.k8s.io/v1",
        "TCPRoute",
        true,
    ),
    (
        "udproutes",
        "gateway.networking.k8s.io/v1",
        "UDPRoute",
        true,
    ),
    (
        "tlsroutes",
        "gateway.networking.k8s.io/v1",
        "TLSRoute",
        true,
    ),
    (
        "listenersets",
        "gateway.networking.k8s.io/v1",
        "ListenerSet",
        true,
    ),
];

fn resource_of_kind(
    kind: &str,
) -> Option<&'static (&'static str, &'static str, &'static str, bool)> {
    RESOURCES.iter().find(|r| r.2 == kind)
}

fn resource(plural: &str) -> Option<&'static (&'static str, &'static str, &'static str, bool)> {
    RESOURCES.iter().find(|r| r.0 == plural)
}

type Key = (String, String, String); // plural, namespace, name

#[derive(Clone, Debug)]
struct WatchEvent {
    rv: u64,
    plural: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<WatchEvent>,
    /// Watches from a version below this get 410 Gone.
    oldest: u64,
    lists: HashMap<String, u64>,
    watches: HashMap<String, u64>,
    /// `METHOD path?query` of every request, in order.
    requests: Vec<String>,
    /// Resources answered 404 as if their CRD were not installed.
    absent: std::collections::HashSet<String>,
    /// Resources served only at these group/versions (the first is the storage version the
    /// objects carry); not listed: served at any version.
    served: HashMap<String, Vec<String>>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<WatchEvent>,
    bookmark_every: Duration,
}

/// A running (or stopped) API-server double.
pub struct ApiServer {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<watch::Sender<bool>>,
}

impl ApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> anyhow::Result<ApiServer> {
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            events,
            bookmark_every: Duration::from_millis(500),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut s = ApiServer {
            inner,
            addr,
            stop: None,
        };
        s.serve(listener);
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and cuts every connection, watches included.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }

    /// Listens again on the same port, with the same state.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.serve(listener);
        Ok(())
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop_tx, stop_rx) = watch::channel(false);
        self.stop = Some(stop_tx);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut stop = stop_rx.clone();
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                    _ = stop.changed() => return,
                };
                let inner = inner.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let stop_for_watch = stop.clone();
                    let svc = service_fn(move |req| {
                        let inner = inner.clone();
                        let stop = stop_for_watch.clone();
                        async move { Ok::<_, Infallible>(handle(inner, req, stop).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
    }

    /// Answers every request for `plural` with 404 while `absent` (a CRD not installed).
    pub fn set_absent(&self, plural: &str, absent: bool) {
        let mut st = self.inner.state.lock().unwrap();
        if absent {
            st.absent.insert(plural.to_string());
        } else {
            st.absent.remove(plural);
        }
    }

    /// Serves `plural` only at `versions` (group/version, e.g.
    /// `gateway.networking.k8s.io/v1alpha2`), as a CRD whose other versions are not served: a
    /// request at another version answers 404. The first is the storage version, the
    /// `apiVersion` objects put from now on carry. Empty: every version (the default).
    pub fn set_served_versions(&self, plural: &str, versions: &[&str]) {
        let mut st = self.inner.state.lock().unwrap();
        if versions.is_empty() {
            st.served.remove(plural);
        } else {
            let list = versions.iter().map(|v| v.to_string()).collect();
            st.served.insert(plural.to_string(), list);
        }
    }

    /// Creates or replaces an object (its `kind` picks the resource), as a client would.
    pub fn put(&self, object: Value) -> Value {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let (plural, _, _, namespaced) = *resource_of_kind(&kind).expect("known kind");
        let ns = if namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut st = self.inner.state.lock().unwrap();
        let key = (plural.to_string(), ns, name);
        let ty = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store(&self.inner, &mut st, key, object, ty)
    }

    pub fn remove(&self, plural: &str, namespace: &str, name: &str) -> bool {
        let mut st = self.inner.state.lock().unwrap();
        delete(
            &self.inner,
            &mut st,
            &(plural.into(), namespace.into(), name.into()),
        )
        .is_some()
    }

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let st = self.inner.state.lock().unwrap();
        st.objects
            .get(&(plural.into(), namespace.into(), name.into()))
            .cloned()
    }

    pub fn list(&self, plural: &str) -> Vec<Value> {
        let st = self.inner.state.lock().unwrap();
        st.objects
            .iter()
            .filter(|(k, _)| k.0 == plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Forgets the watch history: a watch resuming from any earlier version gets 410 Gone.
    pub fn compact(&self) {
        let mut st = self.inner.state.lock().unwrap();
        st.oldest = st.rv + 1;
        st.history.clear();
    }

    /// How many list requests a resource got (a re-list after 410 shows up here).
    pub fn list_count(&self, plural: &str) -> u64 {
        self.inner
            .state
            .lock()
            .unwrap()
            .lists
            .get(plural)
            .copied()
            .unwrap_or(0)
    }

    /// `METHOD path?query` of every request so far (tests assert what was, or was not, read).
    pub fn requests(&self) -> Vec<String> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    pub fn watch_count(&self, plural: &str) -> u64 {
        self.inner
            .state
            .lock()
            .unwrap()
            .watches
            .get(plural)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now() -> String {
    // RFC 3339 in UTC without pulling in a date crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86400;
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Stores `object` under `key` with a new resourceVersion and records the watch event.
fn store(inner: &Inner, st: &mut State, key: Key, mut object: Value, ty: &'static str) -> Value {
    st.rv += 1;
    let rv = st.rv;
    let (gv, kind) = resource(&key.0)
        .map(|r| (r.1, r.2))
        .unwrap_or(("v1", "Unknown"));
    let gv = st
        .served
        .get(&key.0)
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| gv.to_string());
    let old_meta = st.objects.get(&key).map(|o| o["metadata"].clone());
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let m = object["metadata"].as_object_mut().expect("metadata object");
    m.insert("name".into(), json!(key.2));
    if !key.1.is_empty() {
        m.insert("namespace".into(), json!(key.1));
    }
    m.insert("resourceVersion".into(), json!(rv.to_string()));
    let created = old_meta
        .as_ref()
        .and_then(|o| o.get("creationTimestamp").cloned())
        .or_else(|| m.get("creationTimestamp").cloned().filter(|v| !v.is_null()))
        .unwrap_or_else(|| json!(now()));
    m.insert("creationTimestamp".into(), created);
    let uid = old_meta
        .as_ref()
        .and_then(|o| o.get("uid").cloned())
        .unwrap_or_else(|| json!(format!("uid-{rv}")));
    m.insert("uid".into(), uid);
    object["apiVersion"] = json!(gv);
    object["kind"] = json!(kind);
    st.objects.insert(key.clone(), object.clone());
    let ev = WatchEvent {
        rv,
        plural: key.0,
        namespace: key.1,
        kind: ty,
        object: object.clone(),
    };
    st.history.push(ev.clone());
    let _ = inner.events.send(ev);
    object
}

fn delete(inner: &Inner, st: &mut State, key: &Key) -> Option<Value> {
    let mut object = st.objects.remove(key)?;
    st.rv += 1;
    let rv = st.rv;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    let ev = WatchEvent {
        rv,
        plural: key.0.clone(),
        namespace: key.1.clone(),
        kind: "DELETED",
        object: object.clone(),
    };
    st.history.push(ev.clone());
    let _ = inner.events.send(ev);
    Some(object)
}

type Body = BoxBody<Bytes, Infallible>;

fn respond(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

struct Target {
    /// `v1`, `gateway.networking.k8s.io/v1`, ...
    group_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group_version, rest) = match *segs.first()? {
        "api" => (segs.get(1)?.to_string(), segs.get(2..)?),
        "apis" => (format!("{}/{}", segs.get(1)?, segs.get(2)?), segs.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let plural = rest.first()?.to_string();
    resource(&plural)?;
    Some(Target {
        group_version,
        plural,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        status: rest.get(2) == Some(&"status"),
    })
}

fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality selectors: `a=b,c==d` over labels, or over dotted field paths.
fn selected(object: &Value, labels: Option<&String>, fields: Option<&String>) -> bool {
    let ok = |sel: Option<&String>, get: &dyn Fn(&str) -> Option<String>| {
        sel.map(|s| {
            s.split(',').filter(|t| !t.is_empty()).all(|t| {
                let (k, v) = t
                    .split_once("==")
                    .or_else(|| t.split_once('='))
                    .unwrap_or((t, ""));
                get(k).as_deref() == Some(v)
            })
        })
        .unwrap_or(true)
    };
    ok(labels, &|k| {
        object["metadata"]["labels"][k].as_str().map(str::to_string)
    }) && ok(fields, &|k| {
        let mut v = object;
        for p in k.split('.') {
            v = &v[p];
        }
        v.as_str().map(str::to_string)
    })
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<hyper::body::Incoming>,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    inner
        .state
        .lock()
        .unwrap()
        .requests
        .push(format!("{} {}", req.method(), req.uri()));
    let Some(t) = parse_path(req.uri().path()) else {
        return status(404, "NotFound", "unknown path");
    };
    let unserved = {
        let st = inner.state.lock().unwrap();
        st.absent.contains(&t.plural)
            || st
                .served
                .get(&t.plural)
                .is_some_and(|v| !v.contains(&t.group_version))
    };
    if unserved {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let q = query(&req);
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400, "BadRequest", "body"),
    };
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let (_, gv, kind, namespaced) = *resource(&t.plural).expect("checked");
    let ns = t.namespace.clone().unwrap_or_default();

    match (method, &t.name) {
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_response(inner, t, q, kind, gv, stop)
        }
        (Method::GET, None) => {
            let mut st = inner.state.lock().unwrap();
            *st.lists.entry(t.plural.clone()).or_default() += 1;
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(k, v)| {
                    k.0 == t.plural
                        && (t.namespace.is_none() || k.1 == ns)
                        && selected(v, q.get("labelSelector"), q.get("fieldSelector"))
                })
                .map(|(_, v)| v.clone())
                .collect();
            respond(
                StatusCode::OK,
                &json!({"apiVersion": gv, "kind": format!("{kind}List"),
                        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            )
        }
        (Method::GET, Some(name)) => {
            let st = inner.state.lock().unwrap();
            match st.objects.get(&(t.plural.clone(), ns, name.clone())) {
                Some(o) => respond(StatusCode::OK, o),
                None => status(404, "NotFound", &format!("{} {name} not found", t.plural)),
            }
        }
        (Method::POST, None) => {
            let Some(mut o) = parsed else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let mut st = inner.state.lock().unwrap();
            let name = match o["metadata"]["name"].as_str() {
                Some(n) => n.to_string(),
                None => match o["metadata"]["generateName"].as_str() {
                    Some(g) => format!("{g}{}", st.rv + 1),
                    None => return status(422, "Invalid", "metadata.name required"),
                },
            };
            o["metadata"]["name"] = json!(name);
            let key = (
                t.plural.clone(),
                if namespaced { ns } else { String::new() },
                name.clone(),
            );
            if st.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{} {name} already exists", t.plural),
                );
            }
            let o = store(&inner, &mut st, key, o, "ADDED");
            respond(StatusCode::CREATED, &o)
        }
        (Method::PUT, Some(name)) => {
            let Some(mut o) = parsed else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let mut st = inner.state.lock().unwrap();
            let key = (t.plural.clone(), ns, name.clone());
            let Some(old) = st.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("{} {name} not found", t.plural));
            };
            if let Some(rv) = o["metadata"]["resourceVersion"].as_str()
                && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            {
                return status(409, "Conflict", "the object has been modified");
            }
            if t.status {
                let mut n = old.clone();
                n["status"] = o["status"].take();
                o = n;
            }
            let o = store(&inner, &mut st, key, o, "MODIFIED");
            respond(StatusCode::OK, &o)
        }
        (Method::PATCH, Some(name)) => {
            let Some(patch) = parsed else {
                return status(400, "BadRequest", "body is not JSON");
            };
            if content_type.contains("json-patch") {
                return status(415, "UnsupportedMediaType", "use a merge patch");
            }
            let mut st = inner.state.lock().unwrap();
            let key = (t.plural.clone(), ns, name.clone());
            let Some(old) = st.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("{} {name} not found", t.plural));
            };
            // As the API server: a resourceVersion in the patch is a precondition.
            if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && Some(rv) != old["metadata"]["resourceVersion"].as_str()
            {
                return status(409, "Conflict", "the object has been modified");
            }
            let mut n = old.clone();
            merge_patch(&mut n, &patch);
            if t.status {
                let mut keep = old;
                keep["status"] = n["status"].take();
                n = keep;
            }
            let o = store(&inner, &mut st, key, n, "MODIFIED");
            respond(StatusCode::OK, &o)
        }
        (Method::DELETE, Some(name)) => {
            let mut st = inner.state.lock().unwrap();
            match delete(&inner, &mut st, &(t.plural.clone(), ns, name.clone())) {
                Some(o) => respond(StatusCode::OK, &o),
                None => status(404, "NotFound", &format!("{} {name} not found", t.plural)),
            }
        }
        _ => status(405, "MethodNotAllowed", "not supported by the double"),
    }
}

fn watch_response(
    inner: Arc<Inner>,
    t: Target,
    q: HashMap<String, String>,
    kind: &'static str,
    gv: &'static str,
    mut stop: watch::Receiver<bool>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let line = |ty: &str, object: &Value| {
        Bytes::from(format!("{}\n", json!({"type": ty, "object": object})))
    };
    let matches = {
        let t_plural = t.plural.clone();
        let ns = t.namespace.clone();
        let labels = q.get("labelSelector").cloned();
        let fields = q.get("fieldSelector").cloned();
        move |e: &WatchEvent| {
            e.plural == t_plural
                && ns.as_ref().is_none_or(|n| *n == e.namespace)
                && selected(&e.object, labels.as_ref(), fields.as_ref())
        }
    };
    let from: Option<u64> = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v != 0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));

    let (initial, mut live, gone) = {
        let mut st = inner.state.lock().unwrap();
        *st.watches.entry(t.plural.clone()).or_default() += 1;
        let live = inner.events.subscribe();
        match from {
            Some(rv) if rv + 1 < st.oldest => (Vec::new(), live, true),
            Some(rv) => (
                st.history
                    .iter()
                    .filter(|e| e.rv > rv && matches(e))
                    .map(|e| line(e.kind, &e.object))
                    .collect(),
                live,
                false,
            ),
            None => (
                st.objects
                    .iter()
                    .filter(|(k, _)| k.0 == t.plural)
                    .map(|(k, v)| WatchEvent {
                        rv: 0,
                        plural: k.0.clone(),
                        namespace: k.1.clone(),
                        kind: "ADDED",
                        object: v.clone(),
                    })
                    .filter(|e| matches(e))
                    .map(|e| line("ADDED", &e.object))
                    .collect(),
                live,
                false,
            ),
        }
    };
    let last_sent = from.unwrap_or(0);
    tokio::spawn(async move {
        if gone {
            let err = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": "too old resource version", "reason": "Expired", "code": 410});
            let _ = tx.send(line("ERROR", &err)).await;
            return;
        }
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let mut last = last_sent;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(inner.bookmark_every);
        loop {
            let msg = tokio::select! {
                _ = &mut deadline => return,
                _ = stop.changed() => return,
                _ = tick.tick(), if bookmarks => {
                    let rv = inner.state.lock().unwrap().rv;
                    line("BOOKMARK", &json!({"apiVersion": gv, "kind": kind, "metadata": {"resourceVersion": rv.to_string()}}))
                }
                ev = live.recv() => match ev {
                    Ok(e) if e.rv > last && matches(&e) => { last = e.rv; line(e.kind, &e.object) }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let err = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                         "message": "watcher too slow", "reason": "Expired", "code": 410});
                        let _ = tx.send(line("ERROR", &err)).await;
                        return;
                    }
                    Err(_) => return,
                },
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .expect("response")
}
