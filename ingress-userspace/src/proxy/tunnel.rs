//! Upgraded connections (WebSocket and other `Upgrade`s): bytes copied both ways until both
//! sides close, or until nothing has moved in either direction for the idle timeout, after
//! which both connections are closed. As ingress-nginx, the idle timeout is the route's
//! `proxy-read-timeout` (else `--proxy-read-timeout`, 60 s): a WebSocket that should stay
//! quiet longer raises that annotation, or pings. Each tunnel lives on its own task, so later
//! snapshots never touch it. Writes to the endpoint that stay blocked are bounded separately
//! by the send timeout of the connection (see [`super::upstream::send_timeout`]).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};
use tracing::debug;

/// Copies between both sides of an upgrade once both are ready; closes on idleness.
pub async fn run(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
) {
    let (c, u) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let io = |side| hyper_util::rt::TokioIo::new(side);
    if splice(io(c), io(u), idle).await == End::Idle {
        debug!(?idle, "upgraded connection closed after idle timeout");
    }
}

/// How a tunnel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one failed).
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
}

/// Copies both ways between `a` and `b` until both close or `idle` passes without a byte
/// moving in either direction. Both are dropped (closed) on return.
pub async fn splice<A, B>(a: A, b: B, idle: Duration) -> End
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    // Milliseconds after `start` of the last byte moved; both sides write it.
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Active {
        io: a,
        start,
        last: Arc::clone(&last),
    };
    let mut b = Active {
        io: b,
        start,
        last: Arc::clone(&last),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let seen = last.load(Ordering::Relaxed);
        // Checked: `idle` comes from configuration; a deadline past what `Instant` can hold
        // means the tunnel never goes idle.
        let deadline = start
            .checked_add(Duration::from_millis(seen))
            .and_then(|t| t.checked_add(idle));
        tokio::select! {
            r = &mut copy => {
                if let Err(e) = r {
                    debug!(error = %e, "upgraded connection ended");
                }
                return End::Closed;
            }
            _ = sleep_until(deadline) => {
                if last.load(Ordering::Relaxed) == seen {
                    return End::Idle;
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// An I/O object that records when bytes last moved through it.
struct Active<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Active<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn traffic_keeps_a_tunnel_open_and_silence_closes_it() {
        let (mut client, a) = tokio::io::duplex(1024);
        let (b, mut server) = tokio::io::duplex(1024);
        let idle = Duration::from_millis(300);
        let tunnel = tokio::spawn(splice(a, b, idle));
        // 1.2 s of traffic every 100 ms, alternately each way: four idle timeouts long.
        let mut buf = [0u8; 4];
        for i in 0..12 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if i % 2 == 0 {
                client.write_all(b"ping").await.unwrap();
                server.read_exact(&mut buf).await.unwrap();
            } else {
                server.write_all(b"pong").await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
            }
        }
        assert!(!tunnel.is_finished());
        let quiet = std::time::Instant::now();
        let end = tokio::time::timeout(Duration::from_secs(5), tunnel)
            .await
            .expect("idle tunnel closed")
            .unwrap();
        assert_eq!(end, End::Idle);
        assert!(quiet.elapsed() >= Duration::from_millis(250));
        // Both sides see the close.
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_idle_timeout_past_what_instant_holds_keeps_the_tunnel_working() {
        // `proxy-read-timeout: "99999999999"` and beyond: the tunnel task must neither panic
        // nor close, and bytes keep flowing both ways.
        for idle in [Duration::from_secs(99_999_999_999), Duration::MAX] {
            let (mut client, a) = tokio::io::duplex(64);
            let (b, mut server) = tokio::io::duplex(64);
            let tunnel = tokio::spawn(splice(a, b, idle));
            let mut buf = [0u8; 4];
            for _ in 0..3 {
                client.write_all(b"ping").await.unwrap();
                server.read_exact(&mut buf).await.unwrap();
                server.write_all(b"pong").await.unwrap();
                client.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"pong");
            }
            assert!(!tunnel.is_finished(), "{idle:?}");
            drop((client, server));
            let end = tokio::time::timeout(Duration::from_secs(5), tunnel).await;
            assert_eq!(end.expect("ends on close").expect("no panic"), End::Closed);
        }
    }

    #[tokio::test]
    async fn a_closed_tunnel_ends_without_waiting() {
        let (client, a) = tokio::io::duplex(64);
        let (b, server) = tokio::io::duplex(64);
        drop((client, server));
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            splice(a, b, Duration::from_secs(3600)),
        )
        .await;
        assert_eq!(end, Ok(End::Closed));
    }
}
