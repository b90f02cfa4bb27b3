//! Choosing an endpoint of one upstream for one request: round robin, power-of-two-choices
//! least-request weighted by EWMA latency, rendezvous (consistent) hashing on a header, cookie
//! or client address, and cookie session affinity on top of any of them.
//!
//! Endpoints are tried in tiers: active and not ejected, then terminating and not ejected,
//! then anything not yet tried (better a suspect endpoint than a certain 503).
//! An affinity cookie names an endpoint by a stable hash of its address, so it keeps pointing
//! at the same pod across snapshots and proxy restarts for as long as that pod lives.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use http::{HeaderMap, HeaderValue, header::COOKIE};

use super::health::{EndpointStats, HealthPolicy, now_ms};
use crate::model::{CookieAffinity, EndpointState, HashOn, LoadBalancing, Upstream};

/// One endpoint as this snapshot sees it, with counters shared across snapshots.
#[derive(Debug)]
pub struct Slot {
    pub stats: Arc<EndpointStats>,
    pub state: EndpointState,
    /// Affinity cookie value naming this endpoint.
    pub cookie: String,
    /// `ip:port` as a URI authority, built once per snapshot rather than per request.
    pub authority: Option<http::uri::Authority>,
}

/// An upstream's runtime state for one snapshot.
#[derive(Debug)]
pub struct UpstreamRuntime {
    pub spec: Arc<Upstream>,
    /// The upstream id for metrics.
    pub label: Arc<String>,
    pub slots: Vec<Slot>,
    pub health: HealthPolicy,
    /// Shared with the previous snapshot's runtime of the same id, so rotation continues.
    rr: Arc<AtomicUsize>,
}

/// What the balancer may look at.
pub struct PickInput<'a> {
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
    /// Slots already tried by this request (retries go elsewhere).
    pub tried: &'a [usize],
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
        let old: HashMap<SocketAddr, &Arc<EndpointStats>> = previous
            .map(|p| p.slots.iter().map(|s| (s.stats.addr, &s.stats)).collect())
            .unwrap_or_default();
        let slots = spec
            .endpoints
            .iter()
            .map(|e| Slot {
                stats: old
                    .get(&e.addr)
                    .map(|s| Arc::clone(s))
                    .unwrap_or_else(|| Arc::new(EndpointStats::new(e.addr))),
                state: e.state,
                cookie: endpoint_cookie(&e.addr),
                authority: e.addr.to_string().parse().ok(),
            })
            .collect();
        UpstreamRuntime {
            rr: previous
                .map(|p| Arc::clone(&p.rr))
                .unwrap_or_else(|| Arc::new(AtomicUsize::new(0))),
            label: Arc::new(spec.id.clone()),
            spec,
            slots,
            health,
        }
    }

    pub fn pick(&self, input: &PickInput<'_>) -> Option<Pick> {
        let now = now_ms();
        if let Some(aff) = &self.spec.affinity {
            if let Some(slot) = self.cookie_slot(aff, input, now) {
                return Some(Pick {
                    slot,
                    set_cookie: None,
                });
            }
            let slot = self.pick_by_policy(input, now)?;
            return Some(Pick {
                slot,
                set_cookie: set_cookie(aff, &self.slots[slot].cookie),
            });
        }
        Some(Pick {
            slot: self.pick_by_policy(input, now)?,
            set_cookie: None,
        })
    }

    fn cookie_slot(&self, aff: &CookieAffinity, input: &PickInput<'_>, now: u64) -> Option<usize> {
        let value = cookie_value(input.headers, &aff.name)?;
        let i = self.slots.iter().position(|s| s.cookie == value)?;
        (!input.tried.contains(&i) && !self.slots[i].stats.is_ejected(now)).then_some(i)
    }

    fn pick_by_policy(&self, input: &PickInput<'_>, now: u64) -> Option<usize> {
        for tier in 0..3 {
            let ok = |i: usize| self.eligible(i, tier, input.tried, now);
            if !(0..self.slots.len()).any(ok) {
                continue;
            }
            return match &self.spec.load_balancing {
                LoadBalancing::RoundRobin => self.round_robin(ok),
                LoadBalancing::LeastRequest => self.p2c(ok),
                LoadBalancing::Hash(on) => match hash_key(on, input) {
                    Some(key) => self.rendezvous(&key, ok),
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
            0 => s.state == EndpointState::Active && !s.stats.is_ejected(now),
            1 => s.state == EndpointState::Terminating && !s.stats.is_ejected(now),
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
            let s = &self.slots[i].stats;
            let inflight = s.in_flight.load(Ordering::Relaxed) as u64 + 1;
            inflight.saturating_mul(s.ewma_us.load(Ordering::Relaxed).max(1))
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }

    /// Highest random weight: a key keeps its endpoint unless that endpoint goes away.
    fn rendezvous(&self, key: &[u8], ok: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.slots.len()).filter(|&i| ok(i)).max_by_key(|&i| {
            let mut h = Fnv::new();
            h.write(key);
            h.write(self.slots[i].cookie.as_bytes());
            h.finish()
        })
    }
}

fn hash_key(on: &HashOn, input: &PickInput<'_>) -> Option<Vec<u8>> {
    match on {
        HashOn::Header(name) => input
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes().to_vec()),
        HashOn::Cookie(name) => cookie_value(input.headers, name).map(|v| v.as_bytes().to_vec()),
        HashOn::ClientAddress => Some(input.client_ip.to_string().into_bytes()),
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

/// A stable name for an endpoint in an affinity cookie: FNV-1a of its address, in hex.
pub fn endpoint_cookie(addr: &SocketAddr) -> String {
    let mut h = Fnv::new();
    h.write(addr.to_string().as_bytes());
    format!("{:016x}", h.finish())
}

fn set_cookie(aff: &CookieAffinity, value: &str) -> Option<HeaderValue> {
    let mut c = format!(
        "{}={}; Path={}",
        aff.name,
        value,
        aff.path.as_deref().unwrap_or("/")
    );
    if let Some(age) = aff.max_age {
        c.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if let Some(ss) = &aff.same_site {
        c.push_str(&format!("; SameSite={ss}"));
    }
    if aff.secure {
        c.push_str("; Secure");
    }
    c.push_str("; HttpOnly");
    HeaderValue::from_str(&c).ok()
}

/// FNV-1a 64: stable across processes and versions (unlike `DefaultHasher`).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        // Final avalanche so close inputs spread over the whole range.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            client_ip: "198.18.0.1".parse().unwrap(),
            tried,
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
        r.slots[0].stats.in_flight.store(10, Ordering::Relaxed);
        r.slots[0].stats.record_success(Duration::from_millis(50));
        r.slots[1].stats.record_success(Duration::from_millis(1));
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
        up.load_balancing = LoadBalancing::Hash(HashOn::Header("x-user".into()));
        let before = rt(Arc::new(up.clone()));
        up.endpoints.remove(2);
        let after = rt(Arc::new(up));
        let mut moved = 0;
        for user in 0..200 {
            let mut h = HeaderMap::new();
            h.insert("x-user", HeaderValue::from_str(&user.to_string()).unwrap());
            let a = before.slots[before.pick(&input(&h, &[])).unwrap().slot]
                .stats
                .addr;
            let a2 = before.slots[before.pick(&input(&h, &[])).unwrap().slot]
                .stats
                .addr;
            assert_eq!(a, a2);
            let b = after.slots[after.pick(&input(&h, &[])).unwrap().slot]
                .stats
                .addr;
            if a != b {
                moved += 1;
                assert_eq!(a, addrs(5)[2], "only keys of the removed endpoint move");
            }
        }
        assert!(moved > 0 && moved < 80, "{moved}");
    }

    #[test]
    fn cookie_affinity_sticks_across_endpoint_changes() {
        let mut up = (*upstream_at("s", &addrs(3))).clone();
        up.affinity = Some(CookieAffinity {
            name: "route".into(),
            max_age: Some(Duration::from_secs(3600)),
            path: Some("/app".into()),
            same_site: Some("Lax".into()),
            secure: true,
        });
        let r = rt(Arc::new(up.clone()));
        let h = HeaderMap::new();
        let first = r.pick(&input(&h, &[])).unwrap();
        let cookie = first.set_cookie.unwrap().to_str().unwrap().to_string();
        assert!(
            cookie.contains("; Path=/app; Max-Age=3600; SameSite=Lax; Secure"),
            "{cookie}"
        );
        let value = cookie.split(';').next().unwrap().to_string();
        let addr = r.slots[first.slot].stats.addr;
        // New snapshot: another endpoint added in front, order changed.
        up.endpoints.insert(
            0,
            upstream_at("s", &["10.9.9.9:80".parse().unwrap()]).endpoints[0].clone(),
        );
        let r2 = UpstreamRuntime::new(Arc::new(up), Some(&r), HealthPolicy::default());
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; {value}")).unwrap(),
        );
        for _ in 0..5 {
            let p = r2.pick(&input(&h, &[])).unwrap();
            assert!(p.set_cookie.is_none());
            assert_eq!(r2.slots[p.slot].stats.addr, addr);
        }
    }
}
