//! Client-side limits: hyper's per-protocol settings (header read timeout against slowloris,
//! header size, concurrent HTTP/2 streams) and an idle-connection watchdog fed by an I/O
//! wrapper that stamps the time of the last byte moved.

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

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto::Builder,
};

use super::{args::ProxyArgs, upstream::health::now_ms};

/// hyper's smallest accepted HTTP/1 read buffer.
const MIN_H1_BUF: usize = 8192;

/// The connection builder with the configured limits.
pub fn server_builder(args: &ProxyArgs) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(args.client_header_timeout)
        .max_buf_size((args.max_header_bytes as usize).max(MIN_H1_BUF));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(args.max_concurrent_streams)
        .max_header_list_size(args.max_header_bytes.min(u64::from(u32::MAX)) as u32);
    // No HTTP/2 PINGs: their traffic would keep idle connections from ever looking idle to
    // the idle watchdog (listener.rs), which closes them after --keepalive-timeout.
    b
}

/// Time of the last read or write on a connection, in [`now_ms`] milliseconds.
#[derive(Clone, Debug)]
pub struct Activity(Arc<AtomicU64>);

impl Activity {
    pub fn new() -> Self {
        Activity(Arc::new(AtomicU64::new(now_ms())))
    }
    pub fn touch(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// I/O that records activity on every byte moved.
pub struct IdleIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T, activity: Activity) -> Self {
        IdleIo { inner, activity }
    }
}

impl<T: Read + Unpin> Read for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }
}

impl<T: Write + Unpin> Write for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
