//! The consume loop: pull requests from the shared durable consumer, translate each on a
//! blocking thread, publish the result, then ack. At most `max_in_flight` requests are held at
//! once (a semaphore, and the same limit on the pull batch). On shutdown the loop stops pulling,
//! waits for in-flight requests to finish and be acked, and returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, consumer::PullConsumer, message::Message};
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter,
    family::Family,
    gauge::Gauge,
    histogram::{Histogram, exponential_buckets},
};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use voxbridge_shared::codec;
use voxbridge_shared::messages::{ErrorInfo, MtRequest, MtResult, now_unix_ms};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::shutdown::DEFAULT_SHUTDOWN_GRACE;
use voxbridge_shared::subjects::{consumers, streams};

use crate::error::{Disposition, MtError};
use crate::translator::Translator;

/// Outcome label of a handled request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// MT-specific metrics (`voxbridge_mt_…`).
#[derive(Debug, Clone)]
pub struct MtMetrics {
    pub translate_duration_seconds: Histogram,
    pub queue_wait_seconds: Histogram,
    pub batch_size: Histogram,
    pub tokens_in: Counter,
    pub tokens_out: Counter,
    pub requests: Family<OutcomeLabel, Counter>,
    pub model_load_seconds: Gauge<f64, AtomicU64>,
}

impl MtMetrics {
    /// Registers under `voxbridge_mt_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            translate_duration_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            queue_wait_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            tokens_in: Counter::default(),
            tokens_out: Counter::default(),
            requests: Family::default(),
            model_load_seconds: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("voxbridge_mt");
        r.register(
            "translate_duration_seconds",
            "Model time per translate_batch call",
            m.translate_duration_seconds.clone(),
        );
        r.register(
            "queue_wait_seconds",
            "Time from enqueue to the start of translation",
            m.queue_wait_seconds.clone(),
        );
        r.register(
            "batch_size",
            "Texts per translate_batch call",
            m.batch_size.clone(),
        );
        r.register("tokens_in", "Source tokens translated", m.tokens_in.clone());
        r.register("tokens_out", "Target tokens produced", m.tokens_out.clone());
        r.register(
            "requests",
            "Requests handled, by outcome",
            m.requests.clone(),
        );
        r.register(
            "model_load_seconds",
            "Seconds the model took to load",
            m.model_load_seconds.clone(),
        );
        m
    }
}

/// One worker's consume loop.
#[derive(Debug)]
pub struct Worker {
    ctx: ServiceContext,
    translator: Arc<Translator>,
    metrics: MtMetrics,
    in_flight: Arc<AtomicU32>,
    max_in_flight: usize,
}

impl Worker {
    pub fn new(
        ctx: ServiceContext,
        translator: Arc<Translator>,
        metrics: MtMetrics,
        in_flight: Arc<AtomicU32>,
        max_in_flight: usize,
    ) -> Self {
        Self {
            ctx,
            translator,
            metrics,
            in_flight,
            max_in_flight,
        }
    }

    /// Consumes until `shutdown`, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stream = self
            .ctx
            .js
            .get_stream(self.ctx.namespace.stream(streams::MT))
            .await?;
        let consumer: PullConsumer = stream
            .get_consumer(consumers::MT_WORKERS)
            .await
            .map_err(|e| anyhow::anyhow!("MT consumer: {e}"))?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.max_in_flight)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(this.max_in_flight));
        let tracker = TaskTracker::new();
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p?,
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(error)) => {
                    tracing::warn!(%error, "pull from MT consumer failed; continuing");
                    continue;
                }
                None => break,
            };
            let this = this.clone();
            tracker.spawn(async move {
                this.in_flight.fetch_add(1, Ordering::Relaxed);
                this.handle(message).await;
                this.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        // Stop pulling; in-flight requests are finished and acked, undelivered ones stay queued.
        drop(messages);
        tracker.close();
        if tokio::time::timeout(DEFAULT_SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace elapsed with requests in flight; they will be redelivered"
            );
        }
        tracing::info!("MT worker drained");
        Ok(())
    }

    async fn handle(&self, message: Message) {
        let request: MtRequest = match codec::decode(&message.payload) {
            Ok(r) => r,
            Err(error) => {
                if let Err(dlq_error) = self
                    .ctx
                    .dead_letters
                    .malformed(&message, streams::MT, &error)
                    .await
                {
                    tracing::error!(%dlq_error, "could not dead-letter a malformed request; it will be redelivered");
                }
                return;
            }
        };
        let span = tracing::info_span!("mt_request", request_id = %request.request_id, session_id = ?request.session_id);
        let _enter = span.enter();
        match self.translate(&request, &message).await {
            Ok(result) => {
                if let Err(error) = self.reply(&request, &result).await {
                    self.fail(&request, &message, error).await;
                    return;
                }
                self.count("ok");
                ack(&message, AckKind::Ack).await;
            }
            Err(error) => self.fail(&request, &message, error).await,
        }
    }

    async fn translate(&self, request: &MtRequest, message: &Message) -> Result<MtResult, MtError> {
        if request.texts.is_empty() {
            return Err(MtError::Empty);
        }
        if request.deadline_ms.is_some_and(|d| now_unix_ms() > d) {
            return Err(MtError::DeadlineExceeded);
        }
        let waited = now_unix_ms().saturating_sub(request.enqueued_at_ms);
        self.metrics
            .queue_wait_seconds
            .observe(waited as f64 / 1000.0);
        // Long batches keep their claim alive.
        let progress = keep_alive(message.clone());
        let translator = self.translator.clone();
        let texts = request.texts.clone();
        let (source, target) = (request.source_lang.clone(), request.target_lang.clone());
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || {
            translator.translate_batch(&texts, &source, &target)
        })
        .await
        .map_err(|e| MtError::Join(e.to_string()))?;
        progress.cancel();
        let output = output?;
        self.metrics
            .translate_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(request.texts.len() as f64);
        self.metrics.tokens_in.inc_by(output.tokens_in as u64);
        self.metrics.tokens_out.inc_by(output.tokens_out as u64);
        Ok(MtResult {
            v: 1,
            request_id: request.request_id,
            session_id: request.session_id,
            segment_id: request.segment_id,
            source_lang: request.source_lang.clone(),
            target_lang: request.target_lang.clone(),
            cached: vec![false; output.translations.len()],
            translations: output.translations,
            error: None,
            model: Some(self.translator.id().to_string()),
            completed_at_ms: now_unix_ms(),
        })
    }

    async fn fail(&self, request: &MtRequest, message: &Message, error: MtError) {
        match error.disposition() {
            Disposition::Answer(code) => {
                tracing::info!(%error, code, "answering request with an error");
                let result = MtResult {
                    v: 1,
                    request_id: request.request_id,
                    session_id: request.session_id,
                    segment_id: request.segment_id,
                    source_lang: request.source_lang.clone(),
                    target_lang: request.target_lang.clone(),
                    translations: Vec::new(),
                    error: Some(ErrorInfo {
                        code: code.to_string(),
                        message: error.to_string(),
                    }),
                    model: Some(self.translator.id().to_string()),
                    cached: Vec::new(),
                    completed_at_ms: now_unix_ms(),
                };
                match self.reply(request, &result).await {
                    Ok(()) => {
                        self.count(code);
                        ack(message, AckKind::Ack).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not publish error result; retrying later");
                        ack(message, AckKind::Nak(Some(crate::error::RETRY_DELAY))).await;
                    }
                }
            }
            Disposition::Retry(delay) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "transient failure, request will be redelivered");
                self.count("retry");
                ack(message, AckKind::Nak(Some(delay))).await;
            }
        }
    }

    /// Publishes the result: with a JetStream ack when the reply subject is stream-backed
    /// (live translations), as a core publish + flush otherwise (inboxes).
    async fn reply(&self, request: &MtRequest, result: &MtResult) -> Result<(), MtError> {
        let payload = codec::encode(result).map_err(|e| MtError::Publish(e.to_string()))?;
        let subject = request.reply_subject.clone();
        if is_stream_subject(&subject, &self.ctx.namespace.translation_wildcard()) {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("mt-{}", request.request_id).as_str(),
            );
            self.ctx
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|e| MtError::Publish(e.to_string()))?
                .await
                .map_err(|e| MtError::Publish(e.to_string()))?;
        } else {
            self.ctx
                .client
                .publish(subject, payload.into())
                .await
                .map_err(|e| MtError::Publish(e.to_string()))?;
            self.ctx
                .client
                .flush()
                .await
                .map_err(|e| MtError::Publish(e.to_string()))?;
        }
        Ok(())
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

/// Sends progress acks every few seconds until cancelled.
fn keep_alive(message: Message) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => ack(&message, AckKind::Progress).await,
            }
        }
    });
    token
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(%error, "ack failed; the message may be redelivered");
    }
}

/// Whether `subject` matches a single-`*` wildcard `pattern` like `vb.translation.*`.
fn is_stream_subject(subject: &str, pattern: &str) -> bool {
    let s: Vec<_> = subject.split('.').collect();
    let p: Vec<_> = pattern.split('.').collect();
    s.len() == p.len() && s.iter().zip(&p).all(|(s, p)| *p == "*" || s == p)
}
