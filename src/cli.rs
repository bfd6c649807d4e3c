//! Command-line arguments (clap) and what each subcommand runs.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use cuttle::config::{self, LoadOptions};
use cuttle::inspect;
use cuttle::store::{RebuildReport, Store, StoreError, VerifyReport};

mod digest;
use digest::DigestCommand;
mod mesh;
mod simulate;
mod trace;

/// The config `-k` reads without `-f`, as squid does.
const SQUID_DEFAULT_CONFIG: &str = "/etc/squid/squid.conf";

const EXAMPLES: &str = "\
With no command, cuttle runs as a caching proxy on the embedded default:
http_port 127.0.0.1:3128, access from localhost only, ICP on 127.0.0.1:3130
and HTCP on 127.0.0.1:4827 (answering localhost), a 256 MB cache_dir and
its access.log in $XDG_CACHE_HOME/cuttle (else ~/.cache/cuttle, else
/var/cache/cuttle).

Examples:
  cuttle run -f /etc/cuttle/squid.conf
  cuttle -f /etc/squid/squid.conf       # the same, as `squid -N -f`
  cuttle                      # the embedded default
  curl -x 127.0.0.1:3128 http://example.com/
  cuttle -k reconfigure -f /etc/squid/squid.conf   # re-read it (SIGHUP)
  cuttle -k rotate -f /etc/squid/squid.conf        # rotate the logs (SIGUSR1)
  cuttle -k shutdown -f /etc/squid/squid.conf      # stop (SIGTERM)
  cuttle -k check -f /etc/squid/squid.conf && echo running
  cuttle check -f /etc/squid/squid.conf
  cuttle icp decode fixtures/icp/v2-query-squid57.bin
  cuttle icp query --peer 127.0.0.2:3130 http://example.com/
  cuttle htcp decode --hex reply.hex
  cuttle htcp tst --peer 127.0.0.2:4827 http://example.com/
  cuttle htcp clr --peer 127.0.0.2:4827 http://example.com/
  cuttle digest decode store_digest.bin
  cuttle digest lookup store_digest.bin http://example.com/
  cuttle store verify /var/spool/cuttle

-k finds the running instance through the pid_filename of the config (-f,
else /etc/squid/squid.conf as for squid; Squid's default /run/squid.pid)
and exits 1 with Squid's FATAL message when it cannot signal it.

Messages go to stderr and to cache_log when the config sets one; set
RUST_LOG (e.g. RUST_LOG=debug) for more, or send SIGUSR2 to toggle debug.";

/// A caching HTTP proxy that speaks Squid's peer protocols (ICP, HTCP).
#[derive(Debug, Parser)]
#[command(
    name = "cuttle",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Signal the running instance, as `squid -k` (it is found through the
    /// pid_filename of -f FILE, else of /etc/squid/squid.conf).
    #[arg(short = 'k', value_name = "ACTION", value_enum)]
    action: Option<KAction>,
    /// The squid.conf: with -k, the one the running instance uses; alone,
    /// run with it (as `cuttle run -f FILE`).
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,
}

/// `squid -k` actions and the signal each sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KAction {
    /// Re-read the config (SIGHUP).
    Reconfigure,
    /// Rotate the logs as logfile_rotate says (SIGUSR1).
    Rotate,
    /// Stop, letting requests in flight finish (SIGTERM).
    Shutdown,
    /// Stop (SIGINT).
    Interrupt,
    /// Kill at once (SIGKILL; buffered log lines are lost).
    Kill,
    /// Toggle full debugging (SIGUSR2).
    Debug,
    /// Exit 0 when the instance runs (signal 0).
    Check,
    /// Check the config and exit, as `cuttle check`.
    Parse,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the caching proxy from a squid.conf.
    #[command(after_help = "\
Examples:
  cuttle run -f /etc/cuttle/squid.conf
  RUST_LOG=debug cuttle run -f squid.conf

Prints where it listens and where its logs go. SIGTERM or SIGINT stop it
(requests in flight may finish, up to shutdown_lifetime); SIGHUP re-reads
the config and keeps the old one if the new one has errors; SIGUSR1 rotates
the logs (logfile_rotate); SIGUSR2 toggles debug messages. `cuttle -k
reconfigure|rotate|shutdown|check -f FILE` sends them through pid_filename.
Without -f, the embedded default is used (see `cuttle --help`).")]
    Run(RunArgs),
    /// Work with ICP datagrams (RFC 2186).
    #[command(
        subcommand,
        after_help = "Examples:\n  cuttle icp decode fixtures/icp/v2-query-squid57.bin\n  cuttle icp query --peer 127.0.0.2:3130 http://example.com/"
    )]
    Icp(IcpCommand),
    /// Work with HTCP datagrams (RFC 2756).
    #[command(
        subcommand,
        after_help = "Examples:\n  cuttle htcp decode fixtures/htcp/tst-request-squid57.bin\n  cuttle htcp tst --peer 127.0.0.2:4827 http://example.com/\n  cuttle htcp clr --peer 127.0.0.2:4827 http://example.com/"
    )]
    Htcp(HtcpCommand),
    /// Read Cache Digests (Squid's `application/cache-digest`).
    #[command(
        subcommand,
        after_help = "Examples:\n  cuttle digest decode store_digest.bin\n  cuttle digest lookup store_digest.bin http://example.com/"
    )]
    Digest(DigestCommand),
    /// Check a squid.conf, like `squid -k parse`: print errors and warnings.
    #[command(after_help = "\
Examples:
  cuttle check -f /etc/squid/squid.conf
  cuttle check -f conf/squid.conf --map /etc/squid=conf

Exits 0 when the file has no errors (warnings allowed), 1 otherwise.")]
    Check(CheckArgs),
    /// Inspect a cache_dir while no cuttle runs on it: verify it, list it.
    #[command(
        subcommand,
        after_help = "Examples:\n  cuttle store verify /var/spool/cuttle\n  cuttle store ls /var/spool/cuttle"
    )]
    Store(StoreCommand),
    /// Make traces (Squid access.logs) for `cuttle simulate` and the mesh lab.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Replay access logs over a mesh of squid.confs on a virtual clock.
    Simulate(simulate::SimulateArgs),
    /// Show a running node's discovery tree; print cache_peer lines for Squid.
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Read every entry of a cache_dir and check every checksum; print counts.
    #[command(after_help = "\
Examples:
  cuttle store verify /var/spool/cuttle
  cuttle store verify /var/spool/cuttle >/dev/null && echo clean

Prints one `name: value` line per count. Exits 0 when nothing is wrong, 1
when anything is (bad, torn, orphaned, bad chains, duplicates) or the
cache_dir cannot be opened. A cache_dir a running cuttle holds is refused.")]
    Verify(StoreArgs),
    /// List the entries of a cache_dir: URL, body bytes, date (UTC), by URL.
    #[command(after_help = "\
Examples:
  cuttle store ls /var/spool/cuttle
  cuttle store ls /var/spool/cuttle | cut -f1 | grep '^https://example.com/'

One tab-separated line per entry, sorted by URL; the date is when the
response was received (`-` when unknown). Entries that fail their checksums
are left out (`cuttle store verify` counts them).")]
    Ls(StoreArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The cache_dir: the directory holding cuttle.store.
    dir: PathBuf,
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
    /// Ask a peer (Squid or cuttle) about URLs with real ICP queries.
    #[command(after_help = "\
Examples:
  cuttle icp query --peer 127.0.0.2:3130 http://example.com/
  cuttle icp query --peer 127.0.0.2:3130 --from 127.0.0.3 http://a.test/1 http://a.test/2

Prints one line per URL: the URL, the reply's opcode (ICP_HIT, ICP_MISS,
ICP_DENIED, ...) and the round-trip time, tab-separated; `TIMEOUT` when no
reply came in time. The peer looks the URL up exactly as written, so give it
in Squid's canonical form (lower-case scheme and host, no default port).
Squid ignores ICP from its own address: query from another one (--from).
Exits 0 when every URL got a reply, 1 otherwise.")]
    Query(QueryArgs),
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// The peer's ICP address (its icp_port).
    #[arg(long, value_name = "HOST:PORT")]
    peer: String,
    /// Send from this local address (like udp_outgoing_address).
    #[arg(long, value_name = "ADDR")]
    from: Option<std::net::IpAddr>,
    /// How long to wait for each reply, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout: u64,
    /// The URLs to ask about.
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
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
    /// Ask a peer (Squid or cuttle) whether it holds URLs, with HTCP TST.
    #[command(after_help = "\
Examples:
  cuttle htcp tst --peer 127.0.0.2:4827 http://example.com/
  cuttle htcp tst --peer 127.0.0.2 --from 127.0.0.3 -H 'Accept-Language: de' http://a.test/1
  cuttle htcp tst --peer 127.0.0.2:4827 --json http://example.com/

Prints one line per URL: the URL, the answer (FOUND or NOT_FOUND), the
round-trip time and the response's DETAIL headers, tab-separated (--json:
the whole response decoded instead); `TIMEOUT` when no answer came (Squid
sends none to a sender its htcp_access refuses). The port defaults to 4827.
Squid ignores HTCP from its own address: ask from another one (--from).
Exits 0 when every URL got an answer, 1 otherwise.")]
    Tst(HtcpArgs),
    /// Purge URLs from a peer (Squid or cuttle) with HTCP CLR.
    #[command(after_help = "\
Examples:
  cuttle htcp clr --peer 127.0.0.2:4827 http://example.com/
  cuttle htcp clr --peer 127.0.0.2 --method HEAD http://example.com/a http://example.com/b

Sends a CLR that wants a response and prints one line per URL: the URL, the
answer (PURGED, NOT_FOUND or KEPT) and the round-trip time, tab-separated
(--json: the response decoded); `TIMEOUT` when none came (Squid answers
nothing to a sender its htcp_clr_access refuses). The method defaults to
GET: Squid purges for GET and HEAD, not for PURGE. Exits 0 when every URL
got an answer, 1 otherwise.")]
    Clr(HtcpArgs),
}

#[derive(Debug, Args)]
struct HtcpArgs {
    /// The peer's HTCP address (its htcp_port; 4827 when not given).
    #[arg(long, value_name = "HOST[:PORT]")]
    peer: String,
    /// Send from this local address (like udp_outgoing_address).
    #[arg(long, value_name = "ADDR")]
    from: Option<std::net::IpAddr>,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout: u64,
    /// The SPECIFIER's method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// A request header to send in the SPECIFIER (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Use the MINOR-0 layout (`htcp=oldsquid`, MediaWiki's purger).
    #[arg(long)]
    oldsquid: bool,
    /// Print each response decoded as JSON.
    #[arg(long)]
    json: bool,
    /// The URLs.
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
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
struct RunArgs {
    /// The squid.conf to run with (default: the embedded configuration).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
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
        let options = cuttle::daemon::RunOptions { config: self.file };
        let signal = match self.action {
            None => None,
            Some(KAction::Parse) => {
                return check(&CheckArgs {
                    file: options
                        .config
                        .unwrap_or_else(|| PathBuf::from(SQUID_DEFAULT_CONFIG)),
                    map: Vec::new(),
                });
            }
            Some(KAction::Reconfigure) => Some(libc::SIGHUP),
            Some(KAction::Rotate) => Some(libc::SIGUSR1),
            Some(KAction::Shutdown) => Some(libc::SIGTERM),
            Some(KAction::Interrupt) => Some(libc::SIGINT),
            Some(KAction::Kill) => Some(libc::SIGKILL),
            Some(KAction::Debug) => Some(libc::SIGUSR2),
            Some(KAction::Check) => Some(0),
        };
        if let Some(signal) = signal {
            // As squid: without -f, the running instance's config is
            // Squid's default one (the embedded default has no pid file).
            let options = cuttle::daemon::RunOptions {
                config: Some(
                    options
                        .config
                        .unwrap_or_else(|| PathBuf::from(SQUID_DEFAULT_CONFIG)),
                ),
            };
            return cuttle::daemon::signal_running(&options, signal);
        }
        let Some(command) = self.command else {
            return cuttle::daemon::run(options);
        };
        match command {
            Command::Run(args) => {
                cuttle::daemon::run(cuttle::daemon::RunOptions { config: args.file })
            }
            Command::Icp(IcpCommand::Decode(args)) => decode(&args, "ICP", inspect::icp_json),
            Command::Icp(IcpCommand::Query(args)) => icp_query(&args),
            Command::Htcp(HtcpCommand::Decode(args)) => decode(&args, "HTCP", inspect::htcp_json),
            Command::Htcp(HtcpCommand::Tst(args)) => htcp_exchange(&args, false),
            Command::Htcp(HtcpCommand::Clr(args)) => htcp_exchange(&args, true),
            Command::Digest(DigestCommand::Decode(args)) => digest::decode(&args),
            Command::Digest(DigestCommand::Lookup(args)) => digest::lookup(&args),
            Command::Check(args) => check(&args),
            Command::Store(StoreCommand::Verify(args)) => store_verify(&args.dir),
            Command::Store(StoreCommand::Ls(args)) => store_ls(&args.dir),
            Command::Trace(command) => trace::run(&command),
            Command::Simulate(args) => simulate::simulate(&args),
            Command::Mesh(command) => mesh::run(&command),
        }
    }
}

/// `cuttle icp query`: one query per URL, in order, each waiting for its reply.
fn icp_query(args: &QueryArgs) -> ExitCode {
    let peer = match std::net::ToSocketAddrs::to_socket_addrs(args.peer.as_str())
        .map(|mut it| it.next())
    {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            eprintln!(
                "cuttle: --peer {}: not a HOST:PORT that resolves",
                args.peer
            );
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_millis(args.timeout);
    for_each_url(
        &args.urls,
        || cuttle::peers::icp_client::IcpClient::bind_plain(args.from),
        async |client, url| {
            let got = client.query_one(peer, url, timeout).await;
            let Some((opcode, rtt, _reqnum)) = answered(url, got) else {
                return false;
            };
            println!(
                "{url}\t{}\t{:.3} ms",
                opcode.name(),
                rtt.as_secs_f64() * 1000.0
            );
            true
        },
    )
}

/// Runs `ask` for each URL in turn (on a one-thread runtime, with the
/// client `bind` opens there); exits 0 when `ask` says every URL got its
/// answer.
fn for_each_url<C>(
    urls: &[String],
    bind: impl FnOnce() -> std::io::Result<C>,
    ask: impl AsyncFn(&C, &str) -> bool,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cuttle: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let client = match bind() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cuttle: cannot open a UDP socket: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut all_answered = true;
        for url in urls {
            // Every URL is asked, answered or not.
            all_answered &= ask(&client, url).await;
        }
        if all_answered {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// The answer of a one-off query to `url`; `None` once the URL's TIMEOUT
/// line or its error is printed.
fn answered<T>(url: &str, got: std::io::Result<Option<T>>) -> Option<T> {
    match got {
        Ok(Some(answer)) => Some(answer),
        Ok(None) => {
            println!("{url}\tTIMEOUT\t-");
            None
        }
        Err(e) => {
            eprintln!("cuttle: {url}: {e}");
            None
        }
    }
}

/// `cuttle htcp tst|clr`: one request per URL, in order, each waiting for
/// its response.
fn htcp_exchange(args: &HtcpArgs, clr: bool) -> ExitCode {
    use cuttle::peers::htcp_client::HtcpClient;
    use cuttle_protocol::htcp::{self, Message, Op, Specifier, TstReply};
    let with_port = if args.peer.parse::<std::net::SocketAddr>().is_ok()
        || args.peer.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit())
        }) {
        args.peer.clone()
    } else {
        format!("{}:4827", args.peer)
    };
    let Some(peer) = std::net::ToSocketAddrs::to_socket_addrs(with_port.as_str())
        .ok()
        .and_then(|mut it| it.next())
    else {
        eprintln!(
            "cuttle: --peer {}: not a HOST[:PORT] that resolves",
            args.peer
        );
        return ExitCode::FAILURE;
    };
    let mut req_hdrs = String::new();
    for h in &args.headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            eprintln!("cuttle: --header {h:?}: expected NAME: VALUE");
            return ExitCode::FAILURE;
        }
        req_hdrs.push_str(h);
        req_hdrs.push_str("\r\n");
    }
    let timeout = Duration::from_millis(args.timeout);
    for_each_url(
        &args.urls,
        || HtcpClient::bind_plain(args.from),
        async |client, url| {
            let trans_id = client.next_trans_id();
            let mut spec = Specifier::new(&args.method, url);
            spec.req_hdrs = req_hdrs.as_str().into();
            let mut msg = if clr {
                Message::clr_request(trans_id, htcp::clr::REASON_UNSPECIFIED, spec, true)
            } else {
                Message::tst_request(trans_id, spec)
            };
            if args.oldsquid {
                msg.minor = htcp::MINOR_OLD;
            }
            let mut datagram = Vec::new();
            if let Err(e) = msg.encode(&mut datagram) {
                eprintln!("cuttle: {url}: cannot be sent in HTCP: {e}");
                return false;
            }
            let got = client.exchange(peer, &datagram, trans_id, timeout).await;
            let Some((wire, rtt)) = answered(url, got) else {
                return false;
            };
            if args.json {
                match inspect::htcp_json(&wire) {
                    Ok(v) => println!("{v:#}"),
                    Err(e) => println!("{url}\tMALFORMED\t{e}"),
                }
                return true;
            }
            let Ok(reply) = htcp::parse(&wire) else {
                println!("{url}\tMALFORMED\t-");
                return false;
            };
            let answer = match (reply.is_overall_response(), &reply.op, reply.response) {
                (true, _, code) => format!("ERROR_{code}"),
                (false, Op::TstResponse(_), htcp::tst::FOUND) => "FOUND".into(),
                (false, Op::TstResponse(_), _) => "NOT_FOUND".into(),
                (false, Op::ClrResponse, htcp::clr::PURGED) => "PURGED".into(),
                (false, Op::ClrResponse, htcp::clr::KEPT) => "KEPT".into(),
                (false, Op::ClrResponse, _) => "NOT_FOUND".into(),
                (false, op, code) => format!("{}_{code}", op.opcode().name()),
            };
            let mut line = format!("{url}\t{answer}\t{:.3} ms", rtt.as_secs_f64() * 1000.0);
            if let Op::TstResponse(TstReply::Detail(d)) = reply.op {
                for block in [d.resp_hdrs, d.entity_hdrs, d.cache_hdrs] {
                    for field in block
                        .to_string_lossy()
                        .split("\r\n")
                        .filter(|f| !f.is_empty())
                    {
                        line.push('\t');
                        line.push_str(field);
                    }
                }
            }
            println!("{line}");
            true
        },
    )
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

/// Opens a cache_dir for inspection (read-only, shared lock), with a
/// spinner on a terminal while the slot header table is read.
fn open_for_inspection(dir: &Path, spinner: bool) -> Result<(Store, RebuildReport), String> {
    let shown = dir.display();
    // Checked here: opening would otherwise report the missing data file.
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{shown}: not a directory")),
        Err(e) => return Err(format!("{shown}: {e}")),
    }
    let bar = spinner.then(|| {
        let bar = ProgressBar::new_spinner().with_message(format!("reading {shown}"));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let opened = Store::open_existing(dir);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    opened.map_err(|e| match e {
        StoreError::Locked { path } => format!(
            "{}: in use: a running cuttle holds this cache_dir; stop it first",
            path.display()
        ),
        StoreError::Io {
            path,
            action: "open",
            source,
        } if source.kind() == std::io::ErrorKind::NotFound => format!(
            "{shown}: not a cuttle cache_dir ({} is missing)",
            path.display()
        ),
        other => other.to_string(),
    })
}

fn store_verify(dir: &Path) -> ExitCode {
    let terminal = std::io::stderr().is_terminal();
    let (store, rebuild) = match open_for_inspection(dir, terminal) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("cuttle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bar = if terminal {
        let bar = ProgressBar::new(rebuild.entries);
        if let Ok(style) = ProgressStyle::with_template(
            "{wide_bar} {human_pos}/{human_len} entries verified, {eta} left",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = store.verify(rebuild, &mut |done, total| {
        if done == 1 {
            bar.set_length(total);
        }
        // Drawing is rate-limited by indicatif; this is a counter bump.
        bar.set_position(done);
    });
    bar.finish_and_clear();
    print!("{}", verify_lines(&report));
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "cuttle: {}: not clean; cuttle never serves a damaged entry and frees its slots when it meets it",
            dir.display()
        );
        ExitCode::FAILURE
    }
}

/// The counts of a verify, one `name: value` line each.
fn verify_lines(report: &VerifyReport) -> String {
    let r = &report.rebuild;
    [
        ("entries", r.entries),
        ("good", report.good),
        ("bytes", report.bytes),
        ("bad", report.bad),
        ("torn", r.torn),
        ("orphaned", r.orphaned),
        ("bad chains", r.bad_chains),
        ("duplicates", r.duplicates),
    ]
    .iter()
    .map(|(name, value)| format!("{name}: {value}\n"))
    .collect()
}

fn store_ls(dir: &Path) -> ExitCode {
    let (store, _) = match open_for_inspection(dir, std::io::stderr().is_terminal()) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("cuttle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = String::new();
    for entry in store.list() {
        let date = match entry.times.date {
            0 => "-".to_string(),
            secs => rfc3339_utc(i64::from(secs)),
        };
        // A URL holding a tab or newline would break the columns.
        let url = entry.url.replace(['\t', '\n', '\r'], " ");
        out.push_str(&format!("{url}\t{}\t{date}\n", entry.body_len));
    }
    print!("{out}");
    let bad = store.counters().bad.load(Ordering::Relaxed);
    if bad > 0 {
        eprintln!(
            "cuttle: {}: {bad} entries failed verification and are not listed; see `cuttle store verify`",
            dir.display()
        );
    }
    ExitCode::SUCCESS
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a count of days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(u32::MAX.into()), "2106-02-07T06:28:15Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339_utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
