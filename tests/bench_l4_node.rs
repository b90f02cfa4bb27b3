//! L4 through the node, packets on the wire (veth) rather than BPF_PROG_TEST_RUN: UDP
//! small-packet pps and TCP connections/s to a NodePort Service with three pods, through our
//! XDP program, against the rules kube-proxy writes for the same Service in its iptables mode
//! and its nftables mode, and against plain routing to a pod (no Service, no NAT: the floor).
//! Prints a table with CPU per packet and the ratios; asserts nothing about speed.
//!
//! Each mode gets its own test bed (`Topology`: client, node, three pods), so conntrack state
//! or hooks one mode leaves never touch another; modes alternate over several rounds and the
//! best round (least CPU per unit) counts, since the machine may be shared.
//!
//! Fairness: the node's NIC veth runs native XDP in every mode (ours, or a bare XDP_PASS for
//! kube-proxy and routing), so frames take the same driver path, as on a real NIC whose driver
//! path does not change with the rules; only the NAT differs.
//!
//! CPU: everything runs on the load generator's CPU in softirq (veth xmit schedules the peer's
//! NAPI, which runs when the sender re-enables bottom halves), plus the pod sinks. Three views:
//! the whole machine's busy jiffies from /proc/stat (as asked; includes whatever else runs),
//! its kernel part only (system + irq + softirq: the packet path is all kernel work, neighbours'
//! compilers are mostly user time), and the CPU time of our own load-generator and sink threads
//! (scheduler-exact; softirq run in their context is charged to them without
//! IRQ_TIME_ACCOUNTING). Ratios "at equal CPU" are packets per CPU-second, ours / peer.
//!
//! `cargo xtask bench l4-node` (`BENCH_SECONDS`, default 3, per run; `L4_NODE_ROUNDS`, default 3;
//! `L4_NODE_ONLY=xdp,iptables,nftables,routed` picks modes).

mod l4common;

use std::{
    io::Read,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::programs::{Xdp, XdpMode};
use ingress_common::PROG_XDP_PASS;
use testbed::{NODE_IFACE, Netns, Topology, bench_out::BenchOut, pins::PinDir};
use xdp_ingress::{
    dataplane::{AttachMode, L4Args, L4Dataplane},
    model::{L4Protocol, Snapshot},
};

const UDP_NODE_PORT: u16 = 30053;
const TCP_NODE_PORT: u16 = 30080;
const POD_PORT: u16 = 8080;
const PODS: usize = 3;
/// UDP payload: 18 bytes make the smallest Ethernet frame (60 bytes + FCS).
const PAYLOAD: usize = 18;
/// Client sockets (flows) of the UDP load, each sending `BATCH` datagrams per sendmmsg.
const FLOWS: usize = 32;
const BATCH: usize = 32;
/// Upper bounds of one run besides its duration.
const MAX_PACKETS: u64 = 200_000_000;
/// Per run: a third of the default flow table, so no mode's tracker fills (ours sweeps closed
/// flows 10 s after their end, as the daemon's timer does between runs here).
const MAX_CONNECTIONS: u64 = 20_000;

fn seconds() -> f64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(3.0)
        .clamp(0.5, 60.0)
}

fn rounds() -> usize {
    std::env::var("L4_NODE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .clamp(1, 9)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Xdp,
    Iptables,
    Nftables,
    Routed,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Xdp => "xdp-ingress (XDP)",
            Mode::Iptables => "kube-proxy iptables",
            Mode::Nftables => "kube-proxy nftables",
            Mode::Routed => "routing only, no NAT",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Mode::Xdp => "xdp",
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
            Mode::Routed => "routed",
        }
    }
}

/// One mode's test bed: topology, pod sinks, and what does the NAT.
struct Bed {
    mode: Mode,
    topo: Topology,
    sinks: Vec<Sink>,
    /// Our dataplane (XDP mode) or the bare XDP_PASS on the node's NIC (the others).
    _dp: Option<L4Dataplane>,
    _pass: Option<aya::Ebpf>,
    _pin: Option<PinDir>,
}

impl Bed {
    fn new(mode: Mode, object: &[u8]) -> anyhow::Result<Bed> {
        let topo = Topology::new(PODS)?;
        let mut sinks = Vec::new();
        for p in &topo.pods {
            sinks.push(Sink::udp(&p.ns, SocketAddr::new(p.v4.into(), POD_PORT))?);
            sinks.push(Sink::tcp(&p.ns, SocketAddr::new(p.v4.into(), POD_PORT))?);
        }
        // Many connections from one client address: widen its ephemeral ports.
        topo.client.run(
            "sysctl",
            &["-qw", "net.ipv4.ip_local_port_range=1024 65000"],
        )?;
        let mut bed = Bed {
            mode,
            topo,
            sinks,
            _dp: None,
            _pass: None,
            _pin: None,
        };
        match mode {
            Mode::Xdp => {
                let pin = PinDir::new("l4node");
                let mut dp = L4Dataplane::open(&L4Args::with_pin_root(&pin), object)?;
                bed.topo.node.enter(|| -> anyhow::Result<()> {
                    dp.attach_xdp(NODE_IFACE, AttachMode::Native)?;
                    dp.attach_nic_egress(NODE_IFACE)?;
                    Ok(())
                })?;
                let eps: Vec<SocketAddr> = bed
                    .topo
                    .pods
                    .iter()
                    .map(|p| SocketAddr::new(p.v4.into(), POD_PORT))
                    .collect();
                dp.apply(&Snapshot {
                    version: 1,
                    l4: vec![
                        l4common::service(
                            "dns",
                            L4Protocol::Udp,
                            UDP_NODE_PORT,
                            l4common::active(&eps),
                        ),
                        l4common::service(
                            "web",
                            L4Protocol::Tcp,
                            TCP_NODE_PORT,
                            l4common::active(&eps),
                        ),
                    ],
                    ..Default::default()
                })?;
                bed._dp = Some(dp);
                bed._pin = Some(pin);
            }
            Mode::Iptables | Mode::Nftables | Mode::Routed => {
                bed._pass = Some(attach_pass(&bed.topo.node)?);
                let pods: Vec<Ipv4Addr> = bed.topo.pods.iter().map(|p| p.v4).collect();
                if mode == Mode::Iptables {
                    let rules = iptables_rules(&pods);
                    stdin_to(&bed.topo.node, "iptables-restore", &[], &rules)?;
                } else if mode == Mode::Nftables {
                    let rules = nftables_rules(bed.topo.node_v4, &pods);
                    stdin_to(&bed.topo.node, "nft", &["-f", "-"], &rules)?;
                }
            }
        }
        Ok(bed)
    }

    /// What the daemon's timer does: sweeps flows that ended (ours only).
    fn maintain(&mut self) {
        if let Some(dp) = self._dp.as_mut() {
            dp.maintain().expect("sweep");
        }
    }

    fn target(&self, proto: L4Protocol) -> SocketAddr {
        match (self.mode, proto) {
            (Mode::Routed, _) => SocketAddr::new(self.topo.pods[0].v4.into(), POD_PORT),
            (_, L4Protocol::Udp) => SocketAddr::new(self.topo.node_v4.into(), UDP_NODE_PORT),
            (_, _) => SocketAddr::new(self.topo.node_v4.into(), TCP_NODE_PORT),
        }
    }

    fn sink_tids(&self) -> Vec<i32> {
        self.sinks
            .iter()
            .map(|s| s.tid.load(Ordering::Relaxed))
            .collect()
    }

    /// Packets the node has sent to its pods (tx of its pod veths).
    fn forwarded(&self) -> u64 {
        self.topo.node.enter(|| {
            let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
            dev.lines()
                .filter_map(|l| l.trim().split_once(':'))
                .filter(|(name, _)| name.starts_with("pod"))
                .filter_map(|(_, v)| v.split_whitespace().nth(9)?.parse::<u64>().ok())
                .sum()
        })
    }

    /// Connections the pods accepted.
    fn accepted(&self) -> u64 {
        self.sinks
            .iter()
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }
}

/// A pod's UDP drain or TCP acceptor (writes one byte, closes), counting; stopped on drop.
struct Sink {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    tid: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn udp(ns: &Netns, addr: SocketAddr) -> anyhow::Result<Sink> {
        let sock = ns.enter(|| UdpSocket::bind(addr))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        set_int(sock.as_raw_fd(), libc::SO_RCVBUF, 4 << 20);
        // Datagrams are counted at the node's pod veths, not here.
        Ok(Sink::spawn(move |stop, _| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let _ = sock.recv(&mut buf);
            }
        }))
    }

    fn tcp(ns: &Netns, addr: SocketAddr) -> anyhow::Result<Sink> {
        let listener = ns.enter(|| TcpListener::bind(addr))?;
        // accept(2) honours SO_RCVTIMEO: the loop sees `stop` at least every 50 ms.
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: a valid socket and a timeval of the size given.
        unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Sink::spawn(move |stop, count| {
            use std::io::Write;
            while !stop.load(Ordering::Relaxed) {
                if let Ok((mut c, _)) = listener.accept() {
                    let _ = c.write_all(b"x");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }))
    }

    fn spawn(f: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static) -> Sink {
        let (stop, count, tid) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicI32::new(0)),
        );
        let (s, c, t) = (stop.clone(), count.clone(), tid.clone());
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            t.store(unsafe { libc::gettid() }, Ordering::Relaxed);
            f(&s, &c)
        });
        Sink {
            stop,
            count,
            tid,
            thread: Some(thread),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_int(fd: i32, opt: i32, v: i32) {
    // SAFETY: a valid socket and an int option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
}

/// Loads the bare pass program and attaches it natively to the node's NIC veth.
fn attach_pass(node: &Netns) -> anyhow::Result<aya::Ebpf> {
    let mut ebpf = aya::Ebpf::load_file(testbed::bpf_object_path())?;
    node.enter(|| -> anyhow::Result<()> {
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_XDP_PASS)
            .ok_or_else(|| anyhow::anyhow!("no xdp_pass"))?
            .try_into()?;
        prog.load()?;
        prog.attach(NODE_IFACE, XdpMode::Driver)?;
        Ok(())
    })?;
    Ok(ebpf)
}

fn stdin_to(ns: &Netns, program: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = ns
        .cmd(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Probability kube-proxy writes for endpoint `i` of `n` (`1/(n-i)`, as `%0.11f`); the last
/// endpoint gets no statistic match.
fn probability(i: usize, n: usize) -> String {
    format!("{:.11}", 1.0 / (n - i) as f64)
}

/// What kube-proxy's iptables mode (v1.30+) writes for Service default/echo with a UDP port
/// (dns, 53, NodePort 30053) and a TCP port (web, 80, NodePort 30080), ClusterIP 10.96.0.10,
/// externalTrafficPolicy Cluster, endpoints `pods`:8080, cluster CIDR 198.19.0.0/16. Chain
/// hashes are stand-ins of the same length.
fn iptables_rules(pods: &[Ipv4Addr]) -> String {
    let mut f = String::from(
        "*filter
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m comment --comment \"kubernetes forwarding rules\" -j DROP
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
",
    );
    let ports = [
        ("dns", "udp", 53, UDP_NODE_PORT, "U"),
        ("web", "tcp", 80, TCP_NODE_PORT, "T"),
    ];
    for (_, _, _, _, tag) in ports {
        f += &format!(
            ":KUBE-SVC-{tag}ECHO00000000000 - [0:0]\n:KUBE-EXT-{tag}ECHO00000000000 - [0:0]\n"
        );
        for i in 0..pods.len() {
            f += &format!(":KUBE-SEP-{tag}ECHO0000000000{i} - [0:0]\n");
        }
    }
    f += "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
";
    for (name, proto, port, node_port, tag) in ports {
        let svc = format!("KUBE-SVC-{tag}ECHO00000000000");
        let ext = format!("KUBE-EXT-{tag}ECHO00000000000");
        let c = format!("default/echo:{name}");
        f += &format!(
            "-A KUBE-SERVICES -d 10.96.0.10/32 -p {proto} -m comment --comment \"{c} cluster IP\" -m {proto} --dport {port} -j {svc}
-A KUBE-NODEPORTS -p {proto} -m comment --comment \"{c}\" -m {proto} --dport {node_port} -j {ext}
-A {ext} -m comment --comment \"masquerade traffic for {c} external destinations\" -j KUBE-MARK-MASQ
-A {ext} -j {svc}
-A {svc} ! -s 198.19.0.0/16 -d 10.96.0.10/32 -p {proto} -m comment --comment \"{c} cluster IP\" -m {proto} --dport {port} -j KUBE-MARK-MASQ
"
        );
        for (i, ip) in pods.iter().enumerate() {
            let sep = format!("KUBE-SEP-{tag}ECHO0000000000{i}");
            let stat = if i + 1 < pods.len() {
                format!(
                    " -m statistic --mode random --probability {}",
                    probability(i, pods.len())
                )
            } else {
                String::new()
            };
            f += &format!(
                "-A {svc} -m comment --comment \"{c} -> {ip}:{POD_PORT}\"{stat} -j {sep}
-A {sep} -s {ip}/32 -m comment --comment \"{c}\" -j KUBE-MARK-MASQ
-A {sep} -p {proto} -m comment --comment \"{c}\" -m {proto} -j DNAT --to-destination {ip}:{POD_PORT}
"
            );
        }
    }
    f += "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\nCOMMIT\n";
    f
}

/// What kube-proxy's nftables mode (v1.31+) writes for the same Service as
/// [`iptables_rules`]: table `ip kube-proxy`, verdict maps for ClusterIPs and NodePorts,
/// `numgen random` over the endpoints, mark-for-masquerade and `masquerade fully-random`.
fn nftables_rules(node: Ipv4Addr, pods: &[Ipv4Addr]) -> String {
    let ports = [
        ("dns", "udp", 53, UDP_NODE_PORT, "U"),
        ("web", "tcp", 80, TCP_NODE_PORT, "T"),
    ];
    let mut f = String::from("table ip kube-proxy {\n");
    let svc_ips: Vec<String> = ports
        .iter()
        .map(|(n, p, port, _, t)| {
            format!("10.96.0.10 . {p} . {port} : goto service-{t}ECHO-default/echo/{p}/{n}")
        })
        .collect();
    let nodeports: Vec<String> = ports
        .iter()
        .map(|(n, p, _, np, t)| format!("{p} . {np} : goto external-{t}ECHO-default/echo/{p}/{n}"))
        .collect();
    f += &format!(
        "  set cluster-ips {{ type ipv4_addr; elements = {{ 10.96.0.10 }} }}
  set nodeport-ips {{ type ipv4_addr; elements = {{ {node} }} }}
  map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}
  map firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; elements = {{ {} }} }}
  map service-nodeports {{ type inet_proto . inet_service : verdict; elements = {{ {} }} }}
  chain filter-prerouting {{ type filter hook prerouting priority -110; policy accept; ct state new jump firewall-check }}
  chain filter-input {{ type filter hook input priority -110; policy accept; ct state new jump nodeport-endpoints-check; ct state new jump service-endpoints-check }}
  chain filter-forward {{ type filter hook forward priority -110; policy accept; ct state new jump service-endpoints-check; ct state new jump cluster-ips-check }}
  chain filter-output {{ type filter hook output priority -110; policy accept; ct state new jump service-endpoints-check; ct state new jump firewall-check }}
  chain filter-output-post-dnat {{ type filter hook output priority -90; policy accept; ct state new jump cluster-ips-check }}
  chain nat-prerouting {{ type nat hook prerouting priority -100; policy accept; jump services }}
  chain nat-output {{ type nat hook output priority -100; policy accept; jump services }}
  chain nat-postrouting {{ type nat hook postrouting priority 100; policy accept; jump masquerading }}
  chain firewall-check {{ ip daddr . meta l4proto . th dport vmap @firewall-ips }}
  chain service-endpoints-check {{ ip daddr . meta l4proto . th dport vmap @no-endpoint-services }}
  chain nodeport-endpoints-check {{ ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports }}
  chain cluster-ips-check {{ ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\" }}
  chain mark-for-masquerade {{ meta mark set meta mark | 0x4000 }}
  chain masquerading {{ meta mark & 0x4000 == 0 return; meta mark set meta mark ^ 0x4000; masquerade fully-random }}
  chain services {{ ip daddr . meta l4proto . th dport vmap @service-ips; ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports }}
",
        svc_ips.join(", "),
        nodeports.join(", ")
    );
    for (n, p, port, _, t) in ports {
        let svc = format!("service-{t}ECHO-default/echo/{p}/{n}");
        let eps: Vec<String> = (0..pods.len())
            .map(|i| {
                format!(
                    "{i} : goto endpoint-{t}{i}-default/echo/{p}/{n}__{}/{POD_PORT}",
                    pods[i]
                )
            })
            .collect();
        f += &format!(
            "  chain {svc} {{ ip daddr 10.96.0.10 {p} dport {port} ip saddr != 198.19.0.0/16 jump mark-for-masquerade; numgen random mod {} vmap {{ {} }} }}
  chain external-{t}ECHO-default/echo/{p}/{n} {{ jump mark-for-masquerade; goto {svc} }}
",
            pods.len(),
            eps.join(", ")
        );
        for (i, ip) in pods.iter().enumerate() {
            f += &format!(
                "  chain endpoint-{t}{i}-default/echo/{p}/{n}__{ip}/{POD_PORT} {{ ip saddr {ip} jump mark-for-masquerade; meta l4proto {p} dnat to {ip}:{POD_PORT} }}\n"
            );
        }
    }
    f += "}\n";
    // One-line chains: nft wants the last statement ended before the closing brace.
    f.lines()
        .map(|l| {
            match l
                .strip_prefix("  chain ")
                .and_then(|_| l.strip_suffix(" }"))
            {
                Some(body) => format!("{body}; }}\n"),
                None => format!("{l}\n"),
            }
        })
        .collect()
}

/// CPU counters at one moment.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// Whole machine, jiffies: user+nice+system+irq+softirq+steal, and system+irq+softirq.
    busy: u64,
    kernel: u64,
    /// Our sink threads' scheduler run time, ns.
    sinks_ns: u64,
}

fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let g = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    (g(0) + g(1) + g(2) + g(5) + g(6) + g(7), g(2) + g(5) + g(6))
}

/// A thread's scheduler run time (ns), from /proc/self/task/<tid>/schedstat.
fn thread_ns(tid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn own_thread_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cpu_now(bed: &Bed) -> Cpu {
    let (busy, kernel) = machine_jiffies();
    Cpu {
        busy,
        kernel,
        sinks_ns: bed.sink_tids().into_iter().map(thread_ns).sum(),
    }
}

/// One run: units delivered (datagrams forwarded to pods, or connections accepted), its
/// length, and CPU spent.
#[derive(Clone, Copy, Default)]
struct Run {
    units: u64,
    secs: f64,
    busy_ns: f64,
    kernel_ns: f64,
    threads_ns: f64,
    errors: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.units as f64 / self.secs
    }
    /// CPU ns per unit: machine busy, machine kernel, our threads.
    fn per_unit(&self) -> [f64; 3] {
        let u = self.units.max(1) as f64;
        [self.busy_ns / u, self.kernel_ns / u, self.threads_ns / u]
    }
}

fn jiffy_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    1e9 / hz as f64
}

/// Runs `load` on a thread of the client namespace (returns its own CPU ns and errors),
/// measuring CPU around it and `delivered` before and after.
fn measure(bed: &Bed, delivered: impl Fn(&Bed) -> u64, load: impl FnOnce() -> u64 + Send) -> Run {
    let d0 = delivered(bed);
    let c0 = cpu_now(bed);
    let t0 = Instant::now();
    let (gen_ns, errors) = bed.topo.client.enter(|| {
        let start = own_thread_ns();
        let errors = load();
        (own_thread_ns() - start, errors)
    });
    // Let the sinks drain what is queued before counting.
    std::thread::sleep(Duration::from_millis(100));
    let secs = t0.elapsed().as_secs_f64();
    let c1 = cpu_now(bed);
    let d1 = delivered(bed);
    let j = jiffy_ns();
    Run {
        units: d1 - d0,
        secs,
        busy_ns: (c1.busy - c0.busy) as f64 * j,
        kernel_ns: (c1.kernel - c0.kernel) as f64 * j,
        threads_ns: (gen_ns + c1.sinks_ns - c0.sinks_ns) as f64,
        errors,
    }
}

/// UDP blast: `FLOWS` connected sockets, `BATCH` datagrams of `PAYLOAD` bytes per sendmmsg,
/// round robin, until the deadline or `MAX_PACKETS`. Returns send errors.
fn udp_load(to: SocketAddr, secs: f64) -> u64 {
    let socks: Vec<UdpSocket> = (0..FLOWS)
        .map(|_| {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.connect(to).expect("connect");
            s
        })
        .collect();
    let payload = [0x5au8; PAYLOAD];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: PAYLOAD,
    };
    // SAFETY: zeroed mmsghdr is valid (no name, no control); iov points at `payload`.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (mut sent, mut errors) = (0u64, 0u64);
    'outer: while sent < MAX_PACKETS {
        for s in &socks {
            // SAFETY: `msgs` holds BATCH initialised headers.
            let n = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
            if n < 0 {
                errors += 1;
            } else {
                sent += n as u64;
            }
        }
        if Instant::now() >= deadline {
            break 'outer;
        }
    }
    errors
}

/// TCP connections one after another: connect, read the pod's byte, close with a RST (linger
/// 0): no TIME_WAIT anywhere, whose 4-tuple a later connection from a reused port would meet
/// (a stall of one SYN timeout) and which would measure TIME_WAIT handling, not the NAT.
/// Until the deadline or `MAX_CONNECTIONS`.
fn tcp_load(to: SocketAddr, secs: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (mut n, mut errors) = (0u64, 0u64);
    while n < MAX_CONNECTIONS && Instant::now() < deadline {
        n += 1;
        let t0 = Instant::now();
        let ok = TcpStream::connect_timeout(&to, Duration::from_secs(1)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a linger of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            Ok(())
        });
        if ok.is_err() || t0.elapsed() > Duration::from_millis(500) {
            errors += 1;
        }
    }
    errors
}

/// The round with the least CPU per unit (our threads' view): the machine may be shared, and
/// a neighbour's burst, or a stall of the bed, should not decide the ratio (as bench_l7 keeps
/// the better of its rounds).
fn best(runs: Vec<Run>) -> Run {
    runs.into_iter()
        .min_by(|a, b| a.per_unit()[2].total_cmp(&b.per_unit()[2]))
        .unwrap_or_default()
}

fn tool_version(program: &str) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
#[ignore = "benchmark: cargo xtask bench l4-node"]
fn l4_node_xdp_vs_kube_proxy() {
    if !testbed::require_root() {
        return;
    }
    let object = std::fs::read(testbed::bpf_object_path()).expect("eBPF object");
    let mut modes = vec![Mode::Xdp];
    let ipt = tool_version("iptables");
    let nft = tool_version("nft");
    if ipt.is_some() {
        modes.push(Mode::Iptables);
    } else {
        println!("iptables not installed: kube-proxy iptables mode skipped");
    }
    if nft.is_some() {
        modes.push(Mode::Nftables);
    } else {
        println!("nft not installed: kube-proxy nftables mode skipped");
    }
    modes.push(Mode::Routed);
    // `L4_NODE_ONLY=xdp,routed`: just those modes (profiling one of them).
    if let Ok(only) = std::env::var("L4_NODE_ONLY") {
        modes.retain(|m| only.split(',').any(|o| o == m.short()));
    }
    let mut beds: Vec<Bed> = modes
        .iter()
        .map(|m| Bed::new(*m, &object).unwrap_or_else(|e| panic!("{}: {e:#}", m.name())))
        .collect();
    // Every bed carries traffic before it is timed (neighbours resolved, flows open).
    for b in &beds {
        let to = b.target(L4Protocol::Tcp);
        let errors = b.topo.client.enter(|| tcp_load(to, 0.2));
        assert_eq!(errors, 0, "{}: TCP through the node fails", b.mode.name());
        let before = b.forwarded();
        let to = b.target(L4Protocol::Udp);
        b.topo.client.enter(|| udp_load(to, 0.1));
        assert!(
            b.forwarded() > before,
            "{}: no UDP reached the pods",
            b.mode.name()
        );
    }

    let secs = seconds();
    let mut udp: Vec<Vec<Run>> = vec![Vec::new(); beds.len()];
    let mut tcp: Vec<Vec<Run>> = vec![Vec::new(); beds.len()];
    for _ in 0..rounds() {
        for (i, b) in beds.iter_mut().enumerate() {
            b.maintain();
            let b = &*b;
            let to = b.target(L4Protocol::Udp);
            udp[i].push(measure(b, Bed::forwarded, || udp_load(to, secs)));
            let to = b.target(L4Protocol::Tcp);
            tcp[i].push(measure(b, Bed::accepted, || tcp_load(to, secs)));
            if std::env::var_os("L4_NODE_VERBOSE").is_some() {
                let (u, t) = (udp[i].last().unwrap(), tcp[i].last().unwrap());
                println!(
                    "{}: udp {:.0}/s {:.0} ns, tcp {:.0}/s {:.0} ns",
                    b.mode.name(),
                    u.rate(),
                    u.per_unit()[2],
                    t.rate(),
                    t.per_unit()[2]
                );
            }
        }
    }
    let udp: Vec<Run> = udp.into_iter().map(best).collect();
    let tcp: Vec<Run> = tcp.into_iter().map(best).collect();

    let mut out = BenchOut::new("l4-node");
    let mut text = format!(
        "\nL4 through the node (veth, {} pods, NodePort, externalTrafficPolicy Cluster), {secs} s per run, best of {} rounds; {}; {}\n\
         CPU per unit: machine = all busy jiffies / units; kernel = its system+irq+softirq part; threads = our load generator + pod sinks (sched time, softirq they ran included)\n",
        PODS,
        rounds(),
        ipt.as_deref().unwrap_or("no iptables"),
        nft.as_deref().unwrap_or("no nft"),
    );
    text += &format!(
        "{:<22} {:<4} {:>12} {:>13} {:>12} {:>13} {:>7}\n",
        "mode", "load", "rate /s", "machine ns/u", "kernel ns/u", "threads ns/u", "errors"
    );
    for (what, runs) in [("udp", &udp), ("tcp", &tcp)] {
        for (b, r) in beds.iter().zip(runs.iter()) {
            let [m, k, t] = r.per_unit();
            text += &format!(
                "{:<22} {:<4} {:>12.0} {:>13.0} {:>12.0} {:>13.0} {:>7}\n",
                b.mode.name(),
                what,
                r.rate(),
                m,
                k,
                t,
                r.errors
            );
            let unit = if what == "udp" {
                "packets/s"
            } else {
                "connections/s"
            };
            out.bar(
                &format!("L4 through the node: {what} {unit}"),
                unit,
                b.mode.short(),
                "rate",
                r.rate(),
            );
            out.bar(
                &format!("L4 through the node: {what} CPU ns per unit (our threads)"),
                "ns",
                b.mode.short(),
                "CPU",
                t,
            );
        }
    }
    text += "\nratios, ours / peer: units per CPU-second (\"pps at equal CPU\") by CPU view, and raw rate\n";
    text += &format!(
        "{:<22} {:<4} {:>9} {:>9} {:>9} {:>9}\n",
        "peer", "load", "machine", "kernel", "threads", "rate"
    );
    for (what, runs) in [("udp", &udp), ("tcp", &tcp)] {
        if beds[0].mode != Mode::Xdp {
            break;
        }
        let ours = runs[0];
        for (b, r) in beds.iter().zip(runs.iter()).skip(1) {
            let (o, p) = (ours.per_unit(), r.per_unit());
            let eq = |i: usize| p[i] / o[i].max(1e-9);
            text += &format!(
                "{:<22} {:<4} {:>8.2}x {:>8.2}x {:>8.2}x {:>8.2}x\n",
                b.mode.name(),
                what,
                eq(0),
                eq(1),
                eq(2),
                ours.rate() / r.rate().max(1e-9)
            );
        }
    }
    println!("{text}");
    out.table(&text);
    if let Some(p) = out.write() {
        println!("results: {}", p.display());
    }
}
