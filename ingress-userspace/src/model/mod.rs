//! The immutable routing [`Snapshot`] and the pure translation that builds it from objects.

pub mod htpasswd;
pub mod snapshot;
pub mod translate;

pub use snapshot::*;
