//! The immutable routing [`Snapshot`] and the pure translation that builds it from objects;
//! [`htpasswd`]: the password files and hashes of basic authentication; [`nginx_var`]: text
//! with nginx variables (`auth-url` and its family); [`answer`]: what a route answers, in words;
//! [`compression`]: the ConfigMap's response compression.

pub mod answer;
pub mod compression;
pub mod gateway;
pub mod htpasswd;
pub mod nginx_map;
pub mod nginx_var;
pub mod server_tls;
pub mod snapshot;
pub mod translate;

pub use gateway::*;
pub use snapshot::*;
