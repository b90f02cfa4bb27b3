//! New flows that have nowhere to go. A Service without endpoints answers at once, as
//! kube-proxy's REJECT rule does (`--reject-with tcp-reset` / `icmp-port-unreachable`), so
//! clients fail fast instead of retrying SYNs until their timeout: a TCP segment gets a RST
//! built in place and sent back with XDP_TX (RFC 9293 3.10.7.1, a segment to a CLOSED port),
//! a UDP datagram an ICMP / ICMPv6 port unreachable quoting its IP and UDP headers (RFC 792,
//! RFC 4443 3.1).
//! Under `externalTrafficPolicy: Local` a node without a local endpoint drops instead, as
//! kube-proxy does: the node is what is down (its health check says so), not the service.

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
};
use ingress_common::{l4::SVC_F_LOCAL_ONLY, stats::Stat};

use crate::{
    csum,
    icmp::{Bounds, ptr_at},
    l4::{Pkt, Verdict, verdict_of},
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr, TcpHdr},
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// TTL / hop limit of the RST (Linux's default).
const HOPS: u8 = 64;

/// The verdict for a new flow of a service (flags `svc_flags`) with no backend for it.
/// A subprogram: its temporaries stay off the main program's stack.
#[inline(never)]
pub fn no_endpoint(raw: *mut xdp_md, pkt: &Pkt, svc_flags: u32) -> Verdict {
    if svc_flags & SVC_F_LOCAL_ONLY != 0 {
        return verdict_of(xdp_action::XDP_DROP, Stat::DropNoLocalEndpoint);
    }
    let drop = verdict_of(xdp_action::XDP_DROP, Stat::DropNoBackend);
    if pkt.proto == IPPROTO_UDP {
        return port_unreachable(raw, pkt).unwrap_or(drop);
    }
    // Never a RST for a RST (RFC 9293 3.10.7.1).
    if pkt.proto != IPPROTO_TCP || pkt.tcp_flags & TCP_RST != 0 {
        return drop;
    }
    tcp_reset(raw, pkt).unwrap_or(drop)
}

/// Turns the datagram into an ICMP (ICMPv6) port unreachable from its destination to its
/// source, quoting its IP and UDP headers, and sends it back. `None` when its headers are not
/// the plain ones (VLAN, IPv4 options, IPv6 extension headers) or the frame cannot be resized.
#[inline(always)]
fn port_unreachable(raw: *mut xdp_md, pkt: &Pkt) -> Option<Verdict> {
    const ETH: usize = 14;
    let v6 = pkt.v6;
    let ip_len = if v6 { 40 } else { 20 };
    if pkt.l3_off != ETH || pkt.l4_off != ETH + ip_len {
        return None;
    }
    // New IP + ICMP headers in front: the old IP header then sits where the quote goes.
    let grow = ip_len + 8;
    // SAFETY: helper on the program's own context; packet pointers are re-read after it.
    if unsafe { bpf_xdp_adjust_head(raw.cast(), -(grow as i32)) } != 0 {
        return None;
    }
    let quote = ip_len + 8;
    let want = ETH + grow + quote;
    let b = Bounds::of(raw);
    let delta = want as i64 - (b.end - b.data) as i64;
    if delta != 0 {
        // SAFETY: as above.
        if unsafe { bpf_xdp_adjust_tail(raw.cast(), delta as i32) } != 0 {
            return None;
        }
    }
    let b = Bounds::of(raw);
    let old_eth = ptr_at::<[[u8; 6]; 2]>(&b, grow)?;
    let eth = ptr_at::<[u8; ETH]>(&b, 0)? as *mut [u8; ETH];
    let icmp = ptr_at::<[u8; 8]>(&b, ETH + ip_len)? as *mut [u8; 8];
    // SAFETY: every pointer comes from ptr_at, which checked its bounds.
    unsafe {
        // Back to where it came from: the old source is the new destination.
        let (dst_mac, src_mac) = ((*old_eth)[1], (*old_eth)[0]);
        let e = &mut *eth;
        e[..6].copy_from_slice(&dst_mac);
        e[6..12].copy_from_slice(&src_mac);
        e[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        // Type, code (port unreachable), checksum, unused.
        *icmp = if v6 {
            [1, 4, 0, 0, 0, 0, 0, 0]
        } else {
            [3, 3, 0, 0, 0, 0, 0, 0]
        };
        let mut sum = 0u64;
        if v6 {
            let ip = ptr_at::<Ipv6Hdr>(&b, ETH)? as *mut Ipv6Hdr;
            let q = ptr_at::<Ipv6Hdr>(&b, ETH + grow)?;
            (*ip).ver_tc_flow = [0x60, 0, 0, 0];
            (*ip).payload_len = ((8 + quote) as u16).to_be_bytes();
            (*ip).next_hdr = IPPROTO_ICMPV6;
            (*ip).hop_limit = HOPS;
            (*ip).saddr = (*q).daddr;
            (*ip).daddr = (*q).saddr;
            // Pseudo-header: addresses, length, next header.
            let w = (&raw const (*ip).saddr).cast::<u16>();
            let mut i = 0;
            while i < 16 {
                sum += u64::from(w.add(i).read_unaligned());
                i += 1;
            }
            sum += u64::from(((8 + quote) as u16).to_be())
                + u64::from(u16::from(IPPROTO_ICMPV6).to_be());
        } else {
            let ip = ptr_at::<Ipv4Hdr>(&b, ETH)? as *mut Ipv4Hdr;
            let q = ptr_at::<Ipv4Hdr>(&b, ETH + grow)?;
            (*ip).ver_ihl = 0x45;
            (*ip).tos = 0;
            (*ip).tot_len = ((20 + 8 + quote) as u16).to_be_bytes();
            (*ip).id = [0; 2];
            (*ip).frag_off = [0x40, 0];
            (*ip).ttl = HOPS;
            (*ip).proto = IPPROTO_ICMP;
            (*ip).check = [0; 2];
            (*ip).saddr = (*q).daddr;
            (*ip).daddr = (*q).saddr;
            let w = ip.cast::<u16>();
            let mut h = 0u64;
            let mut i = 0;
            while i < 10 {
                h += u64::from(w.add(i).read_unaligned());
                i += 1;
            }
            (*ip).check = (!csum::fold(h)).to_ne_bytes();
        }
        // The ICMP message: its header and the quote (the bounds were checked above).
        sum += if v6 {
            sum_words::<28>(&b, ETH + ip_len)?
        } else {
            sum_words::<18>(&b, ETH + ip_len)?
        };
        let m = &mut *icmp;
        m[2..4].copy_from_slice(&(!csum::fold(sum)).to_ne_bytes());
    }
    Some(verdict_of(xdp_action::XDP_TX, Stat::L4RejectNoEndpoint))
}

/// One's complement sum (unfolded) of the `N` 16-bit words at `off`.
#[inline(always)]
fn sum_words<const N: usize>(b: &Bounds, off: usize) -> Option<u64> {
    let w = ptr_at::<[u16; N]>(b, off)?.cast::<u16>();
    let mut sum = 0u64;
    let mut i = 0;
    while i < N {
        // SAFETY: ptr_at checked the bounds of all N words.
        sum += u64::from(unsafe { w.add(i).read_unaligned() });
        i += 1;
    }
    Some(sum)
}

/// Turns the segment into its RST, cut to the bare headers, and sends it back. `None` (frame
/// unchanged, or cut but not sent) when the headers are not the plain ones a RST reuses
/// (IPv4 options, IPv6 extension headers).
#[inline(always)]
fn tcp_reset(raw: *mut xdp_md, pkt: &Pkt) -> Option<Verdict> {
    let (l3, l4, v6) = (pkt.l3_off, pkt.l4_off, pkt.v6);
    if l4 != l3 + if v6 { 40 } else { 20 } {
        return None;
    }
    let b = Bounds::of(raw);
    let tcp = ptr_at::<TcpHdr>(&b, l4)?;
    // SAFETY: ptr_at checked the bounds.
    let (seq, ack, flags, doff) = unsafe {
        (
            u32::from_be_bytes((*tcp).seq),
            u32::from_be_bytes((*tcp).ack),
            (*tcp).flags,
            usize::from((*tcp).doff_res >> 4) * 4,
        )
    };
    // SEG.LEN: the data, plus one for SYN and one for FIN.
    let data = usize::from(pkt.tot_len).checked_sub(l4 - l3 + doff)?;
    let seg_len = data as u32 + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
    // With ACK: <SEQ=SEG.ACK><CTL=RST>; without: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    let (r_seq, r_ack, r_flags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        (0, seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };
    let want = l4 + 20;
    let delta = want as i64 - (b.end - b.data) as i64;
    if delta != 0 {
        // SAFETY: helper on the program's own context; packet pointers are re-read after it.
        if unsafe { bpf_xdp_adjust_tail(raw.cast(), delta as i32) } != 0 {
            return None;
        }
    }
    let b = Bounds::of(raw);
    let eth = ptr_at::<[[u8; 6]; 2]>(&b, 0)? as *mut [[u8; 6]; 2];
    let tcp = ptr_at::<TcpHdr>(&b, l4)? as *mut TcpHdr;
    // SAFETY: every pointer comes from ptr_at, which checked its bounds.
    unsafe {
        core::ptr::swap(&raw mut (*eth)[0], &raw mut (*eth)[1]);
        core::ptr::swap(&raw mut (*tcp).sport, &raw mut (*tcp).dport);
        (*tcp).seq = r_seq.to_be_bytes();
        (*tcp).ack = r_ack.to_be_bytes();
        (*tcp).doff_res = 5 << 4;
        (*tcp).flags = r_flags;
        (*tcp).window = [0; 2];
        (*tcp).check = [0; 2];
        (*tcp).urg = [0; 2];
        // Pseudo-header: protocol and TCP length (20), then the addresses below.
        let mut sum =
            u64::from(u16::from_be_bytes([0, IPPROTO_TCP]).to_be()) + u64::from(20u16.to_be());
        if v6 {
            let ip = ptr_at::<Ipv6Hdr>(&b, l3)? as *mut Ipv6Hdr;
            let s = (&raw mut (*ip).saddr).cast::<u16>();
            let d = (&raw mut (*ip).daddr).cast::<u16>();
            let mut i = 0;
            while i < 8 {
                let (sw, dw) = (s.add(i).read_unaligned(), d.add(i).read_unaligned());
                s.add(i).write_unaligned(dw);
                d.add(i).write_unaligned(sw);
                sum += u64::from(sw) + u64::from(dw);
                i += 1;
            }
            (*ip).payload_len = 20u16.to_be_bytes();
            (*ip).hop_limit = HOPS;
        } else {
            let ip = ptr_at::<Ipv4Hdr>(&b, l3)? as *mut Ipv4Hdr;
            core::ptr::swap(&raw mut (*ip).saddr, &raw mut (*ip).daddr);
            (*ip).tot_len = 40u16.to_be_bytes();
            (*ip).ttl = HOPS;
            (*ip).check = [0; 2];
            let w = ip.cast::<u16>();
            let mut h = 0u64;
            let mut i = 0;
            while i < 10 {
                h += u64::from(w.add(i).read_unaligned());
                i += 1;
            }
            (*ip).check = (!csum::fold(h)).to_ne_bytes();
            let w = (&raw const (*ip).saddr).cast::<u16>();
            let mut i = 0;
            while i < 4 {
                sum += u64::from(w.add(i).read_unaligned());
                i += 1;
            }
        }
        let w = tcp.cast::<u16>();
        let mut i = 0;
        while i < 10 {
            sum += u64::from(w.add(i).read_unaligned());
            i += 1;
        }
        (*tcp).check = (!csum::fold(sum)).to_ne_bytes();
    }
    Some(verdict_of(xdp_action::XDP_TX, Stat::L4RejectNoEndpoint))
}
