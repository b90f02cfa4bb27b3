//! `cargo xtask demo`: builds everything, makes a throwaway netns test bed (client, node, three
//! pods), runs the daemon on the node's "NIC" with the embedded default manifests, sends L4 and
//! L7 traffic from the client, shows what happened, and removes it all again — also when a step
//! fails (the test bed and the daemon are dropped on every exit path).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, bail};
use testbed::{
    NODE_IFACE, Netns, Topology, echo::EchoServer, http_backend::HttpBackend, process::KillOnDrop,
};

use crate::{
    build_ebpf,
    cmd::{self, is_root, note, step},
    provision,
};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many requests each traffic step sends.
    #[arg(long, default_value_t = 30)]
    requests: u32,
}

const METRICS_PORT: u16 = 10254;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run it as root");
    }
    provision::test_tools()?;
    build_ebpf::build()?;
    step("building the daemon");
    cmd::run(cmd::cargo().args(["build", "--package", "ingress-userspace", "--bins"]))?;
    let requests = args.requests.clamp(1, 1000);

    step("creating the test bed: client -- node -- pod0..pod2 (network namespaces)");
    let topo = Topology::new(3)?;
    note(&format!(
        "client {} / {}  ->  node {} / {} ({NODE_IFACE})",
        topo.client_v4, topo.client_v6, topo.node_v4, topo.node_v6
    ));
    let mut backends = Vec::new();
    let mut http = Vec::new();
    for p in &topo.pods {
        note(&format!(
            "{}: {} / {} — TCP echo :9000, HTTP echo :8080",
            p.name, p.v4, p.v6
        ));
        backends.push(EchoServer::tcp(
            &p.ns,
            SocketAddr::new(p.v4.into(), 9000),
            &p.name,
        )?);
        backends.push(EchoServer::tcp(
            &p.ns,
            SocketAddr::new(p.v6.into(), 9000),
            &p.name,
        )?);
        http.push(HttpBackend::start_in(
            &p.ns,
            SocketAddr::new(p.v4.into(), 8080),
            &p.name,
        )?);
    }
    let _node_echo = EchoServer::tcp(
        &topo.node,
        SocketAddr::new(topo.node_v4.into(), 7000),
        "node",
    )?;

    step("starting xdp-ingress on the node's NIC with the embedded default manifests");
    let bin = cmd::root().join("target/debug/xdp-ingress");
    let metrics = format!("{}:{METRICS_PORT}", topo.node_v4);
    // Access logs go to a file (shown at the end) so the demo's own output stays readable.
    let access_log_path =
        std::env::temp_dir().join(format!("xdp-ingress-demo-{}.log", std::process::id()));
    let access_log = std::fs::File::create(&access_log_path)?;
    let mut daemon = KillOnDrop::spawn(
        topo.node
            .cmd(bin.to_str().context("non-UTF-8 path")?)
            .stdout(access_log)
            .args([
                "run",
                "--iface",
                NODE_IFACE,
                "--default-manifests",
                "--node-name",
                "node",
                "--metrics-addr",
                &metrics,
                "--stats-interval",
                "2",
            ]),
    )?;
    wait_attached(&topo, &mut daemon)?;
    wait_ready(&topo.client, &metrics)?;

    step(
        "L7: requests through the proxy (host/path routing, TLS by SNI, redirect, default backend)",
    );
    let node = topo.node_v4.to_string();
    let show = |title: &str, curl_args: &[&str]| -> anyhow::Result<()> {
        let out = topo
            .client
            .run("curl", curl_args)
            .unwrap_or_else(|e| format!("error: {e}"));
        note(&format!("{title}\n        {}", summarize(&out)));
        Ok(())
    };
    let resolve = format!("secure.example.com:443:{node}");
    let resolve80 = format!("secure.example.com:80:{node}");
    show(
        "GET http://echo.example.com/hello",
        &[
            "-s",
            "-m",
            "5",
            "-H",
            "Host: echo.example.com",
            &format!("http://{node}/hello"),
        ],
    )?;
    show(
        "GET https://secure.example.com/api/users (SNI secure.example.com -> service api = pod2)",
        &[
            "-s",
            "-k",
            "-m",
            "5",
            "--resolve",
            &resolve,
            "https://secure.example.com/api/users",
        ],
    )?;
    show(
        "GET http://secure.example.com/ (TLS host: 308 to https)",
        &[
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} -> %{redirect_url}",
            "--resolve",
            &resolve80,
            "http://secure.example.com/",
        ],
    )?;
    show(
        "GET http://unknown.example.org/ (no rule: the default backend)",
        &[
            "-s",
            "-m",
            "5",
            "-H",
            "Host: unknown.example.org",
            &format!("http://{node}/"),
        ],
    )?;
    let mut spread = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..requests {
        let out = topo
            .client
            .run(
                "curl",
                &[
                    "-s",
                    "-m",
                    "5",
                    "-H",
                    "Host: echo.example.com",
                    &format!("http://{node}/"),
                ],
            )
            .unwrap_or_default();
        *spread.entry(pod_of(&out)).or_default() += 1;
    }
    note(&format!(
        "{requests} requests to echo.example.com, round-robin over pods: {spread:?}"
    ));

    step(&format!(
        "L4: {requests} TCP connections to NodePort 30090 (service echo, three pods)"
    ));
    let v4 = topo.node_v4;
    let landed = topo.client.enter(
        move || -> anyhow::Result<std::collections::BTreeMap<String, u32>> {
            let mut landed = std::collections::BTreeMap::new();
            for i in 0..requests {
                let mut c = TcpStream::connect_timeout(
                    &SocketAddr::new(v4.into(), 30090),
                    Duration::from_secs(3),
                )?;
                c.set_read_timeout(Some(Duration::from_secs(3)))?;
                c.write_all(format!("hello {i}\n").as_bytes())?;
                let mut buf = [0u8; 64];
                let n = c.read(&mut buf)?;
                let who = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("?")
                    .to_string();
                *landed.entry(who).or_insert(0) += 1;
            }
            Ok(landed)
        },
    );
    match landed {
        Ok(l) => note(&format!("connections by pod: {l:?}")),
        Err(e) => note(&format!("NodePort steering unavailable: {e:#}")),
    }
    // Stickiness: one connection stays on the pod that took it, message after message.
    let sticky = topo
        .client
        .enter(move || -> anyhow::Result<(String, Vec<String>)> {
            let c = TcpStream::connect_timeout(
                &SocketAddr::new(v4.into(), 30090),
                Duration::from_secs(3),
            )?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut lines = std::io::BufReader::new(c.try_clone()?);
            let mut c = c;
            let mut greeting = String::new();
            std::io::BufRead::read_line(&mut lines, &mut greeting)?;
            let mut echoes = Vec::new();
            for i in 0..5 {
                c.write_all(format!("message {i}\n").as_bytes())?;
                let mut line = String::new();
                std::io::BufRead::read_line(&mut lines, &mut line)?;
                echoes.push(line.trim().to_string());
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok((greeting.trim().to_string(), echoes))
        });
    match sticky {
        Ok((pod, echoes)) => note(&format!(
            "one connection, 5 messages over 1 s: all served by {pod} (echoes: {})",
            echoes.join(", ")
        )),
        Err(e) => note(&format!("sticky connection failed: {e:#}")),
    }
    let udp_target = SocketAddr::new(topo.node_v4.into(), 9999);
    topo.client.enter(move || -> anyhow::Result<()> {
        let udp = UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..10 {
            udp.send_to(b"demo", udp_target)?;
        }
        Ok(())
    })?;

    step("the data path's view: xdp-ingress backends");
    match topo
        .node
        .run(bin.to_str().context("non-UTF-8 path")?, &["backends"])
    {
        Ok(out) => out.lines().for_each(note),
        Err(e) => note(&format!("(not available: {e:#})")),
    }

    step("metrics: a few lines of /metrics");
    let m = topo
        .client
        .run(
            "curl",
            &["-s", "-m", "5", &format!("http://{metrics}/metrics")],
        )
        .unwrap_or_default();
    for l in m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.contains("requests_total") || l.contains("reload"))
        .take(8)
    {
        note(l);
    }
    step("access log (first lines)");
    for l in std::fs::read_to_string(&access_log_path)
        .unwrap_or_default()
        .lines()
        .take(4)
    {
        note(l);
    }
    let _ = std::fs::remove_file(&access_log_path);
    std::thread::sleep(Duration::from_millis(2100));

    step("stopping the daemon (SIGTERM): it drains and detaches cleanly");
    let status = daemon.signal_and_wait(15, Duration::from_secs(40))?;
    note(&format!("daemon exit: {status:?}"));
    drop(backends);
    drop(http);
    drop(topo);
    let left = cmd::output(std::process::Command::new("ip").args(["netns", "list"]))?;
    step(&format!(
        "cleaned up; namespaces left from this demo: {}",
        {
            let mine = format!("xi-{}-", std::process::id());
            left.lines().filter(|l| l.starts_with(&mine)).count()
        }
    ));
    Ok(())
}

fn pod_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("pod").and_then(|p| p.as_str()).map(String::from))
        .unwrap_or_else(|| "error".into())
}

fn summarize(out: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(out) {
        Ok(v) => format!(
            "pod={} path={} x-forwarded-proto={}",
            v.get("pod").and_then(|p| p.as_str()).unwrap_or("?"),
            v.get("path").and_then(|p| p.as_str()).unwrap_or("?"),
            v.pointer("/headers/x-forwarded-proto")
                .map(|p| p.to_string())
                .unwrap_or_default()
        ),
        Err(_) => out.chars().take(160).collect(),
    }
}

fn wait_attached(topo: &Topology, daemon: &mut KillOnDrop) -> anyhow::Result<()> {
    for _ in 0..400 {
        if daemon.has_exited() {
            bail!("the daemon exited during start-up");
        }
        if topo
            .node
            .run("ip", &["link", "show", "dev", NODE_IFACE])?
            .contains(" xdp")
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("XDP was not attached within 20 s")
}

fn wait_ready(client: &Netns, metrics: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client
            .run(
                "curl",
                &["-sf", "-m", "1", &format!("http://{metrics}/readyz")],
            )
            .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the proxy did not become ready within 20 s")
}
