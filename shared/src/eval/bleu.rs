//! Corpus BLEU as sacreBLEU computes it with its defaults (`sacrebleu.metrics.BLEU()`): the
//! `13a` tokenizer (mteval-v13a's, ported from `tokenizer_13a.py` and `tokenizer_re.py`),
//! n-grams up to 4, `exp` smoothing, no effective order, case kept.
//!
//! Each line is right-stripped and tokenized; n-gram matches are clipped by the highest count
//! of that n-gram in any of the line's references, and the reference length is the one closest
//! to the hypothesis length (the shorter on a tie). Counts and lengths are summed over the
//! corpus before the precisions, brevity penalty and score are computed, in the same order of
//! floating-point operations as sacreBLEU.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::{EvalError, SIGNATURE_VERSION, check_aligned, python_str};

/// Highest n-gram order (sacreBLEU's `MAX_NGRAM_ORDER`).
pub const MAX_NGRAM_ORDER: usize = 4;

/// sacreBLEU's `my_log(0)`: the log of a zero precision.
const LOG_ZERO: f64 = -9_999_999_999.0;

/// Corpus BLEU with the numbers sacreBLEU's `BLEUScore` carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BleuScore {
    /// BLEU, 0..=100.
    pub score: f64,
    /// Matching (clipped) n-grams per order, 1..=4.
    pub counts: [u64; MAX_NGRAM_ORDER],
    /// Hypothesis n-grams per order.
    pub totals: [u64; MAX_NGRAM_ORDER],
    /// Precision per order in percent, smoothed where no n-gram matched.
    pub precisions: [f64; MAX_NGRAM_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis length in tokens.
    pub sys_len: u64,
    /// Effective reference length in tokens.
    pub ref_len: u64,
    /// sacreBLEU's signature, e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:…`.
    pub signature: String,
}

impl BleuScore {
    /// Hypothesis length over reference length (0 without reference tokens).
    pub fn ratio(&self) -> f64 {
        if self.ref_len == 0 {
            0.0
        } else {
            self.sys_len as f64 / self.ref_len as f64
        }
    }
}

/// sacreBLEU's score line: `BLEU = 34.56 70.1/45.2/30.0/20.1 (BP = 1.000 ratio = 1.012 hyp_len
/// = 81 ref_len = 80)`.
impl fmt::Display for BleuScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [p1, p2, p3, p4] = self.precisions;
        write!(
            f,
            "BLEU = {:.2} {p1:.1}/{p2:.1}/{p3:.1}/{p4:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} \
             ref_len = {})",
            self.score,
            self.bp,
            self.ratio(),
            self.sys_len,
            self.ref_len
        )
    }
}

/// `tokenizer_re.py`'s substitutions, applied in order (Python `re.sub` and `Regex::replace_all`
/// both replace leftmost non-overlapping matches).
static REGEXP_TOKENIZER: LazyLock<[(Regex, &str); 4]> = LazyLock::new(|| {
    let re = |pattern: &str| Regex::new(pattern).expect("constant regex");
    [
        // `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: ASCII punctuation and symbols except `'`, `,`, `-`
        // and `.` (and the space, which is split away later), separated.
        (
            re(r"([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40/])"),
            " ${1} ",
        ),
        // Period and comma unless preceded by a digit.
        (re(r"([^0-9])([.,])"), "${1} ${2} "),
        // Period and comma unless followed by a digit.
        (re(r"([.,])([^0-9])"), " ${1} ${2}"),
        // Dash when preceded by a digit.
        (re(r"([0-9])(-)"), "${1} ${2} "),
    ]
});

/// sacreBLEU's `13a` tokenizer (`Tokenizer13a()(line)`): drops `<skipped>`, joins hyphenated
/// line breaks, unescapes `&quot;`, `&amp;`, `&lt;`, `&gt;` (one after the other, as sacreBLEU
/// does), separates punctuation, and returns the tokens joined by single spaces.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (regex, replacement) in REGEXP_TOKENIZER.iter() {
        line = regex.replace_all(&line, *replacement).into_owned();
    }
    python_str::split(&line).collect::<Vec<_>>().join(" ")
}

/// Counts of all n-grams of orders 1..=[`MAX_NGRAM_ORDER`], keyed by their tokens.
fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_NGRAM_ORDER {
        for ngram in tokens.windows(n) {
            *counts.entry(ngram).or_insert(0) += 1;
        }
    }
    counts
}

/// sacreBLEU's `_get_closest_ref_len`: the reference length closest to the hypothesis length,
/// the shorter one on a tie.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut closest: Option<(usize, usize)> = None; // (difference, length)
    for &ref_len in ref_lens {
        let diff = hyp_len.abs_diff(ref_len);
        closest = match closest {
            Some((d, l)) if diff > d || (diff == d && ref_len >= l) => Some((d, l)),
            _ => Some((diff, ref_len)),
        };
    }
    closest.map_or(0, |(_, len)| len)
}

/// Sufficient statistics of one corpus: lengths and per-order matches and totals.
#[derive(Debug, Default)]
struct Statistics {
    sys_len: u64,
    ref_len: u64,
    correct: [u64; MAX_NGRAM_ORDER],
    total: [u64; MAX_NGRAM_ORDER],
}

impl Statistics {
    /// Adds one segment: `hypothesis` and `references` already tokenized.
    fn add(&mut self, hypothesis: &str, references: &[String]) {
        let ref_tokens: Vec<Vec<&str>> = references
            .iter()
            .map(|r| python_str::split(r).collect())
            .collect();
        let mut ref_ngrams: HashMap<&[&str], u64> = HashMap::new();
        for tokens in &ref_tokens {
            for (ngram, count) in ngram_counts(tokens) {
                let best = ref_ngrams.entry(ngram).or_insert(0);
                *best = (*best).max(count);
            }
        }
        let ref_lens: Vec<usize> = ref_tokens.iter().map(Vec::len).collect();
        let hyp_tokens: Vec<&str> = python_str::split(hypothesis).collect();
        self.sys_len += hyp_tokens.len() as u64;
        self.ref_len += closest_ref_len(hyp_tokens.len(), &ref_lens) as u64;
        for (ngram, count) in ngram_counts(&hyp_tokens) {
            let n = ngram.len() - 1;
            self.total[n] += count;
            if let Some(&in_ref) = ref_ngrams.get(ngram) {
                self.correct[n] += count.min(in_ref);
            }
        }
    }

    /// sacreBLEU's `BLEU.compute_bleu` with `smooth_method='exp'`, `effective_order=False`.
    fn score(self, signature: String) -> BleuScore {
        let bp = if self.sys_len < self.ref_len {
            if self.sys_len > 0 {
                (1.0 - self.ref_len as f64 / self.sys_len as f64).exp()
            } else {
                0.0
            }
        } else {
            1.0
        };
        let mut precisions = [0.0; MAX_NGRAM_ORDER];
        let mut score = 0.0;
        if self.correct.iter().any(|&c| c > 0) {
            let mut smooth_mteval = 1.0;
            for (precision, (&correct, &total)) in precisions
                .iter_mut()
                .zip(self.correct.iter().zip(&self.total))
            {
                if total == 0 {
                    break;
                }
                *precision = if correct == 0 {
                    smooth_mteval *= 2.0;
                    100.0 / (smooth_mteval * total as f64)
                } else {
                    100.0 * correct as f64 / total as f64
                };
            }
            let log_sum = precisions
                .iter()
                .map(|&p| if p == 0.0 { LOG_ZERO } else { p.ln() })
                .fold(0.0, |sum, log| sum + log);
            score = bp * (log_sum / MAX_NGRAM_ORDER as f64).exp();
        }
        BleuScore {
            score,
            counts: self.correct,
            totals: self.total,
            precisions,
            bp,
            sys_len: self.sys_len,
            ref_len: self.ref_len,
            signature,
        }
    }
}

/// sacreBLEU's signature for these settings and `nrefs` reference streams.
fn signature(nrefs: usize) -> String {
    format!("nrefs:{nrefs}|case:mixed|eff:no|tok:13a|smooth:exp|version:{SIGNATURE_VERSION}")
}

/// Corpus BLEU of `hypotheses` (one segment per line) against one or more reference streams,
/// each with one line per hypothesis line: `sacrebleu.corpus_bleu(hypotheses, references)`.
pub fn corpus_bleu<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<BleuScore, EvalError>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_aligned(hypotheses.len(), references)?;
    let mut statistics = Statistics::default();
    for (i, hypothesis) in hypotheses.iter().enumerate() {
        let line_refs: Vec<String> = references
            .iter()
            .map(|stream| tokenize_13a(python_str::rstrip(stream.as_ref()[i].as_ref())))
            .collect();
        let hypothesis = tokenize_13a(python_str::rstrip(hypothesis.as_ref()));
        statistics.add(&hypothesis, &line_refs);
    }
    Ok(statistics.score(signature(references.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_like_mteval_13a() {
        assert_eq!(
            tokenize_13a("Hello, world! It's 1,000.50 dollars (5-6 days)."),
            "Hello , world ! It's 1,000.50 dollars ( 5 - 6 days ) ."
        );
        assert_eq!(
            tokenize_13a("Tom &amp; Jerry &quot;hi&quot; &amp;lt; <skipped>end"),
            "Tom & Jerry \" hi \" < end"
        );
        // A period is kept only between digits.
        assert_eq!(
            tokenize_13a("well-known U.S.A. 3.14 .5 5."),
            "well-known U . S . A . 3.14 . 5 5 ."
        );
        assert_eq!(tokenize_13a(""), "");
    }

    #[test]
    fn perfect_match_scores_100() {
        let text = ["the cat sat on the mat today"];
        let score = corpus_bleu(&text, &[text]).expect("aligned");
        // exp(ln 100) is 100.00000000000004, for sacreBLEU too.
        assert_eq!(score.score, 100.00000000000004);
        assert_eq!(score.bp, 1.0);
        assert_eq!(
            score.to_string(),
            "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 \
             ref_len = 7)"
        );
        assert_eq!(
            score.signature,
            format!("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{SIGNATURE_VERSION}")
        );
    }

    #[test]
    fn closest_reference_length_prefers_the_shorter_on_a_tie() {
        assert_eq!(closest_ref_len(5, &[7, 3, 4, 6]), 4);
        assert_eq!(closest_ref_len(5, &[6, 4]), 4);
        assert_eq!(closest_ref_len(5, &[]), 0);
    }

    #[test]
    fn no_match_scores_zero() {
        let score = corpus_bleu(&["a b c"], &[["x y z"]]).expect("aligned");
        assert_eq!(score.score, 0.0);
        assert_eq!(score.precisions, [0.0; 4]);
        let empty: [&str; 0] = [];
        assert_eq!(corpus_bleu(&empty, &[empty]).expect("aligned").score, 0.0);
    }
}
