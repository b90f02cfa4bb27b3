//! The affinity cookie: what its value holds and the `Set-Cookie` field that issues it, as
//! ingress-nginx's `balancer/sticky.lua` (with `lua-resty-cookie`'s attribute order).
//!
//! The value is `<key>|<backend>`, as ingress-nginx's `<key>|<backend_key>`: `<key>` is
//! 16 hex digits, a random session key in `balanced` mode (consistent hashing maps it onto
//! the endpoints there are) or the endpoint's own name in `persistent` mode
//! ([`super::balance::endpoint_cookie`]); `<backend>` names the upstream that issued it, which
//! is how the canary step tells a main session from a canary one (`is_affinitized`).

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, header::USER_AGENT};

use super::balance::{Fnv, cookie_value};
use crate::model::CookieAffinity;

/// The separator of key and backend in the cookie value (ingress-nginx's
/// `COOKIE_VALUE_DELIMITER`).
const DELIMITER: char = '|';

/// The request's affinity cookie, split.
#[derive(Debug, PartialEq, Eq)]
pub struct CookieValue<'a> {
    pub key: &'a str,
    /// `None` for a value without a backend part.
    pub backend: Option<&'a str>,
}

/// The request's cookie `aff.name`, split at the first `|`.
pub fn request_cookie<'a>(aff: &CookieAffinity, headers: &'a HeaderMap) -> Option<CookieValue<'a>> {
    let v = cookie_value(headers, &aff.name)?;
    Some(match v.split_once(DELIMITER) {
        Some((key, backend)) => CookieValue {
            key,
            backend: Some(backend),
        },
        None => CookieValue {
            key: v,
            backend: None,
        },
    })
}

/// The backend part of the cookies an upstream issues: FNV-1a of its id, in hex.
pub fn backend_tag(upstream_id: &str) -> String {
    let mut h = Fnv::new();
    h.write(upstream_id.as_bytes());
    format!("{:016x}", h.finish())
}

/// A fresh random session key (`balanced` mode).
pub fn random_key() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What of the request shapes the cookie.
pub struct CookieContext<'a> {
    /// The client's scheme was HTTPS: the cookie is `Secure` whatever the annotation says
    /// (ingress-nginx: `secure = ngx.var.https == "on"` unless `session-cookie-secure`).
    pub https: bool,
    /// The path of the Ingress rule the request matched (ingress-nginx `$location_path`): the
    /// cookie's `Path` without `session-cookie-path`.
    pub location_path: &'a str,
    pub headers: &'a HeaderMap,
}

/// The `Set-Cookie` value issuing `key` for the upstream tagged `backend`, attributes in
/// `lua-resty-cookie`'s order: `Expires` (IMF-fixdate, RFC 6265 section 4.1.1), `Max-Age`,
/// `Domain`, `Path`, `Secure`, `HttpOnly` (always), `SameSite`. `None` only if a value
/// translation let through cannot be a header (it checks them).
pub fn set_cookie(
    aff: &CookieAffinity,
    key: &str,
    backend: &str,
    cx: &CookieContext<'_>,
    now: SystemTime,
) -> Option<HeaderValue> {
    let mut c = format!("{}={key}{DELIMITER}{backend}", aff.name);
    if let Some(e) = aff.expires {
        let at = now.checked_add(e).unwrap_or(now);
        c.push_str("; Expires=");
        c.push_str(&httpdate::fmt_http_date(at));
    }
    if let Some(age) = aff.max_age {
        c.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if let Some(d) = &aff.domain {
        c.push_str(&format!("; Domain={d}"));
    }
    let path = aff.path.as_deref().unwrap_or(match cx.location_path {
        "" => "/",
        p => p,
    });
    c.push_str(&format!("; Path={path}"));
    if aff.secure || cx.https {
        c.push_str("; Secure");
    }
    c.push_str("; HttpOnly");
    if let Some(ss) = &aff.same_site {
        let omit = aff.conditional_same_site_none
            && ss.eq_ignore_ascii_case("none")
            && !same_site_none_compatible(cx.headers.get(USER_AGENT));
        if !omit {
            c.push_str(&format!("; SameSite={ss}"));
        }
    }
    HeaderValue::from_str(&c).ok()
}

/// Whether the browser of `user_agent` accepts `SameSite=None` (ingress-nginx
/// `util/same_site.lua`, after Chromium's list of incompatible clients: Chrome 40 to 69, iOS 12
/// and Safari on macOS 10.14 reject the cookie or treat `None` as `Strict`). No User-Agent:
/// compatible.
pub fn same_site_none_compatible(user_agent: Option<&HeaderValue>) -> bool {
    let Some(ua) = user_agent.map(|v| String::from_utf8_lossy(v.as_bytes())) else {
        return true;
    };
    let has = |s: &str| ua.contains(s);
    !(has("Chrome/4")
        || has("Chrome/5")
        || has("Chrome/6")
        || has("CPU iPhone OS 12")
        || has("iPad; CPU OS 12")
        || (has("Macintosh") && has("Intel Mac OS X 10_14") && has("Safari") && !has("Chrome")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::AffinityMode;

    fn aff() -> CookieAffinity {
        CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            mode: AffinityMode::Balanced,
            max_age: None,
            expires: None,
            path: None,
            domain: None,
            same_site: None,
            conditional_same_site_none: false,
            secure: false,
            change_on_failure: false,
        }
    }

    fn cx<'a>(https: bool, path: &'a str, h: &'a HeaderMap) -> CookieContext<'a> {
        CookieContext {
            https,
            location_path: path,
            headers: h,
        }
    }

    /// 2017-02-10T14:11:12Z, the time of ingress-nginx's sticky-sessions example.
    fn example_now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_486_735_872)
    }

    #[test]
    fn ingress_nginx_example_cookie() {
        // docs/examples/affinity/cookie: `Set-Cookie: INGRESSCOOKIE=…; Expires=Sun, 12-Feb-17
        // 14:11:12 GMT; Max-Age=172800; Path=/; HttpOnly` (nginx writes the date in the
        // Netscape form, we in RFC 6265's preferred IMF-fixdate: the same instant).
        let mut a = aff();
        a.expires = Some(Duration::from_secs(172800));
        a.max_age = Some(Duration::from_secs(172800));
        let h = HeaderMap::new();
        let c = set_cookie(&a, "k", "b", &cx(false, "/", &h), example_now()).unwrap();
        assert_eq!(
            c,
            "INGRESSCOOKIE=k|b; Expires=Sun, 12 Feb 2017 14:11:12 GMT; Max-Age=172800; \
             Path=/; HttpOnly"
        );
    }

    #[test]
    fn every_attribute_in_order() {
        let mut a = aff();
        a.domain = Some(".example.com".into());
        a.path = Some("/app".into());
        a.same_site = Some("Strict".into());
        a.secure = true;
        let h = HeaderMap::new();
        let c = set_cookie(&a, "k", "b", &cx(false, "/ignored", &h), example_now()).unwrap();
        assert_eq!(
            c,
            "INGRESSCOOKIE=k|b; Domain=.example.com; Path=/app; Secure; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn path_defaults_to_the_rule_and_https_makes_it_secure() {
        let h = HeaderMap::new();
        let c = set_cookie(&aff(), "k", "b", &cx(true, "/shop", &h), example_now()).unwrap();
        assert_eq!(c, "INGRESSCOOKIE=k|b; Path=/shop; Secure; HttpOnly");
        let c = set_cookie(&aff(), "k", "b", &cx(false, "", &h), example_now()).unwrap();
        assert_eq!(c, "INGRESSCOOKIE=k|b; Path=/; HttpOnly");
    }

    #[test]
    fn conditional_same_site_none_omits_it_for_incompatible_browsers() {
        let mut a = aff();
        a.same_site = Some("None".into());
        a.conditional_same_site_none = true;
        let ua = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(USER_AGENT, HeaderValue::from_str(v).unwrap());
            h
        };
        let old_chrome = ua(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36",
        );
        let ios12 = ua(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 12_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.0 Mobile/15E148 Safari/604.1",
        );
        let mojave_safari = ua(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15",
        );
        let new_chrome = ua(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        let mojave_chrome = ua(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        for h in [&old_chrome, &ios12, &mojave_safari] {
            let c = set_cookie(&a, "k", "b", &cx(false, "/", h), example_now()).unwrap();
            assert!(!c.to_str().unwrap().contains("SameSite"), "{c:?}");
        }
        for h in [&new_chrome, &mojave_chrome, &HeaderMap::new()] {
            let c = set_cookie(&a, "k", "b", &cx(false, "/", h), example_now()).unwrap();
            assert!(c.to_str().unwrap().ends_with("; SameSite=None"), "{c:?}");
        }
        // Without the annotation, or for Lax/Strict, SameSite is always written.
        a.conditional_same_site_none = false;
        let c = set_cookie(&a, "k", "b", &cx(false, "/", &old_chrome), example_now()).unwrap();
        assert!(c.to_str().unwrap().ends_with("; SameSite=None"), "{c:?}");
    }

    #[test]
    fn request_cookie_splits_key_and_backend() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; INGRESSCOOKIE=k1|b1".parse().unwrap(),
        );
        assert_eq!(
            request_cookie(&aff(), &h),
            Some(CookieValue {
                key: "k1",
                backend: Some("b1")
            })
        );
        h.insert(http::header::COOKIE, "INGRESSCOOKIE=k2".parse().unwrap());
        assert_eq!(request_cookie(&aff(), &h).unwrap().backend, None);
        assert_ne!(backend_tag("ns/a:80"), backend_tag("ns/b:80"));
        assert_eq!(random_key().len(), 16);
    }
}
