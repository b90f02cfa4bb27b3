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
        r.diags.error(
            r.object,
            reason,
            format!("{msg}; every request to its paths gets 503 (never unauthenticated)"),
        );
        Some(RouteAuth::Unavailable {
            reason: format!("{reason}: {msg}"),
        })
    };
    match auth_type.as_str() {
        "basic" => {}
        "digest" => {
            return unavailable(
                r,
                "UnsupportedAuthType",
                "auth-type: digest is not supported (use basic)".into(),
            );
        }
        other => {
            return unavailable(
                r,
                "InvalidAnnotation",
                format!("annotation auth-type: {other:?} is not basic or digest"),
            );
        }
    }
    let secret_type = match r.get("auth-secret-type") {
        None | Some("auth-file") => AuthSecretType::AuthFile,
        Some("auth-map") => AuthSecretType::AuthMap,
        Some(other) => {
            let msg = format!("annotation auth-secret-type: {other:?} is not auth-file or auth-map");
            return unavailable(r, "InvalidAnnotation", msg);
        }
    };
    let Some(name) = r.get("auth-secret").map(str::to_string) else {
        return unavailable(
            r,
            "AuthSecretNotSet",
            "auth-type: basic without auth-secret".into(),
        );
    };
    // client-go's SplitMetaNamespaceKey: `name` or `namespace/name`.
    let (secret_ns, secret_name) = match name.split('/').collect::<Vec<_>>()[..] {
        [n] => (ns.to_string(), n.to_string()),
        [s, n] => (
            if s.is_empty() { ns } else { s }.to_string(),
            n.to_string(),
        ),
        _ => (String::new(), String::new()),
    };
    if secret_name.is_empty() {
        let msg = format!("annotation auth-secret: {name:?} is not NAME or NAMESPACE/NAME");
        return unavailable(r, "InvalidAnnotation", msg);
    }
    let key = Key::new(secret_ns.clone(), secret_name.clone());
    if secret_ns != ns {
        let msg = format!(
            "auth-secret {key} is in another namespace than the Ingress; cross-namespace \
             Secrets are not allowed (ingress-nginx's allow-cross-namespace-resources default)"
        );
        return unavailable(r, "CrossNamespaceAuthSecret", msg);
    }
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
                let msg =
                    format!("auth-secret {key} has no key {AUTH_FILE_KEY:?} (auth-secret-type: auth-file)");
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
