//! Tests on the fixture files in `tests/fixtures/subtitles/`.

use std::path::{Path, PathBuf};

use super::reflow::width;
use super::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/subtitles")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn parse(name: &str) -> Subtitles {
    Subtitles::parse(&fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// Every valid fixture (`*.srt`, `*.vtt` at the top level), by name.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".srt") || name.ends_with(".vtt"))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "fixtures missing: {names:?}");
    names
        .into_iter()
        .map(|name| (name.clone(), fixture(&name)))
        .collect()
}

fn timings(subtitles: &Subtitles) -> Vec<(u64, u64)> {
    subtitles
        .cues()
        .iter()
        .map(|cue| (cue.start_ms(), cue.end_ms()))
        .collect()
}

fn plain_texts(subtitles: &Subtitles) -> Vec<String> {
    subtitles.cues().iter().map(Cue::plain_text).collect()
}

fn translate(subtitles: &Subtitles, f: impl Fn(&str) -> String) -> Translated {
    let units = subtitles.sentence_units(&SentenceOptions::default());
    let translations: Vec<String> = units.iter().map(|unit| f(&unit.text)).collect();
    subtitles
        .apply_translations(&units, &translations, &LayoutOptions::default())
        .expect("applies")
}

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    for (name, bytes) in fixtures() {
        let subtitles = Subtitles::parse(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(
            subtitles.write() == bytes,
            "{name} did not round-trip:\n{}",
            String::from_utf8_lossy(&subtitles.write())
        );
        assert!(subtitles.write_as(subtitles.format()) == bytes, "{name}");
    }
}

#[test]
fn film_srt_has_every_cue_and_timing() {
    let film = parse("film.srt");
    assert_eq!(film.format(), SubtitleFormat::Srt);
    assert_eq!(
        (film.has_bom(), film.line_ending()),
        (false, LineEnding::Lf)
    );
    assert_eq!(film.cues().len(), 30);
    let identifiers: Vec<_> = film
        .cues()
        .iter()
        .map(|cue| cue.identifier().expect("numbered"))
        .collect();
    let expected: Vec<String> = (1..=30).map(|n| n.to_string()).collect();
    assert_eq!(identifiers, expected);
    assert_eq!(timings(&film)[0], (1_200, 4_000));
    assert_eq!(timings(&film)[29], (84_000, 87_000));
    let plain = plain_texts(&film);
    assert_eq!(plain[0], "The storm came in from the north\nthat winter,");
    assert_eq!(plain[2], "NORTH HARBOUR, 1962");
    assert_eq!(plain[29], "THE END");
}

#[test]
fn lecture_vtt_keeps_identifiers_settings_and_blocks() {
    let lecture = parse("lecture.vtt");
    assert_eq!(lecture.format(), SubtitleFormat::Vtt);
    let cues = lecture.cues();
    assert_eq!(cues.len(), 9);
    let identifiers: Vec<_> = cues.iter().map(Cue::identifier).collect();
    assert_eq!(
        identifiers[..5],
        [
            Some("intro"),
            None,
            Some("slide-2"),
            None,
            Some("question-1")
        ]
    );
    assert_eq!(cues[0].settings(), "align:start position:10% line:0");
    assert_eq!((cues[0].start_ms(), cues[0].end_ms()), (1_000, 4_500));
    assert_eq!(cues[8].start_ms(), 3_723_250);
    assert_eq!(
        cues[4].plain_text(),
        "- Is it more reliable than wind?\n- Much more."
    );
    assert_eq!(
        cues[5].plain_text(),
        "Tides follow the calendar & not the weather,\nthat's the whole point."
    );
    let kinds: Vec<_> = lecture
        .body
        .blocks
        .iter()
        .filter_map(|block| match &block.content {
            BlockContent::Raw { kind, .. } => Some(*kind),
            BlockContent::Cue(_) => None,
        })
        .collect();
    use BlockKind::*;
    assert_eq!(kinds, [Header, Style, Note, Region, Note]);
}

#[test]
fn tricky_variants_parse() {
    let srt = parse("bom_crlf.srt");
    assert_eq!(
        (srt.has_bom(), srt.line_ending(), srt.cues().len()),
        (true, LineEnding::CrLf, 5)
    );
    assert_eq!(srt.cues()[0].plain_text(), "Bonjour, Madame Lefèvre.");

    let messy = parse("messy.srt");
    assert_eq!(messy.cues().len(), 6);
    assert!(!messy.write().ends_with(b"\n"));
    assert_eq!(messy.cues()[1].settings(), "X1:100 X2:600 Y1:50 Y2:100");
    assert_eq!(
        messy.cues()[2].lines(),
        ["Because the bridge", "   ", "is already closing."]
    );
    assert_eq!(
        messy.cues()[2].plain_text(),
        "Because the bridge\nis already closing."
    );
    assert_eq!(messy.cues()[3].plain_text(), "Hold on to something...");
    assert_eq!(messy.cues()[4].identifier(), Some("5"));

    let vtt = parse("bom_crlf.vtt");
    assert_eq!(
        (vtt.has_bom(), vtt.line_ending(), vtt.cues().len()),
        (true, LineEnding::CrLf, 3)
    );
    assert_eq!(timings(&vtt), [(0, 2_500), (2_600, 5_000), (5_100, 7_000)]);
    assert_eq!(vtt.cues()[1].plain_text(), "It left\nan hour ago.");

    let legacy = parse("legacy_cr.srt");
    assert_eq!(
        (legacy.line_ending(), legacy.cues().len()),
        (LineEnding::Cr, 2)
    );
}

#[test]
fn invalid_inputs_give_typed_errors_with_line_numbers() {
    let cases = [
        ("invalid/garbage.bin", SubtitleError::NotText { line: 1 }),
        (
            "invalid/not_subtitles.json",
            SubtitleError::NotSubtitles { line: 1 },
        ),
        (
            "invalid/truncated_timestamp.srt",
            SubtitleError::InvalidTiming {
                line: 6,
                text: "00:00:03,000 --> 00:00:04,00".into(),
            },
        ),
        (
            "invalid/truncated_file.srt",
            SubtitleError::InvalidTiming {
                line: 10,
                text: "00:00:0".into(),
            },
        ),
    ];
    for (name, expected) in cases {
        let error = Subtitles::parse(&fixture(name)).expect_err(name);
        assert_eq!(error, expected, "{name}");
        let line = expected.line().expect("has a line");
        assert!(
            error.to_string().starts_with(&format!("line {line}: ")),
            "{error}"
        );
    }
    let json = fixture("invalid/not_subtitles.json");
    assert_eq!(
        Subtitles::parse_as(&json, SubtitleFormat::Vtt),
        Err(SubtitleError::MissingVttHeader { line: 1 })
    );
    assert_eq!(
        Subtitles::parse_as(&json, SubtitleFormat::Srt),
        Err(SubtitleError::NotSubtitles { line: 1 })
    );
    assert_eq!(
        Subtitles::parse_as(&fixture("film.srt"), SubtitleFormat::Vtt),
        Err(SubtitleError::MissingVttHeader { line: 1 })
    );
    assert_eq!(
        Subtitles::parse(b""),
        Err(SubtitleError::NotSubtitles { line: 1 })
    );
    assert_eq!(
        Subtitles::parse(b"\n  \n"),
        Err(SubtitleError::NotSubtitles { line: 1 })
    );
    // UTF-16 (a BOM, then "1"): text, but no subtitles.
    assert_eq!(
        Subtitles::parse(b"\xff\xfe1\x00"),
        Err(SubtitleError::NotSubtitles { line: 1 })
    );
}

#[test]
fn detects_the_format() {
    assert_eq!(
        SubtitleFormat::detect(&fixture("bom_crlf.vtt")),
        Ok(SubtitleFormat::Vtt)
    );
    assert_eq!(
        SubtitleFormat::detect(&fixture("messy.srt")),
        Ok(SubtitleFormat::Srt)
    );
    assert_eq!(
        SubtitleFormat::detect(b"00:00:01,000 --> 00:00:02,000\nNo number\n"),
        Ok(SubtitleFormat::Srt)
    );
    assert_eq!(
        SubtitleFormat::detect(b"WEBVTTX\n"),
        Err(SubtitleError::NotSubtitles { line: 1 })
    );
}

#[test]
fn film_sentences_merge_across_cues_and_split_within_them() {
    let film = parse("film.srt");
    let units = film.sentence_units(&SentenceOptions::default());
    let find = |text: &str| {
        units
            .iter()
            .find(|unit| unit.text == text)
            .unwrap_or_else(|| panic!("no unit {text:?} in {units:#?}"))
    };
    let three = find(
        "The harbour master says the ferry won't make it across before the wind turns, and the \
         supply boat is stuck in Kirkwall until Friday.",
    );
    assert_eq!(three.cues(), 5..8);
    assert_eq!(
        three.spans.iter().map(|span| span.cue).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert_eq!(find("The storm came in from the north that winter, and nobody on the island was ready for it.").cues(), 0..2);
    assert_eq!(find("NORTH HARBOUR, 1962").cues(), 2..3);
    assert_eq!(find("I'm here.").cues(), 4..5);
    assert!(find("Come down, quickly!").spans[0].dialogue);
    assert_eq!(find("Then we wait.").cues(), 8..9);
    assert_eq!(find("We always wait.").cues(), 8..9);
    assert_eq!(
        find("I was thinking maybe we could light the old lamp.").cues(),
        9..11
    );
    assert_eq!(find("It hasn't been lit since Dad died.").cues(), 12..13);
    assert_eq!(find("Mr. Harris took the wick.").cues(), 12..13);
    assert_eq!(find("♪ Row, row, the tide is turning ♪").cues(), 14..15);
    assert_eq!(find("(radio crackling)").cues(), 20..21);
    assert_eq!(
        find("We have lost our engine and we are drifting east towards the rocks at Black Point.")
            .cues(),
        22..24
    );
    // Every cue's text is in exactly the units, in order.
    let covered: Vec<usize> = units
        .iter()
        .flat_map(|unit| unit.spans.iter().map(|span| span.cue))
        .collect();
    assert!(covered.windows(2).all(|pair| pair[0] <= pair[1]));
    assert_eq!(
        covered
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        30
    );
}

#[test]
fn vtt_sentences_follow_voices_and_continuations() {
    let lecture = parse("lecture.vtt");
    let units = lecture.sentence_units(&SentenceOptions::default());
    let texts: Vec<&str> = units.iter().map(|unit| unit.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Good morning, everyone.",
            "Today we are going to look at how the tides can power a city.",
            "The moon pulls the ocean, and the ocean pulls our turbines.",
            "Is it more reliable than wind?",
            "Much more.",
            "Tides follow the calendar & not the weather, that's the whole point.",
            "A spring tide rises higher and a neap tide rises less.",
            "Thank you.",
        ]
    );
}

#[test]
fn translation_keeps_every_cue_timing_and_number() {
    for (name, bytes) in fixtures() {
        let subtitles = Subtitles::parse(&bytes).expect("parses");
        let translated = translate(&subtitles, str::to_uppercase);
        let output = &translated.subtitles;
        assert_eq!(output.format(), subtitles.format(), "{name}");
        assert_eq!(output.cues().len(), subtitles.cues().len(), "{name}");
        for (before, after) in subtitles.cues().iter().zip(output.cues()) {
            assert_eq!(
                (
                    before.identifier(),
                    before.start_ms(),
                    before.end_ms(),
                    before.settings()
                ),
                (
                    after.identifier(),
                    after.start_ms(),
                    after.end_ms(),
                    after.settings()
                ),
                "{name}"
            );
            assert_eq!(
                before.plain_text().is_empty(),
                after.plain_text().is_empty(),
                "{name}: {after:?}"
            );
        }
        assert!(
            translated.empty_cues.is_empty(),
            "{name}: {:?}",
            translated.empty_cues
        );
        let reparsed = Subtitles::parse(&output.write()).expect("translated output parses");
        assert_eq!(reparsed, *output, "{name}");
        assert_eq!(timings(&reparsed), timings(&subtitles), "{name}");
        assert_eq!(
            (reparsed.has_bom(), reparsed.line_ending()),
            (subtitles.has_bom(), subtitles.line_ending())
        );
    }
}

#[test]
fn translated_cues_fit_the_layout_or_are_reported() {
    let layout = LayoutOptions::default();
    for (name, bytes) in fixtures() {
        let subtitles = Subtitles::parse(&bytes).expect("parses");
        // A translation a third longer than the original.
        let translated = translate(&subtitles, |text| {
            format!("{text} {}", "bla ".repeat(text.len() / 12))
        });
        for (index, cue) in translated.subtitles.cues().iter().enumerate() {
            let lines: Vec<String> = cue.plain_text().lines().map(str::to_string).collect();
            let fits = lines.len() <= layout.max_lines
                && lines
                    .iter()
                    .all(|line| width(line) <= layout.max_line_chars);
            assert_eq!(
                fits,
                !translated.overlong_cues.contains(&index),
                "{name} cue {index}: {lines:?}"
            );
        }
    }
    let long = translate(&parse("film.srt"), |text| {
        format!("{text} {text} {text} {text}")
    });
    assert!(!long.overlong_cues.is_empty());
    assert!(long.empty_cues.is_empty());
}

#[test]
fn fixed_length_translations_put_text_on_every_cue() {
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor";
    for (name, bytes) in fixtures() {
        let subtitles = Subtitles::parse(&bytes).expect("parses");
        let translated = translate(&subtitles, |_| words.to_string());
        assert!(translated.empty_cues.is_empty(), "{name}");
        for (before, after) in subtitles.cues().iter().zip(translated.subtitles.cues()) {
            if !before.plain_text().is_empty() {
                assert!(!after.plain_text().is_empty(), "{name}: {after:?}");
            }
        }
    }
}

#[test]
fn translation_splits_a_three_cue_sentence_in_proportion() {
    let film = parse("film.srt");
    let units = film.sentence_units(&SentenceOptions::default());
    let translations: Vec<String> = units
        .iter()
        .map(|unit| {
            if unit.cues() == (5..8) {
                "Le capitaine du port dit que le ferry ne traversera pas avant que le vent tourne, \
                 et le bateau de ravitaillement est bloqué à Kirkwall jusqu'à vendredi."
                    .to_string()
            } else {
                unit.text.clone()
            }
        })
        .collect();
    let translated = film
        .apply_translations(&units, &translations, &LayoutOptions::default())
        .expect("applies");
    let cues = translated.subtitles.cues();
    // The original cues hold 47, 49 and 34 characters: the translation's 149 split near 54 and 110.
    assert_eq!(
        cues[5].lines(),
        ["Le capitaine du port dit", "que le ferry ne traversera"]
    );
    assert_eq!(
        cues[6].lines(),
        [
            "pas avant que le vent tourne,",
            "et le bateau de ravitaillement"
        ]
    );
    assert_eq!(cues[7].lines(), ["est bloqué à Kirkwall jusqu'à vendredi."]);
}

#[test]
fn whole_cue_styling_survives_translation() {
    let film = translate(&parse("film.srt"), str::to_uppercase);
    let lines = |index: usize| film.subtitles.cues()[index].lines().join("\n");
    assert_eq!(
        lines(0),
        "<i>THE STORM CAME IN FROM\nTHE NORTH THAT WINTER,</i>"
    );
    assert_eq!(lines(2), "{\\an8}NORTH HARBOUR, 1962");
    assert_eq!(lines(4), "- I'M HERE.\n- COME DOWN, QUICKLY!");
    assert_eq!(lines(9), "I WAS THINKING...");
    assert_eq!(lines(10), "...MAYBE WE COULD LIGHT THE OLD LAMP.");
    assert_eq!(lines(11), "<b>THE OLD LAMP?</b>");
    assert_eq!(lines(25), "I CAN'T DO IT ALONE, ANNA.");
    assert_eq!(lines(27), "{\\an8}<i>THREE HOURS LATER</i>");
    assert_eq!(lines(29), "<font color=\"#ffff00\">THE END</font>");

    let lecture = translate(&parse("lecture.vtt"), str::to_uppercase);
    let lines = |index: usize| lecture.subtitles.cues()[index].lines().join("\n");
    assert_eq!(lines(0), "<v Dr. Amira Haddad>GOOD MORNING, EVERYONE.");
    assert_eq!(lines(4), "- IS IT MORE RELIABLE THAN WIND?\n- MUCH MORE.");
    assert_eq!(
        lines(5),
        "<v Dr. Amira Haddad>TIDES FOLLOW THE CALENDAR &amp; NOT THE\nWEATHER, THAT'S THE WHOLE POINT."
    );
    assert_eq!(lines(8), "<v Dr. Amira Haddad><i>THANK YOU.</i></v>");
    let written = String::from_utf8(lecture.subtitles.write()).expect("utf-8");
    assert!(written.starts_with(
        "WEBVTT - Introduction to Tidal Energy\nKind: captions\nLanguage: en\n\nSTYLE\n"
    ));
    assert!(written.contains("\nNOTE The next cue overlaps the slide change.\n"));
    assert!(written.contains("intro\n00:01.000 --> 00:04.500 align:start position:10% line:0\n"));
}

#[test]
fn files_in_legacy_encodings_and_utf16_are_converted_and_written_as_utf8() {
    let utf8 = fixture("bom_crlf.srt");
    let original = parse("bom_crlf.srt");
    let text = std::str::from_utf8(&utf8[3..]).expect("utf-8 after the BOM");
    let (windows_1252, _, lossy) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!lossy);
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    for (bytes, encoding) in [
        (windows_1252.into_owned(), "windows-1252"),
        (utf16, "UTF-16LE"),
    ] {
        let converted = Subtitles::parse(&bytes).expect(encoding);
        assert_eq!(converted.source_encoding(), Some(encoding));
        assert_eq!(converted.cues(), original.cues(), "{encoding}");
        assert_eq!(converted.cues()[0].plain_text(), "Bonjour, Madame Lefèvre.");
        // Written as UTF-8 with a BOM: here, the bytes of the UTF-8 original.
        assert_eq!(converted.write(), utf8, "{encoding}");
        let translated = translate(&converted, str::to_uppercase).subtitles;
        let written = translated.write_as(SubtitleFormat::Vtt);
        assert!(
            written.starts_with("\u{feff}WEBVTT".as_bytes()),
            "{encoding}"
        );
        let reparsed = Subtitles::parse(&written).expect("reparse");
        assert_eq!(reparsed.source_encoding(), None);
        assert_eq!(reparsed.cues()[0].plain_text(), "BONJOUR, MADAME LEFÈVRE.");
    }
    assert_eq!(original.source_encoding(), None);
}

#[test]
fn crlf_and_bom_survive_translation_and_conversion() {
    for name in ["bom_crlf.srt", "bom_crlf.vtt"] {
        let subtitles = parse(name);
        let translated = translate(&subtitles, str::to_uppercase).subtitles;
        let target = match subtitles.format() {
            SubtitleFormat::Srt => SubtitleFormat::Vtt,
            SubtitleFormat::Vtt => SubtitleFormat::Srt,
        };
        for bytes in [translated.write(), translated.write_as(target)] {
            assert!(bytes.starts_with("\u{feff}".as_bytes()), "{name}");
            let lone_lf = bytes
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
            assert_eq!(lone_lf.count(), 0, "{name}");
        }
    }
}

#[test]
fn conversion_keeps_cues_timings_and_text() {
    for (name, bytes) in fixtures() {
        let source = Subtitles::parse(&bytes).expect("parses");
        let target = match source.format() {
            SubtitleFormat::Srt => SubtitleFormat::Vtt,
            SubtitleFormat::Vtt => SubtitleFormat::Srt,
        };
        let converted = Subtitles::parse(&source.write_as(target))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(converted.format(), target, "{name}");
        assert_eq!(timings(&converted), timings(&source), "{name}");
        assert_eq!(plain_texts(&converted), plain_texts(&source), "{name}");
        let back = Subtitles::parse(&converted.write_as(source.format())).expect("converts back");
        assert_eq!(timings(&back), timings(&source), "{name}");
        assert_eq!(plain_texts(&back), plain_texts(&source), "{name}");
    }
}

#[test]
fn srt_to_vtt_output_is_idiomatic() {
    let vtt = String::from_utf8(parse("film.srt").write_as(SubtitleFormat::Vtt)).expect("utf-8");
    assert!(vtt.starts_with(
        "WEBVTT\n\n1\n00:00:01.200 --> 00:00:04.000\n<i>The storm came in from the north\nthat winter,</i>\n\n2\n"
    ));
    assert!(vtt.contains("\n3\n00:00:09.500 --> 00:00:11.000 line:0\nNORTH HARBOUR, 1962\n"));
    assert!(vtt.ends_with("\n30\n00:01:24.000 --> 00:01:27.000\nTHE END\n"));
    let messy = String::from_utf8(parse("messy.srt").write_as(SubtitleFormat::Vtt)).expect("utf-8");
    assert!(messy.contains("\n2\n00:00:03.500 --> 00:00:05.000\n<b>Why?</b>\n"));
    assert!(messy.contains("\nBecause the bridge\nis already closing.\n"));
}

#[test]
fn vtt_to_srt_output_is_idiomatic() {
    let srt = String::from_utf8(parse("lecture.vtt").write_as(SubtitleFormat::Srt)).expect("utf-8");
    assert!(srt.starts_with("1\n00:00:01,000 --> 00:00:04,500\nGood morning, everyone.\n\n2\n00:00:04,600 --> 00:00:08,200\n"));
    assert!(srt.contains(
        "\n5\n00:00:15,500 --> 00:00:18,000\n- Is it more reliable than wind?\n- Much more.\n"
    ));
    assert!(
        srt.contains("\nTides follow the calendar & not the weather,\nthat's the whole point.\n")
    );
    assert!(srt.ends_with("\n9\n01:02:03,250 --> 01:02:06,000\n<i>Thank you.</i>\n"));
    for vtt_only in [
        "WEBVTT", "NOTE", "STYLE", "REGION", "align:", "<v", "<c", "intro", "&amp;",
    ] {
        assert!(!srt.contains(vtt_only), "{vtt_only} in\n{srt}");
    }
}

#[test]
fn chinese_and_japanese_units_and_splits() {
    let chinese = parse("chinese.srt");
    let units = chinese.sentence_units(&SentenceOptions::default());
    let texts: Vec<&str> = units.iter().map(|unit| unit.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "我们明天早上去北京看长城。",
            "你去吗？",
            "我不去。",
            "东京は雨です。"
        ]
    );
    let translations = [
        "Demain matin, nous irons voir la Grande Muraille à Pékin.",
        "Tu viens ?",
        "Non.",
        "Il pleut à Tokyo.",
    ];
    let translated = chinese
        .apply_translations(&units, &translations, &LayoutOptions::default())
        .expect("applies");
    let plain = plain_texts(&translated.subtitles);
    assert_eq!(
        plain[..3],
        [
            "Demain matin, nous irons",
            "voir la Grande Muraille à Pékin.",
            "Tu viens ? Non."
        ]
    );

    // Into a language without spaces: split between word segments, never losing text.
    let english = Subtitles::parse(b"1\n00:00:01,000 --> 00:00:02,000\nWe will go\n\n2\n00:00:02,100 --> 00:00:03,000\nto Beijing tomorrow.\n")
        .expect("parses");
    let units = english.sentence_units(&SentenceOptions::default());
    let translated = english
        .apply_translations(&units, &["我们明天去北京。"], &LayoutOptions::default())
        .expect("applies");
    let plain = plain_texts(&translated.subtitles);
    assert_eq!(plain.concat(), "我们明天去北京。");
    assert!(plain.iter().all(|text| !text.is_empty()), "{plain:?}");
}

/// Mangled fixtures (truncated, lines dropped, markup and separators inserted) never panic, and
/// whatever parses writes back byte for byte and survives sentence splitting and translation.
#[test]
fn mangled_input_never_panics() {
    const INSERTS: [&str; 12] = [
        "-->", "\n", "\n\n", "<i>", "</v>", "{\\an8}", "...", "- ", "00:0", "12", "\u{3002}", " ",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound.max(1) as u64) as usize
    };
    let mut parsed = 0;
    for (name, original) in fixtures() {
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + random(3) {
                let at = random(bytes.len() + 1);
                match random(3) {
                    0 => bytes.truncate(at),
                    1 => {
                        let end = (at + random(40)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    _ => {
                        let insert = INSERTS[random(INSERTS.len())].as_bytes();
                        bytes.splice(at..at, insert.iter().copied());
                    }
                }
            }
            let Ok(subtitles) = Subtitles::parse(&bytes) else {
                continue;
            };
            parsed += 1;
            // A cut inside the only non-ASCII character can leave bytes that read as a legacy
            // encoding: converted, and written as UTF-8 with a BOM.
            if subtitles.source_encoding().is_some() {
                let written = subtitles.write();
                assert!(written.starts_with("\u{feff}".as_bytes()), "{name}");
                assert!(std::str::from_utf8(&written).is_ok(), "{name}");
            } else if !bytes.contains(&b'\r') {
                assert!(
                    subtitles.write() == bytes,
                    "{name}: {}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            let translated = translate(&subtitles, str::to_uppercase);
            assert_eq!(translated.subtitles.cues().len(), subtitles.cues().len());
            let _ = translated.subtitles.write_as(SubtitleFormat::Srt);
            let _ = translated.subtitles.write_as(SubtitleFormat::Vtt);
        }
    }
    eprintln!("{parsed} mangled files parsed");
    assert!(parsed > 500, "{parsed}");
}
