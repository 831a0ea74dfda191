//! Prometheus metrics: one [`Registry`] per process, the metrics every service shares
//! ([`ServiceMetrics`]), the naming rules, and the `/metrics` + `/healthz` endpoint.
//!
//! Names follow `voxbridge_<component>_<what>_<unit>`: counters end in `_total` (added by the
//! encoder), durations are `_seconds` histograms, sizes are `_bytes`. Labels come from small fixed
//! sets — never a session id, a text or an error message. [`naming_violations`] checks an
//! exposition against these rules; every service's tests call it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::Counter, family::Family, gauge::ConstGauge, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Label set naming the stream a message came from (a fixed set of seven).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: &'static str,
}

/// Label set naming a stable reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Label set naming a connection event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

/// Metrics every service exports, under its own component prefix.
#[derive(Debug, Clone, Default)]
pub struct ServiceMetrics {
    /// Payloads that did not decode, by stream.
    pub malformed_messages: Family<StreamLabel, Counter>,
    /// Messages sent to the DLQ, by reason.
    pub dead_letters: Family<ReasonLabel, Counter>,
    /// NATS connection events (connected, disconnected, …).
    pub nats_events: Family<EventLabel, Counter>,
    /// 1 while connected to NATS.
    pub nats_connected: Gauge,
}

impl ServiceMetrics {
    /// Registers the shared metrics and the process collector under `voxbridge_<component>_`.
    pub fn register(registry: &mut Registry, component: &str) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix(format!("voxbridge_{component}"));
        sub.register(
            "malformed_messages",
            "Payloads that failed to decode, by stream",
            metrics.malformed_messages.clone(),
        );
        sub.register(
            "dlq_messages",
            "Messages dead-lettered to the DLQ stream, by reason",
            metrics.dead_letters.clone(),
        );
        sub.register(
            "nats_events",
            "NATS connection events, by event",
            metrics.nats_events.clone(),
        );
        sub.register(
            "nats_connected",
            "1 while the NATS connection is up",
            metrics.nats_connected.clone(),
        );
        sub.register_collector(Box::new(ProcessCollector));
        metrics
    }
}

/// Reads the process' resident memory at scrape time (Linux `/proc/self/statm`; absent
/// elsewhere).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(bytes) = resident_memory_bytes() {
            let gauge = ConstGauge::new(bytes as i64);
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of this process",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// Resident set size of this process in bytes (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size is 4 KiB on every Linux target Voxbridge supports (x86_64, aarch64 default).
    Some(pages * 4096)
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(%error, "could not encode metrics");
    }
    out
}

/// Returns every metric family name in `exposition` that breaks the naming rules.
pub fn naming_violations(exposition: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let component_ok = name
            .strip_prefix("voxbridge_")
            .and_then(|r| r.split_once('_'))
            .is_some_and(|(c, what)| {
                ["edge", "stt", "mt", "voxctl"].contains(&c) && !what.is_empty()
            });
        let kind_ok = match kind {
            // The text encoder writes counter families without `_total` in `# TYPE`.
            "counter" => !name.ends_with("_total"),
            "histogram" => {
                name.ends_with("_seconds")
                    || name.ends_with("_bytes")
                    || name.ends_with("_tokens")
                    || name.ends_with("_size")
                    || name.ends_with("_ratio")
            }
            "gauge" => !name.ends_with("_total"),
            _ => true,
        };
        if !component_ok || !kind_ok || name.chars().any(|c| c.is_ascii_uppercase()) {
            bad.push(format!("{name} ({kind})"));
        }
    }
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        if let Some(name) = line.split(['{', ' ']).next()
            && name.ends_with("_total")
            && !exposition.contains(&format!(
                "# TYPE {} counter",
                name.trim_end_matches("_total")
            ))
        {
            bad.push(format!("{name} (a _total sample that is not a counter)"));
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

/// Decides whether the service is ready (e.g. "NATS is connected").
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Shared state of the ops endpoint.
#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    ready: ReadyCheck,
}

/// The `/metrics` and `/healthz` routes, for services that serve them on their own router.
pub fn ops_router(registry: Arc<Registry>, ready: ReadyCheck) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(OpsState { registry, ready })
}

async fn metrics_handler(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(&state.registry),
    )
}

async fn healthz_handler(State(state): State<OpsState>) -> impl IntoResponse {
    match (state.ready)() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Binds `addr` and serves `/metrics` and `/healthz` until `shutdown`. Returns the bound address
/// (useful with port 0) and the server task.
pub async fn serve_ops(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = ops_router(registry, ready);
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "ops endpoint failed");
        }
    });
    tracing::info!(%local, "serving /metrics and /healthz");
    Ok((local, task))
}

/// A ready check that passes while `client` is connected to NATS.
pub fn nats_ready(client: async_nats::Client) -> ReadyCheck {
    Arc::new(move || match client.connection_state() {
        async_nats::connection::State::Connected => Ok(()),
        state => Err(format!("NATS {state}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_metrics_follow_the_naming_rules() {
        let mut registry = Registry::default();
        let m = ServiceMetrics::register(&mut registry, "mt");
        m.malformed_messages
            .get_or_create(&StreamLabel { stream: "MT" })
            .inc();
        let text = render(&registry);
        assert!(
            text.contains("voxbridge_mt_malformed_messages_total{stream=\"MT\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxbridge_mt_process_resident_memory_bytes"),
            "{text}"
        );
        assert_eq!(naming_violations(&text), Vec::<String>::new());
    }

    #[test]
    fn naming_check_catches_bad_names() {
        let text = "# TYPE voxbridge_mt_latency histogram\n# TYPE requests counter\n# TYPE voxbridge_edge_x_total gauge\n";
        let bad = naming_violations(text);
        assert_eq!(bad.len(), 3, "{bad:?}");
    }
}
