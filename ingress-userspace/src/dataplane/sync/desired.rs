//! What the snapshot asks of the L4 maps: one [`Unit`] per (service, address family). The one
//! place the sync reads the model.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use ingress_common::l4::*;

use super::{
    L4Options, addr_bytes,
    held::{Range, ServiceKeyOrd},
    secs_u32,
};
use crate::model::{Endpoint, EndpointState, Frontend, L4Protocol, L4Service, Snapshot};

/// What one unit (service × family) should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub keys: BTreeSet<ServiceKeyOrd>,
    /// `SVC_F_*`.
    pub flags: u32,
    pub affinity_timeout_s: u32,
    /// Endpoints in snapshot order, as backends (`svc_slot` filled in by the planner).
    pub backends: Vec<(SocketAddr, Backend)>,
    pub ranges: BTreeSet<Range>,
    /// The ingress's own Service: new flows prefer this node's proxy.
    pub local_first: bool,
    /// Per-source SYN rate limit of the unit's slot (`dataplane::syn_limit`).
    pub syn_limit: ingress_common::syn_limit::SynLimitConfig,
    /// [`L4Service::reject_weight`] in proportion to this family's part of the endpoints'
    /// weight: Maglev entries refusing new flows.
    pub reject_weight: u32,
}

/// The units of `snapshot` by id (`service-id#v4` / `#v6`).
pub fn units(snapshot: &Snapshot, opts: &L4Options) -> BTreeMap<String, Unit> {
    let mut out = BTreeMap::new();
    for svc in &snapshot.l4 {
        for fam in [FAMILY_V4, FAMILY_V6] {
            if let Some(d) = unit(svc, fam, opts) {
                let suffix = if fam == FAMILY_V4 { "v4" } else { "v6" };
                out.insert(format!("{}#{suffix}", svc.id), d);
            }
        }
    }
    out
}

fn unit(svc: &L4Service, fam: u8, opts: &L4Options) -> Option<Unit> {
    let proto = match svc.protocol {
        L4Protocol::Tcp => PROTO_TCP,
        L4Protocol::Udp => PROTO_UDP,
    };
    let mut keys = BTreeSet::new();
    for f in &svc.frontends {
        match f {
            Frontend::NodePort(p) => {
                keys.insert(ServiceKeyOrd([0; 16], p.to_be(), proto, fam));
            }
            Frontend::Address(sa) => {
                let (a, f) = addr_bytes(sa.ip());
                if f == fam {
                    keys.insert(ServiceKeyOrd(a, sa.port().to_be(), proto, fam));
                }
            }
        }
    }
    let in_family = svc
        .endpoints
        .iter()
        .filter(|e| addr_bytes(e.addr.ip()).1 == fam)
        .count();
    let backends: Vec<(SocketAddr, Backend)> = svc
        .endpoints
        .iter()
        .filter(|e| addr_bytes(e.addr.ip()).1 == fam)
        .filter(|e| !svc.external_traffic_local || !is_remote(opts, e))
        .map(|e| {
            let (addr, family) = addr_bytes(e.addr.ip());
            let mut flags = BE_F_PRESENT;
            if e.state == EndpointState::Terminating {
                flags |= BE_F_TERMINATING;
            }
            if is_remote(opts, e) {
                flags |= BE_F_REMOTE;
            }
            let be = Backend {
                addr,
                port: e.addr.port().to_be(),
                family,
                flags,
                svc_slot: 0,
                weight: e.weight,
                _pad: 0,
            };
            (e.addr.socket(), be)
        })
        .collect();
    // Each family's table refuses the same share as the whole: the refused weight scales with
    // the part of the endpoints' weight this family holds (a dual-stack backendRef splits its
    // weight over both families' endpoints).
    let weight_of = |f: &dyn Fn(&&Endpoint) -> bool| -> u128 {
        svc.endpoints
            .iter()
            .filter(f)
            .map(|e| u128::from(e.weight))
            .sum()
    };
    let all = weight_of(&|_| true);
    let here = weight_of(&|e| addr_bytes(e.addr.ip()).1 == fam);
    let reject_weight = (u128::from(svc.reject_weight) * here)
        .checked_div(all)
        .map_or(0, |w| u32::try_from(w).unwrap_or(u32::MAX));
    // A family with neither frontends nor endpoints is not served.
    if keys.is_empty() || (in_family == 0 && !svc.endpoints.is_empty()) {
        return None;
    }
    let mut flags = 0;
    if svc.external_traffic_local {
        flags |= SVC_F_LOCAL_ONLY;
    }
    let mut affinity_timeout_s = 0;
    if let Some(t) = svc.client_ip_affinity {
        flags |= SVC_F_AFFINITY;
        affinity_timeout_s = secs_u32(t);
    }
    let ranges: BTreeSet<Range> = svc
        .source_ranges
        .iter()
        .map(|p| {
            let (a, f) = addr_bytes(p.addr);
            (f, a, p.len)
        })
        .collect();
    if !svc.source_ranges.is_empty() {
        flags |= SVC_F_SOURCE_RANGES;
    }
    Some(Unit {
        local_first: svc.local_proxy,
        reject_weight,
        syn_limit: crate::dataplane::syn_limit::config(svc.syn_rate_limit),
        keys,
        flags,
        affinity_timeout_s,
        backends,
        ranges: ranges.into_iter().filter(|r| r.0 == fam).collect(),
    })
}

/// True for an endpoint on another node than this daemon's (`--node-name`); unknown either
/// way counts as local.
fn is_remote(opts: &L4Options, e: &Endpoint) -> bool {
    matches!((&opts.node_name, &e.node_name), (Some(mine), Some(theirs)) if mine.as_str() != &**theirs)
}
