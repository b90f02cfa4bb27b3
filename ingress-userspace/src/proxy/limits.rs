//! Client-side limits: hyper's per-protocol settings (header size, concurrent HTTP/2 streams)
//! and the time limits [`super::liveness`] applies to every connection (slow heads, idle
//! clients), for the proxy's listeners and the admin listener alike.

use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto::Builder,
};

use super::{args::ProxyArgs, liveness::ConnTimeouts};

/// Requests one client connection may carry where the ConfigMap sets no
/// `keep-alive-requests`: ingress-nginx's default (config.go `KeepAliveRequests`), written
/// into nginx's `keepalive_requests`.
pub const KEEPALIVE_REQUESTS: u64 = 1000;

/// hyper's smallest accepted HTTP/1 read buffer.
const MIN_H1_BUF: usize = 8192;

/// Average bytes per header line below which an HTTP/1 head within `--max-header-bytes` may
/// still have too many lines (`x-a: 1` is 8 bytes with its CRLF; real lines are longer).
const H1_BYTES_PER_HEADER: u64 = 16;

/// The most header lines hyper parses in an HTTP/1 head: nginx counts none, only bytes
/// (`large_client_header_buffers`), so the count follows `--max-header-bytes` (2048 lines for
/// the default 32 KiB) instead of hyper's fixed 100, which refused a 1.5 KB head of 100 short
/// lines with 431 while HTTP/2 took it. hyper allocates two arrays of this many slots
/// (32 bytes each) per request head when it is over 100, 128 KiB held while the head is
/// parsed: 50-100 ns per head where the compiler sees that the "uninitialised" slots need no
/// writes, but in the proxy's release build hyper's `SmallVec::from_elem` copies into every
/// slot, 4-5% of a worker's samples (deploy/docs/performance.md, session 13).
pub fn h1_max_headers(max_header_bytes: u64) -> usize {
    usize::try_from(max_header_bytes / H1_BYTES_PER_HEADER)
        .unwrap_or(usize::MAX)
        .clamp(100, 8192)
}

/// The connection builder with the configured limits.
pub fn server_builder(args: &ProxyArgs) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        // No header read timer of hyper's: it armed a timer-wheel entry (and boxed a `Sleep`)
        // for every request head, the next one on a kept-alive connection included (issue 13:
        // CPU per request). The supervisor (`liveness`) bounds every head on its own: the
        // first one by --client-header-timeout from the connection's start, any later one by
        // --keepalive-timeout from the end of the request before it (a request is in progress
        // only once hyper has its whole head), both no later than hyper's timer, set to the
        // larger of the two, fired. Off explicitly: hyper arms 30 s by default.
        .header_read_timeout(None)
        .max_buf_size((args.max_header_bytes as usize).max(MIN_H1_BUF))
        .max_headers(h1_max_headers(args.max_header_bytes))
        // A zero keep-alive timeout turns keep-alive off, as nginx's `keepalive_timeout 0`
        // (ingress-nginx `keep-alive: "0"`): every answer says `Connection: close` and the
        // connection closes after it. HTTP/2 has no such header: `liveness` sends GOAWAY as
        // soon as no stream is in progress (nginx's zero idle timer does the same).
        .keep_alive(!args.keepalive_timeout.is_zero());
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(args.max_concurrent_streams)
        .max_header_list_size(args.max_header_bytes.min(u64::from(u32::MAX)) as u32);
    // HTTP/2 has no header read timeout in hyper: the time to a first request and idleness
    // are bounded per connection by `liveness::supervise` with `conn_timeouts`.
    b
}

/// Share of `--max-connections` one client address may hold when
/// `--max-connections-per-client` is not given.
pub const PER_CLIENT_SHARE: usize = 16;

/// Connections one client address may hold: the flag, else a [`PER_CLIENT_SHARE`]th of
/// `--max-connections` (1024 of the default 16384: room for a NAT with a few hundred browsers,
/// while one address never holds more than a sixteenth of the slots).
pub fn connections_per_client(args: &ProxyArgs) -> usize {
    args.max_connections_per_client
        .unwrap_or(args.max_connections.div_ceil(PER_CLIENT_SHARE))
        .clamp(1, args.max_connections.max(1))
}

/// Open connections on the admin listener (`/metrics`, `/healthz`, `/readyz`): its clients
/// are the kubelet's probes and a few Prometheus scrapers.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Open admin connections from one client address: a quarter of the admin slots, so a flood
/// from one address leaves the kubelet and Prometheus theirs.
pub const ADMIN_MAX_CONNECTIONS_PER_CLIENT: usize = 16;

/// A connection's time to its first request and idle time, from the flags.
pub fn conn_timeouts(args: &ProxyArgs) -> ConnTimeouts {
    ConnTimeouts {
        first_request: args.client_header_timeout,
        idle: args.keepalive_timeout,
        send: args.send_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_count_follows_the_header_bytes() {
        assert_eq!(h1_max_headers(32 * 1024), 2048);
        assert_eq!(h1_max_headers(1024), 100, "never below hyper's own");
        assert_eq!(h1_max_headers(u64::MAX), 8192);
    }
}
