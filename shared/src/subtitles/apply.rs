//! Putting translated sentence units back onto the cues.

use super::markup::{Wrapping, escape_vtt};
use super::reflow::{LayoutOptions, Reflowed, reflow, width};
use super::sentences::{CueSpan, SentenceUnit};
use super::split::split_proportionally;
use super::text::push_joined;
use super::{Cue, SubtitleError, SubtitleFormat, Subtitles};

/// The result of [`Subtitles::apply_translations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The translated subtitles: same format, cues, timings, identifiers and blocks.
    pub subtitles: Subtitles,
    /// Indices of cues whose text did not fit the [`LayoutOptions`]: they have longer lines (or,
    /// for several speakers, more lines) than allowed rather than lost text.
    pub overlong_cues: Vec<usize>,
    /// Indices of cues left without text because their unit's translation had fewer words than
    /// the unit had cues.
    pub empty_cues: Vec<usize>,
}

impl Translated {
    /// Whether every cue got text that fits the layout.
    pub fn is_clean(&self) -> bool {
        self.overlong_cues.is_empty() && self.empty_cues.is_empty()
    }
}

/// A unit's translated text for one cue.
#[derive(Debug, Clone)]
struct Segment {
    /// Where the span started in the cue's plain text: segments are put in this order.
    order: usize,
    dialogue: bool,
    text: String,
}

impl Segment {
    fn new(span: &CueSpan, part: &str) -> Self {
        let text = if part.is_empty() {
            String::new()
        } else {
            format!("{}{part}{}", span.lead, span.trail)
        };
        Self {
            order: span.range.start,
            dialogue: span.dialogue,
            text,
        }
    }
}

pub(super) fn apply<S: AsRef<str>>(
    subtitles: &Subtitles,
    units: &[SentenceUnit],
    translations: &[S],
    layout: &LayoutOptions,
) -> Result<Translated, SubtitleError> {
    if units.len() != translations.len() {
        return Err(SubtitleError::TranslationCount {
            units: units.len(),
            translations: translations.len(),
        });
    }
    let segments = segments_per_cue(subtitles.cues(), units, translations)?;
    let (mut overlong_cues, mut empty_cues) = (Vec::new(), Vec::new());
    let cues = subtitles
        .cues()
        .iter()
        .zip(segments)
        .enumerate()
        .map(|(index, (cue, segments))| {
            if segments.is_empty() {
                return cue.clone();
            }
            let Reflowed { lines, fits } = layout_segments(segments, layout);
            if !fits {
                overlong_cues.push(index);
            }
            if lines.is_empty() {
                empty_cues.push(index);
            }
            styled_cue(cue, lines, subtitles.format())
        })
        .collect();
    Ok(Translated {
        subtitles: subtitles.with_cues(cues),
        overlong_cues,
        empty_cues,
    })
}

/// Splits each unit's translation over its spans; returns the segments of each cue.
fn segments_per_cue<S: AsRef<str>>(
    cues: &[Cue],
    units: &[SentenceUnit],
    translations: &[S],
) -> Result<Vec<Vec<Segment>>, SubtitleError> {
    let plains: Vec<String> = cues.iter().map(Cue::plain_text).collect();
    let mut segments: Vec<Vec<Segment>> = vec![Vec::new(); cues.len()];
    for (index, (unit, translation)) in units.iter().zip(translations).enumerate() {
        let weights = unit
            .spans
            .iter()
            .map(|span| {
                let text = plains.get(span.cue)?.get(span.range.clone())?;
                Some(text.chars().count())
            })
            .collect::<Option<Vec<usize>>>()
            .filter(|weights| !weights.is_empty())
            .ok_or(SubtitleError::ForeignUnit { unit: index })?;
        let parts = split_proportionally(translation.as_ref(), &weights);
        for (span, part) in unit.spans.iter().zip(parts) {
            if let Some(cue_segments) = segments.get_mut(span.cue) {
                cue_segments.push(Segment::new(span, &part));
            }
        }
    }
    Ok(segments)
}

/// `cue` with `lines` as its text, escaped for the format, in the cue's whole-cue styling.
fn styled_cue(cue: &Cue, lines: Vec<String>, format: SubtitleFormat) -> Cue {
    let mut lines: Vec<String> = match format {
        SubtitleFormat::Vtt => lines.iter().map(|line| escape_vtt(line)).collect(),
        SubtitleFormat::Srt => lines,
    };
    Wrapping::of(cue.lines()).apply(&mut lines);
    cue.with_lines(lines)
}

/// A cue's lines from its segments: one line per speaker when the cue has several, else the
/// text reflowed.
fn layout_segments(mut segments: Vec<Segment>, layout: &LayoutOptions) -> Reflowed {
    segments.sort_by_key(|segment| segment.order);
    let mut turns: Vec<String> = Vec::new();
    for segment in segments.iter().filter(|segment| !segment.text.is_empty()) {
        match turns.last_mut() {
            Some(turn) if !segment.dialogue => push_joined(turn, &segment.text, true),
            _ => turns.push(segment.text.clone()),
        }
    }
    match turns.as_slice() {
        [] => Reflowed {
            lines: Vec::new(),
            fits: true,
        },
        [text] => reflow(text, layout),
        _ => {
            let fits = turns.len() <= layout.max_lines
                && turns
                    .iter()
                    .all(|turn| width(turn) <= layout.max_line_chars);
            Reflowed { lines: turns, fits }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subtitles::SentenceOptions;

    const SRT: &str = "1\n00:00:01,000 --> 00:00:03,000\n<i>The storm came in\nfrom the north,</i>\n\n\
                       2\n00:00:03,100 --> 00:00:05,000\n<i>and nobody was ready.</i>\n\n\
                       3\n00:00:06,000 --> 00:00:08,000\n- Was she afraid?\n- Never.\n";

    fn translate(subtitles: &Subtitles, f: impl Fn(&str) -> String) -> Translated {
        let units = subtitles.sentence_units(&SentenceOptions::default());
        let translations: Vec<String> = units.iter().map(|unit| f(&unit.text)).collect();
        subtitles
            .apply_translations(&units, &translations, &LayoutOptions::default())
            .expect("applies")
    }

    #[test]
    fn keeps_italics_and_dialogue_lines() {
        let subtitles = Subtitles::parse(SRT.as_bytes()).expect("parses");
        let translated = translate(&subtitles, str::to_uppercase);
        assert!(translated.is_clean());
        let out = String::from_utf8(translated.subtitles.write()).expect("utf-8");
        assert_eq!(
            out,
            "1\n00:00:01,000 --> 00:00:03,000\n<i>THE STORM CAME IN FROM THE NORTH,</i>\n\n\
             2\n00:00:03,100 --> 00:00:05,000\n<i>AND NOBODY WAS READY.</i>\n\n\
             3\n00:00:06,000 --> 00:00:08,000\n- WAS SHE AFRAID?\n- NEVER.\n"
        );
    }

    #[test]
    fn escapes_translations_in_webvtt() {
        let vtt = "WEBVTT\n\n00:01.000 --> 00:02.000\n<v Ann>Salt and pepper.\n";
        let subtitles = Subtitles::parse(vtt.as_bytes()).expect("parses");
        let translated = translate(&subtitles, |_| "Sel & poivre <3".to_string());
        assert_eq!(
            translated.subtitles.cues()[0].lines(),
            ["<v Ann>Sel &amp; poivre &lt;3"]
        );
    }

    #[test]
    fn reports_empty_and_overlong_cues() {
        let subtitles = Subtitles::parse(SRT.as_bytes()).expect("parses");
        let units = subtitles.sentence_units(&SentenceOptions::default());
        let mut translations: Vec<String> = units.iter().map(|unit| unit.text.clone()).collect();
        translations[0] = "Orage".to_string();
        translations[1] = "Avait-elle peur ? ".repeat(4);
        let translated = subtitles
            .apply_translations(&units, &translations, &LayoutOptions::default())
            .expect("applies");
        assert_eq!(translated.empty_cues, [1]);
        assert_eq!(translated.overlong_cues, [2]);
        assert_eq!(translated.subtitles.cues()[0].lines(), ["<i>Orage</i>"]);
        assert!(translated.subtitles.cues()[1].lines().is_empty());
    }

    #[test]
    fn rejects_mismatched_translations() {
        let subtitles = Subtitles::parse(SRT.as_bytes()).expect("parses");
        let units = subtitles.sentence_units(&SentenceOptions::default());
        let error = subtitles
            .apply_translations(&units, &["one"], &LayoutOptions::default())
            .expect_err("count");
        assert_eq!(
            error,
            SubtitleError::TranslationCount {
                units: units.len(),
                translations: 1
            }
        );
        let mut foreign = units.clone();
        foreign[1].spans[0].cue = 99;
        let translations = vec![String::new(); units.len()];
        let error = subtitles
            .apply_translations(&foreign, &translations, &LayoutOptions::default())
            .expect_err("foreign");
        assert_eq!(error, SubtitleError::ForeignUnit { unit: 1 });
    }
}
