//! Subtitle files for batch subtitle translation: SubRip (`.srt`) and WebVTT (`.vtt`).
//!
//! A subtitle translation job goes:
//!
//! 1. [`Subtitles::parse`] reads a file, detecting its format from the content
//!    ([`Subtitles::parse_as`] forces one). Failures are [`SubtitleError`]s with a line number.
//! 2. [`Subtitles::sentence_units`] turns the cues' plain text (markup stripped) into
//!    [`SentenceUnit`]s: a sentence split over several cues becomes one unit, a cue holding several
//!    sentences (or several speakers, marked by dialogue dashes) becomes several units. Each unit
//!    records the cues and the character spans it came from.
//! 3. The caller translates each [`SentenceUnit::text`].
//! 4. [`Subtitles::apply_translations`] spreads each translation over the unit's cues in
//!    proportion to the cues' original text lengths, splitting only between words, keeps every
//!    cue's timing and numbering, re-applies styling that wrapped a whole cue (`<i>…</i>`, `{\an8}`,
//!    `<v Speaker>`) and reflows the text ([`reflow`]: 42 characters × 2 lines by default).
//!    Cues whose text could not fit are reported, never truncated.
//! 5. [`Subtitles::write`] writes the same format; [`Subtitles::write_as`] converts.
//!
//! Parsing then writing an untouched UTF-8 file gives back the same bytes (a file in another
//! encoding is converted: UTF-8 with a BOM, otherwise the same): the model keeps the BOM, the
//! line-ending style, identifier and timing lines as written, the WebVTT header and its NOTE,
//! STYLE and REGION blocks in order, the blank lines between blocks and whether the file ends
//! with a line break. (A file mixing line-ending styles is written with the first one it used.)
//!
//! ```
//! use voxbridge_shared::subtitles::{LayoutOptions, SentenceOptions, Subtitles};
//!
//! let srt = "1\n00:00:01,000 --> 00:00:02,500\nThe ferry won't\n\n\
//!            2\n00:00:02,600 --> 00:00:04,000\nmake it tonight.\n";
//! let subtitles = Subtitles::parse(srt.as_bytes())?;
//! assert_eq!(subtitles.write(), srt.as_bytes());
//!
//! let units = subtitles.sentence_units(&SentenceOptions::default());
//! assert_eq!(units.len(), 1);
//! assert_eq!(units[0].text, "The ferry won't make it tonight.");
//!
//! let translations = ["Le ferry ne passera pas ce soir.".to_string()];
//! let translated =
//!     subtitles.apply_translations(&units, &translations, &LayoutOptions::default())?;
//! let cues = translated.subtitles.cues();
//! assert_eq!(cues[0].plain_text(), "Le ferry ne");
//! assert_eq!(cues[1].plain_text(), "passera pas ce soir.");
//! assert_eq!(cues[1].start_ms(), 2_600);
//! # Ok::<(), voxbridge_shared::subtitles::SubtitleError>(())
//! ```

mod apply;
mod error;
mod markup;
mod reflow;
mod sentences;
mod split;
mod srt;
mod text;
mod timing;
mod vtt;

#[cfg(test)]
mod tests;

pub use apply::Translated;
pub use error::SubtitleError;
pub use reflow::{LayoutOptions, Reflowed, reflow};
pub use sentences::{CueSpan, SentenceOptions, SentenceUnit};

use text::Writer;
use timing::Timing;

/// A subtitle file format (the same type job messages carry).
pub use crate::messages::SubtitleFormat;

impl SubtitleFormat {
    /// Detects the format from the content: a `WEBVTT` first line, or an SRT cue (a number then a
    /// `-->` timing line, or a timing line alone).
    pub fn detect(bytes: &[u8]) -> Result<Self, SubtitleError> {
        detect(&text::decode(&text::source(bytes)?.text)?.lines)
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Srt => "srt",
            Self::Vtt => "vtt",
        }
    }

    /// The MIME type.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Srt => "application/x-subrip",
            Self::Vtt => "text/vtt",
        }
    }
}

fn detect(lines: &[&str]) -> Result<SubtitleFormat, SubtitleError> {
    let Some(first) = lines.iter().position(|line| !text::is_blank(line)) else {
        return Err(SubtitleError::NotSubtitles { line: 1 });
    };
    if vtt::is_header(lines[first]) {
        Ok(SubtitleFormat::Vtt)
    } else if srt::looks_like_cue_start(lines, first) {
        Ok(SubtitleFormat::Srt)
    } else {
        Err(SubtitleError::NotSubtitles { line: first + 1 })
    }
}

/// The line-ending style of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LineEnding {
    /// `\n`
    #[default]
    Lf,
    /// `\r\n`
    CrLf,
    /// `\r` alone (old Mac files; WebVTT allows it)
    Cr,
}

impl LineEnding {
    /// The line terminator.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lf => "\n",
            Self::CrLf => "\r\n",
            Self::Cr => "\r",
        }
    }
}

/// A parsed subtitle file. See the [module documentation](self) for the translation flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtitles {
    format: SubtitleFormat,
    /// The encoding the file was converted from (`None`: UTF-8).
    source_encoding: Option<&'static str>,
    bom: bool,
    line_ending: LineEnding,
    final_newline: bool,
    body: Body,
}

/// The blocks of a file, in order, with the blank lines that follow each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Body {
    /// Blank lines before the first block.
    leading: Vec<String>,
    blocks: Vec<Block>,
    /// The cues, in file order; [`BlockContent::Cue`] indexes this.
    cues: Vec<Cue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    content: BlockContent,
    /// Blank (empty or whitespace-only) lines after the block, as written.
    blank_after: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockContent {
    Cue(usize),
    /// A block kept as written: the WebVTT header, NOTE, STYLE, REGION or unknown blocks.
    Raw {
        kind: BlockKind,
        lines: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Header,
    Note,
    Style,
    Region,
    Other,
}

impl Body {
    fn push_cue(&mut self, cue: Cue) {
        self.push_block(BlockContent::Cue(self.cues.len()));
        self.cues.push(cue);
    }

    fn push_raw(&mut self, kind: BlockKind, lines: &[&str]) {
        let lines = lines.iter().map(|line| line.to_string()).collect();
        self.push_block(BlockContent::Raw { kind, lines });
    }

    fn push_block(&mut self, content: BlockContent) {
        self.blocks.push(Block {
            content,
            blank_after: Vec::new(),
        });
    }

    fn push_blank(&mut self, line: &str) {
        match self.blocks.last_mut() {
            Some(block) => block.blank_after.push(line.to_string()),
            None => self.leading.push(line.to_string()),
        }
    }
}

impl Subtitles {
    /// Parses SRT or WebVTT, detecting which from the content (see [`SubtitleFormat::detect`]).
    /// Accepts a UTF-8 BOM and LF, CRLF or CR line endings. A file not in UTF-8 is converted
    /// from UTF-16 or the legacy encoding detected ([`source_encoding`](Self::source_encoding)
    /// says which), and is written back as UTF-8 with a BOM (the mark tells the Windows tools
    /// that made such files that it is Unicode).
    pub fn parse(bytes: &[u8]) -> Result<Self, SubtitleError> {
        let source = text::source(bytes)?;
        let decoded = text::decode(&source.text)?;
        let format = detect(&decoded.lines)?;
        Self::from_decoded(decoded, source.encoding, format)
    }

    /// Parses `bytes` as `format`, without detection.
    pub fn parse_as(bytes: &[u8], format: SubtitleFormat) -> Result<Self, SubtitleError> {
        let source = text::source(bytes)?;
        Self::from_decoded(text::decode(&source.text)?, source.encoding, format)
    }

    fn from_decoded(
        decoded: text::Decoded<'_>,
        encoding: Option<&'static encoding_rs::Encoding>,
        format: SubtitleFormat,
    ) -> Result<Self, SubtitleError> {
        let body = match format {
            SubtitleFormat::Srt => srt::parse(&decoded.lines)?,
            SubtitleFormat::Vtt => vtt::parse(&decoded.lines)?,
        };
        Ok(Self {
            format,
            source_encoding: encoding.map(|e| e.name()),
            bom: decoded.bom || encoding.is_some(),
            line_ending: decoded.line_ending,
            final_newline: decoded.final_newline,
            body,
        })
    }

    /// The format the file was parsed as (and [`write`](Self::write) writes).
    pub fn format(&self) -> SubtitleFormat {
        self.format
    }

    /// Whether the file is written with a UTF-8 byte order mark: it started with one, or it was
    /// converted from another encoding.
    pub fn has_bom(&self) -> bool {
        self.bom
    }

    /// The encoding the file was converted from (`"windows-1252"`, `"UTF-16LE"`, ...; the
    /// WHATWG name), or `None` when it was UTF-8.
    pub fn source_encoding(&self) -> Option<&'static str> {
        self.source_encoding
    }

    /// The file's line-ending style (the first one it used).
    pub fn line_ending(&self) -> LineEnding {
        self.line_ending
    }

    /// The cues, in file order. [`CueSpan::cue`] indexes this.
    pub fn cues(&self) -> &[Cue] {
        &self.body.cues
    }

    /// Writes the subtitles in their own format. For a UTF-8 file as parsed, these are the bytes
    /// it was parsed from.
    pub fn write(&self) -> Vec<u8> {
        let mut writer = Writer::new(self.bom, self.line_ending);
        for line in &self.body.leading {
            writer.line(line);
        }
        for block in &self.body.blocks {
            match &block.content {
                BlockContent::Cue(index) => {
                    if let Some(cue) = self.body.cues.get(*index) {
                        cue.write(&mut writer);
                    }
                }
                BlockContent::Raw { lines, .. } => lines.iter().for_each(|line| writer.line(line)),
            }
            block.blank_after.iter().for_each(|line| writer.line(line));
        }
        writer.finish(self.final_newline)
    }

    /// Writes the subtitles as `format`, keeping the BOM and line-ending style. Writing the own
    /// format is [`write`](Self::write). Converting writes fresh timestamps in the target syntax.
    ///
    /// - SRT → WebVTT: a `WEBVTT` header, the cue numbers as cue identifiers, `<i>`, `<b>`, `<u>`
    ///   kept, other tags dropped, `&`, `<`, `>` escaped, an `{\anN}` position turned into cue
    ///   settings (`line:0` for the top, `align:start`/`align:end` for left and right).
    /// - WebVTT → SRT: cues numbered from 1; header, NOTE, STYLE and REGION blocks, cue
    ///   identifiers and cue settings dropped; `<i>`, `<b>`, `<u>` kept, other tags dropped
    ///   (ruby text too), entities decoded; in a cue with several `<v Speaker>` voices each change
    ///   of speaker starts a line with a dialogue dash (`- `); speaker names are not kept.
    pub fn write_as(&self, format: SubtitleFormat) -> Vec<u8> {
        if format == self.format {
            return self.write();
        }
        let mut writer = Writer::new(self.bom, self.line_ending);
        match format {
            SubtitleFormat::Vtt => srt::write_vtt(&self.body.cues, &mut writer),
            SubtitleFormat::Srt => vtt::write_srt(&self.body.cues, &mut writer),
        }
        writer.finish(true)
    }

    /// The sentence units to translate, in order. Cues without text belong to no unit.
    pub fn sentence_units(&self, options: &SentenceOptions) -> Vec<SentenceUnit> {
        sentences::units(&self.body.cues, options)
    }

    /// Puts the translation of each of `units` (from [`sentence_units`](Self::sentence_units) on
    /// these subtitles; `translations[i]` translates `units[i]`) onto the cues, giving subtitles
    /// in the same format with every cue's timing, identifier and settings unchanged. Cues no unit
    /// covers keep their text. See [`Translated`] for the cues that did not fit the layout.
    pub fn apply_translations<S: AsRef<str>>(
        &self,
        units: &[SentenceUnit],
        translations: &[S],
        layout: &LayoutOptions,
    ) -> Result<Translated, SubtitleError> {
        apply::apply(self, units, translations, layout)
    }

    fn with_cues(&self, cues: Vec<Cue>) -> Self {
        Self {
            body: Body {
                cues,
                ..self.body.clone()
            },
            ..self.clone()
        }
    }
}

/// One cue: timing, optional identifier and settings, and text lines with their markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    identifier: Option<String>,
    /// The timing line as written, so an unchanged cue writes back exactly.
    timing_line: String,
    start_ms: u64,
    end_ms: u64,
    settings: String,
    lines: Vec<String>,
}

impl Cue {
    fn new(identifier: Option<&str>, timing_line: &str, timing: Timing, lines: &[&str]) -> Self {
        Self {
            identifier: identifier.map(str::to_string),
            timing_line: timing_line.to_string(),
            start_ms: timing.start_ms,
            end_ms: timing.end_ms,
            settings: timing.settings,
            lines: lines.iter().map(|line| line.to_string()).collect(),
        }
    }

    /// The identifier line as written: the SRT cue number, or the WebVTT cue identifier.
    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }

    /// Start time in milliseconds.
    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }

    /// End time in milliseconds.
    pub fn end_ms(&self) -> u64 {
        self.end_ms
    }

    /// What follows the end timestamp on the timing line: WebVTT cue settings
    /// (`align:start position:10%`) or SRT coordinates (`X1:100 X2:600 …`); empty if none.
    pub fn settings(&self) -> &str {
        &self.settings
    }

    /// The text lines as written, markup included.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The text without markup: tags (`<i>`, `<v Name>`, `<c.x>`, …) and `{\…}` override blocks
    /// removed, entities (`&amp;`) decoded, each line trimmed, blank lines dropped, lines joined
    /// with `\n`. Where a WebVTT cue has several `<v>` voices, a line that changes speaker starts
    /// with a dialogue dash (`- `). [`CueSpan::range`] indexes this string.
    pub fn plain_text(&self) -> String {
        markup::plain_lines(&self.lines).join("\n")
    }

    fn write(&self, writer: &mut Writer) {
        if let Some(identifier) = &self.identifier {
            writer.line(identifier);
        }
        writer.line(&self.timing_line);
        self.lines.iter().for_each(|line| writer.line(line));
    }

    fn with_lines(&self, lines: Vec<String>) -> Self {
        Self {
            identifier: self.identifier.clone(),
            timing_line: self.timing_line.clone(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            settings: self.settings.clone(),
            lines,
        }
    }
}
