//! The source values of an nginx `map` on a request header, as ingress-nginx writes the
//! controller ConfigMap's `block-user-agents` and `block-referers` into nginx.tmpl's
//! `map $http_user_agent $block_ua` / `map $http_referer $block_ref` (each entry `ENTRY 1;`,
//! `default 0`), with nginx's meaning of an entry (ngx_http_map_module):
//! - `~REGEX`: a case-sensitive regular expression, `~*REGEX` a case-insensitive one, matched
//!   anywhere in the value (PCRE there, the `regex` crate's syntax here: an entry it does not
//!   take, a lookaround or a backreference, is an error);
//! - anything else: the whole value, ignoring case (nginx's map hash keys are lower case);
//!   a leading `\` is dropped (nginx's escape for an entry that would otherwise read as a
//!   regex or a parameter).
//!
//! A request without the header matches as the empty value (nginx's empty variable), so
//! `~^$` matches a request that sends none. Several fields are one value joined with `, `
//! (nginx 1.23's `$http_` variables).

use regex::bytes::{Regex, RegexBuilder};

/// One entry, parsed (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapEntry {
    /// The whole value, ignoring ASCII case; held in lower case.
    Exact(String),
    /// `~` (`case_insensitive: false`) or `~*`: the expression as written after the prefix.
    Regex {
        pattern: String,
        case_insensitive: bool,
    },
}

impl MapEntry {
    /// Parses one (trimmed, non-empty) entry; an expression must compile.
    pub fn parse(entry: &str) -> Result<MapEntry, regex::Error> {
        let (pattern, case_insensitive) = if let Some(p) = entry.strip_prefix("~*") {
            (p, true)
        } else if let Some(p) = entry.strip_prefix('~') {
            (p, false)
        } else {
            let plain = entry.strip_prefix('\\').unwrap_or(entry);
            return Ok(MapEntry::Exact(plain.to_ascii_lowercase()));
        };
        let e = MapEntry::Regex {
            pattern: pattern.to_string(),
            case_insensitive,
        };
        e.compile()?;
        Ok(e)
    }

    fn compile(&self) -> Result<Option<Regex>, regex::Error> {
        match self {
            MapEntry::Exact(_) => Ok(None),
            MapEntry::Regex {
                pattern,
                case_insensitive,
            } => RegexBuilder::new(pattern)
                .case_insensitive(*case_insensitive)
                // Bytes as sent: a header value need not be UTF-8.
                .unicode(false)
                .build()
                .map(Some),
        }
    }
}

/// A list of [`MapEntry`]s, ready to match header values.
#[derive(Clone, Debug, Default)]
pub struct MapMatcher {
    exact: Vec<Vec<u8>>,
    regexes: Vec<Regex>,
}

impl MapMatcher {
    /// The matcher of `entries` (an expression that does not compile, which translation
    /// already refused, is left out).
    pub fn new(entries: &[MapEntry]) -> MapMatcher {
        let mut m = MapMatcher::default();
        for e in entries {
            match e {
                MapEntry::Exact(s) => m.exact.push(s.as_bytes().to_vec()),
                _ => m.regexes.extend(e.compile().ok().flatten()),
            }
        }
        m
    }

    /// Whether it has no entry (matches nothing).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.regexes.is_empty()
    }

    /// Whether the value of the header of `values` (its fields, in order) matches an entry.
    pub fn matches<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut joined = Vec::new();
        for (i, v) in values.enumerate() {
            if i > 0 {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v);
        }
        self.exact.iter().any(|e| e.eq_ignore_ascii_case(&joined))
            || self.regexes.iter().any(|r| r.is_match(&joined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(entries: &[&str]) -> MapMatcher {
        let parsed: Vec<MapEntry> = entries
            .iter()
            .map(|e| MapEntry::parse(e).unwrap())
            .collect();
        MapMatcher::new(&parsed)
    }

    fn hit(m: &MapMatcher, values: &[&str]) -> bool {
        m.matches(values.iter().map(|v| v.as_bytes()))
    }

    /// ingress-nginx's e2e values (test/e2e/settings/global_access_block.go).
    #[test]
    fn entries_match_as_nginx_map_source_values() {
        let ua = matcher(&[
            "~*chrome\\/68\\.0\\.3440\\.106\\ safari\\/537\\.36",
            "AlphaBot",
        ]);
        assert!(hit(
            &ua,
            &[
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/68.0.3440.106 Safari/537.36"
            ]
        ));
        assert!(hit(&ua, &["AlphaBot"]));
        assert!(hit(&ua, &["alphabot"]), "strings ignore case");
        assert!(!hit(&ua, &["AlphaBot/2"]), "strings are the whole value");
        assert!(!hit(
            &ua,
            &[
                "Mozilla/5.0 (iPhone; CPU iPhone OS 11_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/11.0 Mobile/15E148 Safari/604.1"
            ]
        ));
        let referer = matcher(&["~*example\\.com", "qwerty"]);
        assert!(hit(&referer, &["example.com"]));
        assert!(hit(&referer, &["https://EXAMPLE.com/x"]));
        assert!(hit(&referer, &["qwerty"]));
        assert!(!hit(&referer, &["qwerty123"]));
        assert!(!hit(&referer, &[]));
        // `~` is case-sensitive; no header is the empty value; fields joined with ", ".
        let m = matcher(&["~Bot", "~^$", "a, b", "\\~x"]);
        assert!(hit(&m, &["SomeBot"]));
        assert!(!hit(&m, &["somebot"]));
        assert!(hit(&m, &[]));
        assert!(hit(&m, &["a", "b"]));
        assert!(hit(&m, &["~X"]));
        assert!(!hit(&MapMatcher::default(), &[]));
    }

    #[test]
    fn an_expression_the_regex_crate_does_not_take_is_an_error() {
        assert!(MapEntry::parse("~(?<=a)b").is_err());
        assert!(MapEntry::parse("~*(").is_err());
        assert_eq!(MapEntry::parse("Bot"), Ok(MapEntry::Exact("bot".into())));
    }
}
