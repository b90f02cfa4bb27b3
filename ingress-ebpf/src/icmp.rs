//! ICMPv4 errors about NATed flows (destination unreachable, incl. "fragmentation needed" for
//! path MTU discovery, and time exceeded): the error names our reply (frontend → client), so
//! it is turned into one about the pod's packet (pod → client) and sent to the pod. Local
//! (DNAT-only) flows only; anything else goes to the kernel untouched.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use ingress_common::{
    l4::{CT_F_SNAT, FAMILY_V4, FlowKey},
    stats::Stat,
};

use crate::{
    csum,
    l4::Verdict,
    maps::{CONNTRACK, scratch},
    parse::{IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Parsed, ptr_at},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;

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

/// Translates an ICMPv4 error about a NATed flow; `None` when the packet is not one.
#[inline(always)]
pub fn handle(ctx: &XdpContext, p: &Parsed) -> Option<Verdict> {
    let icmp_off = p.l4_off;
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
        let outer = ptr_at::<Ipv4Hdr>(ctx, p.l3_off)? as *mut Ipv4Hdr;
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
        let be = (*ct).backend_addr;
        let be_port = (*ct).backend_port;

        // Inner header: source frontend → backend (address, port, header checksum).
        let mut old = [0u8; 16];
        old[..4].copy_from_slice(&(*inner).saddr);
        let d_addr = csum::diff_addr(&old, &be, false);
        let old_inner_check = u16::from_ne_bytes((*inner).check);
        let new_inner_check = csum::apply(old_inner_check, d_addr);
        let old_sport = u16::from_ne_bytes((*ports).sport);
        (*inner).saddr = [be[0], be[1], be[2], be[3]];
        (*inner).check = new_inner_check.to_ne_bytes();
        (*ports).sport = be_port.to_ne_bytes();
        // The ICMP checksum covers all of that (no pseudo-header in ICMPv4).
        let d_icmp = d_addr
            + csum::diff16(old_inner_check, new_inner_check)
            + csum::diff16(old_sport, be_port);
        (*icmp).check = csum::apply(u16::from_ne_bytes((*icmp).check), d_icmp).to_ne_bytes();

        // Outer header: to the pod instead of the node.
        let mut old = [0u8; 16];
        old[..4].copy_from_slice(&(*outer).daddr);
        let d_outer = csum::diff_addr(&old, &be, false);
        (*outer).daddr = [be[0], be[1], be[2], be[3]];
        (*outer).check = csum::apply(u16::from_ne_bytes((*outer).check), d_outer).to_ne_bytes();
    }
    Some(crate::l4::verdict_of(
        xdp_action::XDP_PASS,
        Stat::L4IcmpTranslated,
    ))
}
