//! ingress-nginx's `mirror-target`, `mirror-host` and `mirror-request-body` (annotations page,
//! "Mirror"; internal/ingress/annotations/mirror): every path of the Ingress sends a copy of
//! each request to the target, whose answer is ignored.
//!
//! As ingress-nginx: `mirror-request-body` is `on` unless it is exactly `off`; `mirror-host`
//! defaults to the host of the target's text before its first `$`, and a target whose host
//! is not known that way mirrors nothing (nginx.tmpl's `buildMirrorLocations` skips a mirror
//! without a host). A mirror that cannot be used is a Warning and never touches the
//! Ingress's own traffic.

use std::sync::Arc;

use super::{annotations::Reader, endpoints::EndpointIndex, forward_auth};
use crate::{
    model::{IngressMirror, nginx_var::NginxString},
    store::Objects,
};

/// The Ingress's mirror, or `None` (none, or unusable: a Warning on `r`).
pub(super) fn for_ingress(
    r: &mut Reader<'_>,
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    refs: &mut super::References,
) -> Option<Arc<IngressMirror>> {
    let target_text = r.get("mirror-target")?.to_string();
    let request_body = match r.get("mirror-request-body").map(str::to_string) {
        None => true,
        Some(v) if v == "off" => false,
        Some(v) if v == "on" => true,
        Some(v) => {
            r.bad("mirror-request-body", &v, "on or off");
            true
        }
    };
    let target = match forward_auth::host_of(&target_text)
        .map_err(|e| e.to_string())
        .and_then(|_| NginxString::parse(&target_text).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(why) => {
            unusable(
                r,
                "mirror-target",
                &target_text,
                &format!("not a URL: {why}"),
            );
            return None;
        }
    };
    let host_text = match r.get("mirror-host") {
        Some(h) => h.to_string(),
        None => {
            let before_vars = target_text.split('$').next().unwrap_or_default();
            match forward_auth::host_of(before_vars) {
                Ok(h) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
                Err(_) => {
                    let why = "its host has variables and no mirror-host is set";
                    unusable(r, "mirror-target", &target_text, why);
                    return None;
                }
            }
        }
    };
    let host = match NginxString::parse(&host_text) {
        Ok(h) => h,
        Err(why) => {
            unusable(r, "mirror-host", &host_text, &why.to_string());
            return None;
        }
    };
    let service = forward_auth::service_of(&target_text, objects, endpoints, refs);
    Some(Arc::new(IngressMirror {
        target,
        host,
        request_body,
        service,
    }))
}

fn unusable(r: &mut Reader<'_>, key: &str, value: &str, why: &str) {
    r.diags.warn(
        r.object,
        "InvalidAnnotation",
        format!("annotation {key}: {value:?}: {why}; nothing is mirrored"),
    );
}

#[cfg(test)]
mod tests {
    use super::super::{fixtures::*, translate};
    use crate::model::{IngressMirror, Severity, Snapshot};

    /// Ingress `default/a` for `a.test` `/` to Service `web`, with a Service `shadow` (one pod
    /// 198.19.1.2:8080) to mirror to, and these annotations.
    fn translated(annotations: &[(&str, &str)]) -> Snapshot {
        let mut o = services_with_one_pod(&["web", "shadow"]);
        let mut i = mk_ingress(
            "default",
            "a",
            1,
            vec![("a.test", vec![("/", "Prefix", "web", "80")])],
        );
        for (k, v) in annotations {
            i = with_annotation(i, &format!("nginx.ingress.kubernetes.io/{k}"), v);
        }
        o.upsert(ing(i));
        translate(&o, &mk_config())
    }

    fn mirror(s: &Snapshot) -> Option<std::sync::Arc<IngressMirror>> {
        s.l7.hosts["a.test"].routes[0].policy.mirror.clone()
    }

    #[test]
    fn target_host_and_body_as_ingress_nginx_reads_them() {
        let s = translated(&[(
            "mirror-target",
            "http://shadow.default.svc.cluster.local$request_uri",
        )]);
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
        let m = mirror(&s).expect("a mirror");
        assert_eq!(m.host.as_str(), "shadow.default.svc.cluster.local");
        assert!(m.request_body);
        let svc = m.service.as_ref().expect("the Service the host names");
        assert_eq!(svc.endpoints, ["198.19.1.2:8080".parse().unwrap()]);

        let s = translated(&[
            ("mirror-target", "https://1.2.3.4$request_uri"),
            ("mirror-host", "test.env.com"),
            ("mirror-request-body", "off"),
        ]);
        let m = mirror(&s).expect("a mirror");
        assert_eq!((m.host.as_str(), m.request_body), ("test.env.com", false));
        assert!(m.service.is_none());
    }

    #[test]
    fn an_unusable_target_mirrors_nothing_with_a_warning() {
        for target in ["shadow.default.svc", "ftp://m/x", "https://$host/x"] {
            let s = translated(&[("mirror-target", target)]);
            assert!(mirror(&s).is_none(), "{target}");
            assert!(
                s.diagnostics.iter().any(|d| d.severity == Severity::Warning
                    && d.message.contains("nothing is mirrored")),
                "{target}: {:?}",
                s.diagnostics
            );
            assert!(
                !s.l7.hosts["a.test"].routes.is_empty(),
                "the route is served"
            );
        }
        // A variable host is fine with mirror-host; a bad body switch keeps the body.
        let s = translated(&[
            ("mirror-target", "https://$host/x"),
            ("mirror-host", "m.example"),
            ("mirror-request-body", "no"),
        ]);
        let m = mirror(&s).expect("a mirror");
        assert!(m.request_body);
        assert_eq!(s.diagnostics.len(), 1, "{:?}", s.diagnostics);
    }
}
