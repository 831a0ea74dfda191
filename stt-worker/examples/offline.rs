//! One offline whisper pass per audio file (WAV, MP3, FLAC, Ogg Vorbis, M4A, AAC), with the
//! worker's decoding settings: the baseline that `scripts/bench-stt` runs beside the live
//! sessions (what streaming costs over transcribing a whole file at once).
//!
//! ```sh
//! cargo run -p voxbridge-stt --example offline -- --model models/whisper/ggml-tiny.en.bin FILE.wav...
//! ```
//!
//! Prints one JSON object: audio seconds, wall seconds, real-time factor, and each file's text.

use std::path::PathBuf;

use clap::Parser;
use voxbridge_stt::transcriber::{TranscribeOptions, Transcriber};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value_t = 5)]
    beam_size: usize,
    #[arg(long, default_value = "en")]
    language: String,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let transcriber = Transcriber::load(&args.model)?;
    let options = TranscribeOptions {
        threads: args.threads,
        language: Some(args.language.clone()),
        prompt: None,
        audio_ctx: None,
        beam_size: args.beam_size,
        temperature_fallback: true,
        max_tokens: None,
        single_segment: false,
    };
    let (mut audio_s, mut wall_s) = (0.0, 0.0);
    let mut texts = Vec::new();
    for file in &args.files {
        let bytes = std::fs::read(file)?;
        let samples = voxbridge_shared::audio::decode_audio_16k(&bytes)?;
        let started = std::time::Instant::now();
        let segments = transcriber.transcribe(&samples, &options)?;
        wall_s += started.elapsed().as_secs_f64();
        audio_s += samples.len() as f64 / 16_000.0;
        let text: Vec<String> = segments.into_iter().map(|s| s.text).collect();
        texts.push(text.join(" ").trim().to_string());
    }
    let report = serde_json::json!({
        "model": transcriber.name(),
        "files": args.files.len(),
        "audio_s": audio_s,
        "wall_s": wall_s,
        "realtime_factor": wall_s / audio_s.max(f64::EPSILON),
        "texts": texts,
    });
    println!("{report}");
    Ok(())
}
