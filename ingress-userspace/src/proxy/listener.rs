//! Accepting clients: plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge, told apart by
//! the connection preface) and HTTPS (rustls, ALPN `h2`/`http/1.1`). Each connection runs on
//! its own task with the configured limits: a total and a per-client connection cap taken on
//! accept ([`super::slots`]), shared by every listener, and time limits counted in requests
//! ([`super::liveness`]). Each listening socket has its own accept loop
//! ([`super::listener_set`] opens and closes them). On shutdown, accepting stops and every
//! connection is asked to finish gracefully (HTTP/1 closes after the current response,
//! HTTP/2 sends GOAWAY) until the drain deadline; a Gateway listener closed while the proxy
//! runs does the same for its own connections only.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info, warn};

use super::{
    Shared,
    client_cert::{self, TlsClient, frontend::Handshake},
    forward::{ConnInfo, handle, unparsed},
    limits,
    liveness::{Ended, Progress, supervise},
    metrics::{ConnectionGuard, ResultLabels},
    passthrough::{self, Hello},
    proxy_protocol,
    slots::{ConnectionSlots, CountedStream, Refused},
};

/// Which listener a connection came through (routing looks at it: Gateway routes are served
/// on their listeners' ports only, Ingress routes on the proxy's own listeners only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerId {
    /// The port the listening socket is bound to.
    pub port: u16,
    /// Opened for Gateway listeners, not one of the proxy's own HTTP and HTTPS listeners.
    pub gateway: bool,
}

/// What every listener's accept loop shares: the connection caps and the proxy's shutdown.
pub(crate) struct Accepting {
    pub shared: Arc<Shared>,
    /// Caps, held by each socket for its whole life (see `slots`).
    pub slots: Arc<ConnectionSlots>,
    /// Connections still in hyper, which the drain waits for (upgraded ones have left).
    pub serving: Arc<Semaphore>,
    /// Flips to `true` when the proxy shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl Accepting {
    pub fn new(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) -> Self {
        let max = shared.args.max_connections.max(1);
        Accepting {
            slots: ConnectionSlots::new(max, limits::connections_per_client(&shared.args)),
            serving: Arc::new(Semaphore::new(max)),
            shared,
            shutdown,
        }
    }

    /// After shutdown: returns when every connection is done or the drain deadline passed.
    pub async fn drain(&self) {
        let max = self.shared.args.max_connections.max(1);
        info!("proxy draining");
        self.shared
            .metrics
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let drained = tokio::time::timeout(
            self.shared.args.drain_timeout,
            self.serving.acquire_many(max as u32),
        )
        .await;
        match drained {
            Ok(_) => info!("proxy drained"),
            Err(_) => warn!(
                open = max - self.serving.available_permits(),
                "drain deadline passed with connections open"
            ),
        }
    }
}

/// Accepts on `listener` until the proxy shuts down or `close` resolves, then closes the
/// socket and asks each of its connections to finish gracefully (HTTP/1 closes after the
/// current response, HTTP/2 sends GOAWAY); other listeners' connections are not touched.
/// `https` says what new connections speak (a Gateway port may change protocol in place).
pub(crate) async fn accept_loop(
    acc: Arc<Accepting>,
    listener: TcpListener,
    id: ListenerId,
    https: Arc<AtomicBool>,
    close: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = acc.shutdown.clone();
    let shutdown = async move {
        // A dropped sender means the proxy is gone: stop too.
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(close, shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut close => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => { accept_error(e).await; continue; }
            },
        };
        let label = if https.load(Ordering::Relaxed) {
            "https"
        } else {
            "http"
        };
        let shared = &acc.shared;
        // Keyed on the TCP peer, before any byte is read. A closing connection gives back
        // its serving permit just after its slot, so that one can briefly be the scarcer.
        let taken = acc.slots.try_take(peer.ip()).and_then(|slot| {
            let permit = Arc::clone(&acc.serving)
                .try_acquire_owned()
                .map_err(|_| Refused::Total)?;
            Ok((slot, permit))
        });
        let (slot, permit) = match taken {
            Ok(taken) => taken,
            Err(refused) => {
                shared.metrics.record_refused(label, refused);
                debug!(client = %peer, reason = refused.label(), "connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let stream = CountedStream::new(stream, slot, ConnectionGuard::new(&shared.metrics, label));
        let shared = Arc::clone(shared);
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let serving = permit;
            let mut stream = stream;
            let Ok(proxied) = proxy_header(&shared, label, &mut stream, peer).await else {
                return;
            };
            let at = Accepted {
                peer,
                proxied,
                local,
                listener: id,
            };
            if label == "https" {
                serve_tls(shared, stream, at, stop, serving).await;
            } else {
                let _serving = serving;
                serve(shared, stream, at, None, stop).await;
            }
        });
    }
    drop(listener);
    debug!(port = id.port, "listener closed, its connections drain");
    let _ = stop_tx.send(true);
}

/// Where a connection came from and through which listener.
#[derive(Clone, Copy, Debug)]
struct Accepted {
    peer: SocketAddr,
    /// The client and destination a PROXY protocol header named.
    proxied: Option<proxy_protocol::Proxied>,
    local: SocketAddr,
    listener: ListenerId,
}

/// With `use-proxy-protocol`, reads the PROXY header and returns the client it names; a
/// connection without a valid header is closed, as nginx does. The header's time limit is
/// ingress-nginx's: `proxy-protocol-header-timeout` on the HTTPS port while it reads
/// ClientHellos for ssl-passthrough (its Go TLS proxy's `ReadHeaderTimeout`), else the
/// client-header timeout (nginx reads the header of its own listeners within
/// `client_header_timeout`).
/// A client named by a trusted balancer takes over the connection's per-client slot, so the
/// cap counts clients, not the balancer.
async fn proxy_header(
    shared: &Shared,
    listener: &'static str,
    stream: &mut CountedStream<TcpStream>,
    peer: SocketAddr,
) -> Result<Option<proxy_protocol::Proxied>, ()> {
    let live = shared.live.load_full();
    if !live.trust.use_proxy_protocol {
        return Ok(None);
    }
    let timeout = if listener == "https" && !shared.runtime.load().sni.is_empty() {
        live.proxy_protocol_header_timeout
    } else {
        live.client_header_timeout
    };
    let proxied = proxy_protocol::read_header(stream.get_mut(), timeout)
        .await
        .map_err(|e| debug!(client = %peer, error = %e, "connection closed"))?;
    if let Some(p) = proxied
        && live.trust.trusts(peer.ip().to_canonical())
        && let Err(refused) = stream.move_to_client(p.source.ip())
    {
        shared.metrics.record_refused(listener, refused);
        debug!(client = %p.source, reason = refused.label(), "connection refused");
        return Err(());
    }
    Ok(proxied)
}

async fn accept_error(e: std::io::Error) {
    // Out of file descriptors and similar: back off instead of spinning.
    debug!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// The ClientHello and the handshake share one deadline, the client-header timeout; an
/// `ssl-passthrough` connection leaves here for [`passthrough::pass`] (and, as an upgraded
/// connection does, gives back its `serving` permit: the drain does not wait for it). The
/// configuration is chosen by the ClientHello's SNI: `default`, or that of a host that asks for
/// client certificates ([`client_cert::handshake_config`]), with the same certificates.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    shared: Arc<Shared>,
    mut stream: CountedStream<TcpStream>,
    at: Accepted,
    stop: watch::Receiver<bool>,
    serving: OwnedSemaphorePermit,
) {
    let peer = at.peer;
    let header_timeout = shared.live.load().client_header_timeout;
    let now = tokio::time::Instant::now();
    // Checked: the timeout is configuration; one past what `Instant` holds is a day here.
    let deadline = now
        .checked_add(header_timeout)
        .unwrap_or(now + Duration::from_secs(86_400));
    let handshake = |result| {
        shared
            .metrics
            .tls_handshakes
            .get_or_create(&ResultLabels { result })
            .inc()
    };
    let mut hello = Vec::new();
    let classified = passthrough::classify(
        &shared,
        &mut stream,
        &mut hello,
        deadline,
        at.local.ip(),
        at.listener,
    );
    // A TLSRoute on a `tls.mode: Terminate` listener: terminated here, then passed.
    let mut terminated_to = None;
    match classified.await {
        Hello::Pass {
            host,
            upstream,
            terminate: false,
        } => {
            drop(serving);
            passthrough::pass(&shared, stream, peer, hello, host, upstream).await;
            return;
        }
        Hello::Pass {
            host,
            upstream,
            terminate: true,
        } => terminated_to = Some((host, upstream)),
        Hello::Closed { timed_out } => {
            handshake(if timed_out { "timeout" } else { "error" });
            debug!(client = %peer, timed_out, "connection closed before its ClientHello");
            return;
        }
        Hello::Refused { host } => {
            debug!(client = %peer, %host, "TLS passthrough listener without a route for the name; closed");
            shared
                .metrics
                .ssl_passthrough
                .get_or_create(&crate::proxy::metrics::PassthroughLabels {
                    host,
                    result: "no_route",
                })
                .inc();
            return;
        }
        Hello::Terminate => {}
    }
    if hello.is_empty() {
        // Nothing read yet (no passthrough host): the first byte tells TLS from plain HTTP.
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, stream.read(&mut first)).await {
            Ok(Ok(1)) => hello.push(first[0]),
            r => {
                handshake(if r.is_err() { "timeout" } else { "error" });
                debug!(client = %peer, "connection closed before its ClientHello");
                return;
            }
        }
    }
    if plain_http(&hello) {
        debug!(client = %peer, "plain HTTP on the HTTPS port: 400");
        let answer = super::forward::plain_http_on_https(&shared, peer.ip());
        let _ = tokio::time::timeout_at(deadline, async {
            stream.write_all(&answer).await?;
            stream.shutdown().await
        })
        .await;
        return;
    }
    let _serving = serving;
    let stream = passthrough::Replay::new(hello, stream);
    let handshake_with_config = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let sni = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        let rt = shared.runtime.load();
        let handshakes = shared.handshakes.load_full();
        let (vhost, config) = client_cert::handshake_config(
            &rt.routes,
            &rt.client_auth,
            &shared.certs,
            sni.as_deref(),
            &handshakes,
        );
        // On a Gateway's address, its own listeners' certificates.
        let local = at.local.ip();
        let claimed = shared.certs.has_address(local);
        // `ssl-reject-handshake`: nginx's default server refuses a name no server has
        // (`ssl_reject_handshake on`), a ClientHello without SNI included.
        if handshakes.settings.reject_unknown_names
            && vhost.is_none()
            && !shared.certs.names(local, sni.as_deref())
        {
            let refused = start.into_stream(Arc::clone(&handshakes.refuse)).await;
            return Err(refused.err().unwrap_or_else(|| {
                std::io::Error::other(
                    "ssl-reject-handshake: a handshake completed without a certificate",
                )
            }));
        }
        // A Gateway listener that validates client certificates decides in the handshake.
        let config = match (rt.frontend_validation).handshake(
            &rt.misdirected,
            at.local,
            sni.as_deref(),
            &shared.certs,
            &handshakes,
        ) {
            Some(Handshake::Config(c)) => c,
            Some(Handshake::Refuse) => {
                return Err(std::io::Error::other(
                    "the listener validates client certificates and has no usable CA",
                ));
            }
            None => config,
        };
        drop(rt);
        let config = if claimed {
            crate::proxy::tls::AtAddress::config(&shared.certs, local, &config)
        } else {
            config
        };
        // Plain bytes go to the backend: no HTTP protocol is negotiated for them.
        let config = if terminated_to.is_some() {
            let mut c = (*config).clone();
            c.alpn_protocols.clear();
            Arc::new(c)
        } else {
            config
        };
        let s = start.into_stream(config).await?;
        let client = TlsClient::new(vhost, s.get_ref().1.peer_certificates(), sni);
        Ok::<_, std::io::Error>((s, client))
    };
    let hs = tokio::time::timeout_at(deadline, handshake_with_config).await;
    handshake(match &hs {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    });
    match hs {
        Ok(Ok((s, _))) if terminated_to.is_some() => {
            let Some((host, upstream)) = terminated_to else {
                return;
            };
            // As a passed connection, it does not hold up a drain.
            drop(_serving);
            passthrough::pass(&shared, s, peer, Vec::new(), host, upstream).await;
        }
        Ok(Ok((s, client))) => serve(shared, s, at, Some(client), stop).await,
        Ok(Err(e)) => debug!(client = %peer, error = %e, "TLS handshake failed"),
        Err(_) => debug!(client = %peer, "TLS handshake timed out"),
    }
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// With `use-http2: "false"`: the connection's first bytes, read up to where they stop
/// looking like the HTTP/2 preface, to be replayed to HTTP/1.1; `None` when they are the
/// preface (answered 505 and closed, as nginx without `http2 on` answers the preface's
/// `PRI * HTTP/2.0` request line), or the client closed or sent nothing within `timeout`.
async fn without_h2_preface<S>(io: &mut S, timeout: Duration) -> Option<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; H2_PREFACE.len()];
    let read = async {
        while head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&head) {
            let n = io
                .read(&mut buf[..H2_PREFACE.len() - head.len()])
                .await
                .ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(timeout, read).await.ok()??;
    if head != H2_PREFACE {
        return Some(head);
    }
    let answer = b"HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let _ = tokio::time::timeout(timeout, io.write_all(answer)).await;
    None
}

/// `head` and what one read of `io` adds to it (a client's first request head normally
/// arrives whole in one read); `None` when the client closes, fails or sends nothing by
/// `deadline` (the first request's deadline, which the connection would be closed at anyway).
async fn first_bytes<S>(
    io: &mut S,
    mut head: Vec<u8>,
    deadline: tokio::time::Instant,
) -> Option<Vec<u8>>
where
    S: AsyncRead + Unpin,
{
    // Read into the Vec's spare room: a buffer on the stack would weigh on the connection's
    // future for its whole life.
    head.reserve(4096);
    match tokio::time::timeout_at(deadline, io.read_buf(&mut head)).await {
        Ok(Ok(n)) if n > 0 => Some(head),
        _ => None,
    }
}

/// Whether the first bytes on the HTTPS port are an HTTP/1 request rather than TLS: a TLS
/// record starts with its content type (22, a handshake; SSLv2's hello with a length whose
/// top bit is set), an HTTP request with its method, a token of ASCII letters.
fn plain_http(first: &[u8]) -> bool {
    first.first().is_some_and(u8::is_ascii_uppercase)
}

/// Serves one connection until it ends, is closed for lack of progress (see
/// [`super::liveness`]) or the proxy drains.
async fn serve<S>(
    shared: Arc<Shared>,
    mut io: S,
    at: Accepted,
    tls: Option<TlsClient>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = tokio::time::Instant::now();
    let live = shared.live.load_full();
    let client = at.peer;
    // hyper's protocol detection serves HTTP/2 to whoever sends its preface, whatever ALPN
    // said, so `use-http2: "false"` is enforced here.
    let head = match live.settings.tls.http2 {
        true => Vec::new(),
        false => match without_h2_preface(&mut io, live.client_header_timeout).await {
            Some(head) => head,
            None => {
                debug!(client = %client, "HTTP/2 preface or nothing with use-http2 off; closed");
                return;
            }
        },
    };
    // The first head's line count picks hyper's parser (`limits::ServerBuilders`): what the
    // client sent first is read here, within the first request's time, and replayed.
    let mut timeouts = live.conn_timeouts;
    let Some(head) = first_bytes(&mut io, head, started + timeouts.first_request).await else {
        debug!(client = %client, "closed or silent before its first request");
        return;
    };
    timeouts.first_request = timeouts.first_request.saturating_sub(started.elapsed());
    let builder = live.builders.for_first_bytes(&head);
    let io = TokioIo::new(passthrough::Replay::new(head, io));
    let conn_info = Arc::new(ConnInfo::new(
        &live.trust,
        client,
        at.proxied,
        at.local,
        tls,
        at.listener,
        shared.args.request_buffer_bytes,
    ));
    // For a request hyper refuses before the service sees it (`forward::unparsed`).
    let conn_for_errors = Arc::clone(&conn_info);
    let progress = Progress::with_request_limit(live.keepalive_requests);
    let requests = progress.clone();
    let svc_shared = Arc::clone(&shared);
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        // In progress from here until the response body is done, or the client resets it.
        let request = requests.begin();
        // The last request an HTTP/1 connection may carry is answered with `Connection:
        // close` (hyper then closes after it), as nginx's `keepalive_requests`; HTTP/2 gets
        // GOAWAY from the supervisor instead.
        let close = request.is_last() && req.version() < http::Version::HTTP_2;
        // Boxed: the request's state machine is kilobytes, and hyper moves the service future
        // (into its dispatcher; for HTTP/2 into a spawned task): `perf` showed those copies.
        let resp = Box::pin(handle(Arc::clone(&svc_shared), Arc::clone(&conn_info), req));
        async move {
            let mut resp = resp.await?;
            if close {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(request.hold(resp))
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let draining = async move {
        // A dropped sender means the proxy is gone: drain too.
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let ended = supervise(
        conn.as_mut(),
        |c| c.graceful_shutdown(),
        &progress,
        timeouts,
        draining,
    )
    .await;
    match ended {
        Ended::Finished(Ok(())) => {}
        Ended::Finished(Err(e)) => {
            unparsed(&shared, &conn_for_errors, &*e);
            debug!(client = %client, error = %e, "connection ended with error")
        }
        Ended::Dropped(why) => debug!(client = %client, ?why, "connection dropped"),
    }
}
