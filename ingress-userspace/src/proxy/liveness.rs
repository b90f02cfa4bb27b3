//! Liveness of a client connection counted in requests, not bytes. As nginx (since 1.19.7 for
//! HTTP/2 as for HTTP/1): a connection has `client_header_timeout` to complete its first
//! request, and a connection with no request in progress for `keepalive_timeout` is closed
//! (HTTP/1: closed; HTTP/2: GOAWAY) whatever else it sends — HTTP/2 PING, SETTINGS,
//! WINDOW_UPDATE, PRIORITY, or a preface trickled one byte at a time all move bytes without
//! progress. A request is in progress from the moment hyper hands it to the service until its
//! response body is finished or dropped ([`RequestGuard`], [`Guarded`]), so a long streamed
//! response keeps its connection. An upgraded connection (WebSocket) leaves hyper's connection
//! and has its own idle timeout in [`super::tunnel`].

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::{
    sync::Notify,
    time::{Instant, sleep_until},
};

/// Longest a connection closed for lack of progress may take to finish closing (HTTP/2: the
/// GOAWAY/PING exchange) before it is dropped: nginx's `lingering_timeout`.
pub const MAX_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The time limits of one client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// From the connection's start (after TLS) to its first request's headers being complete
    /// (`--client-header-timeout`).
    pub first_request: Duration,
    /// Longest time without any request in progress once one was served
    /// (`--keepalive-timeout`).
    pub idle: Duration,
}

/// Why a connection was asked to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request within [`ConnTimeouts::first_request`].
    NoRequest,
    /// No request in progress for [`ConnTimeouts::idle`].
    Idle,
    /// The proxy is draining.
    Shutdown,
}

/// Requests in progress on one connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Progress(Arc<ProgressInner>);

#[derive(Debug)]
struct ProgressInner {
    start: Instant,
    open: AtomicUsize,
    /// Milliseconds after `start` when the last open request ended.
    idle_since_ms: AtomicU64,
    /// Whether any request ever started.
    served: AtomicBool,
    /// Told when the last open request ended: the deadline may have moved earlier.
    idle: Notify,
}

impl Progress {
    pub fn new() -> Self {
        Progress(Arc::new(ProgressInner {
            start: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            idle: Notify::new(),
        }))
    }

    /// A request started: in progress until the guard is dropped.
    pub fn begin(&self) -> RequestGuard {
        self.0.served.store(true, Ordering::Relaxed);
        self.0.open.fetch_add(1, Ordering::AcqRel);
        RequestGuard(Arc::clone(&self.0))
    }

    /// Requests in progress.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// When the connection gets closed unless a request starts first (`None`: one is in
    /// progress), and why.
    pub fn deadline(&self, t: &ConnTimeouts) -> Option<(Instant, CloseReason)> {
        let p = &self.0;
        if p.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !p.served.load(Ordering::Relaxed) {
            return Some((p.start + t.first_request, CloseReason::NoRequest));
        }
        let since = Duration::from_millis(p.idle_since_ms.load(Ordering::Relaxed));
        Some((p.start + since + t.idle, CloseReason::Idle))
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// One request in progress; its end (drop) starts the connection's idle time when it was the
/// last one. Dropped with the service future when the client resets the request.
#[derive(Debug)]
pub struct RequestGuard(Arc<ProgressInner>);

impl RequestGuard {
    /// Keeps the request in progress until `resp`'s body is finished or dropped.
    pub fn hold<B>(self, resp: Response<B>) -> Response<Guarded<B>> {
        resp.map(|inner| Guarded {
            inner,
            _guard: self,
        })
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let p = &self.0;
        let ms = u64::try_from(p.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        p.idle_since_ms.fetch_max(ms, Ordering::Relaxed);
        if p.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            p.idle.notify_one();
        }
    }
}

/// A response body that keeps its request in progress while it streams.
#[derive(Debug)]
pub struct Guarded<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How [`supervise`] ended.
#[derive(Debug)]
pub enum Ended<E> {
    /// The connection future finished (closed by either side, or after a graceful close).
    Finished(Result<(), E>),
    /// Asked to close for this reason, it did not finish within its grace and was dropped.
    Dropped(CloseReason),
}

/// Drives `conn` until it finishes, asking it to close (`close`: hyper's
/// `graceful_shutdown`) when `progress` says it made none in time or when `shutdown`
/// resolves. A connection asked to close for lack of progress that has not finished within
/// the timeout that fired (at most [`MAX_CLOSE_GRACE`]) is dropped; one asked to close for
/// shutdown runs until the drain deadline of its owner.
pub async fn supervise<C, E>(
    mut conn: Pin<&mut C>,
    mut close: impl FnMut(Pin<&mut C>),
    progress: &Progress,
    timeouts: ConnTimeouts,
    shutdown: impl Future<Output = ()>,
) -> Ended<E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(shutdown);
    // Why it was asked to close, and when it is dropped if still open.
    let mut closing: Option<(CloseReason, Option<Instant>)> = None;
    loop {
        let wake = match closing {
            Some((_, until)) => until,
            // A request in progress: nothing to do before the idle time could run out.
            None => Some(
                progress
                    .deadline(&timeouts)
                    .map_or_else(|| Instant::now() + timeouts.idle, |(at, _)| at),
            ),
        };
        tokio::select! {
            r = conn.as_mut() => return Ended::Finished(r),
            // Idle now: the deadline is the keep-alive one, maybe earlier than the one slept to.
            _ = progress.0.idle.notified(), if closing.is_none() => {}
            _ = &mut shutdown, if closing.is_none() => {
                close(conn.as_mut());
                closing = Some((CloseReason::Shutdown, None));
            }
            _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if let Some((why, _)) = closing {
                    return Ended::Dropped(why);
                }
                if let Some((at, why)) = progress.deadline(&timeouts)
                    && at <= Instant::now()
                {
                    let fired = match why {
                        CloseReason::NoRequest => timeouts.first_request,
                        _ => timeouts.idle,
                    };
                    close(conn.as_mut());
                    closing = Some((why, Some(Instant::now() + fired.min(MAX_CLOSE_GRACE))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
