//! TLS termination: the certificate is chosen by SNI — exact name, then the `*.` wildcard of
//! the name minus its first label, then the snapshot's default certificate (which translation
//! alone decides: `--default-ssl-certificate`), else one generated at start. Which name has
//! which certificate is translation's decision too (`model::translate::server_cert`). Certificates come from each snapshot and are swapped atomically, so
//! rotation needs no restart; parsed keys are reused while their PEM is unchanged. Hosts that
//! ask for client certificates get rustls configurations of their own that resolve through
//! this same store ([`super::client_cert`]).

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig, SupportedProtocolVersion,
    crypto::{CryptoProvider, ring::sign::any_supported_type},
    pki_types::{
        CertificateDer, PrivateKeyDer,
        pem::{Error as PemError, PemObject},
    },
    server::{ClientHello, ProducesTickets, ResolvesServerCert, danger::ClientCertVerifier},
    sign::CertifiedKey,
};

use crate::model::{
    L7Config, ObjectRef, TlsCertificate, TlsVersion,
    server_tls::{KxGroup, ServerTls, Tls12Suite},
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate of {secret}: {reason}")]
    BadCertificate { secret: String, reason: String },
    #[error("generating the default certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

type PemKey = (Pem, Pem);

/// A PEM as a map key: equal by content (at once when it is the same `Arc`), hashed by its
/// length and last 128 bytes (the end of the base64 body, which differs between keys): an
/// update with 1000 certificates hashed every PEM in full, ~3 KiB each.
#[derive(Clone)]
struct Pem(Arc<[u8]>);

impl PartialEq for Pem {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Pem {}

impl std::hash::Hash for Pem {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let tail = &self.0[self.0.len().saturating_sub(128)..];
        (self.0.len(), tail).hash(h)
    }
}

/// `Debug` counts entries only: `parsed` is keyed by private-key PEM.
#[derive(Default)]
struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Ingress wildcards by suffix: exactly one label more.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Gateway listener wildcards by suffix: one or more labels more.
    gateway_wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Parsed keys by PEM, reused by the next snapshot.
    parsed: HashMap<PemKey, Arc<CertifiedKey>>,
    /// Each Gateway address's own certificates (its HTTPS listeners'), chosen there instead.
    at: HashMap<std::net::IpAddr, CertTable>,
}

impl std::fmt::Debug for CertTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertTable")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .field(
                "gateway_wildcard",
                &self.gateway_wildcard.keys().collect::<Vec<_>>(),
            )
            .field("default", &self.default.is_some())
            .field("parsed", &self.parsed.len())
            .finish()
    }
}

/// SNI resolver whose table is replaced per snapshot.
#[derive(Debug)]
pub struct CertStore {
    table: ArcSwap<CertTable>,
    /// Served when the snapshot names no default certificate (ingress-nginx's "Fake
    /// Certificate").
    generated: Arc<CertifiedKey>,
}

impl CertStore {
    /// An empty store; every name gets the generated certificate until the first
    /// [`CertStore::update`]. Errors: the certificate could not be generated.
    pub fn new() -> Result<Self, TlsError> {
        Ok(CertStore {
            table: ArcSwap::from_pointee(CertTable::default()),
            generated: Arc::new(generate_default()?),
        })
    }

    /// Installs the certificates of a snapshot. A certificate that does not parse is left out
    /// (its hosts get the default certificate) and reported.
    pub fn update(&self, l7: &L7Config) -> Vec<TlsError> {
        self.update_from(l7, None)
    }

    /// [`Self::update`], where `installed` is the configuration this store was last updated
    /// with: when `l7` serves the very same certificates (the same `Arc`s, as translation
    /// keeps those it did not touch), the table stays as it is and nothing is hashed. Errors
    /// are those of a table built anew (a kept table's were reported when it was built).
    pub fn update_from(&self, l7: &L7Config, installed: Option<&L7Config>) -> Vec<TlsError> {
        if installed.is_some_and(|p| super::changes::same_certificates(p, l7)) {
            return Vec::new();
        }
        let old = self.table.load();
        let mut errors = Vec::new();
        let mut parsed = HashMap::new();
        let mut get = |c: &Arc<TlsCertificate>| -> Option<Arc<CertifiedKey>> {
            let key = (Pem(c.chain_pem.clone()), Pem(c.key_pem.clone()));
            if let Some(k) = parsed.get(&key).or_else(|| old.parsed.get(&key)) {
                let k = Arc::clone(k);
                parsed.insert(key, Arc::clone(&k));
                return Some(k);
            }
            match parse(c) {
                Ok(k) => {
                    let k = Arc::new(k);
                    parsed.insert(key, Arc::clone(&k));
                    Some(k)
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        };
        // By name, in key order (a snapshot's `NameMap` or a Gateway address's `BTreeMap`).
        // `gateway`: the certificates are Gateway listeners' (wildcards of one or more
        // labels).
        let mut names = |certificates: Vec<(&String, &Arc<TlsCertificate>)>, gateway: bool| {
            let mut table = CertTable::default();
            for (name, cert) in certificates {
                let Some(k) = get(cert) else { continue };
                let name = name.to_ascii_lowercase();
                if name.is_empty() {
                    table.default = Some(k);
                    continue;
                }
                let wildcards = if gateway {
                    &mut table.gateway_wildcard
                } else {
                    &mut table.wildcard
                };
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcards.insert(suffix.to_string(), k),
                    None => table.exact.insert(name, k),
                };
            }
            table
        };
        let mut table = names(l7.certificates.iter().collect(), false);
        let wildcards: Vec<(String, &Arc<TlsCertificate>)> =
            (l7.gateway_wildcard_certificates.iter())
                .map(|(suffix, c)| (format!("*.{suffix}"), c))
                .collect();
        let gateway = names(wildcards.iter().map(|(n, c)| (n, *c)).collect(), true);
        table.gateway_wildcard = gateway.gateway_wildcard;
        table.default = None;
        table.at = (l7.gateway_addresses.iter())
            .map(|(ip, a)| (*ip, names(a.certificates.iter().collect(), true)))
            .collect();
        // Which certificate is the default is translation's decision alone
        // (`L7Config::default_certificate`); a broken one falls back to the generated.
        table.default = l7.default_certificate.as_ref().and_then(&mut get);
        table.parsed = parsed;
        self.table.store(Arc::new(table));
        errors
    }

    /// The first certificate's DER that a handshake naming `sni` gets (`None`: the generated
    /// one), for tests comparing stores.
    #[cfg(test)]
    pub(super) fn served(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        let k = self.lookup(sni);
        (!Arc::ptr_eq(&k, &self.generated)).then(|| k.cert[0].to_vec())
    }

    /// Whether `ip` is a Gateway address with certificates of its own.
    pub fn has_address(&self, ip: std::net::IpAddr) -> bool {
        let t = self.table.load();
        !t.at.is_empty() && t.at.contains_key(&ip.to_canonical())
    }

    /// The certificate for `sni` on the local address `ip`: that of a listener of the
    /// Gateway owning `ip` (its listener without hostname for other names), else
    /// [`Self::lookup`]'s default.
    fn lookup_at(&self, ip: std::net::IpAddr, sni: Option<&str>) -> Arc<CertifiedKey> {
        let t = self.table.load();
        if let Some(own) = t.at.get(&ip.to_canonical())
            && let Some(k) = Self::by_name(own, sni).or(own.default.as_ref())
        {
            return Arc::clone(k);
        }
        t.default
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.generated))
    }

    /// The one certificate lookup by SNI name, in the order routing picks a virtual host
    /// ([`super::router::RouteTable::host`]): the exact name; then by suffix, longest first,
    /// an Ingress wildcard at the suffix one label shorter than the name (exactly one label,
    /// as ingress-nginx), then a Gateway listener wildcard at any suffix (one or more
    /// labels: Gateway API v1 `Listener.hostname`, `*.example.com` covers
    /// `a.b.example.com`).
    fn by_name<'t>(t: &'t CertTable, sni: Option<&str>) -> Option<&'t Arc<CertifiedKey>> {
        let name = sni?.to_ascii_lowercase();
        if let Some(k) = t.exact.get(&name) {
            return Some(k);
        }
        let mut suffixes = std::iter::successors(name.split_once('.').map(|(_, s)| s), |s| {
            s.split_once('.').map(|(_, rest)| rest)
        });
        let first = suffixes.next()?;
        (t.wildcard.get(first))
            .or_else(|| t.gateway_wildcard.get(first))
            .or_else(|| suffixes.find_map(|s| t.gateway_wildcard.get(s)))
    }

    fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let t = self.table.load();
        if let Some(k) = Self::by_name(&t, sni) {
            return Arc::clone(k);
        }
        t.default
            .clone()
            .unwrap_or_else(|| Arc::clone(&self.generated))
    }

    /// Whether a handshake naming `sni` finds a certificate of its own (not the default):
    /// with [`super::router::RouteTable::host`], what `ssl-reject-handshake` asks.
    pub fn names(&self, ip: std::net::IpAddr, sni: Option<&str>) -> bool {
        let t = self.table.load();
        let own = t.at.get(&ip.to_canonical());
        own.is_some_and(|own| Self::by_name(own, sni).is_some()) || Self::by_name(&t, sni).is_some()
    }
}

/// What every client-facing rustls configuration is made of, from the snapshot's
/// [`ServerTls`] (ConfigMap `ssl-protocols`, `ssl-ciphers`, `ssl-ecdh-curve`, `use-http2`,
/// `ssl-session-tickets`): the one place a handshake configuration is built, for the default
/// one and for every host or listener that asks for client certificates
/// ([`super::client_cert`]), which rebuild theirs when this changes ([`Self::generation`]).
pub struct Handshakes {
    /// What it was made from.
    pub settings: ServerTls,
    parts: Parts,
    /// Tells configurations made from different settings apart.
    pub generation: u64,
    /// Without client certificates, through the [`CertStore`].
    pub default: Arc<ServerConfig>,
    /// Refuses every handshake (no certificate resolves): `ssl-reject-handshake` for a name
    /// the proxy has neither a host nor a certificate for.
    pub refuse: Arc<ServerConfig>,
}

impl std::fmt::Debug for Handshakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshakes")
            .field("settings", &self.settings)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Resolves no certificate: rustls then ends the handshake with a fatal alert.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

impl Handshakes {
    /// The configurations for `settings`, resolving certificates through `certs`; the ticket
    /// keys of `previous` are kept. Errors: rustls refuses the combination (it cannot, as
    /// translation keeps every list non-empty), or no ticket key could be generated.
    pub fn new(
        settings: &ServerTls,
        certs: &Arc<CertStore>,
        previous: Option<&Handshakes>,
    ) -> Result<Handshakes, TlsError> {
        use rustls::crypto::ring::{cipher_suite as cs, kx_group};
        let tls12 = settings.tls12_suites.iter().map(|s| match s {
            Tls12Suite::EcdheEcdsaAes128GcmSha256 => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Tls12Suite::EcdheEcdsaAes256GcmSha384 => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            Tls12Suite::EcdheEcdsaChacha20Poly1305 => {
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            Tls12Suite::EcdheRsaAes128GcmSha256 => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            Tls12Suite::EcdheRsaAes256GcmSha384 => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            Tls12Suite::EcdheRsaChacha20Poly1305 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        });
        // TLS 1.3 suites: all, as nginx's `ssl_ciphers` leaves OpenSSL's TLS 1.3 list alone.
        let tls13 = [
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        let groups = settings.groups.iter().map(|g| match g {
            KxGroup::X25519 => kx_group::X25519,
            KxGroup::P256 => kx_group::SECP256R1,
            KxGroup::P384 => kx_group::SECP384R1,
        });
        let provider = Arc::new(CryptoProvider {
            cipher_suites: tls13.into_iter().chain(tls12).collect(),
            kx_groups: groups.collect(),
            ..rustls::crypto::ring::default_provider()
        });
        let versions = settings
            .versions
            .iter()
            .map(|v| rustls_version(*v))
            .collect();
        let ticketer = match (settings.session_tickets, previous) {
            (false, _) => None,
            (true, Some(p)) if p.parts.ticketer.is_some() => p.parts.ticketer.clone(),
            (true, _) => Some(rustls::crypto::ring::Ticketer::new()?),
        };
        let parts = Parts {
            provider,
            versions,
            ticketer,
            http2: settings.http2,
        };
        Ok(Handshakes {
            settings: settings.clone(),
            generation: previous.map_or(0, |p| p.generation + 1),
            default: Arc::new(
                parts.config(None, Arc::clone(certs) as Arc<dyn ResolvesServerCert>)?,
            ),
            refuse: Arc::new(parts.config(None, Arc::new(NoCertificate))?),
            parts,
        })
    }

    /// See [`Parts::config`].
    pub fn config(
        &self,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
        resolver: Arc<dyn ResolvesServerCert>,
    ) -> Result<ServerConfig, TlsError> {
        self.parts.config(verifier, resolver)
    }
}

/// The rustls values a [`Handshakes`]' configurations are built from.
struct Parts {
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
    /// Shared by every configuration, and kept across settings changes, so a ticket stays
    /// valid (`None`: `ssl-session-tickets` off).
    ticketer: Option<Arc<dyn ProducesTickets>>,
    http2: bool,
}

impl Parts {
    /// A configuration with these settings: client certificates asked through `verifier`
    /// (`None`: not asked), the server's certificate from `resolver`; ALPN h2 (with
    /// `use-http2`) and http/1.1; the server's suite order first (nginx's
    /// `ssl_prefer_server_ciphers on`, ingress-nginx's default); resumption from a session
    /// cache, and with `ssl-session-tickets` from stateless tickets too.
    pub fn config(
        &self,
        verifier: Option<Arc<dyn ClientCertVerifier>>,
        resolver: Arc<dyn ResolvesServerCert>,
    ) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&self.versions)?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(resolver);
        cfg.ignore_client_order = true;
        cfg.alpn_protocols = if self.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        if let Some(t) = &self.ticketer {
            cfg.ticketer = Arc::clone(t);
        }
        Ok(cfg)
    }
}

/// [`CertStore`] as seen on one local address (a Gateway's): the TLS configuration of a
/// connection accepted there resolves through it.
#[derive(Debug)]
pub struct AtAddress {
    pub store: Arc<CertStore>,
    pub ip: std::net::IpAddr,
}

impl AtAddress {
    /// `config` resolving certificates on `ip` (the rest unchanged).
    pub fn config(
        store: &Arc<CertStore>,
        ip: std::net::IpAddr,
        config: &ServerConfig,
    ) -> Arc<ServerConfig> {
        let mut c = config.clone();
        c.cert_resolver = Arc::new(AtAddress {
            store: Arc::clone(store),
            ip,
        });
        Arc::new(c)
    }
}

impl ResolvesServerCert for AtAddress {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.lookup_at(self.ip, hello.server_name()))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

fn secret_name(r: &ObjectRef) -> String {
    format!("{}/{}", r.namespace, r.name)
}

/// The chain (leaf first) and private key of `c`'s PEM, or why they do not parse
/// ([`TlsError::BadCertificate`]): for serving, and for a client certificate toward backends.
pub fn chain_and_key(
    c: &TlsCertificate,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        secret: secret_name(&c.secret),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("tls.crt: {e}")))?;
    if chain.is_empty() {
        return Err(bad("tls.crt holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&c.key_pem).map_err(|e| match e {
        PemError::NoItemsFound => bad("tls.key holds no private key".into()),
        e => bad(format!("tls.key: {e}")),
    })?;
    Ok((chain, key))
}

fn parse(c: &TlsCertificate) -> Result<CertifiedKey, TlsError> {
    let bad = |reason: String| TlsError::BadCertificate {
        secret: secret_name(&c.secret),
        reason,
    };
    let (chain, key) = chain_and_key(c)?;
    let signer = any_supported_type(&key).map_err(|e| bad(format!("tls.key: {e}")))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| bad(format!("key does not match certificate: {e}")))?;
    Ok(ck)
}

/// The subject and issuer common name of the default certificate.
pub const FAKE_CERTIFICATE_CN: &str = "Kubernetes Ingress Controller Fake Certificate";

/// A self-signed certificate named as ingress-nginx's "Fake Certificate"
/// (internal/net/ssl/ssl.go `getFakeHostSSLCert`): subject and issuer CN
/// [`FAKE_CERTIFICATE_CN`], O "Acme Co", SAN `ingress.local`, a server-auth end-entity
/// certificate. Differs: an ECDSA P-256 key (ingress-nginx's is RSA 2048) and rcgen's validity
/// period (ingress-nginx's is 365 days from start-up).
fn generate_default() -> Result<CertifiedKey, TlsError> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, FAKE_CERTIFICATE_CN);
    name.push(rcgen::DnType::OrganizationName, "Acme Co");
    params.distinguished_name = name;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    let der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let signer = any_supported_type(&key)?;
    Ok(CertifiedKey::new(vec![der], signer))
}

/// A self-signed certificate and key in PEM for `names` (tests, demo).
pub fn self_signed_pem(names: &[&str]) -> Result<(String, String), TlsError> {
    let cert = rcgen::generate_simple_self_signed(
        names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )?;
    Ok((cert.cert.pem(), cert.key_pair.serialize_pem()))
}

/// The rustls protocol version of a configured TLS version (toward clients and pods alike).
pub(crate) fn rustls_version(v: TlsVersion) -> &'static rustls::SupportedProtocolVersion {
    match v {
        TlsVersion::Tls12 => &rustls::version::TLS12,
        TlsVersion::Tls13 => &rustls::version::TLS13,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::ObjectKind;

    /// ingress-nginx e2e defaultbackend/ssl.go and ssl/secret_update.go read the default
    /// certificate's names: CN and O of subject and issuer, SAN `ingress.local`.
    #[test]
    fn the_default_certificate_is_named_as_ingress_nginx_fake_certificate() {
        let ck = generate_default().expect("generated");
        let (_, cert) = x509_parser::parse_x509_certificate(&ck.cert[0]).expect("parses");
        for name in [cert.subject(), cert.issuer()] {
            let cn: Vec<_> = name
                .iter_common_name()
                .filter_map(|a| a.as_str().ok())
                .collect();
            let o: Vec<_> = name
                .iter_organization()
                .filter_map(|a| a.as_str().ok())
                .collect();
            assert_eq!((cn, o), (vec![FAKE_CERTIFICATE_CN], vec!["Acme Co"]));
        }
        let san = cert
            .subject_alternative_name()
            .expect("valid")
            .expect("present");
        assert_eq!(
            format!("{:?}", san.value.general_names),
            r#"[DNSName("ingress.local")]"#
        );
    }

    fn cert(name: &str, pem: &(String, String)) -> Arc<TlsCertificate> {
        Arc::new(TlsCertificate {
            secret: ObjectRef {
                kind: ObjectKind::Secret,
                namespace: "default".into(),
                name: name.into(),
            },
            chain_pem: pem.0.as_bytes().into(),
            key_pem: pem.1.as_bytes().into(),
        })
    }

    fn first_der(k: &CertifiedKey) -> Vec<u8> {
        k.cert[0].to_vec()
    }

    #[test]
    fn sni_exact_wildcard_default_and_rotation() {
        let store = Arc::new(CertStore::new().unwrap());
        let a = self_signed_pem(&["a.example.com"]).unwrap();
        let w = self_signed_pem(&["*.example.com"]).unwrap();
        let d = self_signed_pem(&["fallback"]).unwrap();
        let mut certificates = BTreeMap::new();
        certificates.insert("a.example.com".to_string(), cert("a", &a));
        certificates.insert("*.example.com".to_string(), cert("w", &w));
        certificates.insert("fallback.test".to_string(), cert("fallback", &d));
        certificates.insert(
            "broken.test".to_string(),
            Arc::new(TlsCertificate {
                chain_pem: b"junk".as_slice().into(),
                ..(*cert("broken", &a)).clone()
            }),
        );
        let l7 = L7Config {
            default_certificate: Some(cert("fallback", &d)),
            certificates: certificates.into(),
            ..L7Config::default()
        };
        let errors = store.update(&l7);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let a_der = first_der(&store.lookup(Some("a.example.com")));
        let w_der = first_der(&store.lookup(Some("b.example.com")));
        let d_der = first_der(&store.lookup(Some("x.y.example.com")));
        assert_ne!(a_der, w_der);
        assert_ne!(w_der, d_der);
        assert_eq!(first_der(&store.lookup(None)), d_der);
        assert_eq!(first_der(&store.lookup(Some("A.EXAMPLE.COM"))), a_der);

        // Rotation: a new PEM for a.example.com is served after the next update.
        let a2 = self_signed_pem(&["a.example.com"]).unwrap();
        let mut l7b = l7.clone();
        l7b.certificates
            .insert("a.example.com".to_string(), cert("a", &a2));
        store.update(&l7b);
        assert_ne!(first_der(&store.lookup(Some("a.example.com"))), a_der);
        // Unchanged PEM reuses the parsed key.
        assert!(Arc::ptr_eq(
            &store.lookup(Some("b.example.com")),
            &store.table.load().wildcard["example.com"]
        ));

        // No configured default: the generated one.
        store.update(&L7Config::default());
        assert!(Arc::ptr_eq(
            &store.lookup(Some("a.example.com")),
            &store.generated
        ));
    }

    /// A Gateway listener's `*.` hostname covers one or more labels (Gateway API v1
    /// `Listener.hostname`), so its certificate is served for `a.b.wild.example` too, the
    /// longest matching suffix first; an Ingress wildcard stays one label (ingress-nginx's
    /// `get_pem_cert_uid`) and comes first at its own suffix; the same on a Gateway's own
    /// address. Found by a fresh-user trial (the generated certificate was served).
    #[test]
    fn gateway_wildcards_cover_several_labels_longest_suffix_first() {
        let store = CertStore::new().unwrap();
        let pem = |n: &str| self_signed_pem(&[n]).unwrap();
        let (gw, deep, ing) = (
            pem("*.wild.example"),
            pem("*.b.wild.example"),
            pem("*.i.example"),
        );
        let l7 = L7Config {
            certificates: BTreeMap::from([("*.i.example".to_string(), cert("ing", &ing))]).into(),
            gateway_wildcard_certificates: BTreeMap::from([
                ("wild.example".to_string(), cert("gw", &gw)),
                ("b.wild.example".to_string(), cert("deep", &deep)),
                ("i.example".to_string(), cert("gw-i", &gw)),
            ]),
            gateway_addresses: BTreeMap::from([(
                std::net::IpAddr::from([127, 0, 0, 9]),
                crate::model::GatewayAddress {
                    certificates: BTreeMap::from([(
                        "*.wild.example".to_string(),
                        cert("own", &deep),
                    )]),
                    ..Default::default()
                },
            )]),
            ..L7Config::default()
        };
        assert!(store.update(&l7).is_empty());
        let der = |sni: &str| first_der(&store.lookup(Some(sni)));
        let own = |p: &(String, String)| {
            let c = cert("x", p);
            first_der(&parse(&c).unwrap())
        };
        assert_eq!(der("x.wild.example"), own(&gw));
        assert_eq!(der("a.c.wild.example"), own(&gw));
        assert_eq!(der("a.b.wild.example"), own(&deep));
        assert_eq!(der("x.y.b.wild.example"), own(&deep));
        assert_eq!(der("x.i.example"), own(&ing));
        assert_eq!(
            der("x.y.i.example"),
            own(&gw),
            "the Gateway's, not the Ingress's"
        );
        assert!(Arc::ptr_eq(
            &store.lookup(Some("wild.example")),
            &store.generated
        ));
        let at = first_der(&store.lookup_at([127, 0, 0, 9].into(), Some("a.b.c.wild.example")));
        assert_eq!(at, own(&deep));
    }

    #[test]
    fn the_default_certificate_is_the_snapshots_alone() {
        // Translation alone decides the default (`--default-ssl-certificate`): a certificate
        // of any Secret name among the hosts' is never taken as the default by the store
        // itself.
        let store = CertStore::new().unwrap();
        let a = self_signed_pem(&["a.example.com"]).unwrap();
        let mut certificates = BTreeMap::new();
        certificates.insert("a.example.com".to_string(), cert("fallback", &a));
        let l7 = L7Config {
            certificates: certificates.into(),
            ..L7Config::default()
        };
        assert!(store.update(&l7).is_empty());
        assert!(Arc::ptr_eq(
            &store.lookup(Some("other.example.org")),
            &store.generated
        ));
        let with_default = L7Config {
            default_certificate: Some(cert("fallback", &a)),
            ..l7
        };
        store.update(&with_default);
        assert_eq!(
            first_der(&store.lookup(None)),
            first_der(&store.lookup(Some("a.example.com")))
        );
    }
}
