//! HTTPRoute `timeouts.request` over the whole answer: the spec's request timeout runs "from
//! when the request starts being sent from the client to the gateway to when the full
//! response has been received from the backend". The proxy answers 504 while the response
//! head is awaited (`forward`); once the head has gone to the client, a body still unfinished
//! at the deadline is cut: [`Bounded`] ends it with [`Expired`], which hyper turns into a
//! closed HTTP/1 connection or an HTTP/2 `RST_STREAM` (the client sees a truncated answer,
//! never a complete-looking one), and the access log line names the reason.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::upstream::{BoxError, ProxyBody};

/// The body error of a response cut at its route's request deadline.
#[derive(Debug, thiserror::Error)]
#[error("HTTPRoute timeouts.request expired during the response body")]
pub struct Expired;

/// A response body that ends with [`Expired`] at `deadline` unless it ended before.
pub struct Bounded {
    inner: ProxyBody,
    deadline: Pin<Box<Sleep>>,
    /// Set once [`Expired`] was returned: nothing follows it.
    cut: bool,
}

impl Bounded {
    pub fn new(inner: ProxyBody, deadline: Instant) -> Self {
        Bounded {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            cut: false,
        }
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.cut {
            return Poll::Ready(None);
        }
        // The deadline first: a body that keeps flowing past it is cut as a stalled one is.
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.cut = true;
            tracing::warn!("{Expired}: response cut");
            return Poll::Ready(Some(Err(Box::new(Expired))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn stalled_after(first: &'static [u8]) -> ProxyBody {
        use futures::StreamExt;
        let frames =
            futures::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(first)))])
                .chain(futures::stream::pending());
        StreamBody::new(frames).boxed_unsync()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_with_expired_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut b = Bounded::new(stalled_after(b"head"), deadline);
        let first = b.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "head");
        let err = b.frame().await.unwrap().unwrap_err();
        assert!(err.is::<Expired>(), "{err}");
        assert!(Instant::now() >= deadline);
        assert!(b.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_in_time_is_untouched() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let whole = Full::new(Bytes::from_static(b"all")).map_err(|e| match e {});
        let b = Bounded::new(whole.boxed_unsync(), deadline);
        let got = b.collect().await.unwrap().to_bytes();
        assert_eq!(got, "all");
    }
}
