//! ingress-nginx's redirect and host annotations: `permanent-redirect` (+`-code`),
//! `temporal-redirect` (+`-code`), `from-to-www-redirect` and `server-alias`
//! (annotations reference, "Permanent Redirect", "Temporal Redirect", "Redirect from/to www",
//! "Server Alias"; internal/ingress/annotations/redirect).

use super::annotations::Reader;
use crate::model::{
    Redirect, RedirectTo, RoutePolicy,
    nginx_var::{NginxString, Var, VarSource},
};

/// Every variable as one word, to check a redirect URL's shape.
struct Placeholder;

impl VarSource for Placeholder {
    fn push(&self, _: &Var, out: &mut String) {
        out.push('x');
    }
}

/// `permanent-redirect` without `permanent-redirect-code`.
pub const PERMANENT_REDIRECT_CODE: u16 = 301;
/// `temporal-redirect` without `temporal-redirect-code`.
pub const TEMPORAL_REDIRECT_CODE: u16 = 302;
/// The status of the from/to-www redirect: the ConfigMap's `http-redirect-code`, 308 by
/// default (nginx.tmpl `return {{ $all.Cfg.HTTPRedirectCode }} $redirect_to;`).
pub const FROM_TO_WWW_CODE: u16 = 308;
/// Codes ingress-nginx accepts for `permanent-redirect-code` (`http.StatusMultipleChoices`
/// to `http.StatusPermanentRedirect`); others fall back to the default code.
pub const REDIRECT_CODES: std::ops::RangeInclusive<u16> = 300..=308;
/// Codes ingress-nginx accepts for `temporal-redirect-code` (up to
/// `http.StatusTemporaryRedirect`: 308 is permanent); others fall back to 302.
pub const TEMPORAL_REDIRECT_CODES: std::ops::RangeInclusive<u16> = 300..=307;

/// What the host annotations say about the Ingress's hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOptions {
    /// `server-alias`: more names for every host of the Ingress's rules.
    pub aliases: Vec<String>,
    /// `from-to-www-redirect`: `www.<host>` redirects to `<host>` and the other way round.
    pub from_to_www: bool,
}

/// Reads the redirect annotations into `policy.redirect` and returns the host options.
/// `temporal-redirect` wins over `permanent-redirect`, as in ingress-nginx's parser.
pub(super) fn parse(r: &mut Reader<'_>, policy: &mut RoutePolicy) -> HostOptions {
    // A code without its URL does nothing (ingress-nginx ignores it): said, not ignored.
    for (key, code_key) in [
        ("temporal-redirect", "temporal-redirect-code"),
        ("permanent-redirect", "permanent-redirect-code"),
    ] {
        if r.get(code_key).is_some() && r.get(key).is_none() {
            r.diags.warn(
                r.object,
                "InvalidAnnotation",
                format!("annotation {code_key} without {key} does nothing; it is ignored"),
            );
        }
    }
    for (key, code_key, default, codes) in [
        (
            "temporal-redirect",
            "temporal-redirect-code",
            TEMPORAL_REDIRECT_CODE,
            TEMPORAL_REDIRECT_CODES,
        ),
        (
            "permanent-redirect",
            "permanent-redirect-code",
            PERMANENT_REDIRECT_CODE,
            REDIRECT_CODES,
        ),
    ] {
        let Some(url) = r.get(key).map(str::to_string) else {
            continue;
        };
        // nginx expands the URL's variables (`return 301 https://a.example$request_uri`).
        let parsed = match NginxString::parse(&url) {
            Ok(p) => p,
            Err(e) => {
                r.bad(
                    key,
                    &url,
                    &format!("a URL whose variables nginx knows ({e})"),
                );
                break;
            }
        };
        // Variables stand for a word here.
        let shape = parsed.expand(&Placeholder);
        let (valid, expected) = if key == "temporal-redirect" {
            // ingress-nginx's isValidURL: an absolute http or https URL.
            let absolute = http::Uri::try_from(shape).is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
            });
            (absolute, "an absolute http(s) URL")
        } else {
            // `permanent-redirect` is only checked against parser.URLIsValidRegex: a relative
            // `/new-location` is fine (nginx's `absolute_redirect` completes it unless
            // `relative-redirects`, e2e annotations/relativeredirects.go).
            (url_chars(&shape), "a URL (letters, digits and -._~/:,?&=)")
        };
        if !valid {
            // ingress-nginx's parser then fails as a whole: no redirect at all, even when
            // the other redirect annotation is valid.
            r.bad(key, &url, expected);
            break;
        }
        let status = match r.get(code_key).map(str::to_string) {
            None => default,
            Some(v) => match v.parse::<u16>() {
                Ok(c) if codes.contains(&c) => c,
                _ => {
                    let expected =
                        format!("a redirect code from {} to {}", codes.start(), codes.end());
                    r.bad(code_key, &v, &expected);
                    default
                }
            },
        };
        policy.redirect = Some(Redirect {
            to: RedirectTo::Url(parsed),
            status,
        });
        break;
    }
    let mut aliases = Vec::new();
    if let Some(v) = r.get("server-alias").map(str::to_string) {
        for a in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            // A name no request can carry would be kept in silence otherwise.
            match super::ingress::normalize_host(a) {
                Ok(h) => aliases.push(h),
                Err(_) => r.bad(
                    "server-alias",
                    a,
                    "host names or `*.` wildcards, comma-separated (this one is ignored)",
                ),
            }
        }
    }
    HostOptions {
        aliases,
        from_to_www: r.bool("from-to-www-redirect").unwrap_or(false),
    }
}

/// ingress-nginx's `parser.URLIsValidRegex`: non-empty, of letters, digits and `-._~/:,?&=`.
fn url_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/:,?&=".contains(&b))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{ObjectKind, ObjectRef, translate::annotations};

    fn parse_map(pairs: &[(&str, &str)]) -> (annotations::IngressOptions, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("xdp-ingress.dev/{k}"), v.to_string()))
            .collect();
        let mut d = super::super::diagnostics::Diagnostics::default();
        let o = annotations::parse(
            Some(&map),
            &ObjectRef::new(ObjectKind::Ingress, "d", "i"),
            &mut d,
        );
        (o, d.0.into_iter().map(|d| d.reason).collect())
    }

    fn redirect(url: &str, status: u16) -> Option<Redirect> {
        Some(Redirect {
            to: RedirectTo::Url(NginxString::parse(url).unwrap()),
            status,
        })
    }

    #[test]
    fn codes_default_and_fall_back_as_ingress_nginx() {
        // annotations.md: permanent-redirect defaults to 301, temporal-redirect to 302.
        let (o, w) = parse_map(&[("permanent-redirect", "https://www.google.com")]);
        assert!(w.is_empty());
        assert_eq!(o.policy.redirect, redirect("https://www.google.com", 301));
        let (o, _) = parse_map(&[
            ("permanent-redirect", "https://a.example"),
            ("permanent-redirect-code", "308"),
        ]);
        assert_eq!(o.policy.redirect, redirect("https://a.example", 308));
        let (o, _) = parse_map(&[("temporal-redirect", "https://a.example/x")]);
        // A code alone redirects nothing, and says so.
        let (o2, w) = parse_map(&[("permanent-redirect-code", "308")]);
        assert_eq!(w, ["InvalidAnnotation"]);
        assert_eq!(o2.policy.redirect, None);
        assert_eq!(o.policy.redirect, redirect("https://a.example/x", 302));
        let (o, w) = parse_map(&[
            ("temporal-redirect", "https://a.example/x"),
            ("temporal-redirect-code", "404"),
            ("permanent-redirect", "https://b.example"),
        ]);
        assert_eq!(w, ["InvalidAnnotation"]);
        assert_eq!(o.policy.redirect, redirect("https://a.example/x", 302));
        // 308 is not a temporal redirect: 302 (redirect.go accepts 300 to 307).
        let (o, w) = parse_map(&[
            ("temporal-redirect", "https://a.example/t"),
            ("temporal-redirect-code", "308"),
        ]);
        assert_eq!(w, ["InvalidAnnotation"]);
        assert_eq!(o.policy.redirect, redirect("https://a.example/t", 302));
        let (o, _) = parse_map(&[
            ("temporal-redirect", "https://a.example/t"),
            ("temporal-redirect-code", "307"),
        ]);
        assert_eq!(o.policy.redirect, redirect("https://a.example/t", 307));
        // An invalid temporal-redirect voids the redirect annotations, as the parser fails.
        let (o, w) = parse_map(&[
            ("temporal-redirect", "/relative"),
            ("permanent-redirect", "https://b.example"),
        ]);
        assert_eq!(w, ["InvalidAnnotation"]);
        assert_eq!(o.policy.redirect, None);
        // nginx variables are expanded per request; an unknown one is an error.
        for url in [
            "https://a.example$request_uri",
            "https://${host}.example/$uri$is_args$args",
        ] {
            let (o, w) = parse_map(&[("permanent-redirect", url)]);
            assert!(w.is_empty(), "{url}: {w:?}");
            assert_eq!(o.policy.redirect, redirect(url, 301));
        }
        // Only the characters of a permanent-redirect are checked (URLIsValidRegex).
        for url in ["/new-location", "tcp://www.example.com"] {
            let (o, w) = parse_map(&[("permanent-redirect", url)]);
            assert!(w.is_empty(), "{url}: {w:?}");
            assert_eq!(o.policy.redirect, redirect(url, 301));
        }
        for bad in [
            "not a url",
            "https://a.example$no_such_variable",
            "$scheme_less",
        ] {
            let (o, w) = parse_map(&[("permanent-redirect", bad)]);
            assert_eq!(w, ["InvalidAnnotation"], "{bad}");
            assert_eq!(o.policy.redirect, None, "{bad}");
        }
    }

    #[test]
    fn hosts() {
        let (o, w) = parse_map(&[
            ("server-alias", "A.example.com, b.example.com"),
            ("from-to-www-redirect", "true"),
        ]);
        assert!(w.is_empty());
        assert_eq!(o.hosts.aliases, ["a.example.com", "b.example.com"]);
        assert!(o.hosts.from_to_www);
    }

    #[test]
    fn server_alias_names_that_are_not_hosts_warn() {
        let (o, w) = parse_map(&[("server-alias", "bad alias, *, *.wild.test, Ok.test")]);
        assert_eq!(w, ["InvalidAnnotation", "InvalidAnnotation"]);
        assert_eq!(o.hosts.aliases, ["*.wild.test", "ok.test"]);
    }
}
