//! What the L4 maps hold, as far as the sync writes them: the model the planner plans from.
//! It changes only through [`Held::record`] (a write that succeeded) and [`Held::forget`] (one
//! that failed), so after a failed write it still says what the maps really hold, and the next
//! plan repairs from there. The in-memory fake applies the same writes to its own copy.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Instant,
};

use ingress_common::l4::{
    BE_F_PRESENT, BE_F_REMOVED, Backend, L4Config, LocalAddrs, PORT_WORDS, PROTO_UDP, ServiceKey,
    ServiceName, ServiceValue,
};
use ingress_common::syn_limit::SynLimitConfig;

use super::plan::MapWrite;

/// `ServiceKey` with an order, for sets: (address, port (network order), protocol, family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKeyOrd(pub [u8; 16], pub u16, pub u8, pub u8);

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

/// A source range of a service: (family, address bytes, prefix length in bits).
pub type Range = (u8, [u8; 16], u8);

/// The two Maglev halves of a slot as last written; `None`: unknown (after a restart, or a
/// write of that half failed part way).
pub type Halves = [Option<Arc<[u32]>>; 2];

/// The L4 maps' contents the sync owns, and the little it must remember beyond them.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub services: BTreeMap<ServiceKeyOrd, ServiceValue>,
    /// Unit names by slot (`XDPI_SVC_NAMES`); a slot keeps its name after its unit left.
    pub names: BTreeMap<u32, ServiceName>,
    /// Per-source SYN limits by slot (`XDPI_SYN_LIMITS`), where known.
    pub syn_limits: BTreeMap<u32, SynLimitConfig>,
    /// Present backends by id (an absent id holds `Backend::default()`).
    pub backends: BTreeMap<u32, Backend>,
    pub maglev: BTreeMap<u32, Halves>,
    /// (slot, range).
    pub ranges: BTreeSet<(u32, Range)>,
    /// The port bitmap, [`PORT_WORDS`] words.
    pub ports: Vec<u32>,
    pub config: Option<L4Config>,
    pub local: Option<LocalAddrs>,
    /// Not in the maps: since when each removed backend drains (set when its removed flag is
    /// written, so a restart drains it again from the start).
    pub draining: BTreeMap<u32, Instant>,
    /// Not in the maps: removed backends whose UDP flows and affinity entries are still to be
    /// released (until a release of them succeeds).
    pub unreleased: BTreeSet<u32>,
}

impl Held {
    /// Nothing written yet (fresh maps: every word of the port bitmap zero).
    pub fn empty() -> Self {
        Held {
            ports: vec![0; PORT_WORDS as usize],
            ..Default::default()
        }
    }

    /// Takes note that `w` was written at `now`.
    pub fn record(&mut self, w: &MapWrite, now: Instant) {
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
                if value.flags & BE_F_PRESENT == 0 {
                    self.backends.remove(id);
                    self.draining.remove(id);
                    self.unreleased.remove(id);
                    return;
                }
                if value.flags & BE_F_REMOVED != 0 {
                    if !self.draining.contains_key(id) {
                        self.draining.insert(*id, now);
                        self.unreleased.insert(*id);
                    }
                } else {
                    self.draining.remove(id);
                    self.unreleased.remove(id);
                }
                self.backends.insert(*id, *value);
            }
            MapWrite::MaglevHalf {
                slot, half, table, ..
            } => {
                self.maglev.entry(*slot).or_default()[*half as usize] = Some(Arc::clone(table));
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
            MapWrite::Ports { word, bits } => {
                if let Some(w) = self.ports.get_mut(*word as usize) {
                    *w = *bits;
                }
            }
            MapWrite::ReleaseFlows { backends, proto } => {
                if proto.is_none_or(|p| p == PROTO_UDP) {
                    for b in backends {
                        self.unreleased.remove(&b.id);
                    }
                }
            }
        }
    }

    /// Takes note that `w` failed: single-entry writes change nothing, but a Maglev half may
    /// be written in part.
    pub fn forget(&mut self, w: &MapWrite) {
        if let MapWrite::MaglevHalf { slot, half, .. } = w {
            self.maglev.entry(*slot).or_default()[*half as usize] = None;
        }
    }

    /// The frontends of `slot`.
    pub fn keys_of(&self, slot: u32) -> BTreeSet<ServiceKeyOrd> {
        self.services
            .iter()
            .filter(|(_, v)| v.slot == slot)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Slots that have frontends.
    pub fn live_slots(&self) -> BTreeSet<u32> {
        self.services.values().map(|v| v.slot).collect()
    }

    /// Whether any backend belongs to `slot`.
    pub fn has_backends(&self, slot: u32) -> bool {
        self.backends.values().any(|b| b.svc_slot == slot)
    }

    /// The name of `slot` (empty: none written).
    pub fn name_of(&self, slot: u32) -> &str {
        self.names.get(&slot).map_or("", |n| n.as_str())
    }
}
