//! Store types of our own for the kinds whose API structs cost the most memory: they keep what
//! translation reads and nothing else (issue 13: at 100k endpoints the k8s-openapi structs, with
//! every optional field inline, made up most of the store).
//!
//! Each one deserializes from, and serializes to, the API object's JSON, so sources, the
//! manifest directory and tests handle it as the API kind.

pub mod endpoint_slice;
pub mod ingress;
pub mod intern;
pub mod meta;
pub mod service;
