//! Random snapshot sequences through the sync over the fake, with random write failures,
//! restarts and clock steps. After every write: the data path is consistent (no frontend on a
//! half-written table or a missing or removed backend, no flow whose backend id or slot was
//! given to another). After every pass: the sync's belief matches the maps; after a pass that
//! succeeded, the maps serve what a sync that never failed serves; an established flow whose
//! endpoint stayed in every snapshot since it opened keeps its backend.

use std::{net::SocketAddr, time::Instant};

use proptest::prelude::*;

use super::{
    fake::{FakeMaps, Flow},
    held::ServiceKeyOrd,
    tests::{DRAIN, SIZE, ep, opts, snap, svc},
    *,
};
use crate::model::{EndpointState, Frontend, IpPrefix, L4Protocol, L4Service, Snapshot};

/// One service of the universe: (name, protocol, node port, endpoint port).
const SERVICES: [(&str, L4Protocol, u16, u16); 3] = [
    ("web", L4Protocol::Tcp, 30080, 80),
    ("dns", L4Protocol::Udp, 30053, 53),
    ("alt", L4Protocol::Tcp, 30090, 80),
];

#[derive(Clone, Debug)]
struct SvcSpec {
    present: bool,
    /// Endpoint host numbers (10.0.0.N) → terminating.
    endpoints: std::collections::BTreeMap<u8, bool>,
    affinity: bool,
    /// Bit i: range i of two.
    ranges: u8,
    address_frontend: bool,
}

#[derive(Clone, Debug)]
struct Step {
    services: Vec<SvcSpec>,
    /// Half drain periods the clock moves before the step.
    advance: u32,
    /// Which write of this step fails, if any.
    fail: Option<usize>,
    /// A new daemon over the same maps before the step.
    restart: bool,
    /// Only upkeep this step, no new snapshot.
    maintain_only: bool,
}

fn svc_spec() -> impl Strategy<Value = SvcSpec> {
    (
        prop::bool::weighted(0.8),
        prop::collection::btree_map(1u8..=5, prop::bool::weighted(0.2), 0..=4),
        any::<bool>(),
        0u8..4,
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(present, endpoints, affinity, ranges, address_frontend)| SvcSpec {
                present,
                endpoints,
                affinity,
                ranges,
                address_frontend,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(svc_spec(), SERVICES.len()),
        0u32..4,
        prop::option::weighted(0.4, 0usize..40),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(services, advance, fail, restart, maintain_only)| Step {
            services,
            advance,
            fail,
            restart,
            maintain_only,
        })
}

fn snapshot(version: u64, specs: &[SvcSpec]) -> Snapshot {
    let mut l4: Vec<L4Service> = Vec::new();
    for ((name, proto, node_port, port), spec) in SERVICES.iter().zip(specs) {
        if !spec.present {
            continue;
        }
        let eps = spec
            .endpoints
            .iter()
            .map(|(n, term)| {
                let state = if *term {
                    EndpointState::Terminating
                } else {
                    EndpointState::Active
                };
                ep(&format!("10.0.0.{n}:{port}"), state)
            })
            .collect();
        let mut s = svc(name, *proto, *node_port, eps);
        if spec.affinity {
            s.client_ip_affinity = Some(std::time::Duration::from_secs(10));
        }
        for (i, net) in ["198.18.0.0", "203.0.113.0"].iter().enumerate() {
            if spec.ranges & (1 << i) != 0 {
                s.source_ranges.push(IpPrefix {
                    addr: net.parse().unwrap(),
                    len: 24,
                });
            }
        }
        if spec.address_frontend {
            s.frontends.push(Frontend::Address(SocketAddr::from((
                [192, 0, 2, 1],
                *node_port,
            ))));
        }
        l4.push(s);
    }
    snap(version, l4)
}

/// (unit name, endpoint address bytes, port in network order) of every endpoint asked for.
fn endpoints_of(s: &Snapshot) -> std::collections::BTreeSet<(String, [u8; 16], u16)> {
    s.l4.iter()
        .flat_map(|svc| {
            svc.endpoints.iter().map(move |e| {
                let (a, _) = addr_bytes(e.addr.ip());
                (format!("{}#v4", svc.id), a, e.addr.port().to_be())
            })
        })
        .collect()
}

fn keys(fake: &FakeMaps) -> Vec<ServiceKeyOrd> {
    fake.services.keys().copied().collect()
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut fake = FakeMaps::new(SIZE);
    let mut sync = L4Sync::new(opts());
    let mut now = Instant::now();
    let mut last: Option<Snapshot> = None;
    // Flows whose endpoint was in every snapshot asked for since they opened.
    let mut protected: Vec<Flow> = Vec::new();
    for (n, st) in steps.into_iter().enumerate() {
        // New flows; those to endpoints the last snapshot still asks for are protected (a
        // snapshot not yet written in full may leave others in the live table).
        let wanted = last.as_ref().map(endpoints_of).unwrap_or_default();
        for k in keys(&fake) {
            for h in [n as u32, n as u32 * 5 + 3] {
                if let Some(f) = fake.open_flow(&k, h)
                    && wanted.contains(&(f.unit.clone(), f.addr, f.port))
                {
                    protected.push(f);
                }
            }
        }
        now += DRAIN / 2 * st.advance;
        if st.restart {
            // A new daemon knows no snapshot until its control loop hands it one.
            sync = L4Sync::new(opts());
            last = None;
        }
        if let Some(i) = st.fail {
            fake.fail_at(i);
        }
        let result = if st.maintain_only {
            sync.maintain_to(&mut fake, now)
        } else {
            let s = snapshot(n as u64 + 1, &st.services);
            let wanted = endpoints_of(&s);
            protected.retain(|f| wanted.contains(&(f.unit.clone(), f.addr, f.port)));
            let (before, attempts) = (last.replace(s.clone()), fake.attempts);
            let r = sync.apply_to(&mut fake, &s, now);
            if r.is_err() && fake.attempts == attempts {
                // Refused whole (no slot or id for it): the maps keep the previous snapshot.
                last = before;
            }
            r
        };
        fake.heal();
        prop_assert!(
            fake.violations.is_empty(),
            "step {}: {:?}",
            n,
            fake.violations
        );
        if let Some(held) = sync.belief() {
            fake.agrees_with(held)
                .map_err(|e| TestCaseError::fail(format!("step {n}: held differs: {e}")))?;
        }
        for f in &protected {
            prop_assert!(fake.flows.contains(f), "step {}: flow {:?} released", n, f);
        }
        // After a pass that succeeded, the maps serve the last snapshot as a sync that never
        // failed would.
        if let (Ok(_), Some(s)) = (&result, &last) {
            let mut clean = FakeMaps::new(SIZE);
            L4Sync::new(opts())
                .apply_to(&mut clean, s, now)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(fake.served(), clean.served(), "step {}", n);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_snapshot_sequences_with_failed_writes_stay_consistent_and_converge(
        steps in prop::collection::vec(step(), 1..12)
    ) {
        run(steps)?;
    }
}
