//! ingress-nginx's CORS annotations (`enable-cors`, `cors-allow-origin`, `-methods`,
//! `-headers`, `-credentials`, `-expose-headers`, `-max-age`) -> [`Cors`].
//!
//! Defaults and accepted values are those of ingress-nginx's `annotations/cors` parser: a value
//! outside its pattern gets a warning and the default (so no annotation can put arbitrary bytes
//! into a response header). `cors-allow-origin` is a comma-separated list: `*` anywhere makes it
//! `*`; an entry that is not `http(s)://[*.]host[:port]` is skipped with a warning.

use super::annotations::Reader;
use crate::model::{Cors, CorsOrigins};

/// ingress-nginx's `defaultCorsMethods`.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
/// ingress-nginx's `defaultCorsHeaders`.
pub const DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
/// ingress-nginx's `defaultCorsMaxAge`, seconds (20 days).
pub const DEFAULT_MAX_AGE: i64 = 1_728_000;

/// `None` unless `enable-cors: "true"`.
pub(super) fn parse(r: &mut Reader<'_>) -> Option<Cors> {
    if r.bool("enable-cors") != Some(true) {
        return None;
    }
    let allow_origin = match r.get("cors-allow-origin").map(str::to_string) {
        None => CorsOrigins::Any,
        Some(v) if v.is_empty() => CorsOrigins::Any,
        Some(v) => origins(r, &v),
    };
    let allow_methods = listed(r, "cors-allow-methods", DEFAULT_METHODS, |b| {
        b.is_ascii_alphabetic()
    });
    let allow_headers = listed(r, "cors-allow-headers", DEFAULT_HEADERS, header_char);
    let expose = listed(r, "cors-expose-headers", "", |b| {
        b == b'*' || header_char(b)
    });
    let allow_credentials = r.bool("cors-allow-credentials").unwrap_or(true);
    let max_age = match r.get("cors-max-age").map(str::to_string) {
        None => DEFAULT_MAX_AGE,
        // ingress-nginx reads it with strconv.Atoi: any integer, `-1` included.
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            _ => {
                r.bad("cors-max-age", &v, "a number of seconds");
                DEFAULT_MAX_AGE
            }
        },
    };
    Some(Cors {
        allow_origin,
        allow_methods,
        allow_headers,
        allow_credentials,
        expose_headers: (!expose.is_empty()).then_some(expose),
        max_age,
        dialect: Default::default(),
    })
}

fn header_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The annotation if it is a list as ingress-nginx's patterns allow (`^(ITEM,?\s?)+$`: runs
/// of `item` characters, each followed by at most one comma and one white space), else a
/// warning and `default`.
fn listed(r: &mut Reader<'_>, key: &str, default: &str, item: fn(u8) -> bool) -> String {
    let Some(v) = r.get(key).map(str::to_string) else {
        return default.to_string();
    };
    if is_list(&v, item) {
        return v;
    }
    r.bad(key, &v, "a comma-separated list of names");
    default.to_string()
}

fn is_list(v: &str, item: fn(u8) -> bool) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    if b.is_empty() {
        return false;
    }
    while i < b.len() {
        let start = i;
        while i < b.len() && item(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i < b.len() && b[i] == b',' {
            i += 1;
        }
        // Go's `\s`: tab, newline, form feed, carriage return, space.
        if i < b.len() && matches!(b[i], b'\t' | b'\n' | b'\x0c' | b'\r' | b' ') {
            i += 1;
        }
    }
    true
}

fn origins(r: &mut Reader<'_>, v: &str) -> CorsOrigins {
    let mut list = Vec::new();
    for o in v.split(',').map(str::trim) {
        if o == "*" {
            return CorsOrigins::Any;
        }
        if o.is_empty() {
            continue;
        }
        if is_origin(o) {
            list.push(o.to_string());
        } else {
            r.diags.warn(
                r.object,
                "InvalidAnnotation",
                format!(
                    "annotation cors-allow-origin: {o:?} is not an origin (scheme://host[:port], \
                     `*.` allowed before the host, or null); it is skipped"
                ),
            );
        }
    }
    if list.is_empty() {
        // As ingress-nginx: nothing valid left means no origin is allowed, not every one.
        r.diags.warn(
            r.object,
            "InvalidAnnotation",
            format!(
                "annotation cors-allow-origin: {v:?} names no valid origin: no origin is \
                 allowed (no CORS headers; preflights go to the pod), not the default `*`"
            ),
        );
    }
    CorsOrigins::List(list)
}

/// ingress-nginx's `corsOriginRegex`: `[a-z]+://(\*\.)?[A-Za-z0-9\-\.]*(:[0-9]+)?` or `null`:
/// any lower-case scheme (`tauri://localhost`, `myprotocol://example.org:1199` in its docs),
/// and the `null` origin of opaque contexts.
fn is_origin(o: &str) -> bool {
    if o == "null" {
        return true;
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let rest = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match rest.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    host.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::translate::diagnostics::Diagnostics;
    use crate::model::{ObjectKind, ObjectRef};
    use std::collections::BTreeMap;

    fn cors(pairs: &[(&str, &str)]) -> (Option<Cors>, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        let mut d = Diagnostics::default();
        let o = super::super::annotations::parse(
            Some(&map),
            &ObjectRef::new(ObjectKind::Ingress, "d", "i"),
            &mut d,
        );
        (
            o.policy.response.cors.clone(),
            d.0.into_iter().map(|d| d.message).collect(),
        )
    }

    #[test]
    fn defaults_are_ingress_nginx_s() {
        let (c, w) = cors(&[("enable-cors", "true")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c,
            Some(Cors {
                allow_origin: CorsOrigins::Any,
                allow_methods: "GET, PUT, POST, DELETE, PATCH, OPTIONS".into(),
                allow_headers: "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization".into(),
                allow_credentials: true,
                expose_headers: None,
                max_age: 1_728_000,
                dialect: Default::default(),
            })
        );
        assert_eq!(cors(&[("cors-allow-methods", "GET")]).0, None);
        assert_eq!(cors(&[("enable-cors", "false")]).0, None);
    }

    #[test]
    fn values_and_lists() {
        let (c, w) = cors(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://app.example.com, https://*.example.org:8443 ,http://localhost:3000",
            ),
            ("cors-allow-methods", "GET, POST"),
            ("cors-allow-headers", "X-Custom, Authorization"),
            ("cors-allow-credentials", "false"),
            ("cors-expose-headers", "X-Total, *"),
            ("cors-max-age", "600"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        let c = c.unwrap();
        assert_eq!(
            c.allow_origin,
            CorsOrigins::List(vec![
                "https://app.example.com".into(),
                "https://*.example.org:8443".into(),
                "http://localhost:3000".into()
            ])
        );
        assert_eq!(c.allow_methods, "GET, POST");
        assert_eq!(c.allow_headers, "X-Custom, Authorization");
        assert!(!c.allow_credentials);
        assert_eq!(c.expose_headers.as_deref(), Some("X-Total, *"));
        assert_eq!(c.max_age, 600);
        // `*` anywhere in the list allows every origin.
        let (c, _) = cors(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://a.test, *"),
        ]);
        assert_eq!(c.unwrap().allow_origin, CorsOrigins::Any);
    }

    #[test]
    fn bad_values_warn_and_take_the_default() {
        let (c, w) = cors(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://ok.test, HTTPS://UP.test, https://a.test/path",
            ),
            ("cors-allow-methods", "GET;rm -rf"),
            ("cors-allow-headers", "X-A,  X-B"),
            ("cors-expose-headers", "$upstream_addr"),
            ("cors-max-age", "soon"),
        ]);
        let c = c.unwrap();
        assert_eq!(w.len(), 6, "{w:?}");
        assert_eq!(
            c.allow_origin,
            CorsOrigins::List(vec!["https://ok.test".into()])
        );
        assert_eq!(c.allow_methods, DEFAULT_METHODS);
        assert_eq!(c.allow_headers, DEFAULT_HEADERS);
        assert_eq!(c.expose_headers, None);
        assert_eq!(c.max_age, DEFAULT_MAX_AGE);
        // No valid origin left: none is allowed (ingress-nginx), and the user is told.
        let (c, w) = cors(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "example.com"),
        ]);
        assert_eq!(c.unwrap().allow_origin, CorsOrigins::List(vec![]));
        assert_eq!(w.len(), 2, "{w:?}");
    }

    /// ingress-nginx's e2e "should allow - origins with non-http[s] protocols": any lower-case
    /// scheme (its `corsOriginRegex`), and `null`.
    #[test]
    fn origins_of_any_scheme_and_null_are_allowed() {
        let (c, w) = cors(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "test://localhost, tauri://localhost:3000, null",
            ),
        ]);
        assert_eq!(
            c.unwrap().allow_origin,
            CorsOrigins::List(vec![
                "test://localhost".into(),
                "tauri://localhost:3000".into(),
                "null".into()
            ])
        );
        assert!(w.is_empty(), "{w:?}");
    }
}
