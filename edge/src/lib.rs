//! The edge: the HTTP/WebSocket face of Voxbridge. Browsers and API clients talk to it; it turns
//! their requests into NATS messages and pushes the pipeline's events back.
//!
//! Data in: HTTP on one port (`/v1/...`, `/metrics`, `/healthz`). Data out: JetStream subjects of
//! [`voxbridge_shared::subjects`]. Routes live in [`routes`].

pub mod error;
pub mod jobs_api;
pub mod live;
pub mod mt_client;
pub mod routes;
pub mod system_metrics;
pub mod tokens;
pub mod web;

use std::net::SocketAddr;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::config::{NatsConfig, Secret, TelemetryConfig, TopologyConfig};
use voxbridge_shared::metrics::{ServiceMetrics, nats_ready, ops_router};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::topology::TopologySettings;

/// Default listen address.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";

/// Configuration of `voxbridge-edge`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    args_override_self = true,
    name = "voxbridge-edge",
    version,
    about = "Voxbridge edge server (WebSocket, REST, web page)"
)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub topology: TopologyConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Address to listen on (API, web page, `/metrics`, `/healthz`).
    #[arg(long, env = "VOXBRIDGE_LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen: SocketAddr,
    /// Seconds a translation request may wait for its result (then 504).
    #[arg(long, env = "VOXBRIDGE_EDGE_TIMEOUT_S", default_value_t = 30)]
    pub timeout_s: u64,
    /// Longest text accepted, in characters (longer: 400).
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_TEXT_CHARS", default_value_t = 5000)]
    pub max_text_chars: usize,
    /// Most texts in one request.
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_TEXTS", default_value_t = 64)]
    pub max_texts: usize,
    /// Most target languages in one request.
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_TARGETS", default_value_t = 8)]
    pub max_targets: usize,
    /// Requests waiting in the MT queue above which new ones get 503 + Retry-After.
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_MT_QUEUE", default_value_t = 1000)]
    pub max_mt_queue: u64,
    /// API keys accepted by live sessions (comma-separated). None: open development mode.
    #[arg(long, env = "VOXBRIDGE_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<Secret>,
    /// Live sessions one API key may hold at once.
    #[arg(
        long,
        env = "VOXBRIDGE_EDGE_MAX_SESSIONS_PER_KEY",
        default_value_t = 10
    )]
    pub max_sessions_per_key: usize,
    /// Largest binary audio frame, in bytes (16,000 = 500 ms of 16 kHz s16le).
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_FRAME_BYTES", default_value_t = 16_000)]
    pub max_frame_bytes: usize,
    /// Longest live session, in seconds of audio.
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_SESSION_S", default_value_t = 4 * 3600)]
    pub max_session_s: u64,
    /// Events queued for one client before it counts as too slow and is closed with 1013.
    #[arg(long, env = "VOXBRIDGE_EDGE_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,
    /// Seconds to wait for the translations of a session's last sentences before `end`.
    #[arg(long, env = "VOXBRIDGE_EDGE_END_GRACE_S", default_value_t = 20)]
    pub end_grace_s: u64,
    /// Seconds after `stop` within which the recogniser must finish the session.
    #[arg(long, env = "VOXBRIDGE_EDGE_STOP_TIMEOUT_S", default_value_t = 300)]
    pub stop_timeout_s: u64,
    /// Audio publishes awaiting acknowledgement per connection before reading pauses.
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_INFLIGHT_AUDIO", default_value_t = 64)]
    pub max_inflight_audio: usize,
    /// Secret that signs resume and listen tokens; give every edge the same one. Unset: a
    /// random secret per process (tokens do not survive a restart).
    #[arg(long, env = "VOXBRIDGE_TOKEN_SECRET")]
    pub token_secret: Option<Secret>,
    /// Largest file accepted by `POST /v1/jobs`, in bytes.
    #[arg(long, env = "VOXBRIDGE_EDGE_MAX_JOB_BYTES", default_value_t = voxbridge_shared::jobs::DEFAULT_MAX_JOB_BYTES)]
    pub max_job_bytes: usize,
    /// Seconds between reads of the stream and consumer info exported as
    /// `voxbridge_edge_stream_*` / `voxbridge_edge_consumer_*` gauges.
    #[arg(long, env = "VOXBRIDGE_EDGE_QUEUE_POLL_S", default_value_t = system_metrics::DEFAULT_QUEUE_POLL_S)]
    pub queue_poll_s: u64,
}

/// A running edge (tests use the bound address).
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Runs the edge until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, None, shutdown).await?.task.await?
}

/// Starts the edge and returns once it is listening.
pub async fn start(
    config: Config,
    settings: Option<TopologySettings>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    config.nats.namespace()?;
    tracing::info!(?config, "starting edge");
    let mut registry = Registry::default();
    let common = ServiceMetrics::register(&mut registry, "edge");
    let http_metrics = routes::HttpMetrics::register(&mut registry);
    let live_metrics = live::LiveMetrics::register(&mut registry);
    let system_metrics = system_metrics::SystemMetrics::register(&mut registry);
    let settings = settings.unwrap_or_else(|| config.topology.settings());
    let ctx =
        ServiceContext::start_with_settings("edge", &config.nats, settings, common, &shutdown)
            .await?;
    let ready = nats_ready(ctx.client.clone());
    system_metrics::start(
        ctx.clone(),
        system_metrics,
        std::time::Duration::from_secs(config.queue_poll_s.max(1)),
        shutdown.clone(),
    )
    .await?;
    let mt = mt_client::MtClient::start(ctx.clone(), config.max_mt_queue, shutdown.clone()).await?;
    let state = routes::AppState {
        mt,
        limits: routes::Limits {
            max_text_chars: config.max_text_chars,
            max_texts: config.max_texts,
            max_targets: config.max_targets,
            timeout: std::time::Duration::from_secs(config.timeout_s),
        },
        metrics: http_metrics,
    };
    if config.api_keys.is_empty() {
        tracing::warn!(
            "no API keys configured: live sessions are open to anyone (development mode)"
        );
    }
    let token_key = match &config.token_secret {
        Some(secret) => tokens::TokenKey::new(secret.expose().as_bytes()),
        None => {
            tracing::warn!(
                "no --token-secret: resume and listen tokens are signed with a random key and \
                 do not survive a restart of this edge"
            );
            tokens::TokenKey::random()
        }
    };
    let live = live::LiveState::new(
        ctx.clone(),
        live::LiveSettings {
            api_keys: config
                .api_keys
                .iter()
                .map(|k| k.expose().to_string())
                .collect(),
            max_sessions_per_key: config.max_sessions_per_key,
            max_frame_bytes: config.max_frame_bytes,
            max_session: std::time::Duration::from_secs(config.max_session_s),
            send_queue: config.send_queue.max(16),
            end_grace: std::time::Duration::from_secs(config.end_grace_s),
            stop_timeout: std::time::Duration::from_secs(config.stop_timeout_s),
            max_inflight_audio: config.max_inflight_audio.max(1),
            max_targets: config.max_targets,
            token_key,
        },
        live_metrics,
        shutdown.clone(),
    );
    let tracker = live.tracker.clone();
    let job_store = voxbridge_shared::jobs::JobStore::open(
        ctx.client.clone(),
        ctx.js.clone(),
        ctx.namespace.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("job store: {e}"))?;
    let jobs = jobs_api::JobsState {
        store: job_store,
        api_keys: std::sync::Arc::new(
            config
                .api_keys
                .iter()
                .map(|k| k.expose().to_string())
                .collect(),
        ),
        max_bytes: config.max_job_bytes,
        max_targets: config.max_targets,
        zip_builds: std::sync::Arc::new(tokio::sync::Semaphore::new(jobs_api::MAX_ZIP_BUILDS)),
    };
    let app = routes::router(state)
        .merge(jobs_api::router(jobs))
        .merge(
            axum::Router::new()
                .route("/v1/live", axum::routing::get(live::live_handler))
                .with_state(live),
        )
        .merge(web::router())
        .merge(ops_router(std::sync::Arc::new(registry), ready));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "edge listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        // Upgraded WebSocket connections outlive the HTTP server: each closes itself with 1001
        // when shutdown is signalled; give them a moment to flush.
        tracker.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("live connections still open after 10 s; exiting anyway");
        }
        tracing::info!("edge stopped");
        Ok(())
    });
    Ok(Running { addr, task })
}
