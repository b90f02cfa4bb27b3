//! Prometheus metrics of the proxy and the admin endpoint serving them with `/healthz` and
//! `/readyz`. Other components (the XDP counters) can append their own exposition text. The
//! admin endpoint listens on the host network in the DaemonSet, so it gets the proxy's
//! protection against slow and idle clients and its own connection caps ([`AdminLimits`]).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::net::TcpListener;
use tracing::debug;

use super::{
    args::ProxyArgs,
    limits,
    liveness::{ConnTimeouts, Ended, Progress, supervise},
    slots::{ConnectionSlots, CountedStream, Refused},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub ingress: Arc<String>,
    pub host: Arc<String>,
    /// The Ingress rule's path as written (ingress-nginx's `path` label, `$location_path`).
    pub path: Arc<String>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub ingress: Arc<String>,
    pub host: Arc<String>,
    pub path: Arc<String>,
}

/// A request the route's authentication refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRefusedLabels {
    pub ingress: Arc<String>,
    pub host: Arc<String>,
    pub path: Arc<String>,
    /// Basic auth: `basic_unauthorized` (401), `basic_busy` (503, too many password checks);
    /// external auth: `external_unauthorized` (401), `external_forbidden` (403),
    /// `external_signin` (302 to `auth-signin`), `external_failed` (500: the auth service
    /// failed, timed out or answered another status); `unavailable` (503: the route's
    /// authentication cannot be used).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `http`, `https` or `admin`.
    pub listener: &'static str,
    /// [`Refused::label`]: `max_connections` or `max_connections_per_client`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitedLabels {
    /// `namespace/name` of the Ingress whose route was asked, or `-` (no route).
    pub ingress: Arc<String>,
    /// [`super::rate_limit::Refused::label`]: `limit_req`, `global_limit` or `limit_conn`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// `proxy` (`--request-buffer-total-bytes`) or `connection` (the connection's share).
    pub budget: &'static str,
}

/// Why an access log line was not written: `queue_full` (the writer is behind; the line is
/// dropped rather than slowing the request) or `syslog` (not sent to the syslog server: its
/// name did not resolve, or the datagram could not be sent).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLogLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassthroughLabels {
    /// The snapshot's passthrough host (or Gateway SNI pattern, `*.` wildcards as written)
    /// the SNI matched.
    pub host: Arc<String>,
    /// `passed`, `no_endpoint`, `unresolved` (an ExternalName Service's name did not
    /// resolve), `connect_failed`, `tls_failed` (a TLSRoute terminated here
    /// whose BackendTLSPolicy's TLS to the pod failed), or `no_route` (a Gateway passthrough
    /// listener's name no TLSRoute serves, closed).
    pub result: &'static str,
}

type Hist = Family<RouteLabels, Histogram, fn() -> Histogram>;
type UpHist = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Extra exposition text appended to `/metrics` (e.g. XDP counters).
pub type ExtraMetrics = Box<dyn Fn() -> String + Send + Sync>;

/// More read-only pages of the admin listener (the dashboard): the response for a request
/// path, or `None` for a path the hook does not serve (404).
pub type AdminPages = Box<dyn Fn(&str) -> Option<Response<Full<Bytes>>> + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub auth_refused: Family<AuthRefusedLabels, Counter>,
    pub request_duration: Hist,
    pub upstream_duration: UpHist,
    pub upstream_failures: Family<UpstreamLabels, Counter>,
    pub upstream_in_flight: Family<UpstreamLabels, Gauge>,
    pub active_connections: Family<ListenerLabels, Gauge>,
    pub rejected_connections: Family<RejectLabels, Counter>,
    pub tls_handshakes: Family<ResultLabels, Counter>,
    pub access_log_dropped: Family<DroppedLogLabels, Counter>,
    pub ssl_passthrough: Family<PassthroughLabels, Counter>,
    pub rate_limited: Family<RateLimitedLabels, Counter>,
    /// 1 while the rate-limit store (`--rate-limit-redis`) is connected, else 0.
    pub rate_limit_store_up: Gauge,
    pub rate_limit_fallback_decisions: Counter,
    /// Requests whose body streamed to the pod although request buffering was on, for want
    /// of buffer budget ([`super::request_buffer`]), by the budget that was short.
    pub unbuffered_requests: Family<BudgetLabels, Counter>,
    /// Request-body bytes held in memory by request buffering now.
    pub request_buffer_bytes: Gauge,
    /// Ready ingress nodes the limits are divided by while the store is down.
    pub rate_limit_nodes: Gauge,
    pub config_reloads: Counter,
    pub config_reload_duration: Histogram,
    pub config_version: Gauge,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    pub extra: ArcSwapOption<ExtraMetrics>,
    /// Pages served besides `/metrics`, `/healthz` and `/readyz` (set once wired).
    pub pages: ArcSwapOption<AdminPages>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xdp_ingress");
        let requests = Family::default();
        let auth_refused = Family::default();
        let request_duration = Hist::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_duration =
            UpHist::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_failures = Family::default();
        let upstream_in_flight = Family::default();
        let active_connections = Family::default();
        let rejected_connections: Family<RejectLabels, Counter> = Family::default();
        // Every series from the start, so rates and alerts see a 0 before the first refusal.
        for listener in ["http", "https", "admin"] {
            for refused in [Refused::Total, Refused::PerClient] {
                let _ = rejected_connections.get_or_create(&RejectLabels {
                    listener,
                    reason: refused.label(),
                });
            }
        }
        let tls_handshakes = Family::default();
        let access_log_dropped: Family<DroppedLogLabels, Counter> = Family::default();
        for reason in ["queue_full", "syslog"] {
            let _ = access_log_dropped.get_or_create(&DroppedLogLabels { reason });
        }
        let ssl_passthrough = Family::default();
        let rate_limited = Family::default();
        let rate_limit_store_up = Gauge::default();
        let rate_limit_fallback_decisions = Counter::default();
        let rate_limit_nodes = Gauge::default();
        let unbuffered_requests: Family<BudgetLabels, Counter> = Family::default();
        for budget in ["proxy", "connection"] {
            let _ = unbuffered_requests.get_or_create(&BudgetLabels { budget });
        }
        let request_buffer_bytes = Gauge::default();
        let config_reloads = Counter::default();
        let config_reload_duration = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        let config_version = Gauge::default();
        registry.register(
            "requests",
            "Requests by ingress, host, path and status",
            requests.clone(),
        );
        registry.register(
            "auth_refused_requests",
            "Requests a route's authentication (basic auth, auth-url, global-auth-url) refused, \
             by ingress, host, path and reason",
            auth_refused.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to response headers, by ingress, host and path",
            request_duration.clone(),
        );
        registry.register(
            "upstream_response_seconds",
            "Upstream time to response headers, by upstream",
            upstream_duration.clone(),
        );
        registry.register(
            "upstream_failures",
            "Failed upstream attempts (connect, reset, timeout), by upstream; faults of the \
             client (body too large, malformed or stalled, client gone) are not counted",
            upstream_failures.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Requests sent to the upstream's endpoints whose response has not ended, by upstream",
            upstream_in_flight.clone(),
        );
        registry.register(
            "active_connections",
            "Open client connections",
            active_connections.clone(),
        );
        registry.register(
            "rejected_connections",
            "Connections closed on accept, by listener and by the cap that was reached",
            rejected_connections.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            tls_handshakes.clone(),
        );
        registry.register(
            "access_log_dropped_lines",
            "Access log lines not written: reason=queue_full (the writer was behind), \
             reason=syslog (enable-syslog: the server's name did not resolve or the datagram \
             could not be sent)",
            access_log_dropped.clone(),
        );
        registry.register(
            "ssl_passthrough_connections",
            "TLS connections passed to a pod by SNI (ssl-passthrough and TLSRoutes: untouched, or after termination on a Terminate listener), by SNI host and result",
            ssl_passthrough.clone(),
        );
        registry.register(
            "rate_limited_requests",
            "Requests refused by a rate limit, by ingress and reason (limit_req: limit-rps or \
             limit-rpm, global_limit: the global per-client limit, limit_conn: limit-connections)",
            rate_limited.clone(),
        );
        registry.register(
            "rate_limit_store_up",
            "1 while the Redis store of the cluster-wide rate limits is connected; 0 when it is \
             down (limits are then counted per node, divided by the ready ingress nodes) or not \
             configured (--rate-limit-redis)",
            rate_limit_store_up.clone(),
        );
        registry.register(
            "rate_limit_fallback_decisions",
            "Rate-limit decisions taken on this node (limit / ready ingress nodes) because the \
             Redis store was down or did not answer in time",
            rate_limit_fallback_decisions.clone(),
        );
        registry.register(
            "rate_limit_nodes",
            "Ready ingress nodes the rate limits are divided by while the Redis store is down \
             (--rate-limit-cluster-nodes, else the ready endpoints of --ingress-service, else 1)",
            rate_limit_nodes.clone(),
        );
        registry.register(
            "unbuffered_requests",
            "Requests whose body was streamed to the pod although request buffering was on, \
             because the buffer budget was used up: budget=proxy (--request-buffer-total-bytes) \
             or connection (4 bodies of --request-buffer-bytes per connection)",
            unbuffered_requests.clone(),
        );
        registry.register(
            "request_buffer_bytes",
            "Request-body bytes held in memory by request buffering (at most \
             --request-buffer-total-bytes)",
            request_buffer_bytes.clone(),
        );
        registry.register(
            "config_reloads",
            "Snapshots applied to the proxy",
            config_reloads.clone(),
        );
        registry.register(
            "config_reload_seconds",
            "Time to compile and install a snapshot",
            config_reload_duration.clone(),
        );
        registry.register(
            "config_version",
            "Snapshot version being served",
            config_version.clone(),
        );
        Metrics {
            registry,
            requests,
            auth_refused,
            request_duration,
            upstream_duration,
            upstream_failures,
            upstream_in_flight,
            active_connections,
            rejected_connections,
            tls_handshakes,
            access_log_dropped,
            ssl_passthrough,
            rate_limited,
            rate_limit_store_up,
            rate_limit_fallback_decisions,
            rate_limit_nodes,
            unbuffered_requests,
            request_buffer_bytes,
            config_reloads,
            config_reload_duration,
            config_version,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            extra: ArcSwapOption::empty(),
            pages: ArcSwapOption::empty(),
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(extra) = self.extra.load().as_ref() {
            out.push_str(&extra());
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }

    /// Counts a connection closed on accept.
    pub fn record_refused(&self, listener: &'static str, refused: Refused) {
        self.rejected_connections
            .get_or_create(&RejectLabels {
                listener,
                reason: refused.label(),
            })
            .inc();
    }

    pub fn record_reload(&self, version: u64, took: Duration) {
        self.config_reloads.inc();
        self.config_reload_duration.observe(took.as_secs_f64());
        self.config_version.set(version as i64);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a connection in `active_connections` while alive.
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl ConnectionGuard {
    pub fn new(metrics: &Metrics, listener: &'static str) -> Self {
        let gauge = metrics
            .active_connections
            .get_or_create(&ListenerLabels { listener })
            .clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Statuses of one route whose `requests_total` series a [`RouteSeries`] keeps; a route
/// answering more distinct statuses looks the others up in the family.
const ROUTE_STATUS_SLOTS: usize = 4;

/// One route's series of `requests_total` and `request_duration_seconds`, kept with the
/// compiled route ([`super::router::CompiledRoute::series`]) so that a request counts without
/// hashing its three labels per family (issue 13: CPU per request). Each series is created
/// in its family when the route's first request ends, as a family lookup would have created
/// it, so the exposition is the same; families never drop a series, so a kept one stays
/// the family's.
#[derive(Debug)]
pub struct RouteSeries {
    labels: RouteLabels,
    duration: OnceLock<Histogram>,
    /// `requests_total` by status, the route's first statuses.
    by_status: [OnceLock<(u16, Counter)>; ROUTE_STATUS_SLOTS],
}

impl RouteSeries {
    pub fn new(labels: RouteLabels) -> Self {
        RouteSeries {
            labels,
            duration: OnceLock::new(),
            by_status: Default::default(),
        }
    }

    /// Whether these are the series of `ingress`, `host` and `path` (the very labels the
    /// route was compiled with: compared by address).
    pub fn is_for(&self, ingress: &Arc<String>, host: &Arc<String>, path: &Arc<String>) -> bool {
        Arc::ptr_eq(&self.labels.ingress, ingress)
            && Arc::ptr_eq(&self.labels.host, host)
            && Arc::ptr_eq(&self.labels.path, path)
    }

    /// Counts a request of the route answered with `status` that took `seconds`.
    pub fn observe(&self, m: &Metrics, status: u16, seconds: f64) {
        let labels = || RequestLabels {
            ingress: Arc::clone(&self.labels.ingress),
            host: Arc::clone(&self.labels.host),
            path: Arc::clone(&self.labels.path),
            status,
        };
        let counted = self.by_status.iter().any(|slot| {
            let (s, c) = slot.get_or_init(|| (status, m.requests.get_or_create(&labels()).clone()));
            *s == status && {
                c.inc();
                true
            }
        });
        if !counted {
            m.requests.get_or_create(&labels()).inc();
        }
        self.duration
            .get_or_init(|| m.request_duration.get_or_create(&self.labels).clone())
            .observe(seconds);
    }
}

/// One upstream's labels and series of `upstream_in_flight` and `upstream_duration_seconds`,
/// kept with its runtime ([`super::upstream::balance::UpstreamRuntime::series`]) as
/// [`RouteSeries`] are with a route, each series created in its family where a lookup would
/// have created it.
#[derive(Debug)]
pub struct UpstreamSeries {
    pub labels: UpstreamLabels,
    in_flight: OnceLock<Gauge>,
    duration: OnceLock<Histogram>,
}

impl UpstreamSeries {
    pub fn new(labels: UpstreamLabels) -> Self {
        UpstreamSeries {
            labels,
            in_flight: OnceLock::new(),
            duration: OnceLock::new(),
        }
    }

    /// The upstream's `upstream_in_flight`.
    pub fn in_flight(&self, m: &Metrics) -> &Gauge {
        self.in_flight
            .get_or_init(|| m.upstream_in_flight.get_or_create(&self.labels).clone())
    }

    /// The upstream's `upstream_duration_seconds`.
    pub fn duration(&self, m: &Metrics) -> &Histogram {
        self.duration
            .get_or_init(|| m.upstream_duration.get_or_create(&self.labels).clone())
    }
}

/// Counts one in a gauge while alive (a request in `upstream_in_flight`).
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The admin listener's protection, the proxy's own: the same header and idle timeouts (a
/// slowloris or an idle connection is closed), a total cap and a per-client-address cap.
pub struct AdminLimits {
    pub builder: Builder<TokioExecutor>,
    pub timeouts: ConnTimeouts,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl AdminLimits {
    /// The proxy's header and keep-alive timeouts and header limits; the admin caps of
    /// [`limits`].
    pub fn from_args(args: &ProxyArgs) -> Self {
        AdminLimits {
            builder: limits::server_builder(args, &crate::model::HeadBuffers::default()),
            timeouts: limits::conn_timeouts(args),
            max_connections: limits::ADMIN_MAX_CONNECTIONS,
            max_connections_per_client: limits::ADMIN_MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

/// Serves `/metrics`, `/healthz`, `/readyz` and the [`Metrics::pages`] until the task is
/// dropped.
pub async fn serve_admin(listener: TcpListener, metrics: Arc<Metrics>, limits: AdminLimits) {
    let m = Arc::clone(&metrics);
    serve_small(listener, metrics, limits, "admin", move |path| {
        admin_response(&m, path)
    })
    .await
}

/// Serves `respond(path)` on every request of every connection `listener` accepts, with the
/// admin listener's protections ([`AdminLimits`]), until the task is dropped. `name` labels
/// the connection and refusal metrics.
pub async fn serve_small<F>(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    limits: AdminLimits,
    name: &'static str,
    respond: F,
) where
    F: Fn(&str) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let respond = Arc::new(respond);
    let slots = ConnectionSlots::new(limits.max_connections, limits.max_connections_per_client);
    let builder = Arc::new(limits.builder);
    let timeouts = limits.timeouts;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                debug!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = match slots.try_take(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                metrics.record_refused(name, refused);
                continue;
            }
        };
        let stream = CountedStream::new(stream, slot, ConnectionGuard::new(&metrics, name));
        let respond = Arc::clone(&respond);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let progress = Progress::new();
            let requests = progress.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let request = requests.begin();
                let resp = respond(req.uri().path());
                async move { Ok::<_, Infallible>(request.hold(resp)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let ended = supervise(
                conn.as_mut(),
                |c| c.graceful_shutdown(),
                &progress,
                timeouts,
                std::future::pending(),
            )
            .await;
            match ended {
                Ended::Finished(Ok(())) => {}
                Ended::Finished(Err(e)) => {
                    debug!(listener = name, client = %peer, error = %e, "connection")
                }
                Ended::Dropped(why) => {
                    debug!(listener = name, client = %peer, ?why, "connection dropped")
                }
            }
        });
    }
}

fn admin_response(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz" | "/readyz")
        && let Some(page) = metrics.pages.load().as_ref().and_then(|pages| pages(path))
    {
        return page;
    }
    let (status, ctype, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => {
            if metrics.draining.load(Ordering::Relaxed) {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".to_string(),
                )
            } else if metrics.ready.load(Ordering::Relaxed) {
                (StatusCode::OK, "text/plain", "ready\n".to_string())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no configuration yet\n".to_string(),
                )
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// Bind helper so callers see the real port when they asked for port 0.
pub async fn bind_admin(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(s: &str) -> Arc<String> {
        Arc::new(s.to_string())
    }

    #[test]
    fn kept_series_are_the_familys_and_made_only_when_counted() {
        let m = Metrics::new();
        let route = RouteLabels {
            ingress: label("ns/web"),
            host: label("web.test"),
            path: label("/"),
        };
        let series = RouteSeries::new(route.clone());
        let up = UpstreamSeries::new(UpstreamLabels {
            upstream: label("ns/web:80"),
        });
        assert!(!m.encode().contains("ns/web"), "no series before a request");
        // More distinct statuses than the series keeps: the rest go through the family.
        let statuses = [200, 404, 200, 502, 503, 204, 301, 200];
        for status in statuses {
            series.observe(&m, status, 0.001);
        }
        up.in_flight(&m).inc();
        up.duration(&m).observe(0.002);
        for status in [200, 404, 502, 503, 204, 301] {
            let want = statuses.iter().filter(|&&s| s == status).count() as u64;
            let got = m
                .requests
                .get_or_create(&RequestLabels {
                    ingress: label("ns/web"),
                    host: label("web.test"),
                    path: label("/"),
                    status,
                })
                .get();
            assert_eq!(got, want, "status {status}");
        }
        let text = m.encode();
        assert!(
            text.contains(
                "xdp_ingress_request_duration_seconds_count{ingress=\"ns/web\",host=\"web.test\",path=\"/\"} 8"
            ),
            "{text}"
        );
        assert!(
            text.contains("xdp_ingress_upstream_in_flight{upstream=\"ns/web:80\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("xdp_ingress_upstream_response_seconds_count{upstream=\"ns/web:80\"} 1"),
            "{text}"
        );
        assert!(series.is_for(&route.ingress, &route.host, &route.path));
        assert!(!series.is_for(&label("ns/web"), &route.host, &route.path));
    }
}
