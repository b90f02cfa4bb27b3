//! The HTTPRoute CRD's CEL validation that an API server enforces and manifest mode
//! (`--manifests`) cannot: Gateway API v1 `apis/v1/httproute_types.go`,
//! `+kubebuilder:validation:XValidation` on `HTTPRouteRule` and its `filters`. A rule that
//! breaks one is still served as read (the last of repeated filters applies, a redirect
//! answers before any backend, each timeout bounds what it bounds), and gets a Warning with
//! the CRD's message, so the manifest is fixed before it meets a cluster that refuses it.

use crate::store::httproutes::{HttpRouteRules, HttpRouteRulesFiltersType as FilterType};

use super::timeouts::RuleTimeouts;

/// The diagnostic reason of these Warnings.
pub const REASON: &str = "ValidationRule";

/// The CRD's message of each validation rule `rule` breaks, given its parsed `timeouts`.
pub fn rule_warnings(rule: &HttpRouteRules, timeouts: RuleTimeouts) -> Vec<&'static str> {
    let filters = rule.filters.as_deref().unwrap_or_default();
    let count = |t: FilterType| filters.iter().filter(|f| f.r#type == t).count();
    let mut out = Vec::new();
    for (t, message) in [
        (
            FilterType::RequestHeaderModifier,
            "RequestHeaderModifier filter cannot be repeated",
        ),
        (
            FilterType::ResponseHeaderModifier,
            "ResponseHeaderModifier filter cannot be repeated",
        ),
        (
            FilterType::RequestRedirect,
            "RequestRedirect filter cannot be repeated",
        ),
        (
            FilterType::UrlRewrite,
            "URLRewrite filter cannot be repeated",
        ),
        (FilterType::Cors, "CORS filter cannot be repeated"),
    ] {
        if count(t) > 1 {
            out.push(message);
        }
    }
    if count(FilterType::RequestRedirect) > 0
        && !rule.backend_refs.as_deref().unwrap_or_default().is_empty()
    {
        out.push("RequestRedirect filter must not be used together with backendRefs");
    }
    // `!(has(request) && has(backendRequest) && duration(request) != duration('0s') &&
    // duration(backendRequest) > duration(request))`; zero durations are `None` here.
    if let (Some(request), Some(backend)) = (timeouts.request, timeouts.backend_request)
        && backend > request
    {
        out.push("backendRequest timeout cannot be longer than request timeout");
    }
    out
}
