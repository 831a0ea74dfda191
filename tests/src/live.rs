//! A WebSocket client of the edge's live protocol (`docs/PROTOCOL.md`) for tests and
//! benchmarks.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server sent besides events: a close frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Event(Value),
    Closed(Option<(u16, String)>),
}

/// One connection to `/v1/live`.
#[derive(Debug)]
pub struct LiveClient {
    ws: Ws,
    /// Every event received, in order.
    pub events: Vec<Value>,
    /// The close frame, once received.
    pub closed: Option<Option<(u16, String)>>,
}

impl LiveClient {
    /// Connects (with `?api_key=` when given).
    pub async fn connect(addr: SocketAddr, api_key: Option<&str>) -> Self {
        let url = match api_key {
            Some(key) => format!("ws://{addr}/v1/live?api_key={key}"),
            None => format!("ws://{addr}/v1/live"),
        };
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to /v1/live");
        Self {
            ws,
            events: Vec::new(),
            closed: None,
        }
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send text frame");
    }

    /// Sends a start frame for a new session.
    /// Starts a session whose audio is sent faster than real time (`"realtime": false`: the
    /// worker recognises every step, so transcripts do not depend on timing).
    pub async fn start(&mut self, source: &str, targets: &[&str]) {
        self.send_json(
            json!({"type": "start", "source": source, "targets": targets, "realtime": false}),
        )
        .await;
    }

    /// Sends raw bytes as one binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send binary frame");
    }

    /// Sends samples as s16le frames of `chunk_ms`, at real-time pace when `realtime`.
    pub async fn send_audio(&mut self, samples: &[i16], chunk_ms: usize, realtime: bool) {
        let per_chunk = 16 * chunk_ms;
        let started = tokio::time::Instant::now();
        for (i, chunk) in samples.chunks(per_chunk).enumerate() {
            let pcm: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.send_binary(pcm).await;
            if realtime {
                tokio::time::sleep_until(
                    started + Duration::from_millis(((i + 1) * chunk_ms) as u64),
                )
                .await;
            }
            // Keep reading so the server never sees this client as slow.
            self.drain_ready().await;
        }
    }

    /// Sends `stop`.
    pub async fn stop(&mut self) {
        self.send_json(json!({"type": "stop"})).await;
    }

    /// Reads what has already arrived, without waiting.
    pub async fn drain_ready(&mut self) {
        while self.closed.is_none() {
            match tokio::time::timeout(Duration::from_millis(1), self.ws.next()).await {
                Ok(Some(message)) => {
                    self.take(message);
                }
                Ok(None) => self.closed = Some(None),
                Err(_) => break,
            }
        }
    }

    fn take(
        &mut self,
        message: Result<Message, tokio_tungstenite::tungstenite::Error>,
    ) -> Option<Received> {
        match message {
            Ok(Message::Text(text)) => {
                let value: Value = serde_json::from_str(&text).expect("events are JSON");
                self.events.push(value.clone());
                Some(Received::Event(value))
            }
            Ok(Message::Close(frame)) => {
                let frame =
                    frame.map(|CloseFrame { code, reason }| (code.into(), reason.to_string()));
                self.closed = Some(frame.clone());
                Some(Received::Closed(frame))
            }
            Ok(_) => None,
            Err(_) => {
                self.closed = Some(None);
                Some(Received::Closed(None))
            }
        }
    }

    /// The next event or close, waiting up to `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        if let Some(closed) = &self.closed {
            return Some(Received::Closed(closed.clone()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.closed = Some(None);
                    return Some(Received::Closed(None));
                }
                Ok(Some(message)) => {
                    if let Some(received) = self.take(message) {
                        return Some(received);
                    }
                }
            }
        }
    }

    /// Waits for an event of `kind` (keeping everything before it in `events`).
    pub async fn wait_for(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Received::Event(e)) if e["type"] == kind => return e,
                Some(Received::Event(_)) => {}
                other => panic!(
                    "no {kind:?} event within {timeout:?}: got {other:?}; events: {:#?}",
                    self.events
                ),
            }
        }
    }

    /// Reads until the server closes the connection (or `timeout`), returning the close frame.
    pub async fn read_to_close(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Received::Closed(frame)) => return frame,
                Some(Received::Event(_)) => {}
                None => panic!(
                    "the server did not close within {timeout:?}; events: {:#?}",
                    self.events
                ),
            }
        }
    }

    /// Drops the TCP connection without a close handshake (a network failure).
    pub fn abort(self) {
        drop(self.ws);
    }

    /// The cursor of the last event received.
    pub fn cursor(&self) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find_map(|e| e["cursor"].as_str().map(str::to_string))
    }

    /// Events of one type.
    pub fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == kind).collect()
    }
}

/// The texts of the `transcript.final` events, in index order (asserting indices 0..n).
pub fn final_texts(events: &[Value]) -> Vec<String> {
    let finals: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "transcript.final")
        .collect();
    for (i, f) in finals.iter().enumerate() {
        assert_eq!(f["index"], json!(i), "finals in order 0..n: {finals:#?}");
    }
    finals
        .iter()
        .map(|f| f["text"].as_str().unwrap_or_default().to_string())
        .collect()
}
