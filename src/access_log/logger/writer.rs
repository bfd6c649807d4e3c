//! The access-log writer thread and its destinations: stdout, stderr or a file behind a `BufWriter`, written, flushed, reopened and rotated (Squid's renaming) off the runtime.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Counters, Msg, Rotation};

/// Where a destination writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Target {
    Stdout,
    Stderr,
    File(PathBuf),
}

impl Target {
    pub(super) fn for_path(path: &str) -> Target {
        match path {
            "/dev/stdout" => Target::Stdout,
            "/dev/stderr" => Target::Stderr,
            p => Target::File(PathBuf::from(p)),
        }
    }

    pub(super) fn open(&self, buffer: usize) -> io::Result<Sink> {
        let out: Box<dyn Write + Send> = match self {
            Target::Stdout => Box::new(io::stdout()),
            Target::Stderr => Box::new(io::stderr()),
            Target::File(path) => {
                Box::new(OpenOptions::new().append(true).create(true).open(path)?)
            }
        };
        Ok(Sink {
            out: BufWriter::with_capacity(buffer, out),
            dirty: false,
            failing: false,
        })
    }

    pub(super) fn name(&self) -> String {
        match self {
            Target::Stdout => "/dev/stdout".into(),
            Target::Stderr => "/dev/stderr".into(),
            Target::File(p) => p.display().to_string(),
        }
    }
}

pub(super) struct Sink {
    pub(super) out: BufWriter<Box<dyn Write + Send>>,
    pub(super) dirty: bool,
    /// Set after a failure was reported, so a broken disk logs once.
    pub(super) failing: bool,
}

/// Destination file, as the writer thread holds it.
pub(super) struct Dest {
    pub(super) target: Target,
    pub(super) buffer: usize,
    /// `rotate=N` of its access_log line; else `logfile_rotate` applies.
    pub(super) rotate: Option<u32>,
    pub(super) sink: Sink,
}

/// Squid's renaming on `-k rotate`: `path.keep-2` becomes `path.keep-1`, ...,
/// `path.0` becomes `path.1`, then `path` becomes `path.0`; `keep` 0
/// renames nothing. Missing files are skipped; the first other failure is
/// returned after the rest were tried.
pub fn rotate_file_names(path: &Path, keep: u32) -> io::Result<()> {
    let numbered = |i: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    };
    let mut first_error = None;
    let mut rename = |from: &Path, to: &Path| match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            first_error.get_or_insert(e);
        }
        _ => {}
    };
    if keep == 0 {
        return Ok(());
    }
    for i in (1..keep).rev() {
        rename(&numbered(i - 1), &numbered(i));
    }
    rename(path, &numbered(0));
    first_error.map_or(Ok(()), Err)
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) dests: Vec<Dest>,
    pub(super) counters: Arc<Counters>,
    pub(super) reopen: Arc<AtomicBool>,
    pub(super) rotation: Arc<Rotation>,
    pub(super) flush_interval: Duration,
}

impl Writer {
    /// Polls the queue rather than waiting on it: a waiting receiver makes
    /// every sender pay a futex wake-up per line, which showed up as the
    /// largest cost of a cache hit. Drained every few milliseconds, files
    /// flushed every `flush_interval`.
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        const POLL: Duration = Duration::from_millis(5);
        let mut last_flush = Instant::now();
        let mut dropped_reported = 0;
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Msg::Lines { files, text, count }) => {
                        self.write(files, text.as_bytes(), count)
                    }
                    Ok(Msg::Flush(ack)) => {
                        self.flush_all();
                        last_flush = Instant::now();
                        let _ = ack.send(());
                    }
                    // In queue order: lines logged after reopen() go to
                    // the new files.
                    Ok(Msg::Wake) => self.reopen_if_asked(),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush_all();
                        return;
                    }
                }
            }
            self.reopen_if_asked();
            if last_flush.elapsed() >= self.flush_interval {
                self.flush_all();
                last_flush = Instant::now();
                let dropped = self.counters.dropped.load(Ordering::Relaxed);
                if dropped != dropped_reported {
                    tracing::warn!(
                        "access_log: {} lines dropped so far: the writer could not keep up",
                        dropped
                    );
                    dropped_reported = dropped;
                }
            }
            std::thread::sleep(POLL.min(self.flush_interval));
        }
    }

    fn write(&mut self, files: u64, lines: &[u8], count: u64) {
        for (i, dest) in self.dests.iter_mut().enumerate() {
            if files & (1 << i) == 0 {
                continue;
            }
            match dest.sink.out.write_all(lines) {
                Ok(()) => {
                    dest.sink.dirty = true;
                    self.counters.written.fetch_add(count, Ordering::Relaxed);
                }
                Err(e) => failed(&self.counters, dest, "write", &e),
            }
        }
    }

    fn flush_all(&mut self) {
        for dest in &mut self.dests {
            if !dest.sink.dirty {
                continue;
            }
            match dest.sink.out.flush() {
                Ok(()) => {
                    dest.sink.dirty = false;
                    dest.sink.failing = false;
                }
                Err(e) => {
                    // What BufWriter kept is retried at the next flush.
                    failed(&self.counters, dest, "flush", &e);
                }
            }
        }
    }

    /// A rotation (which reopens) or a plain reopen, when one is pending.
    fn reopen_if_asked(&mut self) {
        if self.rotation.wanted.swap(false, Ordering::AcqRel) {
            self.reopen.store(false, Ordering::Release);
            self.flush_all();
            let keep = self.rotation.keep.load(Ordering::Acquire);
            for dest in &self.dests {
                let Target::File(path) = &dest.target else {
                    continue;
                };
                if let Err(e) = rotate_file_names(path, dest.rotate.unwrap_or(keep)) {
                    tracing::error!(file = %path.display(), error = %e, "access_log: cannot rotate");
                }
            }
            self.reopen_all();
        } else if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_all();
        }
    }

    fn reopen_all(&mut self) {
        self.flush_all();
        for dest in &mut self.dests {
            if !matches!(dest.target, Target::File(_)) {
                continue;
            }
            match dest.target.open(dest.buffer) {
                Ok(sink) => dest.sink = sink,
                Err(e) => {
                    self.counters.reopen_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        "access_log: cannot reopen {}: {e}; still writing to the old file",
                        dest.target.name()
                    );
                }
            }
        }
    }
}

fn failed(counters: &Counters, dest: &mut Dest, what: &str, e: &io::Error) {
    counters.write_errors.fetch_add(1, Ordering::Relaxed);
    if !dest.sink.failing {
        dest.sink.failing = true;
        tracing::error!("access_log: cannot {what} {}: {e}", dest.target.name());
    }
}
