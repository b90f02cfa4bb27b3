//! The XDP dataplane: load and attach the eBPF object, and read/write its maps.
//!
//! # Layout
//! - `loader`, `object`, `stats`: load/attach the object, find it, read the global counters.
//! - `maglev`: pure Maglev table construction.
//! - `sync`: snapshot → minimal map writes ([`L4Sync`]), recovery after a restart: a pure
//!   planner (ordered [`MapWrite`]s) and an executor over the [`L4Maps`] trait.
//! - `syn_limit`: per-service SYN rate limits in the maps.
//! - `syn_listeners`: the node-wide SYN limit on the proxy's own listeners.
//! - `flows`: the flow tables' sweep (timed-out flows, orphaned reverse entries) and occupancy.
//! - `l4`: the daemon's L4 dataplane ([`L4Dataplane`]): pinning, attach, apply; its flags ([`L4Args`]).
//! - `view`: the data path's view read back from the maps (`xdp-ingress backends`).
//! - `neigh`: has the kernel resolve next hops the XDP path found without a neighbour.

pub mod flows;
pub mod l4;
pub mod loader;
pub mod maglev;
pub mod neigh;
pub mod object;
pub mod stats;
pub mod syn_limit;
pub mod syn_listeners;
pub mod sync;
pub mod view;

pub use l4::{L4Args, L4Dataplane, L4Handle};
pub use loader::{AttachMode, LoaderError, XdpAttachment};
pub use sync::{ApplyReport, L4Maps, L4Options, L4Sync, MapWrite, SyncError};
