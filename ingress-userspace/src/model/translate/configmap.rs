//! The ingress-nginx controller ConfigMap (`--configmap NS/NAME`, from the API or the manifest
//! directory) -> controller-wide settings and route defaults.
//!
//! Precedence, as in ingress-nginx: an Ingress annotation > the ConfigMap key > the flag of
//! the same name (flags are the defaults a ConfigMap overrides). A value that does not parse
//! gets a Warning on the ConfigMap naming the key, and the flag's value is kept. Keys we do not
//! act on get an `UnsupportedConfigMapKey` Warning from the [`super::support`] table.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::ConfigMap;

use super::{
    annotations::{
        CONNECT_TIMEOUT_RANGE, MAX_BODY_SIZE, TIMEOUT_RANGE, UPSTREAM_HTTP_KEYS, parse_duration,
        parse_prefix, parse_prefixes, parse_size, parse_upstream_http,
    },
    diagnostics::Diagnostics,
    location_list, support,
};
use crate::model::{
    IpPrefix, ObjectKind, ObjectRef, ProxySettings, RetryOn, RoutePolicy, SyslogServer,
};

/// `keep-alive`: 0, which turns client keep-alive off (configmap.md: "The zero value disables
/// keep-alive client connections"), up to the end of [`TIMEOUT_RANGE`].
pub const KEEP_ALIVE_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=*TIMEOUT_RANGE.end();

/// `upstream-keepalive-time`: 0 (no connection to a pod is reused) up to 30 days; nginx
/// takes any time, ingress-nginx's default is `1h`.
pub const UPSTREAM_KEEPALIVE_TIME_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(30 * 24 * 3600);

/// `worker-shutdown-timeout`: 0 (requests in flight are cut at once) up to a day; nginx takes
/// any time, ingress-nginx's default is `240s`.
pub const WORKER_SHUTDOWN_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(24 * 3600);

/// ingress-nginx's `hsts-max-age` default (seconds).
pub const HSTS_MAX_AGE: u64 = 31_536_000;

/// What the ConfigMap says (everything `None`/default without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    pub settings: ProxySettings,
    /// Defaults of per-route policy (ssl-redirect, proxy-body-size, proxy timeouts), used
    /// where an Ingress's annotations leave a field unset.
    pub route_defaults: RoutePolicy,
    /// `allow-snippet-annotations`; `None`: `--serve-ingresses-with-snippets` decides.
    pub serve_with_snippets: Option<bool>,
    /// `annotation-value-word-blocklist`: an Ingress with an annotation value containing one
    /// of these words is not served ([`super::word_blocklist`]); empty: none.
    pub annotation_value_word_blocklist: Vec<String>,
    /// `service-upstream`: the default of the annotation of the same name.
    pub service_upstream: Option<bool>,
    /// `retry-non-idempotent`: every route's `proxy-next-upstream` gets `non_idempotent`,
    /// whatever its annotation says (ingress-nginx's `buildNextUpstream`).
    pub retry_non_idempotent: bool,
    /// `global-allowed-response-headers`: the header names a `custom-headers` ConfigMap may
    /// set (lower case); empty, the default: none ([`super::custom_headers`]).
    pub allowed_response_headers: Vec<String>,
    /// `custom-http-errors`: the statuses intercepted on routes of Ingresses without the
    /// annotation of that name (which replaces the list, as a location's nginx `error_page`
    /// replaces the server's), sorted; served by the controller-wide default backend.
    pub custom_http_errors: Vec<u16>,
    /// `disable-proxy-intercept-errors` (default false): no `proxy_intercept_errors on` in
    /// ingress-nginx's `http` block, which every location without its own inherits
    /// ([`super::errors`]).
    pub disable_proxy_intercept_errors: bool,
    /// `add-headers`: the ConfigMap whose data are headers for every response
    /// ([`super::custom_headers::add_headers`] resolves it into `settings.add_headers`).
    pub add_headers_from: Option<crate::store::Key>,
    /// `proxy-set-headers`: the ConfigMap whose data are request headers for every request to
    /// a pod ([`super::custom_headers::proxy_set_headers`] resolves it into
    /// `settings.proxy_set_headers`).
    pub proxy_set_headers_from: Option<crate::store::Key>,
    /// `global-auth-url` and the other `global-auth-*` keys ([`super::forward_auth`]): `None`
    /// without a URL, `Err` with why the routes it covers are denied.
    pub global_auth: Option<Result<crate::model::ForwardAuth, String>>,
    /// `no-auth-locations`: path prefixes without authentication (default
    /// `/.well-known/acme-challenge`).
    pub no_auth_locations: Vec<String>,
    /// `no-tls-redirect-locations`: path prefixes never redirected to HTTPS, neither by
    /// `ssl-redirect` nor by `force-ssl-redirect` (default `/.well-known/acme-challenge`).
    pub no_tls_redirect_locations: Vec<String>,
    /// `whitelist-source-range`, `denylist-source-range` and `block-cidrs`.
    pub source_ranges: SourceRangeDefaults,
    /// `load-balance`, `proxy-redirect-from`, `proxy-redirect-to`, `proxy-cookie-domain`,
    /// `proxy-cookie-path`: the defaults of the annotations of the same names.
    pub annotation_defaults: super::annotations::AnnotationDefaults,
    /// `strict-validate-path-type` (default true since ingress-nginx 1.12): an Ingress with an
    /// `Exact` or `Prefix` path of other characters than ingress-nginx's `validPathType` is
    /// not served ([`super::ingress_inspect::strict_path_type`]).
    pub strict_validate_path_type: bool,
    /// `allow-cross-namespace-resources` (default false): annotations may name Secrets and
    /// ConfigMaps of other namespaces ([`super::annotations::cross_namespace_refused`]).
    pub allow_cross_namespace_resources: bool,
}

/// The ConfigMap's client source ranges, as ingress-nginx places them: `whitelist-source-range`
/// and `denylist-source-range` are the defaults of the annotations of the same names (each
/// taken where a route's Ingress lacks that annotation; ingress-nginx's `ipallowlist` /
/// `ipdenylist` parsers), and `block-cidrs` are `deny` lines of nginx's `http` block, which
/// a location inherits only when it has no `allow`/`deny` lines of its own (nginx's
/// inheritance of access-module directives).
///
/// `Err` holds why a list is unusable (an invalid CIDR): ingress-nginx would write it into
/// nginx.conf, which then fails its test; here the routes that would take it are denied
/// (503), as for an invalid annotation, and every other route serves on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRangeDefaults {
    pub allow: Result<Vec<IpPrefix>, String>,
    pub deny: Result<Vec<IpPrefix>, String>,
    pub block: Result<Vec<IpPrefix>, String>,
}

impl Default for SourceRangeDefaults {
    fn default() -> Self {
        SourceRangeDefaults {
            allow: Ok(Vec::new()),
            deny: Ok(Vec::new()),
            block: Ok(Vec::new()),
        }
    }
}

impl SourceRangeDefaults {
    /// Fills the lists a route's annotations left empty (see the type's docs).
    fn apply(&self, policy: &mut Arc<RoutePolicy>) {
        if *self == SourceRangeDefaults::default() {
            return;
        }
        let p = Arc::make_mut(policy);
        let mut take =
            |list: &mut Vec<IpPrefix>, default: &Result<Vec<IpPrefix>, String>| match default {
                Ok(d) => list.clone_from(d),
                Err(why) => {
                    p.response.denied.get_or_insert_with(|| why.clone());
                }
            };
        if p.allow_source_ranges.is_empty() {
            take(&mut p.allow_source_ranges, &self.allow);
        }
        if p.deny_source_ranges.is_empty() {
            take(&mut p.deny_source_ranges, &self.deny);
        }
        if p.allow_source_ranges.is_empty() && p.deny_source_ranges.is_empty() {
            take(&mut p.deny_source_ranges, &self.block);
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            settings: ProxySettings {
                hsts: Some(hsts_value(HSTS_MAX_AGE, true, false)),
                ..Default::default()
            },
            route_defaults: RoutePolicy::default(),
            serve_with_snippets: None,
            annotation_value_word_blocklist: Vec::new(),
            service_upstream: None,
            retry_non_idempotent: false,
            allowed_response_headers: Vec::new(),
            custom_http_errors: Vec::new(),
            disable_proxy_intercept_errors: false,
            add_headers_from: None,
            proxy_set_headers_from: None,
            global_auth: None,
            no_auth_locations: location_list::parse(location_list::DEFAULT_NO_AUTH_LOCATIONS),
            no_tls_redirect_locations: location_list::parse(
                location_list::DEFAULT_NO_TLS_REDIRECT_LOCATIONS,
            ),
            source_ranges: SourceRangeDefaults::default(),
            annotation_defaults: Default::default(),
            strict_validate_path_type: true,
            allow_cross_namespace_resources: false,
        }
    }
}

impl ControllerConfig {
    /// Fills what `policy` leaves unset from the ConfigMap's defaults.
    pub fn apply_defaults(&self, policy: &mut Arc<RoutePolicy>) {
        self.source_ranges.apply(policy);
        let d = &self.route_defaults;
        if self.retry_non_idempotent {
            let p = Arc::make_mut(policy);
            let when = p.next_upstream.when.take();
            let mut when = when
                .or_else(|| d.next_upstream.when.clone())
                .unwrap_or(RetryOn::NGINX_DEFAULT);
            when.non_idempotent = true;
            p.next_upstream.when = Some(when);
        }
        if *d == RoutePolicy::default() {
            return;
        }
        let p = Arc::make_mut(policy);
        let (n, dn) = (&mut p.next_upstream, &d.next_upstream);
        n.when = n.when.take().or_else(|| dn.when.clone());
        n.tries = n.tries.or(dn.tries);
        n.timeout = n.timeout.or(dn.timeout);
        p.ssl_redirect = p.ssl_redirect.or(d.ssl_redirect);
        p.force_ssl_redirect = p.force_ssl_redirect.or(d.force_ssl_redirect);
        p.use_port_in_redirects = p.use_port_in_redirects.or(d.use_port_in_redirects);
        // nginx.tmpl: the key writes `absolute_redirect off` in every server, the annotation
        // in its locations; neither ever writes `on`.
        if d.relative_redirects == Some(true) {
            p.relative_redirects = Some(true);
        }
        p.max_body_bytes = p.max_body_bytes.or(d.max_body_bytes);
        p.timeouts.connect = p.timeouts.connect.or(d.timeouts.connect);
        p.timeouts.read = p.timeouts.read.or(d.timeouts.read);
        p.timeouts.send = p.timeouts.send.or(d.timeouts.send);
        p.upstream_http = p.upstream_http.or(d.upstream_http);
        p.limit_rate = p.limit_rate.or(d.limit_rate);
        p.limit_rate_after = p.limit_rate_after.or(d.limit_rate_after);
    }
}

/// `max-age=N[; includeSubDomains][; preload]` (RFC 6797 section 6.1).
pub fn hsts_value(max_age: u64, include_subdomains: bool, preload: bool) -> String {
    let mut v = format!("max-age={max_age}");
    if include_subdomains {
        v.push_str("; includeSubDomains");
    }
    if preload {
        v.push_str("; preload");
    }
    v
}

struct Reader<'a> {
    cm: &'a ConfigMap,
    object: ObjectRef,
    diags: &'a mut Diagnostics,
}

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.cm
            .data
            .as_ref()?
            .get(key)
            .map(|v| v.trim().to_string())
    }

    fn bad(&mut self, key: &str, value: &str, expected: &str) {
        self.diags.warn(
            &self.object,
            "InvalidConfigMapValue",
            format!("key {key}: {value:?} is not {expected}; the default is kept"),
        );
    }

    /// A comma-separated list, each entry trimmed, empty ones dropped (ingress-nginx's
    /// `splitAndTrimSpace`, whose empty entries nginx's config would not take).
    fn list(&self, key: &str) -> Option<Vec<String>> {
        let v = self.get(key)?;
        Some(
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// A `true`/`false` key read and ignored: its value is checked (a Warning when it is
    /// not a boolean) and an Info says it does nothing here, with its support row's note.
    fn ignored_bool(&mut self, key: &str) {
        if self.bool(key).is_some() {
            let why = support::configmap_key(key).map_or("", |r| r.status.note());
            self.diags.info(
                &self.object,
                support::READ_AND_IGNORED,
                format!("key {key}: {why}"),
            );
        }
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?;
        match super::annotations::parse_bool(&v) {
            Some(b) => Some(b),
            None => {
                self.bad(key, &v, "true or false");
                None
            }
        }
    }

    /// A whole number of requests (`keep-alive-requests` and the like).
    fn count(&mut self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                self.bad(key, &v, "a whole number of requests");
                None
            }
        }
    }

    /// A Go duration (`time.ParseDuration`: `5s`, `300ms`), above zero and within
    /// [`TIMEOUT_RANGE`]; anything else warns and is the default, as ingress-nginx's
    /// `configmap.go` falls back on its default for text it cannot parse.
    fn go_duration(&mut self, key: &str) -> Option<Duration> {
        let v = self.get(key)?;
        match super::go_duration::parse(&v).filter(|d| TIMEOUT_RANGE.contains(d)) {
            Some(d) => Some(d),
            None => {
                self.bad(key, &v, "a Go duration above zero (\"5s\", \"300ms\")");
                None
            }
        }
    }

    fn duration(
        &mut self,
        key: &str,
        range: &std::ops::RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let v = self.get(key)?;
        match parse_duration(&v).filter(|d| range.contains(d)) {
            Some(d) => Some(d),
            None => {
                self.bad(key, &v, "a duration in range (seconds, or \"60s\", \"2m\")");
                None
            }
        }
    }

    /// A key ingress-nginx writes into a millisecond directive as it is (nginx's time syntax,
    /// [`super::nginx_time::parse_msec`]: `1h`, `90m`, `1h30m`, `1d`, `3600`).
    fn nginx_time(
        &mut self,
        key: &str,
        range: &std::ops::RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let v = self.get(key)?;
        match super::nginx_time::parse_msec(&v).filter(|d| range.contains(d)) {
            Some(d) => Some(d),
            None => {
                self.bad(
                    key,
                    &v,
                    "an nginx time in range (\"1h\", \"90m\", \"1d\", seconds)",
                );
                None
            }
        }
    }
}

/// ingress-nginx's default `syslog-port` (config.go).
pub const SYSLOG_PORT: u16 = 514;

/// `enable-syslog`, `syslog-host` and `syslog-port` (ingress-nginx's nginx.tmpl writes
/// `access_log syslog:server=HOST:PORT` when `enable-syslog` is true). The host is an IP
/// address (an IPv6 one with or without brackets) or a DNS name; a port outside 1-65535 warns
/// and is 514. `enable-syslog` without a host warns and leaves the access log on stdout
/// (ingress-nginx would write `server=:514`, a configuration nginx refuses).
fn syslog_server(r: &mut Reader<'_>) -> Option<SyslogServer> {
    let port = match r.get("syslog-port") {
        None => SYSLOG_PORT,
        Some(v) => match v.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                r.bad("syslog-port", &v, "a UDP port (1-65535)");
                SYSLOG_PORT
            }
        },
    };
    let host = r.get("syslog-host");
    if !r.bool("enable-syslog").unwrap_or(false) {
        return None;
    }
    let host = host
        .as_deref()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .filter(|h| !h.is_empty());
    let Some(host) = host else {
        r.bad(
            "enable-syslog",
            "true",
            "usable without syslog-host (a syslog server)",
        );
        return None;
    };
    if host.parse::<std::net::IpAddr>().is_err() && !is_dns_name(host) {
        r.bad("syslog-host", host, "an IP address or a DNS name");
        return None;
    }
    Some(SyslogServer {
        host: host.to_string(),
        port,
    })
}

/// Letters, digits, `-` and `.` in labels of 1 to 63 characters (RFC 1123).
fn is_dns_name(h: &str) -> bool {
    h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// ingress-nginx's controller ConfigMap as its Helm chart and manifests name it
/// (`ingress-nginx/ingress-nginx-controller`); `migrate` reads it by default.
pub fn ingress_nginx_default() -> crate::store::Key {
    crate::store::Key::new("ingress-nginx", "ingress-nginx-controller")
}

/// Reason of the Error a ConfigMap snippet key (`http-snippet`, `server-snippet`...) gets.
pub const SNIPPET_NOT_APPLIED: &str = "ConfigMapSnippetNotApplied";

/// Reads the controller ConfigMap.
pub fn parse(cm: &ConfigMap, diags: &mut Diagnostics) -> ControllerConfig {
    let object = ObjectRef::new(
        ObjectKind::ConfigMap,
        cm.metadata.namespace.clone().unwrap_or_default(),
        cm.metadata.name.clone().unwrap_or_default(),
    );
    let mut r = Reader { cm, object, diags };
    let mut out = ControllerConfig::default();
    for key in cm.data.iter().flat_map(|d| d.keys()) {
        let message = match support::configmap_key(key).map(|row| row.status) {
            Some(s) if s.implemented() => continue,
            // Not a tuning knob that can be skipped: the snippet may have been a control.
            Some(s) if s == support::CONFIGMAP_SNIPPET => {
                let message = format!("key {key}: {}", s.note());
                r.diags.error(&r.object, SNIPPET_NOT_APPLIED, message);
                continue;
            }
            Some(support::Status::NotYet) => {
                format!("key {key} is not implemented yet; it is ignored")
            }
            Some(s) => format!("key {key} is refused ({}); it is ignored", s.note()),
            None => {
                format!("key {key} is not an ingress-nginx ConfigMap key (a typo?); it is ignored")
            }
        };
        r.diags.warn(&r.object, "UnsupportedConfigMapKey", message);
    }

    out.strict_validate_path_type = r.bool("strict-validate-path-type").unwrap_or(true);
    out.allow_cross_namespace_resources =
        r.bool("allow-cross-namespace-resources").unwrap_or(false);
    let s = &mut out.settings;
    s.use_forwarded_headers = r.bool("use-forwarded-headers");
    s.enable_real_ip = r.bool("enable-real-ip");
    s.compute_full_forwarded_for = r.bool("compute-full-forwarded-for");
    s.use_proxy_protocol = r.bool("use-proxy-protocol");
    s.enable_underscores_in_headers = r.bool("enable-underscores-in-headers");
    s.disable_ipv6 = r.bool("disable-ipv6").unwrap_or(false);
    s.ignore_invalid_headers = r.bool("ignore-invalid-headers");
    s.allow_backend_server_header = r.bool("allow-backend-server-header").unwrap_or(false);
    // ingress-nginx's template: `access_log off` in the http block when either key is true
    // (`disable-http-access-log` is the http block's alone).
    let http_off = r.bool("disable-http-access-log").unwrap_or(false);
    r.ignored_bool("disable-stream-access-log");
    s.disable_access_log = r.bool("disable-access-log").unwrap_or(false) || http_off;
    s.access_log_for_default_server = r
        .bool("enable-access-log-for-default-backend")
        .unwrap_or(false);
    if let Some(v) = r.get("skip-access-log-urls") {
        // ingress-nginx splits the value on commas (config.go `SkipAccessLogURLs []string`).
        s.skip_access_log_urls = v
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
    }
    s.syslog = syslog_server(&mut r);
    s.add_original_uri_header = r.bool("proxy-add-original-uri-header").unwrap_or(false);
    if let Some(v) = r.get("forwarded-for-header") {
        match http::HeaderName::from_bytes(v.as_bytes()) {
            Ok(h) => s.forwarded_for_header = Some(h.as_str().to_string()),
            Err(_) => r.bad("forwarded-for-header", &v, "a header name"),
        }
    }
    if let Some(v) = r.get("proxy-real-ip-cidr") {
        let parsed: Option<Vec<IpPrefix>> = v
            .split(',')
            .filter(|c| !c.trim().is_empty())
            .map(parse_prefix)
            .collect();
        match parsed {
            Some(p) => s.proxy_real_ip_cidr = Some(p),
            None => r.bad("proxy-real-ip-cidr", &v, "a comma-separated list of CIDRs"),
        }
    }
    s.client_header_timeout = r.duration("client-header-timeout", &TIMEOUT_RANGE);
    s.client_body_timeout = r.duration("client-body-timeout", &TIMEOUT_RANGE);
    s.proxy_protocol_header_timeout = r.go_duration("proxy-protocol-header-timeout");
    s.keepalive_timeout = r.duration("keep-alive", &KEEP_ALIVE_RANGE);
    // nginx's `keepalive_requests` (client and upstream) and `keepalive_time` (upstream):
    // ingress-nginx writes the values as they are; 0 requests closes after every request
    // (nginx compares the count, at least 1, with `>=`), a 0 time reuses nothing.
    s.keepalive_requests = r.count("keep-alive-requests");
    let (head_buffers, invalid) = super::head_buffers::parse(|k| r.get(k));
    for i in invalid {
        r.bad(i.key, &i.value, i.expected);
    }
    s.head_buffers = head_buffers;
    s.upstream_keepalive_requests = r.count("upstream-keepalive-requests");
    // nginx's upstream `keepalive` and `keepalive_timeout` (ingress-nginx writes seconds);
    // 0 connections: ingress-nginx writes no `keepalive` at all, so nothing is reused.
    s.upstream_keepalive_connections = r.count("upstream-keepalive-connections");
    s.upstream_keepalive_timeout = r.duration("upstream-keepalive-timeout", &KEEP_ALIVE_RANGE);
    s.upstream_keepalive_time =
        r.nginx_time("upstream-keepalive-time", &UPSTREAM_KEEPALIVE_TIME_RANGE);
    s.worker_shutdown_timeout =
        r.nginx_time("worker-shutdown-timeout", &WORKER_SHUTDOWN_TIMEOUT_RANGE);

    let hsts = r.bool("hsts").unwrap_or(true);
    let include = r.bool("hsts-include-subdomains").unwrap_or(true);
    let preload = r.bool("hsts-preload").unwrap_or(false);
    let max_age = match r.get("hsts-max-age") {
        None => HSTS_MAX_AGE,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= u64::from(u32::MAX) => n,
            _ => {
                r.bad("hsts-max-age", &v, "a number of seconds");
                HSTS_MAX_AGE
            }
        },
    };
    out.settings.hsts = hsts.then(|| hsts_value(max_age, include, preload));
    if let Some(v) = r.get("http-redirect-code") {
        // ingress-nginx accepts these four and falls back to 308 with a warning.
        match v.parse::<u16>() {
            Ok(c @ (301 | 302 | 307 | 308)) => out.settings.http_redirect_code = Some(c),
            _ => r.bad("http-redirect-code", &v, "301, 302, 307 or 308"),
        }
    }
    // nginx's `limit_req_status` / `limit_conn_status` take 400 to 599.
    for (key, field) in [
        (
            "limit-req-status-code",
            &mut out.settings.limit_req_status_code,
        ),
        (
            "limit-conn-status-code",
            &mut out.settings.limit_conn_status_code,
        ),
    ] {
        if let Some(v) = r.get(key) {
            match v.parse::<u16>() {
                Ok(c @ 400..=599) => *field = Some(c),
                _ => r.bad(key, &v, "a status code from 400 to 599"),
            }
        }
    }

    // Our global per-client limit (xdp-ingress extensions, not ingress-nginx keys).
    for (key, field) in [
        ("global-limit-rps", &mut out.settings.global_limit_rps),
        ("global-limit-rpm", &mut out.settings.global_limit_rpm),
        (
            "global-limit-burst-multiplier",
            &mut out.settings.global_limit_burst_multiplier,
        ),
    ] {
        if let Some(v) = r.get(key) {
            match v.parse::<u32>() {
                Ok(n) => *field = Some(n),
                Err(_) => r.bad(key, &v, "a whole number (0 disables the limit)"),
            }
        }
    }
    if let Some(v) = r.get("global-limit-allowlist") {
        let parsed: Option<Vec<IpPrefix>> = v
            .split(',')
            .filter(|c| !c.trim().is_empty())
            .map(parse_prefix)
            .collect();
        match parsed {
            Some(p) => out.settings.global_limit_allowlist = Some(p),
            // Exempting nobody is the stricter reading of a typo, as limit-allowlist.
            None => r.bad(
                "global-limit-allowlist",
                &v,
                "a comma-separated list of CIDRs; nobody is exempt",
            ),
        }
    }

    for (key, list) in [
        ("whitelist-source-range", &mut out.source_ranges.allow),
        ("denylist-source-range", &mut out.source_ranges.deny),
        ("block-cidrs", &mut out.source_ranges.block),
    ] {
        let Some(v) = r.get(key) else { continue };
        *list = parse_prefixes(&v).ok_or_else(|| {
            let why = format!("ConfigMap key {key}: {v:?} has an invalid CIDR");
            r.diags.error(
                &r.object,
                "InvalidConfigMapValue",
                format!("{why}; every route that takes it gets 503"),
            );
            why
        });
    }
    if r.get("block-cidrs").is_some() {
        out.settings.block_cidrs = Some(out.source_ranges.block.clone());
    }

    let d = &mut out.route_defaults;
    // ingress-nginx's defaults of the annotations of the same names, in KiB as they are
    // (`limit_rate Nk`), whatever its ConfigMap page says about bytes.
    for (key, field) in [
        ("limit-rate", &mut d.limit_rate),
        ("limit-rate-after", &mut d.limit_rate_after),
    ] {
        if let Some(v) = r.get(key) {
            match super::rate_limit::kibibytes(&v) {
                Some(n) => *field = Some(n),
                None => r.bad(key, &v, "a whole number of kilobytes (0 turns it off)"),
            }
        }
    }
    d.ssl_redirect = r.bool("ssl-redirect");
    d.force_ssl_redirect = r.bool("force-ssl-redirect");
    // ingress-nginx's defaults.Backend `UsePortInRedirects`, the annotation's default.
    d.use_port_in_redirects = r.bool("use-port-in-redirects");
    d.relative_redirects = r.bool("relative-redirects");
    d.timeouts.connect = r.duration("proxy-connect-timeout", &CONNECT_TIMEOUT_RANGE);
    d.timeouts.read = r.duration("proxy-read-timeout", &TIMEOUT_RANGE);
    d.upstream_http = {
        let values: BTreeMap<&str, String> = UPSTREAM_HTTP_KEYS
            .into_iter()
            .filter_map(|k| r.get(k).map(|v| (k, v)))
            .collect();
        parse_upstream_http(|k| values.get(k).cloned(), |k, v, e| r.bad(k, v, e))
    };
    d.timeouts.send = r.duration("proxy-send-timeout", &TIMEOUT_RANGE);
    if let Some(v) = r.get("proxy-body-size") {
        match parse_size(&v) {
            Some(n) if n == u64::MAX || n <= MAX_BODY_SIZE => d.max_body_bytes = Some(n),
            _ => r.bad("proxy-body-size", &v, "a size from 0 (unlimited) to 1024g"),
        }
    }
    let (next_upstream, invalid) = super::next_upstream::parse(|k| r.get(k));
    for i in invalid {
        r.bad(i.key, &i.value, i.expected);
    }
    let (compression, invalid) = super::compression::parse(|k| r.get(k));
    for i in invalid {
        r.bad(i.key, &i.value, i.expected);
    }
    out.settings.compression = compression;
    let (tls, problems) = super::server_tls::parse(
        |k| r.get(k),
        |k| r.get(k).map(|v| super::annotations::parse_bool(&v)),
    );
    out.settings.tls = tls;
    for p in problems {
        if p.error {
            r.diags.error(&r.object, "InvalidConfigMapValue", p.message);
        } else {
            r.diags.warn(&r.object, "InvalidConfigMapValue", p.message);
        }
    }
    out.route_defaults.next_upstream = next_upstream;
    out.serve_with_snippets = r.bool("allow-snippet-annotations");
    if let Some(v) = r.get(super::word_blocklist::KEY) {
        out.annotation_value_word_blocklist = super::word_blocklist::parse(&v);
    }
    out.service_upstream = r.bool("service-upstream");
    out.retry_non_idempotent = r.bool("retry-non-idempotent").unwrap_or(false);
    if let Some(v) = r.get("custom-http-errors") {
        let (codes, bad) = super::errors::parse_codes(&v);
        if !bad.is_empty() {
            r.bad(
                "custom-http-errors",
                &bad.join(", "),
                "status codes from 300 to 599 (those are left out)",
            );
        }
        out.custom_http_errors = codes;
    }
    out.disable_proxy_intercept_errors = r.bool("disable-proxy-intercept-errors").unwrap_or(false);
    out.settings.default_server_errors = crate::model::ErrorPages {
        default_backend: None,
        intercept: out.custom_http_errors.clone(),
        // The `http` block's `proxy_intercept_errors` (`errors::pod_answers_intercepted`).
        pass_pod_answers: !out.custom_http_errors.is_empty() && out.disable_proxy_intercept_errors,
    };
    for (key, field) in [
        ("add-headers", &mut out.add_headers_from),
        ("proxy-set-headers", &mut out.proxy_set_headers_from),
    ] {
        if let Some(v) = r.get(key).filter(|v| !v.is_empty()) {
            *field = Some(super::custom_headers::configmap_key(
                &v,
                &r.object.namespace,
            ));
        }
    }
    for (key, list) in [
        ("block-user-agents", &mut out.settings.block_user_agents),
        ("block-referers", &mut out.settings.block_referers),
    ] {
        for entry in r.list(key).unwrap_or_default() {
            match crate::model::nginx_map::MapEntry::parse(&entry) {
                Ok(e) => list.push(e),
                Err(e) => r.bad(
                    key,
                    &entry,
                    &format!("a regular expression ({e}); it is left out"),
                ),
            }
        }
    }
    for h in r.list("hide-headers").unwrap_or_default() {
        match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) => out.settings.hide_headers.push(n.as_str().to_string()),
            Err(_) => r.bad("hide-headers", &h, "a header name; it is left out"),
        }
    }
    let global = {
        let get = |k: &str| r.get(k);
        let values = super::forward_auth::Values {
            get: &get,
            prefix: "global-auth-",
        };
        super::forward_auth::parse_values(&values, true)
    };
    match global {
        Ok(g) => out.global_auth = g.map(Ok),
        Err(why) => {
            r.diags.error(
                &r.object,
                "GlobalAuthDenied",
                format!("{why}; every route global auth covers gets 503 (never unauthenticated)"),
            );
            out.global_auth = Some(Err(why));
        }
    }
    // Checked as the annotations are: an Ingress takes a ConfigMap value without a second look.
    if let Some(v) = r.get("load-balance") {
        match super::annotations::load_balance(&v) {
            Some(_) => {
                out.annotation_defaults.0.insert("load-balance", v);
            }
            None => r.bad("load-balance", &v, "round_robin or ewma"),
        }
    }
    for key in super::answer_rewrite::KEYS {
        let Some(v) = r.get(key).filter(|v| !v.is_empty()) else {
            continue;
        };
        match super::answer_rewrite::check(key, &v) {
            Ok(()) => {
                out.annotation_defaults.0.insert(key, v);
            }
            Err(expected) => r.bad(key, &v, expected),
        }
    }
    if let Some(v) = r.get("no-auth-locations") {
        out.no_auth_locations = location_list::parse(&v);
    }
    if let Some(v) = r.get("no-tls-redirect-locations") {
        out.no_tls_redirect_locations = location_list::parse(&v);
    }
    if let Some(v) = r.get("global-allowed-response-headers") {
        // As written: ingress-nginx compares names exactly (`slices.Contains`).
        out.allowed_response_headers = v
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("ingress-nginx".into()),
                name: Some("ingress-nginx-controller".into()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// Our `global-limit-*` keys: whole numbers and CIDRs, each bad value a warning and unset.
    #[test]
    fn global_limit_keys_parse_and_bad_values_warn() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("global-limit-rps", "20"),
                ("global-limit-rpm", "ten"),
                ("global-limit-burst-multiplier", "2"),
                ("global-limit-allowlist", "10.0.0.0/8, 192.0.2.1"),
            ]),
            &mut d,
        );
        assert_eq!(c.settings.global_limit_rps, Some(20));
        assert_eq!(c.settings.global_limit_rpm, None);
        assert_eq!(c.settings.global_limit_burst_multiplier, Some(2));
        assert_eq!(
            c.settings.global_limit_allowlist.as_ref().map(Vec::len),
            Some(2)
        );
        assert_eq!(d.0.len(), 1, "{:?}", d.0);
        assert!(d.0[0].message.contains("global-limit-rpm"));
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[("global-limit-allowlist", "10.0.0.0/8, nope")]),
            &mut d,
        );
        assert_eq!(c.settings.global_limit_allowlist, None);
        assert_eq!(d.0.len(), 1);
    }

    /// nginx's `limit_req_status` / `limit_conn_status` take 400 to 599; anything else warns
    /// and leaves ingress-nginx's default, 503.
    #[test]
    fn limit_status_codes_are_400_to_599() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("limit-req-status-code", "429"),
                ("limit-conn-status-code", "200"),
            ]),
            &mut d,
        );
        assert_eq!(c.settings.limit_req_status_code, Some(429));
        assert_eq!(c.settings.limit_conn_status_code, None);
        assert_eq!(d.0.len(), 1, "{:?}", d.0);
        assert!(d.0[0].message.contains("limit-conn-status-code"));
    }

    #[test]
    fn keys_map_onto_settings_and_defaults() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("use-forwarded-headers", "true"),
                ("allow-backend-server-header", "true"),
                ("proxy-add-original-uri-header", "true"),
                ("proxy-real-ip-cidr", "10.0.0.0/8, 192.0.2.1"),
                ("forwarded-for-header", "X-Client-IP"),
                ("hsts-max-age", "600"),
                ("hsts-preload", "true"),
                ("proxy-body-size", "10m"),
                ("ssl-redirect", "false"),
                ("proxy-read-timeout", "120"),
                ("keep-alive", "10"),
                ("allow-snippet-annotations", "true"),
                ("custom-http-errors", "503, 404"),
                (
                    "global-allowed-response-headers",
                    "X-Frame-Options, Content-Security-Policy",
                ),
            ]),
            &mut d,
        );
        assert!(d.0.is_empty(), "{:?}", d.0);
        let s = &c.settings;
        assert_eq!(s.use_forwarded_headers, Some(true));
        assert!(s.allow_backend_server_header);
        assert!(!ProxySettings::default().allow_backend_server_header);
        assert!(s.add_original_uri_header);
        assert!(!ProxySettings::default().add_original_uri_header);
        assert_eq!(s.proxy_real_ip_cidr.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.forwarded_for_header.as_deref(), Some("x-client-ip"));
        assert_eq!(
            s.hsts.as_deref(),
            Some("max-age=600; includeSubDomains; preload")
        );
        assert_eq!(s.keepalive_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.route_defaults.max_body_bytes, Some(10 << 20));
        assert_eq!(c.route_defaults.ssl_redirect, Some(false));
        assert_eq!(c.serve_with_snippets, Some(true));
        assert_eq!(c.custom_http_errors, [404, 503]);
        assert_eq!(
            c.allowed_response_headers,
            ["X-Frame-Options", "Content-Security-Policy"]
        );
        // An annotation wins; unset fields take the ConfigMap's value.
        let mut p = Arc::new(RoutePolicy {
            max_body_bytes: Some(1),
            ..Default::default()
        });
        c.apply_defaults(&mut p);
        assert_eq!(p.max_body_bytes, Some(1));
        assert_eq!(p.timeouts.read, Some(Duration::from_secs(120)));
        assert_eq!(p.ssl_redirect, Some(false));
    }

    #[test]
    fn upstream_http_keys_are_route_defaults_annotations_override() {
        use crate::model::{UpstreamHttp, UpstreamVersion};
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("proxy-http-version", "1.0"),
                ("proxy-request-buffering", "off"),
                ("proxy-buffering", "maybe"),
            ]),
            &mut d,
        );
        let reasons: Vec<_> = d.0.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons, ["InvalidConfigMapValue"], "{:?}", d.0);
        let mut p = Arc::new(RoutePolicy {
            upstream_http: UpstreamHttp {
                request_buffering: Some(true),
                ..Default::default()
            },
            ..Default::default()
        });
        c.apply_defaults(&mut p);
        assert_eq!(p.upstream_http.version, Some(UpstreamVersion::Http10));
        assert_eq!(
            p.upstream_http.request_buffering,
            Some(true),
            "annotation wins"
        );
        assert_eq!(p.upstream_http.response_buffering, None);
    }

    #[test]
    fn defaults_without_a_configmap_are_ingress_nginx_defaults() {
        let c = ControllerConfig::default();
        assert_eq!(
            c.settings.hsts.as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
        assert_eq!(c.route_defaults, RoutePolicy::default());
    }

    /// `whitelist-source-range` / `denylist-source-range` are the annotations' defaults, each
    /// replaced only by its own annotation (ingress-nginx's `ipallowlist` / `ipdenylist`
    /// parsers fall back on the ConfigMap's value); `block-cidrs` (nginx `http`-level `deny`)
    /// reaches only a route with neither list; an invalid CIDR denies the routes taking it.
    #[test]
    fn access_log_keys() {
        let mut d = Diagnostics::default();
        let cm = ConfigMap {
            data: Some(
                [
                    ("disable-access-log", "true"),
                    ("skip-access-log-urls", "/healthz, /readyz,,"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        };
        let c = parse(&cm, &mut d);
        assert!(d.0.is_empty(), "{:?}", d.0);
        assert!(c.settings.disable_access_log);
        assert_eq!(c.settings.skip_access_log_urls, ["/healthz", "/readyz"]);
        assert!(!ProxySettings::default().disable_access_log);
        // ingress-nginx's e2e "disable-http-access-log set access_log off": the http block's
        // own key; the stream one is known (no typo warning), has nothing to turn off and
        // says so with an Info (what `explain` shows).
        for (key, off, said) in [
            ("disable-http-access-log", true, vec![]),
            (
                "disable-stream-access-log",
                false,
                vec![(
                    Severity::Info,
                    support::READ_AND_IGNORED.to_string(),
                    "key disable-stream-access-log: read and ignored (no stream proxy here: \
                     TCP/UDP Services are served by the XDP path, which writes no access log)"
                        .to_string(),
                )],
            ),
        ] {
            let mut d = Diagnostics::default();
            let cm = ConfigMap {
                data: Some([(key.to_string(), "true".to_string())].into()),
                ..Default::default()
            };
            let c = parse(&cm, &mut d);
            let got: Vec<_> =
                d.0.into_iter()
                    .map(|d| (d.severity, d.reason, d.message))
                    .collect();
            assert_eq!(got, said, "{key}");
            assert_eq!(c.settings.disable_access_log, off, "{key}");
        }
    }

    #[test]
    fn source_range_keys_are_defaults_and_block_cidrs_is_inherited() {
        let p = |s: &str| parse_prefix(s).unwrap();
        let route = |c: &ControllerConfig, allow: &[&str], deny: &[&str]| {
            let mut policy = Arc::new(RoutePolicy {
                allow_source_ranges: allow.iter().map(|s| p(s)).collect(),
                deny_source_ranges: deny.iter().map(|s| p(s)).collect(),
                ..Default::default()
            });
            c.apply_defaults(&mut policy);
            policy
        };
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("whitelist-source-range", "10.0.0.0/8"),
                ("denylist-source-range", "10.1.0.0/16, 10.2.0.1"),
                ("block-cidrs", "192.0.2.0/24"),
            ]),
            &mut d,
        );
        assert!(d.0.is_empty(), "{:?}", d.0);
        let r = route(&c, &[], &[]);
        assert_eq!(r.allow_source_ranges, [p("10.0.0.0/8")]);
        assert_eq!(r.deny_source_ranges, [p("10.1.0.0/16"), p("10.2.0.1/32")]);
        let r = route(&c, &["172.16.0.0/12"], &[]);
        assert_eq!(r.allow_source_ranges, [p("172.16.0.0/12")]);
        assert_eq!(r.deny_source_ranges, [p("10.1.0.0/16"), p("10.2.0.1/32")]);
        let r = route(&c, &[], &["10.3.0.0/16"]);
        assert_eq!(r.allow_source_ranges, [p("10.0.0.0/8")]);
        assert_eq!(r.deny_source_ranges, [p("10.3.0.0/16")]);

        let c = parse(
            &cm(&[("block-cidrs", "192.0.2.0/24,2001:db8::/32")]),
            &mut d,
        );
        // Also every request no route takes (the default server).
        assert_eq!(
            c.settings.block_cidrs,
            Some(Ok(vec![p("192.0.2.0/24"), p("2001:db8::/32")]))
        );
        let r = route(&c, &[], &[]);
        assert_eq!(
            r.deny_source_ranges,
            [p("192.0.2.0/24"), p("2001:db8::/32")]
        );
        assert!(r.allow_source_ranges.is_empty());
        let r = route(&c, &["198.18.0.0/15"], &[]);
        assert!(
            r.deny_source_ranges.is_empty(),
            "not inherited by a location with its own"
        );
        assert_eq!(
            route(&c, &[], &["10.0.0.0/8"]).deny_source_ranges,
            [p("10.0.0.0/8")]
        );

        for key in [
            "whitelist-source-range",
            "denylist-source-range",
            "block-cidrs",
        ] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[(key, "10.0.0.0/8, 10.0.0.0/40")]), &mut d);
            assert_eq!(d.0.len(), 1, "{key}: {:?}", d.0);
            assert_eq!(d.0[0].reason, "InvalidConfigMapValue");
            assert!(d.0[0].message.contains(key), "{}", d.0[0].message);
            let denied = route(&c, &[], &[]).response.denied.clone();
            assert!(denied.is_some_and(|w| w.contains(key)), "{key}");
            // A route with both lists of its own takes none of the keys.
            let own = route(&c, &["127.0.0.1"], &["10.9.0.0/16"]);
            assert_eq!(own.response.denied, None, "{key}");
        }
    }

    /// `limit-rate` / `limit-rate-after` are the defaults of the annotations, in KB as
    /// ingress-nginx renders them (`limit_rate Nk`); an annotation (its `0` too) wins.
    #[test]
    fn limit_rate_keys_are_route_defaults() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[("limit-rate", "100"), ("limit-rate-after", "fast")]),
            &mut d,
        );
        assert_eq!(d.0.len(), 1, "{:?}", d.0);
        assert_eq!(c.route_defaults.limit_rate, Some(100 * 1024));
        assert_eq!(c.route_defaults.limit_rate_after, None);
        let mut plain = Arc::new(RoutePolicy::default());
        c.apply_defaults(&mut plain);
        assert_eq!(plain.limit_rate, Some(100 * 1024));
        let mut off = Arc::new(RoutePolicy {
            limit_rate: Some(0),
            ..RoutePolicy::default()
        });
        c.apply_defaults(&mut off);
        assert_eq!(off.limit_rate, Some(0));
    }

    /// `hide-headers`: comma-separated names, trimmed, lower case; an entry that is no header
    /// name is left out with a Warning.
    #[test]
    fn hide_headers_are_a_list_of_names() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[("hide-headers", " X-Powered-By, ,Server,bad name")]),
            &mut d,
        );
        assert_eq!(c.settings.hide_headers, ["x-powered-by", "server"]);
        assert_eq!(d.0.len(), 1, "{:?}", d.0);
        assert!(d.0[0].message.contains("bad name"), "{}", d.0[0].message);
        assert!(ControllerConfig::default().settings.hide_headers.is_empty());
    }

    /// `block-user-agents` / `block-referers`: comma-separated nginx `map` entries, trimmed;
    /// an expression that does not compile is left out with a Warning.
    #[test]
    fn block_lists_are_map_entries() {
        use crate::model::nginx_map::MapEntry;
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("block-user-agents", "~*bot, AlphaBot ,~(?=x)"),
                ("block-referers", "~example\\.com"),
            ]),
            &mut d,
        );
        assert_eq!(
            c.settings.block_user_agents,
            [
                MapEntry::Regex {
                    pattern: "bot".into(),
                    case_insensitive: true
                },
                MapEntry::Exact("alphabot".into())
            ]
        );
        assert_eq!(
            c.settings.block_referers,
            [MapEntry::Regex {
                pattern: "example\\.com".into(),
                case_insensitive: false
            }]
        );
        assert_eq!(d.0.len(), 1, "{:?}", d.0);
        assert!(
            d.0[0].message.contains("block-user-agents"),
            "{}",
            d.0[0].message
        );
    }

    /// The ConfigMap's snippet keys are raw nginx configuration that may have been a control
    /// (a `deny all;` in `server-snippet`): each is an Error saying it is not applied and
    /// what to use instead, and naming no unrelated flag; nothing else is denied.
    #[test]
    fn configmap_snippets_are_errors_saying_they_are_not_applied() {
        let keys = [
            "http-snippet",
            "server-snippet",
            "location-snippet",
            "main-snippet",
            "global-auth-snippet",
            "stream-snippet",
        ];
        let mut d = Diagnostics::default();
        let pairs: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "deny all;")).collect();
        let c = parse(&cm(&pairs), &mut d);
        assert_eq!(d.0.len(), keys.len(), "{:?}", d.0);
        for k in keys {
            let diag =
                d.0.iter()
                    .find(|d| d.message.starts_with(&format!("key {k}:")))
                    .unwrap_or_else(|| panic!("{k}: {:?}", d.0));
            assert_eq!(diag.severity, crate::model::Severity::Error, "{k}");
            assert_eq!(diag.reason, SNIPPET_NOT_APPLIED, "{k}");
            let m = &diag.message;
            assert!(m.contains(k) && m.contains("not applied"), "{m}");
            assert!(m.contains("not enforced") && m.contains("whitelist-source-range"));
            assert!(!m.contains("--serve-ingresses-with-snippets"), "{m}");
        }
        assert!(c.route_defaults.response.denied.is_none());
    }

    /// `enable-syslog` sends the access log to `syslog-host`:`syslog-port` (default 514);
    /// without `enable-syslog` the other two do nothing; a bad port warns and is 514, no host
    /// or a bad one warns and keeps stdout.
    #[test]
    fn syslog_keys() {
        let server = |host: &str, port| {
            Some(SyslogServer {
                host: host.into(),
                port,
            })
        };
        for (pairs, want, warnings) in [
            (
                vec![("enable-syslog", "true"), ("syslog-host", "logs.example")],
                server("logs.example", 514),
                0,
            ),
            (
                vec![
                    ("enable-syslog", "true"),
                    ("syslog-host", "[2001:db8::1]"),
                    ("syslog-port", "1514"),
                ],
                server("2001:db8::1", 1514),
                0,
            ),
            (vec![("syslog-host", "10.0.0.9")], None, 0),
            (vec![("enable-syslog", "true")], None, 1),
            (
                vec![("enable-syslog", "true"), ("syslog-host", "bad host")],
                None,
                1,
            ),
            (
                vec![
                    ("enable-syslog", "true"),
                    ("syslog-host", "10.0.0.9"),
                    ("syslog-port", "70000"),
                ],
                server("10.0.0.9", 514),
                1,
            ),
        ] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&pairs), &mut d);
            assert_eq!(c.settings.syslog, want, "{pairs:?}");
            assert_eq!(d.0.len(), warnings, "{pairs:?}: {:?}", d.0);
            assert!(d.0.iter().all(|d| d.reason == "InvalidConfigMapValue"));
        }
    }

    /// `proxy-protocol-header-timeout` is a Go duration (configmap.go `time.ParseDuration`);
    /// text it cannot parse, or a duration not above zero, warns and keeps the default.
    #[test]
    fn proxy_protocol_header_timeout_is_a_go_duration() {
        for (v, want) in [
            ("300ms", Some(Duration::from_millis(300))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("5", None),
            ("0s", None),
            ("-1s", None),
            ("soon", None),
        ] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[("proxy-protocol-header-timeout", v)]), &mut d);
            assert_eq!(c.settings.proxy_protocol_header_timeout, want, "{v}");
            let reasons: Vec<&str> = d.0.iter().map(|d| d.reason.as_str()).collect();
            let warned = if want.is_some() {
                vec![]
            } else {
                vec!["InvalidConfigMapValue"]
            };
            assert_eq!(reasons, warned, "{v}");
        }
    }

    /// `keep-alive-requests`, `upstream-keepalive-requests`, `upstream-keepalive-connections`
    /// (whole numbers), `upstream-keepalive-time` and `worker-shutdown-timeout` (nginx times) and
    /// `upstream-keepalive-timeout` (seconds, or a time) reach the settings; `http2-max-requests` is
    /// accepted without a warning (ingress-nginx's nginx ignores it too); a bad value warns.
    #[test]
    fn connection_lifetime_keys() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("keep-alive-requests", "100"),
                ("upstream-keepalive-requests", "0"),
                ("upstream-keepalive-time", "30m"),
                ("upstream-keepalive-connections", "0"),
                ("upstream-keepalive-timeout", "5"),
                ("http2-max-requests", "5"),
                ("worker-shutdown-timeout", "4m"),
            ]),
            &mut d,
        );
        assert!(d.0.is_empty(), "{:?}", d.0);
        let s = &c.settings;
        assert_eq!(s.worker_shutdown_timeout, Some(Duration::from_secs(240)));
        assert_eq!(s.keepalive_requests, Some(100));
        assert_eq!(s.upstream_keepalive_requests, Some(0));
        assert_eq!(s.upstream_keepalive_time, Some(Duration::from_secs(1800)));
        assert_eq!(s.upstream_keepalive_connections, Some(0));
        assert_eq!(s.upstream_keepalive_timeout, Some(Duration::from_secs(5)));
        let c = parse(&cm(&[("upstream-keepalive-timeout", "2m")]), &mut d);
        assert_eq!(
            c.settings.upstream_keepalive_timeout,
            Some(Duration::from_secs(120))
        );
        let c = parse(
            &cm(&[
                ("keep-alive-requests", "-1"),
                ("upstream-keepalive-time", "forever"),
                ("upstream-keepalive-connections", "-1"),
                ("upstream-keepalive-timeout", "1d"),
            ]),
            &mut d,
        );
        assert_eq!(d.0.len(), 4, "{:?}", d.0);
        assert!(
            (d.0.iter()).any(|w| w.message.contains("upstream-keepalive-connections")
                && w.message.contains("default is kept")),
            "{:?}",
            d.0
        );
        assert_eq!(c.settings, ControllerConfig::default().settings);
    }

    /// `client-header-buffer-size` and `large-client-header-buffers` reach the settings as
    /// nginx sizes; an invalid value is a Warning and keeps ingress-nginx's default.
    #[test]
    fn head_buffer_keys() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("client-header-buffer-size", "2k"),
                ("large-client-header-buffers", "8 16k"),
            ]),
            &mut d,
        );
        assert!(d.0.is_empty(), "{:?}", d.0);
        let b = c.settings.head_buffers;
        assert_eq!((b.client, b.large_count, b.large_size), (2048, 8, 16 << 10));
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("client-header-buffer-size", "1g"),
                ("large-client-header-buffers", "4"),
            ]),
            &mut d,
        );
        assert_eq!(d.0.len(), 2, "{:?}", d.0);
        assert!(
            (d.0.iter()).all(|w| w.reason == "InvalidConfigMapValue"
                && w.severity == crate::model::Severity::Warning
                && w.message.contains("default is kept")),
            "{:?}",
            d.0
        );
        assert_eq!(
            c.settings.head_buffers,
            crate::model::HeadBuffers::default()
        );
    }

    /// Without a key, each route default is ingress-nginx's (config.go `NewDefault`,
    /// defaults.Backend; configmap.md's default column); the proxy-wide ones are checked in
    /// `proxy::settings`.
    #[test]
    fn an_empty_configmap_gives_ingress_nginx_s_route_defaults() {
        use crate::model::{RetryOn, UpstreamVersion};
        let mut d = Diagnostics::default();
        let c = parse(&cm(&[]), &mut d);
        assert!(d.0.is_empty(), "{:?}", d.0);
        assert_eq!(c, ControllerConfig::default());
        let mut p = Arc::new(RoutePolicy::default());
        c.apply_defaults(&mut p);
        // ssl-redirect true (on hosts with a certificate), force-ssl-redirect false
        assert!(p.redirects_to_https(true) && !p.redirects_to_https(false));
        // proxy-http-version 1.1, proxy-request-buffering on, proxy-buffering off
        assert_eq!(p.upstream_http.version(), UpstreamVersion::Http11);
        assert!(p.upstream_http.request_buffering());
        assert_ne!(p.upstream_http.response_buffering, Some(true));
        // proxy-next-upstream "error timeout", -timeout 0, -tries from the flag (3);
        // retry-non-idempotent false
        let n = &p.next_upstream;
        assert_eq!(
            n.when.clone().unwrap_or(RetryOn::NGINX_DEFAULT),
            RetryOn::NGINX_DEFAULT
        );
        assert_eq!((n.tries, n.timeout), (None, None));
        // proxy-body-size and the proxy timeouts: the flags (1m, 5 s, 60 s, 60 s)
        assert_eq!(p.max_body_bytes, None);
        assert_eq!(p.timeouts, Default::default());
        // limit-rate, limit-rate-after 0; use-port-in-redirects, relative-redirects false
        assert_eq!((p.limit_rate, p.limit_rate_after), (None, None));
        assert_ne!(p.use_port_in_redirects, Some(true));
        assert_ne!(p.relative_redirects, Some(true));
        // whitelist-/denylist-source-range, block-cidrs empty
        assert!(p.allow_source_ranges.is_empty() && p.deny_source_ranges.is_empty());
        // custom-http-errors empty; no-auth-locations, no-tls-redirect-locations
        // /.well-known/acme-challenge; strict-validate-path-type true;
        // allow-cross-namespace-resources false; no global auth
        assert!(c.custom_http_errors.is_empty() && !c.disable_proxy_intercept_errors);
        assert_eq!(c.no_auth_locations, ["/.well-known/acme-challenge"]);
        assert_eq!(c.no_tls_redirect_locations, ["/.well-known/acme-challenge"]);
        assert!(c.strict_validate_path_type && !c.allow_cross_namespace_resources);
        assert!(c.global_auth.is_none() && c.allowed_response_headers.is_empty());
        assert_eq!(c.service_upstream, None);
        // gzip-level 1, gzip-min-length 256; brotli-level 4, brotli-min-length 20
        let c = parse(
            &cm(&[("use-gzip", "true"), ("enable-brotli", "true")]),
            &mut d,
        );
        let z = c.settings.compression;
        let (g, b) = (z.gzip.expect("gzip"), z.brotli.expect("brotli"));
        assert_eq!(
            (g.level, g.min_length, b.level, b.min_length),
            (1, 256, 4, 20)
        );
        assert!(z.gzip_disable.is_none());
    }

    /// `proxy-body-size` takes nginx's sizes (`client_max_body_size`: bytes, `k`, `m`, `g` in
    /// either case, `0` for no limit); the integer-second keys (`proxy-read-timeout`,
    /// `keep-alive`...) take seconds, and `60s` / `1m` as well.
    #[test]
    fn sizes_and_seconds_parse_as_nginx_and_ingress_nginx_write_them() {
        for (v, bytes) in [
            ("8k", 8 << 10),
            ("8K", 8 << 10),
            ("1m", 1 << 20),
            ("1M", 1 << 20),
            ("1g", 1 << 30),
            ("1024", 1024),
            ("0", u64::MAX),
        ] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[("proxy-body-size", v)]), &mut d);
            assert!(d.0.is_empty(), "{v}: {:?}", d.0);
            assert_eq!(c.route_defaults.max_body_bytes, Some(bytes), "{v}");
        }
        for v in ["1.5m", "1mb", "m", "-1"] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[("proxy-body-size", v)]), &mut d);
            assert_eq!(c.route_defaults.max_body_bytes, None, "{v}");
            assert_eq!(d.0.len(), 1, "{v}: {:?}", d.0);
        }
        for v in ["60", "60s", "1m"] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[("proxy-read-timeout", v), ("keep-alive", v)]), &mut d);
            assert!(d.0.is_empty(), "{v}: {:?}", d.0);
            assert_eq!(
                c.route_defaults.timeouts.read,
                Some(Duration::from_secs(60))
            );
            assert_eq!(c.settings.keepalive_timeout, Some(Duration::from_secs(60)));
        }
    }

    /// `upstream-keepalive-time` is written into nginx's `keepalive_time` as it is, so it
    /// takes nginx's time syntax (days, parts together), not only one number and unit; what
    /// nginx's configuration test refuses (`y` in a millisecond directive, units out of
    /// order) warns and keeps the default (1h).
    #[test]
    fn upstream_keepalive_time_is_an_nginx_time() {
        for (v, secs) in [
            ("1h", 3600),
            ("3600", 3600),
            ("90m", 5400),
            ("1h30m", 5400),
            ("1d", 86_400),
            ("1w", 7 * 86_400),
        ] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[("upstream-keepalive-time", v)]), &mut d);
            assert!(d.0.is_empty(), "{v}: {:?}", d.0);
            let time = c.settings.upstream_keepalive_time;
            assert_eq!(time, Some(Duration::from_secs(secs)), "{v}");
        }
        for v in ["1y", "30m1h", "31d", "1 h"] {
            let mut d = Diagnostics::default();
            let c = parse(&cm(&[("upstream-keepalive-time", v)]), &mut d);
            assert_eq!(c.settings.upstream_keepalive_time, None, "{v}");
            assert_eq!(d.0.len(), 1, "{v}: {:?}", d.0);
            assert!(d.0[0].message.contains("default is kept"), "{:?}", d.0);
        }
    }

    /// `load-balance` and the `proxy-redirect-*` / `proxy-cookie-*` keys are the defaults of
    /// the annotations of the same names, each taken where an Ingress lacks the annotation or
    /// its value is invalid (ingress-nginx's annotation parsers fall back on defaults.Backend,
    /// controller.go on the ConfigMap's `LoadBalancing`); a bad ConfigMap value warns.
    #[test]
    fn annotation_defaults_fill_missing_and_invalid_annotations() {
        use crate::model::{LoadBalancing, TextReplace};
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("load-balance", "ewma"),
                ("proxy-redirect-from", "http://in/"),
                ("proxy-redirect-to", "/"),
                ("proxy-cookie-path", "/a/ /"),
                ("proxy-cookie-domain", "no-space"),
            ]),
            &mut d,
        );
        assert_eq!(d.0.len(), 1, "{:?}", d.0);
        assert!(d.0[0].message.contains("proxy-cookie-domain"));
        let tr = |f: &str, t: &str| {
            Some(TextReplace {
                from: f.into(),
                to: t.into(),
            })
        };
        let object = ObjectRef::new(ObjectKind::Ingress, "default", "web");
        let run = |pairs: &[(&str, &str)]| {
            let a: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.to_string()))
                .collect();
            let mut d = Diagnostics::default();
            let o = super::super::annotations::parse_with(
                Some(&a),
                &c.annotation_defaults,
                &object,
                &mut d,
            );
            (o, d.0.len())
        };
        let (o, n) = run(&[]);
        assert_eq!(n, 0);
        assert_eq!(o.load_balancing, LoadBalancing::LeastRequest);
        let rw = &o.policy.answer_rewrite;
        assert_eq!(rw.redirect, tr("http://in/", "/"));
        assert_eq!(rw.cookie_path, tr("/a/", "/"));
        assert_eq!(rw.cookie_domain, None);
        let (o, n) = run(&[
            ("load-balance", "least_conn"),
            ("proxy-redirect-from", "off"),
            ("proxy-cookie-path", "/b/ /c/"),
        ]);
        assert_eq!(n, 1, "the invalid load-balance warns");
        assert_eq!(o.load_balancing, LoadBalancing::LeastRequest, "ConfigMap's");
        let rw = &o.policy.answer_rewrite;
        assert_eq!(
            (rw.redirect.clone(), rw.cookie_path.clone()),
            (None, tr("/b/", "/c/"))
        );
        let (o, _) = run(&[("load-balance", "round_robin")]);
        assert_eq!(o.load_balancing, LoadBalancing::RoundRobin);
    }

    /// `disable-ipv6` is a boolean, false by default; `disable-ipv6-dns` is accepted apart.
    #[test]
    fn disable_ipv6_is_false_unless_set() {
        let mut d = Diagnostics::default();
        assert!(!parse(&cm(&[]), &mut d).settings.disable_ipv6);
        assert!(
            parse(&cm(&[("disable-ipv6", "true")]), &mut d)
                .settings
                .disable_ipv6
        );
        assert!(
            !parse(&cm(&[("disable-ipv6", "yes please")]), &mut d)
                .settings
                .disable_ipv6
        );
        assert!(
            !parse(&cm(&[("disable-ipv6-dns", "true")]), &mut d)
                .settings
                .disable_ipv6
        );
        assert_eq!(d.0.len(), 1, "only the bad value warns: {:?}", d.0);
    }

    /// `keep-alive: "0"` is a value, not a typo: configmap.md "The zero value disables
    /// keep-alive client connections".
    #[test]
    fn zero_keep_alive_is_accepted() {
        let mut d = Diagnostics::default();
        let c = parse(&cm(&[("keep-alive", "0")]), &mut d);
        assert!(d.0.is_empty(), "{:?}", d.0);
        assert_eq!(c.settings.keepalive_timeout, Some(Duration::ZERO));
    }

    #[test]
    fn bad_values_warn_on_the_configmap_and_keep_the_default() {
        let mut d = Diagnostics::default();
        let c = parse(
            &cm(&[
                ("hsts", "yes"),
                ("proxy-body-size", "lots"),
                ("proxy-real-ip-cidr", "10.0.0.0/33"),
                ("keep-alive", "forever"),
                ("worker-processes", "4"),
                ("use-forwarded-header", "true"),
            ]),
            &mut d,
        );
        let reasons: Vec<(&str, String)> =
            d.0.iter()
                .map(|d| {
                    assert_eq!(d.object.kind, ObjectKind::ConfigMap);
                    (
                        d.reason.as_str(),
                        d.message.split(':').next().unwrap_or("").to_string(),
                    )
                })
                .collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons.contains(&("InvalidConfigMapValue", "key hsts".into())));
        assert!(
            reasons.iter().any(
                |(r, m)| *r == "UnsupportedConfigMapKey" && m.contains("use-forwarded-header ")
            )
        );
        assert_eq!(c, {
            let mut want = ControllerConfig::default();
            want.settings.hsts = Some(hsts_value(HSTS_MAX_AGE, true, false));
            want
        });
    }
}
