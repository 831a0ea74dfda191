//! Claims live sessions and audio jobs. A session claim is fetched only when this worker has a
//! free session slot (`max_sessions`), so no claim waits un-kept-alive in a local buffer; each
//! claimed session runs in its own task ([`crate::session`]). Payloads that do not decode are
//! dead-lettered (they can never succeed).
//!
//! Admission: a worker whose live sessions are behind real time ([`Admission`]) stops claiming
//! for a while, so that a new session goes to a worker that keeps up; a claim no other worker
//! took in that time is still taken (one worker alone, or all of them behind), so no session
//! waits for ever.

use std::collections::{HashMap, HashSet};
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
use voxbridge_shared::messages::{SessionOpen, now_unix_ms};
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
    /// New session claims this worker, behind real time, left waiting for other workers.
    pub claims_deferred: Counter,
    /// Sessions this worker stopped because another worker had claimed them since.
    pub sessions_taken_over: Counter,
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
            claims_deferred: Counter::default(),
            sessions_taken_over: Counter::default(),
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
        r.register(
            "claims_deferred",
            "New sessions this worker, behind real time, left waiting for a worker that keeps up",
            m.claims_deferred.clone(),
        );
        r.register(
            "sessions_taken_over",
            "Sessions this worker stopped because another worker claimed them while it was cut \
             off or paused longer than the session ack wait (it published nothing after that claim)",
            m.sessions_taken_over.clone(),
        );
        m
    }
}

/// When a worker claims another live session (`--max-sessions`, `--admit-behind-ms`,
/// `--admit-grace-ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Live sessions one worker owns at once.
    pub max_sessions: usize,
    /// A worker is behind when one of its real-time sessions is this far (ms) behind real time
    /// or further ([`Backlog`]).
    pub behind_ms: u64,
    /// How long a worker behind leaves waiting claims to other workers before it takes them
    /// itself; zero turns admission control off.
    pub grace: Duration,
}

/// How far behind real time each live session of one worker is. Every real-time session
/// records each chunk it takes: when the edge received it, when the worker took it, and how many
/// of the session's chunks were still waiting behind it. A session with chunks waiting is
/// behind by the age of the chunk it took last — a figure that keeps growing while a long
/// recognition runs; a session that had none waiting is behind by what its last chunk waited
/// (a session whose speaker paused is not behind).
#[derive(Debug, Clone, Default)]
pub struct Backlog(Arc<Mutex<HashMap<SessionId, Taken>>>);

#[derive(Debug, Clone, Copy)]
struct Taken {
    received_at_ms: u64,
    taken_at_ms: u64,
    waiting: u64,
}

impl Backlog {
    /// Records that `session` took a chunk the edge received at `received_at_ms`, at
    /// `now_ms`, with `waiting` more of its chunks stored behind it.
    pub fn record(&self, session: SessionId, received_at_ms: u64, now_ms: u64, waiting: u64) {
        if let Ok(mut sessions) = self.0.lock() {
            sessions.insert(
                session,
                Taken {
                    received_at_ms,
                    taken_at_ms: now_ms,
                    waiting,
                },
            );
        }
    }

    /// Forgets an ended session.
    pub fn remove(&self, session: &SessionId) {
        if let Ok(mut sessions) = self.0.lock() {
            sessions.remove(session);
        }
    }

    /// How far (ms) the session furthest behind is, if any session took a chunk.
    pub fn worst(&self, now_ms: u64) -> Option<u64> {
        let sessions = self.0.lock().ok()?;
        sessions
            .values()
            .map(|t| {
                let until = if t.waiting > 0 { now_ms } else { t.taken_at_ms };
                until.saturating_sub(t.received_at_ms)
            })
            .max()
    }

    /// Whether a session of this worker is `behind_ms` or more behind real time.
    pub fn behind(&self, behind_ms: u64, now_ms: u64) -> bool {
        self.worst(now_ms).is_some_and(|lag| lag >= behind_ms)
    }
}

/// The worker's consume loops.
#[derive(Debug, Clone)]
pub struct Worker {
    ctx: ServiceContext,
    transcriber: Arc<Transcriber>,
    metrics: SttMetrics,
    in_flight: Arc<AtomicU32>,
    admission: Admission,
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
        admission: Admission,
        settings: SessionSettings,
        audio_jobs: crate::jobs::AudioJobs,
    ) -> Self {
        Self {
            ctx,
            transcriber,
            metrics,
            in_flight,
            admission,
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
        let slots = Arc::new(Semaphore::new(self.admission.max_sessions));
        loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot?,
            };
            let Some(expires) = self.admit(&sessions, &shutdown).await else {
                break;
            };
            let batch = sessions
                .fetch()
                .max_messages(1)
                .expires(expires)
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
                this.settings.backlog.remove(&id);
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

    /// Waits until this worker may claim a session; returns how long the fetch may wait for
    /// one, or None at shutdown. A worker that keeps up fetches at once and waits up to 2 s for
    /// a claim. A worker behind real time leaves new claims to the others: it takes one only
    /// when it has been waiting for the grace period (no worker keeping up took it) — and, every
    /// four grace periods, whatever is waiting (a claim released by a stopped worker is waiting
    /// for redelivery, which the consumer's pending count does not show).
    async fn admit(
        &self,
        sessions: &PullConsumer,
        shutdown: &CancellationToken,
    ) -> Option<Duration> {
        const FETCH: Duration = Duration::from_secs(2);
        const TAKE_WAITING: Duration = Duration::from_millis(250);
        let Admission {
            behind_ms, grace, ..
        } = self.admission;
        if grace.is_zero() {
            return Some(FETCH);
        }
        let paused = tokio::time::Instant::now();
        let mut waiting_since = None;
        loop {
            if !self.settings.backlog.behind(behind_ms, now_unix_ms()) {
                return Some(FETCH);
            }
            let pending = match sessions.get_info().await {
                Ok(info) => info.num_pending,
                Err(error) => {
                    tracing::debug!(%error, "session consumer info");
                    0
                }
            };
            if pending == 0 {
                waiting_since = None;
            } else if let Some(since) = waiting_since {
                if tokio::time::Instant::now().duration_since(since) >= grace {
                    tracing::info!(
                        "behind real time, but no other worker took a waiting session in {grace:?}: taking it"
                    );
                    return Some(TAKE_WAITING);
                }
            } else {
                waiting_since = Some(tokio::time::Instant::now());
                self.metrics.claims_deferred.inc();
                tracing::debug!(
                    worst_lag_ms = self.settings.backlog.worst(now_unix_ms()),
                    "behind real time: leaving a new session to other workers for {grace:?}"
                );
            }
            if paused.elapsed() >= grace * 4 {
                return Some(TAKE_WAITING);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_behind_by_its_session_furthest_behind() {
        let backlog = Backlog::default();
        let (a, b) = (SessionId::new(), SessionId::new());
        assert_eq!(backlog.worst(50_000), None);
        assert!(!backlog.behind(0, 50_000), "no session: never behind");
        // a took its newest chunk 400 ms after it arrived; b took one that waited 3.5 s, with
        // more of its audio waiting.
        backlog.record(a, 49_600, 50_000, 0);
        backlog.record(b, 46_500, 50_000, 12);
        assert_eq!(backlog.worst(50_000), Some(3_500));
        assert!(backlog.behind(3_500, 50_000), "the limit itself is behind");
        assert!(!backlog.behind(3_501, 50_000));
        // While b recognises (takes no chunk), what waits for it grows older.
        assert_eq!(backlog.worst(58_000), Some(11_500));
        // a's speaker pauses: no chunk waits behind a's last one, so a is not behind however
        // long the pause.
        backlog.remove(&b);
        assert_eq!(backlog.worst(90_000), Some(400));
        assert!(
            backlog.behind(0, 90_000),
            "a limit of 0: any session is behind"
        );
        // b caught up: its latest chunk counts, not its worst.
        backlog.record(b, 89_900, 90_000, 0);
        assert_eq!(backlog.worst(90_000), Some(400));
    }
}
