//! ingress-nginx's per-client rate limits (annotations page, "Rate Limiting";
//! `internal/ingress/annotations/ratelimit`): `limit-rps`, `limit-rpm`,
//! `limit-burst-multiplier`, `limit-connections`, `limit-allowlist` (old name
//! `limit-whitelist`). A value of `0` (or none) disables that limit, as ingress-nginx.
//!
//! Never open: ingress-nginx validates these values (`parser.ValidateInt`) and refuses the whole
//! Ingress on a failure, and nginx loads no negative rate, so a typo never removes a limit
//! there. Here a `limit-rps`, `limit-rpm`, `limit-connections` or `limit-burst-multiplier` that
//! is not a whole number (or a negative limit) denies the Ingress's routes instead
//! (`ResponsePolicy::denied`, 503) with a warning; other Ingresses are unaffected. A
//! `limit-burst-multiplier` below 1 takes the default, as ingress-nginx's parser does. A bad
//! `limit-allowlist` exempts nobody (the limits still apply).

use std::sync::Arc;

use crate::model::RateLimit;

use super::annotations::{Reader, parse_prefix};

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u32 = 5;

/// The Ingress's limits, `None` when none is set (or all are `0`); `Err`: why its routes are
/// denied (a warning is reported on `r`).
pub(super) fn parse(r: &mut Reader<'_>) -> Result<Option<Arc<RateLimit>>, String> {
    // The values that deny the routes, as `key: "value"`.
    let mut bad = Vec::new();
    let mut limit = |r: &mut Reader<'_>, key: &str| {
        let v = r.get(key)?.to_string();
        match number(&v) {
            Some(n) if n >= 0 => (n > 0).then_some(n as u32),
            // nginx loads no negative rate or connection count.
            _ => {
                bad.push(format!("{key}: {v:?}"));
                None
            }
        }
    };
    let rps = limit(r, "limit-rps");
    let rpm = limit(r, "limit-rpm");
    let connections = limit(r, "limit-connections");
    let key = "limit-burst-multiplier";
    let burst_multiplier = match r.get(key).map(str::to_string) {
        None => DEFAULT_BURST_MULTIPLIER,
        Some(v) => match number(&v) {
            Some(n) if n >= 1 => n as u32,
            // ingress-nginx: `if burstMultiplier < 1 { burstMultiplier = defBurst }`.
            Some(_) => {
                r.bad(key, &v, "1 or more");
                DEFAULT_BURST_MULTIPLIER
            }
            None => {
                bad.push(format!("{key}: {v:?}"));
                DEFAULT_BURST_MULTIPLIER
            }
        },
    };
    if !bad.is_empty() {
        let why = format!(
            "annotation {} is not a whole number of 0 or more (0 disables a limit)",
            bad.join(", ")
        );
        r.diags.error(
            r.object,
            "InvalidAnnotation",
            format!(
                "{why}; the route answers 503 until fixed (a limit is never dropped); ingress-nginx rejects the Ingress"
            ),
        );
        return Err(why);
    }
    let mut exempt = Vec::new();
    for key in ["limit-allowlist", "limit-whitelist"] {
        let Some(v) = r.get(key).map(str::to_string) else {
            continue;
        };
        let parsed: Option<Vec<_>> = v
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse_prefix)
            .collect();
        match parsed {
            Some(p) => exempt = p,
            // Exempting nobody is the stricter reading of a typo.
            None => r.bad(key, &v, "a comma-separated list of CIDRs; nobody is exempt"),
        }
        break;
    }
    if rps.is_none() && rpm.is_none() && connections.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(RateLimit {
        zone: format!("{}/{}", r.object.namespace, r.object.name),
        rps,
        rpm,
        burst_multiplier,
        connections,
        exempt,
    })))
}

/// `limit-rate` (KB/s) and `limit-rate-after` (KB) in bytes per second and bytes: ingress-nginx
/// renders them as nginx's `limit_rate Nk` / `limit_rate_after Nk` (k = 1024) when above 0;
/// `0` or a negative number turns them off (`Some(0)`, overriding the ConfigMap); `None` when
/// unset or not a whole number (with a warning), where the ConfigMap's value applies.
pub(super) fn response_rate(r: &mut Reader<'_>) -> (Option<u64>, Option<u64>) {
    let mut kib = |key: &str| {
        let v = r.get(key)?.to_string();
        match kibibytes(&v) {
            Some(n) => Some(n),
            None => {
                r.bad(key, &v, "a whole number of kilobytes (0 turns it off)");
                None
            }
        }
    };
    (kib("limit-rate"), kib("limit-rate-after"))
}

/// A whole number of KiB (`1024` bytes each, nginx's `k`) as bytes; `0` for zero or less (off,
/// as ingress-nginx renders only values above 0); `None` when not a whole number or past
/// `u32::MAX` KiB.
pub fn kibibytes(v: &str) -> Option<u64> {
    let n: i64 = v.trim().parse().ok()?;
    let n = u64::try_from(n.max(0)).ok()?;
    // `then`, not `then_some`: the product of a number past the limit must not be computed.
    (n <= u64::from(u32::MAX)).then(|| n * 1024)
}

/// `v` as a whole number (ingress-nginx's `strconv.Atoi`) no bigger than `u32::MAX`.
fn number(v: &str) -> Option<i64> {
    v.parse::<i64>().ok().filter(|&n| n <= i64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{
        ObjectKind, ObjectRef,
        translate::{annotations, diagnostics::Diagnostics},
    };

    /// The limits, the denial (if any) and the warnings of an Ingress with `pairs`.
    fn parse_with(pairs: &[(&str, &str)]) -> (Option<Arc<RateLimit>>, Option<String>, Diagnostics) {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let obj = ObjectRef::new(ObjectKind::Ingress, "ns", "web");
        let mut d = Diagnostics::default();
        let o = annotations::parse(Some(&a), &obj, &mut d);
        (
            o.policy.rate_limit.clone(),
            o.policy.response.denied.clone(),
            d,
        )
    }

    #[test]
    fn limits_parse_under_both_prefixes_with_the_default_multiplier() {
        let (l, denied, d) = parse_with(&[
            ("nginx.ingress.kubernetes.io/limit-rps", "2"),
            ("xdp-ingress.dev/limit-connections", "3"),
            (
                "nginx.ingress.kubernetes.io/limit-whitelist",
                "10.0.0.0/8, 127.0.0.1",
            ),
        ]);
        let l = l.unwrap();
        assert!(d.0.is_empty() && denied.is_none());
        assert_eq!(l.zone, "ns/web");
        assert_eq!((l.rps, l.rpm, l.connections), (Some(2), None, Some(3)));
        assert_eq!(l.burst_multiplier, 5);
        assert_eq!(l.exempt.len(), 2);
    }

    /// ingress-nginx renders `limit_rate Nk` / `limit_rate_after Nk` (k = 1024) for N > 0;
    /// 0 or less is off (kept as `Some(0)` so it overrides the ConfigMap); a value that is not
    /// a whole number warns and leaves the ConfigMap's default (`None`).
    #[test]
    fn kibibytes_past_the_limit_are_refused_without_overflow() {
        // Found by the annotation fuzz: 2^54 KiB overflowed the multiplication (a panic in
        // debug builds) before the range check refused it.
        assert_eq!(kibibytes("18014398509481984"), None);
        assert_eq!(kibibytes(&i64::MAX.to_string()), None);
        assert_eq!(
            kibibytes(&u32::MAX.to_string()),
            Some(u64::from(u32::MAX) * 1024)
        );
    }

    #[test]
    fn limit_rate_and_after_in_kibibytes() {
        let policy = |pairs: &[(&str, &str)]| {
            let a: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let obj = ObjectRef::new(ObjectKind::Ingress, "ns", "web");
            let mut d = Diagnostics::default();
            let o = annotations::parse(Some(&a), &obj, &mut d);
            (o.policy.limit_rate, o.policy.limit_rate_after, d.0.len())
        };
        assert_eq!(
            policy(&[
                ("nginx.ingress.kubernetes.io/limit-rate", "256"),
                ("xdp-ingress.dev/limit-rate-after", "100"),
            ]),
            (Some(256 * 1024), Some(100 * 1024), 0)
        );
        assert_eq!(
            policy(&[("nginx.ingress.kubernetes.io/limit-rate", "0")]),
            (Some(0), None, 0)
        );
        assert_eq!(
            policy(&[("nginx.ingress.kubernetes.io/limit-rate", "-5")]),
            (Some(0), None, 0)
        );
        assert_eq!(
            policy(&[
                ("nginx.ingress.kubernetes.io/limit-rate", "1m"),
                ("nginx.ingress.kubernetes.io/limit-rate-after", "x"),
            ]),
            (None, None, 2)
        );
        assert_eq!(policy(&[]), (None, None, 0));
    }

    /// `satisfy`: `all` (also the default) or `any`; anything else warns and means `all`.
    #[test]
    fn satisfy_values() {
        use crate::model::Satisfy;
        let satisfy = |v: Option<&str>| {
            let a: BTreeMap<String, String> = v
                .map(|v| {
                    (
                        "nginx.ingress.kubernetes.io/satisfy".to_string(),
                        v.to_string(),
                    )
                })
                .into_iter()
                .collect();
            let obj = ObjectRef::new(ObjectKind::Ingress, "ns", "web");
            let mut d = Diagnostics::default();
            let o = annotations::parse(Some(&a), &obj, &mut d);
            (o.policy.satisfy, d.0.len())
        };
        assert_eq!(satisfy(None), (Satisfy::All, 0));
        assert_eq!(satisfy(Some("all")), (Satisfy::All, 0));
        assert_eq!(satisfy(Some("any")), (Satisfy::Any, 0));
        assert_eq!(satisfy(Some("ANY")), (Satisfy::All, 1));
    }

    #[test]
    fn zero_disables_a_limit_and_a_small_multiplier_takes_the_default() {
        let (l, denied, d) = parse_with(&[("nginx.ingress.kubernetes.io/limit-rpm", "0")]);
        assert!(l.is_none() && denied.is_none() && d.0.is_empty());
        let (l, denied, d) = parse_with(&[
            ("nginx.ingress.kubernetes.io/limit-rpm", "60"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "-1"),
            ("nginx.ingress.kubernetes.io/limit-allowlist", "nope"),
        ]);
        let l = l.unwrap();
        assert_eq!((l.rpm, l.burst_multiplier), (Some(60), 5));
        // A bad allowlist exempts nobody; the limit stays.
        assert!(l.exempt.is_empty());
        assert!(denied.is_none());
        assert_eq!(d.0.len(), 2);
    }

    /// ingress-nginx refuses an Ingress whose limit does not parse (`parser.ValidateInt`): a
    /// typo never removes a limit. Here the Ingress's routes are denied, with a warning.
    #[test]
    fn a_value_that_is_no_number_denies_the_routes() {
        for (key, value) in [
            ("limit-rps", "fast"),
            ("limit-rpm", "1.5"),
            ("limit-connections", "-3"),
            ("limit-rps", "99999999999"),
            ("limit-burst-multiplier", "lots"),
        ] {
            let key = format!("xdp-ingress.dev/{key}");
            let (l, denied, d) = parse_with(&[
                (&key, value),
                ("nginx.ingress.kubernetes.io/limit-rpm", "60"),
            ]);
            let denied = denied.unwrap_or_else(|| panic!("{key}: {value:?} denies"));
            assert!(denied.contains(value), "{denied}");
            assert_eq!(d.0.len(), 1, "{key}: {value:?}");
            let warning = &d.0[0];
            // It denies the routes: an error, as every value that denies a route.
            assert_eq!(warning.severity, crate::model::Severity::Error);
            assert!(
                warning.message.contains("503 until fixed")
                    && warning
                        .message
                        .contains("ingress-nginx rejects the Ingress"),
                "{}",
                warning.message
            );
            assert!(l.is_none(), "no limit is kept for a denied route");
        }
    }
}
