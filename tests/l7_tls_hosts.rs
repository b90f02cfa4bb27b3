//! Which certificate a client gets by SNI, and whether plain HTTP is redirected, for Ingresses
//! whose `spec.tls` and rules do not line up, as ingress-nginx decides it: controller.go
//! `createServers` (an Ingress's certificates go to its own rule hosts: the entry naming the
//! host, else one whose certificate `VerifyHostname`s it, else the default), nginx.go
//! `configureCertificates` (aliases the certificate is valid for), pkg/util/ingress
//! `BuildRedirects` (the from-to-www name), certificate.lua (exact name, then its one-label
//! wildcard, then the default) and lua_ingress.lua `redirect_to_https` (the request's host
//! has a certificate). Found by a user trial (session 14, cases F2-F6).

mod l7common;

use std::sync::Arc;

use http::StatusCode;
use l7common::*;
use xdp_ingress::{model::Snapshot, proxy::tls::self_signed_pem};

/// ingress-nginx's fake certificate's subject Common Name (internal/net/ssl/ssl.go), which
/// our generated default carries too.
const FAKE_CN: &[u8] = b"Kubernetes Ingress Controller Fake Certificate";

type Pem = (String, String);

fn secret_yaml(name: &str, pem: &Pem) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\n\
         type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n---\n",
        b64(&pem.0),
        b64(&pem.1)
    )
}

/// An Ingress `name` routing `/` of each of `hosts` to Service `web`, with `tls` (YAML flow
/// list, `""` for none) and annotations.
fn ingress_yaml(name: &str, hosts: &[&str], tls: &str, annotations: &[(&str, &str)]) -> String {
    let rules: String = hosts
        .iter()
        .map(|h| {
            format!(
                "  - host: {h:?}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, \
                 backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
            )
        })
        .collect();
    let tls = if tls.is_empty() {
        String::new()
    } else {
        format!("  tls: {tls}\n")
    };
    let ann = if annotations.is_empty() {
        String::new()
    } else {
        nginx_annotations_yaml(annotations)
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
         namespace: default\n{ann}spec:\n  ingressClassName: xdp-ingress\n{tls}  rules:\n{rules}---\n"
    )
}

struct Trial {
    proxy: TestProxy,
    _app: testbed::http_backend::HttpBackend,
    client: Http1,
    snapshot: Arc<Snapshot>,
}

impl Trial {
    /// The proxy serving `objects` (YAML, after Service `web`).
    async fn start(objects: &str) -> Trial {
        Self::start_with(objects, |_| {}).await
    }

    async fn start_with(
        objects: &str,
        edit: impl FnOnce(&mut xdp_ingress::model::translate::TranslateConfig),
    ) -> Trial {
        let app = backend("app");
        let proxy = TestProxy::start(TestProxy::quiet_args()).await;
        let yaml = format!("{}{objects}", service_yaml("web", app.addr));
        let snapshot = translate_manifests(1, &yaml, edit);
        proxy.handle.apply(Arc::clone(&snapshot));
        Trial {
            proxy,
            _app: app,
            client: http1_client(),
            snapshot,
        }
    }

    /// The end-entity certificate a handshake naming `sni` gets.
    async fn cert(&self, sni: &str) -> Vec<u8> {
        tls_connect(self.proxy.https(), sni, &[]).await.1
    }

    /// Status and `Location` of a plain-HTTP `GET /p` for `host`.
    async fn http(&self, host: &str) -> (StatusCode, String) {
        let g = get(&self.client, self.proxy.http(), host, "/p").await;
        (g.status, g.header("location"))
    }

    /// Asserts `host` is redirected to HTTPS (308 to `https://host...`).
    async fn redirected(&self, host: &str) {
        let (status, location) = self.http(host).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT, "{host}");
        assert!(
            location.starts_with(&format!("https://{host}")),
            "{host}: {location}"
        );
    }

    /// Asserts `host` is served over plain HTTP.
    async fn served(&self, host: &str) {
        assert_eq!(
            self.http(host).await,
            (StatusCode::OK, String::new()),
            "{host}"
        );
    }

    fn warned(&self, reason: &str, about: &str) -> bool {
        self.snapshot
            .diagnostics
            .iter()
            .any(|d| d.reason == reason && d.message.contains(about))
    }
}

fn is_fake(der: &[u8]) -> bool {
    der.windows(FAKE_CN.len()).any(|w| w == FAKE_CN)
}

fn pem(names: &[&str]) -> Pem {
    self_signed_pem(names).unwrap()
}

/// F2: `spec.tls` without hosts is no default certificate: the Ingress's rule host the
/// certificate is valid for takes it and is redirected; every other name, and a client
/// without SNI, keeps the default (fake) certificate. (Ours made it the default for every
/// name: any namespace could replace the certificate every other host is served with.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_hosts_is_for_the_ingress_rule_hosts_only() {
    let nh = pem(&["nh.test"]);
    let t = Trial::start(&format!(
        "{}{}{}",
        secret_yaml("nh-cert", &nh),
        ingress_yaml("nh", &["nh.test"], "[{secretName: nh-cert}]", &[]),
        ingress_yaml("other", &["other.test"], "", &[]),
    ))
    .await;
    assert_eq!(t.cert("nh.test").await, pem_der(&nh.0));
    t.redirected("nh.test").await;
    assert!(is_fake(&t.cert("other.test").await));
    assert!(is_fake(&t.cert("unknown.test").await));
    t.served("other.test").await;
    assert!(t.snapshot.l7.default_certificate.is_none());
}

/// F2, with a certificate valid for none of the Ingress's hosts: a Warning says so, the
/// default certificate stays for everyone, and the host is redirected as ingress-nginx does
/// (a server of an Ingress with a TLS section has a certificate, the default one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_hosts_valid_for_no_host_warns() {
    let other = pem(&["elsewhere.test"]);
    let t = Trial::start(&format!(
        "{}{}",
        secret_yaml("nh-cert", &other),
        ingress_yaml("nh", &["nh.test"], "[{secretName: nh-cert}]", &[]),
    ))
    .await;
    assert!(t.warned(
        "TlsCertificateHostMismatch",
        "none of this Ingress's hosts (nh.test)"
    ));
    assert!(t.warned("TlsHostWithoutCertificate", "nh.test"));
    assert!(is_fake(&t.cert("nh.test").await));
    assert!(is_fake(&t.cert("elsewhere.test").await));
    t.redirected("nh.test").await;
}

/// F3: a `spec.tls` host without a rule in its Ingress configures nothing there: another
/// Ingress's host of that name stays plain HTTP with the default certificate (and a Warning
/// names it). The Ingress's own rule host takes the certificate only when it is valid for it,
/// else the default, and is redirected either way; a certificate another entry names for
/// another host still goes to a rule host it is valid for (a `*.wc.test` wildcard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_hosts_configure_only_the_ingress_rule_hosts() {
    let nh = pem(&["nh.test"]);
    let wc = pem(&["*.wc.test"]);
    let t = Trial::start(&format!(
        "{}{}{}{}{}",
        secret_yaml("nh-cert", &nh),
        secret_yaml("wc-cert", &wc),
        ingress_yaml(
            "a",
            &["x-only.test"],
            "[{hosts: [nh.test], secretName: nh-cert}]",
            &[]
        ),
        ingress_yaml("b", &["nh.test"], "", &[]),
        ingress_yaml(
            "c",
            &["oh.wc.test"],
            "[{hosts: [other], secretName: wc-cert}]",
            &[]
        ),
    ))
    .await;
    assert!(is_fake(&t.cert("nh.test").await));
    t.served("nh.test").await;
    assert!(t.warned("TlsHostWithoutRule", "nh.test"));
    assert!(is_fake(&t.cert("x-only.test").await));
    t.redirected("x-only.test").await;
    assert_eq!(t.cert("oh.wc.test").await, pem_der(&wc.0));
    t.redirected("oh.wc.test").await;

    // x-only.test takes A's certificate when it is valid for it.
    let both = pem(&["nh.test", "x-only.test"]);
    let t = Trial::start(&format!(
        "{}{}{}",
        secret_yaml("nh-cert", &both),
        ingress_yaml(
            "a",
            &["x-only.test"],
            "[{hosts: [nh.test], secretName: nh-cert}]",
            &[]
        ),
        ingress_yaml("b", &["nh.test"], "", &[]),
    ))
    .await;
    assert_eq!(t.cert("x-only.test").await, pem_der(&both.0));
    t.redirected("x-only.test").await;
    assert!(is_fake(&t.cert("nh.test").await));
    t.served("nh.test").await;
}

/// F4 (ingress-nginx#6057): a host without TLS under a `*.wc.test` wildcard with a
/// certificate is served the wildcard's certificate and redirected: certificate.lua falls
/// back to the wildcard name for the request's host, and lua_ingress.lua redirects when it
/// finds one. `ssl-redirect: "false"` on the plain host's Ingress keeps it on HTTP;
/// `force-ssl-redirect` redirects a host without any certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_certificate_redirects_the_hosts_under_it() {
    let wc = pem(&["*.wc.test"]);
    let t = Trial::start(&format!(
        "{}{}{}{}{}",
        secret_yaml("wc-cert", &wc),
        ingress_yaml(
            "wcall",
            &["*.wc.test"],
            "[{hosts: ['*.wc.test'], secretName: wc-cert}]",
            &[]
        ),
        ingress_yaml("wcone", &["plain.wc.test"], "", &[]),
        ingress_yaml(
            "optout",
            &["optout.wc.test"],
            "",
            &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
        ),
        ingress_yaml(
            "forced",
            &["forced.test"],
            "",
            &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")],
        ),
    ))
    .await;
    assert_eq!(t.cert("plain.wc.test").await, pem_der(&wc.0));
    t.redirected("plain.wc.test").await;
    t.redirected("any.wc.test").await;
    t.served("optout.wc.test").await;
    t.redirected("forced.test").await;
    assert!(is_fake(&t.cert("forced.test").await));
}

/// F5: `server-alias` names take the host's certificate where it is valid for them (and
/// are redirected); an alias it is not valid for gets the default certificate and stays on
/// plain HTTP (nginx.go `configureCertificates`; lua_ingress.lua redirects by the request's
/// own name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_aliases_take_the_certificate_where_it_is_valid() {
    let sa = pem(&["sa1.test", "sa2.test"]);
    let t = Trial::start(&format!(
        "{}{}",
        secret_yaml("sa-cert", &sa),
        ingress_yaml(
            "sa",
            &["sa1.test"],
            "[{hosts: [sa1.test], secretName: sa-cert}]",
            &[(
                "nginx.ingress.kubernetes.io/server-alias",
                "sa2.test,sa3.test"
            )],
        ),
    ))
    .await;
    assert_eq!(t.cert("sa1.test").await, pem_der(&sa.0));
    assert_eq!(t.cert("sa2.test").await, pem_der(&sa.0));
    assert!(is_fake(&t.cert("sa3.test").await));
    t.redirected("sa1.test").await;
    t.redirected("sa2.test").await;
    t.served("sa3.test").await;
}

/// F6: `from-to-www-redirect` with a certificate for www.ft.test that is valid for ft.test
/// too: a handshake for ft.test gets it, so HTTPS to ft.test is redirected without a
/// certificate warning (pkg/util/ingress `BuildRedirects` sets the redirect's certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_from_to_www_name_takes_the_certificate_valid_for_it() {
    let ft = pem(&["www.ft.test", "ft.test"]);
    let t = Trial::start(&format!(
        "{}{}",
        secret_yaml("ft-cert", &ft),
        ingress_yaml(
            "ft",
            &["www.ft.test"],
            "[{hosts: [www.ft.test], secretName: ft-cert}]",
            &[("nginx.ingress.kubernetes.io/from-to-www-redirect", "true")],
        ),
    ))
    .await;
    assert_eq!(t.cert("ft.test").await, pem_der(&ft.0));
    assert_eq!(t.cert("www.ft.test").await, pem_der(&ft.0));
    let (status, location) = t.http("ft.test").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert!(location.contains("www.ft.test"), "{location}");
}

/// With `--default-ssl-certificate`, a host configured with the default certificate is
/// served it, not a wildcard's certificate valid for it (certificate.lua looks the exact
/// name up first); other names get the default too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_the_default_certificate_is_not_served_a_wildcards() {
    let wc = pem(&["*.wc.test"]);
    let fallback = pem(&["fallback.test"]);
    let t = Trial::start_with(
        &format!(
            "{}{}{}{}",
            secret_yaml("wc-cert", &wc),
            secret_yaml("fallback", &fallback),
            ingress_yaml(
                "wcall",
                &["*.wc.test"],
                "[{hosts: ['*.wc.test'], secretName: wc-cert}]",
                &[]
            ),
            ingress_yaml(
                "x",
                &["x.wc.test"],
                "[{hosts: [x.wc.test], secretName: missing}]",
                &[]
            ),
        ),
        |c| c.default_tls_secret = Some(xdp_ingress::store::Key::new("default", "fallback")),
    )
    .await;
    assert_eq!(t.cert("x.wc.test").await, pem_der(&fallback.0));
    assert_eq!(t.cert("y.wc.test").await, pem_der(&wc.0));
    assert_eq!(t.cert("nothing.test").await, pem_der(&fallback.0));
    t.redirected("x.wc.test").await;
}
