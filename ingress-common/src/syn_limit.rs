//! Per-source new-connection (TCP SYN) rate limit at the NIC: per-service settings and the
//! per-source state, as a GCRA (generic cell rate algorithm, ITU-T I.371; equivalent to a
//! token bucket) in integer nanoseconds of `bpf_ktime_get_ns`.
//!
//! A source is an IPv4 address, or the /64 prefix of an IPv6 address (a host usually holds a
//! whole /64 and can pick any address in it). What counts is a TCP SYN without ACK, RST or FIN
//! that opens a flow: a SYN whose 5-tuple already has a live flow (a retransmission after a
//! lost SYN-ACK) opens nothing new and is not charged, and no other segment is ever limited.
//!
//! The proxy's own listeners (the node's HTTP/HTTPS ports, where the kernel accepts) are
//! limited the same way: [`MAP_SYN_LISTENERS`] says which (address, port) pairs they are and
//! their limit; their sources share [`MAP_SYN_SOURCES`] under slots from
//! [`SYN_LISTENER_SLOT_BASE`] on, and their counters are [`MAP_SYN_LISTENER_STATS`].

/// Settings by service slot (array, as big as the service table): [`SynLimitConfig`]; all zero
/// means no limit.
pub const MAP_SYN_LIMITS: &str = "XDPI_SYN_LIMITS";
/// Sources seen by limited services (LRU hash): [`SynSourceKey`] → [`SynSourceState`].
pub const MAP_SYN_SOURCES: &str = "XDPI_SYN_SOURCES";
/// Default entries of [`MAP_SYN_SOURCES`] (`--l4-syn-limit-sources`).
pub const DEFAULT_SYN_SOURCES_SIZE: u32 = 65536;
/// Bytes of an IPv6 source address that name its source (the /64 prefix).
pub const SYN_SOURCE_V6_BYTES: usize = 8;
/// The proxy's listeners as the XDP path sees them (hash): [`SynListenerKey`] →
/// [`SynListener`]. Only a TCP SYN that no service frontend takes is looked up here.
pub const MAP_SYN_LISTENERS: &str = "XDPI_SYN_LISTEN";
/// Ports of [`MAP_SYN_LISTENERS`] as a bitmap (array of [`SYN_LISTEN_PORT_WORDS`] `u32`):
/// port `p` (host order) is bit `p & 31` of word `p >> 5`. One array read keeps a SYN to any
/// other of the node's ports off the listener hash.
pub const MAP_SYN_LISTEN_PORTS: &str = "XDPI_SYN_LPORTS";
/// Words of [`MAP_SYN_LISTEN_PORTS`].
pub const SYN_LISTEN_PORT_WORDS: u32 = 65536 / 32;
/// Entries of [`MAP_SYN_LISTENERS`], and listeners of [`MAP_SYN_LISTENER_STATS`]: the proxy
/// has an HTTP and an HTTPS listener, each at most twice (IPv4 and IPv6 of one wildcard).
pub const SYN_LISTENERS_SIZE: u32 = 16;
/// Counters by listener index (per-CPU array of [`SYN_LISTENERS_SIZE`]): the same
/// `L4Counter` as a service's (`new_flows`: SYNs admitted, `syn_limited`: SYNs dropped).
pub const MAP_SYN_LISTENER_STATS: &str = "XDPI_SYN_LSTATS";
/// Slot of listener index `i` in [`SynSourceKey::slot`]: `SYN_LISTENER_SLOT_BASE + i`, above
/// every service slot (those are below `--l4-max-services`, at most 32767), so a listener's
/// sources never share a bucket with a service's.
pub const SYN_LISTENER_SLOT_BASE: u32 = 0x8000_0000;

/// One service's limit: `burst` SYNs at once per source, then one per `interval_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynLimitConfig {
    /// Nanoseconds per admitted SYN (10^9 / rate per second); 0 means no limit.
    pub interval_ns: u64,
    /// How far a source's theoretical arrival time may run ahead of now: `burst ×
    /// interval_ns`. A SYN is admitted while `max(tat, now) + interval_ns - now <= burst_ns`.
    pub burst_ns: u64,
}
const _: () = assert!(core::mem::size_of::<SynLimitConfig>() == 16);

impl SynLimitConfig {
    /// The limit of `per_second` SYNs per source (at least 1) with bursts of `burst` (at least
    /// 1); exact for rates that divide 10^9, else the interval rounds down (a hair faster). A
    /// rate above 10^9 per second is one SYN per nanosecond, still a limit.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        let per_second = if per_second == 0 { 1 } else { per_second };
        let burst = if burst == 0 { 1 } else { burst };
        // Never 0 (which means "no limit"), whatever the rate.
        let interval_ns = 1_000_000_000 / per_second as u64;
        let interval_ns = if interval_ns == 0 { 1 } else { interval_ns };
        Self {
            interval_ns,
            burst_ns: interval_ns * burst as u64,
        }
    }

    /// No limit.
    pub const NONE: Self = Self {
        interval_ns: 0,
        burst_ns: 0,
    };
}

/// A source as one service sees it: service slot, family, address (IPv4 in the first 4
/// bytes; IPv6 with the last 8 bytes zero, its /64); the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SynSourceKey {
    pub slot: u32,
    pub family: u8,
    pub _pad: [u8; 3],
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SynSourceKey>() == 24);

/// One listener of the proxy: its address (IPv4 in the first 4 bytes; all zero: a wildcard
/// bind, any of the node's own addresses), TCP port in network order, family; the rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SynListenerKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<SynListenerKey>() == 20);

/// What a listener's SYNs get: its limit (never [`SynLimitConfig::NONE`]: an unlimited
/// listener has no entry) and its index (counters, source slot), below [`SYN_LISTENERS_SIZE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynListener {
    pub limit: SynLimitConfig,
    pub index: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SynListener>() == 24);

/// A source's theoretical arrival time (ns, `bpf_ktime_get_ns`): when its bucket is full
/// again. Updated without atomics: CPUs racing on one source may each admit a SYN the
/// other would have counted, at most one extra per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynSourceState {
    pub tat_ns: u64,
}
const _: () = assert!(core::mem::size_of::<SynSourceState>() == 8);

/// The GCRA decision for a SYN at `now` from a source whose state is `tat` (0 for a source
/// never seen): `Some(new tat)` admits it, `None` drops it (state unchanged). The XDP program
/// and userspace tests share this one function.
#[inline(always)]
pub const fn admit(cfg: &SynLimitConfig, tat: u64, now: u64) -> Option<u64> {
    let start = if tat > now { tat } else { now };
    let next = start.wrapping_add(cfg.interval_ns);
    if next.wrapping_sub(now) > cfg.burst_ns {
        None
    } else {
        Some(next)
    }
}

crate::impl_pod!(
    SynLimitConfig,
    SynSourceKey,
    SynSourceState,
    SynListenerKey,
    SynListener
);

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_is_admitted_at_once_then_one_per_interval() {
        // 10 per second, bursts of 3: three at t=0, the fourth waits 100 ms.
        let cfg = SynLimitConfig::new(10, 3);
        let now = 5_000 * MS;
        let mut tat = 0;
        for i in 0..3 {
            tat = admit(&cfg, tat, now).unwrap_or_else(|| panic!("SYN {i} of the burst"));
        }
        assert_eq!(admit(&cfg, tat, now), None);
        assert_eq!(admit(&cfg, tat, now + 99 * MS), None);
        let t = admit(&cfg, tat, now + 100 * MS).expect("one interval later");
        assert_eq!(admit(&cfg, t, now + 100 * MS), None);
        // Idle for a long time: the whole burst again, no more.
        let mut tat = t;
        for _ in 0..3 {
            tat = admit(&cfg, tat, now + 10_000 * MS).expect("burst after idle");
        }
        assert_eq!(admit(&cfg, tat, now + 10_000 * MS), None);
    }

    #[test]
    fn zero_rate_or_burst_still_admits_one() {
        let cfg = SynLimitConfig::new(0, 0);
        assert_eq!(cfg, SynLimitConfig::new(1, 1));
        assert!(admit(&cfg, 0, 1).is_some());
        assert_eq!(
            SynLimitConfig::new(u32::MAX, 1).interval_ns,
            1,
            "still a limit"
        );
    }
}
