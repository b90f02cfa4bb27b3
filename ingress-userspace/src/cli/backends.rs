//! `xdp-ingress backends [--json]`: the data path's view of L4 services and backends, read from
//! the pinned maps of a running (or stopped) daemon, like `kubectl ingress-nginx backends`.

use std::path::PathBuf;

use anyhow::Context;
use ingress_common::DEFAULT_PIN_ROOT;

use crate::dataplane::view;

#[derive(Debug, clap::Args)]
pub struct BackendsArgs {
    /// bpffs directory the daemon pins its maps under.
    #[arg(long, default_value = DEFAULT_PIN_ROOT, env = "XDP_INGRESS_BPF_PIN_ROOT")]
    pub bpf_pin_root: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BackendsArgs) -> anyhow::Result<()> {
    let v = view::read(&args.bpf_pin_root)
        .with_context(|| format!("reading maps under {}", args.bpf_pin_root.display()))?;
    if args.json {
        super::output::emit_json(&v)?;
    } else {
        super::output::emit(&view::render_text(&v))?;
    }
    Ok(())
}
