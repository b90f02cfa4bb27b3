//! Who a request is from: the one client address that allowlists, hash balancing, the access
//! log and `X-Real-IP` use, and the forwarding headers passed on to the pod.
//!
//! The model follows ingress-nginx's ConfigMap keys and the nginx directives its template
//! turns them into:
//!
//! - By default nothing the client says about itself is believed: the client is the TCP
//!   peer, and `X-Forwarded-For`, `Forwarded`, `X-Real-IP` and `X-Forwarded-Proto/Host/Port`
//!   are replaced with what the proxy saw (`use-forwarded-headers: "false"`).
//! - `use-proxy-protocol`: every connection starts with a PROXY protocol header
//!   ([`super::proxy_protocol`]); its source address is the client when the TCP peer (the
//!   load balancer) is inside `proxy-real-ip-cidr` (nginx `real_ip_header proxy_protocol`),
//!   its destination port is `X-Forwarded-Port` (`$proxy_protocol_server_port`), and a
//!   destination port 443 makes the scheme `https` (lua_ingress.lua `rewrite`).
//! - `use-forwarded-headers` or `enable-real-ip`: from a sender inside `proxy-real-ip-cidr`,
//!   the client is found in `forwarded-for-header` right to left, skipping trusted addresses
//!   (nginx `real_ip_recursive on`, ngx_http_realip_module). With `use-proxy-protocol` only
//!   `use-forwarded-headers` does so, and the sender is the PROXY header's source (nginx.tmpl:
//!   `real_ip_header` is then `forwarded-for-proxy-protocol-header`, which holds
//!   `forwarded-for-header` when the PROXY source is inside `proxy-real-ip-cidr`, else the
//!   PROXY source).
//! - `use-forwarded-headers` also passes on `X-Forwarded-Proto/Host/Port` as received from a
//!   trusted sender (ingress-nginx's `$pass_access_scheme`, `$best_http_host`,
//!   `$pass_server_port` maps); `compute-full-forwarded-for` appends the sender to the received
//!   `X-Forwarded-For` instead of replacing it (`$full_x_forwarded_for`).
//!
//! Where this is stricter than ingress-nginx: received headers are believed only from a
//! sender inside `proxy-real-ip-cidr` (ingress-nginx believes `X-Forwarded-Proto/Host/Port`
//! and appends to `X-Forwarded-For` from anyone once `use-forwarded-headers` is on).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, header::FORWARDED};

use super::{
    allowlist,
    args::ProxyArgs,
    headers::{
        X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO, http_variable,
    },
    proxy_protocol::Proxied,
};
use crate::model::IpPrefix;

/// The trust settings, parsed once from the flags (named after the ingress-nginx ConfigMap
/// keys they mirror).
#[derive(Clone, Debug)]
pub struct TrustConfig {
    /// `use-forwarded-headers`: believe `forwarded-for-header` and `X-Forwarded-Proto/Host/Port`
    /// from trusted senders.
    pub use_forwarded_headers: bool,
    /// `enable-real-ip`: believe `forwarded-for-header` from trusted senders (only the address).
    pub enable_real_ip: bool,
    /// `forwarded-for-header`: where a trusted sender names the client (`X-Forwarded-For`;
    /// `Forwarded` reads its `for=` parameters, RFC 7239 section 5.2).
    pub forwarded_for_header: HeaderName,
    /// `compute-full-forwarded-for`: with `use-forwarded-headers`, append the sender to the
    /// received `X-Forwarded-For` instead of replacing it.
    pub compute_full_forwarded_for: bool,
    /// `use-proxy-protocol`: connections start with a PROXY protocol v1 or v2 header.
    pub use_proxy_protocol: bool,
    /// `proxy-real-ip-cidr`: the senders whose PROXY header and forwarding headers are believed.
    pub trusted: Vec<IpPrefix>,
    /// `--https-port` (ingress-nginx `listen_ports.https`): a request whose
    /// `$pass_server_port` is this port is passed on with `X-Forwarded-Port: 443`.
    pub https_port: u16,
}

impl TrustConfig {
    pub fn from_args(a: &ProxyArgs) -> Self {
        TrustConfig {
            use_forwarded_headers: a.use_forwarded_headers,
            enable_real_ip: a.enable_real_ip,
            forwarded_for_header: a.forwarded_for_header.clone(),
            compute_full_forwarded_for: a.compute_full_forwarded_for,
            use_proxy_protocol: a.use_proxy_protocol,
            trusted: a.proxy_real_ip_cidr.clone(),
            https_port: a.ports.https_port,
        }
    }

    /// Whether `ip` is inside `proxy-real-ip-cidr` (an empty list trusts nobody).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        !self.trusted.is_empty() && allowlist::allows(&self.trusted, ip)
    }

    /// Whether some sender's word is believed and `proxy-real-ip-cidr` holds a `/0` (the
    /// default `0.0.0.0/0`): then anyone who reaches the listener picks their own address.
    pub fn trusts_any_sender(&self) -> bool {
        (self.use_forwarded_headers || self.enable_real_ip || self.use_proxy_protocol)
            && self.trusted.iter().any(|p| p.len == 0)
    }

    /// What is known when a connection is accepted: the TCP `peer`, the PROXY header's
    /// ends (`None`: no header, or `LOCAL`/`UNKNOWN`), the `local` address it reached. A PROXY
    /// header counts only from a peer inside `proxy-real-ip-cidr` (ingress-nginx uses its
    /// destination port from any peer).
    pub fn origin(
        &self,
        peer: SocketAddr,
        proxied: Option<Proxied>,
        local: SocketAddr,
        tls: bool,
    ) -> Origin {
        let peer_ip = peer.ip().to_canonical();
        let proxied = proxied.filter(|_| self.use_proxy_protocol && self.trusts(peer_ip));
        let sender = proxied.map_or(peer_ip, |p| p.source.ip().to_canonical());
        // nginx.tmpl: `$pass_server_port` is `$proxy_protocol_server_port` with
        // use-proxy-protocol, else `$server_port`.
        let server_port = proxied.map_or(local.port(), |p| p.destination.port());
        Origin {
            peer,
            sender,
            sender_text: ip_value(sender),
            sender_trusted: self.trusts(sender),
            proxied: proxied.is_some(),
            tls,
            local_port: HeaderValue::from(local.port()),
            server_port: HeaderValue::from(server_port),
        }
    }
}

/// Where a connection comes from, decided once when it is accepted.
#[derive(Debug)]
pub struct Origin {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The node that sent the requests on this connection: the PROXY header's source when
    /// the peer is a trusted load balancer, else the peer.
    pub sender: IpAddr,
    sender_text: HeaderValue,
    sender_trusted: bool,
    /// Whether `sender` is the source of a trusted peer's PROXY header.
    proxied: bool,
    /// Whether the connection is TLS (the scheme the proxy saw).
    pub tls: bool,
    /// The local port (nginx `$server_port`).
    local_port: HeaderValue,
    /// The port the client connected to: a trusted PROXY header's destination port, else the
    /// local port (`$pass_server_port` before `X-Forwarded-Port`).
    server_port: HeaderValue,
}

/// Who one request is from and the forwarding values to pass on.
#[derive(Clone, Debug)]
pub struct Client {
    /// The client address (nginx `$remote_addr` after the realip module).
    pub addr: IpAddr,
    /// `addr` as text (`X-Real-IP`).
    pub addr_text: HeaderValue,
    /// `X-Forwarded-For` to send.
    pub forwarded_for: HeaderValue,
    /// A received `Forwarded` our element is appended to (`compute-full-forwarded-for`).
    pub forwarded_prev: Option<HeaderValue>,
    /// The `for=` node of our `Forwarded` element.
    pub forwarded_node: IpAddr,
    /// `X-Forwarded-Proto` (`$pass_access_scheme`).
    pub proto: HeaderValue,
    /// The host a trusted sender names in `X-Forwarded-Host`: the first comma-separated
    /// element of its first field line, blanks around it trimmed (ingress-nginx's
    /// `$best_http_host`, lua_ingress.lua `parse_x_forwarded_host`); `None` when not believed,
    /// absent or empty. See [`Client::best_host`].
    pub host: Option<HeaderValue>,
    /// `X-Forwarded-Port` (ingress-nginx's `$pass_port`): the port the client connected to
    /// (see [`Origin::client`]), 443 for `--https-port`.
    pub port: HeaderValue,
    /// The port a from-to-www redirect names: the local port, or a believed
    /// `X-Forwarded-Port` (ngx_srv_redirect.lua reads `$server_port` and
    /// `$http_x_forwarded_port`, neither the PROXY header nor the 443 mapping).
    pub redirect_port: HeaderValue,
}

impl Client {
    /// Whether the request reached the first proxy over HTTPS (decides `ssl-redirect`).
    pub fn https(&self) -> bool {
        self.proto.as_bytes().eq_ignore_ascii_case(b"https")
    }

    /// A client at `addr` that reached the proxy itself on `port`, over TLS when `tls`, with
    /// nothing forwarded (as `explain` pictures a request).
    pub fn direct(addr: IpAddr, tls: bool, port: u16) -> Client {
        let text = ip_value(addr);
        Client {
            addr,
            addr_text: text.clone(),
            forwarded_for: text,
            forwarded_prev: None,
            forwarded_node: addr,
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            host: None,
            port: HeaderValue::from(port),
            redirect_port: HeaderValue::from(port),
        }
    }

    /// ingress-nginx's `$best_http_host` for a request whose Host is `host` (port as sent):
    /// the believed `X-Forwarded-Host` element ([`Client::host`]), else `host`. It is what the
    /// upstream gets as `Host` (unless `upstream-vhost`) and `X-Forwarded-Host`, and whose
    /// name, port dropped, the `ssl-redirect` `Location` names (lua_ingress.lua
    /// `redirect_host`). Routing always uses the request's own Host.
    pub fn best_host<'a>(&'a self, host: &'a str) -> &'a str {
        self.host
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(host)
    }
}

/// The first element of an `X-Forwarded-Host` value, blanks around it trimmed; `None` when
/// it is empty. A chain of proxies appends to the header, so the first element is the host
/// the client asked the first one for (lua_ingress.lua `parse_x_forwarded_host` splits on
/// `,` and takes `hosts[1]`). An empty first element (`, b.example`) makes ingress-nginx send
/// an empty Host; here it is not believed, and the request's Host is used.
fn first_forwarded_host(v: &HeaderValue) -> Option<HeaderValue> {
    let first = v.as_bytes().split(|&b| b == b',').next()?.trim_ascii();
    if first.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(first).ok()
}

impl Origin {
    /// The client of one request with these `headers`.
    ///
    /// Scheme and port follow lua_ingress.lua `rewrite`, in its order: the connection's
    /// scheme and port (with `use-proxy-protocol`, the PROXY header's destination port); a
    /// believed `X-Forwarded-Proto` / `X-Forwarded-Port` replaces them; a PROXY destination
    /// port 443 then makes the scheme `https` whatever was received (a balancer that
    /// terminated TLS, so `ssl-redirect` does not loop); last, a port equal to `--https-port`
    /// is passed on as 443.
    pub fn client(&self, cfg: &TrustConfig, headers: &HeaderMap) -> Client {
        let scheme = HeaderValue::from_static(if self.tls { "https" } else { "http" });
        // nginx.tmpl: with use-proxy-protocol, realip reads the forwarded-for header only with
        // use-forwarded-headers and a trusted PROXY source; without it, either key does.
        let reads_header = if cfg.use_proxy_protocol {
            cfg.use_forwarded_headers && self.proxied
        } else {
            cfg.use_forwarded_headers || cfg.enable_real_ip
        };
        let header_addr = (reads_header && self.sender_trusted)
            .then(|| {
                let nodes = forwarded_for_nodes(headers, &cfg.forwarded_for_header);
                real_ip(cfg, self.sender, &nodes)
            })
            .filter(|a| *a != self.sender);
        let (addr, addr_text) = match header_addr {
            Some(a) => (a, ip_value(a)),
            None => (self.sender, self.sender_text.clone()),
        };
        let believed = cfg.use_forwarded_headers && self.sender_trusted;
        let received = |name: &HeaderName| {
            believed
                .then(|| headers.get(name))
                .flatten()
                .filter(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace))
                .cloned()
        };
        let full = believed && cfg.compute_full_forwarded_for;
        let (forwarded_for, forwarded_prev, forwarded_node) = if full {
            // ingress-nginx's `$full_x_forwarded_for`: `"$http_x_forwarded_for, $remote_addr"`,
            // or the address alone when the client sent none.
            let xff = match http_variable(headers, &X_FORWARDED_FOR) {
                Some(p) => {
                    let mut v = p.as_bytes().to_vec();
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(self.sender_text.as_bytes());
                    HeaderValue::from_bytes(&v).unwrap_or_else(|_| self.sender_text.clone())
                }
                None => self.sender_text.clone(),
            };
            let fwd = http_variable(headers, &FORWARDED);
            (xff, fwd, self.sender)
        } else {
            (addr_text.clone(), None, addr)
        };
        let received_port = received(&X_FORWARDED_PORT);
        let proto = if self.proxied && self.server_port == "443" {
            HeaderValue::from_static("https")
        } else {
            received(&X_FORWARDED_PROTO).unwrap_or(scheme)
        };
        let port = received_port
            .clone()
            .unwrap_or_else(|| self.server_port.clone());
        let port = if is_port_text(port.as_bytes(), cfg.https_port) {
            HeaderValue::from_static("443")
        } else {
            port
        };
        Client {
            addr,
            addr_text,
            forwarded_for,
            forwarded_prev,
            forwarded_node,
            proto,
            host: received(&X_FORWARDED_HOST).and_then(|v| first_forwarded_host(&v)),
            port,
            redirect_port: received_port.unwrap_or_else(|| self.local_port.clone()),
        }
    }
}

/// nginx's realip walk (`real_ip_recursive on`): starting from the sender, while the current
/// address is trusted, step to the next node from the right; a node that is not an address
/// ends the walk where it is.
fn real_ip(cfg: &TrustConfig, sender: IpAddr, nodes: &[&str]) -> IpAddr {
    let mut addr = sender;
    for node in nodes.iter().rev() {
        if !cfg.trusts(addr) {
            break;
        }
        match parse_node(node) {
            Some(a) => addr = a,
            None => break,
        }
    }
    addr
}

/// The nodes named in `header`, left to right: comma-separated entries of every field line
/// (empty entries skipped, as nginx does), or for `Forwarded` the `for=` value of each element
/// (an element without one yields `""`, which ends a realip walk).
fn forwarded_for_nodes<'h>(headers: &'h HeaderMap, header: &HeaderName) -> Vec<&'h str> {
    let lines = headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if *header == FORWARDED {
        lines
            .flat_map(|line| split_unquoted(line, ','))
            .filter(|e| !e.trim().is_empty())
            .map(|element| {
                split_unquoted(element, ';')
                    .into_iter()
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, v)| unquote(v.trim()))
                    .unwrap_or("")
            })
            .collect()
    } else {
        lines
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect()
    }
}

/// Splits on `sep` outside double quotes (RFC 9110 quoted-string, backslash escapes).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// A node as nginx's `ngx_parse_addr_port` reads it: `198.51.100.7`, `198.51.100.7:4711`,
/// `2001:db8::7`, `[2001:db8::7]` or `[2001:db8::7]:4711`. `unknown`, obfuscated names
/// (RFC 7239 section 6) and anything else give `None`.
pub fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let port_ok = |p: &str| p.parse::<u16>().is_ok();
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port_ok)) {
            return None;
        }
        IpAddr::V6(v6.parse().ok()?)
    } else {
        let (v4, port) = node.rsplit_once(':')?;
        if !port_ok(port) {
            return None;
        }
        IpAddr::V4(v4.parse().ok()?)
    };
    Some(ip.to_canonical())
}

/// Whether `text` is `port` in decimal, as lua_ingress.lua compares `$pass_server_port` with
/// `listen_ports.https` (both strings: `0443` is not 443).
fn is_port_text(text: &[u8], port: u16) -> bool {
    let mut digits = [0u8; 5];
    let (mut n, mut i) = (port, digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    text == &digits[i..]
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    // An address's text is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests;
