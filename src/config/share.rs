//! Proxy sharing (issue 21; cuttle's own directives, which Squid would
//! ignore): the owner's `share_log on|off [min_size=SIZE] [candidates=N]
//! [lifetime=TIME] [max_memory=SIZE]` and `share_locality NAME CIDR...`; the requester's
//! `share_offer on|off [to=owners|all] [probes=K] [probe_timeout=TIME]`
//! and `share_offer_url URL`.

use std::time::Duration;

use super::acl::{parse_ip_entry, IpAclEntry};
use super::directives::Ctx;
use super::lexer::Line;
use super::values::{parse_onoff, parse_size_word, parse_time, parse_uint, SECONDS};
use super::{Located, Setting};

/// The owner side: which resources are logged and answered with lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLog {
    pub on: bool,
    /// Smaller resources are always served: a list would only add a round
    /// trip (the paper's 10 KB).
    pub min_size: u64,
    /// Candidates named in one list.
    pub candidates: u32,
    /// The longest a log entry stands, whatever the offer's ttl.
    pub lifetime: Duration,
    /// The log's bound, bytes of state (each entry its two URLs and 64
    /// bytes); past it the oldest entry goes.
    pub max_memory: usize,
}

/// The share log's default bound, 1 MiB: about 10,000 entries of the
/// paper's 100 bytes.
pub const DEFAULT_MAX_MEMORY: usize = 1 << 20;

impl Default for ShareLog {
    fn default() -> Self {
        ShareLog {
            on: false,
            min_size: 10 * 1024,
            candidates: 5,
            // An hour: the default ttl of an offer, and about how long a
            // forward cache keeps a large object it was just sent.
            lifetime: Duration::from_secs(3600),
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// Which servers a requester's offers go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferTo {
    /// Only servers that marked a response `Cache-Share: log` before.
    Owners,
    /// Every server a miss goes direct to.
    All,
}

/// The requester side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareOffer {
    pub on: bool,
    pub to: OfferTo,
    /// Candidates of a list probed at once.
    pub probes: u32,
    /// How long a probe may take before its candidate counts as failed.
    pub probe_timeout: Duration,
}

impl Default for ShareOffer {
    fn default() -> Self {
        ShareOffer {
            on: false,
            to: OfferTo::Owners,
            probes: 3,
            probe_timeout: Duration::from_secs(2),
        }
    }
}

/// A named set of networks (`share_locality`): proxies in the same one
/// are near each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    pub name: String,
    pub networks: Vec<IpAclEntry>,
}

/// All of proxy sharing's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub log: Setting<ShareLog>,
    pub localities: Vec<Located<Locality>>,
    pub offer: Setting<ShareOffer>,
    /// Where other proxies reach this one (`share_offer_url`).
    pub offer_url: Setting<Option<String>>,
}

impl Default for Share {
    fn default() -> Self {
        Share {
            log: Setting::default_value(ShareLog::default()),
            localities: Vec::new(),
            offer: Setting::default_value(ShareOffer::default()),
            offer_url: Setting::default_value(None),
        }
    }
}

impl Share {
    /// The name of the first locality holding `ip`.
    pub fn locality_of(&self, ip: std::net::IpAddr) -> Option<&str> {
        self.localities
            .iter()
            .find(|l| l.value.networks.iter().any(|n| n.contains(ip)))
            .map(|l| l.value.name.as_str())
    }
}

/// `NAME=VALUE` options after the on/off word, each handed to `apply`.
fn options(
    ctx: &mut Ctx<'_, '_>,
    line: &Line,
    mut apply: impl FnMut(&str, &str) -> Result<(), String>,
) -> Option<bool> {
    let name = line.name();
    let args = line.args();
    let Some(first) = args.first() else {
        ctx.error(&line.location, format!("{name}: missing value"));
        return None;
    };
    let on = match parse_onoff(&first.text) {
        Ok(on) => on,
        Err(reason) => {
            ctx.error(&line.location, format!("{name}: {reason}"));
            return None;
        }
    };
    for option in args.get(1..).unwrap_or(&[]) {
        let result = match option.text.split_once('=') {
            Some((key, value)) => apply(key, value),
            None => Err(format!("\"{}\" is not NAME=VALUE", option.text)),
        };
        if let Err(reason) = result {
            ctx.error(&line.location, format!("{name}: {reason}"));
            return None;
        }
    }
    Some(on)
}

/// A time written as one word (`30s`, `2minutes`, `90`: seconds).
fn time_word(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let unit = (!unit.is_empty()).then_some(unit);
    let (time, _) = parse_time(number, unit, SECONDS)?;
    if time.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(time)
}

/// A log budget: one size word, at least 1 KB (a smaller log would hold
/// a few entries at most) and at most 1024 GB.
fn memory(value: &str) -> Result<usize, String> {
    const MIN: u64 = 1024;
    const MAX: u64 = 1 << 40;
    match parse_size_word(value)? {
        n if (MIN..=MAX).contains(&n) => usize::try_from(n).map_err(|e| e.to_string()),
        n => Err(format!("{n} bytes is not between 1 KB and 1024 GB")),
    }
}

/// A count from 1 to `max`.
fn count(value: &str, max: u64) -> Result<u32, String> {
    match parse_uint(value)? {
        n if (1..=max).contains(&n) => Ok(n as u32),
        n => Err(format!("{n} is not between 1 and {max}")),
    }
}

pub(crate) fn parse_share_log(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let mut log = ShareLog::default();
    let on = options(ctx, line, |key, value| {
        match key {
            "min_size" => log.min_size = parse_size_word(value)?,
            "candidates" => {
                let max = u64::from(cuttle_protocol::share::MAX_CANDIDATES);
                log.candidates = count(value, max).map_err(|e| format!("candidates: {e}"))?;
            }
            "lifetime" => log.lifetime = time_word(value).map_err(|e| format!("lifetime: {e}"))?,
            "max_memory" => {
                log.max_memory = memory(value).map_err(|e| format!("max_memory: {e}"))?
            }
            _ => return Err(format!("unknown option \"{key}\"")),
        }
        Ok(())
    });
    if let Some(on) = on {
        log.on = on;
        ctx.config.share.log = Setting::at(log, line.location.clone());
    }
}

pub(crate) fn parse_share_offer(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let mut offer = ShareOffer::default();
    let on = options(ctx, line, |key, value| {
        match key {
            "to" => {
                offer.to = match value {
                    "owners" => OfferTo::Owners,
                    "all" => OfferTo::All,
                    _ => return Err(format!("to: \"{value}\" is not owners or all")),
                }
            }
            "probes" => offer.probes = count(value, 16).map_err(|e| format!("probes: {e}"))?,
            "probe_timeout" => {
                offer.probe_timeout = time_word(value).map_err(|e| format!("probe_timeout: {e}"))?
            }
            _ => return Err(format!("unknown option \"{key}\"")),
        }
        Ok(())
    });
    if let Some(on) = on {
        offer.on = on;
        ctx.config.share.offer = Setting::at(offer, line.location.clone());
    }
}

pub(crate) fn parse_share_offer_url(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let name = line.name();
    match line.args() {
        [url] if cuttle_protocol::share::is_proxy_url(&url.text) => {
            ctx.config.share.offer_url = Setting::at(Some(url.text.clone()), line.location.clone());
        }
        [url] => ctx.error(
            &line.location,
            format!("{name}: \"{}\" is not an http:// URL", url.text),
        ),
        _ => ctx.error(&line.location, format!("{name}: expected one URL")),
    }
}

/// After the last line: `share_offer on` needs `share_offer_url` (other
/// proxies would not know where to fetch), else nothing is offered.
pub(crate) fn warn_offer_nowhere(ctx: &mut Ctx<'_, '_>) {
    let share = &ctx.config.share;
    let (Some(at), true, None) = (
        share.offer.location.clone(),
        share.offer.value.on,
        &share.offer_url.value,
    ) else {
        return;
    };
    let reason = "share_offer: on without share_offer_url, so nothing will be offered";
    ctx.warn(&at, reason.to_string());
}

/// `share_locality NAME CIDR...`: a second line with the same name adds
/// networks to it.
pub(crate) fn parse_share_locality(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let name = line.name();
    let args = line.args();
    let Some((locality, nets)) = args.split_first().filter(|(_, nets)| !nets.is_empty()) else {
        ctx.error(&line.location, format!("{name}: expected NAME CIDR..."));
        return;
    };
    let mut networks = Vec::new();
    for net in nets {
        match parse_ip_entry(&net.text) {
            Ok((IpAclEntry::Host(h), _)) => {
                let reason = format!("{name}: \"{h}\" is a host name, not a network");
                ctx.error(&line.location, reason);
                return;
            }
            Ok((entry, _)) => networks.push(entry),
            Err(reason) => {
                ctx.error(&line.location, format!("{name}: {reason}"));
                return;
            }
        }
    }
    let localities = &mut ctx.config.share.localities;
    match localities
        .iter_mut()
        .find(|l| l.value.name == locality.text)
    {
        Some(known) => known.value.networks.extend(networks),
        None => localities.push(Located {
            value: Locality {
                name: locality.text.clone(),
                networks,
            },
            location: line.location.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions, Severity};

    fn load(text: &str) -> (Share, Vec<String>) {
        let l = load_str(text, "squid.conf", &LoadOptions::default());
        let errors = l
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        (l.config.share, errors)
    }

    #[test]
    fn defaults() {
        let (share, errors) = load("");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(share, Share::default());
        assert!(!share.log.value.on && !share.offer.value.on);
        assert_eq!(share.log.value.min_size, 10 * 1024);
        assert_eq!(share.log.value.candidates, 5);
        assert_eq!(share.log.value.max_memory, 1 << 20);
        // Bytes by default, as min_size.
        let (share, errors) = load("share_log on max_memory=65536\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(share.log.value.max_memory, 65536);
    }

    #[test]
    fn directives_parse() {
        let (share, errors) = load(
            "share_log on min_size=64KB candidates=3 lifetime=10minutes max_memory=8MB\n\
             share_locality east 10.1.0.0/16 10.2.0.0/16\n\
             share_locality west 192.168.0.0/24\n\
             share_locality east 10.3.0.1\n\
             share_offer on to=all probes=2 probe_timeout=1.5\n\
             share_offer_url http://me.example:3128/\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let log = &share.log.value;
        assert!(log.on);
        assert_eq!(
            (log.min_size, log.candidates, log.lifetime),
            (64 * 1024, 3, Duration::from_secs(600))
        );
        assert_eq!(log.max_memory, 8 << 20);
        assert_eq!(share.localities.len(), 2);
        assert_eq!(share.locality_of("10.3.0.1".parse().unwrap()), Some("east"));
        assert_eq!(share.locality_of("10.2.9.9".parse().unwrap()), Some("east"));
        assert_eq!(
            share.locality_of("192.168.0.7".parse().unwrap()),
            Some("west")
        );
        assert_eq!(share.locality_of("10.4.0.1".parse().unwrap()), None);
        let offer = &share.offer.value;
        assert!(offer.on);
        assert_eq!(offer.to, OfferTo::All);
        assert_eq!(
            (offer.probes, offer.probe_timeout),
            (2, Duration::from_millis(1500))
        );
        assert_eq!(
            share.offer_url.value.as_deref(),
            Some("http://me.example:3128/")
        );
    }

    #[test]
    fn offering_without_a_url_is_warned_about() {
        let warnings = |text: &str| -> Vec<String> {
            load_str(text, "squid.conf", &LoadOptions::default())
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Warning)
                .map(|d| d.to_string())
                .collect()
        };
        assert_eq!(
            warnings("\nshare_offer on\n"),
            ["squid.conf:2: warning: share_offer: on without share_offer_url, so nothing will be offered"]
        );
        assert!(warnings("share_offer on\nshare_offer_url http://me:3128/\n").is_empty());
        assert!(warnings("share_offer off\n").is_empty());
    }

    #[test]
    fn bad_lines_are_errors() {
        for (text, want) in [
            ("share_log\n", "share_log: missing value"),
            ("share_log maybe\n", "share_log: \"maybe\" is not on or off"),
            (
                "share_log on size=1\n",
                "share_log: unknown option \"size\"",
            ),
            (
                "share_log on candidates=0\n",
                "share_log: candidates: 0 is not between 1 and 64",
            ),
            (
                "share_log on lifetime=0\n",
                "share_log: lifetime: must be more than 0",
            ),
            (
                "share_log on max_memory=512\n",
                "squid.conf:1: error: share_log: max_memory: 512 bytes is not between 1 KB and 1024 GB",
            ),
            (
                "\nshare_log on max_memory=lots\n",
                "squid.conf:2: error: share_log: max_memory: ",
            ),
            (
                "share_log on max_memory=2048GB\n",
                "share_log: max_memory: 2199023255552 bytes is not between 1 KB and 1024 GB",
            ),
            (
                "share_log on min_size\n",
                "share_log: \"min_size\" is not NAME=VALUE",
            ),
            (
                "share_offer on to=some\n",
                "share_offer: to: \"some\" is not owners or all",
            ),
            (
                "share_offer_url ftp://x/\n",
                "share_offer_url: \"ftp://x/\" is not an http:// URL",
            ),
            ("share_offer_url\n", "share_offer_url: expected one URL"),
            (
                "share_locality east\n",
                "share_locality: expected NAME CIDR...",
            ),
            (
                "share_locality east example.com\n",
                "share_locality: \"example.com\" is a host name, not a network",
            ),
        ] {
            let (_, errors) = load(text);
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{text:?}: {errors:?}"
            );
        }
    }
}
