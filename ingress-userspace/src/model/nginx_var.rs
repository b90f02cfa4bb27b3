//! Text with nginx variables (`$host`, `${request_uri}`, `$http_x_user`...) as ingress-nginx users
//! write them in `auth-url`, `auth-signin`, `auth-cache-key`, `auth-request-redirect`, the
//! values of `auth-proxy-set-headers`, redirect URLs and `upstream-hash-by` (ingress-nginx's
//! `util.parse_complex_value` / `generate_var_value` in its Lua balancer): parsed once in translation into an [`NginxString`], expanded
//! per request by the proxy ([`NginxString::expand`] with a [`VarSource`]).
//!
//! Only the documented set of [`Var`]s is accepted; any other name is an error (the caller denies
//! the location rather than send the text unexpanded or empty). Syntax as nginx's script
//! compiler (`ngx_http_script_compile`): `$name` where a name is `[A-Za-z0-9_]+`, or `${name}`;
//! a `$` followed by anything else is an error.

use std::fmt;

/// One nginx variable of the supported set (nginx's `ngx_http_core_variables`, the `http_`,
/// `arg_` and `cookie_` prefixes, and two that ingress-nginx's template defines).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Var {
    /// `$host`: the request's host name, lower case, without port.
    Host,
    /// `$http_host`: the `Host` header as sent (port included).
    HttpHost,
    /// `$best_http_host` (ingress-nginx's template): the first element of a believed
    /// `X-Forwarded-Host` (`use-forwarded-headers`, a trusted sender), else `$http_host`.
    BestHttpHost,
    /// `$request_uri`: the target as the client sent it (path and query, not normalised).
    RequestUri,
    /// `$escaped_request_uri`: `$request_uri` escaped as a URI component (ingress-nginx's
    /// `set_escape_uri`: all but `A-Za-z0-9-._~` percent-encoded).
    EscapedRequestUri,
    /// `$uri`, `$document_uri`: the normalised path, no query.
    Uri,
    /// `$args`, `$query_string`: the query, without `?`.
    Args,
    /// `$is_args`: `?` when there is a query, else empty.
    IsArgs,
    /// `$scheme`: `http` or `https`, of the client connection.
    Scheme,
    /// `$pass_access_scheme`: the scheme of the original request (`X-Forwarded-Proto` from a
    /// trusted proxy, else `$scheme`).
    PassAccessScheme,
    /// `$request_method`.
    RequestMethod,
    /// `$remote_addr`: the client address (after the trust model, as nginx's realip).
    RemoteAddr,
    /// `$binary_remote_addr`: the client address of [`Var::RemoteAddr`] as its 4 (IPv4) or 16
    /// (IPv6) bytes, as nginx gives it. Text here is UTF-8, so each byte is the character of
    /// that code point (U+0000 to U+00FF): one distinct text per address, what a hash or cache
    /// key needs; nobody puts raw address bytes in a URL.
    BinaryRemoteAddr,
    /// `$remote_user`: the user name of a `Basic` `Authorization` header (up to its first
    /// `:`), empty for any other or none; as nginx's `ngx_http_variable_remote_user`, whether
    /// or not basic auth checked it.
    RemoteUser,
    /// `$server_name`: the name of the server the request matched, as ingress-nginx writes
    /// its `server_name`: the Ingress rule's host, `_` for the catch-all server.
    ServerName,
    /// `$server_port`: the port the request arrived on.
    ServerPort,
    /// `$request_id`, `$req_id`: the request's id (`X-Request-ID`).
    RequestId,
    /// `$http_<name>`: a request header (`_` stands for `-`, any case); several are joined with
    /// `, ` (`; ` for `Cookie`), as nginx 1.23 does.
    Header(#[serde(serialize_with = "header_name_text")] http::HeaderName),
    /// `$arg_<name>`: the first query argument of that name (ASCII case-insensitive), as sent.
    Arg(String),
    /// `$cookie_<name>`: the value of that cookie, as sent.
    Cookie(String),
}

fn header_name_text<S: serde::Serializer>(n: &http::HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(n.as_str())
}

impl Var {
    /// The variable a name (without `$`) stands for, or `None` outside the supported set.
    pub fn named(name: &str) -> Option<Var> {
        let lower = name.to_ascii_lowercase();
        let named = match lower.as_str() {
            "host" => Var::Host,
            "http_host" => Var::HttpHost,
            "best_http_host" => Var::BestHttpHost,
            "request_uri" => Var::RequestUri,
            "escaped_request_uri" => Var::EscapedRequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "scheme" => Var::Scheme,
            "pass_access_scheme" => Var::PassAccessScheme,
            "request_method" => Var::RequestMethod,
            "remote_addr" => Var::RemoteAddr,
            "binary_remote_addr" => Var::BinaryRemoteAddr,
            "remote_user" => Var::RemoteUser,
            "server_name" => Var::ServerName,
            "server_port" => Var::ServerPort,
            "request_id" | "req_id" => Var::RequestId,
            _ => {
                let rest = |p: &str| lower.strip_prefix(p).filter(|r| !r.is_empty());
                return if let Some(h) = rest("http_") {
                    // A variable name's letters, digits and `-` always make a valid field name.
                    http::HeaderName::from_bytes(h.replace('_', "-").as_bytes())
                        .ok()
                        .map(Var::Header)
                } else if let Some(a) = rest("arg_") {
                    Some(Var::Arg(a.to_string()))
                } else {
                    rest("cookie_").map(|c| Var::Cookie(c.to_string()))
                };
            }
        };
        Some(named)
    }
}

/// Why a text is not an [`NginxString`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    #[error("unknown nginx variable ${0} (supported: {SUPPORTED})")]
    Unknown(String),
    #[error("invalid variable name after `$` at byte {0}")]
    Invalid(usize),
}

/// The variables [`Var::named`] accepts, for messages and docs.
pub const SUPPORTED: &str = "$host, $http_host, $best_http_host, $request_uri, \
    $escaped_request_uri, $uri, $document_uri, $args, $query_string, $is_args, $scheme, \
    $pass_access_scheme, $request_method, $remote_addr, $binary_remote_addr, $remote_user, \
    $server_name, $server_port, $request_id, $req_id, $http_<name>, $arg_<name>, $cookie_<name>";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Part {
    Text(String),
    Var(Var),
}

/// Text with variables, parsed; `Display` and `Serialize` give it as written.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NginxString {
    written: String,
    parts: Vec<Part>,
}

/// What a request gives for each variable.
pub trait VarSource {
    /// Appends the value of `var` (nothing when it is not set, as nginx's empty value).
    fn push(&self, var: &Var, out: &mut String);
}

impl NginxString {
    /// Parses `text`; every variable must be of the supported set.
    pub fn parse(text: &str) -> Result<NginxString, VarError> {
        let b = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        let is_name = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        while i < b.len() {
            if b[i] != b'$' {
                // Up to the next `$`, whole UTF-8 sequences (`$` is ASCII).
                let end = text[i..].find('$').map_or(b.len(), |n| i + n);
                lit.push_str(&text[i..end]);
                i = end;
                continue;
            }
            let (name, next) = if b.get(i + 1) == Some(&b'{') {
                let close = text[i + 2..].find('}').ok_or(VarError::Invalid(i))?;
                (&text[i + 2..i + 2 + close], i + 3 + close)
            } else {
                let len = b[i + 1..].iter().take_while(|c| is_name(**c)).count();
                (&text[i + 1..i + 1 + len], i + 1 + len)
            };
            if name.is_empty() || !name.bytes().all(is_name) {
                return Err(VarError::Invalid(i));
            }
            let var = Var::named(name).ok_or_else(|| VarError::Unknown(name.to_string()))?;
            if !lit.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            i = next;
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(NginxString {
            written: text.to_string(),
            parts,
        })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// Whether it has any variable.
    pub fn has_vars(&self) -> bool {
        self.vars().next().is_some()
    }

    /// The variables it names, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// The text with every variable replaced by its value from `src`.
    pub fn expand(&self, src: &dyn VarSource) -> String {
        let mut out = String::with_capacity(self.written.len() + 32);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => src.push(v, &mut out),
            }
        }
        out
    }
}

impl fmt::Display for NginxString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl fmt::Debug for NginxString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.written, f)
    }
}

impl serde::Serialize for NginxString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

/// `$binary_remote_addr` of `ip` ([`Var::BinaryRemoteAddr`]): its bytes, one character each.
pub fn push_binary_addr(ip: std::net::IpAddr, out: &mut String) {
    let bytes = match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    out.extend(bytes.into_iter().map(char::from));
}

/// `s` escaped as a URI component: every byte but `A-Za-z0-9-._~` as `%XX` (upper case), as
/// ingress-nginx's `set_escape_uri` (set-misc-nginx-module) does.
pub fn escape_uri_component(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(char::from(c));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl VarSource for Fixed {
        fn push(&self, var: &Var, out: &mut String) {
            out.push_str(match var {
                Var::Host => "a.test",
                Var::EscapedRequestUri => "%2Fx%3Fy%3D1",
                Var::Header(h) if *h == "x-user" => "bob",
                Var::Arg(a) if a == "token" => "t1",
                _ => "",
            });
        }
    }

    #[test]
    fn oauth2_proxy_urls_expand() {
        let u = NginxString::parse("https://$host/oauth2/auth").unwrap();
        assert!(u.has_vars());
        assert_eq!(u.expand(&Fixed), "https://a.test/oauth2/auth");
        let s = NginxString::parse("https://$host/oauth2/start?rd=$escaped_request_uri").unwrap();
        assert_eq!(
            s.expand(&Fixed),
            "https://a.test/oauth2/start?rd=%2Fx%3Fy%3D1"
        );
        let k = NginxString::parse("${http_x_user}$arg_token$remote_addr").unwrap();
        assert_eq!(k.expand(&Fixed), "bobt1");
        assert_eq!(k.to_string(), "${http_x_user}$arg_token$remote_addr");
        let plain = NginxString::parse("http://auth.ns.svc.cluster.local/ü").unwrap();
        assert!(!plain.has_vars());
        assert_eq!(plain.expand(&Fixed), "http://auth.ns.svc.cluster.local/ü");
    }

    #[test]
    fn unknown_or_malformed_variables_are_errors() {
        assert_eq!(
            NginxString::parse("http://$upstream_addr/"),
            Err(VarError::Unknown("upstream_addr".into()))
        );
        for bad in ["a$", "a$-b", "${host", "${}", "$ {host}", "${ho st}"] {
            assert!(NginxString::parse(bad).is_err(), "{bad}");
        }
        // The prefixes need a name after them.
        assert!(NginxString::parse("$http_").is_err());
    }

    #[test]
    fn escape_is_a_uri_component() {
        let mut out = String::new();
        escape_uri_component("/a b?c=d&e=ü~._-", &mut out);
        assert_eq!(out, "%2Fa%20b%3Fc%3Dd%26e%3D%C3%BC~._-");
    }
}
