//! Snapshot → BPF map diff. Each (service, address family) is one unit with a slot (its Maglev
//! halves and counters). Only what changed is written: backends, the inactive Maglev half then
//! a generation flip (so no packet sees a half-written table), service entries, source ranges.
//! Removed endpoints (gone from the snapshot: deleted, not serving, or filtered out) drain:
//! they turn removed (existing TCP flows only; UDP flows move on their next datagram) for a
//! grace period, then disappear. Terminating endpoints that still serve are in the snapshot
//! and keep all their flows. After a restart the state is recovered from the pinned maps.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, MapError, lpm_trie::Key},
};
use ingress_common::l4::*;

use super::{
    flows::{self, BackendRef},
    maglev::{self, MaglevBackend, MaglevError},
};
use crate::model::{EndpointState, Frontend, L4Protocol, L4Service, Snapshot};

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
    pub maglev_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
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
            maglev_size: DEFAULT_MAGLEV_SIZE,
            max_services: DEFAULT_MAX_SERVICES,
            max_backends: DEFAULT_MAX_BACKENDS,
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
            maglev_size: self.maglev_size,
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

/// Backends that left during one apply or maintenance round, whose flows are to go.
#[derive(Default)]
struct Leaving {
    /// Removed now: their UDP flows go (TCP ones drain), and their affinity entries.
    removed: Vec<BackendRef>,
    /// Drained: every flow and affinity entry of theirs goes.
    ended: Vec<BackendRef>,
}

impl Leaving {
    /// Deletes what [`Leaving`] says from the flow and affinity tables.
    fn release(&self, ebpf: &mut Ebpf, report: &mut ApplyReport) -> Result<(), SyncError> {
        for (gone, proto) in [(&self.removed, Some(PROTO_UDP)), (&self.ended, None)] {
            let r = flows::release_backends(ebpf, gone, proto)?;
            report.flows_released += r.flows as usize;
            report.affinities_released += r.affinities as usize;
        }
        Ok(())
    }
}

fn backend_ref(id: u32, be: &Backend) -> BackendRef {
    BackendRef {
        id,
        addr: be.addr,
        port: be.port,
        svc_slot: be.svc_slot,
    }
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

type BackendKey = (u32, [u8; 16], u16);

#[derive(Clone, Debug)]
struct BackendState {
    id: u32,
    value: Backend,
    /// Set while a removed endpoint drains.
    draining_since: Option<Instant>,
}

#[derive(Clone, Debug, Default)]
struct UnitState {
    keys: BTreeSet<ServiceKeyOrd>,
    value: ServiceValue,
    /// Contents of each Maglev half as last written (`None`: unknown, e.g. after a restart).
    halves: [Option<Vec<u32>>; 2],
    ranges: BTreeSet<(u8, [u8; 16], u8)>,
}

/// `ServiceKey` with an order, for sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ServiceKeyOrd([u8; 16], u16, u8, u8);

impl From<ServiceKeyOrd> for ServiceKey {
    fn from(k: ServiceKeyOrd) -> Self {
        ServiceKey {
            addr: k.0,
            port: k.1,
            proto: k.2,
            family: k.3,
        }
    }
}

impl From<ServiceKey> for ServiceKeyOrd {
    fn from(k: ServiceKey) -> Self {
        ServiceKeyOrd(k.addr, k.port, k.proto, k.family)
    }
}

/// What one unit should look like.
struct Desired {
    keys: BTreeSet<ServiceKeyOrd>,
    flags: u32,
    affinity_timeout_s: u32,
    backends: Vec<(SocketAddr, Backend)>,
    ranges: BTreeSet<(u8, [u8; 16], u8)>,
    /// The ingress's own Service: new flows prefer this node's proxy.
    local_first: bool,
    /// Per-source SYN rate limit (`dataplane::syn_limit`), written before the entry.
    syn_limit: ingress_common::syn_limit::SynLimitConfig,
}

/// The userspace mirror of the L4 maps, and the diff writer.
pub struct L4Sync {
    opts: L4Options,
    recovered: bool,
    /// Slot by unit id (`service-id#v4` / `#v6`).
    slots: BTreeMap<String, u32>,
    units: HashMap<u32, UnitState>,
    backends: HashMap<BackendKey, BackendState>,
    /// Slots whose service went away, freed once their backends drained.
    retiring: BTreeSet<u32>,
    /// The port bitmap as last written (`None` until read back once).
    ports: Option<Vec<u32>>,
}

impl L4Sync {
    pub fn new(opts: L4Options) -> Self {
        Self {
            opts,
            recovered: false,
            slots: BTreeMap::new(),
            units: HashMap::new(),
            backends: HashMap::new(),
            retiring: BTreeSet::new(),
            ports: None,
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
        self.apply_at(ebpf, snapshot, Instant::now())
    }

    fn apply_at(
        &mut self,
        ebpf: &mut Ebpf,
        snapshot: &Snapshot,
        now: Instant,
    ) -> Result<ApplyReport, SyncError> {
        let mut report = ApplyReport {
            version: snapshot.version,
            ..Default::default()
        };
        write_config(ebpf, &self.opts)?;
        if !self.recovered {
            self.recover(ebpf)?;
            self.recovered = true;
        }
        let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
        for svc in &snapshot.l4 {
            for fam in [FAMILY_V4, FAMILY_V6] {
                if let Some(d) = self.desired(svc, fam) {
                    let suffix = if fam == FAMILY_V4 { "v4" } else { "v6" };
                    desired.insert(format!("{}#{suffix}", svc.id), d);
                }
            }
        }
        let mut leaving = Leaving::default();
        // Units that went away: entries removed now, backends drain, slot freed later.
        let gone: Vec<String> = self
            .slots
            .keys()
            .filter(|id| !desired.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(slot) = self.slots.remove(&id) {
                let unit = self.units.remove(&slot).unwrap_or_default();
                let mut services = services_map(ebpf)?;
                for k in &unit.keys {
                    let _ = services.remove(&ServiceKey::from(*k));
                }
                remove_ranges(ebpf, slot, &unit.ranges)?;
                self.retiring.insert(slot);
                report.services_removed += 1;
            }
        }
        for (id, d) in desired {
            let slot = match self.slots.get(&id) {
                Some(s) => *s,
                None => {
                    let s = self
                        .recovered_slot(&d)
                        .map_or_else(|| self.free_slot(&id), Ok)?;
                    self.slots.insert(id.clone(), s);
                    s
                }
            };
            self.retiring.remove(&slot);
            let name = ServiceName::new(&id);
            let mut names: Array<&mut MapData, ServiceName> = typed(ebpf, MAP_SERVICE_NAMES)?;
            if names.get(&slot, 0).ok() != Some(name) {
                names
                    .set(slot, name, 0)
                    .map_err(map_err(MAP_SERVICE_NAMES))?;
            }
            super::syn_limit::write(ebpf, slot, d.syn_limit)?;
            self.sync_unit(ebpf, slot, d, now, &mut report, &mut leaving)?;
        }
        self.expire_drained(ebpf, now, &mut report, &mut leaving)?;
        self.sync_ports(ebpf)?;
        leaving.release(ebpf, &mut report)?;
        Ok(report)
    }

    /// Rewrites the words of the port bitmap that differ from the frontends now in use.
    fn sync_ports(&mut self, ebpf: &mut Ebpf) -> Result<(), SyncError> {
        let mut want = vec![0u32; PORT_WORDS as usize];
        for unit in self.units.values() {
            for k in &unit.keys {
                let p = u16::from_be(k.1);
                let (word, bit) = (usize::from(p >> 5) * 2, 1u32 << (p & 31));
                want[word] |= bit;
                if k.0 != [0; 16] {
                    want[word + 1] |= bit;
                }
            }
        }
        let mut ports: Array<&mut MapData, u32> = typed(ebpf, MAP_PORTS)?;
        let have = match self.ports.take() {
            Some(h) => h,
            None => (0..PORT_WORDS)
                .map(|i| ports.get(&i, 0).map_err(map_err(MAP_PORTS)))
                .collect::<Result<Vec<u32>, _>>()?,
        };
        for (i, (w, h)) in want.iter().zip(&have).enumerate() {
            if w != h {
                ports.set(i as u32, *w, 0).map_err(map_err(MAP_PORTS))?;
            }
        }
        self.ports = Some(want);
        Ok(())
    }

    /// Replaces the node's addresses (NodePorts answer on these); written at once.
    pub fn set_local_addrs(
        &mut self,
        ebpf: &mut Ebpf,
        addrs: Vec<IpAddr>,
    ) -> Result<(), SyncError> {
        if self.opts.local_addrs != addrs {
            self.opts.local_addrs = addrs;
            write_config(ebpf, &self.opts)?;
        }
        Ok(())
    }

    /// Ends drains that are over and has the kernel resolve the next hops XDP found without
    /// a neighbour; call it now and then (the run loop does, once a second).
    pub fn maintain(&mut self, ebpf: &mut Ebpf) -> Result<ApplyReport, SyncError> {
        let mut report = ApplyReport::default();
        let mut leaving = Leaving::default();
        self.expire_drained(ebpf, Instant::now(), &mut report, &mut leaving)?;
        leaving.release(ebpf, &mut report)?;
        super::neigh::resolve_wanted(ebpf)?;
        Ok(report)
    }

    fn desired(&self, svc: &L4Service, fam: u8) -> Option<Desired> {
        let proto = match svc.protocol {
            L4Protocol::Tcp => PROTO_TCP,
            L4Protocol::Udp => PROTO_UDP,
        };
        let mut keys = BTreeSet::new();
        for f in &svc.frontends {
            match f {
                Frontend::NodePort(p) => {
                    keys.insert(ServiceKeyOrd([0; 16], p.to_be(), proto, fam));
                }
                Frontend::Address(sa) => {
                    let (a, f) = addr_bytes(sa.ip());
                    if f == fam {
                        keys.insert(ServiceKeyOrd(a, sa.port().to_be(), proto, fam));
                    }
                }
            }
        }
        let in_family = svc
            .endpoints
            .iter()
            .filter(|e| addr_bytes(e.addr.ip()).1 == fam)
            .count();
        let backends: Vec<(SocketAddr, Backend)> = svc
            .endpoints
            .iter()
            .filter(|e| addr_bytes(e.addr.ip()).1 == fam)
            .filter(|e| !svc.external_traffic_local || !self.is_remote(e))
            .map(|e| {
                let (addr, family) = addr_bytes(e.addr.ip());
                let mut flags = BE_F_PRESENT;
                if e.state == EndpointState::Terminating {
                    flags |= BE_F_TERMINATING;
                }
                if self.is_remote(e) {
                    flags |= BE_F_REMOTE;
                }
                let be = Backend {
                    addr,
                    port: e.addr.port().to_be(),
                    family,
                    flags,
                    svc_slot: 0,
                    weight: e.weight,
                    _pad: 0,
                };
                (e.addr, be)
            })
            .collect();
        // A family with neither frontends nor endpoints is not served.
        if keys.is_empty() || (in_family == 0 && !svc.endpoints.is_empty()) {
            return None;
        }
        let mut flags = 0;
        if svc.external_traffic_local {
            flags |= SVC_F_LOCAL_ONLY;
        }
        let mut affinity_timeout_s = 0;
        if let Some(t) = svc.client_ip_affinity {
            flags |= SVC_F_AFFINITY;
            affinity_timeout_s = secs_u32(t);
        }
        let ranges: BTreeSet<(u8, [u8; 16], u8)> = svc
            .source_ranges
            .iter()
            .map(|p| {
                let (a, f) = addr_bytes(p.addr);
                (f, a, p.len)
            })
            .collect();
        if !svc.source_ranges.is_empty() {
            flags |= SVC_F_SOURCE_RANGES;
        }
        Some(Desired {
            local_first: svc.local_proxy,
            syn_limit: super::syn_limit::config(svc.syn_rate_limit),
            keys,
            flags,
            affinity_timeout_s,
            backends,
            ranges: ranges.into_iter().filter(|r| r.0 == fam).collect(),
        })
    }

    /// True for an endpoint on another node than this daemon's (`--node-name`); unknown
    /// either way counts as local.
    fn is_remote(&self, e: &crate::model::Endpoint) -> bool {
        matches!((&self.opts.node_name, &e.node_name), (Some(mine), Some(theirs)) if mine != theirs)
    }

    fn recovered_slot(&self, d: &Desired) -> Option<u32> {
        self.units
            .iter()
            .filter(|(slot, _)| !self.slots.values().any(|s| s == *slot))
            .find(|(_, u)| u.keys.iter().any(|k| d.keys.contains(k)))
            .map(|(slot, _)| *slot)
    }

    fn free_slot(&self, id: &str) -> Result<u32, SyncError> {
        (0..self.opts.max_services)
            .find(|s| {
                !self.slots.values().any(|x| x == s)
                    && !self.units.contains_key(s)
                    && !self.retiring.contains(s)
            })
            .ok_or_else(|| SyncError::NoServiceSlot(id.to_string()))
    }

    fn free_backend_id(&self, name: &str) -> Result<u32, SyncError> {
        let used: BTreeSet<u32> = self.backends.values().map(|b| b.id).collect();
        (0..self.opts.max_backends)
            .find(|i| !used.contains(i))
            .ok_or_else(|| SyncError::NoBackendId(name.to_string()))
    }

    fn sync_unit(
        &mut self,
        ebpf: &mut Ebpf,
        slot: u32,
        d: Desired,
        now: Instant,
        report: &mut ApplyReport,
        leaving: &mut Leaving,
    ) -> Result<(), SyncError> {
        // Backends: write new and changed ones; endpoints that left start draining.
        let mut ids = Vec::with_capacity(d.backends.len());
        let wanted: BTreeSet<BackendKey> = d
            .backends
            .iter()
            .map(|(_, b)| (slot, b.addr, b.port))
            .collect();
        for (sa, mut be) in d.backends.iter().cloned() {
            be.svc_slot = slot;
            let key = (slot, be.addr, be.port);
            let id = match self.backends.get(&key) {
                Some(s) => s.id,
                None => self.free_backend_id(&sa.to_string())?,
            };
            let changed = self
                .backends
                .get(&key)
                .is_none_or(|s| s.value != be || s.draining_since.is_some());
            if changed {
                backends_map(ebpf)?
                    .set(id, be, 0)
                    .map_err(map_err(MAP_BACKENDS))?;
                report.backends_written += 1;
            }
            self.backends.insert(
                key,
                BackendState {
                    id,
                    value: be,
                    draining_since: None,
                },
            );
            ids.push((sa, id, be));
        }

        // Maglev over active endpoints, or terminating ones when none is active (KEP-1669).
        // The ingress's own Service prefers this node's proxy while it is active: other
        // nodes' proxies take new flows only while it starts, drains or is gone.
        let active: Vec<&(SocketAddr, u32, Backend)> = ids
            .iter()
            .filter(|(_, _, b)| b.flags & BE_F_TERMINATING == 0)
            .collect();
        let local: Vec<&(SocketAddr, u32, Backend)> = active
            .iter()
            .copied()
            .filter(|(_, _, b)| b.flags & BE_F_REMOTE == 0)
            .collect();
        let pool: Vec<&(SocketAddr, u32, Backend)> = if d.local_first && !local.is_empty() {
            local
        } else if active.is_empty() {
            ids.iter().collect()
        } else {
            active
        };
        let names: Vec<String> = pool.iter().map(|(sa, _, _)| sa.to_string()).collect();
        let mb: Vec<MaglevBackend<'_>> = names
            .iter()
            .zip(&pool)
            .map(|(n, (_, _, b))| MaglevBackend {
                name: n,
                weight: b.weight.max(1),
            })
            .collect();
        let table: Vec<u32> = maglev::build(&mb, self.opts.maglev_size)?
            .into_iter()
            .map(|i| pool[i as usize].1)
            .collect();

        let unit = self.units.entry(slot).or_default();
        let mut value = ServiceValue {
            slot,
            generation: unit.value.generation & 1,
            flags: d.flags,
            affinity_timeout_s: d.affinity_timeout_s,
            backend_count: if table.is_empty() {
                0
            } else {
                pool.len() as u32
            },
            _pad: 0,
        };
        let live = value.generation as usize;
        let table_changed = !table.is_empty() && unit.halves[live].as_ref() != Some(&table);
        if table_changed {
            let next = live ^ 1;
            let m = self.opts.maglev_size;
            let base = (slot * 2 + next as u32) * m;
            let mut maglev = maglev_map(ebpf)?;
            let old = unit.halves[next].take();
            for (i, id) in table.iter().enumerate() {
                if old.as_ref().is_some_and(|o| o.get(i) == Some(id)) {
                    continue;
                }
                maglev
                    .set(base + i as u32, *id, 0)
                    .map_err(map_err(MAP_MAGLEV))?;
                report.maglev_entries_written += 1;
            }
            unit.halves[next] = Some(table);
            value.generation = next as u32;
            report.tables_swapped += 1;
        }

        // Source ranges before the flag that enforces them; stale ones after.
        let add: Vec<_> = d.ranges.difference(&unit.ranges).cloned().collect();
        let del: BTreeSet<_> = unit.ranges.difference(&d.ranges).cloned().collect();
        if !add.is_empty() {
            let mut lpm = ranges_map(ebpf)?;
            for (fam, addr, len) in &add {
                lpm.insert(&range_key(slot, *fam, addr, *len), 1, 0)
                    .map_err(map_err(MAP_SOURCE_RANGES))?;
                report.source_ranges_written += 1;
            }
        }

        let keys_changed = unit.keys != d.keys;
        if value != unit.value || keys_changed {
            let mut services = services_map(ebpf)?;
            for k in &d.keys {
                services
                    .insert(ServiceKey::from(*k), value, 0)
                    .map_err(map_err(MAP_SERVICES))?;
            }
            for k in unit.keys.difference(&d.keys) {
                let _ = services.remove(&ServiceKey::from(*k));
            }
            report.services_written += 1;
        } else if !table_changed && add.is_empty() && del.is_empty() {
            report.unchanged += 1;
        }
        unit.value = value;
        unit.keys = d.keys;
        remove_ranges(ebpf, slot, &del)?;
        let unit = self.units.entry(slot).or_default();
        unit.ranges = d.ranges;

        // Endpoints that left start draining, only now that the live Maglev table no longer
        // names them: a UDP flow leaving a removed endpoint must not be given it again.
        let left: Vec<BackendKey> = self
            .backends
            .iter()
            .filter(|(k, s)| k.0 == slot && !wanted.contains(k) && s.draining_since.is_none())
            .map(|(k, _)| *k)
            .collect();
        for k in left {
            if let Some(s) = self.backends.get_mut(&k) {
                s.value.flags |= BE_F_TERMINATING | BE_F_REMOVED;
                s.draining_since = Some(now);
                backends_map(ebpf)?
                    .set(s.id, s.value, 0)
                    .map_err(map_err(MAP_BACKENDS))?;
                report.backends_written += 1;
                leaving.removed.push(backend_ref(s.id, &s.value));
            }
        }
        Ok(())
    }

    fn expire_drained(
        &mut self,
        ebpf: &mut Ebpf,
        now: Instant,
        report: &mut ApplyReport,
        leaving: &mut Leaving,
    ) -> Result<(), SyncError> {
        let done: Vec<BackendKey> = self
            .backends
            .iter()
            .filter(|(k, s)| {
                s.draining_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= self.opts.drain)
                    || (self.retiring.contains(&k.0) && s.draining_since.is_none())
            })
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            let Some(s) = self.backends.get_mut(&k) else {
                continue;
            };
            if self.retiring.contains(&k.0) && s.draining_since.is_none() {
                // First step for a removed service: drain like a removed endpoint.
                s.value.flags |= BE_F_TERMINATING | BE_F_REMOVED;
                s.draining_since = Some(now);
                backends_map(ebpf)?
                    .set(s.id, s.value, 0)
                    .map_err(map_err(MAP_BACKENDS))?;
                report.backends_written += 1;
                leaving.removed.push(backend_ref(s.id, &s.value));
                continue;
            }
            backends_map(ebpf)?
                .set(s.id, Backend::default(), 0)
                .map_err(map_err(MAP_BACKENDS))?;
            leaving.ended.push(backend_ref(s.id, &s.value));
            self.backends.remove(&k);
            report.backends_removed += 1;
        }
        // A retired slot is free once nothing of it drains any more.
        let free: Vec<u32> = self
            .retiring
            .iter()
            .filter(|s| !self.backends.keys().any(|k| k.0 == **s))
            .copied()
            .collect();
        for s in free {
            self.retiring.remove(&s);
            self.units.remove(&s);
        }
        Ok(())
    }

    /// Rebuilds the mirror from maps a previous daemon left (pinned), so slots and backend ids
    /// stay what established flows refer to.
    fn recover(&mut self, ebpf: &mut Ebpf) -> Result<(), SyncError> {
        let services = services_map(ebpf)?;
        let mut found: Vec<(ServiceKey, ServiceValue)> = Vec::new();
        for item in services.iter() {
            let (k, v) = item.map_err(map_err(MAP_SERVICES))?;
            found.push((k, v));
        }
        for (k, v) in found {
            if v.slot >= self.opts.max_services {
                continue;
            }
            let unit = self.units.entry(v.slot).or_default();
            unit.keys.insert(k.into());
            unit.value = v;
        }
        // Names let the first diff match recovered units to the snapshot's, and remove the
        // ones that are gone.
        let names: Array<&mut MapData, ServiceName> = typed(ebpf, MAP_SERVICE_NAMES)?;
        for slot in self.units.keys() {
            if let Ok(n) = names.get(slot, 0)
                && !n.as_str().is_empty()
            {
                self.slots.insert(n.as_str().to_string(), *slot);
            }
        }
        let backends = backends_map(ebpf)?;
        let mut present = Vec::new();
        for id in 0..backends.len().min(self.opts.max_backends) {
            let be = backends.get(&id, 0).map_err(map_err(MAP_BACKENDS))?;
            if be.flags & BE_F_PRESENT != 0 {
                present.push((id, be));
            }
        }
        for (id, be) in present {
            self.backends.insert(
                (be.svc_slot, be.addr, be.port),
                BackendState {
                    id,
                    value: be,
                    draining_since: None,
                },
            );
        }
        // Source ranges: recover what is there per slot so the diff removes stale ones.
        let lpm = ranges_map(ebpf)?;
        let keys: Vec<Key<SourceRangeData>> = lpm.keys().filter_map(Result::ok).collect();
        for k in keys {
            let data = k.data();
            let slot = u32::from_be_bytes(data.slot_be);
            let len = k.prefix_len().saturating_sub(SOURCE_RANGE_PREFIX_BITS) as u8;
            if let Some(u) = self.units.get_mut(&slot) {
                u.ranges.insert((data.family, data.addr, len));
            }
        }
        // Backends of slots without a service are leftovers: drain them.
        let orphan: BTreeSet<u32> = self
            .backends
            .keys()
            .map(|k| k.0)
            .filter(|s| !self.units.contains_key(s))
            .collect();
        self.retiring.extend(orphan);
        Ok(())
    }
}

fn range_key(slot: u32, family: u8, addr: &[u8; 16], len: u8) -> Key<SourceRangeData> {
    // Bits past the prefix are cleared so equal prefixes make equal keys.
    let bits = u32::from(len);
    let mut a = *addr;
    for (i, b) in a.iter_mut().enumerate() {
        let start = i as u32 * 8;
        if start >= bits {
            *b = 0;
        } else if start + 8 > bits {
            *b &= 0xffu8 << (8 - (bits - start));
        }
    }
    Key::new(
        SOURCE_RANGE_PREFIX_BITS + bits,
        SourceRangeData {
            slot_be: slot.to_be_bytes(),
            family,
            addr: a,
            _pad: [0; 3],
        },
    )
}

fn remove_ranges(
    ebpf: &mut Ebpf,
    slot: u32,
    ranges: &BTreeSet<(u8, [u8; 16], u8)>,
) -> Result<(), SyncError> {
    if ranges.is_empty() {
        return Ok(());
    }
    let mut lpm = ranges_map(ebpf)?;
    for (fam, addr, len) in ranges {
        let _ = lpm.remove(&range_key(slot, *fam, addr, *len));
    }
    Ok(())
}

fn write_config(ebpf: &mut Ebpf, opts: &L4Options) -> Result<(), SyncError> {
    let cfg = opts.config();
    let mut map: Array<&mut MapData, L4Config> = typed(ebpf, MAP_CONFIG)?;
    if map.get(&0, 0).ok().as_ref() != Some(&cfg) {
        map.set(0, cfg, 0).map_err(map_err(MAP_CONFIG))?;
    }
    let local = opts.local_addrs();
    let mut map: Array<&mut MapData, LocalAddrs> = typed(ebpf, MAP_LOCAL_ADDRS)?;
    if map.get(&0, 0).ok().as_ref() != Some(&local) {
        map.set(0, local, 0).map_err(map_err(MAP_LOCAL_ADDRS))?;
    }
    Ok(())
}

fn typed<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, SyncError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let map = ebpf.map_mut(name).ok_or(SyncError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}

fn services_map(
    ebpf: &mut Ebpf,
) -> Result<BpfHashMap<&mut MapData, ServiceKey, ServiceValue>, SyncError> {
    typed(ebpf, MAP_SERVICES)
}

fn backends_map(ebpf: &mut Ebpf) -> Result<Array<&mut MapData, Backend>, SyncError> {
    typed(ebpf, MAP_BACKENDS)
}

fn maglev_map(ebpf: &mut Ebpf) -> Result<Array<&mut MapData, u32>, SyncError> {
    typed(ebpf, MAP_MAGLEV)
}

fn ranges_map(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, SourceRangeData, u32>, SyncError> {
    typed(ebpf, MAP_SOURCE_RANGES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_keys_mask_host_bits() {
        let (a, f) = addr_bytes("198.18.7.9".parse().unwrap());
        let k = range_key(3, f, &a, 20);
        assert_eq!(k.prefix_len(), 60);
        assert_eq!(&k.data().addr[..4], &[198, 18, 0, 0]);
        assert_eq!(k.data().slot_be, [0, 0, 0, 3]);
    }

    #[test]
    fn addresses_round_trip() {
        for s in ["198.18.0.2", "2001:db8::2"] {
            let ip: IpAddr = s.parse().unwrap();
            let (b, f) = addr_bytes(ip);
            assert_eq!(addr_from(&b, f), ip);
        }
    }

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
