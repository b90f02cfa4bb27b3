//! An echo HTTP backend for L7 tests: answers every request with JSON describing what it
//! received (pod name, method, path, version, headers, body, trailers) over HTTP/1.1 or h2c.
//! `uri` is the request URI as the server read it: the origin-form target for HTTP/1.1,
//! `scheme://authority/path` from `:scheme` and `:authority` for HTTP/2. The backend counts
//! the connections it accepted and the ones still open.
//!
//! Special paths:
//! - `/delay/<ms>`: answers after that many milliseconds; so does any path with a query
//!   `delay=<n>ms` or `delay=<n>s` (the Gateway API conformance echo server's convention).
//! - `/status/<code>`: answers with that status.
//! - `/bytes/<n>`: streams `n` bytes in 16 KiB chunks.
//! - `/sized/<n>`: `n` bytes as one body with its `Content-Length`, typed
//!   `application/octet-stream` (httpbun's `/bytes/<n>`, which ingress-nginx's tests use).
//! - `/drip/<n>/<ms>`: streams `n` lines `tick <i>\n`, one every `<ms>` milliseconds (the
//!   first at once): a long response that is slow but alive.
//! - `/fixed`: a constant 13-byte body (benchmarks: the backend does as little as possible).
//! - `/discard`: reads the request body to its end, then answers as `/fixed` (benchmarks of
//!   uploads).
//! - `/trailers`: gRPC-style answer with `grpc-status`/`grpc-message` trailers.
//! - any other request with `Content-Type: application/grpc...` (a gRPC call): a gRPC answer,
//!   the JSON as one length-prefixed message (gRPC over HTTP/2, "Length-Prefixed-Message"),
//!   then `grpc-status: 0` in the trailers.
//! - `X-Echo-Set-Header: Name:value,Name2:value2` on any request: the answer carries those
//!   headers (the Gateway API conformance echo server's convention).
//! - any request with `Upgrade: websocket` gets a real WebSocket handshake (101 with
//!   `Sec-WebSocket-Accept`), after which the backend echoes raw bytes, prefixed once by
//!   `<pod>\n` so the test knows which pod holds the connection.
//!
//! The server runs on its own thread and runtime (inside a network namespace when started
//! with [`HttpBackend::start_in`]) and stops on drop.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::oneshot,
};

type Body = BoxBody<Bytes, Infallible>;

/// A running echo backend; stopped on drop.
pub struct HttpBackend {
    pub addr: SocketAddr,
    pub name: String,
    requests: Arc<AtomicU64>,
    conns: Arc<Conns>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpBackend {
    /// Starts on `addr` (port 0 picks one) in the current network namespace.
    pub fn start(addr: SocketAddr, name: &str) -> anyhow::Result<HttpBackend> {
        Self::start_with(addr, name, None, std::thread::spawn)
    }

    /// Starts an HTTPS backend (ALPN `h2` and `http/1.1`) with this PEM certificate and key.
    pub fn start_tls(
        addr: SocketAddr,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<HttpBackend> {
        let acceptor = Self::tls_acceptor(cert_pem, key_pem)?;
        Self::start_with(addr, name, Some(acceptor), std::thread::spawn)
    }

    /// [`HttpBackend::start_tls`] inside network namespace `ns`: a pod that terminates TLS
    /// itself.
    pub fn start_tls_in(
        ns: &crate::Netns,
        addr: SocketAddr,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<HttpBackend> {
        let acceptor = Self::tls_acceptor(cert_pem, key_pem)?;
        Self::start_with(addr, name, Some(acceptor), |f| ns.spawn(f))
    }

    fn tls_acceptor(cert_pem: &str, key_pem: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("key PEM")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    }

    /// Starts on `addr` inside network namespace `ns`.
    pub fn start_in(
        ns: &crate::Netns,
        addr: SocketAddr,
        name: &str,
    ) -> anyhow::Result<HttpBackend> {
        Self::start_with(addr, name, None, |f| ns.spawn(f))
    }

    fn start_with(
        addr: SocketAddr,
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        spawn: impl FnOnce(Box<dyn FnOnce() + Send + 'static>) -> JoinHandle<()>,
    ) -> anyhow::Result<HttpBackend> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let conns = Arc::new(Conns::default());
        let conn_counter = Arc::clone(&conns);
        let pod = name.to_string();
        let thread = spawn(Box::new(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx
                            .send(Err(anyhow::Error::from(e).context(format!("bind {addr}"))));
                        return;
                    }
                };
                let _ = ready_tx.send(listener.local_addr().map_err(Into::into));
                let pod = Arc::new(pod);
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let open = Conns::accepted(&conn_counter);
                        let pod = Arc::clone(&pod);
                        let counter = Arc::clone(&counter);
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let _open = open;
                            match tls {
                                None => serve(stream, pod, counter).await,
                                Some(acceptor) => {
                                    if let Ok(s) = acceptor.accept(stream).await {
                                        serve(s, pod, counter).await;
                                    }
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        }));
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("backend thread did not start")??;
        Ok(HttpBackend {
            addr,
            name: name.to_string(),
            requests,
            conns,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.conns.accepted.load(Ordering::Relaxed)
    }

    /// Connections accepted and not yet closed.
    pub fn open_connections(&self) -> u64 {
        self.conns.open.load(Ordering::Relaxed)
    }
}

/// Connection counts; an [`OpenConn`] is held while a connection is served.
#[derive(Default)]
struct Conns {
    accepted: AtomicU64,
    open: AtomicU64,
}

impl Conns {
    fn accepted(this: &Arc<Conns>) -> OpenConn {
        this.accepted.fetch_add(1, Ordering::Relaxed);
        this.open.fetch_add(1, Ordering::Relaxed);
        OpenConn(Arc::clone(this))
    }
}

/// Counts one connection as open until dropped (also when the server stops mid-connection).
struct OpenConn(Arc<Conns>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve<S>(stream: S, pod: Arc<String>, counter: Arc<AtomicU64>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        counter.fetch_add(1, Ordering::Relaxed);
        echo(Arc::clone(&pod), req)
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

async fn echo(pod: Arc<String>, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/fixed" {
        return Ok(Response::new(full(Bytes::from_static(b"hello, world\n"))));
    }
    if req.uri().path() == "/discard" {
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
        return Ok(Response::new(full(Bytes::from_static(b"hello, world\n"))));
    }
    let path = req.uri().path().to_string();
    if req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        return Ok(websocket(pod, &mut req));
    }
    let query_delay = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay=")))
        .and_then(|d| match d.strip_suffix("ms") {
            Some(ms) => ms.parse::<u64>().ok(),
            None => d.strip_suffix('s')?.parse::<u64>().ok().map(|s| s * 1000),
        });
    if let Some(ms) = path
        .strip_prefix("/delay/")
        .and_then(|s| s.parse::<u64>().ok())
        .or(query_delay)
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some((n, every)) = path.strip_prefix("/drip/").and_then(|s| {
        let (n, ms) = s.split_once('/')?;
        Some((n.parse::<u64>().ok()?, ms.parse::<u64>().ok()?))
    }) {
        let ticks = futures::stream::unfold(0u64, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(every)).await;
            }
            let line = Frame::data(Bytes::from(format!("tick {i}\n")));
            Some((Ok::<_, Infallible>(line), i + 1))
        });
        return Ok(Response::new(StreamBody::new(ticks).boxed()));
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|s| s.parse::<usize>().ok())
    {
        static CHUNK: [u8; 16384] = [b'x'; 16384];
        let chunks = (0..n.div_ceil(16384)).map(move |i| {
            let len = (n - i * 16384).min(16384);
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK[..len])))
        });
        let body = StreamBody::new(futures::stream::iter(chunks)).boxed();
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            "x-pod",
            HeaderValue::from_str(&pod).unwrap_or(HeaderValue::from_static("?")),
        );
        return Ok(resp);
    }
    if let Some(n) = path
        .strip_prefix("/sized/")
        .and_then(|s| s.parse::<usize>().ok())
    {
        let mut resp = Response::new(full(vec![b'x'; n]));
        resp.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let headers = header_map(req.headers());
    let echo_set: Vec<(String, String)> = req
        .headers()
        .get("x-echo-set-header")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let (body, trailers) = match req.into_body().collect().await {
        Ok(c) => {
            let trailers = c.trailers().map(header_map);
            (c.to_bytes(), trailers)
        }
        Err(_) => (Bytes::new(), None),
    };
    let json = serde_json::json!({
        "pod": *pod,
        "method": method,
        "uri": uri,
        "path": path_and_query,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
        "trailers": trailers,
        "body": String::from_utf8_lossy(&body[..body.len().min(4096)]),
    });
    let grpc = is_grpc && path != "/trailers";
    if path == "/trailers" || grpc {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let text = json.to_string();
        let data = if grpc {
            let mut framed = Vec::with_capacity(5 + text.len());
            framed.push(0); // not compressed
            framed.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
            framed.extend_from_slice(text.as_bytes());
            Bytes::from(framed)
        } else {
            Bytes::from(text)
        };
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(data)),
            Ok(Frame::trailers(trailers)),
        ];
        let mut resp = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed());
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        return Ok(resp);
    }
    let mut resp = Response::new(full(json.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(
        "x-pod",
        HeaderValue::from_str(&pod).unwrap_or(HeaderValue::from_static("?")),
    );
    for (k, v) in echo_set {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    Ok(resp)
}

fn header_map(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        m.entry(k.to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    m
}

fn websocket(pod: Arc<String>, req: &mut Request<Incoming>) -> Response<Body> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        if io.write_all(format!("{pod}\n").as_bytes()).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; 16384];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&websocket_accept(&key)) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
pub fn websocket_accept(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}
