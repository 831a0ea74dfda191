//! Sentence units: the cues' plain text regrouped into whole sentences for translation.
//!
//! Each cue's plain text is cut into pieces: after a sentence end (`. ? ! …` followed by a space
//! and no lower-case letter, not after `Mr.`-like abbreviations or initials; `。！？` anywhere)
//! and before a dialogue dash (`- ` at a line start, marking another speaker). Pieces are then
//! joined across cues until one ends a sentence, the gap to the next cue is long, the styling of
//! the next cue differs (italics, position) or the unit would grow too long.
//!
//! An ellipsis ending a cue and one starting the next (`I was thinking...` / `...maybe`) are a
//! continuation: the unit reads `I was thinking maybe` and the ellipses are put back around the
//! translation. Dialogue dashes are likewise left out of the unit text and put back.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::Cue;
use super::markup::Wrapping;
use super::text::{collapse_whitespace, push_joined};

/// How [`Subtitles::sentence_units`](super::Subtitles::sentence_units) groups cue text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentenceOptions {
    /// A unit stops growing before it would exceed this many characters (a single cue's piece
    /// can still be longer).
    pub max_chars: usize,
    /// A gap longer than this after a cue ends the unit, finished sentence or not.
    pub max_gap_ms: u64,
}

impl Default for SentenceOptions {
    fn default() -> Self {
        Self {
            max_chars: 250,
            max_gap_ms: 2_000,
        }
    }
}

/// A sentence (or speaker turn, or fragment cut by a pause) to translate as one text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentenceUnit {
    /// The text to translate: plain text, whitespace collapsed, without dialogue dashes and
    /// continuation ellipses.
    pub text: String,
    /// Where the text came from, in order; at least one span.
    pub spans: Vec<CueSpan>,
}

impl SentenceUnit {
    /// The indices of the cues the unit spans.
    pub fn cues(&self) -> Range<usize> {
        match (self.spans.first(), self.spans.last()) {
            (Some(first), Some(last)) => first.cue..last.cue + 1,
            _ => 0..0,
        }
    }
}

/// A part of one cue's text that belongs to a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CueSpan {
    /// Index into [`Subtitles::cues`](super::Subtitles::cues).
    pub cue: usize,
    /// Byte range of the span's text in the cue's [`plain_text`](super::Cue::plain_text),
    /// without `lead` and `trail`.
    pub range: Range<usize>,
    /// Whether the span starts a speaker's turn (a dialogue dash): its translation starts a line.
    pub dialogue: bool,
    /// Text before the span left out of the unit text: a dialogue dash, a continuation ellipsis.
    pub lead: String,
    /// Text after the span left out of the unit text: a continuation ellipsis.
    pub trail: String,
}

/// A sentence or fragment within one cue.
#[derive(Debug, Clone)]
struct Piece {
    range: Range<usize>,
    dialogue: bool,
    lead: String,
    trail: String,
    ends_sentence: bool,
}

pub(super) fn units(cues: &[Cue], options: &SentenceOptions) -> Vec<SentenceUnit> {
    let plains: Vec<String> = cues.iter().map(Cue::plain_text).collect();
    let mut pieces: Vec<Vec<Piece>> = plains.iter().map(|plain| cue_pieces(plain)).collect();
    join_continuations(&plains, &mut pieces);
    let styles: Vec<Wrapping> = cues.iter().map(|cue| Wrapping::of(cue.lines())).collect();

    let mut units = Vec::new();
    let mut unit = UnitBuilder::default();
    for (index, pieces_of_cue) in pieces.into_iter().enumerate() {
        for piece in pieces_of_cue {
            let text = collapse_whitespace(&plains[index][piece.range.clone()]);
            if piece.dialogue || unit.would_exceed(&text, options.max_chars) {
                unit.finish(&mut units);
            }
            let ends_sentence = piece.ends_sentence;
            unit.push(index, piece, &text);
            if ends_sentence {
                unit.finish(&mut units);
            }
        }
        if breaks_after(cues, &styles, index, options) {
            unit.finish(&mut units);
        }
    }
    unit.finish(&mut units);
    units
}

/// Whether no sentence continues from cue `index` into the next: a long gap, other styling, or
/// no next cue.
fn breaks_after(
    cues: &[Cue],
    styles: &[Wrapping],
    index: usize,
    options: &SentenceOptions,
) -> bool {
    let (Some(cue), Some(next)) = (cues.get(index), cues.get(index + 1)) else {
        return true;
    };
    let same_style =
        matches!((styles.get(index), styles.get(index + 1)), (Some(a), Some(b)) if a.same_style(b));
    next.start_ms().saturating_sub(cue.end_ms()) > options.max_gap_ms || !same_style
}

#[derive(Debug, Default)]
struct UnitBuilder {
    text: String,
    spans: Vec<CueSpan>,
}

impl UnitBuilder {
    fn would_exceed(&self, text: &str, max_chars: usize) -> bool {
        !self.spans.is_empty() && self.text.chars().count() + 1 + text.chars().count() > max_chars
    }

    fn push(&mut self, cue: usize, piece: Piece, text: &str) {
        push_joined(&mut self.text, text, true);
        let Piece {
            range,
            dialogue,
            lead,
            trail,
            ..
        } = piece;
        self.spans.push(CueSpan {
            cue,
            range,
            dialogue,
            lead,
            trail,
        });
    }

    fn finish(&mut self, units: &mut Vec<SentenceUnit>) {
        if !self.spans.is_empty() {
            let UnitBuilder { text, spans } = std::mem::take(self);
            units.push(SentenceUnit { text, spans });
        }
    }
}

/// Cuts one cue's plain text into pieces.
fn cue_pieces(plain: &str) -> Vec<Piece> {
    let ends = sentence_ends(plain);
    let mut cuts = dialogue_line_starts(plain);
    cuts.extend(&ends);
    cuts.push(plain.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut start = 0;
    let mut pieces = Vec::new();
    for cut in cuts {
        pieces.extend(piece(plain, start..cut, ends.contains(&cut)));
        start = cut;
    }
    pieces
}

fn piece(plain: &str, range: Range<usize>, ends_sentence: bool) -> Option<Piece> {
    let text = &plain[range.clone()];
    let mut start = range.start + (text.len() - text.trim_start().len());
    let end = range.end - (text.len() - text.trim_end().len());
    let dash = dialogue_dash(plain.get(start..end)?);
    let lead = dash
        .map(|len| plain[start..start + len].to_string())
        .unwrap_or_default();
    start += lead.len();
    (start < end).then(|| Piece {
        range: start..end,
        dialogue: dash.is_some(),
        lead,
        trail: String::new(),
        ends_sentence,
    })
}

/// Byte offsets of lines (other than the first) that start with a dialogue dash.
fn dialogue_line_starts(plain: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = 0;
    for line in plain.split('\n') {
        if offset > 0 && dialogue_dash(line).is_some() {
            starts.push(offset);
        }
        offset += line.len() + 1;
    }
    starts
}

/// The length of a dialogue dash (with the spaces after it) starting `text`: a hyphen or dash
/// followed by a space or a letter (`- Yes`, `-Oui`, `–¿Qué?`), not `--` or `-5`.
fn dialogue_dash(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    let (_, dash) = chars.next()?;
    let (after, next) = chars.next()?;
    if !matches!(dash, '-' | '‐' | '‑' | '–' | '—') {
        None
    } else if next.is_whitespace() {
        Some(text.len() - text[after..].trim_start().len())
    } else if next.is_alphabetic() || "¿¡\"'“‘«…".contains(next) {
        Some(after)
    } else {
        None
    }
}

/// Byte offsets just after each sentence end (terminators plus closing quotes and brackets).
fn sentence_ends(plain: &str) -> Vec<usize> {
    let chars: Vec<(usize, char)> = plain.char_indices().collect();
    let mut ends = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        if !is_terminator(chars[at].1) {
            at += 1;
            continue;
        }
        let mut end = at;
        while chars.get(end).is_some_and(|&(_, c)| is_terminator(c)) {
            end += 1;
        }
        while chars.get(end).is_some_and(|&(_, c)| is_closer(c)) {
            end += 1;
        }
        let (start_byte, end_byte) = (
            chars[at].0,
            chars.get(end).map_or(plain.len(), |&(byte, _)| byte),
        );
        if ends_sentence(plain, start_byte, end_byte) {
            ends.push(end_byte);
        }
        at = end;
    }
    ends
}

/// Whether the terminators at `start..end` (closers included) end a sentence.
fn ends_sentence(plain: &str, start: usize, end: usize) -> bool {
    let cluster = &plain[start..end];
    if cluster.contains(['。', '！', '？', '｡']) {
        return true;
    }
    let before =
        plain[..start].trim_start_matches(|c: char| c.is_whitespace() || "-‐‑–—".contains(c));
    let after = &plain[end..];
    if before.is_empty() || after.starts_with(|c: char| !c.is_whitespace()) {
        // Nothing before (a leading ellipsis), or no space after (`3.5`, `www.x.org`).
        return false;
    }
    if after.trim_start().starts_with(char::is_lowercase) {
        return false;
    }
    let word = before
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or_default();
    !(cluster.starts_with('.')
        && cluster.trim_end_matches(is_closer) == "."
        && is_abbreviation(word))
}

fn is_terminator(c: char) -> bool {
    matches!(
        c,
        '.' | '?'
            | '!'
            | '…'
            | '‼'
            | '⁇'
            | '⁈'
            | '⁉'
            | '。'
            | '！'
            | '？'
            | '｡'
            | '؟'
            | '۔'
            | '।'
            | '॥'
    )
}

fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '”' | '’' | '»' | '›' | ')' | ']' | '」' | '』' | '）' | '】' | '〉' | '》'
    )
}

/// A title before a name (`Mr.`) or an initial (`J.`).
fn is_abbreviation(word: &str) -> bool {
    const TITLES: [&str; 17] = [
        "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "capt", "col", "gen", "lt", "sgt",
        "rev", "hon", "vs",
    ];
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let mut chars = word.chars();
    let initial = matches!((chars.next(), chars.next()), (Some(c), None) if c.is_uppercase());
    initial || TITLES.iter().any(|title| word.eq_ignore_ascii_case(title))
}

/// Applies the continuation ellipsis convention between consecutive cues, and lets a cue ending
/// in an ellipsis run on into a next cue starting in lower case.
fn join_continuations(plains: &[String], pieces: &mut [Vec<Piece>]) {
    for index in 1..pieces.len() {
        let (before, after) = pieces.split_at_mut(index);
        let (Some(last), Some(first)) = (before[index - 1].last_mut(), after[0].first_mut()) else {
            continue;
        };
        let (last_text, first_text) = (
            &plains[index - 1][last.range.clone()],
            &plains[index][first.range.clone()],
        );
        let Some(trail) = trailing_ellipsis(last_text) else {
            continue;
        };
        if first.dialogue {
            continue;
        }
        match leading_ellipsis(first_text) {
            Some(lead) if lead < first_text.len() && trail < last_text.len() => {
                let kept = last_text[..last_text.len() - trail].trim_end().len();
                last.trail = last_text[kept..].to_string();
                last.range.end = last.range.start + kept;
                first.lead.push_str(&first_text[..lead]);
                first.range.start += lead;
                last.ends_sentence = false;
            }
            Some(_) => {}
            None => {
                if first_text.starts_with(char::is_lowercase) {
                    last.ends_sentence = false;
                }
            }
        }
    }
}

/// The byte length of an ellipsis (`…`, or three or more dots) ending `text`.
fn trailing_ellipsis(text: &str) -> Option<usize> {
    if text.ends_with('…') {
        return Some('…'.len_utf8());
    }
    let dots = text.len() - text.trim_end_matches('.').len();
    (dots >= 3).then_some(dots)
}

/// The byte length of an ellipsis starting `text`, with the spaces after it.
fn leading_ellipsis(text: &str) -> Option<usize> {
    let rest = text.strip_prefix('…').unwrap_or_else(|| {
        let after_dots = text.trim_start_matches('.');
        if text.len() - after_dots.len() >= 3 {
            after_dots
        } else {
            text
        }
    });
    (rest.len() < text.len()).then(|| text.len() - rest.trim_start().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subtitles::Subtitles;

    fn srt(cues: &[(u64, u64, &str)]) -> Subtitles {
        let text: String = cues
            .iter()
            .enumerate()
            .map(|(i, (start, end, text))| {
                let timing = crate::subtitles::timing::format_timing(*start, *end, ',', "");
                format!("{}\n{timing}\n{text}\n\n", i + 1)
            })
            .collect();
        Subtitles::parse(text.as_bytes()).expect("valid srt")
    }

    fn texts(subtitles: &Subtitles, options: &SentenceOptions) -> Vec<String> {
        subtitles
            .sentence_units(options)
            .into_iter()
            .map(|unit| unit.text)
            .collect()
    }

    fn piece_texts(plain: &str) -> Vec<(&str, bool)> {
        cue_pieces(plain)
            .into_iter()
            .map(|piece| (&plain[piece.range], piece.ends_sentence))
            .collect()
    }

    #[test]
    fn cuts_at_sentence_ends_but_not_abbreviations_or_numbers() {
        assert_eq!(
            piece_texts("It hasn't been lit since Dad died.\nMr. Harris took the wick."),
            [
                ("It hasn't been lit since Dad died.", true),
                ("Mr. Harris took the wick.", true)
            ]
        );
        assert_eq!(
            piece_texts("It costs 3.50 now, J. R. said"),
            [("It costs 3.50 now, J. R. said", false)]
        );
        assert_eq!(
            piece_texts("I was... thinking. \"Go!\" Then"),
            [
                ("I was... thinking.", true),
                ("\"Go!\"", true),
                ("Then", false)
            ]
        );
        assert_eq!(
            piece_texts("我们走吧。他来了！好"),
            [("我们走吧。", true), ("他来了！", true), ("好", false)]
        );
    }

    #[test]
    fn dialogue_dashes_make_separate_pieces() {
        let plain = "- Was she afraid\n- Never.";
        let pieces = cue_pieces(plain);
        assert_eq!(pieces.len(), 2);
        assert!(
            pieces
                .iter()
                .all(|piece| piece.dialogue && piece.lead == "- ")
        );
        assert_eq!(&plain[pieces[0].range.clone()], "Was she afraid");
        assert_eq!(dialogue_dash("-Oui."), Some(1));
        assert_eq!(dialogue_dash("-5 degrees"), None);
        assert_eq!(dialogue_dash("-- wait"), None);
    }

    #[test]
    fn merges_a_sentence_split_over_three_cues() {
        let subtitles = srt(&[
            (1_000, 2_000, "The harbour master says"),
            (2_100, 3_000, "the ferry won't make it"),
            (3_100, 4_000, "across tonight. Then we wait."),
        ]);
        let units = subtitles.sentence_units(&SentenceOptions::default());
        assert_eq!(units.len(), 2);
        assert_eq!(
            units[0].text,
            "The harbour master says the ferry won't make it across tonight."
        );
        assert_eq!(units[0].cues(), 0..3);
        assert_eq!(units[0].spans[2].range, 0.."across tonight.".len());
        assert_eq!(units[1].text, "Then we wait.");
        assert_eq!(units[1].cues(), 2..3);
    }

    #[test]
    fn long_gaps_and_length_limits_end_units() {
        let subtitles = srt(&[
            (0, 1_000, "Row, row"),
            (3_500, 4_000, "the tide is turning"),
            (4_100, 5_000, "and on it goes."),
        ]);
        assert_eq!(
            texts(&subtitles, &SentenceOptions::default()),
            ["Row, row", "the tide is turning and on it goes."]
        );
        let short = SentenceOptions {
            max_chars: 25,
            ..SentenceOptions::default()
        };
        assert_eq!(
            texts(&subtitles, &short),
            ["Row, row", "the tide is turning", "and on it goes."]
        );
    }

    #[test]
    fn ellipses_continue_a_sentence() {
        let subtitles = srt(&[
            (0, 1_000, "I was thinking..."),
            (1_100, 2_000, "...maybe we could go."),
            (2_100, 3_000, "Or not…"),
            (3_100, 4_000, "It's late."),
        ]);
        let units = subtitles.sentence_units(&SentenceOptions::default());
        let texts: Vec<_> = units.iter().map(|unit| unit.text.as_str()).collect();
        assert_eq!(
            texts,
            ["I was thinking maybe we could go.", "Or not…", "It's late."]
        );
        assert_eq!(
            (
                units[0].spans[0].trail.as_str(),
                units[0].spans[1].lead.as_str()
            ),
            ("...", "...")
        );
    }

    #[test]
    fn styling_changes_end_units() {
        let subtitles = srt(&[
            (0, 1_000, "{\\an8}NORTH HARBOUR, 1962"),
            (1_100, 2_000, "Tom, are you there?"),
        ]);
        assert_eq!(
            texts(&subtitles, &SentenceOptions::default()),
            ["NORTH HARBOUR, 1962", "Tom, are you there?"]
        );
    }

    #[test]
    fn cjk_cues_join_without_spaces() {
        let subtitles = srt(&[(0, 1_000, "我们明天"), (1_100, 2_000, "去北京。")]);
        assert_eq!(
            texts(&subtitles, &SentenceOptions::default()),
            ["我们明天去北京。"]
        );
    }
}
