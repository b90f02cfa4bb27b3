//! Gateway API `RequestMirror` (HTTPRequestMirrorFilter): copies of a request's body for
//! mirror backends, never holding the request itself back. The request's body is passed
//! through [`Tee`], which hands each frame to every copy without waiting; a copy that falls
//! [`BACKLOG`] frames behind is given up (its body ends in an error, so the mirror backend
//! sees an aborted request, not a short one).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Frames a copy may lag behind the request before it is given up.
pub const BACKLOG: usize = 64;

/// What a copy receives: a frame, or the end of a complete body.
enum Piece {
    Frame(Frame<Bytes>),
    End,
}

/// The request's body, also feeding the copies.
pub struct Tee<B> {
    inner: B,
    copies: Vec<mpsc::Sender<Piece>>,
}

impl<B: Body> Tee<B> {
    pub fn new(inner: B) -> Self {
        Tee {
            inner,
            copies: Vec::new(),
        }
    }

    /// A new copy of the body from here on (call before the body is read). A body already
    /// at its end (a GET's, which nobody polls) gives an empty copy at once.
    pub fn copy(&mut self) -> Copy {
        let (tx, rx) = mpsc::channel(BACKLOG);
        if self.inner.is_end_stream() {
            let _ = tx.try_send(Piece::End);
            return Copy {
                rx,
                hint: None,
                ended: true,
            };
        }
        self.copies.push(tx);
        Copy {
            rx,
            hint: None,
            ended: false,
        }
    }
}

impl<B> Tee<B> {
    fn feed(&mut self, piece: impl Fn() -> Piece) {
        // A full or closed copy is dropped: its receiver then sees the channel close early.
        self.copies.retain(|tx| tx.try_send(piece()).is_ok());
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if !self.copies.is_empty() => {
                self.feed(|| Piece::Frame(clone_frame(frame)));
            }
            Poll::Ready(None) => {
                self.feed(|| Piece::End);
                self.copies.clear();
            }
            // An aborted request aborts the copies (their senders go).
            Poll::Ready(Some(Err(_))) => self.copies.clear(),
            _ => {}
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

fn clone_frame(f: &Frame<Bytes>) -> Frame<Bytes> {
    match (f.data_ref(), f.trailers_ref()) {
        (Some(d), _) => Frame::data(d.clone()),
        (None, Some(t)) => Frame::trailers(t.clone()),
        // HTTP bodies carry only data and trailers frames.
        _ => Frame::data(Bytes::new()),
    }
}

/// One copy of a request's body, as sent to a mirror backend.
pub struct Copy {
    rx: mpsc::Receiver<Piece>,
    hint: Option<SizeHint>,
    /// Empty from the start.
    ended: bool,
}

impl Copy {
    /// The original's size hint (a `Content-Length` body stays one).
    pub fn with_hint(mut self, hint: SizeHint) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// The copy was given up (it lagged, or the request was aborted).
#[derive(Debug, thiserror::Error)]
#[error("request mirror copy abandoned")]
pub struct Abandoned;

impl Body for Copy {
    type Data = Bytes;
    type Error = Abandoned;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Abandoned>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Piece::Frame(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(Some(Piece::End)) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err(Abandoned))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.hint, self.ended) {
            (_, true) => SizeHint::with_exact(0),
            (Some(h), false) => *h,
            (None, false) => SizeHint::default(),
        }
    }
}

/// Whether this request is copied, for a share of `numerator / denominator`.
pub fn sampled(numerator: u32, denominator: u32) -> bool {
    numerator >= denominator || (numerator > 0 && rand::random_range(0..denominator) < numerator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn copies_get_every_frame_and_the_end() {
        let mut tee = Tee::new(Full::new(Bytes::from_static(b"hello")));
        let (a, b) = (tee.copy(), tee.copy());
        let main = tee.collect().await.unwrap().to_bytes();
        assert_eq!(&main[..], b"hello");
        for c in [a, b] {
            assert_eq!(&c.collect().await.unwrap().to_bytes()[..], b"hello");
        }
    }

    /// A body that has ended before anyone reads it (a GET's) gives an ended copy.
    #[tokio::test]
    async fn an_empty_body_gives_an_ended_copy() {
        let mut tee = Tee::new(http_body_util::Empty::<Bytes>::new());
        let c = tee.copy();
        assert!(c.is_end_stream());
        assert!(c.collect().await.unwrap().to_bytes().is_empty());
    }

    /// A copy nobody reads never holds the request back: past the backlog it is given up,
    /// and its reader then sees an error, not a short body.
    #[tokio::test]
    async fn a_lagging_copy_is_abandoned_not_waited_for() {
        let frames = (0..BACKLOG + 10)
            .map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))));
        let mut tee = Tee::new(StreamBody::new(futures::stream::iter(frames)));
        let lagging = tee.copy();
        let main = tee.collect().await.unwrap().to_bytes();
        assert_eq!(main.len(), BACKLOG + 10);
        assert!(lagging.collect().await.is_err());
    }

    #[test]
    fn shares() {
        assert!(sampled(100, 100));
        assert!(!sampled(0, 100));
        let n = (0..10_000).filter(|_| sampled(1, 2)).count();
        assert!((4_000..6_000).contains(&n), "{n}");
    }
}
