//! One request from routing to response: redirect or answer locally, or pick an endpoint and
//! send the request there (its body read ahead first when request buffering says so,
//! [`super::request_buffer`]) and stream the response back, trying other endpoints as the
//! route's `proxy-next-upstream` allows ([`Retry`]), handing Upgrades to [`super::tunnel`],
//! and recording metrics and the access log.

use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{
    HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
    header::{
        ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, LOCATION, REFERER,
        SERVER, SET_COOKIE, STRICT_TRANSPORT_SECURITY, TRAILER, TRANSFER_ENCODING, USER_AGENT,
        WWW_AUTHENTICATE,
    },
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use tracing::{debug, warn};

use super::{
    Runtime, Shared,
    access_log::{self, Entry, LoggedBody, now_epoch},
    allowlist, answer_rewrite,
    body::{BodySlot, HoldUntilEnd},
    canary::Side,
    client_addr::{Client, Origin, TrustConfig},
    client_body::{BodyWatch, ClientBody, ClientFault},
    client_cert::{self, Refusal},
    cors,
    error_pages::{self, Intercept},
    forward_auth, gateway_filters, grpc_reject,
    headers::{
        X_ORIGINAL_URI, add_forwarding, drop_invalid_names, for_http1_upstream, is_upgrade,
        strip_hop_by_hop,
    },
    ingress_mirror,
    listener::ListenerId,
    metrics::{
        AuthRefusedLabels, GaugeGuard, RateLimitedLabels, RequestLabels, RouteLabels, RouteSeries,
        UpstreamLabels, UpstreamSeries,
    },
    mirror,
    next_upstream::{Attempt, Cause, Retry},
    rate_limit, request_buffer, request_deadline, request_target, response_rate, rewrite,
    router::{CompiledAction, CompiledRoute, Lookup, RequestView},
    tunnel,
    upstream::{
        BoxError, PickInput, ProxyBody, UpstreamBody, UpstreamRuntime,
        balance::Slot,
        pool::{UpstreamError, scheme_and_version},
        send_timeout::SendTimedOut,
    },
};
use crate::model::{BackendProtocol, ObjectKind, RoutePolicy, UpstreamVersion, nginx_var::Var};

/// Header naming why the proxy answered a request itself.
pub const REASON_HEADER: &str = "x-xdp-ingress-reason";

/// [`REASON_HEADER`] of a 403 for a client outside the route's `allowlist-source-range`.
pub const SOURCE_DENIED: &str = "client address not in allowlist-source-range";
/// [`REASON_HEADER`] of a 403 for a client in the route's `denylist-source-range` (or the
/// ConfigMap's `denylist-source-range` / `block-cidrs` the route takes).
pub const SOURCE_BLOCKED: &str = "client address in denylist-source-range";

/// The access log `reason` of a `RequestMirror` copy's line.
pub const MIRRORED: &str = "RequestMirror copy";

/// [`REASON_HEADER`] of the built-in 404 for a path no route of the host matches.
const NO_PATH: &str = "no path matched";

/// The client connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    /// The TCP peer (not necessarily the client: see [`Origin`]).
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// Who is behind it, decided once for all its requests.
    origin: Origin,
    /// TLS: the handshake's virtual host and the client's certificate ([`client_cert`]).
    pub tls_client: Option<client_cert::TlsClient>,
    /// The listener that accepted the connection.
    pub listener: ListenerId,
    /// Request-body bytes its requests may hold in memory at once (its HTTP/2 streams share
    /// it): [`request_buffer::PER_CONNECTION_REQUESTS`] bodies of `--request-buffer-bytes`.
    pub body_budget: Arc<request_buffer::Budget>,
}

impl ConnInfo {
    /// `proxied`: the ends a PROXY protocol header named (`use-proxy-protocol`).
    pub fn new(
        trust: &TrustConfig,
        client: SocketAddr,
        proxied: Option<super::proxy_protocol::Proxied>,
        local: SocketAddr,
        tls_client: Option<client_cert::TlsClient>,
        listener: ListenerId,
        request_buffer_bytes: u64,
    ) -> Self {
        let tls = tls_client.is_some();
        ConnInfo {
            client,
            local,
            tls,
            origin: trust.origin(client, proxied, local, tls),
            tls_client,
            listener,
            body_budget: request_buffer::Budget::new(
                request_buffer_bytes.saturating_mul(request_buffer::PER_CONNECTION_REQUESTS),
            ),
        }
    }
}

/// Who a request is from and what it turned into, for routing, metrics and the access log.
struct Outcome {
    /// The one client address and forwarding values ([`super::client_addr`]).
    client: Client,
    ingress: Option<Arc<String>>,
    /// The route is a Gateway API one (HTTPRoute, GRPCRoute), or the miss is a Gateway
    /// listener's ([`super::router::RouteTable::gateway_miss`]): ingress-nginx's controller-wide
    /// settings (compression, `hide-headers`, ...) are not applied to its answer.
    gateway_route: bool,
    host: Option<Arc<String>>,
    path: Option<Arc<String>>,
    /// The route's metric series, for `ingress`, `host` and `path` as the route set them.
    series: Option<Arc<RouteSeries>>,
    service: Option<String>,
    upstream_addr: Option<SocketAddr>,
    upstream_status: Option<u16>,
    upstream_time: Option<Duration>,
    reason: Option<String>,
    request_id: Option<HeaderValue>,
    /// The target as the client sent it, before it was normalised (nginx `$request_uri`,
    /// for external auth). Kept here rather than in the request's extensions, whose map
    /// costs three allocations per request.
    request_uri: Option<PathAndQuery>,
    /// The client connection is TLS (nginx `$scheme`: what `AUTO_HTTP` follows).
    tls: bool,
    /// Set on the response by the route ([`cors`]: CORS, `custom-headers`).
    set_headers: http::HeaderMap,
    /// This request's place in its route's `limit-connections`, held until the response
    /// is sent.
    in_progress: Option<rate_limit::ConnGuard>,
    /// The auth service's `Set-Cookie` for the answer (external auth).
    auth_cookies: Option<forward_auth::Cookies>,
    /// The route's `limit-rate` and `limit-rate-after` in bytes per second and bytes
    /// ([`response_rate`]).
    response_rate: Option<(u64, u64)>,
    /// The client connection's share of request-body buffering
    /// ([`super::request_buffer::Budget`]); a mirror's copy shares its client's.
    conn_budget: Option<Arc<request_buffer::Budget>>,
    /// The route's `enable-access-log: "false"`.
    no_access_log: bool,
    /// The request now forwarded is one of `custom-http-errors` to its error backend
    /// (ingress-nginx's `@custom_` locations, which take none of the ConfigMap's request
    /// headers: [`location_headers`]).
    error_page: bool,
    /// The response is a pod's answer ([`answered`]), not one the proxy made: what
    /// `disable-proxy-intercept-errors` passes through ([`intercepted`]).
    pod_answered: bool,
    /// The HTTP/1 connection closes after this answer: the request was refused while its
    /// head was read ([`request_target::Rejected::close`]), or an error page replaced a status
    /// after which nginx ends keep-alive ([`request_target::closes_keepalive`]), whoever
    /// answered in its place.
    close_connection: bool,
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let version = req.version();
    let rt = shared.runtime.load_full();
    let live = shared.live.load_full();
    // Kept past the request only for the access log (the target as the client sent it).
    let logged = (shared.access_log.is_some()
        && access_log::logs(
            live.settings.disable_access_log,
            &live.settings.skip_access_log_urls,
            req.uri(),
        ))
    .then(|| LoggedRequest::of(&req));
    // Every field as sent counts toward nginx's buffers, invalid names included.
    let head = super::request_head::check(
        req.method(),
        req.version(),
        req.uri(),
        req.headers(),
        &live.settings.head_buffers,
    );
    if live.ignore_invalid_headers {
        // Before anything reads a header, as nginx ignores them while parsing.
        drop_invalid_names(req.headers_mut(), live.enable_underscores_in_headers);
    }
    let mut out = Outcome::new(conn.origin.client(&live.trust, req.headers()));
    // Read now: the request is gone by the time its answer is compressed.
    let accepted = live.compressor.as_ref().map(|c| c.accepted(&req));
    out.tls = conn.tls;
    out.conn_budget = Some(Arc::clone(&conn.body_budget));
    let target = head.and_then(|()| {
        request_target::resolve(req.method(), req.version(), req.uri(), req.headers())
    });
    let (resp, host) = match target {
        Ok(target) => {
            // From here on, routing, the allowlist, redirects and the backend all see the
            // one normalised origin-form target.
            // `$request_uri` of external auth: the target as sent.
            out.request_uri = req.uri().path_and_query().cloned();
            *req.uri_mut() = Uri::from(target.path_and_query);
            let asked_upgrade = asks_upgrade(&req);
            let resp = match client_cert_step(&rt, &conn, &mut req, &target.host, &mut out) {
                Some(refused) => refused,
                // Boxed: the route's state is kilobytes, and hyper's service call moves
                // this request's future several times before its first poll.
                None => Box::pin(route(&shared, &rt, &conn, req, &target.host, &mut out)).await,
            };
            (
                refuse_unasked_switch(resp, asked_upgrade, &mut out),
                target.host,
            )
        }
        Err(rejected) => {
            out.reason = Some(rejected.reason.into());
            out.close_connection |= rejected.close();
            (refuse(rejected), request_host(&req))
        }
    };
    let mut resp = resp;
    if version < Version::HTTP_2
        && !out.gateway_route
        && (out.close_connection
            || (!out.pod_answered && request_target::closes_keepalive(resp.status())))
    {
        // nginx ends keep-alive after an answer of its own with these statuses
        // (`ngx_http_special_response_handler`: `r->keepalive = 0`), an error page's too.
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if !live.settings.allow_backend_server_header {
        // `allow-backend-server-header: false` (ingress-nginx's default): nginx hides the
        // upstream's `Server` (`proxy_hide_header` default; `proxy_pass_header Server` only
        // when the key is true). Here, for every answer, proxied or an error page's, HTTP/1.1
        // and HTTP/2 alike; the proxy sends no `Server` of its own (ingress-nginx's default
        // `server-tokens: false` clears its own too, `more_clear_headers Server`). Before
        // `add-headers` and `custom-headers`, which may set one.
        resp.headers_mut().remove(SERVER);
    }
    if let Some(cookies) = out.auth_cookies.take() {
        // ingress-nginx's `add_header Set-Cookie $auth_cookie [always]`.
        let status = resp.status();
        cookies.apply(status, resp.headers_mut());
    }
    // `add-headers` (every response), then the route's own, which win.
    for (name, value) in live.add_headers.iter().chain(&out.set_headers) {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    if !shared.args.reason_header {
        // One place for every answer of the proxy's own (`local`, gRPC rejections, auth).
        resp.headers_mut().remove(REASON_HEADER);
    }
    if conn.tls
        && !out.gateway_route
        && let Some(hsts) = &live.hsts
    {
        // ingress-nginx sets it on every HTTPS response (`lua_ingress.header()` in every
        // location, the default server's too: its certificate check is a function never
        // called, so always true), RFC 6797 section 7.1; a pod's own value is replaced. Its
        // default is on, which a Gateway API user never asked for: a Gateway route, or a miss
        // of a Gateway listener, sets the header with a filter instead.
        resp.headers_mut()
            .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    if let (Some(c), Some(accepted)) = (&live.compressor, accepted)
        && !out.gateway_route
    {
        // The ConfigMap's gzip/brotli, as HSTS: ingress-nginx's settings, not a Gateway's.
        // Before `limit-rate`, which paces the bytes the client receives.
        resp = c.apply(resp, accepted);
    }
    if let Some((rate, after)) = out.response_rate {
        resp = response_rate::pace(resp, rate, after);
    }
    if let Some(guard) = out.in_progress.take() {
        resp = rate_limit::hold_until_sent(resp, guard);
    }
    Ok(finish(&shared, started, resp, out, &host, logged))
}

impl Outcome {
    fn new(client: Client) -> Self {
        Outcome {
            client,
            ingress: None,
            gateway_route: false,
            host: None,
            path: None,
            series: None,
            service: None,
            upstream_addr: None,
            upstream_status: None,
            upstream_time: None,
            reason: None,
            request_id: None,
            request_uri: None,
            tls: false,
            set_headers: http::HeaderMap::new(),
            in_progress: None,
            auth_cookies: None,
            response_rate: None,
            conn_budget: None,
            no_access_log: false,
            error_page: false,
            pod_answered: false,
            close_connection: false,
        }
    }
}

/// Counts the request against the global per-client limit and the route's `limit`
/// ([`rate_limit`]); `Some` refusal to answer with, else the request goes on (holding its
/// place in `limit-connections` in `out`).
async fn limit(
    shared: &Shared,
    limit: Option<&crate::model::RateLimit>,
    out: &mut Outcome,
) -> Option<Response<ProxyBody>> {
    let live = shared.live.load();
    let global = live.global_limit.as_deref();
    if global.is_none() && limit.is_none() {
        return None;
    }
    // Boxed here and below: a branch few requests take keeps its state out of every
    // request's future, which is copied whole when it is boxed for hyper (`listener::serve`).
    match Box::pin(shared.rate_limits.admit(global, limit, out.client.addr)).await {
        Ok(guard) => {
            out.in_progress = guard;
            None
        }
        Err(refused) => {
            let status = match refused {
                rate_limit::Refused::Requests | rate_limit::Refused::Global => {
                    live.limit_req_status
                }
                rate_limit::Refused::Connections => live.limit_conn_status,
            };
            shared
                .metrics
                .rate_limited
                .get_or_create(&RateLimitedLabels {
                    ingress: out
                        .ingress
                        .clone()
                        .unwrap_or_else(|| Arc::clone(&shared.dash)),
                    reason: refused.label(),
                })
                .inc();
            out.reason = Some(refused.reason().into());
            Some(local(status, refused.reason()))
        }
    }
}

/// The client-certificate step of the host the request names ([`client_cert::admit`]), before
/// anything else of the host: nginx checks the certificate in `ngx_http_process_request` and
/// `auth-tls-match-cn` in the server's rewrite phase, ahead of every location. `None`: go on
/// (with the `ssl-client-*` headers set, or the request turned into `auth-tls-error-page`'s).
fn client_cert_step<B>(
    rt: &Runtime,
    conn: &ConnInfo,
    req: &mut Request<B>,
    host: &str,
    out: &mut Outcome,
) -> Option<Response<ProxyBody>> {
    // Without any host's step, the host need not be looked up (the route does it again).
    if rt.client_auth.is_empty() {
        return None;
    }
    let vh = rt.routes.host(host)?;
    let auth = rt.client_auth.get(&vh.host)?;
    let tls = conn.tls_client.as_ref();
    let mut refused = client_cert::admit(auth, &vh.host, tls, req.headers_mut(), false).err()?;
    if let Refusal::Internal(page, why) = &refused {
        // nginx's `error_page 495 496 = /page`: an internal redirect in the same server, as
        // GET (HEAD stays HEAD); the certificate is not judged again, match-cn is.
        match client_cert::admit(auth, &vh.host, tls, req.headers_mut(), true) {
            Ok(()) => match Uri::try_from(page.as_str()) {
                Ok(uri) => {
                    *req.uri_mut() = uri;
                    if req.method() != Method::HEAD {
                        *req.method_mut() = Method::GET;
                    }
                    out.reason = Some((*why).into());
                    return None;
                }
                Err(_) => refused = Refusal::Status(StatusCode::BAD_REQUEST, why),
            },
            Err(r) => refused = r,
        }
    }
    out.host = Some(Arc::clone(&vh.label));
    Some(match refused {
        Refusal::Status(status, why) => {
            out.reason = Some(why.into());
            local(status, why)
        }
        Refusal::Redirect(page, why) => {
            // nginx's `error_page ... = <URL>`: a 302 to the URL as written.
            out.reason = Some(why.into());
            let mut resp = local(StatusCode::FOUND, why);
            if let Ok(v) = HeaderValue::from_str(&page) {
                resp.headers_mut().insert(LOCATION, v);
            }
            resp
        }
        // Turned into a status above when it could not be followed.
        Refusal::Internal(_, why) => {
            out.reason = Some(why.into());
            local(StatusCode::BAD_REQUEST, why)
        }
    })
}

/// Whether the request is forwarded as an upgrade (the condition [`forward`] tunnels on).
fn asks_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11 && is_upgrade(req.headers())
}

/// A 101 from a backend for a request not forwarded as an upgrade is a 502: the client
/// connection never becomes a tunnel the proxy did not decide on.
fn refuse_unasked_switch(
    resp: Response<ProxyBody>,
    asked_upgrade: bool,
    out: &mut Outcome,
) -> Response<ProxyBody> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS || asked_upgrade {
        return resp;
    }
    const REASON: &str = "upstream switched protocols unasked";
    out.reason = Some(REASON.into());
    local(StatusCode::BAD_GATEWAY, REASON)
}

/// The answer to a request whose target the proxy refuses ([`request_target`]), sent in
/// `version`.
fn refuse(rejected: request_target::Rejected) -> Response<ProxyBody> {
    let mut resp = local(rejected.status, rejected.reason);
    if rejected.reason == super::request_head::HEADER_TOO_LARGE {
        // nginx's own page for it ("Request Header Or Cookie Too Large").
        *resp.body_mut() = Full::new(Bytes::from_static(
            super::nginx_pages::HEADER_TOO_LARGE_PAGE.as_bytes(),
        ))
        .map_err(|e| match e {})
        .boxed_unsync();
    }
    if rejected.status == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110 §15.5.6: a 405 lists what is allowed; everything but CONNECT and TRACE
        // is forwarded.
        resp.headers_mut().insert(
            ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),
        );
    }
    // Its `Connection: close` (`Rejected::close`) is `handle`'s, as for every answer of the
    // proxy's own.
    resp
}

/// A request hyper refused while parsing its HTTP/1 head (it answered 400, 414 or 431 itself
/// and closed the connection; `e` is the connection's error): counted in `requests_total`
/// with ingress, host and path `-`, and logged with what is known (client, status, reason),
/// as nginx logs its 400, 414 and 494. Other connection errors are not requests.
pub(crate) fn unparsed(shared: &Shared, conn: &ConnInfo, e: &(dyn std::error::Error + 'static)) {
    let Some(e) = e.downcast_ref::<hyper::Error>().filter(|e| e.is_parse()) else {
        return;
    };
    let reason = e.to_string();
    // hyper's own statuses for these errors (its `Parse::UriTooLong`, `Parse::TooLarge`).
    let status = match (e.is_parse_too_large(), reason.starts_with("URI too long")) {
        (true, true) => StatusCode::URI_TOO_LONG,
        (true, false) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        (false, _) => StatusCode::BAD_REQUEST,
    };
    let client = conn
        .origin
        .client(&shared.live.load().trust, &http::HeaderMap::new())
        .addr;
    refused_unrouted(shared, client, status, reason);
}

/// Reason of the 400 for plain HTTP on the HTTPS port (nginx's words).
pub const PLAIN_HTTP_ON_HTTPS: &str = "The plain HTTP request was sent to HTTPS port";

/// The bytes answering plain HTTP sent to the HTTPS port from `client`: 400, as nginx, and the
/// connection closes; counted and logged as [`unparsed`] requests are.
pub(crate) fn plain_http_on_https(shared: &Shared, client: IpAddr) -> Vec<u8> {
    refused_unrouted(
        shared,
        client,
        StatusCode::BAD_REQUEST,
        PLAIN_HTTP_ON_HTTPS.into(),
    );
    let body = format!("{PLAIN_HTTP_ON_HTTPS}\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Counts a request answered before it could be routed (`requests_total` with ingress, host
/// and path `-`) and logs it with what is known.
fn refused_unrouted(shared: &Shared, client: IpAddr, status: StatusCode, reason: String) {
    let dash = || Arc::clone(&shared.dash);
    shared
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            ingress: dash(),
            host: dash(),
            path: dash(),
            status: status.as_u16(),
        })
        .inc();
    if let Some(log) = &shared.access_log {
        log.log(Entry {
            time: now_epoch(),
            client: client.to_string(),
            host: "-".into(),
            status: status.as_u16(),
            reason: Some(reason),
            // `$req_id`: nothing of the request was read, so a new `$request_id`.
            request_id: super::headers::new_request_id()
                .to_str()
                .map(str::to_string)
                .unwrap_or_default(),
            ..Entry::default()
        });
    }
}

/// The parts of a request the access log needs after it was forwarded.
struct LoggedRequest {
    method: Method,
    uri: Uri,
    version: Version,
    user_agent: Option<HeaderValue>,
    /// The client's `X-Request-ID`: `$req_id` of an answer nothing was forwarded for, else
    /// a new one (ingress-nginx's `map $http_x_request_id $req_id`, `""` -> `$request_id`).
    request_id: Option<HeaderValue>,
}

impl LoggedRequest {
    fn of<B>(req: &Request<B>) -> LoggedRequest {
        LoggedRequest {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            user_agent: req.headers().get(USER_AGENT).cloned(),
            request_id: super::headers::http_variable(req.headers(), &super::headers::X_REQUEST_ID),
        }
    }
}

async fn route(
    shared: &Arc<Shared>,
    rt: &Runtime,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    host: &str,
    out: &mut Outcome,
) -> Response<ProxyBody> {
    // ingress-nginx's `if ($block_ua)` / `if ($block_ref)` open every server block: before
    // anything of the host or route (app-root, redirects, limits, access). Not on a Gateway
    // listener, whose routes take none of its ConfigMap.
    if !conn.listener.gateway
        && let Some(refused) = blocked(&shared.live.load(), req.headers(), out)
    {
        return refused;
    }
    let scheme = if out.client.https() { "https" } else { "http" };
    let target = rewrite::Target {
        scheme,
        authority: host,
        path: req.uri().path(),
        query: req.uri().query(),
    };
    let view = RequestView {
        host,
        path: req.uri().path(),
        query: req.uri().query(),
        method: req.method().as_str(),
        headers: req.headers(),
        tls: out.client.https(),
        listener_port: Some(conn.listener.port),
        gateway_listener: conn.listener.gateway,
        local_addr: Some(conn.local.ip()),
    };
    // 421 before anything of the host: its listener is not the one the handshake chose
    // (Gateway HTTPS listeners only; a host an Ingress serves is never misdirected).
    if let Some(tls) = &conn.tls_client
        && rt.misdirected.is_misdirected(
            (conn.local.ip(), conn.listener.port),
            tls.sni.as_deref(),
            host,
        )
        && !matches!(
            rt.routes.lookup(&view),
            Lookup::Route { route, .. } if route.origin().object.kind == ObjectKind::Ingress
        )
    {
        out.reason = Some("misdirected request".into());
        return local(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host belongs to another listener than the TLS server name",
        );
    }
    // The rewrite step, 1: `app-root` is the host's, before any route.
    if let Some(a) = rt
        .routes
        .host(host)
        .and_then(|vh| rewrite::app_root(vh, &target))
    {
        out.host = rt.routes.host(host).map(|h| Arc::clone(&h.label));
        return redirect_to(a, out);
    }
    match rt.routes.lookup(&view) {
        Lookup::Route { host: vh, route } => {
            out.ingress = Some(Arc::clone(&route.ingress));
            out.gateway_route = matches!(
                route.origin().object.kind,
                crate::model::ObjectKind::HTTPRoute | crate::model::ObjectKind::GRPCRoute
            );
            out.host = Some(Arc::clone(&vh.label));
            out.path = Some(Arc::clone(&route.path_label));
            out.series = Some(Arc::clone(route.series.get_or_init(|| {
                Arc::new(RouteSeries::new(RouteLabels {
                    ingress: Arc::clone(&route.ingress),
                    host: Arc::clone(&vh.label),
                    path: Arc::clone(&route.path_label),
                }))
            })));
            out.no_access_log = route.policy.no_access_log;
            out.response_rate = route
                .policy
                .limit_rate
                .filter(|&r| r > 0)
                .map(|r| (r, route.policy.limit_rate_after.unwrap_or(0)));
            if let Some(why) = &route.policy.response.denied {
                // ingress-nginx's denied location (`custom-headers` refused, an invalid
                // allowlist): 503 and nothing else, not even its `default-backend`.
                out.reason = Some(why.clone());
                return local(StatusCode::SERVICE_UNAVAILABLE, why);
            }
            // Every answer of the route's location from here on goes through its
            // `custom-http-errors` ([`intercepted`]): nginx's `error_page` covers any status the
            // location produces, its own refusals (`limit_req`/`limit_conn`, `deny`,
            // `auth_basic`, `auth_request`'s 401/403/500), redirects and the upstream's answer
            // (`proxy_intercept_errors on`) alike. A denied location's 503 (above, or of an
            // unusable authentication) is not caught ([`Intercept::new`]).
            // X-Original-URI is the URI the client sent, before any rewrite.
            let primary = match &route.action {
                CompiledAction::Forward(ups) => ups.first().map(|(u, _)| &**u),
                _ => None,
            };
            let mut intercept = Intercept::new(route, rt.routes.default_backend(), primary, &req);
            let resp = 'location: {
                // CORS and custom headers: ingress-nginx's are in nginx's rewrite phase, ahead of
                // the route's redirect, its Lua HTTPS redirect and the access phase (allowlist), so
                // a preflight is answered before all of them and every answer below has them.
                let extra = cors::for_request(&route.policy.response, req.method(), req.headers());
                out.set_headers = extra.set;
                if extra.preflight {
                    out.reason = Some("CORS preflight".into());
                    break 'location cors::preflight();
                }
                // The rewrite step, 2: the route's own redirect, before the HTTPS redirect and
                // the allowlist (nginx's `return` runs in the rewrite phase, before ingress-nginx's
                // Lua redirect and the access phase).
                let server_port = out.client.redirect_port.to_str().unwrap_or_default();
                // `$request_id`: made only for a URL that names variables.
                let request_id = if rewrite::redirect_needs_vars(&route.policy) {
                    super::headers::request_id_of(req.headers())
                } else {
                    HeaderValue::from_static("")
                };
                let vars = request_vars(&req, host, out, &request_id, route_labels(out));
                if let Some(a) = rewrite::redirect(route, &target, server_port, &vars) {
                    break 'location redirect_to(a, out);
                }
                let gateway = route.policy.gateway.clone();
                if let Some(r) = gateway.as_ref().and_then(|g| g.redirect.as_ref()) {
                    let location = gateway_filters::redirect_location(
                        r,
                        route.path(),
                        scheme,
                        host,
                        server_port.parse().unwrap_or(0),
                        req.uri().path(),
                        req.uri().query(),
                    );
                    break 'location redirect_to(
                        rewrite::Answer {
                            status: r.status,
                            location,
                            why: "RequestRedirect",
                        },
                        out,
                    );
                }
                if !out.client.https() && route.policy.redirects_to_https(vh.tls) {
                    out.reason = Some("ssl-redirect".into());
                    // lua_ingress.lua `redirect_host`: `$best_http_host`, port dropped.
                    break 'location redirect(
                        shared,
                        out.client.best_host(host),
                        req.uri(),
                        &route.policy,
                    );
                }
                // Rate limits: nginx's preaccess phase (`limit_req`, `limit_conn`), after the
                // rewrite phase (redirects) and before the access phase (allowlist, auth).
                if let Some(refused) = limit(shared, route.policy.rate_limit.as_deref(), out).await
                {
                    break 'location refused;
                }
                // The access phase (allowlist, basic auth, external auth, combined as `satisfy`
                // says): after the redirects, as ingress-nginx (rewrite phase before access phase);
                // before anything else, local answers included, so a refused client learns nothing
                // more, and no backend, default backend or canary sees an unauthenticated request.
                if let Err(resp) = access(shared, route, &vh.label, &mut req, host, out).await {
                    break 'location resp;
                }
                // ingress-nginx: `proxy_set_header Authorization ""` under auth_basic (the pod's
                // request only).
                if matches!(route.policy.auth, Some(crate::model::RouteAuth::Basic(_))) {
                    req.headers_mut().remove(AUTHORIZATION);
                }
                match &route.action {
                    CompiledAction::Respond { status, reason } => {
                        // A route whose Service is missing has no endpoints: its default backend
                        // serves.
                        if let Some(d) = route
                            .errors
                            .as_deref()
                            .and_then(|e| e.default_backend.as_ref())
                        {
                            error_pages::mark_served_by_default_backend(&mut req, route, None);
                            break 'location forward(shared, req, d, &route.policy, host, out)
                                .await;
                        }
                        out.reason = Some(reason.to_string());
                        // A GRPCRoute's own error reaches a gRPC client as a gRPC status.
                        if grpc_answer(route, &req) {
                            break 'location grpc_reject::trailers_only(
                                grpc_reject::code_of(*status),
                                reason,
                            );
                        }
                        let status = StatusCode::from_u16(*status)
                            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                        local(status, reason)
                    }
                    CompiledAction::Forward(ups) => {
                        // The body also feeds the route's request mirrors, if any.
                        let mut req = req.map(mirror::Tee::new);
                        if let Some(m) = &route.policy.mirror
                            && !asks_upgrade(&req)
                        {
                            // ingress-nginx's `mirror-target`: nginx's precontent phase, after
                            // the access checks; the variables of the request as it came.
                            let request_id = super::headers::request_id_of(req.headers());
                            let vars =
                                request_vars(&req, host, out, &request_id, route_labels(out));
                            let literal = m.target.vars().next().is_none();
                            let target = ingress_mirror::target_uri(
                                &m.target.expand(&vars),
                                literal,
                                req.uri().query(),
                            );
                            let host_value = m.host.expand(&vars);
                            let (clients, connect, _) =
                                auth_transport(shared, &route.policy.timeouts);
                            match target {
                                Some(uri) => ingress_mirror::spawn(
                                    shared,
                                    m,
                                    &mut req,
                                    (uri, host_value),
                                    clients,
                                    connect,
                                ),
                                None => debug!(
                                    target = m.target.as_str(),
                                    "mirror-target expanded to no URL; not mirrored"
                                ),
                            }
                        }
                        if let Some(g) = &gateway {
                            let valid: u64 = ups.iter().map(|(_, w)| u64::from(*w)).sum();
                            if gateway_filters::takes_invalid_share(g.invalid_weight, valid) {
                                out.reason = Some("unresolvable backendRef".into());
                                if grpc_answer(route, &req) {
                                    break 'location grpc_reject::trailers_only(
                                        grpc_reject::UNAVAILABLE,
                                        "unresolvable backendRef",
                                    );
                                }
                                break 'location local(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "unresolvable backendRef",
                                );
                            }
                            gateway_filters::apply_headers(&g.request_headers, req.headers_mut());
                            if let Some(p) = g.rewrite.as_ref().and_then(|r| r.path.as_ref()) {
                                let path = gateway_filters::replace_path(
                                    p,
                                    route.path(),
                                    req.uri().path(),
                                );
                                let pq = match req.uri().query() {
                                    Some(q) => format!("{path}?{q}"),
                                    None => path,
                                };
                                let Ok(pq) = PathAndQuery::try_from(pq) else {
                                    out.reason = Some("URLRewrite made an invalid path".into());
                                    break 'location local(
                                        StatusCode::INTERNAL_SERVER_ERROR,
                                        "rewrite",
                                    );
                                };
                                *req.uri_mut() = Uri::from(pq);
                            }
                            if !asks_upgrade(&req) {
                                for (up, numerator, denominator) in &route.mirrors {
                                    if mirror::sampled(*numerator, *denominator) {
                                        spawn_mirror(
                                            shared,
                                            &mut req,
                                            up,
                                            &route.policy,
                                            host,
                                            out,
                                        );
                                    }
                                }
                            }
                        }
                        let chosen = match canary_step(route, ups, req.headers()) {
                            Some(c) => Some((None, c)),
                            None => choose_weighted(ups).map(|i| (Some(i), &ups[i].0)),
                        };
                        match chosen {
                            Some((at, routed)) => {
                                let up = error_pages::serving(route.errors.as_deref(), routed);
                                // The chosen backendRef's own filters, after the rule's.
                                let backend_headers = gateway
                                    .as_ref()
                                    .zip(at)
                                    .and_then(|(g, i)| g.backend_headers.get(i));
                                if let Some((request, _)) = backend_headers {
                                    gateway_filters::apply_headers(request, req.headers_mut());
                                }

                                // The error backend names the location's Service (ingress-nginx's
                                // `$service_name`, set per location): a canary, or the route's
                                // `default-backend` serving it, keeps the main one; of a Gateway
                                // rule's backendRefs, the one chosen.
                                if let Some(i) = &mut intercept
                                    && at.is_some()
                                {
                                    i.serving(routed);
                                }
                                // The rewrite step, 3: the path the backend sees.
                                // (`req`'s own URI: `target` borrowed it before the auth step changed
                                // its headers; they are the same path and query.)
                                let uri = req.uri();
                                if let Some(pq) = rewrite::rewrite(route, uri.path(), uri.query()) {
                                    let Ok(pq) = PathAndQuery::try_from(pq) else {
                                        out.reason =
                                            Some("rewrite-target made an invalid path".into());
                                        break 'location local(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            "rewrite",
                                        );
                                    };
                                    *req.uri_mut() = Uri::from(pq);
                                    if let Some(v) = route
                                        .policy
                                        .rewrite
                                        .x_forwarded_prefix
                                        .as_deref()
                                        .and_then(|p| HeaderValue::from_str(p).ok())
                                    {
                                        req.headers_mut().insert(X_FORWARDED_PREFIX, v);
                                    }
                                }
                                if !Arc::ptr_eq(up, routed) {
                                    error_pages::mark_served_by_default_backend(
                                        &mut req,
                                        route,
                                        Some(routed),
                                    );
                                }
                                let deadline = gateway
                                    .as_ref()
                                    .and_then(|g| g.request_timeout)
                                    .map(|d| tokio::time::Instant::now() + d);
                                // `forward`'s future is built where it is awaited: a named one
                                // was one more copy of its state per request.
                                let resp = match deadline {
                                    // HTTPRoute `timeouts.request` over the whole answer: 504 while
                                    // the head is awaited, then the body is cut at the same
                                    // deadline ([`request_deadline`]).
                                    Some(at) => match tokio::time::timeout_at(
                                        at,
                                        forward(shared, req, up, &route.policy, host, out),
                                    )
                                    .await
                                    {
                                        Ok(resp) => resp.map(|b| {
                                            request_deadline::Bounded::new(b, at).boxed_unsync()
                                        }),
                                        Err(_) => {
                                            out.reason = Some("HTTPRoute timeouts.request".into());
                                            local(StatusCode::GATEWAY_TIMEOUT, "request timeout")
                                        }
                                    },
                                    None => {
                                        forward(shared, req, up, &route.policy, host, out).await
                                    }
                                };
                                let mut resp = resp;
                                if let Some(g) = &gateway {
                                    gateway_filters::apply_headers(
                                        &g.response_headers,
                                        resp.headers_mut(),
                                    );
                                }
                                if let Some((_, response)) = backend_headers {
                                    gateway_filters::apply_headers(response, resp.headers_mut());
                                }
                                resp
                            }
                            None => {
                                out.reason = Some("route has no backend".into());
                                local(StatusCode::SERVICE_UNAVAILABLE, "route has no backend")
                            }
                        }
                    }
                    CompiledAction::DefaultBackend => {
                        // ingress-nginx's root location: the default backend (its built-in one
                        // answers 404), then the route's `custom-http-errors`.
                        match rt.routes.default_backend() {
                            Some(d) => forward(shared, req, d, &route.policy, host, out).await,
                            None => {
                                out.reason = Some(NO_PATH.into());
                                local(StatusCode::NOT_FOUND, NO_PATH)
                            }
                        }
                    }
                }
            };
            // Boxed, and only when the route intercepts errors: the box and the copy of its
            // state were paid on every request.
            match intercept {
                Some(i) => {
                    Box::pin(intercepted(shared, Some(i), resp, &route.policy, host, out)).await
                }
                None => resp,
            }
        }
        Lookup::Default {
            host: vh,
            backend,
            why,
        } => {
            out.host = vh.map(|h| Arc::clone(&h.label));
            out.no_access_log = default_server_unlogged(shared, why, &view);
            // The ConfigMap's `custom-http-errors` cover the default server's answers, its
            // refusals included, as the `http` block's `error_page` does in ingress-nginx.
            let live = shared.live.load_full();
            let intercept =
                Intercept::default_server(&live.settings.default_server_errors, backend, &req);
            let policy = RoutePolicy::default();
            let resp = 'server: {
                // The global per-client limit counts requests no route takes too.
                if let Some(refused) = limit(shared, None, out).await {
                    break 'server refused;
                }
                if !view.gateway_listener
                    && let Some(refused) = default_server_access(shared, out)
                {
                    break 'server refused;
                }
                out.reason = Some(format!("default backend ({why:?})"));
                forward(shared, req, backend, &policy, host, out).await
            };
            match intercept {
                Some(i) => Box::pin(intercepted(shared, Some(i), resp, &policy, host, out)).await,
                None => resp,
            }
        }
        Lookup::NotFound { host: vh, why } => {
            out.host = vh.map(|h| Arc::clone(&h.label));
            out.gateway_route = rt.routes.gateway_miss(vh, &view);
            out.no_access_log = default_server_unlogged(shared, why, &view);
            if let Some(refused) = limit(shared, None, out).await {
                return refused;
            }
            if !view.gateway_listener
                && let Some(refused) = default_server_access(shared, out)
            {
                return refused;
            }
            let reason = match why {
                super::router::Miss::NoHost => "no host matched",
                super::router::Miss::NoPath => NO_PATH,
            };
            out.reason = Some(reason.into());
            if grpc_reject::is_grpc(req.headers()) && out.gateway_route {
                // `grpc-message` would name the miss as the reason header does.
                let message = if shared.args.reason_header {
                    reason
                } else {
                    ""
                };
                return grpc_reject::unimplemented(message);
            }
            local(StatusCode::NOT_FOUND, reason)
        }
    }
}

/// `block-user-agents` / `block-referers`: 403 for a request whose `User-Agent` or `Referer`
/// matches an entry ([`crate::model::nginx_map`]).
fn blocked(
    live: &super::settings::Live,
    headers: &http::HeaderMap,
    out: &mut Outcome,
) -> Option<Response<ProxyBody>> {
    let reason = [
        (&live.block_user_agents, USER_AGENT, "blocked User-Agent"),
        (&live.block_referers, REFERER, "blocked Referer"),
    ]
    .into_iter()
    .find(|(m, name, _)| m.matches(headers.get_all(name).iter().map(HeaderValue::as_bytes)))?
    .2;
    out.reason = Some(reason.into());
    Some(local(StatusCode::FORBIDDEN, reason))
}

/// Whether `route`'s own error answers to `req` are gRPC statuses: a GRPCRoute's, to a gRPC
/// request (a plain HTTP client of the same route keeps the HTTP status).
fn grpc_answer<U, B>(route: &super::router::CompiledRoute<U>, req: &Request<B>) -> bool {
    route.origin().object.kind == crate::model::ObjectKind::GRPCRoute
        && grpc_reject::is_grpc(req.headers())
}

/// The access phase of a request no route takes ([`allowlist::default_server_refusal`]).
/// Not on a Gateway listener's port: Gateway API routes take none of ingress-nginx's
/// ConfigMap, and neither do its misses.
fn default_server_access(shared: &Shared, out: &mut Outcome) -> Option<Response<ProxyBody>> {
    let live = shared.live.load();
    let (status, reason) = allowlist::default_server_refusal(
        live.settings.block_cidrs.as_ref(),
        Some(out.client.addr),
    )?;
    out.reason = Some(reason.into());
    Some(local(status, reason))
}

/// Sends a copy of `req` (as it is now, with a copy of its body from here on) to `up` on its
/// own task: fire-and-forget, as `RequestMirror` asks; the answer is read and dropped.
fn spawn_mirror(
    shared: &Arc<Shared>,
    req: &mut Request<mirror::Tee<Incoming>>,
    up: &Arc<UpstreamRuntime>,
    policy: &Arc<RoutePolicy>,
    host: &str,
    out: &Outcome,
) {
    let hint = hyper::body::Body::size_hint(req.body());
    let body = req.body_mut().copy().with_hint(hint);
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    // The copy's own access log line (no request metrics: the client's request is counted
    // once), marked so it is told apart from the client's.
    let logged = LoggedRequest::of(&copy);
    let (shared, up, policy) = (Arc::clone(shared), Arc::clone(up), Arc::clone(policy));
    let host = host.to_string();
    let mut mirror_out = Outcome::new(out.client.clone());
    mirror_out.tls = out.tls;
    mirror_out.conn_budget = out.conn_budget.clone();
    mirror_out.ingress = out.ingress.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let resp = forward(&shared, copy, &up, &policy, &host, &mut mirror_out).await;
        mirror_out.reason = Some(match mirror_out.reason.take() {
            Some(r) => format!("{MIRRORED}; {r}"),
            None => MIRRORED.into(),
        });
        let resp = access_logged(&shared, started, resp, mirror_out, &host, Some(logged));
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    });
}

/// [`access_log::logs_miss`] for a request no route takes.
fn default_server_unlogged(
    shared: &Shared,
    why: super::router::Miss,
    view: &RequestView<'_>,
) -> bool {
    let enabled = shared.live.load().settings.access_log_for_default_server;
    let no_host = matches!(why, super::router::Miss::NoHost);
    !access_log::logs_miss(no_host, view.gateway_listener, enabled)
}

/// What the client gets for `resp`: the error backend's answer when the route's (or the default
/// server's) `custom-http-errors` list its status ([`Intercept`]), else `resp`; `policy`: the
/// route's, which the request to the error backend keeps.
async fn intercepted(
    shared: &Arc<Shared>,
    intercept: Option<Intercept<'_>>,
    resp: Response<ProxyBody>,
    policy: &RoutePolicy,
    host: &str,
    out: &mut Outcome,
) -> Response<ProxyBody> {
    match intercept {
        Some(i) if i.catches(resp.status(), out.pod_answered) => {
            let status = resp.status();
            // nginx's `error_page` runs from its special response handler, which has ended
            // keep-alive for these statuses first, the pod's intercepted ones included.
            out.close_connection |= request_target::closes_keepalive(status);
            drop(resp);
            // The refusal or failure replaced stays in the reason.
            out.reason = Some(match out.reason.take() {
                Some(was) => format!("custom-http-errors: {status} ({was})"),
                None => format!("custom-http-errors: {status}"),
            });
            let target = i.target;
            let req = i.request(status, out.request_id.as_ref());
            out.error_page = true;
            forward(shared, req, target, policy, host, out).await
        }
        _ => resp,
    }
}

/// A refusal of one access check, and what answering it takes.
struct Denial {
    resp: Response<ProxyBody>,
    /// [`REASON_HEADER`] and access-log reason.
    reason: String,
    /// `reason` label of `xdp_ingress_auth_refused_requests_total`; `None`: not an
    /// authentication refusal (the allowlist's 403).
    metric: Option<&'static str>,
    /// A 401 (or the sign-in redirect nginx makes of one): under `satisfy any` it outranks a
    /// 403, as `ngx_http_core_access_phase` keeps the first 401's `access_code`.
    unauthorized: bool,
    /// The auth service's `Set-Cookie` (external auth).
    cookies: Option<forward_auth::Cookies>,
}

impl Denial {
    fn status(&self) -> StatusCode {
        self.resp.status()
    }
}

/// nginx's access phase for a matched route: the allowlist (access module `allow`/`deny`),
/// basic auth (`auth_basic`), external auth (`auth_request`), in nginx's order, combined as
/// the route's `satisfy` says (nginx `ngx_http_core_access_phase`):
/// - `all` (the default): the first refusal is the answer.
/// - `any`: the first check that lets the request through ends the phase, the later ones do
///   not run (a client inside the allowlist needs no credentials and no auth request is
///   sent). A refusal with 401 or 403 leaves the decision to the next check; when none lets
///   the request through, the answer is the first 401 (the client may still authenticate),
///   or the sign-in redirect when the auth service's 401 made one (`auth-signin`), else the
///   last 403. Any other refusal
///   (too many password checks, the auth service failing: 503, 500) is the answer at once,
///   never open.
///
/// An unusable authentication configuration denies the route before any check (503 for every
/// client, ingress-nginx's `return 503` of a denied location in the rewrite phase). Client
/// certificates and rate limits are not access checks (they run before, whatever `satisfy`
/// says). The refusal answered is counted in `xdp_ingress_auth_refused_requests_total`.
async fn access(
    shared: &Arc<Shared>,
    route: &CompiledRoute<Arc<UpstreamRuntime>>,
    route_host: &Arc<String>,
    req: &mut Request<Incoming>,
    host: &str,
    out: &mut Outcome,
) -> Result<(), Response<ProxyBody>> {
    let policy = &route.policy;
    let any = policy.satisfy == crate::model::Satisfy::Any;
    let route_ids = (route_host, &route.path_label);
    let refuse = |d: Denial, out: &mut Outcome| {
        if let Some(reason) = d.metric {
            shared
                .metrics
                .auth_refused
                .get_or_create(&AuthRefusedLabels {
                    ingress: out
                        .ingress
                        .clone()
                        .unwrap_or_else(|| Arc::clone(&shared.dash)),
                    host: Arc::clone(route_host),
                    path: Arc::clone(&route.path_label),
                    reason,
                })
                .inc();
        }
        out.reason = Some(d.reason);
        if d.cookies.is_some() {
            out.auth_cookies = d.cookies;
        }
        d.resp
    };
    if let Some(auth @ crate::model::RouteAuth::Unavailable { .. }) = &policy.auth
        && let Err(r) = Box::pin(shared.auth.admit(auth, req.headers())).await
    {
        return Err(refuse(basic_denial(r), out));
    }
    // `satisfy any`: the answer when no check lets the request through.
    let mut pending: Option<Denial> = None;
    // `Some`: the answer now; `None`: the next check decides (`satisfy any`).
    let decide = |pending: &mut Option<Denial>, d: Denial| -> Option<Denial> {
        let status = d.status();
        let soft =
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN || d.unauthorized;
        if !any || !soft {
            return Some(d);
        }
        // The first 401 stays; `auth-signin` (nginx's `error_page 401`) turns the final 401,
        // whichever check gave it, into the sign-in redirect.
        let signin = |d: &Denial| d.unauthorized && d.status() == StatusCode::FOUND;
        let replace = match pending {
            None => true,
            Some(p) => !p.unauthorized || (signin(&d) && !signin(p)),
        };
        if replace {
            *pending = Some(d);
        }
        None
    };
    let verdict = allowlist::verdict(
        &policy.deny_source_ranges,
        &policy.allow_source_ranges,
        out.client.addr,
    );
    if any && verdict == allowlist::Verdict::Allowed {
        return Ok(());
    }
    if let Some(reason) = verdict.refusal() {
        let d = Denial {
            resp: local(StatusCode::FORBIDDEN, reason),
            reason: reason.into(),
            metric: None,
            unauthorized: false,
            cookies: None,
        };
        if let Some(d) = decide(&mut pending, d) {
            return Err(refuse(d, out));
        }
    }
    if let Some(auth) = &policy.auth {
        match Box::pin(shared.auth.admit(auth, req.headers())).await {
            Ok(()) if any => return Ok(()),
            Ok(()) => {}
            Err(r) => {
                if let Some(d) = decide(&mut pending, basic_denial(r)) {
                    return Err(refuse(d, out));
                }
            }
        }
    }
    // The auth service gets the client's `Authorization` either way.
    if let Some(fa) = &policy.forward_auth {
        let ask = external_auth(shared, fa, req, host, route_ids, &policy.timeouts, out);
        match Box::pin(ask).await {
            Ok(()) if any => return Ok(()),
            Ok(()) => {}
            Err(d) => {
                if let Some(d) = decide(&mut pending, d) {
                    return Err(refuse(d, out));
                }
            }
        }
    }
    match pending {
        Some(d) => Err(refuse(d, out)),
        None => Ok(()),
    }
}

/// The answer to a basic-auth refusal ([`super::auth`]).
fn basic_denial(r: super::auth::Refusal) -> Denial {
    let metric = r.metric_reason();
    let mut resp = local(r.status, &r.reason);
    if let Some(c) = r.challenge {
        resp.headers_mut().insert(WWW_AUTHENTICATE, c);
    }
    Denial {
        unauthorized: r.status == StatusCode::UNAUTHORIZED,
        metric: Some(metric),
        reason: r.reason,
        resp,
        cookies: None,
    }
}

/// The external authentication step ([`forward_auth`]): `Ok` lets the request on, with the
/// auth service's `auth-response-headers` set on it; `Err` is the refusal.
async fn external_auth(
    shared: &Arc<Shared>,
    auth: &crate::model::ForwardAuth,
    req: &mut Request<Incoming>,
    host: &str,
    (route_host, route_path): (&Arc<String>, &Arc<String>),
    timeouts: &crate::model::Timeouts,
    out: &mut Outcome,
) -> Result<(), Denial> {
    let request_id = super::headers::request_id(req.headers_mut());
    // nginx's one `$req_id`: an error page for the refusal carries the auth request's id.
    out.request_id = Some(request_id.clone());
    let t = &auth_transport(shared, timeouts);
    let check = {
        let ask = request_vars(req, host, out, &request_id, (route_host, route_path));
        let transport = forward_auth::Transport {
            clients: &t.0,
            connect_timeout: t.1,
            read_timeout: t.2,
        };
        shared.forward_auth.check(auth, &ask, &transport).await
    };
    match check {
        Ok(allowed) => {
            for (name, value) in allowed.upstream_headers {
                match value {
                    Some(v) => {
                        req.headers_mut().insert(name, v);
                    }
                    None => {
                        req.headers_mut().remove(name);
                    }
                }
            }
            out.auth_cookies = Some(allowed.cookies);
            Ok(())
        }
        Err(refused) => {
            debug!(detail = %refused.detail, status = %refused.status, "external auth refused");
            let metric = refused.metric_reason();
            let mut resp = local(refused.status, refused.reason);
            for (name, value) in refused.headers {
                resp.headers_mut().append(name, value);
            }
            Err(Denial {
                resp,
                reason: refused.reason.into(),
                metric: Some(metric),
                unauthorized: refused.status == StatusCode::UNAUTHORIZED
                    || refused.reason == forward_auth::SIGNIN,
                cookies: Some(refused.cookies),
            })
        }
    }
}

/// The auth request's pool and connect and read timeouts: the route's (annotation, ConfigMap,
/// flag).
fn auth_transport(
    shared: &Shared,
    t: &crate::model::Timeouts,
) -> (super::upstream::Clients, Duration, Duration) {
    let args = &shared.args;
    (
        shared.clients_for(t.connect, t.send),
        t.connect.unwrap_or(args.proxy_connect_timeout),
        t.read.unwrap_or(args.proxy_read_timeout),
    )
}

/// The canary step (ingress-nginx `route_to_alternative_balancer`): the route's canary
/// backend when this request takes it, else `None` (the main backends, by weight).
fn canary_step<'r>(
    route: &'r CompiledRoute<Arc<UpstreamRuntime>>,
    ups: &[(Arc<UpstreamRuntime>, u32)],
    headers: &http::HeaderMap,
) -> Option<&'r Arc<UpstreamRuntime>> {
    let canary = route.canary.as_deref()?;
    let (main, _) = ups.first()?;
    if super::canary::without_endpoints(&main.spec, &canary.upstream.spec).is_some() {
        return None;
    }
    (canary.decide(Some(&main.spec), headers).side == Side::Canary).then_some(&canary.upstream)
}

/// The position in `ups` of an upstream picked by weight; `None` when `ups` is empty.
fn choose_weighted(ups: &[(Arc<UpstreamRuntime>, u32)]) -> Option<usize> {
    if ups.len() <= 1 {
        return (!ups.is_empty()).then_some(0);
    }
    let total: u64 = ups.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return Some(0);
    }
    let mut n = rand::random_range(0..total);
    for (i, (_, w)) in ups.iter().enumerate() {
        if n < u64::from(*w) {
            return Some(i);
        }
        n -= u64::from(*w);
    }
    Some(ups.len() - 1)
}

/// Forwards a routed request to an endpoint of `up`, in named phases: [`admit`] (a declared
/// body over the limit never leaves the proxy), [`prepare`] the upstream request once and
/// [`Prepared::buffer`] its body when request buffering says so, then one [`attempt`] per
/// endpoint; each outcome is classified ([`classify`]: which stage failed — connect, TLS,
/// send, the response head's timeout, the endpoint's reset — and whose fault it was, which
/// decides whether the endpoint is charged), and [`next_step`] decides from its cause and the
/// route's [`Retry`] whether another endpoint is tried.
async fn forward<B>(
    shared: &Arc<Shared>,
    mut req: Request<B>,
    up: &Arc<UpstreamRuntime>,
    policy: &RoutePolicy,
    host: &str,
    out: &mut Outcome,
) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // Read only by the access log: no copy of the name per request without one.
    if shared.access_log.is_some() {
        out.service = Some(up.spec.id.clone());
    }
    // An ExternalName Service: the endpoints are the addresses its name resolves to now.
    let resolved;
    let up = match &up.external {
        None => up,
        Some(r) => match r.resolve(up).await {
            Ok(rt) => {
                resolved = rt;
                &resolved
            }
            Err(why) => {
                out.reason = Some(why.to_string());
                return local(StatusCode::BAD_GATEWAY, "upstream name not resolved");
            }
        },
    };
    let args = &shared.args;
    let max_body = policy.max_body_bytes.unwrap_or(args.max_body_bytes);
    if let Err(f) = admit(&req, max_body) {
        return failed(f, out);
    }
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let hash_key = hash_key(&mut req, up, host, out);
    let set = location_headers(&shared.live.load(), &mut req, host, out);
    let mut prepared = prepare(
        shared,
        &out.client,
        req,
        up,
        policy,
        host,
        (upgrade, out.tls),
        max_body,
        set,
    );
    out.request_id = Some(prepared.request_id.clone());
    let held = request_buffer::Held::new(
        Arc::clone(&shared.body_budget),
        out.conn_budget
            .clone()
            // Only a request from a client connection reaches here with one; without it,
            // the proxy's budget alone bounds the body.
            .unwrap_or_else(|| request_buffer::Budget::new(u64::MAX)),
    );
    if let Err(f) = prepared
        .buffer(args.request_buffer_bytes, held, &shared.metrics)
        .await
    {
        return failed(f, out);
    }
    let t = &policy.timeouts;
    let clients =
        (t.connect.is_some() || t.send.is_some()).then(|| shared.clients_for(t.connect, t.send));
    let clients = clients.as_ref().unwrap_or(&shared.clients);
    // A BackendTLSPolicy's backend: its own, verified connections.
    let verified;
    let clients = match up.tls.as_deref() {
        None => clients,
        Some(Ok(v)) => {
            verified = clients.verified(v);
            &verified
        }
        Some(Err(why)) => {
            out.reason = Some(format!("backend TLS cannot be set up: {why}"));
            return local(StatusCode::BAD_GATEWAY, "backend TLS cannot be set up");
        }
    };
    let series = up.series();
    let mut tried = Vec::new();
    let mut failure = Failure::proxy(StatusCode::SERVICE_UNAVAILABLE, "no endpoint available");
    let retry = Retry::new(
        &policy.next_upstream,
        args.proxy_retries.saturating_add(1),
        &prepared.parts.method,
        Instant::now(),
    );
    // Bounded: `pick` returns a tried endpoint only to sticky retries and to a round after
    // the first of repeating ones, and `last` (below) bounds the attempts by the endpoints
    // or, for those, by the default tries or the route's.
    loop {
        if !tried.is_empty()
            && let Some(wait) = retry.backoff()
        {
            tokio::time::sleep(wait).await;
        }
        let Some(pick) = up.pick(&PickInput {
            headers: &prepared.parts.headers,
            hash_key: hash_key.as_deref(),
            tried: retry.avoid(&tried, up.slots.len()),
            https: out.client.https(),
            location_path: out.path.as_deref().map_or("", |p| p.as_str()),
        }) else {
            break;
        };
        tried.push(pick.slot);
        let slot = &up.slots[pick.slot];
        let endpoint = up.addr(pick.slot);
        out.upstream_addr = Some(endpoint);
        // When no attempt may follow this one, it takes the headers.
        let last = upgrade || !retry.may_follow(tried.len(), attempt_bound(up, args.proxy_retries));
        let upstream_req = match prepared.request_to(up, pick.slot, last) {
            Ok(r) => r,
            Err(f) => {
                failure = f;
                break;
            }
        };
        // Counted until the response has ended, whatever happens to this future meanwhile.
        let in_flight = (
            slot.stats.write().begin_request(),
            GaugeGuard::new(series.in_flight(&shared.metrics)),
        );
        let t0 = Instant::now();
        let outcome = attempt(clients, &prepared, endpoint, upstream_req).await;
        match next_step(&retry, last, &prepared, outcome) {
            Step::Answer(resp) => {
                let answer = Answer {
                    took: t0.elapsed(),
                    set_cookie: pick.set_cookie,
                    in_flight,
                    read_timeout: prepared.read_timeout,
                };
                let mut resp = answered(shared, slot, series, *resp, answer, client_upgrade, out);
                // The location's `proxy_redirect` / `proxy_cookie_*`; an error page's
                // `@custom_` location has none.
                if !out.error_page && policy.answer_rewrite != Default::default() {
                    let scheme = if out.tls { "https" } else { "http" };
                    answer_rewrite::apply(
                        &policy.answer_rewrite,
                        resp.headers_mut(),
                        scheme,
                        &forward_auth::host_name(host),
                    );
                }
                return resp;
            }
            Step::RetryStatus(status) => {
                debug!(%endpoint, %status, "next upstream");
                out.upstream_status = Some(status.as_u16());
                failure = Failure::retried_status(status);
            }
            Step::Retry(f) => {
                charge(shared, up, pick.slot, &series.labels, &f);
                failure = f;
            }
            Step::Stop(f) => {
                charge(shared, up, pick.slot, &series.labels, &f);
                failure = f;
                break;
            }
        }
    }
    failed(failure, out)
}

/// The controller ConfigMap's request headers for the pod, from the client's request as it
/// is now: `X-Original-URI` with `proxy-add-original-uri-header`, then `proxy-set-headers`
/// (each value expanded; empty: the field is removed, as nginx's `proxy_set_header NAME ""`). ingress-nginx writes these `proxy_set_header` lines into every
/// location it proxies from, the default server's too, after its forwarding headers (nginx.tmpl,
/// "Custom headers to proxied server"), and into none of its `@custom_` error-page locations;
/// a Gateway API route takes none of its ConfigMap. `None` value: remove the field.
fn location_headers<B>(
    live: &super::settings::Live,
    req: &mut Request<B>,
    host: &str,
    out: &Outcome,
) -> Vec<(http::HeaderName, Option<HeaderValue>)> {
    if out.gateway_route
        || out.error_page
        || (live.proxy_set_headers.is_empty() && !live.add_original_uri_header)
    {
        return Vec::new();
    }
    let request_uri = out.request_uri.as_ref().map_or("/", |p| p.as_str());
    let mut set = Vec::with_capacity(live.proxy_set_headers.len() + 1);
    if live.add_original_uri_header {
        // A client's own is replaced (`proxy_set_header`), an unsendable target never is sent.
        set.push((X_ORIGINAL_URI, HeaderValue::from_str(request_uri).ok()));
    }
    if live.proxy_set_headers.is_empty() {
        return set;
    }
    // `$request_id` is the id the pod gets in X-Request-ID (`add_forwarding` keeps it).
    let request_id = super::headers::request_id(req.headers_mut());
    let vars = request_vars(req, host, out, &request_id, route_labels(out));
    set.extend(live.proxy_set_headers.iter().map(|(name, value)| {
        let v = value.expand(&vars);
        // A client's header may carry bytes no field value may (none do after hyper's
        // parsing, but nothing here relies on it): then no field, as for an empty value.
        let v = (!v.is_empty())
            .then(|| HeaderValue::from_bytes(v.as_bytes()).ok())
            .flatten();
        (name.clone(), v)
    }));
    set
}

/// Admission: a request whose declared body (`Content-Length`, or an HTTP/2 body's known
/// size) exceeds `max_body` bytes (`proxy-body-size`; `0`: no limit) is refused with 413
/// before anything is sent, as nginx's `client_max_body_size` does.
/// The request's expansion of the upstream's `upstream-hash-by`
/// ([`crate::model::LoadBalancing::hash_by`]), as ingress-nginx's `balancer/chash.lua` and
/// `chashsubset.lua` take it in the balancer phase: the client's headers, the target after
/// `rewrite-target` (`$uri`, `$args`) and before it (`$request_uri`). `None` for any other
/// balancing.
fn hash_key<B>(
    req: &mut Request<B>,
    up: &UpstreamRuntime,
    host: &str,
    out: &Outcome,
) -> Option<String> {
    let by = up.spec.load_balancing.hash_by()?;
    // `$request_id` is the id the pod gets: set it now, as `prepare` keeps one already there.
    let request_id = if by.vars().any(|v| *v == Var::RequestId) {
        super::headers::request_id(req.headers_mut())
    } else {
        HeaderValue::from_static("")
    };
    let vars = request_vars(req, host, out, &request_id, route_labels(out));
    Some(by.expand(&vars))
}

/// The request's nginx variables ([`forward_auth::Request`]): one mapping for every step that
/// expands them (redirect URLs, external auth, `mirror-target`, `upstream-hash-by`,
/// `proxy-set-headers`). `$request_uri` is the target as the client sent it, `$uri` and
/// `$args` the current (normalised) one; `route` is the route's server name and location.
fn request_vars<'a, B>(
    req: &'a Request<B>,
    host: &'a str,
    out: &'a Outcome,
    request_id: &'a HeaderValue,
    (route_host, route_path): (&'a str, &'a str),
) -> forward_auth::Request<'a> {
    let sent = out
        .request_uri
        .as_ref()
        .or_else(|| req.uri().path_and_query());
    forward_auth::Request {
        host,
        method: req.method(),
        headers: req.headers(),
        request_uri: sent.map_or("/", |p| p.as_str()),
        path: req.uri().path(),
        query: req.uri().query(),
        client: &out.client,
        tls: out.tls,
        request_id,
        route_host,
        route_path,
    }
}

/// The chosen route's server name and location path labels (`"*"` and `""` before one is).
fn route_labels(out: &Outcome) -> (&str, &str) {
    (
        out.host.as_deref().map_or("*", String::as_str),
        out.path.as_deref().map_or("", String::as_str),
    )
}

fn admit<B: Body>(req: &Request<B>, max_body: u64) -> Result<(), Failure> {
    if max_body > 0 && req.body().size_hint().lower() > max_body {
        return Err(Failure::client(ClientFault::TooLarge, false));
    }
    Ok(())
}

/// The proxy's own answer to a request that got no endpoint's response: the last failure's
/// status, its reason logged and named in [`REASON_HEADER`].
fn failed(f: Failure, out: &mut Outcome) -> Response<ProxyBody> {
    out.reason = Some(f.reason.to_string());
    local(f.status, f.reason)
}

/// How many attempts one request may make on `up` at most: its endpoints, or — when retries
/// may repeat an endpoint (an affinity cookie with `change-on-failure: false`) — the default
/// tries (`proxy_retries` + 1) if that is more.
fn attempt_bound(up: &UpstreamRuntime, proxy_retries: u32) -> usize {
    if up.retries_may_repeat() {
        usize::try_from(proxy_retries)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .max(up.slots.len())
    } else {
        up.slots.len()
    }
}

/// One attempt: sends `req` to `endpoint` and waits for its response head within the read
/// timeout ([`await_response`]); the outcome is [`classify`]'d.
async fn attempt(
    clients: &super::upstream::pool::Clients,
    prepared: &Prepared,
    endpoint: SocketAddr,
    req: Request<ProxyBody>,
) -> Result<Response<UpstreamBody>, Failure> {
    // Pinned here and lent: an `async fn` keeps a future it takes by value twice in its
    // state (the argument and the moved local), and each caller's state holds the callee's.
    let send = std::pin::pin!(clients.send(prepared.protocol, endpoint, req));
    let sent = await_response(send, prepared.read_timeout, &prepared.watch).await;
    if let Ok(Err(e @ UpstreamError::Connect { .. })) = &sent {
        // nginx's error log names the cause ("upstream SSL certificate verify error: ...",
        // "connect() failed (111: Connection refused)"); the access log has only the reason.
        warn!(%endpoint, error = %ErrorChain(e), "upstream connect failed");
    }
    classify(sent, prepared)
}

/// An error and its sources, `: `-separated (rustls' verify error is a source of the I/O
/// error of the TLS handshake).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut seen = self.0.to_string();
        let mut next = self.0.source();
        while let Some(e) = next {
            // Wrappers that repeat their source's text (`{0}` in the message) add nothing.
            let text = e.to_string();
            if !seen.contains(&text) {
                write!(f, ": {text}")?;
                seen = text;
            }
            next = e.source();
        }
        Ok(())
    }
}

/// What [`forward`] does after an attempt.
enum Step {
    /// The endpoint's response goes to the client (boxed: the other steps are small).
    Answer(Box<Response<UpstreamBody>>),
    /// `proxy-next-upstream: http_<code>`: the endpoint answered with this status, which the
    /// route retries; another endpoint answers instead.
    RetryStatus(StatusCode),
    /// The attempt failed and another endpoint is tried.
    Retry(Failure),
    /// The attempt failed and no other follows: its failure is the answer.
    Stop(Failure),
}

/// The retry decision after an attempt, per nginx's `proxy_next_upstream` ([`Retry`] decides
/// from the cause and what the attempt did to the request). `last`: no attempt may follow, so
/// a retried status is answered as the endpoint sent it and a failure stops.
fn next_step(
    retry: &Retry,
    last: bool,
    prepared: &Prepared,
    outcome: Result<Response<UpstreamBody>, Failure>,
) -> Step {
    match outcome {
        Ok(resp) => {
            let status = resp.status();
            if !last
                && retry.covers_status(status.as_u16())
                && retry.retries(
                    Cause::Status(status.as_u16()),
                    prepared.attempt(true),
                    Instant::now(),
                )
            {
                Step::RetryStatus(status)
            } else {
                Step::Answer(Box::new(resp))
            }
        }
        Err(f) => {
            let again = !last
                && f.cause
                    .is_some_and(|c| retry.retries(c, prepared.attempt(f.sent), Instant::now()));
            if again { Step::Retry(f) } else { Step::Stop(f) }
        }
    }
}

/// What `forward` hands on with an endpoint's answer.
struct Answer<G> {
    took: Duration,
    set_cookie: Option<HeaderValue>,
    /// Released when the response (or the upgraded tunnel) has ended.
    in_flight: G,
    read_timeout: Duration,
}

/// The endpoint answered: its success is recorded and its response streamed back; a
/// `101 Switching Protocols` to an Upgrade hands both connections to [`tunnel`].
fn answered<G: Send + Unpin + 'static>(
    shared: &Shared,
    slot: &Slot,
    series: &UpstreamSeries,
    mut resp: Response<UpstreamBody>,
    a: Answer<G>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    out: &mut Outcome,
) -> Response<ProxyBody> {
    slot.stats.write().record_success(a.took);
    series
        .duration(&shared.metrics)
        .observe(a.took.as_secs_f64());
    out.upstream_status = Some(resp.status().as_u16());
    out.upstream_time = Some(a.took);
    out.pod_answered = true;
    if !out.gateway_route {
        // `hide-headers`: nginx's `proxy_hide_header` in ingress-nginx's `http` block, so of
        // every location's answer from a pod, an error page's too; before `add-headers`,
        // which nginx adds to the answer afterwards.
        for name in &shared.live.load().hide_headers {
            resp.headers_mut().remove(name);
        }
    }
    if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
        let upstream = hyper::upgrade::on(&mut resp);
        let (in_flight, read_timeout) = (a.in_flight, a.read_timeout);
        // nginx's `limit_conn` holds a request's place until the request ends, and an
        // upgraded one ends when its tunnel closes.
        let in_progress = out.in_progress.take();
        // The tunnel is the request's continuation: it stays in flight while it lasts.
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let _in_progress = in_progress;
            tunnel::run(client, upstream, read_timeout).await;
        });
        return upstream_response(resp, a.set_cookie, true, ());
    }
    upstream_response(resp, a.set_cookie, false, a.in_flight)
}

/// Records a failed attempt where it belongs: only the endpoint's own faults count against it
/// (passive health, `upstream_failures`), so no client can eject a pod.
fn charge(shared: &Shared, up: &UpstreamRuntime, slot: usize, label: &UpstreamLabels, f: &Failure) {
    debug!(
        endpoint = %up.addr(slot),
        origin = ?f.origin,
        stage = ?f.stage,
        reason = f.reason,
        "attempt failed"
    );
    if f.origin == FaultSide::Upstream {
        shared.metrics.upstream_failures.get_or_create(label).inc();
        up.slots[slot]
            .stats
            .write()
            .record_failure(&up.health, super::upstream::health::now_ms());
    }
}

/// The upstream request of one client request, built once for all its attempts.
struct Prepared {
    parts: http::request::Parts,
    body: BodySlot,
    /// What the client's body did, shared with its [`ClientBody`].
    watch: Arc<BodyWatch>,
    scheme: Scheme,
    version: Version,
    protocol: BackendProtocol,
    buffering: Buffering,
    /// The virtual host, the authority of every attempt's URI (`None`: the client named
    /// none, as HTTP/1.0 may).
    authority: Option<Authority>,
    path_and_query: PathAndQuery,
    read_timeout: Duration,
    request_id: HeaderValue,
    /// The budget a body read whole holds ([`request_buffer::Held`]), given back when the
    /// request is done with it.
    held: Option<request_buffer::Held>,
}

/// Whether the body is read whole before an endpoint is contacted ([`Prepared::buffer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Buffering {
    /// Streamed as it arrives.
    Stream,
    /// Read ahead (`proxy-request-buffering`); `need_length`: an HTTP/1.0 pod must get a
    /// `Content-Length`, so a body of unknown length is read ahead even with buffering off
    /// (as nginx does), and refused (411) when it cannot be held.
    Buffer { need_length: bool },
}

/// Prepares the upstream request: hop-by-hop fields removed, forwarding fields added,
/// exactly one `Host`, the HTTP/2 to HTTP/1.x conversion when the upstream speaks HTTP/1.x
/// (the version `proxy-http-version` says), and the client's body wrapped in the body limit
/// and the client body timeout. `(upgrade, tls)`: the request is forwarded as an upgrade; the
/// client connection is TLS (`AUTO_HTTP` follows it).
#[allow(clippy::too_many_arguments)]
fn prepare<B>(
    shared: &Shared,
    client: &Client,
    req: Request<B>,
    up: &UpstreamRuntime,
    policy: &RoutePolicy,
    host: &str,
    (upgrade, tls): (bool, bool),
    max_body: u64,
    set: Vec<(http::HeaderName, Option<HeaderValue>)>,
) -> Prepared
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // Host and X-Forwarded-Host: the Host as sent, port included, or the host a trusted
    // sender names in X-Forwarded-Host (ingress-nginx's `$best_http_host` for both).
    let request_id = add_forwarding(
        &mut parts.headers,
        client,
        host,
        &shared.live.load().trust.forwarded_for_header,
    );
    // `insert` replaces every `Host` the client sent: the upstream sees exactly one.
    if let Some(v) = super::headers::best_host_value(&parts.headers, client, host) {
        parts.headers.insert(HOST, v);
    }
    // `upstream-vhost`: `proxy_set_header Host`; X-Forwarded-Host above keeps the client's.
    if let Some(v) = policy
        .rewrite
        .upstream_vhost
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        parts.headers.insert(HOST, v);
    }
    // The ConfigMap's headers ([`location_headers`]) last: they replace the proxy's own.
    for (name, value) in set {
        match value {
            Some(v) => parts.headers.insert(name, v),
            None => parts.headers.remove(name),
        };
    }
    let protocol = up.spec.protocol.for_connection(tls);
    let (scheme, version) = scheme_and_version(protocol);
    let http = &policy.upstream_http;
    // An upgrade is an HTTP/1.1 mechanism: it goes to the endpoint over HTTP/1.1.
    let (version, protocol) = if upgrade {
        let protocol = match protocol {
            BackendProtocol::Https | BackendProtocol::Grpcs => BackendProtocol::Https,
            _ => BackendProtocol::Http,
        };
        (Version::HTTP_11, protocol)
    } else if version == Version::HTTP_11 && http.version() == UpstreamVersion::Http10 {
        (Version::HTTP_10, protocol)
    } else {
        (version, protocol)
    };
    let has_body = !body.is_end_stream();
    let need_length = version == Version::HTTP_10 && !parts.headers.contains_key(CONTENT_LENGTH);
    // HTTP/1 pods only: gRPC and h2c stream (nginx's `grpc_pass` never buffers a body).
    let buffering = if has_body
        && matches!(version, Version::HTTP_10 | Version::HTTP_11)
        && !upgrade
        && (http.request_buffering() || need_length)
    {
        Buffering::Buffer { need_length }
    } else {
        Buffering::Stream
    };
    // `connection-proxy-header`: nginx's `proxy_set_header Connection` of the location, in
    // place of `$connection_upgrade`. HTTP/1 only: HTTP/2 has no `Connection` (RFC 9113
    // 8.2.2), as nginx's `grpc_pass` sends none.
    if let Some(v) = policy
        .rewrite
        .connection_header
        .as_deref()
        .filter(|_| matches!(version, Version::HTTP_10 | Version::HTTP_11))
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        parts.headers.insert(http::header::CONNECTION, v);
    }
    match version {
        Version::HTTP_11 => for_http1_upstream(&mut parts.headers, has_body),
        // No chunked coding in HTTP/1.0 (RFC 1945): the body goes with a length.
        Version::HTTP_10 => for_http1_upstream(&mut parts.headers, false),
        _ => {}
    }
    // Moved out, not cloned: the first clone of a `Bytes` built from a `Vec` (the normalised
    // path) allocates; nothing reads `parts.uri` after this.
    let path_and_query = std::mem::take(&mut parts.uri)
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let watch = Arc::new(BodyWatch::default());
    // The body goes to another endpoint only while no attempt has read from it.
    let body = BodySlot::new(
        ClientBody::new(
            body,
            max_body,
            shared.live.load().client_body_timeout,
            Arc::clone(&watch),
        )
        .boxed_unsync(),
    );
    Prepared {
        parts,
        body,
        watch,
        scheme: if scheme == "https" {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        },
        version,
        protocol,
        buffering,
        // HTTP/1.x sends the target in origin-form and the authority in `Host`
        // (`Prepared::request_to`): no authority to parse.
        authority: (version == Version::HTTP_2)
            .then(|| host.parse().ok())
            .flatten(),
        path_and_query,
        read_timeout: policy
            .timeouts
            .read
            .unwrap_or(shared.args.proxy_read_timeout),
        request_id,
        held: None,
    }
}

impl Prepared {
    /// What an attempt that failed had done to the request; `sent`: something of it reached
    /// the endpoint.
    fn attempt(&self, sent: bool) -> Attempt {
        Attempt {
            sent,
            body_consumed: !self.body.untouched(),
        }
    }

    /// Request buffering ([`super::request_buffer`]): reads the body ahead when
    /// [`Buffering::Buffer`], holding at most `cap` bytes. A body read whole replaces the
    /// client's framing with `Content-Length` and can go to every attempt. An error is the
    /// answer: the client's body failed (its fault's status: 413, 408, 400, 499), or an
    /// HTTP/1.0 pod needs a length the body outgrew (411) or no budget was left to hold it
    /// (503); no endpoint was contacted. A body that found no budget streams and is counted
    /// in `unbuffered_requests`; `held` stays with a whole body until the request ends.
    async fn buffer(
        &mut self,
        cap: u64,
        held: request_buffer::Held,
        metrics: &super::metrics::Metrics,
    ) -> Result<(), Failure> {
        use super::request_buffer::Buffered;
        let Buffering::Buffer { need_length } = self.buffering else {
            return Ok(());
        };
        let Some(body) = self.body.take() else {
            return Ok(());
        };
        let read = request_buffer::read(body, cap, held).await;
        if let Buffered::Streaming(_, Some(short)) = &read {
            metrics
                .unbuffered_requests
                .get_or_create(&super::metrics::BudgetLabels {
                    budget: short.label(),
                })
                .inc();
        }
        match read {
            Buffered::Whole(mut whole, held) => {
                self.held = Some(held);
                let h = &mut self.parts.headers;
                // The client got its `100 Continue` from the proxy (hyper answers it when
                // the body is first read): the pod gets the body at once, unasked (nginx
                // never passes `Expect` on either).
                h.remove(EXPECT);
                if self.version == Version::HTTP_10 {
                    // HTTP/1.0 has no way to carry trailers.
                    whole.trailers = None;
                }
                if whole.trailers.is_none() {
                    // A length for the whole body.
                    h.remove(TRANSFER_ENCODING);
                    h.remove(TRAILER);
                    h.insert(CONTENT_LENGTH, HeaderValue::from(whole.data.len()));
                } else {
                    h.remove(CONTENT_LENGTH);
                    h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
                }
                self.body = BodySlot::whole(whole);
                Ok(())
            }
            Buffered::Streaming(_, None) if need_length => Err(Failure::proxy(
                StatusCode::LENGTH_REQUIRED,
                "request body of unknown length too large to buffer for an HTTP/1.0 upstream",
            )),
            Buffered::Streaming(_, Some(_)) if need_length => Err(Failure::proxy(
                StatusCode::SERVICE_UNAVAILABLE,
                "no request buffer budget left for a body of unknown length to an HTTP/1.0 upstream",
            )),
            Buffered::Streaming(rest, _) => {
                self.body = BodySlot::new(rest);
                Ok(())
            }
            Buffered::Failed => {
                let fault = self.watch.fault().unwrap_or(ClientFault::Aborted);
                Err(Failure::client(fault, false))
            }
        }
    }

    /// The request for one attempt at endpoint `slot` of `up`; `last`: no attempt follows, the
    /// headers move. Its URI names the virtual host (HTTP/2 `:authority`, RFC 9113 §8.3.1), or
    /// the endpoint when the client named no host; the pool connects to the endpoint either way.
    fn request_to(
        &mut self,
        up: &UpstreamRuntime,
        slot: usize,
        last: bool,
    ) -> Result<Request<ProxyBody>, Failure> {
        let path_and_query = if last {
            std::mem::replace(&mut self.path_and_query, PathAndQuery::from_static("/"))
        } else {
            self.path_and_query.clone()
        };
        let uri = if self.version == Version::HTTP_2 {
            self.absolute_uri(up, slot, last, path_and_query)?
        } else {
            // HTTP/1.x: origin-form, as the pool sends it (RFC 9112 §3.2.1); the authority
            // travels in `Host`.
            Uri::from(path_and_query)
        };
        // `forward` retries only while the body is untouched, so a body is always there.
        let body = self
            .body
            .attempt()
            .ok_or_else(|| Failure::proxy(StatusCode::BAD_GATEWAY, "request body already sent"))?;
        let mut req = Request::new(body);
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = if last {
            std::mem::take(&mut self.parts.headers)
        } else {
            self.parts.headers.clone()
        };
        Ok(req)
    }

    /// The HTTP/2 request's URI: `scheme://authority/path` (`:scheme`, `:authority`).
    fn absolute_uri(
        &mut self,
        up: &UpstreamRuntime,
        slot: usize,
        last: bool,
        path_and_query: PathAndQuery,
    ) -> Result<Uri, Failure> {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        // The last attempt takes them (a clone of a `Bytes` made from a `Vec` allocates).
        uri.authority = if last {
            self.authority.take()
        } else {
            self.authority.clone()
        }
        .or_else(|| up.authority(slot));
        uri.path_and_query = Some(path_and_query);
        Uri::from_parts(uri)
            .map_err(|_| Failure::proxy(StatusCode::BAD_REQUEST, "invalid request target"))
    }
}

/// Where a failed attempt went wrong; only [`FaultSide::Upstream`] is charged to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultSide {
    /// The client's side of the request (its body); never retried, never charged.
    Client(ClientFault),
    /// The endpoint: connect, send, read or protocol failure.
    Upstream,
    /// The proxy could not build or place the request.
    Proxy,
}

/// Where in a request's handling a failure arose: logged with it, and what its status,
/// reason and [`Cause`] follow from ([`classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The proxy, before or without an endpoint: no endpoint left, the request could not be
    /// built.
    Proxy,
    /// The client's body: over the limit, too slow, malformed or aborted.
    ClientBody,
    /// Opening the TCP connection (refused, unreachable, `proxy-connect-timeout`), or a
    /// shared HTTP/2 connection that closed before it took the request.
    Connect,
    /// The TLS handshake with an HTTPS or gRPCS endpoint.
    Tls,
    /// Writing the request: the endpoint stopped taking it (`proxy-send-timeout`).
    Send,
    /// Waiting for the response head (`proxy-read-timeout`).
    ResponseHeaderTimeout,
    /// The response head did not parse.
    InvalidResponse,
    /// The connection failed after it took (part of) the request: a reset or close.
    UpstreamReset,
    /// The endpoint answered with a status the route retries (`http_<code>`).
    Status,
}

/// A failed attempt: what to answer, who caused it and where, and what [`Retry`] needs to
/// decide whether another endpoint is tried.
#[derive(Debug)]
struct Failure {
    origin: FaultSide,
    stage: Stage,
    status: StatusCode,
    reason: &'static str,
    /// The endpoint's failure in `proxy_next_upstream` terms; `None`: never retried (the
    /// client's or the proxy's fault).
    cause: Option<Cause>,
    /// Something of the request reached the endpoint.
    sent: bool,
}

impl Failure {
    /// The proxy's own failure (never retried, never charged).
    fn proxy(status: StatusCode, reason: &'static str) -> Self {
        Failure {
            origin: FaultSide::Proxy,
            stage: Stage::Proxy,
            status,
            reason,
            cause: None,
            sent: false,
        }
    }

    /// The client's body failed (never retried, never charged); its fault gives the status.
    fn client(fault: ClientFault, sent: bool) -> Self {
        Failure {
            origin: FaultSide::Client(fault),
            stage: Stage::ClientBody,
            status: fault.status(),
            reason: fault.reason(),
            cause: None,
            sent,
        }
    }

    /// The endpoint's failure at `stage`.
    fn upstream(
        stage: Stage,
        status: StatusCode,
        reason: &'static str,
        cause: Cause,
        sent: bool,
    ) -> Self {
        Failure {
            origin: FaultSide::Upstream,
            stage,
            status,
            reason,
            cause: Some(cause),
            sent,
        }
    }

    /// An answer with `status` went to another endpoint (`proxy-next-upstream:
    /// http_<code>`); a 502 if no other endpoint answers.
    fn retried_status(status: StatusCode) -> Self {
        Failure::upstream(
            Stage::Status,
            StatusCode::BAD_GATEWAY,
            "upstream answered with a status retried elsewhere",
            Cause::Status(status.as_u16()),
            true,
        )
    }
}

/// The endpoint did not answer within the read timeout.
struct ReadTimedOut;

/// Waits for the response headers. The read timeout (`proxy-read-timeout`, the time an
/// endpoint has to answer) counts only while the proxy is not waiting on the client: from the
/// attempt's start or the body's last progress, whichever is later. A slow upload is the
/// client body timeout's to judge, an endpoint that stops taking the body the send timeout's.
async fn await_response<F, T>(
    send: F,
    read_timeout: Duration,
    watch: &BodyWatch,
) -> Result<T, ReadTimedOut>
where
    F: Future<Output = T> + Unpin,
{
    use super::upstream::health::now_ms;
    let mut send = send;
    let started = now_ms();
    let timeout_ms = u64::try_from(read_timeout.as_millis()).unwrap_or(u64::MAX);
    // The first look is at the start: one clock read serves both.
    let mut now = started;
    loop {
        let wait_ms = match watch.upstream_clock_start_ms(started) {
            // Look again after a whole timeout: by then the client moved or timed out.
            None => timeout_ms,
            Some(start) => {
                let deadline = start.saturating_add(timeout_ms);
                if now >= deadline {
                    return Err(ReadTimedOut);
                }
                deadline - now
            }
        };
        let sleep = std::pin::pin!(tokio::time::sleep(Duration::from_millis(wait_ms)));
        let sleep = super::watched_sleep::WatchedSleep::new(sleep);
        // `biased`: the response first, without drawing a random start per wake-up.
        tokio::select! {
            biased;
            r = &mut send => return Ok(r),
            () = sleep => {}
        }
        now = now_ms();
    }
}

/// Sorts the outcome of an attempt by the stage it failed at. A fault the client's body
/// recorded comes first: the send error it caused says nothing about the endpoint. Statuses
/// as nginx: a timeout (connect, send, response head) is a 504, any other failure a 502.
fn classify(
    sent: Result<Result<Response<UpstreamBody>, UpstreamError>, ReadTimedOut>,
    p: &Prepared,
) -> Result<Response<UpstreamBody>, Failure> {
    let err = match sent {
        Ok(Ok(resp)) => {
            return match upstream_framing(resp.headers()) {
                None => Ok(resp),
                Some(reason) => Err(Failure::upstream(
                    Stage::InvalidResponse,
                    StatusCode::BAD_GATEWAY,
                    reason,
                    Cause::InvalidHeader,
                    true,
                )),
            };
        }
        Ok(Err(e)) => Some(e),
        Err(ReadTimedOut) => None,
    };
    if let Some(fault) = p.watch.fault() {
        return Err(Failure::client(fault, true));
    }
    let Some(e) = err else {
        return Err(Failure::upstream(
            Stage::ResponseHeaderTimeout,
            StatusCode::GATEWAY_TIMEOUT,
            "upstream timed out",
            Cause::Timeout,
            true,
        ));
    };
    // Whether another endpoint is tried is [`Retry`]'s to decide, from the cause.
    Err(match connect_stage(&e) {
        Some(ConnectStage::TimedOut) => Failure::upstream(
            Stage::Connect,
            StatusCode::GATEWAY_TIMEOUT,
            "upstream connect timed out",
            Cause::Timeout,
            false,
        ),
        Some(stage) => Failure::upstream(
            if stage == ConnectStage::Tls {
                Stage::Tls
            } else {
                Stage::Connect
            },
            StatusCode::BAD_GATEWAY,
            "upstream connect failed",
            Cause::Error,
            false,
        ),
        None if SendTimedOut::caused(&e) => Failure::upstream(
            Stage::Send,
            StatusCode::GATEWAY_TIMEOUT,
            "upstream send timed out",
            Cause::Timeout,
            true,
        ),
        None if e.is_invalid_response() => Failure::upstream(
            Stage::InvalidResponse,
            StatusCode::BAD_GATEWAY,
            "upstream sent an invalid response",
            Cause::InvalidHeader,
            true,
        ),
        None => Failure::upstream(
            Stage::UpstreamReset,
            StatusCode::BAD_GATEWAY,
            "upstream request failed",
            Cause::Error,
            true,
        ),
    })
}

/// Why a pod's response head cannot be framed with certainty, as nginx's proxy module refuses
/// it (an invalid header: 502, retried by `proxy-next-upstream: invalid_header`):
/// `Transfer-Encoding` other than exactly `chunked` ("upstream sent unknown
/// Transfer-Encoding"), or both it and `Content-Length` ("upstream sent Content-Length and
/// Transfer-Encoding at the same time"). hyper decodes such a body by the chunks (or to the
/// close) while the `Content-Length` would go on to the client with a body that does not
/// match it (RFC 9112 §6.3).
fn upstream_framing(headers: &http::HeaderMap) -> Option<&'static str> {
    if !headers.contains_key(TRANSFER_ENCODING) {
        return None;
    }
    if request_target::unknown_transfer_encoding(headers) {
        Some("upstream sent unknown Transfer-Encoding")
    } else if headers.contains_key(CONTENT_LENGTH) {
        Some("upstream sent Content-Length and Transfer-Encoding")
    } else {
        None
    }
}

/// The part of connecting that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectStage {
    /// `proxy-connect-timeout` passed.
    TimedOut,
    /// The TLS handshake.
    Tls,
    /// TCP, the HTTP/2 handshake, or a connection closed before it took the request.
    Other,
}

/// Which part of connecting `e` failed at; `None`: the request was taken (its failure came
/// later).
fn connect_stage(e: &UpstreamError) -> Option<ConnectStage> {
    use super::upstream::connect::ConnectError;
    match e {
        UpstreamError::Connect { source, .. } => Some(match **source {
            ConnectError::TimedOut(_) => ConnectStage::TimedOut,
            ConnectError::Tls(_) => ConnectStage::Tls,
            _ => ConnectStage::Other,
        }),
        UpstreamError::Request(_) => None,
    }
}

/// The endpoint's response for the client: hop-by-hop fields removed (connection-specific
/// ones must never reach an HTTP/2 client), the affinity cookie added, and `hold` kept until
/// the body has ended. Its version is the proxy's own, not the endpoint's: an HTTP/1.0 pod's
/// answer goes to an HTTP/1.1 client as HTTP/1.1 on a connection kept alive (RFC 9110
/// §6.2: the version names the sender's capability; hyper still answers an HTTP/1.0 client
/// in HTTP/1.0).
fn upstream_response<G: Send + Unpin + 'static>(
    resp: Response<UpstreamBody>,
    set_cookie: Option<HeaderValue>,
    upgraded: bool,
    hold: G,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgraded);
    if let Some(c) = set_cookie {
        parts.headers.append(SET_COOKIE, c);
    }
    let body = HoldUntilEnd::new(body.map_err(BoxError::from), hold);
    Response::from_parts(parts, body.boxed_unsync())
}

/// `X-Forwarded-Prefix`, sent with a rewritten path (`x-forwarded-prefix`).
const X_FORWARDED_PREFIX: http::HeaderName = http::HeaderName::from_static("x-forwarded-prefix");

/// A redirect from the rewrite step.
fn redirect_to(a: rewrite::Answer, out: &mut Outcome) -> Response<ProxyBody> {
    out.reason = Some(a.why.into());
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::FOUND);
    let mut resp = local(status, a.why);
    if let Ok(v) = HeaderValue::from_str(&a.location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// The HTTP to HTTPS redirect: ConfigMap `http-redirect-code` (308 by default) to
/// [`rewrite::https_location`].
fn redirect(
    shared: &Shared,
    host: &str,
    uri: &Uri,
    policy: &crate::model::RoutePolicy,
) -> Response<ProxyBody> {
    let port = shared.args.ports.https_redirect_port();
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = rewrite::https_location(host, port, pq, policy);
    let status = shared
        .live
        .load()
        .settings
        .http_redirect_code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::PERMANENT_REDIRECT);
    let mut resp = local(status, "ssl-redirect");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// A small answer from the proxy itself, with the reason in [`REASON_HEADER`]: nginx's page
/// for the status ([`super::nginx_pages`]), else a line with the status.
pub fn local(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let (body, content_type) = match super::nginx_pages::page(status) {
        Some(page) => (page, "text/html"),
        None => (
            format!(
                "{} {}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            "text/plain; charset=utf-8",
        ),
    };
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(REASON_HEADER, v);
    }
    resp
}

/// `Host` header, else the URI authority (HTTP/2 `:authority`), as sent: for the access log
/// of a request whose target was refused.
fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default()
}

fn finish(
    shared: &Shared,
    started: Instant,
    resp: Response<ProxyBody>,
    out: Outcome,
    host: &str,
    logged: Option<LoggedRequest>,
) -> Response<ProxyBody> {
    let m = &shared.metrics;
    let status = resp.status().as_u16();
    let took = started.elapsed().as_secs_f64();
    match (&out.series, &out.ingress, &out.host, &out.path) {
        (Some(series), Some(ingress), Some(host), Some(path))
            if series.is_for(ingress, host, path) =>
        {
            series.observe(m, status, took);
        }
        _ => {
            let dash = || Arc::clone(&shared.dash);
            let ingress = out.ingress.clone().unwrap_or_else(dash);
            let host_label = out.host.clone().unwrap_or_else(dash);
            let path = out.path.clone().unwrap_or_else(dash);
            m.requests
                .get_or_create(&RequestLabels {
                    ingress: Arc::clone(&ingress),
                    host: Arc::clone(&host_label),
                    path: Arc::clone(&path),
                    status,
                })
                .inc();
            m.request_duration
                .get_or_create(&RouteLabels {
                    ingress,
                    host: host_label,
                    path,
                })
                .observe(took);
        }
    }
    access_logged(shared, started, resp, out, host, logged)
}

/// `resp` with its access log line written when its body is done (no access log, or no
/// request to log, or a route that logs nothing: `resp` as it is).
fn access_logged(
    shared: &Shared,
    started: Instant,
    resp: Response<ProxyBody>,
    out: Outcome,
    host: &str,
    logged: Option<LoggedRequest>,
) -> Response<ProxyBody> {
    let status = resp.status().as_u16();
    let (
        Some(log),
        Some(LoggedRequest {
            method,
            uri,
            version,
            user_agent,
            request_id,
        }),
    ) = (&shared.access_log, logged)
    else {
        return resp;
    };
    if out.no_access_log {
        return resp;
    }
    let entry = Entry {
        time: now_epoch(),
        client: out.client.addr.to_string(),
        method: method.to_string(),
        host: host.to_string(),
        uri: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        protocol: format!("{version:?}"),
        status,
        bytes_sent: 0,
        request_time: 0.0,
        upstream_addr: out.upstream_addr,
        upstream_status: out.upstream_status,
        upstream_time: out.upstream_time.map(|d| d.as_secs_f64()),
        ingress: out.ingress.map(|s| s.to_string()),
        service: out.service,
        // The id the pod got when the request was forwarded, else the log's own.
        request_id: out
            .request_id
            .or(request_id)
            .unwrap_or_else(super::headers::new_request_id)
            .to_str()
            .map(str::to_string)
            .unwrap_or_default(),
        user_agent: user_agent.and_then(|v| v.to_str().ok().map(str::to_string)),
        reason: out.reason,
    };
    let (parts, body) = resp.into_parts();
    let body = LoggedBody::new(body, entry, started, Arc::clone(log));
    Response::from_parts(parts, BodyExt::boxed_unsync(body))
}
