//! Per-CPU packet counters, indexed by [`Stat`].

/// Name of the per-CPU array holding one [`Counter`] per [`Stat`].
pub const MAP_STATS: &str = "XDPI_STATS";

/// Packets and bytes seen for one counter, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);
crate::impl_pod!(Counter);

macro_rules! stats {
    ($( $(#[$doc:meta])* $name:ident = $idx:literal, $label:literal, $kind:ident; )*) => {
        /// Index of a counter in [`MAP_STATS`]. The discriminants are the map ABI: append only.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Stat {
            $( $(#[$doc])* $name = $idx, )*
        }

        impl Stat {
            /// Every counter, in index order.
            pub const ALL: &'static [Stat] = &[$(Stat::$name,)*];

            /// Stable snake_case label, used in CLI output and metrics.
            pub const fn label(self) -> &'static str {
                match self { $(Stat::$name => $label,)* }
            }

            /// What the counter counts: a protocol, a pass reason or a drop reason.
            pub const fn kind(self) -> StatKind {
                match self { $(Stat::$name => StatKind::$kind,)* }
            }
        }
    };
}

/// The family a [`Stat`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// Every well-formed packet counts once under its protocol.
    Protocol,
    /// Why a packet went to the kernel.
    Pass,
    /// Why a packet was dropped at the NIC.
    Drop,
    /// What the program did with a packet it handled itself.
    Action,
}

stats! {
    /// Every frame the program saw.
    Rx = 0, "rx", Protocol;
    Ipv4Tcp = 1, "ipv4_tcp", Protocol;
    Ipv4Udp = 2, "ipv4_udp", Protocol;
    Ipv4Icmp = 3, "ipv4_icmp", Protocol;
    Ipv4Other = 4, "ipv4_other", Protocol;
    Ipv6Tcp = 5, "ipv6_tcp", Protocol;
    Ipv6Udp = 6, "ipv6_udp", Protocol;
    Ipv6Icmp = 7, "ipv6_icmp", Protocol;
    Ipv6Other = 8, "ipv6_other", Protocol;
    Arp = 9, "arp", Protocol;
    /// Frames carrying one 802.1Q/802.1ad tag (also counted under their inner protocol).
    Vlan = 10, "vlan", Protocol;

    /// Ethertype other than IPv4, IPv6 or ARP.
    PassNonIp = 16, "pass_non_ip", Pass;
    /// Frame shorter than an Ethernet header.
    PassTruncatedEth = 17, "pass_truncated_eth", Pass;
    /// VLAN tag cut short, or a second tag (QinQ is not parsed).
    PassTruncatedVlan = 18, "pass_truncated_vlan", Pass;
    /// IPv4 header cut short (fixed part or options).
    PassTruncatedIpv4 = 19, "pass_truncated_ipv4", Pass;
    /// IPv4 version field is not 4 or IHL below 5.
    PassBadIpv4Header = 20, "pass_bad_ipv4_header", Pass;
    /// IPv6 header cut short.
    PassTruncatedIpv6 = 21, "pass_truncated_ipv6", Pass;
    /// TCP header cut short, or data offset below 5 / beyond the frame.
    PassTruncatedTcp = 22, "pass_truncated_tcp", Pass;
    /// UDP header cut short.
    PassTruncatedUdp = 23, "pass_truncated_udp", Pass;
    /// IPv4 fragment (first or later): only the kernel can reassemble.
    PassIpv4Fragment = 24, "pass_ipv4_fragment", Pass;
    /// IPv6 packet whose next header is an extension header (not walked).
    PassIpv6ExtHeader = 25, "pass_ipv6_ext_header", Pass;
    /// Well-formed packet that matched no service: the node's own traffic.
    PassNoService = 26, "pass_no_service", Pass;
    /// Remote endpoint without a usable route/neighbour: passed to the kernel unmodified.
    PassFibLookup = 27, "pass_fib_lookup", Pass;
    /// No free SNAT source port for a remote endpoint: passed unmodified.
    PassSnatExhausted = 28, "pass_snat_exhausted", Pass;
    /// Would be forwarded out of the NIC with TTL/hop limit 1: the kernel answers it.
    PassTtlExceeded = 29, "pass_ttl_exceeded", Pass;
    /// IP length field disagrees with the frame or cuts the TCP/UDP header.
    PassBadLength = 30, "pass_bad_length", Pass;
    /// TCP segment other than a SYN that belongs to no live flow (never opened, expired, or
    /// its endpoint gone): only a SYN or a UDP datagram creates flow state, so this one goes to
    /// the kernel untouched, which answers it (RST).
    PassNoFlow = 31, "pass_no_flow", Pass;

    /// A service packet that created a flow (new connection).
    L4NewFlow = 32, "l4_new_flow", Action;
    /// A service packet of a known flow.
    L4Established = 33, "l4_established", Action;
    /// DNAT to a pod on this node, then XDP_PASS (the kernel routes it).
    L4LocalDnat = 34, "l4_local_dnat", Action;
    /// DNAT + SNAT to an endpoint on another node, sent with XDP_TX/REDIRECT.
    L4RemoteTx = 35, "l4_remote_tx", Action;
    /// Reply from a remote endpoint reverse-NATed in XDP.
    L4ReplyXdp = 36, "l4_reply_xdp", Action;
    /// Reply from a local pod reverse-NATed in tc.
    L4ReplyTc = 37, "l4_reply_tc", Action;
    /// New flow steered by a ClientIP affinity entry.
    L4AffinityHit = 38, "l4_affinity_hit", Action;
    /// Affinity entry found but expired or stale: a fresh Maglev pick.
    L4AffinityMiss = 39, "l4_affinity_miss", Action;
    /// ICMPv4 error about a NATed flow, rewritten for its pod and passed to the kernel.
    L4IcmpTranslated = 40, "l4_icmp_translated", Action;
    /// A new flow to a service without endpoints answered at once from XDP, as kube-proxy's
    /// REJECT rule does: TCP RST for a SYN, ICMP port unreachable for UDP.
    L4RejectNoEndpoint = 44, "l4_reject_no_endpoint", Action;
    /// A UDP datagram of a flow whose endpoint was removed: that flow ended and the datagram
    /// opened a new one to a live endpoint (kube-proxy clears such conntrack entries).
    L4UdpFlowMoved = 45, "l4_udp_flow_moved", Action;

    /// Client outside the service's source ranges.
    DropSourceRange = 48, "drop_source_range", Drop;
    /// Service has no serving endpoint.
    DropNoBackend = 49, "drop_no_backend", Drop;
    /// New flow refused: the flow or reverse-NAT table is full (established flows keep their
    /// entries; the client retries its SYN). As nf_conntrack's "table full, dropping packet".
    DropFlowTableFull = 50, "drop_flow_table_full", Drop;
    /// `externalTrafficPolicy: Local` and no endpoint on this node: dropped, as kube-proxy
    /// does, so that balancers (health check) take the node out rather than see the service
    /// refuse.
    DropNoLocalEndpoint = 53, "drop_no_local_endpoint", Drop;
    /// The next hop toward the packet's new destination has no neighbour entry yet: dropped
    /// (the sender retransmits) and handed to the daemon, which has the kernel resolve it.
    /// Passing it on untranslated would have the kernel refuse the connection (RST).
    DropNoNeighbour = 54, "drop_no_neighbour", Drop;
    /// A local pod's reply to a flow that ended (timed out, its endpoint released), met by the
    /// tc reply program: its translation is gone, so it is dropped rather than sent to the
    /// client from the pod's address (`MAP_TOMBSTONES` says which tuples were ours; as
    /// kube-proxy drops packets conntrack cannot match, kubernetes#74839).
    DropLateReply = 55, "drop_late_reply", Drop;
    /// A TCP SYN opening a new flow beyond its source's share of the service's per-source SYN
    /// rate limit (`xdp-ingress.dev/syn-rate-limit`, `--syn-rate-limit-per-source`), or a SYN
    /// to one of the proxy's own listeners beyond its source's share of the latter; the
    /// client's SYN retransmission (after 1 s, RFC 6298 5.7) is judged anew.
    DropSynRateLimit = 56, "drop_syn_rate_limit", Drop;
}

/// Number of slots in [`MAP_STATS`]; leaves room to append counters without resizing.
pub const STATS_SLOTS: u32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_unique_slot_and_label() {
        for (i, a) in Stat::ALL.iter().enumerate() {
            assert!((*a as u32) < STATS_SLOTS, "{a:?} beyond the map");
            for b in &Stat::ALL[i + 1..] {
                assert_ne!(*a as u32, *b as u32, "{a:?} and {b:?} share a slot");
                assert_ne!(a.label(), b.label());
            }
        }
    }
}
