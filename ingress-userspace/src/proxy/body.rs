//! Bodies in flight through the proxy:
//! - [`BodySlot`]: a request body that can move to another attempt as long as nothing has read
//!   from it: a connect failure (or a failure before the upstream asked for the body) leaves
//!   it untouched, so even a POST with a body can go to another endpoint without being
//!   buffered. A body read whole beforehand (request buffering, [`super::request_buffer`])
//!   goes to every attempt.
//! - [`HoldUntilEnd`]: a response body that keeps a guard (the endpoint's in-flight count)
//!   until the body has ended or was dropped.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::{
    request_buffer::Whole,
    upstream::{BoxError, ProxyBody},
};

/// Owns the client's body until an attempt starts reading it.
pub struct BodySlot {
    slot: Arc<Mutex<Option<ProxyBody>>>,
    hint: SizeHint,
    end: bool,
    /// The whole body, read before the first attempt: every attempt sends a copy.
    whole: Option<Whole>,
}

impl BodySlot {
    pub fn new(body: ProxyBody) -> Self {
        BodySlot {
            hint: body.size_hint(),
            end: body.is_end_stream(),
            slot: Arc::new(Mutex::new(Some(body))),
            whole: None,
        }
    }

    /// A body already read whole: any number of attempts can send it.
    pub fn whole(body: Whole) -> Self {
        let b = body.body();
        BodySlot {
            hint: b.size_hint(),
            end: b.is_end_stream(),
            slot: Arc::new(Mutex::new(None)),
            whole: Some(body),
        }
    }

    /// Takes the streaming body out before any attempt (to read it ahead); `None` once an
    /// attempt has read from it, or for a body already whole.
    pub fn take(&mut self) -> Option<ProxyBody> {
        self.slot.lock().ok().and_then(|mut s| s.take())
    }

    /// A body for the next attempt, unless an earlier attempt already read from it.
    pub fn attempt(&self) -> Option<ProxyBody> {
        if let Some(b) = &self.whole {
            return Some(b.body());
        }
        self.untouched().then(|| {
            HeldBody {
                slot: Arc::clone(&self.slot),
                active: None,
                hint: self.hint,
                end: self.end,
            }
            .boxed_unsync()
        })
    }

    /// Whether an attempt can still send the whole body: no attempt has read from it yet,
    /// or it was read whole beforehand.
    pub fn untouched(&self) -> bool {
        self.whole.is_some() || self.slot.lock().map(|s| s.is_some()).unwrap_or(false)
    }
}

/// The body of one attempt: takes the client's body on first read.
pub struct HeldBody {
    slot: Arc<Mutex<Option<ProxyBody>>>,
    active: Option<ProxyBody>,
    hint: SizeHint,
    end: bool,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.active.is_none() {
            let taken = self.slot.lock().ok().and_then(|mut s| s.take());
            match taken {
                Some(b) => self.active = Some(b),
                None => return Poll::Ready(Some(Err("request body already consumed".into()))),
            }
        }
        match self.active.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.active {
            Some(b) => b.is_end_stream(),
            None => self.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.active {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}

/// A body that keeps `guard` alive until it has ended (or is dropped unfinished, when the
/// client goes away): a request is in flight to its endpoint until its response is through.
pub struct HoldUntilEnd<B, G> {
    body: B,
    guard: Option<G>,
}

impl<B: Body, G> HoldUntilEnd<B, G> {
    pub fn new(body: B, guard: G) -> Self {
        let guard = (!body.is_end_stream()).then_some(guard);
        HoldUntilEnd { body, guard }
    }
}

impl<B, G> Body for HoldUntilEnd<B, G>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
    G: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.body.is_end_stream() {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    #[tokio::test]
    async fn body_moves_to_the_next_attempt_until_read() {
        let body = Full::new(Bytes::from_static(b"payload"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let slot = BodySlot::new(body);
        let first = slot.attempt().unwrap();
        assert_eq!(first.size_hint().exact(), Some(7));
        drop(first); // connect failed: never read
        assert!(slot.untouched());
        let second = slot.attempt().unwrap();
        let bytes = second.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"payload");
        assert!(!slot.untouched());
        assert!(slot.attempt().is_none());
    }

    #[tokio::test]
    async fn a_whole_body_goes_to_every_attempt() {
        let slot = BodySlot::whole(Whole {
            data: Bytes::from_static(b"payload"),
            trailers: None,
        });
        for _ in 0..2 {
            let b = slot.attempt().unwrap();
            assert_eq!(b.size_hint().exact(), Some(7));
            assert_eq!(&b.collect().await.unwrap().to_bytes()[..], b"payload");
            assert!(slot.untouched());
        }
    }

    #[tokio::test]
    async fn guard_held_until_the_body_ends() {
        let held = Arc::new(());
        let body = Full::new(Bytes::from_static(b"response"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let mut body = HoldUntilEnd::new(body, Arc::clone(&held));
        assert_eq!(Arc::strong_count(&held), 2);
        while body.frame().await.is_some() {}
        assert_eq!(Arc::strong_count(&held), 1, "released at the end");
        let body = http_body_util::Empty::<Bytes>::new()
            .map_err(|e| match e {})
            .boxed_unsync();
        drop(HoldUntilEnd::new(body, Arc::clone(&held)));
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
