//! `cuttle trace generate`: synthetic Squid access.logs for `cuttle
//! simulate` and the mesh lab.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use cuttle::sim::generate::{
    self, Generator, Line, TraceSpec, DEFAULT_OBJECTS_PER_REQUEST, DEFAULT_START, DEFAULT_ZIPF,
};
use cuttle::sim::ClientRange;

/// Requests above which a progress bar is drawn (on a terminal).
const PROGRESS_FROM: u64 = 200_000;

#[derive(Debug, Subcommand)]
pub(super) enum TraceCommand {
    /// Write a synthetic Squid native access.log: Zipf popularity,
    /// heavy-tailed sizes, Poisson arrivals, clients from address ranges.
    #[command(after_help = "\
Examples:
  cuttle trace generate --requests 20000 --clients 10.1.0.0/16,10.2.0.0/16 -o trace.log
  cuttle trace generate --objects 50000 --requests 100000 --zipf 0.7 --seed 3 --duration 86400
  cuttle trace generate --requests 1000 -o t.log && cuttle simulate mesh.toml t.log

Each line is what a cache with nothing cached logs for the request
(TCP_MISS/200 ... HIER_DIRECT/host). Popularity follows Zipf(--zipf) over
--objects documents (default: as many as requests); with the default
exponent the documents seen match measured proxy traces: the top 1% draw
20-35% of the requests, the top 10% draw 45-55%, 25-40% of them draw 70%
and 70-80% draw 90%. A document keeps its URL and size in every line;
sizes are lognormal (median 4000 bytes) with a Pareto tail (7% of the
documents, from 20000 bytes, shape 1.2) cut at --max-size. URLs spread over
one host per 40 documents. Requests arrive as a Poisson process over
--duration seconds from --start; each picks a range of --clients, then an
address in it, at random. The same --seed gives the same trace.

--change-rate R gives each document a change process at the origin: its
mean time between changes is 1/R days times a lognormal factor (sigma 2,
fixed by the seed and the document), its changes a Poisson process. They
are written as lines of their own, `#change TIME URL`, before the first
request after them; a document's first request is preceded by its last
change before it (its Last-Modified). `cuttle simulate` reads them; Squid
log tools skip them.")]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub(super) struct GenerateArgs {
    /// Documents in the catalogue (default: as many as --requests).
    #[arg(long, value_name = "N")]
    objects: Option<u64>,
    /// Lines to write.
    #[arg(long, value_name = "M", default_value_t = 100_000)]
    requests: u64,
    /// Zipf exponent of popularity.
    #[arg(long, value_name = "ALPHA", default_value_t = DEFAULT_ZIPF)]
    zipf: f64,
    /// Client address ranges (CIDR or single addresses), comma-separated.
    #[arg(
        long,
        value_name = "CIDR[,CIDR...]",
        value_delimiter = ',',
        default_value = "10.1.0.0/16",
        value_parser = ClientRange::parse
    )]
    clients: Vec<ClientRange>,
    /// Random seed: the same seed writes the same trace.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// Seconds the requests are spread over.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0)]
    duration: f64,
    /// Time stamp of the trace's start, seconds since the epoch.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_START)]
    start: f64,
    /// Give each document a change process: changes per day at the median
    /// document (each document's mean interval is lognormal around it);
    /// writes `#change TIME URL` lines between the requests.
    #[arg(long, value_name = "PER_DAY")]
    change_rate: Option<f64>,
    /// Largest document, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_size: u64,
    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(super) fn run(command: &TraceCommand) -> ExitCode {
    match command {
        TraceCommand::Generate(args) => match generate_trace(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cuttle: trace generate: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn generate_trace(args: &GenerateArgs) -> Result<(), String> {
    let objects = args.objects.unwrap_or_else(|| {
        ((args.requests as f64 * DEFAULT_OBJECTS_PER_REQUEST).round() as u64).max(1)
    });
    let spec = TraceSpec {
        objects,
        requests: args.requests,
        zipf: args.zipf,
        clients: args.clients.clone(),
        seed: args.seed,
        duration: args.duration,
        start: args.start,
        max_size: args.max_size,
        change_rate: args.change_rate,
    };
    let generator = Generator::new(spec)?;
    let (mut out, shown): (Box<dyn Write>, String) = match &args.output {
        Some(path) => (
            Box::new(BufWriter::new(
                File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            )),
            path.display().to_string(),
        ),
        None => (
            Box::new(BufWriter::new(std::io::stdout().lock())),
            "stdout".into(),
        ),
    };
    let bar = if args.requests >= PROGRESS_FROM && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(args.requests);
        if let Ok(style) =
            ProgressStyle::with_template("{wide_bar} {human_pos}/{human_len} requests, {eta} left")
        {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut written = 0u64;
    for line in generator.lines() {
        match line {
            Line::Request(request) => {
                generate::write_line(&request, &mut out).map_err(|e| format!("{shown}: {e}"))?;
                if written.is_multiple_of(4096) {
                    bar.set_position(written);
                }
                written += 1;
            }
            Line::Change(change) => {
                generate::write_change(&change, &mut out).map_err(|e| format!("{shown}: {e}"))?
            }
        }
    }
    bar.finish_and_clear();
    out.flush().map_err(|e| format!("{shown}: {e}"))
}
