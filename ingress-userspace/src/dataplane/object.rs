//! Where the eBPF object comes from: embedded at build time, or a file given on the command line.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(
        "this xdp-ingress was built without the eBPF object; run `cargo xtask build-ebpf` and \
         rebuild, or pass --bpf-object PATH"
    )]
    NotEmbedded,
    #[error("reading eBPF object {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The object embedded by `build.rs`, if `cargo xtask build-ebpf` had run before the build.
pub fn embedded() -> Option<&'static [u8]> {
    #[cfg(ebpf_embedded)]
    {
        Some(aya::include_bytes_aligned!(env!(
            "XDP_INGRESS_BPF_OBJ_PATH"
        )))
    }
    #[cfg(not(ebpf_embedded))]
    {
        None
    }
}

/// The object bytes: from `path` when given, else the embedded one.
pub fn load(path: Option<&Path>) -> Result<std::borrow::Cow<'static, [u8]>, ObjectError> {
    match path {
        Some(p) => std::fs::read(p)
            .map(Into::into)
            .map_err(|source| ObjectError::Read {
                path: p.to_path_buf(),
                source,
            }),
        None => embedded().map(Into::into).ok_or(ObjectError::NotEmbedded),
    }
}
