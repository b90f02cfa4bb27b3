//! Request and response header rewriting: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! forwarding headers backends expect from ingress-nginx (`X-Forwarded-*`, `X-Real-IP`,
//! `Forwarded`, `X-Request-ID`).

use std::{io::Write, net::IpAddr};

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{CONNECTION, FORWARDED, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
};

use super::client_addr::Client;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_SCHEME: HeaderName = HeaderName::from_static("x-forwarded-scheme");
pub const X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
/// `proxy-add-original-uri-header`, error pages and the auth request: the target as sent.
pub const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
pub const X_ORIGINAL_FORWARDED_FOR: HeaderName =
    HeaderName::from_static("x-original-forwarded-for");
pub const X_ORIGINAL_FORWARDED_HOST: HeaderName =
    HeaderName::from_static("x-original-forwarded-host");
/// Removed from requests (httpoxy), see [`add_forwarding`].
const PROXY: HeaderName = HeaderName::from_static("proxy");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the fields whose names nginx takes as invalid under `ignore_invalid_headers on`
/// (ingress-nginx's default): any character other than a letter, a digit or `-`, and `_`
/// unless `underscores` (`underscores_in_headers`; nginx's `ngx_http_parse_header_line`).
/// CGI-style gateways map `X_Real_IP` and `X-Real-IP` to the same variable, so an underscored
/// field could pass for one the proxy sets; names such as `x.foo` reach no nginx upstream.
pub fn drop_invalid_names(headers: &mut HeaderMap, underscores: bool) {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || (underscores && b == b'_');
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| !k.as_str().bytes().all(valid))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

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

/// Removes hop-by-hop headers (RFC 9110 7.6.1), which HTTP/2 forbids outright as
/// connection-specific (RFC 9113 8.2.2): `Connection` and the fields it names, `Keep-Alive`,
/// `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`. With `upgrade`, `Connection: upgrade`
/// and `Upgrade` stay. `TE` is cut down to `trailers` when the sender accepts trailers (the
/// one value HTTP/2 allows, and what gRPC needs end to end), else removed. `Trailer` is
/// end to end (RFC 9110 6.6.2) and stays: an HTTP/1.1 hop sends only the trailers it declares.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names (compared by their standard index, no hashing) says which of
    // these fields are there; only those are looked up and removed. Most requests carry none,
    // most responses only `Connection: keep-alive`.
    let present = headers.keys().fold(0u8, |p, n| p | hop_by_hop_bit(n));
    if !upgrade && present == 0 {
        return;
    }
    if present & HOP_CONNECTION != 0 {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| !(upgrade && t.eq_ignore_ascii_case("upgrade")))
            // Fields removed below whatever Connection says need no lookup of their own.
            .filter(|t| !ALWAYS_REMOVED.iter().any(|n| t.eq_ignore_ascii_case(n)))
            // `from_bytes` lower-cases a name.
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            // A field named in Connection that is end to end by definition keeps its meaning.
            .filter(|n| *n != TE && *n != TRAILER)
            .collect();
        for n in named {
            headers.remove(n);
        }
        headers.remove(CONNECTION);
    }
    if present & HOP_KEEP_ALIVE != 0 {
        headers.remove(KEEP_ALIVE);
    }
    if present & HOP_PROXY_CONNECTION != 0 {
        headers.remove(PROXY_CONNECTION);
    }
    if present & HOP_TRANSFER_ENCODING != 0 {
        headers.remove(TRANSFER_ENCODING);
    }
    if present & HOP_TE != 0 {
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
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & HOP_UPGRADE != 0 {
        headers.remove(UPGRADE);
    }
}

/// The hop-by-hop fields [`strip_hop_by_hop`] removes however `Connection` names them.
const ALWAYS_REMOVED: [&str; 4] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
];

const HOP_CONNECTION: u8 = 1;
const HOP_KEEP_ALIVE: u8 = 2;
const HOP_TRANSFER_ENCODING: u8 = 4;
const HOP_TE: u8 = 8;
const HOP_UPGRADE: u8 = 16;
const HOP_PROXY_CONNECTION: u8 = 32;

/// The bit of a field [`strip_hop_by_hop`] may change, 0 for any other.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if name == CONNECTION {
        HOP_CONNECTION
    } else if name == KEEP_ALIVE {
        HOP_KEEP_ALIVE
    } else if name == TRANSFER_ENCODING {
        HOP_TRANSFER_ENCODING
    } else if name == TE {
        HOP_TE
    } else if name == UPGRADE {
        HOP_UPGRADE
    } else if name == PROXY_CONNECTION {
        HOP_PROXY_CONNECTION
    } else {
        0
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
///   `content-length` (HTTP/2 frames trailers without chunks);
/// - no `TE`: nginx's proxy module sends `TE ""` among its default headers
///   (ngx_http_proxy_module.c `ngx_http_proxy_headers`), so an HTTP/1 pod is never told the
///   client takes trailers; gRPC and HTTP/2 pods, which need `TE: trailers`, keep it.
pub fn for_http1_upstream(headers: &mut HeaderMap, has_body: bool) {
    join_cookies(headers);
    headers.remove(TE);
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

/// Sets the forwarding headers for a request for `host` from `c` (what
/// [`super::client_addr`] decided); whatever the client sent under these names is replaced.
/// As ingress-nginx's location block (nginx.tmpl):
/// - `X-Original-Forwarded-For` is what the client sent under `forwarded_for` (the ConfigMap's
///   `forwarded-for-header`, nginx `$http_x_forwarded_for`: its lines joined with `", "`) and
///   `X-Original-Forwarded-Host` its `X-Forwarded-Host`, raw and unverified whoever sent them
///   (ingress-nginx's e2e settings/forwarded_headers.go asserts both with
///   `use-forwarded-headers: false`); absent when the client sent none;
/// - `Proxy` is removed (`proxy_set_header Proxy ""`, httpoxy: a CGI-style pod would take it
///   for its `HTTP_PROXY`).
///
/// `Forwarded` (RFC 7239) is ours, not ingress-nginx's: the same facts as the `X-Forwarded-*`
/// fields in the standard form, a client's own kept in front only when trusted.
///
/// Returns the request id (kept when the client sent one).
pub fn add_forwarding(
    headers: &mut HeaderMap,
    c: &Client,
    host: &str,
    forwarded_for: &HeaderName,
) -> HeaderValue {
    // Which of the fields read or removed here the client sent, in one pass over the names:
    // most requests carry none, and each lookup of an absent field hashes its name.
    let sent = Sent::of(headers, forwarded_for);
    match sent
        .forwarded_for
        .then(|| http_variable(headers, forwarded_for))
    {
        Some(Some(v)) => {
            headers.insert(X_ORIGINAL_FORWARDED_FOR, v);
        }
        _ if sent.original_forwarded_for => {
            headers.remove(X_ORIGINAL_FORWARDED_FOR);
        }
        _ => {}
    }
    match sent
        .forwarded_host
        .then(|| http_variable(headers, &X_FORWARDED_HOST))
    {
        Some(Some(v)) => {
            headers.insert(X_ORIGINAL_FORWARDED_HOST, v);
        }
        _ if sent.original_forwarded_host => {
            headers.remove(X_ORIGINAL_FORWARDED_HOST);
        }
        _ => {}
    }
    if sent.proxy {
        headers.remove(PROXY);
    }
    headers.insert(X_FORWARDED_FOR, c.forwarded_for.clone());
    headers.insert(X_REAL_IP, c.addr_text.clone());
    headers.insert(X_FORWARDED_PROTO, c.proto.clone());
    // ingress-nginx sets these two to the same scheme; a client's own values never pass.
    headers.insert(X_FORWARDED_SCHEME, c.proto.clone());
    headers.insert(X_SCHEME, c.proto.clone());
    // ingress-nginx's `$best_http_host`.
    let fwd_host = c.best_host(host);
    match best_host_value(headers, c, host) {
        Some(v) => {
            headers.insert(X_FORWARDED_HOST, v);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    headers.insert(X_FORWARDED_PORT, c.port.clone());
    let prev = c.forwarded_prev.as_ref().and_then(|v| v.to_str().ok());
    let mut fwd = Vec::with_capacity(prev.map_or(0, |p| p.len() + 2) + fwd_host.len() + 64);
    if let Some(prev) = prev {
        fwd.extend_from_slice(prev.as_bytes());
        fwd.extend_from_slice(b", ");
    }
    // RFC 7239 section 6: an IPv6 node is bracketed and quoted.
    match c.forwarded_node {
        IpAddr::V4(ip) => {
            fwd.extend_from_slice(b"for=");
            push_ipv4(&mut fwd, ip);
        }
        IpAddr::V6(ip) => {
            let _ = write!(fwd, "for=\"[{ip}]\"");
        }
    }
    fwd.extend_from_slice(b";host=");
    push_token_or_quoted(&mut fwd, fwd_host.as_bytes());
    fwd.extend_from_slice(b";proto=");
    push_token_or_quoted(&mut fwd, c.proto.to_str().unwrap_or_default().as_bytes());
    match HeaderValue::from_bytes(&fwd) {
        Ok(v) => {
            headers.insert(FORWARDED, v);
        }
        Err(_) => {
            headers.remove(FORWARDED);
        }
    }
    let id = if sent.request_id {
        request_id_of(headers)
    } else {
        new_request_id()
    };
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// ingress-nginx's `$best_http_host` ([`Client::best_host`]) as a field value, `None` when
/// it is not one. The believed `X-Forwarded-Host` element and the request's only `Host` line
/// are already values: when the text is theirs, they are shared instead of copied.
pub fn best_host_value(headers: &HeaderMap, c: &Client, host: &str) -> Option<HeaderValue> {
    if let Some(v) = c.host.as_ref().filter(|v| v.to_str().is_ok()) {
        return Some(v.clone());
    }
    let mut sent = headers.get_all(http::header::HOST).iter();
    if let (Some(v), None) = (sent.next(), sent.next())
        && v.as_bytes() == host.as_bytes()
    {
        return Some(v.clone());
    }
    HeaderValue::from_str(host).ok()
}

/// Which of the fields [`add_forwarding`] reads or removes a request carries.
#[derive(Default)]
struct Sent {
    forwarded_for: bool,
    forwarded_host: bool,
    original_forwarded_for: bool,
    original_forwarded_host: bool,
    proxy: bool,
    request_id: bool,
}

impl Sent {
    fn of(headers: &HeaderMap, forwarded_for: &HeaderName) -> Sent {
        let mut sent = Sent::default();
        for name in headers.keys() {
            sent.forwarded_for |= name == forwarded_for;
            // Lengths first: most names are none of these and differ in length.
            match name.as_str().len() {
                5 => sent.proxy |= *name == PROXY,
                12 => sent.request_id |= *name == X_REQUEST_ID,
                16 => sent.forwarded_host |= *name == X_FORWARDED_HOST,
                24 => sent.original_forwarded_for |= *name == X_ORIGINAL_FORWARDED_FOR,
                25 => sent.original_forwarded_host |= *name == X_ORIGINAL_FORWARDED_HOST,
                _ => {}
            }
        }
        sent
    }
}

/// An IPv4 address in dotted decimal, as its `Display` writes it.
fn push_ipv4(out: &mut Vec<u8>, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// nginx's `$http_<name>` of a request: every field line of `name` in order, joined with
/// `", "` (`"; "` for `Cookie`), empty lines and bytes kept as sent (nginx 1.23+,
/// `ngx_http_variable_headers_internal`). `None` when there is no line or the value is empty,
/// which is when nginx's `proxy_set_header` sends nothing and ingress-nginx's maps of it take
/// their `''` branch.
pub fn http_variable(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return (!first.is_empty()).then(|| first.clone());
    };
    let sep: &[u8] = if name == http::header::COOKIE {
        b"; "
    } else {
        b", "
    };
    let mut all = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(lines) {
        all.extend_from_slice(sep);
        all.extend_from_slice(v.as_bytes());
    }
    // Valid field values joined by a separator of visible characters and a space are one.
    HeaderValue::from_bytes(&all).ok()
}

/// The request's id (nginx `$req_id`): the client's `X-Request-ID` when it sent a non-empty
/// one (all its lines, as nginx's `$http_x_request_id`), else a new one, set on `headers` as the
/// only `X-Request-ID` (ingress-nginx's `proxy_set_header X-Request-ID $req_id` replaces
/// the client's fields) so every later step sends the same one.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    let id = request_id_of(headers);
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// The id [`request_id`] gives a request with these `headers`, without setting it on them:
/// for an answer the proxy gives before anything is sent on (a redirect's `$request_id`).
pub fn request_id_of(headers: &HeaderMap) -> HeaderValue {
    http_variable(headers, &X_REQUEST_ID).unwrap_or_else(new_request_id)
}

fn push_token_or_quoted(out: &mut Vec<u8>, v: &[u8]) {
    if !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        out.extend_from_slice(v);
    } else {
        // Dropping these two bytes from UTF-8 text drops those characters only.
        out.push(b'"');
        out.extend(v.iter().filter(|&&b| b != b'"' && b != b'\\'));
        out.push(b'"');
    }
}

/// 128 random bits as 32 lower-case hex digits (as nginx's `$request_id`).
pub(crate) fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u128>();
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    // One allocation its clones share (`from_bytes` copies into a `Bytes` whose first
    // clone allocates again, and the id is cloned for the log and the pod).
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

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

    /// Each hop-by-hop field is removed when it is the only one the message carries (the
    /// pass that skips messages without any must know every name).
    #[test]
    fn each_hop_by_hop_field_alone_is_removed() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "te",
            "upgrade",
        ] {
            let mut h = map(&[(name, "x"), ("x-kept", "yes")]);
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
            assert!(h.contains_key("x-kept"));
        }
        let mut h = map(&[("x-kept", "yes")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
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
    fn http_variables_join_every_line_as_nginx_does() {
        let h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", ""),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        assert_eq!(
            http_variable(&h, &X_FORWARDED_FOR).unwrap(),
            "1.1.1.1, , 2.2.2.2"
        );
        let h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        assert_eq!(
            http_variable(&h, &http::header::COOKIE).unwrap(),
            "a=1; b=2"
        );
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-host",
            HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        h.append("x-forwarded-host", HeaderValue::from_static("b"));
        assert_eq!(
            http_variable(&h, &X_FORWARDED_HOST).unwrap().as_bytes(),
            b"caf\xe9, b"
        );
        assert_eq!(
            http_variable(&map(&[("x-forwarded-for", "")]), &X_FORWARDED_FOR),
            None
        );
        assert_eq!(http_variable(&HeaderMap::new(), &X_FORWARDED_FOR), None);
    }

    #[test]
    fn a_repeated_request_id_reaches_the_upstream_once() {
        // Found by the header fuzz: two X-Request-ID fields from the client both went up,
        // the first being the id logged. ingress-nginx sends exactly one, `$req_id`, which is
        // `$http_x_request_id`: every line joined (nginx 1.23+), an empty one included.
        let mut h = map(&[("x-request-id", "first"), ("x-request-id", "second")]);
        assert_eq!(request_id(&mut h), "first, second");
        let sent: Vec<_> = h.get_all(X_REQUEST_ID).iter().collect();
        assert_eq!(sent, ["first, second"]);
        let mut h = map(&[("x-request-id", ""), ("x-request-id", "second")]);
        assert_eq!(request_id(&mut h), ", second");
        let mut h = map(&[("x-request-id", "")]);
        let id = request_id(&mut h);
        assert_eq!(id.len(), 32, "a new id for an empty one");
        assert_eq!(h.get_all(X_REQUEST_ID).iter().collect::<Vec<_>>(), [&id]);
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
        let mut h = map(&[
            ("cookie", "only=1"),
            ("content-length", "5"),
            ("te", "trailers"),
        ]);
        for_http1_upstream(&mut h, true);
        assert_eq!(h["cookie"], "only=1");
        assert_eq!(h["content-length"], "5");
        assert!(!h.contains_key("te"), "nginx's proxy module clears TE");
    }

    #[test]
    fn forwarding_headers_replaced_and_request_id_kept() {
        use crate::proxy::client_addr::TrustConfig;
        let cfg = TrustConfig::from_args(&crate::proxy::ProxyArgs::default());
        let client = |ip: &str, tls, port, h: &HeaderMap| {
            cfg.origin(
                SocketAddr::new(ip.parse().unwrap(), 40000),
                None,
                SocketAddr::new("10.0.0.1".parse().unwrap(), port),
                tls,
            )
            .client(&cfg, h)
        };
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-port", "1"),
            ("x-request-id", "abc"),
        ]);
        let c = client("2001:db8::1", true, 443, &h);
        let id = add_forwarding(&mut h, &c, "a.example.com", &X_FORWARDED_FOR);
        assert_eq!(id, "abc");
        // As ingress-nginx's template: the client's raw values under the original names.
        assert_eq!(h["x-original-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-original-forwarded-host"], "evil.test");
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(h["x-real-ip"], "2001:db8::1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example.com");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::1]\";host=a.example.com;proto=https"
        );
        let mut h = HeaderMap::new();
        let c = client("198.18.0.1", false, 80, &h);
        let id = add_forwarding(&mut h, &c, "x", &X_FORWARDED_FOR);
        assert!(!h.contains_key("x-original-forwarded-for"));
        assert!(!h.contains_key("x-original-forwarded-host"));
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
        let c = client("198.18.0.1", false, 80, &h);
        add_forwarding(&mut h, &c, "we\"ird\\:80", &X_FORWARDED_FOR);
        assert_eq!(
            h["forwarded"],
            "for=198.18.0.1;host=\"weird:80\";proto=http"
        );
    }

    #[test]
    fn original_forwarded_headers_are_the_clients_raw_lines_and_proxy_is_removed() {
        let mut h = map(&[
            ("x-client-ip", "10.0.0.1"),
            ("x-client-ip", "10.0.0.2"),
            ("x-original-forwarded-for", "forged"),
            ("x-original-forwarded-host", "forged"),
            ("proxy", "http://evil.test:3128"),
        ]);
        let c = Client::direct("198.18.0.1".parse().unwrap(), false, 80);
        add_forwarding(
            &mut h,
            &c,
            "a.test",
            &HeaderName::from_static("x-client-ip"),
        );
        assert_eq!(h["x-original-forwarded-for"], "10.0.0.1, 10.0.0.2");
        assert!(!h.contains_key("x-original-forwarded-host"), "none sent");
        assert!(!h.contains_key("proxy"));
    }

    /// Every line the pod gets, in full, for a plain request (none of the fields
    /// `add_forwarding` reads or removes) and for one that sent all of them; the `for=` node
    /// as `Ipv4Addr`'s `Display` writes it for every octet width.
    #[test]
    fn forwarding_lines_byte_for_byte() {
        let lines = |h: &HeaderMap| {
            let mut l: Vec<String> = h
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect();
            l.sort();
            l
        };
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "1.20.100.0",
            "198.18.0.1",
        ] {
            let c = Client::direct(ip.parse().unwrap(), false, 80);
            let mut h = map(&[("host", "a.test:8080"), ("accept", "*/*")]);
            let id = add_forwarding(&mut h, &c, "a.test:8080", &X_FORWARDED_FOR);
            let id = id.to_str().unwrap();
            let mut want = vec![
                "accept: */*".to_string(),
                // `:` is no token character (RFC 7230 3.2.6): the host is quoted.
                format!("forwarded: for={ip};host=\"a.test:8080\";proto=http"),
                "host: a.test:8080".into(),
                format!("x-forwarded-for: {ip}"),
                "x-forwarded-host: a.test:8080".into(),
                "x-forwarded-port: 80".into(),
                "x-forwarded-proto: http".into(),
                "x-forwarded-scheme: http".into(),
                format!("x-real-ip: {ip}"),
                format!("x-request-id: {id}"),
                "x-scheme: http".into(),
            ];
            want.sort();
            assert_eq!(lines(&h), want, "{ip}");
        }
        let c = Client::direct("198.18.0.1".parse().unwrap(), true, 443);
        let mut h = map(&[
            ("host", "a.test"),
            ("host", "a.test"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "203.0.113.10"),
            ("x-forwarded-host", "evil.test"),
            ("x-original-forwarded-for", "forged"),
            ("x-original-forwarded-host", "forged"),
            ("proxy", "http://evil.test:3128"),
            ("x-request-id", "abc"),
            ("x-request-id", "def"),
            ("x-scheme", "gopher"),
        ]);
        assert_eq!(
            add_forwarding(&mut h, &c, "b.test", &X_FORWARDED_FOR),
            "abc, def"
        );
        let mut want = vec![
            "forwarded: for=198.18.0.1;host=b.test;proto=https",
            "host: a.test",
            "host: a.test",
            "x-forwarded-for: 198.18.0.1",
            "x-forwarded-host: b.test",
            "x-forwarded-port: 443",
            "x-forwarded-proto: https",
            "x-forwarded-scheme: https",
            "x-original-forwarded-for: 203.0.113.9, 203.0.113.10",
            "x-original-forwarded-host: evil.test",
            "x-real-ip: 198.18.0.1",
            "x-request-id: abc, def",
            "x-scheme: https",
        ];
        want.sort();
        assert_eq!(lines(&h), want);
    }

    /// `X-Forwarded-Host` (and the upstream `Host`) is `$best_http_host` whichever value it
    /// is taken from: the request's only Host line when it is that text, else a copy.
    #[test]
    fn best_host_value_is_the_host_whatever_it_is_taken_from() {
        let c = Client::direct("198.18.0.1".parse().unwrap(), false, 80);
        for (sent, host, want) in [
            (&[("host", "a.test:81")][..], "a.test:81", Some("a.test:81")),
            (&[("host", "A.test")][..], "a.test", Some("a.test")),
            (
                &[("host", "a.test"), ("host", "b.test")][..],
                "a.test",
                Some("a.test"),
            ),
            (&[][..], "c.test", Some("c.test")),
            (&[][..], "bad\nhost", None),
        ] {
            let got = best_host_value(&map(sent), &c, host);
            assert_eq!(got.as_ref().map(|v| v.to_str().unwrap()), want, "{sent:?}");
        }
        let mut c = c;
        c.host = Some(HeaderValue::from_static("believed.test"));
        let got = best_host_value(&map(&[("host", "a.test")]), &c, "a.test");
        assert_eq!(got.unwrap(), "believed.test");
    }

    /// The fields `Connection` names go, whatever their case, beside the hop-by-hop ones;
    /// `TE` and `Trailer` stay end to end, and a field only named is no error.
    #[test]
    fn connection_named_fields_removed_in_any_case() {
        let mut h = map(&[
            ("connection", "Keep-Alive, X-Custom, close"),
            ("connection", "Transfer-Encoding, te, trailer, x-absent"),
            ("keep-alive", "timeout=5"),
            ("x-custom", "1"),
            ("close", "odd but named"),
            ("trailer", "x-sum"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "trailer", "x-kept"]);
        assert_eq!(h["te"], "trailers");
        // A response with only `Connection: keep-alive` (nginx's): nothing else moves.
        let mut h = map(&[("connection", "keep-alive"), ("content-length", "5")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["content-length"], "5");
    }
}
