//! Timestamps and timing lines (`00:00:01,000 --> 00:00:02,500 align:start`).

use std::ops::RangeInclusive;

/// A parsed timing line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Timing {
    pub(super) start_ms: u64,
    pub(super) end_ms: u64,
    /// What follows the end timestamp, trimmed.
    pub(super) settings: String,
}

/// Parses `start --> end [settings]`. Either fraction separator (`,` or `.`) and timestamps with
/// or without hours are accepted in both formats.
pub(super) fn parse_timing(line: &str) -> Option<Timing> {
    let (start, rest) = line.split_once("-->")?;
    let rest = rest.trim_start();
    let end_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(Timing {
        start_ms: parse_timestamp(start.trim())?,
        end_ms: parse_timestamp(&rest[..end_len])?,
        settings: rest[end_len..].trim().to_string(),
    })
}

/// Parses `[h…h:]mm:ss(,|.)ttt` into milliseconds.
pub(super) fn parse_timestamp(text: &str) -> Option<u64> {
    let (clock, millis) = text.rsplit_once([',', '.'])?;
    let fields: Vec<&str> = clock.split(':').collect();
    let (hours, minutes, seconds) = match fields.as_slice() {
        [minutes, seconds] => ("0", *minutes, *seconds),
        [hours, minutes, seconds] => (*hours, *minutes, *seconds),
        _ => return None,
    };
    let hours = number(hours, 1..=9)?;
    let minutes = number(minutes, 2..=2).filter(|&m| m < 60)?;
    let seconds = number(seconds, 2..=2).filter(|&s| s < 60)?;
    let millis = number(millis, 3..=3)?;
    Some(((hours * 60 + minutes) * 60 + seconds) * 1000 + millis)
}

fn number(digits: &str, len: RangeInclusive<usize>) -> Option<u64> {
    if len.contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// `hh:mm:ss` then `separator` then milliseconds.
pub(super) fn format_timestamp(ms: u64, separator: char) -> String {
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, seconds, millis) = (rest / 60_000, rest % 60_000 / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{seconds:02}{separator}{millis:03}")
}

/// A timing line with fresh timestamps.
pub(super) fn format_timing(start_ms: u64, end_ms: u64, separator: char, settings: &str) -> String {
    let (start, end) = (
        format_timestamp(start_ms, separator),
        format_timestamp(end_ms, separator),
    );
    if settings.is_empty() {
        format!("{start} --> {end}")
    } else {
        format!("{start} --> {end} {settings}")
    }
}

/// A line that is meant as a timing line: it has `-->` and starts with a digit.
pub(super) fn is_timing_line(line: &str) -> bool {
    line.contains("-->") && starts_with_digit(line)
}

/// A line made only of timestamp characters (`00:00:0`, `00:00:05,000 -> 00:00:06,000`): a
/// broken timing line rather than text.
pub(super) fn looks_like_timing(line: &str) -> bool {
    let line = line.trim();
    starts_with_digit(line)
        && line
            .chars()
            .all(|c| c.is_ascii_digit() || ":,.-> \t".contains(c))
        && (line.matches(':').count() >= 2 || line.contains(['-', '>']))
}

fn starts_with_digit(line: &str) -> bool {
    line.trim_start().starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_srt_and_vtt_timestamps() {
        assert_eq!(parse_timestamp("00:00:01,000"), Some(1_000));
        assert_eq!(parse_timestamp("01:02:03.456"), Some(3_723_456));
        assert_eq!(parse_timestamp("02:03.456"), Some(123_456));
        assert_eq!(parse_timestamp("123:00:00.000"), Some(442_800_000));
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for text in [
            "00:00:0",
            "00:00:01,00",
            "00:00:01",
            "00:60:00,000",
            "0:0:01,000",
            "aa:bb.ccc",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
        assert_eq!(parse_timestamp("9999999999:00:00,000"), None);
    }

    #[test]
    fn parses_timing_lines_with_settings() {
        let timing = parse_timing("00:01.000 --> 00:04.500 align:start position:10% line:0")
            .expect("timing");
        assert_eq!((timing.start_ms, timing.end_ms), (1_000, 4_500));
        assert_eq!(timing.settings, "align:start position:10% line:0");
        let timing = parse_timing("00:00:01,000-->00:00:02,000").expect("no spaces");
        assert_eq!(
            (timing.start_ms, timing.end_ms, timing.settings.as_str()),
            (1_000, 2_000, "")
        );
        assert_eq!(parse_timing("00:00:01,000 --> "), None);
    }

    #[test]
    fn formats_timestamps() {
        assert_eq!(format_timestamp(3_723_456, ','), "01:02:03,456");
        assert_eq!(
            format_timing(1_000, 2_500, '.', "line:0"),
            "00:00:01.000 --> 00:00:02.500 line:0"
        );
    }

    #[test]
    fn tells_broken_timing_lines_from_text() {
        assert!(looks_like_timing("00:00:0"));
        assert!(looks_like_timing("00:00:05,000 -> 00:00:06,000"));
        assert!(!looks_like_timing("10:30."));
        assert!(!looks_like_timing("1984"));
        assert!(is_timing_line("00:00:01,000 --> 00:00:0"));
        assert!(!is_timing_line("a --> b"));
    }
}
