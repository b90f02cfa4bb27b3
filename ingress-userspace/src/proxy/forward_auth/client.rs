//! Sending one request to a URL an annotation names (`auth-url`, `mirror-target`; see the
//! parent module for where an auth request goes).
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
use http::{Request, Response, Uri, uri::Scheme};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use super::Transport;
use crate::{
    model::{AuthService, BackendProtocol, ForwardAuth},
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
        let build = || {
            let mut r = Request::new(empty());
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = parts.uri.clone();
            *r.headers_mut() = parts.headers.clone();
            Some(r)
        };
        let head = self
            .send_to_url("auth", auth.service.as_ref(), &parts.uri, t, build)
            .await?;
        Ok(super::Answer {
            status: head.status,
            headers: head.headers,
        })
    }

    /// Sends a request to `uri` (absolute) as the module docs say: to `service`'s endpoints
    /// when the snapshot resolved the URL to a Service, else through the resolver (`http`) or
    /// the verifying client (`https`). `build` gives the request to send, once per address
    /// tried; `None` when it cannot be rebuilt (a streamed body), and then only the first
    /// address is tried. Returns the answer's head; its body is read (bounded) in the
    /// background so the connection can be reused. `what` names the sender in errors
    /// (`auth`, `mirror`).
    pub async fn send_to_url(
        &self,
        what: &str,
        service: Option<&AuthService>,
        uri: &Uri,
        t: &Transport<'_>,
        mut build: impl FnMut() -> Option<Request<ProxyBody>>,
    ) -> Result<http::response::Parts, String> {
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let protocol = if https {
            BackendProtocol::Https
        } else {
            BackendProtocol::Http
        };
        Ok(if let Some(svc) = service {
            if svc.endpoints.is_empty() {
                return Err(format!(
                    "{what} Service {} has no ready endpoint",
                    svc.service
                ));
            }
            let start = rand::random_range(0..svc.endpoints.len());
            let order =
                (0..svc.endpoints.len()).map(|i| svc.endpoints[(start + i) % svc.endpoints.len()]);
            drained(send_to_first(what, t, protocol, order, build).await?)
        } else if https {
            let req = build().ok_or_else(|| format!("{what} request to {uri}: no request"))?;
            drained(
                self.https
                    .request(req)
                    .await
                    .map_err(|e| format!("{what} request to {uri} failed: {e}"))?,
            )
        } else {
            let host = uri
                .host()
                .ok_or_else(|| format!("{what} URL without host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(80);
            let addrs: Vec<SocketAddr> =
                tokio::time::timeout(t.connect_timeout, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| format!("resolving {host} timed out"))?
                    .map_err(|e| format!("resolving {host}: {e}"))?
                    .collect();
            drained(send_to_first(what, t, protocol, addrs.into_iter(), build).await?)
        })
    }
}

impl Default for AuthClient {
    fn default() -> Self {
        AuthClient::new()
    }
}

/// Sends to each address in turn until one takes the request (only connect failures move on:
/// a request that reached its server is never sent twice; nor is one `build` cannot rebuild).
async fn send_to_first(
    what: &str,
    t: &Transport<'_>,
    protocol: BackendProtocol,
    addrs: impl Iterator<Item = SocketAddr>,
    mut build: impl FnMut() -> Option<Request<ProxyBody>>,
) -> Result<Response<UpstreamBody>, String> {
    let mut last = "no address".to_string();
    for addr in addrs {
        let Some(req) = build() else { break };
        match t.clients.send(protocol, addr, req).await {
            Ok(r) => return Ok(r),
            Err(e @ UpstreamError::Connect { .. }) => last = e.to_string(),
            Err(e) => return Err(format!("{what} request to {addr}: {e}")),
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
