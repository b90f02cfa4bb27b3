//! The fast paths ([`super::incremental`], [`super::by_host`]) against a full translation,
//! over random sequences of Ingress and EndpointSlice changes.

use std::{collections::HashSet, sync::Arc};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::{Changed, Translator, fixtures::*, translate};
use crate::{
    model::{ObjectKind, Snapshot},
    store::{Change, Key, Object, Objects},
};

const NAMESPACES: [&str; 2] = ["a", "b"];
/// `web-3` has no Service: its routes answer 503 with a diagnostic.
const SERVICES: [&str; 4] = ["web-0", "web-1", "web-2", "web-3"];
const HOSTS: [&str; 7] = [
    "",
    "h1.example.com",
    "h2.example.com",
    "H1.Example.com",
    "*.w.example.com",
    "a.w.example.com",
    "bad_host!",
];
const PATHS: [&str; 5] = ["/", "/api", "/api/", "/x(.*)", "relative"];
const PATH_TYPES: [&str; 4] = ["Prefix", "Exact", "ImplementationSpecific", "Bogus"];
/// Annotations without prefix: per host (use-regex, app-root, ...), unknown, snippet, and
/// the ones that reach other hosts (canary, server-alias, ...).
const ANNOTATIONS: [(&str, &str); 10] = [
    ("use-regex", "true"),
    ("rewrite-target", "/"),
    ("app-root", "/app"),
    ("ssl-redirect", "maybe"),
    ("no-such-annotation", "x"),
    ("configuration-snippet", "return 200;"),
    ("canary", "true"),
    ("server-alias", "h2.example.com"),
    ("from-to-www-redirect", "true"),
    ("custom-http-errors", "404"),
];

fn world() -> Objects {
    let mut o = Objects::default();
    for ns in NAMESPACES {
        for (i, name) in SERVICES[..3].iter().enumerate() {
            let mut port = mk_port(Some("http"), 80, IntOrString::Int(8080));
            // web-2 is also an L4 NodePort with kube-proxy's health check node port, whose
            // answer counts the ready endpoints the slice changes touch.
            let l4 = i == 2;
            if l4 {
                port.node_port = Some(30080 + i as i32);
            }
            let mut service = mk_service(
                ns,
                name,
                if l4 { "NodePort" } else { "ClusterIP" },
                vec![port],
            );
            if l4 && let Some(spec) = service.spec.as_mut() {
                spec.external_traffic_policy = Some("Local".into());
                spec.health_check_node_port = Some(32100);
            }
            if l4 {
                service.metadata.annotations = Some(
                    [(
                        "xdp-ingress.dev/l4-acceleration".to_string(),
                        "true".to_string(),
                    )]
                    .into(),
                );
            }
            o.upsert(svc(service));
            o.upsert(slice(ns, name, i as u8, true));
        }
        // Valid for some hosts only: which host takes it, and which names redirect, depend
        // on the wildcard and on other Ingresses of the host.
        let (crt, key) =
            WILD_CERT.get_or_init(|| mk_cert_pem(&["*.w.example.com", "h1.example.com"]));
        o.upsert(Object::Secret(Arc::new(mk_tls_secret(
            ns, "wild-tls", crt, key,
        ))));
    }
    o
}

static WILD_CERT: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// `a/web-1` is `--default-backend-service` ([`config`]): both its endpoints follow `ready`,
/// so that it comes and goes.
fn slice(ns: &str, service: &str, i: u8, ready: bool) -> Object {
    let second = ready || (ns, service) != ("a", "web-1");
    mk_slice(
        ns,
        &format!("{service}-abc"),
        service,
        "IPv4",
        &[(Some("http"), 8080)],
        &[
            (&format!("198.19.{i}.2"), Some(ready), None, None),
            (&format!("198.19.{i}.3"), Some(second), None, None),
        ],
    )
}

/// The translation flags of these tests: `--default-backend-service a/web-1`.
fn config() -> super::TranslateConfig {
    super::TranslateConfig {
        default_backend_service: Some(Key::new("a", "web-1")),
        ..mk_config()
    }
}

/// Indexes into [`PATHS`], [`PATH_TYPES`], [`SERVICES`]; port 80 (else 81, which no Service
/// has).
type PathSpec = (usize, usize, usize, bool);

#[derive(Clone, Debug)]
struct IngressSpec {
    ns: usize,
    name: usize,
    created: i64,
    ours: bool,
    /// `(host, [(path, pathType, service, port 80?)])`.
    rules: Vec<(usize, Vec<PathSpec>)>,
    /// `spec.tls` hosts (none: no `spec.tls`; empty: the default certificate).
    tls: Option<Vec<usize>>,
    annotations: Vec<usize>,
    /// `spec.defaultBackend` (index into [`SERVICES`]).
    default_backend: Option<usize>,
}

impl IngressSpec {
    fn object(&self) -> Object {
        let rules = self
            .rules
            .iter()
            .map(|(h, paths)| {
                let paths = paths
                    .iter()
                    .map(|&(p, t, s, port80)| {
                        (
                            PATHS[p],
                            PATH_TYPES[t],
                            SERVICES[s],
                            if port80 { "80" } else { "81" },
                        )
                    })
                    .collect();
                (HOSTS[*h], paths)
            })
            .collect();
        let mut i = mk_ingress(
            NAMESPACES[self.ns],
            &format!("ing-{}", self.name),
            self.created,
            rules,
        );
        i.spec.as_mut().unwrap().default_backend =
            (self.default_backend).map(|s| Box::new(backend(SERVICES[s], "80")));
        if !self.ours {
            i.spec.as_mut().unwrap().ingress_class_name = Some("other".into());
        }
        if let Some(hosts) = &self.tls {
            let hosts: Vec<&str> = hosts.iter().map(|h| HOSTS[*h]).collect();
            let secret = if self.name.is_multiple_of(2) {
                "wild-tls"
            } else {
                "missing-secret"
            };
            i = with_tls(i, &hosts, secret);
        }
        for a in &self.annotations {
            let (k, v) = ANNOTATIONS[*a];
            i = with_annotation(i, &format!("nginx.ingress.kubernetes.io/{k}"), v);
        }
        ing(i)
    }
}

fn ingress_spec() -> impl Strategy<Value = IngressSpec> {
    let path = (
        0..PATHS.len(),
        0..PATH_TYPES.len(),
        0..SERVICES.len(),
        any::<bool>(),
    );
    let rule = (0..HOSTS.len(), prop::collection::vec(path, 0..3));
    // Mostly what stays within its hosts, so that the fast path is what gets tested; now and
    // then what reaches beyond (canary, server-alias, from-to-www-redirect), or no rules (a
    // catch-all with a default backend: host `""` only). A `spec.tls` entry without hosts
    // stays within its rule hosts.
    let rules = prop_oneof![
        17 => prop::collection::vec(rule.clone(), 1..3),
        3 => prop::collection::vec(rule, 0..1),
    ];
    let tls_hosts = prop_oneof![
        19 => prop::collection::vec(0..HOSTS.len(), 1..3),
        1 => Just(Vec::new()),
    ];
    let annotation = prop_oneof![
        30 => 0..6usize,
        10 => Just(9usize),
        1 => 6..9usize,
    ];
    (
        0..NAMESPACES.len(),
        0..5usize,
        0..3i64,
        prop::bool::weighted(0.9),
        rules,
        prop::option::weighted(0.3, tls_hosts),
        prop::collection::vec(annotation, 0..2),
        prop::option::weighted(0.15, 0..SERVICES.len()),
    )
        .prop_map(
            |(ns, name, created, ours, rules, tls, annotations, default_backend)| IngressSpec {
                ns,
                name,
                created,
                ours,
                rules,
                tls,
                annotations,
                default_backend,
            },
        )
}

#[derive(Clone, Debug)]
enum Step {
    Upsert(IngressSpec),
    Delete(usize, usize),
    Endpoints(usize, usize, bool),
    /// Several changes in one batch.
    Both(IngressSpec, usize, usize, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => ingress_spec().prop_map(Step::Upsert),
        2 => (0..NAMESPACES.len(), 0..5usize).prop_map(|(n, i)| Step::Delete(n, i)),
        2 => (0..NAMESPACES.len(), 0..3usize, any::<bool>())
            .prop_map(|(n, s, r)| Step::Endpoints(n, s, r)),
        1 => (ingress_spec(), 0..NAMESPACES.len(), 0..3usize, any::<bool>())
            .prop_map(|(i, n, s, r)| Step::Both(i, n, s, r)),
    ]
}

fn change(step: &Step) -> Change {
    let slice_of = |n: usize, s: usize, ready| {
        Change::Upsert(slice(NAMESPACES[n], SERVICES[s], s as u8, ready))
    };
    match step {
        Step::Upsert(i) => Change::Upsert(i.object()),
        Step::Delete(n, i) => Change::Delete(
            ObjectKind::Ingress,
            Key::new(NAMESPACES[*n], format!("ing-{i}")),
        ),
        Step::Endpoints(n, s, r) => slice_of(*n, *s, *r),
        Step::Both(i, n, s, r) => {
            Change::Batch(vec![Change::Upsert(i.object()), slice_of(*n, *s, *r)])
        }
    }
}

fn content(s: &Snapshot) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.l7, s.l4, s.diagnostics, s.owned_ingresses, s.status_addresses, s.unsupported_annotations
    )
}

fn apply(o: &Objects, change: Change) -> Objects {
    let mut store = crate::store::Store::new();
    store.apply(
        crate::store::SourceId::Other,
        Change::ReplaceAll(Box::new(o.clone())),
    );
    store.apply(crate::store::SourceId::Other, change);
    store.view().into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever path a change takes, the snapshot is the one a full translation gives.
    #[test]
    fn incremental_translation_equals_full(
        initial in prop::collection::vec(ingress_spec(), 0..6),
        steps in prop::collection::vec(step(), 1..12),
    ) {
        let mut o = world();
        for i in &initial {
            o.upsert(i.object());
        }
        let mut t = Translator::new(config());
        t.translate_changed(&o, None);
        for (n, s) in steps.iter().enumerate() {
            let change = change(s);
            let mut changed = Changed::default();
            let fast = changed.add(&o, &change);
            o = apply(&o, change);
            let snap = t.translate_changed(&o, fast.then_some(&changed));
            let full = translate(&o, &config());
            prop_assert_eq!(content(&snap), content(&full), "step {}: {:?}", n, s);
            prop_assert_eq!(snap.version, n as u64 + 2);
        }
    }
}

/// A catch-all Ingress serves the default server only: with one present an Ingress change
/// still takes the fast path, and a change of the catch-all itself translates host `""` only.
#[test]
fn a_catch_all_ingress_is_translated_with_the_default_server_only() {
    let mut o = world();
    let mut catch_all = mk_ingress("a", "catch", 1, vec![]);
    catch_all.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("web-0", "80")));
    o.upsert(ing(catch_all.clone()));
    o.upsert(ing(mk_ingress(
        "a",
        "one",
        1,
        vec![("h1.example.com", vec![("/", "Prefix", "web-0", "80")])],
    )));
    let mut t = Translator::new(config());
    t.translate_changed(&o, None);
    o.upsert(ing(mk_ingress(
        "a",
        "one",
        1,
        vec![("h1.example.com", vec![("/v2", "Prefix", "web-0", "80")])],
    )));
    let changed: HashSet<Key> = [Key::new("a", "one")].into();
    let fast = t.ingresses_only(&o, &changed).expect("the fast path");
    assert_eq!(content(&fast), content(&translate(&o, &config())));
    let mut t = Translator::new(config());
    t.translate_changed(&o, None);
    catch_all.spec.as_mut().unwrap().default_backend = Some(Box::new(backend("web-2", "80")));
    o.upsert(ing(catch_all));
    let changed: HashSet<Key> = [Key::new("a", "catch")].into();
    let fast = t.ingresses_only(&o, &changed).expect("the fast path");
    assert_eq!(content(&fast), content(&translate(&o, &config())));
    assert!(
        fast.l7.any_host.is_some(),
        "the default server's root route"
    );
}

/// A plain Ingress change takes the fast path (the property above would pass without it).
#[test]
fn an_ingress_change_translates_only_its_hosts() {
    let mut o = world();
    let plain = |name: &str, host: &str, path: &str| {
        ing(mk_ingress(
            "a",
            name,
            1,
            vec![(host, vec![(path, "Prefix", "web-0", "80")])],
        ))
    };
    o.upsert(plain("one", "h1.example.com", "/"));
    o.upsert(plain("two", "h2.example.com", "/"));
    let mut t = Translator::new(config());
    let first = t.translate_changed(&o, None);
    let vh2 = first.l7.hosts["h2.example.com"].clone();
    o.upsert(plain("one", "h1.example.com", "/v2"));
    let changed: HashSet<Key> = [Key::new("a", "one")].into();
    let fast = t.ingresses_only(&o, &changed).expect("the fast path");
    assert_eq!(content(&fast), content(&translate(&o, &config())));
    assert!(
        Arc::ptr_eq(&fast.l7.hosts["h2.example.com"], &vh2),
        "the other host is kept"
    );
    // One that reaches beyond its hosts does not.
    o.upsert(ing(with_annotation(
        mk_ingress(
            "a",
            "one",
            1,
            vec![("h1.example.com", vec![("/", "Prefix", "web-0", "80")])],
        ),
        "nginx.ingress.kubernetes.io/server-alias",
        "h3.example.com",
    )));
    assert!(t.ingresses_only(&o, &changed).is_none());
}
