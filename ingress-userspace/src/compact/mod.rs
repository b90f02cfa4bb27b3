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

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::{endpoint_slice, ingress::Ingress, service::Service};
    use crate::model::{Endpoint, Route, Upstream};

    /// What the store and the snapshot keep per Service, per endpoint and per route, in bytes, against the
    /// allocator's size classes (mimalloc: ..., 256, 320, 384, 448, ...): at 20k Services and
    /// 100k endpoints (five a slice) each class step is ~1.2 MiB (issue 13). A field added
    /// to one of these moves it up a class; this says so before the benchmark does.
    #[test]
    fn kept_objects_fit_their_size_classes() {
        // An `Arc`'s block holds its two counts (16 bytes) before the value.
        let sizes = [
            ("Arc<Service>", size_of::<Service>() + 16, 256),
            ("Arc<Ingress>", size_of::<Ingress>() + 16, 224),
            (
                "Arc<EndpointSlice>",
                size_of::<endpoint_slice::EndpointSlice>() + 16,
                160,
            ),
            (
                "a slice's 5 endpoints",
                5 * size_of::<endpoint_slice::Endpoint>(),
                320,
            ),
            ("a snapshot's 5 endpoints", 5 * size_of::<Endpoint>(), 320),
            // One per Service port an Ingress names (20k at 10k Ingresses).
            ("Arc<Upstream>", size_of::<Upstream>() + 16, 224),
            // A host, in the snapshot and as the proxy compiles it (10k).
            (
                "Arc<VirtualHost>",
                size_of::<crate::model::VirtualHost>() + 16,
                96,
            ),
            (
                "Arc<CompiledHost>",
                size_of::<
                    crate::proxy::router::CompiledHost<
                        std::sync::Arc<crate::proxy::upstream::UpstreamRuntime>,
                    >,
                >() + 16,
                96,
            ),
            // A host's routes (two a host in the benchmark; 20k).
            ("a host's 2 routes", 2 * size_of::<Route>(), 384),
            // And as the proxy compiles them.
            (
                "a host's 2 compiled routes",
                2 * size_of::<
                    crate::proxy::router::CompiledRoute<
                        std::sync::Arc<crate::proxy::upstream::UpstreamRuntime>,
                    >,
                >(),
                320,
            ),
            // An Ingress rule's paths (two a rule in the benchmark; 10k).
            (
                "a rule's 2 paths",
                2 * size_of::<super::ingress::HTTPIngressPath>(),
                192,
            ),
        ];
        for (what, size, class) in sizes {
            println!("{what}: {size} bytes (class {class})");
            assert!(size <= class, "{what}: {size} bytes > {class}");
        }
    }
}
