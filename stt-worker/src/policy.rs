//! The streaming policy: turns a growing audio buffer into stable partials and finished
//! sentences, independent of NATS and of whisper (the [`Recognizer`] trait is the model).
//!
//! - Audio accumulates in a rolling buffer. Every `step_ms` of audio — at absolute multiples of
//!   the step, so a resumed session steps at the same points as the original — the whole buffer
//!   is recognised.
//! - LocalAgreement-2: the words two consecutive hypotheses agree on (after the words already
//!   committed) are committed. Committed words never change; the rest is the unstable tail.
//! - A committed word ending a sentence (`.`, `?`, `!`, …) closes a final; the buffer is trimmed
//!   at that word's end, so recognition cost stays flat for hour-long sessions. A pause in the
//!   speech (voice activity detection) or a buffer longer than `max_buffer_ms` finalises
//!   everything heard so far.
//! - Silence is never recognised (no hallucinated text): without detected speech the buffer only
//!   keeps a short tail for the next onset.
//! - Optionally (`verify_finals`), the audio of each final is recognised once more with the
//!   recogniser's accurate setting ([`Recognizer::recognize_final`], e.g. whisper's full 30 s
//!   encoder window when steps use a reduced one). Words already shown as stable are kept; the
//!   rest of the final comes from that run. Cheap runs give quick partials, one accurate run
//!   per sentence gives the final text.
//! - A worker that falls behind real time catches up ([`Policy::defer`]): audio that has been
//!   waiting longer than a step is appended without recognition (up to `max_deferred_ms`), and the next step
//!   recognises all of it at once, so the audio lag stays bounded on a CPU too slow for one
//!   recognition per step. Which steps run then depends on timing; sessions streamed faster than
//!   real time (replays, evaluation) never defer, so their transcripts are deterministic.
//! - All state needed to continue is a [`Checkpoint`] — buffer start, committed words, unstable
//!   tail, next step, and the outputs of the step that produced it. The session stores it before
//!   it publishes those outputs (write-ahead), so a worker that takes over republishes them
//!   (deduplicated by id) and continues from exactly the state whose text was shown, however the
//!   steps were timed. Voice detection restarts whenever the buffer start moves, so it too is a
//!   function of the buffered audio alone.

use serde::{Deserialize, Serialize};
use voxbridge_shared::{SegmentId, SessionId};

/// Audio sample rate the policy works at.
pub const SAMPLE_RATE: u64 = 16_000;
const SAMPLES_PER_MS: u64 = SAMPLE_RATE / 1000;
/// Voice activity frames are 16 ms (earshot's frame size).
const VAD_FRAME: usize = 256;

/// A recognised word. Times are relative to the audio passed to [`Recognizer::recognize`]
/// there, and absolute (from the session start) everywhere else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub probability: Option<f32>,
}

/// The speech model, as the policy sees it.
pub trait Recognizer: Send {
    /// Recognises `audio` (16 kHz mono, -1..1), given the text that precedes it.
    fn recognize(&mut self, audio: &[f32], prompt: &str) -> Result<Vec<Word>, String>;

    /// Recognises the audio of a final with the most accurate setting, when it differs from the
    /// one of [`Recognizer::recognize`] (see [`PolicyConfig::verify_finals`]).
    fn recognize_final(&mut self, audio: &[f32], prompt: &str) -> Result<Vec<Word>, String> {
        self.recognize(audio, prompt)
    }

    /// A quick recognition for the first step of an utterance, whose words are only shown
    /// (see [`Policy`]'s `tail_provisional`), when it differs from [`Recognizer::recognize`].
    fn recognize_quick(&mut self, audio: &[f32], prompt: &str) -> Result<Vec<Word>, String> {
        self.recognize(audio, prompt)
    }

    /// The language the last recognition heard (ISO 639-1, e.g. `"en"`), when the model detects
    /// it; `None` when the language was given or cannot be detected.
    fn language(&self) -> Option<String> {
        None
    }
}

/// Policy knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyConfig {
    /// Audio between two recognitions.
    pub step_ms: u64,
    /// Trailing silence that ends an utterance.
    pub pause_ms: u64,
    /// Longest buffer before everything is finalised anyway.
    pub max_buffer_ms: u64,
    /// Voice activity score above which a frame is speech.
    pub vad_threshold: f32,
    /// Silence kept before speech starts (so the onset is not cut).
    pub lead_in_ms: u64,
    /// Words ending this close to the end of the buffer are never committed by agreement: the
    /// recogniser has heard only part of them, and two cut-off guesses often agree wrongly.
    pub holdback_ms: u64,
    /// Recognise each final's audio once more with [`Recognizer::recognize_final`] and take the
    /// words not yet shown as stable from it.
    pub verify_finals: bool,
    /// Most audio [`Policy::defer`] appends without a step (a worker behind real time); 0
    /// never defers.
    pub max_deferred_ms: u64,
    /// A worker further behind than `max_deferred_ms` may defer as much audio as it is
    /// behind ([`Policy::deferral_limit`]); false: `max_deferred_ms` at most.
    pub defer_by_lag: bool,
    /// End an utterance as soon as `pause_ms` of silence is heard; otherwise at the first step
    /// boundary after that (as before 2026-11-27; kept for side-by-side measurements).
    pub end_at_pause: bool,
    /// Silence after speech (ms) at which the buffer is recognised when no step has heard all
    /// of its speech yet, so the final is ready when the pause completes (`pause_ms`) instead
    /// of a recognition starting then; step boundaries are skipped while nothing new was said.
    /// Only with `end_at_pause`; `>= pause_ms` turns it off.
    pub pause_step_ms: u64,
    /// Speech (ms) into a new utterance at which its first (quick) step runs, instead of at the
    /// next step boundary, which may come with too little speech to show a word or up to a
    /// step later; boundaries before it are skipped, and one less than a step after it is
    /// quick too. 0 = at the step boundaries.
    pub first_step_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            step_ms: 1000,
            pause_ms: 800,
            max_buffer_ms: 20_000,
            vad_threshold: 0.5,
            lead_in_ms: 300,
            holdback_ms: 500,
            verify_finals: false,
            max_deferred_ms: 4000,
            defer_by_lag: true,
            end_at_pause: true,
            pause_step_ms: 300,
            first_step_ms: 0,
        }
    }
}

/// What the policy produced in one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    Partial {
        segment_id: SegmentId,
        revision: u32,
        stable: String,
        unstable: String,
        start_ms: u64,
        end_ms: u64,
    },
    Final {
        segment_id: SegmentId,
        index: u64,
        text: String,
        start_ms: u64,
        end_ms: u64,
        words: Vec<Word>,
        /// The language detected in the recognition that produced this final, if detected.
        language: Option<String>,
    },
}

/// Everything needed to continue a session elsewhere (stored in the checkpoint KV bucket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u16,
    /// Absolute sample where the buffer starts: audio before it is done.
    pub buffer_start_sample: u64,
    pub next_final_index: u64,
    pub revision: u32,
    /// Committed words not yet part of a final.
    pub committed: Vec<Word>,
    /// The last unstable tail (for the next agreement).
    pub tail: Vec<Word>,
    /// Finished text that precedes the buffer (the recogniser's prompt).
    pub context: String,
    /// Set when the session ended: a redelivered claim is then just acknowledged.
    #[serde(default)]
    pub finished: bool,
    /// Absolute sample of the next step (absent in older checkpoints: the first step boundary
    /// after the buffer start).
    #[serde(default)]
    pub next_step_sample: Option<u64>,
    /// Outputs of the step this checkpoint follows, stored before they are published, so a
    /// worker resuming from it publishes them again (JetStream drops what was already there).
    #[serde(default)]
    pub outbox: Vec<Output>,
    /// Absolute sample where the audio of the last recognition ended (absent in older
    /// checkpoints: the last step boundary).
    #[serde(default)]
    pub recognized_to_sample: Option<u64>,
    /// The tail came from a quick recognition: shown, never agreed with or finalised.
    #[serde(default)]
    pub tail_provisional: bool,
    /// AUDIO stream sequence to read the session's audio from when resuming: every message
    /// of the session before it ended at or before `buffer_start_sample` (absent: from the
    /// start). Kept by the session (`session.rs`), not by the policy.
    #[serde(default)]
    pub audio_from_seq: Option<u64>,
}

impl voxbridge_shared::messages::WireMessage for Checkpoint {
    const VERSION: u16 = 1;
    const TYPE: &'static str = "stt.checkpoint";
    fn schema_version(&self) -> u16 {
        self.v
    }
}

/// Voice activity detection over 16 ms frames.
enum Vad {
    Earshot(Box<earshot::Detector>),
    /// Loudness alone, for unit tests whose synthetic "speech" the real detector does not take
    /// for a voice.
    #[cfg(test)]
    Energy,
    /// Speech exactly within these intervals (ms), for audio whose samples encode their own
    /// position (the tests' `positioned`).
    #[cfg(test)]
    Intervals(Vec<(u64, u64)>),
}

impl Vad {
    fn score(&mut self, frame: &[f32]) -> f32 {
        match self {
            Vad::Earshot(detector) => detector.predict_f32(frame),
            #[cfg(test)]
            Vad::Energy => {
                let power = frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32;
                if power > 1e-4 { 1.0 } else { 0.0 }
            }
            #[cfg(test)]
            Vad::Intervals(speech) => {
                let at_ms = (frame[0] * tests::POSITION_SCALE) as u64 / SAMPLES_PER_MS;
                let inside = speech.iter().any(|&(from, to)| (from..to).contains(&at_ms));
                if inside { 1.0 } else { 0.0 }
            }
        }
    }

    fn reset(&mut self) {
        match self {
            Vad::Earshot(detector) => detector.reset(),
            #[cfg(test)]
            Vad::Energy | Vad::Intervals(_) => {}
        }
    }
}

/// The streaming state of one session.
pub struct Policy<R> {
    config: PolicyConfig,
    recognizer: R,
    session_id: SessionId,
    buffer: Vec<f32>,
    buffer_start: u64,
    committed: Vec<Word>,
    tail: Vec<Word>,
    revision: u32,
    next_final_index: u64,
    context: String,
    vad: Vad,
    vad_pending: Vec<f32>,
    /// Absolute sample just after the last speech frame in the buffer, if any.
    last_speech_end: Option<u64>,
    /// Absolute sample where the first speech frame in the buffer starts, if any.
    speech_start: Option<u64>,
    next_step: u64,
    /// Absolute sample where the audio of the last recognition ended.
    recognized_to: u64,
    /// The tail came from [`Recognizer::recognize_quick`] (the first step of an utterance):
    /// listeners see it at once, but the next step's words are not committed by agreeing with
    /// it, and a pause does not make it final.
    tail_provisional: bool,
}

impl<R> std::fmt::Debug for Policy<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("buffer_start", &self.buffer_start)
            .field("buffer_len", &self.buffer.len())
            .field("committed", &self.committed.len())
            .field("next_final_index", &self.next_final_index)
            .finish()
    }
}

impl<R: Recognizer> Policy<R> {
    /// A new session.
    pub fn new(config: PolicyConfig, recognizer: R, session_id: SessionId) -> Self {
        Self::restore(
            config,
            recognizer,
            session_id,
            Checkpoint {
                v: 1,
                buffer_start_sample: 0,
                next_final_index: 0,
                revision: 0,
                committed: Vec::new(),
                tail: Vec::new(),
                context: String::new(),
                finished: false,
                next_step_sample: None,
                outbox: Vec::new(),
                recognized_to_sample: None,
                tail_provisional: false,
                audio_from_seq: None,
            },
        )
    }

    /// Continues a session from a checkpoint; feed it the audio from
    /// `checkpoint.buffer_start_sample` on.
    pub fn restore(
        config: PolicyConfig,
        recognizer: R,
        session_id: SessionId,
        checkpoint: Checkpoint,
    ) -> Self {
        let step = config.step_ms * SAMPLES_PER_MS;
        let start = checkpoint.buffer_start_sample;
        let next_step = checkpoint
            .next_step_sample
            .unwrap_or((start / step + 1) * step);
        Self {
            config,
            recognizer,
            session_id,
            buffer: Vec::new(),
            buffer_start: start,
            committed: checkpoint.committed,
            tail: checkpoint.tail,
            revision: checkpoint.revision,
            next_final_index: checkpoint.next_final_index,
            context: checkpoint.context,
            vad: Vad::Earshot(earshot::Detector::default_boxed()),
            vad_pending: Vec::new(),
            last_speech_end: None,
            speech_start: None,
            next_step,
            recognized_to: checkpoint
                .recognized_to_sample
                .unwrap_or(next_step.saturating_sub(step)),
            tail_provisional: checkpoint.tail_provisional,
        }
    }

    /// The state to store now.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            v: 1,
            buffer_start_sample: self.buffer_start,
            next_final_index: self.next_final_index,
            revision: self.revision,
            committed: self.committed.clone(),
            tail: self.tail.clone(),
            context: self.context.clone(),
            finished: false,
            next_step_sample: Some(self.next_step),
            outbox: Vec::new(),
            recognized_to_sample: Some(self.recognized_to),
            tail_provisional: self.tail_provisional,
            audio_from_seq: None,
        }
    }

    /// Absolute sample after the last one received.
    pub fn audio_end(&self) -> u64 {
        self.buffer_start + self.buffer.len() as u64
    }

    /// Finals produced so far.
    pub fn final_count(&self) -> u64 {
        self.next_final_index
    }

    /// Whether speech has been detected in the current buffer.
    pub fn hears_speech(&self) -> bool {
        self.last_speech_end.is_some()
    }

    /// Appends audio and runs a step at every step boundary it crosses, and ends the utterance
    /// as soon as the speaker has paused for `pause_ms` ([`Policy::end_utterance`]). Audio
    /// deferred before ([`Policy::defer`]) that crossed boundaries is first recognised in one
    /// step.
    pub fn push(&mut self, mut samples: &[f32]) -> Result<Vec<Output>, String> {
        let step = self.config.step_ms * SAMPLES_PER_MS;
        let mut out = Vec::new();
        if self.audio_end() >= self.next_step {
            out.extend(self.boundary_step()?);
            self.next_step = (self.audio_end() / step + 1) * step;
        } else {
            out.extend(self.between_steps()?);
        }
        while !samples.is_empty() {
            let take = self.next_stop(samples.len());
            self.append(&samples[..take]);
            samples = &samples[take..];
            if self.audio_end() >= self.next_step {
                out.extend(self.boundary_step()?);
                self.next_step += step;
            } else {
                out.extend(self.between_steps()?);
            }
        }
        Ok(out)
    }

    /// What is due between step boundaries: the end of an utterance at its pause, or a pause
    /// step or early first step. One action leaves none of them due at the same sample (each
    /// recognition hears all the speech so far), so a stop is acted on once, wherever the
    /// audio was cut.
    fn between_steps(&mut self) -> Result<Vec<Output>, String> {
        if self.pause_reached() {
            self.end_utterance()
        } else if self.pause_step_due() || self.first_step_due() {
            self.step()
        } else {
            Ok(Vec::new())
        }
    }

    /// The step at a step boundary; none while the speaker is pausing and the last
    /// recognition already heard all the speech (it would hear only more silence: the pause
    /// ends the utterance with those words), nor before a new utterance has `first_step_ms` of
    /// speech (its first step comes then).
    fn boundary_step(&mut self) -> Result<Vec<Output>, String> {
        if self.pause_steps() && self.heard_all() {
            return Ok(Vec::new());
        }
        if self
            .first_step_point()
            .is_some_and(|point| self.audio_end() < point)
        {
            return Ok(Vec::new());
        }
        self.step()
    }

    /// Absolute sample `first_step_ms` after the speech of a new utterance started: one that
    /// nothing was shown of and no recognition has heard.
    fn first_step_point(&self) -> Option<u64> {
        if self.config.first_step_ms == 0
            || !self.committed.is_empty()
            || !self.tail.is_empty()
            || self.last_speech_end.is_none()
        {
            return None;
        }
        let start = self.speech_start?;
        (self.recognized_to <= start).then(|| {
            let frames = (self.config.first_step_ms * SAMPLES_PER_MS).div_ceil(VAD_FRAME as u64);
            start + frames.max(1) * VAD_FRAME as u64
        })
    }

    fn first_step_due(&self) -> bool {
        self.first_step_point()
            .is_some_and(|point| self.audio_end() >= point)
    }

    /// Whether pauses get their own step ([`PolicyConfig::pause_step_ms`]).
    fn pause_steps(&self) -> bool {
        self.config.end_at_pause && self.config.pause_step_ms < self.config.pause_ms
    }

    /// Absolute sample where the silence after the last speech reaches `pause_step_ms` (on the
    /// detector's frame grid), when pauses get their own step.
    fn pause_step_point(&self) -> Option<u64> {
        let frames = (self.config.pause_step_ms * SAMPLES_PER_MS).div_ceil(VAD_FRAME as u64);
        self.last_speech_end
            .filter(|_| self.pause_steps())
            .map(|end| end + frames.max(1) * VAD_FRAME as u64)
    }

    /// The speaker has been silent for `pause_step_ms` and no recognition heard all their
    /// speech yet: recognise it now, so its words are the final if the pause completes.
    fn pause_step_due(&self) -> bool {
        !self.heard_all()
            && self
                .pause_step_point()
                .is_some_and(|point| self.audio_end() >= point)
    }

    /// Appends audio without recognising it, for a worker behind real time whose next audio is
    /// already waiting: the next [`Policy::push`] recognises it all in one step. `lag_ms` is how
    /// long ago these samples arrived (about how much audio is queued behind them). Returns
    /// `None`, appending nothing, when that would leave more unrecognised than
    /// [`Policy::deferral_limit`] allows.
    /// A pause in the deferred audio ends the utterance at once when that needs no
    /// recognition (the last one already heard all its speech, and finals are not verified):
    /// those finals are returned.
    pub fn defer(&mut self, mut samples: &[f32], lag_ms: u64) -> Option<Vec<Output>> {
        let step = self.config.step_ms * SAMPLES_PER_MS;
        let last_step = self.next_step.saturating_sub(step);
        // A restored session re-reads audio before its last step: nothing is waiting then.
        let waiting = (self.audio_end() + samples.len() as u64).saturating_sub(last_step);
        if waiting > self.deferral_limit(last_step, lag_ms) {
            return None;
        }
        let mut out = Vec::new();
        while !samples.is_empty() {
            let take = self.next_stop(samples.len());
            self.append(&samples[..take]);
            samples = &samples[take..];
            if self.pause_reached() && self.heard_all() && !self.config.verify_finals {
                out.extend(self.finish_heard().unwrap_or_default());
            }
        }
        Some(out)
    }

    /// Most samples one catch-up step may cover: `max_deferred_ms`, or, when the worker is
    /// further behind than that (`lag_ms`: how long ago the audio being deferred arrived), that
    /// much, as far as the buffer stays within `max_buffer_ms`. Each recognition then covers
    /// about as much audio as the worker was behind when it deferred, so on a CPU where one
    /// recognition takes longer than `max_deferred_ms` of audio the lag stops growing (as long
    /// as recognising a full buffer takes less than the buffer's length; it then stays within
    /// a full buffer plus one recognition of it) instead of growing by the shortfall at every
    /// step (BENCHMARKS.md, "Catching up on a slow CPU"). `max_deferred_ms` 0 never defers.
    fn deferral_limit(&self, last_step: u64, lag_ms: u64) -> u64 {
        let floor = self.config.max_deferred_ms * SAMPLES_PER_MS;
        if floor == 0 || !self.config.defer_by_lag {
            return floor;
        }
        let buffered = last_step.saturating_sub(self.buffer_start);
        let room = (self.config.max_buffer_ms * SAMPLES_PER_MS).saturating_sub(buffered);
        floor.max((lag_ms * SAMPLES_PER_MS).min(room))
    }

    /// How many of `available` samples to append before the policy must act: the next step
    /// boundary, or the point where a pause would be complete. Pauses are thereby found at the
    /// same sample however the audio is chunked, so a resumed session acts where the original
    /// did.
    fn next_stop(&self, available: usize) -> usize {
        let end = self.audio_end();
        let mut stop = self.next_step;
        // A pause already reached (deferred audio waiting for a recognition) is no stop.
        if let Some(pause) = self
            .pause_point()
            .filter(|&pause| self.config.end_at_pause && pause > end)
        {
            stop = stop.min(pause);
        }
        if let Some(point) = self
            .pause_step_point()
            .filter(|&point| point > end && !self.heard_all())
        {
            stop = stop.min(point);
        }
        if let Some(point) = self.first_step_point().filter(|&point| point > end) {
            stop = stop.min(point);
        }
        // Never zero: a step boundary already reached was acted on before appending more.
        (stop.saturating_sub(end) as usize).clamp(1, available)
    }

    /// Absolute sample where the silence after the last speech reaches `pause_ms` (in whole
    /// voice frames, so it lies on the detector's frame grid).
    fn pause_point(&self) -> Option<u64> {
        let frames = (self.config.pause_ms * SAMPLES_PER_MS).div_ceil(VAD_FRAME as u64);
        self.last_speech_end
            .map(|end| end + frames * VAD_FRAME as u64)
    }

    fn pause_reached(&self) -> bool {
        self.config.end_at_pause
            && self
                .pause_point()
                .is_some_and(|pause| self.audio_end() >= pause)
    }

    /// Whether the last (full) recognition heard the buffer up to its last speech.
    fn heard_all(&self) -> bool {
        !self.tail_provisional
            && self
                .last_speech_end
                .is_some_and(|end| self.recognized_to >= end)
    }

    /// The speaker paused: finalise everything heard. When the last recognition already heard
    /// all the speech (a step after its end), its words are the final as shown (stable and
    /// unstable), at once; otherwise the buffer is recognised now. Users see the final
    /// `pause_ms` after they stop speaking instead of at the next step boundary.
    fn end_utterance(&mut self) -> Result<Vec<Output>, String> {
        if self.heard_all() {
            self.finish_heard()
        } else {
            self.step()
        }
    }

    /// Finalises the committed words and the unstable tail of the last recognition.
    fn finish_heard(&mut self) -> Result<Vec<Output>, String> {
        let shown = self.committed.len();
        self.committed.append(&mut self.tail);
        let end = self.audio_end();
        self.finalize(true, end, shown)
    }

    /// End of the session: recognise what is left and finalise all of it.
    pub fn flush(&mut self) -> Result<Vec<Output>, String> {
        if !self.hears_speech() && self.committed.is_empty() {
            return Ok(Vec::new());
        }
        let hypothesis = self.recognize()?;
        let k = self.committed.len();
        self.committed.extend(hypothesis.into_iter().skip(k));
        self.tail.clear();
        let end = self.audio_end();
        self.finalize(true, end, k)
    }

    fn append(&mut self, samples: &[f32]) {
        let first_sample = self.audio_end();
        self.buffer.extend_from_slice(samples);
        self.append_detect(samples, first_sample);
    }

    /// Runs voice detection over `samples`, which start at absolute sample `first_sample`.
    /// Frames are 16 ms, counted from the last detector restart.
    fn append_detect(&mut self, samples: &[f32], first_sample: u64) {
        let mut position = first_sample - self.vad_pending.len() as u64;
        self.vad_pending.extend_from_slice(samples);
        let mut consumed = 0;
        while self.vad_pending.len() - consumed >= VAD_FRAME {
            let frame = &self.vad_pending[consumed..consumed + VAD_FRAME];
            let score = self.vad.score(frame);
            position += VAD_FRAME as u64;
            if score >= self.config.vad_threshold {
                self.last_speech_end = Some(position);
                self.speech_start.get_or_insert(position - VAD_FRAME as u64);
            }
            consumed += VAD_FRAME;
        }
        self.vad_pending.drain(..consumed);
    }

    fn recognize(&mut self) -> Result<Vec<Word>, String> {
        let offset_ms = self.buffer_start / SAMPLES_PER_MS;
        let words = self.recognizer.recognize(&self.buffer, &self.context)?;
        self.recognized_to = self.audio_end();
        self.tail_provisional = false;
        Ok(self.absolute(words, offset_ms))
    }

    fn recognize_quick(&mut self) -> Result<Vec<Word>, String> {
        let offset_ms = self.buffer_start / SAMPLES_PER_MS;
        let words = self
            .recognizer
            .recognize_quick(&self.buffer, &self.context)?;
        self.recognized_to = self.audio_end();
        Ok(self.absolute(words, offset_ms))
    }

    /// Accurate recognition of the buffer up to absolute sample `end`.
    fn recognize_final(&mut self, end: u64) -> Result<Vec<Word>, String> {
        let offset_ms = self.buffer_start / SAMPLES_PER_MS;
        let n = (end.saturating_sub(self.buffer_start) as usize).min(self.buffer.len());
        let words = self
            .recognizer
            .recognize_final(&self.buffer[..n], &self.context)?;
        Ok(self.absolute(words, offset_ms))
    }

    /// Drops non-speech annotations and repeated phrases, and makes word times absolute.
    fn absolute(&self, words: Vec<Word>, offset_ms: u64) -> Vec<Word> {
        without_repeats(words)
            .into_iter()
            .filter(|w| !is_non_speech(&w.text))
            .map(|w| Word {
                start_ms: w.start_ms + offset_ms,
                end_ms: w.end_ms + offset_ms,
                ..w
            })
            .collect()
    }

    fn step(&mut self) -> Result<Vec<Output>, String> {
        let Some(speech_end) = self.last_speech_end else {
            // Only silence so far: keep a short lead-in for the next onset, recognise nothing.
            let keep = (self.config.lead_in_ms * SAMPLES_PER_MS) as usize;
            if self.committed.is_empty() && self.buffer.len() > keep {
                let drop = self.buffer.len() - keep;
                self.trim_samples(drop);
                self.restart_vad();
            }
            return Ok(Vec::new());
        };
        let silence_ms = (self.audio_end() - speech_end) / SAMPLES_PER_MS;
        let buffer_ms = self.buffer.len() as u64 / SAMPLES_PER_MS;
        let ends = silence_ms >= self.config.pause_ms || buffer_ms >= self.config.max_buffer_ms;
        // The first step of an utterance only shows words: a quick recognition, whose words
        // the next step neither agrees with nor finalises.
        // A step in a pause is not quick: its words become the final if the pause completes.
        let pausing = self
            .pause_step_point()
            .is_some_and(|point| self.audio_end() >= point);
        // A step soon after a quick first step (less than a step later: the early first step
        // of `first_step_ms`) is quick too; full recognitions come a step apart.
        let soon_after_quick = self.tail_provisional
            && self.audio_end().saturating_sub(self.recognized_to)
                < self.config.step_ms * SAMPLES_PER_MS;
        let quick = self.committed.is_empty()
            && (self.tail.is_empty() || soon_after_quick)
            && !ends
            && !pausing;
        let provisional = self.tail_provisional;
        let hypothesis = if quick {
            self.recognize_quick()?
        } else {
            self.recognize()?
        };
        let k = self.committed.len();
        // Every step that hears words ends with a partial showing all committed words, so the
        // committed words before this step are exactly those the listeners saw as stable.
        let shown = k;
        let new_tail: Vec<Word> = hypothesis.into_iter().skip(k).collect();
        let horizon_ms =
            (self.audio_end() / SAMPLES_PER_MS).saturating_sub(self.config.holdback_ms);
        let settled = new_tail
            .iter()
            .take_while(|w| w.end_ms <= horizon_ms)
            .count();
        let agreed = if provisional || quick {
            0
        } else {
            agreement(&self.tail, &new_tail[..settled])
        };
        self.committed.extend_from_slice(&new_tail[..agreed]);
        self.tail = new_tail[agreed..].to_vec();
        self.tail_provisional = quick;

        let mut out = Vec::new();
        if ends {
            // The speaker paused (or talks without end): everything heard so far is final.
            self.committed.append(&mut self.tail);
            let end = if silence_ms >= self.config.pause_ms {
                self.audio_end()
            } else {
                self.committed
                    .last()
                    .map(|w| w.end_ms * SAMPLES_PER_MS)
                    .unwrap_or(self.audio_end())
            };
            out.extend(self.finalize(true, end, shown)?);
        } else {
            out.extend(self.finalize(false, 0, shown)?);
        }
        if !self.committed.is_empty() || !self.tail.is_empty() {
            self.revision += 1;
            let words = self.committed.iter().chain(&self.tail);
            let (start_ms, end_ms) = span(words);
            out.push(Output::Partial {
                segment_id: self.segment_id(self.next_final_index),
                revision: self.revision,
                stable: join(&self.committed),
                unstable: join(&self.tail),
                start_ms,
                end_ms,
            });
        }
        Ok(out)
    }

    /// Emits a final per complete sentence in `committed` (all of it when `all`), trimming the
    /// buffer after each; with `all`, the buffer is trimmed to `all_end` (absolute sample). The
    /// first `shown` committed words have been shown as stable and are kept as they are.
    fn finalize(
        &mut self,
        all: bool,
        all_end: u64,
        mut shown: usize,
    ) -> Result<Vec<Output>, String> {
        let mut out = Vec::new();
        loop {
            let end = self.committed.iter().position(|w| ends_sentence(&w.text));
            let (j, rest) = match (end, all) {
                (Some(j), _) => (j, false),
                (None, true) if !self.committed.is_empty() => (self.committed.len() - 1, true),
                _ => break,
            };
            let mut words: Vec<Word> = self.committed.drain(..=j).collect();
            let stable = shown.min(words.len());
            shown -= stable;
            // Where the buffer is cut after this final: after its last word as heard by the
            // steps (the verified words may be timed slightly differently).
            let (_, heard_end_ms) = span(words.iter());
            if self.config.verify_finals {
                let cut_ms = if rest {
                    all_end / SAMPLES_PER_MS
                } else {
                    heard_end_ms
                };
                words = self.verified(words, stable, cut_ms, rest)?;
            }
            let text = join(&words);
            let (start_ms, end_ms) = span(words.iter());
            let index = self.next_final_index;
            out.push(Output::Final {
                segment_id: self.segment_id(index),
                index,
                text: text.clone(),
                start_ms,
                end_ms,
                words,
                language: self.recognizer.language(),
            });
            self.next_final_index += 1;
            self.revision = 0;
            self.context.push(' ');
            self.context.push_str(&text);
            let excess = self.context.chars().count().saturating_sub(200);
            if excess > 0 {
                self.context = self.context.chars().skip(excess).collect();
            }
            self.context = self.context.trim().to_string();
            let cut = (heard_end_ms * SAMPLES_PER_MS).clamp(self.buffer_start, self.audio_end());
            self.trim_to(cut);
        }
        if all {
            self.tail.clear();
            let cut = all_end.clamp(self.buffer_start, self.audio_end());
            self.trim_to(cut);
        }
        if !out.is_empty() || all {
            // The buffer start moved: restart voice detection there, as a session restored
            // from a checkpoint will.
            self.restart_vad();
        }
        Ok(out)
    }

    /// The words of a final whose audio ends at `cut_ms` (absolute): its first `stable` words
    /// as shown, then what an accurate recognition of its audio heard after them. With `rest`
    /// the final takes everything up to `cut_ms`; otherwise the final ends a sentence and the
    /// recognition also hears a little beyond the cut, so the last word is not clipped, but
    /// only words starting before the cut count.
    fn verified(
        &mut self,
        heard: Vec<Word>,
        stable: usize,
        cut_ms: u64,
        rest: bool,
    ) -> Result<Vec<Word>, String> {
        const LOOK_AHEAD_MS: u64 = 300;
        let end_ms = if rest { cut_ms } else { cut_ms + LOOK_AHEAD_MS };
        let mut accurate = self.recognize_final(end_ms * SAMPLES_PER_MS)?;
        if !rest {
            accurate.retain(|w| w.start_ms < cut_ms);
        }
        if accurate.is_empty() {
            // The accurate run heard nothing: keep what the steps heard rather than drop speech.
            return Ok(heard);
        }
        let (shown, _) = heard.split_at(stable);
        let after = if agreement(shown, &accurate) == shown.len() {
            accurate.split_off(shown.len())
        } else {
            // The accurate run disagrees with words already shown: keep those, and take its
            // words that start after them.
            let shown_end = shown.last().map_or(0, |w| w.end_ms);
            accurate
                .into_iter()
                .filter(|w| (w.start_ms + w.end_ms) / 2 >= shown_end)
                .collect()
        };
        let mut words = shown.to_vec();
        words.extend(after);
        Ok(words)
    }

    fn restart_vad(&mut self) {
        self.vad.reset();
        self.vad_pending.clear();
        self.last_speech_end = None;
        self.speech_start = None;
        // Re-detect over the audio still buffered, as a restored session will.
        let buffer = std::mem::take(&mut self.buffer);
        self.append_detect(&buffer, self.buffer_start);
        self.buffer = buffer;
    }

    fn trim_to(&mut self, absolute: u64) {
        let n = absolute.saturating_sub(self.buffer_start) as usize;
        self.trim_samples(n.min(self.buffer.len()));
    }

    fn trim_samples(&mut self, n: usize) {
        self.buffer.drain(..n);
        self.buffer_start += n as u64;
        if self
            .last_speech_end
            .is_some_and(|end| end <= self.buffer_start)
        {
            self.last_speech_end = None;
            self.speech_start = None;
        }
    }

    /// Segment ids are derived from the session and the final's index, so a resumed session
    /// names its segments as the original did (deduplication relies on it).
    fn segment_id(&self, index: u64) -> SegmentId {
        let session = self.session_id.ulid();
        let random = (session.random() ^ u128::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            & ((1u128 << 80) - 1);
        SegmentId::from(ulid::Ulid::from_parts(session.timestamp_ms(), random))
    }
}

/// Shortest phrase [`without_repeats`] removes when it comes twice in a row.
const MIN_REPEATED_WORDS: usize = 3;

/// Whisper's best-known hallucination on short or cut-off audio is a phrase said twice ("and so
/// my fellow Americans. And so, my fellow Americans." for one "and so my fellow Americans" —
/// the streaming eval's jfk.wav); a phrase of [`MIN_REPEATED_WORDS`] or more words that
/// immediately repeats itself (case and punctuation ignored) is kept once. Speakers rarely
/// repeat three words verbatim, and a wrongly dropped repeat loses less than a hallucinated one
/// adds (it would also be translated).
pub fn without_repeats(mut words: Vec<Word>) -> Vec<Word> {
    let mut i = 0;
    while i < words.len() {
        let longest = (words.len() - i) / 2;
        let repeated = (MIN_REPEATED_WORDS..=longest).rev().find(|&k| {
            (0..k).all(|j| normalise(&words[i + j].text) == normalise(&words[i + k + j].text))
        });
        match repeated {
            Some(k) => {
                words.drain(i + k..i + 2 * k);
            }
            None => i += 1,
        }
    }
    words
}

/// Number of leading words two hypotheses agree on (case and punctuation ignored).
pub fn agreement(previous: &[Word], current: &[Word]) -> usize {
    previous
        .iter()
        .zip(current)
        .take_while(|(a, b)| normalise(&a.text) == normalise(&b.text))
        .count()
}

fn normalise(word: &str) -> String {
    let n: String = word
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if n.is_empty() { word.to_string() } else { n }
}

fn ends_sentence(word: &str) -> bool {
    let w = word.trim_end_matches(['"', '\'', ')', '»', '”']);
    w.ends_with(['.', '?', '!', '。', '？', '！']) && !w.ends_with("...")
}

/// Bracketed annotations whisper emits for non-speech ("[BLANK_AUDIO]", "(music)"), and
/// "words" without a letter or digit: whisper attaches punctuation to the word before it, so a
/// word of punctuation alone is a hallucination (finals `" " " "` were published in live
/// benchmark runs on 2026-11-27 before this).
fn is_non_speech(word: &str) -> bool {
    let w = word.trim();
    (w.starts_with('[') && w.ends_with(']'))
        || (w.starts_with('(') && w.ends_with(')'))
        || !w.chars().any(char::is_alphanumeric)
}

fn join(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn span<'a>(mut words: impl Iterator<Item = &'a Word>) -> (u64, u64) {
    let Some(first) = words.next() else {
        return (0, 0);
    };
    let last = words.last().unwrap_or(first);
    (first.start_ms, last.end_ms.max(first.start_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake recogniser: the "transcript" is fixed; it reveals the words whose end time falls
    /// inside the audio it is given, with a changing guess for the newest word (as whisper does).
    struct Script {
        words: Vec<(&'static str, u64, u64)>,
        absolute_start_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
        calls: usize,
    }

    type Transcript = [(&'static str, u64, u64)];

    /// Speech intervals (ms) for [`Vad::Intervals`].
    type Speech = Vec<(u64, u64)>;

    impl Script {
        fn new(
            words: Vec<(&'static str, u64, u64)>,
            start: &std::sync::Arc<std::sync::atomic::AtomicU64>,
        ) -> Self {
            Self {
                words,
                absolute_start_ms: start.clone(),
                calls: 0,
            }
        }

        /// The words of `transcript` inside `audio`, relative to it.
        fn heard(&self, transcript: &Transcript, audio: &[f32]) -> Vec<Word> {
            let start = self
                .absolute_start_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            words_within(
                transcript,
                start,
                start + audio.len() as u64 / SAMPLES_PER_MS,
            )
        }
    }

    /// The words of `transcript` lying within [start_ms, end_ms], relative to `start_ms`.
    fn words_within(transcript: &Transcript, start_ms: u64, end_ms: u64) -> Vec<Word> {
        transcript
            .iter()
            .filter(|(_, s, e)| *s >= start_ms && *e <= end_ms)
            .map(|(t, s, e)| Word {
                text: t.to_string(),
                start_ms: s - start_ms,
                end_ms: e - start_ms,
                probability: None,
            })
            .collect()
    }

    impl Recognizer for Script {
        fn recognize(&mut self, audio: &[f32], _prompt: &str) -> Result<Vec<Word>, String> {
            self.calls += 1;
            let mut out = self.heard(&self.words, audio);
            // The newest word is uncertain on odd calls.
            if self.calls % 2 == 1
                && let Some(last) = out.last_mut()
            {
                last.text.push_str("?x");
            }
            Ok(out)
        }
    }

    /// Cheap steps that mishear, and an accurate recognition for finals.
    struct TwoSpeed {
        steps: Script,
        accurate: Vec<(&'static str, u64, u64)>,
        final_calls: Vec<u64>,
    }

    impl Recognizer for TwoSpeed {
        fn recognize(&mut self, audio: &[f32], prompt: &str) -> Result<Vec<Word>, String> {
            self.steps.recognize(audio, prompt)
        }

        fn recognize_final(&mut self, audio: &[f32], _prompt: &str) -> Result<Vec<Word>, String> {
            self.final_calls.push(audio.len() as u64 / SAMPLES_PER_MS);
            Ok(self.steps.heard(&self.accurate, audio))
        }
    }

    fn speech(ms: u64) -> Vec<f32> {
        // A loud chirp the VAD takes for voice, plus noise-free silence in between is not needed:
        // the fake recogniser ignores content.
        (0..ms * SAMPLES_PER_MS)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                0.5 * (2.0 * std::f32::consts::PI * (180.0 + 40.0 * (t * 3.0).sin()) * t).sin()
            })
            .collect()
    }

    #[test]
    fn a_repeated_phrase_is_kept_once() {
        let words = |text: &str| -> Vec<Word> {
            text.split(' ')
                .enumerate()
                .map(|(i, t)| Word {
                    text: t.to_string(),
                    start_ms: i as u64 * 100,
                    end_ms: i as u64 * 100 + 90,
                    probability: None,
                })
                .collect()
        };
        let texts = |w: Vec<Word>| join(&w);
        assert_eq!(
            texts(without_repeats(words(
                "and so my fellow Americans. And so, my fellow Americans. ask not"
            ))),
            "and so my fellow Americans. ask not"
        );
        // Three times, and a repeat inside a longer text.
        assert_eq!(
            texts(without_repeats(words(
                "we go on, we go on, we go on and on"
            ))),
            "we go on, and on"
        );
        // Short repeats stay: people say "no no" and "that that".
        assert_eq!(
            texts(without_repeats(words("no no I said that that is it"))),
            "no no I said that that is it"
        );
        assert_eq!(
            texts(without_repeats(words("one two one two"))),
            "one two one two"
        );
        assert!(without_repeats(Vec::new()).is_empty());
    }

    #[test]
    fn agreement_ignores_case_and_punctuation() {
        let w = |t: &str| Word {
            text: t.into(),
            start_ms: 0,
            end_ms: 0,
            probability: None,
        };
        assert_eq!(
            agreement(&[w("Hello"), w("world")], &[w("hello,"), w("world.")]),
            2
        );
        assert_eq!(
            agreement(&[w("Hello"), w("word")], &[w("hello"), w("world")]),
            1
        );
        assert_eq!(agreement(&[], &[w("a")]), 0);
    }

    #[test]
    fn sentence_ends_are_recognised() {
        assert!(ends_sentence("dog."));
        assert!(ends_sentence("you?\""));
        assert!(!ends_sentence("well..."));
        assert!(!ends_sentence("Mr"));
        assert!(is_non_speech("[BLANK_AUDIO]"));
        assert!(!is_non_speech("hello"));
        assert!(is_non_speech("\""));
        assert!(is_non_speech("..."));
        assert!(is_non_speech(" - "));
        assert!(!is_non_speech("5."));
        assert!(!is_non_speech("Việt"));
        assert!(!is_non_speech("\"Hello"));
    }

    /// Whisper's punctuation-only hallucinations on noise (`" " "`) are no words: no partial,
    /// no final, nothing for translation.
    #[test]
    fn punctuation_alone_never_becomes_text() {
        struct Quotes(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl Recognizer for Quotes {
            fn recognize(&mut self, audio: &[f32], _prompt: &str) -> Result<Vec<Word>, String> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let heard_ms = audio.len() as u64 / SAMPLES_PER_MS;
                Ok(["\"", "\"", "..."]
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Word {
                        text: t.to_string(),
                        start_ms: (i as u64 * 300).min(heard_ms),
                        end_ms: (i as u64 * 300 + 200).min(heard_ms),
                        probability: None,
                    })
                    .collect())
            }
        }
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let recognizer = Quotes(calls.clone());
        let mut policy = Policy::new(PolicyConfig::default(), recognizer, SessionId::new());
        policy.vad = Vad::Energy;
        let mut out = policy.push(&speech(3000)).expect("push");
        out.extend(policy.push(&vec![0.0; 16_000 * 2]).expect("push"));
        out.extend(policy.flush().expect("flush"));
        // The policy did hear speech and ask the recogniser (steps, the pause, the flush).
        assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 3);
        assert_eq!(policy.final_count(), 0);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn silence_is_never_recognised() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let script = Script::new(vec![("ghost.", 100, 400)], &start);
        let mut policy = Policy::new(PolicyConfig::default(), script, SessionId::new());
        let out = policy.push(&vec![0.0; 16_000 * 5]).expect("push");
        assert!(out.is_empty(), "{out:?}");
        assert!(policy.flush().expect("flush").is_empty());
        assert_eq!(policy.recognizer.calls, 0);
        // The buffer does not grow without bound in silence.
        assert!(policy.buffer.len() <= 16_000);
    }

    #[test]
    fn ids_of_segments_are_stable_per_session_and_index() {
        let session = SessionId::new();
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let a = Policy::new(
            PolicyConfig::default(),
            Script::new(vec![], &start),
            session,
        );
        let b = Policy::new(
            PolicyConfig::default(),
            Script::new(vec![], &start),
            session,
        );
        assert_eq!(a.segment_id(3), b.segment_id(3));
        assert_ne!(a.segment_id(3), a.segment_id(4));
    }

    #[test]
    fn words_are_committed_when_two_hypotheses_agree_and_never_change() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let words = vec![
            ("The", 0, 300),
            ("quick", 300, 700),
            ("brown", 700, 1100),
            ("fox.", 1100, 1500),
            ("It", 1700, 1900),
            ("jumps", 1900, 2400),
            ("high.", 2400, 2900),
        ];
        let script = Script::new(words, &start);
        // Every frame counts as speech (the synthetic tone need not fool the real VAD); steps
        // at the 500 ms boundaries.
        let config = PolicyConfig {
            step_ms: 500,
            vad_threshold: 0.0,
            first_step_ms: 0,
            ..PolicyConfig::default()
        };
        let mut policy = Policy::new(config, script, SessionId::new());
        let audio = speech(3500);
        let mut outputs = Vec::new();
        for chunk in audio.chunks(1600) {
            start.store(
                policy.buffer_start / SAMPLES_PER_MS,
                std::sync::atomic::Ordering::Relaxed,
            );
            outputs.extend(policy.push(chunk).expect("push"));
        }
        start.store(
            policy.buffer_start / SAMPLES_PER_MS,
            std::sync::atomic::Ordering::Relaxed,
        );
        outputs.extend(policy.flush().expect("flush"));
        let finals: Vec<_> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Final { text, index, .. } => Some((*index, text.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            finals,
            vec![
                (0, "The quick brown fox.".to_string()),
                (1, "It jumps high.".to_string())
            ]
        );
        // Within a segment, stable text only grows, and the final is built from it.
        let mut stable: std::collections::HashMap<SegmentId, String> = Default::default();
        for o in &outputs {
            match o {
                Output::Partial {
                    segment_id,
                    stable: s,
                    unstable,
                    ..
                } => {
                    let before = stable.entry(*segment_id).or_default();
                    assert!(
                        s.starts_with(before.as_str()),
                        "stable text changed: {before:?} -> {s:?}"
                    );
                    assert!(
                        !s.contains("?x"),
                        "an unconfirmed guess was committed: {s:?}"
                    );
                    *before = s.clone();
                    let _ = unstable;
                }
                Output::Final {
                    segment_id, text, ..
                } => {
                    let before = stable.get(segment_id).cloned().unwrap_or_default();
                    assert!(
                        text.starts_with(&before),
                        "final {text:?} does not extend {before:?}"
                    );
                }
            }
        }
    }

    /// A fake recogniser that counts its recognitions.
    trait Counted {
        fn calls(&self) -> usize;
    }

    impl Counted for Script {
        fn calls(&self) -> usize {
            self.calls
        }
    }

    impl Counted for QuickFirst {
        fn calls(&self) -> usize {
            self.steps.calls
        }
    }

    /// Feeds `audio` in chunks of `chunk` samples; returns the outputs of each push with the
    /// audio end (ms) after it and the recogniser's calls so far.
    fn feed<R: Recognizer + Counted>(
        policy: &mut Policy<R>,
        start: &std::sync::atomic::AtomicU64,
        audio: &[f32],
        chunk: usize,
    ) -> Vec<(u64, usize, Vec<Output>)> {
        audio
            .chunks(chunk)
            .map(|c| {
                start.store(
                    policy.buffer_start / SAMPLES_PER_MS,
                    std::sync::atomic::Ordering::Relaxed,
                );
                let out = policy.push(c).expect("push");
                (
                    policy.audio_end() / SAMPLES_PER_MS,
                    policy.recognizer.calls(),
                    out,
                )
            })
            .collect()
    }

    /// Speech of `speech_ms` (a tone; see [`energy_vad`]), then `silence_ms` of silence.
    fn utterance(speech_ms: u64, silence_ms: u64) -> Vec<f32> {
        let mut audio = speech(speech_ms);
        audio.extend(std::iter::repeat_n(
            0.0,
            (silence_ms * SAMPLES_PER_MS) as usize,
        ));
        audio
    }

    /// Steps at the 1 s boundaries only (no early first step), so tests of the pause can
    /// name them.
    fn pause_config() -> PolicyConfig {
        PolicyConfig {
            first_step_ms: 0,
            ..PolicyConfig::default()
        }
    }

    /// The policy with a loudness detector: the synthetic tone is speech, zeros are silence.
    fn energy_vad<R: Recognizer>(mut policy: Policy<R>) -> Policy<R> {
        policy.vad = Vad::Energy;
        policy.restart_vad();
        policy
    }

    #[test]
    fn a_pause_ends_the_utterance_without_waiting_for_the_next_step() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let words = vec![
            ("Hello", 100, 500),
            ("there", 500, 900),
            ("friend", 900, 1300),
        ];
        // The step 300 ms into the pause (1.7 s) heard all the speech (it ends at 1.4 s): the
        // final is its words, at the moment the pause is complete, with no recognition of its
        // own, and the step boundary at 2 s, in the pause, recognises nothing.
        let script = Script::new(words.clone(), &start);
        let mut policy = energy_vad(Policy::new(pause_config(), script, SessionId::new()));
        // 20 ms chunks, so the push that produces the final tells when it came.
        let pushes = feed(&mut policy, &start, &utterance(1400, 3000), 320);
        let speech_end_ms = 1400;
        let (at_ms, calls, out) = pushes
            .iter()
            .find(|(_, _, out)| out.iter().any(|o| matches!(o, Output::Final { .. })))
            .expect("a final");
        assert!(
            *at_ms <= speech_end_ms + 800 + 50,
            "final only after {at_ms} ms of audio (speech ended at {speech_end_ms} ms)"
        );
        assert_eq!(*calls, 2, "the steps at 1 s and 1.7 s, none for the final");
        assert_eq!(finals(out), vec!["Hello there friend".to_string()]);
        let shown = pushes
            .iter()
            .flat_map(|(_, _, out)| out)
            .filter_map(|o| match o {
                Output::Partial {
                    stable, unstable, ..
                } => Some(format!("{stable} {unstable}").trim().to_string()),
                _ => None,
            })
            .next_back()
            .expect("a partial");
        assert_eq!(
            shown, "Hello there friend",
            "the final is what was last shown"
        );
        // The step at 3 s finds nothing left to do.
        assert_eq!(pushes.last().expect("pushes").1, 2);
        // Without `end_at_pause` the final waits for the step at 3 s, and the pause has no step
        // of its own.
        let script = Script::new(words.clone(), &start);
        let config = PolicyConfig {
            end_at_pause: false,
            ..pause_config()
        };
        // (`pause_config` has no early first step either: the behaviour before 2026-11-27.)
        let mut policy = energy_vad(Policy::new(config, script, SessionId::new()));
        let pushes = feed(&mut policy, &start, &utterance(1400, 3000), 320);
        let (at_ms, calls, _) = pushes
            .iter()
            .find(|(_, _, out)| out.iter().any(|o| matches!(o, Output::Final { .. })))
            .expect("a final");
        assert_eq!((*at_ms, *calls), (3000, 3));

        // Speech that ends after the last step (2.1 s > 2 s) is recognised once more 300 ms
        // into the pause, so the final is ready when the pause completes; with the pause step
        // off (`pause_step_ms` >= `pause_ms`) that recognition runs only when the pause is
        // complete, delaying the final by its cost.
        let mut words = words.clone();
        words.push(("again", 1400, 2050));
        for pause_step_ms in [300, 800] {
            let script = Script::new(words.clone(), &start);
            let config = PolicyConfig {
                pause_step_ms,
                ..pause_config()
            };
            let mut policy = energy_vad(Policy::new(config, script, SessionId::new()));
            let pushes = feed(&mut policy, &start, &utterance(2100, 3000), 320);
            let i = pushes
                .iter()
                .position(|(_, _, out)| out.iter().any(|o| matches!(o, Output::Final { .. })))
                .expect("a final");
            let (at_ms, calls, out) = &pushes[i];
            assert!(
                *at_ms <= 2100 + 800 + 50,
                "final only after {at_ms} ms of audio"
            );
            assert_eq!(*calls, 3, "steps at 1 s and 2 s, one for the pause");
            let third = pushes
                .iter()
                .position(|(_, c, _)| *c == 3)
                .expect("3 calls");
            if pause_step_ms == 300 {
                // Speech ends on the detector's grid at 2.112 s; 300 ms later is 2.416 s.
                assert_eq!(pushes[third].0, 2420, "the pause step (20 ms chunks)");
                assert!(third < i, "the final's push recognised nothing");
            } else {
                assert_eq!(third, i, "the final's push recognised");
            }
            // (The fake recogniser's third run misreads the newest word as "again?x".)
            let text = finals(out).concat();
            assert!(text.starts_with("Hello there friend again"), "{text}");
        }
    }

    #[test]
    fn the_first_step_of_an_utterance_comes_soon_after_its_speech_starts() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let words = vec![
            ("Good", 1950, 2300),
            ("morning", 2300, 2800),
            ("everyone.", 2800, 3400),
        ];
        // Silence, speech from 1.9 s to 3.5 s, silence.
        let mut audio = vec![0.0; 1900 * SAMPLES_PER_MS as usize];
        audio.extend(utterance(1600, 2000));
        let run = |first_step_ms: u64| {
            let script = Script::new(words.clone(), &start);
            let config = PolicyConfig {
                first_step_ms,
                ..PolicyConfig::default()
            };
            let mut policy = energy_vad(Policy::new(config, script, SessionId::new()));
            let pushes = feed(&mut policy, &start, &audio, 320);
            let (at_ms, calls, _) = pushes
                .iter()
                .find(|(_, _, out)| out.iter().any(|o| matches!(o, Output::Partial { .. })))
                .expect("a partial")
                .clone();
            let all: Vec<Output> = pushes.into_iter().flat_map(|(_, _, o)| o).collect();
            let finals: Vec<String> = finals(&all).iter().map(|f| f.replace("?x", "")).collect();
            (at_ms, calls, finals)
        };
        // 500 ms into the speech (on the detector's 16 ms grid), in one recognition: the step
        // boundary at 2 s, with 0.1 s of speech, is skipped.
        let (at_ms, calls, early) = run(500);
        assert!(
            (2400..=2440).contains(&at_ms),
            "first partial at {at_ms} ms"
        );
        assert_eq!(calls, 1);
        // At the step boundaries, the step at 2 s hears no word yet and the one at 3 s shows
        // the first.
        let (at_ms, calls, on_grid) = run(0);
        assert_eq!((at_ms, calls), (3000, 2));
        assert_eq!(early, on_grid);
        assert_eq!(early, vec!["Good morning everyone.".to_string()]);
    }

    #[test]
    fn a_short_pause_inside_a_sentence_does_not_stop_the_steps() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let words = vec![
            ("Well,", 100, 1300),
            ("maybe", 1900, 2400),
            ("tomorrow", 2400, 2900),
        ];
        let script = Script::new(words, &start);
        let mut policy = energy_vad(Policy::new(pause_config(), script, SessionId::new()));
        // Speech to 1.4 s, 500 ms of silence (a pause step at 1.7 s), speech again to 3.0 s.
        let mut audio = utterance(1400, 500);
        audio.extend(utterance(1100, 2000));
        let pushes = feed(&mut policy, &start, &audio, 320);
        let calls_at = |ms: u64| {
            pushes
                .iter()
                .find(|(at, _, _)| *at >= ms)
                .map(|(_, c, _)| *c)
                .expect("pushed")
        };
        // Steps at 1 s, 1.7 s (the pause step), 2 s and 3 s (speech again), then the pause
        // step at 3.3 s; the boundary at 4 s is in the final pause and skipped.
        assert_eq!(
            [1000, 1720, 2000, 3000, 3320, 4000, 5000].map(calls_at),
            [1, 2, 3, 4, 5, 5, 5]
        );
        let all: Vec<Output> = pushes.into_iter().flat_map(|(_, _, o)| o).collect();
        assert_eq!(
            finals(&all)
                .iter()
                .map(|f| f.replace("?x", ""))
                .collect::<Vec<_>>(),
            vec!["Well, maybe tomorrow".to_string()],
            "one final: a short pause ends no utterance"
        );
    }

    /// The first step of an utterance is quick and mishears; the others hear right.
    struct QuickFirst {
        steps: Script,
        quick_calls: usize,
        /// Prefix the quick step's words with "quick-" (else it hears what the others hear).
        mark: bool,
    }

    impl Recognizer for QuickFirst {
        fn recognize(&mut self, audio: &[f32], prompt: &str) -> Result<Vec<Word>, String> {
            self.steps.recognize(audio, prompt)
        }

        fn recognize_quick(&mut self, audio: &[f32], prompt: &str) -> Result<Vec<Word>, String> {
            self.quick_calls += 1;
            let mut words = self.steps.recognize(audio, prompt)?;
            if self.mark {
                for w in &mut words {
                    w.text = format!("quick-{}", w.text);
                }
            }
            Ok(words)
        }
    }

    #[test]
    fn the_first_step_of_an_utterance_is_shown_but_never_committed_from() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let words = vec![
            ("The", 100, 400),
            ("weather", 400, 900),
            ("today", 900, 1400),
            ("is", 1400, 1700),
            ("sunny.", 1700, 2600),
        ];
        let run = |mark: bool| {
            let recognizer = QuickFirst {
                steps: Script::new(words.clone(), &start),
                quick_calls: 0,
                mark,
            };
            let mut policy = energy_vad(Policy::new(pause_config(), recognizer, SessionId::new()));
            let outputs: Vec<Output> = feed(&mut policy, &start, &utterance(2700, 2000), 1600)
                .into_iter()
                .flat_map(|(_, _, out)| out)
                .collect();
            let partials: Vec<(String, String)> = outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Partial {
                        stable, unstable, ..
                    } => Some((stable.clone(), unstable.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(policy.recognizer.quick_calls, 1);
            (partials, finals(&outputs), policy)
        };
        // The first partial comes from the quick step (at 1 s) and shows its words; no quick
        // word is ever stable or final.
        let (partials, finals_heard, _) = run(true);
        assert_eq!(partials[0].0, "");
        assert!(partials[0].1.starts_with("quick-The"), "{partials:?}");
        assert!(
            partials
                .iter()
                .all(|(stable, _)| !stable.contains("quick-"))
        );
        assert_eq!(
            finals_heard.concat().replace("?x", ""),
            "The weather today is sunny."
        );
        // Even when the quick step heard the same words, the step after it commits nothing:
        // words are committed only when two full recognitions agree.
        let (partials, _, policy) = run(false);
        assert_eq!(partials[0].1.replace("?x", ""), "The weather");
        assert_eq!(partials[1].0, "", "{partials:?}");
        assert!(!partials[2].0.is_empty(), "{partials:?}");
        // The state survives a checkpoint.
        let mut cp = policy.checkpoint();
        cp.tail_provisional = true;
        let bytes = voxbridge_shared::codec::encode(&cp).expect("encode");
        let back: Checkpoint = voxbridge_shared::codec::decode(&bytes).expect("decode");
        assert!(back.tail_provisional);
    }

    #[test]
    fn pauses_are_found_at_the_same_sample_however_the_audio_is_chunked() {
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let words = vec![
            ("Hello", 100, 500),
            ("there.", 500, 900),
            ("How", 2900, 3200),
            ("are", 3200, 3500),
            ("you", 3500, 3800),
        ];
        let mut audio = utterance(1100, 1700);
        audio.extend(utterance(1100, 2000));
        let session = SessionId::new();
        let run = |chunk: usize| {
            let script = Script::new(words.clone(), &start);
            let mut policy = energy_vad(Policy::new(pause_config(), script, session));
            let outputs: Vec<Output> = feed(&mut policy, &start, &audio, chunk)
                .into_iter()
                .flat_map(|(_, _, out)| out)
                .collect();
            (outputs, policy.recognizer.calls)
        };
        let (by_100ms, calls) = run(1600);
        // (A final recognised on an odd call carries the fake recogniser's "?x".)
        assert_eq!(
            finals(&by_100ms)
                .iter()
                .map(|f| f.replace("?x", ""))
                .collect::<Vec<_>>(),
            vec!["Hello there.".to_string(), "How are you".to_string()]
        );
        // (At most 100 ms per push: the fake recogniser learns where the buffer starts between
        // pushes.)
        for chunk in [37 * 16, 1000, 320] {
            let (other, other_calls) = run(chunk);
            assert_eq!(other, by_100ms, "chunks of {chunk} samples");
            assert_eq!(other_calls, calls);
        }
    }

    /// Feeds `ms` of speech in 100 ms chunks, then ends the session; returns every output.
    fn run_session<R: Recognizer>(
        policy: &mut Policy<R>,
        start: &std::sync::atomic::AtomicU64,
        ms: u64,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        for chunk in speech(ms).chunks(1600) {
            start.store(
                policy.buffer_start / SAMPLES_PER_MS,
                std::sync::atomic::Ordering::Relaxed,
            );
            outputs.extend(policy.push(chunk).expect("push"));
        }
        start.store(
            policy.buffer_start / SAMPLES_PER_MS,
            std::sync::atomic::Ordering::Relaxed,
        );
        outputs.extend(policy.flush().expect("flush"));
        outputs
    }

    fn finals(outputs: &[Output]) -> Vec<String> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Final { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The stable text of the last partial.
    fn last_stable(outputs: &[Output]) -> String {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Partial { stable, .. } => Some(stable.clone()),
                _ => None,
            })
            .next_back()
            .expect("a partial")
    }

    fn two_speed(
        misheard: &Transcript,
        accurate: &Transcript,
        start: &std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> TwoSpeed {
        TwoSpeed {
            steps: Script::new(misheard.to_vec(), start),
            accurate: accurate.to_vec(),
            final_calls: Vec::new(),
        }
    }

    #[test]
    fn verified_finals_keep_shown_words_and_take_the_rest_from_the_accurate_run() {
        let misheard = vec![
            ("The", 0, 300),
            ("quick", 300, 700),
            ("brawn", 700, 1100),
            ("fax", 1100, 1500),
        ];
        let accurate = vec![
            ("The", 0, 300),
            ("quick", 300, 700),
            ("brown", 700, 1100),
            ("fox.", 1100, 1500),
        ];
        // Steps at the 500 ms boundaries.
        let config = PolicyConfig {
            step_ms: 500,
            vad_threshold: 0.0,
            first_step_ms: 0,
            ..PolicyConfig::default()
        };
        let session = SessionId::new();
        let make = |start: &std::sync::Arc<std::sync::atomic::AtomicU64>| {
            two_speed(&misheard, &accurate, start)
        };

        // Without verification the final is what the steps heard.
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut plain = Policy::new(config, make(&start), session);
        let outputs = run_session(&mut plain, &start, 1500);
        assert_eq!(finals(&outputs), vec!["The quick brawn fax"]);
        assert!(plain.recognizer.final_calls.is_empty());

        // With it, the words shown as stable stay, the rest comes from the accurate run.
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let verify = PolicyConfig {
            verify_finals: true,
            ..config
        };
        let mut checked = Policy::new(verify, make(&start), session);
        let outputs = run_session(&mut checked, &start, 1500);
        assert_eq!(finals(&outputs), vec!["The quick brown fox."]);
        // One accurate run, over the final's whole audio.
        assert_eq!(checked.recognizer.final_calls, vec![1500]);
        assert_eq!(
            last_stable(&outputs),
            "The quick",
            "words shown as stable before the final"
        );
    }

    #[test]
    fn verified_finals_never_change_words_already_shown() {
        // The steps commit a misheard word before the final; the accurate run disagrees. The
        // shown word stays (listeners saw it as stable) and the final continues after it.
        let misheard = vec![
            ("The", 0, 300),
            ("quack", 300, 700),
            ("brown", 700, 1100),
            ("fox", 1100, 1500),
            ("runs", 1500, 1800),
        ];
        let accurate = vec![
            ("The", 0, 300),
            ("quick", 300, 700),
            ("brown", 700, 1100),
            ("fox", 1100, 1500),
            ("runs.", 1500, 1800),
        ];
        let start = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let config = PolicyConfig {
            step_ms: 500,
            vad_threshold: 0.0,
            verify_finals: true,
            ..PolicyConfig::default()
        };
        let recognizer = two_speed(&misheard, &accurate, &start);
        let mut policy = Policy::new(config, recognizer, SessionId::new());
        let outputs = run_session(&mut policy, &start, 2000);
        let last_stable = last_stable(&outputs);
        assert!(last_stable.contains("quack"), "{last_stable:?}");
        let finals = finals(&outputs);
        assert_eq!(finals.len(), 1, "{finals:?}");
        assert!(
            finals[0].starts_with(&last_stable),
            "{:?} must extend {last_stable:?}",
            finals[0]
        );
        assert!(finals[0].ends_with("runs."), "{finals:?}");
        assert_eq!(policy.recognizer.final_calls.len(), 1);
    }

    /// A recogniser that is a pure function of the audio it is given: the audio carries its own
    /// absolute sample positions ([`positioned`]), so it knows where it is in the session. The
    /// newest word is misheard when the audio ends in an odd half second, so two consecutive
    /// steps disagree on it as whisper's do.
    struct Pure {
        words: Vec<(&'static str, u64, u64)>,
        calls: usize,
        /// Milliseconds of audio each call was given.
        heard_ms: Vec<u64>,
    }

    impl Recognizer for Pure {
        fn recognize(&mut self, audio: &[f32], _prompt: &str) -> Result<Vec<Word>, String> {
            self.calls += 1;
            self.heard_ms.push(audio.len() as u64 / SAMPLES_PER_MS);
            let Some(first) = audio.first() else {
                return Ok(Vec::new());
            };
            let start = (*first * POSITION_SCALE) as u64 / SAMPLES_PER_MS;
            let end = start + audio.len() as u64 / SAMPLES_PER_MS;
            let mut out = words_within(&self.words, start, end);
            if (end / 500) % 2 == 1
                && let Some(last) = out.last_mut()
            {
                last.text.push_str("?x");
            }
            Ok(out)
        }
    }

    /// Sample value = its absolute index / 2^24 (exact in f32 for the lengths used here).
    pub(super) const POSITION_SCALE: f32 = 16_777_216.0;

    fn positioned(from: u64, to: u64) -> Vec<f32> {
        (from..to).map(|i| i as f32 / POSITION_SCALE).collect()
    }

    fn pure_words() -> Vec<(&'static str, u64, u64)> {
        let text = "One small step for a man. One giant leap for mankind. We choose to go to the \
                    moon. Not because it is easy. But because it is hard.";
        text.split(' ')
            .enumerate()
            .map(|(i, w)| (w, 200 + i as u64 * 400, 200 + i as u64 * 400 + 350))
            .collect()
    }

    fn pure() -> Pure {
        Pure {
            words: pure_words(),
            calls: 0,
            heard_ms: Vec::new(),
        }
    }

    fn pure_config() -> PolicyConfig {
        PolicyConfig {
            step_ms: 500,
            vad_threshold: 0.0,
            ..PolicyConfig::default()
        }
    }

    /// What the listeners saw: outputs deduplicated as JetStream does by message id (partials by
    /// segment and revision, finals by index; the first copy stays).
    fn published(outputs: &[Output]) -> Vec<Output> {
        let mut seen = std::collections::HashSet::new();
        outputs
            .iter()
            .filter(|o| {
                seen.insert(match o {
                    Output::Partial {
                        segment_id,
                        revision,
                        ..
                    } => format!("p-{segment_id}-{revision}"),
                    Output::Final { index, .. } => format!("f-{index}"),
                })
            })
            .cloned()
            .collect()
    }

    /// Runs a session over `audio_ms` in 100 ms chunks the way the session task does: `behind`
    /// says for chunk i whether more audio was already waiting (then it is deferred if the
    /// policy allows); a checkpoint with the step's outputs is stored before they are
    /// published. Stops after `crash_after` chunks (returns the last checkpoint) or at the end.
    fn drive(
        policy: &mut Policy<Pure>,
        from_sample: u64,
        audio_ms: u64,
        behind: impl Fn(usize) -> bool,
        crash_after: Option<usize>,
        published_out: &mut Vec<Output>,
    ) -> Option<Checkpoint> {
        let mut last = None;
        let end = audio_ms * SAMPLES_PER_MS;
        let mut at = from_sample;
        let mut i = 0;
        while at < end {
            if crash_after == Some(i) {
                return last;
            }
            let next = (at + 1600).min(end);
            let chunk = positioned(at, next);
            at = next;
            if behind(i)
                && let Some(out) = policy.defer(&chunk, 0)
            {
                if !out.is_empty() {
                    let mut cp = policy.checkpoint();
                    cp.outbox = out.clone();
                    last = Some(cp);
                    published_out.extend(out);
                }
                i += 1;
                continue;
            }
            let out = policy.push(&chunk).expect("push");
            if !out.is_empty() {
                let mut cp = policy.checkpoint();
                cp.outbox = out.clone();
                last = Some(cp);
                published_out.extend(out);
            }
            i += 1;
        }
        let out = policy.flush().expect("flush");
        published_out.extend(out);
        None
    }

    #[test]
    fn a_worker_behind_real_time_catches_up_in_fewer_steps_with_the_same_finals() {
        let on_time = {
            let mut policy = Policy::new(pure_config(), pure(), SessionId::new());
            let mut out = Vec::new();
            drive(&mut policy, 0, 14_000, |_| false, None, &mut out);
            (finals(&out), policy.recognizer.calls)
        };
        // Far behind: every chunk but each 40th finds more audio waiting.
        let mut policy = Policy::new(pure_config(), pure(), SessionId::new());
        let mut out = Vec::new();
        drive(&mut policy, 0, 14_000, |i| i % 40 != 39, None, &mut out);
        assert_eq!(finals(&out), on_time.0);
        assert_eq!(
            finals(&out).join(" "),
            pure_words()
                .iter()
                .map(|w| w.0)
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(
            policy.recognizer.calls * 2 < on_time.1,
            "{} steps behind vs {} on time",
            policy.recognizer.calls,
            on_time.1
        );
        // Deferring stops at max_deferred_ms: at most 4 s wait unrecognised.
        let mut policy = Policy::new(pure_config(), pure(), SessionId::new());
        let mut deferred = 0;
        while policy
            .defer(&positioned(deferred * 1600, (deferred + 1) * 1600), 0)
            .is_some()
        {
            deferred += 1;
        }
        assert_eq!(deferred, 40, "4000 ms of 100 ms chunks");
        assert_eq!(policy.recognizer.calls, 0);
        let out = policy
            .push(&positioned(deferred * 1600, (deferred + 1) * 1600))
            .expect("push");
        // One step catches up on all of it; the next boundary is a step after the audio's end.
        assert_eq!(policy.recognizer.calls, 1);
        assert!(!out.is_empty());
        assert_eq!(policy.next_step, 4500 * SAMPLES_PER_MS);
    }

    /// A live session on a simulated clock, as the session task runs it: 100 ms chunk `i`
    /// arrives when its audio ends, the worker gets to it after finishing what came before, and
    /// a recognition of `b` ms of audio takes `cost_ms(b)`. A chunk that waited longer than a
    /// step is deferred if the policy allows (`by_lag`: [`PolicyConfig::defer_by_lag`]).
    /// Returns each chunk's lag (ms) and the finals.
    fn simulate(
        audio_ms: u64,
        by_lag: bool,
        cost_ms: impl Fn(u64) -> u64,
    ) -> (Vec<u64>, Vec<String>) {
        let config = PolicyConfig {
            defer_by_lag: by_lag,
            ..pure_config()
        };
        let mut policy = Policy::new(config, pure(), SessionId::new());
        let (mut now, mut lags, mut out) = (0, Vec::new(), Vec::new());
        for i in 0..audio_ms / 100 {
            let arrived = (i + 1) * 100;
            now = now.max(arrived);
            let lag = now - arrived;
            lags.push(lag);
            let chunk = positioned(i * 1600, (i + 1) * 1600);
            if lag > config.step_ms
                && let Some(deferred) = policy.defer(&chunk, lag)
            {
                out.extend(deferred);
                continue;
            }
            let before = policy.recognizer.heard_ms.len();
            out.extend(policy.push(&chunk).expect("push"));
            now += policy.recognizer.heard_ms[before..]
                .iter()
                .map(|&b| cost_ms(b))
                .sum::<u64>();
        }
        out.extend(policy.flush().expect("flush"));
        (lags, finals(&out))
    }

    /// On a CPU where recognising the audio a catch-up step covers (4 s) takes longer than 4 s,
    /// a cap of `max_deferred_ms` alone lets the lag grow without end (as measured on a
    /// first-generation EPYC: BENCHMARKS.md); letting a step cover as much as the worker is
    /// behind keeps it bounded, with the same finals.
    #[test]
    fn on_a_slow_cpu_catching_up_by_the_lag_keeps_the_lag_bounded() {
        // 1 s per recognition plus 0.4 s per second of buffer: 4 s of new audio on a buffer
        // growing to 20 s costs 2.6 → 9 s; one recognition of a full buffer costs 9 s.
        let cost = |b: u64| 1000 + b * 4 / 10;
        let config = pure_config();
        let minutes = 5 * 60_000;
        let (fixed, fixed_finals) = simulate(minutes, false, cost);
        let (aware, aware_finals) = simulate(minutes, true, cost);
        let last_minute = |lags: &[u64]| *lags[lags.len() - 600..].iter().max().expect("lags");
        let first_minute = |lags: &[u64]| *lags[..600].iter().max().expect("lags");
        eprintln!(
            "worst lag, first / last minute: max_deferred_ms alone {} / {} ms; by the lag {} / {} ms",
            first_minute(&fixed),
            last_minute(&fixed),
            first_minute(&aware),
            last_minute(&aware)
        );
        assert!(
            last_minute(&fixed) > first_minute(&fixed) + 60_000,
            "the fixed cap falls further behind every minute"
        );
        // Bounded: no worse in the last minute than in the first, and within a full buffer
        // plus one recognition of it.
        assert!(last_minute(&aware) <= first_minute(&aware) + config.step_ms);
        assert!(last_minute(&aware) <= config.max_buffer_ms + cost(config.max_buffer_ms));
        // Every word once, in order. (All audio is speech here, so finals come from the
        // 20 s length limit, which finalises the last hypothesis as heard: the fake's mishearing
        // of the newest word, "?x", can end up in one, whichever step that was.)
        let spoken = pure_words()
            .iter()
            .map(|w| w.0)
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(aware_finals.join(" ").replace("?x", ""), spoken);
        assert_eq!(fixed_finals.join(" ").replace("?x", ""), spoken);
    }

    /// A worker dies at any chunk, behind real time (so which steps ran depended on timing); the
    /// next one restores the last checkpoint, publishes its outbox again and continues on its
    /// own timing. The listeners see every final once, in order, and no stable text changes.
    #[test]
    fn a_resumed_session_continues_from_exactly_what_was_shown() {
        let session = SessionId::new();
        let reference = {
            let mut policy = Policy::new(pure_config(), pure(), session);
            let mut out = Vec::new();
            drive(&mut policy, 0, 14_000, |_| false, None, &mut out);
            finals(&out)
        };
        for crash_after in [15, 23, 38, 61, 90, 117] {
            let mut shown = Vec::new();
            let mut first = Policy::new(pure_config(), pure(), session);
            let checkpoint = drive(
                &mut first,
                0,
                14_000,
                |i| i % 7 != 0,
                Some(crash_after),
                &mut shown,
            )
            .expect("a checkpoint before the crash");
            let from = checkpoint.buffer_start_sample;
            if crash_after % 2 == 1 {
                // Died between storing the checkpoint and publishing its outputs.
                shown.truncate(shown.len() - checkpoint.outbox.len());
            }
            // The next worker publishes the outbox again.
            shown.extend(checkpoint.outbox.clone());
            let mut second = Policy::restore(pure_config(), pure(), session, checkpoint);
            drive(&mut second, from, 14_000, |i| i % 3 == 1, None, &mut shown);
            let seen = published(&shown);
            let indices: Vec<u64> = seen
                .iter()
                .filter_map(|o| match o {
                    Output::Final { index, .. } => Some(*index),
                    _ => None,
                })
                .collect();
            assert_eq!(
                indices,
                (0..indices.len() as u64).collect::<Vec<_>>(),
                "crash after chunk {crash_after}"
            );
            assert_eq!(finals(&seen), reference, "crash after chunk {crash_after}");
            let mut stable: std::collections::HashMap<SegmentId, String> = Default::default();
            for o in &seen {
                if let Output::Partial {
                    segment_id,
                    stable: s,
                    ..
                } = o
                {
                    let before = stable.entry(*segment_id).or_default();
                    assert!(
                        s.starts_with(before.as_str()),
                        "crash after chunk {crash_after}: stable text changed {before:?} -> {s:?}"
                    );
                    *before = s.clone();
                }
            }
        }
    }

    #[test]
    fn checkpoints_round_trip_with_their_outbox_and_next_step() {
        let mut policy = Policy::new(pure_config(), pure(), SessionId::new());
        let mut out = Vec::new();
        let cp = drive(&mut policy, 0, 14_000, |_| false, Some(40), &mut out).expect("cp");
        assert!(!cp.outbox.is_empty());
        assert_eq!(cp.next_step_sample, Some(4500 * SAMPLES_PER_MS));
        let bytes = voxbridge_shared::codec::encode(&cp).expect("encode");
        let back: Checkpoint = voxbridge_shared::codec::decode(&bytes).expect("decode");
        assert_eq!(back, cp);
    }

    /// Without deferring, a session restored from any checkpoint continues with exactly the
    /// outputs (partials and their revisions included) the uninterrupted session produced: it
    /// steps at the same audio positions.
    /// Utterances separated by pauses (one inside a sentence, one just over `pause_ms`, a
    /// one-word utterance), so the first step, pause steps and finals at the pause all happen.
    fn paused_words() -> (Vec<(&'static str, u64, u64)>, Speech) {
        let words = vec![
            ("Hello", 100, 500),
            ("there", 500, 900),
            ("my", 900, 1300),
            ("friend", 1300, 2050),
            ("We", 3550, 3900),
            ("choose", 3900, 4400),
            ("the", 4400, 4700),
            ("moon.", 4700, 5200),
            ("Not", 5300, 5700),
            ("because", 5700, 6250),
            ("Yes.", 7250, 7550),
            ("Well,", 9050, 9750),
            ("maybe", 10350, 10900),
            ("tomorrow", 10900, 11450),
        ];
        let speech = vec![
            (0, 2100),
            (3500, 6300),
            (7200, 7600),
            (9000, 9800),
            (10300, 11500),
        ];
        (words, speech)
    }

    fn paused_policy(session: SessionId, checkpoint: Option<Checkpoint>) -> Policy<Pure> {
        let (words, speech) = paused_words();
        let recognizer = Pure {
            words,
            calls: 0,
            heard_ms: Vec::new(),
        };
        // With the early first step, so every kind of step is restored across.
        let config = PolicyConfig {
            first_step_ms: 500,
            ..PolicyConfig::default()
        };
        let mut policy = match checkpoint {
            Some(cp) => Policy::restore(config, recognizer, session, cp),
            None => Policy::new(config, recognizer, session),
        };
        policy.vad = Vad::Intervals(speech);
        policy.restart_vad();
        policy
    }

    #[test]
    fn a_session_with_pauses_restored_anywhere_continues_as_the_original() {
        let session = SessionId::new();
        let mut whole = Vec::new();
        drive(
            &mut paused_policy(session, None),
            0,
            13_000,
            |_| false,
            None,
            &mut whole,
        );
        // (A final recognised at an odd half second carries the fake recogniser's "?x".)
        assert_eq!(
            finals(&whole)
                .iter()
                .map(|f| f.replace("?x", ""))
                .collect::<Vec<_>>(),
            vec![
                "Hello there my friend",
                "We choose the moon.",
                "Not because",
                "Yes.",
                "Well, maybe tomorrow"
            ],
            "{whole:#?}"
        );
        for crash_after in 1..130 {
            let mut before = Vec::new();
            let Some(cp) = drive(
                &mut paused_policy(session, None),
                0,
                13_000,
                |_| false,
                Some(crash_after),
                &mut before,
            ) else {
                continue;
            };
            let from = cp.buffer_start_sample;
            let shown = before.len();
            let mut after = Vec::new();
            drive(
                &mut paused_policy(session, Some(cp)),
                from,
                13_000,
                |_| false,
                None,
                &mut after,
            );
            assert_eq!(
                after,
                whole[shown..],
                "crash after chunk {crash_after}: the restored session diverged"
            );
        }
    }

    #[test]
    fn a_restored_session_steps_where_the_original_did() {
        let session = SessionId::new();
        let mut whole = Vec::new();
        drive(
            &mut Policy::new(pure_config(), pure(), session),
            0,
            14_000,
            |_| false,
            None,
            &mut whole,
        );
        for crash_after in [12, 37, 64, 101] {
            let mut before = Vec::new();
            let cp = drive(
                &mut Policy::new(pure_config(), pure(), session),
                0,
                14_000,
                |_| false,
                Some(crash_after),
                &mut before,
            )
            .expect("a checkpoint");
            let from = cp.buffer_start_sample;
            let shown = before.len();
            let mut after = Vec::new();
            let mut restored = Policy::restore(pure_config(), pure(), session, cp);
            drive(&mut restored, from, 14_000, |_| false, None, &mut after);
            assert_eq!(
                after,
                whole[shown..],
                "crash after chunk {crash_after}: the restored session diverged"
            );
        }
    }
}
