//! The `xdp-ingress` subcommands. Each parses its flags into plain structs and calls into the
//! library; nothing here is needed by tests that drive the library directly.

pub mod backends;
pub mod explain;
pub mod explain_gateway;
pub mod iface;
pub mod migrate;
pub mod migrate_gateway;
pub mod output;
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

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: attach the XDP program and serve until SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Print, as JSON, what a request would match: Ingress, rule, path, backend, endpoints;
    /// with --gateway, the status the daemon would write for a Gateway and its routes.
    Explain(explain::ExplainArgs),
    /// Print the XDP data path's services and backends (with counters) from the pinned maps.
    Backends(backends::BackendsArgs),
    /// Compare ingress-nginx Ingresses and its controller ConfigMap with what xdp-ingress does:
    /// per annotation and key supported / differs / refused / not-yet / unknown. Exit status
    /// 0 when everything behaves the same, 1 when something would differ.
    Migrate(migrate::MigrateArgs),
}
