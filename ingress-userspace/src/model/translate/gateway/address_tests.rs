//! Gateway addresses through translation: the conditions of Gateway API v1.6's
//! `GatewayStaticAddresses` and the routing of `HTTPRouteMultipleGateways` (two Gateways on
//! port 80, told apart only by the address a request is sent to). Assignment rules alone are
//! in `addresses/tests.rs`; requests through the proxy in tests/l7_gateway.rs.

use std::{net::IpAddr, sync::Arc};

use super::{
    addresses::AddressPool,
    test_support::{BASE, cond},
};
use crate::{
    model::{
        ObjectKind, ObjectRef, Snapshot,
        translate::{TranslateConfig, translate},
    },
    proxy::router::{CompiledAction, Lookup, RequestView, RouteTable},
    source::files::parse_manifests,
    store::Objects,
};

fn with_pool(yaml: &str, pool: &str) -> Snapshot {
    let objects = parse_manifests(&format!("{BASE}---\n{yaml}")).expect("manifests parse");
    let cfg = TranslateConfig {
        gateway_address_pool: AddressPool {
            ranges: (pool.split(',').filter(|p| !p.is_empty()))
                .map(|r| r.parse().expect("pool"))
                .collect(),
        },
        publish_addresses: vec!["192.0.2.100".into()],
        ..TranslateConfig::default()
    };
    translate(&Objects::from_objects(objects), &cfg)
}

fn gateway<'a>(s: &'a Snapshot, name: &str) -> &'a crate::model::GatewayStatusOut {
    &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", name)]
}

fn static_gateway(addresses: &[&str]) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("  - {a}\n")).collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: app, generation: 2}}\nspec:\n  gatewayClassName: xdp\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n  addresses:\n{}",
        list.concat()
    )
}

/// `GatewayStaticAddresses`: an unsupported type, then an unusable address, then a usable
/// one, with the conditions and `status.addresses` the conformance test reads.
#[test]
fn static_addresses_conditions_and_status() {
    let invalid = "{type: Hostname, value: gw.example.com}";
    let unusable = "{type: IPAddress, value: 192.0.2.1}";
    let usable = "{type: IPAddress, value: 10.0.0.7}";
    let pool = "10.0.0.0/24";

    let s = with_pool(&static_gateway(&[invalid, unusable, usable]), pool);
    let gw = gateway(&s, "gw");
    assert_eq!(
        cond(&gw.conditions, "Accepted"),
        (false, "UnsupportedAddress")
    );
    assert!(!cond(&gw.conditions, "Programmed").0);
    assert!(gw.addresses.is_empty(), "{:?}", gw.addresses);

    let s = with_pool(&static_gateway(&[unusable, usable]), pool);
    let gw = gateway(&s, "gw");
    assert_eq!(cond(&gw.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(
        cond(&gw.conditions, "Programmed"),
        (false, "AddressNotUsable")
    );
    assert!(gw.addresses.is_empty(), "{:?}", gw.addresses);
    assert!(s.l7.gateway_addresses.is_empty());

    let s = with_pool(&static_gateway(&[usable]), pool);
    let gw = gateway(&s, "gw");
    assert_eq!(cond(&gw.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&gw.conditions, "Programmed"), (true, "Programmed"));
    assert_eq!(gw.conditions[1].observed_generation, 2);
    assert_eq!(gw.addresses, ["10.0.0.7"]);
    let l = &gw.listeners[0];
    assert_eq!(cond(&l.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&l.conditions, "ResolvedRefs"), (true, "ResolvedRefs"));
    // Written as the conformance test compares it: one address, of the type it was given.
    let json = crate::status::gateway_status::gateway_json(gw, "2024-01-01T00:00:00Z");
    assert_eq!(
        json["addresses"],
        serde_json::json!([{"type": "IPAddress", "value": "10.0.0.7"}])
    );
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    assert_eq!(
        s.l7.gateway_addresses[&ip]
            .ports
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [80]
    );
}

#[test]
fn without_a_pool_gateways_keep_the_node_addresses() {
    let gw = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: app}\nspec:\n  gatewayClassName: xdp\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    let s = with_pool(gw, "");
    assert_eq!(gateway(&s, "gw").addresses, ["192.0.2.100"]);
    assert!(s.l7.gateway_addresses.is_empty());
}

#[test]
fn an_exhausted_pool_leaves_the_youngest_gateway_unprogrammed() {
    let gw = |name: &str, created: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}\nspec:\n  gatewayClassName: xdp\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n"
        )
    };
    let yaml = gw("b", "2024-01-02T00:00:00Z") + &gw("a", "2024-01-03T00:00:00Z");
    let s = with_pool(&yaml, "10.0.0.1");
    assert_eq!(gateway(&s, "b").addresses, ["10.0.0.1"]);
    let a = gateway(&s, "a");
    assert_eq!(cond(&a.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(
        cond(&a.conditions, "Programmed"),
        (false, "AddressNotAssigned")
    );
    assert!(a.addresses.is_empty());
}

const MULTIPLE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: one, namespace: app, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: two, namespace: app, creationTimestamp: "2024-01-02T00:00:00Z"}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shared, namespace: app}
spec:
  parentRefs: [{name: one}, {name: two}]
  rules: [{matches: [{path: {type: PathPrefix, value: /shared}}], backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route-one, namespace: app}
spec:
  parentRefs: [{name: one}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route-two, namespace: app}
spec:
  parentRefs: [{name: two}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: app}
spec:
  ingressClassName: xdp-ingress
  rules:
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 8080}}}}
"#;

/// `HTTPRouteMultipleGateways`: each Gateway's address answers its own `/` and both answer
/// the shared route; the node's other addresses keep the Ingress and never see either.
#[test]
fn two_gateways_on_one_port_are_told_apart_by_address() {
    let s = with_pool(MULTIPLE, "10.0.0.1-10.0.0.2");
    assert_eq!(gateway(&s, "one").addresses, ["10.0.0.1"]);
    assert_eq!(gateway(&s, "two").addresses, ["10.0.0.2"]);
    let (table, errors) = RouteTable::build(&s.l7, Arc::clone);
    assert!(errors.is_empty(), "{errors:?}");
    let headers = http::HeaderMap::new();
    let who = |local: &str, path: &str| -> String {
        let view = RequestView {
            host: "anything.example",
            path,
            query: None,
            method: "GET",
            headers: &headers,
            tls: false,
            listener_port: Some(80),
            gateway_listener: false,
            local_addr: Some(local.parse().unwrap()),
        };
        match table.lookup(&view) {
            Lookup::Route { route, .. } => match &route.action {
                CompiledAction::Forward(_) => route.origin().object.name.clone(),
                _ => "respond".into(),
            },
            Lookup::Default { .. } => "default".into(),
            Lookup::NotFound { host, .. } => {
                format!("404 gateway={}", table.gateway_miss(host, &view))
            }
        }
    };
    assert_eq!(who("10.0.0.1", "/"), "route-one");
    assert_eq!(who("10.0.0.2", "/"), "route-two");
    assert_eq!(who("10.0.0.1", "/shared/x"), "shared");
    assert_eq!(who("10.0.0.2", "/shared"), "shared");
    // A dual-stack socket's IPv4-mapped local address is the same address.
    assert_eq!(who("::ffff:10.0.0.2", "/"), "route-two");
    // Elsewhere on the node: the Ingress, never a Gateway's route.
    assert_eq!(who("127.0.0.1", "/"), "site");
    assert_eq!(who("127.0.0.1", "/shared"), "site");
}

/// TCPRoute on a Gateway with an address: the XDP path takes the listener's port on that
/// address only (an address frontend, looked up before node ports), and `explain --port
/// --address` finds it there.
#[test]
fn a_tcp_listener_of_a_gateway_with_an_address_is_served_on_it_only() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: pg, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
"#;
    let s = with_pool(yaml, "10.0.0.9");
    let svc = (s.l4.iter())
        .find(|l| l.service.kind == ObjectKind::TCPRoute)
        .expect("the TCPRoute's L4 service");
    assert_eq!(
        svc.frontends,
        [crate::model::Frontend::Address(
            "10.0.0.9:5432".parse().unwrap()
        )]
    );
    let tcp = crate::model::L4Protocol::Tcp;
    let at = |a: Option<&str>| {
        crate::cli::explain::explain_l4(&s, tcp, a.map(|a| a.parse().unwrap()), 5432).outcome
    };
    use crate::cli::explain::Outcome;
    assert_eq!(at(Some("10.0.0.9")), Outcome::L4Service);
    assert_eq!(at(None), Outcome::L4Service);
    assert_eq!(at(Some("192.0.2.1")), Outcome::NotFound);
}

/// TLS passthrough on a Gateway with an address: its SNI table is that address's alone (the
/// node's table stays empty), and the address is bound on the proxy's HTTPS port.
#[test]
fn a_passthrough_gateway_with_an_address_has_its_own_sni_table() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: xdp
  listeners: [{name: pass, port: 443, protocol: TLS, hostname: "*.pass.example", tls: {mode: Passthrough}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: db, namespace: app}
spec:
  parentRefs: [{name: gw}]
  hostnames: [db.pass.example]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
"#;
    let s = with_pool(yaml, "10.0.0.5");
    assert!(s.l7.gateway_sni.is_empty(), "{:?}", s.l7.gateway_sni.keys());
    let ip: IpAddr = "10.0.0.5".parse().unwrap();
    let own = &s.l7.gateway_addresses[&ip];
    assert!(matches!(
        own.sni.get("db.pass.example"),
        Some(crate::model::SniAction::Pass { .. })
    ));
    assert!(matches!(
        own.sni.get("*.pass.example"),
        Some(crate::model::SniAction::Close)
    ));
    let https = crate::model::translate::TranslateConfig::default()
        .gateway_ports
        .https;
    assert_eq!(own.ports.keys().copied().collect::<Vec<_>>(), [https]);
}

/// Conformance GatewayOptionalAddressValue (extended `GatewayAddressEmpty`): an `IPAddress`
/// entry without a value is given one from the pool, and the Gateway is programmed on it.
#[test]
fn gateway_optional_address_value() {
    let gw = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: app}\nspec:\n  gatewayClassName: xdp\n  addresses: [{type: IPAddress}]\n  listeners: [{name: http, port: 8080, protocol: HTTP}]\n";
    let s = with_pool(gw, "10.0.0.0/30");
    let gw = gateway(&s, "gw");
    assert_eq!(cond(&gw.conditions, "Accepted"), (true, "Accepted"));
    assert_eq!(cond(&gw.conditions, "Programmed"), (true, "Programmed"));
    assert_eq!(gw.addresses.len(), 1, "{:?}", gw.addresses);
    let ip: IpAddr = gw.addresses[0].parse().expect("an IP address");
    assert!(s.l7.gateway_addresses.contains_key(&ip));
}

/// `TCP` listeners of Gateways with different addresses share a port: each takes it on its
/// own address (the XDP path's address frontends), so both are served. What takes the port
/// on every address still excludes them: an older HTTP listener (the proxy's socket is on
/// every address, whatever its Gateway's) keeps the port, and the younger addressed `TCP`
/// listener gets `PortUnavailable`.
#[test]
fn tcp_listeners_on_different_gateway_addresses_share_a_port() {
    let gw = |name: &str, created: &str, ip: &str, listener: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}\nspec:\n  gatewayClassName: xdp\n  addresses: [{{value: \"{ip}\"}}]\n  listeners: [{listener}]\n"
        )
    };
    let route = |name: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  parentRefs: [{{name: {name}}}]\n  rules: [{{backendRefs: [{{name: db, port: 5432}}]}}]\n"
        )
    };
    let pg = "{name: pg, port: 5432, protocol: TCP}";
    let yaml = [
        gw("one", "2024-01-01T00:00:00Z", "10.0.0.1", pg),
        gw("two", "2024-01-02T00:00:00Z", "10.0.0.2", pg),
        // The proxy's socket for 8080 is on every address: an older HTTP listener keeps it.
        gw(
            "web",
            "2024-01-01T00:00:00Z",
            "10.0.0.3",
            "{name: web, port: 8080, protocol: HTTP}",
        ),
        gw(
            "late",
            "2024-01-03T00:00:00Z",
            "10.0.0.4",
            "{name: pg, port: 8080, protocol: TCP}",
        ),
        route("one"),
        route("two"),
        route("late"),
    ]
    .concat();
    let s = with_pool(&yaml, "10.0.0.1-10.0.0.9");
    let listener = |gw_name: &str| gateway(&s, gw_name).listeners[0].conditions.clone();
    for name in ["one", "two"] {
        assert_eq!(
            cond(&listener(name), "Accepted"),
            (true, "Accepted"),
            "{name}"
        );
        assert_eq!(cond(&listener(name), "Programmed"), (true, "Programmed"));
    }
    assert_eq!(
        cond(&listener("late"), "Accepted"),
        (false, "PortUnavailable")
    );
    let mut frontends: Vec<String> = (s.l4.iter())
        .filter(|l| l.service.kind == ObjectKind::TCPRoute)
        .flat_map(|l| l.frontends.iter().map(|f| format!("{f:?}")))
        .collect();
    frontends.sort();
    assert_eq!(
        frontends,
        ["Address(10.0.0.1:5432)", "Address(10.0.0.2:5432)"]
    );
}
