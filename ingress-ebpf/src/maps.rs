//! The L4 maps (layouts in `ingress_common::l4`). The daemon pins them (map_pin_path) so a
//! restart keeps flows; sizes here are defaults the loader overrides from its flags. Nothing
//! is pinned by the object itself, so test harnesses loading it share no state.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use ingress_common::l4::{
    AffinityKey, AffinityValue, Backend, CtEntry, FlowKey, L4Config, L4Counter, LocalAddrs,
    MapSizes, NEIGH_WANTED_SIZE, NeighKey, PORT_WORDS, RevNatEntry, SOURCE_RANGES_SIZE, ServiceKey,
    ServiceName, ServiceValue, SourceRangeData,
};
use ingress_common::syn_limit::{
    SYN_LISTEN_PORT_WORDS, SYN_LISTENERS_SIZE, SynLimitConfig, SynListener, SynListenerKey,
    SynSourceKey, SynSourceState,
};

/// Sizes the loader overrides from the daemon's flags (`MapSizes` is the one place they are
/// computed).
const SIZES: MapSizes = MapSizes::DEFAULT;

#[map(name = "XDPI_SERVICES")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::with_max_entries(SIZES.services(), 0);

#[map(name = "XDPI_BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::with_max_entries(SIZES.max_backends, 0);

#[map(name = "XDPI_MAGLEV")]
pub static MAGLEV: Array<u32> = Array::with_max_entries(SIZES.maglev(), 0);

/// Flows and their reverse entries live and die in pairs. Plain hashes, not LRUs: a full
/// table refuses a new flow rather than evict an established one (or half of one); expired
/// entries go on the packet path and in the daemon's sweep (`dataplane::flows`).
#[map(name = "XDPI_CONNTRACK")]
pub static CONNTRACK: HashMap<FlowKey, CtEntry> = HashMap::with_max_entries(SIZES.conntrack, 0);

#[map(name = "XDPI_REVNAT")]
pub static REVNAT: HashMap<FlowKey, RevNatEntry> = HashMap::with_max_entries(SIZES.conntrack, 0);

/// Reverse key of an ended local flow → its last activity (ns); see `tombstone`. An LRU: the
/// oldest tombstones make room, which only shortens how long a late reply is caught.
#[map(name = "XDPI_TOMBSTONES")]
pub static TOMBSTONES: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(SIZES.conntrack, 0);

#[map(name = "XDPI_AFFINITY")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::with_max_entries(SIZES.affinity, 0);

#[map(name = "XDPI_SRC_RANGES")]
pub static SOURCE_RANGES: LpmTrie<SourceRangeData, u32> =
    LpmTrie::with_max_entries(SOURCE_RANGES_SIZE, 0);

#[map(name = "XDPI_SVC_STATS")]
pub static SVC_STATS: PerCpuArray<L4Counter> = PerCpuArray::with_max_entries(SIZES.max_services, 0);

#[map(name = "XDPI_BE_STATS")]
pub static BE_STATS: PerCpuArray<L4Counter> = PerCpuArray::with_max_entries(SIZES.max_backends, 0);

/// Per-CPU scratch space for the big temporaries of the L4 path: the BPF stack (512 bytes over
/// a whole call chain) cannot hold them. Internal to the program; userspace never reads it.
#[repr(C)]
pub struct Scratch {
    pub ct_key: FlowKey,
    pub ct_entry: CtEntry,
    pub rkey: FlowKey,
    /// Key of another flow than the packet's (one whose SNAT port is reclaimed or closed).
    pub old_key: FlowKey,
    pub rev: RevNatEntry,
    pub nat: crate::l4::Nat,
    pub fwd: crate::l4::Fwd,
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
}

#[map(name = "XDPI_SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch space.
#[inline(always)]
pub fn scratch() -> Option<*mut Scratch> {
    SCRATCH.get_ptr_mut(0)
}

#[map(name = "XDPI_NEIGH_WANT")]
pub static NEIGH_WANTED: LruHashMap<NeighKey, u64> =
    LruHashMap::with_max_entries(NEIGH_WANTED_SIZE, 0);

#[map(name = "XDPI_LOCAL_ADDR")]
pub static LOCAL_ADDRS: Array<LocalAddrs> = Array::with_max_entries(1, 0);

#[map(name = "XDPI_PORTS")]
pub static PORTS: Array<u32> = Array::with_max_entries(PORT_WORDS, 0);

/// Written and read by userspace only (names for `xdp-ingress backends`).
#[map(name = "XDPI_SVC_NAMES")]
pub static SVC_NAMES: Array<ServiceName> = Array::with_max_entries(SIZES.max_services, 0);

/// Per-source SYN rate limit of each service slot; see `syn_limit`.
#[map(name = "XDPI_SYN_LIMITS")]
pub static SYN_LIMITS: Array<SynLimitConfig> = Array::with_max_entries(SIZES.max_services, 0);

/// Sources of limited services and their GCRA state. An LRU: at its bound the least recently
/// seen source is forgotten, which only hands that source a fresh burst.
#[map(name = "XDPI_SYN_SOURCES")]
pub static SYN_SOURCES: LruHashMap<SynSourceKey, SynSourceState> =
    LruHashMap::with_max_entries(SIZES.syn_sources, 0);

/// The proxy's listeners with a SYN limit; see `syn_limit::listener`.
#[map(name = "XDPI_SYN_LISTEN")]
pub static SYN_LISTENERS: HashMap<SynListenerKey, SynListener> =
    HashMap::with_max_entries(SYN_LISTENERS_SIZE, 0);

/// Ports of `SYN_LISTENERS` as a bitmap, so a SYN to another port costs one array read.
#[map(name = "XDPI_SYN_LPORTS")]
pub static SYN_LISTEN_PORTS: Array<u32> = Array::with_max_entries(SYN_LISTEN_PORT_WORDS, 0);

/// Counters of the proxy's listeners by index (`new_flows`: SYNs admitted, `syn_limited`).
#[map(name = "XDPI_SYN_LSTATS")]
pub static SYN_LISTENER_STATS: PerCpuArray<L4Counter> =
    PerCpuArray::with_max_entries(SYN_LISTENERS_SIZE, 0);

#[map(name = "XDPI_CONFIG")]
pub static CONFIG: Array<L4Config> = Array::with_max_entries(1, 0);

/// Adds one packet (and maybe a new flow) to a per-CPU L4 counter slot.
#[inline(always)]
pub fn count_l4(map: &PerCpuArray<L4Counter>, index: u32, bytes: u64, new_flow: bool) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: pointer from a successful lookup, CPU-local.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
            if new_flow {
                (*c).new_flows += 1;
            }
        }
    }
}

/// Adds one SYN dropped by the per-source SYN rate limit to service `slot`'s counters.
#[inline(always)]
pub fn count_syn_limited(slot: u32) {
    if let Some(c) = SVC_STATS.get_ptr_mut(slot) {
        // SAFETY: pointer from a successful lookup, CPU-local.
        unsafe { (*c).syn_limited += 1 };
    }
}
