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

/// Whether an HTTP/1.1 request asks for a WebSocket (RFC 6455 §4.1): `Upgrade: websocket`
/// as the only protocol, and `upgrade` in `Connection`. Nothing else is tunnelled: any other
/// `Upgrade` (`h2c`, `websocket, h2c`, ...) is hop-by-hop and dropped, and the request goes
/// on as a plain one, so a backend can never switch a client connection into a protocol
/// whose later requests the proxy would not route or check.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let mut protocols = Vec::new();
    for v in headers.get_all(UPGRADE) {
        let Ok(v) = v.to_str() else { return false };
        protocols.extend(v.split(',').map(str::trim).filter(|t| !t.is_empty()));
    }
    matches!(protocols[..], [p] if p.eq_ignore_ascii_case("websocket"))
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

/// Removes hop-by-hop headers. With `upgrade`, `Connection: upgrade` and `Upgrade` stay.
/// `TE: trailers` stays (gRPC needs it end to end).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
            .filter_map(|t| HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(CONNECTION);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    headers.remove(TRAILER);
    let te_trailers = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !te_trailers {
        headers.remove(TE);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
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
        for (protocol, tunnelled) in [
            ("WebSocket", true),
            ("websocket ,", true),
            ("h2c", false),
            ("websocket, h2c", false),
            ("websocket/13", false),
            ("TLS/1.0", false),
        ] {
            let mut o = h.clone();
            o.insert("upgrade", protocol.parse().unwrap());
            assert_eq!(is_upgrade(&o), tunnelled, "{protocol}");
        }
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
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
