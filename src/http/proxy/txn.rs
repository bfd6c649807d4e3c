//! A transaction and its ending: the access.log line it writes, the
//! response that carries it, the error pages.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::access;
use crate::access_log::{Entry, Hierarchy, Logger, ResultCode, ResultTag};
use crate::caching;
use crate::config::Config;
use crate::http::body::{ClientBody, ProxyBody};
use crate::http::errors::{self, ErrorKind};
use crate::http::server::ConnInfo;
use crate::http::target::Target;
use crate::upstream::FetchError;

use super::admit::Arrival;
use super::admit::ReplyCheck;
use super::forward::NotForwarded;
use super::headers::content_length;
use super::Proxy;

/// The error page for a failed fetch.
pub(super) fn error_kind(e: &FetchError) -> ErrorKind {
    match e {
        FetchError::Dns { .. } => ErrorKind::DnsFail,
        FetchError::Connect { .. } => ErrorKind::ConnectFail,
        FetchError::SecureConnect { .. } => ErrorKind::SecureConnectFail,
        FetchError::Timeout => ErrorKind::ReadTimeout,
        FetchError::Read(_) => ErrorKind::ReadError,
        FetchError::RequestBody(_) => ErrorKind::InvalidRequest,
        FetchError::TooBig(_) => ErrorKind::TooBig,
    }
}

/// The error page when nothing answered. With no source at all Squid 5.7
/// answers 502 ERR_READ_ERROR ([V]: an accelerator port without
/// allow-direct and without a parent), a status a downstream cache
/// re-forwards; cuttle answers the same.
pub(super) fn not_forwarded_page(e: &NotForwarded) -> (ErrorKind, String) {
    match e {
        NotForwarded::NoSource => (
            ErrorKind::ReadError,
            "no forwarding destination: nothing may go direct (never_direct, or an accelerator port without allow-direct) and no parent is usable".into(),
        ),
        NotForwarded::Failed(e) => (error_kind(e), e.to_string()),
    }
}

/// What the access.log line will say, filled in as the request goes.
pub(super) struct Txn {
    pub(super) start: Instant,
    pub(super) client: IpAddr,
    pub(super) local_port: u16,
    pub(super) method: String,
    pub(super) url: String,
    pub(super) result: ResultCode,
    pub(super) hierarchy: Hierarchy,
    /// What the ACLs of `access_log` lines look at; `None` when no line
    /// has ACLs (the common case costs nothing).
    pub(super) log_scope: Option<Box<LogScope>>,
    /// `miss_access` refuses this client: whatever would be forwarded
    /// (a miss, a revalidation, another method, a tunnel) gets a 403.
    pub(super) miss_denied: bool,
    pub(super) arrival: Arrival,
    /// http_reply_access to apply to the reply; `None` when there are no
    /// rules (or for CONNECT and cuttle's own denials, as in Squid).
    pub(super) reply_check: Option<Box<ReplyCheck>>,
    /// Lists it in `mgr:active_requests` until the transaction ends.
    pub(super) active: crate::stats::ActiveGuard,
    /// A child offered to report hit metering counts: its response may
    /// ask it to (`Meter: do-report`).
    pub(super) meter_ask: bool,
    /// The offer to share a GET to this owner carried (share_owner.rs).
    pub(super) share_offer: Option<Box<super::share_owner::OfferSeen>>,
}

/// The request as an `access_log` line's ACLs see it.
pub(super) struct LogScope {
    pub(super) config: Arc<Config>,
    pub(super) arrival: Arrival,
    /// Blank when the request had no usable URL.
    pub(super) target: Target,
}

impl Txn {
    /// `target` is `None` when the request had no usable URL.
    pub(super) fn new(
        proxy: &Proxy,
        conn: &ConnInfo,
        method: &Method,
        url: String,
        target: Option<&Target>,
    ) -> Txn {
        let arrival = Arrival::of(conn);
        let log_scope = proxy.logger.has_acl_rules().then(|| {
            Box::new(LogScope {
                config: Arc::clone(&proxy.config),
                arrival,
                target: target.cloned().unwrap_or_else(|| Target {
                    scheme: String::new(),
                    host: String::new(),
                    port: 0,
                    path_and_query: String::new(),
                    url: String::new(),
                }),
            })
        });
        let active = proxy
            .stats()
            .begin_request(conn.client, conn.local, method.as_str(), &url);
        Txn {
            active,
            start: Instant::now(),
            client: conn.client.ip(),
            local_port: conn.local.port(),
            method: method.as_str().to_string(),
            url,
            result: ResultCode::new(ResultTag::None),
            hierarchy: Hierarchy::none(),
            log_scope,
            miss_denied: false,
            arrival,
            reply_check: None,
            meter_ask: false,
            share_offer: None,
        }
    }

    /// Writes the access.log line of this transaction: `entry` is what
    /// happened, the `access_log` lines' ACLs are checked against the request.
    pub(super) fn log(logger: &Logger, scope: Option<&LogScope>, entry: &Entry) {
        let Some(scope) = scope else {
            logger.log(entry);
            return;
        };
        let client = entry
            .client
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let mut req = scope
            .arrival
            .acl_request(client, &entry.method, &scope.target);
        // The URL as logged (the request line's when it had no usable one).
        req.url = &entry.url;
        logger.log_if(entry, |acls| access::matches_all(acls, &scope.config, &req));
    }

    /// Ends the transaction once its response is sent (`complete`) or
    /// abandoned: `(status, bytes sent)` counted and logged.
    pub(super) fn end(
        self,
        logger: &Logger,
        stats: &crate::stats::Stats,
        (status, size): (StatusCode, u64),
        content_type: Option<String>,
        complete: bool,
    ) {
        // Listed as active until its log line is written.
        let _active = self.active;
        let mut result = self.result;
        if !complete {
            result = result.aborted();
        }
        let entry = Entry {
            end: SystemTime::now(),
            elapsed: self.start.elapsed(),
            client: Some(self.client),
            result,
            status: status.as_u16(),
            size,
            method: self.method,
            url: self.url,
            user: None,
            hierarchy: self.hierarchy,
            content_type,
        };
        stats.note_transaction(&entry);
        Txn::log(logger, self.log_scope.as_deref(), &entry);
    }

    pub(super) fn with(mut self, tag: ResultTag) -> Txn {
        self.result = ResultCode::new(tag);
        self
    }
}

/// Records the result code and the status on the request's span (when it
/// is enabled).
pub(super) fn note_code(code: &ResultCode, status: StatusCode) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("code", tracing::field::display(code));
        span.record("status", status.as_u16());
    }
}

/// Bytes of a response head on the wire (status line, fields, blank line).
pub(super) fn head_size(status: StatusCode, headers: &HeaderMap) -> u64 {
    let line = 9 + 3 + 1 + status.canonical_reason().map_or(0, str::len) + 2;
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    (line + fields + 2) as u64
}

impl Proxy {
    /// Finishes a transaction: the response goes out with a body that
    /// writes the access.log line when it ends.
    pub(super) fn respond(
        &self,
        mut txn: Txn,
        status: StatusCode,
        mut headers: HeaderMap,
        body: ProxyBody,
    ) -> Response<ClientBody> {
        if let Some(check) = txn.reply_check.take() {
            if !check.allows(txn.client, &txn.method, status, &headers) {
                // Squid's TCP_DENIED_REPLY: the reply is dropped unsent.
                drop(body);
                return self.error(
                    txn.with(ResultTag::TcpDeniedReply),
                    ErrorKind::AccessDenied,
                    "denied by http_reply_access",
                );
            }
        }
        if self.config.share.log.value.on {
            if let Some(list) = self.share_answer(&mut txn, status, &mut headers) {
                // The requester fetches from a candidate instead.
                drop(body);
                return self.respond(txn, StatusCode::MULTIPLE_CHOICES, list, ProxyBody::Empty);
            }
        }
        note_code(&txn.result, status);
        // Every response leaves here: cuttle's record of a targeted field must not.
        caching::targeted::remove_internal(&mut headers);
        if txn.meter_ask {
            self.meter_ask_child(&txn.url, txn.arrival, status, &mut headers);
        }
        if self.config.hit_metering.value {
            self.meter_shared_caches(&txn.url, status, &mut headers);
        }
        headers.append(header::VIA, self.via.clone());
        let head_bytes = head_size(status, &headers);
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let logger = self.logger.clone();
        let stats = self.stats();
        // No body goes out for these whatever the fields say.
        let expected = if status == StatusCode::NOT_MODIFIED
            || status == StatusCode::NO_CONTENT
            || txn.method == "HEAD"
        {
            Some(0)
        } else {
            content_length(&headers)
        };
        let progress = Arc::clone(txn.active.request());
        let done = Box::new(move |body_bytes: u64, complete: bool| {
            txn.end(
                &logger,
                &stats,
                (status, head_bytes + body_bytes),
                content_type,
                complete,
            );
        });
        let mut resp = Response::new(ClientBody::new(body, expected, done).counting_into(progress));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    pub(super) fn error(&self, txn: Txn, kind: ErrorKind, detail: &str) -> Response<ClientBody> {
        let (status, mut headers, body) = errors::page(kind, &txn.url, detail, &self.name);
        self.cache_status(&mut headers, false, None);
        self.respond(txn, status, headers, ProxyBody::full(body))
    }

    /// An error after which the client's connection closes: what it sent
    /// next on it cannot be framed (its request body was not or could not
    /// be read).
    pub(super) fn error_closing(
        &self,
        txn: Txn,
        kind: ErrorKind,
        detail: &str,
    ) -> Response<ClientBody> {
        let mut resp = self.error(txn, kind, detail);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }

    /// `miss_access` said no: Squid's 403 ERR_FORWARDING_DENIED, logged
    /// with the transaction's tag (TCP_MISS/403 for a miss, HIER_NONE/-).
    pub(super) fn forwarding_denied(&self, txn: Txn) -> Response<ClientBody> {
        self.error(txn, ErrorKind::ForwardingDenied, "denied by miss_access")
    }

    pub(super) fn fetch_error(&self, txn: Txn, e: &FetchError) -> Response<ClientBody> {
        self.error(txn, error_kind(e), &e.to_string())
    }

    pub(super) fn not_forwarded(&self, txn: Txn, e: &NotForwarded) -> Response<ClientBody> {
        let (kind, detail) = not_forwarded_page(e);
        if matches!(e, NotForwarded::Failed(FetchError::RequestBody(_))) {
            // The rest of its body cannot be framed: the connection goes.
            return self.error_closing(txn, kind, &detail);
        }
        self.error(txn, kind, &detail)
    }
}
