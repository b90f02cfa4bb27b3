//! The proxy's command-line flags, flattened into `xdp-ingress run`.
//! Durations take `500ms`, `30s`, `2m` or plain seconds, up to [`MAX_FLAG_DURATION`]; sizes
//! take `512`, `64k`, `1m`, `1g`, up to [`MAX_FLAG_SIZE`]. Out of range is a parse error, so a
//! flag value never reaches timer or counter arithmetic unchecked.

use std::{net::IpAddr, net::SocketAddr, time::Duration};

use http::HeaderName;

use crate::model::{IpPrefix, translate::annotations::parse_prefix};

/// Access log output on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    Off,
    #[default]
    Text,
    Json,
}

/// The proxy's listener ports: `--http-port`, `--https-port` and the ports Gateway listeners
/// may open. Routing depends on them (a Gateway listener on another port is a port of its
/// own; one outside the range is refused), so `run` and `explain` flatten this one definition.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct ListenerPorts {
    /// Plain HTTP port (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long, default_value_t = 80, env = "XDP_INGRESS_HTTP_PORT")]
    pub http_port: u16,
    /// HTTPS port (TLS 1.2/1.3, ALPN h2 and http/1.1).
    #[arg(long, default_value_t = 443, env = "XDP_INGRESS_HTTPS_PORT")]
    pub https_port: u16,
    /// Ports a Gateway listener may open besides --http-port and --https-port (`first-last`,
    /// inclusive). The default, 1024-29999, leaves out privileged ports (on a host network
    /// they name the node's own services), the NodePort range (30000-32767) and Linux's
    /// ephemeral range (32768-60999, where the proxy's own connections take local ports). A
    /// listener on another port gets `Accepted: False, PortUnavailable`.
    #[arg(
        long,
        default_value = "1024-29999",
        env = "XDP_INGRESS_GATEWAY_LISTENER_PORTS"
    )]
    pub gateway_listener_ports: crate::model::translate::gateway::PortRange,
    /// HTTPS port advertised in redirects (defaults to --https-port).
    #[arg(long)]
    pub redirect_https_port: Option<u16>,
}

impl Default for ListenerPorts {
    fn default() -> Self {
        // The defaults clap applies (the one definition above).
        <ListenerPorts as clap::FromArgMatches>::from_arg_matches(
            &<ListenerPorts as clap::Args>::augment_args(clap::Command::new("ports"))
                .get_matches_from(["ports"]),
        )
        .unwrap_or_else(|e| unreachable!("built-in defaults parse: {e}"))
    }
}

impl ListenerPorts {
    /// HTTP on `http`, HTTPS on `https` (0: any free port, for tests), the default range.
    pub fn at(http: u16, https: u16) -> Self {
        ListenerPorts {
            http_port: http,
            https_port: https,
            gateway_listener_ports: Default::default(),
            redirect_https_port: None,
        }
    }

    /// The port the HTTP to HTTPS redirect names: `--redirect-https-port`, else the HTTPS port.
    pub fn https_redirect_port(&self) -> u16 {
        self.redirect_https_port.unwrap_or(self.https_port)
    }

    /// What translation needs: the proxy's own ports and the range (`run` passes the ports
    /// it bound, which differ only for port 0).
    pub fn proxy_ports(&self) -> crate::model::translate::gateway::ProxyPorts {
        crate::model::translate::gateway::ProxyPorts {
            http: self.http_port,
            https: self.https_port,
            gateway_range: self.gateway_listener_ports,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct ProxyArgs {
    /// The listener ports (`explain` takes the same flags: routing depends on them).
    #[command(flatten)]
    pub ports: ListenerPorts,
    /// Address the HTTP and HTTPS listeners bind, and the listeners the proxy opens for
    /// Gateways. `::`: an IPv4 socket and an IPv6-only one per port, as nginx's `listen 80`
    /// and `listen [::]:80` (ConfigMap `disable-ipv6` closes the IPv6 ones).
    #[arg(long, default_value = "::")]
    pub listen_address: IpAddr,
    /// Prometheus `/metrics`, `/healthz` and `/readyz` on this address (off when unset).
    #[arg(long, env = "XDP_INGRESS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Access log format on stdout (or to the ConfigMap's `enable-syslog` server; `off`: no
    /// access log anywhere).
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Text)]
    pub access_log_format: AccessLogFormat,
    /// Name, in an `x-xdp-ingress-reason` header, why the proxy answered a request itself
    /// (a 403 of a source range, a 404, a 503 of a route that cannot be served). `false`: the
    /// header is never sent, so an anonymous client learns nothing of the configuration
    /// (nginx's own pages say only the status); the access log keeps the reason either way.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub reason_header: bool,

    /// Time a client has to send a request's headers (and the TLS handshake), slowloris guard;
    /// on HTTP/2 as on HTTP/1 it bounds the time from connecting to a first complete request.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub client_header_timeout: Duration,
    /// Longest wait for the client between two successive reads of a request body, as nginx's
    /// `client_body_timeout`; a client silent that long gets 408 and its request is not
    /// counted against the endpoint. 0 disables it.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub client_body_timeout: Duration,
    /// A connection with no request in progress for this long is closed (HTTP/2: GOAWAY),
    /// whatever else it sends (HTTP/2 PING, SETTINGS, WINDOW_UPDATE do not count). 0 turns
    /// keep-alive off, as nginx's `keepalive_timeout 0`: HTTP/1 answers carry
    /// `Connection: close`, an HTTP/2 connection gets GOAWAY once no stream is in progress.
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// Longest a response may wait on the client taking it (between two successive pieces,
    /// not the whole response; HTTP/2 flow control included), as nginx's `send_timeout`;
    /// then the connection is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// The most bytes of a request head (request line plus headers) the proxy reads; a longer
    /// one gets 431 unread. Within it, a head is held to the ConfigMap's
    /// `client-header-buffer-size` and `large-client-header-buffers` as nginx holds it (1k
    /// and 4 8k by default: 414 or 400, see `proxy::request_head`), which this caps: set it
    /// above their total when raising them. There is no separate count of header lines
    /// (nginx has none): an HTTP/1 head may have one line per 16 bytes of the smaller of the
    /// two (2112 for the defaults, at least 100, at most 8192).
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    pub max_header_bytes: u64,
    /// Largest request body unless a route says otherwise (`proxy-body-size`); 0 = unlimited.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub max_body_bytes: u64,
    /// With request buffering on (`proxy-request-buffering`, default on as in ingress-nginx):
    /// the most bytes of one request body held in memory before the pod is contacted. A body
    /// declared larger, or one that grows past it, is streamed from that point (nginx spills
    /// to a temporary file instead); toward an HTTP/1.0 pod, which needs a length, a chunked
    /// body past it gets 411. 0 turns request buffering off everywhere.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub request_buffer_bytes: u64,
    /// With request buffering on: the most bytes of request bodies held in memory at once,
    /// all requests together; one connection (all its HTTP/2 streams) holds at most 4 bodies
    /// of --request-buffer-bytes. A request that finds no room streams its body to the pod as
    /// one past --request-buffer-bytes does (counted in
    /// `xdp_ingress_unbuffered_requests_total`). Default: an eighth of the DaemonSet's
    /// 512Mi memory limit.
    #[arg(long, default_value = "64m", value_parser = parse_size)]
    pub request_buffer_total_bytes: u64,
    /// Concurrent client connections; more are closed on accept (1 to 1048576).
    #[arg(long, default_value_t = 16384, value_parser = parse_max_connections)]
    pub max_connections: usize,
    /// Concurrent connections from one client address (an IPv6 client by its /64); more are
    /// closed on accept and counted in `xdp_ingress_rejected_connections_total`. Default: a
    /// 16th of --max-connections (1024), so one client never holds every slot.
    #[arg(long, value_parser = parse_max_connections)]
    pub max_connections_per_client: Option<usize>,
    /// Concurrent HTTP/2 streams per client connection (1 to 2147483647, the stream
    /// identifier space of RFC 9113 section 5.1.1; 0 would refuse every request).
    #[arg(long, default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    pub max_concurrent_streams: u32,

    /// Connect timeout toward endpoints.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub proxy_connect_timeout: Duration,
    /// Time an endpoint has to answer with response headers, and how long an upgraded
    /// connection (WebSocket) may stay idle in both directions (route annotations override).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub proxy_read_timeout: Duration,
    /// Longest a write to an endpoint may stay blocked while sending a request (between two
    /// successive writes, not the whole upload; route annotations override).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub proxy_send_timeout: Duration,
    /// Attempts on other endpoints after the first, where a route sets no
    /// `proxy-next-upstream-tries` (annotation or ConfigMap key, which count the first attempt
    /// too): the failures its `proxy-next-upstream` lists (default `error timeout`) go on to
    /// another endpoint (0 to 100; never more than the endpoints there are).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub proxy_retries: u32,
    /// Idle upstream connections each worker keeps over every endpoint, the least recently
    /// used closed past it (nginx's upstream `keepalive`; ConfigMap
    /// `upstream-keepalive-connections` wins); 0: none is reused.
    #[arg(long, default_value_t = 320)]
    pub upstream_keepalive: usize,
    /// Idle upstream connections are closed after this (ConfigMap `upstream-keepalive-timeout`
    /// wins).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_keepalive_timeout: Duration,
    /// Consecutive failures that eject an endpoint (0 disables passive health).
    #[arg(long, default_value_t = 3)]
    pub max_fails: u32,
    /// How long an ejected endpoint gets no traffic before it is probed again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub fail_timeout: Duration,
    /// On SIGTERM: how long in-flight requests may take to finish (the controller ConfigMap's
    /// `worker-shutdown-timeout` wins over it).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Proxy worker threads, each with its own event loop, listening sockets
    /// (`SO_REUSEPORT`) and upstream connection pools, as nginx's `worker_processes`
    /// (deploy/docs/performance.md). 0: one per CPU the process may run on.
    #[arg(long, default_value_t = 0, env = "XDP_INGRESS_PROXY_WORKERS")]
    pub proxy_workers: usize,

    // Client address trust (deploy/docs/client-address.md); names and defaults are
    // ingress-nginx's ConfigMap keys.
    /// Pass on `X-Forwarded-Proto/Host/Port` and take the client address from
    /// --forwarded-for-header when the sender is inside --proxy-real-ip-cidr (behind an L7
    /// load balancer). Off: those headers are replaced with what the proxy saw.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_forwarded_headers: bool,
    /// Pass on request header fields whose names contain `_`. Off (nginx's
    /// `underscores_in_headers off`, ingress-nginx's `enable-underscores-in-headers: false`):
    /// they are dropped, so `X_Forwarded_For` cannot reach an application (CGI/WSGI turns `-`
    /// and `_` into the same name) as a forged `X-Forwarded-For`.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_underscores_in_headers: bool,
    /// Take the client address from --forwarded-for-header of senders inside
    /// --proxy-real-ip-cidr, without passing on the other `X-Forwarded-*` headers.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_real_ip: bool,
    /// Header a trusted sender names the client in (right-most untrusted entry wins;
    /// `Forwarded` reads its `for=` parameters).
    #[arg(long, default_value = "X-Forwarded-For", value_parser = parse_header_name)]
    pub forwarded_for_header: HeaderName,
    /// With --use-forwarded-headers: append the sender to the received `X-Forwarded-For`
    /// instead of replacing it with the client address.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub compute_full_forwarded_for: bool,
    /// Trusted senders (load balancers, proxies): comma-separated CIDRs. IPv4 and IPv6 are
    /// separate (`0.0.0.0/0` trusts no IPv6 sender).
    #[arg(long, default_value = "0.0.0.0/0", value_delimiter = ',', value_parser = parse_cidr)]
    pub proxy_real_ip_cidr: Vec<IpPrefix>,
    /// Every connection on the HTTP and HTTPS ports starts with a PROXY protocol v1 or v2
    /// header (behind a TCP load balancer); a connection without one is closed.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_proxy_protocol: bool,

    // Rate limits (deploy/docs/migrate-from-ingress-nginx.md, "Rate limits").
    /// Redis holding the rate-limit counters of every node (`redis://[:password@]host:port[/db]`):
    /// `limit-rps`, `limit-rpm` and the global limit then hold across the cluster, not per
    /// node. Unset: counted per node, as ingress-nginx counts per replica. While Redis is
    /// unreachable, limits are counted per node divided by the ready ingress nodes.
    #[arg(long, env = "XDP_INGRESS_RATE_LIMIT_REDIS", hide_env_values = true)]
    pub rate_limit_redis: Option<String>,
    /// PEM file of the certificate authorities a `rediss://` --rate-limit-redis is verified
    /// against (e.g. a Secret's `ca.crt` mounted into the pod). Unset: the system's roots.
    #[arg(long)]
    pub rate_limit_redis_ca: Option<std::path::PathBuf>,
    /// Longest wait for Redis's answer to one rate-limit decision; past it the request is
    /// decided on this node and Redis is reconnected in the background.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub rate_limit_redis_timeout: Duration,
    /// Ready ingress nodes the limits are divided by while Redis is unreachable. Default: the
    /// ready endpoints of --ingress-service (one per node of the DaemonSet), else 1.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_cluster_nodes: Option<u32>,
    /// Requests per second one client may send over all Ingresses together (0 or unset: no
    /// such limit); burst = this x --global-limit-burst-multiplier, refused with
    /// `limit-req-status-code`. ConfigMap `global-limit-rps` wins.
    #[arg(long)]
    pub global_limit_rps: Option<u32>,
    /// Requests per minute one client may send over all Ingresses together (as
    /// --global-limit-rps). ConfigMap `global-limit-rpm` wins.
    #[arg(long)]
    pub global_limit_rpm: Option<u32>,
    /// Burst of the global limit, as a multiple of it (as `limit-burst-multiplier`).
    /// ConfigMap `global-limit-burst-multiplier` wins.
    #[arg(long, default_value_t = 5)]
    pub global_limit_burst_multiplier: u32,
    /// Clients the global limit does not count (comma-separated CIDRs, as `limit-allowlist`).
    /// ConfigMap `global-limit-allowlist` wins.
    #[arg(long, value_delimiter = ',', value_parser = parse_cidr)]
    pub global_limit_allowlist: Vec<IpPrefix>,
}

impl Default for ProxyArgs {
    fn default() -> Self {
        // The same defaults clap applies; tests start from here and change what they need.
        <ProxyArgs as clap::FromArgMatches>::from_arg_matches(
            &<ProxyArgs as clap::Args>::augment_args(clap::Command::new("proxy"))
                .get_matches_from(["proxy"]),
        )
        .unwrap_or_else(|e| unreachable!("built-in defaults parse: {e}"))
    }
}

/// The longest duration a flag takes: 7 days (timeouts, drain).
pub const MAX_FLAG_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The largest size a flag takes: 1 TiB.
pub const MAX_FLAG_SIZE: u64 = 1 << 40;
/// `--max-connections` upper bound: far above what one process serves, and within what a
/// tokio semaphore (and the drain's `acquire_many(u32)`) can count.
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// `500ms`, `30s`, `2m`, `1h` or plain seconds (fractions allowed), 0 to [`MAX_FLAG_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_FLAG_DURATION)
        .ok_or_else(|| {
            format!(
                "duration {s:?} is outside 0 to {}s",
                MAX_FLAG_DURATION.as_secs()
            )
        })
}

/// A header field name (`X-Forwarded-For`, `X-Client-IP`).
pub fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.trim().as_bytes()).map_err(|_| format!("invalid header name {s:?}"))
}

/// `10.0.0.0/8`, `2001:db8::/32` or a bare address.
pub fn parse_cidr(s: &str) -> Result<IpPrefix, String> {
    parse_prefix(s).ok_or_else(|| format!("invalid CIDR {s:?}"))
}

/// `512`, `64k`, `1m`, `1g` (powers of 1024, as nginx), 0 to [`MAX_FLAG_SIZE`].
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = crate::model::translate::nginx_size::split_unit(s, true);
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid size {s:?}"));
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n <= MAX_FLAG_SIZE)
        .ok_or_else(|| format!("size {s:?} is outside 0 to 1024g"))
}

fn parse_max_connections(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
        .ok_or_else(|| format!("{s:?} is not a number from 1 to {MAX_CONNECTIONS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsers() {
        let a = ProxyArgs::default();
        assert_eq!(a.ports.http_port, 80);
        assert_eq!(a.ports.https_port, 443);
        assert_eq!(a.max_body_bytes, 1 << 20);
        assert_eq!(a.client_body_timeout, Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("7y").is_err());
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert!(parse_size("x").is_err());
        assert!(!a.use_forwarded_headers && !a.use_proxy_protocol && !a.enable_real_ip);
        assert!(!a.compute_full_forwarded_for);
        assert_eq!(a.forwarded_for_header, "x-forwarded-for");
        assert_eq!(a.proxy_real_ip_cidr, [parse_cidr("0.0.0.0/0").unwrap()]);
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_header_name("bad header").is_err());
    }

    #[test]
    fn trust_flags_parse_like_the_configmap_keys() {
        use clap::{Args, Command, FromArgMatches};
        let m = ProxyArgs::augment_args(Command::new("p")).get_matches_from([
            "p",
            "--use-forwarded-headers",
            "--compute-full-forwarded-for=true",
            "--use-proxy-protocol=false",
            "--forwarded-for-header=X-Client-IP",
            "--proxy-real-ip-cidr=10.0.0.0/8, 2001:db8::/32",
        ]);
        let a = ProxyArgs::from_arg_matches(&m).unwrap();
        assert!(a.use_forwarded_headers && a.compute_full_forwarded_for && !a.use_proxy_protocol);
        assert_eq!(a.forwarded_for_header, "x-client-ip");
        assert_eq!(
            a.proxy_real_ip_cidr,
            [
                parse_cidr("10.0.0.0/8").unwrap(),
                parse_cidr("2001:db8::/32").unwrap()
            ]
        );
    }

    #[test]
    fn out_of_range_flags_are_parse_errors() {
        // Each bound and one past it; before, the first two panicked in from_secs_f64.
        for bad in [
            "99999999999999999999999",
            "1e400",
            "-5",
            "604801",
            "10081m",
            "169h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("604800").unwrap(), MAX_FLAG_DURATION);
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in [
            "1025g",
            "18446744073709551615k",
            "99999999999999999999",
            "-1",
            "k",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("1024g").unwrap(), MAX_FLAG_SIZE);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_max_connections("0").is_err());
        assert!(parse_max_connections("1048577").is_err());
        assert_eq!(parse_max_connections("1048576").unwrap(), MAX_CONNECTIONS);
        // Through clap: a clear error naming the flag, not a panic.
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            proxy: ProxyArgs,
        }
        for args in [
            ["x", "--proxy-read-timeout", "99999999999999999999999"],
            ["x", "--max-connections", "0"],
            ["x", "--max-body-bytes", "2048g"],
            ["x", "--max-concurrent-streams", "0"],
            ["x", "--max-concurrent-streams", "2147483648"],
            ["x", "--proxy-retries", "101"],
        ] {
            let e = Cli::try_parse_from(args).err().expect("rejected");
            assert!(e.to_string().contains(args[1]), "{e}");
        }
    }
}
