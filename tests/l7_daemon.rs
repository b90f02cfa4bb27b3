//! The `xdp-ingress` binary as an L7 ingress in the netns test bed: the embedded demo
//! manifests go through the control plane into the proxy, requests from the client namespace
//! reach the pods, access logs come out as JSON on stdout, and SIGTERM drains: an in-flight
//! request finishes, new connections are refused, the process exits cleanly.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use testbed::{Topology, http_backend::HttpBackend, process::KillOnDrop};

#[test]
fn daemon_serves_manifests_logs_json_and_drains_on_sigterm() {
    if !testbed::require_root() {
        return;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let topo = Topology::new(3).expect("topology");
    let _backends: Vec<HttpBackend> = topo
        .pods
        .iter()
        .map(|p| HttpBackend::start_in(&p.ns, "0.0.0.0:8080".parse().unwrap(), &p.name).unwrap())
        .collect();
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.args([
        "run",
        "--no-xdp",
        "--default-manifests",
        "--metrics-addr",
        "198.18.0.2:9100",
        "--access-log-format",
        "json",
        "--drain-timeout",
        "10s",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    let stdout = daemon
        .child_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });

    let curl = |args: &[&str]| topo.client.run("curl", args);
    // Ready once the first snapshot is live.
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&["-sf", "-m", "1", "http://198.18.0.2:9100/readyz"]).is_err() {
        assert!(Instant::now() < deadline, "daemon never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = curl(&[
        "-sS",
        "-m",
        "5",
        "-H",
        "Host: echo.example.com",
        "http://198.18.0.2/hello",
    ])
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(
        v["pod"].as_str().unwrap_or_default().starts_with("pod"),
        "{v}"
    );
    assert_eq!(v["path"], "/hello");

    // The access log line for it, as JSON.
    let log = loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("an access log line");
        if line.contains("/hello") {
            break line;
        }
    };
    let entry: serde_json::Value =
        serde_json::from_str(&log).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["host"], "echo.example.com");
    assert_eq!(entry["ingress"], "default/echo");
    assert!(
        entry["upstream_addr"]
            .as_str()
            .unwrap_or_default()
            .ends_with(":8080"),
        "{entry}"
    );
    assert!(entry["bytes_sent"].as_u64().unwrap_or(0) > 0, "{entry}");

    // SIGTERM while a slow request is in flight.
    let client = topo.client.clone();
    let slow = std::thread::spawn(move || {
        client.run(
            "curl",
            &[
                "-sS",
                "-m",
                "15",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: echo.example.com",
                "http://198.18.0.2/delay/1500",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        curl(&[
            "-sS",
            "-m",
            "2",
            "-H",
            "Host: echo.example.com",
            "http://198.18.0.2/new"
        ])
        .is_err(),
        "new connections still accepted while draining"
    );
    assert_eq!(
        slow.join().unwrap().expect("slow request"),
        "200",
        "in-flight request cut off"
    );
    let status = daemon
        .signal_and_wait(0, Duration::from_secs(10))
        .expect("wait")
        .expect("daemon exits after draining");
    assert!(status.success(), "{status}");
}
