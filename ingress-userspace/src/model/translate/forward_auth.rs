//! ingress-nginx's external authentication: the `auth-url` annotation family and the controller
//! ConfigMap's `global-auth-*` keys -> the route's [`ForwardAuth`].
//!
//! Values are checked as ingress-nginx's `annotations/authreq` and `template/configmap.go` check
//! them (methods, header names, cache durations), and the URLs, cache key, redirect and
//! `auth-proxy-set-headers` values are parsed for nginx variables ([`NginxString`]). Anything that
//! keeps the authentication from being set up as written (a bad value, an unknown variable, a
//! missing `auth-proxy-set-headers` ConfigMap) denies the location: every request of its paths
//! gets 503 (`RouteAuth::Unavailable`), never unauthenticated. Where ingress-nginx only drops a
//! bad optional value (`auth-signin`, the `global-auth-*` keys), the location is denied here as
//! well, with a diagnostic naming the value.
//!
//! Global auth applies to a route whose Ingress has no `auth-url` of its own and does not say
//! `enable-global-auth: "false"` (template `shouldApplyGlobalAuth`). `no-auth-locations`
//! (default `/.well-known/acme-challenge`) takes every authentication off the paths that start
//! with one of its entries (template `isLocationInLocationList`, basic auth included).
//!
//! An auth URL whose host names a Service (`<svc>.<ns>.svc` or `<svc>.<ns>.svc.<cluster
//! domain>`, with a port of that Service) is resolved here to that port's endpoints, so the
//! proxy needs no cluster DNS; the Service becomes a dependency of the snapshot.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::{annotations::Reader, endpoints::EndpointIndex};
use crate::{
    model::{
        AuthCache, AuthService, CacheValid, EndpointState, ForwardAuth, ObjectKind, ObjectRef,
        nginx_var::NginxString,
    },
    store::{Key, Objects},
};

/// `auth-cache-duration` without a value (ingress-nginx `DefaultCacheDuration`).
pub const DEFAULT_CACHE_DURATION: &str = "200 202 401 5m";
/// `auth-signin-redirect-param` without a value.
pub const DEFAULT_REDIRECT_PARAM: &str = "rd";

/// ingress-nginx's `methodsRegex`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// ingress-nginx's `headerRegexp` (`^[a-zA-Z\d\-_]+$`), and not a field that frames the message
/// or names the connection (RFC 9110 section 7.6.1, RFC 9112 section 6): set from an auth
/// answer or a ConfigMap, those would break the request rather than describe it.
pub fn valid_header(h: &str) -> bool {
    const FRAMING: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !FRAMING.iter().any(|f| f.eq_ignore_ascii_case(h))
}

/// The family's keys, without prefix: `auth-` for annotations, `global-auth-` for the
/// ConfigMap.
pub(super) struct Values<'a> {
    pub get: &'a dyn Fn(&str) -> Option<String>,
    /// `auth-` or `global-auth-`.
    pub prefix: &'static str,
}

impl Values<'_> {
    fn get(&self, key: &str) -> Option<String> {
        (self.get)(&format!("{}{key}", self.prefix)).filter(|v| !v.is_empty())
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Parses the family (without `auth-proxy-set-headers` and Service resolution): `Ok(None)`
/// without a URL, `Err` with why the location is denied.
pub(super) fn parse_values(v: &Values<'_>, global: bool) -> Result<Option<ForwardAuth>, String> {
    let Some(url_text) = v.get("url") else {
        return Ok(None);
    };
    let name = |k: &str| v.name(k);
    let template = |key: &str, text: &str| {
        NginxString::parse(text).map_err(|e| format!("{} {text:?}: {e}", name(key)))
    };
    let url = template("url", &url_text)?;
    let host = host_of(&url_text).map_err(|e| format!("{} {url_text:?}: {e}", name("url")))?;
    let host = template("url", host)?;
    let method = match v.get("method") {
        None => None,
        Some(m) if METHODS.contains(&m.as_str()) => Some(m),
        Some(m) => return Err(format!("{} {m:?} is not an HTTP method", name("method"))),
    };
    let param = match v.get("signin-redirect-param") {
        None => DEFAULT_REDIRECT_PARAM.to_string(),
        Some(p)
            if p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) =>
        {
            p
        }
        Some(p) => {
            return Err(format!(
                "{} {p:?} is not a URL parameter name",
                name("signin-redirect-param")
            ));
        }
    };
    let signin = match v.get("signin") {
        None => None,
        Some(s) => {
            check_signin(&s).map_err(|e| format!("{} {s:?}: {e}", name("signin")))?;
            Some(template("signin", &signin_url(&s, &param))?)
        }
    };
    let mut response_headers = Vec::new();
    for h in v.get("response-headers").iter().flat_map(|s| s.split(',')) {
        let h = h.trim();
        if h.is_empty() {
            continue;
        }
        if !valid_header(h) {
            return Err(format!(
                "{}: {h:?} is not a header name that may be set ([A-Za-z0-9_-], not hop-by-hop or framing)",
                name("response-headers")
            ));
        }
        response_headers.push(h.to_string());
    }
    let request_redirect = match v.get("request-redirect") {
        None => None,
        Some(r) => Some(template("request-redirect", &r)?),
    };
    let always_set_cookie = match v.get("always-set-cookie") {
        None => false,
        Some(b) => super::annotations::parse_bool(&b)
            .ok_or_else(|| format!("{} {b:?} is not true or false", name("always-set-cookie")))?,
    };
    let cache = match v.get("cache-key") {
        None => None,
        Some(k) => {
            let key = template("cache-key", &k)?;
            let durations = v
                .get("cache-duration")
                .unwrap_or_else(|| DEFAULT_CACHE_DURATION.into());
            let valid = parse_cache_durations(&durations)
                .map_err(|e| format!("{} {durations:?}: {e}", name("cache-duration")))?;
            Some(AuthCache { key, valid })
        }
    };
    Ok(Some(ForwardAuth {
        global,
        url,
        host,
        method,
        signin,
        signin_relative: false,
        response_headers,
        request_redirect,
        always_set_cookie,
        cache,
        proxy_set_headers: Vec::new(),
        service: None,
    }))
}

/// The host name of a URL as written (`$host` stays `$host`), or why it is not a URL
/// (ingress-nginx `parser.StringToURL`: a scheme and a host). Only `http` and `https`: nginx's
/// `proxy_pass` takes no other.
pub(super) fn host_of(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("not an http:// or https:// URL")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        &authority[..v6.find(']').map_or(authority.len(), |i| i + 2)]
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    if authority.contains("..") {
        // As ingress-nginx's `StringToURL` ("invalid url host"): no name has an empty label.
        return Err("the URL's host has an empty label (\"..\")".into());
    }
    Ok(host)
}

/// Whether `url` may be a sign-in URL: an http(s) URL, or a path (`/oauth2/start`:
/// ingress-nginx takes any value its URL validator allows and writes it in `return 302`),
/// kept as written; the proxy completes a path as nginx's `absolute_redirect` does, where the
/// `Location` is sent ([`ForwardAuth::signin_relative`]). Anything else: why the location is
/// denied.
pub(super) fn check_signin(url: &str) -> Result<(), String> {
    if url.starts_with('/') {
        return Ok(());
    }
    host_of(url)
        .map(|_| ())
        .map_err(|e| format!("{e} and not a path starting with /"))
}

/// ingress-nginx's `buildAuthSignURL`: `?<param>=$pass_access_scheme://$http_host$escaped_request_uri`
/// appended (`&` when the URL has a query), unless the URL already sets `param`.
pub fn signin_url(url: &str, param: &str) -> String {
    let query = url
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q));
    let original = "$pass_access_scheme://$http_host$escaped_request_uri";
    match query {
        None | Some("") => format!("{}?{param}={original}", url.trim_end_matches('?')),
        Some(q)
            if q.split('&').any(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, v)| k == param && !v.is_empty())
            }) =>
        {
            url.to_string()
        }
        Some(_) => format!("{url}&{param}={original}"),
    }
}

/// `auth-cache-duration`: comma-separated `proxy_cache_valid` rules, each `[code ...] time`
/// (ingress-nginx `ValidCacheDuration`; `any` for every status; no code: 200, 301 and 302,
/// nginx's default). Times in nginx's units (`ms s m h d w M y`), several added up (`1h 30m`).
pub fn parse_cache_durations(s: &str) -> Result<Vec<CacheValid>, String> {
    let mut out = Vec::new();
    for rule in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let mut statuses = Vec::new();
        let mut any = false;
        let mut ttl: Option<Duration> = None;
        for el in rule.split_whitespace() {
            if el.len() == 3 && el.bytes().all(|b| b.is_ascii_digit()) {
                if ttl.is_some() {
                    return Err(format!("status {el} after the time in {rule:?}"));
                }
                statuses.push(el.parse().map_err(|_| format!("bad status {el}"))?);
            } else if el == "any" {
                any = true;
            } else {
                let d = nginx_time(el).ok_or_else(|| format!("{el:?} is not a time"))?;
                ttl = Some(ttl.unwrap_or_default() + d);
            }
        }
        let ttl = ttl.ok_or_else(|| format!("no time in {rule:?}"))?;
        if any {
            statuses.clear();
        } else if statuses.is_empty() {
            statuses = vec![200, 301, 302];
        }
        out.push(CacheValid { statuses, ttl });
    }
    if out.is_empty() {
        return parse_cache_durations(DEFAULT_CACHE_DURATION);
    }
    Ok(out)
}

/// One nginx time (`ngx_parse_time`): a number and a unit (`ms s m h d w M y`); no unit:
/// seconds.
fn nginx_time(s: &str) -> Option<Duration> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok()?;
    let secs = |k: u64| Some(Duration::from_secs(n.checked_mul(k)?));
    match &s[digits..] {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        "w" => secs(7 * 86_400),
        "M" => secs(30 * 86_400),
        "y" => secs(365 * 86_400),
        _ => None,
    }
}

/// What the route's external auth is: `None` (none), `Some(Ok)`, or `Some(Err(reason))`
/// (denied). `controller`: the ConfigMap, parsed once ([`super::configmap`]): its global auth
/// and its `relative-redirects` (the sign-in location's `absolute_redirect`).
pub(super) fn for_ingress(
    r: &mut Reader<'_>,
    ns: &str,
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    controller: &super::configmap::ControllerConfig,
    refs: &mut super::References,
) -> Option<Result<Arc<ForwardAuth>, String>> {
    let signin_relative = controller.route_defaults.relative_redirects == Some(true);
    let mut auth = match own_values(r) {
        Err(why) => return Some(Err(why)),
        Ok(Some(a)) => a,
        Ok(None) => {
            if r.bool("enable-global-auth") == Some(false) {
                return None;
            }
            return match controller.global_auth.as_ref()? {
                Ok(g) => {
                    let g = ForwardAuth {
                        signin_relative,
                        ..g.clone()
                    };
                    Some(Ok(Arc::new(resolve(g, objects, endpoints, refs))))
                }
                Err(why) => Some(Err(format!("global-auth: {why}"))),
            };
        }
    };
    auth.signin_relative = signin_relative;
    if let Some(name) = r.get("auth-proxy-set-headers").map(str::to_string) {
        let allowed = r.allow_cross_namespace;
        match proxy_set_headers(&name, ns, allowed, objects, refs) {
            Ok(h) => auth.proxy_set_headers = h,
            Err(why) => return Some(Err(denied(r, "AuthProxySetHeadersRefused", why))),
        }
    }
    Some(Ok(Arc::new(resolve(auth, objects, endpoints, refs))))
}

/// The Ingress's own `auth-*` values, read without looking anything up: `Ok(None)` without
/// `auth-url`, `Err` (reported on `r`) with the reason the location is denied.
fn own_values(r: &mut Reader<'_>) -> Result<Option<ForwardAuth>, String> {
    let get = |k: &str| r.get(k).map(str::to_string);
    let own = parse_values(
        &Values {
            get: &get,
            prefix: "auth-",
        },
        false,
    );
    match own {
        Err(why) => Err(denied(r, "InvalidAnnotation", why)),
        Ok(Some(a)) => {
            keepalive_values(r);
            Ok(Some(a))
        }
        Ok(None) => Ok(None),
    }
}

/// Reports (on `r`, as [`for_ingress`] does) what is wrong with the values of an Ingress's
/// `auth-url` family without resolving its Service or ConfigMap: what `migrate` checks.
pub(super) fn check_values(r: &mut Reader<'_>) {
    let _ = own_values(r);
}

/// Reports why the location is denied; returns the reason the proxy answers with.
fn denied(r: &mut Reader<'_>, reason: &str, why: String) -> String {
    r.diags.error(
        r.object,
        reason,
        format!("{why}; every request to its paths gets 503 (never unauthenticated)"),
    );
    format!("{reason}: {why}")
}

/// `auth-keepalive*`: read and ignored (the auth client always keeps connections alive; an
/// Info says so); a value that ingress-nginx would not take is a warning.
fn keepalive_values(r: &mut Reader<'_>) {
    for key in [
        "auth-keepalive",
        "auth-keepalive-requests",
        "auth-keepalive-timeout",
    ] {
        match r.get(key).map(str::to_string) {
            Some(v) if v.parse::<i64>().is_err() => r.bad(key, &v, "an integer"),
            _ => r.ignored(key),
        }
    }
    if r.bool("auth-keepalive-share-vars").is_some() {
        r.ignored("auth-keepalive-share-vars");
    }
}

/// `auth-proxy-set-headers`: the ConfigMap `name` or `ns/name`, same namespace only unless
/// `allow_cross_namespace` (ingress-nginx's `allow-cross-namespace-resources`), every key a
/// header name.
fn proxy_set_headers(
    name: &str,
    ns: &str,
    allow_cross_namespace: bool,
    objects: &Objects,
    refs: &mut super::References,
) -> Result<Vec<(String, NginxString)>, String> {
    let (cm_ns, cm_name) = name.split_once('/').unwrap_or((ns, name));
    let cm_ns = if cm_ns.is_empty() { ns } else { cm_ns };
    if cm_name.is_empty() || cm_name.contains('/') {
        return Err(format!(
            "auth-proxy-set-headers {name:?} is not NAME or NAMESPACE/NAME"
        ));
    }
    if super::annotations::cross_namespace_refused(allow_cross_namespace, ns, cm_ns) {
        return Err(format!(
            "auth-proxy-set-headers {name:?}: only a ConfigMap in the Ingress's namespace {ns} \
             (allow-cross-namespace-resources: \"true\" allows others)"
        ));
    }
    let key = Key::new(cm_ns, cm_name);
    refs.config_maps.insert(key.clone());
    let cm = objects
        .config_maps
        .get(&key)
        .ok_or_else(|| format!("auth-proxy-set-headers: ConfigMap {key} not found"))?;
    let mut out = Vec::new();
    for (h, v) in cm.data.iter().flatten() {
        if !valid_header(h) {
            return Err(format!(
                "auth-proxy-set-headers: ConfigMap {key} key {h:?} is not a header name that may be set ([A-Za-z0-9_-], not hop-by-hop or framing)"
            ));
        }
        let value = NginxString::parse(v).map_err(|e| {
            format!("auth-proxy-set-headers: ConfigMap {key} header {h} value {v:?}: {e}")
        })?;
        out.push((h.clone(), value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Resolves an auth URL with a literal host naming a Service port to its endpoints.
fn resolve(
    mut auth: ForwardAuth,
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    refs: &mut super::References,
) -> ForwardAuth {
    auth.service = service_of(auth.url.as_str(), objects, endpoints, refs);
    auth
}

/// The in-cluster Service a URL's literal host names (`<svc>.<ns>.svc[.<domain>]`, port
/// from the URL or its scheme), resolved to its endpoints; `None` for any other host (the
/// system's resolver): for `auth-url` and `mirror-target` alike. The Service is recorded in
/// `refs` so that its endpoint changes re-translate the Ingress.
pub(super) fn service_of(
    url: &str,
    objects: &Objects,
    endpoints: &EndpointIndex<'_>,
    refs: &mut super::References,
) -> Option<AuthService> {
    let https = url.starts_with("https://");
    // The URL up to its first variable, as ingress-nginx reads a mirror's host:
    // `http://svc.ns.svc$request_uri` names the Service, `http://$host/auth` nothing.
    let literal = &url[..url.find('$').unwrap_or(url.len())];
    let uri: http::Uri = literal.parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let mut labels = host.split('.');
    let (svc, ns, tag) = (labels.next()?, labels.next()?, labels.next()?);
    if tag != "svc" || labels.any(str::is_empty) {
        return None;
    }
    let key = Key::new(ns, svc);
    refs.services.insert(key.clone());
    refs.auth_services.insert(key.clone());
    let service = objects.services.get(&key)?;
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let sp = spec
        .ports
        .iter()
        .flatten()
        .find(|p| i32::from(port) == p.port)?;
    let eps = endpoints.resolve(ns, svc, sp);
    let active: Vec<SocketAddr> = eps
        .iter()
        .filter(|e| e.state == EndpointState::Active)
        .map(|e| e.addr.socket())
        .collect();
    let endpoints = if active.is_empty() {
        eps.iter().map(|e| e.addr.socket()).collect()
    } else {
        active
    };
    Some(AuthService {
        service: ObjectRef::new(ObjectKind::Service, ns, svc),
        host,
        port,
        endpoints,
    })
}

#[cfg(test)]
#[path = "forward_auth_tests.rs"]
mod tests;
