//! ingress-nginx's `custom-headers` annotation: response headers from a ConfigMap
//! (`namespace/name`, or `name` in the Ingress's namespace), set on every response of the
//! Ingress's routes.
//!
//! As ingress-nginx (`annotations/customheaders`): every header name must be listed in the
//! controller ConfigMap's `global-allowed-response-headers` (empty by default, so nothing is
//! allowed until an operator lists names), names must match `[A-Za-z0-9_-]+` and values be
//! printable ASCII. When the ConfigMap is missing or one of its headers is refused, the
//! Ingress's routes answer 503 (ingress-nginx denies the location) and an Error diagnostic
//! says why. Also refused: ConfigMaps of another namespace (ingress-nginx's documentation:
//! "Only ConfigMaps on the same namespace are allowed"; its code reads any, so here the
//! ConfigMap's `allow-cross-namespace-resources: "true"` allows them as it does Secrets) and
//! hop-by-hop or framing headers
//! (`Connection`, `Transfer-Encoding`, `Content-Length`, ...), which would break the response
//! rather than describe it.

use std::collections::BTreeMap;

use super::{annotations::PREFIXES, configmap::ControllerConfig, diagnostics::Diagnostics};
use crate::{
    model::{ObjectRef, ResponsePolicy, nginx_var::NginxString},
    store::{Key, Objects},
};

/// Response headers a ConfigMap may never set: hop-by-hop (RFC 9110 section 7.6.1) and message
/// framing (RFC 9112 section 6).
const REFUSED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Fills `response.headers` (or `response.denied`) from the `custom-headers` annotation;
/// returns the ConfigMap it names (found or not), so a change to it re-translates.
/// `watched`: `--secret-namespaces`, where the API source reads ConfigMaps (`None`: all), to
/// say why a ConfigMap elsewhere is not found.
pub fn apply(
    annotations: Option<&BTreeMap<String, String>>,
    watched: Option<&[String]>,
    objects: &Objects,
    controller: &ControllerConfig,
    object: &ObjectRef,
    diags: &mut Diagnostics,
    response: &mut ResponsePolicy,
) -> Option<Key> {
    let value = annotations.and_then(|a| {
        PREFIXES
            .iter()
            .rev()
            .find_map(|p| a.get(&format!("{p}custom-headers")))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    })?;
    let (ns, name) = value.split_once('/').unwrap_or((&object.namespace, value));
    let key = Key::new(ns, name);
    match headers(&key, watched, objects, controller, object) {
        Ok(h) => response.headers = h,
        Err(why) => {
            let why = format!("annotation custom-headers: {why}; the Ingress's routes answer 503");
            diags.error(object, "CustomHeadersRefused", why.clone());
            response.denied = Some(why);
        }
    }
    Some(key)
}

fn headers(
    key: &Key,
    watched: Option<&[String]>,
    objects: &Objects,
    controller: &ControllerConfig,
    object: &ObjectRef,
) -> Result<Vec<(String, String)>, String> {
    let (ns, name) = (&key.namespace, &key.name);
    let allowed = controller.allow_cross_namespace_resources;
    if super::annotations::cross_namespace_refused(allowed, &object.namespace, ns) {
        return Err(format!(
            "ConfigMap {ns}/{name} is not in the Ingress's namespace {} \
             (allow-cross-namespace-resources: \"true\" allows others)",
            object.namespace
        ));
    }
    let cm =
        objects
            .config_maps
            .get(key)
            .ok_or_else(|| match watched.filter(|w| !w.contains(ns)) {
                Some(w) => format!(
                    "ConfigMap {ns}/{name} not found (ConfigMaps are read only in \
                 --secret-namespaces: {})",
                    w.join(", ")
                ),
                None => format!("ConfigMap {ns}/{name} not found"),
            })?;
    let mut out = Vec::new();
    for (h, v) in cm.data.iter().flatten() {
        let lower = check(h, v)?;
        // Exactly as listed, case included (ingress-nginx's `slices.Contains`).
        if !controller.allowed_response_headers.iter().any(|a| a == h) {
            return Err(format!(
                "header {h} is not listed in the controller ConfigMap's \
                 global-allowed-response-headers"
            ));
        }
        out.push((lower, v.clone()));
    }
    Ok(out)
}

/// A response header a ConfigMap may set (`custom-headers`, `add-headers`): its name in lower
/// case, or why not. Names as [`check_name`], values as ingress-nginx's `valueRegexp`
/// (printable ASCII).
pub fn check(name: &str, value: &str) -> Result<String, String> {
    let lower = check_name(name)?;
    if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("value of header {name} is not printable ASCII"));
    }
    Ok(lower)
}

/// A header name a ConfigMap may set, in lower case, or why not: as ingress-nginx's
/// `headerRegexp` (`[A-Za-z0-9_-]+`), never hop-by-hop or framing.
pub fn check_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("header name {name:?} is invalid"));
    }
    if REFUSED.contains(&lower.as_str()) {
        return Err(format!(
            "header {name} is hop-by-hop or framing and cannot be set"
        ));
    }
    Ok(lower)
}

/// A request header of `proxy-set-headers`: its name in lower case (as [`check_name`]) and its
/// value parsed for nginx variables, or why not. The value may be empty (nginx then sends no
/// such field) but holds no control characters, which no header value may.
pub fn check_request(name: &str, value: &str) -> Result<(String, NginxString), String> {
    let lower = check_name(name)?;
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!("value of header {name} has control characters"));
    }
    let parsed = NginxString::parse(value).map_err(|e| format!("value of header {name}: {e}"))?;
    Ok((lower, parsed))
}

/// A controller ConfigMap key naming another ConfigMap (`add-headers`, `proxy-set-headers`):
/// `NAMESPACE/NAME`, or `NAME` in the controller ConfigMap's namespace `ns`.
pub fn configmap_key(value: &str, ns: &str) -> Key {
    let (ns, name) = value.split_once('/').unwrap_or((ns, value));
    Key::new(ns, name)
}

/// The controller ConfigMap's `add-headers` (see [`configmap_key`]): headers set on every
/// response, each as [`check`] takes it ([`headers_of`]).
pub fn add_headers(
    key: &Key,
    objects: &Objects,
    controller: &ObjectRef,
    diags: &mut Diagnostics,
) -> Vec<(String, String)> {
    headers_of("add-headers", key, objects, controller, diags, |h, v| {
        check(h, v).map(|lower| (lower, v.to_string()))
    })
}

/// The controller ConfigMap's `proxy-set-headers` (see [`configmap_key`]): request headers set
/// on every request to a pod, each as [`check_request`] takes it ([`headers_of`]).
pub fn proxy_set_headers(
    key: &Key,
    objects: &Objects,
    controller: &ObjectRef,
    diags: &mut Diagnostics,
) -> Vec<(String, NginxString)> {
    headers_of(
        "proxy-set-headers",
        key,
        objects,
        controller,
        diags,
        check_request,
    )
}

/// The headers of the ConfigMap `key` that the controller ConfigMap's key `what` names, each
/// as `take` makes it. One `take` refuses is left out with a Warning on the controller
/// ConfigMap, as is a missing ConfigMap (ingress-nginx logs a warning and sets none); the
/// others apply.
fn headers_of<T>(
    what: &str,
    key: &Key,
    objects: &Objects,
    controller: &ObjectRef,
    diags: &mut Diagnostics,
    take: impl Fn(&str, &str) -> Result<T, String>,
) -> Vec<T> {
    let Some(cm) = objects.config_maps.get(key) else {
        diags.warn(
            controller,
            "InvalidConfigMapValue",
            format!("key {what}: ConfigMap {key} not found; no headers are set"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (h, v) in cm.data.iter().flatten() {
        match take(h, v) {
            Ok(t) => out.push(t),
            Err(why) => diags.warn(
                controller,
                "InvalidConfigMapValue",
                format!("key {what}: ConfigMap {key}: {why}; it is left out"),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;
    use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
    use std::sync::Arc;

    fn objects(data: &[(&str, &str)]) -> Objects {
        let mut o = Objects::default();
        o.config_maps.insert(
            Key::new("app", "hdrs"),
            Arc::new(ConfigMap {
                metadata: ObjectMeta {
                    namespace: Some("app".into()),
                    name: Some("hdrs".into()),
                    ..Default::default()
                },
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
        );
        o
    }

    fn run(value: &str, data: &[(&str, &str)], allowed: &[&str]) -> (ResponsePolicy, usize) {
        let ann: BTreeMap<String, String> = [(
            "nginx.ingress.kubernetes.io/custom-headers".to_string(),
            value.to_string(),
        )]
        .into();
        let controller = ControllerConfig {
            allowed_response_headers: allowed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let mut d = Diagnostics::default();
        let mut r = ResponsePolicy::default();
        apply(
            Some(&ann),
            None,
            &objects(data),
            &controller,
            &ObjectRef::new(ObjectKind::Ingress, "app", "web"),
            &mut d,
            &mut r,
        );
        (r, d.0.len())
    }

    #[test]
    fn allowed_headers_are_taken() {
        let (r, n) = run(
            "app/hdrs",
            &[
                ("X-Frame-Options", "DENY"),
                ("Content-Security-Policy", "default-src 'self'"),
            ],
            &["X-Frame-Options", "Content-Security-Policy"],
        );
        assert_eq!(n, 0);
        assert_eq!(r.denied, None);
        assert_eq!(
            r.headers,
            vec![
                (
                    "content-security-policy".into(),
                    "default-src 'self'".into()
                ),
                ("x-frame-options".into(), "DENY".into())
            ]
        );
        // A bare name is the Ingress's namespace.
        assert_eq!(run("hdrs", &[("X-A", "1")], &["X-A"]).0.headers.len(), 1);
        // Listed in another case: not allowed (ingress-nginx compares names exactly).
        assert!(run("hdrs", &[("X-A", "1")], &["x-a"]).0.denied.is_some());
    }

    #[test]
    fn a_configmap_outside_the_watched_namespaces_says_so() {
        let why = headers(
            &Key::new("app", "elsewhere"),
            Some(&["web".to_string()]),
            &objects(&[]),
            &ControllerConfig::default(),
            &ObjectRef::new(ObjectKind::Ingress, "app", "web"),
        )
        .unwrap_err();
        assert!(why.contains("--secret-namespaces: web"), "{why}");
    }

    #[test]
    fn refusals_deny_the_routes_with_an_error() {
        for (value, data, allowed) in [
            ("app/missing", &[("X-A", "1")][..], &["X-A"][..]),
            ("other/hdrs", &[("X-A", "1")], &["X-A"]),
            ("app/hdrs", &[("X-A", "1")], &[]),
            (
                "app/hdrs",
                &[("Transfer-Encoding", "chunked")],
                &["Transfer-Encoding"],
            ),
            ("app/hdrs", &[("X A", "1")], &["X A"]),
            ("app/hdrs", &[("X-A", "line\nbreak")], &["X-A"]),
        ] {
            let (r, n) = run(value, data, allowed);
            assert_eq!(n, 1, "{value} {data:?}");
            assert!(
                r.denied.is_some() && r.headers.is_empty(),
                "{value} {data:?}"
            );
        }
    }

    /// `proxy-set-headers`: request headers with nginx variables; an invalid name, a hop-by-hop
    /// one, an unknown variable or a control character is left out with a Warning, the others
    /// apply; an empty value stays (nginx then sends no such field); a missing ConfigMap warns.
    #[test]
    fn proxy_set_headers_take_variables_and_leave_out_the_invalid() {
        let o = objects(&[
            ("X-Host", "$host:${server_port}"),
            ("X-Empty", ""),
            ("X-Bad Name", "1"),
            ("Upgrade", "websocket"),
            ("X-Var", "$upstream_addr"),
            ("X-Nl", "a\nb"),
        ]);
        let controller = ObjectRef::new(ObjectKind::ConfigMap, "ingress-nginx", "c");
        let mut d = Diagnostics::default();
        let got = proxy_set_headers(&Key::new("app", "hdrs"), &o, &controller, &mut d);
        let got: Vec<(&str, &str)> = got.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(got, [("x-empty", ""), ("x-host", "$host:${server_port}")]);
        let why: Vec<&str> = d.0.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(why.len(), 4, "{why:?}");
        assert!(
            why.iter()
                .all(|w| w.starts_with("key proxy-set-headers: ConfigMap app/hdrs"))
        );
        assert!(why.iter().any(|w| w.contains("$upstream_addr")), "{why:?}");
        let mut d = Diagnostics::default();
        assert!(proxy_set_headers(&Key::new("app", "nope"), &o, &controller, &mut d).is_empty());
        assert_eq!(d.0.len(), 1);
        assert!(d.0[0].message.contains("not found"));
        // A bare name is in the controller ConfigMap's namespace.
        assert_eq!(
            configmap_key("h", "ingress-nginx"),
            Key::new("ingress-nginx", "h")
        );
        assert_eq!(
            configmap_key("app/h", "ingress-nginx"),
            Key::new("app", "h")
        );
    }
}
