//! The flow tables' upkeep: `XDPI_CONNTRACK` and `XDPI_REVNAT` are plain hashes, not LRUs, so
//! that a full table refuses new flows instead of evicting established ones (as nf_conntrack
//! does). The packet path deletes a flow and its reverse entry when it meets them dead; this
//! sweep, like conntrack's GC worker, deletes the ones no packet comes back for: flows past
//! their timeout (TCP, UDP, or the closing timeout after FIN/RST) with their reverse entries,
//! and reverse entries whose flow is gone. It also says how full the tables are.

use std::collections::{HashMap, HashSet};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, MapError},
};
use ingress_common::l4::{
    CT_F_CLOSING, CtEntry, FAMILY_V6, FlowKey, L4Config, MAP_CONFIG, MAP_CONNTRACK, MAP_REVNAT,
    PROTO_UDP, RevNatEntry,
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
    let cfg = {
        let map = ebpf
            .map(MAP_CONFIG)
            .ok_or(SyncError::MissingMap(MAP_CONFIG))?;
        let a: Array<&MapData, L4Config> = Array::try_from(map).map_err(merr(MAP_CONFIG))?;
        a.get(&0, 0).map_err(merr(MAP_CONFIG))?
    };
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
    let mut released = HashSet::new();
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
                released.insert(rk);
            }
        }
    }
    // Reverse entries: gone when their flow is (those of the flows just deleted at once,
    // others after a grace period: the program writes the reverse entry first).
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
            let theirs = released.contains(&rk);
            let old = now_ns.saturating_sub(r.last_seen_ns) > ORPHAN_GRACE_NS;
            if !(theirs || old) {
                continue;
            }
            let removed = m.remove(&rk).is_ok();
            if removed && !theirs {
                report.orphans += 1;
            }
        }
    }
    report.tables = FlowTables {
        flows: flow_map(ebpf)?.keys().count() as u32,
        reverse: rev_map(ebpf)?.keys().count() as u32,
        capacity,
    };
    Ok(report)
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
