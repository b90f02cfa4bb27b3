//! XDP and tc entry points of xdp-ingress. Entry points only: the work lives in the modules.
//!
//! # Layout
//! - `parse`: bounds-checked header parsing (Ethernet, one VLAN tag, IPv4, IPv6, TCP, UDP).
//! - `l4`: the service path: lookup, source ranges, conntrack, affinity, Maglev, NAT, forwarding.
//! - `reply`: tc reverse NAT of replies from local pods.
//! - `reject`: the answer to a new flow of a service without endpoints (TCP RST, as
//!   kube-proxy's REJECT), or the drop of one under `externalTrafficPolicy: Local`.
//! - `icmp`: ICMP/ICMPv6 errors about NATed flows, translated for the pod, the client or the
//!   remote endpoint.
//! - `csum`: incremental checksum updates. `fib`: next-hop lookups. `neigh`: next hops to
//!   resolve, for the daemon.
//! - `tombstone`: tombstones of ended local flows, so a pod's late reply is dropped, not sent
//!   with its own address.
//! - `syn_limit`: the per-source new-connection (SYN) rate limit of a service.
//! - `maps`: the L4 maps. `stats`: per-CPU counters by protocol and by pass/drop reason.
#![no_std]
#![no_main]
// Map keys and values go by reference: a by-value argument is one more copy on the 512-byte
// BPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod csum;
mod fib;
mod icmp;
mod l4;
mod maps;
mod neigh;
mod parse;
mod reject;
mod reply;
mod stats;
mod syn_limit;
mod tombstone;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use ingress_common::stats::Stat;

/// Every frame gets an explicit action: malformed or unhandled frames go to the kernel, which
/// owns the final verdict on them; service traffic is NATed and sent on, or dropped by policy.
#[xdp]
pub fn xdp_ingress(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    // Never true for a real frame; it makes the names map one of this program's maps, so
    // `xdp-ingress backends` finds it through the program when the pins are not visible.
    if len == 0 {
        let _ = maps::SVC_NAMES.get(0);
    }
    stats::count(Stat::Rx, len);
    match parse::parse(&ctx) {
        Ok(pkt) => {
            stats::count(pkt.protocol, len);
            if pkt.vlan {
                stats::count(Stat::Vlan, len);
            }
            if let Some(reason) = pkt.pass_reason {
                stats::count(reason, len);
                return xdp_action::XDP_PASS;
            }
            let v = l4::handle(&ctx, &pkt, len);
            stats::count_index(v.stat(), len);
            v.action()
        }
        Err(reason) => {
            stats::count(reason, len);
            aya_log_ebpf::debug!(
                &ctx,
                "malformed frame passed to the kernel: reason {}",
                reason as u32
            );
            xdp_action::XDP_PASS
        }
    }
}

/// A bare XDP_PASS: the in-kernel cost baseline for benchmarks, and the far-end program test
/// beds put on the client veth so frames sent back with XDP_TX are received there.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Reverse NAT of replies from local pods at tc ingress of the node side of pod veths.
#[classifier]
pub fn tc_pod_reply(ctx: TcContext) -> i32 {
    reply::handle(&ctx, true)
}

/// Reverse NAT of replies from local pods at tc egress of the NIC (after the kernel routed them).
#[classifier]
pub fn tc_nic_egress(ctx: TcContext) -> i32 {
    reply::handle(&ctx, false)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never entered.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
