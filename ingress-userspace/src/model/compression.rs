//! Response compression as the controller ConfigMap asks for it: ingress-nginx's `use-gzip`
//! and `gzip-*` keys (nginx `gzip`, ngx_http_gzip_module) and `enable-brotli` and `brotli-*`
//! (ngx_brotli's `brotli` filter). The proxy's side (which response, which coding, the body
//! encoder) is `proxy::compression`.

/// ingress-nginx's default `gzip-types` (internal/ingress/controller/config/config.go);
/// `text/html` is always compressed besides (nginx `gzip_types`).
pub const GZIP_TYPES: &str = "application/atom+xml application/javascript \
    application/x-javascript application/json application/rss+xml \
    application/vnd.ms-fontobject application/x-font-ttf application/x-web-app-manifest+json \
    application/xhtml+xml application/xml font/opentype image/svg+xml image/x-icon text/css \
    text/javascript text/plain text/x-component";

/// ingress-nginx's default `brotli-types`.
pub const BROTLI_TYPES: &str = "application/xml+rss application/atom+xml \
    application/javascript application/x-javascript application/json application/rss+xml \
    application/vnd.ms-fontobject application/x-font-ttf application/x-web-app-manifest+json \
    application/xhtml+xml application/xml font/opentype image/svg+xml image/x-icon text/css \
    text/javascript text/plain text/x-component";

/// ingress-nginx's default `gzip-level` (1 to 9).
pub const GZIP_LEVEL: u32 = 1;
/// ingress-nginx's default `gzip-min-length`, bytes.
pub const GZIP_MIN_LENGTH: u64 = 256;
/// ingress-nginx's default `brotli-level` (0 to 11).
pub const BROTLI_LEVEL: u32 = 4;
/// ingress-nginx's default `brotli-min-length`, bytes.
pub const BROTLI_MIN_LENGTH: u64 = 20;

/// The ConfigMap's compression settings; the default compresses nothing (`use-gzip` and
/// `enable-brotli` are both off by default in ingress-nginx).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compression {
    /// `use-gzip: "true"`: gzip with these settings.
    pub gzip: Option<Codec>,
    /// `enable-brotli: "true"`: brotli with these settings; preferred to gzip when a client
    /// accepts both (ngx_brotli's filter runs before nginx's gzip filter and marks the
    /// response encoded).
    pub brotli: Option<Codec>,
    /// `gzip-disable`: clients whose `User-Agent` matches get no gzip (nginx `gzip_disable`).
    pub gzip_disable: Option<UserAgentMatch>,
}

impl Compression {
    /// Whether any coding is on.
    pub fn enabled(&self) -> bool {
        self.gzip.is_some() || self.brotli.is_some()
    }
}

/// One coding's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codec {
    /// Compression level: gzip 1 to 9, brotli 0 to 11.
    pub level: u32,
    /// Responses whose `Content-Length` is below this many bytes are sent as they are; a
    /// response of unknown length is compressed (nginx `gzip_min_length`, which reads only
    /// `Content-Length`).
    pub min_length: u64,
    /// Which `Content-Type`s are compressed.
    pub types: MimeTypes,
}

/// The media types a coding applies to (nginx `gzip_types` / `brotli_types`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MimeTypes {
    /// `*`: every type.
    Any,
    /// These types, lower case, without parameters (`text/css`); nginx compares the
    /// response's type without its parameters, ignoring case.
    List(Vec<String>),
}

impl MimeTypes {
    /// A space-separated list as nginx reads it (`*` anywhere in it means every type); `with`
    /// is always in the list (gzip: `text/html`, as nginx's `gzip_types`).
    pub fn parse(list: &str, with: Option<&str>) -> MimeTypes {
        let mut types: Vec<String> = Vec::new();
        for t in list.split_ascii_whitespace().chain(with) {
            if t == "*" {
                return MimeTypes::Any;
            }
            let t = t.to_ascii_lowercase();
            if !types.contains(&t) {
                types.push(t);
            }
        }
        MimeTypes::List(types)
    }

    /// Whether a response with this `Content-Type` (as sent, parameters and all) is in the
    /// list. `*` takes a response without one too; a list takes neither a missing nor an
    /// empty one (nginx's `ngx_http_test_content_type`).
    pub fn matches(&self, content_type: Option<&str>) -> bool {
        let content_type = content_type.filter(|t| !t.trim().is_empty());
        match (self, content_type) {
            (MimeTypes::Any, _) => true,
            (MimeTypes::List(_), None) => false,
            (MimeTypes::List(types), Some(ct)) => {
                let media = ct.split(';').next().unwrap_or("").trim();
                types.iter().any(|t| t.eq_ignore_ascii_case(media))
            }
        }
    }
}

/// `gzip-disable`: which clients get no gzip, by `User-Agent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAgentMatch {
    /// nginx's special mask `msie6`: `MSIE [4-6]\.` without `SV1` (Internet Explorer 6
    /// before XP SP2), from ngx_http_gzip_static/ngx_http_core_module's `gzip_disable`.
    Msie6,
    /// A case-insensitive regular expression (nginx compiles `gzip_disable` caseless),
    /// checked when the settings are read.
    Regex(String),
}
