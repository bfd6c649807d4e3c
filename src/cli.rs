//! Command-line arguments (clap) and what each subcommand runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cuttle::config::{self, LoadOptions};
use cuttle::inspect;

const EXAMPLES: &str = "\
Examples:
  cuttle check -f /etc/squid/squid.conf
  cuttle icp decode fixtures/icp/v2-query-squid57.bin
  cuttle htcp decode --hex reply.hex

Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.";

/// A caching HTTP proxy that speaks Squid's peer protocols (ICP, HTCP).
#[derive(Debug, Parser)]
#[command(name = "cuttle", version, after_help = EXAMPLES, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with ICP datagrams (RFC 2186).
    #[command(
        subcommand,
        after_help = "Examples:\n  cuttle icp decode fixtures/icp/v2-query-squid57.bin"
    )]
    Icp(IcpCommand),
    /// Work with HTCP datagrams (RFC 2756).
    #[command(
        subcommand,
        after_help = "Examples:\n  cuttle htcp decode fixtures/htcp/tst-request-squid57.bin"
    )]
    Htcp(HtcpCommand),
    /// Check a squid.conf, like `squid -k parse`: print errors and warnings.
    #[command(after_help = "\
Examples:
  cuttle check -f /etc/squid/squid.conf
  cuttle check -f conf/squid.conf --map /etc/squid=conf

Exits 0 when the file has no errors (warnings allowed), 1 otherwise.")]
    Check(CheckArgs),
}

#[derive(Debug, Subcommand)]
enum IcpCommand {
    /// Print one ICP datagram as JSON.
    #[command(after_help = "\
Examples:
  cuttle icp decode fixtures/icp/v2-query-squid57.bin
  xxd -p query.bin | cuttle icp decode --hex -

A malformed datagram exits with status 1 and one line naming the field and offset.")]
    Decode(DecodeArgs),
}

#[derive(Debug, Subcommand)]
enum HtcpCommand {
    /// Print one HTCP datagram as JSON.
    #[command(after_help = "\
Examples:
  cuttle htcp decode fixtures/htcp/tst-request-squid57.bin
  cuttle htcp decode --hex tst.hex

A malformed datagram exits with status 1 and one line naming the field and offset.")]
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
struct DecodeArgs {
    /// The datagram: a file holding exactly one UDP payload (`-` for stdin).
    file: PathBuf,
    /// Read FILE as hex text (whitespace ignored) instead of raw bytes.
    #[arg(long)]
    hex: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The squid.conf to check.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Read absolute include and ACL-file paths under FROM from TO instead
    /// (for a config copied from another machine). Repeatable.
    #[arg(long = "map", value_name = "FROM=TO", value_parser = parse_mapping)]
    map: Vec<(PathBuf, PathBuf)>,
}

fn parse_mapping(s: &str) -> Result<(PathBuf, PathBuf), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((PathBuf::from(from), PathBuf::from(to)))
        }
        _ => Err(format!("expected FROM=TO, got {s:?}")),
    }
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Icp(IcpCommand::Decode(args)) => decode(&args, "ICP", inspect::icp_json),
            Command::Htcp(HtcpCommand::Decode(args)) => decode(&args, "HTCP", inspect::htcp_json),
            Command::Check(args) => check(&args),
        }
    }
}

fn decode(
    args: &DecodeArgs,
    protocol: &str,
    to_json: fn(&[u8]) -> Result<serde_json::Value, cuttle_protocol::Error>,
) -> ExitCode {
    let shown = args.file.display();
    let datagram = match read_input(&args.file, args.hex) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("cuttle: {shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match to_json(&datagram) {
        Ok(value) => {
            println!("{value:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cuttle: {shown}: malformed {protocol} datagram: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(path: &Path, hex: bool) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut raw).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut raw).map(|_| ()))
    };
    read.map_err(|e| format!("cannot read: {e}"))?;
    if !hex {
        return Ok(raw);
    }
    let text = String::from_utf8(raw).map_err(|_| "--hex: the file is not text".to_string())?;
    inspect::bytes_from_hex(&text).map_err(|e| format!("--hex: {e}"))
}

fn check(args: &CheckArgs) -> ExitCode {
    let options = LoadOptions {
        path_map: args.map.clone(),
    };
    let loaded = config::load_file(&args.file, &options);
    let (mut errors, mut warnings) = (0, 0);
    for diagnostic in &loaded.diagnostics {
        match diagnostic.severity {
            config::Severity::Error => errors += 1,
            config::Severity::Warning => warnings += 1,
        }
        eprintln!("{diagnostic}");
    }
    eprintln!(
        "{}: {errors} error(s), {warnings} warning(s)",
        args.file.display()
    );
    if loaded.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
