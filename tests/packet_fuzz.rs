//! Random and mutated frames through the XDP program (BPF_PROG_TEST_RUN, inside a test-bed
//! node namespace so the SNAT path's FIB lookups work): no frame aborts the program and no
//! half-rewritten frame leaves it. For each frame the verdict is PASS, DROP, TX or REDIRECT;
//! a TX/REDIRECT frame has consistent lengths and, when the input's checksums were right,
//! right IPv4/TCP/UDP checksums (RFC 791, 793, 768; the RFC 1624 incremental update keeps
//! a wrong one wrong, as routers do); a PASS frame is either the input unchanged or the
//! input with only the destination address, port and checksums rewritten to one of the
//! service's pods (a complete DNAT), with right checksums when the input's were.
//!
//! Seeded (`XDP_INGRESS_FUZZ_SEED`, default fixed) and sized by `XDP_INGRESS_FUZZ_FRAMES`
//! (default 1 000 000), so a failure replays: the message names the seed, the frame's index and
//! its bytes. The mutations start from valid NodePort frames: truncation, bit flips, random
//! length fields, IPv4 options and header lengths, fragments, VLAN tags (802.1Q, QinQ), IPv6
//! extension headers, TCP data offsets and options, random trailers, random bytes.

mod l4common;

use std::net::{IpAddr, SocketAddr};

use ingress_common::PROG_XDP_INGRESS;
use l4common::{
    TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, active, endpoint, ifindex, load, service,
    static_neigh, tcp_segment, udp_frame, xdp_md,
};
use testbed::{
    NODE_IFACE, Topology,
    xdp_run::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
};
use xdp_ingress::{
    dataplane::{L4Options, L4Sync},
    model::{Endpoint, EndpointState, IpPrefix, L4Protocol, L4Service, Snapshot},
};

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const REMOTE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const CLIENT: [u8; 4] = [198, 18, 0, 1];
const NODE: [u8; 4] = [198, 18, 0, 2];
const REMOTE: [u8; 4] = [198, 18, 0, 9];
const CLIENT6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const NODE6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// The default seed: any fixed value; a failure message names the one used.
const DEFAULT_SEED: u64 = 0x5eed_f00d_0014;
const DEFAULT_FRAMES: u64 = 1_000_000;

/// SplitMix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Local pods (v4 and v6: DNAT and PASS) and one remote endpoint (SNAT and XDP_TX).
fn pods() -> Vec<SocketAddr> {
    (0..3)
        .map(|i| format!("198.19.{i}.2:8080").parse().unwrap())
        .chain((0..3).map(|i| format!("[2001:db8:1:{i}::2]:8080").parse().unwrap()))
        .collect()
}

fn remote_backend() -> SocketAddr {
    SocketAddr::new(IpAddr::from(REMOTE), 9000)
}

/// web:30080 and dns:30053/UDP on the local pods, sticky:30081 (ClientIP affinity),
/// ranges:30083 (198.18.0.0/24 only: others dropped), remote:30090 and remote-udp:30091 on
/// an endpoint of another node.
fn snapshot() -> Snapshot {
    let p = pods();
    let mut sticky = service("sticky", L4Protocol::Tcp, 30081, active(&p));
    sticky.client_ip_affinity = Some(std::time::Duration::from_secs(10));
    let remote = |name: &str, proto, port| {
        let ep = Endpoint {
            node_name: Some("other-node".into()),
            ..endpoint(remote_backend(), EndpointState::Active)
        };
        L4Service {
            id: name.into(),
            ..service(name, proto, port, vec![ep])
        }
    };
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
            ranges,
            service("dns", L4Protocol::Udp, 30053, active(&p)),
            remote("remote", L4Protocol::Tcp, 30090),
            remote("remote-udp", L4Protocol::Udp, 30091),
        ],
        ..Default::default()
    }
}

/// Valid frames to the NodePorts (and one to a port no service has), the mutations' seeds.
fn seeds(node_mac: [u8; 6]) -> Vec<Vec<u8>> {
    let macs = [CLIENT_MAC, node_mac];
    let v4 = |port| SocketAddr::from((NODE, port));
    let v6 = |port| SocketAddr::from((NODE6, port));
    let c4 = SocketAddr::from((CLIENT, 40000));
    let c6 = SocketAddr::from((CLIENT6, 40000));
    let mut out = Vec::new();
    for port in [30080, 30081, 30090, 31999] {
        out.push(tcp_segment(macs, c4, v4(port), 1, TCP_SYN, b""));
        out.push(tcp_segment(
            macs,
            c4,
            v4(port),
            1,
            TCP_ACK | TCP_PSH,
            b"GET / HTTP/1.1\r\n",
        ));
        out.push(tcp_segment(macs, c4, v4(port), 1, TCP_FIN | TCP_ACK, b""));
        out.push(tcp_segment(macs, c4, v4(port), 1, TCP_RST, b""));
        out.push(tcp_segment(macs, c6, v6(port), 1, TCP_SYN, b""));
        out.push(tcp_segment(macs, c6, v6(port), 1, TCP_ACK, b"data"));
    }
    let outsider = SocketAddr::from(([203, 0, 113, 9], 40000));
    out.push(tcp_segment(macs, outsider, v4(30083), 1, TCP_SYN, b""));
    out.push(tcp_segment(macs, c4, v4(30083), 1, TCP_SYN, b""));
    for port in [30053, 30091] {
        out.push(udp_frame(macs, c4, v4(port), b"query"));
        let mut zero = udp_frame(macs, c4, v4(port), b"no checksum");
        zero[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        out.push(zero);
        out.push(udp_frame(macs, c6, v6(port), b"query6"));
    }
    out
}

// --- Frame layout and checksums (independent of etherparse, which refuses odd frames). ---

/// Where a frame's IP and transport headers are, by its own length fields.
#[derive(Debug, Clone, Copy)]
struct Layout {
    l3: usize,
    v6: bool,
    /// Transport header offset.
    l4: usize,
    proto: u8,
    /// End of the IP packet by its length field (may exceed the frame).
    ip_end: usize,
    /// An IPv4 fragment (MF or an offset) or an IPv6 Fragment header.
    fragment: bool,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

fn layout(f: &[u8]) -> Option<Layout> {
    let mut at = 12;
    let mut ethertype = be16(f, at)?;
    while ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        at += 4;
        ethertype = be16(f, at)?;
    }
    let l3 = at + 2;
    match ethertype {
        ETH_P_IP => {
            let vihl = *f.get(l3)?;
            let ihl = usize::from(vihl & 0xf) * 4;
            if vihl >> 4 != 4 || ihl < 20 || f.len() < l3 + ihl {
                return None;
            }
            let frag = be16(f, l3 + 6)?;
            Some(Layout {
                l3,
                v6: false,
                l4: l3 + ihl,
                proto: f[l3 + 9],
                ip_end: l3 + usize::from(be16(f, l3 + 2)?),
                fragment: frag & 0x3fff != 0,
            })
        }
        ETH_P_IPV6 => {
            if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
                return None;
            }
            let mut next = f[l3 + 6];
            let mut l4 = l3 + 40;
            let mut fragment = false;
            // Hop-by-hop, routing, destination options, fragment: at most a few.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        next = *f.get(l4)?;
                        l4 += (usize::from(*f.get(l4 + 1)?) + 1) * 8;
                    }
                    44 => {
                        fragment = true;
                        next = *f.get(l4)?;
                        l4 += 8;
                    }
                    _ => break,
                }
            }
            Some(Layout {
                l3,
                v6: true,
                l4,
                proto: next,
                ip_end: l3 + 40 + usize::from(be16(f, l3 + 4)?),
                fragment,
            })
        }
        _ => None,
    }
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn folds_to_ffff(mut acc: u32) -> bool {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc == 0xffff
}

/// Whether the frame is a whole, well-formed TCP or UDP packet with right checksums (IPv4
/// header; TCP/UDP over the pseudo-header; a zero UDP/IPv4 checksum is "none"): the frames a
/// NAT must keep right.
fn checksums_ok(f: &[u8], l: &Layout) -> bool {
    if l.fragment || l.ip_end > f.len() || l.l4 > l.ip_end {
        return false;
    }
    if !matches!(l.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return false;
    }
    let seg = &f[l.l4..l.ip_end];
    let min = if l.proto == IPPROTO_TCP { 20 } else { 8 };
    if seg.len() < min {
        return false;
    }
    if l.proto == IPPROTO_UDP && usize::from(u16::from_be_bytes([seg[4], seg[5]])) != seg.len() {
        return false;
    }
    let (addrs, ip_ok) = if l.v6 {
        (&f[l.l3 + 8..l.l3 + 40], true)
    } else {
        let header = &f[l.l3..l.l4];
        (&f[l.l3 + 12..l.l3 + 20], folds_to_ffff(sum16(header, 0)))
    };
    if !ip_ok {
        return false;
    }
    let at = if l.proto == IPPROTO_TCP { 16 } else { 6 };
    let csum = u16::from_be_bytes([seg[at], seg[at + 1]]);
    if l.proto == IPPROTO_UDP && !l.v6 && csum == 0 {
        return true;
    }
    let len = u32::try_from(seg.len()).unwrap();
    let pseudo = sum16(addrs, 0) + u32::from(l.proto) + (len >> 16) + (len & 0xffff);
    folds_to_ffff(sum16(seg, pseudo))
}

/// The byte ranges a DNAT may rewrite: destination address and port, IPv4 header checksum,
/// TCP/UDP checksum.
fn dnat_fields(l: &Layout) -> Vec<std::ops::Range<usize>> {
    let mut v = Vec::with_capacity(4);
    v.push(l.l4 + 2..l.l4 + 4);
    if l.v6 {
        v.push(l.l3 + 24..l.l3 + 40);
    } else {
        v.push(l.l3 + 16..l.l3 + 20);
        v.push(l.l3 + 10..l.l3 + 12);
    }
    v.push(match l.proto {
        IPPROTO_TCP => l.l4 + 16..l.l4 + 18,
        _ => l.l4 + 6..l.l4 + 8,
    });
    v
}

fn dst_of(f: &[u8], l: &Layout) -> Option<SocketAddr> {
    let port = be16(f, l.l4 + 2)?;
    let ip: IpAddr = if l.v6 {
        <[u8; 16]>::try_from(f.get(l.l3 + 24..l.l3 + 40)?)
            .ok()?
            .into()
    } else {
        <[u8; 4]>::try_from(f.get(l.l3 + 16..l.l3 + 20)?)
            .ok()?
            .into()
    };
    Some(SocketAddr::new(ip, port))
}

// --- Mutations. ---

/// Inserts `bytes` at `at` (clamped to the frame).
fn insert(f: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(f.len());
    f.splice(at..at, bytes.iter().copied());
}

/// Fixes the IP length field(s) and IPv4 header checksum after a structural mutation, so
/// the mutation reaches past the parser's length checks.
fn fix_lengths(f: &mut [u8]) {
    let Some(l) = layout(f) else { return };
    if l.v6 {
        let len = u16::try_from(f.len().saturating_sub(l.l3 + 40)).unwrap_or(u16::MAX);
        f[l.l3 + 4..l.l3 + 6].copy_from_slice(&len.to_be_bytes());
    } else {
        let len = u16::try_from(f.len() - l.l3).unwrap_or(u16::MAX);
        f[l.l3 + 2..l.l3 + 4].copy_from_slice(&len.to_be_bytes());
        f[l.l3 + 10..l.l3 + 12].copy_from_slice(&[0, 0]);
        let mut acc = sum16(&f[l.l3..l.l4], 0);
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        f[l.l3 + 10..l.l3 + 12].copy_from_slice(&(!(acc as u16)).to_be_bytes());
    }
}

fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    let l = layout(f);
    match rng.below(13) {
        // Truncation (never below an Ethernet header: the kernel refuses those).
        0 => {
            let keep = 14 + rng.below(f.len().saturating_sub(14).max(1));
            f.truncate(keep);
        }
        // Bit flips, mostly in the headers.
        1 => {
            for _ in 0..1 + rng.below(4) {
                let span = if rng.chance(80) {
                    f.len().min(80)
                } else {
                    f.len()
                };
                let i = rng.below(span);
                f[i] ^= 1 << rng.below(8);
            }
        }
        // A random IP or transport length field.
        2 => {
            if let Some(l) = l {
                let at = match rng.below(3) {
                    0 if l.v6 => l.l3 + 4,
                    0 => l.l3 + 2,
                    1 if l.proto == IPPROTO_UDP => l.l4 + 4,
                    // TCP data offset / IHL nibble.
                    1 => l.l4 + 12,
                    _ => l.l3,
                };
                if at + 1 < f.len() {
                    let v = if rng.chance(50) {
                        rng.next() as u16
                    } else {
                        // Off by a little: the interesting boundaries.
                        (be16(f, at).unwrap_or(0) as i32 + rng.below(9) as i32 - 4) as u16
                    };
                    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
        }
        // IPv4 options (a header of 24..60 bytes), lengths fixed.
        3 => {
            if let Some(l) = l.filter(|l| !l.v6) {
                let words = 1 + rng.below(10);
                let mut opts: Vec<u8> = (0..words * 4).map(|_| rng.byte()).collect();
                if rng.chance(50) {
                    opts.fill(1); // NOPs
                }
                insert(f, l.l4, &opts);
                let ihl = ((l.l4 - l.l3) / 4 + words).min(15) as u8;
                f[l.l3] = 0x40 | ihl;
                fix_lengths(f);
            }
        }
        // Fragments: MF, an offset, or both (IPv4); a Fragment header (IPv6).
        4 => {
            if let Some(l) = l {
                if l.v6 {
                    let off = (rng.below(8) as u16 * 8) | u16::from(rng.chance(50));
                    let mut h = vec![f[l.l3 + 6], 0];
                    h.extend_from_slice(&off.to_be_bytes());
                    h.extend((0..4).map(|_| rng.byte()));
                    insert(f, l.l3 + 40, &h);
                    f[l.l3 + 6] = 44;
                    fix_lengths(f);
                } else {
                    let v = match rng.below(3) {
                        0 => 0x2000,
                        1 => rng.below(0x1fff) as u16 + 1,
                        _ => 0x2000 | (rng.below(0x1fff) as u16 + 1),
                    };
                    f[l.l3 + 6..l.l3 + 8].copy_from_slice(&v.to_be_bytes());
                    if rng.chance(50) {
                        fix_lengths(f);
                    }
                }
            }
        }
        // VLAN tags: 802.1Q, QinQ.
        5 => {
            let tpid = if rng.chance(70) {
                ETH_P_8021Q
            } else {
                ETH_P_8021AD
            };
            let mut tag = tpid.to_be_bytes().to_vec();
            tag.extend_from_slice(&(rng.next() as u16 & 0x0fff).to_be_bytes());
            insert(f, 12, &tag);
        }
        // IPv6 extension headers before the transport header.
        6 => {
            if let Some(l) = l.filter(|l| l.v6) {
                let kind = [0u8, 43, 60][rng.below(3)];
                let units = rng.below(3);
                let mut h = vec![f[l.l3 + 6], units as u8];
                h.extend((0..units * 8 + 6).map(|_| if rng.chance(70) { 0 } else { rng.byte() }));
                insert(f, l.l3 + 40, &h);
                f[l.l3 + 6] = kind;
                fix_lengths(f);
            }
        }
        // TCP options (data offset fixed, or not).
        7 => {
            if let Some(l) = l.filter(|l| l.proto == IPPROTO_TCP && l.l4 + 20 <= f.len()) {
                let words = 1 + rng.below(10);
                let opts: Vec<u8> = (0..words * 4).map(|_| rng.byte()).collect();
                let doff = usize::from(f[l.l4 + 12] >> 4) * 4;
                insert(f, l.l4 + doff.clamp(20, 60), &opts);
                if rng.chance(80) {
                    f[l.l4 + 12] =
                        ((((doff / 4) + words).min(15) as u8) << 4) | (f[l.l4 + 12] & 0xf);
                }
                fix_lengths(f);
            }
        }
        // A random trailer (Ethernet padding, or garbage past the IP length).
        8 => {
            let n = 1 + rng.below(64);
            f.extend((0..n).map(|_| rng.byte()));
        }
        // Another protocol number or EtherType.
        9 => {
            if let Some(l) = l.filter(|l| rng.chance(50) && !l.v6) {
                f[l.l3 + 9] = [1, 6, 17, 47, 58, 132, rng.byte()][rng.below(7)];
            } else {
                let t: u16 = [0x0806, 0x86dd, 0x0800, 0x8100, rng.next() as u16][rng.below(5)];
                f[12..14].copy_from_slice(&t.to_be_bytes());
            }
        }
        // A random IP header length / version nibble.
        10 => {
            if let Some(l) = l {
                f[l.l3] = rng.byte();
            }
        }
        // A TCP flags byte at random (SYN+RST, SYN+FIN, none...).
        11 => {
            if let Some(l) = l.filter(|l| l.proto == IPPROTO_TCP && l.l4 + 14 <= f.len()) {
                f[l.l4 + 13] = rng.byte();
            }
        }
        // Another valid source: new flows, affinity entries.
        _ => {
            if let Some(l) = l {
                let at = if l.v6 { l.l3 + 8 } else { l.l3 + 12 };
                f[at + 3] = rng.byte();
                if l.l4 + 2 <= f.len() {
                    f[l.l4..l.l4 + 2].copy_from_slice(&(rng.next() as u16).to_be_bytes());
                }
            }
        }
    }
}

/// The next test frame: a seed mutated 1-3 times, or (1 in 20) random bytes.
fn frame(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.chance(5) {
        let len = 14 + rng.below(200);
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut f = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(3) {
        mutate(rng, &mut f);
    }
    if f.len() < 14 {
        f.resize(14, 0);
    }
    f
}

// --- The checks. ---

/// What was seen, for the summary line.
#[derive(Debug, Default)]
struct Tally {
    pass_unchanged: u64,
    pass_dnat: u64,
    drop: u64,
    tx: u64,
    redirect: u64,
}

/// Checks one verdict; `Err` describes the violation.
fn check(input: &[u8], action: u32, out: &[u8], t: &mut Tally) -> Result<(), String> {
    match action {
        XDP_DROP => {
            t.drop += 1;
            Ok(())
        }
        XDP_PASS if out == input => {
            t.pass_unchanged += 1;
            Ok(())
        }
        XDP_PASS => {
            t.pass_dnat += 1;
            check_dnat(input, out)
        }
        XDP_TX | XDP_REDIRECT => {
            if action == XDP_TX {
                t.tx += 1;
            } else {
                t.redirect += 1;
            }
            check_forwarded(input, out)
        }
        XDP_ABORTED => Err("XDP_ABORTED".into()),
        other => Err(format!("unknown XDP action {other}")),
    }
}

/// A passed frame that changed: a complete DNAT to one of the pods.
fn check_dnat(input: &[u8], out: &[u8]) -> Result<(), String> {
    if input.len() != out.len() {
        return Err(format!(
            "PASS changed the length {} -> {}",
            input.len(),
            out.len()
        ));
    }
    let l = layout(input).ok_or("PASS rewrote a frame that is not IP")?;
    if !matches!(l.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return Err(format!("PASS rewrote protocol {}", l.proto));
    }
    let allowed = dnat_fields(&l);
    if let Some(i) =
        (0..input.len()).find(|i| input[*i] != out[*i] && !allowed.iter().any(|r| r.contains(i)))
    {
        return Err(format!(
            "PASS rewrote byte {i}, outside the DNAT fields {allowed:?}"
        ));
    }
    let dst = dst_of(out, &l).ok_or("no destination")?;
    if !pods().contains(&dst) {
        return Err(format!("DNAT to {dst}, not a pod"));
    }
    if checksums_ok(input, &l) && !checksums_ok(out, &l) {
        return Err("DNAT broke a right checksum".into());
    }
    let udp_csum = |f: &[u8]| be16(f, l.l4 + 6);
    if l.proto == IPPROTO_UDP && !l.v6 && udp_csum(input) == Some(0) && udp_csum(out) != Some(0) {
        return Err("DNAT gave a zero (absent) UDP checksum a value".into());
    }
    Ok(())
}

/// A transmitted frame: whole (its lengths agree with the frame), its checksums right when
/// the input's were.
fn check_forwarded(input: &[u8], out: &[u8]) -> Result<(), String> {
    let l = layout(out).ok_or("TX of a frame that is not IP")?;
    if l.ip_end > out.len() {
        return Err(format!(
            "TX frame shorter ({}) than its IP length ({})",
            out.len(),
            l.ip_end
        ));
    }
    if l.l4 > l.ip_end {
        return Err("TX frame's IP header longer than its packet".into());
    }
    if l.proto == IPPROTO_UDP {
        let udp_len = be16(out, l.l4 + 4).ok_or("no UDP header")?;
        if usize::from(udp_len) > l.ip_end - l.l4 {
            return Err(format!("TX UDP length {udp_len} past the IP packet"));
        }
    }
    let lin = layout(input).ok_or("TX of an input that is not IP")?;
    if checksums_ok(input, &lin) && !checksums_ok(out, &l) {
        return Err("TX frame's checksums wrong (the input's were right)".into());
    }
    Ok(())
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn random_and_mutated_frames_never_abort_or_leave_half_rewritten() {
    if !testbed::require_root() {
        return;
    }
    let seed = env_u64("XDP_INGRESS_FUZZ_SEED", DEFAULT_SEED);
    let frames = env_u64("XDP_INGRESS_FUZZ_FRAMES", DEFAULT_FRAMES);
    let topo = Topology::new(1).expect("topology");
    static_neigh(&topo, IpAddr::from(REMOTE), REMOTE_MAC);
    static_neigh(&topo, IpAddr::from(CLIENT), CLIENT_MAC);
    let nic = ifindex(&topo, NODE_IFACE);
    let node_mac = {
        let s = topo
            .node
            .run("cat", &[&format!("/sys/class/net/{NODE_IFACE}/address")])
            .unwrap();
        let v: Vec<u8> = s
            .trim()
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        <[u8; 6]>::try_from(v).unwrap()
    };
    let mut ebpf = load(&[PROG_XDP_INGRESS], &[]);
    let mut sync = L4Sync::new(L4Options {
        node_v4: Some(NODE.into()),
        node_name: Some("this-node".into()),
        ..L4Options::default()
    });
    sync.apply(&mut ebpf, &snapshot()).unwrap();
    let seeds = seeds(node_mac);
    let started = std::time::Instant::now();
    let tally = topo.node.enter(|| {
        let prog: &aya::programs::Xdp = ebpf.program(PROG_XDP_INGRESS).unwrap().try_into().unwrap();
        let mut rng = Rng(seed);
        let mut t = Tally::default();
        let mut out = vec![0u8; 2048];
        for i in 0..frames {
            let f = frame(&mut rng, &seeds);
            let ctx = xdp_md(f.len(), nic);
            out.resize(f.len() + 256, 0);
            let r = aya::programs::TestRun::test_run(
                prog,
                aya::programs::TestRunOptions {
                    data_in: Some(&f),
                    data_out: Some(&mut out),
                    ctx_in: Some(&ctx),
                    repeat: 1,
                    ..aya::programs::TestRunOptions::new()
                },
            )
            .unwrap_or_else(|e| panic!("frame {i} (seed {seed:#x}) {}: test run {e:?}", hex(&f)));
            let got = &out[..r.data_size_out as usize];
            if let Err(e) = check(&f, r.return_value, got, &mut t) {
                panic!(
                    "frame {i} (XDP_INGRESS_FUZZ_SEED={seed:#x}): {e}\n in:  {}\n out: {}",
                    hex(&f),
                    hex(got)
                );
            }
        }
        t
    });
    eprintln!(
        "{frames} frames in {:.1} s (seed {seed:#x}): {tally:?}",
        started.elapsed().as_secs_f64()
    );
    // The seeds reach every path the checks cover.
    assert!(
        tally.pass_dnat > 0 && tally.tx > 0 && tally.drop > 0 && tally.pass_unchanged > 0,
        "{tally:?}"
    );
}

#[test]
fn the_checker_knows_a_right_frame_from_a_wrong_one() {
    // Plain (no BPF): the seeds' checksums are right, one flipped bit is caught.
    for f in seeds([0x02, 0, 0, 0, 0, 2]) {
        let l = layout(&f).expect("layout");
        assert!(checksums_ok(&f, &l), "{}", hex(&f));
        if l.proto == IPPROTO_UDP && !l.v6 && be16(&f, l.l4 + 6) == Some(0) {
            continue; // no checksum to be wrong
        }
        let mut bad = f.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x10;
        assert!(!checksums_ok(&bad, &l), "{}", hex(&bad));
    }
}
