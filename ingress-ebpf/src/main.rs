//! XDP entry points of xdp-ingress. Entry points only: parsing lives in [`parse`], counting in
//! [`stats`].
//!
//! # Layout
//! - `parse`: bounds-checked header parsing (Ethernet, one VLAN tag, IPv4, IPv6, TCP, UDP).
//! - `stats`: per-CPU counters by protocol and by pass/drop reason.
#![no_std]
#![no_main]

mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use ingress_common::stats::Stat;

/// Every frame gets an explicit action: malformed or unhandled frames go to the kernel, which
/// owns the final verdict on them.
#[xdp]
pub fn xdp_ingress(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    stats::count(Stat::Rx, len);
    match parse::parse(&ctx) {
        Ok(pkt) => {
            stats::count(pkt.protocol, len);
            if pkt.vlan {
                stats::count(Stat::Vlan, len);
            }
            match pkt.pass_reason {
                Some(reason) => stats::count(reason, len),
                None => stats::count(Stat::PassNoService, len),
            }
            xdp_action::XDP_PASS
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never entered.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
