//! Upstreams: connection pools per endpoint, endpoint choice, passive health.

pub mod balance;
pub mod health;
pub mod pool;

pub use balance::{Pick, PickInput, UpstreamRuntime};
pub use health::HealthPolicy;
pub use pool::{BoxError, Clients, PoolOptions, ProxyBody};
