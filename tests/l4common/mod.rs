//! Helpers shared by the L4 tests and benchmark: L4 services as the snapshot carries them,
//! TCP/UDP frames, the checksum-checking frame parser, BPF_PROG_TEST_RUN with an XDP or skb
//! context, and node-namespace set-up (interface index, static neighbours, loaded programs).
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp};
use etherparse::{NetSlice, PacketBuilder, PacketBuilderStep, SlicedPacket, TransportSlice};
use testbed::{NODE_IFACE, Topology};
use xdp_ingress::dataplane::loader::load_program;
use xdp_ingress::model::{
    Endpoint, EndpointState, Frontend, L4Protocol, L4Service, ObjectKind, ObjectRef,
};

/// An endpoint of weight 1 with no node, zone or target.
pub fn endpoint(addr: SocketAddr, state: EndpointState) -> Endpoint {
    Endpoint {
        addr: addr.into(),
        state,
        weight: 1,
        node_name: None,
        zone: None,
        target: None,
    }
}

/// Active endpoints at `addrs`.
pub fn active(addrs: &[SocketAddr]) -> Vec<Endpoint> {
    addrs
        .iter()
        .map(|a| endpoint(*a, EndpointState::Active))
        .collect()
}

/// Service `default/name` on NodePort `port`, id `default/{name}:{port}`, without affinity,
/// source ranges or local-proxy preference.
pub fn service(name: &str, proto: L4Protocol, port: u16, endpoints: Vec<Endpoint>) -> L4Service {
    L4Service {
        id: format!("default/{name}:{port}"),
        service: ObjectRef {
            kind: ObjectKind::Service,
            namespace: "default".into(),
            name: name.into(),
        },
        protocol: proto,
        frontends: vec![Frontend::NodePort(port)],
        endpoints,
        client_ip_affinity: None,
        source_ranges: vec![],
        local_proxy: false,
        external_traffic_local: false,
        syn_rate_limit: None,
        health_check: None,
        reject_weight: 0,
    }
}

/// Ethernet, then IPv4 or IPv6 (as `src` and `dst` are) with TTL / hop limit 64.
fn ip_frame(
    macs: [[u8; 6]; 2],
    src: IpAddr,
    dst: IpAddr,
) -> PacketBuilderStep<etherparse::IpHeaders> {
    let b = PacketBuilder::ethernet2(macs[0], macs[1]);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// A TCP segment (window 65535, sequence `seq`) from `src` to `dst` in an Ethernet frame
/// from `macs[0]` to `macs[1]`: a SYN, or else an ACK of 1.
pub fn tcp_frame(
    macs: [[u8; 6]; 2],
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let flags = if syn { TCP_SYN } else { TCP_ACK };
    tcp_segment(macs, src, dst, seq, flags, payload)
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment like [`tcp_frame`] with the flags `flags` (`TCP_*` bits; ACK acknowledges 1).
pub fn tcp_segment(
    macs: [[u8; 6]; 2],
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ip_frame(macs, src.ip(), dst.ip()).tcp(src.port(), dst.port(), seq, 65535);
    if flags & TCP_SYN != 0 {
        b = b.syn();
    }
    if flags & TCP_ACK != 0 {
        b = b.ack(1);
    }
    if flags & TCP_FIN != 0 {
        b = b.fin();
    }
    if flags & TCP_RST != 0 {
        b = b.rst();
    }
    if flags & TCP_PSH != 0 {
        b = b.psh();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// A UDP datagram from `src` to `dst` in an Ethernet frame from `macs[0]` to `macs[1]`.
pub fn udp_frame(macs: [[u8; 6]; 2], src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    ip_frame(macs, src.ip(), dst.ip())
        .udp(src.port(), dst.port())
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Addresses and ports of a frame, after checking every checksum it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The UDP checksum; `None` for TCP.
    pub udp_checksum: Option<u16>,
}

/// Parses an Ethernet frame carrying TCP or UDP over IPv4 or IPv6, asserting that the IPv4
/// header checksum and the TCP/UDP checksum (but a zero UDP/IPv4 one, "none") are right.
pub fn parse_checked(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).expect("parse");
    let payload = match &p.transport {
        Some(TransportSlice::Tcp(t)) => t.payload().to_vec(),
        Some(TransportSlice::Udp(u)) => u.payload().to_vec(),
        other => panic!("unexpected transport {other:?}"),
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "IPv4 header checksum"
            );
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => assert_eq!(
                    t.checksum(),
                    t.to_header().calc_checksum_ipv4(&h, &payload).unwrap(),
                    "TCP checksum"
                ),
                Some(TransportSlice::Udp(u)) if u.checksum() != 0 => assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv4(&h, &payload).unwrap(),
                    "UDP checksum"
                ),
                _ => {}
            }
            (h.source.into(), h.destination.into())
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header().to_header();
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => assert_eq!(
                    t.checksum(),
                    t.to_header().calc_checksum_ipv6(&h, &payload).unwrap(),
                    "TCP/IPv6 checksum"
                ),
                Some(TransportSlice::Udp(u)) => assert_eq!(
                    u.checksum(),
                    u.to_header().calc_checksum_ipv6(&h, &payload).unwrap(),
                    "UDP/IPv6 checksum"
                ),
                _ => {}
            }
            (h.source.into(), h.destination.into())
        }
        other => panic!("unexpected net {other:?}"),
    };
    let (sport, dport, udp_checksum) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port(), None),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), Some(u.checksum())),
        _ => unreachable!(),
    };
    Seen {
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        udp_checksum,
    }
}

/// A `struct xdp_md` for a frame of `len` bytes (data 0, data_end `len`) received on
/// `ingress_ifindex`. Fields: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
/// egress_ifindex.
pub fn xdp_md(len: usize, ingress_ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

/// A `struct __sk_buff` with ingress_ifindex (at 36) and ifindex (at 40) both `ifindex`, the
/// only fields set.
pub fn sk_buff(ifindex: u32) -> [u8; 192] {
    let mut ctx = [0u8; 192];
    ctx[36..40].copy_from_slice(&ifindex.to_ne_bytes());
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// Runs `prog` `repeat` times on `frame` with context `ctx` (BPF_PROG_TEST_RUN): the kernel's
/// result and the output frame of the last run.
pub fn test_run<P>(prog: &P, frame: &[u8], ctx: &[u8], repeat: u32) -> (TestRunResult, Vec<u8>)
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(ctx),
            repeat,
            ..TestRunOptions::new()
        })
        .unwrap_or_else(|e| {
            let kind = std::any::type_name::<P>().rsplit("::").next();
            panic!("{} test run: {e:?}", kind.unwrap_or("program"))
        });
    out.truncate(r.data_size_out as usize);
    (r, out)
}

/// The index of `dev` in the node namespace.
pub fn ifindex(topo: &Topology, dev: &str) -> u32 {
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: valid NUL-terminated name; runs inside the node namespace.
    topo.node
        .enter(|| unsafe { libc::if_nametoindex(name.as_ptr()) })
}

/// A permanent neighbour entry for `ip` at `mac` on the node's NIC, so FIB lookups toward it
/// find a next hop.
pub fn static_neigh(topo: &Topology, ip: IpAddr, mac: [u8; 6]) {
    let v6 = ip.is_ipv6();
    let ip = ip.to_string();
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut args = vec![
        "neigh",
        "replace",
        &ip,
        "lladdr",
        &mac,
        "dev",
        NODE_IFACE,
        "nud",
        "permanent",
    ];
    if v6 {
        args.insert(0, "-6");
    }
    topo.node.run("ip", &args).unwrap();
}

/// The test object with the `xdp` and `tc` programs named loaded into the kernel.
pub fn load(xdp: &[&str], tc: &[&str]) -> aya::Ebpf {
    load_sized(xdp, tc, &[])
}

/// [`load`] with the maps named in `sizes` made that many entries big.
pub fn load_sized(xdp: &[&str], tc: &[&str], sizes: &[(&str, u32)]) -> aya::Ebpf {
    let mut loader = aya::EbpfLoader::new();
    for (name, max) in sizes {
        loader.map_max_entries(name, *max);
    }
    let mut ebpf = loader.load_file(testbed::bpf_object_path()).unwrap();
    for name in xdp {
        let p: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
        load_program(|| p.load()).unwrap();
    }
    for name in tc {
        let p: &mut SchedClassifier = ebpf.program_mut(name).unwrap().try_into().unwrap();
        load_program(|| p.load()).unwrap();
    }
    ebpf
}
