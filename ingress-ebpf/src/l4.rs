//! The XDP L4 path for one parsed TCP/UDP packet: replies from remote endpoints (reverse NAT),
//! then service lookup → source ranges → conntrack → ClientIP affinity → Maglev → NAT →
//! XDP_PASS (local pod, the kernel routes it) or XDP_TX/REDIRECT (remote endpoint).
//!
//! Nothing is written to the frame before every decision is taken, so a packet is either fully
//! rewritten or passed untouched.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, bpf_fib_lookup as FibParams, xdp_action},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_ktime_get_coarse_ns, bpf_redirect},
    },
    programs::XdpContext,
};
use ingress_common::{l4::*, stats::Stat};

use crate::{
    csum,
    fib::{self, FibResult},
    maps::{
        AFFINITY, BACKENDS, BE_STATS, CONFIG, CONNTRACK, LOCAL_ADDRS, MAGLEV, PORTS, REVNAT,
        SERVICES, SOURCE_RANGES, SVC_STATS, Scratch, count_l4, count_syn_limited, scratch,
    },
    parse::{
        EthHdr, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr, Parsed,
        TcpHdr, UdpHdr, ptr_at,
    },
    stats,
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const NS: u64 = 1_000_000_000;
/// Conntrack timestamps are refreshed at most this often, to keep writes off the hot path.
const REFRESH_NS: u64 = NS;
/// SNAT ports tried per new remote flow before giving up.
const SNAT_PROBES: u32 = 8;
/// `-E2BIG` from a map update: the (non-LRU) table is full.
const E2BIG: i32 = 7;

/// The clock of flow, reverse-entry and affinity timestamps and of every decision on them:
/// CLOCK_MONOTONIC, ns (`bpf_ktime_get_ns`, what the daemon's sweep reads too). A new (or
/// reopened) flow's entries are stamped from the coarse clock instead ([`coarse_ns`]: a memory
/// read where this one reads the clocksource, which measured ~80 ns of a new flow's ~1000 under
/// this hypervisor): it lags this one by at most a tick and never leads it, so such a stamp
/// only makes its entry up to a tick older, and every age is taken with [`older_than`] here
/// (the daemon saturates), which holds for stamps of either clock.
#[inline(always)]
pub fn clock_ns() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// More than CLOCK_MONOTONIC_COARSE ever lags [`clock_ns`]: one scheduler tick (10 ms at
/// HZ=100), with room for a late one.
const COARSE_SLACK_NS: u64 = 50_000_000;

/// True when `stamp` ([`clock_ns`]) is more than `limit` ns old, decided as [`clock_ns`] would
/// (`clock_ns() - stamp > limit`, wrapping) but reading it only near the boundary: the coarse
/// clock (`coarse`, a memory read where [`clock_ns`] reads the clocksource, tens of ns under a
/// hypervisor, a fifth of an established packet) settles every age more than
/// [`COARSE_SLACK_NS`] away from `limit`, and lags the fine clock, never leads it.
#[inline(always)]
fn older_than(coarse: u64, stamp: u64, limit: u64) -> bool {
    if stamp <= coarse {
        let age = coarse - stamp;
        // The fine age is at least the coarse one...
        if age > limit {
            return true;
        }
        // ...and at most a slack more.
        if age.saturating_add(COARSE_SLACK_NS) <= limit {
            return false;
        }
    }
    clock_ns().wrapping_sub(stamp) > limit
}

/// CLOCK_MONOTONIC_COARSE, ns: for [`older_than`] only, never stored.
#[inline(always)]
fn coarse_ns() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The fields of one TCP/UDP packet the L4 path reads.
pub struct Pkt {
    pub v6: bool,
    pub proto: u8,
    pub l3_off: usize,
    pub l4_off: usize,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Ports as network-order bits.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    /// IP total length (IPv4) or payload length + 40 (IPv6), host order, for fib lookups.
    pub tot_len: u16,
}

/// What to do with the frame (low 32 bits) and the counter that says why (high 32 bits),
/// packed so BPF subprograms can return it in one register.
#[derive(Clone, Copy)]
pub struct Verdict(u64);

impl Verdict {
    /// No verdict (ABORTED/Rx is never a real one): "not mine" from a sub-handler.
    pub const NONE: Verdict = Verdict(0);

    #[inline(always)]
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    #[inline(always)]
    pub fn action(self) -> u32 {
        self.0 as u32
    }

    #[inline(always)]
    pub fn stat(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A verdict for other modules of the L4 path.
#[inline(always)]
pub fn verdict_of(action: u32, stat: Stat) -> Verdict {
    verdict(action, stat)
}

#[inline(always)]
fn verdict(action: u32, stat: Stat) -> Verdict {
    Verdict((u64::from(stat as u32) << 32) | u64::from(action))
}

#[inline(always)]
fn pass(stat: Stat) -> Verdict {
    verdict(xdp_action::XDP_PASS, stat)
}

/// "Not a reply to a SNAT flow" from [`remote_reply`] (ABORTED/Rx is never a real verdict).
const NOT_A_REPLY: Verdict = Verdict(0);

/// New addresses and ports for [`rewrite`].
pub struct Nat {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

/// Per-packet facts [`forward`] needs besides the packet and backend.
pub struct Fwd {
    pub now: u64,
    pub snat_port: u16,
    pub refresh: bool,
    /// The flow's [`CT_F_CLOSING`] bit, copied onto its reverse entry on refresh.
    pub closing: u32,
}

#[inline(always)]
fn read_pkt(ctx: &XdpContext, p: &Parsed) -> Option<Pkt> {
    let mut pkt = Pkt {
        v6: false,
        proto: p.ip_proto,
        l3_off: p.l3_off,
        l4_off: p.l4_off,
        saddr: [0; 16],
        daddr: [0; 16],
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        tot_len: 0,
    };
    let v4 = ptr_at::<Ipv4Hdr>(ctx, p.l3_off)?;
    // SAFETY: ptr_at checked the bounds of every header read below.
    unsafe {
        if (*v4).ver_ihl >> 4 == 4 {
            pkt.saddr[..4].copy_from_slice(&(*v4).saddr);
            pkt.daddr[..4].copy_from_slice(&(*v4).daddr);
            pkt.tot_len = u16::from_be_bytes((*v4).tot_len);
        } else {
            let ip = ptr_at::<Ipv6Hdr>(ctx, p.l3_off)?;
            pkt.v6 = true;
            pkt.saddr = (*ip).saddr;
            pkt.daddr = (*ip).daddr;
            pkt.tot_len = u16::from_be_bytes((*ip).payload_len).wrapping_add(40);
        }
        // A length field that disagrees with the frame: the kernel's to judge, untouched.
        let frame = ctx.data_end() - ctx.data();
        if usize::from(pkt.tot_len) + p.l3_off > frame
            || usize::from(pkt.tot_len) + p.l3_off < p.l4_off + 8
        {
            return None;
        }
        if p.ip_proto == IPPROTO_TCP {
            let tcp = ptr_at::<TcpHdr>(ctx, p.l4_off)?;
            pkt.sport = u16::from_ne_bytes((*tcp).sport);
            pkt.dport = u16::from_ne_bytes((*tcp).dport);
            pkt.tcp_flags = (*tcp).flags;
            // The TCP header (with options) must fit in the IP length too.
            let doff = usize::from((*tcp).doff_res >> 4) * 4;
            if usize::from(pkt.tot_len) + p.l3_off < p.l4_off + doff {
                return None;
            }
        } else {
            let udp = ptr_at::<UdpHdr>(ctx, p.l4_off)?;
            pkt.sport = u16::from_ne_bytes((*udp).sport);
            pkt.dport = u16::from_ne_bytes((*udp).dport);
        }
    }
    Some(pkt)
}

/// True for a segment that may open a TCP connection: SYN without ACK, RST or FIN (a SYN
/// with FIN or RST is one the kernel's listener discards, RFC 9293 3.10.7.2).
#[inline(always)]
fn starts_connection(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
}

#[inline(always)]
fn family(pkt: &Pkt) -> u8 {
    if pkt.v6 { FAMILY_V6 } else { FAMILY_V4 }
}

#[inline(always)]
fn addr_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Fills `k` field by field: a struct literal is built on the stack and then copied, and the
/// BPF stack is 512 bytes over a whole call chain.
#[inline(always)]
pub fn fill_key(
    k: &mut FlowKey,
    saddr: &[u8; 16],
    daddr: &[u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    family: u8,
) {
    k.saddr = *saddr;
    k.daddr = *daddr;
    k.sport = sport;
    k.dport = dport;
    k.proto = proto;
    k.family = family;
    k._pad = [0; 2];
}

/// Fills `n` field by field (see [`fill_key`]).
#[inline(always)]
fn fill_nat(n: &mut Nat, saddr: &[u8; 16], daddr: &[u8; 16], sport: u16, dport: u16) {
    n.saddr = *saddr;
    n.daddr = *daddr;
    n.sport = sport;
    n.dport = dport;
}

/// murmur3's finaliser: cheap and well mixed.
#[inline(always)]
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of the client side of a flow (source address and port, destination port, protocol).
/// The node's own address is left out so every node picks the same backend for a client.
#[inline(always)]
fn flow_hash(pkt: &Pkt) -> u32 {
    let mut h = 0x9e37_79b9u32;
    let mut i = 0;
    while i < 4 {
        let w = u32::from_ne_bytes([
            pkt.saddr[4 * i],
            pkt.saddr[4 * i + 1],
            pkt.saddr[4 * i + 2],
            pkt.saddr[4 * i + 3],
        ]);
        h = mix(h ^ w);
        i += 1;
    }
    h = mix(h ^ ((u32::from(pkt.sport) << 16) | u32::from(pkt.dport)));
    mix(h ^ u32::from(pkt.proto))
}

#[inline(always)]
fn timeout_ns(cfg: &L4Config, proto: u8, flags: u32) -> u64 {
    let s = if proto == IPPROTO_UDP {
        cfg.udp_timeout_s
    } else if flags & CT_F_CLOSING != 0 {
        cfg.tcp_closing_timeout_s
    } else {
        cfg.tcp_timeout_s
    };
    u64::from(s) * NS
}

/// A packet no service frontend takes: the node's own traffic, passed to the kernel. Only a
/// TCP SYN that may open a connection, to a port in the listener bitmap, is looked at further,
/// for the SYN limit of the proxy's own listeners. It comes after the service lookups, so a
/// service's traffic is judged by its own limit, source ranges and flow table alone and never
/// charged twice; it needs no flow-table lookup (the kernel, not XDP, tracks the proxy's
/// connections: a SYN retransmitted after a lost SYN-ACK costs a token again) and no source
/// ranges (those are a Service's `loadBalancerSourceRanges`, not the node's).
#[inline(always)]
fn no_frontend(pkt: &Pkt, len: u64) -> Verdict {
    if pkt.proto == IPPROTO_TCP
        && starts_connection(pkt.tcp_flags)
        && crate::syn_limit::is_listener_port(pkt.dport)
    {
        return crate::syn_limit::listener(pkt, len);
    }
    pass(Stat::PassNoService)
}

/// The L4 path for a well-formed TCP/UDP packet.
#[inline(always)]
pub fn handle(ctx: &XdpContext, p: &Parsed, len: u64) -> Verdict {
    if p.ip_proto == IPPROTO_ICMP && p.protocol == Stat::Ipv4Icmp {
        let v = crate::icmp::handle(ctx.ctx, p.l3_off, p.l4_off);
        if !v.is_none() {
            return v;
        }
    }
    if p.ip_proto == IPPROTO_ICMPV6 && p.protocol == Stat::Ipv6Icmp {
        let v = crate::icmp::handle_v6(ctx.ctx, p.l3_off, p.l4_off);
        if !v.is_none() {
            return v;
        }
    }
    if p.ip_proto != IPPROTO_TCP && p.ip_proto != IPPROTO_UDP {
        return pass(Stat::PassNoService);
    }
    let Some(pkt) = read_pkt(ctx, p) else {
        return pass(Stat::PassBadLength);
    };
    let Some(cfg) = CONFIG.get(0) else {
        return pass(Stat::PassNoService);
    };
    if cfg.maglev_size == 0 {
        return pass(Stat::PassNoService);
    }
    let dport_host = u16::from_be(pkt.dport);
    if cfg.snat_port_min != 0 && dport_host >= cfg.snat_port_min && dport_host <= cfg.snat_port_max
    {
        let Some(scr) = scratch() else {
            return pass(Stat::PassNoService);
        };
        // SAFETY: this CPU's scratch entry.
        let v = remote_reply(ctx, &pkt, unsafe { &mut *scr });
        if v.0 != NOT_A_REPLY.0 {
            return v;
        }
    }

    // Most of a node's traffic is its own: one bitmap word says no frontend uses this port.
    let word = (u32::from(dport_host) >> 5) * 2;
    let bit = 1u32 << (dport_host & 31);
    match PORTS.get(word) {
        Some(w) if *w & bit != 0 => {}
        _ => return no_frontend(&pkt, len),
    }
    // Address frontends first (they are more specific), only on ports that have one.
    let mut skey = ServiceKey {
        addr: [0; 16],
        port: pkt.dport,
        proto: pkt.proto,
        family: family(&pkt),
    };
    let mut found = None;
    if PORTS.get(word + 1).is_some_and(|w| *w & bit != 0) {
        skey.addr = pkt.daddr;
        found = SERVICES.get_ptr(&skey);
        skey.addr = [0; 16];
    }
    let svc = match found {
        Some(s) => s,
        None => match SERVICES.get_ptr(&skey) {
            // A NodePort answers on the node's own addresses only.
            Some(s) if is_local(&pkt) => s,
            _ => return no_frontend(&pkt, len),
        },
    };
    // SAFETY: pointer from a successful lookup; hash values stay valid under RCU while we run.
    let svc = unsafe { *svc };

    if svc.flags & SVC_F_SOURCE_RANGES != 0 && !source_allowed(&pkt, svc.slot) {
        return verdict(xdp_action::XDP_DROP, Stat::DropSourceRange);
    }

    let Some(scr) = scratch() else {
        return pass(Stat::PassNoService);
    };
    // SAFETY: this CPU's scratch entry; nothing else uses it while the program runs here.
    let scr = unsafe { &mut *scr };
    fill_key(
        &mut scr.ct_key,
        &pkt.saddr,
        &pkt.daddr,
        pkt.sport,
        pkt.dport,
        pkt.proto,
        family(&pkt),
    );
    let coarse = coarse_ns();
    let closing = pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0;
    let syn = pkt.proto == IPPROTO_TCP && starts_connection(pkt.tcp_flags);

    // A SYN on a live flow's 5-tuple (a retransmission after a lost SYN-ACK) reopens that
    // flow in place: it adds no state, so the SYN rate limit does not charge it.
    let mut reopens = false;
    let mut picked = NOT_PICKED;
    // An established flow keeps its backend as long as that backend still exists and, for
    // UDP, still serves.
    if let Some(ct) = CONNTRACK.get_ptr_mut(&scr.ct_key) {
        // SAFETY: pointer from a successful lookup; fields are plain integers.
        let e = unsafe { &mut *ct };
        let fresh = !older_than(coarse, e.last_seen_ns, timeout_ns(cfg, pkt.proto, e.flags));
        reopens = syn && fresh;
        if !syn
            && fresh
            && let Some(be) = BACKENDS.get(e.backend_id)
            && be.flags & BE_F_PRESENT != 0
            && be.port == e.backend_port
            && addr_eq(&be.addr, &e.backend_addr)
        {
            if keeps_flows(be, pkt.proto) {
                // The first FIN or RST is written through to the reverse entry at once: the
                // closing timeout then frees the flow's SNAT port as soon as it runs out.
                let newly_closing = closing && e.flags & CT_F_CLOSING == 0;
                if newly_closing {
                    e.flags |= CT_F_CLOSING;
                }
                let refresh = newly_closing || older_than(coarse, e.last_seen_ns, REFRESH_NS);
                // Only a refresh stores the time (here and on the reverse entry in `forward`).
                let now = if refresh { clock_ns() } else { coarse };
                if refresh {
                    e.last_seen_ns = now;
                }
                let (id, snat_port, flow_closing) =
                    (e.backend_id, e.snat_port, e.flags & CT_F_CLOSING);
                count_l4(&SVC_STATS, svc.slot, len, false);
                count_l4(&BE_STATS, id, len, false);
                stats::count(Stat::L4Established, len);
                scr.fwd = Fwd {
                    now,
                    snat_port,
                    refresh,
                    closing: flow_closing,
                };
                return forward(ctx, &pkt, cfg, be, scr);
            }
            // A removed endpoint's UDP flow ends here; this datagram opens a new one below.
            stats::count(Stat::L4UdpFlowMoved, len);
        }
        if reopens && e.snat_port == 0 && e.svc_slot == svc.slot {
            // The backend a new flow would get: when it is the flow's own (local) one, both
            // entries are reset where they are, as a release and re-insert would leave them,
            // without the four map writes (and the tombstone, which the live reverse entry
            // would hide anyway). Stamped as a new flow is, from the coarse clock (`clock_ns`).
            let now = coarse;
            picked = select_backend(&pkt, &svc, cfg, now, len);
            scr.fwd.now = now;
            if reopen_in_place(&pkt, e, picked, scr) {
                let id = picked & !FROM_AFFINITY;
                if let Some(be) = BACKENDS.get(id) {
                    return opened(ctx, &pkt, &svc, cfg, be, picked, now, len, scr);
                }
            }
        }
        // Over (timed out, its endpoint gone) or opened anew by a SYN: both of its entries go
        // now, so the table never holds a dead flow that a live one could use.
        release_flow(e, &pkt, cfg, scr);
    }

    // Only a packet that may open a connection creates state (flow, affinity, SNAT port,
    // reverse entry): anything else would let a flood of stray segments fill the tables.
    if pkt.proto == IPPROTO_TCP && !syn {
        return pass(Stat::PassNoFlow);
    }
    // Stamps and ages of the new flow's entries (see `clock_ns`); the SYN limit reads the fine
    // clock itself, and only for a service that has a limit.
    let now = coarse;
    // A new connection beyond its source's share: dropped before it gets any state.
    if syn && !reopens && !crate::syn_limit::admits(&pkt, svc.slot) {
        count_syn_limited(svc.slot);
        return verdict(xdp_action::XDP_DROP, Stat::DropSynRateLimit);
    }

    // A new flow: affinity first, then Maglev (already asked when reopening a flow).
    if picked == NOT_PICKED {
        picked = select_backend(&pkt, &svc, cfg, now, len);
    }
    if picked == NO_BACKEND {
        return crate::reject::no_endpoint(ctx.ctx, &pkt, svc.flags);
    }
    let id = picked & !FROM_AFFINITY;
    let Some(be) = BACKENDS.get(id) else {
        return verdict(xdp_action::XDP_DROP, Stat::DropNoBackend);
    };
    if be.flags & BE_F_PRESENT == 0 {
        return verdict(xdp_action::XDP_DROP, Stat::DropNoBackend);
    }
    // The reverse entry first (it reserves the SNAT port), then the flow entry; a flow is
    // admitted only with both. The tables are not LRUs: a full one refuses new flows (dropped
    // and counted, the client retries its SYN) instead of evicting an established one.
    let mut snat_port = 0u16;
    if be.flags & BE_F_REMOTE != 0 {
        let r = alloc_snat(&pkt, cfg, be, now, scr);
        if r == SNAT_TABLE_FULL {
            return verdict(xdp_action::XDP_DROP, Stat::DropFlowTableFull);
        }
        if r == 0 {
            return pass(Stat::PassSnatExhausted);
        }
        snat_port = r as u16;
    } else if !insert_local_rev(&pkt, be, now, scr) {
        return verdict(xdp_action::XDP_DROP, Stat::DropFlowTableFull);
    }
    scr.ct_entry = CtEntry {
        backend_addr: be.addr,
        backend_port: be.port,
        snat_port,
        backend_id: id,
        svc_slot: svc.slot,
        flags: if snat_port != 0 { CT_F_SNAT } else { 0 },
        last_seen_ns: now,
    };
    if CONNTRACK
        .insert(&scr.ct_key, &scr.ct_entry, u64::from(BPF_ANY))
        .is_err()
    {
        // scr.rkey still names the reverse entry made above.
        let _ = REVNAT.remove(&scr.rkey);
        return verdict(xdp_action::XDP_DROP, Stat::DropFlowTableFull);
    }
    scr.fwd.snat_port = snat_port;
    opened(ctx, &pkt, &svc, cfg, be, picked, now, len, scr)
}

/// The rest of a flow just opened (or reopened) on `be` (`picked`, see [`select_backend`];
/// SNAT port in `scr.fwd.snat_port`): affinity, counters, and the packet sent on.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn opened(
    ctx: &XdpContext,
    pkt: &Pkt,
    svc: &ServiceValue,
    cfg: &L4Config,
    be: &Backend,
    picked: u32,
    now: u64,
    len: u64,
    scr: &mut Scratch,
) -> Verdict {
    let id = picked & !FROM_AFFINITY;
    // A hit already refreshed its entry in place.
    if svc.flags & SVC_F_AFFINITY != 0 && picked & FROM_AFFINITY == 0 {
        remember_affinity(pkt, svc.slot, id, now);
    }
    count_l4(&SVC_STATS, svc.slot, len, true);
    count_l4(&BE_STATS, id, len, true);
    stats::count(Stat::L4NewFlow, len);
    scr.fwd.now = now;
    scr.fwd.refresh = false;
    scr.fwd.closing = 0;
    forward(ctx, pkt, cfg, be, scr)
}

/// Reopens the live local flow `e` (the packet's, keyed by `scr.ct_key`) in place for a SYN on
/// its tuple when `picked` is the flow's own backend, still present and local, and the flow's
/// reverse entry is still its own: both entries get what a fresh insert would give them (no
/// flags, seen at `scr.fwd.now`). False, changing nothing, otherwise.
#[inline(never)]
fn reopen_in_place(pkt: &Pkt, e: &mut CtEntry, picked: u32, scr: &mut Scratch) -> bool {
    let id = picked & !FROM_AFFINITY;
    if picked == NO_BACKEND || id != e.backend_id {
        return false;
    }
    let Some(be) = BACKENDS.get(id) else {
        return false;
    };
    if be.flags & BE_F_PRESENT == 0
        || be.flags & BE_F_REMOTE != 0
        || be.port != e.backend_port
        || !addr_eq(&be.addr, &e.backend_addr)
    {
        return false;
    }
    fill_key(
        &mut scr.rkey,
        &be.addr,
        &pkt.saddr,
        be.port,
        pkt.sport,
        pkt.proto,
        family(pkt),
    );
    let Some(r) = REVNAT.get_ptr_mut(&scr.rkey) else {
        return false;
    };
    // SAFETY: pointer from a successful lookup; plain integers.
    let r = unsafe { &mut *r };
    if r.client_port != pkt.sport
        || r.frontend_port != pkt.dport
        || !addr_eq(&r.client_addr, &pkt.saddr)
        || !addr_eq(&r.frontend_addr, &pkt.daddr)
    {
        return false;
    }
    let now = scr.fwd.now;
    r.flags = 0;
    r.last_seen_ns = now;
    e.flags = 0;
    e.last_seen_ns = now;
    scr.fwd.snat_port = 0;
    true
}

/// True when `be` (present, the flow's own) keeps an established flow of protocol `proto`:
/// always, but for a removed endpoint's ([`BE_F_REMOVED`]) UDP flows. TCP drains gracefully
/// for `--l4-drain-secs`; a UDP flow has no end to wait for, and every datagram would keep it
/// on an endpoint that no longer answers, so it moves on its next datagram, as after
/// kube-proxy's clearing of a removed UDP endpoint's conntrack entries. A terminating endpoint
/// that still serves keeps both.
#[inline(always)]
fn keeps_flows(be: &Backend, proto: u8) -> bool {
    proto != IPPROTO_UDP || be.flags & BE_F_REMOVED == 0
}

/// True when the destination is one of the node's addresses (or the daemon did not list them).
/// A subprogram: its unrolled compares stay off the main program's stack.
#[inline(never)]
pub fn is_local(pkt: &Pkt) -> bool {
    let Some(l) = LOCAL_ADDRS.get(0) else {
        return true;
    };
    let mut i = 0;
    if pkt.v6 {
        if l.n_v6 == 0 {
            return true;
        }
        while i < LOCAL_ADDRS_V6 {
            if (i as u32) < l.n_v6 && addr_eq(&l.v6[i], &pkt.daddr) {
                return true;
            }
            i += 1;
        }
    } else {
        if l.n_v4 == 0 {
            return true;
        }
        let d = [pkt.daddr[0], pkt.daddr[1], pkt.daddr[2], pkt.daddr[3]];
        while i < LOCAL_ADDRS_V4 {
            if (i as u32) < l.n_v4 && l.v4[i] == d {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[inline(always)]
fn source_allowed(pkt: &Pkt, slot: u32) -> bool {
    let key = aya_ebpf::maps::lpm_trie::Key::new(
        SOURCE_RANGE_PREFIX_BITS + if pkt.v6 { 128 } else { 32 },
        SourceRangeData {
            slot_be: slot.to_be_bytes(),
            family: family(pkt),
            addr: pkt.saddr,
            _pad: [0; 3],
        },
    );
    SOURCE_RANGES.get(&key).is_some()
}

/// No backend asked for yet (never an answer of [`select_backend`]: ids stay far below it).
const NOT_PICKED: u32 = u32::MAX - 1;
/// Set in [`select_backend`]'s answer when a live affinity entry chose the backend (ids stay
/// far below it).
const FROM_AFFINITY: u32 = 1 << 31;
/// [`alloc_snat`]: the reverse table is full.
const SNAT_TABLE_FULL: u32 = u32::MAX;

/// Picks a backend id for a new flow: a live ClientIP affinity entry (marked
/// [`FROM_AFFINITY`]), else the Maglev table. [`NO_BACKEND`] when the service has none. `now`
/// (ns) is a reading of either clock (see [`clock_ns`]), stored as the affinity's last use.
#[inline(never)]
fn select_backend(pkt: &Pkt, svc: &ServiceValue, cfg: &L4Config, now: u64, len: u64) -> u32 {
    let akey = AffinityKey {
        client: pkt.saddr,
        svc_slot: svc.slot,
        family: family(pkt),
        _pad: [0; 3],
    };
    if svc.flags & SVC_F_AFFINITY != 0
        && let Some(a) = AFFINITY.get_ptr_mut(&akey)
    {
        // SAFETY: pointer from a successful lookup.
        let (id, used) = unsafe { ((*a).backend_id, (*a).last_used_ns) };
        let live = !older_than(now, used, u64::from(svc.affinity_timeout_s) * NS);
        let usable = match BACKENDS.get(id) {
            Some(be) => {
                be.flags & BE_F_PRESENT != 0
                    && be.flags & BE_F_TERMINATING == 0
                    && be.svc_slot == svc.slot
            }
            None => false,
        };
        if live && usable {
            stats::count(Stat::L4AffinityHit, len);
            // In place: cheaper than an LRU insert, and a racing writer only moves the
            // timestamp.
            // SAFETY: pointer from a successful lookup; a plain u64 store.
            unsafe { (*a).last_used_ns = now };
            return id | FROM_AFFINITY;
        }
        stats::count(Stat::L4AffinityMiss, len);
    }
    if svc.backend_count == 0 {
        return NO_BACKEND;
    }
    let m = cfg.maglev_size;
    if m == 0 {
        return NO_BACKEND;
    }
    let idx = (svc.slot * 2 + (svc.generation & 1)) * m + flow_hash(pkt) % m;
    let Some(id) = MAGLEV.get(idx) else {
        return NO_BACKEND;
    };
    *id
}

/// Records `id` as the client's ClientIP affinity in service `slot`, once its flow is admitted
/// (a refused flow leaves no state behind).
#[inline(never)]
fn remember_affinity(pkt: &Pkt, slot: u32, id: u32, now: u64) {
    let akey = AffinityKey {
        client: pkt.saddr,
        svc_slot: slot,
        family: family(pkt),
        _pad: [0; 3],
    };
    let v = AffinityValue {
        backend_id: id,
        _pad: 0,
        last_used_ns: now,
    };
    // An LRU of its own: losing an entry only costs stickiness, never a flow.
    let _ = AFFINITY.insert(&akey, &v, u64::from(BPF_ANY));
}

/// The reverse entry of a new flow to a local pod (reply pod → client back to frontend →
/// client), left in `scr.rkey`. False when the table is full.
#[inline(never)]
fn insert_local_rev(pkt: &Pkt, be: &Backend, now: u64, scr: &mut Scratch) -> bool {
    fill_key(
        &mut scr.rkey,
        &be.addr,
        &pkt.saddr,
        be.port,
        pkt.sport,
        pkt.proto,
        family(pkt),
    );
    scr.rev = RevNatEntry {
        client_addr: pkt.saddr,
        frontend_addr: pkt.daddr,
        client_port: pkt.sport,
        frontend_port: pkt.dport,
        flags: 0,
        last_seen_ns: now,
    };
    REVNAT
        .insert(&scr.rkey, &scr.rev, u64::from(BPF_ANY))
        .is_ok()
}

/// Deletes the flow `e` (the packet's, keyed by `scr.ct_key`) and its reverse entry, when that
/// entry is still this flow's.
#[inline(never)]
fn release_flow(e: &CtEntry, pkt: &Pkt, cfg: &L4Config, scr: &mut Scratch) {
    let mut daddr = pkt.saddr;
    let mut dport = pkt.sport;
    if e.snat_port != 0 {
        daddr = [0; 16];
        if pkt.v6 {
            daddr = cfg.node_v6;
        } else {
            daddr[..4].copy_from_slice(&cfg.node_v4);
        }
        dport = e.snat_port;
    }
    scr.rkey = FlowKey {
        saddr: e.backend_addr,
        daddr,
        sport: e.backend_port,
        dport,
        proto: pkt.proto,
        family: family(pkt),
        _pad: [0; 2],
    };
    if let Some(r) = REVNAT.get_ptr(&scr.rkey) {
        // SAFETY: pointer from a successful lookup; read before the entry is deleted.
        let (ours, seen) = unsafe {
            (
                (*r).client_port == pkt.sport && addr_eq(&(*r).client_addr, &pkt.saddr),
                (*r).last_seen_ns,
            )
        };
        if ours {
            let _ = REVNAT.remove(&scr.rkey);
            // A local pod's late reply would otherwise leave untranslated (SNAT flows' replies
            // come back here, to the node's port, and are the kernel's).
            if e.snat_port == 0 {
                crate::tombstone::bury(&scr.rkey, seen.max(e.last_seen_ns));
            }
        }
    }
    let _ = CONNTRACK.remove(&scr.ct_key);
}

/// Reserves a SNAT source port for a new flow to a remote backend by inserting its reverse
/// entry (left in `scr.rkey`); ports already taken by a live flow are skipped. Returns the port
/// (network order), 0 when none is free or SNAT is not configured, [`SNAT_TABLE_FULL`] when
/// the reverse table has no room. `now` (ns) is a reading of either clock (see [`clock_ns`]).
#[inline(never)]
fn alloc_snat(pkt: &Pkt, cfg: &L4Config, be: &Backend, now: u64, scr: &mut Scratch) -> u32 {
    // Field by field into the scratch space: struct literals would be built on the stack.
    scr.rkey.daddr = [0; 16];
    if pkt.v6 {
        scr.rkey.daddr = cfg.node_v6;
    } else {
        scr.rkey.daddr[..4].copy_from_slice(&cfg.node_v4);
    }
    if scr.rkey.daddr == [0u8; 16]
        || cfg.snat_port_min == 0
        || cfg.snat_port_max < cfg.snat_port_min
    {
        return 0;
    }
    let range = u32::from(cfg.snat_port_max - cfg.snat_port_min) + 1;
    let h = flow_hash(pkt);
    scr.rev.client_addr = pkt.saddr;
    scr.rev.frontend_addr = pkt.daddr;
    scr.rev.client_port = pkt.sport;
    scr.rev.frontend_port = pkt.dport;
    scr.rev.flags = CT_F_SNAT;
    scr.rev.last_seen_ns = now;
    scr.rkey.saddr = be.addr;
    scr.rkey.sport = be.port;
    scr.rkey.proto = pkt.proto;
    scr.rkey.family = family(pkt);
    scr.rkey._pad = [0; 2];
    let mut i = 0u32;
    while i < SNAT_PROBES {
        let port =
            (cfg.snat_port_min as u32 + (h.wrapping_add(i.wrapping_mul(7919))) % range) as u16;
        scr.rkey.dport = port.to_be();
        match REVNAT.insert(&scr.rkey, &scr.rev, u64::from(BPF_NOEXIST)) {
            Ok(()) => return u32::from(port.to_be()),
            Err(e) if e == -E2BIG => return SNAT_TABLE_FULL,
            Err(_) => {}
        }
        if let Some(old) = REVNAT.get_ptr(&scr.rkey) {
            // SAFETY: pointer from a successful lookup.
            let old = unsafe { &*old };
            let same = addr_eq(&old.client_addr, &pkt.saddr) && old.client_port == pkt.sport;
            // A port is free once its flow timed out: the closing timeout after a FIN or RST
            // (conntrack's TIME_WAIT), else the idle timeout of its protocol.
            let stale = older_than(now, old.last_seen_ns, timeout_ns(cfg, pkt.proto, old.flags));
            if same || stale {
                if !same {
                    forget_flow(old, pkt, port.to_be(), scr);
                }
                // In place: replacing an existing key needs no free slot.
                let _ = REVNAT.insert(&scr.rkey, &scr.rev, u64::from(BPF_ANY));
                return u32::from(port.to_be());
            }
        }
        i += 1;
    }
    0
}

/// Deletes the flow entry of the SNAT flow `old` (the timed-out owner of `port`) so that a late
/// packet of that flow cannot go out through the port's new flow. A subprogram: its key stays
/// off [`alloc_snat`]'s stack.
#[inline(never)]
fn forget_flow(old: &RevNatEntry, pkt: &Pkt, port: u16, scr: &mut Scratch) {
    fill_key(
        &mut scr.old_key,
        &old.client_addr,
        &old.frontend_addr,
        old.client_port,
        old.frontend_port,
        pkt.proto,
        family(pkt),
    );
    if let Some(ct) = CONNTRACK.get_ptr(&scr.old_key) {
        // SAFETY: pointer from a successful lookup.
        if unsafe { (*ct).snat_port } == port {
            let _ = CONNTRACK.remove(&scr.old_key);
        }
    }
}

/// NATs the packet toward `be` and sends it: DNAT + XDP_PASS for a local pod, DNAT + SNAT +
/// XDP_TX/REDIRECT for a remote endpoint. `refresh` brings the reverse entry's timestamp and
/// closing bit up to date.
#[inline(never)]
fn forward(
    ctx: &XdpContext,
    pkt: &Pkt,
    cfg: &L4Config,
    be: &Backend,
    scr: &mut Scratch,
) -> Verdict {
    let (now, snat_port, refresh, closing) = (
        scr.fwd.now,
        scr.fwd.snat_port,
        scr.fwd.refresh,
        scr.fwd.closing,
    );
    // The endpoint sees the client itself (local pod: DNAT only) or this node's SNAT port.
    let mut node = [0u8; 16];
    let (peer, peer_port) = if snat_port == 0 {
        (&pkt.saddr, pkt.sport)
    } else {
        if pkt.v6 {
            node = cfg.node_v6;
        } else {
            node[..4].copy_from_slice(&cfg.node_v4);
        }
        (&node, snat_port)
    };
    if refresh {
        // The reverse entry is keyed as the endpoint's reply arrives: endpoint -> peer.
        fill_key(
            &mut scr.rkey,
            &be.addr,
            peer,
            be.port,
            peer_port,
            pkt.proto,
            family(pkt),
        );
        if let Some(r) = REVNAT.get_ptr_mut(&scr.rkey) {
            // SAFETY: pointer from a successful lookup; plain integer stores.
            unsafe {
                (*r).last_seen_ns = now;
                (*r).flags |= closing;
            }
        }
    }
    fill_nat(&mut scr.nat, peer, &be.addr, peer_port, be.port);
    if snat_port == 0 {
        if !rewrite(ctx, pkt, &scr.nat) {
            return pass(Stat::PassNoService);
        }
        return pass(Stat::L4LocalDnat);
    }
    send_on(ctx, pkt, &mut scr.fib, &scr.nat, Stat::L4RemoteTx)
}

/// A reply from a remote endpoint to one of our SNAT ports: back to the client, from the
/// frontend. [`NOT_A_REPLY`] when the packet is not such a reply.
#[inline(never)]
fn remote_reply(ctx: &XdpContext, pkt: &Pkt, scr: &mut Scratch) -> Verdict {
    fill_key(
        &mut scr.rkey,
        &pkt.saddr,
        &pkt.daddr,
        pkt.sport,
        pkt.dport,
        pkt.proto,
        family(pkt),
    );
    let Some(r) = REVNAT.get_ptr_mut(&scr.rkey) else {
        return NOT_A_REPLY;
    };
    // SAFETY: pointer from a successful lookup; plain integers.
    let rev = unsafe { &mut *r };
    if rev.flags & CT_F_SNAT == 0 {
        return NOT_A_REPLY;
    }
    // The endpoint's FIN or RST closes the flow as the client's does, in both entries.
    let closing = pkt.proto == IPPROTO_TCP && pkt.tcp_flags & (TCP_FIN | TCP_RST) != 0;
    if closing && rev.flags & CT_F_CLOSING == 0 {
        rev.flags |= CT_F_CLOSING;
        rev.last_seen_ns = clock_ns();
        mark_closing(rev, pkt, scr);
    } else if older_than(coarse_ns(), rev.last_seen_ns, REFRESH_NS) {
        rev.last_seen_ns = clock_ns();
    }
    fill_nat(
        &mut scr.nat,
        &rev.frontend_addr,
        &rev.client_addr,
        rev.frontend_port,
        rev.client_port,
    );
    send_on(ctx, pkt, &mut scr.fib, &scr.nat, Stat::L4ReplyXdp)
}

/// Marks the flow entry of the SNAT flow `rev` (keyed by its client side) as closing.
#[inline(always)]
fn mark_closing(rev: &RevNatEntry, pkt: &Pkt, scr: &mut Scratch) {
    fill_key(
        &mut scr.old_key,
        &rev.client_addr,
        &rev.frontend_addr,
        rev.client_port,
        rev.frontend_port,
        pkt.proto,
        family(pkt),
    );
    if let Some(ct) = CONNTRACK.get_ptr_mut(&scr.old_key) {
        // SAFETY: pointer from a successful lookup; a plain integer store.
        unsafe { (*ct).flags |= CT_F_CLOSING };
    }
}

/// Sends the packet on as `nat` says (from `nat.saddr` to `nat.daddr`, counted as `stat`), or
/// passes it untouched to the kernel with the reason: last hop, no route or neighbour, or a
/// header gone.
#[inline(always)]
fn send_on(ctx: &XdpContext, pkt: &Pkt, fib: &mut FibParams, nat: &Nat, stat: Stat) -> Verdict {
    if !hops_left(ctx, pkt) {
        return pass(Stat::PassTtlExceeded);
    }
    let Some(route) = fib::lookup_xdp(
        fib,
        ctx,
        pkt.v6,
        pkt.proto,
        &nat.saddr,
        &nat.daddr,
        pkt.tot_len,
    ) else {
        return pass(Stat::PassFibLookup);
    };
    if route.no_neigh {
        return crate::neigh::wanted(&nat.daddr, pkt.v6);
    }
    if !rewrite(ctx, pkt, nat) {
        return pass(Stat::PassNoService);
    }
    transmit(ctx, pkt, &route, stat)
}

/// True when the packet may be forwarded once more (TTL / hop limit above 1). Checked before
/// any rewrite: an expiring packet goes to the kernel untouched, which answers it.
#[inline(always)]
fn hops_left(ctx: &XdpContext, pkt: &Pkt) -> bool {
    // SAFETY: ptr_at checked the bounds.
    unsafe {
        if pkt.v6 {
            ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off).is_some_and(|ip| (*ip).hop_limit > 1)
        } else {
            ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off).is_some_and(|ip| (*ip).ttl > 1)
        }
    }
}

/// Decrements the TTL (with the IPv4 header checksum) or the hop limit, as a router does.
#[inline(always)]
fn decrement_hops(ctx: &XdpContext, pkt: &Pkt) {
    // SAFETY: ptr_at checked the bounds.
    unsafe {
        if pkt.v6 {
            if let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) {
                let ip = ip as *mut Ipv6Hdr;
                (*ip).hop_limit = (*ip).hop_limit.saturating_sub(1);
            }
        } else if let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off) {
            let ip = ip as *mut Ipv4Hdr;
            let old = u16::from_ne_bytes([(*ip).ttl, (*ip).proto]);
            (*ip).ttl = (*ip).ttl.saturating_sub(1);
            let new = u16::from_ne_bytes([(*ip).ttl, (*ip).proto]);
            let c = csum::apply(u16::from_ne_bytes((*ip).check), csum::diff16(old, new));
            (*ip).check = c.to_ne_bytes();
        }
    }
}

/// Sets the MACs from the route, takes one hop off, and sends the frame out of the route's
/// interface.
#[inline(always)]
fn transmit(ctx: &XdpContext, pkt: &Pkt, route: &FibResult, stat: Stat) -> Verdict {
    decrement_hops(ctx, pkt);
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return pass(Stat::PassTruncatedEth);
    };
    let eth = eth as *mut EthHdr;
    // SAFETY: ptr_at checked the bounds.
    unsafe {
        (*eth).dst = route.dmac;
        (*eth).src = route.smac;
    }
    // SAFETY: ctx.ctx is the program's context pointer.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    if route.ifindex == ingress {
        return verdict(xdp_action::XDP_TX, stat);
    }
    // SAFETY: helper without memory arguments.
    let action = unsafe { bpf_redirect(route.ifindex, 0) } as u32;
    verdict(action, stat)
}

/// Rewrites addresses and ports and updates the IPv4 header and TCP/UDP checksums
/// incrementally. UDP over IPv4 with no checksum (0) keeps none. False if a header vanished.
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, pkt: &Pkt, nat: &Nat) -> bool {
    let (saddr, daddr, sport, dport) = (&nat.saddr, &nat.daddr, nat.sport, nat.dport);
    let l3 =
        csum::diff_addr(&pkt.saddr, saddr, pkt.v6) + csum::diff_addr(&pkt.daddr, daddr, pkt.v6);
    let l4 = l3 + csum::diff16(pkt.sport, sport) + csum::diff16(pkt.dport, dport);
    // SAFETY: every pointer comes from ptr_at, which checked its bounds.
    unsafe {
        if pkt.v6 {
            let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) else {
                return false;
            };
            let ip = ip as *mut Ipv6Hdr;
            (*ip).saddr = *saddr;
            (*ip).daddr = *daddr;
        } else {
            let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off) else {
                return false;
            };
            let ip = ip as *mut Ipv4Hdr;
            (*ip).saddr = [saddr[0], saddr[1], saddr[2], saddr[3]];
            (*ip).daddr = [daddr[0], daddr[1], daddr[2], daddr[3]];
            let c = csum::apply(u16::from_ne_bytes((*ip).check), l3);
            (*ip).check = c.to_ne_bytes();
        }
        if pkt.proto == IPPROTO_TCP {
            let Some(tcp) = ptr_at::<TcpHdr>(ctx, pkt.l4_off) else {
                return false;
            };
            let tcp = tcp as *mut TcpHdr;
            (*tcp).sport = sport.to_ne_bytes();
            (*tcp).dport = dport.to_ne_bytes();
            let c = csum::apply(u16::from_ne_bytes((*tcp).check), l4);
            (*tcp).check = c.to_ne_bytes();
        } else {
            let Some(udp) = ptr_at::<UdpHdr>(ctx, pkt.l4_off) else {
                return false;
            };
            let udp = udp as *mut UdpHdr;
            (*udp).sport = sport.to_ne_bytes();
            (*udp).dport = dport.to_ne_bytes();
            let old = u16::from_ne_bytes((*udp).check);
            if old != 0 {
                let mut c = csum::apply(old, l4);
                // 0 means "no checksum" in UDP: its one's complement twin is sent instead.
                if c == 0 {
                    c = 0xffff;
                }
                (*udp).check = c.to_ne_bytes();
            }
        }
    }
    true
}
