//! ListenerSets (GEP-1713, Gateway API v1.5 standard channel): expectations from the GEP's
//! "Gateway & ListenerSet Handshake", "Listener Precedence", "Listener and ListenerSet
//! Conflicts", "Route Attachment" and "ListenerSet Conditions", and from the upstream
//! conformance tests ListenerSetDefaultNotAllowed, ListenerSetAllowedNamespaceSame,
//! ListenerSetHostnameConflict and ListenerSetProtocolConflict.

use super::test_support::{cond, gateway_yaml, snapshot, snapshot_with};
use crate::model::{ListenerSetStatusOut, ListenerStatus, ObjectKind, ObjectRef, Snapshot};

/// A Gateway `gw` in `infra` with `allowedListeners` (YAML, or none) and one HTTP listener.
fn gateway(allowed: Option<&str>, listeners: &str) -> String {
    let allowed = allowed
        .map(|from| format!("  allowedListeners: {{namespaces: {from}}}\n"))
        .unwrap_or_default();
    gateway_yaml(
        "{name: gw, namespace: infra}",
        &format!("{allowed}  listeners: {listeners}\n"),
    )
}

/// A ListenerSet `ns/name` created at second `created`, parent `infra/gw`.
fn set(ns: &str, name: &str, created: u32, listeners: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"2025-01-01T00:00:{created:02}Z\", generation: 2}}\nspec:\n  parentRef: {{name: gw, namespace: infra}}\n  listeners: {listeners}\n"
    )
}

fn ls<'a>(s: &'a Snapshot, ns: &str, name: &str) -> &'a ListenerSetStatusOut {
    let r = ObjectRef::new(ObjectKind::ListenerSet, ns, name);
    s.gateway_status
        .listener_sets
        .get(&r)
        .unwrap_or_else(|| panic!("no status for {r}: {:?}", s.gateway_status.listener_sets))
}

fn listener<'a>(l: &'a [ListenerStatus], name: &str) -> &'a ListenerStatus {
    l.iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name} in {l:?}"))
}

fn gw_status(s: &Snapshot) -> &crate::model::GatewayStatusOut {
    &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "infra", "gw")]
}

const HTTP80: &str = "[{name: http, port: 80, protocol: HTTP}]";

/// `allowedListeners` decides: absent or `None` admits nothing (the spec's default);
/// `Same`, `All` and `Selector` admit what they say. Not admitted: `Accepted` and
/// `Programmed` False with reason `NotAllowed`, and not counted in `attachedListenerSets`.
#[test]
fn allowed_listeners_admit_listener_sets_by_namespace() {
    let sets = [
        ("infra", "same"),
        ("team", "labelled"),
        ("other", "elsewhere"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (ns, n))| {
        let extra = format!("[{{name: extra, port: 8080, protocol: HTTP, hostname: {n}.example}}]");
        set(ns, n, i as u32, &extra)
    })
    .collect::<String>();
    let cases: [(Option<&str>, [bool; 3]); 5] = [
        (None, [false, false, false]),
        (Some("{from: None}"), [false, false, false]),
        (Some("{from: Same}"), [true, false, false]),
        (Some("{from: All}"), [true, true, true]),
        (
            Some("{from: Selector, selector: {matchLabels: {listeners: \"yes\"}}}"),
            [false, true, false],
        ),
    ];
    for (allowed, want) in cases {
        let s = snapshot(&(gateway(allowed, HTTP80) + &sets));
        let mut attached = 0;
        for ((ns, name), admitted) in [
            ("infra", "same"),
            ("team", "labelled"),
            ("other", "elsewhere"),
        ]
        .into_iter()
        .zip(want)
        {
            let st = ls(&s, ns, name);
            if admitted {
                attached += 1;
                assert_eq!(
                    cond(&st.conditions, "Accepted"),
                    (true, "Accepted"),
                    "{allowed:?} {name}"
                );
                assert_eq!(
                    cond(&st.conditions, "Programmed"),
                    (true, "Programmed"),
                    "{allowed:?} {name}"
                );
                assert_eq!(st.listeners.len(), 1);
            } else {
                assert_eq!(
                    cond(&st.conditions, "Accepted"),
                    (false, "NotAllowed"),
                    "{allowed:?} {name}"
                );
                assert_eq!(
                    cond(&st.conditions, "Programmed"),
                    (false, "NotAllowed"),
                    "{allowed:?} {name}"
                );
            }
            assert_eq!(st.conditions[0].observed_generation, 2);
        }
        let gw = gw_status(&s);
        assert_eq!(gw.attached_listener_sets, attached, "{allowed:?}");
        // The Gateway's status lists its own listeners only.
        assert_eq!(gw.listeners.len(), 1);
        assert_eq!(cond(&gw.conditions, "Accepted"), (true, "Accepted"));
        // An admitted set's port is opened; a refused one's is not.
        assert_eq!(
            s.l7.gateway_listeners.contains_key(&8080),
            attached > 0,
            "{allowed:?}"
        );
    }
}

/// The conformance test ListenerSetHostnameConflict: the Gateway's listeners first, then
/// ListenerSets oldest first; the later listener of a conflicting pair gets `Conflicted:
/// True`, `Accepted`/`Programmed: False` with reason `HostnameConflict`; a set with another
/// valid listener stays accepted, a set with none gets `ListenersNotValid`.
#[test]
fn listener_precedence_settles_hostname_conflicts() {
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: gateway-listener, port: 80, protocol: HTTP, hostname: gateway-listener.com}, \
          {name: conflict-gw, port: 80, protocol: HTTP, hostname: conflict-gw.com}]",
    ) + &set(
        "infra",
        "ls1",
        1,
        "[{name: ls1-listener, port: 80, protocol: HTTP, hostname: ls1.com}, \
          {name: conflict-gw, port: 80, protocol: HTTP, hostname: conflict-gw.com}, \
          {name: conflict-ls, port: 80, protocol: HTTP, hostname: conflict-ls.com}]",
    ) + &set(
        "infra",
        "ls2",
        2,
        "[{name: conflict-gw, port: 80, protocol: HTTP, hostname: conflict-gw.com}]",
    )
    // Named before ls1 but newer: precedence is by age first.
    + &set(
        "infra",
        "a-ls3",
        3,
        "[{name: ls3-listener, port: 80, protocol: HTTP, hostname: ls3.com}, \
          {name: conflict-ls, port: 80, protocol: HTTP, hostname: CONFLICT-LS.com}]",
    ) + &set(
        "infra",
        "ls4",
        4,
        "[{name: conflict-ls, port: 80, protocol: HTTP, hostname: conflict-ls.com}]",
    );
    let s = snapshot(&yaml);
    let conflicted = |l: &ListenerStatus| {
        for (t, want) in [
            ("Accepted", (false, "HostnameConflict")),
            ("Programmed", (false, "HostnameConflict")),
            ("Conflicted", (true, "HostnameConflict")),
        ] {
            assert_eq!(cond(&l.conditions, t), want, "{} {t}", l.name);
        }
    };
    let fine = |l: &ListenerStatus| {
        for (t, want) in [
            ("Accepted", (true, "Accepted")),
            ("Programmed", (true, "Programmed")),
            ("Conflicted", (false, "NoConflicts")),
        ] {
            assert_eq!(cond(&l.conditions, t), want, "{} {t}", l.name);
        }
    };
    let gw = gw_status(&s);
    fine(listener(&gw.listeners, "gateway-listener"));
    fine(listener(&gw.listeners, "conflict-gw"));
    assert_eq!(gw.attached_listener_sets, 2);

    let ls1 = ls(&s, "infra", "ls1");
    assert!(cond(&ls1.conditions, "Accepted").0);
    assert_eq!(cond(&ls1.conditions, "Programmed"), (true, "Programmed"));
    fine(listener(&ls1.listeners, "ls1-listener"));
    conflicted(listener(&ls1.listeners, "conflict-gw"));
    fine(listener(&ls1.listeners, "conflict-ls"));

    let ls3 = ls(&s, "infra", "a-ls3");
    assert!(cond(&ls3.conditions, "Accepted").0);
    fine(listener(&ls3.listeners, "ls3-listener"));
    conflicted(listener(&ls3.listeners, "conflict-ls")); // Hostnames compare case-insensitively.

    for name in ["ls2", "ls4"] {
        let st = ls(&s, "infra", name);
        assert_eq!(
            cond(&st.conditions, "Accepted"),
            (false, "ListenersNotValid"),
            "{name}"
        );
        assert_eq!(
            cond(&st.conditions, "Programmed"),
            (false, "ListenersNotValid"),
            "{name}"
        );
        assert_eq!(st.listeners.len(), 1, "{name}: its own listeners only");
    }
}

/// ListenerSetProtocolConflict: a ListenerSet listener on the port of a Gateway listener of
/// another protocol is `ProtocolConflict`; the Gateway's listener keeps the port. A UDP
/// listener on that port is not (another transport).
#[test]
fn listener_set_protocol_conflicts_lose_to_the_gateway() {
    let yaml = gateway(
        Some("{from: All}"),
        "[{name: http, port: 8080, protocol: HTTP}]",
    ) + &set(
        "team",
        "clash",
        1,
        "[{name: tcp, port: 8080, protocol: TCP}]",
    ) + &set("team", "udp", 2, "[{name: dns, port: 8080, protocol: UDP}]");
    let s = snapshot(&yaml);
    let clash = ls(&s, "team", "clash");
    let l = listener(&clash.listeners, "tcp");
    assert_eq!(
        cond(&l.conditions, "Conflicted"),
        (true, "ProtocolConflict")
    );
    assert_eq!(cond(&l.conditions, "Accepted"), (false, "ProtocolConflict"));
    assert_eq!(
        cond(&l.conditions, "Programmed"),
        (false, "ProtocolConflict")
    );
    assert_eq!(
        cond(&clash.conditions, "Accepted"),
        (false, "ListenersNotValid")
    );
    assert!(
        s.l4.iter().all(|l| !l.id.starts_with("listenerset/")),
        "{:?}",
        s.l4
    );
    let gw = gw_status(&s);
    assert_eq!(
        cond(&listener(&gw.listeners, "http").conditions, "Accepted"),
        (true, "Accepted")
    );
    assert_eq!(gw.attached_listener_sets, 1);
    let udp = ls(&s, "team", "udp");
    let l = listener(&udp.listeners, "dns");
    assert_eq!(cond(&l.conditions, "Conflicted"), (false, "NoConflicts"));
    assert_eq!(cond(&udp.conditions, "Accepted"), (true, "Accepted"));
}

/// Route attachment (GEP-1713): a parentRef of kind ListenerSet (with sectionName or port)
/// reaches that set's listeners, counted in its `attachedRoutes`, and the route is served on
/// the set's port; a Gateway parentRef reaches the Gateway's own listeners only, so a
/// sectionName that only a ListenerSet has is `NoMatchingParent`; listener names may repeat
/// across a Gateway and its ListenerSets.
#[test]
fn routes_attach_to_listener_sets_through_their_own_parent_refs() {
    let yaml = gateway(Some("{from: Same}"), HTTP80)
        + &set(
            "infra",
            "extra",
            1,
            "[{name: http, port: 8080, protocol: HTTP, hostname: extra.example}, \
              {name: more, port: 8090, protocol: HTTP}]",
        )
        + r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-set, namespace: infra}
spec:
  parentRefs:
  - {kind: ListenerSet, name: extra, sectionName: http}
  - {kind: ListenerSet, name: extra, port: 8090}
  - {kind: ListenerSet, name: extra, sectionName: absent}
  - {name: gw, sectionName: more}
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: via-gateway, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  hostnames: [gw.example]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#;
    let s = snapshot(&yaml);
    let parents =
        &s.gateway_status.routes[&ObjectRef::new(ObjectKind::HTTPRoute, "infra", "via-set")];
    let reasons: Vec<(bool, &str)> = parents
        .iter()
        .map(|p| cond(&p.conditions, "Accepted"))
        .collect();
    assert_eq!(
        reasons,
        [
            (true, "Accepted"),
            (true, "Accepted"),
            (false, "NoMatchingParent"),
            (false, "NoMatchingParent"),
        ]
    );
    assert_eq!(parents[0].parent_ref.kind, "ListenerSet");
    let set = ls(&s, "infra", "extra");
    assert_eq!(listener(&set.listeners, "http").attached_routes, 1);
    assert_eq!(listener(&set.listeners, "more").attached_routes, 1);
    let gw = gw_status(&s);
    assert_eq!(
        listener(&gw.listeners, "http").attached_routes,
        1,
        "via-gateway only"
    );
    // Served on the set's ports, under the set listener's hostname there.
    let routes = &s.l7.hosts["extra.example"].routes;
    assert_eq!(routes[0].matches.listener_ports(), Some(&[8080][..]));
    let any: Vec<_> = (s.l7.any_host.iter())
        .flat_map(|vh| vh.routes.iter())
        .filter(|r| r.origin.object.name == "via-set")
        .map(|r| r.matches.listener_ports().map(<[u16]>::to_vec))
        .collect();
    assert_eq!(any, [Some(vec![8090])]);
    assert!(s.l7.gateway_listeners.contains_key(&8080));
    assert!(s.l7.gateway_listeners.contains_key(&8090));
}

/// A ListenerSet whose parent Gateway is not ours gets no status from us; one whose Gateway
/// has no accepted listener of its own is `ParentNotAccepted`.
#[test]
fn listener_sets_follow_their_parent() {
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: bad, port: 80, protocol: example.com/sctp}]",
    ) + &set(
        "infra",
        "orphan-of-bad",
        1,
        "[{name: x, port: 8080, protocol: HTTP}]",
    ) + r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: elsewhere, namespace: infra}
spec:
  parentRef: {name: not-ours}
  listeners: [{name: x, port: 8080, protocol: HTTP}]
"#;
    let s = snapshot(&yaml);
    let st = ls(&s, "infra", "orphan-of-bad");
    assert_eq!(
        cond(&st.conditions, "Accepted"),
        (false, "ParentNotAccepted")
    );
    assert_eq!(
        cond(&st.conditions, "Programmed"),
        (false, "ParentNotAccepted")
    );
    assert!(!s.l7.gateway_listeners.contains_key(&8080));
    assert!(
        !(s.gateway_status.listener_sets).contains_key(&ObjectRef::new(
            ObjectKind::ListenerSet,
            "infra",
            "elsewhere"
        ))
    );
    assert_eq!(gw_status(&s).attached_listener_sets, 0);
}

/// A ListenerSet's TCP listener takes the XDP path like a Gateway's: a TCPRoute attached
/// through a ListenerSet parentRef becomes an L4 service named after the set (listener names
/// may repeat across a Gateway and its sets), counted in the set listener's `attachedRoutes`.
#[test]
fn listener_set_tcp_listeners_become_l4_services() {
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: pg, port: 5432, protocol: TCP}]",
    ) + &set(
        "infra",
        "extra",
        1,
        "[{name: pg, port: 5433, protocol: TCP}]",
    ) + r#"---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: via-set, namespace: infra}
spec:
  parentRefs: [{kind: ListenerSet, name: extra, sectionName: pg}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#;
    let s = snapshot(&yaml);
    let ids: Vec<(&str, &Vec<crate::model::Frontend>)> =
        s.l4.iter().map(|l| (l.id.as_str(), &l.frontends)).collect();
    assert_eq!(
        ids,
        [(
            "listenerset/infra/extra:pg",
            &vec![crate::model::Frontend::NodePort(5433)]
        )]
    );
    assert_eq!(
        listener(&ls(&s, "infra", "extra").listeners, "pg").attached_routes,
        1
    );
    assert_eq!(listener(&gw_status(&s).listeners, "pg").attached_routes, 0);
}

/// Self-service TLS, the GEP's first use case: a ListenerSet's HTTPS listener terminates with
/// a Secret of the ListenerSet's namespace; a Secret of another namespace needs a
/// ReferenceGrant from `ListenerSet` (`RefNotPermitted` without one), as a Gateway's does.
#[test]
fn listener_set_https_listeners_use_their_own_namespace_certificates() {
    use super::super::fixtures::{mk_cert_pem, mk_tls_secret};
    let (crt, key) = mk_cert_pem(&["team.example"]);
    let secrets = vec![
        crate::store::Object::Secret(std::sync::Arc::new(mk_tls_secret(
            "team", "team-tls", &crt, &key,
        ))),
        crate::store::Object::Secret(std::sync::Arc::new(mk_tls_secret(
            "infra",
            "infra-tls",
            &crt,
            &key,
        ))),
    ];
    let yaml = gateway(Some("{from: All}"), HTTP80)
        + &set(
            "team",
            "tls",
            1,
            "[{name: own, port: 443, protocol: HTTPS, hostname: team.example, \
              tls: {certificateRefs: [{name: team-tls}]}}, \
              {name: borrowed, port: 443, protocol: HTTPS, hostname: other.example, \
              tls: {certificateRefs: [{name: infra-tls, namespace: infra}]}}]",
        );
    let s = snapshot_with(&yaml, secrets);
    let st = ls(&s, "team", "tls");
    let own = listener(&st.listeners, "own");
    assert_eq!(
        cond(&own.conditions, "ResolvedRefs"),
        (true, "ResolvedRefs")
    );
    assert_eq!(cond(&own.conditions, "Programmed"), (true, "Programmed"));
    assert!(s.l7.certificates.contains_key("team.example"));
    let borrowed = listener(&st.listeners, "borrowed");
    assert_eq!(
        cond(&borrowed.conditions, "ResolvedRefs"),
        (false, "RefNotPermitted")
    );
    assert!(!s.l7.certificates.contains_key("other.example"));
    // A listener whose references do not resolve is accepted but not served (Programmed
    // False), and is not valid: the set, whose other listener is, is Accepted with reason
    // ListenersNotValid (GEP-1713; conformance ListenerSetReferenceGrant).
    assert!(cond(&borrowed.conditions, "Accepted").0);
    assert!(!cond(&borrowed.conditions, "Programmed").0);
    assert_eq!(
        cond(&st.conditions, "Accepted"),
        (true, "ListenersNotValid")
    );
    assert_eq!(cond(&st.conditions, "Programmed"), (true, "Programmed"));
}

/// An HTTPRoute `ns/name` with `parentRefs` (YAML flow list) and one rule: PathPrefix `path`
/// to `infra/web:8080`.
fn http_route(ns: &str, name: &str, parents: &str, path: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: {parents}\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}], backendRefs: [{{name: web, namespace: infra, port: 8080}}]}}]\n"
    )
}

/// `(kind, name, Accepted)` of each `status.parents` entry of HTTPRoute `ns/name`.
fn parents_of<'a>(
    s: &'a Snapshot,
    ns: &str,
    name: &str,
) -> Vec<(&'a str, &'a str, (bool, &'a str))> {
    let r = ObjectRef::new(ObjectKind::HTTPRoute, ns, name);
    s.gateway_status.routes[&r]
        .iter()
        .map(|p| {
            (
                p.parent_ref.kind.as_str(),
                p.parent_ref.name.as_str(),
                cond(&p.conditions, "Accepted"),
            )
        })
        .collect()
}

/// Paths served under `host` (PathPrefix values as written).
fn paths(s: &Snapshot, host: &str) -> Vec<String> {
    (s.l7.hosts.get(host).iter())
        .flat_map(|vh| vh.routes.iter())
        .filter_map(|r| r.origin.written_path.as_deref().map(String::from))
        .collect()
}

/// Conformance ListenerSetDualParentRefIndependence (v1.6): a route naming both a Gateway and
/// one of its ListenerSets gets one `status.parents` entry per parentRef, each judged on its
/// own: a Gateway parentRef whose sectionName only the ListenerSet has is `NoMatchingParent`
/// while the ListenerSet one is accepted, and the route is served through the accepted parent
/// only. The set's listener counts both routes.
#[test]
fn each_parent_ref_of_a_route_is_judged_on_its_own() {
    let gw_ref = "{name: gw, namespace: infra}";
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: gw-listener, port: 80, protocol: HTTP, hostname: gw-dual.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &set(
        "infra",
        "ls",
        1,
        "[{name: ls-listener, port: 80, protocol: HTTP, hostname: ls-dual.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &http_route(
        "infra",
        "both",
        &format!(
            "[{gw_ref}, {{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, namespace: infra}}]"
        ),
        "/dualboth",
    ) + &http_route(
        "infra",
        "one",
        "[{name: gw, namespace: infra, sectionName: ls-listener}, \
          {kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, namespace: infra, sectionName: ls-listener}]",
        "/dualone",
    );
    let s = snapshot(&yaml);
    assert_eq!(
        parents_of(&s, "infra", "both"),
        [
            ("Gateway", "gw", (true, "Accepted")),
            ("ListenerSet", "ls", (true, "Accepted")),
        ]
    );
    assert_eq!(
        parents_of(&s, "infra", "one"),
        [
            ("Gateway", "gw", (false, "NoMatchingParent")),
            ("ListenerSet", "ls", (true, "Accepted")),
        ]
    );
    let set = ls(&s, "infra", "ls");
    let l = listener(&set.listeners, "ls-listener");
    assert_eq!(l.attached_routes, 2);
    for t in ["Accepted", "Programmed", "ResolvedRefs"] {
        assert!(cond(&l.conditions, t).0, "{t}");
    }
    assert!(!cond(&l.conditions, "Conflicted").0);
    assert_eq!(gw_status(&s).attached_listener_sets, 1);
    assert_eq!(
        listener(&gw_status(&s).listeners, "gw-listener").attached_routes,
        1
    );
    assert_eq!(paths(&s, "gw-dual.example"), ["/dualboth"]);
    let mut ls_paths = paths(&s, "ls-dual.example");
    ls_paths.sort();
    assert_eq!(ls_paths, ["/dualboth", "/dualone"]);
}

/// Conformance ListenerSetRouteStatusScopedToParentRef (v1.6): a route's `status.parents`
/// holds entries for the parentRefs it declares and no other: a route on the Gateway alone
/// has one entry (kind Gateway, group and namespace as written), a route on the ListenerSet
/// alone has one entry of kind ListenerSet; neither is counted on the other's listeners.
#[test]
fn route_status_lists_only_the_parent_refs_the_route_declares() {
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: gw-listener, port: 80, protocol: HTTP, hostname: gw-parentref.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &set(
        "infra",
        "ls",
        1,
        "[{name: ls-listener, port: 80, protocol: HTTP, hostname: ls-parentref.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &http_route(
        "infra",
        "gw-only",
        "[{name: gw, namespace: infra}]",
        "/gwonly",
    ) + &http_route(
        "infra",
        "ls-only",
        "[{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, namespace: infra}]",
        "/lsonly",
    );
    let s = snapshot(&yaml);
    let only = |name: &str| {
        let r = ObjectRef::new(ObjectKind::HTTPRoute, "infra", name);
        let p = &s.gateway_status.routes[&r];
        assert_eq!(p.len(), 1, "{name}: {p:?}");
        assert_eq!(cond(&p[0].conditions, "Accepted"), (true, "Accepted"));
        p[0].parent_ref.clone()
    };
    let gw = only("gw-only");
    assert_eq!(
        (gw.group.as_str(), gw.kind.as_str(), gw.name.as_str()),
        ("gateway.networking.k8s.io", "Gateway", "gw")
    );
    assert_eq!(gw.namespace.as_deref(), Some("infra"));
    let set = only("ls-only");
    assert_eq!(
        (set.group.as_str(), set.kind.as_str(), set.name.as_str()),
        ("gateway.networking.k8s.io", "ListenerSet", "ls")
    );
    assert_eq!(set.namespace.as_deref(), Some("infra"));
    assert_eq!(
        listener(&ls(&s, "infra", "ls").listeners, "ls-listener").attached_routes,
        1
    );
    assert_eq!(
        listener(&gw_status(&s).listeners, "gw-listener").attached_routes,
        1
    );
}

/// Conformance ListenerSetGatewayParentSectionNameNotFound (v1.6): a Gateway parentRef cannot
/// reach a ListenerSet's listener by its sectionName (`NoMatchingParent`, nothing served
/// under the Gateway listener's hostname), while a ListenerSet parentRef with that sectionName
/// is accepted and served.
#[test]
fn a_gateway_parent_ref_does_not_find_a_listener_set_section_name() {
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: gw-listener, port: 80, protocol: HTTP, hostname: gw-section.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &set(
        "infra",
        "ls",
        1,
        "[{name: ls-only-listener, port: 80, protocol: HTTP, hostname: ls-section.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &http_route(
        "infra",
        "via-set",
        "[{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls, namespace: infra, sectionName: ls-only-listener}]",
        "/goodsection",
    ) + &http_route(
        "infra",
        "via-gateway",
        "[{name: gw, namespace: infra, sectionName: ls-only-listener}]",
        "/badsection",
    );
    let s = snapshot(&yaml);
    assert_eq!(
        parents_of(&s, "infra", "via-set"),
        [("ListenerSet", "ls", (true, "Accepted"))]
    );
    assert_eq!(
        parents_of(&s, "infra", "via-gateway"),
        [("Gateway", "gw", (false, "NoMatchingParent"))]
    );
    assert_eq!(paths(&s, "ls-section.example"), ["/goodsection"]);
    assert!(paths(&s, "gw-section.example").is_empty());
    assert_eq!(gw_status(&s).attached_listener_sets, 1);
}

/// Conformance ListenerSetAllowedRoutesNamespaces (v1.6 adds the cross-namespace case): a
/// ListenerSet listener's `allowedRoutes.namespaces` is read from the ListenerSet: `Same` is
/// the ListenerSet's namespace (not its Gateway's), `Selector` the labels of the route's
/// Namespace, `All` any. A route from the Gateway's namespace on a `Same` listener of a set
/// elsewhere is `NotAllowedByListeners`.
#[test]
fn listener_set_allowed_routes_namespaces_are_the_sets_own() {
    let set_ref = |ns: &str, name: &str| {
        format!(
            "[{{kind: ListenerSet, group: gateway.networking.k8s.io, name: {name}, namespace: {ns}}}]"
        )
    };
    let yaml = gateway(
        Some("{from: All}"),
        "[{name: gateway-listener, port: 80, protocol: HTTP, hostname: gateway-listener.example, allowedRoutes: {namespaces: {from: All}}}]",
    ) + &set(
        "infra",
        "same-ns",
        1,
        "[{name: all, port: 80, protocol: HTTP, hostname: all.example, allowedRoutes: {namespaces: {from: All}}}, \
          {name: same, port: 80, protocol: HTTP, hostname: same.example, allowedRoutes: {namespaces: {from: Same}}}, \
          {name: selector, port: 80, protocol: HTTP, hostname: selector.example, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {allowed: ns}}}}}]",
    ) + r#"---
apiVersion: v1
kind: Namespace
metadata: {name: allowed-ns, labels: {allowed: ns}}
---
apiVersion: v1
kind: Namespace
metadata: {name: not-allowed-ns}
---
apiVersion: v1
kind: Namespace
metadata: {name: ls-cross-ns}
"# + &set(
        "ls-cross-ns",
        "cross-ns",
        2,
        "[{name: cross-same, port: 80, protocol: HTTP, hostname: cross-same.example, allowedRoutes: {namespaces: {from: Same}}}]",
    ) + &http_route("infra", "in-same", &set_ref("infra", "same-ns"), "/in-same")
        + &http_route(
            "allowed-ns",
            "in-selected",
            &set_ref("infra", "same-ns"),
            "/in-selected",
        )
        + &http_route(
            "not-allowed-ns",
            "not-selected",
            &set_ref("infra", "same-ns"),
            "/not-selected",
        )
        + &http_route(
            "ls-cross-ns",
            "in-set-ns",
            &set_ref("ls-cross-ns", "cross-ns"),
            "/in-set-ns",
        )
        + &http_route(
            "infra",
            "in-gateway-ns",
            &set_ref("ls-cross-ns", "cross-ns"),
            "/in-gateway-ns",
        );
    let s = snapshot(&yaml);
    assert_eq!(gw_status(&s).attached_listener_sets, 2);
    for (ns, name) in [
        ("infra", "in-same"),
        ("allowed-ns", "in-selected"),
        ("not-allowed-ns", "not-selected"),
        ("ls-cross-ns", "in-set-ns"),
    ] {
        assert_eq!(
            parents_of(&s, ns, name)[0].2,
            (true, "Accepted"),
            "{ns}/{name}"
        );
    }
    assert_eq!(
        parents_of(&s, "infra", "in-gateway-ns"),
        [("ListenerSet", "cross-ns", (false, "NotAllowedByListeners"))]
    );
    let same_ns = ls(&s, "infra", "same-ns");
    for (l, n) in [("all", 3), ("same", 1), ("selector", 1)] {
        assert_eq!(listener(&same_ns.listeners, l).attached_routes, n, "{l}");
    }
    let cross = ls(&s, "ls-cross-ns", "cross-ns");
    assert_eq!(cond(&cross.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(listener(&cross.listeners, "cross-same").attached_routes, 1);
    let sorted = |host: &str| {
        let mut p = paths(&s, host);
        p.sort();
        p
    };
    assert_eq!(
        sorted("all.example"),
        ["/in-same", "/in-selected", "/not-selected"]
    );
    assert_eq!(sorted("same.example"), ["/in-same"]);
    assert_eq!(sorted("selector.example"), ["/in-selected"]);
    assert_eq!(sorted("cross-same.example"), ["/in-set-ns"]);
}

/// ListenerSet problems become Events (the diagnostics the Event writer and `explain` read),
/// as route problems do: a set the Gateway does not admit (`NotAllowed`), a listener that
/// loses a conflict (`HostnameConflict`, naming the listener), and one whose certificate does
/// not resolve (`InvalidCertificateRef`). An attached set without problems has none.
#[test]
fn listener_set_problems_become_events() {
    let yaml = gateway(
        Some("{from: Same}"),
        "[{name: http, port: 80, protocol: HTTP, hostname: taken.example}]",
    ) + &set(
        "other",
        "stranger",
        1,
        "[{name: extra, port: 8080, protocol: HTTP}]",
    ) + &set(
        "infra",
        "clash",
        2,
        "[{name: dup, port: 80, protocol: HTTP, hostname: taken.example}, \
          {name: fine, port: 80, protocol: HTTP, hostname: fine.example}]",
    ) + &set(
        "infra",
        "certs",
        3,
        "[{name: secure, port: 443, protocol: HTTPS, hostname: secure.example, tls: {certificateRefs: [{name: missing}]}}]",
    ) + &set(
        "infra",
        "good",
        4,
        "[{name: ok, port: 80, protocol: HTTP, hostname: good.example}]",
    );
    let s = snapshot(&yaml);
    let events = |ns: &str, name: &str| -> Vec<(String, String)> {
        let r = ObjectRef::new(ObjectKind::ListenerSet, ns, name);
        (s.diagnostics.iter())
            .filter(|d| d.object == r)
            .map(|d| (d.reason.clone(), d.message.clone()))
            .collect()
    };
    let reasons = |ns: &str, name: &str| -> Vec<String> {
        events(ns, name).into_iter().map(|(r, _)| r).collect()
    };
    assert_eq!(reasons("other", "stranger"), ["NotAllowed"]);
    let clash = events("infra", "clash");
    assert_eq!(clash.len(), 1, "{clash:?}");
    assert_eq!(clash[0].0, "HostnameConflict");
    assert!(clash[0].1.starts_with("listener dup:"), "{clash:?}");
    // The listener is accepted but not served (no certificate of its own to present), and
    // the set, with no valid listener, is not accepted (conformance ListenerSetReferenceGrant).
    assert_eq!(
        reasons("infra", "certs"),
        ["InvalidCertificateRef", "ListenersNotValid"]
    );
    assert!(events("infra", "good").is_empty());
}

/// Conformance ListenerSetAllowedNamespaceSelector: `allowedListeners` with a label selector
/// admits the set in the labelled Namespace (Accepted, Programmed, its listener accepted and
/// counted in `attachedListenerSets`) and refuses one in an unlabelled Namespace
/// (`NotAllowed`).
#[test]
fn listener_set_allowed_namespace_selector() {
    let listener_of = |host: &str| {
        format!(
            "[{{name: l, port: 80, protocol: HTTP, hostname: {host}, allowedRoutes: {{namespaces: {{from: All}}}}}}]"
        )
    };
    let yaml = gateway(
        Some("{from: Selector, selector: {matchLabels: {allowed: ns}}}"),
        "[{name: gateway-listener, port: 80, protocol: HTTP, hostname: gateway-listener.com, allowedRoutes: {namespaces: {from: All}}}]",
    ) + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: selected, labels: {allowed: ns}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: unselected}\n"
        + &set("selected", "in", 1, &listener_of("in.example"))
        + &set("unselected", "out", 2, &listener_of("out.example"));
    let s = snapshot(&yaml);
    let gw = gw_status(&s);
    assert!(cond(&gw.conditions, "Accepted").0);
    assert_eq!(gw.attached_listener_sets, 1);
    let admitted = ls(&s, "selected", "in");
    assert_eq!(cond(&admitted.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(
        cond(&admitted.conditions, "Programmed"),
        (true, "Programmed")
    );
    let l = listener(&admitted.listeners, "l");
    for (t, want) in [
        ("Accepted", (true, "Accepted")),
        ("Programmed", (true, "Programmed")),
        ("ResolvedRefs", (true, "ResolvedRefs")),
        ("Conflicted", (false, "NoConflicts")),
    ] {
        assert_eq!(cond(&l.conditions, t), want, "{t}");
    }
    let refused = ls(&s, "unselected", "out");
    assert_eq!(cond(&refused.conditions, "Accepted"), (false, "NotAllowed"));
    assert_eq!(
        cond(&refused.conditions, "Programmed"),
        (false, "NotAllowed")
    );
}

/// Conformance ListenerSetAllowedRoutesSupportedKinds: a set's TLS passthrough listener that
/// allows only HTTPRoutes has `ResolvedRefs: False, InvalidRouteKinds` and no supported kind.
#[test]
fn listener_set_allowed_routes_supported_kinds() {
    let yaml = gateway(Some("{from: All}"), HTTP80)
        + &set(
            "infra",
            "kinds",
            1,
            "[{name: tls-only, port: 443, protocol: TLS, hostname: tls-only.example, \
              allowedRoutes: {namespaces: {from: All}, kinds: [{kind: HTTPRoute}]}, \
              tls: {mode: Passthrough}}]",
        );
    let s = snapshot(&yaml);
    let l = listener(&ls(&s, "infra", "kinds").listeners, "tls-only");
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "InvalidRouteKinds")
    );
    assert!(l.supported_kinds.is_empty(), "{:?}", l.supported_kinds);
}

/// Conformance ListenerSetReferenceGrant: a set's HTTPS listener may use a Secret of another
/// namespace when a ReferenceGrant there names ListenerSets of the set's namespace (the
/// Gateway's own grant does not count for it); a set without one has its listener
/// `RefNotPermitted` and, having no valid listener, is `Accepted`/`Programmed: False,
/// ListenersNotValid`. The Gateway, with its own grant, stays accepted.
#[test]
fn listener_set_reference_grant() {
    use super::super::fixtures::{mk_cert_pem, mk_tls_secret};
    let (crt, key) = mk_cert_pem(&["gateway-listener.com", "*.example"]);
    let secret = crate::store::Object::Secret(std::sync::Arc::new(mk_tls_secret(
        "certs",
        "certificate",
        &crt,
        &key,
    )));
    let cert = "tls: {certificateRefs: [{group: \"\", kind: Secret, name: certificate, namespace: certs}]}";
    let grant = |name: &str, kind: &str, ns: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: certs}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: {kind}, namespace: {ns}}}]\n  to: [{{group: \"\", kind: Secret}}]\n"
        )
    };
    let yaml = gateway(
        Some("{from: All}"),
        &format!(
            "[{{name: gateway-listener, port: 443, protocol: HTTPS, hostname: gateway-listener.com, {cert}}}]"
        ),
    ) + &grant("for-gateway", "Gateway", "infra")
        + &grant("for-listener-set", "ListenerSet", "infra")
        + &set(
            "infra",
            "with-grant",
            1,
            &format!("[{{name: l, port: 443, protocol: HTTPS, hostname: with.example, {cert}}}]"),
        )
        + &set(
            "team",
            "without-grant",
            2,
            &format!(
                "[{{name: l, port: 443, protocol: HTTPS, hostname: without.example, {cert}}}]"
            ),
        );
    let s = snapshot_with(&yaml, vec![secret]);
    assert!(cond(&gw_status(&s).conditions, "Accepted").0);
    let with = ls(&s, "infra", "with-grant");
    assert!(cond(&with.conditions, "Accepted").0);
    assert!(cond(&with.conditions, "Programmed").0);
    assert!(cond(&listener(&with.listeners, "l").conditions, "ResolvedRefs").0);
    assert!(s.l7.certificates.contains_key("with.example"));
    let without = ls(&s, "team", "without-grant");
    assert_eq!(
        cond(
            &listener(&without.listeners, "l").conditions,
            "ResolvedRefs"
        ),
        (false, "RefNotPermitted")
    );
    assert_eq!(
        cond(&without.conditions, "Accepted"),
        (false, "ListenersNotValid")
    );
    assert_eq!(
        cond(&without.conditions, "Programmed"),
        (false, "ListenersNotValid")
    );
    assert!(!s.l7.certificates.contains_key("without.example"));
}
