//! The upstream runtimes a [`super::Runtime`] keeps, patched from one snapshot to the next.
//!
//! Every use of an upstream spec (a compiled host's route, the default backend, an SNI entry)
//! takes it ([`Upstreams::take`]) and gives it back when that use goes ([`Upstreams::give_back`]),
//! so the set holds exactly the runtimes the snapshot's routes use without walking them. Both
//! maps are persistent (`imbl`): the next runtime copies them in O(1) and a change copies only
//! the paths it touches, where rebuilding them visited every upstream (20k at 10k hosts).
//!
//! Variants: Ingresses whose annotations differ (affinity, protocol, balancing) give one
//! Service port's id specs that are not equal; each such variant has its own runtime, or it
//! would serve with another's options. Equal specs (under different `Arc`s, from different
//! hosts) share one runtime. Variants are kept as a set by id: nothing outside names them
//! (probes and `endpoint_health` go by `spec.id` and endpoint address).

use std::{collections::HashMap, sync::Arc};

use super::upstream::{HealthPolicy, UpstreamRuntime};
use crate::model::Upstream;

/// The runtimes of every upstream spec in use, by spec `Arc` and by id.
#[derive(Clone, Default)]
pub struct Upstreams {
    /// By the spec `Arc`'s address: the spec (held, so no other spec can take the address
    /// while it is a key), its runtime and how many uses hold it.
    by_spec: Persistent<usize, Held>,
    /// By upstream id: each variant's runtime (specs pairwise unequal) and how many specs of
    /// `by_spec` resolve to it.
    by_id: Persistent<Arc<str>, Variants>,
}

/// One id's runtimes, each with how many specs resolve to it. A shared slice of exactly its
/// length: a `Vec` grown by a push kept room for four where an id nearly always has one
/// (~80 bytes an upstream, 20k at 10k Ingresses; issue 13).
type Variants = Arc<[(Arc<UpstreamRuntime>, u32)]>;

/// A persistent map (copied in O(1), patched along one path) hashed with aHash.
type Persistent<K, V> =
    imbl::GenericHashMap<K, V, ahash::RandomState, imbl::shared_ptr::DefaultSharedPtr>;

#[derive(Clone)]
struct Held {
    spec: Arc<Upstream>,
    runtime: Arc<UpstreamRuntime>,
    uses: u32,
}

fn addr(spec: &Arc<Upstream>) -> usize {
    Arc::as_ptr(spec) as usize
}

/// Runtimes that uses given back in the same patch held, by id: a new runtime of that id
/// keeps their endpoints' counters, rotation and TLS connector ([`UpstreamRuntime::new`]).
#[derive(Default)]
pub struct Carry(HashMap<Arc<str>, Arc<UpstreamRuntime>>);

impl Carry {
    /// Remembers `runtime` (the first one per id wins).
    pub fn offer(&mut self, runtime: &Arc<UpstreamRuntime>) {
        self.0
            .entry(Arc::from(runtime.spec.id.as_str()))
            .or_insert_with(|| Arc::clone(runtime));
    }
}

impl Upstreams {
    /// The runtime of `spec`, taken for one more use: the one `spec` (this `Arc`) already
    /// has; else the variant of its id whose spec is equal; else a new one, keeping the
    /// counters of `carry`'s runtime of the same id.
    pub fn take(
        &mut self,
        spec: &Arc<Upstream>,
        carry: &Carry,
        health: HealthPolicy,
    ) -> Arc<UpstreamRuntime> {
        if let Some(h) = self.by_spec.get_mut(&addr(spec)) {
            h.uses += 1;
            return Arc::clone(&h.runtime);
        }
        let mut variants = self
            .by_id
            .get(spec.id.as_str())
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let runtime = match variants
            .iter_mut()
            .find(|(rt, _)| Arc::ptr_eq(&rt.spec, spec) || rt.spec == *spec)
        {
            Some((rt, specs)) => {
                *specs += 1;
                Arc::clone(rt)
            }
            None => {
                let rt = Arc::new(UpstreamRuntime::new(
                    Arc::clone(spec),
                    carry.0.get(spec.id.as_str()).map(|r| &**r),
                    health,
                ));
                variants.push((Arc::clone(&rt), 1));
                rt
            }
        };
        self.by_id
            .insert(Arc::from(spec.id.as_str()), Variants::from(variants));
        self.by_spec.insert(
            addr(spec),
            Held {
                spec: Arc::clone(spec),
                runtime: Arc::clone(&runtime),
                uses: 1,
            },
        );
        runtime
    }

    /// Gives back one use of `spec` (taken before); its runtime goes when no spec resolves to
    /// it any more.
    pub fn give_back(&mut self, spec: &Arc<Upstream>) {
        let a = addr(spec);
        let Some(h) = self.by_spec.get_mut(&a) else {
            debug_assert!(false, "{} given back more often than taken", spec.id);
            return;
        };
        h.uses -= 1;
        if h.uses > 0 {
            return;
        }
        let Some(gone) = self.by_spec.remove(&a) else {
            return;
        };
        let id = gone.spec.id.as_str();
        let Some(variants) = self.by_id.get(id) else {
            return;
        };
        let mut variants = variants.to_vec();
        if let Some(i) = variants
            .iter()
            .position(|(rt, _)| Arc::ptr_eq(rt, &gone.runtime))
        {
            variants[i].1 -= 1;
            if variants[i].1 == 0 {
                variants.swap_remove(i);
            }
        }
        if variants.is_empty() {
            self.by_id.remove(id);
        } else {
            self.by_id.insert(Arc::from(id), Variants::from(variants));
        }
    }

    /// Every runtime in use, once.
    pub fn runtimes(&self) -> impl Iterator<Item = &Arc<UpstreamRuntime>> {
        self.by_id.values().flat_map(|v| v.iter().map(|(rt, _)| rt))
    }

    /// How many uses hold each spec, by the spec's address (tests: a patch must hold what a
    /// build from scratch holds).
    #[cfg(test)]
    pub fn uses(&self) -> std::collections::BTreeMap<usize, u32> {
        self.by_spec.iter().map(|(a, h)| (*a, h.uses)).collect()
    }
}
