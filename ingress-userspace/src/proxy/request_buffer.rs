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

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderMap;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Body, Frame};

use super::upstream::ProxyBody;

/// What reading a request body ahead of the attempt gave.
pub enum Buffered {
    /// The whole body and its trailers, if it had any: sent again to another endpoint if an
    /// attempt fails.
    Whole(Whole),
    /// Over `cap`: the bytes read so far, then the rest of the client's stream.
    Streaming(ProxyBody),
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

/// Reads `body` to its end, holding at most `cap` bytes (see the module docs).
pub async fn read(mut body: ProxyBody, cap: u64) -> Buffered {
    if body.size_hint().lower() > cap {
        return Buffered::Streaming(body);
    }
    let mut read: Vec<Bytes> = Vec::new();
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
                len = len.saturating_add(data.len() as u64);
                read.push(data);
                if len > cap {
                    return Buffered::Streaming(prefixed(read, body));
                }
            }
        }
    }
    let data = match read.len() {
        1 => read.swap_remove(0),
        _ => {
            let mut all = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
            for d in &read {
                all.extend_from_slice(d);
            }
            all.freeze()
        }
    };
    Buffered::Whole(Whole { data, trailers })
}

/// `head`, then the rest of `rest`.
fn prefixed(head: Vec<Bytes>, rest: ProxyBody) -> ProxyBody {
    let head = futures::stream::iter(head.into_iter().map(|d| Ok(Frame::data(d))));
    StreamBody::new(head.chain(BodyStream::new(rest))).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::BoxError;

    fn chunks(parts: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole() {
        let Buffered::Whole(b) = read(chunks(&[b"ab", b"cd", b"e"]), 5).await else {
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
        let Buffered::Whole(b) = read(body, 5).await else {
            panic!("whole");
        };
        let got = b.body().collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(&got.to_bytes()[..], b"ab");
    }

    #[tokio::test]
    async fn a_body_past_the_cap_streams_with_nothing_lost() {
        let Buffered::Streaming(b) = read(chunks(&[b"ab", b"cd", b"ef"]), 3).await else {
            panic!("streaming");
        };
        assert_eq!(&b.collect().await.unwrap().to_bytes()[..], b"abcdef");
        // Declared larger than the cap: not read at all.
        let full = Full::new(Bytes::from_static(b"abcdef"))
            .map_err(|e| match e {})
            .boxed_unsync();
        let Buffered::Streaming(b) = read(full, 3).await else {
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
        assert!(matches!(read(body, 10).await, Buffered::Failed));
    }
}
