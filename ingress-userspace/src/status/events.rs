//! Kubernetes Events (`events.k8s.io/v1`) for diagnostics: one Event when a diagnostic appears, none while it stays
//! unchanged, a new one if it goes away and comes back. A token bucket bounds the rate; what
//! the bucket refuses is retried on the next sync.

use std::{collections::BTreeSet, time::Instant};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, api::PostParams};
use tracing::warn;

use crate::{
    model::{Diagnostic, ObjectKind, Severity, Snapshot},
    source::served_versions::ServedVersions,
};

/// Who reports: the controller name and this replica.
#[derive(Clone, Debug)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

/// Tokens refill at `rate` per second up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            burst,
            rate,
            last: Instant::now(),
        }
    }

    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `(kind, apiVersion)` an Event's `regarding` names an object of `kind` by: a kind served at
/// several versions at the one `versions` says is watched (an object reference at a version
/// the cluster does not serve would not resolve), the others at the one we read.
fn api_kind(kind: ObjectKind, versions: &ServedVersions) -> Option<(&'static str, String)> {
    let (name, version) = fixed_api_kind(kind)?;
    Some((
        name,
        versions.api_version(kind).unwrap_or_else(|| version.into()),
    ))
}

fn fixed_api_kind(kind: ObjectKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        ObjectKind::Ingress => ("Ingress", "networking.k8s.io/v1"),
        ObjectKind::IngressClass => ("IngressClass", "networking.k8s.io/v1"),
        ObjectKind::Service => ("Service", "v1"),
        ObjectKind::EndpointSlice => ("EndpointSlice", "discovery.k8s.io/v1"),
        ObjectKind::Secret => ("Secret", "v1"),
        ObjectKind::Node => ("Node", "v1"),
        ObjectKind::ConfigMap => ("ConfigMap", "v1"),
        ObjectKind::Namespace => ("Namespace", "v1"),
        ObjectKind::GatewayClass => ("GatewayClass", "gateway.networking.k8s.io/v1"),
        ObjectKind::Gateway => ("Gateway", "gateway.networking.k8s.io/v1"),
        ObjectKind::HTTPRoute => ("HTTPRoute", "gateway.networking.k8s.io/v1"),
        ObjectKind::GRPCRoute => ("GRPCRoute", "gateway.networking.k8s.io/v1"),
        ObjectKind::ReferenceGrant => ("ReferenceGrant", "gateway.networking.k8s.io/v1"),
        ObjectKind::TCPRoute => ("TCPRoute", crate::store::L4_ROUTE_API_VERSION),
        ObjectKind::UDPRoute => ("UDPRoute", crate::store::L4_ROUTE_API_VERSION),
        ObjectKind::TLSRoute => ("TLSRoute", crate::store::TLS_ROUTE_API_VERSION),
        ObjectKind::BackendTLSPolicy => ("BackendTLSPolicy", "gateway.networking.k8s.io/v1"),
        ObjectKind::ListenerSet => ("ListenerSet", "gateway.networking.k8s.io/v1"),
        ObjectKind::ManifestFile => return None,
    })
}

/// Whether `d` gets an Event: a problem with an object of a kind Events can name. A note
/// ([`Severity::Info`]) is about an object that is not ours (another controller's): none.
pub fn eventable(d: &Diagnostic) -> bool {
    d.severity != Severity::Info && fixed_api_kind(d.object.kind).is_some()
}

pub struct EventWriter {
    client: kube::Client,
    reporter: Reporter,
    versions: ServedVersions,
    emitted: BTreeSet<Diagnostic>,
    bucket: TokenBucket,
}

impl EventWriter {
    /// `versions`: the versions the API source watches, which Events name objects at.
    pub fn new(client: kube::Client, reporter: Reporter, versions: ServedVersions) -> EventWriter {
        EventWriter {
            client,
            reporter,
            versions,
            emitted: BTreeSet::new(),
            // About what client-go's event broadcaster allows per object source.
            bucket: TokenBucket::new(1.0 / 3.0, 25.0),
        }
    }

    pub fn forget(&mut self) {
        self.emitted.clear();
    }

    pub async fn sync(&mut self, snapshot: &Snapshot) {
        let current: BTreeSet<&Diagnostic> = snapshot
            .diagnostics
            .iter()
            .filter(|d| eventable(d))
            .collect();
        self.emitted.retain(|d| current.contains(d));
        for d in current {
            if self.emitted.contains(d) {
                continue;
            }
            if !self.bucket.take() {
                break;
            }
            if self.emit(d).await {
                self.emitted.insert(d.clone());
            }
        }
    }

    async fn emit(&self, d: &Diagnostic) -> bool {
        let Some((kind, api_version)) = api_kind(d.object.kind, &self.versions) else {
            return true;
        };
        let ns = if d.object.namespace.is_empty() {
            "default".to_string()
        } else {
            d.object.namespace.clone()
        };
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", d.object.name)),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            regarding: Some(ObjectReference {
                kind: Some(kind.into()),
                api_version: Some(api_version),
                namespace: (!d.object.namespace.is_empty()).then(|| d.object.namespace.clone()),
                name: Some(d.object.name.clone()),
                ..Default::default()
            }),
            reason: Some(d.reason.clone()),
            // The API limits a note to 1 kB.
            note: Some(d.message.chars().take(1000).collect()),
            type_: Some(
                match d.severity {
                    Severity::Info => "Normal",
                    Severity::Warning | Severity::Error => "Warning",
                }
                .into(),
            ),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            action: Some("Sync".into()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(self.reporter.instance.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => true,
            Err(e) => {
                warn!(object = %d.object, error = %e, "creating Event failed; will retry");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A stray parentRef gets an Event on its route; a note about another controller's
    /// GatewayClass does not (it is not ours to annotate).
    #[test]
    fn problems_get_events_notes_do_not() {
        let d = |kind, severity| Diagnostic {
            object: crate::model::ObjectRef::new(kind, "app", "x"),
            severity,
            reason: "R".into(),
            message: "m".into(),
        };
        assert!(eventable(&d(ObjectKind::HTTPRoute, Severity::Warning)));
        assert!(eventable(&d(ObjectKind::Gateway, Severity::Warning)));
        assert!(!eventable(&d(ObjectKind::GatewayClass, Severity::Info)));
        assert!(!eventable(&d(ObjectKind::ManifestFile, Severity::Error)));
    }

    #[test]
    fn bucket_limits_bursts() {
        let mut b = TokenBucket::new(0.0, 3.0);
        assert_eq!((0..5).filter(|_| b.take()).count(), 3);
        let mut b = TokenBucket::new(1000.0, 1.0);
        assert!(b.take());
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.take());
    }
}
