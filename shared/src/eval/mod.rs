//! Text-quality measures shared by the tests, `voxctl score` and `voxctl eval`: BLEU and chrF /
//! chrF++ computed as sacreBLEU computes them, and WER computed as jiwer computes it on text
//! normalised by Whisper's basic normaliser.
//!
//! Data enters as line-aligned hypothesis and reference lines (one segment per line, the way
//! sacreBLEU and jiwer read files; [`lines`] splits a file's text) and leaves as a score struct
//! with the sufficient statistics and, for BLEU and chrF, sacreBLEU's reproducibility signature.
//!
//! - [`bleu::corpus_bleu`]: sacreBLEU's default corpus BLEU (`13a` tokenizer, 4-grams, `exp`
//!   smoothing, no effective order, mixed case), one or more references per line.
//! - [`chrf::Chrf`]: sacreBLEU's `CHRF`, as chrF ([`chrf::Chrf::CHRF`]) or chrF++
//!   ([`chrf::Chrf::CHRF_PLUS_PLUS`]), with sacreBLEU's defaults (including its default
//!   `eps_smoothing=False`) or the eps smoothing of the original chrF++.py.
//! - [`wer::corpus_wer`] / [`wer::wer`]: word error rate after [`normalise::whisper_basic`].
//!
//! "As sacreBLEU / jiwer computes it" is checked, not assumed: `scripts/eval-reference` records
//! sacreBLEU's and jiwer's numbers for every case in `tests/fixtures/eval/` into
//! `tests/fixtures/eval/reference.json` (with their versions), and this module's tests compare.
//! The ports follow the Python code operation by operation: on those fixtures every score is
//! identical to the bit, although the tests only require the 0.01. The remaining gap
//! is the Unicode version: Python 3.11's `unicodedata` is Unicode 14, while NFKC and general
//! categories here come from ICU4X's data and lower-casing from Rust's `std`, both newer; only
//! characters assigned since Unicode 14 can normalise differently.

pub mod bleu;
pub mod chrf;
pub mod normalise;
mod python_str;
pub mod wer;

#[cfg(test)]
mod tests;

pub use bleu::{BleuScore, corpus_bleu, tokenize_13a};
pub use chrf::{Chrf, ChrfScore};
pub use normalise::{normalise_for_wer, whisper_basic};
pub use wer::{LineWer, WerScore, corpus_wer, wer, word_edits};

/// The sacreBLEU release the BLEU and chrF ports were checked against (see
/// `tests/fixtures/eval/reference.json`).
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// The `version:` field of the signatures: sacreBLEU's version with `+voxbridge` appended, as
/// these numbers come from this port (checked against that release), not from sacreBLEU itself.
pub const SIGNATURE_VERSION: &str = "2.6.0+voxbridge";

/// Why a corpus could not be scored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvalError {
    /// No reference stream at all.
    #[error("no reference given")]
    NoReferences,
    /// A reference stream is not line-aligned with the hypotheses.
    #[error(
        "reference {reference} has {reference_lines} lines but the hypothesis has \
         {hypothesis_lines}: hypothesis and references must be line-aligned"
    )]
    LineCount {
        /// 1-based index of the reference stream.
        reference: usize,
        /// Lines in that reference stream.
        reference_lines: usize,
        /// Lines in the hypothesis stream.
        hypothesis_lines: usize,
    },
}

/// Checks that there is at least one reference stream and that each has as many lines as the
/// hypotheses.
fn check_aligned<R: AsRef<[S]>, S>(
    hypothesis_lines: usize,
    references: &[R],
) -> Result<(), EvalError> {
    if references.is_empty() {
        return Err(EvalError::NoReferences);
    }
    for (i, stream) in references.iter().enumerate() {
        let reference_lines = stream.as_ref().len();
        if reference_lines != hypothesis_lines {
            return Err(EvalError::LineCount {
                reference: i + 1,
                reference_lines,
                hypothesis_lines,
            });
        }
    }
    Ok(())
}

/// Splits the text of a file into segments the way sacreBLEU's command line reads files: lines
/// end at `\n` only (a final `\n` does not start another line), and trailing whitespace,
/// including a `\r` of CRLF files, is removed from each line. Empty lines are kept: they are
/// segments too.
pub fn lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n').map(python_str::rstrip).collect()
}

#[cfg(test)]
mod lines_tests {
    use super::*;

    #[test]
    fn lines_are_split_like_sacrebleus_reader() {
        assert!(lines("").is_empty());
        assert_eq!(lines("\n"), vec![""]);
        assert_eq!(lines("a\nb"), vec!["a", "b"]);
        assert_eq!(lines("a\r\nb \t\r\n\n"), vec!["a", "b", ""]);
        // Only `\n` ends a line; U+2028 and a lone `\r` inside a line do not.
        assert_eq!(lines("a\u{2028}b\rc\n"), vec!["a\u{2028}b\rc"]);
    }

    #[test]
    fn misaligned_streams_are_refused() {
        let hyp = ["a", "b"];
        let refs = [vec!["a", "b"], vec!["a"]];
        assert_eq!(
            corpus_bleu(&hyp, &refs),
            Err(EvalError::LineCount {
                reference: 2,
                reference_lines: 1,
                hypothesis_lines: 2
            })
        );
        let none: [Vec<&str>; 0] = [];
        assert_eq!(corpus_bleu(&hyp, &none), Err(EvalError::NoReferences));
    }
}
