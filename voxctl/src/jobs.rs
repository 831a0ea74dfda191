//! Batch jobs from the command line: `translate-subs`, `transcribe`, `jobs`, `job`.
//!
//! `voxctl` talks to NATS directly (the same [`JobStore`] the edge uses): the file goes to the
//! Object Store, the job to the JOBS queue, and the progress bar follows the job's progress
//! events and its status record. With `--wait` (the default for submissions) the results are
//! downloaded into `--out` when the job succeeds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use voxbridge_shared::JobId;
use voxbridge_shared::config::NatsConfig;
use voxbridge_shared::jobs::{JobStore, Submission};
use voxbridge_shared::languages;
use voxbridge_shared::messages::{JobKind, JobState, JobStatus, SubtitleFormat};

/// Output format flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Srt,
    Vtt,
}

impl From<FormatArg> for SubtitleFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Srt => SubtitleFormat::Srt,
            FormatArg::Vtt => SubtitleFormat::Vtt,
        }
    }
}

/// Options shared by the submitting commands.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Directory the results are written to.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Submit and print the job id without waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds (the job keeps running).
    #[arg(long, default_value_t = 24 * 3600)]
    pub timeout_s: u64,
    /// Print the final job record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `voxctl translate-subs`
#[derive(Debug, Clone, clap::Args)]
pub struct TranslateSubsArgs {
    /// An SRT or WebVTT file.
    pub file: PathBuf,
    /// Target languages, comma-separated (`vi,fr`).
    #[arg(long = "to", value_delimiter = ',', required = true)]
    pub targets: Vec<String>,
    /// Source language.
    #[arg(long = "from", default_value = "en")]
    pub source: String,
    /// Output format (default: the input's).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `voxctl transcribe`
#[derive(Debug, Clone, clap::Args)]
pub struct TranscribeArgs {
    /// An audio file: WAV, MP3, FLAC, Ogg Vorbis or Opus, WebM/Opus, M4A/MP4 (AAC-LC) or AAC
    /// (ADTS); any sample rate, channel count and sample format.
    pub file: PathBuf,
    /// Also translate into these languages, comma-separated.
    #[arg(long = "to", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// The spoken language (default: detected).
    #[arg(long = "from")]
    pub source: Option<String>,
    /// Subtitle format of the results.
    #[arg(long, value_enum, default_value_t = FormatArg::Srt)]
    pub format: FormatArg,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `voxctl job`
#[derive(Debug, Clone, clap::Args)]
pub struct JobArgs {
    /// The job id.
    pub id: String,
    /// Wait for the job to finish and download its results.
    #[arg(long)]
    pub wait: bool,
    /// Directory the results are written to (with `--wait`).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 24 * 3600)]
    pub timeout_s: u64,
    /// Print the job record as JSON.
    #[arg(long)]
    pub json: bool,
}

async fn open(nats: &NatsConfig) -> anyhow::Result<JobStore> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let client = voxbridge_shared::nats::connect(nats, "voxctl", None, &shutdown).await?;
    let js = async_nats::jetstream::new(client.clone());
    JobStore::open(client, js, nats.namespace()?)
        .await
        .context("opening the job store (is Voxbridge running? `voxctl topology ensure` creates the buckets)")
}

fn flores(code: &str) -> anyhow::Result<String> {
    Ok(languages::resolve(code)?.flores.to_string())
}

fn short(flores: &str) -> &str {
    languages::by_flores(flores).map_or(flores, |l| l.bcp47)
}

/// Submits a file and (unless `--no-wait`) follows the job to its end.
async fn submit_and_follow(
    nats: &NatsConfig,
    file: &Path,
    submission: Submission,
    wait: &WaitArgs,
) -> anyhow::Result<i32> {
    let store = open(nats).await?;
    let submitted = store.submit(submission).await?;
    let id = submitted.status.job_id;
    if submitted.deduplicated {
        eprintln!(
            "{} was submitted before with the same options: job {id} ({})",
            file.display(),
            state_name(submitted.status.state)
        );
    } else {
        eprintln!("submitted {} as job {id}", file.display());
    }
    if wait.no_wait {
        println!("{id}");
        return Ok(0);
    }
    follow(&store, &id, &wait.out, wait.timeout_s, wait.json).await
}

/// `voxctl translate-subs`
pub async fn translate_subs(nats: &NatsConfig, args: &TranslateSubsArgs) -> anyhow::Result<i32> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let targets = args
        .targets
        .iter()
        .map(|t| flores(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let submission = Submission {
        kind: JobKind::Subtitles,
        file_name: file_name(&args.file),
        bytes: bytes.into(),
        source_lang: Some(flores(&args.source)?),
        target_langs: targets,
        output_format: args.format.map(Into::into),
    };
    submit_and_follow(nats, &args.file, submission, &args.wait).await
}

/// `voxctl transcribe`
pub async fn transcribe(nats: &NatsConfig, args: &TranscribeArgs) -> anyhow::Result<i32> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // Fail fast on what the worker would reject (the error names the formats it takes).
    voxbridge_shared::audio::audio_duration_s(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let targets = args
        .targets
        .iter()
        .map(|t| flores(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let submission = Submission {
        kind: JobKind::Audio,
        file_name: file_name(&args.file),
        bytes: bytes.into(),
        source_lang: args.source.as_deref().map(flores).transpose()?,
        target_langs: targets,
        output_format: Some(args.format.into()),
    };
    submit_and_follow(nats, &args.file, submission, &args.wait).await
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into())
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
    }
}

/// Follows a job with a progress bar until it ends, then downloads its results.
async fn follow(
    store: &JobStore,
    id: &JobId,
    out: &Path,
    timeout_s: u64,
    json: bool,
) -> anyhow::Result<i32> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut progress = Box::pin(store.subscribe_progress(id).await?);
    let mut statuses = Box::pin(store.watch(id).await?);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_s);
    let status = loop {
        if let Some(status) = store.status(id).await?
            && matches!(status.state, JobState::Succeeded | JobState::Failed)
        {
            break status;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                bar.abandon_with_message("still running; `voxctl job ID --wait` picks it up again");
                eprintln!("gave up waiting after {timeout_s} s; job {id} continues");
                return Ok(2);
            }
            Some(p) = progress.next() => {
                bar.set_length(p.total.max(1));
                bar.set_position(p.done);
                bar.set_message(p.stage.clone());
            }
            Some(status) = statuses.next() => {
                if let Some(m) = &status.message {
                    bar.set_message(m.clone());
                }
                if matches!(status.state, JobState::Succeeded | JobState::Failed) {
                    break status;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    bar.finish_and_clear();
    finish(store, &status, out, json).await
}

async fn finish(
    store: &JobStore,
    status: &JobStatus,
    out: &Path,
    json: bool,
) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(&status_json(status))?);
    }
    if status.state == JobState::Failed {
        let (code, message) = status
            .error
            .as_ref()
            .map(|e| (e.code.as_str(), e.message.as_str()))
            .unwrap_or(("unknown", ""));
        eprintln!("job {} failed: [{code}] {message}", status.job_id);
        return Ok(1);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for result in &status.results {
        let bytes = store
            .get_file(&result.object, usize::MAX)
            .await?
            .with_context(|| format!("result {} has expired", result.file_name))?;
        let path = out.join(&result.file_name);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        let what = if result.transcript {
            "transcript"
        } else {
            "translation"
        };
        let overlong = if result.overlong_cues > 0 {
            format!(
                ", {} cues longer than the line layout (kept whole)",
                result.overlong_cues
            )
        } else {
            String::new()
        };
        eprintln!(
            "{what} ({}): {} — {} cues{overlong}",
            short(&result.lang),
            path.display(),
            result.cues
        );
    }
    Ok(0)
}

fn status_json(status: &JobStatus) -> voxbridge_shared::jobs::JobView {
    voxbridge_shared::jobs::JobView::from_status(status, false)
}

/// `voxctl jobs`
pub async fn list(nats: &NatsConfig, json: bool) -> anyhow::Result<i32> {
    let store = open(nats).await?;
    let jobs = store.list().await?;
    if json {
        let all: Vec<_> = jobs.iter().map(status_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    println!(
        "{:<26}  {:<9}  {:>5}  {:<9}  {:<12}  FILE",
        "ID", "STATE", "DONE", "KIND", "TO"
    );
    for s in &jobs {
        let kind = match s.kind {
            Some(JobKind::Audio) => "audio",
            Some(JobKind::Subtitles) => "subtitles",
            None => "-",
        };
        let targets: Vec<&str> = s.target_langs.iter().map(|t| short(t)).collect();
        println!(
            "{:<26}  {:<9}  {:>4.0}%  {:<9}  {:<12}  {}",
            s.job_id.to_string(),
            state_name(s.state),
            s.progress * 100.0,
            kind,
            targets.join(","),
            s.file_name.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

/// `voxctl job ID [--wait]`
pub async fn show(nats: &NatsConfig, args: &JobArgs) -> anyhow::Result<i32> {
    let id: JobId = args.id.parse()?;
    let store = open(nats).await?;
    let Some(status) = store.status(&id).await? else {
        eprintln!("job {id} not found (unknown, or expired)");
        return Ok(1);
    };
    if args.wait {
        return follow(&store, &id, &args.out, args.timeout_s, args.json).await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
    } else {
        println!("job {id}: {}", state_name(status.state));
        println!("  progress: {:.0} %", status.progress * 100.0);
        if let Some(m) = &status.message {
            println!("  status:   {m}");
        }
        if let Some(e) = &status.error {
            println!("  error:    [{}] {}", e.code, e.message);
        }
        for r in &status.results {
            println!(
                "  result:   {} ({}, {} cues)",
                r.file_name,
                short(&r.lang),
                r.cues
            );
        }
    }
    Ok(match status.state {
        JobState::Failed => 1,
        _ => 0,
    })
}
