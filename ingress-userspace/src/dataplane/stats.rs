//! Reading the per-CPU packet counters (`ingress_common::stats`).

use aya::maps::{MapData, PerCpuArray};
use ingress_common::stats::{Counter, Stat};

/// Counters summed over CPUs, one per [`Stat`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsView {
    pub counters: Vec<(String, Counter)>,
}

impl StatsView {
    pub fn get(&self, stat: Stat) -> Counter {
        self.counters
            .iter()
            .find(|(label, _)| label == stat.label())
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }
}

/// Reads every known counter from the stats map, summing the per-CPU values.
pub fn read(map: &PerCpuArray<&MapData, Counter>) -> Result<StatsView, aya::maps::MapError> {
    let mut counters = Vec::with_capacity(Stat::ALL.len());
    for &stat in Stat::ALL {
        let per_cpu = map.get(&(stat as u32), 0)?;
        let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
        });
        counters.push((stat.label().to_string(), sum));
    }
    Ok(StatsView { counters })
}
