//! The proxy's listening sockets, and the one place that binds them: its own HTTP and HTTPS
//! ports when it starts (failing there fails the start), and the Gateway listener ports each
//! snapshot asks for ([`crate::model::L7Config::gateway_listeners`]), opened and closed while
//! the proxy runs. Translation decides the ports; this module only binds and unbinds.
//!
//! - A port no longer asked for stops accepting at once, and its own connections finish
//!   gracefully (see [`super::listener::accept_loop`]); other listeners' are not touched.
//! - A port that changes protocol keeps its socket: new connections speak the new protocol.
//! - A port that cannot be bound (in use, no permission) is reported by
//!   [`ListenerSet::unbound`] (the status writer turns it into the listener's condition) and
//!   tried again every [`RETRY`] while asked for; it never stops the proxy.
//! - Gateway addresses ([`crate::model::L7Config::gateway_addresses`]): on a specific
//!   `--listen-address` (or an IPv6 address under `0.0.0.0`) each is bound on its Gateway's
//!   ports too (a wildcard listen address receives its family's already); one that cannot be
//!   bound (the address is not on the node yet) is logged once and tried again every
//!   [`RETRY`].
//! - IPv6 as nginx listens (ingress-nginx's `listen 80` and `listen [::]:80`): under the
//!   wildcard `--listen-address ::` each port is an IPv4 socket (`0.0.0.0`) and an IPv6-only
//!   one (`[::]`, `IPV6_V6ONLY` as nginx's `ipv6only=on`); the ConfigMap's `disable-ipv6`
//!   closes the IPv6 ones (and binds no IPv6 Gateway address), so an IPv6 client's connection
//!   is refused, and `false` opens them again. A host without IPv6 serves IPv4, with one
//!   warning per port. A specific `--listen-address` is listened on as it is.
//! - Each port is one listening socket per worker ([`super::workers`]), bound with
//!   `SO_REUSEPORT` when there are several: the kernel spreads new connections over them, and
//!   each worker accepts and serves its own. A port is open when every worker's socket is.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{oneshot, watch},
};
use tracing::{info, warn};

use super::{
    ProxyError,
    listener::{Accepting, ListenerId, accept_loop},
};
use crate::model::ListenerProtocol;

/// How often ports that could not be bound are tried again.
pub const RETRY: Duration = Duration::from_secs(2);

/// Pending connections the kernel queues per listening socket (as tokio's `bind`).
const BACKLOG: u32 = 1024;

/// One port's listening sockets, one per worker (in the workers' order), and the address
/// they are bound to.
pub(crate) type Bound = (Vec<TcpListener>, SocketAddr);

/// The proxy's own listening sockets, bound and not yet accepting.
pub(crate) struct OwnListeners {
    pub http: Bound,
    pub https: Bound,
}

/// Gateway ports that could not be bound -> the error, as text.
pub type Unbound = BTreeMap<u16, String>;

pub(crate) struct ListenerSet {
    accepting: Arc<Accepting>,
    /// `--listen-address`.
    address: IpAddr,
    /// The proxy's own HTTP and HTTPS ports (as bound).
    own_ports: [(u16, ListenerProtocol); 2],
    /// The workers' runtimes: binding registers each worker's socket with its runtime
    /// (`apply` runs outside them), and its accept loop runs there.
    runtimes: Vec<tokio::runtime::Handle>,
    state: Mutex<State>,
    unbound: watch::Sender<Unbound>,
}

#[derive(Default)]
struct State {
    /// Whether IPv6 is listened on (the ConfigMap's `disable-ipv6` negated).
    ipv6: bool,
    /// The Gateway ports the last snapshot asked for.
    want: BTreeMap<u16, ListenerProtocol>,
    open: BTreeMap<u16, Open>,
    /// Sockets on other addresses than the ports' own: Gateway addresses (specific listen
    /// address only) and, under `::`, every port's IPv6 socket; `true`: a Gateway listener's.
    want_at: BTreeMap<SocketAddr, (ListenerProtocol, bool)>,
    open_at: BTreeMap<SocketAddr, Open>,
    /// Of `want_at`, those that could not be bound (logged once).
    failed_at: BTreeMap<SocketAddr, String>,
}

/// One open Gateway port, or socket of [`State::open_at`].
struct Open {
    https: Arc<AtomicBool>,
    addr: SocketAddr,
    gateway: bool,
    /// Dropped or sent: the accept loops close their sockets and drain their connections.
    _close: Vec<oneshot::Sender<()>>,
}

impl ListenerSet {
    /// Binds the proxy's own HTTP and HTTPS ports (in that order) for each worker of
    /// `runtimes`, with the addresses bound (port 0 asks the kernel for one).
    pub fn bind_own(
        address: IpAddr,
        http_port: u16,
        https_port: u16,
        runtimes: &[tokio::runtime::Handle],
    ) -> Result<OwnListeners, ProxyError> {
        let one = |port| {
            bind_all(ipv4_under(address), port, runtimes)
                .map_err(|(addr, source)| ProxyError::Bind { addr, source })
        };
        Ok(OwnListeners {
            http: one(http_port)?,
            https: one(https_port)?,
        })
    }

    /// Starts accepting on the proxy's own listeners; Gateway ports follow [`Self::reconcile`].
    /// `runtimes` are the workers' (those `own` was bound for).
    pub fn start(
        accepting: Arc<Accepting>,
        address: IpAddr,
        own: OwnListeners,
        runtimes: Vec<tokio::runtime::Handle>,
    ) -> Arc<ListenerSet> {
        let own_ports = [
            (own.http.1.port(), ListenerProtocol::Http),
            (own.https.1.port(), ListenerProtocol::Https),
        ];
        let own = [(own.http, false), (own.https, true)];
        for ((listeners, addr), https) in own {
            let id = ListenerId {
                port: addr.port(),
                gateway: false,
            };
            let https = Arc::new(AtomicBool::new(https));
            for (listener, runtime) in listeners.into_iter().zip(&runtimes) {
                // The proxy's own listeners close only on shutdown.
                let forever = std::future::pending::<()>();
                runtime.spawn(accept_loop(
                    Arc::clone(&accepting),
                    listener,
                    id,
                    Arc::clone(&https),
                    forever,
                ));
            }
        }
        let set = Arc::new(ListenerSet {
            accepting,
            address,
            own_ports,
            runtimes,
            state: Mutex::new(State {
                ipv6: true,
                ..State::default()
            }),
            unbound: watch::Sender::new(Unbound::new()),
        });
        // The own ports' IPv6 sockets, until a snapshot says `disable-ipv6`.
        set.reconcile(&BTreeMap::new(), &BTreeMap::new(), true);
        tokio::spawn(retry_loop(Arc::downgrade(&set)));
        set
    }

    /// Makes the open Gateway ports those of `want`, and the sockets on Gateway addresses
    /// those of `at` (address -> its ports): closes the others, opens the missing. `ipv6`
    /// false (`disable-ipv6`): no socket listens on IPv6 (see the module docs).
    pub fn reconcile(
        &self,
        want: &BTreeMap<u16, ListenerProtocol>,
        at: &BTreeMap<IpAddr, crate::model::GatewayAddress>,
        ipv6: bool,
    ) {
        let mut state = self.lock();
        state.want = want.clone();
        state.ipv6 = ipv6;
        let wildcard6 = self.address == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        // A wildcard socket receives its family's addresses already (under `::` the IPv6
        // sockets receive IPv6 ones); the others are bound one by one.
        let received = |ip: IpAddr| {
            ip == self.address
                || (self.address.is_unspecified() && (self.address.is_ipv6() || ip.is_ipv4()))
        };
        let gateway_at = (at.iter())
            .filter(|(ip, _)| !received(**ip) && (ipv6 || ip.is_ipv4()))
            .flat_map(|(ip, a)| {
                (a.ports.iter()).map(|(p, proto)| (SocketAddr::new(*ip, *p), (*proto, true)))
            });
        let v6 = |(port, protocol), gateway| {
            let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            (addr, (protocol, gateway))
        };
        let own_v6 = (self.own_ports.iter()).map(|p| v6(*p, false));
        let gateway_v6 = (want.iter()).map(|(p, proto)| v6((*p, *proto), true));
        let ports_v6 = own_v6.chain(gateway_v6).filter(|_| wildcard6 && ipv6);
        state.want_at = gateway_at.chain(ports_v6).collect();
        self.sync(&mut state);
    }

    /// The open sockets on Gateway addresses.
    pub fn open_at(&self) -> Vec<SocketAddr> {
        let state = self.lock();
        (state.open_at.iter())
            .filter(|(_, o)| o.gateway && !o.addr.ip().is_unspecified())
            .map(|(a, _)| *a)
            .collect()
    }

    /// The open IPv6 sockets of the ports under `--listen-address ::`.
    pub fn open_ipv6(&self) -> Vec<SocketAddr> {
        let state = self.lock();
        (state.open_at.keys())
            .filter(|a| a.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED))
            .copied()
            .collect()
    }

    /// Gateway ports asked for that are not bound, with why; changes as binds fail and succeed.
    pub fn unbound(&self) -> watch::Receiver<Unbound> {
        self.unbound.subscribe()
    }

    /// The open Gateway ports and the addresses they are bound to.
    pub fn open(&self) -> BTreeMap<u16, SocketAddr> {
        self.lock()
            .open
            .iter()
            .map(|(port, o)| (*port, o.addr))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync(&self, state: &mut State) {
        if *self.accepting.shutdown.borrow() {
            return;
        }
        self.sync_at(state);
        let State { want, open, .. } = state;
        open.retain(|port, o| {
            let keep = want.contains_key(port);
            if !keep {
                info!(port, addr = %o.addr, "Gateway listener closed");
            }
            keep
        });
        let mut unbound = Unbound::new();
        for (&port, &protocol) in want.iter() {
            // TLS passthrough reads the ClientHello as termination does (super::passthrough).
            let https = protocol != ListenerProtocol::Http;
            if let Some(o) = open.get(&port) {
                o.https.store(https, Ordering::Relaxed);
                continue;
            }
            match self.open_one(ipv4_under(self.address), port, https, true) {
                Ok(o) => {
                    info!(port, addr = %o.addr, ?protocol, "Gateway listener open");
                    open.insert(port, o);
                }
                Err((addr, e)) => {
                    if !self.unbound.borrow().contains_key(&port) {
                        warn!(%addr, error = %e, "Gateway listener port cannot be bound; retrying");
                    }
                    unbound.insert(port, e.to_string());
                }
            }
        }
        self.unbound.send_if_modified(|old| {
            let changed = *old != unbound;
            *old = unbound;
            changed
        });
    }
}

impl ListenerSet {
    /// Binds `ip:port` for every worker and starts accepting there (a Gateway listener: the
    /// connections see Gateway routes only).
    fn open_one(
        &self,
        ip: IpAddr,
        port: u16,
        https: bool,
        gateway: bool,
    ) -> Result<Open, (SocketAddr, std::io::Error)> {
        let (listeners, addr) = bind_all(ip, port, &self.runtimes)?;
        let flag = Arc::new(AtomicBool::new(https));
        let id = ListenerId { port, gateway };
        let mut close = Vec::with_capacity(listeners.len());
        for (listener, runtime) in listeners.into_iter().zip(&self.runtimes) {
            let (close_tx, close_rx) = oneshot::channel::<()>();
            close.push(close_tx);
            runtime.spawn(accept_loop(
                Arc::clone(&self.accepting),
                listener,
                id,
                Arc::clone(&flag),
                async move {
                    let _ = close_rx.await;
                },
            ));
        }
        Ok(Open {
            https: flag,
            addr,
            gateway,
            _close: close,
        })
    }

    /// [`Self::sync`] for the sockets on Gateway addresses.
    fn sync_at(&self, state: &mut State) {
        let State {
            want_at,
            open_at,
            failed_at,
            ..
        } = state;
        open_at.retain(|addr, o| {
            let keep = want_at.get(addr).is_some_and(|(_, g)| *g == o.gateway);
            if !keep {
                info!(%addr, "listener closed");
            }
            keep
        });
        failed_at.retain(|addr, _| want_at.contains_key(addr));
        for (&addr, &(protocol, gateway)) in want_at.iter() {
            // TLS passthrough reads the ClientHello as termination does (super::passthrough).
            let https = protocol != ListenerProtocol::Http;
            if let Some(o) = open_at.get(&addr) {
                o.https.store(https, Ordering::Relaxed);
                continue;
            }
            match self.open_one(addr.ip(), addr.port(), https, gateway) {
                Ok(o) => {
                    info!(%addr, ?protocol, gateway, "listener open");
                    failed_at.remove(&addr);
                    open_at.insert(addr, o);
                }
                Err((_, e)) => {
                    if !failed_at.contains_key(&addr) {
                        warn!(%addr, error = %e, "address cannot be bound (IPv6 off on this host?); retrying");
                    }
                    failed_at.insert(addr, e.to_string());
                }
            }
        }
    }
}

/// Tries the unbound ports again every [`RETRY`] until the set is gone or the proxy stops.
async fn retry_loop(set: Weak<ListenerSet>) {
    loop {
        tokio::time::sleep(RETRY).await;
        let Some(set) = set.upgrade() else { return };
        if *set.accepting.shutdown.borrow() {
            return;
        }
        let mut state = set.lock();
        if !set.unbound.borrow().is_empty() || !state.failed_at.is_empty() {
            set.sync(&mut state);
        }
    }
}

/// Binds `ip:port` once per runtime of `runtimes` (each socket registered with its runtime),
/// all on the port the first got (port 0 asks the kernel for one); with several,
/// `SO_REUSEPORT` on each. If one fails, none stays bound. The error names the address tried.
fn bind_all(
    ip: IpAddr,
    port: u16,
    runtimes: &[tokio::runtime::Handle],
) -> Result<Bound, (SocketAddr, std::io::Error)> {
    let reuse_port = runtimes.len() > 1;
    let mut listeners = Vec::with_capacity(runtimes.len());
    let mut addr = SocketAddr::new(ip, port);
    for (i, runtime) in runtimes.iter().enumerate() {
        let _entered = runtime.enter();
        if i == 0 {
            let first = bind(ip, port, reuse_port)?;
            addr = first.local_addr().unwrap_or(addr);
            listeners.push(first);
        } else {
            listeners.push(bind_one(addr, reuse_port).map_err(|e| (addr, e))?);
        }
    }
    Ok((listeners, addr))
}

/// The address a port's first socket binds: `0.0.0.0` under the wildcard `::` (whose IPv6
/// socket is bound apart, see the module docs), else the address itself.
fn ipv4_under(address: IpAddr) -> IpAddr {
    if address == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        address
    }
}

/// Binds `ip:port` (`SO_REUSEADDR`, as tokio's `bind`). The error names the address tried.
/// Needs a runtime context.
fn bind(
    ip: IpAddr,
    port: u16,
    reuse_port: bool,
) -> Result<TcpListener, (SocketAddr, std::io::Error)> {
    let addr = SocketAddr::new(ip, port);
    bind_one(addr, reuse_port).map_err(|e| (addr, e))
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let socket = TcpSocket::new_v6()?;
        // IPv6 only, as nginx's `listen [::]:80` (`ipv6only=on`): IPv4 has its own socket,
        // and `disable-ipv6` can close this one alone.
        socket2::SockRef::from(&socket).set_only_v6(true)?;
        socket
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests;
