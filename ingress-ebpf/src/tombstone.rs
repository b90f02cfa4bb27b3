//! Tombstones of ended local flows: how the tc reply program tells a pod's late reply (its
//! flow timed out or was released, so its reverse entry and with it the translation are gone)
//! from the pod's own traffic, which tc at the NIC sees alike (routable pod addresses,
//! hostNetwork pods). Without them the late reply would leave with the pod's address.
//!
//! The rule: a packet whose 5-tuple was a local flow's reply tuple (the tombstone's key) within
//! [`tombstone_lifetime_s`] of that flow's last packet is a late reply, dropped and counted
//! (`drop_late_reply`), as kube-proxy drops what conntrack cannot match to a NATed flow
//! (kubernetes#74839). The tuple's source port is the port the pod serves the Service on and
//! its destination the client's own address and port; the pod sees the Service's connection and
//! a direct one from the same client port as the same socket tuple, so the two cannot overlap:
//! the only traffic of the pod's own on that tuple is a reply to a new direct connection, which
//! for TCP starts with a SYN (the pod's SYN-ACK) and clears the tombstone. For UDP a tuple is
//! the pod's again once the lifetime is over.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use ingress_common::l4::{FlowKey, PROTO_TCP, tombstone_lifetime_s};

use crate::maps::{CONFIG, TOMBSTONES};

const NS: u64 = 1_000_000_000;
const TCP_SYN: u8 = 0x02;

/// Leaves a tombstone for the reverse key `rkey` of a local flow just deleted, whose last
/// packet (either direction) was at `last_seen_ns`.
#[inline(always)]
pub fn bury(rkey: &FlowKey, last_seen_ns: u64) {
    let _ = TOMBSTONES.insert(rkey, &last_seen_ns, 0);
}

/// True when `key` (a packet with no reverse entry, as the pod sent it) is a late reply to an
/// ended flow; `tcp_flags` is the TCP flags byte (0 for UDP). A stale tombstone, or one a TCP
/// SYN/SYN-ACK on its tuple supersedes, is deleted.
#[inline(always)]
pub fn late_reply(key: &FlowKey, tcp_flags: u8) -> bool {
    let Some(seen) = (unsafe { TOMBSTONES.get(key) }).copied() else {
        return false;
    };
    let Some(cfg) = CONFIG.get(0) else {
        return false;
    };
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let lifetime = tombstone_lifetime_s(cfg, key.proto) * NS;
    let opens = key.proto == PROTO_TCP && tcp_flags & TCP_SYN != 0;
    if opens || now.saturating_sub(seen) > lifetime {
        let _ = TOMBSTONES.remove(key);
        return false;
    }
    true
}
