//! Table-driven tests of the whole translation, from small fixtures.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::core::v1::{
        ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServiceStatus,
        SessionAffinityConfig,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{fixtures::*, *};
use crate::{
    model::{
        EndpointState, Frontend, HealthCheck, L4Protocol, PathMatch, RouteAction, Snapshot,
        VirtualHost,
    },
    store::{Object, Objects},
};

/// A ClusterIP Service `web` (port 80 "http" -> 8080) with two ready pods, and `api` likewise.
fn base() -> Objects {
    services_with_one_pod(&["web", "api"])
}

fn run(objects: &Objects) -> Snapshot {
    translate(objects, &mk_config())
}

/// `(path match, upstream id or "503")` of each route of a host, in order.
fn routes(vh: &VirtualHost) -> Vec<(PathMatch, String)> {
    vh.routes
        .iter()
        .map(|r| {
            let to = match &r.action {
                RouteAction::Forward(u) => u[0].upstream.id.clone(),
                RouteAction::Respond { status, .. } => status.to_string(),
                RouteAction::DefaultBackend => "root location".into(),
            };
            (r.matches.path.clone(), to)
        })
        .collect()
}

fn reasons(s: &Snapshot) -> Vec<(String, String)> {
    s.diagnostics
        .iter()
        .map(|d| (d.object.name.clone(), d.reason.clone()))
        .collect()
}

#[test]
fn routes_sorted_most_specific_first() {
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "a",
        1,
        vec![(
            "Foo.Example.com",
            vec![
                ("/", "Prefix", "web", "80"),
                ("/api/", "Prefix", "api", "http"),
                ("/api", "Exact", "api", "80"),
                ("/static", "ImplementationSpecific", "web", "80"),
                ("/apiv2", "Prefix", "api", "80"),
            ],
        )],
    )));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let vh = &s.l7.hosts["foo.example.com"];
    use PathMatch::*;
    assert_eq!(
        routes(vh),
        [
            (CharPrefix("/static".into()), "default/web:80".into()),
            (Prefix("/apiv2".into()), "default/api:80".into()),
            (Exact("/api".into()), "default/api:80".into()),
            (Prefix("/api".into()), "default/api:80".into()),
            (Prefix("/".into()), "default/web:80".into()),
        ]
    );
    let Forward(u) = &vh.routes[0].action else {
        panic!()
    };
    assert_eq!(
        u[0].upstream.endpoints[0].addr.to_string(),
        "198.19.0.2:8080"
    );
    assert_eq!(s.owned_ingresses.len(), 1);
    use RouteAction::Forward;
}

/// Ingresses whose route policies are equal hold one policy (issue 13's memory target); one
/// whose annotations change it keeps its own.
#[test]
fn equal_route_policies_are_shared() {
    let mut o = base();
    for (name, host) in [("a", "a.example.com"), ("b", "b.example.com")] {
        let rule = vec![(host, vec![("/", "Prefix", "web", "80")])];
        o.upsert(ing(mk_ingress("default", name, 1, rule)));
    }
    let rule = vec![("c.example.com", vec![("/", "Prefix", "web", "80")])];
    let c = mk_ingress("default", "c", 1, rule);
    o.upsert(ing(with_annotation(
        c,
        "nginx.ingress.kubernetes.io/proxy-body-size",
        "1k",
    )));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let policy = |h: &str| Arc::clone(&s.l7.hosts[h].routes[0].policy);
    assert!(Arc::ptr_eq(
        &policy("a.example.com"),
        &policy("b.example.com")
    ));
    assert!(!Arc::ptr_eq(
        &policy("a.example.com"),
        &policy("c.example.com")
    ));
    assert_ne!(policy("a.example.com"), policy("c.example.com"));
}

#[test]
fn hosts_wildcards_and_any_host() {
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "a",
        1,
        vec![
            ("*.example.com", vec![("/", "Prefix", "web", "80")]),
            ("", vec![("/", "Prefix", "api", "80")]),
            ("bad_host!", vec![("/", "Prefix", "api", "80")]),
        ],
    )));
    let s = run(&o);
    assert!(s.l7.wildcard_hosts.contains_key("example.com"));
    assert_eq!(s.l7.any_host.as_ref().unwrap().routes.len(), 1);
    assert_eq!(reasons(&s), [("a".into(), "InvalidHost".into())]);
}

#[test]
fn conflicts_oldest_wins_then_name() {
    let rule = |svc: &'static str| vec![("foo.example.com", vec![("/x", "Prefix", svc, "80")])];
    struct Case {
        name: &'static str,
        ingresses: Vec<(&'static str, &'static str, i64, &'static str)>,
        winner: &'static str,
        loser: (&'static str, &'static str),
    }
    let cases = [
        Case {
            name: "older wins",
            ingresses: vec![("default", "b", 10, "web"), ("default", "a", 20, "api")],
            winner: "default/web:80",
            loser: ("a", "RouteConflict"),
        },
        Case {
            name: "same age: namespace/name",
            ingresses: vec![("ns2", "a", 5, "api"), ("default", "z", 5, "web")],
            winner: "default/web:80",
            loser: ("a", "RouteConflict"),
        },
    ];
    for c in cases {
        let mut o = base();
        for (ns, name, created, s) in &c.ingresses {
            if *ns != "default" {
                o.upsert(svc(mk_service(
                    ns,
                    s,
                    "ClusterIP",
                    vec![mk_port(Some("http"), 80, IntOrString::Int(8080))],
                )));
            }
            o.upsert(ing(mk_ingress(ns, name, *created, rule(s))));
        }
        let s = run(&o);
        let r = routes(&s.l7.hosts["foo.example.com"]);
        assert_eq!(r.len(), 1, "{}", c.name);
        assert_eq!(r[0].1, c.winner, "{}", c.name);
        assert_eq!(
            reasons(&s),
            [(c.loser.0.to_string(), c.loser.1.to_string())],
            "{}",
            c.name
        );
    }
}

#[test]
fn invalid_parts_affect_only_themselves() {
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "good",
        1,
        vec![("good.example.com", vec![("/", "Prefix", "web", "80")])],
    )));
    o.upsert(ing(mk_ingress(
        "default",
        "bad",
        2,
        vec![(
            "bad.example.com",
            vec![
                ("/ok", "Prefix", "web", "80"),
                ("/nosvc", "Prefix", "missing", "80"),
                ("/noport", "Prefix", "web", "9999"),
                ("/noname", "Prefix", "web", "grpc"),
                ("relative", "ImplementationSpecific", "web", "80"),
                ("/x", "Weird", "web", "80"),
                ("/re(", "ImplementationSpecific", "web", "80"),
            ],
        )],
    )));
    let s = run(&o);
    assert_eq!(routes(&s.l7.hosts["good.example.com"]).len(), 1);
    let bad = routes(&s.l7.hosts["bad.example.com"]);
    use PathMatch::*;
    assert_eq!(
        bad,
        [
            (Prefix("/noport".into()), "503".into()),
            (Prefix("/noname".into()), "503".into()),
            (Prefix("/nosvc".into()), "503".into()),
            (CharPrefix("/re(".into()), "default/web:80".into()),
            (Prefix("/ok".into()), "default/web:80".into()),
        ]
    );
    let mut r = reasons(&s);
    r.dedup();
    assert_eq!(
        r,
        [
            ("bad".to_string(), "InvalidPath".to_string()),
            ("bad".into(), "ServiceNotFound".into()),
            ("bad".into(), "ServicePortNotFound".into()),
        ]
    );
}

#[test]
fn regex_only_with_use_regex() {
    let mut o = base();
    let i = mk_ingress(
        "default",
        "re",
        1,
        vec![(
            "r.example.com",
            vec![
                ("/api/v[0-9]+", "ImplementationSpecific", "api", "80"),
                ("/bad(", "ImplementationSpecific", "api", "80"),
                ("/p", "Prefix", "web", "80"),
            ],
        )],
    );
    o.upsert(ing(with_annotation(
        i,
        "nginx.ingress.kubernetes.io/use-regex",
        "true",
    )));
    let s = run(&o);
    let r = routes(&s.l7.hosts["r.example.com"]);
    assert_eq!(r[0].0, PathMatch::Regex("/api/v[0-9]+".into()));
    // use-regex makes every path of the host a regex, Prefix ones too (ingress-nginx's
    // enforceRegexModifier; user-guide/ingress-path-matching.md).
    assert_eq!(r[1].0, PathMatch::Regex("/p".into()));
    assert_eq!(reasons(&s), [("re".into(), "InvalidPath".into())]);
}

#[test]
fn tls_certificates_and_broken_secrets() {
    let (crt, key) = mk_cert_pem(&["secure.example.com"]);
    let mut o = base();
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "good-tls", &crt, &key,
    ))));
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default",
        "broken-tls",
        "nope",
        &key,
    ))));
    let rule = |h: &'static str| vec![(h, vec![("/", "Prefix", "web", "80")])];
    o.upsert(ing(with_tls(
        mk_ingress("default", "s", 1, rule("secure.example.com")),
        &["secure.example.com"],
        "good-tls",
    )));
    o.upsert(ing(with_tls(
        mk_ingress("default", "b", 2, rule("broken.example.com")),
        &["broken.example.com"],
        "broken-tls",
    )));
    o.upsert(ing(with_tls(
        mk_ingress("default", "m", 3, rule("missing.example.com")),
        &["missing.example.com"],
        "nope",
    )));
    o.upsert(ing(mk_ingress(
        "default",
        "plain",
        4,
        rule("plain.example.com"),
    )));
    let s = run(&o);
    assert_eq!(
        s.l7.certificates.keys().collect::<Vec<_>>(),
        ["secure.example.com"]
    );
    assert_eq!(
        &*s.l7.certificates["secure.example.com"].key_pem,
        key.as_bytes()
    );
    for h in [
        "secure.example.com",
        "broken.example.com",
        "missing.example.com",
    ] {
        let vh = &s.l7.hosts[h];
        assert!(vh.tls, "{h} redirects to https");
        assert_eq!(routes(vh).len(), 1, "{h} still served");
    }
    assert!(!s.l7.hosts["plain.example.com"].tls);
    assert_eq!(
        reasons(&s),
        [
            ("b".into(), "InvalidTlsSecret".into()),
            ("m".into(), "TlsSecretNotFound".into())
        ]
    );
}

#[test]
fn default_backends() {
    let mut o = base();
    let mut global = mk_ingress("default", "fallback", 1, vec![]);
    global.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("api", "80")));
    o.upsert(ing(global));
    let mut second = mk_ingress("default", "fallback2", 2, vec![]);
    second.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("web", "80")));
    o.upsert(ing(second));
    let mut per = mk_ingress(
        "default",
        "per",
        3,
        vec![("a.example.com", vec![("/x", "Exact", "web", "80")])],
    );
    per.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("api", "80")));
    o.upsert(ing(per));
    let s = run(&o);
    // The oldest catch-all Ingress is the default server's root location (its last route),
    // not the controller's default backend (`--default-backend-service` only).
    assert!(s.l7.default_backend.is_none());
    use PathMatch::*;
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(Prefix("/".into()), "default/api:80".into())]
    );
    assert_eq!(
        routes(&s.l7.hosts["a.example.com"]),
        [
            (Exact("/x".into()), "default/web:80".into()),
            (Prefix("/".into()), "default/api:80".into()),
        ]
    );
    assert_eq!(
        reasons(&s),
        [("fallback2".into(), "DefaultBackendConflict".into())]
    );
}

/// `--disable-catch-all` (ingress-nginx e2e settings/disable_catch_all.go): an Ingress with
/// `spec.defaultBackend` is not served, with or without rules, with an Error; an Ingress
/// with rules only is; updating an Ingress to catch-all takes its routes away.
#[test]
fn disable_catch_all_ignores_ingresses_with_a_default_backend() {
    let config = TranslateConfig {
        disable_catch_all: true,
        ..mk_config()
    };
    let mut o = base();
    let mut bare = mk_ingress("default", "bare", 1, vec![]);
    bare.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("api", "80")));
    o.upsert(ing(bare));
    let mut with_rules = mk_ingress(
        "default",
        "with-rules",
        2,
        vec![("a.example.com", vec![("/", "Prefix", "web", "80")])],
    );
    with_rules.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("api", "80")));
    o.upsert(ing(with_rules));
    let plain = mk_ingress(
        "default",
        "plain",
        3,
        vec![("b.example.com", vec![("/", "Prefix", "web", "80")])],
    );
    o.upsert(ing(plain.clone()));
    let s = translate(&o, &config);
    assert!(s.l7.default_backend.is_none());
    assert!(
        !s.l7.hosts.contains_key("a.example.com"),
        "its rules neither"
    );
    assert!(s.l7.hosts.contains_key("b.example.com"));
    let mut errors: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.reason == "CatchAllDisabled")
        .map(|d| (d.object.name.clone(), d.severity))
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            ("bare".to_string(), crate::model::Severity::Error),
            ("with-rules".to_string(), crate::model::Severity::Error)
        ]
    );
    // "should delete Ingress updated to catch-all"
    let mut updated = plain;
    updated.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("api", "80")));
    o.upsert(ing(updated));
    let s = translate(&o, &config);
    assert!(!s.l7.hosts.contains_key("b.example.com"));
    // Without the flag, all of them are served.
    let s = run(&o);
    assert!(s.l7.any_host.is_some(), "the catch-all Ingress");
    assert!(s.l7.hosts.contains_key("a.example.com"));
}

#[test]
fn other_classes_ignored_entirely() {
    let mut o = base();
    o.upsert(mk_class("nginx", "k8s.io/ingress-nginx", false));
    let mut i = mk_ingress(
        "default",
        "theirs",
        1,
        vec![("x.example.com", vec![("/", "Prefix", "missing", "80")])],
    );
    i.spec.as_mut().unwrap().ingress_class_name = Some("nginx".into());
    o.upsert(ing(i));
    let s = run(&o);
    assert!(s.l7.hosts.is_empty());
    assert!(s.diagnostics.is_empty());
    assert!(s.owned_ingresses.is_empty());
}

#[test]
fn annotations_reach_upstream_and_policy() {
    let mut o = base();
    let i = mk_ingress(
        "default",
        "a",
        1,
        vec![("a.example.com", vec![("/", "Prefix", "web", "80")])],
    );
    let i = with_annotation(i, "nginx.ingress.kubernetes.io/backend-protocol", "GRPC");
    let i = with_annotation(i, "nginx.ingress.kubernetes.io/proxy-body-size", "1m");
    o.upsert(ing(i));
    let s = run(&o);
    let r = &s.l7.hosts["a.example.com"].routes[0];
    assert_eq!(r.policy.max_body_bytes, Some(1 << 20));
    let RouteAction::Forward(u) = &r.action else {
        panic!()
    };
    assert_eq!(u[0].upstream.protocol, crate::model::BackendProtocol::Grpc);
}

#[test]
fn l4_takeover() {
    let mut o = base();
    let np = |name: &str, ty: &str, node_port: i32| {
        let mut p = mk_port(Some("tcp"), 80, IntOrString::Int(8080));
        p.node_port = Some(node_port);
        let mut s = mk_service("default", name, ty, vec![p]);
        s.metadata.annotations =
            Some([(L4_ACCELERATION_ANNOTATION.to_string(), "true".to_string())].into());
        s
    };
    // Annotated NodePort with ClientIP affinity (default timeout) and source ranges.
    let mut a = np("echo", "NodePort", 30080);
    let spec = a.spec.as_mut().unwrap();
    spec.session_affinity = Some("ClientIP".into());
    spec.load_balancer_source_ranges = Some(vec!["198.18.0.0/15".into()]);
    o.upsert(svc(a));
    o.upsert(mk_slice(
        "default",
        "echo-1",
        "echo",
        "IPv4",
        &[(Some("tcp"), 8080)],
        &[
            ("198.19.0.2", Some(true), None, None),
            ("198.19.1.2", Some(false), Some(true), Some(true)),
        ],
    ));
    // LoadBalancer with an ingress IP, an external IP and an explicit affinity timeout.
    let mut lb = np("lb", "LoadBalancer", 30443);
    let spec = lb.spec.as_mut().unwrap();
    spec.external_ips = Some(vec!["198.18.5.5".into()]);
    spec.external_traffic_policy = Some("Local".into());
    spec.health_check_node_port = Some(32100);
    spec.session_affinity = Some("ClientIP".into());
    spec.session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(60),
        }),
    });
    lb.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("198.18.9.9".into()),
                ..Default::default()
            }]),
        }),
        conditions: None,
    });
    o.upsert(svc(lb));
    // Its health check counts the ready endpoints on this node only.
    o.upsert(mk_slice(
        "default",
        "lb-1",
        "lb",
        "IPv4",
        &[(Some("tcp"), 8080)],
        &[
            ("198.19.0.3", Some(true), None, None),
            ("198.19.0.4", Some(false), Some(true), Some(true)),
        ],
    ));
    // Annotated ClusterIP: warning, not taken over. Bad source range: error, not taken over.
    o.upsert(svc(np("cip", "ClusterIP", 0)));
    let mut bad = np("badrange", "NodePort", 30099);
    bad.spec.as_mut().unwrap().load_balancer_source_ranges = Some(vec!["nope".into()]);
    o.upsert(svc(bad));
    // The ingress's own Service, not annotated.
    let mut own = np("xdp-ingress", "NodePort", 30000);
    own.metadata.annotations = None;
    o.upsert(svc(own));
    // Not annotated: ignored.
    let mut plain = np("plain", "NodePort", 30001);
    plain.metadata.annotations = None;
    o.upsert(svc(plain));

    let cfg = TranslateConfig {
        ingress_service: Some(crate::store::Key::new("default", "xdp-ingress")),
        node_name: Some("node-a".into()),
        ..mk_config()
    };
    let s = translate(&o, &cfg);
    let ids: Vec<&str> = s.l4.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "default/echo:tcp",
            "default/lb:tcp",
            "default/xdp-ingress:tcp"
        ]
    );
    let echo = &s.l4[0];
    assert_eq!(echo.protocol, L4Protocol::Tcp);
    assert_eq!(echo.frontends, [Frontend::NodePort(30080)]);
    assert_eq!(echo.client_ip_affinity, Some(Duration::from_secs(10800)));
    assert_eq!(echo.source_ranges.len(), 1);
    assert_eq!(
        echo.endpoints.iter().map(|e| e.state).collect::<Vec<_>>(),
        [EndpointState::Active, EndpointState::Terminating]
    );
    assert!(!echo.local_proxy);
    assert!(!echo.external_traffic_local);
    assert_eq!(
        echo.health_check, None,
        "externalTrafficPolicy Cluster has none"
    );
    let lb = &s.l4[1];
    assert!(lb.external_traffic_local);
    assert_eq!(
        lb.health_check,
        Some(HealthCheck {
            node_port: 32100,
            local_endpoints: 1
        })
    );
    let elsewhere = TranslateConfig {
        node_name: Some("node-b".into()),
        ..cfg.clone()
    };
    assert_eq!(
        translate(&o, &elsewhere).l4[1].health_check,
        Some(HealthCheck {
            node_port: 32100,
            local_endpoints: 0
        }),
        "no endpoint on node-b: 503"
    );
    assert_eq!(
        lb.frontends,
        [
            Frontend::NodePort(30443),
            Frontend::Address("198.18.9.9:80".parse().unwrap()),
            Frontend::Address("198.18.5.5:80".parse().unwrap()),
        ]
    );
    assert_eq!(lb.client_ip_affinity, Some(Duration::from_secs(60)));
    assert!(s.l4[2].local_proxy);
    assert_eq!(s.local_node.as_deref(), Some("node-a"));
    assert_eq!(
        reasons(&s),
        [
            ("badrange".into(), "InvalidSourceRange".into()),
            ("cip".into(), "L4AccelerationUnsupported".into()),
        ]
    );
}

/// `xdp-ingress.dev/syn-rate-limit(-burst)` on an accelerated Service, and
/// `--syn-rate-limit-per-source` on the ingress's own Service only; a bad value warns and
/// the Service is still taken over.
#[test]
fn syn_rate_limits_reach_the_l4_services() {
    use super::syn_limit::{SYN_RATE_LIMIT_ANNOTATION, SYN_RATE_LIMIT_BURST_ANNOTATION};
    use crate::model::SynRateLimit;
    let mut o = base();
    let np = |name: &str, node_port: i32, extra: &[(&str, &str)]| {
        let mut p = mk_port(Some("tcp"), 80, IntOrString::Int(8080));
        p.node_port = Some(node_port);
        let mut s = mk_service("default", name, "NodePort", vec![p]);
        let mut a: std::collections::BTreeMap<String, String> =
            [(L4_ACCELERATION_ANNOTATION.to_string(), "true".to_string())].into();
        a.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        s.metadata.annotations = Some(a);
        s
    };
    o.upsert(svc(np(
        "limited",
        30080,
        &[
            (SYN_RATE_LIMIT_ANNOTATION, "100"),
            (SYN_RATE_LIMIT_BURST_ANNOTATION, "20"),
        ],
    )));
    o.upsert(svc(np(
        "default-burst",
        30081,
        &[(SYN_RATE_LIMIT_ANNOTATION, "7")],
    )));
    o.upsert(svc(np("open", 30082, &[])));
    o.upsert(svc(np(
        "typo",
        30083,
        &[(SYN_RATE_LIMIT_ANNOTATION, "100/s")],
    )));
    let mut own = np("xdp-ingress", 30000, &[]);
    own.metadata.annotations = None;
    o.upsert(svc(own));
    // Not accelerated: nothing enforces the limit, and a warning says so.
    let mut plain = np("plain", 30084, &[]);
    plain.metadata.annotations =
        Some([(SYN_RATE_LIMIT_ANNOTATION.to_string(), "10".to_string())].into());
    o.upsert(svc(plain));
    let cfg = TranslateConfig {
        ingress_service: Some(crate::store::Key::new("default", "xdp-ingress")),
        proxy_syn_rate_limit: Some(SynRateLimit {
            per_second: 50,
            burst: 10,
        }),
        ..mk_config()
    };
    let s = translate(&o, &cfg);
    let got: Vec<(&str, Option<SynRateLimit>)> =
        s.l4.iter()
            .map(|l| (l.service.name.as_str(), l.syn_rate_limit))
            .collect();
    let lim = |per_second, burst| Some(SynRateLimit { per_second, burst });
    assert_eq!(
        got,
        [
            ("default-burst", lim(7, 35)),
            ("limited", lim(100, 20)),
            ("open", None),
            ("typo", None),
            ("xdp-ingress", lim(50, 10)),
        ]
    );
    assert_eq!(
        reasons(&s),
        [
            ("plain".into(), "InvalidSynRateLimit".into()),
            ("typo".into(), "InvalidSynRateLimit".into())
        ]
    );
}

#[test]
fn versions_increase_and_tls_cache_reuses() {
    let (crt, key) = mk_cert_pem(&["a.example.com"]);
    let mut o = base();
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "t", &crt, &key,
    ))));
    let rule = vec![("a.example.com", vec![("/", "Prefix", "web", "80")])];
    o.upsert(ing(with_tls(
        mk_ingress("default", "a", 1, rule),
        &["a.example.com"],
        "t",
    )));
    let mut t = Translator::new(mk_config());
    let one = t.translate(&o);
    let two = t.translate(&o);
    assert_eq!((one.version, two.version), (1, 2));
    let cert = |s: &Snapshot| s.l7.certificates["a.example.com"].clone();
    assert!(
        Arc::ptr_eq(&cert(&one), &cert(&two)),
        "unchanged Secret not parsed again"
    );
    // A rotated Secret is parsed again.
    let (crt2, key2) = mk_cert_pem(&["a.example.com"]);
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "t", &crt2, &key2,
    ))));
    let three = t.translate(&o);
    assert_eq!(&*cert(&three).chain_pem, crt2.as_bytes());
}

#[test]
fn status_addresses_from_flag_or_nodes() {
    use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
    let node = |name: &str, addrs: &[(&str, &str)]| {
        Object::Node(Arc::new(Node {
            metadata: meta("", name),
            status: Some(NodeStatus {
                addresses: Some(
                    addrs
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }))
    };
    let mut o = base();
    o.upsert(node(
        "node-a",
        &[("InternalIP", "10.0.0.1"), ("ExternalIP", "198.18.0.2")],
    ));
    o.upsert(node("node-b", &[("InternalIP", "10.0.0.2")]));
    o.upsert(node("node-c", &[("InternalIP", "10.0.0.3")]));
    // Every node without an ingress Service: ExternalIP, else InternalIP.
    assert_eq!(
        run(&o).status_addresses,
        ["10.0.0.2", "10.0.0.3", "198.18.0.2"]
    );
    // With the ingress Service: only nodes that run a proxy endpoint (fixture endpoints are on node-a).
    let mut own = mk_service(
        "default",
        "xdp-ingress",
        "NodePort",
        vec![{
            let mut p = mk_port(Some("http"), 80, IntOrString::Int(8080));
            p.node_port = Some(30080);
            p
        }],
    );
    own.metadata.name = Some("xdp-ingress".into());
    o.upsert(svc(own));
    o.upsert(mk_slice(
        "default",
        "xdp-ingress-1",
        "xdp-ingress",
        "IPv4",
        &[(Some("http"), 8080)],
        &[("198.18.0.2", Some(true), None, None)],
    ));
    let cfg = TranslateConfig {
        ingress_service: Some(crate::store::Key::new("default", "xdp-ingress")),
        ..mk_config()
    };
    assert_eq!(translate(&o, &cfg).status_addresses, ["198.18.0.2"]);
    let cfg = TranslateConfig {
        publish_addresses: vec!["lb.example.com".into()],
        ..cfg
    };
    assert_eq!(translate(&o, &cfg).status_addresses, ["lb.example.com"]);
}

#[test]
fn upstreams_shared_per_service_port_and_options() {
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "a",
        1,
        vec![(
            "a.example.com",
            vec![
                ("/", "Prefix", "web", "80"),
                ("/x", "Prefix", "web", "http"),
            ],
        )],
    )));
    let other = mk_ingress(
        "default",
        "b",
        2,
        vec![("b.example.com", vec![("/", "Prefix", "web", "80")])],
    );
    o.upsert(ing(with_annotation(
        other,
        "nginx.ingress.kubernetes.io/load-balance",
        "ewma",
    )));
    let s = run(&o);
    let up = |h: &str, i: usize| match &s.l7.hosts[h].routes[i].action {
        RouteAction::Forward(u) => u[0].upstream.clone(),
        _ => panic!(),
    };
    assert!(Arc::ptr_eq(
        &up("a.example.com", 0),
        &up("a.example.com", 1)
    ));
    let b = up("b.example.com", 0);
    assert!(
        !Arc::ptr_eq(&up("a.example.com", 0), &b),
        "different options: own upstream"
    );
    assert_eq!(b.id, "default/web:80");
    assert_eq!(b.endpoints.len(), 1);
}

#[test]
fn default_certificates_and_tls_host_conflicts() {
    let (crt, key) = mk_cert_pem(&["a.example.com"]);
    let (crt2, key2) = mk_cert_pem(&["b.example.com"]);
    let mut o = base();
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "one", &crt, &key,
    ))));
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "two", &crt2, &key2,
    ))));
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "kube-system",
        "fallback",
        &crt2,
        &key2,
    ))));
    let rule = vec![("a.example.com", vec![("/", "Prefix", "web", "80")])];
    o.upsert(ing(with_tls(
        mk_ingress("default", "first", 1, rule.clone()),
        &["a.example.com"],
        "one",
    )));
    o.upsert(ing(with_tls(
        mk_ingress("default", "second", 2, rule),
        &["A.example.com"],
        "two",
    )));
    // `spec.tls` without hosts and without rules configures nothing: only
    // --default-ssl-certificate makes the default certificate (ingress-nginx's
    // createServers gives an Ingress's certificates to its rule hosts alone).
    o.upsert(ing(with_tls(
        mk_ingress("default", "nohosts", 3, vec![]),
        &[],
        "two",
    )));
    let s = run(&o);
    assert_eq!(
        s.l7.certificates["a.example.com"].secret.name, "one",
        "older Ingress keeps the host"
    );
    assert!(s.l7.default_certificate.is_none());
    assert!(reasons(&s).contains(&("second".into(), "TlsHostConflict".into())));
    assert!(reasons(&s).contains(&("second".into(), "RouteConflict".into())));
    assert!(reasons(&s).contains(&("nohosts".into(), "TlsHostWithoutRule".into())));

    // --default-ssl-certificate is the default certificate.
    let cfg = TranslateConfig {
        default_tls_secret: Some(crate::store::Key::new("kube-system", "fallback")),
        ..mk_config()
    };
    let s = translate(&o, &cfg);
    assert_eq!(
        s.l7.default_certificate.as_ref().unwrap().secret.name,
        "fallback"
    );
}

/// A Secret whose certificate does not name the host (ingress-nginx e2e
/// settings/default_ssl_certificate.go "uses default ssl certificate for host based ingress
/// when configured certificate does not match host"): the host is served with the default
/// certificate, and a Warning names the host.
#[test]
fn a_certificate_that_does_not_name_the_host_gives_way_to_the_default() {
    let (crt, key) = mk_cert_pem(&["other.example.com"]);
    let (wild, wild_key) = mk_cert_pem(&["*.example.com"]);
    let mut o = base();
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "other", &crt, &key,
    ))));
    o.upsert(Object::Secret(Arc::new(mk_tls_secret(
        "default", "wild", &wild, &wild_key,
    ))));
    let rule = |h: &'static str| vec![(h, vec![("/", "Prefix", "web", "80")])];
    o.upsert(ing(with_tls(
        mk_ingress("default", "mismatch", 1, rule("foo.example.com")),
        &["foo.example.com"],
        "other",
    )));
    o.upsert(ing(with_tls(
        mk_ingress("default", "wildcard", 2, rule("bar.example.com")),
        &["bar.example.com"],
        "wild",
    )));
    let s = run(&o);
    assert!(s.l7.hosts["foo.example.com"].tls, "still HTTPS, redirected");
    assert!(!s.l7.certificates.contains_key("foo.example.com"));
    assert_eq!(s.l7.certificates["bar.example.com"].secret.name, "wild");
    let d: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.reason == "TlsCertificateHostMismatch")
        .collect();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].object.name.as_str(), d[0].severity),
        ("mismatch", crate::model::Severity::Warning)
    );
    assert!(d[0].message.contains("foo.example.com"), "{}", d[0].message);
}

#[test]
fn unreferenced_slices_and_secrets_do_not_affect_the_snapshot() {
    use crate::store::{Change, Key};
    let mut o = base();
    o.upsert(ing(with_tls(
        mk_ingress(
            "default",
            "a",
            1,
            vec![("a.example.com", vec![("/", "Prefix", "web", "80")])],
        ),
        &["a.example.com"],
        "a-tls",
    )));
    let mut t = Translator::new(mk_config());
    let slice = |svc: &str| {
        mk_slice(
            "default",
            &format!("{svc}-abc"),
            svc,
            "IPv4",
            &[(Some("http"), 8080)],
            &[("198.19.7.2", Some(true), None, None)],
        )
    };
    let secret = |name: &str| Object::Secret(Arc::new(mk_tls_secret("default", name, "x", "y")));
    assert!(
        t.affects(&o, &Change::Upsert(slice("api"))),
        "everything counts before the first snapshot"
    );
    t.translate(&o);
    struct Case {
        name: &'static str,
        change: Change,
        affects: bool,
    }
    let cases = [
        Case {
            name: "slice of a used service",
            change: Change::Upsert(slice("web")),
            affects: true,
        },
        Case {
            name: "slice of an unused service",
            change: Change::Upsert(slice("api")),
            affects: false,
        },
        Case {
            name: "delete slice of a used service",
            change: Change::Delete(ObjectKind::EndpointSlice, Key::new("default", "web-abc")),
            affects: true,
        },
        Case {
            name: "delete slice of an unused service",
            change: Change::Delete(ObjectKind::EndpointSlice, Key::new("default", "api-abc")),
            affects: false,
        },
        Case {
            name: "delete unknown slice",
            change: Change::Delete(ObjectKind::EndpointSlice, Key::new("default", "nope")),
            affects: false,
        },
        Case {
            name: "referenced (missing) secret appears",
            change: Change::Upsert(secret("a-tls")),
            affects: true,
        },
        Case {
            name: "unreferenced secret",
            change: Change::Upsert(secret("other")),
            affects: false,
        },
        Case {
            name: "any service change",
            change: Change::Upsert(svc(mk_service("default", "zzz", "ClusterIP", vec![]))),
            affects: true,
        },
    ];
    for c in cases {
        assert_eq!(t.affects(&o, &c.change), c.affects, "{}", c.name);
    }
    // A slice moving from a used service to an unused one still counts (the old one changes).
    let moved = mk_slice(
        "default",
        "web-abc",
        "api",
        "IPv4",
        &[(Some("http"), 8080)],
        &[],
    );
    assert!(t.affects(&o, &Change::Upsert(moved)));
}

/// Everything but the version, for comparing snapshots built different ways.
fn content(s: &Snapshot) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.l7, s.l4, s.diagnostics, s.owned_ingresses, s.status_addresses
    )
}

#[test]
fn endpoint_fast_path_equals_full_translation() {
    use crate::store::{Change, Key};
    use std::collections::HashSet;
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "a",
        1,
        vec![
            (
                "a.example.com",
                vec![
                    ("/", "Prefix", "web", "80"),
                    ("/api", "Prefix", "api", "80"),
                ],
            ),
            ("*.wild.example.com", vec![("/", "Prefix", "web", "80")]),
            ("", vec![("/any", "Prefix", "api", "http")]),
        ],
    )));
    let mut fallback = mk_ingress("default", "fallback", 2, vec![]);
    fallback.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("web", "80")));
    o.upsert(ing(fallback));
    // An error backend (api) whose endpoints change too.
    o.upsert(ing(with_annotation(
        mk_ingress(
            "default",
            "b",
            4,
            vec![("b.example.com", vec![("/", "Prefix", "web", "80")])],
        ),
        "nginx.ingress.kubernetes.io/default-backend",
        "api",
    )));
    // A canary on a.example.com/: its backend (api) is refreshed like the main ones.
    o.upsert(ing(with_annotation(
        mk_ingress(
            "default",
            "a-canary",
            3,
            vec![("a.example.com", vec![("/", "Prefix", "api", "80")])],
        ),
        "nginx.ingress.kubernetes.io/canary",
        "true",
    )));
    let mut echo = mk_service(
        "default",
        "echo",
        "NodePort",
        vec![{
            let mut p = mk_port(Some("tcp"), 9000, IntOrString::Int(9000));
            p.node_port = Some(30090);
            p
        }],
    );
    echo.metadata.annotations =
        Some([(L4_ACCELERATION_ANNOTATION.to_string(), "true".to_string())].into());
    o.upsert(svc(echo));
    o.upsert(mk_slice(
        "default",
        "echo-1",
        "echo",
        "IPv4",
        &[(Some("tcp"), 9000)],
        &[("198.19.0.2", Some(true), None, None)],
    ));

    let steps: Vec<Change> = vec![
        // A pod of web turns terminating, one is added.
        Change::Upsert(mk_slice(
            "default",
            "web-abc",
            "web",
            "IPv4",
            &[(Some("http"), 8080)],
            &[
                ("198.19.0.2", Some(false), Some(true), Some(true)),
                ("198.19.5.2", Some(true), None, None),
            ],
        )),
        // A second slice for api, then api's first slice goes away.
        Change::Upsert(mk_slice(
            "default",
            "api-two",
            "api",
            "IPv4",
            &[(Some("http"), 8080)],
            &[("198.19.6.2", Some(true), None, None)],
        )),
        Change::Delete(ObjectKind::EndpointSlice, Key::new("default", "api-abc")),
        // The L4 service's endpoints change.
        Change::Upsert(mk_slice(
            "default",
            "echo-1",
            "echo",
            "IPv4",
            &[(Some("tcp"), 9000)],
            &[("198.19.7.2", Some(true), None, None)],
        )),
        // Both in one batch.
        Change::Batch(vec![
            Change::Upsert(mk_slice(
                "default",
                "web-abc",
                "web",
                "IPv4",
                &[(Some("http"), 8080)],
                &[],
            )),
            Change::Upsert(mk_slice(
                "default",
                "echo-1",
                "echo",
                "IPv4",
                &[(Some("tcp"), 9000)],
                &[],
            )),
        ]),
    ];
    let mut t = Translator::new(mk_config());
    t.translate_shared(&o, None);
    for (i, change) in steps.into_iter().enumerate() {
        let touched: HashSet<Key> = Translator::slice_services(&o, &change)
            .expect("slice-only change")
            .into_iter()
            .collect();
        assert!(!touched.is_empty(), "step {i}");
        let mut layer = crate::store::Store::new();
        layer.apply(
            crate::store::SourceId::Other,
            Change::ReplaceAll(Box::new(o.clone())),
        );
        layer.apply(crate::store::SourceId::Other, change);
        o = layer.view().into_owned();
        assert!(
            t.endpoints_only(&o, &touched).is_some(),
            "step {i} took the fast path"
        );
        let fast = t.translate_shared(&o, Some(&touched));
        let full = translate(&o, &mk_config());
        assert_eq!(content(&fast), content(&full), "step {i}");
        assert_eq!(fast.version, i as u64 + 2);
    }
    // A Service change is not endpoint-only; a port that vanished falls back to full.
    assert!(
        Translator::slice_services(
            &o,
            &Change::Upsert(svc(mk_service("default", "web", "ClusterIP", vec![])))
        )
        .is_none()
    );
    o.upsert(svc(mk_service("default", "web", "ClusterIP", vec![])));
    let touched: HashSet<Key> = [Key::new("default", "web")].into();
    assert!(t.endpoints_only(&o, &touched).is_none());
    let s = t.translate_shared(&o, Some(&touched));
    assert_eq!(content(&s), content(&translate(&o, &mk_config())));
}

#[test]
fn debug_output_never_contains_a_private_key() {
    let (crt, key) = mk_cert_pem(&["secure.example.com"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("default", "tls", &crt, &key)));
    let mut o = base();
    o.upsert(secret.clone());
    o.upsert(ing(with_tls(
        mk_ingress(
            "default",
            "s",
            1,
            vec![("secure.example.com", vec![("/", "Prefix", "web", "80")])],
        ),
        &["secure.example.com"],
        "tls",
    )));
    let mut t = Translator::new(mk_config());
    let snap = t.translate(&o);
    assert_eq!(snap.l7.certificates.len(), 1, "the certificate is served");
    let store = crate::proxy::tls::CertStore::new().expect("store");
    assert!(store.update(&snap.l7).is_empty());
    // The key's base64 body, not only its armour, must be absent; and its bytes as numbers.
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let first_bytes = format!("{:?}", &key.as_bytes()[..8]);
    let shown = [
        format!("{secret:?}"),
        format!("{o:?}"),
        format!("{:?}", crate::store::Change::Upsert(secret.clone())),
        format!("{t:#?}"),
        format!("{snap:?}"),
        format!("{store:?}"),
    ];
    for s in shown {
        assert!(!s.contains("PRIVATE KEY"), "{s}");
        assert!(!s.contains(&body[..40]), "{s}");
        assert!(!s.contains(&first_bytes[1..first_bytes.len() - 1]), "{s}");
    }
}

#[test]
fn affinity_timeout_outside_the_api_range_warns_and_uses_the_default() {
    // The API server rejects these; a manifest file is not checked by anyone else.
    for (timeout, want, warned) in [
        (86400, 86400, false),
        (1, 1, false),
        (0, 10800, true),
        (-5, 10800, true),
        (86401, 10800, true),
        (i32::MAX, 10800, true),
    ] {
        let mut o = Objects::default();
        let mut p = mk_port(Some("tcp"), 80, IntOrString::Int(8080));
        p.node_port = Some(30080);
        let mut s = mk_service("default", "echo", "NodePort", vec![p]);
        s.metadata.annotations =
            Some([(L4_ACCELERATION_ANNOTATION.to_string(), "true".to_string())].into());
        let spec = s.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(timeout),
            }),
        });
        o.upsert(svc(s));
        let snap = run(&o);
        assert_eq!(
            snap.l4[0].client_ip_affinity,
            Some(Duration::from_secs(want)),
            "{timeout}"
        );
        let r = reasons(&snap);
        assert_eq!(!r.is_empty(), warned, "{timeout}: {r:?}");
        if warned {
            assert_eq!(r, [("echo".into(), "InvalidAffinityTimeout".into())]);
            assert!(snap.diagnostics[0].message.contains("1 to 86400"));
        }
    }
}

/// `web` (L7) and annotated NodePort `echo` (L4) share a v4 and a v6 slice that mix pods with
/// every kind of address pointing into the node; node-a has InternalIP 10.1.0.5.
fn objects_with_node_local_endpoints() -> Objects {
    let mut o = base();
    let mut node = k8s_openapi::api::core::v1::Node::default();
    node.metadata.name = Some("node-a".into());
    node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
        addresses: Some(vec![k8s_openapi::api::core::v1::NodeAddress {
            type_: "InternalIP".into(),
            address: "10.1.0.5".into(),
        }]),
        ..Default::default()
    });
    o.upsert(Object::Node(Arc::new(node)));
    let mut p = mk_port(Some("http"), 80, IntOrString::Int(8080));
    p.node_port = Some(30080);
    let mut echo = mk_service("default", "echo", "NodePort", vec![p]);
    echo.metadata.annotations =
        Some([(L4_ACCELERATION_ANNOTATION.to_string(), "true".to_string())].into());
    o.upsert(svc(echo));
    let ready = |a: &'static str| (a, Some(true), None, None);
    for svc_name in ["web", "echo"] {
        o.upsert(mk_slice(
            "default",
            &format!("{svc_name}-v4"),
            svc_name,
            "IPv4",
            &[(Some("http"), 8080)],
            &[
                ready("198.19.5.2"),
                ready("127.0.0.1"),
                ready("169.254.169.254"),
                ready("0.0.0.0"),
                ready("224.0.0.1"),
                ready("255.255.255.255"),
                ready("10.1.0.5"),
            ],
        ));
        o.upsert(mk_slice(
            "default",
            &format!("{svc_name}-v6"),
            svc_name,
            "IPv6",
            &[(Some("http"), 8080)],
            &[
                ready("2001:db8:5::2"),
                ready("::1"),
                ready("fe80::1"),
                ready("::"),
                ready("ff02::1"),
                ready("::ffff:127.0.0.1"),
                ready("::ffff:10.1.0.5"),
            ],
        ));
    }
    o.upsert(ing(mk_ingress(
        "default",
        "a",
        1,
        vec![(
            "a.example.com",
            vec![
                ("/", "Prefix", "web", "80"),
                ("/api", "Prefix", "api", "80"),
            ],
        )],
    )));
    o
}

fn node_a() -> TranslateConfig {
    TranslateConfig {
        node_name: Some("node-a".into()),
        ..mk_config()
    }
}

#[test]
fn endpoints_pointing_into_the_node_are_refused_on_both_planes() {
    let o = objects_with_node_local_endpoints();
    let s = translate(&o, &node_a());
    let good = ["198.19.0.2:8080", "198.19.5.2:8080", "[2001:db8:5::2]:8080"];
    let addrs = |eps: &[crate::model::Endpoint]| -> Vec<String> {
        eps.iter().map(|e| e.addr.to_string()).collect()
    };
    let RouteAction::Forward(ups) = &s.l7.hosts["a.example.com"].routes[1].action else {
        panic!("web route forwards");
    };
    assert_eq!(addrs(&ups[0].upstream.endpoints), good, "L7 keeps the pods");
    assert_eq!(addrs(&s.l4[0].endpoints), good[1..], "L4 keeps the pods");
    // The other Service and its route are untouched.
    assert_eq!(routes(&s.l7.hosts["a.example.com"]).len(), 2);
    // One Error per refused address and slice, on the EndpointSlice, naming address and kind.
    let refused: Vec<(&str, &str)> = s
        .diagnostics
        .iter()
        .map(|d| {
            assert_eq!(d.severity, crate::model::Severity::Error, "{d:?}");
            assert_eq!(d.object.kind, ObjectKind::EndpointSlice);
            assert_eq!(d.reason, "EndpointAddressRefused");
            (d.object.name.as_str(), d.message.as_str())
        })
        .collect();
    assert_eq!(refused.len(), 2 * (6 + 6), "{refused:#?}");
    for (addr, kind) in [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("10.1.0.5", "address of this node"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.0.5", "address of this node"),
    ] {
        for slice in ["web", "echo"] {
            let hit = refused.iter().any(|(n, m)| {
                n.starts_with(slice) && m.contains(&format!("endpoint {addr} ")) && m.contains(kind)
            });
            assert!(hit, "{slice}: {addr} refused as {kind}: {refused:#?}");
        }
    }
    // Without the node's name its address is a pod address like any other.
    let s = run(&o);
    assert_eq!(s.diagnostics.len(), 2 * 10, "{:#?}", s.diagnostics);
    // The opt-in serves loopback and the node's addresses, nothing else.
    let s = translate(
        &o,
        &TranslateConfig {
            allow_node_local_endpoints: true,
            ..node_a()
        },
    );
    assert_eq!(
        s.l4[0].endpoints.len(),
        2 + 5,
        "{:?}",
        addrs(&s.l4[0].endpoints)
    );
    assert_eq!(s.diagnostics.len(), 2 * 7);
}

#[test]
fn refused_endpoints_keep_the_fast_path_equal_to_a_full_translation() {
    use crate::store::Key;
    use std::collections::HashSet;
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "a",
        1,
        vec![("a.example.com", vec![("/", "Prefix", "web", "80")])],
    )));
    let slice = |addrs: &[&'static str]| {
        let eps: Vec<EndpointSpec> = addrs.iter().map(|a| (*a, Some(true), None, None)).collect();
        mk_slice(
            "default",
            "web-abc",
            "web",
            "IPv4",
            &[(Some("http"), 8080)],
            &eps,
        )
    };
    let mut t = Translator::new(mk_config());
    t.translate_shared(&o, None);
    // A refused address appears, stays while others change, then goes away.
    for addrs in [
        &["198.19.0.2", "127.0.0.1"][..],
        &["198.19.0.3", "127.0.0.1"],
        &["198.19.0.3"],
        &["198.19.0.4"],
    ] {
        let touched: HashSet<Key> = [Key::new("default", "web")].into();
        o.upsert(slice(addrs));
        let s = t.translate_shared(&o, Some(&touched));
        assert_eq!(
            content(&s),
            content(&translate(&o, &mk_config())),
            "{addrs:?}"
        );
    }
}

#[test]
fn secrets_outside_secret_namespaces_are_reported_not_read() {
    let (crt, key) = mk_cert_pem(&["default.example.com", "shop.example.com"]);
    let mut o = base();
    for ns in ["default", "shop"] {
        o.upsert(Object::Secret(Arc::new(mk_tls_secret(
            ns, "tls", &crt, &key,
        ))));
        o.upsert(ing(with_tls(
            mk_ingress(
                ns,
                "site",
                1,
                vec![(
                    &format!("{ns}.example.com"),
                    vec![("/", "Prefix", "web", "80")],
                )],
            ),
            &[&format!("{ns}.example.com")],
            "tls",
        )));
    }
    let cfg = TranslateConfig {
        secret_namespaces: Some(vec!["default".into()]),
        ..mk_config()
    };
    let s = translate(&o, &cfg);
    // Present in the store (e.g. a manifest directory), but outside the list: not read.
    assert_eq!(
        s.l7.certificates.keys().collect::<Vec<_>>(),
        ["default.example.com"]
    );
    assert!(
        s.l7.hosts["shop.example.com"].tls,
        "still routed, default certificate"
    );
    let d: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.reason.starts_with("TlsSecret"))
        .map(|d| (d.object.to_string(), d.reason.clone(), d.severity))
        .collect();
    assert_eq!(
        d,
        [(
            "Ingress shop/site".into(),
            "TlsSecretNotWatched".into(),
            crate::model::Severity::Error
        )]
    );
}

/// Snippets: not served by default (the other Ingresses are), served without them with
/// `--serve-ingresses-with-snippets`; every ignored annotation is counted per Ingress.
#[test]
fn snippet_ingresses_are_not_served_unless_allowed_and_ignored_annotations_are_counted() {
    const N: &str = "nginx.ingress.kubernetes.io/";
    let mut o = base();
    let snippet = with_annotation(
        mk_ingress(
            "default",
            "snip",
            1,
            vec![("s.example.com", vec![("/", "Prefix", "web", "http")])],
        ),
        &format!("{N}server-snippet"),
        "deny all;",
    );
    o.upsert(ing(with_annotation(
        snippet,
        &format!("{N}enable-opentelemetry"),
        "true",
    )));
    o.upsert(ing(with_annotation(
        mk_ingress(
            "default",
            "plain",
            1,
            vec![("p.example.com", vec![("/", "Prefix", "web", "http")])],
        ),
        "xdp-ingress.dev/enable-opentelemetry",
        "true",
    )));
    let s = run(&o);
    assert!(!s.l7.hosts.contains_key("s.example.com"));
    assert!(s.l7.hosts.contains_key("p.example.com"));
    assert_eq!(
        s.unsupported_annotations,
        [
            ("enable-opentelemetry".to_string(), 2),
            ("server-snippet".to_string(), 1)
        ]
        .into()
    );
    let snip = s
        .diagnostics
        .iter()
        .find(|d| d.reason == "SnippetAnnotation")
        .unwrap();
    assert_eq!(
        (snip.object.name.as_str(), snip.severity),
        ("snip", crate::model::Severity::Error)
    );
    let served = translate(
        &o,
        &TranslateConfig {
            serve_ingresses_with_snippets: true,
            ..mk_config()
        },
    );
    assert!(served.l7.hosts.contains_key("s.example.com"));
}

/// `annotation-value-word-blocklist` (ingress-nginx e2e settings/badannotationvalues.go): an
/// Ingress whose annotation value holds a listed word is not served, with an Error naming the
/// annotation and the word; the other Ingresses are served.
#[test]
fn annotation_value_word_blocklist_drops_the_ingress() {
    let mut o = base();
    o.upsert(ing(with_annotation(
        mk_ingress(
            "default",
            "bad",
            1,
            vec![("bad.example.com", vec![("/", "Prefix", "web", "http")])],
        ),
        "nginx.ingress.kubernetes.io/rewrite-target",
        "/x/another_directive",
    )));
    o.upsert(ing(with_annotation(
        mk_ingress(
            "default",
            "good",
            1,
            vec![("good.example.com", vec![("/", "Prefix", "web", "http")])],
        ),
        "nginx.ingress.kubernetes.io/rewrite-target",
        "/x",
    )));
    let s = run(&o);
    assert!(
        s.l7.hosts.contains_key("bad.example.com"),
        "no list: served"
    );
    o.upsert(Object::ConfigMap(Arc::new(
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: meta("ingress-nginx", "cm"),
            data: Some(
                [(
                    "annotation-value-word-blocklist".to_string(),
                    "invalid_directive, another_directive".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
    )));
    let config = TranslateConfig {
        configmap: Some(crate::store::Key::new("ingress-nginx", "cm")),
        ..mk_config()
    };
    let s = translate(&o, &config);
    assert!(!s.l7.hosts.contains_key("bad.example.com"));
    assert!(s.l7.hosts.contains_key("good.example.com"));
    let d = s
        .diagnostics
        .iter()
        .find(|d| d.reason == "AnnotationValueBlocked")
        .expect("an Error for the dropped Ingress");
    assert_eq!(
        (d.object.name.as_str(), d.severity),
        ("bad", crate::model::Severity::Error)
    );
    assert!(
        d.message
            .contains("nginx.ingress.kubernetes.io/rewrite-target")
            && d.message.contains("\"another_directive\""),
        "{}",
        d.message
    );
    assert!(
        !s.diagnostics
            .iter()
            .any(|d| d.reason == "UnsupportedConfigMapKey"),
        "the key is known"
    );
}

/// `no-tls-redirect-locations` (default `/.well-known/acme-challenge`, ingress-nginx's
/// `$force_no_ssl_redirect`): a location whose written path starts with an entry is never sent
/// to HTTPS, whatever `ssl-redirect` or `force-ssl-redirect` say, so an ACME HTTP-01 solver
/// is reached over plain HTTP; the ConfigMap key replaces the list.
#[test]
fn no_tls_redirect_locations_keep_acme_challenges_on_plain_http() {
    let objects = |cm: Option<&str>| {
        let mut o = services_with_one_pod(&["web"]);
        let (crt, key) = mk_cert_pem(&["a.test"]);
        o.upsert(Object::Secret(Arc::new(mk_tls_secret(
            "default", "a-tls", &crt, &key,
        ))));
        let i = mk_ingress(
            "default",
            "a",
            1,
            vec![(
                "a.test",
                vec![
                    ("/", "Prefix", "web", "80"),
                    ("/.well-known/acme-challenge/tok", "Exact", "web", "80"),
                    ("/internal", "Prefix", "web", "80"),
                ],
            )],
        );
        let i = with_tls(i, &["a.test"], "a-tls");
        let i = with_annotation(i, "nginx.ingress.kubernetes.io/force-ssl-redirect", "true");
        o.upsert(ing(i));
        if let Some(list) = cm {
            o.upsert(Object::ConfigMap(Arc::new(
                k8s_openapi::api::core::v1::ConfigMap {
                    metadata: meta("ingress-nginx", "cm"),
                    data: Some(
                        [("no-tls-redirect-locations".to_string(), list.to_string())].into(),
                    ),
                    ..Default::default()
                },
            )));
        }
        o
    };
    let redirects = |s: &Snapshot, path: &str| {
        let r = s.l7.hosts["a.test"]
            .routes
            .iter()
            .find(|r| r.origin.written_path.as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no route {path}"));
        r.policy.ssl_redirect != Some(false)
    };
    let s = run(&objects(None));
    assert!(s.l7.hosts["a.test"].tls);
    assert!(redirects(&s, "/"));
    assert!(!redirects(&s, "/.well-known/acme-challenge/tok"));
    assert!(redirects(&s, "/internal"));
    let config = TranslateConfig {
        configmap: Some(crate::store::Key::new("ingress-nginx", "cm")),
        ..mk_config()
    };
    let s = translate(&objects(Some("/internal, /other")), &config);
    assert!(redirects(&s, "/"));
    assert!(redirects(&s, "/.well-known/acme-challenge/tok"), "replaced");
    assert!(!redirects(&s, "/internal"));
}

/// A `--configmap` that names no ConfigMap is said, not ignored (found by a fresh-user trial:
/// a misspelt name dropped every setting in silence); once it exists the warning goes.
#[test]
fn a_missing_controller_configmap_is_reported() {
    let config = TranslateConfig {
        configmap: Some(crate::store::Key::new("ingress-nginx", "controller")),
        ..mk_config()
    };
    let mut o = base();
    let s = translate(&o, &config);
    let missing: Vec<_> = (s.diagnostics.iter())
        .filter(|d| d.reason == "ConfigMapNotFound")
        .collect();
    assert_eq!(missing.len(), 1, "{:?}", s.diagnostics);
    assert_eq!(missing[0].object.name, "controller");
    assert!(missing[0].message.contains("ingress-nginx/controller"));
    o.upsert(Object::ConfigMap(Arc::new(
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: meta("ingress-nginx", "controller"),
            ..Default::default()
        },
    )));
    let s = translate(&o, &config);
    assert!(
        s.diagnostics
            .iter()
            .all(|d| d.reason != "ConfigMapNotFound")
    );
    // Without --configmap nothing is looked for.
    assert!(run(&base()).diagnostics.is_empty());
}

/// ingress-nginx's own ConfigMap brought along without `--configmap` is said to be unused
/// (found by a fresh-user trial: `run` and `explain` served without its global auth in
/// silence, while `migrate` reads it by default).
#[test]
fn ingress_nginx_configmap_without_the_flag_is_reported() {
    let mut o = base();
    o.upsert(Object::ConfigMap(Arc::new(
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: meta("ingress-nginx", "ingress-nginx-controller"),
            ..Default::default()
        },
    )));
    let s = run(&o);
    let unused: Vec<_> = (s.diagnostics.iter())
        .filter(|d| d.reason == "ConfigMapNotUsed")
        .collect();
    assert_eq!(unused.len(), 1, "{:?}", s.diagnostics);
    assert!(
        unused[0]
            .message
            .contains("--configmap ingress-nginx/ingress-nginx-controller")
    );
    // Named by the flag, it is read and nothing is said.
    let config = TranslateConfig {
        configmap: Some(crate::store::Key::new(
            "ingress-nginx",
            "ingress-nginx-controller",
        )),
        ..mk_config()
    };
    assert!(translate(&o, &config).diagnostics.is_empty());
}

/// `--ingress-class nginx` beside ingress-nginx's IngressClass `nginx` serves nothing of that
/// class, which the flag never asked for: a Warning on the IngressClass names the flag that
/// would (found by a fresh-user trial: a Helm-rendered directory served no host, silently).
#[test]
fn a_flag_class_owned_by_another_controller_is_reported() {
    let config = TranslateConfig {
        ingress_class: "nginx".into(),
        ..mk_config()
    };
    let mut o = base();
    o.upsert(mk_class("nginx", "k8s.io/ingress-nginx", false));
    let s = translate(&o, &config);
    let d: Vec<_> = (s.diagnostics.iter())
        .filter(|d| d.reason == "IngressClassNotOurs")
        .collect();
    assert_eq!(d.len(), 1, "{:?}", s.diagnostics);
    assert_eq!(d[0].object.name, "nginx");
    assert!(
        d[0].message
            .contains("--controller-name k8s.io/ingress-nginx"),
        "{}",
        d[0].message
    );
    // Ours, or another class name: nothing to say.
    let ours = translate(&o, &mk_config());
    assert!(
        ours.diagnostics
            .iter()
            .all(|d| d.reason != "IngressClassNotOurs")
    );
    o.upsert(mk_class("nginx", &mk_config().controller_name, false));
    let s = translate(&o, &config);
    assert!(
        s.diagnostics
            .iter()
            .all(|d| d.reason != "IngressClassNotOurs")
    );
}

/// `enable-access-log: "false"` (nginx.tmpl's `access_log off` in the location) marks the
/// Ingress's routes; anything else, or no annotation, keeps them logged.
#[test]
fn enable_access_log_false_marks_the_routes() {
    for (value, off) in [(Some("false"), true), (Some("true"), false), (None, false)] {
        let mut o = base();
        let mut i = mk_ingress(
            "default",
            "quiet",
            1,
            vec![("q.example.com", vec![("/", "Prefix", "web", "http")])],
        );
        if let Some(v) = value {
            i = with_annotation(i, "nginx.ingress.kubernetes.io/enable-access-log", v);
        }
        o.upsert(ing(i));
        let s = run(&o);
        let r = &s.l7.hosts["q.example.com"].routes[0];
        assert_eq!(r.policy.no_access_log, off, "{value:?}");
    }
}

/// `strict-validate-path-type` (default true, ingress-nginx 1.12): an Ingress with a Prefix or
/// Exact path of other characters than `validPathType`'s is refused as a whole, as the
/// admission webhook refuses it, with the webhook's message; other Ingresses of the host serve
/// on. `false` serves it. Deep inspection refuses an nginx directive in a path either way.
#[test]
fn strict_path_type_and_deep_inspection_refuse_the_whole_ingress() {
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "good",
        1,
        vec![("h.example.com", vec![("/good", "Prefix", "web", "80")])],
    )));
    o.upsert(ing(mk_ingress(
        "default",
        "regexy",
        2,
        vec![(
            "h.example.com",
            vec![
                ("/ok", "Prefix", "web", "80"),
                ("/v1(/|$)(.*)", "Prefix", "web", "80"),
                ("/re(.*)", "ImplementationSpecific", "web", "80"),
            ],
        )],
    )));
    o.upsert(ing(mk_ingress(
        "default",
        "lua",
        3,
        vec![(
            "l.example.com",
            vec![(
                "/x{content_by_lua_block{}}",
                "ImplementationSpecific",
                "web",
                "80",
            )],
        )],
    )));
    let s = run(&o);
    assert_eq!(
        routes(&s.l7.hosts["h.example.com"]),
        [(PathMatch::Prefix("/good".into()), "default/web:80".into())]
    );
    assert!(!s.l7.hosts.contains_key("l.example.com"));
    let errors: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::model::Severity::Error)
        .map(|d| {
            (
                d.object.name.as_str(),
                d.reason.as_str(),
                d.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (
                "lua",
                "InvalidIngressValue",
                "received invalid ingress: invalid http path: invalid value found: /x{content_by_lua_block{}}; \
                 the Ingress is not served"
            ),
            (
                "regexy",
                "InvalidPathForPathType",
                "ingress contains invalid paths: path /v1(/|$)(.*) cannot be used with pathType Prefix \
                 (strict-validate-path-type: use pathType ImplementationSpecific); the Ingress is not served"
            ),
        ]
    );

    let cfg = with_controller_configmap(&mut o, &[("strict-validate-path-type", "false")]);
    let s = translate(&o, &cfg);
    assert_eq!(routes(&s.l7.hosts["h.example.com"]).len(), 4);
    assert!(!s.l7.hosts.contains_key("l.example.com"));
}

/// `allow-cross-namespace-resources` (default false): every annotation naming a Secret or
/// ConfigMap of another namespace is refused (ingress-nginx's `auth`, `authreq`, `authtls`,
/// `proxyssl` parsers deny the location); `true` lets each look there (here: not found, as the
/// objects do not exist — the namespace is no longer the reason).
#[test]
fn cross_namespace_references_need_allow_cross_namespace_resources() {
    let mut o = base();
    let cases = [
        (
            "basic",
            &[("auth-type", "basic"), ("auth-secret", "vault/htpasswd")][..],
        ),
        ("tls", &[("auth-tls-secret", "vault/ca")][..]),
        ("pssl", &[("proxy-ssl-secret", "vault/ps")][..]),
        (
            "hdrs",
            &[
                ("auth-url", "http://auth.example/check"),
                ("auth-proxy-set-headers", "vault/hdrs"),
            ][..],
        ),
        ("custom", &[("custom-headers", "vault/hdrs")][..]),
    ];
    for (i, (name, annotations)) in cases.iter().enumerate() {
        let mut ingress = mk_ingress(
            "default",
            name,
            i as i64 + 1,
            vec![(&format!("{name}.test"), vec![("/", "Prefix", "web", "80")])],
        );
        for (k, v) in *annotations {
            ingress = with_annotation(ingress, &format!("nginx.ingress.kubernetes.io/{k}"), v);
        }
        o.upsert(ing(ingress));
    }
    let cross = [
        ("basic", "CrossNamespaceAuthSecret"),
        ("custom", "CustomHeadersRefused"),
        ("hdrs", "AuthProxySetHeadersRefused"),
        ("pssl", "CrossNamespaceProxySslSecret"),
        ("tls", "CrossNamespaceAuthTlsSecret"),
    ];
    let s = run(&o);
    let mut r = reasons(&s);
    r.sort();
    assert_eq!(
        r,
        cross.map(|(n, reason)| (n.to_string(), reason.to_string()))
    );
    assert!(
        s.diagnostics
            .iter()
            .all(|d| d.message.contains("allow-cross-namespace-resources")),
        "{:?}",
        s.diagnostics
    );

    let cfg = with_controller_configmap(&mut o, &[("allow-cross-namespace-resources", "true")]);
    let s = translate(&o, &cfg);
    let mut r: Vec<_> = s
        .diagnostics
        .iter()
        .map(|d| (d.object.name.as_str(), d.message.contains("vault/")))
        .collect();
    r.sort();
    // Each now looks the object up in `vault`.
    assert_eq!(
        r,
        [
            ("basic", true),
            ("custom", true),
            ("hdrs", true),
            ("pssl", true),
            ("tls", true)
        ],
        "{:?}",
        s.diagnostics
    );
    assert!(
        s.diagnostics
            .iter()
            .all(|d| !d.message.contains("allow-cross-namespace-resources")),
        "{:?}",
        s.diagnostics
    );
}
