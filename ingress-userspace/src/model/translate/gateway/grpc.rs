//! GRPCRoute (Gateway API v1) as the HTTPRoute it is equivalent to, so that both kinds share
//! one attachment, matching, filter and backend path. A gRPC call is an HTTP/2 POST to
//! `/<service>/<method>` (gRPC over HTTP/2, "Path"), so a `GRPCMethodMatch` is a path match:
//!
//! - `Exact`, service and method: path `Exact /<service>/<method>`;
//! - `Exact`, service only: path `PathPrefix /<service>` (element-wise: every method of it);
//! - `Exact`, method only: path `RegularExpression /[^/]+/<method>` (implementation-specific);
//! - `RegularExpression`: path `RegularExpression /(?:<service>)/(?:<method>)`, an omitted
//!   part matching any name (implementation-specific);
//! - no method match: every call.
//!
//! Header matches, `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror` and
//! backendRefs have the HTTPRoute shapes. A request no rule matches gets 404, which gRPC
//! clients read as `UNIMPLEMENTED` (gRPC's HTTP-to-gRPC status mapping), the code the
//! conformance suite expects.
//!
//! Precedence ([`precedence`]), from `GRPCRouteRule.matches`: the most characters in the
//! matching service, then in the method, then the most header matches; then the oldest
//! route, `namespace/name`, rule and match order. Regular expressions come after exact
//! matches.

use std::cmp::Reverse;

use crate::store::HttpRoute;
use gateway_api::apis::standard::grpcroutes::GrpcRoute;
use serde_json::{Map, Value, json};

use crate::model::{PathMatch, RouteMatch};

/// The path pattern a method-only `Exact` match becomes; [`precedence`] reads it back.
const ANY_SERVICE: &str = "/[^/]+/";

/// `gr` as an HTTPRoute with the same metadata, parents, hostnames and rules, or why it
/// cannot be read as one (a shape the two kinds do not share).
pub fn as_http_route(gr: &GrpcRoute) -> Result<HttpRoute, String> {
    let mut spec = serde_json::to_value(&gr.spec).map_err(|e| e.to_string())?;
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
        for rule in rules {
            let Some(matches) = rule.get_mut("matches").and_then(Value::as_array_mut) else {
                continue;
            };
            for m in matches {
                if let Some(obj) = m.as_object_mut() {
                    let method = obj.remove("method");
                    if let Some(path) = path_of(method.as_ref()) {
                        obj.insert("path".into(), path);
                    }
                }
            }
        }
    }
    let route = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": serde_json::to_value(&gr.metadata).map_err(|e| e.to_string())?,
        "spec": spec,
    });
    serde_json::from_value(route).map_err(|e| e.to_string())
}

/// The `HTTPPathMatch` of a `GRPCMethodMatch` (see the module docs); `None`: every path.
fn path_of(method: Option<&Value>) -> Option<Value> {
    let m = method?.as_object()?;
    let part = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (service, method) = (part("service"), part("method"));
    let regex = m.get("type").and_then(Value::as_str) == Some("RegularExpression");
    let mut path = Map::new();
    let (ty, value) = match (regex, service, method) {
        (false, Some(s), Some(m)) => ("Exact", format!("/{s}/{m}")),
        (false, Some(s), None) => ("PathPrefix", format!("/{s}")),
        (false, None, Some(m)) => ("RegularExpression", format!("{ANY_SERVICE}{m}")),
        (false, None, None) => return None,
        (true, s, m) => (
            "RegularExpression",
            format!(
                "/(?:{})/(?:{})",
                s.as_deref().unwrap_or("[^/]+"),
                m.as_deref().unwrap_or("[^/]+")
            ),
        ),
    };
    path.insert("type".into(), ty.into());
    path.insert("value".into(), value.into());
    Some(Value::Object(path))
}

/// `(rank, service characters, method characters, header matches)` of a GRPCRoute's match:
/// the first part of its sort key (smaller first). Rank 0: exact service and/or method,
/// 1: regular expressions.
pub fn precedence(m: &RouteMatch) -> (u8, Reverse<usize>, Reverse<usize>, Reverse<usize>) {
    let (rank, service, method) = match &m.path {
        PathMatch::Exact(p) => {
            let (s, m) = p
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or((p.as_str(), ""));
            (0, s.len(), m.len())
        }
        PathMatch::Prefix(p) | PathMatch::CharPrefix(p) => (0, p.trim_start_matches('/').len(), 0),
        PathMatch::FullRegex(p) | PathMatch::Regex(p) => match p.strip_prefix(ANY_SERVICE) {
            Some(method) if !method.contains(['(', '/', '[', '*', '+', '?', '|', '\\']) => {
                (0, 0, method.len())
            }
            _ => (1, 0, 0),
        },
    };
    (
        rank,
        Reverse(service),
        Reverse(method),
        Reverse(m.headers().len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(yaml: &str) -> HttpRoute {
        let gr: GrpcRoute = yaml_serde::from_str(yaml).expect("GRPCRoute parses");
        as_http_route(&gr).expect("converts")
    }

    /// Each `GRPCMethodMatch` shape becomes the path that gRPC's `/service/method` takes.
    #[test]
    fn method_matches_become_paths() {
        let hr = route(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: r, namespace: ns}
spec:
  hostnames: [grpc.example]
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - method: {service: pkg.Svc, method: Echo}
      headers: [{name: version, value: one}]
    - method: {service: pkg.Svc}
    - method: {method: Echo}
    - method: {type: RegularExpression, service: 'pkg\..*', method: 'Echo.*'}
    - method: {type: RegularExpression, method: 'Echo'}
    - {}
    backendRefs: [{name: svc, port: 8080, weight: 3}]
"#,
        );
        let rule = &hr.spec.rules.as_ref().expect("rules")[0];
        let paths: Vec<_> = rule
            .matches
            .iter()
            .flatten()
            .map(|m| {
                m.path.as_ref().map(|p| {
                    (
                        format!("{:?}", p.r#type),
                        p.value.clone().unwrap_or_default(),
                    )
                })
            })
            .collect();
        let p = |t: &str, v: &str| Some((format!("Some({t})"), v.to_string()));
        assert_eq!(
            paths,
            [
                p("Exact", "/pkg.Svc/Echo"),
                p("PathPrefix", "/pkg.Svc"),
                p("RegularExpression", "/[^/]+/Echo"),
                p("RegularExpression", r"/(?:pkg\..*)/(?:Echo.*)"),
                p("RegularExpression", "/(?:[^/]+)/(?:Echo)"),
                None,
            ]
        );
        let m0 = &rule.matches.as_ref().expect("matches")[0];
        assert_eq!(m0.headers.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            hr.spec.hostnames.as_deref(),
            Some(&["grpc.example".to_string()][..])
        );
        assert_eq!(rule.backend_refs.as_ref().expect("refs")[0].weight, Some(3));
        assert_eq!(hr.metadata.name.as_deref(), Some("r"));
    }

    /// `GRPCRouteRule.matches`: more service characters first, then method characters, then
    /// header matches; regular expressions last.
    #[test]
    fn precedence_is_service_then_method_then_headers() {
        let m = |path: PathMatch, headers: usize| {
            let mut m = RouteMatch::path(path);
            m.set_more(|more| {
                more.headers = (0..headers)
                    .map(|i| crate::model::HeaderMatch {
                        name: format!("h{i}"),
                        value: crate::model::StringMatch::Exact("v".into()),
                    })
                    .collect();
            });
            m
        };
        let mut order = [
            ("regex", m(PathMatch::FullRegex("/(?:a)/(?:b)".into()), 3)),
            ("any", m(PathMatch::Prefix("/".into()), 2)),
            ("method", m(PathMatch::FullRegex("/[^/]+/Echo".into()), 0)),
            ("svc", m(PathMatch::Prefix("/pkg.Svc".into()), 0)),
            ("longer-svc", m(PathMatch::Prefix("/pkg.Service".into()), 0)),
            ("svc+method", m(PathMatch::Exact("/pkg.Svc/Echo".into()), 0)),
            (
                "svc+method+header",
                m(PathMatch::Exact("/pkg.Svc/Echo".into()), 1),
            ),
        ];
        order.sort_by_key(|(_, m)| precedence(m));
        let names: Vec<_> = order.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "longer-svc",
                "svc+method+header",
                "svc+method",
                "svc",
                "method",
                "any",
                "regex"
            ]
        );
    }
}
