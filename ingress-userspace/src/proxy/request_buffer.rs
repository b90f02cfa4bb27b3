//! Request buffering: ingress-nginx's `proxy-request-buffering: on` (its default; nginx
//! `proxy_request_buffering`). The client's body is read to its end before an endpoint is
//! chosen or contacted, so a slow upload occupies the proxy, not a pod, and the pod gets the
//! request at once with a `Content-Length` (a chunked or HTTP/2 body loses its framing, as
//! nginx sends a buffered body). A body that ended with trailers keeps them: it goes chunked,
//! the only HTTP/1.1 framing that carries them (nginx drops request trailers).
//!
//! The body is held in memory, at most `cap` bytes (`--request-buffer-bytes`); nginx keeps
//! `client_body_buffer_size` in memory and spills the rest to a temporary file. Here a body
//! declared larger than `cap`, or one that grows past it, is [`Buffered::Streaming`]: what was
//! read goes first, the rest streams as it arrives. The body limit (`proxy-body-size`, 413) and
//! the client body timeout (408) are the [`super::client_body::ClientBody`]'s, which the body
//! read here already is.
//!
//! Held bytes are counted against two [`Budget`]s, the proxy's (`--request-buffer-total-bytes`)
//! and the connection's ([`PER_CONNECTION_REQUESTS`] bodies of `cap`: an HTTP/2 connection's
//! streams share it), so many stalled uploads cannot take the pod's memory. A body that cannot
//! get budget streams from there on as a body past `cap` does: the pod is contacted at once and
//! waits for the rest, an attempt that failed after the pod read some of it is not retried
//! (nginx would resend it from its temporary file), and the body limit still ends it (413 when
//! no byte of the answer was sent). The budget is given back by [`Held`]'s `Drop`: when the
//! request ends or is dropped, or, for a streamed body, once the bytes read ahead are sent.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::Poll,
};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderMap;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Body, Frame};
use prometheus_client::metrics::gauge::Gauge;

use super::upstream::{BoxError, ProxyBody};

/// Bodies of `--request-buffer-bytes` one connection may hold at once.
pub const PER_CONNECTION_REQUESTS: u64 = 4;

/// A bound on request-body bytes held in memory, shared by the requests it covers.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
    /// Follows `used` (`xdp_ingress_request_buffer_bytes`).
    gauge: Option<Gauge>,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Budget> {
        Self::with_gauge(limit, None)
    }

    /// A budget of `limit` bytes whose use `gauge` shows.
    pub fn metered(limit: u64, gauge: Gauge) -> Arc<Budget> {
        Self::with_gauge(limit, Some(gauge))
    }

    fn with_gauge(limit: u64, gauge: Option<Gauge>) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicU64::new(0),
            gauge,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: u64) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok();
        if taken && let Some(g) = &self.gauge {
            g.inc_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
        taken
    }

    fn give(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::AcqRel);
        if let Some(g) = &self.gauge {
            g.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// The budget that had no room for a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Short {
    /// `--request-buffer-total-bytes`.
    Proxy,
    /// The connection's share.
    Connection,
}

impl Short {
    /// Label value of `xdp_ingress_unbuffered_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Short::Proxy => "proxy",
            Short::Connection => "connection",
        }
    }
}

/// The bytes one request body holds of the proxy's and its connection's budgets, given back
/// when dropped.
#[derive(Debug)]
pub struct Held {
    proxy: Arc<Budget>,
    conn: Arc<Budget>,
    bytes: u64,
}

impl Held {
    /// Nothing held yet, of these budgets.
    pub fn new(proxy: Arc<Budget>, conn: Arc<Budget>) -> Held {
        Held {
            proxy,
            conn,
            bytes: 0,
        }
    }

    /// Holds `total` bytes in all (never fewer than already held), or says which budget has
    /// no room for the difference (and then holds no more than before).
    fn hold(&mut self, total: u64) -> Result<(), Short> {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        if !self.conn.take(more) {
            return Err(Short::Connection);
        }
        if !self.proxy.take(more) {
            self.conn.give(more);
            return Err(Short::Proxy);
        }
        self.bytes = total;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.conn.give(self.bytes);
        self.proxy.give(self.bytes);
    }
}

/// What reading a request body ahead of the attempt gave.
pub enum Buffered {
    /// The whole body and its trailers, if it had any: sent again to another endpoint if an
    /// attempt fails. The `Held` budget goes with it.
    Whole(Whole, Held),
    /// Over `cap`, or, with `Some`, over a budget: the bytes read so far, then the rest of the
    /// client's stream.
    Streaming(ProxyBody, Option<Short>),
    /// The client's body failed; the fault is in its `BodyWatch`.
    Failed,
}

/// A request body read to its end.
#[derive(Clone, Debug)]
pub struct Whole {
    pub data: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Whole {
    /// A body that sends it (size hint exact when there are no trailers).
    pub fn body(&self) -> ProxyBody {
        match &self.trailers {
            None => Full::new(self.data.clone())
                .map_err(|e| match e {})
                .boxed_unsync(),
            Some(t) => {
                let mut frames = Vec::with_capacity(2);
                if !self.data.is_empty() {
                    frames.push(Ok(Frame::data(self.data.clone())));
                }
                frames.push(Ok(Frame::trailers(t.clone())));
                StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
            }
        }
    }
}

/// Reads `body` to its end, holding at most `cap` bytes within `held`'s budgets (see the
/// module docs). The bytes are copied into one buffer as they come: a frame can be a slice of
/// a larger read buffer, which holding it would keep alive uncounted.
pub async fn read(mut body: ProxyBody, cap: u64, mut held: Held) -> Buffered {
    let declared = body.size_hint().lower();
    if declared > cap {
        return Buffered::Streaming(body, None);
    }
    // A declared length is held at once: a body that cannot fit is not read at all.
    if let Err(short) = held.hold(declared) {
        return Buffered::Streaming(body, Some(short));
    }
    // The first frame alone is kept as it came: most bodies are one frame, not copied.
    let mut first: Option<Bytes> = None;
    let mut all = BytesMut::new();
    let mut len: u64 = 0;
    let mut trailers = None;
    loop {
        match body.frame().await {
            None => break,
            Some(Err(_)) => return Buffered::Failed,
            Some(Ok(frame)) => {
                let data = match frame.into_data() {
                    Ok(d) => d,
                    Err(frame) => {
                        // Trailers end the body.
                        if let Ok(t) = frame.into_trailers() {
                            trailers.get_or_insert_with(HeaderMap::new).extend(t);
                        }
                        continue;
                    }
                };
                if data.is_empty() {
                    continue;
                }
                len = len.saturating_add(data.len() as u64);
                let over = if len > cap {
                    Some(None)
                } else {
                    held.hold(len).err().map(Some)
                };
                if let Some(short) = over {
                    // What was read, then this frame as it came (frames keep their bounds).
                    let read = first.take().unwrap_or_else(|| all.split().freeze());
                    let head = [read, data].into_iter().filter(|d| !d.is_empty());
                    return Buffered::Streaming(prefixed(head.collect(), body, held), short);
                }
                match first.take() {
                    None if all.is_empty() => first = Some(data),
                    f => {
                        if let Some(f) = f {
                            all.reserve(usize::try_from(declared.max(len)).unwrap_or(0));
                            all.extend_from_slice(&f);
                        }
                        all.extend_from_slice(&data);
                    }
                }
            }
        }
    }
    let data = first.unwrap_or_else(|| all.freeze());
    Buffered::Whole(Whole { data, trailers }, held)
}

/// `head`, then the rest of `rest`; `held` (the budget of `head`) is given back once `head`
/// is sent.
fn prefixed(head: Vec<Bytes>, rest: ProxyBody, held: Held) -> ProxyBody {
    let mut held = Some(held);
    let head = futures::stream::iter(head.into_iter().map(|d| Ok::<_, BoxError>(Frame::data(d))));
    let release = futures::stream::poll_fn(move |_| {
        held.take();
        Poll::<Option<Result<Frame<Bytes>, BoxError>>>::Ready(None)
    });
    StreamBody::new(head.chain(release).chain(BodyStream::new(rest))).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    fn roomy() -> Held {
        Held::new(Budget::new(u64::MAX), Budget::new(u64::MAX))
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let Buffered::Whole(b, _) = read(chunks(&[b"ab", b"cd", b"e"]), 5, roomy()).await else {
            panic!("whole");
        };
        assert_eq!(&b.data[..], b"abcde");
        assert!(b.trailers.is_none());
        assert_eq!(b.body().size_hint().exact(), Some(5));
    }

    #[tokio::test]
    async fn trailers_are_kept() {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", "abc".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::trailers(t)),
        ];
        let body = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        let Buffered::Whole(b, _) = read(body, 5, roomy()).await else {
            panic!("whole");
        };
        let got = b.body().collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(&got.to_bytes()[..], b"ab");
    }

    #[tokio::test]
    async fn a_body_past_the_cap_streams_with_nothing_lost() {
        let Buffered::Streaming(b, None) = read(chunks(&[b"ab", b"cd", b"ef"]), 3, roomy()).await
        else {
            panic!("streaming");
        };
        assert_eq!(&b.collect().await.unwrap().to_bytes()[..], b"abcdef");
        // Declared larger than the cap: not read at all.
        let full = Full::new(Bytes::from_static(b"abcdef"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let Buffered::Streaming(b, None) = read(full, 3, roomy()).await else {
            panic!("streaming");
        };
        assert_eq!(b.size_hint().exact(), Some(6), "untouched");
    }

    #[tokio::test]
    async fn a_failed_body_is_failed() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err("reset".into()),
        ];
        let body = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        assert!(matches!(read(body, 10, roomy()).await, Buffered::Failed));
    }

    #[tokio::test]
    async fn the_budget_is_held_while_the_body_is_and_given_back_after() {
        let proxy = Budget::new(8);
        let conn = Budget::new(100);
        let held = Held::new(Arc::clone(&proxy), Arc::clone(&conn));
        let Buffered::Whole(b, held) = read(chunks(&[b"ab", b"cd"]), 10, held).await else {
            panic!("whole");
        };
        assert_eq!(&b.data[..], b"abcd");
        assert_eq!((proxy.used(), conn.used()), (4, 4));
        // A second body gets the 4 bytes left, not the 6 it needs: it streams, nothing lost.
        let second = Held::new(Arc::clone(&proxy), Arc::clone(&conn));
        let Buffered::Streaming(s, Some(Short::Proxy)) =
            read(chunks(&[b"abc", b"def"]), 10, second).await
        else {
            panic!("streaming for want of budget");
        };
        assert_eq!(
            proxy.used(),
            7,
            "the 3 bytes read ahead, until they are sent"
        );
        assert_eq!(&s.collect().await.unwrap().to_bytes()[..], b"abcdef");
        assert_eq!(proxy.used(), 4, "given back once sent");
        drop(held);
        assert_eq!((proxy.used(), conn.used()), (0, 0));
    }

    #[tokio::test]
    async fn a_declared_length_without_room_is_not_read_and_the_connection_share_counts() {
        let proxy = Budget::new(100);
        let conn = Budget::new(5);
        let full = Full::new(Bytes::from_static(b"abcdef"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let held = Held::new(Arc::clone(&proxy), Arc::clone(&conn));
        let Buffered::Streaming(b, Some(Short::Connection)) = read(full, 10, held).await else {
            panic!("streaming");
        };
        assert_eq!(b.size_hint().exact(), Some(6), "untouched");
        assert_eq!((proxy.used(), conn.used()), (0, 0));
        // A dropped request gives its budget back.
        let held = Held::new(Arc::clone(&proxy), Arc::clone(&conn));
        let pending = read(chunks(&[b"abc"]), 10, held);
        drop(pending);
        assert_eq!((proxy.used(), conn.used()), (0, 0));
    }
}
