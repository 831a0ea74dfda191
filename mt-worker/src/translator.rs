//! NLLB-200 (and M2M-100-style) translation on CTranslate2 through `ct2rs`.
//!
//! A model directory is what `ct2-transformers-converter --copy_files tokenizer.json
//! sentencepiece.bpe.model` writes: `model.bin`, `config.json`, `shared_vocabulary.json`,
//! `sentencepiece.bpe.model`. Source tokens are `[src_lang] + pieces + ["</s>"]`; decoding
//! starts from the target prefix `[tgt_lang]`, which is dropped from the output with any special
//! token before detokenising. The languages the model knows are the FLORES-style codes in its
//! vocabulary, so other models with the same conventions work by configuration alone.
//!
//! Everything here is blocking and CPU-bound: call it from a dedicated thread
//! (`tokio::task::spawn_blocking`), never from an async task.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ct2rs::sys::{ComputeType, Config, Device, TranslationOptions, Translator as Ct2Translator};
use sentencepiece::SentencePieceProcessor;

/// Files a model directory must contain.
pub const REQUIRED_FILES: [&str; 3] = [
    "model.bin",
    "shared_vocabulary.json",
    "sentencepiece.bpe.model",
];

/// Compute types offered on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compute {
    Int8,
    Int8Float32,
    Float32,
}

impl Compute {
    fn ct2(self) -> ComputeType {
        match self {
            Compute::Int8 => ComputeType::INT8,
            Compute::Int8Float32 => ComputeType::INT8_FLOAT32,
            Compute::Float32 => ComputeType::FLOAT32,
        }
    }

    /// Name as used in model ids and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Compute::Int8 => "int8",
            Compute::Int8Float32 => "int8_float32",
            Compute::Float32 => "float32",
        }
    }
}

/// When to restrict the output vocabulary with the model directory's vocabulary map
/// (`vmap.txt`, CTranslate2's `use_vmap`; written by `scripts/make-vmap` with a `vmap.json` that
/// lists the target languages it was built for).
///
/// A map built from one language's words turns translations into any other language into
/// garbage (their tokens are not in it), so the map is applied per batch, only when the batch's
/// target language is one the map lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmapMode {
    /// Use the map for the languages its `vmap.json` lists, when the model directory has one;
    /// otherwise translate without it (a `vmap.txt` without a language list is ignored).
    #[default]
    Auto,
    /// The model directory must hold a `vmap.txt` (loading fails otherwise). It is used for the
    /// languages `vmap.json` lists, or for every language when there is no `vmap.json`.
    #[value(alias = "true")]
    On,
    /// Never restrict the output.
    #[value(alias = "false")]
    Off,
}

/// The vocabulary map found in a model directory.
#[derive(Debug, Clone)]
struct Vmap {
    /// Target languages (FLORES codes) it serves; `None`: every language (`VmapMode::On` with a
    /// hand-made map that has no `vmap.json`).
    languages: Option<HashSet<String>>,
    /// First 12 hex digits of the SHA-256 of `vmap.txt` (part of the model id, so the cache
    /// never serves a translation made with another map, or without one).
    digest: String,
}

/// What `scripts/make-vmap` writes next to `vmap.txt`.
#[derive(Debug, serde::Deserialize)]
struct VmapManifest {
    /// FLORES-200 codes (`vie_Latn`), as requests name target languages.
    languages: Vec<String>,
}

/// How to load and run the model.
#[derive(Debug, Clone)]
pub struct TranslatorOptions {
    pub compute: Compute,
    /// Intra-op threads per replica.
    pub threads: usize,
    /// Model replicas (each runs one batch at a time).
    pub replicas: usize,
    pub beam_size: usize,
    pub length_penalty: f32,
    /// Hard cap on output tokens (target prefix included).
    pub max_decoding_length: usize,
    /// `no_repeat_ngram_size`: forbids repeating any n-gram of this size (0 = off); the guard
    /// against a model looping on one phrase.
    pub no_repeat_ngram_size: usize,
    /// Penalty > 1 discourages repeated tokens.
    pub repetition_penalty: f32,
    /// Inputs longer than this many source tokens are split at sentence boundaries, translated
    /// as separate batch entries and joined again (NLLB was trained on sentences, and its
    /// quality drops, and cost rises quadratically, on long inputs).
    pub max_input_tokens: usize,
    /// Restrict the decoder's output vocabulary with the model directory's `vmap.txt`
    /// (CTranslate2's vocabulary map, built by `scripts/make-vmap`) for the target languages it
    /// was built for: the output projection over NLLB's 256k tokens dominates decoding on CPUs
    /// without fast int8 kernels, and a map limited to the target languages' tokens scores a
    /// few thousand instead (docs/BENCHMARKS.md).
    pub vmap: VmapMode,
    /// Forces every output to exactly `max_decoding_length` tokens (benchmarks only: makes runs
    /// comparable with a random-weight model that rarely emits `</s>`).
    pub fixed_output_length: bool,
    /// Most texts decoded at once: a larger batch is sorted by length and decoded in parts of
    /// this size, one after the other (CTranslate2's `max_batch_size`; 0 = no limit). With the
    /// beam it bounds the decoder's caches and logits, the part of memory that grows with load:
    /// 6 × beam 4 holds the NLLB-600M-shaped model under 1 GB (docs/BENCHMARKS.md).
    pub max_decode_batch: usize,
}

impl Default for TranslatorOptions {
    fn default() -> Self {
        Self {
            compute: Compute::Int8,
            threads: 1,
            replicas: 1,
            beam_size: 4,
            length_penalty: 1.0,
            max_decoding_length: 256,
            no_repeat_ngram_size: 0,
            repetition_penalty: 1.0,
            max_input_tokens: 200,
            vmap: VmapMode::Auto,
            fixed_output_length: false,
            max_decode_batch: 6,
        }
    }
}

/// Why loading or translating failed.
#[derive(Debug, thiserror::Error)]
pub enum TranslatorError {
    #[error(
        "model directory {dir} is missing {file} (see README: converting NLLB-200 with ct2-transformers-converter)"
    )]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("could not read the vocabulary of {dir}: {reason}")]
    Vocabulary { dir: PathBuf, reason: String },
    #[error("could not load the sentencepiece model: {0}")]
    Tokenizer(String),
    #[error("could not load the CTranslate2 model: {0}")]
    Load(String),
    #[error("the model does not know language {0:?}")]
    UnsupportedLanguage(String),
    #[error("tokenisation failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("invalid vocabulary map in {dir}: {reason}")]
    Vmap { dir: PathBuf, reason: String },
}

/// A loaded model with its tokenizer.
pub struct Translator {
    model: Ct2Translator,
    spm: SentencePieceProcessor,
    languages: HashSet<String>,
    options: TranslatorOptions,
    vmap: Option<Vmap>,
    id: String,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("id", &self.id)
            .field("languages", &self.languages.len())
            .field("options", &self.options)
            .finish()
    }
}

impl Translator {
    /// Loads the model in `dir`.
    pub fn load(dir: &Path, options: TranslatorOptions) -> Result<Self, TranslatorError> {
        for file in REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(TranslatorError::MissingFile {
                    dir: dir.to_path_buf(),
                    file,
                });
            }
        }
        let languages = read_languages(dir)?;
        let vmap = read_vmap(dir, options.vmap, &languages)?;
        let spm = SentencePieceProcessor::open(dir.join("sentencepiece.bpe.model"))
            .map_err(|e| TranslatorError::Tokenizer(e.to_string()))?;
        let config = Config {
            device: Device::CPU,
            compute_type: options.compute.ct2(),
            // On CPU each listed device index is one replica, with its own copy of the weights
            // (CTranslate2's ModelLoader copies the model per index; sharing one copy needs its
            // num_replicas_per_device, which ct2rs does not expose).
            device_indices: vec![0; options.replicas.max(1)],
            num_threads_per_replica: options.threads.max(1),
            ..Config::default()
        };
        let model = Ct2Translator::new(dir, &config)
            .map_err(|e| TranslatorError::Load(format!("{e:#}")))?;
        // Loading frees large temporary buffers (with MKL, 0.32 GB for the NLLB-600M-shaped
        // fixture) that glibc would otherwise keep resident for good. (Trimming after every
        // batch too was measured: same peak, 15–20 % less throughput; docs/BENCHMARKS.md.)
        release_free_heap();
        // The id keys the translation cache: two models must never share one. Directory names
        // alone are not unique (".../nllb-tiny/int8" and ".../600m/int8"), so the weights' size
        // and the vocabulary's size are part of it.
        let name: Vec<String> = dir
            .components()
            .rev()
            .take(2)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let weights = std::fs::metadata(dir.join("model.bin"))
            .map(|m| m.len())
            .unwrap_or(0);
        let mut id = format!(
            "{}:{}:{weights}:{}",
            name.iter().rev().cloned().collect::<Vec<_>>().join("/"),
            languages.len(),
            options.compute.as_str()
        );
        if let Some(map) = &vmap {
            id.push_str(":vmap-");
            id.push_str(&map.digest);
            tracing::info!(
                languages = ?map.languages.as_ref().map(|l| {
                    let mut l: Vec<_> = l.iter().cloned().collect();
                    l.sort();
                    l
                }),
                "vocabulary map on (vmap.txt): outputs into these languages score only its tokens"
            );
        }
        Ok(Self {
            model,
            spm,
            languages,
            id,
            options,
            vmap,
        })
    }

    /// Whether translations into `target` are restricted by the vocabulary map.
    pub fn uses_vmap(&self, target: &str) -> bool {
        self.vmap.as_ref().is_some_and(|map| {
            map.languages
                .as_ref()
                .is_none_or(|languages| languages.contains(target))
        })
    }

    /// Identifies model and compute type (cache keys, provenance).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the model has this language code in its vocabulary.
    pub fn supports(&self, flores: &str) -> bool {
        self.languages.contains(flores)
    }

    /// The language codes of the model's vocabulary.
    pub fn languages(&self) -> &HashSet<String> {
        &self.languages
    }

    /// The sentencepiece pieces of `text` (without language code or `</s>`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>, TranslatorError> {
        self.spm
            .encode(text)
            .map(|pieces| pieces.into_iter().map(|p| p.piece).collect())
            .map_err(|e| TranslatorError::Tokenize(e.to_string()))
    }

    /// Joins pieces back into text.
    pub fn detokenize(&self, pieces: &[String]) -> Result<String, TranslatorError> {
        self.spm
            .decode_pieces(pieces)
            .map_err(|e| TranslatorError::Tokenize(e.to_string()))
    }

    /// Translates `texts` from `source` into `target` in one batch. Empty or whitespace-only
    /// texts come back empty without reaching the model; texts over `max_input_tokens` are split
    /// at sentence boundaries into several batch entries and joined again. Returns the
    /// translations (in order) and the source/target token counts.
    pub fn translate_batch(
        &self,
        texts: &[String],
        source: &str,
        target: &str,
    ) -> Result<BatchOutput, TranslatorError> {
        for lang in [source, target] {
            if !self.supports(lang) {
                return Err(TranslatorError::UnsupportedLanguage(lang.to_string()));
            }
        }
        // One unit per batch entry: (index of the text it belongs to, source tokens).
        let mut units: Vec<(usize, Vec<String>)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            for piece in self.split_long(text)? {
                let mut tokens = Vec::with_capacity(piece.len() + 2);
                tokens.push(source.to_string());
                tokens.extend(piece);
                tokens.push("</s>".to_string());
                units.push((i, tokens));
            }
        }
        let mut translations = vec![String::new(); texts.len()];
        if units.is_empty() {
            return Ok(BatchOutput {
                translations,
                tokens_in: 0,
                tokens_out: 0,
                model_calls: 0,
                units: 0,
            });
        }
        let tokens_in = units.iter().map(|(_, t)| t.len()).sum();
        let batch: Vec<Vec<String>> = units.iter().map(|(_, t)| t.clone()).collect();
        let prefix = vec![vec![target.to_string()]; batch.len()];
        let options: TranslationOptions<String, String> = TranslationOptions {
            beam_size: self.options.beam_size,
            length_penalty: self.options.length_penalty,
            max_decoding_length: self.options.max_decoding_length,
            min_decoding_length: if self.options.fixed_output_length {
                self.options.max_decoding_length
            } else {
                1
            },
            no_repeat_ngram_size: self.options.no_repeat_ngram_size,
            repetition_penalty: self.options.repetition_penalty,
            use_vmap: self.uses_vmap(target),
            max_batch_size: self.options.max_decode_batch,
            ..TranslationOptions::default()
        };
        let results = self
            .model
            .translate_batch_with_target_prefix(&batch, &prefix, &options, None)
            .map_err(|e| TranslatorError::Inference(format!("{e:#}")))?;
        let mut tokens_out = 0;
        for ((index, _), result) in units.iter().zip(results) {
            let hypothesis = result.hypotheses.into_iter().next().unwrap_or_default();
            tokens_out += hypothesis.len();
            let pieces: Vec<String> = hypothesis
                .into_iter()
                .filter(|t| !is_special(t, &self.languages))
                .collect();
            let text = self.detokenize(&pieces)?;
            let out = &mut translations[*index];
            if !out.is_empty() && !text.trim().is_empty() {
                out.push(' ');
            }
            out.push_str(text.trim());
        }
        Ok(BatchOutput {
            translations,
            tokens_in,
            tokens_out,
            model_calls: 1,
            units: units.len(),
        })
    }

    /// Tokenises `text` into one or more pieces of at most `max_input_tokens` tokens, split at
    /// sentence boundaries (Unicode UAX #29), and at word boundaries only for a single sentence
    /// that is itself too long.
    fn split_long(&self, text: &str) -> Result<Vec<Vec<String>>, TranslatorError> {
        let limit = self.options.max_input_tokens.max(8);
        let tokens = self.tokenize(text)?;
        if tokens.len() <= limit {
            return Ok(vec![tokens]);
        }
        let mut pieces: Vec<Vec<String>> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for sentence in sentences(text) {
            let sentence_tokens = self.tokenize(sentence)?;
            if !current.is_empty() && current.len() + sentence_tokens.len() > limit {
                pieces.push(std::mem::take(&mut current));
            }
            if sentence_tokens.len() > limit {
                // One overlong sentence: cut it at word starts (pieces beginning with '▁').
                let mut chunk: Vec<String> = Vec::new();
                for token in sentence_tokens {
                    if chunk.len() >= limit && token.starts_with('\u{2581}') {
                        pieces.push(std::mem::take(&mut chunk));
                    }
                    chunk.push(token);
                }
                if !chunk.is_empty() {
                    pieces.push(chunk);
                }
            } else {
                current.extend(sentence_tokens);
            }
        }
        if !current.is_empty() {
            pieces.push(current);
        }
        Ok(pieces)
    }
}

/// Sentences of `text` (Unicode sentence boundaries), trimmed, empty ones dropped.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    use unicode_segmentation::UnicodeSegmentation;
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Result of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutput {
    pub translations: Vec<String>,
    pub tokens_in: usize,
    pub tokens_out: usize,
    /// How many times the model ran (0 when every text was empty).
    pub model_calls: usize,
    /// Batch entries sent to the model (a long text split in three counts three).
    pub units: usize,
}

fn is_special(token: &str, languages: &HashSet<String>) -> bool {
    matches!(token, "</s>" | "<s>" | "<pad>" | "<unk>" | "<mask>") || languages.contains(token)
}

/// Language codes are the vocabulary entries shaped like `xxx_Xxxx` (FLORES-200) or `__xx__`
/// (M2M-100).
fn read_languages(dir: &Path) -> Result<HashSet<String>, TranslatorError> {
    let path = dir.join("shared_vocabulary.json");
    let err = |reason: String| TranslatorError::Vocabulary {
        dir: dir.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    let vocab: Vec<String> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let languages: HashSet<String> = vocab
        .into_iter()
        .filter(|t| is_flores_code(t) || (t.starts_with("__") && t.ends_with("__") && t.len() <= 9))
        .collect();
    if languages.is_empty() {
        return Err(err("no language codes found in the vocabulary".into()));
    }
    Ok(languages)
}

fn is_flores_code(token: &str) -> bool {
    let Some((lang, script)) = token.split_once('_') else {
        return false;
    };
    lang.len() == 3
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && script.len() == 4
        && script
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
        && script.chars().skip(1).all(|c| c.is_ascii_lowercase())
}

/// The directory's vocabulary map, if `mode` asks for one and it exists.
fn read_vmap(
    dir: &Path,
    mode: VmapMode,
    known: &HashSet<String>,
) -> Result<Option<Vmap>, TranslatorError> {
    use sha2::{Digest, Sha256};
    let map_path = dir.join("vmap.txt");
    let manifest_path = dir.join("vmap.json");
    let err = |reason: String| TranslatorError::Vmap {
        dir: dir.to_path_buf(),
        reason,
    };
    match mode {
        VmapMode::Off => return Ok(None),
        VmapMode::On if !map_path.is_file() => {
            return Err(TranslatorError::MissingFile {
                dir: dir.to_path_buf(),
                file: "vmap.txt",
            });
        }
        VmapMode::Auto if !map_path.is_file() => return Ok(None),
        VmapMode::Auto if !manifest_path.is_file() => {
            tracing::warn!(
                dir = %dir.display(),
                "vmap.txt without vmap.json (its target languages): not used; build the map with \
                 scripts/make-vmap, or set --use-vmap on to apply it to every language"
            );
            return Ok(None);
        }
        _ => {}
    }
    let languages = if manifest_path.is_file() {
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| err(e.to_string()))?;
        let manifest: VmapManifest =
            serde_json::from_str(&text).map_err(|e| err(format!("vmap.json: {e}")))?;
        if manifest.languages.is_empty() {
            return Err(err("vmap.json lists no languages".into()));
        }
        if let Some(unknown) = manifest.languages.iter().find(|l| !known.contains(*l)) {
            return Err(err(format!(
                "vmap.json lists {unknown:?}, which the model does not know"
            )));
        }
        Some(manifest.languages.into_iter().collect())
    } else {
        None
    };
    let bytes = std::fs::read(&map_path).map_err(|e| err(e.to_string()))?;
    let digest = hex::encode(Sha256::digest(&bytes))[..12].to_string();
    // Operators should see that output is restricted (and for which languages).
    tracing::info!(
        map = %map_path.display(),
        %digest,
        languages = ?languages.as_ref().map(|l: &HashSet<String>| {
            let mut l: Vec<_> = l.iter().collect();
            l.sort();
            l
        }),
        "vocabulary map in use: translations into these languages (all when none are listed) \
         can only produce the map's tokens and the source's"
    );
    Ok(Some(Vmap { languages, digest }))
}

/// Returns the heap's free pages to the operating system (glibc's `malloc_trim`). A no-op where
/// the allocator is not glibc's.
#[allow(unsafe_code)]
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes every heap block of `bytes` or more its own memory mapping, unmapped when freed
/// (glibc's `M_MMAP_THRESHOLD`; this also stops glibc from raising the threshold by itself).
/// Process-wide. A no-op where the allocator is not glibc's.
#[allow(unsafe_code)]
pub fn set_mmap_threshold(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a parameter of the allocator; it is thread-safe.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) } != 1 {
            tracing::warn!(bytes, "mallopt(M_MMAP_THRESHOLD) refused the value");
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_unicode_boundaries() {
        let s: Vec<_> = sentences("Hello world. How are you? Fine!  ").collect();
        assert_eq!(s, ["Hello world.", "How are you?", "Fine!"]);
        assert_eq!(sentences("   ").count(), 0);
    }

    #[test]
    fn flores_codes_are_recognised() {
        assert!(is_flores_code("vie_Latn"));
        assert!(is_flores_code("zho_Hant"));
        assert!(!is_flores_code("▁the"));
        assert!(!is_flores_code("vie_latn"));
    }
}
