//! The listener set through a real proxy on loopback: Gateway ports open and close as
//! snapshots say, and a port that cannot be bound is reported and taken once it frees up.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::atomic::{AtomicU16, Ordering::Relaxed},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};

use crate::{
    model::{L7Config, ListenerProtocol, Snapshot},
    proxy::{AccessLogFormat, Proxy, ProxyArgs, ProxyHandle},
};

async fn start() -> (ProxyHandle, oneshot::Sender<()>) {
    start_on("127.0.0.1").await
}

async fn start_on(listen_address: &str) -> (ProxyHandle, oneshot::Sender<()>) {
    let args = ProxyArgs {
        listen_address: listen_address.parse().unwrap(),
        ports: crate::proxy::args::ListenerPorts::at(0, 0),
        access_log_format: AccessLogFormat::Off,
        // Two sockets per port (SO_REUSEPORT), whatever the machine's core count.
        proxy_workers: 2,
        ..ProxyArgs::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let proxy = Proxy::start(args, async move {
        let _ = rx.await;
    })
    .await
    .expect("proxy starts");
    (proxy, tx)
}

fn with_ports(version: u64, ports: &[(u16, ListenerProtocol)]) -> std::sync::Arc<Snapshot> {
    std::sync::Arc::new(Snapshot {
        version,
        l7: L7Config {
            gateway_listeners: ports.iter().copied().collect(),
            ..L7Config::default()
        },
        ..Snapshot::default()
    })
}

/// A port nothing listens on now, below the kernel's ephemeral range (32768 up), so no
/// test's outgoing connection takes it before the proxy binds it, and never handed out
/// twice by this process (the proxy binds with SO_REUSEPORT, so two tests' proxies on one
/// port would split each other's connections).
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(0, (std::process::id() % 8000) as u16, Relaxed, Relaxed);
    (0..8000)
        .map(|_| 20_000 + NEXT.fetch_add(1, Relaxed) % 8000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 20000..28000")
}

/// The status line of a GET on `addr`, or the connection error.
async fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Waits (bounded) until `f` holds.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn gateway_ports_open_and_close_with_the_snapshot() {
    let (proxy, _stop) = start().await;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    proxy.apply(with_ports(1, &[(port, ListenerProtocol::Http)]));
    assert_eq!(proxy.gateway_listeners(), BTreeMap::from([(port, addr)]));
    // No HTTPRoute and no Ingress route on a Gateway port: 404, served by the proxy.
    assert_eq!(get(addr).await.unwrap(), "HTTP/1.1 404 Not Found");
    assert!(proxy.unbound_listeners().borrow().is_empty());
    proxy.apply(with_ports(2, &[]));
    assert!(proxy.gateway_listeners().is_empty());
    eventually("the port is closed", async || get(addr).await.is_err()).await;
    // The proxy's own port serves throughout.
    assert!(
        get(proxy.http_addr())
            .await
            .unwrap()
            .starts_with("HTTP/1.1 ")
    );
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_taken_when_it_frees_up() {
    let (proxy, _stop) = start().await;
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    proxy.apply(with_ports(1, &[(port, ListenerProtocol::Http)]));
    let unbound = proxy.unbound_listeners().borrow().clone();
    assert_eq!(unbound.keys().copied().collect::<Vec<_>>(), vec![port]);
    assert!(
        unbound[&port].to_lowercase().contains("in use"),
        "{unbound:?}"
    );
    assert!(proxy.gateway_listeners().is_empty());
    // The proxy keeps serving its own ports.
    assert!(
        get(proxy.http_addr())
            .await
            .unwrap()
            .starts_with("HTTP/1.1 ")
    );
    drop(holder);
    let mut rx = proxy.unbound_listeners();
    tokio::time::timeout(super::RETRY * 5, rx.wait_for(|u| u.is_empty()))
        .await
        .expect("bound on a retry")
        .expect("proxy alive");
    assert!(proxy.gateway_listeners().contains_key(&port));
    // Asked for no longer: nothing is reported for it.
    proxy.apply(with_ports(2, &[]));
    assert!(proxy.unbound_listeners().borrow().is_empty());
}

/// With two workers each port is two sockets the kernel spreads connections over: every
/// connection is answered (a socket nobody accepted on would leave about half of them
/// hanging), on the proxy's own port and on a Gateway port, and a closed Gateway port
/// refuses all of them.
#[tokio::test]
async fn every_workers_socket_accepts_and_closes() {
    let (proxy, _stop) = start().await;
    let port = free_port();
    let gateway: SocketAddr = ([127, 0, 0, 1], port).into();
    proxy.apply(with_ports(1, &[(port, ListenerProtocol::Http)]));
    for addr in [proxy.http_addr(), gateway] {
        // Each from a new source port: the kernel picks the socket by the 4-tuple's hash, so
        // 32 connections all on one of two sockets would be a 1 in 2^31 chance.
        let answers = futures::future::join_all((0..32).map(|_| get(addr))).await;
        for a in answers {
            assert!(a.expect("answered").starts_with("HTTP/1.1 "), "{addr}");
        }
    }
    proxy.apply(with_ports(2, &[]));
    // Each worker closes its own socket when it sees the snapshot: one refused connection
    // can come while the other worker's socket still accepts, so wait for all 32.
    eventually("every worker's socket is closed", async || {
        let answers = futures::future::join_all((0..32).map(|_| get(gateway))).await;
        answers.iter().all(|a| a.is_err())
    })
    .await;
}

/// ConfigMap `disable-ipv6` (ingress-nginx omits its `listen [::]:…` lines): under
/// `--listen-address ::` an IPv6 client is refused on the proxy's own port and on a Gateway
/// port while IPv4 clients are served throughout; `false` again opens IPv6.
#[tokio::test]
async fn disable_ipv6_refuses_ipv6_clients_and_keeps_ipv4() {
    let (proxy, _stop) = start_on("::").await;
    let own = proxy.http_addr().port();
    let gateway = free_port();
    let at = |ip: &str, port| SocketAddr::new(ip.parse().unwrap(), port);
    let snapshot = |version, disable_ipv6| {
        let mut s = (*with_ports(version, &[(gateway, ListenerProtocol::Http)])).clone();
        s.l7.settings.disable_ipv6 = disable_ipv6;
        std::sync::Arc::new(s)
    };
    proxy.apply(snapshot(1, false));
    for port in [own, gateway] {
        for ip in ["127.0.0.1", "::1"] {
            let answer = get(at(ip, port)).await;
            assert!(
                answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 ")),
                "{ip} {port}: {answer:?}"
            );
        }
    }
    assert_eq!(
        proxy.ipv6_listeners().len(),
        3,
        "own HTTP, HTTPS and the Gateway port"
    );

    proxy.apply(snapshot(2, true));
    assert!(proxy.ipv6_listeners().is_empty());
    for port in [own, gateway] {
        eventually("IPv6 refused", async || {
            get(at("::1", port))
                .await
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        })
        .await;
        let answer = get(at("127.0.0.1", port)).await;
        assert!(
            answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 ")),
            "{port}: {answer:?}"
        );
    }

    proxy.apply(snapshot(3, false));
    for port in [own, gateway] {
        let answer = get(at("::1", port)).await;
        assert!(
            answer.as_ref().is_ok_and(|a| a.starts_with("HTTP/1.1 ")),
            "{port}: {answer:?}"
        );
    }
}
