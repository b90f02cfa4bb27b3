//! Connections to endpoints: one hyper client per backend protocol, each keeping a pool of
//! idle keep-alive connections per endpoint address (the pool key is the URI authority,
//! which is always an endpoint `ip:port`). HTTPS/GRPCS upstreams use rustls without
//! certificate verification, as ingress-nginx does unless `proxy-ssl-verify` is set.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{Connected, Connection, HttpConnector},
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::send_timeout::SendTimeoutConnector;
use crate::model::BackendProtocol;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything the proxy sends and answers.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Pool and connect settings.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    pub connect_timeout: Duration,
    /// Longest a write to an endpoint may stay blocked (`proxy-send-timeout`).
    pub send_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
}

/// One client per protocol family.
#[derive(Clone)]
pub struct Clients {
    http1: Client<Tcp, ProxyBody>,
    h2c: Client<Tcp, ProxyBody>,
    https: Client<Tls, ProxyBody>,
    grpcs: Client<Tls, ProxyBody>,
}

type Tcp = SendTimeoutConnector<HttpConnector>;
type Tls = SendTimeoutConnector<TlsUpstream>;

impl Clients {
    pub fn new(opts: PoolOptions) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(opts.connect_timeout));
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(opts.idle_timeout)
                .pool_max_idle_per_host(opts.max_idle_per_endpoint)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                // Host comes from the client request, set by forward.rs.
                .set_host(false);
            b
        };
        let h2 = || {
            let mut b = builder();
            b.http2_only(true);
            b
        };
        let t = opts.send_timeout;
        let tls = |h2| SendTimeoutConnector::new(TlsUpstream::new(tcp.clone(), h2), t);
        Clients {
            http1: builder().build(SendTimeoutConnector::new(tcp.clone(), t)),
            h2c: h2().build(SendTimeoutConnector::new(tcp.clone(), t)),
            https: builder().build(tls(false)),
            grpcs: h2().build(tls(true)),
        }
    }

    /// Sends a request whose URI is `scheme://endpoint/path`.
    pub fn send(
        &self,
        protocol: BackendProtocol,
        req: http::Request<ProxyBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        match protocol {
            BackendProtocol::Http => self.http1.request(req),
            BackendProtocol::H2c | BackendProtocol::Grpc => self.h2c.request(req),
            BackendProtocol::Https => self.https.request(req),
            BackendProtocol::Grpcs => self.grpcs.request(req),
        }
    }
}

/// URI scheme and HTTP version to use toward an upstream of this protocol.
pub fn scheme_and_version(protocol: BackendProtocol) -> (&'static str, http::Version) {
    match protocol {
        BackendProtocol::Http => ("http", http::Version::HTTP_11),
        BackendProtocol::H2c | BackendProtocol::Grpc => ("http", http::Version::HTTP_2),
        BackendProtocol::Https => ("https", http::Version::HTTP_11),
        BackendProtocol::Grpcs => ("https", http::Version::HTTP_2),
    }
}

/// TCP then TLS (no verification), ALPN `h2` or `http/1.1`.
#[derive(Clone)]
pub struct TlsUpstream {
    tcp: HttpConnector,
    tls: TlsConnector,
}

impl TlsUpstream {
    fn new(tcp: HttpConnector, h2: bool) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                    .with_no_client_auth()
            })
            .unwrap_or_else(|_| unreachable_config());
        cfg.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        TlsUpstream {
            tcp,
            tls: TlsConnector::from(Arc::new(cfg)),
        }
    }
}

/// ring's default provider always supports the default protocol versions.
fn unreachable_config() -> rustls::ClientConfig {
    unreachable!("ring provider supports TLS 1.2 and 1.3")
}

impl tower_service::Service<Uri> for TlsUpstream {
    type Response = TlsConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string();
            let plain_uri: Uri = format!(
                "http://{}",
                uri.authority().map(|a| a.as_str()).unwrap_or_default()
            )
            .parse()?;
            let stream = tcp.call(plain_uri).await?.into_inner();
            let name = ServerName::try_from(host)?;
            let stream = tls.connect(name, stream).await?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(TlsConn {
                io: TokioIo::new(stream),
                h2,
            })
        })
    }
}

pub struct TlsConn {
    io: TokioIo<TlsStream<TcpStream>>,
    h2: bool,
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl Read for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for TlsConn {
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
}

/// Accepts any upstream certificate but still checks the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
