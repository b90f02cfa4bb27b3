//! Manifest files: seeds from `fuzz-corpus/manifests` mutated as text (bytes, lines,
//! indentation, splices between seeds) and as YAML trees (a node replaced by another kind
//! of value, a key removed), read by the manifest-directory source next to a good file,
//! then translated. Properties: nothing panics; a file that does not parse is one
//! `InvalidManifest` diagnostic naming it and a file that does is none; the good file's
//! objects are in the store and its Ingress still routes unless the mutated file defines
//! something that may legitimately change it (an IngressClass, an object in its namespace).

use proptest::prelude::*;
use yaml_serde::Value;

use super::{config, corpus};
use crate::{
    model::{ObjectKind, Severity, translate::translate},
    source::files::{ManifestDir, parse_manifests},
    store::{Key, Object},
};

/// A file that must keep working whatever its neighbour holds.
const GOOD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: fuzz-good}
spec:
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: fuzz-good
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["198.19.50.2"]
    conditions: {ready: true}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: good, namespace: fuzz-good}
spec:
  ingressClassName: xdp-ingress
  rules:
    - host: good.fuzz-good.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
const GOOD_HOST: &str = "good.fuzz-good.test";

/// One text or tree mutation; positions are fractions of the text (or node count) in 1/65536.
#[derive(Clone, Debug)]
enum Op {
    Delete(u16, u8),
    Insert(u16, String),
    DuplicateLine(u16),
    DropLine(u16),
    SwapLines(u16, u16),
    Indent(u16, i8),
    /// A line of another seed inserted at a line.
    Splice(usize, u16, u16),
    /// A node of the YAML tree replaced.
    Replace(u16, Leaf),
    /// A mapping entry of the YAML tree removed.
    RemoveKey(u16),
}

/// What a tree node becomes.
#[derive(Clone, Debug)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    EmptyMap,
    EmptySeq,
}

fn op(seeds: usize) -> impl Strategy<Value = Op> {
    let yamlish = "[-:\\[\\]{}#&*!|>'\" \n\t0-9a-zA-Z,./$~%@`?]{1,8}";
    prop_oneof![
        1 => (any::<u16>(), any::<u8>()).prop_map(|(p, n)| Op::Delete(p, n)),
        1 => (any::<u16>(), yamlish).prop_map(|(p, s)| Op::Insert(p, s)),
        1 => any::<u16>().prop_map(Op::DuplicateLine),
        1 => any::<u16>().prop_map(Op::DropLine),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::SwapLines(a, b)),
        1 => (any::<u16>(), -4i8..=4).prop_map(|(l, d)| Op::Indent(l, d)),
        1 => (0..seeds, any::<u16>(), any::<u16>()).prop_map(|(s, l, at)| Op::Splice(s, l, at)),
        3 => (any::<u16>(), leaf()).prop_map(|(n, l)| Op::Replace(n, l)),
        2 => any::<u16>().prop_map(Op::RemoveKey),
    ]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        Just(Leaf::Null),
        any::<bool>().prop_map(Leaf::Bool),
        prop_oneof![any::<i64>(), -2i64..70000].prop_map(Leaf::Int),
        any::<f64>().prop_map(Leaf::Float),
        "\\PC{0,24}".prop_map(Leaf::Str),
        Just(Leaf::EmptyMap),
        Just(Leaf::EmptySeq),
    ]
}

fn at(frac: u16, len: usize) -> usize {
    (usize::from(frac) * len) >> 16
}

fn apply(text: &str, op: &Op, seeds: &[(String, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let n = lines.len().max(1);
    match op {
        Op::Delete(p, len) => {
            let start = floor_char(text, at(*p, text.len()));
            let end = floor_char(text, (start + usize::from(*len)).min(text.len()));
            return format!("{}{}", &text[..start], &text[end..]);
        }
        Op::Insert(p, s) => {
            let i = floor_char(text, at(*p, text.len()));
            return format!("{}{s}{}", &text[..i], &text[i..]);
        }
        Op::DuplicateLine(l) if !lines.is_empty() => {
            let i = at(*l, n);
            lines.insert(i, lines[i].clone());
        }
        Op::DropLine(l) if !lines.is_empty() => {
            lines.remove(at(*l, n));
        }
        Op::SwapLines(a, b) if !lines.is_empty() => lines.swap(at(*a, n), at(*b, n)),
        Op::Indent(l, d) if !lines.is_empty() => {
            let i = at(*l, n);
            lines[i] = if *d >= 0 {
                format!("{}{}", " ".repeat(*d as usize), lines[i])
            } else {
                let strip = lines[i].len() - lines[i].trim_start_matches(' ').len();
                lines[i][strip.min(usize::from(d.unsigned_abs()))..].to_string()
            };
        }
        Op::Splice(s, l, to) => {
            let other: Vec<&str> = seeds[*s].1.lines().collect();
            if !other.is_empty() {
                let line = other[at(*l, other.len())].to_string();
                lines.insert(at(*to, n + 1).min(lines.len()), line);
            }
        }
        Op::Replace(node, leaf) => return tree(text, *node, |v| *v = leaf_value(leaf)),
        Op::RemoveKey(node) => {
            return tree(text, *node, |v| {
                if let Value::Mapping(m) = v
                    && let Some(k) = m.keys().next().cloned()
                {
                    m.remove(k);
                }
            });
        }
        _ => {}
    }
    lines.join("\n")
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn leaf_value(l: &Leaf) -> Value {
    match l {
        Leaf::Null => Value::Null,
        Leaf::Bool(b) => Value::Bool(*b),
        Leaf::Int(i) => Value::Number((*i).into()),
        Leaf::Float(f) => Value::Number((*f).into()),
        Leaf::Str(s) => Value::String(s.clone()),
        Leaf::EmptyMap => Value::Mapping(Default::default()),
        Leaf::EmptySeq => Value::Sequence(Vec::new()),
    }
}

/// Applies `f` to one node (numbered depth first over all documents) of the text's YAML
/// tree and writes the documents back; text that does not parse is returned as it is.
fn tree(text: &str, node: u16, f: impl FnOnce(&mut Value)) -> String {
    use serde::Deserialize;
    let docs: Result<Vec<Value>, _> = yaml_serde::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect();
    let Ok(mut docs) = docs else {
        return text.to_string();
    };
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Mapping(m) => m.values().map(count).sum(),
            Value::Sequence(s) => s.iter().map(count).sum(),
            Value::Tagged(t) => count(&t.value),
            _ => 0,
        }
    }
    fn visit(v: &mut Value, n: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
        if *n == 0 {
            f(v);
            return true;
        }
        *n -= 1;
        match v {
            Value::Mapping(m) => m.values_mut().any(|c| visit(c, n, f)),
            Value::Sequence(s) => s.iter_mut().any(|c| visit(c, n, f)),
            Value::Tagged(t) => visit(&mut t.value, n, f),
            _ => false,
        }
    }
    let total: usize = docs.iter().map(count).sum();
    if total == 0 {
        return text.to_string();
    }
    let mut n = at(node, total);
    let mut f = Some(f);
    let mut once = |v: &mut Value| {
        if let Some(f) = f.take() {
            f(v)
        }
    };
    for d in &mut docs {
        if visit(d, &mut n, &mut once) {
            break;
        }
    }
    docs.iter()
        .filter_map(|d| yaml_serde::to_string(d).ok())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn mutated() -> impl Strategy<Value = String> {
    let seeds = corpus("manifests");
    let n = seeds.len();
    (0..n, prop::collection::vec(op(n), 1..6)).prop_map(move |(seed, ops)| {
        let mut text = seeds[seed].1.clone();
        for o in &ops {
            text = apply(&text, o, &seeds);
        }
        text
    })
}

fn check(input: &str) -> Result<(), TestCaseError> {
    let parsed = parse_manifests(input);
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).map_err(|e| TestCaseError::fail(e.to_string()))
    };
    write("good.yaml", GOOD)?;
    write("mutated.yaml", input)?;
    let objects = ManifestDir::new(dir.path()).load();
    let file_diags: Vec<_> = objects
        .diagnostics
        .iter()
        .filter(|d| d.object.kind == ObjectKind::ManifestFile)
        .collect();
    match &parsed {
        Ok(_) => prop_assert!(file_diags.is_empty(), "{file_diags:?}"),
        Err(e) => {
            prop_assert_eq!(file_diags.len(), 1, "{:?}", file_diags);
            prop_assert!(file_diags[0].object.name.ends_with("mutated.yaml"));
            prop_assert_eq!(file_diags[0].reason.as_str(), "InvalidManifest");
            prop_assert_eq!(&file_diags[0].message, &e.to_string());
        }
    }
    prop_assert!(objects.services.contains_key(&Key::new("fuzz-good", "web")));
    let snap = translate(&objects, &Default::default());
    // Objects that may legitimately change how the good Ingress is served.
    let interferes = parsed.as_ref().is_ok_and(|objs| {
        objs.iter().any(|o| {
            matches!(o, Object::IngressClass(_) | Object::Node(_))
                || o.key().namespace == "fuzz-good"
        })
    }) || input.contains("fuzz-good");
    if !interferes {
        let host = snap.l7.hosts.get(GOOD_HOST);
        prop_assert!(
            host.is_some_and(|h| !h.routes.is_empty()),
            "good host lost: {:?}",
            snap.diagnostics
        );
        let good_errors: Vec<_> = snap
            .diagnostics
            .iter()
            .filter(|d| d.object.namespace == "fuzz-good" && d.severity == Severity::Error)
            .collect();
        prop_assert!(good_errors.is_empty(), "{good_errors:?}");
    }
    Ok(())
}

#[test]
fn seeds_parse_and_translate() {
    for (name, text) in corpus("manifests") {
        let objects = parse_manifests(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!objects.is_empty() || name.starts_with('5'), "{name}");
        check(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn mutated_manifests_become_objects_or_one_diagnostic(input in mutated()) {
        check(&input)?;
    }
}
