//! The node-wide SYN limit (`--syn-rate-limit-per-source` / `--syn-rate-limit-burst`) on the
//! proxy's own listeners. The DaemonSet runs with hostNetwork: clients reach the proxy on the
//! node's addresses at its HTTP and HTTPS ports (ssl-passthrough shares the HTTPS one), where
//! the kernel accepts, not through any service frontend. The daemon writes those listeners
//! into [`MAP_SYN_LISTENERS`]; XDP charges each SYN to one of them to its source in the same
//! source LRU and GCRA as a Service's limit, and drops it over the limit.
//!
//! Not limited: the metrics/health listener (kubelet probes and scrapers, not clients) and the
//! health check node ports (load balancers' probes, which must never be refused).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray},
};
use ingress_common::{
    l4::{FAMILY_V4, FAMILY_V6, L4Counter},
    syn_limit::{
        MAP_SYN_LISTEN_PORTS, MAP_SYN_LISTENER_STATS, MAP_SYN_LISTENERS, SYN_LISTENERS_SIZE,
        SynLimitConfig, SynListener, SynListenerKey,
    },
};

use super::{
    sync::{SyncError, addr_from, map_err},
    view::{Counters, SynLimitView},
};
use crate::model::SynRateLimit;

/// Name prefix of a listener's counters: `proxy-listener:PORT`, in `xdp-ingress backends`
/// and in `xdp_ingress_l4_syn_limited_total{service}`.
pub const NAME_PREFIX: &str = "proxy-listener:";

/// The map entries for `listeners` (the sockets the proxy bound, in order; each one's index is
/// its position) under `limit`. A wildcard `::` takes IPv4 as well (Linux `bindv6only=0`), so
/// it gets a wildcard entry per family; `0.0.0.0` only the IPv4 one; an IPv4-mapped IPv6
/// address is its IPv4 address. Listeners past the map's room are left out (the proxy binds
/// two, at most two entries each).
pub fn entries(
    listeners: &[SocketAddr],
    limit: SynLimitConfig,
) -> BTreeMap<SynListenerKey, SynListener> {
    let mut out = BTreeMap::new();
    let per_listener = 2;
    for (index, l) in listeners
        .iter()
        .take((SYN_LISTENERS_SIZE / per_listener) as usize)
        .enumerate()
    {
        let value = SynListener {
            limit,
            index: index as u32,
            _pad: 0,
        };
        let key = |family: u8, ip: Option<IpAddr>| {
            let mut addr = [0u8; 16];
            match ip {
                Some(IpAddr::V4(v4)) => addr[..4].copy_from_slice(&v4.octets()),
                Some(IpAddr::V6(v6)) => addr = v6.octets(),
                None => {}
            }
            SynListenerKey {
                addr,
                port: l.port().to_be(),
                family,
                _pad: 0,
            }
        };
        let ip = l.ip().to_canonical();
        let keys = match ip {
            IpAddr::V6(v6) if v6.is_unspecified() => {
                vec![key(FAMILY_V4, None), key(FAMILY_V6, None)]
            }
            IpAddr::V4(v4) if v4.is_unspecified() => vec![key(FAMILY_V4, None)],
            IpAddr::V4(_) => vec![key(FAMILY_V4, Some(ip))],
            IpAddr::V6(_) => vec![key(FAMILY_V6, Some(ip))],
        };
        for k in keys {
            out.entry(k).or_insert(value);
        }
    }
    out
}

/// Makes [`MAP_SYN_LISTENERS`] hold `listeners` under `limit` (`None`: no entry at all, so
/// no listener is limited), removing what a previous run left in the pinned map, and
/// [`MAP_SYN_LISTEN_PORTS`] hold their ports (bits cleared before stale entries go, set after
/// new entries are in; a SYN that meets a bit without an entry simply passes).
pub fn write(
    ebpf: &mut Ebpf,
    listeners: &[SocketAddr],
    limit: Option<SynRateLimit>,
) -> Result<(), SyncError> {
    let want = match limit {
        Some(_) => entries(listeners, super::syn_limit::config(limit)),
        None => BTreeMap::new(),
    };
    let stale: Vec<SynListenerKey> = listener_map(ebpf)?
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains_key(k))
        .collect();
    // The words of every port that had or gets a listener, as they must be in the end.
    let mut words: BTreeMap<u32, u32> = BTreeMap::new();
    for k in stale.iter().chain(want.keys()) {
        words
            .entry(u32::from(u16::from_be(k.port) >> 5))
            .or_insert(0);
    }
    for k in want.keys() {
        let port = u16::from_be(k.port);
        *words.entry(u32::from(port >> 5)).or_insert(0) |= 1 << (port & 31);
    }
    write_port_words(ebpf, &words, true)?;
    let mut m = listener_map(ebpf)?;
    for k in stale {
        m.remove(&k).map_err(map_err(MAP_SYN_LISTENERS))?;
    }
    for (k, v) in &want {
        if m.get(k, 0).ok().as_ref() != Some(v) {
            m.insert(k, v, 0).map_err(map_err(MAP_SYN_LISTENERS))?;
        }
    }
    write_port_words(ebpf, &words, false)
}

fn listener_map(
    ebpf: &mut Ebpf,
) -> Result<BpfHashMap<&mut MapData, SynListenerKey, SynListener>, SyncError> {
    let map = ebpf
        .map_mut(MAP_SYN_LISTENERS)
        .ok_or(SyncError::MissingMap(MAP_SYN_LISTENERS))?;
    BpfHashMap::try_from(map).map_err(map_err(MAP_SYN_LISTENERS))
}

/// Writes `words` (index → bits) into [`MAP_SYN_LISTEN_PORTS`]; `clear_only` keeps only the
/// bits both have (the first step: nothing is set before its entry exists).
fn write_port_words(
    ebpf: &mut Ebpf,
    words: &BTreeMap<u32, u32>,
    clear_only: bool,
) -> Result<(), SyncError> {
    let map = ebpf
        .map_mut(MAP_SYN_LISTEN_PORTS)
        .ok_or(SyncError::MissingMap(MAP_SYN_LISTEN_PORTS))?;
    let mut ports: Array<&mut MapData, u32> =
        Array::try_from(map).map_err(map_err(MAP_SYN_LISTEN_PORTS))?;
    for (i, want) in words {
        let have = ports.get(i, 0).map_err(map_err(MAP_SYN_LISTEN_PORTS))?;
        let w = if clear_only { have & want } else { *want };
        if have != w {
            ports.set(*i, w, 0).map_err(map_err(MAP_SYN_LISTEN_PORTS))?;
        }
    }
    Ok(())
}

/// One of the proxy's listeners under the node-wide SYN limit, as the maps hold it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProxyListenerView {
    /// `proxy-listener:PORT`.
    pub name: String,
    /// Where its SYNs are matched: an address and port, or `0.0.0.0:PORT` / `[::]:PORT` for
    /// any of the node's own addresses (a wildcard bind).
    pub addresses: Vec<String>,
    pub syn_rate_limit: Option<SynLimitView>,
    /// Summed over CPUs: `new_flows` (and `packets`, `bytes`) count the SYNs passed to the
    /// kernel's listener, `syn_limited` those dropped.
    pub counters: Counters,
}

/// The listeners in `listeners`, with their counters from `stats`, sorted by name.
pub fn read<M, S>(
    listeners: &BpfHashMap<M, SynListenerKey, SynListener>,
    stats: &PerCpuArray<S, L4Counter>,
) -> Result<Vec<ProxyListenerView>, aya::maps::MapError>
where
    M: std::borrow::Borrow<MapData>,
    S: std::borrow::Borrow<MapData>,
{
    let mut by_index: BTreeMap<u32, (SynListener, BTreeSet<String>, u16)> = BTreeMap::new();
    for entry in listeners.iter() {
        let (k, v) = entry?;
        let addr = SocketAddr::new(addr_from(&k.addr, k.family), u16::from_be(k.port));
        let e = by_index
            .entry(v.index)
            .or_insert((v, BTreeSet::new(), u16::from_be(k.port)));
        e.1.insert(addr.to_string());
    }
    let mut out = Vec::new();
    for (index, (v, addrs, port)) in by_index {
        let per_cpu = stats.get(&index, 0)?;
        let counters = per_cpu.iter().fold(Counters::default(), |a, c| Counters {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
            new_flows: a.new_flows + c.new_flows,
            syn_limited: a.syn_limited + c.syn_limited,
        });
        out.push(ProxyListenerView {
            name: format!("{NAME_PREFIX}{port}"),
            addresses: addrs.into_iter().collect(),
            syn_rate_limit: super::syn_limit::describe(&v.limit)
                .map(|(per_second, burst)| SynLimitView { per_second, burst }),
            counters,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// [`read`] over the daemon's own maps: `(name, SYNs dropped)` per limited listener, for
/// `xdp_ingress_l4_syn_limited_total{service}`.
pub fn dropped(ebpf: &Ebpf) -> Result<Vec<(String, u64)>, SyncError> {
    let open = |name: &'static str| ebpf.map(name).ok_or(SyncError::MissingMap(name));
    let listeners: BpfHashMap<&MapData, SynListenerKey, SynListener> =
        BpfHashMap::try_from(open(MAP_SYN_LISTENERS)?).map_err(map_err(MAP_SYN_LISTENERS))?;
    let stats: PerCpuArray<&MapData, L4Counter> =
        PerCpuArray::try_from(open(MAP_SYN_LISTENER_STATS)?)
            .map_err(map_err(MAP_SYN_LISTENER_STATS))?;
    Ok(read(&listeners, &stats)
        .map_err(map_err(MAP_SYN_LISTENERS))?
        .into_iter()
        .map(|l| (l.name, l.counters.syn_limited))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(listeners: &[&str]) -> Vec<(String, u8, u32)> {
        let ls: Vec<SocketAddr> = listeners.iter().map(|s| s.parse().unwrap()).collect();
        entries(&ls, SynLimitConfig::new(1, 1))
            .into_iter()
            .map(|(k, v)| {
                let a = SocketAddr::new(addr_from(&k.addr, k.family), u16::from_be(k.port));
                (a.to_string(), k.family, v.index)
            })
            .collect()
    }

    #[test]
    fn a_v6_wildcard_takes_both_families_a_v4_one_only_v4() {
        let mut got = keys(&["[::]:80", "0.0.0.0:443"]);
        got.sort();
        assert_eq!(
            got,
            [
                ("0.0.0.0:443".to_string(), FAMILY_V4, 1),
                ("0.0.0.0:80".to_string(), FAMILY_V4, 0),
                ("[::]:80".to_string(), FAMILY_V6, 0),
            ]
        );
    }

    #[test]
    fn a_bound_address_is_matched_exactly_and_v4_mapped_is_v4() {
        let mut got = keys(&[
            "198.18.0.2:8080",
            "[2001:db8::2]:8443",
            "[::ffff:10.0.0.1]:80",
        ]);
        got.sort();
        assert_eq!(
            got,
            [
                ("10.0.0.1:80".to_string(), FAMILY_V4, 2),
                ("198.18.0.2:8080".to_string(), FAMILY_V4, 0),
                ("[2001:db8::2]:8443".to_string(), FAMILY_V6, 1),
            ]
        );
    }

    #[test]
    fn the_map_bound_is_never_exceeded() {
        let many: Vec<SocketAddr> = (0..100)
            .map(|p| SocketAddr::new("::".parse().unwrap(), 1000 + p))
            .collect();
        let e = entries(&many, SynLimitConfig::new(1, 1));
        assert!(e.len() <= SYN_LISTENERS_SIZE as usize, "{}", e.len());
        assert!(e.values().all(|v| v.index < SYN_LISTENERS_SIZE));
    }
}
