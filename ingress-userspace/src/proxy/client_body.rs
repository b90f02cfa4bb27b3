//! The client's request body as the proxy streams it to an endpoint, and the faults that come
//! from the client's side of that stream.
//!
//! [`ClientBody`] wraps the body a client sends and enforces, while the body flows:
//! - the size limit (`proxy-body-size`, nginx `client_max_body_size`): more bytes than that
//!   is [`ClientFault::TooLarge`], answered 413;
//! - the client body timeout (nginx `client_body_timeout`, default 60 s): the longest wait for
//!   the client between two successive reads, [`ClientFault::TimedOut`], answered 408.
//!
//! It also sorts the errors of the client's body itself: bad framing (a malformed chunk, an
//! HTTP/2 DATA length that contradicts `content-length`) is [`ClientFault::Malformed`] (400),
//! a client that reset or closed mid-body is [`ClientFault::Aborted`] (499, nginx's "client
//! closed request").
//!
//! Every fault is written to a [`BodyWatch`] shared with `forward` *before* the error goes on
//! into the upstream client, where it comes back as an opaque send error. `forward` reads the
//! watch first: a failed attempt with a client fault recorded is the client's, never counted
//! against the endpoint (passive health, `upstream_failures`) and never retried elsewhere.
//! The watch also tells the upstream read timeout when the proxy is waiting on the client
//! rather than on the endpoint (see [`BodyWatch::upstream_clock_start_ms`]).

use std::{
    error::Error as StdError,
    future::Future,
    io,
    pin::Pin,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::upstream::{BoxError, health::now_ms};

/// A fault on the client's side of a forwarded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// More body bytes than the route allows (`proxy-body-size`): 413.
    TooLarge,
    /// The body's framing is invalid (HTTP/1.1 chunked coding, HTTP/2 DATA vs
    /// `content-length`): 400.
    Malformed,
    /// The client sent nothing for the client body timeout: 408.
    TimedOut,
    /// The client reset the stream or closed the connection mid-body: 499 (nginx's code for
    /// "client closed request"; the client is gone and sees nothing).
    Aborted,
}

impl ClientFault {
    /// The status answered for it, as nginx answers it.
    pub fn status(self) -> StatusCode {
        match self {
            ClientFault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientFault::Malformed => StatusCode::BAD_REQUEST,
            ClientFault::TimedOut => StatusCode::REQUEST_TIMEOUT,
            ClientFault::Aborted => CLIENT_CLOSED_REQUEST,
        }
    }

    /// The reason given in the reason header and the access log.
    pub fn reason(self) -> &'static str {
        match self {
            ClientFault::TooLarge => "request body too large",
            ClientFault::Malformed => "malformed request body",
            ClientFault::TimedOut => "client body timed out",
            ClientFault::Aborted => "client closed request",
        }
    }

    /// Sorts an error of the client's body (a hyper server body error) by its types: protocol
    /// violations the server side detected are [`Malformed`](ClientFault::Malformed), the rest
    /// (end of stream, reset, closed connection) is the client going away.
    pub fn of_body_error(e: &(dyn StdError + 'static)) -> ClientFault {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                return match io.kind() {
                    // The HTTP/1.1 body decoder's verdict on bad chunk framing.
                    io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                        ClientFault::Malformed
                    }
                    _ => ClientFault::Aborted,
                };
            }
            if let Some(h2) = err.downcast_ref::<h2::Error>() {
                if let Some(io) = h2.get_io() {
                    return ClientFault::of_body_error(io);
                }
                // A reset the client sent, or its GOAWAY, is the client leaving; a reset our
                // HTTP/2 server generated is its verdict on the client's frames.
                return if h2.is_remote() || h2.is_go_away() || !h2.is_reset() {
                    ClientFault::Aborted
                } else {
                    ClientFault::Malformed
                };
            }
            cur = err.source();
        }
        ClientFault::Aborted
    }
}

/// 499, nginx's status for a request whose client closed the connection.
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// The error a [`ClientBody`] fails with; what the upstream client then reports wraps it.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {}", .0.reason())]
pub struct ClientBodyError(pub ClientFault);

/// What `forward` learns about the client's body while an attempt sends it, shared with the
/// [`ClientBody`] that records it.
#[derive(Debug, Default)]
pub struct BodyWatch {
    fault: OnceLock<ClientFault>,
    /// [`now_ms`] of the last frame (or the end) read from the client; 0 before the first.
    last_progress_ms: AtomicU64,
    /// The body is waiting for the client: a read returned pending and nothing came since.
    waiting_on_client: AtomicBool,
}

impl BodyWatch {
    /// The client fault that ended the body, if one did.
    pub fn fault(&self) -> Option<ClientFault> {
        self.fault.get().copied()
    }

    /// When the upstream read timeout (the time an endpoint has to answer) may start
    /// counting, in [`now_ms`] milliseconds: `None` while the proxy waits on the client (its
    /// stall is the client body timeout's to judge), else the last progress of the body (the
    /// endpoint cannot be expected to answer before it has the body; an endpoint that stops
    /// taking it is the send timeout's). `since_ms` is when the attempt started.
    pub fn upstream_clock_start_ms(&self, since_ms: u64) -> Option<u64> {
        if self.waiting_on_client.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.last_progress_ms.load(Ordering::Relaxed).max(since_ms))
    }

    fn record(&self, fault: ClientFault) -> ClientFault {
        // The first fault is the cause; later ones are its consequences.
        *self.fault.get_or_init(|| fault)
    }

    fn progress(&self) {
        self.waiting_on_client.store(false, Ordering::Relaxed);
        self.last_progress_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// The client's body with the limit and the timeout applied; see the module docs.
pub struct ClientBody<B> {
    inner: B,
    watch: std::sync::Arc<BodyWatch>,
    /// Bytes allowed in all; 0 is unlimited.
    limit: u64,
    read: u64,
    /// Zero disables the timeout.
    timeout: Duration,
    /// Armed while a read waits on the client.
    stall: Option<Pin<Box<Sleep>>>,
    done: bool,
}

impl<B> ClientBody<B> {
    /// `limit`: bytes allowed (0: unlimited); `timeout`: the client body timeout (zero: none).
    pub fn new(inner: B, limit: u64, timeout: Duration, watch: std::sync::Arc<BodyWatch>) -> Self {
        ClientBody {
            inner,
            watch,
            limit,
            read: 0,
            timeout,
            stall: None,
            done: false,
        }
    }

    fn fail(&mut self, fault: ClientFault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let first = self.watch.record(fault);
        self.done = true;
        self.stall = None;
        self.watch.waiting_on_client.store(false, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(ClientBodyError(first)))))
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: StdError + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return match self.watch.fault() {
                Some(f) => Poll::Ready(Some(Err(Box::new(ClientBodyError(f))))),
                None => Poll::Ready(None),
            };
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.stall = None;
                self.watch.progress();
                if let Some(data) = frame.data_ref() {
                    self.read = self.read.saturating_add(data.len() as u64);
                    if self.limit > 0 && self.read > self.limit {
                        return self.fail(ClientFault::TooLarge);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => self.fail(ClientFault::of_body_error(&e)),
            Poll::Ready(None) => {
                self.stall = None;
                self.done = true;
                self.watch.progress();
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.watch.waiting_on_client.store(true, Ordering::Relaxed);
                if self.timeout.is_zero() {
                    return Poll::Pending;
                }
                let timeout = self.timeout;
                let stall = self.stall.get_or_insert_with(|| {
                    // `sleep` saturates where `now + timeout` would overflow.
                    Box::pin(tokio::time::sleep(timeout))
                });
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => self.fail(ClientFault::TimedOut),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A failed body has not ended: it must never look complete to the sender.
        if self.done {
            self.watch.fault().is_none()
        } else {
            self.inner.is_end_stream()
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
