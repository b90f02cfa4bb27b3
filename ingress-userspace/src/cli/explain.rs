//! `xdp-ingress explain`: what a request would match, as JSON — the Ingress (namespace/name,
//! rule, path and pathType), the backend service and port, and the endpoints it would go to;
//! or the default backend / 404 and why. With `--https`, a Gateway API TLSRoute that passes the
//! host (SNI) is shown with its parents; with `--port` (and `--protocol`), the L4 service of
//! the XDP path that takes connections to that node port: a TCPRoute's or UDPRoute's listener
//! (or a NodePort Service), its endpoints and the route's parents. The request arrives on the
//! port of `--url` or `--host`, else on `run`'s `--http-port`/`--https-port` (the same flags).
//! With `--gateway`, the status the daemon would write ([`super::explain_gateway`]).
//!
//! [`explain`] is a pure function over a [`Snapshot`] and uses the proxy's own request front
//! (host checks, path normalisation) and route table, so what it says is what the proxy does.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header::HOST};
use serde::Serialize;

use crate::{
    model::translate::{TranslateConfig, translate},
    model::{
        BackendProtocol, CanaryRule, CookieAffinity, Diagnostic, EndpointState, LoadBalancing,
        ObjectKind, ObjectRef, Passthrough, PathMatch, RetryOn, Snapshot, Upstream,
    },
    proxy::allowlist::Verdict,
    proxy::{
        canary::{self, Side, Step},
        request_target, rewrite,
        router::{CompiledAction, CompiledHost, Lookup, Miss, RequestView, RouteTable},
    },
    source::files::ManifestDir,
    store::Objects,
};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Directory of Kubernetes manifests (multi-document YAML), as `run --manifests` reads it.
    #[arg(long)]
    pub manifests: PathBuf,
    /// Host of the request (port allowed: the request arrives on that port, else on
    /// --http-port, or --https-port with --https).
    #[arg(long, required_unless_present_any = ["port", "url", "gateway"], default_value = "")]
    pub host: String,
    /// The request as a URL (`http://shop.example:8080/cart?x=1`): scheme (https as
    /// --https), host, the port the request arrives on (else the scheme's --http-port or
    /// --https-port) and the target. Instead of --host, --path and --https.
    #[arg(long, conflicts_with_all = ["host", "path", "https", "port"])]
    pub url: Option<Uri>,
    /// Instead of a request: the status the daemon would write for this Gateway
    /// (`NAMESPACE/NAME`, or `NAME` in `default`) — its GatewayClass's `Accepted`, the
    /// Gateway's `Accepted` and `Programmed` with reasons, each listener's conditions and
    /// `attachedRoutes`, its `addresses`, and each route's `status.parents` entries of ours —
    /// or why it is not ours.
    #[arg(long, value_parser = parse_gateway, conflicts_with_all = ["url", "port", "host"])]
    pub gateway: Option<crate::store::Key>,
    /// Explain a TCP or UDP connection to this node port instead of a request: the L4
    /// service of the XDP path that takes it (a TCPRoute/UDPRoute listener, or a NodePort).
    /// For an HTTP request on a port, give the port in --host or --url.
    #[arg(long)]
    pub port: Option<u16>,
    /// With `--port`: `tcp` or `udp`.
    #[arg(long, value_enum, default_value_t = L4Transport::Tcp)]
    pub protocol: L4Transport,
    /// Request target as a client would send it, query string allowed; normalised (and
    /// refused with 400) exactly as the proxy does, and shown as `forwarded_path`.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Request header `Name:value`; repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request arrives over HTTPS (no HTTP → HTTPS redirect).
    #[arg(long)]
    pub https: bool,
    /// The address the request (or, with `--port`, the connection) is sent to: on a
    /// Gateway's address only that Gateway's routes are seen. Default: any address.
    #[arg(long)]
    pub address: Option<std::net::IpAddr>,
    /// The client's address (after `use-forwarded-headers`/`enable-real-ip`, as the proxy
    /// takes it): the route's source ranges (`denylist-source-range`,
    /// `allowlist-source-range`, the ConfigMap's and its `block-cidrs`) are checked against
    /// it and a refusal is the answer. Default: the lists are shown, not checked.
    #[arg(long)]
    pub client: Option<std::net::IpAddr>,
    /// As `run`: which ports serve HTTP, HTTPS and Gateway listeners, and the port the
    /// HTTPS redirect names.
    #[command(flatten)]
    pub ports: crate::proxy::args::ListenerPorts,
    #[command(flatten)]
    pub gateway_pool: crate::source::args::GatewayPoolArgs,
    /// The flags that shape translation, the same definition as `run`'s.
    #[command(flatten)]
    pub translation: crate::source::args::TranslationArgs,
    #[command(flatten)]
    pub global_limit: GlobalLimitFlags,
}

/// `explain --protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum L4Transport {
    Tcp,
    Udp,
}

impl From<L4Transport> for crate::model::L4Protocol {
    fn from(t: L4Transport) -> Self {
        match t {
            L4Transport::Tcp => crate::model::L4Protocol::Tcp,
            L4Transport::Udp => crate::model::L4Protocol::Udp,
        }
    }
}

/// The global per-client limit's flags, as `run` takes them (the ConfigMap's `global-limit-*`
/// keys win, as in `run`).
#[derive(Clone, Debug, clap::Args)]
pub struct GlobalLimitFlags {
    /// As `run --global-limit-rps`.
    #[arg(long)]
    pub global_limit_rps: Option<u32>,
    /// As `run --global-limit-rpm`.
    #[arg(long)]
    pub global_limit_rpm: Option<u32>,
    /// As `run --global-limit-burst-multiplier`.
    #[arg(long, default_value_t = 5)]
    pub global_limit_burst_multiplier: u32,
    /// As `run --global-limit-allowlist`.
    #[arg(long, value_delimiter = ',', value_parser = crate::proxy::args::parse_cidr)]
    pub global_limit_allowlist: Vec<crate::model::IpPrefix>,
}

impl Default for GlobalLimitFlags {
    fn default() -> Self {
        GlobalLimitFlags {
            global_limit_rps: None,
            global_limit_rpm: None,
            global_limit_burst_multiplier: 5,
            global_limit_allowlist: Vec::new(),
        }
    }
}

impl GlobalLimitFlags {
    /// The global limit in effect with the snapshot's ConfigMap settings, as the proxy
    /// computes it ([`crate::proxy::settings::global_limit`]).
    pub fn limit(&self, s: &crate::model::ProxySettings) -> Option<crate::model::RateLimit> {
        let args = crate::proxy::args::ProxyArgs {
            global_limit_rps: self.global_limit_rps,
            global_limit_rpm: self.global_limit_rpm,
            global_limit_burst_multiplier: self.global_limit_burst_multiplier,
            global_limit_allowlist: self.global_limit_allowlist.clone(),
            ..Default::default()
        };
        crate::proxy::settings::global_limit(&args, s).map(|l| (*l).clone())
    }
}

/// `NAMESPACE/NAME`, or `NAME` in `default`.
fn parse_gateway(s: &str) -> Result<crate::store::Key, String> {
    if s.contains('/') {
        crate::source::args::parse_key(s)
    } else if s.is_empty() {
        Err("a Gateway name is needed".into())
    } else {
        Ok(crate::store::Key::new("default", s))
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not Name:value"))?;
    HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| format!("header name {k:?}: {e}"))?;
    HeaderValue::from_str(v.trim()).map_err(|e| format!("header value {v:?}: {e}"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

/// The request to explain.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub host: String,
    /// Request target as sent: a path with an optional `?query` (or absolute-form).
    pub path: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub https: bool,
    /// The local address the request arrives on (`None`: any).
    pub address: Option<std::net::IpAddr>,
    /// The client's address (`None`: source ranges are shown, not checked).
    pub client: Option<std::net::IpAddr>,
    /// The `run` flags of the global per-client limit.
    pub global_limit: GlobalLimitFlags,
    /// The port the request arrives on; `None`: the port in `host`, else the proxy's port for
    /// the scheme (`ports`).
    pub port: Option<u16>,
    /// The `run` flags of the listener ports.
    pub ports: crate::proxy::args::ListenerPorts,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Proxied to the route's backend.
    Route,
    /// Redirected: plain HTTP to a TLS host (308 to HTTPS), or a redirect of the rewrite step
    /// (`app-root`, `permanent-redirect`, `temporal-redirect`, `from-to-www-redirect`, the
    /// compatibility-mode trailing slash); `reason` says which.
    Redirect,
    /// Answered by the proxy (e.g. the route's Service is missing).
    Respond,
    /// No route: the default backend takes it.
    DefaultBackend,
    /// No route and no default backend: 404.
    NotFound,
    /// `ssl-passthrough`: the TLS connection (SNI = the host) goes to the pod untouched; no
    /// request is seen, so no route applies.
    Passthrough,
    /// Refused before routing: the target or host is invalid (400) or the method is CONNECT
    /// (405); or, over TLS, a Gateway passthrough listener's hostname no TLSRoute serves
    /// (the connection is closed).
    Refused,
    /// `--port`: the XDP path takes the connection to an L4 service (`l4`).
    L4Service,
}

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
    /// The virtual host chosen (`*.example.com`, `""` for rules without host), if any.
    pub virtual_host: Option<String>,
    pub route: Option<RouteInfo>,
    pub backends: Vec<BackendInfo>,
    /// The path and query sent to the backend: as routed after normalisation, or as
    /// `rewrite-target` rewrote it (absent when the request is refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
    /// `Host` sent to the backend when `upstream-vhost` replaces the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
    /// `X-Forwarded-Prefix` sent with a rewritten path (`x-forwarded-prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_forwarded_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When a failed attempt goes on to another endpoint (forwarded routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_upstream: Option<NextUpstreamInfo>,
    /// The route's canary and which side this request takes, if the route has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryInfo>,
    /// The route's `default-backend` and `custom-http-errors`, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_pages: Option<ErrorPagesInfo>,
    /// How the request is sent to an HTTP/1 pod (absent when it is not forwarded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_http: Option<UpstreamHttpInfo>,
    /// The route's authentication step, if any (never the users' hashes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthInfo>,
    /// The host's client-certificate policy (`auth-tls-*`; [`crate::proxy::client_cert`]):
    /// what a TLS client must present before any route of the host is looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertInfo>,
    /// The route's external authentication (`auth-url` or `global-auth-url`): where each
    /// request is checked first, what is copied, cached and where a 401 is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<crate::model::ForwardAuth>,
    /// The route's per-client limits (`limit-rps`, `limit-rpm`, `limit-connections`), counted
    /// per node in a zone shared by the Ingress's paths; burst = limit x `burst_multiplier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::model::RateLimit>,
    /// The global per-client limit (ConfigMap `global-limit-*`, else the `--global-limit-*`
    /// flags) this request is counted against with the route's own limits: every request
    /// that gets past the redirects, whatever route (or none) takes it; zone `*global`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_limit: Option<crate::model::RateLimit>,
    /// How the route's access checks combine (`satisfy`), when it has any (allowlist, basic
    /// or external auth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub satisfy: Option<crate::model::Satisfy>,
    /// The pace of the response body (`limit-rate`, `limit-rate-after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_rate: Option<ResponseRateInfo>,
    /// The client source ranges the request is checked against, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ranges: Option<SourceRangesInfo>,
    /// Problems the control plane reported for the Ingress that matched (and its canary),
    /// for Ingresses that name this host but are not (fully) served (e.g. snippets refused),
    /// and for the backends' EndpointSlices (refused endpoint addresses).
    /// Headers the route sets on this request's response, replacing the pod's (CORS,
    /// `custom-headers`; [`crate::proxy::cors`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<(String, String)>,
    /// A Gateway API route (HTTPRoute, GRPCRoute) that matched: its filters and its
    /// parents' status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRouteInfo>,
    /// A Gateway API L4 route (TLSRoute passthrough, TCPRoute, UDPRoute) that takes the
    /// connection, its parents' status, and the XDP service its listener became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4: Option<L4Info>,
    /// Problems the control plane reported for the Ingress that matched (and its canary).
    pub diagnostics: Vec<Diagnostic>,
    pub snapshot_version: u64,
}

/// What takes a connection before any request is read.
#[derive(Debug, Serialize)]
pub struct L4Info {
    /// The TLSRoute, TCPRoute or UDPRoute (or, for a NodePort, the Service).
    pub route: ObjectRef,
    /// `status.parents` as this controller writes it (empty for a Service).
    pub parents: Vec<crate::model::RouteParentStatus>,
    /// The XDP path's L4 service (`gateway/NS/GATEWAY:LISTENER`, `listenerset/NS/SET:LISTENER`
    /// or a Service's id); `None` for a TLSRoute (the proxy passes it by SNI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<crate::model::L4Protocol>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frontends: Vec<crate::model::Frontend>,
    /// `address (state, Maglev weight)` of each endpoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Percent of new connections the XDP path refuses (RST / ICMP unreachable): the weight of
    /// a Gateway API L4 route's backendRefs that do not resolve or have no endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_percent: Option<f64>,
}

/// What a Gateway API route does with the request, and how its parents took it.
#[derive(Debug, Serialize)]
pub struct GatewayRouteInfo {
    /// The rule's filters (header modifiers, redirect, URL rewrite, mirrors), its
    /// `timeouts.request` and the share of its backendRefs that do not resolve (answered 500).
    pub rule: crate::model::GatewayRoutePolicy,
    /// `timeouts.backendRequest`: each try's wait for the backend's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request_timeout: Option<std::time::Duration>,
    /// `status.parents` as this controller writes it.
    pub parents: Vec<crate::model::RouteParentStatus>,
    /// The addresses of each parent Gateway (`namespace/name`), as its `status.addresses`
    /// says: its own (`--gateway-address-pool`), else the node's.
    pub gateway_addresses: std::collections::BTreeMap<String, Vec<String>>,
}

/// A route's client source ranges in the order the proxy checks them (nginx's access module
/// over the lines ingress-nginx writes: `deny` lines, then `allow` lines closed by `deny all`;
/// [`crate::proxy::allowlist`]). For a request no route takes, `deny` is the ConfigMap's
/// `block-cidrs` (nginx's default server inherits them).
#[derive(Debug, Serialize)]
pub struct SourceRangesInfo {
    /// `denylist-source-range` (annotation, else ConfigMap), or `block-cidrs` where the route
    /// has no list of its own; CIDR notation.
    pub deny: Vec<String>,
    /// `allowlist-source-range` / `whitelist-source-range` (annotation, else ConfigMap).
    pub allow: Vec<String>,
    /// With `--client`: what the lists say of it: `allowed` (an allow line matched),
    /// `denied` (a deny line), `not-allowed` (outside the allowlist), `declined` (no line
    /// matched: the other checks decide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'static str>,
}

impl SourceRangesInfo {
    /// `None` when both lists are empty; `client` is checked against them.
    fn of(
        deny: &[crate::model::IpPrefix],
        allow: &[crate::model::IpPrefix],
        client: Option<std::net::IpAddr>,
    ) -> Option<(Self, Option<crate::proxy::allowlist::Verdict>)> {
        use crate::proxy::allowlist::{Verdict, verdict};
        if deny.is_empty() && allow.is_empty() {
            return None;
        }
        let v = client.map(|c| verdict(deny, allow, c));
        let text = |l: &[crate::model::IpPrefix]| l.iter().map(ToString::to_string).collect();
        let info = SourceRangesInfo {
            deny: text(deny),
            allow: text(allow),
            client: v.map(|v| match v {
                Verdict::Allowed => "allowed",
                Verdict::Denied => "denied",
                Verdict::NotAllowed => "not-allowed",
                Verdict::Declined => "declined",
            }),
        };
        Some((info, v))
    }
}

/// The route's `limit-rate` and `limit-rate-after` in effect (annotation, else ConfigMap).
#[derive(Debug, Serialize)]
pub struct ResponseRateInfo {
    /// Bytes per second of each response body to the client (`limit-rate` KB x 1024).
    pub bytes_per_second: u64,
    /// Bytes sent at full speed first (`limit-rate-after` KB x 1024).
    pub after_bytes: u64,
}

/// The route's `proxy-http-version`, `proxy-request-buffering` and `proxy-buffering` in
/// effect (annotation, else ConfigMap, else ingress-nginx's default).
#[derive(Debug, Serialize)]
pub struct UpstreamHttpInfo {
    pub http_version: crate::model::UpstreamVersion,
    /// The body is read whole before the pod is contacted (HTTP/1 pods only).
    pub request_buffering: bool,
    /// Accepted only: responses stream either way.
    pub response_buffering: bool,
}

#[derive(Debug, Serialize)]
pub struct RouteInfo {
    pub ingress: ObjectRef,
    /// Index of the rule in `spec.rules` (`None` for a defaultBackend).
    pub rule: Option<usize>,
    /// Index of the path in the rule's `http.paths`.
    pub path_index: Option<usize>,
    pub path: String,
    pub path_type: &'static str,
}

#[derive(Debug, Serialize)]
pub struct BackendInfo {
    pub service: ObjectRef,
    /// The Service port, as the upstream id names it.
    pub port: String,
    pub weight: u32,
    pub protocol: BackendProtocol,
    pub load_balancing: LoadBalancing,
    pub affinity: Option<CookieAffinity>,
    /// `service-upstream`: the one endpoint is the Service's ClusterIP and port.
    pub service_upstream: bool,
    /// Verified TLS to the pods (a BackendTLSPolicy): SNI hostname, roots, subjectAltNames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::model::UpstreamTls>,
    pub endpoints: Vec<EndpointInfo>,
}

/// A route's `proxy-next-upstream*` ([`crate::proxy::next_upstream`]) as `explain` shows it.
#[derive(Debug, Serialize)]
pub struct NextUpstreamInfo {
    /// The failures retried, as nginx spells them (`error timeout`, `off`).
    pub when: String,
    /// Attempts in all, the first included (0: no limit); `None`: the `--proxy-retries` flag
    /// plus one (3 unless changed). Never more than the endpoints there are.
    pub tries: Option<u32>,
    /// Seconds after the first attempt during which another may start; 0: no limit.
    pub timeout_secs: f64,
}

/// A route's canary ([`crate::proxy::canary`]) as `explain` shows it.
#[derive(Debug, Serialize)]
pub struct CanaryInfo {
    /// The canary Ingress.
    pub ingress: ObjectRef,
    pub backend: BackendInfo,
    pub rule: CanaryRule,
    /// The side the request's headers and cookies choose; `None` when only the weight
    /// decides (then `canary_probability` says how often the canary is taken).
    pub takes: Option<Side>,
    /// The step that decided, or `weight`.
    pub decided_by: Step,
    /// Chance of the canary when the weight decides: `min(weight, total) / total`.
    pub canary_probability: f64,
}

/// A route's authentication ([`crate::proxy::auth`]) as `explain` shows it: where the users
/// come from and how many there are, never a hash.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthInfo {
    /// Requests need `Authorization: Basic` credentials of a user of `secret` (else 401).
    Basic {
        realm: String,
        secret: ObjectRef,
        secret_type: crate::model::AuthSecretType,
        users: usize,
        schemes: Vec<crate::model::htpasswd::Scheme>,
    },
    /// The authentication cannot be set up: every request gets 503.
    Unavailable { reason: String },
}

impl AuthInfo {
    fn of(auth: &crate::model::RouteAuth) -> AuthInfo {
        match auth {
            crate::model::RouteAuth::Basic(b) => AuthInfo::Basic {
                realm: b.realm.clone(),
                secret: b.secret.clone(),
                secret_type: b.secret_type,
                users: b.users.len(),
                schemes: b.users.schemes(),
            },
            crate::model::RouteAuth::Unavailable { reason } => AuthInfo::Unavailable {
                reason: reason.clone(),
            },
        }
    }
}

/// A host's client-certificate policy as `explain` shows it (never the CA's PEM).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientCertInfo {
    /// HTTPS requests are judged by the certificate the handshake got: with `on`, none or a
    /// failing one is 400 (or `error_page`); `optional` lets none through; `optional_no_ca`
    /// lets an unknown CA through; the pod gets the `ssl-client-*` headers.
    Verify {
        secret: ObjectRef,
        verify_client: crate::model::VerifyClient,
        verify_depth: u32,
        /// The Secret has `ca.crl`: revoked certificates are refused.
        crl: bool,
        pass_certificate_to_upstream: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_page: Option<String>,
        /// Regex the subject DN must match (else 403).
        #[serde(skip_serializing_if = "Option::is_none")]
        match_cn: Option<String>,
    },
    /// The policy cannot be used: every request to the host gets 403.
    Unavailable { reason: String },
}

impl ClientCertInfo {
    fn of(auth: &crate::model::ClientAuth) -> ClientCertInfo {
        match auth {
            crate::model::ClientAuth::Verify(p) => ClientCertInfo::Verify {
                secret: p.secret.clone(),
                verify_client: p.verify,
                verify_depth: p.depth,
                crl: p.crl_pem.is_some(),
                pass_certificate_to_upstream: p.pass_certificate,
                error_page: p.error_page.clone(),
                match_cn: p.match_cn.clone(),
            },
            crate::model::ClientAuth::Unavailable { reason } => ClientCertInfo::Unavailable {
                reason: reason.clone(),
            },
        }
    }
}

/// The client-certificate policy of the virtual host named `vhost` (as written).
fn client_auth_of<'s>(snapshot: &'s Snapshot, vhost: &str) -> Option<&'s crate::model::ClientAuth> {
    let l7 = &snapshot.l7;
    let vh = match vhost.strip_prefix("*.") {
        _ if vhost.is_empty() => l7.any_host.as_ref(),
        Some(suffix) => l7.wildcard_hosts.get(suffix),
        None => l7.hosts.get(vhost),
    }?;
    vh.client_auth.as_deref()
}

/// A route's error pages ([`crate::proxy::error_pages`]) as `explain` shows them.
#[derive(Debug, Serialize)]
pub struct ErrorPagesInfo {
    /// `default-backend`.
    pub default_backend: Option<BackendInfo>,
    /// True when the default backend serves this request: the route's backend has no
    /// endpoints (or no Service).
    pub default_backend_serves: bool,
    /// `custom-http-errors`: statuses replaced by the default backend's answer.
    pub intercept: Vec<u16>,
    /// The backend that answers intercepted statuses (`default-backend`, else the
    /// controller-wide default backend); `None`: nothing is intercepted.
    pub intercepted_by: Option<ObjectRef>,
    /// `disable-proxy-intercept-errors`: a pod's answer with an `intercept` status is passed
    /// as it is; only the proxy's own are replaced.
    pub pod_answers_passed: bool,
}

#[derive(Debug, Serialize)]
pub struct EndpointInfo {
    pub address: String,
    pub state: EndpointState,
    pub target: Option<String>,
    pub node: Option<String>,
}

/// What `q` would match in `snapshot`.
fn empty(snapshot: &Snapshot) -> Explanation {
    Explanation {
        outcome: Outcome::Refused,
        reason: String::new(),
        virtual_host: None,
        route: None,
        backends: Vec::new(),
        forwarded_path: None,
        redirect_to: None,
        upstream_host: None,
        x_forwarded_prefix: None,
        status: None,
        next_upstream: None,
        canary: None,
        error_pages: None,
        upstream_http: None,
        response_headers: Vec::new(),
        gateway: None,
        l4: None,
        auth: None,
        client_certificate: None,
        forward_auth: None,
        rate_limit: None,
        global_limit: None,
        satisfy: None,
        response_rate: None,
        source_ranges: None,
        diagnostics: Vec::new(),
        snapshot_version: snapshot.version,
    }
}

/// A TCP or UDP connection to node port `port`: the L4 service of the XDP path that takes it
/// (first by id, as the dataplane keys frontends), with the route its Gateway listener serves.
pub fn explain_l4(
    snapshot: &Snapshot,
    protocol: crate::model::L4Protocol,
    address: Option<std::net::IpAddr>,
    port: u16,
) -> Explanation {
    use crate::model::Frontend;
    let mut e = empty(snapshot);
    let takes = |want: &dyn Fn(&Frontend) -> bool| {
        (snapshot.l4.iter()).find(|s| s.protocol == protocol && s.frontends.iter().any(want))
    };
    // As the XDP path looks up: the address's own frontend (a Gateway's address, a
    // LoadBalancer IP), else the node port; without `--address`, any address frontend last.
    let on_address = |f: &Frontend| {
        matches!(f, Frontend::Address(sa) if sa.port() == port
            && address.is_none_or(|a| a.to_canonical() == sa.ip()))
    };
    let found = address
        .and_then(|_| takes(&on_address))
        .or_else(|| takes(&|f| *f == Frontend::NodePort(port)))
        .or_else(|| address.is_none().then(|| takes(&on_address)).flatten());
    let Some(svc) = found else {
        e.outcome = Outcome::NotFound;
        e.reason = format!(
            "no L4 service takes {protocol:?} port {port}: no TCP/UDP listener with a route, \
             and no NodePort"
        );
        return e;
    };
    e.outcome = Outcome::L4Service;
    let is_route = matches!(
        svc.service.kind,
        ObjectKind::TCPRoute | ObjectKind::UDPRoute
    );
    e.reason = if is_route {
        format!(
            "the XDP path takes the connection (Maglev, conntrack, NAT, as for NodePorts): \
             Gateway listener {} serves {}",
            svc.id, svc.service
        )
    } else {
        format!(
            "the XDP path takes the connection: a node port of {}",
            svc.service
        )
    };
    e.l4 = Some(L4Info {
        route: svc.service.clone(),
        parents: (snapshot.gateway_status.routes.get(&svc.service))
            .cloned()
            .unwrap_or_default(),
        xdp_service: Some(svc.id.clone()),
        protocol: Some(svc.protocol),
        frontends: svc.frontends.clone(),
        endpoints: (svc.endpoints.iter())
            .map(|ep| format!("{} ({:?}, weight {})", ep.addr, ep.state, ep.weight))
            .collect(),
        refused_percent: (svc.reject_weight > 0).then(|| {
            let served: f64 = svc.endpoints.iter().map(|e| f64::from(e.weight)).sum();
            let refused = f64::from(svc.reject_weight);
            100.0 * refused / (refused + served)
        }),
    });
    e.diagnostics = (snapshot.diagnostics.iter())
        .filter(|d| d.object == svc.service)
        .cloned()
        .collect();
    e
}

/// The `status.addresses` of the Gateways among `parents` (of a route in `route_ns`), by
/// `namespace/name`.
fn gateway_addresses(
    snapshot: &Snapshot,
    parents: &[crate::model::RouteParentStatus],
    route_ns: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    (parents.iter())
        .filter(|p| p.parent_ref.kind == "Gateway")
        .filter_map(|p| {
            let ns = (p.parent_ref.namespace.clone()).unwrap_or_else(|| route_ns.to_string());
            let oref = ObjectRef::new(ObjectKind::Gateway, &ns, &p.parent_ref.name);
            let gw = snapshot.gateway_status.gateways.get(&oref)?;
            Some((format!("{ns}/{}", p.parent_ref.name), gw.addresses.clone()))
        })
        .collect()
}

/// The port of a `Host` value (`a.example:8080`, `[::1]:8443`), if it has one.
fn host_port(host: &str) -> Option<u16> {
    let (_, port) = host.rsplit_once(':')?;
    // `[::1]` alone: the colon is inside the brackets.
    if port.ends_with(']') {
        return None;
    }
    port.parse().ok()
}

/// The Gateway API SNI entry for the query's host (lower case, port dropped) on the port and
/// address it arrives on, as [`crate::proxy::sni`] looks it up: the HTTPS port's table or
/// the Gateway port's own (on a Gateway's address, that Gateway's), exact name first, then
/// the most specific `*.` wildcard.
fn gateway_sni_of<'a>(
    snapshot: &'a Snapshot,
    q: &Query,
) -> Option<(&'a String, &'a crate::model::SniAction)> {
    let host = q.host.as_str();
    let name = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    let l7 = &snapshot.l7;
    let port = q
        .port
        .or_else(|| host_port(host))
        .unwrap_or(q.ports.https_port);
    let (https_table, port_tables) = match q.address.and_then(|a| l7.gateway_addresses.get(&a)) {
        Some(a) => (&a.sni, &a.sni_ports),
        None => (&l7.gateway_sni, &l7.gateway_sni_ports),
    };
    let sni = if port == q.ports.https_port {
        https_table
    } else {
        &port_tables.get(&port)?.sni
    };
    sni.get_key_value(&name).or_else(|| {
        name.match_indices('.')
            .find_map(|(i, _)| sni.get_key_value(&format!("*.{}", &name[i + 1..])))
    })
}

pub fn explain(snapshot: &Snapshot, q: &Query) -> Explanation {
    let (table, _) = RouteTable::build(&snapshot.l7, Arc::clone);
    let mut headers = HeaderMap::new();
    for (k, v) in &q.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let method = if q.method.is_empty() {
        "GET"
    } else {
        q.method.as_str()
    };
    let mut e = empty(snapshot);
    // The proxy's own request front: the same host checks and path normalisation.
    let (Ok(host_value), Ok(uri), Ok(method_value)) = (
        HeaderValue::from_str(&q.host),
        Uri::try_from(q.path.as_str()),
        Method::from_bytes(method.as_bytes()),
    ) else {
        e.status = Some(400);
        e.reason = "request line or Host cannot be sent as given".into();
        return e;
    };
    headers.insert(HOST, host_value);
    if q.https
        && let Some(p) = passthrough_of(snapshot, &q.host)
    {
        e.outcome = Outcome::Passthrough;
        e.reason = "ssl-passthrough: a TLS connection naming this host (SNI) is passed to the \
                    pod untouched; the request and the Ingress's other annotations are never seen"
            .into();
        e.backends = vec![backend_info(&p.upstream, 1)];
        e.diagnostics = snapshot
            .diagnostics
            .iter()
            .filter(|d| d.object == p.ingress)
            .cloned()
            .collect();
        return e;
    }
    if q.https
        && let Some((pattern, action)) = gateway_sni_of(snapshot, q)
    {
        match action {
            crate::model::SniAction::Pass {
                route,
                backends,
                terminate,
                ..
            } => {
                e.outcome = Outcome::Passthrough;
                e.reason = if *terminate {
                    format!(
                        "TLSRoute (Gateway API, tls.mode Terminate): {route} takes a TLS \
                         connection whose SNI matches {pattern:?}; it is terminated here with \
                         the listener's certificate and the plain bytes are passed to its \
                         backends; no HTTP request is seen"
                    )
                } else {
                    format!(
                        "TLS passthrough (Gateway API): {route} passes a TLS connection whose \
                         SNI matches {pattern:?} to its backends untouched; no request is seen"
                    )
                };
                e.backends = (backends.iter())
                    .map(|b| backend_info(&b.upstream, b.weight))
                    .collect();
                e.l4 = Some(L4Info {
                    route: route.clone(),
                    parents: (snapshot.gateway_status.routes.get(route))
                        .cloned()
                        .unwrap_or_default(),
                    xdp_service: None,
                    protocol: None,
                    frontends: Vec::new(),
                    endpoints: Vec::new(),
                    refused_percent: None,
                });
                e.diagnostics = (snapshot.diagnostics.iter())
                    .filter(|d| d.object == *route)
                    .cloned()
                    .collect();
                return e;
            }
            crate::model::SniAction::Close => {
                e.outcome = Outcome::Refused;
                e.reason = format!(
                    "a TLS listener's hostname ({pattern:?}) that no TLSRoute serves: the \
                     connection is closed"
                );
                return e;
            }
            crate::model::SniAction::Terminate => {}
        }
    }
    let target = match request_target::resolve(&method_value, Version::HTTP_11, &uri, &headers) {
        Ok(t) => t,
        Err(r) => {
            e.status = Some(r.status.as_u16());
            e.reason = r.reason.into();
            return e;
        }
    };
    // The listener the request arrives on, as the proxy has them: its own two ports, and the
    // ports it opened for Gateway listeners (the only routes served there).
    let port = q.port.or_else(|| host_port(&q.host)).unwrap_or(if q.https {
        q.ports.https_port
    } else {
        q.ports.http_port
    });
    let (tls, gateway_listener) = if port == q.ports.http_port {
        (false, false)
    } else if port == q.ports.https_port {
        (true, false)
    } else {
        match snapshot.l7.gateway_listeners.get(&port) {
            Some(crate::model::ListenerProtocol::Https) => (true, true),
            // TLS listeners only: what no TLSRoute took above is closed, as the proxy does.
            Some(crate::model::ListenerProtocol::TlsPassthrough) => {
                e.outcome = Outcome::Refused;
                e.reason = if q.https {
                    format!(
                        "port {port} has TLS listeners only and no TLSRoute there takes this \
                         name (SNI): the connection is closed before any certificate is sent"
                    )
                } else {
                    format!(
                        "port {port} has TLS listeners only: a connection that is not TLS is \
                         closed"
                    )
                };
                return e;
            }
            Some(_) => (false, true),
            None => {
                e.outcome = Outcome::Refused;
                e.reason = format!(
                    "nothing listens on port {port}: not --http-port ({}), not --https-port \
                     ({}), and no served Gateway listener (ports {:?}); the connection is \
                     refused",
                    q.ports.http_port,
                    q.ports.https_port,
                    snapshot.l7.gateway_listeners.keys().collect::<Vec<_>>()
                );
                return e;
            }
        }
    };
    if tls != q.https {
        e.outcome = Outcome::Refused;
        e.reason = if tls {
            format!("port {port} serves HTTPS: a plain HTTP request there fails (use https)")
        } else {
            format!("port {port} serves plain HTTP: a TLS handshake there fails (use http)")
        };
        return e;
    }
    let view = RequestView {
        host: &target.host,
        path: target.path_and_query.path(),
        query: target.path_and_query.query(),
        method,
        headers: &headers,
        tls: q.https,
        listener_port: Some(port),
        gateway_listener,
        local_addr: q.address,
    };
    e.forwarded_path = Some(target.path_and_query.to_string());
    // A miss here that a Gateway listener on another port would route: say which ports, as
    // a route attached only there is easy to ask about on the wrong one.
    let elsewhere = |table: &RouteTable<Arc<Upstream>>| -> String {
        let ports: Vec<u16> = (snapshot.l7.gateway_listeners.iter())
            .filter(|(p, proto)| {
                **p != port && (**proto == crate::model::ListenerProtocol::Https) == q.https
            })
            .map(|(p, _)| *p)
            .filter(|p| {
                let there = RequestView {
                    listener_port: Some(*p),
                    gateway_listener: true,
                    ..view
                };
                matches!(table.lookup(&there), Lookup::Route { .. })
            })
            .collect();
        if ports.is_empty() {
            String::new()
        } else {
            format!("; a route matches on port {ports:?} (give the port in --url or --host)")
        }
    };
    let host_name = |h: &CompiledHost<Arc<Upstream>>| Some(h.host.clone());
    // The proxy's rewrite step, with the same inputs.
    let step = rewrite::Target {
        scheme: if q.https { "https" } else { "http" },
        authority: &target.host,
        path: target.path_and_query.path(),
        query: target.path_and_query.query(),
    };
    let redirected = |e: &mut Explanation, a: rewrite::Answer| {
        e.outcome = Outcome::Redirect;
        e.status = Some(a.status);
        e.redirect_to = Some(a.location);
        e.reason = a.why.into();
    };
    // The proxy's client-certificate step comes first: before the host's routes and redirects.
    if let Some(vh) = table.host(&target.host)
        && let Some(auth) = client_auth_of(snapshot, &vh.host)
    {
        e.client_certificate = Some(ClientCertInfo::of(auth));
        if let crate::model::ClientAuth::Unavailable { reason } = auth {
            e.virtual_host = host_name(vh);
            e.outcome = Outcome::Respond;
            e.status = Some(403);
            e.reason = format!("client certificate authentication unavailable: {reason}");
            return e;
        }
    }
    if let Some(vh) = table.host(&target.host)
        && let Some(a) = rewrite::app_root(vh, &step)
    {
        e.virtual_host = host_name(vh);
        redirected(&mut e, a);
        return e;
    }
    // Counted for requests any route, the default backend or the 404 takes.
    let global_limit = q.global_limit.limit(&snapshot.l7.settings);
    match table.lookup(&view) {
        Lookup::Route { host, route } => {
            e.virtual_host = host_name(host);
            let (path, path_type) = match route.path() {
                _ if matches!(route.action, CompiledAction::DefaultBackend) => {
                    ("/".to_string(), ROOT_LOCATION)
                }
                PathMatch::Exact(p) => (p.clone(), "Exact"),
                PathMatch::Prefix(p) => (p.clone(), "Prefix"),
                PathMatch::CharPrefix(p) => (p.clone(), "ImplementationSpecific"),
                PathMatch::Regex(r) => (r.clone(), "ImplementationSpecific (regex)"),
                PathMatch::FullRegex(r) => (r.clone(), "RegularExpression"),
            };
            if let Some(g) = &route.policy.gateway {
                let parents: Vec<_> = (snapshot.gateway_status.routes)
                    .get(&route.origin().object)
                    .cloned()
                    .unwrap_or_default();
                e.gateway = Some(GatewayRouteInfo {
                    rule: (**g).clone(),
                    backend_request_timeout: route.policy.timeouts.read,
                    gateway_addresses: gateway_addresses(
                        snapshot,
                        &parents,
                        &route.origin().object.namespace,
                    ),
                    parents,
                });
            }
            e.route = Some(RouteInfo {
                ingress: route.origin().object.clone(),
                rule: route.origin().rule.map(usize::from),
                path_index: route.origin().path.map(usize::from),
                path,
                path_type,
            });
            e.rate_limit = route.policy.rate_limit.as_deref().cloned();
            let p = &route.policy;
            if !p.allow_source_ranges.is_empty()
                || !p.deny_source_ranges.is_empty()
                || p.auth.is_some()
                || p.forward_auth.is_some()
            {
                e.satisfy = Some(p.satisfy);
            }
            e.response_rate =
                p.limit_rate
                    .filter(|&r| r > 0)
                    .map(|bytes_per_second| ResponseRateInfo {
                        bytes_per_second,
                        after_bytes: p.limit_rate_after.unwrap_or(0),
                    });
            e.diagnostics = snapshot
                .diagnostics
                .iter()
                .filter(|d| d.object == route.origin().object)
                .cloned()
                .collect();
            if let Some(errors) = &route.errors {
                let own_empty = match &route.action {
                    CompiledAction::Forward(ups) => ups.iter().all(|(u, _)| u.endpoints.is_empty()),
                    CompiledAction::Respond { .. } => true,
                    // The root location's backend is the default backend itself.
                    CompiledAction::DefaultBackend => false,
                };
                let by = errors.default_backend.as_ref().or(table.default_backend());
                e.error_pages = Some(ErrorPagesInfo {
                    default_backend: errors.default_backend.as_ref().map(|d| backend_info(d, 1)),
                    default_backend_serves: own_empty && errors.default_backend.is_some(),
                    intercept: errors.intercept.clone(),
                    // A denied location's 503 is never replaced (`RoutePolicy::location_denied`).
                    intercepted_by: by
                        .filter(|_| !errors.intercept.is_empty())
                        .filter(|_| !route.policy.location_denied())
                        .map(|u| u.service.clone()),
                    pod_answers_passed: errors.pass_pod_answers,
                });
            }
            // The proxy's first step on a route: a denied location answers 503 and nothing else.
            if let Some(why) = &route.policy.response.denied {
                e.outcome = Outcome::Respond;
                e.status = Some(503);
                e.reason = why.clone();
                return e;
            }
            let extra =
                crate::proxy::cors::for_request(&route.policy.response, &method_value, &headers);
            e.response_headers = extra
                .set
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            if extra.preflight {
                e.outcome = Outcome::Respond;
                e.status = Some(204);
                e.reason = "CORS preflight from an allowed origin: answered by the proxy".into();
                return e;
            }
            // A from/to-www redirect names the port the request reached.
            let port_text = port.to_string();
            // The variables of a redirect URL, from what the query gives (`$remote_addr`:
            // `--client`, else 0.0.0.0).
            let client = crate::proxy::client_addr::Client::direct(
                q.client.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                q.https,
                port,
            );
            let request_id = crate::proxy::headers::request_id_of(&headers);
            let vars = crate::proxy::forward_auth::Request {
                host: &target.host,
                method: &method_value,
                headers: &headers,
                request_uri: &q.path,
                path: step.path,
                query: step.query,
                client: &client,
                tls: q.https,
                request_id: &request_id,
                route_host: &host.label,
                route_path: &route.path_label,
            };
            if let Some(a) = rewrite::redirect(route, &step, &port_text, &vars) {
                redirected(&mut e, a);
                return e;
            }
            // The proxy's next step: a Gateway API `RequestRedirect`, with the same inputs.
            if let Some(r) = route
                .policy
                .gateway
                .as_ref()
                .and_then(|g| g.redirect.as_ref())
            {
                let location = crate::proxy::gateway_filters::redirect_location(
                    r,
                    route.path(),
                    step.scheme,
                    &target.host,
                    port,
                    step.path,
                    step.query,
                );
                redirected(
                    &mut e,
                    rewrite::Answer {
                        status: r.status,
                        location,
                        why: "RequestRedirect",
                    },
                );
                e.reason = format!(
                    "RequestRedirect filter of {}: {}",
                    route.origin().object,
                    crate::model::answer::location_shape(r)
                );
                return e;
            }
            match &route.action {
                CompiledAction::Forward(ups) => {
                    e.backends = ups.iter().map(|(u, w)| backend_info(u, *w)).collect();
                    let n = &route.policy.next_upstream;
                    e.next_upstream = Some(NextUpstreamInfo {
                        when: n
                            .when
                            .as_ref()
                            .unwrap_or(&RetryOn::NGINX_DEFAULT)
                            .to_nginx(),
                        tries: n.tries,
                        timeout_secs: n.timeout.unwrap_or_default().as_secs_f64(),
                    });
                    let http = &route.policy.upstream_http;
                    e.upstream_http = Some(UpstreamHttpInfo {
                        http_version: http.version(),
                        request_buffering: http.request_buffering(),
                        response_buffering: http.response_buffering.unwrap_or(false),
                    });
                    if let Some(c) = &route.canary {
                        let main = ups.first().map(|(u, _)| &**u);
                        let by_request = main
                            .and_then(|m| canary::without_endpoints(m, &c.spec))
                            .or_else(|| c.by_request(main, &headers));
                        let rule = &c.rule;
                        e.canary = Some(CanaryInfo {
                            ingress: c.object.clone(),
                            backend: backend_info(&c.spec, 1),
                            rule: rule.clone(),
                            takes: by_request.map(|d| d.side),
                            decided_by: by_request.map_or(Step::Weight, |d| d.step),
                            canary_probability: f64::from(rule.weight.min(rule.weight_total))
                                / f64::from(rule.weight_total.max(1)),
                        });
                        e.diagnostics.extend(
                            snapshot
                                .diagnostics
                                .iter()
                                .filter(|d| d.object == c.object)
                                .cloned(),
                        );
                    }
                    if let Some(pq) = rewrite::rewrite(route, step.path, step.query) {
                        e.forwarded_path = Some(pq);
                        e.x_forwarded_prefix = route.policy.rewrite.x_forwarded_prefix.clone();
                    }
                    e.upstream_host = route.policy.rewrite.upstream_vhost.clone();
                    if !https_redirected(&mut e, snapshot, q, &target, &route.policy, host.tls) {
                        e.outcome = Outcome::Route;
                        e.reason = format!(
                            "host {:?} matched virtual host {:?}; path {:?} matched",
                            q.host,
                            host.host,
                            target.path_and_query.path()
                        );
                    }
                }
                CompiledAction::Respond { status, reason } => {
                    e.outcome = Outcome::Respond;
                    e.status = Some(*status);
                    e.reason = reason.to_string();
                }
                CompiledAction::DefaultBackend => {
                    let why = format!(
                        "{}; the host's root location (ingress-nginx's implicit `location /`) \
                         takes it, with the annotations of {}, the host's first Ingress",
                        miss_reason(Miss::NoPath, &q.host, target.path_and_query.path()),
                        route.ingress
                    );
                    if https_redirected(&mut e, snapshot, q, &target, &route.policy, host.tls) {
                        // Redirected: the default backend is not reached.
                    } else if let Some(d) = table.default_backend() {
                        e.outcome = Outcome::DefaultBackend;
                        e.backends = vec![backend_info(d, 1)];
                        e.reason = why;
                    } else {
                        e.outcome = Outcome::NotFound;
                        e.status = Some(404);
                        e.reason = format!("{why}; no default backend: the built-in 404");
                    }
                }
            }
            // The proxy's limits come after the redirects (nginx's preaccess phase).
            if e.outcome != Outcome::Redirect {
                e.global_limit = global_limit.clone();
            }
            // The proxy's auth step comes after the redirects, before the route's action.
            e.forward_auth = route.policy.forward_auth.as_deref().cloned();
            if let Some(auth) = &route.policy.auth {
                e.auth = Some(AuthInfo::of(auth));
                if e.outcome != Outcome::Redirect
                    && let crate::model::RouteAuth::Unavailable { reason } = auth
                {
                    e.outcome = Outcome::Respond;
                    e.status = Some(503);
                    e.reason = reason.clone();
                }
            }
            // The access phase's first check, after the redirects and a 503 of unusable auth.
            let p = &route.policy;
            if let Some((info, verdict)) =
                SourceRangesInfo::of(&p.deny_source_ranges, &p.allow_source_ranges, q.client)
            {
                e.source_ranges = Some(info);
                let reason = verdict.and_then(Verdict::refusal);
                let credentials_may_admit = p.satisfy == crate::model::Satisfy::Any
                    && (p.auth.is_some() || p.forward_auth.is_some());
                if let Some(reason) = reason
                    && e.outcome != Outcome::Redirect
                    && e.status != Some(503)
                {
                    if credentials_may_admit {
                        e.reason += &format!(
                            "; {reason}, but under satisfy any valid credentials still admit"
                        );
                    } else {
                        e.outcome = Outcome::Respond;
                        e.status = Some(403);
                        e.reason = reason.into();
                    }
                }
            }
            // Whatever the proxy answers itself in the route's location goes through its
            // `custom-http-errors` as the backend's answers do (`proxy::error_pages::Intercept`).
            if let Some(by) = e
                .error_pages
                .as_ref()
                .filter(|p| e.status.is_some_and(|s| p.intercept.contains(&s)))
                .and_then(|p| p.intercepted_by.as_ref())
            {
                e.reason += &format!(", which custom-http-errors replace by {by}'s answer");
            }
        }
        Lookup::Default { host, backend, why } => {
            e.global_limit = global_limit;
            e.virtual_host = host.and_then(host_name);
            e.outcome = Outcome::DefaultBackend;
            e.reason = miss_reason(why, &q.host, target.path_and_query.path());
            e.reason += &elsewhere(&table);
            e.backends = vec![backend_info(backend, 1)];
            if !gateway_listener {
                default_server_access(&mut e, snapshot, q.client);
            }
        }
        Lookup::NotFound { host, why } => {
            e.global_limit = global_limit;
            e.virtual_host = host.and_then(host_name);
            if !gateway_listener {
                default_server_access(&mut e, snapshot, q.client);
                if e.status.is_some() {
                    return e;
                }
            }
            e.outcome = Outcome::NotFound;
            let miss = miss_reason(why, &q.host, target.path_and_query.path());
            // The proxy's gRPC rejection ([`crate::proxy::grpc_reject`]), with the same inputs.
            if crate::proxy::grpc_reject::is_grpc(&headers) && table.gateway_miss(host, &view) {
                e.status = Some(200);
                e.reason = format!(
                    "{miss}; a gRPC call the Gateway API rejects: Trailers-Only grpc-status {} \
                     (UNIMPLEMENTED)",
                    crate::proxy::grpc_reject::UNIMPLEMENTED
                );
            } else {
                e.status = Some(404);
                e.reason = format!("{miss}; no default backend");
            }
            // Gateways are served but none on this port (a listener's `port` is the port
            // clients connect to: `port: 80` under `--http-port 8080` is PortUnavailable).
            let l7 = &snapshot.l7;
            let gateway_here = l7.gateway_shared_ports.contains(&port)
                || l7.gateway_listeners.contains_key(&port)
                || (l7.gateway_addresses.values()).any(|a| a.ports.contains_key(&port));
            if !gateway_here && !snapshot.gateway_status.gateways.is_empty() {
                e.reason += &format!("; no Gateway listener serves port {port}");
            }
            e.reason += &elsewhere(&table);
        }
    }
    e
}

/// The proxy's access step of a request no route takes, off Gateway listener ports
/// ([`crate::proxy`]'s `default_server_access`): the ConfigMap's `block-cidrs` refuse `client`
/// with 403, or every client with 503 when the key is unusable.
fn default_server_access(
    e: &mut Explanation,
    snapshot: &Snapshot,
    client: Option<std::net::IpAddr>,
) {
    let block = snapshot.l7.settings.block_cidrs.as_ref();
    if let Some(Ok(deny)) = block
        && let Some((info, _)) = SourceRangesInfo::of(deny, &[], client)
    {
        e.source_ranges = Some(info);
    }
    if let Some((status, reason)) = crate::proxy::allowlist::default_server_refusal(block, client) {
        e.outcome = Outcome::Respond;
        e.status = Some(status.as_u16());
        e.reason = if status == http::StatusCode::FORBIDDEN {
            format!("{reason}: block-cidrs, which the default server inherits")
        } else {
            reason.to_string()
        };
        e.backends.clear();
    }
}

/// Adds to `e` the diagnostics the route table cannot point at: those of Ingresses whose
/// rules name `host` (exactly, through a one-label wildcard, or without a host when no virtual
/// host matched) but that were not served or served in part — an Ingress refused for its
/// snippets leaves no route behind — those of HTTPRoutes whose hostnames name `host` (exactly,
/// through a Gateway wildcard of one or more labels, or with no hostnames at all) and of the
/// Gateways they name (a listener not served, a certificate that does not resolve), and those
/// of the EndpointSlices behind the backends shown (an endpoint address refused as node-local).
pub fn add_related_diagnostics(
    e: &mut Explanation,
    snapshot: &Snapshot,
    objects: &Objects,
    host: &str,
) {
    let host = crate::proxy::router::normalize_host(host);
    let names_host = |rule_host: Option<&str>| match rule_host {
        None | Some("") => e.virtual_host.is_none(),
        Some(h) => match h.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => h.eq_ignore_ascii_case(&host),
        },
    };
    let mut related: Vec<ObjectRef> = objects
        .ingresses
        .values()
        .filter(|i| {
            let rules = i.spec.as_ref().and_then(|s| s.rules.as_ref());
            rules.is_some_and(|r| r.iter().any(|r| names_host(r.host.as_deref())))
        })
        .map(|i| {
            ObjectRef::new(
                ObjectKind::Ingress,
                i.metadata.namespace.clone().unwrap_or_default(),
                i.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut gateways = std::collections::BTreeSet::new();
    // GRPCRoutes have the same hostnames and parentRefs.
    let grpc: Vec<_> = (objects.grpc_routes.iter())
        .filter_map(|(k, g)| {
            let r = crate::model::translate::gateway::grpc::as_http_route(g).ok()?;
            Some((k, ObjectKind::GRPCRoute, r))
        })
        .collect();
    let routes = (objects.http_routes.iter())
        .map(|(k, r)| (k, ObjectKind::HTTPRoute, &**r))
        .chain(grpc.iter().map(|(k, kind, r)| (*k, *kind, r)));
    for (key, kind, r) in routes {
        let hostnames = r.spec.hostnames.as_deref().unwrap_or_default();
        let names = hostnames.is_empty()
            || hostnames.iter().any(|h| match h.strip_prefix("*.") {
                Some(suffix) => crate::model::translate::gateway::hostnames::covers(
                    &suffix.to_ascii_lowercase(),
                    &host,
                ),
                None => h.eq_ignore_ascii_case(&host),
            });
        if !names {
            continue;
        }
        related.push(ObjectRef::new(
            kind,
            key.namespace.clone(),
            key.name.clone(),
        ));
        for p in r.spec.parent_refs.iter().flatten() {
            let ns = p.namespace.clone().unwrap_or_else(|| key.namespace.clone());
            gateways.insert(ObjectRef::new(ObjectKind::Gateway, ns, p.name.clone()));
        }
    }
    // And their classes: a class of another controller is noted, a missing one reported.
    related.extend(gateways.iter().filter_map(|g| {
        let gw = objects
            .gateways
            .get(&crate::store::Key::new(&g.namespace, g.name.clone()))?;
        Some(ObjectRef::new(
            ObjectKind::GatewayClass,
            "",
            gw.spec.gateway_class_name.clone(),
        ))
    }));
    related.extend(gateways);
    let services = e
        .backends
        .iter()
        .chain(e.canary.as_ref().map(|c| &c.backend))
        .map(|b| (b.service.namespace.clone(), b.service.name.clone()))
        .collect::<std::collections::BTreeSet<_>>();
    related.extend(
        objects
            .endpoint_slices
            .values()
            .filter(|s| {
                s.service().is_some_and(|svc| {
                    services.contains(&(
                        s.metadata.namespace.clone().unwrap_or_default(),
                        svc.to_string(),
                    ))
                })
            })
            .map(|s| {
                ObjectRef::new(
                    ObjectKind::EndpointSlice,
                    s.metadata.namespace.clone().unwrap_or_default(),
                    s.metadata.name.clone().unwrap_or_default(),
                )
            }),
    );
    for d in &snapshot.diagnostics {
        if related.contains(&d.object) && !e.diagnostics.contains(d) {
            e.diagnostics.push(d.clone());
        }
    }
}

/// Adds to `e` the diagnostics of the controller ConfigMap (`--configmap`): its values apply to
/// every request, so a value that does not parse (`InvalidConfigMapValue`: the default is
/// kept), a key not acted on or the ConfigMap missing says why a request is not answered as
/// the ConfigMap asks; `run` logs and reports the same.
pub fn add_controller_configmap_diagnostics(
    e: &mut Explanation,
    snapshot: &Snapshot,
    configmap: Option<&crate::store::Key>,
) {
    let Some(key) = configmap else { return };
    let of_it = |d: &&Diagnostic| {
        d.object.kind == ObjectKind::ConfigMap
            && d.object.namespace == key.namespace
            && d.object.name == key.name
    };
    for d in snapshot.diagnostics.iter().filter(of_it) {
        if !e.diagnostics.contains(d) {
            e.diagnostics.push(d.clone());
        }
    }
}

/// `RouteInfo::path_type` of ingress-nginx's implicit root location of a host
/// ([`crate::model::RouteAction::DefaultBackend`]).
pub const ROOT_LOCATION: &str = "root location";

/// The proxy's HTTPS redirect of a route ([`crate::model::RoutePolicy::redirects_to_https`]),
/// the same for a rule's path and the root location: when the plain-HTTP request `q` to
/// `target` is redirected, fills in `e` (308 or ConfigMap `http-redirect-code`, the
/// `Location`, why) and returns true. `host_tls`: the host's name, or its one-label
/// wildcard, has a certificate ([`crate::model::VirtualHost::tls`]).
fn https_redirected(
    e: &mut Explanation,
    snapshot: &Snapshot,
    q: &Query,
    target: &request_target::Target,
    policy: &crate::model::RoutePolicy,
    host_tls: bool,
) -> bool {
    if q.https || !policy.redirects_to_https(host_tls) {
        return false;
    }
    e.outcome = Outcome::Redirect;
    e.status = Some(snapshot.l7.settings.http_redirect_code.unwrap_or(308));
    e.redirect_to = Some(rewrite::https_location(
        &target.host,
        q.ports.https_redirect_port(),
        target.path_and_query.as_str(),
        policy,
    ));
    e.reason = if host_tls {
        "the host (or its one-label wildcard) has a certificate and the request is plain HTTP"
    } else {
        "force-ssl-redirect and the request is plain HTTP"
    }
    .into();
    true
}

fn miss_reason(why: Miss, host: &str, path: &str) -> String {
    match why {
        Miss::NoHost => format!("no rule for host {host:?} and no rule without host"),
        Miss::NoPath => format!("host {host:?} matched but no path matches {path:?}"),
    }
}

/// The passthrough of `host` (port and case ignored, as SNI carries neither).
fn passthrough_of<'a>(snapshot: &'a Snapshot, host: &str) -> Option<&'a Passthrough> {
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    snapshot.l7.passthrough.get(&name.to_ascii_lowercase())
}

fn backend_info(u: &Upstream, weight: u32) -> BackendInfo {
    BackendInfo {
        service: ObjectRef {
            kind: ObjectKind::Service,
            ..u.service.clone()
        },
        port: u
            .id
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default(),
        weight,
        protocol: u.protocol,
        load_balancing: u.load_balancing.clone(),
        affinity: u.affinity.as_deref().cloned(),
        service_upstream: u.service_upstream,
        tls: u.tls.as_deref().cloned(),
        endpoints: u
            .endpoints
            .iter()
            .map(|ep| EndpointInfo {
                address: ep.addr.to_string(),
                state: ep.state,
                target: ep.target.as_deref().map(str::to_string),
                node: ep.node_name.as_deref().map(str::to_string),
            })
            .collect(),
    }
}

/// The snapshot the control plane builds from a manifest directory (same source, same
/// translation as `run --manifests`).
pub fn load_snapshot(dir: &std::path::Path, config: &TranslateConfig) -> anyhow::Result<Snapshot> {
    Ok(translate(&load_objects(dir)?, config))
}

/// The objects of a manifest directory, as `run --manifests` reads them.
pub fn load_objects(dir: &std::path::Path) -> anyhow::Result<Objects> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    Ok(ManifestDir::new(dir).load())
}

/// The translation `explain` runs: the daemon's flags ([`crate::source::args::TranslationArgs`]),
/// the Gateway address pool and the proxy's ports.
pub fn translate_config(args: &ExplainArgs) -> TranslateConfig {
    let mut config = TranslateConfig {
        gateway_address_pool: args.gateway_pool.pool(),
        gateway_ports: args.ports.proxy_ports(),
        ..TranslateConfig::default()
    };
    args.translation.apply(&mut config);
    config
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let config = translate_config(&args);
    let objects = load_objects(&args.manifests)
        .with_context(|| format!("loading manifests from {}", args.manifests.display()))?;
    let snapshot = translate(&objects, &config);
    if let Some(key) = &args.gateway {
        let e = super::explain_gateway::explain_gateway(
            &snapshot,
            &objects,
            key,
            &args.translation.controller_name,
        );
        super::output::emit_json(&e)?;
        // A name that matches nothing is a mistake to say so about, not an answer.
        if !objects.gateways.contains_key(key) {
            anyhow::bail!("no Gateway {key} in {}", args.manifests.display());
        }
        return Ok(());
    }
    if let Some(port) = args.port {
        let e = explain_l4(&snapshot, args.protocol.into(), args.address, port);
        super::output::emit_json(&e)?;
        return Ok(());
    }
    let (host, path, https) = match &args.url {
        Some(url) => {
            let https = match url.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => anyhow::bail!("--url: the scheme must be http or https"),
            };
            let host = url.authority().map(|a| a.to_string()).unwrap_or_default();
            let path = url.path_and_query().map_or("/", |p| p.as_str()).to_string();
            (host, path, https)
        }
        None => (args.host.clone(), args.path, args.https),
    };
    let mut e = explain(
        &snapshot,
        &Query {
            host: host.clone(),
            path,
            method: args.method,
            headers: args.headers,
            https,
            address: args.address,
            client: args.client,
            global_limit: args.global_limit,
            port: None,
            ports: args.ports,
        },
    );
    add_related_diagnostics(&mut e, &snapshot, &objects, &host);
    add_controller_configmap_diagnostics(&mut e, &snapshot, args.translation.configmap.as_ref());
    super::output::emit_json(&e)?;
    Ok(())
}

/// A Gateway with HTTPRoute rules that answer without a backend: two redirects and one
/// rule with only a header filter.
#[cfg(test)]
pub(crate) const GATEWAY_REDIRECTS_FOR_TESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirects, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [www.gw.test]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        statusCode: 301
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
  - matches: [{path: {type: Exact, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: other.test, path: {type: ReplaceFullPath, replaceFullPath: /}}
  - matches: [{path: {type: Exact, value: /filtered}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-a, value: b}]}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Diagnostic, RouteAction, Severity},
        proxy::fixtures::*,
    };

    fn snap() -> Snapshot {
        let ep = "10.0.0.1:8080".parse().unwrap();
        let mut tls_route = route_to(path("Prefix", "/"), upstream_at("secure", &[ep]));
        tls_route.origin.rule = Some(1);
        let mut missing = route(path("Exact", "/missing"), "gone");
        missing.action = RouteAction::Respond {
            status: 503,
            reason: "service default/gone not found".into(),
        };
        let mut s = (*snapshot(
            7,
            l7_with(
                vec![
                    vhost(
                        "foo.example.com",
                        vec![
                            missing,
                            route_to(path("Prefix", "/api"), upstream_at("api", &[ep])),
                        ],
                        false,
                    ),
                    vhost("secure.example.com", vec![tls_route], true),
                ],
                None,
            ),
        ))
        .clone();
        s.diagnostics.push(Diagnostic {
            object: ObjectRef {
                kind: ObjectKind::Ingress,
                namespace: "default".into(),
                name: "ing".into(),
            },
            severity: Severity::Error,
            reason: "ServiceNotFound".into(),
            message: "service default/gone not found".into(),
        });
        s
    }

    fn q(host: &str, path: &str) -> Query {
        Query {
            host: host.into(),
            path: path.into(),
            ..Query::default()
        }
    }

    #[test]
    fn route_match_names_ingress_path_backend_and_endpoints() {
        let e = explain(&snap(), &q("foo.example.com", "/api/users?x=1"));
        assert_eq!(e.outcome, Outcome::Route);
        let r = e.route.as_ref().unwrap();
        assert_eq!(
            (r.ingress.namespace.as_str(), r.ingress.name.as_str()),
            ("default", "ing")
        );
        assert_eq!((r.path.as_str(), r.path_type), ("/api", "Prefix"));
        assert_eq!(e.backends[0].service.name, "api");
        assert_eq!(e.backends[0].port, "80");
        assert_eq!(e.backends[0].endpoints[0].address, "10.0.0.1:8080");
        assert_eq!(e.diagnostics.len(), 1);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["outcome"], "route");
        assert_eq!(json["route"]["path_type"], "Prefix");
        assert_eq!(json["backends"][0]["service"]["name"], "api");
    }

    /// The route's HTTP version and buffering in effect: ingress-nginx's defaults (1.1,
    /// request buffering on, response buffering off), else what the policy says.
    #[test]
    fn upstream_http_shows_version_and_buffering_in_effect() {
        let e = explain(&snap(), &q("foo.example.com", "/api"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json["upstream_http"],
            serde_json::json!({"http_version": "1.1", "request_buffering": true, "response_buffering": false})
        );
        let ep = "10.0.0.1:8080".parse().unwrap();
        let mut r = route_to(path("Prefix", "/api"), upstream_at("api", &[ep]));
        Arc::make_mut(&mut r.policy).upstream_http = crate::model::UpstreamHttp {
            version: Some(crate::model::UpstreamVersion::Http10),
            request_buffering: Some(false),
            response_buffering: Some(true),
        };
        let s = snapshot(
            1,
            l7_with(vec![vhost("foo.example.com", vec![r], false)], None),
        );
        let json = serde_json::to_value(explain(&s, &q("foo.example.com", "/api"))).unwrap();
        assert_eq!(
            json["upstream_http"],
            serde_json::json!({"http_version": "1.0", "request_buffering": false, "response_buffering": true})
        );
        // Not forwarded: nothing to show.
        let e = explain(&snap(), &q("foo.example.com", "/missing"));
        assert!(e.upstream_http.is_none());
    }

    /// `explain` runs the proxy's request front: the path it matches and shows is the
    /// normalised one the backend would get, and what the proxy refuses it refuses too.
    #[test]
    fn paths_are_normalised_and_bad_targets_refused_as_the_proxy_does() {
        let s = snap();
        for raw in [
            "/x/../api/users?a=/../",
            "//api/users?a=/../",
            "/%61pi/users?a=/../",
        ] {
            let e = explain(&s, &q("foo.example.com", raw));
            assert_eq!(e.outcome, Outcome::Route, "{raw}");
            assert_eq!(e.route.unwrap().path, "/api", "{raw}");
            assert_eq!(
                e.forwarded_path.as_deref(),
                Some("/api/users?a=/../"),
                "{raw}"
            );
        }
        let e = explain(&s, &q("secure.example.com", "/a/./b/../c?x"));
        assert_eq!(
            e.redirect_to.as_deref(),
            Some("https://secure.example.com/a/c?x")
        );
        for (host, path, status) in [
            ("foo.example.com", "/../api", 400),
            ("foo.example.com", "/api/..%2f..%2fx", 400),
            ("attacker/.secure.example.com", "/", 400),
            ("", "/", 400),
        ] {
            let e = explain(&s, &q(host, path));
            assert_eq!(e.outcome, Outcome::Refused, "{host}{path}");
            assert_eq!(e.status, Some(status), "{host}{path}");
            assert!(e.route.is_none() && e.forwarded_path.is_none());
        }
        // Absolute-form routes by its own host, as in the proxy.
        let e = explain(&s, &q("foo.example.com", "http://secure.example.com/x"));
        assert_eq!(
            e.redirect_to.as_deref(),
            Some("https://secure.example.com/x")
        );
        // CONNECT: its authority-form target is 400 as nginx's request-line parser answers
        // it; an origin-form one is 405.
        let mut connect = q("foo.example.com", "foo.example.com:443");
        connect.method = "CONNECT".into();
        assert_eq!(explain(&s, &connect).status, Some(400));
        let mut connect = q("foo.example.com", "/");
        connect.method = "CONNECT".into();
        assert_eq!(explain(&s, &connect).status, Some(405));
    }

    /// `ssl-passthrough`: over HTTPS the connection goes to the pods untouched, so no route
    /// applies; plain HTTP is routed as usual.
    #[test]
    fn passthrough_hosts_over_https_name_their_pods() {
        let mut s = snap();
        let ep = "10.0.0.9:8443".parse().unwrap();
        let ing = ObjectRef::new(ObjectKind::Ingress, "default", "ing");
        s.l7.passthrough.insert(
            "foo.example.com".into(),
            Passthrough {
                ingress: ing,
                upstream: upstream_at("vault", &[ep]),
            },
        );
        let mut https = q("Foo.example.com:443", "/api");
        https.https = true;
        let e = explain(&s, &https);
        assert_eq!(e.outcome, Outcome::Passthrough);
        assert_eq!(e.backends[0].service.name, "vault");
        assert_eq!(e.backends[0].endpoints[0].address, "10.0.0.9:8443");
        assert!(e.route.is_none());
        assert_eq!(e.diagnostics.len(), 1, "the Ingress's diagnostics");
        assert_eq!(serde_json::to_value(&e).unwrap()["outcome"], "passthrough");
        let e = explain(&s, &q("foo.example.com", "/api"));
        assert_eq!(e.outcome, Outcome::Route);
    }

    #[test]
    fn not_found_default_backend_respond_and_redirect_say_why() {
        let s = snap();
        let e = explain(&s, &q("foo.example.com", "/other"));
        assert_eq!(e.outcome, Outcome::NotFound);
        assert_eq!(e.status, Some(404));
        assert!(e.reason.contains("no path matches"), "{}", e.reason);
        let e = explain(&s, &q("nobody.example.com", "/"));
        assert!(e.reason.contains("no rule for host"), "{}", e.reason);

        let mut with_default = s.clone();
        with_default.l7.default_backend = Some(upstream("fallback"));
        let e = explain(&with_default, &q("nobody.example.com", "/"));
        assert_eq!(e.outcome, Outcome::DefaultBackend);
        assert_eq!(e.backends[0].service.name, "fallback");

        let e = explain(&s, &q("foo.example.com", "/missing"));
        assert_eq!((e.outcome, e.status), (Outcome::Respond, Some(503)));

        let e = explain(&s, &q("secure.example.com", "/x?y"));
        assert_eq!(e.outcome, Outcome::Redirect);
        assert_eq!(
            e.redirect_to.as_deref(),
            Some("https://secure.example.com/x?y")
        );
        assert_eq!(e.route.as_ref().unwrap().rule, Some(1));
        let e = explain(
            &s,
            &Query {
                https: true,
                ..q("secure.example.com", "/x")
            },
        );
        assert_eq!(e.outcome, Outcome::Route);
    }

    /// The rewrite step as `explain` shows it: the path the pod would get, the headers set,
    /// and the redirects, from manifests as `run --manifests` reads them (examples/rewrite;
    /// the blog "Before you migrate", section 4).
    /// `explain` shows a backend's cookie affinity as the proxy enforces it: every
    /// `affinity-mode` / `session-cookie-*` value, defaults included.
    #[test]
    fn shows_cookie_affinity() {
        let dir = std::env::temp_dir().join(format!("xi-explain-affinity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
                    spec:\n  ports: [{port: 80}]\n---\napiVersion: networking.k8s.io/v1\n\
                    kind: Ingress\nmetadata:\n  name: sticky\n  namespace: default\n  \
                    annotations:\n    nginx.ingress.kubernetes.io/affinity: cookie\n    \
                    nginx.ingress.kubernetes.io/affinity-mode: persistent\n    \
                    nginx.ingress.kubernetes.io/session-cookie-expires: \"60\"\n    \
                    nginx.ingress.kubernetes.io/session-cookie-domain: example.test\n    \
                    nginx.ingress.kubernetes.io/session-cookie-change-on-failure: \"true\"\n\
                    spec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: s.test\n    \
                    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: \
                    {service: {name: web, port: {number: 80}}}}\n";
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let e = serde_json::to_value(explain(&s, &q("s.test", "/"))).unwrap();
        assert_eq!(
            e["backends"][0]["affinity"],
            serde_json::json!({
                "name": "INGRESSCOOKIE",
                "mode": "persistent",
                "max_age": null,
                "expires": {"secs": 60, "nanos": 0},
                "path": null,
                "domain": "example.test",
                "same_site": null,
                "conditional_same_site_none": false,
                "secure": false,
                "change_on_failure": true,
            }),
            "{e}"
        );
    }

    #[test]
    fn shows_rewritten_paths_and_redirects() {
        let dir = std::env::temp_dir().join(format!("xi-explain-paths-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ingress = |name: &str, class: &str, host: &str, ann: &str, path: &str, ty: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
                 namespace: default\n  annotations: {{{ann}}}\nspec:\n  ingressClassName: {class}\n  \
                 rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: {path:?}, \
                 pathType: {ty}, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        };
        let yaml = [
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\n\
             spec: {controller: xdp-ingress.dev/controller}\n---\napiVersion: v1\nkind: Service\n\
             metadata: {name: web, namespace: default}\nspec:\n  ports: [{port: 80}]\n"
                .to_string(),
            ingress(
                "rw",
                "xdp-ingress",
                "rewrite.bar.com",
                "nginx.ingress.kubernetes.io/rewrite-target: /$2, \
                 nginx.ingress.kubernetes.io/x-forwarded-prefix: /something, \
                 nginx.ingress.kubernetes.io/upstream-vhost: internal.svc",
                "/something(/|$)(.*)",
                "ImplementationSpecific",
            ),
            ingress(
                "perm",
                "xdp-ingress",
                "perm.test",
                "nginx.ingress.kubernetes.io/permanent-redirect: https://www.google.com",
                "/",
                "Prefix",
            ),
            ingress("slash", "nginx", "trailing.test", "", "/my-path/", "Exact"),
        ]
        .concat();
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let e = explain(&s, &q("rewrite.bar.com", "/something/new?a=1"));
        assert_eq!(e.outcome, Outcome::Route, "{e:?}");
        assert_eq!(e.forwarded_path.as_deref(), Some("/new?a=1"));
        assert_eq!(e.x_forwarded_prefix.as_deref(), Some("/something"));
        assert_eq!(e.upstream_host.as_deref(), Some("internal.svc"));
        let e = explain(&s, &q("perm.test", "/x"));
        assert_eq!(
            (e.outcome, e.status, e.redirect_to.as_deref()),
            (Outcome::Redirect, Some(301), Some("https://www.google.com"))
        );
        let e = explain(&s, &q("trailing.test", "/my-path"));
        assert_eq!(
            (e.outcome, e.status, e.redirect_to.as_deref()),
            (
                Outcome::Redirect,
                Some(301),
                Some("http://trailing.test/my-path/")
            )
        );
    }

    /// A CORS preflight from an allowed origin is answered by the proxy (204), with the
    /// headers; an actual request lists the headers its response gets; another origin none.
    #[test]
    fn shows_cors_preflights_and_response_headers() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
                    spec:\n  ports: [{port: 80}]\n---\napiVersion: networking.k8s.io/v1\n\
                    kind: Ingress\nmetadata:\n  name: api\n  namespace: default\n  annotations:\n    \
                    nginx.ingress.kubernetes.io/enable-cors: \"true\"\n    \
                    nginx.ingress.kubernetes.io/cors-allow-origin: \"https://*.example.com\"\n\
                    spec:\n  ingressClassName: xdp-ingress\n  rules:\n  - host: api.test\n    \
                    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: \
                    {name: web, port: {number: 80}}}}\n";
        let objects = crate::store::Objects::from_objects(
            crate::source::files::parse_manifests(yaml).unwrap(),
        );
        let s = crate::model::translate::translate(&objects, &TranslateConfig::default());
        let ask = |method: &str, origin: &str| Query {
            host: "api.test".into(),
            path: "/v1".into(),
            method: method.into(),
            headers: vec![("Origin".into(), origin.into())],
            https: false,
            ..Query::default()
        };
        let e = explain(&s, &ask("OPTIONS", "https://app.example.com"));
        assert_eq!(
            (&e.outcome, e.status),
            (&Outcome::Respond, Some(204)),
            "{e:?}"
        );
        let origin = e
            .response_headers
            .iter()
            .find(|(k, _)| k == "access-control-allow-origin");
        assert_eq!(
            origin.map(|(_, v)| v.as_str()),
            Some("https://app.example.com")
        );
        let e = explain(&s, &ask("GET", "https://app.example.com"));
        assert_eq!(e.outcome, Outcome::Route);
        assert_eq!(e.response_headers.len(), 5, "{:?}", e.response_headers);
        let e = explain(&s, &ask("OPTIONS", "https://evil.test"));
        assert_eq!(e.outcome, Outcome::Route);
        assert!(e.response_headers.is_empty());
    }

    /// `explain` shows a host's client-certificate policy (never the CA), and an unusable one
    /// as the 403 the proxy answers before any route.
    #[test]
    fn shows_client_certificate_policy() {
        let ca = crate::proxy::tls::self_signed_pem(&["ca.test"]).unwrap().0;
        let ingress = |name: &str, host: &str, secret: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
                 namespace: default\n  annotations: {{nginx.ingress.kubernetes.io/auth-tls-secret: {secret}, \
                 nginx.ingress.kubernetes.io/auth-tls-verify-client: optional}}\nspec:\n  \
                 ingressClassName: xdp-ingress\n  rules:\n  - host: {host}\n    http:\n      paths:\n      \
                 - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        };
        let yaml = [
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\n\
                 spec:\n  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: Secret\n\
                 metadata: {{name: ca, namespace: default}}\ntype: Opaque\nstringData: {{ca.crt: {ca:?}}}\n"
            ),
            ingress("mtls", "mtls.test", "default/ca"),
            ingress("broken", "broken.test", "default/missing"),
        ]
        .concat();
        let objects = crate::store::Objects::from_objects(
            crate::source::files::parse_manifests(&yaml).unwrap(),
        );
        let s = crate::model::translate::translate(&objects, &TranslateConfig::default());
        let ask = |host: &str| Query {
            host: host.into(),
            path: "/".into(),
            method: "GET".into(),
            headers: vec![],
            https: true,
            ..Query::default()
        };
        let e = explain(&s, &ask("mtls.test"));
        assert_eq!(e.outcome, Outcome::Route, "{e:?}");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["client_certificate"]["type"], "verify", "{json}");
        assert_eq!(json["client_certificate"]["verify_client"], "optional");
        assert_eq!(json["client_certificate"]["verify_depth"], 1);
        assert_eq!(json["client_certificate"]["secret"]["name"], "ca");
        assert!(!json.to_string().contains("BEGIN CERTIFICATE"));
        let e = explain(&s, &ask("broken.test"));
        assert_eq!(
            (&e.outcome, e.status),
            (&Outcome::Respond, Some(403)),
            "{e:?}"
        );
        assert!(matches!(
            e.client_certificate,
            Some(ClientCertInfo::Unavailable { .. })
        ));
    }

    /// `explain` says a route needs basic auth and from which Secret, never a hash; an
    /// unusable auth configuration is the 503 the proxy answers.
    #[test]
    fn shows_basic_auth_without_hashes() {
        let dir = std::env::temp_dir().join(format!("xi-explain-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ingress = |name: &str, host: &str, secret: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
                 namespace: default\n  annotations: {{nginx.ingress.kubernetes.io/auth-type: basic, \
                 nginx.ingress.kubernetes.io/auth-secret: {secret}, \
                 nginx.ingress.kubernetes.io/auth-realm: Staff}}\nspec:\n  ingressClassName: xdp-ingress\n  \
                 rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, \
                 pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        };
        let yaml = [
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
             spec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Secret\n\
             metadata: {name: users, namespace: default}\ntype: Opaque\n\
             stringData: {auth: \"alice:$apr1$Xy3kLm9q$hc3SRGwDRb7MUkg4w6KQp0\\n\"}\n"
                .to_string(),
            ingress("private", "private.test", "users"),
            ingress("broken", "broken.test", "missing"),
        ]
        .concat();
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let e = explain(&s, &q("private.test", "/"));
        let shown = serde_json::to_string(&e).unwrap();
        assert!(shown.contains("\"type\":\"basic\""), "{shown}");
        assert!(
            shown.contains("\"users\":1") && shown.contains("Apr1"),
            "{shown}"
        );
        assert!(shown.contains("\"realm\":\"Staff\""), "{shown}");
        assert!(
            !shown.contains("hc3SRG") && !shown.contains("Xy3kLm9q"),
            "{shown}"
        );
        let e = explain(&s, &q("broken.test", "/"));
        assert_eq!(e.status, Some(503), "{e:?}");
        assert_eq!(e.outcome, Outcome::Respond);
        assert!(e.reason.contains("AuthSecretNotFound"), "{}", e.reason);
    }

    /// `explain` shows a route's external auth: the URL, the sign-in URL as ingress-nginx
    /// builds it, the copied headers and the Service the URL resolves to.
    #[test]
    fn shows_forward_auth() {
        let dir = std::env::temp_dir().join(format!("xi-explain-fwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
             spec:\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: Service\n\
             metadata: {name: authelia, namespace: default}\nspec:\n  ports: [{port: 80}]\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  \
             namespace: default\n  annotations:\n    nginx.ingress.kubernetes.io/auth-url: \
             http://authelia.default.svc.cluster.local/api/verify\n    \
             nginx.ingress.kubernetes.io/auth-signin: https://auth.example.com/\n    \
             nginx.ingress.kubernetes.io/auth-response-headers: Remote-User\nspec:\n  \
             ingressClassName: xdp-ingress\n  rules:\n  - host: app.test\n    http:\n      \
             paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: \
             {number: 80}}}}\n";
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let e = explain(&s, &q("app.test", "/"));
        let shown = serde_json::to_string(&e).unwrap();
        for part in [
            "\"forward_auth\"",
            "\"url\":\"http://authelia.default.svc.cluster.local/api/verify\"",
            "\"signin\":\"https://auth.example.com/?rd=$pass_access_scheme://$http_host$escaped_request_uri\"",
            "\"response_headers\":[\"Remote-User\"]",
            "\"name\":\"authelia\"",
        ] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
    }

    #[test]
    fn explains_the_default_manifests_like_run_serves_them() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/source/default_manifests");
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        let e = explain(
            &s,
            &Query {
                https: true,
                ..q("secure.example.com", "/api/v1")
            },
        );
        assert_eq!(e.outcome, Outcome::Route);
        let r = e.route.as_ref().unwrap();
        assert_eq!(
            (r.ingress.name.as_str(), r.path.as_str(), r.path_type),
            ("secure", "/api", "Prefix")
        );
        assert_eq!(e.backends[0].service.name, "api");
        assert!(e.backends[0].affinity.is_some());
        assert!(!e.backends[0].endpoints.is_empty());
        assert_eq!(
            explain(&s, &q("secure.example.com", "/")).outcome,
            Outcome::Redirect
        );
        // The catch-all Ingress `default-backend` is the default server's root route.
        let e = explain(&s, &q("unknown.example.com", "/"));
        assert_eq!(e.outcome, Outcome::Route);
        assert_eq!(e.route.as_ref().unwrap().ingress.name, "default-backend");
        assert_eq!(e.backends[0].service.name, "web");
        assert!(load_snapshot(&dir.join("nope"), &TranslateConfig::default()).is_err());
    }

    /// An Ingress refused for its snippets leaves no route, and a refused endpoint address
    /// leaves one fewer endpoint: `explain` of that host says why in `diagnostics`.
    #[test]
    fn shows_why_an_ingress_or_endpoint_is_not_served() {
        let dir = std::env::temp_dir().join(format!("xi-explain-related-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ingress = |name: &str, host: &str, ann: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
                 namespace: default\n  annotations: {{{ann}}}\nspec:\n  ingressClassName: xdp-ingress\n  \
                 rules:\n  - host: {host:?}\n    http:\n      paths:\n      - {{path: /, \
                 pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        };
        let yaml = [
            ingress(
                "snip",
                "snip.test",
                "nginx.ingress.kubernetes.io/server-snippet: 'deny all;'",
            ),
            ingress("wild", "*.wild.test", ""),
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
             spec: {ports: [{name: http, port: 80, targetPort: 8080}]}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\n\
             addressType: IPv4\nports: [{name: http, port: 8080}]\n\
             endpoints: [{addresses: [10.0.0.7]}, {addresses: [127.0.0.1]}]\n"
                .to_string(),
        ]
        .concat();
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let objects = load_objects(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let s = translate(&objects, &TranslateConfig::default());
        let reasons = |e: &Explanation| -> Vec<(String, String)> {
            e.diagnostics
                .iter()
                .map(|d| (d.object.name.clone(), d.reason.clone()))
                .collect()
        };

        let mut e = explain(&s, &q("snip.test", "/"));
        assert_eq!(e.outcome, Outcome::NotFound, "{e:?}");
        add_related_diagnostics(&mut e, &s, &objects, "SNIP.test:80");
        let r = reasons(&e);
        assert!(r.iter().any(|(o, _)| o == "snip"), "{r:?}");
        assert!(!r.iter().any(|(o, _)| o == "wild"), "{r:?}");

        let mut e = explain(&s, &q("a.wild.test", "/"));
        assert_eq!(e.outcome, Outcome::Route, "{e:?}");
        assert_eq!(e.backends[0].endpoints.len(), 1, "127.0.0.1 is refused");
        add_related_diagnostics(&mut e, &s, &objects, "a.wild.test");
        let r = reasons(&e);
        assert!(
            r.contains(&("web-1".into(), "EndpointAddressRefused".into())),
            "{r:?}"
        );
        assert!(!r.iter().any(|(o, _)| o == "snip"), "{r:?}");
    }

    /// An HTTPRoute on a Gateway wildcard host: the route is found for a name two labels
    /// deep, and the diagnostics of the route (a backend that does not exist) are shown.
    #[test]
    fn explains_gateway_routes_and_their_diagnostics() {
        let dir = std::env::temp_dir().join(format!("xi-explain-gw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: "*.gw.test"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: missing, port: 80}]}]
"#;
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let objects = load_objects(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let s = translate(&objects, &TranslateConfig::default());
        let mut e = explain(&s, &q("a.b.gw.test", "/x"));
        // Its only backendRef does not resolve: the proxy answers 500.
        assert_eq!(e.outcome, Outcome::Respond, "{e:?}");
        add_related_diagnostics(&mut e, &s, &objects, "a.b.gw.test");
        assert!(
            e.diagnostics
                .iter()
                .any(|d| d.object.name == "r" && d.reason == "BackendNotFound"),
            "{:?}",
            e.diagnostics
        );
        let e = explain(&s, &q("gw.test", "/x"));
        assert_eq!(e.outcome, Outcome::NotFound, "{e:?}");
    }

    /// Redirecting HTTPRoute rules (no backendRefs: the CRD refuses them beside a
    /// RequestRedirect) are explained by what the client gets, status and `Location` as the
    /// proxy builds them (spec: `HTTPRequestRedirectFilter`), not as the 500 a rule without
    /// backends would get; a rule with only a header filter gets the spec's 500.
    #[test]
    fn explains_a_request_redirect_by_its_status_and_location() {
        let objects = Objects::from_objects(
            crate::source::files::parse_manifests(super::GATEWAY_REDIRECTS_FOR_TESTS).unwrap(),
        );
        let s = translate(&objects, &TranslateConfig::default());
        let e = explain(&s, &q("www.gw.test", "/old/a?x=1"));
        assert_eq!(
            (&e.outcome, e.status, e.redirect_to.as_deref()),
            (
                &Outcome::Redirect,
                Some(301),
                Some("https://www.gw.test/new/a?x=1")
            ),
            "{e:?}"
        );
        assert!(e.reason.contains("RequestRedirect"), "{}", e.reason);
        let e = explain(&s, &q("www.gw.test", "/moved"));
        assert_eq!(
            (&e.outcome, e.status, e.redirect_to.as_deref()),
            (&Outcome::Redirect, Some(302), Some("http://other.test/"))
        );
        let e = explain(&s, &q("www.gw.test", "/filtered"));
        assert_eq!((&e.outcome, e.status), (&Outcome::Respond, Some(500)));
        assert_eq!(e.reason, "no backendRefs");
    }

    /// Gateway listeners on 80 and 8080, with routes attached to each by `sectionName`.
    const TWO_PORTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: web, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-alt, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: alt}]
  hostnames: [p.gw.test]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /here}}}]
"#;

    fn two_ports(ports: crate::proxy::args::ListenerPorts) -> Snapshot {
        let objects =
            Objects::from_objects(crate::source::files::parse_manifests(TWO_PORTS).unwrap());
        let config = TranslateConfig {
            gateway_ports: ports.proxy_ports(),
            ..TranslateConfig::default()
        };
        translate(&objects, &config)
    }

    /// A Gateway whose listener names port 80 while the proxy's HTTP port is 8080: the
    /// listener is PortUnavailable, and a request on 8080 is explained as no Gateway
    /// listener serving that port (gateway-api.md, "A first Gateway").
    #[test]
    fn a_port_no_gateway_listener_serves_is_named() {
        let ports = crate::proxy::args::ListenerPorts {
            http_port: 8080,
            ..Default::default()
        };
        let objects = Objects::from_objects(
            crate::source::files::parse_manifests(
                r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp-ingress}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: xdp-ingress
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#,
            )
            .unwrap(),
        );
        let config = TranslateConfig {
            gateway_ports: ports.proxy_ports(),
            ..TranslateConfig::default()
        };
        let s = translate(&objects, &config);
        let e = explain(
            &s,
            &Query {
                port: Some(8080),
                ports,
                ..q("shop.example", "/")
            },
        );
        assert_eq!(e.outcome, Outcome::NotFound, "{e:?}");
        assert!(
            e.reason.contains("no Gateway listener serves port 8080"),
            "{}",
            e.reason
        );
    }

    /// The request's port picks the listener, as the proxy's sockets do: a route attached to
    /// the 8080 listener answers there (its redirect names that port, the spec's listener
    /// port), not on 80; a port nothing listens on is refused; a Host's port is the port.
    #[test]
    fn a_request_is_explained_on_the_port_it_arrives_on() {
        let ports = crate::proxy::args::ListenerPorts::default();
        let s = two_ports(ports);
        let on = |port: Option<u16>, host: &str| {
            explain(
                &s,
                &Query {
                    port,
                    ports,
                    ..q(host, "/x")
                },
            )
        };
        let e = on(Some(8080), "p.gw.test");
        assert_eq!(
            (&e.outcome, e.redirect_to.as_deref()),
            (&Outcome::Redirect, Some("http://p.gw.test:8080/here")),
            "{e:?}"
        );
        let e = on(None, "p.gw.test:8080");
        assert_eq!(e.outcome, Outcome::Redirect, "{e:?}");
        let e = on(None, "p.gw.test");
        assert_eq!(
            (&e.outcome, e.status),
            (&Outcome::NotFound, Some(404)),
            "{e:?}"
        );
        assert!(
            e.reason.contains("a route matches on port [8080]"),
            "{}",
            e.reason
        );
        let e = on(Some(9090), "p.gw.test");
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");
        assert!(
            e.reason.contains("nothing listens on port 9090"),
            "{}",
            e.reason
        );
        let e = explain(
            &s,
            &Query {
                port: Some(8080),
                https: true,
                ports,
                ..q("p.gw.test", "/")
            },
        );
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");
    }

    /// `run`'s port flags change the answer the same way in `explain`: with `--http-port
    /// 8080` the 8080 listener shares the proxy's HTTP port (and 80 is nobody's); with
    /// `--gateway-listener-ports` leaving 8080 out the listener is not served; the HTTPS
    /// redirect names `--https-port`, or `--redirect-https-port`.
    #[test]
    fn the_daemons_port_flags_change_the_answer() {
        use crate::proxy::args::ListenerPorts;
        let ports = ListenerPorts::at(8080, 443);
        let s = two_ports(ports);
        let e = explain(
            &s,
            &Query {
                ports,
                ..q("p.gw.test", "/")
            },
        );
        assert_eq!(e.outcome, Outcome::Redirect, "{e:?}");
        let e = explain(
            &s,
            &Query {
                ports,
                port: Some(80),
                ..q("p.gw.test", "/")
            },
        );
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");

        let ports = ListenerPorts {
            gateway_listener_ports: "9000-9999".parse().unwrap(),
            ..ListenerPorts::default()
        };
        let s = two_ports(ports);
        let e = explain(
            &s,
            &Query {
                ports,
                port: Some(8080),
                ..q("p.gw.test", "/")
            },
        );
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");

        let s = snap();
        let https_port = |ports: ListenerPorts| {
            explain(
                &s,
                &Query {
                    ports,
                    ..q("secure.example.com", "/x")
                },
            )
            .redirect_to
        };
        assert_eq!(
            https_port(ListenerPorts::at(80, 8443)).as_deref(),
            Some("https://secure.example.com:8443/x")
        );
        let ports = ListenerPorts {
            redirect_https_port: Some(443),
            ..ListenerPorts::at(80, 8443)
        };
        assert_eq!(
            https_port(ports).as_deref(),
            Some("https://secure.example.com/x")
        );
    }

    /// `--url` stands for `--host`, `--path` and `--https`, and `run`'s port flags parse.
    #[test]
    fn url_and_port_flags_parse() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: ExplainArgs,
        }
        let c = Cli::try_parse_from([
            "x",
            "--manifests",
            "/m",
            "--url",
            "https://a.test:8443/p?q=1",
            "--https-port",
            "8443",
            "--gateway-listener-ports",
            "2000-3000",
            "--gateway-address-pool",
            "10.0.0.0/30",
        ])
        .unwrap();
        assert_eq!(c.a.url.unwrap().port_u16(), Some(8443));
        assert_eq!(c.a.ports.https_port, 8443);
        assert_eq!(c.a.gateway_pool.gateway_address_pool.len(), 1);
        assert!(
            Cli::try_parse_from([
                "x",
                "--manifests",
                "/m",
                "--url",
                "http://a/",
                "--host",
                "b"
            ])
            .is_err()
        );
        assert_eq!(host_port("a.test:8080"), Some(8080));
        assert_eq!(host_port("[::1]"), None);
        assert_eq!(host_port("[::1]:81"), Some(81));
    }

    /// `explain` translates with the daemon's flags: `--disable-svc-external-name` (found
    /// missing by a review) refuses an ExternalName backend as `run` does (503,
    /// ExternalNameDisabled), and each translation flag of `run` parses on `explain` (one
    /// flattened definition, `TranslationArgs`).
    #[test]
    fn explain_takes_the_daemons_translation_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: ExplainArgs,
        }
        let yaml = r#"---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec: {type: ExternalName, externalName: api.example.com, ports: [{port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing, namespace: default}
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: ext, port: {number: 80}}}}
"#;
        let objects = Objects::from_objects(crate::source::files::parse_manifests(yaml).unwrap());
        let status = |flags: &[&str]| {
            let args = ["x", "--manifests", "/m", "--host", "a.test"];
            let c = Cli::try_parse_from(args.iter().chain(flags)).unwrap();
            let s = translate(&objects, &translate_config(&c.a));
            let e = explain(&s, &q("a.test", "/"));
            (e.status, e.reason)
        };
        assert_eq!(status(&[]).0, None, "proxied to the name");
        let (code, reason) = status(&["--disable-svc-external-name"]);
        assert_eq!(code, Some(503));
        assert!(reason.contains("ExternalNameDisabled"), "{reason}");
        let c = Cli::try_parse_from([
            "x",
            "--manifests",
            "/m",
            "--ingress-class",
            "c",
            "--controller-name",
            "example.com/c",
            "--watch-ingress-without-class",
            "--nginx-compatible-class",
            "c",
            "--allow-node-local-endpoints",
            "--configmap",
            "ns/cm",
            "--serve-ingresses-with-snippets",
            "--disable-catch-all",
            "--enable-ssl-passthrough",
            "--disable-svc-external-name",
            "--default-backend-service",
            "ns/fallback",
            "--host",
            "a.test",
        ])
        .unwrap();
        let config = translate_config(&c.a);
        assert!(config.disable_svc_external_name && config.disable_catch_all);
        assert_eq!(
            config.default_backend_service,
            Some(crate::store::Key::new("ns", "fallback"))
        );
        assert!(config.enable_ssl_passthrough && config.watch_without_class);
        assert_eq!(config.ingress_class, "c");
    }

    /// A request for a host whose HTTPRoute names a Gateway that does not exist, or a
    /// Gateway whose class does not: no route, and the typo is on the explain output.
    #[test]
    fn a_route_to_a_missing_gateway_or_class_is_explained() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: xpd
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: a, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.test]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b, namespace: default}
spec:
  parentRefs: [{name: gw-typo}]
  hostnames: [b.test]
"#;
        let objects = Objects::from_objects(crate::source::files::parse_manifests(yaml).unwrap());
        let s = translate(&objects, &TranslateConfig::default());
        let reasons = |host: &str| {
            let mut e = explain(&s, &q(host, "/"));
            assert_eq!(e.outcome, Outcome::NotFound, "{e:?}");
            add_related_diagnostics(&mut e, &s, &objects, host);
            (e.diagnostics.iter())
                .map(|d| d.reason.clone())
                .collect::<Vec<_>>()
        };
        assert!(reasons("a.test").contains(&"GatewayClassNotFound".into()));
        assert!(reasons("b.test").contains(&"ParentNotFound".into()));
    }

    /// A GRPCRoute: the call's `/service/method` finds its rule; the rule's filters, timeouts
    /// and mirror and the route's parent status are shown, and the backend is spoken to in
    /// gRPC.
    #[test]
    fn explains_grpc_route_filters_and_parent_status() {
        let dir = std::env::temp_dir().join(format!("xi-explain-grpc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {ports: [{port: 9000}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: xdp
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.test]
  rules:
  - matches: [{method: {service: pkg.Echo, method: Say}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-env, value: prod}]}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: echo, port: 9000}}}
    backendRefs: [{name: echo, port: 9000}]
"#;
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let objects = load_objects(&dir).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let s = translate(&objects, &TranslateConfig::default());
        let mut call = q("grpc.test", "/pkg.Echo/Say");
        call.method = "POST".into();
        let e = explain(&s, &call);
        assert_eq!(e.outcome, Outcome::Route, "{e:?}");
        let route = e.route.as_ref().unwrap();
        assert_eq!(route.ingress.kind, ObjectKind::GRPCRoute);
        assert_eq!(e.backends[0].protocol, BackendProtocol::Grpc);
        let g = e.gateway.as_ref().expect("gateway route info");
        assert_eq!(
            g.rule.request_headers.set,
            [("x-env".into(), "prod".into())]
        );
        assert_eq!(g.rule.mirrors.len(), 1);
        assert_eq!(g.parents[0].parent_ref.name, "gw");
        assert!(g.parents[0].conditions.iter().all(|c| c.status), "{g:?}");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json["gateway"]["rule"]["mirrors"][0]["upstream"],
            "default/echo:9000:Grpc"
        );
        let e = explain(&s, &q("grpc.test", "/pkg.Echo/Other"));
        assert_eq!(e.outcome, Outcome::NotFound, "{e:?}");
        assert_eq!(e.status, Some(404), "{e:?}");
        // As a gRPC call: the Gateway API's rejection, grpc-status 12 in an HTTP 200.
        let mut call = q("grpc.test", "/pkg.Echo/Other");
        call.method = "POST".into();
        call.headers = vec![("content-type".into(), "application/grpc".into())];
        let e = explain(&s, &call);
        assert_eq!(
            (&e.outcome, e.status),
            (&Outcome::NotFound, Some(200)),
            "{e:?}"
        );
        assert!(e.reason.contains("grpc-status 12"), "{e:?}");
    }

    /// `proxy-next-upstream*` and `service-upstream` as the route and backend carry them.
    #[test]
    fn shows_next_upstream_and_service_upstream() {
        let dir = std::env::temp_dir().join(format!("xi-explain-ups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = r#"---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/service-upstream: "true"
    nginx.ingress.kubernetes.io/proxy-next-upstream: "error http_503"
    nginx.ingress.kubernetes.io/proxy-next-upstream-tries: "2"
    nginx.ingress.kubernetes.io/proxy-next-upstream-timeout: "5"
    nginx.ingress.kubernetes.io/limit-rps: "3"
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let s = load_snapshot(&dir, &TranslateConfig::default());
        std::fs::remove_dir_all(&dir).unwrap();
        let e = explain(&s.unwrap(), &q("a.test", "/"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["next_upstream"]["when"], "error http_503");
        assert_eq!(json["rate_limit"]["rps"], 3);
        assert_eq!(json["rate_limit"]["burst_multiplier"], 5);
        assert_eq!(json["rate_limit"]["zone"], "default/ing");
        assert_eq!(json["next_upstream"]["tries"], 2);
        assert_eq!(json["next_upstream"]["timeout_secs"], 5.0);
        assert_eq!(json["backends"][0]["service_upstream"], true);
        assert_eq!(
            json["backends"][0]["endpoints"][0]["address"],
            "10.96.0.10:80"
        );
        // Without annotations: nginx's default, tries from the flag.
        let e = explain(&snap(), &q("foo.example.com", "/api"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["next_upstream"]["when"], "error timeout");
        assert_eq!(json["next_upstream"]["tries"], serde_json::Value::Null);
        assert_eq!(json["backends"][0]["service_upstream"], false);
    }

    /// The global per-client limit shows next to the route's limits: from the `run` flags,
    /// the ConfigMap's keys winning; also for a request no route takes. With it the route's
    /// `satisfy` and `limit-rate` / `limit-rate-after` (KB as nginx's `k`: 1024 bytes).
    #[test]
    fn shows_the_global_limit_satisfy_and_the_response_rate() {
        let dir = std::env::temp_dir().join(format!("xi-explain-glim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ingress = r#"---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/limit-rps: "3"
    nginx.ingress.kubernetes.io/satisfy: "any"
    nginx.ingress.kubernetes.io/whitelist-source-range: "10.0.0.0/8"
    nginx.ingress.kubernetes.io/limit-rate: "256"
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
        std::fs::write(dir.join("all.yaml"), ingress).unwrap();
        let flags = GlobalLimitFlags {
            global_limit_rps: Some(50),
            global_limit_allowlist: vec![crate::proxy::args::parse_cidr("10.1.0.0/16").unwrap()],
            ..GlobalLimitFlags::default()
        };
        let ask = |host: &str| Query {
            global_limit: flags.clone(),
            ..q(host, "/")
        };
        let s = load_snapshot(&dir, &TranslateConfig::default()).unwrap();
        let json = serde_json::to_value(explain(&s, &ask("a.test"))).unwrap();
        assert_eq!(json["rate_limit"]["rps"], 3);
        assert_eq!(json["global_limit"]["rps"], 50);
        assert_eq!(json["global_limit"]["burst_multiplier"], 5);
        assert_eq!(json["global_limit"]["zone"], "*global");
        assert_eq!(json["global_limit"]["exempt"][0]["len"], 16);
        assert_eq!(json["satisfy"], "any");
        assert_eq!(json["response_rate"]["bytes_per_second"], 256 * 1024);
        assert_eq!(json["response_rate"]["after_bytes"], 0);
        // Counted for a request no route takes too.
        let json = serde_json::to_value(explain(&s, &ask("other.test"))).unwrap();
        assert_eq!(json["outcome"], "not-found");
        assert_eq!(json["global_limit"]["rps"], 50);
        // No flags: none.
        let json = serde_json::to_value(explain(&s, &q("a.test", "/"))).unwrap();
        assert!(json.get("global_limit").is_none(), "{json}");
        // The ConfigMap's keys win over the flags; its limit-rate-after is every route's default.
        let cm = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\n\
                  data: {global-limit-rps: \"7\", global-limit-burst-multiplier: \"2\", \
                  limit-rate-after: \"64\"}\n";
        std::fs::write(dir.join("cm.yaml"), cm).unwrap();
        let config = TranslateConfig {
            configmap: Some(crate::source::args::parse_key("ns/cfg").unwrap()),
            ..TranslateConfig::default()
        };
        let s = load_snapshot(&dir, &config).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let json = serde_json::to_value(explain(&s, &ask("a.test"))).unwrap();
        assert_eq!(json["global_limit"]["rps"], 7);
        assert_eq!(json["global_limit"]["burst_multiplier"], 2);
        assert_eq!(json["response_rate"]["after_bytes"], 64 * 1024);
    }

    /// A ConfigMap key and an annotation that are read and ignored are said so in explain
    /// (an Info with the support row's note), not passed over in silence.
    #[test]
    fn keys_read_and_ignored_are_said_so() {
        let yaml = r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: ns}
data: {disable-stream-access-log: "true"}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/auth-url: "http://auth.example.com/check"
    nginx.ingress.kubernetes.io/auth-keepalive-share-vars: "true"
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
        let objects = Objects::from_objects(crate::source::files::parse_manifests(yaml).unwrap());
        let key = crate::source::args::parse_key("ns/cfg").unwrap();
        let config = TranslateConfig {
            configmap: Some(key.clone()),
            ..TranslateConfig::default()
        };
        let s = translate(&objects, &config);
        let mut e = explain(&s, &q("a.test", "/"));
        add_controller_configmap_diagnostics(&mut e, &s, Some(&key));
        let said: Vec<_> = (e.diagnostics.iter())
            .filter(|d| d.reason == crate::model::translate::support::READ_AND_IGNORED)
            .map(|d| (d.severity, d.message.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                (
                    crate::model::Severity::Info,
                    "annotation auth-keepalive-share-vars: accepted, not used: the auth request \
                     shares no variables, only headers"
                ),
                (
                    crate::model::Severity::Info,
                    "key disable-stream-access-log: read and ignored (no stream proxy here: \
                     TCP/UDP Services are served by the XDP path, which writes no access log)"
                ),
            ],
            "{:?}",
            e.diagnostics
        );
    }

    /// The route's source ranges in the proxy's order, checked against `--client`: a deny
    /// line before the allowlist, 403 unless `satisfy any` leaves it to credentials; a request
    /// no route takes is checked against `block-cidrs` (found by a fresh-user trial: explain
    /// showed no source ranges at all).
    #[test]
    fn shows_source_ranges_and_checks_the_client() {
        let dir = std::env::temp_dir().join(format!("xi-explain-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = r#"---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: ns}
data: {block-cidrs: "192.0.2.0/24"}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/denylist-source-range: "10.1.0.0/16"
    nginx.ingress.kubernetes.io/allowlist-source-range: "10.0.0.0/8"
spec:
  ingressClassName: xdp-ingress
  rules:
  - host: a.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: open.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
        std::fs::write(dir.join("all.yaml"), yaml).unwrap();
        let config = TranslateConfig {
            configmap: Some(crate::source::args::parse_key("ns/cfg").unwrap()),
            ..TranslateConfig::default()
        };
        let s = load_snapshot(&dir, &config).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let ask = |host: &str, client: Option<&str>| {
            let q = Query {
                client: client.map(|c| c.parse().unwrap()),
                ..q(host, "/")
            };
            serde_json::to_value(explain(&s, &q)).unwrap()
        };
        let json = ask("a.test", None);
        assert_eq!(json["outcome"], "route");
        assert_eq!(
            json["source_ranges"]["deny"],
            serde_json::json!(["10.1.0.0/16"])
        );
        assert_eq!(
            json["source_ranges"]["allow"],
            serde_json::json!(["10.0.0.0/8"])
        );
        assert!(json["source_ranges"].get("client").is_none(), "{json}");
        for (client, verdict, status) in [
            ("10.1.2.3", "denied", Some(403u64)),
            ("10.2.0.1", "allowed", None),
            ("198.51.100.1", "not-allowed", Some(403)),
        ] {
            let json = ask("a.test", Some(client));
            assert_eq!(json["source_ranges"]["client"], verdict, "{client}");
            assert_eq!(json["status"].as_u64(), status, "{client}");
        }
        assert_eq!(
            ask("a.test", Some("10.1.2.3"))["reason"],
            crate::proxy::SOURCE_BLOCKED
        );
        // The same Ingress's other host has both lists too; block-cidrs reach only routes
        // without lists, and every request no route takes.
        let json = ask("nowhere.test", Some("192.0.2.7"));
        assert_eq!(json["status"], 403, "{json}");
        assert_eq!(
            json["source_ranges"]["deny"],
            serde_json::json!(["192.0.2.0/24"])
        );
        let json = ask("nowhere.test", Some("198.51.100.1"));
        assert_eq!(json["status"], 404, "{json}");
        assert_eq!(json["source_ranges"]["client"], "declined");
    }

    #[test]
    fn header_flag_parses() {
        assert_eq!(
            parse_header("X-Canary: always").unwrap(),
            ("X-Canary".into(), "always".into())
        );
        assert!(parse_header("nocolon").is_err());
    }

    /// The L4 kinds: a TLSRoute on a passthrough listener explains an HTTPS connection to its
    /// host (its parents, its backends); a passthrough listener's name without a route is
    /// closed; a TCPRoute's and a UDPRoute's listeners explain connections to their ports
    /// (the XDP service the listener became, its endpoints, the route's parents).
    #[test]
    fn explains_tls_tcp_and_udp_routes() {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: xdp}
spec: {controllerName: xdp-ingress.dev/controller}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {ports: [{port: 5432}, {name: dns, port: 53, protocol: UDP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-1, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{port: 5432}, {name: dns, port: 53, protocol: UDP}]
endpoints: [{addresses: [10.0.0.7], conditions: {ready: true}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: xdp
  listeners:
  - {name: tls, port: 443, protocol: TLS, hostname: "*.pass.test", tls: {mode: Passthrough}}
  - {name: pg, port: 5432, protocol: TCP}
  - {name: dns, port: 5353, protocol: UDP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: secure, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
  hostnames: [db.pass.test]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: pg, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: pg}]
  rules: [{backendRefs: [{name: db, port: 5432}, {name: gone, port: 5432, weight: 3}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: UDPRoute
metadata: {name: dns, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: dns}]
  rules: [{backendRefs: [{name: db, port: 53}]}]
"#;
        let objects = Objects::from_objects(crate::source::files::parse_manifests(yaml).unwrap());
        let s = translate(&objects, &TranslateConfig::default());
        let https = |host: &str| Query {
            https: true,
            ..q(host, "/")
        };
        let e = explain(&s, &https("db.pass.test:443"));
        assert_eq!(e.outcome, Outcome::Passthrough, "{e:?}");
        let l4 = e.l4.as_ref().expect("the TLSRoute");
        assert_eq!(
            l4.route,
            ObjectRef::new(ObjectKind::TLSRoute, "default", "secure")
        );
        assert_eq!(l4.parents[0].conditions[0].reason, "Accepted");
        assert_eq!(e.backends.len(), 1);
        assert!(e.reason.contains("\"db.pass.test\""), "{}", e.reason);
        let e = explain(&s, &https("other.pass.test"));
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");

        // A TLS port of its own (8443): its own table, passthrough and Terminate listeners
        // side by side; the HTTPS port's table does not answer for it.
        let (crt, key) = crate::model::translate::fixtures::mk_cert_pem(&["t.other.test"]);
        let mut objects = crate::source::files::parse_manifests(&format!(
            r#"{yaml}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: other, namespace: default}}
spec:
  gatewayClassName: xdp
  listeners:
  - {{name: pass, port: 8443, protocol: TLS, hostname: p.other.test, tls: {{mode: Passthrough}}}}
  - {{name: term, port: 8443, protocol: TLS, hostname: t.other.test, tls: {{certificateRefs: [{{name: t-tls}}]}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: p, namespace: default}}
spec:
  parentRefs: [{{name: other, sectionName: pass}}]
  hostnames: [p.other.test]
  rules: [{{backendRefs: [{{name: db, port: 5432}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: t, namespace: default}}
spec:
  parentRefs: [{{name: other, sectionName: term}}]
  hostnames: [t.other.test]
  rules: [{{backendRefs: [{{name: db, port: 5432}}]}}]
"#
        ))
        .unwrap();
        objects.push(crate::store::Object::Secret(Arc::new(
            crate::model::translate::fixtures::mk_tls_secret("default", "t-tls", &crt, &key),
        )));
        let s = translate(&Objects::from_objects(objects), &TranslateConfig::default());
        let e = explain(&s, &https("p.other.test:8443"));
        assert_eq!(e.outcome, Outcome::Passthrough, "{e:?}");
        assert!(e.reason.contains("untouched"), "{}", e.reason);
        let e = explain(&s, &https("t.other.test:8443"));
        assert_eq!(e.outcome, Outcome::Passthrough, "{e:?}");
        assert!(e.reason.contains("terminated here"), "{}", e.reason);
        assert_eq!(e.l4.as_ref().map(|l| l.route.name.as_str()), Some("t"));
        // The same name on the HTTPS port is not passed.
        let e = explain(&s, &https("p.other.test:443"));
        assert_ne!(e.outcome, Outcome::Passthrough, "{e:?}");
        // Another name, or plain HTTP, on the TLS-only port: closed.
        let e = explain(&s, &https("nope.other.test:8443"));
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");
        assert!(e.reason.contains("closed"), "{}", e.reason);
        let e = explain(&s, &q("p.other.test:8443", "/"));
        assert_eq!(e.outcome, Outcome::Refused, "{e:?}");
        assert!(e.reason.contains("not TLS"), "{}", e.reason);

        let e = explain_l4(&s, crate::model::L4Protocol::Tcp, None, 5432);
        assert_eq!(e.outcome, Outcome::L4Service, "{e:?}");
        let l4 = e.l4.as_ref().expect("the TCPRoute");
        assert_eq!(
            l4.route,
            ObjectRef::new(ObjectKind::TCPRoute, "default", "pg")
        );
        assert_eq!(l4.xdp_service.as_deref(), Some("gateway/default/gw:pg"));
        assert_eq!(l4.endpoints.len(), 1, "{:?}", l4.endpoints);
        assert!(
            l4.endpoints[0].starts_with("10.0.0.7:5432"),
            "{:?}",
            l4.endpoints
        );
        assert_eq!(l4.parents[0].conditions[0].reason, "Accepted");
        // The missing Service's weight (3 of 4) is refused, not given to `db`.
        let refused = l4.refused_percent.expect("a refused share");
        assert!((refused - 75.0).abs() < 0.01, "{refused}");
        let e = explain_l4(&s, crate::model::L4Protocol::Udp, None, 5353);
        let l4 = e.l4.as_ref().expect("the UDPRoute");
        assert_eq!(l4.refused_percent, None);
        assert_eq!(
            l4.route,
            ObjectRef::new(ObjectKind::UDPRoute, "default", "dns")
        );
        assert_eq!(l4.xdp_service.as_deref(), Some("gateway/default/gw:dns"));
        // Another transport, or a port nothing takes.
        assert_eq!(
            explain_l4(&s, crate::model::L4Protocol::Udp, None, 5432).outcome,
            Outcome::NotFound
        );
        assert_eq!(
            explain_l4(&s, crate::model::L4Protocol::Tcp, None, 6000).outcome,
            Outcome::NotFound
        );
    }
}
