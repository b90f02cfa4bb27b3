//! HTTPRoute filters at request time (Gateway API v1 `HTTPRouteFilter`): the redirect's
//! `Location`, path replacement for redirects and URL rewrites, header modifiers, and the share
//! of requests that unresolvable backendRefs answer with 500.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::model::{GatewayRedirect, HeaderModifier, PathMatch, PathModifier};

/// `Location` of a `RequestRedirect` for a request of `scheme` to `host` (Host header, a port
/// in it ignored) and `path`/`query`, arriving on `listener_port`. The port: as the filter
/// says; else the well-known port of a scheme the filter sets; else the listener's. 80 for
/// http and 443 for https are left out (spec: `HTTPRequestRedirectFilter.port`).
pub fn redirect_location(
    r: &GatewayRedirect,
    matched: &PathMatch,
    scheme: &str,
    host: &str,
    listener_port: u16,
    path: &str,
    query: Option<&str>,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let hostname = r
        .hostname
        .clone()
        .unwrap_or_else(|| super::router::normalize_host(host).into_owned());
    let port = r.port.unwrap_or(match r.scheme.as_deref() {
        Some("https") => 443,
        Some("http") => 80,
        _ => listener_port,
    });
    let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
    let authority = if default_port {
        hostname
    } else if hostname.contains(':') {
        format!("[{hostname}]:{port}")
    } else {
        format!("{hostname}:{port}")
    };
    let path = match &r.path {
        Some(m) => replace_path(m, matched, path),
        None => path.to_string(),
    };
    match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// The path after `m` for a request path matched by `matched`. `ReplacePrefixMatch` replaces
/// the matched prefix element-wise (`/prefix/one` by `/one`: `/prefix/one/two` -> `/one/two`;
/// by `/`: `/prefix/one` -> `/`); with a match that is not a prefix it replaces the whole path.
pub fn replace_path(m: &PathModifier, matched: &PathMatch, path: &str) -> String {
    match m {
        PathModifier::ReplaceFullPath(p) => p.clone(),
        PathModifier::ReplacePrefixMatch(replacement) => {
            let rest = match matched {
                PathMatch::Prefix(p) if p == "/" => path,
                PathMatch::Prefix(p) => path.get(p.len()..).unwrap_or(""),
                _ => "",
            };
            let joined = format!("{}{rest}", replacement.trim_end_matches('/'));
            if joined.is_empty() {
                "/".into()
            } else if !joined.starts_with('/') {
                format!("/{joined}")
            } else {
                joined
            }
        }
    }
}

/// Applies `set`, then `add`, then `remove`. Names or values that are not valid HTTP are
/// skipped.
pub fn apply_headers(m: &HeaderModifier, headers: &mut HeaderMap) {
    let pair = |n: &str, v: &str| {
        Some((
            HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok()?,
            HeaderValue::from_str(v).ok()?,
        ))
    };
    for (n, v) in &m.set {
        if let Some((n, v)) = pair(n, v) {
            headers.insert(n, v);
        }
    }
    for (n, v) in &m.add {
        if let Some((n, v)) = pair(n, v) {
            headers.append(n, v);
        }
    }
    for n in &m.remove {
        if let Ok(n) = HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()) {
            headers.remove(n);
        }
    }
}

/// Whether this request falls in the share of unresolvable backendRefs (`invalid` of
/// `invalid + valid` total weight).
pub fn takes_invalid_share(invalid: u32, valid: u64) -> bool {
    invalid > 0 && rand::random_range(0..u64::from(invalid) + valid) < u64::from(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.into())
    }

    /// conformance/tests/httproute-rewrite-path.yaml and .go (ReplacePrefixMatch cases).
    #[test]
    fn replace_prefix_match_as_the_conformance_suite() {
        let cases = [
            ("/prefix/one", "/one", "/prefix/one/two", "/one/two"),
            ("/prefix/one", "/one", "/prefix/one", "/one"),
            ("/strip-prefix", "/", "/strip-prefix/three", "/three"),
            ("/strip-prefix", "/", "/strip-prefix", "/"),
            ("/prefix/one", "/one", "/prefix/one/", "/one/"),
            ("/", "/foo", "/bar", "/foo/bar"),
        ];
        for (p, r, path, want) in cases {
            let m = PathModifier::ReplacePrefixMatch(r.into());
            assert_eq!(
                replace_path(&m, &prefix(p), path),
                want,
                "{p} -> {r} on {path}"
            );
        }
    }

    #[test]
    fn redirect_port_follows_scheme_then_listener() {
        let r = |scheme: Option<&str>, port: Option<u16>| GatewayRedirect {
            scheme: scheme.map(str::to_string),
            hostname: None,
            port,
            path: None,
            status: 302,
        };
        let loc = |g: GatewayRedirect, listener: u16| {
            redirect_location(
                &g,
                &prefix("/"),
                "http",
                "example.org:8080",
                listener,
                "/a",
                None,
            )
        };
        assert_eq!(loc(r(Some("https"), None), 8080), "https://example.org/a");
        assert_eq!(loc(r(None, None), 8080), "http://example.org:8080/a");
        assert_eq!(loc(r(None, None), 80), "http://example.org/a");
        assert_eq!(loc(r(None, Some(8443)), 80), "http://example.org:8443/a");
        assert_eq!(
            loc(r(Some("https"), Some(443)), 80),
            "https://example.org/a"
        );
    }
}
