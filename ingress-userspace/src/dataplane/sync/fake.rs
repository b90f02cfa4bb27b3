//! An in-memory stand-in for the L4 maps that fails whichever writes it is told to (by index
//! or by predicate), with a crude data path that opens flows the way the XDP program picks
//! backends, and checks of what the program relies on.

use std::collections::{BTreeMap, BTreeSet};

use aya::{maps::MapError, sys::SyscallError};
use ingress_common::l4::*;
use ingress_common::syn_limit::{MAP_SYN_LIMITS, SynLimitConfig};

use super::{
    SyncError,
    held::{Held, Range, ServiceKeyOrd},
    maps::L4Maps,
    plan::MapWrite,
};
use crate::dataplane::flows::Released;

/// A flow the data path opened: the backend it was given, as its flow entry keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub backend_id: u32,
    pub addr: [u8; 16],
    pub port: u16,
    pub slot: u32,
    pub proto: u8,
    /// The unit name of the slot when the flow opened.
    pub unit: String,
}

type FailFn = Box<dyn FnMut(usize, &MapWrite) -> bool + Send>;

pub struct FakeMaps {
    pub maglev_size: u32,
    pub services: BTreeMap<ServiceKeyOrd, ServiceValue>,
    pub names: BTreeMap<u32, ServiceName>,
    pub syn_limits: BTreeMap<u32, SynLimitConfig>,
    /// Present backends.
    pub backends: BTreeMap<u32, Backend>,
    /// Maglev entries written, by index.
    pub maglev: BTreeMap<u32, u32>,
    pub ranges: BTreeSet<(u32, Range)>,
    pub ports: Vec<u32>,
    pub config: Option<L4Config>,
    pub local: Option<LocalAddrs>,
    pub flows: Vec<Flow>,
    /// Writes attempted so far (the index the next one has).
    pub attempts: usize,
    /// Writes performed, in order.
    pub log: Vec<MapWrite>,
    /// What [`FakeMaps::check_consistent`] found wrong after any write (every prefix of every
    /// plan), with the write's index.
    pub violations: Vec<(usize, String)>,
    fail: Option<FailFn>,
}

impl FakeMaps {
    pub fn new(maglev_size: u32) -> Self {
        FakeMaps {
            maglev_size,
            services: BTreeMap::new(),
            names: BTreeMap::new(),
            syn_limits: BTreeMap::new(),
            backends: BTreeMap::new(),
            maglev: BTreeMap::new(),
            ranges: BTreeSet::new(),
            ports: vec![0; PORT_WORDS as usize],
            config: None,
            local: None,
            flows: Vec::new(),
            attempts: 0,
            log: Vec::new(),
            violations: Vec::new(),
            fail: None,
        }
    }

    /// Fails each write for which `f(index, write)` is true (index counts every attempt).
    pub fn fail_when(&mut self, f: impl FnMut(usize, &MapWrite) -> bool + Send + 'static) {
        self.fail = Some(Box::new(f));
    }

    /// Fails the write with index `n` (counted from now), once.
    pub fn fail_at(&mut self, n: usize) {
        let at = self.attempts + n;
        self.fail_when(move |i, _| i == at);
    }

    /// Fails nothing any more.
    pub fn heal(&mut self) {
        self.fail = None;
    }

    /// The backend id the data path picks for a new flow of `hash` to `key`, as the program
    /// does: live half, entry `hash % size`.
    pub fn pick(&self, key: &ServiceKeyOrd, hash: u32) -> Option<u32> {
        let v = self.services.get(key)?;
        if v.backend_count == 0 {
            return None;
        }
        let base = (v.slot * 2 + v.generation) * self.maglev_size;
        self.maglev.get(&(base + hash % self.maglev_size)).copied()
    }

    /// Opens a flow of `hash` to `key` (a SYN or first datagram), if the service takes one.
    pub fn open_flow(&mut self, key: &ServiceKeyOrd, hash: u32) -> Option<Flow> {
        let id = self.pick(key, hash)?;
        let b = self.backends.get(&id)?;
        let slot = self.services.get(key)?.slot;
        let f = Flow {
            backend_id: id,
            addr: b.addr,
            port: b.port,
            slot,
            proto: key.2,
            unit: self.names.get(&slot).map_or("", |n| n.as_str()).to_string(),
        };
        self.flows.push(f.clone());
        Some(f)
    }

    /// What the XDP program relies on, checked after any prefix of a plan. Returns the first
    /// thing broken.
    pub fn check_consistent(&self) -> Result<(), String> {
        for (k, v) in &self.services {
            let port = u16::from_be(k.1);
            let (word, bit) = (usize::from(port >> 5) * 2, 1u32 << (port & 31));
            if self.ports[word] & bit == 0 {
                return Err(format!("{k:?}: port bit clear"));
            }
            if k.0 != [0; 16] && self.ports[word + 1] & bit == 0 {
                return Err(format!("{k:?}: address port bit clear"));
            }
            if v.backend_count == 0 {
                continue;
            }
            let base = (v.slot * 2 + v.generation) * self.maglev_size;
            for i in 0..self.maglev_size {
                let Some(id) = self.maglev.get(&(base + i)) else {
                    return Err(format!("{k:?}: live half entry {i} never written"));
                };
                if *id == NO_BACKEND {
                    continue; // A refused share (`L4Service::reject_weight`).
                }
                let Some(b) = self.backends.get(id) else {
                    return Err(format!("{k:?}: live half names missing backend {id}"));
                };
                if b.svc_slot != v.slot {
                    return Err(format!(
                        "{k:?}: backend {id} belongs to slot {}",
                        b.svc_slot
                    ));
                }
                if b.flags & BE_F_REMOVED != 0 {
                    return Err(format!("{k:?}: live half names removed backend {id}"));
                }
            }
        }
        for f in &self.flows {
            let Some(b) = self.backends.get(&f.backend_id) else {
                return Err(format!("flow {f:?}: its backend id was cleared"));
            };
            if (b.addr, b.port, b.svc_slot) != (f.addr, f.port, f.slot) {
                return Err(format!("flow {f:?}: its backend id names {b:?} now"));
            }
            let slot_name = self.names.get(&f.slot).map_or("", |n| n.as_str());
            if slot_name != f.unit {
                return Err(format!("flow {f:?}: its slot now serves {slot_name}"));
            }
        }
        Ok(())
    }

    fn injected(w: &MapWrite) -> SyncError {
        let name = match w {
            MapWrite::Config(_) => MAP_CONFIG,
            MapWrite::LocalAddrs(_) => MAP_LOCAL_ADDRS,
            MapWrite::ServiceName { .. } => MAP_SERVICE_NAMES,
            MapWrite::SynLimit { .. } => MAP_SYN_LIMITS,
            MapWrite::Backend { .. } => MAP_BACKENDS,
            MapWrite::MaglevHalf { .. } => MAP_MAGLEV,
            MapWrite::SourceRange { .. } | MapWrite::RemoveSourceRange { .. } => MAP_SOURCE_RANGES,
            MapWrite::Service { .. } | MapWrite::RemoveService { .. } => MAP_SERVICES,
            MapWrite::Ports { .. } => MAP_PORTS,
            MapWrite::ReleaseFlows { .. } => MAP_CONNTRACK,
        };
        SyncError::Map {
            name,
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_update_elem",
                io_error: std::io::Error::from_raw_os_error(libc::ENOMEM),
            }),
        }
    }
}

impl L4Maps for FakeMaps {
    fn read(&mut self, sizes: &MapSizes) -> Result<Held, SyncError> {
        let mut held = Held::empty();
        held.services = self
            .services
            .iter()
            .filter(|(_, v)| v.slot < sizes.max_services)
            .map(|(k, v)| (*k, *v))
            .collect();
        held.backends = self
            .backends
            .iter()
            .filter(|(i, _)| **i < sizes.max_backends)
            .map(|(i, b)| (*i, *b))
            .collect();
        held.names = self.names.clone();
        held.syn_limits = self.syn_limits.clone();
        held.ranges = self.ranges.clone();
        held.ports = self.ports.clone();
        held.config = self.config;
        held.local = self.local;
        Ok(held)
    }

    fn write(&mut self, w: &MapWrite) -> Result<Released, SyncError> {
        let index = self.attempts;
        let r = self.perform(index, w);
        if let Err(v) = self.check_consistent() {
            self.violations.push((index, v));
        }
        r
    }
}

impl FakeMaps {
    fn perform(&mut self, index: usize, w: &MapWrite) -> Result<Released, SyncError> {
        self.attempts += 1;
        if let Some(f) = &mut self.fail
            && f(index, w)
        {
            // A batch fails part way: the first half of its entries are written.
            if let MapWrite::MaglevHalf {
                slot,
                half,
                table,
                dirty,
            } = w
            {
                let base = (slot * 2 + half) * self.maglev_size;
                for i in &dirty[..dirty.len() / 2] {
                    self.maglev.insert(base + i, table[*i as usize]);
                }
            }
            return Err(Self::injected(w));
        }
        let mut out = Released::default();
        match w {
            MapWrite::Config(c) => self.config = Some(*c),
            MapWrite::LocalAddrs(l) => self.local = Some(*l),
            MapWrite::ServiceName { slot, name } => {
                self.names.insert(*slot, *name);
            }
            MapWrite::SynLimit { slot, config } => {
                self.syn_limits.insert(*slot, *config);
            }
            MapWrite::Backend { id, value } => {
                if value.flags & BE_F_PRESENT != 0 {
                    self.backends.insert(*id, *value);
                } else {
                    self.backends.remove(id);
                }
            }
            MapWrite::MaglevHalf {
                slot,
                half,
                table,
                dirty,
            } => {
                assert_eq!(table.len() as u32, self.maglev_size);
                let base = (slot * 2 + half) * self.maglev_size;
                for i in dirty {
                    self.maglev.insert(base + i, table[*i as usize]);
                }
            }
            MapWrite::SourceRange { slot, range } => {
                self.ranges.insert((*slot, *range));
            }
            MapWrite::RemoveSourceRange { slot, range } => {
                self.ranges.remove(&(*slot, *range));
            }
            MapWrite::Service { key, value } => {
                self.services.insert((*key).into(), *value);
            }
            MapWrite::RemoveService { key } => {
                self.services.remove(&(*key).into());
            }
            MapWrite::Ports { word, bits } => self.ports[*word as usize] = *bits,
            MapWrite::ReleaseFlows { backends, proto } => {
                let before = self.flows.len();
                self.flows.retain(|f| {
                    !(proto.is_none_or(|p| p == f.proto)
                        && backends
                            .iter()
                            .any(|b| b.id == f.backend_id && b.addr == f.addr && b.port == f.port))
                });
                out.flows = (before - self.flows.len()) as u32;
            }
        }
        self.log.push(w.clone());
        Ok(out)
    }
}

/// What one unit serves, as the data path sees it: frontends with their service flags,
/// affinity timeout and backend count, the live table as endpoints, the source ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub frontends: BTreeMap<ServiceKeyOrd, (u32, u32, u32)>,
    pub table: Vec<([u8; 16], u16, u8)>,
    pub ranges: BTreeSet<Range>,
}

impl FakeMaps {
    /// Every unit with a frontend, by name.
    pub fn served(&self) -> BTreeMap<String, Served> {
        let mut out: BTreeMap<String, Served> = BTreeMap::new();
        for (k, v) in &self.services {
            let name = self
                .names
                .get(&v.slot)
                .map_or("", |n| n.as_str())
                .to_string();
            let base = (v.slot * 2 + v.generation) * self.maglev_size;
            let table = if v.backend_count == 0 {
                Vec::new()
            } else {
                (0..self.maglev_size)
                    .filter_map(|i| self.maglev.get(&(base + i)))
                    .filter_map(|id| self.backends.get(id))
                    .map(|b| (b.addr, b.port, b.flags))
                    .collect()
            };
            let ranges = self
                .ranges
                .iter()
                .filter(|(s, _)| *s == v.slot)
                .map(|(_, r)| *r)
                .collect();
            let e = out.entry(name).or_insert_with(|| Served {
                frontends: BTreeMap::new(),
                table,
                ranges,
            });
            e.frontends
                .insert(*k, (v.flags, v.affinity_timeout_s, v.backend_count));
        }
        out
    }

    /// Whether `held` says what these maps hold (Maglev halves it knows included).
    pub fn agrees_with(&self, held: &Held) -> Result<(), String> {
        let same = |what: &str, ok: bool| if ok { Ok(()) } else { Err(what.to_string()) };
        same("services", held.services == self.services)?;
        same("backends", held.backends == self.backends)?;
        same("ranges", held.ranges == self.ranges)?;
        same("ports", held.ports == self.ports)?;
        same("config", held.config == self.config)?;
        same("local", held.local == self.local)?;
        for (s, n) in &held.names {
            same("names", self.names.get(s) == Some(n))?;
        }
        for (s, c) in &held.syn_limits {
            same("syn limits", self.syn_limits.get(s) == Some(c))?;
        }
        for (slot, halves) in &held.maglev {
            for (half, t) in halves.iter().enumerate() {
                let Some(t) = t else { continue };
                let base = (slot * 2 + half as u32) * self.maglev_size;
                for (i, id) in t.iter().enumerate() {
                    if self.maglev.get(&(base + i as u32)) != Some(id) {
                        return Err(format!("maglev slot {slot} half {half} entry {i}"));
                    }
                }
            }
        }
        Ok(())
    }
}
