//! TLS Secrets: check that `tls.crt` is a PEM chain and `tls.key` a PEM private key that matches
//! it, and turn them into [`TlsCertificate`]s. Results are cached by Secret (pointer-equal
//! `Arc`s are the same object) so unchanged Secrets are not re-parsed on every translation.

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer,
    pem::{Error as PemError, PemObject},
};

use crate::model::{ObjectKind, ObjectRef, TlsCertificate};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TlsSecretError {
    #[error("secret has no {0}")]
    Missing(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.key holds no PEM private key")]
    NoKey,
    #[error("PEM does not parse: {0}")]
    Pem(String),
    #[error("certificate and key do not belong together or are unsupported: {0}")]
    Mismatch(String),
}

/// Parses and checks one Secret.
pub fn parse_secret(secret: &Secret) -> Result<TlsCertificate, TlsSecretError> {
    let data = secret.data.as_ref();
    let get = |k: &'static str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or(TlsSecretError::Missing(k))
    };
    let chain = get("tls.crt")?;
    let key = get("tls.key")?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSecretError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsSecretError::NoCertificate);
    }
    let der = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        PemError::NoItemsFound => TlsSecretError::NoKey,
        e => TlsSecretError::Pem(e.to_string()),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, der, &provider)
        .map_err(|e| TlsSecretError::Mismatch(e.to_string()))?;
    Ok(TlsCertificate {
        secret: ObjectRef::new(
            ObjectKind::Secret,
            secret.metadata.namespace.clone().unwrap_or_default(),
            secret.metadata.name.clone().unwrap_or_default(),
        ),
        chain_pem: Arc::from(chain),
        key_pem: Arc::from(key),
    })
}

/// The key presented to backends as a client certificate (`proxy-ssl-secret`'s `tls.crt` and
/// `tls.key`, a Gateway's backend client certificate): `certs` leaf first, `key` checked
/// against the leaf. A leaf that webpki cannot read (version 1, what `openssl x509 -req`
/// makes without extensions) is presented unchecked, as nginx presents it: the backend
/// decides. The one check both translation (a diagnostic, 503) and the proxy (its TLS
/// configuration) make.
///
/// Errors: a key that does not parse, or that is not the leaf's.
pub fn client_certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::sign::CertifiedKey, String> {
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let provider = rustls::crypto::ring::default_provider();
    let signing = (provider.key_provider)
        .load_private_key(key)
        .map_err(|e| format!("tls.key: {e}"))?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err("tls.key is not the key of the first certificate in tls.crt".into())
        }
        _ => Ok(certified),
    }
}

/// `InvalidTlsSecret`'s message.
pub fn invalid_message(key: &crate::store::Key, e: &TlsSecretError) -> String {
    format!("TLS secret {key}: {e}; the default certificate is used")
}

type Parsed = Result<Arc<TlsCertificate>, TlsSecretError>;

/// Parse results kept across translations, keyed by Secret identity. `Debug` names the
/// Secrets only (the cached `Secret`s hold `tls.key`).
#[derive(Default)]
pub struct TlsCache {
    entries: HashMap<ObjectRef, (Arc<Secret>, Parsed)>,
}

impl std::fmt::Debug for TlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

impl TlsCache {
    pub fn get(&mut self, key: &ObjectRef, secret: &Arc<Secret>) -> Parsed {
        if let Some((cached, parsed)) = self.entries.get(key)
            && Arc::ptr_eq(cached, secret)
        {
            return parsed.clone();
        }
        let parsed = parse_secret(secret).map(Arc::new);
        self.entries
            .insert(key.clone(), (secret.clone(), parsed.clone()));
        parsed
    }

    /// Drops entries of Secrets that no longer exist.
    pub fn retain(&mut self, live: impl Fn(&ObjectRef) -> bool) {
        self.entries.retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn secrets() {
        let (crt, key) = mk_cert_pem(&["a.example.com"]);
        let (_, other_key) = mk_cert_pem(&["b.example.com"]);
        let ok = mk_tls_secret("default", "a", &crt, &key);
        let cert = parse_secret(&ok).unwrap();
        assert_eq!(&*cert.chain_pem, crt.as_bytes());
        assert_eq!(cert.secret.name, "a");

        type Check = fn(&TlsSecretError) -> bool;
        let cases: [(&str, Secret, Check); 4] = [
            ("no key", mk_tls_secret("default", "x", &crt, ""), |e| {
                matches!(e, TlsSecretError::Missing("tls.key"))
            }),
            (
                "garbage cert",
                mk_tls_secret("default", "x", "hello", &key),
                |e| matches!(e, TlsSecretError::NoCertificate),
            ),
            (
                "key in cert slot",
                mk_tls_secret("default", "x", &key, &key),
                |e| matches!(e, TlsSecretError::NoCertificate),
            ),
            (
                "mismatched key",
                mk_tls_secret("default", "x", &crt, &other_key),
                |e| matches!(e, TlsSecretError::Mismatch(_)),
            ),
        ];
        for (name, secret, check) in cases {
            let err = parse_secret(&secret).unwrap_err();
            assert!(check(&err), "{name}: {err}");
        }
    }
}

#[cfg(test)]
mod client_key_tests {
    use super::*;

    /// A version 1 client certificate (`openssl x509 -req` without extensions) and its key.
    const V1_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIBFDCBvAIBBzAKBggqhkjOPQQDAjAQMQ4wDAYDVQQDDAV2MSBDQTAgFw0yNjEy
MDIwMTU4NTJaGA8yMTI2MTEwODAxNTg1MlowHDEaMBgGA1UEAwwRaW5ncmVzcyB2
MSBjbGllbnQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASS9c8p6ztyiary4CY9
jEapl4Y7RkNlY4CZpl8MNWiVF7T/YO1MPwYGgWnsHmiNHNmHt9vTiUra83e2+3OC
dYOMMAoGCCqGSM49BAMCA0cAMEQCIGg5FyCTqB33shPK6jkg9crWoTmtRV34EAf/
Sm7HKjvgAiAVP+gEt2sy+FS4zOmh6RR+C7cS+8SiL3Jwaqigdle8dg==
-----END CERTIFICATE-----";
    const V1_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgculAEB/N+MhvWCS3
z7uM2q71tKa22EQMVJK0G3I1AfGhRANCAASS9c8p6ztyiary4CY9jEapl4Y7RkNl
Y4CZpl8MNWiVF7T/YO1MPwYGgWnsHmiNHNmHt9vTiUra83e2+3OCdYOM
-----END PRIVATE KEY-----";

    fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A version 1 leaf is presented (found by a fresh-user trial: every request was 502 with
    /// nothing said); a key that is not the leaf's is refused, for a v3 leaf as for v1 when
    /// webpki can read it.
    #[test]
    fn a_v1_client_certificate_is_presented_and_a_wrong_key_refused() {
        let key = PrivateKeyDer::from_pem_slice(V1_KEY.as_bytes()).unwrap();
        assert!(client_certified_key(certs(V1_CRT), key).is_ok());
        let (crt, _) = super::super::fixtures::mk_cert_pem(&["client.test"]);
        let (_, other_key) = super::super::fixtures::mk_cert_pem(&["other.test"]);
        let wrong = PrivateKeyDer::from_pem_slice(other_key.as_bytes()).unwrap();
        let err = client_certified_key(certs(&crt), wrong).unwrap_err();
        assert!(err.contains("not the key"), "{err}");
        let key = PrivateKeyDer::from_pem_slice(V1_KEY.as_bytes()).unwrap();
        assert!(client_certified_key(Vec::new(), key).is_err());
    }
}
