//! A route's [`AnswerRewrite`] on the headers of a pod's answer: nginx's `proxy_redirect` on
//! `Location` and `Refresh`, `proxy_cookie_domain` and `proxy_cookie_path` on `Set-Cookie`
//! (ngx_http_proxy_module's `ngx_http_proxy_rewrite_*` handlers, with ingress-nginx's
//! annotations of the same names). A value that would not be a field value after the
//! replacement is left as it was.

use http::{
    HeaderMap, HeaderValue,
    header::{LOCATION, REFRESH, SET_COOKIE},
};

use crate::model::{AnswerRewrite, TextReplace};

/// Rewrites `headers` of an answer to a request for `host` (`$host`: lower case, no port) over
/// `scheme` (the client connection's, which nginx's `absolute_redirect` names).
pub fn apply(rw: &AnswerRewrite, headers: &mut HeaderMap, scheme: &str, host: &str) {
    if let Some(r) = &rw.redirect {
        if let Some(v) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
            && let Some(new) = replace_prefix(r, v)
        {
            // nginx makes a rewritten `Location` starting with `/` absolute (its header
            // filter, `absolute_redirect on`, without the port: ingress-nginx's
            // `port_in_redirect off`).
            let new = if new.starts_with('/') {
                format!("{scheme}://{host}{new}")
            } else {
                new
            };
            set(headers, LOCATION, &new);
        }
        if let Some(v) = headers.get(REFRESH).and_then(|v| v.to_str().ok()) {
            // The URL after `url=` (any case), as `ngx_http_proxy_rewrite_refresh`.
            let at = v.to_ascii_lowercase().find("url=").map(|i| i + 4);
            if let Some(at) = at
                && let Some(new) = replace_prefix(r, &v[at..])
            {
                let new = format!("{}{new}", &v[..at]);
                set(headers, REFRESH, &new);
            }
        }
    }
    if rw.cookie_domain.is_none() && rw.cookie_path.is_none() {
        return;
    }
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(SET_COOKIE);
    for c in cookies {
        let new = c
            .to_str()
            .ok()
            .and_then(|v| cookie(rw, v))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        headers.append(SET_COOKIE, new.unwrap_or(c));
    }
}

fn set(headers: &mut HeaderMap, name: http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// `v` with its start `r.from` (case-sensitive) replaced by `r.to`, or `None`.
fn replace_prefix(r: &TextReplace, v: &str) -> Option<String> {
    v.strip_prefix(r.from.as_str())
        .map(|rest| format!("{}{rest}", r.to))
}

/// One `Set-Cookie` value with its `Domain` and `Path` attributes rewritten, or `None` when
/// nothing changes. The first `;`-separated part is the cookie itself, never an attribute.
fn cookie(rw: &AnswerRewrite, v: &str) -> Option<String> {
    let mut out = String::with_capacity(v.len() + 16);
    let mut changed = false;
    for (i, part) in v.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        let new = (i > 0).then(|| attribute(rw, part)).flatten();
        changed |= new.is_some();
        out.push_str(new.as_deref().unwrap_or(part));
    }
    changed.then_some(out)
}

/// One attribute (` Name=value`, spaces kept) rewritten, or `None`.
fn attribute(rw: &AnswerRewrite, part: &str) -> Option<String> {
    let (name, value) = part.split_once('=')?;
    let lead = value.len() - value.trim_start().len();
    let (pad, value) = value.split_at(lead);
    let value = value.trim_end();
    let new = match name.trim().to_ascii_lowercase().as_str() {
        "domain" => {
            let r = rw.cookie_domain.as_ref()?;
            // A leading `.` is kept and not compared (`ngx_http_proxy_rewrite_domain_handler`).
            let (dot, bare) = match value.strip_prefix('.') {
                Some(b) => (".", b),
                None => ("", value),
            };
            if !bare.eq_ignore_ascii_case(&r.from) {
                return None;
            }
            format!("{dot}{}", r.to)
        }
        "path" => replace_prefix(rw.cookie_path.as_ref()?, value)?,
        _ => return None,
    };
    Some(format!("{name}={pad}{new}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(from: &str, to: &str) -> Option<TextReplace> {
        Some(TextReplace {
            from: from.into(),
            to: to.into(),
        })
    }

    fn run(rw: &AnswerRewrite, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        apply(rw, &mut h, "https", "app.test");
        h.iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn location_and_refresh_start_is_replaced() {
        let rw = AnswerRewrite {
            redirect: tr("http://pod:8080/", "/app/"),
            ..Default::default()
        };
        let got = run(
            &rw,
            &[
                ("location", "http://pod:8080/login?x=1"),
                ("refresh", "5; URL=http://pod:8080/next"),
            ],
        );
        assert_eq!(got[0].1, "https://app.test/app/login?x=1");
        assert_eq!(got[1].1, "5; URL=/app/next");
        // Case-sensitive, and only the start.
        let got = run(&rw, &[("location", "HTTP://pod:8080/x"), ("refresh", "1")]);
        assert_eq!(got[0].1, "HTTP://pod:8080/x");
        let rw = AnswerRewrite {
            redirect: tr("hello.com", "goodbye.com"),
            ..Default::default()
        };
        assert_eq!(
            run(&rw, &[("location", "hello.com/a")])[0].1,
            "goodbye.com/a"
        );
        assert_eq!(
            run(&rw, &[("location", "http://hello.com/a")])[0].1,
            "http://hello.com/a"
        );
    }

    #[test]
    fn set_cookie_domain_and_path_are_rewritten() {
        let rw = AnswerRewrite {
            cookie_domain: tr("localhost", "example.org"),
            cookie_path: tr("/one/", "/"),
            ..Default::default()
        };
        let got = run(
            &rw,
            &[
                (
                    "set-cookie",
                    "a=1; Domain=.LocalHost; Path=/one/two; HttpOnly",
                ),
                ("set-cookie", "b=path=/one/; path = /one/"),
                ("set-cookie", "c=3; domain=localhost.net; Path=/two"),
            ],
        );
        let values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "a=1; Domain=.example.org; Path=/two; HttpOnly",
                "b=path=/one/; path = /",
                "c=3; domain=localhost.net; Path=/two",
            ]
        );
    }
}
