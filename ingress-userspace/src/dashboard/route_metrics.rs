//! Per-route request totals read back from the proxy's Prometheus exposition text
//! (`xdp_ingress_requests_total`, `xdp_ingress_request_duration_seconds`), keyed by the
//! route's labels. prometheus-client writes label values unescaped, so lines are not parsed
//! into labels: the caller's exact label text (`ingress="ns/name",host="h",path="/p"`) is
//! the key, and only the label around it (`status` after, `le` before), whose values are plain
//! numbers, is split off.

use std::collections::HashMap;

const REQUESTS: &str = "xdp_ingress_requests_total{";
const DURATION_BUCKET: &str = "xdp_ingress_request_duration_seconds_bucket{";

/// Totals of one route since the daemon started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTotals {
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// Cumulative histogram of time to response headers: (upper bound in seconds, count).
    buckets: Vec<(f64, u64)>,
}

impl RouteTotals {
    /// Upper bound (seconds) of the bucket holding the `q` quantile (0..=1) of time to response
    /// headers; `None` without requests, infinite past the last bucket (16 s).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.buckets.iter().map(|b| b.1).max()?;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil() as u64;
        let mut sorted = self.buckets.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        sorted
            .iter()
            .find(|(_, count)| *count >= rank.max(1))
            .map(|(le, _)| *le)
    }
}

/// The label text the proxy writes for a route (`RouteLabels`, in field order).
pub fn route_key(ingress: &str, host: &str, path: &str) -> String {
    format!("ingress=\"{ingress}\",host=\"{host}\",path=\"{path}\"")
}

/// Totals by [`route_key`] from exposition text.
pub fn parse(text: &str) -> HashMap<String, RouteTotals> {
    let mut out: HashMap<String, RouteTotals> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(REQUESTS) {
            let Some((key, last, value)) = split(rest, ",status=\"") else {
                continue;
            };
            let Ok(n) = value.parse::<f64>() else {
                continue;
            };
            let t = out.entry(key.to_string()).or_default();
            t.requests += n as u64;
            if last.starts_with('5') {
                t.errors += n as u64;
            }
        } else if let Some(rest) = line.strip_prefix(DURATION_BUCKET) {
            // The encoder writes the bucket's `le` ahead of the family's labels.
            let Some((le, rest)) = rest.strip_prefix("le=\"").and_then(|r| r.split_once("\","))
            else {
                continue;
            };
            let Some((key, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let value = value.split_whitespace().next().unwrap_or_default();
            let (Ok(le), Ok(n)) = (le.parse::<f64>(), value.parse::<f64>()) else {
                continue;
            };
            out.entry(key.to_string())
                .or_default()
                .buckets
                .push((le, n as u64));
        }
    }
    out
}

/// `<key>,last="<v>"} <value>` -> (key, v, value).
fn split<'a>(rest: &'a str, last_label: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let (labels, value) = rest.rsplit_once("} ")?;
    let (key, last) = labels.rsplit_once(last_label)?;
    let last = last.strip_suffix('"')?;
    // An exemplar or timestamp would follow the value after a space.
    let value = value.split_whitespace().next()?;
    Some((key, last, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_errors_and_p99_bound_by_route() {
        let text = "\
# TYPE xdp_ingress_requests counter
xdp_ingress_requests_total{ingress=\"a/b\",host=\"h\",path=\"/x\",status=\"200\"} 98
xdp_ingress_requests_total{ingress=\"a/b\",host=\"h\",path=\"/x\",status=\"503\"} 2
xdp_ingress_requests_total{ingress=\"a/b\",host=\"h\",path=\"/q\\\"} x\",status=\"404\"} 1
xdp_ingress_request_duration_seconds_bucket{le=\"0.001\",ingress=\"a/b\",host=\"h\",path=\"/x\"} 90
xdp_ingress_request_duration_seconds_bucket{le=\"0.002\",ingress=\"a/b\",host=\"h\",path=\"/x\"} 98
xdp_ingress_request_duration_seconds_bucket{le=\"0.004\",ingress=\"a/b\",host=\"h\",path=\"/x\"} 100
xdp_ingress_request_duration_seconds_bucket{le=\"+Inf\",ingress=\"a/b\",host=\"h\",path=\"/x\"} 100
";
        let m = parse(text);
        let x = &m[&route_key("a/b", "h", "/x")];
        assert_eq!((x.requests, x.errors), (100, 2));
        assert_eq!(x.quantile_bound(0.99), Some(0.004));
        assert_eq!(x.quantile_bound(0.5), Some(0.001));
        // A path holding the label syntax itself still keys by its exact text.
        assert_eq!(m[&route_key("a/b", "h", "/q\\\"} x")].requests, 1);
        assert_eq!(RouteTotals::default().quantile_bound(0.99), None);
    }

    /// The format the proxy's own registry writes (label order, `le` placement, `_total`).
    #[test]
    fn reads_what_the_proxy_metrics_encode() {
        use crate::proxy::metrics::{Metrics, RequestLabels, RouteLabels};
        use std::sync::Arc;
        let m = Metrics::new();
        let s = |v: &str| Arc::new(v.to_string());
        for (status, secs) in [(200, 0.001), (200, 0.001), (502, 3.0)] {
            m.requests
                .get_or_create(&RequestLabels {
                    ingress: s("ns/ing"),
                    host: s("h.example"),
                    path: s("/p"),
                    status,
                })
                .inc();
            m.request_duration
                .get_or_create(&RouteLabels {
                    ingress: s("ns/ing"),
                    host: s("h.example"),
                    path: s("/p"),
                })
                .observe(secs);
        }
        let got = parse(&m.encode());
        let t = &got[&route_key("ns/ing", "h.example", "/p")];
        assert_eq!((t.requests, t.errors), (3, 1));
        // Buckets double from 0.5 ms: 3 s falls in the one up to 4.096 s.
        assert_eq!(t.quantile_bound(0.99), Some(4.096));
        assert_eq!(t.quantile_bound(0.5), Some(0.001));
    }
}
