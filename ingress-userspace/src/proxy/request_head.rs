//! A request head held to nginx's header buffers (ngx_http_core_module
//! `client_header_buffer_size`, `large_client_header_buffers`; ingress-nginx's ConfigMap
//! `client-header-buffer-size: 1k`, `large-client-header-buffers: "4 8k"`), and to its fields
//! that may appear once. Checked on every request, each one on a kept-alive connection
//! included, before anything reads a header.
//!
//! HTTP/1 (ngx_http_request.c `ngx_http_alloc_large_header_buffer`): the head is read into
//! the client buffer; when a buffer fills before the head ends, the line in progress moves to
//! the start of a new large buffer, at most `large_count` of them. A request line that does
//! not fit one large buffer, or that needs a large buffer when none is left, is 414
//! ("client sent too long URI"); a header line likewise is 400 with nginx's "Request Header
//! Or Cookie Too Large" page (its 494). The lines are measured from the parsed head as
//! `METHOD SP target SP HTTP/1.x CRLF` and `name: value CRLF`, the empty line last: spaces a
//! client adds around a value or in the request line, a bare LF for CRLF and a `#fragment`
//! are not counted, and repeated fields of one name count where their first one was (hyper
//! keeps no other order). Pipelined heads are measured as each starting in a new client
//! buffer (nginx may start one in the previous request's large buffer). A head longer than
//! `--max-header-bytes` is never parsed: hyper answers 431 itself.
//!
//! HTTP/2 (ngx_http_v2.c `ngx_http_v2_state_field_len`): nginx closes the connection
//! (GOAWAY `ENHANCE_YOUR_CALM`) when one name or value, as sent (HPACK Huffman-coded or
//! not), is longer than a large buffer. Here the stream is answered 400 "Request Header Or
//! Cookie Too Large" when a decoded name or value is longer than the most a Huffman-coded
//! string of one buffer decodes to (8/5 of it: every code is at least 5 bits), so nothing
//! nginx takes is refused; the whole list is bounded by hyper's `max_header_list_size`
//! ([`super::limits`]).

use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, Version, header};

use super::request_target::Rejected;
use crate::model::HeadBuffers;

/// Reason of the 414 for a request line past the buffers (nginx's log words).
pub const URI_TOO_LONG: &str = "client sent too long URI";
/// Reason of the 400 for a header line, or a head, past the buffers.
pub const HEADER_TOO_LARGE: &str = "client sent too long header line";
/// Reason of the 400 for a field nginx takes once, sent more than once.
pub const DUPLICATE_HEADER: &str = "client sent duplicate header line";

/// The fields nginx's `ngx_http_headers_in` takes once (`ngx_http_process_unique_header_line`):
/// a second one is 400 and the connection closes, in HTTP/1 and HTTP/2 alike. (`Host`, which
/// nginx takes once too, is [`super::request_target`]'s.)
const UNIQUE: [HeaderName; 11] = [
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::IF_RANGE,
    header::TRANSFER_ENCODING,
    header::EXPECT,
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
];

/// `HTTP/1.x` in a request line.
const VERSION_LEN: u64 = 8;
const CRLF: u64 = 2;

/// Checks a parsed request head: `Err` with the answer nginx gives it (the connection closes
/// after it), else `Ok`.
pub fn check(
    method: &Method,
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
    buffers: &HeadBuffers,
) -> Result<(), Rejected> {
    let fits = match version {
        Version::HTTP_2 | Version::HTTP_3 => h2_fields_fit(uri, headers, buffers),
        _ => h1_head_fits(method, uri, headers, buffers),
    };
    fits?;
    // Only a head with two fields of one name can repeat a unique one.
    if headers.len() != headers.keys_len()
        && UNIQUE
            .iter()
            .any(|n| headers.get_all(n).iter().nth(1).is_some())
    {
        return Err(refused(StatusCode::BAD_REQUEST, DUPLICATE_HEADER));
    }
    Ok(())
}

fn refused(status: StatusCode, reason: &'static str) -> Rejected {
    Rejected { status, reason }
}

/// The bytes of the request target as the client sent it (origin-, absolute-, authority- or
/// asterisk-form).
fn target_len(uri: &Uri) -> u64 {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    (scheme + authority + path) as u64
}

fn h1_head_fits(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    buffers: &HeadBuffers,
) -> Result<(), Rejected> {
    let mut read = Buffers::new(buffers);
    let request_line = method.as_str().len() as u64 + 1 + target_len(uri) + 1 + VERSION_LEN + CRLF;
    if !read.take(request_line) {
        return Err(refused(StatusCode::URI_TOO_LONG, URI_TOO_LONG));
    }
    for (name, value) in headers {
        let line = (name.as_str().len() + ": ".len() + value.len()) as u64 + CRLF;
        if !read.take(line) {
            return Err(refused(StatusCode::BAD_REQUEST, HEADER_TOO_LARGE));
        }
    }
    if !read.take(CRLF) {
        return Err(refused(StatusCode::BAD_REQUEST, HEADER_TOO_LARGE));
    }
    Ok(())
}

fn h2_fields_fit(uri: &Uri, headers: &HeaderMap, buffers: &HeadBuffers) -> Result<(), Rejected> {
    let longest = buffers.large_size.saturating_mul(8) / 5;
    let too_long = |n: usize| n as u64 > longest;
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    if too_long(path)
        || too_long(authority)
        || headers
            .iter()
            .any(|(n, v)| too_long(n.as_str().len()) || too_long(v.len()))
    {
        return Err(refused(StatusCode::BAD_REQUEST, HEADER_TOO_LARGE));
    }
    Ok(())
}

/// nginx's reading of one head into its buffers, line by line.
struct Buffers<'a> {
    sizes: &'a HeadBuffers,
    /// Offset in the head where the current buffer starts, and its size.
    start: u64,
    size: u64,
    /// Large buffers taken.
    large: u64,
    /// Offset in the head where the next line starts.
    at: u64,
}

impl<'a> Buffers<'a> {
    fn new(sizes: &'a HeadBuffers) -> Self {
        Buffers {
            sizes,
            start: 0,
            size: sizes.client,
            large: 0,
            at: 0,
        }
    }

    /// Reads a line of `len` bytes (its line end included): `false` where nginx gives up.
    fn take(&mut self, len: u64) -> bool {
        let end = self.at.saturating_add(len);
        while end > self.start.saturating_add(self.size) {
            // The buffer is full with this much of the line in it (0: it ended at a line's
            // end, and nothing moves).
            let partial = self.start.saturating_add(self.size) - self.at;
            if partial >= self.sizes.large_size || self.large >= self.sizes.large_count {
                return false;
            }
            self.large += 1;
            self.start = self.at;
            self.size = self.sizes.large_size;
        }
        self.at = end;
        true
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const DEFAULT: HeadBuffers = HeadBuffers {
        client: 1024,
        large_count: 4,
        large_size: 8192,
    };

    /// A head of `GET {target} HTTP/1.1` and `x-{i}: {value}` fields of the given lengths.
    fn h1(target_len: usize, fields: &[usize], b: &HeadBuffers) -> Result<(), Rejected> {
        let target = format!("/{}", "a".repeat(target_len - 1));
        let uri: Uri = target.parse().unwrap();
        let mut h = HeaderMap::new();
        for (i, n) in fields.iter().enumerate() {
            let name = HeaderName::from_bytes(format!("x-{i:02}").as_bytes()).unwrap();
            h.append(name, HeaderValue::from_str(&"v".repeat(*n)).unwrap());
        }
        check(&Method::GET, Version::HTTP_11, &uri, &h, b)
    }

    fn status(r: Result<(), Rejected>) -> u16 {
        r.map_or_else(|e| e.status.as_u16(), |()| 200)
    }

    #[test]
    fn a_request_line_fits_one_large_buffer() {
        // `GET ` + target + ` HTTP/1.1\r\n`: 15 bytes around the target.
        assert_eq!(status(h1(8192 - 15, &[], &DEFAULT)), 200);
        assert_eq!(status(h1(8192 - 14, &[], &DEFAULT)), 414);
        let r = h1(20_000, &[], &DEFAULT).unwrap_err();
        assert_eq!((r.reason, r.close()), (URI_TOO_LONG, true));
        // Within the client buffer, no large one is needed.
        let small = HeadBuffers {
            client: 4096,
            large_count: 1,
            large_size: 1024,
        };
        assert_eq!(status(h1(3000, &[], &small)), 200);
        assert_eq!(status(h1(5000, &[], &small)), 414);
    }

    #[test]
    fn a_header_line_fits_one_large_buffer() {
        // `x-00: ` + value + CRLF: 8 bytes around the value.
        assert_eq!(status(h1(1, &[8192 - 8], &DEFAULT)), 200);
        let r = h1(1, &[8192 - 7], &DEFAULT).unwrap_err();
        assert_eq!(
            (r.status, r.reason, r.close()),
            (StatusCode::BAD_REQUEST, HEADER_TOO_LARGE, true)
        );
    }

    #[test]
    fn a_head_fits_the_client_buffer_and_the_large_ones() {
        // Lines of a whole large buffer each after a request line in the client buffer: the
        // fourth fills the last buffer, and the empty line ending the head needs a fifth.
        assert_eq!(status(h1(1, &[8184, 8184, 8184, 8000], &DEFAULT)), 200);
        assert_eq!(status(h1(1, &[8184; 4], &DEFAULT)), 400);
        assert_eq!(status(h1(1, &[8184; 5], &DEFAULT)), 400);
        // Lines of 5000 bytes: each buffer holds one whole, the next moves: 4 of them fit,
        // 5 (25 KB, under the 33 KB of buffers) do not.
        assert_eq!(status(h1(1, &[4992; 4], &DEFAULT)), 200);
        assert_eq!(status(h1(1, &[4992; 5], &DEFAULT)), 400);
        // Many short lines fill the buffers end to end: 33 KB of 100-byte lines, less the
        // bytes a moved line leaves at each buffer's end.
        assert_eq!(status(h1(1, &[92; 320], &DEFAULT)), 200);
        assert_eq!(status(h1(1, &[92; 340], &DEFAULT)), 400);
    }

    #[test]
    fn the_request_line_takes_a_large_buffer_like_any_line() {
        let one = HeadBuffers {
            client: 1024,
            large_count: 1,
            large_size: 8192,
        };
        // The request line moves to the only large buffer; a header that does not fit
        // behind it has no buffer left.
        assert_eq!(status(h1(2000, &[100], &one)), 200);
        assert_eq!(status(h1(2000, &[7000], &one)), 400);
        // A request line that fills the client buffer needs the only large buffer.
        assert_eq!(status(h1(1100, &[], &one)), 200);
    }

    #[test]
    fn h2_fields_longer_than_a_huffman_coded_buffer_are_refused() {
        let uri: Uri = "https://a.test/".parse().unwrap();
        let field = |n: usize| {
            let mut h = HeaderMap::new();
            h.insert("cookie", HeaderValue::from_str(&"c".repeat(n)).unwrap());
            h
        };
        let at = |n| {
            status(check(
                &Method::GET,
                Version::HTTP_2,
                &uri,
                &field(n),
                &DEFAULT,
            ))
        };
        assert_eq!(at(8192 * 8 / 5), 200);
        assert_eq!(at(8192 * 8 / 5 + 1), 400);
        let long: Uri = format!("https://a.test/{}", "p".repeat(14_000))
            .parse()
            .unwrap();
        assert_eq!(
            status(check(
                &Method::GET,
                Version::HTTP_2,
                &long,
                &HeaderMap::new(),
                &DEFAULT
            )),
            400
        );
    }

    #[test]
    fn a_field_nginx_takes_once_is_refused_twice() {
        let uri: Uri = "/".parse().unwrap();
        let with = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            check(&Method::POST, Version::HTTP_11, &uri, &h, &DEFAULT)
        };
        for name in ["content-length", "authorization", "if-none-match", "expect"] {
            let r = with(&[(name, "1"), ("x", "y"), (name, "1")]).unwrap_err();
            assert_eq!(
                (r.status, r.reason, r.close()),
                (StatusCode::BAD_REQUEST, DUPLICATE_HEADER, true),
                "{name}"
            );
        }
        // Other fields may repeat.
        assert!(with(&[("cookie", "a=1"), ("cookie", "b=2"), ("accept", "*/*")]).is_ok());
        assert!(with(&[("content-length", "1"), ("host", "a")]).is_ok());
    }
}
