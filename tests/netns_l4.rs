//! The L4 path end to end: client → node (XDP NodePort, tc reply NAT) → three pod namespaces
//! running echo servers that say which pod answered.

mod l4common;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    time::Duration,
};

use l4common::active;
use testbed::{NODE_IFACE, Topology, echo::EchoServer, pins::PinDir};
use xdp_ingress::{
    dataplane::{AttachMode, L4Args, L4Dataplane, view},
    model::{Endpoint, Frontend, L4Protocol, L4Service, Snapshot},
};

const NODE_PORT: u16 = 30080;
const POD_PORT: u16 = 8080;

struct Bed {
    topo: Topology,
    pin: PinDir,
    object: Vec<u8>,
    _echo: Vec<EchoServer>,
}

fn bed() -> Bed {
    let topo = Topology::new(3).expect("topology");
    let mut echo = Vec::new();
    for p in &topo.pods {
        for ip in [IpAddr::V4(p.v4), IpAddr::V6(p.v6)] {
            echo.push(
                EchoServer::tcp(&p.ns, SocketAddr::new(ip, POD_PORT), &p.name).expect("echo"),
            );
        }
    }
    // A private bpffs (mounted by the dataplane on this empty directory) per test.
    let pin = PinDir::new("l4");
    let object = std::fs::read(testbed::bpf_object_path()).expect("eBPF object");
    Bed {
        topo,
        pin,
        object,
        _echo: echo,
    }
}

impl Bed {
    fn pod_addrs(&self, v6: bool) -> Vec<SocketAddr> {
        self.topo
            .pods
            .iter()
            .map(|p| {
                let ip = if v6 {
                    IpAddr::V6(p.v6)
                } else {
                    IpAddr::V4(p.v4)
                };
                SocketAddr::new(ip, POD_PORT)
            })
            .collect()
    }

    /// Every pod's IPv4 and IPv6 echo endpoint.
    fn all_endpoints(&self) -> Vec<Endpoint> {
        let mut all = active(&self.pod_addrs(false));
        all.extend(active(&self.pod_addrs(true)));
        all
    }

    /// Loads the dataplane (maps pinned under this bed's directory) and attaches it.
    fn start(&self) -> L4Dataplane {
        self.start_with(false)
    }

    fn start_with(&self, keep_attached: bool) -> L4Dataplane {
        let mut args = L4Args::with_pin_root(&self.pin);
        args.l4_keep_attached = keep_attached;
        let mut dp = L4Dataplane::open(&args, &self.object).expect("open dataplane");
        self.topo.node.enter(|| {
            dp.attach_xdp(NODE_IFACE, AttachMode::Auto)
                .expect("attach xdp");
            dp.attach_nic_egress(NODE_IFACE).expect("attach tc egress");
        });
        dp
    }

    /// Also reverse-NATs at the pod veths' ingress (the optional attach point): replies are
    /// rewritten there and redirected, and the NIC egress program must leave them alone.
    fn start_with_pod_ingress(&self) -> L4Dataplane {
        let mut dp = self.start();
        let ifaces: Vec<String> = self
            .topo
            .pods
            .iter()
            .map(|p| p.node_iface.clone())
            .collect();
        self.topo.node.enter(|| {
            for i in &ifaces {
                dp.attach_tc(i).expect("attach tc");
            }
        });
        dp
    }

    fn client_connect(&self, v6: bool) -> TcpStream {
        let ip: IpAddr = if v6 {
            self.topo.node_v6.into()
        } else {
            self.topo.node_v4.into()
        };
        self.connect(
            SocketAddr::new(ip, NODE_PORT),
            "connect through the NodePort",
        )
    }

    /// A connection from the client namespace to `to`, with 3 s to connect and per read.
    fn connect(&self, to: SocketAddr, what: &str) -> TcpStream {
        self.topo.client.enter(|| {
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s
        })
    }
}

/// The echo service (id `default/echo:8080`) on [`NODE_PORT`].
fn service(endpoints: Vec<Endpoint>, affinity: Option<Duration>) -> L4Service {
    L4Service {
        id: "default/echo:8080".into(),
        client_ip_affinity: affinity,
        ..l4common::service("echo", L4Protocol::Tcp, NODE_PORT, endpoints)
    }
}

fn snapshot(version: u64, svc: L4Service) -> Snapshot {
    Snapshot {
        version,
        l4: vec![svc],
        ..Default::default()
    }
}

/// Reads the pod's greeting line.
fn greeting(s: &mut TcpStream) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).expect("greeting");
    line.trim().to_string()
}

fn echo_ok(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("send");
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).expect("echo back");
    assert_eq!(buf, msg);
}

fn one_connection(bed: &Bed, v6: bool) -> String {
    let mut s = bed.client_connect(v6);
    let pod = greeting(&mut s);
    echo_ok(&mut s, b"ping");
    pod
}

fn spread(bed: &Bed, v6: bool, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        *counts.entry(one_connection(bed, v6)).or_insert(0) += 1;
    }
    counts
}

fn assert_even(counts: &BTreeMap<String, usize>, n: usize) {
    assert_eq!(counts.len(), 3, "{counts:?}");
    let even = n as f64 / 3.0;
    for c in counts.values() {
        assert!((*c as f64 - even).abs() <= 0.3 * even, "{counts:?}");
    }
}

#[test]
fn tcp_connections_go_through_the_nat_and_spread_evenly_v4_and_v6() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut dp = bed.start();
    let all = bed.all_endpoints();
    dp.apply(&snapshot(1, service(all, None))).expect("apply");
    let c4 = spread(&bed, false, 300);
    assert_even(&c4, 300);
    let c6 = spread(&bed, true, 300);
    assert_even(&c6, 300);

    // The data path's own view (what `xdp-ingress backends` prints) saw the same spread.
    let view = view::read(&bed.pin).expect("backends view");
    assert_eq!(view.services.len(), 2, "{view:?}");
    for svc in &view.services {
        assert_eq!(svc.frontends, vec![format!("tcp/*:{NODE_PORT}")]);
        assert_eq!(svc.backends.len(), 3);
        let flows: u64 = svc.backends.iter().map(|b| b.counters.new_flows).sum();
        assert_eq!(flows, 300, "{svc:?}");
        assert_eq!(svc.counters.new_flows, 300);
        for b in &svc.backends {
            assert_eq!(b.state, "active");
            assert!((b.maglev_share - 1.0 / 3.0).abs() < 0.01, "{b:?}");
            let name = bed
                .topo
                .pods
                .iter()
                .find(|p| b.address.ip() == IpAddr::V4(p.v4) || b.address.ip() == IpAddr::V6(p.v6))
                .unwrap();
            assert_eq!(
                b.counters.new_flows as usize,
                if b.address.is_ipv4() {
                    c4[&name.name]
                } else {
                    c6[&name.name]
                }
            );
        }
    }
    if testbed::xdp_ingress_bin().exists() {
        let out = backends_json(&bed.pin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(json["services"].as_array().map(Vec::len), Some(2));
    }
}

#[test]
fn long_lived_connection_survives_backend_changes_and_removed_endpoint_drains() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut dp = bed.start();
    let pods = bed.pod_addrs(false);
    dp.apply(&snapshot(1, service(active(&pods), None)))
        .unwrap();
    let mut long = bed.client_connect(false);
    let home = greeting(&mut long);
    let home_addr = pods[bed.topo.pods.iter().position(|p| p.name == home).unwrap()];
    echo_ok(&mut long, b"before");

    // Add and remove the other backends around it.
    let others: Vec<SocketAddr> = pods.iter().copied().filter(|a| *a != home_addr).collect();
    for (v, set) in [
        vec![home_addr],
        vec![home_addr, others[0]],
        pods.clone(),
        vec![others[1], home_addr],
    ]
    .into_iter()
    .enumerate()
    {
        dp.apply(&snapshot(2 + v as u64, service(active(&set), None)))
            .unwrap();
        echo_ok(&mut long, format!("during {v}").as_bytes());
    }

    // Remove the long connection's own endpoint: new connections avoid it, the open one finishes.
    dp.apply(&snapshot(10, service(active(&others), None)))
        .unwrap();
    let counts = spread(&bed, false, 30);
    assert!(!counts.contains_key(&home), "{counts:?}");
    echo_ok(&mut long, b"still here");
}

#[test]
fn client_ip_affinity_sends_a_clients_connections_to_one_pod() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut dp = bed.start_with_pod_ingress();
    let svc = service(
        active(&bed.pod_addrs(false)),
        Some(Duration::from_secs(10800)),
    );
    dp.apply(&snapshot(1, svc)).unwrap();
    let counts = spread(&bed, false, 30);
    assert_eq!(counts.len(), 1, "{counts:?}");
}

#[test]
fn dataplane_restart_mid_connection_keeps_it() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let all = bed.all_endpoints();
    let snap = snapshot(1, service(all, None));
    let mut dp = bed.start_with(true);
    dp.apply(&snap).unwrap();
    let mut c4 = bed.client_connect(false);
    let mut c6 = bed.client_connect(true);
    let (p4, p6) = (greeting(&mut c4), greeting(&mut c6));
    echo_ok(&mut c4, b"one");
    echo_ok(&mut c6, b"one");

    // Stop (links and maps stay pinned), start a new dataplane on the same pins, same
    // snapshot; the client keeps talking through the restart.
    let ids = map_ids(&dp);
    dp.detach();
    drop(dp);
    echo_ok(&mut c4, b"while stopped");
    let mut dp = bed.start_with(true);
    assert_eq!(ids, map_ids(&dp), "pinned maps are reused");
    dp.apply(&snap).unwrap();
    echo_ok(&mut c4, b"two");
    echo_ok(&mut c6, b"two");
    // New connections still work and the old ones stayed on their pods.
    assert!(!one_connection(&bed, false).is_empty());
    let _ = (p4, p6);
    echo_ok(&mut c4, b"three");

    // A run without --l4-keep-attached takes the pinned links over and, when it stops,
    // leaves the NIC without programs.
    dp.detach();
    drop(dp);
    let mut dp = bed.start_with(false);
    echo_ok(&mut c4, b"four");
    dp.detach();
    drop(dp);
    let link = bed
        .topo
        .node
        .run("ip", &["link", "show", "dev", NODE_IFACE])
        .unwrap();
    assert!(!link.contains(" xdp"), "{link}");
    assert!(!bed.pin.join(format!("link_xdp_{NODE_IFACE}")).exists());
}

fn map_ids(dp: &L4Dataplane) -> Vec<u32> {
    ingress_common::l4::PINNED_MAPS
        .iter()
        .map(|n| {
            let m = dp.ebpf().map(n).expect("map");
            let d: &aya::maps::MapData = match m {
                aya::maps::Map::Array(d)
                | aya::maps::Map::HashMap(d)
                | aya::maps::Map::LruHashMap(d)
                | aya::maps::Map::LpmTrie(d)
                | aya::maps::Map::PerCpuArray(d) => d,
                _ => panic!("unexpected map type for {n}"),
            };
            d.info().expect("map info").id()
        })
        .collect()
}

#[test]
fn a_port_without_service_still_reaches_the_nodes_own_listener() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut dp = bed.start();
    dp.apply(&snapshot(1, service(active(&bed.pod_addrs(false)), None)))
        .unwrap();
    let _node = EchoServer::tcp(
        &bed.topo.node,
        SocketAddr::new(bed.topo.node_v4.into(), 7000),
        "node",
    )
    .unwrap();
    let to = SocketAddr::new(bed.topo.node_v4.into(), 7000);
    let name = greeting(&mut bed.connect(to, "connect to the node's own port"));
    assert_eq!(name, "node");
}

/// The daemon tests need its binary: without it they fail, saying how to build it.
fn require_daemon_bin() {
    testbed::built_xdp_ingress_bin();
}

/// `xdp-ingress backends --json` over the maps pinned under `pin`.
fn backends_json(pin: &std::path::Path) -> std::process::Output {
    std::process::Command::new(testbed::xdp_ingress_bin())
        .args(["backends", "--json", "--bpf-pin-root"])
        .arg(pin)
        .output()
        .expect("run xdp-ingress backends")
}

/// Stops the daemon with SIGTERM, which it must exit on, successfully, within 10 s.
fn stop(daemon: &mut testbed::process::KillOnDrop) {
    let st = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
        .expect("wait")
        .expect("daemon exits on SIGTERM");
    assert!(st.success());
}

/// The echo Service with `pods` as its endpoints, as the daemon's manifest source reads it.
fn write_manifests<'a>(dir: &std::path::Path, pods: impl Iterator<Item = &'a testbed::Pod>) {
    let pods: Vec<&testbed::Pod> = pods.collect();
    std::fs::write(dir.join("echo.yaml"), manifests(&pods)).unwrap();
}

fn manifests(pods: &[&testbed::Pod]) -> String {
    let ep = |ip: String, name: &str| {
        format!(
            "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {name}}}}}\n"
        )
    };
    let mut v4 = String::new();
    let mut v6 = String::new();
    for p in pods {
        v4.push_str(&ep(p.v4.to_string(), &p.name));
        v6.push_str(&ep(p.v6.to_string(), &p.name));
    }
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations: {{xdp-ingress.dev/l4-acceleration: \"true\"}}
spec:
  type: NodePort
  ports: [{{name: tcp, port: {POD_PORT}, targetPort: {POD_PORT}, nodePort: {NODE_PORT}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-v4, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
ports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}]
endpoints:
{v4}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-v6, namespace: default, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv6
ports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}]
endpoints:
{v6}"
    )
}

impl Bed {
    /// Whether a TCP connection from the client to each of `to` goes through now.
    fn reaches_all(&self, to: &[SocketAddr]) -> bool {
        self.topo.client.enter(|| {
            to.iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(300)).is_ok())
        })
    }

    /// Waits (20 s at most) until the client reaches each of `to` (the daemon has put their
    /// services in the maps); panics with `what` if not, or if the daemon exits first.
    fn wait_listener(
        &self,
        daemon: &mut testbed::process::KillOnDrop,
        to: &[SocketAddr],
        what: &str,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.reaches_all(to) {
            assert!(!daemon.has_exited(), "daemon exited");
            assert!(std::time::Instant::now() < deadline, "{what} never served");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn daemon(&self, dir: &std::path::Path) -> testbed::process::KillOnDrop {
        self.daemon_with(dir, &[])
    }

    /// [`Bed::daemon`] with the flags `extra` added.
    fn daemon_with(&self, dir: &std::path::Path, extra: &[&str]) -> testbed::process::KillOnDrop {
        testbed::process::KillOnDrop::spawn(
            self.topo
                .node
                .cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
                .args([
                    "run",
                    "--iface",
                    NODE_IFACE,
                    "--l4-keep-attached",
                    "--bpf-object",
                ])
                .arg(testbed::bpf_object_path())
                .arg("--manifests")
                .arg(dir)
                .arg("--bpf-pin-root")
                .arg(&self.pin)
                .args(extra),
        )
        .expect("spawn xdp-ingress (cargo build -p ingress-userspace)")
    }

    /// Tries NodePort connections until one answers on each family or `secs` pass. Both
    /// families: the daemon writes a snapshot's services one after the other (a Maglev table
    /// is thousands of map writes), so IPv4 answering does not mean IPv6 does yet.
    fn wait_served(&self, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        let addrs = [
            SocketAddr::new(self.topo.node_v4.into(), NODE_PORT),
            SocketAddr::new(self.topo.node_v6.into(), NODE_PORT),
        ];
        while std::time::Instant::now() < deadline {
            if self.reaches_all(&addrs) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

#[test]
fn daemon_serves_a_manifest_nodeport_and_restarts_and_drains_without_breaking_connections() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    // Mounted here, in the test's mount namespace, so every daemon run (each in its own
    // `ip netns exec` mount namespace) sees the same pins.
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), bed.topo.pods.iter());

    let mut daemon = bed.daemon(dir.path());
    assert!(bed.wait_served(20), "NodePort never served");
    let mut long = bed.client_connect(false);
    let home = greeting(&mut long);
    echo_ok(&mut long, b"first");
    let c6 = spread(&bed, true, 30);
    assert_eq!(c6.len(), 3, "{c6:?}");

    // Restart: links and maps stay pinned, the connection keeps working throughout.
    stop(&mut daemon);
    echo_ok(&mut long, b"while the daemon is down");
    let mut daemon = bed.daemon(dir.path());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!daemon.has_exited());
    echo_ok(&mut long, b"after restart");

    // The long connection's pod leaves the EndpointSlice: new connections go elsewhere, the
    // open one finishes, and `backends` shows it draining.
    write_manifests(dir.path(), bed.topo.pods.iter().filter(|p| p.name != home));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let counts = spread(&bed, false, 10);
        if !counts.contains_key(&home) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "removed endpoint still gets new connections"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let counts = spread(&bed, false, 30);
    assert!(!counts.contains_key(&home), "{counts:?}");
    echo_ok(&mut long, b"draining");
    let out = backends_json(&bed.pin);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backends JSON");
    let home_v4 = bed.topo.pods.iter().find(|p| p.name == home).unwrap().v4;
    let states: Vec<(String, String)> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["backends"].as_array().unwrap().clone())
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&(format!("{home_v4}:{POD_PORT}"), "removed".to_string())),
        "{states:?}"
    );
    stop(&mut daemon);
}

#[test]
fn a_pinned_map_whose_layout_changed_is_recreated_and_the_others_reused() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let args = L4Args::with_pin_root(&bed.pin);
    let first = L4Dataplane::open(&args, &bed.object).expect("open");
    let before = map_ids(&first);
    drop(first);
    let mut bigger = L4Args::with_pin_root(&bed.pin);
    bigger.l4_conntrack_size *= 2;
    let second = L4Dataplane::open(&bigger, &bed.object).expect("reopen");
    let after = map_ids(&second);
    for (i, name) in ingress_common::l4::PINNED_MAPS.iter().enumerate() {
        let resized = [
            ingress_common::l4::MAP_CONNTRACK,
            ingress_common::l4::MAP_REVNAT,
            ingress_common::l4::MAP_TOMBSTONES,
        ]
        .contains(name);
        assert_eq!(before[i] != after[i], resized, "{name}");
    }
}

#[test]
fn udp_through_the_nat_and_back_from_the_nodeport() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut udp_echo = Vec::new();
    for p in &bed.topo.pods {
        udp_echo.push(
            EchoServer::udp(&p.ns, SocketAddr::new(IpAddr::V4(p.v4), 5353), &p.name).unwrap(),
        );
    }
    let mut dp = bed.start();
    let mut svc = service(
        active(
            &bed.topo
                .pods
                .iter()
                .map(|p| SocketAddr::new(IpAddr::V4(p.v4), 5353))
                .collect::<Vec<_>>(),
        ),
        None,
    );
    svc.protocol = L4Protocol::Udp;
    svc.frontends = vec![Frontend::NodePort(30053)];
    dp.apply(&snapshot(1, svc)).unwrap();
    let node = SocketAddr::new(bed.topo.node_v4.into(), 30053);
    let (from, reply) = bed.topo.client.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.send_to(b"hello", node).unwrap();
        let mut buf = [0u8; 256];
        let (n, from) = s
            .recv_from(&mut buf)
            .expect("UDP reply through the NodePort");
        (from, String::from_utf8_lossy(&buf[..n]).to_string())
    });
    assert_eq!(from, node, "the reply comes from the NodePort");
    assert!(
        reply.starts_with("pod") && reply.ends_with(":hello"),
        "{reply}"
    );
}

#[test]
fn a_udp_client_keeps_getting_answers_when_its_endpoint_is_removed() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut udp_echo: Vec<(String, EchoServer)> = bed
        .topo
        .pods
        .iter()
        .map(|p| {
            let addr = SocketAddr::new(IpAddr::V4(p.v4), 5353);
            (
                p.name.clone(),
                EchoServer::udp(&p.ns, addr, &p.name).unwrap(),
            )
        })
        .collect();
    let addrs: Vec<SocketAddr> = bed
        .topo
        .pods
        .iter()
        .map(|p| SocketAddr::new(IpAddr::V4(p.v4), 5353))
        .collect();
    let dns = |eps: &[SocketAddr]| {
        let mut svc = service(active(eps), None);
        svc.protocol = L4Protocol::Udp;
        svc.frontends = vec![Frontend::NodePort(30053)];
        svc
    };
    // The default drain (60 s): a removed endpoint's TCP connections would go on for a minute.
    let mut dp = bed.start();
    dp.apply(&snapshot(1, dns(&addrs))).unwrap();
    let node = SocketAddr::new(bed.topo.node_v4.into(), 30053);
    // A DNS-like client: one socket, a datagram every 200 ms, each answer awaited 200 ms.
    let sock = bed.topo.client.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(node).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    });
    let ask = |n: u32| -> Option<String> {
        sock.send(format!("q{n}").as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let len = sock.recv(&mut buf).ok()?;
        let reply = String::from_utf8_lossy(&buf[..len]).to_string();
        Some(reply.split(':').next().unwrap_or_default().to_string())
    };
    let home = (0..10)
        .find_map(ask)
        .expect("an answer through the NodePort");
    for n in 0..3 {
        assert_eq!(
            ask(n).as_deref(),
            Some(home.as_str()),
            "the flow stays on its pod"
        );
    }

    // Its pod goes away: it leaves the EndpointSlice and stops answering.
    let i = bed.topo.pods.iter().position(|p| p.name == home).unwrap();
    let live: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != addrs[i]).collect();
    dp.apply(&snapshot(2, dns(&live))).unwrap();
    udp_echo.retain(|(name, _)| *name != home);
    let removed = std::time::Instant::now();
    let mut answer = None;
    for n in 100..125 {
        if let Some(pod) = ask(n) {
            answer = Some((pod, removed.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (pod, after) = answer.expect("no answer for 5 s after the endpoint's removal");
    assert_ne!(pod, home, "answered by the removed pod");
    assert!(
        after <= Duration::from_secs(1),
        "first answer after {after:?}"
    );
    // And the client stays on its new pod.
    for n in 200..205 {
        assert_eq!(ask(n).as_deref(), Some(pod.as_str()));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn backends_finds_the_maps_through_the_program_when_pins_are_not_visible() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), bed.topo.pods.iter());
    // The daemon mounts bpffs on the pin root inside its own `ip netns exec` mount namespace:
    // the test does not see those pins.
    let mut daemon = bed.daemon(dir.path());
    assert!(bed.wait_served(20), "NodePort never served");
    let counts = spread(&bed, false, 12);
    assert_eq!(counts.values().sum::<usize>(), 12);
    let hidden = tempfile::tempdir().unwrap();
    // Run where the demo runs it: in the node's namespace, where the program is attached.
    let out = bed
        .topo
        .node
        .cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
        .args(["backends", "--bpf-pin-root"])
        .arg(hidden.path())
        .output()
        .expect("backends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("default/echo:tcp#v4"), "{text}");
    for p in &bed.topo.pods {
        assert!(text.contains(&format!("{}:{POD_PORT}", p.v4)), "{text}");
    }
    let _ = daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(10));
}

#[test]
fn snat_addresses_default_to_the_nics_own() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(0).expect("topology");
    let (v4, v6) = topo
        .node
        .enter(|| xdp_ingress::dataplane::l4::iface_addrs(NODE_IFACE));
    assert_eq!(v4, Some(topo.node_v4));
    assert_eq!(v6, Some(topo.node_v6));
}

/// IPv4 frames seen on the client's NIC (an AF_PACKET socket in the client namespace).
struct Capture(std::os::fd::OwnedFd);

impl Capture {
    fn start(topo: &Topology) -> Capture {
        use std::os::fd::FromRawFd;
        topo.client.enter(|| {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain syscalls on a socket this function owns.
            unsafe {
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK,
                    i32::from(proto),
                );
                assert!(fd >= 0, "AF_PACKET socket");
                let size: libc::c_int = 16 << 20;
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                );
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_protocol = proto;
                sll.sll_ifindex = libc::if_nametoindex(c"eth0".as_ptr()) as i32;
                let rc = libc::bind(
                    fd,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(rc, 0, "bind AF_PACKET");
                Capture(std::os::fd::OwnedFd::from_raw_fd(fd))
            }
        })
    }

    /// Source addresses of the IPv4 frames received so far.
    fn ipv4_sources(&self) -> Vec<std::net::Ipv4Addr> {
        use std::os::fd::AsRawFd;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: a buffer of the given length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 34 {
                if n < 0 {
                    return out;
                }
                continue;
            }
            if buf[12..14] == [0x08, 0x00] {
                out.push(std::net::Ipv4Addr::new(buf[26], buf[27], buf[28], buf[29]));
            }
        }
    }
}

#[test]
fn a_full_flow_table_keeps_every_established_connection_and_never_leaks_a_pod_address() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut args = L4Args::with_pin_root(&bed.pin);
    args.l4_conntrack_size = 32;
    args.l4_tcp_closing_timeout_secs = 1;
    let mut dp = L4Dataplane::open(&args, &bed.object).expect("open dataplane");
    bed.topo.node.enter(|| {
        dp.attach_xdp(NODE_IFACE, AttachMode::Auto)
            .expect("attach xdp");
        dp.attach_nic_egress(NODE_IFACE).expect("attach tc egress");
    });
    dp.apply(&snapshot(1, service(active(&bed.pod_addrs(false)), None)))
        .unwrap();
    let capture = Capture::start(&bed.topo);
    let to = SocketAddr::new(bed.topo.node_v4.into(), NODE_PORT);
    // 96 clients connect at once, with 2 s (two SYNs) to get in.
    let connect_all = |n: usize| -> Vec<TcpStream> {
        bed.topo.client.enter(|| {
            std::thread::scope(|s| {
                let tries: Vec<_> = (0..n)
                    .map(|_| {
                        s.spawn(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok())
                    })
                    .collect();
                tries
                    .into_iter()
                    .filter_map(|t| t.join().unwrap())
                    .collect()
            })
        })
    };
    let mut open = connect_all(96);
    // Exactly as many as the table holds got in, and every one of them works.
    assert_eq!(open.len(), 32);
    for (i, s) in open.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        assert!(!greeting(s).is_empty());
        echo_ok(s, format!("flow {i}").as_bytes());
    }
    let stats = dp.ebpf().map(ingress_common::stats::MAP_STATS).unwrap();
    let stats = aya::maps::PerCpuArray::try_from(stats).unwrap();
    let refused = xdp_ingress::dataplane::stats::read(&stats)
        .unwrap()
        .get(ingress_common::stats::Stat::DropFlowTableFull)
        .packets;
    assert!(refused >= 64, "{refused} SYNs refused");
    // `backends` says the table is full.
    let view = view::read(&bed.pin).expect("backends view");
    assert!(view.flow_tables.full, "{:?}", view.flow_tables);
    assert_eq!(view.flow_tables.flows, 32);
    assert!(view::render_text(&view).contains("FULL"));
    // No segment from a pod's own address ever reached the client.
    let pods: Vec<std::net::Ipv4Addr> = bed.topo.pods.iter().map(|p| p.v4).collect();
    let seen = capture.ipv4_sources();
    assert!(
        seen.contains(&bed.topo.node_v4),
        "the capture saw the replies"
    );
    let leaked = seen.iter().filter(|a| pods.contains(a)).count();
    assert_eq!(
        leaked, 0,
        "frames with a pod's source address reached the client"
    );

    // Closed connections give their room back after the closing timeout.
    open.clear();
    std::thread::sleep(Duration::from_millis(2500));
    dp.sweep_flows().unwrap();
    let again = connect_all(32);
    assert_eq!(again.len(), 32);
}

#[test]
fn short_connections_to_a_remote_endpoint_reuse_snat_ports_after_the_closing_timeout() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    // The remote endpoint: an echo server on "another node", played by the client namespace
    // (reached through the NIC with SNAT, as the rolling-update test does).
    let remote = SocketAddr::new(bed.topo.client_v4.into(), 9000);
    let _far = EchoServer::tcp(&bed.topo.client, remote, "other-node").expect("echo");
    let mut args = L4Args::with_pin_root(&bed.pin);
    args.l4_snat_ports = (40000, 40019);
    args.l4_tcp_closing_timeout_secs = 2;
    args.l4_node_v4 = Some(bed.topo.node_v4);
    args.node_name = Some("node".into());
    let mut dp = L4Dataplane::open(&args, &bed.object).expect("open dataplane");
    bed.topo.node.enter(|| {
        dp.attach_xdp(NODE_IFACE, AttachMode::Auto)
            .expect("attach xdp");
        dp.attach_nic_egress(NODE_IFACE).expect("attach tc egress");
    });
    let ep = Endpoint {
        node_name: Some("other".into()),
        ..l4common::endpoint(remote, xdp_ingress::model::EndpointState::Active)
    };
    dp.apply(&snapshot(1, service(vec![ep], None))).unwrap();

    // 40 short connections one after the other, 300 ms apart: with a 20-port range and a 2 s
    // closing timeout, ports of closed connections must come back for the later ones.
    let mut failed = Vec::new();
    for i in 0..40 {
        let to = SocketAddr::new(bed.topo.node_v4.into(), NODE_PORT);
        let ok = bed.topo.client.enter(|| {
            let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            let greeted = r.read_line(&mut line).is_ok() && line.trim() == "other-node";
            greeted && s.write_all(b"x").is_ok() && r.read_exact(&mut [0u8; 1]).is_ok()
        });
        if !ok {
            failed.push(i);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let stats = dp.ebpf().map(ingress_common::stats::MAP_STATS).unwrap();
    let stats = aya::maps::PerCpuArray::try_from(stats).unwrap();
    let exhausted = xdp_ingress::dataplane::stats::read(&stats)
        .unwrap()
        .get(ingress_common::stats::Stat::PassSnatExhausted)
        .packets;
    assert_eq!((failed, exhausted), (vec![], 0));
}

#[test]
fn a_service_without_endpoints_refuses_at_once_with_a_rst_or_port_unreachable() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut dp = bed.start();
    let mut dns = service(vec![], None);
    dns.id = "default/dns:53".into();
    dns.protocol = L4Protocol::Udp;
    dns.frontends = vec![Frontend::NodePort(30053)];
    let snap = Snapshot {
        version: 1,
        l4: vec![service(vec![], None), dns],
        ..Default::default()
    };
    dp.apply(&snap).unwrap();
    let node: IpAddr = bed.topo.node_v4.into();
    // TCP: refused (RST) at once, not a hang until the client's connect timeout.
    let (tcp, took) = bed.topo.client.enter(|| {
        let t = std::time::Instant::now();
        let r =
            TcpStream::connect_timeout(&SocketAddr::new(node, NODE_PORT), Duration::from_secs(3));
        (r.map(|_| ()), t.elapsed())
    });
    assert_eq!(
        tcp.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    // UDP: the port unreachable reaches the connected socket as ECONNREFUSED.
    let udp = bed.topo.client.enter(|| {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.connect(SocketAddr::new(node, 30053)).unwrap();
        s.send(b"query").unwrap();
        let mut buf = [0u8; 64];
        s.recv(&mut buf).map(|_| ()).map_err(|e| e.kind())
    });
    assert_eq!(udp, Err(std::io::ErrorKind::ConnectionRefused));
}

#[test]
fn external_traffic_policy_local_lands_every_connection_on_this_nodes_pod_with_the_client_address()
{
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut args = L4Args::with_pin_root(&bed.pin);
    args.node_name = Some("this".into());
    let mut dp = L4Dataplane::open(&args, &bed.object).expect("open dataplane");
    bed.topo.node.enter(|| {
        dp.attach_xdp(NODE_IFACE, AttachMode::Auto)
            .expect("attach xdp");
        dp.attach_nic_egress(NODE_IFACE).expect("attach tc egress");
    });
    // pod 0 runs on this node; pods 1 and 2 on another one.
    let eps = bed
        .pod_addrs(false)
        .into_iter()
        .enumerate()
        .map(|(i, a)| Endpoint {
            node_name: Some(if i == 0 { "this" } else { "other" }.into()),
            ..l4common::endpoint(a, xdp_ingress::model::EndpointState::Active)
        })
        .collect();
    let mut svc = service(eps, None);
    svc.external_traffic_local = true;
    dp.apply(&snapshot(1, svc)).unwrap();
    // 30 connections, held open: every one on this node's pod.
    let mut open = Vec::new();
    for _ in 0..30 {
        let mut s = bed.client_connect(false);
        assert_eq!(greeting(&mut s), bed.topo.pods[0].name);
        echo_ok(&mut s, b"ping");
        open.push(s);
    }
    // And the pod sees the client's own address on each (no SNAT).
    let ss = bed.topo.pods[0]
        .ns
        .run("ss", &["-Htn", "state", "established", "sport", "= :8080"])
        .unwrap();
    let from_client = ss
        .lines()
        .filter(|l| l.contains(&format!("{}:", bed.topo.client_v4)))
        .count();
    assert_eq!(from_client, 30, "{ss}");
}

/// Health check node port of the `externalTrafficPolicy: Local` Service `lb`.
const HC_NODE_PORT: u16 = 32100;

/// The LoadBalancer Service `lb` with `externalTrafficPolicy: Local` and a health check node
/// port; its endpoints: `pod0` on this node (`node-a`) when `local`, `pod1` on `node-b` always.
fn local_policy_manifests(pods: &[testbed::Pod], local: bool) -> String {
    let ep = |p: &testbed::Pod, node: &str| {
        format!(
            "- {{addresses: [\"{}\"], conditions: {{ready: true}}, nodeName: {node}, targetRef: {{kind: Pod, name: {}}}}}\n",
            p.v4, p.name
        )
    };
    let mut eps = String::new();
    if local {
        eps.push_str(&ep(&pods[0], "node-a"));
    }
    eps.push_str(&ep(&pods[1], "node-b"));
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: lb
  namespace: default
  annotations: {{xdp-ingress.dev/l4-acceleration: \"true\"}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: {HC_NODE_PORT}
  ports: [{{name: tcp, port: {POD_PORT}, targetPort: {POD_PORT}, nodePort: {NODE_PORT}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: lb-v4, namespace: default, labels: {{kubernetes.io/service-name: lb}}}}
addressType: IPv4
ports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}]
endpoints:
{eps}"
    )
}

/// `GET path` on the node's `port` from the client namespace: status code and body, or `None`
/// while nothing answers.
fn http_get(bed: &Bed, port: u16, path: &str) -> Option<(u16, String)> {
    let to = SocketAddr::new(bed.topo.node_v4.into(), port);
    let raw = bed.topo.client.enter(|| {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        Some(raw)
    })?;
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `GET /` on the node's health check node port: status code and JSON body.
fn health_check(bed: &Bed) -> Option<(u16, serde_json::Value)> {
    let (status, body) = http_get(bed, HC_NODE_PORT, "/")?;
    Some((status, serde_json::from_str(&body).expect("JSON body")))
}

/// kube-proxy's health check node port, end to end: the daemon (node `node-a`) answers 200
/// with `localEndpoints` 1 while the Service has a ready endpoint on this node, and 503 with 0
/// once that endpoint is removed (a hot change; the one on another node stays), so an external
/// balancer stops sending the node traffic it would drop (pkg/proxy/healthcheck).
#[test]
fn daemon_health_check_node_port_says_200_with_a_local_endpoint_and_503_without() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.yaml");
    std::fs::write(&file, local_policy_manifests(&bed.topo.pods, true)).unwrap();
    let mut daemon = bed.daemon_with(dir.path(), &["--node-name", "node-a"]);

    let wait_for = |want: u16| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = health_check(&bed);
            if let Some((status, body)) = &got
                && *status == want
            {
                return body.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "health check never said {want}: {got:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let body = wait_for(200);
    assert_eq!(body["service"]["namespace"], "default", "{body}");
    assert_eq!(body["service"]["name"], "lb", "{body}");
    assert_eq!(body["localEndpoints"], 1, "{body}");
    assert_eq!(body["serviceProxyHealthy"], true, "{body}");
    // The node attracts traffic for its local endpoint: the NodePort reaches pod0.
    assert_eq!(one_connection(&bed, false), bed.topo.pods[0].name);

    // The local endpoint leaves the EndpointSlice: the node says it has none.
    std::fs::write(&file, local_policy_manifests(&bed.topo.pods, false)).unwrap();
    let body = wait_for(503);
    assert_eq!(body["localEndpoints"], 0, "{body}");
    assert_eq!(body["service"]["name"], "lb", "{body}");
    stop(&mut daemon);
}

/// `n` connection attempts from the client namespace to `port` on the node, all at once;
/// how many connected.
fn connects(bed: &Bed, port: u16, n: usize) -> usize {
    connects_to(bed, SocketAddr::new(bed.topo.node_v4.into(), port), n)
}

/// [`connects`] to `to`. The SYNs leave together, so a per-source SYN limit sees one burst
/// however slow the machine is: limits refill at whole connections per second, and attempts
/// made one after the other (each waiting out a dropped SYN) would let tokens come back
/// meanwhile. Each attempt gets 900 ms: an admitted one takes a few packets through the node,
/// but twelve threads on a loaded CI machine once saw one of them exceed 400 ms; and it still
/// ends before the client's SYN retransmission at 1 s (RFC 6298's initial RTO), which would be
/// charged as another SYN (a dropped SYN must stay dropped).
fn connects_to(bed: &Bed, to: SocketAddr, n: usize) -> usize {
    std::thread::scope(|s| {
        let attempts: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    bed.topo.client.enter(|| {
                        TcpStream::connect_timeout(&to, Duration::from_millis(900)).is_ok()
                    })
                })
            })
            .collect();
        attempts
            .into_iter()
            .map(|a| a.join())
            .filter(|r| matches!(r, Ok(true)))
            .count()
    })
}

/// A SYN burst from one client at a Service limited to 1 new connection per second with
/// bursts of 5: 5 connect, the rest time out and are counted per service; an unlimited
/// Service on the same pods takes every connection of the same client.
#[test]
fn a_syn_burst_beyond_a_services_per_source_limit_is_dropped_and_counted() {
    if !testbed::require_root() {
        return;
    }
    let bed = bed();
    let mut dp = bed.start();
    let pods = active(&bed.pod_addrs(false));
    let mut limited = service(pods.clone(), None);
    limited.syn_rate_limit = Some(xdp_ingress::model::SynRateLimit {
        per_second: 1,
        burst: 5,
    });
    let open = L4Service {
        id: "default/open:8080".into(),
        ..l4common::service("open", L4Protocol::Tcp, NODE_PORT + 1, pods)
    };
    let snap = Snapshot {
        version: 1,
        l4: vec![limited, open],
        ..Default::default()
    };
    dp.apply(&snap).expect("apply");
    assert_eq!(
        connects(&bed, NODE_PORT, 10),
        5,
        "the burst connects, the rest do not"
    );
    assert_eq!(
        connects(&bed, NODE_PORT + 1, 20),
        20,
        "an unlimited Service is unaffected"
    );

    let view = view::read(&bed.pin).expect("backends view");
    let by_name = |n: &str| {
        view.services
            .iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n} in {view:?}"))
    };
    let l = by_name("default/echo:8080#v4");
    assert_eq!(
        l.syn_rate_limit,
        Some(view::SynLimitView {
            per_second: 1,
            burst: 5
        })
    );
    assert_eq!((l.counters.new_flows, l.counters.syn_limited), (5, 5));
    let o = by_name("default/open:8080#v4");
    assert_eq!(o.syn_rate_limit, None);
    assert_eq!((o.counters.new_flows, o.counters.syn_limited), (20, 0));
    assert_eq!(view.reasons.get("drop_syn_rate_limit"), Some(&5));
    let text = view::render_text(&view);
    assert!(
        text.contains("syn-rate-limit=1/s burst=5 syn_limited=5"),
        "{text}"
    );
}

/// Through the daemon: `xdp-ingress.dev/syn-rate-limit` on an accelerated Service, and
/// `--syn-rate-limit-per-source` on the ingress's own Service (the proxy's port as clients
/// reach it, NodePort 30090 → this node's proxy on :80); `backends` shows each limit and its
/// drops.
#[test]
fn daemon_limits_new_connections_per_source_from_the_annotation_and_the_node_wide_flag() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let dir = tempfile::tempdir().unwrap();
    let echo = manifests(&bed.topo.pods.iter().collect::<Vec<_>>()).replace(
        "annotations: {xdp-ingress.dev/l4-acceleration: \"true\"}",
        "annotations: {xdp-ingress.dev/l4-acceleration: \"true\", \
         xdp-ingress.dev/syn-rate-limit: \"1\", xdp-ingress.dev/syn-rate-limit-burst: \"2\"}",
    );
    assert!(echo.contains("syn-rate-limit-burst"));
    std::fs::write(dir.path().join("echo.yaml"), echo).unwrap();
    const PROXY_NODE_PORT: u16 = 30090;
    let node = bed.topo.node_v4;
    std::fs::write(
        dir.path().join("own.yaml"),
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: xdp-ingress, namespace: ingress}}
spec:
  type: NodePort
  ports: [{{name: http, port: 80, targetPort: 80, nodePort: {PROXY_NODE_PORT}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: xdp-ingress-1, namespace: ingress, labels: {{kubernetes.io/service-name: xdp-ingress}}}}
addressType: IPv4
ports: [{{name: http, port: 80, protocol: TCP}}]
endpoints:
- {{addresses: [\"{node}\"], conditions: {{ready: true}}, nodeName: node}}
"
        ),
    )
    .unwrap();
    let metrics = format!("{node}:10254");
    let mut daemon = bed.daemon_with(
        dir.path(),
        &[
            "--node-name",
            "node",
            "--ingress-service",
            "ingress/xdp-ingress",
            "--http-port",
            "80",
            "--https-port",
            "443",
            "--syn-rate-limit-per-source",
            "1",
            "--syn-rate-limit-burst",
            "3",
            "--metrics-addr",
            &metrics,
        ],
    );
    // Ready without spending the client's burst: both units in the maps, and the proxy
    // answering on the node's own port 80 (asked from the node itself: the client's SYNs
    // there are limited too, by the listener's own bucket).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let limits = |json: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        json["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"].as_str().is_some_and(|n| n.ends_with("#v4")))
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["syn_rate_limit"].clone(),
                )
            })
            .collect()
    };
    loop {
        let json: serde_json::Value =
            serde_json::from_slice(&backends_json(&bed.pin).stdout).unwrap_or_default();
        let direct = bed.topo.node.enter(|| {
            TcpStream::connect_timeout(
                &SocketAddr::new(node.into(), 80),
                Duration::from_millis(300),
            )
            .is_ok()
        });
        if limits(&json).len() == 2 && direct {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {json}");
        assert!(!daemon.has_exited(), "daemon exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(connects(&bed, NODE_PORT, 6), 2, "annotated burst of 2");
    assert_eq!(
        connects(&bed, PROXY_NODE_PORT, 6),
        3,
        "node-wide burst of 3 on the proxy"
    );
    let json: serde_json::Value = serde_json::from_slice(&backends_json(&bed.pin).stdout).unwrap();
    assert_eq!(
        limits(&json),
        [
            (
                "default/echo:tcp#v4".to_string(),
                serde_json::json!({"per_second": 1, "burst": 2})
            ),
            (
                "ingress/xdp-ingress:http#v4".to_string(),
                serde_json::json!({"per_second": 1, "burst": 3})
            ),
        ]
    );
    let limited: Vec<u64> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.ends_with("#v4")))
        .map(|s| s["counters"]["syn_limited"].as_u64().unwrap())
        .collect();
    assert_eq!(limited, [4, 3]);
    assert_eq!(json["reasons"]["drop_syn_rate_limit"], 7);
    let scrape = bed
        .topo
        .client
        .run(
            "curl",
            &["-sf", "-m", "5", &format!("http://{metrics}/metrics")],
        )
        .expect("scrape /metrics");
    for line in [
        "xdp_ingress_l4_syn_limited_total{service=\"default/echo:tcp#v4\"} 4",
        "xdp_ingress_l4_syn_limited_total{service=\"ingress/xdp-ingress:http#v4\"} 3",
        "xdp_ingress_xdp_packets_total{kind=\"drop\",counter=\"drop_syn_rate_limit\"} 7",
    ] {
        assert!(scrape.lines().any(|l| l == line), "{line} in\n{scrape}");
    }
    stop(&mut daemon);
}

/// `GET /metrics` of the daemon's admin listener on `127.0.0.1:port` in the node namespace.
fn node_metrics(bed: &Bed, port: u16) -> String {
    bed.topo.node.enter(|| {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::new([127, 0, 0, 1].into(), port),
            Duration::from_secs(2),
        )
        .expect("metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
}

/// The proxy runs with hostNetwork: clients reach its HTTP port on the node's own address,
/// through no service frontend. With `--syn-rate-limit-per-source 1 --syn-rate-limit-burst
/// 3` a client's burst of connections there gets 3 through, the rest dropped at the NIC and
/// counted (`backends`, metrics); restarted without the flag, every connection goes through.
#[test]
fn daemon_limits_syns_at_the_proxys_own_listener_with_the_node_wide_flag() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), bed.topo.pods.iter());
    const HTTP: u16 = 8081;
    const METRICS: u16 = 9181;
    let http = HTTP.to_string();
    let metrics = format!("127.0.0.1:{METRICS}");
    let base = [
        "--node-name",
        "node",
        "--http-port",
        http.as_str(),
        "--https-port",
        "8443",
        "--metrics-addr",
        metrics.as_str(),
    ];
    let node = SocketAddr::new(bed.topo.node_v4.into(), HTTP);
    // Ready without spending the client's burst: the proxy answers from the node itself (no
    // NIC, no XDP) and the NodePort from the client (another port: not a listener).
    let ready = |daemon: &mut testbed::process::KillOnDrop| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let direct = bed
                .topo
                .node
                .enter(|| TcpStream::connect_timeout(&node, Duration::from_millis(300)).is_ok());
            if direct && bed.wait_served(1) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never ready");
            assert!(!daemon.has_exited(), "daemon exited");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    let mut args = base.to_vec();
    args.extend([
        "--syn-rate-limit-per-source",
        "1",
        "--syn-rate-limit-burst",
        "3",
    ]);
    let mut daemon = bed.daemon_with(dir.path(), &args);
    ready(&mut daemon);
    assert_eq!(
        connects(&bed, HTTP, 6),
        3,
        "the burst connects, the rest do not"
    );
    // The client's IPv6 address is another source, at the same (wildcard) listener.
    let node6 = SocketAddr::new(bed.topo.node_v6.into(), HTTP);
    assert_eq!(connects_to(&bed, node6, 6), 3, "IPv6: the burst connects");
    assert_eq!(
        connects(&bed, NODE_PORT, 6),
        6,
        "the NodePort is no listener"
    );
    let json: serde_json::Value = serde_json::from_slice(&backends_json(&bed.pin).stdout).unwrap();
    let listener = json["proxy_listeners"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|l| l["name"] == format!("proxy-listener:{HTTP}"))
        })
        .unwrap_or_else(|| panic!("no HTTP listener in {json}"))
        .clone();
    assert_eq!(
        listener["syn_rate_limit"],
        serde_json::json!({"per_second": 1, "burst": 3})
    );
    assert_eq!(listener["counters"]["new_flows"], 6, "{listener}");
    assert_eq!(listener["counters"]["syn_limited"], 6, "{listener}");
    assert_eq!(json["reasons"]["drop_syn_rate_limit"], 6, "{json}");
    let text = node_metrics(&bed, METRICS);
    assert!(
        text.contains(&format!(
            "xdp_ingress_l4_syn_limited_total{{service=\"proxy-listener:{HTTP}\"}} 6"
        )),
        "{text}"
    );
    stop(&mut daemon);

    // Without the flag (same pinned maps): nothing limited any more.
    std::thread::sleep(Duration::from_millis(1100));
    let mut daemon = bed.daemon_with(dir.path(), &base);
    ready(&mut daemon);
    assert_eq!(
        connects(&bed, HTTP, 12),
        12,
        "every connection without the flag"
    );
    assert_eq!(connects_to(&bed, node6, 12), 12, "IPv6 too");
    let json: serde_json::Value = serde_json::from_slice(&backends_json(&bed.pin).stdout).unwrap();
    assert_eq!(json["proxy_listeners"], serde_json::json!([]), "{json}");
    assert_eq!(
        json["reasons"]["drop_syn_rate_limit"], 6,
        "no new drops: {json}"
    );
    stop(&mut daemon);
}

/// The admin port of [`daemon_dashboard_shows_the_xdp_services_with_their_counters`].
const ADMIN_PORT: u16 = 10254;

/// The dashboard with XDP attached (issue 16): after connections through the NodePort,
/// `/dashboard.json` lists the echo Service with its NodePort frontend, non-zero packet and
/// new-flow counters and its three pods as active backends, and `/dashboard`'s L4 table shows
/// that row (not "XDP is off").
#[test]
fn daemon_dashboard_shows_the_xdp_services_with_their_counters() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), bed.topo.pods.iter());
    let admin = format!("{}:{ADMIN_PORT}", bed.topo.node_v4);
    let mut daemon = bed.daemon_with(dir.path(), &["--metrics-addr", &admin]);
    assert!(bed.wait_served(20), "NodePort never served");
    const CONNECTIONS: u64 = 6;
    for _ in 0..CONNECTIONS {
        one_connection(&bed, false);
    }

    // Counters are per-CPU map sums read on each request: poll until this traffic shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let echo = loop {
        let json = http_get(&bed, ADMIN_PORT, "/dashboard.json")
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).expect("JSON"));
        let echo = json.as_ref().and_then(|j| {
            j["l4"]
                .as_array()?
                .iter()
                .find(|s| {
                    s["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("default/echo:") && n.ends_with("#v4"))
                })
                .cloned()
        });
        if let Some(e) = &echo
            && e["counters"]["new_flows"].as_u64() >= Some(CONNECTIONS)
        {
            break e.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard never showed the echo Service's flows: {json:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        echo["counters"]["packets"].as_u64() > Some(CONNECTIONS),
        "{echo}"
    );
    assert!(echo["counters"]["bytes"].as_u64() > Some(0), "{echo}");
    let frontends: Vec<&str> = echo["frontends"]
        .as_array()
        .expect("frontends")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(frontends, [format!("tcp/*:{NODE_PORT}")], "{echo}");
    let mut backends: Vec<(String, String)> = echo["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap_or_default().to_string(),
                b["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    backends.sort();
    let mut want: Vec<(String, String)> = bed
        .pod_addrs(false)
        .iter()
        .map(|a| (a.to_string(), "active".to_string()))
        .collect();
    want.sort();
    assert_eq!(backends, want, "{echo}");

    let (status, html) = http_get(&bed, ADMIN_PORT, "/dashboard").expect("dashboard page");
    assert_eq!(status, 200);
    let l4 = html
        .split("<section id=\"l4\">")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .expect("the L4 section");
    assert!(!l4.contains("XDP is off"), "{l4}");
    assert!(l4.contains("default/echo:"), "{l4}");
    assert!(l4.contains(&format!("tcp/*:{NODE_PORT}")), "{l4}");
    stop(&mut daemon);
}

/// Gateway API L4 routes, as the daemon reads them from its manifest directory: a Gateway with
/// a TCP listener (a TCPRoute splitting connections 1:1 between Service `echo-a`, pod 0, and
/// `echo-b`, pods 1 and 2) and a UDP listener (a UDPRoute to `udp-echo`, every pod), each
/// Service with IPv4 and IPv6 EndpointSlices. None of the Services is a NodePort.
fn gateway_l4_manifests(pods: &[testbed::Pod], tcp_port: u16, udp_port: u16) -> String {
    let slices = |svc: &str, pods: &[&testbed::Pod], port: u16, proto: &str| {
        let mut out = String::new();
        for (fam, v6) in [("IPv4", false), ("IPv6", true)] {
            let eps: String = pods
                .iter()
                .map(|p| {
                    let ip = if v6 { p.v6.to_string() } else { p.v4.to_string() };
                    format!(
                        "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: {}}}}}\n",
                        p.name
                    )
                })
                .collect();
            out.push_str(&format!(
                "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {svc}-{fam}, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}
addressType: {fam}
ports: [{{port: {port}, protocol: {proto}}}]
endpoints:
{eps}"
            ));
        }
        format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: {svc}, namespace: default}}
spec: {{ports: [{{port: {port}, protocol: {proto}}}]}}
{out}"
        )
    };
    let all: Vec<&testbed::Pod> = pods.iter().collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: l4, namespace: default}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: tcp, port: {tcp_port}, protocol: TCP}}
  - {{name: udp, port: {udp_port}, protocol: UDP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {{name: echo, namespace: default}}
spec:
  parentRefs: [{{name: l4, sectionName: tcp}}]
  rules: [{{backendRefs: [{{name: echo-a, port: {POD_PORT}, weight: 1}}, {{name: echo-b, port: {POD_PORT}, weight: 1}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {{name: echo, namespace: default}}
spec:
  parentRefs: [{{name: l4, sectionName: udp}}]
  rules: [{{backendRefs: [{{name: udp-echo, port: 5353}}]}}]
{}{}{}",
        slices("echo-a", &all[..1], POD_PORT, "TCP"),
        slices("echo-b", &all[1..], POD_PORT, "TCP"),
        slices("udp-echo", &all, 5353, "UDP"),
    )
}

#[test]
fn daemon_serves_a_tcproute_and_a_udproute_on_gateway_listeners_through_xdp_v4_and_v6() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    let mut udp_echo = Vec::new();
    for p in &bed.topo.pods {
        for ip in [IpAddr::V4(p.v4), IpAddr::V6(p.v6)] {
            udp_echo.push(EchoServer::udp(&p.ns, SocketAddr::new(ip, 5353), &p.name).unwrap());
        }
    }
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let (tcp_port, udp_port) = (30090, 30053);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        gateway_l4_manifests(&bed.topo.pods, tcp_port, udp_port),
    )
    .unwrap();
    let mut daemon = bed.daemon(dir.path());
    let node_ips: [IpAddr; 2] = [bed.topo.node_v4.into(), bed.topo.node_v6.into()];

    // Served on both families (the daemon writes services one after the other).
    let both = node_ips.map(|ip| SocketAddr::new(ip, tcp_port));
    bed.wait_listener(&mut daemon, &both, "TCP listener");

    // TCP: bytes through, and connections split by backendRef weight (1:1 between echo-a's one
    // pod and echo-b's two): pod 0 takes about half of them. 200 connections: the band below
    // is more than 4.5 standard deviations wide.
    let pod0 = bed.topo.pods[0].name.clone();
    for ip in node_ips {
        let n = 200;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..n {
            let mut s = bed.connect(SocketAddr::new(ip, tcp_port), "connect to the TCP listener");
            let pod = greeting(&mut s);
            echo_ok(&mut s, b"through the TCPRoute");
            *counts.entry(pod).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "{ip}: {counts:?}");
        let share = counts[&pod0] as f64 / n as f64;
        assert!((0.33..=0.67).contains(&share), "{ip}: {counts:?}");
    }

    // UDP: a datagram each way, answered from the listener's address and port.
    for ip in node_ips {
        let to = SocketAddr::new(ip, udp_port);
        let (from, reply) = bed.topo.client.enter(|| {
            let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = std::net::UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.send_to(b"hello", to).unwrap();
            let mut buf = [0u8; 256];
            let (n, from) = s
                .recv_from(&mut buf)
                .expect("UDP reply through the UDPRoute");
            (from, String::from_utf8_lossy(&buf[..n]).to_string())
        });
        assert_eq!(from, to, "the reply comes from the listener");
        assert!(
            reply.starts_with("pod") && reply.ends_with(":hello"),
            "{reply}"
        );
    }
    stop(&mut daemon);
}

/// Gateway API v1.6 conformance (TCPRouteMultipleRoutesAttachment, TCPRouteWeightedRouting)
/// through the daemon: two TCPRoutes on one listener, the older splitting 70/30 between
/// `echo-a` (pod 0) and `echo-b` (pods 1 and 2), the newer sending everything to `echo-b`.
/// Only the older one is served: pod 0 takes about 70% of 200 connections (the band is more
/// than 4.5 standard deviations wide each way; 0% had the newer route won, 50% without weights).
#[test]
fn daemon_serves_the_oldest_of_two_tcproutes_on_a_listener_by_weight() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let port = 30092;
    let route = |name: &str, created: &str, backends: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\n\
             metadata: {{name: {name}, namespace: default, creationTimestamp: \"{created}\"}}\n\
             spec:\n  parentRefs: [{{name: l4, sectionName: multi}}]\n  \
             rules: [{{backendRefs: {backends}}}]\n"
        )
    };
    let manifests = format!(
        "{}{}{}",
        gateway_l4_manifests(&bed.topo.pods, 30090, 30053).replace(
            "  - {name: udp, port: 30053, protocol: UDP}",
            &format!("  - {{name: multi, port: {port}, protocol: TCP}}"),
        ),
        route(
            "newer",
            "2024-01-02T00:00:00Z",
            &format!("[{{name: echo-b, port: {POD_PORT}}}]")
        ),
        route(
            "older",
            "2024-01-01T00:00:00Z",
            &format!(
                "[{{name: echo-a, port: {POD_PORT}, weight: 70}}, {{name: echo-b, port: {POD_PORT}, weight: 30}}]"
            )
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), manifests).unwrap();
    let mut daemon = bed.daemon(dir.path());
    let to = SocketAddr::new(bed.topo.node_v4.into(), port);
    bed.wait_listener(&mut daemon, &[to], "the listener");
    let pod0 = bed.topo.pods[0].name.clone();
    let n = 200;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        let mut s = bed.connect(to, "connect to the shared TCP listener");
        *counts.entry(greeting(&mut s)).or_insert(0) += 1;
    }
    let share = counts.get(&pod0).copied().unwrap_or(0) as f64 / n as f64;
    assert!((0.55..=0.85).contains(&share), "{counts:?}");
    stop(&mut daemon);
}

/// Spec (TCPRoute backendRefs): "Connection rejections must respect weight". Through the
/// daemon with XDP: a TCPRoute sends half to `echo-a` and half to a Service that does not
/// exist; about half of 200 connections are refused at once (RST from the XDP program, as for
/// a NodePort without endpoints) and the rest reach pod 0 (band: 4.5 standard deviations).
#[test]
fn daemon_refuses_the_share_of_a_tcproutes_missing_backend() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let port = 30093;
    let manifests = format!(
        "{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\n\
         metadata: {{name: half, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: l4, sectionName: half}}]\n  \
         rules: [{{backendRefs: [{{name: echo-a, port: {POD_PORT}, weight: 50}}, \
         {{name: gone, port: {POD_PORT}, weight: 50}}]}}]\n",
        gateway_l4_manifests(&bed.topo.pods, 30090, 30053).replace(
            "  - {name: udp, port: 30053, protocol: UDP}",
            &format!("  - {{name: half, port: {port}, protocol: TCP}}"),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), manifests).unwrap();
    let mut daemon = bed.daemon(dir.path());
    let to = SocketAddr::new(bed.topo.node_v4.into(), port);
    // The node's own stack refuses the port too until the service is in the maps.
    bed.wait_listener(&mut daemon, &[to], "the listener");
    let connect = || {
        bed.topo
            .client
            .enter(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)))
    };
    let pod0 = bed.topo.pods[0].name.clone();
    let n = 200;
    let (mut refused, mut served) = (0, 0);
    for _ in 0..n {
        match connect() {
            Ok(mut s) => {
                assert_eq!(greeting(&mut s), pod0);
                served += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                refused += 1;
            }
        }
    }
    let share = f64::from(refused) / f64::from(n);
    assert!(
        (0.35..=0.65).contains(&share),
        "refused {refused}, served {served}"
    );
    stop(&mut daemon);
}

/// A Gateway TCP listener on a port a NodePort Service already holds gets `PortUnavailable`
/// and changes nothing for the NodePort (its connections still spread over all three pods);
/// the Gateway's other listener is served.
#[test]
fn daemon_keeps_a_nodeport_when_a_gateway_listener_asks_for_its_port() {
    if !testbed::require_root() {
        return;
    }
    require_daemon_bin();
    let bed = bed();
    xdp_ingress::dataplane::l4::ensure_bpffs(&bed.pin).expect("bpffs");
    let free_port = 30091;
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), bed.topo.pods.iter());
    // Listener `tcp` on the NodePort's port and `free` (instead of `udp`) on a free one; the
    // route names both and sends everything to pod 0 (`echo-a`): had it taken the NodePort's
    // port, every NodePort connection would land on pod 0.
    let gateway = gateway_l4_manifests(&bed.topo.pods, NODE_PORT, 30053)
        .replace(
            "  - {name: udp, port: 30053, protocol: UDP}",
            &format!("  - {{name: free, port: {free_port}, protocol: TCP}}"),
        )
        .replace(
            "parentRefs: [{name: l4, sectionName: tcp}]",
            "parentRefs: [{name: l4}]",
        )
        .replace(
            &format!(", {{name: echo-b, port: {POD_PORT}, weight: 1}}"),
            "",
        );
    std::fs::write(dir.path().join("gateway.yaml"), gateway).unwrap();
    let mut daemon = bed.daemon(dir.path());
    assert!(bed.wait_served(20), "NodePort never served");
    let free = SocketAddr::new(bed.topo.node_v4.into(), free_port);
    bed.wait_listener(&mut daemon, &[free], "the free listener");
    let mut s = bed.connect(free, "connect to the free listener");
    let pod = greeting(&mut s);
    echo_ok(&mut s, b"through the free listener");
    assert_eq!(pod, bed.topo.pods[0].name);
    // The NodePort's own Service (all three pods), not the route's pod 0.
    for v6 in [false, true] {
        let counts = spread(&bed, v6, 60);
        assert_eq!(counts.len(), 3, "{counts:?}");
    }
    stop(&mut daemon);
}
