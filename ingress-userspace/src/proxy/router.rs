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
//! `Arc`), so [`RouteTable::rebuild`] takes those hosts' compiled form from the previous table
//! and compiles only the others: a one-Ingress change compiles one host, not ten thousand.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use http::HeaderMap;
use regex::Regex;

use super::{canary::CompiledCanary, error_pages::CompiledErrors};
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

/// Host names (lower case) to indexes in [`RouteTable::vhosts`]. The names are `Arc`s that
/// the next table takes from this one for the hosts both have (no allocation per host), and
/// the hasher is aHash (SipHash was a third of building the maps at 10k hosts).
type NameMap = HashMap<Arc<str>, usize, ahash::RandomState>;

/// A compiled route table over upstream handles of type `U`.
#[derive(Debug)]
pub struct RouteTable<U> {
    exact: NameMap,
    wildcard: NameMap,
    /// Gateway API wildcards (one or more labels), by suffix.
    gateway_wildcard: NameMap,
    any_host: Option<usize>,
    vhosts: Vec<Arc<CompiledHost<U>>>,
    /// What each of `vhosts` was compiled from, for the next [`RouteTable::rebuild`].
    sources: Vec<Arc<Source<U>>>,
    default_backend: Option<U>,
    /// Ports with a Gateway API listener: the proxy's own ports where a Gateway shares them,
    /// and the ports opened for Gateways ([`Self::gateway_miss`]).
    gateway_ports: BTreeSet<u16>,
    /// Local addresses owned by Gateways: only their routes are served there.
    claimed: std::collections::HashSet<std::net::IpAddr>,
}

/// The virtual host a compiled host came from and the handles `resolve` gave for its
/// upstreams, in the order compiling asked for them: the compiled host stands for as long as
/// the virtual host is the same `Arc` and the same upstreams resolve to the same handles.
#[derive(Debug)]
struct Source<U> {
    vh: Arc<VirtualHost>,
    handles: Vec<(Arc<Upstream>, U)>,
}

/// A route handle that can tell whether it is the very one resolved before (not merely an
/// equal one): a compiled host is reused only when its handles are still what the routes
/// resolve to.
pub trait SameHandle {
    fn same(&self, other: &Self) -> bool;
}

impl<T> SameHandle for Arc<T> {
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

#[derive(Debug)]
pub struct CompiledHost<U> {
    /// As written in the rule (`a.example.com`, `*.example.com`, empty for any host).
    pub host: String,
    /// The host for metrics (`*` for rules without a host).
    pub label: Arc<String>,
    pub tls: bool,
    pub routes: Vec<CompiledRoute<U>>,
    /// `app-root` (see [`super::rewrite::app_root`]).
    pub app_root: Option<String>,
}

#[derive(Debug)]
pub struct CompiledRoute<U> {
    pub path: PathMatch,
    matcher: Matcher,
    pub action: CompiledAction<U>,
    pub policy: Arc<RoutePolicy>,
    pub origin: RouteOrigin,
    /// `namespace/name` of the Ingress, for metrics and logs.
    pub ingress: Arc<String>,
    /// The Ingress rule's path as written ([`RouteOrigin::location_path`], ingress-nginx
    /// `$location_path`): the affinity cookie's default `Path`, and the path of metrics and logs.
    pub path_label: Arc<String>,
    /// The canary merged into this route, decided per request by [`super::canary`].
    pub canary: Option<CompiledCanary<U>>,
    /// `default-backend` and `custom-http-errors` ([`super::error_pages`]).
    pub errors: Option<CompiledErrors<U>>,
    /// The regex `rewrite-target` is applied with ([`super::rewrite::compile`]).
    pub rewrite: Option<Regex>,
    /// Gateway API `RequestMirror` filters: `(backend, numerator, denominator)`.
    pub mirrors: Vec<(U, u32, u32)>,
}

#[derive(Debug)]
pub enum CompiledAction<U> {
    Forward(Vec<(U, u32)>),
    Respond {
        status: u16,
        reason: String,
    },
    /// [`RouteAction::DefaultBackend`]: the table's default backend, else the built-in 404.
    DefaultBackend,
}

#[derive(Debug)]
struct Matcher {
    path: PathMatcher,
    method: Option<String>,
    tls: Option<bool>,
    listener_ports: Option<Vec<u16>>,
    gateway_addresses: Option<Vec<std::net::IpAddr>>,
    headers: Vec<(String, ValueMatcher)>,
    query: Vec<(String, ValueMatcher)>,
}

#[derive(Debug)]
enum PathMatcher {
    Exact(String),
    /// Stored without the trailing slash; empty means "/" (everything).
    Prefix(String),
    CharPrefix(String),
    Regex(Regex),
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

impl<U: Clone + SameHandle> RouteTable<U> {
    /// Compiles the L7 part of a snapshot; `resolve` turns each upstream into a handle `U`.
    pub fn build(
        l7: &L7Config,
        resolve: impl FnMut(&Arc<Upstream>) -> U,
    ) -> (Self, Vec<RouteError>) {
        Self::rebuild(l7, None, resolve)
    }

    /// [`RouteTable::build`], taking from `previous` the compiled form of each host whose
    /// virtual host is the same `Arc` as there (under the same name) and whose upstreams
    /// `resolve` maps to the same handles as then; only the other hosts are compiled. The
    /// table answers every request as `build` would ([`tests::rebuild_answers_as_build`]).
    /// `resolve` is asked for every upstream in the same order either way.
    pub fn rebuild(
        l7: &L7Config,
        previous: Option<&Self>,
        mut resolve: impl FnMut(&Arc<Upstream>) -> U,
    ) -> (Self, Vec<RouteError>) {
        let mut b = Builder {
            previous,
            resolve: &mut resolve,
            errors: Vec::new(),
            vhosts: Vec::with_capacity(l7.host_count()),
            sources: Vec::with_capacity(l7.host_count()),
        };
        // The previous table's key (an `Arc`, no allocation) and index for this name.
        let was = |of: fn(&Self) -> &NameMap, name: &str| -> (Arc<str>, Option<usize>) {
            let name = lower(name);
            match previous.and_then(|p| of(p).get_key_value(&*name)) {
                Some((k, i)) => (Arc::clone(k), Some(*i)),
                None => (Arc::from(&*name), None),
            }
        };
        // Wildcards by suffix (`*.` off).
        let names = |map: &BTreeMap<String, Arc<VirtualHost>>,
                     of: fn(&Self) -> &NameMap,
                     wildcard: bool,
                     b: &mut Builder<'_, U, _>| {
            let mut out = NameMap::with_capacity_and_hasher(map.len(), Default::default());
            for (h, vh) in map {
                let name = match wildcard {
                    true => h.strip_prefix("*.").unwrap_or(h),
                    false => h,
                };
                let (key, was) = was(of, name);
                out.insert(key, b.host(vh, was));
            }
            out
        };
        let exact = names(&l7.hosts, |t| &t.exact, false, &mut b);
        let wildcard = names(&l7.wildcard_hosts, |t| &t.wildcard, true, &mut b);
        let gateway_wildcard = names(
            &l7.gateway_wildcard_hosts,
            |t| &t.gateway_wildcard,
            true,
            &mut b,
        );
        let any_host = l7
            .any_host
            .as_ref()
            .map(|vh| b.host(vh, previous.and_then(|p| p.any_host)));
        let default_backend = l7.default_backend.as_ref().map(&mut *b.resolve);
        let Builder {
            errors,
            vhosts,
            sources,
            ..
        } = b;
        let gateway_ports = l7
            .gateway_listeners
            .keys()
            .chain(l7.gateway_https_hosts.keys())
            .chain(&l7.gateway_shared_ports)
            .copied()
            .chain(
                vhosts
                    .iter()
                    .flat_map(|h| &h.routes)
                    .filter_map(|r| r.matcher.listener_ports.as_ref())
                    .flatten()
                    .copied(),
            )
            .collect();
        (
            RouteTable {
                exact,
                wildcard,
                gateway_wildcard,
                any_host,
                vhosts,
                sources,
                default_backend,
                gateway_ports,
                claimed: l7.gateway_addresses.keys().copied().collect(),
            },
            errors,
        )
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

/// One [`RouteTable::rebuild`] under way.
struct Builder<'a, U, R> {
    previous: Option<&'a RouteTable<U>>,
    resolve: &'a mut R,
    errors: Vec<RouteError>,
    vhosts: Vec<Arc<CompiledHost<U>>>,
    sources: Vec<Arc<Source<U>>>,
}

impl<U: Clone + SameHandle, R: FnMut(&Arc<Upstream>) -> U> Builder<'_, U, R> {
    /// Adds `vh`'s compiled host (the previous table's `was`-th when it still stands) and
    /// returns its index.
    fn host(&mut self, vh: &Arc<VirtualHost>, was: Option<usize>) -> usize {
        if let Some((host, source)) = self
            .previous
            .zip(was)
            .and_then(|(p, i)| p.vhosts.get(i).zip(p.sources.get(i)))
            && Arc::ptr_eq(&source.vh, vh)
            && source
                .handles
                .iter()
                .all(|(spec, old)| (self.resolve)(spec).same(old))
        {
            self.vhosts.push(Arc::clone(host));
            self.sources.push(Arc::clone(source));
            return self.vhosts.len() - 1;
        }
        let mut handles = Vec::new();
        let mut resolve = |spec: &Arc<Upstream>| {
            let h = (self.resolve)(spec);
            handles.push((Arc::clone(spec), h.clone()));
            h
        };
        let mut routes = Vec::with_capacity(vh.routes.len());
        for r in &vh.routes {
            match compile_route(r, &mut resolve) {
                Ok(c) => routes.push(c),
                Err(e) => self.errors.push(e),
            }
        }
        self.vhosts.push(Arc::new(CompiledHost {
            host: vh.host.clone(),
            label: Arc::new(if vh.host.is_empty() {
                "*".into()
            } else {
                vh.host.clone()
            }),
            tls: vh.tls,
            routes,
            app_root: vh.app_root.clone(),
        }));
        self.sources.push(Arc::new(Source {
            vh: Arc::clone(vh),
            handles,
        }));
        self.vhosts.len() - 1
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
        (self.exact.get(name).into_iter())
            .chain(wildcards)
            .chain(&self.any_host)
            .filter_map(|i| self.vhosts.get(*i).map(|h| &**h))
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
        // Gateway is not hidden by another Gateway's hostname). A host that has routes here
        // keeps its misses, as ingress-nginx's server block does.
        let listens =
            |h: &CompiledHost<U>| h.routes.iter().any(|r| r.matcher.listens(req, claimed));
        let mut host = hosts.next();
        if let Some(h) = host
            && !listens(h)
            && let Some(here) = hosts.find(|h| listens(h))
        {
            host = Some(here);
        }
        let why = match host {
            None => Miss::NoHost,
            Some(h) => match h.routes.iter().find(|r| r.matcher.matches(req, claimed)) {
                Some(route) => return Lookup::Route { host: h, route },
                None => Miss::NoPath,
            },
        };
        match &self.default_backend {
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
                    .listener_ports
                    .as_ref()
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
        self.sources
            .iter()
            .flat_map(|s| s.handles.iter().map(|(_, h)| h))
            .chain(&self.default_backend)
    }

    pub fn default_backend(&self) -> Option<&U> {
        self.default_backend.as_ref()
    }

    pub fn host_count(&self) -> usize {
        self.vhosts.len()
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

fn compile_route<U>(
    route: &Route,
    resolve: &mut impl FnMut(&Arc<Upstream>) -> U,
) -> Result<CompiledRoute<U>, RouteError> {
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
            reason: reason.clone(),
        },
        RouteAction::DefaultBackend => CompiledAction::DefaultBackend,
    };
    let canary = route
        .canary
        .as_ref()
        .map(|c| CompiledCanary::compile(c, &mut *resolve))
        .transpose()
        .map_err(err)?;
    let errors = route.errors.as_ref().map(|e| CompiledErrors {
        default_backend: e.default_backend.as_ref().map(&mut *resolve),
        intercept: e.intercept.clone(),
    });
    let rewrite = super::rewrite::compile(&matched, route.policy.rewrite.target.as_deref());
    let mirrors = route
        .policy
        .gateway
        .iter()
        .flat_map(|g| &g.mirrors)
        .map(|m| (resolve(&m.upstream), m.numerator, m.denominator))
        .collect();
    Ok(CompiledRoute {
        errors,
        canary,
        rewrite,
        mirrors,
        path: route.matches.path.clone(),
        matcher,
        action,
        policy: route.policy.clone(),
        origin: route.origin.clone(),
        ingress: Arc::new(ingress),
        path_label: Arc::new(route.origin.location_path().to_string()),
    })
}

fn compile_match(m: &RouteMatch) -> Result<Matcher, regex::Error> {
    let path = match &m.path {
        PathMatch::Exact(p) => PathMatcher::Exact(p.clone()),
        PathMatch::Prefix(p) => PathMatcher::Prefix(p.trim_end_matches('/').to_string()),
        PathMatch::CharPrefix(p) => PathMatcher::CharPrefix(p.clone()),
        PathMatch::Regex(r) => PathMatcher::Regex(Regex::new(&format!("(?i)^(?:{r})"))?),
        PathMatch::FullRegex(r) => PathMatcher::Regex(Regex::new(&format!("^(?:{r})$"))?),
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
    Ok(Matcher {
        path,
        method: m.method.as_ref().map(|s| s.to_ascii_uppercase()),
        tls: m.tls,
        listener_ports: m.listener_ports.clone(),
        gateway_addresses: m.gateway_addresses.clone(),
        headers: values(&m.headers, true)?,
        query: values(&m.query, false)?,
    })
}

impl Matcher {
    /// Whether the route is served on the listener the request came through (its address,
    /// port and TLS), whatever the request asks for. `claimed`: the request's local address
    /// is a Gateway's.
    fn listens(&self, req: &RequestView<'_>, claimed: bool) -> bool {
        (match &self.gateway_addresses {
            None => !claimed,
            Some(at) => (req.local_addr).is_none_or(|a| at.contains(&a.to_canonical())),
        }) && self.tls.is_none_or(|t| t == req.tls)
            && match &self.listener_ports {
                // An Ingress route: the proxy's own listeners only.
                None => !req.gateway_listener,
                Some(ports) => req.listener_port.is_none_or(|p| ports.contains(&p)),
            }
    }

    /// `claimed`: the request's local address is a Gateway's.
    fn matches(&self, req: &RequestView<'_>, claimed: bool) -> bool {
        self.path.matches(req.path)
            && self.listens(req, claimed)
            && self
                .method
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
        r.matches.headers.push(HeaderMatch {
            name: "X-Canary".into(),
            value: StringMatch::Exact("always".into()),
        });
        r.matches.method = Some("post".into());
        r.matches.query.push(HeaderMatch {
            name: "v".into(),
            value: StringMatch::Regex("[0-9]+".into()),
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
