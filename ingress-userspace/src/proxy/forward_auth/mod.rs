//! External authentication of a route ([`ForwardAuth`]; ingress-nginx's `auth-url` family, nginx
//! `auth_request`), the second half of the route's authentication step after basic auth
//! ([`super::auth`]). One entry point, [`ForwardAuthenticator::check`].
//!
//! The auth request is what ingress-nginx's template sends from its `/_external-auth-` location:
//! the client's headers (no body, no `Content-Length`, no hop-by-hop fields, no
//! `X-Forwarded-Proto`), with `Host` the auth URL's host, `X-Original-URL`
//! (`$scheme://$http_host$request_uri`), `X-Original-Method`, `X-Request-ID` (the id the pod
//! gets too), `X-Auth-Request-Redirect` (`auth-request-redirect`, else `$request_uri`),
//! `X-Sent-From: nginx-ingress-controller`, `X-Real-IP`, `X-Forwarded-For` (the client, or the
//! full chain with `use-forwarded-headers` and `compute-full-forwarded-for`), with
//! `auth-method` also `X-Original-URI` and `X-Scheme`, then `auth-proxy-set-headers`. Unlike
//! nginx, a client's own `X-Forwarded-Host`, `-Port`, `-Scheme`, `-Prefix` and `Forwarded`
//! reach the auth service only from a trusted proxy: nothing unverified travels under those
//! names.
//!
//! Its answer, as nginx's `auth_request` module decides: 2xx lets the request through (its body
//! untouched: it was never read) with the `auth-response-headers` set on the upstream request
//! (replacing the client's; absent in the answer: removed); 401 is answered 401 with the auth
//! service's `WWW-Authenticate`, or, with `auth-signin`, 302 to the sign-in URL; 403 is 403;
//! any other status, a failed connection, an invalid URL or a timeout is 500. Never open.
//! The auth service's `Set-Cookie` goes on the client's answer as ingress-nginx's
//! `add_header Set-Cookie $auth_cookie` puts it there ([`Cookies`]).
//!
//! Where it goes ([`client`]): a Service the snapshot resolved
//! ([`AuthService`](crate::model::AuthService)) over the upstream pool (as a pod; HTTPS without
//! certificate verification, as ingress-nginx's backends), otherwise by the system's DNS: plain
//! HTTP over the upstream pool, HTTPS with rustls verifying against the webpki roots and SNI. Connect and send timeouts are the route's (`proxy-connect-timeout`,
//! `proxy-send-timeout`), the whole answer must come within its `proxy-read-timeout`.
//! Answers are cached per `auth-cache-key` ([`cache`]).

pub mod cache;
pub mod client;

use std::{sync::Arc, time::Duration};

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, StatusCode,
    header::{CONTENT_LENGTH, HOST, SET_COOKIE, WWW_AUTHENTICATE},
};

use super::{
    client_addr::Client,
    headers::{
        X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO, X_FORWARDED_SCHEME,
        X_ORIGINAL_FORWARDED_FOR, X_REAL_IP, X_REQUEST_ID, X_SCHEME, http_variable,
        strip_hop_by_hop,
    },
};
use crate::model::{
    ForwardAuth,
    nginx_var::{Var, VarSource, escape_uri_component, push_binary_addr},
};

/// [`super::REASON_HEADER`] values of this step's answers.
pub const DENIED: &str = "external auth: denied";
pub const FORBIDDEN: &str = "external auth: forbidden";
pub const SIGNIN: &str = "external auth: sign-in required";
pub const FAILED: &str = "external auth: auth service failed";

/// Statuses nginx's `add_header` (without `always`) adds a header to.
pub const ADD_HEADER_STATUSES: [u16; 10] = [200, 201, 204, 206, 301, 302, 303, 304, 307, 308];

/// Everything of the client request the auth request and the variables need.
pub struct Request<'a> {
    /// `host[:port]` as sent (`$http_host`).
    pub host: &'a str,
    pub method: &'a Method,
    /// The client's headers.
    pub headers: &'a HeaderMap,
    /// The target as the client sent it (`$request_uri`).
    pub request_uri: &'a str,
    /// The normalised path and the query (`$uri`, `$args`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub client: &'a Client,
    /// The client connection is TLS (`$scheme`).
    pub tls: bool,
    /// `X-Request-ID` of this request (sent to the auth service and the pod alike).
    pub request_id: &'a HeaderValue,
    /// The route's ingress-nginx server name and location path: with `auth-cache-key`, the
    /// cache key (ingress-nginx: `$server.Hostname` + auth location + key).
    pub route_host: &'a str,
    pub route_path: &'a str,
}

impl VarSource for Request<'_> {
    fn push(&self, var: &Var, out: &mut String) {
        match var {
            Var::Host => out.push_str(&host_name(self.host)),
            Var::HttpHost => out.push_str(self.host),
            Var::BestHttpHost => out.push_str(self.client.best_host(self.host)),
            Var::RequestUri => out.push_str(self.request_uri),
            Var::EscapedRequestUri => escape_uri_component(self.request_uri, out),
            Var::Uri => out.push_str(self.path),
            Var::Args => out.push_str(self.query.unwrap_or_default()),
            Var::IsArgs => {
                if self.query.is_some() {
                    out.push('?');
                }
            }
            Var::Scheme => out.push_str(if self.tls { "https" } else { "http" }),
            Var::PassAccessScheme => out.push_str(self.client.proto.to_str().unwrap_or("http")),
            Var::RequestMethod => out.push_str(self.method.as_str()),
            Var::RemoteAddr => out.push_str(self.client.addr_text.to_str().unwrap_or_default()),
            Var::BinaryRemoteAddr => push_binary_addr(self.client.addr, out),
            Var::RemoteUser => {
                let user = self.headers.get(http::header::AUTHORIZATION);
                if let Some((user, _)) = user.and_then(super::auth::credentials) {
                    out.push_str(&user);
                }
            }
            // The catch-all server's label is `*`; ingress-nginx names it `_`.
            Var::ServerName if self.route_host == "*" => out.push('_'),
            Var::ServerName => out.push_str(self.route_host),
            Var::ServerPort => out.push_str(self.client.redirect_port.to_str().unwrap_or_default()),
            Var::RequestId => out.push_str(self.request_id.to_str().unwrap_or_default()),
            Var::Header(name) => {
                if let Some(v) = http_variable(self.headers, name) {
                    out.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
            }
            Var::Arg(name) => {
                let found = self
                    .query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        k.eq_ignore_ascii_case(name).then_some(v)
                    });
                out.push_str(found.unwrap_or_default());
            }
            Var::Cookie(name) => {
                let found = self
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .find_map(|c| {
                        let (k, v) = c.trim().split_once('=')?;
                        k.eq_ignore_ascii_case(name).then_some(v)
                    });
                out.push_str(found.unwrap_or_default());
            }
        }
    }
}

/// nginx's `$host` of a `host[:port]` as sent: lower case, without the port.
pub fn host_name(http_host: &str) -> String {
    let h = http_host.rsplit_once(':').map_or(http_host, |(h, p)| {
        // `[::1]:80` -> `[::1]`; a bare IPv6 address has no port.
        if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') {
            h
        } else {
            http_host
        }
    });
    h.to_ascii_lowercase()
}

/// The auth service's answer, as far as the decision needs it.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

/// `Set-Cookie` values of the auth response and when they go on the client's answer: always, or
/// only when its status is one of [`ADD_HEADER_STATUSES`] (nginx `add_header` without `always`).
#[derive(Debug, Default)]
pub struct Cookies {
    pub values: Vec<HeaderValue>,
    pub always: bool,
}

impl Cookies {
    /// Appends the cookies to a response with `status` when nginx would.
    pub fn apply(self, status: StatusCode, headers: &mut HeaderMap) {
        if self.always || ADD_HEADER_STATUSES.contains(&status.as_u16()) {
            for v in self.values {
                headers.append(SET_COOKIE, v);
            }
        }
    }
}

/// The request may go on: set these on the upstream request (`None`: remove the header).
#[derive(Debug)]
pub struct Allowed {
    pub upstream_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    pub cookies: Cookies,
}

/// The answer instead of the route's.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub reason: &'static str,
    /// What went wrong, for the log (the auth service's status or the transport error).
    pub detail: String,
    /// `Location` (sign-in redirect) or `WWW-Authenticate` (401) values.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub cookies: Cookies,
}

impl Refused {
    /// The label of `xdp_ingress_auth_refused_requests_total{reason}` (`external_` tells it
    /// from basic auth's, [`super::auth::Refusal::metric_reason`]).
    pub fn metric_reason(&self) -> &'static str {
        match self.reason {
            DENIED => "external_unauthorized",
            FORBIDDEN => "external_forbidden",
            SIGNIN => "external_signin",
            _ => "external_failed",
        }
    }
}

/// Shared by every connection: the HTTPS client and the answer cache.
pub struct ForwardAuthenticator {
    client: client::AuthClient,
    cache: cache::AnswerCache,
}

impl Default for ForwardAuthenticator {
    fn default() -> Self {
        ForwardAuthenticator {
            client: client::AuthClient::new(),
            cache: cache::AnswerCache::new(cache::CAPACITY),
        }
    }
}

/// How the auth request is sent: the route's pools and timeouts.
pub struct Transport<'a> {
    pub clients: &'a super::upstream::Clients,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl ForwardAuthenticator {
    /// The client for URLs outside the cluster (its verifying HTTPS client).
    pub fn client(&self) -> &client::AuthClient {
        &self.client
    }

    /// Asks the auth service (or the cache) whether `req` may go on.
    pub async fn check(
        &self,
        auth: &ForwardAuth,
        req: &Request<'_>,
        transport: &Transport<'_>,
    ) -> Result<Allowed, Refused> {
        let cache_key = auth.cache.as_ref().map(|c| {
            let mut k = String::new();
            for part in [
                req.route_host,
                "\0",
                req.route_path,
                "\0",
                auth.url.as_str(),
                "\0",
            ] {
                k.push_str(part);
            }
            k.push_str(&c.key.expand(req));
            k
        });
        if let Some(answer) = cache_key.as_deref().and_then(|k| self.cache.get(k)) {
            return decide(auth, req, &answer);
        }
        let answer = match self.ask(auth, req, transport).await {
            Ok(a) => a,
            Err(detail) => {
                return Err(Refused {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    reason: FAILED,
                    detail,
                    headers: Vec::new(),
                    cookies: Cookies::default(),
                });
            }
        };
        if let (Some(key), Some(c)) = (cache_key, &auth.cache)
            && let Some(ttl) = cache::ttl(&c.valid, &answer)
        {
            self.cache.put(&key, Arc::new(answer.clone()), ttl);
        }
        decide(auth, req, &answer)
    }

    async fn ask(
        &self,
        auth: &ForwardAuth,
        req: &Request<'_>,
        transport: &Transport<'_>,
    ) -> Result<Answer, String> {
        let url = auth.url.expand(req);
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("auth-url expanded to {url:?}, not a URL: {e}"))?;
        let mut out = http::Request::new(());
        *out.method_mut() = auth
            .method
            .as_deref()
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(Method::GET);
        *out.uri_mut() = uri;
        *out.headers_mut() = auth_request_headers(auth, req);
        let deadline = transport.read_timeout;
        match tokio::time::timeout(deadline, self.client.send(auth, out, transport)).await {
            Ok(r) => r,
            Err(_) => Err(format!("auth service did not answer within {deadline:?}")),
        }
    }
}

/// The headers of the auth request (see the module docs).
pub fn auth_request_headers(auth: &ForwardAuth, req: &Request<'_>) -> HeaderMap {
    let mut h = req.headers.clone();
    strip_hop_by_hop(&mut h, false);
    for name in [
        CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::EXPECT,
        http::header::TE,
        http::header::UPGRADE,
        http::header::TRAILER,
        X_FORWARDED_PROTO,
        X_FORWARDED_PORT,
        X_FORWARDED_SCHEME,
        X_ORIGINAL_FORWARDED_FOR,
        http::header::FORWARDED,
        HeaderName::from_static("x-forwarded-prefix"),
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        h.remove(name);
    }
    match &req.client.host {
        Some(v) => {
            h.insert(X_FORWARDED_HOST, v.clone());
        }
        None => {
            h.remove(X_FORWARDED_HOST);
        }
    }
    let set =
        |h: &mut HeaderMap, name: HeaderName, value: String| match HeaderValue::from_str(&value) {
            Ok(v) if !value.is_empty() => {
                h.insert(name, v);
            }
            // nginx sends no header whose `proxy_set_header` value is empty.
            _ => {
                h.remove(name);
            }
        };
    h.insert(X_REQUEST_ID, req.request_id.clone());
    if auth.method.is_some() {
        set(
            &mut h,
            HeaderName::from_static("x-original-uri"),
            req.request_uri.into(),
        );
        h.insert(X_SCHEME, req.client.proto.clone());
    }
    set(&mut h, HOST, auth.host.expand(req));
    let scheme = if req.tls { "https" } else { "http" };
    set(
        &mut h,
        HeaderName::from_static("x-original-url"),
        format!("{scheme}://{}{}", req.host, req.request_uri),
    );
    set(
        &mut h,
        HeaderName::from_static("x-original-method"),
        req.method.as_str().into(),
    );
    h.insert(
        HeaderName::from_static("x-sent-from"),
        HeaderValue::from_static("nginx-ingress-controller"),
    );
    h.insert(X_REAL_IP, req.client.addr_text.clone());
    h.insert(X_FORWARDED_FOR, req.client.forwarded_for.clone());
    let redirect = match &auth.request_redirect {
        Some(r) => r.expand(req),
        None => req.request_uri.to_string(),
    };
    set(
        &mut h,
        HeaderName::from_static("x-auth-request-redirect"),
        redirect,
    );
    for (name, value) in &auth.proxy_set_headers {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            set(&mut h, n, value.expand(req));
        }
    }
    h
}

/// nginx `auth_request`'s decision on the auth service's `answer`.
pub fn decide(auth: &ForwardAuth, req: &Request<'_>, answer: &Answer) -> Result<Allowed, Refused> {
    let cookies = || Cookies {
        values: answer.headers.get_all(SET_COOKIE).iter().cloned().collect(),
        always: auth.always_set_cookie,
    };
    let status = answer.status;
    if status.is_success() {
        let upstream_headers = auth
            .response_headers
            .iter()
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .map(|name| {
                // `$upstream_http_<name>`: several values joined with `, ` (nginx 1.23).
                let joined = answer
                    .headers
                    .get_all(&name)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect::<Vec<_>>()
                    .join(&b", "[..]);
                let value = (!joined.is_empty())
                    .then(|| HeaderValue::from_bytes(&joined).ok())
                    .flatten();
                (name, value)
            })
            .collect();
        return Ok(Allowed {
            upstream_headers,
            cookies: cookies(),
        });
    }
    let refused = |status, reason, headers| Refused {
        status,
        reason,
        detail: format!("auth service answered {}", answer.status.as_u16()),
        headers,
        cookies: cookies(),
    };
    Err(match status {
        StatusCode::UNAUTHORIZED => match &auth.signin {
            Some(signin) => {
                // nginx's `$scheme` (the connection's) and the Host's name, as the sign-in
                // location's `absolute_redirect` completes a path.
                let at = super::rewrite::Target {
                    scheme: if req.tls { "https" } else { "http" },
                    authority: req.host,
                    path: req.path,
                    query: req.query,
                };
                let how = super::rewrite::Completion {
                    relative: auth.signin_relative,
                    port: false,
                };
                let port = req.client.redirect_port.to_str().unwrap_or_default();
                let location = super::rewrite::complete(&at, port, how, signin.expand(req));
                let mut r = match HeaderValue::from_str(&location) {
                    Ok(v) => refused(StatusCode::FOUND, SIGNIN, vec![(http::header::LOCATION, v)]),
                    Err(_) => refused(StatusCode::INTERNAL_SERVER_ERROR, FAILED, Vec::new()),
                };
                // The sign-in location's own `add_header Set-Cookie $auth_cookie` (302).
                r.cookies.always |= r.status == StatusCode::FOUND;
                r
            }
            None => {
                let challenges = answer
                    .headers
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .map(|v| (WWW_AUTHENTICATE, v.clone()))
                    .collect();
                refused(StatusCode::UNAUTHORIZED, DENIED, challenges)
            }
        },
        StatusCode::FORBIDDEN => refused(StatusCode::FORBIDDEN, FORBIDDEN, Vec::new()),
        _ => refused(StatusCode::INTERNAL_SERVER_ERROR, FAILED, Vec::new()),
    })
}

#[cfg(test)]
mod tests;
