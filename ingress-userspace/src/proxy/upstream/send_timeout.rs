//! `proxy-send-timeout` as nginx's `proxy_send_timeout`: a bound on how long a write to an
//! endpoint may stay blocked, i.e. the time between two successive successful writes while
//! the proxy has bytes to send (request head and body, and upgraded tunnels). It is not a
//! bound on the whole upload, and a slow client is not the endpoint's fault: the timer runs
//! only while a write waits on the endpoint's socket.
//!
//! Implemented as a wrapper around every upstream connection ([`super::connect`]) that arms a
//! timer when a write (or a TLS flush) returns `Pending` and disarms it on progress; when it
//! fires the write fails with [`SendTimedOut`], which `forward` answers with 504 like nginx.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

/// A deadline nothing reaches (about 30 years), for timeouts past what `Instant` can hold.
const FAR_FUTURE: Duration = Duration::from_secs(86400 * 365 * 30);

/// The error a write fails with when the endpoint accepted nothing for the send timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream accepted no request bytes for {0:?} (proxy-send-timeout)")]
pub struct SendTimedOut(pub Duration);

impl SendTimedOut {
    /// Whether `e` or any error it wraps is a send timeout.
    pub fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if err.is::<SendTimedOut>() {
                return true;
            }
            // io::Error's `source()` skips its own payload: look at it directly.
            if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref())
                && inner.is::<SendTimedOut>()
            {
                return true;
            }
            cur = err.source();
        }
        false
    }
}

/// What armed the timer: a blocked write is only cleared by a write that makes progress
/// (a plain TCP flush is a no-op and says nothing), a blocked flush by the flush finishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Armed {
    Write,
    Flush,
}

/// A connection whose blocked writes time out.
pub struct SendTimeoutIo<T> {
    io: T,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    armed: Option<Armed>,
}

impl<T> SendTimeoutIo<T> {
    pub fn new(io: T, timeout: Duration) -> Self {
        SendTimeoutIo {
            io,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            armed: None,
        }
    }

    /// Passes a write-side result through, arming the timer on `Pending` and failing once it
    /// has been pending for the whole timeout. `progress`: a ready result clears a stall.
    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: Armed,
        res: Poll<io::Result<R>>,
        progress: bool,
    ) -> Poll<io::Result<R>> {
        match res {
            Poll::Ready(r) => {
                if progress || self.armed == Some(op) || r.is_err() {
                    self.armed = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.armed.is_none() {
                    // Checked: the timeout is configuration. Past what `Instant` holds, the
                    // same far-future deadline tokio uses for `sleep(Duration::MAX)`.
                    let now = Instant::now();
                    let deadline = now
                        .checked_add(self.timeout)
                        .unwrap_or_else(|| now + FAR_FUTURE);
                    self.timer.as_mut().reset(deadline);
                    self.armed = Some(op);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.armed = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            SendTimedOut(self.timeout),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: Read + Unpin> Read for SendTimeoutIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for SendTimeoutIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        let progress = matches!(res, Poll::Ready(Ok(n)) if n > 0);
        self.guard(cx, Armed::Write, res, progress)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        let progress = matches!(res, Poll::Ready(Ok(n)) if n > 0);
        self.guard(cx, Armed::Write, res, progress)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_flush(cx);
        self.guard(cx, Armed::Flush, res, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_shutdown(cx);
        self.guard(cx, Armed::Flush, res, false)
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Writes until the timeout fires against a peer that stops reading, then shows that a
    /// peer that keeps reading (slowly, but within the timeout) never trips it. On tokio's
    /// paused clock: a loaded machine stretching the reader's 100 ms sleeps past the 300 ms
    /// timeout made the real-clock version fail.
    #[tokio::test(start_paused = true)]
    async fn blocked_writes_time_out_and_slow_progress_does_not() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let mut io = TokioIo::new(SendTimeoutIo::new(
            TokioIo::new(ours),
            Duration::from_millis(200),
        ));
        let chunk = [7u8; 512];
        let started = Instant::now();
        let err = loop {
            match io.write_all(&chunk).await {
                Ok(()) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(SendTimedOut::caused(&err));
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(theirs);

        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = TokioIo::new(SendTimeoutIo::new(
            TokioIo::new(ours),
            Duration::from_millis(300),
        ));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0u8; 64];
            while total < 64 * 10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                total += theirs.read(&mut buf).await.unwrap();
            }
            total
        });
        // Ten stalls of about 100 ms each: a second in total, never 300 ms in a row.
        io.write_all(&[1u8; 64 * 10])
            .await
            .expect("progress resets the timer");
        assert_eq!(reader.await.unwrap(), 640);
    }

    #[test]
    fn caused_looks_through_wrappers() {
        let io = io::Error::new(
            io::ErrorKind::TimedOut,
            SendTimedOut(Duration::from_secs(1)),
        );
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrap(#[source] io::Error);
        assert!(SendTimedOut::caused(&Wrap(io)));
        let other = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        assert!(!SendTimedOut::caused(&Wrap(other)));
    }
}
