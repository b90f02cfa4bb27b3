//! What a snapshot changed against the one before, for the parts of the proxy that are kept
//! across snapshots and patched rather than rebuilt (the certificate table, the rate-limit
//! zones). Translation keeps every virtual host and certificate it did not touch as the same
//! `Arc`, so walking two maps in key order and comparing pointers finds the changes without
//! hashing or allocating: ~10k pointer comparisons at 10k hosts, where a rebuild hashed every
//! PEM and walked every route. An equal value under a new `Arc` counts as changed (a full
//! translation's): that costs a rebuild, never a wrong answer.

use std::{collections::BTreeMap, sync::Arc};

use crate::model::{L7Config, VirtualHost};

/// Calls `f(old, new)` for every key whose value is not the same `Arc` in `a` (old) and `b`
/// (new): `(Some, None)` removed, `(None, Some)` added, `(Some, Some)` replaced.
pub fn diff_map<'a, K: Ord + 'a, V: 'a>(
    a: impl IntoIterator<Item = (&'a K, &'a Arc<V>)>,
    b: impl IntoIterator<Item = (&'a K, &'a Arc<V>)>,
    mut f: impl FnMut(Option<&'a Arc<V>>, Option<&'a Arc<V>>),
) {
    diff_keyed(a, b, |_, old, new| f(old, new))
}

/// [`diff_map`], with the key of each change. `a` and `b` iterate in key order (a `BTreeMap`
/// or a snapshot's [`NameMap`](crate::model::NameMap)).
pub fn diff_keyed<'a, K: Ord + 'a, V: 'a>(
    a: impl IntoIterator<Item = (&'a K, &'a Arc<V>)>,
    b: impl IntoIterator<Item = (&'a K, &'a Arc<V>)>,
    mut f: impl FnMut(&'a K, Option<&'a Arc<V>>, Option<&'a Arc<V>>),
) {
    let (mut ia, mut ib) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        match (ia.peek(), ib.peek()) {
            (None, None) => return,
            (Some((ka, va)), Some((kb, vb))) => match key_order(*ka, *kb) {
                std::cmp::Ordering::Equal => {
                    if !Arc::ptr_eq(va, vb) {
                        f(ka, Some(va), Some(vb));
                    }
                    ia.next();
                    ib.next();
                }
                std::cmp::Ordering::Less => {
                    f(ka, Some(va), None);
                    ia.next();
                }
                std::cmp::Ordering::Greater => {
                    f(kb, None, Some(vb));
                    ib.next();
                }
            },
            (Some((ka, va)), None) => {
                f(ka, Some(va), None);
                ia.next();
            }
            (None, Some((kb, vb))) => {
                f(kb, None, Some(vb));
                ib.next();
            }
        }
    }
}

/// `a` against `b`. Two snapshots' maps share the nodes a change did not copy, so most keys
/// are the very same objects: their bytes need no compare (the walk's largest cost in `perf`).
fn key_order<K: Ord>(a: &K, b: &K) -> std::cmp::Ordering {
    match std::ptr::eq(a, b) {
        true => std::cmp::Ordering::Equal,
        false => a.cmp(b),
    }
}

/// Whether two maps hold the same `Arc` under every key (and the same keys).
pub fn same_map<K: Ord, V>(a: &BTreeMap<K, Arc<V>>, b: &BTreeMap<K, Arc<V>>) -> bool {
    let mut same = a.len() == b.len();
    if same {
        diff_map(a, b, |_, _| same = false);
    }
    same
}

/// [`same_map`] of two snapshots' name maps: at once when they are the same map (a snapshot
/// whose fast path did not touch it shares it).
pub fn same_names<V>(a: &crate::model::NameMap<V>, b: &crate::model::NameMap<V>) -> bool {
    if a.ptr_eq(b) {
        return true;
    }
    let mut same = a.len() == b.len();
    if same {
        diff_map(a, b, |_, _| same = false);
    }
    same
}

fn same_opt<V>(a: &Option<Arc<V>>, b: &Option<Arc<V>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

/// Every virtual host of `prev` and `next` (exact names, both kinds of wildcards, any host)
/// that is not the same `Arc` under the same name in both: each removed or replaced one as
/// `old`, each added or replacing one as `new`.
pub fn changed_hosts<'a>(
    prev: &'a L7Config,
    next: &'a L7Config,
    mut f: impl FnMut(Option<&'a Arc<VirtualHost>>, Option<&'a Arc<VirtualHost>>),
) {
    diff_map(&prev.hosts, &next.hosts, &mut f);
    diff_map(&prev.wildcard_hosts, &next.wildcard_hosts, &mut f);
    diff_map(
        &prev.gateway_wildcard_hosts,
        &next.gateway_wildcard_hosts,
        &mut f,
    );
    if !same_opt(&prev.any_host, &next.any_host) {
        f(prev.any_host.as_ref(), next.any_host.as_ref());
    }
}

/// Whether `next` serves the very certificates `prev` did: the same `Arc`s by name, as the
/// default, and on every Gateway address.
pub fn same_certificates(prev: &L7Config, next: &L7Config) -> bool {
    same_names(&prev.certificates, &next.certificates)
        && same_map(
            &prev.gateway_wildcard_certificates,
            &next.gateway_wildcard_certificates,
        )
        && same_opt(&prev.default_certificate, &next.default_certificate)
        && prev.gateway_addresses.len() == next.gateway_addresses.len()
        && (prev.gateway_addresses.iter())
            .zip(&next.gateway_addresses)
            .all(|((ia, a), (ib, b))| ia == ib && same_map(&a.certificates, &b.certificates))
}

/// Whether the rate-limit zones `next` needs are those `prev` needed: no host whose routes
/// carry a limit came, went or changed, and the settings (the global limit) are equal.
pub fn same_rate_limits(prev: &L7Config, next: &L7Config) -> bool {
    let limited = |vh: Option<&Arc<VirtualHost>>| {
        vh.is_some_and(|vh| vh.routes.iter().any(|r| r.policy.rate_limit.is_some()))
    };
    let mut same = prev.settings == next.settings;
    if same {
        changed_hosts(prev, next, |old, new| {
            same &= !limited(old) && !limited(new);
        });
    }
    same
}

/// Whether the client-certificate table ([`super::client_cert::Table`]) of `next` is that of
/// `prev`: no host with a client-certificate step came, went or changed (the table holds only
/// those hosts).
pub fn same_client_auth(prev: &L7Config, next: &L7Config) -> bool {
    let with_auth = |vh: Option<&Arc<VirtualHost>>| vh.is_some_and(|vh| vh.client_auth.is_some());
    let mut same = true;
    changed_hosts(prev, next, |old, new| {
        same &= !with_auth(old) && !with_auth(new);
    });
    same
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_map_reports_each_change_once() {
        let (a1, a2, b, c) = (Arc::new(1), Arc::new(1), Arc::new(2), Arc::new(3));
        let old: BTreeMap<&str, Arc<i32>> =
            [("a", a1.clone()), ("b", b.clone())].into_iter().collect();
        let new: BTreeMap<&str, Arc<i32>> = [("a", a2.clone()), ("b", b.clone()), ("c", c.clone())]
            .into_iter()
            .collect();
        let mut seen = Vec::new();
        diff_map(&old, &new, |o, n| {
            seen.push((o.map(|v| **v), n.map(|v| **v)))
        });
        // `a` is an equal value under a new `Arc`: changed; `b` is the same `Arc`: not.
        assert_eq!(seen, vec![(Some(1), Some(1)), (None, Some(3))]);
        assert!(!same_map(&old, &new));
        assert!(same_map(&new, &new.clone()));
        seen.clear();
        diff_map(&new, &old, |o, n| {
            seen.push((o.map(|v| **v), n.map(|v| **v)))
        });
        assert_eq!(seen, vec![(Some(1), Some(1)), (Some(3), None)]);
    }
}
