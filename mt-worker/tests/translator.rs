//! The translator against a real CTranslate2 model: `nllb-tiny` from the model mirror, an
//! NLLB-architecture model with random weights and a real sentencepiece tokenizer. Its words are
//! meaningless, so these tests assert structure, determinism and batching behaviour only.

use std::path::PathBuf;

use voxbridge_mt::translator::{Compute, Translator, TranslatorError, TranslatorOptions, VmapMode};

fn mirror() -> PathBuf {
    std::env::var_os("VOXBRIDGE_MODEL_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/models"))
}

fn load(compute: Compute, beam_size: usize) -> Translator {
    let dir = match compute {
        Compute::Float32 => mirror().join("nllb-tiny/float32"),
        _ => mirror().join("nllb-tiny/int8"),
    };
    Translator::load(
        &dir,
        TranslatorOptions {
            compute,
            beam_size,
            max_decoding_length: 12,
            ..TranslatorOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
}

fn texts(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn languages_come_from_the_vocabulary() {
    let t = load(Compute::Int8, 1);
    assert_eq!(t.languages().len(), 202);
    assert!(t.supports("vie_Latn") && t.supports("eng_Latn") && t.supports("zho_Hant"));
    assert!(!t.supports("xxx_Latn"));
    assert!(t.id().starts_with("nllb-tiny/int8:202:"), "{}", t.id());
    assert!(t.id().ends_with(":int8"), "{}", t.id());
    let f32 = load(Compute::Float32, 1);
    assert_ne!(
        t.id(),
        f32.id(),
        "different models must not share cache keys"
    );
}

#[test]
fn tokenisation_round_trips() {
    let t = load(Compute::Int8, 1);
    for text in [
        "Hello world, how are you?",
        "Xin chào thế giới.",
        "The meeting starts at 10:30.",
    ] {
        let pieces = t.tokenize(text).expect("tokenize");
        assert!(pieces.len() > 1, "{pieces:?}");
        assert!(
            pieces[0].starts_with('\u{2581}'),
            "sentencepiece marks word starts: {pieces:?}"
        );
        assert_eq!(t.detokenize(&pieces).expect("detokenize"), text);
    }
}

#[test]
fn a_text_alone_and_inside_a_batch_translates_identically() {
    for beam in [1, 4] {
        let t = load(Compute::Int8, beam);
        let batch = texts(&[
            "Hello world.",
            "The quick brown fox jumps over the lazy dog.",
            "How much does the ticket cost?",
            "See you tomorrow.",
        ]);
        let together = t
            .translate_batch(&batch, "eng_Latn", "vie_Latn")
            .expect("batch");
        assert_eq!(together.model_calls, 1);
        assert_eq!(together.units, 4);
        for (i, text) in batch.iter().enumerate() {
            let alone = t
                .translate_batch(std::slice::from_ref(text), "eng_Latn", "vie_Latn")
                .expect("alone");
            assert_eq!(
                alone.translations[0], together.translations[i],
                "beam {beam}, text {i}"
            );
        }
    }
}

/// A batch larger than `max_decode_batch` is decoded in parts and gives what one pass gives.
#[test]
fn a_batch_decoded_in_parts_translates_as_one_pass() {
    let dir = mirror().join("nllb-tiny/int8");
    let with_cap = |max_decode_batch| {
        Translator::load(
            &dir,
            TranslatorOptions {
                beam_size: 4,
                max_decoding_length: 12,
                max_decode_batch,
                ..TranslatorOptions::default()
            },
        )
        .expect("load")
    };
    let batch = texts(&[
        "Hello world.",
        "The quick brown fox jumps over the lazy dog.",
        "How much does the ticket cost?",
        "See you tomorrow.",
        "Please send the report by Friday.",
        "It is sunny today.",
        "Where is the train station?",
    ]);
    let whole = with_cap(0)
        .translate_batch(&batch, "eng_Latn", "vie_Latn")
        .expect("one pass");
    let parts = with_cap(2)
        .translate_batch(&batch, "eng_Latn", "vie_Latn")
        .expect("in parts");
    assert_eq!(parts.translations, whole.translations);
    assert_eq!(parts.tokens_out, whole.tokens_out);
}

#[test]
fn translation_is_deterministic_and_well_formed() {
    let t = load(Compute::Int8, 4);
    let input = texts(&["Where is the train station?"]);
    let a = t
        .translate_batch(&input, "eng_Latn", "vie_Latn")
        .expect("a");
    let b = t
        .translate_batch(&input, "eng_Latn", "vie_Latn")
        .expect("b");
    assert_eq!(a, b);
    // At most max_decoding_length tokens (target prefix included), and the language code is
    // not part of the text.
    assert!(a.tokens_out <= 12, "{a:?}");
    assert!(!a.translations[0].contains("vie_Latn"));
}

#[test]
fn empty_input_returns_empty_without_calling_the_model() {
    let t = load(Compute::Int8, 4);
    let out = t
        .translate_batch(&texts(&["", "   ", "\n\t"]), "eng_Latn", "vie_Latn")
        .expect("empty");
    assert_eq!(out.translations, vec!["", "", ""]);
    assert_eq!(out.model_calls, 0);
    let mixed = t
        .translate_batch(&texts(&["", "Hello."]), "eng_Latn", "vie_Latn")
        .expect("mixed");
    assert_eq!(mixed.units, 1);
    assert_eq!(mixed.translations[0], "");
}

#[test]
fn long_inputs_are_split_at_sentence_boundaries() {
    let dir = mirror().join("nllb-tiny/int8");
    let t = Translator::load(
        &dir,
        TranslatorOptions {
            max_input_tokens: 12,
            max_decoding_length: 8,
            beam_size: 1,
            ..TranslatorOptions::default()
        },
    )
    .expect("load");
    let long = "Hello world, this is the first sentence. Here is the second one, a bit longer. And a third.";
    let pieces: usize = voxbridge_mt::translator::sentences(long).count();
    assert_eq!(pieces, 3);
    let out = t
        .translate_batch(&texts(&[long, "Short."]), "eng_Latn", "vie_Latn")
        .expect("long");
    assert!(out.units >= 3, "long text was not split: {out:?}");
    assert_eq!(out.model_calls, 1, "all pieces go in one batch");
    assert_eq!(out.translations.len(), 2);
    // The joined translation is the pieces' translations in order.
    let first = t
        .translate_batch(
            &texts(&["Hello world, this is the first sentence."]),
            "eng_Latn",
            "vie_Latn",
        )
        .expect("first");
    assert!(
        out.translations[0].starts_with(first.translations[0].as_str()),
        "{out:?} vs {first:?}"
    );
}

#[test]
fn unsupported_languages_are_typed_errors() {
    let t = load(Compute::Int8, 1);
    let err = t
        .translate_batch(&texts(&["Hi"]), "eng_Latn", "xyz_Latn")
        .expect_err("unknown");
    assert!(
        matches!(err, TranslatorError::UnsupportedLanguage(ref l) if l == "xyz_Latn"),
        "{err}"
    );
}

#[test]
fn every_compute_type_loads_and_translates() {
    for compute in [Compute::Int8, Compute::Int8Float32, Compute::Float32] {
        let t = load(compute, 2);
        let out = t
            .translate_batch(&texts(&["Good morning."]), "eng_Latn", "fra_Latn")
            .expect("translate");
        assert_eq!(out.translations.len(), 1, "{compute:?}");
        assert!(out.tokens_out >= 1, "{compute:?}");
    }
}

#[test]
fn a_missing_model_directory_is_a_clear_error() {
    let err = Translator::load(
        std::path::Path::new("/nonexistent"),
        TranslatorOptions::default(),
    )
    .expect_err("missing");
    assert!(err.to_string().contains("model.bin"), "{err}");
}

#[test]
fn a_vocabulary_map_restricts_the_output_tokens() {
    // A copy of the model with a vmap.txt whose fixed candidates are three pieces.
    let source = mirror().join("nllb-tiny/int8");
    let dir = model_copy();
    let allowed = ["\u{2581}Xin", "\u{2581}ch", "\u{2581}trên"];
    let vocab: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(source.join("shared_vocabulary.json")).expect("vocab"),
    )
    .expect("json");
    for piece in allowed {
        assert!(
            vocab.iter().any(|v| v == piece),
            "{piece} not in the test vocabulary"
        );
    }
    std::fs::write(
        dir.path().join("vmap.txt"),
        format!("\t{}\n", allowed.join(" ")),
    )
    .expect("vmap");

    let options = TranslatorOptions {
        vmap: VmapMode::On,
        max_decoding_length: 10,
        beam_size: 2,
        ..TranslatorOptions::default()
    };
    let t = Translator::load(dir.path(), options.clone()).expect("load with vmap");
    let out = t
        .translate_batch(
            &texts(&["Hello world, how are you today?", "Good night."]),
            "eng_Latn",
            "vie_Latn",
        )
        .expect("translate");
    let words: std::collections::HashSet<&str> = ["Xin", "ch", "trên"].into();
    for translation in &out.translations {
        assert!(
            !translation.trim().is_empty(),
            "the map must still allow an output: {out:?}"
        );
        for word in translation.split_whitespace() {
            assert!(
                words.contains(word),
                "{word:?} is outside the vocabulary map: {translation:?}"
            );
        }
    }
    // Without the map the same model uses other tokens.
    let free = Translator::load(
        dir.path(),
        TranslatorOptions {
            vmap: VmapMode::Off,
            ..options
        },
    )
    .expect("load");
    let unrestricted = free
        .translate_batch(
            &texts(&["Hello world, how are you today?"]),
            "eng_Latn",
            "vie_Latn",
        )
        .expect("translate");
    assert_ne!(unrestricted.translations[0], out.translations[0]);

    // Asking for a map that is not there is a clear error.
    let err = Translator::load(
        &source,
        TranslatorOptions {
            vmap: VmapMode::On,
            ..TranslatorOptions::default()
        },
    )
    .expect_err("no vmap.txt in the mirror");
    assert!(err.to_string().contains("vmap.txt"), "{err}");
    // `auto` (the default) without a map translates freely.
    let plain = Translator::load(&source, TranslatorOptions::default()).expect("auto, no map");
    assert!(!plain.uses_vmap("vie_Latn"));
}

/// A writable copy of nllb-tiny/int8 (the mirror is read-only).
fn model_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for entry in std::fs::read_dir(mirror().join("nllb-tiny/int8")).expect("model dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    dir
}

/// A copy of nllb-tiny/int8 with `vmap` as its vmap.txt and, if given, `manifest` as vmap.json.
fn model_with_vmap(vmap: &str, manifest: Option<&str>) -> tempfile::TempDir {
    let dir = model_copy();
    std::fs::write(dir.path().join("vmap.txt"), vmap).expect("vmap.txt");
    if let Some(manifest) = manifest {
        std::fs::write(dir.path().join("vmap.json"), manifest).expect("vmap.json");
    }
    dir
}

#[test]
fn a_vocabulary_map_applies_only_to_the_languages_it_was_built_for() {
    // A map of three Vietnamese pieces, declared for Vietnamese only: French output must come
    // out exactly as without any map, never squeezed into Vietnamese tokens.
    let map = "\t\u{2581}Xin \u{2581}ch \u{2581}trên\n";
    let listed = model_with_vmap(map, Some(r#"{"languages": ["vie_Latn"]}"#));
    let options = TranslatorOptions {
        max_decoding_length: 10,
        beam_size: 2,
        ..TranslatorOptions::default()
    };
    assert_eq!(options.vmap, VmapMode::Auto, "auto is the default");
    let with_map = Translator::load(listed.path(), options.clone()).expect("load");
    let without = Translator::load(
        listed.path(),
        TranslatorOptions {
            vmap: VmapMode::Off,
            ..options.clone()
        },
    )
    .expect("load");
    assert!(with_map.uses_vmap("vie_Latn") && !with_map.uses_vmap("fra_Latn"));
    assert!(!without.uses_vmap("vie_Latn"));
    let input = texts(&["Hello world, how are you today?"]);
    let restricted = with_map
        .translate_batch(&input, "eng_Latn", "vie_Latn")
        .expect("vi");
    let allowed: std::collections::HashSet<&str> = ["Xin", "ch", "trên"].into();
    assert!(!restricted.translations[0].trim().is_empty());
    for word in restricted.translations[0].split_whitespace() {
        assert!(allowed.contains(word), "{word:?} outside the map");
    }
    let free_vi = without
        .translate_batch(&input, "eng_Latn", "vie_Latn")
        .expect("vi");
    assert_ne!(free_vi.translations, restricted.translations);
    for target in ["fra_Latn", "deu_Latn"] {
        assert_eq!(
            with_map
                .translate_batch(&input, "eng_Latn", target)
                .expect("unlisted target")
                .translations,
            without
                .translate_batch(&input, "eng_Latn", target)
                .expect("no map")
                .translations,
            "{target} is not in vmap.json: the map must not touch it"
        );
    }
    // The cache key's model id tells the two apart, and names the map's content.
    assert_ne!(with_map.id(), without.id());
    let other = model_with_vmap(
        "\t\u{2581}Xin \u{2581}ch\n",
        Some(r#"{"languages": ["vie_Latn"]}"#),
    );
    let other_map = Translator::load(other.path(), options.clone()).expect("load");
    assert_ne!(
        with_map.id().rsplit(':').next(),
        other_map.id().rsplit(':').next(),
        "another map, another id"
    );

    // A map without its language list: ignored by `auto`, applied to all by `on`.
    let unlisted = model_with_vmap(map, None);
    let auto = Translator::load(unlisted.path(), options.clone()).expect("load");
    assert!(!auto.uses_vmap("vie_Latn"));
    assert!(!auto.id().contains("vmap"));
    let on = Translator::load(
        unlisted.path(),
        TranslatorOptions {
            vmap: VmapMode::On,
            ..options.clone()
        },
    )
    .expect("load");
    assert!(on.uses_vmap("vie_Latn") && on.uses_vmap("fra_Latn"));

    // A list naming a language the model does not know is an error, not a silent no-op.
    let wrong = model_with_vmap(map, Some(r#"{"languages": ["vi"]}"#));
    let err = Translator::load(wrong.path(), options.clone()).expect_err("bad vmap.json");
    assert!(matches!(err, TranslatorError::Vmap { .. }), "{err}");
    assert!(err.to_string().contains("\"vi\""), "{err}");
}

#[test]
fn make_vmap_writes_a_map_the_worker_applies_to_its_languages_only() {
    // The real script (wordfreq word lists, the model's sentencepiece model) on a copy of
    // nllb-tiny, then the worker's default mode: the map is used for Vietnamese and German, not
    // for French.
    let dir = model_copy();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-vmap");
    let out = std::process::Command::new(&script)
        .args([
            "--model",
            dir.path().to_str().expect("utf-8"),
            "--to",
            "vi,de",
            "--words",
            "5000",
        ])
        .output()
        .expect("run scripts/make-vmap");
    assert!(
        out.status.success(),
        "make-vmap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("vmap.json")).expect("vmap.json"),
    )
    .expect("json");
    assert_eq!(
        manifest["languages"],
        serde_json::json!(["vie_Latn", "deu_Latn"])
    );
    let map = std::fs::read_to_string(dir.path().join("vmap.txt")).expect("vmap.txt");
    let always: std::collections::HashSet<&str> = map
        .lines()
        .next()
        .and_then(|l| l.strip_prefix('\t'))
        .expect("first line: the always-allowed tokens")
        .split(' ')
        .collect();
    let vocab: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("shared_vocabulary.json")).expect("vocab"),
    )
    .expect("json");
    assert!(
        always.len() < vocab.len(),
        "the map must restrict something"
    );
    // Every single Latin letter of the vocabulary stays allowed, so any word can be spelled.
    for piece in &vocab {
        let letter = piece.strip_prefix('\u{2581}').unwrap_or(piece);
        let mut chars = letter.chars();
        let latin = |c: char| {
            c.is_alphabetic()
                && (c.is_ascii()
                    || ('\u{00C0}'..='\u{024F}').contains(&c)
                    || ('\u{1E00}'..='\u{1EFF}').contains(&c))
        };
        if let (Some(c), None) = (chars.next(), chars.next())
            && latin(c)
        {
            assert!(always.contains(piece.as_str()), "{piece:?} not allowed");
        }
    }
    assert!(always.contains("vie_Latn") && always.contains("</s>"));

    let t = Translator::load(
        dir.path(),
        TranslatorOptions {
            max_decoding_length: 12,
            ..TranslatorOptions::default()
        },
    )
    .expect("load");
    assert!(t.uses_vmap("vie_Latn") && t.uses_vmap("deu_Latn") && !t.uses_vmap("fra_Latn"));
    // CTranslate2 accepts the file and decodes with it (a malformed map fails here).
    let out = t
        .translate_batch(
            &texts(&["The weather is nice today."]),
            "eng_Latn",
            "vie_Latn",
        )
        .expect("translate with the map");
    assert_eq!(out.model_calls, 1);
    assert!(!out.translations[0].trim().is_empty(), "{out:?}");
}
