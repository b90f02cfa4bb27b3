//! ingress-nginx's `default-backend` and `custom-http-errors` annotations (annotations
//! reference, "Default Backend" and "Custom HTTP Errors"; user guide "Custom errors").
//!
//! - `default-backend: <service>`: a Service of the Ingress's namespace whose first port serves
//!   the Ingress's requests while a route's own backend has no endpoints (the proxy decides per
//!   request, so endpoint churn needs no re-translation), and its intercepted errors. As
//!   ingress-nginx, the backend keeps the route's protocol and load balancing.
//! - `custom-http-errors: "404,503"`: responses with these statuses (from the endpoint, or the
//!   proxy's own 502/503/504) are replaced by the default backend's answer, which is sent to the
//!   client unchanged: the error backend is expected to answer with the code it gets in `X-Code`.
//!   Without `default-backend` the controller-wide default backend serves them; without either,
//!   nothing is intercepted. Without the annotation, the controller ConfigMap's
//!   `custom-http-errors` applies (ingress-nginx's server-wide `error_page`, which a location's
//!   own list replaces).
//! - `disable-proxy-intercept-errors: "true"`: a pod's answer is passed as it is; the proxy's
//!   own answers stay replaced (nginx's `error_page` covers them whatever
//!   `proxy_intercept_errors` says). Decided as ingress-nginx's template writes the directive
//!   ([`pod_answers_intercepted`]).
//!
//! A Service that does not exist or has no ports, or a bad status code, is a Warning; the
//! Ingress is served without that part.

use std::{collections::BTreeMap, sync::Arc};

use super::{annotations::IngressOptions, annotations::PREFIXES, ingress::L7Builder};
use crate::{
    model::{ErrorPages, ObjectKind, ObjectRef, Upstream},
    store::Key,
};

/// Status codes nginx's `error_page` accepts (300 to 599).
pub const INTERCEPT_RANGE: std::ops::RangeInclusive<u16> = 300..=599;

fn get<'m>(annotations: &'m BTreeMap<String, String>, key: &str) -> Option<&'m str> {
    PREFIXES
        .iter()
        .rev()
        .find_map(|p| annotations.get(&format!("{p}{key}")))
        .map(|v| v.trim())
}

/// `custom-http-errors`: the valid codes, sorted and deduplicated, and the entries that are not.
pub fn parse_codes(v: &str) -> (Vec<u16>, Vec<String>) {
    let mut codes = Vec::new();
    let mut bad = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u16>() {
            Ok(c) if INTERCEPT_RANGE.contains(&c) => codes.push(c),
            _ => bad.push(item.to_string()),
        }
    }
    codes.sort_unstable();
    codes.dedup();
    (codes, bad)
}

/// The error pages of an Ingress, or `None` when it sets neither annotation (or both are
/// unusable) and the controller ConfigMap lists no `custom-http-errors`. `opts`: the Ingress's
/// options, which the default backend's upstream shares.
pub(super) fn parse(
    b: &mut L7Builder<'_>,
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    opts: &IngressOptions,
) -> Option<Arc<ErrorPages>> {
    let mut pages = ErrorPages::default();
    let annotated = annotations.and_then(|a| get(a, "custom-http-errors"));
    if annotated.is_none() {
        pages.intercept = b.controller.custom_http_errors.clone();
    }
    if let Some(v) = annotated {
        let (codes, bad) = parse_codes(v);
        if !bad.is_empty() {
            b.diags.warn(
                object,
                "InvalidAnnotation",
                format!(
                    "annotation custom-http-errors: {} not status codes from 300 to 599; \
                     they are not intercepted",
                    bad.join(", ")
                ),
            );
        }
        pages.intercept = codes;
    }
    let disabled = annotations.and_then(|a| get(a, "disable-proxy-intercept-errors"));
    let disabled = match disabled.map(|v| (v, super::annotations::parse_bool(v))) {
        None => false,
        Some((_, Some(b))) => b,
        Some((v, None)) => {
            // ingress-nginx's parser takes an invalid value as false.
            b.diags.warn(
                object,
                "InvalidAnnotation",
                format!("annotation disable-proxy-intercept-errors: {v:?} is not true or false; false applies"),
            );
            false
        }
    };
    if !pages.intercept.is_empty() {
        pages.pass_pod_answers = !pod_answers_intercepted(
            annotated.is_some(),
            disabled,
            &b.controller.custom_http_errors,
            b.controller.disable_proxy_intercept_errors,
        );
    }
    if let Some(name) = annotations
        .and_then(|a| get(a, "default-backend"))
        .filter(|n| !n.is_empty())
    {
        match default_backend(b, &object.namespace, name, opts) {
            Ok(u) => pages.default_backend = Some(u),
            Err(msg) => b.diags.warn(
                object,
                "DefaultBackendNotFound",
                format!("annotation default-backend: {msg}; the annotation is ignored"),
            ),
        }
    }
    (pages != ErrorPages::default()).then(|| Arc::new(pages))
}

/// Whether nginx's `proxy_intercept_errors` is on in a location of ingress-nginx's template:
/// the location writes `on` when it has its own `custom-http-errors` (`annotated`) and not
/// `disable-proxy-intercept-errors: "true"` (`annotation_disables`); otherwise it inherits the
/// `http` block's, `on` when the ConfigMap lists `custom-http-errors` and does not set
/// `disable-proxy-intercept-errors: "true"`. So the annotation alone does not stop a
/// ConfigMap list's interception, and the ConfigMap key does not stop an annotated one's.
pub fn pod_answers_intercepted(
    annotated: bool,
    annotation_disables: bool,
    configmap_codes: &[u16],
    configmap_disables: bool,
) -> bool {
    (annotated && !annotation_disables) || (!configmap_codes.is_empty() && !configmap_disables)
}

/// The upstream of Service `name`'s first port (as ingress-nginx), with the Ingress's options.
fn default_backend(
    b: &mut L7Builder<'_>,
    ns: &str,
    name: &str,
    opts: &IngressOptions,
) -> Result<Arc<Upstream>, String> {
    let key = Key::new(ns, name);
    b.refs.services.insert(key.clone());
    let svc = b
        .objects
        .services
        .get(&key)
        .ok_or_else(|| format!("service {key} does not exist"))?;
    let port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .and_then(|p| p.first())
        .ok_or_else(|| format!("service {key} has no ports"))?;
    Ok(Arc::new(Upstream {
        id: format!("{key}:{}", port.port),
        service: ObjectRef::new(ObjectKind::Service, ns, name),
        protocol: opts.protocol,
        endpoints: b.endpoints.resolve(ns, name, port),
        load_balancing: opts.load_balancing.clone(),
        affinity: opts.affinity.clone(),
        service_upstream: false,
        external_name: None,
        tls: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_sorted_and_bad_ones_reported() {
        assert_eq!(parse_codes("503, 404,404"), (vec![404, 503], vec![]));
        assert_eq!(
            parse_codes("404,abc,200,600"),
            (vec![404], vec!["abc".into(), "200".into(), "600".into()])
        );
        assert_eq!(parse_codes(""), (vec![], vec![]));
    }

    /// nginx.tmpl: `proxy_intercept_errors on` in the location when it has its own list and
    /// not the annotation, else inherited from the `http` block (ConfigMap list, not the key).
    #[test]
    fn pod_answers_are_intercepted_as_the_template_writes_it() {
        // (annotated, annotation disables, ConfigMap codes, ConfigMap disables) -> intercepted
        for (annotated, ann, cm, cm_off, want) in [
            (true, false, &[][..], false, true),
            (true, true, &[][..], false, false),
            (true, true, &[503][..], false, true),
            (true, true, &[503][..], true, false),
            (false, false, &[503][..], false, true),
            (false, true, &[503][..], false, true),
            (false, false, &[503][..], true, false),
            (true, false, &[503][..], true, true),
        ] {
            assert_eq!(
                pod_answers_intercepted(annotated, ann, cm, cm_off),
                want,
                "{annotated} {ann} {cm:?} {cm_off}"
            );
        }
    }
}
