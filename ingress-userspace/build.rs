//! Embeds the eBPF object built by `cargo xtask build-ebpf` when it exists, so the binary is
//! self-contained; without it the daemon still builds and says how to get the object.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ebpf_embedded)");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // Relative relocations packed (DT_RELR; glibc >= 2.36, GNU ld >= 2.38, lld >= 15): the
    // daemon's ~640 KiB of `.rela.dyn`, read once by the loader at start and resident ever
    // after, becomes a few KiB (issue 13's RSS target; deploy/docs/performance.md, session 20).
    // An older glibc refuses the binary at load (`GLIBC_ABI_DT_RELR` not found), never
    // silently; the image's base is bookworm (2.36).
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        // What a start runs, placed together: fewer of the binary's pages resident (the
        // script's header says why and how it is made).
        let order = manifest.join("link/text-order.ld");
        println!("cargo:rerun-if-changed={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", order.display());
    }
    println!("cargo:rerun-if-env-changed=XDP_INGRESS_BPF_OBJ");
    let obj = env::var_os("XDP_INGRESS_BPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/bpfel-unknown-none/release/ingress-ebpf"));
    println!("cargo:rerun-if-changed={}", obj.display());
    if obj.is_file() {
        println!("cargo:rustc-cfg=ebpf_embedded");
        println!("cargo:rustc-env=XDP_INGRESS_BPF_OBJ_PATH={}", obj.display());
    }
}
