//! The PROXY protocol header a TCP load balancer puts before a connection's first byte
//! (HAProxy's proxy-protocol.txt, versions 1 and 2; ingress-nginx `use-proxy-protocol`).
//!
//! The header is read off the socket before TLS or HTTP, consuming exactly its bytes: it is
//! peeked at, and only bytes known to belong to it are read, so what follows stays in the
//! socket for the TLS or HTTP layer. As nginx's `listen ... proxy_protocol`, a connection
//! whose first bytes are not a valid header is closed.

use std::{io, net::SocketAddr, time::Duration};

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::{io::AsyncReadExt, net::TcpStream};

/// Largest header accepted: a v2 header's 16 fixed bytes plus its 16-bit length.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed before a complete PROXY protocol header")]
    Closed,
    #[error("not a valid PROXY protocol header: {0}")]
    Invalid(String),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// The two ends of the original connection a PROXY header names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proxied {
    /// The original client (nginx `$proxy_protocol_addr`, `$proxy_protocol_port`).
    pub source: SocketAddr,
    /// The address the client connected to on the balancer (nginx
    /// `$proxy_protocol_server_addr`, `$proxy_protocol_server_port`): its port is what
    /// ingress-nginx passes on as `X-Forwarded-Port`, and 443 makes the scheme `https`.
    pub destination: SocketAddr,
}

/// Reads the header within `timeout`. Returns the original connection's ends: `None` for a
/// header without them (v1 `UNKNOWN`, v2 `LOCAL`, or a family other than TCP over IPv4/IPv6),
/// which means the connection's own peer is the client.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<Proxied>, ProxyHeaderError> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout(timeout))?
}

async fn read(stream: &mut TcpStream) -> Result<Option<Proxied>, ProxyHeaderError> {
    // Bytes already consumed: all known to be part of the header.
    let mut seen: Vec<u8> = Vec::with_capacity(256);
    let mut peeked = [0u8; 512];
    loop {
        let n = stream.peek(&mut peeked).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        let mut candidate = seen.clone();
        candidate.extend_from_slice(&peeked[..n]);
        let parsed = HeaderResult::parse(&candidate);
        if parsed.is_incomplete() {
            // An incomplete header has not ended yet, so every peeked byte belongs to it.
            if candidate.len() > MAX_HEADER {
                return Err(ProxyHeaderError::Invalid("header too long".into()));
            }
            stream.read_exact(&mut peeked[..n]).await?;
            seen.extend_from_slice(&peeked[..n]);
            continue;
        }
        let (len, source) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h)),
            HeaderResult::V1(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
        };
        // Consume the rest of the header, leaving what follows it in the socket.
        let mut rest = vec![0u8; len.saturating_sub(seen.len())];
        stream.read_exact(&mut rest).await?;
        return Ok(source);
    }
}

fn v1_source(a: &v1::Addresses) -> Option<Proxied> {
    match a {
        v1::Addresses::Tcp4(a) => Some(Proxied {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v1::Addresses::Tcp6(a) => Some(Proxied {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(h: &v2::Header<'_>) -> Option<Proxied> {
    // LOCAL: the balancer's own connection (health checks); the receiver uses the real peer.
    if h.command == v2::Command::Local {
        return None;
    }
    match h.addresses {
        v2::Addresses::IPv4(a) => Some(Proxied {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v2::Addresses::IPv6(a) => Some(Proxied {
            source: SocketAddr::from((a.source_address, a.source_port)),
            destination: SocketAddr::from((a.destination_address, a.destination_port)),
        }),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    /// Connects, sends `chunks` (pausing between them), then reads the header on the server
    /// side; returns its result and the bytes that followed it.
    async fn exchange(
        chunks: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> (Result<Option<Proxied>, ProxyHeaderError>, Vec<u8>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            for ch in chunks {
                c.write_all(&ch).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            c.shutdown().await.unwrap();
            // Keep the socket open until the server is done.
            let _ = c.read_to_end(&mut Vec::new()).await;
        });
        let (mut s, _) = l.accept().await.unwrap();
        let r = read_header(&mut s, timeout).await;
        let mut after = Vec::new();
        if r.is_ok() {
            s.read_to_end(&mut after).await.unwrap();
        }
        drop(s);
        client.await.unwrap();
        (r, after)
    }

    fn v2(cmd: u8, fam: u8, addrs: &[u8], tlv: &[u8]) -> Vec<u8> {
        let mut h = v2::PROTOCOL_PREFIX.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlv.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlv);
        h
    }

    const SECS: Duration = Duration::from_secs(5);

    fn ends(source: &str, destination: &str) -> Option<Proxied> {
        Some(Proxied {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        })
    }

    #[tokio::test]
    async fn v1_tcp4_tcp6_and_unknown() {
        let (r, after) = exchange(
            vec![b"PROXY TCP4 198.51.100.7 10.0.0.1 4711 80\r\nGET / HTTP/1.1\r\n".to_vec()],
            SECS,
        )
        .await;
        assert_eq!(r.unwrap(), ends("198.51.100.7:4711", "10.0.0.1:80"));
        assert_eq!(after, b"GET / HTTP/1.1\r\n", "what follows stays for HTTP");
        let (r, _) = exchange(
            vec![b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n".to_vec()],
            SECS,
        )
        .await;
        assert_eq!(r.unwrap(), ends("[2001:db8::7]:4711", "[2001:db8::1]:443"));
        let (r, after) = exchange(vec![b"PROXY UNKNOWN\r\nX".to_vec()], SECS).await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(after, b"X");
    }

    #[tokio::test]
    async fn v1_split_across_segments() {
        let (r, after) = exchange(
            vec![
                b"PRO".to_vec(),
                b"XY TCP4 198.51.100.7 ".to_vec(),
                b"10.0.0.1 4711 80\r\n\x16\x03".to_vec(),
            ],
            SECS,
        )
        .await;
        assert_eq!(r.unwrap(), ends("198.51.100.7:4711", "10.0.0.1:80"));
        assert_eq!(after, b"\x16\x03");
    }

    #[tokio::test]
    async fn v2_ipv4_ipv6_local_and_tlvs() {
        let v4 = [198, 51, 100, 7, 10, 0, 0, 1, 0x12, 0x67, 0, 80];
        let (r, after) = exchange(vec![v2(1, 0x11, &v4, &[]), b"tail".to_vec()], SECS).await;
        assert_eq!(r.unwrap(), ends("198.51.100.7:4711", "10.0.0.1:80"));
        assert_eq!(after, b"tail");

        let mut v6 = Vec::new();
        v6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0x12, 0x67, 1, 187]);
        // A NOOP TLV after the addresses is part of the header.
        let (r, after) =
            exchange(vec![v2(1, 0x21, &v6, &[4, 0, 1, 42]), b"x".to_vec()], SECS).await;
        assert_eq!(r.unwrap(), ends("[2001:db8::7]:4711", "[::1]:443"));
        assert_eq!(after, b"x");

        // LOCAL (a balancer's health check): no client address, the peer is the client.
        let (r, after) = exchange(vec![v2(0, 0x00, &[], &[]), b"y".to_vec()], SECS).await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(after, b"y");

        // Header split inside the fixed part and inside the addresses.
        let whole = v2(1, 0x11, &v4, &[]);
        let (r, after) = exchange(
            vec![
                whole[..7].to_vec(),
                whole[7..20].to_vec(),
                [&whole[20..], b"z"].concat(),
            ],
            SECS,
        )
        .await;
        assert_eq!(r.unwrap(), ends("198.51.100.7:4711", "10.0.0.1:80"));
        assert_eq!(after, b"z");
    }

    #[tokio::test]
    async fn garbage_plain_http_and_tls_are_refused() {
        for bytes in [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            b"PROXY TCP4 not-an-ip 10.0.0.1 4711 80\r\n".to_vec(),
            b"PROXY TCP4 198.51.100.7 10.0.0.1 99999 80\r\n".to_vec(),
            // Version 1 in the binary signature's place.
            {
                let mut h = v2(1, 0x11, &[0; 12], &[]);
                h[12] = 0x11;
                h
            },
        ] {
            let (r, _) = exchange(vec![bytes.clone()], SECS).await;
            assert!(
                matches!(r, Err(ProxyHeaderError::Invalid(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // A v1 line that never ends is refused at 107 bytes, not read forever.
        let (r, _) = exchange(
            vec![[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat()],
            SECS,
        )
        .await;
        assert!(matches!(r, Err(ProxyHeaderError::Invalid(_))), "{r:?}");
    }

    #[tokio::test]
    async fn silence_times_out_and_a_short_header_is_closed() {
        let (r, _) = exchange(
            vec![b"PROXY TCP4 198.51".to_vec()],
            Duration::from_millis(10),
        )
        .await;
        assert!(matches!(r, Err(ProxyHeaderError::Timeout(_))), "{r:?}");
        let (r, _) = exchange(vec![b"PROXY TCP4 198.51".to_vec()], SECS).await;
        assert!(matches!(r, Err(ProxyHeaderError::Closed)), "{r:?}");
    }
}
