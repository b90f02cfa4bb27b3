//! Gateway API client-certificate validation (Gateway `spec.tls.frontend`) in the TLS
//! handshake.
//!
//! Unlike ingress-nginx's `auth-tls-*` (asked in the handshake, judged per request with an
//! HTTP 400), the Gateway API verdict is the handshake's: `AllowValidOnly` requires a
//! certificate that chains to the listener's CAs (rustls-webpki's client verifier: none, or an
//! invalid one, fails the handshake, which is what the conformance suite's
//! `MakeTLSRequestAndExpectFailureResponse` checks); `AllowInsecureFallback` asks for one
//! naming the CAs and lets any answer through (the backend decides).
//!
//! A connection finds its listener's policy by its local port and SNI as the listener's
//! hostname would take it: an exact hostname, else the longest Gateway wildcard (one or more
//! labels), else the listener without a hostname; on a Gateway's own address, only that
//! Gateway's listeners.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::CertificateDer,
    server::{ResolvesServerCert, WebPkiClientVerifier, danger::ClientCertVerifier},
};

use super::{AskForCertificate, provider};
use crate::{
    model::{ClientValidationByPort, FrontendValidation, L7Config},
    proxy::tls::CertStore,
};

/// One listener's policy, with its verifier.
struct Compiled {
    policy: Arc<FrontendValidation>,
    /// `None`: no CA certificate parsed as a trust anchor; the handshake is refused.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    config: OnceLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Compiled {
    fn new(policy: Arc<FrontendValidation>) -> Compiled {
        let mut roots = RootCertStore::empty();
        for der in &policy.ca_der {
            // Translation kept only certificates that parse; one webpki refuses as an anchor
            // is left out (the rest still verify).
            let _ = roots.add(CertificateDer::from(der.clone()));
        }
        let verifier: Option<Arc<dyn ClientCertVerifier>> = if roots.is_empty() {
            None
        } else if policy.insecure_fallback {
            Some(Arc::new(AskForCertificate {
                hints: roots.subjects(),
                algs: provider().signature_verification_algorithms,
            }))
        } else {
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
                .build()
                .ok()
        };
        Compiled {
            policy,
            verifier,
            config: OnceLock::new(),
        }
    }

    /// The handshake's configuration: certificates from `certs` as on every HTTPS listener,
    /// client certificates as the policy says. `None`: no usable verifier.
    fn server_config(&self, certs: &Arc<CertStore>) -> Option<Arc<ServerConfig>> {
        let verifier = self.verifier.as_ref()?;
        if let Some(c) = self.config.get() {
            return Some(Arc::clone(c));
        }
        let cfg = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_client_cert_verifier(Arc::clone(verifier))
            .with_cert_resolver(Arc::clone(certs) as Arc<dyn ResolvesServerCert>);
        let cfg = Arc::new(CertStore::with_alpn(cfg));
        Some(Arc::clone(self.config.get_or_init(|| cfg)))
    }
}

/// What a handshake on a validating listener gets.
pub enum Handshake {
    /// Serve with this configuration.
    Config(Arc<ServerConfig>),
    /// The listener must verify but has no usable CA: close without a handshake.
    Refuse,
}

/// Per port: every served HTTPS listener's hostname there (`""`: none), with its policy
/// (`None`: that listener does not validate).
type ByPort = HashMap<u16, BTreeMap<String, Option<Arc<Compiled>>>>;

/// Every port with a validating listener: on node addresses (Gateways without addresses) and
/// on each Gateway address, by port, then by listener hostname.
#[derive(Debug, Default)]
pub struct Table {
    node: ByPort,
    at: HashMap<IpAddr, ByPort>,
}

impl Table {
    /// Compiles the snapshot's policies, keeping `previous`'s compiled ones that did not change
    /// (their rustls configuration and session cache with them).
    pub fn build(l7: &L7Config, previous: Option<&Table>) -> Table {
        let mut kept: HashMap<*const FrontendValidation, Arc<Compiled>> = HashMap::new();
        if let Some(p) = previous {
            let ports = p
                .node
                .values()
                .chain(p.at.values().flat_map(|b| b.values()));
            for c in ports.flat_map(|hosts| hosts.values().flatten()) {
                kept.insert(Arc::as_ptr(&c.policy), Arc::clone(c));
            }
        }
        let mut compile = |policies: &ClientValidationByPort,
                           https_hosts: &BTreeMap<u16, Vec<String>>|
         -> ByPort {
            (policies.iter())
                .map(|(port, by_host)| {
                    let listeners = https_hosts.get(port).into_iter().flatten();
                    let hosts = (listeners.chain(by_host.keys()))
                        .map(|host| {
                            let c =
                                by_host.get(host).map(|policy| {
                                    Arc::clone(kept.entry(Arc::as_ptr(policy)).or_insert_with(
                                        || Arc::new(Compiled::new(Arc::clone(policy))),
                                    ))
                                });
                            (host.clone(), c)
                        })
                        .collect();
                    (*port, hosts)
                })
                .collect()
        };
        let node = compile(&l7.gateway_client_validation, &l7.gateway_https_hosts);
        let at = (l7.gateway_addresses.iter())
            .filter(|(_, a)| !a.client_validation.is_empty())
            .map(|(ip, a)| (*ip, compile(&a.client_validation, &a.https_hosts)))
            .collect();
        Table { node, at }
    }

    /// The handshake of a connection to `local` (`claimed`: a Gateway's own address, which
    /// sees only that Gateway's listeners) naming `sni`; `None`: no validation there.
    pub fn handshake(
        &self,
        local: std::net::SocketAddr,
        claimed: bool,
        sni: Option<&str>,
        certs: &Arc<CertStore>,
    ) -> Option<Handshake> {
        let by_port = if claimed {
            self.at.get(&local.ip().to_canonical())?
        } else {
            &self.node
        };
        let c = listener(by_port.get(&local.port())?, sni.unwrap_or(""))?.as_ref()?;
        Some(match c.server_config(certs) {
            Some(cfg) => Handshake::Config(cfg),
            None => Handshake::Refuse,
        })
    }
}

/// The listener of one port whose hostname takes `sni` (lower case): exact, else the longest
/// `*.` suffix matching one or more labels, else the one without hostname (`""`).
fn listener<'a, T>(by_host: &'a BTreeMap<String, T>, sni: &str) -> Option<&'a T> {
    if let Some(c) = by_host.get(sni).filter(|_| !sni.is_empty()) {
        return Some(c);
    }
    let mut best: Option<(usize, &T)> = None;
    for (host, c) in by_host {
        let Some(suffix) = host.strip_prefix("*.") else {
            continue;
        };
        let takes = sni.len() > suffix.len() + 1
            && sni.ends_with(suffix)
            && sni.as_bytes()[sni.len() - suffix.len() - 1] == b'.';
        if takes && best.is_none_or(|(n, _)| suffix.len() > n) {
            best = Some((suffix.len(), c));
        }
    }
    best.map(|(_, c)| c).or_else(|| by_host.get(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(name: &str) -> Arc<Compiled> {
        Arc::new(Compiled {
            policy: Arc::new(FrontendValidation {
                gateway: crate::model::ObjectRef::new(
                    crate::model::ObjectKind::Gateway,
                    "ns",
                    name,
                ),
                ca_der: Vec::new(),
                insecure_fallback: false,
            }),
            verifier: None,
            config: OnceLock::new(),
        })
    }

    /// Gateway API `Listener.hostname`: exact first, a wildcard takes one or more labels (the
    /// longest suffix wins), a listener without hostname takes the rest.
    #[test]
    fn a_connection_finds_its_listeners_policy_by_sni() {
        let by_host: BTreeMap<String, Arc<Compiled>> = [
            ("a.example.com", "exact"),
            ("*.example.com", "wild"),
            ("*.b.example.com", "deeper"),
            ("", "any"),
        ]
        .into_iter()
        .map(|(h, n)| (h.to_string(), compiled(n)))
        .collect();
        let name = |sni: &str| listener(&by_host, sni).map(|c| c.policy.gateway.name.clone());
        assert_eq!(name("a.example.com").as_deref(), Some("exact"));
        assert_eq!(name("x.example.com").as_deref(), Some("wild"));
        assert_eq!(name("x.y.example.com").as_deref(), Some("wild"));
        assert_eq!(name("x.b.example.com").as_deref(), Some("deeper"));
        assert_eq!(name("example.com").as_deref(), Some("any"));
        assert_eq!(name("other.org").as_deref(), Some("any"));
        assert_eq!(name("").as_deref(), Some("any"));
        let no_catch_all: BTreeMap<String, Arc<Compiled>> =
            [("a.example.com".to_string(), compiled("exact"))].into();
        assert!(listener(&no_catch_all, "b.example.com").is_none());
    }
}
