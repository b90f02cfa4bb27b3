//! ingress-nginx's client-certificate annotations (`auth-tls-secret`, `auth-tls-verify-client`,
//! `auth-tls-verify-depth`, `auth-tls-pass-certificate-to-upstream`, `auth-tls-error-page`,
//! `auth-tls-match-cn`) -> the host's [`ClientAuth`], with `ca.crt` (and `ca.crl`) read from the
//! Secret and checked to parse here, once per translation.
//!
//! As ingress-nginx (internal/ingress/annotations/authtls/main.go and the server block of
//! nginx.tmpl), the policy belongs to the host, not the path; the first (oldest) Ingress of the
//! host that sets one wins. Anything that keeps the CA from being used (Secret missing, in another
//! namespace, without `ca.crt`, unparseable) is ingress-nginx's `AuthTLSError`: the host answers
//! 403 to every request ([`ClientAuth::Unavailable`]), and that wins over another Ingress's good
//! policy for the same host, as the template checks `AuthTLSError` first. Never open.
//! Lenient values as ingress-nginx: an unknown `auth-tls-verify-client` is `on`, a
//! `auth-tls-verify-depth` that is not a positive number is 1 (each with a warning). An
//! `auth-tls-match-cn` that is not a usable `CN=` regex denies the host (ingress-nginx refuses the
//! whole Ingress); a bad `auth-tls-error-page` is ignored with a warning (the 400 stays).

use std::{collections::HashSet, sync::Arc};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, pem::PemObject};

use crate::{
    model::{ClientAuth, ClientCertPolicy, ObjectKind, ObjectRef, VerifyClient},
    store::{Key, Objects},
};

use super::annotations::Reader;

/// The Secret key holding the trusted CA certificates (PEM).
pub const CA_KEY: &str = "ca.crt";
/// The Secret key holding certificate revocation lists (PEM), optional.
pub const CRL_KEY: &str = "ca.crl";

/// `auth-tls-verify-depth` default (ingress-nginx `defaultAuthTLSDepth`, nginx's default).
pub const DEFAULT_DEPTH: u32 = 1;

/// Largest `auth-tls-verify-depth` kept; deeper chains than this are not built anyway.
const MAX_DEPTH: u32 = 100;

/// What the `auth-tls-*` annotations of one Ingress (namespace `ns`) ask of its hosts; `None`
/// without `auth-tls-secret`. Secrets looked up go into `secrets_used`.
pub(super) fn parse(
    r: &mut Reader<'_>,
    ns: &str,
    objects: &Objects,
    secret_namespaces: Option<&[String]>,
    secrets_used: &mut HashSet<Key>,
) -> Option<ClientAuth> {
    let name = r.get("auth-tls-secret")?.to_string();
    let unavailable = |r: &mut Reader<'_>, reason: &str, msg: String| {
        report_unavailable(r, reason, &msg);
        Some(ClientAuth::Unavailable {
            reason: format!("{reason}: {msg}"),
        })
    };
    let key = match secret_key(r, &name, ns) {
        Ok(k) => k,
        Err((reason, msg)) => return unavailable(r, reason, msg),
    };
    let (secret_ns, secret_name) = (key.namespace.clone(), key.name.clone());
    if let Some(allowed) = secret_namespaces
        && !allowed.contains(&secret_ns)
    {
        let msg = format!(
            "auth-tls-secret {key} is outside --secret-namespaces ({}) and is not read",
            allowed.join(", ")
        );
        return unavailable(r, "AuthTlsSecretNotWatched", msg);
    }
    secrets_used.insert(key.clone());
    let Some(secret) = objects.secrets.get(&key) else {
        let msg = format!("auth-tls-secret {key} does not exist");
        return unavailable(r, "AuthTlsSecretNotFound", msg);
    };
    let data = secret.data.as_ref();
    let Some(ca) = data.and_then(|d| d.get(CA_KEY)) else {
        let msg = format!("auth-tls-secret {key} has no key {CA_KEY:?}");
        return unavailable(r, "InvalidAuthTlsSecret", msg);
    };
    if let Err(e) = check_ca(&ca.0) {
        let msg = format!("auth-tls-secret {key}, {CA_KEY}: {e}");
        return unavailable(r, "InvalidAuthTlsSecret", msg);
    }
    let crl = data.and_then(|d| d.get(CRL_KEY));
    if let Some(crl) = crl
        && let Err(e) = check_crl(&crl.0)
    {
        let msg = format!("auth-tls-secret {key}, {CRL_KEY}: {e}");
        return unavailable(r, "InvalidAuthTlsSecret", msg);
    }
    let v = match options(r) {
        Ok(v) => v,
        Err(msg) => return unavailable(r, "InvalidAnnotation", msg),
    };
    Some(ClientAuth::Verify(Arc::new(ClientCertPolicy {
        secret: ObjectRef::new(ObjectKind::Secret, secret_ns, secret_name),
        ca_pem: ca.0.as_slice().into(),
        crl_pem: crl.map(|c| c.0.as_slice().into()),
        verify: v.verify,
        depth: v.depth,
        pass_certificate: v.pass_certificate,
        error_page: v.error_page,
        match_cn: v.match_cn,
    })))
}

/// The Secret `auth-tls-secret` names (`name` as written; `ns`: the Ingress's namespace), or
/// the diagnostic reason and message that deny the host. `/name` is the Ingress's namespace
/// (ingress-nginx authtls: `if ns == "" { ns = ing.Namespace }`).
fn secret_key(r: &Reader<'_>, name: &str, ns: &str) -> Result<Key, (&'static str, String)> {
    annotated_secret(
        r,
        "auth-tls-secret",
        name,
        (ns, true),
        "CrossNamespaceAuthTlsSecret",
    )
}

/// The Secret annotation `annotation` names (`name` as written), or the diagnostic reason
/// (`cross_reason` for another namespace) and message. `(ns, empty_is_own)`: the Ingress's
/// namespace, and whether an empty namespace (`/name`) stands for it (auth-tls) or is another
/// one (proxy-ssl, which compares it as written).
///
/// As ingress-nginx's `k8s.ParseNameNS`, which both annotations' parsers call: exactly
/// `namespace/name`; a bare `name` is an invalid annotation (its `NewLocationDenied`: the
/// location is denied), not a name in the Ingress's namespace.
pub(super) fn annotated_secret(
    r: &Reader<'_>,
    annotation: &str,
    name: &str,
    (ns, empty_is_own): (&str, bool),
    cross_reason: &'static str,
) -> Result<Key, (&'static str, String)> {
    let (secret_ns, secret_name) = match name.split('/').collect::<Vec<_>>()[..] {
        [s, n] if s.is_empty() && empty_is_own => (ns.to_string(), n.to_string()),
        [s, n] => (s.to_string(), n.to_string()),
        _ => (String::new(), String::new()),
    };
    if secret_name.is_empty() {
        let msg = format!(
            "annotation {annotation}: {name:?} is not NAMESPACE/NAME (write \"{ns}/{name}\" \
             for a Secret in the Ingress's namespace; ingress-nginx denies the location too)"
        );
        return Err(("InvalidAnnotation", msg));
    }
    let key = Key::new(secret_ns.clone(), secret_name.clone());
    if r.foreign(ns, &secret_ns) {
        let msg = format!(
            "{annotation} {key} is in another namespace than the Ingress; cross-namespace \
             Secrets are not allowed (allow-cross-namespace-resources: \"true\" allows them)"
        );
        return Err((cross_reason, msg));
    }
    Ok(key)
}

/// The host's verification options (`auth-tls-*` besides the Secret); a value that does not
/// parse is a warning and the default, except `auth-tls-match-cn`, whose error (`Err`) denies
/// the host.
struct Options {
    verify: VerifyClient,
    depth: u32,
    pass_certificate: bool,
    error_page: Option<String>,
    match_cn: Option<String>,
}

fn options(r: &mut Reader<'_>) -> Result<Options, String> {
    let match_cn = match r.get("auth-tls-match-cn").map(str::to_string) {
        None => None,
        Some(v) => match check_match_cn(&v) {
            Ok(()) => Some(v),
            Err(e) => {
                let msg = format!("annotation auth-tls-match-cn: {v:?} {e}");
                return Err(msg);
            }
        },
    };
    let verify = match r.get("auth-tls-verify-client") {
        None => VerifyClient::On,
        Some("on") => VerifyClient::On,
        Some("off") => VerifyClient::Off,
        Some("optional") => VerifyClient::Optional,
        Some("optional_no_ca") => VerifyClient::OptionalNoCa,
        Some(other) => {
            let other = other.to_string();
            r.bad(
                "auth-tls-verify-client",
                &other,
                "on, off, optional or optional_no_ca",
            );
            VerifyClient::On
        }
    };
    let depth = match r.get("auth-tls-verify-depth").map(str::to_string) {
        None => DEFAULT_DEPTH,
        // ingress-nginx: a value that does not parse, or 0, is the default.
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => (n.min(MAX_DEPTH as i64)) as u32,
            _ => {
                r.bad("auth-tls-verify-depth", &v, "a positive number");
                DEFAULT_DEPTH
            }
        },
    };
    let pass_certificate = r
        .bool("auth-tls-pass-certificate-to-upstream")
        .unwrap_or(false);
    let error_page = match r.get("auth-tls-error-page").map(str::to_string) {
        None => None,
        Some(v) if is_error_page(&v) => Some(v),
        Some(v) => {
            r.bad(
                "auth-tls-error-page",
                &v,
                "a URL (http(s)://host/path, host/path) or an absolute path",
            );
            None
        }
    };
    Ok(Options {
        verify,
        depth,
        pass_certificate,
        error_page,
        match_cn,
    })
}

/// Reports (on `r`, as [`parse`] does) what is wrong with the values of an Ingress's
/// `auth-tls-*` annotations without reading the Secret: what `migrate` checks.
pub(super) fn check_values(r: &mut Reader<'_>, ns: &str) {
    let Some(name) = r.get("auth-tls-secret").map(str::to_string) else {
        return;
    };
    let denied = match (secret_key(r, &name, ns), options(r)) {
        (Err((reason, msg)), _) => Some((reason, msg)),
        (_, Err(msg)) => Some(("InvalidAnnotation", msg)),
        _ => None,
    };
    if let Some((reason, msg)) = denied {
        report_unavailable(r, reason, &msg);
    }
}

/// Reports why the host's client-certificate check cannot be set up (it answers 403).
fn report_unavailable(r: &mut Reader<'_>, reason: &str, msg: &str) {
    r.diags.error(
        r.object,
        reason,
        format!(
            "{msg}; every request to the Ingress's hosts gets 403 (never without the \
             client certificate)"
        ),
    );
}

/// The policy of a host from the policies of its Ingresses in precedence order: an unusable
/// one wins (ingress-nginx checks `AuthTLSError` first), else the first.
pub(super) fn merge(have: &mut Option<ClientAuth>, next: &ClientAuth) {
    match (have.as_ref(), next) {
        (None, _) | (Some(ClientAuth::Verify(_)), ClientAuth::Unavailable { .. }) => {
            *have = Some(next.clone())
        }
        _ => {}
    }
}

/// `ca.crt` holds at least one certificate, each usable as a trust anchor.
pub fn check_ca(pem: &[u8]) -> Result<(), String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    for c in &certs {
        webpki::anchor_from_trusted_cert(c).map_err(|e| format!("certificate: {e}"))?;
    }
    Ok(())
}

/// `ca.crl` holds revocation lists (possibly none) that parse.
pub fn check_crl(pem: &[u8]) -> Result<(), String> {
    for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
        let crl = crl.map_err(|e| format!("not PEM: {e}"))?;
        webpki::OwnedCertRevocationList::from_der(&crl).map_err(|e| format!("CRL: {e}"))?;
    }
    Ok(())
}

/// ingress-nginx's `CommonNameAnnotationValidator`: starts with `CN=`; and it must compile.
fn check_match_cn(v: &str) -> Result<(), String> {
    if !v.starts_with("CN=") {
        return Err("does not start with CN=".into());
    }
    regex::Regex::new(v)
        .map(|_| ())
        .map_err(|e| format!("is not a regular expression: {e}"))
}

/// ingress-nginx's `redirectRegex` for `auth-tls-error-page`, without named locations
/// (`@name`, which exist only in nginx): `[http(s)://]host[:port][/path]` or `/path`.
fn is_error_page(v: &str) -> bool {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .unwrap_or(v);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !path.contains("//");
    // A scheme needs a host; a bare value is a host or a path.
    let has_scheme = rest.len() != v.len();
    !v.is_empty()
        && host_ok
        && port_ok
        && path_ok
        && (!has_scheme || !host.is_empty())
        && (port.is_none() || !host.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_as_ingress_nginx_accepts_them() {
        for ok in [
            "http://www.mysite.com/error-cert.html",
            "https://a.b:8443/x/y",
            "ok.com/error",
            "/error-cert.html",
            "/",
        ] {
            assert!(is_error_page(ok), "{ok}");
        }
        for bad in [
            "",
            "javascript:alert(1)",
            "http:///x",
            "http://a.b/x?y",
            "/a b",
            "@named",
        ] {
            assert!(!is_error_page(bad), "{bad}");
        }
    }

    #[test]
    fn match_cn_needs_the_prefix_and_a_regex() {
        assert!(check_match_cn("CN=(a|b)").is_ok());
        assert!(check_match_cn("O=x").is_err());
        assert!(check_match_cn("CN=(").is_err());
    }

    #[test]
    fn unusable_wins_else_first() {
        let p = |n: &str| {
            ClientAuth::Verify(Arc::new(ClientCertPolicy {
                secret: ObjectRef::new(ObjectKind::Secret, "d", n),
                ca_pem: Arc::from(&b""[..]),
                crl_pem: None,
                verify: VerifyClient::On,
                depth: 1,
                pass_certificate: false,
                error_page: None,
                match_cn: None,
            }))
        };
        let bad = ClientAuth::Unavailable { reason: "x".into() };
        let mut have = None;
        merge(&mut have, &p("a"));
        merge(&mut have, &p("b"));
        assert_eq!(have, Some(p("a")));
        merge(&mut have, &bad);
        merge(&mut have, &p("c"));
        assert_eq!(have, Some(bad));
    }
}
