//! Client-side limits: hyper's per-protocol settings (header size, concurrent HTTP/2 streams)
//! and the time limits [`super::liveness`] applies to every connection (slow heads, idle
//! clients), for the proxy's listeners and the admin listener alike.

use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto::Builder,
};

use super::{args::ProxyArgs, liveness::ConnTimeouts};
use crate::model::HeadBuffers;

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
/// (`large_client_header_buffers`), so the count follows the most bytes a head may have
/// ([`head_bytes`]: 2112 lines for ingress-nginx's 33 KiB of buffers) instead of hyper's fixed
/// 100, which refused a 1.5 KB head of 100 short lines with 431 while HTTP/2 took it. hyper allocates two arrays of this many slots
/// (32 bytes each) per request head when it is given a count, and in the proxy's release
/// build `SmallVec::from_elem` writes every slot: 128 KiB per head, 18% of the instructions
/// of a proxied request (deploy/docs/performance.md, session 14). So only a connection whose
/// first head needs more than hyper's own stack arrays gets this count ([`ServerBuilders`]).
pub fn h1_max_headers(max_header_bytes: u64) -> usize {
    usize::try_from(max_header_bytes / H1_BYTES_PER_HEADER)
        .unwrap_or(usize::MAX)
        .clamp(100, 8192)
}

/// hyper's own count of header lines in an HTTP/1 head, parsed into arrays on the stack when
/// no count is configured (`DEFAULT_MAX_HEADERS` in hyper's `proto/h1/role.rs`).
pub const H1_STACK_HEADERS: usize = 100;

/// The two ways a client connection's HTTP/1 heads are parsed, both with the configured
/// limits: `stack` with hyper's arrays of [`H1_STACK_HEADERS`] on the stack (nothing written
/// before parsing), `counted` with arrays of [`h1_max_headers`] on the heap. A connection is
/// served with `counted` when its first head may have more lines than `stack` takes
/// ([`first_head_fits_stack`]); a later head on a kept-alive `stack` connection with more than
/// 100 header lines gets 431 (nginx takes any count within its byte limits).
pub struct ServerBuilders {
    pub stack: Builder<TokioExecutor>,
    pub counted: Builder<TokioExecutor>,
}

impl ServerBuilders {
    pub fn new(args: &ProxyArgs, buffers: &HeadBuffers) -> ServerBuilders {
        ServerBuilders {
            stack: builder(args, buffers, None),
            counted: server_builder(args, buffers),
        }
    }

    /// The builder for a connection whose first bytes are `first`.
    pub fn for_first_bytes(&self, first: &[u8]) -> &Builder<TokioExecutor> {
        if first_head_fits_stack(first) {
            &self.stack
        } else {
            &self.counted
        }
    }
}

/// Whether `first` (a connection's first bytes) holds a whole HTTP/1 head (up to its empty
/// line, CRLF or bare LF as httparse takes them) of at most [`H1_STACK_HEADERS`] header lines.
/// Anything else (a head not yet complete, HTTP/2's preface included) is `false`: the counted
/// parser takes every head the stack one does.
pub fn first_head_fits_stack(first: &[u8]) -> bool {
    let mut lines = 0usize;
    let mut line_start = 0usize;
    for (i, b) in first.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        let line = &first[line_start..i];
        if line.is_empty() || line == b"\r" {
            // The empty line ends the head (a leading one, which a parser may skip, is
            // counted as a line: the count only errs towards `counted`).
            return lines > 0 && lines <= H1_STACK_HEADERS;
        }
        lines += 1;
        if lines > H1_STACK_HEADERS {
            return false;
        }
        line_start = i + 1;
    }
    false
}

/// The most bytes of a head nginx takes with `buffers`, within `--max-header-bytes`.
pub fn head_bytes(args: &ProxyArgs, buffers: &HeadBuffers) -> u64 {
    buffers.total().min(args.max_header_bytes)
}

/// The connection builder with the configured limits and [`h1_max_headers`] header lines.
pub fn server_builder(args: &ProxyArgs, buffers: &HeadBuffers) -> Builder<TokioExecutor> {
    builder(
        args,
        buffers,
        Some(h1_max_headers(head_bytes(args, buffers))),
    )
}

/// hyper reads an HTTP/1 head of up to `--max-header-bytes` (past it, 431 unread): more than
/// nginx's buffers hold by default, so that a head they cannot hold is parsed and answered as
/// nginx answers it ([`super::request_head`]). HTTP/2 header lists are bounded as nginx
/// bounds them, by every large buffer together (name and value bytes; hyper counts 32 more
/// per field, RFC 9113 section 6.5.2), within the flag too.
fn builder(
    args: &ProxyArgs,
    buffers: &HeadBuffers,
    max_headers: Option<usize>,
) -> Builder<TokioExecutor> {
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
        // A zero keep-alive timeout turns keep-alive off, as nginx's `keepalive_timeout 0`
        // (ingress-nginx `keep-alive: "0"`): every answer says `Connection: close` and the
        // connection closes after it. HTTP/2 has no such header: `liveness` sends GOAWAY as
        // soon as no stream is in progress (nginx's zero idle timer does the same).
        .keep_alive(!args.keepalive_timeout.is_zero());
    if let Some(n) = max_headers {
        b.http1().max_headers(n);
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(args.max_concurrent_streams)
        .max_header_list_size(
            (buffers.large_count.saturating_mul(buffers.large_size))
                .min(args.max_header_bytes)
                .min(u64::from(u32::MAX)) as u32,
        );
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
    fn only_a_whole_first_head_of_at_most_100_header_lines_fits_the_stack_parser() {
        let head = |n: usize, end: &str| {
            let mut h = String::from("GET / HTTP/1.1\r\n");
            for i in 0..n {
                h.push_str(&format!("x-{i}: v\r\n"));
            }
            h + end
        };
        // The request line and 99 fields are 100 lines: hyper's stack arrays hold 100 fields.
        assert!(first_head_fits_stack(head(99, "\r\n").as_bytes()));
        assert!(first_head_fits_stack(b"GET / HTTP/1.1\nHost: a\n\nbody"));
        assert!(!first_head_fits_stack(head(100, "\r\n").as_bytes()));
        assert!(
            !first_head_fits_stack(head(3, "").as_bytes()),
            "not complete"
        );
        assert!(!first_head_fits_stack(b""));
        assert!(!first_head_fits_stack(b"\r\n"), "an empty line first");
    }

    #[test]
    fn header_count_follows_the_header_bytes() {
        let args = ProxyArgs::default();
        let ingress_nginx = head_bytes(&args, &HeadBuffers::default());
        assert_eq!(ingress_nginx, 33 * 1024, "within the flag's 64 KiB");
        assert_eq!(h1_max_headers(ingress_nginx), 2112);
        assert_eq!(h1_max_headers(32 * 1024), 2048);
        assert_eq!(h1_max_headers(1024), 100, "never below hyper's own");
        assert_eq!(h1_max_headers(u64::MAX), 8192);
    }
}
