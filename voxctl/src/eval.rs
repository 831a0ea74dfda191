//! `voxctl eval SET_DIR`: runs a directory of recorded cases through live sessions and reports
//! what a user gets — transcript quality (WER), translation quality (BLEU, chrF++), the latencies
//! a user waits and the real-time factor — as `report.json`, `report.md` and `latency.svg`.
//! `--compare OLD.json` prints the change against an earlier report and fails on a regression;
//! `voxctl eval-ratio` compares two reports of one set run with two configurations (e.g. an int8
//! against a float32 MT model), which is the study's acceptance test for quantisation.
//!
//! Data flow: [`discover`] reads the set into [`Case`]s; each case is streamed through
//! [`stream_file`], one after the other, into a [`CaseRun`]; [`Report::build`] scores the runs
//! with [`voxbridge_shared::eval`] (sacreBLEU's BLEU and chrF++, jiwer's WER after Whisper's
//! normaliser); the report is written ([`Report::write`]: JSON, [`Report::markdown`],
//! [`latency_svg`]) and compared ([`compare`], [`ratios`]).
//!
//! A set directory holds, per case `NAME`:
//!
//! ```text
//! NAME.wav       the audio: WAV, or any format `voxctl transcribe` reads (NAME.mp3, .flac,
//!                .ogg/.oga/.opus, .webm, .m4a/.mp4, .aac); converted to 16 kHz mono
//! NAME.txt       its reference transcript (required)
//! NAME.LANG.txt  a reference translation into LANG, the API's code (`vi`, `zh-Hans`); optional
//! ```
//!
//! Every file is one segment: its lines are joined by spaces. A case's hypothesis is its finals
//! joined by spaces; its translation into a language is the translations of its finals, in the
//! order of the finals, joined by spaces. Corpus scores treat each case as one segment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::{
    BLACK, ChartBuilder, Color, DrawingArea, IntoDrawingArea, LineSeries, Palette, Palette99,
    PathElement, SVGBackend, SeriesLabelPosition, WHITE,
};
use serde::{Deserialize, Serialize};
// File extensions taken for a case's audio (any case).
use voxbridge_shared::audio::EXTENSIONS as AUDIO_EXTENSIONS;
use voxbridge_shared::eval::{self, BleuScore, Chrf, ChrfScore, EvalError as ScoreError};
use voxbridge_shared::messages::AUDIO_SAMPLE_RATE_HZ;

use crate::bench::Summary;
use crate::live::{EdgeArgs, SessionTimes, Speed, read_audio_16k, stream_file};

/// Version of the report's JSON layout: `--compare` and `eval-ratio` read this version only.
pub const SCHEMA_VERSION: u64 = 1;

/// Exit code of a regression (`eval --compare`) or a failed acceptance test (`eval-ratio`).
pub const EXIT_REGRESSION: i32 = 2;

/// The study's bar for quantisation: the candidate keeps at least 97 % of the baseline's BLEU…
pub const MIN_BLEU_RATIO: f64 = 0.97;

/// …and at least 98 % of its chrF++.
pub const MIN_CHRF_RATIO: f64 = 0.98;

/// Largest WER increase over the baseline, in percentage points, that `eval-ratio --judge
/// transcript|both` lets pass.
pub const MAX_WER_INCREASE: f64 = 1.0;

/// Files written into `--out`.
const REPORT_JSON: &str = "report.json";
const REPORT_MD: &str = "report.md";
const LATENCY_SVG: &str = "latency.svg";

/// Width and height of `latency.svg`, in pixels.
const PLOT_SIZE: (u32, u32) = (960, 720);

/// `voxctl eval`
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Directory of cases: `NAME.wav` (audio; also .mp3, .flac, .ogg, .oga, .opus, .webm, .m4a,
    /// .mp4, .aac), `NAME.txt` (reference transcript) and optional `NAME.LANG.txt` (reference
    /// translations, e.g. `talk.vi.txt`).
    pub set_dir: PathBuf,
    #[command(flatten)]
    pub edge: EdgeArgs,
    /// Spoken language of every case.
    #[arg(long, default_value = "en")]
    pub source: String,
    /// Target languages, comma-separated (default: the languages the set has reference
    /// translations for).
    #[arg(long = "to", value_delimiter = ',')]
    pub targets: Vec<String>,
    /// How fast the audio is sent. At `realtime` the RTF is at least 1 by construction and the
    /// latencies are the numbers to watch; at `max` the RTF is the processing speed.
    #[arg(long, value_enum, default_value_t = Speed::Realtime)]
    pub speed: Speed,
    /// Directory for report.json, report.md and latency.svg.
    #[arg(long, default_value = "eval-report")]
    pub out: PathBuf,
    /// Free text stored in the report to say what ran (e.g. `int8`).
    #[arg(long)]
    pub label: Option<String>,
    /// An earlier report.json: print the changes and exit 2 on a regression beyond the
    /// thresholds.
    #[arg(long, value_name = "OLD.json")]
    pub compare: Option<PathBuf>,
    #[command(flatten)]
    pub thresholds: Thresholds,
}

/// How much worse than the `--compare` report a run may be before it counts as a regression.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Thresholds {
    /// Largest overall WER increase allowed, in percentage points.
    #[arg(long, default_value_t = 1.0)]
    pub max_wer_increase: f64,
    /// Largest BLEU drop allowed per language, in points.
    #[arg(long, default_value_t = 1.0)]
    pub max_bleu_drop: f64,
    /// Largest chrF++ drop allowed per language, in points.
    #[arg(long, default_value_t = 1.0)]
    pub max_chrf_drop: f64,
    /// Largest relative increase of the overall final-latency p50 (0.25 = +25 %); checked only
    /// when both runs used the same --speed.
    #[arg(long, default_value_t = 0.25)]
    pub max_latency_increase: f64,
}

/// `voxctl eval-ratio`
#[derive(Debug, Clone, clap::Args)]
pub struct EvalRatioArgs {
    /// Report of the reference configuration (e.g. float32).
    #[arg(long, value_name = "REPORT.json")]
    pub baseline: PathBuf,
    /// Report of the configuration under test (e.g. int8), on the same set.
    #[arg(long, value_name = "REPORT.json")]
    pub candidate: PathBuf,
    /// Smallest candidate/baseline BLEU ratio that passes.
    #[arg(long, default_value_t = MIN_BLEU_RATIO)]
    pub min_bleu_ratio: f64,
    /// Smallest candidate/baseline chrF++ ratio that passes.
    #[arg(long, default_value_t = MIN_CHRF_RATIO)]
    pub min_chrf_ratio: f64,
    /// What decides the verdict: the translation scores (an MT comparison), the transcript's
    /// WER (an STT comparison; the reports need no translation scores) or both.
    #[arg(long, value_enum, default_value_t = Judge::Translation)]
    pub judge: Judge,
    /// Largest WER increase of the candidate over the baseline that passes, in percentage
    /// points (absolute: 4.0 % → 5.0 % is +1.0); used with --judge transcript|both.
    #[arg(long, value_name = "POINTS", default_value_t = MAX_WER_INCREASE)]
    pub max_wer_increase: f64,
}

impl EvalRatioArgs {
    /// The bars these arguments set.
    pub fn bars(&self) -> RatioBars {
        RatioBars {
            judge: self.judge,
            min_bleu_ratio: self.min_bleu_ratio,
            min_chrf_ratio: self.min_chrf_ratio,
            max_wer_increase: self.max_wer_increase,
        }
    }
}

/// What `eval-ratio` judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Judge {
    /// BLEU and chrF++ ratios in every language (comparing MT configurations).
    #[default]
    Translation,
    /// The WER increase only (comparing STT configurations).
    Transcript,
    /// Both the translation ratios and the WER increase.
    Both,
}

impl Judge {
    /// Whether the translation ratios decide the verdict.
    pub fn translations(self) -> bool {
        matches!(self, Self::Translation | Self::Both)
    }

    /// Whether the WER increase decides the verdict.
    pub fn transcript(self) -> bool {
        matches!(self, Self::Transcript | Self::Both)
    }
}

/// The bars of a configuration comparison (`eval-ratio`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioBars {
    pub judge: Judge,
    /// Smallest candidate/baseline BLEU ratio that passes.
    pub min_bleu_ratio: f64,
    /// Smallest candidate/baseline chrF++ ratio that passes.
    pub min_chrf_ratio: f64,
    /// Largest WER increase that passes, in percentage points.
    pub max_wer_increase: f64,
}

impl Default for RatioBars {
    /// The study's bars, judging the translations.
    fn default() -> Self {
        Self {
            judge: Judge::Translation,
            min_bleu_ratio: MIN_BLEU_RATIO,
            min_chrf_ratio: MIN_CHRF_RATIO,
            max_wer_increase: MAX_WER_INCREASE,
        }
    }
}

/// Why a set or a report could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} has no reference transcript: expected {}", .audio.display(), .expected.display())]
    MissingTranscript { audio: PathBuf, expected: PathBuf },
    #[error(
        "no cases in {}: a case is an audio file NAME.wav (or .{}) with its reference \
         transcript NAME.txt",
        .0.display(),
        AUDIO_EXTENSIONS[1..].join(", .")
    )]
    NoCases(PathBuf),
    #[error("case {name} has two audio files, {}: keep one", .files.join(" and "))]
    TwoAudioFiles { name: String, files: Vec<String> },
    #[error("{} is not a voxctl eval report", .path.display())]
    NotAReport {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not a voxctl eval report (it has no schema version)", .0.display())]
    NoSchema(PathBuf),
    #[error(
        "{} is a report of schema {found}; this voxctl reads schema {SCHEMA_VERSION} only",
        .path.display()
    )]
    Schema { path: PathBuf, found: u64 },
    #[error("{baseline} and {candidate} ran different cases: a ratio needs one set")]
    DifferentSets { baseline: String, candidate: String },
    #[error(
        "{0} has no translation scores: run `voxctl eval` on a set with reference translations, \
         or judge the transcripts only (`eval-ratio --judge transcript`)"
    )]
    NoTranslationScores(String),
    #[error("scoring")]
    Score(#[from] ScoreError),
    #[error("cannot draw the latency plot")]
    Plot(#[from] DrawingAreaErrorKind<std::io::Error>),
}

/// One case of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The file stem the case's files share.
    pub name: String,
    pub audio: PathBuf,
    /// Reference transcript, as one segment.
    pub reference: String,
    /// Reference translation per language, each as one segment.
    pub translations: BTreeMap<String, String>,
}

/// The cases of `dir`, sorted by name.
pub fn discover(dir: &Path) -> Result<Vec<Case>, EvalError> {
    let read_error = |source| EvalError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        if let Some(name) = entry.map_err(read_error)?.file_name().to_str() {
            files.insert(name.to_string());
        }
    }
    // NAME -> its audio file's name (a case has exactly one).
    let mut audio: BTreeMap<&str, &str> = BTreeMap::new();
    for file in &files {
        let Some(stem) = audio_stem(file) else {
            continue;
        };
        if let Some(other) = audio.insert(stem, file) {
            let mut both = vec![other.to_string(), file.clone()];
            both.sort();
            return Err(EvalError::TwoAudioFiles {
                name: stem.to_string(),
                files: both,
            });
        }
    }
    if audio.is_empty() {
        return Err(EvalError::NoCases(dir.to_path_buf()));
    }
    let mut cases = Vec::with_capacity(audio.len());
    for (stem, audio_file) in &audio {
        let transcript = format!("{stem}.txt");
        if !files.contains(&transcript) {
            return Err(EvalError::MissingTranscript {
                audio: dir.join(audio_file),
                expected: dir.join(transcript),
            });
        }
        let mut translations = BTreeMap::new();
        for file in &files {
            let Some(lang) = translation_language(stem, file) else {
                continue;
            };
            // `a.vi.txt` beside `a.vi.wav` is that case's transcript, not a translation of `a`.
            if !audio.contains_key(format!("{stem}.{lang}").as_str()) {
                translations.insert(lang.to_string(), read_reference(&dir.join(file))?);
            }
        }
        cases.push(Case {
            name: stem.to_string(),
            audio: dir.join(audio_file),
            reference: read_reference(&dir.join(transcript))?,
            translations,
        });
    }
    Ok(cases)
}

/// `NAME` when `file` is `NAME.<audio extension>`.
fn audio_stem(file: &str) -> Option<&str> {
    let (stem, extension) = file.rsplit_once('.')?;
    let audio = AUDIO_EXTENSIONS
        .iter()
        .any(|e| e.eq_ignore_ascii_case(extension));
    (audio && !stem.is_empty()).then_some(stem)
}

/// `LANG` when `file` is `STEM.LANG.txt`.
fn translation_language<'a>(stem: &str, file: &'a str) -> Option<&'a str> {
    let lang = file
        .strip_prefix(stem)?
        .strip_prefix('.')?
        .strip_suffix(".txt")?;
    let code = lang.starts_with(|c: char| c.is_ascii_alphabetic())
        && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    code.then_some(lang)
}

/// A reference file as one segment.
fn read_reference(path: &Path) -> Result<String, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(join_segments(eval::lines(&text)))
}

/// Pieces of text as one segment: trimmed, empty ones left out, joined by single spaces.
fn join_segments<S: AsRef<str>>(pieces: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for piece in pieces {
        let piece = piece.as_ref().trim();
        if !piece.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(piece);
        }
    }
    out
}

/// The languages the set has reference translations for, sorted.
pub fn reference_languages(cases: &[Case]) -> Vec<String> {
    let languages: BTreeSet<&String> = cases.iter().flat_map(|c| c.translations.keys()).collect();
    languages.into_iter().cloned().collect()
}

/// What streaming one case measured.
#[derive(Debug, Clone)]
pub struct CaseRun {
    pub times: SessionTimes,
    /// Seconds of audio.
    pub audio_s: f64,
    /// Wall-clock seconds from connecting to the end of the session (which waits for the last
    /// translations).
    pub elapsed_s: f64,
}

/// Streams one case through a live session.
async fn run_case(args: &EvalArgs, targets: &[String], case: &Case) -> anyhow::Result<CaseRun> {
    let samples = read_audio_16k(&case.audio)?;
    anyhow::ensure!(
        !samples.is_empty(),
        "{} holds no audio",
        case.audio.display()
    );
    let started = Instant::now();
    let times = stream_file(
        &args.edge,
        &args.source,
        targets,
        &samples,
        args.speed.realtime(),
        |_| {},
    )
    .await?;
    Ok(CaseRun {
        times,
        audio_s: samples.len() as f64 / f64::from(AUDIO_SAMPLE_RATE_HZ),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// What was run, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub label: Option<String>,
    pub speed: Speed,
    /// When the run ended, RFC 3339 (UTC).
    pub created: String,
    pub set_dir: PathBuf,
    pub url: String,
    pub source: String,
    pub targets: Vec<String>,
}

/// The report of one `voxctl eval` run (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u64,
    #[serde(flatten)]
    pub run: RunInfo,
    pub cases: Vec<CaseResult>,
    pub overall: Overall,
}

/// One case's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    pub audio_s: f64,
    pub elapsed_s: f64,
    /// Real-time factor, `elapsed_s / audio_s`. At `realtime` speed it is at least 1 by
    /// construction (sending the audio takes as long as the audio) and the final latency is the
    /// number to watch; at `max` speed it is the processing speed.
    pub rtf: f64,
    /// The finals, as one segment.
    pub hypothesis: String,
    pub reference: String,
    /// WER (0 = perfect; can exceed 1).
    pub wer: f64,
    pub word_errors: u64,
    pub ref_words: u64,
    /// Per target language.
    pub translations: BTreeMap<String, CaseTranslation>,
    /// Seconds from sending the audio of the first partial's first word to receiving it.
    pub first_partial_s: Option<f64>,
    /// Seconds from sending the audio that ends a final to receiving it.
    pub final_latency: Option<Summary>,
    /// Seconds from sending the audio that ends a sentence to receiving its translation.
    pub translation_latency: Option<Summary>,
    /// Each final's latency against the audio time where it ends, in order.
    pub final_points: Vec<LatencyPoint>,
    /// Each translation's latency against the audio time where its sentence ends, in order.
    pub translation_points: Vec<LatencyPoint>,
    pub errors: Vec<String>,
    pub close_code: Option<u16>,
}

impl CaseResult {
    /// Whether the session reported errors or did not close cleanly.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.close_code != Some(1000)
    }
}

/// A case's translation into one language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseTranslation {
    pub hypothesis: String,
    /// The reference translation, when the set has one; the scores are there with it.
    pub reference: Option<String>,
    pub bleu: Option<f64>,
    pub chrf_plus_plus: Option<f64>,
}

/// A latency at a point of the session's audio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    pub audio_s: f64,
    pub latency_s: f64,
}

/// Results over all cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overall {
    pub audio_s: f64,
    pub elapsed_s: f64,
    /// Total elapsed over total audio (see [`CaseResult::rtf`]).
    pub rtf: f64,
    /// Corpus WER: word errors over all cases / reference words over all cases.
    pub wer: f64,
    pub word_errors: u64,
    pub ref_words: u64,
    /// Corpus scores per language with reference translations.
    pub translations: BTreeMap<String, LanguageScores>,
    /// Over the cases' first partials.
    pub first_partial: Option<Summary>,
    /// Over all finals of all cases.
    pub final_latency: Option<Summary>,
    /// Over all translations of all cases.
    pub translation_latency: Option<Summary>,
    /// Cases whose session reported errors or did not close cleanly.
    pub failed_cases: usize,
}

/// Corpus BLEU and chrF++ of one language over the cases with a reference translation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageScores {
    /// Cases scored.
    pub cases: usize,
    pub bleu: f64,
    pub chrf_plus_plus: f64,
    /// sacreBLEU's score line: `BLEU = 34.56 70.1/45.2/30.0/20.1 (BP = …)`.
    pub bleu_line: String,
    pub bleu_signature: String,
    pub chrf_signature: String,
}

/// BLEU and chrF++ of hypotheses against one line-aligned reference stream.
fn text_scores<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
) -> Result<(BleuScore, ChrfScore), ScoreError> {
    Ok((
        eval::corpus_bleu(hypotheses, &[references])?,
        Chrf::CHRF_PLUS_PLUS.corpus_score(hypotheses, &[references])?,
    ))
}

/// A case's translation into `target`: its translations in the order of the finals they
/// translate (not of arrival) as one segment. A translation of an unknown final goes last.
fn translation_hypothesis(times: &SessionTimes, target: &str) -> String {
    let position = |segment: &str| {
        times
            .final_segment_ids
            .iter()
            .position(|id| id == segment)
            .unwrap_or(usize::MAX)
    };
    let mut translations: Vec<_> = times
        .translations
        .iter()
        .filter(|t| t.target == target)
        .collect();
    translations.sort_by_key(|t| position(&t.segment_id));
    join_segments(translations.iter().map(|t| &t.text))
}

/// Summary of a non-empty sample.
fn summary(samples: Vec<f64>) -> Option<Summary> {
    (!samples.is_empty()).then(|| Summary::of(samples))
}

/// Latencies against audio times, ordered by audio time.
fn points(audio_s: &[f64], latency_s: &[f64]) -> Vec<LatencyPoint> {
    let mut points: Vec<LatencyPoint> = audio_s
        .iter()
        .zip(latency_s)
        .map(|(&audio_s, &latency_s)| LatencyPoint { audio_s, latency_s })
        .collect();
    points.sort_by(|a, b| a.audio_s.total_cmp(&b.audio_s));
    points
}

impl Report {
    /// Scores the runs of the cases.
    pub fn build(run: RunInfo, results: &[(&Case, CaseRun)]) -> Result<Self, EvalError> {
        let hypotheses: Vec<String> = results
            .iter()
            .map(|(_, r)| join_segments(&r.times.finals))
            .collect();
        let references: Vec<&str> = results.iter().map(|(c, _)| c.reference.as_str()).collect();
        let wer = eval::corpus_wer(&hypotheses, &references)?;

        let mut cases = Vec::with_capacity(results.len());
        for (((case, r), hypothesis), line) in results.iter().zip(hypotheses).zip(&wer.lines) {
            let mut translations = BTreeMap::new();
            for target in &run.targets {
                let hypothesis = translation_hypothesis(&r.times, target);
                let reference = case.translations.get(target).cloned();
                let scores = reference
                    .as_ref()
                    .map(|reference| text_scores(&[&hypothesis], &[reference]))
                    .transpose()?;
                translations.insert(
                    target.clone(),
                    CaseTranslation {
                        bleu: scores.as_ref().map(|(bleu, _)| bleu.score),
                        chrf_plus_plus: scores.as_ref().map(|(_, chrf)| chrf.score),
                        hypothesis,
                        reference,
                    },
                );
            }
            cases.push(CaseResult {
                name: case.name.clone(),
                audio_s: r.audio_s,
                elapsed_s: r.elapsed_s,
                rtf: r.elapsed_s / r.audio_s,
                hypothesis,
                reference: case.reference.clone(),
                wer: line.wer,
                word_errors: line.errors,
                ref_words: line.ref_words,
                translations,
                first_partial_s: r.times.first_partial_s,
                final_latency: summary(r.times.final_s.clone()),
                translation_latency: summary(r.times.translation_s.clone()),
                final_points: points(&r.times.final_audio_s, &r.times.final_s),
                translation_points: points(&r.times.translation_audio_s, &r.times.translation_s),
                errors: r.times.errors.clone(),
                close_code: r.times.close_code,
            });
        }

        let mut translations = BTreeMap::new();
        for target in &run.targets {
            let (hypotheses, references): (Vec<&str>, Vec<&str>) = cases
                .iter()
                .filter_map(|c| {
                    let t = c.translations.get(target)?;
                    Some((t.hypothesis.as_str(), t.reference.as_deref()?))
                })
                .unzip();
            if hypotheses.is_empty() {
                continue;
            }
            let (bleu, chrf) = text_scores(&hypotheses, &references)?;
            translations.insert(
                target.clone(),
                LanguageScores {
                    cases: hypotheses.len(),
                    bleu: bleu.score,
                    chrf_plus_plus: chrf.score,
                    bleu_line: bleu.to_string(),
                    bleu_signature: bleu.signature,
                    chrf_signature: chrf.signature,
                },
            );
        }

        let all = |f: fn(&SessionTimes) -> &[f64]| {
            summary(
                results
                    .iter()
                    .flat_map(|(_, r)| f(&r.times))
                    .copied()
                    .collect(),
            )
        };
        let audio_s: f64 = cases.iter().map(|c| c.audio_s).sum();
        let elapsed_s: f64 = cases.iter().map(|c| c.elapsed_s).sum();
        let overall = Overall {
            audio_s,
            elapsed_s,
            rtf: elapsed_s / audio_s,
            wer: wer.wer,
            word_errors: wer.errors,
            ref_words: wer.ref_words,
            translations,
            first_partial: summary(
                results
                    .iter()
                    .filter_map(|(_, r)| r.times.first_partial_s)
                    .collect(),
            ),
            final_latency: all(|t| &t.final_s),
            translation_latency: all(|t| &t.translation_s),
            failed_cases: cases.iter().filter(|c| c.failed()).count(),
        };
        Ok(Self {
            schema: SCHEMA_VERSION,
            run,
            cases,
            overall,
        })
    }

    /// The report as Markdown: one row per case and an overall row.
    pub fn markdown(&self) -> String {
        let run = &self.run;
        let o = &self.overall;
        let mut out = String::new();
        let title = run
            .label
            .as_ref()
            .map_or(String::new(), |l| format!(": {l}"));
        let targets = if run.targets.is_empty() {
            "no translation".to_string()
        } else {
            run.targets.join(", ")
        };
        let _ = writeln!(out, "# voxctl eval{title}\n");
        let _ = writeln!(
            out,
            "{} cases from `{}`, {} → {targets}, {} speed, {}.\n",
            self.cases.len(),
            run.set_dir.display(),
            run.source,
            speed_name(run.speed),
            run.created
        );

        let languages: Vec<&String> = o.translations.keys().collect();
        let mut header = String::from("| case | audio (s) | WER |");
        for lang in &languages {
            let _ = write!(header, " BLEU {lang} | chrF++ {lang} |");
        }
        header.push_str(
            " first partial (s) | final p50 / p95 (s) | translation p50 / p95 (s) | RTF | errors |",
        );
        let columns = header.matches('|').count() - 1;
        out.push_str(&header);
        out.push('\n');
        out.push_str(&"|---".repeat(columns));
        out.push_str("|\n");
        for c in &self.cases {
            let _ = write!(
                out,
                "| {} | {:.1} | {} |",
                c.name,
                c.audio_s,
                percent(c.wer)
            );
            for lang in &languages {
                let t = c.translations.get(*lang);
                let _ = write!(
                    out,
                    " {} | {} |",
                    number(t.and_then(|t| t.bleu)),
                    number(t.and_then(|t| t.chrf_plus_plus))
                );
            }
            let _ = writeln!(
                out,
                " {} | {} | {} | {:.2} | {} |",
                number(c.first_partial_s),
                p50_p95(&c.final_latency),
                p50_p95(&c.translation_latency),
                c.rtf,
                errors_cell(c)
            );
        }
        let _ = write!(
            out,
            "| **overall** | {:.1} | {} |",
            o.audio_s,
            percent(o.wer)
        );
        for scores in o.translations.values() {
            let _ = write!(out, " {:.2} | {:.2} |", scores.bleu, scores.chrf_plus_plus);
        }
        let _ = writeln!(
            out,
            " {} | {} | {} | {:.2} | {} failed |\n",
            p50_p95(&o.first_partial),
            p50_p95(&o.final_latency),
            p50_p95(&o.translation_latency),
            o.rtf,
            o.failed_cases
        );

        let _ = writeln!(
            out,
            "- WER: jiwer's corpus WER after Whisper's basic normaliser ({} errors / {} \
             reference words).",
            o.word_errors, o.ref_words
        );
        for (lang, s) in &o.translations {
            let _ = writeln!(
                out,
                "- {lang}, over the {} of {} cases with a reference: {}; BLEU `{}`, chrF++ `{}`.",
                s.cases,
                self.cases.len(),
                s.bleu_line,
                s.bleu_signature,
                s.chrf_signature
            );
        }
        out.push_str(
            "- Latencies: seconds from sending the audio that ends a sentence (first partial: its \
             first word) to receiving it.\n- RTF: wall-clock time / audio time.\n",
        );
        out
    }

    /// Writes `report.json`, `report.md` and `latency.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = [
            (REPORT_JSON, serde_json::to_string_pretty(self)? + "\n"),
            (REPORT_MD, self.markdown()),
            (LATENCY_SVG, latency_svg(self)?),
        ];
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// The `--speed` value's name.
fn speed_name(speed: Speed) -> &'static str {
    match speed {
        Speed::Realtime => "realtime",
        Speed::Max => "max",
    }
}

fn percent(rate: f64) -> String {
    format!("{:.2} %", 100.0 * rate)
}

fn number(value: Option<f64>) -> String {
    value.map_or("—".to_string(), |v| format!("{v:.2}"))
}

fn p50_p95(summary: &Option<Summary>) -> String {
    summary.as_ref().map_or("—".to_string(), |s| {
        format!("{:.2} / {:.2}", s.p50, s.p95)
    })
}

/// Error count, and the close code when the session did not close cleanly.
fn errors_cell(case: &CaseResult) -> String {
    match case.close_code {
        Some(1000) => case.errors.len().to_string(),
        Some(code) => format!("{} (closed {code})", case.errors.len()),
        None => format!("{} (no close)", case.errors.len()),
    }
}

/// The latency plot: each final's latency (top) and each translation's (bottom) against the
/// audio time where its sentence ends, one line per case.
pub fn latency_svg(report: &Report) -> Result<String, EvalError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(PLOT_SIZE.1 / 2);
        let x_max = report.cases.iter().map(|c| c.audio_s).fold(1.0, f64::max);
        let finals: Vec<_> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.final_points.as_slice()))
            .collect();
        let translations: Vec<_> = report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.translation_points.as_slice()))
            .collect();
        draw_panel(&top, "Final transcript latency", x_max, &finals)?;
        draw_panel(&bottom, "Translation latency", x_max, &translations)?;
        root.present()?;
    }
    Ok(svg)
}

/// One panel of the latency plot: a line per case with points (colours follow the case order).
fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_max: f64,
    series: &[(&str, &[LatencyPoint])],
) -> Result<(), DrawingAreaErrorKind<std::io::Error>> {
    let y_max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.latency_s))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("audio time where the sentence ends (s)")
        .y_desc("latency (s)")
        .draw()?;
    let mut drawn = false;
    for (i, (name, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let style = Palette99::pick(i).stroke_width(2);
        chart
            .draw_series(
                LineSeries::new(points.iter().map(|p| (p.audio_s, p.latency_s)), style)
                    .point_size(3),
            )?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        drawn = true;
    }
    if drawn {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// Reads a `report.json`, refusing other schema versions.
pub fn load_report(path: &Path) -> Result<Report, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let not_a_report = |source| EvalError::NotAReport {
        path: path.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_report)?;
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(EvalError::Schema {
                path: path.to_path_buf(),
                found,
            });
        }
        None => return Err(EvalError::NoSchema(path.to_path_buf())),
    }
    serde_json::from_value(value).map_err(not_a_report)
}

/// How a metric's values and changes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// A rate, shown in percent; changes in percentage points.
    Percent,
    /// A score of 0..=100.
    Points,
    Seconds,
    Ratio,
}

impl Unit {
    fn value(self, v: f64) -> String {
        match self {
            Unit::Percent => percent(v),
            Unit::Points | Unit::Ratio => format!("{v:.2}"),
            Unit::Seconds => format!("{v:.2} s"),
        }
    }

    fn change(self, old: f64, new: f64) -> String {
        match self {
            Unit::Percent => format!("{:+.2} points", 100.0 * (new - old)),
            Unit::Points | Unit::Ratio => format!("{:+.2}", new - old),
            Unit::Seconds if old > 0.0 => {
                format!("{:+.2} s ({:+.0} %)", new - old, 100.0 * (new / old - 1.0))
            }
            Unit::Seconds => format!("{:+.2} s", new - old),
        }
    }
}

/// The headline metrics of a report, in table order.
fn headline(report: &Report) -> Vec<(String, Unit, Option<f64>)> {
    let o = &report.overall;
    let p50 = |s: &Option<Summary>| s.as_ref().map(|s| s.p50);
    let mut rows = vec![("WER".to_string(), Unit::Percent, Some(o.wer))];
    for (lang, s) in &o.translations {
        rows.push((format!("BLEU {lang}"), Unit::Points, Some(s.bleu)));
        rows.push((
            format!("chrF++ {lang}"),
            Unit::Points,
            Some(s.chrf_plus_plus),
        ));
    }
    rows.extend([
        (
            "first partial p50".to_string(),
            Unit::Seconds,
            p50(&o.first_partial),
        ),
        (
            "final p50".to_string(),
            Unit::Seconds,
            p50(&o.final_latency),
        ),
        (
            "translation p50".to_string(),
            Unit::Seconds,
            p50(&o.translation_latency),
        ),
        ("RTF".to_string(), Unit::Ratio, Some(o.rtf)),
    ]);
    rows
}

/// One row of `--compare`'s table.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparisonRow {
    pub metric: String,
    unit: Unit,
    pub old: Option<f64>,
    pub new: Option<f64>,
}

/// A report against an earlier one.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What the old report was (label and time).
    pub old: String,
    pub rows: Vec<ComparisonRow>,
    /// Changes beyond the thresholds.
    pub regressions: Vec<String>,
    /// What was not compared, and why.
    pub notes: Vec<String>,
}

/// Compares `new` with `old`. A regression is a change beyond a threshold in the bad direction,
/// or a language scored in `old` and not in `new`.
pub fn compare(old: &Report, new: &Report, thresholds: &Thresholds) -> Comparison {
    let old_rows = headline(old);
    let new_rows = headline(new);
    let mut rows: Vec<ComparisonRow> = new_rows
        .iter()
        .map(|(metric, unit, value)| ComparisonRow {
            metric: metric.clone(),
            unit: *unit,
            old: old_rows
                .iter()
                .find(|(m, ..)| m == metric)
                .and_then(|(.., v)| *v),
            new: *value,
        })
        .collect();
    for (metric, unit, value) in old_rows {
        if !new_rows.iter().any(|(m, ..)| *m == metric) {
            rows.push(ComparisonRow {
                metric,
                unit,
                old: value,
                new: None,
            });
        }
    }

    let mut notes = Vec::new();
    let names = |r: &Report| r.cases.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if names(old) != names(new) {
        notes.push("the reports ran different cases".to_string());
    }
    if old.run.speed != new.run.speed {
        notes.push(format!(
            "latency not checked: the old run was at {} speed, this one at {}",
            speed_name(old.run.speed),
            speed_name(new.run.speed)
        ));
    }
    Comparison {
        old: describe(old),
        rows,
        regressions: regressions(old, new, thresholds),
        notes,
    }
}

/// The changes from `old` to `new` beyond `thresholds`.
fn regressions(old: &Report, new: &Report, t: &Thresholds) -> Vec<String> {
    let (o, n) = (&old.overall, &new.overall);
    let mut found = Vec::new();
    let wer_increase = 100.0 * (n.wer - o.wer);
    if wer_increase > t.max_wer_increase {
        found.push(format!(
            "WER {} → {} ({wer_increase:+.2} points; at most {:+.2} allowed)",
            percent(o.wer),
            percent(n.wer),
            t.max_wer_increase
        ));
    }
    for (lang, before) in &o.translations {
        let Some(after) = n.translations.get(lang) else {
            found.push(format!("{lang}: scored in the old report, not in this one"));
            continue;
        };
        for (metric, before, after, max_drop) in [
            ("BLEU", before.bleu, after.bleu, t.max_bleu_drop),
            (
                "chrF++",
                before.chrf_plus_plus,
                after.chrf_plus_plus,
                t.max_chrf_drop,
            ),
        ] {
            if before - after > max_drop {
                found.push(format!(
                    "{metric} {lang} {before:.2} → {after:.2} ({:+.2}; at most -{max_drop:.2} \
                     allowed)",
                    after - before
                ));
            }
        }
    }
    if old.run.speed == new.run.speed
        && let (Some(before), Some(after)) = (&o.final_latency, &n.final_latency)
        && after.p50 > before.p50 * (1.0 + t.max_latency_increase)
    {
        found.push(format!(
            "final latency p50 {:.2} s → {:.2} s ({:+.0} %; at most {:+.0} % allowed)",
            before.p50,
            after.p50,
            100.0 * (after.p50 / before.p50 - 1.0),
            100.0 * t.max_latency_increase
        ));
    }
    found
}

/// A report's label and time, for headings.
fn describe(report: &Report) -> String {
    match &report.run.label {
        Some(label) => format!("{label} ({})", report.run.created),
        None => report.run.created.clone(),
    }
}

impl Comparison {
    /// The table of changes, then the regressions and notes.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "## Compared with {}\n\n| metric | old | new | change |\n|---|---|---|---|\n",
            self.old
        );
        for row in &self.rows {
            let value = |v: Option<f64>| v.map_or("—".to_string(), |v| row.unit.value(v));
            let change = match (row.old, row.new) {
                (Some(old), Some(new)) => row.unit.change(old, new),
                _ => "—".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {change} |",
                row.metric,
                value(row.old),
                value(row.new)
            );
        }
        if self.regressions.is_empty() {
            out.push_str("\nNo regression beyond the thresholds.\n");
        } else {
            out.push_str("\nRegressions beyond the thresholds:\n");
            for r in &self.regressions {
                let _ = writeln!(out, "- {r}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}.");
        }
        out
    }
}

/// Whether a ratio meets its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The baseline scores 0, so there is no ratio: not a pass.
    Undefined,
}

/// One score of both configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRatio {
    pub baseline: f64,
    pub candidate: f64,
    /// `candidate / baseline`; none when the baseline scores 0.
    pub ratio: Option<f64>,
    pub verdict: Verdict,
}

impl ScoreRatio {
    fn new(baseline: f64, candidate: f64, min_ratio: f64) -> Self {
        let ratio = (baseline > 0.0).then(|| candidate / baseline);
        let verdict = match ratio {
            None => Verdict::Undefined,
            Some(r) if r >= min_ratio => Verdict::Pass,
            Some(_) => Verdict::Fail,
        };
        Self {
            baseline,
            candidate,
            ratio,
            verdict,
        }
    }
}

/// One language's ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageRatios {
    pub lang: String,
    pub bleu: ScoreRatio,
    pub chrf_plus_plus: ScoreRatio,
}

/// The configuration comparison: candidate against baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioReport {
    pub baseline: String,
    pub candidate: String,
    /// What decides [`RatioReport::passed`].
    pub judge: Judge,
    pub min_bleu_ratio: f64,
    pub min_chrf_ratio: f64,
    /// In percentage points.
    pub max_wer_increase: f64,
    /// Languages both reports score.
    pub languages: Vec<LanguageRatios>,
    /// Languages the baseline scores and the candidate does not (a failure when translations
    /// are judged).
    pub missing: Vec<String>,
    pub baseline_wer: f64,
    pub candidate_wer: f64,
}

/// Compares a candidate configuration's report with the baseline's on the same set. Judging
/// translations needs translation scores in the baseline ([`EvalError::NoTranslationScores`]);
/// judging the transcripts only does not, and then reports the ratios of whatever languages
/// there are without judging them.
pub fn ratios(
    baseline: &Report,
    candidate: &Report,
    bars: &RatioBars,
) -> Result<RatioReport, EvalError> {
    let names = |r: &Report| {
        r.cases
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names(baseline) != names(candidate) {
        return Err(EvalError::DifferentSets {
            baseline: describe(baseline),
            candidate: describe(candidate),
        });
    }
    if bars.judge.translations() && baseline.overall.translations.is_empty() {
        return Err(EvalError::NoTranslationScores(describe(baseline)));
    }
    let RatioBars {
        judge,
        min_bleu_ratio,
        min_chrf_ratio,
        max_wer_increase,
    } = *bars;
    let mut languages = Vec::new();
    let mut missing = Vec::new();
    for (lang, b) in &baseline.overall.translations {
        match candidate.overall.translations.get(lang) {
            Some(c) => languages.push(LanguageRatios {
                lang: lang.clone(),
                bleu: ScoreRatio::new(b.bleu, c.bleu, min_bleu_ratio),
                chrf_plus_plus: ScoreRatio::new(b.chrf_plus_plus, c.chrf_plus_plus, min_chrf_ratio),
            }),
            None => missing.push(lang.clone()),
        }
    }
    Ok(RatioReport {
        baseline: describe(baseline),
        candidate: describe(candidate),
        judge,
        min_bleu_ratio,
        min_chrf_ratio,
        max_wer_increase,
        languages,
        missing,
        baseline_wer: baseline.overall.wer,
        candidate_wer: candidate.overall.wer,
    })
}

impl RatioReport {
    /// Whether the candidate meets the bars of what is judged: with translations, both ratios
    /// in every language the baseline scores; with the transcript, the WER increase.
    pub fn passed(&self) -> bool {
        (!self.judge.translations() || self.translations_passed())
            && (!self.judge.transcript() || self.wer_verdict() == Verdict::Pass)
    }

    /// Whether every language the baseline scores meets both ratio bars.
    pub fn translations_passed(&self) -> bool {
        self.missing.is_empty()
            && self.languages.iter().all(|l| {
                l.bleu.verdict == Verdict::Pass && l.chrf_plus_plus.verdict == Verdict::Pass
            })
    }

    /// The candidate's WER minus the baseline's, in percentage points.
    pub fn wer_increase(&self) -> f64 {
        100.0 * (self.candidate_wer - self.baseline_wer)
    }

    /// Whether the WER increase is within `max_wer_increase` (a WER that is not a number
    /// fails).
    pub fn wer_verdict(&self) -> Verdict {
        // Tolerance for the rounding of a difference of two rates that lands on the bar.
        const EPSILON_POINTS: f64 = 1e-9;
        if self.wer_increase() <= self.max_wer_increase + EPSILON_POINTS {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// The table, the WER line and the verdict, in Markdown. The table is left out when no
    /// language is scored (possible when only the transcript is judged).
    pub fn markdown(&self) -> String {
        let mut out = format!("## {} against {}\n\n", self.candidate, self.baseline);
        let any_language = !self.languages.is_empty() || !self.missing.is_empty();
        if any_language && !self.judge.translations() {
            out.push_str("Translation ratios, for information (not judged):\n\n");
        }
        if !self.languages.is_empty() {
            out.push_str(
                "| language | BLEU baseline | BLEU candidate | BLEU ratio | chrF++ baseline | \
                 chrF++ candidate | chrF++ ratio |\n|---|---|---|---|---|---|---|\n",
            );
        }
        let cell = |s: &ScoreRatio| match (s.ratio, s.verdict) {
            (Some(r), verdict) => format!("{r:.3} ({})", verdict_name(verdict)),
            (None, _) => "undefined (baseline 0)".to_string(),
        };
        for l in &self.languages {
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} |",
                l.lang,
                l.bleu.baseline,
                l.bleu.candidate,
                cell(&l.bleu),
                l.chrf_plus_plus.baseline,
                l.chrf_plus_plus.candidate,
                cell(&l.chrf_plus_plus)
            );
        }
        let wer_verdict = if self.judge.transcript() {
            format!(
                "; bar at most {:+.2} points: {}",
                self.max_wer_increase,
                verdict_name(self.wer_verdict())
            )
        } else {
            String::new()
        };
        // A blank line after the table; the heading already ends with one.
        if !self.languages.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "WER: baseline {}, candidate {} ({:+.2} points{wer_verdict}).",
            percent(self.baseline_wer),
            percent(self.candidate_wer),
            self.wer_increase()
        );
        for lang in &self.missing {
            let _ = writeln!(out, "{lang}: scored in the baseline, not in the candidate.");
        }
        let translation_bars = format!(
            "BLEU ≥ {:.0} % and chrF++ ≥ {:.0} % of the baseline in every language",
            100.0 * self.min_bleu_ratio,
            100.0 * self.min_chrf_ratio
        );
        let wer_bar = format!(
            "WER at most {:+.2} points over the baseline",
            self.max_wer_increase
        );
        let bars = match self.judge {
            Judge::Translation => {
                format!("bars {translation_bars}; an undefined ratio is not a pass")
            }
            Judge::Transcript => format!("bar {wer_bar} (translations not judged)"),
            Judge::Both => {
                format!("bars {translation_bars}, and {wer_bar}; an undefined ratio is not a pass")
            }
        };
        let _ = writeln!(
            out,
            "\n{}: {bars}.",
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Undefined => "undefined",
    }
}

/// `voxctl eval`: runs every case, writes the report into `--out`, prints it (and the
/// comparison with `--compare`). Exit code: 1 when a session failed, else 2 on a regression,
/// else 0.
pub async fn run(args: &EvalArgs) -> anyhow::Result<i32> {
    let cases = discover(&args.set_dir)?;
    // Read the old report first: a wrong path should not cost a whole run.
    let old = args.compare.as_deref().map(load_report).transpose()?;
    let targets = if args.targets.is_empty() {
        reference_languages(&cases)
    } else {
        args.targets.clone()
    };
    let mut results = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        eprint!("[{}/{}] {} … ", i + 1, cases.len(), case.name);
        let run = run_case(args, &targets, case)
            .await
            .with_context(|| format!("case {}", case.name))?;
        eprintln!(
            "{} finals, {} translations, {:.1} s for {:.1} s of audio",
            run.times.finals.len(),
            run.times.translations.len(),
            run.elapsed_s,
            run.audio_s
        );
        results.push((case, run));
    }
    let run = RunInfo {
        label: args.label.clone(),
        speed: args.speed,
        created: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        set_dir: args.set_dir.clone(),
        url: args.edge.url.clone(),
        source: args.source.clone(),
        targets,
    };
    let report = Report::build(run, &results)?;
    report.write(&args.out)?;
    print!("{}", report.markdown());
    eprintln!(
        "wrote {REPORT_JSON}, {REPORT_MD} and {LATENCY_SVG} into {}",
        args.out.display()
    );
    let regressed = old.is_some_and(|old| {
        let comparison = compare(&old, &report, &args.thresholds);
        print!("\n{}", comparison.markdown());
        !comparison.regressions.is_empty()
    });
    Ok(if report.overall.failed_cases > 0 {
        1
    } else if regressed {
        EXIT_REGRESSION
    } else {
        0
    })
}

/// `voxctl eval-ratio`: prints the ratios; exit code 0 when the candidate passes, 2 when not.
pub fn run_ratio(args: &EvalRatioArgs) -> anyhow::Result<i32> {
    let baseline = load_report(&args.baseline)?;
    let candidate = load_report(&args.candidate)?;
    let report = ratios(&baseline, &candidate, &args.bars())?;
    print!("{}", report.markdown());
    Ok(if report.passed() { 0 } else { EXIT_REGRESSION })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::ReceivedTranslation;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn discovers_cases_references_and_translations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for (name, text) in [
            ("b.MP3", ""),
            ("b.txt", "Second case.\r\n\nTwo lines.\n"),
            ("a.wav", ""),
            ("a.txt", "First case."),
            ("a.vi.txt", "Trường hợp đầu tiên."),
            ("a.zh-Hans.txt", "第一个案例。"),
            ("a.x.y.txt", "not a translation"),
            // A case of its own: its transcript is not a translation of `a`.
            ("a.fr.opus", ""),
            ("a.fr.txt", "Premier cas."),
            ("notes.txt", "no audio: not a case"),
            ("cover.jpg", "not audio either"),
        ] {
            write(d, name, text);
        }
        let cases = discover(d).expect("discover");
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "a.fr", "b"]);
        assert_eq!(cases[0].audio, d.join("a.wav"));
        assert_eq!(cases[0].reference, "First case.");
        let languages: Vec<&String> = cases[0].translations.keys().collect();
        assert_eq!(languages, ["vi", "zh-Hans"]);
        assert_eq!(cases[0].translations["vi"], "Trường hợp đầu tiên.");
        assert!(cases[1].translations.is_empty());
        assert_eq!(cases[1].audio, d.join("a.fr.opus"));
        assert_eq!(cases[2].audio, d.join("b.MP3"));
        assert_eq!(cases[2].reference, "Second case. Two lines.");
        assert_eq!(reference_languages(&cases), ["vi", "zh-Hans"]);
    }

    #[test]
    fn a_wav_without_its_transcript_or_an_empty_set_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = discover(dir.path()).expect_err("empty").to_string();
        assert!(error.starts_with("no cases in"), "{error}");
        write(dir.path(), "a.wav", "");
        write(dir.path(), "a.vi.txt", "only a translation");
        let error = discover(dir.path()).expect_err("no transcript").to_string();
        assert!(
            error.contains("a.wav has no reference transcript: expected")
                && error.ends_with("a.txt"),
            "{error}"
        );
        write(dir.path(), "a.txt", "the transcript");
        write(dir.path(), "a.flac", "");
        let error = discover(dir.path())
            .expect_err("two audio files")
            .to_string();
        assert_eq!(
            error,
            "case a has two audio files, a.flac and a.wav: keep one"
        );
    }

    fn case(name: &str, reference: &str, vi: Option<&str>) -> Case {
        Case {
            name: name.to_string(),
            audio: PathBuf::from(format!("{name}.wav")),
            reference: reference.to_string(),
            translations: vi
                .map(|t| BTreeMap::from([("vi".to_string(), t.to_string())]))
                .unwrap_or_default(),
        }
    }

    fn translation(segment_id: &str, text: &str) -> ReceivedTranslation {
        ReceivedTranslation {
            segment_id: segment_id.to_string(),
            target: "vi".to_string(),
            text: text.to_string(),
        }
    }

    fn run_info(speed: Speed) -> RunInfo {
        RunInfo {
            label: Some("int8".to_string()),
            speed,
            created: "2026-05-09T08:00:00Z".to_string(),
            set_dir: PathBuf::from("set"),
            url: "ws://127.0.0.1:8080/v1/live".to_string(),
            source: "en".to_string(),
            targets: vec!["vi".to_string()],
        }
    }

    /// Two cases: `a` with a reference translation whose translations arrived out of order,
    /// `b` without one.
    fn sample() -> (Vec<Case>, Vec<CaseRun>) {
        let cases = vec![
            case(
                "a",
                "The quick brown fox jumps over the lazy dog.",
                Some("Con cáo nâu nhanh nhẹn. Nhảy qua con chó lười."),
            ),
            case("b", "Hello world.", None),
        ];
        let a = SessionTimes {
            first_partial_s: Some(0.5),
            final_s: vec![1.0, 2.0],
            final_audio_s: vec![2.0, 4.0],
            translation_s: vec![2.5, 1.5],
            translation_audio_s: vec![4.0, 2.0],
            finals: vec![" The quick brown fox".into(), "jumps over the dog.".into()],
            final_segment_ids: vec!["s1".into(), "s2".into()],
            translations: vec![
                translation("s2", "Nhảy qua con chó."),
                translation("s1", "Con cáo nâu nhanh."),
            ],
            close_code: Some(1000),
            ..SessionTimes::default()
        };
        let b = SessionTimes {
            first_partial_s: Some(0.7),
            final_s: vec![3.0],
            final_audio_s: vec![1.0],
            finals: vec!["Hello word.".into()],
            final_segment_ids: vec!["t1".into()],
            translations: vec![translation("t1", "Xin chào.")],
            errors: vec!["overloaded: busy".into()],
            close_code: Some(1011),
            ..SessionTimes::default()
        };
        let runs = vec![
            CaseRun {
                times: a,
                audio_s: 4.0,
                elapsed_s: 5.0,
            },
            CaseRun {
                times: b,
                audio_s: 1.0,
                elapsed_s: 3.0,
            },
        ];
        (cases, runs)
    }

    fn sample_report(speed: Speed) -> Report {
        let (cases, runs) = sample();
        let results: Vec<(&Case, CaseRun)> = cases.iter().zip(runs).collect();
        Report::build(run_info(speed), &results).expect("build")
    }

    #[test]
    fn report_scores_equal_the_shared_metrics() {
        let report = sample_report(Speed::Realtime);
        let [a, b] = &report.cases[..] else {
            panic!("two cases");
        };
        let hyp_a = "The quick brown fox jumps over the dog.";
        assert_eq!(a.hypothesis, hyp_a);
        assert_eq!(a.wer, eval::wer(hyp_a, &a.reference));
        assert_eq!(b.wer, eval::wer("Hello word.", "Hello world."));
        let corpus = eval::corpus_wer(
            &[hyp_a, "Hello word."],
            &[a.reference.as_str(), "Hello world."],
        )
        .expect("wer");
        assert_eq!(report.overall.wer, corpus.wer);
        assert_eq!(
            (report.overall.word_errors, report.overall.ref_words),
            (corpus.errors, corpus.ref_words)
        );

        // Translations are ordered by their finals, not by arrival.
        let vi = &a.translations["vi"];
        assert_eq!(vi.hypothesis, "Con cáo nâu nhanh. Nhảy qua con chó.");
        let reference = ["Con cáo nâu nhanh nhẹn. Nhảy qua con chó lười."];
        let bleu = eval::corpus_bleu(&[&vi.hypothesis], &[reference]).expect("bleu");
        let chrf = Chrf::CHRF_PLUS_PLUS
            .corpus_score(&[&vi.hypothesis], &[reference])
            .expect("chrf");
        assert_eq!(vi.bleu, Some(bleu.score));
        assert_eq!(vi.chrf_plus_plus, Some(chrf.score));
        // Only `a` has a reference: the corpus is that one case.
        let overall = &report.overall.translations["vi"];
        assert_eq!(overall.cases, 1);
        assert_eq!(
            (overall.bleu, overall.chrf_plus_plus),
            (bleu.score, chrf.score)
        );
        assert_eq!(overall.bleu_signature, bleu.signature);
        assert_eq!(overall.chrf_signature, chrf.signature);
        let unscored = &b.translations["vi"];
        assert_eq!(unscored.hypothesis, "Xin chào.");
        assert_eq!((unscored.bleu, unscored.chrf_plus_plus), (None, None));

        assert_eq!((a.rtf, b.rtf, report.overall.rtf), (1.25, 3.0, 8.0 / 5.0));
        assert_eq!(a.final_latency, Some(Summary::of(vec![1.0, 2.0])));
        assert_eq!(
            a.translation_points,
            [
                LatencyPoint {
                    audio_s: 2.0,
                    latency_s: 1.5
                },
                LatencyPoint {
                    audio_s: 4.0,
                    latency_s: 2.5
                }
            ]
        );
        assert_eq!(
            report.overall.final_latency,
            Some(Summary::of(vec![1.0, 2.0, 3.0]))
        );
        assert_eq!(
            report.overall.first_partial,
            Some(Summary::of(vec![0.5, 0.7]))
        );
        assert!(!a.failed() && b.failed());
        assert_eq!(report.overall.failed_cases, 1);
    }

    #[test]
    fn markdown_lists_every_case_and_the_overall_line() {
        let md = sample_report(Speed::Realtime).markdown();
        assert!(md.starts_with("# voxctl eval: int8\n"), "{md}");
        assert!(
            md.contains("| case | audio (s) | WER | BLEU vi | chrF++ vi |"),
            "{md}"
        );
        assert!(md.contains("\n| a | 4.0 | 11.11 % |"), "{md}");
        assert!(md.contains("\n| b | 1.0 | 50.00 % | — | — |"), "{md}");
        assert!(md.contains("1 (closed 1011) |"), "{md}");
        assert!(md.contains("\n| **overall** | 5.0 | 18.18 % |"), "{md}");
        assert!(
            md.contains("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp"),
            "{md}"
        );
        // Every row has as many cells as the header.
        let cells: Vec<usize> = md
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.matches('|').count())
            .collect();
        assert!(cells.iter().all(|&c| c == cells[0]), "{cells:?}");
    }

    #[test]
    fn writes_json_markdown_and_svg_and_reads_the_json_back() {
        let report = sample_report(Speed::Realtime);
        let dir = tempfile::tempdir().expect("tempdir");
        report.write(dir.path()).expect("write");
        let svg = std::fs::read_to_string(dir.path().join(LATENCY_SVG)).expect("svg");
        assert!(svg.contains("<svg"), "{svg}");
        // Text is SVG <text>, drawn without any font file.
        assert!(
            svg.contains(">\nFinal transcript latency\n</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(">\na\n</text>") && svg.contains(">\nb\n</text>"),
            "{svg}"
        );
        let md = std::fs::read_to_string(dir.path().join(REPORT_MD)).expect("md");
        assert_eq!(md, report.markdown());
        let back = load_report(&dir.path().join(REPORT_JSON)).expect("load");
        assert_eq!(back, report);
    }

    #[test]
    fn reports_of_another_schema_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.json");
        for (json, expected) in [
            (
                r#"{"schema": 0}"#,
                "is a report of schema 0; this voxctl reads schema 1",
            ),
            (
                r#"{"levels": []}"#,
                "is not a voxctl eval report (it has no schema version)",
            ),
            (r#"{"schema": 1}"#, "is not a voxctl eval report"),
            ("not json", "is not a voxctl eval report"),
        ] {
            std::fs::write(&path, json).expect("write");
            let error = load_report(&path).expect_err(json).to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            max_wer_increase: 1.0,
            max_bleu_drop: 1.0,
            max_chrf_drop: 1.0,
            max_latency_increase: 0.25,
        }
    }

    #[test]
    fn compare_flags_changes_beyond_the_thresholds_only() {
        let old = sample_report(Speed::Realtime);
        let mut within = old.clone();
        within.overall.wer += 0.009;
        within.overall.translations.get_mut("vi").expect("vi").bleu -= 0.9;
        let comparison = compare(&old, &within, &thresholds());
        assert!(comparison.regressions.is_empty(), "{comparison:?}");
        let md = comparison.markdown();
        assert!(
            md.contains("| WER | 18.18 % | 19.08 % | +0.90 points |"),
            "{md}"
        );
        assert!(md.contains("No regression beyond the thresholds."), "{md}");

        let mut worse = old.clone();
        worse.overall.wer += 0.02;
        let final_p50 = old.overall.final_latency.as_ref().expect("finals").p50;
        worse.overall.final_latency = Some(Summary::of(vec![final_p50 * 1.5]));
        let regressions = compare(&old, &worse, &thresholds()).regressions;
        assert_eq!(regressions.len(), 2, "{regressions:?}");
        assert!(regressions[0].starts_with("WER 18.18 % → 20.18 % (+2.00 points"));
        assert!(regressions[1].starts_with("final latency p50"));

        // Latency is not compared across speeds; a language that disappeared is a regression.
        worse.run.speed = Speed::Max;
        worse.overall.wer = old.overall.wer;
        worse.overall.translations.clear();
        let comparison = compare(&old, &worse, &thresholds());
        assert_eq!(
            comparison.regressions,
            ["vi: scored in the old report, not in this one"]
        );
        assert!(comparison.notes[0].starts_with("latency not checked"));
        let old_bleu = old.overall.translations["vi"].bleu;
        let md = comparison.markdown();
        assert!(
            md.contains(&format!("| BLEU vi | {old_bleu:.2} | — | — |")),
            "{md}"
        );
    }

    /// The study's bars (BLEU 97 %, chrF++ 98 %, WER +1 point), judging `judge`.
    fn bars(judge: Judge) -> RatioBars {
        RatioBars {
            judge,
            ..RatioBars::default()
        }
    }

    fn with_scores(report: &Report, bleu: f64, chrf: f64) -> Report {
        let mut report = report.clone();
        let vi = report.overall.translations.get_mut("vi").expect("vi");
        vi.bleu = bleu;
        vi.chrf_plus_plus = chrf;
        report
    }

    #[test]
    fn ratio_passes_fails_and_is_undefined_against_a_zero_baseline() {
        let base = sample_report(Speed::Realtime);
        let baseline = with_scores(&base, 25.0, 50.0);

        let pass = ratios(
            &baseline,
            &with_scores(&base, 24.5, 49.5),
            &bars(Judge::Translation),
        )
        .expect("ratios");
        assert!(pass.passed(), "{pass:?}");
        assert_eq!(pass.languages[0].bleu.ratio, Some(0.98));
        assert!(pass.markdown().contains("\nPASS: "));

        let fail = ratios(
            &baseline,
            &with_scores(&base, 23.75, 49.5),
            &bars(Judge::Translation),
        )
        .expect("ratios");
        assert!(!fail.passed());
        assert_eq!(fail.languages[0].bleu.verdict, Verdict::Fail);
        assert_eq!(fail.languages[0].chrf_plus_plus.verdict, Verdict::Pass);
        assert!(fail.markdown().contains("0.950 (fail)"));

        let zero = with_scores(&base, 0.0, 50.0);
        let undefined = ratios(
            &zero,
            &with_scores(&base, 10.0, 50.0),
            &bars(Judge::Translation),
        )
        .expect("ratios");
        assert_eq!(undefined.languages[0].bleu.verdict, Verdict::Undefined);
        assert!(!undefined.passed());
        assert!(undefined.markdown().contains("undefined (baseline 0)"));

        let mut none = baseline.clone();
        none.overall.translations.clear();
        let missing = ratios(&baseline, &none, &bars(Judge::Translation)).expect("ratios");
        assert_eq!(missing.missing, ["vi"]);
        assert!(!missing.passed());
        assert!(matches!(
            ratios(&none, &baseline, &bars(Judge::Translation)),
            Err(EvalError::NoTranslationScores(_))
        ));

        let mut other_set = baseline.clone();
        other_set.cases.pop();
        assert!(matches!(
            ratios(&baseline, &other_set, &bars(Judge::Translation)),
            Err(EvalError::DifferentSets { .. })
        ));
    }

    fn with_wer(report: &Report, wer: f64) -> Report {
        let mut report = report.clone();
        report.overall.wer = wer;
        report
    }

    #[test]
    fn judging_the_transcript_bars_the_wer_increase_only() {
        let base = sample_report(Speed::Realtime);
        let baseline = with_wer(&with_scores(&base, 25.0, 50.0), 0.04);
        // Translations far below their bars do not matter when only the transcript is judged.
        let worse_mt = with_scores(&base, 5.0, 10.0);

        // +1.00 point exactly is within the default bar (rates do not subtract exactly).
        let pass = ratios(
            &baseline,
            &with_wer(&worse_mt, 0.05),
            &bars(Judge::Transcript),
        )
        .expect("ratios");
        assert_eq!(pass.wer_verdict(), Verdict::Pass);
        assert!(!pass.translations_passed());
        assert!(pass.passed(), "{pass:?}");
        let md = pass.markdown();
        assert!(
            md.contains("WER: baseline 4.00 %, candidate 5.00 % (+1.00 points; bar at most +1.00 points: pass)."),
            "{md}"
        );
        assert!(
            md.contains("Translation ratios, for information (not judged):"),
            "{md}"
        );
        assert!(
            md.contains(
                "\nPASS: bar WER at most +1.00 points over the baseline (translations not judged)."
            ),
            "{md}"
        );

        let fail = ratios(
            &baseline,
            &with_wer(&baseline, 0.0511),
            &bars(Judge::Transcript),
        )
        .expect("ratios");
        assert_eq!(fail.wer_verdict(), Verdict::Fail);
        assert!(fail.translations_passed());
        assert!(!fail.passed());
        let md = fail.markdown();
        assert!(
            md.contains("(+1.11 points; bar at most +1.00 points: fail)."),
            "{md}"
        );
        assert!(md.contains("\nFAIL: bar WER"), "{md}");

        // A looser bar, and a better candidate.
        let loose = RatioBars {
            max_wer_increase: 1.5,
            ..bars(Judge::Transcript)
        };
        let within = ratios(&baseline, &with_wer(&baseline, 0.0511), &loose).expect("ratios");
        assert!(within.passed());
        let better = ratios(
            &baseline,
            &with_wer(&baseline, 0.02),
            &bars(Judge::Transcript),
        )
        .expect("ratios");
        assert!(better.passed());
        assert!(better.markdown().contains("(-2.00 points; bar"));

        // The default judge ignores the WER, as before.
        let mt_only = ratios(
            &baseline,
            &with_wer(&baseline, 0.5),
            &bars(Judge::Translation),
        )
        .expect("ratios");
        assert!(mt_only.passed());
        assert!(
            mt_only
                .markdown()
                .contains("WER: baseline 4.00 %, candidate 50.00 % (+46.00 points).\n")
        );
    }

    #[test]
    fn judging_the_transcript_needs_no_translation_scores() {
        let mut baseline = with_wer(&sample_report(Speed::Realtime), 0.04);
        baseline.overall.translations.clear();
        let candidate = with_wer(&baseline, 0.045);

        let report = ratios(&baseline, &candidate, &bars(Judge::Transcript)).expect("ratios");
        assert!(report.languages.is_empty() && report.missing.is_empty());
        assert!(report.passed(), "{report:?}");
        let md = report.markdown();
        assert!(!md.contains("| language |"), "{md}");
        assert!(!md.contains("not judged):"), "{md}");
        assert!(
            md.contains("(+0.50 points; bar at most +1.00 points: pass)."),
            "{md}"
        );
        assert!(md.contains("\nPASS: "), "{md}");

        let worse = with_wer(&baseline, 0.06);
        assert!(
            !ratios(&baseline, &worse, &bars(Judge::Transcript))
                .expect("ratios")
                .passed()
        );

        // Translations judged: the scores are needed.
        for judge in [Judge::Translation, Judge::Both] {
            assert!(matches!(
                ratios(&baseline, &candidate, &bars(judge)),
                Err(EvalError::NoTranslationScores(_))
            ));
        }
        // Different sets are refused whatever is judged.
        let mut other_set = candidate.clone();
        other_set.cases.pop();
        assert!(matches!(
            ratios(&baseline, &other_set, &bars(Judge::Transcript)),
            Err(EvalError::DifferentSets { .. })
        ));
    }

    #[test]
    fn judging_both_needs_both_bars() {
        let base = sample_report(Speed::Realtime);
        let baseline = with_wer(&with_scores(&base, 25.0, 50.0), 0.04);
        let good_mt = with_scores(&base, 24.5, 49.5);
        let bad_mt = with_scores(&base, 20.0, 49.5);

        let pass =
            ratios(&baseline, &with_wer(&good_mt, 0.045), &bars(Judge::Both)).expect("ratios");
        assert!(pass.passed(), "{pass:?}");
        let md = pass.markdown();
        assert!(md.contains("| vi | 25.00 | 24.50 | 0.980 (pass) |"), "{md}");
        assert!(!md.contains("not judged"), "{md}");
        assert!(
            md.contains("(+0.50 points; bar at most +1.00 points: pass)."),
            "{md}"
        );
        assert!(
            md.contains("\nPASS: bars BLEU ≥ 97 % and chrF++ ≥ 98 % of the baseline in every language, and WER at most +1.00 points over the baseline;"),
            "{md}"
        );

        let wer_fails =
            ratios(&baseline, &with_wer(&good_mt, 0.06), &bars(Judge::Both)).expect("ratios");
        assert!(wer_fails.translations_passed());
        assert!(!wer_fails.passed());
        assert!(wer_fails.markdown().contains("\nFAIL: "));

        let mt_fails =
            ratios(&baseline, &with_wer(&bad_mt, 0.04), &bars(Judge::Both)).expect("ratios");
        assert_eq!(mt_fails.wer_verdict(), Verdict::Pass);
        assert!(!mt_fails.passed());

        let mut no_mt = with_wer(&baseline, 0.04);
        no_mt.overall.translations.clear();
        let missing = ratios(&baseline, &no_mt, &bars(Judge::Both)).expect("ratios");
        assert_eq!(missing.missing, ["vi"]);
        assert!(!missing.passed());
    }

    #[test]
    fn eval_ratio_parses_judge_and_wer_bar() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: EvalRatioArgs,
        }
        let parse = |extra: &[&str]| {
            let argv = [
                "eval-ratio",
                "--baseline",
                "b.json",
                "--candidate",
                "c.json",
            ];
            Cli::try_parse_from(argv.iter().chain(extra)).map(|cli| cli.args.bars())
        };
        assert_eq!(parse(&[]).expect("defaults"), RatioBars::default());
        let bars = parse(&["--judge", "transcript", "--max-wer-increase", "0.5"]).expect("parse");
        assert_eq!(
            (bars.judge, bars.max_wer_increase),
            (Judge::Transcript, 0.5)
        );
        assert_eq!(
            parse(&["--judge", "both"]).expect("parse").judge,
            Judge::Both
        );
        assert!(parse(&["--judge", "wer"]).is_err());
    }
}
