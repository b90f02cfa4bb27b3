//! Writing back to Kubernetes, by the elected leader only: Lease election ([`leader`]), Ingress
//! `status.loadBalancer` ([`ingress_status`]), Gateway API status ([`gateway_status`]) and
//! Events for diagnostics ([`events`]).

pub mod events;
pub mod gateway_status;
pub mod ingress_status;
pub mod leader;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tracing::debug;

use crate::{model::Snapshot, source::served_versions::ServedVersions};

/// Runs the status and event writers: on every snapshot, every change of the proxy's unbound
/// Gateway ports, on becoming leader, and once a second
/// (to retry what failed or was rate-limited). Does nothing while not leader.
pub fn spawn(
    client: kube::Client,
    reporter: events::Reporter,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    leader: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (_, unbound) = watch::channel(Default::default());
    spawn_with_listeners(
        client,
        reporter,
        None,
        snapshots,
        unbound,
        leader,
        ServedVersions::default(),
    )
}

/// [`spawn`], with the proxy's Gateway ports that could not be bound (port -> error,
/// [`crate::proxy::ProxyHandle::unbound_listeners`]) written into their listeners' status,
/// the namespace the sources are limited to (`--namespace`; `None`: all), which the
/// Gateway status writer does not look beyond, and the status and Events of kinds served at
/// several versions (TCPRoute, UDPRoute, TLSRoute, ReferenceGrant) written through the version
/// the API source watches (`served_versions`, the source's
/// [`crate::source::kube::WatchScope::served_versions`]).
pub fn spawn_with_listeners(
    client: kube::Client,
    reporter: events::Reporter,
    namespace: Option<String>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut unbound: watch::Receiver<crate::proxy::listener_set::Unbound>,
    mut leader: watch::Receiver<bool>,
    served_versions: ServedVersions,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut proxy_live = true;
        let mut status = ingress_status::StatusWriter::new(client.clone());
        let mut gateway_status = gateway_status::GatewayStatusWriter::new(
            client.clone(),
            reporter.controller.clone(),
            namespace,
        )
        .with_served_versions(served_versions.clone());
        let mut events = events::EventWriter::new(client, reporter, served_versions);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut was_leader = false;
        loop {
            tokio::select! {
                r = snapshots.changed() => if r.is_err() { return },
                r = leader.changed() => if r.is_err() { return },
                // The proxy's Gateway ports that could not be bound: the leader's own binds
                // (its node's), reported on the listeners.
                r = unbound.changed(), if proxy_live => proxy_live = r.is_ok(),
                _ = tick.tick() => {}
            }
            let is_leader = *leader.borrow();
            if is_leader != was_leader {
                debug!(leader = is_leader, "status writer");
                // A new term starts from scratch: another replica may have written meanwhile.
                status.forget();
                gateway_status.forget();
                events.forget();
                was_leader = is_leader;
            }
            if !is_leader {
                continue;
            }
            let snapshot = snapshots.borrow().clone();
            status.sync(&snapshot).await;
            let unbound_now = unbound.borrow().clone();
            gateway_status
                .sync(&snapshot.gateway_status.with_unbound(&unbound_now))
                .await;
            events.sync(&snapshot).await;
        }
    })
}
