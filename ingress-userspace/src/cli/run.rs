//! `xdp-ingress run`: attach, serve, detach cleanly on SIGINT/SIGTERM.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::dataplane::{AttachMode, XdpAttachment, object};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to attach the XDP program to (the node's NIC); `auto` picks the interface of
    /// the default route.
    #[arg(long, env = "XDP_INGRESS_IFACE")]
    pub iface: String,
    /// XDP attach mode; `auto` tries native and falls back to generic with a warning.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, env = "XDP_INGRESS_XDP_MODE")]
    pub xdp_mode: AttachMode,
    /// eBPF object to load instead of the embedded one.
    #[arg(long)]
    pub bpf_object: Option<PathBuf>,
    /// Log the packet counters this often (seconds; 0 disables).
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let bytes = object::load(args.bpf_object.as_deref())?;
    let iface = super::iface::resolve(&args.iface)?;
    let attachment = XdpAttachment::attach(&bytes, &iface, args.xdp_mode)
        .with_context(|| format!("attaching xdp-ingress to {iface}"))?;

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut ticker = tokio::time::interval(period);
    let mut last = None;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM received"); break; }
            _ = sigint.recv() => { info!("SIGINT received"); break; }
            _ = ticker.tick(), if args.stats_interval > 0 => {
                let view = attachment.stats().context("reading counters")?;
                if last.as_ref() != Some(&view) {
                    let nonzero: Vec<String> = view.counters.iter()
                        .filter(|(_, c)| c.packets > 0)
                        .map(|(l, c)| format!("{l}={}/{}B", c.packets, c.bytes))
                        .collect();
                    info!(counters = %nonzero.join(" "), "xdp counters");
                    last = Some(view);
                }
            }
        }
    }
    attachment.detach().context("detaching XDP program")?;
    Ok(())
}
