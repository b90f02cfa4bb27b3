//! The running daemon fed from a manifest directory, as an operator runs it: cold start to
//! ready (`/readyz`), resident memory (`VmRSS` of `/proc/<pid>/status`) when ready and after
//! repeated changes, and how long a changed manifest file takes to go live (a probe request
//! sees the change). The daemon runs `--no-xdp` in the node namespace of a test bed; probes go
//! from the client namespace.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use testbed::{Topology, process::KillOnDrop};
use xdp_ingress::compact::ingress::Ingress;
use xdp_ingress::store::Objects;

/// What the daemon bench measured at one scale.
#[derive(Debug)]
pub struct DaemonFigures {
    pub ready: Duration,
    pub rss_ready_kib: u64,
    /// Each changed file's time to live, in order.
    pub file_to_live: Vec<Duration>,
    pub rss_after_kib: u64,
}

const PROXY: &str = "198.18.0.2";
const ADMIN: &str = "198.18.0.2:9100";
/// The annotation each change rewrites: its effect (a `Location`) needs no upstream.
const REDIRECT: &str = "nginx.ingress.kubernetes.io/permanent-redirect";

/// Writes `objects` as a manifest directory: one file per Ingress (what a change rewrites),
/// the rest as one `List` per kind and namespace.
pub fn write_manifests(dir: &Path, objects: &Objects) {
    fn list<T: serde::Serialize>(items: &[&Arc<T>]) -> String {
        let items: Vec<&T> = items.iter().map(|a| &***a).collect();
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }
    fn by_namespace<'a, T: serde::Serialize>(
        dir: &Path,
        kind: &str,
        map: &'a std::collections::BTreeMap<xdp_ingress::store::Key, Arc<T>>,
    ) {
        let mut groups: std::collections::BTreeMap<&str, Vec<&'a Arc<T>>> = Default::default();
        for (k, v) in map {
            groups.entry(&k.namespace).or_default().push(v);
        }
        for (ns, items) in groups {
            std::fs::write(dir.join(format!("{kind}-{ns}.json")), list(&items)).unwrap();
        }
    }
    by_namespace(dir, "services", &objects.services);
    by_namespace(dir, "endpointslices", &objects.endpoint_slices);
    by_namespace(dir, "secrets", &objects.secrets);
    for ing in objects.ingresses.values() {
        write_ingress(dir, ing);
    }
}

fn ingress_file(dir: &Path, ing: &Ingress) -> std::path::PathBuf {
    let (ns, name) = (
        ing.metadata.namespace.as_deref().unwrap_or_default(),
        ing.metadata.name.as_deref().unwrap_or_default(),
    );
    dir.join(format!("ingress-{ns}-{name}.json"))
}

/// Replaces the Ingress's file as an editor or `kubectl`-less GitOps sync would: a new file
/// renamed over the old one (the `.` name is not a manifest).
fn write_ingress(dir: &Path, ing: &Ingress) {
    let tmp = dir.join(".next.json");
    std::fs::write(&tmp, serde_json::to_string(ing).unwrap()).unwrap();
    std::fs::rename(&tmp, ingress_file(dir, ing)).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The daemon's resident memory by kind of mapping (from `/proc/<pid>/smaps`), in KiB: the
/// binary's pages, other files (libraries), thread stacks (an anonymous mapping right after a
/// one-page guard), the main stack, and the rest of the anonymous memory (mimalloc's arenas:
/// live heap plus its slack); and the thread count. One line, for the bench's output.
pub fn memory_map(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
    let (mut kind, mut prev_guard_end) = ("", None::<u64>);
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or_default();
            kind = if path.ends_with("xdp-ingress") {
                "binary"
            } else if path == "[stack]" {
                "main stack"
            } else if path.starts_with('/') {
                "other files"
            } else if path.is_empty() && prev_guard_end == Some(start) && end - start <= 9 << 20 {
                "thread stacks"
            } else if path.is_empty() || path == "[heap]" {
                "anonymous (heap)"
            } else {
                "other"
            };
            prev_guard_end = (perms.starts_with("---") && end - start == 4096).then_some(end);
        } else if first == "Rss:" {
            *by.entry(kind).or_default() += f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1024.0))
        .collect();
    format!(
        "RSS by mapping (MiB): {}; {threads} threads",
        parts.join(", ")
    )
}

/// One HTTP/1.1 request; the status code and the `Location` header, `None` when the
/// connection fails.
fn get(addr: &str, host: &str, path: &str) -> Option<(u16, Option<String>)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let head = text.split("\r\n\r\n").next()?;
    let mut lines = head.lines();
    let code = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Some((code, location))
}

/// Polls `probe` every 2 ms until it holds; the time it took. Panics after `limit`.
fn until(limit: Duration, what: &str, mut probe: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !probe() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    t0.elapsed()
}

/// Starts the daemon on a manifest directory of `objects` and measures it; `changes`
/// single-Ingress files are rewritten, one at a time, each waited for. `None` without root.
pub fn measure(objects: &Objects, changes: usize) -> Option<DaemonFigures> {
    if !testbed::require_root() {
        println!("daemon: skipped (needs root for its network namespaces)");
        return None;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), objects);
    // `BENCH_MANIFESTS_OUT=DIR` keeps a copy there: the daemon's link order script is made
    // from a run on it (ingress-userspace/link/text-order.ld says how).
    if let Some(out) = std::env::var_os("BENCH_MANIFESTS_OUT") {
        let out = Path::new(&out);
        std::fs::create_dir_all(out).expect("BENCH_MANIFESTS_OUT is a directory");
        write_manifests(out, objects);
    }
    let topo = Topology::new(0).expect("topology");
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.args([
        "run",
        "--no-xdp",
        "--listen-address",
        PROXY,
        "--metrics-addr",
        ADMIN,
    ])
    .arg("--manifests")
    .arg(dir.path())
    .env("RUST_LOG", "warn")
    // As the image sets it (deploy/Containerfile), so the figures are what it runs with.
    .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let t0 = Instant::now();
    let daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    // `ip netns exec` execs the daemon: same pid.
    let pid = daemon.id();
    let ready = topo.client.enter(|| {
        until(Duration::from_secs(120), "daemon ready", || {
            get(ADMIN, "admin", "/readyz").is_some_and(|(c, _)| c == 200)
        });
        t0.elapsed()
    });
    // Settled: what the first snapshot left behind, not its peak.
    std::thread::sleep(Duration::from_secs(1));
    let rss_ready_kib = rss_kib(pid);
    println!("daemon when ready: {}", memory_map(pid));

    let ingresses: Vec<&Arc<Ingress>> = objects.ingresses.values().collect();
    let mut file_to_live = Vec::new();
    for n in 0..changes {
        let mut ing = (**ingresses[(n * 37) % ingresses.len()]).clone();
        let host = ing.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
            .host
            .clone()
            .unwrap();
        let location = format!("https://change-{n}.example.net/");
        ing.metadata
            .annotations
            .get_or_insert_default()
            .insert(REDIRECT.into(), location.clone());
        let t0 = Instant::now();
        write_ingress(dir.path(), &ing);
        let took = topo.client.enter(|| {
            until(Duration::from_secs(60), "changed file live", || {
                get(&format!("{PROXY}:80"), &host, "/")
                    .is_some_and(|(_, l)| l.as_deref() == Some(location.as_str()))
            });
            t0.elapsed()
        });
        file_to_live.push(took);
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_kib = rss_kib(pid);
    println!("daemon after changes: {}", memory_map(pid));
    drop(daemon);
    drop(topo);
    Some(DaemonFigures {
        ready,
        rss_ready_kib,
        file_to_live,
        rss_after_kib,
    })
}
