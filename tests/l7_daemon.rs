//! The `xdp-ingress` binary as an L7 ingress in the netns test bed: the embedded demo
//! manifests go through the control plane into the proxy, requests from the client namespace
//! reach the pods, access logs come out as JSON on stdout, and SIGTERM drains: an in-flight
//! request finishes, new connections are refused, the process exits cleanly.

use std::{
    collections::BTreeSet,
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
    let id = entry["request_id"].as_str().unwrap_or_default();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{entry}"
    );

    // A host no rule names goes to ingress-nginx's default server, whose root location the
    // demo manifests' catch-all Ingress (`default-backend`: spec.defaultBackend, no rules)
    // sets: it takes that Ingress's annotations, `enable-access-log` (default true) among
    // them, so it is logged as that Ingress's (`enable-access-log-for-default-backend` is the
    // built-in default server's only).
    let miss = curl(&[
        "-s",
        "-m",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: nobody.example",
        "http://198.18.0.2/catch-all",
    ])
    .unwrap();
    assert_eq!(miss, "200");
    let log = loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("an access log line");
        if line.contains("/catch-all") {
            break line;
        }
    };
    let entry: serde_json::Value =
        serde_json::from_str(&log).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!(entry["ingress"], "default/default-backend", "{entry}");

    // An answer the proxy gives itself (a target escaping the root: 400) is logged with an
    // id too: the client's X-Request-ID, else a new one (ingress-nginx's `$req_id`).
    let next_log = |path: &str| loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("an access log line");
        if line.contains(path) {
            break serde_json::from_str::<serde_json::Value>(&line)
                .unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    };
    for (path, sent) in [("/unknown-1", None), ("/unknown-2", Some("trace-7"))] {
        let url = format!("http://198.18.0.2/..{path}");
        let mut args = vec![
            "-s",
            "--path-as-is",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-H",
            "Host: echo.example.com",
        ];
        if sent.is_some() {
            args.extend(["-H", "X-Request-ID: trace-7"]);
        }
        args.push(&url);
        let _ = curl(&args);
        let entry = next_log(path);
        assert_eq!(entry["status"], 400, "{entry}");
        let id = entry["request_id"].as_str().unwrap_or_default();
        match sent {
            Some(sent) => assert_eq!(id, sent, "{entry}"),
            None => assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{entry}"
            ),
        }
    }

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

/// Issue 9, class 9: an EndpointSlice that points into the node. The slice of `web` lists a
/// pod, `127.0.0.1:8080` and the node's own address `198.18.0.2:8080`, both with a listener in
/// the node's namespace. The daemon refuses the two (a diagnostic each in its log) and every
/// request reaches the pod; nothing ever connects to the node-local listeners.
#[test]
fn daemon_never_connects_to_endpoints_inside_the_node() {
    if !testbed::require_root() {
        return;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let topo = Topology::new(1).expect("topology");
    let pod = &topo.pods[0];
    let _pod = HttpBackend::start_in(&pod.ns, "0.0.0.0:8080".parse().unwrap(), &pod.name).unwrap();
    let loopback = HttpBackend::start_in(
        &topo.node,
        "127.0.0.1:8080".parse().unwrap(),
        "node-loopback",
    )
    .unwrap();
    let node_ip = HttpBackend::start_in(
        &topo.node,
        "198.18.0.2:8080".parse().unwrap(),
        "node-address",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.yaml"),
        format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{}"], conditions: {{ready: true}}}}
- {{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}
- {{addresses: ["198.18.0.2"], conditions: {{ready: true}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: web.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#,
            pod.v4
        ),
    )
    .unwrap();
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.arg("run")
        .arg("--no-xdp")
        .arg("--manifests")
        .arg(dir.path())
        .args([
            "--metrics-addr",
            "198.18.0.2:9100",
            "--access-log-format",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    let stderr = daemon
        .child_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let curl = |args: &[&str]| topo.client.run("curl", args);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&["-sf", "-m", "1", "http://198.18.0.2:9100/readyz"]).is_err() {
        assert!(Instant::now() < deadline, "daemon never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..30 {
        let body = curl(&[
            "-sS",
            "-m",
            "5",
            "-H",
            "Host: web.test",
            "http://198.18.0.2/",
        ])
        .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["pod"], pod.name.as_str(), "request {i}");
    }
    assert_eq!(loopback.requests(), 0, "a request reached 127.0.0.1");
    assert_eq!(
        node_ip.requests(),
        0,
        "a request reached the node's own address"
    );
    // Each refusal is reported (the leader turns the same diagnostic into an Event).
    let mut refused = BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(5);
    while refused.len() < 2 && Instant::now() < until {
        if let Ok(line) = line_rx.recv_timeout(Duration::from_millis(200))
            && line.contains("EndpointAddressRefused")
        {
            // Not a terminal: plain text, no colour codes (a log file stays readable).
            assert!(
                !line.contains('\u{1b}'),
                "ANSI escape in a piped log: {line:?}"
            );
            for addr in ["127.0.0.1", "198.18.0.2"] {
                if line.contains(&format!("endpoint {addr} ")) {
                    refused.insert(addr);
                }
            }
        }
    }
    assert_eq!(refused, BTreeSet::from(["127.0.0.1", "198.18.0.2"]));
}

/// One HTTP/1.1 exchange on an open keep-alive connection: the status code and the body
/// (`Content-Length` or chunked). Bounded by the socket's read timeout.
fn exchange(s: &mut std::net::TcpStream, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad head: {head}")))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        s.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            if s.read(&mut byte)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            body.push(byte[0]);
        }
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A keep-alive connection from the client namespace (reads time out after `timeout`).
fn keep_alive(topo: &Topology, addr: &str, timeout: Duration) -> std::net::TcpStream {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let s = topo
        .client
        .enter(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .expect("connects");
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// Writes `name` into `dir` whole (the watcher never reads half a file).
fn put(dir: &std::path::Path, name: &str, yaml: &str) {
    let tmp = dir.with_extension(format!("{name}.tmp"));
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Issue 15, listener ports follow the Gateways. A Gateway serves `web.test` on the proxy's
/// port 80; a second Gateway adds an HTTP listener on another port: the daemon opens it
/// (served, with only that Gateway's routes: Gateway API routes attach to listeners), then
/// closes it when the Gateway goes: new connections are refused, the request in flight on it
/// finishes and its connection is then closed. A keep-alive connection on port 80 carries
/// requests before, during and after, never dropped.
#[test]
fn daemon_opens_and_closes_gateway_listener_ports_without_dropping_others() {
    if !testbed::require_root() {
        return;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let topo = Topology::new(1).expect("topology");
    let pod = &topo.pods[0];
    let _pod = HttpBackend::start_in(&pod.ns, "0.0.0.0:8080".parse().unwrap(), &pod.name).unwrap();
    // Inside the default --gateway-listener-ports, per run (the node namespace is ours alone).
    let port = 20000 + (std::process::id() % 10000) as u16;
    let gateway = |name: &str, port: u16, host: &str| {
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  gatewayClassName: xdp
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: {name}}}]
  hostnames: [{host}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "base.yaml",
        &format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{}"], conditions: {{ready: true}}}}
---
{}"#,
            pod.v4,
            gateway("web", 80, "web.test")
        ),
    );
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.arg("run")
        .arg("--no-xdp")
        .arg("--manifests")
        .arg(dir.path())
        .args([
            "--metrics-addr",
            "198.18.0.2:9100",
            "--access-log-format",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    let curl = |args: &[&str]| topo.client.run("curl", args);
    let status = |host: &str, url: &str| {
        curl(&[
            "-s",
            "-m",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Host: {host}"),
            url,
        ])
    };
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let alt_url = format!("http://198.18.0.2:{port}/");
    until("web.test served on 80", &|| {
        status("web.test", "http://198.18.0.2/").is_ok_and(|s| s == "200")
    });
    let mut keep = keep_alive(&topo, "198.18.0.2:80", Duration::from_secs(10));
    let pod_of = |(code, body): (u16, String)| {
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v["pod"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        pod_of(exchange(&mut keep, "web.test", "/before").unwrap()),
        pod.name
    );

    // Added: the port opens and serves its Gateway's routes only.
    put(dir.path(), "alt.yaml", &gateway("alt", port, "alt.test"));
    until("the new listener serves alt.test", &|| {
        status("alt.test", &alt_url).is_ok_and(|s| s == "200")
    });
    assert_eq!(
        status("web.test", &alt_url).unwrap(),
        "404",
        "web's route is on port 80 only"
    );
    assert_eq!(
        status("alt.test", "http://198.18.0.2/").unwrap(),
        "404",
        "alt's route is on port {port} only"
    );
    assert_eq!(
        pod_of(exchange(&mut keep, "web.test", "/during").unwrap()),
        pod.name
    );

    // Removed while a request is in flight on it.
    let mut on_alt = keep_alive(
        &topo,
        &format!("198.18.0.2:{port}"),
        Duration::from_secs(15),
    );
    assert_eq!(
        pod_of(exchange(&mut on_alt, "alt.test", "/first").unwrap()),
        pod.name
    );
    let slow = std::thread::spawn(move || {
        let got = exchange(&mut on_alt, "alt.test", "/delay/3000");
        (got, on_alt)
    });
    std::thread::sleep(Duration::from_millis(200));
    let removed = Instant::now();
    std::fs::remove_file(dir.path().join("alt.yaml")).unwrap();
    // curl fails to connect (its code 000).
    until("the listener is closed", &|| {
        status("alt.test", &alt_url).map_or(true, |s| s == "000")
    });
    assert!(
        removed.elapsed() < Duration::from_millis(2500),
        "closed only after the slow request could have finished: the drain is not tested"
    );
    let (got, mut on_alt) = slow.join().unwrap();
    assert_eq!(
        pod_of(got.expect("the request in flight finishes")),
        pod.name
    );
    // Then its connection is closed (gracefully: after the response).
    let mut rest = [0u8; 1];
    assert!(
        matches!(std::io::Read::read(&mut on_alt, &mut rest), Ok(0)),
        "the closed listener's connection stays open"
    );
    // The keep-alive connection on 80 is still the same connection, still served.
    assert_eq!(
        pod_of(exchange(&mut keep, "web.test", "/after").unwrap()),
        pod.name
    );
    // And the port opens again when a Gateway asks again.
    put(dir.path(), "alt.yaml", &gateway("alt", port, "alt.test"));
    until("the listener is back", &|| {
        status("alt.test", &alt_url).is_ok_and(|s| s == "200")
    });
    assert_eq!(
        pod_of(exchange(&mut keep, "web.test", "/again").unwrap()),
        pod.name
    );
}

/// The controller's default backend as ingress-nginx has it (controller.go `createServers`,
/// `getDefaultUpstream`), with real requests through the daemon. A catch-all Ingress
/// (`spec.defaultBackend`, no rules) answers hosts no rule names, and only them: a named
/// host's unmatched path gets the controller's default backend — `--default-backend-service`,
/// or the built-in 404 while that Service has no ready endpoint. An Ingress's own
/// `spec.defaultBackend` answers its host's unmatched paths. The default backend follows its
/// EndpointSlice and the catch-all Ingress hot.
#[test]
fn daemon_default_backend_service_and_catch_all_ingress() {
    if !testbed::require_root() {
        return;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let names = ["app", "catch", "fallback", "own"];
    let topo = Topology::new(names.len()).expect("topology");
    let _pods: Vec<HttpBackend> = (topo.pods.iter().zip(names))
        .map(|(p, name)| {
            HttpBackend::start_in(&p.ns, "0.0.0.0:8080".parse().unwrap(), name).unwrap()
        })
        .collect();
    let service = |name: &str, ip: std::net::Ipv4Addr, ready: bool| {
        format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: {ready}}}}}
"#
        )
    };
    let ingresses = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: app, namespace: default, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: app.test
    http:
      paths:
      - {path: /app, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: own, namespace: default, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  ingressClassName: xdp-ingress
  defaultBackend: {service: {name: own, port: {number: 80}}}
  rules:
  - host: own.test
    http:
      paths:
      - {path: /app, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}
"#;
    let catch_all = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: default}
spec:
  ingressClassName: xdp-ingress
  defaultBackend: {service: {name: catch, port: {number: 80}}}
"#;
    let dir = tempfile::tempdir().unwrap();
    for (name, pod) in names.iter().zip(&topo.pods) {
        // The default backend starts without a ready endpoint: the built-in 404.
        let ready = *name != "fallback";
        put(
            dir.path(),
            &format!("svc-{name}.yaml"),
            &service(name, pod.v4, ready),
        );
    }
    put(dir.path(), "ingresses.yaml", ingresses);
    put(dir.path(), "catch-all.yaml", catch_all);
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.arg("run")
        .arg("--no-xdp")
        .arg("--manifests")
        .arg(dir.path())
        .args([
            "--default-backend-service",
            "default/fallback",
            "--metrics-addr",
            "198.18.0.2:9100",
            "--access-log-format",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    // `(status, pod)` of a request; the pod is empty for the proxy's own answer.
    let get = |host: &str, path: &str| -> (u16, String) {
        let out = topo
            .client
            .run(
                "curl",
                &[
                    "-s",
                    "-m",
                    "2",
                    "-w",
                    "\n%{http_code}",
                    "-H",
                    &format!("Host: {host}"),
                    &format!("http://198.18.0.2{path}"),
                ],
            )
            .unwrap_or_default();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
        let pod = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["pod"].as_str().map(str::to_string))
            .unwrap_or_default();
        (code.trim().parse().unwrap_or(0), pod)
    };
    let until = |what: &str, host: &str, path: &str, want: (u16, &str)| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = get(host, path);
            if (got.0, got.1.as_str()) == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {host}{path} got {got:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let is = |what: &str, host: &str, path: &str, want: (u16, &str)| {
        let got = get(host, path);
        assert_eq!((got.0, got.1.as_str()), want, "{what}: {host}{path}");
    };

    until(
        "the catch-all answers an unknown host",
        "unknown.test",
        "/x",
        (200, "catch"),
    );
    is("a rule's path", "app.test", "/app/1", (200, "app"));
    is(
        "a named host's unmatched path: the built-in 404, not the catch-all",
        "app.test",
        "/nothing",
        (404, ""),
    );
    is(
        "the host's own spec.defaultBackend",
        "own.test",
        "/nothing",
        (200, "own"),
    );

    // The default backend gets a ready endpoint: it answers named hosts' unmatched paths;
    // unknown hosts stay the catch-all's.
    put(
        dir.path(),
        "svc-fallback.yaml",
        &service("fallback", topo.pods[2].v4, true),
    );
    until(
        "--default-backend-service answers a named host's unmatched path",
        "app.test",
        "/nothing",
        (200, "fallback"),
    );
    is(
        "unknown hosts stay the catch-all's",
        "unknown.test",
        "/x",
        (200, "catch"),
    );
    is(
        "own.test keeps its own",
        "own.test",
        "/nothing",
        (200, "own"),
    );

    // Without the catch-all Ingress, the default backend takes unknown hosts too.
    std::fs::remove_file(dir.path().join("catch-all.yaml")).unwrap();
    until(
        "--default-backend-service answers an unknown host",
        "unknown.test",
        "/x",
        (200, "fallback"),
    );
    is(
        "still for named hosts",
        "app.test",
        "/nothing",
        (200, "fallback"),
    );

    // Its endpoints gone: the built-in 404 again.
    put(
        dir.path(),
        "svc-fallback.yaml",
        &service("fallback", topo.pods[2].v4, false),
    );
    until("no ready endpoint: 404", "unknown.test", "/x", (404, ""));
    is("for named hosts too", "app.test", "/nothing", (404, ""));
}

/// The controller ConfigMap's `worker-shutdown-timeout` (nginx's `worker_shutdown_timeout`,
/// which ingress-nginx's graceful stop waits out) wins over `--drain-timeout`: with `1s` there
/// and a 30 s flag, a request still in flight a second after SIGTERM is cut and the daemon
/// exits, where the flag alone would have let it finish.
#[test]
fn configmap_worker_shutdown_timeout_bounds_the_drain() {
    if !testbed::require_root() {
        return;
    }
    let bin = testbed::built_xdp_ingress_bin();
    let topo = Topology::new(1).expect("topology");
    let pod = &topo.pods[0];
    let _backend = HttpBackend::start_in(&pod.ns, "0.0.0.0:8080".parse().unwrap(), "app").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ip = pod.v4;
    put(
        dir.path(),
        "all.yaml",
        &format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: ingress-nginx-controller, namespace: ingress-nginx}}
data: {{worker-shutdown-timeout: "1s"}}
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app-1, namespace: default, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: true}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: app, namespace: default}}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: app.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}
"#
        ),
    );
    let mut cmd = topo.node.cmd(&bin.display().to_string());
    cmd.arg("run")
        .arg("--no-xdp")
        .arg("--manifests")
        .arg(dir.path())
        .args([
            "--configmap",
            "ingress-nginx/ingress-nginx-controller",
            "--drain-timeout",
            "30s",
            "--metrics-addr",
            "198.18.0.2:9100",
            "--access-log-format",
            "off",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut daemon = KillOnDrop::spawn(&mut cmd).expect("daemon starts");
    let curl = |args: &[&str]| topo.client.run("curl", args);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&[
        "-sf",
        "-m",
        "1",
        "-H",
        "Host: app.test",
        "http://198.18.0.2/",
    ])
    .is_err()
    {
        assert!(Instant::now() < deadline, "daemon never served the Ingress");
        std::thread::sleep(Duration::from_millis(100));
    }
    let slow = std::thread::scope(|s| {
        let slow = s.spawn(|| {
            curl(&[
                "-sS",
                "-m",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: app.test",
                "http://198.18.0.2/delay/8000",
            ])
        });
        std::thread::sleep(Duration::from_millis(500));
        let sent = Instant::now();
        let status = daemon
            .signal_and_wait(libc::SIGTERM, Duration::from_secs(6))
            .expect("wait")
            .expect("the daemon exits once worker-shutdown-timeout has passed, not after 30 s");
        assert!(status.success(), "{status}");
        assert!(
            sent.elapsed() < Duration::from_secs(6),
            "exited only after the slow request could have finished"
        );
        slow.join().unwrap()
    });
    assert!(
        !matches!(slow.as_deref(), Ok("200")),
        "the request in flight finished: {slow:?}"
    );
}
