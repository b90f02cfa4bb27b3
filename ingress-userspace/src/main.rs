//! The `xdp-ingress` binary: parse flags, set up logging, hand over to the subcommand.

use clap::Parser;
use xdp_ingress::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
