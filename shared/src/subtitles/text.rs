//! Bytes to lines and back, and text helpers the other submodules share.

use super::{LineEnding, SubtitleError};

const BOM: char = '\u{feff}';

/// A decoded file: its lines without terminators, and what writing it back needs.
#[derive(Debug)]
pub(super) struct Decoded<'a> {
    pub(super) bom: bool,
    pub(super) lines: Vec<&'a str>,
    pub(super) line_ending: LineEnding,
    pub(super) final_newline: bool,
}

/// Decodes UTF-8 (with or without BOM) into lines. Invalid UTF-8 and control characters other
/// than tab, form feed and line breaks are [`SubtitleError::NotText`].
pub(super) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, SubtitleError> {
    let text = std::str::from_utf8(bytes).map_err(|error| SubtitleError::NotText {
        line: line_at(bytes, error.valid_up_to()),
    })?;
    if let Some(offset) = text.find(is_binary) {
        return Err(SubtitleError::NotText {
            line: line_at(bytes, offset),
        });
    }
    let (bom, text) = text
        .strip_prefix(BOM)
        .map_or((false, text), |rest| (true, rest));
    let (lines, line_ending, final_newline) = split_lines(text);
    Ok(Decoded {
        bom,
        lines,
        line_ending: line_ending.unwrap_or_default(),
        final_newline,
    })
}

fn is_binary(c: char) -> bool {
    (c < ' ' && !matches!(c, '\t' | '\n' | '\r' | '\u{c}')) || c == '\u{7f}'
}

/// The 1-based line holding byte `offset`.
fn line_at(bytes: &[u8], offset: usize) -> usize {
    let before = &bytes[..offset.min(bytes.len())];
    let breaks = before
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count();
    breaks + 1
}

/// Splits at `\n`, `\r\n` and `\r`. Returns the lines, the first terminator seen and whether the
/// text ends with a terminator.
fn split_lines(text: &str) -> (Vec<&str>, Option<LineEnding>, bool) {
    let bytes = text.as_bytes();
    let (mut lines, mut ending, mut start, mut i) = (Vec::new(), None, 0, 0);
    while i < bytes.len() {
        let terminator = match bytes[i] {
            b'\n' => Some((LineEnding::Lf, 1)),
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => Some((LineEnding::CrLf, 2)),
            b'\r' => Some((LineEnding::Cr, 1)),
            _ => None,
        };
        match terminator {
            Some((kind, len)) => {
                lines.push(&text[start..i]);
                ending.get_or_insert(kind);
                i += len;
                start = i;
            }
            None => i += 1,
        }
    }
    let final_newline = !text.is_empty() && start == text.len();
    if start < text.len() {
        lines.push(&text[start..]);
    }
    (lines, ending, final_newline)
}

/// Joins lines with one line ending, as a file.
#[derive(Debug)]
pub(super) struct Writer {
    out: String,
    eol: &'static str,
    empty: bool,
}

impl Writer {
    pub(super) fn new(bom: bool, line_ending: LineEnding) -> Self {
        let out = if bom { BOM.to_string() } else { String::new() };
        Self {
            out,
            eol: line_ending.as_str(),
            empty: true,
        }
    }

    pub(super) fn line(&mut self, line: &str) {
        if !self.empty {
            self.out.push_str(self.eol);
        }
        self.out.push_str(line);
        self.empty = false;
    }

    pub(super) fn finish(mut self, final_newline: bool) -> Vec<u8> {
        if final_newline && !self.empty {
            self.out.push_str(self.eol);
        }
        self.out.into_bytes()
    }
}

/// Empty or whitespace only.
pub(super) fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// Collapses whitespace runs to one space; a line break between two CJK characters goes
/// entirely (Chinese and Japanese put no space there).
pub(super) fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text.trim_start();
    let mut line_break = false;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        push_joined(&mut out, word, line_break);
        let next = after.trim_start();
        line_break = after[..after.len() - next.len()].contains('\n');
        rest = next;
    }
    out
}

/// Appends `word` to `out` after a space, or with none if `soft` (a line or cue break) and both
/// sides are CJK.
pub(super) fn push_joined(out: &mut String, word: &str, soft: bool) {
    if word.is_empty() {
        return;
    }
    if let (Some(last), Some(first)) = (out.chars().next_back(), word.chars().next())
        && !(soft && is_cjk(last) && is_cjk(first))
    {
        out.push(' ');
    }
    out.push_str(word);
}

/// Han, kana and CJK punctuation and full-width forms: scripts written without spaces between
/// words. (Hangul is not: Korean uses spaces.)
pub(super) fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3000}'..='\u{30ff}'
        | '\u{31f0}'..='\u{31ff}'
        | '\u{3400}'..='\u{4dbf}'
        | '\u{4e00}'..='\u{9fff}'
        | '\u{f900}'..='\u{faff}'
        | '\u{ff00}'..='\u{ffef}'
        | '\u{20000}'..='\u{2ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_line_ending_style() {
        assert_eq!(
            split_lines("a\nb\n"),
            (vec!["a", "b"], Some(LineEnding::Lf), true)
        );
        assert_eq!(
            split_lines("a\r\n\r\nb"),
            (vec!["a", "", "b"], Some(LineEnding::CrLf), false)
        );
        assert_eq!(
            split_lines("a\rb\r"),
            (vec!["a", "b"], Some(LineEnding::Cr), true)
        );
        assert_eq!(split_lines(""), (vec![], None, false));
    }

    #[test]
    fn reports_the_line_of_invalid_utf8() {
        let error =
            decode(b"1\r\n00:00:01,000 --> 00:00:02,000\r\nCaf\xe9\r\n").expect_err("latin-1");
        assert_eq!(error, SubtitleError::NotText { line: 3 });
        let error = decode(b"hello\nworld\n\0\0\0").expect_err("binary");
        assert_eq!(error, SubtitleError::NotText { line: 3 });
    }

    #[test]
    fn collapses_whitespace_without_spacing_cjk_line_breaks() {
        assert_eq!(collapse_whitespace("  one \n two\tthree "), "one two three");
        assert_eq!(collapse_whitespace("我们明天\n去北京"), "我们明天去北京");
        assert_eq!(collapse_whitespace("我知道 但是"), "我知道 但是");
    }
}
