//! The per-source new-connection (SYN) rate limit of an L4 service, enforced in XDP: Service
//! annotations `xdp-ingress.dev/syn-rate-limit` (new connections per second per source
//! address, an IPv6 source counting by its /64) and `xdp-ingress.dev/syn-rate-limit-burst`
//! (connections a source may open at once; default [`DEFAULT_BURST_MULTIPLIER`] times the
//! rate, as ingress-nginx's `limit-burst-multiplier` for `limit-rps`). No ingress-nginx
//! annotation has this meaning, so only the `xdp-ingress.dev/` prefix is read.
//!
//! The ingress's own Service (`--ingress-service`: the proxy's ports as the XDP path sees
//! them) gets the node-wide default of `--syn-rate-limit-per-source` /
//! `--syn-rate-limit-burst` unless it is annotated itself (the same flags limit the proxy's
//! listeners themselves, outside translation: `dataplane::syn_listeners`). `"0"` turns the
//! limit off (also
//! the default on the own Service); a value that is not a whole number in range is a Warning
//! and leaves the Service as it would be without the annotation.

use std::collections::BTreeMap;

use super::{diagnostics::Diagnostics, rate_limit::DEFAULT_BURST_MULTIPLIER};
use crate::model::{ObjectRef, SynRateLimit};

/// New connections per second per source.
pub const SYN_RATE_LIMIT_ANNOTATION: &str = "xdp-ingress.dev/syn-rate-limit";
/// New connections a source may open at once.
pub const SYN_RATE_LIMIT_BURST_ANNOTATION: &str = "xdp-ingress.dev/syn-rate-limit-burst";
/// Largest rate and burst: one SYN per microsecond per source is no limit any more, and the
/// XDP side keeps `burst × 10^9 / rate` in a `u64` of nanoseconds.
pub const MAX_SYN_RATE: u32 = 1_000_000;

/// The limit `per_second` (0: none) with `burst` (`None`: the default multiple), clamped to
/// [`MAX_SYN_RATE`].
pub fn limit(per_second: u32, burst: Option<u32>) -> Option<SynRateLimit> {
    if per_second == 0 {
        return None;
    }
    let burst = burst
        .filter(|b| *b > 0)
        .unwrap_or(per_second.saturating_mul(DEFAULT_BURST_MULTIPLIER));
    Some(SynRateLimit {
        per_second: per_second.min(MAX_SYN_RATE),
        burst: burst.min(MAX_SYN_RATE),
    })
}

/// The Service's limit: its annotations, else `default` (the node-wide one, for the ingress's
/// own Service; `None` for others). Bad values are Warnings on `oref`.
pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    default: Option<SynRateLimit>,
    oref: &ObjectRef,
    diags: &mut Diagnostics,
) -> Option<SynRateLimit> {
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| v.trim());
    let mut number = |key: &str, zero_ok: bool| -> Option<u32> {
        let v = get(key)?;
        let min = u32::from(!zero_ok);
        match v.parse::<u32>() {
            Ok(n) if (min..=MAX_SYN_RATE).contains(&n) => Some(n),
            _ => {
                diags.warn(
                    oref,
                    "InvalidSynRateLimit",
                    format!(
                        "{key}: {v:?} is not a whole number from {min} to {MAX_SYN_RATE}; \
                         ignored"
                    ),
                );
                None
            }
        }
    };
    let rate = number(SYN_RATE_LIMIT_ANNOTATION, true);
    let burst = number(SYN_RATE_LIMIT_BURST_ANNOTATION, false);
    match rate {
        Some(r) => limit(r, burst),
        None => {
            if burst.is_some() && get(SYN_RATE_LIMIT_ANNOTATION).is_none() && default.is_none() {
                diags.warn(
                    oref,
                    "InvalidSynRateLimit",
                    format!(
                        "{SYN_RATE_LIMIT_BURST_ANNOTATION} without {SYN_RATE_LIMIT_ANNOTATION} \
                         sets no limit"
                    ),
                );
            }
            // A burst alone adjusts the node-wide default of the own Service.
            default.map(|d| match burst {
                Some(b) => SynRateLimit { burst: b, ..d },
                None => d,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectKind, Severity};

    fn run(
        pairs: &[(&str, &str)],
        default: Option<SynRateLimit>,
    ) -> (Option<SynRateLimit>, Vec<String>) {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let oref = ObjectRef::new(ObjectKind::Service, "default", "web");
        let mut diags = Diagnostics::default();
        let l = parse(Some(&a), default, &oref, &mut diags);
        let d = diags.finish();
        assert!(d.iter().all(|d| d.severity == Severity::Warning));
        (l, d.into_iter().map(|d| d.message).collect())
    }

    fn lim(per_second: u32, burst: u32) -> Option<SynRateLimit> {
        Some(SynRateLimit { per_second, burst })
    }

    #[test]
    fn rate_with_and_without_burst() {
        assert_eq!(
            run(&[(SYN_RATE_LIMIT_ANNOTATION, "100")], None).0,
            lim(100, 500)
        );
        assert_eq!(
            run(
                &[
                    (SYN_RATE_LIMIT_ANNOTATION, "100"),
                    (SYN_RATE_LIMIT_BURST_ANNOTATION, "20")
                ],
                None
            )
            .0,
            lim(100, 20)
        );
        assert_eq!(run(&[], None), (None, vec![]));
    }

    #[test]
    fn zero_turns_the_limit_off_even_against_the_node_default() {
        assert_eq!(
            run(&[(SYN_RATE_LIMIT_ANNOTATION, "0")], lim(10, 50)),
            (None, vec![])
        );
    }

    #[test]
    fn the_own_service_default_applies_unless_annotated() {
        assert_eq!(run(&[], lim(10, 50)).0, lim(10, 50));
        assert_eq!(
            run(&[(SYN_RATE_LIMIT_ANNOTATION, "3")], lim(10, 50)).0,
            lim(3, 15)
        );
        assert_eq!(
            run(&[(SYN_RATE_LIMIT_BURST_ANNOTATION, "7")], lim(10, 50)).0,
            lim(10, 7)
        );
    }

    #[test]
    fn bad_values_warn_and_change_nothing() {
        for v in ["-1", "1.5", "ten", "1000001", ""] {
            let (l, w) = run(&[(SYN_RATE_LIMIT_ANNOTATION, v)], None);
            assert_eq!(l, None, "{v:?}");
            assert_eq!(w.len(), 1, "{v:?}: {w:?}");
            assert!(w[0].contains(SYN_RATE_LIMIT_ANNOTATION), "{w:?}");
            let (l, w) = run(&[(SYN_RATE_LIMIT_ANNOTATION, v)], lim(10, 50));
            assert_eq!(l, lim(10, 50), "{v:?}: the node default stays");
            assert_eq!(w.len(), 1);
        }
        let (l, w) = run(
            &[
                (SYN_RATE_LIMIT_ANNOTATION, "100"),
                (SYN_RATE_LIMIT_BURST_ANNOTATION, "0"),
            ],
            None,
        );
        assert_eq!(l, lim(100, 500), "a bad burst keeps the default burst");
        assert_eq!(w.len(), 1);
        let (l, w) = run(&[(SYN_RATE_LIMIT_BURST_ANNOTATION, "5")], None);
        assert_eq!(l, None);
        assert!(w[0].contains("sets no limit"), "{w:?}");
    }

    #[test]
    fn huge_rates_clamp_the_default_burst() {
        assert_eq!(
            run(&[(SYN_RATE_LIMIT_ANNOTATION, "1000000")], None).0,
            lim(1_000_000, 1_000_000)
        );
    }
}
