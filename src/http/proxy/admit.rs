//! Access checks: http_access, miss_access and http_reply_access, and the
//! one ACL view of a request they and peer selection share.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderMap;
use http::{Method, StatusCode};

use crate::access;
use crate::config::Config;
use crate::http::server::ConnInfo;
use crate::http::target::Target;

/// What ACLs beyond the request line need from this request's connection:
/// its client's open connections and, when some rule of the list can
/// reach a `srcdomain` ACL, its name (looked up, cached, off the executor)
/// before the rules are checked.
pub(super) struct RequestDetails {
    pub(super) client_connections: usize,
    pub(super) client_name: Option<Arc<str>>,
}

impl RequestDetails {
    pub(super) async fn of(config: &Config, conn: &ConnInfo) -> RequestDetails {
        let lists = [
            &config.http_access,
            &config.miss_access,
            &config.http_reply_access,
        ];
        let client_name = if lists
            .iter()
            .any(|list| access::needs_client_name(list, config))
        {
            Some(crate::http::client_name::lookup(conn.client.ip()).await)
        } else {
            None
        };
        RequestDetails {
            client_connections: conn.per_client.open_from(conn.client.ip()),
            client_name,
        }
    }

    pub(super) fn get<'a>(&'a self, headers: &'a HeaderMap) -> access::Details<'a> {
        access::Details {
            request_headers: Some(headers),
            client_connections: self.client_connections,
            client_name: self.client_name.as_deref(),
            ..access::Details::default()
        }
    }
}

/// What http_reply_access looks at once the reply is known.
pub(super) struct ReplyCheck {
    pub(super) config: Arc<Config>,
    pub(super) local: SocketAddr,
    pub(super) port_name: Arc<str>,
    pub(super) target: Target,
    pub(super) request_headers: HeaderMap,
    pub(super) client_connections: usize,
    pub(super) client_name: Option<Arc<str>>,
}

impl ReplyCheck {
    /// Squid's http_reply_access (no rules: allow). As Squid, interim and
    /// partial answers (1xx, 206, 304) are always let through.
    pub(super) fn allows(
        &self,
        client: IpAddr,
        method: &str,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> bool {
        if status.is_informational()
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return true;
        }
        let req = access::Request {
            client,
            method,
            scheme: &self.target.scheme,
            host: &self.target.host,
            port: self.target.port,
            path: &self.target.path_and_query,
            url: &self.target.url,
            local_ip: Some(self.local.ip()),
            local_port: self.local.port(),
            port_name: &self.port_name,
            dst_addrs: None,
        };
        let details = access::Details {
            request_headers: Some(&self.request_headers),
            reply: Some(access::ReplyInfo {
                status: status.as_u16(),
                headers,
            }),
            client_connections: self.client_connections,
            client_name: self.client_name.as_deref(),
            ..access::Details::default()
        };
        access::check_with(&self.config.http_reply_access, &self.config, &req, &details)
            .or_if_no_rules(access::Verdict::Allow)
            .allowed()
    }
}

/// Evaluates an access list, resolving the destination only when a `dst`
/// ACL needs it.
pub(super) async fn allowed(
    config: &Config,
    list: &[crate::config::Located<crate::config::AccessRule>],
    conn: &ConnInfo,
    method: &Method,
    target: &Target,
    details: &access::Details<'_>,
) -> bool {
    let path = target.path_and_query.as_str();
    let mut req = access::Request {
        client: conn.client.ip(),
        method: method.as_str(),
        scheme: &target.scheme,
        host: &target.host,
        port: target.port,
        path,
        url: &target.url,
        local_ip: Some(conn.local.ip()),
        local_port: conn.local.port(),
        port_name: &conn.port_name,
        dst_addrs: None,
    };
    match access::try_check_with(list, config, &req, details) {
        Ok(decision) => decision.allowed(),
        Err(access::NeedsDst) => {
            let addrs: Vec<IpAddr> =
                tokio::net::lookup_host((target.host.trim_matches(['[', ']']), target.port))
                    .await
                    .map(|it| it.map(|a| a.ip()).collect())
                    .unwrap_or_default();
            req.dst_addrs = Some(&addrs);
            access::check_with(list, config, &req, details).allowed()
        }
    }
}

/// `miss_access` (Squid checks it, without DNS, whenever a request would be
/// forwarded; no rules = allow): true when it refuses this client. So
/// siblings get hits but cannot use us as a parent for their misses.
pub(super) fn miss_denied(
    config: &Config,
    conn: &ConnInfo,
    method: &Method,
    target: &Target,
    details: &access::Details<'_>,
) -> bool {
    if config.miss_access.is_empty() {
        return false;
    }
    let req = access::Request {
        client: conn.client.ip(),
        method: method.as_str(),
        scheme: &target.scheme,
        host: &target.host,
        port: target.port,
        path: &target.path_and_query,
        url: &target.url,
        local_ip: Some(conn.local.ip()),
        local_port: conn.local.port(),
        port_name: &conn.port_name,
        dst_addrs: None,
    };
    !access::check_with(&config.miss_access, config, &req, details)
        .or_if_no_rules(access::Verdict::Allow)
        .allowed()
}
