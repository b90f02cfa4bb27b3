//! The XDP dataplane: load and attach the eBPF object, and read/write its maps.

pub mod loader;
pub mod object;
pub mod stats;

pub use loader::{AttachMode, LoaderError, XdpAttachment};
