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

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::CertificateDer,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};

use super::{AskForCertificate, CachedConfig, provider};
use crate::{
    model::{ClientValidationByPort, FrontendValidation, L7Config},
    proxy::tls::{CertStore, Handshakes},
};

/// One listener's policy, with its verifier.
struct Compiled {
    policy: Arc<FrontendValidation>,
    /// `None`: no CA certificate parsed as a trust anchor; the handshake is refused.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    config: CachedConfig,
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
            config: CachedConfig::default(),
        }
    }

    /// The handshake's configuration: certificates from `certs` as on every HTTPS listener,
    /// client certificates as the policy says. `None`: no usable verifier.
    fn server_config(
        &self,
        certs: &Arc<CertStore>,
        handshakes: &Handshakes,
    ) -> Option<Arc<ServerConfig>> {
        self.config.get(self.verifier.as_ref()?, certs, handshakes)
    }
}

/// What a handshake on a validating listener gets.
pub enum Handshake {
    /// Serve with this configuration.
    Config(Arc<ServerConfig>),
    /// The listener must verify but has no usable CA: close without a handshake.
    Refuse,
}

/// Per port, the validating listeners' policies by their hostname (`""`: none).
type ByPort = HashMap<u16, HashMap<String, Arc<Compiled>>>;

/// The validating listeners of Gateways without addresses (`node`) and of each Gateway
/// address (`at`: every Gateway address, with policies or not, as
/// [`crate::proxy::misdirected::Listeners`] keys them).
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
            for c in ports.flat_map(|hosts| hosts.values()) {
                kept.insert(Arc::as_ptr(&c.policy), Arc::clone(c));
            }
        }
        let mut compile = |policies: &ClientValidationByPort| -> ByPort {
            (policies.iter())
                .map(|(port, by_host)| {
                    let hosts = (by_host.iter())
                        .map(|(host, policy)| {
                            let c = kept
                                .entry(Arc::as_ptr(policy))
                                .or_insert_with(|| Arc::new(Compiled::new(Arc::clone(policy))));
                            (host.clone(), Arc::clone(c))
                        })
                        .collect();
                    (*port, hosts)
                })
                .collect()
        };
        let node = compile(&l7.gateway_client_validation);
        let at = (l7.gateway_addresses.iter())
            .map(|(ip, a)| (*ip, compile(&a.client_validation)))
            .collect();
        Table { node, at }
    }

    /// The handshake of a connection to `local` naming `sni`: the listener `listeners` says
    /// the name selects on that port (exact hostname, longest wildcard, then the one without;
    /// on a Gateway's address only its own), if it validates; `None`: no validation there.
    pub fn handshake(
        &self,
        listeners: &crate::proxy::misdirected::Listeners,
        local: std::net::SocketAddr,
        sni: Option<&str>,
        certs: &Arc<CertStore>,
        handshakes: &Handshakes,
    ) -> Option<Handshake> {
        let at = (local.ip().to_canonical(), local.port());
        let by_port = self.at.get(&at.0).unwrap_or(&self.node);
        let by_host = by_port.get(&at.1)?;
        let c = by_host.get(listeners.selected(at, sni)?)?;
        Some(match c.server_config(certs, handshakes) {
            Some(cfg) => Handshake::Config(cfg),
            None => Handshake::Refuse,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectKind, ObjectRef};

    fn policy(name: &str) -> Arc<FrontendValidation> {
        Arc::new(FrontendValidation {
            gateway: ObjectRef::new(ObjectKind::Gateway, "ns", name),
            ca_der: Vec::new(),
            insecure_fallback: false,
        })
    }

    /// A connection finds its listener as Gateway API hostnames match (exact, then the
    /// longest wildcard, then the listener without hostname), and validates only when that
    /// listener does: a name a non-validating listener takes is never asked, even where a
    /// catch-all listener of the port validates.
    #[test]
    fn a_connection_is_validated_by_the_listener_its_sni_selects() {
        let mut l7 = L7Config::default();
        l7.gateway_https_hosts.insert(
            443,
            ["", "*.example.com", "a.example.com", "plain.example.com"]
                .map(String::from)
                .to_vec(),
        );
        let by_host = ["", "*.example.com", "a.example.com"]
            .map(|h| (h.to_string(), policy(if h.is_empty() { "any" } else { h })));
        l7.gateway_client_validation
            .insert(443, by_host.into_iter().collect());
        let table = Table::build(&l7, None);
        let listeners = crate::proxy::misdirected::Listeners::new(&l7);
        let local: std::net::SocketAddr = "127.0.0.1:443".parse().unwrap();
        let which = |sni: Option<&str>| {
            let port = &table.node[&443];
            listeners
                .selected((local.ip(), local.port()), sni)
                .and_then(|h| port.get(h))
                .map(|c| c.policy.gateway.name.clone())
        };
        assert_eq!(
            which(Some("a.example.com")).as_deref(),
            Some("a.example.com")
        );
        assert_eq!(
            which(Some("x.y.example.com")).as_deref(),
            Some("*.example.com")
        );
        assert_eq!(which(Some("other.org")).as_deref(), Some("any"));
        assert_eq!(which(None).as_deref(), Some("any"));
        assert_eq!(which(Some("plain.example.com")), None);
        // Another port: nothing validates there.
        let certs = Arc::new(CertStore::new().unwrap());
        let handshakes = Handshakes::new(&Default::default(), &certs, None).unwrap();
        let other: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
        assert!(
            table
                .handshake(
                    &listeners,
                    other,
                    Some("a.example.com"),
                    &certs,
                    &handshakes
                )
                .is_none()
        );
    }
}
