//! `voxctl record AUDIO --ref TRANSCRIPT.txt [--ref-translation vi:FILE]`: streams a
//! recording through a live session (like `voxctl live`) and stores its references beside the
//! session, in KV bucket `vb-recordings` (a [`Recording`], key = session id). The session's audio
//! stays in the AUDIO stream, so `voxctl replay SESSION` can run it again through whatever
//! workers run then and score both runs against the same references.
//!
//! Recordings live as long as the AUDIO stream keeps audio (`VOXBRIDGE_AUDIO_RETENTION_H`,
//! 24 h by default): they are for comparing today's system with this morning's. A set meant to
//! last is a directory of files for `voxctl eval`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use voxbridge_shared::SessionId;
use voxbridge_shared::config::NatsConfig;
use voxbridge_shared::messages::{AUDIO_SAMPLE_RATE_HZ, Recording, now_unix_ms};
use voxbridge_shared::subjects::buckets;

use crate::live::{EdgeArgs, SessionTimes, Speed, read_audio_16k, stream_file};

/// `voxctl record`
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// An audio file: WAV, MP3, FLAC, Ogg Vorbis or Opus, WebM/Opus, M4A or AAC (any sample rate or
    /// channel count; converted to 16 kHz mono).
    pub file: PathBuf,
    /// Reference transcript (UTF-8 text).
    #[arg(long = "ref")]
    pub reference: Option<PathBuf>,
    /// Reference translation as `LANG:FILE` (repeatable), e.g. `vi:talk.vi.txt`.
    #[arg(long = "ref-translation", value_parser = parse_lang_file)]
    pub ref_translations: Vec<(String, PathBuf)>,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Spoken language (`auto` to detect).
    #[arg(long, default_value = "en")]
    pub source: String,
    /// Target languages, comma-separated (default: the languages of `--ref-translation`).
    #[arg(long = "to", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Send at real-time pace or as fast as possible.
    #[arg(long, value_enum, default_value_t = Speed::Realtime)]
    pub speed: Speed,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `LANG:FILE`.
fn parse_lang_file(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once(':') {
        Some((lang, file)) if !lang.is_empty() && !file.is_empty() => {
            Ok((lang.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!(
            "expected LANG:FILE, e.g. vi:talk.vi.txt, got {arg:?}"
        )),
    }
}

/// What `voxctl record` did.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    pub session_id: SessionId,
    pub audio_ms: u64,
    pub finals: Vec<String>,
    /// WER (%) of the transcript against `--ref`.
    pub wer: Option<f64>,
    pub errors: Vec<String>,
    pub close_code: Option<u16>,
    /// [`SessionTimes::exit_code`].
    #[serde(skip)]
    pub exit_code: i32,
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Streams the file, then stores the [`Recording`].
pub async fn record(nats: &NatsConfig, args: &RecordArgs) -> anyhow::Result<RecordReport> {
    let samples = read_audio_16k(&args.file)?;
    let reference = args.reference.as_deref().map(read_text).transpose()?;
    let reference_translations = args
        .ref_translations
        .iter()
        .map(|(lang, file)| Ok((lang.clone(), read_text(file)?)))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let targets = if args.targets.is_empty() {
        reference_translations.keys().cloned().collect()
    } else {
        args.targets.clone()
    };
    // Connect before streaming, so a wrong NATS address fails before the audio is sent.
    let kv = recordings_bucket(nats).await?;

    let mut session_id = None;
    let times: SessionTimes = stream_file(
        &args.edge,
        &args.source,
        &targets,
        &samples,
        args.speed.realtime(),
        |event| {
            if event["type"] == "ready" {
                session_id = event["session_id"].as_str().and_then(|s| s.parse().ok());
            }
        },
    )
    .await?;
    let Some(session_id) = session_id else {
        bail!(
            "the edge did not open a session: {}",
            times.errors.join("; ")
        );
    };
    let audio_ms = samples.len() as u64 * 1000 / u64::from(AUDIO_SAMPLE_RATE_HZ);
    let recording = Recording {
        v: 1,
        session_id,
        file_name: args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: args.source.clone(),
        targets,
        audio_ms,
        reference: reference.clone(),
        reference_translations,
        recorded_at_ms: now_unix_ms(),
    };
    kv.put(
        session_id.to_string(),
        voxbridge_shared::codec::encode(&recording)?.into(),
    )
    .await
    .context("storing the recording")?;
    let transcript = times.finals.join(" ");
    Ok(RecordReport {
        exit_code: times.exit_code(),
        session_id,
        audio_ms,
        wer: reference
            .as_deref()
            .map(|r| 100.0 * voxbridge_shared::eval::wer(&transcript, r)),
        finals: times.finals,
        errors: times.errors,
        close_code: times.close_code,
    })
}

/// The `vb-recordings` bucket of the configured namespace.
pub async fn recordings_bucket(
    nats: &NatsConfig,
) -> anyhow::Result<async_nats::jetstream::kv::Store> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let client = voxbridge_shared::nats::connect(nats, "voxctl", None, &shutdown).await?;
    let js = async_nats::jetstream::new(client);
    let bucket = nats.namespace()?.bucket(buckets::RECORDINGS);
    js.get_key_value(&bucket).await.with_context(|| {
        format!("KV bucket {bucket} not found: run `voxctl topology ensure` (or start the edge)")
    })
}

/// The stored recording of `session`, if there is one.
pub async fn load(
    kv: &async_nats::jetstream::kv::Store,
    session: SessionId,
) -> anyhow::Result<Option<Recording>> {
    let Some(bytes) = kv
        .get(session.to_string())
        .await
        .context("reading vb-recordings")?
    else {
        return Ok(None);
    };
    Ok(Some(voxbridge_shared::codec::decode(&bytes)?))
}

/// `voxctl record`: prints the session id (which `voxctl replay` takes) and the result.
pub async fn run(nats: &NatsConfig, args: &RecordArgs) -> anyhow::Result<i32> {
    let report = record(nats, args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in &report.finals {
            println!("{line}");
        }
        eprintln!(
            "recorded session {} ({:.1} s of audio){}",
            report.session_id,
            report.audio_ms as f64 / 1000.0,
            report
                .wer
                .map_or(String::new(), |w| format!(", WER {w:.1} %"))
        );
        eprintln!("replay it with: voxctl replay {}", report.session_id);
    }
    for e in &report.errors {
        eprintln!("error {e}");
    }
    Ok(report.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lang_file_arguments() {
        assert_eq!(
            parse_lang_file("vi:a/b.vi.txt"),
            Ok(("vi".to_string(), PathBuf::from("a/b.vi.txt")))
        );
        // Only the first colon separates (a Windows-style or odd path keeps its colons).
        assert_eq!(
            parse_lang_file("fr:c:d.txt"),
            Ok(("fr".to_string(), PathBuf::from("c:d.txt")))
        );
        assert!(parse_lang_file("vi.txt").is_err());
        assert!(parse_lang_file(":x.txt").is_err());
        assert!(parse_lang_file("vi:").is_err());
    }
}
