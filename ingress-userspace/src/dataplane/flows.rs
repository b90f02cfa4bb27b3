//! The flow tables' upkeep: `XDPI_CONNTRACK` and `XDPI_REVNAT` are plain hashes, not LRUs, so
//! that a full table refuses new flows instead of evicting established ones (as nf_conntrack
//! does). The packet path deletes a flow and its reverse entry when it meets them dead; this
//! sweep, like conntrack's GC worker, deletes the ones no packet comes back for: flows past
//! their timeout (TCP, UDP, or the closing timeout after FIN/RST) with their reverse entries,
//! and reverse entries whose flow is gone. It also says how full the tables are, and
//! [`release_backends`] deletes the flows and ClientIP affinity entries of endpoints that left
//! (UDP flows when they are removed, every flow when their drain ends). Every local flow it
//! deletes leaves a tombstone ([`MAP_TOMBSTONES`]), as the packet path's deletions do, so that a
//! pod's reply that comes after its flow is dropped rather than sent with the pod's address.

use std::collections::HashMap;

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, MapError},
};
use ingress_common::l4::{
    AffinityKey, AffinityValue, CT_F_CLOSING, CT_F_SNAT, CtEntry, FAMILY_V6, FlowKey, L4Config,
    MAP_AFFINITY, MAP_CONFIG, MAP_CONNTRACK, MAP_REVNAT, MAP_TOMBSTONES, PROTO_UDP, RevNatEntry,
};

use super::sync::SyncError;

/// A reverse entry younger than this is never an orphan: the program writes it just before its
/// flow entry, and a sweep may run in between.
const ORPHAN_GRACE_NS: u64 = 2_000_000_000;

/// Occupancy of the flow tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowTables {
    /// Entries in the flow table (one per flow).
    pub flows: u32,
    /// Entries in the reverse-NAT table (one per flow, too).
    pub reverse: u32,
    /// Size of each table (`--l4-conntrack-size`).
    pub capacity: u32,
}

impl FlowTables {
    /// True when a new flow would be refused (`drop_flow_table_full`) for want of room.
    pub fn full(&self) -> bool {
        self.capacity > 0 && (self.flows >= self.capacity || self.reverse >= self.capacity)
    }
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The tables after the sweep.
    pub tables: FlowTables,
    /// Timed-out flows deleted (with their reverse entries).
    pub expired: u32,
    /// Reverse entries deleted because their flow was gone before the sweep (not counting
    /// those of the `expired` flows).
    pub orphans: u32,
}

fn merr(name: &'static str) -> impl Fn(MapError) -> SyncError {
    move |source| SyncError::Map { name, source }
}

/// Timeout of a flow in ns, as the program computes it (`l4::timeout_ns`).
fn timeout_ns(cfg: &L4Config, proto: u8, flags: u32) -> u64 {
    let s = if proto == PROTO_UDP {
        cfg.udp_timeout_s
    } else if flags & CT_F_CLOSING != 0 {
        cfg.tcp_closing_timeout_s
    } else {
        cfg.tcp_timeout_s
    };
    u64::from(s) * 1_000_000_000
}

/// The key of the reverse entry of flow `k` → `v` (as the program writes it).
pub fn reverse_key(cfg: &L4Config, k: &FlowKey, v: &CtEntry) -> FlowKey {
    let (daddr, dport) = if v.snat_port != 0 {
        let mut node = [0u8; 16];
        if k.family == FAMILY_V6 {
            node = cfg.node_v6;
        } else {
            node[..4].copy_from_slice(&cfg.node_v4);
        }
        (node, v.snat_port)
    } else {
        (k.saddr, k.sport)
    };
    FlowKey {
        saddr: v.backend_addr,
        daddr,
        sport: v.backend_port,
        dport,
        proto: k.proto,
        family: k.family,
        _pad: [0; 2],
    }
}

/// The monotonic clock the program's `bpf_ktime_get_ns` reads, in ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Deletes timed-out flows with their reverse entries, then reverse entries without a flow,
/// as of `now_ns` (the program's clock, [`monotonic_ns`]). A flow is timed out when neither
/// direction was seen within its timeout (replies refresh the reverse entry). Entries are
/// re-read just before they are deleted, so one a packet refreshed meanwhile stays.
pub fn sweep(ebpf: &mut Ebpf, now_ns: u64) -> Result<SweepReport, SyncError> {
    let cfg = config(ebpf)?;
    let idle = |k: &FlowKey, flags: u32, seen: u64| {
        now_ns.saturating_sub(seen) > timeout_ns(&cfg, k.proto, flags)
    };
    // aya lends one map mutably at a time: read both, then delete from one, then the other.
    let (flows, capacity) = {
        let m = flow_map(ebpf)?;
        let all: Vec<(FlowKey, CtEntry)> = m.iter().filter_map(Result::ok).collect();
        (all, capacity(ebpf))
    };
    let revs: HashMap<FlowKey, RevNatEntry> =
        rev_map(ebpf)?.iter().filter_map(Result::ok).collect();

    let mut report = SweepReport::default();
    // Flows: gone when both directions idled out.
    // Reverse key of each expired flow → the flow entry's last packet.
    let mut released = HashMap::new();
    {
        let mut m: BpfHashMap<&mut MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
            ebpf.map_mut(MAP_CONNTRACK)
                .ok_or(SyncError::MissingMap(MAP_CONNTRACK))?,
        )
        .map_err(merr(MAP_CONNTRACK))?;
        for (k, _) in &flows {
            let Ok(v) = m.get(k, 0) else { continue };
            let rk = reverse_key(&cfg, k, &v);
            let rev_idle = revs
                .get(&rk)
                .is_none_or(|r| idle(k, r.flags | v.flags, r.last_seen_ns));
            if idle(k, v.flags, v.last_seen_ns) && rev_idle && m.remove(k).is_ok() {
                report.expired += 1;
                released.insert(rk, v.last_seen_ns);
            }
        }
    }
    // Reverse entries: gone when their flow is (those of the flows just deleted at once,
    // others after a grace period: the program writes the reverse entry first).
    let mut graves = Vec::new();
    let orphans: Vec<FlowKey> = {
        let m = flow_map(ebpf)?;
        revs.iter()
            .filter(|(rk, r)| {
                let k = FlowKey {
                    saddr: r.client_addr,
                    daddr: r.frontend_addr,
                    sport: r.client_port,
                    dport: r.frontend_port,
                    proto: rk.proto,
                    family: rk.family,
                    _pad: [0; 2],
                };
                !m.get(&k, 0)
                    .is_ok_and(|v| reverse_key(&cfg, &k, &v) == **rk)
            })
            .map(|(rk, _)| *rk)
            .collect()
    };
    {
        let mut m: BpfHashMap<&mut MapData, FlowKey, RevNatEntry> = BpfHashMap::try_from(
            ebpf.map_mut(MAP_REVNAT)
                .ok_or(SyncError::MissingMap(MAP_REVNAT))?,
        )
        .map_err(merr(MAP_REVNAT))?;
        for rk in orphans {
            let Ok(r) = m.get(&rk, 0) else { continue };
            let theirs = released.get(&rk);
            let old = now_ns.saturating_sub(r.last_seen_ns) > ORPHAN_GRACE_NS;
            if !(theirs.is_some() || old) {
                continue;
            }
            let removed = m.remove(&rk).is_ok();
            if removed {
                let seen = theirs.map_or(r.last_seen_ns, |&s| s.max(r.last_seen_ns));
                graves.push((rk, r.flags, seen));
            }
            if removed && theirs.is_none() {
                report.orphans += 1;
            }
        }
    }
    bury(ebpf, &graves)?;
    report.tables = FlowTables {
        flows: flow_map(ebpf)?.keys().count() as u32,
        reverse: rev_map(ebpf)?.keys().count() as u32,
        capacity,
    };
    Ok(report)
}

/// One backend as flow entries name it: id, address and port (network order, as in
/// [`CtEntry`]), and the service slot its affinity entries are keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendRef {
    pub id: u32,
    pub addr: [u8; 16],
    pub port: u16,
    pub svc_slot: u32,
}

/// What one [`release_backends`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Flows deleted, each with its reverse entry.
    pub flows: u32,
    /// ClientIP affinity entries deleted.
    pub affinities: u32,
}

/// Deletes the flows to the backends `gone` (only those of protocol `proto`, or all with
/// `None`) with their reverse entries, and the ClientIP affinity entries that name them. The
/// sync calls it with `PROTO_UDP` when endpoints are removed (kube-proxy likewise deletes a
/// removed UDP endpoint's conntrack entries, so that a client that keeps sending is routed to
/// a new endpoint; the program moves such a flow on its next datagram anyway, this frees its
/// entries and SNAT port at once) and with `None` when their drain ends (their flows are over;
/// the freed backend id may name another endpoint next). Each entry is re-read just before it
/// is deleted, so a flow a packet re-opened meanwhile (to another backend) stays.
pub fn release_backends(
    ebpf: &mut Ebpf,
    gone: &[BackendRef],
    proto: Option<u8>,
) -> Result<Released, SyncError> {
    let mut out = Released::default();
    if gone.is_empty() {
        return Ok(out);
    }
    let cfg = config(ebpf)?;
    let names = |v: &CtEntry| {
        gone.iter()
            .any(|b| b.id == v.backend_id && b.addr == v.backend_addr && b.port == v.backend_port)
    };
    let flows: Vec<FlowKey> = flow_map(ebpf)?
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| proto.is_none_or(|p| p == k.proto) && names(v))
        .map(|(k, _)| k)
        .collect();
    let mut released = Vec::new();
    let mut graves = Vec::new();
    {
        let mut m: BpfHashMap<&mut MapData, FlowKey, CtEntry> = BpfHashMap::try_from(
            ebpf.map_mut(MAP_CONNTRACK)
                .ok_or(SyncError::MissingMap(MAP_CONNTRACK))?,
        )
        .map_err(merr(MAP_CONNTRACK))?;
        for k in flows {
            let Ok(v) = m.get(&k, 0) else { continue };
            if names(&v) && m.remove(&k).is_ok() {
                out.flows += 1;
                released.push((k, reverse_key(&cfg, &k, &v), v.last_seen_ns));
            }
        }
    }
    {
        let mut m: BpfHashMap<&mut MapData, FlowKey, RevNatEntry> = BpfHashMap::try_from(
            ebpf.map_mut(MAP_REVNAT)
                .ok_or(SyncError::MissingMap(MAP_REVNAT))?,
        )
        .map_err(merr(MAP_REVNAT))?;
        for (k, rk, seen) in released {
            // Still this flow's: a SNAT port may have gone to another client meanwhile.
            let Ok(r) = m.get(&rk, 0) else { continue };
            if r.client_addr == k.saddr && r.client_port == k.sport && m.remove(&rk).is_ok() {
                graves.push((rk, r.flags, seen.max(r.last_seen_ns)));
            }
        }
    }
    bury(ebpf, &graves)?;
    let map = ebpf
        .map_mut(MAP_AFFINITY)
        .ok_or(SyncError::MissingMap(MAP_AFFINITY))?;
    let mut aff: BpfHashMap<&mut MapData, AffinityKey, AffinityValue> =
        BpfHashMap::try_from(map).map_err(merr(MAP_AFFINITY))?;
    let pinned = |k: &AffinityKey, v: &AffinityValue| {
        gone.iter()
            .any(|b| b.svc_slot == k.svc_slot && b.id == v.backend_id)
    };
    let stale: Vec<AffinityKey> = aff
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| pinned(k, v))
        .map(|(k, _)| k)
        .collect();
    for k in stale {
        if aff.get(&k, 0).is_ok_and(|v| pinned(&k, &v)) && aff.remove(&k).is_ok() {
            out.affinities += 1;
        }
    }
    Ok(out)
}

/// Leaves a tombstone for each reverse entry just deleted (`(key, its flags, the flow's last
/// packet in ns)`) of a local flow; SNAT flows' replies come back to the node's port, where a late
/// one is the kernel's, so they need none. See the program's `tombstone` module for the rule.
fn bury(ebpf: &mut Ebpf, graves: &[(FlowKey, u32, u64)]) -> Result<(), SyncError> {
    let local: Vec<_> = graves
        .iter()
        .filter(|(_, flags, _)| flags & CT_F_SNAT == 0)
        .collect();
    if local.is_empty() {
        return Ok(());
    }
    let map = ebpf
        .map_mut(MAP_TOMBSTONES)
        .ok_or(SyncError::MissingMap(MAP_TOMBSTONES))?;
    let mut m: BpfHashMap<&mut MapData, FlowKey, u64> =
        BpfHashMap::try_from(map).map_err(merr(MAP_TOMBSTONES))?;
    for (rk, _, seen) in local {
        m.insert(rk, seen, 0).map_err(merr(MAP_TOMBSTONES))?;
    }
    Ok(())
}

/// The runtime configuration as the program reads it.
fn config(ebpf: &Ebpf) -> Result<L4Config, SyncError> {
    let map = ebpf
        .map(MAP_CONFIG)
        .ok_or(SyncError::MissingMap(MAP_CONFIG))?;
    let a: Array<&MapData, L4Config> = Array::try_from(map).map_err(merr(MAP_CONFIG))?;
    a.get(&0, 0).map_err(merr(MAP_CONFIG))
}

/// Occupancy of the flow tables, without touching them.
pub fn occupancy(ebpf: &Ebpf) -> Result<FlowTables, SyncError> {
    let m = flow_map(ebpf)?;
    Ok(FlowTables {
        flows: m.keys().count() as u32,
        reverse: rev_map(ebpf)?.keys().count() as u32,
        capacity: capacity(ebpf),
    })
}

/// Entries the flow table holds at most (as loaded: `--l4-conntrack-size`).
fn capacity(ebpf: &Ebpf) -> u32 {
    match ebpf.map(MAP_CONNTRACK) {
        Some(aya::maps::Map::HashMap(m) | aya::maps::Map::LruHashMap(m)) => {
            m.info().map(|i| i.max_entries()).unwrap_or(0)
        }
        _ => 0,
    }
}

fn flow_map(ebpf: &Ebpf) -> Result<BpfHashMap<&MapData, FlowKey, CtEntry>, SyncError> {
    let map = ebpf
        .map(MAP_CONNTRACK)
        .ok_or(SyncError::MissingMap(MAP_CONNTRACK))?;
    BpfHashMap::try_from(map).map_err(merr(MAP_CONNTRACK))
}

fn rev_map(ebpf: &Ebpf) -> Result<BpfHashMap<&MapData, FlowKey, RevNatEntry>, SyncError> {
    let map = ebpf
        .map(MAP_REVNAT)
        .ok_or(SyncError::MissingMap(MAP_REVNAT))?;
    BpfHashMap::try_from(map).map_err(merr(MAP_REVNAT))
}

/// Occupancy of the flow tables as Prometheus gauges: `xdp_ingress_l4_flow_table_entries` and
/// `xdp_ingress_l4_flow_table_capacity` by `table` (`flows`, `reverse_nat`).
pub fn prometheus_text(t: &FlowTables) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (metric, help, flows, reverse) in [
        (
            "xdp_ingress_l4_flow_table_entries",
            "Entries in the L4 flow tables (as of the last sweep).",
            t.flows,
            t.reverse,
        ),
        (
            "xdp_ingress_l4_flow_table_capacity",
            "Size of the L4 flow tables; entries at capacity refuse new flows.",
            t.capacity,
            t.capacity,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} gauge");
        let _ = writeln!(out, "{metric}{{table=\"flows\"}} {flows}");
        let _ = writeln!(out, "{metric}{{table=\"reverse_nat\"}} {reverse}");
    }
    out
}
