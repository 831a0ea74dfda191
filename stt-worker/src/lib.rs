//! The STT worker: claims live sessions from the SESSIONS work queue and audio-file jobs from
//! the JOBS work queue, and turns their audio into transcript events with Whisper
//! ([`transcriber`]).
//!
//! Data in: `vb.session.open` ([`SessionOpen`]) and `vb.job.audio` ([`JobSpec`]); audio from
//! `vb.audio.<session>`. Data out: `vb.transcript.<session>` and MT requests. Undecodable claims
//! and jobs go to the DLQ with their reason; the worker keeps running.
//!
//! Live sessions: [`consumer`] claims them, [`session`] reads their audio and publishes events,
//! [`policy`] decides what is stable and what is final, [`transcriber`] runs whisper. Audio-file
//! jobs: [`jobs`] transcribes a WAV file into subtitles and hands them to the translation stage.

pub mod consumer;
pub mod jobs;
pub mod policy;
pub mod session;
pub mod transcriber;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::config::{NatsConfig, TelemetryConfig, TopologyConfig};
use voxbridge_shared::metrics::ServiceMetrics;
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subjects::{consumers, streams};
use voxbridge_shared::topology::TopologySettings;

pub use voxbridge_shared::messages::{JobSpec, SessionOpen};

use crate::transcriber::Transcriber;

/// Default `/metrics` address of the STT worker.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9101";

/// Configuration of `voxbridge-stt`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    args_override_self = true,
    name = "voxbridge-stt",
    version,
    about = "Voxbridge STT worker (Whisper via whisper.cpp)"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub topology: TopologyConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, env = "VOXBRIDGE_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,
    /// whisper.cpp ggml model file.
    #[arg(
        long,
        env = "VOXBRIDGE_STT_MODEL",
        default_value = "./models/whisper/ggml-base-q8_0.bin"
    )]
    pub model: PathBuf,
    /// Inference threads per recognition (1 on a shared 2-core machine).
    #[arg(long, env = "VOXBRIDGE_STT_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Cores the worker's recognitions share (0: each uses --threads). With N, each of the
    /// sessions and audio jobs the worker runs recognises with max(--threads, N / their number)
    /// threads: a worker with one session uses the cores two would.
    #[arg(long, env = "VOXBRIDGE_STT_CORES", default_value_t = 0)]
    pub cores: usize,
    /// Live sessions one worker owns at once.
    #[arg(long, env = "VOXBRIDGE_STT_MAX_SESSIONS", default_value_t = 4)]
    pub max_sessions: usize,
    /// A worker one of whose real-time sessions is this far (ms) behind real time (its audio
    /// waiting to be recognised) leaves new sessions to other workers for `--admit-grace-ms`
    /// before it takes them itself.
    #[arg(long, env = "VOXBRIDGE_STT_ADMIT_BEHIND_MS", default_value_t = 3000)]
    pub admit_behind_ms: u64,
    /// How long (ms) a worker behind real time leaves a waiting session claim to other workers
    /// (a worker that keeps up takes it at once) before it takes it itself; 0 = claim
    /// regardless of lag.
    #[arg(long, env = "VOXBRIDGE_STT_ADMIT_GRACE_MS", default_value_t = 3000)]
    pub admit_grace_ms: u64,
    /// Audio (ms) between two recognitions of the rolling buffer.
    #[arg(long, env = "VOXBRIDGE_STT_STEP_MS", default_value_t = 1000)]
    pub step_ms: u64,
    /// Silence (ms) that ends an utterance.
    #[arg(long, env = "VOXBRIDGE_STT_PAUSE_MS", default_value_t = 800)]
    pub pause_ms: u64,
    /// End an utterance (publish its final) as soon as the pause is heard, from the words the
    /// last step recognised when it heard all the speech; false waits for the next step.
    #[arg(long, env = "VOXBRIDGE_STT_END_AT_PAUSE", default_value_t = true, action = clap::ArgAction::Set)]
    pub end_at_pause: bool,
    /// Silence (ms) after speech at which the buffer is recognised if no step has heard all of
    /// it, so the final is ready when the pause completes; >= --pause-ms turns it off (the
    /// pause then waits for the next step or recognises at the pause).
    #[arg(long, env = "VOXBRIDGE_STT_PAUSE_STEP_MS", default_value_t = 300)]
    pub pause_step_ms: u64,
    /// Speech (ms) into a new utterance at which its first (quick) step runs, instead of at the
    /// next step boundary; the boundaries then count from it. 0 = at the boundaries.
    #[arg(long, env = "VOXBRIDGE_STT_FIRST_STEP_MS", default_value_t = 0)]
    pub first_step_ms: u64,
    /// Longest buffer (ms) before everything heard is finalised.
    #[arg(long, env = "VOXBRIDGE_STT_MAX_BUFFER_MS", default_value_t = 20_000)]
    pub max_buffer_ms: u64,
    /// Voice activity threshold (0..1).
    #[arg(long, env = "VOXBRIDGE_STT_VAD_THRESHOLD", default_value_t = 0.5)]
    pub vad_threshold: f32,
    /// End a session after this many seconds without audio.
    #[arg(long, env = "VOXBRIDGE_STT_IDLE_TIMEOUT_S", default_value_t = 30)]
    pub idle_timeout_s: u64,
    /// Beam size of whisper's decoder (1 = greedy). Greedy decoding of short, growing buffers
    /// commits wrong words ("roundfire" for "brown fox"); see docs/BENCHMARKS.md.
    #[arg(long, env = "VOXBRIDGE_STT_BEAM_SIZE", default_value_t = 5)]
    pub beam_size: usize,
    /// Beam size of the quick first step of an utterance, whose words are only shown until the
    /// next step (never committed, never final); 1 = greedy.
    #[arg(long, env = "VOXBRIDGE_STT_QUICK_BEAM_SIZE", default_value_t = 1)]
    pub quick_beam_size: usize,
    /// Tokens per second of audio (plus 4) the quick first step may decode, in one segment: a
    /// cut-off word can make whisper repeat itself to its 220-token limit there. 0 = no cap.
    #[arg(long, env = "VOXBRIDGE_STT_QUICK_TOKENS_PER_S", default_value_t = 8.0)]
    pub quick_tokens_per_s: f64,
    /// Encoder context: the buffer's length plus this many frames (50 per second of audio), the
    /// main speed lever on a CPU; negative = the full 30 s window. The reduced context costs
    /// accuracy on short buffers (measured in docs/BENCHMARKS.md), so the default is the full
    /// window; set e.g. 128 on a CPU that cannot keep up.
    #[arg(long, env = "VOXBRIDGE_STT_AUDIO_CTX_MARGIN", default_value_t = -1, allow_hyphen_values = true)]
    pub audio_ctx_margin: i64,
    /// With a reduced encoder context (`--audio-ctx-margin`), recognise each final's audio once
    /// more with the full 30 s window: quick partials from the cheap runs, the full window's
    /// accuracy for words not yet shown as stable (docs/BENCHMARKS.md). Costs one full-window
    /// run per sentence, which a slow CPU pays in final latency, hence off by default.
    #[arg(long, env = "VOXBRIDGE_STT_VERIFY_FINALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub verify_finals: bool,
    /// A worker behind real time appends up to this much waiting audio (ms) of a real-time
    /// session without a step (more when it is further behind: `catch_up_by_lag`), then
    /// recognises it all at once, so its lag stays bounded on a slow CPU; 0 recognises every
    /// step however far behind. Sessions sent faster than real time
    /// (replay, evaluation) always recognise every step.
    #[arg(long, env = "VOXBRIDGE_STT_CATCH_UP_MAX_MS", default_value_t = 4000)]
    pub catch_up_max_ms: u64,
    /// A worker further behind than `catch_up_max_ms` lets one step cover as much audio as it
    /// is behind (within `max_buffer_ms`), so its lag stays bounded also where one recognition
    /// costs more than `catch_up_max_ms` of audio; false caps every step at `catch_up_max_ms`
    /// (as before 2026-11-27; kept for side-by-side measurements).
    #[arg(long, env = "VOXBRIDGE_STT_CATCH_UP_BY_LAG", default_value_t = true, action = clap::ArgAction::Set)]
    pub catch_up_by_lag: bool,
    /// Words ending this close (ms) to the end of the buffer are not committed yet.
    #[arg(long, env = "VOXBRIDGE_STT_HOLDBACK_MS", default_value_t = 500)]
    pub holdback_ms: u64,
    /// Language for sessions that do not name one (whisper code such as "en"); empty = detect.
    #[arg(long, env = "VOXBRIDGE_STT_LANGUAGE", default_value = "")]
    pub language: String,
    /// Longest audio file an audio job may hold, in seconds.
    #[arg(long, env = "VOXBRIDGE_STT_MAX_JOB_AUDIO_S", default_value_t = 4 * 3600)]
    pub max_job_audio_s: u64,
}

impl Config {
    /// Checks values clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        anyhow::ensure!(self.max_sessions >= 1, "--max-sessions must be at least 1");
        anyhow::ensure!(self.step_ms >= 100, "--step-ms must be at least 100");
        anyhow::ensure!(
            self.quick_tokens_per_s.is_finite() && self.quick_tokens_per_s >= 0.0,
            "--quick-tokens-per-s must be 0 (no cap) or more"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.vad_threshold),
            "--vad-threshold must be within 0..1"
        );
        self.nats.namespace()?;
        Ok(())
    }
}

/// Handles a running worker exposes to tests.
#[derive(Debug)]
pub struct Running {
    pub metrics_addr: SocketAddr,
    pub instance: String,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Runs the worker until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = start(config, None, shutdown).await?;
    running.task.await?
}

/// Starts the worker and returns once it is consuming.
pub async fn start(
    config: Config,
    settings: Option<TopologySettings>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    config.validate()?;
    tracing::info!(?config, "starting STT worker");
    let mut registry = Registry::default();
    let common = ServiceMetrics::register(&mut registry, "stt");
    let metrics = consumer::SttMetrics::register(&mut registry);

    let started = std::time::Instant::now();
    let path = config.model.clone();
    let transcriber =
        Arc::new(tokio::task::spawn_blocking(move || Transcriber::load(&path)).await??);
    metrics
        .model_load_seconds
        .set(started.elapsed().as_secs_f64());
    tracing::info!(model = transcriber.name(), "whisper model loaded");

    let settings = settings.unwrap_or_else(|| config.topology.settings());
    let (job_ack_wait, max_deliver) = (settings.job_ack_wait, settings.max_deliver);
    // Sessions and audio jobs in progress: the heartbeat reports it, and recognitions share
    // `--cores` by it.
    let in_flight = Arc::new(AtomicU32::new(0));
    let threads = transcriber::Threads::shared(config.threads, config.cores, in_flight.clone());
    let session_settings = session::SessionSettings {
        policy: policy::PolicyConfig {
            step_ms: config.step_ms,
            pause_ms: config.pause_ms,
            max_buffer_ms: config.max_buffer_ms,
            vad_threshold: config.vad_threshold,
            holdback_ms: config.holdback_ms,
            // Only a reduced context makes the steps' recognition differ from the full one.
            verify_finals: config.verify_finals && config.audio_ctx_margin >= 0,
            max_deferred_ms: config.catch_up_max_ms,
            defer_by_lag: config.catch_up_by_lag,
            end_at_pause: config.end_at_pause,
            pause_step_ms: config.pause_step_ms,
            first_step_ms: config.first_step_ms,
            ..policy::PolicyConfig::default()
        },
        beam_size: config.beam_size.max(1),
        audio_ctx_margin: usize::try_from(config.audio_ctx_margin).ok(),
        quick: transcriber::QuickDecoding {
            beam_size: config.quick_beam_size.max(1),
            tokens_per_s: config.quick_tokens_per_s,
        },
        threads: threads.clone(),
        backlog: consumer::Backlog::default(),
        idle_timeout: std::time::Duration::from_secs(config.idle_timeout_s),
        keep_alive: (settings.session_ack_wait / 3).max(std::time::Duration::from_millis(200)),
        default_language: (!config.language.is_empty()).then(|| config.language.clone()),
    };
    let ctx = ServiceContext::start_with_settings("stt", &config.nats, settings, common, &shutdown)
        .await?;
    let (metrics_addr, _ops) = ctx
        .serve_ops(config.metrics_addr, registry, shutdown.clone())
        .await?;
    ctx.spawn_heartbeat(in_flight.clone(), shutdown.clone());
    // The edge asks whether the worker that claimed a session is still there (and tells the
    // session's clients when it is not); answered until the worker has drained.
    let presence = CancellationToken::new();
    ctx.serve_presence(presence.clone()).await?;
    // Cancelled when the worker task ends, or here if start-up fails after this point.
    let presence = presence.drop_guard();
    for (stream, consumer) in [
        (streams::SESSIONS, consumers::STT_SESSIONS),
        (streams::JOBS, consumers::JOBS_AUDIO),
    ] {
        ctx.dead_letters.spawn_max_deliveries_watch(
            ctx.client.clone(),
            stream,
            consumer,
            shutdown.clone(),
        );
    }
    let instance = ctx.instance.clone();
    let audio_jobs = jobs::AudioJobs::new(
        ctx.clone(),
        transcriber.clone(),
        jobs::AudioJobSettings {
            threads,
            beam_size: config.beam_size.max(1),
            max_audio_s: config.max_job_audio_s as f64,
            default_language: (!config.language.is_empty()).then(|| config.language.clone()),
            ..jobs::AudioJobSettings::default()
        },
        in_flight.clone(),
        job_ack_wait,
        max_deliver,
    )
    .await?;
    let worker = consumer::Worker::new(
        ctx,
        transcriber,
        metrics,
        in_flight,
        consumer::Admission {
            max_sessions: config.max_sessions,
            behind_ms: config.admit_behind_ms,
            grace: std::time::Duration::from_millis(config.admit_grace_ms),
        },
        session_settings,
        audio_jobs,
    );
    let task = tokio::spawn(async move {
        let _presence = presence;
        worker.run(shutdown).await
    });
    Ok(Running {
        metrics_addr,
        instance,
        task,
    })
}
