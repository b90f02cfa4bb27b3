//! Random annotations on one of three Ingresses: names from the annotation table
//! ([`crate::model::translate::support::ANNOTATIONS`], either prefix, a few unknown ones),
//! values from `fuzz-corpus/annotation-values` and random strings. Properties: translation
//! never panics; the other Ingresses' hosts, diagnostics and the L4 services are exactly as
//! without the annotations (a bad annotation affects only its own Ingress); a boolean or
//! timeout annotation with a value that is not one (Go `strconv.ParseBool`; an nginx time
//! within the documented range) gives a diagnostic naming it while the Ingress is served.

use std::{collections::BTreeMap, sync::Arc};

use proptest::prelude::*;

use super::{config, corpus};
use crate::{
    model::{
        ObjectKind, ObjectRef, Snapshot,
        translate::{
            annotations::{CONNECT_TIMEOUT_RANGE, TIMEOUT_RANGE, parse_bool, parse_duration},
            support::{ANNOTATIONS, PREFIXES},
            translate,
        },
    },
    source::files::parse_manifests,
    store::{Key, Object, Objects},
};

const NAMES: [&str; 3] = ["a", "b", "c"];

/// Three Ingresses `a`, `b`, `c` (hosts `<name>.fuzz.test`, created in that order), each on
/// its own Service with one endpoint.
fn base() -> Objects {
    let mut text = String::new();
    for (i, n) in NAMES.iter().enumerate() {
        text.push_str(&format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: web-{n}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-{n}-1
  namespace: default
  labels: {{kubernetes.io/service-name: web-{n}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
  - addresses: ["198.19.60.{a}"]
    conditions: {{ready: true}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {n}
  namespace: default
  creationTimestamp: "2024-01-0{d}T00:00:00Z"
spec:
  ingressClassName: xdp-ingress
  rules:
    - host: {n}.fuzz.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: web-{n}, port: {{number: 80}}}}}}}}
---
"#,
            a = i + 2,
            d = i + 1,
        ));
    }
    Objects::from_objects(parse_manifests(&text).expect("base manifests"))
}

fn with_annotations(
    base: &Objects,
    target: usize,
    annotations: &BTreeMap<String, String>,
) -> Objects {
    let mut o = base.clone();
    let key = Key::new("default", NAMES[target]);
    let mut ing = (*o.ingresses[&key]).clone();
    ing.metadata.annotations = Some(annotations.clone());
    o.upsert(Object::Ingress(Arc::new(ing)));
    o
}

fn ingress_ref(name: &str) -> ObjectRef {
    ObjectRef::new(ObjectKind::Ingress, "default", name)
}

/// What an Ingress contributes to a snapshot, for comparison: its host, its diagnostics.
fn view(s: &Snapshot, name: &str) -> String {
    let host = s.l7.hosts.get(&format!("{name}.fuzz.test"));
    let me = ingress_ref(name);
    let diags: Vec<_> = s.diagnostics.iter().filter(|d| d.object == me).collect();
    format!(
        "{host:?}\n{diags:?}\n{:?}",
        s.l7.certificates.get(&format!("{name}.fuzz.test"))
    )
}

fn values() -> impl Strategy<Value = String> {
    let pool: Vec<String> = corpus("annotation-values")
        .iter()
        .flat_map(|(_, t)| t.lines().map(String::from).collect::<Vec<_>>())
        // Other Ingresses' hosts: `server-alias` and the like must not take them.
        .chain(NAMES.iter().map(|n| format!("{n}.fuzz.test")))
        .collect();
    prop_oneof![
        3 => prop::sample::select(pool),
        1 => "\\PC{0,16}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (0u32..100_000, prop::sample::select(vec!["", "ms", "s", "m", "h", "k", "m", "g"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
    ]
}

fn annotation_name() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = ANNOTATIONS.iter().map(|r| r.name).collect();
    prop_oneof![
        10 => (prop::sample::select(names), prop::sample::select(PREFIXES.to_vec()))
            .prop_map(|(n, p)| format!("{p}{n}")),
        1 => "[a-z-]{1,12}".prop_map(|n| format!("{}{n}", PREFIXES[0])),
        1 => Just("kubernetes.io/ingress.class".to_string()),
    ]
}

/// Annotations read as booleans on every served Ingress.
const BOOL_KEYS: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "use-regex",
    "enable-cors",
    "preserve-trailing-slash",
    "from-to-www-redirect",
];

/// Annotations read as nginx times on every served Ingress, with their accepted ranges.
fn timeout_range(key: &str) -> Option<std::ops::RangeInclusive<std::time::Duration>> {
    match key {
        "proxy-connect-timeout" => Some(CONNECT_TIMEOUT_RANGE),
        "proxy-read-timeout" | "proxy-send-timeout" => Some(TIMEOUT_RANGE),
        _ => None,
    }
}

/// The value translation reads for `key` (the later prefix wins, whitespace trimmed).
fn effective<'a>(a: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    PREFIXES
        .iter()
        .rev()
        .find_map(|p| a.get(&format!("{p}{key}")))
        .map(|v| v.trim())
}

fn check(
    base: &Objects,
    baseline: &Snapshot,
    target: usize,
    a: &BTreeMap<String, String>,
) -> Result<(), TestCaseError> {
    let s = translate(&with_annotations(base, target, a), &Default::default());
    for (i, n) in NAMES.iter().enumerate() {
        if i != target {
            prop_assert_eq!(view(&s, n), view(baseline, n), "Ingress {} changed", n);
        }
    }
    prop_assert_eq!(format!("{:?}", s.l4), format!("{:?}", baseline.l4));
    let name = NAMES[target];
    if !s.l7.hosts.contains_key(&format!("{name}.fuzz.test")) {
        // Not served (e.g. a snippet, a canary without a main Ingress): said why.
        let me = ingress_ref(name);
        prop_assert!(
            s.diagnostics.iter().any(|d| d.object == me),
            "target dropped silently"
        );
        return Ok(());
    }
    let me = ingress_ref(name);
    let mentions = |key: &str| {
        s.diagnostics
            .iter()
            .any(|d| d.object == me && d.message.contains(key))
    };
    for key in BOOL_KEYS {
        if let Some(v) = effective(a, key)
            && parse_bool(v).is_none()
        {
            prop_assert!(mentions(key), "{key}: {v:?} gave no diagnostic");
        }
    }
    for key in [
        "proxy-connect-timeout",
        "proxy-read-timeout",
        "proxy-send-timeout",
    ] {
        if let (Some(v), Some(range)) = (effective(a, key), timeout_range(key))
            && !parse_duration(v).is_some_and(|d| range.contains(&d))
        {
            prop_assert!(mentions(key), "{key}: {v:?} gave no diagnostic");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_annotations_affect_only_their_ingress(
        target in 0..NAMES.len(),
        a in prop::collection::btree_map(annotation_name(), values(), 1..8),
    ) {
        let base = base();
        let baseline = translate(&base, &Default::default());
        check(&base, &baseline, target, &a)?;
    }
}
