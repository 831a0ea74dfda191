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
}

/// One recognised segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
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
        if !path.is_file() {
            return Err(TranscriberError::MissingModel(path.to_path_buf()));
        }
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
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
        let mut state = self
            .context
            .create_state()
            .map_err(|e| TranscriberError::Inference(e.to_string()))?;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(options.threads.max(1) as i32);
        params.set_language(options.language.as_deref());
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        if let Some(prompt) = options.prompt.as_deref() {
            params.set_initial_prompt(prompt);
        }
        if let Some(ctx) = options.audio_ctx {
            params.set_audio_ctx(ctx as i32);
        }
        state
            .full(params, audio)
            .map_err(|e| TranscriberError::Inference(e.to_string()))?;
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
            segments.push(Segment {
                text,
                start_ms: (segment.start_timestamp().max(0) as u64) * 10,
                end_ms: (segment.end_timestamp().max(0) as u64) * 10,
            });
        }
        Ok(segments)
    }
}

/// Converts s16le PCM bytes to f32 samples in -1..1 (a trailing odd byte is ignored).
pub fn pcm_s16le_to_f32(pcm: &[u8]) -> Vec<f32> {
    pcm.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
