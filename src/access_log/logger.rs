//! The access-log writer: `Logger` turns squid.conf's `access_log` lines into destinations, formats entries on the caller's task and hands them to one writer thread over a bounded queue, so logging never blocks the runtime.
//!
//! Lines wait in a `BufWriter` per file and are flushed at least every
//! `flush_interval` (100 ms), on [`Logger::flush`], and when the last clone
//! of the logger is dropped. A full queue drops the line and counts it
//! ([`LogStats::dropped`]) instead of waiting. The writer thread and its
//! destinations live in `logger/writer.rs`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{AccessLog, AclRef, Config, Located, Location, LogDestination};

use super::entry::{write_native, Entry, FormatOptions};

mod writer;

pub use writer::rotate_file_names;
use writer::{Dest, Target, Writer};

/// Squid's compiled-in default, used when squid.conf has no `access_log`
/// line: `access_log daemon:/var/log/squid/access.log squid`.
pub const SQUID_DEFAULT_ACCESS_LOG: &str = "/var/log/squid/access.log";

/// At most this many distinct log files (one bit each in a queued line).
const MAX_FILES: usize = 64;

/// Tuning for the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggerOptions {
    /// Lines that may wait for the writer thread; beyond this they are
    /// dropped and counted.
    pub queue_capacity: usize,
    /// Longest time a written line stays in a buffer.
    pub flush_interval: Duration,
}

impl Default for LoggerOptions {
    fn default() -> Self {
        LoggerOptions {
            queue_capacity: 16 * 1024,
            flush_interval: Duration::from_millis(100),
        }
    }
}

/// A log file that cannot be opened (or a destination cuttle cannot use).
#[derive(Debug)]
pub struct LogError {
    /// The `access_log` line, when the destination came from one.
    pub location: Option<Location>,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.location {
            write!(f, "{at}: ")?;
        }
        write!(
            f,
            "access_log: cannot open {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for LogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Counters since the logger was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Lines handed to the writer (one per destination file).
    pub queued: u64,
    /// Lines written into a file's buffer.
    pub written: u64,
    /// Lines dropped because the queue was full (or the writer is gone).
    pub dropped: u64,
    /// Failed writes or flushes (the lines involved are lost).
    pub write_errors: u64,
    /// Files that could not be reopened (they keep the old handle).
    pub reopen_errors: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    reopen_errors: AtomicU64,
}

/// One `access_log` line, as the logger applies it.
#[derive(Debug, Clone)]
struct Rule {
    /// Bit of the destination file; `None` for `access_log none`.
    file: Option<usize>,
    acls: Vec<AclRef>,
}

enum Msg {
    /// `count` formatted lines (each with its newline) for the files in
    /// the bit mask.
    Lines {
        files: u64,
        text: String,
        count: u64,
    },
    /// Flush everything, then answer.
    Flush(SyncSender<()>),
    /// Look at the reopen flag.
    Wake,
}

/// Lines formatted by one thread that reach the writer together
/// ([`Logger::log_batched`]). Its owner sends it when it is
/// [`full`](LineBatch::is_full) or [`older`](LineBatch::age) than it wants a
/// line to wait, and before it stops: lines still in a batch that is dropped
/// are lost.
#[derive(Debug, Default)]
pub struct LineBatch {
    files: u64,
    text: String,
    count: u64,
    since: Option<Instant>,
}

impl LineBatch {
    /// Bytes after which a batch is sent before the next line is added.
    const FULL: usize = 16 * 1024;

    pub fn new() -> LineBatch {
        LineBatch {
            text: String::with_capacity(LineBatch::FULL + 512),
            ..LineBatch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.text.len() >= LineBatch::FULL
    }

    /// How long its oldest line has waited; zero when empty.
    pub fn age(&self, now: Instant) -> Duration {
        self.since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

/// The access log: cheap to clone, shareable between tasks and threads.
///
/// ```no_run
/// # use cuttle::access_log::{Entry, Logger};
/// # fn demo(config: &cuttle::config::Config, entry: &Entry) -> Result<(), cuttle::access_log::LogError> {
/// let logger = Logger::from_config(config)?; // every file opened, or an error naming it
/// logger.log_if(entry, |acls| acls.iter().all(|a| a.name != "localhost"));
/// logger.reopen(); // after logrotate moved the files
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Inner>,
}

struct Inner {
    rules: Vec<Rule>,
    format: FormatOptions,
    tx: Option<SyncSender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    reopen: Arc<AtomicBool>,
    rotation: Arc<Rotation>,
    /// The files, for telling where the log goes.
    paths: Vec<String>,
    warnings: Vec<String>,
}

/// A pending `-k rotate` and the `logfile_rotate` it uses.
#[derive(Default)]
struct Rotation {
    wanted: AtomicBool,
    keep: AtomicU32,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("rules", &self.inner.rules)
            .field("format", &self.inner.format)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Logger {
    /// A logger that writes nothing.
    pub fn disabled() -> Logger {
        Logger {
            inner: Arc::new(Inner {
                rules: Vec::new(),
                format: FormatOptions::default(),
                tx: None,
                thread: Mutex::new(None),
                counters: Arc::default(),
                reopen: Arc::default(),
                rotation: Arc::default(),
                paths: Vec::new(),
                warnings: Vec::new(),
            }),
        }
    }

    /// The access logs of `config` with default tuning. With no
    /// `access_log` line this is Squid's default,
    /// [`SQUID_DEFAULT_ACCESS_LOG`]. Every file is opened (appending,
    /// created if missing) before this returns; one that cannot be is an
    /// error naming its path and `access_log` line.
    pub fn from_config(config: &Config) -> Result<Logger, LogError> {
        Logger::with_options(config, LoggerOptions::default())
    }

    /// [`Logger::from_config`] with explicit tuning.
    pub fn with_options(config: &Config, options: LoggerOptions) -> Result<Logger, LogError> {
        Logger::build(config, options, None)
    }

    /// `gate`: the writer thread waits for it before reading the queue
    /// (tests use it to fill the queue deterministically).
    pub(crate) fn build(
        config: &Config,
        options: LoggerOptions,
        gate: Option<Receiver<()>>,
    ) -> Result<Logger, LogError> {
        let default_line;
        let lines: &[Located<AccessLog>] = if config.access_logs.is_empty() {
            default_line = [Located::new(
                AccessLog {
                    destination: LogDestination::Daemon(SQUID_DEFAULT_ACCESS_LOG.into()),
                    format: "squid".into(),
                    buffer_size: None,
                    on_error: None,
                    rotate: None,
                    acls: Vec::new(),
                },
                Location::new("<Squid's default access_log>", 0),
            )];
            &default_line
        } else {
            &config.access_logs
        };
        let mut warnings = Vec::new();
        let mut warn =
            |at: &Location, text: String| warnings.push(format!("{at}: warning: {text}"));
        let mut rules = Vec::new();
        let mut dests: Vec<Dest> = Vec::new();
        let mut index: HashMap<Target, usize> = HashMap::new();
        for line in lines {
            let at = &line.location;
            let path = match &line.destination {
                LogDestination::None => {
                    rules.push(Rule {
                        file: None,
                        acls: line.acls.clone(),
                    });
                    continue;
                }
                LogDestination::Stdio(p) | LogDestination::Daemon(p) => p,
                other => {
                    warn(
                        at,
                        format!(
                            "access_log: {} is not supported by cuttle; nothing is logged there",
                            other.describe()
                        ),
                    );
                    continue;
                }
            };
            if line.format != "squid" {
                warn(
                    at,
                    format!(
                        "access_log: log format \"{}\" is not supported yet; writing the native squid format instead",
                        line.format
                    ),
                );
            } else if let Some(def) = config.logformats.iter().find(|f| f.name == "squid") {
                warn(
                    at,
                    format!(
                        "access_log: the \"logformat squid\" redefinition at {} is not supported; writing the native squid format",
                        def.location
                    ),
                );
            }
            let target = Target::for_path(path);
            let buffer = line
                .buffer_size
                .and_then(|b| usize::try_from(b).ok())
                .unwrap_or(8 * 1024)
                .clamp(512, 1 << 20);
            let file = match index.get(&target) {
                Some(&i) => i,
                None => {
                    if dests.len() == MAX_FILES {
                        return Err(LogError {
                            location: Some(at.clone()),
                            path: PathBuf::from(path),
                            source: io::Error::other(format!(
                                "more than {MAX_FILES} distinct access_log files"
                            )),
                        });
                    }
                    let sink = target.open(buffer).map_err(|source| LogError {
                        location: Some(at.clone()),
                        path: PathBuf::from(path),
                        source,
                    })?;
                    index.insert(target.clone(), dests.len());
                    dests.push(Dest {
                        target,
                        buffer,
                        rotate: line.rotate,
                        sink,
                    });
                    dests.len() - 1
                }
            };
            rules.push(Rule {
                file: Some(file),
                acls: line.acls.clone(),
            });
        }
        // Not printed: the config loader reports the same (config::logging::
        // check_access_logs), so `cuttle check` and `cuttle run` agree.
        let counters = Arc::new(Counters::default());
        let reopen = Arc::new(AtomicBool::new(false));
        let rotation = Arc::new(Rotation::default());
        let paths = dests.iter().map(|d| d.target.name()).collect();
        let (tx, thread) = if dests.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::sync_channel(options.queue_capacity.max(1));
            let writer = Writer {
                dests,
                counters: Arc::clone(&counters),
                reopen: Arc::clone(&reopen),
                rotation: Arc::clone(&rotation),
                flush_interval: options.flush_interval,
            };
            let thread = std::thread::Builder::new()
                .name("cuttle-access-log".into())
                .spawn(move || {
                    if let Some(gate) = gate {
                        let _ = gate.recv();
                    }
                    writer.run(rx)
                })
                .map_err(|source| LogError {
                    location: None,
                    path: PathBuf::from("(access log writer thread)"),
                    source,
                })?;
            (Some(tx), Some(thread))
        };
        Ok(Logger {
            inner: Arc::new(Inner {
                rules,
                format: FormatOptions {
                    strip_query_terms: config.strip_query_terms.value,
                },
                tx,
                thread: Mutex::new(thread),
                counters,
                reopen,
                rotation,
                paths,
                warnings,
            }),
        })
    }

    /// Whether some `access_log` line has ACLs (so [`Logger::log_if`]
    /// needs a way to check them).
    pub fn has_acl_rules(&self) -> bool {
        self.inner.rules.iter().any(|r| !r.acls.is_empty())
    }

    /// Logs `entry` to every `access_log` line, taking each line's ACLs as
    /// matching (use [`Logger::log_if`] when the config has ACLs on them).
    /// Never blocks.
    pub fn log(&self, entry: &Entry) {
        self.log_if(entry, |_| true);
    }

    /// Logs `entry` as Squid does: the `access_log` lines are taken in
    /// order; a line whose ACL list `matches` rejects is skipped (`matches`
    /// is called only for lines that have ACLs; all of them must match,
    /// `!name` negates); a matching `access_log none` stops there; every
    /// other matching line gets the entry (once per file, even when several
    /// matching lines name the same file; Squid would write it once per
    /// line). Never blocks: formatting happens here, writing on the
    /// logger's thread; a full queue drops the line and counts it.
    pub fn log_if(&self, entry: &Entry, matches: impl FnMut(&[AclRef]) -> bool) {
        if self.inner.tx.is_none() {
            return;
        }
        let files = self.files_for(matches);
        if files == 0 {
            return;
        }
        let mut text = String::with_capacity(160 + entry.url.len());
        write_native(entry, &self.inner.format, &mut text);
        text.push('\n');
        self.send(files, text, 1);
    }

    /// [`Logger::log_if`] into `batch`: the line is formatted now and
    /// reaches the writer with the rest of the batch ([`Logger::send_batch`]).
    /// For a thread that logs many lines a second (the ICP and HTCP
    /// responders): one queue message per line cost more than formatting it,
    /// and a writer draining thousands of messages stalls the core it shares.
    pub fn log_batched(
        &self,
        batch: &mut LineBatch,
        entry: &Entry,
        matches: impl FnMut(&[AclRef]) -> bool,
    ) {
        if self.inner.tx.is_none() {
            return;
        }
        let files = self.files_for(matches);
        if files == 0 {
            return;
        }
        if batch.files != files || batch.text.len() >= LineBatch::FULL {
            self.send_batch(batch);
        }
        if batch.count == 0 {
            batch.files = files;
            batch.since = Some(Instant::now());
        }
        write_native(entry, &self.inner.format, &mut batch.text);
        batch.text.push('\n');
        batch.count += 1;
    }

    /// Hands what `batch` holds to the writer (never blocks; a full queue
    /// drops the lines and counts them) and empties it.
    pub fn send_batch(&self, batch: &mut LineBatch) {
        if batch.count == 0 {
            return;
        }
        let text = std::mem::replace(
            &mut batch.text,
            String::with_capacity(LineBatch::FULL + 512),
        );
        self.send(batch.files, text, batch.count);
        batch.count = 0;
        batch.since = None;
    }

    /// The files an entry goes to (a bit each), `access_log` lines taken in
    /// order as [`Logger::log_if`] describes.
    fn files_for(&self, mut matches: impl FnMut(&[AclRef]) -> bool) -> u64 {
        let mut files = 0u64;
        for rule in &self.inner.rules {
            if !rule.acls.is_empty() && !matches(&rule.acls) {
                continue;
            }
            match rule.file {
                None => break,
                Some(i) => files |= 1 << i,
            }
        }
        files
    }

    fn send(&self, files: u64, text: String, count: u64) {
        let Some(tx) = &self.inner.tx else { return };
        let n = u64::from(files.count_ones()) * count;
        match tx.try_send(Msg::Lines { files, text, count }) {
            Ok(()) => self.inner.counters.queued.fetch_add(n, Ordering::Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.counters.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }

    /// Asks the writer to reopen every log file (after logrotate renamed
    /// them; Squid's `-k rotate` without its own renaming). Returns at once;
    /// lines queued before and after may land in either file. A file that
    /// cannot be reopened keeps its old handle; the failure is logged
    /// (tracing) and counted in [`LogStats::reopen_errors`].
    pub fn reopen(&self) {
        let Some(tx) = &self.inner.tx else { return };
        self.inner.reopen.store(true, Ordering::Release);
        // A full queue means the writer is busy and will see the flag soon.
        let _ = tx.try_send(Msg::Wake);
    }

    /// `-k rotate` (SIGUSR1), as Squid's stdio logs: every log file is
    /// flushed, renamed to `FILE.0` (older ones shifted up to
    /// `FILE.N-1`, N being the line's `rotate=N`, else `keep`, Squid's
    /// `logfile_rotate`) and opened anew; N = 0 only reopens. Returns at
    /// once; lines queued before are in the renamed file, lines logged
    /// after in the new one. Failures are logged and counted as in
    /// [`Logger::reopen`].
    pub fn rotate(&self, keep: u32) {
        let Some(tx) = &self.inner.tx else { return };
        self.inner.rotation.keep.store(keep, Ordering::Release);
        self.inner.rotation.wanted.store(true, Ordering::Release);
        let _ = tx.try_send(Msg::Wake);
    }

    /// The files written (paths as configured; `/dev/stdout`...).
    pub fn paths(&self) -> &[String] {
        &self.inner.paths
    }

    /// Writes out everything queued so far (including a pending reopen) and
    /// waits for it, up to 5 seconds. Blocks the calling thread: for
    /// shutdown and tests, not for request paths.
    pub fn flush(&self) {
        let Some(tx) = &self.inner.tx else { return };
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Counters since the logger was built.
    pub fn stats(&self) -> LogStats {
        let c = &self.inner.counters;
        LogStats {
            queued: c.queued.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            reopen_errors: c.reopen_errors.load(Ordering::Relaxed),
        }
    }

    /// What construction warned about (also sent to tracing), each as
    /// `FILE:LINE: warning: ...`.
    pub fn warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// True when some `access_log` line has ACLs (so [`Logger::log_if`]
    /// needs a real evaluator).
    pub fn has_acls(&self) -> bool {
        self.inner.rules.iter().any(|r| !r.acls.is_empty())
    }

    /// True when nothing is ever written (no usable `access_log` line).
    pub fn is_disabled(&self) -> bool {
        self.inner.tx.is_none()
    }
}

impl Drop for Inner {
    /// The last clone: close the queue, let the writer flush and exit.
    fn drop(&mut self) {
        drop(self.tx.take());
        let thread = self.thread.get_mut().ok().and_then(Option::take);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
