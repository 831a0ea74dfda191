//! Claims live sessions and audio jobs. A session claim is fetched only when this worker has a
//! free session slot (`max_sessions`), so no claim waits un-kept-alive in a local buffer; each
//! claimed session runs in its own task ([`crate::session`]). Payloads that do not decode are
//! dead-lettered (they can never succeed).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{AckKind, consumer::PullConsumer, message::Message};
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use voxbridge_shared::SessionId;
use voxbridge_shared::codec;
use voxbridge_shared::messages::SessionOpen;
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::shutdown::DEFAULT_SHUTDOWN_GRACE;
use voxbridge_shared::subjects::{consumers, streams};

use crate::session::{self, SessionSettings};
use crate::transcriber::Transcriber;

/// STT-specific metrics (`voxbridge_stt_…`).
#[derive(Debug, Clone)]
pub struct SttMetrics {
    pub active_sessions: Gauge,
    pub model_load_seconds: Gauge<f64, AtomicU64>,
    pub inference_seconds: Histogram,
    pub realtime_factor: Histogram,
    pub audio_lag_seconds: Histogram,
    pub first_partial_latency_seconds: Histogram,
    pub final_latency_seconds: Histogram,
    /// Audio appended without its own recognition step by a worker catching up.
    pub catch_up_audio_seconds: Counter<f64, AtomicU64>,
}

impl SttMetrics {
    /// Registers under `voxbridge_stt_`.
    pub fn register(registry: &mut Registry) -> Self {
        let seconds = || Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let m = Self {
            active_sessions: Gauge::default(),
            model_load_seconds: Gauge::default(),
            inference_seconds: seconds(),
            realtime_factor: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            audio_lag_seconds: seconds(),
            first_partial_latency_seconds: seconds(),
            final_latency_seconds: seconds(),
            catch_up_audio_seconds: Counter::default(),
        };
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
        r.register(
            "inference_seconds",
            "Whisper time per recognition run",
            m.inference_seconds.clone(),
        );
        r.register(
            "realtime_factor_ratio",
            "Whisper time divided by the audio time it recognised, per run",
            m.realtime_factor.clone(),
        );
        r.register(
            "audio_lag_seconds",
            "Time from the edge receiving a chunk to the worker having processed it",
            m.audio_lag_seconds.clone(),
        );
        r.register(
            "first_partial_latency_seconds",
            "Time from the first speech audio reaching the edge to the first partial",
            m.first_partial_latency_seconds.clone(),
        );
        r.register(
            "final_latency_seconds",
            "Time from the end of a sentence's audio reaching the edge to its final",
            m.final_latency_seconds.clone(),
        );
        r.register(
            "catch_up_audio_seconds",
            "Audio recognised together with later audio because the worker was behind real time",
            m.catch_up_audio_seconds.clone(),
        );
        m
    }
}

/// The worker's consume loops.
#[derive(Debug, Clone)]
pub struct Worker {
    ctx: ServiceContext,
    transcriber: Arc<Transcriber>,
    metrics: SttMetrics,
    in_flight: Arc<AtomicU32>,
    max_sessions: usize,
    settings: SessionSettings,
    active: Arc<Mutex<HashSet<SessionId>>>,
    audio_jobs: crate::jobs::AudioJobs,
}

impl Worker {
    pub fn new(
        ctx: ServiceContext,
        transcriber: Arc<Transcriber>,
        metrics: SttMetrics,
        in_flight: Arc<AtomicU32>,
        max_sessions: usize,
        settings: SessionSettings,
        audio_jobs: crate::jobs::AudioJobs,
    ) -> Self {
        Self {
            ctx,
            transcriber,
            metrics,
            in_flight,
            max_sessions,
            settings,
            active: Arc::default(),
            audio_jobs,
        }
    }

    /// Consumes session claims and audio jobs until `shutdown`, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let sessions = self
            .pull(streams::SESSIONS, consumers::STT_SESSIONS)
            .await?;
        let jobs = self.pull(streams::JOBS, consumers::JOBS_AUDIO).await?;
        let tracker = TaskTracker::new();
        let jobs_task = tokio::spawn(self.audio_jobs.clone().run(jobs, shutdown.clone()));
        let slots = Arc::new(Semaphore::new(self.max_sessions));
        loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot?,
            };
            let batch = sessions
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(2))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(error) => {
                    tracing::warn!(%error, "fetching a session claim failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = batch.next() => next,
            };
            let Some(Ok(message)) = next else {
                continue;
            };
            let open = match codec::decode::<SessionOpen>(&message.payload) {
                Ok(open) => open,
                Err(error) => {
                    self.malformed(&message, streams::SESSIONS, &error).await;
                    continue;
                }
            };
            let id = open.session_id;
            let fresh = self
                .active
                .lock()
                .map(|mut a| a.insert(id))
                .unwrap_or(false);
            if !fresh {
                // Redelivered while we still run it: keep our claim, drop the duplicate.
                let _ = message.ack_with(AckKind::Progress).await;
                continue;
            }
            let this = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                this.in_flight.fetch_add(1, Ordering::Relaxed);
                session::run(
                    this.ctx.clone(),
                    this.transcriber.clone(),
                    this.metrics.clone(),
                    this.settings.clone(),
                    open,
                    message,
                    shutdown,
                )
                .await;
                if let Ok(mut active) = this.active.lock() {
                    active.remove(&id);
                }
                this.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(slot);
            });
        }
        tracker.close();
        if tokio::time::timeout(DEFAULT_SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace elapsed with sessions still running");
        }
        let _ = jobs_task.await;
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
