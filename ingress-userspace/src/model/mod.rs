//! Pure translation from Kubernetes objects to one immutable [`Snapshot`]. No I/O here.

pub mod snapshot;

pub use snapshot::*;
