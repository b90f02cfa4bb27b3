//! ICMP errors about NATed flows (ICMPv4 destination unreachable incl. "fragmentation needed",
//! time exceeded; ICMPv6 destination unreachable, packet too big, time exceeded): the error
//! names our reply (frontend → client), so it is turned into one about the pod's packet
//! (pod → client) and sent to the pod, which is what path MTU discovery needs. Local
//! (DNAT-only) flows only; anything else goes to the kernel untouched.

use aya_ebpf::bindings::{xdp_action, xdp_md};
use ingress_common::{
    l4::{CT_F_SNAT, FAMILY_V4, FAMILY_V6, FlowKey},
    stats::Stat,
};

use crate::{
    csum,
    l4::Verdict,
    maps::{CONNTRACK, scratch},
    parse::{IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr},
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
/// A BPF subprogram of its own: its temporaries stay off the main program's stack.
/// Takes the raw context pointer and reads the packet bounds with volatile loads: otherwise
/// LLVM passes the loaded packet pointers in, widened with shifts the verifier rejects.
#[inline(never)]
pub fn handle(raw: *mut xdp_md, l3_off: usize, l4_off: usize) -> Verdict {
    let b = Bounds::of(raw);
    handle_inner(&b, l3_off, l4_off).unwrap_or(NOT_HANDLED)
}

/// The packet's bounds, read from the context in this subprogram.
struct Bounds {
    data: usize,
    end: usize,
}

impl Bounds {
    #[inline(always)]
    fn of(raw: *mut xdp_md) -> Self {
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
fn ptr_at<T>(b: &Bounds, offset: usize) -> Option<*const T> {
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
        let ct = CONNTRACK.get_ptr(&scr.ct_key)?;
        if (*ct).flags & CT_F_SNAT != 0 {
            return None;
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
#[inline(never)]
pub fn handle_v6(raw: *mut xdp_md, l3_off: usize, l4_off: usize) -> Verdict {
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
        let ct = CONNTRACK.get_ptr(&scr.ct_key)?;
        if (*ct).flags & CT_F_SNAT != 0 {
            return None;
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
