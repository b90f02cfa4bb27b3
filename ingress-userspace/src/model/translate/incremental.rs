//! The fast path for the most common change: endpoints of some Services moved (EndpointSlice
//! updates) and nothing else. The previous snapshot is copied (its maps hold `Arc`s) and only
//! the upstreams of those Services are rebuilt with fresh endpoints, in every virtual host and
//! default backend that uses them; L4 services and status addresses are recomputed whole (cheap).
//! Anything it cannot map back (a Service or port gone) returns `None`: the caller translates
//! in full, as it does while any endpoint address is refused (its diagnostics need the full
//! pass). Tests check it gives exactly what a full translation gives.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{
    Translator,
    endpoints::{EndpointIndex, REFUSED_REASON},
    service,
};
use crate::{
    model::{Canary, ErrorPages, RouteAction, Snapshot, Upstream, VirtualHost, WeightedUpstream},
    store::{Key, Objects},
};

/// Where each Service's upstreams appear in a snapshot.
#[derive(Debug, Default)]
pub struct Uses {
    /// Service -> exact host names, wildcard suffixes, any-host.
    exact: HashMap<Key, Vec<String>>,
    wildcard: HashMap<Key, Vec<String>>,
    /// Gateway API wildcard suffixes.
    gateway_wildcard: HashMap<Key, Vec<String>>,
    any: HashSet<Key>,
}

fn key_of(u: &Upstream) -> Key {
    Key::new(u.service.namespace.clone(), u.service.name.clone())
}

/// The Services whose upstreams `vh` routes to, sorted, without duplicates.
fn services(vh: &VirtualHost) -> Vec<Key> {
    let mut keys: Vec<Key> = vh
        .routes
        .iter()
        .flat_map(|r| {
            let main = match &r.action {
                RouteAction::Forward(ups) => ups.iter().map(|w| key_of(&w.upstream)).collect(),
                // The default backend is rebuilt on its own, below.
                RouteAction::Respond { .. } | RouteAction::DefaultBackend => Vec::new(),
            };
            let errors = r.errors.iter().filter_map(|e| e.default_backend.as_deref());
            main.into_iter()
                .chain(r.canary.iter().map(|c| key_of(&c.upstream)))
                .chain(errors.map(key_of))
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The names of `k` in `map`, with room for one when new: a Service is almost always used
/// by one host, and a first push would make room for 4 (20k Services; issue 13's memory
/// target).
fn one(map: &mut HashMap<Key, Vec<String>>, k: Key) -> &mut Vec<String> {
    map.entry(k).or_insert_with(|| Vec::with_capacity(1))
}

impl Uses {
    pub fn of(snapshot: &Snapshot) -> Uses {
        let mut uses = Uses::default();
        for (host, vh) in &snapshot.l7.hosts {
            for k in services(vh) {
                one(&mut uses.exact, k).push(host.clone());
            }
        }
        for (suffix, vh) in &snapshot.l7.wildcard_hosts {
            for k in services(vh) {
                one(&mut uses.wildcard, k).push(suffix.clone());
            }
        }
        for (suffix, vh) in &snapshot.l7.gateway_wildcard_hosts {
            for k in services(vh) {
                one(&mut uses.gateway_wildcard, k).push(suffix.clone());
            }
        }
        if let Some(vh) = &snapshot.l7.any_host {
            uses.any.extend(services(vh));
        }
        // Kept until the next full translation: without the room pushes left (a Service most
        // hosts share with one other had room for four names).
        for hosts in [
            &mut uses.exact,
            &mut uses.wildcard,
            &mut uses.gateway_wildcard,
        ]
        .into_iter()
        .flat_map(|m| m.values_mut())
        {
            hosts.shrink_to_fit();
        }
        uses
    }

    /// Records `vh` served as `host` (`""`: any host; `*.suffix`: a wildcard).
    pub fn add(&mut self, host: &str, vh: &VirtualHost) {
        for k in services(vh) {
            if host.is_empty() {
                self.any.insert(k);
            } else if let Some(suffix) = host.strip_prefix("*.") {
                one(&mut self.wildcard, k).push(suffix.to_string());
            } else {
                one(&mut self.exact, k).push(host.to_string());
            }
        }
    }

    /// Forgets `vh`, served as `host`, as [`Uses::add`] recorded it.
    pub fn remove(&mut self, host: &str, vh: &VirtualHost) {
        for k in services(vh) {
            let (map, name) = if host.is_empty() {
                self.any.remove(&k);
                continue;
            } else if let Some(suffix) = host.strip_prefix("*.") {
                (&mut self.wildcard, suffix)
            } else {
                (&mut self.exact, host)
            };
            if let Some(names) = map.get_mut(&k) {
                names.retain(|n| n != name);
                if names.is_empty() {
                    map.remove(&k);
                }
            }
        }
    }
}

/// Rebuilds upstreams of `changed` Services; shares one new Arc per old one.
struct Rebuilder<'a> {
    objects: &'a Objects,
    endpoints: EndpointIndex<'a>,
    changed: &'a HashSet<Key>,
    done: HashMap<*const Upstream, Arc<Upstream>>,
}

impl Rebuilder<'_> {
    fn upstream(&mut self, old: &Arc<Upstream>) -> Option<Arc<Upstream>> {
        let key = key_of(old);
        // A ClusterIP upstream (`service-upstream`) and an ExternalName one do not follow the
        // Service's endpoints.
        if !self.changed.contains(&key) || old.service_upstream || old.external_name.is_some() {
            return Some(old.clone());
        }
        if let Some(u) = self.done.get(&Arc::as_ptr(old)) {
            return Some(u.clone());
        }
        let number: i32 = old.id.rsplit_once(':')?.1.parse().ok()?;
        let svc = self.objects.services.get(&key)?;
        let port = svc
            .spec
            .as_ref()?
            .ports
            .as_deref()?
            .iter()
            .find(|p| p.port == number)?;
        let fresh = Arc::new(Upstream {
            endpoints: self.endpoints.resolve(&key.namespace, &key.name, port),
            ..(**old).clone()
        });
        self.done.insert(Arc::as_ptr(old), fresh.clone());
        Some(fresh)
    }

    fn host(&mut self, vh: &Arc<VirtualHost>) -> Option<Arc<VirtualHost>> {
        let mut routes = Vec::with_capacity(vh.routes.len());
        for r in &vh.routes {
            let mut r = r.clone();
            if let RouteAction::Forward(ups) = &r.action {
                let mut new = Vec::with_capacity(ups.len());
                for w in ups {
                    new.push(WeightedUpstream {
                        upstream: self.upstream(&w.upstream)?,
                        weight: w.weight,
                    });
                }
                r.action = RouteAction::Forward(new);
            }
            if let Some(e) = &r.errors
                && let Some(d) = &e.default_backend
            {
                r.errors = Some(Arc::new(ErrorPages {
                    default_backend: Some(self.upstream(d)?),
                    ..(**e).clone()
                }));
            }
            if let Some(c) = &r.canary {
                r.canary = Some(Arc::new(Canary {
                    upstream: self.upstream(&c.upstream)?,
                    ..(**c).clone()
                }));
            }
            routes.push(r);
        }
        Some(Arc::new(VirtualHost {
            host: vh.host.clone(),
            routes: routes.into(),
            tls: vh.tls,
            app_root: vh.app_root.clone(),
            client_auth: vh.client_auth.clone(),
        }))
    }
}

fn replace(
    map: &mut crate::model::NameMap<VirtualHost>,
    names: Option<&Vec<String>>,
    rb: &mut Rebuilder,
) -> Option<()> {
    for name in names.into_iter().flatten() {
        let vh = map.get(name)?.clone();
        map.insert(name.clone(), rb.host(&vh)?);
    }
    Some(())
}

impl Translator {
    /// The snapshot after endpoint changes of `changed` Services only, from the last one.
    pub(super) fn endpoints_only(
        &self,
        objects: &Objects,
        changed: &HashSet<Key>,
    ) -> Option<Snapshot> {
        let (last, uses) = self.last.as_ref()?;
        // Gateway API routes are translated whole, not patched: translate in full.
        if has_gateway_routes(objects) {
            return None;
        }
        // The default backend comes and goes with its ready endpoints, with a diagnostic:
        // translate in full.
        if (self.config.default_backend_service.as_ref()).is_some_and(|k| changed.contains(k)) {
            return None;
        }
        // An auth URL's Service endpoints live in route policies: translate in full.
        if let Some(refs) = &self.refs
            && changed.iter().any(|k| refs.auth_services.contains(k))
        {
            return None;
        }
        let endpoints = EndpointIndex::for_services(objects, changed, &self.config);
        // Refused endpoint addresses come with diagnostics, which only a full translation
        // computes: while any are (or were) present, translate in full. They are rare.
        if endpoints.any_refused(changed)
            || last.diagnostics.iter().any(|d| d.reason == REFUSED_REASON)
        {
            return None;
        }
        let mut snap = (**last).clone();
        let mut rb = Rebuilder {
            objects,
            endpoints,
            changed,
            done: HashMap::new(),
        };
        for key in changed {
            replace(&mut snap.l7.hosts, uses.exact.get(key), &mut rb)?;
            replace(&mut snap.l7.wildcard_hosts, uses.wildcard.get(key), &mut rb)?;
            replace(
                &mut snap.l7.gateway_wildcard_hosts,
                uses.gateway_wildcard.get(key),
                &mut rb,
            )?;
            if uses.any.contains(key)
                && let Some(vh) = &snap.l7.any_host
            {
                snap.l7.any_host = Some(rb.host(&vh.clone())?);
            }
        }
        if let Some(d) = &snap.l7.default_backend {
            snap.l7.default_backend = Some(rb.upstream(&d.clone())?);
        }
        for p in snap.l7.passthrough.values_mut() {
            p.upstream = rb.upstream(&p.upstream.clone())?;
        }
        for l4 in &mut snap.l4 {
            let key = Key::new(l4.service.namespace.clone(), l4.service.name.clone());
            if !changed.contains(&key) {
                continue;
            }
            let label = l4.id.rsplit_once(':')?.1;
            let spec = objects.services.get(&key)?.spec.as_ref()?;
            let port = spec
                .ports
                .as_deref()?
                .iter()
                .find(|p| service::port_label(p) == label)?;
            let fresh = service::port_endpoints(
                &rb.endpoints,
                &key,
                spec,
                port,
                self.config.node_name.as_deref(),
            );
            l4.endpoints = fresh.endpoints;
            l4.health_check = fresh.health_check;
        }
        snap.status_addresses = super::status_addresses(objects, &snap.l4, &self.config);
        Some(snap)
    }
}

/// True when Gateway API objects feed the snapshot: the incremental paths patch what
/// Ingresses made and know nothing of Gateways' listeners and routes merged into the same
/// hosts, so they step aside for a full translation.
pub(super) fn has_gateway_routes(objects: &Objects) -> bool {
    !objects.gateways.is_empty()
        || !objects.http_routes.is_empty()
        || !objects.tcp_routes.is_empty()
        || !objects.udp_routes.is_empty()
        || !objects.tls_routes.is_empty()
        || !objects.grpc_routes.is_empty()
        || !objects.listener_sets.is_empty()
}
