//! Squid's value syntaxes: sizes with byte units, times with time units, on/off flags, plain integers, port numbers and TCP/UDP service names.

use std::sync::OnceLock;
use std::time::Duration;

/// Byte units Squid accepts after a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SizeUnit {
    Bytes,
    KB,
    MB,
    GB,
}

impl SizeUnit {
    fn multiplier(self) -> u64 {
        match self {
            SizeUnit::Bytes => 1,
            SizeUnit::KB => 1 << 10,
            SizeUnit::MB => 1 << 20,
            SizeUnit::GB => 1 << 30,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SizeUnit::Bytes => "bytes",
            SizeUnit::KB => "KB",
            SizeUnit::MB => "MB",
            SizeUnit::GB => "GB",
        }
    }

    fn parse(s: &str) -> Option<SizeUnit> {
        match s.to_ascii_lowercase().as_str() {
            "byte" | "bytes" => Some(SizeUnit::Bytes),
            "kb" => Some(SizeUnit::KB),
            "mb" => Some(SizeUnit::MB),
            "gb" => Some(SizeUnit::GB),
            _ => None,
        }
    }
}

/// A non-negative decimal number as Squid writes them: digits with an
/// optional fraction. No sign, exponent, `inf` or `nan`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(u64),
    Frac(f64),
}

fn parse_number(s: &str) -> Option<Number> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match frac {
        None if digits(int) => int.parse().ok().map(Number::Int),
        Some(f) if (digits(int) || int.is_empty()) && digits(f) => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Number::Frac),
        _ => None,
    }
}

/// Multiply a number by an integer scale, refusing overflow.
fn scale(n: Number, by: u128) -> Option<u128> {
    match n {
        Number::Int(i) => u128::from(i).checked_mul(by),
        Number::Frac(f) => {
            let v = (f * by as f64).round();
            // 2^100 is far beyond any meaningful size or time and fits u128.
            (v.is_finite() && (0.0..1.0e30).contains(&v)).then_some(v as u128)
        }
    }
}

/// A size: `NUMBER [UNIT]`. Returns the size in bytes and whether the unit
/// token was used. With no unit Squid assumes the directive's default unit
/// and warns; the caller gets `unit_missing` to do the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size {
    pub bytes: u64,
    pub unit_missing: bool,
}

pub(crate) fn parse_size(
    number: &str,
    unit: Option<&str>,
    default: SizeUnit,
) -> Result<Size, String> {
    let n = parse_number(number).ok_or_else(|| format!("\"{number}\" is not a size"))?;
    let (unit, unit_missing) = match unit {
        None => (default, true),
        Some(u) => (
            SizeUnit::parse(u)
                .ok_or_else(|| format!("\"{u}\" is not a size unit (bytes, KB, MB or GB)"))?,
            false,
        ),
    };
    let bytes = scale(n, u128::from(unit.multiplier()))
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("size \"{number}\" is too large"))?;
    Ok(Size {
        bytes,
        unit_missing,
    })
}

/// A size written as one word, as in `max-size=1048576` or `max-size=1MB`:
/// digits, then an optional unit (default bytes).
pub(crate) fn parse_size_word(word: &str) -> Result<u64, String> {
    let split = word
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(word.len());
    let (number, unit) = word.split_at(split);
    let unit = if unit.is_empty() { None } else { Some(unit) };
    parse_size(number, unit, SizeUnit::Bytes).map(|s| s.bytes)
}

/// Time units Squid accepts, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Fortnight,
    Month,
    Year,
    Decade,
}

const UNITS: [(TimeUnit, &str); 12] = [
    (TimeUnit::Nanosecond, "nanosecond"),
    (TimeUnit::Microsecond, "microsecond"),
    (TimeUnit::Millisecond, "millisecond"),
    (TimeUnit::Second, "second"),
    (TimeUnit::Minute, "minute"),
    (TimeUnit::Hour, "hour"),
    (TimeUnit::Day, "day"),
    (TimeUnit::Week, "week"),
    (TimeUnit::Fortnight, "fortnight"),
    (TimeUnit::Month, "month"),
    (TimeUnit::Year, "year"),
    (TimeUnit::Decade, "decade"),
];

impl TimeUnit {
    fn nanos(self) -> u128 {
        const MS: u128 = 1_000_000;
        const DAY: u128 = 86_400 * 1_000 * MS;
        // Squid's year is 31557790080 ms ("just over 365 days"); a month is 30 days.
        const YEAR: u128 = 31_557_790_080 * MS;
        match self {
            TimeUnit::Nanosecond => 1,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Millisecond => MS,
            TimeUnit::Second => 1_000 * MS,
            TimeUnit::Minute => 60_000 * MS,
            TimeUnit::Hour => 3_600_000 * MS,
            TimeUnit::Day => DAY,
            TimeUnit::Week => 7 * DAY,
            TimeUnit::Fortnight => 14 * DAY,
            TimeUnit::Month => 30 * DAY,
            TimeUnit::Year => YEAR,
            TimeUnit::Decade => 10 * YEAR,
        }
    }

    /// Squid compares the unit word's beginning with the unit name, so
    /// `second`, `seconds` (and any longer word starting so) all match.
    fn parse(word: &str) -> Option<TimeUnit> {
        let lower = word.to_ascii_lowercase();
        UNITS
            .iter()
            .find(|(_, name)| lower.starts_with(name))
            .map(|(u, _)| *u)
    }
}

/// What a time directive accepts: its unit when none is written, and the
/// smallest unit allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeSpec {
    pub default: TimeUnit,
    pub smallest: TimeUnit,
}

/// Directives typed "time-units" in squid.conf.documented: seconds by default.
pub(crate) const SECONDS: TimeSpec = TimeSpec {
    default: TimeUnit::Second,
    smallest: TimeUnit::Second,
};

/// Directives typed "(msec)": milliseconds by default.
pub(crate) const MILLISECONDS: TimeSpec = TimeSpec {
    default: TimeUnit::Millisecond,
    smallest: TimeUnit::Millisecond,
};

/// A time: `NUMBER [UNIT]`. Returns the duration and whether `unit` was used
/// (false when it was `None`).
pub(crate) fn parse_time(
    number: &str,
    unit: Option<&str>,
    spec: TimeSpec,
) -> Result<(Duration, bool), String> {
    let n = parse_number(number).ok_or_else(|| format!("\"{number}\" is not a time value"))?;
    let (unit, used) = match unit {
        None => (spec.default, false),
        Some(word) => {
            let u = TimeUnit::parse(word).ok_or_else(|| {
                format!("\"{word}\" is not a time unit (seconds, minutes, hours, days, ...)")
            })?;
            if u.nanos() < spec.smallest.nanos() {
                return Err(format!("unit \"{word}\" is too small here"));
            }
            (u, true)
        }
    };
    let nanos = scale(n, unit.nanos()).ok_or_else(|| format!("time \"{number}\" is too large"))?;
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("time \"{number}\" is too large"))?;
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok((Duration::new(secs, sub), used))
}

/// `on`/`off`, also `enable`/`disable` as Squid allows.
pub(crate) fn parse_onoff(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "enable" => Ok(true),
        "off" | "disable" => Ok(false),
        _ => Err(format!("\"{s}\" is not on or off")),
    }
}

/// A non-negative integer in decimal.
pub(crate) fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" is not a non-negative integer"));
    }
    s.parse().map_err(|_| format!("\"{s}\" is too large"))
}

/// A signed integer in decimal (Squid's `xatoi`), for options it clamps.
pub(crate) fn parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" is not an integer"));
    }
    s.parse().map_err(|_| format!("\"{s}\" is out of range"))
}

/// A port number 0-65535 given in digits.
pub(crate) fn parse_port_number(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" is not a port number"));
    }
    s.parse()
        .map_err(|_| format!("\"{s}\" is not a port number (0-65535)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Service names cuttle knows without /etc/services (minimal machines and
/// containers often lack it). Facts from the IANA registry and common use.
const BUILTIN_SERVICES: &[(&str, u16, &[Proto])] = &[
    ("ftp", 21, &[Proto::Tcp]),
    ("gopher", 70, &[Proto::Tcp]),
    ("http", 80, &[Proto::Tcp]),
    ("www", 80, &[Proto::Tcp]),
    ("wais", 210, &[Proto::Tcp]),
    ("http-mgmt", 280, &[Proto::Tcp]),
    ("https", 443, &[Proto::Tcp, Proto::Udp]),
    ("gss-http", 488, &[Proto::Tcp]),
    ("filemaker", 591, &[Proto::Tcp]),
    ("multiling-http", 777, &[Proto::Tcp]),
    ("squid", 3128, &[Proto::Tcp]),
    ("icp", 3130, &[Proto::Udp]),
    ("icpv2", 3130, &[Proto::Udp]),
    ("htcp", 4827, &[Proto::Udp, Proto::Tcp]),
    ("http-alt", 8080, &[Proto::Tcp]),
    ("webcache", 8080, &[Proto::Tcp]),
];

/// `(name, port, proto)` from /etc/services, read once per process.
fn system_services() -> &'static [(String, u16, String)] {
    static SERVICES: OnceLock<Vec<(String, u16, String)>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let path = std::path::Path::new("/etc/services");
        let ok = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() < (4 << 20));
        if !ok {
            return Vec::new();
        }
        std::fs::read(path)
            .map(|bytes| parse_services(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default()
    })
}

fn parse_services(text: &str) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        for n in std::iter::once(name).chain(fields) {
            out.push((n.to_string(), port, proto.to_string()));
        }
    }
    out
}

/// A port given as a number or as a service name (Squid's GetTcpService /
/// GetUdpService): /etc/services first, then the built-in table.
pub(crate) fn parse_service(s: &str, proto: Proto) -> Result<u16, String> {
    if s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return parse_port_number(s)
            .map_err(|_| format!("\"{s}\" is not a port number or service name"));
    }
    let system = system_services()
        .iter()
        .find(|(name, _, p)| name == s && p == proto.name())
        .map(|(_, port, _)| *port);
    let builtin = || {
        BUILTIN_SERVICES
            .iter()
            .find(|(name, _, protos)| *name == s && protos.contains(&proto))
            .map(|(_, port, _)| *port)
    };
    system
        .or_else(builtin)
        .ok_or_else(|| format!("\"{s}\" is not a port number or service name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sizes_with_units() {
        assert_eq!(
            parse_size("256", Some("MB"), SizeUnit::Bytes)
                .unwrap()
                .bytes,
            256 * MIB
        );
        assert_eq!(
            parse_size("10240", Some("MB"), SizeUnit::Bytes)
                .unwrap()
                .bytes,
            10240 * MIB
        );
        assert_eq!(
            parse_size("15", Some("KB"), SizeUnit::Bytes).unwrap().bytes,
            15 * 1024
        );
        assert_eq!(
            parse_size("2", Some("gb"), SizeUnit::Bytes).unwrap().bytes,
            2 << 30
        );
        assert_eq!(
            parse_size("7", Some("bytes"), SizeUnit::KB).unwrap().bytes,
            7
        );
        assert_eq!(
            parse_size("1.5", Some("KB"), SizeUnit::Bytes)
                .unwrap()
                .bytes,
            1536
        );
        assert_eq!(
            parse_size("0", Some("KB"), SizeUnit::Bytes).unwrap().bytes,
            0
        );
    }

    #[test]
    fn size_without_unit_uses_the_default_and_says_so() {
        let s = parse_size("64", None, SizeUnit::KB).unwrap();
        assert_eq!(
            s,
            Size {
                bytes: 64 * 1024,
                unit_missing: true
            }
        );
        assert!(
            !parse_size("64", Some("KB"), SizeUnit::KB)
                .unwrap()
                .unit_missing
        );
    }

    #[test]
    fn size_errors() {
        assert!(parse_size("x", Some("MB"), SizeUnit::Bytes)
            .unwrap_err()
            .contains("not a size"));
        assert!(parse_size("-1", Some("MB"), SizeUnit::Bytes).is_err());
        assert!(parse_size("1e3", None, SizeUnit::Bytes).is_err());
        assert!(parse_size("inf", None, SizeUnit::Bytes).is_err());
        assert!(parse_size("12", Some("TB"), SizeUnit::Bytes)
            .unwrap_err()
            .contains("size unit"));
        assert!(parse_size("99999999999999", Some("GB"), SizeUnit::Bytes)
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn size_words() {
        assert_eq!(parse_size_word("1048576").unwrap(), MIB);
        assert_eq!(parse_size_word("16KB").unwrap(), 16384);
        assert!(parse_size_word("16QB").is_err());
        assert!(parse_size_word("").is_err());
    }

    #[test]
    fn times_with_units() {
        let t = |n, u| parse_time(n, u, SECONDS).unwrap().0;
        assert_eq!(t("10", Some("seconds")), Duration::from_secs(10));
        assert_eq!(t("1", Some("second")), Duration::from_secs(1));
        assert_eq!(t("5", Some("minutes")), Duration::from_secs(300));
        assert_eq!(t("1", Some("minute")), Duration::from_secs(60));
        assert_eq!(t("2", Some("hours")), Duration::from_secs(7200));
        assert_eq!(t("1", Some("day")), Duration::from_secs(86_400));
        assert_eq!(t("1", Some("week")), Duration::from_secs(604_800));
        assert_eq!(t("1", Some("fortnight")), Duration::from_secs(1_209_600));
        assert_eq!(t("1", Some("month")), Duration::from_secs(2_592_000));
        assert_eq!(t("1", Some("year")), Duration::from_millis(31_557_790_080));
        assert_eq!(
            t("1", Some("decade")),
            Duration::from_millis(315_577_900_800)
        );
        assert_eq!(t("1", Some("HOURS")), Duration::from_secs(3600));
        assert_eq!(t("0.5", Some("seconds")), Duration::from_millis(500));
        assert_eq!(t("30", None), Duration::from_secs(30));
    }

    #[test]
    fn msec_directives_default_to_milliseconds() {
        assert_eq!(
            parse_time("20", None, MILLISECONDS).unwrap(),
            (Duration::from_millis(20), false)
        );
        assert_eq!(
            parse_time("2", Some("seconds"), MILLISECONDS).unwrap(),
            (Duration::from_secs(2), true)
        );
        assert_eq!(
            parse_time("250", Some("milliseconds"), MILLISECONDS)
                .unwrap()
                .0,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn time_errors() {
        assert!(parse_time("ten", None, SECONDS)
            .unwrap_err()
            .contains("not a time"));
        assert!(parse_time("10", Some("parsecs"), SECONDS)
            .unwrap_err()
            .contains("not a time unit"));
        // Seconds-typed directives do not take milliseconds (Squid refuses too).
        assert!(parse_time("500", Some("milliseconds"), SECONDS)
            .unwrap_err()
            .contains("too small"));
        assert!(parse_time("99999999999999999999", Some("decades"), SECONDS).is_err());
    }

    #[test]
    fn onoff() {
        assert!(parse_onoff("on").unwrap());
        assert!(parse_onoff("enable").unwrap());
        assert!(!parse_onoff("off").unwrap());
        assert!(!parse_onoff("disable").unwrap());
        assert!(!parse_onoff("OFF").unwrap());
        assert!(parse_onoff("yes").unwrap_err().contains("not on or off"));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_uint("42").unwrap(), 42);
        assert!(parse_uint("-1").is_err());
        assert!(parse_uint("4x").is_err());
        assert_eq!(parse_int("-3").unwrap(), -3);
        assert!(parse_int("-").is_err());
    }

    #[test]
    fn ports_and_services() {
        assert_eq!(parse_port_number("3128").unwrap(), 3128);
        assert_eq!(parse_port_number("0").unwrap(), 0);
        assert!(parse_port_number("65536").is_err());
        assert!(parse_port_number("x").is_err());
        assert_eq!(parse_service("3130", Proto::Udp).unwrap(), 3130);
        // Found in /etc/services or in the built-in table alike.
        assert_eq!(parse_service("http", Proto::Tcp).unwrap(), 80);
        assert_eq!(parse_service("squid", Proto::Tcp).unwrap(), 3128);
        assert_eq!(parse_service("htcp", Proto::Udp).unwrap(), 4827);
        assert_eq!(parse_service("icp", Proto::Udp).unwrap(), 3130);
        assert_eq!(
            parse_service("x", Proto::Tcp).unwrap_err(),
            "\"x\" is not a port number or service name"
        );
        assert!(parse_service("80x", Proto::Tcp).is_err());
        assert!(parse_service("99999", Proto::Tcp).is_err());
    }

    #[test]
    fn services_file_format() {
        let s = parse_services(
            "# c\nhttp\t80/tcp www # web\nicpv2 3130/udp icp\nbad line\nx 99999/tcp\n",
        );
        assert!(s.contains(&("www".into(), 80, "tcp".into())));
        assert!(s.contains(&("icp".into(), 3130, "udp".into())));
        assert_eq!(s.len(), 4);
    }
}
