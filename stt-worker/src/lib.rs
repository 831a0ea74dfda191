//! The STT worker: claims live sessions from the SESSIONS work queue and audio-file jobs from
//! the JOBS work queue, and turns their audio into transcript events with Whisper
//! ([`transcriber`]).
//!
//! Data in: `vb.session.open` ([`SessionOpen`]) and `vb.job.audio` ([`JobSpec`]); audio from
//! `vb.audio.<session>`. Data out: `vb.transcript.<session>` and MT requests. Undecodable claims
//! and jobs go to the DLQ with their reason; the worker keeps running.
//!
//! Status: the streaming transcription policy (issue 4) is not built yet. Valid session claims
//! and audio jobs are released back to the queue (`nak` with a delay) so nothing is lost; after
//! `MaxDeliver` attempts they are dead-lettered with reason `max_deliveries`.

pub mod consumer;
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
    /// Inference threads per model (1 on a shared 2-core machine).
    #[arg(long, env = "VOXBRIDGE_STT_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Live sessions one worker owns at once.
    #[arg(long, env = "VOXBRIDGE_STT_MAX_SESSIONS", default_value_t = 4)]
    pub max_sessions: usize,
}

impl Config {
    /// Checks values clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        anyhow::ensure!(self.max_sessions >= 1, "--max-sessions must be at least 1");
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
    let transcriber = tokio::task::spawn_blocking(move || Transcriber::load(&path)).await??;
    metrics
        .model_load_seconds
        .set(started.elapsed().as_secs_f64());
    tracing::info!(model = transcriber.name(), "whisper model loaded");

    let settings = settings.unwrap_or_else(|| config.topology.settings());
    let ctx = ServiceContext::start_with_settings("stt", &config.nats, settings, common, &shutdown)
        .await?;
    let (metrics_addr, _ops) = ctx
        .serve_ops(config.metrics_addr, registry, shutdown.clone())
        .await?;
    let in_flight = Arc::new(AtomicU32::new(0));
    ctx.spawn_heartbeat(in_flight.clone(), shutdown.clone());
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
    let worker = consumer::Worker::new(
        ctx,
        Arc::new(transcriber),
        metrics,
        in_flight,
        config.max_sessions,
    );
    let task = tokio::spawn(worker.run(shutdown));
    Ok(Running {
        metrics_addr,
        instance,
        task,
    })
}
