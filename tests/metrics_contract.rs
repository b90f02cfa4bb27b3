//! The metrics contract of `deploy/grafana/metrics.txt` (what the Grafana dashboard may query)
//! against the real daemon: `xdp-ingress run` with XDP on the test bed's NIC serves a request,
//! then its `/metrics` must export every listed name with exactly the listed labels.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Stdio,
    time::{Duration, Instant},
};

use testbed::{NODE_IFACE, Topology, pins::PinDir, process::KillOnDrop};

const METRICS: &str = "198.18.0.2:10254";

/// Two Ingresses on the demo's `web` Service: one behind basic auth, one with `limit-rps: 1`.
const REFUSALS: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: users}
type: Opaque
stringData: {auth: "user:{PLAIN}secret\n"}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: auth
  annotations:
    nginx.ingress.kubernetes.io/auth-type: basic
    nginx.ingress.kubernetes.io/auth-secret: users
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: auth.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: limited
  annotations:
    nginx.ingress.kubernetes.io/limit-rps: "1"
    nginx.ingress.kubernetes.io/limit-burst-multiplier: "1"
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: limited.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

/// One line of metrics.txt.
#[derive(Debug)]
struct Listed {
    name: String,
    kind: String,
    labels: BTreeSet<String>,
}

fn contract() -> Vec<Listed> {
    let path = testbed::workspace_root().join("deploy/grafana/metrics.txt");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana/metrics.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().expect("name").to_string();
            let kind = words.next().expect("type").to_string();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind.as_str()),
                "metrics.txt: {name}: unknown type {kind}"
            );
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "metrics.txt: counter {name} without _total"
                );
            }
            Listed {
                name,
                kind,
                labels: words.map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// What `/metrics` says: samples (series name → label sets) and declared families.
#[derive(Default)]
struct Scrape {
    samples: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    /// `# TYPE family type` lines.
    types: BTreeMap<String, String>,
}

fn parse_scrape(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            if let (Some(family), Some(kind)) = (w.next(), w.next()) {
                s.types.insert(family.to_string(), kind.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..end];
        let labels = if line[end..].starts_with('{') {
            parse_labels(&line[end + 1..]).unwrap_or_else(|| panic!("bad sample line: {line}"))
        } else {
            BTreeMap::new()
        };
        s.samples.entry(name.to_string()).or_default().push(labels);
    }
    s
}

/// `a="x",b="y\"z"} 1` → {a: x, b: y"z}; `None` when malformed.
fn parse_labels(mut rest: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') {
            return Some(out);
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().to_string();
        let mut chars = rest[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => value.push(chars.next()?.1),
                (_, c) => value.push(c),
            }
        };
        out.insert(key, value);
        rest = &rest[eq + 1 + 1 + close + 1..];
    }
}

/// The series a listed name shows up as, and the family name its `# TYPE` line uses
/// (OpenMetrics: counters without `_total`).
fn series_and_family(m: &Listed) -> (String, String) {
    match m.kind.as_str() {
        "histogram" => (format!("{}_bucket", m.name), m.name.clone()),
        "counter" => (
            m.name.clone(),
            m.name.trim_end_matches("_total").to_string(),
        ),
        _ => (m.name.clone(), m.name.clone()),
    }
}

#[test]
fn daemon_exports_every_metric_in_the_dashboard_contract() {
    if !testbed::require_root() {
        return;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let listed = contract();
    let topo = Topology::new(0).expect("topology");
    let pins = PinDir::new("metrics");
    let log = tempfile::NamedTempFile::new().expect("log file");
    // The demo manifests, and Ingresses whose refusals give the auth and rate-limit families
    // samples.
    let manifests = tempfile::tempdir().expect("manifest dir");
    xdp_ingress::source::files::write_default_manifests(manifests.path()).expect("manifests");
    std::fs::write(manifests.path().join("40-refusals.yaml"), REFUSALS).expect("manifests");
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.args(["run", "--iface", NODE_IFACE, "--manifests"])
        .arg(manifests.path())
        .args([
            "--node-name",
            "node",
            "--metrics-addr",
            METRICS,
            "--http-port",
            "80",
            "--https-port",
            "443",
            "--bpf-pin-root",
        ])
        .arg(pins.path())
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log file"));
    let mut daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    let daemon_log = || std::fs::read_to_string(log.path()).unwrap_or_default();

    let curl = |args: &[&str]| topo.client.run("curl", args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&["-sf", "-m", "1", &format!("http://{METRICS}/readyz")]).is_err() {
        assert!(
            !daemon.has_exited(),
            "daemon exited before ready:\n{}",
            daemon_log()
        );
        assert!(
            Instant::now() < deadline,
            "daemon never became ready:\n{}",
            daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // One request through the proxy (no pods: any HTTP answer will do) and one TLS handshake.
    let code = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-m",
        "5",
        "-H",
        "Host: echo.example.com",
        "http://198.18.0.2:80/metrics-contract",
    ])
    .expect("HTTP request through the proxy");
    assert!(
        code.len() == 3 && code != "000",
        "no HTTP answer from the proxy: {code:?}"
    );
    let _ = curl(&[
        "-sk",
        "-o",
        "/dev/null",
        "-m",
        "5",
        "--resolve",
        "secure.example.com:443:198.18.0.2",
        "https://secure.example.com/",
    ]);

    // A basic-auth refusal (401) and a rate-limit refusal (limit-rps 1, burst 1: the third
    // quick request is refused).
    let status_of = |host: &str| {
        curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "5",
            "-H",
            &format!("Host: {host}"),
            "http://198.18.0.2:80/",
        ])
        .expect("HTTP request through the proxy")
    };
    assert_eq!(status_of("auth.example.com"), "401");
    let limited: Vec<String> = (0..3).map(|_| status_of("limited.example.com")).collect();
    assert_eq!(
        limited.last().map(String::as_str),
        Some("503"),
        "{limited:?}"
    );

    let text = curl(&["-sf", "-m", "5", &format!("http://{METRICS}/metrics")]).expect("scrape");
    let scrape = parse_scrape(&text);

    let mut missing = Vec::new();
    let mut wrong_labels = Vec::new();
    let mut declared_only = Vec::new();
    for m in &listed {
        let (series, family) = series_and_family(m);
        let mut want = m.labels.clone();
        if m.kind == "histogram" {
            want.insert("le".into());
        }
        match scrape.samples.get(&series) {
            Some(sets) => {
                for labels in sets {
                    let got: BTreeSet<String> = labels.keys().cloned().collect();
                    if got != want {
                        wrong_labels.push(format!("{series}: labels {got:?}, listed {want:?}"));
                    }
                }
            }
            // A labelled family without children yet (no upstream answered, say) is declared
            // but has no sample line.
            None if scrape.types.get(&family) == Some(&m.kind) && !m.labels.is_empty() => {
                declared_only.push(m.name.clone())
            }
            None => missing.push(m.name.clone()),
        }
    }
    for family in [
        "xdp_ingress_auth_refused_requests_total",
        "xdp_ingress_rate_limited_requests_total",
    ] {
        assert!(
            !declared_only.iter().any(|n| n == family),
            "{family}: no sample after a refusal:\n{text}"
        );
    }
    if !declared_only.is_empty() {
        eprintln!(
            "declared without samples (no such traffic in this test): {}",
            declared_only.join(" ")
        );
    }
    assert!(
        missing.is_empty() && wrong_labels.is_empty(),
        "/metrics breaks deploy/grafana/metrics.txt\nnot exported: {}\nlabels differ:\n{}\n--- /metrics:\n{text}",
        missing.join(" "),
        wrong_labels.join("\n")
    );

    // The request is counted under its host with the status the client saw.
    let requests = &scrape.samples["xdp_ingress_requests_total"];
    assert!(
        requests.iter().any(
            |l| l.get("host").map(String::as_str) == Some("echo.example.com")
                && l.get("status") == Some(&code)
        ),
        "no xdp_ingress_requests_total{{host=\"echo.example.com\",status=\"{code}\"}}:\n{text}"
    );

    let status = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(40))
        .expect("wait");
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon did not exit cleanly on SIGTERM ({status:?}):\n{}",
        daemon_log()
    );
}

#[test]
fn scrape_parser_reads_openmetrics_samples() {
    let s = parse_scrape(
        "# TYPE xdp_ingress_requests counter\n\
         xdp_ingress_requests_total{ingress=\"default/echo\",host=\"a\\\"b,c}\",path=\"/\",status=\"502\"} 1\n\
         xdp_ingress_config_version 3\n# EOF\n",
    );
    assert_eq!(s.types["xdp_ingress_requests"], "counter");
    let r = &s.samples["xdp_ingress_requests_total"][0];
    assert_eq!(r["host"], "a\"b,c}");
    assert_eq!(r["status"], "502");
    assert!(s.samples["xdp_ingress_config_version"][0].is_empty());
}
