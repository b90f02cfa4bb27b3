//! Endpoint addresses that point into the node: refused as backends.
//!
//! The proxy and the XDP path run in the node's network namespace, so an EndpointSlice
//! address of `127.0.0.1`, the cloud metadata address `169.254.169.254` or the node's own IP
//! would let anyone who can write an EndpointSlice (a namespace user with a selector-less
//! Service) reach services bound to the node through the ingress. Refused, each as one Error
//! diagnostic on its EndpointSlice (hence an Event); the Service's other endpoints keep serving.
//!
//! Refused kinds: loopback (`127.0.0.0/8`, `::1`), link-local (`169.254.0.0/16`, `fe80::/10`),
//! unspecified / "this network" (`0.0.0.0/8`, `::`: Linux connects `0.0.0.0` to the local
//! host), multicast (`224.0.0.0/4`, `ff00::/8`), broadcast (`255.255.255.255`), IPv4-mapped
//! IPv6 forms of all of these (`::ffff:127.0.0.1`), and this node's own addresses (the
//! daemon's interface addresses passed in as configuration, and the `status.addresses` of the
//! Node named `--node-name`).
//!
//! Trade-off: a `hostNetwork` pod on this node has the node's address and is refused here
//! (other nodes still serve it). `--allow-node-local-endpoints` accepts loopback and node
//! addresses again, for operators who control every EndpointSlice (a bare-metal manifest
//! directory with an app on loopback); link-local, unspecified, multicast and broadcast stay
//! refused. The ingress's own Service (`--ingress-service`) is exempt from the node-address
//! check: its endpoints are the node proxies, which run on the host network.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
};

use super::TranslateConfig;
use crate::store::{Key, Objects};

/// Why an endpoint address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeLocal {
    Loopback,
    LinkLocal,
    Unspecified,
    Multicast,
    Broadcast,
    /// One of this node's own addresses.
    NodeAddress,
}

impl NodeLocal {
    /// What the address is, for the diagnostic.
    pub fn describe(self) -> &'static str {
        match self {
            NodeLocal::Loopback => "a loopback address (127.0.0.0/8, ::1)",
            NodeLocal::LinkLocal => "a link-local address (169.254.0.0/16, fe80::/10)",
            NodeLocal::Unspecified => "an unspecified address (0.0.0.0/8, ::)",
            NodeLocal::Multicast => "a multicast address (224.0.0.0/4, ff00::/8)",
            NodeLocal::Broadcast => "the broadcast address 255.255.255.255",
            NodeLocal::NodeAddress => "an address of this node",
        }
    }

    /// Kinds `--allow-node-local-endpoints` accepts.
    pub fn opt_in_allows(self) -> bool {
        matches!(self, NodeLocal::Loopback | NodeLocal::NodeAddress)
    }
}

/// The address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) reaches; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The kind of node-local address `ip` is by its range alone, if any.
pub fn classify(ip: IpAddr) -> Option<NodeLocal> {
    match canonical(ip) {
        IpAddr::V4(a) => {
            if a.is_loopback() {
                Some(NodeLocal::Loopback)
            } else if a.is_link_local() {
                Some(NodeLocal::LinkLocal)
            } else if a.octets()[0] == 0 {
                // RFC 1122 3.2.1.3 "this network"; 0.0.0.0 itself is the unspecified address.
                Some(NodeLocal::Unspecified)
            } else if a.is_multicast() {
                Some(NodeLocal::Multicast)
            } else if a == Ipv4Addr::BROADCAST {
                Some(NodeLocal::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            if a.is_loopback() {
                Some(NodeLocal::Loopback)
            } else if a.is_unspecified() {
                Some(NodeLocal::Unspecified)
            } else if a.is_multicast() {
                Some(NodeLocal::Multicast)
            } else if a.segments()[0] & 0xffc0 == 0xfe80 {
                Some(NodeLocal::LinkLocal)
            } else {
                None
            }
        }
    }
}

/// Which endpoint addresses one translation refuses.
#[derive(Clone, Debug, Default)]
pub struct EndpointAddressPolicy {
    /// This node's addresses, canonical.
    node_addresses: BTreeSet<IpAddr>,
    allow_node_local: bool,
    /// The ingress's own Service, exempt from the node-address check.
    own_service: Option<Key>,
}

impl EndpointAddressPolicy {
    /// From the configuration and the Node object named `cfg.node_name` (its
    /// `status.addresses` that are IPs).
    pub fn new(objects: &Objects, cfg: &TranslateConfig) -> Self {
        let from_node = cfg
            .node_name
            .as_ref()
            .and_then(|n| objects.nodes.get(&Key::new("", n.as_str())))
            .and_then(|n| n.status.as_ref()?.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|a| a.address.parse::<IpAddr>().ok());
        EndpointAddressPolicy {
            node_addresses: cfg
                .node_addresses
                .iter()
                .copied()
                .chain(from_node)
                .map(canonical)
                .collect(),
            allow_node_local: cfg.allow_node_local_endpoints,
            own_service: cfg.ingress_service.clone(),
        }
    }

    /// Why `ip`, an endpoint of Service `namespace/service`, is refused; `None` if served.
    pub fn refusal(&self, ip: IpAddr, namespace: &str, service: &str) -> Option<NodeLocal> {
        let kind = classify(ip).or_else(|| {
            let own = self
                .own_service
                .as_ref()
                .is_some_and(|k| k.namespace == namespace && k.name == service);
            (!own && self.node_addresses.contains(&canonical(ip))).then_some(NodeLocal::NodeAddress)
        })?;
        (!(self.allow_node_local && kind.opt_in_allows())).then_some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn every_node_local_kind_and_family_is_classified() {
        use NodeLocal::*;
        let cases = [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.3.4", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf:ffff::1", Some(LinkLocal)),
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("::ffff:224.0.0.251", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            // Pod addresses.
            ("10.0.0.1", None),
            ("198.19.0.2", None),
            ("2001:db8::2", None),
            ("fec0::1", None),
            ("::ffff:10.0.0.1", None),
            ("1.0.0.0", None),
            ("223.255.255.255", None),
            ("240.0.0.1", None),
        ];
        for (a, want) in cases {
            assert_eq!(classify(ip(a)), want, "{a}");
        }
    }

    #[test]
    fn node_addresses_come_from_config_and_the_node_object() {
        let mut objects = Objects::default();
        objects.upsert(crate::store::Object::Node(Arc::new(Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("node-a".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: "10.1.0.5".into(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: "node-a".into(),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        })));
        let cfg = TranslateConfig {
            node_name: Some("node-a".into()),
            node_addresses: vec![ip("192.0.2.7"), ip("2001:db8::7")],
            ingress_service: Some(Key::new("ingress", "xdp-ingress")),
            ..TranslateConfig::default()
        };
        let p = EndpointAddressPolicy::new(&objects, &cfg);
        let node = Some(NodeLocal::NodeAddress);
        assert_eq!(p.refusal(ip("10.1.0.5"), "default", "web"), node);
        assert_eq!(p.refusal(ip("192.0.2.7"), "default", "web"), node);
        assert_eq!(p.refusal(ip("::ffff:192.0.2.7"), "default", "web"), node);
        assert_eq!(p.refusal(ip("2001:db8::7"), "default", "web"), node);
        assert_eq!(p.refusal(ip("10.1.0.6"), "default", "web"), None);
        // The node proxies behind the ingress's own Service run on the host network.
        assert_eq!(p.refusal(ip("10.1.0.5"), "ingress", "xdp-ingress"), None);
        assert_eq!(
            p.refusal(ip("127.0.0.1"), "ingress", "xdp-ingress"),
            Some(NodeLocal::Loopback)
        );
        // Another node's addresses are that node's business.
        let other = TranslateConfig {
            node_name: Some("node-b".into()),
            ..TranslateConfig::default()
        };
        let p = EndpointAddressPolicy::new(&objects, &other);
        assert_eq!(p.refusal(ip("10.1.0.5"), "default", "web"), None);
    }

    #[test]
    fn the_opt_in_allows_loopback_and_node_addresses_only() {
        let cfg = TranslateConfig {
            node_addresses: vec![ip("192.0.2.7")],
            allow_node_local_endpoints: true,
            ..TranslateConfig::default()
        };
        let p = EndpointAddressPolicy::new(&Objects::default(), &cfg);
        for a in ["127.0.0.1", "::1", "192.0.2.7"] {
            assert_eq!(p.refusal(ip(a), "default", "web"), None, "{a}");
        }
        for a in [
            "169.254.169.254",
            "0.0.0.0",
            "ff02::1",
            "255.255.255.255",
            "fe80::1",
        ] {
            assert!(p.refusal(ip(a), "default", "web").is_some(), "{a}");
        }
    }
}
