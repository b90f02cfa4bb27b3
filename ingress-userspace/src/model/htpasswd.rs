//! Password files as nginx's `auth_basic_user_file` reads them (ngx_http_auth_basic_module),
//! and the password hashes nginx's `ngx_crypt` checks, as ingress-nginx's image has them.
//!
//! File format (nginx): one `name:hash[:comment]` per line; a line starting with `#` is a
//! comment; the hash ends at `:`, CR or LF; the first line naming a user decides. Hashes:
//!
//! | prefix | scheme | checked by |
//! | --- | --- | --- |
//! | `$2a$`, `$2b$`, `$2y$` | bcrypt (musl's crypt(3), ingress-nginx's image) | the `bcrypt` crate |
//! | `$apr1$` | Apache MD5 (nginx's own) | `crypt3_rs` |
//! | `$1$`, `$5$`, `$6$`, 13-character DES, `_` | crypt(3): MD5, SHA-256, SHA-512, DES, BSDi DES | `crypt3_rs` |
//! | `{SHA}` | base64 SHA-1 (nginx's own) | `sha1` |
//! | `{SSHA}` | base64 salted SHA-1 (nginx's own) | `sha1` |
//! | `{PLAIN}` | plain text (nginx's own) | constant-time comparison |
//!
//! Anything else (e.g. an empty hash) is unusable: that user is always refused.
//!
//! `Debug` of every type here names users and schemes, never a hash: snapshots are logged and
//! printed by `explain`.

use std::collections::BTreeMap;

use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use subtle::ConstantTimeEq as _;

/// How a stored password is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Scheme {
    Bcrypt,
    Apr1,
    Md5Crypt,
    Sha256Crypt,
    Sha512Crypt,
    DesCrypt,
    /// BSDi extended DES (`_`), which musl's crypt(3) reads.
    BsdiCrypt,
    Sha1,
    SaltedSha1,
    Plain,
}

/// Why a stored hash cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("empty password hash")]
    Empty,
    #[error(
        "unknown or malformed password hash (supported: bcrypt, $apr1$, $1$, $5$, $6$, DES, BSDi, {{SHA}}, {{SSHA}}, {{PLAIN}})"
    )]
    Unsupported,
}

/// One stored password hash, checked to have a known shape.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    scheme: Scheme,
    /// As written in the file (for crypt(3) schemes the whole string is salt and hash).
    encoded: String,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({:?}, <redacted>)", self.scheme)
    }
}

impl PasswordHash {
    /// Recognises the scheme as nginx's `ngx_crypt` does (its own prefixes first, then
    /// crypt(3)); the hash itself is checked only for shape.
    pub fn parse(s: &str) -> Result<PasswordHash, HashError> {
        if s.is_empty() {
            return Err(HashError::Empty);
        }
        let scheme = if let Some(rest) = s.strip_prefix("{SHA}") {
            decode(rest)
                .filter(|d| d.len() == 20)
                .ok_or(HashError::Unsupported)?;
            Scheme::Sha1
        } else if let Some(rest) = s.strip_prefix("{SSHA}") {
            decode(rest)
                .filter(|d| d.len() > 20)
                .ok_or(HashError::Unsupported)?;
            Scheme::SaltedSha1
        } else if s.starts_with("{PLAIN}") {
            Scheme::Plain
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| s.starts_with(p)) {
            // The crate parses cost and salt; a hash it cannot read is refused here, not at
            // request time.
            s.parse::<bcrypt::HashParts>()?;
            Scheme::Bcrypt
        } else {
            let scheme = crypt_scheme(s).ok_or(HashError::Unsupported)?;
            if !crypt_shape(s, scheme) {
                return Err(HashError::Unsupported);
            }
            scheme
        };
        Ok(PasswordHash {
            scheme,
            encoded: s.to_string(),
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The hash as written (to key a cache of successful checks); never log it.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// Whether `password` matches. CPU-bound (bcrypt takes tens of milliseconds at common
    /// costs): call it off the async workers.
    pub fn verify(&self, password: &[u8]) -> bool {
        let s = self.encoded.as_str();
        match self.scheme {
            Scheme::Bcrypt => bcrypt::verify(password, s).unwrap_or(false),
            Scheme::Apr1
            | Scheme::Md5Crypt
            | Scheme::Sha256Crypt
            | Scheme::Sha512Crypt
            | Scheme::DesCrypt
            | Scheme::BsdiCrypt => crypt(self.scheme, s, password)
                .is_some_and(|h| bool::from(h.as_bytes().ct_eq(s.as_bytes()))),
            Scheme::Sha1 => decode(&s["{SHA}".len()..])
                .is_some_and(|d| bool::from(Sha1::digest(password).as_slice().ct_eq(&d))),
            Scheme::SaltedSha1 => decode(&s["{SSHA}".len()..]).is_some_and(|d| {
                let (digest, salt) = d.split_at(20);
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                bool::from(h.finalize().as_slice().ct_eq(digest))
            }),
            Scheme::Plain => bool::from(s.as_bytes()["{PLAIN}".len()..].ct_eq(password)),
        }
    }
}

impl From<bcrypt::BcryptError> for HashError {
    fn from(_: bcrypt::BcryptError) -> Self {
        HashError::Unsupported
    }
}

/// The crypt(3) scheme of a hash, by its prefix (DES has none: 13 characters).
fn crypt_scheme(s: &str) -> Option<Scheme> {
    Some(if s.starts_with("$apr1$") {
        Scheme::Apr1
    } else if s.starts_with("$1$") {
        Scheme::Md5Crypt
    } else if s.starts_with("$5$") {
        Scheme::Sha256Crypt
    } else if s.starts_with("$6$") {
        Scheme::Sha512Crypt
    } else if s.starts_with('_') {
        Scheme::BsdiCrypt
    } else if s.len() == 13 {
        Scheme::DesCrypt
    } else {
        return None;
    })
}

/// Whether a crypt(3) hash has its scheme's layout: `$id$[rounds=N$]salt$hash` with the hash
/// in crypt's base64 alphabet and of the scheme's length; DES 13 and BSDi 20 characters.
fn crypt_shape(s: &str, scheme: Scheme) -> bool {
    let alphabet = |t: &str| {
        t.bytes()
            .all(|b| b == b'.' || b == b'/' || b.is_ascii_alphanumeric())
    };
    let modular = |magic: &str, salt_max: usize, hash_len: usize| {
        let Some(rest) = s.strip_prefix(magic) else {
            return false;
        };
        let rest = match rest.strip_prefix("rounds=") {
            Some(r) if magic.starts_with("$5") || magic.starts_with("$6") => {
                match r.split_once('$') {
                    Some((n, r)) if n.parse::<u32>().is_ok() => r,
                    _ => return false,
                }
            }
            _ => rest,
        };
        matches!(rest.split_once('$'), Some((salt, hash))
            if salt.len() <= salt_max && !salt.contains('$') && hash.len() == hash_len && alphabet(hash))
    };
    match scheme {
        Scheme::Apr1 => modular("$apr1$", 8, 22),
        Scheme::Md5Crypt => modular("$1$", 8, 22),
        Scheme::Sha256Crypt => modular("$5$", 16, 43),
        Scheme::Sha512Crypt => modular("$6$", 16, 86),
        Scheme::DesCrypt => s.len() == 13 && alphabet(s),
        Scheme::BsdiCrypt => s.len() == 20 && alphabet(&s[1..]),
        _ => false,
    }
}

/// crypt(3) of `password` with the salt and parameters of `stored` (`crypt3_rs`).
#[allow(deprecated)] // DES and BSDi are deprecated for new passwords, not for checking old ones.
fn crypt(scheme: Scheme, stored: &str, password: &[u8]) -> Option<String> {
    use crypt3_rs::crypt as c;
    let h = match scheme {
        Scheme::Apr1 => c::apr1::hash_with(stored, password),
        Scheme::Md5Crypt => c::md5::hash_with(stored, password),
        Scheme::Sha256Crypt => c::sha256::hash_with(stored, password),
        Scheme::Sha512Crypt => c::sha512::hash_with(stored, password),
        Scheme::DesCrypt => c::unix::hash_with(stored, password),
        Scheme::BsdiCrypt => c::bsdi::hash_with(stored, password),
        _ => return None,
    };
    h.ok().map(|h| h.as_str().to_string())
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A problem with one line of a password file: that user is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based line (for `auth-map`: the key's position).
    pub line: usize,
    pub user: String,
    pub error: HashError,
}

/// The users of one password file, each with the hash of its first line (`None`: that line's
/// hash is unusable, so the user is always refused, as nginx answers a hash it cannot check
/// with a failure, never a pass).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Htpasswd {
    users: BTreeMap<String, Option<PasswordHash>>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads an htpasswd file (`auth-file`: the Secret's `auth` key) with nginx's rules.
    pub fn parse_file(data: &[u8]) -> (Htpasswd, Vec<LineProblem>) {
        let mut out = Htpasswd::default();
        let mut problems = Vec::new();
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            // nginx skips a line without `:` (no user can match it).
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let (user, rest) = (&line[..colon], &line[colon + 1..]);
            out.add(i + 1, user, rest, &mut problems);
        }
        (out, problems)
    }

    /// Reads an `auth-map` Secret: each key a user, its value the hash (ingress-nginx writes
    /// them as `key:value` lines, so the value is read as a line's hash).
    pub fn parse_map<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (Htpasswd, Vec<LineProblem>) {
        let mut out = Htpasswd::default();
        let mut problems = Vec::new();
        for (i, (user, value)) in entries.into_iter().enumerate() {
            out.add(i + 1, user.as_bytes(), value, &mut problems);
        }
        (out, problems)
    }

    fn add(&mut self, line: usize, user: &[u8], rest: &[u8], problems: &mut Vec<LineProblem>) {
        let Ok(user) = std::str::from_utf8(user) else {
            return;
        };
        if user.is_empty() || self.users.contains_key(user) {
            return;
        }
        // The hash ends at `:` (a comment follows), CR or LF.
        let end = rest
            .iter()
            .position(|b| matches!(b, b':' | b'\r' | b'\n'))
            .unwrap_or(rest.len());
        let hash = std::str::from_utf8(&rest[..end])
            .map_err(|_| HashError::Unsupported)
            .and_then(PasswordHash::parse);
        let hash = match hash {
            Ok(h) => Some(h),
            Err(error) => {
                problems.push(LineProblem {
                    line,
                    user: user.to_string(),
                    error,
                });
                None
            }
        };
        self.users.insert(user.to_string(), hash);
    }

    /// The stored hash for `user` (`Some(None)`: the user exists but cannot log in).
    pub fn get(&self, user: &str) -> Option<Option<&PasswordHash>> {
        self.users.get(user).map(Option::as_ref)
    }

    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The schemes in use, sorted, without duplicates (for `explain`).
    pub fn schemes(&self) -> Vec<Scheme> {
        let mut v: Vec<Scheme> = self.users.values().flatten().map(|h| h.scheme).collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests;
