//! Prometheus metrics of the proxy and the admin endpoint serving them with `/healthz` and
//! `/readyz`. Other components (the XDP counters) can append their own exposition text.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub ingress: Arc<String>,
    pub host: Arc<String>,
    pub path: Arc<String>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub ingress: Arc<String>,
    pub host: Arc<String>,
    pub path: Arc<String>,
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
pub struct ResultLabels {
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

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Hist,
    pub upstream_duration: UpHist,
    pub upstream_failures: Family<UpstreamLabels, Counter>,
    pub upstream_in_flight: Family<UpstreamLabels, Gauge>,
    pub active_connections: Family<ListenerLabels, Gauge>,
    pub rejected_connections: Counter,
    pub tls_handshakes: Family<ResultLabels, Counter>,
    pub config_reloads: Counter,
    pub config_reload_duration: Histogram,
    pub config_version: Gauge,
    pub ready: AtomicBool,
    pub draining: AtomicBool,
    pub extra: ArcSwapOption<ExtraMetrics>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("xdp_ingress");
        let requests = Family::default();
        let request_duration = Hist::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_duration =
            UpHist::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_failures = Family::default();
        let upstream_in_flight = Family::default();
        let active_connections = Family::default();
        let rejected_connections = Counter::default();
        let tls_handshakes = Family::default();
        let config_reloads = Counter::default();
        let config_reload_duration = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        let config_version = Gauge::default();
        registry.register(
            "requests",
            "Requests by ingress, host, path and status",
            requests.clone(),
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
            "Connections closed on accept because of --max-connections",
            rejected_connections.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            tls_handshakes.clone(),
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
            request_duration,
            upstream_duration,
            upstream_failures,
            upstream_in_flight,
            active_connections,
            rejected_connections,
            tls_handshakes,
            config_reloads,
            config_reload_duration,
            config_version,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            extra: ArcSwapOption::empty(),
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

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve_admin(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move { Ok::<_, Infallible>(admin_response(&metrics, req.uri().path())) }
            });
            let res = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            if let Err(e) = res {
                debug!(error = %e, "admin connection");
            }
        });
    }
}

fn admin_response(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
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
