//! Request and response header rewriting: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! forwarding headers backends expect from ingress-nginx (`X-Forwarded-*`, `X-Real-IP`,
//! `Forwarded`, `X-Request-ID`).

use std::net::IpAddr;

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{CONNECTION, FORWARDED, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether an HTTP/1.1 request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers (RFC 9110 7.6.1), which HTTP/2 forbids outright as
/// connection-specific (RFC 9113 8.2.2): `Connection` and the fields it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`. With `upgrade`, `Connection: upgrade`
/// and `Upgrade` stay. `TE` is cut down to `trailers` when the sender accepts trailers (the
/// one value HTTP/2 allows, and what gRPC needs end to end), else removed. `Trailer` is
/// end to end (RFC 9110 6.6.2) and stays: an HTTP/1.1 hop sends only the trailers it declares.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
            .filter_map(|t| HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()).ok())
            // A field named in Connection that is end to end by definition keeps its meaning.
            .filter(|n| *n != TE && *n != TRAILER)
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(CONNECTION);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    let te_trailers = headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(accepts_trailers);
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    } else {
        headers.remove(TE);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// Whether one `TE` list member is `trailers` (RFC 9110 10.1.4: it takes no weight).
fn accepts_trailers(member: &str) -> bool {
    member.trim().eq_ignore_ascii_case("trailers")
}

/// Makes the (hop-by-hop stripped) headers of a request fit an HTTP/1.1 upstream:
/// - `Cookie` fields, which an HTTP/2 client sends one per cookie, joined into one with
///   `"; "` (RFC 9113 8.2.3; HTTP/1.1 allows one `Cookie` line, RFC 6265 5.4);
/// - a request with a body whose `Trailer` field declares trailers goes chunked, the only
///   HTTP/1.1 framing that carries them (RFC 9112 7.1.2), even when the client sent a
///   `content-length` (HTTP/2 frames trailers without chunks).
pub fn for_http1_upstream(headers: &mut HeaderMap, has_body: bool) {
    join_cookies(headers);
    if has_body && headers.contains_key(TRAILER) {
        headers.remove(http::header::CONTENT_LENGTH);
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    }
}

fn join_cookies(headers: &mut HeaderMap) {
    use http::header::{COOKIE, Entry};
    let Entry::Occupied(mut cookies) = headers.entry(COOKIE) else {
        return;
    };
    if cookies.iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in cookies.iter() {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // Joining valid field values with "; " gives a valid field value.
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        cookies.insert(v);
    }
}

/// What the proxy knows about the client side of a connection: the parts of the forwarding
/// headers that depend only on the connection, rendered once when it is accepted rather than
/// on every keep-alive request.
#[derive(Debug)]
pub struct ClientSide {
    /// `http` or `https`.
    proto: &'static str,
    /// The client address as text (`X-Real-IP`, own `X-Forwarded-For` entry).
    ip: HeaderValue,
    /// The `for=` node of `Forwarded` (IPv6 quoted and bracketed, RFC 7239).
    node: String,
    /// The local port (`X-Forwarded-Port`).
    port: HeaderValue,
}

impl ClientSide {
    /// `proto`: `http` or `https`; `port`: the port the client connected to.
    pub fn new(ip: IpAddr, proto: &'static str, port: u16) -> Self {
        let text = ip.to_string();
        let node = match ip {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        ClientSide {
            proto,
            // An address's text is always a valid header value.
            ip: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("")),
            node,
            port: HeaderValue::from(port),
        }
    }
}

/// Sets the forwarding headers for a request for `host`; returns the request id (kept when
/// the client sent one).
pub fn add_forwarding(headers: &mut HeaderMap, c: &ClientSide, host: &str) -> HeaderValue {
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => {
            HeaderValue::from_str(&format!("{prev}, {}", ip_str(&c.ip))).ok()
        }
        _ => Some(c.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_REAL_IP, c.ip.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(c.proto));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(X_FORWARDED_HOST, v);
    }
    headers.insert(X_FORWARDED_PORT, c.port.clone());
    let prev = headers.get(FORWARDED).and_then(|v| v.to_str().ok());
    let mut fwd =
        String::with_capacity(prev.map_or(0, |p| p.len() + 2) + c.node.len() + host.len() + 24);
    if let Some(prev) = prev {
        fwd.push_str(prev);
        fwd.push_str(", ");
    }
    fwd.push_str("for=");
    fwd.push_str(&c.node);
    fwd.push_str(";host=");
    if host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
    {
        fwd.push_str(host);
    } else {
        fwd.push('"');
        fwd.extend(host.chars().filter(|&ch| ch != '"' && ch != '\\'));
        fwd.push('"');
    }
    fwd.push_str(";proto=");
    fwd.push_str(c.proto);
    if let Ok(v) = HeaderValue::from_str(&fwd) {
        headers.insert(FORWARDED, v);
    }
    match headers.get(X_REQUEST_ID) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => {
            let id = new_request_id();
            headers.insert(X_REQUEST_ID, id.clone());
            id
        }
    }
}

fn ip_str(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or_default()
}

/// 128 random bits as 32 lower-case hex digits (as nginx's `$request_id`).
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u128>();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_removed_and_named_ones_too() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut h = map(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn te_becomes_trailers_when_accepted_and_trailer_stays() {
        let mut h = map(&[
            ("te", "gzip;q=0.5, Trailers"),
            ("trailer", "x-checksum"),
            ("connection", "te, trailer"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["trailer"], "x-checksum");
        assert!(!h.contains_key("connection"));
        let mut h = map(&[("te", "deflate")]);
        strip_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("te"));
    }

    #[test]
    fn cookies_joined_and_declared_trailers_go_chunked_toward_http1() {
        let mut h = map(&[
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("content-length", "5"),
            ("trailer", "x-checksum"),
        ]);
        for_http1_upstream(&mut h, true);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(h["transfer-encoding"], "chunked");
        assert!(!h.contains_key("content-length"));
        let mut h = map(&[("cookie", "only=1"), ("content-length", "5")]);
        for_http1_upstream(&mut h, true);
        assert_eq!(h["cookie"], "only=1");
        assert_eq!(h["content-length"], "5");
    }

    #[test]
    fn forwarding_headers_appended_and_request_id_kept() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("x-request-id", "abc")]);
        let id = add_forwarding(
            &mut h,
            &ClientSide::new("2001:db8::1".parse().unwrap(), "https", 443),
            "a.example.com",
        );
        assert_eq!(id, "abc");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 2001:db8::1");
        assert_eq!(h["x-real-ip"], "2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example.com");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::1]\";host=a.example.com;proto=https"
        );
        let mut h = HeaderMap::new();
        let id = add_forwarding(
            &mut h,
            &ClientSide::new("198.18.0.1".parse().unwrap(), "http", 80),
            "x",
        );
        assert_eq!(id.len(), 32);
        assert!(
            id.as_bytes()
                .iter()
                .all(|b| b"0123456789abcdef".contains(b))
        );
        assert_eq!(h["x-request-id"], id);
        assert_eq!(h["x-forwarded-for"], "198.18.0.1");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["forwarded"], "for=198.18.0.1;host=x;proto=http");
        let mut h = map(&[("forwarded", "for=203.0.113.9")]);
        add_forwarding(
            &mut h,
            &ClientSide::new("198.18.0.1".parse().unwrap(), "http", 80),
            "we\"ird\\:80",
        );
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9, for=198.18.0.1;host=\"weird:80\";proto=http"
        );
    }
}
