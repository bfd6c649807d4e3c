//! Operational messages (Squid's cache.log): the tracing output goes to
//! stderr and, once `cache_log PATH` is opened, to that file too, each line
//! in Squid's `YYYY/MM/DD HH:MM:SS| message` form. `-k rotate` (SIGUSR1)
//! renames it as the access logs are; SIGUSR2 toggles full debugging as
//! Squid's `-k debug` does.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::access_log::rotate_file_names;

/// The open cache_log, if any.
struct Open {
    path: PathBuf,
    file: File,
}

static FILE: Mutex<Option<Open>> = Mutex::new(None);

/// The filter in force and how to swap it (SIGUSR2).
struct Debug {
    handle: reload::Handle<EnvFilter, Registry>,
    configured: String,
    full: bool,
}

static DEBUG: OnceLock<Mutex<Debug>> = OnceLock::new();

fn file() -> MutexGuard<'static, Option<Open>> {
    FILE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the global tracing subscriber: `RUST_LOG` (default `warn`) to
/// stderr and to the cache_log once one is opened.
pub fn init_tracing() {
    let configured = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| "warn".to_string());
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&configured));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    let to_file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(SquidLine)
        .fmt_fields(CacheLogFields::default())
        .with_writer(CacheLogWriter);
    if tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(to_file)
        .try_init()
        .is_ok()
    {
        let _ = DEBUG.set(Mutex::new(Debug {
            handle,
            configured,
            full: false,
        }));
    }
}

/// SIGUSR2 (`-k debug`): switches between full debugging (`debug`) and the
/// configured level. Returns the filter now in force, or `None` when
/// tracing was not set up by [`init_tracing`].
pub fn toggle_debug() -> Option<String> {
    let mut debug = DEBUG.get()?.lock().unwrap_or_else(|p| p.into_inner());
    let next = if debug.full {
        debug.configured.clone()
    } else {
        "debug".to_string()
    };
    debug.handle.reload(EnvFilter::new(&next)).ok()?;
    debug.full = !debug.full;
    Some(next)
}

/// Opens (appending, created if missing) `path` as the cache_log, or
/// closes it with `None`. A file already open at the same path is kept.
/// `/dev/stderr` (also as `stdio:/dev/stderr`) opens nothing: messages go
/// there anyway.
pub fn open(path: Option<&Path>) -> io::Result<()> {
    let path = path.map(|p| {
        p.to_str()
            .and_then(|s| s.strip_prefix("stdio:"))
            .map_or(p, Path::new)
    });
    let mut current = file();
    match path {
        None => *current = None,
        Some(p) if p == Path::new("/dev/stderr") => *current = None,
        Some(p) if current.as_ref().is_some_and(|o| o.path == p) => {}
        Some(p) => {
            let file = OpenOptions::new().append(true).create(true).open(p)?;
            *current = Some(Open {
                path: p.to_path_buf(),
                file,
            });
        }
    }
    Ok(())
}

/// `-k rotate`: renames the cache_log to `.0` ... `.keep-1` (none when
/// `keep` is 0) and reopens it. A file that cannot be reopened keeps the
/// old handle.
pub fn rotate(keep: u32) -> io::Result<()> {
    let mut current = file();
    let Some(open) = current.as_mut() else {
        return Ok(());
    };
    let renamed = rotate_file_names(&open.path, keep);
    open.file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&open.path)?;
    renamed
}

/// Writes `message` to the cache_log alone (what cuttle also prints on
/// stdout: where it listens, where its logs go...).
pub fn note(message: &str) {
    if let Some(open) = file().as_mut() {
        let _ = open
            .file
            .write_all(format!("{}| {message}\n", squid_time_now()).as_bytes());
    }
}

/// Now as Squid stamps cache.log lines: local `YYYY/MM/DD HH:MM:SS`.
pub fn squid_time_now() -> String {
    chrono::Local::now().format("%Y/%m/%d %H:%M:%S").to_string()
}

/// Squid's cache.log line: time stamp, then `WARNING: ` or `ERROR: ` for
/// those levels, then the message and its fields.
struct SquidLine;

impl<S, N> FormatEvent<S, N> for SquidLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{}| ", squid_time_now())?;
        match *event.metadata().level() {
            Level::ERROR => write!(writer, "ERROR: ")?,
            Level::WARN => write!(writer, "WARNING: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The cache_log layer's field formatter, a type of its own: the
/// registry keeps a span's formatted fields per formatter type, so two
/// layers with the same type would both append a recorded field there
/// (`request{url=.. url=..}`).
#[derive(Default)]
struct CacheLogFields(DefaultFields);

impl<'w> FormatFields<'w> for CacheLogFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

/// Hands each formatted event to the open cache_log (or drops it).
struct CacheLogWriter;

impl<'a> MakeWriter<'a> for CacheLogWriter {
    type Writer = CacheLogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        CacheLogWriter
    }
}

impl Write for CacheLogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(open) = file().as_mut() {
            open.file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
