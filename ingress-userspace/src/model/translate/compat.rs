//! Compatibility mode: ingress-nginx behaviours that no annotation asks for, applied to
//! Ingresses of an ingress-nginx-compatible class (`--nginx-compatible-class`, by default
//! `nginx`, the class ingress-nginx installs). Other classes keep the Ingress API's behaviour.
//!
//! What it does today (the Kubernetes blog, "Before you migrate: five surprising Ingress-NGINX
//! behaviors", 2026-02-27, section on trailing slashes): a path ending in `/` (`Exact`,
//! `Prefix` or `ImplementationSpecific`) answers a request for the same path without the slash
//! with a 301 to the path with it. ingress-nginx writes such paths as nginx `location /foo/`
//! (and `location = /foo/`), and nginx redirects a request equal to a `/`-terminated location
//! less its slash ("location", ngx_http_core_module) unless a location for the request path
//! itself exists. Hosts whose paths are regular expressions have no such locations, and none
//! is redirected.
//!
//! The other behaviours in the blog post apply in every class because annotations ask for
//! them (regex is case-insensitive and prefix-anchored; `use-regex` and `rewrite-target` turn
//! every path of the host into a regex) or are already how the request front works (paths
//! are normalised before matching).

use std::{collections::HashSet, sync::Arc};

use crate::compact::ingress::Ingress;

#[allow(unused_imports)] // named in docs
use super::TranslateConfig;
use super::class::LEGACY_CLASS_ANNOTATION;
use crate::model::{PathMatch, Redirect, RedirectTo, Route, RoutePolicy};

/// The class ingress-nginx installs.
pub const DEFAULT_COMPATIBLE_CLASS: &str = "nginx";

/// nginx's status for the trailing-slash redirect ("a permanent redirect with the code 301").
pub const TRAILING_SLASH_CODE: u16 = 301;

/// The class an Ingress names: `spec.ingressClassName`, else the legacy annotation.
pub fn class_of(ing: &Ingress) -> Option<&str> {
    ing.spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ing.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        })
}

/// Whether the Ingress gets compatibility mode (`classes`:
/// [`TranslateConfig::nginx_compatible_classes`]).
pub fn is_compatible(ing: &Ingress, classes: &[String]) -> bool {
    class_of(ing).is_some_and(|c| classes.iter().any(|n| n == c))
}

/// A route of a host as translation collects it, with what compatibility needs to know.
#[derive(Clone, Debug)]
pub struct HostRoute {
    pub route: Route,
    /// The path as written in the Ingress (`Prefix` matches lose a trailing slash).
    pub written: String,
    /// The route's Ingress is of a compatible class.
    pub compatible: bool,
}

/// The trailing-slash redirects of one host whose paths are not regular expressions: for each
/// compatible route written `/x/` (not `/`) an `Exact /x` route answering 301 to `/x/`, unless
/// some route of the host is written `/x` (nginx then has a location for `/x`).
pub fn trailing_slash_redirects(routes: &[HostRoute]) -> Vec<Route> {
    let written: HashSet<&str> = routes.iter().map(|r| r.written.as_str()).collect();
    let mut done = HashSet::new();
    let mut out = Vec::new();
    for r in routes.iter().filter(|r| r.compatible) {
        if matches!(r.route.matches.path, PathMatch::Regex(_)) || r.written.len() < 2 {
            continue;
        }
        let Some(bare) = r.written.strip_suffix('/') else {
            continue;
        };
        if written.contains(bare) || !done.insert(bare.to_string()) {
            continue;
        }
        let mut route = r.route.clone();
        route.matches.path = PathMatch::Exact(bare.to_string());
        route.policy = Arc::new(RoutePolicy {
            redirect: Some(Redirect {
                to: RedirectTo::AppendSlash,
                status: TRAILING_SLASH_CODE,
            }),
            ..(*r.route.policy).clone()
        });
        out.push(route);
    }
    out
}
