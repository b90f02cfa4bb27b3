//! The pace of a response body to the client: ingress-nginx's `limit-rate` and
//! `limit-rate-after` (nginx `limit_rate` / `limit_rate_after`, ngx_http_core_module). The
//! first `after` bytes of the body go at full speed; the rest at most `rate` bytes per second,
//! per request (an HTTP/2 stream is a request: two streams get twice the rate, as nginx).
//!
//! A token bucket over the body ([`Paced`]): it holds at most one frame of the inner body at a
//! time and hands it on in pieces as tokens allow, sleeping (one timer, no polling loop) until
//! the next piece's tokens are there. The bucket holds at most [`burst`] bytes (an eighth of a
//! second's worth, at most 64 KiB), so a body that paused upstream does not then burst ahead.
//! Unlike nginx's (`limit_rate * (elapsed + 1)` counted from the request's start), it gives no
//! second's worth up front: the rate holds from the first paced byte.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::upstream::{BoxError, ProxyBody};

/// Largest bucket, in bytes.
pub const MAX_BURST: u64 = 64 * 1024;

/// The bucket size for `rate` bytes per second: an eighth of a second's worth, at least one
/// byte, at most [`MAX_BURST`].
pub fn burst(rate: u64) -> u64 {
    (rate / 8).clamp(1, MAX_BURST)
}

/// `resp` with its body paced at `rate` bytes per second after the first `after` bytes;
/// unchanged when `rate` is 0 (no limit).
pub fn pace(resp: Response<ProxyBody>, rate: u64, after: u64) -> Response<ProxyBody> {
    if rate == 0 {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Paced::new(body, rate, after).boxed_unsync())
}

/// A body handed on at a bounded rate (see the module docs).
pub struct Paced<B> {
    inner: B,
    /// Bytes per second once `free` is used up.
    rate: u64,
    /// Bytes still sent at full speed (`limit-rate-after`).
    free: u64,
    /// Tokens in the bucket, in bytes, as of `filled`.
    tokens: u64,
    filled: Option<Instant>,
    /// The part of the inner body's last data frame not handed on yet.
    pending: Bytes,
    /// Set while waiting for tokens.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> Paced<B> {
    pub fn new(inner: B, rate: u64, after: u64) -> Self {
        Paced {
            inner,
            rate: rate.max(1),
            free: after,
            // The bucket starts empty: paced bytes wait for the rate from the first one on.
            tokens: 0,
            filled: None,
            pending: Bytes::new(),
            sleep: None,
        }
    }

    /// Adds the tokens earned since the last refill, up to the bucket's size.
    fn refill(&mut self, now: Instant) {
        let Some(last) = self.filled else {
            self.filled = Some(now);
            return;
        };
        let earned =
            now.saturating_duration_since(last).as_nanos() * u128::from(self.rate) / 1_000_000_000;
        if earned == 0 {
            return;
        }
        let cap = burst(self.rate);
        self.tokens = (u128::from(self.tokens) + earned).min(u128::from(cap)) as u64;
        if self.tokens == cap {
            self.filled = Some(now);
        } else {
            // Keep the remainder of a token for next time: advance by what was earned.
            let used =
                Duration::from_nanos((earned * 1_000_000_000 / u128::from(self.rate)) as u64);
            self.filled = Some(last + used);
        }
    }

    /// How many of the pending bytes may go now; `Err(wait)` when none may.
    fn allowance(&mut self, now: Instant) -> Result<usize, Duration> {
        let len = self.pending.len() as u64;
        if self.free > 0 {
            return Ok(len.min(self.free) as usize);
        }
        self.refill(now);
        // Waits for a whole piece (the bucket's size or the rest of the frame), not a byte at
        // a time: at most about 8 wake-ups per second at low rates.
        let want = len.min(burst(self.rate));
        if self.tokens >= want {
            return Ok(self.tokens.min(len) as usize);
        }
        let missing = want - self.tokens;
        Err(Duration::from_nanos(
            (u128::from(missing) * 1_000_000_000).div_ceil(u128::from(self.rate)) as u64,
        ))
    }

    fn take(&mut self, n: usize) -> Bytes {
        let n64 = n as u64;
        if self.free > 0 {
            self.free -= n64.min(self.free);
        } else {
            self.tokens -= n64.min(self.tokens);
        }
        self.pending.split_to(n)
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = &mut this.sleep {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            if this.pending.has_remaining() {
                match this.allowance(Instant::now()) {
                    Ok(n) => return Poll::Ready(Some(Ok(Frame::data(this.take(n))))),
                    Err(wait) => {
                        this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                        continue;
                    }
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    // Trailers go as they come.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut h = self.inner.size_hint();
        let extra = self.pending.len() as u64;
        h.set_lower(h.lower() + extra);
        if let Some(u) = h.upper() {
            h.set_upper(u + extra);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    fn body(n: usize) -> ProxyBody {
        Full::new(Bytes::from(vec![7u8; n]))
            .map_err(|e| match e {})
            .boxed_unsync()
    }

    /// 64 KiB at 32 KiB/s after 16 KiB free: the free part at once, the other 48 KiB take
    /// 1.5 s (less at most one bucket, 4 KiB); every byte arrives, none twice.
    #[tokio::test(start_paused = true)]
    async fn free_bytes_at_once_then_the_rate() {
        let mut b = Paced::new(body(64 * 1024), 32 * 1024, 16 * 1024);
        let start = Instant::now();
        let first = b.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), 16 * 1024);
        assert_eq!(start.elapsed(), Duration::ZERO);
        let mut got = first.len();
        while let Some(f) = b.frame().await {
            let d = f.unwrap().into_data().unwrap();
            assert!(d.len() as u64 <= burst(32 * 1024), "piece of {}", d.len());
            got += d.len();
        }
        assert_eq!(got, 64 * 1024);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1375) && took <= Duration::from_millis(1600),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_rate_is_no_limit() {
        let resp = pace(Response::new(body(1 << 20)), 0, 0);
        let start = Instant::now();
        let all = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 1 << 20);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
