//! Upstreams: connecting and pooled connections per endpoint, endpoint choice, passive
//! health, send timeout.

pub mod balance;
pub mod connect;
pub mod external_name;
pub mod health;
pub mod http1_conn;
pub mod pool;
pub mod send_timeout;
pub mod sticky;
pub mod verified_tls;

pub use balance::{Pick, PickInput, UpstreamRuntime};
pub use health::HealthPolicy;
pub use http1_conn::UpstreamBody;
pub use pool::{BoxError, Clients, PoolOptions, ProxyBody, UpstreamError};
