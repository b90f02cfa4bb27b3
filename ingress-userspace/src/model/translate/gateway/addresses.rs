//! Gateway addresses: which IPs each Gateway is served on (`spec.addresses`, else one from
//! `--gateway-address-pool`), and the conditions the spec gives an address it cannot use.
//!
//! The pool is the set of addresses the network brings to the nodes (a MetalLB, kube-vip or
//! BGP announcement): an address is usable exactly when it is inside the pool. Only the
//! `IPAddress` type is supported (v4 and v6); `Hostname` and every other type is
//! `Accepted: False, UnsupportedAddress` (Gateway API v1 `GatewayReasonUnsupportedAddress`).
//!
//! Assignment is pure and the same on every node: addresses written in `spec.addresses` are
//! taken first (oldest Gateway first: creationTimestamp, then namespace/name, the spec's order
//! for conflicts); then each Gateway that wants one from the pool keeps the pool address its
//! `status.addresses` already shows (sticky, as MetalLB keeps its allocation in status), else
//! gets the first free address in pool order. No two Gateways share an address. Without a
//! pool, a Gateway without `spec.addresses` is served on every node address, as before.

use std::{collections::BTreeMap, fmt, net::IpAddr, str::FromStr};

use gateway_api::apis::standard::gateways::Gateway;

use super::Listed;
use crate::store::Key;

/// The `IPAddress` type (`spec.addresses[].type`'s default).
pub const IP_ADDRESS: &str = "IPAddress";

/// One inclusive range of the pool, both ends of one family, `first <= last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolRange {
    pub first: IpAddr,
    pub last: IpAddr,
    /// The network and broadcast addresses of the IPv4 CIDR the range was written as, left
    /// out of it (a /30 or wider: RFC 919 and RFC 922 reserve both, they are no host's
    /// address on the segment); `None` for every other entry.
    pub excluded: Option<(IpAddr, IpAddr)>,
}

/// A malformed `--gateway-address-pool` entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{entry:?} is not an address, CIDR or FIRST-LAST range: {why}")]
pub struct PoolError {
    pub entry: String,
    pub why: String,
}

impl FromStr for PoolRange {
    type Err = PoolError;

    /// `10.0.0.0/24`, `10.0.0.10-10.0.0.20`, `2001:db8::/120` or one address. An IPv4 CIDR of
    /// /30 or wider leaves out its network and broadcast addresses (`10.0.0.1-10.0.0.254` for
    /// `10.0.0.0/24`); a /31 (RFC 3021 point-to-point), a /32 and IPv6 CIDRs (no broadcast
    /// address) keep every address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let err = |why: &str| PoolError {
            entry: s.to_string(),
            why: why.into(),
        };
        let ip = |v: &str| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| err(&format!("{v:?} is not an IP address")))
        };
        let mut excluded = None;
        let (first, last) = if let Some((net, len)) = s.split_once('/') {
            let net = ip(net)?;
            let len: u32 = len.parse().map_err(|_| err("bad prefix length"))?;
            let bits = if net.is_ipv4() { 32 } else { 128 };
            if len > bits {
                return Err(err("prefix length too long"));
            }
            let host_bits = bits - len;
            let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
            let n = to_u128(net) & mask;
            let last = n | !mask & (u128::MAX >> (128 - bits));
            let v4 = net.is_ipv4();
            if v4 && len <= 30 {
                excluded = Some((from_u128(n, v4), from_u128(last, v4)));
                (from_u128(n + 1, v4), from_u128(last - 1, v4))
            } else {
                (from_u128(n, v4), from_u128(last, v4))
            }
        } else if let Some((a, b)) = s.split_once('-') {
            (ip(a)?, ip(b)?)
        } else {
            let a = ip(s)?;
            (a, a)
        };
        if first.is_ipv4() != last.is_ipv4() {
            return Err(err("both ends must be of one family"));
        }
        if to_u128(first) > to_u128(last) {
            return Err(err("the first address is after the last"));
        }
        Ok(PoolRange {
            first,
            last,
            excluded,
        })
    }
}

impl fmt::Display for PoolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// `--gateway-address-pool`: the addresses Gateways may be served on, in order (empty: no
/// pool).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPool {
    pub ranges: Vec<PoolRange>,
}

impl AddressPool {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `ip` is inside the pool (an IPv4-mapped IPv6 address is its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.iter().any(|r| {
            r.first.is_ipv4() == ip.is_ipv4()
                && (to_u128(r.first)..=to_u128(r.last)).contains(&to_u128(ip))
        })
    }

    /// Whether `ip` is the network or broadcast address of a CIDR of the pool
    /// ([`PoolRange::excluded`]), and of which range.
    pub fn excluded(&self, ip: IpAddr) -> Option<&PoolRange> {
        let ip = ip.to_canonical();
        (self.ranges.iter()).find(|r| r.excluded.is_some_and(|(n, b)| ip == n || ip == b))
    }

    /// The first address in pool order not in `taken`. Steps at most `taken.len() + 1`
    /// addresses into each range, so a huge IPv6 range costs nothing.
    fn first_free<V>(&self, taken: &BTreeMap<IpAddr, V>) -> Option<IpAddr> {
        for r in &self.ranges {
            let (first, last) = (to_u128(r.first), to_u128(r.last));
            let mut n = first;
            loop {
                let ip = from_u128(n, r.first.is_ipv4());
                if !taken.contains_key(&ip) {
                    return Some(ip);
                }
                if n == last {
                    break;
                }
                n += 1;
            }
        }
        None
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(
            u32::try_from(n).unwrap_or(u32::MAX),
        ))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

/// Where one Gateway is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// No pool and no `spec.addresses`: every local address no Gateway claims (the node's),
    /// its status showing `--publish-address` or the node addresses.
    Node,
    /// Exactly these (sorted): connections to them see only this Gateway's listeners.
    Assigned(Vec<IpAddr>),
    /// `Accepted: False, UnsupportedAddress`: a type other than `IPAddress`.
    Unsupported(String),
    /// `Programmed: False, AddressNotUsable`: an address outside the pool, not an IP, or
    /// another (older) Gateway's.
    NotUsable(String),
    /// `Programmed: False, AddressNotAssigned`: the pool has no free address left (or there
    /// is no pool for a `spec.addresses` entry without a value).
    NotAssigned(String),
}

impl Addresses {
    /// The addresses served on, when assigned.
    pub fn assigned(&self) -> Option<&[IpAddr]> {
        match self {
            Addresses::Assigned(a) => Some(a),
            _ => None,
        }
    }
}

/// What one Gateway's `spec.addresses` asks for.
struct Wanted {
    fixed: Vec<IpAddr>,
    /// Addresses to draw from the pool (entries without a value; 1 without `spec.addresses`
    /// when there is a pool).
    from_pool: usize,
}

/// Addresses of each Gateway in `gateways` (all ours), by the rules of the module doc.
pub fn assign<'a>(
    gateways: impl IntoIterator<Item = (&'a Key, &'a Gateway)>,
    pool: &AddressPool,
) -> BTreeMap<Key, Addresses> {
    let mut order: Vec<(i64, &Key, &Gateway)> = gateways
        .into_iter()
        .map(|(k, gw)| {
            let created = (gw.metadata.creation_timestamp.as_ref()).map(|t| t.0.as_second());
            (created.unwrap_or(0), k, gw)
        })
        .collect();
    order.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = BTreeMap::new();
    let mut wanted = Vec::new();
    for (_, key, gw) in &order {
        match wanted_of(gw, pool) {
            Ok(Some(w)) => wanted.push((*key, *gw, w)),
            Ok(None) => {
                out.insert((*key).clone(), Addresses::Node);
            }
            Err(a) => {
                out.insert((*key).clone(), a);
            }
        }
    }
    // 1. Written addresses, oldest Gateway first.
    let mut taken: BTreeMap<IpAddr, &Key> = BTreeMap::new();
    let mut got: BTreeMap<&Key, Vec<IpAddr>> = BTreeMap::new();
    for (key, _, w) in &wanted {
        if let Some((ip, owner)) = (w.fixed.iter()).find_map(|ip| taken.get(ip).map(|o| (ip, o))) {
            let msg = format!("{ip} is Gateway {owner}'s");
            out.insert((*key).clone(), Addresses::NotUsable(msg));
            continue;
        }
        for ip in &w.fixed {
            taken.insert(*ip, key);
        }
        got.insert(key, w.fixed.clone());
    }
    // 2. Pool addresses a Gateway's status already shows stay its own.
    let mut need: BTreeMap<&Key, usize> = BTreeMap::new();
    for (key, gw, w) in &wanted {
        let Some(mine) = got.get_mut(key) else {
            continue;
        };
        let mut left = w.from_pool;
        for ip in status_addresses(gw) {
            if left == 0 {
                break;
            }
            if pool.contains(ip) && !taken.contains_key(&ip) {
                taken.insert(ip, key);
                mine.push(ip);
                left -= 1;
            }
        }
        need.insert(key, left);
    }
    // 3. The first free ones, in pool order.
    for (key, _, _) in &wanted {
        let Some(mine) = got.get_mut(key) else {
            continue;
        };
        let mut left = need.get(key).copied().unwrap_or(0);
        while left > 0 {
            match pool.first_free(&taken) {
                Some(ip) => {
                    taken.insert(ip, key);
                    mine.push(ip);
                    left -= 1;
                }
                None => break,
            }
        }
        if left > 0 {
            let msg = if pool.is_empty() {
                "no --gateway-address-pool to assign an address from".to_string()
            } else {
                format!("the Gateway address pool has no free address left ({left} wanted)")
            };
            // Its addresses go back: a Gateway not served holds none.
            taken.retain(|_, owner| *owner != *key);
            out.insert((*key).clone(), Addresses::NotAssigned(msg));
            continue;
        }
        mine.sort();
        mine.dedup();
        out.insert((*key).clone(), Addresses::Assigned(mine.clone()));
    }
    out
}

/// `Ok(None)`: served on the node's addresses; `Err`: the verdict on an address it cannot
/// use, unsupported types first.
fn wanted_of(gw: &Gateway, pool: &AddressPool) -> Result<Option<Wanted>, Addresses> {
    let written = gw.spec.addresses.listed();
    if written.is_empty() {
        return Ok((!pool.is_empty()).then_some(Wanted {
            fixed: Vec::new(),
            from_pool: 1,
        }));
    }
    if let Some(a) =
        (written.iter()).find(|a| a.r#type.as_deref().unwrap_or(IP_ADDRESS) != IP_ADDRESS)
    {
        let ty = a.r#type.as_deref().unwrap_or_default();
        return Err(Addresses::Unsupported(format!(
            "address type {ty} is not supported (only {IP_ADDRESS})"
        )));
    }
    let mut w = Wanted {
        fixed: Vec::new(),
        from_pool: 0,
    };
    for a in written {
        match a.value.as_deref().map(str::trim) {
            None | Some("") => w.from_pool += 1,
            Some(v) => match v.parse::<IpAddr>() {
                Ok(ip) if pool.contains(ip) => w.fixed.push(ip.to_canonical()),
                Ok(ip) if let Some((n, b)) = pool.excluded(ip).and_then(|r| r.excluded) => {
                    return Err(Addresses::NotUsable(format!(
                        "{ip} is the network or broadcast address of a CIDR of the Gateway \
                         address pool ({n}-{b}), not a host address"
                    )));
                }
                Ok(ip) if pool.is_empty() => {
                    return Err(Addresses::NotUsable(format!(
                        "{ip} cannot be used: no --gateway-address-pool is set"
                    )));
                }
                Ok(ip) => {
                    return Err(Addresses::NotUsable(format!(
                        "{ip} is outside the Gateway address pool"
                    )));
                }
                Err(_) => {
                    return Err(Addresses::NotUsable(format!("{v:?} is not an IP address")));
                }
            },
        }
    }
    Ok(Some(w))
}

/// The IPs of a Gateway's `status.addresses` (the last assignment), in order.
fn status_addresses(gw: &Gateway) -> Vec<IpAddr> {
    let listed = (gw.status.as_ref()).and_then(|s| s.addresses.as_deref());
    (listed.unwrap_or_default().iter())
        .filter(|a| a.r#type.as_deref().unwrap_or(IP_ADDRESS) == IP_ADDRESS)
        .filter_map(|a| a.value.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect()
}

#[cfg(test)]
mod tests;
