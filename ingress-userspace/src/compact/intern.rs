//! One shared copy of the short names many store objects repeat: an endpoint's `nodeName` and
//! `zone` (issue 13: 100k endpoints name a few hundred Nodes; an `Arc<str>` per endpoint was
//! ~2 MiB at 10k Ingresses, and sharing only within a slice saves nothing when a slice's
//! endpoints sit on different Nodes, as they usually do).
//!
//! The table holds each name while anything else holds it: names no object holds any more are
//! dropped whenever the table has doubled since the last sweep, so it stays within twice the
//! names in use (Nodes come and go in an autoscaled cluster).

use std::{
    collections::HashSet,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

/// The names in use, and the table's size after the last sweep.
struct Table {
    names: HashSet<Arc<str>>,
    swept_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        names: HashSet::new(),
        swept_at: 0,
    })
});

/// `s` as an `Arc<str>`, the one every other caller with an equal name got while it is held.
pub fn name(s: String) -> Arc<str> {
    // A panic elsewhere while the table was held leaves it whole (an insert or a retain):
    // keep using it.
    let mut t = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(a) = t.names.get(s.as_str()) {
        return Arc::clone(a);
    }
    if t.names.len() >= 2 * t.swept_at.max(1024) {
        // Held by the table alone: no object names it any more.
        t.names.retain(|a| Arc::strong_count(a) > 1);
        t.swept_at = t.names.len();
    }
    let a: Arc<str> = s.into();
    t.names.insert(Arc::clone(&a));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_allocation() {
        let a = name("intern-test-node-a".to_string());
        let b = name("intern-test-node-a".to_string());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "intern-test-node-a");
        let c = name("intern-test-node-b".to_string());
        assert!(!Arc::ptr_eq(&a, &c));
    }

    /// Names nobody holds go at a sweep; names still held stay shared across it.
    #[test]
    fn unheld_names_are_swept() {
        let kept = name("intern-test-kept".to_string());
        for i in 0..5000 {
            drop(name(format!("intern-test-gone-{i}")));
        }
        let t = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(t.names.len() < 5000, "{}", t.names.len());
        drop(t);
        assert!(Arc::ptr_eq(&kept, &name("intern-test-kept".to_string())));
    }
}
