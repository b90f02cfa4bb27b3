//! Access log lines to a syslog server over UDP, as nginx's `access_log syslog:server=HOST:PORT`
//! that ingress-nginx writes with `enable-syslog` (nginx.org "Logging to syslog"): one datagram
//! per line, `<190>Mmm dd hh:mm:ss HOSTNAME nginx: LINE` (RFC 3164; facility local7, severity
//! info, tag `nginx`, nginx's defaults). The time is UTC (nginx writes its local time, UTC in
//! ingress-nginx's image unless TZ is set).
//!
//! Sending never waits on the network: a datagram the socket cannot take now, a server name
//! that does not resolve, or one that fails to send is dropped and counted
//! ([`Sender::dropped`]). A name is resolved when first needed and again after
//! [`RESOLVED_FOR`] (after [`UNRESOLVED_FOR`] when it failed), in the access log's writer task,
//! never in a request.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant, SystemTime},
};

use prometheus_client::metrics::counter::Counter;

use crate::model::SyslogServer;

/// PRI of every line: facility local7 (23) × 8 + severity info (6).
pub const PRI: u8 = 23 * 8 + 6;

/// nginx's default tag.
pub const TAG: &str = "nginx";

/// How long a resolved name is used before it is looked up again.
pub const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// How long lines are dropped after a name did not resolve, before it is tried again.
pub const UNRESOLVED_FOR: Duration = Duration::from_secs(5);

/// Longest wait for a name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes the RFC 3164 PRI and HEADER parts before a message: `<190>Dec  3 07:29:37 host nginx: `
/// (nginx's `ngx_syslog_add_header`: the day space-padded to two characters).
pub fn header(out: &mut Vec<u8>, hostname: &str, at: SystemTime) {
    // `Thu, 03 Dec 2026 07:29:37 GMT`: day, month and time in fixed places.
    let date = httpdate::fmt_http_date(at);
    let (day, month, time) = (&date[5..7], &date[8..11], &date[17..25]);
    let day = day.strip_prefix('0').unwrap_or(day);
    out.extend_from_slice(format!("<{PRI}>{month} {day:>2} {time} {hostname} {TAG}: ").as_bytes());
}

/// The host's name (nginx's `ngx_cycle->hostname`: `gethostname`, the pod's name in a pod);
/// `localhost` when it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Where lines go and what has been resolved for it.
struct Resolved {
    server: SyslogServer,
    addr: Option<SocketAddr>,
    at: Instant,
}

/// Sends lines to the syslog server of the moment (owned by the access log's writer task).
pub struct Sender {
    hostname: String,
    resolved: Option<Resolved>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    datagram: Vec<u8>,
    /// Lines not sent: the server's name did not resolve, no socket, or the send failed.
    pub dropped: Counter,
}

impl Sender {
    pub fn new(dropped: Counter) -> Sender {
        Sender {
            hostname: hostname(),
            resolved: None,
            v4: None,
            v6: None,
            datagram: Vec::with_capacity(2048),
            dropped,
        }
    }

    /// Sends `line` (no trailing newline) to `server` as one datagram, or drops and counts it.
    pub async fn send(&mut self, server: &SyslogServer, line: &[u8]) {
        let Some(addr) = self.addr(server).await else {
            self.dropped.inc();
            return;
        };
        self.datagram.clear();
        header(&mut self.datagram, &self.hostname, SystemTime::now());
        self.datagram.extend_from_slice(line);
        let socket = match addr {
            SocketAddr::V4(_) => bound(&mut self.v4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            SocketAddr::V6(_) => bound(&mut self.v6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        };
        // A non-blocking socket: a full send buffer drops the line rather than waiting.
        let sent = socket.is_some_and(|s| s.send_to(&self.datagram, addr).is_ok());
        if !sent {
            self.dropped.inc();
        }
    }

    /// The server's address: an IP address as it is, a name as last resolved.
    async fn addr(&mut self, server: &SyslogServer) -> Option<SocketAddr> {
        let fresh = self.resolved.as_ref().is_some_and(|r| {
            let ttl = if r.addr.is_some() {
                RESOLVED_FOR
            } else {
                UNRESOLVED_FOR
            };
            r.server == *server && r.at.elapsed() < ttl
        });
        if !fresh {
            let addr = match server.host.parse::<IpAddr>() {
                Ok(ip) => Some(SocketAddr::new(ip, server.port)),
                Err(_) => resolve(server).await,
            };
            self.resolved = Some(Resolved {
                server: server.clone(),
                addr,
                at: Instant::now(),
            });
        }
        self.resolved.as_ref().and_then(|r| r.addr)
    }
}

async fn resolve(server: &SyslogServer) -> Option<SocketAddr> {
    let lookup = tokio::net::lookup_host((server.host.as_str(), server.port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(mut addrs)) => addrs.next(),
        Ok(Err(e)) => {
            tracing::debug!(host = %server.host, error = %e, "syslog server not resolved");
            None
        }
        Err(_) => {
            tracing::debug!(host = %server.host, "syslog server name timed out");
            None
        }
    }
}

/// The socket of one address family, bound on first use: a plain non-blocking one, as a send
/// is never waited for.
fn bound(slot: &mut Option<UdpSocket>, any: IpAddr) -> Option<&UdpSocket> {
    if slot.is_none() {
        let s = UdpSocket::bind(SocketAddr::new(any, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s));
        match s {
            Ok(s) => *slot = Some(s),
            Err(e) => tracing::debug!(error = %e, "syslog socket not bound"),
        }
    }
    slot.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nginx's header: PRI 190 (local7.info), `Mmm dd hh:mm:ss` with the day padded by a
    /// space, the host name and the `nginx` tag.
    #[test]
    fn header_is_rfc3164_local7_info_with_nginx_tag() {
        let mut out = Vec::new();
        // 2026-12-03T07:29:37Z
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_282_977);
        header(&mut out, "node-1", at);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<190>Dec  3 07:29:37 node-1 nginx: "
        );
        let mut out = Vec::new();
        // 2026-11-23T00:00:09Z
        header(
            &mut out,
            "h",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_392_009),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<190>Nov 23 00:00:09 h nginx: "
        );
    }

    /// A line to an IP address arrives as one datagram; a name that does not resolve drops
    /// the line and counts it.
    #[tokio::test]
    async fn sends_one_datagram_per_line_and_counts_drops() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let mut s = Sender::new(Counter::default());
        let to = SyslogServer {
            host: "127.0.0.1".into(),
            port,
        };
        s.send(&to, b"GET / 200").await;
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            got.starts_with("<190>") && got.ends_with(" nginx: GET / 200"),
            "{got}"
        );
        assert_eq!(s.dropped.get(), 0);
        let nowhere = SyslogServer {
            host: "syslog.invalid".into(),
            port,
        };
        s.send(&nowhere, b"x").await;
        s.send(&nowhere, b"y").await;
        assert_eq!(s.dropped.get(), 2);
    }
}
