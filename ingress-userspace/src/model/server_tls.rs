//! How the proxy's TLS handshakes with clients go, from the controller ConfigMap's
//! `ssl-protocols`, `ssl-ciphers`, `ssl-ecdh-curve`, `use-http2`, `ssl-session-tickets` and
//! `ssl-reject-handshake` ([`crate::model::translate::server_tls`] reads them): one value for
//! every HTTPS listener and every handshake variant (with or without client certificates);
//! ssl-passthrough connections are not terminated and take none of it.

use super::TlsVersion;

/// A TLS 1.2 cipher suite the proxy can offer (those of its rustls crypto provider, *ring*),
/// by its OpenSSL name (ingress-nginx's `ssl-ciphers` is an OpenSSL cipher string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tls12Suite {
    EcdheEcdsaAes128GcmSha256,
    EcdheEcdsaAes256GcmSha384,
    EcdheEcdsaChacha20Poly1305,
    EcdheRsaAes128GcmSha256,
    EcdheRsaAes256GcmSha384,
    EcdheRsaChacha20Poly1305,
}

impl Tls12Suite {
    /// Every suite, in OpenSSL's default preference (ECDSA before RSA at each strength;
    /// AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM): the order an alias such as `HIGH` adds
    /// them in.
    pub const ALL: [Tls12Suite; 6] = [
        Tls12Suite::EcdheEcdsaAes256GcmSha384,
        Tls12Suite::EcdheRsaAes256GcmSha384,
        Tls12Suite::EcdheEcdsaChacha20Poly1305,
        Tls12Suite::EcdheRsaChacha20Poly1305,
        Tls12Suite::EcdheEcdsaAes128GcmSha256,
        Tls12Suite::EcdheRsaAes128GcmSha256,
    ];

    /// The OpenSSL name (`openssl ciphers -v`).
    pub fn openssl_name(self) -> &'static str {
        match self {
            Tls12Suite::EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            Tls12Suite::EcdheEcdsaAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            Tls12Suite::EcdheEcdsaChacha20Poly1305 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            Tls12Suite::EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
            Tls12Suite::EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            Tls12Suite::EcdheRsaChacha20Poly1305 => "ECDHE-RSA-CHACHA20-POLY1305",
        }
    }
}

/// A key-exchange group the proxy can offer (its provider's: *ring* has no X25519MLKEM768).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KxGroup {
    X25519,
    /// `prime256v1`, `P-256`, `secp256r1`.
    P256,
    /// `secp384r1`, `P-384`.
    P384,
}

impl KxGroup {
    /// The provider's own order, which `ssl-ecdh-curve: auto` (the default) keeps.
    pub const AUTO: [KxGroup; 3] = [KxGroup::X25519, KxGroup::P256, KxGroup::P384];
}

/// The client-facing TLS settings; the default is ingress-nginx's defaults (config.go:
/// `ssl-protocols: "TLSv1.2 TLSv1.3"`, its `ssl-ciphers` string less the DHE suites rustls
/// does not have, `ssl-ecdh-curve: auto`, `use-http2: true`, `ssl-session-tickets: false`,
/// `ssl-reject-handshake: false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// TLS versions offered (`ssl-protocols`), never empty.
    pub versions: Vec<TlsVersion>,
    /// TLS 1.2 suites in the server's order of preference (`ssl-ciphers`; nginx's
    /// `ssl_prefer_server_ciphers on`), never empty. TLS 1.3 suites are all offered, as
    /// nginx's `ssl_ciphers` does not govern them.
    pub tls12_suites: Vec<Tls12Suite>,
    /// Key-exchange groups in the server's order (`ssl-ecdh-curve`), never empty.
    pub groups: Vec<KxGroup>,
    /// `use-http2`: HTTP/2 through ALPN on TLS and with prior knowledge on plain ports.
    pub http2: bool,
    /// `ssl-session-tickets`: stateless resumption tickets (TLS 1.2 and 1.3); off, sessions
    /// resume from the proxy's session cache (nginx's `ssl_session_cache`) only.
    pub session_tickets: bool,
    /// `ssl-reject-handshake`: a handshake whose SNI names no host and no certificate (or
    /// that names none) is refused instead of served the default certificate.
    pub reject_unknown_names: bool,
}

impl Default for ServerTls {
    fn default() -> Self {
        ServerTls {
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            tls12_suites: DEFAULT_TLS12_SUITES.to_vec(),
            groups: KxGroup::AUTO.to_vec(),
            http2: true,
            session_tickets: false,
            reject_unknown_names: false,
        }
    }
}

/// ingress-nginx's default `ssl-ciphers` (config.go `sslCiphers`) as rustls has it: its
/// ECDHE suites in its order; its two `DHE-RSA-*` suites do not exist in rustls.
pub const DEFAULT_TLS12_SUITES: [Tls12Suite; 6] = [
    Tls12Suite::EcdheEcdsaAes128GcmSha256,
    Tls12Suite::EcdheRsaAes128GcmSha256,
    Tls12Suite::EcdheEcdsaAes256GcmSha384,
    Tls12Suite::EcdheRsaAes256GcmSha384,
    Tls12Suite::EcdheEcdsaChacha20Poly1305,
    Tls12Suite::EcdheRsaChacha20Poly1305,
];
