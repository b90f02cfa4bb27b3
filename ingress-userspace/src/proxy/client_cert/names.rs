//! What nginx puts in the `ssl-client-*` headers about a certificate: the subject and issuer
//! distinguished names as `$ssl_client_s_dn` / `$ssl_client_i_dn` print them (RFC 2253 form,
//! OpenSSL's `X509_NAME_print_ex(XN_FLAG_RFC2253)`, nginx 1.11.6+) and the certificate as
//! `$ssl_client_escaped_cert` (PEM, URL-escaped).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use x509_parser::{
    der_parser::asn1_rs::{Tag, ToDer},
    prelude::{FromDer, X509Certificate},
    x509::{AttributeTypeAndValue, X509Name},
};

/// Subject and issuer of a DER certificate in RFC 2253 form; `None` if it does not parse.
pub fn subject_and_issuer(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some((rfc2253(cert.subject()), rfc2253(cert.issuer())))
}

/// RFC 2253 (as OpenSSL prints it): the last RDN first, `,` between RDNs, `+` within one,
/// OpenSSL's short names (`CN`, `O`, `emailAddress`...), an unknown type as its dotted OID
/// with the DER value in hex (`1.2.3=#0c0161`).
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+"))
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute(a: &AttributeTypeAndValue<'_>) -> String {
    let oid = a.attr_type().to_id_string();
    let Some(short) = short_name(&oid) else {
        return format!("{oid}={}", dump(a));
    };
    match text(a) {
        Some(s) => format!("{short}={}", escape(&s)),
        None => format!("{short}={}", dump(a)),
    }
}

/// OpenSSL's short names (crypto/objects/objects.txt) of the attribute types found in names.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// The value as text, for the ASN.1 string types (OpenSSL converts them all to UTF-8).
fn text(a: &AttributeTypeAndValue<'_>) -> Option<String> {
    let v = a.attr_value();
    let data = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => String::from_utf8(data.to_vec()).ok(),
        // T.61: OpenSSL takes each byte as a Latin-1 character.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// `#` and the DER of the value in hex (OpenSSL's `ASN1_STRFLGS_DUMP_DER`).
fn dump(a: &AttributeTypeAndValue<'_>) -> String {
    let der = a.attr_value().to_der_vec().unwrap_or_default();
    let mut s = String::from("#");
    for b in der {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// OpenSSL's `ASN1_STRFLGS_RFC2253` escaping of a value: `,+"\<>;` with a backslash, also a
/// leading `#` or space and a trailing space; control characters and every byte of a non-ASCII
/// character's UTF-8 as `\XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.len().saturating_sub(1);
    for (i, c) in s.char_indices() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:02X}", c as u32))
            }
            c if !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// nginx's `ngx_escape_uri(NGX_ESCAPE_URI_COMPONENT)`: every byte but letters, digits and
/// `-._~` as `%XX`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `$ssl_client_escaped_cert`: the certificate in PEM (`PEM_write_bio_X509`: 64-column base64,
/// `\n` line ends) escaped as a URI component.
pub fn escaped_pem(der: &[u8]) -> String {
    let pem = pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    utf8_percent_encode(&pem, URI_COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_openssl_rfc2253() {
        assert_eq!(escape("My Client"), "My Client");
        assert_eq!(
            escape("a,b+c\"d\\e<f>g;h"),
            "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"
        );
        assert_eq!(escape("#x y "), "\\#x y\\ ");
        assert_eq!(escape(" x"), "\\ x");
        assert_eq!(escape("é\n"), "\\C3\\A9\\0A");
    }

    #[test]
    fn names_print_last_rdn_first() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "DE");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        dn.push(rcgen::DnType::CommonName, "My Client");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (s, i) = subject_and_issuer(cert.der()).unwrap();
        assert_eq!(s, "CN=My Client,O=Acme\\, Inc.,C=DE");
        assert_eq!(i, s);
    }

    #[test]
    fn escaped_pem_is_a_uri_component() {
        let e = escaped_pem(&[0u8; 60]);
        assert!(e.starts_with("-----BEGIN%20CERTIFICATE-----%0AAAAA"), "{e}");
        assert!(e.ends_with("%0A-----END%20CERTIFICATE-----%0A"), "{e}");
        assert!(!e.contains('/') && !e.contains('+') && !e.contains('='));
    }
}
