//! Per-client rate limits of a route (ingress-nginx `limit-rps`, `limit-rpm`,
//! `limit-connections`; nginx `limit_req ... burst=N nodelay` and `limit_conn`), counted on
//! this node.
//!
//! Requests: nginx's `limit_req` is a leaky bucket in which, with `nodelay`, a request is
//! admitted while the bucket holds at most `burst` earlier requests not yet leaked at `rate`.
//! That is GCRA: each client has a theoretical arrival time `tat`; a request at `now` is
//! admitted when `tat - now <= burst x interval`, and then `tat = max(tat, now) + interval`.
//! So a quiet client gets `1 + burst` requests at once and then one per interval. With both
//! `limit-rps` and `limit-rpm` a request must pass both, and only an admitted one is counted
//! (as nginx accounts its `limit_req`s only when all pass).
//!
//! Memory: the buckets of a zone live in a [`BoundedMap`] of fixed capacity; the
//! least recently seen clients are forgotten first (they start again with a full burst), so
//! address churn never grows it. Connections are counted only while requests are in progress
//! (an entry leaves the map at zero), so that map is bounded by the requests in progress.
//!
//! Zones (one per Ingress, shared by its paths) are kept across configuration swaps while the
//! Ingress's limits are unchanged.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use arc_swap::ArcSwap;
use http::Response;
use http_body_util::BodyExt;

use super::{allowlist, upstream::ProxyBody};
use crate::model::RateLimit;

/// Clients remembered per zone. ingress-nginx gives each zone 5 MB, and nginx keeps "about
/// 16 thousand 64-byte states" per megabyte (ngx_http_limit_req_module): the same order.
pub const CLIENTS_PER_ZONE: usize = 1 << 16;
const SHARDS: usize = 16;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Over `limit-rps` or `limit-rpm` (status: ConfigMap `limit-req-status-code`).
    Requests,
    /// Over `limit-connections` (status: ConfigMap `limit-conn-status-code`).
    Connections,
}

impl Refused {
    /// The reason logged and sent in the reason header.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Requests => "over limit-rps/limit-rpm for this client",
            Refused::Connections => "over limit-connections for this client",
        }
    }
}

/// The zones of every route with limits, shared by all requests of the proxy. Requests read
/// the map without a lock; it is rebuilt when a configuration is applied.
#[derive(Default)]
pub struct RateLimiter {
    zones: ArcSwap<HashMap<RateLimit, Arc<Zone>>>,
    /// Serialises rebuilds of `zones`.
    update: Mutex<()>,
}

impl RateLimiter {
    /// Counts a request of `client` against `limit`: `Ok` with a guard to hold while the
    /// request is in progress (`limit-connections`), or why it is refused. Clients in the
    /// limit's `exempt` ranges are never counted.
    pub fn admit(&self, limit: &RateLimit, client: IpAddr) -> Result<Option<ConnGuard>, Refused> {
        let client = client.to_canonical();
        if !limit.exempt.is_empty() && allowlist::allows(&limit.exempt, client) {
            return Ok(None);
        }
        self.zone(limit).admit(client)
    }

    fn zone(&self, limit: &RateLimit) -> Arc<Zone> {
        if let Some(z) = self.zones.load().get(limit) {
            return Arc::clone(z);
        }
        // A limit the last apply did not list (a request still on an older configuration).
        let _serial = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.zones.load_full();
        if let Some(z) = current.get(limit) {
            return Arc::clone(z);
        }
        let z = Arc::new(Zone::new(limit, CLIENTS_PER_ZONE));
        let mut next = (*current).clone();
        next.insert(limit.clone(), Arc::clone(&z));
        self.zones.store(Arc::new(next));
        z
    }

    /// Keeps the zones of `live` (the limits of the configuration being applied), creating
    /// the new ones, and forgets the others.
    pub fn retain(&self, live: &[&RateLimit]) {
        let _serial = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.zones.load_full();
        let next: HashMap<RateLimit, Arc<Zone>> = live
            .iter()
            .map(|&l| {
                let z = current
                    .get(l)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Zone::new(l, CLIENTS_PER_ZONE)));
                (l.clone(), z)
            })
            .collect();
        self.zones.store(Arc::new(next));
    }
}

/// One GCRA limit: a request per `interval_ns`, `burst` more at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    pub interval_ns: u64,
    pub tolerance_ns: u64,
}

impl Gcra {
    /// `per` requests per `window_ns` nanoseconds with `burst` extra.
    pub fn new(per: u32, window_ns: u64, burst: u64) -> Gcra {
        let interval_ns = (window_ns / u64::from(per.max(1))).max(1);
        Gcra {
            interval_ns,
            tolerance_ns: burst.saturating_mul(interval_ns),
        }
    }

    /// The new arrival time if a request at `now` (ns) with arrival time `tat` is admitted.
    pub fn check(&self, tat: u64, now: u64) -> Option<u64> {
        let tat = tat.max(now);
        (tat - now <= self.tolerance_ns).then(|| tat.saturating_add(self.interval_ns))
    }
}

/// The counters of one Ingress's limits.
pub struct Zone {
    epoch: Instant,
    /// `limit-rps`, then `limit-rpm`.
    limits: Vec<Gcra>,
    buckets: BoundedMap<[u64; 2]>,
    connections: Option<u32>,
    in_progress: Mutex<HashMap<IpAddr, u32>>,
}

impl Zone {
    pub fn new(limit: &RateLimit, capacity: usize) -> Zone {
        let burst = |n: u32| u64::from(n) * u64::from(limit.burst_multiplier);
        let limits = [
            limit.rps.map(|n| Gcra::new(n, 1_000_000_000, burst(n))),
            limit.rpm.map(|n| Gcra::new(n, 60_000_000_000, burst(n))),
        ];
        Zone {
            epoch: Instant::now(),
            limits: limits.into_iter().flatten().collect(),
            buckets: BoundedMap::new(capacity),
            connections: limit.connections,
            in_progress: Mutex::new(HashMap::new()),
        }
    }

    fn admit(self: Arc<Self>, client: IpAddr) -> Result<Option<ConnGuard>, Refused> {
        if !self.limits.is_empty() {
            let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let admitted = self.buckets.with(client, |tats| {
                let mut next = *tats;
                for (i, g) in self.limits.iter().enumerate() {
                    next[i] = g.check(tats[i], now)?;
                }
                *tats = next;
                Some(())
            });
            if admitted.is_none() {
                return Err(Refused::Requests);
            }
        }
        let Some(max) = self.connections else {
            return Ok(None);
        };
        {
            let mut m = self
                .in_progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = m.entry(client).or_insert(0);
            if *n >= max {
                return Err(Refused::Connections);
            }
            *n += 1;
        }
        Ok(Some(ConnGuard { zone: self, client }))
    }
}

/// One request in progress for `limit-connections`; released on drop.
pub struct ConnGuard {
    zone: Arc<Zone>,
    client: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut m = self
            .zone
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// The response with `guard` held until its body is sent or dropped (nginx counts a
/// connection of `limit_conn` until the request is finished).
pub fn hold_until_sent(resp: Response<ProxyBody>, guard: ConnGuard) -> Response<ProxyBody> {
    let (parts, body) = resp.into_parts();
    let body = body.map_frame(move |f| {
        let _held = &guard;
        f
    });
    Response::from_parts(parts, BodyExt::boxed_unsync(body))
}

/// A map from client address to `V` holding at most `capacity` entries, sharded by a keyed
/// hash. Each shard keeps two generations: lookups move an entry into the young one; when
/// the young one is full it becomes the old one and the old one is dropped. So an entry is
/// forgotten only after half a shard of other clients were seen since its own last request
/// (least recently used first), and each lookup costs O(1).
pub struct BoundedMap<V> {
    shards: Box<[Mutex<Generations<V>>]>,
    hasher: RandomState,
    /// Entries per generation of a shard.
    generation: usize,
}

struct Generations<V> {
    young: HashMap<IpAddr, V>,
    old: HashMap<IpAddr, V>,
}

impl<V: Default> BoundedMap<V> {
    pub fn new(capacity: usize) -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Generations {
                    young: HashMap::new(),
                    old: HashMap::new(),
                })
            })
            .collect();
        BoundedMap {
            shards,
            hasher: RandomState::new(),
            generation: (capacity / SHARDS / 2).max(1),
        }
    }

    /// Runs `f` on the entry of `key` (a default one if it is not remembered).
    pub fn with<R>(&self, key: IpAddr, f: impl FnOnce(&mut V) -> R) -> R {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        let mut s = self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !s.young.contains_key(&key) {
            let v = s.old.remove(&key).unwrap_or_default();
            if s.young.len() >= self.generation {
                s.old = std::mem::take(&mut s.young);
            }
            s.young.insert(key, v);
        }
        let v = s.young.get_mut(&key).expect("inserted above");
        f(v)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                s.young.len() + s.old.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limit(rps: Option<u32>, rpm: Option<u32>, mult: u32, conns: Option<u32>) -> RateLimit {
        RateLimit {
            zone: "ns/web".into(),
            rps,
            rpm,
            burst_multiplier: mult,
            connections: conns,
            exempt: vec![],
        }
    }

    /// How many of `n` requests at the same instant `g` admits from a quiet start.
    fn admitted_at_once(g: Gcra, n: usize) -> usize {
        let mut tat = 0;
        (0..n)
            .filter(|_| match g.check(tat, 10 * SEC) {
                Some(t) => {
                    tat = t;
                    true
                }
                None => false,
            })
            .count()
    }

    #[test]
    fn nodelay_admits_one_plus_burst_at_once_then_one_per_interval() {
        // limit-rps 2, multiplier 1: burst 2, as nginx `limit_req burst=2 nodelay`.
        let g = Gcra::new(2, SEC, 2);
        assert_eq!(admitted_at_once(g, 10), 3);
        // Default multiplier 5: 1 + 10.
        assert_eq!(admitted_at_once(Gcra::new(2, SEC, 10), 50), 11);
        // After the burst, the next is admitted half a second later and not before.
        let mut tat = 0;
        for _ in 0..3 {
            tat = g.check(tat, 0).unwrap();
        }
        assert!(g.check(tat, SEC / 2 - 1).is_none());
        assert!(g.check(tat, SEC / 2).is_some());
        // limit-rpm 60: one a second.
        assert_eq!(Gcra::new(60, 60 * SEC, 0).interval_ns, SEC);
    }

    #[test]
    fn a_request_must_pass_rps_and_rpm_and_refusals_are_not_counted() {
        let z = Arc::new(Zone::new(&limit(Some(100), Some(2), 0, None), 64));
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(Arc::clone(&z).admit(c).is_ok());
        // rpm 2, no burst: the second within 30 s is refused, however many rps allow.
        assert_eq!(Arc::clone(&z).admit(c).err(), Some(Refused::Requests));
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert!(z.admit(other).is_ok(), "clients have their own buckets");
    }

    #[test]
    fn connections_are_counted_while_in_progress() {
        let z = Arc::new(Zone::new(&limit(None, None, 5, Some(1)), 64));
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = Arc::clone(&z).admit(c).unwrap();
        assert_eq!(Arc::clone(&z).admit(c).err(), Some(Refused::Connections));
        drop(first);
        assert!(Arc::clone(&z).admit(c).unwrap().is_some());
        assert!(z.in_progress.lock().unwrap().is_empty());
    }

    #[test]
    fn exempt_clients_are_never_limited() {
        let r = RateLimiter::default();
        let mut l = limit(Some(1), None, 0, None);
        l.exempt = vec![crate::model::IpPrefix {
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            len: 32,
        }];
        for _ in 0..10 {
            assert!(r.admit(&l, IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok());
        }
        assert!(r.admit(&l, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))).is_ok());
        assert!(r.admit(&l, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))).is_err());
    }

    #[test]
    fn the_map_stays_bounded_under_address_churn_and_keeps_recent_clients() {
        let m: BoundedMap<u32> = BoundedMap::new(1024);
        let hot = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        m.with(hot, |v| *v = 7);
        for i in 0..100_000u32 {
            m.with(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), |v| *v += 1);
            if i % 16 == 0 {
                // A client seen often is never forgotten.
                assert_eq!(m.with(hot, |v| *v), 7);
            }
        }
        assert!(m.len() <= 1024, "{}", m.len());
    }

    #[test]
    fn zones_survive_a_swap_with_unchanged_limits() {
        let r = RateLimiter::default();
        let l = limit(Some(1), None, 0, None);
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(r.admit(&l, c).is_ok());
        r.retain(&[&l]);
        assert!(r.admit(&l.clone(), c).is_err(), "same zone after a swap");
        r.retain(&[]);
        assert!(r.admit(&l, c).is_ok(), "a removed zone starts afresh");
    }
}
