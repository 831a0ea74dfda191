//! Audio-file jobs: the `jobs-audio` consumer on the JOBS work queue.
//!
//! A job: read the audio file from the Object Store (WAV, MP3, FLAC, Ogg Vorbis, M4A/MP4
//! AAC-LC or raw AAC, any sample rate and channel count; decoded with hound or symphonia and
//! resampled with rubato by [`voxbridge_shared::audio`]),
//! transcribe it in one pass with Whisper (segment and word timestamps), cut the words into
//! cues of at most `max_cue_ms` and the line layout (42 × 2 by default; a new cue at each
//! sentence end and each pause), and store the transcript as SRT or WebVTT. With target
//! languages, the job then moves on to the translation stage: a subtitle job for the same job
//! id, with the transcript as its input, run by the MT workers (`mt-worker/src/jobs.rs`).
//!
//! Reliability is as for subtitle jobs: the claim is kept alive while whisper works, the
//! message is acked only after the transcript and the hand-over are stored (a redelivery after
//! the hand-over re-publishes it — deduplicated — without transcribing again), poison files
//! (not a supported audio format, too long, too large) fail with a code and go to the DLQ at
//! once. The length limit is checked on the length the file states before decoding, and again
//! while decoding (an MP3 without a Xing header only has an estimate).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer::PullConsumer, message::Message};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::jobs::{self, Failure, JobStore};
use voxbridge_shared::languages;
use voxbridge_shared::messages::{
    JobKind, JobResult, JobSpec, JobState, JobStatus, SubtitleFormat, now_unix_ms,
};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subtitles::{LayoutOptions, Subtitles, reflow};

use crate::transcriber::{Segment, Threads, TranscribeOptions, Transcriber};

/// Audio-job knobs.
#[derive(Debug, Clone)]
pub struct AudioJobSettings {
    pub threads: Threads,
    pub beam_size: usize,
    /// Largest audio file accepted.
    pub max_file_bytes: usize,
    /// Longest audio accepted, in seconds.
    pub max_audio_s: f64,
    /// Longest cue.
    pub max_cue_ms: u64,
    /// A pause this long between words starts a new cue.
    pub pause_ms: u64,
    pub layout: LayoutOptions,
    /// Language when the job names none and the model is English-only.
    pub default_language: Option<String>,
}

impl Default for AudioJobSettings {
    fn default() -> Self {
        Self {
            threads: Threads::fixed(1),
            beam_size: 5,
            max_file_bytes: voxbridge_shared::jobs::DEFAULT_MAX_JOB_BYTES,
            max_audio_s: 4.0 * 3600.0,
            max_cue_ms: 7_000,
            pause_ms: 1_000,
            layout: LayoutOptions::default(),
            default_language: None,
        }
    }
}

/// One cue of a transcript, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct CueDraft {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
}

/// A timed word (from whisper's token timestamps, or spread over a segment without them).
#[derive(Debug, Clone)]
struct TimedWord {
    text: String,
    start_ms: u64,
    end_ms: u64,
}

fn words_of(segment: &Segment) -> Vec<TimedWord> {
    if !segment.words.is_empty() {
        return segment
            .words
            .iter()
            .map(|w| TimedWord {
                text: w.text.clone(),
                start_ms: w.start_ms,
                end_ms: w.end_ms.max(w.start_ms),
            })
            .collect();
    }
    // No word times: spread the segment's words over its span by length.
    let words: Vec<&str> = segment.text.split_whitespace().collect();
    let total: usize = words
        .iter()
        .map(|w| w.chars().count() + 1)
        .sum::<usize>()
        .max(1);
    let span = segment.end_ms.saturating_sub(segment.start_ms);
    let mut at = 0usize;
    words
        .iter()
        .map(|w| {
            let start = segment.start_ms + (span as usize * at / total) as u64;
            at += w.chars().count() + 1;
            let end = segment.start_ms + (span as usize * at / total) as u64;
            TimedWord {
                text: (*w).to_string(),
                start_ms: start,
                end_ms: end,
            }
        })
        .collect()
}

fn ends_sentence(word: &str) -> bool {
    let trimmed = word.trim_end_matches(['"', '\'', ')', '»', '”', '’']);
    trimmed.ends_with(['.', '?', '!', '。', '？', '！', '…'])
}

/// Cuts recognised segments into subtitle cues: at most `max_cue_ms` long, at most the
/// layout's characters (lines × line length), a new cue after each sentence end, at each pause
/// of `pause_ms` and at each segment boundary that ends a sentence. Cue times never overlap and
/// never go backwards.
pub fn build_cues(
    segments: &[Segment],
    max_cue_ms: u64,
    pause_ms: u64,
    layout: &LayoutOptions,
) -> Vec<CueDraft> {
    let max_chars = layout.max_line_chars * layout.max_lines;
    let mut cues: Vec<CueDraft> = Vec::new();
    let mut current: Vec<TimedWord> = Vec::new();
    let flush = |current: &mut Vec<TimedWord>, cues: &mut Vec<CueDraft>| {
        if current.is_empty() {
            return;
        }
        let text = current
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let start_ms = current[0].start_ms;
        let end_ms = current
            .iter()
            .map(|w| w.end_ms)
            .max()
            .unwrap_or(start_ms)
            .max(start_ms);
        cues.push(CueDraft {
            start_ms,
            end_ms,
            text,
        });
        current.clear();
    };
    for segment in segments {
        for word in words_of(segment) {
            if word.text.trim().is_empty() {
                continue;
            }
            if let Some(first) = current.first() {
                let chars: usize = current.iter().map(|w| w.text.chars().count() + 1).sum();
                let last_end = current.last().map(|w| w.end_ms).unwrap_or(first.start_ms);
                let too_long = word.end_ms.saturating_sub(first.start_ms) > max_cue_ms;
                let too_wide = chars + word.text.chars().count() > max_chars;
                let paused = word.start_ms.saturating_sub(last_end) >= pause_ms;
                if too_long || too_wide || paused {
                    flush(&mut current, &mut cues);
                }
            }
            let sentence_end = ends_sentence(&word.text);
            current.push(word);
            if sentence_end {
                flush(&mut current, &mut cues);
            }
        }
    }
    flush(&mut current, &mut cues);

    // Monotonic, non-overlapping, at most max_cue_ms, at least a moment on screen.
    let mut previous_end = 0u64;
    for i in 0..cues.len() {
        let start = cues[i].start_ms.max(previous_end);
        let mut end = cues[i].end_ms.max(start + 300).min(start + max_cue_ms);
        if let Some(next) = cues.get(i + 1) {
            end = end.min(next.start_ms.max(start + 1));
        }
        cues[i].start_ms = start;
        cues[i].end_ms = end.max(start + 1);
        previous_end = cues[i].end_ms;
    }
    cues
}

fn timestamp(ms: u64, format: SubtitleFormat) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    match format {
        SubtitleFormat::Srt => format!("{h:02}:{m:02}:{s:02},{milli:03}"),
        SubtitleFormat::Vtt => format!("{h:02}:{m:02}:{s:02}.{milli:03}"),
    }
}

/// Writes cues as an SRT or WebVTT file, each cue's text reflowed to the layout.
pub fn render(cues: &[CueDraft], format: SubtitleFormat, layout: &LayoutOptions) -> String {
    let mut out = String::new();
    if format == SubtitleFormat::Vtt {
        out.push_str("WEBVTT\n\n");
    }
    for (i, cue) in cues.iter().enumerate() {
        if format == SubtitleFormat::Srt {
            out.push_str(&format!("{}\n", i + 1));
        }
        out.push_str(&format!(
            "{} --> {}\n",
            timestamp(cue.start_ms, format),
            timestamp(cue.end_ms, format)
        ));
        let text = match format {
            // Text that looks like markup must not be read as markup.
            SubtitleFormat::Vtt => cue
                .text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
            SubtitleFormat::Srt => cue.text.clone(),
        };
        for line in reflow(&text, layout).lines {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// The audio-job consumer.
#[derive(Debug, Clone)]
pub struct AudioJobs {
    ctx: ServiceContext,
    store: JobStore,
    transcriber: Arc<Transcriber>,
    settings: AudioJobSettings,
    in_flight: Arc<AtomicU32>,
    ack_wait: Duration,
    max_deliver: i64,
}

impl AudioJobs {
    pub async fn new(
        ctx: ServiceContext,
        transcriber: Arc<Transcriber>,
        settings: AudioJobSettings,
        in_flight: Arc<AtomicU32>,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> anyhow::Result<Self> {
        let store = JobStore::open(ctx.client.clone(), ctx.js.clone(), ctx.namespace.clone())
            .await
            .map_err(|e| anyhow::anyhow!("job store: {e}"))?;
        Ok(Self {
            ctx,
            store,
            transcriber,
            settings,
            in_flight,
            ack_wait,
            max_deliver,
        })
    }

    /// Runs audio jobs one at a time until `shutdown` (a job running then is released).
    pub async fn run(self, jobs: PullConsumer, shutdown: CancellationToken) {
        loop {
            let batch = jobs
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(2))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(error) => {
                    tracing::warn!(%error, "fetching an audio job failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = batch.next() => next,
            };
            let Some(Ok(message)) = next else {
                continue;
            };
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            self.handle(message, &shutdown).await;
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn handle(&self, message: Message, shutdown: &CancellationToken) {
        let Ok(mut run) = self
            .store
            .start_run(
                &self.ctx.dead_letters,
                message,
                self.ack_wait,
                "transcribing",
            )
            .await
        else {
            return;
        };
        let spec = run.spec.clone();
        if run.status.results.iter().any(|r| r.transcript) {
            // Transcribed and handed over before; the ack was lost. Hand over again (the
            // publish is deduplicated) and finish.
            match self.hand_over(&spec, &run.status).await {
                Ok(()) => {
                    run.ack().await;
                }
                Err(_) => run.release(Duration::from_secs(5)).await,
            }
            return;
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Err(Failure::Transient("worker shutting down".into())),
            outcome = self.transcribe(&spec, &mut run.status) => outcome,
        };
        match outcome {
            Ok(()) if spec.target_langs.is_empty() => {
                run.status.state = JobState::Succeeded;
                run.status.progress = 1.0;
                run.status.message = Some(format!(
                    "transcribed in {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
                run.complete(&self.store).await;
            }
            Ok(()) => {
                // The transcript must be stored before the translation stage can read it.
                run.status.progress = 0.5;
                run.status.message = Some("transcribed; translating".into());
                let handed = match run.store_status(&self.store).await {
                    Ok(()) => self.hand_over(&spec, &run.status).await,
                    Err(e) => Err(e.to_string()),
                };
                match handed {
                    Ok(()) => {
                        run.ack().await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not hand a transcribed job over; it will run again");
                        run.release(Duration::from_secs(5)).await;
                    }
                }
            }
            Err(failure) => {
                run.fail(
                    &self.store,
                    &self.ctx.dead_letters,
                    failure,
                    self.max_deliver,
                    shutdown.is_cancelled(),
                )
                .await;
            }
        }
    }

    /// Queues the translation stage: a subtitle job with the transcript as input.
    async fn hand_over(&self, spec: &JobSpec, status: &JobStatus) -> Result<(), String> {
        let transcript = status
            .results
            .iter()
            .find(|r| r.transcript)
            .ok_or("no transcript")?;
        let next = JobSpec {
            v: 1,
            job_id: spec.job_id,
            kind: JobKind::Subtitles,
            input_object: transcript.object.clone(),
            file_name: spec.file_name.clone(),
            source_lang: Some(transcript.lang.clone()),
            target_langs: spec.target_langs.clone(),
            output_format: Some(transcript.format),
            content_hash: spec.content_hash.clone(),
            submitted_at_ms: spec.submitted_at_ms,
        };
        self.store
            .enqueue(&next, ".translate")
            .await
            .map_err(|e| e.to_string())
    }

    async fn transcribe(&self, spec: &JobSpec, status: &mut JobStatus) -> Result<(), Failure> {
        let bytes = self
            .store
            .get_file(&spec.input_object, self.settings.max_file_bytes)
            .await?
            .ok_or_else(|| Failure::Poison {
                code: "input_missing",
                message: format!(
                    "the input file {} is no longer stored (expired?)",
                    spec.input_object
                ),
            })?;
        // The error names what the file is and the formats audio jobs take.
        let duration =
            voxbridge_shared::audio::audio_duration_s(&bytes).map_err(|e| match e.code() {
                "invalid_audio" => Failure::Poison {
                    code: "invalid_audio",
                    message: e.to_string(),
                },
                _ => Failure::Transient(e.to_string()),
            })?;
        let max_audio_s = self.settings.max_audio_s;
        if duration > max_audio_s {
            return Err(Failure::Poison {
                code: "audio_too_long",
                message: format!(
                    "the audio is {duration:.0} s long; the limit is {max_audio_s:.0} s"
                ),
            });
        }
        let language = spec
            .source_lang
            .as_deref()
            .and_then(languages::by_flores)
            .map(|l| l.bcp47.split('-').next().unwrap_or(l.bcp47).to_string())
            .or_else(|| {
                (!self.transcriber.is_multilingual())
                    .then(|| "en".to_string())
                    .or_else(|| self.settings.default_language.clone())
            });
        let options = TranscribeOptions {
            threads: self.settings.threads.now(),
            language: language.clone(),
            prompt: None,
            audio_ctx: None,
            beam_size: self.settings.beam_size,
            temperature_fallback: true,
            max_tokens: None,
            single_segment: false,
        };
        let transcriber = self.transcriber.clone();
        // whisper-rs keeps (leaks) the progress closure, so it holds only a shared percentage,
        // which a reporter task here publishes; no channel whose end would never close.
        let percent = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let seen = percent.clone();
        let work = tokio::task::spawn_blocking(move || {
            // Limited again while decoding: the stated length may have been an estimate (an
            // MP3 without a Xing header), and compressed audio decodes to many times its size.
            let audio = voxbridge_shared::audio::decode_audio_16k_limited(&bytes, max_audio_s)
                .map_err(|e| (e.code(), e.to_string()))?;
            transcriber
                .transcribe_with_progress(
                    &audio,
                    &options,
                    Some(move |p: i32| seen.store(p, Ordering::Relaxed)),
                )
                .map_err(|e| ("inference", e.to_string()))
        });
        let store = self.store.clone();
        let id = spec.job_id;
        let scale = if spec.target_langs.is_empty() {
            1.0
        } else {
            0.5
        };
        let reporter = tokio::spawn(async move {
            let mut last = -1;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = percent.load(Ordering::Relaxed).clamp(0, 100);
                if now == last {
                    continue;
                }
                last = now;
                store.progress(&id, now as u64, 100, "transcribe").await;
                if let Ok(Some(mut status)) = store.status(&id).await
                    && status.state == JobState::Running
                {
                    status.progress = scale * 0.99 * now as f32 / 100.0;
                    status.message = Some(format!("transcribing {now} %"));
                    status.updated_at_ms = now_unix_ms();
                    let _ = store.put_status(&status).await;
                }
            }
        });
        let outcome = work.await;
        reporter.abort();
        let outcome =
            outcome.map_err(|e| Failure::Transient(format!("transcription thread: {e}")))?;
        let (segments, detected) = outcome.map_err(|(code, message)| match code {
            "invalid_audio" | "audio_too_long" => Failure::Poison { code, message },
            _ => Failure::Transient(message),
        })?;
        let lang = language
            .or(detected)
            .and_then(|l| languages::resolve(&l).ok())
            .map(|l| l.flores.to_string())
            .unwrap_or_else(|| "eng_Latn".to_string());
        let cues = build_cues(
            &segments,
            self.settings.max_cue_ms,
            self.settings.pause_ms,
            &self.settings.layout,
        );
        let format = spec.output_format.unwrap_or(SubtitleFormat::Srt);
        let text = render(&cues, format, &self.settings.layout);
        // What we write must parse back (it is the translation stage's input).
        if !cues.is_empty() {
            Subtitles::parse(text.as_bytes()).map_err(|e| Failure::Poison {
                code: "internal",
                message: format!("transcript does not parse: {e}"),
            })?;
        }
        let code = languages::by_flores(&lang).map_or(lang.as_str(), |l| l.bcp47);
        let file_name = format!(
            "{}.{code}.{}",
            jobs::file_stem(&spec.file_name),
            format.extension()
        );
        let object = format!("result/{}/{file_name}", spec.job_id);
        self.store.put_file(&object, text.as_bytes()).await?;
        status.source_lang = Some(lang.clone());
        status.results = vec![JobResult {
            lang,
            transcript: true,
            object: object.clone(),
            file_name,
            format,
            cues: cues.len() as u64,
            overlong_cues: 0,
        }];
        status.result_objects = vec![object];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Word;

    fn word(text: &str, start_ms: u64, end_ms: u64) -> Word {
        Word {
            text: text.into(),
            start_ms,
            end_ms,
            probability: None,
        }
    }

    fn segment(words: Vec<Word>) -> Segment {
        Segment {
            text: words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            start_ms: words.first().map_or(0, |w| w.start_ms),
            end_ms: words.last().map_or(0, |w| w.end_ms),
            words,
        }
    }

    #[test]
    fn cues_break_at_sentence_ends_pauses_and_the_time_limit() {
        let layout = LayoutOptions::default();
        let mut words = vec![
            word("Hello", 0, 400),
            word("there.", 400, 900),
            word("After", 3_000, 3_300), // a pause before
        ];
        // A long run of words without punctuation: must be cut at 7 s.
        for i in 0..30 {
            let start = 3_300 + i * 400;
            words.push(word("word", start, start + 350));
        }
        let cues = build_cues(&[segment(words)], 7_000, 1_000, &layout);
        assert_eq!(cues[0].text, "Hello there.");
        assert!(cues[1].text.starts_with("After"));
        for pair in cues.windows(2) {
            assert!(pair[0].end_ms <= pair[1].start_ms, "{pair:?}");
        }
        for cue in &cues {
            assert!(cue.end_ms - cue.start_ms <= 7_000, "{cue:?}");
            assert!(
                cue.text.chars().count() <= layout.max_line_chars * layout.max_lines,
                "{cue:?}"
            );
        }
        let words_out: usize = cues.iter().map(|c| c.text.split(' ').count()).sum();
        assert_eq!(words_out, 33, "no word lost or duplicated");
    }

    #[test]
    fn segments_without_word_times_are_spread_over_their_span() {
        let s = Segment {
            text: "one two three four.".into(),
            start_ms: 1_000,
            end_ms: 3_000,
            words: vec![],
        };
        let cues = build_cues(&[s], 7_000, 1_000, &LayoutOptions::default());
        assert_eq!(cues.len(), 1);
        assert_eq!(cues[0].start_ms, 1_000);
        assert_eq!(cues[0].end_ms, 3_000);
    }

    #[test]
    fn rendered_transcripts_parse_back_in_both_formats() {
        let cues = vec![
            CueDraft {
                start_ms: 0,
                end_ms: 1_500,
                text: "And so, my fellow Americans, ask not what your country can do for you"
                    .into(),
            },
            CueDraft {
                start_ms: 3_723_004,
                end_ms: 3_725_000,
                text: "x < y & z".into(),
            },
        ];
        let layout = LayoutOptions::default();
        for format in [SubtitleFormat::Srt, SubtitleFormat::Vtt] {
            let text = render(&cues, format, &layout);
            let parsed = Subtitles::parse(text.as_bytes()).expect("parses");
            assert_eq!(parsed.format(), format);
            assert_eq!(parsed.cues().len(), 2);
            assert_eq!(parsed.cues()[1].start_ms(), 3_723_004);
            assert_eq!(parsed.cues()[1].plain_text(), "x < y & z");
            assert!(parsed.cues()[0].lines().len() <= 2);
        }
    }
}
