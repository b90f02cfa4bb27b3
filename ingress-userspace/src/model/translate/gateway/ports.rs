//! The one place that decides which listener gets which port, for every protocol: `HTTP`,
//! `HTTPS` and `TLS` passthrough listeners (ports the proxy opens,
//! [`crate::model::L7Config::gateway_listeners`]) and `TCP`/`UDP` listeners (ports the XDP
//! path takes, [`super::l4`]) draw from the same ports of the node.
//!
//! A port is held by one protocol family: a TCP port by the proxy (HTTP, or TLS: HTTPS and
//! TLS passthrough listeners, told apart by SNI), by an L4 `TCP` listener, or by a NodePort
//! Service or health check node port; a UDP
//! port by a `UDP` listener or a NodePort Service. Gateways claim in age order
//! (creationTimestamp, then namespace/name; the spec's order for conflicts), listeners in spec
//! order. A listener that wants a port another holder has (an HTTP listener on a port an HTTPS
//! listener or a TCP listener holds, a TCP listener on a port the proxy serves, ...) is taken
//! out of service with `Accepted: False, PortUnavailable`; the holder keeps serving. HTTP
//! listeners share a port with each other, as HTTPS and TLS passthrough listeners do (told
//! apart by hostname).
//!
//! A `TCP` or `UDP` listener of a Gateway with addresses takes its port on those addresses
//! only (the XDP path's address frontends): Gateways with different addresses may each have
//! one on the same port. It still yields to, and holds off, what takes the port on every
//! address: the proxy's sockets (bound on the listen address), node ports, and `TCP`/`UDP`
//! listeners of Gateways without addresses; a LoadBalancer Service address holds its own
//! address and port.

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    attachment::Gateways,
    listeners::{self, ProxyPorts},
};
use crate::{
    model::{Frontend, L4Protocol, L4Service, ListenerProtocol},
    store::Key,
};

/// Who holds a port: the proxy's protocol when the proxy serves it (`None`: the XDP path),
/// and a name for messages.
#[derive(Clone, Debug)]
pub struct Holder {
    pub proxy: Option<ListenerProtocol>,
    pub who: String,
}

/// Ports held: on every address (`node`), and on one address only (`at`).
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub node: BTreeMap<(L4Protocol, u16), Holder>,
    pub at: BTreeMap<(L4Protocol, u16, IpAddr), Holder>,
}

impl Held {
    /// Who holds `port` on any of `ips` (`None`: on every address; then anyone on any).
    fn holder(&self, (t, port): (L4Protocol, u16), ips: Option<&[IpAddr]>) -> Option<&Holder> {
        if let Some(h) = self.node.get(&(t, port)) {
            return Some(h);
        }
        let mut on = (self.at.range((t, port, IP_MIN)..))
            .take_while(|((t2, p2, _), _)| (*t2, *p2) == (t, port));
        match ips {
            None => on.next().map(|(_, h)| h),
            Some(ips) => on.find(|((_, _, ip), _)| ips.contains(ip)).map(|(_, h)| h),
        }
    }
}

/// The least address, where a range over one port's addresses starts.
const IP_MIN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// Ports held before any Gateway claims: the proxy's own HTTP and HTTPS ports, the Services'
/// node ports, health check node ports and LoadBalancer addresses.
pub fn held(services: &[L4Service], proxy: ProxyPorts) -> Held {
    let mut out = BTreeMap::new();
    let mut at = BTreeMap::new();
    out.insert(
        (L4Protocol::Tcp, proxy.http),
        Holder {
            proxy: Some(ListenerProtocol::Http),
            who: "the proxy's HTTP port".into(),
        },
    );
    out.insert(
        (L4Protocol::Tcp, proxy.https),
        Holder {
            proxy: Some(ListenerProtocol::Https),
            who: "the proxy's HTTPS port".into(),
        },
    );
    let xdp = |who: String| Holder { proxy: None, who };
    for s in services {
        for f in &s.frontends {
            match f {
                Frontend::NodePort(p) => {
                    out.entry((s.protocol, *p))
                        .or_insert_with(|| xdp(format!("a node port of {}", s.service)));
                }
                Frontend::Address(a) => {
                    at.entry((s.protocol, a.port(), a.ip().to_canonical()))
                        .or_insert_with(|| xdp(format!("a LoadBalancer address of {}", s.service)));
                }
            }
        }
        if let Some(hc) = &s.health_check {
            out.entry((L4Protocol::Tcp, hc.node_port))
                .or_insert_with(|| xdp(format!("the health check node port of {}", s.service)));
        }
    }
    Held { node: out, at }
}

/// Gives each served HTTP, HTTPS, TLS passthrough, TCP and UDP listener its port, oldest
/// Gateway first; a listener whose port another protocol family holds is refused with
/// `PortUnavailable`. `at`: a Gateway's addresses, where its `TCP`/`UDP` listeners' claims
/// are scoped.
pub fn claim<'a>(
    gateways: &mut Gateways<'_>,
    mut held: Held,
    at: impl Fn(&Key) -> Option<&'a [IpAddr]>,
) {
    let mut order: Vec<(i64, Key)> = gateways
        .iter()
        .map(|(k, (gw, _, _))| {
            let t = gw
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            (t, k.clone())
        })
        .collect();
    order.sort();
    for (_, key) in order {
        let Some((_, ls, statuses)) = gateways.get_mut(&key) else {
            continue;
        };
        let ips = at(&key);
        for (l, status) in ls.iter_mut().zip(statuses.iter_mut()) {
            if !l.served {
                continue;
            }
            // (transport, port, the proxy's protocol: None for the XDP path)
            let (transport, port, proxy) = match (l.l4, l.served_port) {
                (Some(t), _) => match u16::try_from(l.port) {
                    Ok(p) => (t, p, None),
                    Err(_) => continue,
                },
                (None, Some(p)) => {
                    // One family: the proxy reads the ClientHello of both.
                    let proto = if l.https || l.tls_passthrough {
                        ListenerProtocol::Https
                    } else {
                        ListenerProtocol::Http
                    };
                    (L4Protocol::Tcp, p, Some(proto))
                }
                (None, None) => continue,
            };
            let proto = match transport {
                L4Protocol::Tcp => "TCP",
                L4Protocol::Udp => "UDP",
            };
            // The proxy's sockets are on every address, whatever the Gateway's.
            let scope = if proxy.is_some() { None } else { ips };
            match held.holder((transport, port), scope) {
                Some(h) if proxy.is_some() && h.proxy == proxy => {} // Shared, same protocol.
                Some(h) => {
                    let msg = format!("port {port}/{proto} is taken by {}", h.who);
                    listeners::refuse(l, status, "PortUnavailable", msg);
                }
                None => {
                    let family = match proxy {
                        Some(ListenerProtocol::Http) => " (HTTP)",
                        Some(_) if l.tls_passthrough => " (TLS)",
                        Some(ListenerProtocol::Https) => " (HTTPS)",
                        Some(ListenerProtocol::TlsPassthrough) => " (TLS)",
                        None => "",
                    };
                    let h = Holder {
                        proxy,
                        who: format!("Gateway {key} listener {}{family}", l.name),
                    };
                    match scope {
                        None => {
                            held.node.insert((transport, port), h);
                        }
                        Some(ips) => {
                            for ip in ips {
                                held.at.insert((transport, port, *ip), h.clone());
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claim on addresses meets the claims on the same addresses and those on every
    /// address, never another address's; a claim on every address meets any.
    #[test]
    fn address_claims_meet_their_own_addresses_and_node_wide_ones() {
        let h = |who: &str| Holder {
            proxy: None,
            who: who.into(),
        };
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let tcp = L4Protocol::Tcp;
        let mut held = Held::default();
        held.at.insert((tcp, 5432, ip("10.0.0.1")), h("one"));
        held.at.insert((tcp, 5432, ip("2001:db8::1")), h("six"));
        held.node.insert((tcp, 80), h("proxy"));
        let who =
            |port, ips: Option<&[IpAddr]>| held.holder((tcp, port), ips).map(|h| h.who.clone());
        assert_eq!(who(5432, Some(&[ip("10.0.0.2")])), None);
        assert_eq!(
            who(5432, Some(&[ip("10.0.0.2"), ip("10.0.0.1")])),
            Some("one".into())
        );
        assert_eq!(who(5432, Some(&[ip("2001:db8::1")])), Some("six".into()));
        assert_eq!(who(5432, None), Some("one".into()));
        assert_eq!(who(80, Some(&[ip("10.0.0.1")])), Some("proxy".into()));
        assert_eq!(who(5433, None), None);
        assert_eq!(
            held.holder((L4Protocol::Udp, 5432), None).map(|h| &h.who),
            None
        );
    }
}
