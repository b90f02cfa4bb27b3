//! The gRPC form of "nothing here": Gateway API v1.6 says traffic no listener hostname or
//! route takes MUST be rejected, "HTTP returns a 404 status code, while gRPC returns an
//! Unimplemented status code" (Gateway `spec.listeners`; GRPCRoute says the same of a method
//! no rule matches). A gRPC client reads the status from `grpc-status`, so the answer is a
//! Trailers-Only response (grpc/doc/PROTOCOL-HTTP2.md): HTTP 200, `content-type:
//! application/grpc`, `grpc-status: 12` and no body, all in the one HEADERS frame.
//!
//! Ingress misses keep ingress-nginx's answer (its 404 page, which gRPC clients map to
//! UNIMPLEMENTED themselves: grpc/doc/http-grpc-status-mapping.md); [`RouteTable::gateway_miss`]
//! says which miss is whose.
//!
//! [`RouteTable::gateway_miss`]: super::router::RouteTable::gateway_miss

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header::CONTENT_TYPE};
use http_body_util::{BodyExt, Full};

use super::{forward::REASON_HEADER, upstream::ProxyBody};

/// gRPC status code UNIMPLEMENTED (grpc/doc/statuscodes.md).
pub const UNIMPLEMENTED: u32 = 12;

/// A gRPC request: `content-type` is `application/grpc`, alone or followed by `+<format>` or
/// parameters (grpc/doc/PROTOCOL-HTTP2.md, "Content-Type"), in any case.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= GRPC.len()
            && v[..GRPC.len()].eq_ignore_ascii_case(GRPC)
            && matches!(v.get(GRPC.len()), None | Some(b'+' | b';' | b' '))
    })
}

/// gRPC status code INTERNAL (grpc/doc/statuscodes.md: "some invariants expected by the
/// underlying system have been broken"): a GRPCRoute rule whose filter is not implemented.
pub const INTERNAL: u32 = 13;

/// gRPC status code UNAVAILABLE: a GRPCRoute rule's invalid backendRefs (Gateway API v1
/// `GRPCRouteRule.backendRefs`: "MUST receive an `UNAVAILABLE` status").
pub const UNAVAILABLE: u32 = 14;

/// The gRPC status of a GRPCRoute rule's own error answer of HTTP status `http` (the one
/// mapping, so that translation decides with an HTTP status): 503 is UNAVAILABLE, 404
/// UNIMPLEMENTED, anything else INTERNAL.
pub fn code_of(http: u16) -> u32 {
    match http {
        503 => UNAVAILABLE,
        404 => UNIMPLEMENTED,
        _ => INTERNAL,
    }
}

/// The Trailers-Only answer with `grpc-status` UNIMPLEMENTED; `reason` (unless empty) goes in
/// `grpc-message` (percent-encoding is not needed: it is ASCII without `%`) and in
/// [`REASON_HEADER`].
pub fn unimplemented(reason: &str) -> Response<ProxyBody> {
    trailers_only(UNIMPLEMENTED, reason)
}

/// The Trailers-Only answer with `grpc-status` `code`; `reason` as [`unimplemented`]'s.
pub fn trailers_only(code: u32, reason: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::new())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if !reason.is_empty()
        && let Ok(v) = HeaderValue::from_str(reason)
    {
        h.insert("grpc-message", v.clone());
        h.insert(REASON_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn grpc_content_types_are_recognised_and_lookalikes_are_not() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
        ] {
            assert!(is_grpc(&typed(ct)), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
            "text/plain",
        ] {
            assert!(!is_grpc(&typed(ct)), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn unimplemented_is_trailers_only_with_status_12() {
        let resp = unimplemented("no route matched");
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        assert_eq!(h[CONTENT_TYPE], "application/grpc");
        assert_eq!(h["grpc-status"], "12");
        assert_eq!(h["grpc-message"], "no route matched");
        // No message: the HEADERS frame ends the stream.
        assert!(hyper::body::Body::is_end_stream(resp.body()));
        // `--reason-header=false` passes no reason: nothing names the miss.
        let resp = unimplemented("");
        assert_eq!(resp.headers()["grpc-status"], "12");
        assert!(resp.headers().get("grpc-message").is_none());
        assert!(resp.headers().get(REASON_HEADER).is_none());
    }
}
