//! HTTP/1.1 upstream connections driven by the request that uses them.
//!
//! hyper's client connection is two halves: a future doing the connection's I/O, and a
//! `SendRequest` handing it requests over a channel. Run as a task of its own (hyper's usual
//! way), every request crosses tasks: the request into the connection's task, the response
//! head and each body chunk back, and a pooling step once the body has ended; `perf` put
//! those wake-ups and task polls among the proxy's top user-space costs
//! (deploy/docs/performance.md). Here the request that holds a connection polls its I/O
//! itself: while it waits for the response head ([`Http1Conn::send`]) and while the client
//! reads the response body ([`UpstreamBody`]). Nobody polls an idle pooled connection; taking
//! it from the pool polls it once, which notices a close by the endpoint
//! ([`Http1Conn::is_reusable`]).
//!
//! A connection that outlives its response or is not reused goes to a task of its own, as
//! before: an upgrade (the tunnel needs the connection's I/O after the 101), HTTP/1.0, and a
//! connection still sending a request body the endpoint answered early.

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    task::{Context, Poll, Waker, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::{TrySendError, http1},
};
use tracing::debug;

use super::pool::{Home, ProxyBody};

/// A connection's I/O: resolves when the connection has ended.
pub(super) type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One HTTP/1.1 connection to an endpoint, with its I/O.
pub struct Http1Conn {
    tx: http1::SendRequest<ProxyBody>,
    /// `None` once the connection has ended or was handed to a task ([`Self::detach`]).
    driver: Option<Driver>,
    /// When it was opened, and the requests sent on it ([`super::pool::ReuseLimits`]).
    opened: tokio::time::Instant,
    requests: u64,
}

impl Http1Conn {
    pub(super) fn new(tx: http1::SendRequest<ProxyBody>, driver: Driver) -> Self {
        Http1Conn {
            tx,
            driver: Some(driver),
            opened: tokio::time::Instant::now(),
            requests: 0,
        }
    }

    /// When the connection was opened.
    pub(super) fn opened(&self) -> tokio::time::Instant {
        self.opened
    }

    /// Requests sent on it.
    pub(super) fn requests(&self) -> u64 {
        self.requests
    }

    /// Does the connection's pending I/O; returns whether this side still drives it.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(d) = &mut self.driver
            && let Poll::Ready(ended) = d.as_mut().poll(cx)
        {
            if let Err(e) = ended {
                debug!(error = %e, "upstream connection ended");
            }
            self.driver = None;
        }
        self.driver.is_some()
    }

    /// Whether the connection can take a request now: open, driven here, and idle. Polls it
    /// once so that it notices a close by the endpoint and settles after a response.
    pub(super) fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.drive(&mut cx) && self.tx.is_ready()
    }

    /// Whether the connection has ended (or is no longer driven here).
    pub(super) fn is_closed(&self) -> bool {
        self.driver.is_none() || self.tx.is_closed()
    }

    /// Sends `req` and waits for the response head, doing the connection's I/O meanwhile.
    /// A request the connection could not take (it closed first) comes back in the error.
    pub(super) async fn send(
        &mut self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<ProxyBody>>> {
        self.requests += 1;
        let mut resp = pin!(self.tx.try_send_request(req));
        poll_fn(|cx| {
            self.drive(cx);
            resp.as_mut().poll(cx)
        })
        .await
    }

    /// Waits until the connection is idle again; false if it ended first.
    pub(super) async fn idle(&mut self) -> bool {
        poll_fn(|cx| {
            if !self.drive(cx) {
                return Poll::Ready(false);
            }
            self.tx.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Hands the connection's I/O to a task of its own (with upgrades: the task ends by
    /// handing the connection to the response's upgrade). The connection is not reused after.
    pub(super) fn detach(&mut self) {
        if let Some(driver) = self.driver.take() {
            tokio::spawn(async move {
                if let Err(e) = driver.await {
                    debug!(error = %e, "upstream connection ended");
                }
            });
        }
    }
}

/// An endpoint's response body. Reading it drives the connection it arrives on; once it has
/// been read to the end, the connection goes back where it came from ([`Home`]). Dropped
/// before its end, it closes the connection (the rest of the response is unread), as a
/// hyper connection does when its response body is dropped.
pub struct UpstreamBody {
    body: Incoming,
    conn: Option<(Http1Conn, Home)>,
}

impl UpstreamBody {
    /// A body whose connection is driven elsewhere (its own task, or HTTP/2's).
    pub(super) fn plain(body: Incoming) -> Self {
        UpstreamBody { body, conn: None }
    }

    pub(super) fn driving(body: Incoming, conn: Http1Conn, home: Home) -> Self {
        let conn = (conn.driver.is_some()).then_some((conn, home));
        UpstreamBody { body, conn }
    }

    fn release(&mut self) {
        if let Some((conn, home)) = self.conn.take() {
            home.give_back(conn);
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("body", &self.body)
            .field("drives_connection", &self.conn.is_some())
            .finish()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some((conn, _)) = &mut this.conn {
            conn.drive(cx);
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() || this.body.is_end_stream() {
            this.release();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body without content (HEAD, 204, 304, length 0) is never read: it ends here.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
