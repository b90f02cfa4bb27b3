//! TLS to a backend that is verified (Gateway API BackendTLSPolicy `validation`): the
//! server's chain must lead to one of the trusted roots (the policy's CA certificates, or the
//! system's: the Mozilla set of `webpki-roots`), `hostname` is sent as SNI, and the
//! certificate must carry `hostname`, or, when `subjectAltNames` are given, one of those
//! instead (spec: "subjectAltNames ... the hostname MUST NOT be used for authentication"):
//! a DNS name, or a URI such as a SPIFFE id (compared exactly).
//! A backend that fails verification fails the TLS handshake: its request goes to the next
//! endpoint or gets 502, as any connect failure. Unverified TLS (ingress-nginx's
//! `backend-protocol: HTTPS` default) stays in [`super::connect`].

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
};

use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio_rustls::TlsConnector;

use crate::model::{TlsRoots, UpstreamTls};

/// The connectors and name of one [`UpstreamTls`]; equal (and hashed) by the policy.
#[derive(Clone)]
pub struct VerifiedTls {
    spec: Arc<UpstreamTls>,
    /// SNI, and what the certificate must name without `subjectAltNames`.
    pub name: ServerName<'static>,
    /// ALPN `http/1.1`.
    pub http1: TlsConnector,
    /// ALPN `h2`.
    pub h2: TlsConnector,
    /// No ALPN: bytes of no HTTP version (a TLSRoute terminated here, re-encrypted).
    pub bytes: TlsConnector,
}

impl std::fmt::Debug for VerifiedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTls")
            .field("spec", &self.spec)
            .finish()
    }
}

impl PartialEq for VerifiedTls {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Eq for VerifiedTls {}

impl Hash for VerifiedTls {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.spec.hash(h);
    }
}

/// Why a policy cannot be used (every connection to its backend then fails).
#[derive(Clone, Debug, thiserror::Error)]
pub enum VerifiedTlsError {
    #[error("hostname {0:?} is not a DNS name")]
    Hostname(String),
    #[error("no usable CA certificate")]
    NoRoots,
    #[error("TLS verifier: {0}")]
    Verifier(String),
    /// The Gateway's backend client certificate does not parse or its key does not match.
    #[error("client certificate {secret}: {reason}")]
    ClientCertificate { secret: String, reason: String },
}

impl VerifiedTls {
    pub fn spec(&self) -> &UpstreamTls {
        &self.spec
    }

    pub fn new(spec: Arc<UpstreamTls>) -> Result<Self, VerifiedTlsError> {
        let name = ServerName::try_from(spec.hostname.clone())
            .map_err(|_| VerifiedTlsError::Hostname(spec.hostname.clone()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if spec.verify {
            san_verifier(&spec, &provider)?
        } else {
            // `proxy-ssl-verify: off`: any certificate, as nginx's default.
            Arc::new(super::connect::NoVerify(provider.clone()))
        };
        let client_cert = spec.client_certificate.as_deref().map(|c| {
            crate::proxy::tls::chain_and_key(c).map_err(|e| VerifiedTlsError::ClientCertificate {
                secret: spec_secret(&spec),
                reason: match e {
                    crate::proxy::tls::TlsError::BadCertificate { reason, .. } => reason,
                    e => e.to_string(),
                },
            })
        });
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = match &spec.versions {
            None => rustls::DEFAULT_VERSIONS.to_vec(),
            Some(v) => v
                .iter()
                .map(|v| crate::proxy::tls::rustls_version(*v))
                .collect(),
        };
        let connector = |alpn: &[&[u8]]| -> Result<TlsConnector, VerifiedTlsError> {
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| VerifiedTlsError::Verifier(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone());
            let mut cfg = match &client_cert {
                None => builder.with_no_client_auth(),
                Some(Err(e)) => return Err(e.clone()),
                Some(Ok((chain, key))) => {
                    let certified = crate::model::translate::tls::client_certified_key(
                        chain.clone(),
                        key.clone_key(),
                    )
                    .map_err(|reason| VerifiedTlsError::ClientCertificate {
                        secret: spec_secret(&spec),
                        reason,
                    })?;
                    builder.with_client_cert_resolver(Arc::new(
                        rustls::sign::SingleCertAndKey::from(certified),
                    ))
                }
            };
            cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
            // `proxy-ssl-server-name: off`: no SNI; `name` is still what is verified.
            cfg.enable_sni = spec.sni;
            Ok(TlsConnector::from(Arc::new(cfg)))
        };
        Ok(VerifiedTls {
            http1: connector(&[b"http/1.1"])?,
            h2: connector(&[b"h2"])?,
            bytes: connector(&[])?,
            name,
            spec,
        })
    }
}

/// The verifier of `spec`'s roots, name or subject alternative names, and depth.
fn san_verifier(
    spec: &UpstreamTls,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, VerifiedTlsError> {
    let mut store = RootCertStore::empty();
    match &spec.roots {
        TlsRoots::System => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        TlsRoots::Certificates(ders) => {
            let (added, _) = store
                .add_parsable_certificates(ders.iter().map(|d| CertificateDer::from(d.clone())));
            if added == 0 {
                return Err(VerifiedTlsError::NoRoots);
            }
        }
    }
    let roots = Arc::new(store);
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), provider.clone())
        .build()
        .map_err(|e| VerifiedTlsError::Verifier(e.to_string()))?;
    let (uris, dns): (Vec<&String>, Vec<&String>) = spec
        .subject_alt_names
        .iter()
        .partition(|n| n.contains("://"));
    let names = dns
        .into_iter()
        .map(|n| ServerName::try_from(n.clone()).map_err(|_| VerifiedTlsError::Hostname(n.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(SanVerifier {
        inner,
        names,
        uris: uris.into_iter().cloned().collect(),
        roots: Arc::clone(&roots),
        algorithms: provider.signature_verification_algorithms,
        max_depth: spec.verify_depth,
    }))
}

fn spec_secret(spec: &UpstreamTls) -> String {
    (spec.client_certificate.as_ref())
        .map(|c| format!("{}/{}", c.secret.namespace, c.secret.name))
        .unwrap_or_default()
}

/// WebPKI verification against the policy's roots, of `hostname` or, when set, of any one of
/// the subject alternative names.
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
    /// URI subject alternative names (SPIFFE ids...): the chain is verified without a name,
    /// then the certificate must carry one of these URIs.
    uris: Vec<String>,
    roots: Arc<RootCertStore>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    /// Most intermediates between the certificate and a root (`proxy-ssl-verify-depth`).
    max_depth: Option<u32>,
}

impl SanVerifier {
    /// The chain leads to the roots through at most `depth` intermediates (OpenSSL's verify
    /// depth, as nginx's `proxy_ssl_verify_depth`: 1 lets a CA sign through one intermediate).
    fn verify_depth(
        &self,
        depth: u32,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let bad = |e: String| rustls::Error::General(e);
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| bad(e.to_string()))?;
        let within = |p: &webpki::VerifiedPath<'_>| {
            if p.intermediate_certificates().count() as u64 > u64::from(depth) {
                Err(webpki::Error::MaximumPathDepthExceeded)
            } else {
                Ok(())
            }
        };
        cert.verify_for_usage(
            self.algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&within),
        )
        .map(|_| ())
        .map_err(|e| {
            bad(format!(
                "certificate chain (proxy-ssl-verify-depth {depth}): {e}"
            ))
        })
    }

    /// The chain leads to the roots and the certificate carries one of `uris`.
    fn verify_uri(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |e: String| rustls::Error::General(e);
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| bad(e.to_string()))?;
        cert.verify_for_usage(
            self.algorithms.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| bad(format!("certificate chain: {e}")))?;
        let (_, x) =
            x509_parser::parse_x509_certificate(end_entity).map_err(|e| bad(e.to_string()))?;
        let carried = x
            .subject_alternative_name()
            .ok()
            .flatten()
            .is_some_and(|san| {
                san.value.general_names.iter().any(|g| {
                    matches!(g, x509_parser::extensions::GeneralName::URI(u) if self.uris.iter().any(|w| w == u))
                })
            });
        if carried {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(bad(
                "the certificate carries none of the subjectAltNames".into()
            ))
        }
    }
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(depth) = self.max_depth {
            self.verify_depth(depth, end_entity, intermediates, now)?;
        }
        if self.names.is_empty() && self.uris.is_empty() {
            return self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp,
                now,
            );
        }
        let mut last = rustls::Error::General("no subjectAltName to check".into());
        if !self.uris.is_empty() {
            match self.verify_uri(end_entity, intermediates, now) {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        for n in &self.names {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, n, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rustls::pki_types::{PrivateKeyDer, pem::PemObject};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A TLS server on loopback presenting a self-signed certificate for `names`; returns
    /// its address and the certificate's DER.
    async fn server(names: &[&str]) -> (SocketAddr, Vec<u8>) {
        let (crt, key) = crate::proxy::tls::self_signed_pem(names).unwrap();
        serve(&crt, &key).await
    }

    async fn serve(crt: &str, key: &str) -> (SocketAddr, Vec<u8>) {
        let cert = CertificateDer::from_pem_slice(crt.as_bytes()).unwrap();
        let der = cert.to_vec();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let a = acceptor.clone();
                tokio::spawn(async move {
                    let _ = a.accept(s).await;
                });
            }
        });
        (addr, der)
    }

    async fn handshake(addr: SocketAddr, tls: UpstreamTls) -> Result<(), String> {
        let v = VerifiedTls::new(Arc::new(tls)).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).await.unwrap();
        v.http1
            .connect(v.name.clone(), tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// BackendTLSPolicy `validation`: the chain leads to the policy's CA, and the certificate
    /// names `hostname`, or one of `subjectAltNames` when given; the system roots do not
    /// trust a private CA.
    #[tokio::test]
    async fn verifies_roots_hostname_and_subject_alt_names() {
        let (addr, der) = server(&["backend.test"]).await;
        let (_, other_ca) = server(&["backend.test"]).await;
        let tls = |host: &str, roots: TlsRoots, sans: &[&str]| UpstreamTls {
            hostname: host.into(),
            roots,
            subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
            ..UpstreamTls::verified(String::new(), TlsRoots::System)
        };
        let ours = || TlsRoots::Certificates(vec![der.clone()]);
        assert_eq!(
            handshake(addr, tls("backend.test", ours(), &[])).await,
            Ok(())
        );
        assert!(
            handshake(addr, tls("other.test", ours(), &[]))
                .await
                .is_err()
        );
        assert!(
            handshake(
                addr,
                tls("backend.test", TlsRoots::Certificates(vec![other_ca]), &[])
            )
            .await
            .is_err()
        );
        assert!(
            handshake(addr, tls("backend.test", TlsRoots::System, &[]))
                .await
                .is_err()
        );
        // subjectAltNames replace the hostname for verification (the hostname stays the SNI).
        assert_eq!(
            handshake(
                addr,
                tls("sni.test", ours(), &["nope.test", "backend.test"])
            )
            .await,
            Ok(())
        );
        assert!(
            handshake(addr, tls("backend.test", ours(), &["nope.test"]))
                .await
                .is_err()
        );
        // A policy that cannot be used says why.
        assert!(
            VerifiedTls::new(Arc::new(tls(
                "backend.test",
                TlsRoots::Certificates(vec![vec![1, 2]]),
                &[]
            )))
            .is_err()
        );
    }

    /// A URI subjectAltName (a SPIFFE id): the chain is verified, then the URI compared.
    #[tokio::test]
    async fn verifies_uri_subject_alt_names() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let id = "spiffe://cluster.test/ns/app/sa/web";
        params.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().unwrap())];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (addr, der) = serve(&cert.pem(), &key.serialize_pem()).await;
        let tls = |sans: &[&str], roots: TlsRoots| UpstreamTls {
            hostname: "web.app.svc".into(),
            roots,
            subject_alt_names: sans.iter().map(|s| s.to_string()).collect(),
            ..UpstreamTls::verified(String::new(), TlsRoots::System)
        };
        let ours = || TlsRoots::Certificates(vec![der.clone()]);
        assert_eq!(handshake(addr, tls(&[id], ours())).await, Ok(()));
        let other_id = "spiffe://cluster.test/ns/app/sa/other";
        assert!(handshake(addr, tls(&[other_id], ours())).await.is_err());
        assert!(
            handshake(addr, tls(&[], ours())).await.is_err(),
            "the hostname is not in it"
        );
        let (_, other) = server(&["x.test"]).await;
        assert!(
            handshake(addr, tls(&[id], TlsRoots::Certificates(vec![other])))
                .await
                .is_err()
        );
    }
}
