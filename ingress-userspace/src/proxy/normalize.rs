//! Request path normalisation: the one form of a path that routing, `allowlist-source-range`,
//! the ssl-redirect `Location` and the backend all see, so a path cannot be routed as one
//! resource and served as another.
//!
//! Steps (RFC 3986 §6.2.2, with nginx's default `merge_slashes on`):
//! 1. percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded
//!    (`/%61dmin` → `/admin`, `%2e%2e` → `..`); every other percent-encoding keeps its meaning
//!    and gets upper-case hex (`%2f` → `%2F`), so `%2F` never becomes a separator;
//! 2. repeated slashes are merged (`//admin` → `/admin`);
//! 3. dot segments are removed (§5.2.4: `/public/../admin` → `/admin`, `/a/.` → `/a/`).
//!
//! Refused (the caller answers 400), because no safe normal form exists:
//! - `..` that would climb above the root (`/../x`; nginx answers 400 too);
//! - a segment that is a dot segment for backends that split further: `.` or `..` next to an
//!   encoded `/` (`%2F`), an encoded or literal `\` (`%5C`, `\`, Windows and some frameworks),
//!   or before `;` path parameters (`..;/`, Tomcat/Spring);
//! - NUL, literal or `%00`; invalid percent-encoding (`%`, `%4`, `%zz`);
//! - a path that does not start with `/` (asterisk-form `*`, as nginx).
//!
//! Bytes outside ASCII (hyper accepts UTF-8 in the path) are kept as they are.

use std::borrow::Cow;

/// Why a path has no safe normal form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request path does not start with /")]
    NotAbsolute,
    #[error("invalid percent-encoding in path")]
    BadPercentEncoding,
    #[error("NUL in path")]
    Nul,
    #[error("path climbs above the root")]
    AboveRoot,
    #[error("dot segment hidden by an encoded slash, a backslash or ;")]
    HiddenDotSegment,
}

/// The normal form of `path` (the part of the request target before `?`): borrowed when it
/// is already normal (the common case). The query string is not this function's business:
/// it is forwarded as sent.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.is_empty() {
        // Absolute-form without a path (`http://host`): the root (RFC 9112 §3.2.2).
        return Ok(Cow::Borrowed("/"));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plainly_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    walk(path)
}

/// [`normalize_path`] of an absolute path, segment by segment.
fn walk(path: &str) -> Result<Cow<'_, str>, PathError> {
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    // Whether the result ends in `/` (the last segment was empty or a dot segment).
    let mut trailing = false;
    let mut segments = decoded[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            // Merged slash, or the trailing one.
            "" | "." => trailing = last,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = last;
            }
            _ => {
                if hides_dot_segment(seg) {
                    return Err(PathError::HiddenDotSegment);
                }
                out.push(seg);
                trailing = false;
            }
        }
    }
    let ends_in_slash = trailing || out.is_empty();
    if is_joined(path, &out, ends_in_slash) {
        // The common case: nothing to change, nothing to allocate.
        return Ok(Cow::Borrowed(path));
    }
    let mut normal = String::with_capacity(decoded.len());
    for seg in &out {
        normal.push('/');
        normal.push_str(seg);
    }
    if ends_in_slash {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// Whether an absolute `path` is normal without splitting it (most are): no escape, no
/// byte a hidden dot segment needs (`\`, `;`), no NUL, no segment that is empty but the
/// last (`//`) or starts with a dot (`/.`, which covers `.` and `..`). Such a path is what
/// [`normalize_path`]'s walk would borrow; a path that fails this still may be normal.
fn is_plainly_normal(path: &str) -> bool {
    let mut prev = 0u8;
    for &b in path.as_bytes() {
        if matches!(b, b'%' | b'\\' | b';' | 0) || (prev == b'/' && matches!(b, b'/' | b'.')) {
            return false;
        }
        prev = b;
    }
    true
}

/// Whether `path` is `/` + `segments` joined by `/`, with a `/` after them when
/// `ends_in_slash`: what [`normalize_path`] would build.
fn is_joined(path: &str, segments: &[&str], ends_in_slash: bool) -> bool {
    let mut rest = path.as_bytes();
    for seg in segments {
        match rest.split_first() {
            Some((b'/', r)) if r.starts_with(seg.as_bytes()) => rest = &r[seg.len()..],
            _ => return false,
        }
    }
    if ends_in_slash {
        rest == b"/"
    } else {
        rest.is_empty()
    }
}

/// The path routing matches, from [`normalize_path`]'s output: an encoded slash (`%2F`)
/// separates segments, and the slashes are merged again, as nginx matches locations on the
/// decoded URI. So `/admin%2Fsecret` is routed and allowlisted as `/admin/secret` and
/// `/%2Fadmin` as `/admin`, the way a backend that decodes `%2F` will read them; the backend
/// still receives the normal form, with `%2F` as sent.
pub fn match_path(normal: &str) -> Cow<'_, str> {
    if !normal.contains("%2F") {
        return Cow::Borrowed(normal);
    }
    let mut out = String::with_capacity(normal.len());
    for c in normal.replace("%2F", "/").chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Step 1: unreserved characters decoded, other percent-encodings upper-cased.
fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    if !bytes.contains(&b'%') {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let hex = rest
            .as_bytes()
            .get(i + 1..i + 3)
            .ok_or(PathError::BadPercentEncoding)?;
        let (Some(hi), Some(lo)) = (hex_value(hex[0]), hex_value(hex[1])) else {
            return Err(PathError::BadPercentEncoding);
        };
        let byte = hi << 4 | lo;
        if byte == 0 {
            return Err(PathError::Nul);
        }
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(hex[0].to_ascii_uppercase()));
            out.push(char::from(hex[1].to_ascii_uppercase()));
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Whether a segment that is not itself `.` or `..` holds one for a backend that also splits
/// at `%2F`, `%5C` or `\`, or drops `;` path parameters. Expects upper-case hex (step 1).
fn hides_dot_segment(seg: &str) -> bool {
    if !seg.contains(['%', '\\', ';']) {
        return false;
    }
    seg.replace("%2F", "/")
        .replace("%5C", "/")
        .split(['/', '\\'])
        .map(|piece| piece.split(';').next().unwrap_or(piece))
        .any(|piece| piece == "." || piece == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the quick look takes for normal is one the walk borrows unchanged
    /// (all paths of up to six bytes over the bytes that matter).
    #[test]
    fn a_plainly_normal_path_is_what_the_walk_borrows() {
        const BYTES: &[u8] = b"a/.%2eF;\\";
        let mut paths = vec![String::from("/")];
        let mut plain = 0;
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &paths {
                for &b in BYTES {
                    let mut q = p.clone();
                    q.push(b as char);
                    if is_plainly_normal(&q) {
                        plain += 1;
                        assert!(
                            matches!(walk(&q), Ok(Cow::Borrowed(w)) if w == q),
                            "{q:?}: {:?}",
                            walk(&q)
                        );
                    }
                    next.push(q);
                }
            }
            paths = next;
        }
        assert!(plain > 100, "{plain}");
    }

    fn n(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(|c| c.into_owned())
    }

    /// The normal form comes back borrowed exactly when the path already was it (RFC 3986
    /// section 5.2.4 dot segments and merged slashes decide both).
    #[test]
    fn a_path_already_normal_is_borrowed_and_any_other_rebuilt() {
        for (raw, normal) in [
            ("/", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a/b/c", "/a/b/c"),
            ("/a%2Fb", "/a%2Fb"),
            ("//", "/"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/ab", "/ab"),
            ("/a%62", "/ab"),
        ] {
            let got = normalize_path(raw).unwrap();
            assert_eq!(got, normal, "{raw}");
            assert_eq!(matches!(got, Cow::Borrowed(_)), raw == normal, "{raw}");
        }
    }

    #[test]
    fn encoded_slashes_separate_segments_for_routing_only() {
        for (raw, routed) in [
            ("/admin%2fsecret", "/admin/secret"),
            ("/%2Fadmin", "/admin"),
            ("/a%2F%2F%2Fb/", "/a/b/"),
            ("/plain/path", "/plain/path"),
        ] {
            let normal = n(raw).unwrap();
            assert_eq!(match_path(&normal), routed, "{raw}");
        }
        // What the backend gets keeps the encoded slash.
        assert_eq!(n("/admin%2fsecret").unwrap(), "/admin%2Fsecret");
    }

    #[test]
    fn issue_examples_reach_the_admin_path() {
        assert_eq!(n("/public/../admin").unwrap(), "/admin");
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2E./admin").unwrap(), "/admin");
        assert_eq!(n("/public/.%2e/admin").unwrap(), "/admin");
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a%2Fb",
            "/a%20b",
            "/caf\u{e9}",
            "/a;b=c",
            "/...",
        ] {
            assert!(
                matches!(normalize_path(p), Ok(Cow::Borrowed(q)) if q == p),
                "{p}"
            );
        }
    }

    /// RFC 3986 §5.4 resolves references against `http://a/b/c/d;p?q`; the results' paths
    /// are what dot-segment removal gives for base directory + reference. Those that climb
    /// above the root (§5.4.2 `../../../g`) are refused here instead of clamped.
    #[test]
    fn rfc3986_section_5_4_dot_segment_examples() {
        let cases = [
            ("/b/c/g", "/b/c/g"),
            ("/b/c/./g", "/b/c/g"),
            ("/b/c/g/", "/b/c/g/"),
            ("/b/c/.", "/b/c/"),
            ("/b/c/./", "/b/c/"),
            ("/b/c/..", "/b/"),
            ("/b/c/../", "/b/"),
            ("/b/c/../g", "/b/g"),
            ("/b/c/../..", "/"),
            ("/b/c/../../", "/"),
            ("/b/c/../../g", "/g"),
            ("/b/c/g.", "/b/c/g."),
            ("/b/c/.g", "/b/c/.g"),
            ("/b/c/g..", "/b/c/g.."),
            ("/b/c/..g", "/b/c/..g"),
            ("/b/c/./../g", "/b/g"),
            ("/b/c/./g/.", "/b/c/g/"),
            ("/b/c/g/./h", "/b/c/g/h"),
            ("/b/c/g/../h", "/b/c/h"),
            ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
            ("/b/c/g;x=1/../y", "/b/c/y"),
            // §5.2.4's own walk-through.
            ("/a/b/c/./../../g", "/a/g"),
        ];
        for (p, want) in cases {
            assert_eq!(n(p).as_deref(), Ok(want), "{p}");
        }
        assert_eq!(n("/b/c/../../../g"), Err(PathError::AboveRoot));
        assert_eq!(n("/b/c/../../../../g"), Err(PathError::AboveRoot));
    }

    #[test]
    fn percent_encoding_is_normalised_not_decoded_into_syntax() {
        assert_eq!(n("/%7Euser/%41%2d%5f").unwrap(), "/~user/A-_");
        assert_eq!(n("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(n("/a%3fb%23c").unwrap(), "/a%3Fb%23c");
        assert_eq!(n("/100%25").unwrap(), "/100%25");
        // `%25` decodes to `%`, which is reserved: no double decoding of `%2561`.
        assert_eq!(n("/%2561dmin").unwrap(), "/%2561dmin");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn slashes_merge_as_nginx_merge_slashes() {
        assert_eq!(n("///a//b///").unwrap(), "/a/b/");
        assert_eq!(n("/a//../b").unwrap(), "/b");
        assert_eq!(n("//").unwrap(), "/");
        assert_eq!(n("").unwrap(), "/");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases = [
            ("/..", PathError::AboveRoot),
            ("/../admin", PathError::AboveRoot),
            ("/%2e%2e/admin", PathError::AboveRoot),
            ("/a/../../admin", PathError::AboveRoot),
            ("/public/..%2fadmin", PathError::HiddenDotSegment),
            ("/public/%2e%2e%2Fadmin", PathError::HiddenDotSegment),
            ("/public/x%2F..%2Fadmin", PathError::HiddenDotSegment),
            ("/public/..%5cadmin", PathError::HiddenDotSegment),
            ("/public/..\\admin", PathError::HiddenDotSegment),
            ("/public\\..\\admin", PathError::HiddenDotSegment),
            ("/public/.%2Fadmin", PathError::HiddenDotSegment),
            ("/public/..;/admin", PathError::HiddenDotSegment),
            ("/public/..;jsessionid=1/admin", PathError::HiddenDotSegment),
            ("/a%00b", PathError::Nul),
            ("/a\0b", PathError::Nul),
            ("/a%", PathError::BadPercentEncoding),
            ("/a%4", PathError::BadPercentEncoding),
            ("/a%zz", PathError::BadPercentEncoding),
            ("/a%\u{e9}", PathError::BadPercentEncoding),
            ("*", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
        ];
        for (p, e) in cases {
            assert_eq!(n(p), Err(e), "{p:?}");
        }
    }

    #[test]
    fn segments_that_only_look_like_dots_stay() {
        for p in [
            "/a/...", "/a/..b", "/a/b..", "/a/.b", "/a;x/b", "/a/%2Fb", "/a\\b",
        ] {
            assert_eq!(n(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for p in [
            "/public/../admin",
            "//a/./b/%7e/%2f/",
            "/x/%2e/y/%2E%2E/z",
            "/a%20b//c",
        ] {
            let once = n(p).unwrap();
            assert_eq!(n(&once).unwrap(), once, "{p}");
        }
    }
}
