//! xdp-ingress: a Kubernetes ingress whose L4 path runs in XDP and whose L7 path is a Rust proxy.
//!
//! # Layout
//! - [`model`]: the immutable routing snapshot and the pure translation that builds it.
//! - [`controller`]: the control loop, sources -> store -> translation -> planes.
//! - [`proxy`]: the L7 ingress proxy fed by snapshots.
//! - [`dataplane`]: the XDP side: load and attach the eBPF object, read and write its maps.
//! - [`cli`]: the `xdp-ingress` subcommands (`run`, ...), thin wiring over the modules above.
//! - [`source`]: where objects come from (manifest directory, API server).
//! - [`status`]: leader election, Ingress status and Events (writing back to Kubernetes).
//! - [`store`]: objects from the sources, by kind and key (input of translation).
//! - [`object`]: object references and diagnostics, shared by sources, store and model.
//! - [`telemetry`]: logging set-up shared by the subcommands.
//! - [`allocator`]: the daemon's allocator settings and returning free memory to the OS.

pub mod allocator;
pub mod cli;
pub mod compact;
pub mod controller;
pub mod dashboard;
pub mod dataplane;
#[cfg(test)]
mod fuzz;
pub mod model;
pub mod object;
pub mod proxy;
pub mod service_health;
pub mod source;
pub mod status;
pub mod store;
pub mod telemetry;
