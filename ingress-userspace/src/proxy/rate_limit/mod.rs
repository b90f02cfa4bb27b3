//! Per-client rate limits (ingress-nginx `limit-rps`, `limit-rpm`, `limit-connections`;
//! nginx `limit_req ... burst=N nodelay` and `limit_conn`), and the global per-client limit
//! over every request whatever its Ingress (our `global-limit-*` ConfigMap keys and flags).
//!
//! Requests: nginx's `limit_req` is a leaky bucket in which, with `nodelay`, a request is
//! admitted while the bucket holds at most `burst` earlier requests not yet leaked at `rate`.
//! That is GCRA: each client has a theoretical arrival time `tat`; a request at `now` is
//! admitted when `tat - now <= burst x interval`, and then `tat = max(tat, now) + interval`.
//! So a quiet client gets `1 + burst` requests at once and then one per interval. A request
//! must pass every limit that applies to it (the global one, then its Ingress's `limit-rps`
//! and `limit-rpm`), and only an admitted one is counted (nginx accounts its `limit_req`s
//! only when all pass).
//!
//! Where the counters live: with `--rate-limit-redis`, in Redis for the whole cluster
//! ([`store`]); else on this node (as ingress-nginx counts per replica). While Redis is
//! unreachable, the counters fall back to this node with each limit divided by the number
//! of ready ingress nodes N (`--rate-limit-cluster-nodes`, else the ready endpoints of
//! `--ingress-service`, else 1): rate/N and burst/N (rounded down), so the cluster as a
//! whole stays near the limit (fail open: requests are still served). `limit-connections`
//! is always counted per node.
//!
//! Memory: the buckets of a zone live in a [`BoundedMap`] of fixed capacity; the
//! least recently seen clients are forgotten first (they start again with a full burst), so
//! address churn never grows it. Connections are counted only while requests are in progress
//! (an entry leaves the map at zero), so that map is bounded by the requests in progress.
//!
//! Zones (one per Ingress, shared by its paths, and one for the global limit) are kept across
//! configuration swaps while their limits are unchanged.

pub mod store;

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    net::IpAddr,
    sync::{
        Arc, LazyLock, Mutex, PoisonError,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use http::Response;
use http_body_util::BodyExt;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tracing::warn;

use super::{allowlist, upstream::ProxyBody};
use crate::model::RateLimit;
use store::{Decision, Part, RedisStore};

/// Clients remembered per zone. ingress-nginx gives each zone 5 MB, and nginx keeps "about
/// 16 thousand 64-byte states" per megabyte (ngx_http_limit_req_module): the same order.
pub const CLIENTS_PER_ZONE: usize = 1 << 16;
const SHARDS: usize = 16;

/// The zone name of the global per-client limit (no Ingress is named so).
pub const GLOBAL_ZONE: &str = "*global";

/// The time base of every bucket on this node.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    u64::try_from(EPOCH.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Over the route's `limit-rps` or `limit-rpm` (status: ConfigMap `limit-req-status-code`).
    Requests,
    /// Over the global per-client limit (status: `limit-req-status-code`).
    Global,
    /// Over `limit-connections` (status: ConfigMap `limit-conn-status-code`).
    Connections,
}

impl Refused {
    /// The reason logged and sent in the reason header.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Requests => "over limit-rps/limit-rpm for this client",
            Refused::Global => "over the global per-client rate limit",
            Refused::Connections => "over limit-connections for this client",
        }
    }

    /// The `reason` label of `xdp_ingress_rate_limited_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Requests => "limit_req",
            Refused::Global => "global_limit",
            Refused::Connections => "limit_conn",
        }
    }
}

/// The zones of every limit, shared by all requests of the proxy. Requests read the map
/// without a lock; it is rebuilt when a configuration is applied.
pub struct RateLimiter {
    zones: ArcSwap<HashMap<RateLimit, Arc<Zone>>>,
    /// Serialises rebuilds of `zones`.
    update: Mutex<()>,
    /// The cluster-wide counters, when configured.
    store: Option<Arc<RedisStore>>,
    /// Ready ingress nodes: what the limits are divided by while the store is down.
    nodes: AtomicU32,
    /// `nodes`, exported.
    nodes_gauge: Gauge,
    /// Decisions taken on this node because the store was down or failed.
    fallback_decisions: Counter,
    /// Seconds after [`EPOCH`] of the last warning about fallback decisions.
    last_warning: AtomicU64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(None, Counter::default(), Gauge::default())
    }
}

/// Seconds between two warnings that decisions are being taken per node.
const WARN_EVERY_S: u64 = 10;

impl RateLimiter {
    /// Limits counted in `store` when given (else on this node); `fallback_decisions` counts
    /// decisions taken per node while the store is down; `nodes_gauge` shows the divisor.
    pub fn new(
        store: Option<Arc<RedisStore>>,
        fallback_decisions: Counter,
        nodes_gauge: Gauge,
    ) -> Self {
        nodes_gauge.set(1);
        RateLimiter {
            zones: ArcSwap::default(),
            update: Mutex::new(()),
            store,
            nodes: AtomicU32::new(1),
            nodes_gauge,
            fallback_decisions,
            last_warning: AtomicU64::new(0),
        }
    }

    /// Sets the number of ready ingress nodes (at least 1).
    pub fn set_nodes(&self, n: u32) {
        self.nodes.store(n.max(1), Ordering::Relaxed);
        self.nodes_gauge.set(i64::from(n.max(1)));
    }

    /// The number of ready ingress nodes in use.
    pub fn nodes(&self) -> u32 {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Counts a request of `client` against the global limit and its route's `limit`: `Ok`
    /// with a guard to hold while the request is in progress (`limit-connections`), or why
    /// it is refused. Clients in a limit's `exempt` ranges are not counted by that limit.
    pub async fn admit(
        &self,
        global: Option<&RateLimit>,
        limit: Option<&RateLimit>,
        client: IpAddr,
    ) -> Result<Option<ConnGuard>, Refused> {
        let client = client.to_canonical();
        let applies = |l: &&RateLimit| l.exempt.is_empty() || !allowlist::allows(&l.exempt, client);
        let route = limit.filter(applies).map(|l| self.zone(l));
        let parts: Vec<(Arc<Zone>, Refused)> = global
            .filter(applies)
            .map(|l| (self.zone(l), Refused::Global))
            .into_iter()
            .chain(route.clone().map(|z| (z, Refused::Requests)))
            .filter(|(z, _)| !z.limits.is_empty())
            .collect();
        if !parts.is_empty() {
            self.admit_request(&parts, client).await?;
        }
        match route {
            Some(z) => z.take_connection(client),
            None => Ok(None),
        }
    }

    async fn admit_request(
        &self,
        parts: &[(Arc<Zone>, Refused)],
        client: IpAddr,
    ) -> Result<(), Refused> {
        let Some(store) = &self.store else {
            return admit_locally(parts, client, 1);
        };
        if store.is_up() {
            let now = now_ns();
            // A refusal Redis gave holds until its wait is over: no need to ask.
            if let Some((_, why)) = parts
                .iter()
                .find(|(z, _)| z.refused.peek(client).is_some_and(|until| until > now))
            {
                return Err(*why);
            }
            let asked: Vec<(usize, Part<'_>)> = parts
                .iter()
                .enumerate()
                .flat_map(|(i, (z, _))| {
                    z.limits.iter().map(move |(kind, gcra)| {
                        (
                            i,
                            Part {
                                zone: &z.name,
                                kind,
                                gcra: *gcra,
                            },
                        )
                    })
                })
                .collect();
            let (owner, asked): (Vec<usize>, Vec<Part<'_>>) = asked.into_iter().unzip();
            match store.decide(client, &asked).await {
                Ok(Decision::Admitted) => return Ok(()),
                Ok(Decision::Refused { index, wait }) => {
                    let (z, why) = &parts[owner[index]];
                    let until = now_ns().saturating_add(wait.as_nanos() as u64);
                    z.refused.with(client, |u| *u = until);
                    return Err(*why);
                }
                // Marked down by the store; decided here below.
                Err(_) => {}
            }
        }
        self.fallback_decisions.inc();
        let nodes = self.nodes();
        let now_s = EPOCH.elapsed().as_secs() + WARN_EVERY_S;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now_s >= last + WARN_EVERY_S
            && self
                .last_warning
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                nodes,
                fallback_decisions = self.fallback_decisions.get(),
                "rate limits decided on this node (limit / ready ingress nodes): the Redis store is down"
            );
        }
        admit_locally(parts, client, nodes)
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

/// Ready ingress nodes by the snapshot: the distinct nodes (by `nodeName`, else address) of
/// the ready endpoints of the ingress's own Service (`--ingress-service`, one pod per node of
/// the DaemonSet); 1 when it is unknown or has none.
pub fn ready_ingress_nodes(snapshot: &crate::model::Snapshot) -> u32 {
    let nodes: std::collections::BTreeSet<String> = snapshot
        .l4
        .iter()
        .filter(|s| s.local_proxy)
        .flat_map(|s| &s.endpoints)
        .filter(|e| e.state == crate::model::EndpointState::Active)
        .map(|e| match &e.node_name {
            Some(n) => n.to_string(),
            None => e.addr.ip().to_string(),
        })
        .collect();
    u32::try_from(nodes.len()).unwrap_or(u32::MAX).max(1)
}

/// Admits a request on this node's buckets when every part admits it, with each limit
/// divided by `nodes`; counts it in every part only then. Locks the parts' entries in order
/// (the global zone first), so two requests never wait on each other in a cycle.
fn admit_locally(
    parts: &[(Arc<Zone>, Refused)],
    client: IpAddr,
    nodes: u32,
) -> Result<(), Refused> {
    fn from(
        parts: &[(Arc<Zone>, Refused)],
        client: IpAddr,
        now: u64,
        nodes: u32,
    ) -> Result<(), Refused> {
        let Some(((z, why), rest)) = parts.split_first() else {
            return Ok(());
        };
        z.buckets.with(client, |tats| {
            let mut next = *tats;
            for (i, (_, g)) in z.limits.iter().enumerate() {
                next[i] = g.divided(nodes).check(tats[i], now).ok_or(*why)?;
            }
            from(rest, client, now, nodes)?;
            *tats = next;
            Ok(())
        })
    }
    from(parts, client, now_ns(), nodes)
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

    /// This limit's share on one of `nodes` nodes: the rate and the burst divided by `nodes`
    /// (the burst rounded down), so `nodes` nodes together admit no more than this limit.
    pub fn divided(self, nodes: u32) -> Gcra {
        if nodes <= 1 {
            return self;
        }
        let n = u64::from(nodes);
        let burst = self.tolerance_ns / self.interval_ns;
        let interval_ns = self.interval_ns.saturating_mul(n);
        Gcra {
            interval_ns,
            tolerance_ns: (burst / n).saturating_mul(interval_ns),
        }
    }
}

/// The counters of one zone's limits.
pub struct Zone {
    /// The zone's name, in the store's keys.
    name: String,
    /// `limit-rps`, then `limit-rpm`, with their names.
    limits: Vec<(&'static str, Gcra)>,
    buckets: BoundedMap<[u64; 2]>,
    /// When the store last refused a client: until when (ns after [`EPOCH`]).
    refused: BoundedMap<u64>,
    connections: Option<u32>,
    in_progress: Mutex<HashMap<IpAddr, u32>>,
}

impl Zone {
    pub fn new(limit: &RateLimit, capacity: usize) -> Zone {
        let burst = |n: u32| u64::from(n) * u64::from(limit.burst_multiplier);
        let limits = [
            limit
                .rps
                .map(|n| ("rps", Gcra::new(n, 1_000_000_000, burst(n)))),
            limit
                .rpm
                .map(|n| ("rpm", Gcra::new(n, 60_000_000_000, burst(n)))),
        ];
        Zone {
            name: limit.zone.clone(),
            limits: limits.into_iter().flatten().collect(),
            buckets: BoundedMap::new(capacity),
            refused: BoundedMap::new(capacity),
            connections: limit.connections,
            in_progress: Mutex::new(HashMap::new()),
        }
    }

    fn take_connection(self: Arc<Self>, client: IpAddr) -> Result<Option<ConnGuard>, Refused> {
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

    /// A copy of the entry of `key`, if remembered; remembers nothing new.
    pub fn peek(&self, key: IpAddr) -> Option<V>
    where
        V: Copy,
    {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        let s = self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.young.get(&key).or_else(|| s.old.get(&key)).copied()
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

    use futures::executor::block_on;

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
    fn a_limit_divided_by_nodes_admits_its_share_on_each() {
        // limit-rps 10, multiplier 1 on 2 nodes: 5/s and a burst of 5 each, so 1 + 5 at once
        // and then one per 200 ms on each node; 2 x 6 = 12 of the cluster's 1 + 10 + ... .
        let g = Gcra::new(10, SEC, 10).divided(2);
        assert_eq!(g.interval_ns, SEC / 5);
        assert_eq!(admitted_at_once(g, 50), 6);
        // An odd burst rounds down: burst 3 on 2 nodes is 1 each.
        assert_eq!(admitted_at_once(Gcra::new(3, SEC, 3).divided(2), 50), 2);
        assert_eq!(Gcra::new(3, SEC, 3).divided(1), Gcra::new(3, SEC, 3));
    }

    #[test]
    fn the_global_limit_counts_every_ingress_and_only_admitted_requests() {
        let r = RateLimiter::default();
        let mut global = limit(Some(1), None, 2, None);
        global.zone = GLOBAL_ZONE.into();
        let a = limit(Some(100), None, 5, None);
        let mut b = limit(Some(100), None, 5, None);
        b.zone = "ns/other".into();
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // 1 + 2 at once over both Ingresses together.
        assert!(block_on(r.admit(Some(&global), Some(&a), c)).is_ok());
        assert!(block_on(r.admit(Some(&global), Some(&b), c)).is_ok());
        assert!(block_on(r.admit(Some(&global), None, c)).is_ok());
        assert_eq!(
            block_on(r.admit(Some(&global), Some(&a), c)).err(),
            Some(Refused::Global)
        );
        // A request the route refuses is not counted by the global limit either.
        let r = RateLimiter::default();
        let strict = limit(Some(1), None, 0, None);
        assert!(block_on(r.admit(Some(&global), Some(&strict), c)).is_ok());
        for _ in 0..5 {
            assert_eq!(
                block_on(r.admit(Some(&global), Some(&strict), c)).err(),
                Some(Refused::Requests)
            );
        }
        assert!(block_on(r.admit(Some(&global), Some(&b), c)).is_ok());
        assert!(block_on(r.admit(Some(&global), Some(&b), c)).is_ok());
        assert!(block_on(r.admit(Some(&global), Some(&b), c)).is_err());
    }

    /// N for the fallback: the nodes of the ready endpoints of the ingress's own Service (one
    /// pod per node, two ports of one pod counted once; terminating ones not), else 1.
    #[test]
    fn ready_ingress_nodes_are_the_ready_endpoints_of_the_own_service() {
        use crate::model::{
            Endpoint, EndpointState, Frontend, L4Protocol, L4Service, ObjectKind, ObjectRef,
            Snapshot,
        };
        let ep = |addr: &str, node: Option<&str>, state| Endpoint {
            addr: addr.parse().unwrap(),
            state,
            weight: 1,
            node_name: node.map(Into::into),
            zone: None,
            target: None,
        };
        let svc = |port: &str, local_proxy, endpoints| L4Service {
            id: format!("ingress/xdp-ingress:{port}"),
            service: ObjectRef::new(ObjectKind::Service, "ingress", "xdp-ingress"),
            protocol: L4Protocol::Tcp,
            frontends: vec![Frontend::NodePort(30080)],
            endpoints,
            client_ip_affinity: None,
            source_ranges: vec![],
            local_proxy,
            external_traffic_local: false,
            health_check: None,
            syn_rate_limit: None,
            reject_weight: 0,
        };
        let mut s = Snapshot::default();
        assert_eq!(ready_ingress_nodes(&s), 1);
        let active = EndpointState::Active;
        s.l4 = vec![
            svc(
                "http",
                true,
                vec![
                    ep("10.0.0.1:80", Some("a"), active),
                    ep("10.0.0.2:80", Some("b"), active),
                    ep("10.0.0.3:80", Some("c"), EndpointState::Terminating),
                    ep("10.0.0.4:80", None, active),
                ],
            ),
            svc("https", true, vec![ep("10.0.0.1:443", Some("a"), active)]),
            svc("other", false, vec![ep("10.0.0.9:80", Some("z"), active)]),
        ];
        assert_eq!(ready_ingress_nodes(&s), 3);
    }

    #[test]
    fn a_request_must_pass_rps_and_rpm_and_refusals_are_not_counted() {
        let r = RateLimiter::default();
        let l = limit(Some(100), Some(2), 0, None);
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(block_on(r.admit(None, Some(&l), c)).is_ok());
        // rpm 2, no burst: the second within 30 s is refused, however many rps allow.
        assert_eq!(
            block_on(r.admit(None, Some(&l), c)).err(),
            Some(Refused::Requests)
        );
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert!(
            block_on(r.admit(None, Some(&l), other)).is_ok(),
            "clients have their own buckets"
        );
    }

    #[test]
    fn connections_are_counted_while_in_progress() {
        let z = Arc::new(Zone::new(&limit(None, None, 5, Some(1)), 64));
        let c = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = Arc::clone(&z).take_connection(c).unwrap();
        assert_eq!(
            Arc::clone(&z).take_connection(c).err(),
            Some(Refused::Connections)
        );
        drop(first);
        assert!(Arc::clone(&z).take_connection(c).unwrap().is_some());
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
            assert!(block_on(r.admit(None, Some(&l), IpAddr::V4(Ipv4Addr::LOCALHOST))).is_ok());
        }
        assert!(block_on(r.admit(None, Some(&l), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))).is_ok());
        assert!(block_on(r.admit(None, Some(&l), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))).is_err());
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
        assert!(block_on(r.admit(None, Some(&l), c)).is_ok());
        r.retain(&[&l]);
        assert!(
            block_on(r.admit(None, Some(&l.clone()), c)).is_err(),
            "same zone after a swap"
        );
        r.retain(&[]);
        assert!(
            block_on(r.admit(None, Some(&l), c)).is_ok(),
            "a removed zone starts afresh"
        );
    }
}
