//! Liveness of a client connection counted in requests, not bytes. As nginx (since 1.19.7 for
//! HTTP/2 as for HTTP/1): a connection has `client_header_timeout` to complete its first
//! request, and a connection with no request in progress for `keepalive_timeout` is closed
//! (HTTP/1: closed; HTTP/2: GOAWAY) whatever else it sends — HTTP/2 PING, SETTINGS,
//! WINDOW_UPDATE, PRIORITY, or a preface trickled one byte at a time all move bytes without
//! progress. A request is in progress from the moment hyper hands it to the service until its
//! response body is finished or dropped ([`RequestGuard`], [`Guarded`]), so a long streamed
//! response keeps its connection — unless the client stops taking it: as nginx's
//! `send_timeout`, a connection whose response output waits on the client (hyper does not ask
//! for the next piece of a body because the client does not read, or keeps the HTTP/2 window
//! shut) for the send timeout is dropped. An upgraded connection (WebSocket) leaves hyper's
//! connection and has its own idle timeout in [`super::tunnel`].

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
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

/// [`ProgressInner::conn_poll`]: the connection is not being polled.
const POLL_IDLE: u8 = 0;
/// The supervisor is polling the connection.
const POLL_RUNNING: u8 = 1;
/// Progress moved while the supervisor polled the connection.
const POLL_CHANGED: u8 = 2;

/// The time limits of one client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// From the connection's start (after TLS) to its first request's headers being complete
    /// (`--client-header-timeout`).
    pub first_request: Duration,
    /// Longest time without any request in progress once one was served
    /// (`--keepalive-timeout`).
    pub idle: Duration,
    /// Longest time response output may wait on the client (`--send-timeout`).
    pub send: Duration,
}

/// Why a connection was asked to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request within [`ConnTimeouts::first_request`].
    NoRequest,
    /// No request in progress for [`ConnTimeouts::idle`].
    Idle,
    /// Response output waited on the client for [`ConnTimeouts::send`].
    Stalled,
    /// The proxy is draining.
    Shutdown,
    /// The connection carried its last request ([`Progress::with_request_limit`]).
    Exhausted,
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
    /// Told when the first open request started or the last one ended: the deadline the
    /// supervisor sleeps to may have moved earlier.
    changed: Notify,
    /// [`POLL_IDLE`], [`POLL_RUNNING`] or [`POLL_CHANGED`]: whether the supervisor is polling
    /// the connection, and whether progress moved during that poll.
    conn_poll: AtomicU8,
    /// Response bodies that handed hyper a frame and were not asked for the next one yet.
    waiting_on_client: AtomicUsize,
    /// Requests started on the connection.
    started: AtomicU64,
    /// Requests the connection may carry ([`Progress::with_request_limit`]).
    max_requests: u64,
    /// Milliseconds after `start` when hyper last asked a response body for a frame.
    body_polled_ms: AtomicU64,
}

impl Progress {
    /// A connection without a request limit.
    pub fn new() -> Self {
        Self::with_request_limit(u64::MAX)
    }

    /// A connection that may carry `max_requests` requests (nginx's `keepalive_requests`,
    /// ingress-nginx's `keep-alive-requests`; 0 counts as 1, as nginx compares the count of
    /// started requests with `>=`): the last one [`RequestGuard::is_last`], and from then on
    /// [`Progress::exhausted`] ([`supervise`] then asks the connection to close).
    pub fn with_request_limit(max_requests: u64) -> Self {
        Progress(Arc::new(ProgressInner {
            start: Instant::now(),
            open: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            changed: Notify::new(),
            conn_poll: AtomicU8::new(POLL_IDLE),
            waiting_on_client: AtomicUsize::new(0),
            body_polled_ms: AtomicU64::new(0),
            started: AtomicU64::new(0),
            max_requests,
        }))
    }

    /// Whether the connection has started all the requests it may carry.
    pub fn exhausted(&self) -> bool {
        self.0.started.load(Ordering::Acquire) >= self.0.max_requests.max(1)
    }

    /// A request started: in progress until the guard is dropped.
    pub fn begin(&self) -> RequestGuard {
        self.0.served.store(true, Ordering::Relaxed);
        let nth = self.0.started.fetch_add(1, Ordering::AcqRel) + 1;
        let last = nth >= self.0.max_requests;
        // The supervisor wakes to close an exhausted connection, busy or not.
        if self.0.open.fetch_add(1, Ordering::AcqRel) == 0 || nth == self.0.max_requests.max(1) {
            self.0.changed();
        }
        RequestGuard {
            inner: Arc::clone(&self.0),
            last,
        }
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
            if p.waiting_on_client.load(Ordering::Acquire) == 0 {
                return None;
            }
            let polled = Duration::from_millis(p.body_polled_ms.load(Ordering::Relaxed));
            return Some((p.start + polled + t.send, CloseReason::Stalled));
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
pub struct RequestGuard {
    inner: Arc<ProgressInner>,
    /// The connection's last request ([`Progress::with_request_limit`]).
    last: bool,
}

impl RequestGuard {
    /// Whether this is the last request the connection may carry: an HTTP/1 answer to it says
    /// `Connection: close` (nginx turns keep-alive off for it).
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Keeps the request in progress until `resp`'s body is finished or dropped.
    pub fn hold<B: Body>(self, resp: Response<B>) -> Response<Guarded<B>> {
        resp.map(|inner| {
            // Until hyper first asks for it, a body with something to send waits on the
            // client (an HTTP/2 client can open with a zero window).
            self.inner.body_polled();
            let waiting = !inner.is_end_stream();
            let mut body = Guarded {
                inner,
                handed: false,
                guard: self,
            };
            body.set_handed(waiting);
            body
        })
    }
}

impl ProgressInner {
    /// Progress moved: wakes the supervisor, unless it is polling the connection (the request
    /// started or ended inside that poll, as hyper serves them): it then looks at the
    /// deadline right after the poll, and a wake-up would only poll the connection again.
    fn changed(&self) {
        match (self.conn_poll).compare_exchange(
            POLL_RUNNING,
            POLL_CHANGED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) | Err(POLL_CHANGED) => {}
            Err(_) => self.changed.notify_one(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn body_polled(&self) {
        self.body_polled_ms
            .fetch_max(self.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let p = &self.inner;
        p.idle_since_ms.fetch_max(p.now_ms(), Ordering::Relaxed);
        if p.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            p.changed();
        }
    }
}

/// A response body that keeps its request in progress while it streams, and tells whether
/// its output waits on the client.
#[derive(Debug)]
pub struct Guarded<B> {
    inner: B,
    /// A frame went to hyper and the next was not asked for yet.
    handed: bool,
    guard: RequestGuard,
}

impl<B> Guarded<B> {
    fn set_handed(&mut self, handed: bool) {
        if self.handed != handed {
            self.handed = handed;
            let waiting = &self.guard.inner.waiting_on_client;
            if handed {
                waiting.fetch_add(1, Ordering::AcqRel);
            } else {
                waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl<B> Drop for Guarded<B> {
    fn drop(&mut self) {
        self.set_handed(false);
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.guard.inner.body_polled();
        this.set_handed(false);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // hyper asks for the next frame once the client took this one (or has room for it);
        // after the last one it asks for nothing.
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && !this.inner.is_end_stream() {
            this.set_handed(true);
        }
        polled
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
    // One timer for the connection's life, re-armed only when it must fire earlier: waking
    // early costs one look at the deadline, while arming a timer at every request's start and
    // end (two timer-wheel insertions and removals per request) showed in `perf`.
    let sleep = std::pin::pin!(sleep_until(Instant::now()));
    // Looked at only when it may have fired: the task wakes several times a request.
    let mut sleep = super::watched_sleep::WatchedSleep::new(sleep);
    // When the armed timer fires; `None`: not armed (fired, or nothing to wait for).
    let mut armed: Option<Instant> = None;
    // Whether the connection was asked to close for having carried its last request: its
    // requests in progress finish (HTTP/2: GOAWAY, then their streams) while the send
    // deadline watches them; once none is left the close gets the grace any close gets.
    let mut exhausted = false;
    // One waiter for the connection's progress, registered once and renewed only when it
    // fired: a fresh `notified()` at each wake-up re-registered with the `Notify` every time.
    let notified = progress.0.changed.notified();
    tokio::pin!(notified);
    // The connection was polled in this wake-up, and nothing since asks for another poll.
    let mut conn_just_polled = false;
    loop {
        if closing.is_none() && progress.exhausted() {
            if !exhausted {
                exhausted = true;
                close(conn.as_mut());
                conn_just_polled = false;
            }
            if progress.open() == 0 {
                let until = Instant::now() + MAX_CLOSE_GRACE;
                closing = Some((CloseReason::Exhausted, Some(until)));
                // A timer armed earlier (the send timeout's look) must not drop it sooner.
                armed = None;
            }
        }
        let wake = match closing {
            Some((_, until)) => until,
            // Requests in progress, none waiting on the client: look again when the idle time
            // or the send timeout could have run out.
            None => Some(progress.deadline(&timeouts).map_or_else(
                || Instant::now() + timeouts.idle.min(timeouts.send),
                |(at, _)| at,
            )),
        };
        match wake {
            Some(at) if armed.is_none_or(|armed| armed > at) => {
                sleep.reset(at);
                armed = Some(at);
            }
            Some(_) => {}
            None => armed = None,
        }
        // The connection first, without drawing a random start per wake-up (a `biased`
        // select). A request that starts or ends inside the connection's poll (as hyper
        // serves them) neither wakes this task (`ProgressInner::changed`) nor has the
        // connection polled again in this wake-up: it only moves the deadline, and the second
        // poll of hyper's connection (a read attempt, a flush, HTTP/2's frame loop) was two
        // per request for nothing (issue 13: callgrind).
        let mut skip_conn = std::mem::take(&mut conn_just_polled);
        let woke = std::future::poll_fn(|cx| {
            let mut moved = false;
            if !std::mem::take(&mut skip_conn) {
                let state = &progress.0.conn_poll;
                state.store(POLL_RUNNING, Ordering::Release);
                let r = conn.as_mut().poll(cx);
                moved = state.swap(POLL_IDLE, Ordering::AcqRel) == POLL_CHANGED;
                if let Poll::Ready(r) = r {
                    return Poll::Ready(Woke::Conn(r));
                }
            }
            if closing.is_none() {
                if notified.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Progress { fired: true });
                }
                if moved {
                    return Poll::Ready(Woke::Progress { fired: false });
                }
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Shutdown);
                }
            }
            if armed.is_some() && std::pin::Pin::new(&mut sleep).poll(cx).is_ready() {
                return Poll::Ready(Woke::Timer);
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Conn(r) => return Ended::Finished(r),
            // Busy or idle now: the deadline may be earlier than the one slept to.
            Woke::Progress { fired } => {
                if fired {
                    notified.set(progress.0.changed.notified());
                }
                conn_just_polled = true;
            }
            Woke::Shutdown => {
                close(conn.as_mut());
                closing = Some((CloseReason::Shutdown, None));
                armed = None;
            }
            Woke::Timer => {
                armed = None;
                if let Some((why, _)) = closing {
                    return Ended::Dropped(why);
                }
                if let Some((at, why)) = progress.deadline(&timeouts)
                    && at <= Instant::now()
                {
                    let fired = match why {
                        // A client that takes nothing would not take a GOAWAY either.
                        CloseReason::Stalled => return Ended::Dropped(why),
                        CloseReason::NoRequest => timeouts.first_request,
                        _ => timeouts.idle,
                    };
                    close(conn.as_mut());
                    // A zero timeout (`keep-alive: 0`) still leaves the close its grace: the
                    // last answer and the GOAWAY must reach the client.
                    let grace = if fired.is_zero() {
                        MAX_CLOSE_GRACE
                    } else {
                        fired.min(MAX_CLOSE_GRACE)
                    };
                    closing = Some((why, Some(Instant::now() + grace)));
                }
            }
        }
    }
}

/// Which of [`supervise`]'s futures is ready.
enum Woke<E> {
    Conn(Result<(), E>),
    /// Progress moved; `fired`: told by the waiter (else seen right after the connection's
    /// poll, in which it moved).
    Progress {
        fired: bool,
    },
    Shutdown,
    Timer,
}

#[cfg(test)]
mod tests;
