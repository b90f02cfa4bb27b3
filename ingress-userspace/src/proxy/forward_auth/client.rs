//! Sending one auth request (see the parent module for where it goes).
//!
//! - A Service the snapshot resolved: one of its endpoints (picked at random, the others tried
//!   in turn while connecting fails), over the upstream pool with the route's connect and send
//!   timeouts; `https` as to a pod (no certificate check, as ingress-nginx's `proxy_pass`).
//! - Otherwise the system's resolver: `http` over the upstream pool (each address in turn while
//!   connecting fails), `https` over a pooled hyper client whose rustls verifies the
//!   certificate against the webpki roots for the URL's host (SNI). nginx itself does not
//!   verify (`proxy_ssl_verify off`): an auth answer from an unverified host outside the cluster
//!   would decide who gets in.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, Response, uri::Scheme};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use super::Transport;
use crate::{
    model::{BackendProtocol, ForwardAuth},
    proxy::upstream::{ProxyBody, UpstreamBody, pool::UpstreamError},
};

/// Idle HTTPS connections kept per auth host, and for how long.
const HTTPS_IDLE_PER_HOST: usize = 32;
const HTTPS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// What is read of an auth response's body (so its connection can be reused), and for how long.
const DRAIN_BYTES: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Longest TCP connect of the HTTPS client: a connect the request gave up on (its
/// `proxy-read-timeout` passed) may finish in the background to fill the pool, never longer.
const HTTPS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AuthClient {
    https: Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>,
}

impl AuthClient {
    pub fn new() -> Self {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
            Err(_) => unreachable!("ring provider supports TLS 1.2 and 1.3"),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(HTTPS_CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        AuthClient {
            https: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(HTTPS_IDLE_TIMEOUT)
                .pool_max_idle_per_host(HTTPS_IDLE_PER_HOST)
                .build(connector),
        }
    }

    /// Sends the auth request (`req`: method, absolute URI and headers) and returns the
    /// status and headers of the answer; the body is read (bounded) in the background.
    pub async fn send(
        &self,
        auth: &ForwardAuth,
        req: Request<()>,
        t: &Transport<'_>,
    ) -> Result<super::Answer, String> {
        let (parts, ()) = req.into_parts();
        let https = parts.uri.scheme() == Some(&Scheme::HTTPS);
        let build = || {
            let mut r = Request::new(empty());
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = parts.uri.clone();
            *r.headers_mut() = parts.headers.clone();
            r
        };
        let protocol = if https {
            BackendProtocol::Https
        } else {
            BackendProtocol::Http
        };
        // The body is read to its end (bounded) on a task, so the connection can be reused.
        let head = if let Some(svc) = &auth.service {
            if svc.endpoints.is_empty() {
                return Err(format!(
                    "auth Service {} has no ready endpoint",
                    svc.service
                ));
            }
            let start = rand::random_range(0..svc.endpoints.len());
            let order =
                (0..svc.endpoints.len()).map(|i| svc.endpoints[(start + i) % svc.endpoints.len()]);
            drained(send_to_first(t, protocol, order, build).await?)
        } else if https {
            drained(
                self.https
                    .request(build())
                    .await
                    .map_err(|e| format!("auth request to {} failed: {e}", parts.uri))?,
            )
        } else {
            let host = parts.uri.host().ok_or("auth URL without host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = parts.uri.port_u16().unwrap_or(80);
            let addrs: Vec<SocketAddr> =
                tokio::time::timeout(t.connect_timeout, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| format!("resolving {host} timed out"))?
                    .map_err(|e| format!("resolving {host}: {e}"))?
                    .collect();
            drained(send_to_first(t, protocol, addrs.into_iter(), build).await?)
        };
        Ok(super::Answer {
            status: head.status,
            headers: head.headers,
        })
    }
}

impl AuthClient {
    /// Sends `req` (absolute `https://` URI) over the verifying HTTPS client and returns the
    /// answer's head; its body is read (bounded) in the background. For another sender of
    /// requests to URLs outside the cluster (`mirror-target`).
    pub async fn send_https(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<http::response::Parts, String> {
        let uri = req.uri().clone();
        self.https
            .request(req)
            .await
            .map(drained)
            .map_err(|e| format!("request to {uri} failed: {e}"))
    }
}

/// Sends `req` to `addr` and returns the answer's head; its body is read (bounded) in the
/// background so the connection can be reused.
pub async fn send_once(
    clients: &crate::proxy::upstream::Clients,
    protocol: BackendProtocol,
    addr: SocketAddr,
    req: Request<ProxyBody>,
) -> Result<http::response::Parts, String> {
    clients
        .send(protocol, addr, req)
        .await
        .map(drained)
        .map_err(|e| format!("request to {addr}: {e}"))
}

impl Default for AuthClient {
    fn default() -> Self {
        AuthClient::new()
    }
}

/// Sends to each address in turn until one takes the request (only connect failures move on:
/// a request that reached an auth service is never sent twice).
async fn send_to_first(
    t: &Transport<'_>,
    protocol: BackendProtocol,
    addrs: impl Iterator<Item = SocketAddr>,
    build: impl Fn() -> Request<ProxyBody>,
) -> Result<Response<UpstreamBody>, String> {
    let mut last = "no address".to_string();
    for addr in addrs {
        match t.clients.send(protocol, addr, build()).await {
            Ok(r) => return Ok(r),
            Err(e @ UpstreamError::Connect { .. }) => last = e.to_string(),
            Err(e) => return Err(format!("auth request to {addr}: {e}")),
        }
    }
    Err(last)
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

fn drained<B>(resp: Response<B>) -> http::response::Parts
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (head, body) = resp.into_parts();
    tokio::spawn(drain(body));
    head
}

async fn drain<B>(body: B)
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let _ = tokio::time::timeout(DRAIN_TIME, Limited::new(body, DRAIN_BYTES).collect()).await;
}
