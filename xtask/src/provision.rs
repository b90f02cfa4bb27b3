//! Installs what the eBPF build and the tests need on a fresh machine, and skips what is there.
//! Every action is printed; nothing is installed without saying so.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};

use crate::cmd::{self, is_root, note, probe, step};

pub const NIGHTLY: &str = "nightly";
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the bpf-linker build links against.
const EBPF_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];
/// Debian packages every network-namespace bed needs (tests, demo and benchmarks alike):
/// `ip` builds the namespaces and veths, `ethtool` turns off the veths' offloads.
pub const TOPOLOGY_PACKAGES: &[&str] = &["iproute2", "ethtool"];
/// Debian packages the privileged tests use (besides [`TOPOLOGY_PACKAGES`]).
pub const TEST_PACKAGES: &[&str] = &[
    "curl",
    "nghttp2-client",
    "python3-venv",
    // The store of the cluster-wide rate limits (tests/l7_redis_limits.rs).
    "redis-server",
    // The image smoke test (deploy/image/build.sh): buildah builds it, mmdebstrap its base,
    // objcopy strips the daemon.
    "buildah",
    "mmdebstrap",
    "binutils",
    // The dashboard rendered in a browser (tests/dashboard_chromium.rs).
    "chromium",
];
/// Debian packages the benchmarks compare against or drive load with.
pub const BENCH_PACKAGES: &[&str] = &[
    "nginx",
    "wrk",
    "nghttp2-client",
    "haproxy",
    "iperf3",
    "redis-server",
    // kube-proxy's iptables and nftables modes, the peers of the l4-node benchmark.
    "iptables",
    "nftables",
];

/// Everything `cargo xtask build-ebpf` needs.
pub fn ebpf_toolchain() -> anyhow::Result<()> {
    step("checking the eBPF toolchain");
    nightly()?;
    rust_src()?;
    debian(EBPF_PACKAGES)?;
    bpf_linker()?;
    Ok(())
}

fn nightly() -> anyhow::Result<()> {
    let list = cmd::output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF object")?;
    if !list.lines().any(|l| l.starts_with(NIGHTLY)) {
        bail!(
            "the `{NIGHTLY}` toolchain is not installed (this machine kind ships it preinstalled)"
        );
    }
    note("nightly toolchain: present");
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        note("rust-src for nightly: present");
        return Ok(());
    }
    note("rust-src for nightly: missing, installing");
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn dpkg_installed(pkg: &str) -> bool {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", pkg]))
        .is_ok_and(|s| s.trim() == "installed")
}

/// Installs the Debian packages that are missing (one `apt-get update` first).
pub fn debian(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        note(&format!("Debian packages present: {}", packages.join(" ")));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}; install them as root: apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    note(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    // Another apt (a boot-time apt-daily, a second xtask) may hold dpkg's lock: wait for it
    // rather than fail the run.
    let lock_wait = "DPkg::Lock::Timeout=600";
    cmd::run(
        Command::new("apt-get")
            .args(["-o", lock_wait, "update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args([
                "-o",
                lock_wait,
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
            ])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            // Packages such as nginx must not start services in the root namespace.
            .env("RUNLEVEL", "1"),
    )
}

/// `~/.cargo/bin`, where `cargo install` puts bpf-linker.
pub fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

fn bpf_linker() -> anyhow::Result<()> {
    let bin = cargo_bin_dir().join("bpf-linker");
    if probe(Command::new(&bin).arg("--version"))
        || probe(Command::new("bpf-linker").arg("--version"))
    {
        note("bpf-linker: present");
        return Ok(());
    }
    note(&format!(
        "bpf-linker: missing, building {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)"
    ));
    cmd::run(
        cmd::cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            // Debian's default llvm-config may be another LLVM; point the build at 22.
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

/// Installs the packages tests need, when root; otherwise says what may be missing.
pub fn test_tools() -> anyhow::Result<()> {
    step("checking test tools");
    if is_root() {
        // One list, so one `apt-get update` when both have something missing.
        debian(&[TOPOLOGY_PACKAGES, TEST_PACKAGES].concat())
    } else {
        note("not root: not installing test tools");
        Ok(())
    }
}
