//! `cargo xtask demo`: builds everything, makes a throwaway netns test bed (client, node, three
//! pods), runs the daemon on the node's "NIC", sends traffic from the client, shows the live
//! counters, and removes it all again — also when a step fails.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, bail};
use testbed::{NODE_IFACE, Topology, echo::EchoServer, process::KillOnDrop};

use crate::{
    build_ebpf,
    cmd::{self, is_root, note, step},
    provision,
};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many TCP connections the client opens.
    #[arg(long, default_value_t = 30)]
    connections: u32,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run it as root");
    }
    provision::test_tools()?;
    build_ebpf::build()?;
    step("building the daemon");
    cmd::run(cmd::cargo().args(["build", "--package", "ingress-userspace", "--bins"]))?;

    step("creating the test bed: client -- node -- pod0..pod2 (network namespaces)");
    let topo = Topology::new(3)?;
    note(&format!(
        "client {} / {}  ->  node {} / {} ({NODE_IFACE})",
        topo.client_v4, topo.client_v6, topo.node_v4, topo.node_v6
    ));
    for p in &topo.pods {
        note(&format!("{}: {} / {}", p.name, p.v4, p.v6));
    }
    let _node_echo = EchoServer::tcp(
        &topo.node,
        SocketAddr::new(topo.node_v4.into(), 7000),
        "node",
    )?;

    step("starting xdp-ingress on the node's NIC");
    let bin = cmd::root().join("target/debug/xdp-ingress");
    let mut daemon = KillOnDrop::spawn(
        topo.node
            .cmd(bin.to_str().context("non-UTF-8 path")?)
            .args(["run", "--iface", NODE_IFACE, "--stats-interval", "1"]),
    )?;
    wait_attached(&topo, &mut daemon)?;

    step(&format!(
        "client traffic: {} TCP connections, 50 UDP datagrams (IPv4 and IPv6)",
        args.connections
    ));
    let (v4, v6) = (topo.node_v4, topo.node_v6);
    let conns = args.connections.min(1000);
    topo.client.enter(move || -> anyhow::Result<()> {
        for i in 0..conns {
            let mut c = TcpStream::connect_timeout(
                &SocketAddr::new(v4.into(), 7000),
                Duration::from_secs(3),
            )?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            c.write_all(format!("hello {i}").as_bytes())?;
            let mut buf = [0u8; 64];
            let _ = c.read(&mut buf)?;
        }
        let udp = UdpSocket::bind("0.0.0.0:0")?;
        let udp6 = UdpSocket::bind("[::]:0")?;
        for _ in 0..25 {
            udp.send_to(b"demo", (v4, 9999))?;
            udp6.send_to(b"demo", (v6, 9999))?;
        }
        Ok(())
    })?;
    note("waiting for the daemon's next counter line...");
    std::thread::sleep(Duration::from_millis(2500));

    step("stopping the daemon (SIGINT): it detaches cleanly");
    let status = daemon.signal_and_wait(libc_sigint(), Duration::from_secs(10))?;
    note(&format!("daemon exit: {status:?}"));
    drop(topo);
    let left = cmd::output(std::process::Command::new("ip").args(["netns", "list"]))?;
    step(&format!(
        "cleaned up; namespaces left from this demo: {}",
        left.lines().filter(|l| l.starts_with("xi-")).count()
    ));
    Ok(())
}

fn libc_sigint() -> i32 {
    2
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
