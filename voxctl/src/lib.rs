//! `voxctl`, the command-line client: checks an installation (`doctor`), manages the JetStream
//! topology (`topology export|ensure`), shows the deployment's state (`status`), streams files
//! through live sessions (`live`), records and replays sessions (`record`, `replay`), submits and follows batch jobs (`translate-subs`,
//! `transcribe`, `jobs`, `job`), scores text files (`score`), evaluates sets of recordings
//! (`eval`, `eval-ratio`) and benchmarks.

pub mod bench;
pub mod bench_subs;
pub mod doctor;
pub mod eval;
pub mod jobs;
pub mod live;
pub mod record;
pub mod replay;
pub mod score;
pub mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use voxbridge_shared::config::{
    ModelsConfig, NatsConfig, RedisConfig, TelemetryConfig, TopologyConfig,
};
use voxbridge_shared::topology::Topology;

/// `voxctl` command line.
#[derive(Debug, Parser)]
#[command(name = "voxctl", version, about = "Voxbridge command-line client")]
pub struct Cli {
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check NATS (reachable, JetStream, version), Redis and the model directory; print each
    /// problem with how to fix it. Exits non-zero when something is wrong.
    Doctor {
        #[command(flatten)]
        redis: RedisConfig,
        #[command(flatten)]
        models: ModelsConfig,
    },
    /// Stream an audio file (WAV, MP3, FLAC, Ogg Vorbis or Opus, WebM/Opus, M4A or AAC) through a
    /// live session (like a microphone) and print the transcript and translations as they arrive.
    Live(live::LiveArgs),
    /// Stream an audio file through a live session and keep its reference transcript (and
    /// reference translations) beside the session's audio, for `voxctl replay`.
    Record(record::RecordArgs),
    /// Stream a recorded session's audio (read back from the AUDIO stream) through the current
    /// workers as a new session, and compare its final transcript with the original's.
    Replay(replay::ReplayArgs),
    /// Translate an SRT or WebVTT file (a batch job): shows progress, then writes
    /// `<name>.<lang>.<ext>` for each target into `--out`.
    TranslateSubs(jobs::TranslateSubsArgs),
    /// Transcribe an audio file (WAV, MP3, FLAC, Ogg Vorbis or Opus, WebM/Opus, M4A or AAC) into
    /// subtitles (a batch job), and translate them with `--to`.
    Transcribe(jobs::TranscribeArgs),
    /// List the batch jobs still kept.
    Jobs {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one job; `--wait` follows it and downloads its results.
    Job(jobs::JobArgs),
    /// Score a hypothesis file against line-aligned reference files: WER (Whisper-normalised,
    /// as jiwer computes it), BLEU, chrF or chrF++ (as sacreBLEU computes them). Needs no server.
    Score(score::ScoreArgs),
    /// Run a directory of cases (NAME.wav or another audio file, NAME.txt, optional
    /// NAME.LANG.txt) through live sessions and write report.json, report.md and latency.svg:
    /// WER, BLEU, chrF++, latencies, real-time factor.
    ///
    /// Exit codes: 0 when every session ended cleanly (and, with --compare, nothing regressed);
    /// 1 when a session failed (error events or an unclean close; the report is still written)
    /// or the run could not be done; 2 when no session failed but a metric regressed against
    /// --compare beyond its threshold.
    Eval(eval::EvalArgs),
    /// Compare two eval reports of one set run with two configurations (e.g. MT compute type
    /// int8 against float32, or a Whisper model against its quantisation): candidate/baseline
    /// ratio of BLEU and chrF++ per language, WER difference, pass/fail against the
    /// quantisation bars of what --judge names. Needs no server.
    ///
    /// Exit codes: 0 when what is judged passes; 2 when a language fails or its ratio is
    /// undefined (baseline score 0), or the WER rises beyond --max-wer-increase; 1 when the
    /// reports cannot be compared.
    EvalRatio(eval::EvalRatioArgs),
    /// One screen with streams, consumers (lag), workers alive, jobs in flight and the DLQ.
    Status(status::StatusArgs),
    /// Benchmarks against a running system.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// JetStream topology.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
}

/// `voxctl bench …`
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Latency, batch-of-4 and throughput of `POST /v1/translate`.
    Translate(bench::BenchArgs),
    /// Latency users of live sessions wait for (first partial, final, translation) with several
    /// sessions streaming at real-time pace.
    Live(live::BenchLiveArgs),
    /// A generated subtitle file (500 cues by default) as one batch job against one
    /// `POST /v1/translate` per cue, one at a time (the old service's behaviour).
    Subs(bench_subs::BenchSubsArgs),
}

/// `voxctl topology …`
#[derive(Debug, Subcommand)]
pub enum TopologyAction {
    /// Write the stream/consumer/bucket definitions as JSON (what `nats/jetstream/` holds).
    Export {
        /// Output directory.
        #[arg(long, default_value = "nats/jetstream")]
        dir: PathBuf,
        #[command(flatten)]
        topology: TopologyConfig,
    },
    /// Create or update every stream, consumer and bucket on the server.
    Ensure {
        #[command(flatten)]
        topology: TopologyConfig,
    },
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Doctor { redis, models } => {
            let report = doctor::check(&cli.nats, &redis, &models.dir).await;
            print!("{}", report.render());
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Live(args) => live::run_live(&args).await,
        Command::Record(args) => record::run(&cli.nats, &args).await,
        Command::Replay(args) => replay::run(&cli.nats, &args).await,
        Command::TranslateSubs(args) => jobs::translate_subs(&cli.nats, &args).await,
        Command::Transcribe(args) => jobs::transcribe(&cli.nats, &args).await,
        Command::Jobs { json } => jobs::list(&cli.nats, json).await,
        Command::Job(args) => jobs::show(&cli.nats, &args).await,
        Command::Score(args) => score::run(&args),
        Command::Eval(args) => eval::run(&args).await,
        Command::EvalRatio(args) => eval::run_ratio(&args),
        Command::Status(args) => status::run(&cli.nats, &args).await,
        Command::Bench {
            what: BenchWhat::Live(args),
        } => {
            let levels = live::bench_live(&args).await?;
            print!("{}", live::table(&levels));
            Ok(0)
        }
        Command::Bench {
            what: BenchWhat::Subs(args),
        } => {
            let report = bench_subs::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(0)
        }
        Command::Bench {
            what: BenchWhat::Translate(args),
        } => {
            let report = bench::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(0)
        }
        Command::Topology { action } => match action {
            TopologyAction::Export { dir, topology } => {
                let t = Topology::new(&cli.nats.namespace()?, &topology.settings());
                std::fs::create_dir_all(&dir)?;
                for (name, json) in t.to_json_files()? {
                    std::fs::write(dir.join(&name), json)?;
                    println!("wrote {}", dir.join(&name).display());
                }
                Ok(0)
            }
            TopologyAction::Ensure { topology } => {
                let shutdown = tokio_util::sync::CancellationToken::new();
                let client =
                    voxbridge_shared::nats::connect(&cli.nats, "voxctl", None, &shutdown).await?;
                let js = async_nats::jetstream::new(client);
                let t = Topology::new(&cli.nats.namespace()?, &topology.settings());
                voxbridge_shared::topology::ensure_topology(&js, &t).await?;
                println!(
                    "topology ensured: {} streams, {} consumers, {} KV buckets, {} object stores",
                    t.streams.len(),
                    t.consumers.len(),
                    t.key_values.len(),
                    t.object_stores.len()
                );
                Ok(0)
            }
        },
    }
}
