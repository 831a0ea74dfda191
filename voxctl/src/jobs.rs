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
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use voxbridge_shared::JobId;
use voxbridge_shared::config::NatsConfig;
use voxbridge_shared::jobs::{JobError, JobStore, Submission};
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
    /// SRT or WebVTT files, or directories of them (their `.srt` and `.vtt` files; with
    /// `--recursive` their subdirectories' too). Every file is submitted first, so several
    /// workers translate them at once; then all are followed to their end and their results
    /// written to `--out`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also take the files in the directories' subdirectories; each result goes to the same
    /// subdirectory under `--out` (`season1/ep01.srt` → `OUT/season1/ep01.vi.srt`).
    #[arg(short, long)]
    pub recursive: bool,
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
    /// Audio files: WAV, MP3, FLAC, Ogg Vorbis or Opus, WebM/Opus, M4A/MP4 (AAC-LC) or AAC
    /// (ADTS); any sample rate, channel count and sample format. Or directories of them (files
    /// named .wav, .mp3, .flac, .ogg, .oga, .opus, .webm, .m4a, .mp4, .aac): all are submitted
    /// first, then followed together.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also take the files in the directories' subdirectories; each result goes to the same
    /// subdirectory under `--out`.
    #[arg(short, long)]
    pub recursive: bool,
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

/// Submits a file and says so (or which earlier job it is).
async fn submit(store: &JobStore, file: &Path, submission: Submission) -> Result<JobId, JobError> {
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
    Ok(id)
}

/// Submits a file and (unless `--no-wait`) follows the job to its end.
async fn submit_and_follow(
    nats: &NatsConfig,
    file: &Path,
    submission: Submission,
    wait: &WaitArgs,
) -> anyhow::Result<i32> {
    let store = open(nats).await?;
    let id = submit(&store, file, submission).await?;
    if wait.no_wait {
        println!("{id}");
        return Ok(0);
    }
    follow(&store, &id, &wait.out, wait.timeout_s, wait.json).await
}

/// `voxctl translate-subs`
pub async fn translate_subs(nats: &NatsConfig, args: &TranslateSubsArgs) -> anyhow::Result<i32> {
    let files = input_files(
        &args.files,
        &["srt", "vtt"],
        ".srt or .vtt files",
        args.recursive,
    )?;
    let targets = args
        .targets
        .iter()
        .map(|t| flores(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = flores(&args.source)?;
    let prepare = |file: &Path| -> anyhow::Result<Submission> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        Ok(Submission {
            kind: JobKind::Subtitles,
            file_name: file_name(file),
            bytes: bytes.into(),
            source_lang: Some(source.clone()),
            target_langs: targets.clone(),
            output_format: args.format.map(Into::into),
        })
    };
    if let [file] = files.as_slice() {
        // One file: its record alone with --json, not a list, and any error is the command's.
        let mut wait = args.wait.clone();
        wait.out = wait.out.join(&file.out_dir);
        return submit_and_follow(nats, &file.path, prepare(&file.path)?, &wait).await;
    }
    submit_and_follow_all(
        nats,
        &files,
        &|file: &Path| prepare(file).map(Some),
        &args.wait,
    )
    .await
}

/// A file to submit, and the directory under `--out` its results go to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Input {
    path: PathBuf,
    /// Relative to `--out`: the file's directory below the directory named on the command line
    /// (`--recursive`), else empty.
    out_dir: PathBuf,
}

impl Input {
    /// How the file is named in messages and on its progress bar.
    fn label(&self) -> String {
        self.out_dir
            .join(file_name(&self.path))
            .display()
            .to_string()
    }
}

/// The files named by `inputs`: files as given, and the files of directories whose extension is
/// one of `extensions` (any case; sorted; with `recursive` in subdirectories too, which give
/// their results a subdirectory of the same name under `--out`). Names starting with a dot are
/// skipped inside directories (`._film.srt`, the metadata files macOS leaves on shared drives;
/// `.git/`), as a shell's `*` skips them. Refuses a directory without any (`what` names them),
/// and two inputs with one output name (their results would overwrite each other).
fn input_files(
    inputs: &[PathBuf],
    extensions: &[&str],
    what: &str,
    recursive: bool,
) -> anyhow::Result<Vec<Input>> {
    let mut files = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            // Checked before anything is submitted.
            std::fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
            files.push(Input {
                path: input.clone(),
                out_dir: PathBuf::new(),
            });
            continue;
        }
        let (mut found, mut subdirectories) = (Vec::new(), false);
        let walk = walkdir::WalkDir::new(input)
            .min_depth(1)
            .max_depth(if recursive { usize::MAX } else { 1 })
            .into_iter()
            // The directory named on the command line is taken even if its name starts with a dot.
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            let entry = entry.with_context(|| format!("reading {}", input.display()))?;
            let path = entry.path();
            if path.is_dir() {
                subdirectories = true;
                continue;
            }
            let wanted = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)));
            if wanted && path.is_file() {
                let out_dir = path
                    .parent()
                    .and_then(|p| p.strip_prefix(input).ok())
                    .unwrap_or(Path::new(""))
                    .to_path_buf();
                found.push(Input {
                    path: path.to_path_buf(),
                    out_dir,
                });
            }
        }
        if found.is_empty() {
            let hint = if recursive {
                " or its subdirectories"
            } else if subdirectories {
                " (its subdirectories are not searched without --recursive)"
            } else {
                ""
            };
            anyhow::bail!("no {what} in {}{hint}", input.display());
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        files.extend(found);
    }
    // Results are named after the file's name without its extension (`film.srt` → `film.vi.srt`).
    let mut outputs = std::collections::BTreeMap::new();
    for file in &files {
        let name = file_name(&file.path);
        let stem = voxbridge_shared::jobs::file_stem(&name).to_string();
        if let Some(other) = outputs.insert((file.out_dir.clone(), stem), &file.path) {
            anyhow::bail!(
                "{} and {} have the same name but for the extension: their results would \
                 overwrite each other; run them separately, with separate --out directories",
                other.display(),
                file.path.display()
            );
        }
    }
    Ok(files)
}

/// Above this many jobs, one progress bar counts the jobs that ended instead of one bar each.
const MAX_BARS: usize = 12;

/// Reads and submits the files one at a time, then (unless `--no-wait`) follows all the jobs at
/// once — one progress bar each, or one for all past [`MAX_BARS`] — writing each job's results as
/// soon as it ends. A file that cannot be read, that `prepare` refused and reported (`None`), or
/// that the job store refuses (empty, too large) is reported and counts as failed; the others go
/// on. Only the job store failing stops the run. Exit code: 1 when a file failed, else 2 when a
/// job was still running at `--timeout-s`, else 0.
async fn submit_and_follow_all(
    nats: &NatsConfig,
    files: &[Input],
    prepare: &dyn Fn(&Path) -> anyhow::Result<Option<Submission>>,
    wait: &WaitArgs,
) -> anyhow::Result<i32> {
    let store = open(nats).await?;
    let (mut jobs, mut rejected) = (Vec::with_capacity(files.len()), 0);
    for input in files {
        // One file's bytes at a time: a folder of long recordings is never all in memory.
        let submission = match prepare(&input.path) {
            Ok(Some(submission)) => submission,
            Ok(None) => {
                rejected += 1;
                continue;
            }
            Err(e) => {
                eprintln!("{}: {e:#}", input.label());
                rejected += 1;
                continue;
            }
        };
        match submit(&store, &input.path, submission).await {
            Ok(id) => jobs.push((input, id)),
            Err(e @ JobError::Storage(_)) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "submitting {} ({} files were submitted before it and keep going: `voxctl \
                     jobs` lists them)",
                    input.path.display(),
                    jobs.len()
                )));
            }
            Err(e) => {
                eprintln!("{}: [{}] {e}", input.label(), e.code());
                rejected += 1;
            }
        }
    }
    if wait.no_wait {
        for (_, id) in &jobs {
            println!("{id}");
        }
        return Ok(if rejected > 0 { 1 } else { 0 });
    }
    let bars = MultiProgress::new();
    let overall = (jobs.len() > MAX_BARS).then(|| {
        bars.add(ticking_bar(
            jobs.len() as u64,
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files ended",
        ))
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout_s);
    let ends = futures::future::join_all(jobs.iter().map(|(input, id)| {
        let bar = match overall {
            Some(_) => ProgressBar::hidden(),
            None => {
                let bar = bars.add(job_bar());
                bar.set_prefix(input.label());
                bar
            }
        };
        let (store, overall) = (&store, overall.as_ref());
        async move {
            let Some(status) = track(store, id, bar, deadline).await? else {
                return anyhow::Ok(None);
            };
            let code = finish(store, &status, &wait.out.join(&input.out_dir), false).await?;
            if let Some(overall) = overall {
                overall.inc(1);
            }
            Ok(Some((status, code)))
        }
    }))
    .await;
    if let Some(overall) = overall {
        overall.finish_and_clear();
    }
    let (mut done, mut failed, mut running, mut records) = (0, rejected, 0, Vec::new());
    for ((input, id), end) in jobs.iter().zip(ends) {
        match end? {
            Some((status, code)) => {
                if code == 0 {
                    done += 1;
                } else {
                    failed += 1;
                }
                records.push(status_json(&status));
            }
            None => {
                eprintln!(
                    "{}: job {id} still running after {} s; `voxctl job {id} --wait` picks it \
                     up again",
                    input.label(),
                    wait.timeout_s
                );
                running += 1;
            }
        }
    }
    if wait.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    }
    eprintln!(
        "{} files: {done} done, {failed} failed, {running} still running",
        files.len()
    );
    Ok(if failed > 0 {
        1
    } else if running > 0 {
        2
    } else {
        0
    })
}

/// `voxctl transcribe`
pub async fn transcribe(nats: &NatsConfig, args: &TranscribeArgs) -> anyhow::Result<i32> {
    let files = input_files(
        &args.files,
        &voxbridge_shared::audio::EXTENSIONS,
        "audio files (.wav, .mp3, .flac, .ogg, .opus, .webm, .m4a, ...)",
        args.recursive,
    )?;
    let targets = args
        .targets
        .iter()
        .map(|t| flores(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = args.source.as_deref().map(flores).transpose()?;
    // Refuses what the worker would reject (the error names the formats it takes).
    let prepare = |file: &Path| -> anyhow::Result<Result<Submission, String>> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        if let Err(e) = voxbridge_shared::audio::audio_duration_s(&bytes) {
            return Ok(Err(format!("{}: [invalid_audio] {e}", file.display())));
        }
        Ok(Ok(Submission {
            kind: JobKind::Audio,
            file_name: file_name(file),
            bytes: bytes.into(),
            source_lang: source.clone(),
            target_langs: targets.clone(),
            output_format: Some(args.format.into()),
        }))
    };
    if let [file] = files.as_slice() {
        let submission = prepare(&file.path)?.map_err(anyhow::Error::msg)?;
        let mut wait = args.wait.clone();
        wait.out = wait.out.join(&file.out_dir);
        return submit_and_follow(nats, &file.path, submission, &wait).await;
    }
    // Among several files, a file that is not audio is reported and the others go on.
    let prepare_one = |file: &Path| -> anyhow::Result<Option<Submission>> {
        Ok(prepare(file)?
            .inspect_err(|refusal| eprintln!("{refusal}"))
            .ok())
    };
    submit_and_follow_all(nats, &files, &prepare_one, &args.wait).await
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_s);
    let Some(status) = track(store, id, job_bar(), deadline).await? else {
        eprintln!("gave up waiting after {timeout_s} s; job {id} continues");
        return Ok(2);
    };
    finish(store, &status, out, json).await
}

/// A job's progress bar (`{prefix}` names the file when several are followed).
fn job_bar() -> ProgressBar {
    ticking_bar(
        1,
        "{spinner} [{elapsed_precise}] {prefix} {bar:40} {pos}/{len} {msg}",
    )
}

/// A progress bar of `len` steps drawn with `template`, its spinner ticking on its own.
fn ticking_bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Follows a job on `bar` until it ends (its final status) or `deadline` passes (`None`).
async fn track(
    store: &JobStore,
    id: &JobId,
    bar: ProgressBar,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Option<JobStatus>> {
    let mut progress = Box::pin(store.subscribe_progress(id).await?);
    let mut statuses = Box::pin(store.watch(id).await?);
    let status = loop {
        if let Some(status) = store.status(id).await?
            && matches!(status.state, JobState::Succeeded | JobState::Failed)
        {
            break status;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                bar.abandon_with_message("still running; `voxctl job ID --wait` picks it up again");
                return Ok(None);
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
    Ok(Some(status))
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
        match &status.file_name {
            Some(file) => eprintln!("job {} ({file}) failed: [{code}] {message}", status.job_id),
            None => eprintln!("job {} failed: [{code}] {message}", status.job_id),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(files: &[Input]) -> Vec<PathBuf> {
        files.iter().map(|f| f.path.clone()).collect()
    }

    #[test]
    fn folders_give_their_subtitle_files_and_clashing_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for name in ["b.vtt", "a.SRT", "notes.txt", "c.srt.bak", "._a.srt"] {
            std::fs::write(d.join(name), "").expect("write");
        }
        std::fs::create_dir(d.join("nested.srt")).expect("mkdir");
        let lone = d.join("nested.srt").join("x.srt");
        std::fs::write(&lone, "").expect("write");
        let subtitles =
            |inputs: &[PathBuf]| input_files(inputs, &["srt", "vtt"], ".srt or .vtt files", false);
        let files = subtitles(&[d.to_path_buf(), lone.clone()]).expect("files");
        assert_eq!(paths(&files), [d.join("a.SRT"), d.join("b.vtt"), lone]);
        assert!(files.iter().all(|f| f.out_dir == Path::new("")));

        let empty = tempfile::tempdir().expect("tempdir");
        let error = subtitles(&[empty.path().to_path_buf()]).expect_err("empty");
        assert!(
            error.to_string().starts_with("no .srt or .vtt files in"),
            "{error}"
        );
        let error = subtitles(&[d.join("a.SRT"), d.join("missing.srt")]).expect_err("missing");
        assert!(error.to_string().ends_with("missing.srt"), "{error}");

        std::fs::write(d.join("nested.srt").join("a.SRT"), "").expect("write");
        let error = subtitles(&[d.to_path_buf(), d.join("nested.srt")]).expect_err("clash");
        assert!(error.to_string().contains("have the same name"), "{error}");
        // `film.srt` and `film.vtt` would both give `film.vi.srt` with `--format srt`.
        let other = tempfile::tempdir().expect("tempdir");
        std::fs::write(other.path().join("a.vtt"), "").expect("write");
        let error = subtitles(&[d.join("a.SRT"), other.path().join("a.vtt")]).expect_err("stems");
        assert!(error.to_string().contains("have the same name"), "{error}");
    }

    #[test]
    fn recursive_folders_keep_their_layout_and_skip_hidden_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in [
            "Season 1",
            "Season 2/extras",
            "archive/old",
            ".git",
            "empty",
        ] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        for name in [
            "Season 1/ep01.srt",
            "Season 1/ep02.vtt",
            "Season 1/._ep01.srt",
            "Season 2/ep01.srt",
            "Season 2/extras/making-of.vtt",
            "archive/old/x.srt",
            ".git/ep01.srt",
            "pilot.srt",
        ] {
            std::fs::write(d.join(name), "").expect("write");
        }
        let subtitles = |inputs: &[PathBuf], recursive| {
            input_files(inputs, &["srt", "vtt"], ".srt or .vtt files", recursive)
        };
        let files = subtitles(&[d.to_path_buf()], true).expect("files");
        let found: Vec<(String, String)> = files
            .iter()
            .map(|f| (f.label(), f.out_dir.display().to_string()))
            .collect();
        let expected = [
            ("Season 1/ep01.srt", "Season 1"),
            ("Season 1/ep02.vtt", "Season 1"),
            ("Season 2/ep01.srt", "Season 2"),
            ("Season 2/extras/making-of.vtt", "Season 2/extras"),
            ("archive/old/x.srt", "archive/old"),
            ("pilot.srt", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        // `Season 1/ep01.srt` and `Season 2/ep01.srt` share a name but not a directory.
        assert_eq!(found, expected);
        // Without --recursive only the top level, and the error for a folder of folders says why.
        assert_eq!(
            paths(&subtitles(&[d.to_path_buf()], false).expect("files")),
            [d.join("pilot.srt")]
        );
        let error = subtitles(&[d.join("archive")], false).expect_err("only a subfolder");
        assert!(error.to_string().contains("without --recursive"), "{error}");
        let error = subtitles(&[d.join("empty")], true).expect_err("empty");
        assert!(
            error.to_string().ends_with("or its subdirectories"),
            "{error}"
        );
        // A hidden directory named on the command line is taken.
        assert_eq!(
            paths(&subtitles(&[d.join(".git")], true).expect("named")),
            [d.join(".git/ep01.srt")]
        );
        // Within one output directory a clash is still refused.
        std::fs::write(d.join("Season 1/ep01.vtt"), "").expect("write");
        let error = subtitles(&[d.to_path_buf()], true).expect_err("clash");
        assert!(error.to_string().contains("have the same name"), "{error}");
    }
}
