//! Sources of Kubernetes objects: a manifest directory ([`files`]) and the API server
//! ([`kube`]). Each reports [`SourceEvent`]s to the control loop, which applies them to the
//! store; the two behave the same from there on.

pub mod args;
pub mod files;
pub mod kube;
pub mod served_versions;

use std::time::Instant;

use crate::store::{Change, SourceId};

/// One change from one source, stamped with when the source saw it (the start of the
/// event-to-live latency).
#[derive(Clone, Debug)]
pub struct SourceEvent {
    pub source: SourceId,
    pub change: Change,
    pub at: Instant,
}

impl SourceEvent {
    pub fn new(source: SourceId, change: Change) -> SourceEvent {
        SourceEvent {
            source,
            change,
            at: Instant::now(),
        }
    }
}

pub type EventSender = tokio::sync::mpsc::Sender<SourceEvent>;
