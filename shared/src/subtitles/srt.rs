//! SubRip: parsing, and writing SRT cues as WebVTT.
//!
//! A cue is an optional number line, a timing line and text lines. The text runs until the next
//! cue's timing line (and the number line just before it), so a missing blank line between cues
//! or a blank line inside a cue's text is tolerated; blank lines ending the text separate cues.

use super::error::snippet;
use super::markup::{self, Token};
use super::text::{Writer, is_blank};
use super::timing::{format_timing, is_timing_line, looks_like_timing, parse_timing};
use super::{Body, Cue, SubtitleError};

/// Whether line `at` starts an SRT cue: a timing line, or a number followed by something
/// timing-like.
pub(super) fn looks_like_cue_start(lines: &[&str], at: usize) -> bool {
    let Some(line) = lines.get(at) else {
        return false;
    };
    is_timing_line(line)
        || (is_number(line)
            && lines
                .get(at + 1)
                .is_some_and(|next| is_timing_line(next) || looks_like_timing(next)))
}

fn is_number(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn parse(lines: &[&str]) -> Result<Body, SubtitleError> {
    let mut body = Body::default();
    let mut at = 0;
    while let Some(line) = lines.get(at) {
        if is_blank(line) {
            body.push_blank(line);
            at += 1;
        } else {
            let (cue, end) = parse_cue(lines, at)?;
            body.push_cue(cue);
            at = end;
        }
    }
    if body.cues.is_empty() {
        return Err(SubtitleError::NotSubtitles { line: 1 });
    }
    Ok(body)
}

/// Parses the cue starting at the non-blank line `start`; returns it and the index after its
/// text (trailing blank lines excluded).
fn parse_cue(lines: &[&str], start: usize) -> Result<(Cue, usize), SubtitleError> {
    let first = lines[start];
    let (identifier, timing_at) = if is_timing_line(first) {
        (None, start)
    } else if is_number(first) {
        (Some(first), start + 1)
    } else {
        return Err(SubtitleError::NotSubtitles { line: start + 1 });
    };
    let timing_line = match lines.get(timing_at) {
        Some(line) if !is_blank(line) => *line,
        _ => return Err(missing_timing(start, first)),
    };
    let timing = parse_timing(timing_line).ok_or_else(|| SubtitleError::InvalidTiming {
        line: timing_at + 1,
        text: snippet(timing_line),
    })?;
    let text_start = timing_at + 1;
    let next = next_cue_start(lines, text_start)?;
    let text_end = (text_start..next)
        .rev()
        .find(|&i| !is_blank(lines[i]))
        .map_or(text_start, |i| i + 1);
    let cue = Cue::new(
        identifier,
        timing_line,
        timing,
        &lines[text_start..text_end],
    );
    Ok((cue, text_end))
}

/// The index of the next cue's first line (its number, or its timing line), or `lines.len()`.
fn next_cue_start(lines: &[&str], from: usize) -> Result<usize, SubtitleError> {
    for at in from..lines.len() {
        if is_timing_line(lines[at]) {
            let numbered = at > from && is_number(lines[at - 1]);
            return Ok(if numbered { at - 1 } else { at });
        }
        if at > from && is_blank(lines[at - 1]) {
            check_paragraph(lines, at)?;
        }
    }
    Ok(lines.len())
}

/// Text after a blank line that is really a broken cue start (a truncated file, a mistyped
/// arrow) is an error rather than more text of the previous cue.
fn check_paragraph(lines: &[&str], at: usize) -> Result<(), SubtitleError> {
    let line = lines[at];
    if looks_like_timing(line) {
        return Err(SubtitleError::InvalidTiming {
            line: at + 1,
            text: snippet(line),
        });
    }
    if !is_number(line) {
        return Ok(());
    }
    match lines.get(at + 1) {
        None => Err(missing_timing(at, line)),
        Some(next) if is_blank(next) => Err(missing_timing(at, line)),
        Some(next) if looks_like_timing(next) && !is_timing_line(next) => {
            Err(SubtitleError::InvalidTiming {
                line: at + 2,
                text: snippet(next),
            })
        }
        Some(_) => Ok(()),
    }
}

fn missing_timing(at: usize, number: &str) -> SubtitleError {
    SubtitleError::MissingTiming {
        line: at + 1,
        number: snippet(number.trim()),
    }
}

/// Writes SRT cues as WebVTT (see [`Subtitles::write_as`](super::Subtitles::write_as)).
pub(super) fn write_vtt(cues: &[Cue], writer: &mut Writer) {
    writer.line("WEBVTT");
    for cue in cues {
        writer.line("");
        if let Some(identifier) = cue.identifier() {
            writer.line(identifier.trim());
        }
        let settings = position_settings(cue.lines());
        writer.line(&format_timing(cue.start_ms(), cue.end_ms(), '.', &settings));
        for line in cue.lines().iter().map(|line| vtt_line(line)) {
            if !line.trim().is_empty() {
                writer.line(line.trim());
            }
        }
    }
}

/// An SRT text line as WebVTT cue text: `<i> <b> <u>` kept, other tags and override blocks
/// dropped, text escaped.
fn vtt_line(line: &str) -> String {
    markup::tokenize(line)
        .into_iter()
        .map(|token| match token {
            Token::Text(text) => markup::escape_vtt(&markup::decode_entities(text)),
            Token::Tag { name, closing, .. } if markup::is_basic_tag(name) => {
                markup::basic_tag(name, closing)
            }
            Token::Tag { .. } | Token::Override(_) => String::new(),
        })
        .collect()
}

/// WebVTT cue settings for an `{\anN}` position override leading the cue (numpad layout:
/// 7–9 top, 4–6 middle, 1–3 bottom; left, centre, right columns).
fn position_settings(lines: &[String]) -> String {
    let Some(first) = lines.iter().find(|line| !is_blank(line)) else {
        return String::new();
    };
    let position = markup::tokenize(first.trim_start())
        .into_iter()
        .map_while(|token| match token {
            Token::Override(raw) => Some(raw),
            _ => None,
        })
        .find_map(|raw| {
            let digit = raw.split("\\an").nth(1)?.chars().next()?.to_digit(10)?;
            (1..=9).contains(&digit).then_some(digit)
        });
    let Some(position) = position else {
        return String::new();
    };
    let vertical = match position {
        7..=9 => Some("line:0"),
        4..=6 => Some("line:50%"),
        _ => None,
    };
    let horizontal = match position % 3 {
        1 => Some("align:start"),
        0 => Some("align:end"),
        _ => None,
    };
    [vertical, horizontal]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Body, SubtitleError> {
        parse(&text.split('\n').collect::<Vec<_>>())
    }

    #[test]
    fn tolerates_missing_blank_lines_and_numbers() {
        let body = parse_text(
            "1\n00:00:01,000 --> 00:00:02,000\nOne\n2\n00:00:03,000 --> 00:00:04,000\nTwo\n\n\
             00:00:05,000 --> 00:00:06,000\nThree",
        )
        .expect("parses");
        let texts: Vec<_> = body.cues.iter().map(|cue| cue.lines().join("|")).collect();
        assert_eq!(texts, ["One", "Two", "Three"]);
        assert_eq!(body.cues[2].identifier(), None);
    }

    #[test]
    fn keeps_text_after_a_blank_line_inside_a_cue() {
        let body = parse_text("1\n00:00:01,000 --> 00:00:02,000\nOne\n\nmore\n\n2\n00:00:03,000 --> 00:00:04,000\nTwo\n")
            .expect("parses");
        assert_eq!(body.cues[0].lines(), ["One", "", "more"]);
        assert_eq!(body.cues[0].plain_text(), "One\nmore");
    }

    #[test]
    fn reports_truncated_cues() {
        let error = parse_text("1\n00:00:01,000 --> 00:00:02,000\nOne\n\n2\n00:00:0")
            .expect_err("truncated");
        assert_eq!(
            error,
            SubtitleError::InvalidTiming {
                line: 6,
                text: "00:00:0".into()
            }
        );
        let error =
            parse_text("1\n00:00:01,000 --> 00:00:02,000\nOne\n\n2\n").expect_err("no timing");
        assert_eq!(
            error,
            SubtitleError::MissingTiming {
                line: 5,
                number: "2".into()
            }
        );
        let error = parse_text("1\n").expect_err("no timing");
        assert_eq!(
            error,
            SubtitleError::MissingTiming {
                line: 1,
                number: "1".into()
            }
        );
    }

    #[test]
    fn converts_markup_for_webvtt() {
        assert_eq!(
            vtt_line("{\\an8}<I>Tom & Jerry</I> <font color=\"red\">--></font>"),
            "<i>Tom &amp; Jerry</i> --&gt;"
        );
        let lines = |text: &str| vec![text.to_string()];
        assert_eq!(position_settings(&lines("{\\an8}Top")), "line:0");
        assert_eq!(
            position_settings(&lines("{\\an7}Top left")),
            "line:0 align:start"
        );
        assert_eq!(
            position_settings(&lines("{\\an3}Bottom right")),
            "align:end"
        );
        assert_eq!(position_settings(&lines("Plain {\\an8}")), "");
    }
}
