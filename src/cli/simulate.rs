//! `cuttle simulate`: replays access logs over one mesh (or two, with
//! `--compare`) and prints the figures as a table, JSON or an SVG chart.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use cuttle::sim::{AccessLogReader, Engine, Mesh, Options, Report};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  cuttle simulate examples/worldnet/squid.toml access.log
  cuttle simulate examples/worldnet/squid.toml day1.log day2.log --ttl 3600 --json
  cuttle simulate examples/worldnet/squid.toml access.log \\
      --compare examples/worldnet/cuttle.toml --svg compare.svg

MESH.toml names the nodes (each with its own squid.conf, an address, the
trace clients it serves) and the links between them; see the README's
\"Simulating a mesh\". Each TRACE is a Squid native access.log, read
streaming; CONNECT, methods other than GET and HEAD, and errors are counted
and skipped; `#change TIME URL` lines (cuttle trace generate --change-rate)
are modifications at the origin: the run then counts stale hits,
validations sent to the origin and push notices. --compare B.toml replays the same traces over a second mesh
and prints both. A run whose counts do not add up (requests = hits + misses
per node; origin bytes = bytes of the misses) exits with status 1.")]
pub(super) struct SimulateArgs {
    /// The mesh file (TOML).
    #[arg(value_name = "MESH.toml")]
    mesh: PathBuf,
    /// Squid native access.log files, replayed in order.
    #[arg(value_name = "TRACE", required = true)]
    traces: Vec<PathBuf>,
    /// Every document's lifetime in seconds (an explicit max-age) instead
    /// of refresh_pattern's heuristics on its synthetic Last-Modified.
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Seed of the ICP/HTCP reply jitter (the mesh's reply_jitter_ms): the
    /// same seed gives the same figures.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Print the figures as JSON (`{"runs": [...]}`) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write a bar chart comparing the runs to FILE (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// A second mesh replayed over the same traces, side by side.
    #[arg(long, value_name = "B.toml")]
    compare: Option<PathBuf>,
}

/// Counts the bytes read through it (for the progress bar).
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        // Drawing is rate-limited by indicatif; this is a counter bump.
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn run_one(mesh_path: &Path, args: &SimulateArgs) -> Result<Report, String> {
    let mesh = Mesh::load(mesh_path)?;
    let mut engine = Engine::new(
        &mesh,
        Options {
            ttl: args.ttl,
            seed: args.seed,
            update_hits: None,
        },
    )?;
    let total: u64 = args
        .traces
        .iter()
        .filter_map(|t| std::fs::metadata(t).ok())
        .map(|m| m.len())
        .sum();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes}, {eta} left",
        ) {
            bar.set_style(style);
        }
        bar.set_message(mesh.path.display().to_string());
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut skipped = cuttle::sim::SkipCounts::default();
    for trace in &args.traces {
        let file =
            File::open(trace).map_err(|e| format!("{}: cannot read: {e}", trace.display()))?;
        let input = BufReader::with_capacity(
            1 << 16,
            Counted {
                inner: file,
                bar: bar.clone(),
            },
        );
        let mut reader = AccessLogReader::new(input);
        while let Some(request) = reader.next() {
            let request = request.map_err(|e| format!("{}: {e}", trace.display()))?;
            for change in reader.take_changes() {
                engine.change(&change);
            }
            engine.request(&request);
        }
        let s = reader.skipped();
        skipped.malformed += s.malformed;
        skipped.not_cacheable += s.not_cacheable;
        skipped.errors += s.errors;
    }
    bar.finish_and_clear();
    engine.finish(skipped)
}

pub(super) fn simulate(args: &SimulateArgs) -> ExitCode {
    let mut meshes = vec![args.mesh.clone()];
    meshes.extend(args.compare.clone());
    let mut runs = Vec::new();
    for mesh in &meshes {
        match run_one(mesh, args) {
            Ok(report) => runs.push(report),
            Err(e) => {
                eprintln!("cuttle: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&serde_json::json!({ "runs": runs })) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("cuttle: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        for (i, run) in runs.iter().enumerate() {
            if i > 0 {
                println!();
            }
            println!("{}", run.mesh);
            print!("{}", run.table());
        }
        if runs.len() == 2 {
            print!("{}", cuttle::sim::report::compare_lines(&runs[0], &runs[1]));
        }
    }
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, cuttle::sim::chart::svg(&runs)) {
            eprintln!("cuttle: {}: cannot write: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
