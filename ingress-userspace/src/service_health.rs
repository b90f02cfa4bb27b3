//! Health check node ports of `externalTrafficPolicy: Local` Services the XDP path steers, as
//! kube-proxy serves them (pkg/proxy/healthcheck/service_health.go): one HTTP listener per
//! `spec.healthCheckNodePort` on every node address, answering any request with 200 while this
//! node has a ready local endpoint of the Service and 503 when it has none, so that external
//! load balancers stop sending traffic to a node that would drop it.
//!
//! [`ServiceHealthServer::apply`] follows snapshots: it opens listeners for new ports, closes
//! those no snapshot names any more and updates counts in place (no reopen, no lost check).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, atomic::Ordering},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};
use tracing::{info, warn};

use crate::{
    model::Snapshot,
    proxy::{
        ProxyArgs,
        metrics::{AdminLimits, Metrics, serve_small},
    },
};

/// What one health check node port reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    pub namespace: String,
    pub name: String,
    /// Ready endpoints of the Service on this node (the largest over its ports).
    pub local_endpoints: u32,
}

/// Health check node port -> what it reports, from the snapshot's Local L4 services.
/// Two Services never share a node port (the API server allocates them); should a manifest
/// say otherwise, the first by id keeps it.
pub fn desired(snapshot: &Snapshot) -> BTreeMap<u16, ServiceHealth> {
    let mut out: BTreeMap<u16, ServiceHealth> = BTreeMap::new();
    for svc in &snapshot.l4 {
        let Some(hc) = svc.health_check else { continue };
        let entry = out.entry(hc.node_port).or_insert_with(|| ServiceHealth {
            namespace: svc.service.namespace.clone(),
            name: svc.service.name.clone(),
            local_endpoints: 0,
        });
        if entry.namespace == svc.service.namespace && entry.name == svc.service.name {
            entry.local_endpoints = entry.local_endpoints.max(hc.local_endpoints);
        }
    }
    out
}

/// Addresses tried in order for a node port; the first that binds serves it.
pub type BindAddrs = Box<dyn Fn(u16) -> Vec<SocketAddr> + Send>;

/// Every address of the node, as kube-proxy: `[::]` (IPv4 too where dual-stack sockets
/// work), else `0.0.0.0` on nodes without IPv6.
pub fn all_addresses(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
    ]
}

struct Listener {
    health: Arc<ArcSwap<ServiceHealth>>,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Dropping the accept loop closes the socket; open connections end with it.
        self.task.abort();
    }
}

/// The daemon's health check node port listeners.
pub struct ServiceHealthServer {
    bind: BindAddrs,
    proxy_args: ProxyArgs,
    metrics: Arc<Metrics>,
    runtime: tokio::runtime::Handle,
    listeners: BTreeMap<u16, Listener>,
    /// Ports that failed to bind, warned about once; retried on every snapshot.
    failed: BTreeSet<u16>,
}

impl ServiceHealthServer {
    /// Must be called inside a Tokio runtime (listeners run on it). `proxy_args` gives the
    /// admin listener's protections (header and idle timeouts, connection caps).
    pub fn new(bind: BindAddrs, proxy_args: ProxyArgs, metrics: Arc<Metrics>) -> Self {
        ServiceHealthServer {
            bind,
            proxy_args,
            metrics,
            runtime: tokio::runtime::Handle::current(),
            listeners: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// Makes the listeners match `snapshot`. A port that cannot be bound is a warning; the
    /// others are served.
    pub fn apply(&mut self, snapshot: &Snapshot) {
        let want = desired(snapshot);
        self.listeners.retain(|port, _| want.contains_key(port));
        self.failed.retain(|port| want.contains_key(port));
        for (port, health) in want {
            if let Some(l) = self.listeners.get(&port) {
                if **l.health.load() != health {
                    l.health.store(Arc::new(health));
                }
                continue;
            }
            match self.open(port, health) {
                Ok(l) => {
                    info!(port, addr = %l.local_addr, "health check node port open");
                    self.failed.remove(&port);
                    self.listeners.insert(port, l);
                }
                Err(e) => {
                    if self.failed.insert(port) {
                        warn!(port, error = %e, "cannot open health check node port");
                    }
                }
            }
        }
    }

    /// Where `node_port` is served (`None`: not open).
    pub fn local_addr(&self, node_port: u16) -> Option<SocketAddr> {
        self.listeners.get(&node_port).map(|l| l.local_addr)
    }

    fn open(&self, port: u16, health: ServiceHealth) -> std::io::Result<Listener> {
        let mut last = None;
        let mut bound = None;
        for addr in (self.bind)(port) {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let std_listener = match bound {
            Some(l) => l,
            None => return Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrNotAvailable.into())),
        };
        std_listener.set_nonblocking(true)?;
        let local_addr = std_listener.local_addr()?;
        let _rt = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let health = Arc::new(ArcSwap::from_pointee(health));
        let reported = Arc::clone(&health);
        let metrics = Arc::clone(&self.metrics);
        let task = self.runtime.spawn(serve_small(
            listener,
            Arc::clone(&self.metrics),
            AdminLimits::from_args(&self.proxy_args),
            "healthcheck",
            move |_path| {
                // kube-proxy reports itself unhealthy while it shuts down; so does the node
                // whose proxy drains.
                let proxy_healthy = !metrics.draining.load(Ordering::Relaxed);
                response(&reported.load(), proxy_healthy)
            },
        ));
        Ok(Listener {
            health,
            local_addr,
            task,
        })
    }
}

/// kube-proxy's answer, any method and path: 200 with a local endpoint and a healthy proxy,
/// else 503; the JSON body and headers as service_health.go writes them.
fn response(h: &ServiceHealth, proxy_healthy: bool) -> Response<Full<Bytes>> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        service: Name<'a>,
        local_endpoints: u32,
        service_proxy_healthy: bool,
    }
    #[derive(serde::Serialize)]
    struct Name<'a> {
        namespace: &'a str,
        name: &'a str,
    }
    let body = Body {
        service: Name {
            namespace: &h.namespace,
            name: &h.name,
        },
        local_endpoints: h.local_endpoints,
        service_proxy_healthy: proxy_healthy,
    };
    let status = if h.local_endpoints > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-load-balancing-endpoint-weight", h.local_endpoints.into());
    resp
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::model::{Frontend, HealthCheck, L4Protocol, L4Service, ObjectKind, ObjectRef};

    const NODE_PORT: u16 = 32100;

    fn snapshot(local_endpoints: Option<u32>) -> Snapshot {
        let svc = |port: &str, count: u32| L4Service {
            id: format!("shop/web:{port}"),
            service: ObjectRef::new(ObjectKind::Service, "shop", "web"),
            protocol: L4Protocol::Tcp,
            frontends: vec![Frontend::NodePort(30080)],
            endpoints: vec![],
            client_ip_affinity: None,
            source_ranges: vec![],
            local_proxy: false,
            external_traffic_local: true,
            syn_rate_limit: None,
            health_check: Some(HealthCheck {
                node_port: NODE_PORT,
                local_endpoints: count,
            }),
            reject_weight: 0,
        };
        Snapshot {
            l4: local_endpoints
                .map(|n| vec![svc("http", n), svc("https", 0)])
                .unwrap_or_default(),
            ..Snapshot::default()
        }
    }

    /// Status code, headers (lower-case names) and body of `GET /any/path`.
    async fn get(addr: SocketAddr) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /any/path HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut raw = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.read_to_string(&mut raw),
        )
        .await
        .expect("answer in time")
        .expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        let status = head[9..12].parse().expect("status code");
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn health_check_node_port_follows_local_endpoints() {
        let metrics = Arc::new(Metrics::new());
        let mut server = ServiceHealthServer::new(
            Box::new(|_| vec![SocketAddr::from(([127, 0, 0, 1], 0))]),
            ProxyArgs::default(),
            metrics,
        );
        let body = |n: u32| {
            format!(
                r#"{{"service":{{"namespace":"shop","name":"web"}},"localEndpoints":{n},"serviceProxyHealthy":true}}"#
            )
        };

        server.apply(&snapshot(Some(2)));
        let addr = server.local_addr(NODE_PORT).expect("listening");
        let (status, head, got) = get(addr).await;
        assert_eq!(
            (status, got),
            (200, body(2)),
            "two local endpoints (largest port)"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(
            head.contains("x-load-balancing-endpoint-weight: 2"),
            "{head}"
        );

        server.apply(&snapshot(Some(0)));
        assert_eq!(
            server.local_addr(NODE_PORT),
            Some(addr),
            "updated, not reopened"
        );
        assert_eq!(get(addr).await.0, 503);
        assert_eq!(get(addr).await.2, body(0));

        server.apply(&snapshot(Some(1)));
        assert_eq!(server.local_addr(NODE_PORT), Some(addr));
        let (status, _, got) = get(addr).await;
        assert_eq!((status, got), (200, body(1)));

        // The Service is gone from the snapshot: the port closes.
        server.apply(&snapshot(None));
        assert_eq!(server.local_addr(NODE_PORT), None);
        tokio::task::yield_now().await;
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .expect("answer in time");
        assert!(refused.is_err(), "closed listener still accepts");
    }

    #[tokio::test]
    async fn a_port_that_cannot_bind_leaves_the_others_served() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken_addr = taken.local_addr().expect("addr");
        let mut server = ServiceHealthServer::new(
            Box::new(move |port| {
                if port == NODE_PORT {
                    vec![taken_addr]
                } else {
                    vec![SocketAddr::from(([127, 0, 0, 1], 0))]
                }
            }),
            ProxyArgs::default(),
            Arc::new(Metrics::new()),
        );
        let mut s = snapshot(Some(1));
        let mut other = s.l4[0].clone();
        other.id = "shop/api:http".into();
        other.service.name = "api".into();
        other.health_check = Some(HealthCheck {
            node_port: NODE_PORT + 1,
            local_endpoints: 1,
        });
        s.l4.push(other);
        server.apply(&s);
        assert_eq!(server.local_addr(NODE_PORT), None);
        let addr = server
            .local_addr(NODE_PORT + 1)
            .expect("the other port is served");
        assert_eq!(get(addr).await.0, 200);
    }
}
