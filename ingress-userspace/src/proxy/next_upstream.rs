//! Whether a failed attempt goes on to another endpoint: nginx's `proxy_next_upstream`
//! (which failures), `proxy_next_upstream_tries` (how many attempts) and
//! `proxy_next_upstream_timeout` (for how long), as the route's [`NextUpstream`] sets them
//! (ngx_http_proxy_module; ingress-nginx's `proxy-next-upstream*`). The one place that
//! decides; [`super::forward`] reports what happened to each attempt.
//!
//! nginx's rules kept here: a request with a non-idempotent method (POST, LOCK, PATCH) goes to
//! another endpoint only while nothing of it was sent (a failed connect), unless the route
//! lists `non_idempotent`; the timeout counts from the first attempt and is checked when the
//! next would start. Ours on top: the client's body is streamed, never buffered, so once an
//! attempt has read from it the request cannot be sent again, whatever the route lists; and
//! no endpoint is tried twice for one request, unless the route says attempts count per
//! request ([`NextUpstream::repeat_endpoints`], a Gateway API retry): then every endpoint is
//! tried once before any again, and each retry waits the route's backoff first; or unless
//! cookie affinity without `session-cookie-change-on-failure` sends every try to the cookie's
//! endpoint (ingress-nginx's sticky balancer, [`super::upstream::balance`]).

use std::time::Instant;

use http::Method;

use crate::model::{NextUpstream, RetryOn};

/// What went wrong with one attempt, in nginx's `proxy_next_upstream` terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `error`: connecting, sending the request or reading the response head failed.
    Error,
    /// `timeout`: connecting, sending or waiting for the response head timed out.
    Timeout,
    /// `invalid_header`: the response head did not parse.
    InvalidHeader,
    /// `http_<code>`: the endpoint answered with this status.
    Status(u16),
}

/// What the request had been through when an attempt failed.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// Something of the request reached the endpoint (nginx's `request_sent`): true for every
    /// failure but a failed connect.
    pub sent: bool,
    /// An attempt has read from the client's body: it cannot be sent again.
    pub body_consumed: bool,
}

/// One request's retry budget under its route's policy.
#[derive(Debug)]
pub struct Retry {
    when: RetryOn,
    /// Attempts allowed, the first included; `0`: no limit.
    tries: u32,
    /// No attempt starts after this (`proxy-next-upstream-timeout`).
    deadline: Option<Instant>,
    /// POST, LOCK or PATCH (nginx's list).
    non_idempotent: bool,
    /// Least wait before each attempt after the first.
    backoff: Option<std::time::Duration>,
    /// Endpoints may be tried again once each has been.
    repeat: bool,
}

impl Retry {
    /// The budget of a request with `method` whose first attempt starts at `started`;
    /// `default_tries` applies when neither annotation nor ConfigMap sets the tries.
    pub fn new(
        policy: &NextUpstream,
        default_tries: u32,
        method: &Method,
        started: Instant,
    ) -> Retry {
        Retry {
            when: policy.when.clone().unwrap_or(RetryOn::NGINX_DEFAULT),
            tries: policy.tries.unwrap_or(default_tries),
            // A timeout beyond what the clock can count (any number of seconds is accepted)
            // is no limit.
            deadline: policy
                .timeout
                .filter(|t| !t.is_zero())
                .and_then(|t| started.checked_add(t)),
            non_idempotent: *method == Method::POST
                || *method == Method::PATCH
                || method.as_str() == "LOCK",
            backoff: policy.backoff.filter(|b| !b.is_zero()),
            repeat: policy.repeat_endpoints,
        }
    }

    /// The wait before an attempt after the first.
    pub fn backoff(&self) -> Option<std::time::Duration> {
        self.backoff
    }

    /// Of the endpoints `tried` so far (in order) on an upstream of `endpoints`, those the
    /// next pick must avoid: all of them; with repeats, those of the current round (each
    /// endpoint once before any again).
    pub fn avoid<'t>(&self, tried: &'t [usize], endpoints: usize) -> &'t [usize] {
        match endpoints {
            n if self.repeat && n > 0 => &tried[tried.len() - tried.len() % n..],
            _ => tried,
        }
    }

    /// Whether an attempt may follow the `done` ones on an upstream of `endpoints` (asked
    /// before an attempt: its request need not be kept for another when none may follow).
    pub fn may_follow(&self, done: usize, endpoints: usize) -> bool {
        let within = self.tries == 0 || done < usize::try_from(self.tries).unwrap_or(usize::MAX);
        // Repeats are bounded by the tries alone (never 0 there: translation sets them).
        let endpoints_left = done < endpoints || (self.repeat && self.tries > 0 && endpoints > 0);
        within && endpoints_left && self.when != RetryOn::OFF
    }

    /// Whether the failure `cause` of an attempt goes on to another endpoint (given that one
    /// may follow, [`Retry::may_follow`]).
    pub fn retries(&self, cause: Cause, a: Attempt, now: Instant) -> bool {
        if a.body_consumed || self.deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if a.sent && self.non_idempotent && !self.when.non_idempotent {
            return false;
        }
        match cause {
            Cause::Error => self.when.error,
            Cause::Timeout => self.when.timeout,
            Cause::InvalidHeader => self.when.invalid_header,
            Cause::Status(s) => self.when.statuses.contains(&s),
        }
    }

    /// Whether responses with `status` may be retried at all (so others skip the check).
    pub fn covers_status(&self, status: u16) -> bool {
        self.when.statuses.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::translate::next_upstream::parse_when;

    fn retry(when: &str, tries: Option<u32>, timeout: Option<u64>, method: &str) -> Retry {
        let policy = NextUpstream {
            when: Some(parse_when(when).expect("valid")),
            tries,
            timeout: timeout.map(Duration::from_millis),
            ..Default::default()
        };
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        Retry::new(&policy, 3, &method, Instant::now())
    }

    const UNSENT: Attempt = Attempt {
        sent: false,
        body_consumed: false,
    };
    const SENT: Attempt = Attempt {
        sent: true,
        body_consumed: false,
    };

    #[test]
    fn cases_listed_are_retried_and_others_not() {
        let now = Instant::now();
        let r = retry("error timeout", None, None, "GET");
        assert!(r.retries(Cause::Error, SENT, now));
        assert!(r.retries(Cause::Timeout, SENT, now));
        assert!(!r.retries(Cause::InvalidHeader, SENT, now));
        assert!(!r.retries(Cause::Status(503), SENT, now));
        let r = retry("http_503", None, None, "GET");
        assert!(r.retries(Cause::Status(503), SENT, now));
        assert!(r.covers_status(503) && !r.covers_status(502));
        assert!(!r.retries(Cause::Status(502), SENT, now));
        // Without `error`, not even a failed connect is retried.
        assert!(!r.retries(Cause::Error, UNSENT, now));
        let r = retry("invalid_header", None, None, "GET");
        assert!(r.retries(Cause::InvalidHeader, SENT, now));
    }

    #[test]
    fn post_lock_and_patch_are_retried_once_sent_only_with_non_idempotent() {
        let now = Instant::now();
        for m in ["POST", "LOCK", "PATCH"] {
            let r = retry("error timeout http_503", None, None, m);
            assert!(
                r.retries(Cause::Error, UNSENT, now),
                "{m}: nothing sent yet"
            );
            assert!(!r.retries(Cause::Timeout, SENT, now), "{m}");
            assert!(!r.retries(Cause::Status(503), SENT, now), "{m}");
            let r = retry("error timeout http_503 non_idempotent", None, None, m);
            assert!(r.retries(Cause::Timeout, SENT, now), "{m}");
            assert!(r.retries(Cause::Status(503), SENT, now), "{m}");
        }
        // nginx's list is those three: other methods count as idempotent.
        for m in ["GET", "PUT", "DELETE", "OPTIONS", "PROPFIND"] {
            assert!(retry("timeout", None, None, m).retries(Cause::Timeout, SENT, now));
        }
    }

    #[test]
    fn a_consumed_body_is_never_sent_again() {
        let r = retry("error timeout non_idempotent", None, None, "PUT");
        let a = Attempt {
            sent: true,
            body_consumed: true,
        };
        assert!(!r.retries(Cause::Error, a, Instant::now()));
    }

    #[test]
    fn tries_count_the_first_attempt_and_endpoints_bound_them() {
        let r = retry("error", Some(1), None, "GET");
        assert!(
            r.may_follow(0, 5) && !r.may_follow(1, 5),
            "tries=1: one attempt"
        );
        let r = retry("error", Some(3), None, "GET");
        assert!(r.may_follow(2, 5) && !r.may_follow(3, 5));
        assert!(!r.may_follow(2, 2), "no endpoint is tried twice");
        let r = retry("error", Some(0), None, "GET");
        assert!(
            r.may_follow(99, 100) && !r.may_follow(100, 100),
            "0: no limit"
        );
        let r = Retry::new(&NextUpstream::default(), 3, &Method::GET, Instant::now());
        assert!(r.may_follow(2, 5) && !r.may_follow(3, 5), "default tries");
        assert!(!retry("off", None, None, "GET").may_follow(0, 5));
    }

    #[test]
    fn the_timeout_ends_retries_from_the_first_attempt() {
        let start = Instant::now();
        let policy = NextUpstream {
            when: None,
            tries: None,
            timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        };
        let r = Retry::new(&policy, 3, &Method::GET, start);
        assert!(r.retries(Cause::Error, SENT, start + Duration::from_millis(1999)));
        assert!(!r.retries(Cause::Error, SENT, start + Duration::from_secs(2)));
        let none = NextUpstream {
            timeout: Some(Duration::ZERO),
            ..policy.clone()
        };
        let r = Retry::new(&none, 3, &Method::GET, start);
        assert!(r.retries(Cause::Error, SENT, start + Duration::from_secs(3600)));
        // ingress-nginx accepts any number of seconds: one the clock cannot reach is no limit.
        let far = NextUpstream {
            timeout: Some(Duration::from_secs(u64::MAX)),
            ..policy
        };
        let r = Retry::new(&far, 3, &Method::GET, start);
        assert!(r.retries(Cause::Error, SENT, start + Duration::from_secs(999_999)));
    }

    /// Gateway API retries (`HTTPRouteRetry.attempts`: retries of one request): with one
    /// endpoint, attempts go to it again up to the tries; with several, each is tried once
    /// before any again; the backoff is kept; a zero backoff is none.
    #[test]
    fn repeats_go_round_the_endpoints_up_to_the_tries() {
        let policy = NextUpstream {
            when: Some(parse_when("http_503").expect("valid")),
            tries: Some(3),
            backoff: Some(Duration::from_millis(100)),
            repeat_endpoints: true,
            ..Default::default()
        };
        let r = Retry::new(&policy, 9, &Method::GET, Instant::now());
        assert!(r.may_follow(1, 1) && r.may_follow(2, 1) && !r.may_follow(3, 1));
        assert!(!r.may_follow(0, 0), "no endpoint, no attempt");
        assert_eq!(r.avoid(&[0], 1), [0; 0]);
        assert_eq!(r.avoid(&[1, 0], 3), [1, 0]);
        assert_eq!(r.avoid(&[1, 0, 2, 1], 3), [1]);
        assert_eq!(r.backoff(), Some(Duration::from_millis(100)));
        let nginx = retry("http_503", Some(3), None, "GET");
        assert_eq!(nginx.avoid(&[1, 0, 2], 3), [1, 0, 2]);
        assert!(!nginx.may_follow(1, 1));
        assert_eq!(nginx.backoff(), None);
        let zero = NextUpstream {
            backoff: Some(Duration::ZERO),
            ..policy
        };
        assert_eq!(
            Retry::new(&zero, 3, &Method::GET, Instant::now()).backoff(),
            None
        );
    }
}
