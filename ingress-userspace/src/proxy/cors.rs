//! The headers a route adds to its responses ([`ResponsePolicy`]): ingress-nginx's CORS
//! (its template's `CORS` block) and `custom-headers`.
//!
//! CORS, as ingress-nginx: with `cors-allow-origin: *` every request is allowed and gets
//! `Access-Control-Allow-Origin: *`; with a list, a request whose `Origin` matches an entry
//! (ignoring ASCII case; `*.` matches one DNS label) gets its own `Origin` echoed, and any other
//! request gets no CORS header at all (and its `OPTIONS` goes to the pod). An allowed `OPTIONS`
//! request is a preflight: answered 204 here. nginx's template also sets `Content-Type` and
//! `Content-Length: 0` on it; nginx drops the type on a 204, and RFC 9110 section 8.6 forbids
//! `Content-Length` in one, so the 204 has neither. All other responses of the route (the
//! pod's, redirects, refusals) get the headers, replacing the pod's (`more_set_headers`).
//!
//! Gateway API `HTTPCORSFilter` (v1.6): `allowOrigins` entries match scheme, host and port,
//! a leading `*.` label standing for one or more labels. The `*` entries follow
//! `allowCredentials` (not whether the request carries cookies): without it, `*` is sent
//! (`allowOrigins`) or what the preflight asks for is echoed, `*` when it asks for nothing;
//! with it, `*` is never sent: the request's `Origin` is echoed (none: no CORS headers), the
//! asked method and headers are echoed and left out when not asked, and `*` is dropped from
//! `exposeHeaders`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};

use super::upstream::ProxyBody;
use crate::model::{Cors, CorsDialect, CorsOrigins, ResponsePolicy};

/// What a route does with one request's response.
#[derive(Debug, Default)]
pub struct RouteHeaders {
    /// An allowed CORS preflight: answer [`preflight`] with `set` instead of forwarding.
    pub preflight: bool,
    /// Set on the response, replacing headers of the same name.
    pub set: HeaderMap,
}

/// The headers `policy` sets on the response to a request with this method and headers.
pub fn for_request(policy: &ResponsePolicy, method: &Method, req: &HeaderMap) -> RouteHeaders {
    let mut out = RouteHeaders::default();
    if policy.denied.is_some() {
        return out;
    }
    // `custom-headers` first: CORS headers of the same name win, as nginx.tmpl sets them in
    // the location's `if ($cors ...)` blocks, which headers-more applies after the
    // location's own `more_set_headers`.
    for (name, value) in &policy.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.set.insert(n, v);
        }
    }
    if let Some(cors) = &policy.cors
        && let Some(origin) = allowed_origin(cors, req.get(header::ORIGIN))
    {
        out.preflight = method == Method::OPTIONS;
        cors_headers(cors, origin, req, &mut out.set);
    }
    out
}

/// The 204 answering a preflight (headers added by the caller).
pub fn preflight() -> Response<ProxyBody> {
    let mut resp = Response::new(Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// `Access-Control-Allow-Origin` for an allowed request, `None` for any other.
fn allowed_origin(cors: &Cors, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    let gateway = cors.dialect == CorsDialect::GatewayApi;
    match &cors.allow_origin {
        // Gateway API v1.6: with `allowCredentials: true` the answer must not be `*` but the
        // request's `Origin` (Fetch, "CORS protocol and credentials"); a request without one
        // is no CORS request and gets no CORS headers.
        CorsOrigins::Any if gateway && cors.allow_credentials => origin.cloned(),
        CorsOrigins::Any => Some(HeaderValue::from_static("*")),
        CorsOrigins::List(list) => {
            let o = origin?;
            let s = o.to_str().ok()?;
            let matches = |p: &String| match cors.dialect {
                CorsDialect::IngressNginx => origin_matches(p, s),
                CorsDialect::GatewayApi => gateway_origin_matches(p, s),
            };
            list.iter().any(matches).then(|| o.clone())
        }
    }
}

/// `pattern` as `HTTPCORSFilter.allowOrigins` reads it: `*` alone is any origin; a `*` as the
/// host's first label stands for one or more labels; otherwise scheme, host and port match
/// exactly (ignoring ASCII case).
pub fn gateway_origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once("://*.") {
        None => pattern.eq_ignore_ascii_case(origin),
        Some((scheme, suffix)) => origin
            .split_once("://")
            .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
            .and_then(|(_, host)| {
                let split = host.len().checked_sub(suffix.len() + 1)?;
                let (labels, rest) = (host.get(..split)?, host.get(split..)?);
                Some(
                    !labels.is_empty()
                        && rest.starts_with('.')
                        && rest[1..].eq_ignore_ascii_case(suffix)
                        && labels.split('.').all(|l| {
                            !l.is_empty()
                                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        }),
                )
            })
            .unwrap_or(false),
    }
}

/// `pattern` as ingress-nginx's `buildOriginRegex` (a case-insensitive match where the one `*`
/// stands for `[A-Za-z0-9-]+`), anchored at both ends.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(origin),
        Some((before, after)) => {
            origin.len() > before.len() + after.len()
                && origin.is_char_boundary(before.len())
                && origin.is_char_boundary(origin.len() - after.len())
                && origin[..before.len()].eq_ignore_ascii_case(before)
                && origin[origin.len() - after.len()..].eq_ignore_ascii_case(after)
                && origin[before.len()..origin.len() - after.len()]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
    }
}

fn cors_headers(cors: &Cors, origin: HeaderValue, req: &HeaderMap, set: &mut HeaderMap) {
    set.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if cors.allow_credentials {
        set.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    // Translation checked these against ingress-nginx's patterns; a value that still is not a
    // header value is left out rather than sent broken.
    let mut put = |name: HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v)
            && !v.is_empty()
        {
            set.insert(name, v);
        }
    };
    let gateway = cors.dialect == CorsDialect::GatewayApi;
    // Gateway API v1.6, `*` in allowMethods or allowHeaders: what the preflight asks for
    // (`Access-Control-Request-Method`/`-Headers`) is allowed and echoed. Without one, the
    // answer is `*` when allowCredentials is false and no header at all when it is true (`*`
    // must not be sent with credentials).
    let asked = |value: &str, request_header: HeaderName| -> String {
        if !(gateway && has_wildcard(value)) {
            return value.to_string();
        }
        match req.get(request_header).and_then(|v| v.to_str().ok()) {
            Some(v) => v.to_string(),
            None if cors.allow_credentials => String::new(),
            None => "*".into(),
        }
    };
    put(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &asked(&cors.allow_methods, header::ACCESS_CONTROL_REQUEST_METHOD),
    );
    put(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        &asked(&cors.allow_headers, header::ACCESS_CONTROL_REQUEST_HEADERS),
    );
    if let Some(e) = &cors.expose_headers {
        // Gateway API v1.6: `*` in exposeHeaders only without allowCredentials; with them
        // the named headers are still exposed, the wildcard is dropped.
        let e = if gateway && cors.allow_credentials {
            e.split(',')
                .map(str::trim)
                .filter(|h| *h != "*" && !h.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            e.clone()
        };
        put(header::ACCESS_CONTROL_EXPOSE_HEADERS, &e);
    }
    put(header::ACCESS_CONTROL_MAX_AGE, &cors.max_age.to_string());
}

/// A joined `allowMethods`/`allowHeaders` list with the `*` entry.
fn has_wildcard(list: &str) -> bool {
    list.split(',').any(|v| v.trim() == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: CorsOrigins) -> ResponsePolicy {
        ResponsePolicy {
            cors: Some(Cors {
                allow_origin: origins,
                allow_methods: "GET, POST".into(),
                allow_headers: "X-A".into(),
                allow_credentials: true,
                expose_headers: None,
                max_age: 60,
                dialect: CorsDialect::IngressNginx,
            }),
            ..Default::default()
        }
    }

    fn with_origin(o: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = o {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn wildcard_subdomain_is_one_label_and_case_insensitive() {
        let p = "https://*.example.com";
        assert!(origin_matches(p, "https://app.example.com"));
        assert!(origin_matches(p, "HTTPS://App-1.Example.COM"));
        assert!(!origin_matches(p, "https://a.b.example.com"));
        assert!(!origin_matches(p, "https://.example.com"));
        assert!(!origin_matches(p, "https://example.com"));
        assert!(!origin_matches(p, "https://app.example.com.evil.test"));
        assert!(!origin_matches(p, "http://app.example.com"));
        assert!(origin_matches("https://a.test:8443", "https://A.test:8443"));
        assert!(!origin_matches("https://a.test", "https://a.test:8443"));
    }

    #[test]
    fn listed_origins_are_echoed_others_get_nothing() {
        let p = cors(CorsOrigins::List(vec!["https://a.test".into()]));
        let h = for_request(&p, &Method::OPTIONS, &with_origin(Some("https://a.test")));
        assert!(h.preflight);
        assert_eq!(h.set[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
        let h = for_request(&p, &Method::OPTIONS, &with_origin(Some("https://b.test")));
        assert!(!h.preflight && h.set.is_empty());
        let h = for_request(&p, &Method::GET, &with_origin(None));
        assert!(!h.preflight && h.set.is_empty());
        // `*` answers every request, with or without Origin.
        let h = for_request(
            &cors(CorsOrigins::Any),
            &Method::OPTIONS,
            &with_origin(None),
        );
        assert!(h.preflight);
        assert_eq!(h.set[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(h.set[header::ACCESS_CONTROL_MAX_AGE], "60");
    }

    /// A `custom-headers` header of a CORS header's name loses to the CORS value (nginx.tmpl's
    /// `if ($cors ...)` blocks are applied after the location's `more_set_headers`); other
    /// custom headers stay.
    #[test]
    fn cors_headers_win_over_custom_headers_of_the_same_name() {
        let mut p = cors(CorsOrigins::List(vec!["https://ok.test".into()]));
        p.headers = vec![
            (
                "access-control-allow-origin".into(),
                "https://custom.test".into(),
            ),
            ("x-custom".into(), "one".into()),
        ];
        let h = for_request(&p, &Method::OPTIONS, &with_origin(Some("https://ok.test")));
        assert_eq!(
            h.set[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://ok.test"
        );
        assert_eq!(h.set["x-custom"], "one");
        // Another origin: no CORS headers, so the custom value stands.
        let h = for_request(&p, &Method::GET, &with_origin(Some("https://b.test")));
        assert_eq!(
            h.set[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://custom.test"
        );
    }

    /// The HTTPCORSFilter expectations of conformance/tests/httproute-cors.go (the `cors-1`,
    /// `cors-2`, `cors-wildcard-origin` and `cors-wildcard-methods-headers` routes).
    #[test]
    fn gateway_api_cors_as_the_conformance_suite() {
        let gw = |origins: Vec<&str>, methods: &str, headers: &str, credentials: bool| {
            let allow_origin = if origins == ["*"] {
                CorsOrigins::Any
            } else {
                CorsOrigins::List(origins.into_iter().map(String::from).collect())
            };
            ResponsePolicy {
                cors: Some(Cors {
                    allow_origin,
                    allow_methods: methods.into(),
                    allow_headers: headers.into(),
                    allow_credentials: credentials,
                    expose_headers: None,
                    max_age: 5,
                    dialect: CorsDialect::GatewayApi,
                }),
                ..Default::default()
            }
        };
        let ask =
            |p: &ResponsePolicy, m: Method, origin: &str, rm: Option<&str>, rh: Option<&str>| {
                let mut h = with_origin(Some(origin));
                if let Some(v) = rm {
                    h.insert(
                        header::ACCESS_CONTROL_REQUEST_METHOD,
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                if let Some(v) = rh {
                    h.insert(
                        header::ACCESS_CONTROL_REQUEST_HEADERS,
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                for_request(p, &m, &h)
            };
        let get =
            |h: &RouteHeaders, n: HeaderName| h.set.get(n).map(|v| v.to_str().unwrap().to_string());
        let cors1 = gw(
            vec!["https://www.foo.com", "https://*.bar.com"],
            "GET, OPTIONS",
            "x-header-1, x-header-2",
            true,
        );
        for origin in [
            "https://www.foo.com",
            "https://www.bar.com",
            "https://xpto.www.bar.com",
        ] {
            let h = ask(
                &cors1,
                Method::OPTIONS,
                origin,
                Some("GET"),
                Some("x-header-1, x-header-2"),
            );
            assert!(h.preflight, "{origin}");
            assert_eq!(
                get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
                Some(origin)
            );
            assert_eq!(
                get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS).as_deref(),
                Some("true")
            );
            let h = ask(&cors1, Method::GET, origin, None, None);
            assert!(!h.preflight);
            assert_eq!(
                get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
                Some(origin)
            );
        }
        for origin in [
            "https://foobar.com",
            "https://bar.com",
            "http://www.bar.com",
        ] {
            let h = ask(&cors1, Method::OPTIONS, origin, Some("GET"), None);
            assert!(!h.preflight, "{origin}");
            assert_eq!(
                get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
                None,
                "{origin}"
            );
        }
        // cors-2: `*` methods, no credentials.
        let cors2 = gw(vec!["https://www.foo.com"], "*", "", false);
        let h = ask(
            &cors2,
            Method::OPTIONS,
            "https://www.foo.com",
            Some("POST"),
            None,
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_METHODS).as_deref(),
            Some("POST")
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), None);
        // cors-wildcard-origin: `*` without credentials answers `*`, ports included.
        let any = gw(vec!["*"], "PUT", "", false);
        for origin in ["https://foobar.com", "https://foobar.com:12345"] {
            let h = ask(&any, Method::OPTIONS, origin, Some("PUT"), None);
            assert!(h.preflight);
            assert_eq!(
                get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
                Some("*")
            );
            assert_eq!(
                get(&h, header::ACCESS_CONTROL_ALLOW_METHODS).as_deref(),
                Some("PUT")
            );
        }
        // cors-wildcard-methods-headers: with credentials everything asked is echoed.
        let all = gw(vec!["*"], "*", "*", true);
        let h = ask(
            &all,
            Method::OPTIONS,
            "https://other.foo.com",
            Some("PUT"),
            Some("x-header-1, x-header-2"),
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some("https://other.foo.com")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_METHODS).as_deref(),
            Some("PUT")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS).as_deref(),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS).as_deref(),
            Some("true")
        );
    }

    /// Gateway API v1.6 `HTTPCORSFilter`: the `*` rules follow `allowCredentials`. With it,
    /// no `*` is sent: the origin is echoed, unasked methods and headers are left out, `*` is
    /// dropped from the exposed headers; a request without `Origin` gets nothing. Without it,
    /// `*` stands.
    #[test]
    fn gateway_api_wildcards_follow_allow_credentials() {
        let gw = |credentials: bool| ResponsePolicy {
            cors: Some(Cors {
                allow_origin: CorsOrigins::Any,
                allow_methods: "*".into(),
                allow_headers: "x-a, *".into(),
                allow_credentials: credentials,
                expose_headers: Some("*, x-header-3".into()),
                max_age: 5,
                dialect: CorsDialect::GatewayApi,
            }),
            ..Default::default()
        };
        let simple = with_origin(Some("https://o.test"));
        fn get(h: &RouteHeaders, n: HeaderName) -> Option<&str> {
            h.set.get(n).map(|v| v.to_str().unwrap())
        }

        let h = for_request(&gw(true), &Method::GET, &simple);
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://o.test")
        );
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), None);
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("x-header-3")
        );
        let h = for_request(&gw(true), &Method::OPTIONS, &with_origin(None));
        assert!(!h.preflight && h.set.is_empty());

        let mut asked = simple.clone();
        asked.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PATCH"),
        );
        asked.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-b"),
        );
        let h = for_request(&gw(true), &Method::OPTIONS, &asked);
        assert!(h.preflight);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), Some("PATCH"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), Some("x-b"));

        let h = for_request(&gw(false), &Method::GET, &simple);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), Some("*"));
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_HEADERS), Some("*"));
        assert_eq!(
            get(&h, header::ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("*, x-header-3")
        );
        let h = for_request(&gw(false), &Method::OPTIONS, &asked);
        assert_eq!(get(&h, header::ACCESS_CONTROL_ALLOW_METHODS), Some("PATCH"));
    }
}
