//! Inline markup in cue text: tags (`<i>`, `<font color=…>`, `<v Name>`, `<c.class>`,
//! `<00:01.000>`), ASS override blocks (`{\an8}`) and HTML entities (`&amp;`).

/// A piece of a cue text line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    Text(&'a str),
    /// An opening or closing tag; `name` is empty for WebVTT timestamp tags.
    Tag {
        raw: &'a str,
        name: &'a str,
        closing: bool,
    },
    /// An ASS override block such as `{\an8}`.
    Override(&'a str),
}

/// Splits a line into text, tags and override blocks. A `<` or `{` that starts no well-formed
/// tag is text.
pub(super) fn tokenize(line: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let (mut text_start, mut at) = (0, 0);
    while let Some(found) = line[at..].find(['<', '{']) {
        let start = at + found;
        match markup_at(&line[start..]) {
            Some((len, token)) => {
                if text_start < start {
                    tokens.push(Token::Text(&line[text_start..start]));
                }
                tokens.push(token);
                at = start + len;
                text_start = at;
            }
            None => at = start + 1,
        }
    }
    if text_start < line.len() {
        tokens.push(Token::Text(&line[text_start..]));
    }
    tokens
}

fn markup_at(s: &str) -> Option<(usize, Token<'_>)> {
    if s.starts_with("{\\") {
        let len = s.find('}')? + 1;
        return Some((len, Token::Override(&s[..len])));
    }
    let len = s.strip_prefix('<')?.find('>')? + 2;
    let inner = &s[1..len - 1];
    let (closing, body) = inner
        .strip_prefix('/')
        .map_or((false, inner), |body| (true, body));
    let first = body.chars().next()?;
    if inner.contains('<') || !(first.is_ascii_alphabetic() || (first.is_ascii_digit() && !closing))
    {
        return None;
    }
    let name = if first.is_ascii_digit() {
        ""
    } else {
        &body[..body
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(body.len())]
    };
    Some((
        len,
        Token::Tag {
            raw: &s[..len],
            name,
            closing,
        },
    ))
}

/// Whether the tag is one both formats know: italic, bold, underline.
pub(super) fn is_basic_tag(name: &str) -> bool {
    ["i", "b", "u"]
        .iter()
        .any(|basic| name.eq_ignore_ascii_case(basic))
}

/// `<i>`, `</b>`: a basic tag in the lower case WebVTT requires.
pub(super) fn basic_tag(name: &str, closing: bool) -> String {
    let slash = if closing { "/" } else { "" };
    format!("<{slash}{}>", name.to_ascii_lowercase())
}

/// The line's text without markup, entities decoded, ruby annotations (`<rt>`) left out.
pub(super) fn plain_line(line: &str) -> String {
    let mut out = String::new();
    let mut in_ruby_text = false;
    for token in tokenize(line) {
        match token {
            Token::Text(text) if !in_ruby_text => out.push_str(&decode_entities(text)),
            Token::Tag { name, closing, .. } if name.eq_ignore_ascii_case("rt") => {
                in_ruby_text = !closing;
            }
            _ => {}
        }
    }
    out
}

/// The cue's plain text lines: trimmed, blank ones dropped, a speaker change between WebVTT
/// voices marked with a dialogue dash.
pub(super) fn plain_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .zip(speaker_changes(lines))
        .filter_map(|(line, change)| {
            let plain = plain_line(line);
            let text = plain.trim();
            match (text.is_empty(), change && !starts_with_dash(text)) {
                (true, _) => None,
                (false, true) => Some(format!("- {text}")),
                (false, false) => Some(text.to_string()),
            }
        })
        .collect()
}

fn starts_with_dash(text: &str) -> bool {
    text.starts_with(['-', '‐', '‑', '–', '—'])
}

/// For each line of a cue: whether it starts a new speaker, in a cue with at least two different
/// `<v>` voices. (In a cue with one voice the voice is styling, see [`Wrapping`].)
pub(super) fn speaker_changes(lines: &[String]) -> Vec<bool> {
    let mut voice: Option<&str> = None;
    let line_voices: Vec<Option<&str>> = lines
        .iter()
        .map(|line| {
            let mut first = None;
            for token in tokenize(line) {
                match token {
                    Token::Tag { raw, name, closing } if name.eq_ignore_ascii_case("v") => {
                        voice = if closing { None } else { Some(voice_name(raw)) };
                    }
                    Token::Text(text) if first.is_none() && !text.trim().is_empty() => {
                        first = Some(voice);
                    }
                    _ => {}
                }
            }
            first.flatten()
        })
        .collect();
    let mut previous = None;
    let changes: Vec<bool> = line_voices
        .iter()
        .map(|voice| {
            let change = voice.is_some() && *voice != previous;
            previous = voice.or(previous);
            change
        })
        .collect();
    if changes.iter().filter(|&&change| change).count() < 2 {
        return vec![false; lines.len()];
    }
    changes
}

/// `Dr. Haddad` in `<v.loud Dr. Haddad>`.
fn voice_name(raw: &str) -> &str {
    let inner = raw.trim_start_matches('<').trim_end_matches('>');
    inner
        .split_once(char::is_whitespace)
        .map_or("", |(_, name)| name.trim())
}

/// Decodes `&amp; &lt; &gt; &quot; &apos; &nbsp; &lrm; &rlm;` and numeric references; any other
/// `&` stays.
pub(super) fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match entity(rest) {
            Some((len, c)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(text: &str) -> Option<(usize, char)> {
    let end = text.find(';').filter(|&end| end <= 10)?;
    let c = match &text[1..end] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "lrm" => '\u{200e}',
        "rlm" => '\u{200f}',
        name => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((end + 1, c))
}

/// Escapes plain text for WebVTT cue text.
pub(super) fn escape_vtt(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Styling that applies to a whole cue: override blocks leading the text (`{\an8}`) and tags
/// open over all of its text (`<i>` around the cue, or around each of its lines; a WebVTT
/// `<v Speaker>`). Translation keeps these; tags on part of a cue cannot follow the words and
/// are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Wrapping {
    prefix: String,
    /// Opening tag and closing tag as written; the closing one is empty when the original never
    /// closed it (WebVTT voices often are not).
    tags: Vec<(String, String)>,
}

impl Wrapping {
    pub(super) fn of(lines: &[String]) -> Self {
        let prefix = lines
            .iter()
            .find(|line| !line.trim().is_empty())
            .map(|line| {
                tokenize(line.trim_start())
                    .iter()
                    .map_while(|token| match token {
                        Token::Override(raw) => Some(*raw),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            prefix,
            tags: whole_cue_tags(lines),
        }
    }

    /// Whether `other` looks the same on screen (the closing tags do not matter).
    pub(super) fn same_style(&self, other: &Self) -> bool {
        self.prefix == other.prefix
            && self.tags.len() == other.tags.len()
            && self.tags.iter().zip(&other.tags).all(|(a, b)| a.0 == b.0)
    }

    /// Wraps `lines` in the prefix and tags.
    pub(super) fn apply(&self, lines: &mut [String]) {
        if let Some(first) = lines.first_mut() {
            let opening: String = self.tags.iter().map(|(open, _)| open.as_str()).collect();
            first.insert_str(0, &format!("{}{opening}", self.prefix));
        }
        if let Some(last) = lines.last_mut() {
            self.tags
                .iter()
                .rev()
                .for_each(|(_, close)| last.push_str(close));
        }
    }
}

/// The tags open over every non-blank text token of the cue, outermost first.
fn whole_cue_tags(lines: &[String]) -> Vec<(String, String)> {
    let mut open: Vec<(&str, &str)> = Vec::new();
    let mut closers: Vec<(&str, &str)> = Vec::new();
    let mut common: Option<Vec<(&str, &str)>> = None;
    for token in lines.iter().flat_map(|line| tokenize(line)) {
        match token {
            Token::Tag { name: "", .. } | Token::Override(_) => {}
            Token::Tag {
                raw,
                name,
                closing: true,
            } => {
                if let Some(at) = open
                    .iter()
                    .rposition(|(open, _)| open.eq_ignore_ascii_case(name))
                {
                    open.remove(at);
                }
                closers.push((name, raw));
            }
            Token::Tag {
                raw,
                name,
                closing: false,
            } => {
                // A new voice ends the previous one.
                if name.eq_ignore_ascii_case("v") {
                    open.retain(|(open, _)| !open.eq_ignore_ascii_case("v"));
                }
                open.push((name, raw));
            }
            Token::Text(text) if !text.trim().is_empty() => {
                common = Some(match common.take() {
                    None => open.clone(),
                    Some(common) => common
                        .into_iter()
                        .filter(|tag| open.contains(tag))
                        .collect(),
                });
            }
            Token::Text(_) => {}
        }
    }
    common
        .unwrap_or_default()
        .into_iter()
        .map(|(name, raw)| {
            let close = closers
                .iter()
                .find(|(closer, _)| closer.eq_ignore_ascii_case(name));
            (
                raw.to_string(),
                close.map(|(_, raw)| raw.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn tokenizes_tags_overrides_and_stray_brackets() {
        let tokens = tokenize("{\\an8}<i>a < b</i> {c} <00:01.000><c.yellow>d</c>");
        assert_eq!(
            tokens,
            vec![
                Token::Override("{\\an8}"),
                Token::Tag {
                    raw: "<i>",
                    name: "i",
                    closing: false
                },
                Token::Text("a < b"),
                Token::Tag {
                    raw: "</i>",
                    name: "i",
                    closing: true
                },
                Token::Text(" {c} "),
                Token::Tag {
                    raw: "<00:01.000>",
                    name: "",
                    closing: false
                },
                Token::Tag {
                    raw: "<c.yellow>",
                    name: "c",
                    closing: false
                },
                Token::Text("d"),
                Token::Tag {
                    raw: "</c>",
                    name: "c",
                    closing: true
                },
            ]
        );
    }

    #[test]
    fn plain_text_strips_markup_and_decodes_entities() {
        assert_eq!(
            plain_line("<font color=\"#ff0\">Tom &amp; Jerry</font> &lt;3 &#233;"),
            "Tom & Jerry <3 é"
        );
        assert_eq!(plain_line("<ruby>東<rt>ひがし</rt></ruby>京"), "東京");
        assert_eq!(plain_line("AT&T &unknown;"), "AT&T &unknown;");
    }

    #[test]
    fn several_voices_become_dialogue_dashes() {
        let cue = lines("<v Student>Is it reliable?\n<v Dr. Haddad>Much more.");
        assert_eq!(plain_lines(&cue), vec!["- Is it reliable?", "- Much more."]);
        let cue = lines("<v Dr. Haddad>One speaker\nover two lines.");
        assert_eq!(plain_lines(&cue), vec!["One speaker", "over two lines."]);
    }

    #[test]
    fn finds_styling_that_wraps_the_whole_cue() {
        let wrapping = Wrapping::of(&lines("{\\an8}<i>Three hours\nlater</i>"));
        let mut out = vec!["Trois heures".to_string(), "plus tard".to_string()];
        wrapping.apply(&mut out);
        assert_eq!(out, vec!["{\\an8}<i>Trois heures", "plus tard</i>"]);

        let per_line = Wrapping::of(&lines("<i>one</i>\n<i>two</i>"));
        assert_eq!(per_line.tags, vec![("<i>".to_string(), "</i>".to_string())]);
        assert_eq!(Wrapping::of(&lines("<i>I</i> can't")), Wrapping::default());
        let voice = Wrapping::of(&lines("<v Dr. Haddad><i>Thanks.</i></v>"));
        assert_eq!(voice.tags.len(), 2);
        let unclosed = Wrapping::of(&lines("<v Bob>Hi"));
        assert_eq!(unclosed.tags, vec![("<v Bob>".to_string(), String::new())]);
    }

    #[test]
    fn escapes_for_webvtt() {
        assert_eq!(
            escape_vtt("a < b && c --> d"),
            "a &lt; b &amp;&amp; c --&gt; d"
        );
    }
}
