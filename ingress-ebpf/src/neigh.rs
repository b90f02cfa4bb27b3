//! Destinations whose next hop has no neighbour entry yet. XDP cannot have the kernel resolve
//! one, and a packet passed on untranslated would be answered by the kernel itself (a RST for
//! a NodePort nobody listens on): so the packet is dropped, its destination recorded in
//! [`NEIGH_WANTED`], and the daemon has the kernel resolve it (`dataplane::neigh`). The
//! sender's retransmission (a SYN after 1 s) then finds the neighbour.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::bpf_ktime_get_ns,
};
use ingress_common::{
    l4::{FAMILY_V4, FAMILY_V6, NeighKey},
    stats::Stat,
};

use crate::{
    l4::{Verdict, verdict_of},
    maps::NEIGH_WANTED,
};

/// Records `addr` for resolution and drops the packet, counted.
#[inline(never)]
pub fn wanted(addr: &[u8; 16], v6: bool) -> Verdict {
    let key = NeighKey {
        addr: *addr,
        family: if v6 { FAMILY_V6 } else { FAMILY_V4 },
        _pad: [0; 3],
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // Already asked for: keep the first time seen.
    let _ = NEIGH_WANTED.insert(&key, &now, u64::from(BPF_NOEXIST));
    verdict_of(xdp_action::XDP_DROP, Stat::DropNoNeighbour)
}
