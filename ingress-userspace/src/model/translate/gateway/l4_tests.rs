//! TCPRoute and UDPRoute translation: expectations from the Gateway API reference (v1
//! `Listener`, `ParentReference`, `BackendRef` weights, `ListenerConditionReason`,
//! `RouteConditionReason`, v1beta1 `ReferenceGrant`) and the decisions documented in
//! [`super::l4`] and deploy/docs/gateway-api.md.

use super::test_support::{cond, gateway_yaml, snapshot};
use crate::{
    dataplane::maglev::{self, MaglevBackend},
    model::{Frontend, L4Protocol, L4Service, ObjectKind, ObjectRef, Snapshot, StatusCondition},
};

fn listener<'a>(s: &'a Snapshot, gw: &str, name: &str) -> &'a crate::model::ListenerStatus {
    s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", gw)]
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

fn parent<'a>(s: &'a Snapshot, kind: ObjectKind, name: &str) -> &'a [StatusCondition] {
    &s.gateway_status.routes[&ObjectRef::new(kind, "app", name)][0].conditions
}

fn l4<'a>(s: &'a Snapshot, id: &str) -> Option<&'a L4Service> {
    s.l4.iter().find(|x| x.id == id)
}

fn gateway(name: &str, created: &str, listeners: &str) -> String {
    gateway_yaml(
        &format!("{{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}"),
        &format!("  listeners:\n{listeners}"),
    )
}

fn route(kind: &str, name: &str, created: &str, parents: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: {kind}\nmetadata: {{name: {name}, namespace: app, generation: 2, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: {parents}\n  rules: [{{backendRefs: {backends}}}]\n"
    )
}

const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-02T00:00:00Z";

#[test]
fn tcp_and_udp_listeners_with_routes_become_l4_services_like_node_ports() {
    let s = snapshot(&format!(
        "{}{}{}",
        gateway(
            "gw",
            T0,
            "  - {name: pg, port: 15432, protocol: TCP}\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n"
        ),
        route(
            "TCPRoute",
            "pg",
            T0,
            "[{name: gw, sectionName: pg}]",
            "[{name: db, port: 5432}]"
        ),
        route(
            "UDPRoute",
            "dns",
            T0,
            "[{name: gw, port: 53}]",
            "[{name: dns, port: 53}]"
        ),
    ));
    let pg = l4(&s, "gateway/app/gw:pg").expect("TCP listener served");
    assert_eq!(pg.protocol, L4Protocol::Tcp);
    assert_eq!(pg.frontends, [Frontend::NodePort(15432)]);
    assert_eq!(
        pg.service,
        ObjectRef::new(ObjectKind::TCPRoute, "app", "pg")
    );
    let addrs: Vec<String> = pg.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.1:5432"]);
    let dns = l4(&s, "gateway/app/gw:dns").expect("UDP listener served");
    assert_eq!(dns.protocol, L4Protocol::Udp);
    assert_eq!(dns.frontends, [Frontend::NodePort(53)]);
    assert_eq!(dns.endpoints[0].addr.to_string(), "10.0.2.1:53");
    // TCP and UDP on one port do not conflict; the UDPRoute's `port: 53` names both
    // listeners, and attaches to the one that takes UDPRoutes.
    assert!(l4(&s, "gateway/app/gw:dns-tcp").is_none());
    for name in ["pg", "dns", "dns-tcp"] {
        let l = listener(&s, "gw", name);
        assert_eq!(
            cond(&l.conditions, "Accepted"),
            (true, "Accepted"),
            "{name}"
        );
        assert_eq!(
            cond(&l.conditions, "Conflicted"),
            (false, "NoConflicts"),
            "{name}"
        );
        assert_eq!(
            cond(&l.conditions, "Programmed"),
            (true, "Programmed"),
            "{name}"
        );
    }
    assert_eq!(
        listener(&s, "gw", "pg").supported_kinds,
        [("gateway.networking.k8s.io".into(), "TCPRoute".into())]
    );
    assert_eq!(listener(&s, "gw", "pg").attached_routes, 1);
    assert_eq!(listener(&s, "gw", "dns").attached_routes, 1);
    assert_eq!(listener(&s, "gw", "dns-tcp").attached_routes, 0);
    for (kind, name) in [(ObjectKind::TCPRoute, "pg"), (ObjectKind::UDPRoute, "dns")] {
        let p = parent(&s, kind, name);
        assert_eq!(cond(p, "Accepted"), (true, "Accepted"));
        assert_eq!(cond(p, "ResolvedRefs"), (true, "ResolvedRefs"));
        assert_eq!(p[0].observed_generation, 2);
    }
}

/// `BackendRef.weight`: "the proportion of requests forwarded ... weight/(sum of all
/// weights)": 3 to db (one pod) and 1 to db2 (two pods) gives a Maglev table with 3/4 of its
/// entries on db's pod and 1/8 on each of db2's.
#[test]
fn backend_weights_split_new_connections_through_maglev() {
    let s = snapshot(&format!(
        "{}{}",
        gateway("gw", T0, "  - {name: pg, port: 15432, protocol: TCP}\n"),
        route(
            "TCPRoute",
            "pg",
            T0,
            "[{name: gw}]",
            "[{name: db, port: 5432, weight: 3}, {name: db2, port: 5432, weight: 1}, {name: db2, port: 5432, weight: 0}]"
        ),
    ));
    let svc = l4(&s, "gateway/app/gw:pg").unwrap();
    let names: Vec<String> = svc.endpoints.iter().map(|e| e.addr.to_string()).collect();
    let backends: Vec<MaglevBackend<'_>> = names
        .iter()
        .zip(&svc.endpoints)
        .map(|(n, e)| MaglevBackend {
            name: n,
            weight: e.weight,
        })
        .collect();
    let size = 65537;
    let table = maglev::build(&backends, size).unwrap();
    let share = |i: u32| table.iter().filter(|&&x| x == i).count() as f64 / f64::from(size);
    assert_eq!(names, ["10.0.0.1:5432", "10.0.1.1:5432", "10.0.1.2:5432"]);
    for (i, want) in [(0, 0.75), (1, 0.125), (2, 0.125)] {
        assert!(
            (share(i) - want).abs() < 0.01,
            "{names:?} {i}: {}",
            share(i)
        );
    }
}

/// `PortUnavailable`: a listener port held by a NodePort (same protocol), the proxy's own
/// ports, or an older Gateway's listener; every other listener stays served, and so does the
/// NodePort.
#[test]
fn port_collisions_take_only_the_later_listener_out_of_service() {
    let s = snapshot(&format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: np, namespace: app, annotations: {{xdp-ingress.dev/l4-acceleration: "true"}}}}
spec: {{type: NodePort, ports: [{{name: pg, port: 5432, nodePort: 30432}}]}}
{}{}{}{}"#,
        gateway(
            "old",
            T0,
            "  - {name: np, port: 30432, protocol: TCP}\n  - {name: np-udp, port: 30432, protocol: UDP}\n  - {name: proxy, port: 443, protocol: TCP}\n  - {name: shared, port: 6000, protocol: TCP}\n"
        ),
        gateway("new", T1, "  - {name: shared, port: 6000, protocol: TCP}\n"),
        route(
            "TCPRoute",
            "old",
            T0,
            "[{name: old}]",
            "[{name: db, port: 5432}]"
        ),
        route(
            "TCPRoute",
            "new",
            T0,
            "[{name: new}]",
            "[{name: db2, port: 5432}]"
        ),
    ));
    let l = |gw: &str, name: &str| listener(&s, gw, name).conditions.clone();
    for (gw, name) in [("old", "np"), ("old", "proxy"), ("new", "shared")] {
        assert_eq!(
            cond(&l(gw, name), "Accepted"),
            (false, "PortUnavailable"),
            "{gw} {name}"
        );
        assert_eq!(cond(&l(gw, name), "Programmed"), (false, "Invalid"));
        assert!(l4(&s, &format!("gateway/app/{gw}:{name}")).is_none());
    }
    assert_eq!(
        cond(&l("old", "shared"), "Programmed"),
        (true, "Programmed")
    );
    let shared = l4(&s, "gateway/app/old:shared").unwrap();
    assert_eq!(shared.endpoints[0].addr.to_string(), "10.0.0.1:5432");
    assert_eq!(
        cond(&l("old", "np-udp"), "Programmed"),
        (true, "Programmed")
    );
    assert!(l4(&s, "app/np:pg").is_some(), "the NodePort keeps its port");
    // The newer Gateway's only listener is out, its route still attached and counted
    // (ListenerStatus.attachedRoutes: "Listener or Route status does not impact successful
    // attachment"), served nowhere (no L4 service above).
    let p = parent(&s, ObjectKind::TCPRoute, "new");
    assert_eq!(cond(p, "Accepted"), (true, "Accepted"));
    assert_eq!(listener(&s, "new", "shared").attached_routes, 1);
}

/// TCP carries nothing to choose between routes: the oldest route takes the listener's
/// connections; a later one is accepted there and counted (Gateway API v1.6 conformance,
/// TCPRouteMultipleRoutesAttachment) but serves nothing.
#[test]
fn one_route_per_listener_the_oldest_wins() {
    let s = snapshot(&format!(
        "{}{}{}",
        gateway("gw", T0, "  - {name: pg, port: 15432, protocol: TCP}\n"),
        route(
            "TCPRoute",
            "later",
            T1,
            "[{name: gw}]",
            "[{name: db2, port: 5432}]"
        ),
        route(
            "TCPRoute",
            "first",
            T0,
            "[{name: gw}]",
            "[{name: db, port: 5432}]"
        ),
    ));
    let svc = l4(&s, "gateway/app/gw:pg").unwrap();
    assert_eq!(svc.service.name, "first");
    assert_eq!(listener(&s, "gw", "pg").attached_routes, 2);
    assert_eq!(
        cond(parent(&s, ObjectKind::TCPRoute, "first"), "Accepted"),
        (true, "Accepted")
    );
    assert_eq!(
        cond(parent(&s, ObjectKind::TCPRoute, "later"), "Accepted"),
        (true, "Accepted")
    );
}

/// `RouteConditionReason` and `ListenerConditionReason` for L4 routes: NoMatchingParent,
/// NotAllowedByListeners (kind or namespace not allowed), InvalidRouteKinds, and the
/// backendRef reasons (RefNotPermitted without a ReferenceGrant, UnsupportedProtocol for a
/// UDP Service port behind a TCPRoute); a route whose backendRefs all fail still holds its
/// listener, refusing connections (no endpoints).
#[test]
fn attachment_and_reference_conditions_follow_the_spec() {
    let s = snapshot(&format!(
        r#"{}{}{}{}{}{}
---
apiVersion: v1
kind: Service
metadata: {{name: far, namespace: other}}
spec: {{ports: [{{port: 7000}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: granted, namespace: granting}}
spec: {{ports: [{{port: 7000}}]}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: tcp, namespace: granting}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: app}}]
  to: [{{group: "", kind: Service}}]
"#,
        gateway(
            "gw",
            T0,
            "  - {name: a, port: 7001, protocol: TCP}\n  - {name: b, port: 7002, protocol: TCP}\n  - {name: c, port: 7003, protocol: TCP}\n  - {name: http-only, port: 7004, protocol: TCP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}\n"
        ),
        route(
            "TCPRoute",
            "nomatch",
            T0,
            "[{name: gw, sectionName: nope}]",
            "[{name: db, port: 5432}]"
        ),
        route(
            "UDPRoute",
            "wrongkind",
            T0,
            "[{name: gw, sectionName: a}]",
            "[{name: dns, port: 53}]"
        ),
        route(
            "TCPRoute",
            "refs",
            T0,
            "[{name: gw, sectionName: a}]",
            "[{name: far, namespace: other, port: 7000}]"
        ),
        route(
            "TCPRoute",
            "granted",
            T0,
            "[{name: gw, sectionName: b}]",
            "[{name: granted, namespace: granting, port: 7000}]"
        ),
        route(
            "TCPRoute",
            "proto",
            T0,
            "[{name: gw, sectionName: c}]",
            "[{name: dns, port: 53}]"
        ),
    ));
    let p = |k, n| parent(&s, k, n).to_vec();
    assert_eq!(
        cond(&p(ObjectKind::TCPRoute, "nomatch"), "Accepted"),
        (false, "NoMatchingParent")
    );
    assert_eq!(
        cond(&p(ObjectKind::UDPRoute, "wrongkind"), "Accepted"),
        (false, "NotAllowedByListeners")
    );
    assert_eq!(
        cond(&p(ObjectKind::TCPRoute, "refs"), "ResolvedRefs"),
        (false, "RefNotPermitted")
    );
    assert_eq!(
        cond(&p(ObjectKind::TCPRoute, "refs"), "Accepted"),
        (true, "Accepted")
    );
    let refused = l4(&s, "gateway/app/gw:a").expect("the listener refuses rather than passes");
    assert!(refused.endpoints.is_empty());
    assert_eq!(
        cond(&p(ObjectKind::TCPRoute, "granted"), "ResolvedRefs"),
        (true, "ResolvedRefs")
    );
    assert_eq!(
        cond(&p(ObjectKind::TCPRoute, "proto"), "ResolvedRefs"),
        (false, "UnsupportedProtocol")
    );
    let l = listener(&s, "gw", "http-only");
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "InvalidRouteKinds")
    );
    assert!(l.supported_kinds.is_empty());
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.object.name == "refs" && d.reason == "RefNotPermitted")
    );
}

/// One port, one protocol family for the node (Gateway API `PortUnavailable`: "the port is
/// already in use"): an HTTP or HTTPS listener on a port an older Gateway's TCP listener holds
/// is refused, as is a TCP listener on a port an older Gateway's HTTP listener holds; a UDP
/// listener on that port is another transport and is served, and a newer HTTP listener shares
/// the older HTTP listener's port. The proxy opens only the ports its HTTP/HTTPS listeners
/// hold.
#[test]
fn tcp_and_http_listeners_do_not_share_a_port() {
    let s = snapshot(&format!(
        "{}{}{}{}{}",
        gateway(
            "old",
            T0,
            "  - {name: tcp, port: 6001, protocol: TCP}\n  - {name: web, port: 6002, protocol: HTTP}\n"
        ),
        gateway(
            "new",
            T1,
            "  - {name: web, port: 6001, protocol: HTTP}\n  - {name: tcp, port: 6002, protocol: TCP}\n  - {name: udp, port: 6002, protocol: UDP}\n"
        ),
        gateway(
            "newer",
            "2024-01-03T00:00:00Z",
            "  - {name: web2, port: 6002, protocol: HTTP}\n"
        ),
        route(
            "TCPRoute",
            "old",
            T0,
            "[{name: old}]",
            "[{name: db, port: 5432}]"
        ),
        route(
            "TCPRoute",
            "new",
            T0,
            "[{name: new, sectionName: tcp}]",
            "[{name: db2, port: 5432}]"
        ),
    ));
    let l = |gw: &str, name: &str| listener(&s, gw, name).conditions.clone();
    for (gw, name) in [("new", "web"), ("new", "tcp")] {
        let c = l(gw, name);
        assert_eq!(
            cond(&c, "Accepted"),
            (false, "PortUnavailable"),
            "{gw} {name}"
        );
        assert_eq!(cond(&c, "Programmed"), (false, "Invalid"), "{gw} {name}");
    }
    for (gw, name) in [
        ("old", "tcp"),
        ("old", "web"),
        ("new", "udp"),
        ("newer", "web2"),
    ] {
        assert_eq!(
            cond(&l(gw, name), "Programmed"),
            (true, "Programmed"),
            "{gw} {name}"
        );
    }
    assert!(l4(&s, "gateway/app/old:tcp").is_some());
    assert!(l4(&s, "gateway/app/new:tcp").is_none());
    let ports: Vec<u16> = s.l7.gateway_listeners.keys().copied().collect();
    assert_eq!(ports, [6002], "6001 is the XDP path's");
}

/// TLS passthrough listeners share the HTTPS port with HTTPS ones (told apart by hostname);
/// another port of the Gateway range is served too (its own table,
/// [`tls_passthrough_listeners_open_their_own_ports`]), the proxy's HTTP port is
/// `PortUnavailable`; `tls.mode: Terminate` needs its certificate. TLSRoute
/// hostnames intersected with the listener's become `Pass` entries, the oldest route keeping a
/// hostname; the listener's own hostname closes the rest; a route and listener without any
/// hostname (`hostnames: []`, which the v1 CRD refuses but a manifest file may hold) are not
/// served: they would take every name of the shared port.
#[test]
fn tls_routes_become_the_sni_table_of_the_https_port() {
    use crate::model::SniAction;
    let s = snapshot(&format!(
        r#"{}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: first, namespace: app, creationTimestamp: "{T0}"}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [db.pass.example, "*.deep.pass.example", other.example]
  rules: [{{backendRefs: [{{name: db, port: 5432, weight: 2}}, {{name: db2, port: 5432}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: later, namespace: app, creationTimestamp: "{T1}"}}
spec:
  parentRefs: [{{name: gw, sectionName: pass}}]
  hostnames: [db.pass.example]
  rules: [{{backendRefs: [{{name: db2, port: 5432}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: everything, namespace: app, creationTimestamp: "{T0}"}}
spec:
  parentRefs: [{{name: gw, sectionName: bare}}]
  hostnames: []
  rules: [{{backendRefs: [{{name: db, port: 5432}}]}}]
"#,
        gateway(
            "gw",
            T0,
            "  - {name: pass, port: 443, protocol: TLS, hostname: \"*.pass.example\", tls: {mode: Passthrough}}\n  - {name: bare, port: 443, protocol: TLS, tls: {mode: Passthrough}}\n  - {name: web, port: 443, protocol: HTTPS, hostname: www.pass.example, tls: {certificateRefs: [{name: missing}]}}\n  - {name: elsewhere, port: 8443, protocol: TLS, tls: {mode: Passthrough}}\n  - {name: on-http, port: 80, protocol: TLS, hostname: h.example, tls: {mode: Passthrough}}\n  - {name: terminate, port: 9443, protocol: TLS, hostname: t.example, tls: {mode: Terminate}}\n"
        ),
    ));
    let l = |name: &str| listener(&s, "gw", name).conditions.clone();
    assert_eq!(cond(&l("pass"), "Programmed"), (true, "Programmed"));
    assert_eq!(cond(&l("pass"), "Conflicted"), (false, "NoConflicts"));
    assert_eq!(
        listener(&s, "gw", "pass").supported_kinds,
        [("gateway.networking.k8s.io".into(), "TLSRoute".into())]
    );
    assert_eq!(cond(&l("elsewhere"), "Programmed"), (true, "Programmed"));
    assert_eq!(listener(&s, "gw", "elsewhere").port, Some(8443));
    assert_eq!(cond(&l("on-http"), "Accepted"), (false, "PortUnavailable"));
    // Terminate (TLSRouteModeTerminate) is served wherever HTTPS is, with a certificate.
    assert_eq!(cond(&l("terminate"), "Accepted"), (true, "Accepted"));
    assert_eq!(
        cond(&l("terminate"), "ResolvedRefs"),
        (false, "InvalidCertificateRef")
    );
    let sni = &s.l7.gateway_sni;
    match &sni["db.pass.example"] {
        SniAction::Pass {
            route,
            backends,
            terminate: false,
            ..
        } => {
            assert_eq!(route.name, "first");
            let w: Vec<(String, u32)> = backends
                .iter()
                .map(|b| (b.upstream.service.name.clone(), b.weight))
                .collect();
            assert_eq!(w, [("db".to_string(), 2), ("db2".to_string(), 1)]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sni["*.deep.pass.example"], SniAction::Pass { .. }));
    assert!(matches!(sni["*.pass.example"], SniAction::Close));
    assert!(
        !sni.contains_key("other.example"),
        "outside the listener's hostname"
    );
    assert_eq!(listener(&s, "gw", "pass").attached_routes, 1);
    let p = |n| parent(&s, ObjectKind::TLSRoute, n).to_vec();
    assert_eq!(cond(&p("first"), "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&p("later"), "Accepted"), (false, "UnsupportedValue"));
    assert_eq!(
        cond(&p("everything"), "Accepted"),
        (false, "UnsupportedValue")
    );
    assert!(!sni.contains_key(""));
}

/// Gateway API v1 `Listener` ("Distinct Listeners"): an HTTP and a UDP listener on one port
/// are not a ProtocolConflict (one is reached over TCP, the other over UDP): both are
/// accepted and served (the proxy opens the TCP port, the XDP path takes the UDP one). A TCP
/// listener and an HTTP listener on one port are ("all the Listeners that share a port with
/// the TCP Listener are not distinct"), in a Gateway and across a ListenerSet alike.
#[test]
fn listeners_of_different_transports_share_a_port() {
    let s = snapshot(&format!(
        "{}{}",
        gateway(
            "gw",
            T0,
            "  - {name: web, port: 8053, protocol: HTTP}\n  - {name: dns, port: 8053, protocol: UDP}\n  - {name: tcp, port: 9000, protocol: TCP}\n  - {name: http, port: 9000, protocol: HTTP}\n",
        ),
        route(
            "UDPRoute",
            "dns",
            T0,
            "[{name: gw, sectionName: dns}]",
            "[{name: dns, port: 53}]"
        ),
    ));
    for name in ["web", "dns"] {
        let l = listener(&s, "gw", name);
        assert_eq!(
            cond(&l.conditions, "Conflicted"),
            (false, "NoConflicts"),
            "{name}"
        );
        assert_eq!(
            cond(&l.conditions, "Programmed"),
            (true, "Programmed"),
            "{name}"
        );
    }
    for name in ["tcp", "http"] {
        let l = listener(&s, "gw", name);
        assert_eq!(
            cond(&l.conditions, "Conflicted"),
            (true, "ProtocolConflict"),
            "{name}"
        );
    }
    // Conflicted listeners make the Gateway's reason `ListenersNotValid`; the others keep it
    // accepted (Gateway API v1 `GatewayConditionAccepted`).
    let gw = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", "gw")];
    assert_eq!(
        cond(&gw.conditions, "Accepted"),
        (true, "ListenersNotValid")
    );
    let accepted = gw.conditions.iter().find(|c| c.type_ == "Accepted");
    let message = accepted.map(|c| c.message.as_str()).unwrap_or_default();
    assert!(
        message.contains("tcp") && message.contains("http") && !message.contains("dns"),
        "{message}"
    );
    assert!(s.l7.gateway_listeners.contains_key(&8053));
    let udp = l4(&s, "gateway/app/gw:dns").expect("the UDP listener's service");
    assert_eq!(
        (udp.protocol, &udp.frontends),
        (L4Protocol::Udp, &vec![Frontend::NodePort(8053)])
    );
}

// Gateway API v1.6's TCPRoute and UDPRoute conformance scenarios (conformance/tests/tcproute-*
// and udproute-*), as translation and status expectations. Routes here are `v1`.

/// A `v1` TCPRoute or UDPRoute in namespace `app`, generation 2.
fn v1_route(kind: &str, name: &str, created: &str, parents: &str, backends: &str) -> String {
    route(kind, name, created, parents, backends).replace(
        "gateway.networking.k8s.io/v1alpha2",
        "gateway.networking.k8s.io/v1",
    )
}

/// A Service `ns/name` with one `protocol` port and one ready endpoint at `ip`.
fn backend(ns: &str, name: &str, protocol: &str, port: u16, ip: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{ports: [{{port: {port}, protocol: {protocol}}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{port: {port}, protocol: {protocol}}}]\n\
         endpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]\n"
    )
}

fn addrs(s: &Snapshot, id: &str) -> Vec<String> {
    l4(s, id)
        .unwrap_or_else(|| panic!("{id} not served: {:?}", s.l4))
        .endpoints
        .iter()
        .map(|e| e.addr.to_string())
        .collect()
}

/// TCPRouteInvalidBackendRefNonexistent, UDPRouteInvalidBackendRefNonexistent: a backendRef
/// to a Service that does not exist is `ResolvedRefs: False, BackendNotFound`; the route stays
/// accepted and its listener refuses connections.
#[test]
fn v16_backend_ref_to_a_missing_service_is_backend_not_found() {
    let s = snapshot(&format!(
        "{}{}{}",
        gateway(
            "gw",
            T0,
            "  - {name: tcp, port: 9300, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}\n  - {name: udp, port: 9301, protocol: UDP}\n"
        ),
        v1_route(
            "TCPRoute",
            "t",
            T0,
            "[{name: gw, sectionName: tcp}]",
            "[{name: nonexistent, port: 8080}]"
        ),
        v1_route(
            "UDPRoute",
            "u",
            T0,
            "[{name: gw, sectionName: udp}]",
            "[{name: nonexistent, port: 8080}]"
        ),
    ));
    for (kind, name, id) in [
        (ObjectKind::TCPRoute, "t", "gateway/app/gw:tcp"),
        (ObjectKind::UDPRoute, "u", "gateway/app/gw:udp"),
    ] {
        let p = parent(&s, kind, name);
        assert_eq!(
            cond(p, "ResolvedRefs"),
            (false, "BackendNotFound"),
            "{name}"
        );
        assert_eq!(cond(p, "Accepted"), (true, "Accepted"), "{name}");
        assert!(addrs(&s, id).is_empty(), "{id} refuses");
    }
    assert_eq!(listener(&s, "gw", "tcp").attached_routes, 1);
}

/// TCPRouteInvalidCrossNamespaceBackendRef, TCPRouteReferenceGrant and their UDP twins: a
/// backendRef to another namespace is `RefNotPermitted` (route still accepted) until a
/// ReferenceGrant there allows the route's kind and namespace to that Service; then traffic
/// reaches it, and without the grant again it is `RefNotPermitted`.
#[test]
fn v16_cross_namespace_backend_refs_follow_reference_grants() {
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n\
                 metadata: {name: g, namespace: web}\nspec:\n  from:\n  \
                 - {group: gateway.networking.k8s.io, kind: TCPRoute, namespace: app}\n  \
                 - {group: gateway.networking.k8s.io, kind: UDPRoute, namespace: app}\n  \
                 to: [{group: \"\", kind: Service, name: tcp-far}, {group: \"\", kind: Service, name: udp-far}]\n";
    let objects = format!(
        "{}{}{}{}{}",
        backend("web", "tcp-far", "TCP", 3000, "10.9.0.1"),
        backend("web", "udp-far", "UDP", 8080, "10.9.0.2"),
        gateway(
            "gw",
            T0,
            "  - {name: tcp, port: 9321, protocol: TCP}\n  - {name: udp, port: 9322, protocol: UDP}\n"
        ),
        v1_route(
            "TCPRoute",
            "t",
            T0,
            "[{name: gw, sectionName: tcp}]",
            "[{name: tcp-far, namespace: web, port: 3000}]"
        ),
        v1_route(
            "UDPRoute",
            "u",
            T0,
            "[{name: gw, sectionName: udp}]",
            "[{name: udp-far, namespace: web, port: 8080}]"
        ),
    );
    let cases = [
        (
            ObjectKind::TCPRoute,
            "t",
            "gateway/app/gw:tcp",
            "10.9.0.1:3000",
        ),
        (
            ObjectKind::UDPRoute,
            "u",
            "gateway/app/gw:udp",
            "10.9.0.2:8080",
        ),
    ];
    let without = snapshot(&objects);
    let with = snapshot(&format!("{objects}{grant}"));
    for (kind, name, id, addr) in cases {
        let p = parent(&without, kind, name);
        assert_eq!(cond(p, "Accepted"), (true, "Accepted"), "{name}");
        assert_eq!(
            cond(p, "ResolvedRefs"),
            (false, "RefNotPermitted"),
            "{name}"
        );
        assert!(addrs(&without, id).is_empty(), "{id}");
        let p = parent(&with, kind, name);
        assert_eq!(cond(p, "ResolvedRefs"), (true, "ResolvedRefs"), "{name}");
        assert_eq!(addrs(&with, id), [addr]);
    }
}

/// TCPRouteInvalidNonTCPListener, UDPRouteNotAllowedByListeners: a route naming (by
/// sectionName) a listener of another protocol (HTTP allowing only HTTPRoutes; TLS
/// passthrough) is `Accepted: False, NotAllowedByListeners`, and the Gateway counts no route.
#[test]
fn v16_route_on_a_listener_of_another_protocol_is_not_allowed() {
    let s = snapshot(&format!(
        "{}{}{}",
        gateway(
            "gw",
            T0,
            "  - {name: only-http, port: 5300, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}\n  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: Same}}}\n"
        ),
        v1_route(
            "TCPRoute",
            "t",
            T0,
            "[{name: gw, sectionName: only-http}]",
            "[{name: db, port: 5432}]"
        ),
        v1_route(
            "UDPRoute",
            "u",
            T0,
            "[{name: gw, sectionName: tls}]",
            "[{name: dns, port: 53}]"
        ),
    ));
    for (kind, name) in [(ObjectKind::TCPRoute, "t"), (ObjectKind::UDPRoute, "u")] {
        assert_eq!(
            cond(parent(&s, kind, name), "Accepted"),
            (false, "NotAllowedByListeners"),
            "{name}"
        );
    }
    for l in ["only-http", "tls"] {
        assert_eq!(listener(&s, "gw", l).attached_routes, 0, "{l}");
    }
    assert!(s.l4.is_empty(), "{:?}", s.l4);
}

/// TCPRouteMultipleRoutesAttachment, UDPRouteMultipleRoutesAttachment: two routes on one
/// listener are both `Accepted` and both counted (`attachedRoutes: 2`); only the older one's
/// backends receive connections.
#[test]
fn v16_later_route_on_a_taken_listener_is_accepted_and_counted_but_not_served() {
    let s = snapshot(&format!(
        "{}{}{}{}{}{}{}",
        backend("app", "udp-1", "UDP", 8080, "10.8.0.1"),
        backend("app", "udp-2", "UDP", 8080, "10.8.0.2"),
        gateway(
            "gw",
            T0,
            "  - {name: tcp, port: 9310, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute, group: gateway.networking.k8s.io}], namespaces: {from: Same}}}\n  - {name: udp, port: 5301, protocol: UDP, allowedRoutes: {kinds: [{kind: UDPRoute}]}}\n"
        ),
        v1_route(
            "TCPRoute",
            "newer",
            T1,
            "[{name: gw, sectionName: tcp}]",
            "[{name: db2, port: 5432}]"
        ),
        v1_route(
            "TCPRoute",
            "older",
            T0,
            "[{name: gw, sectionName: tcp}]",
            "[{name: db, port: 5432}]"
        ),
        v1_route(
            "UDPRoute",
            "newer",
            T1,
            "[{name: gw, sectionName: udp}]",
            "[{name: udp-2, port: 8080}]"
        ),
        v1_route(
            "UDPRoute",
            "older",
            T0,
            "[{name: gw, sectionName: udp}]",
            "[{name: udp-1, port: 8080}]"
        ),
    ));
    for kind in [ObjectKind::TCPRoute, ObjectKind::UDPRoute] {
        for name in ["older", "newer"] {
            let p = parent(&s, kind, name);
            assert_eq!(cond(p, "Accepted"), (true, "Accepted"), "{kind:?} {name}");
            assert_eq!(cond(p, "ResolvedRefs"), (true, "ResolvedRefs"));
        }
    }
    for (l, kind, addr) in [
        ("tcp", "TCPRoute", "10.0.0.1:5432"),
        ("udp", "UDPRoute", "10.8.0.1:8080"),
    ] {
        let ls = listener(&s, "gw", l);
        assert_eq!(ls.attached_routes, 2, "{l}");
        assert_eq!(cond(&ls.conditions, "Accepted"), (true, "Accepted"));
        assert_eq!(ls.supported_kinds.len(), 1, "{l}");
        assert!(format!("{:?}", ls.supported_kinds[0]).contains(kind));
        let id = format!("gateway/app/gw:{l}");
        assert_eq!(addrs(&s, &id), [addr], "only the older route's backend");
        assert_eq!(l4(&s, &id).unwrap().service.name, "older");
    }
    assert!(
        s.diagnostics
            .iter()
            .any(|d| d.object.name == "newer" && d.reason == "ListenerServedByOlderRoute")
    );
}

/// TCPRouteParentRefAttachAll, UDPRouteParentRefAttachAllListeners: a parentRef with neither
/// sectionName nor port attaches to every listener of the route's protocol, each served by
/// the route's backend and counting it once.
#[test]
fn v16_parent_ref_without_section_or_port_attaches_to_every_listener() {
    let s = snapshot(&format!(
        "{}{}{}{}",
        backend("app", "udp-echo", "UDP", 8080, "10.8.1.1"),
        gateway(
            "gw",
            T0,
            "  - {name: one, port: 9310, protocol: TCP}\n  - {name: two, port: 9311, protocol: TCP}\n  - {name: three, port: 9312, protocol: TCP}\n  - {name: four, port: 9313, protocol: TCP}\n  - {name: udp-1, port: 5310, protocol: UDP}\n  - {name: udp-2, port: 5311, protocol: UDP}\n  - {name: udp-3, port: 5312, protocol: UDP}\n"
        ),
        v1_route(
            "TCPRoute",
            "t",
            T0,
            "[{name: gw}]",
            "[{name: db, port: 5432}]"
        ),
        v1_route(
            "UDPRoute",
            "u",
            T0,
            "[{name: gw}]",
            "[{name: udp-echo, port: 8080}]"
        ),
    ));
    for (kind, name) in [(ObjectKind::TCPRoute, "t"), (ObjectKind::UDPRoute, "u")] {
        let parents = &s.gateway_status.routes[&ObjectRef::new(kind, "app", name)];
        assert_eq!(parents.len(), 1, "{name}: one parent entry");
        assert_eq!(cond(&parents[0].conditions, "Accepted"), (true, "Accepted"));
    }
    for l in ["one", "two", "three", "four"] {
        assert_eq!(listener(&s, "gw", l).attached_routes, 1, "{l}");
        assert_eq!(addrs(&s, &format!("gateway/app/gw:{l}")), ["10.0.0.1:5432"]);
    }
    for l in ["udp-1", "udp-2", "udp-3"] {
        let ls = listener(&s, "gw", l);
        assert_eq!(ls.attached_routes, 1, "{l}");
        assert!(cond(&ls.conditions, "Accepted").0, "{l}");
        assert!(cond(&ls.conditions, "ResolvedRefs").0, "{l}");
        assert_eq!(addrs(&s, &format!("gateway/app/gw:{l}")), ["10.8.1.1:8080"]);
    }
}

/// TCPRouteParentRefPortAndSectionName, UDPRouteParentRefPortAndSectionName: a parentRef picks
/// a listener by port, by sectionName, or by both; each route lands on its listener only.
#[test]
fn v16_parent_ref_picks_a_listener_by_port_by_section_or_both() {
    let s = snapshot(&format!(
        "{}{}{}{}{}{}{}{}",
        backend("app", "one", "TCP", 3000, "10.7.0.1"),
        backend("app", "two", "TCP", 3000, "10.7.0.2"),
        backend("app", "three", "UDP", 3000, "10.7.0.3"),
        gateway(
            "gw",
            T0,
            "  - {name: one, port: 9300, protocol: TCP}\n  - {name: two, port: 9301, protocol: TCP}\n  - {name: three, port: 9302, protocol: UDP}\n"
        ),
        v1_route(
            "TCPRoute",
            "by-port",
            T0,
            "[{name: gw, port: 9300}]",
            "[{name: one, port: 3000}]"
        ),
        v1_route(
            "TCPRoute",
            "by-section",
            T0,
            "[{name: gw, sectionName: two}]",
            "[{name: two, port: 3000}]"
        ),
        v1_route(
            "UDPRoute",
            "by-both",
            T0,
            "[{name: gw, sectionName: three, port: 9302}]",
            "[{name: three, port: 3000}]"
        ),
        // Section and port that name different listeners match none.
        v1_route(
            "TCPRoute",
            "mismatch",
            T0,
            "[{name: gw, sectionName: one, port: 9301}]",
            "[{name: two, port: 3000}]"
        ),
    ));
    for (kind, name) in [
        (ObjectKind::TCPRoute, "by-port"),
        (ObjectKind::TCPRoute, "by-section"),
        (ObjectKind::UDPRoute, "by-both"),
    ] {
        assert_eq!(cond(parent(&s, kind, name), "Accepted"), (true, "Accepted"));
    }
    assert!(!cond(parent(&s, ObjectKind::TCPRoute, "mismatch"), "Accepted").0);
    for (l, addr, route) in [
        ("one", "10.7.0.1:3000", "by-port"),
        ("two", "10.7.0.2:3000", "by-section"),
        ("three", "10.7.0.3:3000", "by-both"),
    ] {
        let id = format!("gateway/app/gw:{l}");
        assert_eq!(addrs(&s, &id), [addr]);
        assert_eq!(l4(&s, &id).unwrap().service.name, route);
        assert_eq!(listener(&s, "gw", l).attached_routes, 1, "{l}");
    }
}

/// TCPRouteWeightedRouting, UDPRouteWeightedRouting: weights 70/30/0 split new connections
/// 0.7/0.3 through Maglev; the weight-0 backend receives none (not in the table at all).
#[test]
fn v16_weights_70_30_0_split_connections_and_zero_gets_none() {
    for (kind, protocol, l) in [("TCPRoute", "TCP", "tcp"), ("UDPRoute", "UDP", "udp")] {
        let s = snapshot(&format!(
            "{}{}{}{}{}",
            backend("app", "v1", protocol, 3000, "10.6.0.1"),
            backend("app", "v2", protocol, 3000, "10.6.0.2"),
            backend("app", "v3", protocol, 3000, "10.6.0.3"),
            gateway(
                "gw",
                T0,
                &format!("  - {{name: {l}, port: 9300, protocol: {protocol}}}\n")
            ),
            v1_route(
                kind,
                "w",
                T0,
                &format!("[{{name: gw, sectionName: {l}}}]"),
                "[{name: v1, port: 3000, weight: 70}, {name: v2, port: 3000, weight: 30}, {name: v3, port: 3000, weight: 0}]"
            ),
        ));
        let svc = l4(&s, &format!("gateway/app/gw:{l}")).unwrap();
        let names: Vec<String> = svc.endpoints.iter().map(|e| e.addr.to_string()).collect();
        assert_eq!(names, ["10.6.0.1:3000", "10.6.0.2:3000"], "{kind}");
        let backends: Vec<MaglevBackend<'_>> = names
            .iter()
            .zip(&svc.endpoints)
            .map(|(n, e)| MaglevBackend {
                name: n,
                weight: e.weight,
            })
            .collect();
        let size = 65537;
        let table = maglev::build(&backends, size).unwrap();
        let share = |i: u32| table.iter().filter(|&&x| x == i).count() as f64 / f64::from(size);
        for (i, want) in [(0, 0.7), (1, 0.3)] {
            assert!((share(i) - want).abs() < 0.01, "{kind} {i}: {}", share(i));
        }
    }
}

/// Spec (TCPRoute/UDPRoute backendRefs): "if an invalid backend is requested to have 80% of
/// connections, then 80% of connections must be rejected". A backendRef to a missing Service
/// and one to a Service without endpoints keep their share as the refused weight; the valid
/// one keeps its own; the Maglev table built as the planner builds it refuses that share.
#[test]
fn invalid_backend_refs_keep_their_share_refused() {
    for (kind, protocol, l) in [("TCPRoute", "TCP", "tcp"), ("UDPRoute", "UDP", "udp")] {
        let empty = backend("app", "idle", protocol, 3000, "10.6.0.9").replace(
            "endpoints: [{addresses: [\"10.6.0.9\"], conditions: {ready: true}}]",
            "endpoints: []",
        );
        let s = snapshot(&format!(
            "{}{}{}{}",
            backend("app", "v1", protocol, 3000, "10.6.0.1"),
            empty,
            gateway(
                "gw",
                T0,
                &format!("  - {{name: {l}, port: 9300, protocol: {protocol}}}\n")
            ),
            v1_route(
                kind,
                "w",
                T0,
                &format!("[{{name: gw, sectionName: {l}}}]"),
                "[{name: v1, port: 3000, weight: 20}, {name: missing, port: 3000, weight: 50}, {name: idle, port: 3000, weight: 30}]"
            ),
        ));
        let svc = l4(&s, &format!("gateway/app/gw:{l}")).unwrap();
        assert_eq!(svc.endpoints.len(), 1, "{kind}");
        let total = f64::from(svc.endpoints[0].weight) + f64::from(svc.reject_weight);
        assert!(
            (f64::from(svc.reject_weight) / total - 0.8).abs() < 0.001,
            "{kind}: {svc:?}"
        );
        let p = parent(
            &s,
            if kind == "TCPRoute" {
                ObjectKind::TCPRoute
            } else {
                ObjectKind::UDPRoute
            },
            "w",
        );
        assert_eq!(
            cond(p, "ResolvedRefs"),
            (false, "BackendNotFound"),
            "{kind}"
        );
        let names = ["10.6.0.1:3000", "refused"];
        let backends = [
            MaglevBackend {
                name: names[0],
                weight: svc.endpoints[0].weight,
            },
            MaglevBackend {
                name: names[1],
                weight: svc.reject_weight,
            },
        ];
        let size = 65537;
        let table = maglev::build(&backends, size).unwrap();
        let refused = table.iter().filter(|&&x| x == 1).count() as f64 / f64::from(size);
        assert!((refused - 0.8).abs() < 0.01, "{kind}: {refused}");
    }
}

/// Conformance TLSRouteMixedTerminationSameNamespace and TLSRouteListenerTerminateSupportedKinds
/// (v1.6, features TLSRouteModeMixed and TLSRouteModeTerminate): a Terminate and a
/// Passthrough listener share a port, told apart by hostname: both accepted, not
/// conflicted, each with its route; the Terminate one needs its certificate to be served.
#[test]
fn tls_terminate_listeners_and_mixed_termination() {
    use crate::model::SniAction;
    let s = snapshot(&format!(
        "{}{}{}{}",
        gateway(
            "lone",
            T0,
            "  - {name: tls-terminate, port: 8443, protocol: TLS, hostname: terminate.example, tls: {mode: Terminate, certificateRefs: [{name: missing}]}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}\n",
        ),
        gateway(
            "mixed",
            T0,
            "  - {name: tls-terminate, port: 443, protocol: TLS, hostname: terminate.example, tls: {mode: Terminate, certificateRefs: [{name: missing}]}}\n  - {name: tls-passthrough, port: 443, protocol: TLS, hostname: passthrough.example, tls: {mode: Passthrough}}\n",
        ),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: pass, namespace: app}\nspec:\n  parentRefs: [{name: mixed, sectionName: tls-passthrough}]\n  hostnames: [passthrough.example]\n  rules: [{backendRefs: [{name: db, port: 5432}]}]\n",
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: term, namespace: app}\nspec:\n  parentRefs: [{name: mixed, sectionName: tls-terminate}]\n  hostnames: [terminate.example]\n  rules: [{backendRefs: [{name: db, port: 5432}]}]\n",
    ));
    let l = listener(&s, "lone", "tls-terminate");
    assert_eq!(cond(&l.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "InvalidCertificateRef")
    );
    assert!(!cond(&l.conditions, "Programmed").0);
    assert_eq!(l.attached_routes, 0);
    for name in ["tls-terminate", "tls-passthrough"] {
        let l = listener(&s, "mixed", name);
        assert_eq!(
            cond(&l.conditions, "Accepted"),
            (true, "Accepted"),
            "{name}"
        );
        assert_eq!(
            cond(&l.conditions, "Conflicted"),
            (false, "NoConflicts"),
            "{name}"
        );
        assert_eq!(l.attached_routes, 1, "{name}");
    }
    assert!(matches!(
        s.l7.gateway_sni.get("passthrough.example"),
        Some(SniAction::Pass {
            terminate: false,
            ..
        })
    ));
    assert!(cond(parent(&s, ObjectKind::TLSRoute, "pass"), "Accepted").0);
}

/// Conformance TLSRouteListenerPassthroughSupportedKinds (v1.6): a Passthrough listener whose
/// `allowedRoutes.kinds` names TCPRoute and TLSRoute supports TLSRoute only, says
/// `ResolvedRefs: False, InvalidRouteKinds`, and has no route attached.
#[test]
fn a_passthrough_listener_supports_tlsroute_only() {
    let s = snapshot(&gateway(
        "gw",
        T0,
        "  - {name: tls-passthrough, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TCPRoute}, {kind: TLSRoute}]}}\n",
    ));
    let l = listener(&s, "gw", "tls-passthrough");
    assert_eq!(
        l.supported_kinds,
        [("gateway.networking.k8s.io".into(), "TLSRoute".into())]
    );
    assert_eq!(
        cond(&l.conditions, "ResolvedRefs"),
        (false, "InvalidRouteKinds")
    );
    assert_eq!(l.attached_routes, 0);
}

/// A TLSRoute in `app` as YAML: `parents` and `backends` as flow sequences.
fn tls_route(name: &str, parents: &str, hostnames: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{T0}\"}}\nspec:\n  parentRefs: {parents}\n  hostnames: {hostnames}\n  rules: [{{backendRefs: {backends}}}]\n"
    )
}

/// A passthrough listener `name` on 443 (hostname `host`, none when empty), TLSRoutes only.
fn passthrough_listener(name: &str, host: &str) -> String {
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("hostname: \"{host}\", ")
    };
    format!(
        "  - {{name: {name}, port: 443, protocol: TLS, {host}allowedRoutes: {{namespaces: {{from: Same}}, kinds: [{{kind: TLSRoute}}]}}, tls: {{mode: Passthrough}}}}\n"
    )
}

/// Where a TLS connection naming `sni` goes, as the proxy looks it up (exact, then the most
/// specific `*.` wildcard): the backend Services, empty when it is refused or not passed.
fn passed_to(s: &Snapshot, sni: &str) -> Vec<String> {
    use crate::model::SniAction;
    let table = &s.l7.gateway_sni;
    let entry = table.get(sni).or_else(|| {
        (sni.match_indices('.')).find_map(|(i, _)| table.get(&format!("*.{}", &sni[i + 1..])))
    });
    match entry {
        Some(SniAction::Pass { backends, .. }) => (backends.iter())
            .map(|b| b.upstream.service.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Conformance TLSRouteHostnameIntersection: a TLSRoute is passed only the names its
/// hostnames share with its listener's (exact, more and less specific wildcards, no listener
/// hostname); the most specific route name wins; a name outside the intersection is refused.
/// Each case is one Gateway of its own (the suite's Gateways have addresses of their own).
#[test]
fn tlsroute_hostname_intersection() {
    let db = "[{name: db, port: 5432}]";
    let db2 = "[{name: db2, port: 5432}]";
    // (listener hostname, routes' (hostnames, backends), a name outside every intersection)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            "abc.example.com",
            vec![("[\"*.example.com\"]", db)],
            "non.matching.com",
        ),
        (
            "*.example.com",
            vec![("[abc.example.com]", db), ("[\"*.com\"]", db2)],
            "non.matching.com",
        ),
        (
            "*.com",
            vec![("[abc.example.com]", db), ("[\"*.example.com\"]", db2)],
            "non.matching.com",
        ),
        (
            "",
            vec![("[abc.example.com]", db), ("[\"*.com\"]", db2)],
            "non.matching.org",
        ),
    ];
    for (listener_host, routes, outside) in cases {
        let mut yaml = gateway("gw", T0, &passthrough_listener("tls", listener_host));
        for (i, (hosts, backends)) in routes.iter().enumerate() {
            yaml += &tls_route(&format!("r{i}"), "[{name: gw}]", hosts, backends);
        }
        let s = snapshot(&yaml);
        for i in 0..routes.len() {
            let p = parent(&s, ObjectKind::TLSRoute, &format!("r{i}"));
            assert_eq!(
                cond(p, "Accepted"),
                (true, "Accepted"),
                "{listener_host} r{i}"
            );
            assert_eq!(cond(p, "ResolvedRefs"), (true, "ResolvedRefs"));
        }
        assert_eq!(passed_to(&s, "abc.example.com"), ["db"], "{listener_host}");
        if routes.len() > 1 {
            assert_eq!(
                passed_to(&s, "other.example.com"),
                ["db2"],
                "{listener_host}"
            );
        }
        assert!(
            passed_to(&s, outside).is_empty(),
            "{listener_host}: {outside}"
        );
    }
}

/// An ExternalName Service in the route's namespace.
const EXT: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: app}\n\
                   spec: {type: ExternalName, externalName: db.example.com, ports: [{port: 443}]}\n---\n";

/// Conformance TLSRouteInvalidBackendRefNonexistent and TLSRouteInvalidBackendRefUnknownKind:
/// the route is accepted with `ResolvedRefs: False` (`BackendNotFound`, `InvalidKind`) and a
/// connection naming its hostname reaches no backend.
#[test]
fn tlsroute_invalid_backend_ref_nonexistent_and_unknown_kind() {
    for (backend, reason) in [
        (
            "[{name: nonexistent, namespace: app, port: 443}]",
            "BackendNotFound",
        ),
        (
            "[{group: unknownkind.example.com, kind: NonExistent, name: db, port: 443}]",
            "InvalidKind",
        ),
        // An ExternalName Service: not supported by Gateway routes here (the spec's SHOULD
        // NOT), refused as an unsupported kind rather than passed to no endpoint.
        ("[{name: ext, port: 443}]", "InvalidKind"),
    ] {
        let s = snapshot(&format!(
            "{EXT}{}{}",
            gateway(
                "gw",
                T0,
                "  - {name: tls, port: 443, protocol: TLS, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}\n"
            ),
            tls_route("r", "[{name: gw}]", "[example.com]", backend)
        ));
        let p = parent(&s, ObjectKind::TLSRoute, "r");
        assert_eq!(cond(p, "Accepted"), (true, "Accepted"), "{reason}");
        assert_eq!(cond(p, "ResolvedRefs"), (false, reason));
        assert!(passed_to(&s, "example.com").is_empty(), "{reason}");
    }
}

/// A TLSRoute backendRef that does not resolve keeps its weight beside valid ones: that share
/// of connections is closed (Gateway API `TLSRouteRule.backendRefs`: "if an invalid backend is
/// requested to have 80% of requests, then 80% of requests must be rejected instead"); found
/// by a conformance walk (the share went to the other backendRefs).
#[test]
fn a_tlsroute_backend_ref_that_does_not_resolve_keeps_its_share_closed() {
    use crate::model::SniAction;
    let s = snapshot(&format!(
        "{}{}",
        gateway(
            "gw",
            T0,
            "  - {name: tls, port: 443, protocol: TLS, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}\n"
        ),
        tls_route(
            "r",
            "[{name: gw}]",
            "[example.com]",
            "[{name: nonexistent, port: 443, weight: 4}, {name: db, port: 5432}]"
        )
    ));
    let p = parent(&s, ObjectKind::TLSRoute, "r");
    assert_eq!(cond(p, "ResolvedRefs"), (false, "BackendNotFound"));
    match &s.l7.gateway_sni["example.com"] {
        SniAction::Pass {
            backends,
            rejected_weight,
            ..
        } => {
            let w: Vec<_> = backends
                .iter()
                .map(|b| (b.upstream.service.name.as_str(), b.weight))
                .collect();
            assert_eq!(w, [("db", 1)]);
            assert_eq!(*rejected_weight, 4);
        }
        other => panic!("{other:?}"),
    }
}

/// Conformance TLSRouteInvalidNoMatchingListenerHostname: hostnames that none of an exact or
/// wildcard listener's names match: `NoMatchingListenerHostname`, no parent accepted, no
/// route attached.
#[test]
fn tlsroute_invalid_no_matching_listener_hostname() {
    for (listener_host, hosts) in [
        ("www.example.com", "[www.nomatch.com, \"*.nomatch.com\"]"),
        ("*.example.com", "[www.different.com, \"*.different.com\"]"),
    ] {
        let s = snapshot(&format!(
            "{}{}",
            gateway("gw", T0, &passthrough_listener("tls", listener_host)),
            tls_route("r", "[{name: gw}]", hosts, "[{name: db, port: 5432}]")
        ));
        let p = parent(&s, ObjectKind::TLSRoute, "r");
        assert_eq!(
            cond(p, "Accepted"),
            (false, "NoMatchingListenerHostname"),
            "{listener_host}"
        );
        assert_eq!(listener(&s, "gw", "tls").attached_routes, 0);
        assert!(
            s.l7.gateway_sni
                .values()
                .all(|a| !matches!(a, crate::model::SniAction::Pass { .. }))
        );
    }
}

/// Conformance TLSRouteInvalidNoMatchingListener: a TLSRoute on a Gateway with only an HTTP
/// or only an HTTPS (Terminate) listener is `NotAllowedByListeners`; one naming a sectionName
/// the Gateway does not have is `NoMatchingParent`; none attaches.
#[test]
fn tlsroute_invalid_no_matching_listener() {
    let (crt, key) = crate::model::translate::fixtures::mk_cert_pem(&["tls.example.com"]);
    let secret = crate::store::Object::Secret(std::sync::Arc::new(
        crate::model::translate::fixtures::mk_tls_secret("app", "cert", &crt, &key),
    ));
    for (listeners, parents, reason) in [
        (
            "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}\n",
            "[{name: gw}]",
            "NotAllowedByListeners",
        ),
        (
            "  - {name: https, port: 443, protocol: HTTPS, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Terminate, certificateRefs: [{name: cert}]}}\n",
            "[{name: gw}]",
            "NotAllowedByListeners",
        ),
        (
            "  - {name: tls-passthrough, port: 443, protocol: TLS, allowedRoutes: {namespaces: {from: Same}}, tls: {mode: Passthrough}}\n",
            "[{name: gw, sectionName: nonexistent-listener}]",
            "NoMatchingParent",
        ),
    ] {
        let yaml = format!(
            "{}{}",
            gateway("gw", T0, listeners),
            tls_route(
                "r",
                parents,
                "[tls.example.com]",
                "[{name: db, port: 5432}]"
            )
        );
        let s = super::test_support::snapshot_with(&yaml, vec![secret.clone()]);
        let p = parent(&s, ObjectKind::TLSRoute, "r");
        assert_eq!(cond(p, "Accepted"), (false, reason), "{listeners}");
        let gw = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", "gw")];
        assert!(gw.listeners.iter().all(|l| l.attached_routes == 0));
        assert!(passed_to(&s, "tls.example.com").is_empty());
    }
}

/// Conformance TLSRouteInvalidReferenceGrant: a backendRef to a Service in another namespace
/// whose ReferenceGrants each get one field wrong is `RefNotPermitted`; the route itself is
/// accepted.
#[test]
fn tlsroute_invalid_reference_grant() {
    let grant = |name: &str, ns: &str, from: &str, to: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  from: [{from}]\n  to: [{to}]\n"
        )
    };
    let from = "{group: gateway.networking.k8s.io, kind: TLSRoute, namespace: app}";
    let to = r#"{group: "", kind: Service, name: web}"#;
    let grants = [
        grant("wrong-namespace", "app", from, to),
        grant(
            "wrong-from-group",
            "infra",
            "{group: not-the-group, kind: TLSRoute, namespace: app}",
            to,
        ),
        grant(
            "wrong-from-kind",
            "infra",
            "{group: gateway.networking.k8s.io, kind: Gateway, namespace: app}",
            to,
        ),
        grant(
            "wrong-from-namespace",
            "infra",
            "{group: gateway.networking.k8s.io, kind: TLSRoute, namespace: elsewhere}",
            to,
        ),
        grant(
            "wrong-to-group",
            "infra",
            from,
            "{group: not-the-group, kind: Service, name: web}",
        ),
        grant(
            "wrong-to-kind",
            "infra",
            from,
            r#"{group: "", kind: Secret, name: web}"#,
        ),
        grant(
            "wrong-to-name",
            "infra",
            from,
            r#"{group: "", kind: Service, name: not-web}"#,
        ),
    ]
    .concat();
    let s = snapshot(&format!(
        "{}{}{grants}",
        gateway("gw", T0, &passthrough_listener("https", "*.example.com")),
        tls_route(
            "r",
            "[{name: gw}]",
            "[abc.example.com]",
            "[{name: web, namespace: infra, port: 8080}]"
        )
    ));
    let p = parent(&s, ObjectKind::TLSRoute, "r");
    assert_eq!(cond(p, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(p, "ResolvedRefs"), (false, "RefNotPermitted"));
    assert!(passed_to(&s, "abc.example.com").is_empty());
}

/// Conformance TLSRouteSimpleSameNamespace: a TLSRoute for `abc.example.com` under a
/// `*.example.com` passthrough listener is accepted, resolves, and the name is passed to its
/// backend (the connection itself: tests/l7_gateway.rs).
#[test]
fn tlsroute_simple_same_namespace() {
    let s = snapshot(&format!(
        "{}{}",
        gateway("gw", T0, &passthrough_listener("https", "*.example.com")),
        tls_route(
            "r",
            "[{name: gw, namespace: app}]",
            "[abc.example.com]",
            "[{name: db, port: 5432}]"
        )
    ));
    let p = parent(&s, ObjectKind::TLSRoute, "r");
    assert_eq!(cond(p, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(p, "ResolvedRefs"), (true, "ResolvedRefs"));
    assert_eq!(listener(&s, "gw", "https").attached_routes, 1);
    assert_eq!(passed_to(&s, "abc.example.com"), ["db"]);
    assert!(passed_to(&s, "other.example.com").is_empty());
}

/// Conformance UDPRouteInvalidCrossNamespaceBackendRef and UDPRouteReferenceGrant: a
/// UDPRoute (on a listener that allows UDPRoutes only, routes of its own namespace) whose
/// backend is a Service in another namespace is accepted; without a ReferenceGrant it is
/// `ResolvedRefs: False, RefNotPermitted` and forwards nowhere, with one it resolves and
/// datagrams reach that Service, and once the grant is deleted it is `RefNotPermitted` again.
#[test]
fn udproute_invalid_cross_namespace_backend_ref_and_reference_grant() {
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\n\
                 metadata: {name: udp-reference-grant, namespace: backends}\nspec:\n  \
                 from: [{group: gateway.networking.k8s.io, kind: UDPRoute, namespace: app}]\n  \
                 to: [{group: \"\", kind: Service, name: udp-echo}]\n";
    let objects = format!(
        "{}{}{}",
        backend("backends", "udp-echo", "UDP", 8080, "10.9.1.1"),
        gateway(
            "gw",
            T0,
            "  - {name: udp, port: 5300, protocol: UDP, allowedRoutes: {kinds: [{kind: UDPRoute}]}}\n"
        ),
        v1_route(
            "UDPRoute",
            "u",
            T0,
            "[{name: gw, sectionName: udp}]",
            "[{name: udp-echo, namespace: backends, port: 8080}]"
        ),
    );
    let id = "gateway/app/gw:udp";
    for (grants, resolved) in [
        ("", (false, "RefNotPermitted")),
        (grant, (true, "ResolvedRefs")),
        ("", (false, "RefNotPermitted")),
    ] {
        let s = snapshot(&format!("{objects}{grants}"));
        let p = parent(&s, ObjectKind::UDPRoute, "u");
        assert_eq!(cond(p, "Accepted"), (true, "Accepted"));
        assert_eq!(cond(p, "ResolvedRefs"), resolved);
        assert_eq!(listener(&s, "gw", "udp").attached_routes, 1);
        let want: &[&str] = if resolved.0 { &["10.9.1.1:8080"] } else { &[] };
        assert_eq!(addrs(&s, id), want);
    }
}

/// A `TLS` passthrough listener on a port of the Gateway range opens that port (as HTTP and
/// HTTPS listeners do) with an SNI table of its own: its TLSRoutes' names are passed there and
/// not on the HTTPS port, and a name outside the table is closed (no HTTPS listener shares
/// the port: Gateway API, a connection no TLSRoute matches is rejected), so the hosts the
/// proxy terminates elsewhere get no `Terminate` entry there. An HTTPS listener beside TLS
/// listeners on one port (told apart by hostname, as on 443) keeps the port terminating. A
/// port another Gateway's HTTP listener holds is `PortUnavailable` (one family per port);
/// within one Gateway, Terminate beside Passthrough on one port share it (TLSRouteModeMixed),
/// each name closed until a TLSRoute takes it.
#[test]
fn tls_passthrough_listeners_open_their_own_ports() {
    use crate::model::{ListenerProtocol, SniAction};
    let gw = gateway(
        "gw",
        T1,
        "  - {name: pass, port: 8443, protocol: TLS, hostname: \"*.pass.example\", tls: {mode: Passthrough}}\n  - {name: mixed-tls, port: 9443, protocol: TLS, hostname: db.mixed.example, tls: {mode: Passthrough}}\n  - {name: mixed-https, port: 9443, protocol: HTTPS, hostname: www.mixed.example, tls: {certificateRefs: [{name: cert}]}}\n  - {name: taken, port: 7000, protocol: TLS, hostname: t.example, tls: {mode: Passthrough}}\n  - {name: c-pass, port: 6443, protocol: TLS, hostname: a.example, tls: {mode: Passthrough}}\n  - {name: c-term, port: 6443, protocol: TLS, hostname: b.example, tls: {mode: Terminate, certificateRefs: [{name: cert}]}}\n",
    );
    let yaml = [
        gateway(
            "older",
            T0,
            "  - {name: web, port: 7000, protocol: HTTP, hostname: www.pass.example}\n",
        ),
        gw.clone(),
        tls_route("a", "[{name: gw, sectionName: pass}]", "[a.pass.example]", "[{name: db, port: 5432}]"),
        tls_route("b", "[{name: gw, sectionName: pass}]", "[b.pass.example]", "[{name: db2, port: 5432}]"),
        tls_route("m", "[{name: gw, sectionName: mixed-tls}]", "[db.mixed.example]", "[{name: db, port: 5432}]"),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: app}\nspec:\n  parentRefs: [{name: older}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]\n".to_string(),
    ]
    .concat();
    let (crt, key) = super::super::fixtures::mk_cert_pem(&["www.mixed.example", "b.example"]);
    let cert = crate::store::Object::Secret(std::sync::Arc::new(
        super::super::fixtures::mk_tls_secret("app", "cert", &crt, &key),
    ));
    let snapshot = |yaml: &str| super::test_support::snapshot_with(yaml, vec![cert.clone()]);
    let s = snapshot(&yaml);
    let l = |name: &str| listener(&s, "gw", name).conditions.clone();
    for name in ["pass", "mixed-tls", "mixed-https"] {
        assert_eq!(cond(&l(name), "Programmed"), (true, "Programmed"), "{name}");
    }
    assert_eq!(listener(&s, "gw", "pass").port, Some(8443));
    assert_eq!(listener(&s, "gw", "pass").attached_routes, 2);
    assert_eq!(cond(&l("taken"), "Accepted"), (false, "PortUnavailable"));
    for name in ["c-pass", "c-term"] {
        assert_eq!(
            cond(&l(name), "Conflicted"),
            (false, "NoConflicts"),
            "{name}"
        );
        assert_eq!(cond(&l(name), "Programmed"), (true, "Programmed"), "{name}");
    }
    for r in ["a", "b", "m"] {
        let p = parent(&s, ObjectKind::TLSRoute, r);
        assert_eq!(cond(p, "Accepted"), (true, "Accepted"), "{r}");
    }
    let ports: Vec<(u16, ListenerProtocol)> = (s.l7.gateway_listeners.iter())
        .map(|(p, x)| (*p, *x))
        .collect();
    assert_eq!(
        ports,
        [
            (6443, ListenerProtocol::TlsPassthrough),
            (7000, ListenerProtocol::Http),
            (8443, ListenerProtocol::TlsPassthrough),
            (9443, ListenerProtocol::Https)
        ]
    );
    let t = &s.l7.gateway_sni_ports[&8443];
    assert!(!t.terminates);
    let to = |t: &crate::model::SniPort, name: &str| match t.sni.get(name) {
        Some(SniAction::Pass { backends, .. }) => (backends.iter())
            .map(|b| b.upstream.service.name.clone())
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => format!("{other:?}"),
        None => "none".into(),
    };
    assert_eq!(to(t, "a.pass.example"), "db");
    assert_eq!(to(t, "b.pass.example"), "db2");
    assert!(matches!(t.sni["*.pass.example"], SniAction::Close));
    assert!(
        !t.sni.contains_key("www.pass.example"),
        "a host served elsewhere is not terminated on a passthrough-only port"
    );
    assert!(
        s.l7.gateway_sni.is_empty(),
        "nothing passed on the HTTPS port"
    );
    let mixed = &s.l7.gateway_sni_ports[&9443];
    assert!(mixed.terminates);
    assert_eq!(to(mixed, "db.mixed.example"), "db");
    assert!(matches!(
        mixed.sni["www.mixed.example"],
        SniAction::Terminate
    ));
    let c = &s.l7.gateway_sni_ports[&6443];
    assert!(!c.terminates);
    assert!(matches!(c.sni["a.example"], SniAction::Close));
    assert!(matches!(c.sni["b.example"], SniAction::Close));
    // The port closes with its Gateway.
    let without = snapshot(&yaml.replace(&gw, ""));
    assert!(without.l7.gateway_sni_ports.is_empty());
    assert!(!without.l7.gateway_listeners.contains_key(&8443));
}
