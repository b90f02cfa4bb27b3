//! SSL passthrough (ingress-nginx's `ssl-passthrough` with `--enable-ssl-passthrough`; user
//! guide "TLS/HTTPS", "SSL Passthrough"; and Gateway API TLSRoutes on `TLS` passthrough
//! listeners): on the HTTPS port and the Gateway TLS ports, while the snapshot names any
//! passthrough host, the ClientHello is read first; a connection whose SNI names such a host
//! ([`super::sni`]) is passed, bytes untouched, to one of the pods behind it, which terminates
//! TLS itself (or, for an ExternalName Service, to an address its name resolves to when the
//! connection comes). A name of a Gateway passthrough listener that no TLSRoute serves is closed, as
//! is anything not passed on a port of passthrough listeners only.
//! Every other connection (another name, no SNI, not TLS) is replayed into the normal TLS
//! termination from its first byte, as ingress-nginx hands those to nginx.
//!
//! Bounds: the ClientHello must arrive within the client-header timeout, the same deadline as
//! the handshake it precedes (a slow ClientHello is closed as a slow handshake is), and within
//! [`MAX_HELLO_BYTES`]. With `use-proxy-protocol` the PROXY header was read before this; as
//! ingress-nginx (`pkg/tcpproxy`, `ProxyProtocol: false` for passthrough servers) the pod gets
//! no PROXY header. A passed connection is closed after [`IDLE_TIMEOUT`] without a byte in
//! either direction.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::HeaderMap;
use rustls::server::Acceptor;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    time::Instant,
};
use tracing::debug;

use crate::model::nginx_var::{Var, VarSource, push_binary_addr};

use super::{
    Shared,
    listener::ListenerId,
    metrics::PassthroughLabels,
    sni::Decision,
    tunnel,
    upstream::{UpstreamRuntime, balance::PickInput, health::now_ms},
};

/// Largest ClientHello read before deciding: rustls takes handshake messages of up to
/// 2^16 - 1 bytes after their 4-byte header, carried in records of up to 2^14 bytes behind
/// 5-byte headers (RFC 8446 section 5.1), so at most 5 records.
pub const MAX_HELLO_BYTES: usize = 4 + 0xffff + 5 * 5;

/// Idle time after which a passed connection is closed: ingress-nginx's `proxy-stream-timeout`
/// default for the TCP streams it proxies (600 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Endpoints tried per connection when connecting fails (each bounded by
/// `--proxy-connect-timeout`).
const CONNECT_TRIES: usize = 3;

/// What the ClientHello says.
pub enum Hello {
    /// SNI names a passthrough host: pass to this upstream (`terminate`: once TLS is
    /// terminated here, the plain bytes).
    Pass {
        host: Arc<String>,
        upstream: Arc<UpstreamRuntime>,
        terminate: bool,
    },
    /// Terminate here (other name, no SNI, not a ClientHello: rustls reports the error).
    Terminate,
    /// SNI names a Gateway passthrough listener's host that no TLSRoute serves: closed
    /// (Gateway API), nothing terminated.
    Refused { host: Arc<String> },
    /// The client closed, stalled past the deadline, or sent more than [`MAX_HELLO_BYTES`]
    /// without completing a ClientHello.
    Closed { timed_out: bool },
}

/// Reads the ClientHello from `io` (recording every byte into `seen`) until `deadline`, and
/// says where the connection goes (on the local address `local` through `listener`: a
/// Gateway's own table there, a Gateway port's own table). Reads nothing when the snapshot
/// has no passthrough host.
pub(crate) async fn classify<S>(
    shared: &Shared,
    io: &mut S,
    seen: &mut Vec<u8>,
    deadline: Instant,
    local: IpAddr,
    listener: ListenerId,
) -> Hello
where
    S: AsyncRead + Unpin,
{
    if shared.runtime.load().sni.is_empty() {
        return Hello::Terminate;
    }
    // What is not a ClientHello naming a host: terminated, or closed on a port of
    // passthrough listeners only.
    let nameless = || match shared.runtime.load().sni.decide_at(local, listener, None) {
        Decision::Close { label } => Hello::Refused { host: label },
        _ => Hello::Terminate,
    };
    let mut acceptor = Acceptor::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let room = MAX_HELLO_BYTES.saturating_sub(seen.len()).min(buf.len());
        if room == 0 {
            return Hello::Closed { timed_out: false };
        }
        let n = match tokio::time::timeout_at(deadline, io.read(&mut buf[..room])).await {
            Err(_) => return Hello::Closed { timed_out: true },
            Ok(Err(_)) | Ok(Ok(0)) => return Hello::Closed { timed_out: false },
            Ok(Ok(n)) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match acceptor.read_tls(&mut rest) {
                Ok(0) | Err(_) => return nameless(),
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Err(_) => return nameless(),
            Ok(Some(accepted)) => {
                // RFC 6066 section 3: host names compare without regard to case.
                let Some(name) = accepted
                    .client_hello()
                    .server_name()
                    .map(str::to_ascii_lowercase)
                else {
                    return nameless();
                };
                // The runtime as of now: a snapshot applied while the hello trickled in counts.
                let rt = shared.runtime.load();
                return match rt.sni.decide_at(local, listener, Some(&name)) {
                    Decision::Pass {
                        label,
                        upstream,
                        terminate,
                    } => Hello::Pass {
                        host: label,
                        upstream,
                        terminate,
                    },
                    Decision::Close { label } => Hello::Refused { host: label },
                    Decision::Terminate => Hello::Terminate,
                };
            }
        }
    }
}

/// Connects to an endpoint of `upstream` (round robin over ready ones, terminating ones only
/// when none is ready, up to [`CONNECT_TRIES`] endpoints), sends `hello` and splices both ways
/// until either side closes or [`IDLE_TIMEOUT`] passes idle.
pub(crate) async fn pass<S>(
    shared: &Shared,
    client: S,
    peer: SocketAddr,
    hello: Vec<u8>,
    host: Arc<String>,
    upstream: Arc<UpstreamRuntime>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let count = |result: &'static str| {
        shared
            .metrics
            .ssl_passthrough
            .get_or_create(&PassthroughLabels {
                host: Arc::clone(&host),
                result,
            })
            .inc();
    };
    // An ExternalName Service: the endpoints are the addresses its name resolves to now, as
    // for a request ([`super::upstream::external_name`]).
    let upstream = match &upstream.external {
        None => upstream,
        Some(r) => match r.resolve(&upstream).await {
            Ok(rt) => rt,
            Err(why) => {
                count("unresolved");
                debug!(client = %peer, %host, error = %why, "ssl-passthrough: name not resolved; closing");
                return;
            }
        },
    };
    let Some(pod) = connect(shared, &upstream, peer).await else {
        count(if upstream.slots.is_empty() {
            "no_endpoint"
        } else {
            "connect_failed"
        });
        debug!(client = %peer, %host, "ssl-passthrough: no endpoint reachable; closing");
        return;
    };
    // A TLSRoute terminated here whose Service port has a BackendTLSPolicy: TLS again to
    // the pod, verified as the policy says (only such routes' upstreams carry one).
    let end = match upstream.tls.as_deref() {
        None => {
            let mut pod = pod;
            if let Err(e) = pod.write_all(&hello).await {
                count("connect_failed");
                debug!(client = %peer, %host, error = %e, "ssl-passthrough: endpoint closed");
                return;
            }
            count("passed");
            tunnel::splice(client, pod, IDLE_TIMEOUT).await
        }
        Some(Err(why)) => {
            count("tls_failed");
            debug!(client = %peer, %host, error = %why, "TLSRoute: the backend's TLS cannot be set up");
            return;
        }
        Some(Ok(v)) => {
            let tls = v.bytes.connect(v.name.clone(), pod);
            let pod = match tokio::time::timeout(shared.args.proxy_connect_timeout, tls).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    count("tls_failed");
                    debug!(client = %peer, %host, error = %e, "TLSRoute: TLS to the backend failed");
                    return;
                }
                Err(_) => {
                    count("tls_failed");
                    debug!(client = %peer, %host, "TLSRoute: TLS to the backend timed out");
                    return;
                }
            };
            // Terminated here: no ClientHello of the client's to replay.
            count("passed");
            tunnel::splice(client, pod, IDLE_TIMEOUT).await
        }
    };
    if end == tunnel::End::Idle {
        debug!(client = %peer, %host, "ssl-passthrough connection closed after idle timeout");
    }
}

/// An `upstream-hash-by` key a TLS connection has: only the client address variables are
/// known without a request; a text naming any other variable is not hashed (round robin),
/// rather than sending every connection to the one endpoint of its empty expansion.
fn peer_hash_key(upstream: &UpstreamRuntime, peer: IpAddr) -> Option<String> {
    struct Peer(IpAddr);
    impl VarSource for Peer {
        fn push(&self, var: &Var, out: &mut String) {
            match var {
                Var::RemoteAddr => out.push_str(&self.0.to_string()),
                Var::BinaryRemoteAddr => push_binary_addr(self.0, out),
                _ => {}
            }
        }
    }
    let by = upstream.spec.load_balancing.hash_by()?;
    by.vars()
        .all(|v| matches!(v, Var::RemoteAddr | Var::BinaryRemoteAddr))
        .then(|| by.expand(&Peer(peer)))
}

async fn connect(
    shared: &Shared,
    upstream: &UpstreamRuntime,
    peer: SocketAddr,
) -> Option<TcpStream> {
    let headers = HeaderMap::new();
    let hash_key = peer_hash_key(upstream, peer.ip());
    let mut tried = Vec::new();
    while tried.len() < CONNECT_TRIES {
        let pick = upstream.pick(&PickInput {
            headers: &headers,
            hash_key: hash_key.as_deref(),
            tried: &tried,
            // No request is seen: no cookie is read or set.
            https: true,
            location_path: "/",
        })?;
        tried.push(pick.slot);
        let stats = upstream.slots[pick.slot].stats.write();
        let endpoint = upstream.addr(pick.slot);
        let started = std::time::Instant::now();
        let connect = TcpStream::connect(endpoint);
        match tokio::time::timeout(shared.args.proxy_connect_timeout, connect).await {
            Ok(Ok(s)) => {
                stats.record_success(started.elapsed());
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => {
                debug!(%endpoint, error = %e, "ssl-passthrough connect failed")
            }
            Err(_) => debug!(%endpoint, "ssl-passthrough connect timed out"),
        }
        stats.record_failure(&upstream.health, now_ms());
    }
    None
}

/// A stream that yields `head` (bytes already read from `io`) before reading `io` again:
/// the ClientHello replayed into rustls when the connection is terminated here.
pub struct Replay<S> {
    head: Vec<u8>,
    at: usize,
    io: S,
}

impl<S> Replay<S> {
    pub fn new(head: Vec<u8>, io: S) -> Self {
        Replay { head, at: 0, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A passed connection has a hash key under either hash policy (`upstream-hash-by` with
    /// or without `upstream-hash-by-subset`) when the text names only the client address.
    #[test]
    fn client_address_keys_serve_both_hash_policies() {
        use crate::model::{LoadBalancing, nginx_var::NginxString};
        let peer: IpAddr = [198, 18, 0, 7].into();
        let by = |t: &str| NginxString::parse(t).unwrap();
        let size = std::num::NonZeroU32::new(2).unwrap();
        for (policy, want) in [
            (LoadBalancing::Hash(by("$remote_addr")), Some("198.18.0.7")),
            (
                LoadBalancing::HashSubset {
                    by: by("x-$remote_addr"),
                    size,
                },
                Some("x-198.18.0.7"),
            ),
            (
                LoadBalancing::HashSubset {
                    by: by("$request_uri"),
                    size,
                },
                None,
            ),
            (LoadBalancing::RoundRobin, None),
        ] {
            let mut up = (*crate::proxy::fixtures::upstream_at("s", &[])).clone();
            up.load_balancing = policy;
            let rt = UpstreamRuntime::new(Arc::new(up), None, Default::default());
            assert_eq!(peer_hash_key(&rt, peer).as_deref(), want);
        }
    }

    #[tokio::test]
    async fn replay_yields_the_head_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut r = Replay::new(b"hello".to_vec(), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
