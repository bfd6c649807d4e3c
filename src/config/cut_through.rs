//! `cut_through on|off [min_depth=N] [depth=N] [background|foreground]`
//! (issue 20, after LSAM's cut-through): a miss that would go to a parent
//! is sent up the hierarchy with only-if-cached and to the origin at once.
//! Not a Squid directive, so Squid would ignore the line.

use std::time::Duration;

use super::directives::Ctx;
use super::lexer::Line;
use super::values::{parse_onoff, parse_uint};
use super::Setting;

/// The largest depth written (a hierarchy of more levels is no hierarchy).
pub const MAX_DEPTH: u32 = 255;

/// The hierarchy's head start when its RTT is not known yet (no ICP
/// reply from the parent): about a loaded regional round trip.
pub const UNKNOWN_RTT_HEAD_START: Duration = Duration::from_millis(100);
/// The longest head start: beyond it the origin request would wait more
/// than most hierarchy answers take.
pub const MAX_HEAD_START: Duration = Duration::from_secs(1);
/// Time for the parent to look in its cache, on top of the round trip.
const PARENT_LOOKUP: Duration = Duration::from_millis(10);

/// How the origin request of a cut-through miss competes with the
/// hierarchy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CutThroughMode {
    /// After a head start for the hierarchy, on a low-priority (DSCP CS1)
    /// connection: LSAM's recommended mode.
    #[default]
    Background,
    /// Both at once, at normal priority.
    Foreground,
}

/// The `cut_through` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutThrough {
    pub enabled: bool,
    /// Misses race only at a node whose depth is at least this.
    pub min_depth: u32,
    /// This node's depth as written (`depth=N`): the cache levels above
    /// it before the origin. `None`: see [`CutThrough::node_depth`].
    pub depth: Option<u32>,
    pub mode: CutThroughMode,
    /// `exit=PEER`: the fast request goes to this cache_peer (index in
    /// `cache_peers`), an exit cache that fetches from origins itself and
    /// keeps what it fetched, instead of to the origin.
    pub exit: Option<usize>,
}

impl Default for CutThrough {
    fn default() -> Self {
        CutThrough {
            enabled: false,
            min_depth: 1,
            depth: None,
            mode: CutThroughMode::Background,
            exit: None,
        }
    }
}

impl CutThrough {
    /// This node's depth: the written `depth=N` first; else one that the
    /// hierarchy told it (`discovered`: 1 + its parent's, once mesh
    /// discovery reports one); else 1 when it has a parent (the one level
    /// it can see) and 0 when it has none.
    pub fn node_depth(&self, has_parent: bool, discovered: Option<u32>) -> u32 {
        self.depth.or(discovered).unwrap_or(u32::from(has_parent))
    }

    /// How long the origin request waits for the hierarchy's answer: none
    /// in foreground; in background two of the parent's measured round
    /// trips (the request, and its hierarchy's own lookups) plus its
    /// lookup time, [`UNKNOWN_RTT_HEAD_START`] before any was measured, at
    /// most [`MAX_HEAD_START`]. A 504 from the hierarchy ends it sooner.
    pub fn head_start(&self, parent_rtt_ms: u64) -> Duration {
        match self.mode {
            CutThroughMode::Foreground => Duration::ZERO,
            CutThroughMode::Background if parent_rtt_ms == 0 => UNKNOWN_RTT_HEAD_START,
            CutThroughMode::Background => (Duration::from_millis(parent_rtt_ms.saturating_mul(2))
                + PARENT_LOOKUP)
                .min(MAX_HEAD_START),
        }
    }

    /// Whether a miss at a node of `depth` races the origin.
    pub fn applies_at(&self, depth: u32) -> bool {
        self.enabled && depth >= self.min_depth && depth > 0
    }
}

/// A `name=N` option's number, 0 to [`MAX_DEPTH`].
fn depth_value(name: &str, value: &str) -> Result<u32, String> {
    match parse_uint(value) {
        Ok(n) if n <= u64::from(MAX_DEPTH) => Ok(n as u32),
        Ok(n) => Err(format!("{name}={n} is more than {MAX_DEPTH}")),
        Err(reason) => Err(format!("{name}: {reason}")),
    }
}

/// The directive's line: `on` or `off`, then options in any order.
pub(crate) fn parse_cut_through(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let name = line.name();
    let args = line.args();
    let Some(first) = args.first() else {
        ctx.error(&line.location, format!("{name}: missing value (on or off)"));
        return;
    };
    let mut value = CutThrough::default();
    match parse_onoff(&first.text) {
        Ok(on) => value.enabled = on,
        Err(reason) => {
            ctx.error(&line.location, format!("{name}: {reason}"));
            return;
        }
    }
    for option in args.get(1..).unwrap_or(&[]) {
        let text = option.text.as_str();
        let parsed = match text.split_once('=') {
            Some(("min_depth", n)) => depth_value("min_depth", n).map(|d| value.min_depth = d),
            Some(("depth", n)) => depth_value("depth", n).map(|d| value.depth = Some(d)),
            Some(("exit", peer)) => match ctx.require_peer(peer, &line.location, name) {
                Some(index) => {
                    value.exit = Some(index);
                    Ok(())
                }
                // require_peer said why.
                None => return,
            },
            None if text.eq_ignore_ascii_case("background") => {
                value.mode = CutThroughMode::Background;
                Ok(())
            }
            None if text.eq_ignore_ascii_case("foreground") => {
                value.mode = CutThroughMode::Foreground;
                Ok(())
            }
            _ => Err(format!(
                "unknown option \"{text}\" (min_depth=N, depth=N, exit=PEER, background or foreground)"
            )),
        };
        if let Err(reason) = parsed {
            ctx.error(&line.location, format!("{name}: {reason}"));
            return;
        }
    }
    ctx.config.cut_through = Setting::at(value, line.location.clone());
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

    fn read(text: &str) -> CutThrough {
        let l = load_str(text, "squid.conf", &LoadOptions::default());
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        l.config.cut_through.value
    }

    #[test]
    fn the_line_and_its_options_are_read() {
        assert_eq!(
            read("cut_through on min_depth=2 depth=3 foreground\n"),
            CutThrough {
                enabled: true,
                min_depth: 2,
                depth: Some(3),
                mode: CutThroughMode::Foreground,
                exit: None,
            }
        );
        let exit = read(
            "cache_peer 10.0.0.8 parent 3128 0 name=mid\n\
             cache_peer 10.0.0.9 parent 3128 0 name=Top\n\
             cut_through on exit=top\n",
        );
        assert_eq!(exit.exit, Some(1));
        let plain = read("cut_through on\n");
        assert!(plain.enabled);
        assert_eq!(plain.mode, CutThroughMode::Background);
        assert_eq!((plain.min_depth, plain.depth), (1, None));
        assert!(!read("cut_through off background\n").enabled);
        // Not set: off.
        let d = crate::config::Config::default();
        assert_eq!(d.cut_through.value, CutThrough::default());
        assert!(!d.cut_through.value.enabled);
    }

    #[test]
    fn depth_is_the_written_one_then_the_told_one_then_one_per_parent() {
        let c = read("cut_through on min_depth=2\n");
        assert_eq!(c.node_depth(true, None), 1);
        assert_eq!(c.node_depth(false, None), 0);
        assert_eq!(c.node_depth(true, Some(3)), 3);
        assert!(!c.applies_at(c.node_depth(true, None)));
        assert!(c.applies_at(c.node_depth(true, Some(2))));
        let written = read("cut_through on min_depth=2 depth=2\n");
        assert_eq!(written.node_depth(true, Some(5)), 2);
        assert!(written.applies_at(2));
        // min_depth=0 still needs a level above to race against.
        assert!(!read("cut_through on min_depth=0\n").applies_at(0));
        assert!(!read("cut_through off depth=4\n").applies_at(4));
    }

    #[test]
    fn the_head_start_follows_the_parents_rtt_in_background_only() {
        let background = read("cut_through on\n");
        assert_eq!(background.head_start(0), UNKNOWN_RTT_HEAD_START);
        assert_eq!(background.head_start(20), Duration::from_millis(50));
        assert_eq!(background.head_start(5_000), MAX_HEAD_START);
        let foreground = read("cut_through on foreground\n");
        assert_eq!(foreground.head_start(20), Duration::ZERO);
        assert_eq!(foreground.head_start(0), Duration::ZERO);
    }

    #[test]
    fn bad_values_are_errors_at_their_line() {
        assert_eq!(
            errors("\ncut_through\n"),
            ["squid.conf:2: error: cut_through: missing value (on or off)"]
        );
        assert_eq!(
            errors("cut_through maybe\n"),
            ["squid.conf:1: error: cut_through: \"maybe\" is not on or off"]
        );
        assert_eq!(
            errors("\n\ncut_through on min_depth=-1\n"),
            ["squid.conf:3: error: cut_through: min_depth: \"-1\" is not a non-negative integer"]
        );
        assert_eq!(
            errors("cut_through on depth=300\n"),
            ["squid.conf:1: error: cut_through: depth=300 is more than 255"]
        );
        assert_eq!(
            errors("cut_through on sideways\n"),
            ["squid.conf:1: error: cut_through: unknown option \"sideways\" (min_depth=N, depth=N, exit=PEER, background or foreground)"]
        );
        assert_eq!(
            errors("cut_through on exit=top\ncache_peer 10.0.0.9 parent 3128 0 name=top\n"),
            ["squid.conf:1: error: cut_through: cache_peer \"top\" is used before it is defined (defined later, at squid.conf:2); Squid requires the definition first"]
        );
    }
}
