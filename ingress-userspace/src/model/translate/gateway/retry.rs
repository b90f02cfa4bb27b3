//! HTTPRoute `rules[].retry` (Gateway API experimental channel, GEP-1731 `HTTPRouteRetry`:
//! `codes`, `attempts`, `backoff`) as the proxy's one retry policy, [`NextUpstream`] (the
//! machinery of ingress-nginx's `proxy-next-upstream`, `crate::proxy::next_upstream`):
//!
//! - `codes`: the statuses retried; besides them connection errors, timeouts waiting for the
//!   response head and malformed response heads are retried ("Implementations SHOULD retry on
//!   connection errors ... if a retry stanza is configured"), for every method (the spec
//!   makes no exception; a request body the first attempt streamed cannot be sent again,
//!   [`crate::proxy::next_upstream`]).
//! - `attempts`: retries of the request, so `attempts + 1` tries; unset: the proxy's default
//!   tries (`--proxy-retries` + 1). An endpoint is tried again once every endpoint of the
//!   backend has been (the spec counts a request's attempts, not endpoints).
//! - `backoff`: waited before each retry, the same every time (the spec's minimum; no
//!   exponential growth, no jitter).
//!
//! The rule's `timeouts.request` bounds the whole request, retries and backoffs included.

use std::time::Duration;

use super::timeouts;
use crate::{
    model::{NextUpstream, RetryOn},
    store::httproutes::HttpRouteRulesRetry,
};

/// The retry policy of a rule's `retry`, or why it cannot be served (a code outside
/// 400-599, a negative `attempts`, a `backoff` that is not a Gateway API duration).
pub fn next_upstream(r: &HttpRouteRulesRetry) -> Result<NextUpstream, String> {
    let mut statuses = Vec::new();
    for code in r.codes.iter().flatten() {
        // HTTPRouteRetryStatusCode: 400-599.
        match u16::try_from(*code) {
            Ok(c @ 400..=599) => statuses.push(c),
            _ => return Err(format!("retry code {code} is not a status of 400-599")),
        }
    }
    statuses.sort_unstable();
    statuses.dedup();
    let tries = match r.attempts {
        None => None,
        Some(n) => match u32::try_from(n) {
            Ok(n) => Some(n.saturating_add(1)),
            Err(_) => return Err(format!("retry attempts {n} is not a count")),
        },
    };
    let backoff: Option<Duration> = (r.backoff.as_deref())
        .map(|b| timeouts::duration(b).map_err(|e| format!("retry backoff {b:?}: {e}")))
        .transpose()?;
    Ok(NextUpstream {
        when: Some(RetryOn {
            error: true,
            timeout: true,
            invalid_header: true,
            statuses,
            non_idempotent: true,
        }),
        tries,
        timeout: None,
        backoff,
        repeat_endpoints: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(
        codes: Option<Vec<i64>>,
        attempts: Option<i64>,
        backoff: Option<&str>,
    ) -> HttpRouteRulesRetry {
        HttpRouteRulesRetry {
            codes,
            attempts,
            backoff: backoff.map(str::to_string),
        }
    }

    /// GEP-1731 with the conformance test HTTPRouteRetry's rules: `attempts: 3` with
    /// `codes: [500]` allows three retries of a 500 (four tries), not of a 503; unset
    /// attempts take the proxy's default tries; the backoff is kept.
    #[test]
    fn codes_attempts_and_backoff_become_the_retry_policy() {
        let n = next_upstream(&retry(Some(vec![500]), Some(3), Some("100ms"))).unwrap();
        let when = n.when.clone().unwrap();
        assert_eq!(when.statuses, [500]);
        assert!(when.error && when.timeout && when.invalid_header && when.non_idempotent);
        assert_eq!(n.tries, Some(4));
        assert_eq!(n.backoff, Some(Duration::from_millis(100)));
        assert!(n.repeat_endpoints);
        let n = next_upstream(&retry(Some(vec![504, 500, 502, 503, 500]), Some(2), None)).unwrap();
        assert_eq!(n.when.unwrap().statuses, [500, 502, 503, 504]);
        assert_eq!((n.tries, n.backoff), (Some(3), None));
        let n = next_upstream(&retry(None, None, None)).unwrap();
        assert_eq!(n.tries, None);
        assert!(n.when.unwrap().statuses.is_empty());
        assert_eq!(
            next_upstream(&retry(None, Some(0), None)).unwrap().tries,
            Some(1)
        );
    }

    #[test]
    fn values_the_api_refuses_are_not_served() {
        for r in [
            retry(Some(vec![200]), None, None),
            retry(Some(vec![600]), None, None),
            retry(None, Some(-1), None),
            retry(None, None, Some("soon")),
        ] {
            assert!(next_upstream(&r).is_err(), "{r:?}");
        }
    }
}
