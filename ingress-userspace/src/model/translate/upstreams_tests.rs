//! Translation of ingress-nginx's upstream annotations and ConfigMap keys: `service-upstream`
//! and `proxy-next-upstream*`. Expected values from ingress-nginx's annotations reference
//! ("Service Upstream", "Custom timeouts"), `configmap.md` and its controller
//! (`getServiceClusterEndpoint`, `buildNextUpstream`).

use std::{collections::HashSet, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ConfigMap;

use super::{fixtures::*, *};
use crate::{
    model::{NextUpstream, RetryOn, RouteAction, Severity, Snapshot, Upstream},
    store::{Change, Key, Objects, Store},
};

const N: &str = "nginx.ingress.kubernetes.io/";

/// Services `web` and `api` (port 80 -> 8080, one pod each) with ClusterIPs 10.96.0.10 and
/// 10.96.0.11.
fn base() -> Objects {
    let mut o = services_with_one_pod(&["web", "api"]);
    for (name, ip) in [("web", "10.96.0.10"), ("api", "10.96.0.11")] {
        set_cluster_ip(&mut o, name, ip);
    }
    // The ConfigMap `run` names, empty until a test fills it (a missing one is reported).
    o.upsert(configmap(&[]));
    o
}

fn set_cluster_ip(o: &mut Objects, name: &str, ip: &str) {
    let key = Key::new("default", name);
    let mut s = (**o.services.get(&key).expect("service")).clone();
    s.spec.get_or_insert_default().cluster_ip = Some(ip.into());
    o.upsert(svc(s));
}

fn ingress(name: &str, host: &str, service: &str, annotations: &[(&str, &str)]) -> Object {
    let mut i = mk_ingress(
        "default",
        name,
        1,
        vec![(host, vec![("/", "Prefix", service, "80")])],
    );
    for (k, v) in annotations {
        i = with_annotation(i, &format!("{N}{k}"), v);
    }
    ing(i)
}

fn configmap(data: &[(&str, &str)]) -> Object {
    Object::ConfigMap(Arc::new(ConfigMap {
        metadata: meta("ingress-nginx", "cm"),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }))
}

fn run(o: &Objects) -> Snapshot {
    translate(
        o,
        &TranslateConfig {
            configmap: Some(Key::new("ingress-nginx", "cm")),
            ..mk_config()
        },
    )
}

/// The one upstream of the first route of `host`.
fn upstream(s: &Snapshot, host: &str) -> Arc<Upstream> {
    match &s.l7.hosts[host].routes[0].action {
        RouteAction::Forward(ups) => ups[0].upstream.clone(),
        other => panic!("{other:?}"),
    }
}

fn addrs(u: &Upstream) -> Vec<String> {
    u.endpoints.iter().map(|e| e.addr.to_string()).collect()
}

fn reasons(s: &Snapshot) -> Vec<(&str, Severity)> {
    s.diagnostics
        .iter()
        .map(|d| (d.reason.as_str(), d.severity))
        .collect()
}

#[test]
fn service_upstream_makes_the_cluster_ip_the_one_endpoint() {
    let mut o = base();
    // The same Service without the annotation keeps its endpoints, whichever comes first.
    o.upsert(ingress("plain", "plain.test", "web", &[]));
    o.upsert(ingress(
        "cip",
        "cip.test",
        "web",
        &[("service-upstream", "true")],
    ));
    o.upsert(ingress("after", "after.test", "web", &[]));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let cip = upstream(&s, "cip.test");
    assert_eq!(addrs(&cip), ["10.96.0.10:80"], "ClusterIP and Service port");
    assert!(cip.service_upstream);
    assert_eq!(cip.id, "cluster-ip:default/web:80");
    for host in ["plain.test", "after.test"] {
        let u = upstream(&s, host);
        assert_eq!(addrs(&u), ["198.19.0.2:8080"], "{host}");
        assert!(!u.service_upstream);
        assert_eq!(u.id, "default/web:80");
    }
    // A port named in the Ingress is the Service port it names.
    let mut named = mk_ingress(
        "default",
        "named",
        1,
        vec![("named.test", vec![("/", "Prefix", "api", "http")])],
    );
    named = with_annotation(named, &format!("{N}service-upstream"), "true");
    o.upsert(ing(named));
    assert_eq!(addrs(&upstream(&run(&o), "named.test")), ["10.96.0.11:80"]);
}

#[test]
fn headless_services_warn_and_keep_their_endpoints() {
    let mut o = base();
    set_cluster_ip(&mut o, "web", "None");
    o.upsert(ingress(
        "cip",
        "cip.test",
        "web",
        &[("service-upstream", "true")],
    ));
    let s = run(&o);
    assert_eq!(
        reasons(&s),
        [("ServiceUpstreamWithoutClusterIP", Severity::Warning)]
    );
    assert!(s.diagnostics[0].message.contains("headless"));
    let u = upstream(&s, "cip.test");
    assert_eq!(addrs(&u), ["198.19.0.2:8080"]);
    assert!(!u.service_upstream);
}

/// A clusterIP is an address the proxy connects to, so it passes the guard an EndpointSlice
/// address passes (`node_local`): loopback, link-local and the node's own addresses are
/// refused with an Error on the Service and the backend gets no endpoint (503), unless
/// `--allow-node-local-endpoints` (which never accepts link-local).
#[test]
fn node_local_cluster_ips_are_refused_as_endpoints_are() {
    for (ip, kind) in [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("198.51.100.7", "an address of this node"),
    ] {
        let mut o = base();
        set_cluster_ip(&mut o, "web", ip);
        o.upsert(ingress(
            "cip",
            "cip.test",
            "web",
            &[("service-upstream", "true")],
        ));
        let cfg = TranslateConfig {
            configmap: Some(Key::new("ingress-nginx", "cm")),
            node_addresses: vec!["198.51.100.7".parse().unwrap()],
            ..mk_config()
        };
        let s = translate(&o, &cfg);
        assert_eq!(
            reasons(&s),
            [(super::endpoints::REFUSED_REASON, Severity::Error)],
            "{ip}"
        );
        let d = &s.diagnostics[0];
        assert_eq!(d.object.kind, crate::model::ObjectKind::Service);
        assert!(d.message.contains(kind), "{ip}: {}", d.message);
        let u = upstream(&s, "cip.test");
        assert!(addrs(&u).is_empty(), "{ip}: {:?}", addrs(&u));
        assert!(u.service_upstream);
        // The opt-in accepts loopback and node addresses, never link-local.
        let s = translate(
            &o,
            &TranslateConfig {
                allow_node_local_endpoints: true,
                ..cfg
            },
        );
        let served = !addrs(&upstream(&s, "cip.test")).is_empty();
        assert_eq!(served, kind != "link-local", "{ip}");
    }
}

#[test]
fn service_upstream_drops_affinity_with_a_warning() {
    let mut o = base();
    o.upsert(ingress(
        "cip",
        "cip.test",
        "web",
        &[("service-upstream", "true"), ("affinity", "cookie")],
    ));
    let s = run(&o);
    assert_eq!(
        reasons(&s),
        [("ServiceUpstreamIgnoresAffinity", Severity::Warning)]
    );
    let u = upstream(&s, "cip.test");
    assert_eq!(u.affinity, None);
    assert_eq!(addrs(&u), ["10.96.0.10:80"]);
}

#[test]
fn configmap_service_upstream_is_the_default_and_the_annotation_wins() {
    let mut o = base();
    o.upsert(configmap(&[("service-upstream", "true")]));
    o.upsert(ingress("cip", "cip.test", "web", &[]));
    o.upsert(ingress(
        "pods",
        "pods.test",
        "api",
        &[("service-upstream", "false")],
    ));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    assert_eq!(addrs(&upstream(&s, "cip.test")), ["10.96.0.10:80"]);
    assert_eq!(addrs(&upstream(&s, "pods.test")), ["198.19.1.2:8080"]);
}

#[test]
fn endpoint_changes_leave_the_cluster_ip_as_a_full_translation_does() {
    let mut o = base();
    o.upsert(ingress(
        "cip",
        "cip.test",
        "web",
        &[("service-upstream", "true")],
    ));
    o.upsert(ingress("pods", "pods.test", "web", &[]));
    let mut t = Translator::new(mk_config());
    t.translate_shared(&o, None);
    let change = Change::Upsert(mk_slice(
        "default",
        "web-abc",
        "web",
        "IPv4",
        &[(Some("http"), 8080)],
        &[("198.19.9.2", Some(true), None, None)],
    ));
    let touched: HashSet<Key> = Translator::slice_services(&o, &change)
        .expect("slice-only change")
        .into_iter()
        .collect();
    let mut layer = Store::new();
    layer.apply(
        crate::store::SourceId::Other,
        Change::ReplaceAll(Box::new(o.clone())),
    );
    layer.apply(crate::store::SourceId::Other, change);
    let o = layer.view().into_owned();
    let fast = t.translate_shared(&o, Some(&touched));
    assert_eq!(addrs(&upstream(&fast, "cip.test")), ["10.96.0.10:80"]);
    assert_eq!(addrs(&upstream(&fast, "pods.test")), ["198.19.9.2:8080"]);
    let full = translate(&o, &mk_config());
    assert_eq!(format!("{:?}", fast.l7), format!("{:?}", full.l7));
}

fn next_upstream(s: &Snapshot, host: &str) -> NextUpstream {
    s.l7.hosts[host].routes[0].policy.next_upstream.clone()
}

#[test]
fn next_upstream_annotations_land_in_the_route_policy() {
    let mut o = base();
    o.upsert(ingress(
        "a",
        "a.test",
        "web",
        &[
            ("proxy-next-upstream", "error http_503 non_idempotent"),
            ("proxy-next-upstream-tries", "1"),
            ("proxy-next-upstream-timeout", "5"),
        ],
    ));
    o.upsert(ingress("b", "b.test", "api", &[]));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let n = next_upstream(&s, "a.test");
    assert_eq!(
        n.when.as_ref().map(RetryOn::to_nginx).as_deref(),
        Some("error http_503 non_idempotent")
    );
    assert_eq!(n.tries, Some(1));
    assert_eq!(n.timeout, Some(Duration::from_secs(5)));
    assert_eq!(next_upstream(&s, "b.test"), NextUpstream::default());
}

#[test]
fn configmap_next_upstream_keys_are_defaults_each_annotation_wins_on_its_own() {
    let mut o = base();
    o.upsert(configmap(&[
        ("proxy-next-upstream", "error timeout http_502"),
        ("proxy-next-upstream-tries", "5"),
        ("proxy-next-upstream-timeout", "10"),
    ]));
    o.upsert(ingress(
        "a",
        "a.test",
        "web",
        &[("proxy-next-upstream", "off")],
    ));
    o.upsert(ingress("b", "b.test", "api", &[]));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let a = next_upstream(&s, "a.test");
    assert_eq!(a.when, Some(RetryOn::OFF));
    assert_eq!(
        (a.tries, a.timeout),
        (Some(5), Some(Duration::from_secs(10)))
    );
    let b = next_upstream(&s, "b.test");
    assert_eq!(
        b.when.as_ref().map(RetryOn::to_nginx).as_deref(),
        Some("error timeout http_502")
    );
}

#[test]
fn retry_non_idempotent_adds_non_idempotent_to_every_route() {
    let mut o = base();
    o.upsert(configmap(&[("retry-non-idempotent", "true")]));
    o.upsert(ingress(
        "a",
        "a.test",
        "web",
        &[("proxy-next-upstream", "http_503")],
    ));
    o.upsert(ingress("b", "b.test", "api", &[]));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let when = |h| next_upstream(&s, h).when.map(|w| w.to_nginx());
    assert_eq!(when("a.test").as_deref(), Some("http_503 non_idempotent"));
    assert_eq!(
        when("b.test").as_deref(),
        Some("error timeout non_idempotent")
    );
}

#[test]
fn bad_next_upstream_values_warn_and_keep_the_defaults() {
    let mut o = base();
    o.upsert(configmap(&[("proxy-next-upstream-tries", "many")]));
    o.upsert(ingress(
        "a",
        "a.test",
        "web",
        &[
            ("proxy-next-upstream", "error http_501"),
            ("proxy-next-upstream-timeout", "soon"),
            ("service-upstream", "yes"),
        ],
    ));
    let s = run(&o);
    let mut got: Vec<(String, &str)> = s
        .diagnostics
        .iter()
        .map(|d| {
            assert_eq!(d.severity, Severity::Warning);
            let key = d.message.split(':').next().unwrap_or_default().to_string();
            (key, d.reason.as_str())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("annotation proxy-next-upstream".into(), "InvalidAnnotation"),
            (
                "annotation proxy-next-upstream-timeout".into(),
                "InvalidAnnotation"
            ),
            ("annotation service-upstream".into(), "InvalidAnnotation"),
            (
                "key proxy-next-upstream-tries".into(),
                "InvalidConfigMapValue"
            ),
        ]
    );
    assert_eq!(next_upstream(&s, "a.test"), NextUpstream::default());
    assert!(!upstream(&s, "a.test").service_upstream);
    // The Ingress is still served.
    assert_eq!(addrs(&upstream(&s, "a.test")), ["198.19.0.2:8080"]);
}

/// A route whose Service does not exist, served by its `default-backend`: its upstream id is
/// made by the one id function from the port as the Ingress writes it (a name stays a name),
/// so the error page's `X-Service-Port` reads `http` or `80` (nginx.tmpl `$service_port`), and
/// a numbered port's id is the one an existing Service's port gets.
#[test]
fn a_missing_service_is_named_with_its_written_port() {
    for (port, id) in [("http", "default/gone:http"), ("80", "default/gone:80")] {
        let mut o = base();
        let mut i = mk_ingress(
            "default",
            "app",
            1,
            vec![("a.test", vec![("/", "Prefix", "gone", port)])],
        );
        i = with_annotation(i, &format!("{N}default-backend"), "web");
        o.upsert(ing(i));
        let s = run(&o);
        let u = upstream(&s, "a.test");
        assert_eq!(u.id, id);
        assert!(u.endpoints.is_empty());
    }
    assert_eq!(
        service_upstream::upstream_id(&Key::new("default", "gone"), 80, false),
        "default/gone:80"
    );
}
