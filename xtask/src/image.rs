//! `cargo xtask image`: the runtime image of deploy/Containerfile from a release daemon: builds
//! the eBPF object and `xdp-ingress` (release), then deploy/image/build.sh lays out the context
//! (Debian-package base, stripped binary) and runs buildah; `--smoke` starts the image's root
//! filesystem in a network namespace of its own and waits for `/healthz` and `/readyz`.

use crate::{
    build_ebpf,
    cmd::{self, step},
};

#[derive(clap::Args)]
pub struct ImageArgs {
    /// Start the built image and require `/healthz` and `/readyz` (root).
    #[arg(long)]
    pub smoke: bool,
    /// Image name and tag.
    #[arg(long, default_value = "localhost/xdp-ingress:dev")]
    pub tag: String,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    build_ebpf::build()?;
    step("building the daemon (release)");
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--locked",
        "--package",
        "ingress-userspace",
        "--bin",
        "xdp-ingress",
    ]))?;
    build("target/release/xdp-ingress", &args.tag, args.smoke)
}

/// deploy/image/build.sh on `binary` (a path under the repository root).
pub fn build(binary: &str, tag: &str, smoke: bool) -> anyhow::Result<()> {
    step(&format!("image {tag} from {binary} (deploy/Containerfile)"));
    let mut c = std::process::Command::new("bash");
    c.current_dir(cmd::root())
        .arg(cmd::root().join("deploy/image/build.sh"))
        .args(["--binary", binary, "--tag", tag]);
    if smoke {
        c.arg("--smoke");
    }
    cmd::run(&mut c)
}
