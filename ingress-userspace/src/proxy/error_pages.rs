//! A route's error pages at request time (ingress-nginx `default-backend` and
//! `custom-http-errors`; user guide "Custom errors"; translation: `model::translate::errors`):
//!
//! - [`serving`]: a route whose backend has no endpoints is served by its `default-backend`.
//! - [`Intercept`]: a response of the route's location whose status is listed in
//!   `custom-http-errors` (the backend's, or one the proxy makes itself: a rate-limit,
//!   allowlist or authentication refusal, as nginx's `error_page` covers both) is replaced by
//!   the answer of the default backend to a bodiless request for `/` (nginx's
//!   `rewrite (.*) / break`, query kept, method kept) carrying the headers ingress-nginx sends:
//!   `X-Code`, `X-Format` (the client's `Accept`), `X-Original-URI`, `X-Namespace`,
//!   `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`, `X-Request-ID`. That answer goes to
//!   the client unchanged, status included ("NGINX does not change the response from the custom
//!   default backend"), and is never intercepted again. With `disable-proxy-intercept-errors`
//!   a pod's answer is not replaced, only the proxy's own.

use std::sync::Arc;

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri,
    header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING, UPGRADE},
    uri::PathAndQuery,
};
use http_body_util::Empty;

use super::{router::CompiledRoute, upstream::UpstreamRuntime};

/// A route's error pages, compiled over upstream handles `U`.
#[derive(Debug)]
pub struct CompiledErrors<U> {
    /// `default-backend`.
    pub default_backend: Option<U>,
    /// `custom-http-errors`, sorted.
    pub intercept: Vec<u16>,
    /// `disable-proxy-intercept-errors`: a pod's answer is never replaced.
    pub pass_pod_answers: bool,
}

/// The backend that serves a request routed to `up`: the route's `default-backend` while `up`
/// has no endpoints, else `up`.
pub fn serving<'r>(
    errors: Option<&'r CompiledErrors<Arc<UpstreamRuntime>>>,
    up: &'r Arc<UpstreamRuntime>,
) -> &'r Arc<UpstreamRuntime> {
    match errors.and_then(|e| e.default_backend.as_ref()) {
        Some(d) if up.spec.endpoints.is_empty() => d,
        _ => up,
    }
}

/// Sets on a request that the route's `default-backend` serves in place of `up` (no endpoints;
/// `None`: the route's Service does not exist) the headers ingress-nginx sets in such a
/// location (nginx.tmpl, "custom-default-backend-"): `X-Code: 503`, `X-Format` (the client's
/// `Accept`, absent when it sent none, as nginx sends no empty header), `X-Namespace`,
/// `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`. `X-Request-ID` is the request's own.
pub fn mark_served_by_default_backend<B>(
    req: &mut Request<B>,
    route: &CompiledRoute<Arc<UpstreamRuntime>>,
    up: Option<&UpstreamRuntime>,
) {
    let (service, port) = up.map_or((String::new(), String::new()), |u| {
        (u.spec.service.name.clone(), service_port(u))
    });
    let object = &route.origin().object;
    set_error_headers(
        req.headers_mut(),
        &[
            ("x-code", "503"),
            ("x-namespace", &object.namespace),
            ("x-ingress-name", &object.name),
            ("x-service-name", &service),
            ("x-service-port", &port),
        ],
    );
}

/// Sets `fields` and `X-Format` (the client's `Accept`) on a request to a default backend, as
/// nginx's `proxy_set_header` does: a field whose value is empty (or not a header value) is
/// not sent, and the client's own field of that name never is either.
fn set_error_headers(headers: &mut HeaderMap, fields: &[(&'static str, &str)]) {
    for (name, value) in fields {
        let name = HeaderName::from_static(name);
        match HeaderValue::from_str(value) {
            Ok(v) if !value.is_empty() => headers.insert(name, v),
            _ => headers.remove(name),
        };
    }
    let format = headers.get(ACCEPT).filter(|v| !v.is_empty()).cloned();
    match format {
        Some(v) => headers.insert(HeaderName::from_static("x-format"), v),
        None => headers.remove(HeaderName::from_static("x-format")),
    };
}

/// The Service port of `up` as the Ingress named it (number or name).
fn service_port(up: &UpstreamRuntime) -> String {
    up.spec
        .id
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default()
}

/// What the error backend needs of a request, kept before the request is forwarded.
pub struct Intercept<'r> {
    codes: &'r [u16],
    pass_pod_answers: bool,
    /// The error backend: the route's `default-backend`, else the controller-wide one.
    pub target: &'r Arc<UpstreamRuntime>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    namespace: String,
    ingress: String,
    service: String,
    port: String,
}

impl<'r> Intercept<'r> {
    /// `None` when the route intercepts nothing, no default backend exists, or the route's
    /// location is denied ([`crate::model::RoutePolicy::location_denied`]). `up`: the
    /// route's Service port the request goes to, named in `X-Service-*`; `None` for a route
    /// that has none (the root location: ingress-nginx's `$service_name` is empty there, and
    /// nginx sends no empty header).
    pub fn new<B>(
        route: &'r CompiledRoute<Arc<UpstreamRuntime>>,
        global: Option<&'r Arc<UpstreamRuntime>>,
        up: Option<&UpstreamRuntime>,
        req: &Request<B>,
    ) -> Option<Self> {
        if route.policy.location_denied() {
            return None;
        }
        let errors = route
            .errors
            .as_deref()
            .filter(|e| !e.intercept.is_empty())?;
        let target = errors.default_backend.as_ref().or(global)?;
        let (service, port) = up.map_or((String::new(), String::new()), |u| {
            (u.spec.service.name.clone(), service_port(u))
        });
        Some(Intercept {
            codes: &errors.intercept,
            pass_pod_answers: errors.pass_pod_answers,
            target,
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            namespace: route.origin().object.namespace.clone(),
            ingress: route.origin().object.name.clone(),
            service,
            port,
        })
    }

    /// The default server's (`_`: a request no route takes, served by the controller's
    /// default backend `target`) interception of the ConfigMap's `custom-http-errors`
    /// (`errors`: [`crate::model::ProxySettings::default_server_errors`]); `None` when it
    /// lists nothing. ingress-nginx's default server location names no Ingress or Service, so
    /// no `X-Namespace`, `X-Ingress-Name` or `X-Service-*` is sent.
    pub fn default_server<B>(
        errors: &'r crate::model::ErrorPages,
        target: &'r Arc<UpstreamRuntime>,
        req: &Request<B>,
    ) -> Option<Self> {
        (!errors.intercept.is_empty()).then(|| Intercept {
            codes: &errors.intercept,
            pass_pod_answers: errors.pass_pod_answers,
            target,
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            namespace: String::new(),
            ingress: String::new(),
            service: String::new(),
            port: String::new(),
        })
    }

    /// Names `up` in `X-Service-Name` and `X-Service-Port`: the Service port the request is
    /// sent to, once chosen (until then, the one [`Intercept::new`] was given).
    pub fn serving(&mut self, up: &UpstreamRuntime) {
        self.service.clone_from(&up.spec.service.name);
        self.port = service_port(up);
    }

    /// Whether a response with `status` is replaced; `from_pod`: a pod answered it (nginx's
    /// `proxy_intercept_errors` decides), else the proxy made it (nginx's `error_page` alone).
    pub fn catches(&self, status: StatusCode, from_pod: bool) -> bool {
        !(from_pod && self.pass_pod_answers) && self.codes.binary_search(&status.as_u16()).is_ok()
    }

    /// The request to the error backend for a response with `status`; `request_id`: the
    /// `X-Request-ID` the first attempt carried.
    pub fn request(
        self,
        status: StatusCode,
        request_id: Option<&HeaderValue>,
    ) -> Request<Empty<Bytes>> {
        let mut headers = self.headers;
        // No body goes to the error backend, and it is never an upgrade.
        for h in [
            CONTENT_LENGTH,
            TRANSFER_ENCODING,
            CONTENT_TYPE,
            CONNECTION,
            UPGRADE,
        ] {
            headers.remove(h);
        }
        let original = self
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        set_error_headers(
            &mut headers,
            &[
                ("x-code", status.as_str()),
                ("x-original-uri", &original),
                ("x-namespace", &self.namespace),
                ("x-ingress-name", &self.ingress),
                ("x-service-name", &self.service),
                ("x-service-port", &self.port),
            ],
        );
        if let Some(id) = request_id {
            headers.insert(HeaderName::from_static("x-request-id"), id.clone());
        }
        let target = match self.uri.query() {
            Some(q) => format!("/?{q}"),
            None => "/".to_string(),
        };
        let mut req = Request::new(Empty::new());
        *req.method_mut() = self.method;
        *req.uri_mut() = Uri::from(
            PathAndQuery::try_from(target).unwrap_or_else(|_| PathAndQuery::from_static("/")),
        );
        *req.headers_mut() = headers;
        req
    }
}
