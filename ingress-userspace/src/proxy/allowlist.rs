//! Client source ranges (`allowlist-source-range` / `whitelist-source-range`,
//! `denylist-source-range`, and the ConfigMap's defaults and `block-cidrs`): whether a client
//! address falls inside any of a route's prefixes, and what the route's lists decide.
//!
//! Addresses are compared in their canonical family, as nginx's `allow` does: an
//! IPv4-mapped IPv6 client (`::ffff:198.18.0.1`, what a dual-stack `::` listener reports for
//! IPv4 peers) is matched as IPv4, and so is a mapped prefix of at least 96 bits
//! (`::ffff:198.18.0.0/111` is `198.18.0.0/15`). Otherwise an IPv4 prefix never matches an
//! IPv6 client and the other way round, so `::/0` admits every IPv6 client and no IPv4 one.
//! Host bits set in a prefix (`198.18.0.1/15`) are ignored. An empty list admits everyone.

use std::net::IpAddr;

use crate::model::IpPrefix;

/// What a route's source ranges say of a client: nginx's access module over the lines
/// ingress-nginx writes, `deny` per denylist entry, then `allow` per allowlist entry and
/// `deny all` after them when there is an allowlist; the first matching line decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An `allow` line matched (under `satisfy any` this alone admits).
    Allowed,
    /// A `deny` line of the denylist matched: 403.
    Denied,
    /// The allowlist's closing `deny all`: 403.
    NotAllowed,
    /// No line matched (no lists, or a denylist only): the other checks decide.
    Declined,
}

impl Verdict {
    /// The reason of the 403 when the lists refuse ([`super::SOURCE_BLOCKED`] for a deny
    /// line, [`super::SOURCE_DENIED`] outside the allowlist); `None` when they do not.
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            Verdict::Denied => Some(super::SOURCE_BLOCKED),
            Verdict::NotAllowed => Some(super::SOURCE_DENIED),
            Verdict::Allowed | Verdict::Declined => None,
        }
    }
}

/// What the access phase of ingress-nginx's default server answers a request no route takes:
/// it has no `allow`/`deny` lines of its own, so it inherits the `http` block's `block-cidrs`
/// (`block`: `None` without the key, `Err` when it is unusable). 403 with
/// [`super::SOURCE_BLOCKED`] for a blocked `client`, 503 with why for an unusable list (as on
/// the routes that take it), `None` to go on. `client: None` (`explain` without `--client`):
/// only an unusable list refuses.
pub fn default_server_refusal(
    block: Option<&Result<Vec<IpPrefix>, String>>,
    client: Option<IpAddr>,
) -> Option<(http::StatusCode, &str)> {
    match block? {
        Err(why) => Some((http::StatusCode::SERVICE_UNAVAILABLE, why.as_str())),
        Ok(deny) => verdict(deny, &[], client?)
            .refusal()
            .map(|reason| (http::StatusCode::FORBIDDEN, reason)),
    }
}

/// The [`Verdict`] of `deny` then `allow` for `client`.
pub fn verdict(deny: &[IpPrefix], allow: &[IpPrefix], client: IpAddr) -> Verdict {
    let client = client.to_canonical();
    if deny.iter().any(|p| contains(p, client)) {
        Verdict::Denied
    } else if allow.is_empty() {
        Verdict::Declined
    } else if allow.iter().any(|p| contains(p, client)) {
        Verdict::Allowed
    } else {
        Verdict::NotAllowed
    }
}

/// Whether `client` may use a route with these ranges (empty: everyone).
pub fn allows(ranges: &[IpPrefix], client: IpAddr) -> bool {
    if ranges.is_empty() {
        return true;
    }
    let client = client.to_canonical();
    ranges.iter().any(|p| contains(p, client))
}

/// Whether `prefix` contains `ip` (both canonicalised; see the module docs).
pub fn contains(prefix: &IpPrefix, ip: IpAddr) -> bool {
    match (canonical_prefix(prefix), ip.to_canonical()) {
        ((IpAddr::V4(net), len), IpAddr::V4(ip)) => {
            let mask = mask32(len);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        ((IpAddr::V6(net), len), IpAddr::V6(ip)) => {
            let mask = mask128(len);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// A mapped IPv6 prefix covering only IPv4-mapped addresses becomes the IPv4 prefix; lengths
/// past the family's width are clamped.
fn canonical_prefix(p: &IpPrefix) -> (IpAddr, u8) {
    match p.addr {
        IpAddr::V4(a) => (IpAddr::V4(a), p.len.min(32)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if p.len >= 96 => (IpAddr::V4(v4), p.len.min(128) - 96),
            _ => (IpAddr::V6(a), p.len.min(128)),
        },
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// A range no real client comes from (the broadcast address).
    const DENY_ALL: IpPrefix = IpPrefix {
        addr: IpAddr::V4(Ipv4Addr::BROADCAST),
        len: 32,
    };

    /// nginx's access module over ingress-nginx's lines: `deny` entries first, then the
    /// allowlist closed by `deny all`; the first match decides, a denylist alone that does not
    /// match declines (the other checks decide).
    #[test]
    fn deny_lines_come_before_allow_lines() {
        let deny = [p("127.0.0.0/8"), p("2001:db8::/32")];
        let allow = [p("127.0.0.1/32"), p("198.18.0.0/15")];
        for (client, deny, allow, want) in [
            ("127.0.0.1", &deny[..], &allow[..], Verdict::Denied),
            ("::ffff:127.0.0.1", &deny[..], &allow[..], Verdict::Denied),
            ("2001:db8::1", &deny[..], &[][..], Verdict::Denied),
            ("198.18.0.9", &deny[..], &allow[..], Verdict::Allowed),
            ("192.0.2.1", &deny[..], &allow[..], Verdict::NotAllowed),
            ("192.0.2.1", &deny[..], &[][..], Verdict::Declined),
            ("127.0.0.1", &[][..], &allow[..], Verdict::Allowed),
            ("127.0.0.1", &[][..], &[][..], Verdict::Declined),
        ] {
            assert_eq!(
                verdict(deny, allow, ip(client)),
                want,
                "{client} {deny:?} {allow:?}"
            );
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn p(s: &str) -> IpPrefix {
        let (a, l) = s.split_once('/').unwrap();
        IpPrefix {
            addr: ip(a),
            len: l.parse().unwrap(),
        }
    }

    #[test]
    fn ipv4_prefixes() {
        let net = p("198.18.0.0/15");
        assert!(contains(&net, ip("198.18.0.1")));
        assert!(contains(&net, ip("198.19.255.255")));
        assert!(!contains(&net, ip("198.20.0.0")));
        assert!(!contains(&net, ip("198.17.255.255")));
        // Host bits in the prefix do not matter.
        assert!(contains(&p("198.18.7.9/15"), ip("198.19.0.1")));
        // /32: that one address.
        assert!(contains(&p("198.18.0.7/32"), ip("198.18.0.7")));
        assert!(!contains(&p("198.18.0.7/32"), ip("198.18.0.6")));
        assert!(!contains(&p("198.18.0.7/32"), ip("198.18.0.8")));
        // /0: every IPv4 client, no IPv6 one.
        assert!(contains(&p("0.0.0.0/0"), ip("127.0.0.1")));
        assert!(contains(&p("0.0.0.0/0"), ip("255.255.255.255")));
        assert!(!contains(&p("0.0.0.0/0"), ip("2001:db8::1")));
        // An out-of-range length is clamped, never a panic.
        assert!(contains(&p("198.18.0.7/40"), ip("198.18.0.7")));
    }

    #[test]
    fn ipv6_prefixes() {
        let net = p("2001:db8::/32");
        assert!(contains(&net, ip("2001:db8::1")));
        assert!(contains(&net, ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!contains(&net, ip("2001:db9::")));
        assert!(!contains(&net, ip("198.18.0.1")));
        assert!(contains(&p("2001:db8::5/128"), ip("2001:db8::5")));
        assert!(!contains(&p("2001:db8::5/128"), ip("2001:db8::4")));
        assert!(!contains(&p("2001:db8::5/128"), ip("2001:db8::6")));
        assert!(contains(&p("::/0"), ip("2001:db8::1")));
        assert!(contains(&p("::/0"), ip("::1")));
        assert!(!contains(&p("::/0"), ip("127.0.0.1")), "v6 /0 is not v4");
        assert!(contains(&p("2001:db8::/127"), ip("2001:db8::1")));
        assert!(!contains(&p("2001:db8::/127"), ip("2001:db8::2")));
    }

    #[test]
    fn mapped_addresses_match_as_ipv4() {
        // A dual-stack listener reports IPv4 clients as mapped IPv6.
        let mapped = ip("::ffff:198.18.0.1");
        assert!(contains(&p("198.18.0.0/15"), mapped));
        assert!(contains(&p("198.18.0.1/32"), mapped));
        assert!(!contains(&p("10.0.0.0/8"), mapped));
        assert!(contains(&p("0.0.0.0/0"), mapped));
        assert!(
            !contains(&p("::/0"), mapped),
            "mapped clients are IPv4 clients"
        );
        // Mapped prefixes are IPv4 prefixes.
        assert!(contains(&p("::ffff:198.18.0.0/111"), ip("198.19.0.1")));
        assert!(!contains(&p("::ffff:198.18.0.0/111"), ip("198.20.0.1")));
        assert!(contains(&p("::ffff:127.0.0.1/128"), ip("127.0.0.1")));
        assert!(contains(&p("::ffff:127.0.0.1/128"), ip("::ffff:127.0.0.1")));
        assert!(contains(&p("::ffff:0.0.0.0/96"), ip("203.0.113.1")));
    }

    #[test]
    fn lists_admit_anyone_inside_one_range() {
        assert!(allows(&[], ip("203.0.113.1")), "empty: everyone");
        let list = [p("198.18.0.0/15"), p("2001:db8::/32")];
        assert!(allows(&list, ip("198.18.3.4")));
        assert!(allows(&list, ip("::ffff:198.18.3.4")));
        assert!(allows(&list, ip("2001:db8::9")));
        assert!(!allows(&list, ip("127.0.0.1")));
        assert!(!allows(&list, ip("::1")));
        // A range no real client comes from admits nobody.
        for c in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "198.18.0.1",
        ] {
            assert!(!allows(&[DENY_ALL], ip(c)), "{c}");
        }
    }
}
