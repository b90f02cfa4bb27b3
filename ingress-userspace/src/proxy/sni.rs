//! What a TLS connection on the HTTPS port gets from its ClientHello's SNI, before anything is
//! terminated: passed untouched to a pod, closed, or terminated here. One table for both
//! sources of passthrough: ingress-nginx's `ssl-passthrough` hosts (exact names, tried first)
//! and the Gateway API's TLSRoutes on `TLS` passthrough listeners with the listeners'
//! hostnames ([`crate::model::L7Config::gateway_sni`]). A Gateway port other than the HTTPS
//! port has a table of its own ([`crate::model::L7Config::gateway_sni_ports`]); on a port of
//! passthrough listeners only, whatever would be terminated is closed instead (no SNI, not
//! TLS, a name no route takes): nothing there has a certificate.
//!
//! Order: an exact name, then `*.` wildcards from the most specific (longest) suffix; a
//! Gateway wildcard takes one or more labels (`*.example.com` matches `a.b.example.com`, never
//! `example.com`). A name no entry covers is terminated, but on an HTTPS port whose Gateway
//! listeners there are TLS passthrough ones only (and no catch-all Ingress rule): then it is
//! closed, as on a port of passthrough listeners only.

use std::{collections::HashMap, sync::Arc};

use super::{listener::ListenerId, upstream::UpstreamRuntime};
use crate::model::{L7Config, ListenerProtocol, SniAction, SniPort, Upstream};

/// Where one pattern sends a connection.
enum Entry {
    Pass {
        /// The pattern as the metrics label (bounded: one per table entry).
        label: Arc<String>,
        /// `(weight, upstream)`, weights above zero.
        backends: Vec<(u32, Arc<UpstreamRuntime>)>,
        /// The weight of backendRefs that do not resolve: that share is closed.
        rejected_weight: u32,
        /// Terminate TLS first (a TLSRoute on a `tls.mode: Terminate` listener).
        terminate: bool,
    },
    Close {
        label: Arc<String>,
    },
    Terminate,
}

/// The decision for one SNI name.
pub enum Decision {
    /// Pass to `upstream`: the bytes as received, or (`terminate`) the plain bytes once TLS
    /// is terminated here.
    Pass {
        label: Arc<String>,
        upstream: Arc<UpstreamRuntime>,
        terminate: bool,
    },
    /// A passthrough listener's name that no route serves, or a route without a valid
    /// backend (Gateway API: the connection is closed). `label`: the pattern matched.
    Close {
        label: Arc<String>,
    },
    Terminate,
}

/// SNI pattern -> entry, as compiled from one snapshot.
#[derive(Default)]
pub struct SniTable {
    exact: HashMap<String, Entry>,
    /// `*.` patterns by their suffix (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Entry>,
    /// Each Gateway address's own table ([`crate::model::GatewayAddress::sni`]): a connection
    /// to that address is decided there alone (no Ingress `ssl-passthrough` host).
    at: HashMap<std::net::IpAddr, SniTable>,
    /// Every Gateway address (with a table or not).
    claimed: std::collections::HashSet<std::net::IpAddr>,
    /// Tables of Gateway ports other than the HTTPS port (in `at`: the address's own), and
    /// whether a name outside one is terminated ([`SniPort::terminates`]).
    ports: HashMap<u16, (SniTable, bool)>,
    /// Ports opened for Gateway listeners -> whether a connection there may be terminated
    /// (an HTTPS listener is on it somewhere), where no table of [`Self::ports`] decides.
    gateway_ports: HashMap<u16, bool>,
    /// On the HTTPS port, a name no entry covers (or no SNI) is closed, not terminated
    /// ([`crate::model::L7Config::gateway_sni_closes_unmatched`]).
    closes_unmatched: bool,
}

impl SniTable {
    /// Compiles `l7`'s passthrough hosts and Gateway SNI entries; `runtime_of` gives each
    /// upstream its runtime (shared with the routes').
    pub fn build(
        l7: &L7Config,
        runtime_of: &mut impl FnMut(&Arc<Upstream>) -> Arc<UpstreamRuntime>,
    ) -> SniTable {
        let mut t = SniTable {
            claimed: l7.gateway_addresses.keys().copied().collect(),
            closes_unmatched: l7.gateway_sni_closes_unmatched,
            ..Default::default()
        };
        t.gateway_ports = (l7.gateway_listeners.iter())
            .map(|(p, proto)| (*p, *proto != ListenerProtocol::TlsPassthrough))
            .collect();
        for (ip, a) in (l7.gateway_addresses.iter())
            .filter(|(_, a)| !a.sni.is_empty() || !a.sni_ports.is_empty())
        {
            let mut own = SniTable {
                closes_unmatched: a.sni_closes_unmatched,
                ..Default::default()
            };
            own.add_gateway(&a.sni, runtime_of);
            own.add_ports(&a.sni_ports, runtime_of);
            t.at.insert(*ip, own);
        }
        t.add_ports(&l7.gateway_sni_ports, runtime_of);
        for (host, p) in &l7.passthrough {
            t.exact.insert(
                host.clone(),
                Entry::Pass {
                    label: Arc::new(host.clone()),
                    backends: vec![(1, runtime_of(&p.upstream))],
                    rejected_weight: 0,
                    terminate: false,
                },
            );
        }
        t.add_gateway(&l7.gateway_sni, runtime_of);
        t
    }

    /// Adds the tables of Gateway ports besides the HTTPS port.
    fn add_ports(
        &mut self,
        ports: &std::collections::BTreeMap<u16, SniPort>,
        runtime_of: &mut impl FnMut(&Arc<Upstream>) -> Arc<UpstreamRuntime>,
    ) {
        for (port, p) in ports {
            let mut own = SniTable::default();
            own.add_gateway(&p.sni, runtime_of);
            self.ports.insert(*port, (own, p.terminates));
        }
    }

    /// Adds Gateway SNI entries; patterns already there (`ssl-passthrough` hosts) stay.
    fn add_gateway(
        &mut self,
        sni: &std::collections::BTreeMap<String, SniAction>,
        runtime_of: &mut impl FnMut(&Arc<Upstream>) -> Arc<UpstreamRuntime>,
    ) {
        let t = self;
        for (pattern, action) in sni {
            let entry = match action {
                SniAction::Pass {
                    backends,
                    rejected_weight,
                    terminate,
                    ..
                } => Entry::Pass {
                    rejected_weight: *rejected_weight,
                    label: Arc::new(pattern.clone()),
                    backends: backends
                        .iter()
                        .filter(|b| b.weight > 0)
                        .map(|b| (b.weight, runtime_of(&b.upstream)))
                        .collect(),
                    terminate: *terminate,
                },
                SniAction::Close => Entry::Close {
                    label: Arc::new(pattern.clone()),
                },
                SniAction::Terminate => Entry::Terminate,
            };
            // Ingress `ssl-passthrough` hosts were there first and stay.
            match pattern.strip_prefix("*.") {
                Some(suffix) => t.wildcard.entry(suffix.to_string()).or_insert(entry),
                None => t.exact.entry(pattern.clone()).or_insert(entry),
            };
        }
    }

    /// True when no connection needs its ClientHello read first.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.wildcard.is_empty()
            && self.at.is_empty()
            && self.ports.is_empty()
            && self.gateway_ports.values().all(|terminates| *terminates)
            && !self.closes_unmatched
    }

    /// The decision for `name` (lower case; `None`: no SNI, or not a ClientHello) on a
    /// connection to the local address `local` through `listener`: a Gateway's address
    /// decides by its own table; a port opened for Gateway listeners by its own.
    pub fn decide_at(
        &self,
        local: std::net::IpAddr,
        listener: ListenerId,
        name: Option<&str>,
    ) -> Decision {
        let local = local.to_canonical();
        let scope = match self.at.get(&local) {
            Some(own) => Some(own),
            // Another Gateway's address: nothing of the node's tables is served there.
            None if self.claimed.contains(&local) => None,
            None => Some(self),
        };
        let gateway_port = (listener.gateway)
            .then(|| self.gateway_ports.get(&listener.port))
            .flatten();
        let Some(&port_terminates) = gateway_port else {
            // The HTTPS port (or a Gateway address's socket on it).
            return match (scope, name) {
                (Some(t), Some(name)) => t.lookup(name).unwrap_or_else(|| t.unmatched()),
                (Some(t), None) => t.unmatched(),
                (None, _) => Decision::Terminate,
            };
        };
        let port = scope.and_then(|t| t.ports.get(&listener.port));
        let terminates = port.map_or(port_terminates, |(_, t)| *t);
        let decision = match (port, name) {
            (Some((t, _)), Some(name)) => t.decide(name),
            _ => Decision::Terminate,
        };
        match decision {
            // Labelled by no pattern (a client's name would be an unbounded metrics label).
            Decision::Terminate if !terminates => Decision::Close {
                label: Arc::new(String::new()),
            },
            d => d,
        }
    }

    /// The decision for `name` (lower case).
    pub fn decide(&self, name: &str) -> Decision {
        self.lookup(name).unwrap_or(Decision::Terminate)
    }

    /// On the HTTPS port, what a name no entry covers gets.
    fn unmatched(&self) -> Decision {
        if self.closes_unmatched {
            // Labelled by no pattern (a client's name would be an unbounded metrics label).
            Decision::Close {
                label: Arc::new(String::new()),
            }
        } else {
            Decision::Terminate
        }
    }

    /// The decision of the entry covering `name` (lower case), `None` without one.
    fn lookup(&self, name: &str) -> Option<Decision> {
        let entry = self.exact.get(name).or_else(|| {
            name.match_indices('.')
                .find_map(|(i, _)| self.wildcard.get(&name[i + 1..]))
        })?;
        Some(match entry {
            Entry::Terminate => Decision::Terminate,
            Entry::Close { label } => Decision::Close {
                label: Arc::clone(label),
            },
            Entry::Pass {
                label,
                backends,
                rejected_weight,
                terminate,
            } => match pick(backends, *rejected_weight) {
                Some(upstream) => Decision::Pass {
                    label: Arc::clone(label),
                    upstream,
                    terminate: *terminate,
                },
                // No valid backendRef, or the share of those that do not resolve: nothing to
                // pass to (Gateway API: reject).
                None => Decision::Close {
                    label: Arc::clone(label),
                },
            },
        })
    }
}

/// One of `backends` at random, in proportion to its weight; `None` (the connection closed)
/// for the `rejected` weight's share, or with no weight at all.
fn pick(backends: &[(u32, Arc<UpstreamRuntime>)], rejected: u32) -> Option<Arc<UpstreamRuntime>> {
    let total: u64 = backends.iter().map(|(w, _)| u64::from(*w)).sum::<u64>() + u64::from(rejected);
    if total == 0 {
        return None;
    }
    let mut at = rand::random_range(0..total);
    for (w, u) in backends {
        if at < u64::from(*w) {
            return Some(Arc::clone(u));
        }
        at -= u64::from(*w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{ObjectKind, ObjectRef, Passthrough, WeightedUpstream},
        proxy::upstream::HealthPolicy,
    };

    fn upstream(name: &str) -> Arc<Upstream> {
        Arc::new(Upstream {
            id: format!("default/{name}:80"),
            service: ObjectRef::new(ObjectKind::Service, "default", name),
            protocol: crate::model::BackendProtocol::Http,
            endpoints: Vec::new(),
            load_balancing: crate::model::LoadBalancing::RoundRobin,
            affinity: None,
            service_upstream: false,
            external_name: None,
            tls: None,
        })
    }

    fn pass(name: &str) -> SniAction {
        SniAction::Pass {
            route: ObjectRef::new(ObjectKind::TLSRoute, "default", name),
            backends: vec![WeightedUpstream {
                upstream: upstream(name),
                weight: 1,
            }],
            rejected_weight: 0,
            terminate: false,
        }
    }

    fn decided(t: &SniTable, name: &str) -> String {
        match t.decide(name) {
            Decision::Pass {
                label, upstream, ..
            } => {
                format!("pass {} via {label}", upstream.spec.service.name)
            }
            Decision::Close { label } => format!("close via {label}"),
            Decision::Terminate => "terminate".into(),
        }
    }

    /// Gateway API `BackendRef.weight`: connections split `weight / sum of weights`. 3:1 over
    /// 8000 picks: 6000 expected, the band is more than 7 standard deviations (~39) wide.
    #[test]
    fn backends_are_picked_in_proportion_to_their_weights() {
        let rt = |n: &str| {
            Arc::new(UpstreamRuntime::new(
                upstream(n),
                None,
                HealthPolicy::default(),
            ))
        };
        let backends = vec![(3, rt("a")), (1, rt("b")), (0, rt("never"))];
        let mut a = 0;
        for _ in 0..8000 {
            let u = pick(&backends, 0).unwrap();
            assert_ne!(u.spec.service.name, "never");
            if u.spec.service.name == "a" {
                a += 1;
            }
        }
        assert!((5700..=6300).contains(&a), "{a}");
        assert!(pick(&[(0, rt("z"))], 0).is_none());
        // A backendRef that does not resolve keeps its weight: 1 of 4 connections is closed
        // (Gateway API TLSRoute: "rejections must respect weight"). 2000 expected of 8000.
        let closed = (0..8000)
            .filter(|_| pick(&[(3, rt("a"))], 1).is_none())
            .count();
        assert!((1700..=2300).contains(&closed), "{closed}");
        assert!(pick(&[], 1).is_none());
    }

    /// A Gateway address decides by its own Gateway's table alone: an Ingress
    /// `ssl-passthrough` host and another Gateway's entries are not seen there, and an address
    /// of a Gateway without passthrough listeners terminates everything.
    #[test]
    fn a_gateway_address_has_its_own_table() {
        let mut l7 = L7Config::default();
        l7.passthrough.insert(
            "vault.example".into(),
            Passthrough {
                ingress: ObjectRef::new(ObjectKind::Ingress, "default", "vault"),
                upstream: upstream("ingress-vault"),
            },
        );
        l7.gateway_sni.insert("db.example".into(), pass("node-db"));
        let (vip, other): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.7".parse().unwrap(), "10.0.0.8".parse().unwrap());
        let mut own = crate::model::GatewayAddress::default();
        own.sni.insert("db.example".into(), pass("vip-db"));
        own.sni.insert("*.example".into(), SniAction::Close);
        l7.gateway_addresses.insert(vip, own);
        l7.gateway_addresses.insert(other, Default::default());
        let mut runtime_of = |u: &Arc<Upstream>| {
            Arc::new(UpstreamRuntime::new(
                u.clone(),
                None,
                HealthPolicy::default(),
            ))
        };
        let t = SniTable::build(&l7, &mut runtime_of);
        let https = ListenerId {
            port: 443,
            gateway: false,
        };
        let at = |ip: std::net::IpAddr, name: &str| match t.decide_at(ip, https, Some(name)) {
            Decision::Pass { upstream, .. } => format!("pass {}", upstream.spec.service.name),
            Decision::Close { .. } => "close".into(),
            Decision::Terminate => "terminate".into(),
        };
        let node: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(at(vip, "db.example"), "pass vip-db");
        assert_eq!(at(vip, "vault.example"), "close");
        assert_eq!(
            at("::ffff:10.0.0.7".parse().unwrap(), "db.example"),
            "pass vip-db"
        );
        assert_eq!(at(other, "db.example"), "terminate");
        assert_eq!(at(other, "vault.example"), "terminate");
        assert_eq!(at(node, "db.example"), "pass node-db");
        assert_eq!(at(node, "vault.example"), "pass ingress-vault");
    }

    /// Exact names first (an Ingress `ssl-passthrough` host before a Gateway entry of the
    /// same name), then wildcards from the longest suffix; a wildcard takes one or more labels
    /// and never its bare suffix; nothing known: terminated.
    #[test]
    fn the_most_specific_entry_decides() {
        let mut l7 = L7Config::default();
        l7.passthrough.insert(
            "vault.example".into(),
            Passthrough {
                ingress: ObjectRef::new(ObjectKind::Ingress, "default", "vault"),
                upstream: upstream("ingress-vault"),
            },
        );
        for (k, v) in [
            ("vault.example", pass("route-vault")),
            ("*.example", SniAction::Close),
            ("*.deep.example", pass("deep")),
            ("www.example", SniAction::Terminate),
            ("db.example", pass("db")),
        ] {
            l7.gateway_sni.insert(k.into(), v);
        }
        let mut runtime_of = |u: &Arc<Upstream>| {
            Arc::new(UpstreamRuntime::new(
                u.clone(),
                None,
                HealthPolicy::default(),
            ))
        };
        let t = SniTable::build(&l7, &mut runtime_of);
        for (name, want) in [
            ("vault.example", "pass ingress-vault via vault.example"),
            ("db.example", "pass db via db.example"),
            ("a.b.deep.example", "pass deep via *.deep.example"),
            ("deep.example", "close via *.example"),
            ("x.y.example", "close via *.example"),
            ("www.example", "terminate"),
            ("example", "terminate"),
            ("other.test", "terminate"),
        ] {
            assert_eq!(decided(&t, name), want, "{name}");
        }
    }

    /// A Gateway port besides the HTTPS port decides by its own table (Gateway API listener
    /// isolation: a TLSRoute is passed on its listener's port only). On a port of passthrough
    /// listeners only, a name no route takes, no SNI, or a name the HTTPS port would
    /// terminate is closed (Gateway API: a connection no TLSRoute matches is rejected); where
    /// an HTTPS listener shares the port it is terminated. A Gateway address sees its own
    /// port tables alone, and a passthrough-only port without one closes.
    #[test]
    fn a_gateway_port_has_its_own_table() {
        use crate::model::{ListenerProtocol::*, SniPort};
        let mut l7 = L7Config::default();
        l7.gateway_sni.insert("db.example".into(), pass("https-db"));
        l7.gateway_sni
            .insert("www.example".into(), SniAction::Terminate);
        l7.gateway_listeners = [
            (8443, TlsPassthrough),
            (9443, Https),
            (7443, TlsPassthrough),
        ]
        .into_iter()
        .collect();
        let port = |entries: &[(&str, SniAction)], terminates| SniPort {
            sni: (entries.iter())
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            terminates,
        };
        l7.gateway_sni_ports
            .insert(8443, port(&[("db.example", pass("8443-db"))], false));
        l7.gateway_sni_ports
            .insert(9443, port(&[("db.example", pass("9443-db"))], true));
        let vip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        let mut own = crate::model::GatewayAddress::default();
        own.sni_ports
            .insert(7443, port(&[("db.example", pass("vip-db"))], false));
        l7.gateway_addresses.insert(vip, own);
        let mut runtime_of = |u: &Arc<Upstream>| {
            Arc::new(UpstreamRuntime::new(
                u.clone(),
                None,
                HealthPolicy::default(),
            ))
        };
        let t = SniTable::build(&l7, &mut runtime_of);
        assert!(!t.is_empty());
        let node: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let at = |ip, port, gateway, name: Option<&str>| match t.decide_at(
            ip,
            ListenerId { port, gateway },
            name,
        ) {
            Decision::Pass { upstream, .. } => format!("pass {}", upstream.spec.service.name),
            Decision::Close { .. } => "close".into(),
            Decision::Terminate => "terminate".into(),
        };
        assert_eq!(at(node, 443, false, Some("db.example")), "pass https-db");
        assert_eq!(at(node, 8443, true, Some("db.example")), "pass 8443-db");
        assert_eq!(at(node, 8443, true, Some("other.example")), "close");
        assert_eq!(at(node, 8443, true, Some("www.example")), "close");
        assert_eq!(at(node, 8443, true, None), "close");
        assert_eq!(at(node, 9443, true, Some("db.example")), "pass 9443-db");
        assert_eq!(at(node, 9443, true, Some("other.example")), "terminate");
        assert_eq!(at(node, 9443, true, None), "terminate");
        // 7443 is the addressed Gateway's: the node's addresses have no table there.
        assert_eq!(at(node, 7443, true, Some("db.example")), "close");
        assert_eq!(at(vip, 7443, true, Some("db.example")), "pass vip-db");
        assert_eq!(at(vip, 7443, true, Some("other.example")), "close");
        assert_eq!(at(vip, 8443, true, Some("db.example")), "close");
        assert_eq!(at(vip, 443, false, Some("db.example")), "terminate");
    }
}
