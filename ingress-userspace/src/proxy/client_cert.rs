//! Client certificates per host (ingress-nginx `auth-tls-*`, nginx `ssl_verify_client`).
//!
//! As nginx, the handshake only asks: a host whose policy verifies gets its own rustls
//! configuration, chosen by SNI from the ClientHello ([`handshake_config`]), that requests a
//! certificate (naming the CAs), checks that the client holds its key, and accepts any chain.
//! The chain is verified against the host's `ca.crt` (and `ca.crl`) by rustls-webpki when a
//! request comes ([`admit`]), and the verdict becomes what nginx answers in
//! `ngx_http_process_request`: 400 "No required SSL certificate was sent" (nginx's 496) or 400
//! "The SSL certificate error" (495), or `auth-tls-error-page` instead; then
//! `auth-tls-match-cn` (403). A request whose Host is another server than the SNI chose is 421
//! (nginx `ngx_http_set_virtual_server`). Verified or not, the `ssl-client-*` headers the pod
//! gets are the proxy's: the client's own are dropped.
//!
//! Verification follows OpenSSL as nginx uses it: `auth-tls-verify-depth` counts the CA
//! certificates between the client's and the self-signed root (OpenSSL 1.1+), the chain must end
//! at a self-signed certificate of `ca.crt` (no partial chains), and with a CRL every
//! certificate of the chain must be covered by one (`X509_V_FLAG_CRL_CHECK_ALL`). webpki takes
//! v3 certificates only and no CA certificate as the client's; a chain with an older one
//! (`openssl x509 -req` without extensions makes v1) or whose client certificate is a CA
//! (`openssl req -x509` makes CA:TRUE) is built by [`legacy`] with the same rules. The handshake checks the client's signature
//! with the key of its certificate whatever its version; a certificate that does not parse at
//! all is let through the handshake and fails here (FAILED, nginx's 400), so the client gets an
//! HTTP answer and the access log a line, never a bare TLS alert.

pub mod frontend;
mod legacy;
pub mod names;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use regex::Regex;
use rustls::{
    DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{
        CertificateDer, CertificateRevocationListDer, SubjectPublicKeyInfoDer, TrustAnchor,
        UnixTime, pem::PemObject,
    },
    server::{
        ResolvesServerCert,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use super::{
    router::RouteTable,
    tls::{CertStore, Handshakes},
};
use crate::model::{ClientAuth, ClientCertPolicy, L7Config, VerifyClient};

/// The headers ingress-nginx sets upstream on a host with `auth-tls-secret` (nginx.tmpl,
/// "Pass the extracted client certificate to the backend").
pub const SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
pub const SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
pub const SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
pub const SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// nginx's text for its 496 (sent as 400).
pub const NO_CERTIFICATE: &str = "No required SSL certificate was sent";
/// nginx's text for its 495 (sent as 400).
pub const CERTIFICATE_ERROR: &str = "The SSL certificate error";
/// ingress-nginx's `auth-tls-match-cn` refusal (`return 403 "client certificate unauthorized"`).
pub const CN_MISMATCH: &str = "client certificate unauthorized";
/// nginx's 421 when the Host names another server than the SNI chose, and that one verifies.
pub const MISDIRECTED: &str = "Host names another server than the TLS handshake (SNI)";

/// A host's client-certificate step, compiled.
#[derive(Debug)]
pub enum HostAuth {
    Verify(Arc<CompiledPolicy>),
    /// ingress-nginx's `AuthTLSError`: 403 for every request of the host.
    Unavailable(String),
}

/// The hosts' steps by virtual host name as written (`a.example.com`, `*.example.com`, `""`),
/// the name [`RouteTable::host`] finds for a Host header or an SNI name.
#[derive(Debug, Default)]
pub struct Table(HashMap<String, Arc<HostAuth>>);

impl Table {
    /// Compiles the hosts' policies, keeping those of `previous` that did not change (and with
    /// them their rustls configuration and session cache).
    pub fn build(l7: &L7Config, previous: Option<&Table>) -> Table {
        let mut t = HashMap::new();
        let hosts = l7
            .hosts
            .values()
            .chain(l7.wildcard_hosts.values())
            .chain(&l7.any_host);
        for vh in hosts {
            let Some(auth) = vh.client_auth.as_deref() else {
                continue;
            };
            if t.contains_key(&vh.host) {
                continue;
            }
            let kept = previous
                .and_then(|p| p.0.get(&vh.host))
                .filter(|have| match (&***have, auth) {
                    (HostAuth::Verify(c), ClientAuth::Verify(p)) => *c.policy == **p,
                    _ => false,
                })
                .cloned();
            let compiled = kept.unwrap_or_else(|| {
                Arc::new(match auth {
                    ClientAuth::Verify(p) => match CompiledPolicy::new(Arc::clone(p)) {
                        Ok(c) => HostAuth::Verify(Arc::new(c)),
                        // Translation checked the PEM; should it still fail, deny.
                        Err(e) => HostAuth::Unavailable(e),
                    },
                    ClientAuth::Unavailable { reason } => HostAuth::Unavailable(reason.clone()),
                })
            });
            t.insert(vh.host.clone(), compiled);
        }
        Table(t)
    }

    pub fn get(&self, vhost: &str) -> Option<&Arc<HostAuth>> {
        self.0.get(vhost)
    }

    /// Whether no host has a client-certificate step (most configurations).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One CA certificate of `ca.crt`, for finding the rest of a chain above the trust anchor.
#[derive(Debug)]
struct CaCert {
    anchor: TrustAnchor<'static>,
    der: CertificateDer<'static>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
}

impl CaCert {
    fn self_signed(&self) -> bool {
        self.subject == self.issuer
    }
}

/// A host's policy with its CAs and CRLs parsed.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub policy: Arc<ClientCertPolicy>,
    cas: Vec<CaCert>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// The same CRLs as DER, for [`legacy`].
    crl_der: Vec<Vec<u8>>,
    match_cn: Option<Regex>,
    /// Asks for a certificate naming the CAs (none for `off`).
    verifier: Option<Arc<AskForCertificate>>,
    /// The rustls configuration of the host's handshakes, made on first use.
    config: CachedConfig,
}

/// A client-certificate configuration made on first use for the live [`Handshakes`], and
/// made again when those change (the ConfigMap's `ssl-*` keys apply to it as to every
/// handshake).
#[derive(Debug, Default)]
pub(super) struct CachedConfig(Mutex<Option<(u64, Arc<ServerConfig>)>>);

impl CachedConfig {
    /// The configuration asking through `verifier` with `handshakes`' settings.
    pub(super) fn get(
        &self,
        verifier: &Arc<dyn ClientCertVerifier>,
        certs: &Arc<CertStore>,
        handshakes: &Handshakes,
    ) -> Option<Arc<ServerConfig>> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((generation, c)) = cached.as_ref()
            && *generation == handshakes.generation
        {
            return Some(Arc::clone(c));
        }
        let cfg = verifying_config(Arc::clone(verifier), certs, handshakes)?;
        *cached = Some((handshakes.generation, Arc::clone(&cfg)));
        Some(cfg)
    }
}

impl CompiledPolicy {
    pub fn new(policy: Arc<ClientCertPolicy>) -> Result<Self, String> {
        let ca_der: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&policy.ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca.crt: {e}"))?;
        let mut cas = Vec::new();
        let mut roots = RootCertStore::empty();
        for der in &ca_der {
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| format!("ca.crt: {e}"))?
                .to_owned();
            let (_, cert) =
                x509_parser::parse_x509_certificate(der).map_err(|e| format!("ca.crt: {e}"))?;
            cas.push(CaCert {
                anchor: anchor.clone(),
                der: der.clone(),
                subject: cert.subject().as_raw().to_vec(),
                issuer: cert.issuer().as_raw().to_vec(),
            });
            roots.roots.push(anchor);
        }
        if cas.is_empty() {
            return Err("ca.crt holds no certificate".into());
        }
        let mut crls = Vec::new();
        let mut crl_der = Vec::new();
        if let Some(pem) = &policy.crl_pem {
            for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
                let crl = crl.map_err(|e| format!("ca.crl: {e}"))?;
                let owned = webpki::OwnedCertRevocationList::from_der(&crl)
                    .map_err(|e| format!("ca.crl: {e}"))?;
                crls.push(CertRevocationList::from(owned));
                crl_der.push(crl.to_vec());
            }
        }
        let match_cn = match &policy.match_cn {
            Some(re) => Some(Regex::new(re).map_err(|e| format!("auth-tls-match-cn: {e}"))?),
            None => None,
        };
        let verifier = (policy.verify != VerifyClient::Off).then(|| {
            Arc::new(AskForCertificate {
                hints: roots.subjects(),
                algs: provider().signature_verification_algorithms,
            })
        });
        Ok(CompiledPolicy {
            anchors: roots.roots,
            policy,
            cas,
            crls,
            crl_der,
            match_cn,
            verifier,
            config: CachedConfig::default(),
        })
    }

    /// The rustls configuration for this host's handshakes: `certs` picks the certificate by
    /// SNI as for every host, and a certificate is asked for (not required).
    fn server_config(
        &self,
        certs: &Arc<CertStore>,
        handshakes: &Handshakes,
    ) -> Option<Arc<ServerConfig>> {
        let verifier = Arc::clone(self.verifier.as_ref()?) as Arc<dyn ClientCertVerifier>;
        self.config.get(&verifier, certs, handshakes)
    }

    /// Verifies a client's chain (leaf first) as OpenSSL does for nginx.
    pub fn verify(&self, chain: &[CertificateDer<'static>], now: UnixTime) -> Verdict {
        let Some(leaf) = chain.first() else {
            return Verdict::None;
        };
        if x509_parser::parse_x509_certificate(leaf).is_err() {
            return Verdict::undecodable();
        }
        if legacy::has_pre_v3(chain) {
            return self.verify_openssl_way(chain, now);
        }
        let Ok(ee) = EndEntityCert::try_from(leaf) else {
            return Verdict::undecodable();
        };
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(ExpirationPolicy::Enforce)
                .build()
        });
        let algs = provider().signature_verification_algorithms.all;
        let path = ee.verify_for_usage(
            algs,
            &self.anchors,
            &chain[1..],
            now,
            KeyUsage::client_auth(),
            revocation,
            None,
        );
        let path = match path {
            Ok(p) => p,
            // webpki refuses a CA certificate as the client's before it looks for an issuer;
            // OpenSSL does not (`openssl req -x509` makes CA:TRUE certificates, and with
            // `optional_no_ca` nginx passes such a self-signed one on as
            // `FAILED:self-signed certificate`): judge the chain the OpenSSL way.
            Err(webpki::Error::CaUsedAsEndEntity) => return self.verify_openssl_way(chain, now),
            Err(e) => return self.failure(&e, chain),
        };
        let between = path.intermediate_certificates().count();
        let Some(at) = self.cas.iter().position(|c| c.anchor == *path.anchor()) else {
            return Verdict::failed("unable to get issuer certificate", true);
        };
        self.climb(at, between)
    }

    /// Finishes a chain that reached `self.cas[at]` with `between` certificates between it and
    /// the client's: OpenSSL builds on from a trusted certificate to a self-signed one of the
    /// store, and each certificate between it and the client's counts against the depth.
    fn climb(&self, mut at: usize, mut between: usize) -> Verdict {
        // Each step climbs to another certificate of `ca.crt`; more steps than it has is a
        // loop of names, not a chain.
        let mut steps = 0;
        while !self.cas[at].self_signed() {
            between += 1;
            steps += 1;
            let issuer = &self.cas[at].issuer;
            match self.cas.iter().position(|c| c.subject == *issuer) {
                Some(next) if steps < self.cas.len() => at = next,
                _ => return Verdict::failed("unable to get issuer certificate", true),
            }
        }
        if between > self.policy.depth as usize {
            return Verdict::failed("certificate chain too long", false);
        }
        Verdict::Success
    }

    /// nginx's `$ssl_client_verify` reason for a webpki error (OpenSSL 3's
    /// `X509_verify_cert_error_string`), and whether `optional_no_ca` lets it through
    /// (`ngx_ssl_verify_error_optional`: the issuer is unknown or self-signed).
    fn failure(&self, e: &webpki::Error, chain: &[CertificateDer<'static>]) -> Verdict {
        use webpki::Error as E;
        let self_signed = |der: &CertificateDer<'_>| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
                .unwrap_or(false)
        };
        match e {
            E::UnknownIssuer if self_signed(&chain[0]) => {
                Verdict::failed("self-signed certificate", true)
            }
            E::UnknownIssuer if chain.len() > 1 && self_signed(&chain[chain.len() - 1]) => {
                Verdict::failed("self-signed certificate in certificate chain", true)
            }
            E::UnknownIssuer => Verdict::failed("unable to get local issuer certificate", true),
            E::CertExpired { .. } => Verdict::failed("certificate has expired", false),
            E::CertNotValidYet { .. } => Verdict::failed("certificate is not yet valid", false),
            E::CertRevoked => Verdict::failed("certificate revoked", false),
            E::UnknownRevocationStatus => Verdict::failed("unable to get certificate CRL", false),
            E::CrlExpired { .. } => Verdict::failed("CRL has expired", false),
            E::InvalidSignatureForPublicKey => {
                Verdict::failed("certificate signature failure", false)
            }
            E::MaximumPathDepthExceeded => Verdict::failed("certificate chain too long", false),
            E::PathLenConstraintViolated => {
                Verdict::failed("path length constraint exceeded", false)
            }
            #[allow(deprecated)]
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
                Verdict::failed("unsupported certificate purpose", false)
            }
            _ => Verdict::failed("certificate rejected", false),
        }
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// What verification said about a client's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No certificate was sent (or none was asked for): `NONE`.
    None,
    Success,
    /// `FAILED:<reason>`; `optional_ok`: `optional_no_ca` passes it on.
    Failed {
        reason: &'static str,
        optional_ok: bool,
    },
}

impl Verdict {
    fn failed(reason: &'static str, optional_ok: bool) -> Self {
        Verdict::Failed {
            reason,
            optional_ok,
        }
    }

    /// A certificate that is no X.509 certificate at all. OpenSSL ends such a handshake
    /// instead; here the request gets nginx's 400 and the access log says why, and
    /// `optional_no_ca` passes the failure on as it does an unknown issuer (the application
    /// judges `ssl-client-verify` itself there).
    fn undecodable() -> Self {
        Verdict::failed("unable to decode certificate", true)
    }

    /// nginx's `$ssl_client_verify`.
    pub fn as_header(&self) -> String {
        match self {
            Verdict::None => "NONE".into(),
            Verdict::Success => "SUCCESS".into(),
            Verdict::Failed { reason, .. } => format!("FAILED:{reason}"),
        }
    }
}

/// The handshake side: asks for a certificate (naming `ca.crt`'s subjects), never requires
/// one, accepts any chain for now ([`CompiledPolicy::verify`] judges it per request), and
/// checks the client's signature with its key as usual.
#[derive(Debug)]
struct AskForCertificate {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let Some(spki) = public_key(cert) else {
            return Ok(HandshakeSignatureValid::assertion());
        };
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
        let key = webpki::RawPublicKeyEntity::try_from(&spki).map_err(|_| bad())?;
        // TLS 1.2 leaves the curve to the key: any algorithm of the scheme may fit it.
        let algs = self
            .algs
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .ok_or_else(bad)?
            .1;
        algs.iter()
            .any(|alg| key.verify_signature(*alg, message, dss.signature()).is_ok())
            .then(HandshakeSignatureValid::assertion)
            .ok_or_else(bad)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let Some(spki) = public_key(cert) else {
            return Ok(HandshakeSignatureValid::assertion());
        };
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A handshake configuration that asks for client certificates through `verifier` and
/// resolves the server's certificate through `certs`, with the settings of every HTTPS
/// handshake ([`Handshakes::config`]); `None` when rustls refuses them.
fn verifying_config(
    verifier: Arc<dyn ClientCertVerifier>,
    certs: &Arc<CertStore>,
    handshakes: &Handshakes,
) -> Option<Arc<ServerConfig>> {
    let resolver = Arc::clone(certs) as Arc<dyn ResolvesServerCert>;
    handshakes
        .config(Some(verifier), resolver)
        .ok()
        .map(Arc::new)
}

/// The SubjectPublicKeyInfo of `cert`, whatever its X.509 version (webpki's end-entity parser
/// takes v3 only). `None`: `cert` does not parse; no key to check the handshake's signature
/// with, and [`CompiledPolicy::verify`] fails the certificate per request.
fn public_key(cert: &CertificateDer<'_>) -> Option<SubjectPublicKeyInfoDer<'static>> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(SubjectPublicKeyInfoDer::from(c.public_key().raw.to_vec()))
}

/// The rustls configuration for a ClientHello naming `sni`, and the virtual host it chose:
/// the host's own when it verifies client certificates, else `default`.
pub fn handshake_config<U>(
    routes: &RouteTable<U>,
    table: &Table,
    certs: &Arc<CertStore>,
    sni: Option<&str>,
    handshakes: &Handshakes,
) -> (Option<String>, Arc<ServerConfig>) {
    let vhost = routes.host(sni.unwrap_or("")).map(|h| h.host.clone());
    let config = vhost
        .as_deref()
        .and_then(|h| match table.get(h).map(|a| &**a) {
            Some(HostAuth::Verify(p)) => p.server_config(certs, handshakes),
            _ => None,
        })
        .unwrap_or_else(|| Arc::clone(&handshakes.default));
    (vhost, config)
}

/// A TLS client connection's certificate, as the handshake left it.
#[derive(Debug)]
pub struct TlsClient {
    /// The virtual host the SNI chose (`None`: no host matched it).
    pub vhost: Option<String>,
    /// The ClientHello's server name, lower case (`None`: none sent).
    pub sni: Option<String>,
    /// As sent, leaf first; empty: none.
    chain: Vec<CertificateDer<'static>>,
    /// The last verdict and the policy it was reached under (a snapshot may change the CA
    /// while the connection lives: then the chain is verified again).
    verdict: Mutex<Option<(Arc<CompiledPolicy>, Arc<Checked>)>>,
}

/// A verified chain and what the headers say about it.
#[derive(Debug)]
struct Checked {
    verdict: Verdict,
    subject: String,
    issuer: String,
    escaped_pem: String,
}

impl TlsClient {
    pub fn new(
        vhost: Option<String>,
        chain: Option<&[CertificateDer<'_>]>,
        sni: Option<String>,
    ) -> Self {
        TlsClient {
            vhost,
            sni,
            chain: chain
                .unwrap_or_default()
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
            verdict: Mutex::new(None),
        }
    }

    fn checked(&self, policy: &Arc<CompiledPolicy>) -> Arc<Checked> {
        let mut cached = self.verdict.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, c)) = &*cached
            && Arc::ptr_eq(p, policy)
        {
            return Arc::clone(c);
        }
        let verdict = policy.verify(&self.chain, UnixTime::now());
        let (subject, issuer) = self
            .chain
            .first()
            .and_then(|c| names::subject_and_issuer(c))
            .unwrap_or_default();
        let escaped_pem = self
            .chain
            .first()
            .map(|c| names::escaped_pem(c))
            .unwrap_or_default();
        let c = Arc::new(Checked {
            verdict,
            subject,
            issuer,
            escaped_pem,
        });
        *cached = Some((Arc::clone(policy), Arc::clone(&c)));
        c
    }
}

/// Why a request of a host with client-certificate authentication is not served as asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Answer this status.
    Status(StatusCode, &'static str),
    /// Answer a 302 to `auth-tls-error-page` (a URL, as written).
    Redirect(String, &'static str),
    /// Serve `auth-tls-error-page` (a path of this host) instead, as nginx's internal redirect.
    Internal(String, &'static str),
}

/// The client-certificate step of a request to `vhost` (the virtual host its Host names) on a
/// connection with `tls` (`None`: plain HTTP): sets the `ssl-client-*` headers the pod gets
/// (the client's own are always dropped) or says why not to serve. `internal`: the request
/// is the error page's internal redirect, which nginx does not verify again.
pub fn admit(
    auth: &HostAuth,
    vhost: &str,
    tls: Option<&TlsClient>,
    headers: &mut HeaderMap,
    internal: bool,
) -> Result<(), Refusal> {
    for h in [
        &SSL_CLIENT_VERIFY,
        &SSL_CLIENT_SUBJECT_DN,
        &SSL_CLIENT_ISSUER_DN,
        &SSL_CLIENT_CERT,
    ] {
        headers.remove(h);
    }
    let policy = match auth {
        HostAuth::Unavailable(_) => {
            return Err(Refusal::Status(
                StatusCode::FORBIDDEN,
                "client certificate authentication unavailable",
            ));
        }
        HostAuth::Verify(p) => p,
    };
    let mode = policy.policy.verify;
    let mut subject = String::new();
    if let Some(tls) = tls {
        if mode != VerifyClient::Off && tls.vhost.as_deref() != Some(vhost) {
            return Err(Refusal::Status(
                StatusCode::MISDIRECTED_REQUEST,
                MISDIRECTED,
            ));
        }
        let checked = tls.checked(policy);
        let failed = |why: &'static str| match &policy.policy.error_page {
            Some(page) if page.starts_with('/') => Refusal::Internal(page.clone(), why),
            Some(page) => Refusal::Redirect(page.clone(), why),
            None => Refusal::Status(StatusCode::BAD_REQUEST, why),
        };
        let verdict = if mode == VerifyClient::Off {
            // Never asked for: nginx's `$ssl_client_verify` is NONE.
            Verdict::None
        } else {
            checked.verdict.clone()
        };
        if !internal {
            match (&verdict, mode) {
                (Verdict::None, VerifyClient::On) => return Err(failed(NO_CERTIFICATE)),
                (
                    Verdict::Failed {
                        optional_ok: true, ..
                    },
                    VerifyClient::OptionalNoCa,
                ) => {}
                (Verdict::Failed { .. }, _) => return Err(failed(CERTIFICATE_ERROR)),
                _ => {}
            }
        }
        let mut set = |name: &HeaderName, value: &str| {
            // nginx's proxy_set_header sends nothing for an empty value.
            if let Ok(v) = HeaderValue::from_str(value)
                && !value.is_empty()
            {
                headers.insert(name.clone(), v);
            }
        };
        set(&SSL_CLIENT_VERIFY, &verdict.as_header());
        if verdict != Verdict::None {
            subject = checked.subject.clone();
            set(&SSL_CLIENT_SUBJECT_DN, &checked.subject);
            set(&SSL_CLIENT_ISSUER_DN, &checked.issuer);
            if policy.policy.pass_certificate {
                set(&SSL_CLIENT_CERT, &checked.escaped_pem);
            }
        }
    }
    if let Some(re) = &policy.match_cn
        && !re.is_match(&subject)
    {
        return Err(Refusal::Status(StatusCode::FORBIDDEN, CN_MISMATCH));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
