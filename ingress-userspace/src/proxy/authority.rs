//! Whether a `Host` value, an HTTP/2 `:authority` or the authority of an absolute-form
//! request target is a valid `host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2–3.2.3).
//!
//! The host is an IP-literal (`[` IPv6 `]`; IPvFuture and zone ids are refused), or a
//! reg-name of unreserved characters and sub-delims (an IPv4 address is one too). A port is
//! at most five digits and at most 65535; it may be empty, as RFC 3986 allows. Refused,
//! beyond the grammar: an empty host (RFC 9110 §4.2.1 forbids it for `http`), userinfo
//! (`user@host`, RFC 9110 §4.2.4), and percent-encoding in a reg-name, which no DNS name
//! needs and which browsers decode when they follow a `Location` built from it.
//!
//! This is what keeps `Host: attacker/.w.example.test` from matching `*.w.example.test` and
//! reappearing as `Location: https://attacker/...`.

use std::net::Ipv6Addr;

/// Why a host is not a valid authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("empty host")]
    Empty,
    #[error("invalid character in host")]
    InvalidChar,
    #[error("invalid IP literal in host")]
    InvalidIpLiteral,
    #[error("invalid port in host")]
    InvalidPort,
}

/// Checks `authority` (`host`, `host:port`, `[v6]`, `[v6]:port`).
pub fn validate(authority: &str) -> Result<(), AuthorityError> {
    let port = if let Some(rest) = authority.strip_prefix('[') {
        let (literal, after) = rest
            .split_once(']')
            .ok_or(AuthorityError::InvalidIpLiteral)?;
        literal
            .parse::<Ipv6Addr>()
            .map_err(|_| AuthorityError::InvalidIpLiteral)?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(AuthorityError::InvalidChar)?),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if !host.bytes().all(is_reg_name_char) {
            return Err(AuthorityError::InvalidChar);
        }
        port
    };
    match port {
        None | Some("") => Ok(()),
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .map(drop)
            .map_err(|_| AuthorityError::InvalidPort),
        Some(_) => Err(AuthorityError::InvalidPort),
    }
}

/// RFC 3986 unreserved / sub-delims (percent-encoding left out, see the module docs).
fn is_reg_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_authorities() {
        for a in [
            "example.com",
            "Example.COM.",
            "a.example.com:8080",
            "x_y.example",
            "198.18.0.1",
            "198.18.0.1:80",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "[::ffff:198.18.0.1]",
            "localhost:",
            "h:65535",
        ] {
            assert_eq!(validate(a), Ok(()), "{a}");
        }
    }

    #[test]
    fn invalid_authorities() {
        use AuthorityError::*;
        let cases = [
            ("", Empty),
            (":80", Empty),
            ("attacker/.w.example.test", InvalidChar),
            ("attacker\\.w.example.test", InvalidChar),
            ("user@example.com", InvalidChar),
            ("evil%2Ecom.w.example.test", InvalidChar),
            ("a b", InvalidChar),
            ("a?b", InvalidChar),
            ("a#b", InvalidChar),
            ("a:b:80", InvalidChar),
            ("2001:db8::1", InvalidChar),
            ("caf\u{e9}.example", InvalidChar),
            ("h:65536", InvalidPort),
            ("h:123456", InvalidPort),
            ("h:8o", InvalidPort),
            ("h:-1", InvalidPort),
            ("[2001:db8::1", InvalidIpLiteral),
            ("[example.com]", InvalidIpLiteral),
            ("[fe80::1%25eth0]", InvalidIpLiteral),
            ("[v1.x]", InvalidIpLiteral),
            ("[::1]x", InvalidChar),
            ("[::1]:x", InvalidPort),
        ];
        for (a, e) in cases {
            assert_eq!(validate(a), Err(e), "{a:?}");
        }
    }
}
