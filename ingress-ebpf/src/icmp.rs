//! ICMP errors about NATed flows (ICMPv4 destination unreachable incl. "fragmentation needed",
//! time exceeded; ICMPv6 destination unreachable, packet too big, time exceeded): the error
//! names our reply (frontend → client), so it is turned into one about the pod's packet
//! (pod → client) and sent to the pod, which is what path MTU discovery needs.
//!
//! Source-NATed flows (remote endpoints) in both directions, as conntrack's
//! `nf_nat_icmp_reply_translation` does: an error from the endpoint's side quotes our SNATed
//! packet (node:snat-port → endpoint) and goes to the client, quoting the client's packet
//! (client → frontend), from the frontend address; an error from the client's side quotes our
//! reply (frontend → client) and goes to the endpoint, quoting its packet (endpoint →
//! node:snat-port), from the node's SNAT address. Both are forwarded in XDP (FIB, TX/REDIRECT).
//! The quoted TCP/UDP checksum is updated when the quote holds it. Anything else goes to the
//! kernel untouched.

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::bpf_redirect,
};
use ingress_common::{
    l4::{CT_F_SNAT, CtEntry, FAMILY_V4, FAMILY_V6, FlowKey},
    stats::Stat,
};

use crate::{
    csum, fib,
    l4::Verdict,
    maps::{CONFIG, CONNTRACK, REVNAT, Scratch, scratch},
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;

#[repr(C)]
struct IcmpHdr {
    kind: u8,
    code: u8,
    check: [u8; 2],
    rest: [u8; 4],
}

/// The first 8 bytes of the offending packet's TCP/UDP header: ports, then anything.
#[repr(C)]
struct InnerL4 {
    sport: [u8; 2],
    dport: [u8; 2],
    rest: [u8; 4],
}

/// Translates an ICMPv4 error about a NATed flow; [`NOT_HANDLED`] when the packet is not one.
/// Its work is in BPF subprograms of their own: their temporaries stay off the main program's
/// stack. Takes the raw context pointer and reads the packet bounds with volatile loads: otherwise
/// LLVM passes the loaded packet pointers in, widened with shifts the verifier rejects.
/// The lookup and the SNAT rewrite are sibling subprograms, so their stacks never add up.
#[inline(always)]
pub fn handle(raw: *mut xdp_md, l3_off: usize, l4_off: usize) -> Verdict {
    let v = handle_lookup(raw, l3_off, l4_off);
    if is_snat_mapped(v) {
        return translate_snat(raw, l3_off, l4_off, false);
    }
    v
}

#[inline(never)]
fn handle_lookup(raw: *mut xdp_md, l3_off: usize, l4_off: usize) -> Verdict {
    let b = Bounds::of(raw);
    handle_inner(&b, l3_off, l4_off).unwrap_or(NOT_HANDLED)
}

/// The packet's bounds, read from the context in this subprogram.
pub(crate) struct Bounds {
    pub data: usize,
    pub end: usize,
}

impl Bounds {
    #[inline(always)]
    pub(crate) fn of(raw: *mut xdp_md) -> Self {
        // SAFETY: `raw` is the program's context pointer, passed down unchanged.
        unsafe {
            Bounds {
                data: core::ptr::read_volatile(&(*raw).data) as usize,
                end: core::ptr::read_volatile(&(*raw).data_end) as usize,
            }
        }
    }
}

/// [`crate::parse::ptr_at`] over [`Bounds`].
#[inline(always)]
pub(crate) fn ptr_at<T>(b: &Bounds, offset: usize) -> Option<*const T> {
    if b.data + offset + core::mem::size_of::<T>() > b.end {
        return None;
    }
    Some((b.data + offset) as *const T)
}

/// The sum contribution of replacing one IPv4 address by another.
#[inline(always)]
fn diff4(old: [u8; 4], new: [u8; 4]) -> u64 {
    csum::diff16(
        u16::from_ne_bytes([old[0], old[1]]),
        u16::from_ne_bytes([new[0], new[1]]),
    ) + csum::diff16(
        u16::from_ne_bytes([old[2], old[3]]),
        u16::from_ne_bytes([new[2], new[3]]),
    )
}

/// "Not an ICMP error about a NATed flow" (ABORTED/Rx is never a real verdict).
pub const NOT_HANDLED: Verdict = crate::l4::Verdict::NONE;

/// "An error about a SNAT flow; the new quoted tuple is in `scr.nat`": ABORTED with a
/// counter, which no real verdict is.
#[inline(always)]
fn snat_mapped() -> Verdict {
    crate::l4::verdict_of(xdp_action::XDP_ABORTED, Stat::L4IcmpTranslated)
}

#[inline(always)]
fn is_snat_mapped(v: Verdict) -> bool {
    v.action() == xdp_action::XDP_ABORTED && v.stat() == Stat::L4IcmpTranslated as u32
}

/// An error from the client's side about our reply (frontend → client) of the SNAT flow `ct`
/// (the packet's key is its client side): the quote becomes the endpoint's own packet,
/// endpoint → node:snat-port, left in `scr.nat`.
#[inline(always)]
fn map_client_side(scr: &mut Scratch, ct: &CtEntry, v6: bool) -> Verdict {
    let Some(cfg) = CONFIG.get(0) else {
        return NOT_HANDLED;
    };
    scr.nat.saddr = ct.backend_addr;
    scr.nat.sport = ct.backend_port;
    scr.nat.daddr = [0; 16];
    if v6 {
        scr.nat.daddr = cfg.node_v6;
    } else {
        scr.nat.daddr[..4].copy_from_slice(&cfg.node_v4);
    }
    scr.nat.dport = ct.snat_port;
    snat_mapped()
}

/// An error from the endpoint's side about our SNATed packet node:snat-port → endpoint (whose
/// reverse-NAT key is `scr.ct_key`, as the endpoint's replies carry it): the quote becomes the
/// client's packet, client → frontend, left in `scr.nat`.
#[inline(always)]
fn map_endpoint_side(scr: &mut Scratch) -> Verdict {
    let Some(r) = REVNAT.get_ptr(&scr.ct_key) else {
        return NOT_HANDLED;
    };
    // SAFETY: pointer from a successful lookup; plain integers.
    let r = unsafe { &*r };
    if r.flags & CT_F_SNAT == 0 {
        return NOT_HANDLED;
    }
    scr.nat.saddr = r.client_addr;
    scr.nat.sport = r.client_port;
    scr.nat.daddr = r.frontend_addr;
    scr.nat.dport = r.frontend_port;
    snat_mapped()
}

/// Rewrites an ICMP error about a SNAT flow as `scr.nat` says (quoted packet from
/// `nat.saddr:sport` to `nat.daddr:dport`; outer from `nat.daddr` to `nat.saddr`, so the error
/// comes from the address the receiver sent its packet to) and forwards it through the FIB.
/// Untouched to the kernel when it cannot be forwarded (last hop, no route or neighbour).
#[inline(never)]
fn translate_snat(raw: *mut xdp_md, l3_off: usize, icmp_off: usize, v6: bool) -> Verdict {
    translate_snat_inner(raw, l3_off, icmp_off, v6).unwrap_or(NOT_HANDLED)
}

#[inline(always)]
fn translate_snat_inner(
    raw: *mut xdp_md,
    l3_off: usize,
    icmp_off: usize,
    v6: bool,
) -> Option<Verdict> {
    // SAFETY: this CPU's scratch entry; nothing else uses it while the program runs here.
    let scr = unsafe { &mut *scratch()? };
    let b = Bounds::of(raw);
    let proto = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    // SAFETY: ptr_at checked the bounds.
    let (tot_len, hops) = unsafe {
        if v6 {
            let ip = ptr_at::<Ipv6Hdr>(&b, l3_off)?;
            (
                u16::from_be_bytes((*ip).payload_len).wrapping_add(40),
                (*ip).hop_limit,
            )
        } else {
            let ip = ptr_at::<Ipv4Hdr>(&b, l3_off)?;
            (u16::from_be_bytes((*ip).tot_len), (*ip).ttl)
        }
    };
    // An expiring error goes to the kernel untouched, as the L4 path does.
    if hops <= 1 {
        return Some(crate::l4::verdict_of(
            xdp_action::XDP_PASS,
            Stat::PassTtlExceeded,
        ));
    }
    // The interface index read once, here: LLVM would otherwise keep a derived context
    // pointer around, which the verifier refuses.
    // SAFETY: `raw` is the program's context pointer.
    let ingress = unsafe { core::ptr::read_volatile(&(*raw).ingress_ifindex) };
    let route = match fib::lookup_in(
        &mut scr.fib,
        raw.cast(),
        ingress,
        v6,
        proto,
        &scr.nat.daddr,
        &scr.nat.saddr,
        tot_len,
    ) {
        Some(r) if !r.no_neigh => r,
        _ => {
            return Some(crate::l4::verdict_of(
                xdp_action::XDP_PASS,
                Stat::PassFibLookup,
            ));
        }
    };
    if v6 {
        rewrite_v6(&b, l3_off, icmp_off, &scr.nat)?;
    } else {
        rewrite_v4(&b, l3_off, icmp_off, &scr.nat)?;
    }
    Some(transmit(&b, l3_off, v6, &route, ingress))
}

/// Takes one hop off (as a router does), sets the MACs from the route and sends the frame out
/// of the route's interface.
#[inline(always)]
fn transmit(b: &Bounds, l3_off: usize, v6: bool, route: &fib::FibResult, ingress: u32) -> Verdict {
    // SAFETY: every pointer comes from ptr_at, which checked its bounds.
    unsafe {
        if v6 {
            if let Some(ip) = ptr_at::<Ipv6Hdr>(b, l3_off) {
                let ip = ip as *mut Ipv6Hdr;
                (*ip).hop_limit = (*ip).hop_limit.saturating_sub(1);
            }
        } else if let Some(ip) = ptr_at::<Ipv4Hdr>(b, l3_off) {
            let ip = ip as *mut Ipv4Hdr;
            let old = u16::from_ne_bytes([(*ip).ttl, (*ip).proto]);
            (*ip).ttl = (*ip).ttl.saturating_sub(1);
            let new = u16::from_ne_bytes([(*ip).ttl, (*ip).proto]);
            (*ip).check =
                csum::apply(u16::from_ne_bytes((*ip).check), csum::diff16(old, new)).to_ne_bytes();
        }
        let Some(eth) = ptr_at::<[[u8; 6]; 2]>(b, 0) else {
            return crate::l4::verdict_of(xdp_action::XDP_PASS, Stat::PassTruncatedEth);
        };
        let eth = eth as *mut [[u8; 6]; 2];
        (*eth)[0] = route.dmac;
        (*eth)[1] = route.smac;
    }
    if route.ifindex == ingress {
        return crate::l4::verdict_of(xdp_action::XDP_TX, Stat::L4IcmpTranslated);
    }
    // SAFETY: helper without memory arguments.
    let action = unsafe { bpf_redirect(route.ifindex, 0) } as u32;
    crate::l4::verdict_of(action, Stat::L4IcmpTranslated)
}

/// Updates the quoted TCP/UDP checksum by `d` (its pseudo-header and ports changed) when the
/// quote holds it; returns the sum contribution of that change to the ICMP checksum. A UDP
/// checksum of 0 ("none") stays 0.
#[inline(always)]
fn fix_quoted_l4(b: &Bounds, l4_at: usize, proto: u8, d: u64) -> u64 {
    let at = if proto == IPPROTO_TCP {
        l4_at + 16
    } else {
        l4_at + 6
    };
    let Some(c) = ptr_at::<[u8; 2]>(b, at) else {
        return 0;
    };
    let c = c as *mut [u8; 2];
    // SAFETY: ptr_at checked the bounds.
    unsafe {
        let old = u16::from_ne_bytes(*c);
        if proto == IPPROTO_UDP && old == 0 {
            return 0;
        }
        let mut new = csum::apply(old, d);
        if proto == IPPROTO_UDP && new == 0 {
            new = 0xffff;
        }
        *c = new.to_ne_bytes();
        csum::diff16(old, new)
    }
}

/// [`translate_snat`]'s rewrite of an ICMPv4 error; `None` (nothing written) if a header is
/// missing.
#[inline(always)]
fn rewrite_v4(b: &Bounds, l3_off: usize, icmp_off: usize, nat: &crate::l4::Nat) -> Option<()> {
    let inner_off = icmp_off + core::mem::size_of::<IcmpHdr>();
    let outer = ptr_at::<Ipv4Hdr>(b, l3_off)? as *mut Ipv4Hdr;
    let icmp = ptr_at::<IcmpHdr>(b, icmp_off)? as *mut IcmpHdr;
    let inner = ptr_at::<Ipv4Hdr>(b, inner_off)? as *mut Ipv4Hdr;
    let ports = ptr_at::<InnerL4>(b, inner_off + 20)? as *mut InnerL4;
    let new_s = [nat.saddr[0], nat.saddr[1], nat.saddr[2], nat.saddr[3]];
    let new_d = [nat.daddr[0], nat.daddr[1], nat.daddr[2], nat.daddr[3]];
    // SAFETY: every pointer comes from ptr_at, which checked its bounds.
    unsafe {
        let d_addr = diff4((*inner).saddr, new_s) + diff4((*inner).daddr, new_d);
        let d_ports = csum::diff16(u16::from_ne_bytes((*ports).sport), nat.sport)
            + csum::diff16(u16::from_ne_bytes((*ports).dport), nat.dport);
        let old_ic = u16::from_ne_bytes((*inner).check);
        let new_ic = csum::apply(old_ic, d_addr);
        let d_l4 = fix_quoted_l4(b, inner_off + 20, (*inner).proto, d_addr + d_ports);
        (*inner).saddr = new_s;
        (*inner).daddr = new_d;
        (*inner).check = new_ic.to_ne_bytes();
        (*ports).sport = nat.sport.to_ne_bytes();
        (*ports).dport = nat.dport.to_ne_bytes();
        // No pseudo-header in ICMPv4: the checksum covers the quote only.
        let d_icmp = d_addr + d_ports + csum::diff16(old_ic, new_ic) + d_l4;
        (*icmp).check = csum::apply(u16::from_ne_bytes((*icmp).check), d_icmp).to_ne_bytes();
        let d_outer = diff4((*outer).saddr, new_d) + diff4((*outer).daddr, new_s);
        (*outer).saddr = new_d;
        (*outer).daddr = new_s;
        (*outer).check = csum::apply(u16::from_ne_bytes((*outer).check), d_outer).to_ne_bytes();
    }
    Some(())
}

/// [`translate_snat`]'s rewrite of an ICMPv6 error (whose checksum also covers the outer
/// addresses); `None` (nothing written) if a header is missing.
#[inline(always)]
fn rewrite_v6(b: &Bounds, l3_off: usize, icmp_off: usize, nat: &crate::l4::Nat) -> Option<()> {
    let inner_off = icmp_off + core::mem::size_of::<IcmpHdr>();
    let outer = ptr_at::<Ipv6Hdr>(b, l3_off)? as *mut Ipv6Hdr;
    let icmp = ptr_at::<IcmpHdr>(b, icmp_off)? as *mut IcmpHdr;
    let inner = ptr_at::<Ipv6Hdr>(b, inner_off)? as *mut Ipv6Hdr;
    let ports = ptr_at::<InnerL4>(b, inner_off + 40)? as *mut InnerL4;
    // SAFETY: every pointer comes from ptr_at, which checked its bounds; the address words
    // are read and written unaligned, straight between scratch and packet memory.
    unsafe {
        let ns = (&raw const nat.saddr).cast::<u16>();
        let nd = (&raw const nat.daddr).cast::<u16>();
        let is = (&raw mut (*inner).saddr).cast::<u16>();
        let id = (&raw mut (*inner).daddr).cast::<u16>();
        let os = (&raw mut (*outer).saddr).cast::<u16>();
        let od = (&raw mut (*outer).daddr).cast::<u16>();
        let mut d_addr = 0u64;
        let mut d_outer = 0u64;
        let mut i = 0;
        while i < 8 {
            let s = ns.add(i).read_unaligned();
            let d = nd.add(i).read_unaligned();
            d_addr += csum::diff16(is.add(i).read_unaligned(), s);
            d_addr += csum::diff16(id.add(i).read_unaligned(), d);
            d_outer += csum::diff16(os.add(i).read_unaligned(), d);
            d_outer += csum::diff16(od.add(i).read_unaligned(), s);
            is.add(i).write_unaligned(s);
            id.add(i).write_unaligned(d);
            os.add(i).write_unaligned(d);
            od.add(i).write_unaligned(s);
            i += 1;
        }
        let d_ports = csum::diff16(u16::from_ne_bytes((*ports).sport), nat.sport)
            + csum::diff16(u16::from_ne_bytes((*ports).dport), nat.dport);
        let d_l4 = fix_quoted_l4(b, inner_off + 40, (*inner).next_hdr, d_addr + d_ports);
        (*ports).sport = nat.sport.to_ne_bytes();
        (*ports).dport = nat.dport.to_ne_bytes();
        let d_icmp = d_addr + d_ports + d_l4 + d_outer;
        (*icmp).check = csum::apply(u16::from_ne_bytes((*icmp).check), d_icmp).to_ne_bytes();
    }
    Some(())
}

#[inline(always)]
fn handle_inner(ctx: &Bounds, l3_off: usize, l4_off: usize) -> Option<Verdict> {
    let icmp_off = l4_off;
    let icmp = ptr_at::<IcmpHdr>(ctx, icmp_off)? as *mut IcmpHdr;
    // SAFETY: every pointer below comes from ptr_at, which checked its bounds.
    unsafe {
        if (*icmp).kind != ICMP_DEST_UNREACH && (*icmp).kind != ICMP_TIME_EXCEEDED {
            return None;
        }
        let inner_off = icmp_off + core::mem::size_of::<IcmpHdr>();
        let inner = ptr_at::<Ipv4Hdr>(ctx, inner_off)? as *mut Ipv4Hdr;
        if (*inner).ver_ihl != 0x45 {
            return None;
        }
        let proto = (*inner).proto;
        if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
            return None;
        }
        let ports = ptr_at::<InnerL4>(ctx, inner_off + 20)? as *mut InnerL4;
        let outer = ptr_at::<Ipv4Hdr>(ctx, l3_off)? as *mut Ipv4Hdr;
        // The offending packet is our reply frontend → client: its flow, seen from the client.
        let scr = &mut *scratch()?;
        scr.ct_key = FlowKey::default();
        scr.ct_key.saddr[..4].copy_from_slice(&(*inner).daddr);
        scr.ct_key.daddr[..4].copy_from_slice(&(*inner).saddr);
        scr.ct_key.sport = u16::from_ne_bytes((*ports).dport);
        scr.ct_key.dport = u16::from_ne_bytes((*ports).sport);
        scr.ct_key.proto = proto;
        scr.ct_key.family = FAMILY_V4;
        let Some(ct) = CONNTRACK.get_ptr(&scr.ct_key) else {
            return Some(map_endpoint_side(scr));
        };
        if (*ct).flags & CT_F_SNAT != 0 {
            return Some(map_client_side(scr, &*ct, false));
        }
        let be = [
            (*ct).backend_addr[0],
            (*ct).backend_addr[1],
            (*ct).backend_addr[2],
            (*ct).backend_addr[3],
        ];
        let be_port = (*ct).backend_port;

        // Inner header: source frontend → backend (address, port, header checksum).
        let d_addr = diff4((*inner).saddr, be);
        let old_inner_check = u16::from_ne_bytes((*inner).check);
        let new_inner_check = csum::apply(old_inner_check, d_addr);
        let old_sport = u16::from_ne_bytes((*ports).sport);
        (*inner).saddr = be;
        (*inner).check = new_inner_check.to_ne_bytes();
        (*ports).sport = be_port.to_ne_bytes();
        // The ICMP checksum covers all of that (no pseudo-header in ICMPv4).
        let d_icmp = d_addr
            + csum::diff16(old_inner_check, new_inner_check)
            + csum::diff16(old_sport, be_port);
        (*icmp).check = csum::apply(u16::from_ne_bytes((*icmp).check), d_icmp).to_ne_bytes();

        // Outer header: to the pod instead of the node.
        let d_outer = diff4((*outer).daddr, be);
        (*outer).daddr = be;
        (*outer).check = csum::apply(u16::from_ne_bytes((*outer).check), d_outer).to_ne_bytes();
    }
    Some(crate::l4::verdict_of(
        xdp_action::XDP_PASS,
        Stat::L4IcmpTranslated,
    ))
}

/// The ICMPv6 twin of [`handle`]. The ICMPv6 checksum also covers the outer addresses
/// (pseudo-header), so the outer destination change enters it too.
/// The lookup and the SNAT rewrite are sibling subprograms, so their stacks never add up.
#[inline(always)]
pub fn handle_v6(raw: *mut xdp_md, l3_off: usize, l4_off: usize) -> Verdict {
    let v = handle_v6_lookup(raw, l3_off, l4_off);
    if is_snat_mapped(v) {
        return translate_snat(raw, l3_off, l4_off, true);
    }
    v
}

#[inline(never)]
fn handle_v6_lookup(raw: *mut xdp_md, l3_off: usize, l4_off: usize) -> Verdict {
    let b = Bounds::of(raw);
    handle_v6_inner(&b, l3_off, l4_off).unwrap_or(NOT_HANDLED)
}

#[inline(always)]
fn handle_v6_inner(ctx: &Bounds, l3_off: usize, l4_off: usize) -> Option<Verdict> {
    let icmp_off = l4_off;
    let icmp = ptr_at::<IcmpHdr>(ctx, icmp_off)? as *mut IcmpHdr;
    // SAFETY: every pointer below comes from ptr_at, which checked its bounds.
    unsafe {
        let kind = (*icmp).kind;
        if kind != ICMPV6_DEST_UNREACH && kind != ICMPV6_PKT_TOOBIG && kind != ICMPV6_TIME_EXCEEDED
        {
            return None;
        }
        let inner_off = icmp_off + core::mem::size_of::<IcmpHdr>();
        let inner = ptr_at::<Ipv6Hdr>(ctx, inner_off)? as *mut Ipv6Hdr;
        let proto = (*inner).next_hdr;
        if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
            return None;
        }
        let ports = ptr_at::<InnerL4>(ctx, inner_off + 40)? as *mut InnerL4;
        let outer = ptr_at::<Ipv6Hdr>(ctx, l3_off)? as *mut Ipv6Hdr;
        let scr = &mut *scratch()?;
        scr.ct_key = FlowKey::default();
        scr.ct_key.saddr = (*inner).daddr;
        scr.ct_key.daddr = (*inner).saddr;
        scr.ct_key.sport = u16::from_ne_bytes((*ports).dport);
        scr.ct_key.dport = u16::from_ne_bytes((*ports).sport);
        scr.ct_key.proto = proto;
        scr.ct_key.family = FAMILY_V6;
        let Some(ct) = CONNTRACK.get_ptr(&scr.ct_key) else {
            return Some(map_endpoint_side(scr));
        };
        if (*ct).flags & CT_F_SNAT != 0 {
            return Some(map_client_side(scr, &*ct, true));
        }
        let be = (&raw const (*ct).backend_addr).cast::<u16>();
        let be_port = (*ct).backend_port;
        let old_sport = u16::from_ne_bytes((*ports).sport);
        let inner_src = (&raw mut (*inner).saddr).cast::<u16>();
        let outer_dst = (&raw mut (*outer).daddr).cast::<u16>();
        // Word by word, straight between map and packet memory: no 16-byte copies on the
        // stack.
        let mut d = csum::diff16(old_sport, be_port);
        let mut i = 0;
        while i < 8 {
            let new = be.add(i).read_unaligned();
            d += csum::diff16(inner_src.add(i).read_unaligned(), new);
            d += csum::diff16(outer_dst.add(i).read_unaligned(), new);
            inner_src.add(i).write_unaligned(new);
            outer_dst.add(i).write_unaligned(new);
            i += 1;
        }
        (*ports).sport = be_port.to_ne_bytes();
        (*icmp).check = csum::apply(u16::from_ne_bytes((*icmp).check), d).to_ne_bytes();
    }
    Some(crate::l4::verdict_of(
        xdp_action::XDP_PASS,
        Stat::L4IcmpTranslated,
    ))
}
