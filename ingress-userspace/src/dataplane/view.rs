//! The data path's own view, read back from the pinned maps: services (frontends, affinity,
//! source ranges), their backends with state, weight, Maglev share and per-CPU counters summed.
//! This is what `xdp-ingress backends` prints; it reads maps only, never the snapshot.

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray};
use ingress_common::{
    l4::*,
    syn_limit::{MAP_SYN_LIMITS, MAP_SYN_LISTENER_STATS, MAP_SYN_LISTENERS, SynLimitConfig},
};

use super::sync::addr_from;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("opening pinned map {path} (is the daemon running with this --bpf-pin-root?)")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: MapError,
    },
    #[error(
        "no pinned maps there, and {0} xdp_ingress programs match (need exactly one attached \
         in this network namespace); pass --bpf-pin-root"
    )]
    Ambiguous(usize),
    #[error("the loaded xdp_ingress program has no map {0}")]
    NotLoaded(&'static str),
    #[error("reading map {name}")]
    Read {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// SYNs dropped by the service's per-source SYN rate limit (services only).
    pub syn_limited: u64,
}

/// A service's per-source SYN rate limit as the map holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SynLimitView {
    /// New connections per second per source (IPv4 address or IPv6 /64).
    pub per_second: u64,
    /// New connections a source may open at once.
    pub burst: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackendView {
    pub id: u32,
    pub address: SocketAddr,
    /// `active`; `terminating` (still serving: keeps its flows, new ones only when no endpoint
    /// is active); or `removed` (draining for `--l4-drain-secs`: its TCP flows finish, its UDP
    /// flows move to a live endpoint on their next datagram).
    pub state: &'static str,
    /// On another node: reached with SNAT and XDP_TX.
    pub remote: bool,
    pub weight: u32,
    /// Share of the live Maglev table (new flows), 0..=1.
    pub maglev_share: f64,
    pub counters: Counters,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ServiceView {
    /// `namespace/name:port#v4|v6`.
    pub name: String,
    pub slot: u32,
    /// `tcp/*:30080` for a NodePort, `tcp/198.18.0.10:80` for an address.
    pub frontends: Vec<String>,
    pub affinity_timeout_secs: Option<u32>,
    pub source_ranges: bool,
    /// `externalTrafficPolicy: Local`: this node's endpoints only, client address kept.
    pub external_traffic_local: bool,
    /// Why new flows get no backend, when they get none: `no endpoints` (refused) or
    /// `no local endpoint` (dropped, under `externalTrafficPolicy: Local`).
    pub no_backend: Option<&'static str>,
    /// Per-source SYN rate limit; `None`: unlimited.
    pub syn_rate_limit: Option<SynLimitView>,
    pub counters: Counters,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BackendsView {
    pub services: Vec<ServiceView>,
    /// The proxy's own listeners under the node-wide SYN limit (`--syn-rate-limit-per-source`);
    /// empty without it.
    pub proxy_listeners: Vec<super::syn_listeners::ProxyListenerView>,
    /// Packets by pass or drop reason (`ingress_common::stats` labels, e.g. `pass_no_flow`,
    /// `pass_snat_exhausted`), summed over CPUs; reasons never counted are left out.
    pub reasons: BTreeMap<String, u64>,
    /// Occupancy of the flow tables.
    pub flow_tables: FlowTablesView,
}

/// How full the flow and reverse-NAT tables are. A full table refuses new flows (dropped,
/// counted as `drop_flow_table_full`); established flows keep their entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowTablesView {
    pub flows: u32,
    pub reverse_nat: u32,
    /// Entries each table holds at most (`--l4-conntrack-size`).
    pub capacity: u32,
    /// New flows are being refused for want of room.
    pub full: bool,
}

/// Where the maps come from: pins under a directory, or the maps of the one loaded
/// `xdp_ingress` program (when the pins are not visible, e.g. from another mount namespace).
enum Source {
    Pins(std::path::PathBuf),
    Loaded(BTreeMap<String, u32>),
}

impl Source {
    fn open(&self, name: &'static str) -> Result<MapData, ViewError> {
        match self {
            Source::Pins(root) => {
                let path = root.join(name);
                MapData::from_pin(&path).map_err(|source| ViewError::Open { path, source })
            }
            Source::Loaded(ids) => {
                let id = ids.get(name).ok_or(ViewError::NotLoaded(name))?;
                MapData::from_id(*id).map_err(|source| ViewError::Read { name, source })
            }
        }
    }
}

/// Ids of the XDP programs attached to interfaces of this network namespace (`ip -j -d link`).
fn xdp_prog_ids_here() -> Vec<u32> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show"])
        .output()
    else {
        return Vec::new();
    };
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut ids = Vec::new();
    for link in links.as_array().into_iter().flatten() {
        let xdp = &link["xdp"];
        let attached = xdp["attached"].as_array().cloned().unwrap_or_default();
        for prog in std::iter::once(&xdp["prog"]).chain(attached.iter().map(|a| &a["prog"])) {
            if let Some(id) = prog["id"].as_u64().and_then(|i| u32::try_from(i).ok()) {
                ids.push(id);
            }
        }
    }
    ids
}

/// The maps of the single loaded program named `xdp_ingress`, by map name.
fn loaded_maps() -> Result<BTreeMap<String, u32>, ViewError> {
    let progs: Vec<_> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(ingress_common::PROG_XDP_INGRESS))
        .collect();
    // Several (other namespaces, tests): the one attached to an interface of this namespace.
    let progs = if progs.len() > 1 {
        let here = xdp_prog_ids_here();
        progs
            .into_iter()
            .filter(|p| here.contains(&p.id()))
            .collect()
    } else {
        progs
    };
    let [prog] = progs.as_slice() else {
        return Err(ViewError::Ambiguous(progs.len()));
    };
    let mut out = BTreeMap::new();
    for id in prog.map_ids().ok().flatten().unwrap_or_default() {
        if let Ok(info) = aya::maps::MapInfo::from_id(id)
            && let Some(name) = info.name_as_str()
        {
            out.insert(name.to_string(), id);
        }
    }
    Ok(out)
}

fn rerr(name: &'static str) -> impl Fn(MapError) -> ViewError {
    move |source| ViewError::Read { name, source }
}

fn sum(
    map: &PerCpuArray<MapData, L4Counter>,
    index: u32,
    name: &'static str,
) -> Result<Counters, ViewError> {
    let per_cpu = map.get(&index, 0).map_err(rerr(name))?;
    Ok(per_cpu.iter().fold(Counters::default(), |a, c| Counters {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
        new_flows: a.new_flows + c.new_flows,
        syn_limited: a.syn_limited + c.syn_limited,
    }))
}

/// Reads the view from maps pinned under `root`; when nothing is pinned there, from the maps of
/// the one loaded `xdp_ingress` program.
pub fn read(root: &Path) -> Result<BackendsView, ViewError> {
    let src = if root.join(MAP_SERVICES).exists() {
        Source::Pins(root.to_path_buf())
    } else {
        Source::Loaded(loaded_maps()?)
    };
    read_from(&src)
}

fn read_from(src: &Source) -> Result<BackendsView, ViewError> {
    let open = |name| src.open(name);
    let services: BpfHashMap<MapData, ServiceKey, ServiceValue> =
        BpfHashMap::try_from(Map::HashMap(open(MAP_SERVICES)?)).map_err(rerr(MAP_SERVICES))?;
    let backends: Array<MapData, Backend> =
        Array::try_from(Map::Array(open(MAP_BACKENDS)?)).map_err(rerr(MAP_BACKENDS))?;
    let maglev: Array<MapData, u32> =
        Array::try_from(Map::Array(open(MAP_MAGLEV)?)).map_err(rerr(MAP_MAGLEV))?;
    let names: Array<MapData, ServiceName> =
        Array::try_from(Map::Array(open(MAP_SERVICE_NAMES)?)).map_err(rerr(MAP_SERVICE_NAMES))?;
    let config: Array<MapData, L4Config> =
        Array::try_from(Map::Array(open(MAP_CONFIG)?)).map_err(rerr(MAP_CONFIG))?;
    let svc_stats: PerCpuArray<MapData, L4Counter> =
        PerCpuArray::try_from(Map::PerCpuArray(open(MAP_SERVICE_STATS)?))
            .map_err(rerr(MAP_SERVICE_STATS))?;
    let be_stats: PerCpuArray<MapData, L4Counter> =
        PerCpuArray::try_from(Map::PerCpuArray(open(MAP_BACKEND_STATS)?))
            .map_err(rerr(MAP_BACKEND_STATS))?;
    // Absent in maps pinned by a daemon older than the SYN limits: shown as unlimited.
    let syn_limits: Option<Array<MapData, SynLimitConfig>> = open(MAP_SYN_LIMITS)
        .ok()
        .and_then(|m| Array::try_from(Map::Array(m)).ok());
    let m = config.get(&0, 0).map_err(rerr(MAP_CONFIG))?.maglev_size;

    // Units by slot, with their frontends.
    let mut units: BTreeMap<u32, (ServiceValue, Vec<String>)> = BTreeMap::new();
    for item in services.iter() {
        let (k, v) = item.map_err(rerr(MAP_SERVICES))?;
        let proto = if k.proto == PROTO_UDP { "udp" } else { "tcp" };
        let port = u16::from_be(k.port);
        let fe = if k.addr == [0; 16] {
            format!("{proto}/*:{port}")
        } else {
            format!(
                "{proto}/{}",
                SocketAddr::new(addr_from(&k.addr, k.family), port)
            )
        };
        let e = units.entry(v.slot).or_insert((v, Vec::new()));
        e.1.push(fe);
        e.1.sort();
    }
    let mut by_slot: BTreeMap<u32, Vec<(u32, Backend)>> = BTreeMap::new();
    for id in 0..backends.len() {
        let b = backends.get(&id, 0).map_err(rerr(MAP_BACKENDS))?;
        if b.flags & BE_F_PRESENT != 0 {
            by_slot.entry(b.svc_slot).or_default().push((id, b));
        }
    }
    let mut out = BackendsView::default();
    for (slot, (value, frontends)) in units {
        // Share of the live Maglev half per backend id.
        let mut slots: BTreeMap<u32, u64> = BTreeMap::new();
        if value.backend_count > 0 && m > 0 {
            let base = (slot * 2 + (value.generation & 1)) * m;
            for i in 0..m {
                let id = maglev.get(&(base + i), 0).map_err(rerr(MAP_MAGLEV))?;
                *slots.entry(id).or_default() += 1;
            }
        }
        let mut bes = Vec::new();
        for (id, b) in by_slot.remove(&slot).unwrap_or_default() {
            bes.push(BackendView {
                id,
                address: SocketAddr::new(addr_from(&b.addr, b.family), u16::from_be(b.port)),
                state: if b.flags & BE_F_REMOVED != 0 {
                    "removed"
                } else if b.flags & BE_F_TERMINATING != 0 {
                    "terminating"
                } else {
                    "active"
                },
                remote: b.flags & BE_F_REMOTE != 0,
                weight: b.weight,
                maglev_share: if m > 0 {
                    slots.get(&id).copied().unwrap_or(0) as f64 / f64::from(m)
                } else {
                    0.0
                },
                counters: sum(&be_stats, id, MAP_BACKEND_STATS)?,
            });
        }
        bes.sort_by_key(|b| b.address);
        let name = names
            .get(&slot, 0)
            .map(|n| n.as_str().to_string())
            .unwrap_or_default();
        out.services.push(ServiceView {
            name: if name.is_empty() {
                format!("slot-{slot}")
            } else {
                name
            },
            slot,
            frontends,
            affinity_timeout_secs: (value.flags & SVC_F_AFFINITY != 0)
                .then_some(value.affinity_timeout_s),
            source_ranges: value.flags & SVC_F_SOURCE_RANGES != 0,
            external_traffic_local: value.flags & SVC_F_LOCAL_ONLY != 0,
            no_backend: (value.backend_count == 0).then_some(
                if value.flags & SVC_F_LOCAL_ONLY != 0 {
                    "no local endpoint"
                } else {
                    "no endpoints"
                },
            ),
            syn_rate_limit: syn_limits
                .as_ref()
                .and_then(|l| l.get(&slot, 0).ok())
                .and_then(|c| super::syn_limit::describe(&c))
                .map(|(per_second, burst)| SynLimitView { per_second, burst }),
            counters: sum(&svc_stats, slot, MAP_SERVICE_STATS)?,
            backends: bes,
        });
    }
    out.services.sort_by(|a, b| a.name.cmp(&b.name));
    out.proxy_listeners = proxy_listeners(src)?;
    out.reasons = reasons(src)?;
    out.flow_tables = flow_tables(src)?;
    Ok(out)
}

/// The proxy's limited listeners; none in maps pinned by a daemon older than that limit.
fn proxy_listeners(
    src: &Source,
) -> Result<Vec<super::syn_listeners::ProxyListenerView>, ViewError> {
    let (Ok(l), Ok(s)) = (
        src.open(MAP_SYN_LISTENERS),
        src.open(MAP_SYN_LISTENER_STATS),
    ) else {
        return Ok(Vec::new());
    };
    let l = BpfHashMap::try_from(Map::HashMap(l)).map_err(rerr(MAP_SYN_LISTENERS))?;
    let s = PerCpuArray::try_from(Map::PerCpuArray(s)).map_err(rerr(MAP_SYN_LISTENER_STATS))?;
    super::syn_listeners::read(&l, &s).map_err(rerr(MAP_SYN_LISTENERS))
}

/// Counts the entries of the flow and reverse-NAT tables.
fn flow_tables(src: &Source) -> Result<FlowTablesView, ViewError> {
    let ct_data = src.open(MAP_CONNTRACK)?;
    let capacity = ct_data
        .info()
        .map(|i| i.max_entries())
        .map_err(rerr(MAP_CONNTRACK))?;
    let ct: BpfHashMap<MapData, FlowKey, CtEntry> =
        BpfHashMap::try_from(Map::HashMap(ct_data)).map_err(rerr(MAP_CONNTRACK))?;
    let rev: BpfHashMap<MapData, FlowKey, RevNatEntry> =
        BpfHashMap::try_from(Map::HashMap(src.open(MAP_REVNAT)?)).map_err(rerr(MAP_REVNAT))?;
    let t = super::flows::FlowTables {
        flows: ct.keys().count() as u32,
        reverse: rev.keys().count() as u32,
        capacity,
    };
    Ok(FlowTablesView {
        flows: t.flows,
        reverse_nat: t.reverse,
        capacity: t.capacity,
        full: t.full(),
    })
}

/// The non-zero pass and drop counters of the global stats map.
fn reasons(src: &Source) -> Result<BTreeMap<String, u64>, ViewError> {
    use ingress_common::stats::{Counter, MAP_STATS, Stat, StatKind};
    let stats: PerCpuArray<MapData, Counter> =
        PerCpuArray::try_from(Map::PerCpuArray(src.open(MAP_STATS)?)).map_err(rerr(MAP_STATS))?;
    let view = super::stats::read(&stats).map_err(rerr(MAP_STATS))?;
    Ok(Stat::ALL
        .iter()
        .filter(|s| matches!(s.kind(), StatKind::Pass | StatKind::Drop))
        .map(|s| (s.label().to_string(), view.get(*s).packets))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// Human-readable table, one block per service.
pub fn render_text(view: &BackendsView) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if view.services.is_empty() {
        s.push_str("no L4 services in the data path\n");
    }
    for svc in &view.services {
        let _ = writeln!(
            s,
            "{}  [{}]  packets={} bytes={} new_flows={}{}{}{}{}{}",
            svc.name,
            svc.frontends.join(", "),
            svc.counters.packets,
            svc.counters.bytes,
            svc.counters.new_flows,
            svc.syn_rate_limit
                .map(|l| format!(
                    "  syn-rate-limit={}/s burst={} syn_limited={}",
                    l.per_second, l.burst, svc.counters.syn_limited
                ))
                .unwrap_or_default(),
            svc.affinity_timeout_secs
                .map(|t| format!("  affinity=ClientIP/{t}s"))
                .unwrap_or_default(),
            if svc.source_ranges {
                "  source-ranges"
            } else {
                ""
            },
            if svc.external_traffic_local {
                "  traffic-policy=Local"
            } else {
                ""
            },
            svc.no_backend
                .map(|r| format!(
                    "  NEW FLOWS {}: {r}",
                    if r == "no endpoints" {
                        "REFUSED"
                    } else {
                        "DROPPED"
                    }
                ))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            s,
            "  {:<44} {:<12} {:>6} {:>7} {:>10} {:>12} {:>9}",
            "BACKEND", "STATE", "WEIGHT", "MAGLEV", "PACKETS", "BYTES", "NEW_FLOWS"
        );
        for b in &svc.backends {
            let state = if b.remote {
                format!("{}/remote", b.state)
            } else {
                b.state.to_string()
            };
            let _ = writeln!(
                s,
                "  {:<44} {:<12} {:>6} {:>6.1}% {:>10} {:>12} {:>9}",
                b.address.to_string(),
                state,
                b.weight,
                b.maglev_share * 100.0,
                b.counters.packets,
                b.counters.bytes,
                b.counters.new_flows
            );
        }
    }
    for l in &view.proxy_listeners {
        let _ = writeln!(
            s,
            "{}  [{}]  syns_passed={}{}",
            l.name,
            l.addresses.join(", "),
            l.counters.new_flows,
            l.syn_rate_limit
                .map(|r| format!(
                    "  syn-rate-limit={}/s burst={} syn_limited={}",
                    r.per_second, r.burst, l.counters.syn_limited
                ))
                .unwrap_or_default(),
        );
    }
    let t = &view.flow_tables;
    let _ = writeln!(
        s,
        "flow tables: flows {}/{}, reverse NAT {}/{}{}",
        t.flows,
        t.capacity,
        t.reverse_nat,
        t.capacity,
        if t.full {
            "  FULL: new flows are refused (drop_flow_table_full); raise --l4-conntrack-size"
        } else {
            ""
        }
    );
    if !view.reasons.is_empty() {
        let reasons: Vec<String> = view
            .reasons
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "passed/dropped: {}", reasons.join(" "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_view_names_why_packets_were_passed_or_dropped() {
        let view = BackendsView {
            reasons: [("pass_no_flow".to_string(), 300)].into_iter().collect(),
            ..BackendsView::default()
        };
        let text = render_text(&view);
        assert!(
            text.contains("passed/dropped: pass_no_flow=300\n"),
            "{text}"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["reasons"]["pass_no_flow"], 300);
    }

    #[test]
    fn the_text_view_shows_each_limited_proxy_listener_with_its_drops() {
        let view = BackendsView {
            proxy_listeners: vec![super::super::syn_listeners::ProxyListenerView {
                name: "proxy-listener:443".into(),
                addresses: vec!["0.0.0.0:443".into(), "[::]:443".into()],
                syn_rate_limit: Some(SynLimitView {
                    per_second: 10,
                    burst: 50,
                }),
                counters: Counters {
                    packets: 7,
                    bytes: 420,
                    new_flows: 7,
                    syn_limited: 3,
                },
            }],
            ..BackendsView::default()
        };
        let text = render_text(&view);
        assert!(
            text.contains(
                "proxy-listener:443  [0.0.0.0:443, [::]:443]  syns_passed=7  \
                 syn-rate-limit=10/s burst=50 syn_limited=3\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["proxy_listeners"][0]["counters"]["syn_limited"], 3);
    }

    #[test]
    fn the_text_view_says_when_the_flow_table_is_full() {
        let view = BackendsView {
            flow_tables: FlowTablesView {
                flows: 32,
                reverse_nat: 32,
                capacity: 32,
                full: true,
            },
            ..BackendsView::default()
        };
        let text = render_text(&view);
        assert!(
            text.contains(
                "flow tables: flows 32/32, reverse NAT 32/32  FULL: new flows are refused"
            ),
            "{text}"
        );
    }
}
