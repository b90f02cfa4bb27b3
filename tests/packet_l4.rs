//! The XDP L4 path through BPF_PROG_TEST_RUN: for each path the action and the exact rewritten
//! bytes, with every checksum recomputed by an independent parser (etherparse).

mod l4common;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use etherparse::PacketBuilder;
use ingress_common::{
    PROG_XDP_INGRESS,
    l4::{
        AffinityKey, AffinityValue, CtEntry, FAMILY_V4, FlowKey, MAP_AFFINITY, MAP_CONNTRACK,
        MAP_REVNAT, MAP_SERVICES, RevNatEntry,
    },
    stats::{Counter, MAP_STATS, Stat},
};
use l4common::{
    Seen, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, active, endpoint, parse_checked, service,
    tcp_frame, tcp_segment, udp_frame,
};
use testbed::xdp_run::{XDP_DROP, XDP_PASS, XDP_TX, XdpTestRun};
use xdp_ingress::{
    dataplane::{L4Options, L4Sync, flows, stats as dstats},
    model::{Endpoint, EndpointState, Frontend, IpPrefix, L4Protocol, Snapshot},
};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [198, 18, 0, 1];
const NODE: [u8; 4] = [198, 18, 0, 2];
const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const NODE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn pods() -> Vec<SocketAddr> {
    (0..3)
        .map(|i| format!("198.19.{i}.2:8080").parse().unwrap())
        .chain((0..3).map(|i| format!("[2001:db8:1:{i}::2]:8080").parse().unwrap()))
        .collect()
}

/// web:30080 (3 pods, v4+v6), sticky:30081 (ClientIP), term:30082 (pod0 terminating),
/// ranges:30083 (198.18.0.0/24 only), dns:30053/UDP.
fn snapshot() -> Snapshot {
    let p = pods();
    let mut sticky = service("sticky", L4Protocol::Tcp, 30081, active(&p));
    sticky.client_ip_affinity = Some(Duration::from_secs(10));
    let term = service(
        "term",
        L4Protocol::Tcp,
        30082,
        vec![
            endpoint(p[0], EndpointState::Terminating),
            endpoint(p[1], EndpointState::Active),
        ],
    );
    let mut ranges = service("ranges", L4Protocol::Tcp, 30083, active(&p[..3]));
    ranges.source_ranges = vec![IpPrefix {
        addr: "198.18.0.0".parse().unwrap(),
        len: 24,
    }];
    Snapshot {
        version: 1,
        l4: vec![
            service("web", L4Protocol::Tcp, 30080, active(&p)),
            sticky,
            term,
            ranges,
            service("dns", L4Protocol::Udp, 30053, active(&p)),
        ],
        ..Default::default()
    }
}

struct Bed {
    run: XdpTestRun,
    sync: L4Sync,
}

fn bed() -> Bed {
    bed_with(L4Options::default())
}

fn bed_with(opts: L4Options) -> Bed {
    bed_from(opts, &snapshot())
}

/// The program loaded and `snap` applied to its maps by a sync with `opts`.
fn bed_from(opts: L4Options, snap: &Snapshot) -> Bed {
    let mut run = XdpTestRun::load(PROG_XDP_INGRESS).expect("load object");
    let mut sync = L4Sync::new(opts);
    sync.apply(&mut run.ebpf, snap).expect("apply");
    Bed { run, sync }
}

fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = ((src, sport).into(), (dst, dport).into());
    tcp_frame([CLIENT_MAC, NODE_MAC], src, dst, 1000, syn, payload)
}

fn tcp6(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = ((CLIENT6, sport).into(), (NODE6, dport).into());
    tcp_frame([CLIENT_MAC, NODE_MAC], src, dst, 1000, true, payload)
}

fn udp4(sport: u16, dport: u16, payload: &[u8], zero_checksum: bool) -> Vec<u8> {
    let (src, dst) = ((CLIENT, sport).into(), (NODE, dport).into());
    let mut v = udp_frame([CLIENT_MAC, NODE_MAC], src, dst, payload);
    if zero_checksum {
        v[14 + 20 + 6] = 0;
        v[14 + 20 + 7] = 0;
    }
    v
}

/// Only the destination address/port and the checksums may differ from the input.
fn assert_only_dnat(input: &[u8], output: &[u8]) {
    assert_eq!(input.len(), output.len());
    let seen = parse_checked(output);
    let mut expect = input.to_vec();
    let v6 = u16::from_be_bytes([input[12], input[13]]) == 0x86dd;
    let (dst_off, l4) = if v6 {
        (14 + 24, 14 + 40)
    } else {
        (14 + 16, 14 + 20)
    };
    let dst = seen.dst;
    match dst.ip() {
        IpAddr::V4(a) => expect[dst_off..dst_off + 4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => expect[dst_off..dst_off + 16].copy_from_slice(&a.octets()),
    }
    expect[l4 + 2..l4 + 4].copy_from_slice(&dst.port().to_be_bytes());
    // Checksum fields taken from the output (they were verified above).
    if !v6 {
        expect[24..26].copy_from_slice(&output[24..26]);
    }
    let proto = if v6 { input[14 + 6] } else { input[14 + 9] };
    let c = if proto == 6 { l4 + 16 } else { l4 + 6 };
    expect[c..c + 2].copy_from_slice(&output[c..c + 2]);
    assert_eq!(expect, output, "only destination and checksums change");
}

fn stat(run: &XdpTestRun, s: Stat) -> u64 {
    let map = run.ebpf.map(MAP_STATS).unwrap();
    let a: PerCpuArray<&MapData, Counter> = PerCpuArray::try_from(map).unwrap();
    dstats::read(&a).unwrap().get(s).packets
}

fn pod_v4() -> Vec<SocketAddr> {
    pods()[..3].to_vec()
}

/// An IPv4 pod other than `first`.
fn other_pod(first: SocketAddr) -> SocketAddr {
    pod_v4().into_iter().find(|p| *p != first).unwrap()
}

/// Where the program sends `f`: the destination of its output, every checksum checked.
fn dst_of(run: &mut XdpTestRun, f: &[u8]) -> SocketAddr {
    parse_checked(&run.run(f).unwrap().frame).dst
}

/// Runs `f`, which must come out passed with only its destination and checksums rewritten.
fn dnat(run: &mut XdpTestRun, f: &[u8]) -> Seen {
    let out = run.run(f).unwrap();
    assert_eq!(out.action, XDP_PASS);
    assert_only_dnat(f, &out.frame);
    parse_checked(&out.frame)
}

/// Runs `f`, which must go to the kernel as it is.
fn assert_passed_untouched(run: &mut XdpTestRun, f: &[u8]) {
    let out = run.run(f).unwrap();
    assert_eq!((out.action, out.frame.as_slice()), (XDP_PASS, f));
}

#[test]
fn new_tcp_flow_is_dnated_to_a_pod_and_passed() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let f = tcp4(CLIENT, 40000, NODE, 30080, true, b"");
    let seen = dnat(&mut b.run, &f);
    assert!(pod_v4().contains(&seen.dst), "{seen:?}");
    assert_eq!(seen.src, "198.18.0.1:40000".parse().unwrap());
    assert_eq!(stat(&b.run, Stat::L4NewFlow), 1);
    assert_eq!(stat(&b.run, Stat::L4LocalDnat), 1);
    let ct: BpfHashMap<&MapData, ingress_common::l4::FlowKey, ingress_common::l4::CtEntry> =
        BpfHashMap::try_from(b.run.ebpf.map(MAP_CONNTRACK).unwrap()).unwrap();
    assert_eq!(ct.keys().count(), 1);
    let _ = &mut b.sync;
}

#[test]
fn established_flow_keeps_its_backend_across_table_changes() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let syn = tcp4(CLIENT, 40001, NODE, 30080, true, b"");
    let first = dst_of(&mut b.run, &syn);
    // Remove every other pod: the Maglev table changes completely around the flow's backend.
    let mut snap = snapshot();
    let others: Vec<SocketAddr> = pods().into_iter().filter(|p| *p != first).collect();
    let keep = vec![endpoint(first, EndpointState::Active)];
    snap.l4[0].endpoints = keep
        .into_iter()
        .chain(
            others
                .iter()
                .take(1)
                .map(|a| endpoint(*a, EndpointState::Active)),
        )
        .collect();
    snap.version = 2;
    b.sync.apply(&mut b.run.ebpf, &snap).unwrap();
    let data = tcp4(CLIENT, 40001, NODE, 30080, false, b"hello");
    assert_eq!(dnat(&mut b.run, &data).dst, first);
    assert_eq!(stat(&b.run, Stat::L4Established), 1);
}

#[test]
fn connections_spread_over_all_pods() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let mut counts = std::collections::BTreeMap::new();
    for port in 0..300u16 {
        let f = tcp4(CLIENT, 20000 + port, NODE, 30080, true, b"");
        let d = dst_of(&mut b.run, &f);
        *counts.entry(d).or_insert(0u32) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    for c in counts.values() {
        assert!((70..=130).contains(c), "{counts:?}");
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sticky_slot(run: &XdpTestRun) -> u32 {
    let svc: BpfHashMap<
        &MapData,
        ingress_common::l4::ServiceKey,
        ingress_common::l4::ServiceValue,
    > = BpfHashMap::try_from(run.ebpf.map(MAP_SERVICES).unwrap()).unwrap();
    let key = ingress_common::l4::ServiceKey {
        addr: [0; 16],
        port: 30081u16.to_be(),
        proto: 6,
        family: FAMILY_V4,
    };
    svc.get(&key, 0).unwrap().slot
}

fn set_affinity(run: &mut XdpTestRun, backend_id: u32, last_used_ns: u64) {
    let slot = sticky_slot(run);
    let mut aff: BpfHashMap<&mut MapData, AffinityKey, AffinityValue> =
        BpfHashMap::try_from(run.ebpf.map_mut(MAP_AFFINITY).unwrap()).unwrap();
    let mut client = [0u8; 16];
    client[..4].copy_from_slice(&CLIENT);
    let key = AffinityKey {
        client,
        svc_slot: slot,
        family: FAMILY_V4,
        _pad: [0; 3],
    };
    aff.insert(
        key,
        AffinityValue {
            backend_id,
            _pad: 0,
            last_used_ns,
        },
        0,
    )
    .unwrap();
}

/// Backend id of `addr` in the sticky service (from the backends map).
fn backend_id(run: &XdpTestRun, addr: SocketAddr) -> u32 {
    let slot = sticky_slot(run);
    let a: aya::maps::Array<&MapData, ingress_common::l4::Backend> =
        aya::maps::Array::try_from(run.ebpf.map(ingress_common::l4::MAP_BACKENDS).unwrap())
            .unwrap();
    let IpAddr::V4(ip) = addr.ip() else { panic!() };
    (0..a.len())
        .find(|i| {
            let b = a.get(i, 0).unwrap();
            b.svc_slot == slot && b.addr[..4] == ip.octets() && b.port == addr.port().to_be()
        })
        .expect("backend id")
}

#[test]
fn client_ip_affinity_pins_new_connections_to_one_pod() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let first = dst_of(&mut b.run, &tcp4(CLIENT, 41000, NODE, 30081, true, b""));
    for port in 41001..41041u16 {
        assert_eq!(
            dst_of(&mut b.run, &tcp4(CLIENT, port, NODE, 30081, true, b"")),
            first
        );
    }
    assert_eq!(stat(&b.run, Stat::L4AffinityHit), 40);
}

#[test]
fn affinity_hit_uses_the_recorded_pod_and_an_expired_one_is_ignored() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    // Pick a port whose Maglev choice is not pod2, then pin the client to pod2.
    let target = pod_v4()[2];
    let id = backend_id(&b.run, target);
    set_affinity(&mut b.run, id, monotonic_ns());
    let f = tcp4(CLIENT, 42000, NODE, 30081, true, b"");
    assert_eq!(dnat(&mut b.run, &f).dst, target);
    assert_eq!(stat(&b.run, Stat::L4AffinityHit), 1);

    // Expired (last used long before the 10 s timeout): a fresh Maglev choice, counted.
    let mut misses = 0;
    let mut elsewhere = 0;
    for port in 43000..43030u16 {
        set_affinity(&mut b.run, id, 1);
        let dst = dst_of(&mut b.run, &tcp4(CLIENT, port, NODE, 30081, true, b""));
        misses += 1;
        if dst != target {
            elsewhere += 1;
        }
    }
    assert_eq!(stat(&b.run, Stat::L4AffinityMiss), misses);
    assert!(elsewhere > 0, "expired affinity must not pin");
}

#[test]
fn terminating_backend_gets_no_new_flows() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    for port in 0..100u16 {
        assert_eq!(
            dst_of(
                &mut b.run,
                &tcp4(CLIENT, 30000 + port, NODE, 30082, true, b"")
            ),
            pods()[1]
        );
    }
    // Only terminating endpoints left: they serve (KEP-1669).
    let mut snap = snapshot();
    snap.l4[2].endpoints = vec![endpoint(pods()[0], EndpointState::Terminating)];
    b.sync.apply(&mut b.run.ebpf, &snap).unwrap();
    assert_eq!(
        dst_of(&mut b.run, &tcp4(CLIENT, 31000, NODE, 30082, true, b"")),
        pods()[0]
    );
}

#[test]
fn clients_outside_source_ranges_are_dropped_and_counted() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let ok = b
        .run
        .run(&tcp4(CLIENT, 40000, NODE, 30083, true, b""))
        .unwrap();
    assert_eq!(ok.action, XDP_PASS);
    assert!(pod_v4().contains(&parse_checked(&ok.frame).dst));
    let f = tcp4([198, 18, 5, 1], 40000, NODE, 30083, true, b"");
    let out = b.run.run(&f).unwrap();
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(stat(&b.run, Stat::DropSourceRange), 1);
}

#[test]
fn ipv6_flow_is_dnated_with_pseudo_header_checksum() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let f = tcp6(40000, 30080, b"hi");
    let seen = dnat(&mut b.run, &f);
    assert!(pods()[3..].contains(&seen.dst), "{seen:?}");
}

#[test]
fn udp_checksums_are_updated_and_zero_stays_zero() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let f = udp4(5353, 30053, b"query", false);
    assert_ne!(dnat(&mut b.run, &f).udp_checksum, Some(0));

    let f = udp4(5354, 30053, b"query", true);
    assert_eq!(dnat(&mut b.run, &f).udp_checksum, Some(0));
}

#[test]
fn fragments_and_unknown_ports_pass_untouched() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let mut frag = tcp4(CLIENT, 40000, NODE, 30080, true, b"");
    frag[20] = 0x20; // MF
    // Fix the IPv4 header checksum for the new flags.
    frag[24] = 0;
    frag[25] = 0;
    let c = etherparse::Ipv4HeaderSlice::from_slice(&frag[14..34])
        .unwrap()
        .to_header()
        .calc_header_checksum();
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    assert_passed_untouched(&mut b.run, &frag);
    assert_eq!(stat(&b.run, Stat::PassIpv4Fragment), 1);

    let f = tcp4(CLIENT, 40000, NODE, 22, true, b"");
    assert_passed_untouched(&mut b.run, &f);
    assert_eq!(stat(&b.run, Stat::PassNoService), 1);
}

/// The web service with only `keep` as endpoint.
fn web_only(keep: SocketAddr, version: u64) -> Snapshot {
    let mut snap = snapshot();
    snap.l4[0].endpoints = vec![endpoint(keep, EndpointState::Active)];
    snap.version = version;
    snap
}

/// A TCP/IPv4 segment from `src:sport` to NODE:`dport` with `flags` (`l4common::TCP_*`).
fn seg4(src: [u8; 4], sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = ((src, sport).into(), (NODE, dport).into());
    tcp_segment([CLIENT_MAC, NODE_MAC], src, dst, 1000, flags, payload)
}

#[test]
fn fin_shortens_a_flows_life_then_its_segments_go_to_the_kernel_and_a_new_syn_is_re_selected() {
    if !testbed::require_root() {
        return;
    }
    // A zero closing timeout: the packet after a FIN finds the entry expired.
    let mut b = bed_with(L4Options {
        tcp_closing_timeout: Duration::ZERO,
        ..L4Options::default()
    });
    let first = dst_of(&mut b.run, &tcp4(CLIENT, 45000, NODE, 30080, true, b""));
    let other = other_pod(first);
    b.sync.apply(&mut b.run.ebpf, &web_only(other, 2)).unwrap();
    // The backend still exists (draining), so the open flow stays on it...
    let ack = tcp4(CLIENT, 45000, NODE, 30080, false, b"x");
    assert_eq!(dst_of(&mut b.run, &ack), first);
    // ...until a FIN: after it the entry expires; a late segment of the closed connection is
    // the kernel's (it answers RST) and opens nothing...
    let fin = seg4(CLIENT, 45000, 30080, TCP_FIN | TCP_ACK, b"");
    assert_eq!(dst_of(&mut b.run, &fin), first);
    std::thread::sleep(Duration::from_millis(2));
    assert_passed_untouched(&mut b.run, &ack);
    assert_eq!(stat(&b.run, Stat::PassNoFlow), 1);
    // ...and a new connection from the same port is a new flow, on the remaining pod.
    let syn = tcp4(CLIENT, 45000, NODE, 30080, true, b"");
    assert_eq!(dst_of(&mut b.run, &syn), other);
    assert_eq!(dst_of(&mut b.run, &ack), other);
}

/// The flags of every flow entry and every reverse entry.
fn entry_flags(run: &XdpTestRun) -> (Vec<u32>, Vec<u32>) {
    let ct: BpfHashMap<&MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(run.ebpf.map(MAP_CONNTRACK).unwrap()).unwrap();
    let rev: BpfHashMap<&MapData, FlowKey, RevNatEntry> =
        BpfHashMap::try_from(run.ebpf.map(MAP_REVNAT).unwrap()).unwrap();
    (
        ct.iter().map(|e| e.unwrap().1.flags).collect(),
        rev.iter().map(|e| e.unwrap().1.flags).collect(),
    )
}

/// A SYN on a live flow's 5-tuple (a retransmitted SYN, or a port reused right after a close,
/// as a TIME-WAIT connection may be reopened by a new SYN, RFC 9293 3.6.1) opens the
/// connection anew: it goes where a new flow would (the flow's own pod while Maglev still
/// picks it, else the new pick), counts as a new flow, and leaves exactly one flow entry and
/// one reverse entry, neither closing any more.
#[test]
fn a_syn_on_a_live_flow_reopens_it_where_a_new_flow_would_go_and_leaves_one_entry_pair() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let syn = tcp4(CLIENT, 46000, NODE, 30080, true, b"");
    let first = dst_of(&mut b.run, &syn);
    let fin = seg4(CLIENT, 46000, 30080, TCP_FIN | TCP_ACK, b"");
    assert_eq!(dst_of(&mut b.run, &fin), first);
    let (ct, rev) = entry_flags(&b.run);
    assert!(
        ct.iter()
            .chain(&rev)
            .all(|f| f & ingress_common::l4::CT_F_CLOSING != 0)
    );
    // Reopened on the same pod: one pair, not closing, two new flows counted.
    assert_eq!(dst_of(&mut b.run, &syn), first);
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), (1, 1));
    assert_eq!(entry_flags(&b.run), (vec![0], vec![0]));
    assert_eq!(stat(&b.run, Stat::L4NewFlow), 2);
    let ack = tcp4(CLIENT, 46000, NODE, 30080, false, b"x");
    assert_eq!(dst_of(&mut b.run, &ack), first);
    // Its pod is gone from the selection (still present, draining): a SYN now goes to the
    // remaining pod, and the old pair is gone with it.
    let other = other_pod(first);
    b.sync.apply(&mut b.run.ebpf, &web_only(other, 2)).unwrap();
    assert_eq!(dst_of(&mut b.run, &syn), other);
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), (1, 1));
    assert_eq!(dst_of(&mut b.run, &ack), other);
    assert_eq!(stat(&b.run, Stat::L4NewFlow), 3);
}

fn conntrack_len(run: &XdpTestRun) -> usize {
    let ct: BpfHashMap<&MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(run.ebpf.map(MAP_CONNTRACK).unwrap()).unwrap();
    ct.keys().count()
}

fn revnat_len(run: &XdpTestRun) -> usize {
    let rev: BpfHashMap<&MapData, FlowKey, RevNatEntry> =
        BpfHashMap::try_from(run.ebpf.map(MAP_REVNAT).unwrap()).unwrap();
    rev.keys().count()
}

fn affinity_len(run: &XdpTestRun) -> usize {
    let aff: BpfHashMap<&MapData, AffinityKey, AffinityValue> =
        BpfHashMap::try_from(run.ebpf.map(MAP_AFFINITY).unwrap()).unwrap();
    aff.keys().count()
}

#[test]
fn segments_that_open_no_connection_create_no_state_and_go_to_the_kernel_untouched() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    // 300 bare ACKs from 300 source ports to a NodePort: no flow, untouched, counted.
    for port in 0..300u16 {
        let ack = seg4(CLIENT, 20000 + port, 30080, TCP_ACK, b"");
        assert_passed_untouched(&mut b.run, &ack);
    }
    assert_eq!(stat(&b.run, Stat::PassNoFlow), 300);
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), (0, 0));
    // No other segment without a SYN (or with one the kernel's listener discards) opens a
    // flow, an affinity entry or a reverse entry either: the sticky service says so too.
    let others = [
        TCP_ACK | TCP_PSH,
        TCP_FIN | TCP_ACK,
        TCP_RST,
        TCP_RST | TCP_ACK,
        TCP_SYN | TCP_ACK,
        TCP_SYN | TCP_FIN,
        TCP_SYN | TCP_RST,
        0,
    ];
    for (i, flags) in others.into_iter().enumerate() {
        for dport in [30080, 30081] {
            let f = seg4(CLIENT, 21000 + i as u16, dport, flags, b"data");
            assert_passed_untouched(&mut b.run, &f);
        }
    }
    assert_eq!(
        stat(&b.run, Stat::PassNoFlow),
        300 + 2 * others.len() as u64
    );
    assert_eq!(
        (
            conntrack_len(&b.run),
            revnat_len(&b.run),
            affinity_len(&b.run)
        ),
        (0, 0, 0)
    );
    assert_eq!(stat(&b.run, Stat::L4NewFlow), 0);

    // A SYN still opens a flow, and the segments that follow it are translated to its pod.
    let pod = dnat(&mut b.run, &seg4(CLIENT, 20000, 30081, TCP_SYN, b"")).dst;
    assert_eq!((conntrack_len(&b.run), affinity_len(&b.run)), (1, 1));
    for flags in [TCP_ACK, TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK] {
        let f = seg4(CLIENT, 20000, 30081, flags, b"data");
        assert_eq!(dnat(&mut b.run, &f).dst, pod);
    }
    assert_eq!(stat(&b.run, Stat::L4Established), 3);
    // UDP has no handshake: every datagram may open a flow.
    for port in 0..3u16 {
        dnat(&mut b.run, &udp4(5300 + port, 30053, b"q", false));
    }
    assert_eq!(conntrack_len(&b.run), 4);
    assert_eq!(
        stat(&b.run, Stat::PassNoFlow),
        300 + 2 * others.len() as u64
    );
}

#[test]
fn udp_flows_expire_after_their_idle_timeout() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed_with(L4Options {
        udp_timeout: Duration::ZERO,
        ..L4Options::default()
    });
    let f = udp4(5400, 30053, b"q", false);
    let first = dst_of(&mut b.run, &f);
    let other = other_pod(first);
    let mut snap = snapshot();
    snap.l4[4].endpoints = vec![endpoint(other, EndpointState::Active)];
    b.sync.apply(&mut b.run.ebpf, &snap).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(dst_of(&mut b.run, &f), other);
    assert_eq!(stat(&b.run, Stat::L4NewFlow), 2);
}

#[test]
fn a_removed_backend_keeps_flows_while_draining_then_they_end() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed_with(L4Options {
        drain: Duration::ZERO,
        ..L4Options::default()
    });
    let first = dst_of(&mut b.run, &tcp4(CLIENT, 46000, NODE, 30080, true, b""));
    let other = other_pod(first);
    // With a zero drain the removed endpoint is gone at once: its flow is over, its segments
    // go to the kernel (which answers RST) and the client's next connection is re-selected.
    b.sync.apply(&mut b.run.ebpf, &web_only(other, 2)).unwrap();
    let ack = tcp4(CLIENT, 46000, NODE, 30080, false, b"x");
    assert_passed_untouched(&mut b.run, &ack);
    assert_eq!(stat(&b.run, Stat::PassNoFlow), 1);
    let syn = tcp4(CLIENT, 46000, NODE, 30080, true, b"");
    assert_eq!(dst_of(&mut b.run, &syn), other);
}

/// The dns (UDP) and web (TCP) services with their IPv4 endpoints `eps` only.
fn udp_and_tcp_with(eps: &[Endpoint], version: u64) -> Snapshot {
    let mut snap = snapshot();
    snap.l4[0].endpoints = eps.to_vec();
    snap.l4[4].endpoints = eps.to_vec();
    snap.version = version;
    snap
}

#[test]
fn a_removed_endpoints_udp_flow_moves_on_its_next_datagram_and_its_tcp_flow_drains() {
    if !testbed::require_root() {
        return;
    }
    // A 60 s drain (the default): the removed endpoint exists, draining, all through the test.
    let mut b = bed();
    let udp = udp4(5500, 30053, b"q", false);
    let home = dst_of(&mut b.run, &udp);
    // A TCP connection to the same endpoint (its source port chosen so Maglev picks it).
    let tcp_port = (47000..47100u16)
        .find(|p| dst_of(&mut b.run, &tcp4(CLIENT, *p, NODE, 30080, true, b"")) == home)
        .expect("a TCP flow to the UDP flow's endpoint");
    let others: Vec<Endpoint> = pod_v4()
        .into_iter()
        .filter(|p| *p != home)
        .map(|p| endpoint(p, EndpointState::Active))
        .collect();
    let tables = (conntrack_len(&b.run), revnat_len(&b.run));
    let r = b
        .sync
        .apply(&mut b.run.ebpf, &udp_and_tcp_with(&others, 2))
        .unwrap();
    // The UDP flow and its reverse entry go at once (as kube-proxy clears its conntrack
    // entries); the TCP flows stay.
    assert_eq!(r.flows_released, 1, "{r:?}");
    assert_eq!(
        (conntrack_len(&b.run), revnat_len(&b.run)),
        (tables.0 - 1, tables.1 - 1)
    );

    // The next datagram goes to a live endpoint, as a new flow, and the flow stays there.
    let moved = dnat(&mut b.run, &udp).dst;
    assert_ne!(moved, home, "UDP flow still pinned to the removed endpoint");
    assert!(others.iter().any(|e| e.addr.socket() == moved), "{moved}");
    for _ in 0..3 {
        assert_eq!(dnat(&mut b.run, &udp).dst, moved);
    }
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), tables);

    // The TCP connection keeps the removed endpoint while it drains.
    let ack = tcp4(CLIENT, tcp_port, NODE, 30080, false, b"x");
    for _ in 0..3 {
        assert_eq!(dnat(&mut b.run, &ack).dst, home);
    }
}

#[test]
fn a_terminating_but_serving_endpoint_keeps_its_udp_flows() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let udp = udp4(5600, 30053, b"q", false);
    let home = dst_of(&mut b.run, &udp);
    // EndpointSlice `serving: true, terminating: true`: still there, still answering.
    let eps: Vec<Endpoint> = pod_v4()
        .into_iter()
        .map(|p| {
            let state = if p == home {
                EndpointState::Terminating
            } else {
                EndpointState::Active
            };
            endpoint(p, state)
        })
        .collect();
    b.sync
        .apply(&mut b.run.ebpf, &udp_and_tcp_with(&eps, 2))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(dnat(&mut b.run, &udp).dst, home);
    }
    assert_eq!(stat(&b.run, Stat::L4UdpFlowMoved), 0);
    // Once it stops serving (it leaves the snapshot), the next datagram moves.
    let live: Vec<Endpoint> = eps
        .into_iter()
        .filter(|e| e.state == EndpointState::Active)
        .collect();
    let r = b
        .sync
        .apply(&mut b.run.ebpf, &udp_and_tcp_with(&live, 3))
        .unwrap();
    assert_eq!(r.flows_released, 1, "{r:?}");
    assert_ne!(dnat(&mut b.run, &udp).dst, home);
}

/// Every flow entry, then every reverse entry.
type FlowEntries = (Vec<(FlowKey, CtEntry)>, Vec<(FlowKey, RevNatEntry)>);

/// Every flow and reverse entry.
fn flow_entries(run: &XdpTestRun) -> FlowEntries {
    let ct: BpfHashMap<&MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(run.ebpf.map(MAP_CONNTRACK).unwrap()).unwrap();
    let rev: BpfHashMap<&MapData, FlowKey, RevNatEntry> =
        BpfHashMap::try_from(run.ebpf.map(MAP_REVNAT).unwrap()).unwrap();
    (
        ct.iter().map(Result::unwrap).collect(),
        rev.iter().map(Result::unwrap).collect(),
    )
}

/// Writes the entries of [`flow_entries`] back.
fn restore_flow_entries(run: &mut XdpTestRun, (flows, revs): &FlowEntries) {
    let mut ct: BpfHashMap<&mut MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(run.ebpf.map_mut(MAP_CONNTRACK).unwrap()).unwrap();
    for (k, v) in flows {
        ct.insert(k, v, 0).unwrap();
    }
    let mut rev: BpfHashMap<&mut MapData, FlowKey, RevNatEntry> =
        BpfHashMap::try_from(run.ebpf.map_mut(MAP_REVNAT).unwrap()).unwrap();
    for (k, v) in revs {
        rev.insert(k, v, 0).unwrap();
    }
}

#[test]
fn the_program_moves_a_udp_datagram_off_a_removed_endpoint_by_itself() {
    if !testbed::require_root() {
        return;
    }
    // A datagram that meets a removed endpoint's flow before the daemon deleted it (the
    // endpoint is marked removed before its flows go) must not go to the endpoint either.
    let mut b = bed();
    let udp = udp4(5800, 30053, b"q", false);
    let home = dst_of(&mut b.run, &udp);
    let tcp_port = (48000..48100u16)
        .find(|p| dst_of(&mut b.run, &tcp4(CLIENT, *p, NODE, 30080, true, b"")) == home)
        .expect("a TCP flow to the UDP flow's endpoint");
    let tables = (conntrack_len(&b.run), revnat_len(&b.run));
    let saved = flow_entries(&b.run);
    let others: Vec<Endpoint> = pod_v4()
        .into_iter()
        .filter(|p| *p != home)
        .map(|p| endpoint(p, EndpointState::Active))
        .collect();
    b.sync
        .apply(&mut b.run.ebpf, &udp_and_tcp_with(&others, 2))
        .unwrap();
    // The UDP flow's entries back, as if its datagram had come before the daemon deleted
    // them (or the daemon had not run since).
    restore_flow_entries(&mut b.run, &saved);
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), tables);

    let moved = dnat(&mut b.run, &udp).dst;
    assert_ne!(moved, home, "UDP flow still pinned to the removed endpoint");
    assert_eq!(stat(&b.run, Stat::L4UdpFlowMoved), 1);
    assert_eq!(dnat(&mut b.run, &udp).dst, moved);
    assert_eq!(stat(&b.run, Stat::L4UdpFlowMoved), 1);
    // The old flow's entries went with it: as many flows and reverse entries as before.
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), tables);
    // TCP drains: its segments still reach the removed endpoint.
    let ack = tcp4(CLIENT, tcp_port, NODE, 30080, false, b"x");
    assert_eq!(dnat(&mut b.run, &ack).dst, home);
}

#[test]
fn a_clientip_affinity_to_a_removed_endpoint_does_not_pin_a_udp_client() {
    if !testbed::require_root() {
        return;
    }
    let mut snap = snapshot();
    snap.l4[4].client_ip_affinity = Some(Duration::from_secs(10));
    let mut b = bed_from(L4Options::default(), &snap);
    let home = dst_of(&mut b.run, &udp4(5700, 30053, b"q", false));
    // The client's datagrams from other ports land on the same endpoint (affinity).
    assert_eq!(dst_of(&mut b.run, &udp4(5701, 30053, b"q", false)), home);
    let others: Vec<SocketAddr> = pod_v4().into_iter().filter(|p| *p != home).collect();
    snap.l4[4].endpoints = active(&others);
    snap.version = 2;
    let r = b.sync.apply(&mut b.run.ebpf, &snap).unwrap();
    assert_eq!((r.flows_released, r.affinities_released), (2, 1), "{r:?}");
    // Both flows move, and to one endpoint: the affinity now names the live one.
    let moved = dst_of(&mut b.run, &udp4(5700, 30053, b"q", false));
    assert!(others.contains(&moved), "{moved}");
    assert_eq!(dst_of(&mut b.run, &udp4(5701, 30053, b"q", false)), moved);
    assert_eq!(dst_of(&mut b.run, &udp4(5702, 30053, b"q", false)), moved);
}

#[test]
fn applying_only_writes_what_changed() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let again = b.sync.apply(&mut b.run.ebpf, &snapshot()).unwrap();
    assert_eq!(
        (
            again.services_written,
            again.backends_written,
            again.tables_swapped,
            again.maglev_entries_written
        ),
        (0, 0, 0, 0),
        "{again:?}"
    );
    // One endpoint of one service turns terminating: one backend, one table, one service.
    let mut snap = snapshot();
    snap.l4[0].endpoints[0].state = EndpointState::Terminating;
    let r = b.sync.apply(&mut b.run.ebpf, &snap).unwrap();
    assert_eq!(
        (r.services_written, r.backends_written, r.tables_swapped),
        (1, 1, 1),
        "{r:?}"
    );
    assert!(
        r.maglev_entries_written > 0 && r.maglev_entries_written <= 16381,
        "{r:?}"
    );
    // Flipping back writes only the entries that differ from the other half.
    let r = b.sync.apply(&mut b.run.ebpf, &snapshot()).unwrap();
    assert_eq!(
        (r.services_written, r.backends_written, r.tables_swapped),
        (1, 1, 1),
        "{r:?}"
    );
    assert_eq!(
        r.maglev_entries_written, 0,
        "the old half already holds this table: {r:?}"
    );
}

#[test]
fn a_restarted_sync_recovers_slots_and_removes_what_went_away_meanwhile() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed();
    let slot_before = sticky_slot(&b.run);
    let syn = tcp4(CLIENT, 47000, NODE, 30080, true, b"");
    let first = dst_of(&mut b.run, &syn);
    // A new daemon (fresh mirror) over the same maps, with the DNS service gone meanwhile.
    let mut snap = snapshot();
    snap.l4.retain(|s| s.protocol != L4Protocol::Udp);
    let mut fresh = L4Sync::new(L4Options::default());
    let r = fresh.apply(&mut b.run.ebpf, &snap).unwrap();
    assert_eq!(r.services_removed, 2, "dns v4 and v6: {r:?}");
    assert_eq!(sticky_slot(&b.run), slot_before);
    let ack = tcp4(CLIENT, 47000, NODE, 30080, false, b"x");
    assert_eq!(dst_of(&mut b.run, &ack), first);
    let out = b.run.run(&udp4(5353, 30053, b"q", false)).unwrap();
    assert_eq!(
        out.frame,
        udp4(5353, 30053, b"q", false),
        "no service any more"
    );
}

#[test]
fn address_frontends_match_only_their_address_and_win_over_a_nodeport_on_the_same_port() {
    if !testbed::require_root() {
        return;
    }
    let p = pods();
    let vip = [198, 18, 0, 10];
    let mut lb = service(
        "lb",
        L4Protocol::Tcp,
        30099,
        vec![endpoint(p[0], EndpointState::Active)],
    );
    lb.frontends = vec![Frontend::Address(SocketAddr::new(IpAddr::from(vip), 31000))];
    let np = service(
        "np",
        L4Protocol::Tcp,
        31000,
        vec![endpoint(p[1], EndpointState::Active)],
    );
    let snap = Snapshot {
        version: 1,
        l4: vec![lb, np],
        ..Default::default()
    };
    let mut b = bed_from(L4Options::default(), &snap);
    // The LoadBalancer address: its own service.
    let f = tcp4(CLIENT, 40000, vip, 31000, true, b"");
    let out = b.run.run(&f).unwrap();
    assert_only_dnat(&f, &out.frame);
    assert_eq!(parse_checked(&out.frame).dst, p[0]);
    // Any other address on that port: the NodePort.
    let f = tcp4(CLIENT, 40000, NODE, 31000, true, b"");
    assert_eq!(dst_of(&mut b.run, &f), p[1]);
    // The address on another port: nothing.
    let f = tcp4(CLIENT, 40000, vip, 31001, true, b"");
    assert_passed_untouched(&mut b.run, &f);
}

#[test]
fn icmp_fragmentation_needed_about_a_reply_is_translated_for_its_pod() {
    if !testbed::require_root() {
        return;
    }
    use etherparse::{Icmpv4Header, Icmpv4Type, icmpv4::DestUnreachableHeader};
    let mut b = bed();
    let syn = tcp4(CLIENT, 48000, NODE, 30080, true, b"");
    let pod = dst_of(&mut b.run, &syn);
    let IpAddr::V4(pod_ip) = pod.ip() else {
        panic!()
    };

    // What a router on the way to the client sends back about our reply NODE:30080 → CLIENT.
    let reply = tcp4(NODE, 30080, CLIENT, 48000, false, b"");
    let quoted = &reply[14..14 + 28];
    let router = [198, 18, 0, 254];
    let kind = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: 1400,
    });
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(router, NODE, 64)
        .icmpv4(kind.clone())
        .write(&mut f, quoted)
        .unwrap();
    let out = b.run.run(&f).unwrap();
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(stat(&b.run, Stat::L4IcmpTranslated), 1);
    let o = &out.frame;
    // Outer: router → pod, header checksum right.
    let outer = etherparse::Ipv4HeaderSlice::from_slice(&o[14..34])
        .unwrap()
        .to_header();
    assert_eq!(outer.source, router);
    assert_eq!(outer.destination, pod_ip.octets());
    assert_eq!(outer.header_checksum, outer.calc_header_checksum());
    // Quoted packet: now the pod's own reply, pod:8080 → client.
    let inner = etherparse::Ipv4HeaderSlice::from_slice(&o[42..62])
        .unwrap()
        .to_header();
    assert_eq!(inner.source, pod_ip.octets());
    assert_eq!(inner.destination, CLIENT);
    assert_eq!(inner.header_checksum, inner.calc_header_checksum());
    assert_eq!(u16::from_be_bytes([o[62], o[63]]), pod.port());
    assert_eq!(u16::from_be_bytes([o[64], o[65]]), 48000);
    // ICMP checksum over the rewritten message.
    let expect = Icmpv4Header::with_checksum(kind, &o[42..]);
    assert_eq!(&o[34..42], &expect.to_bytes()[..]);
    // Only those fields changed: outer destination and checksum, ICMP checksum, quoted
    // header checksum, source address and port.
    let mut want = f.clone();
    want[30..34].copy_from_slice(&pod_ip.octets());
    want[24..26].copy_from_slice(&o[24..26]);
    want[36..38].copy_from_slice(&o[36..38]);
    want[52..54].copy_from_slice(&o[52..54]);
    want[54..58].copy_from_slice(&pod_ip.octets());
    want[62..64].copy_from_slice(&pod.port().to_be_bytes());
    assert_eq!(&want, o);

    // An error about a flow we do not know goes to the kernel untouched.
    let stranger = tcp4(NODE, 30080, CLIENT, 48999, false, b"");
    let mut g = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv4(router, NODE, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut g, &stranger[14..42])
        .unwrap();
    assert_passed_untouched(&mut b.run, &g);
}

#[test]
fn the_ingress_service_prefers_this_nodes_proxy_and_falls_back_to_others() {
    if !testbed::require_root() {
        return;
    }
    let local: SocketAddr = "198.18.0.2:8443".parse().unwrap();
    let remote: SocketAddr = "198.18.0.3:8443".parse().unwrap();
    let proxy = |local_state| {
        let mut s = service(
            "xdp-ingress",
            L4Protocol::Tcp,
            30443,
            vec![
                Endpoint {
                    node_name: Some("this".into()),
                    ..endpoint(local, local_state)
                },
                Endpoint {
                    node_name: Some("other".into()),
                    ..endpoint(remote, EndpointState::Active)
                },
            ],
        );
        s.local_proxy = true;
        Snapshot {
            version: 1,
            l4: vec![s],
            ..Default::default()
        }
    };
    let opts = L4Options {
        node_name: Some("this".into()),
        ..L4Options::default()
    };
    let mut b = bed_from(opts, &proxy(EndpointState::Active));
    for port in 0..50u16 {
        let f = tcp4(CLIENT, 20000 + port, NODE, 30443, true, b"");
        let out = b.run.run(&f).unwrap();
        assert_eq!(out.action, XDP_PASS);
        assert_eq!(
            parse_checked(&out.frame).dst,
            local,
            "new flows go to this node's proxy"
        );
    }
    // The local proxy drains: new flows go to the other node's (SNAT + XDP_TX, which needs a
    // route; without one here the packet goes to the kernel untouched, counted).
    let view = b
        .sync
        .apply(&mut b.run.ebpf, &proxy(EndpointState::Terminating))
        .unwrap();
    assert_eq!(view.tables_swapped, 1);
    let f = tcp4(CLIENT, 21000, NODE, 30443, true, b"");
    assert_passed_untouched(&mut b.run, &f);
    assert_eq!(
        stat(&b.run, Stat::PassSnatExhausted) + stat(&b.run, Stat::PassFibLookup),
        1
    );
}

#[test]
fn icmpv6_packet_too_big_about_a_reply_is_translated_for_its_pod() {
    if !testbed::require_root() {
        return;
    }
    use etherparse::{Icmpv6Header, Icmpv6Type};
    let mut b = bed();
    let syn = tcp6(48100, 30080, b"");
    let pod = dst_of(&mut b.run, &syn);
    let IpAddr::V6(pod_ip) = pod.ip() else {
        panic!()
    };

    // The reply NODE6:30080 → CLIENT6:48100 as a router quotes it.
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(NODE_MAC, CLIENT_MAC)
        .ipv6(NODE6, CLIENT6, 64)
        .tcp(30080, 48100, 1, 65535)
        .write(&mut reply, b"")
        .unwrap();
    let quoted = &reply[14..14 + 48];
    let router = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];
    let kind = Icmpv6Type::PacketTooBig { mtu: 1280 };
    let mut f = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
        .ipv6(router, NODE6, 64)
        .icmpv6(kind)
        .write(&mut f, quoted)
        .unwrap();
    let out = b.run.run(&f).unwrap();
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(stat(&b.run, Stat::L4IcmpTranslated), 1);
    let o = &out.frame;
    // Outer destination: the pod. Quoted source: the pod's address and port.
    assert_eq!(&o[38..54], &pod_ip.octets());
    assert_eq!(&o[14 + 40 + 8 + 8..14 + 40 + 8 + 24], &pod_ip.octets());
    assert_eq!(u16::from_be_bytes([o[102], o[103]]), pod.port());
    // ICMPv6 checksum over the pseudo-header (router → pod) and the rewritten message.
    let expect = Icmpv6Header::with_checksum(kind, router, pod_ip.octets(), &o[62..]).unwrap();
    assert_eq!(&o[54..62], &expect.to_bytes()[..]);
    let mut want = f.clone();
    want[38..54].copy_from_slice(&pod_ip.octets());
    want[56..58].copy_from_slice(&o[56..58]);
    want[70..86].copy_from_slice(&pod_ip.octets());
    want[102..104].copy_from_slice(&pod.port().to_be_bytes());
    assert_eq!(&want, o);
}

#[test]
fn nodeports_answer_only_on_the_nodes_addresses_when_they_are_known() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed_with(L4Options {
        local_addrs: vec![IpAddr::from(NODE), IpAddr::from(NODE6)],
        ..L4Options::default()
    });
    let f = tcp4(CLIENT, 49000, NODE, 30080, true, b"");
    assert!(pod_v4().contains(&dst_of(&mut b.run, &f)));
    // To another host through this node (a routed pod, say), same port: not ours.
    let transit = tcp4(CLIENT, 49000, [198, 19, 7, 2], 30080, true, b"");
    assert_passed_untouched(&mut b.run, &transit);
    assert!(pods()[3..].contains(&dst_of(&mut b.run, &tcp6(49000, 30080, b""))));
    // Unknown addresses (the default): any address, as the other tests rely on.
    b.sync.set_local_addrs(&mut b.run.ebpf, Vec::new()).unwrap();
    let out = b.run.run(&transit).unwrap();
    assert_ne!(out.frame, transit);
}

#[test]
fn the_sweep_deletes_flows_no_packet_comes_back_for_and_reverse_entries_without_a_flow() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed_with(L4Options {
        tcp_closing_timeout: Duration::ZERO,
        udp_timeout: Duration::ZERO,
        ..L4Options::default()
    });
    // Six TCP flows, three of which end with a FIN or RST, and two UDP flows.
    for port in 0..6u16 {
        dnat(&mut b.run, &seg4(CLIENT, 50000 + port, 30080, TCP_SYN, b""));
    }
    for (port, flags) in [
        (50000, TCP_FIN | TCP_ACK),
        (50001, TCP_RST),
        (50002, TCP_FIN),
    ] {
        dnat(&mut b.run, &seg4(CLIENT, port, 30080, flags, b""));
    }
    dnat(&mut b.run, &udp4(5500, 30053, b"q", false));
    dnat(&mut b.run, &udp4(5501, 30053, b"q", false));
    // A reverse entry whose flow is gone (long ago).
    {
        let mut rev: BpfHashMap<&mut MapData, FlowKey, RevNatEntry> =
            BpfHashMap::try_from(b.run.ebpf.map_mut(MAP_REVNAT).unwrap()).unwrap();
        let mut key = FlowKey {
            sport: 8080u16.to_be(),
            dport: 51000u16.to_be(),
            proto: 6,
            family: FAMILY_V4,
            ..FlowKey::default()
        };
        key.saddr[..4].copy_from_slice(&[198, 19, 0, 2]);
        key.daddr[..4].copy_from_slice(&CLIENT);
        let mut entry = RevNatEntry {
            client_port: 51000u16.to_be(),
            frontend_port: 30080u16.to_be(),
            last_seen_ns: 1,
            ..RevNatEntry::default()
        };
        entry.client_addr[..4].copy_from_slice(&CLIENT);
        entry.frontend_addr[..4].copy_from_slice(&NODE);
        rev.insert(key, entry, 0).unwrap();
    }
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), (8, 9));
    std::thread::sleep(Duration::from_millis(2));

    let r = flows::sweep(&mut b.run.ebpf, flows::monotonic_ns()).unwrap();
    assert_eq!((r.expired, r.orphans), (5, 1), "{r:?}");
    assert_eq!(
        (r.tables.flows, r.tables.reverse, r.tables.capacity),
        (3, 3, 65536)
    );
    assert_eq!((conntrack_len(&b.run), revnat_len(&b.run)), (3, 3));
    // The open flows are untouched and keep working.
    for port in 50003..50006u16 {
        dnat(&mut b.run, &seg4(CLIENT, port, 30080, TCP_ACK, b"x"));
    }
}

/// The service `web` on 30080 with no endpoints at all.
fn no_endpoints() -> Snapshot {
    Snapshot {
        version: 1,
        l4: vec![
            service("web", L4Protocol::Tcp, 30080, vec![]),
            service("dns", L4Protocol::Udp, 30053, vec![]),
        ],
        ..Default::default()
    }
}

#[test]
fn a_new_flow_to_a_service_without_endpoints_is_refused_at_once_rst_or_port_unreachable() {
    if !testbed::require_root() {
        return;
    }
    let mut b = bed_from(L4Options::default(), &no_endpoints());
    // A SYN with data (TFO-like): <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK> back to the
    // client, headers only (RFC 9293 3.10.7.1), as kube-proxy's REJECT (tcp-reset) answers.
    let syn = tcp4(CLIENT, 40000, NODE, 30080, true, b"hello");
    let out = b.run.run(&syn).unwrap();
    assert_eq!(out.action, XDP_TX);
    let mut want = Vec::new();
    PacketBuilder::ethernet2(NODE_MAC, CLIENT_MAC)
        .ipv4(NODE, CLIENT, 64)
        .tcp(30080, 40000, 0, 0)
        .rst()
        .ack(1000 + 1 + 5)
        .write(&mut want, b"")
        .unwrap();
    assert_eq!(out.frame, want);
    assert_eq!(stat(&b.run, Stat::L4RejectNoEndpoint), 1);

    // IPv6: the same, checksum over the pseudo-header.
    let syn6 = tcp6(40002, 30080, b"");
    let out = b.run.run(&syn6).unwrap();
    assert_eq!(out.action, XDP_TX);
    let mut want = Vec::new();
    PacketBuilder::ethernet2(NODE_MAC, CLIENT_MAC)
        .ipv6(NODE6, CLIENT6, 64)
        .tcp(30080, 40002, 0, 0)
        .rst()
        .ack(1001)
        .write(&mut want, b"")
        .unwrap();
    assert_eq!(out.frame, want);

    // Never a RST for a RST: a segment that is no SYN opens no flow, so it goes to the kernel
    // untouched (`pass_no_flow`) before any endpoint is looked for.
    let mut rst = tcp4(CLIENT, 40003, NODE, 30080, false, b"");
    rst[14 + 20 + 13] |= 0x04;
    let out = b.run.run(&rst).unwrap();
    assert_eq!((out.action, out.frame == rst), (XDP_PASS, true));
    assert_eq!(stat(&b.run, Stat::L4RejectNoEndpoint), 2);
    assert_eq!(stat(&b.run, Stat::PassNoFlow), 1);

    // UDP: ICMP port unreachable quoting the datagram's IP and UDP headers (kube-proxy's
    // REJECT default, icmp-port-unreachable).
    let dgram = udp4(40004, 30053, b"query", false);
    let out = b.run.run(&dgram).unwrap();
    assert_eq!(out.action, XDP_TX);
    let mut want = Vec::new();
    PacketBuilder::ethernet2(NODE_MAC, CLIENT_MAC)
        .ipv4(NODE, CLIENT, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut want, &dgram[14..14 + 28])
        .unwrap();
    assert_eq!(out.frame, want);
    let dgram6 = udp_frame(
        [CLIENT_MAC, NODE_MAC],
        (CLIENT6, 40005).into(),
        (NODE6, 30053).into(),
        b"query",
    );
    let out = b.run.run(&dgram6).unwrap();
    assert_eq!(out.action, XDP_TX);
    let mut want = Vec::new();
    PacketBuilder::ethernet2(NODE_MAC, CLIENT_MAC)
        .ipv6(NODE6, CLIENT6, 64)
        .icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
            etherparse::icmpv6::DestUnreachableCode::Port,
        ))
        .write(&mut want, &dgram6[14..14 + 48])
        .unwrap();
    assert_eq!(out.frame, want);
    assert_eq!(stat(&b.run, Stat::L4RejectNoEndpoint), 4);
}

#[test]
fn external_traffic_policy_local_keeps_flows_on_this_nodes_pod_with_the_client_address() {
    if !testbed::require_root() {
        return;
    }
    let local: SocketAddr = "198.19.0.2:8080".parse().unwrap();
    let remote: SocketAddr = "198.18.0.9:8080".parse().unwrap();
    let snap = |eps: Vec<(SocketAddr, &str)>| {
        let mut s = service(
            "web",
            L4Protocol::Tcp,
            30080,
            eps.into_iter()
                .map(|(a, n)| Endpoint {
                    node_name: Some(n.into()),
                    ..endpoint(a, EndpointState::Active)
                })
                .collect(),
        );
        s.external_traffic_local = true;
        Snapshot {
            version: 1,
            l4: vec![s],
            ..Default::default()
        }
    };
    let opts = L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this".into()),
        ..L4Options::default()
    };
    let mut b = bed_from(opts, &snap(vec![(local, "this"), (remote, "other")]));
    // 30 connections: every one to the local pod, the client's address kept (DNAT only).
    for port in 0..30u16 {
        let f = tcp4(CLIENT, 41000 + port, NODE, 30080, true, b"");
        let out = b.run.run(&f).unwrap();
        assert_eq!(out.action, XDP_PASS);
        assert_only_dnat(&f, &out.frame);
        assert_eq!(parse_checked(&out.frame).dst, local);
    }
    assert_eq!(stat(&b.run, Stat::L4LocalDnat), 30);

    // No local endpoint left: new flows are dropped (not refused, not sent elsewhere).
    b.sync
        .apply(&mut b.run.ebpf, &snap(vec![(remote, "other")]))
        .unwrap();
    let f = tcp4(CLIENT, 42000, NODE, 30080, true, b"");
    assert_eq!(b.run.run(&f).unwrap().action, XDP_DROP);
    assert_eq!(stat(&b.run, Stat::DropNoLocalEndpoint), 1);
    assert_eq!(stat(&b.run, Stat::L4RejectNoEndpoint), 0);
}
