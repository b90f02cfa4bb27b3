//! What a rate limit costs per request, measured in one run: the same route without a limit,
//! with a per-node limit (`limit-rps`, in-memory GCRA) and with the cluster-wide limit (the
//! same `limit-rps` counted in Redis, `--rate-limit-redis`: one EVALSHA per request on a
//! pipelined connection to Debian's `redis-server` on the node namespace's loopback). The limit
//! is far above the load, so every request is admitted and pays the whole decision. One
//! runtime thread per proxy, `wrk` from the client namespace (one client address: one bucket,
//! the hot-key worst case). Each case runs twice, alternating, `BENCH_SECONDS` (default 5)
//! each; the better round is reported. Run by `cargo xtask bench limits`.

mod l7common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use l7common::*;
use testbed::{Topology, http_backend::HttpBackend, redis::RedisServer};
use xdp_ingress::{model::RateLimit, proxy::fixtures::*};

const CONNECTIONS: &str = "32";

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .clamp(1, 60)
}

/// Requests/s and p99 (ms) of `wrk` against `url` with `Host: host`; panics on refusals.
fn wrk(topo: &Topology, host: &str, url: &str) -> (f64, f64) {
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
                &format!("Host: {host}"),
                url,
            ],
        )
        .expect("wrk");
    let (mut rps, mut p99) = (0.0, f64::NAN);
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(0.0);
        }
        if let Some(v) = line.strip_prefix("99%") {
            let v = v.trim();
            let (n, unit) =
                v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = n.parse().unwrap_or(f64::NAN);
            p99 = match unit {
                "us" => n / 1000.0,
                "ms" => n,
                "s" => n * 1000.0,
                _ => f64::NAN,
            };
        }
        assert!(
            !line.starts_with("Non-2xx or 3xx responses:"),
            "{host}: requests refused, the benchmark measures admitted ones:\n{out}"
        );
    }
    assert!(rps > 0.0, "wrk output not understood:\n{out}");
    (rps, p99)
}

/// A route for `host` to the pod with `limit` as its `limit-rps` (none: no limit).
fn host_with(
    host: &str,
    backend: SocketAddr,
    limit: Option<u32>,
) -> xdp_ingress::model::VirtualHost {
    let mut route = route_to(path("Prefix", "/"), upstream_at("backend", &[backend]));
    Arc::make_mut(&mut route.policy).rate_limit = limit.map(|rps| {
        Arc::new(RateLimit {
            zone: format!("default/{host}"),
            rps: Some(rps),
            rpm: None,
            burst_multiplier: 5,
            connections: None,
            exempt: vec![],
        })
    });
    vhost(host, vec![route], false)
}

#[test]
#[ignore = "benchmark: cargo xtask bench limits"]
fn rate_limit_cost_none_local_redis() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let _backend = HttpBackend::start_in(&topo.pods[0].ns, "0.0.0.0:8080".parse().unwrap(), "pod0")
        .expect("backend");
    let backend = SocketAddr::new(topo.pods[0].v4.into(), 8080);
    let redis = RedisServer::start(Some(&topo.node), 0).expect("redis-server starts");
    // Far above what one worker serves: every request is admitted.
    const LIMIT: u32 = 10_000_000;

    let local = NsProxy::start_with_workers(&topo.node, TestProxy::quiet_args(), 1);
    local.handle.apply(snapshot(
        1,
        l7_with(
            vec![
                host_with("none.test", backend, None),
                host_with("local.test", backend, Some(LIMIT)),
            ],
            None,
        ),
    ));
    let mut args = TestProxy::quiet_args();
    args.ports.http_port = 81;
    args.ports.https_port = 444;
    args.rate_limit_redis = Some(redis.url());
    let shared = NsProxy::start_with_workers(&topo.node, args, 1);
    shared.handle.apply(snapshot(
        1,
        l7_with(vec![host_with("redis.test", backend, Some(LIMIT))], None),
    ));
    let node = topo.node_v4;
    let cases = [
        ("no limit", "none.test", format!("http://{node}:80/fixed")),
        (
            "local limit",
            "local.test",
            format!("http://{node}:80/fixed"),
        ),
        (
            "Redis limit",
            "redis.test",
            format!("http://{node}:81/fixed"),
        ),
    ];
    // Ready: each answers (the Redis one once its store is connected).
    for (_, host, url) in &cases {
        let ok = (0..100).any(|_| {
            let got = topo.client.run(
                "curl",
                &["-sf", "-m", "2", "-H", &format!("Host: {host}"), url],
            );
            got.is_ok() || {
                std::thread::sleep(Duration::from_millis(100));
                false
            }
        });
        assert!(ok, "{url} ({host}) never answered");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !shared
        .handle
        .metrics_text()
        .contains("xdp_ingress_rate_limit_store_up 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never connected"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut best = [(0.0f64, f64::NAN); 3];
    for _round in 0..2 {
        for (i, (_, host, url)) in cases.iter().enumerate() {
            let r = wrk(&topo, host, url);
            if r.0 > best[i].0 {
                best[i] = r;
            }
        }
    }
    assert!(
        !shared.handle.metrics_text().lines().any(|l| l
            .starts_with("xdp_ingress_rate_limit_fallback_decisions_total ")
            && !l.ends_with(" 0")),
        "the Redis case fell back to per-node decisions: not a Redis measurement"
    );
    let none = best[0].0;
    let mut text = format!(
        "\nrate limit cost per request (1 worker, wrk -c{CONNECTIONS}, {}s, one client address)\n",
        seconds()
    );
    text += &format!(
        "{:<14} {:>10} {:>9} {:>16} {:>20}\n",
        "case", "req/s", "p99 ms", "req/s vs none", "us/request vs none"
    );
    let mut out = testbed::bench_out::BenchOut::new("limits");
    for ((name, _, _), (rps, p99)) in cases.iter().zip(best) {
        text += &format!(
            "{name:<14} {rps:>10.0} {p99:>9.2} {:>16.3} {:>20.2}\n",
            rps / none,
            1e6 / rps - 1e6 / none
        );
        out.bar("rate limit req/s", "req/s", name, "req/s", rps);
    }
    println!("{text}");
    out.table(&text);
    out.write();
}
