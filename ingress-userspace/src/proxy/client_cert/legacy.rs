//! Chains webpki refuses and OpenSSL, hence nginx, judges: with X.509 v1 (or v2) certificates
//! (webpki takes v3 only; `openssl x509 -req` without an extfile makes a v1 certificate, and
//! that is how ingress-nginx's PREREQUISITES.md makes client certificates), and a client
//! certificate that is a CA (webpki's `CaUsedAsEndEntity`; `openssl req -x509` makes CA:TRUE,
//! which OpenSSL's client purpose check does not mind).
//!
//! The chain is built as OpenSSL's `X509_verify_cert` does: from the client's certificate up,
//! each issuer found by name (trusted first: a certificate of `ca.crt`, else one the client
//! sent) and checked by its signature (x509-parser's `verify`, ring); the certificates the
//! client sent above its own must be CAs by OpenSSL's `check_ca` (basicConstraints CA, or a
//! keyUsage with keyCertSign, or a self-signed v1 certificate); every certificate's validity
//! times; an extendedKeyUsage on the client's certificate must allow clientAuth; with a CRL,
//! every certificate below the `ca.crt` one must be covered by a CRL its issuer signed. From
//! the `ca.crt` certificate on, [`CompiledPolicy::climb`] finishes as for v3 chains.

use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::{
    certificate::X509Certificate, prelude::FromDer, revocation_list::CertificateRevocationList,
    x509::X509Version,
};

use super::{CompiledPolicy, Verdict};

/// Whether a certificate of `chain` is older than v3 (then webpki cannot judge the chain).
pub(super) fn has_pre_v3(chain: &[CertificateDer<'_>]) -> bool {
    chain.iter().any(|der| {
        matches!(x509_parser::parse_x509_certificate(der),
            Ok((_, c)) if c.version() != X509Version::V3)
    })
}

/// OpenSSL's `check_ca` (crypto/x509/v3_purp.c): may `c` issue certificates?
fn is_ca(c: &X509Certificate<'_>) -> bool {
    let key_usage = c.key_usage().ok().flatten();
    if key_usage
        .as_ref()
        .is_some_and(|ku| !ku.value.key_cert_sign())
    {
        return false;
    }
    match c.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca,
        Ok(None) => (c.version() == X509Version::V1 && self_signed(c)) || key_usage.is_some(),
        Err(_) => false,
    }
}

fn self_signed(c: &X509Certificate<'_>) -> bool {
    c.subject().as_raw() == c.issuer().as_raw()
}

impl CompiledPolicy {
    /// Verifies `chain` (leaf first, at least one certificate, each parsing) the OpenSSL way.
    pub(super) fn verify_openssl_way(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Verdict {
        let mut sent = Vec::with_capacity(chain.len());
        for der in chain {
            match x509_parser::parse_x509_certificate(der) {
                Ok((_, c)) => sent.push(c),
                Err(_) => return Verdict::undecodable(),
            }
        }
        // Parsed when the policy was compiled, so each parses again; index as `self.cas`.
        let cas: Vec<Option<X509Certificate<'_>>> = self
            .cas
            .iter()
            .map(|c| {
                x509_parser::parse_x509_certificate(&c.der)
                    .ok()
                    .map(|(_, c)| c)
            })
            .collect();
        // Indices into `sent`, the client's certificate first.
        let mut path = vec![0usize];
        let mut used = vec![false; sent.len()];
        used[0] = true;
        let anchor = loop {
            let cur = &sent[path[path.len() - 1]];
            let mut bad_signature = false;
            let mut issued = |by: &X509Certificate<'_>| {
                if by.subject().as_raw() != cur.issuer().as_raw() {
                    return false;
                }
                let ok = cur.verify_signature(Some(by.public_key())).is_ok();
                bad_signature |= !ok;
                ok
            };
            if let Some(i) = cas.iter().position(|c| c.as_ref().is_some_and(&mut issued)) {
                break i;
            }
            if self_signed(cur) {
                return if path.len() == 1 {
                    Verdict::failed("self-signed certificate", true)
                } else {
                    Verdict::failed("self-signed certificate in certificate chain", true)
                };
            }
            let next = (0..sent.len()).find(|&i| !used[i] && issued(&sent[i]));
            match next {
                Some(i) if is_ca(&sent[i]) => {
                    used[i] = true;
                    path.push(i);
                }
                Some(_) => return Verdict::failed("invalid CA certificate", false),
                None if bad_signature => {
                    return Verdict::failed("certificate signature failure", false);
                }
                None => return Verdict::failed("unable to get local issuer certificate", true),
            }
        };
        let Some(anchor_cert) = &cas[anchor] else {
            return Verdict::failed("unable to get issuer certificate", true);
        };
        let at = now.as_secs().min(i64::MAX as u64) as i64;
        for c in path.iter().map(|&i| &sent[i]).chain([anchor_cert]) {
            if c.validity().not_before.timestamp() > at {
                return Verdict::failed("certificate is not yet valid", false);
            }
            if c.validity().not_after.timestamp() < at {
                return Verdict::failed("certificate has expired", false);
            }
        }
        if let Ok(Some(eku)) = sent[0].extended_key_usage()
            && !(eku.value.client_auth || eku.value.any)
        {
            return Verdict::failed("unsupported certificate purpose", false);
        }
        if !self.crl_der.is_empty() {
            for (n, &i) in path.iter().enumerate() {
                let issuer = path.get(n + 1).map(|&j| &sent[j]).unwrap_or(anchor_cert);
                if let Some(v) = self.revoked(&sent[i], issuer, at) {
                    return v;
                }
            }
        }
        self.climb(anchor, path.len() - 1)
    }

    /// The CRL verdict on `c` (issued by `issuer`): `None` when a CRL `issuer` signed covers
    /// it and does not list it.
    fn revoked(
        &self,
        c: &X509Certificate<'_>,
        issuer: &X509Certificate<'_>,
        at: i64,
    ) -> Option<Verdict> {
        let crl = self.crl_der.iter().find_map(|der| {
            let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
            (crl.issuer().as_raw() == c.issuer().as_raw()
                && crl.verify_signature(issuer.public_key()).is_ok())
            .then_some(crl)
        });
        let Some(crl) = crl else {
            return Some(Verdict::failed("unable to get certificate CRL", false));
        };
        if crl.next_update().is_some_and(|t| t.timestamp() < at) {
            return Some(Verdict::failed("CRL has expired", false));
        }
        crl.iter_revoked_certificates()
            .any(|r| r.raw_serial() == c.raw_serial())
            .then(|| Verdict::failed("certificate revoked", false))
    }
}
