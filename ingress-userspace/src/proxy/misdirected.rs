//! 421 Misdirected Request on HTTPS Gateway listeners (Gateway API GEP-3567, feature
//! `GatewayHTTPSListenerDetectMisdirectedRequests`; RFC 9110 section 15.5.20). With HTTP/2
//! connection coalescing (RFC 9113 section 9.1.1) a client reuses a connection for any name
//! the certificate covers, so a request can name a host that belongs to another listener of
//! the port (another hostname, perhaps another certificate) than the one the TLS handshake's
//! SNI selected: that request is answered 421, and the client retries on a new connection.
//!
//! A listener is selected by a name as Gateway API hostnames match: an exact hostname first,
//! then the wildcard with the longest suffix (`*.example.com` takes one or more labels), then
//! a listener without hostname. Only ports with HTTPS Gateway listeners are checked, and a
//! request an Ingress route serves never is (ingress-nginx does not send 421).

use std::collections::HashMap;

use super::router::normalize_host;

/// The hostnames of the HTTPS Gateway listeners of each port (`""`: a listener without one):
/// those of Gateways without addresses, and each Gateway address's own.
#[derive(Debug, Default)]
pub struct Listeners {
    by_port: HashMap<u16, Vec<String>>,
    at: HashMap<std::net::IpAddr, HashMap<u16, Vec<String>>>,
}

impl Listeners {
    pub fn new(l7: &crate::model::L7Config) -> Self {
        let by_port = |m: &std::collections::BTreeMap<u16, Vec<String>>| {
            m.iter()
                .map(|(port, hosts)| (*port, hosts.clone()))
                .collect()
        };
        Listeners {
            by_port: by_port(&l7.gateway_https_hosts),
            at: (l7.gateway_addresses.iter())
                .map(|(ip, a)| (*ip, by_port(&a.https_hosts)))
                .collect(),
        }
    }

    /// Whether a request for `host` (the `Host` header or `:authority`, any case, perhaps with
    /// a port) on a TLS connection to `local` (address and port) whose handshake named `sni`
    /// (`None`: no SNI) belongs to another listener than the handshake's. On a Gateway's
    /// address, only that Gateway's listeners count.
    pub fn is_misdirected(
        &self,
        local: (std::net::IpAddr, u16),
        sni: Option<&str>,
        host: &str,
    ) -> bool {
        let Some(hosts) = self.port(local) else {
            return false;
        };
        let by_sni = select(hosts, &normalize_host(sni.unwrap_or_default()));
        let by_host = select(hosts, &normalize_host(host));
        by_sni != by_host
    }

    /// The hostname (`""`: none) of the HTTPS Gateway listener of `local`'s port that `name`
    /// (an SNI or `Host`, any case; `None`: no SNI) selects; `None` when none does. On a
    /// Gateway's address, only that Gateway's listeners count.
    pub fn selected(&self, local: (std::net::IpAddr, u16), name: Option<&str>) -> Option<&str> {
        select(self.port(local)?, &normalize_host(name.unwrap_or_default()))
    }

    fn port(&self, (ip, port): (std::net::IpAddr, u16)) -> Option<&Vec<String>> {
        let ports = self.at.get(&ip.to_canonical()).unwrap_or(&self.by_port);
        ports.get(&port)
    }
}

/// The listener hostname of `hosts` that `name` (lower case) selects, if any.
fn select<'a>(hosts: &'a [String], name: &str) -> Option<&'a str> {
    if let Some(h) = hosts.iter().find(|h| !h.is_empty() && *h == name) {
        return Some(h);
    }
    let wildcard = hosts
        .iter()
        .filter_map(|h| h.strip_prefix("*.").map(|suffix| (h, suffix)))
        .filter(|(_, suffix)| {
            name.strip_suffix(suffix)
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|front| !front.is_empty())
        })
        .max_by_key(|(_, suffix)| suffix.len());
    if let Some((h, _)) = wildcard {
        return Some(h);
    }
    hosts.iter().find(|h| h.is_empty()).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

    /// The listeners of the conformance test `HTTPSListenerDetectMisdirectedRequests`
    /// (gateway-api v1.5): one without hostname, `second-example.org`, `*.wildcard.org` and
    /// `fourth-example.wildcard.org`, all on 443.
    fn conformance() -> Listeners {
        let hosts = [
            "",
            "second-example.org",
            "*.wildcard.org",
            "fourth-example.wildcard.org",
        ];
        Listeners {
            by_port: HashMap::from([(443, hosts.iter().map(|h| h.to_string()).collect())]),
            at: HashMap::new(),
        }
    }

    #[test]
    fn a_host_of_another_listener_than_the_sni_is_misdirected() {
        let l = conformance();
        let m = |sni: Option<&str>, host: &str| l.is_misdirected((ANY, 443), sni, host);
        // Same listener: the catch-all for both names.
        assert!(!m(Some("example.org"), "example.org"));
        assert!(!m(Some("example.org"), "unknown-example.org"));
        // The Host has a listener of its own.
        assert!(m(Some("example.org"), "second-example.org"));
        assert!(m(Some("example.org"), "third-example.wildcard.org"));
        assert!(m(Some("example.org"), "fourth-example.wildcard.org"));
        assert!(m(Some("second-example.org"), "example.org"));
        assert!(m(Some("second-example.org"), "unknown-example.org"));
        // Two names under one wildcard listener.
        assert!(!m(
            Some("third-example.wildcard.org"),
            "fith-example.wildcard.org"
        ));
        // The exact listener wins over the wildcard that also covers it.
        assert!(m(
            Some("third-example.wildcard.org"),
            "fourth-example.wildcard.org"
        ));
        assert!(!m(Some("a.wildcard.org"), "b.c.wildcard.org"));
        // Case, port and trailing dot do not matter.
        assert!(!m(Some("second-example.org"), "Second-Example.org:443"));
        assert!(!m(Some("second-example.org"), "second-example.org."));
        // No SNI: the listener without hostname.
        assert!(!m(None, "example.org"));
        assert!(m(None, "second-example.org"));
        // `wildcard.org` itself is not under `*.wildcard.org`.
        assert!(!m(Some("example.org"), "wildcard.org"));
    }

    /// On a Gateway's own address only its listeners select: a name another Gateway's
    /// listener has elsewhere is not a reason for 421 there.
    #[test]
    fn on_a_gateway_address_only_its_listeners_count() {
        let mut l = conformance();
        let vip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        l.at.insert(vip, HashMap::from([(443, vec![String::new()])]));
        assert!(!l.is_misdirected((vip, 443), Some("example.org"), "second-example.org"));
        assert!(l.is_misdirected((ANY, 443), Some("example.org"), "second-example.org"));
        // A dual-stack socket reports the IPv4-mapped form.
        let mapped: std::net::IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert!(!l.is_misdirected((mapped, 443), Some("example.org"), "second-example.org"));
    }

    #[test]
    fn ports_without_https_gateway_listeners_are_not_checked() {
        let l = conformance();
        assert!(!l.is_misdirected((ANY, 8443), Some("example.org"), "second-example.org"));
        assert!(!Listeners::default().is_misdirected((ANY, 443), Some("a"), "b"));
    }
}
