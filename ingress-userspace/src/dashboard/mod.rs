//! The read-only dashboard of the admin listener, as Traefik's dashboard and HAProxy's stats
//! page: `/` and `/dashboard` (server-rendered HTML that refreshes itself) and
//! `/dashboard.json` (the same data). Hosts and routes of the live snapshot with request and
//! error totals and a p99 bound, each backend's endpoints with their state and passive health,
//! the XDP counters per L4 service, every diagnostic, the snapshot version and event-to-live.
//! Nothing on it changes anything. [`build`] is pure; [`gather`] reads the live sources.

pub mod html;
pub mod route_metrics;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use tokio::sync::watch;

use crate::{
    controller::LoopStats,
    dataplane::view::{self, ServiceView},
    model::{Endpoint, EndpointState, PathMatch, RouteAction, Snapshot, Upstream, VirtualHost},
    proxy::{EndpointHealth, ProxyHandle},
};

/// Everything the page shows, at one instant.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dashboard {
    /// Version of the newest snapshot the control loop produced.
    pub version: u64,
    /// Version the L7 proxy serves.
    pub served_version: u64,
    pub control: Control,
    pub hosts: Vec<HostView>,
    /// L4 services with their XDP counters; `None` without XDP (`--no-xdp`).
    pub l4: Option<Vec<ServiceView>>,
    /// Why the XDP counters could not be read, when they could not.
    pub l4_error: Option<String>,
    pub diagnostics: Vec<DiagnosticView>,
}

/// The control loop's counts ([`LoopStats`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Control {
    pub snapshots: u64,
    pub events: u64,
    pub apply_errors: u64,
    /// From a source event to its snapshot live in every plane, over the recent window
    /// (milliseconds); `None` before the first snapshot.
    pub event_to_live_p50_ms: Option<f64>,
    pub event_to_live_p99_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostView {
    /// `*` for the rules without a host.
    pub host: String,
    pub tls: bool,
    pub routes: Vec<RouteView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RouteView {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    /// The match, e.g. `Prefix /api`.
    pub matches: String,
    /// The rule's path as written: the `path` label of the request metrics.
    pub path_label: String,
    /// What the client gets ([`crate::model::answer::describe`]): `forward` (with the share
    /// answered 500 for unresolvable backendRefs), `redirect 301 to https://{host}{path}{?query}`,
    /// `respond 503 (reason)` or `default backend`.
    pub action: String,
    /// Requests answered since the daemon started.
    pub requests: u64,
    /// Of those, answered with a 5xx status.
    pub errors: u64,
    /// Upper bound of the histogram bucket holding the p99 time to response headers (ms);
    /// `None` without requests; infinite (JSON `null` too) past the last bucket.
    pub p99_ms: Option<f64>,
    pub backends: Vec<BackendView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendView {
    /// `namespace/name:port`.
    pub upstream: String,
    pub weight: u32,
    /// `service-upstream`: one pseudo-endpoint, the Service's cluster IP.
    pub service_upstream: bool,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointView {
    pub address: SocketAddr,
    /// `active` or `terminating` (EndpointSlice conditions).
    pub state: &'static str,
    /// `healthy`, `failing` (failures since the last success, not ejected), `ejected`, or
    /// `unknown` (not in the proxy's runtime yet).
    pub health: &'static str,
    pub pod: Option<String>,
    pub detail: Option<EndpointHealth>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiagnosticView {
    pub object: String,
    /// `Warning` or `Error`.
    pub severity: String,
    pub reason: String,
    pub message: String,
}

/// The live sources [`gather`] reads.
#[derive(Clone)]
pub struct Sources {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub stats: Arc<Mutex<LoopStats>>,
    pub proxy: ProxyHandle,
    /// Where the XDP maps are pinned; `None` without XDP.
    pub bpf_pin_root: Option<PathBuf>,
}

/// Reads the live sources and builds the dashboard.
pub fn gather(s: &Sources) -> Dashboard {
    let snapshot = Arc::clone(&s.snapshots.borrow());
    let stats = s
        .stats
        .lock()
        .map(|g| g.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let l4 = s.bpf_pin_root.as_deref().map(read_l4);
    build(&Inputs {
        snapshot: &snapshot,
        stats: &stats,
        served_version: s.proxy.version(),
        health: &s.proxy.endpoint_health(),
        metrics_text: &s.proxy.metrics_text(),
        l4,
    })
}

fn read_l4(root: &Path) -> Result<Vec<ServiceView>, String> {
    view::read(root)
        .map(|v| v.services)
        .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
}

/// What [`build`] turns into a [`Dashboard`].
pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub stats: &'a LoopStats,
    pub served_version: u64,
    /// [`ProxyHandle::endpoint_health`].
    pub health: &'a HashMap<(String, SocketAddr), EndpointHealth>,
    /// The proxy's `/metrics` text.
    pub metrics_text: &'a str,
    /// The XDP services, or why they could not be read; `None` without XDP.
    pub l4: Option<Result<Vec<ServiceView>, String>>,
}

/// The dashboard of these inputs.
pub fn build(i: &Inputs<'_>) -> Dashboard {
    let totals = route_metrics::parse(i.metrics_text);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let l7 = &i.snapshot.l7;
    let hosts = l7
        .hosts
        .values()
        .chain(l7.wildcard_hosts.values())
        .chain(&l7.any_host)
        .map(|vh| host_view(vh, &totals, i.health))
        .collect();
    let (l4, l4_error) = match &i.l4 {
        None => (None, None),
        Some(Ok(services)) => (Some(services.clone()), None),
        Some(Err(e)) => (None, Some(e.clone())),
    };
    Dashboard {
        version: i.snapshot.version,
        served_version: i.served_version,
        control: Control {
            snapshots: i.stats.snapshots,
            events: i.stats.events,
            apply_errors: i.stats.apply_errors,
            event_to_live_p50_ms: i.stats.latency_percentile(50.0).map(ms),
            event_to_live_p99_ms: i.stats.latency_percentile(99.0).map(ms),
        },
        hosts,
        l4,
        l4_error,
        diagnostics: i
            .snapshot
            .diagnostics
            .iter()
            .map(|d| DiagnosticView {
                object: d.object.to_string(),
                severity: format!("{:?}", d.severity),
                reason: d.reason.clone(),
                message: d.message.clone(),
            })
            .collect(),
    }
}

fn host_view(
    vh: &VirtualHost,
    totals: &HashMap<String, route_metrics::RouteTotals>,
    health: &HashMap<(String, SocketAddr), EndpointHealth>,
) -> HostView {
    // The proxy's host label (`proxy::router`): `*` for rules without a host.
    let host = if vh.host.is_empty() {
        "*".to_string()
    } else {
        vh.host.clone()
    };
    let routes = vh
        .routes
        .iter()
        .map(|r| {
            let ingress = format!("{}/{}", r.origin.object.namespace, r.origin.object.name);
            let path_label = r.origin.location_path().to_string();
            let t = totals
                .get(&route_metrics::route_key(&ingress, &host, &path_label))
                .cloned()
                .unwrap_or_default();
            // What the client gets: a redirect or a denied location answers before the
            // backends, whatever the action says.
            let action = crate::model::answer::describe(&r.action, &r.policy);
            let backends = match &r.action {
                RouteAction::Forward(ups) if action.starts_with("forward") => ups
                    .iter()
                    .map(|w| backend_view(&w.upstream, w.weight, health))
                    .collect(),
                _ => Vec::new(),
            };
            let mut backends: Vec<BackendView> = backends;
            // The canary's share: `canary-weight` of `canary-weight-total`.
            if let Some(c) = &r.canary {
                backends.push(backend_view(&c.upstream, c.rule.weight, health));
            }
            RouteView {
                ingress,
                matches: match &r.matches.path {
                    PathMatch::Exact(p) => format!("Exact {p}"),
                    PathMatch::Prefix(p) => format!("Prefix {p}"),
                    PathMatch::CharPrefix(p) => format!("ImplementationSpecific {p}"),
                    PathMatch::Regex(p) => format!("Regex {p}"),
                    PathMatch::FullRegex(p) => format!("RegularExpression {p}"),
                },
                path_label,
                action,
                requests: t.requests,
                errors: t.errors,
                p99_ms: t.quantile_bound(0.99).map(|s| s * 1000.0),
                backends,
            }
        })
        .collect();
    HostView {
        host,
        tls: vh.tls,
        routes,
    }
}

fn backend_view(
    up: &Upstream,
    weight: u32,
    health: &HashMap<(String, SocketAddr), EndpointHealth>,
) -> BackendView {
    BackendView {
        upstream: up.id.clone(),
        weight,
        service_upstream: up.service_upstream,
        endpoints: up
            .endpoints
            .iter()
            .map(|e| endpoint_view(e, health.get(&(up.id.clone(), e.addr.socket())).copied()))
            .collect(),
    }
}

fn endpoint_view(e: &Endpoint, detail: Option<EndpointHealth>) -> EndpointView {
    EndpointView {
        address: e.addr.socket(),
        state: match e.state {
            EndpointState::Active => "active",
            EndpointState::Terminating => "terminating",
        },
        health: match detail {
            None => "unknown",
            Some(h) if h.ejected => "ejected",
            Some(h) if h.consecutive_failures > 0 => "failing",
            Some(_) => "healthy",
        },
        pod: e.target.as_deref().map(str::to_string),
        detail,
    }
}

/// The admin pages: `/` and `/dashboard` (HTML), `/dashboard.json`; `None` for other paths.
pub fn respond(path: &str, dashboard: impl FnOnce() -> Dashboard) -> Option<Response<Full<Bytes>>> {
    let (ctype, body) = match path {
        "/" | "/dashboard" => ("text/html; charset=utf-8", html::render(&dashboard())),
        "/dashboard.json" => (
            "application/json",
            serde_json::to_string(&dashboard()).unwrap_or_else(|_| "{}".into()),
        ),
        _ => return None,
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Only its own inline script and style, fetches to itself; no framing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Diagnostic, ObjectKind, ObjectRef, Severity},
        proxy::fixtures,
    };

    const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&";

    fn inputs_snapshot() -> Snapshot {
        let pod: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let mut route = fixtures::route_to(
            fixtures::path("Prefix", "/api"),
            fixtures::upstream_at("web", &[pod]),
        );
        route.origin.written_path = Some(format!("/api{HOSTILE}").into());
        let hosts = vec![
            fixtures::vhost("shop.example.com", vec![route], true),
            fixtures::vhost(
                "",
                vec![fixtures::route(fixtures::path("Exact", "/x"), "other")],
                false,
            ),
        ];
        let mut s = (*fixtures::snapshot(42, fixtures::l7_with(hosts, None))).clone();
        s.diagnostics.push(Diagnostic {
            object: ObjectRef::new(ObjectKind::Ingress, "shop", format!("bad{HOSTILE}")),
            severity: Severity::Error,
            reason: "ServiceNotFound".into(),
            message: format!("service {HOSTILE} not found"),
        });
        s
    }

    fn dashboard(s: &Snapshot) -> Dashboard {
        let pod: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let health = HashMap::from([(
            ("default/web:80".to_string(), pod),
            EndpointHealth {
                ejected: true,
                consecutive_failures: 3,
                in_flight: 0,
                latency_us: 1500,
            },
        )]);
        let path = format!("/api{HOSTILE}");
        let key = route_metrics::route_key("default/ing", "shop.example.com", &path);
        let metrics = format!(
            "xdp_ingress_requests_total{{{key},status=\"200\"}} 7\n\
             xdp_ingress_requests_total{{{key},status=\"502\"}} 3\n\
             xdp_ingress_request_duration_seconds_bucket{{le=\"0.002\",{key}}} 10\n\
             xdp_ingress_request_duration_seconds_bucket{{le=\"+Inf\",{key}}} 10\n"
        );
        let mut stats = LoopStats::default();
        stats.snapshots = 5;
        stats.record_latency(std::time::Duration::from_millis(3));
        build(&Inputs {
            snapshot: s,
            stats: &stats,
            served_version: 42,
            health: &health,
            metrics_text: &metrics,
            l4: None,
        })
    }

    /// A redirecting HTTPRoute rule is shown as the redirect the client gets (status and
    /// `Location` shape), in the JSON too; a rule with no backendRefs as the spec's 500.
    #[test]
    fn redirecting_gateway_rules_show_their_redirect() {
        use crate::model::translate::{TranslateConfig, translate};
        let objects = crate::store::Objects::from_objects(
            crate::source::files::parse_manifests(crate::cli::explain::GATEWAY_REDIRECTS_FOR_TESTS)
                .unwrap(),
        );
        let s = translate(&objects, &TranslateConfig::default());
        let d = dashboard(&s);
        let json = serde_json::to_value(&d).unwrap();
        let routes = json["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == "www.gw.test")
            .unwrap()["routes"]
            .as_array()
            .unwrap()
            .clone();
        let actions: Vec<&str> = routes
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.contains(&"redirect 301 to https://{host}/new{path-after-prefix}{?query}"),
            "{actions:?}"
        );
        assert!(
            actions.contains(&"redirect 302 to {scheme}://other.test{:listener-port}/{?query}"),
            "{actions:?}"
        );
        assert!(
            actions.contains(&"respond 500 (no backendRefs)"),
            "{actions:?}"
        );
        assert!(!actions.iter().any(|a| a.contains("no valid backendRef")));
    }

    #[test]
    fn routes_carry_totals_health_and_diagnostics() {
        let d = dashboard(&inputs_snapshot());
        assert_eq!(
            (d.version, d.served_version, d.control.snapshots),
            (42, 42, 5)
        );
        assert_eq!(d.control.event_to_live_p99_ms, Some(3.0));
        let shop = d
            .hosts
            .iter()
            .find(|h| h.host == "shop.example.com")
            .unwrap();
        let r = &shop.routes[0];
        assert_eq!((r.requests, r.errors, r.p99_ms), (10, 3, Some(2.0)));
        let ep = &r.backends[0].endpoints[0];
        assert_eq!((ep.state, ep.health), ("active", "ejected"));
        // The rules without a host are the proxy's `*` host; no runtime yet: `unknown`.
        let any = d.hosts.iter().find(|h| h.host == "*").unwrap();
        assert_eq!(any.routes[0].requests, 0);
        assert_eq!(d.diagnostics.len(), 1);
        let json: serde_json::Value = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["hosts"][0]["routes"][0]["backends"][0]["endpoints"][0]["health"],
            "ejected"
        );
    }

    #[test]
    fn every_object_string_is_escaped_in_the_page() {
        let page = html::render(&dashboard(&inputs_snapshot()));
        assert!(!page.contains("<img"), "raw markup from an object");
        assert!(!page.contains("onerror=alert(1)>\""));
        // Written path (row key attribute), diagnostic object and message: escaped, present.
        let escaped = "&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;";
        assert_eq!(page.matches(escaped).count(), 3, "{page}");
        for text in [
            "shop.example.com",
            "default/web:80",
            "10.0.0.7:8080",
            "ejected",
            "ServiceNotFound",
            "web-0",
            "id=\"version\">42<",
        ] {
            assert!(page.contains(text), "{text} missing");
        }
        // Exactly one script element: ours.
        assert_eq!(page.matches("<script").count(), 1);
    }

    #[test]
    fn only_the_dashboard_paths_are_served() {
        let d = || Dashboard::default();
        let page = respond("/", d).expect("/");
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(respond("/dashboard", d).is_some());
        let json = respond("/dashboard.json", d).expect("json");
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        assert!(respond("/other", d).is_none());
    }
}
