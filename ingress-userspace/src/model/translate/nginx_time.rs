//! nginx's time syntax for ConfigMap keys ingress-nginx writes into nginx.conf as they are
//! (`upstream-keepalive-time` -> `keepalive_time`): nginx's "Measurement units"
//! (https://nginx.org/en/docs/syntax.html) as its `ngx_parse_time` reads them. Keys
//! ingress-nginx declares as integers (`keep-alive`, `proxy-read-timeout`...) are read by
//! [`super::annotations::parse_duration`] instead.

use std::time::Duration;

/// A time of a millisecond directive (nginx's `ngx_conf_set_msec_slot`, as `keepalive_time`):
/// parts of `M` (30 days), `w`, `d`, `h`, `m`, `s`, `ms`, each at most once and largest first,
/// written together or apart (`1h30m`, `1h 30m`); a last number without a unit is seconds
/// (`3600`). `y` is refused, as nginx refuses it for millisecond directives. `None`: not an
/// nginx time, or past `i64::MAX` milliseconds (nginx refuses those too).
pub fn parse_msec(v: &str) -> Option<Duration> {
    // The units in nginx's order; a part's unit must come after the previous part's.
    const UNITS: [(&str, u64); 6] = [
        ("M", 30 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    const MS: usize = UNITS.len();
    let max = i64::MAX.unsigned_abs();
    let bytes = v.as_bytes();
    let (mut total, mut value, mut digits) = (0u64, 0u64, false);
    // Index of the last unit used; a unit at or before it is out of order.
    let mut last: Option<usize> = None;
    let mut bare_ended = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            digits = true;
            i += 1;
            continue;
        }
        // A unit ends the number before it: its index among UNITS (MS for `ms`).
        let unit = if bytes[i..].starts_with(b"ms") {
            i += 2;
            MS
        } else if b == b' ' {
            // nginx: a space after a bare number makes it seconds, and nothing smaller may
            // follow (a unit after it is out of order).
            i += 1;
            if last.is_some_and(|l| l >= UNITS.len() - 1) || bare_ended {
                return None;
            }
            total = total.checked_add(value.checked_mul(1_000)?)?;
            value = 0;
            bare_ended = true;
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            continue;
        } else {
            i += 1;
            UNITS.iter().position(|(u, _)| u.as_bytes() == [b])?
        };
        if bare_ended || last.is_some_and(|l| l >= unit) {
            return None;
        }
        last = Some(unit);
        let scale = UNITS.get(unit).map_or(1, |(_, s)| *s);
        total = total.checked_add(value.checked_mul(scale)?)?;
        value = 0;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !digits {
        return None;
    }
    // A last bare number is seconds, whatever came before (nginx's `total + value`).
    total = total.checked_add(value.checked_mul(1_000)?)?;
    (total <= max).then(|| Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn units_alone_and_together() {
        assert_eq!(parse_msec("1h"), ms(3_600_000));
        assert_eq!(parse_msec("3600"), ms(3_600_000));
        assert_eq!(parse_msec("60s"), ms(60_000));
        assert_eq!(parse_msec("1m"), ms(60_000));
        assert_eq!(parse_msec("500ms"), ms(500));
        assert_eq!(parse_msec("1d"), ms(86_400_000));
        assert_eq!(parse_msec("2w"), ms(14 * 86_400_000));
        assert_eq!(parse_msec("1M"), ms(30 * 86_400_000));
        assert_eq!(parse_msec("1h30m"), ms(5_400_000));
        assert_eq!(parse_msec("1h 30m"), ms(5_400_000));
        assert_eq!(parse_msec("1m30"), ms(90_000));
        assert_eq!(parse_msec("1s500ms"), ms(1_500));
        assert_eq!(parse_msec("0"), ms(0));
    }

    /// What nginx's configuration test refuses: units out of order or twice, `y` in a
    /// millisecond directive, unknown units, no number, overflow.
    #[test]
    fn what_nginx_refuses() {
        for bad in [
            "",
            "h",
            "30m1h",
            "1m1m",
            "1y",
            "1x",
            "1H",
            "-1s",
            "1.5h",
            "forever",
            "1s 2m",
            "99999999999999999999",
        ] {
            assert_eq!(parse_msec(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_msec("9223372036854775807ms"),
            ms(i64::MAX.unsigned_abs())
        );
        assert_eq!(parse_msec("9223372036854775808ms"), None);
    }
}
