//! The admin listener's dashboard in a real browser: the daemon (`--no-xdp --manifests DIR`,
//! loopback ports the kernel picked) serves `/`; headless Chromium (Debian `chromium`) loads
//! it, lets its script refresh the page once, and dumps the DOM, which holds the hosts, routes,
//! endpoints, request totals and diagnostics of the manifests. A screenshot of the page must
//! be a real rendering: the window's size, many colours, not one flat background.
//!
//! Without Chromium the test is skipped, except under `CI=true` (`cargo xtask provision`
//! installs it there).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use testbed::process::KillOnDrop;

const MANIFESTS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: xdp-ingress
  annotations:
    ingressclass.kubernetes.io/is-default-class: "true"
spec:
  controller: xdp-ingress.dev/controller
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: dash}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shop-1
  namespace: dash
  labels: {kubernetes.io/service-name: shop}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["198.51.100.7"], conditions: {ready: true}, targetRef: {kind: Pod, name: shop-pod-a}}
- {addresses: ["198.51.100.8"], conditions: {ready: false, serving: true, terminating: true}, targetRef: {kind: Pod, name: shop-pod-b}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: storefront, namespace: dash}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /cart, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
      - {path: /ghost, pathType: Exact, backend: {service: {name: no-such-service, port: {number: 80}}}}
"#;

/// `chromium` on `PATH`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// One HTTP/1.0 request on loopback: (status, body).
fn get(port: u16, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut raw = String::new();
    c.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    Ok((status, body.to_string()))
}

/// Runs Chromium headless with `args` and `url`, killed after a minute; its stdout.
fn run_chromium(bin: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        // Root in CI containers: Chromium's sandbox refuses to run as root.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = KillOnDrop::spawn(&mut cmd).expect("chromium starts");
    let mut stdout = child
        .child_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !child.has_exited() {
        assert!(Instant::now() < deadline, "chromium did not finish in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap_or_default()
}

#[test]
fn dashboard_renders_and_refreshes_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "chromium missing and CI=true forbids skipping (cargo xtask provision installs it)"
        );
        eprintln!("SKIPPED: chromium missing (apt-get install chromium)");
        return;
    };
    let bin = testbed::built_xdp_ingress_bin();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("dash.yaml"), MANIFESTS).unwrap();
    let (http, admin) = (testbed::ports::reserve(1), testbed::ports::reserve(1));
    let mut daemon = KillOnDrop::spawn(
        Command::new(&bin)
            .args(["run", "--no-xdp", "--manifests"])
            .arg(&manifests)
            .args(["--listen-address", "127.0.0.1", "--https-port", "0"])
            .arg(format!("--http-port={http}"))
            .arg(format!("--metrics-addr=127.0.0.1:{admin}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("daemon starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(get(admin, "x", "/readyz"), Ok((200, _))) {
        assert!(!daemon.has_exited(), "daemon exited");
        assert!(Instant::now() < deadline, "daemon never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Three requests to the route whose Service is missing: 503 each (ingress-nginx answers
    // 503 for a backend without endpoints), counted as 5xx on that route. No request goes to
    // the TEST-NET endpoints.
    for _ in 0..3 {
        assert_eq!(get(http, "shop.example.com", "/ghost").unwrap().0, 503);
    }
    let (status, json) = get(admin, "x", "/dashboard.json").unwrap();
    assert_eq!(status, 200, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let routes = &v["hosts"][0]["routes"];
    let ghost = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["path_label"] == "/ghost"))
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        (&ghost["requests"], &ghost["errors"]),
        (&3.into(), &3.into()),
        "{v}"
    );
    assert!(ghost["p99_ms"].is_number(), "{v}");

    let profile = dir.path().join("profile");
    let url = format!("http://127.0.0.1:{admin}/");
    // Virtual time past the first refresh (5 s): the script has fetched and swapped the page.
    let dom = run_chromium(
        &browser,
        &profile,
        &["--virtual-time-budget=15000", "--dump-dom"],
        &url,
    );
    for want in [
        "shop.example.com",
        "Prefix /cart",
        "Exact /ghost",
        "dash/storefront",
        "dash/shop:80",
        "198.51.100.7:8080",
        "shop-pod-a",
        "terminating",
        "Diagnostics (",
        "no-such-service",
    ] {
        assert!(dom.contains(want), "{want} missing from the DOM:\n{dom}");
    }
    let refreshed = dom
        .split("data-refreshed=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        refreshed >= 1,
        "the script never refreshed the page:\n{dom}"
    );
    // Rates over the refresh interval, computed by the script (no requests meanwhile).
    assert!(
        dom.contains("class=\"n rate\">0.00<"),
        "no rate computed:\n{dom}"
    );

    let shot = dir.path().join("dashboard.png");
    run_chromium(
        &browser,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
        &url,
    );
    check_screenshot(&shot, 1280, 900);
    if let Some(keep) = std::env::var_os("DASHBOARD_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
    let status = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(15))
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// The PNG has the window's size, many colours (text, table borders, the header bar) and no
/// colour covering nearly all of it (a blank or error page).
fn check_screenshot(path: &Path, width: u32, height: u32) {
    let file = std::fs::File::open(path).expect("screenshot written");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("decodes");
    assert_eq!((info.width, info.height), (width, height));
    let px = info.color_type.samples();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for p in buf[..info.buffer_size()].chunks_exact(px) {
        *counts.entry(&p[..3.min(px)]).or_default() += 1;
    }
    let total = (width * height) as usize;
    let top = counts.values().max().copied().unwrap_or(0);
    assert!(
        counts.len() >= 32,
        "{} colours: a blank page?",
        counts.len()
    );
    assert!(
        top * 100 < total * 95,
        "one colour covers {top} of {total} pixels"
    );
}
