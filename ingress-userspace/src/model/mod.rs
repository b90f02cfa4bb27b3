//! The immutable routing [`Snapshot`] and the pure translation that builds it from objects;
//! [`htpasswd`]: the password files and hashes of basic authentication; [`nginx_var`]: text
//! with nginx variables (`auth-url` and its family); [`answer`]: what a route answers, in words.

pub mod answer;
pub mod gateway;
pub mod htpasswd;
pub mod nginx_map;
pub mod nginx_var;
pub mod snapshot;
pub mod translate;

pub use gateway::*;
pub use snapshot::*;
