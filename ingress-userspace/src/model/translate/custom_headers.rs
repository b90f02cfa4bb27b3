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
//! "Only ConfigMaps on the same namespace are allowed") and hop-by-hop or framing headers
//! (`Connection`, `Transfer-Encoding`, `Content-Length`, ...), which would break the response
//! rather than describe it.

use std::collections::BTreeMap;

use super::{annotations::PREFIXES, configmap::ControllerConfig, diagnostics::Diagnostics};
use crate::{
    model::{ObjectRef, ResponsePolicy},
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
    if *ns != object.namespace {
        return Err(format!(
            "ConfigMap {ns}/{name} is not in the Ingress's namespace {}",
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
/// case, or why not. Names as ingress-nginx's `headerRegexp` (`[A-Za-z0-9_-]+`), values as its
/// `valueRegexp` (printable ASCII), never hop-by-hop or framing.
pub fn check(name: &str, value: &str) -> Result<String, String> {
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
    if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("value of header {name} is not printable ASCII"));
    }
    Ok(lower)
}

/// The controller ConfigMap's `add-headers` (`NAMESPACE/NAME`, or `NAME` in the controller
/// ConfigMap's namespace): headers set on every response. A header that [`check`] refuses is
/// left out with a Warning on the controller ConfigMap, as is a missing ConfigMap; the others
/// apply.
pub fn add_headers(
    key: &Key,
    objects: &Objects,
    controller: &ObjectRef,
    diags: &mut Diagnostics,
) -> Vec<(String, String)> {
    let Some(cm) = objects.config_maps.get(key) else {
        diags.warn(
            controller,
            "InvalidConfigMapValue",
            format!("key add-headers: ConfigMap {key} not found; no headers are added"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (h, v) in cm.data.iter().flatten() {
        match check(h, v) {
            Ok(lower) => out.push((lower, v.clone())),
            Err(why) => diags.warn(
                controller,
                "InvalidConfigMapValue",
                format!("key add-headers: ConfigMap {key}: {why}; it is left out"),
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
}
