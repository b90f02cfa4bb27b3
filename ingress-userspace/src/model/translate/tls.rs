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
