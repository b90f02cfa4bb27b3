//! The addresses of an ExternalName upstream ([`crate::model::ExternalName`]), resolved when a
//! request needs them and kept for a while.
//!
//! ingress-nginx resolves the name in its Lua balancer (`rootfs/etc/nginx/lua/util/dns.lua`,
//! cached for the answer's TTL) and balances over the addresses; a name that does not resolve
//! leaves nginx nothing to connect to: 502 (e2e `service_externalname.go`, "should return
//! status 502 for service type=ExternalName with an invalid host"). Here the system resolver
//! (`getaddrinfo`, through tokio) answers, which gives no TTL: an answer is kept
//! [`ANSWER_LIFETIME`], a failure [`FAILURE_LIFETIME`] (so a name that does not resolve costs
//! one lookup a second, not one per request). One lookup at a time per upstream; requests
//! meanwhile wait for its answer.
//!
//! The addresses become the endpoints of a runtime made from the upstream's spec
//! ([`UpstreamRuntime::new`]), so balancing, affinity, passive health and
//! `proxy-next-upstream` retries work over them as over a Service's pods; a new answer keeps
//! the counters of the addresses it still has. Addresses into the node are refused as
//! EndpointSlice addresses are ([`crate::model::translate::node_local`]): loopback only with
//! `--allow-node-local-endpoints`, link-local (cloud metadata) never.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;

use super::UpstreamRuntime;
use crate::model::{Endpoint, EndpointState, ExternalName, Upstream, translate::node_local};

/// How long a resolved answer is used (the system resolver gives no TTL).
pub const ANSWER_LIFETIME: Duration = Duration::from_secs(30);
/// How long a failed lookup is the answer.
pub const FAILURE_LIFETIME: Duration = Duration::from_secs(1);
/// The longest one lookup may take (ingress-nginx's Lua resolver: 2 s, retried 5 times).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to an ExternalName upstream has no address: the 502's reason.
pub type Unresolved = Arc<str>;

/// One ExternalName upstream's latest answer.
#[derive(Debug, Default)]
pub struct Resolution {
    latest: ArcSwapOption<Answer>,
    /// Held by the one lookup under way.
    lookup: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Answer {
    until: Instant,
    runtime: Result<Arc<UpstreamRuntime>, Unresolved>,
}

impl Resolution {
    /// The runtime over the addresses `parent`'s name resolves to now (`parent.spec` has an
    /// `external_name`), or why there is none.
    pub async fn resolve(
        &self,
        parent: &UpstreamRuntime,
    ) -> Result<Arc<UpstreamRuntime>, Unresolved> {
        if let Some(a) = self.fresh() {
            return a;
        }
        let _one = self.lookup.lock().await;
        // Another request's lookup may have answered while this one waited.
        if let Some(a) = self.fresh() {
            return a;
        }
        let Some(target) = parent.spec.external_name.as_ref() else {
            return Err("not an ExternalName upstream".into());
        };
        let previous = self.latest.load_full();
        let previous = previous.as_ref().and_then(|a| a.runtime.as_ref().ok());
        let (lifetime, runtime) = match lookup(target).await {
            Ok(addrs) => (
                ANSWER_LIFETIME,
                Ok(Arc::new(over(parent, previous.map(|p| &**p), addrs))),
            ),
            Err(why) => (FAILURE_LIFETIME, Err(why)),
        };
        self.latest.store(Some(Arc::new(Answer {
            until: Instant::now() + lifetime,
            runtime: runtime.clone(),
        })));
        runtime
    }

    fn fresh(&self) -> Option<Result<Arc<UpstreamRuntime>, Unresolved>> {
        let a = self.latest.load();
        let a = a.as_ref().filter(|a| a.until > Instant::now())?;
        Some(a.runtime.clone())
    }
}

/// The addresses of `target` the proxy may connect to, in the resolver's order, without
/// duplicates.
async fn lookup(target: &ExternalName) -> Result<Vec<SocketAddr>, Unresolved> {
    let found = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await;
    let found = match found {
        Err(_) => return Err(format!("resolving {} timed out", target.host).into()),
        Ok(Err(e)) => return Err(format!("resolving {}: {e}", target.host).into()),
        Ok(Ok(found)) => found,
    };
    let mut addrs = Vec::new();
    let mut refused = None;
    for a in found {
        match node_local::classify(a.ip()) {
            Some(kind) if !(target.loopback_allowed && kind.opt_in_allows()) => {
                refused = Some(kind);
            }
            _ if addrs.contains(&a) => {}
            _ => addrs.push(a),
        }
    }
    match (addrs.is_empty(), refused) {
        (false, _) => Ok(addrs),
        (true, Some(kind)) => Err(format!(
            "{} resolves only to refused addresses ({})",
            target.host,
            kind.describe()
        )
        .into()),
        (true, None) => Err(format!("{} resolves to no address", target.host).into()),
    }
}

/// A runtime of `parent`'s spec with `addrs` as its endpoints, keeping the counters of
/// `previous` (the last answer's runtime; else `parent`'s rotation and TLS).
fn over(
    parent: &UpstreamRuntime,
    previous: Option<&UpstreamRuntime>,
    addrs: Vec<SocketAddr>,
) -> UpstreamRuntime {
    let spec = Upstream {
        endpoints: addrs
            .into_iter()
            .map(|addr| Endpoint {
                addr: addr.into(),
                state: EndpointState::Active,
                weight: 1,
                node_name: None,
                zone: None,
                target: None,
            })
            .collect(),
        external_name: None,
        ..(*parent.spec).clone()
    };
    UpstreamRuntime::new(
        Arc::new(spec),
        Some(previous.unwrap_or(parent)),
        parent.health,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::HealthPolicy;

    fn parent(host: &str, loopback_allowed: bool) -> UpstreamRuntime {
        let mut spec = (*crate::proxy::fixtures::upstream_at("ext", &[])).clone();
        spec.external_name = Some(Box::new(ExternalName {
            host: host.into(),
            port: 8080,
            loopback_allowed,
        }));
        UpstreamRuntime::new(Arc::new(spec), None, HealthPolicy::default())
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback_endpoints_when_allowed() {
        let p = parent("localhost", true);
        let r = p.external.as_ref().expect("external runtime");
        let rt = r.resolve(&p).await.expect("resolved");
        assert!(!rt.spec.endpoints.is_empty());
        assert!(
            rt.spec
                .endpoints
                .iter()
                .all(|e| e.addr.ip().is_loopback() && e.addr.port() == 8080)
        );
        assert!(rt.spec.external_name.is_none());
        // The same answer while it lasts: one runtime, its counters kept.
        assert!(Arc::ptr_eq(&rt, &r.resolve(&p).await.expect("resolved")));
    }

    #[tokio::test]
    async fn loopback_refused_without_the_opt_in_and_bad_names_fail() {
        let p = parent("localhost", false);
        let why = p.external.as_ref().unwrap().resolve(&p).await.unwrap_err();
        assert!(why.contains("refused addresses"), "{why}");
        let p = parent("invalid.hostname.invalid", false);
        assert!(p.external.as_ref().unwrap().resolve(&p).await.is_err());
    }
}
