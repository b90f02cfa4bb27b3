//! Sending an Ingress's `mirror-target` copies ([`crate::model::IngressMirror`]).
//!
//! As ingress-nginx's mirror location (`proxy_pass <target>` with `proxy_set_header Host
//! <mirror-host>` and nothing else set): the copy has the request's method and the client's
//! headers (hop-by-hop ones removed), `Host` replaced, and the request's body unless
//! `mirror-request-body: off` (then no body and no framing headers). It is sent to the
//! target's Service endpoints (one, at random) when the target names a Service, else to
//! the target's host through the system's resolver; `https` to a Service is not verified (as
//! to a pod), to any other host it is, against the webpki roots. The answer is read and
//! dropped.
//!
//! Unlike nginx, whose mirror subrequests hold the client's request until they end ("if you
//! have a slow mirror backend, then the original request will throttle"), the copy is sent on
//! its own task and nothing waits for it; a copy whose body falls behind is given up
//! ([`super::mirror::Tee`]).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderValue, Request, Uri,
    header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING},
};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tracing::debug;

use super::{
    Shared,
    forward_auth::Transport,
    headers,
    mirror::Tee,
    upstream::{Clients, ProxyBody},
};
use crate::model::IngressMirror;

/// Bytes a request target cannot carry as they are (RFC 3986 section 2; `%` is kept, so
/// an escape already there stays one): a variable's value (`$http_x_a` with a space) is
/// sent escaped rather than the copy dropped.
const NOT_IN_URI: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The URI a copy is sent to: the target as expanded (`expanded`), with the request's query
/// appended when the target names no variable (nginx's `proxy_pass` with a literal URL
/// passes the mirror subrequest's arguments, which are the request's); `/` when the target
/// has no path. `None` when it is not an absolute URL.
pub fn target_uri(expanded: &str, literal: bool, query: Option<&str>) -> Option<Uri> {
    let mut text = utf8_percent_encode(expanded, NOT_IN_URI).to_string();
    if literal && let Some(q) = query.filter(|q| !q.is_empty()) {
        text.push(if text.contains('?') { '&' } else { '?' });
        text.extend(utf8_percent_encode(q, NOT_IN_URI));
    }
    let uri: Uri = text.parse().ok()?;
    let mut parts = uri.into_parts();
    parts.scheme.as_ref()?;
    parts.authority.as_ref()?;
    let pq = parts.path_and_query.as_ref().map_or("", |p| p.as_str());
    if !pq.starts_with('/') {
        parts.path_and_query = Some(format!("/{pq}").parse().ok()?);
    }
    Uri::from_parts(parts).ok()
}

/// Starts a copy of `req` (as it is now; its body from here on) toward `uri` with `Host`
/// `host`. Nothing is sent when the host is not a header value (a debug line says why).
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    m: &Arc<IngressMirror>,
    req: &mut Request<Tee<Incoming>>,
    (uri, host): (Uri, String),
    clients: Clients,
    connect_timeout: Duration,
) {
    let Ok(host) = HeaderValue::from_str(&host) else {
        debug!(target = %uri, "mirror-host expanded to no header value; not mirrored");
        return;
    };
    let body: ProxyBody = if m.request_body {
        let hint = hyper::body::Body::size_hint(req.body());
        req.body_mut()
            .copy()
            .with_hint(hint)
            .map_err(|e| -> super::upstream::BoxError { e.into() })
            .boxed_unsync()
    } else {
        Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
    };
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.headers_mut() = req.headers().clone();
    headers::strip_hop_by_hop(copy.headers_mut(), false);
    // nginx's mirror subrequest goes through its proxy module, which clears `TE`.
    copy.headers_mut().remove(http::header::TE);
    if !m.request_body {
        copy.headers_mut().remove(CONTENT_LENGTH);
        copy.headers_mut().remove(TRANSFER_ENCODING);
    }
    copy.headers_mut().insert(HOST, host);
    let (shared, m) = (Arc::clone(shared), Arc::clone(m));
    tokio::spawn(async move {
        if let Err(why) = send(&shared, &m, uri, copy, clients, connect_timeout).await {
            debug!(target = %m.target.as_str(), error = %why, "mirror copy failed");
        }
    });
}

async fn send(
    shared: &Shared,
    m: &IngressMirror,
    uri: Uri,
    mut copy: Request<ProxyBody>,
    clients: Clients,
    connect_timeout: Duration,
) -> Result<(), String> {
    *copy.uri_mut() = uri.clone();
    let t = Transport {
        clients: &clients,
        connect_timeout,
        // Unused here: the copy's answer is not waited for by anyone.
        read_timeout: connect_timeout,
    };
    // The copy's body streams from the client's: it is sent once, to one address.
    let mut copy = Some(copy);
    shared
        .forward_auth
        .client()
        .send_to_url("mirror", m.service.as_ref(), &uri, &t, || copy.take())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::target_uri;

    #[test]
    fn target_uris_as_nginx_would_send_them() {
        let t = |e: &str, literal, q| target_uri(e, literal, q).map(|u| u.to_string());
        // A literal target gets the request's query, as nginx's mirror subrequest args.
        assert_eq!(
            t("http://m/copy", true, Some("x=1")).as_deref(),
            Some("http://m/copy?x=1")
        );
        assert_eq!(
            t("http://m/c?a=b", true, Some("x=1")).as_deref(),
            Some("http://m/c?a=b&x=1")
        );
        assert_eq!(
            t("http://m", true, Some("x=1")).as_deref(),
            Some("http://m/?x=1")
        );
        assert_eq!(t("http://m", true, None).as_deref(), Some("http://m/"));
        // An expanded one is sent as it is, unsafe bytes escaped, escapes kept.
        assert_eq!(
            t("http://m/a?x=1", false, Some("y=2")).as_deref(),
            Some("http://m/a?x=1")
        );
        assert_eq!(
            t("http://m/m/p?h=h v", false, None).as_deref(),
            Some("http://m/m/p?h=h%20v")
        );
        assert_eq!(
            t("http://m/p%20q", false, None).as_deref(),
            Some("http://m/p%20q")
        );
        assert_eq!(t("/relative", false, None), None);
        assert_eq!(t("http://", false, None), None);
    }
}
