//! Small builders of L7 snapshots for unit tests, end-to-end tests and benchmarks, so each
//! test states only the hosts, paths and backends it is about.

use std::{net::SocketAddr, sync::Arc};

use crate::model::{
    BackendProtocol, Endpoint, EndpointState, L7Config, LoadBalancing, ObjectKind, ObjectRef,
    PathMatch, Route, RouteAction, RouteMatch, RouteOrigin, RoutePolicy, Snapshot, Upstream,
    VirtualHost, WeightedUpstream,
};

/// A path match from an Ingress `pathType` name (`Regex` for a regex route).
pub fn path(kind: &str, p: &str) -> PathMatch {
    match kind {
        "Exact" => PathMatch::Exact(p.into()),
        "Prefix" => PathMatch::Prefix(p.into()),
        "Regex" => PathMatch::Regex(p.into()),
        _ => PathMatch::CharPrefix(p.into()),
    }
}

/// An upstream named `default/<service>:80` without endpoints.
pub fn upstream(service: &str) -> Arc<Upstream> {
    upstream_at(service, &[])
}

/// An upstream named `default/<service>:80` with these active endpoints.
pub fn upstream_at(service: &str, addrs: &[SocketAddr]) -> Arc<Upstream> {
    Arc::new(Upstream {
        id: format!("default/{service}:80"),
        service: ObjectRef {
            kind: ObjectKind::Service,
            namespace: "default".into(),
            name: service.into(),
        },
        protocol: BackendProtocol::Http,
        endpoints: addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Endpoint {
                addr: (*a).into(),
                state: EndpointState::Active,
                weight: 1,
                node_name: None,
                zone: None,
                target: Some(format!("{service}-{i}").into()),
            })
            .collect(),
        load_balancing: LoadBalancing::RoundRobin,
        affinity: None,
        service_upstream: false,
        external_name: None,
        tls: None,
    })
}

/// A route forwarding to `default/<service>:80` (no endpoints), from Ingress `default/ing`.
pub fn route(path: PathMatch, service: &str) -> Route {
    route_to(path, upstream(service))
}

/// A route forwarding to this upstream, from Ingress `default/ing`.
pub fn route_to(path: PathMatch, upstream: Arc<Upstream>) -> Route {
    let written = match &path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::CharPrefix(p) => p.clone(),
        PathMatch::Regex(r) | PathMatch::FullRegex(r) => r.clone(),
    };
    Route {
        matches: RouteMatch::path(path),
        action: RouteAction::Forward(vec![WeightedUpstream {
            upstream,
            weight: 1,
        }]),
        policy: Arc::new(RoutePolicy::default()),
        origin: RouteOrigin {
            object: ObjectRef {
                kind: ObjectKind::Ingress,
                namespace: "default".into(),
                name: "ing".into(),
            },
            rule: Some(0),
            path: Some(0),
            created: 0,
            written_path: Some(written.into()),
        },
        canary: None,
        errors: None,
    }
}

/// A virtual host; `""` is the any-host rule set, `*.x` a wildcard.
pub fn vhost(host: &str, routes: Vec<Route>, tls: bool) -> VirtualHost {
    VirtualHost {
        host: host.into(),
        routes: routes.into(),
        tls,
        app_root: None,
        client_auth: None,
    }
}

/// An L7 config from virtual hosts, filed by their host names as translation does.
pub fn l7_with(hosts: Vec<VirtualHost>, default_backend: Option<Arc<Upstream>>) -> L7Config {
    let mut l7 = L7Config {
        hosts: Default::default(),
        default_backend,
        ..L7Config::default()
    };
    for vh in hosts {
        if vh.host.is_empty() {
            l7.any_host = Some(Arc::new(vh));
        } else if let Some(suffix) = vh.host.strip_prefix("*.") {
            l7.wildcard_hosts.insert(suffix.to_string(), Arc::new(vh));
        } else {
            l7.hosts.insert(vh.host.clone(), Arc::new(vh));
        }
    }
    l7
}

/// A snapshot holding only this L7 config.
pub fn snapshot(version: u64, l7: L7Config) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        version,
        l7,
        ..Snapshot::default()
    })
}
