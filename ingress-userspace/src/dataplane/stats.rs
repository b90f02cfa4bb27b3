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
pub fn read<T: std::borrow::Borrow<MapData>>(
    map: &PerCpuArray<T, Counter>,
) -> Result<StatsView, aya::maps::MapError> {
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

/// The counters as Prometheus text: `xdp_ingress_xdp_packets_total` and
/// `xdp_ingress_xdp_bytes_total`, labelled by the counter's family (`kind`: protocol, pass,
/// drop, action) and name (`counter`). Appended to the proxy's `/metrics`.
pub fn prometheus_text(view: &StatsView) -> String {
    use ingress_common::stats::StatKind;
    use std::fmt::Write as _;
    let kind = |label: &str| match Stat::ALL
        .iter()
        .find(|s| s.label() == label)
        .map(|s| s.kind())
    {
        Some(StatKind::Protocol) => "protocol",
        Some(StatKind::Pass) => "pass",
        Some(StatKind::Drop) => "drop",
        Some(StatKind::Action) | None => "action",
    };
    let mut out = String::new();
    for (metric, help, value) in [
        (
            "xdp_ingress_xdp_packets",
            "Packets counted by the XDP program.",
            (|c: &Counter| c.packets) as fn(&Counter) -> u64,
        ),
        (
            "xdp_ingress_xdp_bytes",
            "Bytes counted by the XDP program.",
            |c: &Counter| c.bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} counter");
        for (label, c) in &view.counters {
            let _ = writeln!(
                out,
                "{metric}_total{{kind=\"{}\",counter=\"{label}\"}} {}",
                kind(label),
                value(c)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_labelled_prometheus_counters() {
        let view = StatsView {
            counters: vec![
                (
                    "rx".into(),
                    Counter {
                        packets: 3,
                        bytes: 180,
                    },
                ),
                (
                    Stat::PassIpv4Fragment.label().into(),
                    Counter {
                        packets: 1,
                        bytes: 60,
                    },
                ),
            ],
        };
        let text = prometheus_text(&view);
        assert!(
            text.contains("# TYPE xdp_ingress_xdp_packets counter\n"),
            "{text}"
        );
        assert!(
            text.contains("xdp_ingress_xdp_packets_total{kind=\"protocol\",counter=\"rx\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "xdp_ingress_xdp_bytes_total{kind=\"pass\",counter=\"pass_ipv4_fragment\"} 60\n"
            ),
            "{text}"
        );
    }
}
