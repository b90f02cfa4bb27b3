//! Leader election on a `coordination.k8s.io/v1` Lease, in the manner of client-go: the holder
//! renews every `retry_period`; others take over once the record has not changed for
//! `lease_duration` (measured on their own clock, so clock skew does not matter); a holder that
//! cannot renew for `renew_deadline` steps down. Writes use the Lease's resourceVersion, so two
//! candidates never both win.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, api::PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A running candidate; `is_leader` follows the election. Dropping the handle's task (abort)
/// stops renewing, and another candidate takes over after `lease_duration`.
pub struct Candidate {
    pub is_leader: watch::Receiver<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn spawn(client: kube::Client, config: LeaseConfig) -> Candidate {
    let (tx, is_leader) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let task = tokio::spawn(run(api, config, tx));
    Candidate { is_leader, task }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

struct Observed {
    record: (Option<String>, Option<String>, Option<String>),
    at: Instant,
}

async fn run(api: Api<Lease>, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let mut observed: Option<Observed> = None;
    let mut last_renew: Option<Instant> = None;
    let secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15);
    loop {
        // (leader now, a write just renewed the lease)
        let (leader, renewed) = match api.get_opt(&cfg.name).await {
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.name.clone()),
                        namespace: Some(cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(cfg.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                let ok = api.create(&PostParams::default(), &lease).await.is_ok();
                (ok, ok)
            }
            Ok(Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_default();
                let record = (
                    spec.holder_identity.clone(),
                    spec.renew_time.as_ref().map(|t| t.0.to_string()),
                    lease.metadata.resource_version.clone(),
                );
                if observed.as_ref().is_none_or(|o| o.record != record) {
                    observed = Some(Observed {
                        record,
                        at: Instant::now(),
                    });
                }
                let spec = lease.spec.get_or_insert_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                let expired = observed
                    .as_ref()
                    .is_some_and(|o| o.at.elapsed() > cfg.lease_duration);
                if holder == cfg.identity || holder.is_empty() || expired {
                    if holder != cfg.identity {
                        spec.holder_identity = Some(cfg.identity.clone());
                        spec.acquire_time = Some(now());
                        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    }
                    spec.renew_time = Some(now());
                    spec.lease_duration_seconds = Some(secs);
                    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                        Ok(_) => (true, true),
                        // Lost a race (409) or the server is away: keep the lead until the
                        // renew deadline passes.
                        Err(_) => (
                            holder == cfg.identity
                                && last_renew.is_some_and(|t| t.elapsed() < cfg.renew_deadline),
                            false,
                        ),
                    }
                } else {
                    (false, false)
                }
            }
            Err(e) => {
                let keep =
                    *tx.borrow() && last_renew.is_some_and(|t| t.elapsed() < cfg.renew_deadline);
                if !keep && *tx.borrow() {
                    warn!(error = %e, "cannot renew the lease; stepping down");
                }
                (keep, false)
            }
        };
        let was = *tx.borrow();
        // Only a successful write moves the renew deadline.
        if renewed {
            last_renew = Some(Instant::now());
        }
        if leader != was {
            info!(identity = %cfg.identity, leader, "leader election");
            let _ = tx.send(leader);
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Gives the lease up if this candidate holds it (graceful shutdown), so another replica takes
/// over at once instead of after `lease_duration`.
pub async fn release(client: kube::Client, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    api.replace(&config.name, &PostParams::default(), &lease)
        .await?;
    info!(identity = %config.identity, "leader lease released");
    Ok(true)
}
