//! ingress-nginx's location lists: ConfigMap keys naming path prefixes where a feature is off
//! (`no-auth-locations`, `no-tls-redirect-locations`). Its template's
//! `isLocationInLocationList` compares the location's path as the Ingress writes it, not the
//! request's: a location is in the list when its path starts with an entry.

/// `no-auth-locations`' default: the ACME HTTP-01 challenge path, which cert-manager's solver
/// must reach without credentials.
pub const DEFAULT_NO_AUTH_LOCATIONS: &str = "/.well-known/acme-challenge";

/// `no-tls-redirect-locations`' default: the ACME HTTP-01 challenge path, which the solver
/// must reach over plain HTTP before the host has a certificate.
pub const DEFAULT_NO_TLS_REDIRECT_LOCATIONS: &str = "/.well-known/acme-challenge";

/// A comma-separated list, each entry trimmed, empty ones dropped (ingress-nginx splits on `,`
/// and trims spaces).
pub fn parse(v: &str) -> Vec<String> {
    v.split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether a location (the Ingress path as written) is in `list`.
pub fn contains(list: &[String], path: &str) -> bool {
    list.iter().any(|l| path.starts_with(l.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `isLocationInLocationList`: a prefix of the written path, entries trimmed, empty
    /// entries never match.
    #[test]
    fn a_location_is_in_the_list_when_its_path_starts_with_an_entry() {
        let list = parse(" /.well-known/acme-challenge , ,/internal");
        assert_eq!(list, ["/.well-known/acme-challenge", "/internal"]);
        assert!(contains(&list, "/.well-known/acme-challenge/token-1"));
        assert!(contains(&list, "/internal-api"));
        assert!(!contains(&list, "/"));
        assert!(!contains(&list, "/.well-known"));
        assert!(!contains(&parse(""), "/anything"));
    }
}
