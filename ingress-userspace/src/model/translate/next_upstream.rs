//! ingress-nginx's `proxy-next-upstream`, `proxy-next-upstream-tries` and
//! `proxy-next-upstream-timeout`, read the same way from annotations and from the controller
//! ConfigMap (its annotations reference, "Custom timeouts"; `configmap.md`), into
//! [`NextUpstream`]. The values are nginx's `proxy_next_upstream*` directives': ingress-nginx
//! accepts the cases its `validUpstreamAnnotation` lists, whole seconds for the timeout and a
//! count for the tries.

use std::time::Duration;

use super::annotations::parse_duration;
use crate::model::{NextUpstream, RetryOn};

/// The keys, as annotations (without prefix) and ConfigMap keys.
pub const WHEN: &str = "proxy-next-upstream";
pub const TRIES: &str = "proxy-next-upstream-tries";
pub const TIMEOUT: &str = "proxy-next-upstream-timeout";

/// A value that does not parse: the caller warns on its object and the key keeps its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub value: String,
    /// What the value should have been, for the warning.
    pub expected: &'static str,
}

/// Reads the three keys with `get` (trimmed values); unset keys stay `None`.
pub fn parse(get: impl Fn(&str) -> Option<String>) -> (NextUpstream, Vec<Invalid>) {
    let mut out = NextUpstream::default();
    let mut invalid = Vec::new();
    let mut bad = |key, value: String, expected| {
        invalid.push(Invalid {
            key,
            value,
            expected,
        })
    };
    if let Some(v) = get(WHEN) {
        match parse_when(&v) {
            Some(w) => out.when = Some(w),
            None => bad(
                WHEN,
                v,
                "a space-separated list of error, timeout, invalid_header, http_500, http_502, \
                 http_503, http_504, http_403, http_404, http_429, non_idempotent, off",
            ),
        }
    }
    if let Some(v) = get(TRIES) {
        match v.parse::<u32>() {
            Ok(n) => out.tries = Some(n),
            Err(_) => bad(TRIES, v, "a number of tries (0: no limit)"),
        }
    }
    // Any number of seconds, as ingress-nginx's integer key and nginx's
    // `proxy_next_upstream_timeout` take (its e2e tests set "999999"); one too far ahead for
    // the clock is no limit ([`crate::proxy::next_upstream`]).
    if let Some(v) = get(TIMEOUT) {
        match parse_duration(&v) {
            Some(d) => out.timeout = Some(d),
            None => bad(TIMEOUT, v, "a number of seconds (0: no limit)"),
        }
    }
    (out, invalid)
}

/// nginx's `proxy_next_upstream` cases, separated by blanks. `off` anywhere turns every
/// case off, as nginx's merge of the directive does; an unknown word or an empty value is
/// `None`.
pub fn parse_when(v: &str) -> Option<RetryOn> {
    let mut on = RetryOn::OFF;
    let mut off = false;
    let mut any = false;
    for word in v.split_ascii_whitespace() {
        any = true;
        match word {
            "error" => on.error = true,
            "timeout" => on.timeout = true,
            "invalid_header" => on.invalid_header = true,
            "non_idempotent" => on.non_idempotent = true,
            "off" => off = true,
            _ => {
                let code: u16 = word.strip_prefix("http_")?.parse().ok()?;
                if !RetryOn::STATUSES.contains(&code) {
                    return None;
                }
                on.statuses.push(code);
            }
        }
    }
    if !any {
        return None;
    }
    if off {
        return Some(RetryOn::OFF);
    }
    on.statuses.sort_unstable();
    on.statuses.dedup();
    Some(on)
}

/// `0` for `proxy-next-upstream-timeout` means no limit; kept as written (zero).
pub fn no_limit(timeout: Option<Duration>) -> bool {
    timeout.is_none_or(|t| t.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (NextUpstream, Vec<Invalid>) {
        parse(|k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn nginx_cases_parse_in_any_order_and_off_wins() {
        let w = parse_when("http_503 error  timeout http_503 non_idempotent").unwrap();
        assert_eq!(
            w,
            RetryOn {
                error: true,
                timeout: true,
                invalid_header: false,
                statuses: vec![503],
                non_idempotent: true,
            }
        );
        assert_eq!(w.to_nginx(), "error timeout http_503 non_idempotent");
        assert_eq!(parse_when("off"), Some(RetryOn::OFF));
        assert_eq!(parse_when("error off"), Some(RetryOn::OFF));
        assert_eq!(RetryOn::OFF.to_nginx(), "off");
        let all = parse_when(
            "invalid_header http_500 http_502 http_503 http_504 http_403 http_404 http_429",
        )
        .unwrap();
        assert_eq!(all.statuses, [403, 404, 429, 500, 502, 503, 504]);
        assert!(all.invalid_header && !all.error);
        for bad in [
            "",
            "  ",
            "http_501",
            "http_",
            "errors",
            "error,timeout",
            "HTTP_503",
        ] {
            assert_eq!(parse_when(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tries_and_timeout_take_numbers_and_zero_means_no_limit() {
        let (n, bad) = read(&[(WHEN, "off"), (TRIES, "0"), (TIMEOUT, "0")]);
        assert!(bad.is_empty());
        assert_eq!(n.tries, Some(0));
        assert!(no_limit(n.timeout));
        let (n, _) = read(&[(TIMEOUT, "30")]);
        assert_eq!(n.timeout, Some(Duration::from_secs(30)));
        assert!(!no_limit(n.timeout));
        assert_eq!(read(&[]).0, NextUpstream::default());
        // ingress-nginx e2e: `proxy-next-upstream-timeout: "999999"` is a value like any other.
        let (n, bad) = read(&[(TIMEOUT, "999999")]);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(n.timeout, Some(Duration::from_secs(999_999)));
        let (n, bad) = read(&[(WHEN, "sometimes"), (TRIES, "-1"), (TIMEOUT, "soon")]);
        assert_eq!(n, NextUpstream::default(), "bad values keep the defaults");
        let keys: Vec<&str> = bad.iter().map(|b| b.key).collect();
        assert_eq!(keys, [WHEN, TRIES, TIMEOUT]);
    }
}
