//! HTTP-dates (RFC 9110 §5.6.7): parsed in all three forms a recipient
//! must accept, written as IMF-fixdate.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::HeaderValue;

/// Parses an HTTP-date into unix seconds (a date before 1970 gives 0): the
/// IMF-fixdate, or the obsolete RFC 850 and asctime forms that recipients
/// must accept (RFC 9110 §5.6.7). Being "robust" as that section encourages,
/// day, month and `GMT` names match in any case and the weekday is not
/// checked against the date; everything else must be exact (httpdate
/// refuses both, and Expires in those forms then meant "expired").
pub fn parse_http_date(value: &HeaderValue) -> Option<u64> {
    let text = value.to_str().ok()?.trim();
    // Nearly every date is a well-formed IMF-fixdate: httpdate's parser
    // reads it for a third of the cost, with no clock to read. RFC 850's
    // two-digit years are read here as RFC 9110 says, not by httpdate.
    if text.as_bytes().get(3) == Some(&b',') {
        if let Ok(t) = httpdate::parse_http_date(text) {
            return t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        }
    }
    parse_date_text(text, current_year())
}

/// The UTC year now (for RFC 850's two-digit years).
fn current_year() -> u64 {
    let today = httpdate::fmt_http_date(SystemTime::now());
    today
        .get(12..16)
        .and_then(|y| y.parse().ok())
        .unwrap_or(1970)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn parse_date_text(text: &str, this_year: u64) -> Option<u64> {
    if !text.is_ascii() {
        return None;
    }
    let is_name = |names: &[&str], s: &str| names.iter().any(|n| n.eq_ignore_ascii_case(s));
    match text.split_once(", ") {
        // IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
        Some((day, rest)) if day.len() == 3 => {
            let b = rest.as_bytes();
            if !is_name(&DAYS, day) || b.len() != 24 || b[2] != b' ' || b[6] != b' ' {
                return None;
            }
            if b[11] != b' ' || !rest[20..].eq_ignore_ascii_case(" GMT") {
                return None;
            }
            date_secs(
                digits(&rest[7..11])?,
                month(&rest[3..6])?,
                digits(&rest[..2])?,
                &rest[12..20],
            )
        }
        // RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`.
        Some((day, rest)) => {
            let b = rest.as_bytes();
            if !is_name(&LONG_DAYS, day) || b.len() != 22 || b[2] != b'-' || b[6] != b'-' {
                return None;
            }
            if b[9] != b' ' || !rest[18..].eq_ignore_ascii_case(" GMT") {
                return None;
            }
            let year = two_digit_year(digits(&rest[7..9])?, this_year);
            date_secs(
                year,
                month(&rest[3..6])?,
                digits(&rest[..2])?,
                &rest[10..18],
            )
        }
        // asctime: `Sun Nov  6 08:49:37 1994`.
        None => {
            let b = text.as_bytes();
            if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
                return None;
            }
            if !is_name(&DAYS, &text[..3]) {
                return None;
            }
            let day = match text[8..10].strip_prefix(' ') {
                Some(one) => digits(one)?,
                None => digits(&text[8..10])?,
            };
            date_secs(
                digits(&text[20..])?,
                month(&text[4..7])?,
                day,
                &text[11..19],
            )
        }
    }
}

/// The value of a run of ASCII digits (no sign, no spaces).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u64> {
    let i = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(s))?;
    u64::try_from(i + 1).ok()
}

/// RFC 9110 §5.6.7: a year "more than 50 years in the future" is the most
/// recent past one with those digits; so the year within 50 of this one.
fn two_digit_year(yy: u64, this_year: u64) -> u64 {
    let year = this_year - this_year % 100 + yy;
    if year > this_year + 50 {
        year - 100
    } else if year + 50 <= this_year {
        year + 100
    } else {
        year
    }
}

/// Unix seconds of a valid date and `HH:MM:SS` time; before 1970 gives 0.
fn date_secs(year: u64, month: u64, day: u64, time: &str) -> Option<u64> {
    let b = time.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (hour, min, sec) = (
        digits(&time[..2])?,
        digits(&time[3..5])?,
        digits(&time[6..])?,
    );
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    // A leap second (60) is allowed by the grammar's comment.
    if day == 0 || day > month_days || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::try_from(hour * 3600 + min * 60 + sec).ok()?;
    Some(u64::try_from(secs).unwrap_or(0))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`). The parser gives at most 4-digit years, so no overflow.
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    let y = year as i64 - i64::from(month <= 2);
    let (m, d) = (month as i64, day as i64);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats unix seconds as an IMF-fixdate header value.
pub fn http_date_value(secs: u64) -> HeaderValue {
    // httpdate formats years up to 9999; later times are cropped to its range.
    let secs = secs.min(253_402_300_799);
    let t = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let text = httpdate::fmt_http_date(t.max(SystemTime::UNIX_EPOCH));
    HeaderValue::from_str(&text)
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 UTC, RFC 9110's example date.
    const T0: u64 = 784_111_777;

    #[test]
    fn http_dates_in_all_three_forms() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_http_date(&HeaderValue::from_static(text)),
                Some(T0),
                "{text}"
            );
        }
        assert_eq!(parse_http_date(&HeaderValue::from_static("0")), None);
        assert_eq!(http_date_value(T0), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date_value(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// RFC 9110 §5.6.7: recipients must accept RFC 850 and asctime dates and are
    /// encouraged to be robust: names in any case, a weekday that does not match
    /// the date (cache-tests freshness-expires-ansi-c, -wrong-case-*).
    #[test]
    fn legacy_and_wrong_case_http_dates_are_accepted() {
        const AUG_8_2050: u64 = 2_543_536_878; // 02:01:18 UTC, a Monday
        const AUG_18_2050: u64 = 2_544_400_878; // 02:01:18 UTC, a Thursday
        for (text, want) in [
            ("Thu Aug  8 02:01:18 2050", AUG_8_2050),
            ("Mon Aug  8 02:01:18 2050", AUG_8_2050),
            ("Thu Aug 18 02:01:18 2050", AUG_18_2050),
            ("THU, 18 Aug 2050 02:01:18 GMT", AUG_18_2050),
            ("Thu, 18 AUG 2050 02:01:18 GMT", AUG_18_2050),
            ("Thu, 18 Aug 2050 02:01:18 gMT", AUG_18_2050),
            ("thursday, 18-aug-50 02:01:18 gmt", AUG_18_2050),
            ("Sat, 29 Feb 2000 00:00:00 GMT", 951_782_400),
            ("Fri, 31 Dec 1999 23:59:59 GMT", 946_684_799),
            // Before 1970: as old as a unix time can say.
            ("Sat, 01 Jan 1960 00:00:00 GMT", 0),
        ] {
            assert_eq!(parse_date_text(text, 2026), Some(want), "{text}");
        }
    }

    #[test]
    fn malformed_http_dates_are_refused() {
        for text in [
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Xyz, 18 Aug 2050 02:01:18 GMT",
            "Thu, 30 Feb 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:01:18 GMT",
            "Thu, 18 Aug 2050 02:61:18 GMT",
            "Thu, 00 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aux 2050 02:01:18 GMT",
            "Thu, +8 Aug 2050 02:01:18 GMT",
            "Thu Aug 8 02:01:18 2050",
            "Thu Aug  8 02:01:18 2050 GMT",
            "Thu, 18-Aug-50 02:01:18 GMT",
            "Thursday, 18 Aug 2050 02:01:18 GMT",
            "0",
            "",
        ] {
            assert_eq!(parse_date_text(text, 2026), None, "{text}");
        }
    }

    /// RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is the most
    /// recent past year with those digits.
    #[test]
    fn rfc850_two_digit_years() {
        let year_of = |yy: &str, this_year| {
            let text = format!("Monday, 01-Jan-{yy} 00:00:00 GMT");
            let secs = parse_date_text(&text, this_year).unwrap();
            httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs))[12..16]
                .to_string()
        };
        assert_eq!(year_of("75", 2026), "2075");
        assert_eq!(year_of("77", 2026), "1977");
        assert_eq!(year_of("26", 2026), "2026");
        assert_eq!(year_of("99", 2026), "1999");
        assert_eq!(year_of("10", 2090), "2110");
    }
}
