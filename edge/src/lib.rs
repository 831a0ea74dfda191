//! The edge: the HTTP/WebSocket face of Voxbridge. Browsers and API clients talk to it; it turns
//! their requests into NATS messages and pushes the pipeline's events back.
//!
//! Data in: HTTP on one port (`/v1/...`, `/metrics`, `/healthz`). Data out: JetStream subjects of
//! [`voxbridge_shared::subjects`]. Routes live in [`routes`].

pub mod error;
pub mod mt_client;
pub mod routes;

use std::net::SocketAddr;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::config::{NatsConfig, TelemetryConfig, TopologyConfig};
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
    let settings = settings.unwrap_or_else(|| config.topology.settings());
    let ctx =
        ServiceContext::start_with_settings("edge", &config.nats, settings, common, &shutdown)
            .await?;
    let ready = nats_ready(ctx.client.clone());
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
    let app = routes::router(state).merge(ops_router(std::sync::Arc::new(registry), ready));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "edge listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        tracing::info!("edge stopped");
        Ok(())
    });
    Ok(Running { addr, task })
}
