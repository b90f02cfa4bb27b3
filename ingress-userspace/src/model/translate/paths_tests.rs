//! Translation of ingress-nginx's path, rewrite and host annotations and of compatibility
//! mode, across Ingresses sharing a host. Expected values from ingress-nginx's
//! user-guide/ingress-path-matching.md and the Kubernetes blog post "Before you migrate: five
//! surprising Ingress-NGINX behaviors" (2026-02-27).

use super::{fixtures::*, *};
use crate::{
    model::{PathMatch, RedirectTo, Snapshot, VirtualHost},
    store::Objects,
};

fn base() -> Objects {
    services_with_one_pod(&["service1", "service2", "service3"])
}

fn in_class(mut i: Ingress, class: &str) -> Ingress {
    if let Some(s) = i.spec.as_mut() {
        s.ingress_class_name = Some(class.into());
    }
    i
}
use crate::compact::ingress::Ingress;

fn run(o: &Objects) -> Snapshot {
    let cfg = TranslateConfig {
        ingress_class: "nginx".into(),
        ..mk_config()
    };
    translate(o, &cfg)
}

/// `(path, service or redirect)` of each route, in order.
fn routes(vh: &VirtualHost) -> Vec<(String, String)> {
    vh.routes
        .iter()
        .map(|r| {
            let p = match &r.matches.path {
                PathMatch::Exact(p) => format!("= {p}"),
                PathMatch::Prefix(p) => format!("prefix {p}"),
                PathMatch::CharPrefix(p) => format!("chars {p}"),
                PathMatch::Regex(p) => format!("~* {p}"),
                PathMatch::FullRegex(p) => format!("~ ^{p}$"),
            };
            let to = match (&r.policy.redirect, &r.action) {
                (Some(rd), _) => format!("{} {:?}", rd.status, rd.to),
                (None, crate::model::RouteAction::Forward(u)) => u[0].upstream.service.name.clone(),
                (None, crate::model::RouteAction::Respond { status, .. }) => status.to_string(),
                (None, crate::model::RouteAction::DefaultBackend) => "root location".into(),
            };
            (p, to)
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn path_priority_example_of_the_path_matching_guide() {
    // ingress-path-matching.md, "Path Priority": test-ingress-1 (Prefix /foo/bar, /foo/bar/)
    // and test-ingress-2 (rewrite-target: /$1, ImplementationSpecific /foo/bar/(.+)) give
    // `location ~* ^/foo/bar/.+`, `~* "^/foo/bar/"`, `~* "^/foo/bar"`, in that order.
    let mut o = base();
    o.upsert(ing(in_class(
        mk_ingress(
            "default",
            "test-ingress-1",
            1,
            vec![(
                "test.com",
                vec![
                    ("/foo/bar", "Prefix", "service1", "80"),
                    ("/foo/bar/", "Prefix", "service2", "80"),
                ],
            )],
        ),
        "nginx",
    )));
    o.upsert(ing(with_annotation(
        in_class(
            mk_ingress(
                "default",
                "test-ingress-2",
                2,
                vec![(
                    "test.com",
                    vec![("/foo/bar/(.+)", "ImplementationSpecific", "service3", "80")],
                )],
            ),
            "nginx",
        ),
        "nginx.ingress.kubernetes.io/rewrite-target",
        "/$1",
    )));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    assert_eq!(
        routes(&s.l7.hosts["test.com"]),
        pairs(&[
            ("~* /foo/bar/(.+)", "service3"),
            ("~* /foo/bar/", "service2"),
            ("~* /foo/bar", "service1"),
        ])
    );
}

#[test]
fn a_rewrite_target_equal_to_the_path_rewrites_nothing_and_keeps_prefix_matching() {
    // ingress-nginx's needsRewrite (template.go): `rewrite-target: /` on path `/` is no
    // rewrite, so it does not turn the host's paths into regexes: `= /foo` stays exact and
    // `/FOO`, `/foobar` go to `/`. On another path of the same Ingress it does rewrite.
    let mut o = base();
    o.upsert(ing(with_annotation(
        in_class(
            mk_ingress(
                "default",
                "same-a",
                1,
                vec![("same.test", vec![("/", "Prefix", "service1", "80")])],
            ),
            "nginx",
        ),
        "nginx.ingress.kubernetes.io/rewrite-target",
        "/",
    )));
    o.upsert(ing(in_class(
        mk_ingress(
            "default",
            "same-b",
            2,
            vec![("same.test", vec![("/foo", "Exact", "service2", "80")])],
        ),
        "nginx",
    )));
    let s = run(&o);
    let vh = &s.l7.hosts["same.test"];
    assert_eq!(
        routes(vh),
        pairs(&[("= /foo", "service2"), ("prefix /", "service1")])
    );
    assert!(vh.routes.iter().all(|r| r.policy.rewrite.target.is_none()));

    // The same annotation on an Ingress with a second path: that path is rewritten (and
    // the host's paths become regexes), `/` still is not.
    let mut o = base();
    o.upsert(ing(with_annotation(
        in_class(
            mk_ingress(
                "default",
                "two",
                1,
                vec![(
                    "two.test",
                    vec![
                        ("/", "Prefix", "service1", "80"),
                        ("/api", "Prefix", "service2", "80"),
                    ],
                )],
            ),
            "nginx",
        ),
        "nginx.ingress.kubernetes.io/rewrite-target",
        "/",
    )));
    let s = run(&o);
    let vh = &s.l7.hosts["two.test"];
    assert_eq!(
        routes(vh),
        pairs(&[("~* /api", "service2"), ("~* /", "service1")])
    );
    let targets: Vec<_> = vh
        .routes
        .iter()
        .map(|r| r.policy.rewrite.target.as_deref())
        .collect();
    assert_eq!(targets, [Some("/"), None]);
}

#[test]
fn trailing_slash_redirect_only_in_compatible_classes() {
    // The blog's trailing-slash section: Exact and Prefix paths `/my-path/` redirect `/my-path`
    // with a 301; a path written without the slash on the host stops it (nginx then has a
    // location for it).
    let mk = |class: &str| {
        let mut o = base();
        o.upsert(ing(in_class(
            mk_ingress(
                "default",
                "slash",
                1,
                vec![(
                    "trailing.example.com",
                    vec![
                        ("/my-path/", "Prefix", "service1", "80"),
                        ("/exact/", "Exact", "service2", "80"),
                        ("/both/", "Prefix", "service1", "80"),
                        ("/both", "Exact", "service2", "80"),
                    ],
                )],
            ),
            class,
        )));
        run(&o)
    };
    let s = mk("nginx");
    let r = routes(&s.l7.hosts["trailing.example.com"]);
    let slash = "301 AppendSlash";
    assert!(r.contains(&("= /my-path".into(), slash.into())), "{r:?}");
    assert!(r.contains(&("= /exact".into(), slash.into())), "{r:?}");
    assert!(
        !r.iter().any(|(p, to)| p == "= /both" && to == slash),
        "{r:?}"
    );
    // Another class: the Ingress API's behaviour, no redirect routes.
    let mut o = base();
    o.upsert(ing(mk_ingress(
        "default",
        "slash",
        1,
        vec![(
            "trailing.example.com",
            vec![("/my-path/", "Prefix", "service1", "80")],
        )],
    )));
    let s = translate(&o, &mk_config());
    let r = routes(&s.l7.hosts["trailing.example.com"]);
    assert_eq!(r, pairs(&[("prefix /my-path", "service1")]));
}

#[test]
fn server_alias_and_from_to_www() {
    let mut o = base();
    let i = mk_ingress(
        "default",
        "www",
        1,
        vec![("www.example.com", vec![("/", "Prefix", "service1", "80")])],
    );
    let i = with_annotation(
        i,
        "nginx.ingress.kubernetes.io/from-to-www-redirect",
        "true",
    );
    let i = with_annotation(i, "xdp-ingress.dev/server-alias", "alias.example.com");
    o.upsert(ing(in_class(i, "nginx")));
    let s = run(&o);
    let hosts: Vec<_> = s.l7.hosts.keys().cloned().collect();
    assert_eq!(
        hosts,
        ["alias.example.com", "example.com", "www.example.com"]
    );
    assert_eq!(
        routes(&s.l7.hosts["alias.example.com"]),
        pairs(&[("prefix /", "service1")])
    );
    assert_eq!(
        routes(&s.l7.hosts["example.com"]),
        vec![(
            "chars /".to_string(),
            format!("308 {:?}", RedirectTo::Host("www.example.com".into()))
        )]
    );
}

#[test]
fn bad_values_warn_and_the_ingress_keeps_serving() {
    let mut o = base();
    // A path that use-regex elsewhere on the host would make an invalid regex: Warning, and it
    // keeps its own Prefix match.
    o.upsert(ing(with_annotation(
        mk_ingress(
            "default",
            "re",
            1,
            vec![(
                "h.test",
                vec![("/a.*", "ImplementationSpecific", "service1", "80")],
            )],
        ),
        "nginx.ingress.kubernetes.io/use-regex",
        "true",
    )));
    let bad = mk_ingress(
        "default",
        "bad",
        2,
        vec![("h.test", vec![("/b(", "Prefix", "service2", "80")])],
    );
    let bad = with_annotation(
        bad,
        "nginx.ingress.kubernetes.io/permanent-redirect",
        "https://x.test",
    );
    let bad = with_annotation(
        bad,
        "nginx.ingress.kubernetes.io/permanent-redirect-code",
        "999",
    );
    o.upsert(ing(bad));
    // `/b(` as a Prefix path exists only where strict-validate-path-type is off.
    let cfg = with_controller_configmap(&mut o, &[("strict-validate-path-type", "false")]);
    let s = translate(&o, &cfg);
    let warnings: Vec<_> = s
        .diagnostics
        .iter()
        .map(|d| (d.object.name.as_str(), d.reason.as_str(), d.severity))
        .collect();
    assert_eq!(
        warnings,
        [
            ("bad", "InvalidAnnotation", crate::model::Severity::Warning),
            ("bad", "InvalidPath", crate::model::Severity::Warning),
        ]
    );
    assert_eq!(
        routes(&s.l7.hosts["h.test"]),
        // Longest written path first: `/a.*` (4) before `/b(` (3).
        pairs(&[
            ("~* /a.*", "service1"),
            ("prefix /b(", "301 Url(\"https://x.test\")"),
        ])
    );
}
