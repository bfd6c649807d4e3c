//! Access rule lists: `allow|deny [!]acl ...` lines, the ACL references they make (checked against the defined ACLs), and the checks run once every ACL is known.

use std::collections::{HashMap, HashSet};

use super::{AccessRule, AclData, AclRef, Action, DomainEntry, DomainIndex};
use crate::config::directives::Ctx;
use crate::config::lexer::{Line, Token};
use crate::config::Location;

/// Parse `allow|deny [!]acl ...` (the arguments after any leading fields)
/// and check that every ACL named is defined. Returns `None` (after a
/// diagnostic) when the rule is unusable.
pub(crate) fn parse_rule(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    directive: &str,
    args: &[Token],
) -> Option<AccessRule> {
    let loc = &line.location;
    let Some(action_tok) = args.first() else {
        ctx.error(loc, format!("{directive}: missing allow or deny"));
        return None;
    };
    let action = match action_tok.text.as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        other => {
            ctx.error(
                loc,
                format!("{directive}: expected allow or deny, got \"{other}\""),
            );
            return None;
        }
    };
    let acls = parse_acl_refs(ctx, line, directive, args.get(1..).unwrap_or(&[]))?;
    if acls.is_empty() {
        // Squid skips such a line ("Access line contains no ACL's").
        ctx.warn(
            loc,
            format!("{directive}: rule names no ACL; Squid skips it"),
        );
        return None;
    }
    // Squid warns at run time ("used in context without an HTTP response.
    // Assuming mismatch"); the config already says so.
    if directive != "http_reply_access" {
        for r in &acls {
            let Some(acl) = ctx.config.acls.get(r.index) else {
                continue;
            };
            if matches!(acl.data, AclData::RepHeader { .. } | AclData::HttpStatus(_)) {
                let message = format!(
                    "{directive}: ACL \"{}\" ({}) looks at the reply, which {directive} does not have: it never matches here (as in Squid); use it in http_reply_access",
                    r.name,
                    acl.data.type_name()
                );
                ctx.warn(loc, message);
            }
        }
    }
    // A rule cuttle cannot evaluate as Squid would is refused: skipping it
    // or guessing could let in what the config keeps out.
    let mut refused = false;
    for r in &acls {
        let Some(acl) = ctx.config.acls.get(r.index) else {
            continue;
        };
        if let Some(reason) = acl.data.unsupported_reason() {
            let message = format!(
                "{directive}: ACL \"{}\" (defined at {}) cannot be evaluated: {reason}; cuttle refuses a config whose access rules it cannot enforce",
                r.name, acl.location
            );
            ctx.error(loc, message);
            refused = true;
        }
    }
    (!refused).then_some(AccessRule { action, acls })
}

/// Parse a list of `[!]acl` names and check each is defined.
pub(crate) fn parse_acl_refs(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    directive: &str,
    args: &[Token],
) -> Option<Vec<AclRef>> {
    let mut refs = Vec::with_capacity(args.len());
    let mut ok = true;
    for t in args {
        let (negated, name) = match t.text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, t.text.as_str()),
        };
        if name.is_empty() {
            ctx.error(
                &line.location,
                format!("{directive}: \"!\" must be followed by an ACL name"),
            );
            ok = false;
            continue;
        }
        if !ctx.require_acl(name, &line.location, directive) {
            ok = false;
        }
        let index = ctx
            .acl_index
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or(usize::MAX);
        refs.push(AclRef {
            name: name.to_string(),
            negated,
            index,
        });
    }
    ok.then_some(refs)
}

/// At the end of loading: index every dstdomain ACL for fast lookups.
pub(crate) fn finish(ctx: &mut Ctx<'_, '_>) {
    for acl in &mut ctx.config.acls {
        if let AclData::DstDomain { entries, index, .. } = &mut acl.data {
            *index = DomainIndex::build(entries);
        }
    }
}

/// Squid warns when a dstdomain ACL lists a domain twice or lists a host
/// already covered by a `.domain` entry: the narrower entry is dropped.
pub(crate) fn check_domain_overlaps(ctx: &mut Ctx<'_, '_>) {
    let mut warnings = Vec::new();
    for acl in &ctx.config.acls {
        let AclData::DstDomain { entries, .. } = &acl.data else {
            continue;
        };
        let wildcards: HashSet<&str> = entries
            .iter()
            .filter(|e| e.subdomains)
            .map(|e| e.domain.as_str())
            .collect();
        let mut seen: HashMap<(&str, bool), &Location> = HashMap::new();
        for e in entries {
            let written = |d: &DomainEntry| {
                if d.subdomains {
                    format!(".{}", d.domain)
                } else {
                    d.domain.clone()
                }
            };
            if let Some(first) = seen.get(&(e.domain.as_str(), e.subdomains)) {
                warnings.push((
                    e.location.clone(),
                    format!(
                        "acl: \"{}\" is listed twice in ACL \"{}\" (first at {first})",
                        written(e),
                        acl.name
                    ),
                ));
                continue;
            }
            seen.insert((e.domain.as_str(), e.subdomains), &e.location);
            // Every proper parent domain of this entry, and for an exact host
            // the same name, could cover it.
            let mut covering = None;
            if !e.subdomains && wildcards.contains(e.domain.as_str()) {
                covering = Some(e.domain.as_str());
            }
            let mut rest = e.domain.as_str();
            while covering.is_none() {
                let Some((_, parent)) = rest.split_once('.') else {
                    break;
                };
                if wildcards.contains(parent) {
                    covering = Some(parent);
                }
                rest = parent;
            }
            if let Some(parent) = covering {
                warnings.push((
                    e.location.clone(),
                    format!(
                        "acl: \"{}\" is already matched by \".{parent}\" in ACL \"{}\"; Squid ignores it",
                        written(e),
                        acl.name
                    ),
                ));
            }
        }
    }
    for (loc, message) in warnings {
        ctx.warn(&loc, message);
    }
}
