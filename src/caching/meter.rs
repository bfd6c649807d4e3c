//! RFC 2227 (Simple Hit-Metering and Usage-Limiting) `Meter` header: its
//! directives parsed and written, and the terms a response's directives
//! set for the stored object. Pure: no I/O, no clock.
//!
//! Grammar (RFC 2227 §5, with its one-letter abbreviations accepted on
//! input and the long names written on output):
//!
//! ```text
//! Meter = "Meter" ":" 0#meter-directive
//! meter-request-directive  = "will-report-and-limit" | "wont-report" | "wont-limit"   (w, x, y)
//! meter-report-directive   = "count" "=" 1*DIGIT "/" 1*DIGIT                         (c)
//! meter-response-directive = "max-uses" "=" 1*DIGIT | "max-reuses" "=" 1*DIGIT       (u, r)
//!                          | "do-report" | "dont-report" | "timeout" "=" 1*DIGIT     (d, e, t)
//!                          | "wont-ask"                                               (n)
//! ```
//!
//! `Meter` is hop-by-hop: whoever sends it lists it in `Connection`.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::store::MeterTerms;

/// The field's name.
pub const METER: HeaderName = HeaderName::from_static("meter");

/// One directive of a `Meter` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Request: the proxy will report uses and honour limits.
    WillReportAndLimit,
    /// Request: the proxy will not report.
    WontReport,
    /// Request: the proxy will not honour limits.
    WontLimit,
    /// Request: uses and reuses since the last report.
    Count { uses: u32, reuses: u32 },
    /// Response: at most this many uses before revalidating.
    MaxUses(u32),
    /// Response: at most this many reuses before revalidating.
    MaxReuses(u32),
    /// Response: report the counts.
    DoReport,
    /// Response: no report wanted.
    DontReport,
    /// Response: report (or revalidate) within this many minutes.
    Timeout(u32),
    /// Response: the server will not ask for metering.
    WontAsk,
}

/// Why a `Meter` field did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterError {
    /// The offending directive, as written.
    pub directive: String,
    pub reason: &'static str,
}

impl fmt::Display for MeterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Meter directive \"{}\": {}", self.directive, self.reason)
    }
}

impl std::error::Error for MeterError {}

/// Counts are 32-bit; a bigger number is malformed (not wrapped).
fn number(text: &str, directive: &str) -> Result<u32, MeterError> {
    let err = |reason| MeterError {
        directive: directive.to_string(),
        reason,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("value is not a decimal number"));
    }
    text.parse().map_err(|_| err("number too large"))
}

/// Parses one `Meter` field value: a comma-separated list (empty elements
/// allowed, as `#` lists are). Names are case-insensitive.
pub fn parse(value: &str) -> Result<Vec<Directive>, MeterError> {
    let mut out = Vec::new();
    for item in value.split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            continue;
        }
        let (name, arg) = match item.split_once('=') {
            Some((n, a)) => (
                n.trim_matches([' ', '\t']),
                Some(a.trim_matches([' ', '\t'])),
            ),
            None => (item, None),
        };
        let name = name.to_ascii_lowercase();
        let bad = |reason| MeterError {
            directive: item.to_string(),
            reason,
        };
        let directive = match (name.as_str(), arg) {
            ("will-report-and-limit" | "w", None) => Directive::WillReportAndLimit,
            ("wont-report" | "x", None) => Directive::WontReport,
            ("wont-limit" | "y", None) => Directive::WontLimit,
            ("do-report" | "d", None) => Directive::DoReport,
            ("dont-report" | "e", None) => Directive::DontReport,
            ("wont-ask" | "n", None) => Directive::WontAsk,
            ("count" | "c", Some(arg)) => {
                let (u, r) = arg.split_once('/').ok_or(bad("count needs U/R"))?;
                Directive::Count {
                    uses: number(u, item)?,
                    reuses: number(r, item)?,
                }
            }
            ("max-uses" | "u", Some(arg)) => Directive::MaxUses(number(arg, item)?),
            ("max-reuses" | "r", Some(arg)) => Directive::MaxReuses(number(arg, item)?),
            ("timeout" | "t", Some(arg)) => Directive::Timeout(number(arg, item)?),
            (
                "will-report-and-limit"
                | "w"
                | "wont-report"
                | "x"
                | "wont-limit"
                | "y"
                | "do-report"
                | "d"
                | "dont-report"
                | "e"
                | "wont-ask"
                | "n",
                Some(_),
            ) => return Err(bad("takes no value")),
            ("count" | "c" | "max-uses" | "u" | "max-reuses" | "r" | "timeout" | "t", None) => {
                return Err(bad("needs a value"))
            }
            _ => return Err(bad("unknown directive")),
        };
        out.push(directive);
    }
    Ok(out)
}

/// Every `Meter` field of `headers`, in order. A field that is not text or
/// does not parse makes the whole an error (the caller ignores metering
/// for that message, as for any malformed hop-by-hop field).
pub fn parse_headers(headers: &HeaderMap) -> Result<Vec<Directive>, MeterError> {
    let mut out = Vec::new();
    for value in headers.get_all(METER) {
        let text = value.to_str().map_err(|_| MeterError {
            directive: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            reason: "not visible ASCII",
        })?;
        out.extend(parse(text)?);
    }
    Ok(out)
}

impl fmt::Display for Directive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Directive::WillReportAndLimit => f.write_str("will-report-and-limit"),
            Directive::WontReport => f.write_str("wont-report"),
            Directive::WontLimit => f.write_str("wont-limit"),
            Directive::Count { uses, reuses } => write!(f, "count={uses}/{reuses}"),
            Directive::MaxUses(n) => write!(f, "max-uses={n}"),
            Directive::MaxReuses(n) => write!(f, "max-reuses={n}"),
            Directive::DoReport => f.write_str("do-report"),
            Directive::DontReport => f.write_str("dont-report"),
            Directive::Timeout(n) => write!(f, "timeout={n}"),
            Directive::WontAsk => f.write_str("wont-ask"),
        }
    }
}

/// Writes directives as one field value, ", "-separated.
pub fn encode(directives: &[Directive]) -> HeaderValue {
    let text = directives
        .iter()
        .map(Directive::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // Only ASCII letters, digits, '-', '=', '/', ',' and ' ' are written.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// What a request's `Meter` directives say about the sender (a child
/// cache, when cuttle is the parent or accelerator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestMeter {
    /// The sender offered metering (any request directive, or an empty
    /// `Meter` field).
    pub offered: bool,
    pub will_report: bool,
    pub will_limit: bool,
    /// The sender's report: uses and reuses since its last one, summed
    /// over every `count` directive.
    pub count: Option<(u32, u32)>,
}

impl RequestMeter {
    /// The request's `Meter` fields; `None` when it has none or they do
    /// not parse.
    pub fn of(headers: &HeaderMap) -> Option<RequestMeter> {
        if !headers.contains_key(METER) {
            return None;
        }
        let directives = parse_headers(headers).ok()?;
        let mut out = RequestMeter {
            offered: true,
            will_report: true,
            will_limit: true,
            count: None,
        };
        for d in directives {
            match d {
                Directive::WontReport => out.will_report = false,
                Directive::WontLimit => out.will_limit = false,
                Directive::Count { uses, reuses } => {
                    let (u, r) = out.count.unwrap_or((0, 0));
                    out.count = Some((u.saturating_add(uses), r.saturating_add(reuses)));
                }
                _ => {}
            }
        }
        Some(out)
    }
}

/// The terms a response's `Meter` directives set for the stored object,
/// or `None` when they ask nothing of this cache (no field, no report
/// wanted and no limit) or do not parse. A `dont-report` beside a
/// `do-report` wins (the server said it does not want counts);
/// duplicated limits keep the smallest.
pub fn response_terms(headers: &HeaderMap) -> Option<MeterTerms> {
    let directives = parse_headers(headers).ok()?;
    let mut terms = MeterTerms::default();
    let mut dont = false;
    let min = |slot: &mut Option<u32>, n: u32| *slot = Some(slot.map_or(n, |o| o.min(n)));
    for d in directives {
        match d {
            Directive::DoReport => terms.report = true,
            Directive::DontReport => dont = true,
            Directive::MaxUses(n) => min(&mut terms.max_uses, n),
            Directive::MaxReuses(n) => min(&mut terms.max_reuses, n),
            Directive::Timeout(n) => min(&mut terms.timeout_minutes, n),
            _ => {}
        }
    }
    if dont {
        terms.report = false;
    }
    (terms.report || terms.max_uses.is_some() || terms.max_reuses.is_some()).then_some(terms)
}

/// Whether the server said `wont-ask` (it will not ask for metering).
pub fn wont_ask(headers: &HeaderMap) -> bool {
    parse_headers(headers).is_ok_and(|d| d.contains(&Directive::WontAsk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(METER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn every_directive_parses_long_and_short() {
        let long = parse(
            "will-report-and-limit, wont-report, wont-limit, count=10/3, max-uses=3, \
             max-reuses=2, do-report, dont-report, timeout=5, wont-ask",
        )
        .unwrap();
        let short = parse("w,x,y,c=10/3,u=3,r=2,d,e,t=5,n").unwrap();
        let expected = vec![
            Directive::WillReportAndLimit,
            Directive::WontReport,
            Directive::WontLimit,
            Directive::Count {
                uses: 10,
                reuses: 3,
            },
            Directive::MaxUses(3),
            Directive::MaxReuses(2),
            Directive::DoReport,
            Directive::DontReport,
            Directive::Timeout(5),
            Directive::WontAsk,
        ];
        assert_eq!(long, expected);
        assert_eq!(short, expected);
        assert_eq!(
            parse("DO-REPORT ,, Max-Uses = 7").unwrap(),
            vec![Directive::DoReport, Directive::MaxUses(7)]
        );
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn encode_round_trips() {
        let d = vec![
            Directive::WillReportAndLimit,
            Directive::Count {
                uses: 10,
                reuses: 0,
            },
        ];
        let v = encode(&d);
        assert_eq!(v, "will-report-and-limit, count=10/0");
        assert_eq!(parse(v.to_str().unwrap()).unwrap(), d);
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_directive() {
        for (bad, reason) in [
            ("count=10", "count needs U/R"),
            ("count=a/1", "value is not a decimal number"),
            ("count=1/", "value is not a decimal number"),
            ("count=-1/2", "value is not a decimal number"),
            ("max-uses=99999999999", "number too large"),
            ("max-uses", "needs a value"),
            ("do-report=1", "takes no value"),
            ("bogus", "unknown directive"),
            ("timeout=1.5", "value is not a decimal number"),
        ] {
            let e = parse(&format!("do-report, {bad}")).unwrap_err();
            assert_eq!(e.reason, reason, "{bad}");
            assert_eq!(e.directive, bad);
        }
        let mut h = HeaderMap::new();
        h.insert(METER, HeaderValue::from_bytes(b"do-report\xff").unwrap());
        assert!(parse_headers(&h).is_err());
        assert_eq!(response_terms(&h), None);
    }

    #[test]
    fn response_terms_need_a_report_or_a_limit() {
        assert_eq!(response_terms(&HeaderMap::new()), None);
        assert_eq!(response_terms(&headers(&["dont-report"])), None);
        assert_eq!(response_terms(&headers(&["timeout=5"])), None);
        let t = response_terms(&headers(&[
            "do-report, max-uses=5",
            "max-uses=3, timeout=9",
        ]));
        assert_eq!(
            t,
            Some(MeterTerms {
                report: true,
                max_uses: Some(3),
                max_reuses: None,
                timeout_minutes: Some(9),
            })
        );
        let t = response_terms(&headers(&["do-report, dont-report, max-reuses=2"])).unwrap();
        assert!(!t.report);
        assert_eq!(t.max_reuses, Some(2));
        assert!(wont_ask(&headers(&["wont-ask"])));
        assert!(!wont_ask(&headers(&["do-report"])));
    }

    #[test]
    fn request_meter_reads_offers_and_reports() {
        assert_eq!(RequestMeter::of(&HeaderMap::new()), None);
        let m = RequestMeter::of(&headers(&[""])).unwrap();
        assert!(m.offered && m.will_report && m.will_limit);
        let m = RequestMeter::of(&headers(&["wont-limit, count=4/1", "count=2/2"])).unwrap();
        assert!(m.will_report && !m.will_limit);
        assert_eq!(m.count, Some((6, 3)));
        assert_eq!(RequestMeter::of(&headers(&["count=x"])), None);
    }
}
