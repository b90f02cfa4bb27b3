//! ingress-nginx's authentication annotations (`auth-type`, `auth-secret`, `auth-secret-type`,
//! `auth-realm`) -> the route's [`RouteAuth`], with the users read from the Secret here, once
//! per translation.
//!
//! As ingress-nginx (internal/ingress/annotations/auth/main.go), anything that keeps the
//! authentication from being set up denies the location: ingress-nginx renders `return 503`;
//! so does [`RouteAuth::Unavailable`]. Never open. Cases: `auth-type` other than `basic`
//! (`digest` is not supported here), a bad `auth-secret-type`, no `auth-secret`, a Secret in
//! another namespace (ingress-nginx's `allow-cross-namespace-resources` defaults to false), not
//! watched (`--secret-namespaces`), missing, or (`auth-file`) without an `auth` key. A line of
//! the file that nginx could not check is a warning and that user is refused (401), as nginx.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    model::{
        AuthSecretType, BasicAuth, ObjectKind, ObjectRef, RouteAuth,
        htpasswd::{Htpasswd, LineProblem},
    },
    store::{Key, Objects},
};

use super::annotations::Reader;

/// The Secret key of an `auth-file` Secret (ingress-nginx `dumpSecretAuthFile`).
pub const AUTH_FILE_KEY: &str = "auth";

/// What the authentication annotations of one Ingress (namespace `ns`) ask for; `None` without
/// `auth-type`. Secrets looked up are added to `secrets_used` (so their changes re-translate).
pub(super) fn parse(
    r: &mut Reader<'_>,
    ns: &str,
    objects: &Objects,
    secret_namespaces: Option<&[String]>,
    secrets_used: &mut std::collections::HashSet<Key>,
) -> Option<RouteAuth> {
    let auth_type = r.get("auth-type")?.to_string();
    let unavailable = |r: &mut Reader<'_>, reason: &str, msg: String| {
        report_unavailable(r, reason, &msg);
        Some(RouteAuth::Unavailable {
            reason: format!("{reason}: {msg}"),
        })
    };
    let (secret_type, key) = match values(r, &auth_type, ns) {
        Ok(v) => v,
        Err((reason, msg)) => return unavailable(r, reason, msg),
    };
    let (secret_ns, secret_name) = (key.namespace.clone(), key.name.clone());
    if let Some(allowed) = secret_namespaces
        && !allowed.contains(&secret_ns)
    {
        let msg = format!(
            "auth-secret {key} is outside --secret-namespaces ({}) and is not read",
            allowed.join(", ")
        );
        return unavailable(r, "AuthSecretNotWatched", msg);
    }
    secrets_used.insert(key.clone());
    let Some(secret) = objects.secrets.get(&key) else {
        return unavailable(
            r,
            "AuthSecretNotFound",
            format!("auth-secret {key} does not exist"),
        );
    };
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let (users, problems) = match secret_type {
        AuthSecretType::AuthFile => {
            let Some(file) = data.get(AUTH_FILE_KEY) else {
                let msg = format!(
                    "auth-secret {key} has no key {AUTH_FILE_KEY:?} (auth-secret-type: auth-file)"
                );
                return unavailable(r, "InvalidAuthSecret", msg);
            };
            Htpasswd::parse_file(&file.0)
        }
        AuthSecretType::AuthMap => {
            Htpasswd::parse_map(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())))
        }
    };
    report_lines(r, &key, secret_type, &problems);
    if users.is_empty() {
        r.diags.warn(
            r.object,
            "AuthSecretHasNoUsers",
            format!("auth-secret {key} names no user; every request gets 401"),
        );
    }
    let realm = match r.get("auth-realm") {
        None => String::new(),
        Some(v) if v.chars().any(char::is_control) => {
            let v = v.to_string();
            r.bad("auth-realm", &v, "text without control characters");
            String::new()
        }
        Some(v) => v.to_string(),
    };
    Some(RouteAuth::Basic(Arc::new(BasicAuth {
        realm,
        secret: ObjectRef::new(ObjectKind::Secret, secret_ns, secret_name),
        secret_type,
        users: Arc::new(users),
    })))
}

/// What `auth-type`, `auth-secret-type` and `auth-secret` say before any Secret is read (the
/// Secret's layout and key), or the diagnostic reason and message that make the route
/// unavailable. `ns`: the Ingress's namespace.
fn values(
    r: &Reader<'_>,
    auth_type: &str,
    ns: &str,
) -> Result<(AuthSecretType, Key), (&'static str, String)> {
    match auth_type {
        "basic" => {}
        "digest" => {
            return Err((
                "UnsupportedAuthType",
                "auth-type: digest is not supported (use basic)".into(),
            ));
        }
        other => {
            return Err((
                "InvalidAnnotation",
                format!("annotation auth-type: {other:?} is not basic or digest"),
            ));
        }
    }
    let secret_type = match r.get("auth-secret-type") {
        None | Some("auth-file") => AuthSecretType::AuthFile,
        Some("auth-map") => AuthSecretType::AuthMap,
        Some(other) => {
            let msg =
                format!("annotation auth-secret-type: {other:?} is not auth-file or auth-map");
            return Err(("InvalidAnnotation", msg));
        }
    };
    let Some(name) = r.get("auth-secret").map(str::to_string) else {
        return Err((
            "AuthSecretNotSet",
            "auth-type: basic without auth-secret".into(),
        ));
    };
    // client-go's SplitMetaNamespaceKey: `name` or `namespace/name`.
    let (secret_ns, secret_name) = match name.split('/').collect::<Vec<_>>()[..] {
        [n] => (ns.to_string(), n.to_string()),
        [s, n] => (if s.is_empty() { ns } else { s }.to_string(), n.to_string()),
        _ => (String::new(), String::new()),
    };
    if secret_name.is_empty() {
        let msg = format!("annotation auth-secret: {name:?} is not NAME or NAMESPACE/NAME");
        return Err(("InvalidAnnotation", msg));
    }
    let key = Key::new(secret_ns.clone(), secret_name.clone());
    if r.foreign(ns, &secret_ns) {
        let msg = format!(
            "auth-secret {key} is in another namespace than the Ingress; cross-namespace \
             Secrets are not allowed (allow-cross-namespace-resources: \"true\" allows them)"
        );
        return Err(("CrossNamespaceAuthSecret", msg));
    }
    Ok((secret_type, key))
}

/// Reports (on `r`, as [`parse`] does) what is wrong with the values of an Ingress's basic
/// auth annotations without reading its Secret: what `migrate` checks.
pub(super) fn check_values(r: &mut Reader<'_>, ns: &str) {
    let Some(auth_type) = r.get("auth-type").map(str::to_string) else {
        return;
    };
    if let Err((reason, msg)) = values(r, &auth_type, ns) {
        report_unavailable(r, reason, &msg);
    }
}

/// Reports why the route's basic auth cannot be set up (its paths answer 503).
fn report_unavailable(r: &mut Reader<'_>, reason: &str, msg: &str) {
    r.diags.error(
        r.object,
        reason,
        format!("{msg}; every request to its paths gets 503 (never unauthenticated)"),
    );
}

/// One warning per unusable line, naming line (or key) and user, never the hash.
fn report_lines(r: &mut Reader<'_>, key: &Key, ty: AuthSecretType, problems: &[LineProblem]) {
    for p in problems {
        let at = match ty {
            AuthSecretType::AuthFile => format!("line {}", p.line),
            AuthSecretType::AuthMap => format!("key {:?}", p.user),
        };
        r.diags.warn(
            r.object,
            "InvalidAuthSecretEntry",
            format!(
                "auth-secret {key}, {at} (user {:?}): {}; that user is refused",
                p.user, p.error
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::{ByteString, api::core::v1::Secret};

    use super::super::{Translator, fixtures::*};
    use crate::{
        model::{AuthSecretType, RouteAuth, Severity, Snapshot},
        store::{Change, Object, Objects},
    };

    /// `{PLAIN}`: the parse is what is tested here; every scheme is in `model::htpasswd`.
    const FILE: &str = "alice:{PLAIN}s3cret\n";

    fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Object {
        Object::Secret(Arc::new(Secret {
            metadata: meta(ns, name),
            type_: Some("Opaque".into()),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    fn objects(annotations: &[(&str, &str)], secrets: Vec<Object>) -> Objects {
        let mut o = services_with_one_pod(&["web"]);
        let mut i = mk_ingress(
            "default",
            "a",
            1,
            vec![("a.test", vec![("/", "Prefix", "web", "80")])],
        );
        for (k, v) in annotations {
            i = with_annotation(i, &format!("nginx.ingress.kubernetes.io/{k}"), v);
        }
        o.upsert(ing(i));
        for s in secrets {
            o.upsert(s);
        }
        o
    }

    fn auth_of(s: &Snapshot) -> Option<RouteAuth> {
        s.l7.hosts["a.test"].routes[0].policy.auth.clone()
    }

    fn reasons(s: &Snapshot) -> Vec<(Severity, String)> {
        s.diagnostics
            .iter()
            .map(|d| (d.severity, d.reason.clone()))
            .collect()
    }

    const BASIC: [(&str, &str); 3] = [
        ("auth-type", "basic"),
        ("auth-secret", "users"),
        ("auth-realm", "Staff only"),
    ];

    #[test]
    fn basic_auth_from_an_auth_file_secret() {
        let o = objects(&BASIC, vec![secret("default", "users", &[("auth", FILE)])]);
        let s = super::super::translate(&o, &mk_config());
        let Some(RouteAuth::Basic(b)) = auth_of(&s) else {
            panic!("{:?}", auth_of(&s));
        };
        assert_eq!(b.realm, "Staff only");
        assert_eq!(
            (b.secret.namespace.as_str(), b.secret.name.as_str()),
            ("default", "users")
        );
        assert_eq!(b.secret_type, AuthSecretType::AuthFile);
        assert!(b.users.get("alice").unwrap().unwrap().verify(b"s3cret"));
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
        // The snapshot as logged and as `explain` prints it never carries a hash.
        assert!(!format!("{:?}", s.l7).contains("s3cret"));
    }

    #[test]
    fn our_prefix_namespace_form_and_default_realm() {
        let mut o = services_with_one_pod(&["web"]);
        let mut i = mk_ingress(
            "default",
            "a",
            1,
            vec![("a.test", vec![("/", "Prefix", "web", "80")])],
        );
        i = with_annotation(i, "xdp-ingress.dev/auth-type", "basic");
        i = with_annotation(i, "xdp-ingress.dev/auth-secret", "default/users");
        o.upsert(ing(i));
        o.upsert(secret("default", "users", &[("auth", FILE)]));
        let s = super::super::translate(&o, &mk_config());
        let Some(RouteAuth::Basic(b)) = auth_of(&s) else {
            panic!("{:?}", auth_of(&s));
        };
        // ingress-nginx renders `auth_basic ""` without auth-realm.
        assert_eq!(b.realm, "");
    }

    #[test]
    fn auth_map_reads_each_key_and_reports_bad_entries() {
        let mut a = BASIC.to_vec();
        a.push(("auth-secret-type", "auth-map"));
        let o = objects(
            &a,
            vec![secret(
                "default",
                "users",
                &[("alice", "{PLAIN}s3cret"), ("bob", "not-a-hash")],
            )],
        );
        let s = super::super::translate(&o, &mk_config());
        let Some(RouteAuth::Basic(b)) = auth_of(&s) else {
            panic!("{:?}", auth_of(&s));
        };
        assert_eq!(b.users.len(), 2);
        assert_eq!(b.users.get("bob"), Some(None));
        assert_eq!(
            reasons(&s),
            [(Severity::Warning, "InvalidAuthSecretEntry".to_string())]
        );
        assert!(!s.diagnostics[0].message.contains("not-a-hash"));
    }

    /// Annotations, Secrets, the diagnostic expected.
    type Case = (Vec<(&'static str, &'static str)>, Vec<Object>, &'static str);

    /// Every way the authentication cannot be set up denies the route (503), never opens it.
    #[test]
    fn unusable_configuration_is_unavailable_never_open() {
        let good = || secret("default", "users", &[("auth", FILE)]);
        let cases: Vec<Case> = vec![
            (BASIC.to_vec(), vec![], "AuthSecretNotFound"),
            (
                BASIC.to_vec(),
                vec![secret("default", "users", &[("htpasswd", FILE)])],
                "InvalidAuthSecret",
            ),
            (
                vec![("auth-type", "digest"), ("auth-secret", "users")],
                vec![good()],
                "UnsupportedAuthType",
            ),
            (
                vec![("auth-type", "bearer"), ("auth-secret", "users")],
                vec![good()],
                "InvalidAnnotation",
            ),
            (
                vec![
                    ("auth-type", "basic"),
                    ("auth-secret", "users"),
                    ("auth-secret-type", "auth-json"),
                ],
                vec![good()],
                "InvalidAnnotation",
            ),
            (
                vec![("auth-type", "basic")],
                vec![good()],
                "AuthSecretNotSet",
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "a/b/c")],
                vec![good()],
                "InvalidAnnotation",
            ),
            (
                vec![("auth-type", "basic"), ("auth-secret", "other/users")],
                vec![good(), secret("other", "users", &[("auth", FILE)])],
                "CrossNamespaceAuthSecret",
            ),
        ];
        for (annotations, secrets, reason) in cases {
            let o = objects(&annotations, secrets);
            let s = super::super::translate(&o, &mk_config());
            assert!(
                matches!(auth_of(&s), Some(RouteAuth::Unavailable { .. })),
                "{annotations:?}: {:?}",
                auth_of(&s)
            );
            assert_eq!(
                reasons(&s),
                [(Severity::Error, reason.to_string())],
                "{annotations:?}"
            );
        }
        // Outside --secret-namespaces: not read, so not served open either.
        let o = objects(&BASIC, vec![good()]);
        let mut cfg = mk_config();
        cfg.secret_namespaces = Some(vec!["kube-system".into()]);
        let s = super::super::translate(&o, &cfg);
        assert!(matches!(auth_of(&s), Some(RouteAuth::Unavailable { .. })));
        assert_eq!(
            reasons(&s),
            [(Severity::Error, "AuthSecretNotWatched".to_string())]
        );
    }

    #[test]
    fn no_auth_type_no_auth() {
        let o = objects(&[("auth-secret", "users")], vec![]);
        let s = super::super::translate(&o, &mk_config());
        assert_eq!(auth_of(&s), None);
    }

    /// The auth Secret's creation, change and deletion re-translate (hot), other Secrets not.
    #[test]
    fn the_auth_secret_is_a_dependency() {
        let o = objects(&BASIC, vec![]);
        let mut t = Translator::new(mk_config());
        let first = t.translate(&o);
        assert!(matches!(
            auth_of(&first),
            Some(RouteAuth::Unavailable { .. })
        ));
        let created = Change::Upsert(secret("default", "users", &[("auth", FILE)]));
        assert!(t.affects(&o, &created));
        let unrelated = Change::Upsert(secret("default", "other", &[("auth", FILE)]));
        assert!(!t.affects(&o, &unrelated));
    }
}
