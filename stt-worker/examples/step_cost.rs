//! What one streaming step costs: whisper-rs on the first N seconds of a recording, for each
//! decoding setting the worker offers (beam 5 / greedy, full 30 s encoder window / context
//! sized to the buffer, and `quick`: the quick first step's greedy, token-capped decode). The numbers behind the STT defaults in docs/BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p voxbridge-stt --example step_cost -- \
//!     --model models/whisper/ggml-tiny.en.bin ../shared/audio/jfk.wav
//! ```
//!
//! Prints one line per setting and buffer length: median seconds over `--repeat` runs and the
//! text heard.

use std::path::PathBuf;

use clap::Parser;
use voxbridge_stt::transcriber::{
    MIN_TOKENS, QuickDecoding, TranscribeOptions, Transcriber, token_cap,
};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Buffer lengths in seconds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    seconds: Vec<f64>,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Encoder context margin (frames) of the reduced-context settings.
    #[arg(long, default_value_t = 128)]
    margin: usize,
    /// Text preceding the audio (the worker passes the finished text before the buffer).
    #[arg(long)]
    prompt: Option<String>,
    /// Whisper's temperature fallback (the worker's steps run without it).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    fallback: bool,
    /// Token budget per second of audio of the `quick` setting (the worker's
    /// `--quick-tokens-per-s`).
    #[arg(long, default_value_t = 8.0)]
    quick_tokens_per_s: f64,
    /// Token budget per second of audio of the other settings (an experiment: the worker has no
    /// such option, docs/BENCHMARKS.md "A token cap on full recognitions"); 0 = no cap.
    #[arg(long, default_value_t = 0.0)]
    tokens_per_s: f64,
    /// Start this many seconds into the file.
    #[arg(long, default_value_t = 0.0)]
    offset: f64,
    file: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let transcriber = Transcriber::load(&args.model)?;
    let samples = voxbridge_shared::audio::decode_audio_16k(&std::fs::read(&args.file)?)?;
    println!("setting\tbuffer_s\tmedian_s\ttext");
    // The fixed cost of a run (state creation, one tiny encode, a few decoder steps): an upper
    // bound on what reusing whisper's state across steps could save.
    let mut times = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let options = TranscribeOptions {
            threads: args.threads,
            language: Some("en".into()),
            prompt: None,
            audio_ctx: Some(16),
            beam_size: 1,
            temperature_fallback: false,
            max_tokens: None,
            single_segment: false,
        };
        let started = std::time::Instant::now();
        transcriber.transcribe(&vec![0.0; 1600], &options)?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "fixed\t0.1\t{:.3}\t(silence, 16 encoder frames)",
        times[times.len() / 2]
    );
    let quick = QuickDecoding {
        beam_size: 1,
        tokens_per_s: args.quick_tokens_per_s,
    };
    // (name, beam size, reduced context, capped like the worker's quick first step)
    for (name, beam_size, reduced, capped) in [
        ("beam5-full", 5, false, false),
        ("beam5-ctx", 5, true, false),
        ("greedy-full", 1, false, false),
        ("greedy-ctx", 1, true, false),
        ("quick", quick.beam_size, true, true),
    ] {
        for &seconds in &args.seconds {
            let from = ((args.offset * 16_000.0) as usize).min(samples.len());
            let n = ((seconds * 16_000.0) as usize).min(samples.len() - from);
            let audio = &samples[from..from + n];
            let audio_ctx =
                reduced.then(|| ((seconds * 50.0).ceil() as usize + args.margin).min(1500));
            let options = TranscribeOptions {
                threads: args.threads,
                language: Some("en".into()),
                prompt: args.prompt.clone(),
                audio_ctx,
                beam_size,
                temperature_fallback: args.fallback && !capped,
                max_tokens: if capped {
                    quick.max_tokens(seconds)
                } else {
                    token_cap(args.tokens_per_s, MIN_TOKENS, seconds)
                },
                single_segment: capped && quick.max_tokens(seconds).is_some(),
            };
            let mut times = Vec::new();
            let mut text = String::new();
            for _ in 0..args.repeat.max(1) {
                let started = std::time::Instant::now();
                let segments = transcriber.transcribe(audio, &options)?;
                times.push(started.elapsed().as_secs_f64());
                text = segments
                    .into_iter()
                    .map(|s| s.text)
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{name}\t{seconds}\t{:.3}\t{}",
                times[times.len() / 2],
                text.trim()
            );
        }
    }
    Ok(())
}
