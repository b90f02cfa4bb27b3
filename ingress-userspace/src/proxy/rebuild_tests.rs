//! [`Runtime::patch`] of the previous runtime (compiled hosts and upstream runtimes kept as
//! they are where the snapshot kept the same `Arc`s, the rest patched in) against a compile
//! from scratch ([`Runtime::build`]), over
//! random sequences of snapshot changes; so too the parts [`ProxyHandle::apply`] keeps while
//! a snapshot did not change them (the certificate table, the rate-limit zones: [`changes`]).
//!
//! [`ProxyHandle::apply`]: super::ProxyHandle::apply
//! [`changes`]: super::changes

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use http::HeaderMap;
use proptest::prelude::*;

use super::{
    Runtime, changes,
    fixtures::{path, route_to, upstream_at, vhost},
    router::{CompiledAction, Lookup, RequestView},
    upstream::HealthPolicy,
};
use crate::model::{
    L7Config, LoadBalancing, ObjectKind, ObjectRef, RateLimit, Snapshot, TlsCertificate, Upstream,
    VirtualHost, WeightedUpstream,
};

/// Exact names (two differ only in case, as a snapshot may hold them), a wildcard, any host.
const HOSTS: [&str; 5] = [
    "a.example.com",
    "B.example.com",
    "b.example.com",
    "*.w.example.com",
    "",
];
/// The last one does not compile: its route is left out.
const PATHS: [(&str, &str); 5] = [
    ("Prefix", "/"),
    ("Prefix", "/api"),
    ("Exact", "/api/v1"),
    ("ImplementationSpecific", "/z"),
    ("Regex", "/(unclosed"),
];
const REQUEST_HOSTS: [&str; 5] = [
    "a.example.com",
    "b.example.com",
    "x.w.example.com",
    "none.example.com",
    "A.EXAMPLE.COM:80",
];
const REQUEST_PATHS: [&str; 5] = ["/", "/api", "/api/v1", "/zz", "/(unclosed"];

/// A backend: one of three Services, in one of two variants (balancing differs: the same id).
type Backend = (usize, bool);
/// A host's routes: a path (index in [`PATHS`]) and its backends, weighted 1, 2, ...
type Routes = Vec<(usize, Vec<Backend>)>;

#[derive(Clone, Debug)]
enum Step {
    /// Host `.0` gets these routes (path, backends).
    Set(usize, Routes),
    Remove(usize),
    /// A backend's endpoints change: a new spec, in every host that uses it.
    Endpoints(Backend, u8),
    /// Host `.0` is made again: a new `Arc` of every spec (equal values) and of the host.
    Copy(usize),
    DefaultBackend(Option<Backend>),
    /// Host `.0`'s name gets certificate `.1` (one of [`pems`]; a new `Arc` each time), or
    /// none.
    Cert(usize, Option<usize>),
    /// The default certificate.
    DefaultCert(Option<usize>),
    /// Host `.0`'s routes get a rate limit of `.1` requests per second, or none.
    Limit(usize, Option<u32>),
}

/// Two certificates, made once.
fn pems() -> &'static [(String, String); 2] {
    static PEMS: std::sync::OnceLock<[(String, String); 2]> = std::sync::OnceLock::new();
    PEMS.get_or_init(|| {
        [
            super::tls::self_signed_pem(&["one.test"]).expect("rcgen"),
            super::tls::self_signed_pem(&["two.test"]).expect("rcgen"),
        ]
    })
}

fn certificate(n: usize) -> Arc<TlsCertificate> {
    let (chain, key) = &pems()[n];
    Arc::new(TlsCertificate {
        secret: ObjectRef::new(ObjectKind::Secret, "default", format!("cert{n}")),
        chain_pem: chain.as_bytes().into(),
        key_pem: key.as_bytes().into(),
    })
}

fn backend() -> impl Strategy<Value = Backend> {
    (0..3usize, any::<bool>())
}

fn step() -> impl Strategy<Value = Step> {
    let routes = prop::collection::vec(
        (0..PATHS.len(), prop::collection::vec(backend(), 1..3)),
        0..4,
    );
    prop_oneof![
        4 => (0..HOSTS.len(), routes).prop_map(|(h, r)| Step::Set(h, r)),
        1 => (0..HOSTS.len()).prop_map(Step::Remove),
        3 => (backend(), 0..4u8).prop_map(|(b, n)| Step::Endpoints(b, n)),
        2 => (0..HOSTS.len()).prop_map(Step::Copy),
        1 => prop::option::of(backend()).prop_map(Step::DefaultBackend),
        2 => (0..HOSTS.len(), prop::option::of(0..2usize)).prop_map(|(h, c)| Step::Cert(h, c)),
        1 => prop::option::of(0..2usize).prop_map(Step::DefaultCert),
        2 => (0..HOSTS.len(), prop::option::of(1..3u32)).prop_map(|(h, l)| Step::Limit(h, l)),
    ]
}

/// The snapshots a sequence of steps gives: hosts it did not touch keep their `Arc`s, as
/// translation keeps them.
#[derive(Default)]
struct World {
    specs: HashMap<Backend, Arc<Upstream>>,
    /// Host -> its routes and the virtual host made of them.
    hosts: BTreeMap<usize, (Routes, Arc<VirtualHost>)>,
    default_backend: Option<Arc<Upstream>>,
    /// Certificates by host (index in [`HOSTS`]).
    certs: BTreeMap<usize, Arc<TlsCertificate>>,
    default_cert: Option<Arc<TlsCertificate>>,
    /// Rate limits (requests per second) by host.
    limits: BTreeMap<usize, u32>,
    version: u64,
}

impl World {
    fn spec(&mut self, b: Backend) -> Arc<Upstream> {
        Arc::clone(self.specs.entry(b).or_insert_with(|| new_spec(b, 2)))
    }

    fn vhost(&mut self, h: usize, routes: &[(usize, Vec<Backend>)]) -> Arc<VirtualHost> {
        let routes = routes
            .iter()
            .map(|(p, backends)| {
                let (kind, p) = PATHS[*p];
                let mut r = route_to(path(kind, p), self.spec(backends[0]));
                if let Some(rps) = self.limits.get(&h) {
                    Arc::make_mut(&mut r.policy).rate_limit = Some(Arc::new(RateLimit {
                        zone: format!("default/host{h}"),
                        rps: Some(*rps),
                        rpm: None,
                        burst_multiplier: 5,
                        connections: None,
                        exempt: Vec::new(),
                    }));
                }
                r.action = crate::model::RouteAction::Forward(
                    backends
                        .iter()
                        .enumerate()
                        .map(|(i, b)| WeightedUpstream {
                            upstream: self.spec(*b),
                            weight: i as u32 + 1,
                        })
                        .collect(),
                );
                r
            })
            .collect();
        Arc::new(vhost(HOSTS[h], routes, false))
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Set(h, routes) => {
                let vh = self.vhost(*h, routes);
                self.hosts.insert(*h, (routes.clone(), vh));
            }
            Step::Remove(h) => {
                self.hosts.remove(h);
            }
            Step::Endpoints(b, n) => {
                self.specs.insert(*b, new_spec(*b, *n));
                let using: Vec<usize> = self
                    .hosts
                    .iter()
                    .filter(|(_, (routes, _))| routes.iter().any(|(_, bs)| bs.contains(b)))
                    .map(|(h, _)| *h)
                    .collect();
                for h in using {
                    let routes = self.hosts[&h].0.clone();
                    let vh = self.vhost(h, &routes);
                    self.hosts.insert(h, (routes, vh));
                }
                if self.default_backend.as_ref().is_some_and(|d| is(d, *b)) {
                    self.default_backend = Some(self.spec(*b));
                }
            }
            Step::Copy(h) => {
                if let Some((routes, vh)) = self.hosts.get(h).cloned() {
                    let mut copy = (*vh).clone();
                    for r in &mut copy.routes {
                        if let crate::model::RouteAction::Forward(ups) = &mut r.action {
                            for w in ups {
                                w.upstream = Arc::new((*w.upstream).clone());
                            }
                        }
                    }
                    self.hosts.insert(*h, (routes, Arc::new(copy)));
                }
                if let Some(c) = self.certs.get_mut(h) {
                    *c = Arc::new((**c).clone());
                }
            }
            Step::DefaultBackend(b) => self.default_backend = b.map(|b| self.spec(b)),
            Step::Cert(h, Some(c)) => {
                self.certs.insert(*h, certificate(*c));
            }
            Step::Cert(h, None) => {
                self.certs.remove(h);
            }
            Step::DefaultCert(c) => self.default_cert = c.map(certificate),
            Step::Limit(h, l) => {
                match l {
                    Some(rps) => self.limits.insert(*h, *rps),
                    None => self.limits.remove(h),
                };
                // Translation makes the host anew when its annotations change.
                if let Some((routes, _)) = self.hosts.get(h).cloned() {
                    let vh = self.vhost(*h, &routes);
                    self.hosts.insert(*h, (routes, vh));
                }
            }
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        self.version += 1;
        let mut l7 = L7Config {
            default_backend: self.default_backend.clone(),
            default_certificate: self.default_cert.clone(),
            certificates: (self.certs.iter())
                .map(|(h, c)| (HOSTS[*h].to_string(), Arc::clone(c)))
                .collect(),
            ..L7Config::default()
        };
        for (h, (_, vh)) in &self.hosts {
            let name = HOSTS[*h];
            if name.is_empty() {
                l7.any_host = Some(Arc::clone(vh));
            } else if let Some(suffix) = name.strip_prefix("*.") {
                l7.wildcard_hosts.insert(suffix.to_string(), Arc::clone(vh));
            } else {
                l7.hosts.insert(name.to_string(), Arc::clone(vh));
            }
        }
        Snapshot {
            version: self.version,
            l7,
            ..Snapshot::default()
        }
    }
}

fn is(spec: &Upstream, (svc, variant): Backend) -> bool {
    spec.service.name == format!("svc{svc}")
        && matches!(spec.load_balancing, LoadBalancing::LeastRequest) == variant
}

fn new_spec((svc, variant): Backend, endpoints: u8) -> Arc<Upstream> {
    let addrs: Vec<SocketAddr> = (0..endpoints)
        .map(|e| SocketAddr::from(([10, 0, svc as u8, e], 8080)))
        .collect();
    let mut u = (*upstream_at(&format!("svc{svc}"), &addrs)).clone();
    if variant {
        u.load_balancing = LoadBalancing::LeastRequest;
    }
    Arc::new(u)
}

/// What `rt` does with a GET of `path` on `host`, in the snapshot's terms (upstreams by value).
fn answer(rt: &Runtime, host: &str, path: &str) -> String {
    let headers = HeaderMap::new();
    let req = RequestView {
        host,
        path,
        query: None,
        method: "GET",
        headers: &headers,
        tls: false,
        listener_port: None,
        gateway_listener: false,
        local_addr: None,
    };
    match rt.routes.lookup(&req) {
        Lookup::Route { host, route } => {
            let action = match &route.action {
                CompiledAction::Forward(ups) => ups
                    .iter()
                    .map(|(u, w)| format!("{:?} x{w}", u.spec))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => format!("{other:?}"),
            };
            format!(
                "{} {:?} {:?} -> {action}",
                host.host,
                route.path(),
                route.origin()
            )
        }
        Lookup::Default { host, backend, why } => {
            format!(
                "default {:?} {why:?} -> {:?}",
                host.map(|h| &h.host),
                backend.spec
            )
        }
        Lookup::NotFound { host, why } => format!("404 {:?} {why:?}", host.map(|h| &h.host)),
    }
}

/// Every answer `rt` gives, its upstream runtimes (specs by value, sorted: one runtime per
/// distinct spec of an id) and how many uses hold each spec `Arc` (by address).
type Behaviour = (Vec<String>, Vec<String>, BTreeMap<usize, u32>);

fn behaviour(rt: &Runtime) -> Behaviour {
    let answers = REQUEST_HOSTS
        .iter()
        .flat_map(|h| REQUEST_PATHS.iter().map(move |p| answer(rt, h, p)))
        .collect();
    let mut upstreams: Vec<String> = rt.upstreams().map(|u| format!("{:?}", u.spec)).collect();
    upstreams.sort();
    (answers, upstreams, rt.upstreams.uses())
}

/// The certificate each request host gets (`None`: the store's generated one).
fn certificates_served(store: &super::tls::CertStore) -> Vec<Option<Vec<u8>>> {
    REQUEST_HOSTS
        .iter()
        .chain(&HOSTS)
        .map(|h| store.served(Some(h)))
        .chain([store.served(None)])
        .collect()
}

/// The rate-limit zones a snapshot's routes need.
fn zones(l7: &L7Config) -> Vec<String> {
    let mut z: Vec<String> = super::rate_limits_of(l7, None)
        .iter()
        .map(|l| format!("{l:?}"))
        .collect();
    z.sort();
    z.dedup();
    z
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a snapshot kept, the runtime built from the previous one answers every
    /// request as one compiled from scratch, and holds the same upstreams; the certificate
    /// table and the rate-limit zones kept while unchanged are those made from scratch.
    #[test]
    fn reused_runtime_answers_as_fresh(steps in prop::collection::vec(step(), 1..24)) {
        let health = HealthPolicy::default();
        let mut world = World::default();
        let mut installed = world.snapshot();
        let mut live = Runtime::build(&installed, health).0;
        let certs = super::tls::CertStore::new().expect("store");
        certs.update(&installed.l7);
        let mut live_zones = zones(&installed.l7);
        for (n, s) in steps.iter().enumerate() {
            world.apply(s);
            let snap = world.snapshot();
            let reused = live.patch(&installed.l7, &snap, health).0;
            let fresh = Runtime::build(&snap, health).0;
            prop_assert_eq!(behaviour(&reused), behaviour(&fresh), "step {}: {:?}", n, s);
            // Equal specs share one runtime (else the same Service port and options would
            // balance and count its endpoints twice over): a property of either build.
            for rt in [&reused, &fresh] {
                let mut specs = behaviour(rt).1;
                let all = specs.len();
                specs.dedup();
                prop_assert_eq!(specs.len(), all, "step {}: {:?}: equal specs, two runtimes", n, s);
            }
            // As `ProxyHandle::apply` does: kept while unchanged, else made anew.
            certs.update_from(&snap.l7, Some(&installed.l7));
            let fresh_certs = super::tls::CertStore::new().expect("store");
            fresh_certs.update(&snap.l7);
            prop_assert_eq!(
                certificates_served(&certs),
                certificates_served(&fresh_certs),
                "step {}: {:?}", n, s
            );
            if !changes::same_rate_limits(&installed.l7, &snap.l7) {
                live_zones = zones(&snap.l7);
            }
            prop_assert_eq!(&live_zones, &zones(&snap.l7), "step {}: {:?}", n, s);
            installed = snap;
            // Health probes and `endpoint_health` see the very runtimes requests use.
            for h in reused.routes.handles() {
                prop_assert!(
                    reused.upstreams().any(|u| Arc::ptr_eq(u, h)),
                    "step {}: {} has a runtime the proxy does not keep", n, h.spec.id
                );
            }
            live = reused;
        }
    }
}

/// What a one-host change compiles: that host; the others' compiled routes and their
/// upstreams' runtimes (slots, health counters) are the previous ones, and a changed
/// upstream's surviving endpoints keep their counters.
#[test]
fn only_what_changed_is_compiled() {
    let health = HealthPolicy::default();
    let mut world = World::default();
    world.apply(&Step::Set(0, vec![(0, vec![(0, false)])]));
    world.apply(&Step::Set(2, vec![(0, vec![(1, false)])]));
    let s1 = world.snapshot();
    let first = Runtime::build(&s1, health).0;
    let host = |rt: &Runtime, name: &str| {
        let h = rt.routes.host(name).expect("host") as *const _;
        let CompiledAction::Forward(ups) = &rt.routes.host(name).unwrap().routes[0].action else {
            panic!("forwards")
        };
        (h, Arc::clone(&ups[0].0))
    };
    let (a0, a_up) = host(&first, "a.example.com");
    let (b0, b_up) = host(&first, "b.example.com");

    world.apply(&Step::Set(2, vec![(1, vec![(1, false)])]));
    let s2 = world.snapshot();
    let second = first.patch(&s1.l7, &s2, health).0;
    let (a1, a_up1) = host(&second, "a.example.com");
    let (b1, b_up1) = host(&second, "b.example.com");
    assert_eq!(a0, a1, "the untouched host is the previous compiled one");
    assert!(Arc::ptr_eq(&a_up, &a_up1));
    assert_ne!(b0, b1, "the changed host is compiled");
    assert!(
        Arc::ptr_eq(&b_up, &b_up1),
        "its unchanged upstream keeps its runtime"
    );

    // svc0 goes from 2 endpoints to 3: a new runtime whose first two slots keep their stats
    // (counters exist once written: the first one's here), the new one has none yet.
    a_up1.slots[0]
        .stats
        .write()
        .record_success(Duration::from_millis(3));
    world.apply(&Step::Endpoints((0, false), 3));
    let third = second.patch(&s2.l7, &world.snapshot(), health).0;
    let (a2, a_up2) = host(&third, "a.example.com");
    assert_ne!(a1, a2);
    assert!(!Arc::ptr_eq(&a_up1, &a_up2));
    assert_eq!(a_up2.slots.len(), 3);
    let (Some(old), Some(new)) = (a_up1.slots[0].stats.made(), a_up2.slots[0].stats.made()) else {
        panic!("the written counters carry over");
    };
    assert!(Arc::ptr_eq(old, new));
    assert_eq!(new.ewma_us.load(Ordering::Relaxed), 3000);
    assert!(
        a_up2.slots[1].stats.made().is_none(),
        "never written: not made"
    );
    assert!(
        a_up2.slots[2].stats.made().is_none(),
        "a new endpoint: not made"
    );
    assert!(Arc::ptr_eq(&host(&third, "b.example.com").1, &b_up1));
}
