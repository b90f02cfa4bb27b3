//! Embeds the eBPF object built by `cargo xtask build-ebpf` when it exists, so the binary is
//! self-contained; without it the daemon still builds and says how to get the object.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ebpf_embedded)");
    println!("cargo:rerun-if-env-changed=XDP_INGRESS_BPF_OBJ");
    let obj = env::var_os("XDP_INGRESS_BPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
            manifest.join("../target/ebpf/bpfel-unknown-none/release/ingress-ebpf")
        });
    println!("cargo:rerun-if-changed={}", obj.display());
    if obj.is_file() {
        println!("cargo:rustc-cfg=ebpf_embedded");
        println!("cargo:rustc-env=XDP_INGRESS_BPF_OBJ_PATH={}", obj.display());
    }
}
