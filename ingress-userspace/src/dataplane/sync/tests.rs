//! The planner and the executor without root: plans checked write by write, and every pass run
//! against the fake with a failure injected at each write index in turn.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{fake::FakeMaps, held::ServiceKeyOrd, *};
use crate::model::{
    Endpoint, EndpointState, Frontend, IpPrefix, L4Protocol, L4Service, ObjectKind, ObjectRef,
    Snapshot,
};

/// A small prime table keeps the fake's checks cheap; the planner does not care.
pub const SIZE: u32 = 13;
pub const DRAIN: Duration = Duration::from_secs(60);

pub fn opts() -> L4Options {
    L4Options {
        sizes: MapSizes {
            maglev_size: SIZE,
            max_services: 8,
            max_backends: 32,
            ..MapSizes::DEFAULT
        },
        drain: DRAIN,
        ..L4Options::default()
    }
}

pub fn ep(addr: &str, state: EndpointState) -> Endpoint {
    Endpoint {
        addr: addr.parse().unwrap(),
        state,
        weight: 1,
        node_name: None,
        zone: None,
        target: None,
    }
}

pub fn svc(name: &str, proto: L4Protocol, node_port: u16, endpoints: Vec<Endpoint>) -> L4Service {
    L4Service {
        id: format!("default/{name}:{node_port}"),
        service: ObjectRef {
            kind: ObjectKind::Service,
            namespace: "default".into(),
            name: name.into(),
        },
        protocol: proto,
        frontends: vec![Frontend::NodePort(node_port)],
        endpoints,
        client_ip_affinity: None,
        source_ranges: Vec::new(),
        local_proxy: false,
        external_traffic_local: false,
        health_check: None,
        syn_rate_limit: None,
        reject_weight: 0,
    }
}

pub fn snap(version: u64, l4: Vec<L4Service>) -> Snapshot {
    Snapshot {
        version,
        l4,
        ..Default::default()
    }
}

fn active(addrs: &[&str]) -> Vec<Endpoint> {
    addrs.iter().map(|a| ep(a, EndpointState::Active)).collect()
}

fn web(addrs: &[&str]) -> L4Service {
    svc("web", L4Protocol::Tcp, 30080, active(addrs))
}

fn dns(addrs: &[&str]) -> L4Service {
    svc("dns", L4Protocol::Udp, 30053, active(addrs))
}

fn key(port: u16, proto: u8) -> ServiceKeyOrd {
    ServiceKeyOrd([0; 16], port.to_be(), proto, FAMILY_V4)
}

fn backend_of(fake: &FakeMaps, addr: &str) -> Option<(u32, Backend)> {
    let sa: SocketAddr = addr.parse().unwrap();
    let (a, _) = addr_bytes(sa.ip());
    fake.backends
        .iter()
        .find(|(_, b)| b.addr == a && b.port == sa.port().to_be())
        .map(|(i, b)| (*i, *b))
}

/// Index of the first write matching `f` in `log`.
fn first(log: &[MapWrite], f: impl Fn(&MapWrite) -> bool) -> usize {
    log.iter().position(f).expect("no such write")
}

#[test]
fn a_first_pass_writes_backends_then_the_table_then_ports_and_the_service() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let r = sync
        .apply_to(
            &mut fake,
            &snap(1, vec![web(&["10.0.0.1:80", "10.0.0.2:80"])]),
            Instant::now(),
        )
        .unwrap();
    assert_eq!(
        (
            r.services_written,
            r.backends_written,
            r.tables_swapped,
            r.maglev_entries_written
        ),
        (1, 2, 1, SIZE as usize),
        "{r:?}"
    );
    let log = &fake.log;
    let last_backend = log
        .iter()
        .rposition(|w| matches!(w, MapWrite::Backend { .. }))
        .unwrap();
    let table = first(log, |w| matches!(w, MapWrite::MaglevHalf { .. }));
    let port = first(log, |w| matches!(w, MapWrite::Ports { .. }));
    let service = first(log, |w| matches!(w, MapWrite::Service { .. }));
    assert!(
        last_backend < table && table < service && port < service,
        "{log:#?}"
    );
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
    assert!(fake.pick(&key(30080, PROTO_TCP), 7).is_some());
}

#[test]
fn the_same_snapshot_again_writes_nothing() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let s = snap(1, vec![web(&["10.0.0.1:80"]), dns(&["10.0.0.9:53"])]);
    sync.apply_to(&mut fake, &s, Instant::now()).unwrap();
    let before = fake.log.len();
    let r = sync.apply_to(&mut fake, &s, Instant::now()).unwrap();
    assert_eq!(fake.log.len(), before, "{:#?}", &fake.log[before..]);
    assert_eq!(r.unchanged, 2, "{r:?}");
}

#[test]
fn a_terminating_endpoint_rewrites_one_backend_one_half_and_the_service() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let eps = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];
    sync.apply_to(&mut fake, &snap(1, vec![web(&eps)]), Instant::now())
        .unwrap();
    let mut s = web(&eps);
    s.endpoints[0].state = EndpointState::Terminating;
    let r = sync
        .apply_to(&mut fake, &snap(2, vec![s]), Instant::now())
        .unwrap();
    assert_eq!(
        (r.services_written, r.backends_written, r.tables_swapped),
        (1, 1, 1),
        "{r:?}"
    );
    // Back again: the other half already holds that table, so no entry is written.
    let r = sync
        .apply_to(&mut fake, &snap(3, vec![web(&eps)]), Instant::now())
        .unwrap();
    assert_eq!(
        (r.tables_swapped, r.maglev_entries_written),
        (1, 0),
        "{r:?}"
    );
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn a_removed_endpoint_turns_removed_after_the_flip_and_is_cleared_after_its_flows() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let t0 = Instant::now();
    let both = ["10.0.0.1:80", "10.0.0.2:80"];
    sync.apply_to(
        &mut fake,
        &snap(1, vec![web(&both), dns(&["10.0.0.1:53", "10.0.0.2:53"])]),
        t0,
    )
    .unwrap();
    // Flows to every endpoint of both services.
    for h in 0..SIZE {
        fake.open_flow(&key(30080, PROTO_TCP), h);
        fake.open_flow(&key(30053, PROTO_UDP), h);
    }
    let (gone_tcp, _) = backend_of(&fake, "10.0.0.2:80").unwrap();
    let (gone_udp, _) = backend_of(&fake, "10.0.0.2:53").unwrap();
    let tcp_flows = |f: &FakeMaps| f.flows.iter().filter(|f| f.backend_id == gone_tcp).count();
    let udp_flows = |f: &FakeMaps| f.flows.iter().filter(|f| f.backend_id == gone_udp).count();
    assert!(tcp_flows(&fake) > 0 && udp_flows(&fake) > 0);
    let mark = fake.log.len();
    let s2 = snap(2, vec![web(&both[..1]), dns(&["10.0.0.1:53"])]);
    let r = sync.apply_to(&mut fake, &s2, t0).unwrap();
    let log = &fake.log[mark..];
    let flip = first(
        log,
        |w| matches!(w, MapWrite::Service { key, .. } if key.port == 30080u16.to_be()),
    );
    let removed = first(
        log,
        |w| matches!(w, MapWrite::Backend { id, value } if *id == gone_tcp && value.flags & BE_F_REMOVED != 0),
    );
    assert!(flip < removed, "{log:#?}");
    // UDP flows of the removed endpoint go now; TCP ones drain on it.
    assert_eq!(udp_flows(&fake), 0);
    assert_eq!(
        r.flows_released,
        SIZE as usize - fake.flows.iter().filter(|f| f.proto == PROTO_UDP).count()
    );
    assert!(tcp_flows(&fake) > 0);
    // Before the drain ends nothing more happens; after it, flows go first, then the id.
    let mark = fake.log.len();
    sync.maintain_to(&mut fake, t0 + DRAIN / 2).unwrap();
    assert_eq!(fake.log.len(), mark);
    let r = sync.maintain_to(&mut fake, t0 + DRAIN).unwrap();
    assert_eq!((r.backends_removed, tcp_flows(&fake)), (2, 0), "{r:?}");
    let log = &fake.log[mark..];
    let release = first(log, |w| {
        matches!(w, MapWrite::ReleaseFlows { proto: None, .. })
    });
    let cleared = first(
        log,
        |w| matches!(w, MapWrite::Backend { id, value } if *id == gone_tcp && value.flags == 0),
    );
    assert!(release < cleared, "{log:#?}");
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn a_backend_id_is_reused_only_once_its_drain_ended() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let t0 = Instant::now();
    sync.apply_to(
        &mut fake,
        &snap(1, vec![web(&["10.0.0.1:80", "10.0.0.2:80"])]),
        t0,
    )
    .unwrap();
    let (old, _) = backend_of(&fake, "10.0.0.2:80").unwrap();
    // Replaced by another endpoint: the new one may not take the draining one's id.
    sync.apply_to(
        &mut fake,
        &snap(2, vec![web(&["10.0.0.1:80", "10.0.0.3:80"])]),
        t0,
    )
    .unwrap();
    let (new, _) = backend_of(&fake, "10.0.0.3:80").unwrap();
    assert_ne!(new, old);
    sync.maintain_to(&mut fake, t0 + DRAIN).unwrap();
    assert!(backend_of(&fake, "10.0.0.2:80").is_none());
    sync.apply_to(
        &mut fake,
        &snap(3, vec![web(&["10.0.0.1:80", "10.0.0.3:80", "10.0.0.4:80"])]),
        t0 + DRAIN,
    )
    .unwrap();
    assert_eq!(
        backend_of(&fake, "10.0.0.4:80").unwrap().0,
        old,
        "the lowest free id"
    );
}

#[test]
fn a_removed_service_keeps_its_slot_from_new_services_until_its_backends_drained() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let t0 = Instant::now();
    sync.apply_to(&mut fake, &snap(1, vec![web(&["10.0.0.1:80"])]), t0)
        .unwrap();
    fake.open_flow(&key(30080, PROTO_TCP), 1).unwrap();
    let web_slot = fake.services[&key(30080, PROTO_TCP)].slot;
    let r = sync
        .apply_to(&mut fake, &snap(2, vec![dns(&["10.0.0.9:53"])]), t0)
        .unwrap();
    assert_eq!(r.services_removed, 1, "{r:?}");
    assert_ne!(fake.services[&key(30053, PROTO_UDP)].slot, web_slot);
    // Its flow drains on the removed backend, then goes with it.
    assert_eq!(fake.flows.len(), 1);
    sync.maintain_to(&mut fake, t0 + DRAIN).unwrap();
    assert!(fake.flows.is_empty() && fake.backends.len() == 1);
    let other = svc("other", L4Protocol::Tcp, 30090, active(&["10.0.0.5:80"]));
    sync.apply_to(
        &mut fake,
        &snap(3, vec![dns(&["10.0.0.9:53"]), other]),
        t0 + DRAIN,
    )
    .unwrap();
    assert_eq!(fake.services[&key(30090, PROTO_TCP)].slot, web_slot);
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn a_restarted_sync_keeps_slots_ids_and_flows_and_removes_what_went_away() {
    let mut fake = FakeMaps::new(SIZE);
    let t0 = Instant::now();
    let s1 = snap(
        1,
        vec![web(&["10.0.0.1:80", "10.0.0.2:80"]), dns(&["10.0.0.9:53"])],
    );
    L4Sync::new(opts()).apply_to(&mut fake, &s1, t0).unwrap();
    for h in 0..SIZE {
        fake.open_flow(&key(30080, PROTO_TCP), h);
    }
    let before = fake.served();
    let ids: Vec<_> = fake.backends.clone().into_iter().collect();
    // A new daemon, the DNS service gone meanwhile.
    let mut fresh = L4Sync::new(opts());
    let r = fresh
        .apply_to(
            &mut fake,
            &snap(2, vec![web(&["10.0.0.1:80", "10.0.0.2:80"])]),
            t0,
        )
        .unwrap();
    // The DNS backend starts draining; nothing of web is written.
    assert_eq!((r.services_removed, r.backends_written), (1, 1), "{r:?}");
    assert_eq!(
        fake.served()["default/web:30080#v4"],
        before["default/web:30080#v4"]
    );
    assert!(!fake.served().contains_key("default/dns:30053#v4"));
    let web_ids: Vec<_> = fake
        .backends
        .iter()
        .filter(|(_, b)| b.port == 80u16.to_be())
        .map(|(i, b)| (*i, *b))
        .collect();
    assert_eq!(
        web_ids,
        ids.into_iter()
            .filter(|(_, b)| b.port == 80u16.to_be())
            .collect::<Vec<_>>()
    );
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

/// The snapshots of [`failures_at_every_write_leave_the_maps_consistent_and_are_repaired`]:
/// a first pass, endpoints changing, a service going and another coming, ranges and affinity.
fn transitions() -> Vec<Snapshot> {
    let mut sticky = web(&["10.0.0.1:80", "10.0.0.3:80"]);
    sticky.client_ip_affinity = Some(Duration::from_secs(10));
    sticky.source_ranges = vec![IpPrefix {
        addr: "198.18.0.0".parse().unwrap(),
        len: 24,
    }];
    sticky
        .frontends
        .push(Frontend::Address("192.0.2.1:443".parse().unwrap()));
    let mut term = web(&["10.0.0.1:80", "10.0.0.3:80"]);
    term.endpoints[0].state = EndpointState::Terminating;
    vec![
        snap(
            1,
            vec![
                web(&["10.0.0.1:80", "10.0.0.2:80"]),
                dns(&["10.0.0.9:53", "10.0.0.8:53"]),
            ],
        ),
        snap(
            2,
            vec![web(&["10.0.0.1:80", "10.0.0.3:80"]), dns(&["10.0.0.9:53"])],
        ),
        snap(
            3,
            vec![
                sticky,
                svc("new", L4Protocol::Tcp, 30090, active(&["10.0.0.2:80"])),
            ],
        ),
        snap(
            4,
            vec![
                term,
                svc("new", L4Protocol::Tcp, 30090, active(&["10.0.0.2:80"])),
            ],
        ),
        snap(5, vec![dns(&["10.0.0.9:53"])]),
    ]
}

/// Runs `transitions()` from scratch, opening flows before each step, with a failure injected
/// at write `fail_at` of step `step` (none if the step has fewer writes). Returns whether the
/// failure happened.
fn run_with_failure(step: usize, fail_at: usize) -> bool {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let mut now = Instant::now();
    let mut failed = false;
    for (i, s) in transitions().iter().enumerate() {
        for h in 0..4 {
            fake.open_flow(&key(30080, PROTO_TCP), h * 3);
            fake.open_flow(&key(30053, PROTO_UDP), h * 3);
        }
        if i == step {
            fake.fail_at(fail_at);
        }
        match sync.apply_to(&mut fake, s, now) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(i, step, "{e}");
                failed = true;
                let held = sync.belief().unwrap();
                fake.agrees_with(held)
                    .unwrap_or_else(|e| panic!("step {i}, write {fail_at}: held differs: {e}"));
                fake.heal();
                // The next pass repairs: what a pass that never failed would serve.
                sync.maintain_to(&mut fake, now).unwrap();
                let mut clean = FakeMaps::new(SIZE);
                L4Sync::new(opts()).apply_to(&mut clean, s, now).unwrap();
                assert_eq!(fake.served(), clean.served(), "step {i}, write {fail_at}");
            }
        }
        fake.heal();
        fake.agrees_with(sync.belief().unwrap()).unwrap();
        assert!(
            fake.violations.is_empty(),
            "step {i}, write {fail_at}: {:?}",
            fake.violations
        );
        now += DRAIN / 2;
        sync.maintain_to(&mut fake, now).unwrap();
    }
    failed
}

#[test]
fn failures_at_every_write_leave_the_maps_consistent_and_are_repaired() {
    let steps = transitions().len();
    let mut injected = 0;
    for step in 0..steps {
        let mut n = 0;
        while run_with_failure(step, n) {
            n += 1;
            injected += 1;
        }
        assert!(n > 0, "step {step} wrote nothing");
    }
    assert!(injected > 40, "{injected}");
}

#[test]
fn a_failed_release_is_retried_and_the_id_stays_taken_until_it_succeeds() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let t0 = Instant::now();
    sync.apply_to(
        &mut fake,
        &snap(1, vec![web(&["10.0.0.1:80", "10.0.0.2:80"])]),
        t0,
    )
    .unwrap();
    for h in 0..SIZE {
        fake.open_flow(&key(30080, PROTO_TCP), h);
    }
    let (gone, _) = backend_of(&fake, "10.0.0.2:80").unwrap();
    sync.apply_to(&mut fake, &snap(2, vec![web(&["10.0.0.1:80"])]), t0)
        .unwrap();
    fake.fail_when(|_, w| matches!(w, MapWrite::ReleaseFlows { proto: None, .. }));
    assert!(sync.maintain_to(&mut fake, t0 + DRAIN).is_err());
    assert!(
        fake.backends.contains_key(&gone),
        "cleared before its flows went"
    );
    // Meanwhile a new endpoint may not take the id.
    assert!(
        sync.apply_to(
            &mut fake,
            &snap(3, vec![web(&["10.0.0.1:80", "10.0.0.5:80"])]),
            t0 + DRAIN
        )
        .is_err()
    );
    assert_ne!(backend_of(&fake, "10.0.0.5:80").unwrap().0, gone);
    fake.heal();
    sync.maintain_to(&mut fake, t0 + DRAIN).unwrap();
    assert!(!fake.backends.contains_key(&gone));
    assert!(fake.flows.iter().all(|f| f.backend_id != gone));
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
}

#[test]
fn a_failed_upkeep_before_the_first_snapshot_removes_nothing_the_last_daemon_left() {
    let mut fake = FakeMaps::new(SIZE);
    let t0 = Instant::now();
    let mut old = L4Sync::new(opts());
    let alt = svc("alt", L4Protocol::Tcp, 30090, active(&["10.0.0.1:80"]));
    old.apply_to(&mut fake, &snap(1, vec![alt]), t0).unwrap();
    // The alt service leaves (its backend drains), DNS comes.
    old.apply_to(&mut fake, &snap(2, vec![dns(&["10.0.0.1:53"])]), t0)
        .unwrap();
    let flow = fake.open_flow(&key(30053, PROTO_UDP), 1).unwrap();
    let served = fake.served();
    // A new daemon's upkeep runs (and fails) before its first snapshot arrives.
    let mut new = L4Sync::new(opts());
    fake.fail_at(0);
    assert!(new.maintain_to(&mut fake, t0).is_err());
    fake.heal();
    new.maintain_to(&mut fake, t0).unwrap();
    assert_eq!(fake.served(), served);
    assert!(fake.flows.contains(&flow));
}

#[test]
fn a_snapshot_past_the_slots_writes_nothing_and_drains_still_end() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let t0 = Instant::now();
    let both = ["10.0.0.1:80", "10.0.0.2:80"];
    sync.apply_to(&mut fake, &snap(1, vec![web(&both)]), t0)
        .unwrap();
    sync.apply_to(&mut fake, &snap(2, vec![web(&both[..1])]), t0)
        .unwrap();
    // Nine services, eight slots: refused whole, the maps keep serving the last snapshot.
    let many: Vec<L4Service> = (0..9)
        .map(|i| {
            svc(
                &format!("s{i}"),
                L4Protocol::Tcp,
                31000 + i,
                active(&["10.0.0.7:80"]),
            )
        })
        .collect();
    let before = (fake.log.len(), fake.served());
    let e = sync.apply_to(&mut fake, &snap(3, many), t0).unwrap_err();
    assert!(matches!(e, SyncError::NoServiceSlot(_)), "{e}");
    assert_eq!((fake.log.len(), fake.served()), before);
    sync.maintain_to(&mut fake, t0 + DRAIN).unwrap();
    assert!(
        backend_of(&fake, "10.0.0.2:80").is_none(),
        "the drain ended"
    );
}

#[test]
fn addresses_round_trip() {
    for s in ["198.18.0.2", "2001:db8::2"] {
        let ip: std::net::IpAddr = s.parse().unwrap();
        let (b, f) = addr_bytes(ip);
        assert_eq!(addr_from(&b, f), ip);
    }
}

#[test]
fn a_syn_limit_is_written_before_its_entry_once_and_follows_changes() {
    use crate::model::SynRateLimit;
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let limited = |per_second| L4Service {
        syn_rate_limit: Some(SynRateLimit {
            per_second,
            burst: per_second * 5,
        }),
        ..web(&["10.0.0.1:80"])
    };
    let now = Instant::now();
    sync.apply_to(&mut fake, &snap(1, vec![limited(10)]), now)
        .unwrap();
    let limit = first(&fake.log, |w| matches!(w, MapWrite::SynLimit { .. }));
    let service = first(&fake.log, |w| matches!(w, MapWrite::Service { .. }));
    assert!(limit < service, "{:#?}", fake.log);
    let want = crate::dataplane::syn_limit::config(Some(SynRateLimit {
        per_second: 10,
        burst: 50,
    }));
    assert_eq!(
        fake.syn_limits.values().copied().collect::<Vec<_>>(),
        [want]
    );
    // Unchanged: not written again; changed or lifted: written once.
    fake.log.clear();
    sync.apply_to(&mut fake, &snap(2, vec![limited(10)]), now)
        .unwrap();
    assert!(fake.log.is_empty(), "{:#?}", fake.log);
    sync.apply_to(&mut fake, &snap(3, vec![web(&["10.0.0.1:80"])]), now)
        .unwrap();
    let writes: Vec<_> = fake
        .log
        .iter()
        .filter(|w| matches!(w, MapWrite::SynLimit { .. }))
        .collect();
    assert_eq!(writes.len(), 1, "{:#?}", fake.log);
    assert_eq!(
        fake.syn_limits.values().copied().collect::<Vec<_>>(),
        [ingress_common::syn_limit::SynLimitConfig::NONE]
    );
}

/// A Gateway L4 route's refused share: the table holds [`NO_BACKEND`] in about that share of
/// its entries (the XDP program refuses those flows as for a service without endpoints), the
/// rest names the live backend, and the maps stay consistent.
#[test]
fn a_refused_share_is_written_as_no_backend_entries() {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let mut s = web(&["10.0.0.1:80"]);
    s.endpoints[0].weight = 1 << 18;
    s.reject_weight = 3 << 18;
    sync.apply_to(&mut fake, &snap(1, vec![s]), Instant::now())
        .unwrap();
    assert!(fake.violations.is_empty(), "{:?}", fake.violations);
    let (id, _) = backend_of(&fake, "10.0.0.1:80").unwrap();
    let picks: Vec<Option<u32>> = (0..SIZE)
        .map(|h| fake.pick(&key(30080, PROTO_TCP), h))
        .collect();
    let refused = picks.iter().filter(|p| **p == Some(NO_BACKEND)).count();
    let served = picks.iter().filter(|p| **p == Some(id)).count();
    assert_eq!(refused + served, SIZE as usize, "{picks:?}");
    let share = refused as f64 / f64::from(SIZE);
    assert!((share - 0.75).abs() < 0.1, "refused share {share}");
    let opened = (0..SIZE)
        .filter(|h| fake.open_flow(&key(30080, PROTO_TCP), *h).is_some())
        .count();
    assert_eq!(opened, served);
}

/// A dual-stack service's refused share is the same in each family's table: the refused weight
/// follows each family's part of the endpoints' weight.
#[test]
fn each_family_refuses_the_same_share() {
    let mut s = web(&["10.0.0.1:80", "[fd00::1]:80"]);
    for e in &mut s.endpoints {
        e.weight = 1 << 18;
    }
    s.reject_weight = 2 << 18;
    let units = super::desired::units(&snap(1, vec![s]), &opts());
    let rejects: Vec<u32> = units.values().map(|u| u.reject_weight).collect();
    assert_eq!(rejects, [1 << 18, 1 << 18], "{units:?}");
}
