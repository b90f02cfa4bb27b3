//! The proxy's request header handling on random header sets, in the order `forward` applies
//! it: underscore fields dropped, the client decided ([`crate::proxy::client_addr`]), the
//! target resolved ([`crate::proxy::request_target`]: Host / `:authority`, absolute form,
//! path normalisation), hop-by-hop fields removed (upgrades kept), forwarding fields set,
//! the HTTP/1 upstream fix-ups; and hop-by-hop removal on responses. Seeds are request heads
//! in `fuzz-corpus/headers` (`METHOD target VERSION`, then `Name: value` lines), mutated by
//! adding, removing, duplicating and rewriting fields and by other targets, methods,
//! versions, trust settings and peers. Properties: nothing panics; a rejected request gets
//! 400 or 405; an accepted one has a valid host and an absolute path without dot segments,
//! and its upstream headers carry no hop-by-hop field (RFC 9110 §7.6.1) — nor any field its
//! `Connection` named — exactly one `Host` (the target's), one of each forwarding field the
//! proxy sets (ingress-nginx's set), a `X-Real-IP` that is an address, at most one `Cookie`.

use std::net::{IpAddr, SocketAddr};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version,
    header::{CONNECTION, COOKIE, FORWARDED, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
};
use proptest::prelude::*;

use super::{config, corpus};
use crate::{
    model::IpPrefix,
    proxy::{
        authority,
        client_addr::TrustConfig,
        headers::{
            X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO,
            X_FORWARDED_SCHEME, X_ORIGINAL_FORWARDED_FOR, X_REAL_IP, X_REQUEST_ID, X_SCHEME,
            add_forwarding, drop_invalid_names, for_http1_upstream, is_upgrade, strip_hop_by_hop,
        },
        request_target,
    },
};

/// A request head: method, target, version, fields (raw bytes: validity is checked the way
/// hyper would, when the request is built).
#[derive(Clone, Debug)]
struct Head {
    method: String,
    target: String,
    version: Version,
    fields: Vec<(String, Vec<u8>)>,
}

fn parse_head(text: &str) -> Head {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let version = match parts.next() {
        Some("HTTP/1.0") => Version::HTTP_10,
        Some("HTTP/2") => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().as_bytes().to_vec()))
        .collect();
    Head {
        method,
        target,
        version,
        fields,
    }
}

const NAMES: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-scheme",
    "forwarded",
    "x-real-ip",
    "x-request-id",
    "x-original-forwarded-for",
    "cookie",
    "content-length",
    "expect",
    "x_real_ip",
    "x-secret",
    "http2-settings",
];

const VALUES: &[&str] = &[
    "",
    " ",
    "upgrade",
    "Upgrade",
    "websocket",
    "WebSocket, h2c",
    "h2c",
    "close, x-secret",
    "keep-alive, TE, Trailer",
    "trailers",
    "gzip, trailers",
    "chunked",
    "gzip, chunked",
    "x-forwarded-for, host, x-request-id",
    "1.2.3.4",
    "1.2.3.4, 10.0.0.1",
    "[2001:db8::1]:80",
    "unknown",
    "for=\"[::1]\";proto=https",
    "for=_hidden, for=10.0.0.9",
    "https",
    "http",
    "HTTPS",
    "ftp",
    "a.test",
    "a.test:8080",
    "A.TEST.",
    "[::1]:443",
    "a b",
    "443",
    "0",
    "99999",
    "a=1",
    "b=2; c=3",
    "100-continue",
    "X-Checksum",
];

const TARGETS: &[&str] = &[
    "/",
    "*",
    "/a/../b",
    "/%2e%2e/x",
    "/a//b/./c",
    "//double",
    "/a?b=..%2f&c",
    "a.test:443",
    "http://a.test/x",
    "https://[::1]:8443/y",
    "ftp://a.test/",
    "http://a.test",
    "/%zz",
    "/%00",
    "/~user/%41",
    "http://a.test:99999/",
];

const METHODS: &[&str] = &[
    "GET", "POST", "CONNECT", "OPTIONS", "HEAD", "PUT", "LOCK", "PURGE",
];

/// One mutation of a head.
#[derive(Clone, Debug)]
enum Op {
    Add(String, Vec<u8>),
    Remove(usize),
    Duplicate(usize),
    Revalue(usize, Vec<u8>),
    Uppercase(usize),
    Target(String),
    Method(String),
    Version(u8),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(String::from),
        1 => "[a-zA-Z0-9_!#$%&'*+.^`|~-]{1,12}",
        1 => "[ -~]{0,6}",
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(|v| v.as_bytes().to_vec()),
        // Visible ASCII, space, tab, obs-text: what a field value may hold.
        2 => prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..24),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (name(), value()).prop_map(|(n, v)| Op::Add(n, v)),
        1 => any::<usize>().prop_map(Op::Remove),
        1 => any::<usize>().prop_map(Op::Duplicate),
        2 => (any::<usize>(), value()).prop_map(|(i, v)| Op::Revalue(i, v)),
        1 => any::<usize>().prop_map(Op::Uppercase),
        1 => prop_oneof![
            3 => prop::sample::select(TARGETS).prop_map(String::from),
            1 => "[ -~]{0,16}",
        ]
        .prop_map(Op::Target),
        1 => prop::sample::select(METHODS).prop_map(|m| Op::Method(m.into())),
        1 => (0u8..3).prop_map(Op::Version),
    ]
}

fn apply(h: &mut Head, op: Op) {
    let n = h.fields.len();
    match op {
        Op::Add(name, v) => h.fields.push((name, v)),
        Op::Remove(i) if n > 0 => {
            h.fields.remove(i % n);
        }
        Op::Duplicate(i) if n > 0 => h.fields.push(h.fields[i % n].clone()),
        Op::Revalue(i, v) if n > 0 => h.fields[i % n].1 = v,
        Op::Uppercase(i) if n > 0 => h.fields[i % n].0.make_ascii_uppercase(),
        Op::Target(t) => h.target = t,
        Op::Method(m) => h.method = m,
        Op::Version(v) => {
            h.version = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][usize::from(v)]
        }
        _ => {}
    }
}

fn head() -> impl Strategy<Value = Head> {
    let seeds: Vec<Head> = corpus("headers")
        .iter()
        .map(|(_, t)| parse_head(t))
        .collect();
    (
        prop::sample::select(seeds),
        prop::collection::vec(op(), 0..10),
    )
        .prop_map(|(mut h, ops)| {
            for o in ops {
                apply(&mut h, o);
            }
            h
        })
}

/// Where the request comes from and what the proxy believes.
#[derive(Clone, Debug)]
struct Setting {
    peer: IpAddr,
    tls: bool,
    underscores: bool,
    use_forwarded_headers: bool,
    enable_real_ip: bool,
    compute_full_forwarded_for: bool,
    forwarded_for_header: &'static str,
    trusted: Vec<IpPrefix>,
    has_body: bool,
}

fn setting() -> impl Strategy<Value = Setting> {
    let peers: Vec<IpAddr> = ["10.1.2.3", "203.0.113.5", "2001:db8::5", "::ffff:10.0.0.1"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    let prefix = |a: &str, len| IpPrefix {
        addr: a.parse().expect("address"),
        len,
    };
    let trusted = vec![
        vec![],
        vec![prefix("0.0.0.0", 0), prefix("::", 0)],
        vec![prefix("10.0.0.0", 8)],
    ];
    (
        prop::sample::select(peers),
        prop::array::uniform6(any::<bool>()),
        prop::sample::select(vec!["x-forwarded-for", "forwarded", "x-real-ip"]),
        prop::sample::select(trusted),
        any::<bool>(),
    )
        .prop_map(|(peer, b, fwd, trusted, has_body)| Setting {
            peer,
            tls: b[0],
            underscores: b[1],
            use_forwarded_headers: b[2],
            enable_real_ip: b[3],
            compute_full_forwarded_for: b[4],
            forwarded_for_header: fwd,
            trusted,
            has_body: has_body && b[5],
        })
}

/// The fields hyper would hand over (invalid names or values never reach the proxy).
fn header_map(h: &Head) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in &h.fields {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            m.append(n, v);
        }
    }
    m
}

fn tokens(h: &HeaderMap, name: &HeaderName) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Fields the proxy sets itself after removing hop-by-hop ones.
fn set_by_proxy(n: &HeaderName) -> bool {
    [
        HOST,
        FORWARDED,
        X_FORWARDED_FOR,
        X_FORWARDED_HOST,
        X_FORWARDED_PORT,
        X_FORWARDED_PROTO,
        X_FORWARDED_SCHEME,
        X_SCHEME,
        X_REAL_IP,
        X_REQUEST_ID,
        TRANSFER_ENCODING,
        CONNECTION,
        COOKIE,
    ]
    .contains(n)
}

fn check(h: &Head, s: &Setting) -> Result<(), TestCaseError> {
    let (Ok(method), Ok(uri)) = (
        Method::from_bytes(h.method.as_bytes()),
        h.target.parse::<Uri>(),
    ) else {
        // hyper answers 400 before the proxy sees it.
        return Ok(());
    };
    let mut headers = header_map(h);
    let trust = TrustConfig {
        use_forwarded_headers: s.use_forwarded_headers,
        enable_real_ip: s.enable_real_ip,
        forwarded_for_header: HeaderName::from_static(s.forwarded_for_header),
        compute_full_forwarded_for: s.compute_full_forwarded_for,
        use_proxy_protocol: false,
        trusted: s.trusted.clone(),
        https_port: 443,
    };
    // ingress-nginx's default `ignore-invalid-headers: true`.
    drop_invalid_names(&mut headers, s.underscores);
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || (s.underscores && b == b'_');
    let all_valid = headers.keys().all(|k| k.as_str().bytes().all(valid));
    prop_assert!(all_valid);
    let local = SocketAddr::from(([198, 18, 0, 2], if s.tls { 443 } else { 80 }));
    let origin = trust.origin(SocketAddr::new(s.peer, 40000), None, local, s.tls);
    let client = origin.client(&trust, &headers);
    let target = match request_target::resolve(&method, h.version, &uri, &headers) {
        Ok(t) => t,
        Err(r) => {
            prop_assert!(
                r.status == StatusCode::BAD_REQUEST
                    || r.status == StatusCode::METHOD_NOT_ALLOWED
                    || r.status == StatusCode::NOT_IMPLEMENTED,
                "{r:?}"
            );
            return Ok(());
        }
    };
    prop_assert!(method != Method::CONNECT);
    if !(target.host.is_empty() && h.version < Version::HTTP_11) {
        prop_assert!(
            authority::validate(&target.host).is_ok(),
            "{:?}",
            target.host
        );
    }
    let path = target.path_and_query.path();
    prop_assert!(path.starts_with('/'), "{path}");
    prop_assert!(
        path.split('/').all(|seg| seg != "." && seg != ".."),
        "dot segment in {path}"
    );

    let upgrade = h.version == Version::HTTP_11 && is_upgrade(&headers);
    let named: Vec<String> = tokens(&headers, &CONNECTION);
    strip_hop_by_hop(&mut headers, upgrade);
    let id = add_forwarding(
        &mut headers,
        &client,
        &target.host,
        &trust.forwarded_for_header,
    );
    if let Ok(v) = HeaderValue::from_str(&target.host) {
        headers.insert(HOST, v);
    }
    for_http1_upstream(&mut headers, s.has_body);

    let count = |n: &HeaderName| headers.get_all(n).iter().count();
    for n in ["keep-alive", "proxy-connection"] {
        prop_assert_eq!(count(&HeaderName::from_static(n)), 0, "{}", n);
    }
    if upgrade {
        prop_assert_eq!(tokens(&headers, &CONNECTION), vec!["upgrade".to_string()]);
        prop_assert_eq!(tokens(&headers, &UPGRADE), vec!["websocket".to_string()]);
    } else {
        prop_assert_eq!(count(&CONNECTION), 0);
        prop_assert_eq!(count(&UPGRADE), 0);
    }
    if s.has_body && headers.contains_key(TRAILER) {
        prop_assert_eq!(
            tokens(&headers, &TRANSFER_ENCODING),
            vec!["chunked".to_string()]
        );
    } else {
        prop_assert_eq!(count(&TRANSFER_ENCODING), 0);
    }
    let te = tokens(&headers, &TE);
    prop_assert!(te.is_empty() || te == ["trailers"], "TE {te:?}");
    for t in named {
        if let Ok(n) = HeaderName::from_bytes(t.as_bytes())
            && !set_by_proxy(&n)
            && n != TE
            && n != TRAILER
            && !(upgrade && n == UPGRADE)
        {
            prop_assert_eq!(count(&n), 0, "{} named in Connection was forwarded", n);
        }
    }
    if !target.host.is_empty() {
        let hosts: Vec<_> = headers.get_all(HOST).iter().collect();
        prop_assert_eq!(hosts.len(), 1);
        prop_assert_eq!(hosts[0].as_bytes(), target.host.as_bytes());
    }
    for n in [
        &X_FORWARDED_FOR,
        &X_REAL_IP,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_SCHEME,
        &X_SCHEME,
        &X_FORWARDED_PORT,
        &X_REQUEST_ID,
    ] {
        prop_assert_eq!(count(n), 1, "{}", n);
    }
    prop_assert!(count(&X_FORWARDED_HOST) <= 1);
    prop_assert!(count(&FORWARDED) <= 1);
    // The client's raw forwarded-for lines, joined (ingress-nginx's template).
    prop_assert!(count(&X_ORIGINAL_FORWARDED_FOR) <= 1);
    prop_assert_eq!(count(&HeaderName::from_static("proxy")), 0, "httpoxy");
    prop_assert!(
        count(&COOKIE) <= 1,
        "more than one Cookie to an HTTP/1 upstream"
    );
    prop_assert!(!id.is_empty());
    prop_assert_eq!(headers.get(X_REQUEST_ID), Some(&id));
    let real_ip = headers.get(X_REAL_IP).and_then(|v| v.to_str().ok());
    prop_assert!(
        real_ip.is_some_and(|v| v.parse::<IpAddr>().is_ok()),
        "X-Real-IP {real_ip:?}"
    );
    let believed = s.use_forwarded_headers && trust.trusts(s.peer.to_canonical());
    if !believed {
        let proto = if s.tls { "https" } else { "http" };
        prop_assert_eq!(
            headers.get(X_FORWARDED_PROTO).map(|v| v.as_bytes()),
            Some(proto.as_bytes())
        );
        prop_assert_eq!(
            headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
            real_ip
        );
    }
    if let Some(f) = headers.get(FORWARDED).and_then(|v| v.to_str().ok()) {
        // Quoted strings are closed and our element, last, names `for` and `proto`
        // (RFC 7239 §4).
        prop_assert!(f.matches('"').count() % 2 == 0, "Forwarded {f}");
        let ours = split_unquoted(f, ',').pop().unwrap_or_default();
        let keys: Vec<String> = split_unquoted(&ours, ';')
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(k, _)| k.trim().to_ascii_lowercase())
            .collect();
        prop_assert!(keys.iter().any(|k| k == "for"), "Forwarded {f}");
        prop_assert!(keys.iter().any(|k| k == "proto"), "Forwarded {f}");
    }
    Ok(())
}

/// `s` split at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c == sep && !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A response from an endpoint: after hop-by-hop removal none is left (nor what its
/// `Connection` named), `Upgrade` and `Connection: upgrade` only on a `101`.
fn check_response(h: &Head, upgraded: bool) -> Result<(), TestCaseError> {
    let mut headers = header_map(h);
    let named = tokens(&headers, &CONNECTION);
    strip_hop_by_hop(&mut headers, upgraded);
    for n in ["keep-alive", "proxy-connection", "transfer-encoding"] {
        prop_assert!(!headers.contains_key(n), "{}", n);
    }
    if upgraded {
        prop_assert_eq!(tokens(&headers, &CONNECTION), vec!["upgrade".to_string()]);
    } else {
        prop_assert!(!headers.contains_key(CONNECTION));
        prop_assert!(!headers.contains_key(UPGRADE));
    }
    for t in named {
        if let Ok(n) = HeaderName::from_bytes(t.as_bytes())
            && n != TE
            && n != TRAILER
            && n != CONNECTION
            && !(upgraded && n == UPGRADE)
        {
            prop_assert!(!headers.contains_key(&n), "{} named in Connection kept", n);
        }
    }
    Ok(())
}

#[test]
fn seeds_are_accepted() {
    let s = Setting {
        peer: "203.0.113.5".parse().expect("address"),
        tls: false,
        underscores: false,
        use_forwarded_headers: false,
        enable_real_ip: false,
        compute_full_forwarded_for: false,
        forwarded_for_header: "x-forwarded-for",
        trusted: vec![],
        has_body: false,
    };
    for (name, text) in corpus("headers") {
        let h = parse_head(&text);
        check(&h, &s).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_request_headers_come_out_valid(h in head(), s in setting()) {
        check(&h, &s)?;
    }

    #[test]
    fn random_response_headers_lose_hop_by_hop(h in head(), upgraded in any::<bool>()) {
        check_response(&h, upgraded)?;
    }
}
