//! The L7 ingress proxy: TLS termination, host/path routing straight to endpoints, load
//! balancing, passive health, limits, metrics — configured only by snapshots.
//!
//! [`Proxy::start`] binds the listeners and returns a [`ProxyHandle`]; the control plane calls
//! [`ProxyHandle::apply`] with every new snapshot. A snapshot is compiled into a [`Runtime`]
//! (route table, upstream state) and swapped in atomically: requests that already started
//! finish on the runtime they loaded, new ones see the new one, and open connections —
//! upgraded WebSockets included — are never touched. Nothing is ever reloaded.

pub mod access_log;
pub mod allowlist;
pub mod answer_rewrite;
pub mod args;
pub mod auth;
pub mod authority;
pub mod body;
pub mod canary;
pub mod changes;
pub mod client_addr;
pub mod client_body;
pub mod client_cert;
pub mod compression;
pub mod cors;
pub mod error_pages;
pub mod fixtures;
pub mod forward;
pub mod forward_auth;
pub mod gateway_filters;
pub mod grpc_reject;
pub mod headers;
pub mod ingress_mirror;
pub mod limits;
pub mod listener;
pub mod listener_set;
pub mod liveness;
pub mod metrics;
pub mod mirror;
pub mod misdirected;
pub mod next_upstream;
pub mod nginx_pages;
pub mod normalize;
pub mod passthrough;
pub mod proxy_protocol;
pub mod rate_limit;
#[cfg(test)]
mod rebuild_tests;
pub mod request_buffer;
pub mod request_deadline;
pub mod request_head;
pub mod request_target;
pub mod response_rate;
pub mod rewrite;
pub mod router;
pub mod settings;
pub mod slots;
pub mod sni;
pub mod syslog;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod upstreams;
pub mod watched_sleep;
pub mod workers;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tracing::{info, warn};

pub use args::{AccessLogFormat, ProxyArgs};
pub use forward::{REASON_HEADER, SOURCE_BLOCKED, SOURCE_DENIED};

use crate::model::Snapshot;
use access_log::AccessLog;
use metrics::Metrics;
use router::RouteTable;
use tls::CertStore;
use upstream::{Clients, HealthPolicy, PoolOptions, UpstreamRuntime, pool::ReuseLimits};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    RateLimitStore(#[from] rate_limit::store::StoreError),
    #[error("starting the proxy's worker threads: {0}")]
    Workers(#[source] std::io::Error),
    #[error("reading --rate-limit-redis-ca {path}: {source}")]
    RedisCa {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What one snapshot compiles into.
pub struct Runtime {
    pub version: u64,
    pub routes: RouteTable<Arc<UpstreamRuntime>>,
    /// The runtime of every upstream spec the routes, the default backend and the SNI table
    /// use; counters carry over to the next runtime. Probes and `endpoint_health` walk it.
    upstreams: upstreams::Upstreams,
    /// The uses the SNI table took (it is compiled anew for each snapshot), given back by the
    /// next runtime.
    sni_uses: Vec<(Arc<crate::model::Upstream>, Arc<UpstreamRuntime>)>,
    /// What the HTTPS port does with a ClientHello's SNI before terminating: `ssl-passthrough`
    /// hosts and Gateway TLSRoutes (upstreams shared with the routes' runtime of the same id).
    pub sni: sni::SniTable,
    /// Hosts' client-certificate steps (`auth-tls-*`) by virtual host name.
    pub client_auth: Arc<client_cert::Table>,
    /// HTTPS Gateway listeners' client-certificate validation (Gateway `spec.tls.frontend`).
    pub frontend_validation: client_cert::frontend::Table,
    /// HTTPS Gateway listeners' hostnames by port, for 421 ([`misdirected`]).
    pub misdirected: misdirected::Listeners,
}

/// [`Resolve`](router::Resolve) over a runtime's upstreams being patched: uses given back are
/// kept until every new one is taken (an upstream both a removed and an added host use keeps
/// its runtime), and offer their runtimes' counters to new runtimes of the same id.
struct Resolver<'a> {
    upstreams: &'a mut upstreams::Upstreams,
    carry: upstreams::Carry,
    given_back: Vec<Arc<crate::model::Upstream>>,
    health: HealthPolicy,
}

impl router::Resolve<Arc<UpstreamRuntime>> for Resolver<'_> {
    fn take(&mut self, spec: &Arc<crate::model::Upstream>) -> Arc<UpstreamRuntime> {
        self.upstreams.take(spec, &self.carry, self.health)
    }

    fn give_back(&mut self, spec: &Arc<crate::model::Upstream>, handle: &Arc<UpstreamRuntime>) {
        self.carry.offer(handle);
        self.given_back.push(Arc::clone(spec));
    }
}

impl Runtime {
    fn empty() -> Self {
        Runtime {
            version: 0,
            routes: RouteTable::empty(),
            upstreams: upstreams::Upstreams::default(),
            sni_uses: Vec::new(),
            sni: sni::SniTable::default(),
            client_auth: Arc::default(),
            frontend_validation: client_cert::frontend::Table::build(&Default::default(), None),
            misdirected: misdirected::Listeners::new(&Default::default()),
        }
    }

    /// Compiles a snapshot from scratch.
    pub fn build(snapshot: &Snapshot, health: HealthPolicy) -> (Self, Vec<router::RouteError>) {
        Runtime::empty().patch(&crate::model::L7Config::default(), snapshot, health)
    }

    /// The runtime of `next`, made from this one, which was made from `prev` (the snapshot
    /// applied last): only what `next` changed is compiled ([`RouteTable::patch`]: the
    /// hosts that are not the same `Arc`; the upstreams only they used go, new ones get
    /// runtimes); everything else is shared with this runtime, whose maps are persistent, so
    /// the work is proportional to the change, not to the hosts and upstreams. An upstream
    /// spec that is the same `Arc` keeps its runtime (slots, balancer, TLS connector); a new
    /// one shares the runtime of an equal spec of its id, else gets a new runtime keeping the
    /// counters of the one it replaces. The result serves every request as [`Runtime::build`]
    /// of `next` would, and holds the same upstreams (`rebuild_tests`). Route errors are
    /// those of the hosts compiled (a kept host's were reported before).
    pub fn patch(
        &self,
        prev: &crate::model::L7Config,
        next: &Snapshot,
        health: HealthPolicy,
    ) -> (Self, Vec<router::RouteError>) {
        let l7 = &next.l7;
        let mut upstreams = self.upstreams.clone();
        let mut r = Resolver {
            upstreams: &mut upstreams,
            carry: upstreams::Carry::default(),
            given_back: Vec::new(),
            health,
        };
        for (spec, rt) in &self.sni_uses {
            router::Resolve::give_back(&mut r, spec, rt);
        }
        let (routes, errors) = self.routes.patch(prev, l7, &mut r);
        // After the routes: a passthrough host's upstream shares their runtime when it is the
        // same variant.
        let mut sni_uses = Vec::new();
        let sni = sni::SniTable::build(l7, &mut |spec: &Arc<crate::model::Upstream>| {
            let rt = router::Resolve::take(&mut r, spec);
            sni_uses.push((Arc::clone(spec), Arc::clone(&rt)));
            rt
        });
        let Resolver { given_back, .. } = r;
        for spec in &given_back {
            upstreams.give_back(spec);
        }
        // The table depends only on the hosts with client-certificate steps.
        let client_auth = if changes::same_client_auth(prev, l7) {
            Arc::clone(&self.client_auth)
        } else {
            Arc::new(client_cert::Table::build(l7, Some(&self.client_auth)))
        };
        let frontend_validation =
            client_cert::frontend::Table::build(l7, Some(&self.frontend_validation));
        (
            Runtime {
                version: next.version,
                routes,
                upstreams,
                sni_uses,
                sni,
                client_auth,
                frontend_validation,
                misdirected: misdirected::Listeners::new(l7),
            },
            errors,
        )
    }

    /// Every upstream runtime in use, once each.
    pub fn upstreams(&self) -> impl Iterator<Item = &Arc<UpstreamRuntime>> {
        self.upstreams.runtimes()
    }
}

/// Every rate limit the routes of `l7` carry, and `global` (the ConfigMap's per-client limit):
/// the zones the proxy keeps ([`rate_limit::RateLimiter::retain`]).
pub(crate) fn rate_limits_of<'a>(
    l7: &'a crate::model::L7Config,
    global: Option<&'a crate::model::RateLimit>,
) -> Vec<&'a crate::model::RateLimit> {
    l7.hosts
        .values()
        .chain(l7.wildcard_hosts.values())
        .chain(l7.gateway_wildcard_hosts.values())
        .chain(&l7.any_host)
        .flat_map(|vh| &vh.routes)
        .filter_map(|r| r.policy.rate_limit.as_deref())
        .chain(global)
        .collect()
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub args: ProxyArgs,
    /// How many workers run ([`workers`]): each has its own upstream pools.
    pub workers: usize,
    /// `args` overlaid with the live snapshot's ConfigMap settings (trust, client timeouts,
    /// HSTS, the connection builder); swapped by [`ProxyHandle::apply`].
    pub live: ArcSwap<settings::Live>,
    pub runtime: ArcSwap<Runtime>,
    pub clients: Clients,
    /// Clients for routes whose `proxy-connect-timeout` or `proxy-send-timeout` differs from
    /// the flags, by (connect, send) timeout: both are properties of the connections, hence of
    /// the pool.
    pub clients_by_timeouts: Mutex<HashMap<(Duration, Duration), Clients>>,
    /// `upstream-keepalive-*` over their flags ([`settings::Live::upstream_keepalive`]), shared by every pool above
    /// and set on each apply that changes the ConfigMap's settings.
    pub reuse: Arc<ReuseLimits>,
    pub metrics: Arc<Metrics>,
    pub access_log: Option<Arc<AccessLog>>,
    pub certs: Arc<CertStore>,
    /// The client-facing TLS configurations of the live snapshot's `ssl-*` keys; replaced
    /// by [`ProxyHandle::apply`] when they change.
    pub handshakes: ArcSwap<tls::Handshakes>,
    /// Routes' authentication step: bounded hash checks and their cache.
    pub auth: auth::Authenticator,
    /// Routes' external authentication: the auth client and the answer cache.
    pub forward_auth: forward_auth::ForwardAuthenticator,
    /// Routes' `limit-rps`, `limit-rpm` and `limit-connections` counters, by Ingress, and the
    /// global per-client limit's.
    pub rate_limits: rate_limit::RateLimiter,
    /// Request-body bytes all requests may hold in memory (`--request-buffer-total-bytes`).
    pub body_budget: Arc<request_buffer::Budget>,
    /// Label for "none" in metrics.
    pub dash: Arc<String>,
}

impl Shared {
    /// The clients to use for a route with these connect and send timeouts (`None`: flag).
    pub fn clients_for(&self, connect: Option<Duration>, send: Option<Duration>) -> Clients {
        let args = &self.args;
        let key = (
            connect.unwrap_or(args.proxy_connect_timeout),
            send.unwrap_or(args.proxy_send_timeout),
        );
        if key == (args.proxy_connect_timeout, args.proxy_send_timeout) {
            return self.clients.clone();
        }
        let mut map = self
            .clients_by_timeouts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Clients::per_worker(
                    PoolOptions {
                        connect_timeout: key.0,
                        send_timeout: key.1,
                        reuse: Arc::clone(&self.reuse),
                    },
                    self.workers,
                )
            })
            .clone()
    }
}

/// An endpoint's passive health as the proxy sees it ([`upstream::health`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EndpointHealth {
    /// Ejected after `--max-fails` consecutive failures, for `--fail-timeout`.
    pub ejected: bool,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Requests sent and not yet answered.
    pub in_flight: u32,
    /// Smoothed time to response headers in microseconds (0: no sample yet).
    pub latency_us: u64,
}

/// Entry point; see the module docs.
pub struct Proxy;

impl Proxy {
    /// Binds the HTTP, HTTPS and (optional) metrics listeners and starts serving with an
    /// empty configuration (everything 404) until the first [`ProxyHandle::apply`].
    /// Connections are served on `--proxy-workers` threads of the proxy's own ([`workers`]);
    /// the admin listener and housekeeping run on the caller's runtime.
    /// When `shutdown` resolves the proxy stops accepting and drains.
    pub async fn start(
        mut args: ProxyArgs,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ProxyHandle, ProxyError> {
        // Sent when drained; dropped (the workers stop too) if starting fails below.
        let (done_tx, done_rx) = watch::channel(false);
        let worker_count = workers::count(args.proxy_workers);
        let workers =
            workers::Workers::start(worker_count, &done_rx).map_err(ProxyError::Workers)?;
        let own = listener_set::ListenerSet::bind_own(
            args.listen_address,
            args.ports.http_port,
            args.ports.https_port,
            &workers.handles,
        )?;
        let (http_addr, https_addr) = (own.http.1, own.https.1);
        // Redirects name the port actually bound (matters when asked for port 0).
        args.ports
            .redirect_https_port
            .get_or_insert(https_addr.port());
        let metrics = Arc::new(Metrics::new());
        let metrics_addr = match args.metrics_addr {
            Some(a) => {
                let (l, bound) = metrics::bind_admin(a)
                    .await
                    .map_err(|source| ProxyError::Bind { addr: a, source })?;
                tokio::spawn(metrics::serve_admin(
                    l,
                    Arc::clone(&metrics),
                    metrics::AdminLimits::from_args(&args),
                ));
                Some(bound)
            }
            None => None,
        };
        // The default certificate comes with each snapshot (`L7Config::default_certificate`).
        let certs = Arc::new(CertStore::new()?);
        let handshakes = tls::Handshakes::new(&Default::default(), &certs, None)?;
        let redis_ca = match &args.rate_limit_redis_ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| ProxyError::RedisCa {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let store = match &args.rate_limit_redis {
            Some(url) => Some(rate_limit::store::RedisStore::start(
                url,
                redis_ca.as_deref(),
                args.rate_limit_redis_timeout,
                metrics.rate_limit_store_up.clone(),
            )?),
            None => None,
        };
        let rate_limits = rate_limit::RateLimiter::new(
            store,
            metrics.rate_limit_fallback_decisions.clone(),
            metrics.rate_limit_nodes.clone(),
        );
        rate_limits.set_nodes(args.rate_limit_cluster_nodes.unwrap_or(1));
        let live = settings::Live::new(&args, &Default::default());
        let reuse = Arc::new(ReuseLimits::new(live.upstream_keepalive));
        let body_budget = request_buffer::Budget::metered(
            args.request_buffer_total_bytes,
            metrics.request_buffer_bytes.clone(),
        );
        let access_log = AccessLog::start(args.access_log_format, &metrics).map(Arc::new);
        let shared = Arc::new(Shared {
            workers: worker_count,
            clients: Clients::per_worker(
                PoolOptions {
                    connect_timeout: args.proxy_connect_timeout,
                    send_timeout: args.proxy_send_timeout,
                    reuse: Arc::clone(&reuse),
                },
                worker_count,
            ),
            clients_by_timeouts: Mutex::new(HashMap::new()),
            reuse,
            runtime: ArcSwap::from_pointee(Runtime::empty()),
            metrics,
            access_log,
            certs,
            handshakes: ArcSwap::from_pointee(handshakes),
            auth: auth::Authenticator::default(),
            forward_auth: forward_auth::ForwardAuthenticator::default(),
            body_budget,
            rate_limits,
            dash: Arc::new("-".into()),
            live: ArcSwap::from_pointee(live),
            args,
        });
        if shared.live.load().trust.trusts_any_sender() {
            warn!(
                cidrs = ?shared.args.proxy_real_ip_cidr,
                "forwarded headers or PROXY headers are believed from every address in \
                 --proxy-real-ip-cidr, which includes a /0: set it to the load balancers' ranges"
            );
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let accepting = Arc::new(listener::Accepting::new(Arc::clone(&shared), shutdown_rx));
        let listeners = listener_set::ListenerSet::start(
            Arc::clone(&accepting),
            shared.args.listen_address,
            own,
            workers.handles.clone(),
        );
        tokio::spawn(async move {
            shutdown.await;
            let _ = shutdown_tx.send(true);
            accepting.drain().await;
            let _ = done_tx.send(true);
        });
        tokio::spawn(probe_loop(Arc::clone(&shared), done_rx.clone()));
        info!(%http_addr, %https_addr, ?metrics_addr, workers = worker_count, "proxy listening");
        Ok(ProxyHandle {
            inner: Arc::new(HandleInner {
                shared,
                listeners,
                http_addr,
                https_addr,
                metrics_addr,
                apply_lock: Mutex::new(None),
                done: done_rx,
            }),
        })
    }
}

/// Lets ejected endpoints back early once a TCP connect to them succeeds.
async fn probe_loop(shared: Arc<Shared>, mut done: watch::Receiver<bool>) {
    let period = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = done.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let rt = shared.runtime.load_full();
        let now = upstream::health::now_ms();
        for up in rt.upstreams() {
            for (i, slot) in up.slots.iter().enumerate() {
                // Counters never written are of an endpoint never failed.
                let Some(stats) = slot.stats.made().filter(|s| s.is_ejected(now)) else {
                    continue;
                };
                let stats = Arc::clone(stats);
                let addr = up.addr(i);
                let timeout = shared.args.proxy_connect_timeout.min(period);
                tokio::spawn(async move {
                    let c =
                        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await;
                    if matches!(c, Ok(Ok(_))) {
                        stats.probe_succeeded();
                    }
                });
            }
        }
    }
}

struct HandleInner {
    shared: Arc<Shared>,
    listeners: Arc<listener_set::ListenerSet>,
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    /// Serializes [`ProxyHandle::apply`]; holds the snapshot applied last, against which the
    /// next one's certificates and rate-limit zones are compared ([`changes`]).
    apply_lock: Mutex<Option<Arc<Snapshot>>>,
    done: watch::Receiver<bool>,
}

/// Control of a running proxy; cheap to clone.
#[derive(Clone)]
pub struct ProxyHandle {
    inner: Arc<HandleInner>,
}

impl ProxyHandle {
    /// Makes `snapshot` live for every new request, at once. Parts that do not compile (a bad
    /// regex, an unparseable certificate) are left out with a warning; the rest is served.
    pub fn apply(&self, snapshot: Arc<Snapshot>) {
        let mut installed = self
            .inner
            .apply_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let installed_l7 = installed.as_ref().map(|s| &s.l7);
        let started = Instant::now();
        let shared = &self.inner.shared;
        let previous = shared.runtime.load();
        let health = HealthPolicy {
            max_fails: shared.args.max_fails,
            eject_for: shared.args.fail_timeout,
        };
        // The runtime served was made from the snapshot installed (the empty one at first).
        let empty = crate::model::L7Config::default();
        let (rt, errors) = previous.patch(installed_l7.unwrap_or(&empty), &snapshot, health);
        // Before the swap: a guard held across it becomes a counted reference (arc-swap pays
        // its debt), and dropping it last freed the previous runtime here, in the apply (a
        // tenth of it at 10k in `perf`), instead of on the blocking pool below.
        drop(previous);
        for e in errors {
            warn!(error = %e, "route not served");
        }
        for e in shared.certs.update_from(&snapshot.l7, installed_l7) {
            warn!(error = %e, "certificate not served");
        }
        let tls = &snapshot.l7.settings.tls;
        if shared.handshakes.load().settings != *tls {
            match tls::Handshakes::new(tls, &shared.certs, Some(&shared.handshakes.load())) {
                Ok(h) => shared.handshakes.store(Arc::new(h)),
                Err(e) => warn!(error = %e, "TLS settings not applied; the previous ones stay"),
            }
        }
        if shared.live.load().settings != snapshot.l7.settings {
            let live = settings::Live::new(&shared.args, &snapshot.l7.settings);
            if live.trust.trusts_any_sender() && !shared.live.load().trust.trusts_any_sender() {
                warn!(
                    "the ConfigMap makes forwarded or PROXY headers believed from a /0 in proxy-real-ip-cidr"
                );
            }
            shared.reuse.set(live.upstream_keepalive);
            if let Some(log) = &shared.access_log {
                log.set_syslog(live.settings.syslog.clone());
            }
            shared.live.store(Arc::new(live));
        }
        let old = shared.runtime.swap(Arc::new(rt));
        // Freeing the previous runtime's maps (tens of thousands of entries at 10k hosts) takes
        // milliseconds the new snapshot need not wait for.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || drop(old))),
            Err(_) => drop(old),
        }
        // After the routes: a new port's first request finds its routes.
        self.inner.listeners.reconcile(
            &snapshot.l7.gateway_listeners,
            &snapshot.l7.gateway_addresses,
            !snapshot.l7.settings.disable_ipv6,
        );
        let l7 = &snapshot.l7;
        // The zones are those of the last snapshot while no limited host changed.
        if !installed_l7.is_some_and(|p| changes::same_rate_limits(p, l7)) {
            shared.rate_limits.retain(&rate_limits_of(
                l7,
                shared.live.load().global_limit.as_deref(),
            ));
        }
        if shared.args.rate_limit_cluster_nodes.is_none() {
            shared
                .rate_limits
                .set_nodes(rate_limit::ready_ingress_nodes(&snapshot));
        }
        shared.metrics.ready.store(true, Ordering::Relaxed);
        shared
            .metrics
            .record_reload(snapshot.version, started.elapsed());
        // The previous one is freed off this path, as the runtime is.
        let previous = installed.replace(snapshot);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || drop(previous))),
            Err(_) => drop(previous),
        }
    }

    /// Version of the snapshot being served (0 before the first apply).
    pub fn version(&self) -> u64 {
        self.inner.shared.runtime.load().version
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.inner.http_addr
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.inner.https_addr
    }

    /// The ports open for Gateway listeners and their bound addresses.
    pub fn gateway_listeners(&self) -> std::collections::BTreeMap<u16, SocketAddr> {
        self.inner.listeners.open()
    }

    /// The sockets open on Gateway addresses (a specific `--listen-address` only).
    pub fn gateway_address_listeners(&self) -> Vec<SocketAddr> {
        self.inner.listeners.open_at()
    }

    /// The open IPv6 sockets of the ports under `--listen-address ::` (none with
    /// `disable-ipv6`).
    pub fn ipv6_listeners(&self) -> Vec<SocketAddr> {
        self.inner.listeners.open_ipv6()
    }

    /// Gateway listener ports the served snapshot asks for that could not be bound (port ->
    /// error); the status writer reports them on the listeners ([`listener_set`]).
    pub fn unbound_listeners(&self) -> watch::Receiver<listener_set::Unbound> {
        self.inner.listeners.unbound()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.metrics_addr
    }

    /// True once shutdown began: the L4 path should stop sending new connections here.
    pub fn is_draining(&self) -> bool {
        self.inner.shared.metrics.draining.load(Ordering::Relaxed)
    }

    /// The Prometheus text `/metrics` serves.
    pub fn metrics_text(&self) -> String {
        self.inner.shared.metrics.encode()
    }

    /// The proxy's counters, for other small listeners that share its admin protections.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.inner.shared.metrics)
    }

    /// Appends another component's exposition text (e.g. the XDP counters) to `/metrics`.
    pub fn set_extra_metrics(&self, f: metrics::ExtraMetrics) {
        self.inner.shared.metrics.extra.store(Some(Arc::new(f)));
    }

    /// Serves more read-only pages on the admin listener (the dashboard).
    pub fn set_admin_pages(&self, f: metrics::AdminPages) {
        self.inner.shared.metrics.pages.store(Some(Arc::new(f)));
    }

    /// Passive health of every endpoint of the served snapshot's upstreams, by upstream id
    /// (`namespace/name:port`) and endpoint address. Variants of one upstream (Ingresses whose
    /// annotations differ) keep separate state; the worst of them is reported.
    pub fn endpoint_health(&self) -> HashMap<(String, SocketAddr), EndpointHealth> {
        let rt = self.inner.shared.runtime.load_full();
        let now = upstream::health::now_ms();
        let mut out: HashMap<(String, SocketAddr), EndpointHealth> = HashMap::new();
        for up in rt.upstreams() {
            for (i, slot) in up.slots.iter().enumerate() {
                let s = slot.stats.read();
                let h = EndpointHealth {
                    ejected: s.is_ejected(now),
                    consecutive_failures: s.consecutive_failures.load(Ordering::Relaxed),
                    in_flight: s.in_flight.load(Ordering::Relaxed),
                    latency_us: s.ewma_us.load(Ordering::Relaxed),
                };
                out.entry((up.spec.id.clone(), up.addr(i)))
                    .and_modify(|old| {
                        if (h.ejected, h.consecutive_failures)
                            > (old.ejected, old.consecutive_failures)
                        {
                            *old = h;
                        }
                    })
                    .or_insert(h);
            }
        }
        out
    }

    /// Resolves when the proxy has drained after shutdown.
    pub async fn finished(&self) {
        let mut done = self.inner.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}
