//! Errors of parsing subtitles and applying translations.

use thiserror::Error;

/// Why subtitles could not be parsed, or translations not applied. Parse errors carry the
/// 1-based line number (after any BOM) where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubtitleError {
    /// Not text: binary data, or text in an encoding that could not be recognised.
    #[error(
        "line {line}: not text (binary data, or an encoding that could not be recognised; \
         convert the file to UTF-8)"
    )]
    NotText { line: usize },
    /// Text, but neither a WebVTT header nor an SRT cue where the first one was expected.
    #[error(
        "line {line}: not a subtitle file: expected a `WEBVTT` header or an SRT cue (a number, \
         then a `start --> end` timing line)"
    )]
    NotSubtitles { line: usize },
    /// Parsing as WebVTT, but the file does not start with `WEBVTT`.
    #[error("line {line}: a WebVTT file must start with a `WEBVTT` line")]
    MissingVttHeader { line: usize },
    /// A timing line whose timestamps do not parse (such as a truncated `00:00:0`).
    #[error(
        "line {line}: invalid cue timing `{text}`: expected `start --> end` with timestamps like \
         00:01:02,500 (SRT) or 01:02.500 (WebVTT)"
    )]
    InvalidTiming { line: usize, text: String },
    /// An SRT cue number with no timing line after it (a truncated file, typically).
    #[error("line {line}: cue number `{number}` is not followed by a `start --> end` timing line")]
    MissingTiming { line: usize, number: String },
    /// [`Subtitles::apply_translations`](super::Subtitles::apply_translations) was given a
    /// different number of translations than units.
    #[error("{units} sentence units but {translations} translations")]
    TranslationCount { units: usize, translations: usize },
    /// A unit refers to a cue or text span these subtitles do not have (units from other
    /// subtitles).
    #[error("sentence unit {unit} refers to a cue or text span these subtitles do not have")]
    ForeignUnit { unit: usize },
}

impl SubtitleError {
    /// The line number of a parse error.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::NotText { line }
            | Self::NotSubtitles { line }
            | Self::MissingVttHeader { line }
            | Self::InvalidTiming { line, .. }
            | Self::MissingTiming { line, .. } => Some(*line),
            Self::TranslationCount { .. } | Self::ForeignUnit { .. } => None,
        }
    }
}

/// `text` shortened for an error message.
pub(super) fn snippet(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
