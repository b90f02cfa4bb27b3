//! Resolves a Service port to endpoints from all of the Service's EndpointSlices.
//!
//! The slice port is found by the Service port's name (how the EndpointSlice controller names
//! them), else by a named `targetPort`, else the numeric `targetPort` (or the port itself).
//! Conditions: `ready` (unset = ready) -> Active; `serving && terminating` -> Terminating;
//! anything else is left out. Only the first address of an endpoint counts (as kube-proxy);
//! an address in several slices keeps its best state. FQDN slices are ignored. Addresses that
//! point into the node are left out and reported ([`super::node_local`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicBool, Ordering},
};

use k8s_openapi::{api::core::v1::ServicePort, apimachinery::pkg::util::intstr::IntOrString};

use super::{
    TranslateConfig,
    diagnostics::Diagnostics,
    node_local::{EndpointAddressPolicy, NodeLocal},
};
pub use crate::compact::endpoint_slice::SERVICE_NAME_LABEL;
use crate::{
    compact::endpoint_slice::{EndpointPort, EndpointSlice},
    model::{Endpoint, EndpointState, ObjectKind, ObjectRef},
    store::{Key, Objects},
};
/// Reason of the Error diagnostic for an endpoint address that points into the node.
pub const REFUSED_REASON: &str = "EndpointAddressRefused";

/// EndpointSlices grouped by `(namespace, service name)`.
#[derive(Debug, Default)]
pub struct EndpointIndex<'a> {
    by_service: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    policy: EndpointAddressPolicy,
    /// Built for these namespaces only ([`EndpointIndex::for_namespaces`]).
    namespaces: Option<HashSet<String>>,
    /// A Service outside `namespaces` was resolved (to nothing): the result is incomplete.
    missed: AtomicBool,
}

impl<'a> EndpointIndex<'a> {
    pub fn new(objects: &'a Objects, cfg: &TranslateConfig) -> Self {
        Self::of(objects.endpoint_slices.values(), objects, cfg, |_, _| true)
    }

    /// Groups `slices` whose `(namespace, service)` is kept.
    fn of(
        slices: impl Iterator<Item = &'a std::sync::Arc<EndpointSlice>>,
        objects: &'a Objects,
        cfg: &TranslateConfig,
        keep: impl Fn(&str, &str) -> bool,
    ) -> Self {
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
            let Some(svc) = slice.service() else {
                continue;
            };
            if keep(ns, svc) {
                by_service.entry((ns, svc)).or_default().push(slice);
            }
        }
        EndpointIndex {
            by_service,
            policy: EndpointAddressPolicy::new(objects, cfg),
            namespaces: None,
            missed: AtomicBool::new(false),
        }
    }

    /// The slices of `namespaces` only (a range of the store's map each, not a pass over
    /// every slice of the cluster).
    fn in_namespaces<'n>(
        objects: &'a Objects,
        namespaces: impl Iterator<Item = &'n str>,
    ) -> impl Iterator<Item = &'a std::sync::Arc<EndpointSlice>> {
        let mut namespaces: Vec<&str> = namespaces.collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        namespaces.into_iter().flat_map(move |ns| {
            let ns = ns.to_string();
            objects
                .endpoint_slices
                .range(Key::new(ns.clone(), "")..)
                .take_while(move |(k, _)| k.namespace == ns)
                .map(|(_, s)| s)
        })
    }

    /// Like [`EndpointIndex::new`], for the slices of `services` only.
    pub fn for_services(
        objects: &'a Objects,
        services: &HashSet<Key>,
        cfg: &TranslateConfig,
    ) -> Self {
        let wanted: HashSet<(&str, &str)> = services
            .iter()
            .map(|k| (k.namespace.as_str(), k.name.as_str()))
            .collect();
        // A slice lives in its Service's namespace.
        let slices = Self::in_namespaces(objects, services.iter().map(|k| k.namespace.as_str()));
        Self::of(slices, objects, cfg, |ns, svc| wanted.contains(&(ns, svc)))
    }

    /// Like [`EndpointIndex::new`], for the Services of `namespaces` only; resolving one
    /// elsewhere gives no endpoints and sets [`EndpointIndex::missed`].
    pub fn for_namespaces(
        objects: &'a Objects,
        namespaces: &HashSet<&str>,
        cfg: &TranslateConfig,
    ) -> Self {
        let slices = Self::in_namespaces(objects, namespaces.iter().copied());
        let mut index = Self::of(slices, objects, cfg, |_, _| true);
        index.namespaces = Some(namespaces.iter().map(|n| n.to_string()).collect());
        index
    }

    /// Whether a Service outside the namespaces of [`EndpointIndex::for_namespaces`] was
    /// resolved.
    pub fn missed(&self) -> bool {
        self.missed.load(Ordering::Relaxed)
    }

    /// Refused addresses of the slices of `services`: `(slice, address, why)`.
    fn refused(&self, services: &HashSet<Key>) -> Vec<(&'a EndpointSlice, IpAddr, NodeLocal)> {
        let mut out = Vec::new();
        for ((ns, svc), slices) in &self.by_service {
            if !services.contains(&Key::new(*ns, *svc)) {
                continue;
            }
            for slice in slices {
                for ep in &slice.endpoints {
                    let Some(ip) = ep.address else {
                        continue;
                    };
                    if let Some(why) = self.policy.refusal(ip, ns, svc) {
                        out.push((*slice, ip, why));
                    }
                }
            }
        }
        out
    }

    /// Why `ip`, an address the proxy would connect to for Service `namespace/service` (an
    /// endpoint, or its clusterIP with `service-upstream`), is refused; `None` if served. The
    /// one guard for every upstream address ([`EndpointAddressPolicy::refusal`]).
    pub fn refusal(&self, ip: IpAddr, namespace: &str, service: &str) -> Option<NodeLocal> {
        self.policy.refusal(ip, namespace, service)
    }

    /// Whether any slice of `services` has an address this translation refuses.
    pub fn any_refused(&self, services: &HashSet<Key>) -> bool {
        !self.refused(services).is_empty()
    }

    /// One Error diagnostic per refused address in the slices of `services` (those the
    /// snapshot uses), on the EndpointSlice.
    pub fn report_refused(&self, services: &HashSet<Key>, diags: &mut Diagnostics) {
        for (slice, ip, why) in self.refused(services) {
            let m = &slice.metadata;
            let service = slice.service().unwrap_or_default();
            let hint = if why.opt_in_allows() {
                " (--allow-node-local-endpoints accepts it)"
            } else {
                ""
            };
            let ns = m.namespace.clone().unwrap_or_default();
            diags.error(
                &ObjectRef::new(
                    ObjectKind::EndpointSlice,
                    ns.clone(),
                    m.name.clone().unwrap_or_default(),
                ),
                REFUSED_REASON,
                format!(
                    "endpoint {ip} of Service {ns}/{service} is {}, which points into the \
                     node; not served{hint}",
                    why.describe()
                ),
            );
        }
    }

    /// Endpoints for one port of the Service `namespace/service`, sorted by address.
    pub fn resolve(&self, namespace: &str, service: &str, port: &ServicePort) -> Vec<Endpoint> {
        if self
            .namespaces
            .as_ref()
            .is_some_and(|n| !n.contains(namespace))
        {
            self.missed.store(true, Ordering::Relaxed);
        }
        let Some(slices) = self.by_service.get(&(namespace, service)) else {
            return Vec::new();
        };
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let mut out: BTreeMap<SocketAddr, Endpoint> = BTreeMap::new();
        for slice in slices {
            let ipv6 = match slice.address_type.as_str() {
                "IPv4" => false,
                "IPv6" => true,
                _ => continue,
            };
            let Some(target_port) = slice_port(&slice.ports, port, protocol) else {
                continue;
            };
            for ep in &slice.endpoints {
                let Some(ip) = ep.address else {
                    continue;
                };
                if ip.is_ipv6() != ipv6 || self.policy.refusal(ip, namespace, service).is_some() {
                    continue;
                }
                let ready = ep.ready.unwrap_or(true);
                let serving = ep.serving.unwrap_or(ready);
                let terminating = ep.terminating.unwrap_or(false);
                let state = if ready && !terminating {
                    EndpointState::Active
                } else if serving && terminating {
                    EndpointState::Terminating
                } else {
                    continue;
                };
                let addr = SocketAddr::new(ip, target_port);
                let endpoint = Endpoint {
                    addr: addr.into(),
                    state,
                    weight: 1,
                    node_name: ep.node_name.clone(),
                    zone: ep.zone.clone(),
                    target: ep.target.clone(),
                };
                match out.get(&addr) {
                    Some(have) if have.state <= state => {}
                    _ => {
                        out.insert(addr, endpoint);
                    }
                }
            }
        }
        out.into_values().collect()
    }
}

/// The port number on the endpoints of one slice for `port`, or `None` if the slice does not
/// carry it.
fn slice_port(ports: &[EndpointPort], port: &ServicePort, protocol: &str) -> Option<u16> {
    let same_proto = |p: &&EndpointPort| p.protocol.as_deref().unwrap_or("TCP") == protocol;
    let by_name = |name: &str| {
        ports
            .iter()
            .filter(same_proto)
            .find(|p| p.name.as_deref().unwrap_or_default() == name)
            .and_then(|p| p.port)
            .and_then(|n| u16::try_from(n).ok())
    };
    if let Some(n) = by_name(port.name.as_deref().unwrap_or_default()) {
        return Some(n);
    }
    match &port.target_port {
        Some(IntOrString::String(name)) => by_name(name),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n != 0),
        None => u16::try_from(port.port).ok().filter(|n| *n != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn resolve(objects: &Objects, port: &ServicePort) -> Vec<(String, EndpointState)> {
        EndpointIndex::new(objects, &TranslateConfig::default())
            .resolve("default", "web", port)
            .into_iter()
            .map(|e| (e.addr.to_string(), e.state))
            .collect()
    }

    #[test]
    fn port_resolution() {
        use EndpointState::*;
        struct Case {
            name: &'static str,
            port: ServicePort,
            slice_ports: Vec<(Option<&'static str>, i32)>,
            want: Vec<(&'static str, EndpointState)>,
        }
        let cases = [
            Case {
                name: "named service port -> same-named slice port",
                port: mk_port(Some("http"), 80, IntOrString::Int(8080)),
                slice_ports: vec![(Some("http"), 8081)],
                want: vec![("198.19.0.2:8081", Active)],
            },
            Case {
                name: "unnamed single port",
                port: mk_port(None, 80, IntOrString::Int(8080)),
                slice_ports: vec![(None, 8080)],
                want: vec![("198.19.0.2:8080", Active)],
            },
            Case {
                name: "named targetPort -> endpoint port name",
                port: mk_port(Some("web"), 80, IntOrString::String("h".into())),
                slice_ports: vec![(Some("h"), 9000)],
                want: vec![("198.19.0.2:9000", Active)],
            },
            Case {
                name: "numeric targetPort when slice has no matching port",
                port: mk_port(Some("web"), 80, IntOrString::Int(7000)),
                slice_ports: vec![],
                want: vec![("198.19.0.2:7000", Active)],
            },
            Case {
                name: "named targetPort missing from slice",
                port: mk_port(Some("web"), 80, IntOrString::String("nope".into())),
                slice_ports: vec![(Some("h"), 9000)],
                want: vec![],
            },
        ];
        for c in cases {
            let mut objects = Objects::default();
            objects.upsert(mk_slice(
                "default",
                "web-1",
                "web",
                "IPv4",
                &c.slice_ports,
                &[("198.19.0.2", Some(true), None, None)],
            ));
            let want: Vec<(String, EndpointState)> =
                c.want.iter().map(|(a, s)| (a.to_string(), *s)).collect();
            assert_eq!(resolve(&objects, &c.port), want, "{}", c.name);
        }
    }

    #[test]
    fn conditions_slices_and_families() {
        use EndpointState::*;
        let mut objects = Objects::default();
        objects.upsert(mk_slice(
            "default",
            "web-v4",
            "web",
            "IPv4",
            &[(None, 8080)],
            &[
                ("198.19.0.2", Some(true), None, None),               // ready
                ("198.19.1.2", None, None, None),                     // unset = ready
                ("198.19.2.2", Some(false), Some(true), Some(true)),  // terminating, serving
                ("198.19.3.2", Some(false), Some(false), Some(true)), // terminating, not serving
                ("198.19.4.2", Some(false), None, None),              // not ready
            ],
        ));
        objects.upsert(mk_slice(
            "default",
            "web-v6",
            "web",
            "IPv6",
            &[(None, 8080)],
            &[("2001:db8:1:0::2", Some(true), None, None)],
        ));
        // The same address in a second slice during a move: best state wins.
        objects.upsert(mk_slice(
            "default",
            "web-v4b",
            "web",
            "IPv4",
            &[(None, 8080)],
            &[("198.19.2.2", Some(true), None, None)],
        ));
        // Another service's slice is not mixed in.
        objects.upsert(mk_slice(
            "default",
            "other-1",
            "other",
            "IPv4",
            &[(None, 8080)],
            &[("198.19.9.2", Some(true), None, None)],
        ));
        let port = mk_port(None, 80, IntOrString::Int(8080));
        let got = resolve(&objects, &port);
        let want = [
            ("198.19.0.2:8080", Active),
            ("198.19.1.2:8080", Active),
            ("198.19.2.2:8080", Active),
            ("[2001:db8:1::2]:8080", Active),
        ];
        assert_eq!(got, want.map(|(a, s)| (a.to_string(), s)));

        let mut objects = Objects::default();
        objects.upsert(mk_slice(
            "default",
            "web-v4",
            "web",
            "IPv4",
            &[(None, 8080)],
            &[("198.19.2.2", Some(false), Some(true), Some(true))],
        ));
        assert_eq!(
            resolve(&objects, &port),
            [("198.19.2.2:8080".to_string(), Terminating)]
        );
        let ep = &EndpointIndex::new(&objects, &TranslateConfig::default())
            .resolve("default", "web", &port)[0];
        assert_eq!(ep.node_name.as_deref(), Some("node-a"));
        assert_eq!(ep.zone.as_deref(), Some("zone-1"));
    }
}
