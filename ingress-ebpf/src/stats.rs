//! Per-CPU counters; see `ingress_common::stats`.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use ingress_common::stats::{Counter, STATS_SLOTS, Stat};

#[map(name = "XDPI_STATS")]
static XDPI_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// Adds one packet of `bytes` to `stat` on this CPU. Per-CPU slots need no atomics.
#[inline(always)]
pub fn count(stat: Stat, bytes: u64) {
    count_index(stat as u32, bytes);
}

/// [`count`] by raw index (as packed in a verdict).
#[inline(always)]
pub fn count_index(index: u32, bytes: u64) {
    if let Some(c) = XDPI_STATS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful map lookup and is CPU-local.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
