//! Settings the controller ConfigMap may change at run time (client-address trust, client
//! timeouts, HSTS): the flags overlaid with the snapshot's [`ProxySettings`], swapped on every
//! apply. A connection reads them when it is accepted (PROXY protocol, header and idle
//! timeouts: listener properties, so a change applies to connections accepted after it); a
//! request reads them when it starts (trust, body timeout, HSTS).

use std::{sync::Arc, time::Duration};

use http::{HeaderName, HeaderValue, StatusCode};

use super::compression::Compressor;
use super::rate_limit::GLOBAL_ZONE;
use super::upstream::pool::Keepalive;
use super::{args::ProxyArgs, client_addr::TrustConfig, limits, liveness::ConnTimeouts};
use crate::model::{ProxySettings, RateLimit, nginx_map::MapMatcher, nginx_var::NginxString};

/// ingress-nginx's default `proxy-protocol-header-timeout` (config.go
/// `defProxyDeadlineDuration`): how long its TLS proxy for ssl-passthrough waits for a PROXY
/// header.
pub const PROXY_PROTOCOL_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The live settings derived from the flags and one snapshot's [`ProxySettings`].
pub(crate) struct Live {
    /// What the snapshot's settings were made from (to skip rebuilding when unchanged); also
    /// read as they are where no derived form is needed (`disable-access-log`,
    /// `skip-access-log-urls`, `allow-backend-server-header`).
    pub settings: ProxySettings,
    pub trust: TrustConfig,
    /// How client connections' heads are parsed ([`limits::ServerBuilders`]).
    pub builders: limits::ServerBuilders,
    pub conn_timeouts: ConnTimeouts,
    /// `upstream-keepalive-*` over `--upstream-keepalive` and `--upstream-keepalive-timeout`:
    /// how connections to pods are pooled ([`super::upstream::pool::ReuseLimits`]).
    pub upstream_keepalive: Keepalive,
    /// `keep-alive-requests`: requests one client connection may carry
    /// ([`super::liveness::Progress::with_request_limit`]).
    pub keepalive_requests: u64,
    pub client_header_timeout: Duration,
    pub client_body_timeout: Duration,
    /// `proxy-protocol-header-timeout` (default [`PROXY_PROTOCOL_HEADER_TIMEOUT`]).
    pub proxy_protocol_header_timeout: Duration,
    /// `Strict-Transport-Security` for HTTPS responses (ConfigMap `hsts*`).
    pub hsts: Option<HeaderValue>,
    /// `enable-underscores-in-headers`: off, request fields named with `_` are dropped.
    pub enable_underscores_in_headers: bool,
    /// `ignore-invalid-headers` (default true): request fields of invalid names are dropped
    /// ([`super::headers::drop_invalid_names`]).
    pub ignore_invalid_headers: bool,
    /// `add-headers`: set on every response (ingress-nginx's http-level `more_set_headers`).
    pub add_headers: http::HeaderMap,
    /// `proxy-set-headers`: set on every request to a pod of an Ingress route or of the
    /// default backend, values expanded per request ([`crate::model::ProxySettings`]).
    pub proxy_set_headers: Vec<(HeaderName, NginxString)>,
    /// `hide-headers`: removed from the pod's answers ([`crate::model::ProxySettings`]).
    pub hide_headers: Vec<HeaderName>,
    /// `proxy-add-original-uri-header`.
    pub add_original_uri_header: bool,
    /// `block-user-agents` and `block-referers` ([`crate::model::ProxySettings`]).
    pub block_user_agents: MapMatcher,
    pub block_referers: MapMatcher,
    /// Status of requests over `limit-rps`/`limit-rpm` (ConfigMap `limit-req-status-code`,
    /// default 503 as ingress-nginx).
    pub limit_req_status: StatusCode,
    /// Status of requests over `limit-connections` (ConfigMap `limit-conn-status-code`,
    /// default 503).
    pub limit_conn_status: StatusCode,
    /// The global per-client limit over every Ingress (`--global-limit-*` flags, ConfigMap
    /// `global-limit-*` keys); `None` without one.
    pub global_limit: Option<Arc<RateLimit>>,
    /// `use-gzip` / `enable-brotli` and their settings; `None` when both are off.
    pub compressor: Option<Compressor>,
}

impl Live {
    pub fn new(args: &ProxyArgs, settings: &ProxySettings) -> Live {
        let a = overlay(args, settings);
        Live {
            settings: settings.clone(),
            trust: TrustConfig::from_args(&a),
            builders: limits::ServerBuilders::new(&a, &settings.head_buffers),
            conn_timeouts: limits::conn_timeouts(&a),
            upstream_keepalive: upstream_keepalive(args, settings),
            keepalive_requests: settings
                .keepalive_requests
                .unwrap_or(limits::KEEPALIVE_REQUESTS),
            client_header_timeout: a.client_header_timeout,
            client_body_timeout: a.client_body_timeout,
            proxy_protocol_header_timeout: settings
                .proxy_protocol_header_timeout
                .unwrap_or(PROXY_PROTOCOL_HEADER_TIMEOUT),
            enable_underscores_in_headers: a.enable_underscores_in_headers,
            ignore_invalid_headers: settings.ignore_invalid_headers.unwrap_or(true),
            limit_req_status: status_or_503(settings.limit_req_status_code),
            limit_conn_status: status_or_503(settings.limit_conn_status_code),
            global_limit: global_limit(args, settings),
            compressor: Compressor::new(&settings.compression),
            add_headers: settings
                .add_headers
                .iter()
                .filter_map(|(n, v)| {
                    Some((
                        HeaderName::from_bytes(n.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
            proxy_set_headers: settings
                .proxy_set_headers
                .iter()
                .filter_map(|(n, v)| Some((HeaderName::from_bytes(n.as_bytes()).ok()?, v.clone())))
                .collect(),
            add_original_uri_header: settings.add_original_uri_header,
            block_user_agents: MapMatcher::new(&settings.block_user_agents),
            block_referers: MapMatcher::new(&settings.block_referers),
            hide_headers: settings
                .hide_headers
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            hsts: settings
                .hsts
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
        }
    }
}

/// The upstream keep-alive settings: each ConfigMap key wins over its flag.
pub fn upstream_keepalive(args: &ProxyArgs, s: &ProxySettings) -> Keepalive {
    let d = Keepalive::default();
    Keepalive {
        connections: (s.upstream_keepalive_connections).map_or(args.upstream_keepalive, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
        timeout: (s.upstream_keepalive_timeout).unwrap_or(args.upstream_keepalive_timeout),
        requests: s.upstream_keepalive_requests.unwrap_or(d.requests),
        time: s.upstream_keepalive_time.unwrap_or(d.time),
    }
}

/// The global per-client limit: each ConfigMap key wins over its flag; `0` disables a rate.
pub fn global_limit(args: &ProxyArgs, s: &ProxySettings) -> Option<Arc<RateLimit>> {
    let positive = |n: Option<u32>| n.filter(|&n| n > 0);
    let rps = positive(s.global_limit_rps.or(args.global_limit_rps));
    let rpm = positive(s.global_limit_rpm.or(args.global_limit_rpm));
    if rps.is_none() && rpm.is_none() {
        return None;
    }
    Some(Arc::new(RateLimit {
        zone: GLOBAL_ZONE.into(),
        rps,
        rpm,
        burst_multiplier: s
            .global_limit_burst_multiplier
            .unwrap_or(args.global_limit_burst_multiplier),
        connections: None,
        exempt: s
            .global_limit_allowlist
            .clone()
            .unwrap_or_else(|| args.global_limit_allowlist.clone()),
    }))
}

fn status_or_503(code: Option<u16>) -> StatusCode {
    code.and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

/// The flags with every ConfigMap key that is set put in their place (a key wins over a flag).
pub fn overlay(args: &ProxyArgs, s: &ProxySettings) -> ProxyArgs {
    let mut a = args.clone();
    let set = |f: &mut bool, v: Option<bool>| *f = v.unwrap_or(*f);
    set(&mut a.use_forwarded_headers, s.use_forwarded_headers);
    set(&mut a.enable_real_ip, s.enable_real_ip);
    set(
        &mut a.compute_full_forwarded_for,
        s.compute_full_forwarded_for,
    );
    set(&mut a.use_proxy_protocol, s.use_proxy_protocol);
    set(
        &mut a.enable_underscores_in_headers,
        s.enable_underscores_in_headers,
    );
    if let Some(h) = s
        .forwarded_for_header
        .as_deref()
        .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
    {
        a.forwarded_for_header = h;
    }
    if let Some(c) = &s.proxy_real_ip_cidr {
        a.proxy_real_ip_cidr = c.clone();
    }
    a.client_header_timeout = s.client_header_timeout.unwrap_or(a.client_header_timeout);
    a.client_body_timeout = s.client_body_timeout.unwrap_or(a.client_body_timeout);
    a.keepalive_timeout = s.keepalive_timeout.unwrap_or(a.keepalive_timeout);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_limit_takes_each_configmap_key_over_its_flag() {
        let args = ProxyArgs {
            global_limit_rps: Some(10),
            global_limit_burst_multiplier: 3,
            ..ProxyArgs::default()
        };
        let l = global_limit(&args, &ProxySettings::default()).unwrap();
        assert_eq!((l.rps, l.rpm, l.burst_multiplier), (Some(10), None, 3));
        assert_eq!(l.zone, GLOBAL_ZONE);
        let s = ProxySettings {
            global_limit_rpm: Some(100),
            global_limit_burst_multiplier: Some(1),
            ..Default::default()
        };
        let l = global_limit(&args, &s).unwrap();
        assert_eq!((l.rps, l.rpm, l.burst_multiplier), (Some(10), Some(100), 1));
        // `0` in the ConfigMap turns off the flag's rate.
        let off = ProxySettings {
            global_limit_rps: Some(0),
            ..Default::default()
        };
        assert!(global_limit(&args, &off).is_none());
        assert!(global_limit(&ProxyArgs::default(), &ProxySettings::default()).is_none());
    }

    #[test]
    fn configmap_keys_win_over_flags_and_unset_keys_keep_them() {
        let args = ProxyArgs {
            enable_real_ip: true,
            ..ProxyArgs::default()
        };
        let s = ProxySettings {
            use_forwarded_headers: Some(true),
            forwarded_for_header: Some("x-client-ip".into()),
            keepalive_timeout: Some(Duration::from_secs(5)),
            hsts: Some("max-age=1".into()),
            ..Default::default()
        };
        let live = Live::new(&args, &s);
        assert!(live.trust.use_forwarded_headers && live.trust.enable_real_ip);
        assert_eq!(live.trust.forwarded_for_header, "x-client-ip");
        assert_eq!(live.conn_timeouts.idle, Duration::from_secs(5));
        assert_eq!(live.client_body_timeout, args.client_body_timeout);
        assert_eq!(
            live.hsts.as_ref().map(|h| h.as_bytes()),
            Some(&b"max-age=1"[..])
        );
    }

    /// With a ConfigMap that sets nothing (and default flags), every value the proxy reads
    /// is ingress-nginx's default (config.go `NewDefault`, configmap.md's default column).
    #[test]
    fn an_empty_configmap_gives_ingress_nginx_s_defaults() {
        use crate::model::translate::{configmap, diagnostics::Diagnostics};
        let mut d = Diagnostics::default();
        let c = configmap::parse(&Default::default(), &mut d);
        assert!(d.0.is_empty(), "{:?}", d.0);
        let live = Live::new(&ProxyArgs::default(), &c.settings);
        let secs = Duration::from_secs;
        // client-header-timeout 60, client-body-timeout 60, keep-alive 75, keep-alive-requests 1000
        assert_eq!(live.client_header_timeout, secs(60));
        assert_eq!(live.conn_timeouts.first_request, secs(60));
        assert_eq!(live.client_body_timeout, secs(60));
        assert_eq!(live.conn_timeouts.idle, secs(75));
        assert_eq!(live.keepalive_requests, 1000);
        // upstream-keepalive-connections 320, -timeout 60, -requests 10000, -time 1h
        let k = &live.upstream_keepalive;
        assert_eq!(
            (k.connections, k.timeout, k.requests, k.time),
            (320, secs(60), 10_000, secs(3600))
        );
        // use-forwarded-headers, enable-real-ip, compute-full-forwarded-for,
        // use-proxy-protocol false; forwarded-for-header X-Forwarded-For; proxy-real-ip-cidr
        // 0.0.0.0/0.
        let t = &live.trust;
        assert!(!t.use_forwarded_headers && !t.enable_real_ip);
        assert!(!t.compute_full_forwarded_for && !t.use_proxy_protocol);
        assert_eq!(t.forwarded_for_header, "x-forwarded-for");
        assert_eq!(t.trusted.len(), 1);
        assert_eq!(t.trusted[0].to_string(), "0.0.0.0/0");
        // enable-underscores-in-headers false, ignore-invalid-headers true
        assert!(!live.enable_underscores_in_headers && live.ignore_invalid_headers);
        // limit-req-status-code and limit-conn-status-code 503
        assert_eq!(live.limit_req_status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(live.limit_conn_status, StatusCode::SERVICE_UNAVAILABLE);
        // hsts true, hsts-max-age 31536000, hsts-include-subdomains true, hsts-preload false
        assert_eq!(
            live.hsts.as_ref().map(HeaderValue::as_bytes),
            Some(&b"max-age=31536000; includeSubDomains"[..])
        );
        // use-gzip and enable-brotli false
        assert!(live.compressor.is_none());
        // proxy-add-original-uri-header, allow-backend-server-header, disable-access-log,
        // enable-access-log-for-default-backend, disable-ipv6 false; no extra headers
        let s = &live.settings;
        assert!(!s.add_original_uri_header && !s.allow_backend_server_header);
        assert!(!s.disable_access_log && !s.access_log_for_default_server && !s.disable_ipv6);
        assert!(live.add_headers.is_empty() && live.hide_headers.is_empty());
        assert!(live.global_limit.is_none());
        // http-redirect-code 308 (None here: forward.rs answers 308)
        assert_eq!(s.http_redirect_code, None);
        // use-http2 true, ssl-protocols "TLSv1.2 TLSv1.3", ssl-session-tickets false,
        // ssl-reject-handshake false, ssl-ecdh-curve auto, ssl-ciphers ingress-nginx's list
        assert_eq!(s.tls, crate::model::server_tls::ServerTls::default());
        assert!(s.tls.http2 && !s.tls.session_tickets && !s.tls.reject_unknown_names);
        assert_eq!(
            s.tls.versions,
            [
                crate::model::TlsVersion::Tls12,
                crate::model::TlsVersion::Tls13
            ]
        );
        // proxy-body-size 1m, proxy-connect-timeout 5, proxy-read/send-timeout 60,
        // proxy-next-upstream-tries 3 (the flags the route defaults fall back on)
        let a = ProxyArgs::default();
        assert_eq!(a.max_body_bytes, 1 << 20);
        assert_eq!(a.proxy_connect_timeout, secs(5));
        assert_eq!(
            (a.proxy_read_timeout, a.proxy_send_timeout),
            (secs(60), secs(60))
        );
        assert_eq!(a.proxy_retries + 1, 3);
        assert_eq!(a.max_concurrent_streams, 128);
    }

    /// `upstream-keepalive-connections` / `-timeout` win over `--upstream-keepalive` /
    /// `--upstream-keepalive-timeout`; unset, the flags' values (ingress-nginx's 320 and 60 s
    /// by default) and ingress-nginx's 10000 requests and 1h hold.
    #[test]
    fn upstream_keepalive_takes_configmap_keys_over_flags() {
        let args = ProxyArgs::default();
        assert_eq!(
            upstream_keepalive(&args, &ProxySettings::default()),
            Keepalive::default()
        );
        let args = ProxyArgs {
            upstream_keepalive: 8,
            upstream_keepalive_timeout: Duration::from_secs(9),
            ..ProxyArgs::default()
        };
        let k = upstream_keepalive(&args, &ProxySettings::default());
        assert_eq!((k.connections, k.timeout), (8, Duration::from_secs(9)));
        let s = ProxySettings {
            upstream_keepalive_connections: Some(0),
            upstream_keepalive_timeout: Some(Duration::from_secs(2)),
            upstream_keepalive_requests: Some(5),
            ..Default::default()
        };
        let k = upstream_keepalive(&args, &s);
        assert_eq!(
            (k.connections, k.timeout, k.requests),
            (0, Duration::from_secs(2), 5)
        );
    }
}
