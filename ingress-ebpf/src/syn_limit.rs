//! Per-source new-connection (SYN) rate limit of a service: one GCRA step
//! (`ingress_common::syn_limit::admit`) on the source's LRU entry. Called only for a SYN that
//! would open a new flow, so established traffic never pays for it.

use aya_ebpf::bindings::BPF_ANY;
use ingress_common::{
    l4::{FAMILY_V4, FAMILY_V6},
    syn_limit::{SYN_SOURCE_V6_BYTES, SynSourceKey, SynSourceState, admit},
};

use crate::{
    l4::Pkt,
    maps::{SYN_LIMITS, SYN_SOURCES},
};

/// True when service `slot` takes this SYN from `pkt`'s source at `now` (ns): no limit set, or
/// the source still has room. A subprogram, off the main program's stack.
#[inline(never)]
pub fn admits(pkt: &Pkt, slot: u32, now: u64) -> bool {
    let Some(cfg) = SYN_LIMITS.get(slot) else {
        return true;
    };
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
