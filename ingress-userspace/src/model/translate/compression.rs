//! The controller ConfigMap's compression keys: `use-gzip`, `gzip-level`, `gzip-min-length`,
//! `gzip-types`, `gzip-disable`, `enable-brotli`, `brotli-level`, `brotli-min-length`,
//! `brotli-types` (ingress-nginx's configmap.md; defaults from its config.go). A value that
//! does not parse is reported and its default kept; nginx itself would refuse such a
//! configuration at reload and keep serving the previous one.

use super::next_upstream::Invalid;
use crate::model::compression::{
    BROTLI_LEVEL, BROTLI_MIN_LENGTH, BROTLI_TYPES, Codec, Compression, GZIP_LEVEL, GZIP_MIN_LENGTH,
    GZIP_TYPES, MimeTypes, UserAgentMatch,
};

/// Reads the keys with `get` (trimmed values). Levels outside nginx's ranges (gzip 1-9,
/// brotli 0-11), lengths that are not whole numbers, empty type lists and a `gzip-disable`
/// that is not a regular expression are returned as invalid, their default kept.
pub fn parse(get: impl Fn(&str) -> Option<String>) -> (Compression, Vec<Invalid>) {
    let mut invalid = Vec::new();
    let mut bad = |key, value: String, expected| {
        invalid.push(Invalid {
            key,
            value,
            expected,
        })
    };
    let mut on = |key: &'static str| {
        let v = get(key)?;
        let b = super::annotations::parse_bool(&v);
        if b.is_none() {
            bad(key, v, "true or false");
        }
        b
    };
    let (use_gzip, use_brotli) = (on("use-gzip"), on("enable-brotli"));
    let mut codec = |keys: [&'static str; 3],
                     levels: std::ops::RangeInclusive<u32>,
                     defaults: (u32, u64, &str),
                     always: Option<&str>| {
        let [level_key, length_key, types_key] = keys;
        let level = match get(level_key) {
            None => defaults.0,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if levels.contains(&n) => n,
                _ => {
                    let expected = if *levels.start() == 0 {
                        "a level from 0 to 11"
                    } else {
                        "a level from 1 to 9"
                    };
                    bad(level_key, v, expected);
                    defaults.0
                }
            },
        };
        let min_length = match get(length_key) {
            None => defaults.1,
            Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
                bad(length_key, v, "a whole number of bytes");
                defaults.1
            }),
        };
        let types = match get(types_key) {
            Some(v) if !v.is_empty() => MimeTypes::parse(&v, always),
            Some(v) => {
                bad(types_key, v, "a space-separated list of MIME types");
                MimeTypes::parse(defaults.2, always)
            }
            None => MimeTypes::parse(defaults.2, always),
        };
        Codec {
            level,
            min_length,
            types,
        }
    };
    let gzip = codec(
        ["gzip-level", "gzip-min-length", "gzip-types"],
        1..=9,
        (GZIP_LEVEL, GZIP_MIN_LENGTH, GZIP_TYPES),
        // nginx's gzip_types: "Responses with the “text/html” type are always compressed."
        Some("text/html"),
    );
    let brotli = codec(
        ["brotli-level", "brotli-min-length", "brotli-types"],
        0..=11,
        (BROTLI_LEVEL, BROTLI_MIN_LENGTH, BROTLI_TYPES),
        // ngx_brotli's brotli_types: "text/html" is always compressed too.
        Some("text/html"),
    );
    let gzip_disable = match get("gzip-disable") {
        None => None,
        Some(v) if v.is_empty() => None,
        // ingress-nginx writes the value as one quoted argument: one mask or one expression.
        Some(v) if v == "msie6" => Some(UserAgentMatch::Msie6),
        Some(v) => match regex::RegexBuilder::new(&v).case_insensitive(true).build() {
            Ok(_) => Some(UserAgentMatch::Regex(v)),
            Err(_) => {
                bad("gzip-disable", v, "msie6 or a regular expression");
                None
            }
        },
    };
    let out = Compression {
        gzip: (use_gzip == Some(true)).then_some(gzip),
        brotli: (use_brotli == Some(true)).then_some(brotli),
        gzip_disable,
    };
    (out, invalid)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parsed(kv: &[(&str, &str)]) -> (Compression, Vec<&'static str>) {
        let m: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (c, invalid) = parse(|k| m.get(k).cloned());
        (c, invalid.into_iter().map(|i| i.key).collect())
    }

    #[test]
    fn off_by_default_with_ingress_nginx_defaults_when_on() {
        let (c, bad) = parsed(&[]);
        assert!(!c.enabled() && bad.is_empty());
        let (c, bad) = parsed(&[("use-gzip", "true"), ("enable-brotli", "true")]);
        assert!(bad.is_empty());
        let gzip = c.gzip.expect("gzip on");
        assert_eq!((gzip.level, gzip.min_length), (1, 256));
        for t in ["text/html", "application/json", "text/css", "Text/Plain"] {
            assert!(gzip.types.matches(Some(t)), "{t}");
        }
        assert!(gzip.types.matches(Some("application/json; charset=utf-8")));
        assert!(!gzip.types.matches(Some("image/png")));
        assert!(!gzip.types.matches(None));
        assert!(
            !gzip.types.matches(Some(" ")),
            "an empty Content-Type is no type"
        );
        let brotli = c.brotli.expect("brotli on");
        assert_eq!((brotli.level, brotli.min_length), (4, 20));
        assert!(brotli.types.matches(Some("application/xml+rss")));
    }

    #[test]
    fn types_always_include_text_html_and_star_is_any() {
        let (c, _) = parsed(&[
            ("use-gzip", "true"),
            ("gzip-types", "application/octet-stream"),
        ]);
        let t = c.gzip.expect("on").types;
        assert!(t.matches(Some("application/octet-stream")));
        assert!(t.matches(Some("text/html; charset=utf-8")));
        assert!(!t.matches(Some("application/xml")));
        let (c, _) = parsed(&[("use-gzip", "true"), ("gzip-types", "text/css *")]);
        assert_eq!(c.gzip.expect("on").types, MimeTypes::Any);
    }

    #[test]
    fn bad_values_are_reported_and_defaulted() {
        let (c, bad) = parsed(&[
            ("use-gzip", "true"),
            ("gzip-level", "10"),
            ("gzip-min-length", "-1"),
            ("gzip-types", ""),
            ("gzip-disable", "MSIE ["),
            ("enable-brotli", "yes please"),
            ("brotli-level", "12"),
        ]);
        assert_eq!(
            bad,
            [
                "enable-brotli",
                "gzip-level",
                "gzip-min-length",
                "gzip-types",
                "brotli-level",
                "gzip-disable"
            ]
        );
        let gzip = c.gzip.expect("on");
        assert_eq!((gzip.level, gzip.min_length), (1, 256));
        assert!(gzip.types.matches(Some("application/json")));
        assert!(c.brotli.is_none() && c.gzip_disable.is_none());
    }

    #[test]
    fn gzip_disable_is_the_msie6_mask_or_one_expression() {
        let (c, _) = parsed(&[("gzip-disable", "msie6")]);
        assert_eq!(c.gzip_disable, Some(UserAgentMatch::Msie6));
        let (c, _) = parsed(&[("gzip-disable", "curl/.* Wget")]);
        assert_eq!(
            c.gzip_disable,
            Some(UserAgentMatch::Regex("curl/.* Wget".into()))
        );
    }
}
