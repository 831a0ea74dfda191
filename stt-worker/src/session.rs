//! One live session owned by this worker: say so (`session.claimed`, which the edge shows its
//! clients), read its audio in order from the AUDIO stream (from the start, or from the stream
//! sequence its checkpoint names: the first message the checkpoint's buffer still needs), run the streaming [`Policy`] on a blocking thread, publish
//! partials, finals and one MT request per final and target language, and keep the session claim
//! alive with progress acks. The session ends on its close marker or after an idle timeout: the
//! last words are flushed as finals, a `session.ended` event is published, the checkpoint is
//! marked finished and only then is the claim acked.
//!
//! Write-ahead: the outputs of every step are stored in the session's checkpoint (with the state
//! after that step) before they are published. Every event is published with a `Nats-Msg-Id`
//! derived from the session and the event's position (final index, segment and revision), so a
//! worker that takes over after a crash republishes the checkpoint's outputs — JetStream drops
//! those already stored — and continues from exactly the state whose text was shown. Error
//! events about bad audio take the id of the audio message they are about, so reading a message
//! again repeats nothing either.
//!
//! Fencing: every checkpoint write is conditional on the revision this worker last wrote (the
//! first, when it claims the session, on the revision it read). A worker whose claim expired
//! while it was paused or cut off, and which another worker has since resumed, fails its next
//! write and stops the session ([`SessionError::TakenOver`]) before publishing that step.
//!
//! A chunk of a real-time session that waited longer than a step since the edge received it
//! means the worker is behind real time: it is appended without a step ([`Policy::defer`]), and
//! one recognition catches up on all the audio that waited.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self, AckKind,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    message::Message,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::codec;
use voxbridge_shared::messages::{
    AUDIO_SAMPLE_RATE_HZ, AudioChunk, AudioEvent, CloseReason, ErrorEvent, ErrorInfo, MtRequest,
    SessionClaimed, SessionEnded, SessionOpen, TranscriptEvent, TranscriptFinal, TranscriptPartial,
    WordTiming, now_unix_ms,
};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subjects::{buckets, streams};
use voxbridge_shared::{RequestId, SessionId};

use crate::consumer::{Backlog, SttMetrics};
use crate::policy::{Checkpoint, Output, Policy, PolicyConfig, SAMPLE_RATE};
use crate::transcriber::{
    QuickDecoding, Threads, Transcriber, WhisperRecognizer, pcm_s16le_to_f32,
};

/// Largest gap in the audio that is filled with silence (a longer one is a client bug).
const MAX_GAP_SAMPLES: u64 = 5 * SAMPLE_RATE;

/// Session settings of one worker.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub policy: PolicyConfig,
    pub threads: Threads,
    /// End a session when no audio arrives for this long.
    pub idle_timeout: Duration,
    /// Progress-ack interval for the claim (below the consumer's ack wait).
    pub keep_alive: Duration,
    /// Language when the session does not name one (whisper code, or None to detect).
    pub default_language: Option<String>,
    pub beam_size: usize,
    /// See [`WhisperRecognizer::audio_ctx_margin`].
    pub audio_ctx_margin: Option<usize>,
    /// See [`WhisperRecognizer::quick`].
    pub quick: QuickDecoding,
    /// Shared by the worker's sessions: how far behind real time each one is (admission).
    pub backlog: Backlog,
}

/// Why a session task stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("recognition failed: {0}")]
    Recognition(String),
    #[error("worker shutting down")]
    Shutdown,
    /// Another worker has claimed the session since this one last wrote its checkpoint.
    #[error("another worker has taken the session over")]
    TakenOver,
}

fn nats<E: std::fmt::Display>(e: E) -> SessionError {
    SessionError::Nats(e.to_string())
}

/// Runs one session to its end. On success the claim is acked; on error it is left for
/// redelivery (or nak'ed at shutdown so another worker resumes at once).
pub async fn run(
    ctx: ServiceContext,
    transcriber: Arc<Transcriber>,
    metrics: SttMetrics,
    settings: SessionSettings,
    open: SessionOpen,
    claim: Message,
    shutdown: CancellationToken,
) {
    let session_id = open.session_id;
    // 1 for a first claim, more when another worker's claim was redelivered.
    let delivery = claim
        .info()
        .map(|i| u64::try_from(i.delivered).unwrap_or(1))
        .unwrap_or(1);
    let keep_alive = spawn_keep_alive(claim.clone(), settings.keep_alive);
    metrics.active_sessions.inc();
    let outcome = match Session::start(ctx, transcriber, metrics.clone(), settings, open).await {
        Ok(session) => session.run(&shutdown, delivery).await,
        Err(error) => Err(error),
    };
    keep_alive.cancel();
    metrics.active_sessions.dec();
    match outcome {
        Ok(()) => {
            if let Err(error) = claim.ack().await {
                tracing::warn!(%session_id, %error, "could not ack the finished session claim");
            }
            tracing::info!(%session_id, "session finished");
        }
        Err(SessionError::TakenOver) => {
            // The claim message belongs to the other worker's delivery now: leave it alone.
            metrics.sessions_taken_over.inc();
            tracing::warn!(%session_id, "another worker took this session over while this one was cut off or paused; stopped it without publishing");
        }
        Err(SessionError::Shutdown) => {
            // Another worker continues from the checkpoint right away.
            let _ = claim.ack_with(AckKind::Nak(None)).await;
            tracing::info!(%session_id, "session released at shutdown");
        }
        Err(error) => {
            tracing::warn!(%session_id, %error, "session interrupted; it will be redelivered and resumed from its checkpoint");
            let _ = claim
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

fn spawn_keep_alive(claim: Message, every: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(error) = claim.ack_with(AckKind::Progress).await {
                        tracing::debug!(%error, "progress ack failed");
                    }
                }
            }
        }
    });
    token
}

struct Session {
    ctx: ServiceContext,
    metrics: SttMetrics,
    settings: SessionSettings,
    open: SessionOpen,
    policy: Option<Policy<WhisperRecognizer>>,
    kv: jetstream::kv::Store,
    /// Revision of the session's checkpoint this worker last wrote: every write must follow
    /// it, so a worker whose claim another has taken over (fencing) cannot write, or publish.
    revision: u64,
    /// Next audio sample expected (gap and duplicate detection).
    expected_sample: u64,
    /// Recent chunks, to turn audio times into latencies and checkpoints into the stream
    /// sequence a successor reads from.
    arrivals: VecDeque<Arrival>,
    /// AUDIO stream sequence a worker resuming from this worker's next checkpoint reads from
    /// (0: the start); only grows.
    audio_from_seq: u64,
    /// Outputs of the checkpoint resumed from, published again before anything else.
    outbox: Vec<Output>,
    first_partial_sent: bool,
}

/// A chunk the session took in.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    /// Absolute sample after its last one.
    end: u64,
    /// When the edge received it (Unix ms).
    received_at_ms: u64,
    /// Its AUDIO stream sequence.
    seq: Option<u64>,
}

impl Session {
    async fn start(
        ctx: ServiceContext,
        transcriber: Arc<Transcriber>,
        metrics: SttMetrics,
        settings: SessionSettings,
        open: SessionOpen,
    ) -> Result<Self, SessionError> {
        let kv = ctx
            .js
            .get_key_value(ctx.namespace.bucket(buckets::STT_CHECKPOINTS))
            .await
            .map_err(nats)?;
        let entry = kv.entry(open.session_id.to_string()).await.map_err(nats)?;
        let revision = entry.as_ref().map_or(0, |e| e.revision);
        let stored = entry
            .filter(|e| e.operation == jetstream::kv::Operation::Put)
            .map(|e| e.value);
        let checkpoint: Option<Checkpoint> = stored
            .as_ref()
            .and_then(|bytes| codec::decode::<Checkpoint>(bytes).ok());
        let language = open
            .source_lang
            .as_deref()
            .and_then(voxbridge_shared::languages::by_flores)
            .map(|l| l.bcp47.split('-').next().unwrap_or(l.bcp47).to_string())
            .or_else(|| settings.default_language.clone());
        let inference = metrics.clone();
        let recognizer = WhisperRecognizer {
            transcriber,
            threads: settings.threads.clone(),
            language,
            beam_size: settings.beam_size,
            audio_ctx_margin: settings.audio_ctx_margin,
            quick: settings.quick,
            // Not a worker option: a cap on full recognitions can lose words (see the field).
            tokens_per_s: 0.0,
            on_run: Box::new(move |seconds, audio| {
                inference.inference_seconds.observe(seconds);
                if audio > 0.0 {
                    inference.realtime_factor.observe(seconds / audio);
                }
            }),
            detected: None,
        };
        let mut outbox = Vec::new();
        let checkpoint_was_read = checkpoint.is_some();
        let audio_from_seq = checkpoint
            .as_ref()
            .and_then(|cp| cp.audio_from_seq)
            .unwrap_or(0);
        let (policy, expected_sample) = match checkpoint {
            Some(cp) if cp.finished => (None, 0),
            Some(mut cp) => {
                outbox = std::mem::take(&mut cp.outbox);
                tracing::info!(session_id = %open.session_id, from_sample = cp.buffer_start_sample, finals = cp.next_final_index, "resuming session from its checkpoint");
                let start = cp.buffer_start_sample;
                (
                    Some(Policy::restore(
                        settings.policy,
                        recognizer,
                        open.session_id,
                        cp,
                    )),
                    start,
                )
            }
            None => (
                Some(Policy::new(settings.policy, recognizer, open.session_id)),
                0,
            ),
        };
        let mut session = Self {
            ctx,
            metrics,
            settings,
            open,
            policy,
            kv,
            revision,
            expected_sample,
            arrivals: VecDeque::new(),
            audio_from_seq,
            outbox,
            first_partial_sent: false,
        };
        // Take the session over: write the checkpoint back as read (outbox included) after the
        // revision read, so the worker that held it before cannot write after this point.
        if let Some(policy) = &session.policy {
            let bytes = match (stored, checkpoint_was_read) {
                (Some(bytes), true) => bytes,
                _ => codec::encode(&policy.checkpoint()).map_err(nats)?.into(),
            };
            session.write_checkpoint(bytes).await?;
        }
        Ok(session)
    }

    fn id(&self) -> SessionId {
        self.open.session_id
    }

    async fn run(
        mut self,
        shutdown: &CancellationToken,
        delivery: u64,
    ) -> Result<(), SessionError> {
        if self.policy.is_none() {
            tracing::info!(session_id = %self.id(), "session already finished; acknowledging the claim");
            return Ok(());
        }
        // Tells the session's clients a recogniser has it (they were told they wait for one).
        let claimed = TranscriptEvent::Claimed(SessionClaimed {
            v: 1,
            session_id: self.id(),
            worker: self.ctx.instance.clone(),
            resumed_from_ms: self.expected_sample * 1000 / u64::from(AUDIO_SAMPLE_RATE_HZ),
            delivery,
            emitted_at_ms: now_unix_ms(),
        });
        self.publish_transcript(&claimed, &format!("c-{}-{delivery}", self.id()))
            .await?;
        let stream = self
            .ctx
            .js
            .get_stream(self.ctx.namespace.stream(streams::AUDIO))
            .await
            .map_err(nats)?;
        // A resumed session reads on from the first message its checkpoint still needs: the
        // audio before it was done, and any bad message before it was reported.
        let deliver_policy = match self.audio_from_seq {
            0 => DeliverPolicy::All,
            start_sequence => DeliverPolicy::ByStartSequence { start_sequence },
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: self.ctx.namespace.audio(&self.id()),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let mut audio = consumer.messages().await.map_err(nats)?;
        let outbox = std::mem::take(&mut self.outbox);
        self.publish_outputs(outbox).await?;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Err(SessionError::Shutdown),
                next = tokio::time::timeout(self.settings.idle_timeout, audio.next()) => next,
            };
            let message = match next {
                Err(_) => return self.close(CloseReason::Idle).await,
                Ok(None) => return Err(SessionError::Nats("audio stream ended".into())),
                Ok(Some(Err(error))) => return Err(nats(error)),
                Ok(Some(Ok(message))) => message,
            };
            match codec::decode::<AudioEvent>(&message.payload) {
                Ok(AudioEvent::Chunk(chunk)) => {
                    let info = message.info().ok();
                    // The session's chunks stored behind this one (admission's backlog).
                    let waiting = info.as_ref().map_or(0, |i| i.pending);
                    let seq = info.map(|i| i.stream_sequence);
                    self.on_chunk(chunk, waiting, seq).await?
                }
                Ok(AudioEvent::Close(close)) => return self.close(close.reason).await,
                Err(error) => {
                    self.bad_audio("malformed_audio", &error.to_string(), &message)
                        .await?;
                }
            }
        }
    }

    /// Takes in `chunk`, the message at AUDIO stream sequence `seq`.
    async fn on_chunk(
        &mut self,
        chunk: AudioChunk,
        waiting: u64,
        seq: Option<u64>,
    ) -> Result<(), SessionError> {
        if chunk.session_id != self.id() {
            return self
                .error("malformed_audio", "chunk belongs to another session", seq)
                .await;
        }
        if chunk.sample_rate_hz != AUDIO_SAMPLE_RATE_HZ {
            let message = format!(
                "chunk {} is {} Hz; live audio must be {} Hz mono s16le",
                chunk.seq, chunk.sample_rate_hz, AUDIO_SAMPLE_RATE_HZ
            );
            return self.error("malformed_audio", &message, seq).await;
        }
        if !chunk.pcm.len().is_multiple_of(2) {
            let message = format!(
                "chunk {} has {} bytes; s16le audio needs an even number",
                chunk.seq,
                chunk.pcm.len()
            );
            return self.error("malformed_audio", &message, seq).await;
        }
        let mut samples = pcm_s16le_to_f32(&chunk.pcm);
        let start = chunk.offset_samples;
        let end = start + samples.len() as u64;
        if end <= self.expected_sample {
            return Ok(()); // already processed (replay from a checkpoint, or a duplicate)
        }
        if start < self.expected_sample {
            samples.drain(..(self.expected_sample - start) as usize);
        } else if start > self.expected_sample {
            let gap = start - self.expected_sample;
            if gap > MAX_GAP_SAMPLES {
                let message = format!(
                    "audio gap of {} ms before chunk {}; continuing from it",
                    gap / 16,
                    chunk.seq
                );
                self.error("audio_gap", &message, seq).await?;
            }
            // Fill the gap with silence so timestamps stay exact.
            let fill = gap.min(MAX_GAP_SAMPLES) as usize;
            let mut filled = vec![0.0; fill];
            filled.extend(samples);
            samples = filled;
            if gap > MAX_GAP_SAMPLES {
                self.expected_sample = start - MAX_GAP_SAMPLES;
            }
        }
        self.expected_sample = end;
        self.arrivals.push_back(Arrival {
            end,
            received_at_ms: chunk.received_at_ms,
            seq,
        });
        while self.arrivals.len() > 4096 {
            self.arrivals.pop_front();
        }
        let now_ms = now_unix_ms();
        let lag_ms = now_ms.saturating_sub(chunk.received_at_ms);
        self.metrics
            .audio_lag_seconds
            .observe(lag_ms as f64 / 1000.0);
        if self.open.realtime {
            self.settings.backlog.record(
                self.open.session_id,
                chunk.received_at_ms,
                now_ms,
                waiting,
            );
        }
        // A chunk that waited longer than a step: the steps take longer than the audio they
        // cover, and the worker is behind real time.
        let behind = lag_ms > self.settings.policy.step_ms;
        if behind
            && self.open.realtime
            && let Some(outputs) = self.policy.as_mut().and_then(|p| p.defer(&samples, lag_ms))
        {
            self.metrics
                .catch_up_audio_seconds
                .inc_by(samples.len() as f64 / SAMPLE_RATE as f64);
            return self.emit(outputs).await;
        }
        let outputs = self.with_policy(move |p| p.push(&samples)).await?;
        self.emit(outputs).await
    }

    /// Runs `f` on the policy on a blocking thread (whisper inference never runs on the async
    /// runtime).
    async fn with_policy<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Policy<WhisperRecognizer>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, SessionError> {
        let Some(mut policy) = self.policy.take() else {
            return Err(SessionError::Recognition("no policy".into()));
        };
        let (policy, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut policy);
            (policy, result)
        })
        .await
        .map_err(|e| SessionError::Recognition(e.to_string()))?;
        self.policy = Some(policy);
        result.map_err(SessionError::Recognition)
    }

    async fn close(mut self, reason: CloseReason) -> Result<(), SessionError> {
        let outputs = self.with_policy(|p| p.flush()).await?;
        if outputs.is_empty() {
            // Still this worker's session? (`session.ended` is published before it is stored.)
            if let Some(policy) = &self.policy {
                let cp = policy.checkpoint();
                self.store_checkpoint(cp).await?;
            }
        } else {
            self.emit(outputs).await?;
        }
        let (final_count, audio_ms) = self
            .policy
            .as_ref()
            .map(|p| (p.final_count(), p.audio_end() / 16))
            .unwrap_or_default();
        let ended = TranscriptEvent::Ended(SessionEnded {
            v: 1,
            session_id: self.id(),
            reason,
            final_count,
            audio_ms,
            emitted_at_ms: now_unix_ms(),
        });
        let msg_id = format!("e-{}", self.id());
        self.publish_transcript(&ended, &msg_id).await?;
        if let Some(policy) = &self.policy {
            let mut cp = policy.checkpoint();
            cp.finished = true;
            self.store_checkpoint(cp).await?;
        }
        Ok(())
    }

    /// Stores the checkpoint with `outputs` as its outbox, then publishes them.
    async fn emit(&mut self, outputs: Vec<Output>) -> Result<(), SessionError> {
        if outputs.is_empty() {
            return Ok(());
        }
        if let Some(policy) = &self.policy {
            let mut cp = policy.checkpoint();
            cp.outbox = outputs.clone();
            self.store_checkpoint(cp).await?;
        }
        self.publish_outputs(outputs).await
    }

    async fn publish_outputs(&mut self, outputs: Vec<Output>) -> Result<(), SessionError> {
        for output in outputs {
            match output {
                Output::Partial {
                    segment_id,
                    revision,
                    stable,
                    unstable,
                    start_ms,
                    end_ms,
                } => {
                    let event = TranscriptEvent::Partial(TranscriptPartial {
                        v: 1,
                        session_id: self.id(),
                        segment_id,
                        revision,
                        stable_text: stable,
                        unstable_text: unstable,
                        start_ms,
                        end_ms,
                        emitted_at_ms: now_unix_ms(),
                    });
                    self.publish_transcript(&event, &format!("p-{segment_id}-{revision}"))
                        .await?;
                    if !self.first_partial_sent {
                        self.first_partial_sent = true;
                        if let Some(at) = self.received_at(start_ms) {
                            self.metrics
                                .first_partial_latency_seconds
                                .observe(now_unix_ms().saturating_sub(at) as f64 / 1000.0);
                        }
                    }
                }
                Output::Final {
                    segment_id,
                    index,
                    text,
                    start_ms,
                    end_ms,
                    words,
                    language,
                } => {
                    // The session's language, else the one whisper detected for this sentence.
                    let lang = self.open.source_lang.clone().or_else(|| {
                        language
                            .as_deref()
                            .and_then(|l| voxbridge_shared::languages::resolve(l).ok())
                            .map(|l| l.flores.to_string())
                    });
                    let event = TranscriptEvent::Final(TranscriptFinal {
                        v: 1,
                        session_id: self.id(),
                        segment_id,
                        index,
                        text: text.clone(),
                        lang: lang.clone(),
                        start_ms,
                        end_ms,
                        words: words
                            .into_iter()
                            .map(|w| WordTiming {
                                word: w.text,
                                start_ms: w.start_ms,
                                end_ms: w.end_ms,
                                probability: w.probability,
                            })
                            .collect(),
                        emitted_at_ms: now_unix_ms(),
                    });
                    self.publish_transcript(&event, &format!("f-{}-{index}", self.id()))
                        .await?;
                    if let Some(at) = self.received_at(end_ms) {
                        self.metrics
                            .final_latency_seconds
                            .observe(now_unix_ms().saturating_sub(at) as f64 / 1000.0);
                    }
                    self.request_translations(segment_id, index, text, lang)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// One MT request per target language, answered on the session's translation subject.
    async fn request_translations(
        &self,
        segment_id: voxbridge_shared::SegmentId,
        index: u64,
        text: String,
        source: Option<String>,
    ) -> Result<(), SessionError> {
        // Neither given nor detected (a model that cannot detect): English, the models' default.
        let source = source.unwrap_or_else(|| "eng_Latn".to_string());
        for (t, target) in self.open.target_langs.iter().enumerate() {
            if *target == source {
                continue;
            }
            // A request id derived from (session, final, target): a takeover re-sends the same.
            let session = self.id().ulid();
            let random = (session.random()
                ^ (u128::from(index) << 8 | t as u128).wrapping_mul(0x2545_f491_4f6c_dd1d))
                & ((1u128 << 80) - 1);
            let request = MtRequest {
                v: 1,
                request_id: RequestId::from(ulid::Ulid::from_parts(session.timestamp_ms(), random)),
                texts: vec![text.clone()],
                source_lang: source.clone(),
                target_lang: target.clone(),
                reply_subject: self.ctx.namespace.translation(&self.id()),
                session_id: Some(self.id()),
                segment_id: Some(segment_id),
                deadline_ms: None,
                enqueued_at_ms: now_unix_ms(),
            };
            let payload = codec::encode(&request).map_err(nats)?;
            let msg_id = format!("mt-{}-{index}-{target}", self.id());
            self.publish(
                self.ctx.namespace.mt_request(target),
                payload.into(),
                &msg_id,
            )
            .await?;
        }
        Ok(())
    }

    async fn publish_transcript(
        &self,
        event: &TranscriptEvent,
        msg_id: &str,
    ) -> Result<(), SessionError> {
        let payload = codec::encode(event).map_err(nats)?;
        self.publish(
            self.ctx.namespace.transcript(&self.id()),
            payload.into(),
            msg_id,
        )
        .await
    }

    async fn publish(
        &self,
        subject: String,
        payload: Bytes,
        msg_id: &str,
    ) -> Result<(), SessionError> {
        voxbridge_shared::nats::publish_with_id(&self.ctx.js, subject, msg_id, payload)
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
        Ok(())
    }

    /// Stores `checkpoint` with the stream sequence its audio is read from on a resume.
    async fn store_checkpoint(&mut self, mut checkpoint: Checkpoint) -> Result<(), SessionError> {
        let buffer_start = checkpoint.buffer_start_sample;
        if let Some(seq) = self
            .arrivals
            .iter()
            .take_while(|a| a.end <= buffer_start)
            .filter_map(|a| a.seq)
            .last()
        {
            self.audio_from_seq = self.audio_from_seq.max(seq + 1);
        }
        checkpoint.audio_from_seq = Some(self.audio_from_seq).filter(|&s| s > 0);
        let bytes = codec::encode(&checkpoint).map_err(nats)?;
        self.write_checkpoint(bytes.into()).await
    }

    /// Writes the session's checkpoint if it is still at the revision this worker wrote (or
    /// read, at the start); [`SessionError::TakenOver`] if another worker wrote since.
    async fn write_checkpoint(&mut self, bytes: Bytes) -> Result<(), SessionError> {
        use jetstream::kv::UpdateErrorKind;
        match self
            .kv
            .update(self.id().to_string(), bytes, self.revision)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                Err(SessionError::TakenOver)
            }
            Err(error) => Err(nats(error)),
        }
    }

    /// When the audio at `ms` reached the edge.
    fn received_at(&self, ms: u64) -> Option<u64> {
        let sample = ms * 16;
        self.arrivals
            .iter()
            .find(|a| a.end >= sample)
            .map(|a| a.received_at_ms)
    }

    /// Tells the session's clients about bad input (the message at AUDIO stream sequence
    /// `seq`); the session goes on. The event's id is the message's, so a worker that reads the
    /// message again (a successor, or a fenced worker before it notices) repeats nothing
    /// within the duplicate window.
    async fn error(
        &mut self,
        code: &str,
        message: &str,
        seq: Option<u64>,
    ) -> Result<(), SessionError> {
        tracing::warn!(session_id = %self.id(), code, message, "bad audio");
        let event = TranscriptEvent::Error(ErrorEvent {
            v: 1,
            session_id: Some(self.id()),
            job_id: None,
            error: ErrorInfo {
                code: code.to_string(),
                message: message.to_string(),
            },
            component: "stt".into(),
            emitted_at_ms: now_unix_ms(),
        });
        let msg_id = match seq {
            Some(seq) => format!("x-{}-{seq}-{code}", self.id()),
            None => format!("x-{}-{}", self.id(), ulid::Ulid::new()),
        };
        self.publish_transcript(&event, &msg_id).await
    }

    /// An undecodable payload on the audio subject: an error event for the session's clients,
    /// a copy in the DLQ for operators, and the session continues.
    async fn bad_audio(
        &mut self,
        code: &'static str,
        reason: &str,
        message: &jetstream::Message,
    ) -> Result<(), SessionError> {
        self.ctx
            .metrics
            .malformed_messages
            .get_or_create(&voxbridge_shared::metrics::StreamLabel {
                stream: streams::AUDIO,
            })
            .inc();
        let record = voxbridge_shared::messages::DlqRecord {
            v: 1,
            original_subject: message.subject.to_string(),
            stream: message.info().ok().map(|i| i.stream.to_string()),
            stream_sequence: message.info().ok().map(|i| i.stream_sequence),
            consumer: None,
            reason_code: "malformed_payload".into(),
            reason: reason.chars().take(1024).collect(),
            delivery_count: 1,
            payload: message.payload.clone(),
            component: "stt".into(),
            dead_lettered_at_ms: now_unix_ms(),
        };
        let msg_id = format!("dlq-audio-{}", record.stream_sequence.unwrap_or_default());
        if let Err(error) = self
            .ctx
            .dead_letters
            .publish(streams::AUDIO, &record, &msg_id)
            .await
        {
            tracing::warn!(%error, "could not copy malformed audio to the DLQ");
        }
        self.error(
            code,
            &format!("undecodable audio message: {reason}"),
            record.stream_sequence,
        )
        .await
    }
}
