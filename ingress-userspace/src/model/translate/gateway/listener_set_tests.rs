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
    assert_eq!(routes[0].matches.listener_ports, Some(vec![8080]));
    let any: Vec<_> = (s.l7.any_host.iter())
        .flat_map(|vh| vh.routes.iter())
        .filter(|r| r.origin.object.name == "via-set")
        .map(|r| r.matches.listener_ports.clone())
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
    // As for a Gateway: a listener whose references do not resolve is still accepted (it
    // is not served: Programmed False), so the set is Accepted.
    assert!(!cond(&borrowed.conditions, "Programmed").0);
    assert_eq!(cond(&st.conditions, "Accepted"), (true, "Accepted"));
}
