//! One named network namespace (`ip netns`), and ways to run things inside it.

use std::{fs::File, os::fd::AsRawFd, process::Command, thread::JoinHandle};

use anyhow::{Context, bail};

/// A namespace created with `ip netns add`; [`crate::Topology`] owns its removal.
#[derive(Clone, Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns exec NAME program`.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` inside the namespace; returns stdout, or an error with stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .cmd(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program} in netns {}", self.name))?;
        if !out.status.success() {
            bail!(
                "{program} {} in netns {} failed ({}): {}",
                args.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a thread that has joined this namespace; sockets it creates live here.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let name = self.name.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                join(&name);
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Like [`Netns::enter`] but the thread outlives the call (servers).
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> JoinHandle<R> {
        let name = self.name.clone();
        std::thread::spawn(move || {
            join(&name);
            f()
        })
    }
}

/// Moves the calling thread into namespace `name`. Panics: only tests call this, and a test
/// that cannot enter its namespace must not carry on in the root namespace.
fn join(name: &str) {
    let path = format!("/var/run/netns/{name}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
}
