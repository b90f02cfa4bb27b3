//! Per-source new-connection (SYN) rate limit of a service or of one of the proxy's own
//! listeners: one GCRA step (`ingress_common::syn_limit::admit`) on the source's LRU entry.
//! Called only for a SYN that would open a new flow, so established traffic never pays for it.

use aya_ebpf::{
    bindings::{BPF_ANY, xdp_action},
    helpers::bpf_ktime_get_ns,
};
use ingress_common::{
    l4::{FAMILY_V4, FAMILY_V6},
    stats::Stat,
    syn_limit::{
        SYN_LISTENER_SLOT_BASE, SYN_SOURCE_V6_BYTES, SynLimitConfig, SynListenerKey, SynSourceKey,
        SynSourceState, admit,
    },
};

use crate::{
    l4::{Pkt, Verdict, is_local, verdict_of},
    maps::{
        SYN_LIMITS, SYN_LISTEN_PORTS, SYN_LISTENER_STATS, SYN_LISTENERS, SYN_SOURCES, count_l4,
    },
};

/// True when service `slot` takes this SYN from `pkt`'s source now: no limit set, or the
/// source still has room. The clock is read only under a limit (its GCRA's emission interval
/// may be shorter than a coarse tick, so it is the fine clock, which costs tens of ns under a
/// hypervisor). A subprogram, off the main program's stack.
#[inline(never)]
pub fn admits(pkt: &Pkt, slot: u32) -> bool {
    let Some(cfg) = SYN_LIMITS.get(slot) else {
        return true;
    };
    if cfg.interval_ns == 0 {
        return true;
    }
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    admits_under(cfg, pkt, slot, now)
}

/// True when some listener of the proxy in [`SYN_LISTENERS`] has port `dport` (network
/// order): one array read, so a SYN to any other port of the node costs no hash lookup.
#[inline(always)]
pub fn is_listener_port(dport: u16) -> bool {
    let port = u16::from_be(dport);
    SYN_LISTEN_PORTS
        .get(u32::from(port >> 5))
        .is_some_and(|w| *w & (1u32 << (port & 31)) != 0)
}

/// The verdict on a TCP SYN (no ACK, RST or FIN) that no service frontend took: one to a
/// listener of the proxy in [`SYN_LISTENERS`] (its address, or a wildcard one on any of the
/// node's own addresses) is charged to its source and dropped over the limit; the kernel's
/// listener gets the rest (XDP_PASS). Nothing here ever sees established traffic: the
/// caller looks only at SYNs. A subprogram, off the main program's stack.
#[inline(never)]
pub fn listener(pkt: &Pkt, len: u64) -> Verdict {
    let not_limited = verdict_of(xdp_action::XDP_PASS, Stat::PassNoService);
    let mut key = SynListenerKey {
        addr: pkt.daddr,
        port: pkt.dport,
        family: if pkt.v6 { FAMILY_V6 } else { FAMILY_V4 },
        _pad: 0,
    };
    let found = match SYN_LISTENERS.get_ptr(&key) {
        Some(l) => l,
        None => {
            key.addr = [0; 16];
            match SYN_LISTENERS.get_ptr(&key) {
                // A wildcard bind answers on the node's own addresses only; a SYN routed
                // through the node to another host is not the proxy's.
                Some(l) if is_local(pkt) => l,
                _ => return not_limited,
            }
        }
    };
    // SAFETY: pointer from a successful lookup; hash values stay valid under RCU while we run.
    let l = unsafe { *found };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if admits_under(
        &l.limit,
        pkt,
        SYN_LISTENER_SLOT_BASE.wrapping_add(l.index),
        now,
    ) {
        count_l4(&SYN_LISTENER_STATS, l.index, len, true);
        return not_limited;
    }
    if let Some(c) = SYN_LISTENER_STATS.get_ptr_mut(l.index) {
        // SAFETY: pointer from a successful lookup, CPU-local.
        unsafe { (*c).syn_limited += 1 };
    }
    verdict_of(xdp_action::XDP_DROP, Stat::DropSynRateLimit)
}

/// True when `cfg` (no limit: interval 0) leaves room for this SYN from `pkt`'s source,
/// tracked under `slot`, at `now` (ns); charges it when so.
#[inline(always)]
fn admits_under(cfg: &SynLimitConfig, pkt: &Pkt, slot: u32, now: u64) -> bool {
    if cfg.interval_ns == 0 {
        return true;
    }
    let mut key = SynSourceKey {
        slot,
        family: if pkt.v6 { FAMILY_V6 } else { FAMILY_V4 },
        _pad: [0; 3],
        addr: pkt.saddr,
    };
    if pkt.v6 {
        // The /64: a host picks any address in its prefix.
        let mut i = SYN_SOURCE_V6_BYTES;
        while i < 16 {
            key.addr[i] = 0;
            i += 1;
        }
    }
    match SYN_SOURCES.get_ptr_mut(&key) {
        Some(state) => {
            // SAFETY: pointer from a successful lookup; a plain u64, racing writers only move
            // it (see `SynSourceState`).
            let tat = unsafe { (*state).tat_ns };
            match admit(cfg, tat, now) {
                Some(next) => {
                    // SAFETY: as above.
                    unsafe { (*state).tat_ns = next };
                    true
                }
                None => false,
            }
        }
        None => {
            let Some(next) = admit(cfg, 0, now) else {
                return false;
            };
            // A full LRU evicts its least recently used source; a failed insert (no memory)
            // admits rather than drops: the limit is protection, never an outage.
            let _ = SYN_SOURCES.insert(&key, &SynSourceState { tat_ns: next }, u64::from(BPF_ANY));
            true
        }
    }
}
