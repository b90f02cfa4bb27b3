//! Helpers shared by the L7 tests: start the proxy in-process, build snapshots, and talk to
//! it with real clients (hyper HTTP/1.1 and HTTP/2, rustls, raw TCP).
#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{HttpConnector, dns::Name},
    },
    rt::{TokioExecutor, TokioIo},
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};
use xdp_ingress::proxy::{AccessLogFormat, Proxy, ProxyArgs, ProxyHandle};

pub struct TestProxy {
    pub handle: ProxyHandle,
    stop: Option<oneshot::Sender<()>>,
}

impl TestProxy {
    pub async fn start(mut args: ProxyArgs) -> TestProxy {
        args.listen_address = "127.0.0.1".parse().unwrap();
        if args.ports.http_port == 80 {
            args.ports.http_port = 0;
        }
        if args.ports.https_port == 443 {
            args.ports.https_port = 0;
        }
        args.metrics_addr
            .get_or_insert("127.0.0.1:0".parse().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = Proxy::start(args, async move {
            let _ = rx.await;
        })
        .await
        .expect("proxy starts");
        TestProxy {
            handle,
            stop: Some(tx),
        }
    }

    pub fn quiet_args() -> ProxyArgs {
        ProxyArgs {
            access_log_format: AccessLogFormat::Off,
            ..ProxyArgs::default()
        }
    }

    pub fn http(&self) -> SocketAddr {
        self.handle.http_addr()
    }

    pub fn https(&self) -> SocketAddr {
        self.handle.https_addr()
    }

    /// Begins shutdown (stop accepting, drain).
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// hyper's pooled client as the tests use it. A request built by [`req`] names the proxy's
/// address in its URI and the virtual host in `Host`; [`send`] moves the host name into the
/// URI (so HTTP/2 carries it in `:authority`, as browsers and curl do) and the client still
/// connects to the address, through a resolver that knows only the names [`send`] saw.
#[derive(Clone)]
pub struct Http1 {
    client: Client<HttpConnector<Names>, Full<Bytes>>,
    names: Names,
}

/// Host name → address of the proxy it was sent to.
#[derive(Clone, Default)]
pub struct Names(Arc<Mutex<HashMap<String, IpAddr>>>);

impl Names {
    /// Makes `name` resolve to `ip` (for clients the tests build themselves).
    pub fn insert(&self, name: &str, ip: IpAddr) {
        self.0.lock().unwrap().insert(name.to_ascii_lowercase(), ip);
    }
}

impl tower_service::Service<Name> for Names {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let ip = self
            .0
            .lock()
            .unwrap()
            .get(&name.as_str().to_ascii_lowercase())
            .copied();
        std::future::ready(match ip {
            Some(ip) => Ok(vec![SocketAddr::new(ip, 0)].into_iter()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("test client does not know {name}"),
            )),
        })
    }
}

fn client(h2: bool) -> Http1 {
    let names = Names::default();
    let mut b = Client::builder(TokioExecutor::new());
    b.http2_only(h2);
    Http1 {
        client: b.build(HttpConnector::new_with_resolver(names.clone())),
        names,
    }
}

pub fn http1_client() -> Http1 {
    client(false)
}

pub fn h2c_client() -> Http1 {
    client(true)
}

impl Http1 {
    /// Names the target as [`named_uri`] does; the name resolves to the address it replaced.
    fn name_target(&self, mut req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
        if let Some((name, ip, uri)) = named_uri(&req) {
            self.names.insert(&name, ip);
            *req.uri_mut() = uri;
        }
        req
    }
}

/// For `http://ip:port/p` with `Host: name[:port]`: (`name` lower-cased, `ip`,
/// `http://name:port/p`). `None` when the URI names no address or `Host` no name.
fn named_uri<B>(req: &Request<B>) -> Option<(String, IpAddr, http::Uri)> {
    let uri = req.uri();
    // An IPv6 address comes bracketed in a URI (`http://[::1]:80/`, RFC 3986 section 3.2.2).
    let host = uri.host()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = bare.parse::<IpAddr>().ok()?;
    let port = uri.port_u16()?;
    let host = req.headers().get(http::header::HOST)?.to_str().ok()?;
    let name = host
        .parse::<http::uri::Authority>()
        .ok()?
        .host()
        .to_string();
    if name.parse::<IpAddr>().is_ok() || name.starts_with('[') {
        return None;
    }
    let named = format!(
        "{}://{name}:{port}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    )
    .parse()
    .ok()?;
    Some((name.to_ascii_lowercase(), ip, named))
}

/// [`named_uri`] with IPv4 and bracketed IPv6 addresses; a `Host` that is an address (of
/// either family) names nothing.
#[test]
fn named_uri_reads_ipv4_and_bracketed_ipv6_addresses() {
    let named = |uri: &str, host: &str| {
        named_uri(
            &Request::builder()
                .uri(uri)
                .header("host", host)
                .body(())
                .unwrap(),
        )
        .map(|(name, ip, uri)| (name, ip.to_string(), uri.to_string()))
    };
    assert_eq!(
        named("http://127.0.0.1:8080/a?b", "shop.test"),
        Some((
            "shop.test".into(),
            "127.0.0.1".into(),
            "http://shop.test:8080/a?b".into()
        ))
    );
    assert_eq!(
        named("http://[::1]:8443/x", "shop.test:8443"),
        Some((
            "shop.test".into(),
            "::1".into(),
            "http://shop.test:8443/x".into()
        ))
    );
    assert_eq!(named("http://[::1]:80/", "[::1]:80"), None);
    assert_eq!(named("http://[::1]:80/", "127.0.0.1"), None);
}

/// A response read whole.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn pod(&self) -> String {
        self.json()["pod"].as_str().unwrap_or_default().to_string()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }
}

pub async fn send(client: &Http1, req: Request<Full<Bytes>>) -> anyhow::Result<Got> {
    let req = client.name_target(req);
    let resp = tokio::time::timeout(Duration::from_secs(20), client.client.request(req)).await??;
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

pub fn req(addr: SocketAddr, host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A request as an HTTP/2 client sends it to `addr` for `host`: the host in the URI (hence in
/// `:authority`), no `Host` field. For tests that drive their own connection to `addr`.
pub fn h2_req(addr: SocketAddr, host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://{host}:{}{path}", addr.port()))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub async fn get(client: &Http1, addr: SocketAddr, host: &str, path: &str) -> Got {
    send(client, req(addr, host, path))
        .await
        .expect("request completes")
}

/// Sends raw bytes on a new connection and reads until close or `wait`.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// TLS connection with this SNI (and ALPN), accepting any certificate; returns the stream
/// and the end-entity certificate the proxy presented.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    tls_over(TcpStream::connect(addr).await.unwrap(), sni, alpn).await
}

/// [`tls_connect`] over an already open connection (after a PROXY protocol header, say).
pub async fn tls_over(
    tcp: TcpStream,
    sni: &str,
    alpn: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let (cfg, seen) = tls_client_config(alpn);
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let der = seen.lock().unwrap().clone();
    (stream, der)
}

/// A TLS handshake over `tcp` that may fail.
pub async fn tls_try(
    tcp: TcpStream,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let (cfg, _) = tls_client_config(&[]);
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

fn tls_client_config(alpn: &[&[u8]]) -> (rustls::ClientConfig, Arc<Mutex<Vec<u8>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(provider, Arc::clone(&seen))))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    (cfg, seen)
}

/// One HTTP request over an established (TLS) stream, HTTP/1.1 or HTTP/2 by `h2`.
pub async fn request_over<S>(stream: S, h2: bool, req: Request<Full<Bytes>>) -> Got
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let resp = if h2 {
        // The host goes in `:authority`, as browsers send it.
        let mut req = req;
        if let Some((_, _, uri)) = named_uri(&req) {
            *req.uri_mut() = uri;
        }
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        // Origin-form, as clients send to an origin (absolute-form would route by the
        // URI's authority, RFC 9112 §3.2.2).
        let mut req = req;
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = pq.into();
        }
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// Accepts any server certificate and keeps the last one seen (the proxy's default one is
/// self-signed).
#[derive(Debug)]
pub struct Recorder(
    pub Arc<rustls::crypto::CryptoProvider>,
    pub Arc<Mutex<Vec<u8>>>,
);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.1.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// DER of the first certificate in a PEM chain.
pub fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// The proxy running inside a network namespace (2 workers, started from a thread in the
/// namespace so every socket it opens lives there). Stopped and drained on drop.
pub struct NsProxy {
    pub handle: ProxyHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsProxy {
    pub fn start(ns: &testbed::Netns, args: ProxyArgs) -> NsProxy {
        Self::start_with_workers(ns, args, 2)
    }

    /// The proxy with `workers` worker threads (`--proxy-workers`); its admin listener and
    /// housekeeping on a current-thread runtime of their own.
    pub fn start_with_workers(ns: &testbed::Netns, mut args: ProxyArgs, workers: usize) -> NsProxy {
        args.drain_timeout = Duration::from_secs(2);
        args.proxy_workers = workers;
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = ns.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let handle = Proxy::start(args, async move {
                    let _ = stop_rx.await;
                })
                .await
                .expect("proxy starts in netns");
                tx.send(handle.clone()).expect("test waits");
                handle.finished().await;
            });
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("proxy started");
        NsProxy {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for NsProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs an async block on a fresh runtime on a thread inside `ns` and returns its result.
pub fn in_ns<R, F>(ns: &testbed::Netns, f: impl FnOnce() -> F + Send + 'static) -> R
where
    R: Send + 'static,
    F: std::future::Future<Output = R>,
{
    ns.spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Opens a WebSocket through the proxy; returns the stream and the pod that answered.
pub async fn websocket_open(addr: SocketAddr, host: &str) -> (tokio::net::TcpStream, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let hello = format!(
        "GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(hello.as_bytes()).await.unwrap();
    // Read the 101 head and the pod line the backend sends first.
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "{:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(
            &format!(
                "sec-websocket-accept: {}",
                testbed::http_backend::websocket_accept(key.as_bytes())
            )
            .to_ascii_lowercase()
        ),
        "{head}"
    );
    let mut pod = Vec::new();
    loop {
        s.read_exact(&mut byte).await.unwrap();
        if byte[0] == b'\n' {
            break;
        }
        pod.push(byte[0]);
    }
    (s, String::from_utf8(pod).unwrap())
}

/// Sends bytes on an open WebSocket and checks they come back.
pub async fn ws_echo(s: &mut tokio::net::TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, msg);
}

/// A TCP connection to `dst` from the loopback address `src` (any of 127.0.0.0/8): another
/// client, as far as the proxy can tell.
pub async fn connect_from(src: std::net::IpAddr, dst: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(src, 0)).unwrap();
    socket.connect(dst).await.unwrap()
}

/// Whether the peer closed `s` (EOF or reset) within `wait`; bytes it sends meanwhile are
/// read and dropped.
pub async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Writes `bytes` one at a time, one every `every`, reading and dropping what comes back,
/// until the peer closes the connection (returns how long that took) or `limit` passes
/// (`None`).
pub async fn trickle_until_closed(
    mut s: TcpStream,
    bytes: impl Iterator<Item = u8>,
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let start = std::time::Instant::now();
    let mut bytes = bytes;
    let mut tick = tokio::time::interval(every);
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            tokio::select! {
                r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return start.elapsed() },
                _ = tick.tick() => if let Some(b) = bytes.next()
                    && s.write_all(&[b]).await.is_err()
                {
                    return start.elapsed();
                },
            }
        }
    })
    .await
    .ok()
}

/// Reads one HTTP/1.1 response with a `Content-Length` or chunked body off `s` (TCP, TLS);
/// returns it as text (within 5 s, else what arrived).
pub async fn read_h1_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let done = |out: &[u8]| {
        let text = String::from_utf8_lossy(out).to_ascii_lowercase();
        let Some(head_end) = text.find("\r\n\r\n") else {
            return false;
        };
        if text[..head_end].contains("transfer-encoding: chunked") {
            return text[head_end..].ends_with("\r\n0\r\n\r\n");
        }
        let len = text[..head_end]
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        out.len() >= head_end + 4 + len
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !done(&out) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).to_string()
}

/// Raw HTTP/2 (RFC 9113) for clients that misbehave in ways no client library allows.
pub mod h2raw {
    /// The client connection preface (RFC 9113 3.4).
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const ACK: u8 = 0x1;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    /// One frame: 9-byte header (RFC 9113 4.1) and payload.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// HEADERS ending the stream for `GET http://{authority}{path}`, HPACK-encoded with the
    /// static table and literals without indexing (RFC 7541 6.2.2), no Huffman.
    pub fn get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
        for (name_index, value) in [(4u8, path), (1u8, authority)] {
            block.push(name_index); // literal without indexing, indexed name (< 15)
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
    }

    /// Splits whole frames off the front of `buf`: (type, flags, stream, payload).
    pub fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            out.push((buf[3], buf[4], stream, buf[9..9 + len].to_vec()));
            buf.drain(..9 + len);
        }
        out
    }
}

/// Translates manifests as the control plane does (manifest parser, store, translation), with
/// the config `edit` leaves. The backends of these tests listen on loopback, which translation
/// refuses unless the operator opts in (`--allow-node-local-endpoints`): here it is in.
pub fn translate_manifests(
    version: u64,
    yaml: &str,
    edit: impl FnOnce(&mut xdp_ingress::model::translate::TranslateConfig),
) -> Arc<xdp_ingress::model::Snapshot> {
    use xdp_ingress::{
        model::translate::{TranslateConfig, translate},
        source::files::parse_manifests,
        store::Objects,
    };
    let objects = Objects::from_objects(parse_manifests(yaml).expect("manifests parse"));
    let mut config = TranslateConfig {
        allow_node_local_endpoints: true,
        ..TranslateConfig::default()
    };
    edit(&mut config);
    let mut s = translate(&objects, &config);
    s.version = version;
    Arc::new(s)
}

/// A Service with one pod at `addr` and its EndpointSlice, in namespace `default`.
/// An HTTP backend on loopback answering as `name` (see testbed::http_backend).
pub fn backend(name: &str) -> testbed::http_backend::HttpBackend {
    testbed::http_backend::HttpBackend::start("127.0.0.1:0".parse().unwrap(), name).unwrap()
}

/// The `metadata.annotations` block of an Ingress manifest (indented for `metadata:`), each key
/// without a prefix under `nginx.ingress.kubernetes.io/`; empty without annotations.
pub fn nginx_annotations_yaml(annotations: &[(&str, &str)]) -> String {
    if annotations.is_empty() {
        return String::new();
    }
    let lines: String = annotations
        .iter()
        .map(|(k, v)| {
            let prefix = if k.contains('/') {
                ""
            } else {
                "nginx.ingress.kubernetes.io/"
            };
            format!("    {prefix}{k}: {v:?}\n")
        })
        .collect();
    format!("  annotations:\n{lines}")
}

/// The ingress-nginx controller ConfigMap `ingress-nginx/cm` with `data`, as a manifest
/// document (read with `--configmap ingress-nginx/cm`).
pub fn configmap_yaml(data: &[(&str, &str)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: ingress-nginx}}\ndata:\n{data}"
    )
}

pub fn service_yaml(name: &str, addr: SocketAddr) -> String {
    let (ip, port) = (addr.ip(), addr.port());
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {name}-0}}}}
---
"#
    )
}

/// A Service whose ready pods listen at `pods` (one EndpointSlice each, as their ports
/// differ), in namespace `default`.
pub fn service_pods_yaml(name: &str, pods: &[SocketAddr]) -> String {
    let mut out = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
"#
    );
    for (i, addr) in pods.iter().enumerate() {
        let (ip, port) = (addr.ip(), addr.port());
        out.push_str(&format!(
            r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-{i}
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {name}-{i}}}}}
---
"#
        ));
    }
    out
}
