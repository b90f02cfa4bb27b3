//! Translation of ingress-nginx's backend certificate authentication (`proxy-ssl-*`).
//! Expected values from ingress-nginx's annotations reference ("Backend Certificate
//! Authentication": `proxy-ssl-secret` `namespace/name` with `tls.crt`, `tls.key`, `ca.crt`;
//! `proxy-ssl-verify` default `off`; `proxy-ssl-verify-depth` default 1;
//! `proxy-ssl-protocols` default `TLSv1.2` (since #11343); `proxy-ssl-server-name` default
//! `off`), its `allow-cross-namespace-resources: false` default and nginx's
//! ngx_http_proxy_module (`proxy_ssl_name` default: the `proxy_pass` host, `upstream_balancer`).

use std::sync::Arc;

use k8s_openapi::{ByteString, api::core::v1::Secret};

use super::{fixtures::*, *};
use crate::{
    model::{RouteAction, Severity, Snapshot, TlsRoots, TlsVersion, Upstream, UpstreamTls},
    store::{Change, Key, Objects},
};

const N: &str = "nginx.ingress.kubernetes.io/";

fn ingress(name: &str, host: &str, annotations: &[(&str, &str)]) -> Object {
    let mut i = mk_ingress(
        "default",
        name,
        1,
        vec![(host, vec![("/", "Prefix", "web", "80")])],
    );
    for (k, v) in annotations {
        i = with_annotation(i, &format!("{N}{k}"), v);
    }
    ing(i)
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Object {
    Object::Secret(Arc::new(Secret {
        metadata: meta(ns, name),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }))
}

/// `web` (one pod) and Secret `default/ps` with `ca.crt`, `tls.crt`, `tls.key`.
fn base() -> Objects {
    let mut o = services_with_one_pod(&["web"]);
    let (ca, _) = mk_cert_pem(&["ca.test"]);
    let (crt, key) = mk_cert_pem(&["client.test"]);
    o.upsert(secret(
        "default",
        "ps",
        &[("ca.crt", &ca), ("tls.crt", &crt), ("tls.key", &key)],
    ));
    o
}

fn https(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("backend-protocol", "HTTPS"),
        ("proxy-ssl-secret", "default/ps"),
    ];
    v.extend_from_slice(extra);
    v
}

fn action(s: &Snapshot, host: &str) -> RouteAction {
    s.l7.hosts[host].routes[0].action.clone()
}

fn upstream(s: &Snapshot, host: &str) -> Arc<Upstream> {
    match action(s, host) {
        RouteAction::Forward(ups) => ups[0].upstream.clone(),
        other => panic!("{other:?}"),
    }
}

fn tls(s: &Snapshot, host: &str) -> UpstreamTls {
    (*upstream(s, host).tls.clone().expect("proxy-ssl TLS")).clone()
}

fn reasons(s: &Snapshot) -> Vec<(&str, Severity)> {
    s.diagnostics
        .iter()
        .map(|d| (d.reason.as_str(), d.severity))
        .collect()
}

fn run(o: &Objects) -> Snapshot {
    translate(o, &mk_config())
}

#[test]
fn defaults_are_nginx_proxy_ssl_defaults() {
    let mut o = base();
    o.upsert(ingress("ps", "ps.test", &https(&[])));
    o.upsert(ingress(
        "plain",
        "plain.test",
        &[("backend-protocol", "HTTPS")],
    ));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let t = tls(&s, "ps.test");
    assert!(!t.verify, "proxy-ssl-verify default off");
    assert!(!t.sni, "proxy-ssl-server-name default off");
    assert_eq!(t.hostname, "upstream_balancer", "proxy_pass host");
    assert_eq!(t.verify_depth, Some(1));
    assert_eq!(t.versions, Some(vec![TlsVersion::Tls12]), "TLSv1.2");
    assert!(matches!(&t.roots, TlsRoots::Certificates(c) if c.len() == 1));
    let cert = t.client_certificate.expect("tls.crt/tls.key presented");
    assert_eq!(cert.secret.name, "ps");
    // Pooled and tracked apart from the same Service port without the annotations.
    let (ps, plain) = (upstream(&s, "ps.test"), upstream(&s, "plain.test"));
    assert!(plain.tls.is_none());
    assert_eq!(plain.id, "default/web:80");
    assert!(ps.id.starts_with("proxy-ssl.") && ps.id.ends_with(":default/web:80"));
}

#[test]
fn each_annotation_is_read() {
    let mut o = base();
    o.upsert(ingress(
        "ps",
        "ps.test",
        &https(&[
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-server-name", "on"),
            ("proxy-ssl-name", "backend.app.svc"),
            ("proxy-ssl-verify-depth", "3"),
            ("proxy-ssl-protocols", "TLSv1.2 TLSv1.3"),
        ]),
    ));
    let s = run(&o);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let t = tls(&s, "ps.test");
    assert!(t.verify && t.sni);
    assert_eq!(t.hostname, "backend.app.svc");
    assert_eq!(t.verify_depth, Some(3));
    assert_eq!(t.versions, Some(vec![TlsVersion::Tls13, TlsVersion::Tls12]));
    // gRPCS takes them too; plain HTTP and gRPC do not speak TLS.
    for (proto, has) in [("GRPCS", true), ("HTTP", false), ("GRPC", false)] {
        let mut o = base();
        o.upsert(ingress(
            "ps",
            "ps.test",
            &[
                ("backend-protocol", proto),
                ("proxy-ssl-secret", "default/ps"),
            ],
        ));
        assert_eq!(upstream(&run(&o), "ps.test").tls.is_some(), has, "{proto}");
    }
}

#[test]
fn bad_values_warn_and_take_the_default() {
    let mut o = base();
    o.upsert(ingress(
        "ps",
        "ps.test",
        &https(&[
            ("proxy-ssl-verify", "true"),
            ("proxy-ssl-server-name", "yes"),
            ("proxy-ssl-verify-depth", "0"),
            ("proxy-ssl-protocols", "TLSv1.4 TLSv1.3"),
        ]),
    ));
    let s = run(&o);
    assert_eq!(
        reasons(&s),
        [("InvalidAnnotation", Severity::Warning); 4],
        "{:?}",
        s.diagnostics
    );
    let t = tls(&s, "ps.test");
    assert!(!t.verify && !t.sni);
    assert_eq!(t.verify_depth, Some(1));
    assert_eq!(
        t.versions,
        Some(vec![TlsVersion::Tls12]),
        "a value with an unknown name is the default as a whole (ingress-nginx's validator)"
    );
}

/// ingress-nginx validates `proxy-ssl-protocols` as a whole against
/// `^(TLSv1\.2|TLSv1\.3| )*$`: a list naming an older version (`TLSv1 TLSv1.1`, or
/// `TLSv1.1 TLSv1.3`) is refused with a warning and `TLSv1.2` used; the routes are served.
#[test]
fn old_protocol_names_fall_back_to_tls12() {
    for value in ["TLSv1 TLSv1.1", "TLSv1.1 TLSv1.3", ""] {
        let mut o = base();
        o.upsert(ingress(
            "ps",
            "ps.test",
            &https(&[("proxy-ssl-protocols", value)]),
        ));
        let s = run(&o);
        let want = if value.is_empty() { 0 } else { 1 };
        assert_eq!(
            reasons(&s),
            vec![("InvalidAnnotation", Severity::Warning); want],
            "{value}: {:?}",
            s.diagnostics
        );
        assert_eq!(tls(&s, "ps.test").versions, Some(vec![TlsVersion::Tls12]));
    }
}

/// Each unusable configuration denies that Ingress's routes (503, an Error naming why) and
/// never the other Ingress's, which uses the same Service.
#[test]
fn unusable_configurations_deny_the_ingress_only() {
    let (crt, key) = mk_cert_pem(&["client.test"]);
    /// Name, the data of Secret `default/x`, the annotations, the reason.
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, String)>,
        Vec<(&'a str, &'a str)>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "cross-namespace",
            vec![],
            vec![("proxy-ssl-secret", "other/ps")],
            "CrossNamespaceProxySslSecret",
        ),
        (
            "missing",
            vec![],
            vec![("proxy-ssl-secret", "default/nope")],
            "ProxySslSecretNotFound",
        ),
        (
            "not ns/name",
            vec![],
            vec![("proxy-ssl-secret", "a/b/c")],
            "InvalidAnnotation",
        ),
        (
            "verify without ca.crt",
            vec![("tls.crt", crt.clone()), ("tls.key", key.clone())],
            vec![
                ("proxy-ssl-secret", "default/x"),
                ("proxy-ssl-verify", "on"),
            ],
            "InvalidProxySslSecret",
        ),
        (
            "bad ca.crt",
            vec![("ca.crt", "not a certificate".into())],
            vec![("proxy-ssl-secret", "default/x")],
            "InvalidProxySslSecret",
        ),
        (
            "bad tls.key",
            vec![("tls.crt", crt.clone()), ("tls.key", "garbage".into())],
            vec![("proxy-ssl-secret", "default/x")],
            "InvalidProxySslSecret",
        ),
        (
            "only tls.crt",
            vec![("tls.crt", crt.clone())],
            vec![("proxy-ssl-secret", "default/x")],
            "InvalidProxySslSecret",
        ),
        (
            "empty Secret",
            vec![("other", "x".into())],
            vec![("proxy-ssl-secret", "default/x")],
            "InvalidProxySslSecret",
        ),
    ];
    for (name, data, ann, reason) in cases {
        let mut o = base();
        o.upsert(secret(
            "other",
            "ps",
            &[("ca.crt", &mk_cert_pem(&["ca"]).0)],
        ));
        let data: Vec<(&str, &str)> = data.iter().map(|(k, v)| (*k, v.as_str())).collect();
        o.upsert(secret("default", "x", &data));
        let mut ann = ann;
        ann.push(("backend-protocol", "HTTPS"));
        o.upsert(ingress("bad", "bad.test", &ann));
        o.upsert(ingress("good", "good.test", &https(&[])));
        let s = run(&o);
        assert_eq!(
            reasons(&s),
            [(reason, Severity::Error)],
            "{name}: {:?}",
            s.diagnostics
        );
        match action(&s, "bad.test") {
            RouteAction::Respond {
                status: 503,
                reason: why,
            } => {
                assert!(why.starts_with(reason), "{name}: {why}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(upstream(&s, "good.test").tls.is_some(), "{name}");
    }
}

#[test]
fn secret_namespaces_outside_the_watched_deny() {
    let mut o = base();
    o.upsert(ingress("ps", "ps.test", &https(&[])));
    let cfg = TranslateConfig {
        secret_namespaces: Some(vec!["elsewhere".into()]),
        ..mk_config()
    };
    let s = translate(&o, &cfg);
    assert_eq!(reasons(&s), [("ProxySslSecretNotWatched", Severity::Error)]);
    assert!(matches!(
        action(&s, "ps.test"),
        RouteAction::Respond { status: 503, .. }
    ));
}

/// The Secret is a dependency: its creation, change or deletion re-translates.
#[test]
fn the_secret_is_a_dependency() {
    let mut o = services_with_one_pod(&["web"]);
    o.upsert(ingress("ps", "ps.test", &https(&[])));
    let mut t = Translator::new(mk_config());
    let s = t.translate(&o);
    assert!(matches!(
        action(&s, "ps.test"),
        RouteAction::Respond { status: 503, .. }
    ));
    let created = Change::Upsert(
        base()
            .secrets
            .get(&Key::new("default", "ps"))
            .map(|s| Object::Secret(s.clone()))
            .expect("secret"),
    );
    assert!(t.affects(&o, &created));
    assert!(!t.affects(&o, &Change::Upsert(secret("default", "unrelated", &[]))));
}

/// `proxy-ssl-verify: on` without `proxy-ssl-secret` verifies nothing, as in ingress-nginx, and
/// says so (found by a fresh-user trial: a wrong backend certificate was accepted in silence);
/// the route serves as before.
#[test]
fn verify_without_a_secret_is_a_warning() {
    let mut o = base();
    o.upsert(ingress(
        "v",
        "v.test",
        &[("backend-protocol", "HTTPS"), ("proxy-ssl-verify", "on")],
    ));
    let s = run(&o);
    assert_eq!(
        reasons(&s),
        [("ProxySslVerifyWithoutSecret", Severity::Warning)]
    );
    assert!(upstream(&s, "v.test").tls.is_none());
    let mut d = diagnostics::Diagnostics::default();
    let map = [(
        "nginx.ingress.kubernetes.io/proxy-ssl-verify".to_string(),
        "on".to_string(),
    )]
    .into();
    let oref = crate::model::ObjectRef::new(crate::model::ObjectKind::Ingress, "default", "v");
    super::auth_value_problems(Some(&map), &oref, false, &mut d);
    assert_eq!(d.0.len(), 1, "migrate says it too: {:?}", d.0);
}
