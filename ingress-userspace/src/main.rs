//! The `xdp-ingress` binary: parse flags, set up logging, hand over to the subcommand.

use clap::Parser;
use xdp_ingress::cli::{Cli, Command};

/// mimalloc instead of glibc malloc: the proxy allocates and frees small objects (request
/// parts, header maps, futures) on every request, and `perf` under wrk load put glibc's malloc,
/// free and consolidation at ~8% of the proxy worker (deploy/docs/performance.md). The L7
/// benchmark (tests/bench_l7.rs), which runs the proxy in its own process, declares the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    xdp_ingress::allocator::configure();
    let cli = Cli::parse();
    xdp_ingress::telemetry::init(cli.log_format);
    match cli.command {
        Command::Run(args) => xdp_ingress::cli::run::run(args).await,
        Command::Explain(args) => xdp_ingress::cli::explain::run(args),
        Command::Backends(args) => xdp_ingress::cli::backends::run(args),
        // 0 same behaviour, 1 differences: an error must not look like either.
        Command::Migrate(args) => match xdp_ingress::cli::migrate::run(args).await {
            Ok(status) => std::process::exit(status),
            Err(e) => {
                eprintln!("Error: {e:#}");
                std::process::exit(2)
            }
        },
    }
}
