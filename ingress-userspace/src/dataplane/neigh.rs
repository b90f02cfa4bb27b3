//! Has the kernel resolve the next hops the XDP path found without a neighbour entry
//! ([`MAP_NEIGH_WANTED`]; the packet was dropped, not refused): one empty datagram to the
//! destination's discard port (RFC 863) makes the kernel route toward it and resolve the next
//! hop (ARP / neighbour discovery), so the sender's retransmission finds it a second later.
//! This is what `bpf_redirect_neigh` does for tc programs, which XDP has no equivalent of.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use ingress_common::l4::{FAMILY_V4, MAP_NEIGH_WANTED, NeighKey};

use super::sync::{SyncError, map_err};

/// The discard service (RFC 863): whatever arrives there is thrown away.
const DISCARD_PORT: u16 = 9;

/// Resolves every wanted destination once and forgets it; returns how many. An object
/// without the map (older) has nothing to resolve.
pub fn resolve_wanted(ebpf: &mut Ebpf) -> Result<usize, SyncError> {
    let Some(map) = ebpf.map_mut(MAP_NEIGH_WANTED) else {
        return Ok(0);
    };
    let mut wanted: BpfHashMap<&mut MapData, NeighKey, u64> =
        BpfHashMap::try_from(map).map_err(map_err(MAP_NEIGH_WANTED))?;
    let keys: Vec<NeighKey> = wanted.keys().filter_map(Result::ok).collect();
    for k in &keys {
        let addr = address(k);
        tracing::debug!(%addr, "resolving the next hop toward an endpoint or client");
        provoke_resolution(addr);
        // Gone already (LRU) is fine.
        let _ = wanted.remove(k);
    }
    Ok(keys.len())
}

fn address(k: &NeighKey) -> IpAddr {
    if k.family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(k.addr))
    }
}

/// Sends one empty datagram to `addr`'s discard port; errors are the kernel's answer about the
/// route (none, unreachable), which the next packet meets again, so they are only logged.
fn provoke_resolution(addr: IpAddr) {
    let any: IpAddr = match addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sent = UdpSocket::bind((any, 0)).and_then(|s| s.send_to(&[], (addr, DISCARD_PORT)));
    if let Err(e) = sent {
        tracing::debug!(%addr, error = %e, "no route to resolve");
    }
}
