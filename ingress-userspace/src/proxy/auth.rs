//! The route's authentication step ([`RouteAuth`]), after the allowlist and before the route's
//! action, as nginx's access phase runs `auth_basic` after `allow`/`deny` (how the checks
//! combine, `satisfy`, is the access phase's in [`super::forward`]). One entry point,
//! [`Authenticator::admit`]: `Ok` lets the request on (its `Authorization` header removed, as
//! ingress-nginx's `proxy_set_header Authorization ""`), `Err` is the answer. Later kinds of
//! authentication (forward auth) join as further [`RouteAuth`] variants here.
//!
//! Basic authentication (RFC 7617, nginx `auth_basic`): no or malformed credentials, an unknown
//! user or a wrong password get 401 with `WWW-Authenticate: Basic realm="..."`. Hash checks
//! are CPU-bound (bcrypt: milliseconds to a second by cost), so they run on tokio's blocking
//! pool, at most [`Authenticator::running`] at once; at most [`MAX_ADMITTED`] may be running or
//! waiting, and a request beyond that gets 503 at once: a flood of wrong passwords costs a
//! bounded amount of CPU and never stalls the async workers that serve everyone else. A
//! successful check is remembered for [`CACHE_TTL`], keyed by a keyed SHA-1 of the Secret,
//! user, stored hash and password (never the password itself), so a browser's repeated
//! requests do not pay bcrypt each time; a changed Secret (another stored hash) or a removed
//! user misses the cache at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header::AUTHORIZATION};
use sha1::{Digest as _, Sha1};
use tokio::sync::Semaphore;

use crate::model::{BasicAuth, RouteAuth};

/// How long a successful check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Remembered successes at most; when full, expired ones go, then all.
pub const CACHE_CAPACITY: usize = 4096;
/// Hash checks running or waiting at most; beyond, 503.
pub const MAX_ADMITTED: usize = 256;

/// [`super::REASON_HEADER`] values of the answers of this step.
pub const NO_CREDENTIALS: &str = "basic auth: no credentials";
pub const BAD_CREDENTIALS: &str = "basic auth: wrong user or password";
pub const BUSY: &str = "basic auth: too many password checks in progress";

/// Why a request was not let through, and what to answer.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
    /// `WWW-Authenticate` to send (401 only).
    pub challenge: Option<HeaderValue>,
}

impl Refusal {
    /// The `reason` label of `xdp_ingress_auth_refused_requests_total`: `basic_unauthorized`
    /// (401: no, malformed or wrong credentials), `basic_busy` (503: too many password checks
    /// in progress), `unavailable` (503: the route's authentication cannot be used, an
    /// unusable Secret or external-auth configuration).
    pub fn metric_reason(&self) -> &'static str {
        if self.status == StatusCode::UNAUTHORIZED {
            "basic_unauthorized"
        } else if self.reason == BUSY {
            "basic_busy"
        } else {
            "unavailable"
        }
    }
}

/// Shared by every connection: the bounded verification pool and the success cache.
pub struct Authenticator {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    cache: Mutex<HashMap<[u8; 20], Instant>>,
    /// Keys the cache's hashes, so its entries say nothing outside this process.
    cache_key: [u8; 16],
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    }
}

impl Authenticator {
    /// `running`: hash checks at once (the number of CPUs by default); [`MAX_ADMITTED`]
    /// running or waiting.
    pub fn new(running: usize) -> Authenticator {
        Authenticator::with_limits(running, MAX_ADMITTED)
    }

    /// `running` hash checks at once, `admitted` running or waiting (both at least 1).
    pub fn with_limits(running: usize, admitted: usize) -> Authenticator {
        Authenticator {
            admitted: Arc::new(Semaphore::new(admitted.max(1))),
            running: Arc::new(Semaphore::new(running.max(1))),
            cache: Mutex::new(HashMap::new()),
            cache_key: rand::random(),
        }
    }

    /// Whether the request may go on. On `Ok`, the caller removes `Authorization` before
    /// forwarding.
    pub async fn admit(&self, auth: &RouteAuth, headers: &HeaderMap) -> Result<(), Refusal> {
        match auth {
            RouteAuth::Unavailable { reason } => Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: reason.clone(),
                challenge: None,
            }),
            RouteAuth::Basic(basic) => self.basic(basic, headers).await,
        }
    }

    async fn basic(&self, basic: &Arc<BasicAuth>, headers: &HeaderMap) -> Result<(), Refusal> {
        let refuse = |reason: &str| Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.to_string(),
            challenge: Some(challenge(&basic.realm)),
        };
        let Some((user, password)) = headers.get(AUTHORIZATION).and_then(credentials) else {
            return Err(refuse(NO_CREDENTIALS));
        };
        let Some(Some(stored)) = basic.users.get(&user) else {
            return Err(refuse(BAD_CREDENTIALS));
        };
        let id = self.cache_id(basic, &user, stored.encoded(), &password);
        if self.remembered(&id) {
            return Ok(());
        }
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            return Err(Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: BUSY.into(),
                challenge: None,
            });
        };
        let Ok(running) = self.running.clone().acquire_owned().await else {
            return Err(refuse(BAD_CREDENTIALS));
        };
        let stored = stored.clone();
        // The permits live in the task: a request dropped mid-check still counts until the
        // check ends.
        let ok = tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            stored.verify(&password)
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(refuse(BAD_CREDENTIALS));
        }
        self.remember(id);
        Ok(())
    }

    fn cache_id(&self, basic: &BasicAuth, user: &str, stored: &str, password: &[u8]) -> [u8; 20] {
        let mut h = Sha1::new();
        for part in [
            &self.cache_key[..],
            basic.secret.namespace.as_bytes(),
            basic.secret.name.as_bytes(),
            user.as_bytes(),
            stored.as_bytes(),
            password,
        ] {
            // Length-prefixed, so no two different tuples hash the same bytes.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn remembered(&self, id: &[u8; 20]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(id).is_some_and(|at| at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, id: [u8; 20]) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, at| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(id, Instant::now());
    }
}

/// `Basic realm="..."` (RFC 7617 section 2), the realm as a quoted-string (RFC 9110 section
/// 5.6.4: `"` and `\` escaped).
pub fn challenge(realm: &str) -> HeaderValue {
    let mut v = String::with_capacity(realm.len() + 14);
    v.push_str("Basic realm=\"");
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            v.push('\\');
        }
        v.push(c);
    }
    v.push('"');
    // Bytes, as nginx sends the realm: UTF-8 text is obs-text to HTTP, and allowed.
    HeaderValue::from_bytes(v.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"\""))
}

/// User and password of `Authorization: Basic <base64(user:password)>` (RFC 7617; the scheme
/// name is case-insensitive, RFC 9110 section 11.1); `None` for anything else. The user ends
/// at the first `:`; the password is bytes (no charset is assumed).
pub fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let v = value.as_bytes();
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let token = std::str::from_utf8(&v[6..]).ok()?.trim_matches(' ');
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthSecretType, ObjectKind, ObjectRef, htpasswd::Htpasswd};

    fn basic(file: &str) -> RouteAuth {
        RouteAuth::Basic(Arc::new(BasicAuth {
            realm: "Staff \"only\"".into(),
            secret: ObjectRef::new(ObjectKind::Secret, "ns", "s"),
            secret_type: AuthSecretType::AuthFile,
            users: Arc::new(Htpasswd::parse_file(file.as_bytes()).0),
        }))
    }

    fn headers(user_pass: &str) -> HeaderMap {
        let b64 = base64::engine::general_purpose::STANDARD.encode(user_pass);
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("basic  {b64}")).unwrap(),
        );
        h
    }

    #[test]
    fn credentials_follow_rfc_7617() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        // "Aladdin:open sesame" from RFC 7617 section 2.
        assert_eq!(
            credentials(&v("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
            Some(("Aladdin".into(), b"open sesame".to_vec()))
        );
        assert_eq!(
            credentials(&v("BASIC YTpiOmM=")),
            Some(("a".into(), b"b:c".to_vec()))
        );
        for bad in [
            "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "Basic",
            "Basic !!!",
            "Basic YWJj",
        ] {
            assert_eq!(credentials(&v(bad)), None, "{bad}");
        }
    }

    #[test]
    fn challenge_quotes_the_realm() {
        assert_eq!(challenge(""), "Basic realm=\"\"");
        assert_eq!(
            challenge("a \"b\" \\c"),
            "Basic realm=\"a \\\"b\\\" \\\\c\""
        );
        // UTF-8 goes out as sent (obs-text), not replaced by an empty realm.
        assert_eq!(
            challenge("Zugang für Mitarbeiter").as_bytes(),
            "Basic realm=\"Zugang für Mitarbeiter\"".as_bytes()
        );
    }

    #[tokio::test]
    async fn admit_refuses_until_the_password_matches() {
        let a = Authenticator::new(1);
        let auth = basic("alice:{PLAIN}s3cret\nbob:\n");
        let r = a.admit(&auth, &HeaderMap::new()).await.unwrap_err();
        assert_eq!(r.status, 401);
        assert_eq!(r.challenge.unwrap(), "Basic realm=\"Staff \\\"only\\\"\"");
        for wrong in ["alice:s3creT", "alice:", "mallory:s3cret", "bob:", "bob:x"] {
            let r = a.admit(&auth, &headers(wrong)).await.unwrap_err();
            assert_eq!(r.status, 401, "{wrong}");
        }
        assert!(a.admit(&auth, &headers("alice:s3cret")).await.is_ok());
        // Remembered, but only for the same password.
        assert!(a.admit(&auth, &headers("alice:s3cret")).await.is_ok());
        assert!(a.admit(&auth, &headers("alice:s3creT")).await.is_err());
        let down = RouteAuth::Unavailable {
            reason: "AuthSecretNotFound".into(),
        };
        let r = a.admit(&down, &headers("alice:s3cret")).await.unwrap_err();
        assert_eq!(r.status, 503);
    }

    /// A flood of wrong passwords against a slow hash: checks beyond the admitted number get
    /// 503 at once, and the async worker stays free meanwhile (the checks run elsewhere).
    #[tokio::test(flavor = "current_thread")]
    async fn a_flood_of_checks_is_bounded_and_never_blocks_the_worker() {
        // bcrypt cost 10 of "s3cret" (libxcrypt's crypt(3)).
        let auth = basic("alice:$2b$10$abcdefghijklmnopqrstuu3KWNuWLhBnmgYfnzONPueahDuedC/lu\n");
        let a = Arc::new(Authenticator::with_limits(1, 2));
        let started = std::time::Instant::now();
        let flood: Vec<_> = (0..6)
            .map(|_| {
                let (a, auth) = (Arc::clone(&a), auth.clone());
                tokio::spawn(async move { a.admit(&auth, &headers("alice:wrong")).await })
            })
            .collect();
        // The single worker thread keeps running timers while the checks are under way.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "worker blocked"
        );
        let mut statuses = Vec::new();
        for f in flood {
            statuses.push(f.await.unwrap().unwrap_err().status.as_u16());
        }
        statuses.sort();
        assert_eq!(statuses, [401, 401, 503, 503, 503, 503]);
        // Once they are done, checks are admitted again.
        let r = a.admit(&auth, &headers("alice:s3cret")).await;
        assert!(r.is_ok(), "{r:?}");
    }

    #[tokio::test]
    async fn a_changed_secret_is_not_served_from_the_cache() {
        let a = Authenticator::new(1);
        assert!(
            a.admit(&basic("alice:{PLAIN}old"), &headers("alice:old"))
                .await
                .is_ok()
        );
        let changed = basic("alice:{PLAIN}new");
        assert!(a.admit(&changed, &headers("alice:old")).await.is_err());
        assert!(
            a.admit(&basic("bob:{PLAIN}old"), &headers("alice:old"))
                .await
                .is_err()
        );
    }
}
