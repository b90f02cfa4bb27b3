//! Checks that refuse an Ingress as a whole before anything of it is translated, as
//! ingress-nginx's `internal/ingress/inspector` does:
//!
//! - [`deep_inspect`]: `DeepInspect`, applied by ingress-nginx's store to every Ingress
//!   (`--deep-inspect`, default true): a host, path, TLS host or TLS secretName carrying an
//!   nginx directive (`alias ...;`, `root ...;`, `*_by_lua*`) or naming `/etc/passwd`,
//!   `/etc/shadow`, `/etc/group`, `/etc/nginx`, `/etc/ingress-controller` or
//!   `/var/run/secrets` drops the Ingress (ingress-nginx logs an error; we give an Error).
//! - [`strict_path_type`]: `ValidatePathType`, applied by ingress-nginx's admission webhook
//!   (`CheckIngress`) when the ConfigMap's `strict-validate-path-type` is true (the default
//!   since 1.12): an `Exact` or `Prefix` path must match `(?i)^/[[:alnum:]._\-/]*$`. The
//!   webhook refuses the Ingress at `kubectl apply`; without a webhook we refuse it at
//!   translation: an Error diagnostic (an Event, `explain`, `migrate`) and nothing of it served.

use crate::compact::ingress::IngressSpec;

/// Reason of the Error an Ingress refused by [`deep_inspect`] gets.
pub const DEEP_INSPECT_REASON: &str = "InvalidIngressValue";
/// Reason of the Error an Ingress refused by [`strict_path_type`] gets.
pub const STRICT_PATH_REASON: &str = "InvalidPathForPathType";

/// ingress-nginx's `CheckRegex` (inspector/rules.go): whether `value` matches one of its
/// forbidden expressions (`\s*alias\s*.*;`, `\s*root\s*.*;` with `.` matching newlines too,
/// `/etc/(passwd|shadow|group|nginx|ingress-controller)`, `/var/run/secrets`, `.*_by_lua.*`).
fn forbidden(value: &str) -> bool {
    // `word` somewhere and a `;` anywhere after it: the first occurrence leaves the most
    // text after it, so it decides.
    let directive = |word: &str| {
        value
            .find(word)
            .is_some_and(|i| value[i + word.len()..].contains(';'))
    };
    const PATHS: [&str; 6] = [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/nginx",
        "/etc/ingress-controller",
        "/var/run/secrets",
    ];
    directive("alias")
        || directive("root")
        || PATHS.iter().any(|p| value.contains(p))
        || value.contains("_by_lua")
}

/// ingress-nginx's `InspectIngress`: `Err` with its message (the first value found) when a
/// rule's host or path, or a TLS entry's secretName or host, is [`forbidden`].
pub fn deep_inspect(spec: Option<&IngressSpec>) -> Result<(), String> {
    let Some(spec) = spec else { return Ok(()) };
    let found = |what: &str, value: &str| format!("invalid {what}: invalid value found: {value}");
    for rule in spec.rules.iter().flatten() {
        if let Some(host) = rule.host.as_deref().filter(|h| forbidden(h)) {
            return Err(found("host", host));
        }
        for path in rule.http.iter().flat_map(|h| &h.paths) {
            if let Some(p) = path.path.as_deref().filter(|p| forbidden(p)) {
                return Err(found("http path", p));
            }
        }
    }
    for tls in spec.tls.iter().flatten() {
        if let Some(s) = tls.secret_name.as_deref().filter(|s| forbidden(s)) {
            return Err(found("secret", s));
        }
        if let Some(h) = tls.hosts.iter().flatten().find(|h| forbidden(h)) {
            return Err(found("host in tls config", h));
        }
    }
    Ok(())
}

/// ingress-nginx's `validPathType` (inspector/rules.go): `/`, then ASCII letters, digits,
/// `.`, `_`, `-` and `/` only.
fn valid_for_path_type(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    })
}

/// ingress-nginx's `ValidatePathType`: one message per `Exact` or `Prefix` path that is not
/// [`valid_for_path_type`] (`path P cannot be used with pathType T`), in spec order; an
/// empty path is not checked. Empty: the Ingress passes.
pub fn strict_path_type(spec: Option<&IngressSpec>) -> Vec<String> {
    let paths = spec
        .and_then(|s| s.rules.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|r| r.http.iter().flat_map(|h| &h.paths));
    paths
        .filter(|p| p.path_type != "ImplementationSpecific")
        .filter_map(|p| {
            let path = p.path.as_deref().filter(|p| !p.is_empty())?;
            (!valid_for_path_type(path))
                .then(|| format!("path {path} cannot be used with pathType {}", p.path_type))
        })
        .collect()
}

/// Whether an Ingress is refused as a whole: `Some((reason, message))` of the Error it gets,
/// from [`deep_inspect`] first, then (with `strict`, the ConfigMap's
/// `strict-validate-path-type`) [`strict_path_type`] with the webhook's message.
pub fn refusal(spec: Option<&IngressSpec>, strict: bool) -> Option<(&'static str, String)> {
    if let Err(e) = deep_inspect(spec) {
        let msg = format!("received invalid ingress: {e}; the Ingress is not served");
        return Some((DEEP_INSPECT_REASON, msg));
    }
    let invalid = if strict {
        strict_path_type(spec)
    } else {
        Vec::new()
    };
    (!invalid.is_empty()).then(|| {
        let msg = format!(
            "ingress contains invalid paths: {} (strict-validate-path-type: use pathType \
             ImplementationSpecific); the Ingress is not served",
            invalid.join("; ")
        );
        (STRICT_PATH_REASON, msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(paths: &[(&str, &str)]) -> IngressSpec {
        serde_json::from_value(serde_json::json!({
            "rules": [{"host": "a.example", "http": {"paths": paths.iter().map(|(p, t)| serde_json::json!({
                "path": p, "pathType": t,
                "backend": {"service": {"name": "s", "port": {"number": 80}}}
            })).collect::<Vec<_>>()}}]
        }))
        .unwrap()
    }

    #[test]
    fn strict_path_type_takes_ingress_nginx_characters() {
        let ok = spec(&[
            ("/", "Prefix"),
            ("/a-b_c.d/E9/", "Exact"),
            ("", "Prefix"),
            ("/(.*)$", "ImplementationSpecific"),
        ]);
        assert!(strict_path_type(Some(&ok)).is_empty());
        let bad = spec(&[
            ("/foo(/|$)(.*)", "Prefix"),
            ("/ok", "Prefix"),
            ("/a b", "Exact"),
            ("/~user", "Prefix"),
            ("/caf\u{e9}", "Prefix"),
            ("noslash", "Exact"),
        ]);
        assert_eq!(
            strict_path_type(Some(&bad)),
            [
                "path /foo(/|$)(.*) cannot be used with pathType Prefix",
                "path /a b cannot be used with pathType Exact",
                "path /~user cannot be used with pathType Prefix",
                "path /caf\u{e9} cannot be used with pathType Prefix",
                "path noslash cannot be used with pathType Exact",
            ]
        );
    }

    #[test]
    fn deep_inspect_refuses_what_ingress_nginx_does() {
        // The path of ingress-nginx's e2e test (test/e2e/ingress/deep_inspection.go).
        let e2e = spec(&[(
            "/bla{alias /var/run/secrets/;}location ~* ^/abcd",
            "ImplementationSpecific",
        )]);
        assert_eq!(
            deep_inspect(Some(&e2e)),
            Err("invalid http path: invalid value found: /bla{alias /var/run/secrets/;}location ~* ^/abcd".into())
        );
        for bad in [
            "/x;root /;",
            "/content_by_lua",
            "/etc/nginx",
            "/a/etc/passwd",
            "/alias\n;",
        ] {
            assert!(
                deep_inspect(Some(&spec(&[(bad, "Prefix")]))).is_err(),
                "{bad}"
            );
        }
        // A word without a `;` after it is no directive.
        for good in ["/alias", "/root/x", "/a;alias", "/etc/hosts", "/by_lua"] {
            assert!(
                deep_inspect(Some(&spec(&[(good, "Prefix")]))).is_ok(),
                "{good}"
            );
        }
        let tls: IngressSpec = serde_json::from_value(serde_json::json!({
            "tls": [{"hosts": ["a.example"], "secretName": "x;root /;"}]
        }))
        .unwrap();
        assert_eq!(
            deep_inspect(Some(&tls)),
            Err("invalid secret: invalid value found: x;root /;".into())
        );
    }
}
