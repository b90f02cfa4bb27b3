//! The manifest-directory source (`--manifests DIR`): multi-document YAML (or JSON) files of the
//! same kinds the API source watches, re-read within a second of any change.
//!
//! The directory is loaded whole at start; after that only the files that changed are read
//! again, and the objects that differ go to the store as upserts and deletes (so deleting an
//! object from a file deletes it from the store, and an edit of one Ingress re-translates only
//! its hosts). While any file has a problem the directory is re-read whole. A file that fails to parse gets an `InvalidManifest` diagnostic and keeps contributing
//! the objects of its last good version, so a half-saved edit never takes routes down; a
//! file that reads as empty or changes under the read keeps them too, for up to [`HOLD`]
//! (a write in progress truncates first), after which an emptied file's objects go.
//! ConfigMaps are kept (translation reads only the one `--configmap` names). Kinds we
//! do not read (Deployments, ...) are skipped silently; namespaced objects without a namespace
//! go to `default`, as `kubectl apply` would put them.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{ConfigMap, Node, Secret},
        networking::v1::IngressClass,
    },
};
use notify::Watcher;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{EventSender, SourceEvent};
use crate::{
    model::{Diagnostic, ObjectKind, ObjectRef, Severity},
    store::{Change, HttpRoute, Key, Object, Objects, SourceId, TcpRoute, TlsRoute, UdpRoute},
};
// The store's kinds, named as its list names them (the decoding is generated from it).
use gateway_api::apis::standard::{
    backendtlspolicies::BackendTlsPolicy, gatewayclasses::GatewayClass, gateways::Gateway,
    grpcroutes::GrpcRoute, listenersets::ListenerSet, referencegrants::ReferenceGrant,
};
use k8s_openapi::api::core::v1::Namespace;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("YAML does not parse: {0}")]
    Yaml(#[from] yaml_serde::Error),
    #[error("JSON does not parse: {0}")]
    Json(#[source] serde_json::Error),
    #[error("document {index}: {kind} does not parse: {source}")]
    Object {
        index: usize,
        kind: String,
        source: serde_json::Error,
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
///
/// Every document becomes a JSON value first, then its kind's type: a file that is one JSON
/// document (as `kubectl get -o json` writes) skips the YAML parser, several times slower on
/// the same text; YAML being a superset of JSON, the objects are the same either way.
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        let value = serde_json::from_str(text).map_err(ManifestError::Json)?;
        collect(value, 0, &mut out)?;
        return Ok(out);
    }
    for (index, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc)?;
        collect(value, index, &mut out)?;
    }
    Ok(out)
}

use serde::Deserialize;

fn collect(
    value: serde_json::Value,
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
    let object = match kind.as_str() {
        "List" => {
            if let serde_json::Value::Object(mut list) = value
                && let Some(serde_json::Value::Array(items)) = list.remove("items")
            {
                for item in items {
                    collect(item, index, out)?;
                }
            }
            return Ok(());
        }
        other => match decode(other, value, index) {
            Some(object) => object?,
            None => {
                debug!(kind = other, "manifest kind not read; skipped");
                return Ok(());
            }
        },
    };
    if object.key().name.is_empty() {
        return Err(ManifestError::MissingName { index, kind });
    }
    out.push(object);
    Ok(())
}

fn typed<T: DeserializeOwned>(
    v: serde_json::Value,
    index: usize,
    kind: &str,
) -> Result<T, ManifestError> {
    serde_json::from_value(v).map_err(|source| ManifestError::Object {
        index,
        kind: kind.to_string(),
        source,
    })
}

/// `o` as the store takes it from a manifest, by the flags of its kind in the store's list:
/// a namespaced object without a namespace goes to `default` (as `kubectl apply` puts it);
/// a Secret's `stringData` is merged into `data`.
macro_rules! as_stored {
    ($o:expr, cluster) => {
        $o
    };
    ($o:expr, namespaced) => {
        namespaced($o)
    };
    ($o:expr, namespaced, string_data) => {
        secret_data(namespaced($o))
    };
}

/// `decode(kind, value, index)`: the store object of manifest `kind` (a Kubernetes `kind`,
/// as the store's variants are named), `None` for a kind the store does not hold.
macro_rules! define_decode {
    ($($(#[$doc:meta])* $variant:ident $field:ident : $ty:ty [$($flag:ident),*],)*) => {
        fn decode(
            kind: &str,
            value: serde_json::Value,
            index: usize,
        ) -> Option<Result<Object, ManifestError>> {
            Some(match kind {
                $(stringify!($variant) => typed::<$ty>(value, index, kind)
                    .map(|o| Object::$variant(Arc::new(as_stored!(o, $($flag),*)))),)*
                _ => return None,
            })
        }
    };
}

crate::store::kinds!(define_decode);

fn namespaced<T: crate::compact::meta::Namespaced>(mut o: T) -> T {
    o.namespace_mut()
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
    last_good: BTreeMap<PathBuf, FileObjects>,
    /// What the last [`ManifestDir::load`] or [`ManifestDir::reload`] made of them.
    ///
    /// Only whether an object is held, as a count per hash of its kind and key: a copy of the
    /// merged view's maps (every key twice more, ~130 bytes an object) was kept only for that
    /// question. Two keys of one hash read as held when one is: the reload then defers to the
    /// full load, which is always right. 32 bits of hash: at 50k objects a new key reads as
    /// held about once in 86,000 (then the full load), and an entry is half of a 64-bit one's.
    held: HashMap<u32, u32>,
    /// Whether the last load reported problems (they must go by a full load).
    had_diagnostics: bool,
    /// Objects more than one file holds (the last file wins): a change of one of them is
    /// resolved by a full [`ManifestDir::load`].
    held_twice: HashSet<(ObjectKind, Key)>,
    /// Files whose last read looked mid-write, held at their last good version (see
    /// [`HOLD`]) until they read as settled or their hold runs out.
    pending: BTreeMap<PathBuf, Pending>,
}

/// One file's last good version.
#[derive(Debug)]
struct FileObjects {
    /// Its objects in file order, without spare capacity (kept as long as the file is).
    objects: Box<[Object]>,
    /// Its text does not end with a newline: for it a text cut mid-line is how the file is
    /// written, not a sign of a write in progress. Only a file with objects live is ever held
    /// ([`ManifestDir::judge`]), so the files without a last good version need no such mark.
    unterminated: bool,
}

impl FileObjects {
    fn new(objects: Vec<Object>, unterminated: bool) -> FileObjects {
        FileObjects {
            objects: objects.into_boxed_slice(),
            unterminated,
        }
    }
}

/// How long a file that has objects live is held at its last good version while it reads as
/// mid-write: empty (no objects: `> file` truncates before the writer writes anything, and
/// `helm template ... > file` may take seconds to render), changing between the two `stat`s
/// around the read, or cut mid-line (no final newline where its last good text had one: a
/// cut line may still parse, as a shorter name or a rule list missing its end). A deliberate emptying goes live after this long; anything else
/// goes live as soon as it is read (within [`SETTLE`]). A second outlasts the pause of a
/// shell redirection, a `kubectl`/`helm` run that renders before writing, or a slow copy,
/// and still deletes a file's objects well before anyone wonders why they are still served.
pub const HOLD: Duration = Duration::from_secs(1);

/// A file held at its last good version (see [`HOLD`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// When it was first read as mid-write (its hold runs out [`HOLD`] later).
    since: Instant,
    /// When to read it again even if no event comes.
    recheck: Instant,
}

/// One manifest file as read once, by [`read_file`].
struct FileRead {
    /// Its objects, or why it does not parse (or cannot be read).
    parsed: Result<Vec<Object>, ManifestError>,
    /// Its size or modification time changed while it was read: a writer is at it.
    changing: bool,
    /// Its text is not empty and does not end with a newline.
    cut: bool,
}

/// Reads and parses one file. With `live` (the file has objects live), a `stat` before and
/// after: a read that a write overlaps is marked `changing`, so its (partial) text is not
/// taken for the file's content. Without, no `stat`: [`ManifestDir::judge`] takes whatever a
/// file with nothing live reads as (nothing to take down), so `changing` would not be looked
/// at; a cold start reads every file that way, two system calls fewer per file.
fn read_file(path: &Path, live: bool) -> FileRead {
    let stat = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let before = if live { stat(path) } else { None };
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        source,
    });
    let cut = text
        .as_ref()
        .is_ok_and(|t| !t.is_empty() && !t.ends_with('\n'));
    let parsed = text.and_then(|t| parse_manifests(&t));
    let changing = live && (before.is_none() || before != stat(path));
    FileRead {
        parsed,
        changing,
        cut,
    }
}

/// What to do with a file just read.
enum Verdict {
    /// Take what was read (objects, or a parse error).
    Take(Result<Vec<Object>, ManifestError>),
    /// Keep the last good version; read again by then.
    Hold(Pending),
}

/// The hash [`ManifestDir`] counts an object under (std's SipHash with fixed keys).
fn held_hash(k: &(ObjectKind, Key)) -> u32 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    // The low 32 bits: SipHash's are all equally mixed.
    BuildHasherDefault::<DefaultHasher>::default().hash_one(k) as u32
}

/// One file's objects by kind and key; a later duplicate in the file wins, as in
/// [`Objects::from_objects`].
fn by_key(objects: &[Object]) -> HashMap<(ObjectKind, Key), &Object> {
    objects.iter().map(|o| ((o.kind(), o.key()), o)).collect()
}

/// Keys (with their kind) that more than one file of `files` holds.
fn held_twice(files: &BTreeMap<PathBuf, FileObjects>) -> HashSet<(ObjectKind, Key)> {
    let mut seen = HashSet::new();
    let mut twice = HashSet::new();
    for file in files.values() {
        for k in by_key(&file.objects).into_keys() {
            if let Some(k) = seen.replace(k) {
                twice.insert(k);
            }
        }
    }
    twice
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> ManifestDir {
        ManifestDir {
            dir: dir.into(),
            last_good: BTreeMap::new(),
            held: HashMap::new(),
            had_diagnostics: false,
            held_twice: HashSet::new(),
            pending: BTreeMap::new(),
        }
    }

    /// When the watcher must read the held files again ([`ManifestDir::due`]) even if no
    /// event comes: the earliest recheck of a file held at its last good version.
    pub fn next_recheck(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.recheck).min()
    }

    /// The held files due to be read again at `now` (their recheck time has come).
    pub fn due(&self, now: Instant) -> Vec<PathBuf> {
        self.pending
            .iter()
            .filter(|(_, p)| p.recheck <= now)
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Whether `path` has objects live (its last good version has some).
    fn is_live(&self, path: &Path) -> bool {
        self.last_good
            .get(path)
            .is_some_and(|f| !f.objects.is_empty())
    }

    /// Whether `read` of `path` is taken or held: held while it looks mid-write (empty,
    /// changing under the read, or newly cut mid-line) and the file has objects live, for at
    /// most [`HOLD`] from the first such read; a file with nothing live has nothing to take
    /// down.
    fn judge(&self, path: &Path, read: FileRead, now: Instant) -> Verdict {
        let live = self.is_live(path);
        let empty = matches!(&read.parsed, Ok(o) if o.is_empty());
        let cut = read.cut && !self.last_good.get(path).is_some_and(|f| f.unterminated);
        if !live || !(read.changing || empty || cut) {
            return Verdict::Take(read.parsed);
        }
        let held = self.pending.get(path);
        let since = held.map_or(now, |p| p.since);
        let until = since + HOLD;
        if now >= until {
            if empty {
                info!(file = %path.display(), hold = ?HOLD, "manifest file still empty; its objects are deleted");
            }
            return Verdict::Take(read.parsed);
        }
        if held.is_none() {
            info!(
                file = %path.display(),
                hold = ?HOLD,
                why = if read.changing {
                    "changing while read"
                } else if empty {
                    "empty"
                } else {
                    "cut mid-line"
                },
                "manifest file looks mid-write; keeping its last good version meanwhile"
            );
        }
        // Empty or cut: read again when the hold runs out (a write ends it earlier by its
        // event).
        // Changing: again soon, as a burst of events would settle.
        let recheck = if read.changing {
            (now + SETTLE).min(until)
        } else {
            until
        };
        Verdict::Hold(Pending { since, recheck })
    }

    /// Reads again only `paths` (files of the directory that changed, or were created or
    /// removed) and returns what changed in the objects: work in proportion to those files,
    /// not to the directory. `None` when the whole directory must be read again
    /// ([`ManifestDir::load`]): a path that is not a file of the directory, a file that does
    /// not parse, an object another file holds too, or a problem reported before (its
    /// diagnostic must go).
    pub fn reload(&mut self, paths: &[PathBuf]) -> Option<Change> {
        self.reload_at(paths, Instant::now())
    }

    /// [`ManifestDir::reload`] at `now` (the clock the holds of [`HOLD`] are measured by).
    pub fn reload_at(&mut self, paths: &[PathBuf], now: Instant) -> Option<Change> {
        if paths.is_empty() || self.had_diagnostics {
            return None;
        }
        let mut read = BTreeMap::new();
        let mut holds = BTreeMap::new();
        let mut cut = HashSet::new();
        for path in paths {
            if path.parent() != Some(self.dir.as_path()) {
                return None;
            }
            if !is_manifest(path) {
                continue;
            }
            // `None`: the file is gone.
            let objects = if path.is_file() {
                let read = read_file(path, self.is_live(path));
                if read.cut {
                    cut.insert(path.clone());
                }
                match self.judge(path, read, now) {
                    Verdict::Take(parsed) => Some(parsed.ok()?),
                    Verdict::Hold(p) => {
                        holds.insert(path.clone(), p);
                        continue;
                    }
                }
            } else {
                None
            };
            read.insert(path.clone(), objects);
        }
        // Decide before touching anything: `None` leaves the state as it was.
        let mut changes = Vec::new();
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let mut touched = HashSet::new();
        for (path, objects) in &read {
            let old = by_key(self.last_good.get(path).map_or(&[][..], |f| &f.objects[..]));
            let new = by_key(objects.as_deref().unwrap_or_default());
            for (k, o) in &new {
                // Held twice before, or now by two of the changed files.
                if self.held_twice.contains(k) || !touched.insert(k.clone()) {
                    return None;
                }
                match old.get(k) {
                    // An unchanged object of a changed file is not a change.
                    Some(was) if *was == *o => {}
                    Some(_) => changes.push(Change::Upsert((*o).clone())),
                    // New to this file but held by another: which one wins is the full load's
                    // to say.
                    None if self.held.contains_key(&held_hash(k)) => return None,
                    None => {
                        added.push(held_hash(k));
                        changes.push(Change::Upsert((*o).clone()));
                    }
                }
            }
            for k in old.keys().filter(|k| !new.contains_key(*k)) {
                if self.held_twice.contains(k) {
                    return None;
                }
                removed.push(held_hash(k));
                changes.push(Change::Delete(k.0, k.1.clone()));
            }
        }
        for path in read.keys() {
            self.pending.remove(path);
        }
        self.pending.extend(holds);
        for (path, objects) in read {
            match objects {
                Some(o) => {
                    let unterminated = cut.contains(&path);
                    self.last_good
                        .insert(path, FileObjects::new(o, unterminated))
                }
                None => self.last_good.remove(&path),
            };
        }
        for h in added {
            *self.held.entry(h).or_default() += 1;
        }
        for h in removed {
            if let Some(n) = self.held.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&h);
                }
            }
        }
        Some(Change::Batch(changes))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the whole directory. Never fails as a whole: problems become diagnostics.
    pub fn load(&mut self) -> Objects {
        self.load_at(Instant::now())
    }

    /// [`ManifestDir::load`] at `now` (the clock the holds of [`HOLD`] are measured by).
    pub fn load_at(&mut self, now: Instant) -> Objects {
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
        let reads = read_and_parse(&files, |p| self.is_live(p));
        // In name order, each file once: collected at once into the map below, whose nodes
        // that fills (inserted one by one in order, they would stay about half full).
        let mut next = Vec::with_capacity(files.len());
        let mut pending = BTreeMap::new();
        for (path, read) in files.into_iter().zip(reads) {
            let cut = read.cut;
            // Held or not parsing: the last good version stays, and so does what its text
            // ended with.
            let parsed = match self.judge(&path, read, now) {
                Verdict::Take(parsed) => parsed,
                Verdict::Hold(p) => {
                    pending.insert(path.clone(), p);
                    if let Some(old) = self.last_good.remove(&path) {
                        next.push((path, old));
                    }
                    continue;
                }
            };
            match parsed {
                Ok(objects) => next.push((path, FileObjects::new(objects, cut))),
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "manifest file ignored; keeping its last good version");
                    diagnostics.push(file_diag(&path, &e));
                    if let Some(old) = self.last_good.remove(&path) {
                        next.push((path, old));
                    }
                }
            }
        }
        let next: BTreeMap<PathBuf, FileObjects> = next.into_iter().collect();
        self.held = HashMap::new();
        for k in next.values().flat_map(|f| by_key(&f.objects).into_keys()) {
            *self.held.entry(held_hash(&k)).or_default() += 1;
        }
        // A key two files hold has a hash counted twice: without one (nearly always), no
        // second walk of every key (a cold start's merge).
        self.held_twice = if self.held.values().any(|&n| n > 1) {
            held_twice(&next)
        } else {
            HashSet::new()
        };
        diagnostics.extend(shadowed(&next, &self.held_twice));
        self.last_good = next;
        self.pending = pending;
        let mut objects = Objects::from_objects(
            self.last_good
                .values()
                .flat_map(|f| f.objects.iter().cloned()),
        );
        objects.diagnostics = diagnostics;
        self.had_diagnostics = !objects.diagnostics.is_empty();
        objects
    }
}

/// Reads and parses `files`, in order, on as many threads as there are cores (at most one
/// per 64 files): at start-up a directory of thousands of files is mostly parsing. `live`
/// says which files have objects live ([`read_file`]).
fn read_and_parse(files: &[PathBuf], live: impl Fn(&Path) -> bool + Sync) -> Vec<FileRead> {
    let live = &live;
    let one = |path: &PathBuf| read_file(path, live(path));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len() / 64)
        .max(1);
    if threads == 1 {
        return files.iter().map(one).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(parsed) => parsed,
                // A panic in a parser is a bug; it surfaces where a sequential parse would.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// A Warning `DuplicateObject` on each file whose copy of an object another file, read later
/// (file names in order), replaces: which copy is served is not what a reader of the first
/// file expects, so it is said rather than left to the file order.
fn shadowed(
    files: &BTreeMap<PathBuf, FileObjects>,
    twice: &HashSet<(ObjectKind, Key)>,
) -> Vec<Diagnostic> {
    if twice.is_empty() {
        return Vec::new();
    }
    let mut holders: BTreeMap<&(ObjectKind, Key), Vec<&Path>> = BTreeMap::new();
    for (path, file) in files {
        for k in by_key(&file.objects).into_keys() {
            if let Some(k) = twice.get(&k) {
                holders.entry(k).or_default().push(path);
            }
        }
    }
    let mut out = Vec::new();
    for ((kind, key), paths) in holders {
        let Some((winner, losers)) = paths.split_last() else {
            continue;
        };
        for lost in losers {
            out.push(Diagnostic {
                object: ObjectRef::new(ObjectKind::ManifestFile, "", lost.display().to_string()),
                severity: Severity::Warning,
                reason: "DuplicateObject".into(),
                message: format!(
                    "{kind:?} {key} is also in {}, which comes later in name order and is \
                     served; this file's copy is ignored",
                    winner.display()
                ),
            });
        }
    }
    out
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

/// How long the watcher waits for a burst of file events to settle before re-reading. An
/// editor's save (write, rename) and a ConfigMap volume's symlink swap come within a
/// millisecond or two; a file read mid-write fails to parse, reads as empty or changes
/// under the read, and keeps its last good version (see [`HOLD`]) until it is read again.
/// Part of every changed file's time to live (target 250 ms).
pub const SETTLE: Duration = Duration::from_millis(50);

/// Loads `dir` now (sending the result), then re-loads it after every change until `events`
/// closes. The returned watcher must be kept alive.
pub fn watch(
    mut dir: ManifestDir,
    events: EventSender,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<PathBuf>)>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if ev.kind.is_access() => {}
            Ok(ev) => {
                let _ = tx.send((Instant::now(), ev.paths));
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
        loop {
            // An event, or the time to read again a file held at its last good version (no
            // event may ever come for it: a file emptied and left so).
            let event = match dir.next_recheck() {
                Some(at) => {
                    match tokio::time::timeout_at(tokio::time::Instant::from_std(at), rx.recv())
                        .await
                    {
                        Ok(event) => event,
                        Err(_) => {
                            let now = Instant::now();
                            let due = dir.due(now);
                            if due.is_empty() {
                                continue;
                            }
                            Some((now, due))
                        }
                    }
                }
                None => rx.recv().await,
            };
            let Some((first_seen, mut paths)) = event else {
                return;
            };
            // Let a burst (editor save, ConfigMap symlink swap) settle.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some((_, more))) => paths.extend(more),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            paths.sort();
            paths.dedup();
            let change = match dir.reload(&paths) {
                Some(Change::Batch(changes)) if changes.is_empty() => continue,
                Some(change) => {
                    debug!(files = paths.len(), "manifest files re-read");
                    change
                }
                None => {
                    let objects = dir.load();
                    debug!(objects = objects.len(), "manifests re-read");
                    Change::ReplaceAll(Box::new(objects))
                }
            };
            let ev = SourceEvent {
                source: SourceId::Files,
                change,
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

    /// One object of every kind the store holds, as a manifest file.
    const EVERY_KIND: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: i}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: c}
---
apiVersion: v1
kind: Service
metadata: {name: s}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: e}
addressType: IPv4
endpoints: []
---
apiVersion: v1
kind: Secret
metadata: {name: t}
---
apiVersion: v1
kind: Node
metadata: {name: n}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: m}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec: {gatewayClassName: gc, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: hr}
spec: {}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg}
spec: {from: [], to: []}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec: {}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: btls}
spec: {targetRefs: [], validation: {hostname: b.example}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: tcp}
spec: {rules: []}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {name: udp}
spec: {rules: []}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tls}
spec: {hostnames: [t.example], rules: []}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: ls}
spec: {parentRef: {name: gw}, listeners: []}
"#;

    /// A file added to the watched directory, then removed, is one upsert, then one delete,
    /// of each of its objects, whatever their kind.
    #[test]
    fn reload_sees_every_kind_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut md = ManifestDir::new(dir.path());
        assert!(md.load().is_empty());
        let parsed = parse_manifests(EVERY_KIND).unwrap();
        let mut seen: Vec<ObjectKind> = parsed.iter().map(Object::kind).collect();
        seen.sort();
        let mut all = crate::store::ALL_KINDS.to_vec();
        all.sort();
        assert_eq!(seen, all, "one object of each kind the store holds");
        let kinds = Objects::from_objects(parsed).len();
        let file = dir.path().join("all.yaml");
        std::fs::write(&file, EVERY_KIND).unwrap();
        let Some(Change::Batch(added)) = md.reload(std::slice::from_ref(&file)) else {
            panic!("not a batch")
        };
        assert_eq!(added.len(), kinds, "{added:?}");
        assert!(added.iter().all(|c| matches!(c, Change::Upsert(_))));
        std::fs::remove_file(&file).unwrap();
        let Some(Change::Batch(removed)) = md.reload(std::slice::from_ref(&file)) else {
            panic!("not a batch")
        };
        let mut gone: Vec<ObjectKind> = removed
            .iter()
            .map(|c| match c {
                Change::Delete(kind, _) => *kind,
                other => panic!("not a delete: {other:?}"),
            })
            .collect();
        gone.sort();
        gone.dedup();
        assert_eq!(gone.len(), kinds, "{gone:?}");
    }

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
    /// TCPRoute and UDPRoute load at `v1` (Gateway API v1.6, standard channel) and at the
    /// deprecated `v1alpha2` (CRDs before v1.6) alike: the schema is the same.
    #[test]
    fn l4_routes_load_at_v1_and_v1alpha2() {
        for version in ["v1", "v1alpha2"] {
            let yaml = format!(
                "apiVersion: gateway.networking.k8s.io/{version}\nkind: TCPRoute\n\
                 metadata: {{name: pg, namespace: db}}\n\
                 spec: {{parentRefs: [{{name: gw, sectionName: pg}}],\n  \
                 rules: [{{backendRefs: [{{name: pg, port: 5432, weight: 3}}]}}]}}\n---\n\
                 apiVersion: gateway.networking.k8s.io/{version}\nkind: UDPRoute\n\
                 metadata: {{name: dns}}\n\
                 spec: {{parentRefs: [{{name: gw, port: 53}}],\n  \
                 rules: [{{backendRefs: [{{name: dns, port: 53}}]}}]}}\n"
            );
            let objects = Objects::from_objects(parse_manifests(&yaml).unwrap());
            let tcp = &objects.tcp_routes[&Key::new("db", "pg")];
            let b = &tcp.spec.rules[0].backend_refs[0];
            assert_eq!(
                (b.name.as_str(), b.port, b.weight),
                ("pg", Some(5432), Some(3))
            );
            assert_eq!(
                tcp.spec.parent_refs.as_deref().unwrap_or_default()[0]
                    .section_name
                    .as_deref(),
                Some("pg"),
                "{version}"
            );
            let udp = &objects.udp_routes[&Key::new("default", "dns")];
            assert_eq!(
                udp.spec.parent_refs.as_deref().unwrap_or_default()[0].port,
                Some(53),
                "{version}"
            );
        }
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

    /// A syntax error names where it is, so the `InvalidManifest` diagnostic points at the line.
    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = parse_manifests("apiVersion: v1\nkind: Service\nmetadata: {name: web\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("YAML does not parse: "), "{e}");
        assert!(e.contains("line 4 column 1"), "{e}");
        let e =
            parse_manifests("kind: Node\nmetadata: {name: a}\n---\nkind: Node\n  bad: indent\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("line 5 column 6"), "{e}");
        // An alias to no anchor is an error of that place, not a panic.
        let e = parse_manifests("kind: Node\nmetadata: {name: *n}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown anchor at line 2 column 18"), "{e}");
    }

    /// A document that parses but is not the kind's shape names its index and kind.
    #[test]
    fn type_errors_name_the_document() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: 3}\n";
        let e = parse_manifests(text).unwrap_err().to_string();
        assert!(e.starts_with("document 1: Service does not parse: "), "{e}");
    }

    /// Explicit document ends (`...`), a `%YAML` directive and empty documents are YAML 1.2
    /// stream syntax (spec 9.2); `kubectl apply -f` takes such files too.
    #[test]
    fn document_markers_and_directives() {
        let text = "%YAML 1.2\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n...\n\
                    ---\n...\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n";
        let objects = Objects::from_objects(parse_manifests(text).unwrap());
        let names: Vec<String> = objects.services.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["default/a", "default/b"]);
    }

    /// YAML 1.2 core schema (spec 10.3.2): only `true`/`false` are booleans, so an unquoted
    /// `on`/`yes`/`off`/`no`/`y` annotation value is the string itself. An unquoted `true` or
    /// number is not a string, and Kubernetes refuses it in `annotations` (map of strings) as
    /// well, so the document fails.
    #[test]
    fn yaml_1_2_scalars_in_annotations() {
        let ingress = |value: &str| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n  \
                 annotations:\n    nginx.ingress.kubernetes.io/ssl-redirect: {value}\n"
            )
        };
        for word in [
            "on", "yes", "off", "no", "y", "n", "On", "YES", "~x", "0x1g",
        ] {
            let objects = parse_manifests(&ingress(word)).unwrap();
            let Object::Ingress(i) = &objects[0] else {
                panic!("not an Ingress")
            };
            let a = i.metadata.annotations.as_ref().unwrap();
            assert_eq!(a["nginx.ingress.kubernetes.io/ssl-redirect"], word);
        }
        for not_a_string in ["true", "false", "8", "1.5"] {
            let r = parse_manifests(&ingress(not_a_string));
            assert!(
                r.is_err(),
                "{not_a_string} accepted as an annotation string"
            );
        }
    }

    /// `stringData` values that look like other types stay the text written (quoted or not).
    #[test]
    fn secret_string_data_keeps_text() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  a: 'on'\n  b: \"007\"\n  c: |\n    line one\n    line two\n";
        let objects = Objects::from_objects(parse_manifests(text).unwrap());
        let data = objects
            .secrets
            .values()
            .next()
            .unwrap()
            .data
            .clone()
            .unwrap();
        assert_eq!(data["a"].0, b"on");
        assert_eq!(data["b"].0, b"007");
        assert_eq!(data["c"].0, b"line one\nline two\n");
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

    /// An object two files define is served from the later file in name order, and the earlier
    /// file gets a `DuplicateObject` warning (found by a fresh-user trial: a second copy of the
    /// controller ConfigMap replaced the first in silence); removing the copy clears it.
    #[test]
    fn an_object_in_two_files_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let cm = |v: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: x}}\ndata: {{k: {v}}}\n"
            )
        };
        std::fs::write(dir.path().join("10-cm.yaml"), cm("first")).unwrap();
        std::fs::write(dir.path().join("99-dup.yaml"), cm("second")).unwrap();
        let mut m = ManifestDir::new(dir.path());
        let o = m.load();
        let data = o.config_maps[&Key::new("x", "cm")].data.clone().unwrap();
        assert_eq!(data["k"], "second");
        assert_eq!(o.diagnostics.len(), 1, "{:?}", o.diagnostics);
        let d = &o.diagnostics[0];
        assert_eq!(
            (d.reason.as_str(), d.severity),
            ("DuplicateObject", Severity::Warning)
        );
        assert!(d.object.name.ends_with("10-cm.yaml"), "{d:?}");
        assert!(d.message.contains("99-dup.yaml"), "{d:?}");
        std::fs::remove_file(dir.path().join("99-dup.yaml")).unwrap();
        let o = m.load();
        assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
        let data = o.config_maps[&Key::new("x", "cm")].data.clone().unwrap();
        assert_eq!(data["k"], "first");
    }

    /// A file truncated to nothing and written again later (`cat good > file` with a pause
    /// between the two, `helm template ... > file`): its objects never leave the store in
    /// between, whether the watcher re-reads only that file or the whole directory.
    #[test]
    fn a_file_truncated_then_rewritten_keeps_its_objects_throughout() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, TWO).unwrap();
        let t0 = Instant::now();
        let mut m = ManifestDir::new(dir.path());
        let mut store = crate::store::Store::new();
        store.apply(SourceId::Files, Change::ReplaceAll(Box::new(m.load_at(t0))));
        let full = ManifestDir::new(dir.path()).load();
        assert_eq!(full.len(), 2);
        // Empty, then only a comment (no documents): both read as mid-write.
        for (i, empty) in ["", "# rendering...\n"].into_iter().enumerate() {
            std::fs::write(&a, empty).unwrap();
            let now = t0 + HOLD / 4 * u32::try_from(i).unwrap();
            let change = m
                .reload_at(std::slice::from_ref(&a), now)
                .expect("a file of the dir");
            store.apply(SourceId::Files, change);
            assert_eq!(*store.view(), full, "{empty:?} read at {i}");
            // The hold counts from the first empty read, not from each.
            assert_eq!(m.next_recheck(), Some(t0 + HOLD));
            assert!(m.due(t0 + HOLD / 2).is_empty());
            // A full load (another file's problem) holds it as well.
            assert_eq!(m.load_at(now), full);
        }
        // The write completes (an edit of one object) before the hold runs out.
        std::fs::write(&a, TWO.replace("nodePort: 30080", "nodePort: 30081")).unwrap();
        let Some(Change::Batch(changes)) = m.reload_at(std::slice::from_ref(&a), t0 + HOLD / 2)
        else {
            panic!("not a batch")
        };
        assert!(
            matches!(&changes[..], [Change::Upsert(Object::Service(_))]),
            "{changes:?}"
        );
        assert_eq!(m.next_recheck(), None, "no longer held");
        // Emptied again later: a new hold, from that read.
        std::fs::write(&a, "").unwrap();
        let later = t0 + HOLD * 5;
        assert_eq!(
            m.reload_at(std::slice::from_ref(&a), later)
                .map(|c| matches!(c, Change::Batch(b) if b.is_empty())),
            Some(true)
        );
        assert_eq!(m.next_recheck(), Some(later + HOLD));
    }

    /// A file emptied on purpose (and left so) loses its objects once the hold runs out, by
    /// the recheck the watcher makes with no event; a file removed loses them at once, and an
    /// empty new file has nothing to hold.
    #[test]
    fn a_file_left_empty_loses_its_objects_after_the_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, TWO).unwrap();
        std::fs::write(&b, "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n").unwrap();
        let t0 = Instant::now();
        let mut m = ManifestDir::new(dir.path());
        assert_eq!(m.load_at(t0).len(), 3);
        std::fs::write(&a, "").unwrap();
        let held = m.reload_at(std::slice::from_ref(&a), t0).unwrap();
        assert!(matches!(held, Change::Batch(b) if b.is_empty()));
        let at = m.next_recheck().expect("a recheck");
        assert_eq!(at, t0 + HOLD);
        assert_eq!(m.due(at), std::slice::from_ref(&a));
        let due = m.due(at);
        let Some(Change::Batch(gone)) = m.reload_at(&due, at) else {
            panic!("not a batch")
        };
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert!(gone.iter().all(|c| matches!(c, Change::Delete(..))));
        assert_eq!(m.next_recheck(), None);
        // Now empty with nothing live: rewritten and emptied again is taken at once.
        std::fs::write(&a, TWO).unwrap();
        assert!(
            matches!(m.reload_at(std::slice::from_ref(&a), at), Some(Change::Batch(b)) if b.len() == 2)
        );
        // A removed file: its objects go with no hold.
        std::fs::remove_file(&b).unwrap();
        let Some(Change::Batch(gone)) = m.reload_at(std::slice::from_ref(&b), at) else {
            panic!("not a batch")
        };
        assert!(
            matches!(&gone[..], [Change::Delete(ObjectKind::Node, _)]),
            "{gone:?}"
        );
        // By full loads alone, the same: held, then deleted.
        std::fs::write(&a, "").unwrap();
        assert_eq!(m.load_at(at).len(), 2);
        assert_eq!(m.next_recheck(), Some(at + HOLD));
        assert!(m.load_at(at + HOLD).is_empty());
        assert_eq!(m.next_recheck(), None);
    }

    /// A read that a write overlaps (size or modification time changed under it) is not
    /// taken while the file has objects live: read again after [`SETTLE`], and taken as it
    /// is once the hold runs out (a file that never stops changing still goes live).
    #[test]
    fn a_file_changing_under_the_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, TWO).unwrap();
        let t0 = Instant::now();
        let mut m = ManifestDir::new(dir.path());
        assert_eq!(m.load_at(t0).len(), 2);
        let changing = || FileRead {
            parsed: parse_manifests("apiVersion: v1\nkind: Service\nmetadata: {name: w}\n"),
            changing: true,
            cut: false,
        };
        let Verdict::Hold(p) = m.judge(&a, changing(), t0) else {
            panic!("taken")
        };
        assert_eq!(
            p,
            Pending {
                since: t0,
                recheck: t0 + SETTLE
            }
        );
        m.pending.insert(a.clone(), p);
        let last = t0 + HOLD - SETTLE / 2;
        let Verdict::Hold(p) = m.judge(&a, changing(), last) else {
            panic!("taken")
        };
        assert_eq!(p.recheck, t0 + HOLD, "never past the hold");
        assert!(matches!(m.judge(&a, changing(), t0 + HOLD), Verdict::Take(Ok(o)) if o.len() == 1));
        // A file with nothing live is read as it is, changing or not.
        let new = dir.path().join("new.yaml");
        assert!(matches!(
            m.judge(&new, changing(), t0),
            Verdict::Take(Ok(_))
        ));
        // A settled read of the file itself is marked so.
        assert!(!read_file(&a, true).changing);
    }

    /// A file cut mid-line (a writer paused inside a line) that still parses, as an object
    /// with a shorter name here, is held while its last good text ended with a newline; a
    /// file written without a final newline is read as it is.
    #[test]
    fn a_file_cut_mid_line_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-one\n";
        std::fs::write(&a, node).unwrap();
        let t0 = Instant::now();
        let mut m = ManifestDir::new(dir.path());
        assert_eq!(m.load_at(t0).len(), 1);
        std::fs::write(&a, &node[..node.len() - 4]).unwrap();
        let held = m.reload_at(std::slice::from_ref(&a), t0);
        assert!(matches!(held, Some(Change::Batch(b)) if b.is_empty()));
        assert_eq!(m.next_recheck(), Some(t0 + HOLD));
        // The rest is written: nothing changed after all.
        std::fs::write(&a, node).unwrap();
        let done = m.reload_at(std::slice::from_ref(&a), t0 + HOLD / 2);
        assert!(matches!(done, Some(Change::Batch(b)) if b.is_empty()));
        assert_eq!(m.next_recheck(), None);
        // Left without its final newline: taken once the hold runs out; from then on that
        // is how the file ends, and its edits go live at once.
        let bare = node.trim_end();
        std::fs::write(&a, bare).unwrap();
        assert!(
            matches!(m.reload_at(std::slice::from_ref(&a), t0), Some(Change::Batch(b)) if b.is_empty())
        );
        let Some(Change::Batch(taken)) = m.reload_at(std::slice::from_ref(&a), t0 + HOLD) else {
            panic!("not a batch")
        };
        assert!(taken.is_empty(), "same objects: {taken:?}");
        std::fs::write(&a, bare.replace("node-one", "node-two")).unwrap();
        let Some(Change::Batch(edit)) = m.reload_at(std::slice::from_ref(&a), t0 + HOLD) else {
            panic!("not a batch")
        };
        assert_eq!(edit.len(), 2, "{edit:?}");
        // A full load keeps knowing it.
        std::fs::write(&a, bare).unwrap();
        assert_eq!(m.load_at(t0 + HOLD).nodes.len(), 1);
        assert_eq!(m.next_recheck(), None);
    }

    /// An object that one file holds, added to a second file, is the full load's to resolve
    /// (which file wins), whatever its kind: the reload must see that the store holds it.
    #[test]
    fn an_object_added_to_a_second_file_is_resolved_by_a_full_load_for_every_kind() {
        for doc in EVERY_KIND.split("\n---\n") {
            let kind = Objects::from_objects(parse_manifests(doc).unwrap());
            assert_eq!(kind.len(), 1, "{doc}");
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("a.yaml"), doc).unwrap();
            let mut md = ManifestDir::new(dir.path());
            assert_eq!(md.load().len(), 1, "{doc}");
            let b = dir.path().join("b.yaml");
            std::fs::write(&b, doc).unwrap();
            assert!(md.reload(std::slice::from_ref(&b)).is_none(), "{doc}");
        }
    }

    /// Re-reading only the changed files gives the store what reading everything would.
    #[test]
    fn reload_of_changed_files_equals_a_full_load() {
        let dir = tempfile::tempdir().unwrap();
        let svc =
            |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n");
        let (a, b, c) = (
            dir.path().join("a.yaml"),
            dir.path().join("b.yaml"),
            dir.path().join("c.yaml"),
        );
        std::fs::write(&a, format!("{}---\n{}", svc("one"), svc("two"))).unwrap();
        std::fs::write(&b, svc("three")).unwrap();
        let mut m = ManifestDir::new(dir.path());
        let mut store = crate::store::Store::new();
        store.apply(SourceId::Files, Change::ReplaceAll(Box::new(m.load())));
        let check = |m: &mut ManifestDir, store: &mut crate::store::Store, paths: &[&PathBuf]| {
            let paths: Vec<PathBuf> = paths.iter().map(|p| (*p).clone()).collect();
            let change = m.reload(&paths).expect("files of the directory");
            store.apply(SourceId::Files, change);
            let full = ManifestDir::new(dir.path()).load();
            assert_eq!(*store.view(), full);
        };
        // An object edited, one removed; a file added; a file removed; a file that is not
        // a manifest.
        std::fs::write(&a, svc("one").replace("one", "uno")).unwrap();
        check(&mut m, &mut store, &[&a]);
        std::fs::write(&c, svc("four")).unwrap();
        check(&mut m, &mut store, &[&c]);
        std::fs::remove_file(&b).unwrap();
        check(&mut m, &mut store, &[&b, &dir.path().join("notes.txt")]);
        // Every kind the store keeps, not only the Ingress family (labels of a Namespace
        // select Gateway routes; a GatewayClass says whose Gateways are ours).
        let d = dir.path().join("d.yaml");
        let cluster = |label: &str| {
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: team, labels: {{shared: '{label}'}}}}\n\
                 ---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
                 metadata: {{name: gc, labels: {{l: '{label}'}}}}\nspec: {{controllerName: x.dev/c}}\n"
            )
        };
        std::fs::write(&d, cluster("1")).unwrap();
        check(&mut m, &mut store, &[&d]);
        std::fs::write(&d, cluster("2")).unwrap();
        check(&mut m, &mut store, &[&d]);
        assert_eq!(store.view().namespaces.len(), 1);
        // An object a second file also holds: the last file wins, which the full load decides.
        let e = dir.path().join("e.yaml");
        std::fs::write(&e, svc("uno")).unwrap();
        assert!(m.reload(std::slice::from_ref(&e)).is_none());
        let mut m = ManifestDir::new(dir.path());
        store.apply(SourceId::Files, Change::ReplaceAll(Box::new(m.load())));
        std::fs::write(&e, svc("uno").replace("uno", "uno\n  labels: {x: y}")).unwrap();
        assert!(m.reload(std::slice::from_ref(&e)).is_none());
        std::fs::remove_file(&e).unwrap();
        assert!(m.reload(std::slice::from_ref(&e)).is_none());
        let mut m = ManifestDir::new(dir.path());
        store.apply(SourceId::Files, Change::ReplaceAll(Box::new(m.load())));
        // A file that does not parse, or a path elsewhere: read the whole directory.
        std::fs::write(&c, "kind: [\n").unwrap();
        assert!(m.reload(std::slice::from_ref(&c)).is_none());
        assert!(m.reload(&[PathBuf::from("/elsewhere/x.yaml")]).is_none());
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
        // The catch-all Ingress `default-backend` answers hosts no rule names.
        assert!(snap.l7.any_host.is_some());
        assert!(snap.l7.default_backend.is_none());
    }
}
