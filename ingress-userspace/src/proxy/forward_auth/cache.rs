//! Cached auth answers (`auth-cache-key`, `auth-cache-duration`; ingress-nginx's
//! `proxy_cache auth_cache` with `proxy_cache_valid`), in a bounded map.
//!
//! What nginx's proxy cache would keep: an answer whose status a `proxy_cache_valid` rule names,
//! for that rule's time, unless the answer itself says otherwise (`X-Accel-Expires`, then
//! `Cache-Control: max-age`/`no-cache`/`no-store`/`private`, as nginx reads them first) or carries
//! `Set-Cookie` (never cached by nginx). Keys are held as a keyed SHA-1 of the cache key (which
//! often includes a token or a cookie), never the key itself. At most [`CAPACITY`] answers; when
//! full, expired ones go, then all.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http::header::{CACHE_CONTROL, SET_COOKIE};
use sha1::{Digest as _, Sha1};

use super::Answer;
use crate::model::CacheValid;

/// Answers kept at most.
pub const CAPACITY: usize = 16_384;

/// A cached answer and until when it holds.
type Entry = (Arc<Answer>, Instant);

pub struct AnswerCache {
    map: Mutex<HashMap<[u8; 20], Entry>>,
    capacity: usize,
    /// Keys the hashes, so entries say nothing outside this process.
    secret: [u8; 16],
}

impl AnswerCache {
    pub fn new(capacity: usize) -> Self {
        AnswerCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            secret: rand::random(),
        }
    }

    fn id(&self, key: &str) -> [u8; 20] {
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(key.as_bytes());
        h.finalize().into()
    }

    /// The answer cached under `key`, if still valid.
    pub fn get(&self, key: &str) -> Option<Arc<Answer>> {
        let id = self.id(key);
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&id)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(a, _)| Arc::clone(a))
    }

    /// Keeps `answer` under `key` for `ttl`.
    pub fn put(&self, key: &str, answer: Arc<Answer>, ttl: Duration) {
        let id = self.id(key);
        let Some(until) = Instant::now().checked_add(ttl) else {
            return;
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&id) {
            let now = Instant::now();
            map.retain(|_, (_, until)| now < *until);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(id, (answer, until));
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long `answer` may be cached under `rules` (`None`: not at all).
pub fn ttl(rules: &[CacheValid], answer: &Answer) -> Option<Duration> {
    let h = &answer.headers;
    if h.contains_key(SET_COOKIE) {
        return None;
    }
    if let Some(secs) = h
        .get("x-accel-expires")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    for v in h
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for d in v.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            if matches!(d.as_str(), "no-cache" | "no-store" | "private") {
                return None;
            }
            if let Some(secs) = d
                .strip_prefix("max-age=")
                .and_then(|s| s.parse::<u64>().ok())
            {
                return (secs > 0).then(|| Duration::from_secs(secs));
            }
        }
    }
    let status = answer.status.as_u16();
    rules
        .iter()
        .find(|r| r.statuses.is_empty() || r.statuses.contains(&status))
        .map(|r| r.ttl)
        .filter(|t| !t.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_static(v));
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
        }
    }

    #[test]
    fn ttl_follows_proxy_cache_valid_and_the_answer() {
        // ingress-nginx's default `200 202 401 5m`.
        let rules =
            crate::model::translate::forward_auth::parse_cache_durations("200 202 401 5m").unwrap();
        let five = Some(Duration::from_secs(300));
        assert_eq!(ttl(&rules, &answer(200, &[])), five);
        assert_eq!(ttl(&rules, &answer(401, &[])), five);
        assert_eq!(ttl(&rules, &answer(403, &[])), None);
        assert_eq!(ttl(&rules, &answer(200, &[("set-cookie", "a=b")])), None);
        assert_eq!(
            ttl(&rules, &answer(200, &[("cache-control", "no-store")])),
            None
        );
        assert_eq!(
            ttl(
                &rules,
                &answer(200, &[("cache-control", "public, max-age=7")])
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(ttl(&rules, &answer(200, &[("x-accel-expires", "0")])), None);
    }

    #[test]
    fn bounded_and_expiring() {
        let c = AnswerCache::new(2);
        let a = Arc::new(answer(200, &[]));
        c.put("a", a.clone(), Duration::from_secs(60));
        c.put("b", a.clone(), Duration::ZERO);
        assert!(c.get("a").is_some());
        assert!(c.get("b").is_none());
        c.put("c", a.clone(), Duration::from_secs(60));
        c.put("d", a, Duration::from_secs(60));
        assert!(c.len() <= 2);
    }
}
