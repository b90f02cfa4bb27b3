//! HTTPRoute matches (Gateway API v1 `HTTPRouteMatch`) as route matches, and the order among
//! them: the `HTTPRouteRule` reference's precedence, "across all HTTPRoutes attached to a
//! Gateway": an Exact path, then the PathPrefix with the most characters, then a method
//! match, then the most header matches, then the most query parameter matches; ties go to
//! the oldest route (creationTimestamp), then to `namespace/name` alphabetically, then to the
//! first rule and match within the route. A `RegularExpression` path (implementation-specific
//! precedence) comes after every Exact and PathPrefix path.

use std::cmp::Reverse;

use crate::store::httproutes::{
    HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType as HeaderType,
    HttpRouteRulesMatchesPathType as PathType, HttpRouteRulesMatchesQueryParamsType as QueryType,
};

use crate::model::{HeaderMatch, ObjectKind, PathMatch, RouteMatch, RouteOrigin, StringMatch};

/// The route match of one `HTTPRouteMatch`, or why it cannot be served (a path that does not
/// start with `/`, a regular expression that does not compile).
pub fn route_match(m: &HttpRouteRulesMatches) -> Result<RouteMatch, String> {
    let (ty, value) = match &m.path {
        Some(p) => (
            p.r#type.clone().unwrap_or(PathType::PathPrefix),
            p.value.clone().unwrap_or_else(|| "/".into()),
        ),
        None => (PathType::PathPrefix, "/".into()),
    };
    let path = match ty {
        PathType::Exact | PathType::PathPrefix if !value.starts_with('/') => {
            return Err(format!("path {value:?} must start with '/'"));
        }
        PathType::Exact => PathMatch::Exact(value),
        PathType::PathPrefix => {
            let trimmed = value.trim_end_matches('/');
            PathMatch::Prefix(if trimmed.is_empty() { "/" } else { trimmed }.to_string())
        }
        PathType::RegularExpression => {
            regex::Regex::new(&value)
                .map_err(|e| format!("path {value:?} is not a valid regular expression: {e}"))?;
            PathMatch::FullRegex(value)
        }
    };
    let value_match = |regex: bool, v: &str| -> Result<StringMatch, String> {
        if regex {
            regex::Regex::new(v)
                .map_err(|e| format!("{v:?} is not a valid regular expression: {e}"))?;
            Ok(StringMatch::Regex(v.to_string()))
        } else {
            Ok(StringMatch::Exact(v.to_string()))
        }
    };
    let mut headers = Vec::new();
    for h in m.headers.iter().flatten() {
        // Header names are case-insensitive; the first of duplicate names counts (spec).
        if headers
            .iter()
            .any(|x: &HeaderMatch| x.name.eq_ignore_ascii_case(&h.name))
        {
            continue;
        }
        let regex = h.r#type == Some(HeaderType::RegularExpression);
        headers.push(HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            value: value_match(regex, &h.value)?,
        });
    }
    let mut query = Vec::new();
    for q in m.query_params.iter().flatten() {
        // Query parameter names are case-sensitive; the first of duplicates counts (spec).
        if query.iter().any(|x: &HeaderMatch| x.name == q.name) {
            continue;
        }
        let regex = q.r#type == Some(QueryType::RegularExpression);
        query.push(HeaderMatch {
            name: q.name.clone(),
            value: value_match(regex, &q.value)?,
        });
    }
    let mut matches = RouteMatch::path(path);
    matches.set_more(|more| {
        more.headers = headers;
        more.method = m
            .method
            .as_ref()
            .map(|m| format!("{m:?}").to_ascii_uppercase());
        more.query = query;
    });
    Ok(matches)
}

/// Sort key of a Gateway route: smaller is tried first (see the module docs; GRPCRoutes:
/// [`super::grpc::precedence`] in the first five places).
pub type Precedence = (
    u8,
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    Reverse<usize>,
    i64,
    String,
    String,
    usize,
    usize,
);

pub fn precedence(m: &RouteMatch, origin: &RouteOrigin) -> Precedence {
    let tail = (
        origin.created,
        origin.object.namespace.clone(),
        origin.object.name.clone(),
        origin.rule.map_or(0, usize::from),
        origin.path.map_or(0, usize::from),
    );
    if origin.object.kind == ObjectKind::GRPCRoute {
        let (rank, service, method, headers) = super::grpc::precedence(m);
        return (
            rank,
            service,
            method,
            headers,
            Reverse(0),
            tail.0,
            tail.1,
            tail.2,
            tail.3,
            tail.4,
        );
    }
    let (rank, len) = match &m.path {
        PathMatch::Exact(p) => (0, p.len()),
        PathMatch::Prefix(p) | PathMatch::CharPrefix(p) => (1, if p == "/" { 0 } else { p.len() }),
        PathMatch::Regex(p) | PathMatch::FullRegex(p) => (2, p.len()),
    };
    (
        rank,
        Reverse(len),
        Reverse(usize::from(m.method().is_some())),
        Reverse(m.headers().len()),
        Reverse(m.query().len()),
        tail.0,
        tail.1,
        tail.2,
        tail.3,
        tail.4,
    )
}
