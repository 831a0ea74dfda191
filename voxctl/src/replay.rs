//! `voxctl replay SESSION [--speed realtime|max] [--from TIME|seq:N]`: reads a session's audio
//! back from the AUDIO stream (`vb.audio.<session>`) and streams it through the edge as a new
//! live session, so the current workers process exactly what the original session heard. It
//! then compares the new final transcript with the original one (read from the TRANSCRIPTS
//! stream) and, for a session made by `voxctl record`, scores both against its reference.
//!
//! The STT policy is deterministic in audio time (steps at absolute multiples of the step), so
//! with the same workers and model a full replay gives the same finals at either speed;
//! `--expect-same` turns a difference into exit code 2, which makes replay a regression check.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use voxbridge_shared::SessionId;
use voxbridge_shared::codec;
use voxbridge_shared::config::NatsConfig;
use voxbridge_shared::messages::{AUDIO_SAMPLE_RATE_HZ, AudioEvent, TranscriptEvent};
use voxbridge_shared::subjects::{Namespace, streams};

use crate::live::{EdgeArgs, Speed, stream_file};
use crate::record::{load, recordings_bucket};

const SAMPLES_PER_MS: u64 = AUDIO_SAMPLE_RATE_HZ as u64 / 1000;

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartAt {
    /// Seconds of session audio.
    Time(f64),
    /// The first audio chunk with this sequence number.
    Seq(u64),
}

impl std::str::FromStr for StartAt {
    type Err = String;

    /// `seq:N`, or a time: `12.5`, `12.5s`, `1:02.5`, `00:01:02.5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected seconds (12.5), [HH:]MM:SS(.f) or seq:N, got {s:?}");
        if let Some(seq) = s.strip_prefix("seq:") {
            return seq.parse().map(StartAt::Seq).map_err(|_| bad());
        }
        let mut seconds = 0.0;
        for part in s.strip_suffix('s').unwrap_or(s).split(':') {
            let value: f64 = part.parse().map_err(|_| bad())?;
            if !value.is_finite() || value < 0.0 {
                return Err(bad());
            }
            seconds = seconds * 60.0 + value;
        }
        if s.split(':').count() > 3 {
            return Err(bad());
        }
        Ok(StartAt::Time(seconds))
    }
}

/// `voxctl replay`
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The session to replay (its id, as `voxctl record` or the edge's `ready` event gives it).
    pub session: SessionId,
    /// Send at real-time pace or as fast as possible.
    #[arg(long, value_enum, default_value_t = Speed::Realtime)]
    pub speed: Speed,
    /// Start at this audio time (`12.5`, `1:02.5`) or chunk (`seq:120`) instead of the start.
    #[arg(long)]
    pub from: Option<StartAt>,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Spoken language (default: the recording's, else `en`).
    #[arg(long)]
    pub source: Option<String>,
    /// Target languages, comma-separated (default: the recording's, else none).
    #[arg(long = "to", value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Exit with code 2 when a full replay's final transcript differs from the original's.
    #[arg(long)]
    pub expect_same: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A session's audio as read back from the AUDIO stream.
#[derive(Debug, Clone, Default)]
pub struct SessionAudio {
    /// 16 kHz mono samples from `start_samples` on.
    pub samples: Vec<i16>,
    /// Session offset of the first sample.
    pub start_samples: u64,
    /// Chunks read.
    pub chunks: u64,
    /// Samples of silence put where chunks were missing.
    pub gap_samples: u64,
    /// Samples dropped because a chunk repeated audio already read.
    pub overlap_samples: u64,
    /// Whether the session's close marker was read (false: the session was cut off).
    pub closed: bool,
}

/// Appends a chunk at `offset` to the audio, filling gaps with silence and dropping repeats, so
/// that sample `i` of the result is always session sample `start + i`.
fn append(audio: &mut SessionAudio, offset: u64, pcm: &[i16]) {
    let end = audio.start_samples + audio.samples.len() as u64;
    if offset > end {
        let gap = offset - end;
        audio.gap_samples += gap;
        audio.samples.resize(audio.samples.len() + gap as usize, 0);
    }
    let skip = end.saturating_sub(offset).min(pcm.len() as u64) as usize;
    audio.overlap_samples += skip as u64;
    audio.samples.extend_from_slice(&pcm[skip..]);
}

/// Every message a stream holds on one subject, from the first, in order.
struct SubjectReader {
    messages: async_nats::jetstream::consumer::pull::Ordered,
    stream: &'static str,
}

impl SubjectReader {
    /// `None` when stream `base` holds nothing on `subject`.
    async fn open(
        js: &async_nats::jetstream::Context,
        ns: &Namespace,
        base: &'static str,
        subject: String,
    ) -> anyhow::Result<Option<Self>> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        let stream = js
            .get_stream(ns.stream(base))
            .await
            .with_context(|| format!("{base} stream"))?;
        if stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .is_err()
        {
            return Ok(None);
        }
        let messages = stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await?
            .messages()
            .await?;
        Ok(Some(Self {
            messages,
            stream: base,
        }))
    }

    /// The next message, and whether it is the last one stored now.
    async fn next(&mut self) -> anyhow::Result<(async_nats::jetstream::Message, bool)> {
        let stream = self.stream;
        let message = tokio::time::timeout(Duration::from_secs(30), self.messages.next())
            .await
            .with_context(|| format!("the {stream} stream stopped delivering"))?
            .with_context(|| format!("the {stream} consumer ended"))??;
        let last = message.info().map_or(true, |i| i.pending == 0);
        Ok((message, last))
    }
}

/// Reads `session`'s audio from the AUDIO stream, from `from` on.
pub async fn read_audio(
    js: &async_nats::jetstream::Context,
    ns: &Namespace,
    session: SessionId,
    from: Option<StartAt>,
) -> anyhow::Result<SessionAudio> {
    let Some(mut messages) =
        SubjectReader::open(js, ns, streams::AUDIO, ns.audio(&session)).await?
    else {
        bail!(
            "no audio stored for session {session}: unknown, or older than the AUDIO stream's \
             max age (VOXBRIDGE_AUDIO_RETENTION_H)"
        );
    };
    let start_at = match from {
        Some(StartAt::Time(s)) => (s * AUDIO_SAMPLE_RATE_HZ as f64).round() as u64,
        _ => 0,
    };
    let mut audio = SessionAudio::default();
    let mut started = false;
    loop {
        let (message, last) = messages.next().await?;
        match codec::decode::<AudioEvent>(&message.payload) {
            Ok(AudioEvent::Chunk(chunk)) => {
                audio.chunks += 1;
                let pcm: Vec<i16> = chunk
                    .pcm
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let end = chunk.offset_samples + pcm.len() as u64;
                let wanted = match from {
                    Some(StartAt::Seq(seq)) => chunk.seq >= seq,
                    _ => end > start_at,
                };
                if wanted {
                    if !started {
                        started = true;
                        audio.start_samples = match from {
                            Some(StartAt::Time(_)) => start_at.max(chunk.offset_samples),
                            _ => chunk.offset_samples,
                        };
                    }
                    let skip = audio.start_samples.saturating_sub(chunk.offset_samples) as usize;
                    append(
                        &mut audio,
                        chunk.offset_samples + skip as u64,
                        &pcm[skip.min(pcm.len())..],
                    );
                }
            }
            Ok(AudioEvent::Close(_)) => {
                audio.closed = true;
                break;
            }
            // A payload the edge would never have written; the workers skip it too.
            Err(error) => tracing::warn!(%error, "skipping an unreadable AUDIO message"),
        }
        if last {
            break;
        }
    }
    Ok(audio)
}

/// The finals of `session` from the TRANSCRIPTS stream, in index order (a final republished
/// after a failover is counted once).
pub async fn original_finals(
    js: &async_nats::jetstream::Context,
    ns: &Namespace,
    session: SessionId,
) -> anyhow::Result<Vec<String>> {
    let Some(mut messages) =
        SubjectReader::open(js, ns, streams::TRANSCRIPTS, ns.transcript(&session)).await?
    else {
        return Ok(Vec::new());
    };
    let mut finals = std::collections::BTreeMap::new();
    loop {
        let (message, last) = messages.next().await?;
        match codec::decode::<TranscriptEvent>(&message.payload) {
            Ok(TranscriptEvent::Final(f)) => {
                finals.entry(f.index).or_insert(f.text);
            }
            Ok(TranscriptEvent::Ended(_)) => break,
            _ => {}
        }
        if last {
            break;
        }
    }
    Ok(finals.into_values().collect())
}

/// What `voxctl replay` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub original_session: SessionId,
    pub replay_session: Option<SessionId>,
    /// Where the replay started in the original session (ms of audio).
    pub from_ms: u64,
    pub audio_ms: u64,
    /// Whether the original session's close marker was found.
    pub original_closed: bool,
    pub gap_ms: u64,
    pub original_finals: Vec<String>,
    pub finals: Vec<String>,
    /// For a full replay: whether the final transcript equals the original's.
    pub same_as_original: Option<bool>,
    /// WER (%) of the original and the replay against the recording's reference.
    pub original_wer: Option<f64>,
    pub replay_wer: Option<f64>,
    pub errors: Vec<String>,
    pub close_code: Option<u16>,
    /// [`crate::live::SessionTimes::exit_code`].
    #[serde(skip)]
    pub exit_code: i32,
}

/// Replays `args.session`.
pub async fn replay(nats: &NatsConfig, args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let client = voxbridge_shared::nats::connect(nats, "voxctl", None, &shutdown).await?;
    let js = async_nats::jetstream::new(client);
    let ns = nats.namespace()?;
    let recording = load(&recordings_bucket(nats).await?, args.session).await?;
    let audio = read_audio(&js, &ns, args.session, args.from).await?;
    if audio.samples.is_empty() {
        bail!(
            "session {} has no audio from {:?} on",
            args.session,
            args.from
        );
    }
    let original = original_finals(&js, &ns, args.session).await?;
    let source = args
        .source
        .clone()
        .or_else(|| recording.as_ref().map(|r| r.source.clone()))
        .unwrap_or_else(|| "en".into());
    let targets = args
        .targets
        .clone()
        .or_else(|| recording.as_ref().map(|r| r.targets.clone()))
        .unwrap_or_default();

    let mut replay_session = None;
    let times = stream_file(
        &args.edge,
        &source,
        &targets,
        &audio.samples,
        args.speed.realtime(),
        |event| {
            if event["type"] == "ready" {
                replay_session = event["session_id"].as_str().and_then(|s| s.parse().ok());
            }
        },
    )
    .await?;
    let full = args.from.is_none();
    let reference = recording.as_ref().and_then(|r| r.reference.as_deref());
    let wer = |finals: &[String]| {
        reference.map(|r| 100.0 * voxbridge_shared::eval::wer(&finals.join(" "), r))
    };
    Ok(ReplayReport {
        exit_code: times.exit_code(),
        original_session: args.session,
        replay_session,
        from_ms: audio.start_samples / SAMPLES_PER_MS,
        audio_ms: audio.samples.len() as u64 / SAMPLES_PER_MS,
        original_closed: audio.closed,
        gap_ms: audio.gap_samples / SAMPLES_PER_MS,
        same_as_original: full.then(|| times.finals == original),
        original_wer: full.then(|| wer(&original)).flatten(),
        replay_wer: full.then(|| wer(&times.finals)).flatten(),
        original_finals: original,
        finals: times.finals,
        errors: times.errors,
        close_code: times.close_code,
    })
}

/// `voxctl replay`.
pub async fn run(nats: &NatsConfig, args: &ReplayArgs) -> anyhow::Result<i32> {
    let report = replay(nats, args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in &report.finals {
            println!("{line}");
        }
        eprintln!(
            "replayed {:.1} s of session {} from {:.1} s as session {}",
            report.audio_ms as f64 / 1000.0,
            report.original_session,
            report.from_ms as f64 / 1000.0,
            report
                .replay_session
                .map_or("?".to_string(), |s| s.to_string())
        );
        if !report.original_closed {
            eprintln!("note: the original session has no close marker (it was cut off)");
        }
        if report.gap_ms > 0 {
            eprintln!(
                "note: {} ms of missing audio replayed as silence",
                report.gap_ms
            );
        }
        match report.same_as_original {
            Some(true) => eprintln!("final transcript: same as the original"),
            Some(false) => {
                eprintln!("final transcript differs from the original:");
                for line in &report.original_finals {
                    eprintln!("  - {line}");
                }
            }
            None => {}
        }
        if let (Some(o), Some(r)) = (report.original_wer, report.replay_wer) {
            eprintln!("WER against the reference: original {o:.1} %, replay {r:.1} %");
        }
    }
    for e in &report.errors {
        eprintln!("error {e}");
    }
    let code = report.exit_code;
    Ok(
        if code == 0 && args.expect_same && report.same_as_original == Some(false) {
            2
        } else {
            code
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_arguments() {
        assert_eq!("seq:120".parse(), Ok(StartAt::Seq(120)));
        assert_eq!("12.5".parse(), Ok(StartAt::Time(12.5)));
        assert_eq!("12.5s".parse(), Ok(StartAt::Time(12.5)));
        assert_eq!("1:02.5".parse(), Ok(StartAt::Time(62.5)));
        assert_eq!("01:01:02".parse(), Ok(StartAt::Time(3662.0)));
        for bad in ["", "seq:", "seq:-1", "-3", "1:2:3:4", "abc", "NaN", "inf"] {
            assert!(bad.parse::<StartAt>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn chunks_are_laid_at_their_offsets() {
        let mut audio = SessionAudio {
            start_samples: 100,
            ..Default::default()
        };
        append(&mut audio, 100, &[1, 2, 3]);
        // A repeat of the last two samples plus one new sample.
        append(&mut audio, 101, &[2, 3, 4]);
        // Two samples missing.
        append(&mut audio, 106, &[7]);
        assert_eq!(audio.samples, vec![1, 2, 3, 4, 0, 0, 7]);
        assert_eq!(audio.overlap_samples, 2);
        assert_eq!(audio.gap_samples, 2);
        // A chunk entirely inside what was read adds nothing.
        append(&mut audio, 100, &[9, 9]);
        assert_eq!(audio.samples.len(), 7);
    }
}
