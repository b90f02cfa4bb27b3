//! ingress-nginx's backend certificate authentication (`proxy-ssl-secret`, `proxy-ssl-verify`,
//! `proxy-ssl-verify-depth`, `proxy-ssl-name`, `proxy-ssl-server-name`, `proxy-ssl-protocols`)
//! -> the [`UpstreamTls`] of the Ingress's HTTPS and gRPCS upstreams.
//!
//! As ingress-nginx (internal/ingress/annotations/proxyssl/main.go and the location block of
//! nginx.tmpl), nothing applies without `proxy-ssl-secret`; with it the location gets nginx's
//! `proxy_ssl_*` directives, whose defaults (ngx_http_proxy_module) are kept:
//! - `tls.crt`/`tls.key` of the Secret: the client certificate (`proxy_ssl_certificate`);
//!   `ca.crt`: the trusted CAs (`proxy_ssl_trusted_certificate`).
//! - `proxy-ssl-verify` `on`|`off` (default `off`: any certificate is accepted).
//! - `proxy-ssl-name`: the name verified and sent as SNI; default the `proxy_pass` host, which
//!   ingress-nginx's template makes `upstream_balancer` ([`DEFAULT_NAME`]).
//! - `proxy-ssl-server-name` `on`|`off` (default `off`: no SNI).
//! - `proxy-ssl-verify-depth` (default 1: at most one intermediate, OpenSSL's verify depth).
//! - `proxy-ssl-protocols` (default `TLSv1.2`, ingress-nginx's `defaultProxySSLProtocols` since
//!   #11343): `TLSv1.2` and/or `TLSv1.3`; any other name makes the whole value the default, as
//!   ingress-nginx's validator does.
//!
//! A Secret that cannot be used (another namespace, outside `--secret-namespaces`, missing,
//! without a usable `ca.crt` when verifying, PEM that does not parse) is ingress-nginx's
//! `LocationDenied`: every route of the Ingress answers 503, never an unverified connection.
//! Invalid `on`/`off`, depth or protocol values warn and take the default, as ingress-nginx.

use std::{collections::HashSet, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{
    model::{ObjectKind, ObjectRef, TlsCertificate, TlsRoots, TlsVersion, UpstreamTls},
    store::{Key, Objects},
};

use super::annotations::Reader;

/// `proxy-ssl-name`'s default: nginx's `proxy_ssl_name` is the host of `proxy_pass`, and
/// ingress-nginx's template proxies to `upstream_balancer`.
pub const DEFAULT_NAME: &str = "upstream_balancer";

/// `proxy-ssl-verify-depth` default (ingress-nginx `defaultProxySSLVerifyDepth`, nginx's).
pub const DEFAULT_DEPTH: u32 = 1;

/// Largest depth kept; longer chains are not built anyway.
const MAX_DEPTH: u32 = 100;

/// What the `proxy-ssl-*` annotations of one Ingress (namespace `ns`) ask of its TLS
/// upstreams: `None` without `proxy-ssl-secret`, `Err(reason)` when the Ingress's routes are
/// denied (reported here). The Secret looked up goes into `secrets_used`.
pub(super) fn parse(
    r: &mut Reader<'_>,
    ns: &str,
    objects: &Objects,
    secret_namespaces: Option<&[String]>,
    secrets_used: &mut HashSet<Key>,
) -> Option<Result<Arc<UpstreamTls>, String>> {
    let Some(name) = r.get("proxy-ssl-secret").map(str::to_string) else {
        verify_without_secret(r);
        return None;
    };
    Some(
        resolve(r, &name, ns, objects, secret_namespaces, secrets_used).map_err(|(reason, msg)| {
            report_denied(r, reason, &msg);
            format!("{reason}: {msg}")
        }),
    )
}

fn resolve(
    r: &mut Reader<'_>,
    name: &str,
    ns: &str,
    objects: &Objects,
    secret_namespaces: Option<&[String]>,
    secrets_used: &mut HashSet<Key>,
) -> Result<Arc<UpstreamTls>, (&'static str, String)> {
    let key = super::client_auth::annotated_secret(
        r,
        "proxy-ssl-secret",
        name,
        (ns, false),
        "CrossNamespaceProxySslSecret",
    )?;
    if let Some(allowed) = secret_namespaces
        && !allowed.contains(&key.namespace)
    {
        let msg = format!(
            "proxy-ssl-secret {key} is outside --secret-namespaces ({}) and is not read",
            allowed.join(", ")
        );
        return Err(("ProxySslSecretNotWatched", msg));
    }
    secrets_used.insert(key.clone());
    let o = options(r);
    let Some(secret) = objects.secrets.get(&key) else {
        let msg = format!("proxy-ssl-secret {key} does not exist");
        return Err(("ProxySslSecretNotFound", msg));
    };
    let data = secret.data.as_ref();
    let field = |k: &str| data.and_then(|d| d.get(k)).map(|v| v.0.as_slice());
    let invalid = |msg: String| {
        (
            "InvalidProxySslSecret",
            format!("proxy-ssl-secret {key}{msg}"),
        )
    };
    let roots = match field(super::client_auth::CA_KEY) {
        Some(pem) => {
            TlsRoots::Certificates(ca_ders(pem).map_err(|e| invalid(format!(", ca.crt: {e}")))?)
        }
        None if o.verify => {
            return Err(invalid(
                " has no key \"ca.crt\", which proxy-ssl-verify: on needs".into(),
            ));
        }
        None => TlsRoots::Certificates(Vec::new()),
    };
    let client_certificate = match (field("tls.crt"), field("tls.key")) {
        (Some(crt), Some(k)) => {
            check_chain_and_key(crt, k).map_err(|e| invalid(format!(": {e}")))?;
            Some(Arc::new(TlsCertificate {
                secret: ObjectRef::new(ObjectKind::Secret, &key.namespace, &key.name),
                chain_pem: crt.into(),
                key_pem: k.into(),
            }))
        }
        (None, None) if field(super::client_auth::CA_KEY).is_some() => None,
        (None, None) => {
            return Err(invalid(" has none of tls.crt, tls.key, ca.crt".into()));
        }
        _ => return Err(invalid(" has only one of tls.crt and tls.key".into())),
    };
    Ok(Arc::new(UpstreamTls {
        hostname: o.name,
        roots,
        subject_alt_names: Vec::new(),
        client_certificate,
        verify: o.verify,
        sni: o.sni,
        verify_depth: Some(o.depth),
        versions: Some(o.versions),
    }))
}

/// Reports (on `r`, as [`parse`] does) what is wrong with the values of an Ingress's
/// `proxy-ssl-*` annotations without reading the Secret: what `migrate` checks.
pub(super) fn check_values(r: &mut Reader<'_>, ns: &str) {
    let Some(name) = r.get("proxy-ssl-secret").map(str::to_string) else {
        verify_without_secret(r);
        return;
    };
    let key = super::client_auth::annotated_secret(
        r,
        "proxy-ssl-secret",
        &name,
        (ns, false),
        "CrossNamespaceProxySslSecret",
    );
    let _ = options(r);
    if let Err((reason, msg)) = key {
        report_denied(r, reason, &msg);
    }
}

/// The DER certificates of a `ca.crt` PEM bundle, at least one, each usable as a trust anchor.
fn ca_ders(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    super::client_auth::check_ca(pem)?;
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| format!("not PEM: {e}")))
        .collect()
}

/// `tls.crt` holds at least one certificate and `tls.key` a private key (PEM).
fn check_chain_and_key(crt: &[u8], key: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: not PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
    super::tls::client_certified_key(certs, key).map(drop)
}

/// The options besides the Secret, as ingress-nginx reads them: a bad value warns and is the
/// default.
struct Options {
    verify: bool,
    sni: bool,
    name: String,
    depth: u32,
    /// `None`: the list names no version spoken here.
    versions: Vec<TlsVersion>,
}

fn options(r: &mut Reader<'_>) -> Options {
    let verify = on_off(r, "proxy-ssl-verify");
    let sni = on_off(r, "proxy-ssl-server-name");
    let name = match r.get("proxy-ssl-name") {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => DEFAULT_NAME.to_string(),
    };
    let depth = match r.get("proxy-ssl-verify-depth").map(str::to_string) {
        None => DEFAULT_DEPTH,
        // ingress-nginx: a value that does not parse, or below 1, is the default.
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_DEPTH as i64) as u32,
            _ => {
                r.bad("proxy-ssl-verify-depth", &v, "a positive number");
                DEFAULT_DEPTH
            }
        },
    };
    let versions = protocols(r);
    Options {
        verify,
        sni,
        name,
        depth,
        versions,
    }
}

/// `proxy-ssl-verify: on` without `proxy-ssl-secret` does nothing, in ingress-nginx too (its
/// template writes no `proxy_ssl_*` without the Secret's CA): said, since the backend's
/// certificate is then not verified at all.
fn verify_without_secret(r: &mut Reader<'_>) {
    if r.get("proxy-ssl-verify") == Some("on") {
        let object = r.object.clone();
        r.diags.warn(
            &object,
            "ProxySslVerifyWithoutSecret",
            "proxy-ssl-verify: on has no effect without proxy-ssl-secret (as in ingress-nginx): \
             the backend's certificate is not verified",
        );
    }
}

/// `on` or `off` (ingress-nginx's `^(on|off)$`); anything else warns and is `off`.
fn on_off(r: &mut Reader<'_>, key: &str) -> bool {
    match r.get(key).map(str::to_string) {
        None => false,
        Some(v) if v == "on" => true,
        Some(v) if v == "off" => false,
        Some(v) => {
            r.bad(key, &v, "on or off");
            false
        }
    }
}

/// `proxy-ssl-protocols`: space-separated `TLSv1.2` / `TLSv1.3`. As ingress-nginx's
/// annotation validator (`proxySSLProtocolRegex`, `^(TLSv1\.2|TLSv1\.3| )*$` on the whole
/// value), a value naming anything else (`TLSv1.1`, a typo) is refused as a whole with a
/// warning and the default `TLSv1.2` is used (its `defaultProxySSLProtocols`, since #11343);
/// an empty one is the default too (its `sortProtocols`).
fn protocols(r: &mut Reader<'_>) -> Vec<TlsVersion> {
    let default = vec![TlsVersion::Tls12];
    let Some(v) = r.get("proxy-ssl-protocols").map(str::to_string) else {
        return default;
    };
    let names: Vec<&str> = v.split_whitespace().collect();
    if !names.iter().all(|n| matches!(*n, "TLSv1.2" | "TLSv1.3")) {
        r.bad(
            "proxy-ssl-protocols",
            &v,
            "TLSv1.2 and/or TLSv1.3 (ingress-nginx's validator refuses the whole value too)",
        );
        return default;
    }
    let mut out = Vec::new();
    if names.contains(&"TLSv1.3") {
        out.push(TlsVersion::Tls13);
    }
    if names.contains(&"TLSv1.2") {
        out.push(TlsVersion::Tls12);
    }
    if out.is_empty() { default } else { out }
}

/// Reports why the Ingress's routes are denied (they answer 503).
fn report_denied(r: &mut Reader<'_>, reason: &str, msg: &str) {
    r.diags.error(
        r.object,
        reason,
        format!(
            "{msg}; every route of the Ingress answers 503 (never an unverified or \
             unauthenticated connection to the backend)"
        ),
    );
}

/// The id of an upstream `id` spoken to with `tls` (`proxy-ssl-*`): upstreams of one Service
/// port with different TLS are pooled and tracked apart, so the TLS settings (hashed, key
/// material included) prefix the id; the port stays last.
pub fn upstream_id(id: String, tls: Option<&UpstreamTls>) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    match tls {
        None => id,
        Some(t) => {
            // `DefaultHasher::new()` has fixed keys: the same settings give the same id in
            // every snapshot.
            let mut h = DefaultHasher::new();
            t.hash(&mut h);
            format!("proxy-ssl.{:016x}:{id}", h.finish())
        }
    }
}
