//! Word error rate as jiwer computes it (`jiwer.wer` / `jiwer.process_words` with its default
//! transform), on text first normalised by [`normalise_for_wer`] (Whisper's basic normaliser).
//!
//! Corpus WER is the sum of word edits (substitutions + deletions + insertions, the Levenshtein
//! distance) over all lines divided by the sum of reference words, not a mean of line WERs.
//! When there are no reference words at all, jiwer returns the number of insertions (the
//! hypothesis words) instead of a ratio; so does this module, per line and for the corpus.
//! The split of the edits into substitutions, deletions and insertions is not reported: jiwer
//! takes it from one optimal alignment, and where several alignments are optimal another
//! implementation may pick a different one.

use serde::Serialize;

use super::normalise::normalise_for_wer;
use super::{EvalError, check_aligned};

/// WER of a corpus, with its parts and each line's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WerScore {
    /// Word error rate (0 = perfect; can exceed 1).
    pub wer: f64,
    /// Word edits (substitutions + deletions + insertions) over all lines.
    pub errors: u64,
    /// Reference words over all lines, after normalisation.
    pub ref_words: u64,
    /// Hypothesis words over all lines, after normalisation.
    pub hyp_words: u64,
    /// Each line's numbers, in order.
    pub lines: Vec<LineWer>,
}

/// One line's WER.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineWer {
    /// The line's word error rate.
    pub wer: f64,
    /// Word edits.
    pub errors: u64,
    /// Reference words after normalisation.
    pub ref_words: u64,
    /// Hypothesis words after normalisation.
    pub hyp_words: u64,
}

/// jiwer's rate: edits per reference word, or the edit (= insertion) count without any.
fn rate(errors: u64, ref_words: u64) -> f64 {
    if ref_words == 0 {
        errors as f64
    } else {
        errors as f64 / ref_words as f64
    }
}

/// Word-level edit distance (substitutions + deletions + insertions) between two sequences.
pub fn word_edits<T: PartialEq>(hypothesis: &[T], reference: &[T]) -> usize {
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut current = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(r != h);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[hypothesis.len()]
}

/// Scores one line pair.
fn line_wer(hypothesis: &str, reference: &str) -> LineWer {
    let h = normalise_for_wer(hypothesis);
    let r = normalise_for_wer(reference);
    let errors = word_edits(&h, &r) as u64;
    let ref_words = r.len() as u64;
    LineWer {
        wer: rate(errors, ref_words),
        errors,
        ref_words,
        hyp_words: h.len() as u64,
    }
}

/// Corpus WER of line-aligned hypotheses against one reference stream.
pub fn corpus_wer<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
) -> Result<WerScore, EvalError> {
    check_aligned(hypotheses.len(), &[references])?;
    let lines: Vec<LineWer> = hypotheses
        .iter()
        .zip(references)
        .map(|(h, r)| line_wer(h.as_ref(), r.as_ref()))
        .collect();
    let errors = lines.iter().map(|l| l.errors).sum();
    let ref_words = lines.iter().map(|l| l.ref_words).sum();
    let hyp_words = lines.iter().map(|l| l.hyp_words).sum();
    Ok(WerScore {
        wer: rate(errors, ref_words),
        errors,
        ref_words,
        hyp_words,
        lines,
    })
}

/// Word error rate of one `hypothesis` against one `reference` text (0 = perfect; can exceed
/// 1), as `jiwer.wer(reference, hypothesis)` after Whisper's basic normaliser.
pub fn wer(hypothesis: &str, reference: &str) -> f64 {
    line_wer(hypothesis, reference).wer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_counts_substitutions_insertions_and_deletions() {
        assert_eq!(wer("the cat sat", "the cat sat"), 0.0);
        assert_eq!(wer("The cat, sat!", "the cat sat"), 0.0);
        assert!((wer("the bat sat", "the cat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((wer("the cat sat down", "the cat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert!((wer("the sat", "the cat sat") - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(wer("", ""), 0.0);
        // No reference words: jiwer's insertion count.
        assert_eq!(wer("x", ""), 1.0);
        assert_eq!(wer("x y", "[noise]"), 2.0);
    }

    #[test]
    fn corpus_wer_sums_edits_over_lines() {
        let score = corpus_wer(&["a b", "", "c"], &["a c", "x y", ""]).expect("aligned");
        // 1 substitution + 2 deletions + 1 insertion over 4 reference words.
        assert_eq!((score.errors, score.ref_words, score.hyp_words), (4, 4, 3));
        assert_eq!(score.wer, 1.0);
        let per_line: Vec<f64> = score.lines.iter().map(|l| l.wer).collect();
        assert_eq!(per_line, vec![0.5, 1.0, 1.0]);
        assert!(corpus_wer(&["a"], &["a", "b"]).is_err());
    }
}
