//! Whether an Ingress's TLS certificate is valid for a host of its `spec.tls`. ingress-nginx
//! checks it when it builds the servers (controller.go `createServers`: Go's
//! `x509.Certificate.VerifyHostname`, then the Common Name) and serves the default
//! certificate for a host the Secret's certificate does not name, with a warning (e2e
//! settings/default_ssl_certificate.go "uses default ssl certificate for host based ingress
//! when configured certificate does not match host").

use rustls::pki_types::{CertificateDer, pem::PemObject};
use x509_parser::extensions::GeneralName;

/// Whether the leaf (first certificate) of the PEM `chain` names `host` (lower case, no
/// port) in a DNS subject alternative name or its Common Name. A name `*.example.com`
/// covers exactly one label in front of `example.com`, as Go's matching; names compare
/// case-insensitively. `None` when the leaf does not parse (the Secret's own check reports
/// that; the certificate is then used as it is).
pub fn covers(chain: &[u8], host: &str) -> Option<bool> {
    let leaf = CertificateDer::pem_slice_iter(chain).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cns = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string));
    Some(sans.into_iter().chain(cns).any(|n| matches(&n, host)))
}

/// `name` (a certificate's) against `host`: equal ignoring case, or a `*.` wildcard standing
/// for the host's first label (which must not be empty).
fn matches(name: &str, host: &str) -> bool {
    let name = name.trim_end_matches('.');
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(parent), Some((first, rest))) => {
            !first.is_empty() && parent.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::translate::fixtures::mk_cert_pem;

    #[test]
    fn sans_and_one_label_wildcards() {
        let (crt, _) = mk_cert_pem(&["a.example.com", "*.wild.example.com"]);
        let c = crt.as_bytes();
        assert_eq!(covers(c, "a.example.com"), Some(true));
        assert_eq!(covers(c, "x.wild.example.com"), Some(true));
        assert_eq!(covers(c, "x.y.wild.example.com"), Some(false));
        assert_eq!(covers(c, "wild.example.com"), Some(false));
        assert_eq!(covers(c, "b.example.com"), Some(false));
        assert_eq!(covers(b"no pem", "a.example.com"), None);
    }

    #[test]
    fn names_compare_ignoring_case() {
        assert!(matches("A.Example.COM", "a.example.com"));
        assert!(matches("*.Example.com", "x.example.com"));
        assert!(!matches("*.example.com", ".example.com"));
    }
}
