//! L4 service maps: service table, backends, Maglev tables, conntrack, reverse NAT, ClientIP
//! affinity, source ranges, per-service/per-backend counters and the runtime config.
//!
//! Byte order: addresses are raw network-order bytes (`[u8; 16]`, IPv4 in the first 4 bytes,
//! the rest zero); ports are `u16` holding network-order bits (`port.to_be()` on the host).

/// Service table: [`ServiceKey`] → [`ServiceValue`].
pub const MAP_SERVICES: &str = "XDPI_SERVICES";
/// Backends by id: `u32` → [`Backend`].
pub const MAP_BACKENDS: &str = "XDPI_BACKENDS";
/// Maglev tables, two halves per service slot: index `(slot * 2 + gen) * size + h % size` → backend id.
pub const MAP_MAGLEV: &str = "XDPI_MAGLEV";
/// Connection table (hash, not LRU: full means new flows are refused): [`FlowKey`] as received
/// from the client → [`CtEntry`]. Each entry has exactly one [`MAP_REVNAT`] entry.
pub const MAP_CONNTRACK: &str = "XDPI_CONNTRACK";
/// Reverse NAT (hash, same size as [`MAP_CONNTRACK`]): [`FlowKey`] of a reply as the backend
/// sends it → [`RevNatEntry`].
pub const MAP_REVNAT: &str = "XDPI_REVNAT";
/// Tombstones of ended local flows (LRU, as big as [`MAP_REVNAT`]): the [`MAP_REVNAT`] key a
/// local (not SNATed) flow's replies had → the flow's last activity (ns, `bpf_ktime_get_ns`).
/// Written wherever a reverse entry is deleted (the packet path, the daemon's sweep, released
/// endpoints), so that the tc program can tell a pod's late reply to a flow that ended (dropped,
/// `drop_late_reply`: its translation is gone and it must not leave with the pod's address)
/// from the pod's own traffic (passed). See [`tombstone_lifetime_s`].
pub const MAP_TOMBSTONES: &str = "XDPI_TOMBSTONES";
/// ClientIP affinity (LRU): [`AffinityKey`] → [`AffinityValue`].
pub const MAP_AFFINITY: &str = "XDPI_AFFINITY";
/// Source ranges: LPM trie keyed by [`SourceRangeData`] (prefix covers slot + family + address).
pub const MAP_SOURCE_RANGES: &str = "XDPI_SRC_RANGES";
/// Per-service counters (per-CPU array by service slot): [`L4Counter`].
pub const MAP_SERVICE_STATS: &str = "XDPI_SVC_STATS";
/// Per-backend counters (per-CPU array by backend id): [`L4Counter`].
pub const MAP_BACKEND_STATS: &str = "XDPI_BE_STATS";
/// Runtime configuration, one [`L4Config`] at index 0.
pub const MAP_CONFIG: &str = "XDPI_CONFIG";
/// Ports used by frontends, as two bitmaps interleaved: word `port / 32 * 2` has bit
/// `port % 32` set when any frontend uses the port, word `port / 32 * 2 + 1` when an address
/// frontend does. The node's own traffic skips the service lookups; NodePort traffic skips the
/// address lookup.
pub const MAP_PORTS: &str = "XDPI_PORTS";
/// Words in [`MAP_PORTS`].
pub const PORT_WORDS: u32 = 65536 / 32 * 2;
/// The node's own addresses, one [`LocalAddrs`] at index 0: NodePorts answer only on these
/// (like kube-proxy), so traffic routed through the node to other hosts is left alone.
pub const MAP_LOCAL_ADDRS: &str = "XDPI_LOCAL_ADDR";
/// Next hops the XDP path found without a resolved neighbour (LRU hash): [`NeighKey`] →
/// when first seen (ns, `bpf_ktime_get_ns`). The packet is dropped, not passed untranslated
/// (the kernel would answer it with a RST); the daemon has the kernel resolve the address
/// within a second and deletes the entry, and the client's retransmission goes through.
pub const MAP_NEIGH_WANTED: &str = "XDPI_NEIGH_WANT";
/// Entries in [`MAP_NEIGH_WANTED`].
pub const NEIGH_WANTED_SIZE: u32 = 1024;

/// Service unit names by slot (userspace only, for `xdp-ingress backends`): [`ServiceName`].
pub const MAP_SERVICE_NAMES: &str = "XDPI_SVC_NAMES";

/// Maps that survive a daemon restart (pinned), with their default sizes.
pub const PINNED_MAPS: &[&str] = &[
    MAP_SERVICES,
    MAP_BACKENDS,
    MAP_MAGLEV,
    MAP_CONNTRACK,
    MAP_REVNAT,
    MAP_TOMBSTONES,
    MAP_AFFINITY,
    MAP_SOURCE_RANGES,
    MAP_SERVICE_STATS,
    MAP_BACKEND_STATS,
    MAP_CONFIG,
    MAP_SERVICE_NAMES,
    MAP_PORTS,
    MAP_LOCAL_ADDRS,
    crate::syn_limit::MAP_SYN_LIMITS,
    crate::syn_limit::MAP_SYN_SOURCES,
    crate::syn_limit::MAP_SYN_LISTENERS,
    crate::syn_limit::MAP_SYN_LISTENER_STATS,
    crate::syn_limit::MAP_SYN_LISTEN_PORTS,
];

/// Name of the TC program reverse-NATing replies from local pods (attach on the node side of
/// pod veths, ingress; optional).
pub const PROG_TC_REPLY: &str = "tc_pod_reply";
/// Name of the TC program reverse-NATing replies from local pods at the NIC's egress (default).
pub const PROG_TC_NIC_EGRESS: &str = "tc_nic_egress";

pub const DEFAULT_MAX_SERVICES: u32 = 128;
pub const DEFAULT_MAX_BACKENDS: u32 = 4096;
pub const DEFAULT_MAGLEV_SIZE: u32 = 16381;
pub const MAX_MAGLEV_SIZE: u32 = 65537;
pub const DEFAULT_CONNTRACK_SIZE: u32 = 65536;
pub const DEFAULT_AFFINITY_SIZE: u32 = 65536;
pub const SOURCE_RANGES_SIZE: u32 = 16384;
/// Service-table entries per service slot: NodePort and address frontends, IPv4 and IPv6.
pub const SERVICE_KEYS_PER_SLOT: u32 = 4;

/// Entries of each L4 map whose size follows the daemon's flags: the one place they are
/// computed, for the object's defaults (`ingress-ebpf`), the daemon's loader and its check of
/// pinned maps (a pinned map whose size differs from this is recreated at start, and its flows
/// are lost), and the sync's slot and id bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSizes {
    /// Service slots (`--l4-max-services`); each has two Maglev halves and a counter.
    pub max_services: u32,
    /// Backend ids (`--l4-max-backends`).
    pub max_backends: u32,
    /// Entries of one Maglev half (`--l4-maglev-size`, a prime).
    pub maglev_size: u32,
    /// Flow, reverse-NAT and tombstone entries each (`--l4-conntrack-size`).
    pub conntrack: u32,
    /// ClientIP affinity entries (`--l4-affinity-size`).
    pub affinity: u32,
    /// Sources the per-source SYN limit remembers (`--l4-syn-limit-sources`).
    pub syn_sources: u32,
}

impl MapSizes {
    pub const DEFAULT: MapSizes = MapSizes {
        max_services: DEFAULT_MAX_SERVICES,
        max_backends: DEFAULT_MAX_BACKENDS,
        maglev_size: DEFAULT_MAGLEV_SIZE,
        conntrack: DEFAULT_CONNTRACK_SIZE,
        affinity: DEFAULT_AFFINITY_SIZE,
        syn_sources: crate::syn_limit::DEFAULT_SYN_SOURCES_SIZE,
    };

    /// Entries of [`MAP_SERVICES`].
    pub const fn services(&self) -> u32 {
        self.max_services.saturating_mul(SERVICE_KEYS_PER_SLOT)
    }

    /// Entries of [`MAP_MAGLEV`]: two halves per slot.
    pub const fn maglev(&self) -> u32 {
        self.max_services
            .saturating_mul(2)
            .saturating_mul(self.maglev_size)
    }
}

impl Default for MapSizes {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How long after its flow's last packet a tombstone in [`MAP_TOMBSTONES`] holds, in seconds:
/// twice the protocol's idle timeout (the flow's own timeout, then as long again), so a reply
/// that comes late by up to one more timeout is dropped. Past that the tuple is the pod's
/// again. A TCP SYN (or SYN-ACK) on the tuple clears the tombstone at once: it opens a new
/// connection, the client talking to the pod directly.
pub const fn tombstone_lifetime_s(cfg: &L4Config, proto: u8) -> u64 {
    let idle = if proto == PROTO_UDP {
        cfg.udp_timeout_s
    } else {
        cfg.tcp_timeout_s
    };
    2 * idle as u64
}

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `(protocol, address, port)` of a frontend; `addr` all zero for a NodePort (any address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);

/// Service has `sessionAffinity: ClientIP`.
pub const SVC_F_AFFINITY: u32 = 1;
/// Service has source ranges: clients outside them are dropped.
pub const SVC_F_SOURCE_RANGES: u32 = 2;
/// `externalTrafficPolicy: Local`: the backends are this node's endpoints only (no SNAT); with
/// none, new flows are dropped, not refused, so that balancers see the node as down rather
/// than the service as closed (kube-proxy's behaviour).
pub const SVC_F_LOCAL_ONLY: u32 = 4;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Index of the service's Maglev halves and counters.
    pub slot: u32,
    /// Which Maglev half is live (0 or 1); flipped after the other half is written.
    pub generation: u32,
    pub flags: u32,
    pub affinity_timeout_s: u32,
    /// Backends in the live table; 0 means no endpoint at all (drop, counted).
    pub backend_count: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 24);

/// The backend id no backend has. A Maglev entry holding it refuses the new flow as a Service
/// without endpoints does (TCP RST, ICMP port unreachable): the share of a Gateway API L4
/// route's backendRefs that do not resolve (spec: "Connection rejections must respect weight").
pub const NO_BACKEND: u32 = u32::MAX;

/// Backend present (a cleared slot is a removed backend).
pub const BE_F_PRESENT: u8 = 1;
/// Endpoint takes no new flows (nor ClientIP affinity) while its service has one without this
/// flag; its established flows stay. Alone: terminating but still serving (EndpointSlice
/// `serving: true, terminating: true`, KEP-1669), which keeps TCP and UDP flows alike.
pub const BE_F_TERMINATING: u8 = 2;
/// Endpoint lives on another node: SNAT and XDP_TX/REDIRECT instead of DNAT + XDP_PASS.
pub const BE_F_REMOTE: u8 = 4;
/// Endpoint was removed (it left the EndpointSlices or stopped serving) and drains for
/// `--l4-drain-secs`; always with [`BE_F_TERMINATING`]. Its TCP flows finish on it; its UDP
/// flows, which have no end to wait for, move to a live endpoint on their next datagram (as
/// kube-proxy, which deletes a removed UDP endpoint's conntrack entries at once).
pub const BE_F_REMOVED: u8 = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub flags: u8,
    pub svc_slot: u32,
    pub weight: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 32);

/// A 5-tuple as seen in one packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Flow saw FIN or RST: short timeout.
pub const CT_F_CLOSING: u32 = 1;
/// Flow is source-NATed (remote backend).
pub const CT_F_SNAT: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// Backend address and port at selection time; the flow is kept only while the backend
    /// id still names this address.
    pub backend_addr: [u8; 16],
    pub backend_port: u16,
    /// Source port after SNAT (network order), 0 without SNAT.
    pub snat_port: u16,
    pub backend_id: u32,
    pub svc_slot: u32,
    pub flags: u32,
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<CtEntry>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevNatEntry {
    /// Client address and port: the reply's new destination.
    pub client_addr: [u8; 16],
    /// Frontend address and port: the reply's new source.
    pub frontend_addr: [u8; 16],
    pub client_port: u16,
    pub frontend_port: u16,
    pub flags: u32,
    pub last_seen_ns: u64,
}
const _: () = assert!(core::mem::size_of::<RevNatEntry>() == 48);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    pub client: [u8; 16],
    pub svc_slot: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad: u32,
    pub last_used_ns: u64,
}
const _: () = assert!(core::mem::size_of::<AffinityValue>() == 16);

/// A destination to resolve: the packet's new destination address (the FIB's next hop is
/// the kernel's to find when it routes toward it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighKey {
    pub addr: [u8; 16],
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<NeighKey>() == 20);

/// LPM trie data (the key is this behind a `u32` prefix length): service slot (big-endian),
/// family, address. Prefix length = [`SOURCE_RANGE_PREFIX_BITS`] + address prefix bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceRangeData {
    pub slot_be: [u8; 4],
    pub family: u8,
    pub addr: [u8; 16],
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<SourceRangeData>() == 24);
/// Bits of [`SourceRangeData`] data before the address.
pub const SOURCE_RANGE_PREFIX_BITS: u32 = 40;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Counter {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// SYNs dropped by the service's per-source SYN rate limit (`syn_limit`); always 0 for
    /// backends. Not in `packets`/`bytes`, which count what the service passed on.
    pub syn_limited: u64,
}
const _: () = assert!(core::mem::size_of::<L4Counter>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L4Config {
    /// Maglev table size (prime); every service uses it. 0 disables the L4 path.
    pub maglev_size: u32,
    /// SNAT source port range, host order, inclusive.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    pub tcp_timeout_s: u32,
    pub tcp_closing_timeout_s: u32,
    pub udp_timeout_s: u32,
    pub _pad: u32,
    /// SNAT addresses (the node's), network order; all zero disables SNAT for that family.
    pub node_v4: [u8; 4],
    pub node_v6: [u8; 16],
    pub _pad2: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<L4Config>() == 48);

pub const LOCAL_ADDRS_V4: usize = 16;
pub const LOCAL_ADDRS_V6: usize = 16;

/// Up to 16 IPv4 and 16 IPv6 local addresses. A count of 0 for a family means "any address"
/// (not restricted: the daemon could not tell, or has too many to list).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    pub n_v4: u32,
    pub n_v6: u32,
    pub v4: [[u8; 4]; LOCAL_ADDRS_V4],
    pub v6: [[u8; 16]; LOCAL_ADDRS_V6],
}
const _: () = assert!(core::mem::size_of::<LocalAddrs>() == 8 + 64 + 256);

/// A service unit's id (`namespace/name:port#v4`), NUL-padded UTF-8, cut at 124 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub len: u32,
    pub bytes: [u8; 124],
}
const _: () = assert!(core::mem::size_of::<ServiceName>() == 128);

impl Default for ServiceName {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; 124],
        }
    }
}

impl ServiceName {
    pub fn new(name: &str) -> Self {
        let mut n = Self::default();
        // Cut on a char boundary so the bytes stay valid UTF-8.
        let mut end = name.len().min(n.bytes.len());
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        n.bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        n.len = end as u32;
        n
    }

    pub fn as_str(&self) -> &str {
        let len = (self.len as usize).min(self.bytes.len());
        core::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }
}

crate::impl_pod!(
    LocalAddrs,
    ServiceName,
    ServiceKey,
    ServiceValue,
    Backend,
    FlowKey,
    CtEntry,
    RevNatEntry,
    AffinityKey,
    AffinityValue,
    NeighKey,
    SourceRangeData,
    L4Counter,
    L4Config
);
