//! The MT worker: takes translation requests from the shared `mt-workers` durable pull consumer
//! on the MT work queue, translates them with NLLB-200 on CTranslate2 ([`translator`]), and
//! publishes each [`MtResult`] to the request's reply subject before acknowledging the request.
//!
//! Requests are micro-batched ([`consumer`]) and looked up in a Redis cache first ([`cache`]).
//!
//! Data in: `vb.mt.request.<target>` ([`MtRequest`]). Data out: the reply subject
//! (`vb.translation.<session>` is stream-backed and published with JetStream acks; any other
//! subject, e.g. an inbox, gets a core publish). Undecodable requests go to the DLQ.
//! Adding a worker process adds throughput: they share one consumer.

pub mod cache;
pub mod consumer;
pub mod error;
pub mod jobs;
pub mod translator;

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

pub use voxbridge_shared::messages::{MtRequest, MtResult};

use crate::translator::{Compute, Translator, TranslatorOptions, VmapMode};

/// Default `/metrics` address of the MT worker.
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9102";

/// Configuration of `voxbridge-mt`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    args_override_self = true,
    name = "voxbridge-mt",
    version,
    about = "Voxbridge MT worker (NLLB-200 on CTranslate2)"
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
    /// CTranslate2 model directory (NLLB-200 converted with ct2-transformers-converter).
    #[arg(
        long,
        env = "VOXBRIDGE_MT_MODEL",
        default_value = "./models/nllb-200-distilled-600M-int8"
    )]
    pub model: PathBuf,
    /// Compute type.
    #[arg(long, env = "VOXBRIDGE_MT_COMPUTE", value_enum, default_value_t = Compute::Int8)]
    pub compute: Compute,
    /// Intra-op threads per model replica (1 on a shared 2-core machine).
    #[arg(long, env = "VOXBRIDGE_MT_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Model replicas in this process, each computing one batch at a time. Each replica holds
    /// its own copy of the weights (ct2rs gives CTranslate2 one device index per replica, and
    /// CTranslate2 copies the model for each): 2 replicas of NLLB-600M int8 hold 1.31 GB idle
    /// against 0.70 GB for one. On a CPU, raise --threads or run another worker instead.
    #[arg(long, env = "VOXBRIDGE_MT_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Beam size.
    #[arg(long, env = "VOXBRIDGE_MT_BEAM_SIZE", default_value_t = 4)]
    pub beam_size: usize,
    /// Maximum output tokens per sentence.
    #[arg(long, env = "VOXBRIDGE_MT_MAX_DECODING_LENGTH", default_value_t = 256)]
    pub max_decoding_length: usize,
    /// Forbid repeating n-grams of this size (0 = off).
    #[arg(long, env = "VOXBRIDGE_MT_NO_REPEAT_NGRAM", default_value_t = 0)]
    pub no_repeat_ngram_size: usize,
    /// Inputs longer than this many tokens are split at sentence boundaries.
    #[arg(long, env = "VOXBRIDGE_MT_MAX_INPUT_TOKENS", default_value_t = 200)]
    pub max_input_tokens: usize,
    /// Restrict the output vocabulary with the model directory's vmap.txt (CTranslate2
    /// vocabulary map, `scripts/make-vmap`): `auto` uses it for the target languages its
    /// vmap.json lists, when there is one; `on` requires it; `off` never uses it. A bare
    /// `--use-vmap` means `on`.
    #[arg(
        long,
        env = "VOXBRIDGE_MT_USE_VMAP",
        value_enum,
        default_value_t = VmapMode::Auto,
        num_args = 0..=1,
        default_missing_value = "on"
    )]
    pub use_vmap: VmapMode,
    /// Force every output to `--max-decoding-length` tokens (benchmarks with random-weight
    /// models only).
    #[arg(
        long,
        env = "VOXBRIDGE_MT_FIXED_OUTPUT_LENGTH",
        default_value_t = false
    )]
    pub fixed_output_length: bool,
    /// Most texts decoded at once; larger batches are decoded in parts (bounds memory: the
    /// decoder's caches grow with batch × beam). 0 = no limit.
    #[arg(long, env = "VOXBRIDGE_MT_MAX_DECODE_BATCH", default_value_t = 6)]
    pub max_decode_batch: usize,
    /// Memory lever: heap blocks of at least this many KiB get their own memory mapping,
    /// returned to the system as soon as they are freed (glibc's `M_MMAP_THRESHOLD`). glibc's
    /// own threshold rises to the largest block freed (up to 32 MiB), after which the
    /// decoder's growing per-step buffers stay in the heap: 1024 lowered the worker's peak
    /// under load by 0.1–0.25 GB, but batches then pay page faults for those buffers at every
    /// step (a batch of 4 cost 2.2–2.6× one text instead of 1.4–1.8×; docs/BENCHMARKS.md), so
    /// it is off by default. 0 = glibc's default. Only for a worker built with glibc's malloc
    /// (`--no-default-features`): the default build allocates with jemalloc.
    #[arg(long, env = "VOXBRIDGE_MT_MMAP_THRESHOLD_KB", default_value_t = 0)]
    pub mmap_threshold_kb: usize,
    /// Most requests in one micro-batch.
    #[arg(long, env = "VOXBRIDGE_MT_MAX_BATCH", default_value_t = 16)]
    pub max_batch: usize,
    /// Longest wait (ms) for a micro-batch to fill after its first request.
    #[arg(long, env = "VOXBRIDGE_MT_MAX_WAIT_MS", default_value_t = 10)]
    pub max_wait_ms: u64,
    /// Redis URL of the translation cache; empty disables it.
    #[arg(long = "redis-url", env = "VOXBRIDGE_REDIS_URL", default_value = voxbridge_shared::config::DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// Seconds a cached translation lives.
    #[arg(long, env = "VOXBRIDGE_MT_CACHE_TTL_S", default_value_t = crate::cache::DEFAULT_TTL.as_secs())]
    pub cache_ttl_s: u64,
    /// Subtitle jobs this worker runs at once (0: run no jobs, only translation requests).
    #[arg(long, env = "VOXBRIDGE_MT_JOB_CONCURRENCY", default_value_t = 1)]
    pub job_concurrency: usize,
    /// Sentences per MT request (one batch) of a subtitle job.
    #[arg(long, env = "VOXBRIDGE_MT_JOB_CHUNK", default_value_t = 16)]
    pub job_chunk: usize,
    /// MT requests a subtitle job keeps in flight (small: live requests queue behind them).
    #[arg(long, env = "VOXBRIDGE_MT_JOB_WINDOW", default_value_t = 2)]
    pub job_window: usize,
    /// Largest subtitle file a job may hold (bytes).
    #[arg(long, env = "VOXBRIDGE_MT_MAX_SUBTITLE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_subtitle_bytes: usize,
    /// Seconds without any translation before a job is released for a retry.
    #[arg(long, env = "VOXBRIDGE_MT_JOB_STALL_TIMEOUT_S", default_value_t = 600)]
    pub job_stall_timeout_s: u64,
}

impl Config {
    /// Checks values clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.threads >= 1, "--threads must be at least 1");
        anyhow::ensure!(self.replicas >= 1, "--replicas must be at least 1");
        anyhow::ensure!(self.beam_size >= 1, "--beam-size must be at least 1");
        anyhow::ensure!(self.max_batch >= 1, "--max-batch must be at least 1");
        anyhow::ensure!(
            self.max_input_tokens >= 8,
            "--max-input-tokens must be at least 8"
        );
        self.nats.namespace()?;
        Ok(())
    }

    fn translator_options(&self) -> TranslatorOptions {
        TranslatorOptions {
            compute: self.compute,
            threads: self.threads,
            replicas: self.replicas,
            beam_size: self.beam_size,
            max_decoding_length: self.max_decoding_length,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            max_input_tokens: self.max_input_tokens,
            vmap: self.use_vmap,
            fixed_output_length: self.fixed_output_length,
            max_decode_batch: self.max_decode_batch,
            ..TranslatorOptions::default()
        }
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

/// Starts the worker and returns once it is consuming. `settings` overrides the topology
/// settings (tests shorten ack waits).
pub async fn start(
    config: Config,
    settings: Option<TopologySettings>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    config.validate()?;
    tracing::info!(?config, "starting MT worker");
    let mut registry = Registry::default();
    let common = ServiceMetrics::register(&mut registry, "mt");
    let metrics = consumer::MtMetrics::register(&mut registry);
    let job_metrics = jobs::JobMetrics::register(&mut registry);
    let cache_metrics = cache::CacheMetrics::register(&mut registry);

    if config.mmap_threshold_kb > 0 {
        translator::set_mmap_threshold(config.mmap_threshold_kb * 1024);
    }
    let load_started = std::time::Instant::now();
    let model_dir = config.model.clone();
    let options = config.translator_options();
    let translator =
        tokio::task::spawn_blocking(move || Translator::load(&model_dir, options)).await??;
    metrics
        .model_load_seconds
        .set(load_started.elapsed().as_secs_f64());
    tracing::info!(
        model = translator.id(),
        languages = translator.languages().len(),
        "model loaded"
    );

    let settings = settings.unwrap_or_else(|| config.topology.settings());
    let (job_ack_wait, max_deliver) = (settings.job_ack_wait, settings.max_deliver);
    let ctx = ServiceContext::start_with_settings("mt", &config.nats, settings, common, &shutdown)
        .await?;
    let (metrics_addr, _ops) = ctx
        .serve_ops(config.metrics_addr, registry, shutdown.clone())
        .await?;
    let in_flight = Arc::new(AtomicU32::new(0));
    ctx.spawn_heartbeat(in_flight.clone(), shutdown.clone());
    ctx.dead_letters.spawn_max_deliveries_watch(
        ctx.client.clone(),
        streams::MT,
        consumers::MT_WORKERS,
        shutdown.clone(),
    );
    let instance = ctx.instance.clone();
    let cache = cache::Cache::new(
        &config.redis_url,
        std::time::Duration::from_secs(config.cache_ttl_s),
        translator.id().to_string(),
        cache_metrics,
        shutdown.clone(),
    );
    let policy = consumer::BatchPolicy {
        max_batch: config.max_batch,
        max_wait: std::time::Duration::from_millis(config.max_wait_ms),
        parallel_batches: config.replicas,
    };
    let job_runner = if config.job_concurrency > 0 {
        ctx.dead_letters.spawn_max_deliveries_watch(
            ctx.client.clone(),
            streams::JOBS,
            consumers::JOBS_SUBTITLES,
            shutdown.clone(),
        );
        let job_settings = jobs::JobSettings {
            chunk: config.job_chunk.max(1),
            window: config.job_window.max(1),
            max_file_bytes: config.max_subtitle_bytes,
            stall_timeout: std::time::Duration::from_secs(config.job_stall_timeout_s.max(1)),
            concurrent_jobs: config.job_concurrency,
            ..jobs::JobSettings::default()
        };
        let runner = jobs::SubtitleJobs::new(
            ctx.clone(),
            job_settings,
            job_metrics,
            in_flight.clone(),
            job_ack_wait,
            max_deliver,
        )
        .await?;
        Some(tokio::spawn(runner.run(shutdown.clone())))
    } else {
        None
    };
    let worker =
        consumer::Worker::new(ctx, Arc::new(translator), cache, metrics, in_flight, policy);
    let task = tokio::spawn(async move {
        let served = worker.run(shutdown).await;
        if let Some(jobs) = job_runner {
            jobs.await??;
        }
        served
    });
    Ok(Running {
        metrics_addr,
        instance,
        task,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("voxbridge-mt").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn the_vocabulary_map_option_keeps_its_old_spellings() {
        // Unset, the map is used where the model directory has one for the target language.
        if std::env::var_os("VOXBRIDGE_MT_USE_VMAP").is_none() {
            assert_eq!(parse(&[]).use_vmap, VmapMode::Auto);
        }
        // `--use-vmap` alone was a boolean flag: it still means on.
        assert_eq!(parse(&["--use-vmap"]).use_vmap, VmapMode::On);
        for (value, mode) in [
            ("on", VmapMode::On),
            ("true", VmapMode::On),
            ("off", VmapMode::Off),
            ("false", VmapMode::Off),
            ("auto", VmapMode::Auto),
        ] {
            assert_eq!(parse(&["--use-vmap", value]).use_vmap, mode, "{value}");
            assert_eq!(
                parse(&[&format!("--use-vmap={value}")]).use_vmap,
                mode,
                "{value}"
            );
        }
        assert!(Config::try_parse_from(["voxbridge-mt", "--use-vmap", "maybe"]).is_err());
    }
}
