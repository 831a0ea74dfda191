//! What every service does at start-up, in one place: connect to NATS (with retry), ensure the
//! JetStream topology, serve `/metrics` and `/healthz`, and publish heartbeats.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::codec;
use crate::config::{NatsConfig, TopologyConfig};
use crate::dlq::DeadLetters;
use crate::messages::{Heartbeat, now_unix_ms};
use crate::metrics::{self, ServiceMetrics};
use crate::subjects::Namespace;
use crate::topology::{Topology, TopologySettings, ensure_topology};

/// How often workers announce themselves.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A connected service: its NATS handles, namespace, topology and shared metrics.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub component: &'static str,
    /// Unique per process, e.g. `mt-01J…`.
    pub instance: String,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub namespace: Namespace,
    pub topology: Arc<Topology>,
    pub metrics: ServiceMetrics,
    pub dead_letters: DeadLetters,
}

impl ServiceContext {
    /// Connects (retrying until the configured deadline) and ensures the topology.
    pub async fn start(
        component: &'static str,
        nats: &NatsConfig,
        topology: &TopologyConfig,
        metrics: ServiceMetrics,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::start_with_settings(component, nats, topology.settings(), metrics, shutdown).await
    }

    /// As [`ServiceContext::start`], with explicit topology settings (tests shorten ack waits).
    pub async fn start_with_settings(
        component: &'static str,
        nats: &NatsConfig,
        settings: TopologySettings,
        metrics: ServiceMetrics,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let namespace = nats.namespace()?;
        let instance = format!(
            "{component}-{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let client = crate::nats::connect(nats, &instance, Some(metrics.clone()), shutdown).await?;
        let version = client.server_info().version;
        if !crate::topology::server_version_supported(&version) {
            tracing::warn!(
                server_version = %version,
                minimum = ?crate::topology::MIN_SERVER_VERSION,
                "NATS server is older than Voxbridge supports; run scripts/setup for a current one"
            );
        }
        let js = jetstream::new(client.clone());
        let topology = Topology::new(&namespace, &settings);
        ensure_topology(&js, &topology).await?;
        tracing::info!(namespace = ?namespace, streams = topology.streams.len(), "JetStream topology ensured");
        let dead_letters =
            DeadLetters::new(js.clone(), namespace.clone(), component, metrics.clone());
        Ok(Self {
            component,
            instance,
            client,
            js,
            namespace,
            topology: Arc::new(topology),
            metrics,
            dead_letters,
        })
    }

    /// Serves `/metrics` and `/healthz` (ready while NATS is connected) on `addr`.
    pub async fn serve_ops(
        &self,
        addr: SocketAddr,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        metrics::serve_ops(
            addr,
            Arc::new(registry),
            metrics::nats_ready(self.client.clone()),
            shutdown,
        )
        .await
    }

    /// Answers presence requests ([`Namespace::presence`]) until `until` is cancelled. Not the
    /// shutdown token: a draining worker still owns its sessions; cancel it when the service
    /// has finished (a killed process stops answering with its connection).
    pub async fn serve_presence(
        &self,
        until: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use futures::StreamExt;
        let subject = self.namespace.presence(&self.instance);
        let mut requests = self.client.subscribe(subject).await?;
        // The subscription is registered with the server once the client has flushed it, so
        // an edge asking right after this worker claims a session finds a responder.
        self.client.flush().await?;
        let client = self.client.clone();
        Ok(tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = until.cancelled() => break,
                    request = requests.next() => match request {
                        Some(request) => request,
                        None => break,
                    },
                };
                if let Some(reply) = request.reply
                    && let Err(error) = client.publish(reply, bytes::Bytes::new()).await
                {
                    tracing::debug!(%error, "presence reply not sent");
                }
            }
        }))
    }

    /// Publishes a [`Heartbeat`] every [`HEARTBEAT_INTERVAL`] until `shutdown`.
    pub fn spawn_heartbeat(
        &self,
        in_flight: Arc<AtomicU32>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let ctx = self.clone();
        let started_at_ms = now_unix_ms();
        tokio::spawn(async move {
            let subject = ctx.namespace.heartbeat(ctx.component, &ctx.instance);
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let beat = Heartbeat {
                    v: 1,
                    component: ctx.component.to_string(),
                    instance: ctx.instance.clone(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    started_at_ms,
                    emitted_at_ms: now_unix_ms(),
                    in_flight: in_flight.load(Ordering::Relaxed),
                };
                match codec::encode(&beat) {
                    Ok(payload) => {
                        if let Err(error) =
                            ctx.client.publish(subject.clone(), payload.into()).await
                        {
                            tracing::debug!(%error, "heartbeat not published");
                        }
                    }
                    Err(error) => tracing::error!(%error, "heartbeat not encoded"),
                }
            }
        })
    }
}
