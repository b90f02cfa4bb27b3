//! The controller ConfigMap's client-facing TLS keys -> [`ServerTls`]: `ssl-protocols`,
//! `ssl-ciphers`, `ssl-ecdh-curve`, `use-http2`, `ssl-session-tickets`,
//! `ssl-session-ticket-key` and `ssl-reject-handshake`, with ingress-nginx's defaults
//! (internal/ingress/controller/config/config.go) and nginx's meaning (nginx.tmpl writes them
//! into the `http` block as `ssl_protocols`, `ssl_ciphers` with `ssl_prefer_server_ciphers
//! on`, `ssl_ecdh_curve`, `ssl_session_tickets`; `http2 on` per server; `ssl_reject_handshake`
//! in the default server).
//!
//! What nginx would refuse at its configuration test (an unknown protocol, cipher or curve
//! name) is left out here with a Warning, the rest applies. A value that leaves nothing to
//! offer keeps the default: for `ssl-ciphers` and `ssl-ecdh-curve` with an Error (OpenSSL's
//! `SSL_CTX_set_cipher_list` fails when no TLS 1.2 suite is left, and
//! `SSL_CTX_set1_curves_list` on an unknown curve: nginx does not load, ingress-nginx keeps
//! serving its previous configuration), for `ssl-protocols` naming only versions rustls
//! cannot speak with a Warning (nginx would offer only those, which no client here can get).

use crate::model::{
    TlsVersion,
    server_tls::{DEFAULT_TLS12_SUITES, KxGroup, ServerTls, Tls12Suite},
};

/// One thing wrong with a key's value: a Warning, or an Error when the default is used
/// instead of the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub error: bool,
    pub message: String,
}

fn warn(key: &'static str, message: String) -> Problem {
    Problem {
        key,
        error: false,
        message,
    }
}

/// Reads the keys through `get` (the trimmed value of a key, `None` when unset); `bool`
/// parses a boolean as the ConfigMap's other keys do. Problems in key order.
pub fn parse(
    get: impl Fn(&str) -> Option<String>,
    bool: impl Fn(&str) -> Option<Option<bool>>,
) -> (ServerTls, Vec<Problem>) {
    let mut out = ServerTls::default();
    let mut problems = Vec::new();
    if let Some(v) = get("ssl-protocols").filter(|v| !v.is_empty()) {
        out.versions = protocols(&v, &mut problems);
    }
    if let Some(v) = get("ssl-ciphers").filter(|v| !v.is_empty()) {
        out.tls12_suites = ciphers(&v, &mut problems);
    }
    if let Some(v) = get("ssl-ecdh-curve").filter(|v| !v.is_empty()) {
        out.groups = curves(&v, &mut problems);
    }
    for (key, field) in [
        ("use-http2", &mut out.http2),
        ("ssl-session-tickets", &mut out.session_tickets),
        ("ssl-reject-handshake", &mut out.reject_unknown_names),
    ] {
        match bool(key) {
            None => {}
            Some(Some(b)) => *field = b,
            Some(None) => problems.push(warn(
                key,
                format!(
                    "key {key}: {:?} is not true or false; the default is kept",
                    get(key).unwrap_or_default()
                ),
            )),
        }
    }
    if get("ssl-session-ticket-key").is_some_and(|v| !v.is_empty()) {
        problems.push(warn(
            "ssl-session-ticket-key",
            format!("key ssl-session-ticket-key: {TICKET_KEY_NOT_USED}"),
        ));
    }
    (out, problems)
}

/// Why `ssl-session-ticket-key` is not used (the support table's note says the same).
pub const TICKET_KEY_NOT_USED: &str = "not used: session tickets are encrypted with keys each \
    proxy generates and rotates every 6 hours (rustls's Ticketer), so a ticket resumes only on \
    the replica that issued it";

/// `ssl-protocols`: nginx's `ssl_protocols`, space-separated.
fn protocols(v: &str, problems: &mut Vec<Problem>) -> Vec<TlsVersion> {
    let mut out = Vec::new();
    // A name nginx does not know makes it refuse the whole configuration (and keep the
    // previous one); here the rest applies, or the default, so it is an Error.
    let mut unknown = false;
    for name in v.split_whitespace() {
        let version = match name {
            "TLSv1.2" => TlsVersion::Tls12,
            "TLSv1.3" => TlsVersion::Tls13,
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                problems.push(warn(
                    "ssl-protocols",
                    format!(
                        "key ssl-protocols: {name} is not offered (only TLSv1.2 and TLSv1.3 are \
                         spoken here); it is left out"
                    ),
                ));
                continue;
            }
            _ => {
                unknown = true;
                problems.push(Problem {
                    key: "ssl-protocols",
                    error: true,
                    message: format!(
                        "key ssl-protocols: {name:?} is not an nginx protocol name (SSLv2, SSLv3, \
                         TLSv1, TLSv1.1, TLSv1.2, TLSv1.3; nginx would not load it); it is left \
                         out"
                    ),
                });
                continue;
            }
        };
        if !out.contains(&version) {
            out.push(version);
        }
    }
    if out.is_empty() {
        problems.push(Problem {
            key: "ssl-protocols",
            error: unknown,
            message: format!(
                "key ssl-protocols: {v:?} names neither TLSv1.2 nor TLSv1.3; the default \
                 \"TLSv1.2 TLSv1.3\" is offered"
            ),
        });
        return ServerTls::default().versions;
    }
    out
}

/// What an OpenSSL cipher-string word selects among [`Tls12Suite::ALL`]: `Some(empty)` for a
/// keyword whose suites are all ones rustls lacks (`aNULL`, `MD5`, `SHA256`: those are MACs
/// of CBC suites, the GCM and ChaCha20 ones being AEAD in OpenSSL's table, `kRSA`, `DHE`...);
/// `None` for a word that is neither a suite of ours nor a keyword read here.
fn select(word: &str) -> Option<Vec<Tls12Suite>> {
    use Tls12Suite::*;
    let all = || Tls12Suite::ALL.to_vec();
    let of = |f: fn(&Tls12Suite) -> bool| Tls12Suite::ALL.into_iter().filter(f).collect();
    fn ecdsa(s: &Tls12Suite) -> bool {
        matches!(
            s,
            EcdheEcdsaAes128GcmSha256 | EcdheEcdsaAes256GcmSha384 | EcdheEcdsaChacha20Poly1305
        )
    }
    Some(match word {
        "ALL" | "HIGH" | "DEFAULT" | "TLSv1.2" | "ECDHE" | "EECDH" | "kECDHE" | "kEECDH" => all(),
        "aECDSA" | "ECDSA" => of(ecdsa),
        "aRSA" => of(|s| !ecdsa(s)),
        "AESGCM" | "AES" => {
            of(|s| !matches!(s, EcdheEcdsaChacha20Poly1305 | EcdheRsaChacha20Poly1305))
        }
        "AES128" => of(|s| matches!(s, EcdheEcdsaAes128GcmSha256 | EcdheRsaAes128GcmSha256)),
        "AES256" => of(|s| matches!(s, EcdheEcdsaAes256GcmSha384 | EcdheRsaAes256GcmSha384)),
        "CHACHA20" => of(|s| matches!(s, EcdheEcdsaChacha20Poly1305 | EcdheRsaChacha20Poly1305)),
        "COMPLEMENTOFDEFAULT"
        | "COMPLEMENTOFALL"
        | "aNULL"
        | "eNULL"
        | "NULL"
        | "MEDIUM"
        | "LOW"
        | "EXP"
        | "EXPORT"
        | "MD5"
        | "SHA1"
        | "SHA"
        | "SHA256"
        | "SHA384"
        | "RC4"
        | "DES"
        | "3DES"
        | "IDEA"
        | "SEED"
        | "CAMELLIA"
        | "CAMELLIA128"
        | "CAMELLIA256"
        | "ARIA"
        | "ARIA128"
        | "ARIA256"
        | "AESCCM"
        | "AESCCM8"
        | "PSK"
        | "kPSK"
        | "ECDHEPSK"
        | "DHEPSK"
        | "RSAPSK"
        | "SRP"
        | "kSRP"
        | "aSRP"
        | "kRSA"
        | "RSA"
        | "DH"
        | "DHE"
        | "EDH"
        | "kDHE"
        | "kEDH"
        | "ADH"
        | "AECDH"
        | "aDSS"
        | "DSS"
        | "SSLv3"
        | "TLSv1"
        | "TLSv1.0"
        | "aGOST"
        | "GOST" => Vec::new(),
        name => vec![
            Tls12Suite::ALL
                .into_iter()
                .find(|s| s.openssl_name() == name)?,
        ],
    })
}

/// `ssl-ciphers`: an OpenSSL cipher string (`:`, space or `,` separated) read as OpenSSL
/// does for the suites rustls has: a name or `A+B` (suites in both) adds what it selects at
/// the end, `-X` removes, `!X` removes for good, `+X` moves to the end, `@STRENGTH` sorts by
/// key length (256-bit first), `@SECLEVEL=n` is accepted (every suite here is 128-bit or
/// more). A word that selects nothing here is left out with a Warning.
fn ciphers(v: &str, problems: &mut Vec<Problem>) -> Vec<Tls12Suite> {
    let mut list: Vec<Tls12Suite> = Vec::new();
    let mut killed: Vec<Tls12Suite> = Vec::new();
    let mut left_out: Vec<&str> = Vec::new();
    for element in v.split([':', ' ', ',']).filter(|e| !e.is_empty()) {
        if element == "@STRENGTH" {
            let bits = |s: &Tls12Suite| match s {
                Tls12Suite::EcdheEcdsaAes128GcmSha256 | Tls12Suite::EcdheRsaAes128GcmSha256 => 128,
                _ => 256,
            };
            list.sort_by_key(|s| std::cmp::Reverse(bits(s)));
            continue;
        }
        if element.starts_with("@SECLEVEL=") {
            continue;
        }
        let (op, body) = match element.as_bytes()[0] {
            b'!' | b'-' | b'+' => (element.as_bytes()[0], &element[1..]),
            _ => (b' ', element),
        };
        let mut selected: Option<Vec<Tls12Suite>> = None;
        for word in body.split('+') {
            let Some(s) = select(word) else {
                left_out.push(word);
                selected = Some(Vec::new());
                break;
            };
            selected = Some(match selected {
                None => s,
                Some(have) => have.into_iter().filter(|x| s.contains(x)).collect(),
            });
        }
        let selected = selected.unwrap_or_default();
        match op {
            b'!' => {
                list.retain(|s| !selected.contains(s));
                killed.extend(selected);
            }
            b'-' => list.retain(|s| !selected.contains(s)),
            b'+' => {
                let (moved, kept): (Vec<_>, Vec<_>) =
                    list.iter().partition(|s| selected.contains(s));
                list = kept.into_iter().chain(moved).collect();
            }
            _ => {
                for s in selected {
                    if !list.contains(&s) && !killed.contains(&s) {
                        list.push(s);
                    }
                }
            }
        }
    }
    if !left_out.is_empty() {
        let have: Vec<&str> = Tls12Suite::ALL.iter().map(|s| s.openssl_name()).collect();
        problems.push(warn(
            "ssl-ciphers",
            format!(
                "key ssl-ciphers: {} left out: not TLS 1.2 suites rustls has ({}) nor an \
                 OpenSSL keyword read here (TLS 1.3 suites are all offered, as nginx's \
                 ssl_ciphers does not set them)",
                left_out.join(", "),
                have.join(", ")
            ),
        ));
    }
    if list.is_empty() {
        problems.push(Problem {
            key: "ssl-ciphers",
            error: true,
            message: format!(
                "key ssl-ciphers: {v:?} leaves no TLS 1.2 suite (nginx would not load it: \
                 OpenSSL's SSL_CTX_set_cipher_list fails); ingress-nginx's default suites are \
                 offered instead"
            ),
        });
        return DEFAULT_TLS12_SUITES.to_vec();
    }
    list
}

/// `ssl-ecdh-curve`: `auto` or OpenSSL curve names separated by `:`, in the server's order.
fn curves(v: &str, problems: &mut Vec<Problem>) -> Vec<KxGroup> {
    if v == "auto" {
        return KxGroup::AUTO.to_vec();
    }
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    for name in v.split([':', ',']).map(str::trim).filter(|n| !n.is_empty()) {
        let g = match name {
            "X25519" | "x25519" => KxGroup::X25519,
            "prime256v1" | "P-256" | "secp256r1" => KxGroup::P256,
            "secp384r1" | "P-384" => KxGroup::P384,
            _ => {
                left_out.push(name);
                continue;
            }
        };
        if !out.contains(&g) {
            out.push(g);
        }
    }
    if !left_out.is_empty() {
        problems.push(warn(
            "ssl-ecdh-curve",
            format!(
                "key ssl-ecdh-curve: {} left out: the proxy's crypto provider (ring) has only \
                 X25519, prime256v1 (P-256) and secp384r1 (P-384)",
                left_out.join(", ")
            ),
        ));
    }
    if out.is_empty() {
        problems.push(Problem {
            key: "ssl-ecdh-curve",
            error: true,
            message: format!(
                "key ssl-ecdh-curve: {v:?} names no curve the proxy's crypto provider has \
                 (nginx with OpenSSL 3 would offer X448 or secp521r1 alone); auto (X25519, \
                 P-256, P-384) is offered instead"
            ),
        });
        return KxGroup::AUTO.to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Tls12Suite::*;

    fn with(pairs: &[(&str, &str)]) -> (ServerTls, Vec<Problem>) {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        parse(get, |k| {
            get(k).map(|v| crate::model::translate::annotations::parse_bool(&v))
        })
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let (t, p) = with(&[]);
        assert!(p.is_empty());
        assert_eq!(t, ServerTls::default());
        assert_eq!(t.versions, [TlsVersion::Tls12, TlsVersion::Tls13]);
        assert!(t.http2 && !t.session_tickets && !t.reject_unknown_names);
        // ingress-nginx's own default string: its DHE suites are not rustls's.
        let default = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
            ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
            ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
            DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256";
        let (t, p) = with(&[("ssl-ciphers", default)]);
        assert_eq!(t.tls12_suites, DEFAULT_TLS12_SUITES);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].message
                .contains("DHE-RSA-AES256-GCM-SHA384, DHE-RSA-AES128-GCM-SHA256")
        );
    }

    #[test]
    fn protocols_drop_what_rustls_cannot_speak() {
        let (t, p) = with(&[("ssl-protocols", "TLSv1.3")]);
        assert_eq!((t.versions, p.len()), (vec![TlsVersion::Tls13], 0));
        let (t, p) = with(&[("ssl-protocols", "TLSv1.1 TLSv1.2 TLSv1.4")]);
        assert_eq!(t.versions, [TlsVersion::Tls12]);
        assert_eq!(p.len(), 2, "{p:?}");
        // An old name is left out with a Warning; a name nginx does not know (it would not
        // load the configuration) is an Error.
        assert_eq!(p.iter().map(|p| p.error).collect::<Vec<_>>(), [false, true]);
        let (t, p) = with(&[("ssl-protocols", "TLSv1 TLSv1.1")]);
        assert_eq!(t.versions, ServerTls::default().versions);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].message.contains("default") && !p[2].error);
        // A typo: the default (wider than meant) is offered, as an Error.
        let (t, p) = with(&[("ssl-protocols", "TLSv13")]);
        assert_eq!(t.versions, ServerTls::default().versions);
        assert!(p.len() == 2 && p.iter().all(|p| p.error), "{p:?}");
    }

    #[test]
    fn cipher_names_keep_their_order() {
        let (t, p) = with(&[(
            "ssl-ciphers",
            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:AES128-SHA",
        )]);
        assert_eq!(
            t.tls12_suites,
            [EcdheRsaAes256GcmSha384, EcdheEcdsaChacha20Poly1305]
        );
        assert_eq!(p.len(), 1);
        assert!(
            p[0].message.contains("AES128-SHA left out"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn openssl_keywords_and_operators() {
        let suites = |v: &str| with(&[("ssl-ciphers", v)]);
        let (t, p) = suites("HIGH:!aNULL:!MD5");
        assert_eq!((t.tls12_suites, p.len()), (Tls12Suite::ALL.to_vec(), 0));
        let (t, _) = suites("ECDHE+AESGCM:!aRSA");
        assert_eq!(
            t.tls12_suites,
            [EcdheEcdsaAes256GcmSha384, EcdheEcdsaAes128GcmSha256]
        );
        // `!` is for good, `-` can be added back, `+` moves to the end.
        let (t, _) = suites("!CHACHA20:ALL");
        assert!(
            !t.tls12_suites
                .iter()
                .any(|s| matches!(s, EcdheRsaChacha20Poly1305 | EcdheEcdsaChacha20Poly1305))
        );
        let (t, _) = suites("AES128:-ECDSA:ECDHE-ECDSA-AES128-GCM-SHA256");
        assert_eq!(
            t.tls12_suites,
            [EcdheRsaAes128GcmSha256, EcdheEcdsaAes128GcmSha256]
        );
        let (t, _) = suites("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:+AES128");
        assert_eq!(
            t.tls12_suites,
            [EcdheRsaAes256GcmSha384, EcdheEcdsaAes128GcmSha256]
        );
        let (t, _) = suites("AES128:CHACHA20:@STRENGTH:@SECLEVEL=2");
        assert_eq!(
            t.tls12_suites[..2],
            [EcdheEcdsaChacha20Poly1305, EcdheRsaChacha20Poly1305]
        );
        // CBC and SHA-1/SHA-2 MAC suites are not rustls's: removing them changes nothing.
        let (t, p) = suites("ALL:!SHA1:!SHA256:!SHA384:!kRSA:!DHE");
        assert_eq!((t.tls12_suites.len(), p.len()), (6, 0));
        let (_, p) = suites("ALL:BOGUS");
        assert!(p[0].message.contains("BOGUS"));
    }

    #[test]
    fn nothing_left_is_an_error_and_the_default() {
        let (t, p) = with(&[("ssl-ciphers", "AES128-SHA:DHE-RSA-AES128-GCM-SHA256")]);
        assert_eq!(t.tls12_suites, DEFAULT_TLS12_SUITES);
        assert!(p.last().is_some_and(|p| p.error), "{p:?}");
        let (t, p) = with(&[("ssl-ecdh-curve", "X448")]);
        assert_eq!(t.groups, KxGroup::AUTO);
        assert_eq!(p.iter().filter(|p| p.error).count(), 1, "{p:?}");
    }

    #[test]
    fn curves_in_order() {
        let (t, p) = with(&[("ssl-ecdh-curve", "secp384r1:X25519MLKEM768:prime256v1")]);
        assert_eq!(t.groups, [KxGroup::P384, KxGroup::P256]);
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("X25519MLKEM768"));
        let (t, p) = with(&[("ssl-ecdh-curve", "auto")]);
        assert_eq!((t.groups, p.len()), (KxGroup::AUTO.to_vec(), 0));
    }

    #[test]
    fn switches_and_ticket_key() {
        let (t, p) = with(&[
            ("use-http2", "false"),
            ("ssl-session-tickets", "true"),
            ("ssl-reject-handshake", "true"),
            ("ssl-session-ticket-key", "c2VjcmV0"),
        ]);
        assert!(!t.http2 && t.session_tickets && t.reject_unknown_names);
        assert_eq!(p.len(), 1);
        assert!(p[0].message.contains("not used"));
        let (t, p) = with(&[("use-http2", "maybe")]);
        assert!(t.http2);
        assert_eq!(p.len(), 1);
    }
}
