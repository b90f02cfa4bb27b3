//! Verification rules taken from OpenSSL as nginx uses it (no partial chains, depth counted in
//! CA certificates between the client's and the root, `optional_no_ca`'s tolerated errors).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, UnixTime};

use super::*;
use crate::model::{ObjectKind, ObjectRef};

struct Issued {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    }
    p
}

fn issue(cn: &str, ca: bool, by: Option<&Issued>) -> Issued {
    let key = KeyPair::generate().unwrap();
    let p = params(cn, ca);
    let cert = match by {
        Some(i) => p.signed_by(&key, &i.cert, &i.key).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    Issued { cert, key }
}

fn policy(cas: &[&Issued], depth: u32) -> CompiledPolicy {
    let pem: String = cas.iter().map(|c| c.cert.pem()).collect();
    CompiledPolicy::new(Arc::new(ClientCertPolicy {
        secret: ObjectRef::new(ObjectKind::Secret, "default", "ca"),
        ca_pem: pem.as_bytes().into(),
        crl_pem: None,
        verify: VerifyClient::On,
        depth,
        pass_certificate: false,
        error_page: None,
        match_cn: None,
    }))
    .unwrap()
}

fn chain(certs: &[&Issued]) -> Vec<CertificateDer<'static>> {
    certs.iter().map(|c| c.cert.der().clone()).collect()
}

fn reason(v: Verdict) -> &'static str {
    match v {
        Verdict::Failed { reason, .. } => reason,
        other => panic!("not a failure: {other:?}"),
    }
}

#[test]
fn chains_must_end_at_a_self_signed_ca_of_the_store() {
    let root = issue("root", true, None);
    let int = issue("int", true, Some(&root));
    let leaf = issue("leaf", false, Some(&int));
    let now = UnixTime::now();
    // Only the intermediate trusted: OpenSSL without partial chains cannot reach a root.
    let v = policy(&[&int], 1).verify(&chain(&[&leaf]), now);
    assert_eq!(reason(v), "unable to get issuer certificate");
    // Root and intermediate trusted, the client sends only its own: one CA in between.
    assert_eq!(
        policy(&[&root, &int], 1).verify(&chain(&[&leaf]), now),
        Verdict::Success
    );
    // The client sends the intermediate too, and `ca.crt` also has it: still one between.
    assert_eq!(
        policy(&[&int, &root], 1).verify(&chain(&[&leaf, &int]), now),
        Verdict::Success
    );
    // Intermediates from the client and from `ca.crt` add up: root > i1 > i2 > i3 > leaf with
    // `ca.crt` = i1 + root and the client sending i3, i2 is three between.
    let i2 = issue("i2", true, Some(&int));
    let i3 = issue("i3", true, Some(&i2));
    let deep = issue("deep", false, Some(&i3));
    let sent = chain(&[&deep, &i3, &i2]);
    assert_eq!(
        policy(&[&int, &root], 3).verify(&sent, now),
        Verdict::Success
    );
    let v = policy(&[&int, &root], 2).verify(&sent, now);
    assert_eq!(reason(v), "certificate chain too long");
    // Depth 0: only a certificate the root signed itself.
    let v = policy(&[&root, &int], 0).verify(&chain(&[&leaf]), now);
    assert_eq!(reason(v), "certificate chain too long");
}

#[test]
fn optional_no_ca_tolerates_only_unknown_issuers() {
    let root = issue("root", true, None);
    let stranger_ca = issue("other", true, None);
    let stranger = issue("stranger", false, Some(&stranger_ca));
    let selfie = issue("selfie", false, None);
    let p = policy(&[&root], 1);
    let now = UnixTime::now();
    for (c, want) in [
        (
            chain(&[&stranger]),
            "unable to get local issuer certificate",
        ),
        (chain(&[&selfie]), "self-signed certificate"),
        (
            chain(&[&stranger, &stranger_ca]),
            "self-signed certificate in certificate chain",
        ),
    ] {
        match p.verify(&c, now) {
            Verdict::Failed {
                reason,
                optional_ok,
            } => {
                assert_eq!(reason, want);
                assert!(optional_ok, "{want}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(p.verify(&[], now), Verdict::None);
}

/// A client certificate that is a CA, as `openssl req -x509 -newkey ...` makes by default
/// (CA:TRUE): webpki refuses it as an end entity, OpenSSL judges its chain as any other. Self
/// signed: X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, which `optional_no_ca` passes on; from an
/// unknown CA: UNABLE_TO_GET_ISSUER_CERT_LOCALLY; from the trusted CA: verified.
#[test]
fn ca_certificates_as_the_clients_are_judged_as_openssl_does() {
    let root = issue("root", true, None);
    let stranger_ca = issue("other", true, None);
    let p = policy(&[&root], 1);
    let now = UnixTime::now();
    let mallory = issue("mallory", true, None);
    let from_stranger = issue("ca-leaf", true, Some(&stranger_ca));
    for (c, want) in [
        (chain(&[&mallory]), "self-signed certificate"),
        (
            chain(&[&from_stranger]),
            "unable to get local issuer certificate",
        ),
        (
            chain(&[&from_stranger, &stranger_ca]),
            "self-signed certificate in certificate chain",
        ),
    ] {
        assert_eq!(
            p.verify(&c, now),
            Verdict::Failed {
                reason: want,
                optional_ok: true
            },
            "{want}"
        );
    }
    let ours = issue("ca-leaf", true, Some(&root));
    assert_eq!(p.verify(&chain(&[&ours]), now), Verdict::Success);
}

#[test]
fn expired_certificates_fail_even_for_optional_no_ca() {
    let root = issue("root", true, None);
    let mut p = params("old", false);
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let key = KeyPair::generate().unwrap();
    let old = p.signed_by(&key, &root.cert, &root.key).unwrap();
    let v = policy(&[&root], 1).verify(&[old.der().clone()], UnixTime::now());
    assert_eq!(
        v,
        Verdict::Failed {
            reason: "certificate has expired",
            optional_ok: false
        }
    );
}
