//! Hostname intersection of a listener and a route (Gateway API v1 `HTTPRoute.spec.hostnames`
//! and `Listener.hostname`): a wildcard `*.example.com` matches one or more labels in front of
//! `example.com` (unlike an Ingress wildcard, which matches exactly one), never `example.com`
//! itself. Names are compared in lower case.

/// The hostnames a route serves through a listener: `None` when the route's hostnames and the
/// listener's do not intersect (the route does not attach to this listener); `Some(vec![""])`
/// when both are unset (every host). `route` empty means the route names no hostname.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Option<Vec<String>> {
    let listener = listener
        .map(str::to_ascii_lowercase)
        .filter(|l| !l.is_empty());
    if route.is_empty() {
        return Some(vec![listener.unwrap_or_default()]);
    }
    let Some(l) = listener else {
        return Some(route.iter().map(|h| h.to_ascii_lowercase()).collect());
    };
    let mut out: Vec<String> = route
        .iter()
        .filter_map(|h| one(&l, &h.to_ascii_lowercase()))
        .collect();
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// Whether two host patterns (exact, `*.` wildcard, `""` for any) have a name in common.
pub fn overlap(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || one(&a.to_ascii_lowercase(), &b.to_ascii_lowercase()).is_some()
}

/// The more specific of two hostnames if each matches the other's names, else `None`.
fn one(listener: &str, route: &str) -> Option<String> {
    if listener == route {
        return Some(route.to_string());
    }
    match (listener.strip_prefix("*."), route.strip_prefix("*.")) {
        (Some(l), None) => covers(l, route).then(|| route.to_string()),
        (None, Some(r)) => covers(r, listener).then(|| listener.to_string()),
        (Some(l), Some(r)) => {
            if covers(l, r) {
                Some(route.to_string())
            } else if covers(r, l) {
                Some(listener.to_string())
            } else {
                None
            }
        }
        (None, None) => None,
    }
}

/// Whether `name` has one or more labels in front of `suffix`.
pub fn covers(suffix: &str, name: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Cases of the HTTPRoute `hostnames` reference (gateway.networking.k8s.io/v1) and the
    /// conformance test httproute-hostname-intersection.
    /// (listener hostname, route hostnames, intersection).
    type Case<'a> = (Option<&'a str>, &'a [&'a str], Option<&'a [&'a str]>);

    #[test]
    fn intersection_follows_the_spec() {
        let cases: &[Case] = &[
            (None, &[], Some(&[""])),
            (Some("foo.example.com"), &[], Some(&["foo.example.com"])),
            (None, &["a.example.com"], Some(&["a.example.com"])),
            (
                Some("very.specific.com"),
                &["non.matching.com", "*.specific.com"],
                Some(&["very.specific.com"]),
            ),
            (
                Some("*.wildcard.io"),
                &["bar.wildcard.io", "foo.bar.wildcard.io", "wildcard.io"],
                Some(&["bar.wildcard.io", "foo.bar.wildcard.io"]),
            ),
            (
                Some("*.anotherwildcard.io"),
                &["*.anotherwildcard.io"],
                Some(&["*.anotherwildcard.io"]),
            ),
            (
                Some("*.example.com"),
                &["*.foo.example.com"],
                Some(&["*.foo.example.com"]),
            ),
            (
                Some("*.foo.example.com"),
                &["*.example.com"],
                Some(&["*.foo.example.com"]),
            ),
            (Some("*.example.com"), &["example.com"], None),
            (Some("foo.example.com"), &["bar.example.com"], None),
            (
                Some("Foo.Example.com"),
                &["foo.example.COM"],
                Some(&["foo.example.com"]),
            ),
        ];
        for (listener, route, want) in cases {
            let got = intersect(*listener, &v(route));
            assert_eq!(got, want.map(v), "{listener:?} x {route:?}");
        }
    }
}
