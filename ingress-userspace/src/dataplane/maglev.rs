//! Maglev consistent hashing (Eisenbud et al., NSDI '16), pure: the same backends (by name)
//! and weights give the same table on every node. Weighted by giving each backend turns in
//! proportion to its weight.

/// A backend as Maglev sees it: a stable name (e.g. `ip:port`) and a relative weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    pub name: &'a str,
    pub weight: u32,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("maglev table size {0} is not a prime of at least 3")]
    NotPrime(u32),
}

/// True when `n` is prime (trial division: table sizes are at most a few hundred thousand).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= u64::from(n) {
        if u64::from(n) % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// FNV-1a over `bytes`, starting from `seed` mixed into the offset basis.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalise so nearby names spread (splitmix64).
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Builds a table of `size` entries holding indexes into `backends`. Backends of weight 0
/// get no entries; an empty result means no backend can take traffic.
pub fn build(backends: &[MaglevBackend<'_>], size: u32) -> Result<Vec<u32>, MaglevError> {
    if size < 3 || !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    let live: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weight > 0)
        .collect();
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let m = u64::from(size);
    let perm: Vec<(u64, u64)> = live
        .iter()
        .map(|&i| {
            let name = backends[i].name.as_bytes();
            let offset = fnv1a(0x6d61_676c, name) % m;
            let skip = fnv1a(0x6576_2121, name) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let max_w = live.iter().map(|&i| backends[i].weight).max().unwrap_or(1);
    let mut next = vec![0u64; live.len()];
    let mut credit = vec![0u64; live.len()];
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    while filled < m {
        for (k, &i) in live.iter().enumerate() {
            credit[k] += u64::from(backends[i].weight);
            while credit[k] >= u64::from(max_w) && filled < m {
                credit[k] -= u64::from(max_w);
                let (offset, skip) = perm[k];
                loop {
                    let slot = ((offset + next[k] * skip) % m) as usize;
                    next[k] += 1;
                    if table[slot] == u32::MAX {
                        table[slot] = i as u32;
                        filled += 1;
                        break;
                    }
                }
            }
            if filled == m {
                break;
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("198.19.{i}.2:8080")).collect()
    }

    fn equal(names: &[String]) -> Vec<MaglevBackend<'_>> {
        names
            .iter()
            .map(|n| MaglevBackend { name: n, weight: 1 })
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &b in table {
            c[b as usize] += 1;
        }
        c
    }

    #[test]
    fn rejects_non_prime_sizes() {
        assert_eq!(build(&[], 16380), Err(MaglevError::NotPrime(16380)));
        assert!(is_prime(16381) && is_prime(65537));
    }

    #[test]
    fn is_deterministic_and_order_independent() {
        let n = names(5);
        let a = build(&equal(&n), 16381).unwrap();
        let b = build(&equal(&n), 16381).unwrap();
        assert_eq!(a, b);
        // The same set listed in another order maps slots to the same names.
        let mut rev = n.clone();
        rev.reverse();
        let c = build(&equal(&rev), 16381).unwrap();
        let by_name_a: Vec<&str> = a.iter().map(|&i| n[i as usize].as_str()).collect();
        let by_name_c: Vec<&str> = c.iter().map(|&i| rev[i as usize].as_str()).collect();
        let same = by_name_a
            .iter()
            .zip(&by_name_c)
            .filter(|(x, y)| x == y)
            .count();
        // Ties in the round-robin order can move a handful of slots, no more.
        assert!(same as f64 / a.len() as f64 > 0.95, "{same}");
    }

    #[test]
    fn spreads_evenly_for_equal_weights() {
        for n in [2, 3, 7, 10, 33] {
            let nm = names(n);
            let t = build(&equal(&nm), 16381).unwrap();
            let s = shares(&t, n);
            let (max, min) = (*s.iter().max().unwrap(), *s.iter().min().unwrap());
            assert!(max as f64 / min as f64 <= 1.1, "n={n} shares={s:?}");
        }
    }

    #[test]
    fn removing_one_backend_moves_about_its_share() {
        let n = 10;
        let nm = names(n);
        let before = build(&equal(&nm), 16381).unwrap();
        let kept: Vec<String> = nm[..n - 1].to_vec();
        let after = build(&equal(&kept), 16381).unwrap();
        let mut moved_removed = 0;
        let mut moved_others = 0;
        for (b, a) in before.iter().zip(&after) {
            let bn = &nm[*b as usize];
            let an = &kept[*a as usize];
            if bn != an {
                if *b as usize == n - 1 {
                    moved_removed += 1;
                } else {
                    moved_others += 1;
                }
            }
        }
        let m = before.len() as f64;
        assert!(
            (moved_removed as f64 / m - 0.1).abs() < 0.01,
            "{moved_removed}"
        );
        // Slots of surviving backends barely move (Maglev's small extra disruption).
        assert!((moved_others as f64 / m) < 0.03, "{moved_others}");
    }

    #[test]
    fn honours_weights() {
        let nm = names(3);
        let b = vec![
            MaglevBackend {
                name: &nm[0],
                weight: 1,
            },
            MaglevBackend {
                name: &nm[1],
                weight: 2,
            },
            MaglevBackend {
                name: &nm[2],
                weight: 0,
            },
        ];
        let t = build(&b, 16381).unwrap();
        let s = shares(&t, 3);
        assert_eq!(s[2], 0);
        let ratio = s[1] as f64 / s[0] as f64;
        assert!((ratio - 2.0).abs() < 0.05, "{s:?}");
    }
}
