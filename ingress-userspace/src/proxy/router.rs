//! Host → route lookup, compiled once per snapshot.
//!
//! Hosts are found by hash (exact name, then wildcards: the Ingress `*.` wildcard of the name
//! minus its first label, and Gateway API wildcards of each shorter suffix, longest first;
//! then the rules without a host), so lookup cost grows with the labels of the name, not with
//! the number of hosts. Within a host the routes are tried in snapshot order (most specific first); the
//! first whose path, method, headers and query all match wins. A host that matches but has no
//! matching path falls to the default backend (as ingress-nginx does), not to other hosts.
//!
//! Path semantics (Ingress v1, and ingress-nginx for `ImplementationSpecific`):
//! - `Exact`: the path equals the request path, byte for byte (`/foo` ≠ `/foo/`).
//! - `Prefix`: element-wise prefix, trailing slash ignored: `/foo` and `/foo/` both match
//!   `/foo`, `/foo/` and `/foo/bar`, never `/foobar`; `/` matches everything.
//! - `ImplementationSpecific` ([`PathMatch::CharPrefix`]): a plain character prefix, as
//!   ingress-nginx's default `location /foo` (`/foo` matches `/foobar`).
//! - [`PathMatch::Regex`]: only when translation says so (ingress-nginx's `use-regex` /
//!   `rewrite-target` migration annotations); anchored at the start only and
//!   case-insensitive, as ingress-nginx's `location ~* "^<path>"`.
//! - [`PathMatch::FullRegex`]: Gateway API `RegularExpression`, the whole path, case-sensitive.
//!
//! The order among routes is translation's (longest first, Exact before Prefix at equal
//! length), so the first match is the most specific one.
//!
//! The table is generic over what a route forwards to, so `explain` can run the very same
//! matching over plain [`Upstream`]s while the proxy uses its runtime upstream state.
//!
//! A new snapshot shares every virtual host it did not change with the previous one (the same
//! `Arc`), so [`RouteTable::patch`] starts from the previous table (its name maps are
//! persistent: shared, not copied) and compiles only the hosts that changed: a one-Ingress
//! change compiles one host and touches its names, not ten thousand.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, OnceLock},
};

use http::HeaderMap;
use regex::Regex;

use super::{canary::CompiledCanary, error_pages::CompiledErrors, metrics::RouteSeries};
use crate::model::{
    HeaderMatch, L7Config, PathMatch, Route, RouteAction, RouteMatch, RouteOrigin, RoutePolicy,
    StringMatch, Upstream, VirtualHost,
};

/// The parts of a request that routing looks at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// Host header or `:authority`, possibly with a port and in any case.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    pub headers: &'a HeaderMap,
    /// The client connection is TLS.
    pub tls: bool,
    /// The port of the listener the connection arrived on; `None` (`explain`, tests): any.
    pub listener_port: Option<u16>,
    /// The connection arrived on a port opened for Gateway listeners only: Ingress routes
    /// and the default backend are not served there.
    pub gateway_listener: bool,
    /// The connection's local address (`getsockname` of the accepted socket); `None`
    /// (`explain`, tests): any. On a Gateway's address only that Gateway's routes are seen
    /// ([`crate::model::L7Config::gateway_addresses`]).
    pub local_addr: Option<std::net::IpAddr>,
}

#[derive(Debug)]
pub struct CompiledHost<U> {
    /// As written in the rule (`a.example.com`, `*.example.com`, empty for any host).
    pub host: String,
    /// The host for metrics (`*` for rules without a host).
    pub label: Arc<String>,
    pub tls: bool,
    /// Exactly the host's routes (a 96-byte block for the host, with `app_root` boxed).
    pub routes: Box<[CompiledRoute<U>]>,
    /// `app-root` (see [`super::rewrite::app_root`]).
    pub app_root: Option<Box<str>>,
}

pub struct CompiledRoute<U> {
    /// The virtual host this route was compiled from, and the route's index in its
    /// `routes`: the route's path and origin are read there rather than copied (the snapshot's
    /// hosts live as long as the table; issue 13's memory target, 20k routes at 10k Ingresses).
    source: Arc<VirtualHost>,
    index: usize,
    matcher: Matcher,
    pub action: CompiledAction<U>,
    pub policy: Arc<RoutePolicy>,
    /// `namespace/name` of the Ingress, for metrics and logs; one per Ingress within a host,
    /// shared by its routes.
    pub ingress: Arc<String>,
    /// The Ingress rule's path as written ([`RouteOrigin::location_path`], ingress-nginx
    /// `$location_path`): the affinity cookie's default `Path`, and the path of metrics and logs.
    pub path_label: Arc<String>,
    /// The canary merged into this route, decided per request by [`super::canary`]. Boxed,
    /// as `errors` and `rewrite`: few routes have one, and inline they weighed ~250 bytes on
    /// each of 20k routes at 10k Ingresses (issue 13's memory target).
    pub canary: Option<Box<CompiledCanary<U>>>,
    /// `default-backend` and `custom-http-errors` ([`super::error_pages`]).
    pub errors: Option<Box<CompiledErrors<U>>>,
    /// The regex `rewrite-target` is applied with ([`super::rewrite::compile`]).
    pub rewrite: Option<Box<Regex>>,
    /// Gateway API `RequestMirror` filters: `(backend, numerator, denominator)`.
    pub mirrors: Box<[(U, u32, u32)]>,
    /// The route's metric series, made at its first request (a route never asked costs
    /// 16 bytes here).
    pub series: OnceLock<Arc<RouteSeries>>,
}

/// As a derived `Debug` would show it with the path and origin as fields (not the whole
/// source host).
impl<U: std::fmt::Debug> std::fmt::Debug for CompiledRoute<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRoute")
            .field("path", self.path())
            .field("matcher", &self.matcher)
            .field("action", &self.action)
            .field("policy", &self.policy)
            .field("origin", self.origin())
            .field("ingress", &self.ingress)
            .field("path_label", &self.path_label)
            .field("canary", &self.canary)
            .field("errors", &self.errors)
            .field("rewrite", &self.rewrite)
            .field("mirrors", &self.mirrors)
            .finish()
    }
}

impl<U> CompiledRoute<U> {
    /// The route's path match, as translation wrote it.
    pub fn path(&self) -> &PathMatch {
        &self.source.routes[self.index].matches.path
    }

    /// Where the route came from (object, rule, path).
    pub fn origin(&self) -> &RouteOrigin {
        &self.source.routes[self.index].origin
    }
}

#[derive(Debug)]
pub enum CompiledAction<U> {
    Forward(Box<[(U, u32)]>),
    Respond {
        status: u16,
        reason: Box<str>,
    },
    /// [`RouteAction::DefaultBackend`]: the table's default backend, else the built-in 404.
    DefaultBackend,
}

#[derive(Debug)]
struct Matcher {
    path: PathMatcher,
    /// Everything else a route may test; `None` when it tests none of it (every Ingress
    /// route): boxed, so the common route does not carry ~110 bytes of empty fields.
    more: Option<Box<MoreMatch>>,
}

/// The tests of a [`Matcher`] beyond the path (Gateway API matches and listeners).
#[derive(Debug, Default)]
struct MoreMatch {
    /// [`RouteMatch::tls`] (Gateway API routes on HTTPS or HTTP listeners only).
    tls: Option<bool>,
    method: Option<String>,
    listener_ports: Option<Vec<u16>>,
    gateway_addresses: Option<Vec<std::net::IpAddr>>,
    headers: Vec<(String, ValueMatcher)>,
    query: Vec<(String, ValueMatcher)>,
}

impl MoreMatch {
    /// Tests nothing: a route with this needs no box.
    fn is_empty(&self) -> bool {
        self.tls.is_none()
            && self.method.is_none()
            && self.listener_ports.is_none()
            && self.gateway_addresses.is_none()
            && self.headers.is_empty()
            && self.query.is_empty()
    }
}

#[derive(Debug)]
enum PathMatcher {
    Exact(String),
    /// Stored without the trailing slash; empty means "/" (everything).
    Prefix(String),
    CharPrefix(String),
    /// Boxed: the common route (a prefix) is 8 bytes smaller.
    Regex(Box<Regex>),
}

#[derive(Debug)]
enum ValueMatcher {
    Exact(String),
    Regex(Regex),
}

/// Why a request found no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Miss {
    /// No virtual host for this name and no rules without a host.
    NoHost,
    /// The host matched but none of its paths did.
    NoPath,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup<'a, U> {
    Route {
        host: &'a CompiledHost<U>,
        route: &'a CompiledRoute<U>,
    },
    /// No route: the default backend takes it (`host` is the matched host, if any).
    Default {
        host: Option<&'a CompiledHost<U>>,
        backend: &'a U,
        why: Miss,
    },
    /// No route and no default backend: 404.
    NotFound {
        host: Option<&'a CompiledHost<U>>,
        why: Miss,
    },
}

/// A route that could not be compiled (bad regex); it is left out and everything else works.
#[derive(Debug, thiserror::Error)]
#[error("route {path:?} of {ingress} skipped: {error}")]
pub struct RouteError {
    pub ingress: String,
    pub path: String,
    pub error: regex::Error,
}

/// Lower-case host names to the hosts under them. Persistent (`imbl`): the next table copies
/// it in O(1) and patches only the names a snapshot changed; the keys are `Arc`s and the
/// hasher aHash (SipHash was a third of building these maps at 10k hosts).
type NameMap<U> = imbl::GenericHashMap<
    Arc<str>,
    Arc<Named<U>>,
    ahash::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// A compiled route table over upstream handles of type `U`.
#[derive(Debug)]
pub struct RouteTable<U> {
    exact: NameMap<U>,
    wildcard: NameMap<U>,
    /// Gateway API wildcards (one or more labels), by suffix.
    gateway_wildcard: NameMap<U>,
    any_host: Option<Compiled<U>>,
    /// The default backend's spec (given back when it goes) and handle.
    default_backend: Option<(Arc<Upstream>, U)>,
    /// Listener ports that compiled routes are limited to, with how many routes name each.
    route_ports: Arc<BTreeMap<u16, usize>>,
    /// Ports with a Gateway API listener: the proxy's own ports where a Gateway shares them,
    /// and the ports opened for Gateways ([`Self::gateway_miss`]).
    gateway_ports: BTreeSet<u16>,
    /// Local addresses owned by Gateways: only their routes are served there.
    claimed: std::collections::HashSet<std::net::IpAddr>,
    host_count: usize,
}

/// Every virtual host whose name is one lower-case name, by name as written (ascending; two
/// differ only in case): the last one serves, as in a snapshot's key order the last wins.
#[derive(Debug)]
struct Named<U>(Vec<(String, Compiled<U>)>);

/// A compiled host and the handles `resolve` gave for its upstreams, in the order compiling
/// asked for them (each is given back when the host goes).
#[derive(Debug)]
struct Compiled<U> {
    host: Arc<CompiledHost<U>>,
    handles: Arc<[(Arc<Upstream>, U)]>,
}

impl<U> Clone for Compiled<U> {
    fn clone(&self) -> Self {
        Compiled {
            host: Arc::clone(&self.host),
            handles: Arc::clone(&self.handles),
        }
    }
}

/// What a route table asks of the proxy for each upstream: a handle for each use, and each
/// use back when its host goes ([`RouteTable::patch`]). Any `FnMut(&Arc<Upstream>) -> U`
/// is one that keeps nothing.
pub trait Resolve<U> {
    /// The handle of `spec`, for one use.
    fn take(&mut self, spec: &Arc<Upstream>) -> U;
    /// One use of `spec` (given `handle` by [`Resolve::take`]) ends.
    fn give_back(&mut self, spec: &Arc<Upstream>, handle: &U) {
        let _ = (spec, handle);
    }
}

impl<U, F: FnMut(&Arc<Upstream>) -> U> Resolve<U> for F {
    fn take(&mut self, spec: &Arc<Upstream>) -> U {
        self(spec)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Exact,
    Wildcard,
    GatewayWildcard,
}

impl<U: Clone> RouteTable<U> {
    /// An empty table: every request 404s.
    pub fn empty() -> Self {
        RouteTable {
            exact: NameMap::default(),
            wildcard: NameMap::default(),
            gateway_wildcard: NameMap::default(),
            any_host: None,
            default_backend: None,
            route_ports: Arc::default(),
            gateway_ports: BTreeSet::new(),
            claimed: Default::default(),
            host_count: 0,
        }
    }

    /// Compiles the L7 part of a snapshot; `resolve` turns each upstream into a handle `U`.
    pub fn build(l7: &L7Config, mut resolve: impl Resolve<U>) -> (Self, Vec<RouteError>) {
        Self::empty().patch(&L7Config::default(), l7, &mut resolve)
    }

    /// The table for `next`, made from this one, which was made from `prev`: the hosts
    /// `next` changed (not the same `Arc` under the same name, [`changes::diff_keyed`]) are
    /// given back and compiled again; every other host is this table's, untouched (the name
    /// maps are shared, not copied). The table answers every request as [`RouteTable::build`]
    /// of `next` would (`proxy::rebuild_tests`). Every use given back is given back before
    /// the first new one is taken, so `resolve` can hand a new upstream the state of the one
    /// it replaces. Route errors are those of the hosts compiled.
    ///
    /// [`changes::diff_keyed`]: super::changes::diff_keyed
    pub fn patch(
        &self,
        prev: &L7Config,
        next: &L7Config,
        resolve: &mut impl Resolve<U>,
    ) -> (Self, Vec<RouteError>) {
        use super::changes::diff_keyed;
        let mut t = RouteTable {
            exact: self.exact.clone(),
            wildcard: self.wildcard.clone(),
            gateway_wildcard: self.gateway_wildcard.clone(),
            any_host: self.any_host.clone(),
            default_backend: self.default_backend.clone(),
            route_ports: Arc::clone(&self.route_ports),
            gateway_ports: BTreeSet::new(),
            claimed: next.gateway_addresses.keys().copied().collect(),
            host_count: self.host_count,
        };
        let mut changed: Vec<(Kind, &String, Option<&Arc<VirtualHost>>)> = Vec::new();
        let mut any_changed = false;
        for (kind, a, b) in [
            (Kind::Exact, &prev.hosts, &next.hosts),
            (Kind::Wildcard, &prev.wildcard_hosts, &next.wildcard_hosts),
            (
                Kind::GatewayWildcard,
                &prev.gateway_wildcard_hosts,
                &next.gateway_wildcard_hosts,
            ),
        ] {
            diff_keyed(a, b, |name, old, new| {
                if old.is_some() {
                    t.remove(kind, name, resolve);
                }
                changed.push((kind, name, new));
            });
        }
        if !same_opt(&prev.any_host, &next.any_host) {
            any_changed = true;
            if let Some(old) = t.any_host.take() {
                t.forget(&old, resolve);
            }
        }
        let default_changed = !same_opt(&prev.default_backend, &next.default_backend);
        if default_changed && let Some((spec, h)) = t.default_backend.take() {
            resolve.give_back(&spec, &h);
        }
        let mut errors = Vec::new();
        for (kind, name, new) in changed {
            if let Some(vh) = new {
                let c = t.compile(vh, resolve, &mut errors);
                t.insert(kind, name, c);
            }
        }
        if any_changed && let Some(vh) = &next.any_host {
            t.any_host = Some(t.compile(vh, resolve, &mut errors));
        }
        if default_changed {
            t.default_backend =
                (next.default_backend.as_ref()).map(|spec| (Arc::clone(spec), resolve.take(spec)));
        }
        t.gateway_ports = next
            .gateway_listeners
            .keys()
            .chain(next.gateway_https_hosts.keys())
            .chain(&next.gateway_shared_ports)
            .chain(t.route_ports.keys())
            .copied()
            .collect();
        (t, errors)
    }

    fn map(&mut self, kind: Kind) -> &mut NameMap<U> {
        match kind {
            Kind::Exact => &mut self.exact,
            Kind::Wildcard => &mut self.wildcard,
            Kind::GatewayWildcard => &mut self.gateway_wildcard,
        }
    }

    /// Takes the host written `name` out, giving its uses back.
    fn remove(&mut self, kind: Kind, name: &str, resolve: &mut impl Resolve<U>) {
        let key = key_of(kind, name);
        let Some(named) = self.map(kind).get(&*key).cloned() else {
            return;
        };
        let mut hosts = named.0.clone();
        let Ok(i) = hosts.binary_search_by(|(n, _)| n.as_str().cmp(name)) else {
            return;
        };
        let (_, gone) = hosts.remove(i);
        self.forget(&gone, resolve);
        if hosts.is_empty() {
            self.map(kind).remove(&*key);
        } else {
            self.map(kind)
                .insert(Arc::from(&*key), Arc::new(Named(hosts)));
        }
    }

    /// Adds the host written `name`, compiled.
    fn insert(&mut self, kind: Kind, name: &str, c: Compiled<U>) {
        let key = key_of(kind, name);
        let mut hosts = match self.map(kind).get(&*key) {
            Some(named) => named.0.clone(),
            None => Vec::with_capacity(1),
        };
        match hosts.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => hosts[i].1 = c,
            Err(i) => hosts.insert(i, (name.to_string(), c)),
        }
        self.map(kind)
            .insert(Arc::from(&*key), Arc::new(Named(hosts)));
    }

    /// Gives back a host's uses and its routes' ports.
    fn forget(&mut self, c: &Compiled<U>, resolve: &mut impl Resolve<U>) {
        for (spec, h) in c.handles.iter() {
            resolve.give_back(spec, h);
        }
        let mut ports = route_ports(&c.host).peekable();
        if ports.peek().is_some() {
            let counts = Arc::make_mut(&mut self.route_ports);
            for p in ports {
                if let Some(n) = counts.get_mut(&p) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&p);
                    }
                }
            }
        }
        self.host_count -= 1;
    }

    fn compile(
        &mut self,
        vh: &Arc<VirtualHost>,
        resolve: &mut impl Resolve<U>,
        errors: &mut Vec<RouteError>,
    ) -> Compiled<U> {
        let mut handles = Vec::new();
        let mut take = |spec: &Arc<Upstream>| {
            let h = resolve.take(spec);
            handles.push((Arc::clone(spec), h.clone()));
            h
        };
        let mut routes = Vec::with_capacity(vh.routes.len());
        // `namespace/name` of each Ingress seen in this host, shared by its routes.
        let mut ingresses: Vec<Arc<String>> = Vec::new();
        for index in 0..vh.routes.len() {
            match compile_route(vh, index, &mut ingresses, &mut take) {
                Ok(c) => routes.push(c),
                Err(e) => errors.push(e),
            }
        }
        let host = Arc::new(CompiledHost {
            host: vh.host.clone(),
            label: Arc::new(if vh.host.is_empty() {
                "*".into()
            } else {
                vh.host.clone()
            }),
            tls: vh.tls,
            routes: routes.into_boxed_slice(),
            app_root: vh.app_root.clone(),
        });
        {
            let mut ports = route_ports(&host).peekable();
            if ports.peek().is_some() {
                let counts = Arc::make_mut(&mut self.route_ports);
                for p in ports {
                    *counts.entry(p).or_default() += 1;
                }
            }
        }
        self.host_count += 1;
        Compiled {
            host,
            handles: handles.into(),
        }
    }
}

/// The listener ports a compiled host's routes are limited to (Gateway routes), with repeats.
fn route_ports<U>(h: &CompiledHost<U>) -> impl Iterator<Item = u16> + '_ {
    (h.routes.iter())
        .filter_map(|r| r.matcher.listener_ports())
        .flatten()
        .copied()
}

/// The name map key of a host written `name`: lower case, a wildcard by its suffix (`*.` off).
fn key_of(kind: Kind, name: &str) -> Cow<'_, str> {
    let name = match kind {
        Kind::Exact => name,
        Kind::Wildcard | Kind::GatewayWildcard => name.strip_prefix("*.").unwrap_or(name),
    };
    lower(name)
}

fn same_opt<V>(a: &Option<Arc<V>>, b: &Option<Arc<V>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// `name` in lower case, borrowed when it is already.
fn lower(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

impl<U> RouteTable<U> {
    /// The virtual host a request's host name selects, if any.
    pub fn host(&self, host: &str) -> Option<&CompiledHost<U>> {
        self.hosts_for(&normalize_host(host)).next()
    }

    /// Every virtual host whose pattern matches `name` (normalized), most specific first:
    /// the exact name; then by suffix, longest first, at the suffix one label shorter than
    /// `name` an Ingress wildcard before a Gateway one; then the one for any host.
    fn hosts_for<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a CompiledHost<U>> + use<'a, 'n, U> {
        let suffixes = std::iter::successors(name.split_once('.').map(|(_, s)| s), |s| {
            s.split_once('.').map(|(_, rest)| rest)
        });
        let wildcards = suffixes.enumerate().flat_map(move |(i, suffix)| {
            let ingress = (i == 0).then(|| self.wildcard.get(suffix)).flatten();
            ingress.into_iter().chain(self.gateway_wildcard.get(suffix))
        });
        // Of the hosts under one lower-case name, the last written serves ([`Named`]).
        (self.exact.get(name).into_iter())
            .chain(wildcards)
            .filter_map(|n| n.0.last().map(|(_, c)| &*c.host))
            .chain(self.any_host.as_ref().map(|c| &*c.host))
    }

    pub fn lookup(&self, req: &RequestView<'_>) -> Lookup<'_, U> {
        // Routes match the path with encoded slashes as separators, as nginx's locations do
        // ([`super::normalize::match_path`]): a request cannot slip past a route (and its
        // allowlist) by encoding the slash its backend will decode.
        let path = super::normalize::match_path(req.path);
        // A Gateway's own address is a Gateway-only listener for everything else.
        let claimed = self.claimed(req);
        let req = &RequestView {
            path: &path,
            gateway_listener: req.gateway_listener || claimed,
            ..*req
        };
        let name = normalize_host(req.host);
        let mut hosts = self.hosts_for(&name);
        // A host none of whose routes is served on this connection's listener (another
        // Gateway's port or address, an Ingress host on a Gateway port) is not this
        // listener's: Gateway API listeners route only by the routes attached to them, so the
        // next less specific host that has some is taken instead (a catch-all route of this
        // Gateway is not hidden by another Gateway's hostname), and with none no host took
        // the request (a route attached to one listener does not make another listener's
        // miss a path miss: Gateway v1.6 `spec.listeners`, a gRPC call then gets
        // UNIMPLEMENTED). A host that has routes here keeps its misses, as ingress-nginx's
        // server block does.
        let listens =
            |h: &CompiledHost<U>| h.routes.iter().any(|r| r.matcher.listens(req, claimed));
        let mut host = hosts.next();
        if let Some(h) = host
            && !listens(h)
        {
            // With no host here, one without routes at all (an Ingress rule without paths)
            // keeps the miss as its own.
            host = hosts
                .find(|h| listens(h))
                .or(Some(h).filter(|h| h.routes.is_empty()));
        }
        let why = match host {
            None => Miss::NoHost,
            Some(h) => match h.routes.iter().find(|r| r.matcher.matches(req, claimed)) {
                Some(route) => return Lookup::Route { host: h, route },
                None => Miss::NoPath,
            },
        };
        match self.default_backend() {
            // A Gateway-only port answers 404 for what no HTTPRoute matched.
            Some(backend) if !req.gateway_listener => Lookup::Default { host, backend, why },
            _ => Lookup::NotFound { host, why },
        }
    }

    /// Whether a miss ([`Lookup::NotFound`] for `req`, `host` its virtual host) is the Gateway
    /// API's to answer (v1.6: 404 for HTTP, UNIMPLEMENTED for gRPC) rather than an Ingress
    /// one (ingress-nginx's 404 page): the request came through a port opened for Gateways;
    /// or its host has a Gateway route served on the request's port; or no host took it and
    /// a Gateway listener shares the port.
    pub fn gateway_miss(&self, host: Option<&CompiledHost<U>>, req: &RequestView<'_>) -> bool {
        if req.gateway_listener || self.claimed(req) {
            return true;
        }
        match host {
            Some(h) => h.routes.iter().any(|r| {
                r.matcher
                    .listener_ports()
                    .is_some_and(|ports| req.listener_port.is_none_or(|p| ports.contains(&p)))
            }),
            None => req
                .listener_port
                .is_some_and(|p| self.gateway_ports.contains(&p)),
        }
    }

    /// Whether the request arrived on an address a Gateway owns.
    fn claimed(&self, req: &RequestView<'_>) -> bool {
        !self.claimed.is_empty()
            && (req.local_addr).is_some_and(|a| self.claimed.contains(&a.to_canonical()))
    }

    /// Every handle the routes and the default backend hold (tests: each must be one the
    /// proxy keeps state for).
    #[cfg(test)]
    pub(crate) fn handles(&self) -> impl Iterator<Item = &U> {
        (self.exact.values())
            .chain(self.wildcard.values())
            .chain(self.gateway_wildcard.values())
            .flat_map(|n| n.0.iter().map(|(_, c)| c))
            .chain(&self.any_host)
            .flat_map(|c| c.handles.iter().map(|(_, h)| h))
            .chain(self.default_backend())
    }

    pub fn default_backend(&self) -> Option<&U> {
        self.default_backend.as_ref().map(|(_, h)| h)
    }

    /// Virtual hosts compiled (a name written twice in different case counts twice).
    pub fn host_count(&self) -> usize {
        self.host_count
    }
}

/// Lower case, without port and trailing dot. Borrows when nothing changes (the common case).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// Compiles route `index` of `vh`; `ingresses`: the `namespace/name` labels already made for
/// this host, reused when the route's Ingress has one.
fn compile_route<U>(
    vh: &Arc<VirtualHost>,
    index: usize,
    ingresses: &mut Vec<Arc<String>>,
    resolve: &mut impl FnMut(&Arc<Upstream>) -> U,
) -> Result<CompiledRoute<U>, RouteError> {
    let route: &Route = &vh.routes[index];
    let ingress = format!(
        "{}/{}",
        route.origin.object.namespace, route.origin.object.name
    );
    let matched = match &route.matches.path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::CharPrefix(p) => p.clone(),
        PathMatch::Regex(r) | PathMatch::FullRegex(r) => r.clone(),
    };
    let err = |error| RouteError {
        ingress: ingress.clone(),
        path: matched.clone(),
        error,
    };
    let matcher = compile_match(&route.matches).map_err(err)?;
    let action = match &route.action {
        RouteAction::Forward(ups) => CompiledAction::Forward(
            ups.iter()
                .map(|w| (resolve(&w.upstream), w.weight))
                .collect(),
        ),
        RouteAction::Respond { status, reason } => CompiledAction::Respond {
            status: *status,
            reason: reason.as_str().into(),
        },
        RouteAction::DefaultBackend => CompiledAction::DefaultBackend,
    };
    let canary = route
        .canary
        .as_ref()
        .map(|c| CompiledCanary::compile(c, &mut *resolve).map(Box::new))
        .transpose()
        .map_err(err)?;
    let errors = route.errors.as_ref().map(|e| {
        Box::new(CompiledErrors {
            default_backend: e.default_backend.as_ref().map(&mut *resolve),
            intercept: e.intercept.clone(),
            pass_pod_answers: e.pass_pod_answers,
        })
    });
    let rewrite =
        super::rewrite::compile(&matched, route.policy.rewrite.target.as_deref()).map(Box::new);
    let mirrors = route
        .policy
        .gateway
        .iter()
        .flat_map(|g| &g.mirrors)
        .map(|m| (resolve(&m.upstream), m.numerator, m.denominator))
        .collect();
    let ingress = match ingresses.iter().find(|i| ***i == ingress) {
        Some(shared) => Arc::clone(shared),
        None => {
            let new = Arc::new(ingress);
            ingresses.push(Arc::clone(&new));
            new
        }
    };
    Ok(CompiledRoute {
        errors,
        canary,
        rewrite,
        mirrors,
        source: Arc::clone(vh),
        index,
        matcher,
        action,
        policy: route.policy.clone(),
        ingress,
        path_label: path_label(route.origin.location_path()),
        series: OnceLock::new(),
    })
}

/// The `path_label` of a route whose path is `path`: `/` (most routes) is one shared label.
fn path_label(path: &str) -> Arc<String> {
    static ROOT: std::sync::OnceLock<Arc<String>> = std::sync::OnceLock::new();
    if path == "/" {
        Arc::clone(ROOT.get_or_init(|| Arc::new("/".to_string())))
    } else {
        Arc::new(path.to_string())
    }
}

fn compile_match(m: &RouteMatch) -> Result<Matcher, regex::Error> {
    let path = match &m.path {
        PathMatch::Exact(p) => PathMatcher::Exact(p.clone()),
        PathMatch::Prefix(p) => PathMatcher::Prefix(p.trim_end_matches('/').to_string()),
        PathMatch::CharPrefix(p) => PathMatcher::CharPrefix(p.clone()),
        PathMatch::Regex(r) => PathMatcher::Regex(Box::new(Regex::new(&format!("(?i)^(?:{r})"))?)),
        PathMatch::FullRegex(r) => PathMatcher::Regex(Box::new(Regex::new(&format!("^(?:{r})$"))?)),
    };
    let values = |list: &[HeaderMatch], lower: bool| -> Result<Vec<_>, regex::Error> {
        list.iter()
            .map(|h| {
                let name = if lower {
                    h.name.to_ascii_lowercase()
                } else {
                    h.name.clone()
                };
                let v = match &h.value {
                    StringMatch::Exact(s) => ValueMatcher::Exact(s.clone()),
                    StringMatch::Regex(r) => {
                        ValueMatcher::Regex(Regex::new(&format!("^(?:{r})$"))?)
                    }
                };
                Ok((name, v))
            })
            .collect()
    };
    let more = MoreMatch {
        tls: m.tls,
        method: m.method().map(|s| s.to_ascii_uppercase()),
        listener_ports: m.listener_ports().map(<[u16]>::to_vec),
        gateway_addresses: m.gateway_addresses().map(<[std::net::IpAddr]>::to_vec),
        headers: values(m.headers(), true)?,
        query: values(m.query(), false)?,
    };
    Ok(Matcher {
        path,
        more: (!more.is_empty()).then(|| Box::new(more)),
    })
}

impl Matcher {
    /// The listener ports the route is limited to (Gateway API routes), if any.
    fn listener_ports(&self) -> Option<&Vec<u16>> {
        self.more.as_ref()?.listener_ports.as_ref()
    }

    /// Whether the route is served on the listener the request came through (its address,
    /// port and TLS), whatever the request asks for. `claimed`: the request's local address
    /// is a Gateway's.
    fn listens(&self, req: &RequestView<'_>, claimed: bool) -> bool {
        let gateway_addresses = self
            .more
            .as_ref()
            .and_then(|m| m.gateway_addresses.as_ref());
        (match gateway_addresses {
            None => !claimed,
            Some(at) => (req.local_addr).is_none_or(|a| at.contains(&a.to_canonical())),
        }) && (self.more.as_ref().and_then(|m| m.tls)).is_none_or(|t| t == req.tls)
            && match self.listener_ports() {
                // An Ingress route: the proxy's own listeners only.
                None => !req.gateway_listener,
                Some(ports) => req.listener_port.is_none_or(|p| ports.contains(&p)),
            }
    }

    /// `claimed`: the request's local address is a Gateway's.
    fn matches(&self, req: &RequestView<'_>, claimed: bool) -> bool {
        self.path.matches(req.path)
            && self.listens(req, claimed)
            && self.more.as_deref().is_none_or(|m| m.matches(req))
    }
}

impl MoreMatch {
    /// Method, headers and query (listeners: [`Matcher::listens`]).
    fn matches(&self, req: &RequestView<'_>) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(req.method))
            && self.headers.iter().all(|(name, v)| {
                req.headers
                    .get_all(name.as_str())
                    .iter()
                    .any(|hv| hv.to_str().is_ok_and(|s| v.matches(s)))
            })
            && self.query.iter().all(|(name, v)| {
                req.query.is_some_and(|q| {
                    q.split('&').any(|kv| {
                        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
                        k == name && v.matches(val)
                    })
                })
            })
    }
}

impl PathMatcher {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Prefix(p) => {
                // Element-wise: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
                path.starts_with(p.as_str())
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
            PathMatcher::CharPrefix(p) => path.starts_with(p.as_str()),
            PathMatcher::Regex(r) => r.is_match(path),
        }
    }
}

impl ValueMatcher {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatcher::Exact(s) => s == v,
            ValueMatcher::Regex(r) => r.is_match(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::fixtures::*;

    fn view<'a>(host: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            host,
            path,
            query: None,
            method: "GET",
            headers,
            tls: false,
            listener_port: None,
            gateway_listener: false,
            local_addr: None,
        }
    }

    /// Which backend service name a request goes to ("404" or "default:<svc>" otherwise).
    fn target(t: &RouteTable<Arc<Upstream>>, host: &str, path: &str) -> String {
        let h = HeaderMap::new();
        match t.lookup(&view(host, path, &h)) {
            Lookup::Route { route, .. } => match &route.action {
                CompiledAction::Forward(u) => u[0].0.service.name.clone(),
                CompiledAction::Respond { status, .. } => status.to_string(),
                CompiledAction::DefaultBackend => "root location".into(),
            },
            Lookup::Default { backend, .. } => format!("default:{}", backend.service.name),
            Lookup::NotFound { .. } => "404".into(),
        }
    }

    fn table(l7: &L7Config) -> RouteTable<Arc<Upstream>> {
        let (t, errs) = RouteTable::build(l7, Arc::clone);
        assert!(errs.is_empty(), "{errs:?}");
        t
    }

    /// The table of examples from the Kubernetes Ingress documentation.
    #[test]
    fn kubernetes_docs_path_examples() {
        type Paths<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Paths<'_>, &str, bool)] = &[
            (&[("Prefix", "/")], "/any/path", true),
            (&[("Exact", "/foo")], "/foo", true),
            (&[("Exact", "/foo")], "/bar", false),
            (&[("Exact", "/foo")], "/foo/", false),
            (&[("Exact", "/foo/")], "/foo", false),
            (&[("Prefix", "/foo")], "/foo", true),
            (&[("Prefix", "/foo")], "/foo/", true),
            (&[("Prefix", "/foo/")], "/foo", true),
            (&[("Prefix", "/foo/")], "/foo/", true),
            (&[("Prefix", "/aaa/bb")], "/aaa/bbb", false),
            (&[("Prefix", "/aaa/bbb")], "/aaa/bbb", true),
            (&[("Prefix", "/aaa/bbb/")], "/aaa/bbb", true),
            (&[("Prefix", "/aaa/bbb")], "/aaa/bbb/", true),
            (&[("Prefix", "/aaa/bbb")], "/aaa/bbb/ccc", true),
            (&[("Prefix", "/aaa/bbb")], "/aaa/bbbxyz", false),
            (&[("Prefix", "/"), ("Prefix", "/aaa")], "/aaa/ccc", true),
            (&[("Prefix", "/aaa"), ("Prefix", "/")], "/ccc", true),
            (&[("Prefix", "/aaa")], "/ccc", false),
            (&[("Exact", "/foo"), ("Prefix", "/foo")], "/foo", true),
            (&[("Prefix", "/foo"), ("Exact", "/foo")], "/foo", true),
        ];
        for (paths, req, want) in cases {
            let routes = paths
                .iter()
                .enumerate()
                .map(|(i, (kind, p))| route(path(kind, p), &format!("svc{i}")))
                .collect();
            let l7 = l7_with(vec![vhost("example.com", routes, false)], None);
            let got = target(&table(&l7), "example.com", req) != "404";
            assert_eq!(got, *want, "paths {paths:?} request {req}");
        }
    }

    #[test]
    fn longest_match_wins_and_exact_beats_prefix() {
        // Snapshot order is most specific first; the router keeps it.
        let l7 = l7_with(
            vec![vhost(
                "example.com",
                vec![
                    route(path("Exact", "/foo/bar"), "exact"),
                    route(path("Prefix", "/foo/bar"), "long"),
                    route(path("Prefix", "/foo"), "short"),
                    route(path("Prefix", "/"), "root"),
                ],
                false,
            )],
            None,
        );
        let t = table(&l7);
        assert_eq!(target(&t, "example.com", "/foo/bar"), "exact");
        assert_eq!(target(&t, "example.com", "/foo/bar/x"), "long");
        assert_eq!(target(&t, "example.com", "/foo/baz"), "short");
        assert_eq!(target(&t, "example.com", "/foobar"), "root");
    }

    #[test]
    fn hosts_exact_wildcard_any_and_default() {
        let l7 = l7_with(
            vec![
                vhost(
                    "foo.example.com",
                    vec![route(path("Prefix", "/"), "foo")],
                    false,
                ),
                vhost(
                    "*.example.com",
                    vec![route(path("Prefix", "/"), "wild")],
                    false,
                ),
                vhost("", vec![route(path("Prefix", "/any"), "any")], false),
            ],
            Some(upstream("fallback")),
        );
        let t = table(&l7);
        assert_eq!(target(&t, "foo.example.com", "/"), "foo");
        assert_eq!(target(&t, "FOO.Example.com:8080", "/"), "foo");
        assert_eq!(target(&t, "foo.example.com.", "/"), "foo");
        assert_eq!(target(&t, "bar.example.com", "/x"), "wild");
        // A wildcard covers exactly one label.
        assert_eq!(target(&t, "a.b.example.com", "/any"), "any");
        assert_eq!(target(&t, "example.com", "/any/thing"), "any");
        assert_eq!(target(&t, "example.com", "/other"), "default:fallback");
        assert_eq!(target(&t, "[2001:db8::1]:80", "/any"), "any");
    }

    #[test]
    fn matched_host_without_path_goes_to_default_not_other_hosts() {
        let l7 = l7_with(
            vec![
                vhost(
                    "foo.example.com",
                    vec![route(path("Exact", "/a"), "foo")],
                    false,
                ),
                vhost("", vec![route(path("Prefix", "/"), "any")], false),
            ],
            None,
        );
        let t = table(&l7);
        let h = HeaderMap::new();
        match t.lookup(&view("foo.example.com", "/b", &h)) {
            Lookup::NotFound { host, why } => {
                assert_eq!(host.map(|h| h.host.as_str()), Some("foo.example.com"));
                assert_eq!(why, Miss::NoPath);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn char_prefix_and_regex() {
        let l7 = l7_with(
            vec![vhost(
                "example.com",
                vec![
                    route(path("Regex", "/api/v[0-9]+/"), "re"),
                    route(path("ImplementationSpecific", "/img"), "chr"),
                ],
                false,
            )],
            None,
        );
        let t = table(&l7);
        assert_eq!(target(&t, "example.com", "/api/v2/users"), "re");
        assert_eq!(target(&t, "example.com", "/x/api/v2/"), "404");
        assert_eq!(target(&t, "example.com", "/imgs/a.png"), "chr");
    }

    #[test]
    fn header_method_and_query_matches() {
        let mut r = route(path("Prefix", "/"), "canary");
        r.matches.set_more(|m| {
            m.headers.push(HeaderMatch {
                name: "X-Canary".into(),
                value: StringMatch::Exact("always".into()),
            });
            m.method = Some("post".into());
            m.query.push(HeaderMatch {
                name: "v".into(),
                value: StringMatch::Regex("[0-9]+".into()),
            });
        });
        let l7 = l7_with(
            vec![vhost(
                "example.com",
                vec![r, route(path("Prefix", "/"), "stable")],
                false,
            )],
            None,
        );
        let t = table(&l7);
        let mut h = HeaderMap::new();
        h.insert("x-canary", "always".parse().unwrap());
        let mut req = view("example.com", "/", &h);
        req.method = "POST";
        req.query = Some("a=b&v=12");
        let name = |l: Lookup<'_, Arc<Upstream>>| match l {
            Lookup::Route { route, .. } => match &route.action {
                CompiledAction::Forward(u) => u[0].0.service.name.clone(),
                _ => "respond".into(),
            },
            _ => "none".into(),
        };
        assert_eq!(name(t.lookup(&req)), "canary");
        req.query = Some("v=x");
        assert_eq!(name(t.lookup(&req)), "stable");
        req.query = Some("v=1");
        req.method = "GET";
        assert_eq!(name(t.lookup(&req)), "stable");
    }

    #[test]
    fn bad_regex_skips_only_that_route() {
        let l7 = l7_with(
            vec![vhost(
                "example.com",
                vec![
                    route(path("Regex", "/(unclosed"), "bad"),
                    route(path("Prefix", "/"), "good"),
                ],
                false,
            )],
            None,
        );
        let (t, errs) = RouteTable::build(&l7, Arc::clone);
        assert_eq!(errs.len(), 1);
        assert_eq!(target(&t, "example.com", "/(unclosed"), "good");
    }

    #[test]
    fn many_hosts_lookup() {
        let hosts = (0..10_000)
            .map(|i| {
                vhost(
                    &format!("h{i}.example.com"),
                    vec![route(path("Prefix", "/"), &format!("s{i}"))],
                    false,
                )
            })
            .collect();
        let t = table(&l7_with(hosts, None));
        assert_eq!(t.host_count(), 10_000);
        assert_eq!(target(&t, "h9999.example.com", "/"), "s9999");
    }
}
