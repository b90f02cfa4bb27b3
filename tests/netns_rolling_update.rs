//! A rolling update of the DaemonSet drops no connection: when this node's daemon gets SIGTERM,
//! the XDP path sends new connections for the ingress's own Service to the proxy of another
//! node while this proxy drains, keeps doing so while the daemon is gone (links and maps stay
//! pinned), and prefers the local proxy again once the new daemon is up.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use testbed::{NODE_IFACE, Topology, echo::EchoServer, pins::PinDir, process::KillOnDrop};

const NODE_PORT: u16 = 30080;

/// The ingress's own Service: this node's proxy and one on node "other" (played by the client
/// namespace, reached through the NIC with full NAT).
fn manifests(local: &str, other: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: xdp-ingress, namespace: ingress}}
spec:
  type: NodePort
  ports: [{{name: http, port: 80, targetPort: 80, nodePort: {NODE_PORT}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: xdp-ingress-1, namespace: ingress, labels: {{kubernetes.io/service-name: xdp-ingress}}}}
addressType: IPv4
ports: [{{name: http, port: 80, protocol: TCP}}]
endpoints:
- {{addresses: [\"{local}\"], conditions: {{ready: true}}, nodeName: node}}
- {{addresses: [\"{other}\"], conditions: {{ready: true}}, nodeName: other}}
"
    )
}

/// Which proxy answered a new connection: `local` (our proxy speaks HTTP), `other` (the echo
/// server of the other node greets with its name), or why none did.
fn who(topo: &Topology) -> String {
    let addr = SocketAddr::new(topo.node_v4.into(), NODE_PORT);
    topo.client.enter(move || {
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => return format!("connect: {e}"),
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if let Err(e) =
            s.write_all(b"GET / HTTP/1.1\r\nHost: rolling.test\r\nConnection: close\r\n\r\n")
        {
            return format!("write: {e}");
        }
        let mut line = String::new();
        match BufReader::new(s).read_line(&mut line) {
            Ok(_) if line.starts_with("HTTP/1.1 ") => "local".into(),
            Ok(_) if line.trim() == "other-node" => "other".into(),
            Ok(_) => format!("unexpected: {line:?}"),
            Err(e) => format!("read: {e}"),
        }
    })
}

fn wait_for(topo: &Topology, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = who(topo);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "new connections never reached {want}; last: {got}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn daemon(topo: &Topology, dir: &std::path::Path, pins: &std::path::Path) -> KillOnDrop {
    KillOnDrop::spawn(
        topo.node
            .cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
            .args([
                "run",
                "--iface",
                NODE_IFACE,
                "--l4-keep-attached",
                "--node-name",
                "node",
            ])
            .args([
                "--ingress-service",
                "ingress/xdp-ingress",
                "--drain-timeout",
                "4s",
            ])
            .args(["--http-port", "80", "--https-port", "443", "--bpf-object"])
            .arg(testbed::bpf_object_path())
            .arg("--manifests")
            .arg(dir)
            .arg("--bpf-pin-root")
            .arg(pins),
    )
    .expect("spawn xdp-ingress (cargo build -p ingress-userspace)")
}

#[test]
fn rolling_update_sends_new_connections_to_another_nodes_proxy_and_back() {
    if !testbed::require_root() {
        return;
    }
    testbed::built_xdp_ingress_bin();
    let topo = Topology::new(0).expect("topology");
    let pins = PinDir::new("rolling");
    // Mounted in the test's mount namespace so both daemon runs see the same pins.
    xdp_ingress::dataplane::l4::ensure_bpffs(pins.path()).expect("bpffs");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("own.yaml"),
        manifests(&topo.node_v4.to_string(), &topo.client_v4.to_string()),
    )
    .expect("manifest");
    let _other = EchoServer::tcp(
        &topo.client,
        SocketAddr::new(topo.client_v4.into(), 80),
        "other-node",
    )
    .expect("other node's proxy");

    // Up: every new connection goes to this node's proxy.
    let mut first = daemon(&topo, dir.path(), pins.path());
    wait_for(&topo, "local", 20);
    for _ in 0..10 {
        assert_eq!(
            who(&topo),
            "local",
            "the local proxy is preferred while it serves"
        );
    }

    // A request still arriving (headers half sent) keeps the proxy draining until its deadline.
    let addr = SocketAddr::new(topo.node_v4.into(), NODE_PORT);
    let idle = topo
        .client
        .enter(move || -> std::io::Result<TcpStream> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: rolling.test\r\n")?;
            Ok(s)
        })
        .expect("slow client");

    // SIGTERM: while the proxy drains, and after the daemon is gone, new connections are
    // served by the other node's proxy; none is refused.
    let sent = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    wait_for(&topo, "other", 3);
    let mut during_drain = 0;
    while !first.has_exited() {
        assert_eq!(who(&topo), "other", "a new connection during the drain");
        during_drain += 1;
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "daemon did not exit after its drain deadline"
        );
    }
    assert!(
        during_drain > 0,
        "the drain ended before any connection was tried"
    );
    for _ in 0..10 {
        assert_eq!(who(&topo), "other", "a new connection while no daemon runs");
    }
    drop(idle);

    // The new daemon takes the pinned maps over and the local proxy is preferred again.
    let mut second = daemon(&topo, dir.path(), pins.path());
    wait_for(&topo, "local", 20);
    let st = second
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(15))
        .expect("wait")
        .expect("exit");
    assert!(st.success(), "{st}");
    // The links were left attached for a next run; this test has none, so take them down.
    drop(topo);
}
