//! Requests/s and p99 latency of the L7 proxy next to Debian's nginx, measured in the same
//! run: one worker each (a one-thread tokio runtime vs `worker_processes 1`), an equivalent
//! configuration (one host, prefix `/` to one upstream with keep-alive, forwarding headers,
//! no access log), the same echo backend in a pod namespace, the same load from the client
//! namespace: wrk for HTTP/1.1 keep-alive and HTTPS, h2load for HTTP/2 over TLS.
//! Run by `cargo xtask bench l7` (or `cargo test --release -p xdp-ingress-e2e --test bench_l7
//! -- --ignored --nocapture`). Each case runs twice per proxy, alternating, `BENCH_SECONDS`
//! (default 5) seconds each; the better of the two rounds is reported.

mod l7common;

use std::{fmt::Write as _, net::SocketAddr, process::Command, time::Duration};

use l7common::*;
use testbed::{Topology, http_backend::HttpBackend, process::KillOnDrop};
use xdp_ingress::proxy::{fixtures::*, tls::self_signed_pem};

const HOST: &str = "bench.test";
const CONNECTIONS: &str = "32";

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

fn nginx_conf(dir: &std::path::Path, backend: SocketAddr) -> String {
    format!(
        r#"
# One process that is the worker: same as `worker_processes 1` for throughput, and nothing
# is left behind if the benchmark dies (a killed master would orphan its worker).
master_process off;
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
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
    upstream backend {{
        server {backend};
        keepalive 256;
    }}
    server {{
        listen 8080;
        listen 8443 ssl http2;
        server_name {HOST};
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
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
        }}
    }}
}}
"#,
        dir = dir.display()
    )
}

/// `wrk` from the client namespace; parses Requests/sec and the 99% latency.
fn wrk(topo: &Topology, url: &str) -> Result {
    let d = format!("{}s", seconds());
    let out = topo
        .client
        .run(
            "wrk",
            &[
                "-t1",
                "-c",
                CONNECTIONS,
                "-d",
                &d,
                "--latency",
                "-H",
                &format!("Host: {HOST}"),
                url,
            ],
        )
        .expect("wrk");
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

/// `h2load` (HTTP/2 over TLS, ALPN h2) from the client namespace; p99 from its per-request log.
fn h2load(topo: &Topology, url: &str, log: &std::path::Path) -> Result {
    let d = seconds().to_string();
    let out = topo
        .client
        .run(
            "h2load",
            &[
                "-D",
                &d,
                "-c",
                CONNECTIONS,
                "-m",
                "8",
                "-t",
                "1",
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

#[test]
#[ignore = "benchmark: cargo xtask bench l7"]
fn l7_proxy_vs_nginx() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let backend = HttpBackend::start_in(&topo.pods[0].ns, "0.0.0.0:8080".parse().unwrap(), "pod0")
        .expect("backend");
    let backend_addr = SocketAddr::new(topo.pods[0].v4.into(), 8080);
    let dir = tempfile::tempdir().expect("tempdir");
    let (crt, key) = self_signed_pem(&[HOST]).expect("certificate");
    std::fs::write(dir.path().join("tls.crt"), &crt).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), backend_addr)).unwrap();

    // Ours: one runtime thread, ports 80/443 in the node namespace.
    let proxy = NsProxy::start_with_workers(&topo.node, TestProxy::quiet_args(), 1);
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
    proxy.handle.apply(snapshot(1, l7));

    let mut nginx = KillOnDrop::spawn(topo.node.cmd("nginx").args([
        "-c",
        &conf.display().to_string(),
        "-p",
        &dir.path().display().to_string(),
    ]))
    .expect("nginx starts");
    // Wait until both answer.
    for url in ["http://198.18.0.2:80/fixed", "http://198.18.0.2:8080/fixed"] {
        let mut ok = false;
        for _ in 0..50 {
            if topo
                .client
                .run(
                    "curl",
                    &["-sf", "-m", "2", "-H", &format!("Host: {HOST}"), url],
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
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }

    type Case<'a> = (&'a str, Box<dyn Fn(bool) -> Result + 'a>);
    let cases: [Case<'_>; 3] = [
        (
            "HTTP/1.1 keep-alive (wrk)",
            Box::new(|ours| {
                wrk(
                    &topo,
                    if ours {
                        "http://198.18.0.2:80/fixed"
                    } else {
                        "http://198.18.0.2:8080/fixed"
                    },
                )
            }),
        ),
        (
            "HTTPS HTTP/1.1 (wrk)",
            Box::new(|ours| {
                wrk(
                    &topo,
                    if ours {
                        "https://198.18.0.2:443/fixed"
                    } else {
                        "https://198.18.0.2:8443/fixed"
                    },
                )
            }),
        ),
        (
            "HTTP/2 over TLS (h2load)",
            Box::new(|ours| {
                let log = dir
                    .path()
                    .join(if ours { "h2-ours.log" } else { "h2-nginx.log" });
                h2load(
                    &topo,
                    if ours {
                        "https://198.18.0.2:443/fixed"
                    } else {
                        "https://198.18.0.2:8443/fixed"
                    },
                    &log,
                )
            }),
        ),
    ];
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\nL7 proxy vs nginx {} (1 worker each, {CONNECTIONS} connections, {} s per run, same backend)",
        nginx_version(),
        seconds()
    );
    let _ = writeln!(
        report,
        "{:<28} {:>12} {:>10} {:>12} {:>10} {:>9} {:>9}",
        "case", "ours req/s", "ours p99", "nginx req/s", "nginx p99", "rps ratio", "p99 ratio"
    );
    for (name, run) in &cases {
        // Two alternating rounds each (ours, nginx, ours, nginx), the better round counts:
        // the machine is shared, and a neighbour's burst should not decide the ratio.
        let best = |a: Result, b: Result| if b.rps > a.rps { b } else { a };
        let (o1, t1) = (run(true), run(false));
        let (o2, t2) = (run(true), run(false));
        let (ours, theirs) = (best(o1, o2), best(t1, t2));
        let _ = writeln!(
            report,
            "{:<28} {:>12.0} {:>8.2}ms {:>12.0} {:>8.2}ms {:>9.2} {:>9.2}{}",
            name,
            ours.rps,
            ours.p99_ms,
            theirs.rps,
            theirs.p99_ms,
            ours.rps / theirs.rps,
            ours.p99_ms / theirs.p99_ms,
            if ours.errors + theirs.errors > 0 {
                format!("  (errors: ours {}, nginx {})", ours.errors, theirs.errors)
            } else {
                String::new()
            }
        );
    }
    println!("{report}");
    let _ = nginx.signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
    drop(backend);
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
