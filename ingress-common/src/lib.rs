//! Map keys, values and names shared by the XDP program (`ingress-ebpf`) and the daemon
//! (`ingress-userspace`). Nothing else defines a map layout.
//!
//! # Layout
//! - [`l4`]: service table, backends, Maglev, conntrack, reverse NAT, affinity, source ranges.
//! - [`stats`]: per-CPU counters by protocol and by pass/drop reason.
//! - [`syn_limit`]: per-source new-connection (SYN) rate limits of L4 services.
//!
//! Every value is `#[repr(C)]`, made of fixed-width integers with explicit padding, and its size
//! is asserted at compile time so both sides agree byte for byte.
#![no_std]

pub mod l4;
pub mod stats;
pub mod syn_limit;

/// Directory under bpffs where the daemon pins its maps by default.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/xdp-ingress";

/// Name of the XDP entry point in the eBPF object.
pub const PROG_XDP_INGRESS: &str = "xdp_ingress";

/// Name of the bare XDP_PASS program (benchmark baseline, far end of test links).
pub const PROG_XDP_PASS: &str = "xdp_pass";

/// Implements `aya::Pod` for plain-old-data map types when the `user` feature is on.
#[macro_export]
macro_rules! impl_pod {
    ($($t:ty),* $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is #[repr(C)], made only of integers, with explicit padding.
            unsafe impl aya::Pod for $t {}
        )*
    };
}
