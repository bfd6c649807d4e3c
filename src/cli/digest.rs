//! `cuttle digest decode|lookup`: reading Cache Digest files.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cuttle::inspect;
use cuttle_protocol::digest::{self, DigestRef};
use cuttle_protocol::key::{store_key, Method};

#[derive(Debug, Subcommand)]
pub(super) enum DigestCommand {
    /// Print a Cache Digest's header as JSON, with the share of mask bits set.
    #[command(after_help = "\
Examples:
  cuttle digest decode store_digest.bin
  xxd -p store_digest.bin | cuttle digest decode --hex -
  curl -s http://127.0.0.2:3128/squid-internal-periodic/store_digest > store_digest.bin

FILE is the response body of /squid-internal-periodic/store_digest: the
128-byte header, then the mask. A malformed digest exits with status 1 and
one line naming the field and offset.")]
    Decode(DigestFileArgs),
    /// Say for each URL whether a Cache Digest claims it (HIT) or not (MISS).
    #[command(after_help = "\
Examples:
  cuttle digest lookup store_digest.bin http://example.com/ http://example.com/logo.png
  cuttle store ls /var/spool/cuttle | cut -f1 | cuttle digest lookup store_digest.bin -

Prints one line per URL, `HIT URL` or `MISS URL`, from the digest's mask and
Squid's public store key for a GET of the URL exactly as written (give it in
Squid's canonical form: lower-case scheme and host, no default port). A HIT
may be false: a digest is a Bloom filter. `-` reads URLs from stdin, one a
line. A malformed digest exits with status 1 and one line naming the field
and offset.")]
    Lookup(DigestLookupArgs),
}

#[derive(Debug, Args)]
pub(super) struct DigestFileArgs {
    /// The digest: a file holding one store_digest response body (`-` for stdin).
    file: PathBuf,
    /// Read FILE as hex text (whitespace ignored) instead of raw bytes.
    #[arg(long)]
    hex: bool,
}

#[derive(Debug, Args)]
pub(super) struct DigestLookupArgs {
    #[command(flatten)]
    digest: DigestFileArgs,
    /// The URLs to look up (`-`: read URLs from stdin, one a line).
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
}

/// Reads and parses the digest file of `args`, saying on stderr what is
/// wrong when it cannot.
fn with_digest(args: &DigestFileArgs, then: impl FnOnce(&[u8], DigestRef<'_>)) -> ExitCode {
    let shown = args.file.display();
    let bytes = match super::read_input(&args.file, args.hex) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("cuttle: {shown}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match digest::parse(&bytes) {
        Ok(parsed) => {
            then(&bytes, parsed);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cuttle: {shown}: malformed cache digest: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn decode(args: &DigestFileArgs) -> ExitCode {
    with_digest(args, |bytes, parsed| {
        println!("{:#}", inspect::digest_json(bytes.len(), &parsed));
    })
}

/// `cuttle digest lookup`: the URLs in order, `-` standing for stdin's lines.
pub(super) fn lookup(args: &DigestLookupArgs) -> ExitCode {
    // stdin is read once, where the first `-` stands.
    let mut stdin_read = false;
    let mut failed = false;
    let code = with_digest(&args.digest, |_, parsed| {
        let mut out = std::io::stdout().lock();
        let answer = |out: &mut std::io::StdoutLock<'_>, url: &str| {
            let key = store_key(Method::Get, url.as_bytes());
            let verdict = if parsed.contains(&key) { "HIT" } else { "MISS" };
            writeln!(out, "{verdict} {url}")
        };
        for url in &args.urls {
            if url != "-" {
                failed |= answer(&mut out, url).is_err();
                continue;
            }
            if std::mem::replace(&mut stdin_read, true) {
                continue;
            }
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) => {
                        let url = line.trim();
                        if !url.is_empty() {
                            failed |= answer(&mut out, url).is_err();
                        }
                    }
                    Err(e) => {
                        eprintln!("cuttle: stdin: cannot read: {e}");
                        failed = true;
                        break;
                    }
                }
            }
        }
    });
    if failed {
        ExitCode::FAILURE
    } else {
        code
    }
}
