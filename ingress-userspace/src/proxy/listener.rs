//! Accepting clients: plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge, told apart by
//! the connection preface) and HTTPS (rustls, ALPN `h2`/`http/1.1`). Each connection runs on
//! its own task with the configured limits; on shutdown, accepting stops and every connection
//! is asked to finish gracefully (HTTP/1 closes after the current response, HTTP/2 sends
//! GOAWAY) until the drain deadline.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::{
    Shared,
    forward::{ConnInfo, handle},
    limits::{Activity, IdleIo},
    metrics::{ConnectionGuard, ResultLabels},
    proxy_protocol,
};

/// Runs until `shutdown` resolves, then drains; returns when every connection is done or
/// the drain deadline passed.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    http: TcpListener,
    https: TcpListener,
    tls: TlsAcceptor,
    shutdown: impl Future<Output = ()>,
) {
    let max = shared.args.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, is_tls) = tokio::select! {
            _ = &mut shutdown => break,
            r = http.accept() => match r {
                Ok((s, p)) => (s, p, false),
                Err(e) => { accept_error(e).await; continue; }
            },
            r = https.accept() => match r {
                Ok((s, p)) => (s, p, true),
                Err(e) => { accept_error(e).await; continue; }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            shared.metrics.rejected_connections.inc();
            drop(stream);
            continue;
        };
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let Ok(proxied) = proxy_header(&shared, &mut stream, peer).await else {
                return;
            };
            if is_tls {
                serve_tls(shared, stream, peer, proxied, tls, stop).await;
            } else {
                let _guard = ConnectionGuard::new(&shared.metrics, "http");
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(peer);
                serve(
                    shared,
                    TokioIo::new(stream),
                    peer,
                    proxied,
                    local,
                    false,
                    stop,
                )
                .await;
            }
        });
    }
    info!("proxy draining");
    shared
        .metrics
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    drop((http, https));
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(shared.args.drain_timeout, permits.acquire_many(max as u32)).await;
    match drained {
        Ok(_) => info!("proxy drained"),
        Err(_) => warn!(
            open = max - permits.available_permits(),
            "drain deadline passed with connections open"
        ),
    }
}

/// With `use-proxy-protocol`, reads the PROXY header off a new connection (within the
/// client-header timeout) and returns the source it names; `Err`: the connection is to be
/// closed, as nginx closes one without a valid header. Without it, `Ok(None)`.
async fn proxy_header(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<Option<SocketAddr>, ()> {
    if !shared.trust.use_proxy_protocol {
        return Ok(None);
    }
    proxy_protocol::read_header(stream, shared.args.client_header_timeout)
        .await
        .map_err(|e| debug!(client = %peer, error = %e, "connection closed"))
}

async fn accept_error(e: std::io::Error) {
    // Out of file descriptors and similar: back off instead of spinning.
    debug!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn serve_tls(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    proxied: Option<SocketAddr>,
    tls: TlsAcceptor,
    stop: watch::Receiver<bool>,
) {
    let _guard = ConnectionGuard::new(&shared.metrics, "https");
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let hs = tokio::time::timeout(shared.args.client_header_timeout, tls.accept(stream)).await;
    let result = match &hs {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    shared
        .metrics
        .tls_handshakes
        .get_or_create(&ResultLabels { result })
        .inc();
    match hs {
        Ok(Ok(s)) => serve(shared, TokioIo::new(s), peer, proxied, local, true, stop).await,
        Ok(Err(e)) => debug!(client = %peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(client = %peer, "TLS handshake timed out"),
    }
}

async fn serve<S>(
    shared: Arc<Shared>,
    io: TokioIo<S>,
    client: SocketAddr,
    proxied: Option<SocketAddr>,
    local: SocketAddr,
    tls: bool,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_info = Arc::new(ConnInfo::new(&shared.trust, client, proxied, local, tls));
    let activity = Activity::new();
    let io = IdleIo::new(io, activity.clone());
    let svc_shared = Arc::clone(&shared);
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        handle(Arc::clone(&svc_shared), Arc::clone(&conn_info), req)
    });
    let conn = shared.builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let idle = shared.args.keepalive_timeout;
    let mut closing = *stop.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let wait = idle
            .saturating_sub(activity.idle_for())
            .max(Duration::from_millis(50));
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(client = %client, error = %e, "connection ended with error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(wait), if !closing => {
                if activity.idle_for() >= idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
