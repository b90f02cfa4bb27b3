//! Checks what `deploy/` asks of a cluster: RBAC is exactly the API calls the controller makes,
//! the DaemonSet is least privilege (never `privileged`, no capability beyond the list), its
//! probes, ports and grace period agree with its flags, and every flag it passes is one
//! `xdp-ingress run` accepts.
//!
//! Runs over the plain manifests (deploy/manifests) and over each Helm chart render that
//! `deploy/check.sh` leaves in `target/deploy-check/rendered-*/` (schema validation against
//! Kubernetes releases is check.sh's job; these are the rules a schema cannot express).

use std::{
    collections::{BTreeMap, BTreeSet},
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use yaml_serde::Value;

/// `(apiGroup, resource, verb)` the controller needs cluster-wide: watches of the kinds it
/// translates, Ingress status written back by the leader, Events on objects with diagnostics
/// (kube-runtime's `Recorder`: events.k8s.io, create then patch for repeats).
const CLUSTER_RULES: &[(&str, &str, &[&str])] = &[
    ("networking.k8s.io", "ingresses", &["get", "list", "watch"]),
    (
        "networking.k8s.io",
        "ingressclasses",
        &["get", "list", "watch"],
    ),
    (
        "networking.k8s.io",
        "ingresses/status",
        &["update", "patch"],
    ),
    ("", "services", &["get", "list", "watch"]),
    ("", "nodes", &["get", "list", "watch"]),
    ("", "secrets", &["get", "list", "watch"]),
    ("", "configmaps", &["get", "list", "watch"]),
    (
        "discovery.k8s.io",
        "endpointslices",
        &["get", "list", "watch"],
    ),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("", "namespaces", &["get", "list", "watch"]),
    (
        "gateway.networking.k8s.io",
        "gatewayclasses",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "gateways",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "referencegrants",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "gatewayclasses/status",
        &["patch"],
    ),
    ("gateway.networking.k8s.io", "gateways/status", &["patch"]),
    (
        "gateway.networking.k8s.io",
        "httproutes/status",
        &["get", "patch"],
    ),
    (
        "gateway.networking.k8s.io",
        "tcproutes",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "udproutes",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "tcproutes/status",
        &["get", "patch"],
    ),
    (
        "gateway.networking.k8s.io",
        "udproutes/status",
        &["get", "patch"],
    ),
    (
        "gateway.networking.k8s.io",
        "tlsroutes",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "tlsroutes/status",
        &["get", "patch"],
    ),
    (
        "gateway.networking.k8s.io",
        "grpcroutes",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "grpcroutes/status",
        &["get", "patch"],
    ),
    (
        "gateway.networking.k8s.io",
        "backendtlspolicies",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "backendtlspolicies/status",
        &["get", "patch"],
    ),
    (
        "gateway.networking.k8s.io",
        "listenersets",
        &["get", "list", "watch"],
    ),
    (
        "gateway.networking.k8s.io",
        "listenersets/status",
        &["patch"],
    ),
];

/// What it needs in its own namespace: the leader-election Lease.
const NAMESPACED_RULES: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "update"],
)];

/// With `--secret-namespaces`: what it needs in each listed namespace instead of cluster-wide
/// Secret and ConfigMap access (one namespaced watch of TLS Secrets and of ConfigMaps each).
const SECRET_RULES: &[(&str, &str, &[&str])] = &[
    ("", "secrets", &["get", "list", "watch"]),
    ("", "configmaps", &["get", "list", "watch"]),
];

/// With `--configmap NS/NAME`: what it needs in NS (a watch of its ConfigMaps).
const CONFIGMAP_RULES: &[(&str, &str, &[&str])] = &[("", "configmaps", &["get", "list", "watch"])];

/// Capabilities the daemon may ask for: load BPF programs and maps (BPF, PERFMON), attach to
/// the NIC (NET_ADMIN), listen on ports below 1024 (NET_BIND_SERVICE, only when it does).
const ALLOWED_CAPABILITIES: &[&str] = &["BPF", "PERFMON", "NET_ADMIN", "NET_BIND_SERVICE"];

type Rules = BTreeSet<(String, String, String)>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// One set of objects to check: the plain manifests or one chart render.
struct Bundle {
    name: String,
    objects: Vec<Value>,
}

impl Bundle {
    fn load(dir: &Path) -> Bundle {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .filter(|p| !p.ends_with("kustomization.yaml"))
            .collect();
        files.sort();
        let mut objects = Vec::new();
        for file in files {
            let text = fs::read_to_string(&file).expect("readable manifest");
            for doc in yaml_serde::Deserializer::from_str(&text) {
                let value = Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", file.display()));
                if !value.is_null() {
                    objects.push(value);
                }
            }
        }
        assert!(!objects.is_empty(), "no objects in {}", dir.display());
        Bundle {
            name: dir.display().to_string(),
            objects,
        }
    }

    fn of_kind(&self, kind: &'static str) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(move |o| str_at(o, &["kind"]) == Some(kind))
    }

    fn one(&self, kind: &'static str) -> &Value {
        let all: Vec<_> = self.of_kind(kind).collect();
        assert_eq!(all.len(), 1, "{}: expected exactly one {kind}", self.name);
        all[0]
    }

    fn daemonset(&self) -> DaemonSet<'_> {
        DaemonSet::new(self.one("DaemonSet"), self)
    }
}

/// Plain manifests always; chart renders when deploy/check.sh has produced them.
fn bundles() -> Vec<Bundle> {
    let mut out = vec![Bundle::load(&repo_root().join("deploy/manifests"))];
    let rendered = env::var_os("DEPLOY_CHECK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("deploy-check"));
    let mut renders: Vec<PathBuf> = fs::read_dir(&rendered)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    renders.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rendered-"))
    });
    renders.sort();
    if renders.is_empty() {
        eprintln!(
            "note: no chart renders in {} (run deploy/check.sh first); checking deploy/manifests only",
            rendered.display()
        );
    }
    out.extend(renders.iter().map(|p| Bundle::load(p)));
    out
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or("<unnamed>")
}

fn expected(rules: &[(&str, &str, &[&str])]) -> Rules {
    rules
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// Expands a Role/ClusterRole into `(group, resource, verb)` triples, refusing anything that a
/// triple cannot express exactly (wildcards, resourceNames, nonResourceURLs).
fn rules_of(role: &Value, bundle: &str) -> Rules {
    let what = format!(
        "{bundle}: {} {}",
        str_at(role, &["kind"]).unwrap_or(""),
        name_of(role)
    );
    let mut out = Rules::new();
    for rule in at(role, &["rules"])
        .and_then(Value::as_sequence)
        .expect("role has rules")
    {
        for key in ["resourceNames", "nonResourceURLs"] {
            assert!(rule.get(key).is_none(), "{what}: unexpected {key}");
        }
        let (groups, resources, verbs) = (
            strings(rule.get("apiGroups")),
            strings(rule.get("resources")),
            strings(rule.get("verbs")),
        );
        for field in [&groups, &resources, &verbs] {
            assert!(
                !field.iter().any(|s| s.contains('*')),
                "{what}: wildcard in {rule:?}"
            );
            assert!(!field.is_empty(), "{what}: empty list in {rule:?}");
        }
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn diff(actual: &Rules, wanted: &Rules) -> String {
    let extra: Vec<_> = actual.difference(wanted).collect();
    let missing: Vec<_> = wanted.difference(actual).collect();
    format!("not used by the controller: {extra:?}; needed but missing: {missing:?}")
}

/// The DaemonSet's pod, its one container and the flag values it passes.
struct DaemonSet<'a> {
    object: &'a Value,
    pod: &'a Value,
    container: &'a Value,
    /// `--flag` → value, `$(VAR)` resolved through the container's env and the ConfigMap.
    flags: BTreeMap<String, String>,
}

impl<'a> DaemonSet<'a> {
    fn new(object: &'a Value, bundle: &'a Bundle) -> DaemonSet<'a> {
        let pod = at(object, &["spec", "template", "spec"]).expect("pod template");
        let containers = pod
            .get("containers")
            .and_then(Value::as_sequence)
            .expect("containers");
        assert_eq!(
            containers.len(),
            1,
            "{}: one container expected",
            bundle.name
        );
        let container = &containers[0];
        let args = strings(container.get("args"));
        assert_eq!(
            args.first().map(String::as_str),
            Some("run"),
            "{}: args start with `run`",
            bundle.name
        );
        let env = env_values(container, bundle);
        let mut flags = BTreeMap::new();
        for arg in &args[1..] {
            // `--flag=value`, or a bare `--switch` (recorded with an empty value).
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, resolve(value, &env)),
                None => (arg.as_str(), String::new()),
            };
            assert!(flag.starts_with("--"), "{}: not a flag: {arg}", bundle.name);
            assert!(
                flags.insert(flag.to_string(), value).is_none(),
                "{}: {flag} given twice",
                bundle.name
            );
        }
        DaemonSet {
            object,
            pod,
            container,
            flags,
        }
    }

    fn flag(&self, name: &str) -> &str {
        self.flags
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("DaemonSet passes no {name}"))
    }

    fn port_flag(&self, name: &str) -> u16 {
        let v = self.flag(name);
        let port = v.rsplit(':').next().unwrap_or(v);
        port.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: no port"))
    }

    fn container_port(&self, name: &str) -> u16 {
        self.container
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|p| str_at(p, &["name"]) == Some(name))
            .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("no container port named {name}"))
    }
}

/// Container env: literal values, ConfigMap keys and the pod's namespace (`None` for values
/// known only at run time, such as the node name).
fn env_values(container: &Value, bundle: &Bundle) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for e in container
        .get("env")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let name = str_at(e, &["name"]).expect("env name").to_string();
        let value = if let Some(v) = str_at(e, &["value"]) {
            Some(v.to_string())
        } else if let Some(r) = at(e, &["valueFrom", "configMapKeyRef"]) {
            let (cm, key) = (
                str_at(r, &["name"]).expect("name"),
                str_at(r, &["key"]).expect("key"),
            );
            let map = bundle
                .of_kind("ConfigMap")
                .find(|c| name_of(c) == cm)
                .unwrap_or_else(|| {
                    panic!("{}: env {name} reads missing ConfigMap {cm}", bundle.name)
                });
            let v = str_at(map, &["data", key])
                .unwrap_or_else(|| panic!("{}: ConfigMap {cm} has no key {key}", bundle.name));
            Some(v.to_string())
        } else if str_at(e, &["valueFrom", "fieldRef", "fieldPath"]) == Some("metadata.namespace") {
            // The pod runs in the DaemonSet's namespace.
            str_at(bundle.one("DaemonSet"), &["metadata", "namespace"]).map(str::to_owned)
        } else {
            None
        };
        out.insert(name, value);
    }
    out
}

/// Expands every `$(VAR)` in a flag value as the kubelet does (`<VAR>` when known only at run
/// time).
fn resolve(value: &str, env: &BTreeMap<String, Option<String>>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        let end = rest[start..]
            .find(')')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("flag value {value}: unclosed $("));
        let var = &rest[start + 2..end];
        out.push_str(&rest[..start]);
        match env.get(var) {
            Some(Some(v)) => out.push_str(v),
            Some(None) => out.push_str(&format!("<{var}>")),
            None => panic!("flag value {value} names no env var of the container"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn seconds(duration: &str) -> u64 {
    duration
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("duration {duration:?}: expected whole seconds like 30s"))
}

#[test]
fn rbac_is_exactly_what_the_controller_calls() {
    for b in bundles() {
        let ds = b.daemonset();
        let namespace = str_at(ds.object, &["metadata", "namespace"]).expect("DaemonSet namespace");
        let account = str_at(ds.pod, &["serviceAccountName"]).expect("serviceAccountName");

        // `--secret-namespaces`: Secrets move from the ClusterRole to a Role per namespace.
        let secret_namespaces: BTreeSet<&str> = ds
            .flags
            .get("--secret-namespaces")
            .map(|v| v.split(',').collect())
            .unwrap_or_default();
        let cluster_role = b.one("ClusterRole");
        let rules = rules_of(cluster_role, &b.name);
        let mut wanted = expected(CLUSTER_RULES);
        if !secret_namespaces.is_empty() {
            wanted.retain(|(_, resource, _)| resource != "secrets" && resource != "configmaps");
        }
        assert_eq!(
            rules,
            wanted,
            "{}: ClusterRole: {}",
            b.name,
            diff(&rules, &wanted)
        );

        // `--configmap NS/NAME`: a ConfigMap Role in NS.
        let configmap_namespace: Option<&str> = ds
            .flags
            .get("--configmap")
            .map(|v| v.split('/').next().unwrap_or_default());
        // Every Role is the Lease Role in the pod's namespace, a Secret Role in a listed
        // namespace or the ConfigMap Role; exactly one of each, nothing else.
        let mut lease_roles = 0;
        let mut configmap_roles = Vec::new();
        let mut secret_role_namespaces = BTreeSet::new();
        for role in b.of_kind("Role") {
            let ns = str_at(role, &["metadata", "namespace"]).expect("Role namespace");
            let rules = rules_of(role, &b.name);
            if rules == expected(NAMESPACED_RULES) {
                assert_eq!(ns, namespace, "{}: Lease Role namespace", b.name);
                lease_roles += 1;
            } else if rules == expected(CONFIGMAP_RULES) {
                configmap_roles.push(ns);
            } else {
                let wanted = expected(SECRET_RULES);
                assert_eq!(
                    rules,
                    wanted,
                    "{}: Role {ns}/{}: {}",
                    b.name,
                    name_of(role),
                    diff(&rules, &wanted)
                );
                assert!(
                    secret_role_namespaces.insert(ns),
                    "{}: two Secret Roles in {ns}",
                    b.name
                );
            }
        }
        assert_eq!(lease_roles, 1, "{}: one Lease Role", b.name);
        assert_eq!(
            configmap_roles,
            Vec::from_iter(configmap_namespace),
            "{}: a ConfigMap Role exactly in the --configmap namespace",
            b.name
        );
        assert_eq!(
            secret_role_namespaces, secret_namespaces,
            "{}: a Secret Role in exactly the --secret-namespaces",
            b.name
        );

        let role_of = |binding: &Value| -> (&'static str, String) {
            let ns = str_at(binding, &["metadata", "namespace"]);
            let name = str_at(binding, &["roleRef", "name"]).unwrap_or_default();
            match str_at(binding, &["roleRef", "kind"]) {
                Some("ClusterRole") => ("ClusterRole", name.to_string()),
                _ => {
                    let found = b
                        .of_kind("Role")
                        .any(|r| name_of(r) == name && str_at(r, &["metadata", "namespace"]) == ns);
                    assert!(
                        found,
                        "{}: {} binds a missing Role {name}",
                        b.name,
                        name_of(binding)
                    );
                    ("Role", name.to_string())
                }
            }
        };
        assert_eq!(
            b.of_kind("RoleBinding").count(),
            1 + secret_namespaces.len() + configmap_roles.len(),
            "{}: one RoleBinding per Role",
            b.name
        );
        let cluster_binding = b.one("ClusterRoleBinding");
        assert_eq!(
            role_of(cluster_binding),
            ("ClusterRole", name_of(cluster_role).to_string()),
            "{}",
            b.name
        );
        for binding in std::iter::once(cluster_binding).chain(b.of_kind("RoleBinding")) {
            if str_at(binding, &["kind"]) == Some("RoleBinding") {
                assert_eq!(
                    role_of(binding).0,
                    "Role",
                    "{}: {}",
                    b.name,
                    name_of(binding)
                );
            }
            let subjects = binding
                .get("subjects")
                .and_then(Value::as_sequence)
                .expect("subjects");
            assert_eq!(
                subjects.len(),
                1,
                "{}: {} binds one subject",
                b.name,
                name_of(binding)
            );
            assert_eq!(
                str_at(&subjects[0], &["kind"]),
                Some("ServiceAccount"),
                "{}",
                b.name
            );
            assert_eq!(str_at(&subjects[0], &["name"]), Some(account), "{}", b.name);
            assert_eq!(
                str_at(&subjects[0], &["namespace"]),
                Some(namespace),
                "{}",
                b.name
            );
        }
        let sa = b.one("ServiceAccount");
        assert_eq!(
            name_of(sa),
            account,
            "{}: the DaemonSet's ServiceAccount is created",
            b.name
        );

        // Leases are looked up in --election-namespace, which must be where the Role grants them
        // (POD_NAMESPACE, checked below to be the pod's own namespace).
        assert_eq!(ds.flag("--election-namespace"), namespace, "{}", b.name);
        let pod_ns = ds
            .container
            .get("env")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|e| str_at(e, &["name"]) == Some("POD_NAMESPACE"))
            .and_then(|e| str_at(e, &["valueFrom", "fieldRef", "fieldPath"]));
        assert_eq!(
            pod_ns,
            Some("metadata.namespace"),
            "{}: POD_NAMESPACE",
            b.name
        );
    }
}

/// The `secretNamespaces` render (deploy/helm/ci/secret-namespaces-values.yaml) exists and
/// reads Secrets only through its Roles; the rules themselves are checked above.
#[test]
fn secret_namespaces_mode_has_no_cluster_wide_secret_access() {
    let all = bundles();
    if all.len() == 1 {
        eprintln!("note: no chart renders (run deploy/check.sh first); nothing to check");
        return;
    }
    let scoped: Vec<&Bundle> = all
        .iter()
        .filter(|b| b.daemonset().flags.contains_key("--secret-namespaces"))
        .collect();
    assert!(!scoped.is_empty(), "no render with secretNamespaces");
    for b in scoped {
        let listed: BTreeSet<String> = b
            .daemonset()
            .flag("--secret-namespaces")
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(
            listed,
            ["blog", "shop", "xdp-ingress"].map(String::from).into(),
            "{}",
            b.name
        );
        let cluster = rules_of(b.one("ClusterRole"), &b.name);
        assert!(
            !cluster.iter().any(|(_, r, _)| r == "secrets"),
            "{}: ClusterRole grants secrets: {cluster:?}",
            b.name
        );
        let with_secrets: BTreeSet<&str> = b
            .of_kind("Role")
            .filter(|r| {
                rules_of(r, &b.name)
                    .iter()
                    .any(|(_, res, _)| res == "secrets")
            })
            .filter_map(|r| str_at(r, &["metadata", "namespace"]))
            .collect();
        assert_eq!(
            with_secrets,
            ["blog", "shop", "xdp-ingress"].into(),
            "{}",
            b.name
        );
    }
}

#[test]
fn daemonset_is_least_privilege() {
    for b in bundles() {
        let ds = b.daemonset();
        let pod = ds.pod;
        for key in ["hostPID", "hostIPC"] {
            assert_ne!(
                pod.get(key).and_then(Value::as_bool),
                Some(true),
                "{}: {key}",
                b.name
            );
        }
        assert!(
            pod.get("initContainers").is_none(),
            "{}: no init containers expected",
            b.name
        );
        let sc = ds
            .container
            .get("securityContext")
            .expect("container securityContext");
        assert_ne!(
            sc.get("privileged").and_then(Value::as_bool),
            Some(true),
            "{}: privileged",
            b.name
        );
        assert_eq!(
            sc.get("allowPrivilegeEscalation").and_then(Value::as_bool),
            Some(false),
            "{}",
            b.name
        );
        assert_eq!(
            sc.get("readOnlyRootFilesystem").and_then(Value::as_bool),
            Some(true),
            "{}",
            b.name
        );
        assert_eq!(
            strings(at(sc, &["capabilities", "drop"])),
            ["ALL"],
            "{}: drop ALL first",
            b.name
        );
        let added: BTreeSet<String> = strings(at(sc, &["capabilities", "add"]))
            .into_iter()
            .collect();
        let beyond: Vec<_> = added
            .iter()
            .filter(|c| !ALLOWED_CAPABILITIES.contains(&c.as_str()))
            .collect();
        assert!(
            beyond.is_empty(),
            "{}: capabilities beyond {ALLOWED_CAPABILITIES:?}: {beyond:?}",
            b.name
        );
        for needed in ["BPF", "PERFMON", "NET_ADMIN"] {
            assert!(added.contains(needed), "{}: {needed} missing", b.name);
        }
        let low_port = ds.port_flag("--http-port") < 1024 || ds.port_flag("--https-port") < 1024;
        assert_eq!(
            added.contains("NET_BIND_SERVICE"),
            low_port,
            "{}: NET_BIND_SERVICE exactly when a listener is below 1024",
            b.name
        );

        // The only host path is bpffs. The API server allows Bidirectional propagation only for
        // privileged containers, and files (pins) need none.
        let volumes = pod
            .get("volumes")
            .and_then(Value::as_sequence)
            .expect("volumes");
        let host_paths: Vec<(&str, &str)> = volumes
            .iter()
            .filter_map(|v| Some((str_at(v, &["name"])?, str_at(v, &["hostPath", "path"])?)))
            .collect();
        assert_eq!(host_paths.len(), 1, "{}: host paths {host_paths:?}", b.name);
        let (bpffs, path) = host_paths[0];
        assert_eq!(path, "/sys/fs/bpf", "{}", b.name);
        let mount = ds
            .container
            .get("volumeMounts")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .find(|m| str_at(m, &["name"]) == Some(bpffs))
            .unwrap_or_else(|| panic!("{}: bpffs not mounted", b.name));
        assert_eq!(
            str_at(mount, &["mountPath"]),
            Some("/sys/fs/bpf"),
            "{}",
            b.name
        );
        assert_eq!(
            str_at(mount, &["mountPropagation"]),
            Some("HostToContainer"),
            "{}",
            b.name
        );
        assert!(
            ds.flag("--bpf-pin-root").starts_with("/sys/fs/bpf/"),
            "{}: pins must land in the mounted host bpffs",
            b.name
        );
    }
}

#[test]
fn daemonset_serves_on_the_node_with_probes_updates_and_drain() {
    for b in bundles() {
        let ds = b.daemonset();
        assert_eq!(
            ds.pod.get("hostNetwork").and_then(Value::as_bool),
            Some(true),
            "{}",
            b.name
        );
        assert_eq!(
            str_at(ds.pod, &["dnsPolicy"]),
            Some("ClusterFirstWithHostNet"),
            "{}",
            b.name
        );
        assert_eq!(ds.flag("--node-name"), "<NODE_NAME>", "{}", b.name);

        // Listener flags and container ports agree; probes hit the metrics listener.
        assert_eq!(
            ds.container_port("http"),
            ds.port_flag("--http-port"),
            "{}",
            b.name
        );
        assert_eq!(
            ds.container_port("https"),
            ds.port_flag("--https-port"),
            "{}",
            b.name
        );
        assert_eq!(
            ds.container_port("metrics"),
            ds.port_flag("--metrics-addr"),
            "{}",
            b.name
        );
        for (probe, path) in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ] {
            let get = at(ds.container, &[probe, "httpGet"])
                .unwrap_or_else(|| panic!("{}: {probe}", b.name));
            assert_eq!(str_at(get, &["path"]), Some(path), "{}: {probe}", b.name);
            assert_eq!(
                str_at(get, &["port"]),
                Some("metrics"),
                "{}: {probe}",
                b.name
            );
        }

        let strategy = at(ds.object, &["spec", "updateStrategy"]).expect("updateStrategy");
        assert_eq!(
            str_at(strategy, &["type"]),
            Some("RollingUpdate"),
            "{}",
            b.name
        );
        assert!(
            at(strategy, &["rollingUpdate", "maxUnavailable"]).is_some(),
            "{}",
            b.name
        );
        // A surge pod could not bind the node's ports while the old one drains.
        assert_eq!(
            at(strategy, &["rollingUpdate", "maxSurge"]).and_then(Value::as_u64),
            Some(0),
            "{}",
            b.name
        );

        let drain = seconds(ds.flag("--drain-timeout"));
        let grace = ds
            .pod
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .expect("grace period");
        assert!(
            grace > drain && grace <= drain + 30,
            "{}: terminationGracePeriodSeconds {grace} must just exceed --drain-timeout {drain}s",
            b.name
        );

        let resources = ds.container.get("resources").expect("resources");
        for path in [
            ["requests", "cpu"],
            ["requests", "memory"],
            ["limits", "memory"],
        ] {
            assert!(
                at(resources, &path).is_some(),
                "{}: resources.{}",
                b.name,
                path.join(".")
            );
        }
    }
    // The plain manifests are the documented defaults.
    let plain = Bundle::load(&repo_root().join("deploy/manifests"));
    let ds = plain.daemonset();
    let strategy = at(
        ds.object,
        &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
    );
    assert_eq!(strategy.and_then(Value::as_u64), Some(1));
    assert_eq!(
        ds.flag("--iface"),
        "auto",
        "default: the interface of the default route"
    );
}

#[test]
fn ingress_class_and_services_match_the_daemonset() {
    for b in bundles() {
        let ds = b.daemonset();
        for class in b.of_kind("IngressClass") {
            assert_eq!(name_of(class), ds.flag("--ingress-class"), "{}", b.name);
            assert_eq!(
                str_at(class, &["spec", "controller"]),
                Some(ds.flag("--controller-name")),
                "{}",
                b.name
            );
            assert_eq!(
                ds.flag("--controller-name"),
                "xdp-ingress.dev/controller",
                "{}",
                b.name
            );
        }
        let selector = at(ds.object, &["spec", "selector", "matchLabels"]).expect("selector");
        let labels =
            at(ds.object, &["spec", "template", "metadata", "labels"]).expect("pod labels");
        let services: Vec<_> = b.of_kind("Service").collect();
        assert!(!services.is_empty(), "{}: no Service", b.name);
        // --ingress-service names the Service clients reach (the one exposing `http`): XDP
        // takes its NodePorts over and Ingress status lists the nodes behind it.
        let own = services
            .iter()
            .find(|s| {
                at(s, &["spec", "ports"])
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .any(|p| str_at(p, &["targetPort"]) == Some("http"))
            })
            .unwrap_or_else(|| panic!("{}: no Service targets port http", b.name));
        let own_key = format!(
            "{}/{}",
            str_at(own, &["metadata", "namespace"]).expect("Service namespace"),
            name_of(own)
        );
        assert_eq!(ds.flag("--ingress-service"), own_key, "{}", b.name);
        for svc in services {
            let svc_selector = at(svc, &["spec", "selector"])
                .and_then(Value::as_mapping)
                .expect("selector");
            for (k, v) in svc_selector {
                assert_eq!(
                    labels.get(k),
                    Some(v),
                    "{}: Service {} selects no pod",
                    b.name,
                    name_of(svc)
                );
            }
            for port in at(svc, &["spec", "ports"])
                .and_then(Value::as_sequence)
                .expect("ports")
            {
                let target = str_at(port, &["targetPort"]).expect("named targetPort");
                ds.container_port(target);
            }
        }
        for (k, v) in selector.as_mapping().expect("matchLabels") {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{}: pod template lacks selector label",
                b.name
            );
        }
    }
    let plain = Bundle::load(&repo_root().join("deploy/manifests"));
    // Rolling updates keep flows: the XDP/tc links stay pinned while the pod restarts.
    assert!(
        plain.daemonset().flags.contains_key("--l4-keep-attached"),
        "deploy/manifests: DaemonSet lacks --l4-keep-attached"
    );
    let svc = plain
        .of_kind("Service")
        .find(|s| name_of(s) == "xdp-ingress")
        .expect("ingress Service");
    assert_eq!(str_at(svc, &["spec", "type"]), Some("NodePort"));
    let node_ports: Vec<u64> = at(svc, &["spec", "ports"])
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .collect();
    assert_eq!(node_ports, [30080, 30443]);
}

/// `xdp-ingress run --help`: the built binary if there is one, else `cargo run`.
fn run_help() -> String {
    let bin = target_dir().join("debug/xdp-ingress");
    let output = if bin.is_file() {
        Command::new(&bin).args(["run", "--help"]).output()
    } else {
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        Command::new(cargo)
            .current_dir(repo_root())
            .args([
                "run",
                "-q",
                "-p",
                "ingress-userspace",
                "--bin",
                "xdp-ingress",
                "--",
                "run",
                "--help",
            ])
            .output()
    }
    .expect("running xdp-ingress run --help");
    assert!(
        output.status.success(),
        "xdp-ingress run --help failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

/// Flags of `--help` output with their possible values (empty when free-form).
fn accepted_flags(help: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut flags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_values = false;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('-') && !trimmed.starts_with("- ") && indent <= 6 {
            current = trimmed
                .split([',', ' ', '='])
                .find(|t| t.starts_with("--"))
                .map(|t| t.trim_end_matches(['<', '>']).to_string());
            if let Some(f) = &current {
                flags.entry(f.clone()).or_default();
            }
            in_values = false;
        } else if let Some(f) = &current {
            if let Some(list) = trimmed.strip_prefix("[possible values: ") {
                let list = list.trim_end_matches(']');
                flags
                    .entry(f.clone())
                    .or_default()
                    .extend(list.split(", ").map(str::to_owned));
            } else if trimmed.starts_with("Possible values:") {
                in_values = true;
            } else if in_values && trimmed.starts_with("- ") {
                let v = trimmed[2..].split(':').next().unwrap_or("").trim();
                flags.entry(f.clone()).or_default().insert(v.to_string());
            } else if in_values && !trimmed.is_empty() && !trimmed.starts_with("- ") {
                in_values = false;
            }
        }
    }
    flags
}

/// Flags whose `--help` line takes a value (`--flag <VALUE>`); the others are switches.
fn value_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-') && !l.starts_with("- "))
        .filter_map(|l| {
            let mut words = l.split([',', ' ', '=']).filter(|w| !w.is_empty());
            let flag = words.find(|w| w.starts_with("--"))?;
            words
                .next()
                .is_some_and(|w| w.starts_with('<') || w.starts_with("[<"))
                .then(|| flag.to_string())
        })
        .collect()
}

/// Every `- --flag=` line of the chart's DaemonSet template, including conditional ones.
fn chart_template_flags() -> BTreeSet<String> {
    let path = repo_root().join("deploy/helm/xdp-ingress/templates/daemonset.yaml");
    fs::read_to_string(&path)
        .expect("chart DaemonSet template")
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- --"))
        .map(|l| format!("--{}", l.split('=').next().unwrap_or(l)))
        .collect()
}

#[test]
fn manifest_flags_are_accepted_by_xdp_ingress_run() {
    let help = run_help();
    let accepted = accepted_flags(&help);
    let takes_value = value_flags(&help);
    assert!(
        accepted.contains_key("--iface"),
        "could not parse `run --help`:\n{accepted:?}"
    );
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for b in bundles() {
        let ds = b.daemonset();
        for (flag, value) in &ds.flags {
            used.entry(flag.clone()).or_default().insert(b.name.clone());
            if accepted.contains_key(flag) && value.is_empty() == takes_value.contains(flag) {
                problems.push(if value.is_empty() {
                    format!("{}: {flag} needs a value (--flag=value)", b.name)
                } else {
                    format!("{}: {flag} is a switch and takes no value", b.name)
                });
            }
            let choices = accepted.get(flag).cloned().unwrap_or_default();
            if !choices.is_empty() && !value.starts_with('<') && !choices.contains(value) {
                problems.push(format!(
                    "{}: {flag}={value} is not one of {choices:?}",
                    b.name
                ));
            }
        }
    }
    for flag in chart_template_flags() {
        used.entry(flag)
            .or_default()
            .insert("deploy/helm/xdp-ingress/templates/daemonset.yaml".into());
    }
    let missing: Vec<_> = used.keys().filter(|f| !accepted.contains_key(*f)).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "flags the manifests pass that `xdp-ingress run` does not accept: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
