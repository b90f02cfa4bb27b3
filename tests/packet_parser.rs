//! The XDP parser on a table of good and malformed frames, through BPF_PROG_TEST_RUN: every
//! frame is passed to the kernel unchanged and counted under exactly the expected reasons.

use aya::maps::PerCpuArray;
use etherparse::PacketBuilder;
use ingress_common::{
    PROG_XDP_INGRESS,
    stats::{Counter, Stat, StatKind},
};
use testbed::xdp_run::{XDP_PASS, XdpTestRun};
use xdp_ingress::dataplane::stats::{self, StatsView};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

fn read_stats(run: &XdpTestRun) -> StatsView {
    let map = run
        .ebpf
        .map(ingress_common::stats::MAP_STATS)
        .expect("stats map");
    let array: PerCpuArray<_, Counter> = PerCpuArray::try_from(map).expect("per-cpu array");
    stats::read(&array).expect("read stats")
}

fn ipv4_tcp() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 80, 1, 65535)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("build");
    v
}

fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .udp(40000, 53);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build");
    v
}

fn ipv6_tcp() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .tcp(40000, 443, 1, 65535)
        .syn();
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("build");
    v
}

fn ipv6_udp() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(40000, 53);
    let mut v = Vec::new();
    b.write(&mut v, b"hello").expect("build");
    v
}

/// Inserts IPv4 options (NOPs + EOL) after the fixed header and fixes IHL, length, checksum.
fn with_ipv4_options(frame: &[u8], option_words: usize) -> Vec<u8> {
    let mut v = frame[..34].to_vec();
    v.extend(std::iter::repeat_n(1u8, option_words * 4 - 1));
    v.push(0);
    v.extend_from_slice(&frame[34..]);
    v[14] = 0x40 | (5 + option_words as u8);
    let tot = (v.len() - 14) as u16;
    v[16..18].copy_from_slice(&tot.to_be_bytes());
    v[24..26].copy_from_slice(&[0, 0]);
    let csum = ipv4_checksum(&v[14..14 + (5 + option_words) * 4]);
    v[24..26].copy_from_slice(&csum.to_be_bytes());
    v
}

fn ipv4_checksum(hdr: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in hdr.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Inserts one 802.1Q tag with `inner` as the encapsulated ethertype.
fn vlan_tagged(frame: &[u8], tags: usize) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    for _ in 0..tags {
        v.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    v.extend_from_slice(&frame[12..]);
    v
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&DST_MAC);
    v.extend_from_slice(&SRC_MAC);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    expect: &'static [Stat],
}

fn cases() -> Vec<Case> {
    let tcp4 = ipv4_tcp();
    let udp4 = ipv4_udp(b"payload");
    let mut bad_ihl = tcp4.clone();
    bad_ihl[14] = 0x43;
    let mut bad_version = tcp4.clone();
    bad_version[14] = 0x55;
    let mut options_cut = tcp4[..34].to_vec();
    options_cut[14] = 0x4f; // IHL 15 = 60 bytes, only 20 present
    let mut fragment = udp4.clone();
    fragment[20] = 0x20; // MF
    let mut later_fragment = udp4.clone();
    later_fragment[20..22].copy_from_slice(&[0x00, 0x10]); // offset 128
    let mut tcp_doff_small = tcp4.clone();
    tcp_doff_small[46] = 0x40; // data offset 4 words
    let mut tcp_doff_long = tcp4.clone();
    tcp_doff_long[46] = 0xf0; // data offset 60 bytes, frame has 20
    let mut v6_hop_by_hop = ipv6_udp();
    v6_hop_by_hop[20] = 0; // next header: hop-by-hop options
    let mut v6_bad_version = ipv6_udp();
    v6_bad_version[14] = 0x40;
    // Length fields that disagree with the frame (found by tests/packet_fuzz.rs: a UDP
    // datagram longer than its IP packet was SNATed and sent out with XDP_TX).
    let set16 = |f: &[u8], at: usize, v: u16| {
        let mut f = f.to_vec();
        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
        f
    };
    let udp4_len = (udp4.len() - 14) as u16;
    let ip_past_frame = set16(&udp4, 16, udp4_len + 1);
    let ip_shorter_than_header = set16(&udp4, 16, 19);
    let udp_past_ip = set16(&udp4, 38, udp4_len - 20 + 1);
    let udp_under_header = set16(&udp4, 38, 7);
    let mut padded = udp4.clone();
    padded.extend_from_slice(&[0u8; 12]);
    // 20 bytes of TCP header, but the IP packet says 10 of them (the rest padding).
    let tcp_past_ip = set16(&tcp4, 16, 30);
    let v6_len = (ipv6_udp().len() - 54) as u16;
    let v6_past_frame = set16(&ipv6_udp(), 18, v6_len + 1);
    let v6_udp_past_ip = set16(&ipv6_udp(), 58, v6_len + 1);
    use Stat::*;
    vec![
        Case {
            name: "ipv4 total length past the frame",
            frame: ip_past_frame,
            expect: &[Rx, PassTruncatedIpv4],
        },
        Case {
            name: "ipv4 total length shorter than its header",
            frame: ip_shorter_than_header,
            expect: &[Rx, PassBadIpv4Header],
        },
        Case {
            name: "udp length past the ip packet",
            frame: udp_past_ip,
            expect: &[Rx, PassTruncatedUdp],
        },
        Case {
            name: "udp length under its header",
            frame: udp_under_header,
            expect: &[Rx, PassTruncatedUdp],
        },
        Case {
            name: "ipv4 udp with ethernet padding",
            frame: padded,
            expect: &[Rx, Ipv4Udp, PassNoService],
        },
        Case {
            name: "tcp header past the ip packet",
            frame: tcp_past_ip,
            expect: &[Rx, PassTruncatedTcp],
        },
        Case {
            name: "ipv6 payload length past the frame",
            frame: v6_past_frame,
            expect: &[Rx, PassTruncatedIpv6],
        },
        Case {
            name: "ipv6 udp length past the ip packet",
            frame: v6_udp_past_ip,
            expect: &[Rx, PassTruncatedUdp],
        },
        Case {
            name: "ipv4 tcp",
            frame: tcp4.clone(),
            expect: &[Rx, Ipv4Tcp, PassNoService],
        },
        Case {
            name: "ipv4 udp",
            frame: udp4.clone(),
            expect: &[Rx, Ipv4Udp, PassNoService],
        },
        Case {
            name: "ipv4 tcp with options",
            frame: with_ipv4_options(&tcp4, 3),
            expect: &[Rx, Ipv4Tcp, PassNoService],
        },
        Case {
            name: "ipv4 udp with 40 bytes of options",
            frame: with_ipv4_options(&udp4, 10),
            expect: &[Rx, Ipv4Udp, PassNoService],
        },
        Case {
            name: "vlan ipv4 udp",
            frame: vlan_tagged(&udp4, 1),
            expect: &[Rx, Ipv4Udp, Vlan, PassNoService],
        },
        Case {
            name: "vlan ipv6 tcp",
            frame: vlan_tagged(&ipv6_tcp(), 1),
            expect: &[Rx, Ipv6Tcp, Vlan, PassNoService],
        },
        Case {
            name: "double vlan (qinq) not parsed",
            frame: vlan_tagged(&udp4, 2),
            expect: &[Rx, PassTruncatedVlan],
        },
        Case {
            name: "vlan tag cut short",
            frame: eth(0x8100, &[0x00]),
            expect: &[Rx, PassTruncatedVlan],
        },
        Case {
            name: "ipv6 tcp",
            frame: ipv6_tcp(),
            expect: &[Rx, Ipv6Tcp, PassNoService],
        },
        Case {
            name: "ipv6 udp",
            frame: ipv6_udp(),
            expect: &[Rx, Ipv6Udp, PassNoService],
        },
        Case {
            name: "ipv6 hop-by-hop",
            frame: v6_hop_by_hop,
            expect: &[Rx, Ipv6Other, PassIpv6ExtHeader],
        },
        Case {
            name: "ipv6 wrong version",
            frame: v6_bad_version,
            expect: &[Rx, PassTruncatedIpv6],
        },
        Case {
            name: "ipv6 header cut short",
            frame: ipv6_tcp()[..40].to_vec(),
            expect: &[Rx, PassTruncatedIpv6],
        },
        Case {
            name: "arp",
            frame: eth(0x0806, &[0u8; 28]),
            expect: &[Rx, Arp, PassNonIp],
        },
        Case {
            name: "lldp (non-ip)",
            frame: eth(0x88cc, &[0u8; 32]),
            expect: &[Rx, PassNonIp],
        },
        Case {
            name: "ethernet only, ipv4 ethertype",
            frame: eth(0x0800, &[]),
            expect: &[Rx, PassTruncatedIpv4],
        },
        Case {
            name: "ipv4 header cut short",
            frame: tcp4[..24].to_vec(),
            expect: &[Rx, PassTruncatedIpv4],
        },
        Case {
            name: "ipv4 ihl below 5",
            frame: bad_ihl,
            expect: &[Rx, PassBadIpv4Header],
        },
        Case {
            name: "ipv4 version 5",
            frame: bad_version,
            expect: &[Rx, PassBadIpv4Header],
        },
        Case {
            name: "ipv4 options beyond frame",
            frame: options_cut,
            expect: &[Rx, PassTruncatedIpv4],
        },
        Case {
            name: "tcp header cut short",
            frame: tcp4[..44].to_vec(),
            expect: &[Rx, PassTruncatedTcp],
        },
        Case {
            name: "tcp data offset below 5",
            frame: tcp_doff_small,
            expect: &[Rx, PassTruncatedTcp],
        },
        Case {
            name: "tcp options beyond frame",
            frame: tcp_doff_long,
            expect: &[Rx, PassTruncatedTcp],
        },
        Case {
            name: "udp header cut short",
            frame: udp4[..38].to_vec(),
            expect: &[Rx, PassTruncatedUdp],
        },
        Case {
            name: "ipv4 first fragment",
            frame: fragment,
            expect: &[Rx, Ipv4Udp, PassIpv4Fragment],
        },
        Case {
            name: "ipv4 later fragment",
            frame: later_fragment,
            expect: &[Rx, Ipv4Udp, PassIpv4Fragment],
        },
    ]
}

#[test]
fn every_frame_is_passed_unchanged_and_counted_under_its_reason() {
    if !testbed::require_root() {
        return;
    }
    let mut run = XdpTestRun::load(PROG_XDP_INGRESS).expect("load xdp_ingress");
    for case in cases() {
        let before = read_stats(&run);
        let out = run
            .run(&case.frame)
            .unwrap_or_else(|e| panic!("{}: test run failed: {e:#}", case.name));
        assert_eq!(out.action, XDP_PASS, "{}: action", case.name);
        assert_eq!(
            out.frame, case.frame,
            "{}: frame must leave untouched",
            case.name
        );
        let after = read_stats(&run);
        for &stat in Stat::ALL {
            let delta = after.get(stat).packets - before.get(stat).packets;
            let want = u64::from(case.expect.contains(&stat));
            assert_eq!(
                delta,
                want,
                "{}: counter {} moved by {delta}, want {want}",
                case.name,
                stat.label()
            );
            if want == 1 {
                let bytes = after.get(stat).bytes - before.get(stat).bytes;
                assert_eq!(
                    bytes,
                    case.frame.len() as u64,
                    "{}: bytes of {}",
                    case.name,
                    stat.label()
                );
            }
        }
        // Exactly one protocol or reason family records each malformed frame.
        let reasons = case
            .expect
            .iter()
            .filter(|s| s.kind() == StatKind::Pass)
            .count();
        assert_eq!(reasons, 1, "{}: the table names one pass reason", case.name);
    }
}

#[test]
fn frames_shorter_than_ethernet_never_reach_the_program() {
    if !testbed::require_root() {
        return;
    }
    // The kernel refuses test frames below ETH_HLEN, as drivers never hand such frames to XDP;
    // the program still checks for them (PassTruncatedEth) rather than trusting that.
    let mut run = XdpTestRun::load(PROG_XDP_INGRESS).expect("load xdp_ingress");
    for len in [0usize, 1, 13] {
        assert!(
            run.run(&vec![0u8; len]).is_err(),
            "{len}-byte frame accepted by test run"
        );
    }
    let out = run.run(&eth(0x0800, &[])).expect("14-byte frame");
    assert_eq!(out.action, XDP_PASS);
}

#[test]
fn random_garbage_never_aborts() {
    if !testbed::require_root() {
        return;
    }
    let mut run = XdpTestRun::load(PROG_XDP_INGRESS).expect("load xdp_ingress");
    // A fixed xorshift stream: reproducible, and covers every ethertype/IHL/offset shape.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..2000 {
        let len = 14 + (next() % 200) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias half of them towards IPv4/IPv6/VLAN so the deeper parsers see garbage too.
        match i % 4 {
            0 => frame[12..14].copy_from_slice(&[0x08, 0x00]),
            1 => frame[12..14].copy_from_slice(&[0x86, 0xdd]),
            2 => frame[12..14].copy_from_slice(&[0x81, 0x00]),
            _ => {}
        }
        let out = run.run(&frame).expect("test run");
        assert_eq!(
            out.action, XDP_PASS,
            "frame {i} ({len} bytes) got action {}",
            out.action
        );
    }
}
