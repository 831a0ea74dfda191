//! Text normalisation before WER: a port of Whisper's `BasicTextNormalizer` (openai-whisper
//! 20250625, `whisper/normalizers/basic.py`, with its defaults `remove_diacritics=False`,
//! `split_letters=False`), the normaliser Whisper's authors use for languages other than
//! English.
//!
//! In order, as in Python: lower-case; delete `<…>` and `[…]` spans (`[<\[][^>\]]*[>\]]`) and
//! non-empty `(…)` spans (`\(([^)]+?)\)`); NFKC; replace every character whose general category
//! is a mark (M*), symbol (S*) or punctuation (P*) by a space; lower-case again; collapse each
//! run of whitespace to one space. Leading and trailing spaces stay, as in Whisper; the words
//! are what [`normalise_for_wer`] returns.
//!
//! So "don't" becomes the two words "don t", "café" stays "café" (NFKC composes it; only
//! combining marks that do not compose are replaced), "İ" becomes "i" plus a replaced combining
//! dot, "2²" becomes "22" and `[Music]` disappears. This replaces the earlier home-made
//! normaliser that kept apostrophes inside words: no test needed that behaviour, and WER is
//! only comparable with other systems' numbers (jiwer + Whisper's normaliser) if the
//! normalisation is the same. Whisper's full `EnglishTextNormalizer` (spelling out numbers,
//! British/American spellings, contractions) is not implemented.

use std::sync::LazyLock;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::{GeneralCategory, GeneralCategoryGroup};
use regex::Regex;

use super::python_str;

/// `[<\[][^>\]]*[>\]]`: text between `<` or `[` and the next `>` or `]`.
static BRACKETS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[<\[][^>\]]*[>\]]").expect("constant regex"));
/// `\(([^)]+?)\)`: text between `(` and the next `)`, at least one character.
static PARENTHESES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(([^)]+?)\)").expect("constant regex"));

/// General categories Whisper replaces by a space: `unicodedata.category(c)[0] in "MSP"`.
const MARK_SYMBOL_PUNCTUATION: GeneralCategoryGroup = GeneralCategoryGroup::Mark
    .union(GeneralCategoryGroup::Symbol)
    .union(GeneralCategoryGroup::Punctuation);

/// Whisper's `BasicTextNormalizer()(text)`.
pub fn whisper_basic(text: &str) -> String {
    let lower = text.to_lowercase();
    let without_brackets = BRACKETS.replace_all(&lower, "");
    let without_parentheses = PARENTHESES.replace_all(&without_brackets, "");
    let nfkc = ComposingNormalizerBorrowed::new_nfkc().normalize(&without_parentheses);
    let categories = CodePointMapData::<GeneralCategory>::new();
    let cleaned: String = nfkc
        .chars()
        .map(|c| {
            if MARK_SYMBOL_PUNCTUATION.contains(categories.get(c)) {
                ' '
            } else {
                c
            }
        })
        .collect();
    collapse_whitespace(&cleaned.to_lowercase())
}

/// `re.sub(r"\s+", " ", s)`.
fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if python_str::is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// The words WER compares: [`whisper_basic`], split at whitespace (what jiwer's default
/// transform does with the normalised text).
pub fn normalise_for_wer(text: &str) -> Vec<String> {
    python_str::split(&whisper_basic(text))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_whispers_rules() {
        assert_eq!(
            whisper_basic("[Music] Welcome back (applause) to the show!"),
            " welcome back to the show "
        );
        assert_eq!(whisper_basic("Don't 'quote' me."), "don t quote me ");
        assert_eq!(whisper_basic("ΟΔΟΣ İstanbul"), "οδος i stanbul");
        assert_eq!(whisper_basic("cafe\u{301} ﬁnal 2²"), "café final 22");
        // "()" is not a parenthesised span (`+?` needs a character); its characters are
        // punctuation.
        assert_eq!(whisper_basic("a () b (c"), "a b c");
        assert_eq!(whisper_basic("x\u{1f}\u{3000}y"), "x y");
        assert_eq!(whisper_basic(""), "");
    }

    #[test]
    fn words_drop_the_outer_spaces() {
        assert_eq!(
            normalise_for_wer("Don't 'quote' me."),
            vec!["don", "t", "quote", "me"]
        );
        assert_eq!(
            normalise_for_wer("Xin chào, hôm nay trời rất đẹp."),
            vec!["xin", "chào", "hôm", "nay", "trời", "rất", "đẹp"]
        );
        assert!(normalise_for_wer(" [inaudible] ... ").is_empty());
    }
}
