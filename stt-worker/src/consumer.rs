//! Pulls session claims and audio jobs. Each message is decoded first: a payload that does not
//! decode is dead-lettered (it can never succeed), a valid one goes to its handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use async_nats::jetstream::{AckKind, consumer::PullConsumer, message::Message};
use futures::StreamExt;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::codec;
use voxbridge_shared::messages::{JobSpec, SessionOpen};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subjects::{consumers, streams};

use crate::transcriber::Transcriber;

/// How long a claim this worker cannot serve yet waits before it is offered again.
pub const RELEASE_DELAY: Duration = Duration::from_secs(30);

/// STT-specific metrics (`voxbridge_stt_…`).
#[derive(Debug, Clone, Default)]
pub struct SttMetrics {
    pub active_sessions: Gauge,
    pub model_load_seconds: Gauge<f64, AtomicU64>,
}

impl SttMetrics {
    /// Registers under `voxbridge_stt_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("voxbridge_stt");
        r.register(
            "active_sessions",
            "Live sessions owned by this worker",
            m.active_sessions.clone(),
        );
        r.register(
            "model_load_seconds",
            "Seconds the whisper model took to load",
            m.model_load_seconds.clone(),
        );
        m
    }
}

/// The worker's consume loops.
#[derive(Debug)]
pub struct Worker {
    ctx: ServiceContext,
    #[allow(dead_code)] // used by the streaming policy (issue 4)
    transcriber: Arc<Transcriber>,
    #[allow(dead_code)]
    metrics: SttMetrics,
    #[allow(dead_code)]
    in_flight: Arc<AtomicU32>,
    max_sessions: usize,
}

impl Worker {
    pub fn new(
        ctx: ServiceContext,
        transcriber: Arc<Transcriber>,
        metrics: SttMetrics,
        in_flight: Arc<AtomicU32>,
        max_sessions: usize,
    ) -> Self {
        Self {
            ctx,
            transcriber,
            metrics,
            in_flight,
            max_sessions,
        }
    }

    /// Consumes session claims and audio jobs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sessions = self
            .pull(streams::SESSIONS, consumers::STT_SESSIONS)
            .await?;
        let jobs = self.pull(streams::JOBS, consumers::JOBS_AUDIO).await?;
        let mut sessions = sessions
            .stream()
            .max_messages_per_batch(self.max_sessions)
            .messages()
            .await?;
        let mut jobs = jobs.stream().max_messages_per_batch(1).messages().await?;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(next) = sessions.next() => match next {
                    Ok(message) => self.on_session(message).await,
                    Err(error) => tracing::warn!(%error, "pull from session consumer failed"),
                },
                Some(next) = jobs.next() => match next {
                    Ok(message) => self.on_job(message).await,
                    Err(error) => tracing::warn!(%error, "pull from audio-job consumer failed"),
                },
            }
        }
        tracing::info!("STT worker drained");
        Ok(())
    }

    async fn pull(&self, stream: &str, consumer: &str) -> anyhow::Result<PullConsumer> {
        let stream = self
            .ctx
            .js
            .get_stream(self.ctx.namespace.stream(stream))
            .await?;
        stream
            .get_consumer(consumer)
            .await
            .map_err(|e| anyhow::anyhow!("consumer {consumer}: {e}"))
    }

    async fn on_session(&self, message: Message) {
        match codec::decode::<SessionOpen>(&message.payload) {
            Ok(open) => {
                tracing::warn!(session_id = %open.session_id, "live transcription is not implemented yet; releasing the claim");
                release(&message).await;
            }
            Err(error) => self.malformed(&message, streams::SESSIONS, &error).await,
        }
    }

    async fn on_job(&self, message: Message) {
        match codec::decode::<JobSpec>(&message.payload) {
            Ok(job) => {
                tracing::warn!(job_id = %job.job_id, "audio-file jobs are not implemented yet; releasing the job");
                release(&message).await;
            }
            Err(error) => self.malformed(&message, streams::JOBS, &error).await,
        }
    }

    async fn malformed(&self, message: &Message, stream: &'static str, error: &codec::CodecError) {
        if let Err(dlq_error) = self
            .ctx
            .dead_letters
            .malformed(message, stream, error)
            .await
        {
            tracing::error!(%dlq_error, "could not dead-letter; the message will be redelivered");
        }
    }
}

async fn release(message: &Message) {
    if let Err(error) = message.ack_with(AckKind::Nak(Some(RELEASE_DELAY))).await {
        tracing::warn!(%error, "nak failed; the message will be redelivered after ack_wait");
    }
}
