//! The rewrite step: what happens between routing and forwarding, as ingress-nginx's nginx
//! rewrite phase does it. In order:
//!
//! 1. [`app_root`]: the host's `app-root` answers a request for exactly `/` with 302
//!    (nginx.tmpl: `if ($uri = /) { return 302 $scheme://$http_host<app-root>; }` in the
//!    server block, so before any location).
//! 2. [`redirect`]: the route's own redirect (`permanent-redirect`, `temporal-redirect`,
//!    `from-to-www-redirect`, the compatibility-mode trailing-slash 301).
//! 3. [`rewrite`]: `rewrite-target` replaces the path sent upstream, `$1`..`$9` being the
//!    route regex's capture groups (nginx `rewrite "(?i)<path>" <target> break;`).
//!
//! All work on the normalised path of the request front ([`super::request_target`]). `explain`
//! calls the same functions, so it shows what the proxy does.

use regex::Regex;

use super::router::{CompiledHost, CompiledRoute};
use crate::model::{RedirectTo, nginx_var::VarSource};

/// The request as the rewrite step sees it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// `http` or `https`, as the client reached the first proxy.
    pub scheme: &'a str,
    /// `Host` as the client sent it (port included), nginx's `$http_host`.
    pub authority: &'a str,
    /// Normalised path.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// A redirect the proxy answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub location: String,
    /// What asked for it, for the access log and `explain`.
    pub why: &'static str,
}

impl Target<'_> {
    /// nginx's `$request_uri` after normalisation: path and `?query`.
    fn request_uri(&self) -> String {
        match self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.to_string(),
        }
    }
}

/// The `Location` of the HTTP to HTTPS redirect (`ssl-redirect`): `https://`, the host name
/// (`port` after it when not 443, or always with the route's `use-port-in-redirects`), and the
/// request URI less one trailing `/` unless the route's `preserve-trailing-slash`
/// (ingress-nginx's lua_ingress.lua `rewrite`; `/` becomes nothing).
pub fn https_location(
    host: &str,
    port: u16,
    request_uri: &str,
    policy: &crate::model::RoutePolicy,
) -> String {
    let preserve_trailing_slash = policy.preserve_trailing_slash;
    let name = super::router::normalize_host(host);
    // lua_ingress.lua names `listen_ports.https` with `use_port_in_redirects`, 443 included.
    let authority = if port == 443 && policy.use_port_in_redirects != Some(true) {
        name.to_string()
    } else if name.contains(':') {
        format!("[{name}]:{port}")
    } else {
        format!("{name}:{port}")
    };
    let uri = match request_uri.strip_suffix('/') {
        Some(less) if !preserve_trailing_slash => less,
        _ => request_uri,
    };
    format!("https://{authority}{uri}")
}

/// Step 1: the host's `app-root` redirect, if the request is for `/`.
pub fn app_root<U>(host: &CompiledHost<U>, t: &Target<'_>) -> Option<Answer> {
    let root = host.app_root.as_deref()?;
    (t.path == "/").then(|| Answer {
        status: 302,
        location: format!("{}://{}{root}", t.scheme, t.authority),
        why: "app-root",
    })
}

/// Step 2: the route's redirect. `server_port`: the port the request reached (a trusted
/// `X-Forwarded-Port` with `use-forwarded-headers`), which ingress-nginx's from/to-www
/// redirect always names (ngx_srv_redirect.lua: `scheme://to:port` + `$request_uri` less one
/// trailing `/`; the scheme likewise from a trusted `X-Forwarded-Proto`, as `t.scheme`).
/// `vars`: the request's nginx variables, for a `permanent-redirect` or `temporal-redirect` URL
/// that names some ([`redirect_needs_vars`]).
pub fn redirect<U>(
    route: &CompiledRoute<U>,
    t: &Target<'_>,
    server_port: &str,
    vars: &dyn VarSource,
) -> Option<Answer> {
    let r = route.policy.redirect.as_ref()?;
    let (location, why) = match &r.to {
        RedirectTo::Url(url) => (
            absolute(route, t, server_port, url.expand(vars)),
            "redirect annotation",
        ),
        RedirectTo::Host(to) => {
            let uri = t.request_uri();
            let uri = uri.strip_suffix('/').unwrap_or(&uri);
            (
                format!("{}://{to}:{server_port}{uri}", t.scheme),
                "from-to-www-redirect",
            )
        }
        RedirectTo::AppendSlash => {
            let query = t.query.map(|q| format!("?{q}")).unwrap_or_default();
            (
                absolute(route, t, server_port, format!("{}/{query}", t.path)),
                "trailing slash (ingress-nginx compatibility)",
            )
        }
    };
    Some(Answer {
        status: r.status,
        location,
        why,
    })
}

/// How the nginx location that answers completes a `Location` starting with `/`: its
/// `absolute_redirect` and `port_in_redirect` (ngx_http_header_filter_module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// `absolute_redirect off`: the `Location` is sent as it is.
    pub relative: bool,
    /// `port_in_redirect on`: a port other than the scheme's default is named.
    pub port: bool,
}

impl Completion {
    /// A route's location: `relative-redirects` (annotation, or the ConfigMap key in every
    /// server), `use-port-in-redirects` (ingress-nginx's template writes `port_in_redirect`
    /// in each location, `off` by default).
    pub fn of_route(policy: &crate::model::RoutePolicy) -> Self {
        Completion {
            relative: policy.relative_redirects == Some(true),
            port: policy.use_port_in_redirects == Some(true),
        }
    }
}

fn absolute<U>(
    route: &CompiledRoute<U>,
    t: &Target<'_>,
    server_port: &str,
    location: String,
) -> String {
    complete(
        t,
        server_port,
        Completion::of_route(&route.policy),
        location,
    )
}

/// nginx's `absolute_redirect` (ngx_http_header_filter_module), the one place a relative
/// redirect the proxy makes is made absolute: a `Location` starting with `/` gets `t`'s
/// scheme and host name (the `Host` less its port, `server_name_in_redirect off`) and, with
/// `how.port`, `server_port` when it is not the scheme's default, unless `how.relative`; any
/// other `Location` is sent as it is.
pub fn complete(t: &Target<'_>, server_port: &str, how: Completion, location: String) -> String {
    if !location.starts_with('/') || how.relative {
        return location;
    }
    let default_port = if t.scheme == "https" { "443" } else { "80" };
    let port = if how.port && server_port != default_port {
        format!(":{server_port}")
    } else {
        String::new()
    };
    let host = super::router::normalize_host(t.authority);
    if host.contains(':') {
        return format!("{}://[{host}]{port}{location}", t.scheme);
    }
    format!("{}://{host}{port}{location}", t.scheme)
}

/// Whether the route's redirect URL names nginx variables, so that [`redirect`] needs the
/// request's values (the caller then builds them, a request id included).
pub fn redirect_needs_vars(policy: &crate::model::RoutePolicy) -> bool {
    matches!(&policy.redirect, Some(r) if matches!(&r.to, RedirectTo::Url(u) if u.has_vars()))
}

/// Compiles the regex `rewrite-target` is applied with: the route's path, unanchored and
/// case-insensitive as in nginx.tmpl. `None` when nothing is rewritten: no target, or the
/// target equals the path (ingress-nginx then writes a plain `proxy_pass`).
pub fn compile(path: &str, target: Option<&str>) -> Option<Regex> {
    let target = target?;
    if target == path {
        return None;
    }
    Regex::new(&format!("(?i){path}")).ok()
}

/// Step 3: the path and query sent upstream, when `rewrite-target` applies. The whole path is
/// replaced by the target with `$n` filled in (an absent group is empty); the target's own
/// `?args` come first and the request's follow after `&` (nginx `rewrite`).
pub fn rewrite<U>(route: &CompiledRoute<U>, path: &str, query: Option<&str>) -> Option<String> {
    let re = route.rewrite.as_deref()?;
    let target = route.policy.rewrite.target.as_deref()?;
    let caps = re.captures(path)?;
    let mut out = String::with_capacity(target.len() + path.len());
    let mut rest = target;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.bytes().next() {
            Some(d @ b'0'..=b'9') => {
                let n = usize::from(d - b'0');
                out.push_str(caps.get(n).map_or("", |m| m.as_str()));
                rest = &after[1..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    let (new_path, new_query) = match out.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (out, None),
    };
    let path = if new_path.starts_with('/') {
        new_path
    } else {
        format!("/{new_path}")
    };
    Some(match (new_query, query) {
        (Some(a), Some(b)) => format!("{path}?{a}&{b}"),
        (Some(a), None) => format!("{path}?{a}"),
        (None, Some(b)) => format!("{path}?{b}"),
        (None, None) => path,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::nginx_var::Var;

    /// A request with no variables set.
    struct NoVars;
    impl VarSource for NoVars {
        fn push(&self, _: &Var, _: &mut String) {}
    }

    /// `$request_uri` and `$host` of one request.
    struct Vars;
    impl VarSource for Vars {
        fn push(&self, var: &Var, out: &mut String) {
            out.push_str(match var {
                Var::RequestUri => "/x/?q=1",
                Var::Host => "foo.bar.com",
                _ => "",
            });
        }
    }
    use crate::{
        model::{Redirect, RoutePolicy},
        proxy::{fixtures::*, router::RouteTable},
    };

    fn table(p: &str, policy: RoutePolicy) -> RouteTable<Arc<crate::model::Upstream>> {
        let mut r = route(path("Regex", p), "svc");
        r.policy = Arc::new(policy);
        let l7 = l7_with(vec![vhost("rewrite.bar.com", vec![r], false)], None);
        RouteTable::build(&l7, Arc::clone).0
    }

    fn rewritten(p: &str, target: &str, req: &str, query: Option<&str>) -> Option<String> {
        let mut policy = RoutePolicy::default();
        policy.rewrite.target = Some(target.into());
        let t = table(p, policy);
        let host = t.host("rewrite.bar.com")?;
        rewrite(&host.routes[0], req, query)
    }

    #[test]
    fn rewrite_target_examples_from_the_docs() {
        // examples/rewrite/README.md: path `/something(/|$)(.*)`, `rewrite-target: /$2`.
        let p = "/something(/|$)(.*)";
        assert_eq!(
            rewritten(p, "/$2", "/something", None).as_deref(),
            Some("/")
        );
        assert_eq!(
            rewritten(p, "/$2", "/something/", None).as_deref(),
            Some("/")
        );
        assert_eq!(
            rewritten(p, "/$2", "/something/new", None).as_deref(),
            Some("/new")
        );
        // Case-insensitive (`(?i)`), the query kept.
        assert_eq!(
            rewritten(p, "/$2", "/SomeThing/new", Some("a=1")).as_deref(),
            Some("/new?a=1")
        );
        // Target arguments first, the request's after `&` (nginx `rewrite`).
        assert_eq!(
            rewritten("/api/(.*)", "/v2/$1?x=y", "/api/users", Some("a=1")).as_deref(),
            Some("/v2/users?x=y&a=1")
        );
        // A target equal to the path is no rewrite at all.
        assert_eq!(rewritten("/", "/", "/foo", None), None);
        assert_eq!(rewritten("/a", "/$9", "/a", None).as_deref(), Some("/"));
    }

    #[test]
    fn redirects() {
        let t = Target {
            scheme: "http",
            authority: "foo.bar.com:8080",
            path: "/x/",
            query: Some("q=1"),
        };
        let with = |to: RedirectTo, status| {
            table(
                "/",
                RoutePolicy {
                    redirect: Some(Redirect { to, status }),
                    ..Default::default()
                },
            )
        };
        let url =
            |u: &str| RedirectTo::Url(crate::model::nginx_var::NginxString::parse(u).unwrap());
        let tb = with(url("https://www.google.com"), 301);
        let r = &tb.host("rewrite.bar.com").unwrap().routes[0];
        assert_eq!(
            redirect(r, &t, "8080", &NoVars).map(|a| (a.status, a.location)),
            Some((301, "https://www.google.com".into()))
        );
        // nginx's `return 301 URL` expands the URL's variables (found by a fresh-user trial:
        // `https://new.example$request_uri` was sent as written).
        let tb = with(url("https://new.example$request_uri"), 301);
        let r = &tb.host("rewrite.bar.com").unwrap().routes[0];
        assert!(redirect_needs_vars(&r.policy));
        assert_eq!(
            redirect(r, &t, "8080", &Vars).map(|a| a.location),
            Some("https://new.example/x/?q=1".into())
        );
        let tb = with(url("https://${host}.example/"), 302);
        let r = &tb.host("rewrite.bar.com").unwrap().routes[0];
        assert_eq!(
            redirect(r, &t, "8080", &Vars).map(|a| a.location),
            Some("https://foo.bar.com.example/".into())
        );
        let tb = with(RedirectTo::Host("www.bar.com".into()), 308);
        let r = &tb.host("rewrite.bar.com").unwrap().routes[0];
        let t2 = Target { query: None, ..t };
        assert_eq!(
            redirect(r, &t2, "80", &NoVars).map(|a| a.location),
            Some("http://www.bar.com:80/x".into())
        );
        assert_eq!(
            redirect(r, &t2, "8080", &NoVars).map(|a| a.location),
            Some("http://www.bar.com:8080/x".into())
        );
        let root = Target { path: "/", ..t2 };
        assert_eq!(
            redirect(r, &root, "80", &NoVars).map(|a| a.location),
            Some("http://www.bar.com:80".into()),
            "`/` less its trailing slash, as the Lua does"
        );
        let tb = with(RedirectTo::AppendSlash, 301);
        let r = &tb.host("rewrite.bar.com").unwrap().routes[0];
        let t3 = Target { path: "/x", ..t };
        // nginx's `absolute_redirect`: the Host's name without its port (ingress-nginx sets
        // `port_in_redirect off`, `server_name_in_redirect off`).
        assert_eq!(
            redirect(r, &t3, "8080", &NoVars).map(|a| a.location),
            Some("http://foo.bar.com/x/?q=1".into())
        );
    }
}
