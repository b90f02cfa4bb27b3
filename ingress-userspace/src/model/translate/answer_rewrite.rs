//! ingress-nginx's `proxy-redirect-from` / `proxy-redirect-to`, `proxy-cookie-domain` and
//! `proxy-cookie-path` annotations (annotations reference, "Proxy redirect", "Proxy cookie
//! domain", "Proxy cookie path"; `annotations/proxy`): text nginx replaces in the pod's
//! `Location` / `Refresh` (`proxy_redirect`) and `Set-Cookie` (`proxy_cookie_domain`,
//! `proxy_cookie_path`) headers, into [`AnswerRewrite`]. All `off` by default.
//!
//! Values as ingress-nginx validates them (`URLIsValidRegex` with spaces removed for the
//! redirect and the cookie path, `cookieDomainRegex` for the cookie domain); one it refuses is
//! ignored with a Warning (ingress-nginx falls back on the default, `off`). As its template
//! renders them: `proxy-redirect-from: off` or `default` wins over `-to` (`default`, nginx's
//! replacement of `proxy_pass`'s URL `http://upstream_balancer/` by `/`, matches nothing a pod
//! sends, so it is `off` too), and without `-to` (or with `-to: off`) nothing is rewritten.
//! A value starting with `~` would be a regular expression to nginx: not supported here, it is
//! ignored with a Warning.

use super::annotations::Reader;
use crate::model::{AnswerRewrite, RoutePolicy, TextReplace};

/// ingress-nginx's `URLIsValidRegex` characters (`alphaNumericChars` + `urlEnabledChars`).
fn url_chars(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/:,?&=".contains(&b))
}

/// ingress-nginx's `cookieDomainChars`.
fn domain_chars(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/:".contains(&b))
}

/// `off`, or `FROM TO` (two whitespace-separated tokens of `chars`, `FROM` not a regular
/// expression); `Err` with what was expected.
fn pair(v: &str, chars: fn(&str) -> bool) -> Result<Option<TextReplace>, &'static str> {
    const EXPECTED: &str = "\"off\" or \"FROM TO\" (no regular expression)";
    if v == "off" {
        return Ok(None);
    }
    match v.split_whitespace().collect::<Vec<_>>()[..] {
        [from, to] if chars(from) && chars(to) && !from.starts_with('~') => Ok(Some(TextReplace {
            from: from.to_string(),
            to: to.to_string(),
        })),
        _ => Err(EXPECTED),
    }
}

/// The four keys, annotations and ConfigMap keys alike.
pub const KEYS: [&str; 4] = [
    "proxy-redirect-from",
    "proxy-redirect-to",
    "proxy-cookie-domain",
    "proxy-cookie-path",
];

/// Checks a value of one of [`KEYS`] as ingress-nginx's validators do; `Err` with what was
/// expected.
pub fn check(key: &str, v: &str) -> Result<(), &'static str> {
    match key {
        "proxy-redirect-from" if url_chars(v) && !v.starts_with('~') => Ok(()),
        "proxy-redirect-from" => Err("a URL without spaces (no regular expression)"),
        "proxy-redirect-to" if url_chars(v) => Ok(()),
        "proxy-redirect-to" => Err("a URL without spaces"),
        "proxy-cookie-domain" => pair(v, domain_chars).map(drop),
        _ => pair(v, url_chars).map(drop),
    }
}

/// Reads the four annotations into `policy.answer_rewrite`; each one missing or invalid takes
/// the ConfigMap key of its name (ingress-nginx's `annotations/proxy` parser falls back on
/// `defaults.Backend` per key).
pub(super) fn parse(r: &mut Reader<'_>, policy: &mut RoutePolicy) {
    let mut out = AnswerRewrite::default();
    let get = |r: &mut Reader<'_>, k: &str| {
        if let Some(v) = r.get(k).filter(|v| !v.is_empty()).map(str::to_string) {
            match check(k, &v) {
                Ok(()) => return Some(v),
                Err(expected) => r.bad(k, &v, expected),
            }
        }
        r.default_of(k).filter(|v| !v.is_empty())
    };
    let from = get(r, "proxy-redirect-from");
    let to = get(r, "proxy-redirect-to");
    match (from, to) {
        (Some(f), _) if f == "off" || f == "default" => {}
        (Some(f), Some(t)) if t != "off" => out.redirect = Some(TextReplace { from: f, to: t }),
        _ => {}
    }
    for (key, chars, field) in [
        (
            "proxy-cookie-domain",
            domain_chars as fn(&str) -> bool,
            &mut out.cookie_domain,
        ),
        ("proxy-cookie-path", url_chars, &mut out.cookie_path),
    ] {
        let Some(v) = get(r, key) else { continue };
        *field = pair(&v, chars).ok().flatten();
    }
    if let Some(d) = &mut out.cookie_domain {
        // nginx drops a leading `.` of the domain it looks for (`ngx_http_proxy_cookie_domain`).
        d.from = d.from.trim_start_matches('.').to_string();
    }
    policy.answer_rewrite = out;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{ObjectKind, ObjectRef, translate::diagnostics::Diagnostics};

    fn run(pairs: &[(&str, &str)]) -> (AnswerRewrite, usize) {
        let a: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        let object = ObjectRef::new(ObjectKind::Ingress, "default", "web");
        let mut d = Diagnostics::default();
        let mut p = RoutePolicy::default();
        parse(&mut Reader::new(Some(&a), &object, &mut d), &mut p);
        (p.answer_rewrite, d.0.len())
    }

    fn tr(from: &str, to: &str) -> Option<TextReplace> {
        Some(TextReplace {
            from: from.into(),
            to: to.into(),
        })
    }

    /// ingress-nginx's e2e values (test/e2e/annotations/proxy.go) and its template's cases.
    #[test]
    fn values_as_ingress_nginx_renders_them() {
        let (a, n) = run(&[
            ("proxy-redirect-from", "hello.com"),
            ("proxy-redirect-to", "goodbye.com"),
            ("proxy-cookie-domain", "localhost example.org"),
            ("proxy-cookie-path", "/one/ /"),
        ]);
        assert_eq!(n, 0);
        assert_eq!(a.redirect, tr("hello.com", "goodbye.com"));
        assert_eq!(a.cookie_domain, tr("localhost", "example.org"));
        assert_eq!(a.cookie_path, tr("/one/", "/"));
        for from in ["off", "default"] {
            let (a, n) = run(&[
                ("proxy-redirect-from", from),
                ("proxy-redirect-to", "goodbye.com"),
            ]);
            assert_eq!((a.redirect, n), (None, 0), "{from}");
        }
        assert_eq!(
            run(&[("proxy-redirect-from", "a.com")]),
            (AnswerRewrite::default(), 0)
        );
        assert_eq!(
            run(&[
                ("proxy-redirect-from", "a.com"),
                ("proxy-redirect-to", "off")
            ]),
            (AnswerRewrite::default(), 0)
        );
        let (a, n) = run(&[
            ("proxy-cookie-domain", ".Example.com .b.org"),
            ("proxy-cookie-path", "off"),
        ]);
        assert_eq!(
            (a.cookie_domain, a.cookie_path, n),
            (tr("Example.com", ".b.org"), None, 0)
        );
    }

    #[test]
    fn invalid_values_warn_and_stay_off() {
        for pairs in [
            &[
                ("proxy-redirect-from", "~^http://a"),
                ("proxy-redirect-to", "/"),
            ][..],
            &[("proxy-redirect-from", "a b"), ("proxy-redirect-to", "/")],
            &[
                ("proxy-redirect-from", "a"),
                ("proxy-redirect-to", "$host/"),
            ],
            &[("proxy-cookie-domain", "localhost")],
            &[("proxy-cookie-domain", "a b c")],
            &[("proxy-cookie-domain", "~a b")],
            &[("proxy-cookie-path", "/one/;x /")],
        ] {
            assert_eq!(run(pairs), (AnswerRewrite::default(), 1), "{pairs:?}");
        }
    }
}
