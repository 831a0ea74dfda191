//! Whisper inference through `whisper-rs` (whisper.cpp): load a ggml model once, transcribe
//! 16 kHz mono f32 audio into timed segments. Blocking and CPU-bound: call it from a dedicated
//! thread, never from an async task.

use std::path::{Path, PathBuf};

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

/// Why loading or transcribing failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscriberError {
    #[error("whisper model {0} not found (run scripts/setup, or see README: models)")]
    MissingModel(PathBuf),
    #[error("could not load whisper model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("whisper inference failed: {0}")]
    Inference(String),
}

/// Options of one transcription run.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Threads for this run (1 on a shared 2-core machine).
    pub threads: usize,
    /// Whisper language code ("en", "vi"), or `None` to detect.
    pub language: Option<String>,
    /// Text that precedes this audio (committed transcript), to keep the style consistent.
    pub prompt: Option<String>,
    /// Encoder context in frames (1500 = 30 s); smaller is much faster for short buffers.
    pub audio_ctx: Option<usize>,
    /// Beam size (1 = greedy).
    pub beam_size: usize,
    /// Whisper's temperature fallback: a decode that looks failed (low log probability, or
    /// compressible like a loop) is repeated with sampling at rising temperatures, up to five
    /// more decodes. The worker turns it off only for the first step of an utterance, whose
    /// words are shown but never committed from ([`crate::policy::Recognizer::recognize_quick`]):
    /// without it a cut-off first step of en_01 took 0.32 s instead of 1.48 s, but when every step
    /// went without it the streaming test's en_04 committed "But whenever" for "The weather"
    /// (docs/BENCHMARKS.md).
    pub temperature_fallback: bool,
    /// At most this many tokens (text and timestamps) in one decoding window (whisper's own
    /// limit is 220): a beam or a temperature-fallback decode caught in a repetition loop ends
    /// there instead of running on to the limit while the other beams wait. `None` = no cap.
    /// Without `single_segment` a capped decode keeps its text up to its last timestamp and
    /// whisper decodes the rest of the audio from there, as after any segment; with it, the run
    /// ends at the cap.
    pub max_tokens: Option<u32>,
    /// The whole run is one segment (whisper's `single_segment`): a capped decode ends the run
    /// instead of seeking on. Its words' times are spread over a segment that ends at the
    /// window's end (30 s), so only for the quick first step, whose words are never committed.
    pub single_segment: bool,
}

/// One recognised segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The segment's words with their times (from whisper's token timestamps).
    pub words: Vec<crate::policy::Word>,
}

/// A loaded whisper model.
pub struct Transcriber {
    context: WhisperContext,
    path: PathBuf,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber")
            .field("path", &self.path)
            .finish()
    }
}

impl Transcriber {
    /// Loads a ggml model file.
    pub fn load(path: &Path) -> Result<Self, TranscriberError> {
        // whisper.cpp's own logging goes through `tracing` (target `whisper_rs`), not stderr.
        static HOOKS: std::sync::Once = std::sync::Once::new();
        HOOKS.call_once(whisper_rs::install_logging_hooks);
        if !path.is_file() {
            return Err(TranscriberError::MissingModel(path.to_path_buf()));
        }
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        // Flash attention stays off: it made the encoder slower on these CPUs (BENCHMARKS.md).
        let context =
            WhisperContext::new_with_params(path, params).map_err(|e| TranscriberError::Load {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            context,
            path: path.to_path_buf(),
        })
    }

    /// Model file name, for logs and provenance.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Transcribes `audio` (16 kHz mono, -1..1).
    pub fn transcribe(
        &self,
        audio: &[f32],
        options: &TranscribeOptions,
    ) -> Result<Vec<Segment>, TranscriberError> {
        self.transcribe_detect(audio, options)
            .map(|(segments, _)| segments)
    }

    /// Like [`Transcriber::transcribe`], and also returns the language whisper detected (ISO
    /// 639-1) when `options.language` is `None`.
    pub fn transcribe_detect(
        &self,
        audio: &[f32],
        options: &TranscribeOptions,
    ) -> Result<(Vec<Segment>, Option<String>), TranscriberError> {
        self.transcribe_with_progress(audio, options, None::<fn(i32)>)
    }

    /// Whether the model knows languages other than English (`*.en` models do not).
    pub fn is_multilingual(&self) -> bool {
        self.context.is_multilingual()
    }

    /// Like [`Transcriber::transcribe_detect`], calling `progress` with whisper's percentage
    /// as it works through long audio (files).
    pub fn transcribe_with_progress<F: FnMut(i32) + 'static>(
        &self,
        audio: &[f32],
        options: &TranscribeOptions,
        progress: Option<F>,
    ) -> Result<(Vec<Segment>, Option<String>), TranscriberError> {
        let mut state = self
            .context
            .create_state()
            .map_err(|e| TranscriberError::Inference(e.to_string()))?;
        let strategy = if options.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: options.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 1 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(options.threads.max(1) as i32);
        params.set_language(options.language.as_deref());
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_token_timestamps(true);
        // Each run is independent: context comes only from the explicit prompt, so a rerun on
        // the same audio (failover) gives the same text.
        params.set_no_context(true);
        if let Some(prompt) = options.prompt.as_deref() {
            params.set_initial_prompt(prompt);
        }
        if let Some(ctx) = options.audio_ctx {
            params.set_audio_ctx(ctx as i32);
        }
        if !options.temperature_fallback {
            params.set_temperature_inc(0.0);
        }
        if let Some(max_tokens) = options.max_tokens {
            params.set_max_tokens(max_tokens.clamp(1, i32::MAX as u32) as i32);
        }
        params.set_single_segment(options.single_segment);
        if let Some(progress) = progress {
            params.set_progress_callback_safe(progress);
        }
        state
            .full(params, audio)
            .map_err(|e| TranscriberError::Inference(e.to_string()))?;
        let detected = if options.language.is_none() {
            whisper_rs::get_lang_str(state.full_lang_id_from_state()).map(str::to_string)
        } else {
            None
        };
        let eot = self.context.token_eot();
        let mut segments = Vec::new();
        for segment in state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(|e| TranscriberError::Inference(e.to_string()))?
                .trim()
                .to_string();
            if text.is_empty() {
                continue;
            }
            // whisper timestamps are in centiseconds.
            let start_ms = (segment.start_timestamp().max(0) as u64) * 10;
            let end_ms = (segment.end_timestamp().max(0) as u64) * 10;
            let mut words: Vec<crate::policy::Word> = Vec::new();
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                if token.token_id() >= eot {
                    continue; // special and timestamp tokens
                }
                let piece = token.to_str_lossy().unwrap_or_default().into_owned();
                if piece.is_empty() {
                    continue;
                }
                let data = token.token_data();
                let t0 = (data.t0.max(0) as u64) * 10;
                let t1 = (data.t1.max(0) as u64) * 10;
                let starts_word = piece.starts_with(' ') || words.is_empty();
                match words.last_mut() {
                    Some(last) if !starts_word => {
                        last.text.push_str(&piece);
                        last.end_ms = last.end_ms.max(t1);
                    }
                    _ => words.push(crate::policy::Word {
                        text: piece.trim().to_string(),
                        start_ms: t0.max(start_ms),
                        end_ms: t1.max(t0),
                        probability: Some(token.token_probability()),
                    }),
                }
            }
            words.retain(|w| !w.text.is_empty());
            segments.push(Segment {
                text,
                start_ms,
                end_ms,
                words,
            });
        }
        Ok((segments, detected))
    }
}

/// Converts s16le PCM bytes to f32 samples in -1..1 (a trailing odd byte is ignored).
pub fn pcm_s16le_to_f32(pcm: &[u8]) -> Vec<f32> {
    pcm.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// How many threads one recognition uses. With `cores` set, a worker that runs fewer sessions
/// and audio jobs than it has cores for lends the idle ones to those it runs: each recognition
/// uses `cores / busy` threads, never fewer than `min` (`--threads`). On a shared 2-core machine
/// one base q8_0 session with the MT worker beside it finished its sentences in 0.38× the time
/// with 2 threads instead of 1 (docs/BENCHMARKS.md); two sessions still get one thread each.
#[derive(Debug, Clone)]
pub struct Threads {
    /// Threads a recognition always gets.
    pub min: usize,
    /// Cores the worker's recognitions share; 0: always `min`.
    pub cores: usize,
    /// Sessions and audio jobs the worker runs now (the consumers count them).
    busy: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Threads {
    /// Always `n` threads.
    pub fn fixed(n: usize) -> Self {
        Self {
            min: n.max(1),
            cores: 0,
            busy: std::sync::Arc::default(),
        }
    }

    /// `cores` shared by the `busy` sessions and jobs, at least `min` each.
    pub fn shared(
        min: usize,
        cores: usize,
        busy: std::sync::Arc<std::sync::atomic::AtomicU32>,
    ) -> Self {
        Self {
            min: min.max(1),
            cores,
            busy,
        }
    }

    /// Threads for a recognition starting now.
    pub fn now(&self) -> usize {
        let busy = self.busy.load(std::sync::atomic::Ordering::Relaxed).max(1) as usize;
        (self.cores / busy).max(self.min)
    }
}

/// The whisper model as the streaming policy's [`crate::policy::Recognizer`].
pub struct WhisperRecognizer {
    pub transcriber: std::sync::Arc<Transcriber>,
    pub threads: Threads,
    /// Whisper language code ("en"), or `None` to detect.
    pub language: Option<String>,
    pub beam_size: usize,
    /// Encoder context margin in frames added to the buffer's length (None = full 30 s window).
    pub audio_ctx_margin: Option<usize>,
    /// How the quick first step of an utterance decodes.
    pub quick: QuickDecoding,
    /// Token budget per second of audio (plus [`MIN_TOKENS`]) of the full recognitions (the
    /// steps after the first and the finals); 0 = whisper's own limit of 220. For experiments
    /// only (`examples/trace_policy --tokens-per-s`); the worker keeps 0. It does end the beam
    /// search's runaway decodes (jfk's "Ask not!": 3.6 s → 1.3 s), but a capped decode
    /// *completes* where one that runs to the limit *fails*, and whisper then picks it by
    /// score: truncated to its last timestamp it can win with no words at all (that "Ask
    /// not!" was lost at 15 tokens/s) or seek on and repeat words (6 tokens/s);
    /// docs/BENCHMARKS.md "A token cap on full recognitions".
    pub tokens_per_s: f64,
    /// Called with (inference seconds, audio seconds) after each run.
    pub on_run: Box<dyn Fn(f64, f64) + Send + Sync>,
    /// The language the last run detected (when `language` is `None`).
    pub detected: Option<String>,
}

impl std::fmt::Debug for WhisperRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperRecognizer")
            .field("threads", &self.threads)
            .field("language", &self.language)
            .finish()
    }
}

/// How the quick first step of an utterance is decoded
/// ([`crate::policy::Recognizer::recognize_quick`]). Its words are only shown — never committed,
/// never final — so it may trade accuracy for time; it always runs without whisper's temperature
/// fallback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuickDecoding {
    /// Beam size (1 = greedy).
    pub beam_size: usize,
    /// Token budget per second of audio (plus [`QUICK_MIN_TOKENS`]), in one segment; 0 = no
    /// cap (whisper's own limit of 220).
    pub tokens_per_s: f64,
}

impl QuickDecoding {
    /// The token cap for `seconds` of audio, if any.
    pub fn max_tokens(&self, seconds: f64) -> Option<u32> {
        token_cap(self.tokens_per_s, QUICK_MIN_TOKENS, seconds)
    }
}

/// Tokens a capped quick step may always decode, however short its audio (the segment's
/// timestamp tokens and a word or two).
pub const QUICK_MIN_TOKENS: u32 = 4;

/// Tokens a capped full recognition may always decode, however short its audio: a short
/// sentence with its segment's timestamps, so the cap only ends decodes that run on.
pub const MIN_TOKENS: u32 = 16;

/// `min + tokens_per_s × seconds` (rounded up), or `None` (no cap) when `tokens_per_s` is 0 or
/// the cap would not be below whisper's own limit of 220 tokens per window.
pub fn token_cap(tokens_per_s: f64, min: u32, seconds: f64) -> Option<u32> {
    if tokens_per_s.is_nan() || tokens_per_s <= 0.0 {
        return None;
    }
    let cap = f64::from(min) + (seconds.max(0.0) * tokens_per_s).ceil();
    (cap < f64::from(WHISPER_MAX_TOKENS)).then_some(cap as u32)
}

/// Tokens whisper decodes at most in one window (half its text context, 448, less 4).
pub const WHISPER_MAX_TOKENS: u32 = 220;

/// Encoder frames per second of audio (whisper: 1500 frames for 30 s).
const AUDIO_CTX_PER_S: f64 = 50.0;

impl WhisperRecognizer {
    /// The encoder context of a step: the encoder costs a full 30 s window unless told
    /// otherwise, so it is sized to the buffer (plus a margin), the main lever for keeping up
    /// on a CPU.
    fn step_audio_ctx(&self, audio: &[f32]) -> Option<usize> {
        let seconds = audio.len() as f64 / 16_000.0;
        self.audio_ctx_margin
            .map(|margin| ((seconds * AUDIO_CTX_PER_S).ceil() as usize + margin).min(1500))
    }

    /// One whisper run; `quick` decodes it as the quick first step of an utterance, `None` is a
    /// full recognition (the configured beam, temperature fallback, [`Self::tokens_per_s`]).
    fn run(
        &mut self,
        audio: &[f32],
        prompt: &str,
        audio_ctx: Option<usize>,
        quick: Option<QuickDecoding>,
    ) -> Result<Vec<crate::policy::Word>, String> {
        let seconds = audio.len() as f64 / 16_000.0;
        let max_tokens = match quick {
            Some(q) => q.max_tokens(seconds),
            None => token_cap(self.tokens_per_s, MIN_TOKENS, seconds),
        };
        let options = TranscribeOptions {
            threads: self.threads.now(),
            language: self.language.clone(),
            prompt: (!prompt.is_empty()).then(|| prompt.to_string()),
            audio_ctx,
            beam_size: quick.map_or(self.beam_size, |q| q.beam_size),
            temperature_fallback: quick.is_none(),
            max_tokens,
            // Only the quick step is one segment: its words are never committed (see the field).
            single_segment: quick.is_some() && max_tokens.is_some(),
        };
        let started = std::time::Instant::now();
        let (segments, detected) = self
            .transcriber
            .transcribe_detect(audio, &options)
            .map_err(|e| e.to_string())?;
        (self.on_run)(started.elapsed().as_secs_f64(), seconds);
        self.detected = detected;
        Ok(segments.into_iter().flat_map(|s| s.words).collect())
    }
}

impl crate::policy::Recognizer for WhisperRecognizer {
    fn recognize(
        &mut self,
        audio: &[f32],
        prompt: &str,
    ) -> Result<Vec<crate::policy::Word>, String> {
        let audio_ctx = self.step_audio_ctx(audio);
        self.run(audio, prompt, audio_ctx, None)
    }

    /// The first step of an utterance, only shown, decoded as [`WhisperRecognizer::quick`]
    /// says: without temperature fallback, which on a first second of audio that ends inside a
    /// word decodes up to five more times (en_01: 1.48 s instead of 0.32 s), and with a token
    /// cap against repetition loops (docs/BENCHMARKS.md).
    fn recognize_quick(
        &mut self,
        audio: &[f32],
        prompt: &str,
    ) -> Result<Vec<crate::policy::Word>, String> {
        let audio_ctx = self.step_audio_ctx(audio);
        self.run(audio, prompt, audio_ctx, Some(self.quick))
    }

    /// Finals are recognised with the full window the model was trained on.
    fn recognize_final(
        &mut self,
        audio: &[f32],
        prompt: &str,
    ) -> Result<Vec<crate::policy::Word>, String> {
        self.run(audio, prompt, None, None)
    }

    fn language(&self) -> Option<String> {
        self.detected.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_cores_go_to_the_sessions_there_are() {
        use std::sync::atomic::{AtomicU32, Ordering};
        assert_eq!(Threads::fixed(1).now(), 1);
        assert_eq!(Threads::fixed(0).now(), 1, "never zero threads");
        let busy = std::sync::Arc::new(AtomicU32::new(0));
        let two_cores = Threads::shared(1, 2, busy.clone());
        for (sessions, threads) in [(0, 2), (1, 2), (2, 1), (3, 1), (10, 1)] {
            busy.store(sessions, Ordering::Relaxed);
            assert_eq!(two_cores.now(), threads, "{sessions} sessions");
        }
        let eight = Threads::shared(2, 8, busy.clone());
        for (sessions, threads) in [(1, 8), (3, 2), (4, 2), (5, 2)] {
            busy.store(sessions, Ordering::Relaxed);
            assert_eq!(eight.now(), threads, "{sessions} sessions, at least 2");
        }
        // Without --cores the count never moves.
        let off = Threads::shared(1, 0, busy.clone());
        busy.store(1, Ordering::Relaxed);
        assert_eq!(off.now(), 1);
    }

    #[test]
    fn token_caps_grow_with_the_audio_and_stop_at_whispers_own_limit() {
        assert_eq!(token_cap(0.0, MIN_TOKENS, 3.0), None, "0 = no cap");
        assert_eq!(token_cap(f64::NAN, MIN_TOKENS, 3.0), None);
        assert_eq!(token_cap(10.0, MIN_TOKENS, 0.0), Some(16));
        assert_eq!(token_cap(10.0, MIN_TOKENS, 1.63), Some(16 + 17));
        assert_eq!(token_cap(10.0, MIN_TOKENS, 20.25), Some(16 + 203));
        // 16 + 204 = 220 is whisper's own limit: no cap to set.
        assert_eq!(token_cap(10.0, MIN_TOKENS, 20.35), None);
        assert_eq!(token_cap(10.0, MIN_TOKENS, 20.5), None);
        assert_eq!(
            token_cap(10.0, MIN_TOKENS, -1.0),
            Some(16),
            "no negative audio"
        );
        let quick = QuickDecoding {
            beam_size: 1,
            tokens_per_s: 8.0,
        };
        assert_eq!(quick.max_tokens(1.0), Some(QUICK_MIN_TOKENS + 8));
    }

    #[test]
    fn converts_pcm_extremes() {
        let pcm = [0x00, 0x80, 0xff, 0x7f, 0x00, 0x00];
        let f = pcm_s16le_to_f32(&pcm);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0], -1.0);
        assert!((f[1] - 0.99997).abs() < 1e-4);
        assert_eq!(f[2], 0.0);
    }

    #[test]
    fn missing_model_is_a_clear_error() {
        let err = Transcriber::load(Path::new("/nonexistent/ggml.bin")).expect_err("must fail");
        assert!(err.to_string().contains("scripts/setup"), "{err}");
    }
}
