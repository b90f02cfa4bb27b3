//! tc reverse NAT of replies from local pods: their source turns back into the frontend, with
//! the skb checksum helpers so partial (offloaded) checksums stay right. Two attach points:
//! - NIC egress (default): the kernel has already routed the reply (pod → client) toward the
//!   NIC; rewrite and let it go.
//! - pod veth ingress (optional): rewrite, then go straight to the client's interface
//!   (`bpf_redirect_neigh`): the new source is a local address, which the kernel's input path
//!   would refuse as martian.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::bpf_redirect_neigh,
    programs::TcContext,
};
use ingress_common::{
    l4::{CT_F_CLOSING, FAMILY_V4, FAMILY_V6, FlowKey, RevNatEntry},
    stats::Stat,
};

use crate::{
    fib,
    maps::{CONNTRACK, REVNAT, scratch},
    parse::{ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr},
    stats, tombstone,
};

const ETH_HLEN: usize = 14;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
/// Offset of the checksum in the IPv4 header.
const IP4_CHECK: usize = 10;

/// Returns the tc action for one packet; `redirect` for the pod-veth ingress attach point.
#[inline(always)]
pub fn handle(ctx: &TcContext, redirect: bool) -> i32 {
    match try_handle(ctx, redirect) {
        Some(action) => action,
        None => TC_ACT_OK,
    }
}

#[inline(always)]
fn try_handle(ctx: &TcContext, redirect: bool) -> Option<i32> {
    let ethertype = u16::from_be_bytes(ctx.load::<[u8; 2]>(12).ok()?);
    let l3 = ETH_HLEN;
    let mut key = FlowKey::default();
    let (v6, proto, l4, tot_len) = match ethertype {
        ETH_P_IP => {
            let ip = ctx.load::<Ipv4Hdr>(l3).ok()?;
            let ihl = usize::from(ip.ver_ihl & 0x0f);
            // Fragments are the kernel's.
            if ihl < 5 || u16::from_be_bytes(ip.frag_off) & 0x3fff != 0 {
                return None;
            }
            key.saddr[..4].copy_from_slice(&ip.saddr);
            key.daddr[..4].copy_from_slice(&ip.daddr);
            key.family = FAMILY_V4;
            (
                false,
                ip.proto,
                l3 + ihl * 4,
                u16::from_be_bytes(ip.tot_len),
            )
        }
        ETH_P_IPV6 => {
            let ip = ctx.load::<Ipv6Hdr>(l3).ok()?;
            key.saddr = ip.saddr;
            key.daddr = ip.daddr;
            key.family = FAMILY_V6;
            let len = u16::from_be_bytes(ip.payload_len).wrapping_add(40);
            (true, ip.next_hdr, l3 + 40, len)
        }
        _ => return None,
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let ports = ctx.load::<[u8; 4]>(l4).ok()?;
    key.sport = u16::from_ne_bytes([ports[0], ports[1]]);
    key.dport = u16::from_ne_bytes([ports[2], ports[3]]);
    key.proto = proto;
    let Some(rev_ptr) = REVNAT.get_ptr_mut(&key) else {
        // No translation: the pod's own traffic, or a late reply to an ended flow, which must
        // not leave with the pod's address.
        let flags = if proto == IPPROTO_TCP {
            ctx.load::<u8>(l4 + 13).ok()?
        } else {
            0
        };
        if tombstone::late_reply(&key, flags) {
            stats::count(Stat::DropLateReply, u64::from(ctx.len()));
            return Some(TC_ACT_SHOT);
        }
        return None;
    };
    // SAFETY: pointer from a successful lookup; copied out at once.
    let rev = unsafe { *rev_ptr };
    if proto == IPPROTO_TCP && rev.flags & CT_F_CLOSING == 0 {
        let flags = ctx.load::<u8>(l4 + 13).ok()?;
        if flags & (TCP_FIN | TCP_RST) != 0 {
            // SAFETY: pointer from a successful lookup; a plain integer store.
            unsafe { (*rev_ptr).flags |= CT_F_CLOSING };
            mark_flow_closing(&rev, proto, key.family);
        }
    }

    let mut out_if = 0;
    if redirect {
        // SAFETY: the context pointer of this program.
        let ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
        let route = fib::lookup_skb(
            ctx.skb.skb.cast(),
            ifindex,
            v6,
            proto,
            &rev.frontend_addr,
            &rev.client_addr,
            tot_len,
        )?;
        out_if = route.ifindex;
    }

    let check_off = l4 + if proto == IPPROTO_TCP { 16 } else { 6 };
    let mangled = if proto == IPPROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let words = if v6 { 4 } else { 1 };
    let mut i = 0;
    // The IPv4 header checksum covers the addresses; IPv6 has none.
    let ip_check = if v6 { None } else { Some(l3 + IP4_CHECK) };
    while i < 4 {
        if i < words {
            replace_addr_word(
                ctx,
                l3 + if v6 { 8 } else { 12 } + 4 * i,
                word(&key.saddr, i),
                word(&rev.frontend_addr, i),
                check_off,
                mangled,
                ip_check,
            )?;
            replace_addr_word(
                ctx,
                l3 + if v6 { 24 } else { 16 } + 4 * i,
                word(&key.daddr, i),
                word(&rev.client_addr, i),
                check_off,
                mangled,
                ip_check,
            )?;
        }
        i += 1;
    }
    replace_port(ctx, l4, key.sport, rev.frontend_port, check_off, mangled)?;
    replace_port(ctx, l4 + 2, key.dport, rev.client_port, check_off, mangled)?;
    let len = u64::from(ctx.len());
    stats::count(Stat::L4ReplyTc, len);
    if !redirect {
        return Some(TC_ACT_OK);
    }
    // SAFETY: no parameters: the kernel resolves the neighbour of the route's next hop.
    let rc = unsafe { bpf_redirect_neigh(out_if, core::ptr::null_mut(), 0, 0) };
    Some(rc as i32)
}

/// The pod's FIN or RST closes its flow as the client's does: the flow entry (keyed by the
/// client side) gets the closing timeout.
#[inline(always)]
fn mark_flow_closing(rev: &RevNatEntry, proto: u8, family: u8) {
    let Some(scr) = scratch() else {
        return;
    };
    // SAFETY: this CPU's scratch entry; nothing else uses it while the program runs here.
    let scr = unsafe { &mut *scr };
    crate::l4::fill_key(
        &mut scr.old_key,
        &rev.client_addr,
        &rev.frontend_addr,
        rev.client_port,
        rev.frontend_port,
        proto,
        family,
    );
    if let Some(ct) = CONNTRACK.get_ptr_mut(&scr.old_key) {
        // SAFETY: pointer from a successful lookup; a plain integer store.
        unsafe { (*ct).flags |= CT_F_CLOSING };
    }
}

#[inline(always)]
fn word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
}

/// Writes one 32-bit word of an address at `at` when it changes, updating the L4 checksum at
/// `check_off` (the word is in its pseudo-header) and the IPv4 header checksum at `ip_check`.
#[inline(always)]
fn replace_addr_word(
    ctx: &TcContext,
    at: usize,
    old: u32,
    new: u32,
    check_off: usize,
    mangled: u64,
    ip_check: Option<usize>,
) -> Option<()> {
    if old == new {
        return Some(());
    }
    ctx.store(at, &new, 0).ok()?;
    ctx.l4_csum_replace(
        check_off,
        u64::from(old),
        u64::from(new),
        u64::from(BPF_F_PSEUDO_HDR) | mangled | 4,
    )
    .ok()?;
    if let Some(ip_check) = ip_check {
        ctx.l3_csum_replace(ip_check, u64::from(old), u64::from(new), 4)
            .ok()?;
    }
    Some(())
}

/// Writes a port at `at` when it changes, updating the L4 checksum at `check_off`.
#[inline(always)]
fn replace_port(
    ctx: &TcContext,
    at: usize,
    old: u16,
    new: u16,
    check_off: usize,
    mangled: u64,
) -> Option<()> {
    if old == new {
        return Some(());
    }
    ctx.store(at, &new, 0).ok()?;
    ctx.l4_csum_replace(check_off, u64::from(old), u64::from(new), mangled | 2)
        .ok()?;
    Some(())
}
