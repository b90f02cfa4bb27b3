//! Loopback ports a test binds later, or that must stay closed.
//!
//! A port learnt by binding port 0 and letting go is in the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`), so any outgoing connection of a parallel test may take
//! it as its local port before the proxy binds it; a listening test may get it too. That
//! raced in CI ("Connection refused" on a Gateway listener port). Ports from here lie below
//! the ephemeral range, where only explicit binds land, and are handed out at most once per
//! process, from a start that differs per process.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out; well above the well-known and registered daemons' ports
/// tests might meet on a developer's machine.
const FIRST: u32 = 12_000;

/// The first of `n` consecutive loopback ports (TCP and UDP) free now and below the
/// ephemeral range, never returned before by this process.
///
/// # Panics
/// If no such run is free in a full pass over the range.
pub fn reserve(n: u16) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let end = ephemeral_start().max(FIRST + 1000);
    let span = end - FIRST;
    // Processes that run tests side by side start in different places.
    let _ = NEXT.compare_exchange(
        0,
        std::process::id() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let n = u32::from(n.max(1));
    for _ in 0..span / n {
        let first = FIRST + NEXT.fetch_add(n, Ordering::Relaxed) % span;
        if first + n > end {
            continue;
        }
        if (first..first + n).all(|p| bindable(p as u16)) {
            return first as u16;
        }
    }
    panic!("no {n} free loopback ports in {FIRST}..{end}");
}

/// `127.0.0.1` on a port nothing listens on and no test of this process will bind: a
/// connection to it is refused.
pub fn dead_addr() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, reserve(1)).into()
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
