//! Hashes of `s3cret` made by independent tools (`openssl passwd -apr1/-1/-5/-6`, libxcrypt's
//! crypt(3) for DES and bcrypt, Python's hashlib for `{SHA}`/`{SSHA}`), never by this code.

use super::*;

const APR1: &str = "$apr1$Xy3kLm9q$hc3SRGwDRb7MUkg4w6KQp0";
const MD5: &str = "$1$abcdefgh$7.vq19w/w3Vm.hk1FOA7Q/";
const SHA256: &str = "$5$saltsalt$i1q2ZQzc.tl/BQ6CHiENAcVDvEY6nJ1OWlWXKh94b1.";
const SHA512: &str = "$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1";
const SHA256_ROUNDS: &str = "$5$rounds=10000$saltsalt$nmRrNTDhR61xj1I4NppbsXyABzvAHKeAodDPU/FhQi6";
const DES: &str = "abhWCwoTZY2c6";
const BSDI: &str = "_J9..saltlWd5FJP1T6.";
const SHA1: &str = "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=";
const SSHA: &str = "{SSHA}xhwvAVlxQgjdD+6rzZoVg7iQWZROYUNs";
const BCRYPT_2B: &str = "$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK";

fn all() -> Vec<(Scheme, String)> {
    vec![
        (Scheme::Apr1, APR1.into()),
        (Scheme::Md5Crypt, MD5.into()),
        (Scheme::Sha256Crypt, SHA256.into()),
        (Scheme::Sha512Crypt, SHA512.into()),
        (Scheme::Sha256Crypt, SHA256_ROUNDS.into()),
        (Scheme::DesCrypt, DES.into()),
        (Scheme::BsdiCrypt, BSDI.into()),
        (Scheme::Sha1, SHA1.into()),
        (Scheme::SaltedSha1, SSHA.into()),
        (Scheme::Plain, "{PLAIN}s3cret".into()),
        (Scheme::Bcrypt, BCRYPT_2B.into()),
        // htpasswd -B writes $2y$, older tools $2a$: the same hash for ASCII passwords.
        (Scheme::Bcrypt, BCRYPT_2B.replacen("$2b$", "$2y$", 1)),
        (Scheme::Bcrypt, BCRYPT_2B.replacen("$2b$", "$2a$", 1)),
    ]
}

#[test]
fn every_scheme_accepts_the_password_and_refuses_others() {
    for (scheme, hash) in all() {
        let h = PasswordHash::parse(&hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
        assert_eq!(h.scheme(), scheme, "{hash}");
        assert!(h.verify(b"s3cret"), "{hash}");
        for wrong in [&b"s3creT"[..], b"", b"s3cret ", b"s3cre"] {
            assert!(!h.verify(wrong), "{hash} accepted {wrong:?}");
        }
    }
}

#[test]
fn unusable_hashes_are_refused_at_parse() {
    for bad in [
        "",
        "s3cret",
        "$apr1$short",
        "$2y$05$tooshort",
        "$9$x$y",
        "{SHA}notbase64!",
        "{SHA}AAAA",
        "{SSHA}AAAA",
    ] {
        assert!(PasswordHash::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn file_follows_nginx_line_rules() {
    let file = format!(
        "# a comment\r\n\
         alice:{APR1}:Alice Liddell\r\n\
         \n\
         no-colon-line\n\
         bob:{BCRYPT_2B}\n\
         alice:{{PLAIN}}other\n\
         carol:\n\
         dave:garbage\n\
         erin:{SHA1}"
    );
    let (h, problems) = Htpasswd::parse_file(file.as_bytes());
    assert_eq!(h.len(), 5, "{h:?}");
    // The comment after the hash and the CR are not part of it; the first alice line wins.
    assert!(h.get("alice").unwrap().unwrap().verify(b"s3cret"));
    assert!(!h.get("alice").unwrap().unwrap().verify(b"other"));
    assert!(h.get("bob").unwrap().unwrap().verify(b"s3cret"));
    assert!(h.get("erin").unwrap().unwrap().verify(b"s3cret"));
    // Users with unusable lines exist but can never log in; each is reported with its line.
    assert_eq!(h.get("carol"), Some(None));
    assert_eq!(h.get("dave"), Some(None));
    assert_eq!(h.get("mallory"), None);
    let lines: Vec<(usize, &str)> = problems.iter().map(|p| (p.line, p.user.as_str())).collect();
    assert_eq!(lines, [(7, "carol"), (8, "dave")]);
    // User names are case-sensitive, as nginx compares them.
    assert_eq!(h.get("Alice"), None);
}

#[test]
fn map_reads_each_key_as_a_user() {
    let (h, problems) = Htpasswd::parse_map([
        ("foo", BCRYPT_2B.as_bytes()),
        ("bar", SHA512.as_bytes()),
        ("baz", &b"nope"[..]),
    ]);
    assert!(h.get("foo").unwrap().unwrap().verify(b"s3cret"));
    assert!(h.get("bar").unwrap().unwrap().verify(b"s3cret"));
    assert_eq!(h.get("baz"), Some(None));
    assert_eq!(problems.len(), 1);
    assert_eq!(h.schemes(), [Scheme::Bcrypt, Scheme::Sha512Crypt]);
}

#[test]
fn debug_never_shows_a_hash() {
    let file = format!("alice:{APR1}\nbob:{{PLAIN}}hunter2\n");
    let (h, _) = Htpasswd::parse_file(file.as_bytes());
    let hash = PasswordHash::parse(APR1).unwrap();
    for shown in [format!("{h:?}"), format!("{hash:?}"), format!("{hash:#?}")] {
        assert!(
            !shown.contains("hc3SRG") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(!shown.contains("alice"), "{shown}");
    }
}
