//! A private BPF pin directory per test, so daemons under test never share pins with each other
//! or with the node's real `/sys/fs/bpf/xdp-ingress`. Whoever runs the dataplane mounts bpffs
//! on it; dropping it removes the pins and unmounts that bpffs.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// A fresh path under the temp dir (not created: the dataplane creates and mounts it).
    pub fn new(label: &str) -> PinDir {
        let path = std::env::temp_dir().join(format!(
            "xdp-ingress-{label}-pins-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        PinDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for PinDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for PinDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<OsStr> for PinDir {
    fn as_ref(&self) -> &OsStr {
        self.path.as_os_str()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Ok(rd) = std::fs::read_dir(&self.path) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        if let Ok(c) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) {
            // SAFETY: a valid NUL-terminated path; unmounting a non-mount point just fails.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}
