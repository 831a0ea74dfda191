//! Quality measures shared by tests, `voxctl score` and `voxctl eval`.
//!
//! WER uses a Whisper-style basic normalisation: lower case, punctuation removed (apostrophes
//! inside words kept), whitespace collapsed. (The full English normaliser of OpenAI's Whisper
//! also spells out numbers and unifies spellings; that is not done here.)

/// Normalises text for WER.
pub fn normalise_for_wer(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance between two word sequences.
pub fn word_edits(hypothesis: &[String], reference: &[String]) -> usize {
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

/// Word error rate of `hypothesis` against `reference` (0 = perfect; can exceed 1).
pub fn wer(hypothesis: &str, reference: &str) -> f64 {
    let h = normalise_for_wer(hypothesis);
    let r = normalise_for_wer(reference);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    word_edits(&h, &r) as f64 / r.len() as f64
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
        assert_eq!(wer("x", ""), 1.0);
    }

    #[test]
    fn apostrophes_inside_words_are_kept() {
        assert_eq!(
            normalise_for_wer("Don't 'quote' me."),
            vec!["don't", "quote", "me"]
        );
    }
}
