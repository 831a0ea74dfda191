//! WebVTT: parsing, and writing WebVTT cues as SRT.
//!
//! Follows the block structure of the WebVTT parsing algorithm: a block runs until an empty line
//! (or a line with `-->` after its first two lines); a block whose first or second line has `-->`
//! is a cue, the others are NOTE, STYLE, REGION or unknown blocks, all kept as written.
//! Differences: blank lines before the header are allowed, and a cue whose timing does not parse
//! is an error instead of being skipped.

use super::error::snippet;
use super::markup::{self, Token};
use super::text::{Writer, is_blank};
use super::timing::{format_timing, parse_timing};
use super::{BlockKind, Body, Cue, SubtitleError};

/// `WEBVTT`, alone or followed by a space or tab and a title.
pub(super) fn is_header(line: &str) -> bool {
    line.strip_prefix("WEBVTT")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

pub(super) fn parse(lines: &[&str]) -> Result<Body, SubtitleError> {
    let first = lines
        .iter()
        .position(|line| !is_blank(line))
        .unwrap_or(lines.len());
    if !lines.get(first).is_some_and(|line| is_header(line)) {
        return Err(SubtitleError::MissingVttHeader {
            line: first.min(lines.len().saturating_sub(1)) + 1,
        });
    }
    let mut body = Body::default();
    lines[..first].iter().for_each(|line| body.push_blank(line));
    let header_end = block_end(lines, first + 1);
    body.push_raw(BlockKind::Header, &lines[first..header_end]);
    let mut at = header_end;
    while let Some(line) = lines.get(at) {
        if is_blank(line) {
            body.push_blank(line);
            at += 1;
        } else {
            at = parse_block(lines, at, &mut body)?;
        }
    }
    Ok(body)
}

/// The end of a block whose lines from `from` on are not its first: the next empty line or line
/// with `-->` (which starts another cue).
fn block_end(lines: &[&str], from: usize) -> usize {
    (from..lines.len())
        .find(|&at| lines[at].is_empty() || lines[at].contains("-->"))
        .unwrap_or(lines.len())
}

/// Parses the block starting at the non-blank line `start` into `body`; returns its end.
fn parse_block(lines: &[&str], start: usize, body: &mut Body) -> Result<usize, SubtitleError> {
    let first = lines[start];
    let timing_at = if first.contains("-->") {
        Some(start)
    } else {
        lines
            .get(start + 1)
            .filter(|line| line.contains("-->"))
            .map(|_| start + 1)
    };
    let Some(timing_at) = timing_at else {
        let end = block_end(lines, start + 1);
        body.push_raw(block_kind(first), &lines[start..end]);
        return Ok(end);
    };
    let timing_line = lines[timing_at];
    let timing = parse_timing(timing_line).ok_or_else(|| SubtitleError::InvalidTiming {
        line: timing_at + 1,
        text: snippet(timing_line),
    })?;
    let end = block_end(lines, timing_at + 1);
    let identifier = (timing_at > start).then_some(first);
    body.push_cue(Cue::new(
        identifier,
        timing_line,
        timing,
        &lines[timing_at + 1..end],
    ));
    Ok(end)
}

fn block_kind(first_line: &str) -> BlockKind {
    let keyword = |keyword: &str| {
        first_line
            .strip_prefix(keyword)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    if keyword("NOTE") {
        BlockKind::Note
    } else if keyword("STYLE") {
        BlockKind::Style
    } else if keyword("REGION") {
        BlockKind::Region
    } else {
        BlockKind::Other
    }
}

/// Writes WebVTT cues as SRT (see [`Subtitles::write_as`](super::Subtitles::write_as)).
pub(super) fn write_srt(cues: &[Cue], writer: &mut Writer) {
    for (index, cue) in cues.iter().enumerate() {
        if index > 0 {
            writer.line("");
        }
        writer.line(&(index + 1).to_string());
        writer.line(&format_timing(cue.start_ms(), cue.end_ms(), ',', ""));
        for line in srt_lines(cue.lines()) {
            writer.line(&line);
        }
    }
}

/// A WebVTT cue's lines as SRT text: `<i> <b> <u>` kept, other tags and ruby text dropped,
/// entities decoded, speaker changes between voices marked with dialogue dashes.
fn srt_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .zip(markup::speaker_changes(lines))
        .filter_map(|(line, change)| {
            let text = srt_line(line);
            let trimmed = text.trim();
            if trimmed.is_empty() {
                None
            } else if change && !markup::plain_line(trimmed).trim_start().starts_with('-') {
                Some(format!("- {trimmed}"))
            } else {
                Some(trimmed.to_string())
            }
        })
        .collect()
}

fn srt_line(line: &str) -> String {
    let mut out = String::new();
    let mut in_ruby_text = false;
    for token in markup::tokenize(line) {
        match token {
            Token::Text(text) if !in_ruby_text => out.push_str(&markup::decode_entities(text)),
            Token::Tag { name, closing, .. } if name.eq_ignore_ascii_case("rt") => {
                in_ruby_text = !closing
            }
            Token::Tag { name, closing, .. } if markup::is_basic_tag(name) => {
                out.push_str(&markup::basic_tag(name, closing));
            }
            Token::Text(_) | Token::Tag { .. } | Token::Override(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subtitles::BlockContent;

    fn parse_text(text: &str) -> Result<Body, SubtitleError> {
        parse(&text.split('\n').collect::<Vec<_>>())
    }

    #[test]
    fn classifies_blocks() {
        let body = parse_text(
            "WEBVTT\n\nSTYLE\n::cue { color: red }\n\nNOTE hi\n\nid\n00:01.000 --> 00:02.000\nText\n\n\
             REGION\nid:r\n\nstray text\n",
        )
        .expect("parses");
        let kinds: Vec<_> = body
            .blocks
            .iter()
            .map(|block| match &block.content {
                BlockContent::Cue(_) => None,
                BlockContent::Raw { kind, .. } => Some(*kind),
            })
            .collect();
        use BlockKind::*;
        assert_eq!(
            kinds,
            [
                Some(Header),
                Some(Style),
                Some(Note),
                None,
                Some(Region),
                Some(Other)
            ]
        );
        assert_eq!(body.cues[0].identifier(), Some("id"));
    }

    #[test]
    fn a_timing_line_ends_the_previous_cue() {
        let body = parse_text("WEBVTT\n00:01.000 --> 00:02.000\nOne\n00:03.000 --> 00:04.000\nTwo")
            .expect("parses");
        assert_eq!(body.cues.len(), 2);
        assert_eq!(body.cues[0].lines(), ["One"]);
    }

    #[test]
    fn reports_a_missing_header_and_bad_timings() {
        let error = parse_text("\n00:01.000 --> 00:02.000\nHi").expect_err("no header");
        assert_eq!(error, SubtitleError::MissingVttHeader { line: 2 });
        let error = parse_text("WEBVTT\n\n00:01.000 --> 00:0\nHi").expect_err("truncated");
        assert_eq!(
            error,
            SubtitleError::InvalidTiming {
                line: 3,
                text: "00:01.000 --> 00:0".into()
            }
        );
        assert!(!is_header("WEBVTTX"));
        assert!(is_header("WEBVTT - Title"));
    }

    #[test]
    fn converts_voices_and_markup_for_srt() {
        let lines: Vec<String> = [
            "<v Ann>Is it <c.x>far</c>?",
            "<v Bob><i>No &amp; yes.</i>",
            "<ruby>東<rt>ひがし</rt></ruby>",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            srt_lines(&lines),
            ["- Is it far?", "- <i>No & yes.</i>", "東"]
        );
        let single = vec!["<v Ann>Hello".to_string()];
        assert_eq!(srt_lines(&single), ["Hello"]);
    }
}
