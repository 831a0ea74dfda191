//! Live sessions from the command line: `voxctl live FILE` streams a recording through the
//! edge's WebSocket (`/v1/live`) like a microphone would and prints the transcript and the
//! translations as they arrive; `voxctl bench live` runs several such sessions at once and
//! measures what a user waits for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_shared::eval::wer::WerScore;

use crate::bench::Summary;

/// Samples per millisecond of 16 kHz audio.
const SAMPLES_PER_MS: usize = 16;

/// How fast recorded audio is sent into a live session.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Speed {
    /// At the pace it was spoken, like a microphone: latencies mean what a user waits.
    #[default]
    Realtime,
    /// As fast as the edge accepts it: for transcripts and throughput, not latency.
    Max,
}

impl Speed {
    /// Whether chunks are paced at real time.
    pub fn realtime(self) -> bool {
        self == Speed::Realtime
    }
}

/// The edge live sessions are streamed through.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// Edge WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/v1/live")]
    pub url: String,
    /// API key, when the edge requires one.
    #[arg(long, env = "VOXBRIDGE_API_KEY")]
    pub api_key: Option<String>,
}

/// `voxctl live`.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// An audio file: WAV, MP3, FLAC, Ogg Vorbis or Opus, WebM/Opus, M4A or AAC (any sample rate or
    /// channel count; converted to 16 kHz mono).
    pub file: PathBuf,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Spoken language (`auto` to detect).
    #[arg(long, default_value = "en")]
    pub source: String,
    /// Target languages, comma-separated.
    #[arg(long = "to", value_delimiter = ',', default_value = "vi")]
    pub targets: Vec<String>,
    /// Send as fast as possible instead of at real-time pace.
    #[arg(long)]
    pub fast: bool,
    /// Print every event as a JSON line instead of readable text.
    #[arg(long)]
    pub json: bool,
}

/// `voxctl bench live`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchLiveArgs {
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Concurrent session counts to measure, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,4,10")]
    pub sessions: Vec<usize>,
    /// Audio files to stream (WAV, MP3, FLAC, ...; session i streams file i mod n).
    #[arg(long, num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, default_value = "en")]
    pub source: String,
    #[arg(long = "to", value_delimiter = ',', default_value = "vi")]
    pub targets: Vec<String>,
    /// Reference transcripts (plain text), one per `--files` entry in the same order: each
    /// level then reports the word error rate of its sessions' finals, so a speed setting is
    /// judged on accuracy in the same run.
    #[arg(long, num_args = 1..)]
    pub references: Vec<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// 16 kHz mono s16 samples of an audio file ([`voxbridge_shared::audio::SUPPORTED`] formats)
/// of any rate, channel count and sample format.
pub fn read_audio_16k(path: &Path) -> anyhow::Result<Vec<i16>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let samples = voxbridge_shared::audio::decode_audio_16k(&bytes)
        .with_context(|| format!("decoding {}", path.display()))?;
    Ok(voxbridge_shared::audio::to_i16(&samples))
}

/// What one streamed session measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionTimes {
    /// Seconds from sending the audio of the first partial's first word to receiving it.
    pub first_partial_s: Option<f64>,
    /// The same for every utterance: the first partial of each segment that starts after a
    /// pause (at least [`UTTERANCE_GAP_MS`] after the previous final ended), the session's
    /// first included. Segments that continue speech (a sentence after a sentence-ending
    /// final) are left out: their words were already shown under the previous segment.
    pub utterance_first_partial_s: Vec<f64>,
    /// Per translation: seconds from sending the audio that ends its sentence to receiving it.
    pub translation_s: Vec<f64>,
    /// Per translation (same order as `translation_s`): the session time (s of audio) where its
    /// sentence ends.
    pub translation_audio_s: Vec<f64>,
    /// Per final: seconds from sending the audio that ends it to receiving it.
    pub final_s: Vec<f64>,
    /// Per final (same order): the session time (s of audio) where it ends.
    pub final_audio_s: Vec<f64>,
    pub finals: Vec<String>,
    /// Per final (same order as `finals`): its segment id.
    pub final_segment_ids: Vec<String>,
    /// Every translation, in order of arrival.
    pub translations: Vec<ReceivedTranslation>,
    pub errors: Vec<String>,
    pub close_code: Option<u16>,
}

/// Silence before a segment that makes it a new utterance for
/// [`SessionTimes::utterance_first_partial_s`].
pub const UTTERANCE_GAP_MS: u64 = 500;

/// A `translation` event's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedTranslation {
    /// The final it translates.
    pub segment_id: String,
    /// Target language (the API's code).
    pub target: String,
    pub text: String,
}

impl SessionTimes {
    /// 0 when the session ended cleanly (close code 1000) without error events, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.errors.is_empty() && self.close_code == Some(1000) {
            0
        } else {
            1
        }
    }
}

/// What [`stream_file`] remembers between events to time them.
#[derive(Debug, Default)]
struct Timeline {
    /// Where each final's audio ends (ms), by segment id, to time its translations.
    final_ends: std::collections::HashMap<String, u64>,
    /// Segments whose first partial was seen.
    partial_seen: std::collections::HashSet<String>,
    /// Where the last final's audio ended (ms).
    last_final_end: Option<u64>,
}

impl Timeline {
    /// Records `event` in `times`; `waited(ms)` tells how long ago (s) the audio at session
    /// time `ms` was sent, if it was.
    fn observe(
        &mut self,
        times: &mut SessionTimes,
        event: &Value,
        waited: impl Fn(u64) -> Option<f64>,
    ) {
        match event["type"].as_str() {
            Some("transcript.partial") => {
                let segment = event["segment_id"].as_str().unwrap_or_default();
                if !self.partial_seen.insert(segment.to_string()) {
                    return;
                }
                let start = event["start_ms"].as_u64().unwrap_or(0);
                let new_utterance = self
                    .last_final_end
                    .is_none_or(|end| start >= end + UTTERANCE_GAP_MS);
                if let Some(waited) = waited(start + 1) {
                    times.first_partial_s.get_or_insert(waited);
                    if new_utterance {
                        times.utterance_first_partial_s.push(waited);
                    }
                }
            }
            Some("transcript.final") => {
                let end = event["end_ms"].as_u64().unwrap_or(0);
                self.last_final_end = Some(end);
                if let Some(id) = event["segment_id"].as_str() {
                    self.final_ends.insert(id.to_string(), end);
                }
                if let Some(waited) = waited(end) {
                    times.final_s.push(waited);
                    times.final_audio_s.push(end as f64 / 1000.0);
                }
                times
                    .finals
                    .push(event["text"].as_str().unwrap_or_default().to_string());
                times
                    .final_segment_ids
                    .push(event["segment_id"].as_str().unwrap_or_default().to_string());
            }
            Some("translation") => {
                let end = event["segment_id"]
                    .as_str()
                    .and_then(|id| self.final_ends.get(id).copied())
                    .or_else(|| event["end_ms"].as_u64());
                if let Some(end) = end
                    && let Some(waited) = waited(end)
                {
                    times.translation_s.push(waited);
                    times.translation_audio_s.push(end as f64 / 1000.0);
                }
                let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
                times.translations.push(ReceivedTranslation {
                    segment_id: field("segment_id"),
                    target: field("target"),
                    text: field("text"),
                });
            }
            Some("error") => times.errors.push(format!(
                "{}: {}",
                event["code"].as_str().unwrap_or("?"),
                event["message"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
}

/// Streams `samples` through one live session and records when events arrive relative to when
/// the audio they describe was sent. `on_event` sees every event.
pub async fn stream_file(
    edge: &EdgeArgs,
    source: &str,
    targets: &[String],
    samples: &[i16],
    realtime: bool,
    mut on_event: impl FnMut(&Value),
) -> anyhow::Result<SessionTimes> {
    let url = match &edge.api_key {
        Some(key) => format!("{}?api_key={key}", edge.url),
        None => edge.url.clone(),
    };
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let (mut tx, mut rx) = ws.split();
    tx.send(Message::Text(
        json!({"type": "start", "source": source, "targets": targets, "realtime": realtime})
            .to_string()
            .into(),
    ))
    .await?;
    let started = Instant::now();
    // Audio is sent by its own task, at real-time pace; `sent_at[i]` = when chunk i left.
    let chunk_ms = 100;
    let per_chunk = chunk_ms * SAMPLES_PER_MS;
    let chunks: Vec<Vec<u8>> = samples
        .chunks(per_chunk)
        .map(|c| c.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect();
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let sender = tokio::spawn(async move {
        if ready_rx.await.is_err() {
            return Ok::<_, anyhow::Error>(tx);
        }
        let t0 = Instant::now();
        for (i, chunk) in chunks.into_iter().enumerate() {
            if realtime {
                tokio::time::sleep_until(t0 + Duration::from_millis((i * chunk_ms) as u64)).await;
            }
            tx.send(Message::Binary(chunk.into())).await?;
            let _ = sent_tx.send(Instant::now());
        }
        tx.send(Message::Text(json!({"type": "stop"}).to_string().into()))
            .await?;
        Ok(tx)
    });
    let mut ready_tx = Some(ready_tx);
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut times = SessionTimes::default();
    let mut timeline = Timeline::default();
    let deadline = started + Duration::from_secs(600 + samples.len() as u64 / 16_000 * 4);
    loop {
        let message = match tokio::time::timeout_at(deadline, rx.next()).await {
            Err(_) => bail!("no end of session within the deadline"),
            Ok(None) => break,
            Ok(Some(message)) => message?,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                times.close_code = frame.map(|f| f.code.into());
                break;
            }
            _ => continue,
        };
        let event: Value = serde_json::from_str(&text)?;
        let now = Instant::now();
        on_event(&event);
        if event["type"] == "ready"
            && let Some(ready) = ready_tx.take()
        {
            let _ = ready.send(());
        }
        while let Ok(t) = sent_rx.try_recv() {
            sent_at.push(t);
        }
        // Seconds since the audio at `ms` (session time) was sent.
        let waited = |ms: u64| {
            let chunk = (ms as usize).saturating_sub(1) / chunk_ms;
            sent_at
                .get(chunk)
                .map(|sent| now.duration_since(*sent).as_secs_f64())
        };
        timeline.observe(&mut times, &event, waited);
    }
    sender.abort();
    Ok(times)
}

/// `voxctl live FILE`.
pub async fn run_live(args: &LiveArgs) -> anyhow::Result<i32> {
    let samples = read_audio_16k(&args.file)?;
    let json_lines = args.json;
    let times = stream_file(
        &args.edge,
        &args.source,
        &args.targets,
        &samples,
        !args.fast,
        |event| {
            if json_lines {
                println!("{event}");
                return;
            }
            match event["type"].as_str() {
                Some("ready") => eprintln!("session {} ready", event["session_id"]),
                Some("status") if event["reason"] == "recogniser_lost" => {
                    eprintln!("the recogniser stopped; waiting for another (the audio is kept)")
                }
                Some("status") if event["reason"] == "recogniser_unresponsive" => eprintln!(
                    "the recogniser does not answer; waiting for it or another (the audio is kept)"
                ),
                Some("status") if event["state"] == "waiting" => {
                    eprintln!("waiting for a recogniser (the audio is kept)")
                }
                Some("status") if event["delivery"].as_u64().is_some_and(|d| d > 1) => eprintln!(
                    "another recogniser resumed the session at {} ms",
                    event["resumed_from_ms"]
                ),
                Some("transcript.final") => println!("{}", event["text"].as_str().unwrap_or("")),
                Some("translation") => println!(
                    "  [{}] {}",
                    event["target"].as_str().unwrap_or("?"),
                    event["text"].as_str().unwrap_or("")
                ),
                Some("error") => eprintln!("error {}: {}", event["code"], event["message"]),
                Some("end") => eprintln!("end: {} finals", event["final_count"]),
                _ => {}
            }
        },
    )
    .await?;
    Ok(times.exit_code())
}

/// Results of `voxctl bench live` for one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct LiveLevel {
    pub sessions: usize,
    /// The first partial of every utterance ([`SessionTimes::utterance_first_partial_s`]).
    pub first_partial: Option<Summary>,
    pub final_latency: Option<Summary>,
    pub translation: Option<Summary>,
    /// Final latency over the last minute of the sessions' audio (sessions of 2 minutes or
    /// more).
    pub final_latency_last_minute: Option<Summary>,
    /// How the final latency grows with session time (seconds per minute of audio, least
    /// squares over all finals): about 0 when the workers keep up, positive when they fall
    /// behind.
    pub final_latency_trend_s_per_min: Option<f64>,
    /// The slowest finals, slowest first, to attribute the tail.
    pub slowest_finals: Vec<SlowFinal>,
    /// Word error rate of the sessions' finals against `--references` (corpus WER: one line
    /// per session), when given. A session that failed to stream is left out (it shows in
    /// `errors` and `unclean_closes`).
    pub transcript_wer: Option<WerScore>,
    pub errors: Vec<String>,
    pub unclean_closes: usize,
}

/// The corpus WER of each session's joined finals against the reference of the file it
/// streamed (`references[i % n]` for session i), one line per session in session order.
fn transcript_wer(transcripts: &[(usize, Vec<String>)], references: &[String]) -> Option<WerScore> {
    if references.is_empty() || transcripts.is_empty() {
        return None;
    }
    let mut sessions: Vec<&(usize, Vec<String>)> = transcripts.iter().collect();
    sessions.sort_by_key(|(i, _)| *i);
    let hypotheses: Vec<String> = sessions.iter().map(|(_, f)| f.join(" ")).collect();
    let refs: Vec<&str> = sessions
        .iter()
        .map(|(i, _)| references[i % references.len()].as_str())
        .collect();
    voxbridge_shared::eval::wer::corpus_wer(&hypotheses, &refs).ok()
}

/// One final of [`LiveLevel::slowest_finals`].
#[derive(Debug, Clone, Serialize)]
pub struct SlowFinal {
    /// Seconds from sending the audio that ends it to receiving it.
    pub latency_s: f64,
    /// Session time (s of audio) where it ends.
    pub audio_s: f64,
    pub session: usize,
    pub text: String,
}

/// How many finals [`LiveLevel::slowest_finals`] lists.
const SLOWEST: usize = 10;

/// Sessions at least this long (s of audio) report the last minute and the latency trend.
const LONG_SESSION_S: f64 = 120.0;

/// Least-squares slope of `y` over `x`.
fn slope(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let (mx, my) = (
        x.iter().sum::<f64>() / n as f64,
        y.iter().sum::<f64>() / n as f64,
    );
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// `voxctl bench live`.
pub async fn bench_live(args: &BenchLiveArgs) -> anyhow::Result<Vec<LiveLevel>> {
    let files: Vec<Vec<i16>> = args
        .files
        .iter()
        .map(|f| read_audio_16k(f))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        args.references.is_empty() || args.references.len() == args.files.len(),
        "--references needs one reference per --files entry ({} files, {} references)",
        args.files.len(),
        args.references.len()
    );
    let references: Vec<String> = args
        .references
        .iter()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<_, _>>()?;
    let mut levels = Vec::new();
    for &n in &args.sessions {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let samples = files[i % files.len()].clone();
            let args = args.clone();
            tasks.spawn(async move {
                // Spread session starts over the first second like real callers.
                tokio::time::sleep(Duration::from_millis((i * 1000 / n.max(1)) as u64)).await;
                stream_file(
                    &args.edge,
                    &args.source,
                    &args.targets,
                    &samples,
                    true,
                    |_| {},
                )
                .await
                .map(|t| (i, t))
            });
        }
        let mut first = Vec::new();
        let mut finals = Vec::new();
        let mut final_at = Vec::new();
        let mut translations = Vec::new();
        let mut errors = Vec::new();
        let mut unclean = 0;
        let mut slowest = Vec::new();
        let mut transcripts = Vec::new();
        while let Some(result) = tasks.join_next().await {
            match result? {
                Ok((session, t)) => {
                    transcripts.push((session, t.finals.clone()));
                    first.extend(&t.utterance_first_partial_s);
                    // `final_s` holds the finals whose audio end was known: pair by position
                    // only when every final had one.
                    if t.final_s.len() == t.finals.len() {
                        for ((latency, at), text) in
                            t.final_s.iter().zip(&t.final_audio_s).zip(&t.finals)
                        {
                            slowest.push(SlowFinal {
                                latency_s: *latency,
                                audio_s: *at,
                                session,
                                text: text.clone(),
                            });
                        }
                    }
                    finals.extend(&t.final_s);
                    final_at.extend(&t.final_audio_s);
                    translations.extend(t.translation_s);
                    errors.extend(t.errors);
                    if t.close_code != Some(1000) {
                        unclean += 1;
                    }
                }
                Err(e) => {
                    errors.push(e.to_string());
                    unclean += 1;
                }
            }
        }
        let summary = |v: Vec<f64>| (!v.is_empty()).then(|| Summary::of(v));
        // Whether the workers keep up shows over long sessions only.
        let longest = final_at.iter().copied().fold(0.0, f64::max);
        let long = longest >= LONG_SESSION_S;
        let last_minute = long.then(|| {
            final_at
                .iter()
                .zip(&finals)
                .filter(|(at, _)| **at >= longest - 60.0)
                .map(|(_, l)| *l)
                .collect::<Vec<_>>()
        });
        let trend = long
            .then(|| slope(&final_at, &finals))
            .flatten()
            .map(|s| s * 60.0);
        let level = LiveLevel {
            sessions: n,
            first_partial: summary(first),
            final_latency: summary(finals),
            translation: summary(translations),
            final_latency_last_minute: last_minute.and_then(summary),
            final_latency_trend_s_per_min: trend,
            slowest_finals: {
                slowest.sort_by(|a, b| b.latency_s.total_cmp(&a.latency_s));
                slowest.truncate(SLOWEST);
                slowest
            },
            transcript_wer: transcript_wer(&transcripts, &references),
            errors,
            unclean_closes: unclean,
        };
        eprintln!("{}", serde_json::to_string(&level)?);
        levels.push(level);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&levels)?)?;
    }
    Ok(levels)
}

/// Renders the levels as a Markdown table.
pub fn table(levels: &[LiveLevel]) -> String {
    let cell = |s: &Option<Summary>| {
        s.as_ref().map_or("—".to_string(), |s| {
            format!("{:.2} / {:.2} s (n {})", s.p50, s.p95, s.n)
        })
    };
    let mut out = String::from(
        "| sessions | first partial of each utterance (p50 / p95) | final after its audio (p50 / p95) | translation after its audio (p50 / p95) | final, last minute (p50 / p95) | final latency trend | errors | unclean closes |\n|---|---|---|---|---|---|---|---|\n",
    );
    for l in levels {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l.sessions,
            cell(&l.first_partial),
            cell(&l.final_latency),
            cell(&l.translation),
            cell(&l.final_latency_last_minute),
            l.final_latency_trend_s_per_min
                .map_or("—".to_string(), |t| format!("{t:+.2} s/min")),
            l.errors.len(),
            l.unclean_closes
        ));
    }
    for l in levels {
        if let Some(w) = &l.transcript_wer {
            out.push_str(&format!(
                "\nTranscript WER, {} session{}: {:.2} % ({} edits / {} reference words; per session {})\n",
                l.sessions,
                if l.sessions == 1 { "" } else { "s" },
                100.0 * w.wer,
                w.errors,
                w.ref_words,
                w.lines
                    .iter()
                    .map(|line| format!("{:.2} %", 100.0 * line.wer))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for l in levels.iter().filter(|l| !l.slowest_finals.is_empty()) {
        out.push_str(&format!(
            "\nSlowest finals, {} session{}:\n",
            l.sessions,
            if l.sessions == 1 { "" } else { "s" }
        ));
        for f in &l.slowest_finals {
            out.push_str(&format!(
                "- {:.2} s, session {} at {:.1} s: {}\n",
                f.latency_s, f.session, f.audio_s, f.text
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_partial_of_every_utterance_is_timed() {
        let mut timeline = Timeline::default();
        let mut times = SessionTimes::default();
        // Tells which audio each event was timed against.
        let waited = |ms: u64| Some(ms as f64);
        let partial = |id: &str, start_ms: u64| json!({"type": "transcript.partial", "segment_id": id, "start_ms": start_ms});
        let final_ = |id: &str, end_ms: u64| json!({"type": "transcript.final", "segment_id": id, "end_ms": end_ms, "text": id});
        for event in [
            partial("a", 1000),
            partial("a", 1000), // a later revision: not a first partial
            final_("a", 3000),
            // The next sentence follows at once: its words were shown before.
            partial("b", 3200),
            final_("b", 5000),
            // After a pause: a new utterance.
            partial("c", 6000),
        ] {
            timeline.observe(&mut times, &event, waited);
        }
        // (A partial is timed from the chunk holding its first word's first millisecond.)
        assert_eq!(times.first_partial_s, Some(1001.0));
        assert_eq!(times.utterance_first_partial_s, vec![1001.0, 6001.0]);
        assert_eq!(times.final_s, vec![3000.0, 5000.0]);
        assert_eq!(times.finals, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn transcript_wer_pools_the_sessions_against_their_files_references() {
        let references = vec!["the cat sat".to_string(), "a dog ran far".to_string()];
        assert!(transcript_wer(&[], &references).is_none());
        assert!(transcript_wer(&[(0, vec!["x".into()])], &[]).is_none());
        // Session 2 streamed file 0 again; sessions arrive out of order.
        let transcripts = vec![
            (1, vec!["a dog".into(), "ran far".into()]),
            (2, vec!["the bat sat".into()]),
            (0, vec!["The cat".into(), "sat.".into()]),
        ];
        let w = transcript_wer(&transcripts, &references).expect("references given");
        assert_eq!((w.errors, w.ref_words), (1, 10));
        assert!((w.wer - 0.1).abs() < 1e-9);
        let per_session: Vec<f64> = w.lines.iter().map(|l| l.wer).collect();
        assert_eq!(per_session.len(), 3);
        assert_eq!(per_session[0], 0.0);
        assert_eq!(per_session[1], 0.0);
        assert!((per_session[2] - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn slope_of_a_line() {
        let x = [0.0, 60.0, 120.0];
        assert!((slope(&x, &[1.0, 2.0, 3.0]).expect("slope") - 1.0 / 60.0).abs() < 1e-12);
        assert_eq!(slope(&x, &[2.0, 2.0, 2.0]), Some(0.0));
        assert_eq!(slope(&[1.0], &[1.0]), None);
    }

    #[test]
    fn wav_of_another_rate_and_stereo_becomes_16k_mono() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        // One second of a 440 Hz tone, same on both channels.
        for i in 0..44_100 {
            let s = ((i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin() * 16_000.0) as i16;
            w.write_sample(s).expect("write");
            w.write_sample(s).expect("write");
        }
        w.finalize().expect("finalize");
        let out = read_audio_16k(&path).expect("read");
        assert!(
            (out.len() as i64 - 16_000).abs() <= 16,
            "{} samples",
            out.len()
        );
        // The tone survives: RMS close to 16000/√2.
        let mid = &out[2000..14_000];
        let rms =
            (mid.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        assert!((rms - 11_314.0).abs() < 600.0, "rms {rms}");
    }
}
