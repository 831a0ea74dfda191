//! Batch jobs: submission with de-duplication, status in the `vb-jobs` KV bucket, input and
//! result files in the `vb-files` Object Store, progress events on core NATS.
//!
//! Used by the edge (`POST /v1/jobs`), `voxctl` and the workers that run jobs, so every party
//! reads and writes the same records:
//!
//! | KV key | value |
//! |---|---|
//! | `job.<job id>` | [`JobStatus`] (MessagePack) — the latest state, progress and results |
//! | `hash.<content hash>` | the job id (UTF-8) — the de-duplication index |
//!
//! Object Store keys: `input/<upload id>/<safe file name>` (streamed in before the job exists)
//! and `result/<job id>/<file name>`.
//!
//! **De-duplication.** The content hash is the SHA-256 of the options (kind, source, sorted
//! targets, output format) and the file's bytes. Submitting the same file with the same options
//! again returns the existing job (whatever its state) unless that job failed, in which case a
//! new job is created: a failure may have been transient, and a poison file fails again quickly.
//! The index entry is created atomically (`KV create`), so two concurrent submissions of one
//! file get one job. Records expire with the bucket's max age (the job retention).

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::ids::JobId;
use crate::languages;
use crate::messages::{
    ErrorInfo, JobKind, JobProgress, JobSpec, JobState, JobStatus, SubtitleFormat, UnixMs,
    now_unix_ms,
};
use crate::subjects::{Namespace, buckets};

/// Default largest input file accepted at submission (audio included).
pub const DEFAULT_MAX_JOB_BYTES: usize = 256 * 1024 * 1024;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {0} not found (unknown, or expired)")]
    NotFound(JobId),
    #[error("the file is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("job storage unavailable: {0}")]
    Storage(String),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl JobError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::NotFound(_) => "job_not_found",
            JobError::TooLarge { .. } => "file_too_large",
            JobError::Invalid(_) => "invalid_request",
            JobError::Storage(_) => "unavailable",
            JobError::Codec(_) => "malformed_payload",
        }
    }
}

fn storage(e: impl std::fmt::Display) -> JobError {
    JobError::Storage(e.to_string())
}

/// What a client asks for, apart from the file.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// `None`: an audio file (WAV, MP3, FLAC, Ogg, M4A, AAC: [`looks_like_audio`]) is an audio
    /// job, anything else a subtitle job.
    pub kind: Option<JobKind>,
    /// The file's name as the user gave it (only its last path component is kept).
    pub file_name: String,
    /// FLORES-200 source language; `None` = English for subtitles, detected for audio.
    pub source_lang: Option<String>,
    /// FLORES-200 targets (validated by the caller), in the order given.
    pub target_langs: Vec<String>,
    pub output_format: Option<SubtitleFormat>,
}

/// A whole submission in memory (voxctl, tests).
#[derive(Debug, Clone)]
pub struct Submission {
    pub kind: JobKind,
    pub file_name: String,
    pub bytes: Bytes,
    pub source_lang: Option<String>,
    pub target_langs: Vec<String>,
    pub output_format: Option<SubtitleFormat>,
}

/// The answer to a submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub status: JobStatus,
    /// `true` when an existing job with the same file and options was returned.
    pub deduplicated: bool,
}

/// The last path component of a user-supplied name, with characters that are unsafe in
/// Object Store keys, subjects or download headers replaced; never empty.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    let cleaned = cleaned.trim_matches('.').to_string();
    if cleaned.is_empty() {
        "file".to_string()
    } else {
        cleaned
    }
}

/// The file name without its extension (`film.en.srt` → `film.en`).
pub fn file_stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// The de-duplication key: SHA-256 over the options (kind, source, sorted targets, output
/// format) and the SHA-256 of the file's bytes (so the file can be hashed while it streams in,
/// before the options that follow it in a form are known).
pub fn content_hash(options: &JobOptions, kind: JobKind, file_digest: &[u8]) -> String {
    let mut targets = options.target_langs.clone();
    targets.sort();
    targets.dedup();
    let json = serde_json::json!({
        "v": 2,
        "kind": kind,
        "source": options.source_lang,
        "targets": targets,
        "format": options.output_format,
    });
    let mut hasher = Sha256::new();
    hasher.update(json.to_string().as_bytes());
    hasher.update([0u8]);
    hasher.update(file_digest);
    hex::encode(hasher.finalize())
}

/// Whether a file starts like an audio file (WAV, MP3, FLAC, Ogg, MP4/M4A, ADTS AAC) by its
/// magic bytes ([`crate::audio::AudioFormat::sniff`]): a job of no stated kind is then audio.
pub fn looks_like_audio(head: &[u8]) -> bool {
    crate::audio::looks_like_audio(head)
}

/// Reads through to `inner`, hashing, counting and keeping the first bytes; fails the read
/// once more than `limit` bytes have come.
struct Measured<R> {
    inner: R,
    hasher: Sha256,
    size: usize,
    limit: usize,
    head: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Measured<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        this.size += new.len();
        if this.size > this.limit {
            return std::task::Poll::Ready(Err(std::io::Error::other("file over the size limit")));
        }
        let wanted = crate::audio::AudioFormat::HEAD_LEN
            .saturating_sub(this.head.len())
            .min(new.len());
        this.head.extend_from_slice(&new[..wanted]);
        this.hasher.update(new);
        std::task::Poll::Ready(Ok(()))
    }
}

/// A file stored by [`JobStore::upload`], not yet a job.
#[derive(Debug)]
pub struct Upload {
    object: String,
    file_name: String,
    /// Bytes stored.
    pub size: usize,
    digest: Vec<u8>,
    head: Vec<u8>,
}

impl Upload {
    /// Whether the file starts like an audio file ([`looks_like_audio`]).
    pub fn is_audio(&self) -> bool {
        looks_like_audio(&self.head)
    }
}

/// The outcome of claiming a content hash.
enum Claim {
    New(JobId),
    Existing(Box<JobStatus>),
}

/// Handle on the job records; cheap to clone.
#[derive(Clone)]
pub struct JobStore {
    js: jetstream::Context,
    client: async_nats::Client,
    namespace: Namespace,
    kv: kv::Store,
    files: object_store::ObjectStore,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl JobStore {
    /// Opens the bucket and object store (created by `ensure_topology`).
    pub async fn open(
        client: async_nats::Client,
        js: jetstream::Context,
        namespace: Namespace,
    ) -> Result<Self, JobError> {
        let kv = js
            .get_key_value(namespace.bucket(buckets::JOBS))
            .await
            .map_err(storage)?;
        let files = js
            .get_object_store(namespace.bucket(buckets::FILES))
            .await
            .map_err(storage)?;
        Ok(Self {
            js,
            client,
            namespace,
            kv,
            files,
        })
    }

    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Stores the file, records the job and queues it; or returns the existing job for the same
    /// file and options.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, JobError> {
        let options = JobOptions {
            kind: Some(submission.kind),
            file_name: submission.file_name,
            source_lang: submission.source_lang,
            target_langs: submission.target_langs,
            output_format: submission.output_format,
        };
        self.submit_stream(options, submission.bytes.as_ref(), usize::MAX)
            .await
    }

    /// Like [`JobStore::submit`], streaming the file from `reader` straight into the Object
    /// Store (hashing it on the way), so a large upload never sits in memory. More than `limit`
    /// bytes fail with [`JobError::TooLarge`] and leave nothing behind.
    pub async fn submit_stream<R: tokio::io::AsyncRead + Unpin>(
        &self,
        options: JobOptions,
        reader: R,
        limit: usize,
    ) -> Result<Submitted, JobError> {
        let upload = self.upload(&options.file_name, reader, limit).await?;
        self.submit_upload(options, upload).await
    }

    /// Stores a file under a fresh key, hashing it; the first step of a submission whose
    /// options may arrive after the file (a multipart form). Follow with
    /// [`JobStore::submit_upload`] or [`JobStore::discard`].
    pub async fn upload<R: tokio::io::AsyncRead + Unpin>(
        &self,
        file_name: &str,
        reader: R,
        limit: usize,
    ) -> Result<Upload, JobError> {
        let file_name = safe_file_name(file_name);
        let object = format!("input/{}/{file_name}", ulid::Ulid::new());
        let mut measured = Measured {
            inner: reader,
            hasher: Sha256::new(),
            size: 0,
            limit,
            head: Vec::with_capacity(crate::audio::AudioFormat::HEAD_LEN),
        };
        let stored = self.files.put(object.as_str(), &mut measured).await;
        if measured.size > limit {
            let _ = self.files.delete(object.as_str()).await;
            return Err(JobError::TooLarge {
                size: measured.size,
                limit,
            });
        }
        if let Err(e) = stored {
            let _ = self.files.delete(object.as_str()).await;
            return Err(storage(e));
        }
        Ok(Upload {
            object,
            file_name,
            size: measured.size,
            digest: measured.hasher.finalize().to_vec(),
            head: measured.head,
        })
    }

    /// Drops an uploaded file that will not become a job.
    pub async fn discard(&self, upload: Upload) {
        let _ = self.files.delete(upload.object.as_str()).await;
    }

    /// Makes a job of an uploaded file, or returns the existing job for the same file and
    /// options (the upload is then discarded).
    pub async fn submit_upload(
        &self,
        mut options: JobOptions,
        upload: Upload,
    ) -> Result<Submitted, JobError> {
        if upload.size == 0 {
            self.discard(upload).await;
            return Err(JobError::Invalid("the file is empty".into()));
        }
        let kind = options.kind.unwrap_or(if looks_like_audio(&upload.head) {
            JobKind::Audio
        } else {
            JobKind::Subtitles
        });
        if kind == JobKind::Subtitles && options.target_langs.is_empty() {
            self.discard(upload).await;
            return Err(JobError::Invalid(
                "a subtitle job needs at least one target language".into(),
            ));
        }
        options.kind = Some(kind);
        let hash = content_hash(&options, kind, &upload.digest);
        match self.claim(&hash).await {
            Ok(Claim::Existing(status)) => {
                self.discard(upload).await;
                Ok(Submitted {
                    status: *status,
                    deduplicated: true,
                })
            }
            Ok(Claim::New(job_id)) => {
                self.create(job_id, kind, upload.object, upload.file_name, options, hash)
                    .await
            }
            Err(e) => {
                self.discard(upload).await;
                Err(e)
            }
        }
    }

    /// Claims the content hash for a new job id, or finds the live job that has it.
    async fn claim(&self, hash: &str) -> Result<Claim, JobError> {
        let job_id = JobId::new();
        let index_key = format!("hash.{hash}");
        loop {
            match self
                .kv
                .create(&index_key, Bytes::from(job_id.to_string()))
                .await
            {
                Ok(_) => return Ok(Claim::New(job_id)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let Some(entry) = self.kv.entry(&index_key).await.map_err(storage)? else {
                        continue; // expired or deleted in between: try again
                    };
                    let existing: Option<JobId> = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|s| s.parse().ok());
                    let status = match existing {
                        Some(id) => self.status(&id).await?,
                        None => None,
                    };
                    match status {
                        Some(status) if status.state != JobState::Failed => {
                            return Ok(Claim::Existing(Box::new(status)));
                        }
                        _ => {
                            // Failed, unreadable or expired: replace the index entry, guarded
                            // by its revision so only one retry wins.
                            if self
                                .kv
                                .update(&index_key, Bytes::from(job_id.to_string()), entry.revision)
                                .await
                                .is_ok()
                            {
                                return Ok(Claim::New(job_id));
                            }
                        }
                    }
                }
                Err(e) => return Err(storage(e)),
            }
        }
    }

    /// Records and queues a new job whose file is stored.
    async fn create(
        &self,
        job_id: JobId,
        kind: JobKind,
        input_object: String,
        file_name: String,
        options: JobOptions,
        hash: String,
    ) -> Result<Submitted, JobError> {
        let now = now_unix_ms();
        let spec = JobSpec {
            v: 1,
            job_id,
            kind,
            input_object,
            file_name: file_name.clone(),
            source_lang: options.source_lang.clone(),
            target_langs: options.target_langs.clone(),
            output_format: options.output_format,
            content_hash: hash,
            submitted_at_ms: now,
        };
        let status = JobStatus {
            v: 1,
            job_id,
            state: JobState::Queued,
            progress: 0.0,
            message: Some("queued".into()),
            error: None,
            result_objects: vec![],
            updated_at_ms: now,
            kind: Some(kind),
            file_name: Some(file_name),
            source_lang: options.source_lang,
            target_langs: options.target_langs,
            submitted_at_ms: Some(now),
            results: vec![],
            attempts: 0,
        };
        self.put_status(&status).await?;
        if let Err(error) = self.enqueue(&spec, "").await {
            // Not queued: mark it failed so a resubmission makes a new job instead of finding
            // this one forever queued.
            let _ = self
                .put_status(&failed(status, "unavailable", &error.to_string()))
                .await;
            return Err(error);
        }
        Ok(Submitted {
            status,
            deduplicated: false,
        })
    }

    /// Publishes a job message on `vb.job.<kind>` (message id = job id + `stage`, so a retried
    /// publish is stored once).
    pub async fn enqueue(&self, spec: &JobSpec, stage: &str) -> Result<(), JobError> {
        let payload = Bytes::from(codec::encode(spec)?);
        let msg_id = format!("job-{}{stage}", spec.job_id);
        crate::nats::publish_with_id(&self.js, self.namespace.job(spec.kind), &msg_id, payload)
            .await
            .map_err(storage)?
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// The job's status, if it exists.
    pub async fn status(&self, id: &JobId) -> Result<Option<JobStatus>, JobError> {
        match self.kv.get(format!("job.{id}")).await.map_err(storage)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes the job's status (last writer wins; only the job's current runner writes).
    pub async fn put_status(&self, status: &JobStatus) -> Result<(), JobError> {
        let payload = Bytes::from(codec::encode(status)?);
        self.kv
            .put(format!("job.{}", status.job_id), payload)
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// Every job still kept, newest first.
    pub async fn list(&self) -> Result<Vec<JobStatus>, JobError> {
        let mut keys = self.kv.keys().await.map_err(storage)?;
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(storage)?;
            if let Some(id) = key
                .strip_prefix("job.")
                .and_then(|s| s.parse::<JobId>().ok())
            {
                ids.push(id);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(status) = self.status(&id).await? {
                out.push(status);
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.job_id));
        Ok(out)
    }

    /// Watches the job's status record: yields each new version.
    pub async fn watch(
        &self,
        id: &JobId,
    ) -> Result<impl futures::Stream<Item = JobStatus> + use<>, JobError> {
        let watch = self.kv.watch(format!("job.{id}")).await.map_err(storage)?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry.ok()?;
            codec::decode::<JobStatus>(&entry.value).ok()
        }))
    }

    /// Stores a file.
    pub async fn put_file(&self, key: &str, bytes: &[u8]) -> Result<(), JobError> {
        let mut reader = bytes;
        self.files.put(key, &mut reader).await.map_err(storage)?;
        Ok(())
    }

    /// Reads a file; `Ok(None)` when it does not exist (expired).
    pub async fn get_file(&self, key: &str, limit: usize) -> Result<Option<Bytes>, JobError> {
        let mut object = match self.files.get(key).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let size = object.info().size;
        if size > limit {
            return Err(JobError::TooLarge { size, limit });
        }
        let mut buf = Vec::with_capacity(size);
        object.read_to_end(&mut buf).await.map_err(storage)?;
        Ok(Some(Bytes::from(buf)))
    }

    /// Publishes a progress event (core NATS, best effort).
    pub async fn progress(&self, id: &JobId, done: u64, total: u64, stage: &str) {
        let event = JobProgress {
            v: 1,
            job_id: *id,
            done,
            total,
            stage: stage.to_string(),
            emitted_at_ms: now_unix_ms(),
        };
        if let Ok(payload) = codec::encode(&event) {
            let _ = self
                .client
                .publish(self.namespace.job_progress(id), payload.into())
                .await;
        }
    }

    /// Subscribes to a job's progress events.
    pub async fn subscribe_progress(
        &self,
        id: &JobId,
    ) -> Result<impl futures::Stream<Item = JobProgress> + use<>, JobError> {
        let sub = self
            .client
            .subscribe(self.namespace.job_progress(id))
            .await
            .map_err(storage)?;
        Ok(sub.filter_map(|m| async move { codec::decode::<JobProgress>(&m.payload).ok() }))
    }

    /// Waits until the job succeeds or fails (or `timeout` passes).
    pub async fn wait(&self, id: &JobId, timeout: Duration) -> Result<JobStatus, JobError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watch = Box::pin(self.watch(id).await?);
        loop {
            if let Some(status) = self.status(id).await?
                && matches!(status.state, JobState::Succeeded | JobState::Failed)
            {
                return Ok(status);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return self.status(id).await?.ok_or(JobError::NotFound(*id));
                }
                next = watch.next() => match next {
                    Some(status) if matches!(status.state, JobState::Succeeded | JobState::Failed) => return Ok(status),
                    Some(_) => {}
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                },
                // A missed watch update costs at most this.
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

/// Marks a status as failed with a code.
pub fn failed(mut status: JobStatus, code: &str, message: &str) -> JobStatus {
    status.state = JobState::Failed;
    status.error = Some(ErrorInfo {
        code: code.to_string(),
        message: message.to_string(),
    });
    status.message = Some(format!("failed: {message}"));
    status.updated_at_ms = now_unix_ms();
    status
}

/// A fresh status for a job spec (when a worker finds no record, e.g. a job queued by hand).
pub fn status_for(spec: &JobSpec, state: JobState, at: UnixMs) -> JobStatus {
    JobStatus {
        v: 1,
        job_id: spec.job_id,
        state,
        progress: 0.0,
        message: None,
        error: None,
        result_objects: vec![],
        updated_at_ms: at,
        kind: Some(spec.kind),
        file_name: Some(spec.file_name.clone()),
        source_lang: spec.source_lang.clone(),
        target_langs: spec.target_langs.clone(),
        submitted_at_ms: Some(spec.submitted_at_ms),
        results: vec![],
        attempts: 0,
    }
}

/// A job as the REST API and `voxctl --json` show it (languages as short codes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub state: JobState,
    pub progress: f32,
    pub message: Option<String>,
    pub error: Option<ErrorInfo>,
    pub kind: Option<JobKind>,
    pub file_name: Option<String>,
    pub source: Option<String>,
    pub targets: Vec<String>,
    pub submitted_at_ms: Option<u64>,
    pub updated_at_ms: u64,
    pub attempts: u32,
    pub results: Vec<ResultView>,
    /// Set on a submission answered with an existing job.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

/// One result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultView {
    pub lang: String,
    pub transcript: bool,
    pub file_name: String,
    pub format: SubtitleFormat,
    pub cues: u64,
    pub overlong_cues: u64,
    pub url: String,
}

/// The short (BCP-47) code of a FLORES-200 code, or the code itself.
pub fn short_code(flores: &str) -> String {
    languages::by_flores(flores)
        .map(|l| l.bcp47.to_string())
        .unwrap_or_else(|| flores.to_string())
}

impl JobView {
    /// The view of a status record; `deduplicated` marks a submission answered with it.
    pub fn from_status(status: &JobStatus, deduplicated: bool) -> Self {
        let id = status.job_id.to_string();
        Self {
            state: status.state,
            progress: status.progress,
            message: status.message.clone(),
            error: status.error.clone(),
            kind: status.kind,
            file_name: status.file_name.clone(),
            source: status.source_lang.as_deref().map(short_code),
            targets: status.target_langs.iter().map(|t| short_code(t)).collect(),
            submitted_at_ms: status.submitted_at_ms,
            updated_at_ms: status.updated_at_ms,
            attempts: status.attempts,
            results: status
                .results
                .iter()
                .map(|r| ResultView {
                    lang: short_code(&r.lang),
                    transcript: r.transcript,
                    file_name: r.file_name.clone(),
                    format: r.format,
                    cues: r.cues,
                    overlong_cues: r.overlong_cues,
                    url: format!("/v1/jobs/{id}/result?lang={}", short_code(&r.lang)),
                })
                .collect(),
            deduplicated,
            id,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The lifecycle of one job message on a worker, shared by the subtitle and audio runners.

/// Why a job run did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Will never succeed: fail the job and dead-letter it at once.
    Poison { code: &'static str, message: String },
    /// May succeed later: retry with backoff (until `max_deliver`).
    Transient(String),
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        match e {
            JobError::TooLarge { .. } => Failure::Poison {
                code: "file_too_large",
                message: e.to_string(),
            },
            other => Failure::Transient(other.to_string()),
        }
    }
}

/// Why [`JobStore::start_run`] did not start a run (the message is already dealt with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Undecodable: dead-lettered.
    Malformed,
    /// The job store could not be read: released for a later attempt.
    Unavailable,
    /// The job already succeeded or failed (a redelivery after a lost ack): acknowledged.
    Finished,
}

/// A job message a worker is running: its spec and status, its claim kept alive with progress
/// acks until the run is settled.
#[derive(Debug)]
pub struct JobRun {
    pub spec: JobSpec,
    pub status: JobStatus,
    /// Deliveries of the message so far (1 on the first attempt).
    pub delivered: u64,
    message: std::sync::Arc<async_nats::jetstream::Message>,
    keepalive: tokio::task::JoinHandle<()>,
}

impl JobStore {
    /// Takes a job message: undecodable → DLQ; store unavailable → retried later; already
    /// succeeded or failed (a redelivery after a lost ack) → acked without work. Otherwise the
    /// status turns `running` with `note` and the claim is kept alive every `ack_wait / 3`.
    pub async fn start_run(
        &self,
        dead_letters: &crate::dlq::DeadLetters,
        message: async_nats::jetstream::Message,
        ack_wait: Duration,
        note: &str,
    ) -> Result<JobRun, Skipped> {
        use async_nats::jetstream::AckKind;
        let spec = match codec::decode::<JobSpec>(&message.payload) {
            Ok(spec) => spec,
            Err(error) => {
                if let Err(e) = dead_letters
                    .malformed(&message, crate::subjects::streams::JOBS, &error)
                    .await
                {
                    tracing::error!(%e, "could not dead-letter a malformed job");
                }
                return Err(Skipped::Malformed);
            }
        };
        let delivered = message.info().map(|i| i.delivered as u64).unwrap_or(1);
        let mut status = match self.status(&spec.job_id).await {
            Ok(Some(status)) => status,
            Ok(None) => status_for(&spec, JobState::Queued, now_unix_ms()),
            Err(error) => {
                tracing::warn!(%error, job_id = %spec.job_id, "job store unavailable; retrying the job later");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
                return Err(Skipped::Unavailable);
            }
        };
        if matches!(status.state, JobState::Succeeded | JobState::Failed) {
            tracing::info!(job_id = %spec.job_id, state = ?status.state, "job already finished; acknowledging the redelivery");
            let _ = message.double_ack().await;
            return Err(Skipped::Finished);
        }
        let message = std::sync::Arc::new(message);
        let keepalive = {
            let message = message.clone();
            let every = (ack_wait / 3).max(Duration::from_millis(500));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if message.ack_with(AckKind::Progress).await.is_err() {
                        tracing::warn!("could not extend a job's claim");
                    }
                }
            })
        };
        status.state = JobState::Running;
        status.attempts = delivered as u32;
        status.error = None;
        status.message = Some(note.to_string());
        status.updated_at_ms = now_unix_ms();
        let _ = self.put_status(&status).await;
        tracing::info!(job_id = %spec.job_id, file = spec.file_name, attempt = delivered, kind = ?spec.kind, "job started");
        Ok(JobRun {
            spec,
            status,
            delivered,
            message,
            keepalive,
        })
    }
}

impl JobRun {
    /// Stores the run's status as it is now (e.g. with results).
    pub async fn store_status(&mut self, store: &JobStore) -> Result<(), JobError> {
        self.status.updated_at_ms = now_unix_ms();
        store.put_status(&self.status).await
    }

    /// Stores the status, then acknowledges the message: the run is done. If the status cannot
    /// be stored the message is released to run again. Returns the outcome label.
    pub async fn complete(mut self, store: &JobStore) -> &'static str {
        match self.store_status(store).await {
            Ok(()) => self.ack().await,
            Err(error) => {
                tracing::warn!(%error, "could not record a finished job; it will run again");
                self.release(Duration::from_secs(5)).await;
                "retried"
            }
        }
    }

    /// Acknowledges the message (after the caller stored what must survive).
    pub async fn ack(self) -> &'static str {
        self.keepalive.abort();
        let _ = self.message.double_ack().await;
        "succeeded"
    }

    /// Gives the message back for another attempt after `delay`.
    pub async fn release(self, delay: Duration) {
        self.keepalive.abort();
        let _ = self
            .message
            .ack_with(async_nats::jetstream::AckKind::Nak(Some(delay)))
            .await;
    }

    /// Settles a failed run: poison (or a transient failure on the last allowed delivery) →
    /// failed status with its code, DLQ; otherwise the status says it retries and the message
    /// is released with backoff (at once when shutting down). Returns the outcome label.
    pub async fn fail(
        mut self,
        store: &JobStore,
        dead_letters: &crate::dlq::DeadLetters,
        failure: Failure,
        max_deliver: i64,
        shutting_down: bool,
    ) -> &'static str {
        self.keepalive.abort();
        let job_id = self.spec.job_id;
        let (code, why, reason) = match failure {
            Failure::Poison { code, message } => (code, message, "poison_input"),
            Failure::Transient(why) if self.delivered as i64 >= max_deliver => (
                "retries_exhausted",
                format!("gave up after {} attempts: {why}", self.delivered),
                "max_deliveries",
            ),
            Failure::Transient(why) => {
                tracing::warn!(%job_id, reason = why, attempt = self.delivered, "job interrupted; it will be retried");
                self.status.message = Some(format!("retrying: {why}"));
                let _ = self.store_status(store).await;
                let delay = if shutting_down {
                    Duration::ZERO
                } else {
                    Duration::from_secs((2u64 << self.delivered.min(5)).min(60))
                };
                self.release(delay).await;
                return "retried";
            }
        };
        tracing::warn!(%job_id, code, reason = why, "job failed");
        let _ = store.put_status(&failed(self.status, code, &why)).await;
        if let Err(e) = dead_letters
            .dead_letter(
                &self.message,
                crate::subjects::streams::JOBS,
                reason,
                &format!("{code}: {why}"),
            )
            .await
        {
            tracing::error!(%e, "could not dead-letter a failed job");
        }
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(targets: &[&str]) -> JobOptions {
        JobOptions {
            kind: None,
            file_name: "film.srt".into(),
            source_lang: Some("eng_Latn".into()),
            target_langs: targets.iter().map(|t| t.to_string()).collect(),
            output_format: None,
        }
    }

    #[test]
    fn the_hash_covers_content_and_options_but_not_target_order() {
        let sub = JobKind::Subtitles;
        let a = content_hash(&options(&["vie_Latn", "fra_Latn"]), sub, b"1");
        assert_eq!(
            a,
            content_hash(&options(&["fra_Latn", "vie_Latn"]), sub, b"1")
        );
        assert_ne!(
            a,
            content_hash(&options(&["vie_Latn", "fra_Latn"]), sub, b"2")
        );
        assert_ne!(a, content_hash(&options(&["vie_Latn"]), sub, b"1"));
        assert_ne!(
            a,
            content_hash(&options(&["vie_Latn", "fra_Latn"]), JobKind::Audio, b"1")
        );
        let mut vtt = options(&["vie_Latn", "fra_Latn"]);
        vtt.output_format = Some(SubtitleFormat::Vtt);
        assert_ne!(a, content_hash(&vtt, sub, b"1"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn audio_files_are_recognised_by_their_header() {
        assert!(looks_like_audio(b"RIFF\x24\x00\x00\x00WAVEfmt "));
        assert!(looks_like_audio(b"ID3\x04\x00\x00\x00\x00\x00\x0a"));
        assert!(looks_like_audio(b"fLaC\x00\x00\x00\x22"));
        assert!(looks_like_audio(b"OggS\x00\x02\x00\x00"));
        assert!(looks_like_audio(b"\x00\x00\x00\x1cftypM4A "));
        assert!(!looks_like_audio(b"1\n00:00:01,000 --> 00:00:02,000\n"));
        assert!(!looks_like_audio(b"WEBVTT\n\n00:01.000 --> 00:02.000\n"));
        assert!(!looks_like_audio(b"RIFF"));
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\films\\My Film.srt"), "My_Film.srt");
        assert_eq!(safe_file_name(""), "file");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name("Phim hay.vi.vtt"), "Phim_hay.vi.vtt");
        assert_eq!(file_stem("film.en.srt"), "film.en");
        assert_eq!(file_stem(".hidden"), ".hidden");
    }
}
