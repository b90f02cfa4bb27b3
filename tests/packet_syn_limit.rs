//! The per-source SYN rate limit of the XDP L4 path through BPF_PROG_TEST_RUN: a source's
//! burst of new connections is admitted, the rest dropped and counted per service; other
//! sources, other services, non-SYN segments and SYN retransmissions of admitted flows are
//! never touched; the source gets room again as time passes; IPv6 sources count by /64; more
//! sources than the LRU holds never fail. The proxy's own listeners (`--syn-rate-limit-per-source`
//! on the node's HTTP/HTTPS sockets) the same way: only SYNs to a listener on one of the node's
//! addresses, never another port, another host's address or a non-SYN segment.

mod l4common;

use std::{net::SocketAddr, time::Duration};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use ingress_common::{
    PROG_XDP_INGRESS,
    l4::{
        FAMILY_V4, FAMILY_V6, L4Counter, MAP_SERVICE_STATS, MAP_SERVICES, PROTO_TCP, ServiceKey,
        ServiceValue,
    },
    stats::{Counter, MAP_STATS, Stat},
    syn_limit::{MAP_SYN_SOURCES, SynSourceKey, SynSourceState},
};
use l4common::{TCP_ACK, TCP_PSH, TCP_SYN, active, service, tcp_segment, udp_frame};
use testbed::xdp_run::{XDP_DROP, XDP_PASS, XdpTestRun};
use xdp_ingress::{
    dataplane::{L4Options, L4Sync, stats as dstats, syn_listeners},
    model::{L4Protocol, L4Service, Snapshot, SynRateLimit},
};

const MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 2]];
const NODE: &str = "198.18.0.2";
const NODE6: &str = "2001:db8::2";
/// Port of the limited service; [`OPEN`] has no limit.
const LIMITED: u16 = 30080;
const OPEN: u16 = 30081;

fn pods() -> Vec<SocketAddr> {
    ["198.19.0.2:8080", "198.19.1.2:8080", "[2001:db8:1::2]:8080"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

fn limited(name: &str, proto: L4Protocol, port: u16, per_second: u32, burst: u32) -> L4Service {
    let mut s = service(name, proto, port, active(&pods()));
    s.syn_rate_limit = Some(SynRateLimit { per_second, burst });
    s
}

/// `limited` (30080, `per_second`/`burst`) and `open` (30081, no limit), TCP.
fn snapshot(per_second: u32, burst: u32) -> Snapshot {
    Snapshot {
        version: 1,
        l4: vec![
            limited("limited", L4Protocol::Tcp, LIMITED, per_second, burst),
            service("open", L4Protocol::Tcp, OPEN, active(&pods())),
        ],
        ..Default::default()
    }
}

fn bed(snap: &Snapshot) -> XdpTestRun {
    bed_sized(snap, None)
}

/// The program with `snap` applied; the source LRU `sources` entries big when given.
fn bed_sized(snap: &Snapshot, sources: Option<u32>) -> XdpTestRun {
    let mut loader = aya::EbpfLoader::new();
    if let Some(n) = sources {
        loader.map_max_entries(MAP_SYN_SOURCES, n);
    }
    let ebpf = loader
        .load_file(testbed::bpf_object_path())
        .expect("load object");
    let mut run = XdpTestRun::from_ebpf(ebpf, PROG_XDP_INGRESS).expect("load program");
    L4Sync::new(L4Options::default())
        .apply(&mut run.ebpf, snap)
        .expect("apply");
    run
}

fn seg(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Vec<u8> {
    let src = SocketAddr::new(src.parse().unwrap(), sport);
    let dst = SocketAddr::new(dst.parse().unwrap(), dport);
    tcp_segment(
        MACS,
        src,
        dst,
        1000,
        flags,
        if flags & TCP_PSH != 0 { b"GET /" } else { b"" },
    )
}

fn syn(src: &str, sport: u16, dport: u16) -> Vec<u8> {
    let dst = if src.contains(':') { NODE6 } else { NODE };
    seg(src, sport, dst, dport, TCP_SYN)
}

fn action(run: &mut XdpTestRun, f: &[u8]) -> u32 {
    run.run(f).expect("test run").action
}

fn stat(run: &XdpTestRun, s: Stat) -> u64 {
    let a: PerCpuArray<&MapData, Counter> =
        PerCpuArray::try_from(run.ebpf.map(MAP_STATS).unwrap()).unwrap();
    dstats::read(&a).unwrap().get(s).packets
}

/// The per-service counters of the service on NodePort `port` (`family`), summed over CPUs.
fn service_counter(run: &XdpTestRun, port: u16, family: u8) -> L4Counter {
    let services: BpfHashMap<&MapData, ServiceKey, ServiceValue> =
        BpfHashMap::try_from(run.ebpf.map(MAP_SERVICES).unwrap()).unwrap();
    let key = ServiceKey {
        addr: [0; 16],
        port: port.to_be(),
        proto: PROTO_TCP,
        family,
    };
    let slot = services.get(&key, 0).expect("service entry").slot;
    let stats: PerCpuArray<&MapData, L4Counter> =
        PerCpuArray::try_from(run.ebpf.map(MAP_SERVICE_STATS).unwrap()).unwrap();
    stats
        .get(&slot, 0)
        .unwrap()
        .iter()
        .fold(L4Counter::default(), |a, c| L4Counter {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
            new_flows: a.new_flows + c.new_flows,
            syn_limited: a.syn_limited + c.syn_limited,
        })
}

#[test]
fn a_sources_burst_is_admitted_then_its_syns_are_dropped_and_counted() {
    if !testbed::require_root() {
        return;
    }
    // 1 per second, bursts of 3: within this test no second passes between the 4th SYN and
    // the checks, so nothing refills.
    let mut run = bed(&snapshot(1, 3));
    let a = "198.18.0.1";
    for port in 40000..40003 {
        assert_eq!(
            action(&mut run, &syn(a, port, LIMITED)),
            XDP_PASS,
            "SYN from :{port} of the burst"
        );
    }
    for port in 40003..40005 {
        assert_eq!(
            action(&mut run, &syn(a, port, LIMITED)),
            XDP_DROP,
            "SYN from :{port} beyond the burst"
        );
    }
    assert_eq!(stat(&run, Stat::DropSynRateLimit), 2);
    let c = service_counter(&run, LIMITED, FAMILY_V4);
    assert_eq!((c.new_flows, c.syn_limited), (3, 2));

    // Another source has its own burst.
    assert_eq!(
        action(&mut run, &syn("198.18.0.9", 40000, LIMITED)),
        XDP_PASS
    );
    // The same source at a service without a limit.
    for port in 41000..41010 {
        assert_eq!(
            action(&mut run, &syn(a, port, OPEN)),
            XDP_PASS,
            "unlimited service"
        );
    }
    assert_eq!(service_counter(&run, OPEN, FAMILY_V4).syn_limited, 0);

    // Nothing but a SYN that opens a flow is ever limited: data on an admitted flow, a stray
    // ACK of no flow (the kernel's to answer), and the retransmitted SYN of an admitted flow
    // (its SYN-ACK lost) all go through while the source is over its limit.
    assert_eq!(
        action(&mut run, &seg(a, 40000, NODE, LIMITED, TCP_ACK | TCP_PSH)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &seg(a, 40001, NODE, LIMITED, TCP_ACK)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &seg(a, 50000, NODE, LIMITED, TCP_ACK)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &syn(a, 40002, LIMITED)),
        XDP_PASS,
        "SYN retransmission"
    );
    assert_eq!(
        action(&mut run, &syn(a, 40005, LIMITED)),
        XDP_DROP,
        "still over the limit"
    );
    let c = service_counter(&run, LIMITED, FAMILY_V4);
    assert_eq!(c.syn_limited, 3);
    assert_eq!(stat(&run, Stat::DropSynRateLimit), 3);
}

#[test]
fn a_limited_source_is_admitted_again_once_the_rate_allows() {
    if !testbed::require_root() {
        return;
    }
    // 20 per second: one SYN every 50 ms after a burst of 2.
    let mut run = bed(&snapshot(20, 2));
    let a = "198.18.0.1";
    assert_eq!(action(&mut run, &syn(a, 40000, LIMITED)), XDP_PASS);
    assert_eq!(action(&mut run, &syn(a, 40001, LIMITED)), XDP_PASS);
    assert_eq!(action(&mut run, &syn(a, 40002, LIMITED)), XDP_DROP);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(
        action(&mut run, &syn(a, 40003, LIMITED)),
        XDP_PASS,
        "50 ms later: one more"
    );
    assert_eq!(
        action(&mut run, &syn(a, 40004, LIMITED)),
        XDP_DROP,
        "and only one"
    );
    // Idle for the whole burst's time: the full burst again, not more.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(action(&mut run, &syn(a, 40005, LIMITED)), XDP_PASS);
    assert_eq!(action(&mut run, &syn(a, 40006, LIMITED)), XDP_PASS);
    assert_eq!(action(&mut run, &syn(a, 40007, LIMITED)), XDP_DROP);
}

#[test]
fn ipv6_sources_count_by_their_64() {
    if !testbed::require_root() {
        return;
    }
    let mut run = bed(&snapshot(1, 2));
    // Two addresses of one /64 share a burst of 2.
    assert_eq!(
        action(&mut run, &syn("2001:db8::1", 40000, LIMITED)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &syn("2001:db8::ffff:1", 40000, LIMITED)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &syn("2001:db8::2", 40000, LIMITED)),
        XDP_DROP
    );
    // The next /64 is another source.
    assert_eq!(
        action(&mut run, &syn("2001:db8:0:1::1", 40000, LIMITED)),
        XDP_PASS
    );
    let c = service_counter(&run, LIMITED, FAMILY_V6);
    assert_eq!((c.new_flows, c.syn_limited), (3, 1));
    let lru: BpfHashMap<&MapData, SynSourceKey, SynSourceState> =
        BpfHashMap::try_from(run.ebpf.map(MAP_SYN_SOURCES).unwrap()).unwrap();
    let mut keys: Vec<[u8; 16]> = lru.keys().map(|k| k.unwrap().addr).collect();
    keys.sort();
    let p = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    assert_eq!(
        keys,
        [p("2001:db8::"), p("2001:db8:0:1::")],
        "sources are /64 prefixes"
    );
}

#[test]
fn udp_datagrams_are_never_limited() {
    if !testbed::require_root() {
        return;
    }
    let snap = Snapshot {
        version: 1,
        l4: vec![limited("dns", L4Protocol::Udp, 30053, 1, 1)],
        ..Default::default()
    };
    let mut run = bed(&snap);
    for port in 40000..40005 {
        let f = udp_frame(
            MACS,
            SocketAddr::new("198.18.0.1".parse().unwrap(), port),
            SocketAddr::new(NODE.parse().unwrap(), 30053),
            b"q",
        );
        assert_eq!(action(&mut run, &f), XDP_PASS, "datagram from :{port}");
    }
    assert_eq!(stat(&run, Stat::DropSynRateLimit), 0);
}

#[test]
fn more_sources_than_the_lru_holds_never_fail_and_recent_ones_stay_limited() {
    if !testbed::require_root() {
        return;
    }
    const SIZE: u32 = 16;
    let mut run = bed_sized(&snapshot(1, 1), Some(SIZE));
    // Four times as many sources as entries, one SYN each: every one is admitted (a forgotten
    // source only gets a fresh burst).
    for i in 0..(4 * SIZE) {
        let src = format!("198.18.{}.{}", 1 + i / 200, 1 + i % 200);
        assert_eq!(
            action(&mut run, &syn(&src, 40000, LIMITED)),
            XDP_PASS,
            "{src}"
        );
        // The source just seen is still tracked: its next SYN is over its limit.
        assert_eq!(
            action(&mut run, &syn(&src, 40001, LIMITED)),
            XDP_DROP,
            "{src} again"
        );
    }
    let lru: BpfHashMap<&MapData, SynSourceKey, SynSourceState> =
        BpfHashMap::try_from(run.ebpf.map(MAP_SYN_SOURCES).unwrap()).unwrap();
    let n = lru.keys().count() as u32;
    assert!(n <= SIZE, "{n} entries in an LRU of {SIZE}");
    let c = service_counter(&run, LIMITED, FAMILY_V4);
    assert_eq!(
        (c.new_flows, c.syn_limited),
        (u64::from(4 * SIZE), u64::from(4 * SIZE))
    );
}

/// `snapshot(1, 3)` with the node's addresses known (a wildcard listener answers on those
/// only) and the proxy listening on `listeners` under `limit`.
fn listener_bed(listeners: &[&str], limit: Option<SynRateLimit>) -> XdpTestRun {
    let ebpf = aya::EbpfLoader::new()
        .load_file(testbed::bpf_object_path())
        .expect("load object");
    let mut run = XdpTestRun::from_ebpf(ebpf, PROG_XDP_INGRESS).expect("load program");
    L4Sync::new(L4Options {
        local_addrs: vec![NODE.parse().unwrap(), NODE6.parse().unwrap()],
        ..L4Options::default()
    })
    .apply(&mut run.ebpf, &snapshot(1, 3))
    .expect("apply");
    let listeners: Vec<SocketAddr> = listeners.iter().map(|l| l.parse().unwrap()).collect();
    syn_listeners::write(&mut run.ebpf, &listeners, limit).expect("listeners");
    run
}

fn listeners_view(run: &XdpTestRun) -> Vec<syn_listeners::ProxyListenerView> {
    use ingress_common::syn_limit::{MAP_SYN_LISTENER_STATS, MAP_SYN_LISTENERS};
    let l = BpfHashMap::try_from(run.ebpf.map(MAP_SYN_LISTENERS).unwrap()).unwrap();
    let s = PerCpuArray::try_from(run.ebpf.map(MAP_SYN_LISTENER_STATS).unwrap()).unwrap();
    syn_listeners::read(&l, &s).unwrap()
}

/// The ports whose bit is set in the listener port bitmap.
fn listener_ports(run: &XdpTestRun) -> Vec<u16> {
    use ingress_common::syn_limit::{MAP_SYN_LISTEN_PORTS, SYN_LISTEN_PORT_WORDS};
    let a: aya::maps::Array<&MapData, u32> =
        aya::maps::Array::try_from(run.ebpf.map(MAP_SYN_LISTEN_PORTS).unwrap()).unwrap();
    (0..SYN_LISTEN_PORT_WORDS)
        .flat_map(|i| {
            let w = a.get(&i, 0).unwrap();
            (0..32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| (i * 32 + b) as u16)
        })
        .collect()
}

const PROXY_LIMIT: Option<SynRateLimit> = Some(SynRateLimit {
    per_second: 1,
    burst: 2,
});

#[test]
fn a_syn_burst_at_a_proxy_listener_on_a_node_address_passes_then_is_dropped_and_counted() {
    if !testbed::require_root() {
        return;
    }
    // HTTP on the wildcard (both families), HTTPS bound to the IPv4 node address only.
    let mut run = listener_bed(&["[::]:80", "198.18.0.2:443"], PROXY_LIMIT);
    assert_eq!(listener_ports(&run), [80, 443]);
    let a = "198.18.0.1";
    let to = |src: &str, sport: u16, dst: &str, dport: u16| seg(src, sport, dst, dport, TCP_SYN);
    for (i, port) in (40000..40004).enumerate() {
        let want = if i < 2 { XDP_PASS } else { XDP_DROP };
        assert_eq!(
            action(&mut run, &to(a, port, NODE, 80)),
            want,
            "SYN {i} to :80"
        );
    }
    assert_eq!(stat(&run, Stat::DropSynRateLimit), 2);
    // IPv6 clients of the same wildcard listener, by /64.
    let b6 = "2001:db8:5::1";
    for (i, port) in (40000..40003).enumerate() {
        let want = if i < 2 { XDP_PASS } else { XDP_DROP };
        assert_eq!(
            action(&mut run, &to(b6, port, NODE6, 80)),
            want,
            "v6 SYN {i} to :80"
        );
    }
    // The HTTPS listener has its own bucket for the same source; bound to the IPv4 address,
    // so the IPv6 address's :443 is no listener of the proxy.
    for (i, port) in (41000..41003).enumerate() {
        let want = if i < 2 { XDP_PASS } else { XDP_DROP };
        assert_eq!(
            action(&mut run, &to(a, port, NODE, 443)),
            want,
            "SYN {i} to :443"
        );
    }
    for port in 41000..41010 {
        assert_eq!(action(&mut run, &to(b6, port, NODE6, 443)), XDP_PASS);
    }

    // Never limited while the source is over its limit at :80: another port of the node, a
    // listener port of an address that is not the node's (routed through it), any segment but
    // a SYN without ACK (data, ACK, SYN-ACK, RST, FIN), and a service port (its own limit).
    for port in 42000..42010 {
        assert_eq!(
            action(&mut run, &to(a, port, NODE, 8080)),
            XDP_PASS,
            "not a listener"
        );
        assert_eq!(
            action(&mut run, &to(a, port, NODE, 22)),
            XDP_PASS,
            "not a listener"
        );
        assert_eq!(
            action(&mut run, &to(a, port, "198.18.7.7", 80)),
            XDP_PASS,
            "not the node's address"
        );
    }
    for flags in [
        TCP_ACK,
        TCP_ACK | TCP_PSH,
        TCP_SYN | TCP_ACK,
        0x04,
        0x01 | TCP_ACK,
        TCP_SYN | 0x04,
    ] {
        for port in 43000..43005 {
            assert_eq!(
                action(&mut run, &seg(a, port, NODE, 80, flags)),
                XDP_PASS,
                "flags {flags:#x}"
            );
        }
    }
    for port in 44000..44003 {
        assert_eq!(
            action(&mut run, &syn(a, port, LIMITED)),
            XDP_PASS,
            "the service's burst of 3 is its own"
        );
    }
    assert_eq!(stat(&run, Stat::DropSynRateLimit), 4);

    let view = listeners_view(&run);
    let got: Vec<(&str, Vec<String>, u64, u64)> = view
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.addresses.clone(),
                l.counters.new_flows,
                l.counters.syn_limited,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "proxy-listener:443",
                vec!["198.18.0.2:443".to_string()],
                2,
                1
            ),
            (
                "proxy-listener:80",
                vec!["0.0.0.0:80".to_string(), "[::]:80".to_string()],
                4,
                3
            ),
        ]
    );
    assert!(view.iter().all(|l| {
        l.syn_rate_limit
            .is_some_and(|r| (r.per_second, r.burst) == (1, 2))
    }));
}

#[test]
fn without_the_node_wide_limit_no_listener_syn_is_limited_and_a_lifted_limit_is_gone() {
    if !testbed::require_root() {
        return;
    }
    let mut run = listener_bed(&["[::]:80"], PROXY_LIMIT);
    let a = "198.18.0.1";
    assert_eq!(
        action(&mut run, &seg(a, 40000, NODE, 80, TCP_SYN)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &seg(a, 40001, NODE, 80, TCP_SYN)),
        XDP_PASS
    );
    assert_eq!(
        action(&mut run, &seg(a, 40002, NODE, 80, TCP_SYN)),
        XDP_DROP
    );
    // A restart without the flag lifts what the pinned map held.
    syn_listeners::write(&mut run.ebpf, &["[::]:80".parse().unwrap()], None).expect("lift");
    assert!(listeners_view(&run).is_empty());
    assert_eq!(listener_ports(&run), [0u16; 0]);
    for port in 40003..40020 {
        assert_eq!(
            action(&mut run, &seg(a, port, NODE, 80, TCP_SYN)),
            XDP_PASS,
            "SYN from :{port}"
        );
    }
    let mut fresh = listener_bed(&["[::]:80", "[::]:443"], None);
    for port in 40000..40020 {
        assert_eq!(
            action(&mut fresh, &seg(a, port, NODE, 80, TCP_SYN)),
            XDP_PASS
        );
        assert_eq!(
            action(&mut fresh, &seg("2001:db8::1", port, NODE6, 443, TCP_SYN)),
            XDP_PASS
        );
    }
    assert_eq!(stat(&fresh, Stat::DropSynRateLimit), 0);
}
