//! Which certificate each served name gets, and so which names redirect plain HTTP: the one
//! decision, made as ingress-nginx makes it.
//!
//! - A server (rule host) takes its certificate from the first Ingress, in precedence order,
//!   that has rules for it and a `spec.tls` section (controller.go `createServers`, the TLS
//!   loop): the Secret of the `spec.tls` entry naming the host, else of the first entry whose
//!   certificate is valid for it (`extractTLSSecretName`, Go's `VerifyHostname`), else the
//!   default certificate. A `spec.tls` host without a rule of the same Ingress configures
//!   nothing; an entry without hosts is no default certificate for other names.
//! - `server-alias` names and the `from-to-www-redirect` name take the server's certificate
//!   when it is valid for them, else none (nginx.go `configureCertificates`,
//!   pkg/util/ingress `BuildRedirects`: `ssl.IsValidHostname`).
//! - A TLS handshake gets the certificate of its SNI name, else of the name's one-label
//!   wildcard, else the default (certificate.lua `get_pem_cert_uid`); plain HTTP is redirected
//!   (with `ssl-redirect`) when the request's host finds a certificate the same way
//!   (lua_ingress.lua `redirect_to_https`, certificate.lua `configured_for_current_request`),
//!   whichever server routes the request.

use std::{collections::BTreeMap, sync::Arc};

use super::cert_host::covers;
use crate::model::TlsCertificate;

/// The certificate a name is configured with (ingress-nginx's `certificate_servers` entry).
#[derive(Clone, Debug)]
pub enum ServerCert {
    /// A Secret's certificate.
    Own(Arc<TlsCertificate>),
    /// The default certificate (`--default-ssl-certificate`, else the generated one): the
    /// Secret is missing or unusable, names no certificate valid for the host, or no entry
    /// of the Ingress's `spec.tls` is for the host. The name still counts as configured.
    Default,
}

/// One `spec.tls` entry of an Ingress, its Secret looked up (and diagnosed) already.
#[derive(Debug)]
pub struct TlsEntry {
    /// `hosts`, normalized (lower case).
    pub hosts: Vec<String>,
    /// `secretName`, when not empty.
    pub secret: Option<String>,
    /// The Secret's certificate; `None`: missing or unusable (diagnosed where looked up).
    pub cert: Option<Arc<TlsCertificate>>,
}

/// How a rule host got its certificate from its Ingress's `spec.tls`, for diagnostics.
#[derive(Debug)]
pub enum Choice {
    /// An entry names the host: its certificate, or the default when the entry has no
    /// Secret or its Secret is unusable.
    Named(ServerCert),
    /// An entry names the host but its certificate is not valid for it: the default
    /// (`createServers`' `VerifyHostname`, then Common Name check).
    NotValidFor(Arc<TlsCertificate>),
    /// No entry names the host; this entry's certificate is valid for it.
    Covering(Arc<TlsCertificate>),
    /// No entry names the host and no certificate is valid for it: the default.
    Nothing,
}

impl Choice {
    pub fn cert(&self) -> ServerCert {
        match self {
            Choice::Named(c) => c.clone(),
            Choice::Covering(c) => ServerCert::Own(c.clone()),
            Choice::NotValidFor(_) | Choice::Nothing => ServerCert::Default,
        }
    }
}

/// The certificate rule host `host` (normalized, not empty) takes from an Ingress whose
/// `spec.tls` is `entries` (not empty): controller.go `extractTLSSecretName`, then the
/// host check of `createServers`.
pub fn choose(host: &str, entries: &[TlsEntry]) -> Choice {
    if let Some(e) = entries.iter().find(|e| e.hosts.iter().any(|h| h == host)) {
        return match (&e.secret, &e.cert) {
            (Some(_), Some(c)) if covers(&c.chain_pem, host) == Some(false) => {
                Choice::NotValidFor(c.clone())
            }
            (Some(_), Some(c)) => Choice::Named(ServerCert::Own(c.clone())),
            _ => Choice::Named(ServerCert::Default),
        };
    }
    entries
        .iter()
        .filter(|e| e.secret.is_some())
        .find_map(|e| {
            e.cert
                .as_ref()
                .filter(|c| covers(&c.chain_pem, host) == Some(true))
        })
        .map_or(Choice::Nothing, |c| Choice::Covering(c.clone()))
}

/// What a name other than the server's own (a `server-alias`, the `from-to-www-redirect`
/// name) gets from the server's certificate `server`: it, when valid for `name`, else none.
/// `default` is the configured default certificate (`None`: the generated one, valid for no
/// name a client asks for).
pub fn for_other_name(
    server: &ServerCert,
    name: &str,
    default: Option<&Arc<TlsCertificate>>,
) -> Option<ServerCert> {
    let cert = match server {
        ServerCert::Own(c) => c,
        ServerCert::Default => default?,
    };
    (covers(&cert.chain_pem, name) == Some(true)).then(|| server.clone())
}

/// Whether plain HTTP for request host `host` is redirected (with `ssl-redirect`): the name
/// or its one-label wildcard has a certificate in `names` (the served names and what they
/// are configured with).
pub fn configured(names: &BTreeMap<String, ServerCert>, host: &str) -> bool {
    names.contains_key(host) || wildcard_of(host).is_some_and(|w| names.contains_key(&w))
}

/// `*.` and the name less its first label (certificate.lua's wildcard lookup); `None` for a
/// name of one label or a wildcard.
pub fn wildcard_of(host: &str) -> Option<String> {
    if host.starts_with("*.") {
        return None;
    }
    let (_, rest) = host.split_once('.')?;
    Some(format!("*.{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectKind, ObjectRef, translate::fixtures::mk_cert_pem};

    fn cert(name: &str, sans: &[&str]) -> Arc<TlsCertificate> {
        let (crt, key) = mk_cert_pem(sans);
        Arc::new(TlsCertificate {
            secret: ObjectRef::new(ObjectKind::Secret, "default", name),
            chain_pem: crt.as_bytes().into(),
            key_pem: key.as_bytes().into(),
        })
    }

    fn entry(hosts: &[&str], c: Option<&Arc<TlsCertificate>>) -> TlsEntry {
        TlsEntry {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            secret: Some(c.map_or("missing".into(), |c| c.secret.name.clone())),
            cert: c.cloned(),
        }
    }

    fn secret(c: &ServerCert) -> Option<&str> {
        match c {
            ServerCert::Own(c) => Some(&c.secret.name),
            ServerCert::Default => None,
        }
    }

    #[test]
    fn named_entry_first_then_a_covering_certificate_then_the_default() {
        let nh = cert("nh", &["nh.test"]);
        let wc = cert("wc", &["*.wc.test"]);
        let entries = [entry(&["other.test"], Some(&wc)), entry(&[], Some(&nh))];
        assert!(
            matches!(choose("nh.test", &entries), Choice::Covering(c) if c.secret.name == "nh")
        );
        assert!(
            matches!(choose("oh.wc.test", &entries), Choice::Covering(c) if c.secret.name == "wc")
        );
        assert!(matches!(choose("x-only.test", &entries), Choice::Nothing));
        assert_eq!(secret(&choose("x-only.test", &entries).cert()), None);
        // Named but not valid for the host: the default, not a covering entry further on.
        let entries = [entry(&["nh.test"], Some(&wc)), entry(&[], Some(&nh))];
        assert!(matches!(
            choose("nh.test", &entries),
            Choice::NotValidFor(_)
        ));
        // Named with an unusable Secret: the default.
        let entries = [entry(&["nh.test"], None), entry(&[], Some(&nh))];
        assert!(matches!(
            choose("nh.test", &entries),
            Choice::Named(ServerCert::Default)
        ));
    }

    #[test]
    fn other_names_take_the_certificate_only_where_it_is_valid() {
        let sa = cert("sa", &["sa1.test", "sa2.test"]);
        let own = ServerCert::Own(sa.clone());
        assert!(for_other_name(&own, "sa2.test", None).is_some());
        assert!(for_other_name(&own, "sa3.test", None).is_none());
        assert!(for_other_name(&ServerCert::Default, "sa2.test", None).is_none());
        let d = for_other_name(&ServerCert::Default, "sa2.test", Some(&sa));
        assert!(matches!(d, Some(ServerCert::Default)));
    }

    #[test]
    fn a_name_is_configured_by_itself_or_its_one_label_wildcard() {
        let names: BTreeMap<String, ServerCert> =
            [("*.wc.test".to_string(), ServerCert::Default)].into();
        assert!(configured(&names, "plain.wc.test"));
        assert!(configured(&names, "*.wc.test"));
        assert!(!configured(&names, "a.b.wc.test"));
        assert!(!configured(&names, "wc.test"));
    }
}
