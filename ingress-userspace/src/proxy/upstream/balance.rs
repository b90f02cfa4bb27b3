//! Choosing an endpoint of one upstream for one request: round robin, power-of-two-choices
//! least-request weighted by EWMA latency, rendezvous (consistent) hashing on the request's
//! expansion of `upstream-hash-by` ([`PickInput::hash_key`]), and cookie session affinity in
//! place of any of them.
//!
//! Endpoints are tried in tiers: active and not ejected, then terminating and not ejected,
//! then anything not yet tried (better a suspect endpoint than a certain 503).
//!
//! Cookie affinity follows ingress-nginx's `balancer/sticky*.lua` (cookie format in
//! [`super::sticky`]). `balanced`: the cookie's key is mapped onto the active endpoints by
//! rendezvous hashing, so adding pods moves about (new - old) / new of the sessions to them
//! and removing one moves only its own. `persistent`: the key names an endpoint by a stable
//! hash of its address, across snapshots and proxy restarts, for as long as that pod lives;
//! then the session gets a new pod and cookie. A retry after a failure goes to the cookie's
//! endpoint again unless `session-cookie-change-on-failure`, which re-picks among the
//! endpoints not yet tried (nor ejected) and issues a cookie for the new one.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use http::{HeaderMap, HeaderValue, header::COOKIE};

use super::{
    health::{EndpointStats, HealthPolicy, LazyStats, now_ms},
    sticky::{self, CookieContext},
    verified_tls::VerifiedTls,
};
use crate::{
    model::{AffinityMode, CookieAffinity, EndpointAddr, EndpointState, LoadBalancing, Upstream},
    proxy::metrics::{UpstreamLabels, UpstreamSeries},
};

/// Random keys tried for a new `balanced` session before falling back to the load-balancing
/// policy (ingress-nginx's `MAX_UPSTREAM_CHECKS_COUNT`: with one of two endpoints failed, 20
/// misses in a row are about one in a million).
const NEW_KEY_ATTEMPTS: usize = 20;

/// One endpoint as this snapshot sees it, with counters shared across snapshots. 24 bytes:
/// the endpoint's address is the spec's (`spec.endpoints`, same index,
/// [`UpstreamRuntime::addr`]) and its cookie name is made from it when a request needs it, so
/// the shared [`EndpointStats`] hold only the counters, made when first written (issue 13's
/// memory target: 100k endpoints).
#[derive(Debug)]
pub struct Slot {
    pub stats: LazyStats,
    pub state: EndpointState,
}

/// An upstream's runtime state for one snapshot.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub spec: Arc<Upstream>,
    /// The upstream id for metrics and its series, made by the first request that needs
    /// them ([`Self::series`]): most of 20k upstreams at rest never see one.
    series: OnceLock<Box<UpstreamSeries>>,
    /// One per endpoint of `spec.endpoints`, in its order (index `i` is endpoint `i`).
    pub slots: Box<[Slot]>,
    pub health: HealthPolicy,
    /// Shared with the previous snapshot's runtime of the same id, so rotation continues.
    rr: Arc<AtomicUsize>,
    /// Verified TLS (`spec.tls`), or why it cannot be set up (then no request is sent). Boxed:
    /// only BackendTLSPolicy backends have it, and inline it would weigh on every runtime.
    pub tls: Option<Box<Result<VerifiedTls, Arc<str>>>>,
    /// Of an ExternalName upstream (`spec.external_name`): its resolved addresses, shared
    /// with the previous snapshot's runtime of an equal spec. Requests are forwarded over
    /// the runtime it resolves to ([`super::external_name`]), never over this one's (empty)
    /// slots.
    pub external: Option<Arc<super::external_name::Resolution>>,
}

/// What the balancer may look at.
pub struct PickInput<'a> {
    pub headers: &'a HeaderMap,
    /// With [`LoadBalancing::Hash`]: the request's expansion of it (the caller has the
    /// variables); `None` there falls back to round robin.
    pub hash_key: Option<&'a str>,
    /// Slots already tried by this request (retries go elsewhere, except to the endpoint of
    /// an affinity cookie without `session-cookie-change-on-failure`).
    pub tried: &'a [usize],
    /// The client's scheme is HTTPS (the affinity cookie is then `Secure`).
    pub https: bool,
    /// The path of the Ingress rule the request matched (the affinity cookie's default
    /// `Path`; empty for the default backend, meaning `/`).
    pub location_path: &'a str,
}

#[derive(Debug)]
pub struct Pick {
    pub slot: usize,
    /// `Set-Cookie` to send when affinity is on and the request had no valid cookie.
    pub set_cookie: Option<HeaderValue>,
}

impl UpstreamRuntime {
    /// Builds the runtime for `spec`, keeping counters of endpoints `previous` already had.
    pub fn new(
        spec: Arc<Upstream>,
        previous: Option<&UpstreamRuntime>,
        health: HealthPolicy,
    ) -> Self {
        // Only counters that were ever written carry over; the rest are zeros either way.
        let old: HashMap<EndpointAddr, &Arc<EndpointStats>> = previous
            .map(|p| {
                p.spec
                    .endpoints
                    .iter()
                    .zip(&p.slots)
                    .filter_map(|(e, s)| Some((e.addr, s.stats.made()?)))
                    .collect()
            })
            .unwrap_or_default();
        let slots = spec
            .endpoints
            .iter()
            .map(|e| Slot {
                stats: old
                    .get(&e.addr)
                    .map(|s| LazyStats::with(Arc::clone(s)))
                    .unwrap_or_default(),
                state: e.state,
            })
            .collect();
        // The same policy as before keeps its connectors (a root store is costly to build).
        let tls = spec.tls.as_ref().map(|t| {
            Box::new(match previous.and_then(|p| p.tls.as_deref()) {
                Some(Ok(v)) if v.spec() == &**t => Ok(v.clone()),
                _ => VerifiedTls::new(Arc::clone(t)).map_err(|e| Arc::from(e.to_string())),
            })
        });
        let external = spec.external_name.as_ref().map(|_| {
            previous
                .filter(|p| p.spec == spec)
                .and_then(|p| p.external.clone())
                .unwrap_or_default()
        });
        UpstreamRuntime {
            external,
            tls,
            rr: previous
                .map(|p| Arc::clone(&p.rr))
                .unwrap_or_else(|| Arc::new(AtomicUsize::new(0))),
            series: OnceLock::new(),
            spec,
            slots,
            health,
        }
    }

    /// The upstream id for metrics (`namespace/name:port`), made once per runtime.
    pub fn label(&self) -> &Arc<String> {
        &self.series().labels.upstream
    }

    /// The upstream's metric labels and series, made once per runtime.
    pub fn series(&self) -> &UpstreamSeries {
        self.series.get_or_init(|| {
            Box::new(UpstreamSeries::new(UpstreamLabels {
                upstream: Arc::new(self.spec.id.clone()),
            }))
        })
    }

    /// The address of endpoint `slot` (an index into [`Self::slots`]).
    pub fn addr(&self, slot: usize) -> SocketAddr {
        self.spec.endpoints[slot].addr.socket()
    }

    /// `ip:port` of endpoint `slot` as a URI authority: for a request whose client named no
    /// host (rare, so built per attempt rather than kept per endpoint).
    pub fn authority(&self, slot: usize) -> Option<http::uri::Authority> {
        self.addr(slot).to_string().parse().ok()
    }

    /// Affinity cookie value naming endpoint `slot` ([`endpoint_cookie`]).
    fn cookie(&self, slot: usize) -> [u8; 16] {
        endpoint_cookie(&self.addr(slot))
    }

    pub fn pick(&self, input: &PickInput<'_>) -> Option<Pick> {
        let now = now_ms();
        match &self.spec.affinity {
            Some(aff) => self.sticky(aff, input, now),
            None => Some(Pick {
                slot: self.pick_by_policy(input, now)?,
                set_cookie: None,
            }),
        }
    }

    /// Whether a retry may pick an endpoint this request already tried (cookie affinity
    /// without `session-cookie-change-on-failure`).
    pub fn retries_may_repeat(&self) -> bool {
        self.spec
            .affinity
            .as_ref()
            .is_some_and(|a| !a.change_on_failure)
    }

    /// ingress-nginx `sticky.lua` `balance`: the cookie's endpoint unless it is gone (or, with
    /// `change-on-failure`, failed); else a new session with its own cookie.
    fn sticky(&self, aff: &CookieAffinity, input: &PickInput<'_>, now: u64) -> Option<Pick> {
        let failed =
            |i: usize| input.tried.contains(&i) || self.slots[i].stats.read().is_ejected(now);
        let from_cookie = sticky::request_cookie(aff, input.headers)
            .and_then(|c| self.cookie_endpoint(aff.mode, c.key));
        if let Some(i) = from_cookie
            && !(aff.change_on_failure && failed(i))
        {
            return Some(Pick {
                slot: i,
                set_cookie: None,
            });
        }
        // The new endpoint and the key of the cookie that will keep the session there.
        let (slot, key) = match aff.mode {
            AffinityMode::Balanced => (0..NEW_KEY_ATTEMPTS)
                .map(|_| sticky::random_key())
                .find_map(|key| {
                    let i = self.cookie_endpoint(AffinityMode::Balanced, &key)?;
                    (!failed(i)).then_some((i, Some(key)))
                })
                .or_else(|| {
                    // Every key landed on a failed endpoint: serve this request by the policy
                    // and issue no cookie, as no key would keep it there.
                    self.pick_by_policy(input, now).map(|i| (i, None))
                })?,
            AffinityMode::Persistent => {
                let i = self.pick_by_policy(input, now)?;
                (i, Some(cookie_str(&self.cookie(i)).to_string()))
            }
        };
        let cx = CookieContext {
            https: input.https,
            location_path: input.location_path,
            headers: input.headers,
        };
        let set_cookie = key.and_then(|key| {
            let tag = sticky::backend_tag(&self.spec.id);
            sticky::set_cookie(aff, &key, &tag, &cx, SystemTime::now())
        });
        Some(Pick { slot, set_cookie })
    }

    /// The endpoint a cookie key names. `balanced`: rendezvous over the active endpoints (all
    /// of them when none is active), as ingress-nginx's consistent hash over its ready ones;
    /// `persistent`: the endpoint whose name the key is, while it exists.
    fn cookie_endpoint(&self, mode: AffinityMode, key: &str) -> Option<usize> {
        match mode {
            AffinityMode::Balanced => {
                let active = |i: usize| self.slots[i].state == EndpointState::Active;
                if (0..self.slots.len()).any(active) {
                    self.rendezvous(key.as_bytes(), active)
                } else {
                    self.rendezvous(key.as_bytes(), |_| true)
                }
            }
            AffinityMode::Persistent => {
                (0..self.slots.len()).position(|i| self.cookie(i) == key.as_bytes())
            }
        }
    }

    fn pick_by_policy(&self, input: &PickInput<'_>, now: u64) -> Option<usize> {
        // A subset member that is not ejected nor tried (ready, or terminating when the
        // subsets are made of terminating ones); else the key is hashed over the whole
        // upstream as `Hash` does, rather than retrying a failed subset.
        if let (LoadBalancing::HashSubset { size, .. }, Some(key)) =
            (&self.spec.load_balancing, input.hash_key)
        {
            let picked = (0..2).find_map(|tier| {
                let ok = |i: usize| self.eligible(i, tier, input.tried, now);
                self.subset_pick(key.as_bytes(), size.get() as usize, ok)
            });
            if picked.is_some() {
                return picked;
            }
        }
        for tier in 0..3 {
            let ok = |i: usize| self.eligible(i, tier, input.tried, now);
            if !(0..self.slots.len()).any(ok) {
                continue;
            }
            return match &self.spec.load_balancing {
                LoadBalancing::RoundRobin => self.round_robin(ok),
                LoadBalancing::LeastRequest => self.p2c(ok),
                LoadBalancing::Hash(_) | LoadBalancing::HashSubset { .. } => match input.hash_key {
                    Some(key) => self.rendezvous(key.as_bytes(), ok),
                    None => self.round_robin(ok),
                },
            };
        }
        None
    }

    fn eligible(&self, i: usize, tier: u8, tried: &[usize], now: u64) -> bool {
        if tried.contains(&i) {
            return false;
        }
        let s = &self.slots[i];
        match tier {
            0 => s.state == EndpointState::Active && !s.stats.read().is_ejected(now),
            1 => s.state == EndpointState::Terminating && !s.stats.read().is_ejected(now),
            _ => true,
        }
    }

    fn round_robin(&self, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.slots.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
    }

    /// Two random eligible endpoints; the one with fewer (in-flight × latency) wins.
    fn p2c(&self, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.slots.len();
        let first = |start: usize| (0..n).map(|k| (start + k) % n).find(|&i| ok(i));
        let a = first(rand::random_range(0..n))?;
        let b = first(rand::random_range(0..n)).unwrap_or(a);
        let cost = |i: usize| {
            let s = self.slots[i].stats.read();
            let inflight = s.in_flight.load(Ordering::Relaxed) as u64 + 1;
            inflight.saturating_mul(s.ewma_us.load(Ordering::Relaxed).max(1))
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }

    /// ingress-nginx `chashsubset.lua`: the subset `key` hashes to, and a random member of it
    /// that is `ok` (the next one in the subset when that one is not). The subsets are made
    /// of the ready endpoints (all of them when none is: a subset's members do not change
    /// with health), in the snapshot's order (by address), `size` at a time, the last one
    /// filled up from the first endpoints: subset `s` member `j` is endpoint
    /// `(s * size + j) mod n`. The subset is chosen by highest random weight over the
    /// subsets' numbers, so a key keeps its subset number while their count stays, and a
    /// new subset takes about 1/count of the keys. `None` when no member is `ok`.
    fn subset_pick(&self, key: &[u8], size: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let members = SubsetMembers::of(&self.slots);
        let subsets = members.len().div_ceil(size);
        let set = (0..subsets).max_by_key(|&s| {
            let mut h = Fnv::new();
            h.write(key);
            h.write(&(s as u64).to_le_bytes());
            h.finish()
        })?;
        let first = rand::random_range(0..size);
        (0..size)
            .map(|k| {
                members.nth(
                    &self.slots,
                    (set * size + (first + k) % size) % members.len(),
                )
            })
            .find(|&i| ok(i))
    }

    /// Highest random weight: a key keeps its endpoint unless that endpoint goes away.
    fn rendezvous(&self, key: &[u8], ok: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.slots.len()).filter(|&i| ok(i)).max_by_key(|&i| {
            let mut h = Fnv::new();
            h.write(key);
            h.write(&self.cookie(i));
            h.finish()
        })
    }
}

/// The endpoints subsets are made of ([`UpstreamRuntime::subset_pick`]): the active ones, or
/// every one when none (or all) are active. Counted per request rather than kept, so runtimes
/// of other policies carry nothing for it.
enum SubsetMembers {
    All(usize),
    Active(usize),
}

impl SubsetMembers {
    fn of(slots: &[Slot]) -> SubsetMembers {
        let active = slots
            .iter()
            .filter(|s| s.state == EndpointState::Active)
            .count();
        if active == 0 || active == slots.len() {
            SubsetMembers::All(slots.len())
        } else {
            SubsetMembers::Active(active)
        }
    }

    fn len(&self) -> usize {
        match *self {
            SubsetMembers::All(n) | SubsetMembers::Active(n) => n,
        }
    }

    /// The slot of member `m` (`m < len()`).
    fn nth(&self, slots: &[Slot], m: usize) -> usize {
        match self {
            SubsetMembers::All(_) => m,
            SubsetMembers::Active(_) => slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == EndpointState::Active)
                .nth(m)
                .map_or(m, |(i, _)| i),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// A stable name for an endpoint in an affinity cookie: FNV-1a of its address as `ip:port`
/// text, 16 lower-case hex digits (ASCII, inline). Made per request rather than kept per
/// endpoint (100k endpoints at rest), so the text is hashed as it is formatted, without an
/// allocation.
pub fn endpoint_cookie(addr: &SocketAddr) -> [u8; 16] {
    let mut h = Fnv::new();
    // Formatting into the hasher cannot fail.
    let _ = write!(h, "{addr}");
    let mut out = [0u8; 16];
    let x = h.finish();
    for (i, d) in out.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((x >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// An [`endpoint_cookie`] as text (hex digits only: always UTF-8).
fn cookie_str(c: &[u8; 16]) -> &str {
    std::str::from_utf8(c).unwrap_or_default()
}

/// FNV-1a 64: stable across processes and versions (unlike `DefaultHasher`).
pub(super) struct Fnv(u64);

impl Fnv {
    pub(super) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(super) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    pub(super) fn finish(&self) -> u64 {
        // Final avalanche so close inputs spread over the whole range.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

/// Hashes formatted text as it is written ([`endpoint_cookie`]).
impl std::fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, time::Duration};

    use super::*;
    use crate::{model::Upstream, proxy::fixtures::upstream_at};

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 80)))
            .collect()
    }

    fn rt(up: Arc<Upstream>) -> UpstreamRuntime {
        UpstreamRuntime::new(up, None, HealthPolicy::default())
    }

    fn input<'a>(h: &'a HeaderMap, tried: &'a [usize]) -> PickInput<'a> {
        PickInput {
            headers: h,
            hash_key: None,
            tried,
            https: false,
            location_path: "/",
        }
    }

    #[test]
    fn round_robin_cycles_and_skips_ejected_and_tried() {
        let r = rt(upstream_at("s", &addrs(3)));
        let h = HeaderMap::new();
        let picks: Vec<usize> = (0..6)
            .map(|_| r.pick(&input(&h, &[])).unwrap().slot)
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        r.slots[1]
            .stats
            .write()
            .ejected_until_ms
            .store(now_ms() + 60_000, Ordering::Relaxed);
        let picks: Vec<usize> = (0..4)
            .map(|_| r.pick(&input(&h, &[])).unwrap().slot)
            .collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(r.pick(&input(&h, &[0, 2])).unwrap().slot, 1, "last resort");
        assert!(r.pick(&input(&h, &[0, 1, 2])).is_none());
    }

    #[test]
    fn least_request_prefers_idle_fast_endpoint() {
        let mut up = (*upstream_at("s", &addrs(2))).clone();
        up.load_balancing = LoadBalancing::LeastRequest;
        let r = rt(Arc::new(up));
        r.slots[0]
            .stats
            .write()
            .in_flight
            .store(10, Ordering::Relaxed);
        r.slots[0]
            .stats
            .write()
            .record_success(Duration::from_millis(50));
        r.slots[1]
            .stats
            .write()
            .record_success(Duration::from_millis(1));
        let h = HeaderMap::new();
        let ones = (0..100)
            .filter(|_| r.pick(&input(&h, &[])).unwrap().slot == 1)
            .count();
        // Slot 0 only wins when both random choices land on it (about a quarter of the time).
        assert!(ones > 50, "{ones}");
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_little() {
        let mut up = (*upstream_at("s", &addrs(5))).clone();
        let by = crate::model::nginx_var::NginxString::parse("$http_x_user").unwrap();
        up.load_balancing = LoadBalancing::Hash(by);
        let before = rt(Arc::new(up.clone()));
        up.endpoints.remove(2);
        let after = rt(Arc::new(up));
        let mut moved = 0;
        let h = HeaderMap::new();
        for user in 0..200 {
            let key = user.to_string();
            let keyed = PickInput {
                hash_key: Some(&key),
                ..input(&h, &[])
            };
            let a = before.addr(before.pick(&keyed).unwrap().slot);
            let a2 = before.addr(before.pick(&keyed).unwrap().slot);
            assert_eq!(a, a2);
            let b = after.addr(after.pick(&keyed).unwrap().slot);
            if a != b {
                moved += 1;
                assert_eq!(a, addrs(5)[2], "only keys of the removed endpoint move");
            }
        }
        assert!(moved > 0 && moved < 80, "{moved}");
    }

    fn subset_runtime(endpoints: &[SocketAddr], size: u32) -> UpstreamRuntime {
        let mut up = (*upstream_at("s", endpoints)).clone();
        up.load_balancing = LoadBalancing::HashSubset {
            by: crate::model::nginx_var::NginxString::parse("$http_x_user").unwrap(),
            size: std::num::NonZeroU32::new(size).unwrap(),
        };
        rt(Arc::new(up))
    }

    /// The endpoints `key`'s requests reach on `r` over 200 picks (avoiding `tried`).
    fn reached(r: &UpstreamRuntime, key: &str, tried: &[usize]) -> BTreeSet<SocketAddr> {
        let h = HeaderMap::new();
        let keyed = PickInput {
            hash_key: Some(key),
            ..input(&h, tried)
        };
        (0..200)
            .map(|_| r.addr(r.pick(&keyed).unwrap().slot))
            .collect()
    }

    /// chashsubset.lua: one key's requests spread over exactly the endpoints of one subset
    /// (consecutive in order, the last subset filled up from the first endpoints), and keys
    /// spread over every subset.
    #[test]
    fn hash_subset_keeps_a_key_on_one_subset_and_spreads_within_it() {
        let all = addrs(7);
        let r = subset_runtime(&all, 3);
        let subsets: Vec<BTreeSet<SocketAddr>> = [[0, 1, 2], [3, 4, 5], [6, 0, 1]]
            .iter()
            .map(|s| s.iter().map(|&i| all[i]).collect())
            .collect();
        let mut seen = BTreeSet::new();
        for user in 0..60 {
            let got = reached(&r, &user.to_string(), &[]);
            let set = subsets.iter().position(|s| *s == got);
            assert!(set.is_some(), "user {user}: {got:?} is not one subset");
            seen.insert(set);
        }
        assert_eq!(seen.len(), 3, "keys spread over every subset");
        // Fewer endpoints than the size: one subset, every endpoint in it.
        let r = subset_runtime(&all[..2], 3);
        assert_eq!(reached(&r, "u", &[]), all[..2].iter().copied().collect());
    }

    /// A new endpoint moves only the keys a new subset takes (consistent hashing over the
    /// subsets' numbers); other keys keep their pods, or all but one when the endpoint is
    /// inserted before their subset in the order.
    #[test]
    fn hash_subset_is_stable_when_an_endpoint_is_added() {
        let six = addrs(6);
        let before = subset_runtime(&six, 3);
        // Appended: subsets 0 and 1 keep their pods, subset 2 is new.
        let appended = subset_runtime(&addrs(7), 3);
        let mut inserted_order = six.clone();
        inserted_order.insert(3, SocketAddr::from(([10, 0, 0, 3], 81)));
        let inserted = subset_runtime(&inserted_order, 3);
        let mut moved = 0;
        for user in 0..120 {
            let key = user.to_string();
            let old = reached(&before, &key, &[]);
            let new = reached(&appended, &key, &[]);
            if new.contains(&addrs(7)[6]) {
                moved += 1;
            } else {
                assert_eq!(old, new, "user {user}");
            }
            let new = reached(&inserted, &key, &[]);
            let third: BTreeSet<SocketAddr> = [5, 0, 1].iter().map(|&i| six[i]).collect();
            if new != third {
                assert!(old.intersection(&new).count() >= 2, "{old:?} {new:?}");
            }
        }
        assert!(moved > 10 && moved < 70, "about a third move: {moved}");
    }

    /// Subsets are made of the ready endpoints (as ingress-nginx's backend lists them); a
    /// terminating one is in none, unless none is ready: then they make the subsets.
    #[test]
    fn hash_subset_is_made_of_ready_endpoints() {
        let all = addrs(5);
        let terminating = |ready: &[usize]| {
            let mut up = (*subset_runtime(&all, 2).spec).clone();
            for (i, e) in up.endpoints.iter_mut().enumerate() {
                if !ready.contains(&i) {
                    e.state = EndpointState::Terminating;
                }
            }
            rt(Arc::new(up))
        };
        let r = terminating(&[0, 2, 3, 4]);
        let subsets: Vec<BTreeSet<SocketAddr>> = [[0, 2], [3, 4]]
            .iter()
            .map(|s| s.iter().map(|&i| all[i]).collect())
            .collect();
        for user in 0..20 {
            let got = reached(&r, &user.to_string(), &[]);
            assert!(subsets.contains(&got), "{got:?}");
        }
        let r = terminating(&[]);
        let got = reached(&r, "u", &[]);
        assert_eq!(
            got.len(),
            2,
            "one subset of two terminating endpoints: {got:?}"
        );
    }

    /// A failed or ejected member is skipped for the rest of its subset; with every member
    /// failed the key is hashed over the other endpoints rather than answered 503.
    #[test]
    fn hash_subset_skips_failed_members_then_leaves_the_subset() {
        let all = addrs(6);
        let r = subset_runtime(&all, 3);
        let got = reached(&r, "u", &[]);
        let slots: Vec<usize> = got
            .iter()
            .map(|a| all.iter().position(|b| b == a).unwrap())
            .collect();
        r.slots[slots[0]]
            .stats
            .write()
            .ejected_until_ms
            .store(now_ms() + 60_000, Ordering::Relaxed);
        let rest: BTreeSet<SocketAddr> = slots[1..].iter().map(|&i| all[i]).collect();
        assert_eq!(reached(&r, "u", &[]), rest);
        let other = reached(&r, "u", &slots[1..]);
        assert_eq!(other.len(), 1, "hashed: one endpoint");
        assert!(other.is_disjoint(&got), "{other:?}");
    }

    fn affinity(mode: AffinityMode) -> CookieAffinity {
        CookieAffinity {
            name: "route".into(),
            mode,
            max_age: Some(Duration::from_secs(3600)),
            expires: None,
            path: Some("/app".into()),
            domain: None,
            same_site: Some("Lax".into()),
            conditional_same_site_none: false,
            secure: true,
            change_on_failure: false,
        }
    }

    fn sticky_upstream(n: u16, aff: CookieAffinity) -> Upstream {
        let mut up = (*upstream_at("s", &addrs(n))).clone();
        up.affinity = Some(Box::new(aff));
        up
    }

    /// A request carrying `cookie` (`name=value`), if any.
    fn with_cookie(cookie: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = cookie {
            h.insert(COOKIE, HeaderValue::from_str(&format!("a=b; {c}")).unwrap());
        }
        h
    }

    /// `n` new sessions on `r`: each one's cookie (`name=value`) and endpoint.
    fn sessions(r: &UpstreamRuntime, n: usize) -> Vec<(String, SocketAddr)> {
        (0..n)
            .map(|_| {
                let p = r.pick(&input(&HeaderMap::new(), &[])).unwrap();
                let set = p.set_cookie.expect("a new session gets a cookie");
                let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
                (pair, r.addr(p.slot))
            })
            .collect()
    }

    /// `n` sessions on `r` whose cookies carry the fixed keys `session-0`, `session-1`, ...
    /// (a balanced cookie's value is the key the pod is hashed from), each with its endpoint.
    fn fixed_sessions(r: &UpstreamRuntime, n: usize) -> Vec<(String, SocketAddr)> {
        let (first, _) = &sessions(r, 1)[0];
        let name = first.split('=').next().unwrap();
        let keys: Vec<(String, SocketAddr)> = (0..n)
            .map(|i| (format!("{name}=session-{i}"), addrs(1)[0]))
            .collect();
        keys.iter()
            .zip(revisit(r, &keys))
            .map(|((c, _), (addr, _))| (c.clone(), addr))
            .collect()
    }

    /// Where each session's next request goes on `r`, and whether it got a new cookie.
    fn revisit(r: &UpstreamRuntime, s: &[(String, SocketAddr)]) -> Vec<(SocketAddr, bool)> {
        s.iter()
            .map(|(c, _)| {
                let p = r.pick(&input(&with_cookie(Some(c)), &[])).unwrap();
                (r.addr(p.slot), p.set_cookie.is_some())
            })
            .collect()
    }

    #[test]
    fn cookie_attributes_and_persistent_stickiness_across_endpoint_changes() {
        let mut up = sticky_upstream(3, affinity(AffinityMode::Persistent));
        let r = rt(Arc::new(up.clone()));
        let first = r.pick(&input(&HeaderMap::new(), &[])).unwrap();
        let cookie = first.set_cookie.unwrap().to_str().unwrap().to_string();
        assert!(
            cookie.ends_with("; Max-Age=3600; Path=/app; Secure; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        let value = cookie.split(';').next().unwrap().to_string();
        let addr = r.addr(first.slot);
        // New snapshot: another endpoint added in front, order changed.
        up.endpoints.insert(
            0,
            upstream_at("s", &["10.9.9.9:80".parse().unwrap()]).endpoints[0].clone(),
        );
        let r2 = UpstreamRuntime::new(Arc::new(up), Some(&r), HealthPolicy::default());
        for _ in 0..5 {
            let p = r2.pick(&input(&with_cookie(Some(&value)), &[])).unwrap();
            assert!(p.set_cookie.is_none());
            assert_eq!(r2.addr(p.slot), addr);
        }
    }

    /// Sessions created with 2 pods, a 3rd added: `balanced` moves about a third of them, all
    /// to the new pod, without new cookies (sticky_balanced.lua: "roughly (n-c)/n users");
    /// `persistent` moves none.
    #[test]
    fn scale_up_rebalances_balanced_sessions_only() {
        for (mode, moved_range) in [
            (AffinityMode::Balanced, 70..=130),
            (AffinityMode::Persistent, 0..=0),
        ] {
            let two = rt(Arc::new(sticky_upstream(2, affinity(mode))));
            let s = match mode {
                // Fixed keys: a balanced cookie is only a hash key, and random ones made the
                // moved count vary from run to run.
                AffinityMode::Balanced => fixed_sessions(&two, 300),
                AffinityMode::Persistent => sessions(&two, 300),
            };
            let three = UpstreamRuntime::new(
                Arc::new(sticky_upstream(3, affinity(mode))),
                Some(&two),
                HealthPolicy::default(),
            );
            let after = revisit(&three, &s);
            let moved: Vec<_> = s
                .iter()
                .zip(&after)
                .filter(|((_, before), (now, _))| before != now)
                .collect();
            assert!(
                moved_range.contains(&moved.len()),
                "{mode:?}: {} of 300 moved",
                moved.len()
            );
            assert!(
                moved.iter().all(|(_, (now, _))| *now == addrs(3)[2]),
                "{mode:?}"
            );
            assert!(after.iter().all(|(_, new_cookie)| !new_cookie), "{mode:?}");
        }
    }

    /// A pod removed: only its sessions move. `balanced` keeps their cookie (the key now hashes
    /// elsewhere); `persistent` gives them a new pod and a cookie naming it.
    #[test]
    fn scale_down_moves_only_the_removed_pods_sessions() {
        for mode in [AffinityMode::Balanced, AffinityMode::Persistent] {
            let three = rt(Arc::new(sticky_upstream(3, affinity(mode))));
            let s = sessions(&three, 120);
            let mut up = sticky_upstream(3, affinity(mode));
            up.endpoints.remove(1);
            let two = UpstreamRuntime::new(Arc::new(up), Some(&three), HealthPolicy::default());
            for ((_, before), (now, new_cookie)) in s.iter().zip(revisit(&two, &s)) {
                let gone = *before == addrs(3)[1];
                assert_eq!(gone, *before != now, "{mode:?}");
                assert_eq!(
                    new_cookie,
                    gone && mode == AffinityMode::Persistent,
                    "{mode:?}"
                );
            }
        }
    }

    /// ingress-nginx `session-cookie-change-on-failure`: `false` sends the retry to the
    /// cookie's pod again; `true` picks another pod and re-issues the cookie for it.
    #[test]
    fn change_on_failure_decides_where_a_retry_goes() {
        for mode in [AffinityMode::Balanced, AffinityMode::Persistent] {
            for change in [false, true] {
                let mut aff = affinity(mode);
                aff.change_on_failure = change;
                let r = rt(Arc::new(sticky_upstream(3, aff)));
                let (cookie, addr) = sessions(&r, 1).remove(0);
                let h = with_cookie(Some(&cookie));
                let first = r.pick(&input(&h, &[])).unwrap();
                assert_eq!(r.addr(first.slot), addr);
                assert_eq!(r.retries_may_repeat(), !change);
                let retry = r.pick(&input(&h, &[first.slot])).unwrap();
                if change {
                    assert_ne!(retry.slot, first.slot, "{mode:?}");
                    let set = retry.set_cookie.expect("a cookie for the new pod");
                    let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
                    let next = r.pick(&input(&with_cookie(Some(&pair)), &[])).unwrap();
                    assert_eq!(next.slot, retry.slot, "{mode:?}: the new cookie names it");
                } else {
                    assert_eq!(retry.slot, first.slot, "{mode:?}");
                    assert!(retry.set_cookie.is_none(), "{mode:?}");
                }
            }
        }
    }

    /// A persistent cookie names its endpoint by FNV-1a 64 of `ip:port` (then [`Fnv::finish`]'s
    /// avalanche) in 16 lower-case hex digits, so cookies issued by an earlier version or
    /// another replica keep working (expected value computed outside our code, in Python,
    /// from FNV-1a's published offset basis and prime and those two mixing steps).
    #[test]
    fn endpoint_cookie_is_fnv1a_of_the_address_in_hex() {
        let addr: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(&endpoint_cookie(&addr), b"8805a2f9f45b722a");
        let r = rt(upstream_at("s", &[addr]));
        assert_eq!(cookie_str(&r.cookie(0)), "8805a2f9f45b722a");
        assert_eq!(r.authority(0).unwrap().as_str(), "10.0.0.1:8080");
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        // The same text as `to_string` would give, hashed.
        let mut h = Fnv::new();
        h.write(v6.to_string().as_bytes());
        assert_eq!(
            cookie_str(&endpoint_cookie(&v6)),
            format!("{:016x}", h.finish())
        );
    }
}
