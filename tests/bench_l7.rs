//! Requests/s and p99 latency of the L7 proxy next to Debian's nginx and HAProxy, measured in
//! the same run: one worker each (`--proxy-workers 1` vs `worker_processes 1` vs
//! `nbthread 1`), an equivalent configuration (one host, prefix `/` to one upstream with
//! keep-alive, forwarding headers, no access log, request bodies streamed), the same echo
//! backend in a pod namespace, the same load from the client namespace: wrk for HTTP/1.1 and
//! HTTPS, h2load for HTTP/2 over TLS. Cases: keep-alive; a new connection per request
//! (`Connection: close`; over HTTPS that is TLS handshakes/s); 1 MiB bodies down and up
//! (MB/s in the rps columns); and the keep-alive cases again on all cores (our default worker
//! count, one per core, vs `worker_processes auto` vs HAProxy's default `nbthread`).
//! Run by `cargo xtask bench l7` (or `cargo test --release -p xdp-ingress-e2e --test bench_l7
//! -- --ignored --nocapture`). Each case runs `BENCH_ROUNDS` (default 3) rounds, each round
//! ours, nginx, HAProxy one after the other, `BENCH_SECONDS` (default 5) seconds each: the
//! columns show each proxy's best round (req/s, and that round's p99) and the median over the
//! rounds of the per-round ratio (ours and the peer measured next to each other, so a load
//! that drifts between rounds cancels). `BENCH_CASES` (comma-separated substrings of case
//! names) runs only the matching cases.
//!
//! Pinning (machines with 2 cores or more, unless `BENCH_PIN=0`): the one-worker proxies all
//! run on the last core, in turn, and the load generator and the backend on the others, so
//! that each proxy gets the same core and never competes with its own load; the all-cores
//! cases run unpinned.

mod l7common;

use std::{fmt::Write as _, net::SocketAddr, process::Command, time::Duration};

use l7common::*;
use testbed::{Topology, http_backend::HttpBackend, process::KillOnDrop};
use xdp_ingress::proxy::{fixtures::*, tls::self_signed_pem};

/// The daemon's allocator (ingress-userspace/src/main.rs): the proxy runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOST: &str = "bench.test";
const CONNECTIONS: &str = "32";
/// The large-body cases' body size, bytes.
const LARGE: usize = 1 << 20;
/// Largest request body every proxy accepts here (above `LARGE`).
const MAX_BODY: u64 = 8 << 20;

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .clamp(1, 20)
}

/// Where things run: `proxy` (the one-worker proxies, in turn), `load` (wrk, h2load, the
/// backend), `all` (the all-cores proxies and their load). `None` (one core, or
/// `BENCH_PIN=0`): nothing pinned.
#[derive(Debug, Clone)]
struct Cpus {
    proxy: Vec<usize>,
    load: Vec<usize>,
    all: Vec<usize>,
}

impl Cpus {
    fn plan() -> Option<Cpus> {
        let n = cores();
        if n < 2 || std::env::var("BENCH_PIN").is_ok_and(|v| v == "0") {
            return None;
        }
        Some(Cpus {
            proxy: vec![n - 1],
            load: (0..n - 1).collect(),
            all: (0..n).collect(),
        })
    }
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Pins the calling thread (and so every thread and process it starts after) to `cpus`.
fn pin_thread(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it for the
    // machine's cores; sched_setaffinity(0) changes only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(
            rc,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// `program args` in `ns`, under `taskset -c cpus` when pinned.
fn pinned_cmd(ns: &testbed::Netns, cpus: Option<&[usize]>, program: &str) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = ns.cmd("taskset");
            c.args(["-c", &cpu_list(cpus), program]);
            c
        }
        None => ns.cmd(program),
    }
}

/// Runs `program args` in `ns` (pinned to `cpus` if given); stdout, or an error with stderr.
fn run_in(
    ns: &testbed::Netns,
    cpus: Option<&[usize]>,
    program: &str,
    args: &[&str],
) -> anyhow::Result<String> {
    let out = pinned_cmd(ns, cpus, program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .clamp(1, 60)
}

#[derive(Debug, Default, Clone, Copy)]
struct Result {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

/// `wide`: `worker_processes auto` (one per core) on the all-cores ports; else one process
/// that is the worker (same as `worker_processes 1` for throughput, and nothing is left
/// behind if the benchmark dies: a killed master would orphan its workers).
/// `ssl_prefer_server_ciphers on` as ingress-nginx's template (with its default
/// `ssl-ciphers`): OpenSSL's TLS 1.3 order then picks TLS_AES_256_GCM_SHA384, the suite ours
/// picks; with the client's order nginx got h2load's TLS_AES_128_GCM_SHA256.
fn nginx_conf(dir: &std::path::Path, backend: SocketAddr, wide: bool) -> String {
    let (workers, tag) = if wide {
        ("master_process on;\nworker_processes auto;", "wide")
    } else {
        ("master_process off;\nworker_processes 1;", "one")
    };
    let (http, https) = (
        Peer::Nginx.port("http", wide),
        Peer::Nginx.port("https", wide),
    );
    format!(
        r#"
{workers}
daemon off;
pid {dir}/nginx-{tag}.pid;
error_log {dir}/error-{tag}.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_max_body_size {MAX_BODY};
    upstream backend {{
        server {backend};
        keepalive 256;
    }}
    server {{
        listen {http};
        listen {https} ssl http2;
        server_name {HOST};
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        http2_max_concurrent_streams 128;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 5s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#,
        dir = dir.display()
    )
}

/// HAProxy shaped as `nginx_conf`: one thread, keep-alive to the backend (connections reused
/// across client connections, as nginx's `keepalive` pool does), the same forwarding headers.
/// `wide`: HAProxy's default thread count (one per core) on the all-cores ports.
fn haproxy_conf(dir: &std::path::Path, backend: SocketAddr, wide: bool) -> String {
    let (threads, tag) = if wide {
        ("", "wide")
    } else {
        ("nbthread 1", "one")
    };
    let (http, https) = (
        Peer::Haproxy.port("http", wide),
        Peer::Haproxy.port("https", wide),
    );
    format!(
        r#"
global
    {threads}
    maxconn 4096
    pidfile {dir}/haproxy-{tag}.pid
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 60s
    timeout http-keep-alive 75s
    option http-keep-alive
    http-reuse always
frontend bench
    bind :{http}
    bind :{https} ssl crt {dir}/haproxy.pem alpn h2,http/1.1
    option forwardfor
    http-request set-header X-Request-ID %[uuid]
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    default_backend pods
backend pods
    server pod0 {backend}
"#,
        dir = dir.display()
    )
}

/// `wrk` from the client namespace (on `cpus` if given) with `threads` threads and `extra`
/// arguments (headers, a script); parses Requests/sec and the 99% latency.
fn wrk(
    topo: &Topology,
    cpus: Option<&[usize]>,
    url: &str,
    threads: usize,
    extra: &[&str],
) -> Result {
    let d = format!("{}s", seconds());
    let t = format!("-t{threads}");
    let host = format!("Host: {HOST}");
    let mut args = vec![
        t.as_str(),
        "-c",
        CONNECTIONS,
        "-d",
        &d,
        "--latency",
        "-H",
        &host,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run_in(&topo.client, cpus, "wrk", &args).expect("wrk");
    let mut r = Result::default();
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        }
        if let Some(v) = t.strip_prefix("99%") {
            r.p99_ms = wrk_duration_ms(v.trim());
        }
        if t.starts_with("Non-2xx or 3xx responses:") || t.starts_with("Socket errors:") {
            r.errors += t
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    assert!(r.rps > 0.0, "wrk output not understood:\n{out}");
    r
}

fn wrk_duration_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// `h2load` (HTTP/2 over TLS, ALPN h2) from the client namespace (on `cpus` if given); p99
/// from its per-request log.
fn h2load(
    topo: &Topology,
    cpus: Option<&[usize]>,
    url: &str,
    threads: usize,
    log: &std::path::Path,
) -> Result {
    let d = seconds().to_string();
    let t = threads.to_string();
    let out = run_in(
        &topo.client,
        cpus,
        "h2load",
        &[
            "-D",
            &d,
            "-c",
            CONNECTIONS,
            "-m",
            "8",
            "-t",
            &t,
            "-H",
            &format!(":authority: {HOST}"),
            "--log-file",
            &log.display().to_string(),
            url,
        ],
    )
    .expect("h2load");
    let mut r = Result::default();
    for line in out.lines() {
        // "finished in 5.00s, 12345.67 req/s, 1.23MB/s"
        if let Some(rest) = line.strip_prefix("finished in") {
            r.rps = rest
                .split(',')
                .find(|p| p.contains("req/s"))
                .and_then(|p| p.trim().trim_end_matches("req/s").trim().parse().ok())
                .unwrap_or(0.0);
        }
        // "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
        if let Some(rest) = line.strip_prefix("requests:") {
            for part in rest.split(',') {
                let part = part.trim();
                if part.ends_with("failed")
                    || part.ends_with("errored")
                    || part.ends_with("timeout")
                {
                    r.errors += part
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    // Log lines: "<start µs> <status> <duration µs>".
    let mut lat: Vec<u64> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    lat.sort_unstable();
    if !lat.is_empty() {
        r.p99_ms = lat[(lat.len() * 99 / 100).min(lat.len() - 1)] as f64 / 1000.0;
    }
    assert!(r.rps > 0.0, "h2load output not understood:\n{out}");
    r
}

/// A peer stopped with SIGTERM on drop (nginx's master then stops its workers) before
/// [`KillOnDrop`] kills it, so a failing benchmark leaves no worker behind.
struct StopOnDrop(KillOnDrop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self
            .0
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
    }
}

/// The middle value (the mean of the two middle ones for an even count); NaN when empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the case named `name` runs (`BENCH_CASES`: comma-separated substrings).
fn selected(name: &str) -> bool {
    match std::env::var("BENCH_CASES") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|c| name.contains(c.trim())),
        _ => true,
    }
}

#[test]
#[ignore = "benchmark: cargo xtask bench l7"]
fn l7_proxy_vs_nginx() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let cpus = Cpus::plan();
    // Threads inherit their creator's affinity: the backend's from here, the proxies' below.
    if let Some(c) = &cpus {
        pin_thread(&c.load);
    }
    let backend = HttpBackend::start_in(&topo.pods[0].ns, "0.0.0.0:8080".parse().unwrap(), "pod0")
        .expect("backend");
    let backend_addr = SocketAddr::new(topo.pods[0].v4.into(), 8080);
    let dir = tempfile::tempdir().expect("tempdir");
    let (crt, key) = self_signed_pem(&[HOST]).expect("certificate");
    std::fs::write(dir.path().join("tls.crt"), &crt).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    // An upload of `LARGE` bytes for wrk.
    let post = dir.path().join("post.lua");
    std::fs::write(
        &post,
        format!("wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", {LARGE})\n"),
    )
    .unwrap();

    // Ours: one runtime thread on the one-worker ports, one per core on the all-cores ports;
    // bodies streamed (nginx: `proxy_request_buffering off`) up to `MAX_BODY`.
    let args = |wide: bool| xdp_ingress::proxy::ProxyArgs {
        ports: xdp_ingress::proxy::args::ListenerPorts::at(
            Peer::Ours.port("http", wide),
            Peer::Ours.port("https", wide),
        ),
        max_body_bytes: MAX_BODY,
        request_buffer_bytes: 0,
        ..TestProxy::quiet_args()
    };
    if let Some(c) = &cpus {
        pin_thread(&c.proxy);
    }
    let proxy = NsProxy::start_with_workers(&topo.node, args(false), 1);
    if let Some(c) = &cpus {
        pin_thread(&c.all);
    }
    let wide_proxy = NsProxy::start_with_workers(&topo.node, args(true), cores());
    // The peers' processes and the load generators are pinned by `taskset` (or not at all).
    let (one_cpus, load_cpus, all_cpus) = match &cpus {
        Some(c) => (Some(&c.proxy[..]), Some(&c.load[..]), Some(&c.all[..])),
        None => (None, None, None),
    };
    let mut l7 = l7_with(
        vec![vhost(
            HOST,
            vec![route_to(
                path("Prefix", "/"),
                upstream_at("backend", &[backend_addr]),
            )],
            false,
        )],
        None,
    );
    l7.certificates.insert(
        HOST.into(),
        std::sync::Arc::new(xdp_ingress::model::TlsCertificate {
            secret: xdp_ingress::model::ObjectRef {
                kind: xdp_ingress::model::ObjectKind::Secret,
                namespace: "default".into(),
                name: "bench-tls".into(),
            },
            chain_pem: crt.as_bytes().into(),
            key_pem: key.as_bytes().into(),
        }),
    );
    proxy.handle.apply(snapshot(1, l7.clone()));
    wide_proxy.handle.apply(snapshot(1, l7));

    // HAProxy wants the chain and the key in one file.
    std::fs::write(dir.path().join("haproxy.pem"), format!("{crt}{key}")).unwrap();
    let mut peers = Vec::new();
    for wide in [false, true] {
        let tag = if wide { "wide" } else { "one" };
        let peer_cpus = if wide { all_cpus } else { one_cpus };
        let conf = dir.path().join(format!("nginx-{tag}.conf"));
        std::fs::write(&conf, nginx_conf(dir.path(), backend_addr, wide)).unwrap();
        let nginx = KillOnDrop::spawn(pinned_cmd(&topo.node, peer_cpus, "nginx").args([
            "-c",
            &conf.display().to_string(),
            "-p",
            &dir.path().display().to_string(),
        ]))
        .expect("nginx starts");
        peers.push(StopOnDrop(nginx));
        let haconf = dir.path().join(format!("haproxy-{tag}.cfg"));
        std::fs::write(&haconf, haproxy_conf(dir.path(), backend_addr, wide)).unwrap();
        // `-db`: foreground, one process (its threads end with it).
        let haproxy = KillOnDrop::spawn(pinned_cmd(&topo.node, peer_cpus, "haproxy").args([
            "-db",
            "-f",
            &haconf.display().to_string(),
        ]))
        .expect("haproxy starts");
        peers.push(StopOnDrop(haproxy));
    }
    // Wait until all of them answer.
    for wide in [false, true] {
        for peer in Peer::ALL {
            let url = peer.url("http", wide, "/fixed");
            let mut ok = false;
            for _ in 0..50 {
                if topo
                    .client
                    .run(
                        "curl",
                        &["-sf", "-m", "2", "-H", &format!("Host: {HOST}"), &url],
                    )
                    .is_ok()
                {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                ok,
                "{url} never answered; nginx log: {}",
                std::fs::read_to_string(dir.path().join("error-one.log")).unwrap_or_default()
            );
        }
    }

    let wide_threads = cores();
    // MB/s from requests/s of `LARGE`-byte bodies.
    let mbps = |r: Result| Result {
        rps: r.rps * LARGE as f64 / 1e6,
        ..r
    };
    let close = ["-H", "Connection: close"];
    let post_script = post.display().to_string();
    let upload = ["-s", post_script.as_str()];
    let large = format!("/bytes/{LARGE}");
    type Case<'a> = (&'a str, Box<dyn Fn(Peer) -> Result + 'a>);
    let cases: Vec<Case<'_>> = vec![
        (
            "HTTP/1.1 keep-alive (wrk)",
            Box::new(|peer| wrk(&topo, load_cpus, &peer.url("http", false, "/fixed"), 1, &[])),
        ),
        (
            "HTTPS HTTP/1.1 (wrk)",
            Box::new(|peer| {
                wrk(
                    &topo,
                    load_cpus,
                    &peer.url("https", false, "/fixed"),
                    1,
                    &[],
                )
            }),
        ),
        (
            "HTTP/2 over TLS (h2load)",
            Box::new(|peer| {
                let log = dir.path().join(format!("h2-{}.log", peer.name()));
                h2load(
                    &topo,
                    load_cpus,
                    &peer.url("https", false, "/fixed"),
                    1,
                    &log,
                )
            }),
        ),
        (
            "HTTP/1.1 conn/request",
            Box::new(|peer| {
                wrk(
                    &topo,
                    load_cpus,
                    &peer.url("http", false, "/fixed"),
                    1,
                    &close,
                )
            }),
        ),
        (
            "HTTPS conn/request (hs/s)",
            Box::new(|peer| {
                wrk(
                    &topo,
                    load_cpus,
                    &peer.url("https", false, "/fixed"),
                    1,
                    &close,
                )
            }),
        ),
        (
            "1 MiB down (MB/s)",
            Box::new(|peer| {
                mbps(wrk(
                    &topo,
                    load_cpus,
                    &peer.url("http", false, &large),
                    1,
                    &[],
                ))
            }),
        ),
        (
            "1 MiB up (MB/s)",
            Box::new(|peer| {
                mbps(wrk(
                    &topo,
                    load_cpus,
                    &peer.url("http", false, "/discard"),
                    1,
                    &upload,
                ))
            }),
        ),
        (
            "all cores HTTP/1.1",
            Box::new(|peer| {
                wrk(
                    &topo,
                    all_cpus,
                    &peer.url("http", true, "/fixed"),
                    wide_threads,
                    &[],
                )
            }),
        ),
        (
            "all cores HTTPS",
            Box::new(|peer| {
                wrk(
                    &topo,
                    all_cpus,
                    &peer.url("https", true, "/fixed"),
                    wide_threads,
                    &[],
                )
            }),
        ),
        (
            "all cores HTTP/2",
            Box::new(|peer| {
                let log = dir.path().join(format!("h2-wide-{}.log", peer.name()));
                h2load(
                    &topo,
                    all_cpus,
                    &peer.url("https", true, "/fixed"),
                    wide_threads,
                    &log,
                )
            }),
        ),
    ];
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nL7 proxy vs nginx {} and HAProxy {} (1 worker each; \"all cores\": {} each; {CONNECTIONS} connections, {} rounds of {} s, same backend; {}; ratios are ours / peer: best round's, and the median of the rounds' ratios)",
        nginx_version(),
        haproxy_version(),
        cores(),
        rounds(),
        seconds(),
        match &cpus {
            Some(c) => format!(
                "1-worker proxies pinned to cpu {}, load and backend to cpu {}",
                cpu_list(&c.proxy),
                cpu_list(&c.load)
            ),
            None => "unpinned".to_string(),
        }
    );
    let _ = writeln!(
        report,
        "{:<26} {:>10} {:>9} {:>11} {:>9} {:>11} {:>9} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6}",
        "case",
        "ours rps",
        "ours p99",
        "nginx rps",
        "nginx p99",
        "haproxy rps",
        "hapr p99",
        "rps/ngx",
        "p99/ngx",
        "rps/hap",
        "p99/hap",
        "med r/ng",
        "med p/ng",
        "load1"
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = testbed::bench_out::BenchOut::new("l7");
    for (name, run) in cases.iter().filter(|(name, _)| selected(name)) {
        let load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_default();
        // Alternating rounds (ours, nginx, haproxy, again): the machine is shared, and a
        // neighbour's burst should not decide the ratio.
        let rounds: Vec<[Result; 3]> = (0..rounds()).map(|_| Peer::ALL.map(run)).collect();
        let best = |i: usize| {
            rounds
                .iter()
                .map(|r| r[i])
                .fold(Result::default(), |a, b| if b.rps > a.rps { b } else { a })
        };
        let [ours, ngx, hap] = [0, 1, 2].map(best);
        let median_rps = median(rounds.iter().map(|r| r[0].rps / r[1].rps).collect());
        let median_p99 = median(rounds.iter().map(|r| r[0].p99_ms / r[1].p99_ms).collect());
        let errors: u64 = rounds.iter().flatten().map(|r| r.errors).sum();
        for (peer, r) in [("xdp-ingress", ours), ("nginx", ngx), ("haproxy", hap)] {
            out.bar("L7 req/s", "req/s", name, peer, r.rps);
            out.bar("L7 p99 latency", "ms", name, peer, r.p99_ms);
        }
        let line = format!(
            "{:<26} {:>10.0} {:>7.2}ms {:>11.0} {:>7.2}ms {:>11.0} {:>7.2}ms {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>6}{}",
            name,
            ours.rps,
            ours.p99_ms,
            ngx.rps,
            ngx.p99_ms,
            hap.rps,
            hap.p99_ms,
            ours.rps / ngx.rps,
            ours.p99_ms / ngx.p99_ms,
            ours.rps / hap.rps,
            ours.p99_ms / hap.p99_ms,
            median_rps,
            median_p99,
            load1,
            if errors > 0 {
                let sum = |i: usize| rounds.iter().map(|r| r[i].errors).sum::<u64>();
                format!(
                    "  (errors: ours {}, nginx {}, haproxy {})",
                    sum(0),
                    sum(1),
                    sum(2)
                )
            } else {
                String::new()
            }
        );
        // Progress on stderr: a full run takes minutes.
        eprintln!("{line}");
        let _ = writeln!(report, "{line}");
    }
    let _ = writeln!(
        report,
        "load average at start: {}; at end: {}",
        load.trim(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("{report}");
    out.table(&report);
    out.write();
    drop(peers);
    drop(backend);
}

/// The proxies measured, each on its own ports of the node namespace.
#[derive(Debug, Clone, Copy)]
enum Peer {
    Ours,
    Nginx,
    Haproxy,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::Ours, Peer::Nginx, Peer::Haproxy];

    fn name(self) -> &'static str {
        match self {
            Peer::Ours => "ours",
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
        }
    }

    /// `scheme` is `http` or `https`; `wide`: the all-cores instance.
    fn port(self, scheme: &str, wide: bool) -> u16 {
        let port = match (self, scheme) {
            (Peer::Ours, "http") => 80,
            (Peer::Ours, _) => 443,
            (Peer::Nginx, "http") => 8080,
            (Peer::Nginx, _) => 8443,
            (Peer::Haproxy, "http") => 8081,
            (Peer::Haproxy, _) => 8444,
        };
        if wide { port + 10 } else { port }
    }

    fn url(self, scheme: &str, wide: bool, path: &str) -> String {
        format!("{scheme}://198.18.0.2:{}{path}", self.port(scheme, wide))
    }
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

fn nginx_version() -> String {
    Command::new("nginx")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .replace("nginx version: ", "")
        })
        .unwrap_or_default()
}
