//! The shared test bed of xdp-ingress: network-namespace topologies, echo servers, and the
//! in-kernel XDP packet harness. Every later test reuses it; nothing here touches the root
//! network namespace.
//!
//! # Layout
//! - [`apiserver`]: an in-process Kubernetes API-server double (list/watch, 410, status, Leases).
//! - [`bench_out`]: a benchmark's tables and chart series as JSON, for `cargo xtask bench --report`.
//! - [`netns`]: one named network namespace: run commands and threads inside it.
//! - [`topology`]: client, node and pod namespaces joined by veth, removed on drop.
//! - [`echo`]: small TCP/UDP echo servers that say which pod answered.
//! - [`http_backend`]: an HTTP/1.1 + h2c echo backend (JSON, WebSocket, trailers) for L7 tests.
//! - [`xdp_run`]: BPF_PROG_TEST_RUN on crafted frames: action, output bytes, in-kernel time.
//! - [`pins`]: a private BPF pin directory per test, cleaned up on drop.
//! - [`ports`]: loopback ports to bind later or to find closed, outside the ephemeral range.
//! - [`process`]: child processes killed on drop (daemons under test).

pub mod apiserver;
pub mod bench_out;
pub mod echo;
pub mod http_backend;
pub mod netns;
pub mod pins;
pub mod ports;
pub mod process;
pub mod redis;
pub mod topology;
pub mod xdp_run;

pub use netns::Netns;
pub use topology::{NODE_IFACE, Pod, Topology};

use std::path::PathBuf;

/// True when privileged tests can run. Without root they are skipped loudly, except under
/// `CI=true`, where a skip would hide missing coverage and so fails the test instead.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("privileged test needs root, and CI=true forbids skipping it");
    }
    eprintln!("SKIPPED: this test needs root (network namespaces, BPF); run it as root");
    false
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The eBPF object: `$XDP_INGRESS_BPF_OBJ`, else where `cargo xtask build-ebpf` puts it.
pub fn bpf_object_path() -> PathBuf {
    std::env::var_os("XDP_INGRESS_BPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/ebpf/bpfel-unknown-none/release/ingress-ebpf")
        })
}

/// The daemon binary: `$XDP_INGRESS_BIN`, else the debug build in the workspace target.
pub fn xdp_ingress_bin() -> PathBuf {
    std::env::var_os("XDP_INGRESS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/xdp-ingress"))
}

/// [`xdp_ingress_bin`] for tests that run the daemon: fails, saying how to build it, when the
/// binary is not there (`cargo xtask test` builds it before the privileged tests).
pub fn built_xdp_ingress_bin() -> PathBuf {
    let bin = xdp_ingress_bin();
    assert!(
        bin.exists(),
        "build the daemon first: cargo build -p ingress-userspace ({})",
        bin.display()
    );
    bin
}
