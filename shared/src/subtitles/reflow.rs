//! Line breaking of cue text: at most `max_line_chars` characters per line and `max_lines`
//! lines, balanced.

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use super::split::break_points;
use super::text::collapse_whitespace;

/// The size limit of a cue's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutOptions {
    /// Characters (grapheme clusters) per line.
    pub max_line_chars: usize,
    /// Lines per cue.
    pub max_lines: usize,
}

impl Default for LayoutOptions {
    /// 42 characters × 2 lines, the common broadcast and streaming limit.
    fn default() -> Self {
        Self {
            max_line_chars: 42,
            max_lines: 2,
        }
    }
}

/// Text broken into lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reflowed {
    /// The lines, trimmed; none for empty text.
    pub lines: Vec<String>,
    /// False when the text did not fit the limits: it is then spread over `max_lines` balanced
    /// lines, some longer than `max_line_chars` (text is never dropped).
    pub fits: bool,
}

/// Breaks `text` (whitespace is collapsed first) into as few lines as fit the limits, the line
/// lengths balanced (the longest line as short as possible). Lines break after spaces, or
/// between Unicode word segments in scripts written without spaces (Han, kana), never inside a
/// word, before closing punctuation or after opening punctuation.
pub fn reflow(text: &str, options: &LayoutOptions) -> Reflowed {
    let text = collapse_whitespace(text);
    if text.is_empty() {
        return Reflowed {
            lines: Vec::new(),
            fits: true,
        };
    }
    let fits = |lines: &[String]| {
        lines
            .iter()
            .all(|line| width(line) <= options.max_line_chars)
    };
    let mut lines = vec![text.clone()];
    for count in 2..=options.max_lines {
        if fits(&lines) {
            break;
        }
        lines = balanced_lines(&text, count);
    }
    let fits = fits(&lines);
    Reflowed { lines, fits }
}

/// Display width in characters: grapheme clusters.
pub(super) fn width(text: &str) -> usize {
    text.graphemes(true).count()
}

/// `text` in (at most) `count` lines, minimising the longest line, then the sum of squared line
/// widths.
fn balanced_lines(text: &str, count: usize) -> Vec<String> {
    #[derive(Clone, Copy)]
    struct Best {
        longest: usize,
        squares: usize,
        from: usize,
    }
    let cuts: Vec<usize> = std::iter::once(0)
        .chain(break_points(text).into_iter().map(|point| point.byte))
        .chain([text.len()])
        .collect();
    let last = cuts.len() - 1;
    let count = count.min(last);
    let line_width = |from: usize, to: usize| width(text[cuts[from]..cuts[to]].trim());
    // best[lines - 1][end]: the best way to put text[..cuts[end]] into `lines` lines.
    let mut best: Vec<Vec<Option<Best>>> = vec![vec![None; cuts.len()]; count];
    for (end, cell) in best[0].iter_mut().enumerate().skip(1) {
        let w = line_width(0, end);
        *cell = Some(Best {
            longest: w,
            squares: w * w,
            from: 0,
        });
    }
    for lines in 1..count {
        for end in lines + 1..=last {
            best[lines][end] = (lines..end)
                .filter_map(|start| {
                    let previous = best[lines - 1][start]?;
                    let w = line_width(start, end);
                    Some(Best {
                        longest: previous.longest.max(w),
                        squares: previous.squares + w * w,
                        from: start,
                    })
                })
                .min_by_key(|best| (best.longest, best.squares));
        }
    }
    let mut lines = Vec::with_capacity(count);
    let mut end = last;
    for row in (0..count).rev() {
        let Some(cell) = best[row][end] else { break };
        lines.push(text[cuts[cell.from]..cuts[end]].trim().to_string());
        end = cell.from;
    }
    lines.reverse();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: LayoutOptions = LayoutOptions {
        max_line_chars: 42,
        max_lines: 2,
    };

    #[test]
    fn short_text_stays_on_one_line() {
        assert_eq!(
            reflow(" Then we wait.\n", &LAYOUT),
            Reflowed {
                lines: vec!["Then we wait.".into()],
                fits: true
            }
        );
    }

    #[test]
    fn long_text_is_balanced_over_two_lines() {
        let reflowed = reflow(
            "The harbour master says the ferry won't make it across before the wind turns",
            &LAYOUT,
        );
        assert!(reflowed.fits);
        assert_eq!(
            reflowed.lines,
            [
                "The harbour master says the ferry won't",
                "make it across before the wind turns"
            ]
        );
        let widths: Vec<usize> = reflowed.lines.iter().map(|line| width(line)).collect();
        assert!(widths.iter().all(|&w| w <= 42), "{widths:?}");
    }

    #[test]
    fn overlong_text_is_kept_and_flagged() {
        let text = "word ".repeat(30);
        let reflowed = reflow(&text, &LAYOUT);
        assert!(!reflowed.fits);
        assert_eq!(reflowed.lines.len(), 2);
        assert_eq!(reflowed.lines.join(" "), text.trim());
        let url = "https://example.invalid/a/very/long/path/that/cannot/be/broken/anywhere";
        assert_eq!(
            reflow(url, &LAYOUT),
            Reflowed {
                lines: vec![url.to_string()],
                fits: false
            }
        );
    }

    #[test]
    fn counts_graphemes_and_breaks_cjk() {
        let accents = "e\u{301}".repeat(42);
        assert!(reflow(&accents, &LAYOUT).fits);
        let small = LayoutOptions {
            max_line_chars: 8,
            max_lines: 2,
        };
        let reflowed = reflow("我们明天去北京看长城。", &small);
        assert!(reflowed.fits);
        assert_eq!(reflowed.lines.concat(), "我们明天去北京看长城。");
    }
}
