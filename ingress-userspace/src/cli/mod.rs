//! The `xdp-ingress` subcommands. Each parses its flags into plain structs and calls into the
//! library; nothing here is needed by tests that drive the library directly.

pub mod backends;
pub mod iface;
pub mod run;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "xdp-ingress",
    version,
    about = "Kubernetes ingress with an XDP L4 path and a Rust L7 proxy"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "XDP_INGRESS_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up: the size of the `run` flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach the XDP program and serve until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Print the XDP data path's services and backends (with counters) from the pinned maps.
    Backends(backends::BackendsArgs),
}
