//! Gateway `spec.tls.frontend` (client-certificate validation): expectations from the Gateway
//! API v1.6 `FrontendTLSValidation` reference and the conformance scenarios
//! GatewayFrontendClientCertificateValidation, ...InsecureFallback,
//! GatewayWithInvalidClientCertificateValidation and
//! GatewayInvalidDefaultFrontendClientCertificateValidation. What a client sees in the
//! handshake is in tests/l7_gateway.rs.

use std::sync::Arc;

use super::{
    super::fixtures::{mk_cert_pem, mk_tls_secret},
    test_support::{cond, snapshot_with},
};
use crate::{
    model::{ObjectKind, ObjectRef, Snapshot},
    store::Object,
};

fn listener<'a>(s: &'a Snapshot, gw: &str, name: &str) -> &'a [crate::model::StatusCondition] {
    let g = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", gw)];
    let l = g.listeners.iter().find(|l| l.name == name);
    &l.unwrap_or_else(|| panic!("listener {name}")).conditions
}

fn ca_config_map(ns: &str, name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata:\n  ca.crt: |\n{indented}"
    )
}

fn with_secret(yaml: &str) -> Snapshot {
    let (crt, key) = mk_cert_pem(&["example.org", "second-example.org"]);
    let secret = Object::Secret(Arc::new(mk_tls_secret("app", "tls", &crt, &key)));
    snapshot_with(yaml, vec![secret])
}

const TLS: &str = "tls: {certificateRefs: [{name: tls}]}";

/// GatewayFrontendClientCertificateValidation: `default` applies to every HTTPS listener,
/// a `perPort` entry replaces it on its port; the proxy gets each served listener's CAs by
/// port and hostname, and the Gateway stays accepted and programmed.
#[test]
fn gateway_frontend_client_certificate_validation() {
    let (ca, _) = mk_cert_pem(&["client-ca"]);
    let (per_port_ca, _) = mk_cert_pem(&["per-port-ca"]);
    let yaml = format!(
        r#"{}{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca}}]}}}}
      perPort:
      - port: 8443
        tls: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: per-port}}]}}}}
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: https, port: 443, protocol: HTTPS, {TLS}}}
  - {{name: https-with-hostname, port: 8443, hostname: second-example.org, protocol: HTTPS, {TLS}}}
"#,
        ca_config_map("app", "ca", &ca),
        ca_config_map("app", "per-port", &per_port_ca),
    );
    let s = with_secret(&yaml);
    for l in ["http", "https", "https-with-hostname"] {
        assert_eq!(
            cond(listener(&s, "gw", l), "Accepted"),
            (true, "Accepted"),
            "{l}"
        );
        assert!(cond(listener(&s, "gw", l), "ResolvedRefs").0, "{l}");
        assert!(cond(listener(&s, "gw", l), "Programmed").0, "{l}");
    }
    let v = &s.l7.gateway_client_validation;
    let der = |pem: &str| {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    assert_eq!(v[&443][""].ca_der, [der(&ca)]);
    assert!(!v[&443][""].insecure_fallback);
    assert_eq!(v[&8443]["second-example.org"].ca_der, [der(&per_port_ca)]);
    assert!(!v.contains_key(&80), "HTTP listeners never validate: {v:?}");
    let g = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", "gw")];
    assert!(
        !g.conditions
            .iter()
            .any(|c| c.type_ == "InsecureFrontendValidationMode"),
        "{:?}",
        g.conditions
    );
}

/// GatewayFrontendClientCertificateValidationInsecureFallback: the mode reaches the proxy and
/// the Gateway says `InsecureFrontendValidationMode: True, ConfigurationChanged`. A `perPort`
/// entry without `validation` turns it off on that port.
#[test]
fn gateway_frontend_client_certificate_validation_insecure_fallback() {
    let (ca, _) = mk_cert_pem(&["client-ca"]);
    let yaml = format!(
        r#"{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app, generation: 2}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default:
        validation: {{mode: AllowInsecureFallback, caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca}}]}}
      perPort: [{{port: 8443, tls: {{}}}}]
  listeners:
  - {{name: https, port: 443, protocol: HTTPS, {TLS}}}
  - {{name: plain, port: 8443, protocol: HTTPS, {TLS}}}
"#,
        ca_config_map("app", "ca", &ca),
    );
    let s = with_secret(&yaml);
    let v = &s.l7.gateway_client_validation;
    assert!(v[&443][""].insecure_fallback);
    assert!(!v.contains_key(&8443), "{v:?}");
    let g = &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", "gw")];
    let c = (g.conditions.iter())
        .find(|c| c.type_ == "InsecureFrontendValidationMode")
        .expect("InsecureFrontendValidationMode");
    assert!(c.status);
    assert_eq!(c.reason, "ConfigurationChanged");
    assert_eq!(c.observed_generation, 2);
    assert_eq!(cond(&g.conditions, "Accepted"), (true, "Accepted"));
}

/// GatewayWithInvalidClientCertificateValidation and
/// GatewayInvalidDefaultFrontendClientCertificateValidation: a reference that does not
/// resolve makes each HTTPS listener of its port `ResolvedRefs: False` with the spec's reason
/// (`InvalidCACertificateRef`, `InvalidCACertificateKind`, `RefNotPermitted`) and, with no
/// usable CA left, `Accepted: False, NoValidCACertificate` and not programmed (never served
/// without the validation it asks for); the HTTP listener and the other ports are untouched.
#[test]
fn gateway_with_invalid_client_certificate_validation() {
    let (ca, _) = mk_cert_pem(&["client-ca"]);
    let yaml = format!(
        r#"{}{}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca}}]}}}}
      perPort:
      - {{port: 8443, tls: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: nonexistent}}]}}}}}}
      - {{port: 8444, tls: {{validation: {{caCertificateRefs: [{{group: "", kind: Service, name: ca}}]}}}}}}
      - {{port: 8445, tls: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca, namespace: other}}]}}}}}}
      - {{port: 8446, tls: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca}}, {{group: "", kind: ConfigMap, name: nonexistent}}]}}}}}}
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: https, port: 443, protocol: HTTPS, {TLS}}}
  - {{name: https-unresolved, port: 8443, protocol: HTTPS, {TLS}}}
  - {{name: https-invalid-kind, port: 8444, protocol: HTTPS, {TLS}}}
  - {{name: https-grant-missing, port: 8445, protocol: HTTPS, {TLS}}}
  - {{name: https-one-of-two, port: 8446, protocol: HTTPS, {TLS}}}
"#,
        ca_config_map("app", "ca", &ca),
        ca_config_map("other", "ca", &ca),
    );
    let s = with_secret(&yaml);
    for l in ["http", "https"] {
        assert_eq!(
            cond(listener(&s, "gw", l), "Accepted"),
            (true, "Accepted"),
            "{l}"
        );
        assert!(cond(listener(&s, "gw", l), "ResolvedRefs").0, "{l}");
        assert!(cond(listener(&s, "gw", l), "Programmed").0, "{l}");
    }
    for (l, reason) in [
        ("https-unresolved", "InvalidCACertificateRef"),
        ("https-invalid-kind", "InvalidCACertificateKind"),
        ("https-grant-missing", "RefNotPermitted"),
    ] {
        let c = listener(&s, "gw", l);
        assert_eq!(cond(c, "ResolvedRefs"), (false, reason), "{l}");
        assert_eq!(cond(c, "Accepted"), (false, "NoValidCACertificate"), "{l}");
        assert!(!cond(c, "Programmed").0, "{l}");
    }
    // One CA of two resolves: accepted (not all are invalid), but, as a listener with a
    // certificateRef that does not resolve, not served until it is fixed.
    let c = listener(&s, "gw", "https-one-of-two");
    assert_eq!(cond(c, "ResolvedRefs"), (false, "InvalidCACertificateRef"));
    assert_eq!(cond(c, "Accepted"), (true, "Accepted"));
    assert!(!cond(c, "Programmed").0);
    let v = &s.l7.gateway_client_validation;
    assert_eq!(v.keys().copied().collect::<Vec<_>>(), [443]);
    assert!(!s.l7.gateway_listeners.contains_key(&8443));
}

/// GatewayFrontendInvalidDefaultClientCertificateValidation: an HTTPS listener left without
/// a valid CA (`Accepted: False, NoValidCACertificate`) presents no certificate either, named
/// or default, so no handshake with it verifies; the Gateway's HTTP listener is served.
#[test]
fn a_listener_without_a_valid_ca_presents_no_certificate() {
    let yaml = format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: does-not-exist}}]}}}}
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
  - {{name: https, port: 443, protocol: HTTPS, {TLS}}}
  - {{name: https-named, port: 443, protocol: HTTPS, hostname: example.org, {TLS}}}
"#
    );
    let s = with_secret(&yaml);
    for l in ["https", "https-named"] {
        let c = listener(&s, "gw", l);
        assert_eq!(cond(c, "Accepted"), (false, "NoValidCACertificate"), "{l}");
    }
    assert_eq!(
        cond(listener(&s, "gw", "http"), "Accepted"),
        (true, "Accepted")
    );
    assert!(s.l7.default_certificate.is_none());
    assert!(!s.l7.certificates.contains_key("example.org"));
}

/// A ReferenceGrant in the ConfigMap's namespace lets the Gateway use its CA.
#[test]
fn a_reference_grant_lets_a_gateway_use_another_namespaces_ca() {
    let (ca, _) = mk_cert_pem(&["client-ca"]);
    let yaml = format!(
        r#"{}---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {{name: g, namespace: other}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: app}}]
  to: [{{group: "", kind: ConfigMap}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: ca, namespace: other}}]}}}}
  listeners: [{{name: https, port: 443, protocol: HTTPS, {TLS}}}]
"#,
        ca_config_map("other", "ca", &ca),
    );
    let s = with_secret(&yaml);
    let c = listener(&s, "gw", "https");
    assert_eq!(cond(c, "ResolvedRefs"), (true, "ResolvedRefs"));
    assert!(s.l7.gateway_client_validation.contains_key(&443));
}

/// The CA ConfigMaps a Gateway's validation and a BackendTLSPolicy name are dependencies:
/// creating or changing one re-translates (a rotated CA goes live), an unrelated ConfigMap
/// does not. Before, only the controller's ConfigMaps were, so a CA created after its
/// policy was never read until some other change.
#[test]
fn ca_config_maps_are_dependencies() {
    use crate::{
        model::translate::{TranslateConfig, Translator},
        source::files::parse_manifests,
        store::{Change, Objects},
    };
    let yaml = format!(
        r#"{}---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: xdp}}
spec: {{controllerName: xdp-ingress.dev/controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: xdp
  tls:
    frontend:
      default: {{validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: client-ca}}]}}}}
  listeners: [{{name: https, port: 443, protocol: HTTPS, {TLS}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: p, namespace: app}}
spec:
  targetRefs: [{{group: "", kind: Service, name: web}}]
  validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}], hostname: web.app.svc}}
"#,
        ca_config_map("app", "unrelated", &mk_cert_pem(&["x"]).0),
    );
    let (crt, key) = mk_cert_pem(&["example.org"]);
    let mut objects = parse_manifests(&yaml).expect("manifests parse");
    objects.push(Object::Secret(Arc::new(mk_tls_secret(
        "app", "tls", &crt, &key,
    ))));
    let o = Objects::from_objects(objects);
    let mut t = Translator::new(TranslateConfig::default());
    t.translate(&o);
    let cm = |name: &str| {
        let mut docs =
            parse_manifests(&ca_config_map("app", name, &mk_cert_pem(&["ca"]).0)).expect("parses");
        Change::Upsert(docs.remove(0))
    };
    assert!(t.affects(&o, &cm("client-ca")), "the Gateway's CA");
    assert!(t.affects(&o, &cm("backend-ca")), "the policy's CA");
    assert!(!t.affects(&o, &cm("unrelated")));
}

/// GatewayBackendClientCertificate: `spec.tls.backend.clientCertificateRef` resolves to the
/// client certificate the proxy presents to the Gateway's BackendTLSPolicy backends (pooled
/// apart from connections without one), and the Gateway says `ResolvedRefs: True`; a Secret
/// that does not exist is `ResolvedRefs: False, InvalidClientCertificateRef` and the Gateway
/// is still served (without a certificate).
#[test]
fn gateway_tls_backend_client_certificate() {
    let (ca, _) = mk_cert_pem(&["backend-ca"]);
    let yaml = format!(
        r#"{ca}---
apiVersion: v1
kind: Service
metadata: {{name: secure, namespace: app}}
spec: {{ports: [{{name: https, port: 443}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: p, namespace: app}}
spec:
  targetRefs: [{{group: "", kind: Service, name: secure}}]
  validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}], hostname: abc.example.com}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app, generation: 3}}
spec:
  gatewayClassName: xdp
  tls: {{backend: {{clientCertificateRef: {{name: tls}}}}}}
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: broken, namespace: app}}
spec:
  gatewayClassName: xdp
  tls: {{backend: {{clientCertificateRef: {{name: missing}}}}}}
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: app}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [abc.example.com]
  rules: [{{backendRefs: [{{name: secure, port: 443}}]}}]
"#,
        ca = ca_config_map("app", "backend-ca", &ca),
    );
    let s = with_secret(&yaml);
    let g =
        |name: &str| &s.gateway_status.gateways[&ObjectRef::new(ObjectKind::Gateway, "app", name)];
    let c = &g("gw").conditions;
    assert_eq!(cond(c, "ResolvedRefs"), (true, "ResolvedRefs"));
    assert_eq!(
        c.iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap()
            .observed_generation,
        3
    );
    let c = &g("broken").conditions;
    assert_eq!(
        cond(c, "ResolvedRefs"),
        (false, "InvalidClientCertificateRef")
    );
    assert!(cond(c, "Programmed").0);
    let crate::model::RouteAction::Forward(to) = &s.l7.hosts["abc.example.com"].routes[0].action
    else {
        panic!("forwards")
    };
    let u = &to[0].upstream;
    let tls = u.tls.as_ref().expect("verified TLS");
    let cert = tls.client_certificate.as_ref().expect("client certificate");
    assert_eq!(cert.secret.name, "tls");
    assert!(u.id.contains("client-cert:app/tls"), "{}", u.id);
}
