//! Per-source SYN rate limits in the maps: each service slot's [`SynLimitConfig`] in
//! [`MAP_SYN_LIMITS`], written with the service's entry (before it on a new slot, so a reused
//! slot never runs under its previous service's limit); and the size of the source LRU.

use std::collections::BTreeSet;

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray},
};
use ingress_common::{
    l4::{
        L4Counter, MAP_SERVICE_NAMES, MAP_SERVICE_STATS, MAP_SERVICES, ServiceKey, ServiceName,
        ServiceValue,
    },
    syn_limit::{MAP_SYN_LIMITS, SynLimitConfig},
};

use super::sync::{SyncError, map_err};
use crate::model::SynRateLimit;

/// The map form of a snapshot's limit ([`SynLimitConfig::NONE`] without one).
pub fn config(limit: Option<SynRateLimit>) -> SynLimitConfig {
    limit.map_or(SynLimitConfig::NONE, |l| {
        SynLimitConfig::new(l.per_second, l.burst)
    })
}

/// Makes slot `slot`'s limit `cfg`; true when it had to be written.
pub fn write(ebpf: &mut Ebpf, slot: u32, cfg: SynLimitConfig) -> Result<bool, SyncError> {
    let map = ebpf
        .map_mut(MAP_SYN_LIMITS)
        .ok_or(SyncError::MissingMap(MAP_SYN_LIMITS))?;
    let mut limits: Array<&mut MapData, SynLimitConfig> =
        Array::try_from(map).map_err(map_err(MAP_SYN_LIMITS))?;
    if limits.get(&slot, 0).ok() == Some(cfg) {
        return Ok(false);
    }
    limits.set(slot, cfg, 0).map_err(map_err(MAP_SYN_LIMITS))?;
    Ok(true)
}

/// The limit a slot's entry holds, as `(per second, burst)` (rounded back from nanoseconds);
/// `None` without a limit. For `xdp-ingress backends`.
pub fn describe(cfg: &SynLimitConfig) -> Option<(u64, u64)> {
    (cfg.interval_ns > 0).then(|| {
        (
            1_000_000_000 / cfg.interval_ns,
            cfg.burst_ns / cfg.interval_ns,
        )
    })
}

/// SYNs dropped by each limited service unit (`namespace/name:port#v4|v6`), summed over
/// CPUs: every unit with a limit now, and any other whose count is not zero (its limit was
/// lifted). Sorted by name; then each of the proxy's limited listeners
/// (`proxy-listener:PORT`, `dataplane::syn_listeners`).
pub fn dropped(ebpf: &Ebpf) -> Result<Vec<(String, u64)>, SyncError> {
    let open = |name: &'static str| ebpf.map(name).ok_or(SyncError::MissingMap(name));
    let services: BpfHashMap<&MapData, ServiceKey, ServiceValue> =
        BpfHashMap::try_from(open(MAP_SERVICES)?).map_err(map_err(MAP_SERVICES))?;
    let names: Array<&MapData, ServiceName> =
        Array::try_from(open(MAP_SERVICE_NAMES)?).map_err(map_err(MAP_SERVICE_NAMES))?;
    let limits: Array<&MapData, SynLimitConfig> =
        Array::try_from(open(MAP_SYN_LIMITS)?).map_err(map_err(MAP_SYN_LIMITS))?;
    let stats: PerCpuArray<&MapData, L4Counter> =
        PerCpuArray::try_from(open(MAP_SERVICE_STATS)?).map_err(map_err(MAP_SERVICE_STATS))?;
    let slots: BTreeSet<u32> = services
        .iter()
        .filter_map(Result::ok)
        .map(|(_, v)| v.slot)
        .collect();
    let mut out = Vec::new();
    for slot in slots {
        let limited = limits.get(&slot, 0).is_ok_and(|c| c.interval_ns != 0);
        let n: u64 = stats
            .get(&slot, 0)
            .map_err(map_err(MAP_SERVICE_STATS))?
            .iter()
            .map(|c| c.syn_limited)
            .sum();
        if limited || n > 0 {
            let name = names
                .get(&slot, 0)
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            out.push((name, n));
        }
    }
    out.sort();
    out.extend(super::syn_listeners::dropped(ebpf)?);
    Ok(out)
}

/// [`dropped`] as the Prometheus counter `xdp_ingress_l4_syn_limited_total{service}` (the
/// family is declared even with no limited service).
pub fn prometheus_text(dropped: &[(String, u64)]) -> String {
    use std::fmt::Write as _;
    let metric = "xdp_ingress_l4_syn_limited";
    let mut out = format!(
        "# HELP {metric} SYNs dropped at the NIC by the per-source SYN rate limit of a \
         service or proxy listener.\n\
         # TYPE {metric} counter\n"
    );
    for (service, n) in dropped {
        let service = service.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "{metric}_total{{service=\"{service}\"}} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_form_round_trips_for_backends() {
        for (r, b) in [(1, 1), (100, 500), (3, 7), (1_000_000, 1_000_000)] {
            let c = config(Some(SynRateLimit {
                per_second: r,
                burst: b,
            }));
            assert_eq!(describe(&c), Some((u64::from(r), u64::from(b))), "{r}/{b}");
        }
        assert_eq!(describe(&config(None)), None);
    }

    #[test]
    fn the_counter_names_each_limited_service() {
        let text = prometheus_text(&[("default/echo:tcp#v4".into(), 7)]);
        assert_eq!(
            text,
            "# HELP xdp_ingress_l4_syn_limited SYNs dropped at the NIC by the per-source SYN \
             rate limit of a service or proxy listener.\n# TYPE xdp_ingress_l4_syn_limited counter\n\
             xdp_ingress_l4_syn_limited_total{service=\"default/echo:tcp#v4\"} 7\n"
        );
    }
}
