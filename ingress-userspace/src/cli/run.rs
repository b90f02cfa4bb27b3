//! `xdp-ingress run`: attach XDP, start the control loop and its sources, serve, detach cleanly
//! on SIGINT/SIGTERM.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::{
    controller::{self, LoopConfig, SnapshotSink},
    dataplane::{AttachMode, L4Args, L4Handle, object},
    model::{Snapshot, translate::Translator},
    proxy::{Proxy, ProxyArgs, ProxyHandle},
    service_health::{self, ServiceHealthServer},
    source::{SourceEvent, args::SourceArgs, files, kube as kube_source},
    status,
    store::{Change, SourceId},
};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to attach the XDP program to (the node's NIC); `auto` picks the interface of
    /// the default route.
    #[arg(long, env = "XDP_INGRESS_IFACE", required_unless_present = "no_xdp")]
    pub iface: Option<String>,
    /// Run without the XDP program (control plane and L7 only).
    #[arg(long)]
    pub no_xdp: bool,
    /// XDP attach mode; `auto` tries native and falls back to generic with a warning.
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, env = "XDP_INGRESS_XDP_MODE")]
    pub xdp_mode: AttachMode,
    /// eBPF object to load instead of the embedded one.
    #[arg(long)]
    pub bpf_object: Option<PathBuf>,
    /// Log the packet counters this often (seconds, 0 to 86400; 0 disables).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub stats_interval: u64,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub proxy: ProxyArgs,
    #[command(flatten)]
    pub l4: L4Args,
}

/// The one place planes are wired to the control loop. Each plane is a [`SnapshotSink`]; wrap
/// an `apply` method with [`controller::sink`].
fn dataplanes(
    args: &RunArgs,
    l4: Option<&L4Handle>,
    proxy: ProxyHandle,
) -> anyhow::Result<Vec<Box<dyn SnapshotSink>>> {
    let mut sinks = Vec::new();
    if let Some(l4) = l4.cloned() {
        sinks.push(controller::sink("xdp", move |s: &Arc<Snapshot>| {
            l4.apply(s)
                .map(drop)
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
        }));
        // Health check node ports of the Local Services XDP steers: the node answers for
        // the traffic it attracts (a port kube-proxy already holds is a warning).
        let mut health = ServiceHealthServer::new(
            Box::new(service_health::all_addresses),
            args.proxy.clone(),
            proxy.metrics(),
        );
        sinks.push(controller::sink("healthcheck", move |s: &Arc<Snapshot>| {
            health.apply(s);
            Ok(())
        }));
    }
    let mut logged = std::collections::BTreeSet::new();
    let log_diagnostics = controller::sink("diagnostics", move |s: &Arc<Snapshot>| {
        for d in newly_reported(&mut logged, &s.diagnostics) {
            // An Error is what denies a route or a host (a 503, a 403): logged at its level,
            // though its Event can only be a Warning.
            match d.severity {
                crate::model::Severity::Info => {
                    info!(object = %d.object, reason = %d.reason, "{}", d.message)
                }
                crate::model::Severity::Warning => {
                    warn!(object = %d.object, reason = %d.reason, "{}", d.message)
                }
                crate::model::Severity::Error => {
                    error!(object = %d.object, reason = %d.reason, "{}", d.message)
                }
            }
        }
        Ok(())
    });
    let l7 = controller::sink("l7", move |s: &Arc<Snapshot>| {
        proxy.apply(Arc::clone(s));
        Ok(())
    });
    sinks.push(log_diagnostics);
    sinks.push(l7);
    Ok(sinks)
}

/// The diagnostics of `now` not in `logged` (each is logged once, while it lasts: a snapshot
/// that changes nothing logs nothing); `logged` becomes `now`.
fn newly_reported(
    logged: &mut std::collections::BTreeSet<crate::model::Diagnostic>,
    now: &[crate::model::Diagnostic],
) -> Vec<crate::model::Diagnostic> {
    let now: std::collections::BTreeSet<_> = now.iter().cloned().collect();
    let new = now.difference(logged).cloned().collect();
    *logged = now;
    new
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives while attaching still means a clean shutdown.
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let l4 = match (&args.iface, args.no_xdp) {
        (Some(iface), false) => {
            let bytes = object::load(args.bpf_object.as_deref())?;
            let iface = super::iface::resolve(iface)?;
            let mut l4_args = args.l4.clone();
            l4_args.node_name = args.source.node_name.clone();
            Some(
                L4Handle::start(&l4_args, &bytes, &iface, args.xdp_mode)
                    .with_context(|| format!("attaching xdp-ingress to {iface}"))?,
            )
        }
        _ => None,
    };

    let mut translate_config = args
        .source
        .translate_config()
        .map_err(anyhow::Error::msg)
        .context("control-plane flags")?;
    // Endpoints on this host's own addresses are refused (model/translate/node_local.rs);
    // read once here, the Node object's addresses follow changes.
    translate_config.node_addresses = crate::dataplane::l4::local_addrs();
    // The proxy drains when `shutdown` flips; until the first snapshot it answers 404.
    let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
    // The default certificate (`--default-ssl-certificate`) reaches the proxy in each
    // snapshot: translation alone decides it.
    let proxy = Proxy::start(args.proxy.clone(), async move {
        let _ = shutdown_rx.wait_for(|stop| *stop).await;
    })
    .await
    .context("starting the L7 proxy")?;
    // Gateway listeners on the proxy's own ports share its listeners; translation decides
    // which other ports the proxy opens for them (inside --gateway-listener-ports).
    translate_config.gateway_ports = crate::model::translate::gateway::ProxyPorts {
        http: proxy.http_addr().port(),
        https: proxy.https_addr().port(),
        gateway_range: args.proxy.ports.gateway_listener_ports,
    };
    // hostNetwork: clients reach the proxy on the node's addresses at the sockets it bound,
    // through no service frontend; the node-wide SYN limit applies there too (or is lifted
    // from what a previous run left pinned).
    // Under `--listen-address ::` each port is an IPv4 socket (the address the proxy reports)
    // and an IPv6-only one: the limit covers the port on both families, as `::` does
    // (`syn_listeners::entries`), whether or not `disable-ipv6` later closes the IPv6 one.
    let limited = |a: std::net::SocketAddr| match args.proxy.listen_address {
        std::net::IpAddr::V6(l) if l.is_unspecified() => {
            std::net::SocketAddr::new(args.proxy.listen_address, a.port())
        }
        _ => a,
    };
    if let Some(l4) = &l4
        && let Err(e) = l4.limit_proxy_listeners(
            &[limited(proxy.http_addr()), limited(proxy.https_addr())],
            translate_config.proxy_syn_rate_limit,
        )
    {
        warn!(error = %anyhow::Error::new(e), "SYN limit of the proxy's listeners not set");
    }
    let sinks = dataplanes(&args, l4.as_ref(), proxy.clone())?;
    let control_metrics = controller::ControlMetrics::new();
    let mut registry = prometheus_client::registry::Registry::with_prefix("xdp_ingress");
    control_metrics.register(&mut registry);
    // Control-loop metrics (event-to-live, translation time) on the proxy's /metrics. Another
    // component's text (XDP counters) can be appended in this same closure.
    let l4_for_metrics = l4.clone();
    proxy.set_extra_metrics(Box::new(move || {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &registry);
        // The XDP counters, read from the per-CPU map at scrape time.
        if let Some(stats) = l4_for_metrics.as_ref().and_then(|l4| l4.stats().ok()) {
            text.push_str(&crate::dataplane::stats::prometheus_text(&stats));
        }
        // Flow-table occupancy as of the last sweep (a full table refuses new flows).
        if let Some(l4) = l4_for_metrics.as_ref() {
            text.push_str(&crate::dataplane::flows::prometheus_text(&l4.flow_tables()));
            // Per-service SYN-limit drops (`xdp-ingress backends` shows the same counts).
            if let Ok(dropped) = l4.syn_limited() {
                text.push_str(&crate::dataplane::syn_limit::prometheus_text(&dropped));
            }
        }
        text
    }));
    let control = controller::spawn(
        Translator::new(translate_config),
        sinks,
        LoopConfig {
            metrics: Some(control_metrics),
            ..LoopConfig::default()
        },
    );
    // The read-only dashboard on the admin listener (`/`, `/dashboard`, `/dashboard.json`).
    let dashboard = crate::dashboard::Sources {
        snapshots: control.snapshots.clone(),
        stats: Arc::clone(&control.stats),
        proxy: proxy.clone(),
        bpf_pin_root: l4.is_some().then(|| args.l4.bpf_pin_root.clone()),
    };
    proxy.set_admin_pages(Box::new(move |path| {
        crate::dashboard::respond(path, || crate::dashboard::gather(&dashboard))
    }));
    let sources = start_sources(&args.source, &control, proxy.unbound_listeners()).await?;

    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut ticker = tokio::time::interval(period);
    let mut last = None;
    // Removed endpoints drain for a while; this ends finished drains.
    let mut maintain = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM received"); break; }
            _ = sigint.recv() => { info!("SIGINT received"); break; }
            _ = maintain.tick(), if l4.is_some() => {
                // Map writes off the async workers (the proxy's tasks share them).
                if let Some(l4) = l4.clone()
                    && let Ok(Err(e)) = tokio::task::spawn_blocking(move || l4.maintain()).await
                {
                    warn!(error = %anyhow::Error::new(e), "L4 drain maintenance");
                }
            }
            _ = ticker.tick(), if args.stats_interval > 0 => {
                if let Some(l4) = &l4 {
                    let view = l4.stats().context("reading counters")?;
                    if last.as_ref() != Some(&view) {
                        let nonzero: Vec<String> = view.counters.iter()
                            .filter(|(_, c)| c.packets > 0)
                            .map(|(l, c)| format!("{l}={}/{}B", c.packets, c.bytes))
                            .collect();
                        info!(counters = %nonzero.join(" "), "xdp counters");
                        last = Some(view);
                    }
                }
                if let Ok(s) = control.stats.lock() {
                    let p = |q| s.latency_percentile(q).map(|d: Duration| d.as_micros() as u64).unwrap_or(0);
                    info!(snapshots = s.snapshots, p50_us = p(50.0), p99_us = p(99.0), "event-to-live");
                }
            }
        }
    }
    sources.shutdown().await;
    // Tell the L4 path first: new connections to the ingress's own Service go to other nodes'
    // proxies from now on, while this one finishes what it has.
    if let Some(l4) = l4.clone() {
        let draining = control.snapshots.borrow().with_local_proxy_draining();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || l4.apply(&draining)).await {
            warn!(error = %anyhow::Error::new(e), "could not steer new connections away from the draining proxy");
        }
    }
    let _ = shutdown_tx.send(true);
    // The ConfigMap's `worker-shutdown-timeout` wins over the flag, as its keys do.
    let drain = (control
        .snapshots
        .borrow()
        .l7
        .settings
        .worker_shutdown_timeout)
        .unwrap_or(args.proxy.drain_timeout);
    if tokio::time::timeout(drain, proxy.finished()).await.is_err() {
        warn!(deadline = ?drain, "drain deadline passed with requests in flight");
    }
    if let Some(l4) = l4 {
        l4.shutdown();
    }
    Ok(())
}

/// Whatever keeps the sources running; dropping it stops them.
#[derive(Default)]
pub struct Sources {
    _watchers: Vec<notify::RecommendedWatcher>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    lease: Option<(kube::Client, status::leader::LeaseConfig)>,
}

impl Sources {
    /// Stops the sources and hands leadership over (bounded in time).
    pub async fn shutdown(mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some((client, lease)) = self.lease.take() {
            let release = status::leader::release(client, &lease);
            match tokio::time::timeout(Duration::from_secs(2), release).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "could not release the leader lease"),
                Err(_) => warn!("releasing the leader lease timed out"),
            }
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts every source the flags ask for, feeding `control`.
/// `unbound`: the proxy's Gateway ports that could not be bound, which the status writer
/// reports on their listeners.
pub async fn start_sources(
    args: &SourceArgs,
    control: &controller::ControlLoop,
    unbound: tokio::sync::watch::Receiver<crate::proxy::listener_set::Unbound>,
) -> anyhow::Result<Sources> {
    let mut sources = Sources::default();
    if args.default_manifests {
        let objects = files::default_objects().context("embedded default manifests")?;
        control
            .events
            .send(SourceEvent::new(
                SourceId::Other,
                Change::ReplaceAll(Box::new(objects)),
            ))
            .await
            .context("control loop gone")?;
    }
    if let Some(dir) = &args.manifests {
        anyhow::ensure!(
            dir.is_dir(),
            "--manifests {}: not a directory",
            dir.display()
        );
        let w = files::watch(files::ManifestDir::new(dir), control.events.clone())
            .with_context(|| format!("watching {}", dir.display()))?;
        sources._watchers.push(w);
    }
    if args.kube_enabled() {
        let client = kube_source::client(args.kubeconfig.as_deref())
            .await
            .context("Kubernetes API source")?;
        let scope = kube_source::WatchScope {
            namespace: args.namespace.clone(),
            secret_namespaces: args.secret_namespaces(),
            configmap: args.translation.configmap.clone(),
            served_versions: Default::default(),
        };
        sources.tasks.extend(kube_source::spawn_scoped(
            client.clone(),
            &scope,
            control.events.clone(),
        ));
        if !args.no_status {
            let identity = args.identity();
            let lease = status::leader::LeaseConfig::new(
                &args.election_namespace,
                &args.election_id,
                &identity,
            );
            let candidate = status::leader::spawn(client.clone(), lease.clone());
            sources.lease = Some((client.clone(), lease));
            let reporter = status::events::Reporter {
                controller: args.translation.controller_name.clone(),
                instance: identity,
            };
            let writer = status::spawn_with_listeners(
                client,
                reporter,
                args.namespace.clone(),
                control.snapshots.clone(),
                unbound,
                candidate.is_leader,
                scope.served_versions.clone(),
            );
            sources.tasks.extend([writer, candidate.task]);
        }
    }
    if args.manifests.is_none() && !args.default_manifests && !args.kube_enabled() {
        warn!("no source given (--manifests, --default-manifests, --kube): nothing will be served");
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        run: super::RunArgs,
    }

    #[test]
    fn out_of_range_run_flags_are_clap_errors() {
        let parse = |v: &str| W::try_parse_from(["x", "--no-xdp", "--stats-interval", v]);
        assert_eq!(
            parse("86400").map(|w| w.run.stats_interval).ok(),
            Some(86400)
        );
        // A period past what the interval timer's deadline arithmetic holds.
        for bad in ["86401", "18446744073709551615", "x"] {
            let e = parse(bad).err().expect(bad);
            assert!(e.to_string().contains("--stats-interval"), "{e}");
        }
        let e = W::try_parse_from(["x", "--no-xdp", "--secret-namespaces", "ok,Not_A_Namespace"])
            .err()
            .expect("invalid namespace");
        assert!(e.to_string().contains("--secret-namespaces"), "{e}");
        let w = W::try_parse_from(["x", "--no-xdp", "--secret-namespaces", "shop,blog,shop"])
            .expect("valid");
        assert_eq!(
            w.run.source.secret_namespaces(),
            Some(vec!["blog".to_string(), "shop".to_string()])
        );
        assert_eq!(
            W::parse_from(["x", "--no-xdp"])
                .run
                .source
                .secret_namespaces(),
            None
        );
    }

    /// A diagnostic is logged when it appears (or changes), not on every snapshot that still
    /// has it: a stray parentRef in a busy cluster is one line, not one per snapshot.
    #[test]
    fn diagnostics_are_logged_once_per_change() {
        use crate::model::{Diagnostic, ObjectKind, ObjectRef, Severity};
        let d = |msg: &str| Diagnostic {
            object: ObjectRef::new(ObjectKind::HTTPRoute, "app", "r"),
            severity: Severity::Warning,
            reason: "ParentNotFound".into(),
            message: msg.into(),
        };
        let mut logged = Default::default();
        assert_eq!(super::newly_reported(&mut logged, &[d("a")]).len(), 1);
        assert!(super::newly_reported(&mut logged, &[d("a")]).is_empty());
        assert_eq!(super::newly_reported(&mut logged, &[d("b")]), vec![d("b")]);
        assert!(super::newly_reported(&mut logged, &[]).is_empty());
        assert_eq!(super::newly_reported(&mut logged, &[d("b")]).len(), 1);
    }

    /// `--enable-ssl-passthrough` reaches translation; off by default, as ingress-nginx.
    #[test]
    fn ssl_passthrough_flag_reaches_translation() {
        let config = |args: &[&str]| {
            W::parse_from(args.iter().copied())
                .run
                .source
                .translate_config()
                .expect("config")
                .enable_ssl_passthrough
        };
        assert!(!config(&["x", "--no-xdp"]));
        assert!(config(&["x", "--no-xdp", "--enable-ssl-passthrough"]));
    }
}
