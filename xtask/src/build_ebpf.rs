//! Builds `ingress-ebpf` for `bpfel-unknown-none` (release, BTF) with the nightly toolchain.

use std::{path::PathBuf, process::Command};

use crate::{
    cmd::{self, root, step},
    provision::{self, NIGHTLY},
};

/// Where the object lands; `ingress-userspace/build.rs` and the tests look here.
pub fn object_path() -> PathBuf {
    root().join("target/ebpf/bpfel-unknown-none/release/ingress-ebpf")
}

pub fn build() -> anyhow::Result<PathBuf> {
    provision::ebpf_toolchain()?;
    step("building the eBPF object (bpfel-unknown-none, release, BTF)");
    let mut c = nightly_cargo();
    c.args(["build", "--package", "ingress-ebpf", "--bins", "--release"]);
    bpf_target_args(&mut c);
    cmd::run(&mut c)?;
    let obj = object_path();
    cmd::note(&format!("eBPF object: {}", obj.display()));
    Ok(obj)
}

/// `cargo` of the nightly toolchain, with bpf-linker on PATH and the outer cargo's pins removed.
pub fn nightly_cargo() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", NIGHTLY, "cargo"]);
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(key);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![provision::cargo_bin_dir()];
    paths.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(paths) {
        c.env("PATH", joined);
    }
    c.current_dir(root());
    c
}

/// Target, build-std and flags for the BPF target; its own target dir keeps host builds warm.
pub fn bpf_target_args(c: &mut Command) {
    c.args([
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--target-dir",
    ])
    .arg(root().join("target/ebpf"));
    // The workspace's release profile links the daemon with fat LTO; bpf-linker links the
    // eBPF object's bitcode itself, and the object the verifier has passed stays as it was.
    c.env("CARGO_PROFILE_RELEASE_LTO", "false");
    // BTF for CO-RE and map definitions; the arch cfg is what aya-ebpf expects on x86_64 hosts.
    c.env(
        "CARGO_ENCODED_RUSTFLAGS",
        [
            "--cfg=bpf_target_arch=\"x86_64\"",
            "-Cdebuginfo=2",
            "-Clink-arg=--btf",
            "-Clink-arg=--disable-expand-memcpy-in-order",
        ]
        .join("\x1f"),
    );
}
