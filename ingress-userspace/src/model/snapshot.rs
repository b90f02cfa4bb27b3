//! The immutable routing snapshot: the one contract between translation (`model::translate`)
//! and the two dataplanes (`proxy/` for L7, `dataplane/` for the XDP maps).
//!
//! A snapshot is built whole from the store, never patched, and shared as `Arc<Snapshot>`.
//! Both planes report the `version` they run. Types here hold plain data only: no sockets, no
//! parsed TLS keys, no map handles; each plane derives its own runtime state from them.
//!
//! Room to grow without a rewrite: routes carry a general [`RouteMatch`] (headers, method, query
//! for HTTPRoute) and a list of weighted backends (canary, traffic splits); per-route behaviour
//! that annotations configure lives in [`RoutePolicy`], which later issues extend with fields
//! that default to "off".

use crate::compact::intern::Name;
use crate::model::nginx_var::NginxString;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

pub use crate::object::{Diagnostic, ObjectKind, ObjectRef, Severity};

/// Everything both planes serve, at one version.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Increases by one per translation; both planes report the version they run.
    pub version: u64,
    pub l7: L7Config,
    /// L4 services the XDP path takes over, sorted by id.
    pub l4: Vec<L4Service>,
    /// Sorted by object.
    pub diagnostics: Vec<Diagnostic>,
    /// Ingresses of this controller's class (for status and `explain`), sorted. Shared: a
    /// change that keeps the set (most) copies no ref of the 10k.
    pub owned_ingresses: Arc<Vec<ObjectRef>>,
    /// `--node-name` of this daemon: endpoints whose `node_name` equals it are local (the
    /// local proxy of a `local_proxy` service).
    pub local_node: Option<String>,
    /// What the leader writes to `status.loadBalancer.ingress` of owned Ingresses: IPs (or
    /// host names) from `--publish-address`, else the ExternalIP (else InternalIP) of the nodes
    /// running the ingress. Sorted.
    pub status_addresses: Vec<String>,
    /// Annotations of owned Ingresses that nothing acts on (without prefix; snippets, not yet
    /// implemented, refused, unknown) -> how many Ingresses carry each (the
    /// `xdp_ingress_control_unsupported_annotations` gauge).
    pub unsupported_annotations: BTreeMap<String, u64>,
    /// Status of the Gateway API objects that are ours (GatewayClasses of our controller,
    /// their Gateways, the HTTPRoutes that name them).
    pub gateway_status: Arc<crate::model::GatewayApiStatus>,
}

impl Snapshot {
    /// This snapshot as the L4 path should see it while this node's proxy drains: endpoints of
    /// the ingress's own Service on `local_node` are terminating, so new connections go to the
    /// proxies of other nodes while open ones finish here.
    pub fn with_local_proxy_draining(&self) -> Snapshot {
        let mut s = self.clone();
        let Some(node) = self.local_node.as_deref() else {
            return s;
        };
        for svc in s.l4.iter_mut().filter(|svc| svc.local_proxy) {
            for ep in svc
                .endpoints
                .iter_mut()
                .filter(|ep| ep.node_name.as_deref() == Some(node))
            {
                ep.state = EndpointState::Terminating;
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints, shared by both planes.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum EndpointState {
    /// Ready and serving: takes new flows and requests.
    Active,
    /// Serving but terminating: keeps existing flows; takes new ones only when no endpoint is
    /// active (KEP-1669).
    Terminating,
}

/// An endpoint's address and port: a `SocketAddr` without the IPv6 flow label and scope id
/// (never set on an endpoint), 20 bytes where `SocketAddr` is 32, so that an upstream's
/// endpoints take a size class less (five: 320 bytes, not 360 in a 384-byte block; issue 13).
/// Ordered as the `SocketAddr` it stands for (IPv4 first, then by address, then port), written
/// and serialized as it (`10.0.0.1:8080`, `[2001:db8::1]:8080`); [`Self::socket`] gives it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointAddr {
    ip: IpAddr,
    port: u16,
}

impl EndpointAddr {
    /// `ip`, port `port`.
    pub const fn new(ip: IpAddr, port: u16) -> EndpointAddr {
        EndpointAddr { ip, port }
    }
    /// The endpoint's IP address.
    pub const fn ip(&self) -> IpAddr {
        self.ip
    }
    /// The endpoint's port.
    pub const fn port(&self) -> u16 {
        self.port
    }
    /// True for an IPv4 endpoint.
    pub const fn is_ipv4(&self) -> bool {
        self.ip.is_ipv4()
    }
    /// True for an IPv6 endpoint.
    pub const fn is_ipv6(&self) -> bool {
        self.ip.is_ipv6()
    }
    /// The `SocketAddr` to connect to.
    pub const fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl From<SocketAddr> for EndpointAddr {
    fn from(a: SocketAddr) -> EndpointAddr {
        EndpointAddr::new(a.ip(), a.port())
    }
}

impl From<EndpointAddr> for SocketAddr {
    fn from(a: EndpointAddr) -> SocketAddr {
        a.socket()
    }
}

impl std::str::FromStr for EndpointAddr {
    type Err = std::net::AddrParseError;
    /// As `SocketAddr` reads it.
    fn from_str(s: &str) -> Result<EndpointAddr, Self::Err> {
        s.parse::<SocketAddr>().map(EndpointAddr::from)
    }
}

impl std::fmt::Debug for EndpointAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.socket(), f)
    }
}

impl std::fmt::Display for EndpointAddr {
    /// As `SocketAddr` writes it: `10.0.0.1:8080`, `[2001:db8::1]:8080`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.socket(), f)
    }
}

impl serde::Serialize for EndpointAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.socket().serialize(s)
    }
}

/// One address:port that traffic can go to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Endpoint {
    pub addr: EndpointAddr,
    pub state: EndpointState,
    /// Relative weight for load balancing; 1 unless something says otherwise.
    pub weight: u32,
    /// `nodeName` of the endpoint, kept for locality decisions (shared with the store's
    /// slice, as are `zone` and `target`).
    pub node_name: Option<Name>,
    pub zone: Option<Name>,
    /// `targetRef` of the endpoint (usually the Pod) as `namespace/name`, for cookie affinity
    /// and diagnostics.
    pub target: Option<Arc<str>>,
}

// ---------------------------------------------------------------------------------------------
// L4: what the XDP program steers.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum L4Protocol {
    Tcp,
    Udp,
}

/// Where an L4 service is reached on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Frontend {
    /// Any local address, this port (a NodePort).
    NodePort(u16),
    /// One external/LoadBalancer address and port.
    Address(SocketAddr),
}

/// An IP prefix (`loadBalancerSourceRanges`, allowlists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::fmt::Display for IpPrefix {
    /// CIDR notation, `198.18.0.0/15` or `2001:db8::/32`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One port of one Service, as the XDP path serves it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct L4Service {
    /// `namespace/name:port-name-or-number`; stable across snapshots, used to diff map state.
    pub id: String,
    pub service: ObjectRef,
    pub protocol: L4Protocol,
    pub frontends: Vec<Frontend>,
    /// Sorted; the Maglev table is built from this order-independent set.
    pub endpoints: Vec<Endpoint>,
    /// `sessionAffinity: ClientIP` timeout; `None` without affinity.
    pub client_ip_affinity: Option<Duration>,
    /// Empty means everyone may connect.
    pub source_ranges: Vec<IpPrefix>,
    /// The ingress's own Service: backends are node proxies, local one preferred.
    pub local_proxy: bool,
    /// `externalTrafficPolicy: Local`: new flows go to this node's endpoints only, without
    /// SNAT (the pod sees the client's address); a node without one drops them, as
    /// kube-proxy does (its health check node port then says 503 so balancers move on).
    pub external_traffic_local: bool,
    /// `spec.healthCheckNodePort` of an `externalTrafficPolicy: Local` Service, with this
    /// node's share of it; `None` for `Cluster` or when no port is set.
    pub health_check: Option<HealthCheck>,
    /// Per-source new-connection limit enforced in XDP (`xdp-ingress.dev/syn-rate-limit`, or
    /// `--syn-rate-limit-per-source` for the ingress's own Service); `None`: unlimited.
    pub syn_rate_limit: Option<SynRateLimit>,
    /// Maglev weight, on the endpoints' scale, of new flows refused as if the service had no
    /// endpoints: a Gateway API TCPRoute/UDPRoute's backendRefs that do not resolve or have no
    /// endpoints keep their share, refused (spec: "if an invalid backend is requested to have
    /// 80% of connections, then 80% of connections must be rejected"). 0 for Services.
    pub reject_weight: u32,
}

/// A per-source new-connection (TCP SYN) rate limit, as a token bucket of `burst` SYNs filled
/// at `per_second`; a source is an IPv4 address or an IPv6 /64. SYNs beyond it are dropped at
/// the NIC (`drop_syn_rate_limit`); the client's TCP retransmits them after its RTO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SynRateLimit {
    /// New connections per second per source, 1 to 1000000.
    pub per_second: u32,
    /// New connections a source may open at once, 1 to 1000000.
    pub burst: u32,
}

/// What kube-proxy's health check node port answers for one Service on this node
/// (pkg/proxy/healthcheck/service_health.go): 200 with at least one local endpoint, else 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HealthCheck {
    /// `spec.healthCheckNodePort` (TCP, HTTP, every node address).
    pub node_port: u16,
    /// Ready (not terminating) endpoints of this Service port on this node: `nodeName` equal to
    /// `--node-name`, or either unknown (the XDP path then counts it local too).
    pub local_endpoints: u32,
}

// ---------------------------------------------------------------------------------------------
// L7: what the proxy routes.

/// A snapshot's map by name (hosts, certificates), persistent: a copy of the snapshot shares
/// it in O(1) and a change copies only the path to its key, where a `BTreeMap` copied every
/// `String` key (10k at 10k hosts) on each event's fast path. Iterates in key order, as a
/// `BTreeMap`.
pub type NameMap<V> = imbl::OrdMap<String, Arc<V>>;

#[derive(Clone, Debug, Default)]
pub struct L7Config {
    /// Virtual hosts keyed by exact host name (lower case).
    pub hosts: NameMap<VirtualHost>,
    /// Virtual hosts keyed by the suffix of a `*.` wildcard (`*.example.com` -> `example.com`).
    pub wildcard_hosts: NameMap<VirtualHost>,
    /// Gateway API virtual hosts of `*.` wildcard hostnames, keyed by the suffix: unlike an
    /// Ingress wildcard (exactly one label), a Gateway wildcard matches one or more labels
    /// (`*.example.com` takes `a.b.example.com`). Tried after exact hosts and Ingress
    /// wildcards of the same suffix, longest suffix first.
    pub gateway_wildcard_hosts: NameMap<VirtualHost>,
    /// Rules without a host, tried when no named host matched: ingress-nginx's default server
    /// `_`, whose last route is the catch-all Ingress's backend when there is one.
    pub any_host: Option<Arc<VirtualHost>>,
    /// The controller's default backend (ingress-nginx's `upstream-default-backend`):
    /// `--default-backend-service`, when it has ready endpoints. It answers what no route
    /// takes (a host's unmatched paths, hosts no rule names without a catch-all Ingress),
    /// the root locations ([`RouteAction::DefaultBackend`]) and `custom-http-errors` of
    /// routes without a `default-backend` annotation. `None`: the built-in 404.
    pub default_backend: Option<Arc<Upstream>>,
    /// Certificates by SNI name (exact and `*.` wildcards): the Ingress hosts, `server-alias`
    /// and `from-to-www-redirect` names translation configures with one
    /// (`model::translate::server_cert`), and the exact hostnames of HTTPS Gateway listeners. An Ingress wildcard covers exactly
    /// one label, as ingress-nginx's certificate lookup (`certificate.lua`
    /// `get_pem_cert_uid`: the first label replaced by `*`) and the Ingress host rules do.
    pub certificates: NameMap<TlsCertificate>,
    /// Certificates of HTTPS Gateway listeners with a `*.` wildcard hostname, by its suffix:
    /// one or more labels (Gateway API v1 `Listener.hostname`), tried after exact names and
    /// Ingress wildcards, longest suffix first ([`crate::proxy::tls`]).
    pub gateway_wildcard_certificates: BTreeMap<String, Arc<TlsCertificate>>,
    /// Certificate for handshakes that match no name (`None`: the proxy generates one).
    pub default_certificate: Option<Arc<TlsCertificate>>,
    /// Controller-wide settings (the ingress-nginx controller ConfigMap).
    pub settings: ProxySettings,
    /// `ssl-passthrough` hosts (exact SNI name, lower case) -> where a TLS connection naming
    /// it is passed, untouched. Empty unless `--enable-ssl-passthrough`.
    pub passthrough: BTreeMap<String, Passthrough>,
    /// Gateway API TLS passthrough on the HTTPS port (TLSRoutes on `TLS` listeners with
    /// `tls.mode: Passthrough`): SNI pattern (exact or `*.` wildcard of one or more labels,
    /// lower case) -> what a connection naming it gets. Empty unless such a listener is
    /// served. `passthrough` hosts are tried first (`proxy::sni`).
    pub gateway_sni: BTreeMap<String, SniAction>,
    /// A name (or no SNI) [`Self::gateway_sni`] does not cover is closed on the HTTPS port
    /// rather than terminated: TLS passthrough listeners are served there and no HTTPS
    /// listener or catch-all Ingress rule (Gateway API: a connection no TLSRoute matches is
    /// rejected).
    pub gateway_sni_closes_unmatched: bool,
    /// Gateway API TLS passthrough on the other ports Gateway `TLS` listeners open
    /// ([`Self::gateway_listeners`]), for Gateways without addresses: port -> its table.
    pub gateway_sni_ports: BTreeMap<u16, SniPort>,
    /// Ports the proxy listens on for Gateway listeners besides its own HTTP and HTTPS
    /// ports, with their protocol. Translation decides them (accepted Gateway listeners
    /// inside `--gateway-listener-ports`); the proxy binds and closes them as snapshots
    /// change ([`crate::proxy::listener_set`]).
    pub gateway_listeners: BTreeMap<u16, ListenerProtocol>,
    /// HTTPS Gateway listeners by port (the proxy's own HTTPS port included), for the 421
    /// check: a request whose `Host` another listener of the port serves than the one its
    /// TLS handshake's SNI selected is misdirected. Empty without HTTPS Gateway listeners.
    pub gateway_https_hosts: BTreeMap<u16, Vec<String>>,
    /// The proxy's own ports (HTTP, HTTPS) that a served Gateway HTTP or HTTPS listener
    /// shares, routes or not: a miss there that no host takes is the Gateway's to answer
    /// ([`crate::proxy::grpc_reject`]).
    pub gateway_shared_ports: BTreeSet<u16>,
    /// What Gateways with addresses serve, by address: a connection whose local address is
    /// one of these sees only its Gateway's listeners (never Ingresses, the default backend,
    /// or Gateways without addresses). Empty without `--gateway-address-pool`.
    pub gateway_addresses: BTreeMap<std::net::IpAddr, GatewayAddress>,
    /// Client-certificate validation of HTTPS Gateway listeners (Gateway `spec.tls.frontend`)
    /// by port, then by the listener's hostname (lower case, `""`: a listener without one).
    /// Gateways with addresses keep theirs in [`GatewayAddress::client_validation`].
    pub gateway_client_validation: ClientValidationByPort,
}

/// [`L7Config::gateway_client_validation`]'s shape: port -> listener hostname -> policy.
pub type ClientValidationByPort = BTreeMap<u16, BTreeMap<String, Arc<FrontendValidation>>>;

/// How an HTTPS Gateway listener validates client certificates in the TLS handshake (Gateway
/// API v1.5+ `spec.tls.frontend`: `default`, or the `perPort` entry of the listener's port).
#[derive(Clone, PartialEq, Eq)]
pub struct FrontendValidation {
    /// The Gateway whose `spec.tls` says so.
    pub gateway: ObjectRef,
    /// The trust anchors: every certificate of the `caCertificateRefs` that resolved (DER).
    pub ca_der: Vec<Vec<u8>>,
    /// `mode: AllowInsecureFallback`: a certificate is asked for, but a missing or invalid
    /// one is let through (the backend decides). Else (`AllowValidOnly`, the default) the
    /// handshake fails without a certificate that chains to `ca_der`.
    pub insecure_fallback: bool,
}

impl std::fmt::Debug for FrontendValidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontendValidation")
            .field("gateway", &self.gateway)
            .field("ca_certificates", &self.ca_der.len())
            .field("insecure_fallback", &self.insecure_fallback)
            .finish()
    }
}

/// What the Gateway owning one address serves there ([`L7Config::gateway_addresses`]).
#[derive(Clone, Debug, Default)]
pub struct GatewayAddress {
    /// Its HTTP, HTTPS and TLS listeners' ports (the proxy's own HTTP and HTTPS ports for the
    /// Gateway's 80 and 443), with their protocol: on a specific `--listen-address` the proxy
    /// binds each of them on this address too (a wildcard listen address receives them).
    pub ports: BTreeMap<u16, ListenerProtocol>,
    /// Its HTTPS listeners' hostnames by port ([`L7Config::gateway_https_hosts`] there).
    pub https_hosts: BTreeMap<u16, Vec<String>>,
    /// Its HTTPS listeners' certificates by hostname (`""`: a listener without one), chosen
    /// before [`L7Config::certificates`] on this address.
    pub certificates: BTreeMap<String, Arc<TlsCertificate>>,
    /// Its TLS passthrough table ([`L7Config::gateway_sni`] there).
    pub sni: BTreeMap<String, SniAction>,
    /// [`L7Config::gateway_sni_closes_unmatched`] for [`Self::sni`].
    pub sni_closes_unmatched: bool,
    /// Its HTTPS listeners' client-certificate validation
    /// ([`L7Config::gateway_client_validation`] there).
    pub client_validation: ClientValidationByPort,
    /// Its TLS passthrough tables of other ports ([`L7Config::gateway_sni_ports`] there).
    pub sni_ports: BTreeMap<u16, SniPort>,
}

/// The TLS passthrough table of one Gateway port other than the proxy's HTTPS port.
#[derive(Clone, Debug, Default)]
pub struct SniPort {
    /// SNI pattern (as [`L7Config::gateway_sni`]) -> what a connection naming it gets.
    pub sni: BTreeMap<String, SniAction>,
    /// An HTTPS listener shares the port: a name no entry covers (or no SNI) is terminated
    /// there, as on the HTTPS port. Otherwise it is closed (Gateway API: a connection no
    /// TLSRoute matches is rejected; nothing on the port has a certificate to present).
    pub terminates: bool,
}

impl L7Config {
    /// The virtual hosts requests are routed by, Ingress and Gateway API alike: exact names,
    /// Ingress and Gateway wildcards, and the one for rules without a host (for logs).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
            + self.wildcard_hosts.len()
            + self.gateway_wildcard_hosts.len()
            + usize::from(self.any_host.is_some())
    }
}

/// What a TLS connection on the HTTPS port gets by its SNI, before termination.
#[derive(Clone, Debug)]
pub enum SniAction {
    /// Passed to one of `backends` (by weight): a TLSRoute's hostname. Untouched on a
    /// `tls.mode: Passthrough` listener; on a `Terminate` one (`terminate`) the TLS is
    /// terminated here with the listener's certificate and the plain bytes are passed.
    Pass {
        route: ObjectRef,
        backends: Vec<WeightedUpstream>,
        /// Summed weight of the backendRefs that do not resolve: that share of connections is
        /// closed (Gateway API `TLSRouteRule.backendRefs`: "rejections must respect weight").
        rejected_weight: u32,
        terminate: bool,
    },
    /// Closed: a passthrough listener's hostname that no TLSRoute serves (Gateway API).
    Close,
    /// Terminated here: a terminating listener's or a served host's name under a passthrough
    /// listener's wildcard.
    Terminate,
}

/// What a Gateway listener port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1 and h2c with prior knowledge.
    Http,
    /// TLS termination (ALPN `h2`, `http/1.1`), certificates by SNI as on the HTTPS port.
    Https,
    /// TLS passthrough only (`TLS` listeners with `tls.mode: Passthrough`, no HTTPS
    /// listener): the ClientHello's SNI picks the TLSRoute backend the connection is passed
    /// to ([`SniPort`]); nothing is terminated.
    TlsPassthrough,
}

/// Where the TLS connections of one `ssl-passthrough` host go (ingress-nginx's
/// `SSLPassthroughBackend`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passthrough {
    /// The Ingress that asked (the first, oldest, for the host).
    pub ingress: ObjectRef,
    /// The Service port of the host's `/` path; connections are balanced over its endpoints.
    pub upstream: Arc<Upstream>,
}

/// nginx's buffers for a request head (ngx_http_core_module `client_header_buffer_size`,
/// `large_client_header_buffers`), bytes: a head is read into the `client` buffer, then
/// into up to `large_count` buffers of `large_size` each; no line is split between two of
/// them. ingress-nginx's defaults (config.go `ClientHeaderBufferSize: "1k"`,
/// `LargeClientHeaderBuffers: "4 8k"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadBuffers {
    pub client: u64,
    pub large_count: u64,
    pub large_size: u64,
}

impl Default for HeadBuffers {
    fn default() -> Self {
        HeadBuffers {
            client: 1024,
            large_count: 4,
            large_size: 8192,
        }
    }
}

impl HeadBuffers {
    /// The most bytes every buffer together holds: no head nginx takes is longer.
    pub fn total(&self) -> u64 {
        self.client
            .saturating_add(self.large_count.saturating_mul(self.large_size))
    }
}

/// A syslog server (ConfigMap `syslog-host`, `syslog-port`): an IP address or a DNS name, and a
/// UDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogServer {
    pub host: String,
    pub port: u16,
}

/// Controller-wide proxy settings from the ingress-nginx controller ConfigMap
/// (`--configmap NS/NAME`, keys of the same names). `None`: the flag of the same name applies
/// (a ConfigMap key wins over a flag; annotations win over both where they exist).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// `Strict-Transport-Security` value set on every HTTPS response (`hsts`, `hsts-max-age`,
    /// `hsts-include-subdomains`, `hsts-preload`); `None`: no header.
    pub hsts: Option<String>,
    pub use_forwarded_headers: Option<bool>,
    pub enable_real_ip: Option<bool>,
    /// Header name, lower case.
    pub forwarded_for_header: Option<String>,
    pub compute_full_forwarded_for: Option<bool>,
    pub proxy_real_ip_cidr: Option<Vec<IpPrefix>>,
    /// Applies to connections accepted after the snapshot is live.
    pub use_proxy_protocol: Option<bool>,
    pub client_header_timeout: Option<Duration>,
    pub client_body_timeout: Option<Duration>,
    /// `proxy-protocol-header-timeout`: time to receive the PROXY header on the HTTPS port
    /// while it reads ClientHellos for ssl-passthrough (ingress-nginx's TLS proxy,
    /// `ReadHeaderTimeout`); `None`: its default 5 s
    /// ([`crate::proxy::settings::PROXY_PROTOCOL_HEADER_TIMEOUT`]).
    pub proxy_protocol_header_timeout: Option<Duration>,
    /// `keep-alive`: idle time of a client connection; zero turns keep-alive off (as
    /// `--keepalive-timeout 0`, see [`crate::proxy::limits::server_builder`]).
    pub keepalive_timeout: Option<Duration>,
    /// `client-header-buffer-size` and `large-client-header-buffers`: how much of a request
    /// head is taken, as nginx's `client_header_buffer_size` and `large_client_header_buffers`
    /// ([`crate::proxy::request_head`]). Default: ingress-nginx's `1k` and `4 8k`.
    pub head_buffers: HeadBuffers,
    /// `keep-alive-requests`: requests one client connection may carry, HTTP/1 and HTTP/2
    /// alike (nginx `keepalive_requests`, which covers HTTP/2 since 1.19.7); the last one is
    /// answered with `Connection: close` (HTTP/1) or followed by GOAWAY (HTTP/2). `None`:
    /// ingress-nginx's 1000 ([`crate::proxy::limits::KEEPALIVE_REQUESTS`]).
    pub keepalive_requests: Option<u64>,
    /// `upstream-keepalive-connections`: idle connections to pods each worker keeps over
    /// every endpoint, the least recently used closed past it (nginx's upstream `keepalive`);
    /// 0 turns reuse off. `None`: `--upstream-keepalive`.
    pub upstream_keepalive_connections: Option<u64>,
    /// `upstream-keepalive-timeout`: idle time after which a pooled connection to a pod is
    /// closed (nginx's upstream `keepalive_timeout`). `None`: `--upstream-keepalive-timeout`.
    pub upstream_keepalive_timeout: Option<Duration>,
    /// `upstream-keepalive-requests`: requests one connection to a pod may carry before it is
    /// closed instead of pooled (nginx's upstream `keepalive_requests`). `None`: 10000
    /// ([`crate::proxy::upstream::pool::UPSTREAM_KEEPALIVE_REQUESTS`]).
    pub upstream_keepalive_requests: Option<u64>,
    /// `upstream-keepalive-time`: age after which a connection to a pod takes no new request
    /// (closed after the one in progress; nginx's upstream `keepalive_time`). `None`: 1h
    /// ([`crate::proxy::upstream::pool::UPSTREAM_KEEPALIVE_TIME`]).
    pub upstream_keepalive_time: Option<Duration>,
    /// `disable-ipv6` (default false): no listener takes IPv6 connections (ingress-nginx omits
    /// its `listen [::]:…` lines; [`crate::proxy::listener_set`]).
    pub disable_ipv6: bool,
    /// `enable-underscores-in-headers`.
    pub enable_underscores_in_headers: Option<bool>,
    /// `ignore-invalid-headers` (nginx `ignore_invalid_headers`); `None`: true, ingress-nginx's
    /// default.
    pub ignore_invalid_headers: Option<bool>,
    /// `allow-backend-server-header`: pass the pod's `Server` response header to the client;
    /// `false` (ingress-nginx's default, nginx's `proxy_hide_header` default) removes it.
    pub allow_backend_server_header: bool,
    /// `add-headers`: `(name, value)` set on every response, replacing the pod's (names lower
    /// case, checked); a route's `custom-headers` and CORS headers win over these.
    pub add_headers: Vec<(String, String)>,
    /// `http-redirect-code`: status of the HTTP to HTTPS and from/to-www redirects (301, 302,
    /// 307 or 308); `None`: 308.
    pub http_redirect_code: Option<u16>,
    /// `limit-req-status-code`: status of requests over `limit-rps`/`limit-rpm`; `None`: 503.
    pub limit_req_status_code: Option<u16>,
    /// `limit-conn-status-code`: status of requests over `limit-connections`; `None`: 503.
    pub limit_conn_status_code: Option<u16>,
    /// Our `global-limit-rps`: requests per second per client over every Ingress; `Some(0)`
    /// turns off the flag's limit.
    pub global_limit_rps: Option<u32>,
    /// Our `global-limit-rpm`: as `global_limit_rps`, per minute.
    pub global_limit_rpm: Option<u32>,
    /// Our `global-limit-burst-multiplier`.
    pub global_limit_burst_multiplier: Option<u32>,
    /// Our `global-limit-allowlist`: clients the global limit does not count.
    pub global_limit_allowlist: Option<Vec<IpPrefix>>,
    /// `block-cidrs` for requests no route takes (the default backend, the 404): ingress-nginx
    /// puts them in nginx's `http` block, so its default server inherits them and answers 403.
    /// `None`: no key; `Err`: why the value is unusable (those requests are answered 503, as
    /// the routes that take it are).
    pub block_cidrs: Option<Result<Vec<IpPrefix>, String>>,
    /// `use-gzip`, `enable-brotli` and their settings: compressed responses to clients that
    /// accept them (Ingress routes and the proxy's own answers; not Gateway API routes).
    pub compression: super::compression::Compression,
    /// `disable-access-log: "true"`: no request is written to the access log.
    pub disable_access_log: bool,
    /// `enable-access-log-for-default-backend` (default false): requests for a host no rule
    /// names (ingress-nginx's default server, whose location has `access_log off` unless
    /// this is true) are written to the access log.
    pub access_log_for_default_server: bool,
    /// `worker-shutdown-timeout`: on SIGTERM, how long requests in flight may take to finish
    /// (nginx's `worker_shutdown_timeout`, which ingress-nginx's graceful stop waits out).
    /// `None`: `--drain-timeout`.
    pub worker_shutdown_timeout: Option<Duration>,
    /// The ConfigMap's `custom-http-errors` (and `disable-proxy-intercept-errors`) for
    /// requests no route takes, served by `--default-backend-service`: ingress-nginx writes
    /// them in nginx's `http` block (`error_page` and `proxy_intercept_errors on`), which its
    /// default server `_` inherits. `intercept` empty: nothing is replaced there.
    pub default_server_errors: ErrorPages,
    /// `skip-access-log-urls`: requests whose target as sent (`$request_uri`) is one of these,
    /// compared ignoring case (nginx `map` strings), are not written to the access log.
    pub skip_access_log_urls: Vec<String>,
    /// `enable-syslog` with `syslog-host` and `syslog-port`: access log lines go to this
    /// syslog server over UDP instead of stdout (nginx.tmpl's `access_log syslog:server=...`).
    pub syslog: Option<SyslogServer>,
    /// `proxy-set-headers`: `(name, value)` set on every request to a pod of an Ingress route
    /// and of the default backend (ingress-nginx's `proxy_set_header` lines from
    /// `$all.ProxySetHeaders`, in every location of nginx.tmpl), after the forwarding headers;
    /// names lower case and checked, values expanded per request, an empty value not sent
    /// (nginx's `proxy_set_header NAME ""`).
    pub proxy_set_headers: Vec<(String, NginxString)>,
    /// `hide-headers`: names (lower case) of the pod's response headers not passed to the
    /// client (nginx's `proxy_hide_header`, ingress-nginx's `http` block: every proxied answer
    /// of an Ingress route or of the default backend, error pages' included).
    pub hide_headers: Vec<String>,
    /// `proxy-add-original-uri-header`: every request to a pod of an Ingress route carries
    /// `X-Original-URI: $request_uri` (the target as the client sent it), before the
    /// `proxy-set-headers` (nginx.tmpl's `proxy_set_header X-Original-URI` of a location).
    pub add_original_uri_header: bool,
    /// `block-user-agents`: a request whose `User-Agent` matches one is answered 403 on every
    /// Ingress listener (nginx.tmpl's `map $http_user_agent $block_ua` and `if ($block_ua)
    /// { return 403; }` in every server block).
    pub block_user_agents: Vec<crate::model::nginx_map::MapEntry>,
    /// `block-referers`: as `block_user_agents`, for `Referer` (`$block_ref`).
    pub block_referers: Vec<crate::model::nginx_map::MapEntry>,
    /// `ssl-protocols`, `ssl-ciphers`, `ssl-ecdh-curve`, `use-http2`, `ssl-session-tickets`,
    /// `ssl-reject-handshake`: how TLS handshakes with clients go.
    pub tls: super::server_tls::ServerTls,
}

#[derive(Clone, Debug, Default)]
pub struct VirtualHost {
    /// As written in the rule (`foo.example.com`, `*.example.com`, or empty for any host).
    pub host: String,
    /// Most specific first: longer paths before shorter, Exact before Prefix at equal length.
    /// Boxed: no spare capacity. A host's routes, collected into a `Vec` as they are built,
    /// had room for four (224 bytes each) where most hosts have one or two: ~4.3 MiB at 10k
    /// Ingresses of two paths (issue 13's memory target).
    pub routes: Box<[Route]>,
    /// The host's name, or its one-label wildcard, is configured with a certificate (its own
    /// or the default; `model::translate::server_cert::configured`): plain HTTP is redirected
    /// (unless a route's policy says not).
    pub tls: bool,
    /// `app-root`: a request for exactly `/` is answered 302 to this path, before any route is
    /// looked at (ingress-nginx puts `if ($uri = /)` in the server block).
    pub app_root: Option<Box<str>>,
    /// `auth-tls-*`: client certificates, per host as ingress-nginx (the server block).
    /// Boxed as `app_root`: few hosts have either, and the host (10k at 10k Ingresses) is
    /// then a 96-byte block, not 112 (issue 13).
    pub client_auth: Option<Box<ClientAuth>>,
}

/// A host's client-certificate authentication (ingress-nginx `auth-tls-*`; nginx
/// `ssl_verify_client`). Configuration that cannot be used never lets a request through: it
/// is [`ClientAuth::Unavailable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Verify(Arc<ClientCertPolicy>),
    /// The Secret is missing, outside the Ingress's namespace, without `ca.crt`, or does not
    /// parse, or `auth-tls-match-cn` is unusable: every request to the host gets 403, as
    /// ingress-nginx's `AuthTLSError` (`return 403` in the server block).
    Unavailable {
        reason: String,
    },
}

/// `auth-tls-verify-client` (nginx `ssl_verify_client`); serialised as the annotation's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyClient {
    /// `on` (the default): a certificate signed by the CA is required, else 400.
    On,
    /// `off`: no certificate is asked for; the `ssl-client-*` headers are still set.
    Off,
    /// `optional`: asked for; none is fine, one that fails verification is 400.
    Optional,
    /// `optional_no_ca`: asked for; one the CA did not sign is passed on with
    /// `ssl-client-verify: FAILED:...` (other failures, an expired one say, are 400).
    OptionalNoCa,
}

/// What one host asks of client certificates. `Debug` shows the Secret and PEM lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertPolicy {
    /// `auth-tls-secret`.
    pub secret: ObjectRef,
    /// `ca.crt`: the trusted CAs (PEM, checked to parse).
    pub ca_pem: Arc<[u8]>,
    /// `ca.crl`: revocation lists (PEM, checked to parse), if the Secret has one.
    pub crl_pem: Option<Arc<[u8]>>,
    pub verify: VerifyClient,
    /// `auth-tls-verify-depth` (default 1): most CA certificates between the client's and
    /// the self-signed root, as OpenSSL 1.1+ counts `ssl_verify_depth`.
    pub depth: u32,
    /// `auth-tls-pass-certificate-to-upstream`: send `ssl-client-cert` (URL-escaped PEM).
    pub pass_certificate: bool,
    /// `auth-tls-error-page`: where a client whose certificate fails (or is missing with `on`)
    /// is sent instead of the 400 (nginx `error_page 495 496 = <page>`).
    pub error_page: Option<String>,
    /// `auth-tls-match-cn`: a regex the subject DN must match, else 403.
    pub match_cn: Option<String>,
}

impl std::fmt::Debug for ClientCertPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertPolicy")
            .field("secret", &self.secret)
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("crl_pem_bytes", &self.crl_pem.as_ref().map(|c| c.len()))
            .field("verify", &self.verify)
            .field("depth", &self.depth)
            .field("pass_certificate", &self.pass_certificate)
            .field("error_page", &self.error_page)
            .field("match_cn", &self.match_cn)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise prefix, trailing slash ignored. Translation stores it without a trailing
    /// slash (`/foo/` -> `/foo`; `/` stays `/`).
    Prefix(String),
    /// ingress-nginx's `ImplementationSpecific`: a plain character prefix.
    CharPrefix(String),
    /// Regex (only when migration annotations ask for it): anchored at the start only and
    /// case-insensitive, as ingress-nginx's `location ~* "^<path>"`.
    Regex(String),
    /// Gateway API `RegularExpression`: the whole path must match, case-sensitively (RE2
    /// syntax, which the `regex` crate shares).
    FullRegex(String),
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeaderMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum StringMatch {
    Exact(String),
    Regex(String),
}

/// What a request must look like for a route to apply. Ingress v1 uses only `path`.
///
/// The matches beyond path and TLS are boxed ([`MoreMatch`]): every Ingress route leaves them
/// empty, and a snapshot holds a route per Ingress path (20k routes at 10k Ingresses: 8 bytes
/// each for them instead of ~110). They are `None` whenever empty ([`RouteMatch::set_more`]
/// keeps it so), so equal matches compare equal however they were built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `Some(true)`: only requests over TLS; `Some(false)`: only plain HTTP; `None`: both.
    /// Gateway API routes attached to HTTPS listeners only, or to HTTP listeners only.
    pub tls: Option<bool>,
    more: Option<Box<MoreMatch>>,
}

/// The parts of a [`RouteMatch`] only Gateway API routes have.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoreMatch {
    pub headers: Vec<HeaderMatch>,
    pub method: Option<String>,
    pub query: Vec<HeaderMatch>,
    /// The listener ports a request must arrive on (the port the accepting socket is bound
    /// to, sorted). `Some`: a Gateway API route, served only on the ports of the listeners it
    /// attached to; `None`: an Ingress route, served only on the proxy's own HTTP and HTTPS
    /// listeners, never on a port opened for a Gateway ([`L7Config::gateway_listeners`]).
    pub listener_ports: Option<Vec<u16>>,
    /// The local addresses (of the accepted socket, `getsockname`) a request must arrive on,
    /// sorted: the addresses of the Gateways whose listeners the route attached to through
    /// this copy (`--gateway-address-pool`, `spec.addresses`). `None`: every local address
    /// no Gateway claims ([`L7Config::gateway_addresses`]), as for Ingress routes.
    pub gateway_addresses: Option<Vec<std::net::IpAddr>>,
}

impl MoreMatch {
    fn is_empty(&self) -> bool {
        *self == MoreMatch::default()
    }
}

impl RouteMatch {
    /// A match on `path` alone (an Ingress route's), on plain HTTP and TLS alike.
    pub fn path(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            tls: None,
            more: None,
        }
    }

    /// The matches beyond path and TLS; `None` when there are none.
    pub fn more(&self) -> Option<&MoreMatch> {
        self.more.as_deref()
    }

    /// Request headers that must match ([`MoreMatch::headers`]).
    pub fn headers(&self) -> &[HeaderMatch] {
        self.more().map_or(&[], |m| &m.headers)
    }

    /// The request method that must match ([`MoreMatch::method`]).
    pub fn method(&self) -> Option<&str> {
        self.more()?.method.as_deref()
    }

    /// Query parameters that must match ([`MoreMatch::query`]).
    pub fn query(&self) -> &[HeaderMatch] {
        self.more().map_or(&[], |m| &m.query)
    }

    /// [`MoreMatch::listener_ports`].
    pub fn listener_ports(&self) -> Option<&[u16]> {
        self.more()?.listener_ports.as_deref()
    }

    /// [`MoreMatch::gateway_addresses`].
    pub fn gateway_addresses(&self) -> Option<&[std::net::IpAddr]> {
        self.more()?.gateway_addresses.as_deref()
    }

    /// Changes the matches beyond path and TLS (boxed only when not empty afterwards).
    pub fn set_more(&mut self, change: impl FnOnce(&mut MoreMatch)) {
        let mut more = self.more.take().map(|m| *m).unwrap_or_default();
        change(&mut more);
        self.more = (!more.is_empty()).then(|| Box::new(more));
    }
}

/// Where a route came from, for conflicts, `explain` and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteOrigin {
    pub object: ObjectRef,
    /// Index of the rule and of the path within it (`None` for a defaultBackend). 16 bits:
    /// an object the API server takes (1.5 MiB at most) has fewer rules and paths, and the
    /// route (two a host, 20k at 10k Ingresses) is a 192-byte block with them, not 224
    /// (issue 13). An index beyond is `None`, as if unknown.
    pub rule: Option<u16>,
    pub path: Option<u16>,
    /// Seconds since the epoch of the object's creation: older wins a conflict.
    pub created: i64,
    /// The rule's path as written in the Ingress (`spec.rules[].http.paths[].path`, `/` when
    /// empty), before any normalisation of the match: `/v1/` stays `/v1/`, a regex stays its
    /// text. `None` for a `spec.defaultBackend` and for redirect servers.
    pub written_path: Option<Box<str>>,
}

impl RouteOrigin {
    /// A rule's or path's position as [`RouteOrigin::rule`] and [`RouteOrigin::path`] keep it.
    pub fn index(i: usize) -> Option<u16> {
        u16::try_from(i).ok()
    }

    /// ingress-nginx's `$location_path` (nginx.tmpl sets it to the Ingress rule's path,
    /// `$ing.Path`): the affinity cookie's default `Path` (sticky.lua) and the `path` label of
    /// metrics (monitor.lua). `/` without a written path.
    pub fn location_path(&self) -> &str {
        self.written_path.as_deref().unwrap_or("/")
    }
}

#[derive(Clone, Debug)]
pub struct Route {
    pub matches: RouteMatch,
    pub action: RouteAction,
    pub policy: Arc<RoutePolicy>,
    pub origin: RouteOrigin,
    /// The canary merged into this route (ingress-nginx `canary: "true"` on another Ingress
    /// with the same host, path and pathType); `None` for most routes.
    pub canary: Option<Arc<Canary>>,
    /// `default-backend` and `custom-http-errors` of the route's Ingress; `None` without them.
    pub errors: Option<Arc<ErrorPages>>,
}

/// Where a route's errors go (ingress-nginx `default-backend` and `custom-http-errors`
/// annotations; user guide "Custom errors").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorPages {
    /// `default-backend`: the first port of this Service serves the route's requests while its
    /// own backend has no endpoints, and its intercepted errors.
    pub default_backend: Option<Arc<Upstream>>,
    /// `custom-http-errors`: responses with these statuses are replaced by the answer of the
    /// default backend (this route's, else the controller-wide one), sorted.
    pub intercept: Vec<u16>,
    /// `disable-proxy-intercept-errors`: a pod's answer is passed as it is (nginx
    /// `proxy_intercept_errors off`); only the proxy's own answers with an `intercept` status
    /// (a refusal, a 502/503/504 of a failed pod) are replaced.
    pub pass_pod_answers: bool,
}

/// A canary backend next to a route's main backend, and when a request takes it
/// (ingress-nginx's alternative backend and traffic shaping policy, `balancer.lua`
/// `route_to_alternative_balancer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canary {
    /// The canary Ingress.
    pub object: ObjectRef,
    pub upstream: Arc<Upstream>,
    pub rule: CanaryRule,
}

/// When a request goes to the canary, checked in this order (each step decides or falls
/// through): affinity cookie of the main backend (main), of the canary (canary); the header;
/// the cookie; the weight.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CanaryRule {
    /// `canary-by-header`: request header name, lower case.
    pub header: Option<String>,
    /// What the header's value must be; without `canary-by-header-value` or `-pattern` it is
    /// `always` (canary) or `never` (main).
    pub header_match: CanaryHeaderMatch,
    /// `canary-by-cookie`: cookie name; value `always` (canary) or `never` (main).
    pub cookie: Option<String>,
    /// `canary-weight`: a request takes the canary with probability
    /// `min(weight, weight_total) / weight_total`.
    pub weight: u32,
    /// `canary-weight-total` (100 unless larger, as ingress-nginx's balancer).
    pub weight_total: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum CanaryHeaderMatch {
    /// `always` → canary, `never` → main, anything else falls through.
    #[default]
    AlwaysNever,
    /// `canary-by-header-value`: exactly this value → canary, anything else falls through.
    Exact(String),
    /// `canary-by-header-pattern`: a value the regex matches (anywhere, as PCRE `ngx.re.match`)
    /// → canary, anything else falls through.
    Regex(String),
    /// A `canary-by-header-pattern` that is not a regular expression: a request carrying the
    /// header goes to the main backend, whatever its value and the cookie (ingress-nginx's
    /// balancer.lua returns false when `ngx.re.match` fails; its e2e test "should routes to
    /// mainline upstream when the given Regex causes error").
    InvalidRegex(String),
}

#[derive(Clone, Debug)]
pub enum RouteAction {
    /// Proxy to one of the backends, picked by weight (one backend with weight 1 for Ingress).
    Forward(Vec<WeightedUpstream>),
    /// Answer directly (e.g. a route whose Service is missing answers 503).
    Respond { status: u16, reason: String },
    /// Served as a request no route matches: by the controller-wide default backend
    /// ([`L7Config::default_backend`]), else the built-in 404 — but with this route's policy
    /// and error pages, whose `custom-http-errors` may replace that answer. ingress-nginx's
    /// implicit root location of a host (`model::translate::root_location`).
    DefaultBackend,
}

#[derive(Clone, Debug)]
pub struct WeightedUpstream {
    pub upstream: Arc<Upstream>,
    pub weight: u32,
}

/// Per-route behaviour set by annotations. Every field defaults to the plain Ingress behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `ssl-redirect`: redirect plain HTTP to HTTPS (308) on a host with TLS; unset means on.
    /// Read through [`RoutePolicy::redirects_to_https`].
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`: redirect plain HTTP to HTTPS on any host, TLS or not (TLS ended in
    /// front of the proxy); unset means off. Read through [`RoutePolicy::redirects_to_https`].
    pub force_ssl_redirect: Option<bool>,
    /// `preserve-trailing-slash`: the HTTPS redirect keeps a trailing `/` of the request URI
    /// (ingress-nginx's lua_ingress.lua strips one by default).
    pub preserve_trailing_slash: bool,
    /// `use-port-in-redirects` (annotation, ConfigMap default): the HTTPS redirect names the
    /// HTTPS port even when it is 443 (lua_ingress.lua `use_port_in_redirects`); unset means
    /// off ([`crate::proxy::rewrite::https_location`]).
    pub use_port_in_redirects: Option<bool>,
    /// `relative-redirects` (annotation; the ConfigMap key turns it on for every server and
    /// an annotation cannot turn it off there): nginx's `absolute_redirect off`, a `Location`
    /// the proxy makes that starts with `/` is sent as it is; unset or `false`: completed
    /// with the scheme and host ([`crate::proxy::rewrite::redirect`]).
    pub relative_redirects: Option<bool>,
    /// `enable-access-log: "false"`: the route's requests are not written to the access log
    /// (nginx `access_log off` in the location); metrics still count them.
    pub no_access_log: bool,
    pub timeouts: Timeouts,
    /// Maximum request body in bytes (`proxy-body-size`); `None` uses the proxy default,
    /// `Some(u64::MAX)` means unlimited (`proxy-body-size: "0"`).
    pub max_body_bytes: Option<u64>,
    /// Client addresses allowed (`allowlist-source-range` / `whitelist-source-range`); empty
    /// means everyone. Others get 403 (under `satisfy: any`, unless authentication admits).
    pub allow_source_ranges: Vec<IpPrefix>,
    /// Client addresses refused with 403 (`denylist-source-range`, else the ConfigMap's
    /// `denylist-source-range`, else, on a route with neither list, its `block-cidrs`);
    /// checked before the allowlist, as ingress-nginx writes the `deny` lines before the
    /// `allow` ones (nginx's access module: the first matching rule decides).
    pub deny_source_ranges: Vec<IpPrefix>,
    /// What is sent upstream instead of the request's own path and Host.
    pub rewrite: Rewrite,
    /// Answer with a redirect instead of forwarding (before the allowlist, as nginx's rewrite
    /// phase runs before its access phase).
    pub redirect: Option<Redirect>,
    /// When a failed attempt goes on to another endpoint (`proxy-next-upstream*`).
    pub next_upstream: NextUpstream,
    /// How requests are framed toward an HTTP/1 pod (`proxy-http-version`,
    /// `proxy-request-buffering`, `proxy-buffering`).
    pub upstream_http: UpstreamHttp,
    /// Headers set on the route's responses and CORS preflights answered locally.
    pub response: ResponsePolicy,
    /// Who may use the route (authentication annotations); checked after the allowlist, as
    /// nginx's access phase runs `allow`/`deny` before `auth_basic` (`satisfy all`).
    pub auth: Option<RouteAuth>,
    /// External authentication (`auth-url` and its family, or the ConfigMap's `global-auth-*`;
    /// nginx `auth_request`), after `auth` as nginx's access phase runs `auth_basic` before
    /// `auth_request`. A configuration that cannot be used is not here: it makes `auth`
    /// [`RouteAuth::Unavailable`].
    pub forward_auth: Option<Arc<ForwardAuth>>,
    /// `mirror-target`: a copy of each request goes there too (nginx's `mirror`, in the
    /// precontent phase: after the access checks, so a refused request is not copied).
    pub mirror: Option<Arc<IngressMirror>>,
    /// Per-client request and connection limits (`limit-rps`, `limit-rpm`,
    /// `limit-connections`), checked before the allowlist as nginx's preaccess phase runs
    /// before its access phase.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// `satisfy`: whether every access check (allowlist, basic auth, external auth) must let a
    /// request through, or one is enough (nginx `satisfy all` / `satisfy any`).
    pub satisfy: Satisfy,
    /// `limit-rate` (annotation, else ConfigMap) in bytes per second: the pace of each
    /// response body to the client (nginx `limit_rate`, per request); `Some(0)`: no limit.
    pub limit_rate: Option<u64>,
    /// `limit-rate-after` in bytes: sent at full speed before `limit_rate` applies (nginx
    /// `limit_rate_after`).
    pub limit_rate_after: Option<u64>,
    /// HTTPRoute filters and backend shares; `None` for Ingress routes.
    pub gateway: Option<Arc<crate::model::GatewayRoutePolicy>>,
    /// `proxy-redirect-*`, `proxy-cookie-*`: text replaced in the pod's answer headers.
    pub answer_rewrite: AnswerRewrite,
}

impl RoutePolicy {
    /// Whether a request that reached the first proxy over plain HTTP (`X-Forwarded-Proto`
    /// from a trusted sender counts) is redirected to HTTPS on this route, `host_tls` telling
    /// whether the host has a certificate. ingress-nginx's `redirect_to_https`
    /// (rootfs/etc/nginx/lua/lua_ingress.lua): `force-ssl-redirect` on any host, else
    /// `ssl-redirect` (default on) where a certificate is configured for the host;
    /// `no-tls-redirect-locations` turns both off (the translation sets both to false).
    pub fn redirects_to_https(&self, host_tls: bool) -> bool {
        self.force_ssl_redirect == Some(true) || (host_tls && self.ssl_redirect != Some(false))
    }

    /// The location is denied: every request gets 503 ([`ResponsePolicy::denied`], or an
    /// authentication that cannot be set up, [`RouteAuth::Unavailable`]). ingress-nginx renders
    /// such a location as a bare `return 503` (nginx.tmpl, "Location denied"), without the
    /// `error_page` lines of `custom-http-errors`, so its 503 is never replaced.
    pub fn location_denied(&self) -> bool {
        self.response.denied.is_some() || matches!(self.auth, Some(RouteAuth::Unavailable { .. }))
    }
}

/// nginx's `satisfy` (ngx_http_core_module): how the access phase's checks combine. The checks
/// are the access module (`allowlist-source-range`), `auth_basic` and `auth_request`
/// (ingress-nginx's `satisfy` annotation sets it per location).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Satisfy {
    /// Every configured check must let the request through (nginx's default).
    #[default]
    All,
    /// One check letting the request through is enough.
    Any,
}

/// ingress-nginx's per-Ingress rate limits (annotations page, "Rate Limiting"; nginx
/// `limit_req_zone`/`limit_req ... nodelay` and `limit_conn`), keyed by the client address.
/// One zone per Ingress: all its paths share the counters. Counted per node (ingress-nginx
/// counts per replica), or for the whole cluster with `--rate-limit-redis`. Also the shape of
/// the global per-client limit (zone `*global`, ConfigMap `global-limit-*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RateLimit {
    /// `namespace/name` of the Ingress: the zone its paths share.
    pub zone: String,
    /// `limit-rps`: requests per second per client; burst = this x `burst_multiplier`.
    pub rps: Option<u32>,
    /// `limit-rpm`: requests per minute per client; burst = this x `burst_multiplier`.
    pub rpm: Option<u32>,
    /// `limit-burst-multiplier` (default 5).
    pub burst_multiplier: u32,
    /// `limit-connections`: requests in progress at once per client.
    pub connections: Option<u32>,
    /// `limit-allowlist` / `limit-whitelist`: clients no limit applies to.
    pub exempt: Vec<IpPrefix>,
}

/// When a failed attempt goes on to another endpoint: nginx's `proxy_next_upstream`,
/// `proxy_next_upstream_tries` and `proxy_next_upstream_timeout`, as ingress-nginx's
/// `proxy-next-upstream*` annotations and ConfigMap keys set them. `None`: the ConfigMap's
/// value, else the default named on the field.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NextUpstream {
    /// Which failures are retried; default [`RetryOn::NGINX_DEFAULT`] (`error timeout`).
    pub when: Option<RetryOn>,
    /// Attempts in all, the first included; `0`: no limit (never more than the endpoints
    /// there are). Default: the `--proxy-retries` flag plus one (3).
    pub tries: Option<u32>,
    /// How long after the first attempt began another may start; zero: no limit (the
    /// default).
    pub timeout: Option<Duration>,
    /// Least wait before each attempt after the first (Gateway API `HTTPRouteRetry.backoff`);
    /// `None`: none, as nginx.
    pub backoff: Option<Duration>,
    /// An endpoint may be tried again for one request once every endpoint has been (Gateway
    /// API `HTTPRouteRetry.attempts` counts a request's attempts, not endpoints); `false`:
    /// never, as nginx's `proxy_next_upstream`.
    pub repeat_endpoints: bool,
}

/// The cases of nginx's `proxy_next_upstream` (ngx_http_proxy_module); `off` is none of
/// them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RetryOn {
    /// `error`: connecting, sending the request or reading the response head failed.
    pub error: bool,
    /// `timeout`: connecting, sending or waiting for the response head timed out.
    pub timeout: bool,
    /// `invalid_header`: the endpoint answered with an empty or malformed response head.
    pub invalid_header: bool,
    /// `http_500`, `http_502`, `http_503`, `http_504`, `http_403`, `http_404`, `http_429`:
    /// responses with these statuses, sorted.
    pub statuses: Vec<u16>,
    /// `non_idempotent`: POST, LOCK and PATCH requests are retried too once they reached an
    /// endpoint (without it, only while nothing of them was sent).
    pub non_idempotent: bool,
}

impl RetryOn {
    /// nginx's and ingress-nginx's default, `error timeout`.
    pub const NGINX_DEFAULT: RetryOn = RetryOn {
        error: true,
        timeout: true,
        invalid_header: false,
        statuses: Vec::new(),
        non_idempotent: false,
    };

    /// `off`.
    pub const OFF: RetryOn = RetryOn {
        error: false,
        timeout: false,
        invalid_header: false,
        statuses: Vec::new(),
        non_idempotent: false,
    };

    /// The statuses `http_<code>` may name.
    pub const STATUSES: [u16; 7] = [403, 404, 429, 500, 502, 503, 504];

    /// As nginx spells it (`error timeout http_503`; `off` for none).
    pub fn to_nginx(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        for (on, name) in [
            (self.error, "error"),
            (self.timeout, "timeout"),
            (self.invalid_header, "invalid_header"),
        ] {
            if on {
                out.push(name.into());
            }
        }
        out.extend(self.statuses.iter().map(|s| format!("http_{s}")));
        if out.is_empty() {
            return "off".into();
        }
        if self.non_idempotent {
            out.push("non_idempotent".into());
        }
        out.join(" ")
    }
}

/// ingress-nginx's `proxy-http-version`, `proxy-request-buffering` and `proxy-buffering`
/// (annotations, else the ConfigMap keys of the same names). `None`: ingress-nginx's default.
/// They apply to HTTP/1 upstreams (`HTTP`, `HTTPS`, `AUTO_HTTP`); gRPC and h2c pods get
/// HTTP/2 and streamed bodies, as nginx's `grpc_pass` never buffers a request body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamHttp {
    /// HTTP version of the request line sent to the pod; default 1.1.
    pub version: Option<UpstreamVersion>,
    /// Read the whole request body before choosing and contacting a pod (nginx
    /// `proxy_request_buffering`); default on.
    pub request_buffering: Option<bool>,
    /// nginx `proxy_buffering` (responses); default off. Accepted and shown, not enforced:
    /// responses always stream (see the migration guide).
    pub response_buffering: Option<bool>,
}

impl UpstreamHttp {
    /// The version sent to HTTP/1 pods (ingress-nginx default: 1.1).
    pub fn version(&self) -> UpstreamVersion {
        self.version.unwrap_or(UpstreamVersion::Http11)
    }

    /// Whether request bodies are read whole first (ingress-nginx default: on).
    pub fn request_buffering(&self) -> bool {
        self.request_buffering.unwrap_or(true)
    }

    /// Each unset field taken from `defaults` (the ConfigMap's).
    pub fn or(self, defaults: UpstreamHttp) -> UpstreamHttp {
        UpstreamHttp {
            version: self.version.or(defaults.version),
            request_buffering: self.request_buffering.or(defaults.request_buffering),
            response_buffering: self.response_buffering.or(defaults.response_buffering),
        }
    }
}

/// `proxy-http-version`: `"1.0"` or `"1.1"` (nginx `proxy_http_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum UpstreamVersion {
    #[serde(rename = "1.0")]
    Http10,
    #[serde(rename = "1.1")]
    Http11,
}

/// What a route adds to its responses (ingress-nginx `enable-cors` and `cors-*`,
/// `custom-headers`), or why it answers 503 instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponsePolicy {
    /// `enable-cors: "true"` and the `cors-*` annotations.
    pub cors: Option<Cors>,
    /// `custom-headers`: `(name, value)` set on every response, replacing the pod's header of
    /// the same name (nginx `more_set_headers`). Names lower case, values checked to be valid.
    pub headers: Vec<(String, String)>,
    /// The location is denied, as ingress-nginx denies it (`LocationDeniedError`, nginx.tmpl
    /// `return 503`): `custom-headers` cannot be honoured (ConfigMap missing, a header
    /// refused) or `allowlist-source-range` has an invalid CIDR. Every request of the route is
    /// answered 503 with this reason.
    pub denied: Option<String>,
}

/// ingress-nginx's CORS (its template's `CORS` block): for an allowed origin, an `OPTIONS`
/// request is answered 204 with these headers and never reaches the pod; every other response
/// gets them (replacing the pod's). Values are as written in the annotations, already checked
/// against ingress-nginx's patterns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Cors {
    pub allow_origin: CorsOrigins,
    /// `Access-Control-Allow-Methods`.
    pub allow_methods: String,
    /// `Access-Control-Allow-Headers`.
    pub allow_headers: String,
    /// `Access-Control-Allow-Credentials: true` is sent when set.
    pub allow_credentials: bool,
    /// `Access-Control-Expose-Headers`; `None`: not sent.
    pub expose_headers: Option<String>,
    /// `Access-Control-Max-Age`, seconds, as written (`-1`, which browsers read as "do not
    /// cache", included).
    pub max_age: i64,
    /// Whose rules the fields follow.
    pub dialect: CorsDialect,
}

/// Where a [`Cors`] comes from; the two differ in a few answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum CorsDialect {
    /// ingress-nginx's `enable-cors` annotations: a `*` in an origin is one DNS label, values
    /// are sent as written.
    #[default]
    IngressNginx,
    /// Gateway API `HTTPCORSFilter`: a `*` in an origin's host is one or more labels; with
    /// `allowCredentials` the `*` origin answers with the request's `Origin`; `*` methods and
    /// headers answer with the preflight's `Access-Control-Request-Method` / `-Headers`.
    GatewayApi,
}

/// `cors-allow-origin`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CorsOrigins {
    /// `*`: every request is allowed, with `Access-Control-Allow-Origin: *`.
    Any,
    /// Only requests whose `Origin` is one of these (compared ignoring ASCII case; a `*` right
    /// after `://` stands for one DNS label, `[A-Za-z0-9-]+`); the header echoes the request's
    /// `Origin`. Empty: no request is allowed.
    List(Vec<String>),
}

/// A route's authentication step. A configuration that cannot be used never lets a request
/// through: it is [`RouteAuth::Unavailable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAuth {
    /// `auth-type: basic`: RFC 7617 credentials checked against an htpasswd Secret.
    Basic(Arc<BasicAuth>),
    /// The authentication the Ingress asks for cannot be set up (Secret missing, key missing,
    /// other namespace, unknown or unsupported `auth-type`): every request gets 503, as
    /// ingress-nginx's denied location (`return 503`).
    Unavailable { reason: String },
}

/// External authentication of a route, as ingress-nginx renders `auth-url` and its family
/// (annotations page, "External Authentication"; nginx.tmpl's `/_external-auth-` location):
/// each request is first sent, without its body, to `url`; 2xx lets it through, 401 and 403
/// are answered with that status (401 redirected to `signin` when set), anything else is 500.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ForwardAuth {
    /// From the controller ConfigMap's `global-auth-*` keys rather than the Ingress's own.
    pub global: bool,
    /// `auth-url`.
    pub url: NginxString,
    /// `Host` of the auth request: the host name of `url` as written (no port), expanded.
    pub host: NginxString,
    /// `auth-method`; `None`: `GET` (an nginx subrequest's method).
    pub method: Option<String>,
    /// `auth-signin` with the redirect parameter already appended as ingress-nginx's
    /// `buildAuthSignURL` does (`?rd=$pass_access_scheme://$http_host$escaped_request_uri`
    /// unless the URL already has that parameter).
    pub signin: Option<NginxString>,
    /// A `signin` path (`/oauth2/start?rd=...`) is sent relative: the ConfigMap's
    /// `relative-redirects` (nginx.tmpl writes its `absolute_redirect off` in the http block,
    /// which the sign-in location inherits; the annotation's is in the path's location only, a
    /// sibling). Otherwise it is completed with the scheme and host, never a port (the sign-in
    /// location keeps the http block's `port_in_redirect off`): [`crate::proxy::rewrite::complete`].
    pub signin_relative: bool,
    /// `auth-response-headers`: copied from a 2xx auth response onto the upstream request,
    /// replacing (or, when the auth response has none, removing) the client's.
    pub response_headers: Vec<String>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` sent; `None`: `$request_uri`.
    pub request_redirect: Option<NginxString>,
    /// `auth-always-set-cookie`: the auth response's `Set-Cookie` goes on every response, not
    /// only on 200, 201, 204, 206, 301, 302, 303, 304, 307 and 308 (nginx `add_header`).
    pub always_set_cookie: bool,
    /// `auth-cache-key` and `auth-cache-duration`; `None`: no caching.
    pub cache: Option<AuthCache>,
    /// `auth-proxy-set-headers`: headers (name as written, value with variables) set on the
    /// auth request, sorted by name.
    pub proxy_set_headers: Vec<(String, NginxString)>,
    /// The Kubernetes Service `url` names (`<svc>.<ns>.svc[.<domain>]`), resolved to its
    /// endpoints from the snapshot; `None`: the host is resolved by the system's DNS.
    pub service: Option<AuthService>,
}

/// A copy of each request of an Ingress's paths for a mirror backend, its answer ignored:
/// ingress-nginx's `mirror-target`, `mirror-host` and `mirror-request-body` (annotations page,
/// "Mirror"; nginx.tmpl's `mirror` and the `location = /_mirror-<uid>` that proxies to the
/// target with `proxy_set_header Host`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IngressMirror {
    /// `mirror-target`: an `http://` or `https://` URL with nginx variables, expanded per
    /// request (`https://test.env.com$request_uri`). A URL without a path is sent `/`.
    pub target: NginxString,
    /// `Host` of the copy: `mirror-host`, else the target's host name as written.
    pub host: NginxString,
    /// `mirror-request-body` (default `on`): the copy carries the request's body.
    pub request_body: bool,
    /// The in-cluster Service the target's host names (`<svc>.<ns>.svc[...]`), resolved to
    /// its endpoints from the snapshot; `None`: the system's resolver.
    pub service: Option<AuthService>,
}

/// Caching of auth responses (`auth-cache-key`, `auth-cache-duration`; nginx `proxy_cache`
/// with `proxy_cache_valid`), keyed by the route's host and path and the expanded key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthCache {
    pub key: NginxString,
    /// Each `proxy_cache_valid` rule in order; the first naming a status decides its time.
    pub valid: Vec<CacheValid>,
}

/// One `proxy_cache_valid [code ...] time` rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CacheValid {
    /// Statuses it covers; empty: `any`.
    pub statuses: Vec<u16>,
    #[serde(with = "secs")]
    pub ttl: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// The in-cluster Service an auth URL names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthService {
    pub service: ObjectRef,
    /// The URL's host (lower case) and port, which the endpoints stand for.
    pub host: String,
    pub port: u16,
    /// Ready endpoints of that Service port (terminating ones when none is ready).
    pub endpoints: Vec<SocketAddr>,
}

/// Basic authentication of a route (ingress-nginx `auth-type: basic`, nginx `auth_basic`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    /// `auth-realm` (default empty, as ingress-nginx), sent as
    /// `WWW-Authenticate: Basic realm="..."` with a 401.
    pub realm: String,
    /// `auth-secret`: where the users come from.
    pub secret: ObjectRef,
    /// `auth-secret-type`: `auth-file` (the `auth` key is an htpasswd file) or `auth-map`.
    pub secret_type: AuthSecretType,
    /// Users and their hashes; `Debug` shows only how many.
    pub users: Arc<crate::model::htpasswd::Htpasswd>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum AuthSecretType {
    /// `auth-file`: key `auth` holds an htpasswd file (the default).
    AuthFile,
    /// `auth-map`: each key is a user, its value the hash.
    AuthMap,
}

/// Text replaced in the headers of the pod's answers of a route (nginx's `proxy_redirect`,
/// `proxy_cookie_domain`, `proxy_cookie_path`, from ingress-nginx's annotations of the same
/// names, each `off` by default). `None`: off.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AnswerRewrite {
    /// `proxy-redirect-from` / `proxy-redirect-to`: a `Location` value, or the URL of a
    /// `Refresh` value (after `url=`), that starts with `from` has that start replaced by `to`
    /// (case-sensitive); a result starting with `/` is made absolute with the request's scheme
    /// and host, as nginx's `absolute_redirect` does to a rewritten `Location`.
    pub redirect: Option<TextReplace>,
    /// `proxy-cookie-domain`: a `Set-Cookie` `Domain` attribute equal to `from` (ignoring
    /// case and a leading `.` of either) becomes `to` (its leading `.` kept).
    pub cookie_domain: Option<TextReplace>,
    /// `proxy-cookie-path`: a `Set-Cookie` `Path` attribute that starts with `from`
    /// (case-sensitive) has that start replaced by `to`.
    pub cookie_path: Option<TextReplace>,
}

/// One replacement of [`AnswerRewrite`]: the text matched and what it becomes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TextReplace {
    pub from: String,
    pub to: String,
}

/// ingress-nginx's `rewrite-target`, `x-forwarded-prefix` and `upstream-vhost`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rewrite {
    /// The path sent upstream, `$1`..`$9` standing for the route regex's capture groups; the
    /// whole path is replaced (nginx `rewrite "(?i)<path>" <target> break;`). A `?` in it
    /// starts new query arguments, the request's own follow after `&`.
    pub target: Option<String>,
    /// `X-Forwarded-Prefix` sent upstream when the path is rewritten (ingress-nginx sets the
    /// header only together with `rewrite-target`).
    pub x_forwarded_prefix: Option<String>,
    /// `Host` sent upstream (`proxy_set_header Host`); `X-Forwarded-Host` keeps the client's.
    pub upstream_vhost: Option<String>,
    /// `connection-proxy-header`: the `Connection` sent to an HTTP/1 pod instead of nginx's
    /// `$connection_upgrade` (`upgrade` for an upgrade, else none), whatever the request;
    /// `close` or `keep-alive`, as ingress-nginx's `annotations/connection` admits.
    pub connection_header: Option<String>,
}

/// A redirect the proxy answers itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Redirect {
    pub to: RedirectTo,
    /// 3xx status.
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RedirectTo {
    /// `Location` is this URL with its nginx variables (`$request_uri`, `$host`...) expanded
    /// per request (`permanent-redirect`, `temporal-redirect`: nginx's `return code URL`
    /// expands them).
    Url(crate::model::nginx_var::NginxString),
    /// The request's scheme, this host, and the request URI less one trailing `/`
    /// (`from-to-www-redirect`, ingress-nginx's redirect server).
    Host(String),
    /// The request path with `/` appended, query kept: nginx's redirect for a request equal to
    /// a `/`-terminated prefix location without its slash (ingress-nginx compatibility mode).
    AppendSlash,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub send: Option<Duration>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum BackendProtocol {
    #[default]
    Http,
    Https,
    /// ingress-nginx `AUTO_HTTP` (`proxy_pass $scheme://`): HTTPS to the pod when the client
    /// connection is TLS, else HTTP; see [`BackendProtocol::for_connection`].
    AutoHttp,
    Grpc,
    Grpcs,
    H2c,
}

impl BackendProtocol {
    /// The protocol spoken to the pod for a client connection that is TLS (`tls`) or not:
    /// `AUTO_HTTP` follows the connection's scheme (nginx `$scheme`, not `X-Forwarded-Proto`),
    /// every other protocol is itself.
    pub fn for_connection(self, tls: bool) -> BackendProtocol {
        match self {
            BackendProtocol::AutoHttp if tls => BackendProtocol::Https,
            BackendProtocol::AutoHttp => BackendProtocol::Http,
            p => p,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LoadBalancing {
    RoundRobin,
    /// Power of two choices over in-flight requests weighted by EWMA latency.
    LeastRequest,
    /// Consistent hash on the request's expansion of `upstream-hash-by` (any text with
    /// variables: `$request_uri`, `$host$request_uri`, `$binary_remote_addr`, `$http_x_user`),
    /// as ingress-nginx's `balancer/chash.lua` hashes `util.generate_var_value` of it: an empty
    /// expansion is a key too (every such request goes to one endpoint).
    Hash(crate::model::nginx_var::NginxString),
    /// `upstream-hash-by` with `upstream-hash-by-subset: "true"` (ingress-nginx's
    /// `balancer/chashsubset.lua`): the endpoints, in order, make ceil(n / `size`) subsets of
    /// `size` (the last one filled up from the first endpoints); the request's expansion of
    /// `by` picks a subset by consistent hashing over the subsets' numbers, and the request
    /// goes to a random endpoint of it.
    HashSubset {
        by: crate::model::nginx_var::NginxString,
        /// `upstream-hash-by-subset-size` (default 3).
        size: std::num::NonZeroU32,
    },
}

impl LoadBalancing {
    /// The `upstream-hash-by` text of either hash policy.
    pub fn hash_by(&self) -> Option<&crate::model::nginx_var::NginxString> {
        match self {
            LoadBalancing::Hash(by) | LoadBalancing::HashSubset { by, .. } => Some(by),
            LoadBalancing::RoundRobin | LoadBalancing::LeastRequest => None,
        }
    }
}

/// Cookie session affinity (ingress-nginx `affinity: cookie` and the `session-cookie-*`
/// annotations; its Lua `balancer/sticky.lua`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CookieAffinity {
    pub name: String,
    /// `affinity-mode`: what a session's cookie names.
    pub mode: AffinityMode,
    /// `session-cookie-max-age`: the `Max-Age` attribute.
    pub max_age: Option<Duration>,
    /// `session-cookie-expires`: an `Expires` attribute this long after the response.
    pub expires: Option<Duration>,
    /// `session-cookie-path`; `None`: the path of the Ingress rule the request matched.
    pub path: Option<String>,
    /// `session-cookie-domain`: the `Domain` attribute.
    pub domain: Option<String>,
    /// `session-cookie-samesite`, as written (`None`, `Lax` or `Strict`, any case).
    pub same_site: Option<String>,
    /// `session-cookie-conditional-samesite-none`: no `SameSite=None` for the browsers that
    /// reject it.
    pub conditional_same_site_none: bool,
    /// `session-cookie-secure`: `Secure` even on plain HTTP (it is always set over HTTPS).
    pub secure: bool,
    /// `session-cookie-change-on-failure`: a retry after the cookie's pod failed goes to
    /// another pod and the cookie follows; `false`: the retry goes to the cookie's pod again.
    pub change_on_failure: bool,
}

/// ingress-nginx `affinity-mode` (`balancer/sticky_balanced.lua`, `sticky_persistent.lua`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AffinityMode {
    /// The cookie holds a random key that consistent hashing maps onto the endpoints there
    /// are: when pods are added, about (new - old) / new of the sessions move to them.
    #[default]
    Balanced,
    /// The cookie names a pod: the session stays there for as long as the pod exists.
    Persistent,
}

/// One Service port as the proxy sees it: its endpoints and how to talk to them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Upstream {
    /// `namespace/name:port`; pools and health state are kept by this id across snapshots.
    pub id: String,
    pub service: ObjectRef,
    pub protocol: BackendProtocol,
    pub endpoints: Vec<Endpoint>,
    pub load_balancing: LoadBalancing,
    /// Boxed, as `external_name`: ~180 bytes inline between them that nearly every upstream
    /// left empty. The upstream (20k at 10k Ingresses, issue 13) is then a 224-byte block
    /// where it was a 384-byte one (`compact::tests::kept_objects_fit_their_size_classes`).
    pub affinity: Option<Box<CookieAffinity>>,
    /// `service-upstream`: `endpoints` is the Service's `spec.clusterIP` and port, one
    /// pseudo-endpoint that kube-proxy balances; endpoint changes leave it as it is.
    pub service_upstream: bool,
    /// An ExternalName Service's target: `endpoints` is empty and the proxy resolves this
    /// name when a request needs it ([`crate::proxy::upstream::external_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_name: Option<Box<ExternalName>>,
    /// Verified TLS to the endpoints (Gateway API BackendTLSPolicy); `None`: as `protocol`
    /// says (HTTPS and gRPCS unverified, as ingress-nginx).
    #[serde(
        serialize_with = "upstream_tls",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls: Option<Arc<UpstreamTls>>,
}

/// Where an ExternalName Service sends its traffic (ingress-nginx `endpointslices.go`
/// `getEndpointsFromSlices`: one endpoint whose address is the name, resolved by the Lua
/// balancer through DNS, `util/dns.lua`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ExternalName {
    /// `spec.externalName` as written (a DNS name, possibly with a trailing dot, or an IP).
    pub host: String,
    /// The TCP port connected to on every address the name resolves to.
    pub port: u16,
    /// Loopback addresses the name resolves to may be connected to
    /// (`--allow-node-local-endpoints`); other node-local ones never are
    /// ([`crate::model::translate::node_local`]).
    pub loopback_allowed: bool,
}

fn upstream_tls<S: serde::Serializer>(
    t: &Option<Arc<UpstreamTls>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&t.as_deref(), s)
}

/// How the proxy verifies a backend's certificate (Gateway API BackendTLSPolicy
/// `validation`; [`crate::proxy::upstream::verified_tls`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct UpstreamTls {
    /// Sent as SNI; the certificate must name it unless `subject_alt_names` is set.
    pub hostname: String,
    pub roots: TlsRoots,
    /// DNS names of which the certificate must carry one (instead of `hostname`).
    pub subject_alt_names: Vec<String>,
    /// The client certificate presented to the backend (the Gateway's
    /// `spec.tls.backend.clientCertificateRef`); serialised as its Secret.
    #[serde(serialize_with = "certificate_secret")]
    pub client_certificate: Option<Arc<TlsCertificate>>,
    /// Verify the chain and the name (`false`: ingress-nginx's `proxy-ssl-verify: off`, any
    /// certificate is accepted; `roots` are then unused).
    pub verify: bool,
    /// Send `hostname` as SNI (`false`: `proxy-ssl-server-name: off`, nginx's
    /// `proxy_ssl_server_name off`; the name is still what is verified).
    pub sni: bool,
    /// Most intermediate certificates between the backend's certificate and a trusted root
    /// (`proxy-ssl-verify-depth`, OpenSSL's verify depth); `None`: no limit.
    pub verify_depth: Option<u32>,
    /// The TLS versions offered (`proxy-ssl-protocols`); `None`: rustls's (TLS 1.2 and 1.3).
    pub versions: Option<Vec<TlsVersion>>,
}

/// A TLS version the proxy can speak to a backend (rustls: 1.2 and 1.3 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl UpstreamTls {
    /// Verified TLS to `hostname` against `roots` with SNI and no client certificate
    /// (Gateway API BackendTLSPolicy's defaults).
    pub fn verified(hostname: String, roots: TlsRoots) -> Self {
        UpstreamTls {
            hostname,
            roots,
            subject_alt_names: Vec::new(),
            client_certificate: None,
            verify: true,
            sni: true,
            verify_depth: None,
            versions: None,
        }
    }
}

fn certificate_secret<S: serde::Serializer>(
    c: &Option<Arc<TlsCertificate>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&c.as_ref().map(|c| &c.secret), s)
}

/// The certificates a backend's chain must lead to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TlsRoots {
    /// `wellKnownCACertificates: System`: the Mozilla root set (`webpki-roots`).
    System,
    /// `caCertificateRefs`: DER certificates (shown as their count).
    Certificates(#[serde(serialize_with = "count")] Vec<Vec<u8>>),
}

fn count<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.len() as u64)
}

/// A certificate chain and key from a `kubernetes.io/tls` Secret, already checked to parse.
/// `Debug` shows the Secret and the PEM lengths only: snapshots are logged and printed by
/// `explain`, and a private key must never reach a log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TlsCertificate {
    pub secret: ObjectRef,
    /// PEM of the chain (`tls.crt`).
    pub chain_pem: Arc<[u8]>,
    /// PEM of the private key (`tls.key`).
    pub key_pem: Arc<[u8]>,
}

impl std::fmt::Debug for TlsCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("secret", &self.secret)
            .field("chain_pem_bytes", &self.chain_pem.len())
            .field(
                "key_pem",
                &format_args!("<redacted, {} bytes>", self.key_pem.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint's address sorts, prints and serializes as the `SocketAddr` it stands for:
    /// upstreams list their endpoints in that order, and `explain` and the dashboard show it.
    #[test]
    fn endpoint_addr_is_its_socket_addr() {
        let texts = [
            "[2001:db8::1]:80",
            "10.0.0.2:8080",
            "10.0.0.10:80",
            "[::ffff:10.0.0.1]:80",
            "10.0.0.2:80",
            "[2001:db8::1]:8080",
        ];
        let mut sockets: Vec<SocketAddr> = texts.iter().map(|t| t.parse().unwrap()).collect();
        let mut addrs: Vec<EndpointAddr> = texts.iter().map(|t| t.parse().unwrap()).collect();
        sockets.sort();
        addrs.sort();
        assert_eq!(
            addrs.iter().map(EndpointAddr::socket).collect::<Vec<_>>(),
            sockets
        );
        for (a, s) in addrs.iter().zip(&sockets) {
            assert_eq!(a.to_string(), s.to_string());
            assert_eq!(
                serde_json::to_string(a).unwrap(),
                serde_json::to_string(s).unwrap()
            );
            assert_eq!(EndpointAddr::from(*s), *a);
        }
    }

    fn endpoint(addr: &str, node: &str) -> Endpoint {
        Endpoint {
            addr: addr.parse().expect("addr"),
            state: EndpointState::Active,
            weight: 1,
            node_name: Some(node.into()),
            zone: None,
            target: None,
        }
    }

    fn service(id: &str, local_proxy: bool) -> L4Service {
        L4Service {
            id: id.into(),
            service: ObjectRef::new(ObjectKind::Service, "ingress", id),
            protocol: L4Protocol::Tcp,
            frontends: vec![Frontend::NodePort(30080)],
            endpoints: vec![endpoint("10.0.0.1:80", "a"), endpoint("10.0.0.2:80", "b")],
            client_ip_affinity: None,
            source_ranges: vec![],
            local_proxy,
            external_traffic_local: false,
            syn_rate_limit: None,
            health_check: None,
            reject_weight: 0,
        }
    }

    #[test]
    fn certificate_debug_never_shows_the_key() {
        let key =
            b"-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhr\n-----END PRIVATE KEY-----\n";
        let cert = TlsCertificate {
            secret: ObjectRef::new(ObjectKind::Secret, "default", "tls"),
            chain_pem: Arc::from(
                &b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"[..],
            ),
            key_pem: Arc::from(&key[..]),
        };
        let l7 = L7Config {
            certificates: [("a.test".to_string(), Arc::new(cert.clone()))]
                .into_iter()
                .collect(),
            default_certificate: Some(Arc::new(cert.clone())),
            ..L7Config::default()
        };
        for shown in [format!("{cert:?}"), format!("{cert:#?}"), format!("{l7:?}")] {
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
            assert!(!shown.contains("TUlJRXZRSUJBREFOQmdrcWhr"), "{shown}");
            // Not the bytes either, as a derived Debug of `Arc<[u8]>` would print them.
            assert!(!shown.contains("45, 45, 45"), "{shown}");
            assert!(shown.contains("default") && shown.contains(&key.len().to_string()));
        }
    }

    #[test]
    fn draining_marks_only_this_nodes_proxy_terminating() {
        let snap = Snapshot {
            l4: vec![service("own", true), service("other", false)],
            local_node: Some("a".into()),
            ..Snapshot::default()
        };
        let d = snap.with_local_proxy_draining();
        let states = |i: usize| {
            d.l4[i]
                .endpoints
                .iter()
                .map(|e| e.state)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states(0),
            [EndpointState::Terminating, EndpointState::Active]
        );
        // Services that are not the ingress's own keep their endpoints as they are.
        assert_eq!(states(1), [EndpointState::Active, EndpointState::Active]);
        // Without a node name nothing can be local: unchanged.
        let anon = Snapshot {
            local_node: None,
            ..snap.clone()
        };
        assert_eq!(anon.with_local_proxy_draining().l4, anon.l4);
    }
}
