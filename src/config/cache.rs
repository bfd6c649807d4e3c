//! Storage and freshness directives: `cache_dir` (rock, ufs family, cuttle's mmap, others kept with a warning), `refresh_pattern` (regex checked at load), and the replacement policies.

use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::directives::Ctx;
use super::lexer::Line;
use super::values::{parse_size_word, parse_uint};
use super::Located;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDirType {
    Rock,
    Ufs,
    Aufs,
    Diskd,
    /// cuttle's memory-mapped slot store (takes rock's options).
    Mmap,
    /// Anything else (Squid 2.7's `coss`, `null`, ...): kept, not used.
    Other(String),
}

impl CacheDirType {
    fn ufs_family(&self) -> bool {
        matches!(
            self,
            CacheDirType::Ufs | CacheDirType::Aufs | CacheDirType::Diskd
        )
    }

    fn slotted(&self) -> bool {
        matches!(self, CacheDirType::Rock | CacheDirType::Mmap)
    }
}

/// `cache_dir TYPE PATH SIZE-MB [L1 L2] [options]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir {
    pub store_type: CacheDirType,
    pub path: String,
    /// Capacity in megabytes.
    pub size_mb: u64,
    /// First- and second-level directory counts (ufs, aufs, diskd).
    pub l1: Option<u32>,
    pub l2: Option<u32>,
    /// `min-size=`, bytes.
    pub min_size: Option<u64>,
    /// `max-size=`, bytes.
    pub max_size: Option<u64>,
    /// `slot-size=`, bytes (rock, mmap).
    pub slot_size: Option<u64>,
    /// `swap-timeout=` (rock, mmap).
    pub swap_timeout: Option<Duration>,
    /// `max-swap-rate=` swaps per second (rock, mmap).
    pub max_swap_rate: Option<u64>,
    /// `no-store` (or the old `read-only`).
    pub no_store: bool,
    /// Other options in order (diskd's Q1/Q2, anything of an `Other` type).
    pub options: Vec<(String, Option<String>)>,
}

/// Squid's `cache_replacement_policy` / `memory_replacement_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplacementPolicy {
    Lru,
    HeapGdsf,
    HeapLfuda,
    HeapLru,
}

/// `refresh_pattern ... adaptive` without `=N`: hits within an object's
/// current poll interval that make it popular enough to be revalidated
/// ahead of its expiry (`caching::adaptive`).
pub const ADAPTIVE_POPULAR_HITS: u32 = 4;

/// `refresh_pattern [-i] REGEX MIN PERCENT MAX [options]`.
#[derive(Debug, Clone)]
pub struct RefreshPattern {
    /// The pattern as written.
    pub pattern: String,
    pub case_insensitive: bool,
    /// Compiled from `pattern` (with `case_insensitive`).
    pub regex: Regex,
    pub min: Duration,
    pub percent: u32,
    pub max: Duration,
    pub override_expire: bool,
    pub override_lastmod: bool,
    pub reload_into_ims: bool,
    pub ignore_reload: bool,
    pub ignore_no_store: bool,
    pub ignore_private: bool,
    pub refresh_ims: bool,
    pub store_stale: bool,
    /// `max-stale=N` (seconds); `None` = the global max_stale.
    pub max_stale: Option<Duration>,
    /// cuttle's `adaptive[=N]` (adaptive polling, `caching::adaptive`): the
    /// hits per interval that make an object popular (`adaptive` alone:
    /// `DEFAULT_POPULAR_HITS`); `None` = Squid's fixed heuristic.
    pub adaptive: Option<u32>,
}

impl PartialEq for RefreshPattern {
    fn eq(&self, other: &Self) -> bool {
        // The compiled regex follows from pattern and flag.
        self.pattern == other.pattern
            && self.case_insensitive == other.case_insensitive
            && self.min == other.min
            && self.percent == other.percent
            && self.max == other.max
            && self.override_expire == other.override_expire
            && self.override_lastmod == other.override_lastmod
            && self.reload_into_ims == other.reload_into_ims
            && self.ignore_reload == other.ignore_reload
            && self.ignore_no_store == other.ignore_no_store
            && self.ignore_private == other.ignore_private
            && self.refresh_ims == other.refresh_ims
            && self.store_stale == other.store_stale
            && self.max_stale == other.max_stale
            && self.adaptive == other.adaptive
    }
}

fn parse_u32(v: &str) -> Result<u32, String> {
    parse_uint(v).and_then(|n| u32::try_from(n).map_err(|_| format!("\"{v}\" is too large")))
}

/// Parse a `cache_dir` line.
pub(crate) fn parse_cache_dir(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let args = line.args();
    let (Some(type_t), Some(path_t)) = (args.first(), args.get(1)) else {
        ctx.error(
            loc,
            "cache_dir: expected TYPE DIRECTORY SIZE-MB [options]".into(),
        );
        return;
    };
    let store_type = match type_t.text.as_str() {
        "rock" => CacheDirType::Rock,
        "ufs" => CacheDirType::Ufs,
        "aufs" => CacheDirType::Aufs,
        "diskd" => CacheDirType::Diskd,
        "mmap" => CacheDirType::Mmap,
        other => CacheDirType::Other(other.to_string()),
    };
    let mut dir = CacheDir {
        store_type,
        path: path_t.text.clone(),
        size_mb: 0,
        l1: None,
        l2: None,
        min_size: None,
        max_size: None,
        slot_size: None,
        swap_timeout: None,
        max_swap_rate: None,
        no_store: false,
        options: Vec::new(),
    };
    let rest = args.get(2..).unwrap_or(&[]);

    if let CacheDirType::Other(name) = &dir.store_type {
        ctx.warn(
            loc,
            format!(
                "cache_dir: type \"{name}\" is not supported by Squid 5 or cuttle; this cache_dir is ignored"
            ),
        );
        let mut words = rest.iter().map(|t| t.text.as_str()).peekable();
        if let Some(size) = words.peek().and_then(|w| parse_uint(w).ok()) {
            dir.size_mb = size;
            words.next();
        }
        for w in words {
            let (k, v) = match w.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (w, None),
            };
            dir.options.push((k.to_string(), v.map(str::to_string)));
        }
        ctx.cache_dir_index
            .entry(dir.path.clone())
            .or_insert(ctx.config.cache_dirs.len());
        ctx.config.cache_dirs.push(Located::new(dir, loc.clone()));
        return;
    }

    let mut bad = false;
    let mut words = rest.iter().map(|t| t.text.as_str());
    match words.next().map(parse_uint) {
        None => {
            ctx.error(loc, "cache_dir: missing size in MB".into());
            return;
        }
        Some(Err(e)) => {
            ctx.error(loc, format!("cache_dir: size {e}"));
            bad = true;
        }
        Some(Ok(0)) if dir.store_type.ufs_family() => {
            ctx.error(loc, "cache_dir: size must be at least 1 MB".into());
            bad = true;
        }
        Some(Ok(n)) => dir.size_mb = n,
    }
    if dir.store_type.ufs_family() {
        for (what, slot) in [("L1", &mut dir.l1), ("L2", &mut dir.l2)] {
            match words.next().map(parse_u32) {
                Some(Ok(n)) if n > 0 => *slot = Some(n),
                Some(Ok(_)) => {
                    ctx.error(loc, format!("cache_dir: {what} must be at least 1"));
                    bad = true;
                }
                Some(Err(e)) => {
                    ctx.error(loc, format!("cache_dir: {what} {e}"));
                    bad = true;
                }
                None => {
                    ctx.error(
                        loc,
                        format!("cache_dir: {} needs L1 and L2 after the size", type_t.text),
                    );
                    return;
                }
            }
        }
    }
    for word in words {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        let slotted = dir.store_type.slotted();
        let mut fail = |ctx: &mut Ctx<'_, '_>, reason: String| {
            ctx.error(
                loc,
                format!("cache_dir: {key}={}: {reason}", value.unwrap_or("")),
            );
            bad = true;
        };
        match (key, value) {
            ("no-store", None) => dir.no_store = true,
            ("read-only", None) => {
                ctx.warn(
                    loc,
                    "cache_dir: read-only is the old name of no-store".into(),
                );
                dir.no_store = true;
            }
            ("min-size", Some(v)) => match parse_size_word(v) {
                Ok(n) => dir.min_size = Some(n),
                Err(e) => fail(ctx, e),
            },
            ("max-size", Some(v)) => match parse_size_word(v) {
                Ok(n) => dir.max_size = Some(n),
                Err(e) => fail(ctx, e),
            },
            ("slot-size", Some(v)) if slotted => match parse_size_word(v) {
                Ok(0) => fail(ctx, "must be positive".into()),
                Ok(n) => dir.slot_size = Some(n),
                Err(e) => fail(ctx, e),
            },
            ("swap-timeout", Some(v)) if slotted => match parse_uint(v) {
                Ok(ms) => dir.swap_timeout = Some(Duration::from_millis(ms)),
                Err(e) => fail(ctx, e),
            },
            ("max-swap-rate", Some(v)) if slotted => match parse_uint(v) {
                Ok(n) => dir.max_swap_rate = Some(n),
                Err(e) => fail(ctx, e),
            },
            ("Q1" | "Q2", Some(v)) if dir.store_type == CacheDirType::Diskd => {
                match parse_uint(v) {
                    Ok(_) => dir.options.push((key.to_string(), Some(v.to_string()))),
                    Err(e) => fail(ctx, e),
                }
            }
            _ => ctx.warn(
                loc,
                format!(
                    "cache_dir: unknown option \"{word}\" for type {} ignored",
                    type_t.text
                ),
            ),
        }
    }
    if let (Some(min), Some(max)) = (dir.min_size, dir.max_size) {
        if min > max {
            ctx.warn(
                loc,
                format!("cache_dir: min-size={min} is above max-size={max}; nothing will be stored here"),
            );
        }
    }
    let first = ctx
        .cache_dir_index
        .get(&dir.path)
        .and_then(|&i| ctx.config.cache_dirs.get(i))
        .map(|d| d.location.clone());
    if let Some(first) = first {
        ctx.error(
            loc,
            format!(
                "cache_dir: directory {} is already used at {first}",
                dir.path
            ),
        );
        return;
    }
    if !bad {
        if dir.store_type != CacheDirType::Mmap {
            // One warning per line: the admin should know Squid's files
            // there are not what cuttle uses.
            ctx.warn(
                loc,
                format!(
                    "cache_dir: type {} is kept in cuttle's own memory-mapped format in {}; \
                     Squid's cache files there are neither read nor removed; \
                     `cache_dir mmap` is the quiet spelling",
                    type_t.text, dir.path
                ),
            );
        }
        ctx.cache_dir_index
            .insert(dir.path.clone(), ctx.config.cache_dirs.len());
        ctx.config.cache_dirs.push(Located::new(dir, loc.clone()));
    }
}

/// refresh_pattern options Squid removed (warned about, then ignored).
const OBSOLETE_REFRESH_OPTIONS: &[&str] = &[
    "ignore-no-cache",
    "ignore-must-revalidate",
    "ignore-auth",
    "ignore-stale-while-revalidate",
    "stale-while-revalidate",
    "negative-ttl",
];

/// A regex error message on one line (the regex crate's are multi-line).
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// Compile a pattern with limits so a hostile one cannot take unbounded memory.
pub(crate) fn compile_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| one_line(&e))
}

/// Parse a `refresh_pattern` line.
pub(crate) fn parse_refresh_pattern(ctx: &mut Ctx<'_, '_>, line: &Line) {
    let loc = &line.location;
    let mut words = line.args().iter().map(|t| t.text.as_str());
    let mut case_insensitive = false;
    let mut pattern = words.next();
    if pattern == Some("-i") {
        case_insensitive = true;
        pattern = words.next();
    }
    let (Some(pattern), Some(min), Some(pct), Some(max)) =
        (pattern, words.next(), words.next(), words.next())
    else {
        ctx.error(
            loc,
            "refresh_pattern: expected [-i] REGEX MIN PERCENT MAX [options]".into(),
        );
        return;
    };
    let mut bad = false;
    let regex = match compile_regex(pattern, case_insensitive) {
        Ok(r) => Some(r),
        Err(reason) => {
            ctx.error(
                loc,
                format!("refresh_pattern: invalid regular expression \"{pattern}\": {reason}"),
            );
            bad = true;
            None
        }
    };
    let mut minutes = |ctx: &mut Ctx<'_, '_>, what: &str, v: &str| match parse_uint(v) {
        Ok(m) => Duration::from_secs(m.saturating_mul(60)),
        Err(e) => {
            ctx.error(loc, format!("refresh_pattern: {what} (minutes) {e}"));
            bad = true;
            Duration::ZERO
        }
    };
    let min = minutes(ctx, "min", min);
    let max = minutes(ctx, "max", max);
    let percent = match parse_u32(pct.strip_suffix('%').unwrap_or(pct)) {
        Ok(p) => p,
        Err(e) => {
            ctx.error(loc, format!("refresh_pattern: percent {e}"));
            bad = true;
            0
        }
    };
    let mut flags = [false; 8];
    let mut max_stale = None;
    let mut adaptive = None;
    for word in words {
        let index = match word {
            "override-expire" => Some(0),
            "override-lastmod" => Some(1),
            "reload-into-ims" => Some(2),
            "ignore-reload" => Some(3),
            "ignore-no-store" => Some(4),
            "ignore-private" => Some(5),
            "refresh-ims" => Some(6),
            "store-stale" => Some(7),
            _ => None,
        };
        if let Some(slot) = index.and_then(|i| flags.get_mut(i)) {
            *slot = true;
            continue;
        }
        let key = word.split_once('=').map(|(k, _)| k).unwrap_or(word);
        if word == "adaptive" {
            adaptive = Some(ADAPTIVE_POPULAR_HITS);
        } else if let Some(v) = word.strip_prefix("adaptive=") {
            match parse_u32(v) {
                Ok(n) => adaptive = Some(n),
                Err(e) => {
                    ctx.error(loc, format!("refresh_pattern: adaptive={v}: {e}"));
                    bad = true;
                }
            }
        } else if let Some(v) = word.strip_prefix("max-stale=") {
            match parse_uint(v) {
                Ok(s) => max_stale = Some(Duration::from_secs(s)),
                Err(e) => {
                    ctx.error(loc, format!("refresh_pattern: max-stale={v}: {e}"));
                    bad = true;
                }
            }
        } else if OBSOLETE_REFRESH_OPTIONS.contains(&key) {
            ctx.warn(
                loc,
                format!("refresh_pattern: option {word} is obsolete (not in Squid 5); ignored (delete it from the line)"),
            );
        } else {
            ctx.warn(
                loc,
                format!("refresh_pattern: unknown option \"{word}\" ignored"),
            );
        }
    }
    let Some(regex) = regex else {
        return;
    };
    if bad {
        return;
    }
    let [override_expire, override_lastmod, reload_into_ims, ignore_reload, ignore_no_store, ignore_private, refresh_ims, store_stale] =
        flags;
    ctx.config.refresh_patterns.push(Located::new(
        RefreshPattern {
            pattern: pattern.to_string(),
            case_insensitive,
            regex,
            min,
            percent,
            max,
            override_expire,
            override_lastmod,
            reload_into_ims,
            ignore_reload,
            ignore_no_store,
            ignore_private,
            refresh_ims,
            store_stale,
            max_stale,
            adaptive,
        },
        loc.clone(),
    ));
}

/// `lru`, `heap GDSF`, `heap LFUDA` or `heap LRU`.
pub(crate) fn parse_policy(words: &[&str]) -> Result<ReplacementPolicy, String> {
    match words {
        ["lru"] => Ok(ReplacementPolicy::Lru),
        ["heap"] | ["heap", "LRU"] => Ok(ReplacementPolicy::HeapLru),
        ["heap", "GDSF"] => Ok(ReplacementPolicy::HeapGdsf),
        ["heap", "LFUDA"] => Ok(ReplacementPolicy::HeapLfuda),
        _ => Err(format!(
            "\"{}\" is not lru, heap GDSF, heap LFUDA or heap LRU",
            words.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, LoadOptions, Loaded};

    fn load(text: &str) -> Loaded {
        load_str(text, "t.conf", &LoadOptions::default())
    }

    #[test]
    fn rock_with_options_across_a_continuation() {
        let l = load("cache_dir rock /var/spool/squid/rock 4096 \\\n    slot-size=16384 max-size=1048576 swap-timeout=300 max-swap-rate=200\n");
        // The one warning: Squid's rock format is not what cuttle keeps there.
        let w: Vec<_> = l.warnings().collect();
        assert!(!l.has_errors() && w.len() == 1, "{:?}", l.diagnostics);
        assert!(w[0]
            .message
            .contains("type rock is kept in cuttle's own memory-mapped format"));
        let d = &l.config.cache_dirs[0];
        assert_eq!(d.store_type, CacheDirType::Rock);
        assert_eq!(d.path, "/var/spool/squid/rock");
        assert_eq!(d.size_mb, 4096);
        assert_eq!(d.slot_size, Some(16384));
        assert_eq!(d.max_size, Some(1_048_576));
        assert_eq!(d.swap_timeout, Some(Duration::from_millis(300)));
        assert_eq!(d.max_swap_rate, Some(200));
        assert_eq!((d.l1, d.l2), (None, None));
        assert_eq!(d.location.line, 1);
    }

    #[test]
    fn ufs_family_takes_l1_l2() {
        let l = load("cache_dir aufs /a 8192 16 256 min-size=1048577 no-store\ncache_dir diskd /d 100 16 256 Q1=64 Q2=72\n");
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        let a = &l.config.cache_dirs[0];
        assert_eq!(
            (a.store_type.clone(), a.size_mb, a.l1, a.l2),
            (CacheDirType::Aufs, 8192, Some(16), Some(256))
        );
        assert_eq!(a.min_size, Some(1_048_577));
        assert!(a.no_store);
        let d = &l.config.cache_dirs[1];
        assert_eq!(
            d.options,
            [
                ("Q1".to_string(), Some("64".to_string())),
                ("Q2".to_string(), Some("72".to_string()))
            ]
        );
    }

    #[test]
    fn mmap_is_cuttles_own_type_and_draws_no_warning() {
        let l = load("cache_dir mmap /var/cache/cuttle 100 slot-size=4096 max-size=65536\n");
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let d = &l.config.cache_dirs[0];
        assert_eq!(d.store_type, CacheDirType::Mmap);
        assert_eq!((d.slot_size, d.max_size), (Some(4096), Some(65536)));
    }

    #[test]
    fn cache_dir_errors() {
        let l = load("cache_dir ufs /u 100\ncache_dir ufs /v 0 16 256\ncache_dir rock /r x\ncache_dir rock /s 10 slot-size=0\ncache_dir rock /t 10\ncache_dir rock /t 10\n");
        let lines: Vec<usize> = l.errors().map(|d| d.location.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 6]);
        assert_eq!(l.config.cache_dirs.len(), 1);
    }

    #[test]
    fn unknown_types_and_options_warn() {
        let l = load("cache_dir coss /dev/vdb 128000 max-size=1048576 block-size=8192\ncache_dir rock /r 10 sparkle=1\n");
        assert!(!l.has_errors());
        let w: Vec<_> = l.warnings().collect();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].message.contains("type \"coss\" is not supported"));
        assert!(w[1].message.contains("sparkle"), "{w:?}");
        let coss = &l.config.cache_dirs[0];
        assert_eq!(coss.store_type, CacheDirType::Other("coss".into()));
        assert_eq!(coss.size_mb, 128_000);
        assert_eq!(coss.options.len(), 2);
    }

    #[test]
    fn refresh_pattern_adaptive() {
        let l = load("refresh_pattern . 0 20% 4320 adaptive\nrefresh_pattern \\.html$ 1 10% 60 adaptive=0\nrefresh_pattern x 0 20% 1 adaptive=many\n");
        let errors: Vec<_> = l
            .errors()
            .map(|d| (d.location.line, d.message.clone()))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 3);
        assert!(errors[0].1.contains("adaptive=many"), "{errors:?}");
        let p = &l.config.refresh_patterns;
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].adaptive, Some(ADAPTIVE_POPULAR_HITS));
        assert_eq!(p[1].adaptive, Some(0));
    }

    #[test]
    fn refresh_pattern_fields() {
        let l = load("refresh_pattern -i \\.(gif|png)$ 10080 90% 43200 override-expire reload-into-ims max-stale=60\nrefresh_pattern ^ftp: 1440 20 10080\n");
        assert!(
            !l.has_errors() && l.warnings().count() == 0,
            "{:?}",
            l.diagnostics
        );
        let r = &l.config.refresh_patterns[0];
        assert_eq!(r.pattern, "\\.(gif|png)$");
        assert!(r.case_insensitive);
        assert!(r.regex.is_match("http://x/A.PNG"));
        assert_eq!(r.min, Duration::from_secs(10080 * 60));
        assert_eq!(r.percent, 90);
        assert_eq!(r.max, Duration::from_secs(43200 * 60));
        assert!(r.override_expire && r.reload_into_ims && !r.ignore_reload);
        assert_eq!(r.max_stale, Some(Duration::from_secs(60)));
        assert_eq!(r.adaptive, None);
        let f = &l.config.refresh_patterns[1];
        assert!(!f.case_insensitive && !f.regex.is_match("FTP://x") && f.regex.is_match("ftp://x"));
        assert_eq!(f.percent, 20);
    }

    #[test]
    fn refresh_pattern_bad_regex_is_an_error_with_location() {
        let l = load("\nrefresh_pattern ([a-z 0 20% 60\n");
        let e: Vec<_> = l.errors().collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].location.line, 2);
        assert!(
            e[0].message
                .starts_with("refresh_pattern: invalid regular expression \"([a-z\""),
            "{}",
            e[0]
        );
        assert!(!e[0].message.contains('\n'));
        assert!(l.config.refresh_patterns.is_empty());
    }

    #[test]
    fn refresh_pattern_other_errors_and_warnings() {
        let l = load("refresh_pattern . x 20% 10\nrefresh_pattern . 0 -5% 10\nrefresh_pattern . 0 20%\nrefresh_pattern . 0 20% 10 stale-while-revalidate=600 ignore-no-cache sparkle\n");
        let e: Vec<usize> = l.errors().map(|d| d.location.line).collect();
        assert_eq!(e, [1, 2, 3]);
        let w: Vec<_> = l.warnings().map(|d| d.message.clone()).collect();
        assert_eq!(w.len(), 3);
        assert!(w[0].contains("stale-while-revalidate=600 is obsolete"));
        assert!(w[2].contains("unknown option \"sparkle\""));
        assert_eq!(l.config.refresh_patterns.len(), 1);
    }

    #[test]
    fn policies() {
        assert_eq!(parse_policy(&["lru"]).unwrap(), ReplacementPolicy::Lru);
        assert_eq!(
            parse_policy(&["heap", "LFUDA"]).unwrap(),
            ReplacementPolicy::HeapLfuda
        );
        assert_eq!(
            parse_policy(&["heap", "GDSF"]).unwrap(),
            ReplacementPolicy::HeapGdsf
        );
        assert!(parse_policy(&["heap", "FIFO"]).is_err());
        assert!(parse_policy(&[]).is_err());
    }
}
