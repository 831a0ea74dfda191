//! Every message that crosses NATS, one Rust type per wire type.
//!
//! Rules (see `docs/ARCHITECTURE.md`, "Wire format"):
//! - Each type carries a schema version `v` (its `VERSION` constant). Changes within a version are
//!   additive only: new fields are `Option` or `#[serde(default)]`, so an older reader ignores them
//!   and a newer reader accepts older payloads. A breaking change gets a new version number.
//! - Encoding is MessagePack with named fields, done only by [`crate::codec`].
//! - Units are in field names (`_ms`, `_samples`, `_hz`). Audio bytes are `serde_bytes`, so they
//!   encode as a MessagePack binary, not as an array of integers.
//! - Subjects that carry more than one type (`vb.audio.<session>`, `vb.transcript.<session>`)
//!   carry an internally tagged enum whose `type` field names the variant.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::{JobId, RequestId, SegmentId, SessionId};

/// Audio format of every live chunk: 16 kHz, mono, signed 16-bit little-endian PCM.
pub const AUDIO_SAMPLE_RATE_HZ: u32 = 16_000;
/// Bytes per sample of the wire audio format.
pub const AUDIO_BYTES_PER_SAMPLE: usize = 2;

/// Unix time in milliseconds, the one clock type on the wire.
pub type UnixMs = u64;

/// The current wall clock as [`UnixMs`].
pub fn now_unix_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Implemented by every top-level wire type: its schema version and a short stable name used in
/// logs, metrics labels and the `Vb-Type` header.
pub trait WireMessage: Serialize + for<'de> Deserialize<'de> {
    /// Schema version written into `v`.
    const VERSION: u16;
    /// Stable type name, e.g. `"audio.chunk"`.
    const TYPE: &'static str;
    /// The schema version this value was written with (its `v` field).
    fn schema_version(&self) -> u16;
}

macro_rules! wire {
    ($ty:ty, $version:literal, $name:literal) => {
        impl WireMessage for $ty {
            const VERSION: u16 = $version;
            const TYPE: &'static str = $name;
            fn schema_version(&self) -> u16 {
                self.v
            }
        }
    };
}

macro_rules! wire_enum {
    ($ty:ident, $version:literal, $name:literal, $($variant:ident),+) => {
        impl WireMessage for $ty {
            const VERSION: u16 = $version;
            const TYPE: &'static str = $name;
            fn schema_version(&self) -> u16 {
                match self {
                    $($ty::$variant(inner) => inner.v,)+
                }
            }
        }
    };
}

fn v1() -> u16 {
    1
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Published once on `vb.session.open` when a live session starts. The SESSIONS work queue
/// delivers it to exactly one STT worker, which keeps it un-acked (with progress acks) while the
/// session lives, so a dead worker's session is redelivered to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionOpen {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    /// Spoken language as a FLORES-200 code, or `None` to detect it.
    pub source_lang: Option<String>,
    /// Languages to translate each finished sentence into (FLORES-200 codes).
    #[serde(default)]
    pub target_langs: Vec<String>,
    /// Audio sample rate; always [`AUDIO_SAMPLE_RATE_HZ`] in schema v1.
    pub sample_rate_hz: u32,
    pub opened_at_ms: UnixMs,
    /// Optional client label (e.g. the API key's name); never a secret.
    #[serde(default)]
    pub client: Option<String>,
    /// Whether the audio arrives at real-time pace (a microphone). An STT worker behind real
    /// time may then recognise several steps' audio at once to catch up; for audio sent faster
    /// (a file being replayed or evaluated) it recognises every step, so the transcript does not
    /// depend on timing.
    #[serde(default = "yes")]
    pub realtime: bool,
}
wire!(SessionOpen, 1, "session.open");

/// A live session kept for evaluation (`voxctl record`): what was streamed and the references
/// it is scored against. Stored in KV bucket `vb-recordings` (key = session id) for as long as
/// the AUDIO stream keeps the session's audio, which `voxctl replay` republishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    /// Name of the recorded file (no directory).
    pub file_name: String,
    /// Spoken language as sent in the session's `start` frame (`auto` to detect).
    pub source: String,
    /// Target languages as sent in the `start` frame.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Length of the recorded audio.
    pub audio_ms: u64,
    /// Reference transcript, when one was given.
    #[serde(default)]
    pub reference: Option<String>,
    /// Reference translations by target language.
    #[serde(default)]
    pub reference_translations: std::collections::BTreeMap<String, String>,
    pub recorded_at_ms: UnixMs,
}
wire!(Recording, 1, "recording");

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The client sent `stop`.
    ClientStop,
    /// The client went away without `stop` and did not resume in time.
    ClientGone,
    /// The session reached its maximum length.
    MaxDuration,
    /// The edge is shutting down.
    Shutdown,
    /// No audio arrived for the idle timeout.
    Idle,
}

/// End-of-session marker, published on the session's audio subject after its last chunk so the
/// STT worker sees it in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClose {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    pub reason: CloseReason,
    /// Total samples sent; the worker checks it has seen them all.
    pub final_offset_samples: u64,
    pub closed_at_ms: UnixMs,
}
wire!(SessionClose, 1, "session.close");

/// One chunk of live audio: 16 kHz mono s16le, 20-250 ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioChunk {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    /// 0-based chunk number within the session.
    pub seq: u64,
    /// Sample index of this chunk's first sample since the session began. Gaps and overlaps
    /// with the previous chunk are detectable from it; timestamps derive from it exactly.
    pub offset_samples: u64,
    pub sample_rate_hz: u32,
    /// PCM s16le bytes (even length).
    #[serde(with = "serde_bytes_bytes")]
    pub pcm: Bytes,
    /// When the edge received it (for latency metrics).
    pub received_at_ms: UnixMs,
}
wire!(AudioChunk, 1, "audio.chunk");

impl AudioChunk {
    /// Number of whole samples in `pcm`.
    pub fn samples(&self) -> u64 {
        (self.pcm.len() / AUDIO_BYTES_PER_SAMPLE) as u64
    }
}

/// What travels on `vb.audio.<session>`: chunks, then one close marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AudioEvent {
    #[serde(rename = "audio.chunk")]
    Chunk(AudioChunk),
    #[serde(rename = "session.close")]
    Close(SessionClose),
}
wire_enum!(AudioEvent, 1, "audio", Chunk, Close);

// ---------------------------------------------------------------------------------------------
// Transcripts

/// A word with its time span, when the recogniser provides it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordTiming {
    pub word: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Recogniser confidence 0..=1, when known.
    #[serde(default)]
    pub probability: Option<f32>,
}

/// A transcript in progress. `stable_text` never changes in later revisions of the same
/// segment (it only grows); `unstable_text` is the recogniser's current guess for the tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptPartial {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    pub segment_id: SegmentId,
    /// Increases by one with every partial of the segment.
    pub revision: u32,
    pub stable_text: String,
    pub unstable_text: String,
    /// Audio time of the segment, from the session's start.
    pub start_ms: u64,
    pub end_ms: u64,
    pub emitted_at_ms: UnixMs,
}
wire!(TranscriptPartial, 1, "transcript.partial");

/// A finished sentence: its text never changes again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptFinal {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    pub segment_id: SegmentId,
    /// 0-based index of this final within the session (dedup and ordering key).
    pub index: u64,
    pub text: String,
    /// Detected or configured language (FLORES-200 code).
    pub lang: Option<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub words: Vec<WordTiming>,
    pub emitted_at_ms: UnixMs,
}
wire!(TranscriptFinal, 1, "transcript.final");

/// The last transcript event of a session: every final has been published before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    pub reason: CloseReason,
    /// Number of finals the session produced (indices `0..final_count`).
    pub final_count: u64,
    /// Audio time processed.
    pub audio_ms: u64,
    pub emitted_at_ms: UnixMs,
}
wire!(SessionEnded, 1, "session.ended");

/// A recogniser took the session: published by the STT worker when it claims a session from the
/// SESSIONS work queue (and again by the worker that resumes it after a failover), before it
/// reads the audio. Until then the session's audio waits in JetStream, kept, and the edge tells
/// its clients they are waiting for a recogniser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaimed {
    #[serde(default = "v1")]
    pub v: u16,
    pub session_id: SessionId,
    /// The claiming worker's instance name (logs, not routing).
    pub worker: String,
    /// Audio time recognition starts from: 0 for a new session, the checkpoint's position when
    /// a worker resumes one.
    pub resumed_from_ms: u64,
    /// How many times the SESSIONS queue has delivered this claim (1 = first claim).
    pub delivery: u64,
    pub emitted_at_ms: UnixMs,
}
wire!(SessionClaimed, 1, "session.claimed");

/// What travels on `vb.transcript.<session>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TranscriptEvent {
    #[serde(rename = "transcript.partial")]
    Partial(TranscriptPartial),
    #[serde(rename = "transcript.final")]
    Final(TranscriptFinal),
    #[serde(rename = "error")]
    Error(ErrorEvent),
    #[serde(rename = "session.ended")]
    Ended(SessionEnded),
    /// Added within schema 1: an edge of an older build skips it like any transcript event it
    /// cannot decode (logged), so workers can be upgraded before edges.
    #[serde(rename = "session.claimed")]
    Claimed(SessionClaimed),
}
wire_enum!(
    TranscriptEvent,
    1,
    "transcript",
    Partial,
    Final,
    Error,
    Ended,
    Claimed
);

// ---------------------------------------------------------------------------------------------
// Translation

/// A request to translate one or more texts into one target language, queued on
/// `vb.mt.request.<target>`. All texts of one request are translated as one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtRequest {
    #[serde(default = "v1")]
    pub v: u16,
    pub request_id: RequestId,
    pub texts: Vec<String>,
    /// FLORES-200 codes.
    pub source_lang: String,
    pub target_lang: String,
    /// Where the [`MtResult`] goes: `vb.translation.<session>` for live sessions, an inbox or a
    /// job subject otherwise.
    pub reply_subject: String,
    #[serde(default)]
    pub session_id: Option<SessionId>,
    /// The transcript final this translates (live sessions).
    #[serde(default)]
    pub segment_id: Option<SegmentId>,
    /// Drop the request unanswered (with a `deadline_exceeded` error) after this time.
    #[serde(default)]
    pub deadline_ms: Option<UnixMs>,
    pub enqueued_at_ms: UnixMs,
}
wire!(MtRequest, 1, "mt.request");

/// The answer to an [`MtRequest`]: either every translation, in order, or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtResult {
    #[serde(default = "v1")]
    pub v: u16,
    pub request_id: RequestId,
    #[serde(default)]
    pub session_id: Option<SessionId>,
    #[serde(default)]
    pub segment_id: Option<SegmentId>,
    pub source_lang: String,
    pub target_lang: String,
    /// One per input text, in order; empty when `error` is set.
    #[serde(default)]
    pub translations: Vec<String>,
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    /// Model identifier (directory name + compute type) for provenance.
    #[serde(default)]
    pub model: Option<String>,
    /// Whether each text came from the cache.
    #[serde(default)]
    pub cached: Vec<bool>,
    pub completed_at_ms: UnixMs,
}
wire!(MtResult, 1, "mt.result");

// ---------------------------------------------------------------------------------------------
// Jobs

/// What a batch job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Translate an SRT or WebVTT file.
    Subtitles,
    /// Transcribe (and optionally translate) an audio file.
    Audio,
}

/// Subtitle formats (parsed and written by [`crate::subtitles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtitleFormat {
    Srt,
    Vtt,
}

/// A batch job, queued on `vb.job.<kind>`; its input file is in the Object Store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    #[serde(default = "v1")]
    pub v: u16,
    pub job_id: JobId,
    pub kind: JobKind,
    /// Object Store key of the input file.
    pub input_object: String,
    /// Original file name (for the result's name); never used as a path.
    pub file_name: String,
    /// FLORES-200 source language, or `None` to detect.
    #[serde(default)]
    pub source_lang: Option<String>,
    /// FLORES-200 target languages; empty = transcription only.
    #[serde(default)]
    pub target_langs: Vec<String>,
    /// Output format; `None` = same as the input (subtitles) or SRT (audio).
    #[serde(default)]
    pub output_format: Option<SubtitleFormat>,
    /// sha256 of the input bytes + options: the dedup key (see [`crate::jobs`]). The job
    /// message's `Nats-Msg-Id` is the job id (plus the stage), so a failed job can be retried.
    pub content_hash: String,
    pub submitted_at_ms: UnixMs,
}
wire!(JobSpec, 1, "job.spec");

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// FLORES-200 language of the file's text.
    pub lang: String,
    /// `true` for the transcript of an audio job (source language), `false` for a translation.
    #[serde(default)]
    pub transcript: bool,
    /// Object Store key.
    pub object: String,
    /// Suggested download name, e.g. `film.vi.srt`.
    pub file_name: String,
    pub format: SubtitleFormat,
    pub cues: u64,
    /// Cues whose text did not fit the line layout (kept whole, never truncated).
    #[serde(default)]
    pub overlong_cues: u64,
}

/// Where a job is; the latest is kept in the `vb-jobs` KV bucket under the job id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// A job's status record (KV value) and status event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    #[serde(default = "v1")]
    pub v: u16,
    pub job_id: JobId,
    pub state: JobState,
    /// Completed fraction 0..=1.
    pub progress: f32,
    /// Human-readable status line, e.g. "translating 120/500 sentences".
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    /// Object Store keys of the results, one per target language (or one transcript).
    #[serde(default)]
    pub result_objects: Vec<String>,
    pub updated_at_ms: UnixMs,
    /// What the job is (kept in the status so listings need no second lookup).
    #[serde(default)]
    pub kind: Option<JobKind>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub source_lang: Option<String>,
    #[serde(default)]
    pub target_langs: Vec<String>,
    #[serde(default)]
    pub submitted_at_ms: Option<UnixMs>,
    /// The output files, with their languages and names.
    #[serde(default)]
    pub results: Vec<JobResult>,
    /// Deliveries of the job message so far (more than 1 after a worker died or a retry).
    #[serde(default)]
    pub attempts: u32,
}
wire!(JobStatus, 1, "job.status");

/// Fine-grained progress, published on `vb.jobevent.<job>.progress` for progress bars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    #[serde(default = "v1")]
    pub v: u16,
    pub job_id: JobId,
    pub done: u64,
    pub total: u64,
    /// Which step: "parse", "transcribe", "translate", "write".
    pub stage: String,
    pub emitted_at_ms: UnixMs,
}
wire!(JobProgress, 1, "job.progress");

// ---------------------------------------------------------------------------------------------
// Errors and the dead-letter queue

/// A stable, machine-readable error: `code` is from a small fixed set (documented in
/// `docs/ARCHITECTURE.md`), `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// An error that concerns a session or job, published where its clients will see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    #[serde(default = "v1")]
    pub v: u16,
    #[serde(default)]
    pub session_id: Option<SessionId>,
    #[serde(default)]
    pub job_id: Option<JobId>,
    pub error: ErrorInfo,
    /// Which component raised it: "edge", "stt", "mt".
    pub component: String,
    pub emitted_at_ms: UnixMs,
}
wire!(ErrorEvent, 1, "error");

/// A message that could not be processed, kept with its reason on `vb.dlq.<stream>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqRecord {
    #[serde(default = "v1")]
    pub v: u16,
    /// Subject the message was published on.
    pub original_subject: String,
    /// Stream and sequence it was stored at, when known.
    pub stream: Option<String>,
    pub stream_sequence: Option<u64>,
    /// Durable consumer that gave up on it.
    pub consumer: Option<String>,
    /// Stable reason code: `malformed_payload`, `max_deliveries`, `poison_input`, ...
    pub reason_code: String,
    /// Detail for people (e.g. the decode error).
    pub reason: String,
    pub delivery_count: u64,
    /// The original payload, byte for byte, so it can be inspected or replayed.
    #[serde(with = "serde_bytes_bytes")]
    pub payload: Bytes,
    /// Which component dead-lettered it.
    pub component: String,
    pub dead_lettered_at_ms: UnixMs,
}
wire!(DlqRecord, 1, "dlq.record");

// ---------------------------------------------------------------------------------------------
// Worker heartbeats

/// Published by every worker every few seconds on `vb.heartbeat.<component>.<instance>`, so the
/// edge and `voxctl status` can count live workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(default = "v1")]
    pub v: u16,
    pub component: String,
    pub instance: String,
    pub version: String,
    pub started_at_ms: UnixMs,
    pub emitted_at_ms: UnixMs,
    /// Work items in progress (sessions, batches, jobs).
    pub in_flight: u32,
}
wire!(Heartbeat, 1, "heartbeat");

/// `Bytes` as a MessagePack binary (serde_bytes only covers `Vec<u8>`/`&[u8]`).
mod serde_bytes_bytes {
    use bytes::Bytes;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(bytes.as_ref(), serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let buf: serde_bytes::ByteBuf = serde_bytes::deserialize(deserializer)?;
        Ok(Bytes::from(buf.into_vec()))
    }
}
