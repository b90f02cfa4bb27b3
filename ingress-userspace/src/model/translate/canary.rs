//! ingress-nginx canary Ingresses: `canary: "true"` and its traffic-shaping annotations, and
//! the merge of a canary's paths into the main routes.
//!
//! As ingress-nginx (annotations reference, "Canary"; `controller.go`
//! `mergeAlternativeBackends`): a canary Ingress serves nothing of its own. Each of its paths is
//! merged into the route of another (non-canary) Ingress with the same host, path and pathType,
//! whose backend becomes the canary's "main" side. A canary path without such a route is
//! dropped with a Warning (ingress-nginx deletes that backend): its requests go wherever they
//! would without it. Of the canary Ingress's other annotations only those of load balancing
//! (`load-balance`, `upstream-hash-by`) and, with `affinity-canary-behavior: legacy`, session
//! affinity apply to its backend; everything else is the main route's. With the default
//! `sticky` behaviour the canary backend gets the main backend's cookie affinity, so a client
//! with an affinity cookie for a canary pod stays on the canary.

use std::{collections::BTreeMap, sync::Arc};

use super::{
    annotations::PREFIXES,
    diagnostics::Diagnostics,
    ingress::{L7Builder, normalize_host, path_match},
};
use crate::model::{Canary, CanaryHeaderMatch, CanaryRule, ObjectRef, PathMatch, RouteAction};

/// ingress-nginx's default (and minimum) `canary-weight-total`.
pub const DEFAULT_WEIGHT_TOTAL: u32 = 100;

/// The annotations that configure a canary; naming them without `canary: "true"` is a warning.
const RULE_KEYS: [&str; 7] = [
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "affinity-canary-behavior",
];

/// What a canary Ingress's annotations say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryOptions {
    pub rule: CanaryRule,
    /// `affinity-canary-behavior: legacy`: the canary backend keeps its own affinity
    /// annotations instead of the main backend's.
    pub legacy_affinity: bool,
}

fn get<'m>(annotations: &'m BTreeMap<String, String>, key: &str) -> Option<&'m str> {
    PREFIXES
        .iter()
        .rev()
        .find_map(|p| annotations.get(&format!("{p}{key}")))
        .map(|v| v.trim())
}

fn bad(diags: &mut Diagnostics, object: &ObjectRef, key: &str, value: &str, what: &str) {
    diags.warn(
        object,
        "InvalidAnnotation",
        format!("annotation {key}: {value:?} is not {what}; using the default"),
    );
}

/// The canary options of an Ingress, or `None` when it is not a canary (`canary` absent,
/// `"false"` or invalid: a Warning, and the Ingress is served as a plain one, as ingress-nginx).
/// Bad values of the other annotations get a Warning and their default (weight 0, total 100,
/// no header, no cookie, `sticky`).
pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    diags: &mut Diagnostics,
) -> Option<CanaryOptions> {
    let a = annotations?;
    let enabled = match get(a, "canary").map(|v| (v, super::annotations::parse_bool(v))) {
        Some((_, Some(b))) => b,
        None => false,
        Some((v, None)) => {
            bad(diags, object, "canary", v, "true or false");
            false
        }
    };
    if !enabled {
        let set: Vec<&str> = RULE_KEYS
            .into_iter()
            .filter(|k| *k != "affinity-canary-behavior" && get(a, k).is_some())
            .collect();
        if !set.is_empty() {
            diags.warn(
                object,
                "CanaryNotEnabled",
                format!(
                    "annotations {} are ignored: the Ingress is not a canary (canary: \"true\")",
                    set.join(", ")
                ),
            );
        }
        return None;
    }
    let number = |diags: &mut Diagnostics, key: &str| -> Option<u32> {
        let v = get(a, key)?;
        match v.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                bad(diags, object, key, v, "a whole number from 0 to 4294967295");
                None
            }
        }
    };
    let weight = number(diags, "canary-weight").unwrap_or(0);
    let weight_total = match number(diags, "canary-weight-total") {
        // balancer.lua uses the total only when it is above 100.
        Some(t) if t < DEFAULT_WEIGHT_TOTAL => {
            diags.warn(
                object,
                "AnnotationOutOfRange",
                format!(
                    "annotation canary-weight-total: \"{t}\" is below {DEFAULT_WEIGHT_TOTAL}; \
                     ingress-nginx counts it as {DEFAULT_WEIGHT_TOTAL} and so do we"
                ),
            );
            DEFAULT_WEIGHT_TOTAL
        }
        Some(t) => t,
        None => DEFAULT_WEIGHT_TOTAL,
    };
    let header =
        get(a, "canary-by-header").and_then(|h| match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(name.as_str().to_string()),
            Err(_) => {
                bad(diags, object, "canary-by-header", h, "a header name");
                None
            }
        });
    let value = get(a, "canary-by-header-value").filter(|v| !v.is_empty());
    let pattern = get(a, "canary-by-header-pattern").filter(|v| !v.is_empty());
    // ingress-nginx: a value wins over a pattern; either replaces always/never.
    let header_match = match (value, pattern) {
        (Some(v), _) => CanaryHeaderMatch::Exact(v.to_string()),
        (None, Some(p)) => match regex::Regex::new(p) {
            Ok(_) => CanaryHeaderMatch::Regex(p.to_string()),
            Err(e) => {
                diags.warn(
                    object,
                    "InvalidAnnotation",
                    format!(
                        "annotation canary-by-header-pattern: {p:?} is not a regular expression \
                         ({e}); a request with the header goes to the main backend, as in \
                         ingress-nginx"
                    ),
                );
                CanaryHeaderMatch::InvalidRegex(p.to_string())
            }
        },
        (None, None) => CanaryHeaderMatch::AlwaysNever,
    };
    if header.is_none() && (value.is_some() || pattern.is_some()) {
        diags.warn(
            object,
            "InvalidAnnotation",
            "annotations canary-by-header-value and canary-by-header-pattern need \
             canary-by-header; they are ignored",
        );
    }
    let cookie = get(a, "canary-by-cookie")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let legacy_affinity = match get(a, "affinity-canary-behavior") {
        None | Some("sticky") => false,
        Some("legacy") => true,
        Some(v) => {
            bad(
                diags,
                object,
                "affinity-canary-behavior",
                v,
                "sticky or legacy",
            );
            false
        }
    };
    Some(CanaryOptions {
        rule: CanaryRule {
            header,
            header_match,
            cookie,
            weight,
            weight_total,
        },
        legacy_affinity,
    })
}

/// A path as ingress-nginx compares locations for a canary merge: the path as written and
/// its type (a regex is still an `ImplementationSpecific` path).
fn merge_key(m: &PathMatch) -> (u8, &str) {
    match m {
        PathMatch::Exact(p) => (0, p),
        PathMatch::Prefix(p) => (1, p),
        PathMatch::CharPrefix(p) | PathMatch::Regex(p) | PathMatch::FullRegex(p) => (2, p),
    }
}

/// Merges every canary Ingress the builder collected into the main routes, oldest canary
/// first; a route takes one canary (ingress-nginx uses only the first alternative backend),
/// later ones get a `CanaryConflict` Warning.
pub(super) fn merge(b: &mut L7Builder<'_>) {
    for (ing, object, opts, copts) in std::mem::take(&mut b.canaries) {
        let ns: &str = ing.metadata.namespace.as_deref().unwrap_or_default();
        let Some(spec) = ing.spec.as_ref() else {
            continue;
        };
        if spec.default_backend.is_some() {
            b.diags.warn(
                &object,
                "CanaryDefaultBackendIgnored",
                "spec.defaultBackend of a canary Ingress is not merged; only its rules are",
            );
        }
        for (ri, rule) in spec.rules.iter().flatten().enumerate() {
            let host = match normalize_host(rule.host.as_deref().unwrap_or_default()) {
                Ok(h) => h,
                Err(e) => {
                    b.diags
                        .error(&object, "InvalidHost", format!("spec.rules[{ri}]: {e}"));
                    continue;
                }
            };
            for (pi, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let what = format!("spec.rules[{ri}].http.paths[{pi}]");
                let path = match path_match(p.path.as_deref(), &p.path_type, opts.use_regex) {
                    Ok(m) => m,
                    Err(e) => {
                        b.diags
                            .error(&object, "InvalidPath", format!("{what}: {e}"));
                        continue;
                    }
                };
                let found = b.hosts.get(&host).and_then(|hb| {
                    hb.routes
                        .iter()
                        .position(|r| merge_key(&r.route.matches.path) == merge_key(&path))
                });
                let Some(idx) = found else {
                    b.diags.warn(
                        &object,
                        "CanaryWithoutMain",
                        format!(
                            "{what}: no non-canary Ingress routes host {host:?} path {path:?} \
                             with this pathType; the canary path serves nothing"
                        ),
                    );
                    continue;
                };
                let main = &b.hosts[&host].routes[idx];
                let main_up = match &main.route.action {
                    RouteAction::Forward(ups) if !ups.is_empty() => ups[0].upstream.clone(),
                    _ => {
                        b.diags.warn(
                            &object,
                            "CanaryWithoutMain",
                            format!(
                                "{what}: the main route of host {host:?} path {path:?} has no \
                                 backend; the canary path serves nothing"
                            ),
                        );
                        continue;
                    }
                };
                if let Some(have) = &main.route.canary {
                    let msg = format!(
                        "{what}: host {host:?} path {path:?} already has the canary {}; this \
                         one is ignored",
                        have.object
                    );
                    b.diags.warn(&object, "CanaryConflict", msg);
                    continue;
                }
                let main_object = main.route.origin.object.clone();
                // The canary's backend speaks the main route's protocol; load balancing is its
                // own; affinity is the main backend's unless `legacy`.
                let mut up_opts = opts.clone();
                up_opts.protocol = main_up.protocol;
                if !copts.legacy_affinity {
                    up_opts.affinity = main_up.affinity.clone();
                }
                let up = match b.upstream(ns, &p.backend, &up_opts, &object) {
                    Ok(u) => u,
                    Err((reason, msg)) => {
                        b.diags.error(
                            &object,
                            reason,
                            format!("{what}: {msg}; the canary path serves nothing"),
                        );
                        continue;
                    }
                };
                if up.id == main_up.id {
                    b.diags.warn(
                        &object,
                        "CanaryIsMain",
                        format!(
                            "{what}: the canary backend {} is the main backend of {main_object}; \
                             nothing to split",
                            up.id
                        ),
                    );
                    continue;
                }
                if let Some(route) = b.hosts.get_mut(&host).map(|hb| &mut hb.routes[idx]) {
                    route.route.canary = Some(Arc::new(Canary {
                        object: object.clone(),
                        upstream: up,
                        rule: copts.rule.clone(),
                    }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;

    fn opts(pairs: &[(&str, &str)]) -> (Option<CanaryOptions>, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
            .collect();
        let mut d = Diagnostics::default();
        let o = parse(
            Some(&map),
            &ObjectRef::new(ObjectKind::Ingress, "d", "c"),
            &mut d,
        );
        (o, d.0.into_iter().map(|d| d.reason).collect())
    }

    #[test]
    fn annotations_parse_to_a_rule() {
        let (o, w) = opts(&[
            ("canary", "true"),
            ("canary-weight", "20"),
            ("canary-by-header", "X-Canary"),
            ("canary-by-header-value", "yes"),
            ("canary-by-header-pattern", "ignored-when-value-is-set"),
            ("canary-by-cookie", "canary"),
            ("affinity-canary-behavior", "legacy"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        let o = o.unwrap();
        assert_eq!(
            o.rule,
            CanaryRule {
                header: Some("x-canary".into()),
                header_match: CanaryHeaderMatch::Exact("yes".into()),
                cookie: Some("canary".into()),
                weight: 20,
                weight_total: 100,
            }
        );
        assert!(o.legacy_affinity);
        let (o, _) = opts(&[
            ("canary", "true"),
            ("canary-by-header", "x"),
            ("canary-by-header-pattern", "^(a|b)$"),
            ("canary-weight-total", "1000"),
        ]);
        let o = o.unwrap();
        assert_eq!(
            o.rule.header_match,
            CanaryHeaderMatch::Regex("^(a|b)$".into())
        );
        assert_eq!(o.rule.weight_total, 1000);
        assert!(!o.legacy_affinity);
    }

    #[test]
    fn bad_values_warn_and_default() {
        let (o, w) = opts(&[
            ("canary", "true"),
            ("canary-weight", "twenty"),
            ("canary-weight-total", "50"),
            ("canary-by-header", "bad header"),
            ("canary-by-header-pattern", "(unclosed"),
            ("affinity-canary-behavior", "glue"),
        ]);
        assert_eq!(
            w,
            [
                "InvalidAnnotation",
                "AnnotationOutOfRange",
                "InvalidAnnotation",
                "InvalidAnnotation",
                "InvalidAnnotation",
                "InvalidAnnotation"
            ]
        );
        let o = o.unwrap();
        assert_eq!(
            o.rule,
            CanaryRule {
                weight_total: 100,
                header_match: CanaryHeaderMatch::InvalidRegex("(unclosed".into()),
                ..CanaryRule::default()
            }
        );
        // Not a canary: served as a plain Ingress, rules named are reported as ignored.
        let (o, w) = opts(&[("canary", "yes"), ("canary-weight", "20")]);
        assert_eq!(o, None);
        assert_eq!(w, ["InvalidAnnotation", "CanaryNotEnabled"]);
        assert_eq!(opts(&[("canary-weight", "5")]).1, ["CanaryNotEnabled"]);
        assert_eq!(opts(&[]).0, None);
    }
}

#[cfg(test)]
mod merge_tests {

    use super::super::{fixtures::*, translate};
    use crate::{
        model::{CanaryHeaderMatch, RouteAction, Snapshot},
        store::Objects,
    };

    const N: &str = "nginx.ingress.kubernetes.io/";

    /// Services `web`, `api` and `beta`, one pod each.
    fn objects() -> Objects {
        services_with_one_pod(&["web", "api", "beta"])
    }

    fn canary_ingress(
        name: &str,
        created: i64,
        host: &str,
        path: &str,
        svc: &str,
    ) -> crate::store::Object {
        let i = mk_ingress(
            "default",
            name,
            created,
            vec![(host, vec![(path, "Prefix", svc, "80")])],
        );
        let i = with_annotation(i, &format!("{N}canary"), "true");
        let i = with_annotation(i, &format!("{N}canary-weight"), "20");
        ing(with_annotation(
            i,
            &format!("{N}canary-by-header"),
            "X-Canary",
        ))
    }

    fn translate_default(o: &Objects) -> Snapshot {
        translate(o, &mk_config())
    }

    fn diag(s: &Snapshot, name: &str) -> Vec<String> {
        s.diagnostics
            .iter()
            .filter(|d| d.object.name == name)
            .map(|d| d.reason.clone())
            .collect()
    }

    #[test]
    fn canary_merges_into_the_main_route_and_serves_nothing_alone() {
        let mut o = objects();
        o.upsert(ing(mk_ingress(
            "default",
            "main",
            5,
            vec![(
                "a.test",
                vec![("/", "Prefix", "web", "80"), ("/x", "Exact", "web", "80")],
            )],
        )));
        // Older than the main Ingress: still a canary, never a conflicting route.
        o.upsert(canary_ingress("c1", 1, "a.test", "/", "api"));
        // Same host and path: the route already has a canary.
        o.upsert(canary_ingress("c2", 2, "a.test", "/", "beta"));
        // No main Ingress for the host, or for that path and pathType.
        o.upsert(canary_ingress("lonely", 3, "b.test", "/", "api"));
        o.upsert(canary_ingress("x-prefix", 4, "a.test", "/x", "api"));
        let s = translate_default(&o);
        let vh = &s.l7.hosts["a.test"];
        assert_eq!(vh.routes.len(), 2, "the canaries add no routes");
        let root = vh
            .routes
            .iter()
            .find(|r| r.matches.path == crate::model::PathMatch::Prefix("/".into()))
            .unwrap();
        let RouteAction::Forward(ups) = &root.action else {
            panic!("forward")
        };
        assert_eq!(ups[0].upstream.id, "default/web:80");
        let c = root.canary.as_ref().expect("merged");
        assert_eq!(c.object.name, "c1");
        assert_eq!(c.upstream.id, "default/api:80");
        assert_eq!(c.upstream.endpoints.len(), 1);
        assert_eq!(c.rule.weight, 20);
        assert_eq!(c.rule.header.as_deref(), Some("x-canary"));
        assert_eq!(c.rule.header_match, CanaryHeaderMatch::AlwaysNever);
        assert!(
            !s.l7.hosts.contains_key("b.test"),
            "a canary alone serves nothing"
        );
        assert_eq!(diag(&s, "c1"), Vec::<String>::new());
        assert_eq!(diag(&s, "c2"), ["CanaryConflict"]);
        assert_eq!(diag(&s, "lonely"), ["CanaryWithoutMain"]);
        assert_eq!(diag(&s, "x-prefix"), ["CanaryWithoutMain"]);
        assert_eq!(diag(&s, "main"), Vec::<String>::new());
    }

    #[test]
    fn canary_backend_takes_the_main_protocol_and_sticky_affinity() {
        let mut o = objects();
        let main = mk_ingress(
            "default",
            "main",
            1,
            vec![("a.test", vec![("/", "Prefix", "web", "80")])],
        );
        let main = with_annotation(main, &format!("{N}backend-protocol"), "GRPC");
        let main = with_annotation(main, &format!("{N}affinity"), "cookie");
        o.upsert(ing(with_annotation(
            main,
            &format!("{N}session-cookie-name"),
            "route",
        )));
        o.upsert(canary_ingress("c", 2, "a.test", "/", "api"));
        let s = translate_default(&o);
        let c = s.l7.hosts["a.test"].routes[0].canary.clone().unwrap();
        assert_eq!(c.upstream.protocol, crate::model::BackendProtocol::Grpc);
        assert_eq!(c.upstream.affinity.as_ref().unwrap().name, "route");
        // `legacy`: the canary's own affinity annotations (none here).
        let legacy = with_annotation(
            match canary_ingress("c", 2, "a.test", "/", "api") {
                crate::store::Object::Ingress(i) => (*i).clone(),
                _ => unreachable!(),
            },
            &format!("{N}affinity-canary-behavior"),
            "legacy",
        );
        o.upsert(ing(legacy));
        let s = translate_default(&o);
        let c = s.l7.hosts["a.test"].routes[0].canary.clone().unwrap();
        assert_eq!(c.upstream.affinity, None);
    }
}
