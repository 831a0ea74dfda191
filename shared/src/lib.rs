//! The library every Voxbridge service shares: the wire messages and their codec, NATS subject,
//! stream and bucket names and the JetStream topology, configuration, NATS connection, logging,
//! metrics, dead-lettering, shutdown and the language table.
//!
//! Data enters a service as NATS messages, is decoded with [`codec::decode`] into a type of
//! [`messages`], and leaves encoded with [`codec::encode`] on a subject from [`subjects`].
//! This crate holds no inference code (no whisper-rs, no ct2rs); its only HTTP code is the
//! shared ops endpoint (`/metrics`, `/healthz`) in [`metrics`].

pub mod audio;
pub mod codec;
pub mod config;
pub mod dlq;
pub mod eval;
pub mod ids;
pub mod jobs;
pub mod languages;
pub mod messages;
pub mod metrics;
pub mod nats;
pub mod service;
pub mod shutdown;
pub mod status;
pub mod subjects;
pub mod subtitles;
pub mod telemetry;
pub mod topology;

pub use ids::{JobId, RequestId, SegmentId, SessionId};
