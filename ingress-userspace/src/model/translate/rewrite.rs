//! ingress-nginx's path annotations: `rewrite-target`, `x-forwarded-prefix`, `upstream-vhost`
//! and `app-root` (annotations reference, "Rewrite"; examples/rewrite); with `upstream-vhost`,
//! the other header of the pod's request an annotation replaces, `connection-proxy-header`
//! ("Connection proxy header"; `annotations/connection`).
//!
//! `rewrite-target` makes every path of a host a regular expression when it rewrites one of
//! the host's paths, as ingress-nginx's `enforceRegexModifier` does
//! (user-guide/ingress-path-matching.md); a target equal to the path rewrites nothing
//! ([`needs_rewrite`]). The translation of paths applies that; this module reads the values.

use std::sync::Arc;

use http::HeaderValue;

use super::annotations::Reader;
use crate::model::RoutePolicy;

/// What the path annotations say beyond the route policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// `app-root`: requests for `/` on the Ingress's hosts are redirected (302) here.
    pub app_root: Option<String>,
}

/// Whether `v` can be sent as a path: starts with `/`, no whitespace or control bytes.
fn is_path(v: &str) -> bool {
    v.starts_with('/') && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `rewrite-target` rewrites the path written as `path` (empty = `/`): not when the
/// target is that path itself, as ingress-nginx's `needsRewrite` (template.go) decides. Such
/// a path neither rewrites nor turns its host's paths into regular expressions: the common
/// `rewrite-target: /` on path `/` changes nothing.
pub fn needs_rewrite(target: Option<&str>, path: &str) -> bool {
    target.is_some_and(|t| t != path)
}

/// The policy of a location written as `path`: `policy` without its `rewrite-target` where
/// that rewrites nothing ([`needs_rewrite`]). Shared, not copied, when there is no target to
/// drop (most Ingresses): a copy per route weighed ~600 bytes on each of 20k routes at 10k
/// Ingresses (issue 13's memory target).
pub fn for_location(policy: &Arc<RoutePolicy>, path: &str) -> Arc<RoutePolicy> {
    let mut p = Arc::clone(policy);
    if p.rewrite.target.is_some() && !needs_rewrite(p.rewrite.target.as_deref(), path) {
        Arc::make_mut(&mut p).rewrite.target = None;
    }
    p
}

/// Reads the path annotations into `policy.rewrite`; bad values warn and are ignored.
pub(super) fn parse(r: &mut Reader<'_>, policy: &mut RoutePolicy) -> PathOptions {
    let mut opts = PathOptions::default();
    if let Some(v) = r.get("rewrite-target").map(str::to_string) {
        // `$1`..`$9` are filled in by the proxy; the rest must already be a path (nginx would
        // also accept an absolute URL and redirect, which ingress-nginx never documents).
        if is_path(&v) {
            policy.rewrite.target = Some(v);
        } else {
            r.bad(
                "rewrite-target",
                &v,
                "a path starting with '/' (capture groups as $1..$9)",
            );
        }
    }
    if let Some(v) = r.get("x-forwarded-prefix").map(str::to_string) {
        match HeaderValue::from_str(&v) {
            Ok(_) if !v.is_empty() => policy.rewrite.x_forwarded_prefix = Some(v),
            _ => r.bad("x-forwarded-prefix", &v, "a header value"),
        }
    }
    if let Some(v) = r.get("upstream-vhost").map(str::to_string) {
        match http::uri::Authority::try_from(v.as_str()) {
            Ok(a) if a.as_str() == v && !v.contains('@') => policy.rewrite.upstream_vhost = Some(v),
            _ => r.bad("upstream-vhost", &v, "a host name (optionally with :port)"),
        }
    }
    if let Some(v) = r.get("connection-proxy-header").map(str::to_string) {
        // ingress-nginx's `validConnectionHeaderValue`, `^(close|keep-alive)$`.
        match v.as_str() {
            "close" | "keep-alive" => policy.rewrite.connection_header = Some(v),
            _ => r.bad("connection-proxy-header", &v, "close or keep-alive"),
        }
    }
    if let Some(v) = r.get("app-root").map(str::to_string) {
        if is_path(&v) && v != "/" {
            opts.app_root = Some(v);
        } else {
            r.bad("app-root", &v, "a path other than \"/\" starting with '/'");
        }
    }
    opts
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{ObjectKind, ObjectRef, translate::annotations};

    fn parse_map(pairs: &[(&str, &str)]) -> (annotations::IngressOptions, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        let mut d = super::super::diagnostics::Diagnostics::default();
        let o = annotations::parse(
            Some(&map),
            &ObjectRef::new(ObjectKind::Ingress, "d", "i"),
            &mut d,
        );
        (o, d.0.into_iter().map(|d| d.reason).collect())
    }

    #[test]
    fn values_from_the_rewrite_docs() {
        // examples/rewrite: `rewrite-target: /$2` with `x-forwarded-prefix: /something`;
        // `app-root: /app1`.
        let (o, w) = parse_map(&[
            ("rewrite-target", "/$2"),
            ("x-forwarded-prefix", "/something"),
            ("app-root", "/app1"),
            ("upstream-vhost", "internal.example.com"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.policy.rewrite.target.as_deref(), Some("/$2"));
        assert_eq!(
            o.policy.rewrite.x_forwarded_prefix.as_deref(),
            Some("/something")
        );
        assert_eq!(
            o.policy.rewrite.upstream_vhost.as_deref(),
            Some("internal.example.com")
        );
        assert!(needs_rewrite(
            o.policy.rewrite.target.as_deref(),
            "/something(/|$)(.*)"
        ));
        assert!(!needs_rewrite(Some("/"), "/"));
        assert!(!needs_rewrite(None, "/"));
        assert_eq!(o.paths.app_root.as_deref(), Some("/app1"));
    }

    /// `connection-proxy-header`: `close` or `keep-alive` (ingress-nginx's e2e value
    /// test/e2e/annotations/connection.go); anything else warns and is ignored.
    #[test]
    fn connection_proxy_header_is_close_or_keep_alive() {
        for v in ["close", "keep-alive"] {
            let (o, w) = parse_map(&[("connection-proxy-header", v)]);
            assert!(w.is_empty(), "{w:?}");
            assert_eq!(o.policy.rewrite.connection_header.as_deref(), Some(v));
        }
        for v in ["upgrade", "Close", "keep-alive, x"] {
            let (o, w) = parse_map(&[("connection-proxy-header", v)]);
            assert_eq!(w, ["InvalidAnnotation"], "{v}");
            assert_eq!(o.policy.rewrite.connection_header, None);
        }
    }

    #[test]
    fn bad_values_warn_and_are_ignored() {
        let (o, w) = parse_map(&[
            ("rewrite-target", "no-slash"),
            ("app-root", "app1"),
            ("upstream-vhost", "a b"),
        ]);
        assert_eq!(w, ["InvalidAnnotation"; 3]);
        assert_eq!(o.policy.rewrite, Default::default());
        assert_eq!(o.paths, PathOptions::default());
    }
}
