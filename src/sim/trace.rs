//! Traces: Squid native access.log lines read as requests to replay,
//! streaming (a log of any size is read a line at a time).
//!
//! A native line is `time elapsed client code/status bytes method URL
//! user hierarchy/peer type`. What a replay needs is the time, the client
//! (which picks the node), the method, the URL and the size of the reply.
//!
//! A trace may also carry modifications at the origin, as lines of their
//! own that Squid log tools skip: `#change TIME URL` (`cuttle trace
//! generate --change-rate`), kept by the reader in file order for the
//! replay to take before the next request ([`AccessLogReader::take_changes`]).

use std::io::BufRead;
use std::net::IpAddr;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Seconds since the epoch (the log's own stamp, milliseconds kept).
    pub time: f64,
    pub client: IpAddr,
    /// GET or HEAD: the only methods a cache answers from its store.
    pub method: http::Method,
    pub url: String,
    /// Bytes the client received (reply head and body), as logged.
    pub size: u64,
}

/// A modification of a document at the origin (`#change TIME URL`).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Seconds since the epoch.
    pub time: f64,
    pub url: String,
}

/// The word a change line starts with.
pub const CHANGE_MARK: &str = "#change";

/// Reads a `#change TIME URL` line; `None` for any other line, `Some(Err)`
/// for a change line that cannot be read.
pub fn parse_change(line: &str) -> Option<Result<Change, Skipped>> {
    let rest = line.strip_prefix(CHANGE_MARK)?;
    let mut fields = rest.split_ascii_whitespace();
    let mut read = || -> Result<Change, Skipped> {
        let time: f64 = fields
            .next()
            .and_then(|t| t.parse().ok())
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .ok_or(Skipped::Malformed)?;
        let url = fields.next().ok_or(Skipped::Malformed)?.to_string();
        Ok(Change { time, url })
    };
    Some(read())
}

/// Why a line was not replayed; counted by [`AccessLogReader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Not a native access.log line (too few fields, a field unreadable).
    Malformed,
    /// CONNECT tunnels and methods other than GET and HEAD.
    NotCacheable,
    /// The request failed or was refused (status 0 or 4xx/5xx,
    /// TCP_DENIED, NONE): there is nothing a cache could have served.
    Error,
}

/// Counts of the lines skipped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCounts {
    pub malformed: u64,
    pub not_cacheable: u64,
    pub errors: u64,
}

impl SkipCounts {
    pub fn total(&self) -> u64 {
        self.malformed + self.not_cacheable + self.errors
    }
}

/// Reads one native access.log line.
pub fn parse_line(line: &str) -> Result<TraceRequest, Skipped> {
    let mut fields = line.split_ascii_whitespace();
    let mut next = || fields.next().ok_or(Skipped::Malformed);
    let time: f64 = next()?.parse().map_err(|_| Skipped::Malformed)?;
    let _elapsed = next()?;
    let client: IpAddr = next()?.parse().map_err(|_| Skipped::Malformed)?;
    let (code, status) = next()?.split_once('/').ok_or(Skipped::Malformed)?;
    let status: u16 = status.parse().map_err(|_| Skipped::Malformed)?;
    let size: u64 = next()?.parse().map_err(|_| Skipped::Malformed)?;
    let method = next()?;
    let url = next()?;
    if !time.is_finite() || time < 0.0 {
        return Err(Skipped::Malformed);
    }
    let method = match method {
        "GET" => http::Method::GET,
        "HEAD" => http::Method::HEAD,
        _ => return Err(Skipped::NotCacheable),
    };
    if status == 0 || status >= 400 || code.starts_with("NONE") || code.contains("DENIED") {
        return Err(Skipped::Error);
    }
    Ok(TraceRequest {
        time,
        client,
        method,
        url: url.to_string(),
        size,
    })
}

/// The requests of an access.log, in file order, with the lines skipped
/// counted (see [`AccessLogReader::skipped`]). Blank lines are ignored.
pub struct AccessLogReader<R> {
    input: R,
    line: String,
    skipped: SkipCounts,
    /// Change lines read since the last [`AccessLogReader::take_changes`].
    changes: Vec<Change>,
}

impl<R: BufRead> AccessLogReader<R> {
    pub fn new(input: R) -> Self {
        AccessLogReader {
            input,
            line: String::new(),
            skipped: SkipCounts::default(),
            changes: Vec::new(),
        }
    }

    pub fn skipped(&self) -> SkipCounts {
        self.skipped
    }

    /// The change lines read before the request just returned (and since
    /// the last call), in file order: a replay applies them first.
    pub fn take_changes(&mut self) -> std::vec::Drain<'_, Change> {
        self.changes.drain(..)
    }
}

impl<R: BufRead> Iterator for AccessLogReader<R> {
    /// A read error ends the trace: it is returned once, then `None`.
    type Item = std::io::Result<TraceRequest>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            match self.input.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.line.trim().is_empty() {
                continue;
            }
            match parse_change(&self.line) {
                Some(Ok(change)) => {
                    self.changes.push(change);
                    continue;
                }
                Some(Err(_)) => {
                    self.skipped.malformed += 1;
                    continue;
                }
                None => {}
            }
            match parse_line(&self.line) {
                Ok(request) => return Some(Ok(request)),
                Err(Skipped::Malformed) => self.skipped.malformed += 1,
                Err(Skipped::NotCacheable) => self.skipped.not_cacheable += 1,
                Err(Skipped::Error) => self.skipped.errors += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
1286536309.450    181 127.0.0.1 TCP_MISS/200 5434 GET http://example.com/a - HIER_DIRECT/10.0.0.1 text/html
1286536309.900      2 10.1.2.3 TCP_MEM_HIT/200 5434 GET http://example.com/a - HIER_NONE/- text/html

1286536310.100    40 10.1.2.3 TCP_TUNNEL/200 900 CONNECT example.com:443 - HIER_DIRECT/10.0.0.1 -
1286536310.200     0 10.1.2.3 TCP_DENIED/403 3900 GET http://example.com/b - HIER_NONE/- text/html
1286536310.300     5 10.1.2.3 TCP_MISS/200 120 POST http://example.com/c - HIER_DIRECT/10.0.0.1 text/html
garbage line
#change 1286536310.500 http://example.com/a
#change soon http://example.com/a
1286536311.000     3 ::1 TCP_REFRESH_UNMODIFIED/304 250 HEAD http://example.com/d - HIER_DIRECT/10.0.0.1 -
";

    #[test]
    fn replayable_lines_are_read_and_the_rest_counted_by_reason() {
        let mut reader = AccessLogReader::new(LOG.as_bytes());
        let requests: Vec<TraceRequest> = reader.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(requests.len(), 3);
        assert_eq!(
            reader.take_changes().collect::<Vec<_>>(),
            [Change {
                time: 1286536310.5,
                url: "http://example.com/a".into()
            }]
        );
        assert_eq!(requests[0].time, 1286536309.450);
        assert_eq!(requests[0].client, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(requests[0].url, "http://example.com/a");
        assert_eq!(requests[0].size, 5434);
        assert_eq!(requests[2].method, http::Method::HEAD);
        assert_eq!(requests[2].client, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            reader.skipped(),
            SkipCounts {
                malformed: 2,
                not_cacheable: 2,
                errors: 1
            }
        );
    }
}
