//! `GET /v1/live`: live sessions over WebSocket (protocol: `docs/PROTOCOL.md`).
//!
//! One connection is one task that reads the socket, plus a writer task that owns the socket's
//! sending half and a pump task that turns the session's JetStream events into client events:
//!
//! ```text
//! socket ──frames──► connection ──AudioEvent──► vb.audio.<session>  (bounded in-flight acks)
//!    ▲                                      vb.transcript.<session> ─┐ ordered consumers,
//!    └──── writer ◄── outbox (bounded) ◄── pump ◄────────────────────┤ from the cursor
//!                                           vb.translation.<session> ─┘
//! ```
//!
//! Every client event is numbered by the [`Outbox`], which also keeps the cursor (event number
//! plus the last stream sequence of each source stream), so a client that reconnects with its
//! cursor continues exactly after what it saw. A client that reads too slowly fills its outbox
//! and is closed with 1013 instead of holding memory or slowing anyone else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use bytes::Bytes;
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use voxbridge_shared::codec;
use voxbridge_shared::languages;
use voxbridge_shared::messages::{
    AUDIO_BYTES_PER_SAMPLE, AUDIO_SAMPLE_RATE_HZ, AudioChunk, AudioEvent, CloseReason, MtResult,
    SessionClose, SessionOpen, TranscriptEvent, now_unix_ms,
};
use voxbridge_shared::nats::publish_with_id;
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subjects::{Namespace, streams};
use voxbridge_shared::{SegmentId, SessionId};

use crate::tokens::{Claims, Role, TokenKey};

/// Close codes (RFC 6455 and the IANA registry).
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// How long a closing connection waits for the client's Close reply (RFC 6455 §7.1.1) before
/// dropping the socket.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// A JetStream publish acknowledgement in flight.
type AckFuture = futures::future::BoxFuture<
    'static,
    Result<
        async_nats::jetstream::publish::PublishAck,
        async_nats::jetstream::context::PublishError,
    >,
>;

/// How long a new connection may take to send its start frame.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive times of audio kept per speaker connection (for latency metrics).
const MAX_AUDIO_MARKS: usize = 20_000;

/// Limits and settings of live sessions.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Accepted API keys; empty = open development mode.
    pub api_keys: HashSet<String>,
    pub max_sessions_per_key: usize,
    pub max_frame_bytes: usize,
    pub max_session: Duration,
    /// Events queued for one client before it counts as too slow (closed with 1013).
    pub send_queue: usize,
    /// After the session's last final, how long to wait for its translations before `end`.
    pub end_grace: Duration,
    /// After `stop`, how long to wait for the recogniser to finish the session at all.
    pub stop_timeout: Duration,
    /// Audio publishes awaiting their JetStream ack per connection (back-pressure beyond).
    pub max_inflight_audio: usize,
    pub max_targets: usize,
    pub token_key: TokenKey,
}

/// Metrics of live sessions (`voxbridge_edge_live_…`).
#[derive(Debug, Clone)]
pub struct LiveMetrics {
    pub connections: Family<RoleLabel, Gauge>,
    pub events: Family<EventLabel, Counter>,
    pub errors: Family<CodeLabel, Counter>,
    pub audio_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub slow_client_closes: Counter,
    pub first_partial_seconds: Histogram,
    pub final_latency_seconds: Histogram,
    pub translation_latency_seconds: Histogram,
    pub claim_wait_seconds: Histogram,
    pub recognisers_lost: Counter,
    pub recognisers_unresponsive: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub r#type: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

impl LiveMetrics {
    /// Registers under `voxbridge_edge_live_`.
    pub fn register(registry: &mut Registry) -> Self {
        let latency = || {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.05, 1.6, 14,
            ))
        };
        let m = Self {
            connections: Family::default(),
            events: Family::default(),
            errors: Family::default(),
            audio_seconds: Counter::default(),
            slow_client_closes: Counter::default(),
            first_partial_seconds: latency(),
            final_latency_seconds: latency(),
            translation_latency_seconds: latency(),
            claim_wait_seconds: latency(),
            recognisers_lost: Counter::default(),
            recognisers_unresponsive: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("voxbridge_edge_live");
        r.register(
            "connections",
            "Open live WebSocket connections by role",
            m.connections.clone(),
        );
        r.register(
            "events",
            "Events pushed to live clients by type",
            m.events.clone(),
        );
        r.register(
            "errors",
            "Error events sent to live clients by code",
            m.errors.clone(),
        );
        r.register(
            "audio_received_seconds",
            "Seconds of audio received from live clients",
            m.audio_seconds.clone(),
        );
        r.register(
            "slow_client_closes",
            "Connections closed with 1013 because the client did not read its events",
            m.slow_client_closes.clone(),
        );
        r.register(
            "first_partial_seconds",
            "From a session's first audio frame received to its first partial pushed",
            m.first_partial_seconds.clone(),
        );
        r.register(
            "final_latency_seconds",
            "From receiving the audio that ends a sentence to pushing its final transcript",
            m.final_latency_seconds.clone(),
        );
        r.register(
            "translation_latency_seconds",
            "From receiving the audio that ends a sentence to pushing its translation",
            m.translation_latency_seconds.clone(),
        );
        r.register(
            "claim_wait_seconds",
            "From a new session's start to a recogniser claiming it (the client is told it waits)",
            m.claim_wait_seconds.clone(),
        );
        r.register(
            "recognisers_lost",
            "Sessions whose recogniser process went away (told to the speaker before another one resumes the session)",
            m.recognisers_lost.clone(),
        );
        r.register(
            "recognisers_unresponsive",
            "Sessions whose recogniser stopped answering while its process stayed connected (told to the speaker; it recovers or another one resumes the session)",
            m.recognisers_unresponsive.clone(),
        );
        m
    }
}

/// Shared state of the live endpoint.
#[derive(Debug, Clone)]
pub struct LiveState {
    pub ctx: ServiceContext,
    pub settings: Arc<LiveSettings>,
    pub metrics: LiveMetrics,
    pub shutdown: CancellationToken,
    /// Live connections, so shutdown can wait for them to close.
    pub tracker: tokio_util::task::TaskTracker,
    sessions_per_key: Arc<Mutex<HashMap<String, usize>>>,
}

impl LiveState {
    pub fn new(
        ctx: ServiceContext,
        settings: LiveSettings,
        metrics: LiveMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            ctx,
            settings: Arc::new(settings),
            metrics,
            shutdown,
            tracker: tokio_util::task::TaskTracker::new(),
            sessions_per_key: Arc::default(),
        }
    }

    /// Counts a speaker session against `key`; `None` when the key is at its limit.
    fn acquire_slot(&self, key: &str) -> Option<SessionSlot> {
        let mut map = self
            .sessions_per_key
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let count = map.entry(key.to_string()).or_default();
        if *count >= self.settings.max_sessions_per_key {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            key: key.to_string(),
            map: self.sessions_per_key.clone(),
        })
    }
}

/// A held session slot of an API key; released on drop.
struct SessionSlot {
    key: String,
    map: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Query parameters of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    api_key: Option<String>,
}

/// Frames a client sends as text.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Start {
        #[serde(default)]
        source: Option<String>,
        #[serde(default)]
        targets: Vec<String>,
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        resume_token: Option<String>,
        #[serde(default)]
        cursor: Option<String>,
        /// False when the audio is sent faster than real time (a file): see
        /// [`SessionOpen::realtime`].
        #[serde(default = "realtime_by_default")]
        realtime: bool,
    },
    Listen {
        listen_token: String,
        #[serde(default)]
        cursor: Option<String>,
    },
    Stop,
}

fn realtime_by_default() -> bool {
    true
}

/// A client-visible error.
#[derive(Debug, Clone)]
struct LiveError {
    code: &'static str,
    message: String,
}

impl LiveError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// `GET /v1/live`.
pub async fn live_handler(
    ws: WebSocketUpgrade,
    State(state): State<LiveState>,
    Query(query): Query<LiveQuery>,
    headers: HeaderMap,
) -> Response {
    let header_key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let key = query.api_key.or(header_key);
    // Frames up to 4× the audio limit are read so an oversized one gets a clear error event
    // instead of a protocol-level close; beyond that the socket closes with 1009.
    let max = (state.settings.max_frame_bytes * 4).max(64 * 1024);
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let tracker = state.tracker.clone();
            tracker.track_future(Connection::run(state, socket, key))
        })
}

// ---------------------------------------------------------------------------------------------
// Outbox: numbering, cursor, bounded queue

enum Outgoing {
    Text(String),
    Close(u16, String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    seq: u64,
    transcripts: u64,
    translations: u64,
}

impl Cursor {
    fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.').map(|p| p.parse::<u64>().ok());
        let cursor = Self {
            seq: parts.next()??,
            transcripts: parts.next()??,
            translations: parts.next()??,
        };
        parts.next().is_none().then_some(cursor)
    }

    fn advance(&mut self, stream: Source, seq: u64) {
        match stream {
            Source::Transcripts => self.transcripts = self.transcripts.max(seq),
            Source::Translations => self.translations = self.translations.max(seq),
        }
    }

    fn render(&self) -> String {
        format!("{}.{}.{}", self.seq, self.transcripts, self.translations)
    }
}

/// The sending side of one connection: numbers events, keeps the cursor, and bounds what may
/// wait for a slow client.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    cursor: Arc<Mutex<Cursor>>,
    overflow: CancellationToken,
    session_id: SessionId,
    metrics: LiveMetrics,
}

impl Outbox {
    /// Queues an event; `false` when the client is too slow (the connection is being closed) or
    /// gone.
    fn event(&self, kind: &'static str, body: Value) -> bool {
        self.event_at(None, kind, body)
    }

    /// Queues an event made from the stream message at `at`: the event's cursor includes it.
    fn event_at(&self, at: Option<(Source, u64)>, kind: &'static str, mut body: Value) -> bool {
        if self.overflow.is_cancelled() {
            return false;
        }
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let before = *cursor;
        if let Some((source, seq)) = at {
            cursor.advance(source, seq);
        }
        cursor.seq += 1;
        if let Value::Object(map) = &mut body {
            map.insert("type".into(), kind.into());
            map.insert("session_id".into(), self.session_id.to_string().into());
            map.insert("seq".into(), cursor.seq.into());
            map.insert("cursor".into(), cursor.render().into());
        }
        match self.tx.try_send(Outgoing::Text(body.to_string())) {
            Ok(()) => {
                self.metrics
                    .events
                    .get_or_create(&EventLabel { r#type: kind })
                    .inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                *cursor = before;
                self.metrics.slow_client_closes.inc();
                self.overflow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn error(&self, error: &LiveError, fatal: bool) -> bool {
        self.metrics
            .errors
            .get_or_create(&CodeLabel {
                code: error.code.to_string(),
            })
            .inc();
        self.event(
            "error",
            json!({"code": error.code, "message": error.message, "fatal": fatal}),
        )
    }

    /// Records that a stream message up to `seq` was processed (it may have produced no event).
    fn advance(&self, stream: Source, seq: u64) {
        self.cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .advance(stream, seq);
    }

    /// Queues a close after everything already queued (waits for room: this flushes).
    async fn close(&self, code: u16, reason: &str) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.tx.send(Outgoing::Close(code, reason.to_string())),
        )
        .await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Transcripts,
    Translations,
}

/// Owns the socket's sending half: writes queued events in order; on overflow, closes with 1013.
async fn writer(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    overflow: CancellationToken,
) {
    let close = |code: u16, reason: String| {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        }))
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = overflow.cancelled() => {
                let _ = sink.send(close(close::TRY_AGAIN_LATER, "client too slow to read events".into())).await;
                break;
            }
            next = rx.recv() => next,
        };
        match next {
            Some(Outgoing::Text(text)) => {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            Some(Outgoing::Close(code, reason)) => {
                let _ = sink.send(close(code, reason)).await;
                break;
            }
            None => break,
        }
    }
    let _ = sink.close().await;
}

// ---------------------------------------------------------------------------------------------
// Connection

/// What a started connection is.
struct Started {
    claims: Claims,
    cursor: Option<Cursor>,
    resumed: bool,
    /// Next audio chunk's (seq, offset in samples); `None` when no audio may be sent.
    audio: Option<(u64, u64)>,
    _slot: Option<SessionSlot>,
}

struct Connection {
    state: LiveState,
    outbox: Outbox,
    session: SessionId,
}

/// Receive times of audio positions, for latency metrics.
#[derive(Default)]
struct AudioMarks {
    first_frame: Option<Instant>,
    /// Audio time (ms) before which no receive time is known: where this connection's audio
    /// began (a resumed session) or the end of the oldest mark dropped to bound memory.
    known_from_ms: u64,
    /// (end of a received chunk in audio ms, when it was received), in audio order.
    marks: VecDeque<(u64, Instant)>,
}

impl AudioMarks {
    /// Records a chunk covering audio `start_ms..end_ms`, received `now`.
    fn record(&mut self, start_ms: u64, end_ms: u64, now: Instant) {
        if self.first_frame.is_none() {
            self.first_frame = Some(now);
            self.known_from_ms = start_ms;
        }
        if self.marks.len() >= MAX_AUDIO_MARKS
            && let Some((end, _)) = self.marks.pop_front()
        {
            self.known_from_ms = end;
        }
        self.marks.push_back((end_ms, now));
    }

    /// When the audio up to `ms` had been received by this connection (`None` for audio it did
    /// not receive, so latencies are never under-reported).
    fn received_at(&self, ms: u64) -> Option<Instant> {
        if self.first_frame.is_some() && ms <= self.known_from_ms {
            return None;
        }
        let i = self.marks.partition_point(|(end, _)| *end < ms);
        self.marks.get(i).map(|(_, t)| *t)
    }
}

impl Connection {
    async fn run(state: LiveState, socket: WebSocket, header_key: Option<String>) {
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::channel(state.settings.send_queue);
        let overflow = CancellationToken::new();
        let writer = tokio::spawn(writer(sink, rx, overflow.clone()));

        let started = match Self::start(&state, &mut stream, &tx, header_key).await {
            Ok(started) => started,
            Err((error, code)) => {
                // No session yet: a bare error frame, then close.
                let _ = tx
                    .send(Outgoing::Text(
                        json!({"type": "error", "seq": 1, "code": error.code,
                               "message": error.message, "fatal": true})
                        .to_string(),
                    ))
                    .await;
                state
                    .metrics
                    .errors
                    .get_or_create(&CodeLabel {
                        code: error.code.to_string(),
                    })
                    .inc();
                let _ = tx.send(Outgoing::Close(code, error.code.to_string())).await;
                drop(tx);
                Self::join_writer(writer).await;
                return;
            }
        };
        let role = match started.claims.role {
            Role::Speaker => "speaker",
            Role::Listener => "listener",
        };
        let gauge = state
            .metrics
            .connections
            .get_or_create(&RoleLabel { role })
            .clone();
        gauge.inc();
        let session = started.claims.session_id;
        let cursor = started.cursor.unwrap_or_default();
        let connection = Connection {
            outbox: Outbox {
                tx,
                cursor: Arc::new(Mutex::new(cursor)),
                overflow: overflow.clone(),
                session_id: session,
                metrics: state.metrics.clone(),
            },
            state,
            session,
        };
        connection.serve(started, stream, cursor).await;
        gauge.dec();
        Self::join_writer(writer).await;
    }

    /// Waits for the writer to flush; a client that reads nothing cannot hold the task.
    async fn join_writer(mut writer: tokio::task::JoinHandle<()>) {
        if tokio::time::timeout(Duration::from_secs(10), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }

    /// Reads and checks the start (or listen) frame; opens a new session when asked to.
    async fn start(
        state: &LiveState,
        stream: &mut futures::stream::SplitStream<WebSocket>,
        tx: &mpsc::Sender<Outgoing>,
        header_key: Option<String>,
    ) -> Result<Started, (LiveError, u16)> {
        let settings = &state.settings;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let frame = loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .map_err(|_| {
                    (
                        LiveError::new("protocol", "no start frame within 10 s"),
                        close::POLICY,
                    )
                })?;
            let text = match next {
                None | Some(Err(_)) => {
                    return Err((LiveError::new("protocol", "closed"), close::NORMAL));
                }
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    let _ = tx.try_send(Outgoing::Text(
                        json!({"type": "error", "code": "protocol",
                               "message": "send the start frame before audio", "fatal": false})
                        .to_string(),
                    ));
                    continue;
                }
                Some(Ok(Message::Close(_))) => {
                    return Err((LiveError::new("protocol", "closed"), close::NORMAL));
                }
                Some(Ok(_)) => continue,
            };
            match serde_json::from_str::<ClientFrame>(&text) {
                Ok(frame) => break frame,
                Err(error) => {
                    let _ = tx.try_send(Outgoing::Text(
                        json!({"type": "error", "code": "bad_frame",
                               "message": format!("not a start frame: {error}"), "fatal": false})
                        .to_string(),
                    ));
                }
            }
        };
        let unauthorized = |m: &str| (LiveError::new("unauthorized", m), close::POLICY);
        let parse_cursor = |c: Option<String>| match c {
            None => Ok(None),
            Some(c) => Cursor::parse(&c).map(Some).ok_or_else(|| {
                (
                    LiveError::new("bad_frame", format!("malformed cursor {c:?}")),
                    close::POLICY,
                )
            }),
        };
        match frame {
            ClientFrame::Listen {
                listen_token,
                cursor,
            } => {
                let claims = settings
                    .token_key
                    .verify_role(&listen_token, Role::Listener)
                    .map_err(|e| unauthorized(&format!("listen token refused: {e}")))?;
                Ok(Started {
                    claims,
                    cursor: parse_cursor(cursor)?,
                    resumed: false,
                    audio: None,
                    _slot: None,
                })
            }
            ClientFrame::Start {
                source,
                targets,
                api_key,
                resume_token,
                cursor,
                realtime,
            } => {
                let key = api_key.or(header_key);
                let key_name = if settings.api_keys.is_empty() {
                    "open".to_string()
                } else {
                    match key {
                        Some(k) if settings.api_keys.contains(&k) => k,
                        Some(_) => return Err(unauthorized("unknown API key")),
                        None => return Err(unauthorized("an API key is required")),
                    }
                };
                let slot = state.acquire_slot(&key_name).ok_or_else(|| {
                    (
                        LiveError::new(
                            "too_many_sessions",
                            format!(
                                "this key already has {} live sessions",
                                settings.max_sessions_per_key
                            ),
                        ),
                        close::POLICY,
                    )
                })?;
                if let Some(token) = resume_token {
                    let claims = settings
                        .token_key
                        .verify_role(&token, Role::Speaker)
                        .map_err(|e| unauthorized(&format!("resume token refused: {e}")))?;
                    let audio = next_audio_position(&state.ctx, &claims.session_id)
                        .await
                        .map_err(|e| (e, close::INTERNAL))?;
                    return Ok(Started {
                        claims,
                        cursor: parse_cursor(cursor)?,
                        resumed: true,
                        audio,
                        _slot: Some(slot),
                    });
                }
                let claims = open_session(state, source, targets, realtime).await?;
                Ok(Started {
                    claims,
                    cursor: None,
                    resumed: false,
                    audio: Some((0, 0)),
                    _slot: Some(slot),
                })
            }
            ClientFrame::Stop => Err((
                LiveError::new("protocol", "stop before start"),
                close::POLICY,
            )),
        }
    }

    /// Runs a started connection to its end.
    async fn serve(
        self,
        started: Started,
        mut stream: futures::stream::SplitStream<WebSocket>,
        from: Cursor,
    ) {
        let settings = self.state.settings.clone();
        let claims = &started.claims;
        let role = claims.role;
        let targets_flores: Vec<String> = claims
            .targets
            .iter()
            .filter_map(|t| languages::resolve(t).ok().map(|l| l.flores.to_string()))
            .collect();
        let resume_token = settings.token_key.sign(&Claims {
            role: Role::Speaker,
            ..claims.clone()
        });
        let listen_token = settings.token_key.sign(&Claims {
            role: Role::Listener,
            ..claims.clone()
        });
        self.outbox.event(
            "ready",
            json!({
                "resume_token": if role == Role::Speaker { Some(resume_token) } else { None },
                "listen_token": listen_token,
                "source": claims.source.clone().unwrap_or_else(|| "auto".into()),
                "targets": claims.targets,
                "sample_rate_hz": AUDIO_SAMPLE_RATE_HZ,
                "max_frame_bytes": settings.max_frame_bytes,
                "resumed": started.resumed,
                // Audio the session holds so far: a resuming client continues from here.
                "audio_ms": started.audio.map(|(_, offset)| offset * 1000 / u64::from(AUDIO_SAMPLE_RATE_HZ)),
                "role": match role { Role::Speaker => "speaker", Role::Listener => "listener" },
            }),
        );
        if role == Role::Speaker && started.audio.is_none() {
            self.outbox.error(
                &LiveError::new(
                    "session_ended",
                    "this session has ended; its events are replayed",
                ),
                false,
            );
        }
        // A new session waits in the SESSIONS queue until a recogniser claims it (at once when
        // one has room; seconds when every worker is busy or behind). Say so, so the speaker
        // knows their words are kept; the claim event (below, in the pump) ends the wait.
        let opened = (role == Role::Speaker && !started.resumed).then(tokio::time::Instant::now);
        if opened.is_some() {
            self.outbox.event(
                "status",
                json!({
                    "state": "waiting",
                    "message": "waiting for a recogniser; your audio is kept",
                }),
            );
        }

        let marks = Arc::new(Mutex::new(AudioMarks::default()));
        let pump_done = CancellationToken::new();
        let pump = tokio::spawn(
            Pump {
                ctx: self.state.ctx.clone(),
                outbox: self.outbox.clone(),
                session: self.session,
                from,
                targets: targets_flores,
                end_grace: settings.end_grace,
                marks: (role == Role::Speaker).then(|| marks.clone()),
                metrics: self.state.metrics.clone(),
                opened,
            }
            .run(pump_done.clone()),
        );

        let mut audio = started.audio;
        let max_samples = settings.max_session.as_secs() * u64::from(AUDIO_SAMPLE_RATE_HZ);
        let mut inflight = FuturesOrdered::new();
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        let shutdown = self.state.shutdown.clone();
        let overflow = self.outbox.overflow.clone();
        loop {
            let deadline = stop_deadline;
            let stop_wait = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // The session stays open: the client resumes through another edge.
                    self.drain(&mut inflight).await;
                    self.outbox.close(close::GOING_AWAY, "edge shutting down; resume with your token").await;
                    break;
                }
                _ = overflow.cancelled() => break,
                _ = pump_done.cancelled() => {
                    self.drain(&mut inflight).await;
                    self.outbox.close(close::NORMAL, "session ended").await;
                    break;
                }
                _ = stop_wait => {
                    self.outbox.error(&LiveError::new("stt_timeout",
                        "the recogniser did not finish the session in time"), true);
                    self.outbox.close(close::INTERNAL, "recogniser timeout").await;
                    break;
                }
                Some(ack) = inflight.next(), if !inflight.is_empty() => {
                    if let Err(error) = ack {
                        self.fail_unavailable(error).await;
                        break;
                    }
                }
                frame = stream.next() => {
                    let frame = match frame {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                            // Gone without `stop`: the session stays resumable until the
                            // recogniser's idle timeout ends it.
                            self.drain(&mut inflight).await;
                            break;
                        }
                        Some(Ok(frame)) => frame,
                    };
                    match frame {
                        Message::Binary(pcm) => {
                            let Some((seq, offset)) = audio else {
                                let message = if role == Role::Listener {
                                    "listeners cannot send audio"
                                } else {
                                    "audio after stop or after the session ended"
                                };
                                self.outbox.error(&LiveError::new("protocol", message), false);
                                continue;
                            };
                            if pcm.len() > settings.max_frame_bytes {
                                self.outbox.error(&LiveError::new("frame_too_large", format!(
                                    "audio frame of {} bytes; at most {} (dropped)",
                                    pcm.len(), settings.max_frame_bytes)), false);
                                continue;
                            }
                            if pcm.len() % AUDIO_BYTES_PER_SAMPLE != 0 || pcm.is_empty() {
                                self.outbox.error(&LiveError::new("bad_frame", format!(
                                    "audio frame of {} bytes is not whole s16le samples (dropped)",
                                    pcm.len())), false);
                                continue;
                            }
                            let samples = (pcm.len() / AUDIO_BYTES_PER_SAMPLE) as u64;
                            if offset + samples > max_samples {
                                self.outbox.error(&LiveError::new("session_too_long", format!(
                                    "sessions are limited to {} s; the session ends now",
                                    settings.max_session.as_secs())), false);
                                audio = None;
                                if let Err(error) = self.publish_close(offset, CloseReason::MaxDuration).await {
                                    self.fail_unavailable(error).await;
                                    break;
                                }
                                stop_deadline = Some(tokio::time::Instant::now() + settings.stop_timeout);
                                continue;
                            }
                            while inflight.len() >= settings.max_inflight_audio {
                                if let Some(Err(error)) = inflight.next().await {
                                    self.fail_unavailable(error).await;
                                    return self.finish(pump).await;
                                }
                            }
                            {
                                let ms = |samples: u64| samples * 1000 / u64::from(AUDIO_SAMPLE_RATE_HZ);
                                marks.lock().unwrap_or_else(|e| e.into_inner())
                                    .record(ms(offset), ms(offset + samples), Instant::now());
                            }
                            self.state.metrics.audio_seconds.inc_by(samples as f64 / f64::from(AUDIO_SAMPLE_RATE_HZ));
                            match self.publish_chunk(seq, offset, pcm).await {
                                Ok(ack) => inflight.push_back(ack),
                                Err(error) => {
                                    self.fail_unavailable(error).await;
                                    break;
                                }
                            }
                            audio = Some((seq + 1, offset + samples));
                        }
                        Message::Text(text) => match serde_json::from_str::<ClientFrame>(&text) {
                            Ok(ClientFrame::Stop) => {
                                let Some((_, offset)) = audio.take() else { continue };
                                self.drain(&mut inflight).await;
                                if let Err(error) = self.publish_close(offset, CloseReason::ClientStop).await {
                                    self.fail_unavailable(error).await;
                                    break;
                                }
                                stop_deadline = Some(tokio::time::Instant::now() + settings.stop_timeout);
                            }
                            Ok(_) => {
                                self.outbox.error(&LiveError::new("protocol", "the session has already started"), false);
                            }
                            Err(error) => {
                                self.outbox.error(&LiveError::new("bad_frame", format!("unreadable frame: {error}")), false);
                            }
                        },
                        _ => {}
                    }
                }
            }
        }
        // The closing handshake: read (and drop) what the client still sends — audio in flight
        // — until its Close reply, so the socket is not closed with unread input: the kernel
        // would reset the connection, and the client could lose the close frame (1001 became an
        // abnormal closure) and the events queued before it.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
        })
        .await;
        self.finish(pump).await;
    }

    async fn finish(self, pump: tokio::task::JoinHandle<()>) {
        pump.abort();
        let _ = pump.await;
    }

    async fn drain(&self, inflight: &mut FuturesOrdered<AckFuture>) {
        while let Some(ack) = inflight.next().await {
            if let Err(error) = ack {
                tracing::warn!(session = %self.session, %error, "audio publish not acknowledged");
            }
        }
    }

    async fn fail_unavailable(&self, error: impl std::fmt::Display) {
        tracing::warn!(session = %self.session, %error, "NATS unavailable for a live session");
        self.outbox.error(
            &LiveError::new(
                "unavailable",
                format!("the message bus is unavailable: {error}"),
            ),
            true,
        );
        self.outbox
            .close(close::INTERNAL, "message bus unavailable")
            .await;
    }

    async fn publish_chunk(
        &self,
        seq: u64,
        offset: u64,
        pcm: Bytes,
    ) -> Result<AckFuture, async_nats::Error> {
        let event = AudioEvent::Chunk(AudioChunk {
            v: 1,
            session_id: self.session,
            seq,
            offset_samples: offset,
            sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
            pcm,
            received_at_ms: now_unix_ms(),
        });
        let ack = publish_with_id(
            &self.state.ctx.js,
            self.state.ctx.namespace.audio(&self.session),
            &format!("a-{}-{seq}", self.session),
            codec::encode(&event)?.into(),
        )
        .await?;
        Ok(std::future::IntoFuture::into_future(ack))
    }

    async fn publish_close(
        &self,
        offset: u64,
        reason: CloseReason,
    ) -> Result<(), async_nats::Error> {
        let event = AudioEvent::Close(SessionClose {
            v: 1,
            session_id: self.session,
            reason,
            final_offset_samples: offset,
            closed_at_ms: now_unix_ms(),
        });
        publish_with_id(
            &self.state.ctx.js,
            self.state.ctx.namespace.audio(&self.session),
            &format!("c-{}", self.session),
            codec::encode(&event)?.into(),
        )
        .await?
        .await?;
        Ok(())
    }
}

/// Validates the languages and publishes the session's open message.
async fn open_session(
    state: &LiveState,
    source: Option<String>,
    targets: Vec<String>,
    realtime: bool,
) -> Result<Claims, (LiveError, u16)> {
    let fatal = |code, message: String| (LiveError::new(code, message), close::POLICY);
    let source = source.filter(|s| !s.is_empty() && s != "auto");
    let source_lang = match &source {
        None => None,
        Some(code) => {
            Some(languages::resolve(code).map_err(|e| fatal("unknown_language", e.to_string()))?)
        }
    };
    if targets.len() > state.settings.max_targets {
        return Err(fatal(
            "too_many_targets",
            format!("at most {} target languages", state.settings.max_targets),
        ));
    }
    let mut target_langs = Vec::new();
    for target in &targets {
        let language =
            languages::resolve(target).map_err(|e| fatal("unknown_language", e.to_string()))?;
        if !target_langs.contains(&language) {
            target_langs.push(language);
        }
    }
    let session_id = SessionId::new();
    let open = SessionOpen {
        v: 1,
        session_id,
        source_lang: source_lang.map(|l| l.flores.to_string()),
        target_langs: target_langs.iter().map(|l| l.flores.to_string()).collect(),
        sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
        opened_at_ms: now_unix_ms(),
        client: Some("live".into()),
        realtime,
    };
    let unavailable = |e: async_nats::Error| {
        (
            LiveError::new(
                "unavailable",
                format!("the message bus is unavailable: {e}"),
            ),
            close::INTERNAL,
        )
    };
    let payload = codec::encode(&open).map_err(|e| unavailable(e.into()))?;
    publish_with_id(
        &state.ctx.js,
        state.ctx.namespace.session_open(),
        &format!("o-{session_id}"),
        payload.into(),
    )
    .await
    .map_err(|e| unavailable(e.into()))?
    .await
    .map_err(|e| unavailable(e.into()))?;
    tracing::info!(session = %session_id, source = ?open.source_lang, targets = ?open.target_langs, "live session opened");
    Ok(Claims {
        session_id,
        role: Role::Speaker,
        source: source_lang.map(|l| l.bcp47.to_string()),
        targets: target_langs.iter().map(|l| l.bcp47.to_string()).collect(),
    })
}

/// Where a resumed session's audio continues: `None` when it has ended.
async fn next_audio_position(
    ctx: &ServiceContext,
    session: &SessionId,
) -> Result<Option<(u64, u64)>, LiveError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        LiveError::new(
            "unavailable",
            format!("cannot read the session's audio: {e}"),
        )
    };
    let stream = ctx
        .js
        .get_stream(ctx.namespace.stream(streams::AUDIO))
        .await
        .map_err(|e| unavailable(&e))?;
    match stream
        .get_last_raw_message_by_subject(&ctx.namespace.audio(session))
        .await
    {
        Ok(message) => match codec::decode::<AudioEvent>(&message.payload) {
            Ok(AudioEvent::Chunk(chunk)) => Ok(Some((
                chunk.seq + 1,
                chunk.offset_samples + chunk.samples(),
            ))),
            Ok(AudioEvent::Close(_)) => Ok(None),
            Err(e) => Err(unavailable(&e)),
        },
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Some((0, 0))),
        Err(e) => Err(unavailable(&e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Pump: JetStream → client events

/// How often a connection asks whether its session's recogniser is still there.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// A recogniser that answers nothing within this is not answering: its process is stopped or
/// cut off from NATS (its connection still open), or stalled. Its requests are answered on the
/// worker's async runtime, never behind recognition, so a busy worker answers well within it.
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(2);
/// "No responders" this many times in a row means the recogniser is gone (once can be its
/// connection being re-established).
const PRESENCE_MISSES: u32 = 2;

/// What a connection last learnt of its session's recogniser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// It answers (a claim implies it).
    Answering,
    /// Its process is there (NATS routes to it) but it does not answer: stopped, cut off, or
    /// stalled. Its claim lapses after the session ack wait unless it recovers.
    Unresponsive,
    /// Its process is gone (NATS has no responder for it): killed, crashed, or shut down.
    Gone,
}

/// Watches the presence of the recogniser named in `watched` (an STT worker instance; `None`
/// while no one has the session) and reports each change as `(instance, presence)`. NATS
/// answers "no responders" at once when the worker's connection is gone — a killed process —
/// and a request to a stopped one times out, where the claim's redelivery waits for the
/// session ack wait (5 s by default). Ends when `watched`'s sender or `report`'s receiver is
/// dropped.
async fn watch_presence(
    client: async_nats::Client,
    namespace: Namespace,
    mut watched: watch::Receiver<Option<String>>,
    report: mpsc::Sender<(String, Presence)>,
) {
    use async_nats::client::RequestErrorKind;
    // The last state reported for the watched instance; a claim implies presence.
    let mut known: Option<(String, Presence)> = None;
    let mut misses = 0;
    loop {
        let current = watched.borrow_and_update().clone();
        if let Some(instance) = &current {
            if known.as_ref().is_none_or(|(i, _)| i != instance) {
                known = Some((instance.clone(), Presence::Answering));
                misses = 0;
            }
            let request = async_nats::Request::new().timeout(Some(PRESENCE_TIMEOUT));
            let presence = match client
                .send_request(namespace.presence(instance), request)
                .await
            {
                Ok(_) => {
                    misses = 0;
                    Some(Presence::Answering)
                }
                Err(error) if error.kind() == RequestErrorKind::NoResponders => {
                    misses += 1;
                    (misses >= PRESENCE_MISSES).then_some(Presence::Gone)
                }
                Err(error) if error.kind() == RequestErrorKind::TimedOut => {
                    misses = 0;
                    Some(Presence::Unresponsive)
                }
                Err(error) => {
                    tracing::debug!(%error, %instance, "presence request failed");
                    None
                }
            };
            if let (Some(presence), Some((_, was))) = (presence, known.as_mut())
                && presence != *was
            {
                *was = presence;
                if report.send((instance.clone(), presence)).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            changed = watched.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(PRESENCE_EVERY), if current.is_some() => {}
        }
    }
}

/// The recogniser that has the session, as its last claim said.
struct Recogniser {
    instance: String,
    delivery: u64,
    resumed_from_ms: u64,
    /// What the client was last told of it (a new claim, or its answering again, ends trouble).
    told: Presence,
}

struct Pump {
    ctx: ServiceContext,
    outbox: Outbox,
    session: SessionId,
    /// Events at or before these stream sequences were delivered before (a resume).
    from: Cursor,
    /// Target languages (FLORES); a final gets a translation into each except its own language.
    targets: Vec<String>,
    end_grace: Duration,
    marks: Option<Arc<Mutex<AudioMarks>>>,
    metrics: LiveMetrics,
    /// When this connection opened a new session (its wait for a claim is measured).
    opened: Option<tokio::time::Instant>,
}

#[derive(Clone, Copy)]
struct FinalInfo {
    index: u64,
    start_ms: u64,
    end_ms: u64,
    /// Translations the recogniser requested for it.
    expected: usize,
}

impl Pump {
    async fn run(self, done: CancellationToken) {
        if let Err(error) = self.pump().await {
            tracing::warn!(session = %self.session, %error, "live event pump failed");
            self.outbox.error(
                &LiveError::new(
                    "unavailable",
                    format!("cannot read the session's events: {error}"),
                ),
                true,
            );
        }
        done.cancel();
    }

    async fn consumer(
        &self,
        stream: &str,
        subject: String,
    ) -> Result<async_nats::jetstream::consumer::pull::Ordered, async_nats::Error> {
        let stream = self
            .ctx
            .js
            .get_stream(self.ctx.namespace.stream(stream))
            .await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        Ok(consumer.messages().await?)
    }

    async fn pump(&self) -> Result<(), async_nats::Error> {
        let ns = &self.ctx.namespace;
        let mut transcripts = self
            .consumer(streams::TRANSCRIPTS, ns.transcript(&self.session))
            .await?;
        let mut translations = self
            .consumer(streams::TRANSLATIONS, ns.translation(&self.session))
            .await?;
        let (watched, watched_rx) = watch::channel(None::<String>);
        let (report, mut presence) = mpsc::channel(4);
        let _watcher = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(watch_presence(
            self.ctx.client.clone(),
            ns.clone(),
            watched_rx,
            report,
        )));
        let mut recogniser: Option<Recogniser> = None;
        let mut finals: HashMap<SegmentId, FinalInfo> = HashMap::new();
        let mut delivered: HashSet<(SegmentId, String)> = HashSet::new();
        let mut ended: Option<(Value, tokio::time::Instant)> = None;
        let mut first_partial_seen = false;
        let mut pending: Option<(u64, MtResult)> = None;
        loop {
            if ended.is_some()
                && let Some((seq, result)) = pending.take()
                && !self.translation(seq, result, &finals, &mut delivered)
            {
                return Ok(());
            }
            if let Some((end, deadline)) = &ended {
                let expected: usize = finals.values().map(|f| f.expected).sum();
                let complete = expected <= delivered.len();
                if complete || tokio::time::Instant::now() >= *deadline {
                    self.outbox.event("end", end.clone());
                    return Ok(());
                }
            }
            let deadline = ended.as_ref().map(|(_, d)| *d);
            let grace = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = grace => continue,
                message = transcripts.next() => {
                    let message = message.ok_or("transcript stream closed")??;
                    let seq = message.info()?.stream_sequence;
                    let replayed = seq <= self.from.transcripts;
                    let event = match codec::decode::<TranscriptEvent>(&message.payload) {
                        Ok(event) => event,
                        Err(error) => {
                            tracing::warn!(session = %self.session, %error, "undecodable transcript event skipped");
                            self.outbox.advance(Source::Transcripts, seq);
                            continue;
                        }
                    };
                    let out = match event {
                        TranscriptEvent::Partial(p) => {
                            if !replayed && !first_partial_seen
                                && (!p.stable_text.is_empty() || !p.unstable_text.is_empty())
                            {
                                first_partial_seen = true;
                                if let Some(marks) = &self.marks {
                                    let first = marks.lock().unwrap_or_else(|e| e.into_inner()).first_frame;
                                    if let Some(first) = first {
                                        self.metrics.first_partial_seconds.observe(first.elapsed().as_secs_f64());
                                    }
                                }
                            }
                            Some(("transcript.partial", json!({
                                "segment_id": p.segment_id.to_string(), "revision": p.revision,
                                "stable": p.stable_text, "unstable": p.unstable_text,
                                "start_ms": p.start_ms, "end_ms": p.end_ms,
                            })))
                        }
                        TranscriptEvent::Final(f) => {
                            // The recogniser skips targets in the sentence's own language.
                            let expected = self.targets.iter().filter(|t| Some(t.as_str()) != f.lang.as_deref()).count();
                            finals.insert(f.segment_id, FinalInfo { index: f.index, start_ms: f.start_ms, end_ms: f.end_ms, expected });
                            if !replayed {
                                self.observe_since_audio(&self.metrics.final_latency_seconds, f.end_ms);
                            }
                            let lang = f.lang.as_deref().and_then(languages::by_flores).map(|l| l.bcp47).or(f.lang.as_deref());
                            Some(("transcript.final", json!({
                                "segment_id": f.segment_id.to_string(), "index": f.index,
                                "text": f.text, "lang": lang,
                                "start_ms": f.start_ms, "end_ms": f.end_ms,
                                "words": f.words.iter().map(|w| json!({"word": w.word, "start_ms": w.start_ms, "end_ms": w.end_ms})).collect::<Vec<_>>(),
                            })))
                        }
                        TranscriptEvent::Error(e) => Some(("error", json!({
                            "code": e.error.code, "message": e.error.message, "fatal": false,
                        }))),
                        TranscriptEvent::Claimed(c) => {
                            watched.send_replace(Some(c.worker.clone()));
                            recogniser = Some(Recogniser {
                                instance: c.worker.clone(),
                                delivery: c.delivery,
                                resumed_from_ms: c.resumed_from_ms,
                                told: Presence::Answering,
                            });
                            if !replayed && c.delivery == 1 && let Some(opened) = self.opened {
                                self.metrics.claim_wait_seconds.observe(opened.elapsed().as_secs_f64());
                            }
                            Some(("status", json!({
                                "state": "recognising", "resumed_from_ms": c.resumed_from_ms,
                                "delivery": c.delivery,
                            })))
                        }
                        TranscriptEvent::Ended(e) => {
                            let end = json!({
                                "reason": serde_json::to_value(e.reason).unwrap_or(Value::Null),
                                "final_count": e.final_count, "audio_ms": e.audio_ms,
                            });
                            ended = Some((end, tokio::time::Instant::now() + self.end_grace));
                            watched.send_replace(None);
                            None
                        }
                    };
                    if let (false, Some((kind, body))) = (replayed, out) {
                        if kind == "error" {
                            self.metrics.errors.get_or_create(&CodeLabel { code: body["code"].as_str().unwrap_or("stt_error").to_string() }).inc();
                        }
                        if !self.outbox.event_at(Some((Source::Transcripts, seq)), kind, body) {
                            return Ok(());
                        }
                    }
                    self.outbox.advance(Source::Transcripts, seq);
                    // A translation that arrived before its final follows it now.
                    let ready = pending.as_ref().is_some_and(|(_, r)| {
                        r.segment_id.is_some_and(|s| finals.contains_key(&s)) || ended.is_some()
                    });
                    if ready && let Some((seq, result)) = pending.take()
                        && !self.translation(seq, result, &finals, &mut delivered)
                    {
                        return Ok(());
                    }
                }
                // The recogniser's process went away, stopped answering, or came back: the
                // client learns it now, not when the claim is redelivered to another one.
                Some((instance, news)) = presence.recv() => {
                    let Some(r) = recogniser.as_mut().filter(|r| r.instance == instance && ended.is_none()) else {
                        continue;
                    };
                    if news == r.told {
                        continue;
                    }
                    let speaker = self.marks.is_some();
                    let body = match news {
                        Presence::Gone => {
                            tracing::warn!(session = %self.session, %instance, "the session's recogniser is gone; waiting for its claim to be redelivered");
                            if speaker {
                                self.metrics.recognisers_lost.inc();
                            }
                            json!({
                                "state": "waiting", "reason": "recogniser_lost", "delivery": r.delivery,
                                "message": "the recogniser stopped; another one resumes the session, your audio is kept",
                            })
                        }
                        Presence::Unresponsive => {
                            tracing::warn!(session = %self.session, %instance, "the session's recogniser does not answer");
                            if speaker {
                                self.metrics.recognisers_unresponsive.inc();
                            }
                            json!({
                                "state": "waiting", "reason": "recogniser_unresponsive", "delivery": r.delivery,
                                "message": "the recogniser does not answer; unless it recovers another one resumes the session, your audio is kept",
                            })
                        }
                        Presence::Answering => json!({
                            "state": "recognising", "resumed_from_ms": r.resumed_from_ms,
                            "delivery": r.delivery,
                        }),
                    };
                    r.told = news;
                    if !self.outbox.event("status", body) {
                        return Ok(());
                    }
                }
                // Translations are read in stream order, and one whose final has not been seen
                // yet (both already stored: a replay or a late listener) waits for it.
                message = translations.next(), if pending.is_none() => {
                    let message = message.ok_or("translation stream closed")??;
                    let seq = message.info()?.stream_sequence;
                    let Ok(result) = codec::decode::<MtResult>(&message.payload) else {
                        tracing::warn!(session = %self.session, "undecodable translation skipped");
                        self.outbox.advance(Source::Translations, seq);
                        continue;
                    };
                    if seq <= self.from.translations {
                        // Delivered before a resume: only remember it for de-duplication.
                        if let Some(segment) = result.segment_id {
                            delivered.insert((segment, result.target_lang.clone()));
                        }
                        self.outbox.advance(Source::Translations, seq);
                        continue;
                    }
                    let final_seen = result.segment_id.is_some_and(|s| finals.contains_key(&s));
                    if !final_seen && ended.is_none() {
                        pending = Some((seq, result));
                        continue;
                    }
                    if !self.translation(seq, result, &finals, &mut delivered) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Observes the time since this connection received the audio up to `end_ms` (speaker
    /// connections only, and only for audio this connection received).
    fn observe_since_audio(&self, histogram: &Histogram, end_ms: u64) {
        let Some(marks) = &self.marks else { return };
        let received = marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .received_at(end_ms);
        if let Some(received) = received {
            histogram.observe(received.elapsed().as_secs_f64());
        }
    }

    /// Pushes one translation result (or its error) unless already delivered; `false` when the
    /// client is gone or too slow.
    fn translation(
        &self,
        seq: u64,
        result: MtResult,
        finals: &HashMap<SegmentId, FinalInfo>,
        delivered: &mut HashSet<(SegmentId, String)>,
    ) -> bool {
        let Some(segment) = result.segment_id else {
            self.outbox.advance(Source::Translations, seq);
            return true;
        };
        if !delivered.insert((segment, result.target_lang.clone())) {
            self.outbox.advance(Source::Translations, seq);
            return true;
        }
        let at = Some((Source::Translations, seq));
        let target = languages::by_flores(&result.target_lang)
            .map_or(result.target_lang.as_str(), |l| l.bcp47);
        let info = finals.get(&segment).copied();
        if let Some(error) = result.error {
            self.metrics
                .errors
                .get_or_create(&CodeLabel {
                    code: error.code.clone(),
                })
                .inc();
            return self.outbox.event_at(
                at,
                "error",
                json!({
                    "code": error.code,
                    "message": format!("translation into {target}: {}", error.message),
                    "fatal": false, "segment_id": segment.to_string(), "target": target,
                }),
            );
        }
        if let Some(info) = info {
            self.observe_since_audio(&self.metrics.translation_latency_seconds, info.end_ms);
        }
        self.outbox.event_at(
            at,
            "translation",
            json!({
                "segment_id": segment.to_string(),
                "index": info.map(|i| i.index),
                "target": target,
                "text": result.translations.join(" "),
                "start_ms": info.map(|i| i.start_ms),
                "end_ms": info.map(|i| i.end_ms),
                "cached": result.cached.first().copied().unwrap_or(false),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects_garbage() {
        let c = Cursor {
            seq: 17,
            transcripts: 9,
            translations: 4,
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1..3", "-1.2.3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn audio_marks_find_the_receive_time_of_a_position() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(100);
        let mut marks = AudioMarks::default();
        marks.marks.push_back((100, t0));
        marks.marks.push_back((200, t1));
        assert_eq!(marks.received_at(50), Some(t0));
        assert_eq!(marks.received_at(100), Some(t0));
        assert_eq!(marks.received_at(150), Some(t1));
        assert_eq!(marks.received_at(250), None);
    }

    #[test]
    fn audio_marks_know_nothing_of_audio_another_connection_received() {
        let t0 = Instant::now();
        let mut marks = AudioMarks::default();
        // A resumed session: this connection's audio starts at 5 s.
        marks.record(5_000, 5_100, t0);
        marks.record(5_100, 5_200, t0 + Duration::from_millis(100));
        assert_eq!(marks.received_at(4_000), None);
        assert_eq!(marks.received_at(5_000), None);
        assert_eq!(marks.received_at(5_050), Some(t0));
        assert_eq!(
            marks.received_at(5_200),
            Some(t0 + Duration::from_millis(100))
        );
    }

    #[test]
    fn client_frames_parse() {
        let start: ClientFrame =
            serde_json::from_str(r#"{"type":"start","source":"en","targets":["vi"]}"#)
                .expect("start");
        assert!(matches!(start, ClientFrame::Start { ref targets, .. } if targets == &["vi"]));
        assert!(matches!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"stop"}"#),
            Ok(ClientFrame::Stop)
        ));
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"dance"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"listen"}"#).is_err());
    }
}
