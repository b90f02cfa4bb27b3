//! ingress-nginx's `client-header-buffer-size` and `large-client-header-buffers` ConfigMap
//! keys (configmap.md; nginx.tmpl writes them into nginx's `client_header_buffer_size` and
//! `large_client_header_buffers` as they are) into [`HeadBuffers`]. A value nginx would not
//! load (`nginx -t` fails, so ingress-nginx keeps its running configuration) is reported and
//! that key keeps its default.

use super::next_upstream::Invalid;
use crate::model::HeadBuffers;

pub const CLIENT: &str = "client-header-buffer-size";
pub const LARGE: &str = "large-client-header-buffers";

/// nginx's `connection_pool_size` on 64-bit hosts (`64 * sizeof(void *)`): a large buffer
/// must be at least that ("the "large_client_header_buffers" size must be equal to or greater
/// than "connection_pool_size"", ngx_http_core_merge_srv_conf).
pub const MIN_LARGE_SIZE: u64 = 512;

/// Reads both keys with `get` (trimmed values); an unset or invalid key keeps its default.
pub fn parse(get: impl Fn(&str) -> Option<String>) -> (HeadBuffers, Vec<Invalid>) {
    let mut out = HeadBuffers::default();
    let mut invalid = Vec::new();
    if let Some(v) = get(CLIENT) {
        // nginx takes 0 (`ngx_conf_set_size_slot`) but then reads no request into an empty
        // buffer: refused here rather than serving nothing.
        match nginx_size(&v).filter(|n| *n > 0) {
            Some(n) => out.client = n,
            None => invalid.push(Invalid {
                key: CLIENT,
                value: v,
                expected: "a size of at least 1 byte (bytes, or with k or m: \"1k\")",
            }),
        }
    }
    if let Some(v) = get(LARGE) {
        match large_buffers(&v) {
            Some((count, size)) => {
                out.large_count = count;
                out.large_size = size;
            }
            None => invalid.push(Invalid {
                key: LARGE,
                value: v,
                expected: "a count of at least 1 and a size of at least 512 bytes (\"4 8k\")",
            }),
        }
    }
    (out, invalid)
}

/// `N SIZE` as nginx's `ngx_conf_set_bufs_slot` reads it: two arguments (separated by
/// spaces or tabs), a count of at least 1 and a size ([`nginx_size`]) of at least
/// [`MIN_LARGE_SIZE`].
fn large_buffers(v: &str) -> Option<(u64, u64)> {
    let mut args = v.split([' ', '\t']).filter(|a| !a.is_empty());
    let (count, size, None) = (args.next()?, args.next()?, args.next()) else {
        return None;
    };
    let count = digits(count).filter(|n| *n > 0)?;
    let size = nginx_size(size).filter(|n| *n >= MIN_LARGE_SIZE)?;
    Some((count, size))
}

/// A size as nginx's `ngx_parse_size` reads it: decimal digits, optionally followed by `k`/`K`
/// (KiB) or `m`/`M` (MiB); no sign, no other unit (`g` is not nginx's), no overflow.
pub fn nginx_size(v: &str) -> Option<u64> {
    let (num, scale) = super::nginx_size::split_unit(v, false);
    digits(num)?.checked_mul(scale)
}

fn digits(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (HeadBuffers, Vec<Invalid>) {
        parse(|k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.trim().to_string())
        })
    }

    #[test]
    fn unset_keys_are_ingress_nginx_defaults() {
        let (b, invalid) = read(&[]);
        assert_eq!(
            b,
            HeadBuffers {
                client: 1024,
                large_count: 4,
                large_size: 8192
            }
        );
        assert!(invalid.is_empty());
        assert_eq!(b.total(), 1024 + 4 * 8192);
    }

    #[test]
    fn sizes_as_nginx_parses_them() {
        let (b, invalid) = read(&[(CLIENT, "2k"), (LARGE, "8 16k")]);
        assert!(invalid.is_empty(), "{invalid:?}");
        assert_eq!((b.client, b.large_count, b.large_size), (2048, 8, 16384));
        let (b, _) = read(&[(CLIENT, "512"), (LARGE, "2\t1M")]);
        assert_eq!((b.client, b.large_count, b.large_size), (512, 2, 1 << 20));
        let (b, _) = read(&[(LARGE, "  4   64K ")]);
        assert_eq!((b.large_count, b.large_size), (4, 65536));
        assert_eq!(nginx_size("1m"), Some(1 << 20));
        assert_eq!(nginx_size("10"), Some(10));
    }

    #[test]
    fn invalid_values_warn_and_keep_the_default() {
        for (key, v) in [
            (CLIENT, "1g"),
            (CLIENT, "0"),
            (CLIENT, "-1k"),
            (CLIENT, "1 k"),
            (CLIENT, "big"),
            (CLIENT, "99999999999999999999m"),
            (LARGE, "8k"),
            (LARGE, "0 8k"),
            (LARGE, "4 0"),
            (LARGE, "4 256"),
            (LARGE, "4 8k 2"),
            (LARGE, "four 8k"),
            (LARGE, "4 8g"),
            (LARGE, "4,8k"),
        ] {
            let (b, invalid) = read(&[(key, v)]);
            assert_eq!(b, HeadBuffers::default(), "{key}: {v:?}");
            assert_eq!(invalid.len(), 1, "{key}: {v:?}");
            assert_eq!(invalid[0].key, key);
            assert_eq!(invalid[0].value, v);
        }
    }
}
