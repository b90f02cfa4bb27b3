//! The XDP program on a node's veth in the test bed: the client's traffic is counted, the
//! daemon attaches on start and detaches on SIGTERM, and the program's own log lines reach the
//! daemon's log.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use ingress_common::stats::Stat;
use testbed::{NODE_IFACE, Topology, echo::EchoServer, pins::PinDir, process::KillOnDrop};
use xdp_ingress::dataplane::{AttachMode, XdpAttachment, object};

#[test]
fn client_traffic_to_the_node_is_counted_by_protocol() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(0).expect("topology");
    let bytes = std::fs::read(testbed::bpf_object_path()).expect("eBPF object");
    let attachment = topo
        .node
        .enter(|| XdpAttachment::attach(&bytes, NODE_IFACE, AttachMode::Native))
        .expect("attach");
    assert_eq!(attachment.mode(), AttachMode::Native);

    let echo = EchoServer::tcp(
        &topo.node,
        SocketAddr::new(topo.node_v4.into(), 7000),
        "node",
    )
    .expect("echo");
    let node_v4 = topo.node_v4;
    let node_v6 = topo.node_v6;
    let echo_addr = echo.addr;
    topo.client.enter(move || {
        let udp = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for _ in 0..10 {
            udp.send_to(b"ping", (node_v4, 9999)).expect("send v4");
        }
        let udp6 = UdpSocket::bind("[::]:0").expect("udp6");
        for _ in 0..5 {
            udp6.send_to(b"ping", (node_v6, 9999)).expect("send v6");
        }
        let mut conn =
            TcpStream::connect_timeout(&echo_addr, Duration::from_secs(5)).expect("tcp connect");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        conn.write_all(b"hello").expect("write");
        let mut buf = [0u8; 10];
        conn.read_exact(&mut buf).expect("greeting + echo");
        assert_eq!(&buf, b"node\nhello");
    });

    // Counters are per-CPU and read from the map; give the last frames a moment to land.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let view = attachment.stats().expect("stats");
        let ok = view.get(Stat::Ipv4Udp).packets >= 10
            && view.get(Stat::Ipv6Udp).packets >= 5
            && view.get(Stat::Ipv4Tcp).packets >= 3
            && view.get(Stat::Rx).packets >= 18;
        if ok {
            assert_eq!(view.get(Stat::PassTruncatedIpv4).packets, 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters did not move as expected: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    attachment.detach().expect("detach");
}

fn xdp_attached(topo: &Topology) -> bool {
    let out = topo
        .node
        .run("ip", &["link", "show", "dev", NODE_IFACE])
        .expect("ip link");
    out.contains(" xdp")
}

#[test]
fn daemon_attaches_on_start_and_detaches_on_sigterm() {
    if !testbed::require_root() {
        return;
    }
    assert!(object::embedded().is_some() || testbed::bpf_object_path().exists());
    let topo = Topology::new(0).expect("topology");
    let mut daemon = KillOnDrop::spawn(
        topo.node
            .cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
            .args(["run", "--iface", NODE_IFACE, "--bpf-object"])
            .arg(testbed::bpf_object_path()),
    )
    .expect("spawn xdp-ingress (build it with `cargo build -p ingress-userspace`)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !xdp_attached(&topo) {
        assert!(!daemon.has_exited(), "daemon exited before attaching");
        assert!(Instant::now() < deadline, "XDP never attached");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
        .expect("wait")
        .expect("daemon did not exit on SIGTERM");
    assert!(status.success(), "daemon exit status {status}");
    assert!(!xdp_attached(&topo), "XDP still attached after SIGTERM");
}

#[test]
fn iface_auto_attaches_to_the_default_route_interface() {
    if !testbed::require_root() {
        return;
    }
    // Pods have a default route via their eth0; the node namespace of the bed has none.
    let topo = Topology::new(1).expect("topology");
    let pod = &topo.pods[0].ns;
    let mut daemon = KillOnDrop::spawn(
        pod.cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
            .args(["run", "--iface", "auto", "--bpf-object"])
            .arg(testbed::bpf_object_path()),
    )
    .expect("spawn xdp-ingress");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pod
        .run("ip", &["link", "show", "dev", "eth0"])
        .expect("ip link")
        .contains(" xdp")
    {
        assert!(!daemon.has_exited(), "daemon exited before attaching");
        assert!(
            Instant::now() < deadline,
            "XDP never attached to the default-route interface"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(10))
        .expect("wait");
    assert!(status.is_some_and(|s| s.success()));

    // Without a default route, `auto` is a clear start-up error, not a guess.
    let out = topo
        .node
        .cmd(testbed::xdp_ingress_bin().to_str().expect("utf-8 path"))
        .args(["run", "--iface", "auto", "--bpf-object"])
        .arg(testbed::bpf_object_path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no default route"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends one raw Ethernet frame out of the client's eth0 (AF_PACKET), bypassing the stack.
fn send_raw_frame(topo: &Topology, frame: Vec<u8>) {
    topo.client.enter(move || {
        // SAFETY: plain socket/ioctl-free calls with owned, correctly sized buffers.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let name = std::ffi::CString::new("eth0").expect("name");
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            addr.sll_halen = 6;
            let sent = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            libc::close(fd);
            assert_eq!(
                sent,
                frame.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

#[test]
fn daemon_forwards_the_programs_own_log_lines() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(0).expect("topology");
    let log = tempfile::NamedTempFile::new().expect("log file");
    let pins = PinDir::new("log");
    let mut daemon = KillOnDrop::spawn(
        topo.node
            .cmd(
                testbed::built_xdp_ingress_bin()
                    .to_str()
                    .expect("utf-8 path"),
            )
            .args(["run", "--iface", NODE_IFACE, "--bpf-pin-root"])
            .arg(pins.path())
            .args(["--http-port", "80", "--https-port", "443", "--bpf-object"])
            .arg(testbed::bpf_object_path())
            .env("RUST_LOG", "debug")
            .stderr(log.reopen().expect("log file")),
    )
    .expect("spawn xdp-ingress");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !xdp_attached(&topo) {
        assert!(!daemon.has_exited(), "daemon exited before attaching");
        assert!(Instant::now() < deadline, "XDP never attached");
        std::thread::sleep(Duration::from_millis(50));
    }
    // An IPv4 ethertype with 6 bytes of "header": the program logs it as malformed.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 0, 0, 0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        send_raw_frame(&topo, frame.clone());
        std::thread::sleep(Duration::from_millis(200));
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        if text.contains("malformed frame passed to the kernel") {
            assert!(!text.contains("eBPF logger unavailable"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the program's log line never reached the daemon's log:\n{text}"
        );
    }
    let status = daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(15))
        .expect("wait");
    assert!(status.is_some_and(|s| s.success()));
}
