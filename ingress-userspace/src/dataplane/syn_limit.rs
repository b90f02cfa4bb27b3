//! Per-source SYN rate limits in the maps: each service slot's [`SynLimitConfig`] in
//! [`MAP_SYN_LIMITS`], written with the service's entry (before it on a new slot, so a reused
//! slot never runs under its previous service's limit); and the size of the source LRU.

use aya::{
    Ebpf,
    maps::{Array, MapData},
};
use ingress_common::syn_limit::{MAP_SYN_LIMITS, SynLimitConfig};

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
}
