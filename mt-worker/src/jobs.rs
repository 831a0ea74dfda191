//! Subtitle jobs: the `jobs-subtitles` consumer on the JOBS work queue.
//!
//! A job: read the file from the Object Store, parse it ([`Subtitles`]), merge cues into
//! sentence units, translate every unit into every target through the MT work queue — as
//! [`MtRequest`]s of up to `chunk` sentences (one `translate_batch` each, sorted by length so a
//! batch pads little), at most `window` requests in flight per job so live sessions' requests
//! are never stuck behind a whole film — then spread each translation back over its cues, write
//! the file (same format, or the one asked for) and record the results.
//!
//! Going through the queue rather than calling the model in-process means every MT worker
//! shares a big job, the Redis cache is filled as sentences complete (a job redelivered after a
//! crash re-translates only what was not finished), and one code path batches everything.
//!
//! Reliability: the job message is kept alive with progress acks while the job runs; it is
//! acked only after the result files and the `succeeded` status are stored, so a worker killed
//! at any point leaves a job that is redelivered and completed by another. A job whose status is
//! already `succeeded` is acked without work (it completes once). A file that can never succeed
//! (not subtitles, too large, unsupported language) fails with a code and goes to the DLQ at
//! once; transient errors are retried with backoff until `max_deliver`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer::PullConsumer, message::Message};
use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter,
    family::Family,
    histogram::{Histogram, exponential_buckets},
};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::RequestId;
use voxbridge_shared::codec;
use voxbridge_shared::jobs::{self, Failure, JobStore};
use voxbridge_shared::languages;
use voxbridge_shared::messages::{
    JobResult, JobSpec, JobState, JobStatus, MtRequest, MtResult, now_unix_ms,
};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subjects::{consumers, streams};
use voxbridge_shared::subtitles::{LayoutOptions, SentenceOptions, Subtitles};

/// Job-runner knobs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Sentences per MT request (one batch).
    pub chunk: usize,
    /// MT requests in flight per job.
    pub window: usize,
    /// Largest subtitle file accepted.
    pub max_file_bytes: usize,
    /// Give up (and retry the job later) when no translation arrives for this long.
    pub stall_timeout: Duration,
    /// Jobs run at once by this worker.
    pub concurrent_jobs: usize,
    pub layout: LayoutOptions,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            chunk: 16,
            window: 2,
            max_file_bytes: 10 * 1024 * 1024,
            stall_timeout: Duration::from_secs(600),
            concurrent_jobs: 1,
            layout: LayoutOptions::default(),
        }
    }
}

/// Outcome label of a finished job run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobOutcome {
    pub outcome: &'static str,
}

/// `voxbridge_mt_jobs_…` metrics.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    pub runs: Family<JobOutcome, Counter>,
    pub duration_seconds: Histogram,
    pub sentences: Counter,
}

impl JobMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            runs: Family::default(),
            duration_seconds: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
            sentences: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("voxbridge_mt_job");
        r.register(
            "runs",
            "Subtitle job runs, by outcome (succeeded, failed, retried, duplicate)",
            m.runs.clone(),
        );
        r.register(
            "duration_seconds",
            "Wall time of a subtitle job run",
            m.duration_seconds.clone(),
        );
        r.register(
            "sentences",
            "Sentence units translated by subtitle jobs (per target)",
            m.sentences.clone(),
        );
        m
    }
}

/// The subtitle-job consumer.
#[derive(Debug, Clone)]
pub struct SubtitleJobs {
    ctx: ServiceContext,
    store: JobStore,
    settings: JobSettings,
    metrics: JobMetrics,
    in_flight: Arc<AtomicU32>,
    ack_wait: Duration,
    max_deliver: i64,
}

impl SubtitleJobs {
    pub async fn new(
        ctx: ServiceContext,
        settings: JobSettings,
        metrics: JobMetrics,
        in_flight: Arc<AtomicU32>,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> anyhow::Result<Self> {
        let store = JobStore::open(ctx.client.clone(), ctx.js.clone(), ctx.namespace.clone())
            .await
            .map_err(|e| anyhow::anyhow!("job store: {e}"))?;
        Ok(Self {
            ctx,
            store,
            settings,
            metrics,
            in_flight,
            ack_wait,
            max_deliver,
        })
    }

    /// Consumes jobs until `shutdown`. A job still running then is released (nak) so another
    /// worker takes it at once; what it translated is in the cache.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stream = self
            .ctx
            .js
            .get_stream(self.ctx.namespace.stream(streams::JOBS))
            .await?;
        let consumer: PullConsumer = stream
            .get_consumer(consumers::JOBS_SUBTITLES)
            .await
            .map_err(|e| anyhow::anyhow!("subtitle-job consumer: {e}"))?;
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.settings.concurrent_jobs.max(1),
        ));
        let tracker = tokio_util::task::TaskTracker::new();
        loop {
            let slot = tokio::select! {
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot?,
            };
            let batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(2))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(error) => {
                    tracing::warn!(%error, "fetching a subtitle job failed");
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
            let this = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                this.in_flight.fetch_add(1, Ordering::Relaxed);
                this.handle(message, shutdown).await;
                this.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(slot);
            });
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }

    async fn handle(&self, message: Message, shutdown: CancellationToken) {
        let mut run = match self
            .store
            .start_run(
                &self.ctx.dead_letters,
                message,
                self.ack_wait,
                "translating",
            )
            .await
        {
            Ok(run) => run,
            Err(skipped) => {
                if skipped == jobs::Skipped::Finished {
                    self.metrics
                        .runs
                        .get_or_create(&JobOutcome {
                            outcome: "duplicate",
                        })
                        .inc();
                }
                return;
            }
        };
        let started = Instant::now();
        let spec = run.spec.clone();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Err(Failure::Transient("worker shutting down".into())),
            outcome = self.translate(&spec, &mut run.status) => outcome,
        };
        let elapsed = started.elapsed();
        let label = match outcome {
            Ok(()) => {
                run.status.state = JobState::Succeeded;
                run.status.progress = 1.0;
                run.status.message = Some(format!("done in {:.1} s", elapsed.as_secs_f64()));
                tracing::info!(job_id = %spec.job_id, seconds = elapsed.as_secs_f64(), "subtitle job succeeded");
                run.complete(&self.store).await
            }
            Err(failure) => {
                run.fail(
                    &self.store,
                    &self.ctx.dead_letters,
                    failure,
                    self.max_deliver,
                    shutdown.is_cancelled(),
                )
                .await
            }
        };
        self.metrics
            .runs
            .get_or_create(&JobOutcome { outcome: label })
            .inc();
        self.metrics.duration_seconds.observe(elapsed.as_secs_f64());
    }

    /// Translates the job's file into each target and stores the results in `status`.
    async fn translate(&self, spec: &JobSpec, status: &mut JobStatus) -> Result<(), Failure> {
        let bytes = self
            .store
            .get_file(&spec.input_object, self.settings.max_file_bytes)
            .await?
            .ok_or_else(|| Failure::Poison {
                code: "input_missing",
                message: format!(
                    "the input file {} is no longer stored (expired?)",
                    spec.input_object
                ),
            })?;
        let subtitles = Subtitles::parse(&bytes).map_err(|e| Failure::Poison {
            code: "invalid_subtitles",
            message: e.to_string(),
        })?;
        if let Some(encoding) = subtitles.source_encoding() {
            tracing::info!(job_id = %spec.job_id, encoding, "subtitles converted to UTF-8");
        }
        if spec.target_langs.is_empty() {
            return Err(Failure::Poison {
                code: "invalid_request",
                message: "no target language".into(),
            });
        }
        let source = spec
            .source_lang
            .clone()
            .unwrap_or_else(|| "eng_Latn".to_string());
        let units = subtitles.sentence_units(&SentenceOptions::default());
        let texts: Vec<String> = units.iter().map(|u| u.text.clone()).collect();
        let translations = self.translate_all(spec, status, &source, &texts).await?;

        // An audio job's transcript stays among the results.
        status.results.retain(|r| r.transcript);
        let format = spec.output_format.unwrap_or(subtitles.format());
        let stem = jobs::file_stem(&spec.file_name).to_string();
        for (target, translated_texts) in spec.target_langs.iter().zip(translations) {
            let translated = subtitles
                .apply_translations(&units, &translated_texts, &self.settings.layout)
                .map_err(|e| Failure::Poison {
                    code: "internal",
                    message: format!("could not apply translations: {e}"),
                })?;
            let bytes = translated.subtitles.write_as(format);
            let code = languages::by_flores(target)
                .map(|l| l.bcp47)
                .unwrap_or(target.as_str());
            let file_name = format!("{stem}.{code}.{}", format.extension());
            let object = format!("result/{}/{file_name}", spec.job_id);
            self.store.put_file(&object, &bytes).await?;
            status.results.push(JobResult {
                lang: target.clone(),
                transcript: false,
                object: object.clone(),
                file_name,
                format,
                cues: translated.subtitles.cues().len() as u64,
                overlong_cues: translated.overlong_cues.len() as u64,
            });
        }
        status.result_objects = status.results.iter().map(|r| r.object.clone()).collect();
        Ok(())
    }

    /// Every text into every target, through the MT queue; `out[target][i]` translates
    /// `texts[i]`.
    async fn translate_all(
        &self,
        spec: &JobSpec,
        status: &mut JobStatus,
        source: &str,
        texts: &[String],
    ) -> Result<Vec<Vec<String>>, Failure> {
        let targets = &spec.target_langs;
        let mut out: Vec<Vec<String>> = vec![vec![String::new(); texts.len()]; targets.len()];
        // Chunks of similar length: sort indices by length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].chars().count());
        let chunk = self.settings.chunk.max(1);
        let mut work: Vec<(usize, Vec<usize>)> = Vec::new();
        for (t, _) in targets.iter().enumerate() {
            for indices in order.chunks(chunk) {
                work.push((t, indices.to_vec()));
            }
        }
        let total = (texts.len() * targets.len()) as u64;
        // Progress after a transcription stage (audio jobs) continues from where it is.
        let base = if status.results.iter().any(|r| r.transcript) {
            status.progress.clamp(0.0, 0.95)
        } else {
            0.0
        };
        let mut done = 0u64;
        self.store
            .progress(&spec.job_id, 0, total, "translate")
            .await;

        let inbox = self.ctx.client.new_inbox();
        let mut replies = self
            .ctx
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Failure::Transient(format!("subscribe: {e}")))?;
        let mut pending: HashMap<RequestId, usize> = HashMap::new();
        let mut next = 0usize;
        let mut last_status = Instant::now();
        while next < work.len() || !pending.is_empty() {
            while next < work.len() && pending.len() < self.settings.window.max(1) {
                let (t, indices) = &work[next];
                let request_id = RequestId::new();
                let request = MtRequest {
                    v: 1,
                    request_id,
                    texts: indices.iter().map(|&i| texts[i].clone()).collect(),
                    source_lang: source.to_string(),
                    target_lang: targets[*t].clone(),
                    reply_subject: inbox.clone(),
                    session_id: None,
                    segment_id: None,
                    deadline_ms: None,
                    enqueued_at_ms: now_unix_ms(),
                };
                let payload = codec::encode(&request)
                    .map_err(|e| Failure::Transient(format!("encode: {e}")))?;
                voxbridge_shared::nats::publish_with_id(
                    &self.ctx.js,
                    self.ctx.namespace.mt_request(&targets[*t]),
                    &request_id.to_string(),
                    payload.into(),
                )
                .await
                .map_err(|e| Failure::Transient(format!("publish: {e}")))?
                .await
                .map_err(|e| Failure::Transient(format!("publish: {e}")))?;
                pending.insert(request_id, next);
                next += 1;
            }
            let reply = tokio::time::timeout(self.settings.stall_timeout, replies.next())
                .await
                .map_err(|_| {
                    Failure::Transient(format!(
                        "no translation for {} s (MT workers down or overloaded)",
                        self.settings.stall_timeout.as_secs()
                    ))
                })?
                .ok_or_else(|| Failure::Transient("reply subscription closed".into()))?;
            let Ok(result) = codec::decode::<MtResult>(&reply.payload) else {
                tracing::warn!("undecodable MT result on a job inbox");
                continue;
            };
            let Some(item) = pending.remove(&result.request_id) else {
                continue; // a duplicate answer to a redelivered request
            };
            if let Some(error) = result.error {
                return Err(match error.code.as_str() {
                    "unsupported_language" | "invalid_input" | "empty_request" => Failure::Poison {
                        code: if error.code == "unsupported_language" {
                            "unsupported_language"
                        } else {
                            "invalid_request"
                        },
                        message: error.message,
                    },
                    _ => Failure::Transient(format!("{}: {}", error.code, error.message)),
                });
            }
            let (t, indices) = &work[item];
            if result.translations.len() != indices.len() {
                return Err(Failure::Transient(format!(
                    "{} translations for {} texts",
                    result.translations.len(),
                    indices.len()
                )));
            }
            for (&i, translation) in indices.iter().zip(result.translations) {
                out[*t][i] = translation;
            }
            done += indices.len() as u64;
            self.metrics.sentences.inc_by(indices.len() as u64);
            self.store
                .progress(&spec.job_id, done, total, "translate")
                .await;
            if last_status.elapsed() >= Duration::from_secs(1) || done == total {
                last_status = Instant::now();
                status.progress = base + (1.0 - base) * 0.99 * done as f32 / total.max(1) as f32;
                status.message = Some(format!("translating {done}/{total} sentences"));
                status.updated_at_ms = now_unix_ms();
                let _ = self.store.put_status(status).await;
            }
        }
        Ok(out)
    }
}
