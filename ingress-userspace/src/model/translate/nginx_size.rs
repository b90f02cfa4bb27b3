//! nginx's size units ("Measurement units", https://nginx.org/en/docs/syntax.html), the one
//! table every size the proxy takes is read with: ConfigMap keys and annotations written into
//! nginx.conf by ingress-nginx, and the daemon's own size flags.

/// Splits a size into its digits and the multiplier of its unit: none (bytes), `k`/`K` (KiB),
/// `m`/`M` (MiB) and, with `giga`, `g`/`G` (GiB). nginx has two readers: `ngx_parse_offset`
/// (`client_max_body_size` and other offsets) takes `g`, `ngx_parse_size`
/// (`client_header_buffer_size` and other sizes) does not. The digits are not checked here.
pub fn split_unit(v: &str, giga: bool) -> (&str, u64) {
    let scale = match v.as_bytes().last() {
        Some(b'k' | b'K') => 1 << 10,
        Some(b'm' | b'M') => 1 << 20,
        Some(b'g' | b'G') if giga => 1 << 30,
        _ => return (v, 1),
    };
    (&v[..v.len() - 1], scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_nginx_s_powers_of_1024_and_g_only_for_offsets() {
        assert_eq!(split_unit("512", true), ("512", 1));
        assert_eq!(split_unit("8k", false), ("8", 1024));
        assert_eq!(split_unit("8K", false), ("8", 1024));
        assert_eq!(split_unit("1m", false), ("1", 1 << 20));
        assert_eq!(split_unit("1G", true), ("1", 1 << 30));
        // `ngx_parse_size` has no `g`: the letter stays and the digits check refuses it.
        assert_eq!(split_unit("1g", false), ("1g", 1));
        assert_eq!(split_unit("", true), ("", 1));
    }
}
