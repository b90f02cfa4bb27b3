//! ingress-nginx's `annotation-value-word-blocklist` ConfigMap key: an Ingress with an
//! annotation (under [`super::support::PREFIXES`]) whose value contains one of the listed words
//! is not served (ingress-nginx store.go `checkBadAnnotationValue`, which skips the Ingress,
//! and controller.go `CheckIngress`, whose admission webhook refuses it with
//! "`<key>` annotation contains invalid word `<word>`"; e2e settings/badannotationvalues.go).
//!
//! The words are the comma-separated elements of the value, blanks around each trimmed, as
//! the admission check trims them. Where this differs from ingress-nginx's sync path: an empty
//! element (`a,,b`, a trailing comma) is skipped; there every value contains the empty word, so
//! every annotated Ingress would be dropped.

use std::collections::BTreeMap;

use super::support::PREFIXES;

/// The ConfigMap key.
pub const KEY: &str = "annotation-value-word-blocklist";

/// The words of the key's value `v` (comma-separated, trimmed, empty ones skipped).
pub fn parse(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The first annotation (in key order) whose value contains one of `words`, and that word.
pub fn blocked<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    words: &'a [String],
) -> Option<(&'a str, &'a str)> {
    if words.is_empty() {
        return None;
    }
    annotations?
        .iter()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .find_map(|(k, v)| {
            let w = words.iter().find(|w| v.contains(w.as_str()))?;
            Some((k.as_str(), w.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_trimmed_and_empty_ones_skipped() {
        assert_eq!(
            parse(" invalid_directive, another_directive,,"),
            ["invalid_directive", "another_directive"]
        );
        assert!(parse("").is_empty());
    }

    #[test]
    fn only_prefixed_annotations_are_checked() {
        let words = parse("invalid_directive,another_directive");
        let mut a = BTreeMap::new();
        a.insert("other.io/x".to_string(), "invalid_directive".to_string());
        assert_eq!(
            blocked(Some(&a), &words),
            None,
            "not an ingress-nginx annotation"
        );
        a.insert(
            "nginx.ingress.kubernetes.io/configuration-snippet".to_string(),
            "more_set_headers \"Foo: invalid_directive\";".to_string(),
        );
        assert_eq!(
            blocked(Some(&a), &words),
            Some((
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "invalid_directive"
            ))
        );
        a.clear();
        a.insert(
            "xdp-ingress.dev/rewrite-target".to_string(),
            "/x/another_directive".to_string(),
        );
        assert_eq!(
            blocked(Some(&a), &words).map(|b| b.1),
            Some("another_directive")
        );
        assert_eq!(blocked(Some(&a), &[]), None);
        assert_eq!(blocked(None, &words), None);
    }
}
