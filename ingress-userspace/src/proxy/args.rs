//! The proxy's command-line flags, flattened into `xdp-ingress run`.
//! Durations take `500ms`, `30s`, `2m` or plain seconds; sizes take `512`, `64k`, `1m`, `1g`.

use std::{net::IpAddr, net::SocketAddr, time::Duration};

/// Access log output on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    Off,
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ProxyArgs {
    /// Plain HTTP port (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long, default_value_t = 80, env = "XDP_INGRESS_HTTP_PORT")]
    pub http_port: u16,
    /// HTTPS port (TLS 1.2/1.3, ALPN h2 and http/1.1).
    #[arg(long, default_value_t = 443, env = "XDP_INGRESS_HTTPS_PORT")]
    pub https_port: u16,
    /// Address the HTTP and HTTPS listeners bind (`::` also takes IPv4 where the host allows).
    #[arg(long, default_value = "::")]
    pub listen_address: IpAddr,
    /// HTTPS port advertised in redirects (defaults to --https-port).
    #[arg(long)]
    pub redirect_https_port: Option<u16>,
    /// Prometheus `/metrics`, `/healthz` and `/readyz` on this address (off when unset).
    #[arg(long, env = "XDP_INGRESS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// `namespace/name` of the TLS Secret served when no SNI name matches; the flag itself is
    /// the control plane's (`--default-ssl-certificate`), copied here by `run`.
    #[arg(skip)]
    pub default_ssl_certificate: Option<String>,
    /// Access log format on stdout.
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Text)]
    pub access_log_format: AccessLogFormat,

    /// Time a client has to send a request's headers (and the TLS handshake), slowloris guard;
    /// on HTTP/2 as on HTTP/1 it bounds the time from connecting to a first complete request.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub client_header_timeout: Duration,
    /// A connection with no request in progress for this long is closed (HTTP/2: GOAWAY),
    /// whatever else it sends (HTTP/2 PING, SETTINGS, WINDOW_UPDATE do not count).
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// Longest a response may wait on the client taking it (between two successive pieces,
    /// not the whole response; HTTP/2 flow control included), as nginx's `send_timeout`;
    /// then the connection is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Largest request head (request line plus headers), bytes; larger gets 431.
    #[arg(long, default_value = "32k", value_parser = parse_size)]
    pub max_header_bytes: u64,
    /// Largest request body unless a route says otherwise (`proxy-body-size`); 0 = unlimited.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    pub max_body_bytes: u64,
    /// Concurrent client connections; more are closed on accept.
    #[arg(long, default_value_t = 16384)]
    pub max_connections: usize,
    /// Concurrent connections from one client address (an IPv6 client by its /64); more are
    /// closed on accept and counted in `xdp_ingress_rejected_connections_total`. Default: a
    /// 16th of --max-connections (1024), so one client never holds every slot.
    #[arg(long)]
    pub max_connections_per_client: Option<usize>,
    /// Concurrent HTTP/2 streams per client connection.
    #[arg(long, default_value_t = 128)]
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
    /// Attempts on other endpoints after a connect failure, or any failure of an idempotent
    /// request without a body.
    #[arg(long, default_value_t = 2)]
    pub proxy_retries: u32,
    /// Idle upstream connections kept per endpoint.
    #[arg(long, default_value_t = 256)]
    pub upstream_keepalive: usize,
    /// Idle upstream connections are closed after this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub upstream_keepalive_timeout: Duration,
    /// Consecutive failures that eject an endpoint (0 disables passive health).
    #[arg(long, default_value_t = 3)]
    pub max_fails: u32,
    /// How long an ejected endpoint gets no traffic before it is probed again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub fail_timeout: Duration,
    /// On SIGTERM: how long in-flight requests may take to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
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

/// `500ms`, `30s`, `2m`, `1h` or plain seconds.
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
    Ok(Duration::from_secs_f64(secs))
}

/// `512`, `64k`, `1m`, `1g` (powers of 1024, as nginx).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    num.parse::<u64>()
        .map(|n| n.saturating_mul(mult))
        .map_err(|_| format!("invalid size {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsers() {
        let a = ProxyArgs::default();
        assert_eq!(a.http_port, 80);
        assert_eq!(a.https_port, 443);
        assert_eq!(a.max_body_bytes, 1 << 20);
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("7y").is_err());
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert!(parse_size("x").is_err());
    }
}
