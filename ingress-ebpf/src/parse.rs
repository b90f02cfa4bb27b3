//! Header parsing. Every read goes through [`ptr_at`], which proves to the verifier that the
//! bytes lie inside the frame; every failure names the [`Stat`] it is counted under.

use aya_ebpf::programs::XdpContext;
use core::mem;
use ingress_common::stats::Stat;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Big-endian ethertype.
    pub proto: [u8; 2],
}

#[repr(C)]
pub struct VlanHdr {
    pub tci: [u8; 2],
    pub proto: [u8; 2],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub ver_tc_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

#[repr(C)]
pub struct TcpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub doff_res: u8,
    pub flags: u8,
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg: [u8; 2],
}

#[repr(C)]
pub struct UdpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

/// What the parser learnt about a well-formed frame.
// Offsets and protocol are for the L4 path built on this parser.
#[allow(dead_code)]
pub struct Parsed {
    /// Protocol counter for this frame.
    pub protocol: Stat,
    /// Set when the frame is well-formed but cannot be handled here (fragment, extension header).
    pub pass_reason: Option<Stat>,
    pub vlan: bool,
    /// Offset of the IP header.
    pub l3_off: usize,
    /// Offset of the TCP/UDP header, valid for TCP and UDP only.
    pub l4_off: usize,
    /// IP protocol / IPv6 next header.
    pub ip_proto: u8,
}

/// Returns a pointer to a `T` at `offset` if all of it lies inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Stat> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Stat::PassTruncatedEth)?;
    // SAFETY: ptr_at checked the bounds.
    let mut ethertype = be16(unsafe { (*eth).proto });
    let mut l3_off = mem::size_of::<EthHdr>();
    let mut vlan = false;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tag = ptr_at::<VlanHdr>(ctx, l3_off).ok_or(Stat::PassTruncatedVlan)?;
        // SAFETY: ptr_at checked the bounds.
        ethertype = be16(unsafe { (*tag).proto });
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            return Err(Stat::PassTruncatedVlan);
        }
        l3_off += mem::size_of::<VlanHdr>();
        vlan = true;
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3_off, vlan),
        ETH_P_IPV6 => parse_ipv6(ctx, l3_off, vlan),
        ETH_P_ARP => Ok(Parsed {
            protocol: Stat::Arp,
            pass_reason: Some(Stat::PassNonIp),
            vlan,
            l3_off,
            l4_off: l3_off,
            ip_proto: 0,
        }),
        _ => Err(Stat::PassNonIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_off: usize, vlan: bool) -> Result<Parsed, Stat> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3_off).ok_or(Stat::PassTruncatedIpv4)?;
    // SAFETY: ptr_at checked the bounds.
    let (ver_ihl, tot_len, frag, ip_proto) = unsafe {
        (
            (*ip).ver_ihl,
            be16((*ip).tot_len) as usize,
            be16((*ip).frag_off),
            (*ip).proto,
        )
    };
    let ihl = (ver_ihl & 0x0f) as usize;
    if ver_ihl >> 4 != 4 || ihl < 5 {
        return Err(Stat::PassBadIpv4Header);
    }
    let l4_off = l3_off + ihl * 4;
    // The options must be inside the frame too.
    if ctx.data() + l4_off > ctx.data_end() {
        return Err(Stat::PassTruncatedIpv4);
    }
    if tot_len < ihl * 4 {
        return Err(Stat::PassBadIpv4Header);
    }
    let ip_end = l3_off + tot_len;
    let (protocol, l4) = match ip_proto {
        IPPROTO_TCP => (Stat::Ipv4Tcp, true),
        IPPROTO_UDP => (Stat::Ipv4Udp, true),
        IPPROTO_ICMP => (Stat::Ipv4Icmp, false),
        _ => (Stat::Ipv4Other, false),
    };
    // MF set or a non-zero offset: only the kernel can reassemble.
    let fragment = frag & 0x3fff != 0;
    let mut pass_reason = None;
    if fragment {
        pass_reason = Some(Stat::PassIpv4Fragment);
    } else if l4 {
        check_l4(ctx, l4_off, ip_end, ip_proto)?;
    }
    // The packet as its header says (RFC 791): a NAT forwards it whole, so it must lie inside
    // the frame; bytes past it are link padding. Found by the frame fuzz (tests/packet_fuzz.rs).
    if ctx.data() + ip_end > ctx.data_end() {
        return Err(Stat::PassTruncatedIpv4);
    }
    Ok(Parsed {
        protocol,
        pass_reason,
        vlan,
        l3_off,
        l4_off,
        ip_proto,
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_off: usize, vlan: bool) -> Result<Parsed, Stat> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, l3_off).ok_or(Stat::PassTruncatedIpv6)?;
    // SAFETY: ptr_at checked the bounds.
    let (ver, payload_len, next) = unsafe {
        (
            (*ip).ver_tc_flow[0] >> 4,
            be16((*ip).payload_len) as usize,
            (*ip).next_hdr,
        )
    };
    if ver != 6 {
        return Err(Stat::PassTruncatedIpv6);
    }
    let l4_off = l3_off + mem::size_of::<Ipv6Hdr>();
    let ip_end = l4_off + payload_len;
    let (protocol, pass_reason) = match next {
        IPPROTO_TCP => (Stat::Ipv6Tcp, None),
        IPPROTO_UDP => (Stat::Ipv6Udp, None),
        IPPROTO_ICMPV6 => (Stat::Ipv6Icmp, None),
        // Hop-by-hop, routing, fragment, destination options, AH, ESP, mobility: not walked.
        0 | 43 | 44 | 60 | 51 | 50 | 135 => (Stat::Ipv6Other, Some(Stat::PassIpv6ExtHeader)),
        _ => (Stat::Ipv6Other, None),
    };
    if next == IPPROTO_TCP || next == IPPROTO_UDP {
        check_l4(ctx, l4_off, ip_end, next)?;
    }
    // As for IPv4: the packet its header describes lies inside the frame (RFC 8200 §3).
    if ctx.data() + ip_end > ctx.data_end() {
        return Err(Stat::PassTruncatedIpv6);
    }
    Ok(Parsed {
        protocol,
        pass_reason,
        vlan,
        l3_off,
        l4_off,
        ip_proto: next,
    })
}

/// Checks that the TCP or UDP header at `l4_off` lies inside the frame and inside the IP
/// packet ending at `ip_end`, and that a UDP datagram's length (RFC 768: header included)
/// does too; the kernel drops such packets (`udp_rcv`'s short packet), a NAT must not
/// forward them.
#[inline(always)]
fn check_l4(ctx: &XdpContext, l4_off: usize, ip_end: usize, ip_proto: u8) -> Result<(), Stat> {
    if ip_proto == IPPROTO_TCP {
        let tcp = ptr_at::<TcpHdr>(ctx, l4_off).ok_or(Stat::PassTruncatedTcp)?;
        // SAFETY: ptr_at checked the bounds.
        let doff = (unsafe { (*tcp).doff_res } >> 4) as usize;
        if doff < 5 || ctx.data() + l4_off + doff * 4 > ctx.data_end() || l4_off + doff * 4 > ip_end
        {
            return Err(Stat::PassTruncatedTcp);
        }
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, l4_off).ok_or(Stat::PassTruncatedUdp)?;
        // SAFETY: ptr_at checked the bounds.
        let len = be16(unsafe { (*udp).len }) as usize;
        if len < mem::size_of::<UdpHdr>() || l4_off + len > ip_end {
            return Err(Stat::PassTruncatedUdp);
        }
    }
    Ok(())
}
