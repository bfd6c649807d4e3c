//! Access checks: http_access, miss_access and http_reply_access, and the
//! one ACL view of a request they and peer selection share.

use std::cell::Cell;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock, RwLock};

use http::header::HeaderMap;
use http::{Method, StatusCode};

use crate::access;
use crate::config::Config;
use crate::http::server::ConnInfo;
use crate::http::target::{PortKind, Target};

use super::txn::Txn;

/// The http_port a request came in on, as forwarding and every ACL check
/// see it. Copy: each attempt, fetch and background refresh of the
/// request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Arrival {
    pub(super) kind: PortUse,
    /// The address the client connected to (`localip`, `localport`).
    pub(super) local: SocketAddr,
    /// The http_port's name (`myportname`).
    pub(super) port_name: &'static str,
}

/// What kind of http_port a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortUse {
    Forward,
    /// An accelerator port: without allow-direct nothing of it goes DIRECT
    /// (squid-spec 3.2 step 3), and a user's credentials are in
    /// Authorization.
    Accel {
        allow_direct: bool,
    },
}

impl Arrival {
    pub(super) fn of(conn: &ConnInfo) -> Arrival {
        Arrival {
            kind: match &conn.kind {
                PortKind::Forward => PortUse::Forward,
                PortKind::Accel { allow_direct, .. } => PortUse::Accel {
                    allow_direct: *allow_direct,
                },
            },
            local: conn.local,
            port_name: interned(&conn.port_name),
        }
    }

    /// An accelerator port's request: a user's credentials are in
    /// Authorization.
    pub(super) fn accelerated(&self) -> bool {
        self.kind != PortUse::Forward
    }

    /// An accelerator port without allow-direct: nothing goes DIRECT.
    pub(super) fn no_direct(&self) -> bool {
        self.kind
            == PortUse::Accel {
                allow_direct: false,
            }
    }

    /// The request as every ACL check sees it: http_access, miss_access,
    /// http_reply_access, access_log, and peer selection's
    /// cache_peer_access, always_direct, never_direct and
    /// tcp_outgoing_address. One constructor, so that none of them loses
    /// the port (`localip`, `localport`, `myportname`).
    pub(super) fn acl_request<'a>(
        &self,
        client: IpAddr,
        method: &'a str,
        target: &'a Target,
    ) -> access::Request<'a> {
        access::Request {
            client,
            method,
            scheme: &target.scheme,
            host: &target.host,
            port: target.port,
            path: &target.path_and_query,
            url: &target.url,
            local_ip: Some(self.local.ip()),
            local_port: self.local.port(),
            port_name: self.port_name,
            dst_addrs: None,
        }
    }
}

/// `name` with a static lifetime, so that [`Arrival`] can be Copy. Port
/// names come from the configuration: each distinct one is kept once for
/// the life of the process. Each thread remembers the last one it met, so
/// the common case (every request on the same port) takes no lock.
fn interned(name: &str) -> &'static str {
    thread_local! {
        static LAST: Cell<&'static str> = const { Cell::new("") };
    }
    let last = LAST.get();
    if last == name {
        return last;
    }
    let found = intern_shared(name);
    LAST.set(found);
    found
}

fn intern_shared(name: &str) -> &'static str {
    static NAMES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(RwLock::default);
    if let Some(known) = names.read().unwrap_or_else(|p| p.into_inner()).get(name) {
        return known;
    }
    let mut names = names.write().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

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
    pub(super) arrival: Arrival,
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
        let req = self.arrival.acl_request(client, method, &self.target);
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
    txn: &Txn,
    method: &Method,
    target: &Target,
    details: &access::Details<'_>,
) -> bool {
    let mut req = txn.arrival.acl_request(txn.client, method.as_str(), target);
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
    txn: &Txn,
    method: &Method,
    target: &Target,
    details: &access::Details<'_>,
) -> bool {
    if config.miss_access.is_empty() {
        return false;
    }
    let req = txn.arrival.acl_request(txn.client, method.as_str(), target);
    !access::check_with(&config.miss_access, config, &req, details)
        .or_if_no_rules(access::Verdict::Allow)
        .allowed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_are_kept_once() {
        let a = interned(&String::from("porta"));
        let b = interned(&String::from("portb"));
        assert_eq!((a, b), ("porta", "portb"));
        assert!(std::ptr::eq(a, interned("porta")));
        assert!(std::ptr::eq(b, interned("portb")));
        assert_eq!(interned(""), "");
    }
}
