//! The L4 sync's planner: (what the maps hold, the units wanted, now) → an ordered list of map
//! writes. Pure: no map is touched here, so every decision is tested without root.
//!
//! The order keeps the data path consistent after every prefix of the list, which is what a
//! write failing part way leaves behind:
//! - a backend is written before any Maglev half names it, and a half is fully written before
//!   the service entry that switches to it (the generation flip); the live half is never written;
//! - source ranges are added before the flag that enforces them, removed after;
//! - a port's bit is set before a service entry uses it, cleared after the entry is gone;
//! - an endpoint that left turns removed only after the live table stopped naming it; its
//!   flows are released before its backend id is cleared, and the id is free only then.
//!
//! Each write is recorded in a scratch copy of [`Held`] as it is planned (the same
//! [`Held::record`] the executor applies on success), so later decisions of the same plan see
//! earlier ones: a drain that starts and, with a zero drain time, ends in one pass.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::Instant,
};

use ingress_common::l4::*;
use ingress_common::syn_limit::SynLimitConfig;

use super::{
    ApplyReport, L4Options, SyncError,
    desired::Unit,
    held::{Held, Range, ServiceKeyOrd},
};
use crate::dataplane::{
    flows::BackendRef,
    maglev::{self, MaglevBackend},
};

/// One write to one L4 map (or, for [`MapWrite::ReleaseFlows`], deletions from the flow and
/// affinity tables). A new map is one more variant here, in [`Held::record`] and in each
/// [`super::maps::L4Maps`] implementation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapWrite {
    /// `XDPI_CONFIG[0]`.
    Config(L4Config),
    /// `XDPI_LOCAL_ADDR[0]`.
    LocalAddrs(LocalAddrs),
    /// `XDPI_SVC_NAMES[slot]`.
    ServiceName {
        slot: u32,
        name: ServiceName,
    },
    /// `XDPI_SYN_LIMITS[slot]`: the slot's per-source SYN limit.
    SynLimit {
        slot: u32,
        config: SynLimitConfig,
    },
    /// `XDPI_BACKENDS[id]`; `Backend::default()` clears the id.
    Backend {
        id: u32,
        value: Backend,
    },
    /// The entries `dirty` (indices within the half) of Maglev half `half` (0 or 1) of `slot`,
    /// from `table` (one backend id per entry). Not atomic: a failure may leave part written.
    MaglevHalf {
        slot: u32,
        half: u32,
        table: Arc<[u32]>,
        dirty: Vec<u32>,
    },
    SourceRange {
        slot: u32,
        range: Range,
    },
    RemoveSourceRange {
        slot: u32,
        range: Range,
    },
    /// `XDPI_SERVICES[key]`: insert or replace.
    Service {
        key: ServiceKey,
        value: ServiceValue,
    },
    RemoveService {
        key: ServiceKey,
    },
    /// `XDPI_PORTS[word]`.
    Ports {
        word: u32,
        bits: u32,
    },
    /// Deletes the flows (of `proto` only, or all) and ClientIP affinity entries naming
    /// `backends` (see [`crate::dataplane::flows::release_backends`]).
    ReleaseFlows {
        backends: Vec<BackendRef>,
        proto: Option<u8>,
    },
}

/// Ordered writes, and what they amount to.
#[derive(Clone, Debug)]
pub struct Plan {
    pub writes: Vec<MapWrite>,
    /// When the plan was made: drains that start with it start then.
    pub now: Instant,
    /// Counts of what the writes do (flows released are counted by the executor).
    pub report: ApplyReport,
}

/// Plans writing `units` (by unit id) over what `held` says the maps hold.
pub fn apply(
    held: &Held,
    units: &BTreeMap<String, Unit>,
    opts: &L4Options,
    now: Instant,
) -> Result<Plan, SyncError> {
    let mut p = Planner::new(held, opts, now);
    p.config();
    // Units by the slot they hold: slots with frontends, by name.
    let live: BTreeMap<String, u32> = held
        .live_slots()
        .into_iter()
        .filter(|s| !held.name_of(*s).is_empty())
        .map(|s| (held.name_of(s).to_string(), s))
        .collect();
    // A named slot live when the plan starts is not free for another unit within it.
    p.claimed = live.values().copied().collect();
    // Units that went away: entries removed now, backends drain, slot free once they drained.
    let wanted: BTreeSet<String> = units.keys().map(|id| stored_name(id)).collect();
    for (name, slot) in &live {
        if !wanted.contains(name) {
            for k in p.next.keys_of(*slot) {
                p.push(MapWrite::RemoveService { key: k.into() });
            }
            for r in ranges_of(&p.next, *slot) {
                p.push(MapWrite::RemoveSourceRange {
                    slot: *slot,
                    range: r,
                });
            }
            p.report.services_removed += 1;
        }
    }
    // Ports of new frontends before their entries.
    let want = port_bitmap(units.values().flat_map(|u| u.keys.iter()));
    p.ports(|have, want| have | want, &want);
    for (id, unit) in units {
        let name = ServiceName::new(id);
        let slot = match live.get(name.as_str()) {
            Some(s) => *s,
            None => p.slot_for(&name, unit, id)?,
        };
        p.claimed.insert(slot);
        p.units.insert(slot);
        if p.next.names.get(&slot) != Some(&name) {
            p.push(MapWrite::ServiceName { slot, name });
        }
        // Before the entry (a reused slot never runs under its last service's limit).
        if p.next.syn_limits.get(&slot) != Some(&unit.syn_limit) {
            p.push(MapWrite::SynLimit {
                slot,
                config: unit.syn_limit,
            });
        }
        p.unit(slot, unit)?;
    }
    p.expire();
    // Ports no frontend uses any more, after their entries went.
    p.ports(|_, want| want, &want);
    p.release_removed();
    Ok(p.finish())
}

/// Plans upkeep between snapshots: drains that ended, slots whose service left, releases
/// still owed.
pub fn maintain(held: &Held, opts: &L4Options, now: Instant) -> Plan {
    let mut p = Planner::new(held, opts, now);
    p.units = held.live_slots();
    p.expire();
    p.release_removed();
    p.finish()
}

/// Plans writing the runtime configuration and the node's addresses, where they differ.
pub fn config(held: &Held, opts: &L4Options, now: Instant) -> Plan {
    let mut p = Planner::new(held, opts, now);
    p.config();
    p.finish()
}

/// Words of the port bitmap for `keys`: word `port / 32 * 2` has bit `port % 32` for any
/// frontend on the port, the next word for an address frontend.
pub fn port_bitmap<'a>(keys: impl Iterator<Item = &'a ServiceKeyOrd>) -> Vec<u32> {
    let mut want = vec![0u32; PORT_WORDS as usize];
    for k in keys {
        let p = u16::from_be(k.1);
        let (word, bit) = (usize::from(p >> 5) * 2, 1u32 << (p & 31));
        want[word] |= bit;
        if k.0 != [0; 16] {
            want[word + 1] |= bit;
        }
    }
    want
}

/// A unit id as the names map keeps it (cut at its length).
fn stored_name(id: &str) -> String {
    ServiceName::new(id).as_str().to_string()
}

fn ranges_of(held: &Held, slot: u32) -> BTreeSet<Range> {
    held.ranges
        .iter()
        .filter(|(s, _)| *s == slot)
        .map(|(_, r)| *r)
        .collect()
}

fn backend_ref(id: u32, be: &Backend) -> BackendRef {
    BackendRef {
        id,
        addr: be.addr,
        port: be.port,
        svc_slot: be.svc_slot,
    }
}

struct Planner<'a> {
    opts: &'a L4Options,
    now: Instant,
    /// The maps as they will be after the writes planned so far.
    next: Held,
    writes: Vec<MapWrite>,
    report: ApplyReport,
    /// Slots no new unit may take in this plan.
    claimed: BTreeSet<u32>,
    /// Slots of the units wanted (their backends do not retire).
    units: BTreeSet<u32>,
}

impl<'a> Planner<'a> {
    fn new(held: &Held, opts: &'a L4Options, now: Instant) -> Self {
        Planner {
            opts,
            now,
            next: held.clone(),
            writes: Vec::new(),
            report: ApplyReport::default(),
            claimed: BTreeSet::new(),
            units: BTreeSet::new(),
        }
    }

    fn push(&mut self, w: MapWrite) {
        self.next.record(&w, self.now);
        self.writes.push(w);
    }

    fn finish(self) -> Plan {
        Plan {
            writes: self.writes,
            now: self.now,
            report: self.report,
        }
    }

    fn config(&mut self) {
        let cfg = self.opts.config();
        if self.next.config != Some(cfg) {
            self.push(MapWrite::Config(cfg));
        }
        let local = self.opts.local_addrs();
        if self.next.local != Some(local) {
            self.push(MapWrite::LocalAddrs(local));
        }
    }

    /// Rewrites the words of the port bitmap where `f(have, want)` differs from what is held.
    fn ports(&mut self, f: impl Fn(u32, u32) -> u32, want: &[u32]) {
        for (i, w) in want.iter().enumerate() {
            let have = self.next.ports.get(i).copied().unwrap_or(0);
            let bits = f(have, *w);
            if bits != have {
                self.push(MapWrite::Ports {
                    word: i as u32,
                    bits,
                });
            }
        }
    }

    /// A slot for a unit that holds none: one a write failure left half made for it (named
    /// after it, no frontend, nothing draining), one recovered from maps without names that
    /// serves one of its frontends, or a free one.
    fn slot_for(&self, name: &ServiceName, unit: &Unit, id: &str) -> Result<u32, SyncError> {
        let held = &self.next;
        let unclaimed = |s: &u32| !self.claimed.contains(s);
        let half_made = held
            .names
            .iter()
            .filter(|(s, n)| *n == name && unclaimed(s))
            .map(|(s, _)| *s)
            .find(|s| {
                held.keys_of(*s).is_empty()
                    && !held
                        .backends
                        .values()
                        .any(|b| b.svc_slot == *s && b.flags & BE_F_REMOVED != 0)
            });
        if let Some(s) = half_made {
            return Ok(s);
        }
        let recovered = held
            .services
            .iter()
            .filter(|(_, v)| unclaimed(&v.slot) && held.name_of(v.slot).is_empty())
            .find(|(k, _)| unit.keys.contains(k))
            .map(|(_, v)| v.slot);
        if let Some(s) = recovered {
            return Ok(s);
        }
        let live = held.live_slots();
        (0..self.opts.sizes.max_services)
            .find(|s| unclaimed(s) && !live.contains(s) && !held.has_backends(*s))
            .ok_or_else(|| SyncError::NoServiceSlot(id.to_string()))
    }

    fn free_backend_id(&self, name: &str) -> Result<u32, SyncError> {
        (0..self.opts.sizes.max_backends)
            .find(|i| !self.next.backends.contains_key(i))
            .ok_or_else(|| SyncError::NoBackendId(name.to_string()))
    }

    fn unit(&mut self, slot: u32, d: &Unit) -> Result<(), SyncError> {
        // Frontends that a failed write left pointing at different halves agree again first
        // (both halves they name are whole: a flip is written only after its half).
        let have_keys = self.next.keys_of(slot);
        let first = have_keys
            .first()
            .and_then(|k| self.next.services.get(k))
            .copied();
        if let Some(v) = first {
            for k in &have_keys {
                if self.next.services.get(k) != Some(&v) {
                    self.push(MapWrite::Service {
                        key: (*k).into(),
                        value: v,
                    });
                }
            }
        }
        let held_value = first.unwrap_or_default();

        // Backends: new and changed ones written.
        let by_key: BTreeMap<([u8; 16], u16), u32> = self
            .next
            .backends
            .iter()
            .filter(|(_, b)| b.svc_slot == slot)
            .map(|(i, b)| ((b.addr, b.port), *i))
            .collect();
        let mut ids: Vec<(SocketAddr, u32, Backend)> = Vec::with_capacity(d.backends.len());
        for (sa, be) in &d.backends {
            let mut be = *be;
            be.svc_slot = slot;
            let known = by_key.get(&(be.addr, be.port)).copied().or_else(|| {
                // Written earlier in this plan (the same endpoint twice).
                ids.iter()
                    .find(|(_, _, b)| (b.addr, b.port) == (be.addr, be.port))
                    .map(|(_, i, _)| *i)
            });
            let id = match known {
                Some(i) => i,
                None => self.free_backend_id(&sa.to_string())?,
            };
            let changed =
                self.next.backends.get(&id) != Some(&be) || self.next.draining.contains_key(&id);
            if changed {
                self.push(MapWrite::Backend { id, value: be });
                self.report.backends_written += 1;
            }
            ids.push((*sa, id, be));
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
        let mut mb: Vec<MaglevBackend<'_>> = names
            .iter()
            .zip(&pool)
            .map(|(n, (_, _, b))| MaglevBackend {
                name: n,
                weight: b.weight.max(1),
            })
            .collect();
        // The refused share is one more Maglev backend, written as the id no backend has.
        if d.reject_weight > 0 && !pool.is_empty() {
            mb.push(MaglevBackend {
                name: "refused",
                weight: d.reject_weight,
            });
        }
        let table: Vec<u32> = maglev::build(&mb, self.opts.sizes.maglev_size)?
            .into_iter()
            .map(|i| pool.get(i as usize).map_or(NO_BACKEND, |p| p.1))
            .collect();

        let mut value = ServiceValue {
            slot,
            generation: held_value.generation & 1,
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
        let halves = self.next.maglev.get(&slot).cloned().unwrap_or_default();
        let table_changed = !table.is_empty() && halves[live].as_deref() != Some(&table[..]);
        if table_changed {
            let next = live ^ 1;
            let old = halves[next].as_deref();
            let dirty: Vec<u32> = (0..table.len())
                .filter(|i| old.and_then(|o| o.get(*i)) != Some(&table[*i]))
                .map(|i| i as u32)
                .collect();
            self.report.maglev_entries_written += dirty.len();
            self.push(MapWrite::MaglevHalf {
                slot,
                half: next as u32,
                table: table.into(),
                dirty,
            });
            value.generation = next as u32;
            self.report.tables_swapped += 1;
        }

        // Source ranges before the flag that enforces them; stale ones after.
        let have_ranges = ranges_of(&self.next, slot);
        let add: Vec<Range> = d.ranges.difference(&have_ranges).copied().collect();
        let del: Vec<Range> = have_ranges.difference(&d.ranges).copied().collect();
        for range in &add {
            self.push(MapWrite::SourceRange {
                slot,
                range: *range,
            });
            self.report.source_ranges_written += 1;
        }
        let keys_changed = have_keys != d.keys;
        if value != held_value || keys_changed {
            for k in &d.keys {
                self.push(MapWrite::Service {
                    key: (*k).into(),
                    value,
                });
            }
            for k in have_keys.difference(&d.keys) {
                self.push(MapWrite::RemoveService { key: (*k).into() });
            }
            self.report.services_written += 1;
        } else if !table_changed && add.is_empty() && del.is_empty() {
            self.report.unchanged += 1;
        }
        for range in del {
            self.push(MapWrite::RemoveSourceRange { slot, range });
        }

        // Endpoints that left start draining, only now that the live Maglev table no longer
        // names them: a UDP flow leaving a removed endpoint must not be given it again.
        let wanted: BTreeSet<([u8; 16], u16)> =
            ids.iter().map(|(_, _, b)| (b.addr, b.port)).collect();
        let left: Vec<(u32, Backend)> = self
            .next
            .backends
            .iter()
            .filter(|(i, b)| {
                b.svc_slot == slot
                    && !wanted.contains(&(b.addr, b.port))
                    && !self.next.draining.contains_key(i)
            })
            .map(|(i, b)| (*i, *b))
            .collect();
        for (i, mut b) in left {
            b.flags |= BE_F_TERMINATING | BE_F_REMOVED;
            self.push(MapWrite::Backend { id: i, value: b });
            self.report.backends_written += 1;
        }
        Ok(())
    }

    /// Backends of slots no unit holds start draining; drains that are over end: their flows
    /// released, then their ids cleared.
    fn expire(&mut self) {
        let live = self.next.live_slots();
        let retiring = |slot: u32| !self.units.contains(&slot) && !live.contains(&slot);
        let mut start = Vec::new();
        let mut ended = Vec::new();
        for (i, b) in &self.next.backends {
            match self.next.draining.get(i) {
                Some(t) if self.now.saturating_duration_since(*t) >= self.opts.drain => {
                    ended.push((*i, *b));
                }
                Some(_) => {}
                None if retiring(b.svc_slot) => start.push((*i, *b)),
                None => {}
            }
        }
        for (i, mut b) in start {
            // First step for a removed service: drain like a removed endpoint.
            b.flags |= BE_F_TERMINATING | BE_F_REMOVED;
            self.push(MapWrite::Backend { id: i, value: b });
            self.report.backends_written += 1;
        }
        if ended.is_empty() {
            return;
        }
        self.push(MapWrite::ReleaseFlows {
            backends: ended.iter().map(|(i, b)| backend_ref(*i, b)).collect(),
            proto: None,
        });
        for (i, _) in ended {
            self.push(MapWrite::Backend {
                id: i,
                value: Backend::default(),
            });
            self.report.backends_removed += 1;
        }
    }

    /// Removed endpoints' UDP flows and affinity entries go (their TCP flows drain).
    fn release_removed(&mut self) {
        let backends: Vec<BackendRef> = self
            .next
            .unreleased
            .iter()
            .filter_map(|i| self.next.backends.get(i).map(|b| backend_ref(*i, b)))
            .collect();
        if !backends.is_empty() {
            self.push(MapWrite::ReleaseFlows {
                backends,
                proto: Some(PROTO_UDP),
            });
        }
    }
}
