//! The immutable routing [`Snapshot`] and the pure translation that builds it from objects;
//! [`htpasswd`]: the password files and hashes of basic authentication.

pub mod htpasswd;
pub mod snapshot;
pub mod translate;

pub use snapshot::*;
