//! `cargo xtask test`: what CI runs. As root everything runs; without root the privileged
//! tests are skipped and the skip is said loudly; with `CI=true` a skip is a failure.

use anyhow::bail;

use crate::{
    build_ebpf,
    cmd::{self, ci, is_root, step},
    deny, image, provision,
};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip fmt and clippy (quicker local iterations; CI always runs them).
    #[arg(long)]
    no_lint: bool,
    /// Only run tests whose name contains this filter (passed to the test harness).
    filter: Option<String>,
}

/// The package holding the privileged netns/BPF tests.
const E2E: &str = "xdp-ingress-e2e";

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let root = is_root();
    if root {
        provision::test_tools()?;
    }
    build_ebpf::build()?;

    if !args.no_lint || ci() {
        step("cargo fmt --check");
        cmd::run(cmd::cargo().args(["fmt", "--all", "--", "--check"]))?;
        step("cargo clippy -D warnings (host crates)");
        cmd::run(cmd::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
        step("cargo clippy -D warnings (ingress-ebpf, bpfel-unknown-none)");
        let mut c = build_ebpf::nightly_cargo();
        c.args(["clippy", "--package", "ingress-ebpf", "--bins", "--release"]);
        build_ebpf::bpf_target_args(&mut c);
        c.args(["--", "-D", "warnings"]);
        cmd::run(&mut c)?;
    }

    // Before the long steps: a banned crate or an advisory fails in seconds.
    deny::run()?;

    step("deploy/: manifests and chart against the Kubernetes schemas, dashboard, Containerfile");
    cmd::run(std::process::Command::new("bash").arg(cmd::root().join("deploy/check.sh")))?;

    step("building the daemon (the netns tests run the binary)");
    cmd::run(cmd::cargo().args(["build", "--package", "ingress-userspace", "--bins"]))?;

    step("unit and integration tests (unprivileged)");
    let mut c = cmd::cargo();
    c.args([
        "test",
        "--workspace",
        "--exclude",
        "ingress-ebpf",
        "--exclude",
        E2E,
    ]);
    if let Some(f) = &args.filter {
        c.args(["--", f]);
    }
    cmd::run(&mut c)?;

    if root {
        step("privileged tests: netns test bed and BPF_PROG_TEST_RUN");
        let mut c = cmd::cargo();
        c.args(["test", "--package", E2E]);
        if let Some(f) = &args.filter {
            c.args(["--", f]);
        }
        cmd::run(&mut c)?;
        // Last: the image users would run (release daemon), started and probed. The release
        // build is the longest step left, so every test has spoken before it.
        image::run(image::ImageArgs {
            smoke: true,
            tag: "localhost/xdp-ingress:ci".into(),
        })?;
    } else {
        let msg = format!(
            "SKIPPED the privileged tests of `{E2E}` (network namespaces, XDP attach, BPF_PROG_TEST_RUN): \
             they need root. Run `sudo -E cargo xtask test` to run them."
        );
        eprintln!("\n\x1b[1;31m!!! {msg}\x1b[0m\n");
        if ci() {
            bail!("CI=true: skipping privileged tests is a failure");
        }
    }
    step("all checks passed");
    Ok(())
}
