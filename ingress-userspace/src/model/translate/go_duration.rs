//! Go's `time.ParseDuration` text, for the ConfigMap keys ingress-nginx reads with it
//! (`proxy-protocol-header-timeout`): a sequence of decimal numbers, each with an optional
//! fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), as `300ms` or `1h15m30.5s`;
//! `0` alone is the only number without a unit. Unlike nginx's durations, a bare number such as
//! `5` is not one.

use std::time::Duration;

/// A Go duration of at least zero; `None` for text Go rejects, for a negative duration, and
/// for one past `Duration` (callers range-check).
pub fn parse(v: &str) -> Option<Duration> {
    let v = v.strip_prefix('+').unwrap_or(v);
    if v == "0" {
        return Some(Duration::ZERO);
    }
    if v.is_empty() || v.starts_with('-') {
        return None;
    }
    let mut rest = v;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let whole_len = digits(rest);
        let (whole, after) = rest.split_at(whole_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => f.split_at(digits(f)),
            None => ("", after),
        };
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        // The fraction's digits past nanoseconds add nothing (Go rounds down too).
        let mut frac_ns: u128 = 0;
        let mut place = scale;
        for d in frac.bytes() {
            place /= 10;
            frac_ns += u128::from(d - b'0') * place;
        }
        total_ns = total_ns.checked_add(whole.checked_mul(scale)?.checked_add(frac_ns)?)?;
        rest = next;
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (total_ns % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's `time.ParseDuration` examples and edge cases.
    #[test]
    fn reads_go_durations() {
        for (text, want) in [
            ("5s", Duration::from_secs(5)),
            ("300ms", Duration::from_millis(300)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("1h15m30.5s", Duration::from_millis(4_530_500)),
            ("2us", Duration::from_micros(2)),
            ("2µs", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("+1m", Duration::from_secs(60)),
        ] {
            assert_eq!(parse(text), Some(want), "{text}");
        }
        for bad in ["", "5", "s", "5 s", "-5s", "5d", "1.s.", "5S", "1e3s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
