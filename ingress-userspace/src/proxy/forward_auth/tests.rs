//! Expected values from ingress-nginx's template (the `/_external-auth-` location,
//! `buildAuthSignURL`, `buildAuthResponseHeaders`) and nginx's `auth_request` module.

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;
use crate::model::{ForwardAuth, nginx_var::NginxString};

fn client() -> Client {
    Client {
        addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        addr_text: HeaderValue::from_static("203.0.113.7"),
        forwarded_for: HeaderValue::from_static("203.0.113.7"),
        forwarded_prev: None,
        forwarded_node: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        proto: HeaderValue::from_static("https"),
        host: None,
        port: HeaderValue::from_static("443"),
        redirect_port: HeaderValue::from_static("443"),
    }
}

fn auth(url: &str) -> ForwardAuth {
    ForwardAuth {
        global: false,
        url: NginxString::parse(url).unwrap(),
        host: NginxString::parse("$host").unwrap(),
        method: None,
        signin: None,
        signin_relative: false,
        response_headers: vec!["X-Auth-Request-User".into(), "X-Auth-Request-Email".into()],
        request_redirect: None,
        always_set_cookie: false,
        cache: None,
        proxy_set_headers: Vec::new(),
        service: None,
    }
}

fn with<'a>(headers: &'a HeaderMap, client: &'a Client, id: &'a HeaderValue) -> Request<'a> {
    Request {
        host: "App.test:8443",
        method: &Method::POST,
        headers,
        request_uri: "/a%20b/../c?x=1&y=2",
        path: "/c",
        query: Some("x=1&y=2"),
        client,
        tls: true,
        request_id: id,
        route_host: "app.test",
        route_path: "/",
    }
}

fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Answer {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_static(v));
    }
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers: h,
    }
}

#[test]
fn the_auth_request_carries_what_ingress_nginx_sends() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("cookie", "_oauth2_proxy=abc"),
        ("authorization", "Bearer t"),
        ("content-length", "5"),
        ("content-type", "text/plain"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "evil.test"),
        ("x-original-url", "http://spoofed/"),
        ("x-sent-from", "spoofed"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("x-request-id", "spoofed"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    let (c, id) = (client(), HeaderValue::from_static("0123abcd"));
    let req = with(&h, &c, &id);
    let a = auth("https://$host/oauth2/auth");
    let out = auth_request_headers(&a, &req);
    let get = |n: &str| out.get(n).map(|v| v.to_str().unwrap().to_string());
    // The client's own headers pass (nginx `proxy_pass_request_headers on`).
    assert_eq!(get("cookie").as_deref(), Some("_oauth2_proxy=abc"));
    assert_eq!(get("authorization").as_deref(), Some("Bearer t"));
    assert_eq!(get("content-type").as_deref(), Some("text/plain"));
    // No body: `proxy_pass_request_body off`, `Content-Length ""`.
    assert_eq!(get("content-length"), None);
    assert_eq!(get("x-forwarded-proto"), None);
    assert_eq!(get("x-forwarded-host"), None);
    assert_eq!(get("connection"), None);
    assert_eq!(get("x-hop"), None);
    // `Host {{ $externalAuth.Host }}`: the URL's host name, expanded.
    assert_eq!(get("host").as_deref(), Some("app.test"));
    // `$scheme://$http_host$request_uri`: the target as sent.
    assert_eq!(
        get("x-original-url").as_deref(),
        Some("https://App.test:8443/a%20b/../c?x=1&y=2")
    );
    assert_eq!(get("x-original-method").as_deref(), Some("POST"));
    assert_eq!(
        get("x-sent-from").as_deref(),
        Some("nginx-ingress-controller")
    );
    assert_eq!(get("x-real-ip").as_deref(), Some("203.0.113.7"));
    assert_eq!(get("x-forwarded-for").as_deref(), Some("203.0.113.7"));
    assert_eq!(get("x-request-id").as_deref(), Some("0123abcd"));
    assert_eq!(
        get("x-auth-request-redirect").as_deref(),
        Some("/a%20b/../c?x=1&y=2")
    );
    // Only with auth-method.
    assert_eq!(get("x-original-uri"), None);

    let mut a = a;
    a.method = Some("GET".into());
    a.request_redirect = Some(NginxString::parse("https://$host/home").unwrap());
    a.proxy_set_headers = vec![
        (
            "X-Client".into(),
            NginxString::parse("$remote_addr").unwrap(),
        ),
        (
            "X-Empty".into(),
            NginxString::parse("$http_x_none").unwrap(),
        ),
    ];
    let out = auth_request_headers(&a, &req);
    let get = |n: &str| out.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        get("x-original-uri").as_deref(),
        Some("/a%20b/../c?x=1&y=2")
    );
    assert_eq!(get("x-scheme").as_deref(), Some("https"));
    assert_eq!(
        get("x-auth-request-redirect").as_deref(),
        Some("https://app.test/home")
    );
    assert_eq!(get("x-client").as_deref(), Some("203.0.113.7"));
    assert_eq!(get("x-empty"), None);
}

#[test]
fn variables_of_the_request() {
    let mut h = HeaderMap::new();
    h.append("x-user", HeaderValue::from_static("a"));
    h.append("x-user", HeaderValue::from_static("b"));
    h.append("cookie", HeaderValue::from_static("s=1; t=2"));
    let (c, id) = (client(), HeaderValue::from_static("rid"));
    let req = with(&h, &c, &id);
    let x = |t: &str| NginxString::parse(t).unwrap().expand(&req);
    assert_eq!(x("$host"), "app.test");
    assert_eq!(x("$http_host"), "App.test:8443");
    assert_eq!(
        x("$escaped_request_uri"),
        "%2Fa%2520b%2F..%2Fc%3Fx%3D1%26y%3D2"
    );
    assert_eq!(x("$uri$is_args$args"), "/c?x=1&y=2");
    assert_eq!(
        x("$scheme $pass_access_scheme $request_method"),
        "https https POST"
    );
    assert_eq!(
        x("$http_x_user|$cookie_t|$arg_y|$arg_z|$req_id"),
        "a, b|2|2||rid"
    );
    // `$best_http_host`: the believed X-Forwarded-Host element, else `$http_host`.
    assert_eq!(x("$best_http_host"), "App.test:8443");
    let behind = Client {
        host: Some(HeaderValue::from_static("public.example")),
        ..client()
    };
    let req = with(&h, &behind, &id);
    let x = |t: &str| NginxString::parse(t).unwrap().expand(&req);
    assert_eq!(
        x("$best_http_host|$http_host"),
        "public.example|App.test:8443"
    );
}

/// The variables ingress-nginx's docs use in examples of auth-cache-key, upstream-hash-by and
/// the auth URLs: `$remote_user$http_authorization` (annotations.md, configmap.md
/// `global-auth-cache-key`), `$binary_remote_addr`, `$server_name`; and the rest of the set
/// the docs name all parse.
#[test]
fn documented_example_variables_expand() {
    for text in [
        "$remote_user$http_authorization",
        "$binary_remote_addr",
        "$request_uri",
        "$host$request_uri",
        "${request_uri}",
        "$escaped_request_uri",
        "$scheme://$host$uri$is_args$args",
        "$query_string",
        "$pass_access_scheme://$best_http_host$request_uri",
        "$remote_addr$server_name",
        "$arg_x$cookie_y$http_z",
    ] {
        assert!(NginxString::parse(text).is_ok(), "{text}");
    }
    let mut h = HeaderMap::new();
    // `bob:pa:ss` (the user ends at the first colon).
    h.insert(
        "authorization",
        HeaderValue::from_static("Basic Ym9iOnBhOnNz"),
    );
    let (c, id) = (client(), HeaderValue::from_static("rid"));
    let req = with(&h, &c, &id);
    let x = |t: &str| NginxString::parse(t).unwrap().expand(&req);
    assert_eq!(
        x("$remote_user$http_authorization"),
        "bobBasic Ym9iOnBhOnNz"
    );
    assert_eq!(x("$binary_remote_addr"), "\u{cb}\u{0}\u{71}\u{7}");
    assert_eq!(x("$server_name"), "app.test");
    let catch_all = Request {
        route_host: "*",
        ..with(&h, &c, &id)
    };
    assert_eq!(
        NginxString::parse("$server_name")
            .unwrap()
            .expand(&catch_all),
        "_"
    );
    // Not Basic, or no header: empty, as nginx.
    h.insert("authorization", HeaderValue::from_static("Bearer t"));
    let req = with(&h, &c, &id);
    assert_eq!(
        NginxString::parse("[$remote_user]").unwrap().expand(&req),
        "[]"
    );
}

#[test]
fn two_hundreds_let_through_with_the_response_headers() {
    let h = HeaderMap::new();
    let (c, id) = (client(), HeaderValue::from_static("rid"));
    let req = with(&h, &c, &id);
    let a = auth("http://auth.test/");
    let ok = decide(
        &a,
        &req,
        &answer(
            202,
            &[
                ("x-auth-request-user", "alice"),
                ("set-cookie", "s=1"),
                ("x-other", "x"),
            ],
        ),
    )
    .unwrap();
    // Each listed header, its value or removed (an empty `proxy_set_header` value).
    let hs: Vec<(String, Option<String>)> = ok
        .upstream_headers
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                v.as_ref().map(|v| v.to_str().unwrap().into()),
            )
        })
        .collect();
    assert_eq!(
        hs,
        [
            ("x-auth-request-user".into(), Some("alice".into())),
            ("x-auth-request-email".into(), None)
        ]
    );
    assert_eq!(ok.cookies.values, ["s=1"]);
    assert!(!ok.cookies.always);
    // `add_header` without `always`: only the statuses nginx lists.
    let mut resp = HeaderMap::new();
    ok.cookies.apply(StatusCode::NOT_FOUND, &mut resp);
    assert!(resp.is_empty());
}

#[test]
fn refusals_follow_auth_request() {
    let h = HeaderMap::new();
    let (c, id) = (client(), HeaderValue::from_static("rid"));
    let req = with(&h, &c, &id);
    let mut a = auth("http://auth.test/");
    let r = decide(&a, &req, &answer(401, &[("www-authenticate", "Bearer")])).unwrap_err();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers,
        [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))]
    );
    assert_eq!(decide(&a, &req, &answer(403, &[])).unwrap_err().status, 403);
    for other in [302, 404, 500, 503] {
        assert_eq!(
            decide(&a, &req, &answer(other, &[])).unwrap_err().status,
            500,
            "{other}"
        );
    }
    a.signin = Some(
        NginxString::parse(&crate::model::translate::forward_auth::signin_url(
            "https://auth.test/start",
            "rd",
        ))
        .unwrap(),
    );
    let r = decide(&a, &req, &answer(401, &[("set-cookie", "csrf=1")])).unwrap_err();
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers[0].1,
        "https://auth.test/start?rd=https://App.test:8443%2Fa%2520b%2F..%2Fc%3Fx%3D1%26y%3D2"
    );
    // The sign-in location's own `add_header Set-Cookie` (302 is in nginx's list).
    assert!(r.cookies.always || ADD_HEADER_STATUSES.contains(&302));
    assert_eq!(r.cookies.values, ["csrf=1"]);
    // 403 is 403 even with a sign-in URL.
    assert_eq!(decide(&a, &req, &answer(403, &[])).unwrap_err().status, 403);
}

/// A sign-in path is completed where the `Location` is sent, as the sign-in location's
/// `absolute_redirect` does: the connection's scheme and the Host's name, never its port
/// (`port_in_redirect off` there, whatever `use-port-in-redirects` says); under the
/// ConfigMap's `relative-redirects` it is sent as written.
#[test]
fn a_signin_path_is_completed_unless_relative() {
    let h = HeaderMap::new();
    let (c, id) = (client(), HeaderValue::from_static("rid"));
    let req = with(&h, &c, &id);
    let mut a = auth("http://auth.test/");
    a.signin = Some(
        NginxString::parse(&crate::model::translate::forward_auth::signin_url(
            "/oauth2/start",
            "rd",
        ))
        .unwrap(),
    );
    let rd = "rd=https://App.test:8443%2Fa%2520b%2F..%2Fc%3Fx%3D1%26y%3D2";
    let location = |a: &ForwardAuth| {
        let r = decide(a, &req, &answer(401, &[])).unwrap_err();
        assert_eq!(r.status, 302);
        r.headers[0].1.to_str().unwrap().to_string()
    };
    assert_eq!(location(&a), format!("https://app.test/oauth2/start?{rd}"));
    // `//x` stays on the host: nginx prefixes any `/`.
    a.signin = Some(NginxString::parse("//evil.example/x").unwrap());
    assert_eq!(location(&a), "https://app.test//evil.example/x");
    a.signin = Some(
        NginxString::parse(&crate::model::translate::forward_auth::signin_url(
            "/oauth2/start",
            "rd",
        ))
        .unwrap(),
    );
    a.signin_relative = true;
    assert_eq!(location(&a), format!("/oauth2/start?{rd}"));
}
