//! Connection slots: a total cap and a per-client-address cap on open client connections, so
//! one client cannot hold every slot (nginx `limit_conn` keyed on the client address). A slot
//! is taken on accept, before any byte is read, and belongs to the socket
//! ([`CountedStream`]): it is released when the socket closes, also after an Upgrade took the
//! socket out of hyper's connection (a WebSocket keeps counting against its client).
//!
//! The client is the TCP peer, unless a trusted hop (PROXY protocol) names another: then the
//! slot moves to that client ([`Slot::move_to`]), so a load balancer's address does not hold
//! one share for everyone behind it. IPv4 addresses count one by one; IPv6 addresses by their
//! /64, the smallest prefix a subscriber is normally given (RFC 6177), so one host cannot step
//! around its cap by changing its interface identifier.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::metrics::ConnectionGuard;

/// Why a connection was refused on accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken (`--max-connections`).
    Total,
    /// This client holds its share (`--max-connections-per-client`).
    PerClient,
}

impl Refused {
    /// The `reason` label of `xdp_ingress_rejected_connections_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerClient => "max_connections_per_client",
        }
    }
}

/// The caps and the slots taken, for one listener set.
#[derive(Debug)]
pub struct ConnectionSlots {
    max_total: usize,
    max_per_client: usize,
    taken: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl ConnectionSlots {
    /// Caps of at least one connection each.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnectionSlots {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            taken: Mutex::new(Taken::default()),
        })
    }

    /// A slot for a connection from `client`, unless a cap is reached.
    pub fn try_take(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refused> {
        let key = client_key(client);
        let mut taken = self.lock();
        if taken.total >= self.max_total {
            return Err(Refused::Total);
        }
        let mine = taken.by_client.entry(key).or_insert(0);
        if *mine >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        *mine += 1;
        taken.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            key,
        })
    }

    /// Open connections in all.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Open connections counted against `client`'s cap.
    pub fn open_for(&self, client: IpAddr) -> usize {
        self.lock()
            .by_client
            .get(&client_key(client))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        // Counters only: a panic elsewhere cannot leave them half-updated.
        self.taken.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One taken slot, given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<ConnectionSlots>,
    key: IpAddr,
}

impl Slot {
    /// Counts this connection against `client` instead, once a trusted hop (PROXY protocol)
    /// said who the client is; refused, and left as it was, when `client` holds its share.
    pub fn move_to(&mut self, client: IpAddr) -> Result<(), Refused> {
        let key = client_key(client);
        if key == self.key {
            return Ok(());
        }
        let slots = Arc::clone(&self.slots);
        let mut taken = slots.lock();
        let theirs = taken.by_client.entry(key).or_insert(0);
        if *theirs >= slots.max_per_client {
            return Err(Refused::PerClient);
        }
        *theirs += 1;
        release(&mut taken, self.key);
        self.key = key;
        Ok(())
    }
}

fn release(taken: &mut Taken, key: IpAddr) {
    if let Some(n) = taken.by_client.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            taken.by_client.remove(&key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.slots.lock();
        taken.total = taken.total.saturating_sub(1);
        release(&mut taken, self.key);
    }
}

/// The address a client's connections are counted under: IPv4 (also IPv4-mapped IPv6) as is,
/// IPv6 by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A client socket that holds its [`Slot`] and its `active_connections` count until it is
/// closed, wherever it goes (hyper, or a tunnel after an Upgrade).
pub struct CountedStream<T> {
    io: T,
    slot: Slot,
    _gauge: ConnectionGuard,
}

impl<T> CountedStream<T> {
    pub fn new(io: T, slot: Slot, gauge: ConnectionGuard) -> Self {
        CountedStream {
            io,
            slot,
            _gauge: gauge,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// See [`Slot::move_to`].
    pub fn move_to_client(&mut self, client: IpAddr) -> Result<(), Refused> {
        self.slot.move_to(client)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedStream<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedStream<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
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
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_client_at_its_cap_leaves_slots_to_others() {
        let slots = ConnectionSlots::new(4, 2);
        let a1 = slots.try_take(ip("192.0.2.1")).unwrap();
        let _a2 = slots.try_take(ip("192.0.2.1")).unwrap();
        assert_eq!(
            slots.try_take(ip("192.0.2.1")).unwrap_err(),
            Refused::PerClient
        );
        // The same client as an IPv4-mapped IPv6 peer (a `::` listener) is the same client.
        assert_eq!(
            slots.try_take(ip("::ffff:192.0.2.1")).unwrap_err(),
            Refused::PerClient
        );
        let _b = slots.try_take(ip("192.0.2.2")).unwrap();
        let _c = slots.try_take(ip("192.0.2.3")).unwrap();
        assert_eq!(slots.try_take(ip("192.0.2.4")).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(slots.open_for(ip("192.0.2.1")), 1);
        let _a3 = slots.try_take(ip("192.0.2.1")).unwrap();
        assert_eq!(slots.open(), 4);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let slots = ConnectionSlots::new(10, 1);
        let _x = slots.try_take(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            slots.try_take(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refused::PerClient
        );
        assert!(slots.try_take(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn a_slot_moves_to_the_client_a_trusted_hop_names() {
        let slots = ConnectionSlots::new(10, 2);
        let balancer = ip("10.0.0.1");
        let mut s1 = slots.try_take(balancer).unwrap();
        let mut s2 = slots.try_take(balancer).unwrap();
        s1.move_to(ip("192.0.2.7")).unwrap();
        // The balancer's share is free again for its next connections.
        assert_eq!(slots.open_for(balancer), 1);
        let _s3 = slots.try_take(balancer).unwrap();
        s2.move_to(ip("192.0.2.7")).unwrap();
        let mut s4 = slots.try_take(balancer).unwrap();
        assert_eq!(s4.move_to(ip("192.0.2.7")), Err(Refused::PerClient));
        assert_eq!(slots.open_for(ip("192.0.2.7")), 2);
        drop((s1, s2, s4));
        assert_eq!(slots.open_for(ip("192.0.2.7")), 0);
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn released_slots_leave_no_entry() {
        let slots = ConnectionSlots::new(10, 10);
        let s = slots.try_take(ip("192.0.2.9")).unwrap();
        drop(s);
        assert_eq!(slots.open(), 0);
        assert!(slots.lock().by_client.is_empty());
    }
}
