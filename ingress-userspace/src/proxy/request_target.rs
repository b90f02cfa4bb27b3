//! The request front: from what the client sent (method, version, request target, `Host`,
//! HTTP/2 `:authority`) to the one host and normalised path that routing, the allowlist,
//! redirects and the backend all use — or the status the proxy answers instead.
//!
//! - CONNECT (HTTP/1.1 and HTTP/2) is 405: the proxy is no tunnel (RFC 9110 §9.3.6); in
//!   HTTP/1 its usual authority-form target (`CONNECT host:443`) is 400 first, as nginx's
//!   request-line parser refuses it. TRACE is 405 too, as nginx answers it in every version: a
//!   pod that echoes the request would hand a script the cookies and credentials it cannot
//!   read (cross-site tracing). Every refusal here closes an HTTP/1 connection, as nginx's
//!   ([`Rejected::close`]).
//! - `Transfer-Encoding` other than exactly `chunked` (one field, one coding; hyper has
//!   already decoded the chunks and would drop the other codings unseen) is 501 and the
//!   connection closes, as nginx answers it ("client sent unknown Transfer-Encoding"): a
//!   hop that read the codings otherwise would frame the body differently (RFC 9112 §6.1).
//! - HTTP/1.1 without `Host`, with more than one, or with one that is not a valid authority
//!   ([`super::authority`]) is 400 (RFC 9112 §3.2). HTTP/1.0 may omit it.
//! - An absolute-form target (`GET http://a.test/x`) routes by its own authority, which
//!   replaces `Host` (RFC 9112 §3.2.2); its scheme must be `http` or `https`. Authority-form
//!   outside CONNECT and asterisk-form (`OPTIONS *`) are 400, as nginx answers them.
//! - HTTP/2: `:authority` and/or `Host`, each a valid authority; neither is 400, and both
//!   naming different hosts (case, port and a trailing dot aside: routing looks at the name
//!   only) is malformed, 400 (RFC 9113 §8.3.1). A `Host` that is present is the host, as an
//!   HTTP/1.1 hop would carry it (§8.3.1); otherwise `:authority`.
//! - HTTP/2: a field value with leading or trailing whitespace and a `:scheme` other than
//!   `http` or `https` are malformed (RFC 9113 §8.2.1, §8.3.1), 400 as nginx answers them.
//! - The path is normalised by [`super::normalize`]; the query string is kept byte for byte.

use std::borrow::Cow;

use http::{
    HeaderMap, Method, StatusCode, Uri, Version,
    header::{HOST, TRANSFER_ENCODING},
    uri::{PathAndQuery, Scheme},
};

use super::{authority, normalize::normalize_path, router::normalize_host};

/// Where a request goes, as every later step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` as sent (validated; empty only for HTTP/1.0 without `Host`).
    pub host: String,
    /// Origin-form: the normalised path and the query as sent.
    pub path_and_query: PathAndQuery,
}

/// A request the proxy answers itself: the status and the reason for `x-xdp-ingress-reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Rejected {
    /// Whether the HTTP/1 connection closes after the answer: always. nginx refuses these
    /// requests while it reads their head (its request-line and header parsers,
    /// `ngx_http_process_request_header` for TRACE, CONNECT and `Transfer-Encoding`), before
    /// `ngx_http_handler` decides keep-alive, so its answer carries `Connection: close`
    /// whatever the status: the 405s for TRACE and CONNECT too.
    pub fn close(&self) -> bool {
        true
    }
}

/// The statuses after whose answer of its own nginx closes an HTTP/1 connection: 400, 413,
/// 414, 500 and 501 (`ngx_http_special_response_handler` sets `r->keepalive = 0`; its 495-497
/// are answered as 400).
pub fn closes_keepalive(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 413 | 414 | 500 | 501)
}

fn bad(reason: &'static str) -> Rejected {
    Rejected {
        status: StatusCode::BAD_REQUEST,
        reason,
    }
}

fn not_allowed(reason: &'static str) -> Rejected {
    Rejected {
        status: StatusCode::METHOD_NOT_ALLOWED,
        reason,
    }
}

/// Reason of the 400 for an authority-form target (`host:port`), CONNECT's included.
pub const AUTHORITY_FORM: &str = "authority-form request target";
/// Reason of the 405 for CONNECT.
pub const CONNECT_REFUSED: &str = "CONNECT is not served";
/// Reason of the 400 for a method of other bytes than nginx's parser takes.
pub const INVALID_METHOD: &str = "invalid method";
/// Reason of the 405 for TRACE.
pub const TRACE_REFUSED: &str = "TRACE is not served";
/// Reason of the 501 for a transfer coding other than `chunked`.
pub const UNKNOWN_TRANSFER_ENCODING: &str = "unknown Transfer-Encoding";

/// Whether `headers` carry a `Transfer-Encoding` the proxy does not serve: anything but one
/// field whose value is `chunked` (ASCII case-insensitive, as nginx compares it).
pub fn unknown_transfer_encoding(headers: &HeaderMap) -> bool {
    let mut te = headers.get_all(TRANSFER_ENCODING).iter();
    match (te.next(), te.next()) {
        (None, _) => false,
        (Some(v), None) => !v.as_bytes().eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => true,
    }
}

/// Whether an HTTP/2 field value is malformed by RFC 9113 §8.2.1 beyond what the h2 codec
/// checks: leading or trailing space or tab.
fn padded(v: &http::HeaderValue) -> bool {
    let b = v.as_bytes();
    matches!(b.first(), Some(b' ' | b'\t')) || matches!(b.last(), Some(b' ' | b'\t'))
}

/// The target of a request with this method, version, URI and headers (see the module docs).
pub fn resolve(
    method: &Method,
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Target, Rejected> {
    // nginx's request-line and HTTP/2 `:method` parsers take only `A`-`Z`, `_` and `-`
    // (`trace` is not TRACE: a pod may read it as one) and answer 400, closing.
    if !(method.as_str().bytes()).all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-') {
        return Err(Rejected {
            status: StatusCode::BAD_REQUEST,
            reason: INVALID_METHOD,
        });
    }
    if method == Method::CONNECT {
        // nginx's HTTP/1 request-line parser takes no authority-form target (`CONNECT
        // host:443`): 400 before the method is looked at; an origin-form one gets the 405.
        if version < Version::HTTP_2 && uri.scheme().is_none() && uri.authority().is_some() {
            return Err(bad(AUTHORITY_FORM));
        }
        return Err(not_allowed(CONNECT_REFUSED));
    }
    if method == Method::TRACE {
        return Err(not_allowed(TRACE_REFUSED));
    }
    if unknown_transfer_encoding(headers) {
        return Err(Rejected {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: UNKNOWN_TRANSFER_ENCODING,
        });
    }
    let mut hosts = headers.get_all(HOST).iter();
    let host_header = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(bad("more than one Host header")),
        (Some(v), None) => Some(v.to_str().map_err(|_| bad("invalid Host header"))?),
        (None, None) => None,
    };
    let authority = uri.authority().map(|a| a.as_str());
    let host = if version == Version::HTTP_2 {
        if uri
            .scheme()
            .is_some_and(|s| *s != Scheme::HTTP && *s != Scheme::HTTPS)
        {
            return Err(bad("unsupported :scheme"));
        }
        if headers.values().any(padded) {
            return Err(bad("field value with leading or trailing whitespace"));
        }
        for a in authority.iter().chain(host_header.iter()) {
            authority::validate(a).map_err(|_| bad("invalid :authority or Host"))?;
        }
        match (authority, host_header) {
            (Some(a), Some(h)) if normalize_host(a) != normalize_host(h) => {
                return Err(bad(":authority and Host differ"));
            }
            // RFC 9113 §8.3.1: a Host that is present is what HTTP/1.1 would carry.
            (_, Some(h)) => h,
            (Some(a), None) => a,
            (None, None) => return Err(bad("no :authority or Host")),
        }
    } else {
        match host_header {
            Some(h) => authority::validate(h).map_err(|_| bad("invalid Host header"))?,
            None if version == Version::HTTP_11 => return Err(bad("missing Host header")),
            None => {}
        }
        match (uri.scheme(), authority) {
            (Some(s), Some(a)) => {
                if *s != Scheme::HTTP && *s != Scheme::HTTPS {
                    return Err(bad("unsupported scheme in request target"));
                }
                a
            }
            (None, Some(_)) => return Err(bad(AUTHORITY_FORM)),
            _ => host_header.unwrap_or_default(),
        }
    };
    // A host taken from the Host field (or, in HTTP/2, either) was validated above.
    let validated =
        version == Version::HTTP_2 || host_header.is_some_and(|h| std::ptr::eq(h, host));
    if !(validated || (host.is_empty() && version < Version::HTTP_11)) {
        authority::validate(host).map_err(|_| bad("invalid host in request target"))?;
    }
    let path = normalize_path(uri.path()).map_err(|e| bad(path_reason(e)))?;
    let path_and_query = match (&path, uri.path_and_query()) {
        // Already normal: the target as sent, shared rather than copied.
        (Cow::Borrowed(p), Some(sent)) if std::ptr::eq(*p, sent.path()) => Ok(sent.clone()),
        _ => match uri.query() {
            Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
            None => PathAndQuery::try_from(path.as_ref()),
        },
    }
    .map_err(|_| bad("invalid request target"))?;
    Ok(Target {
        host: host.to_string(),
        path_and_query,
    })
}

fn path_reason(e: super::normalize::PathError) -> &'static str {
    use super::normalize::PathError::*;
    match e {
        NotAbsolute => "request target is not an absolute path",
        BadPercentEncoding => "invalid percent-encoding in path",
        Nul => "NUL in path",
        AboveRoot => "path climbs above the root",
        HiddenDotSegment => "dot segment hidden by an encoded slash, a backslash or ;",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(
        method: &str,
        version: Version,
        target: &str,
        hosts: &[&str],
    ) -> Result<(String, String), Rejected> {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, v.parse().unwrap());
        }
        let uri: Uri = target.parse().unwrap();
        resolve(&method.parse().unwrap(), version, &uri, &h)
            .map(|t| (t.host, t.path_and_query.to_string()))
    }

    fn ok(host: &str, pq: &str) -> Result<(String, String), Rejected> {
        Ok((host.into(), pq.into()))
    }

    fn status(r: Result<(String, String), Rejected>) -> u16 {
        r.map_or_else(|e| e.status.as_u16(), |_| 200)
    }

    const H11: Version = Version::HTTP_11;
    const H2: Version = Version::HTTP_2;

    #[test]
    fn http1_host_rules() {
        assert_eq!(
            resolve_with("GET", H11, "/x", &["a.test"]),
            ok("a.test", "/x")
        );
        assert_eq!(status(resolve_with("GET", H11, "/x", &[])), 400);
        assert_eq!(
            status(resolve_with("GET", H11, "/x", &["a.test", "a.test"])),
            400
        );
        assert_eq!(
            status(resolve_with("GET", H11, "/", &["attacker/.w.example.test"])),
            400
        );
        assert_eq!(status(resolve_with("GET", H11, "/", &[""])), 400);
        // HTTP/1.0 may omit Host; it then routes as a request without host.
        assert_eq!(resolve_with("GET", Version::HTTP_10, "/", &[]), ok("", "/"));
    }

    #[test]
    fn absolute_form_routes_by_its_own_authority() {
        assert_eq!(
            resolve_with("GET", H11, "http://b.test:8080/x/../y?q=%2e", &["a.test"]),
            ok("b.test:8080", "/y?q=%2e")
        );
        assert_eq!(
            resolve_with("GET", Version::HTTP_10, "https://b.test", &[]),
            ok("b.test", "/")
        );
        // Host must still be there and valid on HTTP/1.1 (RFC 9112 §3.2).
        assert_eq!(status(resolve_with("GET", H11, "http://b.test/", &[])), 400);
        assert_eq!(
            status(resolve_with("GET", H11, "http://b.test/", &["a/b"])),
            400
        );
        assert_eq!(
            status(resolve_with("GET", H11, "ftp://b.test/", &["b.test"])),
            400
        );
        assert_eq!(
            status(resolve_with("GET", H11, "http://u@b.test/", &["b.test"])),
            400
        );
        assert_eq!(
            status(resolve_with("GET", H11, "b.test:80", &["b.test"])),
            400
        );
        assert_eq!(status(resolve_with("OPTIONS", H11, "*", &["b.test"])), 400);
    }

    /// Whichever field the host comes from is validated, and the reason names it: the Host
    /// field, or the absolute-form target's authority (with or without a valid Host).
    #[test]
    fn the_host_is_validated_whichever_field_it_comes_from() {
        let reason =
            |v, target, hosts: &[&str]| resolve_with("GET", v, target, hosts).unwrap_err().reason;
        assert_eq!(reason(H11, "/", &["a b"]), "invalid Host header");
        assert_eq!(
            reason(H11, "http://u@b.test/", &["b.test"]),
            "invalid host in request target"
        );
        assert_eq!(
            reason(Version::HTTP_10, "http://u@b.test/", &[]),
            "invalid host in request target"
        );
        assert_eq!(
            reason(H2, "http://u@b.test/", &[]),
            "invalid :authority or Host"
        );
    }

    #[test]
    fn connect_is_405_in_every_version_and_its_http1_authority_form_400() {
        for v in [Version::HTTP_10, H11] {
            let r = resolve_with("CONNECT", v, "b.test:443", &["b.test:443"]);
            assert_eq!(r.unwrap_err(), bad(AUTHORITY_FORM));
        }
        let r = resolve_with("CONNECT", H2, "b.test:443", &["b.test:443"]);
        assert_eq!(r.unwrap_err(), not_allowed(CONNECT_REFUSED));
        for v in [Version::HTTP_10, H11, H2] {
            let r = resolve_with("CONNECT", v, "/", &["b.test"]);
            assert_eq!(r.unwrap_err(), not_allowed(CONNECT_REFUSED));
        }
    }

    #[test]
    fn trace_is_405_in_every_version() {
        for v in [Version::HTTP_10, H11, H2] {
            let r = resolve_with("TRACE", v, "http://b.test/", &["b.test"]);
            assert_eq!(r.unwrap_err(), not_allowed(TRACE_REFUSED));
        }
    }

    #[test]
    fn methods_of_other_bytes_than_nginx_takes_are_400_and_close() {
        for v in [Version::HTTP_10, H11, H2] {
            for m in ["trace", "Get", "GET1", "M.X"] {
                let r = resolve_with(m, v, "http://b.test/", &["b.test"]);
                let r = r.unwrap_err();
                assert_eq!(
                    (r.status, r.reason, r.close()),
                    (StatusCode::BAD_REQUEST, INVALID_METHOD, true),
                    "{m}"
                );
            }
            for m in ["PROPFIND", "VERSION-CONTROL", "X_CUSTOM", "PURGE"] {
                assert!(
                    resolve_with(m, v, "http://b.test/", &["b.test"]).is_ok(),
                    "{m}"
                );
            }
        }
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_501_and_close() {
        let te = |values: &[&str]| {
            let mut h = HeaderMap::new();
            h.insert(HOST, "b.test".parse().unwrap());
            for v in values {
                h.append(TRANSFER_ENCODING, v.parse().unwrap());
            }
            resolve(&Method::POST, H11, &"/".parse().unwrap(), &h)
        };
        assert!(te(&["chunked"]).is_ok());
        assert!(te(&["Chunked"]).is_ok());
        assert!(te(&[]).is_ok());
        for bad_te in [
            &["gzip, chunked"][..],
            &["identity, chunked"],
            &["foo, chunked"],
            &["chunked, chunked"],
            &[",chunked"],
            &["chunked", "chunked"],
            &["xchunked"],
        ] {
            let e = te(bad_te).unwrap_err();
            assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED, "{bad_te:?}");
            assert!(e.close(), "{bad_te:?}");
        }
    }

    #[test]
    fn http2_malformed_fields_and_scheme() {
        let mut h = HeaderMap::new();
        h.insert("x-a", " a".parse().unwrap());
        let uri: Uri = "http://a.test/".parse().unwrap();
        assert_eq!(resolve(&Method::GET, H2, &uri, &h).unwrap_err().status, 400);
        h.insert("x-a", "a\t".parse().unwrap());
        assert_eq!(resolve(&Method::GET, H2, &uri, &h).unwrap_err().status, 400);
        h.insert("x-a", "a b".parse().unwrap());
        assert!(resolve(&Method::GET, H2, &uri, &h).is_ok());
        let gopher: Uri = "gopher://a.test/".parse().unwrap();
        assert_eq!(
            resolve(&Method::GET, H2, &gopher, &HeaderMap::new())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn http2_authority_and_host() {
        assert_eq!(
            resolve_with("GET", H2, "http://a.test/x", &[]),
            ok("a.test", "/x")
        );
        assert_eq!(
            resolve_with("GET", H2, "http://a.test:8443/x", &["A.test"]),
            ok("A.test", "/x")
        );
        assert_eq!(
            status(resolve_with(
                "GET",
                H2,
                "http://a.test/x",
                &["a.test", "a.test"]
            )),
            400
        );
        assert_eq!(
            status(resolve_with("GET", H2, "http://u@a.test/x", &[])),
            400
        );
        assert_eq!(
            resolve_with("GET", H2, "/x", &["a.test"]),
            ok("a.test", "/x")
        );
        assert_eq!(
            status(resolve_with("GET", H2, "http://a.test/x", &["b.test"])),
            400
        );
        assert_eq!(status(resolve_with("GET", H2, "/x", &[])), 400);
        assert_eq!(status(resolve_with("GET", H2, "/x", &["a/b"])), 400);
    }

    #[test]
    fn path_normalised_and_query_kept_byte_for_byte() {
        assert_eq!(
            resolve_with(
                "GET",
                H11,
                "//public/%2e%2e/%61dmin/?a=/../%2e&b",
                &["a.test"]
            ),
            ok("a.test", "/admin/?a=/../%2e&b")
        );
        assert_eq!(
            resolve_with("GET", H11, "/x?", &["a.test"]),
            ok("a.test", "/x?")
        );
        let e = resolve_with("GET", H11, "/../admin", &["a.test"]).unwrap_err();
        assert_eq!(e, bad("path climbs above the root"));
        assert_eq!(status(resolve_with("GET", H11, "/a%00", &["a.test"])), 400);
    }
}
