//! Echo servers that run inside a namespace and say which pod answered, so tests can see where a
//! connection landed.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context;

use crate::Netns;

const POLL: Duration = Duration::from_millis(20);

/// A running server; stopped and joined on drop.
pub struct EchoServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// TCP: on accept writes `"<name>\n"`, then echoes every byte until the peer closes.
    pub fn tcp(ns: &Netns, addr: SocketAddr, name: &str) -> anyhow::Result<EchoServer> {
        let listener = ns
            .enter(|| TcpListener::bind(addr))
            .with_context(|| format!("binding TCP {addr} in {}", ns.name))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (stop3, name) = (stop2.clone(), name.clone());
                        std::thread::spawn(move || serve_tcp(conn, &name, &stop3));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        Ok(EchoServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// UDP: replies `"<name>:"` followed by the datagram.
    pub fn udp(ns: &Netns, addr: SocketAddr, name: &str) -> anyhow::Result<EchoServer> {
        let sock = ns
            .enter(|| UdpSocket::bind(addr))
            .with_context(|| format!("binding UDP {addr} in {}", ns.name))?;
        sock.set_read_timeout(Some(POLL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, prefix) = (stop.clone(), format!("{name}:"));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let mut reply = prefix.clone().into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        Ok(EchoServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

fn serve_tcp(mut conn: std::net::TcpStream, name: &str, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
    if conn.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
