//! Rate limits held as one policy across nodes: two `xdp-ingress` daemons (two nodes'
//! proxies, in the test bed's node namespace) count `limit-rps` and the global per-client
//! limit in one Redis (Debian's `redis-server`, started by the test on the node namespace's
//! loopback, killed at the end). Expected values from nginx's `limit_req ... burst=N nodelay`
//! (ngx_http_limit_req_module: `1 + burst` at once from a quiet client, then one per
//! `1/rate`), for the cluster as a whole rather than per node; while Redis is down, each node
//! counts `limit / N` itself (N = `--rate-limit-cluster-nodes`), and the shared limit is back
//! when Redis is.
//!
//! Also: the Lua script Redis runs decides as the proxy's own GCRA, step by step.

mod l7common;

use std::{
    net::SocketAddr,
    process::Stdio,
    time::{Duration, Instant},
};

use l7common::*;
use testbed::{Topology, http_backend::HttpBackend, process::KillOnDrop, redis::RedisServer};

/// One daemon: its HTTP and admin addresses (in the node namespace).
struct Daemon {
    http: SocketAddr,
    metrics: SocketAddr,
    _process: KillOnDrop,
}

struct Cluster {
    topo: Topology,
    redis: RedisServer,
    daemons: Vec<Daemon>,
    _backend: HttpBackend,
    _dir: tempfile::TempDir,
}

/// Two Ingresses, `one` (host one.test, `annotations`) and `two` (two.test, no annotations),
/// to one pod, with the controller ConfigMap `configmap`.
fn manifests(pod: std::net::Ipv4Addr, annotations: &[(&str, &str)], configmap: &str) -> String {
    let ann = nginx_annotations_yaml(annotations);
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{pod}"], conditions: {{ready: true}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: one
  namespace: default
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: one.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: two, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: two.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
{configmap}"#
    )
}

/// Redis and two daemons sharing it, serving [`manifests`]; `None` when not root or
/// `redis-server` is missing (the privileged runner fails on a skip under CI).
fn cluster(annotations: &[(&str, &str)], configmap: &[(&str, &str)]) -> Option<Cluster> {
    cluster_over(annotations, configmap, Redis::Plain)
}

/// How the daemons reach Redis.
#[derive(Clone, Copy, PartialEq)]
enum Redis {
    /// `redis://`.
    Plain,
    /// `rediss://` with `--rate-limit-redis-ca`: the CA that signed Redis's certificate when
    /// `trusted`, else another one.
    Tls { trusted: bool },
}

/// A CA, and a certificate for 127.0.0.1 it signed with its key: `(ca, chain, key)` in PEM.
fn redis_tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// [`cluster`] with Redis reached as `redis` says.
fn cluster_over(
    annotations: &[(&str, &str)],
    configmap: &[(&str, &str)],
    redis_kind: Redis,
) -> Option<Cluster> {
    if !testbed::require_root() {
        return None;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let topo = Topology::new(1).expect("topology");
    let pod = &topo.pods[0];
    let backend =
        HttpBackend::start_in(&pod.ns, "0.0.0.0:8080".parse().unwrap(), &pod.name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (redis, redis_args) = match redis_kind {
        Redis::Plain => {
            let redis = RedisServer::start(Some(&topo.node), 0).expect("redis-server starts");
            let url = redis.url();
            (redis, vec![url])
        }
        Redis::Tls { trusted } => {
            let (ca, chain, key) = redis_tls_material();
            let redis = RedisServer::start_tls(Some(&topo.node), &chain, &key)
                .expect("redis-server starts");
            let ca = if trusted { ca } else { redis_tls_material().0 };
            let ca_file = dir.path().join("redis-ca.crt");
            std::fs::write(&ca_file, ca).unwrap();
            let url = redis.tls_url().expect("TLS port");
            (
                redis,
                vec![
                    url,
                    "--rate-limit-redis-ca".into(),
                    ca_file.display().to_string(),
                ],
            )
        }
    };
    let cm = if configmap.is_empty() {
        String::new()
    } else {
        configmap_yaml(configmap)
    };
    std::fs::write(
        dir.path().join("all.yaml"),
        manifests(pod.v4, annotations, &cm),
    )
    .unwrap();
    let node = topo.node_v4;
    let daemons = (0..2u16)
        .map(|i| {
            let http = SocketAddr::from((node, 8081 + i));
            let metrics = SocketAddr::from((node, 9101 + i));
            let mut cmd = topo.node.cmd(&bin.display().to_string());
            cmd.args(["run", "--no-xdp", "--manifests"])
                .arg(dir.path())
                .args(["--configmap", "ingress-nginx/cm"])
                .args(["--listen-address", &node.to_string()])
                .args(["--http-port", &http.port().to_string()])
                .args(["--https-port", &(8444 + i).to_string()])
                .args(["--metrics-addr", &metrics.to_string()])
                .args(["--access-log-format", "off"])
                .arg("--rate-limit-redis")
                .args(&redis_args)
                .args(["--rate-limit-cluster-nodes", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            Daemon {
                http,
                metrics,
                _process: KillOnDrop::spawn(&mut cmd).expect("daemon starts"),
            }
        })
        .collect();
    let c = Cluster {
        topo,
        redis,
        daemons,
        _backend: backend,
        _dir: dir,
    };
    // Ready: the snapshot is live and Redis is connected on both (or, with a CA that did not
    // sign Redis's certificate, refused on both).
    let up = redis_kind != Redis::Tls { trusted: false };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(0..2).all(|i| c.store_up(i) == Some(up)) {
        assert!(Instant::now() < deadline, "daemons never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(c)
}

impl Cluster {
    /// Statuses of `n` requests from the client, to daemon `to(i)` for host `host(i)`, spaced
    /// `every` apart (zero: back to back); and how long they took.
    fn send(
        &self,
        n: usize,
        every: Duration,
        to: impl Fn(usize) -> usize + Send + 'static,
        host: impl Fn(usize) -> &'static str + Send + 'static,
    ) -> (Vec<u16>, Duration) {
        let addrs: Vec<SocketAddr> = self.daemons.iter().map(|d| d.http).collect();
        in_ns(&self.topo.client, move || async move {
            let c = http1_client();
            let start = tokio::time::Instant::now();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if !every.is_zero() {
                    tokio::time::sleep_until(start + every * i as u32).await;
                }
                out.push(get(&c, addrs[to(i)], host(i), "/").await.status.as_u16());
            }
            (out, start.elapsed())
        })
    }

    fn metrics(&self, daemon: usize) -> Option<String> {
        let addr = self.daemons[daemon].metrics;
        in_ns(&self.topo.client, move || async move {
            let c = http1_client();
            let got = send(&c, req(addr, "metrics", "/metrics")).await.ok()?;
            (got.status == 200).then(|| String::from_utf8_lossy(&got.body).into_owned())
        })
    }

    /// `xdp_ingress_rate_limit_store_up` of a ready daemon.
    fn store_up(&self, daemon: usize) -> Option<bool> {
        let text = self.metrics(daemon)?;
        if !text.contains("xdp_ingress_config_version 1") {
            return None;
        }
        sample(&text, "xdp_ingress_rate_limit_store_up").map(|v| v == 1.0)
    }
}

/// The value of the sample named `name` (without labels).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

/// Requests a limit of `per_second` may admit beyond its burst while `elapsed` passes: a
/// burst is sent as fast as the machine allows, so on a loaded one the bucket refills
/// during it. Assertions allow for this instead of failing a slow run (a time guard here
/// failed CI at 264 ms).
fn refills(elapsed: Duration, per_second: f64) -> usize {
    (elapsed.as_secs_f64() * per_second).ceil() as usize
}

/// Asserts that `ok` requests admitted by a limit of `per_second` with `burst_admits` at
/// once fits a burst that took `elapsed`.
fn assert_burst(ok: usize, burst_admits: usize, per_second: f64, elapsed: Duration, what: &str) {
    let most = burst_admits + refills(elapsed, per_second);
    assert!(
        (burst_admits..=most).contains(&ok),
        "{what}: {ok} admitted, {burst_admits} to {most} expected in {elapsed:?}"
    );
}

/// What nginx's `limit_req rate=<rps>r/s burst=<burst> nodelay` admits from a quiet client
/// sending steadily for `elapsed`: `1 + burst` at once, then one per `1/rps`.
fn nginx_admits(rps: f64, burst: f64, elapsed: Duration) -> f64 {
    1.0 + burst + (rps * elapsed.as_secs_f64()).floor()
}

/// `limit-rps 5` with multiplier 1 (burst 5) on two daemons sharing Redis: a client sending
/// 40 requests a second for 3 s, alternating between the daemons, gets what one nginx would
/// give it (1 + 5 + 5 x 3 = 21), not twice that, and both daemons admit some of it.
#[test]
fn two_daemons_hold_one_limit_through_redis() {
    let Some(c) = cluster(&[("limit-rps", "5"), ("limit-burst-multiplier", "1")], &[]) else {
        return;
    };
    let (got, took) = c.send(120, Duration::from_millis(25), |i| i % 2, |_| "one.test");
    let ok = count(&got, 200) as f64;
    let expected = nginx_admits(5.0, 5.0, took);
    assert!(
        ok <= expected + 1.0 && ok >= expected - 3.0,
        "{ok} admitted in {took:?}, nginx would admit {expected} (per node: {}): {got:?}",
        2.0 * expected
    );
    assert_eq!(count(&got, 200) + count(&got, 503), got.len(), "{got:?}");
    let on = |d: usize| {
        (0..got.len())
            .filter(|&i| i % 2 == d && got[i] == 200)
            .count()
    };
    assert!(on(0) > 0 && on(1) > 0, "{got:?}");
    let refused = |d: usize| {
        sample(
            &c.metrics(d).unwrap().replace(
                r#"xdp_ingress_rate_limited_requests_total{ingress="default/one",reason="limit_req"}"#,
                "refused",
            ),
            "refused",
        )
        .unwrap_or(0.0)
    };
    assert_eq!(
        refused(0) + refused(1),
        count(&got, 503) as f64,
        "refusals counted by ingress and reason"
    );
}

/// `rediss://`: the same shared limit through Redis's TLS port, verified against
/// `--rate-limit-redis-ca`; from a quiet client at once, nginx's `1 + burst` for the cluster.
#[test]
fn two_daemons_hold_one_limit_through_a_tls_redis() {
    let Some(c) = cluster_over(
        &[("limit-rps", "2"), ("limit-burst-multiplier", "2")],
        &[],
        Redis::Tls { trusted: true },
    ) else {
        return;
    };
    let (got, took) = c.send(12, Duration::ZERO, |i| i % 2, |_| "one.test");
    let ok = count(&got, 200) as f64;
    let expected = nginx_admits(2.0, 4.0, took);
    assert!(
        ok <= expected + 1.0 && ok >= expected - 1.0,
        "{ok} admitted in {took:?}, nginx would admit {expected}: {got:?}"
    );
    assert_eq!(c.store_up(0), Some(true));
}

/// A Redis whose certificate the configured CA did not sign is never used: the store stays
/// down (`xdp_ingress_rate_limit_store_up 0`) and requests are still served, decided per node.
#[test]
fn a_tls_redis_signed_by_another_ca_is_refused_and_limits_fall_back() {
    let Some(c) = cluster_over(&[("limit-rps", "100")], &[], Redis::Tls { trusted: false }) else {
        return;
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.store_up(0), Some(false));
    assert_eq!(c.store_up(1), Some(false));
    let (got, _) = c.send(4, Duration::ZERO, |i| i % 2, |_| "one.test");
    assert_eq!(count(&got, 200), 4, "{got:?}");
}

/// The global per-client limit (ConfigMap `global-limit-rps 2`, multiplier 2: 1 + 4 at once)
/// over two Ingresses on two daemons: 5 requests in all pass, whichever Ingress and daemon
/// they go to, and the rest get `limit-req-status-code` (429).
#[test]
fn the_global_limit_holds_over_ingresses_and_daemons() {
    let Some(c) = cluster(
        &[],
        &[
            ("global-limit-rps", "2"),
            ("global-limit-burst-multiplier", "2"),
            ("limit-req-status-code", "429"),
        ],
    ) else {
        return;
    };
    let hosts = |i: usize| {
        if (i / 2).is_multiple_of(2) {
            "one.test"
        } else {
            "two.test"
        }
    };
    let (got, took) = c.send(16, Duration::ZERO, |i| i % 2, hosts);
    assert_eq!(&got[..5], [200; 5], "{got:?}");
    assert_eq!(count(&got, 200) + count(&got, 429), got.len(), "{got:?}");
    assert_burst(count(&got, 200), 5, 2.0, took, "global limit");
}

/// `limit-rps 4` (burst 20) on two daemons, `--rate-limit-cluster-nodes 2`: with Redis, a
/// burst to one daemon gets 1 + 20 and the other daemon then refuses (one bucket); Redis
/// killed under load, every request is still answered (200 or 503), and each daemon counts
/// 4/2 per second with a burst of 20/2 (1 + 10 at once), the store gauge says 0 and fallback
/// decisions are counted; Redis back, both reconnect by themselves and the limit is shared
/// again.
#[test]
fn a_redis_outage_falls_back_to_limit_over_nodes_and_recovers() {
    let Some(c) = cluster(&[("limit-rps", "4")], &[]) else {
        return;
    };
    // (admitted, elapsed) of `n` requests at once to daemon `d`, all answered 200 or 503.
    let burst_to = |c: &Cluster, d: usize, n: usize| {
        let (got, took) = c.send(n, Duration::ZERO, move |_| d, |_| "one.test");
        assert_eq!(count(&got, 200) + count(&got, 503), n, "{got:?}");
        (count(&got, 200), took)
    };
    // Shared (4/s, 1 + 20 at once): a burst on daemon 0, then daemon 1 gets only what
    // refilled since the burst began (nothing on a quick machine).
    let shared = |c: &Cluster, what: &str| {
        let start = Instant::now();
        let (ok, took) = burst_to(c, 0, 30);
        assert_burst(ok, 21, 4.0, took, what);
        let (other, _) = burst_to(c, 1, 5);
        let since = start.elapsed();
        assert!(
            ok + other <= 21 + refills(since, 4.0),
            "{what}: daemon 1 shares daemon 0's bucket: {ok} + {other} admitted in {since:?}"
        );
    };
    shared(&c, "shared");

    // Load on daemon 1 (40 requests a second) while Redis dies.
    let load = std::thread::scope(|s| {
        let load = s.spawn(|| c.send(40, Duration::from_millis(25), |_| 1, |_| "one.test"));
        std::thread::sleep(Duration::from_millis(300));
        c.redis.kill();
        load.join().unwrap().0
    });
    assert_eq!(
        count(&load, 200) + count(&load, 503),
        load.len(),
        "{load:?}"
    );
    assert!(count(&load, 200) >= 5, "served after the outage: {load:?}");
    // Past the refusal Redis gave daemon 0 (its wait: a quarter second, one interval), which
    // it keeps without asking; the per-node buckets start full.
    std::thread::sleep(Duration::from_millis(400));
    // Per node, 2/s with a burst of 10: 1 + 10, served all the same.
    let (ok, took) = burst_to(&c, 0, 30);
    assert_burst(ok, 11, 2.0, took, "per node");
    for d in 0..2 {
        let m = c.metrics(d).unwrap();
        assert_eq!(sample(&m, "xdp_ingress_rate_limit_store_up"), Some(0.0));
        assert_eq!(sample(&m, "xdp_ingress_rate_limit_nodes"), Some(2.0));
        let fallback = sample(&m, "xdp_ingress_rate_limit_fallback_decisions_total").unwrap();
        // Daemon 0: its burst; daemon 1: the load after the outage.
        let least = [30.0, 10.0][d];
        assert!(
            fallback >= least,
            "daemon {d}: {fallback} fallback decisions"
        );
    }

    c.redis.restart().expect("redis-server restarts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(0..2).all(|d| c.store_up(d) == Some(true)) {
        assert!(Instant::now() < deadline, "daemons never reconnected");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The restarted Redis is empty: a full shared burst again, then nothing on the other.
    shared(&c, "shared again");
}

/// A Redis that stops answering (SIGSTOP) is as good as gone: each daemon's first decision
/// waits `--rate-limit-redis-timeout` (50ms) and then it, and the ones after it, are decided
/// per node (1 + 20/2 at once, as in an outage) without waiting again; resumed, Redis
/// decides again.
#[test]
fn a_stalled_redis_times_out_to_the_fallback() {
    let Some(c) = cluster(&[("limit-rps", "4")], &[]) else {
        return;
    };
    c.redis.freeze(true);
    let (got, took) = c.send(30, Duration::ZERO, |_| 0, |_| "one.test");
    c.redis.freeze(false);
    assert_eq!(count(&got, 200) + count(&got, 503), 30, "{got:?}");
    assert_burst(count(&got, 200), 11, 2.0, took, "per node while stalled");
    // One 50 ms timeout per request would be 1.5 s at least.
    assert!(
        took < Duration::from_millis(1200),
        "one timeout, not one per request: {took:?}"
    );
    let m = c.metrics(0).unwrap();
    assert!(sample(&m, "xdp_ingress_rate_limit_fallback_decisions_total").unwrap() >= 30.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.store_up(0) != Some(true) {
        assert!(Instant::now() < deadline, "never reconnected");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A full shared burst of 1 + 20, less the decision that timed out: Redis ran it when it
    // woke (counted, though the daemon had decided it itself), as the docs say it may.
    let (got, _) = c.send(30, Duration::ZERO, |_| 0, |_| "one.test");
    assert!((20..=21).contains(&count(&got, 200)), "{got:?}");
}

/// The script Redis runs is the proxy's GCRA (`Gcra::check`): over random timelines of
/// requests (with Redis's clock replaced by the test's), every decision and every stored
/// arrival time agree, for one limit and for two a request must both pass.
#[test]
fn the_redis_script_decides_as_the_local_gcra() {
    use xdp_ingress::proxy::rate_limit::{Gcra, store::SCRIPT};
    if testbed::redis::redis_server_bin().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server missing (apt-get install redis-server)"
        );
        return;
    }
    let redis = RedisServer::start(None, 0).expect("redis-server starts");
    // The test's clock instead of Redis's: the two ARGVs after the limits' own.
    let clocked = SCRIPT.replacen(
        "local t = redis.call('TIME')",
        "local t = {ARGV[#ARGV - 1], ARGV[#ARGV]}",
        1,
    );
    assert_ne!(
        clocked, SCRIPT,
        "the script reads Redis's clock as expected"
    );
    let script = redis::Script::new(&clocked);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    const US: u64 = 1000;
    // Intervals of half a second or more: keys expire on Redis's real clock, which must not
    // run past a simulated arrival time while a case runs.
    let cases: [&[Gcra]; 4] = [
        &[Gcra::new(2, 1_000_000_000, 2)],
        &[Gcra::new(1, 1_000_000_000, 10)],
        &[Gcra::new(60, 60_000_000_000, 0)],
        &[
            Gcra::new(2, 1_000_000_000, 5),
            Gcra::new(20, 60_000_000_000, 20),
        ],
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for (case, limits) in cases.iter().enumerate() {
        let keys: Vec<String> = (0..limits.len()).map(|i| format!("t:{case}:{i}")).collect();
        let mut tats = vec![0u64; limits.len()];
        // Redis's clock starts at a real epoch value; the local one at that value too.
        let mut now_us: u64 = 1_700_000_000_000_000;
        for step in 0..400 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly close together (bursts), sometimes a long pause.
            now_us += match seed % 10 {
                0 => seed % 5_000_000,
                1..=3 => 0,
                _ => seed % 200_000,
            };
            let now = now_us * US;
            let local: Option<Vec<u64>> = limits
                .iter()
                .zip(&tats)
                .map(|(g, &t)| g.check(t, now))
                .collect();
            let mut call = script.prepare_invoke();
            for (k, g) in keys.iter().zip(limits.iter()) {
                call.key(k).arg(g.interval_ns / US).arg(g.tolerance_ns / US);
            }
            call.arg(now_us / 1_000_000).arg(now_us % 1_000_000);
            let answer: Vec<i64> = call.invoke(&mut conn).unwrap();
            assert_eq!(
                answer[0] == 1,
                local.is_some(),
                "case {case} step {step}: redis {answer:?}"
            );
            if let Some(next) = local {
                tats = next;
            } else {
                // The wait Redis names is when the refusing limit admits again.
                let i = answer[2] as usize - 1;
                let wait_ns = answer[1] as u64 * US;
                assert!(
                    limits[i].check(tats[i], now + wait_ns).is_some(),
                    "case {case} step {step}"
                );
                assert!(
                    limits[i].check(tats[i], now + wait_ns - US).is_none(),
                    "case {case} step {step}"
                );
            }
            for (k, &t) in keys.iter().zip(&tats) {
                let stored: Option<u64> = redis::cmd("GET").arg(k).query(&mut conn).unwrap();
                // An expired key is a TAT in the past: the same as no key.
                match stored {
                    Some(s) => assert_eq!(s * US, t, "case {case} step {step}"),
                    None => assert!(t <= now, "case {case} step {step}"),
                }
            }
        }
    }
}
