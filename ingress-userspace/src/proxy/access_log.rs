//! Access logs on stdout, one line per request, text or JSON; with the ConfigMap's
//! `enable-syslog`, to its syslog server instead ([`super::syslog`]), as ingress-nginx's
//! nginx.tmpl writes `access_log syslog:server=...` in place of the file. Lines are written by
//! a background task (a full queue drops lines rather than slowing requests, counted in
//! `access_log_dropped_lines_total`); the entry is completed when the response body ends, so
//! it carries the bytes actually sent.

use std::{
    io::Write,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::{
    args::AccessLogFormat,
    metrics::{DroppedLogLabels, Metrics},
    syslog,
    upstream::BoxError,
    upstream::ProxyBody,
};
use crate::model::SyslogServer;

/// One request as logged.
#[derive(Debug, Default, Serialize)]
pub struct Entry {
    /// Seconds since the epoch, with milliseconds.
    pub time: f64,
    pub client: String,
    pub method: String,
    pub host: String,
    pub uri: String,
    pub protocol: String,
    pub status: u16,
    pub bytes_sent: u64,
    pub request_time: f64,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_status: Option<u16>,
    pub upstream_time: Option<f64>,
    pub ingress: Option<String>,
    pub service: Option<String>,
    pub request_id: String,
    pub user_agent: Option<String>,
    /// Why the proxy answered itself (no route, no endpoint, timeout...).
    pub reason: Option<String>,
}

#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
    /// Lines dropped because the queue was full.
    queue_full: Counter,
    /// The syslog server of the live settings (`None`: stdout).
    syslog: watch::Sender<Option<SyslogServer>>,
}

/// Lines sent to syslog per pass of the writer before it looks at the settings again.
const SYSLOG_BATCH: usize = 256;

impl AccessLog {
    /// Starts the writer task; `None` when logging is off (`--access-log-format off`, which
    /// also keeps lines from syslog).
    pub fn start(format: AccessLogFormat, metrics: &Metrics) -> Option<AccessLog> {
        if format == AccessLogFormat::Off {
            return None;
        }
        let dropped = |reason| {
            metrics
                .access_log_dropped
                .get_or_create(&DroppedLogLabels { reason })
                .clone()
        };
        let (tx, mut rx) = mpsc::channel::<Entry>(8192);
        let (syslog, to_syslog) = watch::channel(None::<SyslogServer>);
        let mut sender = syslog::Sender::new(dropped("syslog"));
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(e) = rx.recv().await {
                let server = to_syslog.borrow().clone();
                if let Some(server) = server {
                    let mut next = Some(e);
                    for _ in 0..SYSLOG_BATCH {
                        let Some(e) = next.take().or_else(|| rx.try_recv().ok()) else {
                            break;
                        };
                        buf.clear();
                        write_entry(&mut buf, &e, format);
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        sender.send(&server, &buf).await;
                    }
                    buf.clear();
                    continue;
                }
                write_entry(&mut buf, &e, format);
                while let Ok(e) = rx.try_recv() {
                    write_entry(&mut buf, &e, format);
                    if buf.len() > 60_000 {
                        break;
                    }
                }
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&buf);
                let _ = out.flush();
                buf.clear();
            }
        });
        Some(AccessLog {
            tx,
            queue_full: dropped("queue_full"),
            syslog,
        })
    }

    pub fn log(&self, e: Entry) {
        if self.tx.try_send(e).is_err() {
            self.queue_full.inc();
        }
    }

    /// Sends the lines written from now on to `server` (`None`: stdout).
    pub fn set_syslog(&self, server: Option<SyslogServer>) {
        self.syslog.send_if_modified(|s| {
            let changed = *s != server;
            *s = server;
            changed
        });
    }
}

fn write_entry(buf: &mut Vec<u8>, e: &Entry, format: AccessLogFormat) {
    if format == AccessLogFormat::Json {
        if serde_json::to_writer(&mut *buf, e).is_ok() {
            buf.push(b'\n');
        }
        return;
    }
    let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let _ = writeln!(
        buf,
        "{} - [{:.3}] \"{} {} {}\" {} {} {:.3} {} {} {} host={} id={} {}",
        e.client,
        e.time,
        e.method,
        e.uri,
        e.protocol,
        e.status,
        e.bytes_sent,
        e.request_time,
        dash(e.upstream_addr.map(|a| a.to_string())),
        dash(e.upstream_status.map(|s| s.to_string())),
        dash(e.upstream_time.map(|t| format!("{t:.3}"))),
        e.host,
        e.request_id,
        dash(e.reason.clone()),
    );
}

/// Whether the ConfigMap lets a request for `uri` (the target as sent) be logged:
/// `disable-access-log` off, and the target none of `skip-access-log-urls` (nginx.tmpl's
/// `$loggable` map on `$request_uri`; nginx's `map` compares strings ignoring case).
pub fn logs(disabled: bool, skip: &[String], uri: &http::Uri) -> bool {
    if disabled {
        return false;
    }
    let sent = uri.path_and_query().map_or("/", |p| p.as_str());
    !skip.iter().any(|u| u.eq_ignore_ascii_case(sent))
}

/// Whether a request no route takes is logged: ingress-nginx's default server (a host no rule
/// names, `no_host`, not through a Gateway listener) has `access_log off` in its location
/// unless `enable-access-log-for-default-backend: "true"` (`enabled`; controller.go, the
/// default server's root location `Logs.Access`). A named host's miss is answered by that
/// host's root location, which logs.
pub fn logs_miss(no_host: bool, gateway_listener: bool, enabled: bool) -> bool {
    !no_host || gateway_listener || enabled
}

pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A response body that counts what it sends and logs the entry when it is done or dropped.
pub struct LoggedBody {
    inner: ProxyBody,
    entry: Option<Entry>,
    started: Instant,
    log: Arc<AccessLog>,
}

impl LoggedBody {
    pub fn new(inner: ProxyBody, entry: Entry, started: Instant, log: Arc<AccessLog>) -> Self {
        LoggedBody {
            inner,
            entry: Some(entry),
            started,
            log,
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match (&polled, self.entry.as_mut()) {
            (Poll::Ready(Some(Ok(frame))), Some(e)) => {
                if let Some(data) = frame.data_ref() {
                    e.bytes_sent += data.len() as u64;
                }
            }
            // A body that ends in an error (a cut at the route's request deadline, a backend
            // that broke off): the line says why the answer is short.
            (Poll::Ready(Some(Err(err))), Some(e)) => {
                let why = format!("response body: {err}");
                e.reason = Some(match e.reason.take() {
                    Some(r) => format!("{r}; {why}"),
                    None => why,
                });
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.request_time = self.started.elapsed().as_secs_f64();
            self.log.log(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ingress-nginx's e2e defaultbackend/default_backend.go: a request for an unknown host
    /// (`Host: foo`) is logged only with `enable-access-log-for-default-backend: "true"`.
    #[test]
    fn the_default_servers_requests_are_logged_only_when_enabled() {
        assert!(!logs_miss(true, false, false));
        assert!(logs_miss(true, false, true));
        // A named host's miss (its root location) and a Gateway listener's: logged.
        assert!(logs_miss(false, false, false));
        assert!(logs_miss(true, true, false));
    }

    #[test]
    fn configmap_switches_decide_what_is_logged() {
        let uri = |u: &str| u.parse::<http::Uri>().expect("uri");
        let skip = vec!["/healthz".to_string(), "/ping?x=1".to_string()];
        assert!(logs(false, &[], &uri("/healthz")));
        assert!(!logs(true, &[], &uri("/anything")));
        assert!(!logs(false, &skip, &uri("/healthz")));
        assert!(
            !logs(false, &skip, &uri("/HealthZ")),
            "nginx map strings ignore case"
        );
        assert!(
            !logs(false, &skip, &uri("/ping?x=1")),
            "the target as sent, query included"
        );
        assert!(logs(false, &skip, &uri("/healthz/deep")));
        assert!(logs(false, &skip, &uri("/ping")));
    }

    fn entry() -> Entry {
        Entry {
            time: 1.5,
            client: "198.18.0.1".into(),
            method: "GET".into(),
            host: "a.test".into(),
            uri: "/x?y=1".into(),
            protocol: "HTTP/1.1".into(),
            status: 200,
            bytes_sent: 42,
            request_time: 0.002,
            upstream_addr: Some("10.0.0.1:8080".parse().unwrap()),
            upstream_status: Some(200),
            upstream_time: Some(0.001),
            ingress: Some("default/ing".into()),
            service: Some("default/web:80".into()),
            request_id: "abc".into(),
            user_agent: None,
            reason: None,
        }
    }

    #[test]
    fn json_and_text_lines() {
        let mut buf = Vec::new();
        write_entry(&mut buf, &entry(), AccessLogFormat::Json);
        let line = String::from_utf8(buf).unwrap();
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream_addr"], "10.0.0.1:8080");
        assert_eq!(v["bytes_sent"], 42);
        assert_eq!(v["ingress"], "default/ing");
        let mut buf = Vec::new();
        write_entry(&mut buf, &entry(), AccessLogFormat::Text);
        let line = String::from_utf8(buf).unwrap();
        assert!(
            line.starts_with(
                "198.18.0.1 - [1.500] \"GET /x?y=1 HTTP/1.1\" 200 42 0.002 10.0.0.1:8080 200 0.001"
            ),
            "{line}"
        );
    }

    /// A line that finds the writer's queue full is dropped, not waited for, and counted.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let log = AccessLog {
            tx,
            queue_full: Counter::default(),
            syslog: watch::channel(None).0,
        };
        log.log(entry());
        log.log(entry());
        log.log(entry());
        assert_eq!(log.queue_full.get(), 2);
    }

    /// A response body that ends in an error (cut at the route's request deadline, a
    /// backend that broke off) logs its line with the reason, after the proxy's own.
    #[tokio::test]
    async fn a_body_cut_short_logs_why() {
        use http_body_util::{BodyExt, StreamBody};
        let (tx, mut rx) = mpsc::channel(4);
        let log = Arc::new(AccessLog {
            tx,
            queue_full: Counter::default(),
            syslog: watch::channel(None).0,
        });
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err("deadline".into()),
        ];
        let body = StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
        let mut e = entry();
        e.reason = Some("HTTPRoute rule".into());
        let logged = LoggedBody::new(body, e, Instant::now(), log);
        assert!(logged.collect().await.is_err());
        let e = rx.recv().await.expect("logged when dropped");
        assert_eq!(e.bytes_sent, 42 + 4);
        assert_eq!(
            e.reason.as_deref(),
            Some("HTTPRoute rule; response body: deadline")
        );
    }
}
