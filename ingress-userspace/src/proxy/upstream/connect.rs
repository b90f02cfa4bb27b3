//! Opening a connection to one endpoint: TCP (no Nagle), then TLS for `https`/`grpcs`
//! upstreams, then the HTTP/1.1 or HTTP/2 handshake. An HTTP/2 connection's I/O runs on a
//! task of its own (it serves many requests at once); an HTTP/1.1 one's is driven by the
//! request using it ([`super::http1_conn`]).
//!
//! - The connect timeout (`proxy-connect-timeout`) bounds TCP and TLS together, as nginx's
//!   `proxy_connect_timeout` bounds the upstream connect and its SSL handshake.
//! - Every connection enforces the send timeout ([`super::send_timeout`]).
//! - TLS: rustls without certificate verification and without SNI (the peer is named by
//!   its IP address), as ingress-nginx does unless `proxy-ssl-verify` /
//!   `proxy-ssl-server-name` are set; ALPN `h2` for gRPCS, `http/1.1` for HTTPS.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{net::TcpStream, time::Instant};
use tokio_rustls::TlsConnector;
use tracing::debug;

use super::{http1_conn::Http1Conn, pool::ProxyBody, send_timeout::SendTimeoutIo};

/// Why no connection to an endpoint could be opened. Nothing of a request was sent, so a
/// request that failed with it can go to another endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?} (proxy-connect-timeout)")]
    TimedOut(Duration),
    #[error("TCP connect failed: {0}")]
    Tcp(#[source] io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    #[error("HTTP/2 handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The connection closed before it took the request.
    #[error("connection closed before the request was sent: {0}")]
    Closed(#[source] hyper::Error),
    /// The task opening a shared HTTP/2 connection ended without an answer (runtime
    /// shutting down).
    #[error("connect abandoned")]
    Abandoned,
}

/// Opens connections with one set of connect and send timeouts.
#[derive(Clone)]
pub struct Dialer {
    connect_timeout: Duration,
    send_timeout: Duration,
    /// ALPN `http/1.1`.
    tls_http1: TlsConnector,
    /// ALPN `h2`.
    tls_h2: TlsConnector,
    /// The name sent as SNI and verified (BackendTLSPolicy); `None`: the endpoint's IP, no
    /// SNI, no verification.
    tls_name: Option<ServerName<'static>>,
    http2: http2::Builder<TokioExecutor>,
}

impl Dialer {
    pub fn new(connect_timeout: Duration, send_timeout: Duration) -> Self {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new());
        Dialer {
            connect_timeout,
            send_timeout,
            tls_http1: tls_connector(b"http/1.1"),
            tls_h2: tls_connector(b"h2"),
            tls_name: None,
            http2,
        }
    }

    /// This dialer speaking TLS as `v` says (verified, with SNI) instead.
    pub fn verified(mut self, v: &super::verified_tls::VerifiedTls) -> Self {
        self.tls_http1 = v.http1.clone();
        self.tls_h2 = v.h2.clone();
        self.tls_name = Some(v.name.clone());
        self
    }

    /// An HTTP/1.1 connection (upgrades enabled) to `endpoint`, over TLS when `tls`.
    pub async fn http1(&self, endpoint: SocketAddr, tls: bool) -> Result<Http1Conn, ConnectError> {
        let budget = Budget::start(self.connect_timeout);
        let tcp = self.tcp(endpoint, &budget).await?;
        if tls {
            let tls = self.tls(&self.tls_http1, endpoint, tcp, &budget).await?;
            self.handshake_http1(tls).await
        } else {
            self.handshake_http1(tcp).await
        }
    }

    /// An HTTP/2 connection (prior knowledge, or ALPN `h2` over TLS) to `endpoint`.
    pub async fn http2(
        &self,
        endpoint: SocketAddr,
        tls: bool,
    ) -> Result<http2::SendRequest<ProxyBody>, ConnectError> {
        let budget = Budget::start(self.connect_timeout);
        let tcp = self.tcp(endpoint, &budget).await?;
        if tls {
            let tls = self.tls(&self.tls_h2, endpoint, tcp, &budget).await?;
            self.handshake_http2(tls, &budget).await
        } else {
            self.handshake_http2(tcp, &budget).await
        }
    }

    async fn tcp(&self, endpoint: SocketAddr, budget: &Budget) -> Result<TcpStream, ConnectError> {
        let stream = budget
            .within(TcpStream::connect(endpoint))
            .await?
            .map_err(ConnectError::Tcp)?;
        // Small writes (a request head) must not wait for an ACK.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn tls(
        &self,
        connector: &TlsConnector,
        endpoint: SocketAddr,
        tcp: TcpStream,
        budget: &Budget,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let name = (self.tls_name.clone()).unwrap_or_else(|| ServerName::from(endpoint.ip()));
        budget
            .within(connector.connect(name, tcp))
            .await?
            .map_err(ConnectError::Tls)
    }

    async fn handshake_http1<T>(&self, io: T) -> Result<Http1Conn, ConnectError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = SendTimeoutIo::new(TokioIo::new(io), self.send_timeout);
        // An HTTP/1.1 handshake does no I/O: it cannot fail.
        let (tx, conn) = http1::handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        Ok(Http1Conn::new(tx, Box::pin(conn.with_upgrades())))
    }

    async fn handshake_http2<T>(
        &self,
        io: T,
        budget: &Budget,
    ) -> Result<http2::SendRequest<ProxyBody>, ConnectError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = SendTimeoutIo::new(TokioIo::new(io), self.send_timeout);
        let (tx, conn) = budget
            .within(self.http2.handshake(io))
            .await?
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(tx)
    }
}

/// The connect timeout, shared by every step of opening one connection.
struct Budget {
    started: Instant,
    timeout: Duration,
}

impl Budget {
    fn start(timeout: Duration) -> Self {
        Budget {
            started: Instant::now(),
            timeout,
        }
    }

    /// `step`, unless the budget runs out first. (`tokio::time::timeout` clamps a remaining
    /// time past what `Instant` holds, so a huge configured timeout cannot overflow.)
    async fn within<F: Future>(&self, step: F) -> Result<F::Output, ConnectError> {
        let left = self.timeout.saturating_sub(self.started.elapsed());
        tokio::time::timeout(left, step)
            .await
            .map_err(|_| ConnectError::TimedOut(self.timeout))
    }
}

fn tls_connector(alpn: &[u8]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| unreachable_config());
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// ring's default provider always supports the default protocol versions.
fn unreachable_config() -> rustls::ClientConfig {
    unreachable!("ring provider supports TLS 1.2 and 1.3")
}

/// Accepts any upstream certificate but still checks the handshake signatures.
#[derive(Debug)]
pub(super) struct NoVerify(pub(super) Arc<rustls::crypto::CryptoProvider>);

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
