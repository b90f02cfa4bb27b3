//! ingress-nginx cookie session affinity: `affinity: cookie`, `affinity-mode` and the
//! `session-cookie-*` annotations, parsed into [`CookieAffinity`].
//!
//! Accepted values follow ingress-nginx's annotation validators
//! (`internal/ingress/annotations/sessionaffinity`), narrowed to what a `Set-Cookie` field can
//! carry (RFC 6265 section 4.1.1): a value that would break the cookie, or add attributes to
//! it, gets a warning and the default, as ingress-nginx ignores a value its validator rejects.

use std::{ops::RangeInclusive, time::Duration};

use super::annotations::Reader;
use crate::model::{AffinityMode, CookieAffinity};

/// `session-cookie-max-age` and `session-cookie-expires`, seconds: 0 to 400 days, the cap
/// browsers apply to a cookie's lifetime (RFC 6265bis, sections 5.6.1 and 5.6.2).
pub const COOKIE_AGE_RANGE: RangeInclusive<u64> = 0..=400 * 24 * 3600;

/// The cookie name ingress-nginx uses when `session-cookie-name` is absent or invalid.
pub const DEFAULT_COOKIE_NAME: &str = "INGRESSCOOKIE";

/// Parses the affinity annotations; `None` without `affinity: cookie`. `use_regex`: the
/// Ingress has `use-regex: "true"`, where ingress-nginx warns that the cookie path must be set
/// (the default path, the rule's path, is then a regular expression).
pub(super) fn parse(r: &mut Reader<'_>, use_regex: bool) -> Option<CookieAffinity> {
    match r.get("affinity")? {
        "cookie" => {}
        v => {
            let v = v.to_string();
            r.bad("affinity", &v, "cookie");
            return None;
        }
    }
    let mode = match r.get("affinity-mode").map(str::to_string) {
        None => AffinityMode::default(),
        Some(v) if v == "balanced" => AffinityMode::Balanced,
        Some(v) if v == "persistent" => AffinityMode::Persistent,
        Some(v) => {
            r.bad("affinity-mode", &v, "balanced or persistent");
            AffinityMode::default()
        }
    };
    let name = checked(
        r,
        "session-cookie-name",
        is_token,
        "a cookie name (RFC 6265 token)",
    )
    .unwrap_or_else(|| DEFAULT_COOKIE_NAME.to_string());
    let path = checked(
        r,
        "session-cookie-path",
        |v| v.starts_with('/') && is_attribute_value(v),
        "a path starting with / without ';' or control characters",
    );
    if use_regex && path.is_none() {
        let object = r.object;
        r.diags.warn(
            object,
            "AffinityCookiePathUnset",
            "session-cookie-path should be set when use-regex is true: the cookie's Path is \
             the rule's path, a regular expression browsers match literally"
                .to_string(),
        );
    }
    let domain = checked(r, "session-cookie-domain", is_domain, "a domain name");
    let same_site = checked(
        r,
        "session-cookie-samesite",
        |v| ["none", "lax", "strict"].contains(&v.to_ascii_lowercase().as_str()),
        "None, Lax or Strict",
    );
    Some(CookieAffinity {
        name,
        mode,
        max_age: seconds(r, "session-cookie-max-age"),
        expires: seconds(r, "session-cookie-expires"),
        path,
        domain,
        same_site,
        conditional_same_site_none: r
            .bool("session-cookie-conditional-samesite-none")
            .unwrap_or(false),
        secure: r.bool("session-cookie-secure").unwrap_or(false),
        change_on_failure: r.bool("session-cookie-change-on-failure").unwrap_or(false),
    })
}

/// The annotation's value if `ok` accepts it, else a warning and `None`.
fn checked(
    r: &mut Reader<'_>,
    key: &str,
    ok: impl Fn(&str) -> bool,
    expected: &str,
) -> Option<String> {
    let v = r.get(key)?.to_string();
    if ok(&v) {
        Some(v)
    } else {
        r.bad(key, &v, expected);
        None
    }
}

/// A number of seconds within [`COOKIE_AGE_RANGE`], else a warning and `None`.
fn seconds(r: &mut Reader<'_>, key: &str) -> Option<Duration> {
    let v = r.get(key)?.to_string();
    match super::annotations::saturating_number(&v) {
        Some(n) if COOKIE_AGE_RANGE.contains(&n) => Some(Duration::from_secs(n)),
        Some(_) => {
            let range = format!(
                "{} to {} seconds",
                COOKIE_AGE_RANGE.start(),
                COOKIE_AGE_RANGE.end()
            );
            r.out_of_range(key, &v, &range);
            None
        }
        None => {
            r.bad(key, &v, "a number of seconds");
            None
        }
    }
}

/// RFC 6265 `cookie-name`: an RFC 2616 token (visible ASCII but separators).
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// RFC 6265 `path-value` and the like: visible ASCII but `;` (which would start another
/// attribute).
fn is_attribute_value(v: &str) -> bool {
    v.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

/// A host name as RFC 6265 section 4.1.2.3 `Domain` takes it (a leading dot is ignored by
/// browsers and allowed here).
fn is_domain(v: &str) -> bool {
    let v = v.strip_prefix('.').unwrap_or(v);
    !v.is_empty()
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{ObjectKind, ObjectRef, translate::diagnostics::Diagnostics};

    /// Parses `pairs` (keys without prefix) as an Ingress's annotations; the affinity and
    /// the warnings as `reason: message`.
    fn parse_pairs(
        pairs: &[(&str, &str)],
        use_regex: bool,
    ) -> (Option<CookieAffinity>, Vec<String>) {
        let mut map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        if use_regex {
            map.insert("xdp-ingress.dev/use-regex".into(), "true".into());
        }
        let object = ObjectRef::new(ObjectKind::Ingress, "d", "i");
        let mut diags = Diagnostics::default();
        let a = super::super::annotations::parse(Some(&map), &object, &mut diags).affinity;
        let d = diags
            .0
            .into_iter()
            .map(|d| format!("{}: {}", d.reason, d.message))
            .collect();
        (a.map(|a| *a), d)
    }

    #[test]
    fn every_annotation_is_carried() {
        let (a, d) = parse_pairs(
            &[
                ("affinity", "cookie"),
                ("affinity-mode", "persistent"),
                ("session-cookie-name", "route"),
                ("session-cookie-expires", "172800"),
                ("session-cookie-max-age", "3600"),
                ("session-cookie-path", "/app"),
                ("session-cookie-domain", ".example.com"),
                ("session-cookie-samesite", "none"),
                ("session-cookie-conditional-samesite-none", "true"),
                ("session-cookie-secure", "true"),
                ("session-cookie-change-on-failure", "true"),
            ],
            true,
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            a,
            Some(CookieAffinity {
                name: "route".into(),
                mode: AffinityMode::Persistent,
                max_age: Some(Duration::from_secs(3600)),
                expires: Some(Duration::from_secs(172800)),
                path: Some("/app".into()),
                domain: Some(".example.com".into()),
                same_site: Some("none".into()),
                conditional_same_site_none: true,
                secure: true,
                change_on_failure: true,
            })
        );
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let (a, d) = parse_pairs(&[("affinity", "cookie")], false);
        assert!(d.is_empty(), "{d:?}");
        let a = a.unwrap();
        assert_eq!(a.name, "INGRESSCOOKIE");
        assert_eq!(a.mode, AffinityMode::Balanced);
        assert_eq!(
            (a.max_age, a.expires, a.path, a.domain),
            (None, None, None, None)
        );
        assert!(!a.secure && !a.change_on_failure && !a.conditional_same_site_none);
        assert_eq!(
            parse_pairs(&[("affinity-mode", "persistent")], false),
            (None, vec![])
        );
    }

    #[test]
    fn bad_values_warn_and_default() {
        for (key, bad) in [
            ("affinity-mode", "sticky"),
            ("session-cookie-name", "a;b"),
            ("session-cookie-name", "a b"),
            ("session-cookie-expires", "-5"),
            ("session-cookie-expires", "soon"),
            ("session-cookie-path", "/a; Domain=evil.test"),
            ("session-cookie-path", "app"),
            ("session-cookie-domain", "evil.test; Secure"),
            ("session-cookie-domain", "a..b"),
            ("session-cookie-samesite", "Sometimes"),
            ("session-cookie-change-on-failure", "yes"),
            ("session-cookie-conditional-samesite-none", "maybe"),
        ] {
            let (a, d) = parse_pairs(&[("affinity", "cookie"), (key, bad)], false);
            assert_eq!(d.len(), 1, "{key}: {bad}: {d:?}");
            assert!(d[0].contains(key), "{d:?}");
            let (default, _) = parse_pairs(&[("affinity", "cookie")], false);
            assert_eq!(a, default, "{key}: {bad} leaves the default");
        }
        let (_, d) = parse_pairs(
            &[
                ("affinity", "cookie"),
                ("session-cookie-expires", "34560001"),
            ],
            false,
        );
        assert!(
            d[0].starts_with("AnnotationOutOfRange") && d[0].contains("0 to 34560000"),
            "{d:?}"
        );
    }

    #[test]
    fn use_regex_without_a_cookie_path_warns() {
        let (a, d) = parse_pairs(&[("affinity", "cookie")], true);
        assert!(a.is_some());
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("AffinityCookiePathUnset"), "{d:?}");
        let (_, d) = parse_pairs(
            &[("affinity", "cookie"), ("session-cookie-path", "/")],
            true,
        );
        assert!(d.is_empty(), "{d:?}");
    }
}
