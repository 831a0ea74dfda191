//! Bytes to lines and back, and text helpers the other submodules share.

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8, UTF_16BE, UTF_16LE};

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

/// A file's text, and the encoding it was converted from (`None`: it was UTF-8).
#[derive(Debug)]
pub(super) struct Source<'a> {
    pub(super) text: Cow<'a, str>,
    pub(super) encoding: Option<&'static Encoding>,
}

/// The file as text. UTF-8 is taken as it is. Otherwise it is converted from UTF-16 (with a BOM,
/// or without one when every other byte of its start is zero, as in Latin-script text), or from
/// the legacy encoding [`chardetng`] (Firefox's detector) finds most likely (Windows-1252 and the
/// other Windows code pages, ISO-8859-*, KOI8, Shift_JIS, EUC-JP, EUC-KR, GBK, Big5): subtitles
/// downloaded from the web are often in one. Bytes with control characters (binary data), or
/// that the detected encoding cannot decode, are [`SubtitleError::NotText`] at the line where the
/// file stops being UTF-8.
pub(super) fn source(bytes: &[u8]) -> Result<Source<'_>, SubtitleError> {
    // First UTF-16: by its BOM, or without one by its zero bytes (Latin-script UTF-16 without a
    // BOM is valid UTF-8, with a NUL every other byte).
    let utf16 = match Encoding::for_bom(bytes) {
        Some((encoding, bom_length)) if encoding != UTF_8 => Some((encoding, bom_length)),
        _ => bom_less_utf16(bytes).map(|encoding| (encoding, 0)),
    };
    if let Some((encoding, bom_length)) = utf16
        && let Some(text) =
            encoding.decode_without_bom_handling_and_without_replacement(&bytes[bom_length..])
    {
        return Ok(Source {
            text: Cow::Owned(text.into_owned()),
            encoding: Some(encoding),
        });
    }
    let valid_up_to = match std::str::from_utf8(bytes) {
        Ok(text) => {
            return Ok(Source {
                text: Cow::Borrowed(text),
                encoding: None,
            });
        }
        Err(error) => error.valid_up_to(),
    };
    let not_text = || SubtitleError::NotText {
        line: line_at(bytes, valid_up_to),
    };
    // A UTF-8 BOM or mostly UTF-8: a damaged or truncated UTF-8 file, which no legacy encoding
    // would read right. Control bytes: binary data.
    if bytes.starts_with(b"\xef\xbb\xbf")
        || damaged_utf8(bytes)
        || bytes.iter().any(|&b| is_binary(char::from(b)))
    {
        return Err(not_text());
    }
    // (ISO-2022-JP is 7-bit with escapes: refused above as control bytes.)
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, chardetng::Utf8Detection::Deny);
    let text = encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .ok_or_else(not_text)?;
    Ok(Source {
        text: Cow::Owned(text.into_owned()),
        encoding: Some(encoding),
    })
}

/// UTF-8 with a few broken sequences: at least four valid multi-byte characters per broken
/// sequence. (Text in a legacy encoding holds hardly any valid UTF-8 sequence: its non-ASCII
/// bytes are rarely followed by the continuation bytes UTF-8 needs.)
fn damaged_utf8(bytes: &[u8]) -> bool {
    let (mut valid, mut broken) = (0usize, 0usize);
    for chunk in bytes.utf8_chunks() {
        valid += chunk.valid().chars().filter(|c| c.len_utf8() > 1).count();
        broken += usize::from(!chunk.invalid().is_empty());
    }
    valid > 0 && valid >= 4 * broken
}

/// UTF-16 without a BOM: in the first bytes every other byte is zero (the high bytes of Latin
/// characters, digits and punctuation, which subtitles start with) and the others are not.
fn bom_less_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(512) & !1];
    if head.len() < 4 {
        return None;
    }
    let zeros = |first: usize| {
        head.iter()
            .skip(first)
            .step_by(2)
            .filter(|&&b| b == 0)
            .count()
    };
    let (even, odd, half) = (zeros(0), zeros(1), head.len() / 2);
    let mostly = |n: usize| n * 10 >= half * 9;
    let rarely = |n: usize| n * 10 <= half;
    if mostly(odd) && rarely(even) {
        Some(UTF_16LE)
    } else if mostly(even) && rarely(odd) {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// Splits text into lines. Control characters other than tab, form feed and line breaks are
/// [`SubtitleError::NotText`]; a leading BOM is noted and dropped.
pub(super) fn decode(text: &str) -> Result<Decoded<'_>, SubtitleError> {
    if let Some(offset) = text.find(is_binary) {
        return Err(SubtitleError::NotText {
            line: line_at(text.as_bytes(), offset),
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
    fn reports_the_line_of_binary_data() {
        let error = decode("hello\nworld\n\0\0\0").expect_err("binary");
        assert_eq!(error, SubtitleError::NotText { line: 3 });
        // Not UTF-8, and control bytes: where it stops being UTF-8.
        let error =
            source(b"1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9\x01\x02\n").expect_err("binary");
        assert_eq!(error, SubtitleError::NotText { line: 3 });
        // Damaged UTF-8 is an error where it breaks, not a guess at another encoding.
        let chinese = "1\n00:00:01,000 --> 00:00:03,000\n我们明天早上\n\n2\n00:00:03,100 --> 00:00:05,000\n去北京看长城。\n";
        let bytes = chinese.as_bytes();
        let cut = &bytes[..bytes.len() - 2];
        assert_eq!(source(cut).err(), Some(SubtitleError::NotText { line: 7 }));
        let mut corrupt = bytes.to_vec();
        corrupt[40] = b'x';
        assert_eq!(
            source(&corrupt).err(),
            Some(SubtitleError::NotText { line: 3 })
        );
    }

    #[test]
    fn converts_utf16_and_legacy_encodings() {
        let text = "1\r\n00:00:01,000 --> 00:00:02,000\r\nÇa coûte cher, déjà ?\r\n";
        let converted = |bytes: &[u8]| {
            let source = source(bytes).expect("text");
            (source.text.into_owned(), source.encoding.map(|e| e.name()))
        };
        let utf16 = |big_endian: bool| {
            text.encode_utf16()
                .flat_map(|u| {
                    if big_endian {
                        u.to_be_bytes()
                    } else {
                        u.to_le_bytes()
                    }
                })
                .collect::<Vec<u8>>()
        };
        for (bom, big_endian, name) in [
            (&b"\xff\xfe"[..], false, "UTF-16LE"),
            (b"\xfe\xff", true, "UTF-16BE"),
            (b"", false, "UTF-16LE"),
            (b"", true, "UTF-16BE"),
        ] {
            let mut bytes = bom.to_vec();
            bytes.extend(utf16(big_endian));
            assert_eq!(converted(&bytes), (text.to_string(), Some(name)), "{name}");
        }
        let (latin1, _, _) = encoding_rs::WINDOWS_1252.encode(text);
        assert_eq!(converted(&latin1), (text.to_string(), Some("windows-1252")));
        let russian = "1\n00:00:01,000 --> 00:00:02,000\nПривет, как дела? Это субтитры.\n";
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(russian);
        assert_eq!(
            converted(&cp1251),
            (russian.to_string(), Some("windows-1251"))
        );
        // UTF-8 stays borrowed, and says so.
        let source = source(text.as_bytes()).expect("utf-8");
        assert!(matches!(source.text, Cow::Borrowed(_)) && source.encoding.is_none());
    }

    #[test]
    fn collapses_whitespace_without_spacing_cjk_line_breaks() {
        assert_eq!(collapse_whitespace("  one \n two\tthree "), "one two three");
        assert_eq!(collapse_whitespace("我们明天\n去北京"), "我们明天去北京");
        assert_eq!(collapse_whitespace("我知道 但是"), "我知道 但是");
    }
}
