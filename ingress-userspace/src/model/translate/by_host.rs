//! The fast path for Ingress changes: only the hosts the changed Ingresses name (before and
//! after the change) are translated again, from every Ingress naming one of them (and, in
//! turn, every host those name), and spliced into the previous snapshot. A host's virtual host
//! and certificate depend only on the Ingresses naming it (conflicts, precedence, regex mode,
//! root location are all per host) and, for its plain-HTTP redirect, on those of its one-label
//! wildcard (`x.example.com` and `*.example.com` are translated together), so the result
//! equals a full translation.
//!
//! A catch-all Ingress (a `defaultBackend`, no rules) is one of host `""`: it serves only
//! the default server, as ingress-nginx's `createServers` has it.
//!
//! What reaches beyond its own hosts makes the change translate in full: canaries, `server-alias`, `from-to-www-redirect`,
//! `ssl-passthrough`, a diagnostic on another object, a backend outside the namespaces
//! translated, refused endpoint addresses. Tests
//! (`incremental_tests`) check random change sequences against a full translation.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use crate::compact::ingress::Ingress;

use super::{
    Translator, class,
    diagnostics::Diagnostics,
    endpoints::{EndpointIndex, REFUSED_REASON},
    ingress::normalize_host,
    support,
};
use crate::{
    model::{ObjectKind, ObjectRef, Snapshot},
    store::{Key, Objects},
};

/// Above this many Ingresses to translate again, a full translation is about as cheap.
const MAX_INGRESSES: usize = 256;

/// Annotations (without prefix) whose effect reaches other hosts or the whole controller.
fn reaches_other_hosts(annotation: &str) -> bool {
    annotation.starts_with("canary")
        || matches!(
            annotation,
            "server-alias" | "from-to-www-redirect" | "ssl-passthrough"
        )
}

/// Host names (normalized; `""` for rules without a host, `*.` kept) that `ing` names in its
/// rules and `spec.tls`.
pub fn hosts_of(ing: &Ingress) -> Vec<String> {
    let Some(spec) = &ing.spec else {
        return Vec::new();
    };
    let rules = spec.rules.iter().flatten().map(|r| r.host.as_deref());
    let tls = spec
        .tls
        .iter()
        .flatten()
        .flat_map(|t| t.hosts.iter().flatten().map(|h| Some(h.as_str())));
    // A catch-all Ingress (a Service `defaultBackend`, no rules) serves the default server
    // only, ingress-nginx's `_`: the host of rules without a host.
    let catch_all = (spec.rules.as_deref().unwrap_or_default().is_empty()
        && spec
            .default_backend
            .as_ref()
            .is_some_and(|b| b.service.is_some()))
    .then_some(None);
    let mut out: Vec<String> = rules
        .chain(tls)
        .chain(catch_all)
        .filter_map(|h| normalize_host(h.unwrap_or_default()).ok())
        .collect();
    out.sort();
    out.dedup();
    // Kept per owned Ingress in the index: exact length, not the 4 a filtered collect
    // starts with (issue 13's memory target: one host per Ingress, 10k Ingresses).
    out.shrink_to_fit();
    out
}

/// Whether what `ing` asks for reaches beyond the hosts it names (see the module docs).
pub fn reaches_beyond_hosts(ing: &Ingress) -> bool {
    let annotated = ing
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, _)| support::strip_prefix(k))
        .any(reaches_other_hosts);
    // An Ingress without rules reaches only the default server (its `defaultBackend`,
    // [`hosts_of`]) or nothing.
    annotated
}

/// What one owned Ingress contributed to the last snapshot.
#[derive(Debug, Default)]
pub struct Contribution {
    pub hosts: Vec<String>,
    /// Names counted in [`Snapshot::unsupported_annotations`].
    pub unsupported: Vec<String>,
}

/// Owned Ingresses of the last snapshot by host, to find what a change touches.
#[derive(Debug, Default)]
pub struct IngressIndex {
    pub of: HashMap<Key, Contribution>,
    /// Each host's Ingresses, sorted, without duplicates: a `Vec`, as almost every host has
    /// one (a `BTreeSet` allocates a ~550-byte node for it; issue 13's memory target).
    pub by_host: HashMap<String, Vec<Key>>,
    /// Owned Ingresses whose effect reaches beyond their hosts.
    pub global: HashSet<Key>,
}

impl IngressIndex {
    pub fn insert(&mut self, key: Key, c: Contribution) {
        for h in &c.hosts {
            // Almost every host has one Ingress: room for one, not the 4 a first insert
            // makes (192 bytes of `Key`s per host; issue 13's memory target).
            let keys = (self.by_host.entry(h.clone())).or_insert_with(|| Vec::with_capacity(1));
            if let Err(at) = keys.binary_search(&key) {
                keys.insert(at, key.clone());
            }
        }
        self.of.insert(key, c);
    }

    fn remove(&mut self, key: &Key) -> Option<Contribution> {
        let c = self.of.remove(key)?;
        for h in &c.hosts {
            if let Some(keys) = self.by_host.get_mut(h) {
                if let Ok(at) = keys.binary_search(key) {
                    keys.remove(at);
                }
                if keys.is_empty() {
                    self.by_host.remove(h);
                }
            }
        }
        self.global.remove(key);
        Some(c)
    }
}

/// The Ingresses and hosts to translate again when `changed` Ingresses changed: closed under
/// "an Ingress names this host" and "this host is named by an Ingress". `None` when it
/// reaches too far or something reaches beyond its hosts.
fn closure(
    index: &IngressIndex,
    objects: &Objects,
    changed: &HashSet<Key>,
) -> Option<(BTreeSet<Key>, BTreeSet<String>)> {
    let mut ingresses = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut queue: Vec<Key> = changed.iter().cloned().collect();
    while let Some(k) = queue.pop() {
        if ingresses.len() >= MAX_INGRESSES {
            return None;
        }
        if !ingresses.insert(k.clone()) {
            continue;
        }
        let mut names = index
            .of
            .get(&k)
            .map(|c| c.hosts.clone())
            .unwrap_or_default();
        if changed.contains(&k)
            && let Some(ing) = objects.ingresses.get(&k)
        {
            if reaches_beyond_hosts(ing) {
                return None;
            }
            names.extend(hosts_of(ing));
        }
        while let Some(h) = names.pop() {
            if hosts.insert(h.clone()) {
                queue.extend(index.by_host.get(&h).into_iter().flatten().cloned());
                names.extend(wildcard_neighbours(index, &h));
            }
        }
    }
    Some((ingresses, hosts))
}

/// The hosts whose plain-HTTP redirect depends on `host`'s certificate or the other way
/// round: a name is redirected when it or its one-label wildcard has a certificate
/// ([`super::server_cert::configured`]), so `x.example.com` and `*.example.com` go together.
/// A wildcard's names are found by a pass over the indexed hosts: wildcard changes are few.
fn wildcard_neighbours(index: &IngressIndex, host: &str) -> Vec<String> {
    match host.strip_prefix("*.") {
        Some(suffix) => (index.by_host.keys())
            .filter(|h| {
                h.strip_suffix(suffix)
                    .and_then(|first| first.strip_suffix('.'))
                    .is_some_and(|first| !first.is_empty() && !first.contains('.'))
            })
            .cloned()
            .collect(),
        None => super::server_cert::wildcard_of(host)
            .filter(|w| index.by_host.contains_key(w))
            .into_iter()
            .collect(),
    }
}

fn is_ingress_of(d: &crate::model::Diagnostic, set: &BTreeSet<Key>) -> bool {
    d.object.kind == ObjectKind::Ingress
        && set.contains(&Key::new(d.object.namespace.clone(), d.object.name.clone()))
}

impl Translator {
    /// The snapshot after changes of `changed` Ingresses only, from the last one; `None` when
    /// a full translation is needed (see the module docs).
    pub(super) fn ingresses_only(
        &mut self,
        objects: &Objects,
        changed: &HashSet<Key>,
    ) -> Option<Snapshot> {
        let (last, _) = self.last.as_ref()?;
        if super::incremental::has_gateway_routes(objects) {
            return None;
        }
        let index = self.index.as_ref()?;
        if !index.global.is_empty() || last.diagnostics.iter().any(|d| d.reason == REFUSED_REASON) {
            return None;
        }
        let (ingresses, hosts) = closure(index, objects, changed)?;

        let classes = class::Classes::new(objects, &self.config);
        let namespaces: HashSet<&str> = ingresses.iter().map(|k| k.namespace.as_str()).collect();
        let endpoints = EndpointIndex::for_namespaces(objects, &namespaces, &self.config);
        // The ConfigMap's own diagnostics are in the last snapshot already.
        let controller = self.controller_config(objects, &mut Diagnostics::default());
        let mut diags = Diagnostics::default();
        let part = super::l7_of(
            objects,
            ingresses.iter().filter_map(|k| objects.ingresses.get(k)),
            &classes,
            &endpoints,
            controller,
            &mut self.tls,
            &self.config,
            &mut diags,
        );
        if endpoints.missed() || !part.index.global.is_empty() {
            return None;
        }
        let new_diags = diags.finish();
        // A diagnostic on another object would outlive (or miss) the Ingress that caused it.
        if new_diags
            .iter()
            .any(|d| !is_ingress_of(d, &ingresses) && last.diagnostics.binary_search(d).is_err())
        {
            return None;
        }
        let in_hosts = |h: &str, prefix: &str| hosts.contains(&format!("{prefix}{h}"));
        if !part.l7.hosts.keys().all(|h| in_hosts(h, ""))
            || !part.l7.wildcard_hosts.keys().all(|h| in_hosts(h, "*."))
            || !part.l7.certificates.keys().all(|h| hosts.contains(h))
            || (part.l7.any_host.is_some() && !hosts.contains(""))
        {
            return None;
        }

        let mut snap = (**last).clone();
        let (_, uses) = self.last.as_mut()?;
        let l7 = &mut snap.l7;
        for h in &hosts {
            let old = if h.is_empty() {
                l7.any_host.take()
            } else if let Some(suffix) = h.strip_prefix("*.") {
                l7.wildcard_hosts.remove(suffix)
            } else {
                l7.hosts.remove(h)
            };
            if let Some(vh) = old {
                uses.remove(h, &vh);
            }
            l7.certificates.remove(h);
        }
        for (h, vh) in part.l7.hosts {
            uses.add(&h, &vh);
            l7.hosts.insert(h, vh);
        }
        for (suffix, vh) in part.l7.wildcard_hosts {
            uses.add(&format!("*.{suffix}"), &vh);
            l7.wildcard_hosts.insert(suffix, vh);
        }
        if let Some(vh) = part.l7.any_host {
            uses.add("", &vh);
            l7.any_host = Some(vh);
        }
        l7.certificates.extend(part.l7.certificates);

        snap.diagnostics.retain(|d| !is_ingress_of(d, &ingresses));
        snap.diagnostics.extend(
            new_diags
                .into_iter()
                .filter(|d| is_ingress_of(d, &ingresses)),
        );
        snap.diagnostics.sort();
        snap.diagnostics.dedup();

        // Sorted: a few removals and insertions, not a pass over every owned Ingress; and
        // none (the list stays shared) when the changed Ingresses stay owned or not as they were.
        let mut was_owned: Vec<ObjectRef> = (ingresses.iter())
            .map(|k| ObjectRef::new(ObjectKind::Ingress, k.namespace.clone(), k.name.clone()))
            .filter(|o| snap.owned_ingresses.binary_search(o).is_ok())
            .collect();
        was_owned.sort();
        let mut now_owned = part.owned_ingresses;
        now_owned.sort();
        now_owned.dedup();
        if was_owned != now_owned {
            let owned = Arc::make_mut(&mut snap.owned_ingresses);
            for o in &was_owned {
                if let Ok(i) = owned.binary_search(o) {
                    owned.remove(i);
                }
            }
            for o in now_owned {
                if let Err(i) = owned.binary_search(&o) {
                    owned.insert(i, o);
                }
            }
        }

        let index = self.index.as_mut()?;
        for k in &ingresses {
            for name in index.remove(k).into_iter().flat_map(|c| c.unsupported) {
                if let Some(n) = snap.unsupported_annotations.get_mut(&name) {
                    *n -= 1;
                    if *n == 0 {
                        snap.unsupported_annotations.remove(&name);
                    }
                }
            }
        }
        for (k, c) in part.index.of {
            for name in &c.unsupported {
                *snap
                    .unsupported_annotations
                    .entry(name.clone())
                    .or_insert(0) += 1;
            }
            index.insert(k, c);
        }
        // Over-approximated until the next full translation: at worst a change elsewhere
        // translates when it need not.
        if let Some(refs) = &mut self.refs {
            refs.services.extend(part.refs.services);
            refs.secrets.extend(part.refs.secrets);
            refs.config_maps.extend(part.refs.config_maps);
            refs.auth_services.extend(part.refs.auth_services);
        }
        Some(snap)
    }
}
