//! Connections to endpoints, pooled per worker: the request names the virtual host, the
//! pool picks the connection.
//!
//! A request's URI is `scheme://virtual-host/path` and its `Host` the virtual host, as
//! `forward` builds it; the endpoint it goes to is a separate argument. On the wire:
//! - HTTP/1.1 (`http`, `https`, and every Upgrade): origin-form target and that `Host`
//!   (RFC 9112 §3.2). Idle keep-alive connections are kept, at most
//!   `upstream-keepalive-connections` (`--upstream-keepalive`) of them per worker over every
//!   endpoint, the least recently used closed first when more would be, and each closed
//!   after `upstream-keepalive-timeout` (`--upstream-keepalive-timeout`) unused: nginx's
//!   `keepalive` and `keepalive_timeout` in ingress-nginx's one `upstream_balancer` block.
//!   A connection goes back to the pool once its response has been read to the end; the
//!   request using it drives its I/O ([`super::http1_conn`]).
//! - HTTP/2 (`h2c`, `grpc`, `grpcs`): `:scheme` and `:authority` from the URI, no `Host`
//!   field (RFC 9113 §8.3.1: an intermediary builds `:authority` from the original request's
//!   authority). One connection per endpoint carries every concurrent request; while it is
//!   being opened, other requests wait for it rather than open their own. It is let go once
//!   no request started on it for the keep-alive timeout (it closes when its last stream
//!   ends).
//!
//! Pools are keyed by endpoint address and TLS, one pool per set of connect and send timeouts
//! (see `Shared::clients_for`): both are properties of a connection. Each proxy worker has
//! pools of its own ([`crate::proxy::workers`]): a connection is opened, used, pooled and
//! reaped on one worker's thread, and the idle limit counts per worker (as nginx's
//! `keepalive` counts per worker process). A connection the
//! endpoint closed is never handed out; a request a pooled connection turned out unable to
//! take (it closed meanwhile) is sent once more on a new connection, as hyper's own pool
//! does. A limit of 0 connections or a zero keep-alive timeout disables reuse, and HTTP/1.1
//! requests then say `Connection: close` (ingress-nginx's `$connection_upgrade` map).
//!
//! A connection also stops being reused after `upstream-keepalive-requests` requests or
//! once `upstream-keepalive-time` old (nginx's upstream `keepalive_requests` and
//! `keepalive_time`): an HTTP/1.1 one is closed instead of pooled after its response, an
//! HTTP/2 one leaves the pool (new requests open another) and closes when its streams end.
//! All four come from [`ReuseLimits`], which the ConfigMap changes while requests run.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use http::{
    Request, Response, Uri, Version,
    header::{CONNECTION, HOST, UPGRADE},
    uri::PathAndQuery,
};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http2;
use tokio::time::Instant;

use super::{
    connect::{ConnectError, Dialer},
    http1_conn::{Http1Conn, UpstreamBody},
    verified_tls::VerifiedTls,
};
use crate::model::BackendProtocol;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything the proxy sends and answers.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Pool and connect settings.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub connect_timeout: Duration,
    /// Longest a write to an endpoint may stay blocked (`proxy-send-timeout`).
    pub send_timeout: Duration,
    /// Idle connections kept, their idle time, requests and age after which a connection is
    /// not reused; shared by every pool of a proxy and changed by the ConfigMap at run time.
    pub reuse: Arc<ReuseLimits>,
}

/// Idle connections to pods a worker keeps where neither the ConfigMap
/// (`upstream-keepalive-connections`) nor `--upstream-keepalive` says: ingress-nginx's 320
/// (config.go `UpstreamKeepaliveConnections`).
pub const UPSTREAM_KEEPALIVE_CONNECTIONS: usize = 320;

/// Idle time after which a pooled connection to a pod is closed, where neither the ConfigMap
/// (`upstream-keepalive-timeout`) nor `--upstream-keepalive-timeout` says: ingress-nginx's
/// 60 s (config.go `UpstreamKeepaliveTimeout`).
pub const UPSTREAM_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests per connection to a pod where the ConfigMap sets no `upstream-keepalive-requests`:
/// ingress-nginx's default (config.go `UpstreamKeepaliveRequests`).
pub const UPSTREAM_KEEPALIVE_REQUESTS: u64 = 10_000;

/// Age of a connection to a pod after which it takes no new request, where the ConfigMap sets
/// no `upstream-keepalive-time`: ingress-nginx's default `1h` (config.go).
pub const UPSTREAM_KEEPALIVE_TIME: Duration = Duration::from_secs(3600);

/// The keep-alive settings of connections to pods: nginx's `keepalive`, `keepalive_timeout`,
/// `keepalive_requests` and `keepalive_time` in ingress-nginx's upstream block (nginx.tmpl),
/// from the ConfigMap keys `upstream-keepalive-*` over the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle HTTP/1.1 connections a worker keeps over every endpoint; 0: none is reused.
    pub connections: usize,
    /// Idle time after which a pooled connection is closed; zero: none is reused.
    pub timeout: Duration,
    /// Requests a connection carries; after the last it is not reused.
    pub requests: u64,
    /// Age after which a connection takes no new request.
    pub time: Duration,
}

impl Default for Keepalive {
    /// ingress-nginx's defaults (config.go).
    fn default() -> Self {
        Keepalive {
            connections: UPSTREAM_KEEPALIVE_CONNECTIONS,
            timeout: UPSTREAM_KEEPALIVE_TIMEOUT,
            requests: UPSTREAM_KEEPALIVE_REQUESTS,
            time: UPSTREAM_KEEPALIVE_TIME,
        }
    }
}

/// The live [`Keepalive`] every pool reads: checked as nginx does when a request is done with
/// a connection, and also before one is handed out. Atomics: the controller ConfigMap changes
/// them while requests run; a change wakes the pools' reapers, so a shorter idle time or a
/// smaller idle limit closes what it no longer allows without waiting for the old deadline.
#[derive(Debug)]
pub struct ReuseLimits {
    connections: AtomicUsize,
    idle_ms: AtomicU64,
    requests: AtomicU64,
    time_ms: AtomicU64,
    changed: tokio::sync::Notify,
}

impl Default for ReuseLimits {
    fn default() -> Self {
        Self::new(Keepalive::default())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ReuseLimits {
    pub fn new(k: Keepalive) -> Self {
        ReuseLimits {
            connections: AtomicUsize::new(k.connections),
            idle_ms: AtomicU64::new(millis(k.timeout)),
            requests: AtomicU64::new(k.requests),
            time_ms: AtomicU64::new(millis(k.time)),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Sets the limits; the pools apply them to their idle connections at once.
    pub fn set(&self, k: Keepalive) {
        self.connections.store(k.connections, Ordering::Relaxed);
        self.idle_ms.store(millis(k.timeout), Ordering::Relaxed);
        self.requests.store(k.requests, Ordering::Relaxed);
        self.time_ms.store(millis(k.time), Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Idle connections a worker's pool keeps.
    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// How long a pooled connection may stay unused.
    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_ms.load(Ordering::Relaxed))
    }

    /// Whether connections are pooled at all (nginx: no `keepalive` directive with 0).
    fn reuses(&self) -> bool {
        self.connections() > 0 && !self.idle_timeout().is_zero()
    }

    /// Whether a connection opened at `opened` that carried `requests` may take another at
    /// `now` (the caller's clock read, shared with its idle bookkeeping).
    fn allows(&self, requests: u64, opened: Instant, now: Instant) -> bool {
        let age = millis(now.saturating_duration_since(opened));
        requests < self.requests.load(Ordering::Relaxed)
            && age < self.time_ms.load(Ordering::Relaxed)
    }
}

/// Why a request got no response from the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection took the request: nothing of it reached the endpoint.
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: SocketAddr,
        #[source]
        source: Arc<ConnectError>,
    },
    /// The request (or part of it) was sent and failed: a send timeout
    /// ([`super::send_timeout::SendTimedOut`] in the chain), a reset, a closed connection.
    #[error("upstream request failed: {0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether the request never left the proxy (so any endpoint may be tried with it).
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Connect { .. })
    }

    /// Whether connecting took longer than the connect timeout (nginx's `timeout` case).
    pub fn connect_timed_out(&self) -> bool {
        matches!(self, UpstreamError::Connect { source, .. }
            if matches!(**source, ConnectError::TimedOut(_)))
    }

    /// Whether the endpoint's response head did not parse (nginx's `invalid_header` case).
    pub fn is_invalid_response(&self) -> bool {
        matches!(self, UpstreamError::Request(e) if e.is_parse() || e.is_parse_status())
    }
}

/// Every upstream connection of one set of timeouts, one pool per worker; cheap to clone.
#[derive(Clone)]
pub struct Clients {
    /// By worker index ([`crate::proxy::workers::current`]); the first off the workers.
    pools: Arc<[Arc<Pool>]>,
    /// The connections of verified backends (BackendTLSPolicy), by policy: their TLS is
    /// theirs alone, so they are pooled apart.
    verified: Arc<Mutex<HashMap<VerifiedTls, Clients>>>,
}

impl Clients {
    /// Clients with one pool (for use off the proxy's workers).
    pub fn new(opts: PoolOptions) -> Self {
        Self::per_worker(opts, 1)
    }

    /// Clients with a pool for each of `workers` workers (at least one).
    pub fn per_worker(opts: PoolOptions, workers: usize) -> Self {
        let dialer = Dialer::new(opts.connect_timeout, opts.send_timeout);
        Self::with_dialer(opts, dialer, workers)
    }

    fn with_dialer(opts: PoolOptions, dialer: Dialer, workers: usize) -> Self {
        let pools = (0..workers.max(1))
            .map(|_| {
                Arc::new(Pool {
                    dialer: dialer.clone(),
                    opts: opts.clone(),
                    idle: Mutex::new(Idle::default()),
                    next_id: AtomicU64::new(1),
                    reaping: AtomicBool::new(false),
                })
            })
            .collect();
        Clients {
            pools,
            verified: Default::default(),
        }
    }

    /// The calling worker's pool.
    fn pool(&self) -> &Arc<Pool> {
        let i = crate::proxy::workers::current().unwrap_or(0);
        &self.pools[i % self.pools.len()]
    }

    /// The clients (same timeouts) whose TLS is verified as `v` says.
    pub fn verified(&self, v: &VerifiedTls) -> Clients {
        let mut map = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(v.clone())
            .or_insert_with(|| {
                let first = &self.pools[0];
                let dialer = first.dialer.clone().verified(v);
                Clients::with_dialer(first.opts.clone(), dialer, self.pools.len())
            })
            .clone()
    }

    /// Sends `req` (URI `scheme://virtual-host/path`, see the module docs) to `endpoint`
    /// over the protocol of `protocol`, and waits for the response head. The response body
    /// must be read (or dropped) for the connection to make progress: over HTTP/1.1, reading it
    /// is what drives the connection.
    pub async fn send(
        &self,
        protocol: BackendProtocol,
        endpoint: SocketAddr,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (tls, http2) = match protocol {
            // `AUTO_HTTP` is resolved per connection before it gets here; plain HTTP if not.
            BackendProtocol::Http | BackendProtocol::AutoHttp => (false, false),
            BackendProtocol::Https => (true, false),
            BackendProtocol::H2c | BackendProtocol::Grpc => (false, true),
            BackendProtocol::Grpcs => (true, true),
        };
        let key = Key { endpoint, tls };
        if http2 {
            // Boxed: HTTP/2's state stays out of the (common) HTTP/1.1 request's future.
            let resp = Box::pin(self.pool().send_http2(key, http2_form(req))).await?;
            Ok(resp.map(UpstreamBody::plain))
        } else {
            self.pool().send_http1(key, http1_form(req)).await
        }
    }
}

/// URI scheme and HTTP version to use toward an upstream of this protocol.
pub fn scheme_and_version(protocol: BackendProtocol) -> (&'static str, http::Version) {
    match protocol {
        BackendProtocol::Http | BackendProtocol::AutoHttp => ("http", http::Version::HTTP_11),
        BackendProtocol::H2c | BackendProtocol::Grpc => ("http", http::Version::HTTP_2),
        BackendProtocol::Https => ("https", http::Version::HTTP_11),
        BackendProtocol::Grpcs => ("https", http::Version::HTTP_2),
    }
}

/// HTTP/1.1: the target in origin-form; the authority travels in `Host` (RFC 9112 §3.2).
/// A request marked HTTP/1.0 (`proxy-http-version: "1.0"`) stays HTTP/1.0; any other is
/// HTTP/1.1.
fn http1_form(mut req: Request<ProxyBody>) -> Request<ProxyBody> {
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    if req.version() != Version::HTTP_10 {
        *req.version_mut() = Version::HTTP_11;
    }
    req
}

/// HTTP/2: the URI's scheme and authority are `:scheme` and `:authority`; no `Host` field
/// beside them (RFC 9113 §8.3.1).
fn http2_form(mut req: Request<ProxyBody>) -> Request<ProxyBody> {
    req.headers_mut().remove(HOST);
    *req.version_mut() = Version::HTTP_2;
    req
}

/// Which connections can serve a request: the endpoint, and whether TLS is spoken to it.
/// (HTTP/1.1 and HTTP/2 connections live in separate maps.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    endpoint: SocketAddr,
    tls: bool,
}

pub(super) struct Pool {
    opts: PoolOptions,
    dialer: Dialer,
    idle: Mutex<Idle>,
    /// Names HTTP/2 connections, so a dead one is removed and not its successor.
    next_id: AtomicU64,
    /// Whether the task closing idle connections runs (started with the first one pooled).
    reaping: AtomicBool,
}

#[derive(Default)]
struct Idle {
    /// Last pooled at the end; taken from the end (the warmest connection first). ahash:
    /// looked up two or three times a request, where SipHash cost ~0.6% of its instructions.
    http1: HashMap<Key, Vec<IdleHttp1>, ahash::RandomState>,
    /// How many connections `http1` holds (the idle limit counts over every endpoint).
    http1_count: usize,
    http2: HashMap<Key, Http2Entry, ahash::RandomState>,
}

impl Idle {
    /// Takes out the least recently pooled HTTP/1.1 connection (each list's first is its
    /// oldest), as nginx's keepalive cache closes its least recently used one when full.
    fn take_lru_http1(&mut self) -> Option<Http1Conn> {
        let key = *(self.http1.iter())
            .filter_map(|(k, list)| Some((k, list.first()?.since)))
            .min_by_key(|(_, since)| *since)?
            .0;
        let list = self.http1.get_mut(&key)?;
        let c = list.remove(0);
        if list.is_empty() {
            self.http1.remove(&key);
        }
        self.http1_count -= 1;
        Some(c.conn)
    }

    /// Takes out the least recently pooled HTTP/1.1 connections past `max`.
    fn trim_http1(&mut self, max: usize) -> Vec<Http1Conn> {
        let mut out = Vec::new();
        while self.http1_count > max {
            match self.take_lru_http1() {
                Some(c) => out.push(c),
                None => break,
            }
        }
        out
    }
}

struct IdleHttp1 {
    conn: Http1Conn,
    since: Instant,
}

#[derive(Clone)]
struct Http2Conn {
    id: u64,
    tx: http2::SendRequest<ProxyBody>,
    opened: Instant,
    /// Requests sent on it (its clones share the count).
    requests: Arc<AtomicU64>,
}

impl Http2Conn {
    fn new(id: u64, tx: http2::SendRequest<ProxyBody>) -> Self {
        Http2Conn {
            id,
            tx,
            opened: Instant::now(),
            requests: Arc::default(),
        }
    }
}

/// An HTTP/2 connection being opened; every request waiting for it gets the same outcome.
type Dialing = Shared<BoxFuture<'static, Result<Http2Conn, Arc<ConnectError>>>>;

enum Http2Entry {
    Open { conn: Http2Conn, last_used: Instant },
    Dialing { id: u64, dialing: Dialing },
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reuses(&self) -> bool {
        self.opts.reuse.reuses()
    }

    /// When a connection unused since `since` is closed (`None`: past what `Instant` holds).
    fn due(&self, since: Instant) -> Option<Instant> {
        since.checked_add(self.opts.reuse.idle_timeout())
    }

    fn connect_error(key: Key, e: Arc<ConnectError>) -> UpstreamError {
        UpstreamError::Connect {
            endpoint: key.endpoint,
            source: e,
        }
    }

    async fn send_http1(
        self: &Arc<Self>,
        key: Key,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // HTTP/1.0 has no persistent connections unless both sides ask (RFC 1945; nginx
        // sends no `keep-alive` with `proxy_http_version 1.0`): a new connection each, never
        // pooled, closed once its response has been read.
        if req.version() == Version::HTTP_10 {
            let mut conn = self.dial_http1(key).await?;
            conn.detach();
            let resp = conn.send(req).await.map_err(|e| Self::unsent(key, e))?;
            return Ok(resp.map(UpstreamBody::plain));
        }
        // An upgrade's connection becomes the tunnel: its I/O goes to a task of its own.
        let upgrade = req.headers().contains_key(UPGRADE);
        // Not pooled: the pod is told so, as ingress-nginx's `$connection_upgrade` map says
        // `close` without upstream keep-alive (a `connection-proxy-header` value stays).
        if !upgrade && !self.reuses() && !req.headers().contains_key(CONNECTION) {
            req.headers_mut()
                .insert(CONNECTION, http::HeaderValue::from_static("close"));
        }
        let (mut conn, reused) = match self.checkout_http1(key) {
            Some(conn) => (conn, true),
            None => (self.dial_http1(key).await?, false),
        };
        if upgrade {
            conn.detach();
        }
        let resp = match conn.send(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // The pooled connection closed before taking the request: a new one.
                Some(req) if reused => {
                    conn = self.dial_http1(key).await?;
                    if upgrade {
                        conn.detach();
                    }
                    conn.send(req).await.map_err(|e| Self::unsent(key, e))?
                }
                _ => return Err(Self::unsent(key, e)),
            },
        };
        let home = Home {
            pool: Arc::clone(self),
            key,
        };
        Ok(resp.map(|body| UpstreamBody::driving(body, conn, home)))
    }

    /// A failed send: a connect failure when the connection gave the request back unsent.
    fn unsent(key: Key, e: hyper::client::conn::TrySendError<Request<ProxyBody>>) -> UpstreamError {
        if e.message().is_some() {
            Self::connect_error(key, Arc::new(ConnectError::Closed(e.into_error())))
        } else {
            UpstreamError::Request(e.into_error())
        }
    }

    async fn dial_http1(&self, key: Key) -> Result<Http1Conn, UpstreamError> {
        // Boxed: connecting (TCP, TLS, handshake) is rare next to reuse, and its state is
        // large; unboxed it would sit in every request's future.
        Box::pin(self.dialer.http1(key.endpoint, key.tls))
            .await
            .map_err(|e| Self::connect_error(key, Arc::new(e)))
    }

    /// The warmest idle connection to `key` still open and within the idle timeout.
    fn checkout_http1(&self, key: Key) -> Option<Http1Conn> {
        if !self.reuses() {
            return None;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let Idle {
            http1, http1_count, ..
        } = &mut *idle;
        let list = http1.get_mut(&key)?;
        let mut found = None;
        while let Some(mut c) = list.pop() {
            *http1_count -= 1;
            if self.due(c.since).is_none_or(|due| due > now)
                && self
                    .opts
                    .reuse
                    .allows(c.conn.requests(), c.conn.opened(), now)
                && c.conn.is_reusable()
            {
                found = Some(c.conn);
                break;
            }
            // Closed by the endpoint or idle too long: dropping it closes it.
        }
        // An emptied list stays for the connection given back next (no removal, insertion
        // and allocation per request); the reaper drops the lists left empty.
        found
    }

    fn put_http1(self: &Arc<Self>, key: Key, conn: Http1Conn) {
        // Past its requests or its time it is closed (dropped), as nginx's
        // `ngx_http_upstream_free_keepalive_peer` does.
        let now = Instant::now();
        if !self.reuses() || !self.opts.reuse.allows(conn.requests(), conn.opened(), now) {
            return;
        }
        let evicted = {
            let mut idle = self.lock();
            // Room for it: the least recently used go (closed once the lock is let go).
            let evicted = idle.trim_http1(self.opts.reuse.connections().saturating_sub(1));
            idle.http1
                .entry(key)
                .or_default()
                .push(IdleHttp1 { conn, since: now });
            idle.http1_count += 1;
            evicted
        };
        drop(evicted);
        self.start_reaper();
    }

    async fn send_http2(
        self: &Arc<Self>,
        key: Key,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let mut resent = false;
        loop {
            let Http2Conn {
                id,
                mut tx,
                opened,
                requests,
            } = self.checkout_http2(key).await?;
            // Its last request: later ones open a new connection, this one closes when its
            // streams end (the pool held the last handle but the requests').
            let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.opts.reuse.allows(n, opened, Instant::now()) {
                self.forget_http2(key, id);
            }
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => {
                    let unsent = e.take_message();
                    if unsent.is_some() || tx.is_closed() {
                        self.forget_http2(key, id);
                    }
                    match unsent {
                        // The connection closed before taking the request: a new one, once.
                        Some(r) if !resent => {
                            req = r;
                            resent = true;
                        }
                        Some(_) => {
                            let e = ConnectError::Closed(e.into_error());
                            return Err(Self::connect_error(key, Arc::new(e)));
                        }
                        None => return Err(UpstreamError::Request(e.into_error())),
                    }
                }
            }
        }
    }

    /// The endpoint's open HTTP/2 connection, or the one being opened, or a new one.
    async fn checkout_http2(self: &Arc<Self>, key: Key) -> Result<Http2Conn, UpstreamError> {
        if !self.reuses() {
            let tx = self
                .dialer
                .http2(key.endpoint, key.tls)
                .await
                .map_err(|e| Self::connect_error(key, Arc::new(e)))?;
            return Ok(Http2Conn::new(0, tx));
        }
        let (id, dialing) = {
            let now = Instant::now();
            let mut idle = self.lock();
            match idle.http2.get_mut(&key) {
                Some(Http2Entry::Open { conn, last_used })
                    if !conn.tx.is_closed()
                        && (self.opts.reuse).allows(
                            conn.requests.load(Ordering::Relaxed),
                            conn.opened,
                            now,
                        ) =>
                {
                    *last_used = now;
                    return Ok(conn.clone());
                }
                Some(Http2Entry::Dialing { id, dialing }) => (*id, dialing.clone()),
                _ => {
                    let (id, dialing) = self.dial_http2(key);
                    let entry = Http2Entry::Dialing {
                        id,
                        dialing: dialing.clone(),
                    };
                    idle.http2.insert(key, entry);
                    (id, dialing)
                }
            }
        };
        dialing.await.map_err(|e| {
            // The dialing task clears a failed entry itself, unless it never got that far.
            self.forget_http2(key, id);
            Self::connect_error(key, e)
        })
    }

    /// Opens an HTTP/2 connection on its own task, so it is pooled even if the request that
    /// asked for it is gone; the task settles the pool entry.
    fn dial_http2(self: &Arc<Self>, key: Key) -> (u64, Dialing) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pool = Arc::downgrade(self);
        let dialer = self.dialer.clone();
        let task = tokio::spawn(async move {
            let result = dialer
                .http2(key.endpoint, key.tls)
                .await
                .map(|tx| Http2Conn::new(id, tx))
                .map_err(Arc::new);
            if let Some(pool) = pool.upgrade() {
                pool.settle_http2(key, id, &result);
            }
            result
        });
        let dialing = task
            .map(|joined| joined.unwrap_or_else(|_| Err(Arc::new(ConnectError::Abandoned))))
            .boxed()
            .shared();
        (id, dialing)
    }

    fn settle_http2(
        self: &Arc<Self>,
        key: Key,
        id: u64,
        result: &Result<Http2Conn, Arc<ConnectError>>,
    ) {
        {
            let mut idle = self.lock();
            if !matches!(idle.http2.get(&key), Some(Http2Entry::Dialing { id: d, .. }) if *d == id)
            {
                return;
            }
            match result {
                Ok(conn) => {
                    let open = Http2Entry::Open {
                        conn: conn.clone(),
                        last_used: Instant::now(),
                    };
                    idle.http2.insert(key, open);
                }
                Err(_) => {
                    idle.http2.remove(&key);
                    return;
                }
            }
        }
        self.start_reaper();
    }

    /// Drops connection `id` (open or being opened) from the pool, not a successor that
    /// replaced it.
    fn forget_http2(&self, key: Key, id: u64) {
        let mut idle = self.lock();
        let current = match idle.http2.get(&key) {
            Some(Http2Entry::Open { conn, .. }) => conn.id,
            Some(Http2Entry::Dialing { id, .. }) => *id,
            None => return,
        };
        if current == id {
            idle.http2.remove(&key);
        }
    }

    /// Starts the task closing idle connections, once; it ends with the pool.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let limits = Arc::clone(&self.opts.reuse);
        tokio::spawn(async move {
            loop {
                // Before reaping: a change of the limits from here on wakes it.
                let changed = limits.changed.notified();
                let Some(next) = pool.upgrade().map(|p| p.reap(Instant::now())) else {
                    return;
                };
                // Nothing pooled: whatever is pooled later is due a timeout from now (at
                // least a second, so a zero timeout does not spin).
                let every = limits.idle_timeout().max(Duration::from_secs(1));
                let wake = next.unwrap_or_else(|| Instant::now() + every);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = changed => {}
                }
            }
        });
    }

    /// Closes the connections idle for the idle timeout, those past the idle limit (least
    /// recently used first) and every one when reuse is off, and drops closed ones; returns
    /// when the next one is due.
    fn reap(&self, now: Instant) -> Option<Instant> {
        let reuses = self.reuses();
        let mut next: Option<Instant> = None;
        let mut keep = |since: Instant| match self.due(since) {
            Some(due) if due <= now => false,
            Some(due) => {
                next = Some(next.map_or(due, |n| n.min(due)));
                true
            }
            None => true,
        };
        let mut idle = self.lock();
        idle.http1.retain(|_, list| {
            list.retain(|c| reuses && !c.conn.is_closed() && keep(c.since));
            !list.is_empty()
        });
        idle.http1_count = idle.http1.values().map(Vec::len).sum();
        let evicted = idle.trim_http1(self.opts.reuse.connections());
        idle.http2.retain(|_, entry| match entry {
            Http2Entry::Open { conn, last_used } => {
                reuses && !conn.tx.is_closed() && keep(*last_used)
            }
            Http2Entry::Dialing { .. } => true,
        });
        drop(idle);
        drop(evicted);
        next
    }
}

/// Where an HTTP/1.1 connection goes once its response has been read: back to its pool if
/// it is idle, or, still sending a request body the endpoint answered early, to a task that
/// finishes that first (as hyper's own connection task would). Closed when not reused.
pub(super) struct Home {
    pool: Arc<Pool>,
    key: Key,
}

impl Home {
    pub(super) fn give_back(self, mut conn: Http1Conn) {
        if conn.is_reusable() {
            self.pool.put_http1(self.key, conn);
            return;
        }
        if conn.is_closed() {
            return;
        }
        // No runtime (shutting down): dropping it closes it.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if conn.idle().await {
                self.pool.put_http1(self.key, conn);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty};

    use super::*;

    fn request(uri: &str) -> Request<ProxyBody> {
        let body = Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync();
        let mut req = Request::new(body);
        *req.uri_mut() = uri.parse().unwrap();
        req.headers_mut()
            .insert(HOST, http::HeaderValue::from_static("v.test:8080"));
        req
    }

    #[test]
    fn each_version_carries_the_virtual_host_its_own_way() {
        let h1 = http1_form(request("http://v.test:8080/p?q=1"));
        assert_eq!(h1.uri().to_string(), "/p?q=1", "origin-form");
        assert_eq!(h1.headers().get_all(HOST).iter().count(), 1);
        assert_eq!(h1.headers()[HOST], "v.test:8080");
        assert_eq!(h1.version(), Version::HTTP_11);

        let h2 = http2_form(request("https://v.test:8080/p?q=1"));
        assert_eq!(
            h2.uri().to_string(),
            "https://v.test:8080/p?q=1",
            ":authority"
        );
        assert!(
            h2.headers().get(HOST).is_none(),
            "no Host beside :authority"
        );
        assert_eq!(h2.version(), Version::HTTP_2);
    }

    /// A refused connect is a connect error on both versions, so `forward` may retry it.
    #[tokio::test]
    async fn refused_connect_is_a_connect_error() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let clients = Clients::new(PoolOptions {
            connect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            reuse: Default::default(),
        });
        for protocol in [
            BackendProtocol::Http,
            BackendProtocol::Grpc,
            BackendProtocol::Grpcs,
        ] {
            let err = clients
                .send(protocol, dead, request("http://v.test:8080/"))
                .await
                .expect_err("nobody listens");
            assert!(err.is_connect(), "{protocol:?}: {err}");
        }
    }

    /// A keep-alive endpoint (RFC 9112 §9.3: persistent by default in HTTP/1.1) that counts
    /// the connections it accepted. `/chunked` streams its body, `/empty` answers 204.
    async fn counting_endpoint() -> (SocketAddr, Arc<AtomicU64>) {
        use hyper::{server::conn::http1 as server, service::service_fn};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body: ProxyBody = match req.uri().path() {
                        "/chunked" => {
                            let chunks = (0..3).map(|_| {
                                Ok::<_, BoxError>(hyper::body::Frame::data(Bytes::from_static(
                                    b"chunk ",
                                )))
                            });
                            http_body_util::StreamBody::new(futures::stream::iter(chunks))
                                .boxed_unsync()
                        }
                        "/empty" => Empty::new().map_err(|e| match e {}).boxed_unsync(),
                        _ => http_body_util::Full::new(Bytes::from_static(b"hello"))
                            .map_err(|e| match e {})
                            .boxed_unsync(),
                    };
                    let mut resp = Response::new(body);
                    if req.uri().path() == "/empty" {
                        *resp.status_mut() = http::StatusCode::NO_CONTENT;
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(server::Builder::new().serve_connection(io, svc));
            }
        });
        (addr, accepted)
    }

    fn keepalive_clients() -> Clients {
        Clients::new(PoolOptions {
            connect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            reuse: Default::default(),
        })
    }

    /// A connection returns to the pool once its response body has been read to the end
    /// (with a length or chunked), or at once when the response has no body even if nobody
    /// reads it; one whose body was dropped before its end is closed, not reused.
    #[tokio::test]
    async fn connection_is_reused_after_its_response_ends() {
        let (addr, accepted) = counting_endpoint().await;
        let clients = keepalive_clients();
        for path in ["/", "/chunked", "/", "/chunked"] {
            let resp = clients
                .send(
                    BackendProtocol::Http,
                    addr,
                    request(&format!("http://v.test{path}")),
                )
                .await
                .expect("answered");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert!(!body.is_empty(), "{path}");
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "read to the end: reused"
        );

        for _ in 0..2 {
            let resp = clients
                .send(BackendProtocol::Http, addr, request("http://v.test/empty"))
                .await
                .expect("answered");
            assert_eq!(resp.status(), http::StatusCode::NO_CONTENT);
            drop(resp);
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "no body: reused unread"
        );

        let resp = clients
            .send(
                BackendProtocol::Http,
                addr,
                request("http://v.test/chunked"),
            )
            .await
            .expect("answered");
        drop(resp);
        let resp = clients
            .send(BackendProtocol::Http, addr, request("http://v.test/"))
            .await
            .expect("answered");
        resp.into_body().collect().await.expect("body");
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            2,
            "a body dropped unread closes its connection"
        );
    }

    /// Each worker reuses the connections it opened and never another worker's: a
    /// connection's I/O stays on the thread of the requests using it.
    #[tokio::test]
    async fn each_worker_pools_its_own_connections() {
        let (addr, accepted) = counting_endpoint().await;
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let workers = crate::proxy::workers::Workers::start(2, &done_rx).expect("workers");
        let clients = Clients::per_worker(
            PoolOptions {
                connect_timeout: Duration::from_secs(5),
                send_timeout: Duration::from_secs(5),
                reuse: Default::default(),
            },
            2,
        );
        let get_on = |worker: usize| {
            let clients = clients.clone();
            workers.handles[worker].spawn(async move {
                let resp = clients
                    .send(BackendProtocol::Http, addr, request("http://v.test/"))
                    .await
                    .expect("answered");
                resp.into_body().collect().await.expect("body");
            })
        };
        let mut seen = Vec::new();
        for worker in [0, 0, 1, 1, 0, 1] {
            get_on(worker).await.expect("request ran");
            seen.push(accepted.load(Ordering::Relaxed));
        }
        assert_eq!(
            seen,
            [1, 1, 2, 2, 2, 2],
            "one connection per worker, each reused by its own worker only"
        );
        let _ = done_tx.send(true);
    }

    /// A pooled connection the endpoint closed meanwhile is not handed out: the next request
    /// goes over a new connection and succeeds.
    #[tokio::test]
    async fn connection_closed_by_the_endpoint_is_not_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    // Answers keep-alive, then closes the connection anyway.
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    drop(stream);
                    let _ = closed_tx.send(());
                });
            }
        });
        let clients = keepalive_clients();
        for _ in 0..3 {
            let resp = clients
                .send(BackendProtocol::Http, addr, request("http://v.test/"))
                .await
                .expect("answered over a fresh connection");
            resp.into_body().collect().await.expect("body");
            // The endpoint has closed its end (on loopback the FIN is here by then).
            tokio::time::timeout(Duration::from_secs(30), closed.recv())
                .await
                .expect("endpoint closes");
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 3);
    }

    /// The idle limit counts over every endpoint of a worker's pool and closes the least
    /// recently pooled connection first (nginx's keepalive cache); lowering it closes the
    /// excess at once; 0 reuses nothing.
    #[tokio::test]
    async fn the_idle_limit_counts_over_endpoints_least_recently_used_first() {
        let (a, a_accepted) = counting_endpoint().await;
        let (b, b_accepted) = counting_endpoint().await;
        let limits = Arc::new(ReuseLimits::new(Keepalive {
            connections: 2,
            ..Keepalive::default()
        }));
        let clients = Clients::new(PoolOptions {
            connect_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            reuse: Arc::clone(&limits),
        });
        let get = async |addr| {
            let resp = clients
                .send(BackendProtocol::Http, addr, request("http://v.test/"))
                .await
                .expect("answered");
            resp.into_body().collect().await.expect("body");
        };
        let opened = || {
            (
                a_accepted.load(Ordering::Relaxed),
                b_accepted.load(Ordering::Relaxed),
            )
        };
        get(a).await;
        get(b).await;
        get(a).await;
        assert_eq!(opened(), (1, 1), "two idle: both kept");
        limits.set(Keepalive {
            connections: 1,
            ..Keepalive::default()
        });
        // a's was pooled last: b's, the least recently used, goes.
        get(a).await;
        get(b).await;
        assert_eq!(opened(), (1, 2));
        get(a).await;
        assert_eq!(opened(), (2, 2), "b's pooled last pushed a's out");
        limits.set(Keepalive {
            connections: 0,
            ..Keepalive::default()
        });
        get(a).await;
        get(a).await;
        assert_eq!(opened(), (4, 2), "0: a connection each");
    }
}
