//! The ingress-nginx annotations we understand, parsed into route policy and upstream options.
//!
//! Both prefixes work: `nginx.ingress.kubernetes.io/` (for users migrating) and our own
//! `xdp-ingress.dev/`. A value that does not parse, or parses outside its accepted range (see
//! the `*_RANGE` constants), gives a warning naming the annotation and the range, and the
//! default behaviour; the Ingress is still served.

use std::{
    collections::BTreeMap, net::IpAddr, num::NonZeroU32, ops::RangeInclusive, sync::Arc,
    time::Duration,
};

use crate::model::{
    BackendProtocol, CookieAffinity, IpPrefix, LoadBalancing, ObjectRef, RoutePolicy, UpstreamHttp,
    UpstreamVersion, nginx_var::NginxString,
};

use super::diagnostics::Diagnostics;

pub(super) use super::support::PREFIXES;

/// `proxy-connect-timeout`: 1 ms to 1 hour. nginx notes the connect timeout "cannot usually
/// exceed 75 seconds" (the kernel's SYN retries end first); an hour leaves room without
/// letting a value reach timer arithmetic unchecked.
pub const CONNECT_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(3600);
/// `proxy-read-timeout` and `proxy-send-timeout` (also the idle timeout of WebSockets): 1 ms
/// to 7 days. nginx sets no maximum; a week covers every long-lived stream we know of.
pub const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(7 * 24 * 3600);
/// `proxy-body-size`: `0` (unlimited) or up to 1 TiB (nginx's `client_max_body_size` takes any
/// `off_t`; larger than a TiB is a typo rather than a limit).
pub const MAX_BODY_SIZE: u64 = 1 << 40;

/// Everything an Ingress's annotations say about its routes and backends.
#[derive(Clone, Debug)]
pub struct IngressOptions {
    pub policy: Arc<RoutePolicy>,
    pub protocol: BackendProtocol,
    pub load_balancing: LoadBalancing,
    /// Boxed as the upstream keeps it ([`crate::model::Upstream::affinity`]).
    pub affinity: Option<Box<CookieAffinity>>,
    /// `use-regex: "true"`: ImplementationSpecific paths are regular expressions.
    pub use_regex: bool,
    /// `rewrite-target` and `app-root` (see [`super::rewrite`]).
    pub paths: super::rewrite::PathOptions,
    /// `server-alias` and `from-to-www-redirect` (see [`super::redirect`]).
    pub hosts: super::redirect::HostOptions,
    /// `service-upstream`; `None`: the ConfigMap's, else off.
    pub service_upstream: Option<bool>,
    /// `proxy-ssl-*` (see [`super::proxy_ssl`]): TLS toward the HTTPS and gRPCS upstreams.
    pub upstream_tls: Option<Arc<crate::model::UpstreamTls>>,
}

/// A boolean as ingress-nginx reads annotations and ConfigMap keys: Go's `strconv.ParseBool`
/// (`1`, `t`, `T`, `TRUE`, `true`, `True` and `0`, `f`, `F`, `FALSE`, `false`, `False`).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Controller ConfigMap values that are the defaults of the annotations of the same names,
/// read where an Ingress lacks the annotation or its value is invalid (ingress-nginx's
/// `defaults.Backend` fallbacks in its annotation parsers, and `LoadBalancing` in
/// controller.go): `load-balance`, `proxy-redirect-from`, `proxy-redirect-to`,
/// `proxy-cookie-domain`, `proxy-cookie-path`. Values are checked when the ConfigMap is read
/// ([`super::configmap`]); keyed by annotation name without prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnotationDefaults(pub BTreeMap<&'static str, String>);

/// No ConfigMap defaults.
static NO_DEFAULTS: AnnotationDefaults = AnnotationDefaults(BTreeMap::new());

/// Reads annotations under either prefix; bad values become warnings on `object`.
pub(super) struct Reader<'a> {
    annotations: Option<&'a BTreeMap<String, String>>,
    defaults: &'a AnnotationDefaults,
    pub(super) object: &'a ObjectRef,
    pub(super) diags: &'a mut Diagnostics,
    /// The controller ConfigMap's `allow-cross-namespace-resources` ([`Reader::foreign`]).
    pub(super) allow_cross_namespace: bool,
}

/// Whether an annotation of an Ingress in namespace `own` may not name an object (Secret,
/// ConfigMap) in namespace `other`: another namespace while the ConfigMap's
/// `allow-cross-namespace-resources` (`allowed`) is false, its default (ingress-nginx's
/// `auth`, `authreq`, `authtls` and `proxyssl` parsers: "cross namespace usage of secrets is
/// not allowed").
pub(super) fn cross_namespace_refused(allowed: bool, own: &str, other: &str) -> bool {
    own != other && !allowed
}

impl<'a> Reader<'a> {
    /// [`cross_namespace_refused`] for the Ingress read (namespace `own`).
    pub(super) fn foreign(&self, own: &str, other: &str) -> bool {
        cross_namespace_refused(self.allow_cross_namespace, own, other)
    }

    pub(super) fn new(
        annotations: Option<&'a BTreeMap<String, String>>,
        object: &'a ObjectRef,
        diags: &'a mut Diagnostics,
    ) -> Self {
        Reader {
            annotations,
            defaults: &NO_DEFAULTS,
            object,
            diags,
            allow_cross_namespace: false,
        }
    }

    /// The ConfigMap's default of annotation `key` ([`AnnotationDefaults`]).
    pub(super) fn default_of(&self, key: &str) -> Option<String> {
        self.defaults.0.get(key).cloned()
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        let a = self.annotations?;
        PREFIXES
            .iter()
            .rev()
            .find_map(|p| a.get(&format!("{p}{key}")))
            .map(|v| v.trim())
    }

    pub(super) fn bad(&mut self, key: &str, value: &str, expected: &str) {
        self.diags.warn(
            self.object,
            "InvalidAnnotation",
            format!("annotation {key}: {value:?} is not {expected}; using the default"),
        );
    }

    /// An annotation read and ignored (its value checked before): if set, an Info says it
    /// does nothing here, with its support row's note.
    pub(super) fn ignored(&mut self, key: &str) {
        if self.get(key).is_some() {
            let why = super::support::annotation(key).map_or("", |r| r.status.note());
            self.diags.info(
                self.object,
                super::support::READ_AND_IGNORED,
                format!("annotation {key}: {why}"),
            );
        }
    }

    pub(super) fn bool(&mut self, key: &str) -> Option<bool> {
        let v = self.get(key)?.to_string();
        match parse_bool(&v) {
            Some(b) => Some(b),
            None => {
                self.bad(key, &v, "true or false");
                None
            }
        }
    }

    pub(super) fn out_of_range(&mut self, key: &str, value: &str, range: &str) {
        self.diags.warn(
            self.object,
            "AnnotationOutOfRange",
            format!("annotation {key}: {value:?} is outside {range}; using the default"),
        );
    }

    /// A duration within `range`, else a warning and `None` (the default applies).
    fn duration(&mut self, key: &str, range: &RangeInclusive<Duration>) -> Option<Duration> {
        let v = self.get(key)?.to_string();
        match parse_duration(&v) {
            Some(d) if range.contains(&d) => Some(d),
            Some(_) => {
                self.out_of_range(key, &v, &show_range(range));
                None
            }
            None => {
                self.bad(key, &v, "a duration in seconds (\"60\", \"60s\", \"2m\")");
                None
            }
        }
    }
}

/// `1ms..=7d` as a reader would write it: `1ms to 604800s`.
fn show_range(r: &RangeInclusive<Duration>) -> String {
    let show = |d: &Duration| {
        if d.subsec_millis() != 0 || d.as_secs() == 0 {
            format!("{}ms", d.as_millis())
        } else {
            format!("{}s", d.as_secs())
        }
    };
    format!("{} to {}", show(r.start()), show(r.end()))
}

/// Digits as a `u64`, saturating: a number too large for `u64` is still a number (and out of
/// every range), not a syntax error.
pub(super) fn saturating_number(num: &str) -> Option<u64> {
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(num.parse().unwrap_or(u64::MAX))
}

/// nginx durations: a bare number is seconds; suffixes ms, s, m, h. Values past `u64` seconds
/// saturate (callers range-check).
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n = saturating_number(num)?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return None,
    })
}

/// nginx offsets (`client_max_body_size`): bytes, or with k/m/g suffix (either case,
/// [`super::nginx_size::split_unit`]). `0` means unlimited (`u64::MAX`);
/// other values saturate at `u64::MAX - 1` (callers range-check).
pub fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = super::nginx_size::split_unit(v.trim(), true);
    let n = saturating_number(num)?;
    if n == 0 {
        return Some(u64::MAX);
    }
    Some(n.saturating_mul(mult).min(u64::MAX - 1))
}

/// `on` / `off`, as ingress-nginx validates `proxy-request-buffering` and `proxy-buffering`
/// (exact, case-sensitive).
pub fn parse_on_off(v: &str) -> Option<bool> {
    match v {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// `proxy-http-version`: `1.0` or `1.1`, exactly (ingress-nginx's validator).
pub fn parse_http_version(v: &str) -> Option<UpstreamVersion> {
    match v {
        "1.0" => Some(UpstreamVersion::Http10),
        "1.1" => Some(UpstreamVersion::Http11),
        _ => None,
    }
}

/// The annotations and ConfigMap keys [`parse_upstream_http`] reads.
pub const UPSTREAM_HTTP_KEYS: [&str; 3] = [
    "proxy-http-version",
    "proxy-request-buffering",
    "proxy-buffering",
];

/// `proxy-http-version`, `proxy-request-buffering`, `proxy-buffering` through `get`; a bad
/// value goes to `bad(key, value, expected)` and leaves the field unset.
pub(super) fn parse_upstream_http(
    mut get: impl FnMut(&str) -> Option<String>,
    mut bad: impl FnMut(&str, &str, &str),
) -> UpstreamHttp {
    let mut out = UpstreamHttp::default();
    if let Some(v) = get("proxy-http-version") {
        out.version = parse_http_version(&v);
        if out.version.is_none() {
            bad("proxy-http-version", &v, "\"1.0\" or \"1.1\"");
        }
    }
    for (key, field) in [
        ("proxy-request-buffering", &mut out.request_buffering),
        ("proxy-buffering", &mut out.response_buffering),
    ] {
        if let Some(v) = get(key) {
            *field = parse_on_off(&v);
            if field.is_none() {
                bad(key, &v, "on or off");
            }
        }
    }
    out
}

/// `198.18.0.0/15`, `2001:db8::/32` or a bare address (a /32 or /128).
pub fn parse_prefix(v: &str) -> Option<IpPrefix> {
    let v = v.trim();
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = v.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some(IpPrefix { addr, len })
}

/// A `load-balance` value (annotation or ConfigMap key): `round_robin`, `ewma` (our
/// least-request; `least_request` is its own name).
pub fn load_balance(v: &str) -> Option<LoadBalancing> {
    match v {
        "round_robin" => Some(LoadBalancing::RoundRobin),
        "ewma" | "least_request" => Some(LoadBalancing::LeastRequest),
        _ => None,
    }
}

/// A comma-separated list of CIDRs or addresses (ingress-nginx's `net.ParseIPNets`: an
/// address is its /32 or /128); `None` when any entry is invalid. Empty entries are skipped.
pub fn parse_prefixes(v: &str) -> Option<Vec<IpPrefix>> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(parse_prefix)
        .collect()
}

/// A source-range annotation's list, as ingress-nginx's `ipallowlist` / `ipdenylist` parsers
/// read it: every `,`-separated entry goes to `net.ParseIPNets`, so an empty one (`"10.0.0.0/8,"`
/// or an empty value) is invalid, where a ConfigMap key's list drops it
/// (`splitAndTrimSpace`, [`parse_prefixes`]).
pub fn parse_annotation_prefixes(v: &str) -> Option<Vec<IpPrefix>> {
    v.split(',').map(parse_prefix).collect()
}

pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    diags: &mut Diagnostics,
) -> IngressOptions {
    parse_with(annotations, &NO_DEFAULTS, object, diags)
}

/// [`parse`], with the controller ConfigMap's defaults of some annotations.
pub fn parse_with(
    annotations: Option<&BTreeMap<String, String>>,
    defaults: &AnnotationDefaults,
    object: &ObjectRef,
    diags: &mut Diagnostics,
) -> IngressOptions {
    let mut r = Reader {
        annotations,
        defaults,
        object,
        diags,
        // Nothing read here names an object of a namespace.
        allow_cross_namespace: false,
    };
    let mut policy = RoutePolicy {
        ssl_redirect: r.bool("ssl-redirect"),
        force_ssl_redirect: r.bool("force-ssl-redirect"),
        use_port_in_redirects: r.bool("use-port-in-redirects"),
        relative_redirects: r.bool("relative-redirects"),
        ..Default::default()
    };
    policy.preserve_trailing_slash = r.bool("preserve-trailing-slash").unwrap_or(false);
    // nginx.tmpl: `access_log off` in the location when `enable-access-log` is false.
    policy.no_access_log = r.bool("enable-access-log") == Some(false);
    policy.timeouts.connect = r.duration("proxy-connect-timeout", &CONNECT_TIMEOUT_RANGE);
    policy.timeouts.read = r.duration("proxy-read-timeout", &TIMEOUT_RANGE);
    policy.timeouts.send = r.duration("proxy-send-timeout", &TIMEOUT_RANGE);
    policy.upstream_http = {
        let values: BTreeMap<&str, String> = UPSTREAM_HTTP_KEYS
            .into_iter()
            .filter_map(|k| r.get(k).map(|v| (k, v.to_string())))
            .collect();
        parse_upstream_http(|k| values.get(k).cloned(), |k, v, e| r.bad(k, v, e))
    };
    if let Some(v) = r.get("proxy-body-size").map(str::to_string) {
        match parse_size(&v) {
            Some(n) if n == u64::MAX || n <= MAX_BODY_SIZE => policy.max_body_bytes = Some(n),
            Some(_) => r.out_of_range("proxy-body-size", &v, "0 (unlimited) or 1 to 1024g"),
            None => r.bad("proxy-body-size", &v, "a size (\"8m\", \"512k\", \"0\")"),
        }
    }
    // ingress-nginx reads `allowlist-source-range` and, without it, the old name.
    let allow = ["allowlist-source-range", "whitelist-source-range"]
        .into_iter()
        .find_map(|key| Some((key, r.get(key)?.to_string())));
    let deny = r
        .get("denylist-source-range")
        .map(|v| ("denylist-source-range", v.to_string()));
    for (key, v, list) in [
        allow.map(|(k, v)| (k, v, &mut policy.allow_source_ranges)),
        deny.map(|(k, v)| (k, v, &mut policy.deny_source_ranges)),
    ]
    .into_iter()
    .flatten()
    {
        match parse_annotation_prefixes(&v) {
            Some(p) => *list = p,
            None => {
                // Failing open would expose what the user meant to restrict: ingress-nginx
                // denies the location (`LocationDeniedError`, `return 503`), and so do we.
                let why = format!("annotation {key}: {v:?} has an invalid CIDR");
                r.diags.error(
                    object,
                    "InvalidAnnotation",
                    format!("{why}; every request to its paths gets 503"),
                );
                policy.response.denied.get_or_insert(why);
            }
        }
    }
    match super::rate_limit::parse(&mut r) {
        Ok(limit) => policy.rate_limit = limit,
        // A limit is never dropped: the routes are denied (503) until the value is fixed.
        Err(why) => {
            policy.response.denied.get_or_insert(why);
        }
    }
    (policy.limit_rate, policy.limit_rate_after) = super::rate_limit::response_rate(&mut r);
    policy.satisfy = match r.get("satisfy").map(str::to_string) {
        None => crate::model::Satisfy::All,
        Some(v) => match v.as_str() {
            "all" => crate::model::Satisfy::All,
            "any" => crate::model::Satisfy::Any,
            // ingress-nginx drops any other value (nginx's default, `all`, applies).
            _ => {
                r.bad("satisfy", &v, "all or any");
                crate::model::Satisfy::All
            }
        },
    };

    let protocol = match r.get("backend-protocol").map(str::to_ascii_uppercase) {
        None => BackendProtocol::Http,
        Some(p) => match p.as_str() {
            "HTTP" => BackendProtocol::Http,
            "HTTPS" => BackendProtocol::Https,
            "AUTO_HTTP" => BackendProtocol::AutoHttp,
            "GRPC" => BackendProtocol::Grpc,
            "GRPCS" => BackendProtocol::Grpcs,
            "H2C" => BackendProtocol::H2c,
            _ => {
                r.bad(
                    "backend-protocol",
                    &p,
                    "HTTP, HTTPS, AUTO_HTTP, GRPC, GRPCS or H2C",
                );
                BackendProtocol::Http
            }
        },
    };

    // An invalid annotation falls back on the ConfigMap's `load-balance`, as ingress-nginx's
    // empty `LoadBalancing` does (controller.go).
    let annotated = match r.get("load-balance").map(str::to_string) {
        None => None,
        Some(v) => load_balance(&v).or_else(|| {
            r.bad("load-balance", &v, "round_robin or ewma");
            None
        }),
    };
    let mut load_balancing = annotated
        .or_else(|| {
            r.default_of("load-balance")
                .as_deref()
                .and_then(load_balance)
        })
        .unwrap_or(LoadBalancing::RoundRobin);
    let subset = hash_subset(&mut r);
    if let Some(v) = r.get("upstream-hash-by").map(str::to_string) {
        // Any text with variables, as ingress-nginx's chash.lua expands it per request.
        match NginxString::parse(&v) {
            Ok(by) => {
                load_balancing = match subset {
                    Some(size) => LoadBalancing::HashSubset { by, size },
                    None => LoadBalancing::Hash(by),
                }
            }
            Err(e) => r.bad(
                "upstream-hash-by",
                &v,
                &format!("text with nginx variables ({e})"),
            ),
        }
    }

    policy.response.cors = super::cors::parse(&mut r);
    let use_regex = r.bool("use-regex").unwrap_or(false);
    let (next_upstream, invalid) = super::next_upstream::parse(|k| r.get(k).map(str::to_string));
    for i in invalid {
        r.bad(i.key, &i.value, i.expected);
    }
    policy.next_upstream = next_upstream;
    let service_upstream = r.bool("service-upstream");
    let affinity = super::affinity::parse(&mut r, use_regex).map(Box::new);
    let paths = super::rewrite::parse(&mut r, &mut policy);
    super::answer_rewrite::parse(&mut r, &mut policy);
    let hosts = super::redirect::parse(&mut r, &mut policy);

    IngressOptions {
        policy: Arc::new(policy),
        protocol,
        load_balancing,
        affinity,
        use_regex,
        paths,
        hosts,
        service_upstream,
        upstream_tls: None,
    }
}

/// ingress-nginx's default `upstream-hash-by-subset-size` (annotations/upstreamhashby).
pub const DEFAULT_HASH_SUBSET_SIZE: NonZeroU32 = NonZeroU32::new(3).unwrap();

/// `upstream-hash-by-subset` and `upstream-hash-by-subset-size`: the subset size when subset
/// hashing is on. As ingress-nginx's parser, a size of `0` is the default 3; a value that is
/// not a boolean, or not a whole number from 0 to 2^32 - 1, warns and is the default (off,
/// 3). Both are read, and warn, even without `upstream-hash-by`, where they do nothing
/// (ingress-nginx's balancer.lua looks at them only under it).
fn hash_subset(r: &mut Reader<'_>) -> Option<NonZeroU32> {
    let on = r.bool("upstream-hash-by-subset").unwrap_or(false);
    let size = match r.get("upstream-hash-by-subset-size").map(str::to_string) {
        None => DEFAULT_HASH_SUBSET_SIZE,
        Some(v) => match v.parse::<i64>() {
            Ok(0) => DEFAULT_HASH_SUBSET_SIZE,
            Ok(n) => match u32::try_from(n).ok().and_then(NonZeroU32::new) {
                Some(n) => n,
                None => {
                    r.out_of_range("upstream-hash-by-subset-size", &v, "1 to 4294967295");
                    DEFAULT_HASH_SUBSET_SIZE
                }
            },
            Err(_) => {
                r.bad(
                    "upstream-hash-by-subset-size",
                    &v,
                    "a whole number of endpoints",
                );
                DEFAULT_HASH_SUBSET_SIZE
            }
        },
    };
    on.then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;

    fn parse_map(pairs: &[(&str, &str)]) -> (IngressOptions, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut d = Diagnostics::default();
        let o = parse(
            Some(&map),
            &ObjectRef::new(ObjectKind::Ingress, "d", "i"),
            &mut d,
        );
        (o, d.0.into_iter().map(|d| d.reason).collect())
    }

    /// ingress-nginx's validators: `proxy-http-version` is `1.0` or `1.1`, the buffering
    /// annotations `on` or `off` (case-sensitive); `backend-protocol` takes `AUTO_HTTP`.
    #[test]
    fn upstream_protocol_annotations_and_bad_values() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        let (o, w) = parse_map(&[
            (&format!("{N}backend-protocol"), "auto_http"),
            (&format!("{N}proxy-http-version"), "1.0"),
            (&format!("{N}proxy-request-buffering"), "off"),
            (&format!("{N}proxy-buffering"), "on"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.protocol, BackendProtocol::AutoHttp);
        let h = o.policy.upstream_http;
        assert_eq!(h.version, Some(UpstreamVersion::Http10));
        assert_eq!(h.request_buffering, Some(false));
        assert_eq!(h.response_buffering, Some(true));
        for (key, value) in [
            ("proxy-http-version", "2"),
            ("proxy-http-version", "HTTP/1.0"),
            ("proxy-request-buffering", "true"),
            ("proxy-buffering", "On"),
        ] {
            let (o, w) = parse_map(&[(&format!("{N}{key}"), value)]);
            assert_eq!(w, ["InvalidAnnotation"], "{key}: {value}");
            assert_eq!(o.policy.upstream_http, UpstreamHttp::default(), "{key}");
        }
        let h = UpstreamHttp::default();
        assert_eq!(
            (h.version(), h.request_buffering()),
            (UpstreamVersion::Http11, true),
            "ingress-nginx's defaults"
        );
    }

    #[test]
    fn values() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        let (o, w) = parse_map(&[
            (&format!("{N}backend-protocol"), "GRPC"),
            (&format!("{N}ssl-redirect"), "false"),
            (&format!("{N}proxy-body-size"), "8m"),
            (&format!("{N}proxy-read-timeout"), "120"),
            (&format!("{N}proxy-connect-timeout"), "5s"),
            (&format!("{N}affinity"), "cookie"),
            (&format!("{N}session-cookie-name"), "route"),
            (&format!("{N}session-cookie-max-age"), "3600"),
            (&format!("{N}session-cookie-samesite"), "Strict"),
            // With use-regex, ingress-nginx asks for the cookie path.
            (&format!("{N}session-cookie-path"), "/"),
            (&format!("{N}upstream-hash-by"), "$http_x_user"),
            (
                &format!("{N}whitelist-source-range"),
                "198.18.0.0/15, 2001:db8::1",
            ),
            ("xdp-ingress.dev/use-regex", "true"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.protocol, BackendProtocol::Grpc);
        assert_eq!(o.policy.ssl_redirect, Some(false));
        assert_eq!(o.policy.max_body_bytes, Some(8 << 20));
        assert_eq!(o.policy.timeouts.read, Some(Duration::from_secs(120)));
        assert_eq!(o.policy.timeouts.connect, Some(Duration::from_secs(5)));
        assert_eq!(
            o.load_balancing,
            LoadBalancing::Hash(NginxString::parse("$http_x_user").unwrap())
        );
        let a = o.affinity.unwrap();
        assert_eq!(
            (a.name.as_str(), a.max_age, a.same_site.as_deref()),
            ("route", Some(Duration::from_secs(3600)), Some("Strict"))
        );
        assert_eq!(o.policy.allow_source_ranges.len(), 2);
        assert_eq!(o.policy.allow_source_ranges[1].len, 128);
        assert!(o.use_regex);
    }

    /// `upstream-hash-by` is any text with variables, as ingress-nginx's chash.lua expands it
    /// (its docs' headline example is `$request_uri`); an unknown variable warns and keeps
    /// round robin.
    #[test]
    fn upstream_hash_by_takes_any_variable_text() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        for v in [
            "$request_uri",
            "$host$request_uri",
            "$binary_remote_addr",
            "$arg_x",
            "$remote_addr",
            "$cookie_session",
            "tenant-$http_x_tenant",
        ] {
            let (o, w) = parse_map(&[(&format!("{N}upstream-hash-by"), v)]);
            assert!(w.is_empty(), "{v}: {w:?}");
            assert_eq!(
                o.load_balancing,
                LoadBalancing::Hash(NginxString::parse(v).unwrap()),
                "{v}"
            );
        }
        let (o, w) = parse_map(&[(&format!("{N}upstream-hash-by"), "$upstream_addr")]);
        assert_eq!(w, ["InvalidAnnotation"]);
        assert_eq!(o.load_balancing, LoadBalancing::RoundRobin);
    }

    /// `upstream-hash-by-subset: "true"` hashes to a subset of `upstream-hash-by-subset-size`
    /// endpoints (default 3, and `0` is 3, as ingress-nginx's parser); bad values warn and
    /// fall back on those defaults; without `upstream-hash-by` neither does anything.
    #[test]
    fn upstream_hash_by_subset_and_its_size() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        let by = || NginxString::parse("$request_uri").unwrap();
        let subset = |size: u32| LoadBalancing::HashSubset {
            by: by(),
            size: NonZeroU32::new(size).unwrap(),
        };
        let hash = &format!("{N}upstream-hash-by");
        let on = &format!("{N}upstream-hash-by-subset");
        let size = &format!("{N}upstream-hash-by-subset-size");
        for (pairs, want, warnings) in [
            (vec![(on, "true")], subset(3), vec![]),
            (vec![(on, "true"), (size, "2")], subset(2), vec![]),
            (vec![(on, "true"), (size, "0")], subset(3), vec![]),
            (
                vec![(on, "false"), (size, "2")],
                LoadBalancing::Hash(by()),
                vec![],
            ),
            (vec![(size, "2")], LoadBalancing::Hash(by()), vec![]),
            (
                vec![(on, "yes"), (size, "2")],
                LoadBalancing::Hash(by()),
                vec!["InvalidAnnotation"],
            ),
            (
                vec![(on, "true"), (size, "-1")],
                subset(3),
                vec!["AnnotationOutOfRange"],
            ),
            (
                vec![(on, "true"), (size, "two")],
                subset(3),
                vec!["InvalidAnnotation"],
            ),
        ] {
            let mut pairs: Vec<(&str, &str)> =
                pairs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            pairs.push((hash, "$request_uri"));
            let (o, w) = parse_map(&pairs);
            assert_eq!(o.load_balancing, want, "{pairs:?}");
            assert_eq!(w, warnings, "{pairs:?}");
        }
        let (o, w) = parse_map(&[(on, "true"), (size, "2")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.load_balancing, LoadBalancing::RoundRobin);
    }

    /// Booleans as ingress-nginx parses them (Go's strconv.ParseBool): `1`/`0`, `t`/`f`,
    /// `TRUE`/`FALSE` are values, not typos; `yes` is not.
    #[test]
    fn booleans_are_read_as_go_parses_them() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        let (o, w) = parse_map(&[
            (&format!("{N}use-regex"), "1"),
            (&format!("{N}ssl-redirect"), "0"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert!(o.use_regex);
        assert_eq!(o.policy.ssl_redirect, Some(false));
        let (o, w) = parse_map(&[
            (&format!("{N}use-regex"), "T"),
            (&format!("{N}ssl-redirect"), "FALSE"),
        ]);
        assert!(w.is_empty(), "{w:?}");
        assert!(o.use_regex);
        assert_eq!(o.policy.ssl_redirect, Some(false));
        let (o, w) = parse_map(&[(&format!("{N}use-regex"), "yes")]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(!o.use_regex);
    }

    #[test]
    fn bad_values_warn_and_default() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        let (o, w) = parse_map(&[
            (&format!("{N}backend-protocol"), "AJP"),
            (&format!("{N}proxy-body-size"), "lots"),
            (&format!("{N}load-balance"), "ewma"),
            (&format!("{N}proxy-send-timeout"), "soon"),
        ]);
        assert_eq!(w, ["InvalidAnnotation"; 3]);
        assert_eq!(o.protocol, BackendProtocol::Http);
        assert_eq!(o.policy.max_body_bytes, None);
        assert_eq!(o.load_balancing, LoadBalancing::LeastRequest);
        assert_eq!(parse_size("0"), Some(u64::MAX));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        let (o, w) = parse_map(&[(&format!("{N}whitelist-source-range"), "10.0.0.0/99")]);
        assert_eq!(w, ["InvalidAnnotation"]);
        assert!(
            o.policy.response.denied.is_some(),
            "fails closed: a denied location"
        );
        // An empty entry is invalid in an annotation, as `net.ParseIPNets("")` fails (found by
        // a fresh-user trial: `"10.0.0.0/8,"` was taken as `10.0.0.0/8`); spaces are not.
        for v in ["10.0.0.0/8,", "10.0.0.0/8,,10.1.0.0/16", ""] {
            let (o, w) = parse_map(&[(&format!("{N}denylist-source-range"), v)]);
            assert_eq!(w, ["InvalidAnnotation"], "{v:?}");
            assert!(o.policy.response.denied.is_some(), "{v:?}");
        }
        let (o, w) = parse_map(&[(&format!("{N}allowlist-source-range"), " 10.0.0.0/8 , ::1 ")]);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.policy.allow_source_ranges.len(), 2);
        assert_eq!(
            parse_prefixes("10.0.0.0/8,").map(|l| l.len()),
            Some(1),
            "ConfigMap"
        );
    }

    #[test]
    fn out_of_range_values_warn_with_the_range_and_default() {
        const N: &str = "nginx.ingress.kubernetes.io/";
        let msgs = |pairs: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (format!("{N}{k}"), v.to_string()))
                .collect();
            let mut d = Diagnostics::default();
            let o = parse(
                Some(&map),
                &ObjectRef::new(ObjectKind::Ingress, "d", "i"),
                &mut d,
            );
            (o, d.0)
        };
        let week = 7 * 24 * 3600;
        // (annotation, one past the bound, the bound itself, range the warning names)
        let cases = [
            (
                "proxy-read-timeout",
                "99999999999".to_string(),
                format!("{week}"),
                "1ms to 604800s",
            ),
            (
                "proxy-read-timeout",
                format!("{}", week + 1),
                "1ms".into(),
                "1ms to 604800s",
            ),
            (
                "proxy-read-timeout",
                "0".into(),
                "168h".into(),
                "1ms to 604800s",
            ),
            (
                "proxy-send-timeout",
                "99999999999999999999999".into(),
                "10080m".into(),
                "1ms to 604800s",
            ),
            (
                "proxy-send-timeout",
                "0ms".into(),
                "1ms".into(),
                "1ms to 604800s",
            ),
            (
                "proxy-connect-timeout",
                "3601".into(),
                "3600".into(),
                "1ms to 3600s",
            ),
            (
                "proxy-connect-timeout",
                "0".into(),
                "1ms".into(),
                "1ms to 3600s",
            ),
            (
                "proxy-body-size",
                "1025g".into(),
                "1024g".into(),
                "0 (unlimited) or 1 to 1024g",
            ),
            (
                "proxy-body-size",
                "99999999999999999999k".into(),
                "0".into(),
                "0 (unlimited) or 1 to 1024g",
            ),
        ];
        for (key, bad, good, range) in cases {
            let (o, d) = msgs(&[(key, &bad)]);
            assert_eq!(d.len(), 1, "{key}: {bad}");
            assert_eq!(d[0].severity, crate::model::Severity::Warning);
            assert_eq!(d[0].reason, "AnnotationOutOfRange");
            assert!(
                d[0].message.contains(key) && d[0].message.contains(range),
                "{}",
                d[0].message
            );
            assert_eq!(
                *o.policy,
                RoutePolicy::default(),
                "{key}: {bad} uses the default"
            );
            let (o, d) = msgs(&[(key, &good)]);
            assert!(d.is_empty(), "{key}: {good} is in range: {d:?}");
            assert_ne!(*o.policy, RoutePolicy::default(), "{key}: {good} applies");
        }
        let age = |v: &str| {
            let (o, d) = msgs(&[("affinity", "cookie"), ("session-cookie-max-age", v)]);
            (o.affinity.and_then(|a| a.max_age), d)
        };
        assert_eq!(
            age("34560000"),
            (Some(Duration::from_secs(34_560_000)), vec![])
        );
        assert_eq!(age("0"), (Some(Duration::ZERO), vec![]));
        for bad in ["34560001", "99999999999999999999999"] {
            let (max_age, d) = age(bad);
            assert_eq!(max_age, None, "{bad}");
            assert_eq!(d[0].reason, "AnnotationOutOfRange");
            assert!(
                d[0].message.contains("0 to 34560000 seconds"),
                "{}",
                d[0].message
            );
        }
        assert_eq!(age("-1").1[0].reason, "InvalidAnnotation");
    }
}
