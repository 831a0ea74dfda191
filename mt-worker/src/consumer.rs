//! The consume loop with dynamic micro-batching.
//!
//! Requests are pulled from the shared `mt-workers` consumer. A batch closes when it holds
//! `max_batch` requests or `max_wait` has passed since its first request arrived. Each batch:
//! decode (undecodable or unanswerable requests go to the DLQ), look every text up in the cache
//! (fully cached requests are answered at once), group the rest by (source, target) and run one
//! `translate_batch` per group on a blocking thread — never on the async runtime — then write the
//! cache (fire-and-forget), publish each result and only then ack. While a batch computes, the
//! next one is collected; at most `replicas + 1` batches are in flight. On shutdown the loop
//! stops pulling, lets in-flight batches finish and ack, and returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use voxbridge_shared::codec;
use voxbridge_shared::messages::{ErrorInfo, MtRequest, MtResult, now_unix_ms};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::shutdown::DEFAULT_SHUTDOWN_GRACE;
use voxbridge_shared::subjects::{consumers, streams};

use crate::cache::Cache;
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

/// Batching knobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most requests in one batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill after its first request.
    pub max_wait: Duration,
    /// Batches computed at once (= model replicas).
    pub parallel_batches: usize,
}

/// One worker's consume loop.
#[derive(Debug, Clone)]
pub struct Worker {
    ctx: ServiceContext,
    translator: Arc<Translator>,
    cache: Cache,
    metrics: MtMetrics,
    in_flight: Arc<AtomicU32>,
    policy: BatchPolicy,
}

/// A request waiting for the model, with its cache lookups (`Some` where already known).
type Member = (Pending, Vec<Option<String>>);

/// A decoded request with the message to ack.
struct Pending {
    request: MtRequest,
    message: Message,
}

impl Worker {
    pub fn new(
        ctx: ServiceContext,
        translator: Arc<Translator>,
        cache: Cache,
        metrics: MtMetrics,
        in_flight: Arc<AtomicU32>,
        policy: BatchPolicy,
    ) -> Self {
        Self {
            ctx,
            translator,
            cache,
            metrics,
            in_flight,
            policy,
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
            .max_messages_per_batch(self.policy.max_batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        let slots = Arc::new(Semaphore::new(self.policy.parallel_batches + 1));
        let tracker = TaskTracker::new();
        'outer: loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot?,
            };
            // Wait for the batch's first message, then fill until full or max_wait.
            let mut batch = Vec::with_capacity(self.policy.max_batch);
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = messages.next() => next,
            };
            match first {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => {
                    tracing::warn!(%error, "pull from MT consumer failed; continuing");
                    continue;
                }
                None => break,
            }
            let closes_at = tokio::time::Instant::now() + self.policy.max_wait;
            while batch.len() < self.policy.max_batch {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Messages already pulled are handled, not dropped.
                        break;
                    }
                    _ = tokio::time::sleep_until(closes_at) => break,
                    next = messages.next() => match next {
                        Some(Ok(message)) => batch.push(message),
                        Some(Err(error)) => tracing::warn!(%error, "pull from MT consumer failed"),
                        None => {
                            self.spawn_batch(&tracker, batch, slot);
                            break 'outer;
                        }
                    },
                }
            }
            self.spawn_batch(&tracker, batch, slot);
        }
        // Stop pulling; pulled-but-unhandled messages are redelivered after ack_wait.
        drop(messages);
        tracker.close();
        if tokio::time::timeout(DEFAULT_SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace elapsed with batches in flight; they will be redelivered"
            );
        }
        tracing::info!("MT worker drained");
        Ok(())
    }

    fn spawn_batch(
        &self,
        tracker: &TaskTracker,
        batch: Vec<Message>,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let this = self.clone();
        let n = batch.len() as u32;
        this.in_flight.fetch_add(n, Ordering::Relaxed);
        tracker.spawn(async move {
            this.handle_batch(batch).await;
            this.in_flight.fetch_sub(n, Ordering::Relaxed);
            drop(slot);
        });
    }

    async fn handle_batch(&self, messages: Vec<Message>) {
        // 1. Decode; dead-letter what can never be answered.
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            match codec::decode::<MtRequest>(&message.payload) {
                Ok(request) if request.reply_subject.trim().is_empty() => {
                    self.dead_letter(
                        &message,
                        "poison_input",
                        "request has no reply subject: nobody can receive its result",
                    )
                    .await;
                }
                Ok(request) => pending.push(Pending { request, message }),
                Err(error) => {
                    if let Err(dlq_error) = self
                        .ctx
                        .dead_letters
                        .malformed(&message, streams::MT, &error)
                        .await
                    {
                        tracing::error!(%dlq_error, "could not dead-letter a malformed request; it will be redelivered");
                    }
                }
            }
        }

        // 2. Requests that cannot be translated are answered with an error.
        let mut valid = Vec::with_capacity(pending.len());
        for p in pending {
            let waited = now_unix_ms().saturating_sub(p.request.enqueued_at_ms);
            self.metrics
                .queue_wait_seconds
                .observe(waited as f64 / 1000.0);
            let error = if p.request.texts.is_empty() {
                Some(MtError::Empty)
            } else if p.request.deadline_ms.is_some_and(|d| now_unix_ms() > d) {
                Some(MtError::DeadlineExceeded)
            } else if !self.translator.supports(&p.request.source_lang) {
                Some(MtError::Translator(
                    crate::translator::TranslatorError::UnsupportedLanguage(
                        p.request.source_lang.clone(),
                    ),
                ))
            } else if !self.translator.supports(&p.request.target_lang) {
                Some(MtError::Translator(
                    crate::translator::TranslatorError::UnsupportedLanguage(
                        p.request.target_lang.clone(),
                    ),
                ))
            } else {
                None
            };
            match error {
                Some(error) => self.fail(&p, &error).await,
                None => valid.push(p),
            }
        }

        // 3. Cache lookups, concurrently; fully cached requests are answered now.
        let lookups = futures::future::join_all(valid.iter().map(|p| {
            self.cache.get_many(
                &p.request.source_lang,
                &p.request.target_lang,
                &p.request.texts,
            )
        }))
        .await;
        let mut groups: HashMap<(String, String), Vec<Member>> = HashMap::new();
        for (p, cached) in valid.into_iter().zip(lookups) {
            if cached.iter().all(Option::is_some) {
                let flags = p
                    .request
                    .texts
                    .iter()
                    .map(|t| !t.trim().is_empty())
                    .collect();
                let translations = cached.into_iter().map(Option::unwrap_or_default).collect();
                self.succeed(&p, translations, flags).await;
            } else {
                let key = (p.request.source_lang.clone(), p.request.target_lang.clone());
                groups.entry(key).or_default().push((p, cached));
            }
        }

        // 4. One translate_batch per (source, target) group, one group at a time.
        for ((source, target), members) in groups {
            self.translate_group(&source, &target, members).await;
        }
    }

    async fn translate_group(&self, source: &str, target: &str, members: Vec<Member>) {
        // Distinct uncached texts of the whole group, in first-seen order.
        let mut texts: Vec<String> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for (p, cached) in &members {
            for (text, hit) in p.request.texts.iter().zip(cached) {
                if hit.is_none() && !index_of.contains_key(text) {
                    index_of.insert(text.clone(), texts.len());
                    texts.push(text.clone());
                }
            }
        }
        let keep_alive = keep_alive(members.iter().map(|(p, _)| p.message.clone()).collect());
        let translator = self.translator.clone();
        let (src, tgt) = (source.to_string(), target.to_string());
        let batch = texts.clone();
        let started = Instant::now();
        let output =
            tokio::task::spawn_blocking(move || translator.translate_batch(&batch, &src, &tgt))
                .await
                .map_err(|e| MtError::Join(e.to_string()))
                .and_then(|r| r.map_err(MtError::from));
        keep_alive.cancel();
        let output = match output {
            Ok(output) => output,
            Err(error) => {
                for (p, _) in &members {
                    self.fail(p, &error).await;
                }
                return;
            }
        };
        if output.model_calls > 0 {
            self.metrics
                .translate_duration_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_size.observe(texts.len() as f64);
        }
        self.metrics.tokens_in.inc_by(output.tokens_in as u64);
        self.metrics.tokens_out.inc_by(output.tokens_out as u64);
        self.cache.put_many(
            source,
            target,
            texts
                .iter()
                .cloned()
                .zip(output.translations.iter().cloned())
                .collect(),
        );
        for (p, cached) in &members {
            let mut translations = Vec::with_capacity(p.request.texts.len());
            let mut flags = Vec::with_capacity(p.request.texts.len());
            for (text, hit) in p.request.texts.iter().zip(cached) {
                match hit {
                    Some(t) => {
                        translations.push(t.clone());
                        flags.push(!text.trim().is_empty());
                    }
                    None => {
                        let i = index_of[text];
                        translations.push(output.translations[i].clone());
                        flags.push(false);
                    }
                }
            }
            self.succeed(p, translations, flags).await;
        }
    }

    fn result(&self, request: &MtRequest) -> MtResult {
        MtResult {
            v: 1,
            request_id: request.request_id,
            session_id: request.session_id,
            segment_id: request.segment_id,
            source_lang: request.source_lang.clone(),
            target_lang: request.target_lang.clone(),
            translations: Vec::new(),
            error: None,
            model: Some(self.translator.id().to_string()),
            cached: Vec::new(),
            completed_at_ms: now_unix_ms(),
        }
    }

    async fn succeed(&self, p: &Pending, translations: Vec<String>, cached: Vec<bool>) {
        let result = MtResult {
            translations,
            cached,
            ..self.result(&p.request)
        };
        match self.reply(&p.request, &result).await {
            Ok(()) => {
                self.count("ok");
                ack(&p.message, AckKind::Ack).await;
            }
            Err(error) => self.fail(p, &error).await,
        }
    }

    async fn fail(&self, p: &Pending, error: &MtError) {
        match error.disposition() {
            Disposition::Answer(code) => {
                tracing::info!(request_id = %p.request.request_id, %error, code, "answering request with an error");
                let result = MtResult {
                    error: Some(ErrorInfo {
                        code: code.to_string(),
                        message: error.to_string(),
                    }),
                    ..self.result(&p.request)
                };
                match self.reply(&p.request, &result).await {
                    Ok(()) => {
                        self.count(code);
                        ack(&p.message, AckKind::Ack).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not publish error result; retrying later");
                        ack(&p.message, AckKind::Nak(Some(backoff(&p.message)))).await;
                    }
                }
            }
            Disposition::Retry => {
                let delay = backoff(&p.message);
                tracing::warn!(request_id = %p.request.request_id, %error, retry_in_ms = delay.as_millis() as u64, "transient failure, request will be redelivered");
                self.count("retry");
                ack(&p.message, AckKind::Nak(Some(delay))).await;
            }
        }
    }

    async fn dead_letter(&self, message: &Message, code: &'static str, reason: &str) {
        tracing::warn!(subject = %message.subject, code, reason, "dead-lettering request");
        if let Err(error) = self
            .ctx
            .dead_letters
            .dead_letter(message, streams::MT, code, reason)
            .await
        {
            tracing::error!(%error, "could not dead-letter; the request will be redelivered");
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

/// Redelivery delay: 1 s doubled per earlier delivery, at most 30 s.
fn backoff(message: &Message) -> Duration {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1).clamp(1, 6);
    (crate::error::RETRY_DELAY * 2u32.pow((delivered - 1) as u32)).min(Duration::from_secs(30))
}

/// Sends progress acks for `messages` every 5 s until cancelled, so a long batch keeps its
/// claim (ack wait 30 s).
fn keep_alive(messages: Vec<Message>) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    for message in &messages {
                        ack(message, AckKind::Progress).await;
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_subjects_are_told_from_inboxes() {
        assert!(is_stream_subject("vb.translation.01J", "vb.translation.*"));
        assert!(!is_stream_subject("_INBOX.abc.def", "vb.translation.*"));
        assert!(!is_stream_subject("vb.translation.a.b", "vb.translation.*"));
    }
}
