//! Passive health: an endpoint that fails `max_fails` times in a row is ejected for a while;
//! when that while is over it gets traffic again as a probe, and one more failure ejects it
//! at once (its failure count is only reset by a success). A background prober in
//! [`super::pool`] also lets an ejected endpoint back early when a TCP connect succeeds.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// When to eject and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failures that eject an endpoint; 0 disables ejection.
    pub max_fails: u32,
    pub eject_for: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            max_fails: 3,
            eject_for: Duration::from_secs(10),
        }
    }
}

/// Milliseconds on a process-wide monotonic clock (never 0, so 0 can mean "not ejected").
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Live counters of one endpoint, kept across snapshots while the endpoint stays (by
/// address: [`super::balance::UpstreamRuntime::new`]). Only the counters (24 bytes; the
/// address is the snapshot's), made when first written ([`LazyStats`]).
#[derive(Debug, Default)]
pub struct EndpointStats {
    pub in_flight: AtomicU32,
    /// Exponentially weighted response latency in microseconds (0: no sample yet).
    pub ewma_us: AtomicU64,
    pub consecutive_failures: AtomicU32,
    pub ejected_until_ms: AtomicU64,
}

impl EndpointStats {
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Whether an ejection was ever recorded and not yet cleared by a success.
    pub fn is_suspect(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) != 0
    }

    pub fn record_success(&self, latency: Duration) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejected_until_ms.store(0, Ordering::Relaxed);
        let sample = latency.as_micros().min(u64::MAX as u128) as u64;
        let old = self.ewma_us.load(Ordering::Relaxed);
        // Weight 1/4 for the new sample: reacts within a few requests, smooths single outliers.
        let new = if old == 0 {
            sample
        } else {
            (old * 3 + sample) / 4
        };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Counts one request in [`in_flight`](Self::in_flight) for as long as the returned guard
    /// lives. A guard rather than a decrement after the `.await`: a request future is dropped
    /// at any await point when its client resets, and a leaked count would steer
    /// least-request balancing away from this endpoint for good.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Counts a failure; returns true when this failure ejected the endpoint.
    pub fn record_failure(&self, policy: &HealthPolicy, now_ms: u64) -> bool {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if policy.max_fails > 0 && n >= policy.max_fails {
            // Saturating: `eject_for` is configuration (`--fail-timeout`).
            let eject_ms = u64::try_from(policy.eject_for.as_millis()).unwrap_or(u64::MAX);
            let until = now_ms.saturating_add(eject_ms);
            self.ejected_until_ms.store(until, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// The prober reached the endpoint: end the ejection, keep the failure count (the next
    /// real failure ejects again until a request succeeds).
    pub fn probe_succeeded(&self) {
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(1, Ordering::Relaxed);
        }
    }
}

/// An endpoint's [`EndpointStats`], made by the first request, failure or probe that writes
/// them: most endpoints of a large cluster at rest never see one, and the allocation (48
/// bytes with its counts) per endpoint of every upstream was 4.6 MiB of the daemon at 100k
/// endpoints (issue 13, deploy/docs/performance.md session 14). Until then every reader sees
/// zeros, which is what new counters hold.
///
/// Kept across snapshots like the counters themselves: [`super::balance::UpstreamRuntime::new`]
/// shares the previous runtime's `Arc` when it has one. Counters first written through a
/// runtime after its successor was built stay with it (a request that started in that window;
/// none of them is lost for the requests that use that runtime).
#[derive(Debug, Default)]
pub struct LazyStats(OnceLock<Arc<EndpointStats>>);

/// What a reader of counters never written sees.
static UNUSED: EndpointStats = EndpointStats {
    in_flight: AtomicU32::new(0),
    ewma_us: AtomicU64::new(0),
    consecutive_failures: AtomicU32::new(0),
    ejected_until_ms: AtomicU64::new(0),
};

impl LazyStats {
    /// Counters already made (shared with `stats`).
    pub fn with(stats: Arc<EndpointStats>) -> LazyStats {
        LazyStats(OnceLock::from(stats))
    }

    /// The counters to read: zeros until something wrote them. Never write through this.
    pub fn read(&self) -> &EndpointStats {
        self.0.get().map_or(&UNUSED, |s| s)
    }

    /// The counters to write, made now if they were not.
    pub fn write(&self) -> &Arc<EndpointStats> {
        self.0.get_or_init(Arc::default)
    }

    /// The counters, if anything wrote them: what the next runtime shares.
    pub fn made(&self) -> Option<&Arc<EndpointStats>> {
        self.0.get()
    }
}

/// One request in flight to an endpoint; see [`EndpointStats::begin_request`].
#[derive(Debug)]
pub struct InFlight(Arc<EndpointStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_and_recovers() {
        let p = HealthPolicy {
            max_fails: 2,
            eject_for: Duration::from_secs(5),
        };
        let s = EndpointStats::default();
        assert!(!s.record_failure(&p, 1000));
        s.record_success(Duration::from_millis(1));
        assert!(!s.record_failure(&p, 1000));
        assert!(s.record_failure(&p, 1000));
        assert!(s.is_ejected(1001));
        assert!(!s.is_ejected(6001));
        // Probe time: one more failure ejects again right away.
        assert!(s.record_failure(&p, 6001));
        assert!(s.is_ejected(6002));
        s.probe_succeeded();
        assert!(!s.is_ejected(6002));
        s.record_success(Duration::from_millis(1));
        assert!(!s.is_suspect());
    }

    #[tokio::test]
    async fn in_flight_survives_a_dropped_request() {
        let s = Arc::new(EndpointStats::default());
        let request = {
            let s = Arc::clone(&s);
            async move {
                let _counted = s.begin_request();
                std::future::pending::<()>().await;
            }
        };
        let task = tokio::spawn(request);
        tokio::task::yield_now().await;
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 1);
        // The client went away: the request future is dropped mid-await.
        task.abort();
        let _ = task.await;
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
    }
}
