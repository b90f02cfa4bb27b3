//! One shared copy of the short names many store objects repeat ([`Name`]): an endpoint's
//! `nodeName` and `zone` (issue 13: 100k endpoints name a few hundred Nodes; an `Arc<str>` per
//! endpoint was ~2 MiB at 10k Ingresses, and sharing only within a slice saves nothing when a
//! slice's endpoints sit on different Nodes, as they usually do), a slice's address type and
//! port names and protocols, a Service's `type` and policies.
//!
//! The table holds each name while anything else holds it: names no object holds any more are
//! dropped whenever the table has doubled since the last sweep, so it stays within twice the
//! names in use (Nodes come and go in an autoscaled cluster).

use std::{
    borrow::Borrow,
    collections::HashSet,
    fmt,
    hash::{Hash, Hasher},
    ops::Deref,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

/// A name the store and the snapshot share one copy of: a thin pointer (8 bytes, and
/// `Option<Name>` too) where an `Arc<str>` is 16, because a snapshot and a store hold it once
/// per endpoint (100k endpoints: 1.6 MiB each). Compares, hashes, orders and serializes as the
/// `str` it holds. Made by [`name`] or `From<&str>`/`From<String>`, which share equal names.
#[derive(Clone)]
pub struct Name(Arc<Box<str>>);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `a` and `b` are the one shared copy.
    pub fn ptr_eq(a: &Name, b: &Name) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Hash for Name {
    // As `str` hashes, so that the table finds a `Name` by its `&str` (`Borrow`).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The empty name (as a `String` defaults to empty).
impl Default for Name {
    fn default() -> Name {
        Name::from("")
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        name(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        name(s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.as_str().to_string()
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        String::deserialize(d).map(name)
    }
}

/// The names in use, and the table's size after the last sweep.
struct Table {
    names: HashSet<Name>,
    swept_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        names: HashSet::new(),
        swept_at: 0,
    })
});

/// `s` as a [`Name`], the one every other caller with an equal name got while it is held; a
/// new one takes `s` (a `String`'s text is not copied).
pub fn name<S: AsRef<str> + Into<Box<str>>>(s: S) -> Name {
    // A panic elsewhere while the table was held leaves it whole (an insert or a retain):
    // keep using it.
    let mut t = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(n) = t.names.get(s.as_ref()) {
        return n.clone();
    }
    if t.names.len() >= 2 * t.swept_at.max(1024) {
        // Held by the table alone: no object names it any more.
        t.names.retain(|n| Arc::strong_count(&n.0) > 1);
        t.swept_at = t.names.len();
    }
    let n = Name(Arc::new(s.into()));
    t.names.insert(n.clone());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_allocation() {
        let a = name("intern-test-node-a".to_string());
        let b = name("intern-test-node-a".to_string());
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(&*a, "intern-test-node-a");
        let c = name("intern-test-node-b".to_string());
        assert!(!Arc::ptr_eq(&a.0, &c.0));
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
        assert!(Arc::ptr_eq(
            &kept.0,
            &name("intern-test-kept".to_string()).0
        ));
    }
}
