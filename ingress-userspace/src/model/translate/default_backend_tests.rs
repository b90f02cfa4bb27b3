//! The default server, hosts' root locations and `--default-backend-service`, as
//! ingress-nginx's `createServers` and `getDefaultUpstream` make them
//! (internal/ingress/controller/controller.go).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{TranslateConfig, fixtures::*, translate};
use crate::{
    model::{PathMatch, RouteAction, Severity, Snapshot, VirtualHost},
    store::{Key, Object, Objects},
};

const ANN: &str = "nginx.ingress.kubernetes.io/";

/// `web`, `api`, `catch` and `fallback` (ClusterIP, port 80, one ready pod each).
fn world() -> Objects {
    services_with_one_pod(&["web", "api", "catch", "fallback"])
}

/// Ingress `name` (created at `created`) with `rules`, and `spec.defaultBackend` when given.
fn ingress(
    name: &str,
    created: i64,
    rules: Vec<RuleSpec>,
    default_backend: Option<&str>,
    annotations: &[(&str, &str)],
) -> Object {
    let mut i = mk_ingress("default", name, created, rules);
    i.spec.as_mut().unwrap().default_backend = default_backend.map(|s| Box::new(backend(s, "80")));
    for (k, v) in annotations {
        i = with_annotation(i, &format!("{ANN}{k}"), v);
    }
    ing(i)
}

fn catch_all(name: &str, created: i64) -> Object {
    ingress(name, created, vec![], Some("catch"), &[])
}

fn snapshot(objects: Vec<Object>) -> Snapshot {
    let mut o = world();
    for i in objects {
        o.upsert(i);
    }
    translate(&o, &mk_config())
}

/// `(path, what serves it)` of each route: a Service name, `root` (the controller's default
/// backend) or a status.
fn routes(vh: &VirtualHost) -> Vec<(PathMatch, String)> {
    vh.routes
        .iter()
        .map(|r| {
            let to = match &r.action {
                RouteAction::Forward(u) => u[0].upstream.service.name.clone(),
                RouteAction::Respond { status, .. } => status.to_string(),
                RouteAction::DefaultBackend => "root".into(),
            };
            (r.matches.path.clone(), to)
        })
        .collect()
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

fn reasons(s: &Snapshot) -> Vec<(String, String)> {
    s.diagnostics
        .iter()
        .map(|d| (d.object.name.clone(), d.reason.clone()))
        .collect()
}

/// The catch-all Ingress is the default server's root location only: a named host's
/// unmatched paths do not reach it (the host has no `/` route; the proxy sends them to the
/// controller's default backend or the built-in 404).
#[test]
fn a_catch_all_ingress_answers_the_default_server_only() {
    let s = snapshot(vec![
        catch_all("catch-all", 1),
        ingress(
            "app",
            2,
            vec![("a.test", vec![("/app", "Prefix", "web", "80")])],
            None,
            &[],
        ),
    ]);
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(prefix("/"), "catch".into())]
    );
    assert_eq!(
        routes(&s.l7.hosts["a.test"]),
        [(prefix("/app"), "web".into())]
    );
    assert!(s.l7.default_backend.is_none());
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
}

/// The oldest catch-all wins; a newer one gets a Warning.
#[test]
fn the_oldest_catch_all_ingress_wins() {
    let mut newer = ingress("newer", 2, vec![], Some("api"), &[]);
    let s = snapshot(vec![newer.clone(), catch_all("older", 1)]);
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(prefix("/"), "catch".into())]
    );
    assert_eq!(
        reasons(&s),
        [("newer".into(), "DefaultBackendConflict".into())]
    );
    // A resource backend is no catch-all (ingress-nginx: `DefaultBackend.Service != nil`).
    if let Object::Ingress(i) = &mut newer {
        let i = std::sync::Arc::make_mut(i);
        i.spec
            .as_mut()
            .unwrap()
            .default_backend
            .as_mut()
            .unwrap()
            .service = None;
    }
    assert!(snapshot(vec![newer]).l7.any_host.is_none());
}

/// A host an Ingress rule names without paths is a server of its own: its requests get its
/// root location (the controller's default backend), not the catch-all Ingress.
#[test]
fn a_host_without_paths_is_not_the_catch_alls() {
    let s = snapshot(vec![
        catch_all("catch-all", 1),
        ingress("bare", 2, vec![("bare.test", vec![])], None, &[]),
    ]);
    assert_eq!(
        routes(&s.l7.hosts["bare.test"]),
        [(prefix("/"), "root".into())]
    );
    // With its own `spec.defaultBackend` (ingress-nginx e2e ingress/without_host.go "only
    // Backend"): that backend, and other names still get the catch-all.
    let s = snapshot(vec![
        catch_all("catch-all", 1),
        ingress("bare", 2, vec![("bare.test", vec![])], Some("api"), &[]),
    ]);
    assert_eq!(
        routes(&s.l7.hosts["bare.test"]),
        [(prefix("/"), "api".into())]
    );
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(prefix("/"), "catch".into())]
    );
}

/// The catch-all's annotations apply to the default server's root location, except its
/// redirects and rewrites (`ssl-redirect`, `force-ssl-redirect` among them).
#[test]
fn the_catch_alls_annotations_apply_but_redirects_and_rewrites() {
    let s = snapshot(vec![ingress(
        "catch-all",
        1,
        vec![],
        Some("catch"),
        &[
            ("allowlist-source-range", "10.0.0.0/8"),
            ("custom-http-errors", "404"),
            ("default-backend", "fallback"),
            ("permanent-redirect", "https://example.com"),
            ("rewrite-target", "/x"),
            ("force-ssl-redirect", "true"),
            ("upstream-vhost", "inner.test"),
        ],
    )]);
    let root = s.l7.any_host.as_ref().unwrap().routes.last().unwrap();
    let p = &root.policy;
    assert_eq!(p.allow_source_ranges.len(), 1);
    assert_eq!(p.rewrite.upstream_vhost.as_deref(), Some("inner.test"));
    assert!(p.redirect.is_none());
    assert!(p.rewrite.target.is_none());
    assert!(!p.redirects_to_https(true));
    let errors = root.errors.as_ref().unwrap();
    assert_eq!(errors.intercept, [404]);
    assert_eq!(
        errors.default_backend.as_ref().unwrap().service.name,
        "fallback"
    );
}

/// Rules without a host: the default server exists already, so their Ingress's
/// `spec.defaultBackend` does not become its root location; the catch-all does, even over a
/// `Prefix /` of such a rule (ingress-nginx: "already configured").
#[test]
fn rules_without_a_host_do_not_set_the_default_servers_root() {
    let hostless = ingress(
        "hostless",
        1,
        vec![("", vec![("/app", "Prefix", "web", "80")])],
        Some("api"),
        &[],
    );
    let s = snapshot(vec![hostless.clone()]);
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(prefix("/app"), "web".into())]
    );
    let s = snapshot(vec![hostless, catch_all("catch-all", 2)]);
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [
            (prefix("/app"), "web".into()),
            (prefix("/"), "catch".into())
        ]
    );
    let slash = ingress(
        "slash",
        1,
        vec![("", vec![("/", "Prefix", "web", "80")])],
        None,
        &[],
    );
    let s = snapshot(vec![slash, catch_all("catch-all", 2)]);
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(prefix("/"), "catch".into())]
    );
    assert_eq!(reasons(&s), [("slash".into(), "RouteConflict".into())]);
}

/// A host's root location comes from the first (oldest) Ingress naming it: a newer Ingress's
/// `spec.defaultBackend` does not catch the host's unmatched paths; the older one's does.
#[test]
fn only_the_first_ingress_of_a_host_sets_its_root() {
    let older = ingress(
        "older",
        1,
        vec![("a.test", vec![("/app", "Exact", "web", "80")])],
        None,
        &[],
    );
    let newer = ingress(
        "newer",
        2,
        vec![("a.test", vec![("/b", "Exact", "web", "80")])],
        Some("api"),
        &[],
    );
    let s = snapshot(vec![older, newer]);
    assert_eq!(
        routes(&s.l7.hosts["a.test"]),
        [(exact("/app"), "web".into()), (exact("/b"), "web".into())]
    );
    let older = ingress(
        "older",
        1,
        vec![("a.test", vec![("/app", "Exact", "web", "80")])],
        Some("api"),
        &[],
    );
    let newer = ingress(
        "newer",
        2,
        vec![("a.test", vec![("/b", "Exact", "web", "80")])],
        Some("catch"),
        &[],
    );
    let s = snapshot(vec![older, newer]);
    assert_eq!(
        routes(&s.l7.hosts["a.test"]),
        [
            (exact("/app"), "web".into()),
            (exact("/b"), "web".into()),
            (prefix("/"), "api".into())
        ]
    );
    // Its own rules' other hosts, which it names first, get it.
    let s = snapshot(vec![ingress(
        "two-hosts",
        1,
        vec![
            ("a.test", vec![("/app", "Exact", "web", "80")]),
            ("b.test", vec![("/app", "Exact", "web", "80")]),
        ],
        Some("api"),
        &[],
    )]);
    for h in ["a.test", "b.test"] {
        assert_eq!(
            routes(&s.l7.hosts[h]).last().unwrap(),
            &(prefix("/"), "api".into())
        );
    }
}

fn with_flag(objects: &Objects, service: &str) -> Snapshot {
    let config = TranslateConfig {
        default_backend_service: Some(Key::new("default", service)),
        ..mk_config()
    };
    translate(objects, &config)
}

/// `--default-backend-service`: the first port of the Service, its ready endpoints.
#[test]
fn the_default_backend_service_is_the_controllers_default_backend() {
    let mut o = world();
    let service = mk_service(
        "default",
        "fallback",
        "ClusterIP",
        vec![
            mk_port(Some("http"), 80, IntOrString::Int(8080)),
            mk_port(Some("other"), 81, IntOrString::Int(8081)),
        ],
    );
    o.upsert(svc(service));
    let s = with_flag(&o, "fallback");
    let d = s.l7.default_backend.as_ref().unwrap();
    assert_eq!(d.id, "default/fallback:80");
    assert_eq!(d.endpoints.len(), 1);
    assert_eq!(d.endpoints[0].addr.port(), 8080);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    // A catch-all Ingress still takes the default server; the flag's backend the rest.
    o.upsert(catch_all("catch-all", 1));
    let s = with_flag(&o, "fallback");
    assert!(s.l7.default_backend.is_some());
    assert_eq!(
        routes(s.l7.any_host.as_ref().unwrap()),
        [(prefix("/"), "catch".into())]
    );
}

/// Without the Service, or without a ready endpoint: the built-in 404, with a Warning on the
/// Service (ingress-nginx: a warning and its built-in default backend).
#[test]
fn a_default_backend_service_without_endpoints_is_the_built_in_404() {
    let mut o = world();
    let s = with_flag(&o, "missing");
    assert!(s.l7.default_backend.is_none());
    let d = &s.diagnostics[0];
    assert_eq!(
        (d.object.name.as_str(), d.reason.as_str(), d.severity),
        (
            "missing",
            "DefaultBackendServiceNotFound",
            Severity::Warning
        )
    );
    o.upsert(mk_slice(
        "default",
        "fallback-abc",
        "fallback",
        "IPv4",
        &[(Some("http"), 8080)],
        &[("198.19.3.2", Some(false), None, None)],
    ));
    let s = with_flag(&o, "fallback");
    assert!(s.l7.default_backend.is_none());
    assert_eq!(
        reasons(&s),
        [("fallback".into(), "DefaultBackendWithoutEndpoints".into())]
    );
}
