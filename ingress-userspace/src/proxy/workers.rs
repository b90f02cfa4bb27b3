//! The proxy's worker threads: one current-thread tokio runtime each, as nginx runs one
//! process per core (and Envoy and Pingora one event loop per thread). Each worker accepts on
//! listening sockets of its own (`SO_REUSEPORT`: the kernel spreads new connections over
//! them, [`super::listener_set`]), serves the connections it accepted on its own thread, and
//! sends their requests over upstream connections of its own pools
//! ([`super::upstream::Clients`] picks the pool by [`current`]). A connection's tasks and
//! sockets thus never leave the thread that accepted it: no work stealing moving them between
//! cores, and no wake-up of another thread on each readiness event.
//!
//! What the workers share is read-mostly: the routing runtime and settings (swapped whole by
//! [`super::ProxyHandle::apply`]), metrics and the connection caps (atomics).

use std::{cell::Cell, thread::JoinHandle};

use tokio::{runtime::Handle, sync::watch};

thread_local! {
    /// The index of the worker running on this thread; `None` off the workers.
    static INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker running the calling thread (0 to count - 1), `None` on any other
/// thread (the control plane's, a test's).
pub fn current() -> Option<usize> {
    INDEX.with(Cell::get)
}

/// The worker count for `--proxy-workers`: the value, or when 0 the CPUs this process may
/// run on.
pub fn count(asked: usize) -> usize {
    match asked {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Running worker threads. They stop when the proxy has drained (`done` flips) or when the
/// proxy is gone (its sender dropped); tasks still on them then are dropped, as a process
/// exit would.
pub(crate) struct Workers {
    pub handles: Vec<Handle>,
    _threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` (at least 1) workers; returns once each has its runtime.
    pub fn start(n: usize, done: &watch::Receiver<bool>) -> std::io::Result<Workers> {
        let mut handles = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut done = done.clone();
            // A thread inherits its creator's network namespace: the workers' upstream
            // connections come from where the proxy was started.
            let thread = std::thread::Builder::new()
                .name(format!("proxy-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(Some(index)));
                    runtime.block_on(async move {
                        let _ = done.wait_for(|d| *d).await;
                    });
                })?;
            threads.push(thread);
        }
        Ok(Workers {
            handles,
            _threads: threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each worker's tasks run on its own thread and know its index; other threads have none.
    #[tokio::test]
    async fn each_worker_runs_its_tasks_on_its_own_thread() {
        let (done_tx, done_rx) = watch::channel(false);
        let workers = Workers::start(3, &done_rx).expect("workers start");
        assert_eq!(workers.handles.len(), 3);
        let mut threads = Vec::new();
        for (i, handle) in workers.handles.iter().enumerate() {
            let (index, thread) = handle
                .spawn(async { (current(), std::thread::current().id()) })
                .await
                .expect("task ran");
            assert_eq!(index, Some(i));
            threads.push(thread);
        }
        threads.dedup();
        assert_eq!(threads.len(), 3, "one thread per worker");
        assert!(!threads.contains(&std::thread::current().id()));
        assert_eq!(current(), None, "not a worker");
        let _ = done_tx.send(true);
    }

    #[test]
    fn zero_workers_means_one_per_cpu() {
        assert_eq!(count(3), 3);
        assert_eq!(
            count(0),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
    }
}
