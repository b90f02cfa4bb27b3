//! Compressed responses: the ConfigMap's `use-gzip` and `enable-brotli`
//! ([`crate::model::compression`]), as nginx's gzip filter (ngx_http_gzip_filter_module) and
//! ngx_brotli's filter decide them under ingress-nginx's `gzip_proxied any; gzip_vary on;
//! gzip_http_version 1.1`.
//!
//! A response is compressed when all hold:
//! - its status is 200, 403 or 404, it is not the answer to a HEAD, and it has no
//!   `Content-Encoding` of its own;
//! - its `Content-Type` is in the coding's types (and is not gRPC: a gRPC message carries its
//!   own compression flag, and a compressed stream would break every client);
//! - its `Content-Length`, when it has one, is at least the coding's minimum;
//! - the client accepts the coding (`Accept-Encoding`, a `q` of 0 refuses it); for gzip also
//!   the request is HTTP/1.1 or later and its `User-Agent` does not match `gzip-disable`.
//!
//! brotli goes first, as ngx_brotli's filter runs before gzip's. A response that qualifies but
//! for the client's `Accept-Encoding` still gets `Vary: Accept-Encoding` (nginx `gzip_vary`),
//! so a cache keeps the two apart. A compressed response loses `Content-Length` and
//! `Accept-Ranges`, and a strong `ETag` becomes weak (nginx since 1.7.3).
//!
//! The body is encoded as it streams (flate2, brotli): each frame of the pod's is fed to the
//! encoder and whatever the encoder has produced is sent on; the rest at the end. Trailers
//! pass after the last compressed bytes.

use std::{
    io::Write,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version,
    header::{
        ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
        USER_AGENT, VARY,
    },
};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use regex::{Regex, RegexBuilder};

use super::upstream::{BoxError, ProxyBody};
use crate::model::compression::{Codec, Compression, UserAgentMatch};

/// brotli's window, log2 of bytes: ngx_brotli's default `brotli_window 512k`.
const BROTLI_WINDOW_LOG2: u32 = 19;
/// The brotli encoder's internal buffer, bytes.
const BROTLI_BUFFER: usize = 4096;

/// The live compression settings of one snapshot.
pub(crate) struct Compressor {
    gzip: Option<Codec>,
    brotli: Option<Codec>,
    gzip_disable: Option<Disable>,
}

enum Disable {
    Msie6,
    Regex(Regex),
}

/// What a request allows, read before it is forwarded (the request is gone by the time its
/// answer is compressed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    gzip: bool,
    brotli: bool,
    /// A HEAD request: its answer has no body to compress (nginx `header_only`).
    head: bool,
}

/// The content coding chosen for a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Brotli => "br",
        }
    }
}

impl Compressor {
    /// `None` when neither coding is on.
    pub fn new(c: &Compression) -> Option<Compressor> {
        if !c.enabled() {
            return None;
        }
        let gzip_disable = match &c.gzip_disable {
            None => None,
            Some(UserAgentMatch::Msie6) => Some(Disable::Msie6),
            // Checked when the ConfigMap was read; one that fails here disables nothing.
            Some(UserAgentMatch::Regex(r)) => RegexBuilder::new(r)
                .case_insensitive(true)
                .build()
                .ok()
                .map(Disable::Regex),
        };
        Some(Compressor {
            gzip: c.gzip.clone(),
            brotli: c.brotli.clone(),
            gzip_disable,
        })
    }

    /// What `req` accepts.
    pub fn accepted<B>(&self, req: &Request<B>) -> Accepted {
        let h = req.headers();
        let gzip = self.gzip.is_some()
            && req.version() >= Version::HTTP_11
            && accepts(h, "gzip")
            && !self.gzip_disabled_for(h.get(USER_AGENT).map(|v| v.as_bytes()));
        Accepted {
            gzip,
            brotli: self.brotli.is_some() && accepts(h, "br"),
            head: req.method() == Method::HEAD,
        }
    }

    fn gzip_disabled_for(&self, user_agent: Option<&[u8]>) -> bool {
        let Some(ua) = user_agent else { return false };
        match &self.gzip_disable {
            None => false,
            Some(Disable::Msie6) => is_msie6(ua),
            Some(Disable::Regex(r)) => r.is_match(&String::from_utf8_lossy(ua)),
        }
    }

    /// Whether the response qualifies for `Vary: Accept-Encoding`, and the coding it gets.
    #[cfg(test)]
    fn choose(
        &self,
        accepted: Accepted,
        status: StatusCode,
        headers: &HeaderMap,
        body_len: Option<u64>,
    ) -> (bool, Option<Coding>) {
        let (vary, chosen) = self.pick(accepted, status, headers, body_len);
        (vary, chosen.map(|(coding, _)| coding))
    }

    /// [`Compressor::choose`] with the chosen coding's settings.
    fn pick(
        &self,
        accepted: Accepted,
        status: StatusCode,
        headers: &HeaderMap,
        body_len: Option<u64>,
    ) -> (bool, Option<(Coding, &Codec)>) {
        if accepted.head
            || !matches!(status.as_u16(), 200 | 403 | 404)
            || headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| !v.as_bytes().trim_ascii().is_empty())
        {
            return (false, None);
        }
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if content_type.is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/grpc")
        }) {
            return (false, None);
        }
        let length = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .or(body_len);
        let fits =
            |c: &Codec| c.types.matches(content_type) && length.is_none_or(|n| n >= c.min_length);
        let mut vary = false;
        for (codec, coding, wanted) in [
            (&self.brotli, Coding::Brotli, accepted.brotli),
            (&self.gzip, Coding::Gzip, accepted.gzip),
        ] {
            if let Some(codec) = codec.as_ref().filter(|c| fits(c)) {
                vary = true;
                if wanted {
                    return (true, Some((coding, codec)));
                }
            }
        }
        (vary, None)
    }

    /// `resp` compressed as `accepted` allows (see the module docs), else as it was.
    pub fn apply(&self, resp: Response<ProxyBody>, accepted: Accepted) -> Response<ProxyBody> {
        let body_len = resp.body().size_hint().exact();
        let (vary, chosen) = self.pick(accepted, resp.status(), resp.headers(), body_len);
        if !vary {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        parts
            .headers
            .append(VARY, HeaderValue::from_static("accept-encoding"));
        let Some((coding, codec)) = chosen else {
            return Response::from_parts(parts, body);
        };
        let h = &mut parts.headers;
        h.remove(CONTENT_LENGTH);
        h.remove(ACCEPT_RANGES);
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
        if let Some(weak) = h.get(ETAG).and_then(weak_etag) {
            h.insert(ETAG, weak);
        }
        let body = Encoded {
            inner: body,
            encoder: Some(Encoder::new(coding, codec.level)),
            trailers: None,
        };
        Response::from_parts(parts, body.boxed_unsync())
    }
}

/// Whether `Accept-Encoding` (every field line) names `coding` with a `q` above 0 (RFC 9110
/// section 12.5.3; nginx's `ngx_http_gzip_accept_encoding`: no `*`, no `x-gzip`).
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|element| {
            let mut params = element.split(';');
            let token = params.next().unwrap_or("").trim();
            token.eq_ignore_ascii_case(coding)
                && params
                    .filter_map(|p| p.split_once('='))
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                    .all(|(_, q)| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0))
        })
}

/// nginx's `msie6` mask (ngx_http_request.c's User-Agent check): `MSIE 4.`, `MSIE 5.`, or
/// `MSIE 6.` without `SV1` after it (XP SP2's Internet Explorer 6 handles gzip).
fn is_msie6(ua: &[u8]) -> bool {
    let Some(at) = ua.windows(5).position(|w| w == b"MSIE ") else {
        return false;
    };
    let msie = &ua[at..];
    if msie.len() <= 7 || msie[6] != b'.' {
        return false;
    }
    match msie[5] {
        b'4' | b'5' => true,
        b'6' => !msie[8.min(msie.len())..].windows(3).any(|w| w == b"SV1"),
        _ => false,
    }
}

/// A strong entity tag made weak (`"x"` -> `W/"x"`); `None` when it is weak already or not
/// a tag.
fn weak_etag(v: &HeaderValue) -> Option<HeaderValue> {
    let b = v.as_bytes();
    if b.starts_with(b"\"") {
        let mut w = b"W/".to_vec();
        w.extend_from_slice(b);
        HeaderValue::from_bytes(&w).ok()
    } else {
        None
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(coding: Coding, level: u32) -> Encoder {
        match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level),
            )),
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                level,
                BROTLI_WINDOW_LOG2,
            ))),
        }
    }

    /// Feeds `data` and returns what the encoder has produced so far (often nothing: it
    /// emits whole blocks).
    fn feed(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => {
                e.write_all(data)?;
                Ok(std::mem::take(e.get_mut()).into())
            }
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                Ok(std::mem::take(e.get_mut()).into())
            }
        }
    }

    /// Ends the stream and returns the rest.
    fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Encoder::Gzip(e) => Ok(e.finish()?.into()),
            Encoder::Brotli(e) => Ok(e.into_inner().into()),
        }
    }
}

/// A body compressed as it streams.
struct Encoded<B> {
    inner: B,
    /// `None` once the stream is finished.
    encoder: Option<Encoder>,
    /// The pod's trailers, sent after the last compressed bytes.
    trailers: Option<HeaderMap>,
}

impl<B> Body for Encoded<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            let out = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => encoder.feed(&data),
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        this.encoder
                            .take()
                            .map_or(Ok(Bytes::new()), Encoder::finish)
                    }
                },
                Poll::Ready(None) => this
                    .encoder
                    .take()
                    .map_or(Ok(Bytes::new()), Encoder::finish),
            };
            match out {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Err(e) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use http_body_util::Full;

    use super::*;
    use crate::model::compression::{Compression, MimeTypes};

    fn compressor(gzip: bool, brotli: bool) -> Compressor {
        let codec = |min_length| Codec {
            level: 1,
            min_length,
            types: MimeTypes::parse("application/json text/plain", Some("text/html")),
        };
        Compressor::new(&Compression {
            gzip: gzip.then(|| codec(256)),
            brotli: brotli.then(|| codec(20)),
            gzip_disable: Some(UserAgentMatch::Msie6),
        })
        .expect("on")
    }

    fn request(accept: &str, ua: &str) -> Request<()> {
        Request::builder()
            .header(ACCEPT_ENCODING, accept)
            .header(USER_AGENT, ua)
            .body(())
            .expect("request")
    }

    fn headers(ct: &str, len: Option<u64>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).expect("ct"));
        if let Some(n) = len {
            h.insert(CONTENT_LENGTH, n.into());
        }
        h
    }

    #[test]
    fn accept_encoding_tokens_and_q_values() {
        let c = compressor(true, true);
        let a = |accept| c.accepted(&request(accept, "curl"));
        assert!(a("gzip").gzip && !a("gzip").brotli);
        assert!(a("deflate, GZIP;q=0.5, br").brotli && a("deflate, GZIP;q=0.5").gzip);
        assert!(!a("gzip;q=0").gzip && !a("gzip; q=0.0").gzip);
        assert!(!a("x-gzip").gzip && !a("*").gzip && !a("gzipped").gzip);
        assert!(!a("br;q=0, gzip").brotli);
    }

    #[test]
    fn msie6_mask_and_http_1_0_get_no_gzip() {
        let c = compressor(true, true);
        let ua = |ua| c.accepted(&request("gzip, br", ua));
        assert!(!ua("Mozilla/45.0 (compatible; MSIE 6.0; Windows NT 5.1)").gzip);
        assert!(!ua("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)").gzip);
        assert!(ua("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)").gzip);
        assert!(ua("Mozilla/4.8 [en] (Windows NT 5.1; U)").gzip);
        assert!(ua("Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1)").gzip);
        assert!(ua("Mozilla/45.0 (compatible; MSIE 6.0; Windows NT 5.1)").brotli);
        let mut old = request("gzip", "curl");
        *old.version_mut() = Version::HTTP_10;
        assert!(!c.accepted(&old).gzip);
    }

    #[test]
    fn which_answers_are_compressed() {
        let c = compressor(true, true);
        let both = c.accepted(&request("gzip, br", "curl"));
        let gzip = c.accepted(&request("gzip", "curl"));
        let none = c.accepted(&request("identity", "curl"));
        let json = headers("application/json; charset=utf-8", None);
        assert_eq!(
            c.choose(both, StatusCode::OK, &json, None),
            (true, Some(Coding::Brotli))
        );
        assert_eq!(
            c.choose(gzip, StatusCode::OK, &json, None),
            (true, Some(Coding::Gzip))
        );
        assert_eq!(c.choose(none, StatusCode::OK, &json, None), (true, None));
        for s in [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND] {
            assert_eq!(c.choose(gzip, s, &json, None).1, Some(Coding::Gzip), "{s}");
        }
        for s in [
            StatusCode::CREATED,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::NOT_MODIFIED,
        ] {
            assert_eq!(c.choose(gzip, s, &json, None), (false, None), "{s}");
        }
        // Below gzip's minimum, above brotli's: the client that accepts only gzip gets the
        // body as it is, but the answer varies by Accept-Encoding.
        assert_eq!(
            c.choose(
                gzip,
                StatusCode::OK,
                &headers("text/plain", Some(255)),
                None
            ),
            (true, None)
        );
        assert_eq!(
            c.choose(
                gzip,
                StatusCode::OK,
                &headers("text/plain", Some(256)),
                None
            )
            .1,
            Some(Coding::Gzip)
        );
        assert_eq!(
            c.choose(both, StatusCode::OK, &headers("text/plain", Some(20)), None)
                .1,
            Some(Coding::Brotli)
        );
        assert_eq!(
            c.choose(gzip, StatusCode::OK, &headers("text/plain", None), Some(10)),
            (false, None)
        );
        assert_eq!(
            c.choose(gzip, StatusCode::OK, &headers("image/png", None), None),
            (false, None)
        );
        assert_eq!(
            c.choose(gzip, StatusCode::OK, &HeaderMap::new(), None),
            (false, None)
        );
        let mut encoded = json.clone();
        encoded.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            c.choose(both, StatusCode::OK, &encoded, None),
            (false, None)
        );
        let head = Accepted { head: true, ..both };
        assert_eq!(c.choose(head, StatusCode::OK, &json, None), (false, None));
    }

    #[test]
    fn grpc_is_never_compressed() {
        let mut c = compressor(true, false);
        if let Some(g) = c.gzip.as_mut() {
            g.types = MimeTypes::Any;
        }
        let gzip = c.accepted(&request("gzip", "grpc-go"));
        let grpc = headers("application/grpc+proto", None);
        assert_eq!(c.choose(gzip, StatusCode::OK, &grpc, None), (false, None));
        assert_eq!(
            c.choose(gzip, StatusCode::OK, &headers("image/png", None), None)
                .1,
            Some(Coding::Gzip)
        );
    }

    async fn body_of(resp: Response<ProxyBody>) -> Bytes {
        resp.into_body().collect().await.expect("body").to_bytes()
    }

    fn response(text: &'static str) -> Response<ProxyBody> {
        let mut r = Response::new(
            Full::new(Bytes::from_static(text.as_bytes()))
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        r.headers_mut().insert(CONTENT_LENGTH, text.len().into());
        r.headers_mut()
            .insert(ETAG, HeaderValue::from_static("\"v1\""));
        r.headers_mut()
            .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        r
    }

    const PAGE: &str = "<html><body>hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello hello</body></html>";

    #[tokio::test]
    async fn gzip_and_brotli_bodies_decode_to_the_original() {
        let c = compressor(true, true);
        let resp = c.apply(response(PAGE), c.accepted(&request("gzip", "curl")));
        let h = resp.headers().clone();
        assert_eq!(
            h.get(CONTENT_ENCODING).map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert_eq!(
            h.get(VARY).map(|v| v.as_bytes()),
            Some(&b"accept-encoding"[..])
        );
        assert_eq!(h.get(ETAG).map(|v| v.as_bytes()), Some(&b"W/\"v1\""[..]));
        assert!(h.get(CONTENT_LENGTH).is_none() && h.get(ACCEPT_RANGES).is_none());
        let zipped = body_of(resp).await;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_string(&mut text)
            .expect("gzip");
        assert_eq!(text, PAGE);

        let resp = c.apply(response(PAGE), c.accepted(&request("br", "curl")));
        assert_eq!(
            resp.headers().get(CONTENT_ENCODING).map(|v| v.as_bytes()),
            Some(&b"br"[..])
        );
        let compressed = body_of(resp).await;
        let mut text = String::new();
        brotli::Decompressor::new(&compressed[..], 4096)
            .read_to_string(&mut text)
            .expect("br");
        assert_eq!(text, PAGE);

        let resp = c.apply(response(PAGE), c.accepted(&request("identity", "curl")));
        assert_eq!(
            resp.headers().get(CONTENT_LENGTH).map(|v| v.as_bytes()),
            Some(PAGE.len().to_string().as_bytes())
        );
        assert_eq!(body_of(resp).await, PAGE.as_bytes());
    }
}
