//! HTTPRoute rule filters (Gateway API v1 `HTTPRouteFilter`) as a [`GatewayRoutePolicy`]:
//! `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestRedirect`, `URLRewrite`, `CORS`
//! and `RequestMirror` (whose backends the caller resolves: [`Mirror`]).
//!
//! No `ExtensionRef` kind is implemented and neither is the experimental `ExternalAuth`
//! filter: [`FilterError::Unimplemented`]. Such a filter is never skipped: the requests its
//! rule (or backendRef) would have taken get an error answer (Gateway API v1
//! `HTTPRouteFilter.type`: "If a reference to a custom filter type cannot be resolved, the
//! filter MUST NOT be skipped. Instead, requests that would have been processed by that
//! filter MUST receive a HTTP error response"), so they cannot fall through to a broader
//! rule that lacks the filter (an authentication filter would otherwise be bypassed).

use crate::store::httproutes::{
    HttpRouteRulesBackendRefs, HttpRouteRulesFilters, HttpRouteRulesFiltersCors,
    HttpRouteRulesFiltersRequestRedirectScheme as Scheme, HttpRouteRulesFiltersType as FilterType,
};

use crate::model::{
    Cors, CorsDialect, CorsOrigins, GatewayRedirect, GatewayRewrite, GatewayRoutePolicy,
    HeaderModifier, PathModifier,
};

/// Why a rule's (or a backendRef's) filters cannot be applied as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A filter this implementation does not have: its requests get 500 (module docs).
    /// `reason` is the route's `ResolvedRefs` reason (Gateway API v1 `RouteConditionReason`):
    /// `InvalidKind` for an `ExtensionRef` ("a reference to an unknown or unsupported Group
    /// and/or Kind"), `UnsupportedValue` for a filter type not implemented.
    #[error("{message}")]
    Unimplemented {
        reason: &'static str,
        message: String,
    },
    /// Filters that cannot be applied together or a value out of range: the rule is dropped
    /// (`PartiallyInvalid`, or not `Accepted` when no rule is left).
    #[error("{0}")]
    Invalid(String),
}

/// A `RequestMirror` filter before its backend is resolved.
#[derive(Debug)]
pub struct Mirror {
    /// The filter's `backendRef` in the shape of a rule's (weight and filters unset).
    pub backend: HttpRouteRulesBackendRefs,
    /// `percent` / 100 or `fraction`; every request when neither is set.
    pub numerator: u32,
    pub denominator: u32,
}

/// The header modifiers of a backendRef's own filters (`HTTPBackendRef.filters`),
/// `(request, response)`; the other filter types have no meaning per backend here and are
/// left to the rule. `Err`: a filter that does not parse ([`FilterError::Invalid`]) or one
/// that is not implemented (the backendRef's share then gets 500, as an unresolvable one).
pub fn backend_headers(
    r: &HttpRouteRulesBackendRefs,
) -> Result<(HeaderModifier, HeaderModifier), FilterError> {
    let Some(filters) = r.filters.as_deref().filter(|f| !f.is_empty()) else {
        return Ok(Default::default());
    };
    // The same fields, the same names, as a rule's filters.
    let filters: Vec<HttpRouteRulesFilters> = serde_json::to_value(filters)
        .and_then(serde_json::from_value)
        .map_err(|e| FilterError::Invalid(format!("backendRef filters: {e}")))?;
    let (p, _) = policy(&filters)?;
    Ok((p.request_headers, p.response_headers))
}

/// The policy of a rule's filters and its mirrors, or why the rule cannot be served.
pub fn policy(
    filters: &[HttpRouteRulesFilters],
) -> Result<(GatewayRoutePolicy, Vec<Mirror>), FilterError> {
    // An unimplemented filter decides before any other problem: its requests must get an
    // error whatever else the rule says.
    if let Some(e) = filters.iter().find_map(unimplemented) {
        return Err(e);
    }
    let mut p = GatewayRoutePolicy::default();
    let mut mirrors = Vec::new();
    for f in filters {
        match f.r#type {
            FilterType::RequestHeaderModifier => {
                if let Some(m) = &f.request_header_modifier {
                    p.request_headers = HeaderModifier {
                        set: m
                            .set
                            .iter()
                            .flatten()
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                        add: m
                            .add
                            .iter()
                            .flatten()
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                        remove: m.remove.clone().unwrap_or_default(),
                    };
                }
            }
            FilterType::ResponseHeaderModifier => {
                if let Some(m) = &f.response_header_modifier {
                    p.response_headers = HeaderModifier {
                        set: m
                            .set
                            .iter()
                            .flatten()
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                        add: m
                            .add
                            .iter()
                            .flatten()
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                        remove: m.remove.clone().unwrap_or_default(),
                    };
                }
            }
            FilterType::RequestRedirect => {
                if let Some(r) = &f.request_redirect {
                    let path = r
                        .path
                        .as_ref()
                        .map(|m| {
                            path_modifier(
                                m.replace_full_path.as_deref(),
                                m.replace_prefix_match.as_deref(),
                            )
                        })
                        .transpose()?
                        .flatten();
                    p.redirect = Some(GatewayRedirect {
                        scheme: r.scheme.as_ref().map(|s| match s {
                            Scheme::Http => "http".to_string(),
                            Scheme::Https => "https".to_string(),
                        }),
                        hostname: r.hostname.clone().filter(|h| !h.is_empty()),
                        port: r.port.and_then(|p| u16::try_from(p).ok()),
                        path,
                        // The spec's codes (301 and 302 core, 303, 307 and 308 extended);
                        // anything else the API server would have refused: the default.
                        status: match r.status_code {
                            Some(c @ (301 | 303 | 307 | 308)) => c as u16,
                            _ => 302,
                        },
                    });
                }
            }
            FilterType::UrlRewrite => {
                if let Some(r) = &f.url_rewrite {
                    let path = r
                        .path
                        .as_ref()
                        .map(|m| {
                            path_modifier(
                                m.replace_full_path.as_deref(),
                                m.replace_prefix_match.as_deref(),
                            )
                        })
                        .transpose()?
                        .flatten();
                    p.rewrite = Some(GatewayRewrite {
                        hostname: r.hostname.clone().filter(|h| !h.is_empty()),
                        path,
                    });
                }
            }
            FilterType::RequestMirror => {
                if let Some(m) = &f.request_mirror {
                    // Same fields, same names: group, kind, name, namespace, port.
                    let backend = serde_json::to_value(&m.backend_ref)
                        .and_then(serde_json::from_value)
                        .map_err(|e| {
                            FilterError::Invalid(format!("RequestMirror backendRef: {e}"))
                        })?;
                    // `percent`, else `fraction` (denominator 100 by default), else every
                    // request.
                    let (numerator, denominator) = match (&m.percent, &m.fraction) {
                        (Some(p), _) => (*p, 100),
                        (None, Some(f)) => (f.numerator, f.denominator.unwrap_or(100)),
                        (None, None) => (100, 100),
                    };
                    let share = |v: i32| u32::try_from(v).unwrap_or(0);
                    let (numerator, denominator) = (share(numerator), share(denominator));
                    if denominator == 0 || numerator > denominator {
                        return Err(FilterError::Invalid(format!(
                            "RequestMirror fraction {numerator}/{denominator} is not a share"
                        )));
                    }
                    mirrors.push(Mirror {
                        backend,
                        numerator,
                        denominator,
                    });
                }
            }
            FilterType::Cors => {
                if let Some(c) = &f.cors {
                    p.cors = Some(cors(c));
                }
            }
            // [`unimplemented`] returned already.
            FilterType::ExtensionRef | FilterType::ExternalAuth => {}
        }
    }
    if p.redirect.is_some() && p.rewrite.is_some() {
        return Err(FilterError::Invalid(
            "RequestRedirect and URLRewrite cannot both be used on one rule".into(),
        ));
    }
    Ok((p, mirrors))
}

/// The one decision on which filters are not implemented (module docs): every
/// `ExtensionRef` (no custom filter kind is ours) and `ExternalAuth` (experimental, GEP-1494).
fn unimplemented(f: &HttpRouteRulesFilters) -> Option<FilterError> {
    match f.r#type {
        FilterType::ExtensionRef => {
            let what = match &f.extension_ref {
                Some(r) => format!("{}/{} {}", r.group, r.kind, r.name),
                None => "(no extensionRef)".into(),
            };
            Some(FilterError::Unimplemented {
                reason: "InvalidKind",
                message: format!(
                    "ExtensionRef filter {what}: no custom filter kind is implemented"
                ),
            })
        }
        FilterType::ExternalAuth => Some(FilterError::Unimplemented {
            reason: "UnsupportedValue",
            message: "filter type ExternalAuth is not implemented".into(),
        }),
        _ => None,
    }
}

/// `HTTPCORSFilter` as the proxy's one CORS decision reads it ([`crate::proxy::cors`], the
/// Gateway API dialect): an `allowOrigins` entry `*` allows every origin; lists are sent
/// joined by `, `; `maxAge` defaults to 5 seconds (spec).
fn cors(c: &HttpRouteRulesFiltersCors) -> Cors {
    let list = |v: &Option<Vec<String>>| v.as_deref().unwrap_or_default().join(", ");
    let origins = c.allow_origins.clone().unwrap_or_default();
    Cors {
        allow_origin: if origins.iter().any(|o| o == "*") {
            CorsOrigins::Any
        } else {
            CorsOrigins::List(origins)
        },
        allow_methods: list(&c.allow_methods),
        allow_headers: list(&c.allow_headers),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        expose_headers: Some(list(&c.expose_headers)).filter(|e| !e.is_empty()),
        max_age: i64::from(c.max_age.unwrap_or(5)),
        dialect: CorsDialect::GatewayApi,
    }
}

fn path_modifier(
    full: Option<&str>,
    prefix: Option<&str>,
) -> Result<Option<PathModifier>, FilterError> {
    Ok(match (full, prefix) {
        (Some(f), _) => Some(PathModifier::ReplaceFullPath(f.to_string())),
        (None, Some(p)) => Some(PathModifier::ReplacePrefixMatch(p.to_string())),
        (None, None) => None,
    })
}
