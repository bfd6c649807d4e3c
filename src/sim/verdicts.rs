//! The verdicts of icp_access and htcp_access for queries between nodes,
//! remembered. A query's checklist is the asking node's address plus the
//! URL; a list whose ACLs all test the client address alone (`src`, and
//! `all`, which is one) gives the same verdict for every query from one
//! node, so the access check (`access::check`, the responders' own rule)
//! runs once per pair of nodes instead of once per query. A list that
//! reads anything else is checked every time. Likewise always_direct and
//! never_direct, when their verdict is the same for every request.

use crate::access::{self, Verdict};
use crate::config::{AccessList, AclData, Config, IpAclEntry};
use crate::peers::core::decide::allow_listed;

/// Which list a query is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Icp,
    Htcp,
}

/// The remembered verdicts, by (answerer, asker) and protocol.
#[derive(Debug, Clone)]
pub struct QueryVerdicts {
    nodes: usize,
    /// Per node and protocol: its list reads only the client address.
    by_client: Vec<[bool; 2]>,
    /// `(answerer * nodes + asker) * 2 + protocol`.
    seen: Vec<Option<bool>>,
}

/// Whether `list`'s verdict depends on the client address alone.
fn reads_only_the_client(list: &AccessList, config: &Config) -> bool {
    list.iter().all(|rule| {
        rule.acls
            .iter()
            .all(|r| acl_of(config, r).is_some_and(|a| matches!(a.data, AclData::Src(_))))
    })
}

/// The ACL a rule's reference names, as the access check finds it: by
/// index, else by name.
fn acl_of<'c>(config: &'c Config, r: &crate::config::AclRef) -> Option<&'c crate::config::Acl> {
    config
        .acls
        .get(r.index)
        .filter(|a| a.name.eq_ignore_ascii_case(&r.name))
        .or_else(|| config.acl(&r.name))
}

/// `allow_listed(list)` when it is the same for every request: a list
/// without rules (false), or one whose first rule has ACLs that all match
/// every request (not negated `src` ACLs holding `all`, as the built-in
/// `all`): that rule's verdict, found by the access check itself.
/// `None`: it depends on the request.
fn fixed_allow(list: &AccessList, config: &Config) -> Option<bool> {
    let Some(first) = list.first() else {
        return Some(false);
    };
    let matches_all = !first.acls.is_empty()
        && first.acls.iter().all(|r| {
            !r.negated
                && acl_of(config, r).is_some_and(|a| match &a.data {
                    AclData::Src(entries) => entries.iter().any(|e| **e == IpAclEntry::Any),
                    _ => false,
                })
        });
    if !matches_all {
        return None;
    }
    let any = access::Request {
        client: std::net::Ipv4Addr::UNSPECIFIED.into(),
        method: "GET",
        scheme: "http",
        host: "",
        port: 80,
        path: "/",
        url: "",
        local_ip: None,
        local_port: 0,
        port_name: "",
        dst_addrs: None,
    };
    Some(allow_listed(list, config, &any))
}

/// Each node's always_direct and never_direct verdicts when fixed.
#[derive(Debug, Clone)]
pub struct DirectVerdicts {
    /// Per node: always_direct's, never_direct's (`None`: per request).
    fixed: Vec<[Option<bool>; 2]>,
}

impl DirectVerdicts {
    pub fn new<'c>(configs: impl Iterator<Item = &'c Config>) -> DirectVerdicts {
        DirectVerdicts {
            fixed: configs
                .map(|c| {
                    [
                        fixed_allow(&c.always_direct, c),
                        fixed_allow(&c.never_direct, c),
                    ]
                })
                .collect(),
        }
    }

    /// Node `node`'s always_direct (`never: false`) or never_direct
    /// verdict for `req`: the fixed one, else the access check's.
    pub fn allowed(
        &self,
        node: usize,
        never: bool,
        config: &Config,
        req: &access::Request<'_>,
    ) -> bool {
        let fixed = self.fixed.get(node).and_then(|f| f[usize::from(never)]);
        fixed.unwrap_or_else(|| {
            let list = if never {
                &config.never_direct
            } else {
                &config.always_direct
            };
            allow_listed(list, config, req)
        })
    }
}

impl QueryVerdicts {
    pub fn new<'c>(configs: impl Iterator<Item = &'c Config>) -> QueryVerdicts {
        let by_client: Vec<[bool; 2]> = configs
            .map(|c| {
                [
                    reads_only_the_client(&c.icp_access, c),
                    reads_only_the_client(&c.htcp_access, c),
                ]
            })
            .collect();
        let nodes = by_client.len();
        QueryVerdicts {
            nodes,
            by_client,
            seen: vec![None; nodes * nodes * 2],
        }
    }

    /// Whether node `answerer` (its `config`) answers `query`, a query from
    /// node `asker` (Squid denies when the list is empty). Inlined: it
    /// runs per query, nearly always to a remembered verdict.
    #[inline]
    pub fn allowed(
        &mut self,
        protocol: Protocol,
        answerer: usize,
        asker: usize,
        config: &Config,
        query: &access::Request<'_>,
    ) -> bool {
        let list = match protocol {
            Protocol::Icp => &config.icp_access,
            Protocol::Htcp => &config.htcp_access,
        };
        let check = || {
            access::check(list, config, query)
                .or_if_no_rules(Verdict::Deny)
                .allowed()
        };
        let p = protocol as usize;
        let remembered = self.by_client.get(answerer).is_some_and(|b| b[p]) && asker < self.nodes;
        if !remembered {
            return check();
        }
        *self.seen[(answerer * self.nodes + asker) * 2 + p].get_or_insert_with(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str_sandboxed(text, "test.conf").config
    }

    #[test]
    fn only_lists_of_src_acls_are_remembered() {
        let by_src =
            config("acl peers src 10.0.0.0/24\nicp_access allow peers\nicp_access deny all\n");
        let by_url = config(
            "acl peers src 10.0.0.0/24\nacl pics urlpath_regex \\.gif$\nicp_access allow peers pics\n",
        );
        assert!(reads_only_the_client(&by_src.icp_access, &by_src));
        assert!(reads_only_the_client(&by_src.htcp_access, &by_src));
        assert!(!reads_only_the_client(&by_url.icp_access, &by_url));
    }

    #[test]
    fn a_direct_list_is_fixed_only_when_its_first_rule_matches_every_request() {
        let fixed = |text: &str| {
            let c = config(&format!(
                "acl near src 10.0.0.0/8\nacl pics urlpath_regex \\.gif$\n{text}"
            ));
            (
                fixed_allow(&c.always_direct, &c),
                fixed_allow(&c.never_direct, &c),
            )
        };
        assert_eq!(fixed(""), (Some(false), Some(false)));
        assert_eq!(fixed("never_direct allow all\n"), (Some(false), Some(true)));
        assert_eq!(
            fixed("always_direct deny all\n"),
            (Some(false), Some(false))
        );
        assert_eq!(
            fixed("never_direct allow all\nalways_direct allow all pics\n"),
            (None, Some(true))
        );
        // Rules that read the request: asked per request.
        assert_eq!(fixed("never_direct allow near\n").1, None);
        assert_eq!(fixed("never_direct allow !all\n").1, None);
        assert_eq!(
            fixed("never_direct deny pics\nnever_direct allow all\n").1,
            None
        );
        // The fixed verdict is the access check's for any request.
        let c = config("never_direct allow all\n");
        let v = DirectVerdicts::new([&c].into_iter());
        let req = access::Request {
            client: "192.0.2.7".parse().expect("address"),
            method: "GET",
            scheme: "http",
            host: "example.com",
            port: 80,
            path: "/x",
            url: "http://example.com/x",
            local_ip: None,
            local_port: 0,
            port_name: "",
            dst_addrs: None,
        };
        assert!(v.allowed(0, true, &c, &req));
        assert!(!v.allowed(0, false, &c, &req));
        assert_eq!(
            allow_listed(&c.never_direct, &c, &req),
            v.allowed(0, true, &c, &req)
        );
    }

    #[test]
    fn a_remembered_verdict_is_the_access_checks_and_a_url_list_is_asked_each_time() {
        let by_url = config(
            "acl peers src 10.0.0.0/24\nacl pics urlpath_regex \\.gif$\nicp_access allow peers pics\n",
        );
        let by_src = config("acl peers src 10.0.0.0/24\nicp_access allow peers\n");
        let mut v = QueryVerdicts::new([&by_src, &by_url].into_iter());
        let query = |client: &str, path: &'static str| access::Request {
            client: client.parse().expect("address"),
            method: "GET",
            scheme: "http",
            host: "example.com",
            port: 80,
            path,
            url: "http://example.com/x",
            local_ip: None,
            local_port: 0,
            port_name: "",
            dst_addrs: None,
        };
        // Node 0's list: the asker's address decides, once per asker.
        assert!(v.allowed(Protocol::Icp, 0, 1, &by_src, &query("10.0.0.2", "/a")));
        assert!(!v.allowed(Protocol::Icp, 0, 2, &by_src, &query("10.9.0.2", "/a")));
        assert!(v.allowed(Protocol::Icp, 0, 1, &by_src, &query("10.0.0.2", "/b")));
        // No htcp_access: denied.
        assert!(!v.allowed(Protocol::Htcp, 0, 1, &by_src, &query("10.0.0.2", "/a")));
        // Node 1's list reads the path: each query is checked.
        assert!(v.allowed(Protocol::Icp, 1, 0, &by_url, &query("10.0.0.1", "/p.gif")));
        assert!(!v.allowed(Protocol::Icp, 1, 0, &by_url, &query("10.0.0.1", "/p.html")));
    }
}
