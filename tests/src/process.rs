//! Child processes that cannot outlive the test that started them.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A child killed (SIGKILL) and reaped on drop, so a failing test leaves no daemon behind.
pub struct KillOnDrop {
    child: Option<Child>,
}

impl KillOnDrop {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        let child = cmd.stdin(Stdio::null()).spawn()?;
        Ok(Self { child: Some(child) })
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: i32,
        timeout: Duration,
    ) -> std::io::Result<Option<std::process::ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Whether the child has exited already (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
