//! The deployment's state as an operator sees it: which workers are alive (from their heartbeats)
//! and how full the streams and consumers are (from JetStream's stream and consumer info).
//!
//! Data in: [`Heartbeat`]s on `vb.heartbeat.<component>.<instance>` fed to a [`WorkerTracker`],
//! and `STREAM.INFO` / `CONSUMER.INFO` answers read by [`read_queues`]. Data out: plain values.
//! The edge exports them as gauges (`voxbridge_edge_workers_alive`,
//! `voxbridge_edge_consumer_pending_messages`, …); `voxctl status` prints them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::TryStreamExt;
use serde::Serialize;

use crate::messages::Heartbeat;
use crate::service::HEARTBEAT_INTERVAL;
use crate::subjects::streams;
use crate::topology::Topology;

/// Components that publish heartbeats and are counted (a fixed set: it is a metric label).
pub const WORKER_COMPONENTS: [&str; 2] = ["stt", "mt"];

/// Heartbeat intervals without a beat after which a worker counts as gone.
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// How long a worker counts as alive after its last heartbeat: three intervals, so one or two
/// lost beats (a busy runtime, a NATS reconnect) do not make it flap.
pub const fn stale_after() -> Duration {
    Duration::from_secs(HEARTBEAT_INTERVAL.as_secs() * STALE_AFTER_INTERVALS as u64)
}

/// The last heartbeat of each worker instance.
///
/// Liveness is judged by when a beat was *received* here, not by its `emitted_at_ms`, so a
/// worker whose clock is off is still counted correctly.
#[derive(Debug)]
pub struct WorkerTracker {
    stale_after: Duration,
    last: HashMap<String, (Instant, Heartbeat)>,
}

/// One live worker instance.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    pub component: String,
    pub instance: String,
    pub version: String,
    /// Work items in progress when it last reported (sessions, batches, jobs).
    pub in_flight: u32,
    /// Seconds since the worker started (from its own clock).
    pub uptime_s: u64,
    /// Seconds since its last heartbeat was received.
    pub last_seen_s: f64,
}

impl Default for WorkerTracker {
    fn default() -> Self {
        Self::new(stale_after())
    }
}

impl WorkerTracker {
    /// A tracker that forgets a worker `stale_after` after its last beat.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            stale_after,
            last: HashMap::new(),
        }
    }

    /// Records a beat received at `at`. Beats of components outside [`WORKER_COMPONENTS`] are
    /// ignored (they would become unbounded label values).
    pub fn observe(&mut self, beat: Heartbeat, at: Instant) {
        if !WORKER_COMPONENTS.contains(&beat.component.as_str()) {
            return;
        }
        self.prune(at);
        self.last.insert(beat.instance.clone(), (at, beat));
    }

    /// Forgets workers not heard from for longer than the stale limit (instances are unique per
    /// process, so without this the map would grow with every restart).
    pub fn prune(&mut self, now: Instant) {
        let limit = self.stale_after;
        self.last
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < limit);
    }

    /// Live workers per component; every component of [`WORKER_COMPONENTS`] is present.
    pub fn alive(&self, now: Instant) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> =
            WORKER_COMPONENTS.iter().map(|c| (*c, 0)).collect();
        for (at, beat) in self.last.values() {
            if now.saturating_duration_since(*at) < self.stale_after
                && let Some(count) = counts.get_mut(beat.component.as_str())
            {
                *count += 1;
            }
        }
        counts
    }

    /// The live workers, by component then instance.
    pub fn workers(&self, now: Instant) -> Vec<WorkerView> {
        let mut out: Vec<WorkerView> = self
            .last
            .values()
            .filter(|(at, _)| now.saturating_duration_since(*at) < self.stale_after)
            .map(|(at, beat)| WorkerView {
                component: beat.component.clone(),
                instance: beat.instance.clone(),
                version: beat.version.clone(),
                in_flight: beat.in_flight,
                uptime_s: beat.emitted_at_ms.saturating_sub(beat.started_at_ms) / 1000,
                last_seen_s: now.saturating_duration_since(*at).as_secs_f64(),
            })
            .collect();
        out.sort_by(|a, b| (&a.component, &a.instance).cmp(&(&b.component, &b.instance)));
        out
    }
}

/// One stream's size.
#[derive(Debug, Clone, Serialize)]
pub struct StreamState {
    /// Base name (`MT`, `DLQ`, …), the same in every namespace.
    pub stream: &'static str,
    /// The stream's real name (namespaced).
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub consumers: usize,
}

/// One durable consumer's backlog, as the server reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerState {
    /// Base stream name.
    pub stream: &'static str,
    pub consumer: String,
    /// Messages matching the consumer's filter not yet delivered to any worker: the lag.
    pub pending: u64,
    /// Delivered and not yet acknowledged (work in progress, or a worker that died with it).
    pub ack_pending: u64,
    /// Of the ack-pending messages, those delivered more than once.
    pub redelivered: u64,
    /// Pull requests waiting (roughly: idle workers).
    pub waiting: u64,
}

/// Every stream and durable consumer of a topology.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueSnapshot {
    pub streams: Vec<StreamState>,
    pub consumers: Vec<ConsumerState>,
}

impl QueueSnapshot {
    /// The state of one stream by base name.
    pub fn stream(&self, base: &str) -> Option<&StreamState> {
        self.streams.iter().find(|s| s.stream == base)
    }

    /// Messages in the DLQ stream (0 when it could not be read).
    pub fn dlq_messages(&self) -> u64 {
        self.stream(streams::DLQ).map_or(0, |s| s.messages)
    }
}

/// Why the queues could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read stream {name}: {message}")]
    Stream { name: String, message: String },
    #[error("cannot read consumer {stream}/{consumer}: {message}")]
    Consumer {
        stream: String,
        consumer: String,
        message: String,
    },
}

/// Reads the info of every stream and durable consumer of `topology` (one request each).
pub async fn read_queues(
    js: &jetstream::Context,
    topology: &Topology,
) -> Result<QueueSnapshot, StatusError> {
    let ns = &topology.namespace;
    let mut snapshot = QueueSnapshot::default();
    for base in streams::ALL {
        let name = ns.stream(base);
        let stream = js
            .get_stream(&name)
            .await
            .map_err(|e| StatusError::Stream {
                name: name.clone(),
                message: e.to_string(),
            })?;
        let state = &stream.cached_info().state;
        snapshot.streams.push(StreamState {
            stream: base,
            name: name.clone(),
            messages: state.messages,
            bytes: state.bytes,
            consumers: state.consumer_count,
        });
        for def in topology.consumers.iter().filter(|c| c.stream == base) {
            let consumer = def.config.durable_name.clone().unwrap_or_default();
            let info =
                stream
                    .consumer_info(&consumer)
                    .await
                    .map_err(|e| StatusError::Consumer {
                        stream: name.clone(),
                        consumer: consumer.clone(),
                        message: e.to_string(),
                    })?;
            snapshot.consumers.push(ConsumerState {
                stream: base,
                consumer,
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
                redelivered: info.num_redelivered as u64,
                waiting: info.num_waiting as u64,
            });
        }
    }
    Ok(snapshot)
}

/// Dead letters per source stream (`mt`, `jobs`, …: the last token of `vb.dlq.<source>`).
pub async fn dlq_by_source(
    js: &jetstream::Context,
    topology: &Topology,
) -> Result<BTreeMap<String, u64>, StatusError> {
    let ns = &topology.namespace;
    let name = ns.stream(streams::DLQ);
    let error = |e: &dyn std::fmt::Display| StatusError::Stream {
        name: name.clone(),
        message: e.to_string(),
    };
    let stream = js.get_stream(&name).await.map_err(|e| error(&e))?;
    let mut subjects = stream
        .info_with_subjects(ns.stream_subject(streams::DLQ))
        .await
        .map_err(|e| error(&e))?;
    let mut out = BTreeMap::new();
    while let Some((subject, count)) = subjects.try_next().await.map_err(|e| error(&e))? {
        let source = subject.rsplit('.').next().unwrap_or_default().to_string();
        *out.entry(source).or_default() += count as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(component: &str, instance: &str) -> Heartbeat {
        Heartbeat {
            v: 1,
            component: component.into(),
            instance: instance.into(),
            version: "0.1.0".into(),
            started_at_ms: 1_000,
            emitted_at_ms: 61_000,
            in_flight: 2,
        }
    }

    #[test]
    fn a_worker_is_alive_for_three_intervals_after_its_last_beat() {
        assert_eq!(stale_after(), Duration::from_secs(15));
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::default();
        tracker.observe(beat("mt", "mt-a"), t0);
        tracker.observe(beat("mt", "mt-b"), t0 + Duration::from_secs(10));
        tracker.observe(beat("stt", "stt-a"), t0);
        let alive = tracker.alive(t0 + Duration::from_secs(14));
        assert_eq!(alive.get("mt"), Some(&2));
        assert_eq!(alive.get("stt"), Some(&1));
        let later = t0 + Duration::from_secs(16);
        let alive = tracker.alive(later);
        assert_eq!(alive.get("mt"), Some(&1));
        assert_eq!(alive.get("stt"), Some(&0), "stale workers count as gone");
        let workers = tracker.workers(later);
        assert_eq!(workers.len(), 1);
        assert_eq!(workers[0].instance, "mt-b");
        assert_eq!(workers[0].uptime_s, 60);
        assert_eq!(workers[0].in_flight, 2);
    }

    #[test]
    fn a_new_beat_renews_a_worker_and_stale_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::new(Duration::from_secs(3));
        tracker.observe(beat("stt", "stt-a"), t0);
        tracker.observe(beat("stt", "stt-a"), t0 + Duration::from_secs(2));
        assert_eq!(
            tracker.alive(t0 + Duration::from_secs(4)).get("stt"),
            Some(&1)
        );
        tracker.observe(beat("mt", "mt-a"), t0 + Duration::from_secs(10));
        assert_eq!(tracker.last.len(), 1, "the stale stt worker is pruned");
    }

    #[test]
    fn unknown_components_are_not_counted() {
        let t0 = Instant::now();
        let mut tracker = WorkerTracker::default();
        tracker.observe(beat("edge", "edge-a"), t0);
        tracker.observe(beat("x; drop", "x-a"), t0);
        let alive = tracker.alive(t0);
        assert_eq!(alive.keys().copied().collect::<Vec<_>>(), vec!["mt", "stt"]);
        assert!(alive.values().all(|n| *n == 0));
    }
}
