//! The bodies of the answers the proxy gives itself: nginx's standard pages
//! (src/http/ngx_http_special_response.c), which ingress-nginx users and their tests read
//! (its e2e settings/no_auth_locations.go looks for "401 Authorization Required"). The titles
//! are nginx's, not RFC 9110's reason phrases ("Service Temporarily Unavailable", "Gateway
//! Time-out"). nginx's footer names the server (`<hr><center>nginx</center>`); it is left out
//! here, as the `Server` header is.

use http::StatusCode;

/// nginx's title for `status` (`"<code> <text>"`), `None` for a status nginx has no page for.
pub fn title(status: StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        301 => "301 Moved Permanently",
        302 => "302 Found",
        303 => "303 See Other",
        307 => "307 Temporary Redirect",
        308 => "308 Permanent Redirect",
        400 => "400 Bad Request",
        401 => "401 Authorization Required",
        402 => "402 Payment Required",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        405 => "405 Not Allowed",
        406 => "406 Not Acceptable",
        408 => "408 Request Time-out",
        409 => "409 Conflict",
        410 => "410 Gone",
        411 => "411 Length Required",
        412 => "412 Precondition Failed",
        413 => "413 Request Entity Too Large",
        414 => "414 Request-URI Too Large",
        415 => "415 Unsupported Media Type",
        416 => "416 Requested Range Not Satisfiable",
        421 => "421 Misdirected Request",
        429 => "429 Too Many Requests",
        500 => "500 Internal Server Error",
        501 => "501 Not Implemented",
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        504 => "504 Gateway Time-out",
        505 => "505 HTTP Version Not Supported",
        507 => "507 Insufficient Storage",
        _ => return None,
    })
}

/// nginx's page for `status` (`text/html`), `None` where [`title`] is.
pub fn page(status: StatusCode) -> Option<String> {
    let t = title(status)?;
    Some(format!(
        "<html>\r\n<head><title>{t}</title></head>\r\n<body>\r\n<center><h1>{t}</h1></center>\r\n</body>\r\n</html>\r\n"
    ))
}

/// nginx's page for a request head past its buffers (its 494, answered as 400:
/// `ngx_http_error_494_page`).
pub const HEADER_TOO_LARGE_PAGE: &str = "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_titles_and_page_shape() {
        assert_eq!(
            page(StatusCode::UNAUTHORIZED).unwrap(),
            "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n\
             <center><h1>401 Authorization Required</h1></center>\r\n</body>\r\n</html>\r\n"
        );
        assert_eq!(
            title(StatusCode::SERVICE_UNAVAILABLE),
            Some("503 Service Temporarily Unavailable")
        );
        assert_eq!(
            title(StatusCode::GATEWAY_TIMEOUT),
            Some("504 Gateway Time-out")
        );
        assert_eq!(
            title(StatusCode::PAYLOAD_TOO_LARGE),
            Some("413 Request Entity Too Large")
        );
        assert_eq!(title(StatusCode::NO_CONTENT), None);
    }
}
