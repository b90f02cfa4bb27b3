//! `HTTPRouteTimeouts` (Gateway API v1, `rules[].timeouts`) and the Gateway API duration
//! format (GEP-2257: one to four `<1-5 digits><unit>` parts, units `h`, `m`, `s`, `ms`, as in
//! `1h30m` or `500ms`). A zero duration disables its timeout (spec: "SHOULD disable").

use std::time::Duration;

/// A rule's timeouts; `None`: unset or zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleTimeouts {
    /// `request`: the whole answer, retries included.
    pub request: Option<Duration>,
    /// `backendRequest`: one request to a backend, until its response.
    pub backend_request: Option<Duration>,
}

/// Reads `request` and `backendRequest` as written, or says which one is not a duration.
pub fn rule(request: Option<&str>, backend_request: Option<&str>) -> Result<RuleTimeouts, String> {
    let one = |field: &str, v: Option<&str>| -> Result<Option<Duration>, String> {
        v.map(|s| duration(s).map_err(|e| format!("timeouts.{field} {s:?}: {e}")))
            .transpose()
            .map(|d| d.filter(|d| !d.is_zero()))
    };
    Ok(RuleTimeouts {
        request: one("request", request)?,
        backend_request: one("backendRequest", backend_request)?,
    })
}

/// A GEP-2257 duration.
pub fn duration(s: &str) -> Result<Duration, String> {
    let mut rest = s;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err("expected 1 to 5 digits before each unit".into());
        }
        let n: u64 = rest[..digits].parse().map_err(|e| format!("{e}"))?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err("each number needs a unit: h, m, s or ms".into());
        };
        rest = &rest[len..];
        total += unit * u32::try_from(n).map_err(|e| format!("{e}"))?;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err("expected 1 to 4 number-unit parts".into());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GEP-2257's examples, valid and not.
    #[test]
    fn gep_2257_durations() {
        let ms = Duration::from_millis;
        for (s, want) in [
            ("0h", ms(0)),
            ("0s", ms(0)),
            ("0h0m0s", ms(0)),
            ("1h", ms(3_600_000)),
            ("30m", ms(1_800_000)),
            ("10s", ms(10_000)),
            ("500ms", ms(500)),
            ("2h45m", ms(9_900_000)),
            ("1h30m10s500ms", ms(5_410_500)),
            ("99999s", ms(99_999_000)),
        ] {
            assert_eq!(duration(s), Ok(want), "{s}");
        }
        for s in [
            "",
            "1",
            "1d",
            "-1s",
            "1.5s",
            "100000s",
            "1h1m1s1ms1h",
            "1s ",
            "s",
        ] {
            assert!(duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn zero_disables() {
        assert_eq!(
            rule(Some("0s"), Some("500ms")),
            Ok(RuleTimeouts {
                request: None,
                backend_request: Some(Duration::from_millis(500)),
            })
        );
        assert!(rule(Some("1x"), None).is_err());
    }
}
