//! A node and its neighbours in network namespaces:
//!
//! ```text
//!  client ns                node ns                          pod<i> ns
//!  eth0 198.18.0.1/24 ==== eth0 198.18.0.2/24  ("the NIC")
//!       2001:db8::1/64          2001:db8::2/64
//!                          pod<i> 198.19.<i>.1/24  ======== eth0 198.19.<i>.2/24
//!                                 2001:db8:1:<i>::1/64           2001:db8:1:<i>::2/64
//! ```
//!
//! The client's veth plays the far end of a NIC link: it runs a bare XDP_PASS program (so frames
//! the node sends back with XDP_TX are received) and has tx checksum offload off (so its frames
//! carry full checksums, as frames from a real wire do). Pod veths stay as a cluster has them.
//! Names carry the pid and a sequence number; namespaces of dead pids are swept on creation.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, bail};
use aya::programs::{Xdp, XdpMode};
use ingress_common::PROG_XDP_PASS;

use crate::{Netns, bpf_object_path};

/// The node's interface facing the client: where the XDP program under test attaches.
pub const NODE_IFACE: &str = "eth0";

const PREFIX: &str = "xi-";
static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Pod {
    pub ns: Netns,
    pub name: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    /// The node-side end of this pod's veth (in the node namespace).
    pub node_iface: String,
}

pub struct Topology {
    pub client: Netns,
    pub node: Netns,
    pub pods: Vec<Pod>,
    pub client_v4: Ipv4Addr,
    pub node_v4: Ipv4Addr,
    pub client_v6: Ipv6Addr,
    pub node_v6: Ipv6Addr,
    /// Every namespace made so far, removed on drop (also after a failed `new`).
    created: Vec<String>,
    /// Holds the far-end pass program attached while the topology lives.
    _far_end: Option<aya::Ebpf>,
}

impl Topology {
    pub fn new(pods: usize) -> anyhow::Result<Topology> {
        if pods > 200 {
            bail!("at most 200 pods per topology");
        }
        sweep_stale();
        let prefix = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut topo = Topology {
            client: Netns {
                name: format!("{prefix}-client"),
            },
            node: Netns {
                name: format!("{prefix}-node"),
            },
            pods: Vec::new(),
            client_v4: Ipv4Addr::new(198, 18, 0, 1),
            node_v4: Ipv4Addr::new(198, 18, 0, 2),
            client_v6: "2001:db8::1".parse()?,
            node_v6: "2001:db8::2".parse()?,
            created: Vec::new(),
            _far_end: None,
        };
        let (client, node) = (topo.client.clone(), topo.node.clone());
        topo.add_netns(&client)?;
        topo.add_netns(&node)?;

        link(
            &node,
            NODE_IFACE,
            ["198.18.0.2/24", "2001:db8::2/64"],
            &client,
            ["198.18.0.1/24", "2001:db8::1/64"],
        )?;
        client
            .run("ethtool", &["-K", "eth0", "tx", "off"])
            .context("is ethtool installed?")?;
        ip(&[
            "-n",
            &client.name,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            "198.18.0.2",
        ])?;
        ip(&[
            "-n",
            &client.name,
            "-6",
            "route",
            "add",
            "2001:db8:1::/48",
            "via",
            "2001:db8::2",
        ])?;
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            node.run("sysctl", &["-qw", key])?;
        }

        for i in 0..pods {
            let ns = Netns {
                name: format!("{prefix}-pod{i}"),
            };
            topo.add_netns(&ns)?;
            let node_iface = format!("pod{i}");
            link(
                &node,
                &node_iface,
                [
                    &format!("198.19.{i}.1/24"),
                    &format!("2001:db8:1:{i:x}::1/64"),
                ],
                &ns,
                [
                    &format!("198.19.{i}.2/24"),
                    &format!("2001:db8:1:{i:x}::2/64"),
                ],
            )?;
            ip(&[
                "-n",
                &ns.name,
                "route",
                "add",
                "default",
                "via",
                &format!("198.19.{i}.1"),
            ])?;
            ip(&[
                "-n",
                &ns.name,
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("2001:db8:1:{i:x}::1"),
            ])?;
            topo.pods.push(Pod {
                ns,
                name: format!("pod{i}"),
                v4: Ipv4Addr::new(198, 19, i as u8, 2),
                v6: format!("2001:db8:1:{i:x}::2").parse()?,
                node_iface,
            });
        }
        topo._far_end = Some(attach_far_end(&client)?);
        Ok(topo)
    }

    fn add_netns(&mut self, ns: &Netns) -> anyhow::Result<()> {
        ip(&["netns", "add", &ns.name])?;
        self.created.push(ns.name.clone());
        up(ns, "lo")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self._far_end = None;
        // Deleting a namespace deletes its veth ends, and with them their peers.
        for name in self.created.iter().rev() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A veth pair made directly inside the two namespaces (never in the root one): `node_iface`
/// on the node side, `eth0` on the peer side, both up with the given addresses.
fn link(
    node: &Netns,
    node_iface: &str,
    node_cidrs: [&str; 2],
    peer: &Netns,
    peer_cidrs: [&str; 2],
) -> anyhow::Result<()> {
    ip(&[
        "-n", &node.name, "link", "add", node_iface, "type", "veth", "peer", "name", "eth0",
        "netns", &peer.name,
    ])?;
    for cidr in node_cidrs {
        addr(node, cidr, node_iface)?;
    }
    for cidr in peer_cidrs {
        addr(peer, cidr, "eth0")?;
    }
    up(node, node_iface)?;
    up(peer, "eth0")
}

fn addr(ns: &Netns, cidr: &str, dev: &str) -> anyhow::Result<()> {
    // nodad: tests must not wait for IPv6 duplicate address detection.
    let mut args = vec!["-n", &ns.name, "addr", "add", cidr, "dev", dev];
    if cidr.contains(':') {
        args.push("nodad");
    }
    ip(&args)
}

fn up(ns: &Netns, dev: &str) -> anyhow::Result<()> {
    ip(&["-n", &ns.name, "link", "set", dev, "up"])
}

/// Loads the bare pass program and attaches it natively to the client's eth0.
fn attach_far_end(client: &Netns) -> anyhow::Result<aya::Ebpf> {
    let path = bpf_object_path();
    let mut ebpf = aya::Ebpf::load_file(&path)
        .with_context(|| format!("loading {} (run `cargo xtask build-ebpf`)", path.display()))?;
    client.enter(|| -> anyhow::Result<()> {
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_XDP_PASS)
            .context("eBPF object has no xdp_pass program")?
            .try_into()?;
        xdp_ingress::dataplane::loader::load_program(|| prog.load())?;
        prog.attach("eth0", XdpMode::Driver)
            .context("attaching xdp_pass to the client veth")?;
        Ok(())
    })?;
    Ok(ebpf)
}

/// Removes namespaces left by test processes that no longer exist (killed before cleanup).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .status();
        }
    }
}
