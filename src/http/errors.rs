//! Error responses as Squid sends them: a status, a Squid error name
//! (also in `X-Squid-Error`, which tools and peers read), and a short HTML
//! page saying what happened, for which URL, and from which cache.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

/// The errors cuttle answers with, by Squid's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    AccessDenied,
    ForwardingDenied,
    InvalidUrl,
    InvalidRequest,
    UnsupportedRequest,
    DnsFail,
    ConnectFail,
    /// A TLS handshake with a peer or origin failed (Squid's name).
    SecureConnectFail,
    ReadTimeout,
    ReadError,
    /// A server's reply head over reply_header_max_size.
    TooBig,
    CannotForward,
    OnlyIfCachedMiss,
    ZeroSizeObject,
    /// A cache manager page that needs a password (cachemgr_passwd).
    CacheMgrAccessDenied,
    /// A cache manager page that does not exist (Squid: 404 ERR_INVALID_URL).
    NoSuchMgrPage,
    /// A `/squid-internal-*` object this cache does not have (Squid: 404
    /// ERR_INVALID_REQ).
    NoSuchInternalObject,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "ERR_ACCESS_DENIED",
            ErrorKind::ForwardingDenied => "ERR_FORWARDING_DENIED",
            ErrorKind::InvalidUrl => "ERR_INVALID_URL",
            ErrorKind::InvalidRequest => "ERR_INVALID_REQ",
            ErrorKind::UnsupportedRequest => "ERR_UNSUP_REQ",
            ErrorKind::DnsFail => "ERR_DNS_FAIL",
            ErrorKind::ConnectFail => "ERR_CONNECT_FAIL",
            ErrorKind::SecureConnectFail => "ERR_SECURE_CONNECT_FAIL",
            ErrorKind::ReadTimeout => "ERR_READ_TIMEOUT",
            ErrorKind::ReadError => "ERR_READ_ERROR",
            ErrorKind::TooBig => "ERR_TOO_BIG",
            ErrorKind::CannotForward => "ERR_CANNOT_FORWARD",
            ErrorKind::OnlyIfCachedMiss => "ERR_ONLY_IF_CACHED_MISS",
            ErrorKind::ZeroSizeObject => "ERR_ZERO_SIZE_OBJECT",
            ErrorKind::CacheMgrAccessDenied => "ERR_CACHE_MGR_ACCESS_DENIED",
            ErrorKind::NoSuchMgrPage => "ERR_INVALID_URL",
            ErrorKind::NoSuchInternalObject => "ERR_INVALID_REQ",
        }
    }

    /// The status Squid sends with each.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::AccessDenied | ErrorKind::ForwardingDenied => StatusCode::FORBIDDEN,
            ErrorKind::InvalidUrl | ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedRequest => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::DnsFail
            | ErrorKind::ConnectFail
            | ErrorKind::SecureConnectFail
            | ErrorKind::CannotForward => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::ReadTimeout | ErrorKind::OnlyIfCachedMiss => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::ReadError | ErrorKind::TooBig | ErrorKind::ZeroSizeObject => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::CacheMgrAccessDenied => StatusCode::UNAUTHORIZED,
            ErrorKind::NoSuchMgrPage | ErrorKind::NoSuchInternalObject => StatusCode::NOT_FOUND,
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "Access control configuration prevents your request from being allowed at this time.",
            ErrorKind::ForwardingDenied => "This cache will not forward your request: it only answers what it holds.",
            ErrorKind::InvalidUrl => "The requested URL is not one this proxy can fetch.",
            ErrorKind::InvalidRequest => "The request could not be understood.",
            ErrorKind::UnsupportedRequest => "This proxy does not support that request method or protocol.",
            ErrorKind::DnsFail => "The server's host name could not be resolved.",
            ErrorKind::ConnectFail => "The server did not accept a connection.",
            ErrorKind::SecureConnectFail => "A secure (TLS) connection to the server could not be established.",
            ErrorKind::ReadTimeout => "The server did not answer in time.",
            ErrorKind::ReadError => "The connection to the server broke while reading its answer.",
            ErrorKind::TooBig => "The server's reply header is larger than this cache accepts.",
            ErrorKind::CannotForward => "No route to the server could be found.",
            ErrorKind::OnlyIfCachedMiss => "The object is not in the cache and only-if-cached was requested.",
            ErrorKind::ZeroSizeObject => "The server closed the connection without sending any data.",
            ErrorKind::CacheMgrAccessDenied => "This cache manager page needs a password (cachemgr_passwd).",
            ErrorKind::NoSuchMgrPage => "There is no such cache manager page; see the menu.",
            ErrorKind::NoSuchInternalObject => "This cache has no such internal object.",
        }
    }
}

/// Headers and body of an error page about `url`, sent by `cache_name`.
/// `detail` is the technical reason (shown on the page, escaped).
pub fn page(
    kind: ErrorKind,
    url: &str,
    detail: &str,
    cache_name: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let status = kind.status();
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{status}: {name}</title></head>\n\
         <body><h1>{status}</h1>\n<p><b>{name}</b>: {why}</p>\n<p>URL: <code>{url}</code></p>\n\
         <p>{detail}</p>\n<hr><p>Generated by {cache} (cuttle/{version})</p></body></html>\n",
        status = status,
        name = kind.name(),
        why = kind.explanation(),
        url = escape(url),
        detail = escape(detail),
        cache = escape(cache_name),
        version = env!("CARGO_PKG_VERSION"),
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{} 0", kind.name())) {
        headers.insert("x-squid-error", v);
    }
    (status, headers, Bytes::from(body))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_name_the_error_and_escape_input() {
        let (status, headers, body) = page(
            ErrorKind::DnsFail,
            "http://x<script>/",
            "lookup failed",
            "cache1",
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["x-squid-error"], "ERR_DNS_FAIL 0");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("ERR_DNS_FAIL"));
        assert!(text.contains("http://x&lt;script&gt;/"));
        assert!(!text.contains("<script>"));
    }

    #[test]
    fn statuses_follow_squid() {
        assert_eq!(ErrorKind::ReadTimeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            ErrorKind::OnlyIfCachedMiss.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ErrorKind::ConnectFail.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(ErrorKind::ReadError.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(ErrorKind::TooBig.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(ErrorKind::AccessDenied.status(), StatusCode::FORBIDDEN);
    }
}
