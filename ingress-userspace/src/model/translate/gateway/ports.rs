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

use std::collections::BTreeMap;

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

/// Ports held before any Gateway claims: the proxy's own HTTP and HTTPS ports, the Services'
/// node ports and health check node ports.
pub fn held(services: &[L4Service], proxy: ProxyPorts) -> BTreeMap<(L4Protocol, u16), Holder> {
    let mut out = BTreeMap::new();
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
            if let Frontend::NodePort(p) = f {
                out.entry((s.protocol, *p))
                    .or_insert_with(|| xdp(format!("a node port of {}", s.service)));
            }
        }
        if let Some(hc) = &s.health_check {
            out.entry((L4Protocol::Tcp, hc.node_port))
                .or_insert_with(|| xdp(format!("the health check node port of {}", s.service)));
        }
    }
    out
}

/// Gives each served HTTP, HTTPS, TLS passthrough, TCP and UDP listener its port, oldest
/// Gateway first; a listener whose port another protocol family holds is refused with
/// `PortUnavailable`.
pub fn claim(gateways: &mut Gateways<'_>, mut held: BTreeMap<(L4Protocol, u16), Holder>) {
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
            match held.get(&(transport, port)) {
                Some(h) if proxy.is_some() && h.proxy == proxy => {} // Shared, same protocol.
                Some(h) => {
                    let msg = format!("port {port}/{proto} is taken by {}", h.who);
                    listeners::refuse(l, status, "PortUnavailable", msg);
                    l.served_port = None;
                    status.port = None;
                }
                None => {
                    let family = match proxy {
                        Some(ListenerProtocol::Http) => " (HTTP)",
                        Some(_) if l.tls_passthrough => " (TLS)",
                        Some(ListenerProtocol::Https) => " (HTTPS)",
                        Some(ListenerProtocol::TlsPassthrough) => " (TLS)",
                        None => "",
                    };
                    held.insert(
                        (transport, port),
                        Holder {
                            proxy,
                            who: format!("Gateway {key} listener {}{family}", l.name),
                        },
                    );
                }
            }
        }
    }
}
