//! What a client gets from a route, in words, independent of any one request: the one
//! description `explain` and the dashboard share for routes answered without a backend (a
//! denied location, an annotation redirect, a Gateway API `RequestRedirect`, a direct
//! response) and for routes that forward.

use super::{GatewayRedirect, PathModifier, RedirectTo, RouteAction, RoutePolicy};

/// The route's answer as the proxy gives it, in its order of steps
/// ([`crate::proxy::forward`]): a denied location (503), the route's annotation redirect,
/// its `RequestRedirect` filter, then the action (`forward`, `respond STATUS (why)`,
/// `default backend`). Request-dependent steps (CORS preflights, the HTTPS redirect of a TLS
/// host, auth) are left to `explain`, which sees a request.
pub fn describe(action: &RouteAction, policy: &RoutePolicy) -> String {
    if let Some(why) = &policy.response.denied {
        return format!("respond 503 ({why})");
    }
    if let Some(r) = &policy.redirect {
        let to = match &r.to {
            RedirectTo::Url(url) => url.to_string(),
            RedirectTo::Host(h) => format!("{{scheme}}://{h}:{{port}}{{request-uri}}"),
            RedirectTo::AppendSlash => "{scheme}://{host}{path}/{?query}".into(),
        };
        return format!("redirect {} to {to}", r.status);
    }
    if let Some(r) = policy.gateway.as_ref().and_then(|g| g.redirect.as_ref()) {
        return format!("redirect {} to {}", r.status, location_shape(r));
    }
    match action {
        RouteAction::Forward(ups) => {
            let invalid = policy.gateway.as_ref().map_or(0, |g| g.invalid_weight);
            if invalid == 0 {
                return "forward".into();
            }
            // The proxy's share ([`crate::proxy::gateway_filters::takes_invalid_share`]).
            let valid: u64 = ups.iter().map(|w| u64::from(w.weight)).sum();
            let pct = 100.0 * f64::from(invalid) / (f64::from(invalid) + valid as f64);
            format!("forward; {pct:.0}% respond 500 (unresolvable backendRef)")
        }
        RouteAction::Respond { status, reason } => format!("respond {status} ({reason})"),
        RouteAction::DefaultBackend => "default backend".into(),
    }
}

/// The `Location` a `RequestRedirect` builds, with the request's parts in braces: `{scheme}`,
/// `{host}` (the Host header less its port), `{:listener-port}` (the listener's port, left
/// out when 80 for http or 443 for https), `{path}`, `{path-after-prefix}` and `{?query}`.
/// As [`crate::proxy::gateway_filters::redirect_location`] fills them (the spec's
/// `HTTPRequestRedirectFilter`).
pub fn location_shape(r: &GatewayRedirect) -> String {
    let scheme = r.scheme.as_deref().unwrap_or("{scheme}");
    let host = r.hostname.as_deref().unwrap_or("{host}");
    let port = match (r.port, r.scheme.as_deref()) {
        (Some(80), Some("http")) | (Some(443), Some("https")) => String::new(),
        (Some(p), _) => format!(":{p}"),
        // A scheme changed without a port: that scheme's well-known port, left out.
        (None, Some(_)) => String::new(),
        (None, None) => "{:listener-port}".into(),
    };
    let path = match &r.path {
        None => "{path}".to_string(),
        Some(PathModifier::ReplaceFullPath(p)) => p.clone(),
        Some(PathModifier::ReplacePrefixMatch(p)) => {
            format!("{}{{path-after-prefix}}", p.trim_end_matches('/'))
        }
    };
    format!("{scheme}://{host}{port}{path}{{?query}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GatewayRoutePolicy;
    use std::sync::Arc;

    fn redirect(
        scheme: Option<&str>,
        port: Option<u16>,
        path: Option<PathModifier>,
    ) -> RoutePolicy {
        RoutePolicy {
            gateway: Some(Arc::new(GatewayRoutePolicy {
                redirect: Some(GatewayRedirect {
                    scheme: scheme.map(Into::into),
                    hostname: None,
                    port,
                    path,
                    status: 301,
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn no_backend() -> RouteAction {
        RouteAction::Respond {
            status: 500,
            reason: "no backendRefs".into(),
        }
    }

    #[test]
    fn a_request_redirect_is_described_by_its_status_and_location() {
        let p = redirect(Some("https"), None, None);
        assert_eq!(
            describe(&no_backend(), &p),
            "redirect 301 to https://{host}{path}{?query}"
        );
        let p = redirect(
            None,
            Some(8443),
            Some(PathModifier::ReplacePrefixMatch("/new/".into())),
        );
        assert_eq!(
            describe(&no_backend(), &p),
            "redirect 301 to {scheme}://{host}:8443/new{path-after-prefix}{?query}"
        );
        let p = redirect(None, None, Some(PathModifier::ReplaceFullPath("/x".into())));
        assert_eq!(
            describe(&no_backend(), &p),
            "redirect 301 to {scheme}://{host}{:listener-port}/x{?query}"
        );
    }

    #[test]
    fn denied_and_annotation_redirects_come_before_the_action() {
        let mut p = RoutePolicy {
            redirect: Some(crate::model::Redirect {
                to: RedirectTo::Url(
                    crate::model::nginx_var::NginxString::parse("https://example.com").unwrap(),
                ),
                status: 308,
            }),
            ..Default::default()
        };
        let fwd = RouteAction::Forward(Vec::new());
        assert_eq!(describe(&fwd, &p), "redirect 308 to https://example.com");
        p.response.denied = Some("snippets refused".into());
        assert_eq!(describe(&fwd, &p), "respond 503 (snippets refused)");
        assert_eq!(describe(&fwd, &RoutePolicy::default()), "forward");
    }
}
