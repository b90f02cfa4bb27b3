//! The cluster-wide counters of the rate limits: Redis (`--rate-limit-redis`) holds every
//! client's GCRA state, so a limit holds across every node of the DaemonSet instead of per
//! node.
//!
//! Cost per request: one `EVALSHA` of [`SCRIPT`] per decision (every limit the request must
//! pass, in one atomic call), on one multiplexed connection: concurrent decisions of all
//! requests are pipelined on it, none waits for another's reply. A client Redis refused is
//! then refused locally, without asking, for the wait Redis named (exact: a TAT never moves
//! back, so nothing another node does can shorten it; counted from the reply's arrival, so
//! at most one round trip longer), so a flood over the limit costs Redis nothing.
//!
//! Accuracy: while Redis answers, an admitted request is always decided by Redis, on Redis's
//! clock, atomically with every other node's: the cluster admits what one node would (no
//! per-node pre-allowance, no batching window to overshoot). What is traded is latency: each
//! admitted request waits for one round trip to Redis. A decision whose answer comes after the
//! timeout may still be counted by Redis although the request was decided locally (one request
//! less for that client later). While Redis is down, see [`super`]: each node admits up to
//! limit / N from buckets that start full.
//!
//! Failure: a decision that fails or takes longer than `--rate-limit-redis-timeout` marks the
//! store down (metric `xdp_ingress_rate_limit_store_up` 0, a warning); the request and every
//! later one are decided locally with the limit divided by the ready ingress nodes
//! (fail open, see [`super::RateLimiter`]) while one background task reconnects with
//! exponential backoff (never per request). When a connection and a `SCRIPT LOAD` succeed
//! the store is up again and Redis decides again.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::gauge::Gauge;
use redis::{AsyncConnectionConfig, Client, Script, aio::MultiplexedConnection};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::Gcra;

/// The GCRA decision run in Redis; the same arithmetic as [`Gcra::check`] in microseconds.
pub const SCRIPT: &str = include_str!("gcra.lua");

/// Prefix of every key this store writes.
pub const KEY_PREFIX: &str = "xdp-ingress:rl:";

/// Backoff between reconnection attempts: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid --rate-limit-redis URL: {0}")]
    Url(#[source] redis::RedisError),
    #[error("rate-limit store is down")]
    Down,
    #[error("rate-limit store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("rate-limit store: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rate-limit store answered {0:?}, not a decision")]
    Answer(Vec<i64>),
}

/// One limit of a decision: where its state lives and its GCRA.
pub struct Part<'a> {
    /// The zone (`namespace/name` of an Ingress, or [`super::GLOBAL_ZONE`]).
    pub zone: &'a str,
    /// `rps` or `rpm`.
    pub kind: &'static str,
    pub gcra: Gcra,
}

/// What Redis decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    /// Part `index` refuses for `wait` from now.
    Refused {
        index: usize,
        wait: Duration,
    },
}

/// The connection to Redis and whether it is usable.
pub struct RedisStore {
    client: Client,
    /// The connection and its generation (which connection a failure was on).
    conn: ArcSwapOption<(u64, MultiplexedConnection)>,
    up: AtomicBool,
    /// Wakes the reconnect task when a decision failed.
    broken: Notify,
    timeout: Duration,
    script: Script,
    up_gauge: Gauge,
}

impl RedisStore {
    /// A store for `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS),
    /// down until its reconnect task (spawned here, on the current runtime) connects.
    /// `rediss://` verifies the server against `ca_pem` (PEM certificates) when given, else
    /// against the system's roots.
    pub fn start(
        url: &str,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
        up_gauge: Gauge,
    ) -> Result<Arc<Self>, StoreError> {
        let client = match ca_pem {
            Some(pem) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
            None => Client::open(url),
        }
        .map_err(StoreError::Url)?;
        let store = Arc::new(RedisStore {
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            broken: Notify::new(),
            timeout,
            script: Script::new(SCRIPT),
            up_gauge,
        });
        store.up_gauge.set(0);
        tokio::spawn(reconnect_loop(Arc::downgrade(&store)));
        Ok(store)
    }

    /// Whether decisions go to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// One decision for `client` over `parts`, within the timeout. Any error marks the store
    /// down (the caller falls back).
    pub async fn decide(&self, client: IpAddr, parts: &[Part<'_>]) -> Result<Decision, StoreError> {
        let Some(current) = self.conn.load_full() else {
            return Err(StoreError::Down);
        };
        let (generation, mut conn) = (current.0, current.1.clone());
        let mut call = self.script.prepare_invoke();
        for p in parts {
            call.key(key(p.zone, p.kind, client))
                .arg(micros(p.gcra.interval_ns))
                .arg(micros(p.gcra.tolerance_ns));
        }
        let answer = tokio::time::timeout(self.timeout, call.invoke_async::<Vec<i64>>(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))
            .and_then(|r| r.map_err(StoreError::from))
            .and_then(|a| match a[..] {
                [1, _, _] => Ok(Decision::Admitted),
                [0, wait, i] if i >= 1 && (i as usize) <= parts.len() => Ok(Decision::Refused {
                    index: i as usize - 1,
                    wait: Duration::from_micros(wait.max(0) as u64),
                }),
                _ => Err(StoreError::Answer(a)),
            });
        if let Err(e) = &answer {
            self.mark_down(generation, e);
        }
        answer
    }

    fn mark_down(&self, generation: u64, why: &StoreError) {
        // Only the first failure on the current connection counts: a late failure of a
        // decision sent on an older one says nothing about the new one.
        let current = self.conn.load();
        if current.as_ref().map(|c| c.0) != Some(generation) {
            return;
        }
        drop(current);
        if self.up.swap(false, Ordering::Relaxed) {
            self.conn.store(None);
            self.up_gauge.set(0);
            warn!(
                error = %why,
                "rate-limit store (Redis) unreachable: limits are counted on this node, divided \
                 by the ready ingress nodes, until it is back"
            );
            self.broken.notify_one();
        }
    }
}

/// The key of `client`'s state under one limit of `zone`. The client is the hash tag, so all
/// keys of one decision are in one slot of a Redis Cluster.
pub fn key(zone: &str, kind: &str, client: IpAddr) -> String {
    format!("{KEY_PREFIX}{{{client}}}:{zone}:{kind}")
}

/// Nanoseconds to whole microseconds, at least 1 (Redis's clock resolution; Lua numbers are
/// doubles, exact to 2^53 us).
fn micros(ns: u64) -> u64 {
    (ns / 1000).max(1)
}

/// Connects (and reconnects after a failure) with backoff, until the store is dropped.
async fn reconnect_loop(store: std::sync::Weak<RedisStore>) {
    let mut backoff = BACKOFF.0;
    let mut failures = 0u64;
    let mut generation = 0u64;
    loop {
        let Some(s) = store.upgrade() else { return };
        if s.is_up() {
            // Bounded, so a dropped store ends this task.
            let _ = tokio::time::timeout(Duration::from_secs(1), s.broken.notified()).await;
            continue;
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(s.timeout.max(Duration::from_millis(500))));
        let attempt = async {
            let mut c = s
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            // Loads the script (a restarted Redis has none) and proves the connection works.
            s.script.prepare_invoke().load_async(&mut c).await?;
            Ok::<_, redis::RedisError>(c)
        };
        match attempt.await {
            Ok(c) => {
                generation += 1;
                s.conn.store(Some(Arc::new((generation, c))));
                s.up.store(true, Ordering::Relaxed);
                s.up_gauge.set(1);
                info!(
                    after_failures = failures,
                    "rate-limit store (Redis) connected: limits hold across the cluster"
                );
                backoff = BACKOFF.0;
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                // The first failure and then one in 16 (about every 80 s at the longest backoff).
                if failures == 1 || failures.is_multiple_of(16) {
                    warn!(error = %e, failures, retry_in = ?backoff, "rate-limit store (Redis) connect failed");
                }
                drop(s);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_an_error_and_a_good_one_starts_down() {
        let e = RedisStore::start(
            "http://nope",
            None,
            Duration::from_millis(50),
            Gauge::default(),
        );
        assert!(matches!(e, Err(StoreError::Url(_))));
        // Nothing listens on port 1: the store stays down and decisions fail at once.
        let up = Gauge::default();
        let s = RedisStore::start(
            "redis://127.0.0.1:1",
            None,
            Duration::from_millis(50),
            up.clone(),
        )
        .unwrap();
        assert!(!s.is_up());
        assert_eq!(up.get(), 0);
        let part = Part {
            zone: "ns/web",
            kind: "rps",
            gcra: Gcra::new(1, 1_000_000_000, 0),
        };
        let client = IpAddr::from([192, 0, 2, 1]);
        assert!(matches!(
            s.decide(client, &[part]).await,
            Err(StoreError::Down)
        ));
    }

    #[test]
    fn keys_are_tagged_by_client_for_one_cluster_slot() {
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(
            key("ns/web", "rps", ip),
            "xdp-ingress:rl:{192.0.2.1}:ns/web:rps"
        );
        assert_eq!(micros(999), 1);
        assert_eq!(micros(250_000_000), 250_000);
    }
}
