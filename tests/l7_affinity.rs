//! ingress-nginx cookie session affinity end to end on loopback: Ingress manifests translated
//! as the control plane does, the proxy in-process, echo pods on their own threads. What is
//! checked is what a client sees: the `Set-Cookie` bytes and which pod answers.
//!
//! Expected values: ingress-nginx's annotations reference ("Cookie affinity"), its
//! "Sticky sessions" example, and its Lua balancer (`balancer/sticky*.lua`, `util/same_site.lua`).

mod l7common;

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use http::StatusCode;
use l7common::*;
use testbed::http_backend::HttpBackend;

/// Service `web` with one ready pod per address and an Ingress for `sticky.test` whose rule
/// `path` (Prefix) goes to it, with `annotations` (keys without prefix).
fn sticky_yaml(pods: &[SocketAddr], path: &str, annotations: &[(&str, &str)]) -> String {
    service_pods_yaml("web", pods) + &ingress_yaml("sticky", "sticky.test", path, annotations)
}

/// Ingress `name` sending `host` `path` (Prefix) to Service `web`, with `annotations` (keys
/// without prefix).
fn ingress_yaml(name: &str, host: &str, path: &str, annotations: &[(&str, &str)]) -> String {
    typed_ingress_yaml(name, host, path, "Prefix", annotations)
}

/// [`ingress_yaml`] with the rule's `pathType`.
fn typed_ingress_yaml(
    name: &str,
    host: &str,
    path: &str,
    path_type: &str,
    annotations: &[(&str, &str)],
) -> String {
    let ann: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: {v:?}\n"))
        .collect();
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations:
{ann}spec:
  ingressClassName: xdp-ingress
  rules:
  - host: {host}
    http:
      paths:
      - {{path: {path:?}, pathType: {path_type}, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
"#
    )
}

/// One request to `sticky.test` at `path`, with `cookie` (`name=value`) if any: the pod that
/// answered and the `Set-Cookie` it carried (empty when none).
async fn visit(
    c: &Http1,
    proxy: &TestProxy,
    path: &str,
    cookie: Option<&str>,
    user_agent: Option<&str>,
) -> (StatusCode, String, String) {
    visit_host(c, proxy, "sticky.test", path, cookie, user_agent).await
}

/// [`visit`] on another host.
async fn visit_host(
    c: &Http1,
    proxy: &TestProxy,
    host: &str,
    path: &str,
    cookie: Option<&str>,
    user_agent: Option<&str>,
) -> (StatusCode, String, String) {
    let mut r = req(proxy.http(), host, path);
    if let Some(v) = cookie {
        r.headers_mut().insert("cookie", v.parse().unwrap());
    }
    if let Some(v) = user_agent {
        r.headers_mut().insert("user-agent", v.parse().unwrap());
    }
    let g = send(c, r).await.expect("request completes");
    let pod = if g.status == StatusCode::OK {
        g.pod()
    } else {
        String::new()
    };
    (g.status, pod, g.header("set-cookie"))
}

/// The `name=value` part of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

/// Sessions created while the Service had 2 pods; a 3rd pod added by a hot config change.
/// `balanced` (the default) moves about a third of the sessions, all onto the new pod, with
/// their cookies unchanged ("roughly (n-c)/n users", sticky_balanced.lua); `persistent` moves
/// none ("a session is always routed to the same endpoint", sticky_persistent.lua).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_mode_decides_whether_scale_up_moves_sessions() {
    const SESSIONS: usize = 90;
    let pods: Vec<HttpBackend> = (0..3).map(|i| backend(&format!("p{i}"))).collect();
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let mut version = 0;
    // Binomial(90, 1/3): mean 30, sd 4.5; the bounds are 4 sd either side.
    for (mode, moved_range) in [
        (None, 12..=48),
        (Some("balanced"), 12..=48),
        (Some("persistent"), 0..=0),
    ] {
        let mut ann = vec![("affinity", "cookie")];
        ann.extend(mode.map(|m| ("affinity-mode", m)));
        version += 1;
        proxy.handle.apply(translate_manifests(
            version,
            &sticky_yaml(&addrs[..2], "/", &ann),
            |_| {},
        ));
        let mut sessions = Vec::new();
        for _ in 0..SESSIONS {
            let (status, pod, set) = visit(&c, &proxy, "/", None, None).await;
            assert_eq!(status, StatusCode::OK);
            assert!(set.starts_with("INGRESSCOOKIE="), "{mode:?}: {set:?}");
            sessions.push((pair(&set), pod));
        }
        version += 1;
        proxy.handle.apply(translate_manifests(
            version,
            &sticky_yaml(&addrs, "/", &ann),
            |_| {},
        ));
        let mut moved = 0;
        for (cookie, before) in &sessions {
            let (status, now, set) = visit(&c, &proxy, "/", Some(cookie), None).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(set, "", "{mode:?}: a known session gets no new cookie");
            if now != *before {
                assert_eq!(now, "p2", "{mode:?}: sessions move only onto the new pod");
                moved += 1;
            }
        }
        assert!(
            moved_range.contains(&moved),
            "{mode:?}: {moved} of {SESSIONS} sessions moved"
        );
    }
}

/// The cookie's attributes as ingress-nginx writes them (lua-resty-cookie's order):
/// `Expires` and `Max-Age` both when both are set, `Domain`, `Path` defaulting to the rule's
/// path, `HttpOnly` always, `SameSite` as written, and omitted by
/// `session-cookie-conditional-samesite-none` for browsers that reject `SameSite=None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_cookie_attributes_on_the_wire() {
    let pod = backend("p0");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let ann = [
        ("affinity", "cookie"),
        ("session-cookie-name", "route"),
        ("session-cookie-expires", "172800"),
        ("session-cookie-max-age", "172800"),
        ("session-cookie-domain", "sticky.test"),
        ("session-cookie-samesite", "None"),
        ("session-cookie-conditional-samesite-none", "true"),
    ];
    proxy.handle.apply(translate_manifests(
        1,
        &sticky_yaml(&[pod.addr], "/shop", &ann),
        |_| {},
    ));
    let before = SystemTime::now();
    let (status, _, set) = visit(&c, &proxy, "/shop/cart", None, None).await;
    assert_eq!(status, StatusCode::OK);
    // route=<key>|<backend>; Expires=<IMF-fixdate>; Max-Age=…
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("route="), "{set}");
    let expires = attrs[1].strip_prefix("Expires=").expect(&set);
    let at = httpdate::parse_http_date(expires).expect("an HTTP date");
    let want = before + Duration::from_secs(172800);
    assert!(
        at + Duration::from_secs(2) >= want && at <= want + Duration::from_secs(5),
        "{set}"
    );
    assert_eq!(
        attrs[2..],
        [
            "Max-Age=172800",
            "Domain=sticky.test",
            "Path=/shop",
            "HttpOnly",
            "SameSite=None"
        ],
        "{set}"
    );
    // Chrome 51 rejects SameSite=None cookies: the attribute is left out for it.
    const CHROME_51: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like \
                             Gecko) Chrome/51.0.2704.103 Safari/537.36";
    let (_, _, set) = visit(&c, &proxy, "/shop", None, Some(CHROME_51)).await;
    assert!(
        set.ends_with("; Path=/shop; HttpOnly") && !set.contains("SameSite"),
        "{set}"
    );
    // `session-cookie-secure`: Secure even over plain HTTP; an explicit path wins.
    let ann = [
        ("affinity", "cookie"),
        ("session-cookie-secure", "true"),
        ("session-cookie-path", "/"),
    ];
    proxy.handle.apply(translate_manifests(
        2,
        &sticky_yaml(&[pod.addr], "/shop", &ann),
        |_| {},
    ));
    let (_, _, set) = visit(&c, &proxy, "/shop", None, None).await;
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with("INGRESSCOOKIE="), "{set}");
    assert_eq!(attrs[1..], ["Path=/", "Secure", "HttpOnly"], "{set}");
    // Without it, the cookie is Secure over HTTPS only (sticky.lua: `ngx.var.https == "on"`).
    proxy.handle.apply(translate_manifests(
        3,
        &sticky_yaml(&[pod.addr], "/shop", &[("affinity", "cookie")]),
        |_| {},
    ));
    let (_, _, set) = visit(&c, &proxy, "/shop", None, None).await;
    assert!(set.ends_with("; Path=/shop; HttpOnly"), "{set}");
    let (tls, _) = tls_connect(proxy.https(), "sticky.test", &[b"http/1.1"]).await;
    let g = request_over(tls, false, req(proxy.https(), "sticky.test", "/shop")).await;
    let set = g.header("set-cookie");
    assert!(set.ends_with("; Path=/shop; Secure; HttpOnly"), "{set}");
}

/// Without `session-cookie-path` the cookie's `Path` is the Ingress rule's path as written
/// (sticky.lua uses `$location_path`, which nginx.tmpl sets to the Ingress path): a Prefix
/// `/v1/` keeps its slash, `/v1` has none, an Exact `/app/` is itself, and with `use-regex`
/// it is the regex text (ingress-nginx's behaviour; translation warns
/// `AffinityCookiePathUnset`). A `spec.defaultBackend` has no rule path: `/`. The metrics'
/// `path` label is the same value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_cookie_path_is_the_rule_path_as_written() {
    let pod = backend("p0");
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let cases = [
        ("Prefix", "/v1/", "/v1/users", "/v1/", false),
        ("Prefix", "/v1", "/v1/users", "/v1", false),
        ("Exact", "/app/", "/app/", "/app/", false),
        (
            "ImplementationSpecific",
            "/api/v[0-9]+/",
            "/api/v2/x",
            "/api/v[0-9]+/",
            true,
        ),
    ];
    for (version, (path_type, path, request, want, regex)) in (1..).zip(cases) {
        let mut ann = vec![("affinity", "cookie")];
        if regex {
            ann.push(("use-regex", "true"));
        }
        let yaml = service_pods_yaml("web", &[pod.addr])
            + &typed_ingress_yaml("sticky", "sticky.test", path, path_type, &ann);
        proxy
            .handle
            .apply(translate_manifests(version, &yaml, |_| {}));
        let (status, _, set) = visit(&c, &proxy, request, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path_type} {path}");
        assert!(
            set.ends_with(&format!("; Path={want}; HttpOnly")),
            "{path_type} {path}: {set}"
        );
        // The same `$location_path` is the `path` of ingress-nginx's metrics (monitor.lua).
        let label = format!("path=\"{want}\",status=\"200\"}} 1");
        let metrics = proxy.handle.metrics_text();
        assert!(metrics.contains(&label), "{label}\n{metrics}");
    }
    // The Ingress's spec.defaultBackend answers what no rule matches: Path=/.
    let yaml = service_pods_yaml("web", &[pod.addr])
        + &ingress_yaml("sticky", "sticky.test", "/v1/", &[("affinity", "cookie")]).replace(
            "spec:\n",
            "spec:\n  defaultBackend: {service: {name: web, port: {number: 80}}}\n",
        );
    proxy.handle.apply(translate_manifests(5, &yaml, |_| {}));
    let (status, _, set) = visit(&c, &proxy, "/elsewhere", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(set.ends_with("; Path=/; HttpOnly"), "{set}");
}

/// `session-cookie-change-on-failure` when the cookie's pod stops answering: `false` (the
/// default) sends the retries to that pod again ("will send request to upstream pointed by
/// sticky cookie even if previous attempt failed"), so the client gets 502 and the other pod
/// never sees the request; `true` serves the request from the other pod and re-issues the
/// cookie for it ("sticky cookie will be changed to point to another upstream").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_on_failure_decides_where_the_retry_goes() {
    for (version, change) in [(1, "false"), (2, "true")] {
        let (mut a, b) = (Some(backend("a")), backend("b"));
        let addrs = [a.as_ref().unwrap().addr, b.addr];
        let proxy = TestProxy::start(TestProxy::quiet_args()).await;
        let c = http1_client();
        let ann = [
            ("affinity", "cookie"),
            ("affinity-mode", "persistent"),
            ("session-cookie-change-on-failure", change),
        ];
        proxy.handle.apply(translate_manifests(
            version,
            &sticky_yaml(&addrs, "/", &ann),
            |_| {},
        ));
        // A session on pod a (new sessions spread by round robin).
        let mut cookie = None;
        for _ in 0..10 {
            let (_, pod, set) = visit(&c, &proxy, "/", None, None).await;
            if pod == "a" {
                cookie = Some(pair(&set));
                break;
            }
        }
        let cookie = cookie.expect("a session on pod a");
        drop(a.take());
        let served_by_b = b.requests();
        let (status, pod, set) = visit(&c, &proxy, "/", Some(&cookie), None).await;
        if change == "true" {
            assert_eq!((status, pod.as_str()), (StatusCode::OK, "b"));
            assert!(!set.is_empty(), "a cookie for the new pod");
            let (status, pod, again) = visit(&c, &proxy, "/", Some(&pair(&set)), None).await;
            assert_eq!(
                (status, pod.as_str(), again.as_str()),
                (StatusCode::OK, "b", "")
            );
        } else {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{pod} {set}");
            assert_eq!(set, "");
            assert_eq!(b.requests(), served_by_b, "pod b never saw the session");
        }
    }
}

/// Two Ingresses send to one Service, one with cookie affinity (persistent) and one without:
/// each serves with its own annotations, whichever route the proxy compiles first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn affinity_of_one_ingress_does_not_leak_to_another_on_the_same_service() {
    let pods = [backend("p0"), backend("p1")];
    let addrs: Vec<SocketAddr> = pods.iter().map(|p| p.addr).collect();
    let proxy = TestProxy::start(TestProxy::quiet_args()).await;
    let c = http1_client();
    let sticky = [("affinity", "cookie"), ("affinity-mode", "persistent")];
    let yaml = [
        service_pods_yaml("web", &addrs),
        ingress_yaml("a-plain", "plain.test", "/", &[]),
        ingress_yaml("b-sticky", "sticky.test", "/", &sticky),
        ingress_yaml("c-plain", "other.test", "/", &[]),
    ]
    .concat();
    proxy.handle.apply(translate_manifests(1, &yaml, |_| {}));
    for host in ["plain.test", "other.test"] {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4 {
            let (status, pod, set) = visit_host(&c, &proxy, host, "/", None, None).await;
            assert_eq!((status, set.as_str()), (StatusCode::OK, ""), "{host}");
            seen.insert(pod);
        }
        assert_eq!(seen.len(), 2, "{host}: round robin over both pods");
    }
    let (status, pod, set) = visit(&c, &proxy, "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(set.starts_with("INGRESSCOOKIE="), "{set:?}");
    for _ in 0..4 {
        let (_, again, _) = visit(&c, &proxy, "/", Some(&pair(&set)), None).await;
        assert_eq!(again, pod);
    }
}
