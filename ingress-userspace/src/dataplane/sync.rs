//! Snapshot → BPF map diff. Each (service, address family) is one unit with a slot (its Maglev
//! halves and counters). Only what changed is written: backends, the inactive Maglev half then
//! a generation flip (so no packet sees a half-written table), service entries, source ranges.
//! Removed endpoints (gone from the snapshot: deleted, not serving, or filtered out) drain:
//! they turn removed (existing TCP flows only; UDP flows move on their next datagram) for a
//! grace period, then disappear. Terminating endpoints that still serve are in the snapshot
//! and keep all their flows. After a restart the state is recovered from the pinned maps.
//!
//! # Layout
//! - `desired`: snapshot → the units wanted (the one place the sync reads the model).
//! - `held`: what the maps hold, changed only by writes that succeeded.
//! - `plan`: the pure planner, (held, units, now) → ordered [`MapWrite`]s.
//! - `maps`: the [`L4Maps`] trait, its aya implementation and the executor.
//! - [`L4Sync`] (here): recovers once, plans, executes; a pass that failed is planned again
//!   from what did get written at the next [`L4Sync::maintain`].

mod desired;
mod held;
mod maps;
mod plan;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::{Ebpf, maps::MapError};
use ingress_common::l4::*;

pub use self::{
    held::Held,
    maps::{AyaMaps, L4Maps},
    plan::{MapWrite, Plan},
};
use super::maglev::MaglevError;
use crate::model::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error(transparent)]
    Maglev(#[from] MaglevError),
    #[error("no free service slot for {0} (raise --l4-max-services)")]
    NoServiceSlot(String),
    #[error("no free backend id for {0} (raise --l4-max-backends)")]
    NoBackendId(String),
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("pin root {path}")]
    Pin {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pinned link")]
    Link(#[source] aya::programs::links::LinkError),
    #[error("program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
}

pub(super) fn map_err(name: &'static str) -> impl Fn(MapError) -> SyncError {
    move |source| SyncError::Map { name, source }
}

/// Sizes and timers of the L4 path, as the maps were created with.
#[derive(Clone, Debug)]
pub struct L4Options {
    /// Map sizes: Maglev half size, slot and backend id bounds.
    pub sizes: MapSizes,
    pub snat_ports: (u16, u16),
    pub node_v4: Option<std::net::Ipv4Addr>,
    pub node_v6: Option<std::net::Ipv6Addr>,
    pub tcp_timeout: Duration,
    pub tcp_closing_timeout: Duration,
    pub udp_timeout: Duration,
    /// How long a removed endpoint keeps serving its existing TCP flows (its UDP flows move
    /// at once).
    pub drain: Duration,
    /// This node's name: endpoints on other nodes are remote (SNAT + XDP_TX).
    pub node_name: Option<String>,
    /// The node's addresses, where NodePorts answer; empty: any address.
    pub local_addrs: Vec<std::net::IpAddr>,
}

impl Default for L4Options {
    fn default() -> Self {
        Self {
            sizes: MapSizes::DEFAULT,
            snat_ports: (61000, 65000),
            node_v4: None,
            node_v6: None,
            tcp_timeout: Duration::from_secs(3600),
            tcp_closing_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(60),
            drain: Duration::from_secs(60),
            node_name: None,
            local_addrs: Vec::new(),
        }
    }
}

/// Whole seconds as the BPF side keeps them (`u32`), saturating rather than wrapping to a
/// short timeout.
fn secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl L4Options {
    /// The local-address table; a family with more addresses than fit is left unrestricted.
    pub fn local_addrs(&self) -> LocalAddrs {
        let mut l = LocalAddrs::default();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for a in &self.local_addrs {
            match a {
                IpAddr::V4(a) => v4.push(a.octets()),
                IpAddr::V6(a) => v6.push(a.octets()),
            }
        }
        fill_local(&mut l.v4, &mut l.n_v4, &v4);
        fill_local(&mut l.v6, &mut l.n_v6, &v6);
        l
    }

    pub fn config(&self) -> L4Config {
        L4Config {
            maglev_size: self.sizes.maglev_size,
            snat_port_min: self.snat_ports.0,
            snat_port_max: self.snat_ports.1,
            tcp_timeout_s: secs_u32(self.tcp_timeout),
            tcp_closing_timeout_s: secs_u32(self.tcp_closing_timeout),
            udp_timeout_s: secs_u32(self.udp_timeout),
            _pad: 0,
            node_v4: self.node_v4.map(|a| a.octets()).unwrap_or_default(),
            node_v6: self.node_v6.map(|a| a.octets()).unwrap_or_default(),
            _pad2: [0; 4],
        }
    }
}

/// Lists `addrs` in `table` with their count in `n`; more than fit leave the family
/// unrestricted (count 0).
fn fill_local<T: Copy>(table: &mut [T], n: &mut u32, addrs: &[T]) {
    if addrs.len() <= table.len() {
        *n = addrs.len() as u32;
        table[..addrs.len()].copy_from_slice(addrs);
    }
}

/// What one [`L4Sync::apply`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    pub version: u64,
    /// Service units (service × family) whose entries were written.
    pub services_written: usize,
    pub services_removed: usize,
    pub backends_written: usize,
    pub backends_removed: usize,
    pub tables_swapped: usize,
    pub maglev_entries_written: usize,
    pub source_ranges_written: usize,
    /// Units left as they were.
    pub unchanged: usize,
    /// Flows deleted because their endpoint left: UDP flows when it is removed, every flow
    /// when its drain ends.
    pub flows_released: usize,
    /// ClientIP affinity entries deleted because they named an endpoint that left.
    pub affinities_released: usize,
}

/// Address bytes as the maps hold them.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, FAMILY_V4)
        }
        IpAddr::V6(a) => (a.octets(), FAMILY_V6),
    }
}

/// Inverse of [`addr_bytes`].
pub fn addr_from(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// The L4 maps' sync: recovers what the maps hold once, then plans and performs the writes
/// each snapshot needs.
pub struct L4Sync {
    opts: L4Options,
    /// What the maps hold (`None` until read back once).
    held: Option<Held>,
    /// The units last asked for (`None` before the first snapshot: a daemon that just started
    /// must not take "nothing asked yet" for "nothing wanted").
    units: Option<BTreeMap<String, desired::Unit>>,
    /// A pass failed part way: the next [`L4Sync::maintain`] plans `units` again.
    dirty: bool,
}

impl L4Sync {
    pub fn new(opts: L4Options) -> Self {
        Self {
            opts,
            held: None,
            units: None,
            dirty: false,
        }
    }

    pub fn options(&self) -> &L4Options {
        &self.opts
    }

    /// Writes `snapshot`'s L4 services into the maps of `ebpf`, diffing against what is there.
    pub fn apply(
        &mut self,
        ebpf: &mut Ebpf,
        snapshot: &Snapshot,
    ) -> Result<ApplyReport, SyncError> {
        self.apply_to(&mut AyaMaps(ebpf), snapshot, Instant::now())
    }

    /// [`L4Sync::apply`] over any [`L4Maps`], as of `now`. A snapshot that cannot be planned
    /// (no free slot or backend id) writes nothing: the maps keep serving the previous one.
    pub fn apply_to(
        &mut self,
        maps: &mut dyn L4Maps,
        snapshot: &Snapshot,
        now: Instant,
    ) -> Result<ApplyReport, SyncError> {
        let units = desired::units(snapshot, &self.opts);
        self.recover(maps)?;
        let held = self.held.get_or_insert_with(Held::empty);
        let plan = plan::apply(held, &units, &self.opts, now)?;
        self.units = Some(units);
        let mut report = self.execute(maps, plan)?;
        report.version = snapshot.version;
        Ok(report)
    }

    /// Reads back what the maps hold, once.
    fn recover(&mut self, maps: &mut dyn L4Maps) -> Result<(), SyncError> {
        if self.held.is_none() {
            self.held = Some(maps.read(&self.opts.sizes)?);
        }
        Ok(())
    }

    /// Performs `plan`; a failure part way leaves the sync dirty until a pass succeeds.
    fn execute(&mut self, maps: &mut dyn L4Maps, plan: Plan) -> Result<ApplyReport, SyncError> {
        let held = self.held.get_or_insert_with(Held::empty);
        self.dirty = true;
        let report = maps::execute(maps, held, plan)?;
        self.dirty = false;
        Ok(report)
    }

    /// Replaces the node's addresses (NodePorts answer on these); written at once.
    pub fn set_local_addrs(
        &mut self,
        ebpf: &mut Ebpf,
        addrs: Vec<IpAddr>,
    ) -> Result<(), SyncError> {
        self.set_local_addrs_to(&mut AyaMaps(ebpf), addrs)
    }

    /// [`L4Sync::set_local_addrs`] over any [`L4Maps`].
    pub fn set_local_addrs_to(
        &mut self,
        maps: &mut dyn L4Maps,
        addrs: Vec<IpAddr>,
    ) -> Result<(), SyncError> {
        self.opts.local_addrs = addrs;
        self.recover(maps)?;
        let held = self.held.get_or_insert_with(Held::empty);
        let plan = plan::config(held, &self.opts, Instant::now());
        let dirty = self.dirty;
        self.execute(maps, plan)?;
        self.dirty = dirty;
        Ok(())
    }

    /// Ends drains that are over and has the kernel resolve the next hops XDP found without
    /// a neighbour; call it now and then (the run loop does, once a second).
    pub fn maintain(&mut self, ebpf: &mut Ebpf) -> Result<ApplyReport, SyncError> {
        let report = self.maintain_to(&mut AyaMaps(ebpf), Instant::now())?;
        super::neigh::resolve_wanted(ebpf)?;
        Ok(report)
    }

    /// [`L4Sync::maintain`]'s map upkeep over any [`L4Maps`], as of `now`: after a pass that
    /// failed part way, the last units are planned again from what did get written (the
    /// repair, which ends drains too); otherwise drains that are over end.
    pub fn maintain_to(
        &mut self,
        maps: &mut dyn L4Maps,
        now: Instant,
    ) -> Result<ApplyReport, SyncError> {
        self.recover(maps)?;
        let held = self.held.get_or_insert_with(Held::empty);
        // Units that cannot be planned any more were reported when they were applied; drains
        // still end meanwhile.
        let repair = match (&self.units, self.dirty) {
            (Some(units), true) => plan::apply(held, units, &self.opts, now).ok(),
            _ => None,
        };
        let plan = repair.unwrap_or_else(|| plan::maintain(held, &self.opts, now));
        self.execute(maps, plan)
    }

    /// What the sync believes the maps hold (`None` before the first pass).
    pub fn belief(&self) -> Option<&Held> {
        self.held.as_ref()
    }
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn local_addrs_list_each_family_unless_it_has_more_than_fit() {
        let v6: Vec<IpAddr> = ["2001:db8::2", "2001:db8::3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let v4 =
            |n: u8| -> Vec<IpAddr> { (1..=n).map(|i| IpAddr::from([198, 18, 0, i])).collect() };
        let mut opts = L4Options {
            local_addrs: v4(16).into_iter().chain(v6.iter().copied()).collect(),
            ..L4Options::default()
        };
        let l = opts.local_addrs();
        assert_eq!((l.n_v4, l.n_v6), (16, 2));
        assert_eq!(l.v4[15], [198, 18, 0, 16]);
        assert_eq!(
            l.v6[1],
            "2001:db8::3"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        // One IPv4 address too many: that family is unrestricted, the other still listed.
        opts.local_addrs = v6.iter().copied().chain(v4(17)).collect();
        let l = opts.local_addrs();
        assert_eq!((l.n_v4, l.n_v6), (0, 2));
        assert_eq!(l.v4, [[0; 4]; LOCAL_ADDRS_V4]);
        assert_eq!(
            l.v6[0],
            "2001:db8::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }
}
