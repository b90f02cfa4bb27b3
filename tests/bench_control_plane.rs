//! Control-plane benchmark (ignored; `cargo xtask bench control-plane`): translation time and
//! snapshot memory for 1k, 3k and 10k Ingresses (2 Services and 10 endpoints per Ingress), and
//! event-to-live latency percentiles through the real control loop (debounce included), and
//! the running daemon fed from a manifest directory ([`control_plane_daemon`]: cold start to
//! ready, RSS, a changed file to live), each printed with its target. The daemon part needs
//! root (its network namespaces) and the daemon binary (`XDP_INGRESS_BIN`).
//!
//! There is no peer controller to run on this machine, so the figures are absolute; the ratio
//! printed is cold (TLS Secrets parsed) over warm (cached) translation.

use std::{
    alloc::{GlobalAlloc, Layout},
    sync::{
        Arc, Mutex,
        atomic::{AtomicIsize, Ordering},
    },
    time::{Duration, Instant},
};

mod control_plane_daemon;

use ingress_common::l4::MapSizes;
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Secret, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
            IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
        },
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};
use mimalloc::MiMalloc;
use xdp_ingress::{
    controller::{self, LoopConfig},
    dataplane::{L4Maps, L4Options, L4Sync, MapWrite, SyncError, flows::Released, sync::Held},
    model::translate::{TranslateConfig, Translator},
    proxy::{AccessLogFormat, Proxy, ProxyArgs},
    source::{SourceEvent, files},
    store::{Change, Object, Objects, SourceId},
};

/// Counts live heap bytes, to weigh the snapshot, around the daemon's own allocator
/// (mimalloc, purging at once as `allocator::configure` sets it): the control loop's
/// `release_free_memory` and frees on other threads cost here what they cost the daemon.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NAMESPACES: usize = 100;
const ENDPOINTS_PER_SERVICE: usize = 5;
const TLS_EVERY: usize = 10;
/// Ingresses at each scale; twice as many Services.
const SCALES: [usize; 3] = [1_000, 3_000, 10_000];
/// Single-Ingress manifest files the daemon bench changes, one after another.
const FILE_CHANGES: usize = 20;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn service_objects(i: usize) -> [Object; 2] {
    let ns = format!("ns-{}", i % NAMESPACES);
    let name = format!("svc-{i}");
    let svc = Service {
        metadata: meta(&ns, &name),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    let mut m = meta(&ns, &format!("{name}-abcde"));
    m.labels = Some([("kubernetes.io/service-name".to_string(), name)].into());
    let slice = EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
        endpoints: Some(
            (0..ENDPOINTS_PER_SERVICE)
                .map(|e| {
                    let n = i * ENDPOINTS_PER_SERVICE + e;
                    Endpoint {
                        addresses: vec![format!(
                            "10.{}.{}.{}",
                            n >> 16 & 255,
                            n >> 8 & 255,
                            n & 255
                        )],
                        conditions: Some(EndpointConditions {
                            ready: Some(true),
                            serving: Some(true),
                            terminating: Some(false),
                        }),
                        node_name: Some(format!("node-{}", n % 50)),
                        ..Default::default()
                    }
                })
                .collect(),
        ),
    };
    [
        Object::Service(Arc::new(svc.into())),
        Object::EndpointSlice(Arc::new(slice.into())),
    ]
}

fn backend(svc: usize) -> IngressBackend {
    IngressBackend {
        resource: None,
        service: Some(IngressServiceBackend {
            name: format!("svc-{svc}"),
            port: Some(ServiceBackendPort {
                number: Some(80),
                name: None,
            }),
        }),
    }
}

fn ingress(i: usize, services: usize) -> Object {
    // Ingress i lives in the namespace of services 2i and 2i+1 (same i % NAMESPACES parity).
    let (a, b) = (2 * i, 2 * i + NAMESPACES);
    let b = if b < services { b } else { a };
    let ns = format!("ns-{}", a % NAMESPACES);
    let host = format!("h{i}.example.com");
    let path = |p: &str, ty: &str, s| HTTPIngressPath {
        path: Some(p.into()),
        path_type: ty.into(),
        backend: backend(s),
    };
    let ingress = Ingress {
        metadata: meta(&ns, &format!("ing-{i}")),
        spec: Some(IngressSpec {
            ingress_class_name: Some("xdp-ingress".into()),
            tls: i.is_multiple_of(TLS_EVERY).then(|| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(format!("tls-{i}")),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![path("/", "Prefix", a), path("/api", "Prefix", b)],
                }),
            }]),
            ..Default::default()
        }),
        status: None,
    };
    Object::Ingress(Arc::new(ingress.into()))
}

fn tls_secret(i: usize, crt: &[u8], key: &[u8]) -> Object {
    let ns = format!("ns-{}", (2 * i) % NAMESPACES);
    Object::Secret(Arc::new(Secret {
        metadata: meta(&ns, &format!("tls-{i}")),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_string(), ByteString(crt.to_vec())),
                ("tls.key".to_string(), ByteString(key.to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    }))
}

/// The store at a scale, and the heap bytes each kind's objects took (`(kind, bytes)`).
fn build_objects(ingresses: usize) -> (Objects, Vec<(&'static str, isize)>) {
    // One certificate naming every host (`h<i>.example.com`): a certificate that names none
    // of an Ingress's hosts is served as the default one with a Warning, which this bench
    // counts as a failed translation.
    let (crt, key) = xdp_ingress::proxy::tls::self_signed_pem(&["*.example.com"])
        .expect("a self-signed certificate");
    let (crt, key) = (crt.into_bytes(), key.into_bytes());
    let mut weights = Vec::new();
    let mut weigh = |kind: &'static str, build: &mut dyn FnMut() -> Vec<Object>| {
        let before = LIVE.load(Ordering::Relaxed);
        let objects = build();
        weights.push((kind, LIVE.load(Ordering::Relaxed) - before));
        objects
    };
    let services = weigh("Services", &mut || {
        (0..2 * ingresses)
            .map(|i| service_objects(i)[0].clone())
            .collect()
    });
    let slices = weigh("EndpointSlices", &mut || {
        (0..2 * ingresses)
            .map(|i| service_objects(i)[1].clone())
            .collect()
    });
    let ingress_objects = weigh("Ingresses", &mut || {
        (0..ingresses).map(|i| ingress(i, 2 * ingresses)).collect()
    });
    let secrets = weigh("Secrets", &mut || {
        (0..ingresses)
            .step_by(TLS_EVERY)
            .map(|i| tls_secret(i, &crt, &key))
            .collect()
    });
    let objects = Objects::from_objects(
        [services, slices, ingress_objects, secrets]
            .into_iter()
            .flatten(),
    );
    (objects, weights)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

#[test]
#[ignore = "benchmark: cargo xtask bench control-plane"]
fn bench_control_plane() {
    xdp_ingress::allocator::configure();
    // One result file: each scale adds its points to the same charts.
    let mut out = testbed::bench_out::BenchOut::new("control-plane");
    // `BENCH_SCALES=10000` (comma-separated) runs only those scales, while working on one.
    let scales: Vec<usize> = std::env::var("BENCH_SCALES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| SCALES.to_vec());
    for n in scales {
        bench_at(n, &mut out);
    }
    out.write();
}

fn bench_at(count: usize, out: &mut testbed::bench_out::BenchOut) {
    println!("\n== {count} Ingresses ==");
    let live0 = LIVE.load(Ordering::Relaxed);
    let (objects, weights) = build_objects(count);
    let store_bytes = LIVE.load(Ordering::Relaxed) - live0;
    let endpoints: usize = objects
        .endpoint_slices
        .values()
        .map(|s| s.endpoints.len())
        .sum();
    let mib = |b: isize| b as f64 / (1 << 20) as f64;
    println!(
        "control-plane: {} Ingresses ({} with TLS), {} Services, {} endpoints; store {:.1} MiB ({})",
        objects.ingresses.len(),
        objects.secrets.len(),
        objects.services.len(),
        endpoints,
        mib(store_bytes),
        weights
            .iter()
            .map(|(kind, b)| format!("{kind} {:.1}", mib(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // `BENCH_DAEMON_ONLY=1`: only the daemon part (while working on it).
    if std::env::var_os("BENCH_DAEMON_ONLY").is_none() {
        bench_in_process(count, &objects, store_bytes, endpoints, out);
    }
    // `BENCH_IN_PROCESS_ONLY=1`: only the in-process part (profiling it with `perf`).
    if std::env::var_os("BENCH_IN_PROCESS_ONLY").is_none() {
        bench_daemon(count, &objects, endpoints, out);
    }
}

/// Heap bytes of each part the daemon keeps at this scale, weighed with the counting allocator
/// as it builds them in the daemon's order: the manifest source reads the directory (objects,
/// its per-file map and merged view), the store's layer (maps of `Arc`s), translation (the
/// snapshot, and what the translator keeps for the next run), the proxy's runtime (route
/// table, upstream runtimes) and its certificate store. Each figure is what that part adds.
fn profile_parts(objects: Objects) {
    let live = || LIVE.load(Ordering::Relaxed);
    let mib = |b: isize| b as f64 / (1 << 20) as f64;
    let dir = tempfile::tempdir().unwrap();
    control_plane_daemon::write_manifests(dir.path(), &objects);
    drop(objects);
    let b0 = live();
    let mut manifests = files::ManifestDir::new(dir.path());
    let loaded = manifests.load();
    let b1 = live();
    let layer = loaded.clone();
    let b2 = live();
    drop(layer);
    // The manifest source's own part: what dropping it frees while the store keeps `loaded`.
    let b3 = live();
    drop(manifests);
    let source_own = b3 - live();
    let mut parts = vec![
        (
            "objects (parsed from the files)",
            b1 - b0 - source_own - (b2 - b1),
        ),
        ("manifest source: per-file map + merged view", source_own),
        ("store layer (maps)", b2 - b1),
    ];
    let b = live();
    let mut t = Translator::new(TranslateConfig::default());
    // As the daemon's loop translates: the translator keeps the snapshot and its caches.
    let snap = t.translate_shared(&loaded, None);
    let translated = live() - b;
    let b = live();
    let (runtime, _) = xdp_ingress::proxy::Runtime::build(
        &snap,
        xdp_ingress::proxy::upstream::HealthPolicy::default(),
    );
    parts.push(("proxy runtime (route table, upstreams)", live() - b));
    let b = live();
    let certs = xdp_ingress::proxy::tls::CertStore::new().unwrap();
    let _ = certs.update(&snap.l7);
    parts.push(("proxy certificate store", live() - b));
    // The translator's own caches (references, Ingress index, Service uses, TLS cache): what
    // dropping it frees while the snapshot is still held.
    let b = live();
    drop(t);
    let caches = b - live();
    // The snapshot's parts no runtime shares, then those the proxy runtime holds too
    // (upstreams, policies: freed only with it).
    let b = live();
    drop(snap);
    let snapshot_own = b - live();
    parts.push(("translator's caches", caches));
    parts.push(("snapshot, not shared", snapshot_own));
    parts.push((
        "snapshot, shared with the runtime",
        translated - caches - snapshot_own,
    ));
    drop((runtime, certs));
    let total: isize = parts.iter().map(|(_, b)| b).sum();
    println!(
        "daemon parts (heap, counting allocator), total {:.1} MiB:",
        mib(total)
    );
    for (part, bytes) in parts {
        println!("  {part}: {:.1} MiB", mib(bytes));
    }
}

/// Translation and the control loop in this process.
fn bench_in_process(
    count: usize,
    objects: &Objects,
    store_bytes: isize,
    endpoints: usize,
    out: &mut testbed::bench_out::BenchOut,
) {
    let objects = objects.clone();
    let mut t = Translator::new(TranslateConfig::default());
    let before = LIVE.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let snap = t.translate(&objects);
    let cold = t0.elapsed();
    let snapshot_bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(snap.l7.hosts.len(), count);
    assert!(
        snap.diagnostics.is_empty(),
        "{:?}",
        &snap.diagnostics[..snap.diagnostics.len().min(3)]
    );
    assert_eq!(snap.l7.certificates.len(), count / TLS_EVERY);
    drop(snap);
    profile_parts(objects.clone());
    let mut warm: Vec<Duration> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            let s = t.translate(&objects);
            let d = t0.elapsed();
            drop(s);
            d
        })
        .collect();
    let warm_p50 = pct(&mut warm, 50.0);
    println!(
        "translation: cold {:.1} ms (TLS parsed; target: cold start to ready <= 1 s), warm p50 {:.1} ms ({:.2} us/Ingress); cold/warm = {:.2}",
        cold.as_secs_f64() * 1e3,
        warm_p50.as_secs_f64() * 1e3,
        warm_p50.as_secs_f64() * 1e6 / count as f64,
        cold.as_secs_f64() / warm_p50.as_secs_f64()
    );
    println!(
        "snapshot memory: {:.1} MiB ({:.0} B/Ingress); store {:.1} MiB",
        snapshot_bytes as f64 / (1 << 20) as f64,
        snapshot_bytes as f64 / count as f64,
        store_bytes as f64 / (1 << 20) as f64
    );

    // Event-to-live through the real loop, one change at a time: EndpointSlice updates (the
    // fast path) and Ingress updates (a full translation).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Both planes as the daemon has them: the proxy (route compile, certificates) and the
        // L4 sync's plan over maps that take every write (no BPF object in this process).
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let proxy = Proxy::start(
            ProxyArgs {
                listen_address: "127.0.0.1".parse().unwrap(),
                ports: xdp_ingress::proxy::args::ListenerPorts::at(0, 0),
                access_log_format: AccessLogFormat::Off,
                ..ProxyArgs::default()
            },
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .expect("proxy starts");
        let l7_times = Arc::new(Mutex::new(Vec::new()));
        let l4_times = Arc::new(Mutex::new(Vec::new()));
        let (l7t, l4t) = (l7_times.clone(), l4_times.clone());
        let mut l4 = L4Sync::new(L4Options::default());
        let ctl = controller::spawn(
            Translator::new(TranslateConfig::default()),
            vec![
                controller::sink("l7", move |s| {
                    let t0 = Instant::now();
                    proxy.apply(s.clone());
                    l7t.lock().unwrap().push(t0.elapsed());
                    Ok(())
                }),
                controller::sink("l4", move |s| {
                    let t0 = Instant::now();
                    l4.apply_to(&mut AcceptAll, s, Instant::now()).map_err(|e| e.to_string())?;
                    l4t.lock().unwrap().push(t0.elapsed());
                    Ok(())
                }),
            ],
            LoopConfig::default(),
        );
        let stats = ctl.stats.clone();
        // The loop records a snapshot's translation time just after publishing it.
        let translate_of = async |n: u64| {
            for _ in 0..10_000 {
                let s = stats.lock().unwrap().clone();
                if s.snapshots >= n {
                    return s.last_translate;
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            panic!("snapshot {n} not recorded");
        };
        let mut rx = ctl.snapshots.clone();
        let mut current = objects.clone();
        ctl.events
            .send(SourceEvent::new(SourceId::Kube, Change::ReplaceAll(Box::new(objects.clone()))))
            .await
            .unwrap();
        rx.wait_for(|s| s.version == 1).await.unwrap();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "cold: translation {:.1} ms, proxy apply {:.1} ms, L4 plan {:.1} ms",
            ms(translate_of(1).await),
            ms(l7_times.lock().unwrap()[0]),
            ms(l4_times.lock().unwrap()[0]),
        );
        // Per event: (translation, proxy apply, L4 plan) of the snapshot it made.
        let phases = |n: u64, translate: Duration| {
            let i = n as usize - 1;
            (translate, l7_times.lock().unwrap()[i], l4_times.lock().unwrap()[i])
        };
        let mut slice_phases = Vec::new();
        let mut ingress_phases = Vec::new();
        let mut send = async |o: Object, current: &mut Objects| {
            current.upsert(o.clone());
            let want = rx.borrow().version + 1;
            let t0 = Instant::now();
            ctl.events.send(SourceEvent::new(SourceId::Kube, Change::Upsert(o))).await.unwrap();
            tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| s.version >= want))
                .await
                .expect("snapshot within 30 s")
                .unwrap();
            let took = t0.elapsed();
            (took, rx.borrow().version)
        };
        const EVENTS: usize = 50;
        let mut slices = Vec::new();
        for n in 0..EVENTS {
            let [_, slice] = service_objects(n * 14);
            let Object::EndpointSlice(s) = slice else { unreachable!() };
            let mut s = (*s).clone();
            // Every event changes something: a distinct slice loses its first endpoint's readiness.
            s.endpoints[0].ready = Some(false);
            let (took, v) = send(Object::EndpointSlice(Arc::new(s)), &mut current).await;
            slices.push(took);
            slice_phases.push(phases(v, translate_of(v).await));
        }
        let mut ingresses = Vec::new();
        for n in 0..50 {
            let Object::Ingress(i) = ingress((n * 37) % count, 2 * count) else { unreachable!() };
            let mut i = (*i).clone();
            let rules = i.spec.as_mut().unwrap().rules.as_mut().unwrap();
            rules[0].http.as_mut().unwrap().paths[1].path = Some("/api2".into());
            let (took, v) = send(Object::Ingress(Arc::new(i)), &mut current).await;
            ingresses.push(took);
            ingress_phases.push(phases(v, translate_of(v).await));
        }
        // The fast path's result is exactly what a full translation gives.
        let live = rx.borrow().clone();
        let full = Translator::new(TranslateConfig::default()).translate(&current);
        assert_eq!(format!("{:?}{:?}", live.l7, live.l4), format!("{:?}{:?}", full.l7, full.l4));

        // Slices of Services nothing routes to (odd numbers here) change the store only.
        let before = rx.borrow().version;
        for n in 0..EVENTS {
            let [_, slice] = service_objects(2 * n + 1);
            let Object::EndpointSlice(s) = slice else { unreachable!() };
            let mut s = (*s).clone();
            s.endpoints[0].ready = Some(false);
            ctl.events
                .send(SourceEvent::new(SourceId::Kube, Change::Upsert(Object::EndpointSlice(Arc::new(s)))))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let skipped = rx.borrow().version - before;
        println!("{EVENTS} updates of slices of unused Services: {skipped} translations");
        let debounce = LoopConfig::default().debounce.as_millis();
        for (what, p) in [("EndpointSlice", &slice_phases), ("Ingress", &ingress_phases)] {
            let col = |f: fn(&(Duration, Duration, Duration)) -> Duration| {
                let mut v: Vec<Duration> = p.iter().map(f).collect();
                format!("p50 {:.2} / p99 {:.2} ms", ms(pct(&mut v, 50.0)), ms(pct(&mut v, 99.0)))
            };
            println!(
                "{what} update, where the time goes: translation {}, proxy apply {}, L4 plan {}",
                col(|p| p.0),
                col(|p| p.1),
                col(|p| p.2),
            );
        }
        // The tail, event by event: which phase, and how early in the run.
        for (what, total, p) in [("EndpointSlice", &slices, &slice_phases), ("Ingress", &ingresses, &ingress_phases)] {
            let mut order: Vec<usize> = (0..total.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(total[i]));
            let tail: Vec<String> = order[..3.min(order.len())]
                .iter()
                .map(|&i| {
                    let (t, a, l) = p[i];
                    format!("#{i} {:.2} ms ({:.2} / {:.2} / {:.2})", ms(total[i]), ms(t), ms(a), ms(l))
                })
                .collect();
            println!("{what} updates, slowest (translation / proxy apply / L4 plan): {}", tail.join(", "));
        }
        println!(
            "event-to-live, {EVENTS} EndpointSlice updates (fast path; a lone event skips the {debounce} ms debounce): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms (target p99 <= 10 ms)",
            ms(pct(&mut slices, 50.0)),
            ms(pct(&mut slices, 90.0)),
            ms(pct(&mut slices, 99.0)),
        );
        // Ingresses, their Services (two each) and the endpoints.
        let objects = (3 * count + endpoints) as f64;
        for (p, v) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)] {
            let slice = ms(pct(&mut slices, v));
            out.point("event-to-live, EndpointSlice update", ["objects", "ms"], p, objects, slice);
            let ingress = ms(pct(&mut ingresses, v));
            out.point("event-to-live, Ingress update", ["objects", "ms"], p, objects, ingress);
        }
        println!(
            "event-to-live, {} Ingress updates (by host): p50 {:.1} ms, p99 {:.1} ms (target p99 <= 20 ms)",
            ingresses.len(),
            ms(pct(&mut ingresses, 50.0)),
            ms(pct(&mut ingresses, 99.0)),
        );
    });
}

/// L4 maps that take every write: the L4 sync's planning without a BPF object.
struct AcceptAll;

impl L4Maps for AcceptAll {
    fn read(&mut self, _: &MapSizes) -> Result<Held, SyncError> {
        Ok(Held::empty())
    }
    fn write(&mut self, _: &MapWrite) -> Result<Released, SyncError> {
        Ok(Released::default())
    }
}

/// The daemon process fed from a manifest directory of `objects`.
fn bench_daemon(
    count: usize,
    objects: &Objects,
    endpoints: usize,
    out: &mut testbed::bench_out::BenchOut,
) {
    let Some(d) = control_plane_daemon::measure(objects, FILE_CHANGES) else {
        return;
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "daemon: cold start to ready {:.0} ms (target <= 1000 ms); RSS when ready {:.1} MiB (target <= 96 MiB), after {} changed files {:.1} MiB (target <= 128 MiB)",
        ms(d.ready),
        mib(d.rss_ready_kib),
        d.file_to_live.len(),
        mib(d.rss_after_kib),
    );
    let mut live = d.file_to_live;
    println!(
        "daemon: changed manifest file to live p50 {:.0} ms, max {:.0} ms (target <= 250 ms)",
        ms(pct(&mut live, 50.0)),
        ms(pct(&mut live, 100.0)),
    );
    let objects = (3 * count + endpoints) as f64;
    out.point(
        "daemon RSS",
        ["objects", "MiB"],
        "ready",
        objects,
        mib(d.rss_ready_kib),
    );
    out.point(
        "daemon RSS",
        ["objects", "MiB"],
        "after changes",
        objects,
        mib(d.rss_after_kib),
    );
    out.point(
        "daemon cold start to ready",
        ["objects", "ms"],
        "ready",
        objects,
        ms(d.ready),
    );
    out.point(
        "daemon changed file to live",
        ["objects", "ms"],
        "p50",
        objects,
        ms(pct(&mut live, 50.0)),
    );
    out.point(
        "daemon changed file to live",
        ["objects", "ms"],
        "max",
        objects,
        ms(pct(&mut live, 100.0)),
    );
}
