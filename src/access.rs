//! Access control: evaluates an `allow`/`deny` rule list (http_access, icp_access, htcp_access, htcp_clr_access, miss_access, never_direct, always_direct, cache_peer_access) for one request, with Squid's first-match order and implicit last rule, and no DNS of its own.
//!
//! Layer 2 of DESIGN.md: it uses only `config`. One ACL's test lives in
//! `access/eval.rs`, Squid's reading of URLs and hosts in
//! `access/squid_url.rs`.
//!
//! # Squid's rules, as implemented
//!
//! - The rules are tried top to bottom; the first whose ACLs all match
//!   decides. A rule's ACLs are ANDed (left to right, stopping at the first
//!   that fails), an ACL's values are ORed, `!` negates.
//! - When no rule matches, the answer is the opposite of the last rule's
//!   action (`deny` last: allow; `allow` last: deny) — Squid's "implicit
//!   rule" (`ACLChecklist::calcImplicitAnswer`, and squid.conf.documented:
//!   "If none of the access lines cause a match, the default is the opposite
//!   of the last line in the list").
//! - A list with no rules answers [`Verdict::Deny`] with [`Reason::NoRules`]
//!   (Squid's "dunno"). What that means depends on the directive (Squid's
//!   documented defaults); use [`Decision::or_if_no_rules`]:
//!
//!   | list | no rules |
//!   |---|---|
//!   | http_access, icp_access, htcp_access, htcp_clr_access | deny |
//!   | miss_access, cache_peer_access | allow |
//!   | never_direct, always_direct | deny (the request is not forced) |
//!
//! - `dst` needs the destination's addresses. [`check`] never resolves: it
//!   takes them from [`Request::dst_addrs`], and without them (not looked up,
//!   or the lookup failed) a `dst` ACL does not match — what Squid's
//!   `ACLDestinationIP::match` answers when the lookup failed or a fast
//!   check cannot wait for it (so `!dst_acl` then matches). An IP-literal
//!   host needs no lookup; with `-n`, a host name never matches. To resolve
//!   only when a rule actually reaches a `dst` ACL (Squid's slow-check
//!   behaviour), call [`try_check`] first; [`needs_dst`] says whether a list
//!   can need the addresses at all.
//! - `dstdomain` / `dstdom_regex` match the host's text only. Squid would
//!   reverse-resolve an IP-literal host unless `-n` is given; cuttle never
//!   does, so an IP host matches only an entry spelling that IP.
//! - `browser`, `referer_regex`, `req_header`, `rep_header`, `http_status`,
//!   `maxconn` and `srcdomain` look at [`Details`] ([`check_with`]): what is
//!   not there (no headers for ICP/HTCP, no reply in http_access, a client
//!   name not looked up) makes them not match, as Squid's ACLs answer
//!   without their data. `time` reads the local clock, `arp` the kernel's
//!   /proc/net/arp, when a rule reaches them.
//! - An ACL that cannot be evaluated (an untyped [`AclData::Other`], a host
//!   name in a src/dst list, a name not in the config) makes the check deny
//!   at that rule ([`Reason::Unevaluable`]). The loader refuses configs whose
//!   rules use such ACLs, so only a hand-built `Config` can get there.
//!
//! Checks allocate nothing in the common case: ACL references are resolved
//! to indices when loading, dstdomain lists are hashed, regexes compiled;
//! only a percent-encoded URL or path (for regex ACLs), an upper-case host,
//! or an IP host tested against a domain ACL needs a copy.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use http::HeaderMap;

use crate::config::{AccessRule, Acl, AclData, AclRef, Action, Config, Located, Location};

mod eval;
mod squid_url;

pub use eval::arp_lookup;
use eval::eval_acl;
use squid_url::{parse_ip_host, rfc1738_unescape};

/// What some ACL types look at beyond [`Request`]: the request's headers
/// (`browser`, `referer_regex`, `req_header`), the reply (`rep_header`,
/// `http_status`: http_reply_access), the client's open connections
/// (`maxconn`) and its reverse-DNS name (`srcdomain`). What is missing
/// makes those ACLs not match, as Squid's ACLs without their data do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Details<'a> {
    pub request_headers: Option<&'a HeaderMap>,
    pub reply: Option<ReplyInfo<'a>>,
    /// Connections open from the client's address, this one included; 0
    /// when there is no client connection (ICP/HTCP).
    pub client_connections: usize,
    /// The client's name from a reverse lookup (`none` when the lookup
    /// failed, as Squid names it); `None` when not looked up.
    pub client_name: Option<&'a str>,
    /// Local weekday (0 = Sunday) and minute of the day for `time`; `None`:
    /// the current local time.
    pub local_time: Option<(u32, u16)>,
    /// The text of /proc/net/arp for `arp`; `None`: read the kernel's.
    pub arp_table: Option<&'a str>,
}

/// The reply an http_reply_access check looks at.
#[derive(Debug, Clone, Copy)]
pub struct ReplyInfo<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
}

/// What an access check looks at: one request as Squid's ACL checklist
/// sees it. Strings borrow from the caller; nothing is copied.
///
/// For an ICP query Squid checks a `GET` of the queried URL from the
/// peer's address; for HTCP, the specifier's method and URL. Neither has a
/// client connection: `local_ip: None`, `local_port: 0`, `port_name: ""`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The client's address (`src`; for ICP/HTCP, the peer's).
    pub client: IpAddr,
    /// The request method as received (`GET`, `CONNECT`, `PURGE`, ...).
    pub method: &'a str,
    /// The URL scheme (`http`, `https`, `ftp`, `cache_object`, ...); ignored
    /// for CONNECT, whose protocol is Squid's `NONE`.
    pub scheme: &'a str,
    /// The URL host as Squid keeps it: lower-case (other cases are folded
    /// here), trailing dots ignored, an IPv6 literal in brackets.
    pub host: &'a str,
    /// The URL port, or the scheme's default ([`default_port`]); for
    /// CONNECT, the target's port.
    pub port: u16,
    /// The path with its query (`/a/b?c`), as received (percent-decoding is
    /// done here, as Squid does, for regex ACLs). Empty for CONNECT.
    pub path: &'a str,
    /// The absolute URL Squid would log (`http://host[:port]/path`, default
    /// port omitted); for CONNECT, `host:port`.
    pub url: &'a str,
    /// The address the client connected to (`localip`); `None` when there
    /// is no client connection (ICP/HTCP), which never matches.
    pub local_ip: Option<IpAddr>,
    /// The port the client connected to (`localport`); 0 when none.
    pub local_port: u16,
    /// The receiving http_port's name (`myportname`: its `name=`, else the
    /// port as written, e.g. `3128`); empty when none, which never matches.
    pub port_name: &'a str,
    /// The destination's resolved addresses for `dst` ACLs; `None` when not
    /// looked up (or the lookup failed).
    pub dst_addrs: Option<&'a [IpAddr]>,
}

/// The answer of an access check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl From<Action> for Verdict {
    fn from(action: Action) -> Self {
        match action {
            Action::Allow => Verdict::Allow,
            Action::Deny => Verdict::Deny,
        }
    }
}

impl Verdict {
    fn inverse(self) -> Self {
        match self {
            Verdict::Allow => Verdict::Deny,
            Verdict::Deny => Verdict::Allow,
        }
    }
}

/// Which rule decided, for logs and debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'c> {
    /// The rule at this location matched.
    Rule(&'c Location),
    /// No rule matched: the answer is the opposite of the last rule's
    /// action (Squid's implicit rule); this is the last rule's location.
    Implicit(&'c Location),
    /// The list has no rules (see [`Decision::or_if_no_rules`]).
    NoRules,
    /// The rule at this location uses an ACL cuttle cannot evaluate; the
    /// check failed closed.
    Unevaluable(&'c Location),
}

/// A verdict and the rule it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'c> {
    pub verdict: Verdict,
    pub reason: Reason<'c>,
}

impl<'c> Decision<'c> {
    pub fn allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// The location of the rule that decided (for [`Reason::Implicit`], the
    /// last rule, whose opposite applied); `None` for an empty list.
    pub fn location(&self) -> Option<&'c Location> {
        match self.reason {
            Reason::Rule(l) | Reason::Implicit(l) | Reason::Unevaluable(l) => Some(l),
            Reason::NoRules => None,
        }
    }

    /// This decision, or `verdict` if the list had no rules: for the lists
    /// Squid allows by default (miss_access, cache_peer_access) pass
    /// [`Verdict::Allow`].
    #[must_use]
    pub fn or_if_no_rules(self, verdict: Verdict) -> Self {
        match self.reason {
            Reason::NoRules => Decision { verdict, ..self },
            _ => self,
        }
    }
}

/// [`try_check`] reached a `dst` ACL, the host is a name and
/// [`Request::dst_addrs`] is `None`: resolve the host and check again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsDst;

/// Check `req` against `list` (see the module documentation for the
/// rules). `dst` ACLs without [`Request::dst_addrs`] do not match.
pub fn check<'c>(
    list: &'c [Located<AccessRule>],
    config: &'c Config,
    req: &Request<'_>,
) -> Decision<'c> {
    check_with(list, config, req, &Details::default())
}

/// [`check`] with the [`Details`] some ACL types need.
pub fn check_with<'c>(
    list: &'c [Located<AccessRule>],
    config: &'c Config,
    req: &Request<'_>,
    details: &Details<'_>,
) -> Decision<'c> {
    match run(list, config, &Eval::new(req, details, false)) {
        Ok(d) => d,
        // Unreachable: only a lazy evaluation asks for addresses.
        Err(NeedsDst) => Decision {
            verdict: Verdict::Deny,
            reason: Reason::NoRules,
        },
    }
}

/// Like [`check`], but when a rule reaches a `dst` ACL that needs the
/// destination's addresses and [`Request::dst_addrs`] is `None`, stop with
/// [`NeedsDst`]: the caller resolves the host (only then, as Squid does) and
/// calls [`check`] with the addresses (`Some(&[])` if the lookup failed).
pub fn try_check<'c>(
    list: &'c [Located<AccessRule>],
    config: &'c Config,
    req: &Request<'_>,
) -> Result<Decision<'c>, NeedsDst> {
    try_check_with(list, config, req, &Details::default())
}

/// [`try_check`] with the [`Details`] some ACL types need.
pub fn try_check_with<'c>(
    list: &'c [Located<AccessRule>],
    config: &'c Config,
    req: &Request<'_>,
    details: &Details<'_>,
) -> Result<Decision<'c>, NeedsDst> {
    run(list, config, &Eval::new(req, details, true))
}

/// Whether checking `list` can reach a `srcdomain` ACL, so the client's
/// name must be looked up first.
pub fn needs_client_name(list: &[Located<AccessRule>], config: &Config) -> bool {
    list.iter().any(|rule| {
        rule.acls
            .iter()
            .any(|r| find(config, r).is_some_and(|acl| matches!(acl.data, AclData::SrcDomain(_))))
    })
}

/// Whether checking `list` can need the destination's addresses: some rule
/// uses a `dst` ACL without `-n` (the built-in `to_localhost` and
/// `to_linklocal` are `dst` ACLs). An IP-literal host never needs a lookup.
pub fn needs_dst(list: &[Located<AccessRule>], config: &Config) -> bool {
    list.iter().any(|rule| {
        rule.acls.iter().any(|r| {
            find(config, r).is_some_and(|acl| {
                matches!(
                    acl.data,
                    AclData::Dst {
                        no_lookup: false,
                        ..
                    }
                )
            })
        })
    })
}

/// Whether every ACL of `refs` matches (negations applied): the condition
/// of an `access_log` line. An ACL that cannot be evaluated, or a `dst` ACL
/// without addresses, does not match.
pub fn matches_all(refs: &[AclRef], config: &Config, req: &Request<'_>) -> bool {
    eval_refs(refs, config, &Eval::new(req, &Details::default(), false)) == Match::Yes
}

/// Squid's default port for a URL scheme (AnyP::UriScheme::defaultPort),
/// for filling [`Request::port`] when the URL has none.
pub fn default_port(scheme: &str) -> Option<u16> {
    const PORTS: &[(&str, u16)] = &[
        ("http", 80),
        ("https", 443),
        ("ftp", 21),
        ("gopher", 70),
        ("wais", 210),
        ("cache_object", 3128),
        ("whois", 43),
        ("coap", 5683),
        ("coaps", 5684),
    ];
    PORTS
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(scheme))
        .map(|&(_, p)| p)
}

/// The outcome of one ACL or rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    /// A lazy evaluation reached a `dst` ACL without addresses.
    NeedDst,
    /// An ACL cuttle cannot evaluate.
    Unevaluable,
}

impl From<bool> for Match {
    fn from(b: bool) -> Self {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

/// One check's view of the request, with what is derived from it computed
/// at most once, and only if an ACL needs it.
struct Eval<'r, 'a> {
    req: &'r Request<'a>,
    details: &'r Details<'r>,
    /// Stop with `NeedDst` instead of treating missing addresses as no match.
    lazy_dst: bool,
    /// The host as an IP address, if it is an IP literal.
    literal: OnceCell<Option<IpAddr>>,
    /// The host text domain ACLs compare.
    host: OnceCell<Cow<'a, str>>,
    /// The URL, percent-decoded.
    url: OnceCell<Cow<'a, [u8]>>,
    /// The path, percent-decoded.
    path: OnceCell<Cow<'a, [u8]>>,
}

impl<'r, 'a> Eval<'r, 'a> {
    fn new(req: &'r Request<'a>, details: &'r Details<'r>, lazy_dst: bool) -> Self {
        Eval {
            req,
            details,
            lazy_dst,
            literal: OnceCell::new(),
            host: OnceCell::new(),
            url: OnceCell::new(),
            path: OnceCell::new(),
        }
    }

    fn literal(&self) -> Option<IpAddr> {
        *self.literal.get_or_init(|| parse_ip_host(self.req.host))
    }

    /// Lower-case, without trailing dots; an IP literal in Squid's
    /// canonical text (`127.0.0.1`, `[::1]`).
    fn host(&self) -> &str {
        self.host.get_or_init(|| {
            if let Some(ip) = self.literal() {
                return Cow::Owned(match ip {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                });
            }
            let host = self.req.host.trim_end_matches('.');
            if host.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(host.to_ascii_lowercase())
            } else {
                Cow::Borrowed(host)
            }
        })
    }

    fn url(&self) -> &[u8] {
        self.url.get_or_init(|| rfc1738_unescape(self.req.url))
    }

    fn path(&self) -> &[u8] {
        self.path.get_or_init(|| rfc1738_unescape(self.req.path))
    }
}

fn run<'c>(
    list: &'c [Located<AccessRule>],
    config: &'c Config,
    ev: &Eval<'_, '_>,
) -> Result<Decision<'c>, NeedsDst> {
    for rule in list {
        let decided = |reason| Decision {
            verdict: rule.action.into(),
            reason,
        };
        match eval_refs(&rule.acls, config, ev) {
            Match::Yes => return Ok(decided(Reason::Rule(&rule.location))),
            Match::No => {}
            Match::NeedDst => return Err(NeedsDst),
            Match::Unevaluable => {
                return Ok(Decision {
                    verdict: Verdict::Deny,
                    reason: Reason::Unevaluable(&rule.location),
                })
            }
        }
    }
    Ok(match list.last() {
        Some(last) => Decision {
            verdict: Verdict::from(last.action).inverse(),
            reason: Reason::Implicit(&last.location),
        },
        None => Decision {
            verdict: Verdict::Deny,
            reason: Reason::NoRules,
        },
    })
}

/// AND of the references, left to right, stopping at the first that fails.
fn eval_refs(refs: &[AclRef], config: &Config, ev: &Eval<'_, '_>) -> Match {
    for r in refs {
        let Some(acl) = find(config, r) else {
            return Match::Unevaluable;
        };
        let m = match eval_acl(acl, ev) {
            Match::Yes if r.negated => Match::No,
            Match::No if r.negated => Match::Yes,
            other => other,
        };
        if m != Match::Yes {
            return m;
        }
    }
    Match::Yes
}

/// The ACL a reference names: by its resolved index, else by name.
fn find<'c>(config: &'c Config, r: &AclRef) -> Option<&'c Acl> {
    match config.acls.get(r.index) {
        Some(acl) if acl.name.eq_ignore_ascii_case(&r.name) => Some(acl),
        _ => config.acl(&r.name),
    }
}

#[cfg(test)]
mod tests;
