//! Incremental Internet checksum updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
//!
//! Words are read in memory order (`from_ne_bytes`) and checksums stored the same way: one's
//! complement sums do not care about byte order as long as every word is read alike.

/// Folds a 64-bit one's complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut s: u64) -> u16 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The sum contribution of replacing 16-bit word `old` by `new`.
#[inline(always)]
pub fn diff16(old: u16, new: u16) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// The sum contribution of replacing an address: 4 bytes (IPv4) or 16 bytes (IPv6).
#[inline(always)]
pub fn diff_addr(old: &[u8; 16], new: &[u8; 16], v6: bool) -> u64 {
    let words = if v6 { 8 } else { 2 };
    let mut s = 0u64;
    let mut i = 0;
    while i < 8 {
        if i < words {
            let o = u16::from_ne_bytes([old[2 * i], old[2 * i + 1]]);
            let n = u16::from_ne_bytes([new[2 * i], new[2 * i + 1]]);
            s += diff16(o, n);
        }
        i += 1;
    }
    s
}

/// Applies a sum contribution to a stored checksum.
#[inline(always)]
pub fn apply(check: u16, diff: u64) -> u16 {
    !fold(u64::from(!check) + diff)
}
