//! An Ingress backend whose Service is of type ExternalName: the name and port the proxy
//! connects to, or why there is none.
//!
//! ingress-nginx (`internal/ingress/controller/controller.go` `serviceEndpoints` and
//! `externalNamePorts`, `endpointslices.go` `getEndpointsFromSlices`): the upstream is one
//! endpoint whose address is `spec.externalName` and whose port is the backend's port — for a
//! number, the Service port of that number's target port if the Service lists it, else the
//! number itself; for a name, the target port (else the port) of the Service port of that
//! name. `--disable-svc-external-name`, the name `localhost`, a loopback address and a name
//! that is not a DNS-1123 subdomain (trailing dot allowed) leave it without endpoints: 503.
//! The name is resolved by the proxy when a request needs it
//! ([`crate::proxy::upstream::external_name`]).

use std::net::IpAddr;

use crate::compact::ingress::ServiceBackendPort;

use crate::compact::service::Service;

use super::node_local::NodeLocal;
use crate::model::ExternalName;

/// The Service type whose backends this module resolves.
pub const TYPE: &str = "ExternalName";

/// Why an ExternalName backend has no upstream: `(reason, message)` for the diagnostic and
/// the 503's reason.
pub type Refusal = (&'static str, String);

/// The target of `svc` (`key` names it in messages) for a backend port `port`; `disabled`
/// is `--disable-svc-external-name`; `guard` is the translation's one check of upstream
/// addresses ([`super::endpoints::EndpointIndex::refusal`]), applied to an IP written as the
/// name and to `localhost` (as `127.0.0.1`): ingress-nginx refuses `localhost` and loopback
/// addresses here; this proxy refuses what it refuses as an endpoint address, loopback unless
/// `--allow-node-local-endpoints`.
pub fn target(
    svc: &Service,
    key: &impl std::fmt::Display,
    port: Option<&ServiceBackendPort>,
    disabled: bool,
    guard: &dyn Fn(IpAddr) -> Option<NodeLocal>,
) -> Result<ExternalName, Refusal> {
    if disabled {
        // ingress-nginx's words (`serviceEndpoints`).
        return Err((
            "ExternalNameDisabled",
            format!(
                "Service {key} of type ExternalName not allowed due to Ingress configuration \
                 (--disable-svc-external-name)"
            ),
        ));
    }
    let spec = svc.spec.as_ref();
    let name = spec
        .and_then(|s| s.external_name.as_deref())
        .unwrap_or_default();
    let literal = match name {
        "localhost" => Some(LOOPBACK),
        _ => name.parse::<IpAddr>().ok(),
    };
    match literal {
        Some(ip) => {
            if let Some(why) = guard(ip) {
                return Err((
                    "InvalidExternalName",
                    format!("service {key}: {name:?} is {}", why.describe()),
                ));
            }
        }
        None if !is_dns1123_subdomain(name.strip_suffix('.').unwrap_or(name)) => {
            return Err((
                "InvalidExternalName",
                format!("service {key}: {name:?} is not a DNS name (RFC 1123 subdomain)"),
            ));
        }
        None => {}
    }
    let at = |port| with_port(name, port, key, guard(LOOPBACK).is_none());
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let listed = match port {
        Some(ServiceBackendPort {
            number: Some(n), ..
        }) => match ports.iter().find(|p| p.port == *n) {
            Some(p) => p,
            // "ExternalName without port": the backend's number itself.
            None => return at(*n),
        },
        Some(ServiceBackendPort { name: Some(n), .. }) => {
            match ports.iter().find(|p| p.name.as_deref() == Some(n)) {
                Some(p) => p,
                None => {
                    return Err((
                        "ServicePortNotFound",
                        format!("service {key} has no port {n}"),
                    ));
                }
            }
        }
        _ => return Err(("InvalidBackend", format!("backend for {key} names no port"))),
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let number = match listed.target_port {
        Some(IntOrString::Int(t)) if t != 0 => t,
        _ => listed.port,
    };
    at(number)
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn with_port(
    host: &str,
    port: i32,
    key: &impl std::fmt::Display,
    loopback_allowed: bool,
) -> Result<ExternalName, Refusal> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(ExternalName {
            host: host.to_string(),
            port: p,
            loopback_allowed,
        }),
        _ => Err((
            "InvalidBackend",
            format!("service {key}: port {port} is not a TCP port"),
        )),
    }
}

/// Kubernetes `validation.IsDNS1123Subdomain`: at most 253 bytes of dot-separated labels of
/// lowercase letters, digits and inner hyphens.
fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            b.first().is_some_and(edge)
                && b.last().is_some_and(edge)
                && b.iter().all(|c| edge(c) || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::service::ServiceSpec;
    use k8s_openapi::api::core::v1::ServicePort;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn svc(name: &str, ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: Default::default(),
            spec: Some(ServiceSpec {
                type_: Some(TYPE.into()),
                external_name: Some(name.into()),
                ports: Some(ports.into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn number(n: i32) -> ServiceBackendPort {
        ServiceBackendPort {
            number: Some(n),
            name: None,
        }
    }

    fn named(n: &str) -> ServiceBackendPort {
        ServiceBackendPort {
            number: None,
            name: Some(n.into()),
        }
    }

    fn http_port(port: i32, target: Option<i32>) -> ServicePort {
        ServicePort {
            name: Some("http".into()),
            port,
            target_port: target.map(IntOrString::Int),
            ..Default::default()
        }
    }

    fn ok(host: &str, port: u16) -> Result<ExternalName, Refusal> {
        Ok(ExternalName {
            host: host.into(),
            port,
            loopback_allowed: false,
        })
    }

    /// The guard without `--allow-node-local-endpoints`.
    fn guard(ip: IpAddr) -> Option<NodeLocal> {
        super::super::node_local::classify(ip)
    }

    #[test]
    fn port_number_listed_unlisted_and_by_name() {
        let s = svc("echo.example.com", vec![http_port(80, Some(8080))]);
        assert_eq!(
            target(&s, &"d/e", Some(&number(80)), false, &guard),
            ok("echo.example.com", 8080)
        );
        assert_eq!(
            target(&s, &"d/e", Some(&number(9000)), false, &guard),
            ok("echo.example.com", 9000)
        );
        assert_eq!(
            target(&s, &"d/e", Some(&named("http")), false, &guard),
            ok("echo.example.com", 8080)
        );
        let no_target = svc("echo.example.com", vec![http_port(81, None)]);
        assert_eq!(
            target(&no_target, &"d/e", Some(&named("http")), false, &guard),
            ok("echo.example.com", 81)
        );
        assert_eq!(
            target(&s, &"d/e", Some(&named("grpc")), false, &guard)
                .unwrap_err()
                .0,
            "ServicePortNotFound"
        );
    }

    #[test]
    fn trailing_dot_and_ip_are_names_localhost_and_bad_names_are_not() {
        let p = Some(number(80));
        assert_eq!(
            target(
                &svc("echo.example.com.", vec![]),
                &"d/e",
                p.as_ref(),
                false,
                &guard
            ),
            ok("echo.example.com.", 80)
        );
        assert_eq!(
            target(&svc("192.0.2.1", vec![]), &"d/e", p.as_ref(), false, &guard),
            ok("192.0.2.1", 80)
        );
        assert_eq!(
            target(&svc("echo", vec![]), &"d/e", p.as_ref(), false, &guard),
            ok("echo", 80)
        );
        for bad in [
            "localhost",
            "127.0.0.1",
            "::1",
            "Echo.example.com",
            "-a.b",
            "a..b",
            "",
        ] {
            assert_eq!(
                target(&svc(bad, vec![]), &"d/e", p.as_ref(), false, &guard)
                    .unwrap_err()
                    .0,
                "InvalidExternalName",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn localhost_with_node_local_endpoints_allowed() {
        let allow = |ip| guard(ip).filter(|k: &NodeLocal| !k.opt_in_allows());
        let t = target(
            &svc("localhost", vec![]),
            &"d/e",
            Some(&number(80)),
            false,
            &allow,
        );
        assert_eq!(
            t.map(|t| (t.host, t.port, t.loopback_allowed)),
            Ok(("localhost".into(), 80, true))
        );
        let metadata = target(
            &svc("169.254.169.254", vec![]),
            &"d/e",
            Some(&number(80)),
            false,
            &allow,
        );
        assert_eq!(metadata.unwrap_err().0, "InvalidExternalName");
    }

    #[test]
    fn disabled_by_flag() {
        let (reason, msg) = target(
            &svc("echo.example.com", vec![]),
            &"d/e",
            Some(&number(80)),
            true,
            &guard,
        )
        .unwrap_err();
        assert_eq!(reason, "ExternalNameDisabled");
        assert!(
            msg.contains("not allowed due to Ingress configuration"),
            "{msg}"
        );
    }
}
