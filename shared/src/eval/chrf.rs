//! chrF and chrF++ as sacreBLEU computes them (`sacrebleu.metrics.CHRF`).
//!
//! Character n-grams of orders 1..=6 are taken from each line with its whitespace removed;
//! chrF++ adds word unigrams and bigrams, the words being the whitespace-separated tokens with
//! one ASCII punctuation character split off the end (or, failing that, the start) of each
//! token longer than one character. Per line, each order contributes (hypothesis n-grams,
//! reference n-grams, matches); with several references the line keeps the statistics of the
//! reference with the best line-level score (the first on a tie). The statistics are summed over
//! the corpus, then scored with β = 2:
//!
//! - sacreBLEU's default (`eps_smoothing=False`, signature `eff:yes`): the precisions and
//!   recalls of the orders that occur on both sides are averaged, and the F-score of the
//!   averages is returned;
//! - with [`Chrf::eps_smoothing`] (chrF++.py, Moses and NLTK): the mean over all orders of each
//!   order's F-score, an order without n-grams counting with precision/recall 1e-16.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

use super::{EvalError, SIGNATURE_VERSION, check_aligned, python_str};

/// Python's `string.punctuation`, which sacreBLEU splits off words for chrF++.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// chrF's epsilon for an order without n-grams.
const EPS: f64 = 1e-16;

/// chrF settings; [`Chrf::CHRF`] and [`Chrf::CHRF_PLUS_PLUS`] are sacreBLEU's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chrf {
    /// Character n-gram orders (sacreBLEU: 6).
    pub char_order: usize,
    /// Word n-gram orders (0 for chrF, 2 for chrF++).
    pub word_order: usize,
    /// Weight of recall against precision (sacreBLEU: 2).
    pub beta: u32,
    /// chrF++.py's eps smoothing instead of sacreBLEU's default effective-order averaging.
    pub eps_smoothing: bool,
}

/// A corpus chrF score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChrfScore {
    /// sacreBLEU's name: `chrF2` or `chrF2++`.
    pub name: String,
    /// The score, 0..=100.
    pub score: f64,
    /// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:…`.
    pub signature: String,
    /// Summed (hypothesis n-grams, reference n-grams, matches) per order: character orders
    /// first, then word orders.
    pub statistics: Vec<[u64; 3]>,
}

/// One order's n-gram counts.
type Counts<'a> = HashMap<&'a str, u64>;

/// Counts of `text[i:i + n]` (Python slicing, so over characters).
fn char_ngrams(text: &str, n: usize) -> Counts<'_> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut counts = HashMap::new();
    for w in bounds.windows(n + 1) {
        *counts.entry(&text[w[0]..w[n]]).or_insert(0) += 1;
    }
    counts
}

/// Word n-grams of one order.
fn word_ngrams<'a>(words: &'a [&'a str], n: usize) -> HashMap<&'a [&'a str], u64> {
    let mut counts = HashMap::new();
    for ngram in words.windows(n) {
        *counts.entry(ngram).or_insert(0) += 1;
    }
    counts
}

/// sacreBLEU's `CHRF._remove_punctuation`: whitespace-separated words, with one punctuation
/// character split off the end, or else off the start, of each word longer than one character.
fn words(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in python_str::split(line) {
        let mut chars = w.chars();
        let (first, last) = (chars.next(), chars.next_back());
        match (first, last) {
            (Some(_), Some(l)) if PUNCTUATION.contains(l) => {
                let (head, tail) = w.split_at(w.len() - l.len_utf8());
                out.extend([head, tail]);
            }
            (Some(f), Some(_)) if PUNCTUATION.contains(f) => {
                let (head, tail) = w.split_at(f.len_utf8());
                out.extend([head, tail]);
            }
            _ => out.push(w),
        }
    }
    out
}

/// (hypothesis n-grams, reference n-grams, matches) of one order; hypothesis n-grams count as 0
/// when the reference has none (sacreBLEU's `_get_match_statistics`).
fn match_statistics<K: Eq + Hash>(hyp: &HashMap<K, u64>, reference: &HashMap<K, u64>) -> [u64; 3] {
    let mut matches = 0;
    let mut hyp_count = 0;
    for (ngram, &count) in hyp {
        hyp_count += count;
        if let Some(&in_ref) = reference.get(ngram) {
            matches += count.min(in_ref);
        }
    }
    let hyp_count = if reference.is_empty() { 0 } else { hyp_count };
    [hyp_count, reference.values().sum(), matches]
}

impl Chrf {
    /// chrF: character 6-grams, β = 2, sacreBLEU's defaults.
    pub const CHRF: Self = Self {
        char_order: 6,
        word_order: 0,
        beta: 2,
        eps_smoothing: false,
    };

    /// chrF++: chrF plus word unigrams and bigrams (sacreBLEU's `CHRF(word_order=2)`).
    pub const CHRF_PLUS_PLUS: Self = Self {
        word_order: 2,
        ..Self::CHRF
    };

    /// sacreBLEU's name for these settings: `chrF2`, `chrF2++`.
    pub fn name(&self) -> String {
        format!("chrF{}{}", self.beta, "+".repeat(self.word_order))
    }

    /// sacreBLEU's signature for these settings and `nrefs` reference streams.
    pub fn signature(&self, nrefs: usize) -> String {
        format!(
            "nrefs:{nrefs}|case:mixed|eff:{}|nc:{}|nw:{}|space:no|version:{SIGNATURE_VERSION}",
            if self.eps_smoothing { "no" } else { "yes" },
            self.char_order,
            self.word_order
        )
    }

    /// Character n-gram counts of orders 1..=`char_order` of a line without its whitespace.
    fn char_counts<'a>(&self, joined: &'a str) -> Vec<Counts<'a>> {
        (1..=self.char_order)
            .map(|n| char_ngrams(joined, n))
            .collect()
    }

    /// Statistics of one line against each of its references: the best reference's.
    fn line_statistics(&self, hypothesis: &str, references: &[&str]) -> Vec<[u64; 3]> {
        let hyp_joined: String = python_str::split(hypothesis).collect();
        let hyp_chars = self.char_counts(&hyp_joined);
        let hyp_words = words(hypothesis);
        let hyp_word_counts: Vec<_> = (1..=self.word_order)
            .map(|n| word_ngrams(&hyp_words, n))
            .collect();
        let mut best: Vec<[u64; 3]> = Vec::new();
        let mut best_score = -1.0;
        for reference in references {
            let ref_joined: String = python_str::split(reference).collect();
            let ref_words = words(reference);
            let mut statistics: Vec<[u64; 3]> = hyp_chars
                .iter()
                .zip(self.char_counts(&ref_joined))
                .map(|(h, r)| match_statistics(h, &r))
                .collect();
            statistics.extend(
                hyp_word_counts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| match_statistics(h, &word_ngrams(&ref_words, i + 1))),
            );
            let score = self.f_score(&statistics);
            if score > best_score {
                best_score = score;
                best = statistics;
            }
        }
        best
    }

    /// sacreBLEU's `CHRF._compute_f_score`, operation for operation.
    fn f_score(&self, statistics: &[[u64; 3]]) -> f64 {
        let factor = f64::from(self.beta.pow(2));
        let mut score = 0.0;
        let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0u32);
        for &[n_hyp, n_ref, n_match] in statistics {
            let prec = if n_hyp > 0 {
                n_match as f64 / n_hyp as f64
            } else {
                EPS
            };
            let rec = if n_ref > 0 {
                n_match as f64 / n_ref as f64
            } else {
                EPS
            };
            let denom = factor * prec + rec;
            score += if denom > 0.0 {
                (1.0 + factor) * prec * rec / denom
            } else {
                EPS
            };
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += prec;
                avg_rec += rec;
                effective_order += 1;
            }
        }
        if self.eps_smoothing {
            return 100.0 * score / statistics.len() as f64;
        }
        if effective_order == 0 {
            return 0.0;
        }
        avg_prec /= f64::from(effective_order);
        avg_rec /= f64::from(effective_order);
        if avg_prec + avg_rec == 0.0 {
            return 0.0;
        }
        let score = (1.0 + factor) * avg_prec * avg_rec / ((factor * avg_prec) + avg_rec);
        100.0 * score
    }

    /// Corpus score of `hypotheses` against one or more line-aligned reference streams:
    /// `CHRF(...).corpus_score(hypotheses, references)`.
    pub fn corpus_score<H, R, S>(
        &self,
        hypotheses: &[H],
        references: &[R],
    ) -> Result<ChrfScore, EvalError>
    where
        H: AsRef<str>,
        R: AsRef<[S]>,
        S: AsRef<str>,
    {
        check_aligned(hypotheses.len(), references)?;
        let mut totals = vec![[0u64; 3]; self.char_order + self.word_order];
        for (i, hypothesis) in hypotheses.iter().enumerate() {
            let line_refs: Vec<&str> = references
                .iter()
                .map(|stream| stream.as_ref()[i].as_ref())
                .collect();
            for (total, line) in totals
                .iter_mut()
                .zip(self.line_statistics(hypothesis.as_ref(), &line_refs))
            {
                for (t, l) in total.iter_mut().zip(line) {
                    *t += l;
                }
            }
        }
        Ok(ChrfScore {
            name: self.name(),
            score: self.f_score(&totals),
            signature: self.signature(references.len()),
            statistics: totals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_off_one_punctuation_character() {
        assert_eq!(
            words("(hi) \"well,\" a. . «x» end!!"),
            vec![
                "(hi", ")", "\"well,", "\"", "a", ".", ".", "«x»", "end!", "!"
            ]
        );
    }

    #[test]
    fn names_and_signatures_are_sacrebleus() {
        assert_eq!(Chrf::CHRF.name(), "chrF2");
        assert_eq!(Chrf::CHRF_PLUS_PLUS.name(), "chrF2++");
        assert_eq!(
            Chrf::CHRF_PLUS_PLUS.signature(1),
            format!("nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:{SIGNATURE_VERSION}")
        );
    }

    #[test]
    fn identical_text_scores_100_and_disjoint_text_0() {
        let text = ["Le chat est sur le tapis.", "猫がいます。"];
        let score = Chrf::CHRF_PLUS_PLUS
            .corpus_score(&text, &[text])
            .expect("aligned");
        assert!((score.score - 100.0).abs() < 1e-9, "{}", score.score);
        let score = Chrf::CHRF
            .corpus_score(&["abc"], &[["xyz"]])
            .expect("aligned");
        assert_eq!(score.score, 0.0);
    }
}
