//! `peer_store_threshold N [window=TIME] [scope=hits|peers]`: how often
//! this cache must see a URL before it stores the copy a peer sends (the
//! forwarding threshold of issue 19), and `htcp_monitor_update_hits N
//! [window=TIME]`: how often an object must have been used before a change
//! is pushed to MON subscribers as an update rather than an invalidation
//! (issue 22). Neither is a Squid directive.

use std::time::Duration;

use super::directives::Ctx;
use super::lexer::Line;
use super::values::{parse_time, parse_uint, SECONDS};
use super::Setting;

/// The window when none is written: an hour, the default period of the
/// served Cache Digest too, so both views of the mesh age alike.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// The largest threshold: the reference counter saturates just above it.
pub const MAX_THRESHOLD: u32 = 65_534;

/// Which replies from peers the threshold holds back from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThresholdScope {
    /// `scope=hits` (the default): copies a peer said it held
    /// (SIBLING_HIT, PARENT_HIT, CD_SIBLING_HIT, CD_PARENT_HIT).
    #[default]
    PeerHits,
    /// `scope=peers`: whatever came through a `cache_peer`, a parent's
    /// answer to a miss included (the seed's rule: forward while the
    /// count is low, whatever the remote cache holds).
    Peers,
}

/// A peer's reply (within `scope`) is kept (stored) only once this cache
/// has seen its URL more than `count` times within `window`; before that
/// it is delivered and not stored, as from a `proxy-only` peer. `count` 0
/// stores every peer reply (Squid's behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStoreThreshold {
    pub count: u32,
    pub window: Duration,
    pub scope: ThresholdScope,
}

impl Default for PeerStoreThreshold {
    fn default() -> Self {
        PeerStoreThreshold {
            count: 0,
            window: DEFAULT_WINDOW,
            scope: ThresholdScope::PeerHits,
        }
    }
}

/// A count directive's first word, `N` from 0 to [`MAX_THRESHOLD`]; `None`
/// (with the error said at the line) when it is missing or not one.
fn leading_count(ctx: &mut Ctx<'_, '_>, line: &Line) -> Option<u32> {
    let name = line.name();
    let Some(first) = line.args().first() else {
        ctx.error(&line.location, format!("{name}: missing value"));
        return None;
    };
    match parse_uint(&first.text) {
        Ok(n) if n <= u64::from(MAX_THRESHOLD) => Some(n as u32),
        Ok(n) => {
            ctx.error(
                &line.location,
                format!("{name}: {n} is more than {MAX_THRESHOLD}"),
            );
            None
        }
        Err(reason) => {
            ctx.error(&line.location, format!("{name}: {reason}"));
            None
        }
    }
}

/// The directive's line: `N` (0 to [`MAX_THRESHOLD`]), an optional
/// `window=TIME` (a number with its unit attached, seconds by default;
/// more than 0) and an optional `scope=hits|peers`.
pub(crate) fn parse_peer_store_threshold(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let name = line.name();
    let args = line.args();
    let Some(count) = leading_count(ctx, line) else {
        return;
    };
    let mut window = DEFAULT_WINDOW;
    let mut scope = ThresholdScope::PeerHits;
    for option in args.get(1..).unwrap_or(&[]) {
        if let Some(value) = option.text.strip_prefix("scope=") {
            scope = match value {
                "hits" => ThresholdScope::PeerHits,
                "peers" => ThresholdScope::Peers,
                other => {
                    ctx.error(
                        &line.location,
                        format!("{name}: scope \"{other}\" is not hits or peers"),
                    );
                    return;
                }
            };
            continue;
        }
        let Some(value) = option.text.strip_prefix("window=") else {
            ctx.error(
                &line.location,
                format!(
                    "{name}: unknown option \"{}\" (only window=TIME and scope=hits|peers)",
                    option.text
                ),
            );
            return;
        };
        match parse_window(value) {
            Ok(w) => window = w,
            Err(reason) => {
                ctx.error(&line.location, format!("{name}: {reason}"));
                return;
            }
        }
    }
    ctx.config.peer_store_threshold = Setting::at(
        PeerStoreThreshold {
            count,
            window,
            scope,
        },
        line.location.clone(),
    );
}

/// A `window=TIME` option's value: a number with its unit attached
/// (seconds by default), more than 0.
fn parse_window(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let unit = (!unit.is_empty()).then_some(unit);
    match parse_time(number, unit, SECONDS) {
        Ok((w, _)) if !w.is_zero() => Ok(w),
        Ok(_) => Err("window must be more than 0".to_string()),
        Err(reason) => Err(format!("window: {reason}")),
    }
}

/// `htcp_monitor_update_hits N [window=TIME]` as written: a change to an
/// object used at least `hits` times within the window is pushed to MON
/// subscribers as an update, others as an invalidation; 0 pushes
/// invalidations only. Without the line (or without `window=`) the
/// defaults of `caching::push` apply (config cannot name them: it is
/// the lowest layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorUpdateHits {
    pub hits: u32,
    pub window: Option<Duration>,
}

pub(crate) fn parse_htcp_monitor_update_hits(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let name = line.name();
    let args = line.args();
    let Some(hits) = leading_count(ctx, line) else {
        return;
    };
    let mut window = None;
    for option in args.get(1..).unwrap_or(&[]) {
        let Some(value) = option.text.strip_prefix("window=") else {
            ctx.error(
                &line.location,
                format!(
                    "{name}: unknown option \"{}\" (only window=TIME)",
                    option.text
                ),
            );
            return;
        };
        match parse_window(value) {
            Ok(w) => window = Some(w),
            Err(reason) => {
                ctx.error(&line.location, format!("{name}: {reason}"));
                return;
            }
        }
    }
    ctx.config.htcp_monitor_update_hits = Setting::at(
        Some(MonitorUpdateHits { hits, window }),
        line.location.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions, Severity};

    fn errors(text: &str) -> Vec<String> {
        load_str(text, "squid.conf", &LoadOptions::default())
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn threshold_and_window_are_read() {
        let l = load_str(
            "peer_store_threshold 3 window=10minutes\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(
            l.config.peer_store_threshold.value,
            PeerStoreThreshold {
                count: 3,
                window: Duration::from_secs(600),
                scope: ThresholdScope::PeerHits,
            }
        );
        let l = load_str(
            "peer_store_threshold 1 scope=peers window=2hours\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(
            l.config.peer_store_threshold.value,
            PeerStoreThreshold {
                count: 1,
                window: Duration::from_secs(7200),
                scope: ThresholdScope::Peers,
            }
        );
        let l = load_str(
            "peer_store_threshold 2\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(l.config.peer_store_threshold.value.count, 2);
        assert_eq!(l.config.peer_store_threshold.value.window, DEFAULT_WINDOW);
        let l = load_str(
            "peer_store_threshold 1 window=90\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        assert_eq!(
            l.config.peer_store_threshold.value.window,
            Duration::from_secs(90)
        );
        // Not set: 0, every peer hit stored as Squid does.
        let d = crate::config::Config::default();
        assert_eq!(d.peer_store_threshold.value, PeerStoreThreshold::default());
        assert_eq!(d.peer_store_threshold.value.count, 0);
    }

    #[test]
    fn bad_values_are_errors_at_their_line() {
        assert_eq!(
            errors("\npeer_store_threshold\n"),
            ["squid.conf:2: error: peer_store_threshold: missing value"]
        );
        assert_eq!(
            errors("peer_store_threshold -1\n"),
            ["squid.conf:1: error: peer_store_threshold: \"-1\" is not a non-negative integer"]
        );
        assert_eq!(
            errors("peer_store_threshold 70000\n"),
            ["squid.conf:1: error: peer_store_threshold: 70000 is more than 65534"]
        );
        assert_eq!(
            errors("\n\npeer_store_threshold 2 window=0\n"),
            ["squid.conf:3: error: peer_store_threshold: window must be more than 0"]
        );
        assert_eq!(
            errors("peer_store_threshold 2 window=5parsecs\n"),
            ["squid.conf:1: error: peer_store_threshold: window: \"parsecs\" is not a time unit (seconds, minutes, hours, days, ...)"]
        );
        assert_eq!(
            errors("peer_store_threshold 2 ttl=5\n"),
            ["squid.conf:1: error: peer_store_threshold: unknown option \"ttl=5\" (only window=TIME and scope=hits|peers)"]
        );
        assert_eq!(
            errors("peer_store_threshold 2 scope=all\n"),
            ["squid.conf:1: error: peer_store_threshold: scope \"all\" is not hits or peers"]
        );
    }

    #[test]
    fn htcp_monitor_update_hits_parses_with_file_line_errors() {
        let l = load_str(
            "htcp_monitor_update_hits 3 window=10minutes\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        assert_eq!(
            l.config.htcp_monitor_update_hits.value,
            Some(MonitorUpdateHits {
                hits: 3,
                window: Some(Duration::from_secs(600))
            })
        );
        let l = load_str(
            "htcp_monitor_update_hits 0\n",
            "squid.conf",
            &LoadOptions::default(),
        );
        assert_eq!(
            l.config.htcp_monitor_update_hits.value,
            Some(MonitorUpdateHits {
                hits: 0,
                window: None
            })
        );
        let d = load_str("", "squid.conf", &LoadOptions::default());
        assert_eq!(d.config.htcp_monitor_update_hits.value, None);
        assert_eq!(
            errors("\nhtcp_monitor_update_hits\n"),
            ["squid.conf:2: error: htcp_monitor_update_hits: missing value"]
        );
        assert_eq!(
            errors("htcp_monitor_update_hits many\n"),
            ["squid.conf:1: error: htcp_monitor_update_hits: \"many\" is not a non-negative integer"]
        );
        assert_eq!(
            errors("\n\nhtcp_monitor_update_hits 2 window=0\n"),
            ["squid.conf:3: error: htcp_monitor_update_hits: window must be more than 0"]
        );
        assert_eq!(
            errors("htcp_monitor_update_hits 2 scope=hits\n"),
            ["squid.conf:1: error: htcp_monitor_update_hits: unknown option \"scope=hits\" (only window=TIME)"]
        );
    }
}
