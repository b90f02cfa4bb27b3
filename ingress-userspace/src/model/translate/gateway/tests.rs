//! Translation of Gateway API objects: expectations from the Gateway API v1 reference
//! (`ListenerConditionReason`, `RouteConditionReason`, `HTTPRouteRule` precedence,
//! `ReferenceGrant`). Request-level expectations of the conformance suite are in
//! tests/l7_gateway.rs.

use std::sync::Arc;

use super::{
    super::fixtures::{mk_cert_pem, mk_tls_secret},
    test_support::{cond, snapshot, snapshot_with},
};
use crate::{
    model::{ObjectKind, ObjectRef, RouteAction, Snapshot, StatusCondition},
    store::Object,
};

fn gateway<'a>(s: &'a Snapshot, ns: &str, name: &str) -> &'a crate::model::GatewayStatusOut {
    &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, ns, name)]
}

fn route_parent<'a>(s: &'a Snapshot, ns: &str, name: &str) -> &'a [StatusCondition] {
    &s.gateway_status.routes[&ObjectRef::new(ObjectKind::HTTPRoute, ns, name)][0].conditions
}

fn route(name: &str, ns: &str, parent: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n{extra}"
    )
}

#[test]
fn only_classes_of_our_controller_and_their_gateways_get_status() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mine, namespace: app, generation: 3}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: app}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#,
    );
    let classes: Vec<&str> = s
        .gateway_status
        .classes
        .keys()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(classes, ["xdp"]);
    assert_eq!(
        cond(
            &s.gateway_status.classes.values().next().unwrap()[..],
            "Accepted"
        ),
        (true, "Accepted")
    );
    assert_eq!(s.gateway_status.gateways.len(), 1);
    let gw = gateway(&s, "app", "mine");
    assert_eq!(cond(&gw.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&gw.conditions, "Programmed"), (true, "Programmed"));
    assert_eq!(gw.conditions[0].observed_generation, 3);
    let l = &gw.listeners[0];
    assert_eq!(
        l.supported_kinds,
        ["HTTPRoute", "GRPCRoute"]
            .map(|k| ("gateway.networking.k8s.io".to_string(), k.to_string()))
    );
    for (t, want) in [
        ("Accepted", (true, "Accepted")),
        ("Programmed", (true, "Programmed")),
        ("ResolvedRefs", (true, "ResolvedRefs")),
        ("Conflicted", (false, "NoConflicts")),
    ] {
        assert_eq!(cond(&l.conditions, t), want, "{t}");
    }
}

/// `ListenerConditionReason`: PortUnavailable (here: a port outside --gateway-listener-ports),
/// InvalidRouteKinds, HostnameConflict / ProtocolConflict,
/// InvalidCertificateRef and RefNotPermitted.
#[test]
fn listener_conditions_say_why() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: other-port, port: 30080, protocol: HTTP}
  - {name: tcp, port: 80, protocol: example.com/sctp}
  - {name: kinds, port: 80, protocol: HTTP, hostname: k.example, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
  - {name: dup-a, port: 443, protocol: HTTPS, hostname: d.example, tls: {certificateRefs: [{name: missing}]}}
  - {name: dup-b, port: 443, protocol: HTTPS, hostname: d.example, tls: {certificateRefs: [{name: missing}]}}
"#,
    );
    let gw = gateway(&s, "app", "gw");
    let l = |i: usize| &gw.listeners[i].conditions;
    assert_eq!(cond(l(0), "Accepted"), (false, "PortUnavailable"));
    assert_eq!(cond(l(0), "Programmed"), (false, "Invalid"));
    // `tcp` shares port 80 with HTTP listeners: a protocol conflict, which is the reason
    // it is not accepted (its protocol is unsupported too).
    assert_eq!(cond(l(1), "Accepted"), (false, "ProtocolConflict"));
    assert_eq!(cond(l(1), "Conflicted"), (true, "ProtocolConflict"));
    assert_eq!(cond(l(2), "ResolvedRefs"), (false, "InvalidRouteKinds"));
    assert!(gw.listeners[2].supported_kinds.is_empty());
    assert_eq!(cond(l(3), "Conflicted"), (true, "HostnameConflict"));
    assert_eq!(cond(l(3), "ResolvedRefs"), (false, "InvalidCertificateRef"));
    // Conflicted listeners are not accepted (`kinds` conflicts with `tcp`), so none is.
    assert_eq!(cond(l(2), "Accepted"), (false, "ProtocolConflict"));
    assert_eq!(cond(l(3), "Accepted"), (false, "HostnameConflict"));
    assert_eq!(cond(l(3), "Programmed"), (false, "HostnameConflict"));
    assert_eq!(
        cond(&gw.conditions, "Accepted"),
        (false, "ListenersNotValid")
    );
    assert_eq!(cond(&gw.conditions, "Programmed"), (false, "Invalid"));
}

/// A certificate in another namespace needs a ReferenceGrant from Gateways of the Gateway's
/// namespace to that Secret; with it the listener's hostname gets the certificate.
#[test]
fn https_listener_certificate_across_namespaces_needs_a_reference_grant() {
    let (crt, key) = mk_cert_pem(&["secure.example"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("certs", "tls", &crt, &key)));
    let gw = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: https, port: 443, protocol: HTTPS, hostname: secure.example, tls: {certificateRefs: [{name: tls, namespace: certs}]}}
"#;
    let s = snapshot_with(gw, vec![secret.clone()]);
    assert_eq!(
        cond(
            &gateway(&s, "app", "gw").listeners[0].conditions,
            "ResolvedRefs"
        ),
        (false, "RefNotPermitted")
    );
    assert!(s.l7.certificates.is_empty());
    let grant = r#"---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: app}]
  to: [{group: "", kind: Secret}]
"#;
    let s = snapshot_with(&format!("{gw}{grant}"), vec![secret]);
    let l = &gateway(&s, "app", "gw").listeners[0];
    assert_eq!(cond(&l.conditions, "ResolvedRefs"), (true, "ResolvedRefs"));
    assert_eq!(cond(&l.conditions, "Programmed"), (true, "Programmed"));
    assert_eq!(s.l7.certificates["secure.example"].secret.name, "tls");
}

/// `allowedRoutes.namespaces.from: Selector` reads the labels of the route's Namespace;
/// routes from elsewhere are `NotAllowedByListeners`. A route attached to a hostname-less
/// listener counts in `attachedRoutes`.
#[test]
fn namespace_selector_and_attached_routes() {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: app, labels: {{team: a}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: other, labels: {{team: b}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: xdp
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes: {{namespaces: {{from: Selector, selector: {{matchExpressions: [{{key: team, operator: In, values: [a]}}]}}}}}}
{}{}"#,
        route(
            "r",
            "app",
            "{name: gw, namespace: infra}",
            "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route("r", "other", "{name: gw, namespace: infra}", ""),
    );
    let s = snapshot(&yaml);
    assert_eq!(
        cond(route_parent(&s, "app", "r"), "Accepted"),
        (true, "Accepted")
    );
    assert_eq!(
        cond(route_parent(&s, "other", "r"), "Accepted"),
        (false, "NotAllowedByListeners")
    );
    assert_eq!(gateway(&s, "infra", "gw").listeners[0].attached_routes, 1);
    assert!(s.l7.any_host.is_some());
}

/// Precedence across routes (HTTPRouteRule docs): equal matches go to the oldest route, then
/// to `namespace/name` alphabetically.
#[test]
fn equal_matches_go_to_the_oldest_route_then_by_name() {
    let yaml = String::from(
        r#"
apiVersion: v1
kind: Service
metadata: {name: old, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: young, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-young, namespace: app, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /x}}], backendRefs: [{name: young, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: z-old, namespace: app, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /x}}], backendRefs: [{name: old, port: 80}]}]
"#,
    );
    let s = snapshot(&yaml);
    let names: Vec<&str> =
        s.l7.any_host
            .as_ref()
            .unwrap()
            .routes
            .iter()
            .map(|r| r.origin.object.name.as_str())
            .collect();
    assert_eq!(names, ["z-old", "a-young"]);
}

/// An unresolvable backendRef keeps its weight for 500s; a rule with none resolvable answers
/// 500.
#[test]
fn invalid_backend_shares() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}"#,
        route(
            "mixed",
            "app",
            "{name: gw}",
            "  hostnames: [mixed.example]\n  rules: [{backendRefs: [{name: web, port: 8080, weight: 3}, {name: gone, port: 80, weight: 1}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let r = &s.l7.hosts["mixed.example"].routes[0];
    assert!(matches!(&r.action, RouteAction::Forward(u) if u.len() == 1 && u[0].weight == 3));
    assert_eq!(r.policy.gateway.as_ref().unwrap().invalid_weight, 1);
    assert_eq!(
        cond(route_parent(&s, "app", "mixed"), "ResolvedRefs"),
        (false, "BackendNotFound")
    );
}

/// A backendRef to an ExternalName Service is refused as an unsupported kind of backend
/// (`BackendObjectReference.kind`: "Implementations SHOULD NOT support ExternalName
/// Services"): `ResolvedRefs: False, InvalidKind` with a message naming the type, and its
/// share of requests gets 500, never sent to a Service without endpoints.
#[test]
fn an_external_name_backend_ref_is_invalid_kind() {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: app}}
spec: {{type: ExternalName, externalName: api.example.com, ports: [{{port: 443}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}"#,
        route(
            "mixed",
            "app",
            "{name: gw}",
            "  hostnames: [mixed.example]\n  rules: [{backendRefs: [{name: web, port: 8080, weight: 3}, {name: ext, port: 443, weight: 1}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let r = &s.l7.hosts["mixed.example"].routes[0];
    assert!(matches!(&r.action, RouteAction::Forward(u) if u.len() == 1 && u[0].weight == 3));
    assert_eq!(r.policy.gateway.as_ref().unwrap().invalid_weight, 1);
    let p = route_parent(&s, "app", "mixed");
    assert_eq!(cond(p, "ResolvedRefs"), (false, "InvalidKind"));
    let message = &p
        .iter()
        .find(|c| c.type_ == "ResolvedRefs")
        .unwrap()
        .message;
    assert!(
        message.contains("Service app/ext is of type ExternalName"),
        "{message}"
    );
}

/// Filters that are not implemented are never skipped (HTTPRouteFilter.type: "If a reference
/// to a custom filter type cannot be resolved, the filter MUST NOT be skipped. Instead,
/// requests that would have been processed by that filter MUST receive a HTTP error
/// response"): an `ExtensionRef` (ResolvedRefs `InvalidKind`: "a reference to an unknown or
/// unsupported Group and/or Kind") or `ExternalAuth` rule keeps its matches and answers 500,
/// ahead of the route's broader rules, which stay served; the route stays Accepted; a
/// backendRef's own such filter takes that backendRef's share. The diagnostics carry the
/// status's reasons.
#[test]
fn unimplemented_filters_answer_500_and_keep_their_matches() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}{}{}"#,
        route(
            "ext",
            "app",
            "{name: gw}",
            "  hostnames: [ext.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: web, port: 8080}}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /ext}}]
    filters: [{type: ExtensionRef, extensionRef: {group: x.example, kind: Thing, name: t}}]
    backendRefs: [{name: web, port: 8080}]
  - backendRefs: [{name: web, port: 8080}]
"
        ),
        route(
            "auth",
            "app",
            "{name: gw}",
            "  hostnames: [auth.example]\n  rules: [{filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: web, port: 8080}}}], backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "per-backend",
            "app",
            "{name: gw}",
            "  hostnames: [be.example]\n  rules: [{backendRefs: [{name: web, port: 8080, weight: 1}, {name: web, port: 8080, weight: 2, filters: [{type: ExtensionRef, extensionRef: {group: x.example, kind: Thing, name: t}}]}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let routes = &s.l7.hosts["ext.example"].routes;
    let by_path = |p: &str| {
        routes
            .iter()
            .find(|r| r.origin.written_path.as_deref() == Some(p))
            .unwrap_or_else(|| panic!("no route for {p}"))
    };
    for p in ["/admin", "/ext"] {
        assert!(
            matches!(&by_path(p).action, RouteAction::Respond { status: 500, .. }),
            "{p}: {:?}",
            by_path(p).action
        );
    }
    assert!(matches!(by_path("/").action, RouteAction::Forward(_)));
    let c = route_parent(&s, "app", "ext");
    assert_eq!(cond(c, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(c, "ResolvedRefs"), (false, "UnsupportedValue"));
    assert!(!c.iter().any(|c| c.type_ == "PartiallyInvalid"), "{c:?}");
    let msg = &c
        .iter()
        .find(|c| c.type_ == "ResolvedRefs")
        .unwrap()
        .message;
    assert!(
        msg.contains("rule 0") && msg.contains("ExternalAuth"),
        "{msg}"
    );
    let d = |name: &str| {
        s.diagnostics
            .iter()
            .filter(|d| d.object.name == name)
            .map(|d| d.reason.as_str())
            .collect::<Vec<_>>()
    };
    let mut reasons = d("ext");
    reasons.sort();
    assert_eq!(reasons, ["InvalidKind", "UnsupportedValue"]);
    let r = &s.l7.hosts["auth.example"].routes[0];
    assert!(matches!(r.action, RouteAction::Respond { status: 500, .. }));
    let r = &s.l7.hosts["be.example"].routes[0];
    assert!(matches!(&r.action, RouteAction::Forward(u) if u.len() == 1 && u[0].weight == 1));
    assert_eq!(r.policy.gateway.as_ref().unwrap().invalid_weight, 2);
    assert_eq!(
        cond(route_parent(&s, "app", "per-backend"), "ResolvedRefs"),
        (false, "InvalidKind")
    );
}

/// `RequestMirror` (HTTPRequestMirrorFilter): the copy's backend resolves as a backendRef
/// does; one that does not is `ResolvedRefs: False` while the rule is still served.
/// `timeouts` (HTTPRouteTimeouts): `request` on the rule's policy, `backendRequest` as the
/// read timeout, `0s` as none; a malformed duration keeps the rule out.
#[test]
fn request_mirrors_and_timeouts() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}{}{}"#,
        route(
            "mirror",
            "app",
            "{name: gw}",
            "  hostnames: [mirror.example]\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 8080}}}], backendRefs: [{name: web, port: 8080}], timeouts: {request: 1m30s, backendRequest: 500ms}}]\n"
        ),
        route(
            "lost",
            "app",
            "{name: gw}",
            "  hostnames: [lost.example]\n  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: gone, port: 80}}}], backendRefs: [{name: web, port: 8080}], timeouts: {request: 0s}}]\n"
        ),
        route(
            "bad",
            "app",
            "{name: gw}",
            "  hostnames: [bad.example]\n  rules: [{backendRefs: [{name: web, port: 8080}], timeouts: {request: 1d}}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let r = &s.l7.hosts["mirror.example"].routes[0];
    let g = r.policy.gateway.as_ref().unwrap();
    assert_eq!(g.mirrors.len(), 1);
    assert_eq!(g.mirrors[0].upstream.service.name, "web");
    assert_eq!(
        (g.mirrors[0].numerator, g.mirrors[0].denominator),
        (100, 100)
    );
    assert_eq!(g.request_timeout, Some(std::time::Duration::from_secs(90)));
    assert_eq!(
        r.policy.timeouts.read,
        Some(std::time::Duration::from_millis(500))
    );
    let r = &s.l7.hosts["lost.example"].routes[0];
    let g = r.policy.gateway.as_ref().unwrap();
    assert!(g.mirrors.is_empty() && g.request_timeout.is_none());
    assert!(matches!(r.action, RouteAction::Forward(_)));
    assert_eq!(
        cond(route_parent(&s, "app", "lost"), "ResolvedRefs"),
        (false, "BackendNotFound")
    );
    assert!(!s.l7.hosts.contains_key("bad.example"));
    assert_eq!(
        cond(route_parent(&s, "app", "bad"), "Accepted"),
        (false, "UnsupportedValue")
    );
}

/// `retry` (experimental channel, GEP-1731; the conformance test HTTPRouteRetry's rules):
/// the rule's route retries its codes (and connection errors) `attempts` times, repeating
/// endpoints, with the backoff; a rule without `retry` keeps the proxy's defaults (no status
/// retried); a value the CRD refuses keeps the rule out (`Accepted: False, UnsupportedValue`).
/// An `ExternalAuth` filter, which the experimental channel also adds, keeps its rule out
/// rather than serving it unauthenticated.
#[test]
fn httproute_retry_is_the_routes_retry_policy() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}{}{}{}"#,
        route(
            "retries",
            "app",
            "{name: gw}",
            "  hostnames: [retry.example]\n  rules:\n  - {matches: [{path: {type: PathPrefix, value: /code-500-attempts-3}}], retry: {codes: [500], attempts: 3, backoff: 100ms}, backendRefs: [{name: web, port: 8080}]}\n  - {matches: [{path: {type: PathPrefix, value: /none}}], backendRefs: [{name: web, port: 8080}]}\n"
        ),
        route(
            "bad-code",
            "app",
            "{name: gw}",
            "  hostnames: [bad-code.example]\n  rules: [{retry: {codes: [200]}, backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "bad-backoff",
            "app",
            "{name: gw}",
            "  hostnames: [bad-backoff.example]\n  rules: [{retry: {backoff: soon}, backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "ext-auth",
            "app",
            "{name: gw}",
            "  hostnames: [ext-auth.example]\n  rules: [{filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: web, port: 8080}}}], backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let routes = &s.l7.hosts["retry.example"].routes;
    let of = |path: &str| {
        let r = (routes.iter())
            .find(|r| matches!(&r.matches.path, crate::model::PathMatch::Prefix(p) if p == path))
            .unwrap_or_else(|| panic!("no route {path}"));
        r.policy.next_upstream.clone()
    };
    let n = of("/code-500-attempts-3");
    let when = n.when.unwrap();
    assert_eq!(when.statuses, [500]);
    assert!(when.error && when.timeout);
    assert_eq!(n.tries, Some(4), "three retries");
    assert_eq!(n.backoff, Some(std::time::Duration::from_millis(100)));
    assert!(n.repeat_endpoints);
    assert_eq!(of("/none"), crate::model::NextUpstream::default());
    assert_eq!(
        cond(route_parent(&s, "app", "retries"), "Accepted"),
        (true, "Accepted")
    );
    for r in ["bad-code", "bad-backoff"] {
        assert!(!s.l7.hosts.contains_key(&format!("{r}.example")), "{r}");
        let reason = cond(route_parent(&s, "app", r), "Accepted");
        assert!(!reason.0, "{r}: {reason:?}");
    }
    // A filter not implemented is not skipped: its rule answers 500 (HTTPRouteFilter.type).
    let r = &s.l7.hosts["ext-auth.example"].routes[0];
    assert!(matches!(r.action, RouteAction::Respond { status: 500, .. }));
}

/// A route attached only to the HTTP listener is not served over TLS, one attached only to
/// the HTTPS listener not over plain HTTP, one attached to both over either (a route attaches
/// to listeners, and the proxy tells them apart by the connection's scheme).
#[test]
fn routes_are_served_only_through_the_listeners_they_attach_to() {
    let (crt, key) = mk_cert_pem(&["both.example"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("app", "tls", &crt, &key)));
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls}}]}}}}
{}{}{}"#,
        route(
            "plain",
            "app",
            "{name: gw, sectionName: http}",
            "  rules: [{matches: [{path: {type: Exact, value: /plain}}], backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "secure",
            "app",
            "{name: gw, sectionName: https}",
            "  rules: [{matches: [{path: {type: Exact, value: /secure}}], backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "both",
            "app",
            "{name: gw}",
            "  rules: [{matches: [{path: {type: Exact, value: /both}}], backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    );
    let s = snapshot_with(&yaml, vec![secret]);
    let (table, errors) = crate::proxy::router::RouteTable::build(&s.l7, Arc::clone);
    assert!(errors.is_empty());
    let headers = http::HeaderMap::new();
    let served = |path: &str, tls: bool| {
        let view = crate::proxy::router::RequestView {
            host: "any.example",
            path,
            query: None,
            method: "GET",
            headers: &headers,
            tls,
            listener_port: None,
            gateway_listener: false,
            local_addr: None,
        };
        matches!(
            table.lookup(&view),
            crate::proxy::router::Lookup::Route { .. }
        )
    };
    assert!(served("/plain", false) && !served("/plain", true));
    assert!(served("/secure", true) && !served("/secure", false));
    assert!(served("/both", true) && served("/both", false));
    assert!(
        s.l7.default_certificate.is_some(),
        "the hostname-less HTTPS listener's certificate"
    );
}

/// Listener ports follow the Gateways: an accepted HTTP or HTTPS listener on a port inside
/// --gateway-listener-ports (default 1024-29999) becomes a port the proxy opens, with its
/// protocol; the oldest Gateway claims a port, a newer one wanting it with the other protocol
/// gets `PortUnavailable`, as do the proxy's port of the other protocol and a port outside the
/// range. A route is served only on the ports of the listeners it attached to.
#[test]
fn listener_ports_follow_the_gateways() {
    let (crt, key) = mk_cert_pem(&["secure.example"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("app", "tls", &crt, &key)));
    let s = snapshot_with(
        &format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: old, namespace: app, creationTimestamp: "2026-01-01T00:00:00Z"}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: alt, port: 8080, protocol: HTTP}}
  - {{name: alt-tls, port: 8090, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: new, namespace: app, creationTimestamp: "2026-02-01T00:00:00Z"}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: clash, port: 8080, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls}}]}}}}
  - {{name: shared, port: 8090, protocol: HTTPS, hostname: secure.example, tls: {{certificateRefs: [{{name: tls}}]}}}}
  - {{name: plain-on-443, port: 443, protocol: HTTP}}
  - {{name: privileged, port: 22, protocol: HTTP}}
  - {{name: nodeport, port: 30080, protocol: HTTP}}
{}{}"#,
            route(
                "on-alt",
                "app",
                "{name: old, sectionName: alt}",
                "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
            ),
            route(
                "on-old",
                "app",
                "{name: old}",
                "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
            ),
        ),
        vec![secret],
    );
    use crate::model::ListenerProtocol::{Http, Https};
    assert_eq!(
        s.l7.gateway_listeners,
        std::collections::BTreeMap::from([(8080, Http), (8090, Https)]),
        "the proxy's own port 80 is not among the ports to open"
    );
    let old = gateway(&s, "app", "old");
    for l in &old.listeners {
        assert_eq!(
            cond(&l.conditions, "Programmed"),
            (true, "Programmed"),
            "{}",
            l.name
        );
    }
    let new = gateway(&s, "app", "new");
    let l = |i: usize| &new.listeners[i].conditions;
    assert_eq!(
        cond(l(0), "Accepted"),
        (false, "PortUnavailable"),
        "HTTPS on old's HTTP port"
    );
    assert_eq!(
        cond(l(1), "Accepted"),
        (true, "Accepted"),
        "HTTPS beside old's HTTPS"
    );
    for i in 2..5 {
        assert_eq!(
            cond(l(i), "Accepted"),
            (false, "PortUnavailable"),
            "{}",
            new.listeners[i].name
        );
    }
    assert_eq!(
        cond(&new.conditions, "Accepted"),
        (true, "ListenersNotValid")
    );
    assert_eq!(
        s.l7.gateway_https_hosts,
        std::collections::BTreeMap::from([(8090, vec!["".to_string(), "secure.example".into()])])
    );
    // Each route on its listeners' ports only.
    let routes = &s.l7.any_host.as_ref().expect("hostname-less routes").routes;
    let ports_of = |name: &str| {
        routes
            .iter()
            .find(|r| r.origin.object.name == name)
            .and_then(|r| r.matches.listener_ports().map(<[u16]>::to_vec))
    };
    assert_eq!(ports_of("on-alt"), Some(vec![8080]));
    assert_eq!(ports_of("on-old"), Some(vec![80, 8080, 8090]));
}

/// A port the proxy could not bind turns its listener `Accepted: False, PortUnavailable`
/// (the spec's reason for a port in use) and `Programmed: False, Pending`; a Gateway with no
/// listener left programmed is not programmed. Other listeners keep their conditions.
#[test]
fn unbound_ports_show_on_their_listeners() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: alt, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: both, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
"#,
    );
    assert_eq!(
        s.gateway_status.with_unbound(&Default::default()),
        *s.gateway_status
    );
    let unbound = std::collections::BTreeMap::from([(8080, "Address in use".to_string())]);
    let status = s.gateway_status.with_unbound(&unbound);
    let gw = &status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", "gw")];
    assert_eq!(
        cond(&gw.listeners[0].conditions, "Accepted"),
        (false, "PortUnavailable")
    );
    assert!(
        gw.listeners[0].conditions[0]
            .message
            .contains("Address in use")
    );
    assert_eq!(
        cond(&gw.listeners[0].conditions, "Programmed"),
        (false, "Pending")
    );
    assert_eq!(cond(&gw.conditions, "Programmed"), (false, "Invalid"));
    let both = &status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", "both")];
    assert_eq!(
        cond(&both.listeners[0].conditions, "Programmed"),
        (true, "Programmed")
    );
    assert_eq!(
        cond(&both.listeners[1].conditions, "Programmed"),
        (false, "Pending")
    );
    assert_eq!(cond(&both.conditions, "Programmed"), (true, "Programmed"));
    assert_eq!(
        cond(&both.conditions, "Accepted"),
        (true, "ListenersNotValid")
    );
}

/// GRPCRoute (Gateway API v1): attaches like an HTTPRoute to listeners whose
/// `allowedRoutes.kinds` take it (HTTP and HTTPS take both kinds by default), gets the same
/// route parent conditions, and forwards to its backends over HTTP/2 (gRPC).
#[test]
fn grpc_routes_attach_get_status_and_speak_http2() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: grpc.example}
  - {name: http-only, port: 80, protocol: HTTP, hostname: h.example, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app, generation: 2}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{method: {service: pkg.Svc, method: Echo}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{method: {service: pkg.Svc}}]
    backendRefs: [{name: missing, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: refused, namespace: app}
spec:
  parentRefs: [{name: gw, sectionName: http-only}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#,
    );
    let parent = |name: &str| {
        s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, "app", name)][0]
            .conditions
            .clone()
    };
    let g = parent("g");
    assert_eq!(cond(&g, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&g, "ResolvedRefs"), (false, "BackendNotFound"));
    assert_eq!(g[0].observed_generation, 2);
    assert_eq!(
        cond(&parent("refused"), "Accepted"),
        (false, "NotAllowedByListeners")
    );
    let gw = gateway(&s, "app", "gw");
    assert_eq!(gw.listeners[0].attached_routes, 1);
    assert_eq!(gw.listeners[1].attached_routes, 0);
    let routes = &s.l7.hosts["grpc.example"].routes;
    assert_eq!(routes.len(), 2);
    assert_eq!(
        routes[0].matches.path,
        crate::model::PathMatch::Exact("/pkg.Svc/Echo".into())
    );
    let RouteAction::Forward(backends) = &routes[0].action else {
        panic!("forwards: {:?}", routes[0].action)
    };
    assert_eq!(
        backends[0].upstream.protocol,
        crate::model::BackendProtocol::Grpc
    );
    // The missing Service's requests get UNAVAILABLE (GRPCRouteRule.backendRefs), which the
    // proxy sends for the rule's 503 (grpc_reject::code_of).
    assert!(matches!(
        routes[1].action,
        RouteAction::Respond { status: 503, .. }
    ));
}

/// A GRPCRoute's `ExtensionRef` filter (GRPCRouteFilter.type: "MUST NOT be skipped") keeps its
/// rule's matches with an error answer (500, INTERNAL for gRPC clients), and the route's
/// ResolvedRefs says `InvalidKind`.
#[test]
fn grpc_route_extension_ref_answers_an_error() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: grpc.example}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: pkg.Admin}}]
    filters: [{type: ExtensionRef, extensionRef: {group: x.example, kind: Auth, name: a}}]
    backendRefs: [{name: web, port: 8080}]
  - backendRefs: [{name: web, port: 8080}]
"#,
    );
    let c =
        &s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, "app", "g")][0].conditions;
    assert_eq!(cond(c, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(c, "ResolvedRefs"), (false, "InvalidKind"));
    let routes = &s.l7.hosts["grpc.example"].routes;
    let admin = routes
        .iter()
        .find(|r| r.matches.path == crate::model::PathMatch::Prefix("/pkg.Admin".into()))
        .expect("the rule keeps its match");
    assert!(matches!(
        admin.action,
        RouteAction::Respond { status: 500, .. }
    ));
}

/// `GrpcRouteSpec.hostnames`: an HTTPRoute and a GRPCRoute with a hostname in common on one
/// listener: only the older is accepted (then the first by `namespace/name`); the other's
/// parent says so and it is not served there. Disjoint hostnames: both are served.
#[test]
fn http_and_grpc_routes_sharing_a_hostname_on_a_listener_accept_the_older() {
    let routes = |grpc_host: &str| {
        format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: app, creationTimestamp: "2024-01-01T00:00:00Z"}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [api.example]
  rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: rpc, namespace: app, creationTimestamp: "2024-06-01T00:00:00Z"}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: ["{grpc_host}"]
  rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]
"#
        )
    };
    let grpc = |s: &Snapshot| {
        s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, "app", "rpc")][0]
            .conditions
            .clone()
    };
    let s = snapshot(&routes("*.example"));
    assert_eq!(cond(&grpc(&s), "Accepted"), (false, "HostnameConflict"));
    assert_eq!(
        cond(route_parent(&s, "app", "web"), "Accepted"),
        (true, "Accepted")
    );
    assert!(!s.l7.gateway_wildcard_hosts.contains_key("example"));
    assert_eq!(s.l7.hosts["api.example"].routes.len(), 1);
    assert_eq!(gateway(&s, "app", "gw").listeners[0].attached_routes, 1);
    let s = snapshot(&routes("rpc.example"));
    assert_eq!(cond(&grpc(&s), "Accepted"), (true, "Accepted"));
    assert!(s.l7.hosts.contains_key("rpc.example"));
    assert_eq!(gateway(&s, "app", "gw").listeners[0].attached_routes, 2);
}

/// A route that lost a hostname conflict is not attached, so it makes no third route lose
/// (found by a conformance walk): the oldest HTTPRoute takes `a.example` from a GRPCRoute of
/// `a.example` and `b.example`; a younger HTTPRoute of `b.example` then clashes with nothing
/// attached and is accepted and served.
#[test]
fn a_route_that_lost_a_hostname_conflict_makes_no_other_route_lose() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a-http, namespace: app, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.example]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g-grpc, namespace: app, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.example, b.example]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-http, namespace: app, creationTimestamp: "2024-03-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  hostnames: [b.example]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#,
    );
    let grpc = &s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, "app", "g-grpc")][0];
    assert_eq!(
        cond(&grpc.conditions, "Accepted"),
        (false, "HostnameConflict")
    );
    assert_eq!(
        cond(route_parent(&s, "app", "a-http"), "Accepted"),
        (true, "Accepted")
    );
    assert_eq!(
        cond(route_parent(&s, "app", "b-http"), "Accepted"),
        (true, "Accepted")
    );
    assert_eq!(s.l7.hosts["b.example"].routes.len(), 1);
    assert_eq!(gateway(&s, "app", "gw").listeners[0].attached_routes, 2);
}

/// BackendTLSPolicy (Gateway API v1): the Service's backends are spoken to over TLS with the
/// policy's hostname and CA (gRPC over TLS for GRPCRoutes); the policy gets an ancestor per
/// Gateway with `Accepted` and `ResolvedRefs`; a younger policy on the same target is
/// `Conflicted`; a CA reference of another kind is `InvalidKind`, and with no usable CA the
/// policy is `NoValidCACertificate` and the backend keeps TLS with no root (connections fail).
#[test]
fn backend_tls_policies_make_verified_https_backends() {
    let (ca, _) = mk_cert_pem(&["web.app.svc"]);
    let indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: rpc, namespace: app}}
spec: {{ports: [{{name: grpc, port: 9000}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: bad, namespace: app}}
spec: {{ports: [{{port: 443}}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: ca, namespace: app}}
data:
  ca.crt: |
{indented}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: web-tls, namespace: app, generation: 4, creationTimestamp: "2024-01-01T00:00:00Z"}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca}}]
    hostname: web.app.svc
    subjectAltNames: [{{type: URI, uri: "spiffe://c/ns/app/sa/web"}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: web-tls-2, namespace: app, creationTimestamp: "2024-06-01T00:00:00Z"}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web}}]
  validation: {{wellKnownCACertificates: System, hostname: other.svc}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: rpc-tls, namespace: app}}
spec:
  targetRefs: [{{group: "", kind: Service, name: rpc, sectionName: grpc}}]
  validation: {{wellKnownCACertificates: System, hostname: rpc.example}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: bad-tls, namespace: app}}
spec:
  targetRefs: [{{group: "", kind: Service, name: bad}}]
  validation:
    caCertificateRefs: [{{group: "", kind: Secret, name: ca}}]
    hostname: bad.svc
{}{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: g, namespace: app}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [rpc.example]
  rules: [{{backendRefs: [{{name: rpc, port: 9000}}]}}]
"#,
        route(
            "r",
            "app",
            "{name: gw}",
            "  hostnames: [web.example]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "b",
            "app",
            "{name: gw}",
            "  hostnames: [bad.example]\n  rules: [{backendRefs: [{name: bad, port: 443}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let upstream = |host: &str| {
        let RouteAction::Forward(u) = &s.l7.hosts[host].routes[0].action else {
            panic!("{host} forwards")
        };
        u[0].upstream.clone()
    };
    let web = upstream("web.example");
    assert_eq!(web.protocol, crate::model::BackendProtocol::Https);
    let tls = web.tls.as_ref().expect("verified TLS");
    assert_eq!(tls.hostname, "web.app.svc");
    assert!(matches!(&tls.roots, crate::model::TlsRoots::Certificates(c) if c.len() == 1));
    assert_eq!(tls.subject_alt_names, ["spiffe://c/ns/app/sa/web"]);
    let rpc = upstream("rpc.example");
    assert_eq!(rpc.protocol, crate::model::BackendProtocol::Grpcs);
    assert_eq!(
        rpc.tls.as_ref().unwrap().roots,
        crate::model::TlsRoots::System
    );
    let bad = upstream("bad.example");
    assert_eq!(
        bad.tls.as_ref().unwrap().roots,
        crate::model::TlsRoots::Certificates(vec![])
    );

    let policy = |name: &str| {
        let a =
            &s.gateway_status.policies[&ObjectRef::new(ObjectKind::BackendTLSPolicy, "app", name)];
        assert_eq!(a.len(), 1, "{name}: one ancestor, the Gateway");
        assert_eq!(
            (a[0].parent_ref.kind.as_str(), a[0].parent_ref.name.as_str()),
            ("Gateway", "gw")
        );
        a[0].conditions.clone()
    };
    let web = policy("web-tls");
    assert_eq!(cond(&web, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&web, "ResolvedRefs"), (true, "ResolvedRefs"));
    assert_eq!(web[0].observed_generation, 4);
    assert_eq!(cond(&policy("rpc-tls"), "Accepted"), (true, "Accepted"));
    let bad = policy("bad-tls");
    assert_eq!(cond(&bad, "Accepted"), (false, "NoValidCACertificate"));
    assert_eq!(cond(&bad, "ResolvedRefs"), (false, "InvalidKind"));
    // The younger policy on `web` lost: same ancestor, Conflicted.
    assert_eq!(
        cond(&policy("web-tls-2"), "Accepted"),
        (false, "Conflicted")
    );
    // Problems are diagnostics too (Events, `explain`).
    let reasons: Vec<(&str, &str)> = s
        .diagnostics
        .iter()
        .filter(|d| d.object.kind == ObjectKind::BackendTLSPolicy)
        .map(|d| (d.object.name.as_str(), d.reason.as_str()))
        .collect();
    for want in [
        ("bad-tls", "NoValidCACertificate"),
        ("bad-tls", "InvalidKind"),
        ("web-tls-2", "Conflicted"),
    ] {
        assert!(reasons.contains(&want), "{want:?} in {reasons:?}");
    }
}

/// A GRPCRoute attaches through the same core as an HTTPRoute, so it is served on the port
/// of the listener it attached to, which the proxy opens (a dynamic Gateway listener port),
/// and nowhere else; its status sits with every other route kind's.
#[test]
fn grpc_routes_are_served_on_their_listeners_ports() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: rpc, port: 9090, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [rpc.example]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#,
    );
    assert_eq!(
        s.l7.gateway_listeners,
        std::collections::BTreeMap::from([(9090, crate::model::ListenerProtocol::Http)])
    );
    let routes = &s.l7.hosts["rpc.example"].routes;
    assert_eq!(routes[0].matches.listener_ports(), Some(&[9090][..]));
    assert_eq!(
        cond(
            &s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, "app", "g")][0]
                .conditions,
            "Accepted"
        ),
        (true, "Accepted")
    );
    assert_eq!(gateway(&s, "app", "gw").listeners[0].attached_routes, 1);
}

/// Conformance GatewayListenerUnsupportedProtocol (v1.6): a listener of a protocol we do not
/// serve is `Accepted: False, UnsupportedProtocol` with no supportedKinds and no routes; the
/// Gateway is accepted only while another listener is (`ListenersNotValid` either way).
#[test]
fn unsupported_protocol_listeners_leave_the_gateway_accepted_only_with_another() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: only-unsupported, namespace: infra}
spec:
  gatewayClassName: xdp
  listeners: [{name: invalid, port: 1111, protocol: INVALID}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mixed, namespace: infra}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: invalid, port: 1111, protocol: INVALID}
"#,
    );
    let invalid = |gw: &crate::model::GatewayStatusOut| {
        let l = gw.listeners.iter().find(|l| l.name == "invalid").unwrap();
        assert_eq!(
            cond(&l.conditions, "Accepted"),
            (false, "UnsupportedProtocol")
        );
        assert!(l.supported_kinds.is_empty());
        assert_eq!(l.attached_routes, 0);
    };
    let only = gateway(&s, "infra", "only-unsupported");
    invalid(only);
    assert_eq!(
        cond(&only.conditions, "Accepted"),
        (false, "ListenersNotValid")
    );
    let mixed = gateway(&s, "infra", "mixed");
    invalid(mixed);
    assert_eq!(
        cond(&mixed.conditions, "Accepted"),
        (true, "ListenersNotValid")
    );
    let http = mixed.listeners.iter().find(|l| l.name == "http").unwrap();
    assert_eq!(cond(&http.conditions, "Accepted"), (true, "Accepted"));
    assert!(
        (http.supported_kinds.iter())
            .any(|(g, k)| g == "gateway.networking.k8s.io" && k == "HTTPRoute")
    );
    assert_eq!(http.attached_routes, 0);
}

/// Conformance GatewayInvalidParametersRef (v1.6) and `GatewayInfrastructure.parametersRef`:
/// no parameters kind is ours, so a Gateway naming one is rejected, `Accepted: False,
/// InvalidParameters`: it serves nothing (routes on it are not served, its port stays closed)
/// and says so in an Event; a Gateway without one is untouched.
#[test]
fn a_gateway_with_parameters_we_cannot_read_is_rejected() {
    let s = snapshot(&format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: params, namespace: app, generation: 4}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
  infrastructure:
    parametersRef: {{group: invalid.example, kind: InvalidParameters, name: invalid}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: plain, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}{}"#,
        route(
            "on-params",
            "app",
            "{name: params}",
            "  hostnames: [params.example]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "on-plain",
            "app",
            "{name: plain}",
            "  hostnames: [plain.example]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    ));
    let gw = gateway(&s, "app", "params");
    let accepted = gw
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap();
    assert_eq!(
        (accepted.status, accepted.reason.as_str()),
        (false, "InvalidParameters")
    );
    assert_eq!(accepted.observed_generation, 4);
    assert!(!cond(&gw.conditions, "Programmed").0);
    assert!(!cond(&gw.listeners[0].conditions, "Programmed").0);
    assert!(!s.l7.gateway_listeners.contains_key(&8080));
    assert!(!s.l7.hosts.contains_key("params.example"));
    assert!(!cond(route_parent(&s, "app", "on-params"), "Accepted").0);
    assert!(
        s.diagnostics.iter().any(|d| d.object
            == ObjectRef::new(ObjectKind::Gateway, "app", "params")
            && d.reason == "InvalidParameters"),
        "{:?}",
        s.diagnostics
    );
    let plain = gateway(&s, "app", "plain");
    assert_eq!(cond(&plain.conditions, "Accepted"), (true, "Accepted"));
    assert!(s.l7.hosts.contains_key("plain.example"));
}

/// GatewayClassSpec.parametersRef: "If the referent cannot be found, refers to an unsupported
/// kind, or when the data within that resource is malformed, the GatewayClass SHOULD be
/// rejected with the Accepted status condition set to False and an InvalidParameters
/// reason." No parameters kind is ours, so a class of our controller naming one is rejected,
/// with an Event, and a Gateway of that class is not served (nor given status); our other
/// class is untouched.
#[test]
fn a_gateway_class_with_parameters_we_cannot_read_is_rejected() {
    let s = snapshot(&format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: tuned, generation: 2}}
spec:
  controllerName: xdp-ingress.dev/controller
  parametersRef: {{group: example.com, kind: Tuning, name: fast}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: on-tuned, namespace: app}}
spec:
  gatewayClassName: tuned
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: plain, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}{}"#,
        route(
            "on-tuned",
            "app",
            "{name: on-tuned}",
            "  hostnames: [tuned.example]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "on-plain",
            "app",
            "{name: plain}",
            "  hostnames: [plain.example]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    ));
    let tuned = ObjectRef::new(ObjectKind::GatewayClass, "", "tuned");
    let conditions = &s.gateway_status.classes[&tuned];
    assert_eq!(cond(conditions, "Accepted"), (false, "InvalidParameters"));
    assert_eq!(conditions[0].observed_generation, 2);
    assert!(
        (s.diagnostics.iter()).any(|d| d.object == tuned && d.reason == "InvalidParameters"),
        "{:?}",
        s.diagnostics
    );
    let xdp = ObjectRef::new(ObjectKind::GatewayClass, "", "xdp");
    assert_eq!(
        cond(&s.gateway_status.classes[&xdp], "Accepted"),
        (true, "Accepted")
    );
    assert!(!(s.gateway_status.gateways.keys()).any(|g| g.name == "on-tuned"));
    assert!(!s.l7.hosts.contains_key("tuned.example"));
    assert!(s.l7.hosts.contains_key("plain.example"));
}

/// Listener problems become Events on their Gateway (the diagnostics the Event writer and
/// `explain` read), each naming its listener: not accepted (`UnsupportedProtocol`),
/// `HostnameConflict`, `InvalidCertificateRef`; a Gateway none of whose listeners is accepted
/// says `ListenersNotValid` itself. A Gateway without problems has none.
#[test]
fn gateway_listener_problems_become_events() {
    let s = snapshot(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: troubled, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: sctp, port: 9000, protocol: example.com/sctp}
  - {name: a, port: 80, protocol: HTTP, hostname: same.example}
  - {name: b, port: 80, protocol: HTTP, hostname: same.example}
  - {name: tls, port: 443, protocol: HTTPS, hostname: s.example, tls: {certificateRefs: [{name: missing}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hopeless, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: only, port: 1111, protocol: INVALID}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: fine, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"#,
    );
    let events = |name: &str| -> Vec<(String, String)> {
        let r = ObjectRef::new(ObjectKind::Gateway, "app", name);
        (s.diagnostics.iter())
            .filter(|d| d.object == r)
            .map(|d| (d.reason.clone(), d.message.clone()))
            .collect()
    };
    let troubled = events("troubled");
    let has = |reason: &str, listener: &str| {
        troubled
            .iter()
            .any(|(r, m)| r == reason && m.starts_with(&format!("listener {listener}:")))
    };
    assert!(has("UnsupportedProtocol", "sctp"), "{troubled:?}");
    assert!(has("HostnameConflict", "a"), "{troubled:?}");
    assert!(has("HostnameConflict", "b"), "{troubled:?}");
    assert!(has("InvalidCertificateRef", "tls"), "{troubled:?}");
    let hopeless: Vec<String> = events("hopeless").into_iter().map(|(r, _)| r).collect();
    assert_eq!(hopeless, ["ListenersNotValid", "UnsupportedProtocol"]);
    assert!(events("fine").is_empty());
}

/// Gateway API v1.6: a request no listener hostname or route takes is the Gateway's to reject
/// (gRPC: UNIMPLEMENTED); an Ingress host's miss stays ingress-nginx's (its 404). On the
/// proxy's own port, shared by an Ingress and a Gateway listener: a Gateway host's miss and a
/// miss of every host are the Gateway's, an Ingress host's is not; on a port opened for
/// Gateways every miss is.
#[test]
fn misses_are_the_gateways_where_its_listeners_serve() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: http, port: 80, protocol: HTTP, hostname: gw.example}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: shop, namespace: app}}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: shop.test
    http:
      paths:
      - {{path: /api, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 8080}}}}}}}}
{}"#,
        route(
            "exact",
            "app",
            "{name: gw}",
            "  rules: [{matches: [{path: {type: Exact, value: /x}}], backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    let (table, errors) = crate::proxy::router::RouteTable::build(&s.l7, Arc::clone);
    assert!(errors.is_empty());
    let headers = http::HeaderMap::new();
    let miss = |host: &str, port: u16, gateway_listener: bool| {
        let view = crate::proxy::router::RequestView {
            host,
            path: "/nothing",
            query: None,
            method: "POST",
            headers: &headers,
            tls: false,
            listener_port: Some(port),
            gateway_listener,
            local_addr: None,
        };
        match table.lookup(&view) {
            crate::proxy::router::Lookup::NotFound { host, .. } => table.gateway_miss(host, &view),
            other => panic!("{host}: not a miss: {other:?}"),
        }
    };
    assert!(miss("gw.example", 80, false), "a Gateway host, no rule");
    assert!(
        miss("no.matching.host", 80, false),
        "no host, a Gateway port"
    );
    assert!(!miss("shop.test", 80, false), "an Ingress host, no path");
    assert!(miss("shop.test", 8080, true), "a port opened for Gateways");
    assert!(
        !miss("no.matching.host", 81, false),
        "a port no Gateway route is on"
    );
}

/// The daemon's "snapshot live hosts=N" counts every virtual host routing uses, Gateway API
/// routes' ones included: an exact name, a Gateway wildcard and the hostname-less rules.
#[test]
fn host_count_includes_gateway_route_hosts() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
{}{}{}"#,
        route(
            "exact",
            "app",
            "{name: gw}",
            "  hostnames: [a.example]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "wild",
            "app",
            "{name: gw}",
            "  hostnames: ['*.wild.example']\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "any",
            "app",
            "{name: gw}",
            "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    );
    let s = snapshot(&yaml);
    assert_eq!(
        s.l7.host_count(),
        3,
        "{:?}",
        s.l7.hosts.keys().collect::<Vec<_>>()
    );
}

/// The listener `name` of Gateway `app/gw` in `s`.
fn listener<'a>(s: &'a Snapshot, name: &str) -> &'a crate::model::ListenerStatus {
    let gw = gateway(s, "app", "gw");
    (gw.listeners.iter())
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name} in {:?}", gw.listeners))
}

fn kinds(l: &crate::model::ListenerStatus) -> Vec<&str> {
    l.supported_kinds.iter().map(|(_, k)| k.as_str()).collect()
}

/// Conformance GatewayInvalidRouteKind: a listener whose `allowedRoutes.kinds` names only an
/// unknown kind has `ResolvedRefs: False, InvalidRouteKinds` and no `supportedKinds`; listed
/// beside HTTPRoute, the unknown kind is left out and HTTPRoute stays supported.
#[test]
fn gateway_invalid_route_kind() {
    for (listed, want) in [
        ("[{kind: InvalidRoute}]", vec![]),
        (
            "[{kind: InvalidRoute}, {kind: HTTPRoute}]",
            vec!["HTTPRoute"],
        ),
    ] {
        let s = snapshot(&super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            &format!(
                "  listeners:\n  - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}, kinds: {listed}}}}}\n"
            ),
        ));
        let l = listener(&s, "http");
        assert_eq!(kinds(l), want, "{listed}");
        assert_eq!(
            cond(&l.conditions, "ResolvedRefs"),
            (false, "InvalidRouteKinds"),
            "{listed}"
        );
        assert_eq!(l.attached_routes, 0);
    }
}

/// A listener listing a kind it takes and one it does not keeps serving the one it takes:
/// `ResolvedRefs: False, InvalidRouteKinds` (conformance GatewayInvalidRouteKind) with
/// `supportedKinds` [HTTPRoute], `Programmed: True`, its HTTPRoute attached, counted and
/// served; a GRPCRoute it does not list is refused saying so. A listener left with no kind
/// serves nothing. Found by a fresh-user trial (the port was not served at all while the
/// route said Accepted).
#[test]
fn a_listener_with_one_invalid_kind_serves_the_valid_ones() {
    let s = snapshot(&format!(
        "{}{}{}",
        super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            "  listeners:\n  - {name: mixed, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: FooRoute}]}}\n  - {name: none, port: 443, protocol: HTTPS, hostname: none.example, allowedRoutes: {kinds: [{kind: FooRoute}]}, tls: {certificateRefs: [{name: missing}]}}\n",
        ),
        route(
            "r",
            "app",
            "{name: gw, sectionName: mixed}",
            "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app}
spec:
  parentRefs: [{name: gw, sectionName: mixed}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#,
    ));
    let l = listener(&s, "mixed");
    assert_eq!(kinds(l), ["HTTPRoute"]);
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "InvalidRouteKinds")
    );
    assert_eq!(cond(&l.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&l.conditions, "Programmed"), (true, "Programmed"));
    assert_eq!(l.attached_routes, 1);
    assert_eq!(
        cond(route_parent(&s, "app", "r"), "Accepted"),
        (true, "Accepted")
    );
    let any = s.l7.any_host.as_ref().expect("the route is served");
    assert_eq!(any.routes[0].origin.object.name, "r");
    let g =
        &s.gateway_status.routes[&ObjectRef::new(ObjectKind::GRPCRoute, "app", "g")][0].conditions;
    assert_eq!(cond(g, "Accepted"), (false, "NotAllowedByListeners"));
    let msg = &g[0].message;
    assert!(
        msg.contains("listener mixed does not allow GRPCRoutes") && msg.contains("HTTPRoute"),
        "{msg}"
    );
    let none = listener(&s, "none");
    assert!(kinds(none).is_empty());
    assert_eq!(cond(&none.conditions, "Programmed"), (false, "Invalid"));
}

/// Spec (ListenerStatus.attachedRoutes): attachment is "based solely on" `allowedRoutes` and
/// parentRefs; "Listener or Route status does not impact successful attachment ... even if
/// the Accepted condition of an individual Listener is set to False". A route naming a
/// conflicted listener by `sectionName` is attached (`Accepted: True`) and counted there,
/// and not served through it; a namespace selector's refusal says it is the namespaces.
#[test]
fn routes_attach_to_listeners_that_are_not_accepted() {
    let s = snapshot(&format!(
        "{}{}{}",
        super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            "  listeners:\n  - {name: a, port: 80, protocol: HTTP, hostname: d.example}\n  - {name: b, port: 80, protocol: HTTP, hostname: d.example}\n  - {name: sel, port: 80, protocol: HTTP, hostname: s.example, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {listeners: \"yes\"}}}}}\n",
        ),
        route(
            "on-b",
            "app",
            "{name: gw, sectionName: b}",
            "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
        route(
            "on-sel",
            "app",
            "{name: gw, sectionName: sel}",
            "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n"
        ),
    ));
    let b = listener(&s, "b");
    assert_eq!(
        cond(&b.conditions, "Conflicted"),
        (true, "HostnameConflict")
    );
    assert_eq!(
        cond(&b.conditions, "Programmed"),
        (false, "HostnameConflict")
    );
    assert_eq!(b.attached_routes, 1);
    assert_eq!(
        cond(route_parent(&s, "app", "on-b"), "Accepted"),
        (true, "Accepted")
    );
    assert!(
        !s.l7.hosts.contains_key("d.example"),
        "not served through b"
    );
    let c = route_parent(&s, "app", "on-sel");
    assert_eq!(cond(c, "Accepted"), (false, "NotAllowedByListeners"));
    assert!(
        c[0].message
            .contains("from namespace app (allowedRoutes.namespaces)"),
        "{}",
        c[0].message
    );
}

/// Conformance GatewayInvalidTLSConfiguration: a certificateRef to a Secret that does not
/// exist, of another group, of another kind, or to a Secret whose PEM does not parse is
/// `ResolvedRefs: False, InvalidCertificateRef`; HTTPRoute stays a supported kind.
#[test]
fn gateway_invalid_tls_configuration() {
    let malformed = r#"---
apiVersion: v1
kind: Secret
metadata: {name: malformed, namespace: app}
type: kubernetes.io/tls
data: {tls.crt: SGVsbG8gd29ybGQK, tls.key: SGVsbG8gd29ybGQK}
"#;
    let (crt, key) = mk_cert_pem(&["secure.example"]);
    let good = Object::Secret(Arc::new(mk_tls_secret("app", "good", &crt, &key)));
    for r in [
        r#"{group: "", kind: Secret, name: nonexistent}"#,
        "{group: wrong.group.company.io, kind: Secret, name: good}",
        r#"{group: "", kind: WrongKind, name: good}"#,
        r#"{group: "", kind: Secret, name: malformed}"#,
    ] {
        let gw = super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            &format!(
                "  listeners:\n  - {{name: https, port: 443, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {{certificateRefs: [{r}]}}}}\n"
            ),
        );
        let s = snapshot_with(&format!("{gw}{malformed}"), vec![good.clone()]);
        let l = listener(&s, "https");
        assert!(kinds(l).contains(&"HTTPRoute"), "{r}");
        assert_eq!(
            cond(&l.conditions, "ResolvedRefs"),
            (false, "InvalidCertificateRef"),
            "{r}"
        );
        assert!(s.l7.certificates.is_empty(), "{r}");
    }
}

/// A Gateway in `app` with an HTTPS listener whose certificate is Secret `certs/certificate`.
const CROSS_NAMESPACE_CERT: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    allowedRoutes: {namespaces: {from: All}}
    tls: {certificateRefs: [{group: "", kind: Secret, name: certificate, namespace: certs}]}
"#;

fn reference_grant(name: &str, ns: &str, from: &str, to: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  from: [{from}]\n  to: [{to}]\n"
    )
}

fn cross_namespace_cert(grants: &str) -> Snapshot {
    let (crt, key) = mk_cert_pem(&["secure.example"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("certs", "certificate", &crt, &key)));
    snapshot_with(&format!("{CROSS_NAMESPACE_CERT}{grants}"), vec![secret])
}

const FROM_APP_GATEWAYS: &str = "{group: gateway.networking.k8s.io, kind: Gateway, namespace: app}";

/// Conformance GatewaySecretInvalidReferenceGrant: ReferenceGrants that each get one field
/// wrong (their namespace, from group, from kind, from namespace, to group, to kind, to name)
/// permit nothing: `ResolvedRefs: False, RefNotPermitted`.
#[test]
fn gateway_secret_invalid_reference_grant() {
    let secret = r#"{group: "", kind: Secret, name: certificate}"#;
    let grants = [
        reference_grant("wrong-namespace", "app", FROM_APP_GATEWAYS, secret),
        reference_grant(
            "wrong-from-group",
            "certs",
            "{group: not-the-group, kind: Gateway, namespace: app}",
            secret,
        ),
        reference_grant(
            "wrong-from-kind",
            "certs",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}",
            secret,
        ),
        reference_grant(
            "wrong-from-namespace",
            "certs",
            "{group: gateway.networking.k8s.io, kind: Gateway, namespace: elsewhere}",
            secret,
        ),
        reference_grant(
            "wrong-to-group",
            "certs",
            FROM_APP_GATEWAYS,
            "{group: not-the-group, kind: Secret, name: certificate}",
        ),
        reference_grant(
            "wrong-to-kind",
            "certs",
            FROM_APP_GATEWAYS,
            r#"{group: "", kind: Service, name: certificate}"#,
        ),
        reference_grant(
            "wrong-to-name",
            "certs",
            FROM_APP_GATEWAYS,
            r#"{group: "", kind: Secret, name: not-the-certificate}"#,
        ),
    ]
    .concat();
    let s = cross_namespace_cert(&grants);
    let l = listener(&s, "https");
    assert!(kinds(l).contains(&"HTTPRoute"));
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "RefNotPermitted")
    );
    assert_eq!(l.attached_routes, 0);
    assert!(s.l7.certificates.is_empty());
}

/// Conformance GatewaySecretMissingReferenceGrant: no ReferenceGrant at all.
#[test]
fn gateway_secret_missing_reference_grant() {
    let s = cross_namespace_cert("");
    let l = listener(&s, "https");
    assert!(kinds(l).contains(&"HTTPRoute"));
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "RefNotPermitted")
    );
}

/// Conformance GatewaySecretReferenceGrantAllInNamespace (a grant to every Secret of the
/// namespace: `to` without a name) and GatewaySecretReferenceGrantSpecific (to that Secret
/// by name): the listener resolves and is programmed.
#[test]
fn gateway_secret_reference_grant_all_in_namespace_and_specific() {
    for to in [
        r#"{group: "", kind: Secret}"#,
        r#"{group: "", kind: Secret, name: certificate}"#,
    ] {
        let s = cross_namespace_cert(&reference_grant("g", "certs", FROM_APP_GATEWAYS, to));
        let l = listener(&s, "https");
        assert!(kinds(l).contains(&"HTTPRoute"));
        assert_eq!(
            cond(&l.conditions, "Programmed"),
            (true, "Programmed"),
            "{to}"
        );
        assert!(cond(&l.conditions, "ResolvedRefs").0, "{to}");
        assert_eq!(l.attached_routes, 0);
    }
}

/// Conformance GatewayModifyListeners: adding an HTTP listener to a Gateway with an HTTPS one
/// attaches the Gateway's route to both; removing the HTTPS one leaves the route on the HTTP
/// listener alone, and its host is no longer served with a certificate.
#[test]
fn gateway_modify_listeners() {
    let (crt, key) = mk_cert_pem(&["secure.test.com"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("app", "tls", &crt, &key)));
    let https = "  - {name: https, port: 443, protocol: HTTPS, hostname: secure.test.com, allowedRoutes: {namespaces: {from: All}}, tls: {certificateRefs: [{name: tls}]}}\n";
    let http = "  - {name: http, port: 80, protocol: HTTP, hostname: data.test.com, allowedRoutes: {namespaces: {from: All}}}\n";
    let r = route(
        "r",
        "app",
        "{kind: Gateway, name: gw, namespace: app}",
        "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n",
    );
    let with = |listeners: &str| {
        let gw = super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            &format!("  listeners:\n{listeners}"),
        );
        snapshot_with(&format!("{gw}{r}"), vec![secret.clone()])
    };
    let check = |s: &Snapshot, name: &str| {
        let l = listener(s, name);
        assert!(kinds(l).contains(&"HTTPRoute"), "{name}");
        assert!(cond(&l.conditions, "Accepted").0, "{name}");
        assert!(cond(&l.conditions, "ResolvedRefs").0, "{name}");
        assert_eq!(l.attached_routes, 1, "{name}");
    };
    let before = with(https);
    check(&before, "https");
    assert!(!before.l7.hosts.contains_key("data.test.com"));

    let added = with(&format!("{https}{http}"));
    assert_eq!(gateway(&added, "app", "gw").listeners.len(), 2);
    check(&added, "https");
    check(&added, "http");
    assert!(added.l7.hosts.contains_key("data.test.com"));
    assert!(added.l7.hosts.contains_key("secure.test.com"));

    let removed = with(http);
    assert_eq!(gateway(&removed, "app", "gw").listeners.len(), 1);
    check(&removed, "http");
    assert!(!removed.l7.hosts.contains_key("secure.test.com"));
    assert!(removed.l7.certificates.is_empty());
}

/// Conformance GatewayObservedGenerationBump, GatewayClassObservedGenerationBump and
/// HTTPRouteObservedGenerationBump: after a change bumps `metadata.generation`, every
/// condition (the class's, the Gateway's and its listeners', the route parent's) carries the
/// new generation.
#[test]
fn observed_generation_bumps_on_gateway_class_gateway_and_http_route() {
    let objects = |g: i64| {
        format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp, generation: {g}}}
spec: {{controllerName: xdp-ingress.dev/controller, description: "gen {g}"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app, generation: {g}}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: http, port: 80, protocol: HTTP, hostname: bar.com, allowedRoutes: {{namespaces: {{from: All}}}}}}
{}{}"#,
            if g > 1 {
                "  - {name: alternate, port: 80, protocol: HTTP, hostname: foo.com, allowedRoutes: {namespaces: {from: All}}}\n"
            } else {
                ""
            },
            route(
                "r",
                "app",
                "{name: gw}",
                &format!(
                    "  rules: [{{backendRefs: [{{name: {}, port: 8080}}]}}]\n",
                    if g > 1 { "web2" } else { "web" }
                )
            )
            .replace(
                "namespace: app}",
                &format!("namespace: app, generation: {g}}}")
            ),
        )
    };
    let web2 = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web2, namespace: app}\nspec: {ports: [{port: 8080}]}\n";
    for g in [1, 2] {
        let s = snapshot(&format!("{}{web2}", objects(g)));
        let class = &s.gateway_status.classes[&ObjectRef::new(ObjectKind::GatewayClass, "", "xdp")];
        assert_eq!(cond(class, "Accepted"), (true, "Accepted"));
        let gw = gateway(&s, "app", "gw");
        assert!(cond(&gw.conditions, "Programmed").0);
        assert_eq!(gw.listeners.len(), g as usize);
        let parent = route_parent(&s, "app", "r");
        assert_eq!(cond(parent, "Accepted"), (true, "Accepted"));
        assert_eq!(cond(parent, "ResolvedRefs"), (true, "ResolvedRefs"));
        let all = (class.iter())
            .chain(&gw.conditions)
            .chain(gw.listeners.iter().flat_map(|l| &l.conditions))
            .chain(parent);
        for c in all {
            assert_eq!(c.observed_generation, g, "{c:?}");
        }
    }
}

/// Conformance GatewayWithAttachedRoutes: `attachedRoutes` counts the routes a listener
/// accepts, through a `kubernetes.io/metadata.name` namespace selector; a route whose
/// hostnames miss the listener's is `NoMatchingListenerHostname` and not counted; a listener
/// whose certificate does not resolve still counts the route attached to it, whose own
/// unresolved backend is `ResolvedRefs: False`.
#[test]
fn gateway_with_attached_routes() {
    let selector = "{kinds: [{kind: HTTPRoute}], namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: app}}}}";
    let rule = "  rules: [{backendRefs: [{name: web, port: 8080}]}]\n";
    let one = super::test_support::gateway_yaml(
        "{name: gw, namespace: app}",
        &format!(
            "  listeners:\n  - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {selector}}}\n"
        ),
    ) + &route("r1", "app", "{name: gw}", rule);
    let s = snapshot(&one);
    let l = listener(&s, "http");
    assert_eq!(kinds(l), ["HTTPRoute"]);
    assert!(cond(&l.conditions, "Accepted").0);
    assert!(cond(&l.conditions, "ResolvedRefs").0);
    assert_eq!(l.attached_routes, 1);

    let two = super::test_support::gateway_yaml(
        "{name: gw, namespace: app}",
        &format!(
            "  listeners:\n  - {{name: http, port: 80, protocol: HTTP, hostname: foo.example.com, allowedRoutes: {selector}}}\n"
        ),
    ) + &route("r2", "app", "{name: gw}", rule)
        + &route("r3", "app", "{name: gw}", rule)
        + &route(
            "not-accepted",
            "app",
            "{name: gw}",
            &format!("  hostnames: [not-accepted.test.com]\n{rule}"),
        );
    let s = snapshot(&two);
    assert_eq!(listener(&s, "http").attached_routes, 2);
    assert_eq!(
        cond(route_parent(&s, "app", "not-accepted"), "Accepted"),
        (false, "NoMatchingListenerHostname")
    );

    let unresolved = super::test_support::gateway_yaml(
        "{name: gw, namespace: app}",
        &format!(
            "  listeners:\n  - {{name: tls, port: 443, protocol: HTTPS, allowedRoutes: {selector}, tls: {{mode: Terminate, certificateRefs: [{{name: does-not-exist}}]}}}}\n"
        ),
    ) + &route(
        "r4",
        "app",
        "{name: gw, sectionName: tls}",
        "  rules: [{backendRefs: [{name: does-not-exist, port: 8080}]}]\n",
    );
    let s = snapshot(&unresolved);
    let l = listener(&s, "tls");
    assert_eq!(kinds(l), ["HTTPRoute"]);
    assert!(!cond(&l.conditions, "Programmed").0);
    assert!(!cond(&l.conditions, "ResolvedRefs").0);
    assert_eq!(l.attached_routes, 1);
    assert!(!cond(route_parent(&s, "app", "r4"), "ResolvedRefs").0);
}

/// The BackendTLSPolicy scenarios' objects: a Gateway `gw` in `app` with an HTTP listener, a
/// ConfigMap `ca` with a CA certificate, Services (`name: [port name = number]`), and an
/// HTTPRoute on `abc.example.com` sending Exact path `/<service>-<port>` to each port.
fn backend_tls_objects(services: &[(&str, &[(&str, u16)])], policies: &str) -> Snapshot {
    let (ca, _) = mk_cert_pem(&["abc.example.com"]);
    let indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
    let mut yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: app}}\ndata:\n  ca.crt: |\n{indented}"
    );
    yaml += &super::test_support::gateway_yaml(
        "{name: gw, namespace: app}",
        "  listeners: [{name: http, port: 80, protocol: HTTP}]\n",
    );
    let mut rules = String::new();
    for (svc, ports) in services {
        let ports_yaml: Vec<String> = (ports.iter())
            .map(|(n, p)| format!("{{name: {n}, port: {p}, appProtocol: HTTPS}}"))
            .collect();
        yaml += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: app}}\nspec: {{ports: [{}]}}\n",
            ports_yaml.join(", ")
        );
        for (_, p) in *ports {
            rules += &format!(
                "  - {{matches: [{{path: {{type: Exact, value: /{svc}-{p}}}}}], backendRefs: [{{name: {svc}, port: {p}}}]}}\n"
            );
        }
    }
    yaml += &route(
        "r",
        "app",
        "{name: gw}",
        &format!("  hostnames: [abc.example.com]\n  rules:\n{rules}"),
    );
    snapshot(&format!("{yaml}{policies}"))
}

/// A BackendTLSPolicy `name` in `app`, created at the same second as every other (so the
/// spec's tie-break, `namespace/name`, decides), on `target` with `validation`.
fn backend_tls_policy(name: &str, target: &str, validation: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"2024-01-01T00:00:00Z\"}}\nspec:\n  targetRefs: [{target}]\n  validation: {validation}\n"
    )
}

fn policy_conditions(s: &Snapshot, name: &str) -> Vec<StatusCondition> {
    let a = &s.gateway_status.policies[&ObjectRef::new(ObjectKind::BackendTLSPolicy, "app", name)];
    assert_eq!(
        a[0].parent_ref.name, "gw",
        "{name}: the Gateway is its ancestor"
    );
    a[0].conditions.clone()
}

/// The upstream of the route rule with Exact path `path` on `abc.example.com`.
fn upstream_at(s: &Snapshot, path: &str) -> crate::model::Upstream {
    let r = (s.l7.hosts["abc.example.com"].routes.iter())
        .find(|r| r.origin.written_path.as_deref() == Some(path))
        .unwrap_or_else(|| panic!("no rule for {path}"));
    let RouteAction::Forward(u) = &r.action else {
        panic!("{path} forwards")
    };
    (*u[0].upstream).clone()
}

/// Conformance BackendTLSPolicyConflictResolution: two policies on one Service (both without
/// a sectionName, or both naming the same port) conflict: the first by name is accepted and
/// used, the other is `Accepted: False, Conflicted`. A policy naming a port and one naming
/// none on the same Service do not conflict: both are accepted, the named port uses its own,
/// the other port the Service-wide one.
#[test]
fn backend_tls_policy_conflict_resolution() {
    let ca = |host: &str| {
        format!(
            "{{caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: ca}}], hostname: {host}}}"
        )
    };
    let svc = |name: &str, section: &str| {
        let section = if section.is_empty() {
            String::new()
        } else {
            format!(", sectionName: {section}")
        };
        format!("{{group: \"\", kind: Service, name: {name}{section}}}")
    };
    let policies = [
        backend_tls_policy("without-1", &svc("plain", ""), &ca("other.example.com")),
        backend_tls_policy("without-2", &svc("plain", ""), &ca("abc.example.com")),
        backend_tls_policy("with-1", &svc("named", "https-1"), &ca("other.example.com")),
        backend_tls_policy("with-2", &svc("named", "https-1"), &ca("abc.example.com")),
        backend_tls_policy(
            "mixed-with",
            &svc("mixed", "https-1"),
            &ca("other.example.com"),
        ),
        backend_tls_policy("mixed-without", &svc("mixed", ""), &ca("abc.example.com")),
    ]
    .concat();
    let two: &[(&str, u16)] = &[("https-1", 443), ("https-2", 8443)];
    let s = backend_tls_objects(
        &[("plain", &[("https", 443)]), ("named", two), ("mixed", two)],
        &policies,
    );
    for (name, want) in [
        ("without-1", (true, "Accepted")),
        ("without-2", (false, "Conflicted")),
        ("with-1", (true, "Accepted")),
        ("with-2", (false, "Conflicted")),
        ("mixed-with", (true, "Accepted")),
        ("mixed-without", (true, "Accepted")),
    ] {
        assert_eq!(
            cond(&policy_conditions(&s, name), "Accepted"),
            want,
            "{name}"
        );
    }
    let hostname = |path: &str| {
        let u = upstream_at(&s, path);
        assert_eq!(u.protocol, crate::model::BackendProtocol::Https, "{path}");
        u.tls.as_ref().expect("verified TLS").hostname.clone()
    };
    assert_eq!(hostname("/plain-443"), "other.example.com");
    assert_eq!(hostname("/named-443"), "other.example.com");
    assert_eq!(hostname("/mixed-443"), "other.example.com");
    assert_eq!(hostname("/mixed-8443"), "abc.example.com");
}

/// Conformance BackendTLSPolicyInvalidCACertificateRef (a ConfigMap that does not exist, one
/// without a certificate) and BackendTLSPolicyInvalidKind (a reference of another group and
/// kind): `Accepted: False, NoValidCACertificate` with `ResolvedRefs: False` and reason
/// `InvalidCACertificateRef` / `InvalidKind`; the backend is reached over TLS that trusts no
/// certificate, so requests fail (5xx) instead of going out unverified.
#[test]
fn backend_tls_policy_invalid_ca_certificate_ref_and_invalid_kind() {
    let empty_cm = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: malformed, namespace: app}\ndata: {}\n";
    let cases = [
        (
            "nonexistent",
            r#"{group: "", kind: ConfigMap, name: nonexistent}"#,
            "InvalidCACertificateRef",
        ),
        (
            "malformed",
            r#"{group: "", kind: ConfigMap, name: malformed}"#,
            "InvalidCACertificateRef",
        ),
        (
            "invalid-kind",
            "{group: invalid.io, kind: InvalidKind, name: invalid-kind}",
            "InvalidKind",
        ),
    ];
    let policies: String = cases
        .iter()
        .map(|(name, r, _)| {
            backend_tls_policy(
                name,
                &format!("{{group: \"\", kind: Service, name: {name}}}"),
                &format!("{{caCertificateRefs: [{r}], hostname: abc.example.com}}"),
            )
        })
        .collect();
    let https: &[(&str, u16)] = &[("https", 443)];
    let s = backend_tls_objects(
        &[
            ("nonexistent", https),
            ("malformed", https),
            ("invalid-kind", https),
        ],
        &format!("{empty_cm}{policies}"),
    );
    for (name, _, reason) in cases {
        let c = policy_conditions(&s, name);
        assert_eq!(
            cond(&c, "Accepted"),
            (false, "NoValidCACertificate"),
            "{name}"
        );
        assert_eq!(cond(&c, "ResolvedRefs"), (false, reason), "{name}");
        let u = upstream_at(&s, &format!("/{name}-443"));
        assert_eq!(
            u.tls.as_ref().map(|t| t.roots.clone()),
            Some(crate::model::TlsRoots::Certificates(vec![])),
            "{name}: verified against nothing"
        );
    }
}

/// Conformance BackendTLSPolicyObservedGenerationBump: after `validation.hostname` changes
/// (a new generation), the policy is still accepted, its conditions carry the new
/// generation, and the backend is verified against the new hostname.
#[test]
fn backend_tls_policy_observed_generation_bump() {
    for (generation, host) in [(1, "abc.example.com"), (2, "foo.example.com")] {
        let policy = backend_tls_policy(
            "observed-generation-bump",
            "{group: \"\", kind: Service, name: bump, sectionName: https}",
            &format!("{{caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: ca}}], hostname: {host}}}"),
        )
        .replace("namespace: app,", &format!("namespace: app, generation: {generation},"));
        let s = backend_tls_objects(&[("bump", &[("https", 443)])], &policy);
        let c = policy_conditions(&s, "observed-generation-bump");
        assert!(cond(&c, "Accepted").0);
        assert!(
            c.iter().all(|c| c.observed_generation == generation),
            "{c:?}"
        );
        let u = upstream_at(&s, "/bump-443");
        assert_eq!(u.tls.as_ref().expect("verified TLS").hostname, host);
    }
}

/// Conformance BackendTLSPolicySANValidation: `subjectAltNames` of type `Hostname` and `URI`
/// (one or both) are accepted and replace the hostname check: the backend's certificate must
/// present one of them (the check itself is the proxy's, `proxy::upstream_tls`).
#[test]
fn backend_tls_policy_san_validation() {
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "san-dns",
            "[{type: Hostname, hostname: abc.example.com}]",
            &["abc.example.com"],
        ),
        (
            "san-uri",
            "[{type: URI, uri: \"spiffe://abc.example.com/test-identity\"}]",
            &["spiffe://abc.example.com/test-identity"],
        ),
        (
            "multiple-sans",
            "[{type: URI, uri: \"spiffe://abc.example.com/test-identity\"}, {type: Hostname, hostname: abc.example.com}]",
            &["spiffe://abc.example.com/test-identity", "abc.example.com"],
        ),
    ];
    let https: &[(&str, u16)] = &[("btls", 443)];
    let policies: String = cases
        .iter()
        .map(|(name, sans, _)| {
            backend_tls_policy(
                name,
                &format!("{{group: \"\", kind: Service, name: {name}, sectionName: btls}}"),
                &format!("{{caCertificateRefs: [{{group: \"\", kind: ConfigMap, name: ca}}], hostname: abc.example.com, subjectAltNames: {sans}}}"),
            )
        })
        .collect();
    let services: Vec<(&str, &[(&str, u16)])> = cases.iter().map(|(n, _, _)| (*n, https)).collect();
    let s = backend_tls_objects(&services, &policies);
    for (name, _, want) in cases {
        assert_eq!(
            cond(&policy_conditions(&s, name), "Accepted"),
            (true, "Accepted"),
            "{name}"
        );
        let u = upstream_at(&s, &format!("/{name}-443"));
        let tls = u.tls.as_ref().expect("verified TLS");
        assert_eq!(tls.hostname, "abc.example.com", "{name}: still the SNI");
        assert_eq!(tls.subject_alt_names, want, "{name}");
    }
}

/// Conformance GRPCRouteNamedRule: a rule may carry a `name`; it changes nothing about
/// matching: each method goes to its rule's backend.
#[test]
fn grpc_route_named_rule() {
    let s = snapshot(
        r#"
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: app}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc-named-rules, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: named-rule
    matches: [{method: {service: pkg.GrpcEcho, method: Echo}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{method: {service: pkg.GrpcEcho, method: EchoTwo}}]
    backendRefs: [{name: v2, port: 8080}]
"#,
    );
    let p = &s.gateway_status.routes
        [&ObjectRef::new(ObjectKind::GRPCRoute, "app", "grpc-named-rules")][0]
        .conditions;
    assert_eq!(cond(p, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(p, "ResolvedRefs"), (true, "ResolvedRefs"));
    let (table, errors) = crate::proxy::router::RouteTable::build(&s.l7, Arc::clone);
    assert!(errors.is_empty(), "{errors:?}");
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/grpc".parse().unwrap());
    for (path, want) in [
        ("/pkg.GrpcEcho/Echo", "web"),
        ("/pkg.GrpcEcho/EchoTwo", "v2"),
    ] {
        let view = crate::proxy::router::RequestView {
            host: "any.example",
            path,
            query: None,
            method: "POST",
            headers: &headers,
            tls: false,
            listener_port: Some(80),
            gateway_listener: false,
            local_addr: None,
        };
        match table.lookup(&view) {
            crate::proxy::router::Lookup::Route { route, .. } => {
                let crate::proxy::router::CompiledAction::Forward(u) = &route.action else {
                    panic!("{path}: forwards")
                };
                assert_eq!(u[0].0.service.name, want, "{path}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

/// Conformance HTTPRouteBackendRequestHeaderModifier: a backendRef's own
/// RequestHeaderModifier (set, add, remove, several of each, names in any case) applies to
/// the requests sent to that backend (the requests themselves: tests/l7_gateway.rs,
/// HTTPRouteRequestHeaderModifierBackendWeights).
#[test]
fn http_route_backend_request_header_modifier() {
    let rule = |path: &str, modifier: &str| {
        format!(
            "  - {{matches: [{{path: {{type: PathPrefix, value: {path}}}}}], backendRefs: [{{name: web, port: 8080, filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]}}]}}\n"
        )
    };
    let rules = [
        rule("/set", "{set: [{name: X-Header-Set, value: set-overwrites-values}]}"),
        rule("/add", "{add: [{name: X-Header-Add, value: add-appends-values}]}"),
        rule("/remove", "{remove: [X-Header-Remove]}"),
        rule(
            "/multiple",
            "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}",
        ),
    ]
    .concat();
    let s = snapshot(&format!(
        "{}{}",
        super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            "  listeners: [{name: http, port: 80, protocol: HTTP}]\n"
        ),
        route("r", "app", "{name: gw}", &format!("  rules:\n{rules}"))
    ));
    assert_eq!(
        cond(route_parent(&s, "app", "r"), "Accepted"),
        (true, "Accepted")
    );
    let vh = s.l7.any_host.as_ref().expect("hostname-less routes");
    let request = |path: &str| {
        let r = (vh.routes.iter())
            .find(|r| r.origin.written_path.as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no rule for {path}"));
        let g = r.policy.gateway.as_ref().expect("a Gateway route policy");
        assert!(g.request_headers.is_empty(), "{path}: not the rule's own");
        assert_eq!(g.backend_headers.len(), 1, "{path}");
        g.backend_headers[0].0.clone()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        request("/set").set,
        pairs(&[("X-Header-Set", "set-overwrites-values")])
    );
    assert_eq!(
        request("/add").add,
        pairs(&[("X-Header-Add", "add-appends-values")])
    );
    assert_eq!(request("/remove").remove, ["X-Header-Remove"]);
    let m = request("/multiple");
    assert_eq!(m.set.len(), 2);
    assert_eq!(m.add.len(), 3);
    assert_eq!(m.remove, ["X-Header-Remove-1", "X-Header-Remove-2"]);
}

/// Gateway API `RouteConditionPartiallyInvalid` ("Drop Rule(s)"): a route with an invalid
/// rule beside valid ones keeps `Accepted: True`, serves the valid rules, and says
/// `PartiallyInvalid: True, UnsupportedValue` with a message starting "Dropped Rule"; a route
/// whose every rule is invalid is `Accepted: False, UnsupportedValue` (found by a fresh-user
/// trial: the partial route said `Accepted: False` while serving).
#[test]
fn a_partially_invalid_route_drops_its_invalid_rules_and_stays_accepted() {
    let bad_timeout = "timeouts: {request: forever}";
    let s = snapshot(&format!(
        "{}{}{}",
        super::test_support::gateway_yaml(
            "{name: gw, namespace: app}",
            "  listeners: [{name: http, port: 80, protocol: HTTP}]\n"
        ),
        route(
            "partial",
            "app",
            "{name: gw}",
            &format!(
                "  hostnames: [partial.example]\n  rules:\n  - {{matches: [{{path: {{type: PathPrefix, value: /bad}}}}], {bad_timeout}, backendRefs: [{{name: web, port: 8080}}]}}\n  - {{matches: [{{path: {{type: PathPrefix, value: /good}}}}], backendRefs: [{{name: web, port: 8080}}]}}\n"
            ),
        ),
        route(
            "invalid",
            "app",
            "{name: gw}",
            &format!(
                "  hostnames: [invalid.example]\n  rules:\n  - {{{bad_timeout}, backendRefs: [{{name: web, port: 8080}}]}}\n"
            ),
        ),
    ));
    let c = route_parent(&s, "app", "partial");
    assert_eq!(cond(c, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(c, "PartiallyInvalid"), (true, "UnsupportedValue"));
    let msg = &c
        .iter()
        .find(|c| c.type_ == "PartiallyInvalid")
        .unwrap()
        .message;
    assert!(msg.starts_with("Dropped Rule"), "{msg}");
    let paths: Vec<String> = s.l7.hosts["partial.example"]
        .routes
        .iter()
        .map(|r| format!("{:?}", r.matches.path))
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].contains("/good"), "{paths:?}");
    let c = route_parent(&s, "app", "invalid");
    assert_eq!(cond(c, "Accepted"), (false, "UnsupportedValue"));
    assert!(!c.iter().any(|c| c.type_ == "PartiallyInvalid"));
}

/// `ReplacePrefixMatch` (HTTPPathModifier): "Using any other HTTPRouteMatch type on the same
/// HTTPRouteRule will result in the implementation setting the Accepted Condition for the
/// Route to `status: False`", for URLRewrite and RequestRedirect alike: the whole route is
/// refused (its other rules too), not counted in `attachedRoutes`
/// (ListenerStatus.attachedRoutes counts `Accepted: True` routes only), and the diagnostic
/// has the status's reason.
#[test]
fn replace_prefix_match_with_another_match_type_refuses_the_route() {
    let path = "{type: ReplacePrefixMatch, replacePrefixMatch: /new}";
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}{}{}"#,
        route(
            "rewrite",
            "app",
            "{name: gw}",
            &format!(
                "  hostnames: [rewrite.example]\n  rules:\n  - {{matches: [{{path: {{type: Exact, value: /old}}}}], filters: [{{type: URLRewrite, urlRewrite: {{path: {path}}}}}], backendRefs: [{{name: web, port: 8080}}]}}\n  - {{backendRefs: [{{name: web, port: 8080}}]}}\n"
            ),
        ),
        route(
            "redirect",
            "app",
            "{name: gw}",
            &format!(
                "  hostnames: [redirect.example]\n  rules: [{{matches: [{{path: {{type: RegularExpression, value: /o.*}}}}], filters: [{{type: RequestRedirect, requestRedirect: {{path: {path}}}}}]}}]\n"
            ),
        ),
        route(
            "fine",
            "app",
            "{name: gw}",
            &format!(
                "  hostnames: [fine.example]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: /old}}}}], filters: [{{type: URLRewrite, urlRewrite: {{path: {path}}}}}], backendRefs: [{{name: web, port: 8080}}]}}]\n"
            ),
        ),
    );
    let s = snapshot(&yaml);
    for r in ["rewrite", "redirect"] {
        let c = route_parent(&s, "app", r);
        assert_eq!(cond(c, "Accepted"), (false, "UnsupportedValue"), "{r}");
        assert!(
            !c.iter().any(|c| c.type_ == "PartiallyInvalid"),
            "{r}: {c:?}"
        );
        assert!(!s.l7.hosts.contains_key(&format!("{r}.example")), "{r}");
        assert!(
            s.diagnostics
                .iter()
                .any(|d| d.object.name == r && d.reason == "UnsupportedValue"),
            "{r}"
        );
    }
    assert_eq!(
        cond(route_parent(&s, "app", "fine"), "Accepted"),
        (true, "Accepted")
    );
    assert_eq!(gateway(&s, "app", "gw").listeners[0].attached_routes, 1);
}

/// Manifest mode sees what the HTTPRoute CRD's CEL validation would refuse
/// (httproute_types.go `XValidation`): each broken rule gets a Warning with the CRD's message
/// and is served as read (the last RequestHeaderModifier applies).
#[test]
fn cel_validation_rules_get_warnings() {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
{}"#,
        route(
            "cel",
            "app",
            "{name: gw}",
            "  hostnames: [cel.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /twice}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: one}]}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: two}]}}
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /timeouts}}]
    timeouts: {request: 1s, backendRequest: 2s}
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: other.example}}]
    backendRefs: [{name: web, port: 8080}]
  - backendRefs: [{name: web, port: 8080}]
"
        ),
    );
    let s = snapshot(&yaml);
    let warned: Vec<&str> = (s.diagnostics.iter())
        .filter(|d| d.object.name == "cel" && d.reason == "ValidationRule")
        .map(|d| d.message.as_str())
        .collect();
    for (rule, message) in [
        ("rule 0", "RequestHeaderModifier filter cannot be repeated"),
        (
            "rule 1",
            "backendRequest timeout cannot be longer than request timeout",
        ),
        (
            "rule 2",
            "RequestRedirect filter must not be used together with backendRefs",
        ),
    ] {
        assert!(
            warned
                .iter()
                .any(|w| w.starts_with(rule) && w.contains(message)),
            "{rule}: {warned:?}"
        );
    }
    assert_eq!(warned.len(), 3, "{warned:?}");
    let twice = (s.l7.hosts["cel.example"].routes.iter())
        .find(|r| r.origin.written_path.as_deref() == Some("/twice"))
        .unwrap();
    let g = twice.policy.gateway.as_ref().unwrap();
    assert_eq!(
        g.request_headers.set,
        [("a".to_string(), "two".to_string())]
    );
}
