//! Configuration shared by every binary, as clap argument groups that each binary flattens into
//! its own `Config`. Every field can be set by a flag or a `VOXBRIDGE_…` environment variable and
//! has a named default. Secrets are redacted by `Debug` so the effective config can be logged.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::subjects::{InvalidNamespace, Namespace};
use crate::topology::TopologySettings;

/// Default NATS URL (the local server `scripts/setup` starts).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default model directory (`scripts/setup` fills it).
pub const DEFAULT_MODELS_DIR: &str = "./models";

/// A secret string whose `Debug`/`Display` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

/// How to reach NATS, and which namespace to use.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsConfig {
    /// NATS server URL(s), comma-separated for a cluster.
    #[arg(long = "nats-url", env = "VOXBRIDGE_NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub url: String,
    /// NATS user (each service has its own in nats/nats-server.conf).
    #[arg(long = "nats-user", env = "VOXBRIDGE_NATS_USER")]
    pub user: Option<String>,
    /// NATS password for `--nats-user`.
    #[arg(
        long = "nats-password",
        env = "VOXBRIDGE_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret>,
    /// NATS credentials file (decentralised auth), instead of user/password.
    #[arg(long = "nats-creds", env = "VOXBRIDGE_NATS_CREDS")]
    pub creds_file: Option<PathBuf>,
    /// Namespace prefixed to every subject, stream and bucket; empty in production.
    #[arg(long = "namespace", env = "VOXBRIDGE_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Give up connecting at start-up after this many seconds (0 = keep trying).
    #[arg(
        long = "nats-connect-timeout-s",
        env = "VOXBRIDGE_NATS_CONNECT_TIMEOUT_S",
        default_value_t = 60
    )]
    pub connect_timeout_s: u64,
}

impl NatsConfig {
    /// Config for a URL with defaults otherwise (tests, voxctl).
    pub fn for_url(url: impl Into<String>, namespace: &Namespace) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            creds_file: None,
            namespace: namespace.prefix().to_string(),
            connect_timeout_s: 30,
        }
    }

    /// The validated namespace.
    pub fn namespace(&self) -> Result<Namespace, InvalidNamespace> {
        Namespace::new(&self.namespace)
    }

    /// Start-up connect deadline, `None` = forever.
    pub fn connect_deadline(&self) -> Option<Duration> {
        (self.connect_timeout_s > 0).then(|| Duration::from_secs(self.connect_timeout_s))
    }
}

/// JetStream topology knobs that operators may tune.
#[derive(Debug, Clone, clap::Args)]
pub struct TopologyConfig {
    /// Hours to keep live audio (failover and replay read it).
    #[arg(long, env = "VOXBRIDGE_AUDIO_RETENTION_H", default_value_t = 24)]
    pub audio_retention_h: u64,
    /// Days to keep job files and status.
    #[arg(long, env = "VOXBRIDGE_JOB_RETENTION_D", default_value_t = 7)]
    pub job_retention_d: u64,
    /// Deliveries before a message is dead-lettered.
    #[arg(long, env = "VOXBRIDGE_MAX_DELIVER", default_value_t = crate::topology::DEFAULT_MAX_DELIVER)]
    pub max_deliver: i64,
    /// Stream replicas (3 on a NATS cluster).
    #[arg(long, env = "VOXBRIDGE_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    /// Stream storage: file (durable) or memory (tests, throwaway deployments).
    #[arg(long, env = "VOXBRIDGE_STREAM_STORAGE", value_enum, default_value_t = StorageKind::File)]
    pub stream_storage: StorageKind,
    /// Seconds before an un-kept-alive session claim is redelivered to another STT worker.
    #[arg(long, env = "VOXBRIDGE_SESSION_ACK_WAIT_S", default_value_t = crate::topology::DEFAULT_SESSION_ACK_WAIT.as_secs())]
    pub session_ack_wait_s: u64,
    /// Seconds before an unacknowledged translation request is redelivered.
    #[arg(long, env = "VOXBRIDGE_MT_ACK_WAIT_S", default_value_t = crate::topology::DEFAULT_MT_ACK_WAIT.as_secs())]
    pub mt_ack_wait_s: u64,
    /// Seconds before an unacknowledged job is redelivered.
    #[arg(long, env = "VOXBRIDGE_JOB_ACK_WAIT_S", default_value_t = crate::topology::DEFAULT_JOB_ACK_WAIT.as_secs())]
    pub job_ack_wait_s: u64,
}

/// Where streams keep their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    File,
    Memory,
}

impl TopologyConfig {
    /// The settings these flags describe.
    pub fn settings(&self) -> TopologySettings {
        TopologySettings {
            audio_max_age: Duration::from_secs(self.audio_retention_h * 3600),
            job_retention: Duration::from_secs(self.job_retention_d * 24 * 3600),
            max_deliver: self.max_deliver,
            replicas: self.stream_replicas,
            storage: match self.stream_storage {
                StorageKind::File => async_nats::jetstream::stream::StorageType::File,
                StorageKind::Memory => async_nats::jetstream::stream::StorageType::Memory,
            },
            session_ack_wait: Duration::from_secs(self.session_ack_wait_s.max(1)),
            mt_ack_wait: Duration::from_secs(self.mt_ack_wait_s.max(1)),
            job_ack_wait: Duration::from_secs(self.job_ack_wait_s.max(1)),
            ..TopologySettings::default()
        }
    }
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            audio_retention_h: 24,
            job_retention_d: 7,
            max_deliver: crate::topology::DEFAULT_MAX_DELIVER,
            stream_replicas: 1,
            stream_storage: StorageKind::File,
            session_ack_wait_s: crate::topology::DEFAULT_SESSION_ACK_WAIT.as_secs(),
            mt_ack_wait_s: crate::topology::DEFAULT_MT_ACK_WAIT.as_secs(),
            job_ack_wait_s: crate::topology::DEFAULT_JOB_ACK_WAIT.as_secs(),
        }
    }
}

/// Redis (translation cache).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis URL; empty disables the cache.
    #[arg(long = "redis-url", env = "VOXBRIDGE_REDIS_URL", default_value = DEFAULT_REDIS_URL)]
    pub url: String,
}

/// Logging.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryConfig {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,voxbridge_mt=debug`.
    #[arg(long = "log", env = "VOXBRIDGE_LOG", default_value = "info")]
    pub filter: String,
    /// Log format: text or json.
    #[arg(
        long = "log-format",
        env = "VOXBRIDGE_LOG_FORMAT",
        default_value = "text"
    )]
    pub format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The model directory.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelsConfig {
    /// Directory holding the models (`whisper/`, `nllb-*/`), filled by `scripts/setup`.
    #[arg(long = "models", env = "VOXBRIDGE_MODELS", default_value = DEFAULT_MODELS_DIR)]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s: Secret = "hunter2".parse().expect("infallible");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
