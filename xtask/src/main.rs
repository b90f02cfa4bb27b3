//! `cargo xtask`: build, test, demo and benchmark automation for xdp-ingress.
//!
//! # Layout
//! - `provision`: installs what a fresh machine lacks (rust-src, Debian packages, bpf-linker).
//! - `build_ebpf`: builds `ingress-ebpf` for `bpfel-unknown-none` with BTF.
//! - `test`: everything CI runs: build, fmt, clippy, unit tests, privileged netns tests.
//! - `demo`: a throwaway netns test bed with the daemon on it, traffic and live counters.
//! - `deny`: the dependency policy (deny.toml) with cargo-deny, installed when missing.
//! - `image`: the runtime image of deploy/Containerfile (buildah) from a release daemon.
//! - `bench`: benchmarks that print ratios against a peer measured in the same run.
//! - `report`: `target/bench/report.md` and its SVG charts from the benchmarks' JSON results.
//! - `text_order`: the daemon's link order script from a callgrind run of its start.
//! - `cmd`: running commands loudly.

mod bench;
mod build_ebpf;
mod cmd;
mod demo;
mod deny;
mod image;
mod provision;
mod report;
mod test;
mod text_order;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF object (provisioning nightly rust-src, LLVM 22 and bpf-linker if missing).
    BuildEbpf,
    /// Run every check: build, fmt, clippy, unit tests and (as root) the netns/BPF tests.
    Test(test::TestArgs),
    /// Build, make a netns test bed, run the daemon on it, show traffic and counters, clean up.
    Demo(demo::DemoArgs),
    /// Check dependencies against deny.toml: advisories, licenses, bans, sources (cargo-deny).
    Deny,
    /// Build the runtime image (deploy/Containerfile) from a release daemon; `--smoke` starts it.
    Image(image::ImageArgs),
    /// Run the benchmarks and print ratios against peers measured in the same run.
    Bench(bench::BenchArgs),
    /// Print the daemon's link order script (ingress-userspace/link/text-order.ld) from a
    /// callgrind run of its start.
    TextOrder(text_order::TextOrderArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf => build_ebpf::build().map(|_| ()),
        Command::Test(args) => test::run(args),
        Command::Deny => deny::run(),
        Command::Image(args) => image::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::TextOrder(args) => text_order::run(args),
    }
}
