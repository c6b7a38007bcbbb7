//! Durations written as Go's `time.ParseDuration` reads them, since etcd's
//! duration flags go through it: a sequence of decimal numbers, each with an
//! optional fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`),
//! such as `300ms`, `1.5s`, `1h30m` or `2h45m`; `0` alone is zero.
//!
//! No maintained crate reads exactly this syntax: `humantime` accepts more
//! (spaces, days, `sec`) and lacks the Greek `μs`; `go-parse-duration`
//! hangs on a long fraction and panics on `µs`. So this module follows
//! Go's grammar and arithmetic step by step, fractions included (Go turns
//! them into nanoseconds through a float64, and so does this), and it must
//! never wrap: anything beyond Go's largest duration (2^63 - 1 ns, about
//! 292 years) is an error, as it is in Go. A negative duration, which Go
//! reads, has no meaning for any flag here and is refused.

use std::time::Duration;

/// Why a duration could not be read; the text follows Go's errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// Go's largest duration plus one, in nanoseconds: sums may reach it but
/// not pass it (then only a negative duration could hold it).
const LIMIT: u64 = 1 << 63;

/// Reads a duration as Go's `time.ParseDuration` does.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError(format!("time: invalid duration {text:?}"));
    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some((&sign, rest)) = s.split_first() {
        if sign == b'-' || sign == b'+' {
            negative = sign == b'-';
            s = rest;
        }
    }
    if s == b"0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (mut value, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let had_int = s.len() != before;
        let (mut fraction, mut scale, mut had_fraction) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix(b".") {
            let (f, sc, rest2) = leading_fraction(rest);
            had_fraction = rest2.len() != rest.len();
            (fraction, scale, s) = (f, sc, rest2);
        }
        if !had_int && !had_fraction {
            return Err(invalid());
        }
        let unit_len = s.iter().position(|&c| c == b'.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError(format!("time: missing unit in duration {text:?}")));
        }
        let (unit_text, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit_text).ok_or_else(|| {
            DurationError(format!("time: unknown unit {:?} in duration {text:?}", String::from_utf8_lossy(unit_text)))
        })?;
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            // As Go: a float64 keeps a fraction of an hour exact to the
            // nanosecond; the product is at most 3.6e12, so the cast is
            // exact and the sum cannot overflow a u64 (value <= 2^63).
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).filter(|&t| t <= LIMIT).ok_or_else(invalid)?;
    }
    if negative {
        return if total == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(DurationError(format!("{text:?} is negative: a duration here must not be")))
        };
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total))
}

/// Whether `d` is no longer than Go's largest duration (2^63 - 1 ns).
pub fn fits_go(d: Duration) -> bool {
    d.as_nanos() < u128::from(LIMIT)
}

/// Nanoseconds in one of Go's duration units.
fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        // "µs" is U+00B5 MICRO SIGN, "μs" U+03BC GREEK SMALL LETTER MU.
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60_000_000_000,
        b"h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// The leading digits of `s` as a number and what follows them; `None` if
/// the number passes 2^63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut x: u64 = 0;
    for &c in &s[..digits] {
        x = x.checked_mul(10)?.checked_add(u64::from(c - b'0')).filter(|&x| x <= LIMIT)?;
    }
    Some((x, &s[digits..]))
}

/// The leading digits of a fraction as a number, its scale (10 to the
/// digits kept) and what follows them. Digits past what a u64 holds are
/// read but dropped: they only lose precision below a nanosecond.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (mut x, mut scale) = (0u64, 1f64);
    for &c in &s[..digits] {
        match x.checked_mul(10).and_then(|y| y.checked_add(u64::from(c - b'0'))).filter(|&y| y <= LIMIT) {
            Some(y) if x <= (LIMIT - 1) / 10 => {
                x = y;
                scale *= 10.0;
            }
            _ => break,
        }
    }
    (x, scale, &s[digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;

    #[test]
    fn go_durations_read_as_go_reads_them() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("5s", 5 * S),
            ("+5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.004s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("1.5s", 1500 * MS),
            ("10ns", 10 * NS),
            ("1us", US),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("300ms", 300 * MS),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("1h30m", H + 30 * M),
            ("2h45m", 2 * H + 45 * M),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("1h2m3s4ms5us6ns", H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52763797000),
            ("0.3333333333333333333h", 20 * M),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372539827),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", (1 << 63) - 1),
            ("9223372036854775.807us", (1 << 63) - 1),
            ("9223372036s854ms775us807ns", (1 << 63) - 1),
            ("9223372036854ms775us807ns", (1 << 63) - 1),
        ];
        for &(text, nanos) in table {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
    }

    #[test]
    fn what_go_refuses_is_refused() {
        let table: &[(&str, &str)] = &[
            ("", "invalid duration"),
            ("3", "missing unit"),
            ("10", "missing unit"),
            ("-", "invalid duration"),
            ("s", "invalid duration"),
            (".", "invalid duration"),
            ("-.", "invalid duration"),
            (".s", "invalid duration"),
            ("+.s", "invalid duration"),
            ("1d", "unknown unit \"d\""),
            ("1 h", "unknown unit \" h\""),
            ("1h 30m", "unknown unit \"h \""),
            ("1sec", "unknown unit \"sec\""),
            ("\u{85}\u{85}", "invalid duration"),
            ("ms", "invalid duration"),
        ];
        for &(text, want) in table {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_duration_past_gos_largest_is_an_error_not_a_wrap() {
        for text in [
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "2562048h",
            "2562047h47m16.854775808s",
            "18446744073709551616ns",
            "99999999999999999999999h",
            "1000000000000000000000000000000000s",
            "5124095h1h",
        ] {
            assert_eq!(parse(text), Err(DurationError(format!("time: invalid duration {text:?}"))), "{text}");
        }
        // The largest whole number of hours still fits.
        assert_eq!(parse("2562047h"), Ok(Duration::from_secs(2562047 * 3600)));
    }

    #[test]
    fn negative_durations_are_refused() {
        for text in ["-5s", "-2m3.4s", "-1ns"] {
            assert!(parse(text).unwrap_err().to_string().contains("negative"), "{text}");
        }
    }

    #[test]
    fn a_fraction_longer_than_a_u64_loses_only_precision() {
        let long = format!("1.{}s", "0".repeat(200));
        assert_eq!(parse(&long), Ok(Duration::from_secs(1)));
        let nines = format!("0.{}s", "9".repeat(40));
        assert_eq!(parse(&nines), Ok(Duration::from_secs(1)));
    }
}
