//! The JetStream topology — streams, durable consumers, KV buckets and the Object Store — defined
//! once here and created idempotently by [`ensure_topology`] at every service's start-up.
//!
//! The same definitions are committed as JSON under `nats/jetstream/` (for operators and the
//! `nats` CLI); `voxctl topology export` rewrites them from this module and a test checks that the
//! committed files agree with the code.

use std::time::Duration;

use async_nats::jetstream::{
    self, consumer,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use serde::{Deserialize, Serialize};

use crate::subjects::{Namespace, buckets, consumers, streams};

/// The minimum nats-server version Voxbridge needs (consumer create-or-update API,
/// multi-filter work queues and KV/Object Store as used here).
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 10, 0);

/// Knobs that change between production and tests (short ack waits make redelivery testable).
#[derive(Debug, Clone, PartialEq)]
pub struct TopologySettings {
    /// How long AUDIO keeps a session's audio (failover and replay read it).
    pub audio_max_age: Duration,
    /// How long transcripts and translations are kept for reconnecting clients and replay.
    pub events_max_age: Duration,
    /// How long dead letters are kept.
    pub dlq_max_age: Duration,
    /// How long job status and job files are kept.
    pub job_retention: Duration,
    /// JetStream publish de-duplication window (`Nats-Msg-Id`).
    pub duplicate_window: Duration,
    /// Ack wait of the MT consumer (workers send progress acks during long batches).
    pub mt_ack_wait: Duration,
    /// Ack wait of the session-claim consumer (owners send progress acks while live).
    pub session_ack_wait: Duration,
    /// Ack wait of the job consumers.
    pub job_ack_wait: Duration,
    /// Deliveries before a message is given up on and dead-lettered.
    pub max_deliver: i64,
    /// Storage for every stream (file in production, memory for fast tests).
    pub storage: StorageType,
    /// Stream replicas (3 on a NATS cluster).
    pub replicas: usize,
}

/// Defaults used in production; documented in `docs/ARCHITECTURE.md`.
pub const DEFAULT_AUDIO_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_EVENTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_DLQ_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
pub const DEFAULT_MT_ACK_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_SESSION_ACK_WAIT: Duration = Duration::from_secs(5);
pub const DEFAULT_JOB_ACK_WAIT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_DELIVER: i64 = 5;

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            audio_max_age: DEFAULT_AUDIO_MAX_AGE,
            events_max_age: DEFAULT_EVENTS_MAX_AGE,
            dlq_max_age: DEFAULT_DLQ_MAX_AGE,
            job_retention: DEFAULT_JOB_RETENTION,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            mt_ack_wait: DEFAULT_MT_ACK_WAIT,
            session_ack_wait: DEFAULT_SESSION_ACK_WAIT,
            job_ack_wait: DEFAULT_JOB_ACK_WAIT,
            max_deliver: DEFAULT_MAX_DELIVER,
            storage: StorageType::File,
            replicas: 1,
        }
    }
}

/// A durable pull consumer and the stream it reads.
#[derive(Debug, Clone)]
pub struct ConsumerDef {
    /// Base stream name (see [`streams`]).
    pub stream: &'static str,
    pub config: consumer::pull::Config,
}

/// A KV bucket, in a form that can be written as JSON (async-nats' `kv::Config` is not
/// serialisable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvDef {
    pub bucket: String,
    pub description: String,
    pub history: i64,
    pub max_age_s: u64,
    pub storage: StorageType,
    pub replicas: usize,
}

/// An Object Store bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStoreDef {
    pub bucket: String,
    pub description: String,
    pub max_age_s: u64,
    pub storage: StorageType,
    pub replicas: usize,
}

/// Every definition for one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    pub namespace: Namespace,
    pub streams: Vec<stream::Config>,
    pub consumers: Vec<ConsumerDef>,
    pub key_values: Vec<KvDef>,
    pub object_stores: Vec<ObjectStoreDef>,
}

impl Topology {
    /// Builds the definitions for `namespace` with `settings`.
    pub fn new(namespace: &Namespace, settings: &TopologySettings) -> Self {
        let ns = namespace;
        let s = settings;
        let stream = |base: &str, retention, max_age: Duration, description: &str| stream::Config {
            name: ns.stream(base),
            subjects: vec![ns.stream_subject(base)],
            retention,
            max_age,
            storage: s.storage,
            num_replicas: s.replicas,
            duplicate_window: s.duplicate_window,
            discard: DiscardPolicy::Old,
            // Direct get lets a reconnecting client's replay and the DLQ read single messages.
            allow_direct: true,
            description: Some(description.to_string()),
            ..Default::default()
        };
        let limits = RetentionPolicy::Limits;
        let work = RetentionPolicy::WorkQueue;
        let mut streams = vec![
            stream(
                streams::AUDIO,
                limits,
                s.audio_max_age,
                "live audio chunks and end markers, kept for failover and replay",
            ),
            stream(
                streams::SESSIONS,
                work,
                s.audio_max_age,
                "live session claims; one STT worker owns each",
            ),
            stream(
                streams::TRANSCRIPTS,
                limits,
                s.events_max_age,
                "partial and final transcript events",
            ),
            stream(
                streams::MT,
                work,
                s.events_max_age,
                "translation requests, shared by all MT workers",
            ),
            stream(
                streams::TRANSLATIONS,
                limits,
                s.events_max_age,
                "translations for live sessions",
            ),
            stream(
                streams::JOBS,
                work,
                s.job_retention,
                "batch subtitle and audio-file jobs",
            ),
            stream(
                streams::DLQ,
                limits,
                s.dlq_max_age,
                "dead letters with their reason",
            ),
        ];
        // Work queues must not lose a claim to a size limit; the audio stream may need big
        // messages (250 ms of audio is 8 kB; DLQ records carry the original payload).
        for st in &mut streams {
            st.max_message_size = 8 * 1024 * 1024;
        }

        let pull = |name: &str, filter: String, ack_wait: Duration, max_ack_pending: i64| {
            consumer::pull::Config {
                durable_name: Some(name.to_string()),
                description: None,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                max_deliver: s.max_deliver,
                filter_subject: filter,
                max_ack_pending,
                num_replicas: s.replicas,
                ..Default::default()
            }
        };
        let consumers = vec![
            ConsumerDef {
                stream: streams::SESSIONS,
                config: pull(
                    consumers::STT_SESSIONS,
                    ns.session_open(),
                    s.session_ack_wait,
                    1024,
                ),
            },
            ConsumerDef {
                stream: streams::MT,
                config: pull(
                    consumers::MT_WORKERS,
                    ns.stream_subject(streams::MT),
                    s.mt_ack_wait,
                    1024,
                ),
            },
            ConsumerDef {
                stream: streams::JOBS,
                config: pull(
                    consumers::JOBS_SUBTITLES,
                    ns.job(crate::messages::JobKind::Subtitles),
                    s.job_ack_wait,
                    64,
                ),
            },
            ConsumerDef {
                stream: streams::JOBS,
                config: pull(
                    consumers::JOBS_AUDIO,
                    ns.job(crate::messages::JobKind::Audio),
                    s.job_ack_wait,
                    64,
                ),
            },
        ];

        let key_values = vec![
            KvDef {
                bucket: ns.bucket(buckets::JOBS),
                description: "job status, key = job id (and content-hash index)".into(),
                history: 1,
                max_age_s: s.job_retention.as_secs(),
                storage: s.storage,
                replicas: s.replicas,
            },
            KvDef {
                bucket: ns.bucket(buckets::STT_CHECKPOINTS),
                description: "STT session checkpoints, key = session id".into(),
                history: 1,
                max_age_s: s.audio_max_age.as_secs(),
                storage: s.storage,
                replicas: s.replicas,
            },
            KvDef {
                bucket: ns.bucket(buckets::RECORDINGS),
                description: "recorded sessions' references (voxctl record), key = session id"
                    .into(),
                history: 1,
                // A recording is only useful while its audio is kept.
                max_age_s: s.audio_max_age.as_secs(),
                storage: s.storage,
                replicas: s.replicas,
            },
        ];
        let object_stores = vec![ObjectStoreDef {
            bucket: ns.bucket(buckets::FILES),
            description: "job input files and results".into(),
            max_age_s: s.job_retention.as_secs(),
            storage: s.storage,
            replicas: s.replicas,
        }];
        Self {
            namespace: ns.clone(),
            streams,
            consumers,
            key_values,
            object_stores,
        }
    }

    /// The definitions as `(file name, JSON)` pairs, as committed under `nats/jetstream/`.
    pub fn to_json_files(&self) -> Result<Vec<(String, String)>, serde_json::Error> {
        let mut files = Vec::new();
        for st in &self.streams {
            files.push((format!("stream.{}.json", st.name), pretty(st)?));
        }
        for c in &self.consumers {
            let name = c.config.durable_name.clone().unwrap_or_default();
            files.push((
                format!("consumer.{}.{name}.json", self.namespace.stream(c.stream)),
                pretty(&c.config)?,
            ));
        }
        for kv in &self.key_values {
            files.push((format!("kv.{}.json", kv.bucket), pretty(kv)?));
        }
        for os in &self.object_stores {
            files.push((format!("object-store.{}.json", os.bucket), pretty(os)?));
        }
        Ok(files)
    }
}

fn pretty<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(value).map(|mut s| {
        s.push('\n');
        s
    })
}

/// Why the topology could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "JetStream is not enabled on the NATS server (start nats-server with -js or `jetstream {{}}` in its config): {0}"
    )]
    JetStreamDisabled(String),
    #[error("could not create or update stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    #[error("could not create or update consumer {stream}/{name}: {source}")]
    Consumer {
        stream: String,
        name: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error("could not create or update KV bucket {name}: {source}")]
    KeyValue {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateKeyValueError,
    },
    #[error("could not create object store {name}: {source}")]
    ObjectStore {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateObjectStoreError,
    },
}

/// Creates or updates every stream, consumer, KV bucket and object store of `topology`.
/// Safe to call from every service on every start: an existing definition is left as it is
/// when it already matches, and updated in place when an editable field changed.
pub async fn ensure_topology(
    js: &jetstream::Context,
    topology: &Topology,
) -> Result<(), TopologyError> {
    if let Err(error) = js.query_account().await {
        return Err(TopologyError::JetStreamDisabled(error.to_string()));
    }
    for config in &topology.streams {
        js.create_or_update_stream(config.clone())
            .await
            .map_err(|source| TopologyError::Stream {
                name: config.name.clone(),
                source,
            })?;
    }
    for def in &topology.consumers {
        let stream_name = topology.namespace.stream(def.stream);
        js.create_consumer_on_stream(def.config.clone(), &stream_name)
            .await
            .map_err(|source| TopologyError::Consumer {
                stream: stream_name.clone(),
                name: def.config.durable_name.clone().unwrap_or_default(),
                source,
            })?;
    }
    for kv in &topology.key_values {
        js.create_or_update_key_value(jetstream::kv::Config {
            bucket: kv.bucket.clone(),
            description: kv.description.clone(),
            history: kv.history,
            max_age: Duration::from_secs(kv.max_age_s),
            storage: kv.storage,
            num_replicas: kv.replicas,
            ..Default::default()
        })
        .await
        .map_err(|source| TopologyError::KeyValue {
            name: kv.bucket.clone(),
            source,
        })?;
    }
    for os in &topology.object_stores {
        js.create_object_store(jetstream::object_store::Config {
            bucket: os.bucket.clone(),
            description: Some(os.description.clone()),
            max_age: Duration::from_secs(os.max_age_s),
            storage: os.storage,
            num_replicas: os.replicas,
            ..Default::default()
        })
        .await
        .map_err(|source| TopologyError::ObjectStore {
            name: os.bucket.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Parses a server version string such as "2.10.22" or "v2.9.10-beta".
pub fn parse_server_version(version: &str) -> Option<(u64, u64, u64)> {
    let v = version.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Whether a server version is new enough for Voxbridge.
pub fn server_version_supported(version: &str) -> bool {
    parse_server_version(version).is_some_and(|v| v >= MIN_SERVER_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_json_definitions_agree_with_the_code() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats/jetstream");
        let topology = Topology::new(&Namespace::default(), &TopologySettings::default());
        let files = topology.to_json_files().expect("serialise");
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .expect("nats/jetstream exists")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        committed.sort();
        let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        expected.sort();
        assert_eq!(
            committed, expected,
            "nats/jetstream/ files differ from the code: run `voxctl topology export --dir nats/jetstream`"
        );
        for (name, json) in files {
            let on_disk = std::fs::read_to_string(dir.join(&name)).expect("read");
            let a: serde_json::Value = serde_json::from_str(&on_disk).expect("valid JSON");
            let b: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(
                a, b,
                "{name} differs from the code: run `voxctl topology export --dir nats/jetstream`"
            );
        }
    }

    #[test]
    fn work_queue_consumers_do_not_overlap() {
        let t = Topology::new(&Namespace::default(), &TopologySettings::default());
        let jobs: Vec<_> = t
            .consumers
            .iter()
            .filter(|c| c.stream == streams::JOBS)
            .map(|c| c.config.filter_subject.clone())
            .collect();
        assert_eq!(jobs.len(), 2);
        assert_ne!(jobs[0], jobs[1]);
        assert!(jobs.iter().all(|f| !f.contains('*') && !f.contains('>')));
    }

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_server_version("2.10.22"), Some((2, 10, 22)));
        assert_eq!(parse_server_version("v2.9.10-beta"), Some((2, 9, 10)));
        assert!(!server_version_supported("2.9.10"));
        assert!(server_version_supported("2.15.1"));
        assert_eq!(parse_server_version("garbage"), None);
    }
}
