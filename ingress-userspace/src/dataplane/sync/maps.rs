//! The L4 maps behind a small trait, and the executor that performs a [`Plan`] over it: each
//! write in order, each success recorded in [`Held`], the first failure ending the pass (the
//! next plan starts from what did get written). [`AyaMaps`] is the kernel's maps; the tests'
//! fake fails whichever write it is told to.

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, MapError, lpm_trie::Key},
};
use ingress_common::l4::*;
use ingress_common::syn_limit::{MAP_SYN_LIMITS, SynLimitConfig};

use super::{
    ApplyReport, SyncError,
    held::{Held, Range},
    map_err,
    plan::{MapWrite, Plan},
};
use crate::dataplane::flows::{self, Released};

/// Reads and writes the maps the L4 sync owns.
pub trait L4Maps {
    /// What the maps hold (after a start, what a previous daemon left pinned), with the
    /// Maglev halves unknown. Service entries of slots past `sizes.max_services` and backends
    /// past `sizes.max_backends` are left out.
    fn read(&mut self, sizes: &MapSizes) -> Result<Held, SyncError>;
    /// Performs one write; a release says what it deleted. Deleting what is not there is no
    /// error.
    fn write(&mut self, w: &MapWrite) -> Result<Released, SyncError>;
}

/// Performs `plan` in order over `maps`, recording each write that succeeded in `held`. The
/// first failure ends the pass with its error: the maps then hold a prefix of the plan, which
/// the planner's order keeps consistent, and `held` says which.
pub fn execute(
    maps: &mut dyn L4Maps,
    held: &mut Held,
    plan: Plan,
) -> Result<ApplyReport, SyncError> {
    let mut report = plan.report;
    for w in &plan.writes {
        match maps.write(w) {
            Ok(r) => {
                held.record(w, plan.now);
                report.flows_released += r.flows as usize;
                report.affinities_released += r.affinities as usize;
            }
            Err(e) => {
                held.forget(w);
                return Err(e);
            }
        }
    }
    Ok(report)
}

/// The kernel's maps, in a loaded object.
pub struct AyaMaps<'a>(pub &'a mut Ebpf);

impl L4Maps for AyaMaps<'_> {
    fn read(&mut self, sizes: &MapSizes) -> Result<Held, SyncError> {
        let ebpf = &mut *self.0;
        let mut held = Held::empty();
        for item in services_map(ebpf)?.iter() {
            let (k, v) = item.map_err(map_err(MAP_SERVICES))?;
            if v.slot < sizes.max_services {
                held.services.insert(k.into(), v);
            }
        }
        let backends = backends_map(ebpf)?;
        for id in 0..backends.len().min(sizes.max_backends) {
            let be = backends.get(&id, 0).map_err(map_err(MAP_BACKENDS))?;
            if be.flags & BE_F_PRESENT != 0 {
                held.backends.insert(id, be);
            }
        }
        // Names of the slots in use: they match recovered units to the snapshot's.
        let names: Array<&mut MapData, ServiceName> = typed(ebpf, MAP_SERVICE_NAMES)?;
        let slots = held
            .live_slots()
            .into_iter()
            .chain(held.backends.values().map(|b| b.svc_slot));
        for slot in slots {
            if let Ok(n) = names.get(&slot, 0) {
                held.names.insert(slot, n);
            }
        }
        let limits: Array<&mut MapData, SynLimitConfig> = typed(ebpf, MAP_SYN_LIMITS)?;
        for slot in held.live_slots() {
            if let Ok(c) = limits.get(&slot, 0) {
                held.syn_limits.insert(slot, c);
            }
        }
        let lpm = ranges_map(ebpf)?;
        for k in lpm.keys().filter_map(Result::ok) {
            let data = k.data();
            let slot = u32::from_be_bytes(data.slot_be);
            let len = k.prefix_len().saturating_sub(SOURCE_RANGE_PREFIX_BITS) as u8;
            held.ranges.insert((slot, (data.family, data.addr, len)));
        }
        let ports: Array<&mut MapData, u32> = typed(ebpf, MAP_PORTS)?;
        held.ports = (0..PORT_WORDS)
            .map(|i| ports.get(&i, 0).map_err(map_err(MAP_PORTS)))
            .collect::<Result<Vec<u32>, _>>()?;
        let config: Array<&mut MapData, L4Config> = typed(ebpf, MAP_CONFIG)?;
        held.config = config.get(&0, 0).ok();
        let local: Array<&mut MapData, LocalAddrs> = typed(ebpf, MAP_LOCAL_ADDRS)?;
        held.local = local.get(&0, 0).ok();
        Ok(held)
    }

    fn write(&mut self, w: &MapWrite) -> Result<Released, SyncError> {
        let ebpf = &mut *self.0;
        match w {
            MapWrite::Config(c) => {
                let mut m: Array<&mut MapData, L4Config> = typed(ebpf, MAP_CONFIG)?;
                m.set(0, *c, 0).map_err(map_err(MAP_CONFIG))?;
            }
            MapWrite::LocalAddrs(l) => {
                let mut m: Array<&mut MapData, LocalAddrs> = typed(ebpf, MAP_LOCAL_ADDRS)?;
                m.set(0, *l, 0).map_err(map_err(MAP_LOCAL_ADDRS))?;
            }
            MapWrite::ServiceName { slot, name } => {
                let mut m: Array<&mut MapData, ServiceName> = typed(ebpf, MAP_SERVICE_NAMES)?;
                m.set(*slot, *name, 0).map_err(map_err(MAP_SERVICE_NAMES))?;
            }
            MapWrite::SynLimit { slot, config } => {
                let mut m: Array<&mut MapData, SynLimitConfig> = typed(ebpf, MAP_SYN_LIMITS)?;
                m.set(*slot, *config, 0).map_err(map_err(MAP_SYN_LIMITS))?;
            }
            MapWrite::Backend { id, value } => {
                backends_map(ebpf)?
                    .set(*id, *value, 0)
                    .map_err(map_err(MAP_BACKENDS))?;
            }
            MapWrite::MaglevHalf {
                slot,
                half,
                table,
                dirty,
            } => {
                let base = (slot * 2 + half) * table.len() as u32;
                let mut m: Array<&mut MapData, u32> = typed(ebpf, MAP_MAGLEV)?;
                for i in dirty {
                    m.set(base + i, table[*i as usize], 0)
                        .map_err(map_err(MAP_MAGLEV))?;
                }
            }
            MapWrite::SourceRange { slot, range } => {
                ranges_map(ebpf)?
                    .insert(&range_key(*slot, range), 1, 0)
                    .map_err(map_err(MAP_SOURCE_RANGES))?;
            }
            MapWrite::RemoveSourceRange { slot, range } => {
                absent_ok(ranges_map(ebpf)?.remove(&range_key(*slot, range)))
                    .map_err(map_err(MAP_SOURCE_RANGES))?;
            }
            MapWrite::Service { key, value } => {
                services_map(ebpf)?
                    .insert(*key, *value, 0)
                    .map_err(map_err(MAP_SERVICES))?;
            }
            MapWrite::RemoveService { key } => {
                absent_ok(services_map(ebpf)?.remove(key)).map_err(map_err(MAP_SERVICES))?;
            }
            MapWrite::Ports { word, bits } => {
                let mut m: Array<&mut MapData, u32> = typed(ebpf, MAP_PORTS)?;
                m.set(*word, *bits, 0).map_err(map_err(MAP_PORTS))?;
            }
            MapWrite::ReleaseFlows { backends, proto } => {
                return flows::release_backends(ebpf, backends, *proto);
            }
        }
        Ok(Released::default())
    }
}

/// A delete of what is not there did what it was for.
fn absent_ok(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound | MapError::ElementNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// The LPM key of `range` of `slot`.
pub fn range_key(slot: u32, range: &Range) -> Key<SourceRangeData> {
    let (family, addr, len) = *range;
    // Bits past the prefix are cleared so equal prefixes make equal keys.
    let bits = u32::from(len);
    let mut a = addr;
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

fn ranges_map(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, SourceRangeData, u32>, SyncError> {
    typed(ebpf, MAP_SOURCE_RANGES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::sync::addr_bytes;

    #[test]
    fn range_keys_mask_host_bits() {
        let (a, f) = addr_bytes("198.18.7.9".parse().unwrap());
        let k = range_key(3, &(f, a, 20));
        assert_eq!(k.prefix_len(), 60);
        assert_eq!(&k.data().addr[..4], &[198, 18, 0, 0]);
        assert_eq!(k.data().slot_be, [0, 0, 0, 3]);
    }
}
