//! How requests reach the pod, as ingress-nginx's upstream annotations and ConfigMap keys say:
//! `backend-protocol: AUTO_HTTP`, `proxy-http-version`, `proxy-request-buffering` (and the
//! ConfigMap keys of the same names). The proxy runs in-process on loopback; the pods are raw
//! TCP listeners that record the bytes they receive, so the tests see the request line, the
//! framing and when the request arrived.

mod l7common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::StatusCode;
use l7common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A pod that records every connection's bytes and answers each complete request (framed by
/// `Content-Length` or chunked coding) with `answer`; `close` closes the connection after it.
#[derive(Clone)]
struct RawPod {
    addr: SocketAddr,
    /// Bytes received, one entry per connection, in accept order.
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawPod {
    async fn start(answer: &'static [u8], close: bool) -> RawPod {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pod = RawPod {
            addr: l.local_addr().unwrap(),
            conns: Arc::default(),
        };
        let conns = Arc::clone(&pod.conns);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let i = {
                    let mut c = conns.lock().unwrap();
                    c.push(Vec::new());
                    c.len() - 1
                };
                tokio::spawn(serve(s, Arc::clone(&conns), i, answer, close));
            }
        });
        pod
    }

    /// Every byte received so far, all connections in order.
    fn received(&self) -> String {
        let c = self.conns.lock().unwrap();
        String::from_utf8_lossy(&c.concat()).to_string()
    }

    fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

async fn serve(
    mut s: TcpStream,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
    i: usize,
    answer: &[u8],
    close: bool,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while request_len(&buf).is_none() {
            match s.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    conns.lock().unwrap()[i].extend_from_slice(&chunk[..n]);
                }
                _ => return,
            }
        }
        let used = request_len(&buf).unwrap_or(buf.len());
        buf.drain(..used);
        if s.write_all(answer).await.is_err() || close {
            return;
        }
    }
}

/// The length of the first complete request in `buf` (head and body), if it is complete.
fn request_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if field("transfer-encoding:").is_some_and(|v| v.ends_with("chunked")) {
        let mut at = head_end;
        loop {
            let line_end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailer fields, then the empty line.
                let end = buf[at..].windows(2).position(|w| w == b"\r\n")?;
                if end == 0 {
                    return Some(at + 2);
                }
                let rest = buf[at..].windows(4).position(|w| w == b"\r\n\r\n")?;
                return Some(at + rest + 4);
            }
            if buf.len() < at + size + 2 {
                return None;
            }
            at += size + 2;
        }
    }
    let len: usize = field("content-length:").map_or(Some(0), |v| v.parse().ok())?;
    (buf.len() >= head_end + len).then_some(head_end + len)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A Service `web` with one pod per address, and an Ingress for `host` with `annotations`
/// (names without prefix, set under `nginx.ingress.kubernetes.io/`).
fn manifests(host: &str, pods: &[SocketAddr], annotations: &[(&str, &str)]) -> String {
    let mut service = service_yaml("web", pods[0]);
    for (i, p) in pods.iter().enumerate().skip(1) {
        service.push_str(&format!(
            r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-{n}
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- {{addresses: ["{ip}"], conditions: {{ready: true}}, targetRef: {{kind: Pod, name: web-{n}}}}}
---
"#,
            n = i + 1,
            port = p.port(),
            ip = p.ip(),
        ));
    }
    let ann = nginx_annotations_yaml(annotations);
    format!(
        r#"{service}apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

/// The controller ConfigMap `ingress-nginx/cm` with `data`, read as `--configmap` would.
fn with_configmap(yaml: &str, data: &[(&str, &str)]) -> Arc<xdp_ingress::model::Snapshot> {
    let yaml = format!("{yaml}{}", configmap_yaml(data));
    translate_manifests(1, &yaml, |c| {
        c.configmap = Some(xdp_ingress::store::Key::new("ingress-nginx", "cm"))
    })
}

async fn proxy_for(yaml: &str) -> TestProxy {
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(translate_manifests(1, yaml, |_| {}));
    proxy
}

/// Waits until `pod` has received something, at most `wait`.
async fn first_bytes(pod: &RawPod, wait: Duration) -> String {
    let deadline = tokio::time::Instant::now() + wait;
    while pod.received().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pod.received()
}

/// `backend-protocol: AUTO_HTTP` is ingress-nginx's `proxy_pass $scheme://`: the pod is spoken
/// to over TLS when the client's connection to the ingress is TLS, in plain HTTP otherwise.
/// (`HTTP` stays plain either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_http_follows_the_client_connections_scheme() {
    for (protocol, https_reaches_pod_as_tls) in [("AUTO_HTTP", true), ("HTTP", false)] {
        let pod = RawPod::start(OK, false).await;
        let proxy = proxy_for(&manifests(
            "auto.test",
            &[pod.addr],
            &[("backend-protocol", protocol)],
        ))
        .await;
        // Plain HTTP in: plain HTTP to the pod.
        let g = get(&http1_client(), proxy.http(), "auto.test", "/plain").await;
        assert_eq!(g.status, StatusCode::OK, "{protocol}");
        assert!(
            pod.received().starts_with("GET /plain HTTP/1.1\r\n"),
            "{protocol}: {:?}",
            pod.received()
        );
        // TLS in: a TLS ClientHello (handshake record 0x16, version 3.x) reaches the pod.
        let pod = RawPod::start(OK, false).await;
        proxy.handle.apply(translate_manifests(
            2,
            &manifests("auto.test", &[pod.addr], &[("backend-protocol", protocol)]),
            |_| {},
        ));
        let (tls, _) = tls_connect(proxy.https(), "auto.test", &[b"http/1.1"]).await;
        let g = tokio::time::timeout(
            Duration::from_secs(10),
            request_over(tls, false, req(proxy.https(), "auto.test", "/tls")),
        )
        .await
        .expect("answered");
        let seen = first_bytes(&pod, Duration::from_secs(2)).await;
        let bytes = seen.as_bytes();
        if https_reaches_pod_as_tls {
            assert!(
                bytes.len() > 2 && bytes[0] == 0x16 && bytes[1] == 0x03,
                "{protocol}: a TLS handshake, got {seen:?}"
            );
            // The raw pod speaks no TLS: the handshake never completes, and
            // `proxy-connect-timeout` bounds it, as nginx's does: 504.
            assert_eq!(g.status, StatusCode::GATEWAY_TIMEOUT, "{protocol}");
        } else {
            assert!(
                seen.starts_with("GET /tls HTTP/1.1\r\n"),
                "{protocol}: {seen:?}"
            );
            assert_eq!(g.status, StatusCode::OK, "{protocol}");
        }
    }
}

/// `proxy-http-version: "1.0"` (nginx `proxy_http_version 1.0`): the pod gets `HTTP/1.0`
/// request lines, one connection per request (no keep-alive), and bodies with a
/// `Content-Length`, never chunked (RFC 1945 has no chunked coding) — a chunked body is read
/// whole for that even with `proxy-request-buffering: off`, as nginx does. The pod's
/// HTTP/1.0 answer, delimited by closing the connection, reaches the client whole. The
/// default (1.1) keeps one connection for both requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_http_version_1_0_request_line_no_keepalive_and_a_length() {
    const V10: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from 1.0";
    let pod = RawPod::start(V10, true).await;
    let proxy = proxy_for(&manifests(
        "v10.test",
        &[pod.addr],
        &[
            ("proxy-http-version", "1.0"),
            ("proxy-request-buffering", "off"),
        ],
    ))
    .await;
    let c = http1_client();
    for path in ["/one", "/two"] {
        let g = get(&c, proxy.http(), "v10.test", path).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(&g.body[..], b"hello from 1.0");
    }
    // A chunked upload from an HTTP/1.1 client, then another request on the same client
    // connection: the pod's HTTP/1.0 answer reaches it as HTTP/1.1, chunked (its length
    // was unknown), and the client's connection stays open.
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: v10.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_h1_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello from 1.0\r\n0\r\n\r\n"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    s.write_all(b"GET /again HTTP/1.1\r\nHost: v10.test\r\n\r\n")
        .await
        .unwrap();
    let again = read_h1_response(&mut s).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let conns = pod.conns.lock().unwrap().clone();
    let conns: Vec<String> = conns
        .iter()
        .map(|c| String::from_utf8_lossy(c).to_string())
        .collect();
    assert_eq!(conns.len(), 4, "one connection per request: {conns:?}");
    assert!(
        conns[0].starts_with("GET /one HTTP/1.0\r\n"),
        "{}",
        conns[0]
    );
    assert!(
        conns[1].starts_with("GET /two HTTP/1.0\r\n"),
        "{}",
        conns[1]
    );
    let post = conns[2].to_ascii_lowercase();
    assert!(post.starts_with("post /up http/1.0\r\n"), "{post}");
    assert!(post.contains("\r\ncontent-length: 11\r\n"), "{post}");
    assert!(!post.contains("transfer-encoding"), "{post}");
    assert!(post.ends_with("\r\n\r\nhello world"), "{post}");
    assert!(
        conns[3].starts_with("GET /again HTTP/1.0\r\n"),
        "{}",
        conns[3]
    );

    // The default: HTTP/1.1, both requests on one kept-alive connection.
    let pod = RawPod::start(OK, false).await;
    proxy.handle.apply(translate_manifests(
        2,
        &manifests("v10.test", &[pod.addr], &[]),
        |_| {},
    ));
    for path in ["/one", "/two"] {
        assert_eq!(
            get(&c, proxy.http(), "v10.test", path).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(pod.connections(), 1);
    assert!(pod.received().starts_with("GET /one HTTP/1.1\r\n"));
}

/// The ConfigMap key `proxy-http-version` is the default of every Ingress; the annotation
/// overrides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_http_version_configmap_key_and_annotation_override() {
    for (annotation, expect) in [(None, "HTTP/1.0"), (Some("1.1"), "HTTP/1.1")] {
        let pod = RawPod::start(OK, false).await;
        let ann: Vec<(&str, &str)> = annotation
            .map(|v| ("proxy-http-version", v))
            .into_iter()
            .collect();
        let proxy = TestProxy::start(TestProxy::quiet_args()).await;
        proxy.handle.apply(with_configmap(
            &manifests("cm.test", &[pod.addr], &ann),
            &[("proxy-http-version", "1.0")],
        ));
        let g = get(&http1_client(), proxy.http(), "cm.test", "/").await;
        assert_eq!(g.status, StatusCode::OK);
        assert!(
            pod.received().starts_with(&format!("GET / {expect}\r\n")),
            "{annotation:?}: {}",
            pod.received()
        );
    }
}

/// Sends a chunked upload in two halves with a pause between; returns what the pod had
/// received during the pause, and after the end the answer and what the pod received.
async fn upload_in_two_halves(proxy: SocketAddr, host: &str, pod: &RawPod) -> (String, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"5\r\nfirst\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let during = pod.received();
    s.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    let answer = read_h1_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    (during, pod.received())
}

/// ingress-nginx buffers request bodies by default (`proxy-request-buffering: on`): a client
/// sending its body slowly occupies the ingress, not the pod, which gets nothing until the
/// last byte and then the whole request with a `Content-Length` (the client's chunked
/// framing is gone). With `off` (annotation, or the ConfigMap key) the pod sees the request
/// head while the body is still coming, chunked as the client sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_buffering_holds_a_slow_upload_until_its_last_byte() {
    // The default: buffered.
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("buf.test", &[pod.addr], &[])).await;
    let (during, after) = upload_in_two_halves(proxy.http(), "buf.test", &pod).await;
    assert_eq!(during, "", "nothing reaches the pod before the last byte");
    assert_eq!(pod.connections(), 1);
    let after = after.to_ascii_lowercase();
    assert!(after.starts_with("post /upload http/1.1\r\n"), "{after}");
    assert!(after.contains("\r\ncontent-length: 11\r\n"), "{after}");
    assert!(!after.contains("transfer-encoding"), "{after}");
    assert!(after.ends_with("\r\n\r\nfirstsecond"), "{after}");

    // `off`, by annotation and by the ConfigMap key: streamed.
    for how in ["annotation", "configmap"] {
        let pod = RawPod::start(OK, false).await;
        let proxy = TestProxy::start(TestProxy::quiet_args()).await;
        let snap = if how == "annotation" {
            translate_manifests(
                1,
                &manifests(
                    "buf.test",
                    &[pod.addr],
                    &[("proxy-request-buffering", "off")],
                ),
                |_| {},
            )
        } else {
            with_configmap(
                &manifests("buf.test", &[pod.addr], &[]),
                &[("proxy-request-buffering", "off")],
            )
        };
        proxy.handle.apply(snap);
        let (during, after) = upload_in_two_halves(proxy.http(), "buf.test", &pod).await;
        let during = during.to_ascii_lowercase();
        assert!(
            during.starts_with("post /upload http/1.1\r\n"),
            "{how}: {during}"
        );
        assert!(
            during.contains("transfer-encoding: chunked"),
            "{how}: {during}"
        );
        assert!(
            after.ends_with("0\r\n\r\n") && after.contains("second"),
            "{how}: {after}"
        );
    }

    // An annotation `on` wins over the ConfigMap's `off`.
    let pod = RawPod::start(OK, false).await;
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    proxy.handle.apply(with_configmap(
        &manifests(
            "buf.test",
            &[pod.addr],
            &[("proxy-request-buffering", "on")],
        ),
        &[("proxy-request-buffering", "off")],
    ));
    let (during, _) = upload_in_two_halves(proxy.http(), "buf.test", &pod).await;
    assert_eq!(during, "");
}

/// With buffering, `Expect: 100-continue` is the ingress's to answer: the client gets
/// `100 Continue` before any pod is contacted, and the pod gets the whole body without
/// `Expect` (nginx reads the body itself and never passes `Expect` on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_the_ingress_when_buffering() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("expect.test", &[pod.addr], &[])).await;
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        b"PUT /f HTTP/1.1\r\nHost: expect.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    let mut interim = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert_eq!(&interim[..], b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(pod.connections(), 0, "no pod before the body");
    s.write_all(b"data").await.unwrap();
    let answer = read_h1_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = pod.received().to_ascii_lowercase();
    assert!(!got.contains("expect:"), "{got}");
    assert!(
        got.contains("\r\ncontent-length: 4\r\n") && got.ends_with("\r\n\r\ndata"),
        "{got}"
    );
}

/// With buffering, a body over `proxy-body-size` is refused (413) before any pod is
/// contacted, even when it is chunked and its size shows only as it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_body_over_the_limit_never_reaches_the_pod() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests(
        "limit.test",
        &[pod.addr],
        &[("proxy-body-size", "10")],
    ))
    .await;
    let answer = raw(
        proxy.http(),
        b"POST / HTTP/1.1\r\nHost: limit.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(pod.connections(), 0, "{:?}", pod.received());
}

/// A buffered body can be sent again: a PUT whose first pod read it whole and then dropped
/// the connection without answering is retried on the other pod with the same body (PUT is
/// idempotent; nginx resends its buffered body the same way). Without buffering the body was
/// gone once the first pod had read it, and the client got 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffered_body_is_resent_to_the_next_pod() {
    // Reads a whole request, then closes without a word.
    let dropper = RawPod::start(b"", true).await;
    let good = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("retry.test", &[dropper.addr, good.addr], &[])).await;
    for i in 0..4 {
        let answer = raw(
            proxy.http(),
            format!(
                "PUT /doc/{i} HTTP/1.1\r\nHost: retry.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                 7\r\npayload\r\n0\r\n\r\n"
            )
            .as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "request {i}: {answer}");
    }
    assert!(
        dropper.connections() > 0,
        "the dropping pod took some first attempts"
    );
    let good_got = good.received().to_ascii_lowercase();
    assert_eq!(good_got.matches("\r\n\r\npayload").count(), 4, "{good_got}");
    assert_eq!(
        good_got.matches("content-length: 7\r\n").count(),
        4,
        "{good_got}"
    );
}

/// gRPC keeps streaming with request buffering on (its default): nginx's `grpc_pass` never
/// buffers a request body, and a client-streaming RPC needs its messages to reach the pod as
/// they are sent. The pod gets the request head and the first message while the client is
/// still sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_with_request_buffering_on() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::{body::Frame, service::service_fn};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    // An HTTP/2 (h2c) pod that reports each request head and each body frame as it arrives.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let seen_tx = seen_tx.clone();
                    async move {
                        let _ = seen_tx.send(format!("head {}", req.uri().path()));
                        let mut body = req.into_body();
                        while let Some(Ok(f)) = body.frame().await {
                            if let Some(d) = f.data_ref() {
                                let _ = seen_tx.send(format!("data {}", d.len()));
                            }
                        }
                        let resp = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(http_body_util::Empty::<Bytes>::new())
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let proxy = proxy_for(&manifests(
        "grpc.test",
        &[pod],
        &[("backend-protocol", "GRPC")],
    ))
    .await;
    // An h2c client streaming its body: one message now, the rest later.
    let (body_tx, body_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    let body = StreamBody::new(tokio_stream_of(body_rx));
    let tcp = TcpStream::connect(proxy.http()).await.unwrap();
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method("POST")
        .uri("http://grpc.test/pkg.Svc/Upload")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let response = tokio::spawn(async move { client.send_request(request).await });
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x05hello"))))
        .await
        .unwrap();
    let within = Duration::from_secs(5);
    let first = tokio::time::timeout(within, seen.recv()).await;
    assert_eq!(
        first.ok().flatten().as_deref(),
        Some("head /pkg.Svc/Upload")
    );
    let second = tokio::time::timeout(within, seen.recv()).await;
    assert_eq!(
        second.ok().flatten().as_deref(),
        Some("data 10"),
        "streamed"
    );
    // Only now does the client finish its body.
    body_tx
        .send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x03end"))))
        .await
        .unwrap();
    drop(body_tx);
    let resp = tokio::time::timeout(within, response)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The receiving half of a channel as a stream (what `tokio_stream::wrappers` offers).
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `--request-buffer-bytes` bounds the memory one body may take: a body that grows past it is
/// streamed from there on (the pod sees the request before the body ends, nothing lost), and
/// toward an HTTP/1.0 pod, which needs a length, a chunked body past it is answered 411
/// without contacting the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_buffer_bytes_bounds_the_memory_of_one_body() {
    let args = xdp_ingress::proxy::ProxyArgs {
        request_buffer_bytes: 8,
        ..TestProxy::quiet_args()
    };
    let pod = RawPod::start(OK, false).await;
    let proxy = TestProxy::start(args.clone()).await;
    proxy.handle.apply(translate_manifests(
        1,
        &manifests("cap.test", &[pod.addr], &[]),
        |_| {},
    ));
    // 5 + 6 bytes: past the 8-byte cap once the second half arrives, so the pod's view
    // during the pause is empty, and the whole body arrives after.
    let (during, after) = upload_in_two_halves(proxy.http(), "cap.test", &pod).await;
    assert_eq!(during, "", "the first 5 bytes are within the cap");
    assert!(
        after.contains("\r\n5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"),
        "nothing lost: {after:?}"
    );
    let after = after.to_ascii_lowercase();
    assert!(
        after.contains("transfer-encoding: chunked"),
        "streamed: {after}"
    );
    assert!(after.ends_with("0\r\n\r\n"), "{after}");

    let pod = RawPod::start(OK, false).await;
    let proxy = TestProxy::start(args).await;
    proxy.handle.apply(translate_manifests(
        1,
        &manifests("cap.test", &[pod.addr], &[("proxy-http-version", "1.0")]),
        |_| {},
    ));
    let answer = raw(
        proxy.http(),
        b"POST / HTTP/1.1\r\nHost: cap.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          a\r\n0123456789\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 411"), "{answer}");
    assert_eq!(pod.connections(), 0);
    // With a Content-Length the body streams to the HTTP/1.0 pod whatever its size.
    let answer = raw(
        proxy.http(),
        b"POST / HTTP/1.1\r\nHost: cap.test\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = pod.received().to_ascii_lowercase();
    assert!(got.starts_with("post / http/1.0\r\n"), "{got}");
    assert!(
        got.contains("content-length: 10\r\n") && got.ends_with("0123456789"),
        "{got}"
    );
}

/// The value of the metric series `series` (name and labels as exposed) in `text`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Waits (at most 5 s) until the proxy's metric `series` is `want`; returns its last value.
async fn metric_reaches(proxy: &TestProxy, series: &str, want: f64) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = metric(&proxy.handle.metrics_text(), series);
        if got == Some(want) || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `--request-buffer-total-bytes` bounds the request bodies held in memory by all requests
/// together: while stalled uploads hold the budget, another body streams to the pod (nothing
/// lost, the right answer) and is counted in `unbuffered_requests_total{budget="proxy"}`; the
/// budget comes back when the requests end, and buffering resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_buffer_total_bytes_bounds_the_memory_of_all_bodies() {
    const HELD: &str = "xdp_ingress_request_buffer_bytes";
    const UNBUFFERED: &str = "xdp_ingress_unbuffered_requests_total{budget=\"proxy\"}";
    let args = xdp_ingress::proxy::ProxyArgs {
        request_buffer_total_bytes: 16,
        ..TestProxy::quiet_args()
    };
    let pod = RawPod::start(OK, false).await;
    let proxy = TestProxy::start(args).await;
    proxy.handle.apply(translate_manifests(
        1,
        &manifests("budget.test", &[pod.addr], &[]),
        |_| {},
    ));
    // A stalled upload declares 12 bytes: they are held before they arrive.
    let mut stalled = TcpStream::connect(proxy.http()).await.unwrap();
    stalled
        .write_all(
            b"POST /stalled HTTP/1.1\r\nHost: budget.test\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello ",
        )
        .await
        .unwrap();
    assert_eq!(metric_reaches(&proxy, HELD, 12.0).await, Some(12.0));
    assert_eq!(
        pod.connections(),
        0,
        "buffered: the pod waits for the whole body"
    );
    // Concurrent bodies that do not fit in the 4 bytes left stream to the pod, whole.
    let uploads: Vec<_> = (0..4).map(|i| {
        let addr = proxy.http();
        tokio::spawn(async move {
            let (framing, body) = if i % 2 == 0 {
                (
                    "Transfer-Encoding: chunked",
                    format!("5\r\nbody-\r\n2\r\n0{i}\r\n0\r\n\r\n"),
                )
            } else {
                ("Content-Length: 7", format!("body-0{i}"))
            };
            raw(
                addr,
                format!(
                    "POST /up/{i} HTTP/1.1\r\nHost: budget.test\r\n{framing}\r\nConnection: close\r\n\r\n{body}"
                )
                .as_bytes(),
                Duration::from_secs(10),
            )
            .await
        })
    }).collect();
    for (i, u) in uploads.into_iter().enumerate() {
        let answer = u.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "upload {i}: {answer}");
    }
    let got = pod.received();
    for i in 0..4 {
        assert!(
            got.contains(&format!("body-0{i}")) || got.contains(&format!("body-\r\n2\r\n0{i}")),
            "upload {i} reached the pod whole: {got:?}"
        );
    }
    // Each needed at least 5 bytes of the 4 left.
    let unbuffered = metric(&proxy.handle.metrics_text(), UNBUFFERED);
    assert_eq!(unbuffered, Some(4.0));
    // The stalled upload ends: its answer, and its budget back.
    stalled.write_all(b"world!").await.unwrap();
    let answer = read_h1_response(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(pod.received().contains("\r\n\r\nhello world!"));
    assert_eq!(metric_reaches(&proxy, HELD, 0.0).await, Some(0.0));
    // With the budget free again, a body is buffered: the pod gets it with a length.
    let answer = raw(
        proxy.http(),
        b"POST /after HTTP/1.1\r\nHost: budget.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = pod.received().to_ascii_lowercase();
    let after = &got[got.find("post /after").expect("reached the pod")..];
    // Up to the next request (pooled connections' bytes are listed in accept order).
    let after = &after[..after[1..].find("post /").map_or(after.len(), |e| e + 1)];
    assert!(
        after.contains("content-length: 3\r\n") && after.ends_with("abc"),
        "{after}"
    );
    assert_eq!(metric(&proxy.handle.metrics_text(), UNBUFFERED), unbuffered);
}

/// A transfer coding other than exactly `chunked` is 501 and the connection closes, as nginx
/// answers ("client sent unknown Transfer-Encoding"); hyper would decode the chunks and drop
/// the other codings, so the pod would get a body other than the one sent. RFC 9112 §6.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_chunked_are_501_and_close() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("te.test", &[pod.addr], &[])).await;
    for te in [
        "gzip, chunked",
        "foo, chunked",
        "identity, chunked",
        "chunked, chunked",
        ",chunked",
    ] {
        let mut s = TcpStream::connect(proxy.http()).await.unwrap();
        s.write_all(
            format!(
                "POST / HTTP/1.1\r\nHost: te.test\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let answer = read_h1_response(&mut s).await.to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 501"), "{te}: {answer}");
        assert!(
            answer.contains("\r\nconnection: close\r\n"),
            "{te}: {answer}"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(5)).await,
            "{te}: closed"
        );
    }
    assert_eq!(pod.connections(), 0, "{}", pod.received());
    // `chunked` itself, in any case, is served.
    let answer = raw(
        proxy.http(),
        b"POST / HTTP/1.1\r\nHost: te.test\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A pod's response with both `Content-Length` and `Transfer-Encoding`, or a coding other than
/// `chunked`, cannot be framed with certainty: 502, as nginx ("upstream sent
/// Content-Length and Transfer-Encoding at the same time"), never a body cut to the length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_answer_with_both_lengths_is_502() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let pod = RawPod::start(answer, false).await;
        let proxy = proxy_for(&manifests("both.test", &[pod.addr], &[])).await;
        let got = raw(
            proxy.http(),
            b"GET / HTTP/1.1\r\nHost: both.test\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(got.starts_with("HTTP/1.1 502"), "{got}");
        assert!(!got.contains("hel"), "{got}");
    }
}

/// TRACE is 405 in HTTP/1.1 and HTTP/2 and never reaches a pod, as nginx answers it: a pod
/// that echoes the request would show a script the cookies it may not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_is_405_and_never_reaches_the_pod() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("trace.test", &[pod.addr], &[])).await;
    let answer = raw(
        proxy.http(),
        b"TRACE / HTTP/1.1\r\nHost: trace.test\r\nCookie: s=1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 405"), "{answer}");
    let allow = answer
        .lines()
        .find_map(|l| l.strip_prefix("allow: "))
        .expect("Allow");
    assert!(!allow.contains("trace") && allow.contains("get"), "{allow}");
    let s = TcpStream::connect(proxy.http()).await.unwrap();
    let mut r = h2_req(proxy.http(), "trace.test", "/");
    *r.method_mut() = http::Method::TRACE;
    let got = request_over(s, true, r).await;
    assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(pod.connections(), 0);
}

/// HTTP/2 fields RFC 9113 §8.2.1 and §8.3.1 call malformed are 400 and never reach a pod: a
/// value with leading or trailing whitespace, a `:scheme` other than http or https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_fields_are_400() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("h2.test", &[pod.addr], &[])).await;
    for value in [" a", "a ", "\ta"] {
        let s = TcpStream::connect(proxy.http()).await.unwrap();
        let mut r = h2_req(proxy.http(), "h2.test", "/");
        r.headers_mut().insert("x-a", value.parse().unwrap());
        let got = request_over(s, true, r).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{value:?}");
    }
    let s = TcpStream::connect(proxy.http()).await.unwrap();
    let mut r = h2_req(proxy.http(), "h2.test", "/");
    *r.uri_mut() = format!("gopher://h2.test:{}/", proxy.http().port())
        .parse()
        .unwrap();
    let got = request_over(s, true, r).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(pod.connections(), 0);
    // A value with inner whitespace is fine.
    let s = TcpStream::connect(proxy.http()).await.unwrap();
    let mut r = h2_req(proxy.http(), "h2.test", "/");
    r.headers_mut().insert("x-a", "a b".parse().unwrap());
    assert_eq!(request_over(s, true, r).await.status, StatusCode::OK);
}

/// nginx counts no header lines, only bytes (`large_client_header_buffers`): an HTTP/1 head
/// of 150 short lines (under 2 KB) is served, as over HTTP/2, where hyper's fixed 100 lines
/// gave 431; past `--max-header-bytes` (64 KiB) it is still 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_short_header_lines_are_served_within_the_header_bytes() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("many.test", &[pod.addr], &[])).await;
    let mut head = String::from("GET / HTTP/1.1\r\nHost: many.test\r\nConnection: close\r\n");
    for i in 0..150 {
        head.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    assert!(head.len() < 2048);
    let answer = raw(proxy.http(), head.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(pod.received().contains("\r\nx-h149: 149\r\n"));
    // The same head in two writes: the proxy's first read sees a head not yet complete
    // (parsed with the counted arrays, as any head it cannot count whole: limits.rs).
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    let (first, rest) = head.as_bytes().split_at(100);
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: many.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = raw(proxy.http(), big.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// One answer read off `s`: its head (status line and fields, lowercased names) and its body
/// (`Content-Length` framed, as every answer here is); `None` when the connection closes first.
async fn answer_on(s: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
    Some((head, body))
}

/// Sends `head` as the first request of a connection, and on another connection after a
/// request that is served: each time it gets `status` and `body`, and the connection closes.
async fn refused_first_and_later(
    proxy: &TestProxy,
    host: &str,
    head: &str,
    status: &str,
    body: &str,
) {
    for later in [false, true] {
        let mut s = TcpStream::connect(proxy.http()).await.unwrap();
        if later {
            let ok = format!("GET /first HTTP/1.1\r\nHost: {host}\r\n\r\n");
            s.write_all(ok.as_bytes()).await.unwrap();
            let (h, _) = answer_on(&mut s).await.expect("first answer");
            assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        }
        s.write_all(head.as_bytes()).await.unwrap();
        let (h, b) = answer_on(&mut s).await.expect("an answer");
        let what = format!("later: {later}, head of {} bytes", head.len());
        assert!(h.starts_with(status), "{what}: {h}");
        assert!(
            h.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
            "{what}: {h}"
        );
        assert!(
            h.to_ascii_lowercase()
                .contains("\r\ncontent-type: text/html\r\n"),
            "{what}: {h}"
        );
        assert_eq!(b, body, "{what}");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{what}: not closed"
        );
    }
}

const PAGE_414: &str = "<html>\r\n<head><title>414 Request-URI Too Large</title></head>\r\n<body>\r\n\
    <center><h1>414 Request-URI Too Large</h1></center>\r\n</body>\r\n</html>\r\n";
const PAGE_494: &str = "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n\
    <body>\r\n<center><h1>400 Bad Request</h1></center>\r\n\
    <center>Request Header Or Cookie Too Large</center>\r\n</body>\r\n</html>\r\n";
const PAGE_400: &str = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n\
    <center><h1>400 Bad Request</h1></center>\r\n</body>\r\n</html>\r\n";

/// nginx's `client_header_buffer_size` / `large_client_header_buffers` (ingress-nginx's `1k`
/// and `4 8k`, and the ConfigMap keys): a request line longer than one large buffer is 414, a
/// header line longer than one, or a head the buffers cannot hold (no line split between two),
/// 400 "Request Header Or Cookie Too Large"; a field nginx takes once, sent twice, is 400.
/// Each with nginx's page, closing the connection, on its first request and on a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_are_held_to_nginx_header_buffers() {
    let pod = RawPod::start(OK, false).await;
    let yaml = manifests("heads.test", &[pod.addr], &[]);
    let proxy = proxy_for(&yaml).await;
    let head = |target: &str, fields: &[String]| {
        let mut h = format!("GET {target} HTTP/1.1\r\nHost: heads.test\r\n");
        for f in fields {
            h.push_str(f);
            h.push_str("\r\n");
        }
        h + "\r\n"
    };
    let field = |i: usize, value_len: usize| format!("X-{i}: {}", "v".repeat(value_len));
    // Served: a request line of exactly one large buffer (8192 bytes with its CRLF), a header
    // line likewise, and four lines of 7000 bytes (28 KB), one per large buffer.
    let line_8k = format!("/{}", "a".repeat(8192 - "GET / HTTP/1.1\r\n".len()));
    let served = [
        head(&line_8k, &[]),
        head("/", &[field(0, 8192 - "X-0: \r\n".len())]),
        head("/", &(0..4).map(|i| field(i, 7000)).collect::<Vec<_>>()),
    ];
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    for h in &served {
        s.write_all(h.as_bytes()).await.unwrap();
        let (answer, body) = answer_on(&mut s).await.expect("served on one connection");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{} bytes: {answer}",
            h.len()
        );
        assert_eq!(body, "ok");
    }
    let too_long_uri = head(&format!("{line_8k}b"), &[]);
    refused_first_and_later(
        &proxy,
        "heads.test",
        &too_long_uri,
        "HTTP/1.1 414 ",
        PAGE_414,
    )
    .await;
    let long_line = head("/", &[field(0, 8192 - "X-0: \r\n".len() + 1)]);
    refused_first_and_later(&proxy, "heads.test", &long_line, "HTTP/1.1 400 ", PAGE_494).await;
    // Five lines of 7000 bytes (35 KB): each needs a large buffer of its own.
    let five = head("/", &(0..5).map(|i| field(i, 7000)).collect::<Vec<_>>());
    refused_first_and_later(&proxy, "heads.test", &five, "HTTP/1.1 400 ", PAGE_494).await;
    // A cookie header of 20 KB (nginx's "Cookie" in the page's title).
    let cookie = head("/", &[format!("Cookie: a={}", "c".repeat(20_000))]);
    refused_first_and_later(&proxy, "heads.test", &cookie, "HTTP/1.1 400 ", PAGE_494).await;
    // A field nginx takes once, twice (nginx's "client sent duplicate header line"). Two
    // identical `Content-Length` lines are not among them: hyper keeps one before the proxy
    // sees the head (RFC 9112 section 6.3 lets a recipient do so).
    let duplicate = "GET /dup HTTP/1.1\r\nHost: heads.test\r\nAuthorization: Basic YTpi\r\n\
                     X-A: 1\r\nAuthorization: Basic YTpi\r\n\r\n";
    refused_first_and_later(&proxy, "heads.test", duplicate, "HTTP/1.1 400 ", PAGE_400).await;
    let pod_requests = pod.received().matches("GET /first ").count();
    assert_eq!(
        pod_requests, 5,
        "only the requests before each refused one reached the pod"
    );
    assert!(!pod.received().contains("GET /dup"));

    // HTTP/2: a value longer than the most one large buffer of Huffman-coded bytes decodes
    // to (8/5 of 8k) is a 400 with the page, on its stream; a 12 KB one, which nginx may take
    // Huffman-coded, is served.
    for (len, status) in [(12_000, StatusCode::OK), (14_000, StatusCode::BAD_REQUEST)] {
        let s = TcpStream::connect(proxy.http()).await.unwrap();
        let mut r = h2_req(proxy.http(), "heads.test", "/h2");
        r.headers_mut()
            .insert("cookie", format!("a={}", "c".repeat(len)).parse().unwrap());
        let got = request_over(s, true, r).await;
        assert_eq!(got.status, status, "{len}");
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(&got.body[..], PAGE_494.as_bytes());
        }
    }

    // The ConfigMap's buffers: a 512-byte client buffer and two of 1k.
    proxy.handle.apply(with_configmap(
        &yaml,
        &[
            ("client-header-buffer-size", "512"),
            ("large-client-header-buffers", "2 1k"),
        ],
    ));
    let line_1k = format!("/{}", "a".repeat(1024 - "GET / HTTP/1.1\r\n".len()));
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    for h in [head(&line_1k, &[]), head("/", &[field(0, 900)])] {
        s.write_all(h.as_bytes()).await.unwrap();
        let (answer, _) = answer_on(&mut s).await.expect("served on one connection");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{} bytes: {answer}",
            h.len()
        );
    }
    let uri = head(&format!("{line_1k}b"), &[]);
    refused_first_and_later(&proxy, "heads.test", &uri, "HTTP/1.1 414 ", PAGE_414).await;
    let three = head("/", &(0..3).map(|i| field(i, 600)).collect::<Vec<_>>());
    refused_first_and_later(&proxy, "heads.test", &three, "HTTP/1.1 400 ", PAGE_494).await;
    // An invalid value keeps the default (a Warning): the 8k line is served again.
    proxy.handle.apply(with_configmap(
        &yaml,
        &[("large-client-header-buffers", "4 8g")],
    ));
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(served[1].as_bytes()).await.unwrap();
    let (answer, _) = answer_on(&mut s).await.expect("served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Requests hyper refuses while parsing their head (400 for bytes no field may hold, 431 past
/// `--max-header-bytes`) are counted in `requests_total` with ingress, host and path `-`, as
/// nginx logs and counts its 400 and 494.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_refused_while_parsing_are_counted() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("bad.test", &[pod.addr], &[])).await;
    let series = |status: u16| {
        format!(
            "xdp_ingress_requests_total{{ingress=\"-\",host=\"-\",path=\"-\",status=\"{status}\"}}"
        )
    };
    let answer = raw(
        proxy.http(),
        b"GET / HTTP/1.1\r\nHost: bad.test\r\nX\0A: 1\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(metric_reaches(&proxy, &series(400), 1.0).await, Some(1.0));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: bad.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = raw(proxy.http(), big.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(metric_reaches(&proxy, &series(431), 1.0).await, Some(1.0));
    assert_eq!(pod.connections(), 0);
}

/// Plain HTTP sent to the HTTPS port gets nginx's `400 The plain HTTP request was sent to
/// HTTPS port` and the connection closes, instead of a TLS alert the client cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_https_port_is_400() {
    let pod = RawPod::start(OK, false).await;
    let proxy = proxy_for(&manifests("plain.test", &[pod.addr], &[])).await;
    let answer = raw(
        proxy.https(),
        b"GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("The plain HTTP request was sent to HTTPS port\n"),
        "{answer}"
    );
    assert_eq!(pod.connections(), 0);
    // TLS on the same port is served.
    let (tls, _) = tls_connect(proxy.https(), "plain.test", &[b"http/1.1"]).await;
    let got = request_over(tls, false, req(proxy.https(), "plain.test", "/")).await;
    assert_eq!(got.status, StatusCode::OK);
}

/// nginx ends keep-alive after an answer of its own of 400, 413, 414, 500 or 501
/// (`ngx_http_special_response_handler` sets `r->keepalive = 0`): the answer says
/// `Connection: close` and the connection closes. A pod's answer of the same status keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_400_and_413_answers_close_the_connection_as_nginx() {
    const POD_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad";
    let pod = RawPod::start(POD_400, false).await;
    let yaml = manifests("close.test", &[pod.addr], &[("proxy-body-size", "1k")]);
    let proxy = proxy_for(&yaml).await;
    let body = "b".repeat(2048);
    let own = [
        // An invalid path (a NUL byte, encoded): the proxy's 400.
        (
            "400",
            "GET /a%00b HTTP/1.1\r\nHost: close.test\r\n\r\n".to_string(),
        ),
        // A body past proxy-body-size: the proxy's 413.
        (
            "413",
            format!(
                "POST /up HTTP/1.1\r\nHost: close.test\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        ),
    ];
    for (status, request) in own {
        let mut s = TcpStream::connect(proxy.http()).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let (h, _) = answer_on(&mut s).await.expect("an answer");
        assert!(h.starts_with(&format!("HTTP/1.1 {status}")), "{h}");
        assert!(
            h.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
            "{status}: {h}"
        );
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{status}: not closed"
        );
    }
    // The pod's own 400 is proxied on a connection that stays open.
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /pod HTTP/1.1\r\nHost: close.test\r\n\r\n")
            .await
            .unwrap();
        let (h, b) = answer_on(&mut s).await.expect("the pod's answer, twice");
        assert!(h.starts_with("HTTP/1.1 400"), "{h}");
        assert!(!h.to_ascii_lowercase().contains("connection: close"), "{h}");
        assert_eq!(b, "bad");
    }
}
