//! The parts of Python's `str` semantics that sacreBLEU, jiwer and Whisper's normaliser rely
//! on, where Rust's differ.
//!
//! Python's `str.split()`, `str.rstrip()` and the `\s` of `re` treat a character as whitespace
//! when `str.isspace()` holds: Unicode `White_Space` (what [`char::is_whitespace`] tests) plus
//! the four information separators U+001C..U+001F, which Python counts because of their
//! bidirectional class.

/// `str.isspace()` for one character.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.split()` without arguments: the non-empty runs between whitespace.
pub(crate) fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `str.rstrip()` without arguments.
pub(crate) fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_pythons() {
        // Every code point for which CPython 3.11's `str.isspace()` is true.
        let python: Vec<u32> = [
            0x9..=0xd,
            0x1c..=0x20,
            0x85..=0x85,
            0xa0..=0xa0,
            0x1680..=0x1680,
            0x2000..=0x200a,
            0x2028..=0x2029,
            0x202f..=0x202f,
            0x205f..=0x205f,
            0x3000..=0x3000,
        ]
        .into_iter()
        .flatten()
        .collect();
        let ours: Vec<u32> = (0..=0x10_ffff_u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_space(c))
            .map(u32::from)
            .collect();
        assert_eq!(ours, python);
    }

    #[test]
    fn split_and_rstrip() {
        assert_eq!(
            split(" a\u{1f}b\u{3000}\u{200b}c  ").collect::<Vec<_>>(),
            vec!["a", "b", "\u{200b}c"]
        );
        assert_eq!(rstrip("x \r\u{1c}"), "x");
    }
}
