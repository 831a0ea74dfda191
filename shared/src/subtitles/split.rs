//! Where text may be split (between cues, or between lines), and splitting a translation over a
//! unit's cues in proportion to their original text.
//!
//! Break points come from Unicode word boundaries (UAX #29, `unicode-segmentation`): after a space,
//! or, in scripts written without spaces (Han, kana), between word segments. Never inside a
//! word, never before closing punctuation (`,` `。` `»` `!`), never after opening punctuation.

use unicode_segmentation::UnicodeSegmentation;

use super::text::{collapse_whitespace, is_cjk};

/// A place text may be split: the second part starts at `byte`, after `chars` characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Break {
    pub(super) byte: usize,
    pub(super) chars: usize,
    /// 2 after a sentence end, 1 after a clause (comma, colon), else 0.
    pub(super) strength: u8,
}

/// The break points of whitespace-collapsed `text`, in order, strictly inside it.
pub(super) fn break_points(text: &str) -> Vec<Break> {
    let segments: Vec<(usize, &str)> = text.split_word_bound_indices().collect();
    let mut breaks = Vec::new();
    let mut chars = 0;
    for pair in segments.windows(2) {
        let &[(_, previous), (byte, next)] = pair else {
            continue;
        };
        chars += previous.chars().count();
        let before = text[..byte].trim_end().chars().next_back();
        if let (Some(before), Some(last), Some(first)) =
            (before, previous.chars().next_back(), next.chars().next())
            && may_break(before, last, first)
        {
            breaks.push(Break {
                byte,
                chars,
                strength: strength(before),
            });
        }
    }
    breaks
}

/// `before` is the last non-space character before the break, `last` and `first` the characters
/// either side of it.
fn may_break(before: char, last: char, first: char) -> bool {
    if first.is_whitespace() || no_break_before(first) || no_break_after(before) {
        return false;
    }
    last.is_whitespace() || is_cjk(last) || is_cjk(first)
}

fn no_break_before(c: char) -> bool {
    ",.;:!?)]}»›”’…、。，．！？：；）」』】〉》〕｝〟".contains(c)
}

fn no_break_after(c: char) -> bool {
    "([{«‹“‘¿¡「『（【〈《〔｛〝".contains(c)
}

fn strength(before: char) -> u8 {
    match before {
        '.' | '?' | '!' | '…' | '。' | '！' | '？' => 2,
        ',' | ';' | ':' | '，' | '、' | '；' | '：' => 1,
        _ => 0,
    }
}

/// Splits `text` into `weights.len()` parts whose lengths follow `weights` as closely as the
/// break points allow, preferring breaks after punctuation. Every part gets text when there are
/// enough break points; otherwise some parts are empty.
pub(super) fn split_proportionally(text: &str, weights: &[usize]) -> Vec<String> {
    let text = collapse_whitespace(text);
    if weights.len() <= 1 {
        return weights.iter().map(|_| text.clone()).collect();
    }
    let breaks = break_points(&text);
    let total_chars = text.chars().count();
    let total_weight = weights.iter().sum::<usize>().max(1);
    let targets: Vec<usize> = weights[..weights.len() - 1]
        .iter()
        .scan(0, |sum, weight| {
            *sum += weight;
            Some(total_chars * *sum / total_weight)
        })
        .collect();
    let cuts = if breaks.len() >= targets.len() {
        closest_cuts(&breaks, &targets)
    } else {
        sparse_cuts(&text, &breaks, &targets)
    };
    let mut parts = Vec::with_capacity(weights.len());
    let mut start = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        parts.push(text[start..cut].trim().to_string());
        start = cut;
    }
    parts
}

/// One break per target, strictly increasing, minimising the total distance to the targets (in
/// characters, less a bonus for breaking after punctuation): dynamic programming over
/// (target, break).
fn closest_cuts(breaks: &[Break], targets: &[usize]) -> Vec<usize> {
    const PUNCTUATION_BONUS: i64 = 6;
    let cost = |target: usize, at: &Break| {
        4 * (at.chars as i64 - target as i64).abs() - PUNCTUATION_BONUS * i64::from(at.strength)
    };
    let (count, len) = (targets.len(), breaks.len());
    let mut best = vec![vec![i64::MAX; len]; count];
    let mut from = vec![vec![0; len]; count];
    for (at, point) in breaks.iter().enumerate() {
        best[0][at] = cost(targets[0], point);
    }
    for cut in 1..count {
        let mut previous = (i64::MAX, 0);
        for at in cut..len {
            if best[cut - 1][at - 1] < previous.0 {
                previous = (best[cut - 1][at - 1], at - 1);
            }
            if previous.0 < i64::MAX {
                best[cut][at] = previous.0 + cost(targets[cut], &breaks[at]);
                from[cut][at] = previous.1;
            }
        }
    }
    let mut at = (0..len)
        .min_by_key(|&at| best[count - 1][at])
        .unwrap_or_default();
    let mut cuts = vec![0; count];
    for cut in (0..count).rev() {
        cuts[cut] = breaks[at].byte;
        at = from[cut][at];
    }
    cuts
}

/// Fewer break points than cuts: each word goes to the part its middle falls in.
fn sparse_cuts(text: &str, breaks: &[Break], targets: &[usize]) -> Vec<usize> {
    let total_chars = text.chars().count();
    let starts: Vec<(usize, usize)> = std::iter::once((0, 0))
        .chain(breaks.iter().map(|b| (b.byte, b.chars)))
        .collect();
    let ends = breaks.iter().map(|b| b.chars).chain([total_chars]);
    let words: Vec<(usize, usize)> = starts
        .iter()
        .zip(ends)
        .map(|(&(byte, start), end)| (byte, (start + end) / 2))
        .collect();
    targets
        .iter()
        .map(|&target| {
            words
                .iter()
                .find(|&&(_, middle)| middle >= target)
                .map_or(text.len(), |&(byte, _)| byte)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaks_of(text: &str) -> Vec<&str> {
        break_points(text)
            .into_iter()
            .map(|b| &text[b.byte..])
            .collect()
    }

    #[test]
    fn breaks_after_spaces_and_between_cjk_words() {
        assert_eq!(
            breaks_of("Hello, world! « Oui » ?"),
            ["world! « Oui » ?", "« Oui » ?"]
        );
        assert_eq!(breaks_of("don't well-known"), ["well-known"]);
        assert_eq!(breaks_of("我们，明天。"), ["们，明天。", "明天。", "天。"]);
        assert_eq!(breaks_of("東京へ"), ["京へ", "へ"]);
    }

    #[test]
    fn splits_in_proportion_at_word_boundaries() {
        let parts = split_proportionally("one two three four five six", &[10, 10, 10]);
        assert_eq!(parts, ["one two", "three four", "five six"]);
        let parts = split_proportionally("Alpha beta gamma delta", &[30, 5]);
        assert_eq!(parts, ["Alpha beta gamma", "delta"]);
    }

    #[test]
    fn gives_every_part_a_word_when_it_can() {
        let parts = split_proportionally("uno dos tres", &[100, 1, 1]);
        assert_eq!(parts, ["uno", "dos", "tres"]);
        let parts = split_proportionally("uno dos", &[1, 1, 1]);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), "unodos");
        assert_eq!(split_proportionally("Bonjour", &[5, 5]).concat(), "Bonjour");
    }

    #[test]
    fn prefers_punctuation_near_the_target() {
        let parts = split_proportionally("Oui, bien sûr. Je viens demain matin", &[16, 20]);
        assert_eq!(parts, ["Oui, bien sûr.", "Je viens demain matin"]);
    }

    #[test]
    fn splits_text_without_spaces() {
        let parts = split_proportionally("我们明天去北京看长城", &[4, 6]);
        assert_eq!(parts.concat(), "我们明天去北京看长城");
        assert!(parts.iter().all(|part| !part.is_empty()));
    }
}
