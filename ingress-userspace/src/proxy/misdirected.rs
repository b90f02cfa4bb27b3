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

/// The hostnames of the HTTPS Gateway listeners of each port (`""`: a listener without one).
#[derive(Debug, Default)]
pub struct Listeners {
    by_port: HashMap<u16, Vec<String>>,
}

impl Listeners {
    pub fn new(l7: &crate::model::L7Config) -> Self {
        Listeners {
            by_port: l7
                .gateway_https_hosts
                .iter()
                .map(|(port, hosts)| (*port, hosts.clone()))
                .collect(),
        }
    }

    /// Whether a request for `host` (the `Host` header or `:authority`, any case, perhaps with
    /// a port) on a TLS connection to `port` whose handshake named `sni` (`None`: no SNI)
    /// belongs to another listener than the handshake's.
    pub fn is_misdirected(&self, port: u16, sni: Option<&str>, host: &str) -> bool {
        let Some(hosts) = self.by_port.get(&port) else {
            return false;
        };
        let by_sni = select(hosts, &normalize_host(sni.unwrap_or_default()));
        let by_host = select(hosts, &normalize_host(host));
        by_sni != by_host
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
        }
    }

    #[test]
    fn a_host_of_another_listener_than_the_sni_is_misdirected() {
        let l = conformance();
        let m = |sni: Option<&str>, host: &str| l.is_misdirected(443, sni, host);
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

    #[test]
    fn ports_without_https_gateway_listeners_are_not_checked() {
        let l = conformance();
        assert!(!l.is_misdirected(8443, Some("example.org"), "second-example.org"));
        assert!(!Listeners::default().is_misdirected(443, Some("a"), "b"));
    }
}
