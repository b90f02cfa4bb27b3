//! The manifest-directory source (`--manifests DIR`): multi-document YAML (or JSON) files of the
//! same kinds the API source watches, re-read within a second of any change.
//!
//! The directory is always loaded whole, so deleting an object from a file deletes it from the
//! store. A file that fails to parse gets an `InvalidManifest` diagnostic and keeps contributing
//! the objects of its last good version, so a half-saved edit never takes routes down.
//! ConfigMaps are kept (translation reads only the one `--configmap` names). Kinds we
//! do not read (Deployments, ...) are skipped silently; namespaced objects without a namespace
//! go to `default`, as `kubectl apply` would put them.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{ConfigMap, Node, Secret, Service},
        discovery::v1::EndpointSlice,
        networking::v1::{Ingress, IngressClass},
    },
};
use notify::Watcher;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{EventSender, SourceEvent};
use crate::{
    model::{Diagnostic, ObjectKind, ObjectRef, Severity},
    store::{Change, Object, Objects, SourceId},
};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("YAML does not parse: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("document {index}: {kind} does not parse: {source}")]
    Object {
        index: usize,
        kind: String,
        source: serde_yaml::Error,
    },
    #[error("document {index}: {kind} has no metadata.name")]
    MissingName { index: usize, kind: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Parses one file's text into objects (all or nothing).
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)?;
        collect(value, index, &mut out)?;
    }
    Ok(out)
}

use serde::Deserialize;

fn collect(
    value: serde_yaml::Value,
    index: usize,
    out: &mut Vec<Object>,
) -> Result<(), ManifestError> {
    if value.is_null() {
        return Ok(());
    }
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    fn typed<T: DeserializeOwned>(
        v: serde_yaml::Value,
        index: usize,
        kind: &str,
    ) -> Result<T, ManifestError> {
        serde_yaml::from_value(v).map_err(|source| ManifestError::Object {
            index,
            kind: kind.to_string(),
            source,
        })
    }
    let object = match kind.as_str() {
        "List" => {
            if let Some(items) = value.get("items").and_then(|i| i.as_sequence()) {
                for item in items.clone() {
                    collect(item, index, out)?;
                }
            }
            return Ok(());
        }
        "Ingress" => Object::Ingress(Arc::new(namespaced(typed::<Ingress>(value, index, &kind)?))),
        "IngressClass" => {
            Object::IngressClass(Arc::new(typed::<IngressClass>(value, index, &kind)?))
        }
        "Service" => Object::Service(Arc::new(namespaced(typed::<Service>(value, index, &kind)?))),
        "EndpointSlice" => Object::EndpointSlice(Arc::new(namespaced(typed::<EndpointSlice>(
            value, index, &kind,
        )?))),
        "Secret" => Object::Secret(Arc::new(secret_data(namespaced(typed::<Secret>(
            value, index, &kind,
        )?)))),
        "Node" => Object::Node(Arc::new(typed::<Node>(value, index, &kind)?)),
        // Every one is kept: translation looks up the `--configmap` one and those
        // `custom-headers` annotations name, by key.
        "ConfigMap" => Object::ConfigMap(Arc::new(namespaced(typed::<ConfigMap>(
            value, index, &kind,
        )?))),
        "Namespace" => Object::Namespace(Arc::new(typed(value, index, &kind)?)),
        "GatewayClass" => Object::GatewayClass(Arc::new(typed(value, index, &kind)?)),
        "Gateway" => Object::Gateway(Arc::new(namespaced(typed(value, index, &kind)?))),
        "HTTPRoute" => Object::HTTPRoute(Arc::new(namespaced(typed(value, index, &kind)?))),
        "ReferenceGrant" => {
            Object::ReferenceGrant(Arc::new(namespaced(typed(value, index, &kind)?)))
        }
        other => {
            debug!(kind = other, "manifest kind not read; skipped");
            return Ok(());
        }
    };
    if object.key().name.is_empty() {
        return Err(ManifestError::MissingName { index, kind });
    }
    out.push(object);
    Ok(())
}

trait HasMeta {
    fn meta(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
}
macro_rules! has_meta {
    ($($t:ty),*) => {$(impl HasMeta for $t { fn meta(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta { &mut self.metadata } })*};
}
has_meta!(
    Ingress,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    gateway_api::apis::standard::gateways::Gateway,
    gateway_api::apis::standard::httproutes::HTTPRoute,
    gateway_api::apis::standard::referencegrants::ReferenceGrant
);

fn namespaced<T: HasMeta>(mut o: T) -> T {
    o.meta()
        .namespace
        .get_or_insert_with(|| "default".to_string());
    o
}

/// `stringData` is merged into `data` (what the API server does on write).
fn secret_data(mut s: Secret) -> Secret {
    if let Some(sd) = s.string_data.take() {
        let data = s.data.get_or_insert_default();
        for (k, v) in sd {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    s
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    ) && !p
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// A manifest directory and the last good objects of each file in it.
#[derive(Debug)]
pub struct ManifestDir {
    dir: PathBuf,
    last_good: BTreeMap<PathBuf, Vec<Object>>,
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> ManifestDir {
        ManifestDir {
            dir: dir.into(),
            last_good: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the whole directory. Never fails as a whole: problems become diagnostics.
    pub fn load(&mut self) -> Objects {
        let mut diagnostics = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_manifest(p) && p.is_file())
                .collect(),
            Err(e) => {
                diagnostics.push(file_diag(
                    &self.dir,
                    &ManifestError::Io {
                        path: self.dir.clone(),
                        source: e,
                    },
                ));
                // Keep serving what was loaded before: the directory may be mid-swap.
                self.last_good.keys().cloned().collect()
            }
        };
        files.sort();
        let mut next = BTreeMap::new();
        for path in files {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|source| ManifestError::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|t| parse_manifests(&t));
            match parsed {
                Ok(objects) => {
                    next.insert(path, objects);
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "manifest file ignored; keeping its last good version");
                    diagnostics.push(file_diag(&path, &e));
                    if let Some(old) = self.last_good.remove(&path) {
                        next.insert(path, old);
                    }
                }
            }
        }
        self.last_good = next;
        let mut objects = Objects::from_objects(self.last_good.values().flatten().cloned());
        objects.diagnostics = diagnostics;
        objects
    }
}

fn file_diag(path: &Path, e: &ManifestError) -> Diagnostic {
    Diagnostic {
        object: ObjectRef::new(ObjectKind::ManifestFile, "", path.display().to_string()),
        severity: Severity::Error,
        reason: "InvalidManifest".into(),
        message: e.to_string(),
    }
}

/// The embedded demo manifests: a NodePort Service over three pods (198.19.<i>.2), and
/// example Ingresses (two hosts, one with TLS, a default backend).
pub const DEFAULT_MANIFESTS: &[(&str, &str)] = &[
    (
        "00-class.yaml",
        include_str!("default_manifests/00-class.yaml"),
    ),
    (
        "10-echo.yaml",
        include_str!("default_manifests/10-echo.yaml"),
    ),
    (
        "20-ingress.yaml",
        include_str!("default_manifests/20-ingress.yaml"),
    ),
    ("30-tls.yaml", include_str!("default_manifests/30-tls.yaml")),
];

/// Writes the embedded default manifests into `dir` (for `--default-manifests` or the demo).
pub fn write_default_manifests(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in DEFAULT_MANIFESTS {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// Parsed default manifests.
pub fn default_objects() -> Result<Objects, ManifestError> {
    let mut all = Vec::new();
    for (_, text) in DEFAULT_MANIFESTS {
        all.extend(parse_manifests(text)?);
    }
    Ok(Objects::from_objects(all))
}

/// How long the watcher waits for a burst of file events to settle before re-reading.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Loads `dir` now (sending the result), then re-loads it after every change until `events`
/// closes. The returned watcher must be kept alive.
pub fn watch(
    mut dir: ManifestDir,
    events: EventSender,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if ev.kind.is_access() => {}
            Ok(_) => {
                let _ = tx.send(Instant::now());
            }
            Err(e) => warn!(error = %e, "manifest watch error"),
        })?;
    watcher.watch(dir.dir(), notify::RecursiveMode::Recursive)?;
    let first = dir.load();
    info!(dir = %dir.dir().display(), objects = first.len(), "manifests loaded");
    let initial = SourceEvent::new(SourceId::Files, Change::ReplaceAll(Box::new(first)));
    tokio::spawn(async move {
        if events.send(initial).await.is_err() {
            return;
        }
        while let Some(first_seen) = rx.recv().await {
            // Let a burst (editor save, ConfigMap symlink swap) settle.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let objects = dir.load();
            debug!(objects = objects.len(), "manifests re-read");
            let ev = SourceEvent {
                source: SourceId::Files,
                change: Change::ReplaceAll(Box::new(objects)),
                at: first_seen,
            };
            if events.send(ev).await.is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
# a comment-only document is fine
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored}
---
apiVersion: v1
kind: Secret
metadata: {name: s, namespace: other}
type: kubernetes.io/tls
stringData: {tls.crt: abc}
data: {tls.key: ZGVm}
"#;

    #[test]
    fn parses_multi_document_yaml() {
        let objects = Objects::from_objects(parse_manifests(TWO).unwrap());
        assert_eq!(objects.len(), 2);
        let (k, _) = objects.services.iter().next().unwrap();
        assert_eq!(k.to_string(), "default/web");
        let s = objects.secrets.values().next().unwrap();
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["tls.crt"].0, b"abc");
        assert_eq!(data["tls.key"].0, b"def");
    }

    #[test]
    fn bad_documents_fail_the_file() {
        for bad in [
            "kind: Service\napiVersion: v1\nmetadata: {name: x}\nspec: {ports: 3}",
            "kind: Service\napiVersion: v1\nspec: {}",
            "kind: [unclosed",
        ] {
            assert!(parse_manifests(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn broken_file_keeps_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, TWO).unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: other}\n",
        )
        .unwrap();
        let mut m = ManifestDir::new(dir.path());
        let first = m.load();
        assert_eq!(first.services.len(), 2);
        assert!(first.diagnostics.is_empty());

        std::fs::write(&f, "apiVersion: v1\nkind: Service\nmetadata: {name: web\n").unwrap();
        let broken = m.load();
        assert_eq!(broken.services.len(), 2, "last good content kept");
        assert_eq!(broken.diagnostics.len(), 1);
        assert_eq!(broken.diagnostics[0].reason, "InvalidManifest");
        assert_eq!(broken.diagnostics[0].object.kind, ObjectKind::ManifestFile);

        std::fs::remove_file(dir.path().join("b.yml")).unwrap();
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: Service\nmetadata: {name: renamed}\n",
        )
        .unwrap();
        let fixed = m.load();
        let names: Vec<String> = fixed.services.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["default/renamed"]);
        assert!(fixed.diagnostics.is_empty());
    }

    #[test]
    fn default_manifests_translate_cleanly() {
        let objects = default_objects().unwrap();
        let snap = crate::model::translate::translate(&objects, &Default::default());
        assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
        assert_eq!(snap.l4.len(), 1);
        assert_eq!(snap.l4[0].endpoints.len(), 3);
        assert!(snap.l7.hosts["secure.example.com"].tls);
        assert!(snap.l7.certificates.contains_key("secure.example.com"));
        assert!(snap.l7.hosts.contains_key("echo.example.com"));
        assert!(snap.l7.default_backend.is_some());
    }
}
