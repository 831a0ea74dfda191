//! Every NATS subject, stream, consumer and bucket name, in one place.
//!
//! A [`Namespace`] prefixes all of them. Production uses the empty namespace (names exactly as in
//! `docs/ARCHITECTURE.md`: `vb.audio.<session>`, stream `AUDIO`, …); tests use a unique namespace
//! each so they can share one NATS server and run in parallel.

use std::fmt;

use crate::ids::{JobId, SessionId};
use crate::messages::JobKind;

/// Base stream names (before namespacing).
pub mod streams {
    pub const AUDIO: &str = "AUDIO";
    pub const SESSIONS: &str = "SESSIONS";
    pub const TRANSCRIPTS: &str = "TRANSCRIPTS";
    pub const MT: &str = "MT";
    pub const TRANSLATIONS: &str = "TRANSLATIONS";
    pub const JOBS: &str = "JOBS";
    pub const DLQ: &str = "DLQ";
    /// Every stream, in creation order.
    pub const ALL: [&str; 7] = [AUDIO, SESSIONS, TRANSCRIPTS, MT, TRANSLATIONS, JOBS, DLQ];
}

/// Base durable consumer names (not namespaced: a consumer lives inside its stream).
pub mod consumers {
    /// STT workers claim live sessions here.
    pub const STT_SESSIONS: &str = "stt-sessions";
    /// All MT workers share this one.
    pub const MT_WORKERS: &str = "mt-workers";
    /// Subtitle-file jobs (run by MT workers).
    pub const JOBS_SUBTITLES: &str = "jobs-subtitles";
    /// Audio-file jobs (run by STT workers).
    pub const JOBS_AUDIO: &str = "jobs-audio";
}

/// Base bucket names.
pub mod buckets {
    /// KV: job status, key = job id.
    pub const JOBS: &str = "vb-jobs";
    /// KV: STT session checkpoints, key = session id.
    pub const STT_CHECKPOINTS: &str = "vb-stt-checkpoints";
    /// KV: recorded sessions' references (`voxctl record`), key = session id.
    pub const RECORDINGS: &str = "vb-recordings";
    /// Object Store: job input files and results.
    pub const FILES: &str = "vb-files";
}

/// The part of a NATS name that isolates one deployment (or one test) from another.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// Lower-case alphanumeric, or empty.
    prefix: String,
}

/// A namespace that is not a single lower-case alphanumeric token.
#[derive(Debug, thiserror::Error)]
#[error("invalid namespace {0:?}: use lower-case letters and digits only (or nothing)")]
pub struct InvalidNamespace(String);

impl Namespace {
    /// Validates and builds a namespace; the empty string is the production namespace.
    pub fn new(prefix: &str) -> Result<Self, InvalidNamespace> {
        if prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(InvalidNamespace(prefix.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
        })
    }

    /// A unique namespace for one test.
    pub fn unique_for_tests() -> Self {
        Self {
            prefix: format!("t{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
        }
    }

    /// The prefix itself ("" in production).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn subject(&self, base: String) -> String {
        if self.prefix.is_empty() {
            base
        } else {
            format!("{}.{base}", self.prefix)
        }
    }

    /// Stream name: `AUDIO`, or `<PREFIX>_AUDIO`.
    pub fn stream(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}_{base}", self.prefix.to_ascii_uppercase())
        }
    }

    /// Bucket name: `vb-jobs`, or `<prefix>-vb-jobs`.
    pub fn bucket(&self, base: &str) -> String {
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{}-{base}", self.prefix)
        }
    }

    /// Wildcard subject bound to a stream (`vb.audio.*`, …).
    pub fn stream_subject(&self, stream: &str) -> String {
        let base = match stream {
            streams::AUDIO => "vb.audio.*",
            streams::SESSIONS => "vb.session.open",
            streams::TRANSCRIPTS => "vb.transcript.*",
            streams::MT => "vb.mt.request.*",
            streams::TRANSLATIONS => "vb.translation.*",
            streams::JOBS => "vb.job.*",
            streams::DLQ => "vb.dlq.*",
            other => return self.subject(format!("vb.unknown.{other}")),
        };
        self.subject(base.to_string())
    }

    /// Live audio and the end marker of one session.
    pub fn audio(&self, session: &SessionId) -> String {
        self.subject(format!("vb.audio.{session}"))
    }

    /// Session claims for STT workers.
    pub fn session_open(&self) -> String {
        self.subject("vb.session.open".into())
    }

    /// Partial and final transcripts (and errors) of one session.
    pub fn transcript(&self, session: &SessionId) -> String {
        self.subject(format!("vb.transcript.{session}"))
    }

    /// Translation requests into one target language (FLORES-200 code).
    pub fn mt_request(&self, target_flores: &str) -> String {
        self.subject(format!("vb.mt.request.{target_flores}"))
    }

    /// Translations for one live session.
    pub fn translation(&self, session: &SessionId) -> String {
        self.subject(format!("vb.translation.{session}"))
    }

    /// Subjects under which translation replies for live sessions are stream-backed; anything
    /// else (an inbox) is answered with a core NATS publish.
    pub fn translation_wildcard(&self) -> String {
        self.stream_subject(streams::TRANSLATIONS)
    }

    /// Batch jobs of one kind.
    pub fn job(&self, kind: JobKind) -> String {
        let kind = match kind {
            JobKind::Subtitles => "subtitles",
            JobKind::Audio => "audio",
        };
        self.subject(format!("vb.job.{kind}"))
    }

    /// Progress events of one job (core NATS; the KV bucket keeps the latest status).
    pub fn job_progress(&self, job: &JobId) -> String {
        self.subject(format!("vb.jobevent.{job}.progress"))
    }

    /// Dead letters from one stream (`vb.dlq.mt`, …).
    pub fn dlq(&self, stream_base: &str) -> String {
        self.subject(format!("vb.dlq.{}", stream_base.to_ascii_lowercase()))
    }

    /// Worker heartbeats.
    pub fn heartbeat(&self, component: &str, instance: &str) -> String {
        self.subject(format!("vb.heartbeat.{component}.{instance}"))
    }

    /// All heartbeats.
    pub fn heartbeat_wildcard(&self) -> String {
        self.subject("vb.heartbeat.*.*".into())
    }

    /// A worker process's presence: it answers requests here for as long as it is connected, so
    /// a request that finds no responder means the process is gone (NATS answers "no
    /// responders" at once, where a missed heartbeat or an ack wait takes seconds).
    pub fn presence(&self, instance: &str) -> String {
        self.subject(format!("vb.presence.{instance}"))
    }

    /// The server's advisory when a consumer gave up on a message (`MaxDeliver` reached).
    /// Advisories are not namespaced by us; the stream name carries the namespace.
    pub fn max_deliveries_advisory(&self, stream_base: &str, consumer: &str) -> String {
        format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{consumer}",
            self.stream(stream_base)
        )
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names_are_as_designed() {
        let ns = Namespace::default();
        let s = SessionId::new();
        assert_eq!(ns.audio(&s), format!("vb.audio.{s}"));
        assert_eq!(ns.stream(streams::AUDIO), "AUDIO");
        assert_eq!(ns.bucket(buckets::JOBS), "vb-jobs");
        assert_eq!(ns.mt_request("vie_Latn"), "vb.mt.request.vie_Latn");
        assert_eq!(ns.dlq(streams::MT), "vb.dlq.mt");
    }

    #[test]
    fn namespaced_names_cannot_collide_with_production() {
        let ns = Namespace::new("t1").expect("valid");
        assert_eq!(ns.stream(streams::MT), "T1_MT");
        assert_eq!(ns.session_open(), "t1.vb.session.open");
        assert_eq!(ns.bucket(buckets::FILES), "t1-vb-files");
        assert!(Namespace::new("Bad.Prefix").is_err());
    }

    #[test]
    fn every_specific_subject_matches_its_stream_wildcard() {
        let ns = Namespace::new("x").expect("valid");
        let s = SessionId::new();
        let cases = [
            (streams::AUDIO, ns.audio(&s)),
            (streams::SESSIONS, ns.session_open()),
            (streams::TRANSCRIPTS, ns.transcript(&s)),
            (streams::MT, ns.mt_request("fra_Latn")),
            (streams::TRANSLATIONS, ns.translation(&s)),
            (streams::JOBS, ns.job(JobKind::Audio)),
            (streams::DLQ, ns.dlq(streams::JOBS)),
        ];
        for (stream, subject) in cases {
            let pattern = ns.stream_subject(stream);
            assert!(matches(&pattern, &subject), "{subject} !~ {pattern}");
        }
    }

    fn matches(pattern: &str, subject: &str) -> bool {
        let p: Vec<_> = pattern.split('.').collect();
        let s: Vec<_> = subject.split('.').collect();
        p.len() == s.len() && p.iter().zip(&s).all(|(p, s)| *p == "*" || p == s)
    }
}
