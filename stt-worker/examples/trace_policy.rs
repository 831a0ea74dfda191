//! Streams an audio file (WAV, MP3, FLAC, ...) through the streaming policy with whisper, in
//! 100 ms chunks, and prints every output with the audio position at which it was produced and
//! the recognition time: what a listener would see, step by step, without NATS. For tuning the
//! policy.
//!
//! ```sh
//! cargo run -p voxbridge-stt --example trace_policy -- \
//!     --model models/whisper/ggml-tiny.en.bin ../shared/audio/en_01.wav
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use voxbridge_shared::SessionId;
use voxbridge_stt::policy::{Output, Policy, PolicyConfig};
use voxbridge_stt::transcriber::{QuickDecoding, Threads, Transcriber, WhisperRecognizer};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value_t = 5)]
    beam_size: usize,
    /// Beam size of the quick first step of an utterance (the worker's `--quick-beam-size`).
    #[arg(long, default_value_t = 1)]
    quick_beam_size: usize,
    /// Token budget per second of audio of the quick first step; 0 = no cap.
    #[arg(long, default_value_t = 8.0)]
    quick_tokens_per_s: f64,
    /// Token budget per second of audio of the other recognitions (an experiment: the
    /// worker has no such option, docs/BENCHMARKS.md "A token cap on full recognitions"); 0 = no
    /// cap.
    #[arg(long, default_value_t = 0.0)]
    tokens_per_s: f64,
    /// Encoder context margin (frames); negative = full window.
    #[arg(long, default_value_t = 128, allow_hyphen_values = true)]
    audio_ctx_margin: i64,
    #[arg(long, default_value_t = 1000)]
    step_ms: u64,
    /// The policy's `first_step_ms` (0 = steps at the boundaries only).
    #[arg(long, default_value_t = PolicyConfig::default().first_step_ms)]
    first_step_ms: u64,
    /// The policy's `pause_step_ms` (>= 800 = no pause step).
    #[arg(long, default_value_t = PolicyConfig::default().pause_step_ms)]
    pause_step_ms: u64,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let transcriber = Arc::new(Transcriber::load(&args.model)?);
    for file in &args.files {
        println!("== {}", file.display());
        let samples = voxbridge_shared::audio::decode_audio_16k(&std::fs::read(file)?)?;
        let runs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = runs.clone();
        let recognizer = WhisperRecognizer {
            transcriber: transcriber.clone(),
            threads: Threads::fixed(args.threads),
            language: Some("en".into()),
            beam_size: args.beam_size,
            audio_ctx_margin: usize::try_from(args.audio_ctx_margin).ok(),
            quick: QuickDecoding {
                beam_size: args.quick_beam_size.max(1),
                tokens_per_s: args.quick_tokens_per_s,
            },
            tokens_per_s: args.tokens_per_s,
            on_run: Box::new(move |seconds, audio| {
                seen.lock().expect("runs").push((seconds, audio));
            }),
            detected: None,
        };
        let config = PolicyConfig {
            step_ms: args.step_ms,
            first_step_ms: args.first_step_ms,
            pause_step_ms: args.pause_step_ms,
            ..PolicyConfig::default()
        };
        let mut policy = Policy::new(config, recognizer, SessionId::new());
        let print = |at_ms: u64, outputs: Vec<Output>, runs: &[(f64, f64)]| {
            for (seconds, audio) in runs {
                println!("{at_ms:>6} ms  run {seconds:.3} s over {audio:.2} s of audio");
            }
            for output in outputs {
                match output {
                    Output::Partial {
                        stable,
                        unstable,
                        start_ms,
                        ..
                    } => println!("{at_ms:>6} ms  partial [{start_ms} ms] {stable} | {unstable}"),
                    Output::Final {
                        text,
                        start_ms,
                        end_ms,
                        ..
                    } => println!("{at_ms:>6} ms  FINAL [{start_ms}-{end_ms} ms] {text}"),
                }
            }
        };
        for chunk in samples.chunks(1600) {
            let outputs = policy.push(chunk).map_err(anyhow::Error::msg)?;
            let done: Vec<_> = runs.lock().expect("runs").drain(..).collect();
            print(policy.audio_end() / 16, outputs, &done);
        }
        let outputs = policy.flush().map_err(anyhow::Error::msg)?;
        let done: Vec<_> = runs.lock().expect("runs").drain(..).collect();
        print(policy.audio_end() / 16, outputs, &done);
    }
    Ok(())
}
