//! The verdicts of icp_access and htcp_access for queries between nodes,
//! remembered. A query's checklist is the asking node's address plus the
//! URL; a list whose ACLs all test the client address alone (`src`, and
//! `all`, which is one) gives the same verdict for every query from one
//! node, so the access check (`access::check`, the responders' own rule)
//! runs once per pair of nodes instead of once per query. A list that
//! reads anything else is checked every time.

use crate::access::{self, Verdict};
use crate::config::{AccessList, AclData, Config};

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
        rule.acls.iter().all(|r| {
            // As the access check finds it: by index, else by name.
            let acl = config
                .acls
                .get(r.index)
                .filter(|a| a.name.eq_ignore_ascii_case(&r.name))
                .or_else(|| config.acl(&r.name));
            acl.is_some_and(|a| matches!(a.data, AclData::Src(_)))
        })
    })
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
    /// node `asker` (Squid denies when the list is empty).
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
