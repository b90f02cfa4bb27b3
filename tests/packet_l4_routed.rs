//! The L4 paths that need the kernel's FIB, through BPF_PROG_TEST_RUN inside a test-bed node
//! namespace: SNAT to a remote endpoint with XDP_TX, its reply reverse-NATed in XDP, and a local
//! pod's reply reverse-NATed by the tc program, ICMP errors about SNAT flows translated both
//! ways. Exact bytes, checksums by etherparse.

mod l4common;

use std::net::{IpAddr, SocketAddr};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{SchedClassifier, Xdp},
};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use ingress_common::{
    PROG_XDP_INGRESS,
    l4::{
        CtEntry, FlowKey, MAP_CONNTRACK, MAP_REVNAT, PROG_TC_NIC_EGRESS, PROG_TC_REPLY, RevNatEntry,
    },
    stats::{Counter, MAP_STATS, Stat},
};
use l4common::{
    TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, endpoint, ifindex, load, load_sized, parse_checked,
    service, sk_buff, static_neigh, tcp_frame, tcp_segment, test_run, udp_frame, xdp_md,
};
use testbed::{
    NODE_IFACE, Topology,
    xdp_run::{XDP_DROP, XDP_PASS, XDP_TX},
};
use xdp_ingress::{
    dataplane::{L4Options, L4Sync, flows, stats as dstats},
    model::{Endpoint, EndpointState, L4Protocol, L4Service, Snapshot},
};

const TC_ACT_REDIRECT: u32 = 7;
const OUTSIDE: [u8; 4] = [198, 18, 0, 7];
const OUTSIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 7];
const REMOTE: [u8; 4] = [198, 18, 0, 9];
const REMOTE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const NODE: [u8; 4] = [198, 18, 0, 2];

fn mac(topo: &Topology, dev: &str) -> [u8; 6] {
    let s = topo
        .node
        .run("cat", &[&format!("/sys/class/net/{dev}/address")])
        .unwrap();
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// For the SNAT tests: permanent neighbours on the NIC for the client `outside` (at
/// [`OUTSIDE_MAC`]) and the `remote` endpoint (at [`REMOTE_MAC`]); the NIC's index and MAC,
/// and the object with the XDP program loaded.
fn snat_node(topo: &Topology, outside: IpAddr, remote: IpAddr) -> (u32, [u8; 6], aya::Ebpf) {
    static_neigh(topo, outside, OUTSIDE_MAC);
    static_neigh(topo, remote, REMOTE_MAC);
    let nic = ifindex(topo, NODE_IFACE);
    let nic_mac = mac(topo, NODE_IFACE);
    (nic, nic_mac, load(&[PROG_XDP_INGRESS], &[]))
}

/// TCP service `id` on NodePort `port` with the one endpoint `ep` on node `node`.
fn svc(id: &str, port: u16, ep: SocketAddr, node: Option<&str>) -> L4Service {
    let ep = Endpoint {
        node_name: node.map(Into::into),
        ..endpoint(ep, EndpointState::Active)
    };
    L4Service {
        id: id.into(),
        ..service(id, L4Protocol::Tcp, port, vec![ep])
    }
}

/// An ACK with a 7-byte payload.
fn tcp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
) -> Vec<u8> {
    tcp_flags(src_mac, dst_mac, src, sport, dst, dport, TCP_ACK)
}

/// [`tcp`] with the flags `flags` (`l4common::TCP_*`).
fn tcp_flags(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let (src, dst) = ((src, sport).into(), (dst, dport).into());
    tcp_segment([src_mac, dst_mac], src, dst, 7, flags, b"payload")
}

/// The packets counted under `s`, summed over CPUs.
fn stat(ebpf: &aya::Ebpf, s: Stat) -> u64 {
    let a: PerCpuArray<&MapData, Counter> =
        PerCpuArray::try_from(ebpf.map(MAP_STATS).unwrap()).unwrap();
    dstats::read(&a).unwrap().get(s).packets
}

/// Entries in the hash map `name` (keys of `K`, values of `V`).
fn entries<K: aya::Pod, V: aya::Pod>(ebpf: &aya::Ebpf, name: &str) -> usize {
    let m: BpfHashMap<&MapData, K, V> = BpfHashMap::try_from(ebpf.map(name).unwrap()).unwrap();
    m.keys().count()
}

/// (src, dst, eth src, eth dst) of a TCP/IPv4 frame, after checking its checksums.
fn checked(frame: &[u8]) -> (SocketAddr, SocketAddr, [u8; 6], [u8; 6]) {
    let seen = parse_checked(frame);
    assert!(seen.src.is_ipv4(), "not IPv4: {seen:?}");
    assert_eq!(seen.udp_checksum, None, "not TCP: {seen:?}");
    let eth_src: [u8; 6] = frame[6..12].try_into().unwrap();
    let eth_dst: [u8; 6] = frame[0..6].try_into().unwrap();
    (seen.src, seen.dst, eth_src, eth_dst)
}

fn xdp_run(ebpf: &aya::Ebpf, frame: &[u8], ingress_ifindex: u32) -> (u32, Vec<u8>) {
    let prog: &Xdp = ebpf.program(PROG_XDP_INGRESS).unwrap().try_into().unwrap();
    let (r, out) = test_run(prog, frame, &xdp_md(frame.len(), ingress_ifindex), 1);
    (r.return_value, out)
}

fn tc_run(ebpf: &aya::Ebpf, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
    tc_run_prog(ebpf, PROG_TC_REPLY, frame, ifindex)
}

fn tc_run_prog(ebpf: &aya::Ebpf, name: &str, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
    let prog: &SchedClassifier = ebpf.program(name).unwrap().try_into().unwrap();
    let (r, out) = test_run(prog, frame, &sk_buff(ifindex), 1);
    (r.return_value, out)
}

#[test]
fn remote_endpoint_gets_snat_and_xdp_tx_and_its_reply_is_reverse_nated() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, OUTSIDE.into(), REMOTE.into());
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    let backend = SocketAddr::new(IpAddr::from(REMOTE), 9000);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("remote", 30090, backend, Some("other-node"))],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();

    let f = tcp_flags(OUTSIDE_MAC, nic_mac, OUTSIDE, 40000, NODE, 30090, TCP_SYN);
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &f, nic));
    assert_eq!(action, XDP_TX);
    let (src, dst, esrc, edst) = checked(&out);
    assert_eq!(dst, backend);
    assert_eq!(src.ip(), IpAddr::from(NODE));
    assert!((61000..=65000).contains(&src.port()), "{src}");
    assert_eq!((esrc, edst), (nic_mac, REMOTE_MAC));
    // One hop taken off, as a router does; ids and payload unchanged.
    assert_eq!(out[14 + 8], f[14 + 8] - 1);
    assert_eq!(out[14 + 4..14 + 6], f[14 + 4..14 + 6]);
    assert_eq!(&out[out.len() - 7..], b"payload");

    // The endpoint's reply to the SNAT port goes back to the client from the frontend.
    let reply = tcp(REMOTE_MAC, nic_mac, REMOTE, 9000, NODE, src.port());
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &reply, nic));
    assert_eq!(action, XDP_TX);
    let (rsrc, rdst, esrc, edst) = checked(&out);
    assert_eq!(rsrc, SocketAddr::new(IpAddr::from(NODE), 30090));
    assert_eq!(rdst, SocketAddr::new(IpAddr::from(OUTSIDE), 40000));
    assert_eq!((esrc, edst), (nic_mac, OUTSIDE_MAC));
}

#[test]
fn an_ack_flood_reserves_no_snat_port_and_a_syn_still_gets_one() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, OUTSIDE.into(), REMOTE.into());
    // 20 SNAT ports: an ACK flood that reserved ports would take them all.
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        snat_ports: (40000, 40019),
        ..L4Options::default()
    });
    let backend = SocketAddr::new(IpAddr::from(REMOTE), 9000);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("remote", 30090, backend, Some("other-node"))],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();

    topo.node.enter(|| {
        // 300 ACKs (and some FINs) from 300 source ports: to the kernel untouched, no state.
        for port in 0..300u16 {
            let flags = if port % 10 == 9 {
                TCP_FIN | TCP_ACK
            } else {
                TCP_ACK
            };
            let f = tcp_flags(
                OUTSIDE_MAC,
                nic_mac,
                OUTSIDE,
                20000 + port,
                NODE,
                30090,
                flags,
            );
            let (action, out) = xdp_run(&ebpf, &f, nic);
            assert_eq!((action, &out), (XDP_PASS, &f), "port {}", 20000 + port);
        }
    });
    assert_eq!(stat(&ebpf, Stat::PassNoFlow), 300);
    assert_eq!(stat(&ebpf, Stat::PassSnatExhausted), 0);
    assert_eq!(entries::<FlowKey, CtEntry>(&ebpf, MAP_CONNTRACK), 0);
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 0);

    // A SYN gets a SNAT port, and the ACK after it goes out through the same one.
    let syn = tcp_flags(OUTSIDE_MAC, nic_mac, OUTSIDE, 20000, NODE, 30090, TCP_SYN);
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &syn, nic));
    assert_eq!(action, XDP_TX);
    let (src, dst, _, _) = checked(&out);
    assert_eq!(dst, backend);
    assert!((40000..=40019).contains(&src.port()), "{src}");
    let ack = tcp(OUTSIDE_MAC, nic_mac, OUTSIDE, 20000, NODE, 30090);
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &ack, nic));
    assert_eq!(action, XDP_TX);
    assert_eq!(checked(&out).0, src);
    assert_eq!(entries::<FlowKey, CtEntry>(&ebpf, MAP_CONNTRACK), 1);
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 1);
}

#[test]
fn snat_ports_of_closed_or_idle_flows_are_reused_after_their_timeout_and_live_ones_never() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, OUTSIDE.into(), REMOTE.into());
    // 20 SNAT ports; closed TCP flows and idle UDP flows time out at once (the TCP idle
    // timeout stays an hour).
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        snat_ports: (40000, 40019),
        tcp_closing_timeout: std::time::Duration::ZERO,
        udp_timeout: std::time::Duration::ZERO,
        ..L4Options::default()
    });
    let tcp_be = SocketAddr::new(IpAddr::from(REMOTE), 9000);
    let udp_be = SocketAddr::new(IpAddr::from(REMOTE), 9001);
    let snap = Snapshot {
        version: 1,
        l4: vec![
            svc("remote", 30090, tcp_be, Some("other-node")),
            L4Service {
                protocol: L4Protocol::Udp,
                ..svc("remote-udp", 30091, udp_be, Some("other-node"))
            },
        ],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();
    let client = |sport, flags| tcp_flags(OUTSIDE_MAC, nic_mac, OUTSIDE, sport, NODE, 30090, flags);
    let backend = |port, flags| tcp_flags(REMOTE_MAC, nic_mac, REMOTE, 9000, NODE, port, flags);
    // Sends `f`, which must go out (XDP_TX); its (source, destination).
    let tx = |f: &[u8]| {
        let (action, out) = topo.node.enter(|| xdp_run(&ebpf, f, nic));
        assert_eq!(action, XDP_TX, "{:?}", parse_checked(f));
        let (src, dst, _, _) = checked(&out);
        (src, dst)
    };

    // One connection stays open throughout: its port is never handed out.
    let (held, _) = tx(&client(29999, TCP_SYN));
    tx(&backend(held.port(), TCP_SYN | TCP_ACK));
    tx(&client(29999, TCP_ACK));
    // 40 short connections one after the other, closed by FINs or by the endpoint's RST.
    for i in 0..40u16 {
        let sport = 30000 + i;
        let (src, dst) = tx(&client(sport, TCP_SYN));
        assert_eq!(dst, tcp_be);
        assert_ne!(src, held, "connection {i} got the open connection's port");
        let to_client = tx(&backend(src.port(), TCP_SYN | TCP_ACK));
        assert_eq!(
            to_client,
            (
                SocketAddr::new(IpAddr::from(NODE), 30090),
                SocketAddr::new(IpAddr::from(OUTSIDE), sport)
            )
        );
        assert_eq!(tx(&client(sport, TCP_ACK)).0, src);
        // (With a zero closing timeout the flow ends with the second FIN.)
        if i % 2 == 0 {
            tx(&client(sport, TCP_FIN | TCP_ACK));
            tx(&backend(src.port(), TCP_FIN | TCP_ACK));
        } else {
            tx(&backend(src.port(), TCP_RST));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        // Closed and timed out: a late segment of it is the kernel's, not a port's new owner.
        let late = client(sport, TCP_ACK);
        let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &late, nic));
        assert_eq!((action, &out), (XDP_PASS, &late), "connection {i}");
    }
    assert_eq!(stat(&ebpf, Stat::PassSnatExhausted), 0);
    // The open connection still goes out through its own port.
    assert_eq!(tx(&client(29999, TCP_ACK)).0, held);

    // UDP: 40 idle flows one after the other, each gets a port.
    for i in 0..40u16 {
        let f = udp_frame(
            [OUTSIDE_MAC, nic_mac],
            (OUTSIDE, 31000 + i).into(),
            (NODE, 30091).into(),
            b"q",
        );
        let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &f, nic));
        assert_eq!(action, XDP_TX, "datagram {i}");
        assert_eq!(parse_checked(&out).dst, udp_be);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(stat(&ebpf, Stat::PassSnatExhausted), 0);
}

#[test]
fn a_local_pods_fin_or_rst_closes_its_flow_as_the_clients_does() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let nic = ifindex(&topo, NODE_IFACE);
    let mut ebpf = load(&[PROG_XDP_INGRESS], &[PROG_TC_NIC_EGRESS]);
    let pod = SocketAddr::new(IpAddr::V4(topo.pods[0].v4), 8080);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("local", 30080, pod, None)],
        ..Default::default()
    };
    L4Sync::new(L4Options {
        tcp_closing_timeout: std::time::Duration::ZERO,
        ..L4Options::default()
    })
    .apply(&mut ebpf, &snap)
    .unwrap();
    let client = topo.client_v4.octets();
    let pod_mac = [0x02, 0, 0, 0, 1, 2];
    for (sport, flags) in [(40000, TCP_RST), (40001, TCP_FIN | TCP_ACK)] {
        let syn = tcp_flags(
            OUTSIDE_MAC,
            OUTSIDE_MAC,
            client,
            sport,
            NODE,
            30080,
            TCP_SYN,
        );
        let (_, out) = topo.node.enter(|| xdp_run(&ebpf, &syn, nic));
        assert_eq!(checked(&out).1, pod);
        // The pod ends the connection; its reply is reverse-NATed at the NIC's egress...
        let end = tcp_flags(
            pod_mac,
            pod_mac,
            topo.pods[0].v4.octets(),
            8080,
            client,
            sport,
            flags,
        );
        let (action, out) = topo
            .node
            .enter(|| tc_run_prog(&ebpf, PROG_TC_NIC_EGRESS, &end, nic));
        assert_eq!(action, 0);
        assert_eq!(checked(&out).0, SocketAddr::new(IpAddr::from(NODE), 30080));
        // ...and the flow took the (zero) closing timeout: the client's next segment is the
        // kernel's.
        std::thread::sleep(std::time::Duration::from_millis(1));
        let ack = tcp_flags(
            OUTSIDE_MAC,
            OUTSIDE_MAC,
            client,
            sport,
            NODE,
            30080,
            TCP_ACK,
        );
        let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &ack, nic));
        assert_eq!((action, &out), (XDP_PASS, &ack), "after {flags:#x}");
    }
}

#[test]
fn a_full_flow_table_refuses_new_flows_and_every_established_one_keeps_working() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let nic = ifindex(&topo, NODE_IFACE);
    // Room for 32 flows; 96 clients connect at once.
    let sizes = [(MAP_CONNTRACK, 32), (MAP_REVNAT, 32)];
    let mut ebpf = load_sized(&[PROG_XDP_INGRESS], &[PROG_TC_NIC_EGRESS], &sizes);
    let pod = SocketAddr::new(IpAddr::V4(topo.pods[0].v4), 8080);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("local", 30080, pod, None)],
        ..Default::default()
    };
    L4Sync::new(L4Options {
        tcp_closing_timeout: std::time::Duration::ZERO,
        ..L4Options::default()
    })
    .apply(&mut ebpf, &snap)
    .unwrap();
    let client = topo.client_v4.octets();
    let seg = |sport, flags| tcp_flags(OUTSIDE_MAC, OUTSIDE_MAC, client, sport, NODE, 30080, flags);
    let pod_mac = [0x02, 0, 0, 0, 1, 2];
    let reply = |sport| {
        tcp(
            pod_mac,
            pod_mac,
            topo.pods[0].v4.octets(),
            8080,
            client,
            sport,
        )
    };
    let xdp = |f: &[u8]| topo.node.enter(|| xdp_run(&ebpf, f, nic));
    let tc = |f: &[u8]| {
        topo.node
            .enter(|| tc_run_prog(&ebpf, PROG_TC_NIC_EGRESS, f, nic))
    };

    // The first 32 SYNs open flows; the other 64 are refused (dropped: the client retries),
    // counted, and evict nothing.
    for sport in 40000..40096u16 {
        let (action, out) = xdp(&seg(sport, TCP_SYN));
        if sport < 40032 {
            assert_eq!((action, checked(&out).1), (XDP_PASS, pod), "{sport}");
        } else {
            assert_eq!(action, XDP_DROP, "{sport}");
        }
    }
    assert_eq!(stat(&ebpf, Stat::DropFlowTableFull), 64);
    // Every established flow keeps working both ways: its segments reach the pod and every
    // reply leaves from the frontend, never from the pod's address.
    for sport in 40000..40032u16 {
        let (action, out) = xdp(&seg(sport, TCP_ACK));
        assert_eq!((action, checked(&out).1), (XDP_PASS, pod), "{sport}");
        let (action, out) = tc(&reply(sport));
        assert_eq!(action, 0);
        assert_eq!(
            checked(&out).0,
            SocketAddr::new(IpAddr::from(NODE), 30080),
            "reply to {sport}"
        );
    }
    // The refused ones never became flows.
    for sport in 40032..40096u16 {
        let ack = seg(sport, TCP_ACK);
        assert_eq!(xdp(&ack), (XDP_PASS, ack.clone()), "{sport}");
    }
    assert_eq!(entries::<FlowKey, CtEntry>(&ebpf, MAP_CONNTRACK), 32);
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 32);

    // A flow that ends gives its room back: its next segment finds it over (the kernel's),
    // both of its entries go, and a refused client's retried SYN gets in.
    xdp(&seg(40000, TCP_RST | TCP_ACK));
    std::thread::sleep(std::time::Duration::from_millis(1));
    let late = seg(40000, TCP_ACK);
    assert_eq!(xdp(&late), (XDP_PASS, late.clone()));
    assert_eq!(entries::<FlowKey, CtEntry>(&ebpf, MAP_CONNTRACK), 31);
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 31);
    let (action, out) = xdp(&seg(40032, TCP_SYN));
    assert_eq!((action, checked(&out).1), (XDP_PASS, pod));
}

#[test]
fn local_pod_reply_is_reverse_nated_in_tc_at_pod_ingress_or_nic_egress() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let pod_if = ifindex(&topo, &topo.pods[0].node_iface);
    let mut ebpf = load(&[PROG_XDP_INGRESS], &[PROG_TC_REPLY, PROG_TC_NIC_EGRESS]);
    let pod = SocketAddr::new(IpAddr::V4(topo.pods[0].v4), 8080);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("local", 30080, pod, None)],
        ..Default::default()
    };
    let mut sync = L4Sync::new(L4Options::default());
    sync.apply(&mut ebpf, &snap).unwrap();
    let client = topo.client_v4.octets();

    // The client's SYN creates the flow (DNAT, then the kernel would route it to the pod).
    let f = tcp_flags(
        OUTSIDE_MAC,
        OUTSIDE_MAC,
        client,
        40000,
        NODE,
        30080,
        TCP_SYN,
    );
    let nic = ifindex(&topo, NODE_IFACE);
    let (_, out) = topo.node.enter(|| xdp_run(&ebpf, &f, nic));
    assert_eq!(checked(&out).1, pod);

    // The pod's reply, as it enters the node on the pod's veth.
    let pod_mac = [0x02, 0, 0, 0, 1, 2];
    let reply = tcp(
        pod_mac,
        pod_mac,
        topo.pods[0].v4.octets(),
        8080,
        client,
        40000,
    );
    let (action, out) = topo.node.enter(|| tc_run(&ebpf, &reply, pod_if));
    assert_eq!(action, TC_ACT_REDIRECT);
    let (src, dst, _, _) = checked(&out);
    assert_eq!(src, SocketAddr::new(IpAddr::from(NODE), 30080));
    assert_eq!(dst, SocketAddr::new(IpAddr::from(client), 40000));
    // Only addresses, ports and checksums changed.
    let mut expect = reply.clone();
    expect[26..30].copy_from_slice(&NODE);
    expect[34..36].copy_from_slice(&30080u16.to_be_bytes());
    expect[24..26].copy_from_slice(&out[24..26]);
    expect[50..52].copy_from_slice(&out[50..52]);
    assert_eq!(out, expect);

    // The default attach point, the NIC's egress after the kernel routed the reply: the same
    // bytes, and the packet simply continues (TC_ACT_OK).
    let (action, out_egress) = topo
        .node
        .enter(|| tc_run_prog(&ebpf, PROG_TC_NIC_EGRESS, &reply, nic));
    assert_eq!(action, 0);
    assert_eq!(out_egress, out);
    // Already reverse-NATed (e.g. by the pod-ingress program): left alone.
    let (action, again) = topo
        .node
        .enter(|| tc_run_prog(&ebpf, PROG_TC_NIC_EGRESS, &out, nic));
    assert_eq!((action, &again), (0, &out));
}

#[test]
fn remote_endpoint_over_ipv6_gets_snat_and_xdp_tx_with_pseudo_header_checksums() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(0).expect("topology");
    let outside: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let remote: std::net::Ipv6Addr = "2001:db8::9".parse().unwrap();
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, outside.into(), remote.into());
    let mut sync = L4Sync::new(L4Options {
        node_v6: Some(topo.node_v6),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    let backend = SocketAddr::new(IpAddr::V6(remote), 9000);
    let snap = Snapshot {
        version: 1,
        l4: vec![L4Service {
            protocol: L4Protocol::Udp,
            ..svc("remote6", 30091, backend, Some("other-node"))
        }],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();
    let frame6 =
        |src: std::net::Ipv6Addr, sport: u16, dst: std::net::Ipv6Addr, dport: u16, smac, dmac| {
            let (src, dst) = ((src, sport).into(), (dst, dport).into());
            udp_frame([smac, dmac], src, dst, b"payload")
        };
    // (src, dst, hop limit) of a UDP/IPv6 frame, after checking its checksum.
    let check6 = |frame: &[u8]| -> (SocketAddr, SocketAddr, u8) {
        let seen = parse_checked(frame);
        assert!(seen.src.is_ipv6(), "not IPv6: {seen:?}");
        assert!(seen.udp_checksum.is_some(), "not UDP: {seen:?}");
        (seen.src, seen.dst, frame[14 + 7])
    };
    let f = frame6(outside, 40000, topo.node_v6, 30091, OUTSIDE_MAC, nic_mac);
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &f, nic));
    assert_eq!(action, XDP_TX);
    let (src, dst, hops) = check6(&out);
    assert_eq!(dst, backend);
    assert_eq!(src.ip(), IpAddr::V6(topo.node_v6));
    assert_eq!(hops, 63);
    let reply = frame6(remote, 9000, topo.node_v6, src.port(), REMOTE_MAC, nic_mac);
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &reply, nic));
    assert_eq!(action, XDP_TX);
    let (rsrc, rdst, _) = check6(&out);
    assert_eq!(rsrc, SocketAddr::new(IpAddr::V6(topo.node_v6), 30091));
    assert_eq!(rdst, SocketAddr::new(IpAddr::V6(outside), 40000));
    assert_eq!(&out[0..12], &[OUTSIDE_MAC, nic_mac].concat()[..]);
}

#[test]
fn hostile_frames_to_service_ports_never_abort_or_half_rewrite() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let nic = ifindex(&topo, NODE_IFACE);
    let mut ebpf = load(&[PROG_XDP_INGRESS], &[]);
    let pod = SocketAddr::new(IpAddr::V4(topo.pods[0].v4), 8080);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("web", 30080, pod, None)],
        ..Default::default()
    };
    L4Sync::new(L4Options::default())
        .apply(&mut ebpf, &snap)
        .unwrap();
    // A deterministic xorshift: the same "random" frames every run.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // A SYN, so that frames the flips leave intact open flows and get rewritten.
    let base = tcp_flags(
        OUTSIDE_MAC,
        OUTSIDE_MAC,
        OUTSIDE,
        40000,
        NODE,
        30080,
        TCP_SYN,
    );
    topo.node.enter(|| {
        for i in 0..5000 {
            let mut f = base.clone();
            // Flip a few bytes anywhere past the Ethernet addresses, and sometimes truncate.
            for _ in 0..(1 + next() % 4) {
                let at = 12 + (next() as usize % (f.len() - 12));
                f[at] = next() as u8;
            }
            if i % 3 == 0 {
                let keep = 14 + next() as usize % (f.len() - 14);
                f.truncate(keep);
            }
            let (action, out) = xdp_run(&ebpf, &f, nic);
            assert!(
                action == 1 || action == 2 || action == 3,
                "action {action} for {f:02x?}"
            );
            // Passed frames are either untouched or a complete DNAT whose checksums are as
            // valid as they were (an incremental update keeps a bad checksum bad).
            if action == 2 && out != f {
                let p = SlicedPacket::from_ethernet(&out).expect("a rewritten frame parses");
                let q = SlicedPacket::from_ethernet(&f).expect("its input parsed too");
                if let (Some(NetSlice::Ipv4(ip)), Some(NetSlice::Ipv4(ip_in))) = (&p.net, &q.net) {
                    let h = ip.header().to_header();
                    let h_in = ip_in.header().to_header();
                    assert_eq!(h.destination, topo.pods[0].v4.octets());
                    assert_eq!(
                        h.header_checksum == h.calc_header_checksum(),
                        h_in.header_checksum == h_in.calc_header_checksum()
                    );
                }
                if let Some(TransportSlice::Tcp(t)) = &p.transport {
                    assert_eq!(t.destination_port(), 8080);
                }
            }
        }
    });
}

/// `ip` (an IPv4 or IPv6 packet) with its TTL / hop limit set to `hops`, IPv4 header checksum
/// recomputed by etherparse: how a packet looks after one router.
fn with_hops(ip: &[u8], hops: u8) -> Vec<u8> {
    let mut v = ip.to_vec();
    if v[0] >> 4 == 4 {
        let mut h = etherparse::Ipv4HeaderSlice::from_slice(&v)
            .unwrap()
            .to_header();
        h.time_to_live = hops;
        h.header_checksum = h.calc_header_checksum();
        v[..20].copy_from_slice(&h.to_bytes());
    } else {
        v[7] = hops;
    }
    v
}

/// An ICMP error frame from `src` to `dst` quoting `quoted`, TTL/hop limit `hops`, checksums
/// by etherparse.
fn icmp_error(
    macs: [[u8; 6]; 2],
    src: IpAddr,
    dst: IpAddr,
    hops: u8,
    kind: &IcmpKind,
    quoted: &[u8],
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(macs[0], macs[1]);
    let mut v = Vec::new();
    match (src, dst, kind) {
        (IpAddr::V4(s), IpAddr::V4(d), IcmpKind::V4(k)) => b
            .ipv4(s.octets(), d.octets(), hops)
            .icmpv4(k.clone())
            .write(&mut v, quoted)
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d), IcmpKind::V6(k)) => b
            .ipv6(s.octets(), d.octets(), hops)
            .icmpv6(*k)
            .write(&mut v, quoted)
            .unwrap(),
        _ => panic!("mixed families"),
    }
    v
}

enum IcmpKind {
    V4(etherparse::Icmpv4Type),
    V6(etherparse::Icmpv6Type),
}

/// The quoted packet of an ICMP error frame, as a frame of its own (for [`parse_checked`]).
fn quoted_frame(frame: &[u8], v6: bool) -> Vec<u8> {
    let at = if v6 { 14 + 40 + 8 } else { 14 + 20 + 8 };
    let mut f = frame[..14].to_vec();
    f[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    f.extend_from_slice(&frame[at..]);
    f
}

#[test]
fn icmp_errors_about_a_snat_flow_are_translated_both_ways() {
    if !testbed::require_root() {
        return;
    }
    use etherparse::{Icmpv4Type, icmpv4::DestUnreachableHeader};
    let topo = Topology::new(1).expect("topology");
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, OUTSIDE.into(), REMOTE.into());
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    let backend = SocketAddr::new(IpAddr::from(REMOTE), 9000);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("remote", 30090, backend, Some("other-node"))],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();
    let (client, frontend) = ((OUTSIDE, 40000).into(), (NODE, 30090).into());
    let f = tcp_frame(
        [OUTSIDE_MAC, nic_mac],
        client,
        frontend,
        7,
        true,
        b"payload",
    );
    let (_, snated) = topo.node.enter(|| xdp_run(&ebpf, &f, nic));
    let snat = checked(&snated).0;

    // A router between the node and the endpoint cannot forward our SNATed packet without
    // fragmenting it: the error, addressed to the node's SNAT address, goes to the client
    // from the frontend, quoting the client's own packet (as it left the client's last router).
    let router: IpAddr = [198, 18, 0, 10].into();
    let frag = IcmpKind::V4(Icmpv4Type::DestinationUnreachable(
        DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
    ));
    let g = icmp_error(
        [REMOTE_MAC, nic_mac],
        router,
        NODE.into(),
        64,
        &frag,
        &snated[14..],
    );
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &g, nic));
    assert_eq!(action, XDP_TX);
    let want = icmp_error(
        [nic_mac, OUTSIDE_MAC],
        NODE.into(),
        OUTSIDE.into(),
        63,
        &frag,
        &with_hops(&f[14..], 63),
    );
    assert_eq!(out, want);
    // The quoted TCP checksum was kept right too.
    let q = parse_checked(&quoted_frame(&out, false));
    assert_eq!(
        (q.src, q.dst),
        ((OUTSIDE, 40000).into(), (NODE, 30090).into())
    );

    // The endpoint's reply reaches the client; the client's host answers "port unreachable"
    // about it: the error goes to the endpoint from the node's SNAT address, quoting the
    // endpoint's own packet.
    let reply = tcp(REMOTE_MAC, nic_mac, REMOTE, 9000, NODE, snat.port());
    let (_, replied) = topo.node.enter(|| xdp_run(&ebpf, &reply, nic));
    let unreach = IcmpKind::V4(Icmpv4Type::DestinationUnreachable(
        DestUnreachableHeader::Port,
    ));
    let g = icmp_error(
        [OUTSIDE_MAC, nic_mac],
        OUTSIDE.into(),
        NODE.into(),
        64,
        &unreach,
        &replied[14..],
    );
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &g, nic));
    assert_eq!(action, XDP_TX);
    let want = icmp_error(
        [nic_mac, REMOTE_MAC],
        NODE.into(),
        REMOTE.into(),
        63,
        &unreach,
        &with_hops(&reply[14..], 63),
    );
    assert_eq!(out, want);

    // An error quoting a SNAT port no flow holds goes to the kernel untouched.
    let mut stray = snated[14..].to_vec();
    stray[20..22].copy_from_slice(&(snat.port() ^ 1).to_be_bytes());
    let g = icmp_error(
        [REMOTE_MAC, nic_mac],
        router,
        NODE.into(),
        64,
        &frag,
        &stray,
    );
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &g, nic));
    assert_eq!((action, out), (2, g));
}

#[test]
fn icmpv6_errors_about_a_snat_flow_are_translated_both_ways() {
    if !testbed::require_root() {
        return;
    }
    use etherparse::{Icmpv6Type, icmpv6::DestUnreachableCode};
    let topo = Topology::new(0).expect("topology");
    let outside: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let remote: std::net::Ipv6Addr = "2001:db8::9".parse().unwrap();
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, outside.into(), remote.into());
    let mut sync = L4Sync::new(L4Options {
        node_v6: Some(topo.node_v6),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    let backend = SocketAddr::new(IpAddr::V6(remote), 9000);
    let snap = Snapshot {
        version: 1,
        l4: vec![L4Service {
            protocol: L4Protocol::Udp,
            ..svc("remote6", 30091, backend, Some("other-node"))
        }],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();
    let node6 = IpAddr::V6(topo.node_v6);
    let f = udp_frame(
        [OUTSIDE_MAC, nic_mac],
        (outside, 40000).into(),
        (topo.node_v6, 30091).into(),
        b"payload",
    );
    let (_, snated) = topo.node.enter(|| xdp_run(&ebpf, &f, nic));
    let snat = parse_checked(&snated).src;

    // Packet too big on the way to the endpoint: to the client, from the frontend.
    let router: IpAddr = "2001:db8::a".parse::<std::net::Ipv6Addr>().unwrap().into();
    let ptb = IcmpKind::V6(Icmpv6Type::PacketTooBig { mtu: 1280 });
    let g = icmp_error(
        [REMOTE_MAC, nic_mac],
        router,
        node6,
        64,
        &ptb,
        &snated[14..],
    );
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &g, nic));
    assert_eq!(action, XDP_TX);
    let want = icmp_error(
        [nic_mac, OUTSIDE_MAC],
        node6,
        outside.into(),
        63,
        &ptb,
        &with_hops(&f[14..], 63),
    );
    assert_eq!(out, want);
    let q = parse_checked(&quoted_frame(&out, true));
    assert_eq!(q.dst, SocketAddr::new(node6, 30091));

    // Port unreachable from the client about the endpoint's reply: to the endpoint.
    let reply = udp_frame(
        [REMOTE_MAC, nic_mac],
        (remote, 9000).into(),
        (topo.node_v6, snat.port()).into(),
        b"answer",
    );
    let (_, replied) = topo.node.enter(|| xdp_run(&ebpf, &reply, nic));
    let unreach = IcmpKind::V6(Icmpv6Type::DestinationUnreachable(
        DestUnreachableCode::Port,
    ));
    let g = icmp_error(
        [OUTSIDE_MAC, nic_mac],
        outside.into(),
        node6,
        64,
        &unreach,
        &replied[14..],
    );
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &g, nic));
    assert_eq!(action, XDP_TX);
    let want = icmp_error(
        [nic_mac, REMOTE_MAC],
        node6,
        remote.into(),
        63,
        &unreach,
        &with_hops(&reply[14..], 63),
    );
    assert_eq!(out, want);
}

#[test]
fn a_remote_endpoint_without_a_neighbour_entry_is_resolved_not_refused() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    // Only the client's neighbour is known; the endpoint's is not (an empty table).
    static_neigh(&topo, OUTSIDE.into(), OUTSIDE_MAC);
    let nic = ifindex(&topo, NODE_IFACE);
    let nic_mac = mac(&topo, NODE_IFACE);
    let mut ebpf = load(&[PROG_XDP_INGRESS], &[]);
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    let backend = SocketAddr::new(IpAddr::from(REMOTE), 9000);
    let snap = Snapshot {
        version: 1,
        l4: vec![svc("remote", 30090, backend, Some("other-node"))],
        ..Default::default()
    };
    sync.apply(&mut ebpf, &snap).unwrap();
    let (src, dst) = ((OUTSIDE, 40000).into(), (NODE, 30090).into());
    let syn = tcp_frame([OUTSIDE_MAC, nic_mac], src, dst, 7, true, b"");
    // The first SYN is not passed on untranslated (the kernel would answer it with a RST):
    // it is dropped, and the endpoint's address is wanted.
    let (action, _) = topo.node.enter(|| xdp_run(&ebpf, &syn, nic));
    assert_eq!(action, 1, "dropped, for the client to retransmit");
    let wanted: aya::maps::HashMap<_, ingress_common::l4::NeighKey, u64> =
        aya::maps::HashMap::try_from(ebpf.map(ingress_common::l4::MAP_NEIGH_WANTED).unwrap())
            .unwrap();
    let keys: Vec<_> = wanted.keys().map(Result::unwrap).collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].addr[..4], REMOTE);
    // The daemon's maintenance has the kernel resolve it (the kernel's neighbour table now
    // has an entry in progress) and forgets it.
    topo.node.enter(|| sync.maintain(&mut ebpf)).unwrap();
    let neigh = topo
        .node
        .run("ip", &["neigh", "show", "198.18.0.9", "dev", NODE_IFACE])
        .unwrap();
    assert!(
        neigh.contains("198.18.0.9"),
        "no resolution started: {neigh:?}"
    );
    let wanted: aya::maps::HashMap<_, ingress_common::l4::NeighKey, u64> =
        aya::maps::HashMap::try_from(ebpf.map(ingress_common::l4::MAP_NEIGH_WANTED).unwrap())
            .unwrap();
    assert_eq!(wanted.keys().count(), 0);
    // Resolved (here by hand: nothing answers ARP for it in this bed), the client's
    // retransmitted SYN goes through.
    static_neigh(&topo, REMOTE.into(), REMOTE_MAC);
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &syn, nic));
    assert_eq!(action, XDP_TX);
    assert_eq!(checked(&out).1, backend);
}

#[test]
fn a_removed_remote_endpoints_udp_flow_frees_its_snat_port_at_once_and_moves() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let (nic, nic_mac, mut ebpf) = snat_node(&topo, OUTSIDE.into(), REMOTE.into());
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    let remote = SocketAddr::new(IpAddr::from(REMOTE), 53);
    let local = SocketAddr::new(IpAddr::from([198, 19, 0, 2]), 53);
    let dns = |ep: SocketAddr, node: &str, version: u64| {
        let mut s = svc("dns", 30053, ep, Some(node));
        s.protocol = L4Protocol::Udp;
        Snapshot {
            version,
            l4: vec![s],
            ..Default::default()
        }
    };
    sync.apply(&mut ebpf, &dns(remote, "other-node", 1))
        .unwrap();
    let (client, node) = (
        SocketAddr::from((OUTSIDE, 5353)),
        SocketAddr::from((NODE, 30053)),
    );
    let q = udp_frame([OUTSIDE_MAC, nic_mac], client, node, b"query");
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &q, nic));
    assert_eq!(action, XDP_TX);
    let seen = parse_checked(&out);
    assert_eq!(seen.dst, remote);
    let snat = seen.src;
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 1);

    // The remote endpoint is removed (the default 60 s drain): its UDP flow and SNAT port go
    // now, not after the drain or the UDP timeout.
    let r = sync.apply(&mut ebpf, &dns(local, "this-node", 2)).unwrap();
    assert_eq!(r.flows_released, 1, "{r:?}");
    assert_eq!(
        (
            entries::<FlowKey, CtEntry>(&ebpf, MAP_CONNTRACK),
            entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT)
        ),
        (0, 0)
    );
    // A late answer from the removed endpoint to the freed port is no longer translated.
    let late = udp_frame([REMOTE_MAC, nic_mac], remote, snat, b"late");
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &late, nic));
    assert_eq!((action, out.as_slice()), (XDP_PASS, late.as_slice()));
    // The client's next datagram goes to the live endpoint.
    let (action, out) = topo.node.enter(|| xdp_run(&ebpf, &q, nic));
    assert_eq!(action, XDP_PASS);
    assert_eq!(parse_checked(&out).dst, local);
}

/// Issue 10, class 2: a local pod's reply that comes after its flow ended (timed out and
/// swept, released with its endpoint, or deleted by the packet path) has no translation left;
/// it must not leave the NIC with the pod's address. Its tuple's tombstone has it dropped and
/// counted, while the pod's own traffic (another client port, or a new direct connection on
/// the same tuple) passes untouched.
#[test]
fn a_local_pods_reply_after_its_flow_ended_is_dropped_never_sent_from_its_address() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let nic = ifindex(&topo, NODE_IFACE);
    let mut ebpf = load(&[PROG_XDP_INGRESS], &[PROG_TC_REPLY, PROG_TC_NIC_EGRESS]);
    let pod_ip = topo.pods[0].v4;
    let pod = SocketAddr::new(IpAddr::V4(pod_ip), 8080);
    let dns_pod = SocketAddr::new(IpAddr::V4(pod_ip), 53);
    let pod6 = SocketAddr::new(IpAddr::V6(topo.pods[0].v6), 8080);
    let dns = |ep: SocketAddr| {
        let mut s = svc("dns", 30053, ep, None);
        s.protocol = L4Protocol::Udp;
        s
    };
    let snap = |version, dns_ep| Snapshot {
        version,
        l4: vec![
            svc("web", 30080, pod, None),
            svc("web6", 30081, pod6, None),
            dns(dns_ep),
        ],
        ..Default::default()
    };
    let mut sync = L4Sync::new(L4Options {
        tcp_closing_timeout: std::time::Duration::ZERO,
        ..L4Options::default()
    });
    sync.apply(&mut ebpf, &snap(1, dns_pod)).unwrap();
    let client = topo.client_v4.octets();
    let pod_mac = [0x02, 0, 0, 0, 1, 2];
    let frontend = SocketAddr::new(IpAddr::from(NODE), 30080);
    let seg = |sport, flags| tcp_flags(OUTSIDE_MAC, OUTSIDE_MAC, client, sport, NODE, 30080, flags);
    let from_pod = |sport, flags| {
        tcp_flags(
            pod_mac,
            pod_mac,
            pod_ip.octets(),
            8080,
            client,
            sport,
            flags,
        )
    };
    let xdp = |ebpf: &aya::Ebpf, f: &[u8]| topo.node.enter(|| xdp_run(ebpf, f, nic));
    let egress = |ebpf: &aya::Ebpf, f: &[u8]| {
        topo.node
            .enter(|| tc_run_prog(ebpf, PROG_TC_NIC_EGRESS, f, nic))
    };
    const TC_ACT_SHOT: u32 = 2;

    // 1. A TCP flow idles out and the daemon's sweep deletes it.
    let (_, out) = xdp(&ebpf, &seg(40000, TCP_SYN));
    assert_eq!(checked(&out).1, pod);
    let (action, out) = egress(&ebpf, &from_pod(40000, TCP_SYN | TCP_ACK));
    assert_eq!((action, checked(&out).0), (0, frontend));
    let later = flows::monotonic_ns() + 3601 * 1_000_000_000;
    assert_eq!(flows::sweep(&mut ebpf, later).unwrap().expired, 1);
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 0);
    // The pod's late segment is dropped and counted, at the NIC and at the pod's veth alike.
    let late = from_pod(40000, TCP_ACK);
    assert_eq!(egress(&ebpf, &late).0, TC_ACT_SHOT);
    let pod_if = ifindex(&topo, &topo.pods[0].node_iface);
    assert_eq!(
        topo.node.enter(|| tc_run(&ebpf, &late, pod_if)).0,
        TC_ACT_SHOT
    );
    assert_eq!(stat(&ebpf, Stat::DropLateReply), 2);
    // The pod's traffic to a client port that never came through us passes untouched.
    let own = from_pod(40999, TCP_ACK);
    assert_eq!(egress(&ebpf, &own), (0, own.clone()));
    // A direct connection from the client on the same tuple (the pod answers its SYN) is the
    // pod's: the SYN-ACK and what follows pass untouched.
    let synack = from_pod(40000, TCP_SYN | TCP_ACK);
    assert_eq!(egress(&ebpf, &synack), (0, synack.clone()));
    assert_eq!(egress(&ebpf, &late), (0, late.clone()));
    assert_eq!(stat(&ebpf, Stat::DropLateReply), 2);

    // 2. A flow the packet path ends: the client's RST (zero closing timeout), then its next
    // segment finds the flow over and deletes both entries.
    xdp(&ebpf, &seg(40001, TCP_SYN));
    xdp(&ebpf, &seg(40001, TCP_RST | TCP_ACK));
    std::thread::sleep(std::time::Duration::from_millis(1));
    let stray = seg(40001, TCP_ACK);
    assert_eq!(xdp(&ebpf, &stray), (XDP_PASS, stray.clone()));
    assert_eq!(entries::<FlowKey, RevNatEntry>(&ebpf, MAP_REVNAT), 0);
    assert_eq!(egress(&ebpf, &from_pod(40001, TCP_ACK)).0, TC_ACT_SHOT);
    assert_eq!(stat(&ebpf, Stat::DropLateReply), 3);

    // 3. A UDP flow whose endpoint is removed: the daemon deletes it at once; the removed pod's
    // late answer is dropped too.
    let (dclient, dnode) = (
        SocketAddr::from((client, 5353)),
        SocketAddr::from((NODE, 30053)),
    );
    let q = udp_frame([OUTSIDE_MAC, OUTSIDE_MAC], dclient, dnode, b"query");
    let (_, out) = xdp(&ebpf, &q);
    assert_eq!(parse_checked(&out).dst, dns_pod);
    let answer = udp_frame([pod_mac, pod_mac], dns_pod, dclient, b"answer");
    let (action, out) = egress(&ebpf, &answer);
    assert_eq!((action, parse_checked(&out).src), (0, dnode));
    let elsewhere = SocketAddr::from(([198, 19, 0, 99], 53));
    let r = sync.apply(&mut ebpf, &snap(2, elsewhere)).unwrap();
    assert_eq!(r.flows_released, 1, "{r:?}");
    assert_eq!(egress(&ebpf, &answer).0, TC_ACT_SHOT);
    assert_eq!(stat(&ebpf, Stat::DropLateReply), 4);
    let own = udp_frame(
        [pod_mac, pod_mac],
        dns_pod,
        SocketAddr::from((client, 5354)),
        b"x",
    );
    assert_eq!(egress(&ebpf, &own), (0, own.clone()));

    // 4. The same over IPv6: a swept flow's late reply is dropped, never sent from the pod.
    let client6 = SocketAddr::new(IpAddr::V6(topo.client_v6), 41000);
    let front6 = SocketAddr::new(IpAddr::V6(topo.node_v6), 30081);
    let syn6 = tcp_segment([OUTSIDE_MAC, OUTSIDE_MAC], client6, front6, 7, TCP_SYN, b"");
    let (_, out) = xdp(&ebpf, &syn6);
    assert_eq!(parse_checked(&out).dst, pod6);
    let reply6 = tcp_segment([pod_mac, pod_mac], pod6, client6, 7, TCP_ACK, b"late");
    let (action, out) = egress(&ebpf, &reply6);
    assert_eq!((action, parse_checked(&out).src), (0, front6));
    let later = flows::monotonic_ns() + 3601 * 1_000_000_000;
    assert_eq!(flows::sweep(&mut ebpf, later).unwrap().expired, 1);
    assert_eq!(egress(&ebpf, &reply6).0, TC_ACT_SHOT);
    assert_eq!(stat(&ebpf, Stat::DropLateReply), 5);
}
