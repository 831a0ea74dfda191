//! Gauges about the whole deployment, exported by the edge because every deployment has one and
//! Prometheus already scrapes it: workers alive per component (counted from heartbeats) and the
//! size of every stream and the backlog of every durable consumer (polled from JetStream).
//!
//! Data in: heartbeats on `vb.heartbeat.*.*` and `STREAM.INFO` / `CONSUMER.INFO` answers, read by
//! [`voxbridge_shared::status`]. Data out: `voxbridge_edge_workers_alive{component}`,
//! `voxbridge_edge_stream_{messages,bytes}{stream}` and
//! `voxbridge_edge_consumer_{pending,ack_pending,redelivered}_messages{stream,consumer}`.
//! Every edge of a deployment exports the same values: dashboards and alerts aggregate them with
//! `max`, never `sum`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::codec;
use voxbridge_shared::messages::Heartbeat;
use voxbridge_shared::metrics::StreamLabel;
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::status::{self, QueueSnapshot, WORKER_COMPONENTS, WorkerTracker};

/// Default seconds between two reads of the stream and consumer info.
pub const DEFAULT_QUEUE_POLL_S: u64 = 5;
/// How often the alive count is recomputed (a worker that stops beating drops out within this
/// much of its stale limit).
const ALIVE_REFRESH: Duration = Duration::from_secs(1);

/// Label: a heartbeating component (`stt`, `mt`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabel {
    pub component: &'static str,
}

/// Label: a durable consumer and its stream (both from the topology, a fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    pub stream: &'static str,
    pub consumer: String,
}

/// The edge's deployment-wide gauges.
#[derive(Debug, Clone, Default)]
pub struct SystemMetrics {
    pub workers_alive: Family<ComponentLabel, Gauge>,
    pub stream_messages: Family<StreamLabel, Gauge>,
    pub stream_bytes: Family<StreamLabel, Gauge>,
    pub consumer_pending: Family<ConsumerLabel, Gauge>,
    pub consumer_ack_pending: Family<ConsumerLabel, Gauge>,
    pub consumer_redelivered: Family<ConsumerLabel, Gauge>,
    pub queue_poll_errors: Counter,
}

impl SystemMetrics {
    /// Registers under `voxbridge_edge_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        // Both components exist from the start, at 0: "no STT worker" is a series, not a gap.
        for component in WORKER_COMPONENTS {
            let _created = m.workers_alive.get_or_create(&ComponentLabel { component });
        }
        let r = registry.sub_registry_with_prefix("voxbridge_edge");
        r.register(
            "workers_alive",
            "Workers whose last heartbeat is younger than three heartbeat intervals, by component",
            m.workers_alive.clone(),
        );
        r.register(
            "stream_messages",
            "Messages stored in each JetStream stream (the DLQ's is the dead-letter count)",
            m.stream_messages.clone(),
        );
        r.register(
            "stream_bytes",
            "Bytes stored in each JetStream stream",
            m.stream_bytes.clone(),
        );
        r.register(
            "consumer_pending_messages",
            "Messages a durable consumer has not yet delivered: its lag",
            m.consumer_pending.clone(),
        );
        r.register(
            "consumer_ack_pending_messages",
            "Messages a durable consumer delivered that are not acknowledged yet",
            m.consumer_ack_pending.clone(),
        );
        r.register(
            "consumer_redelivered_messages",
            "Unacknowledged messages of a durable consumer that were delivered more than once",
            m.consumer_redelivered.clone(),
        );
        r.register(
            "queue_poll_errors",
            "Failed reads of the stream and consumer info (the gauges keep their last values)",
            m.queue_poll_errors.clone(),
        );
        m
    }

    /// Sets the stream and consumer gauges from a snapshot.
    pub fn set_queues(&self, snapshot: &QueueSnapshot) {
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for s in &snapshot.streams {
            let label = StreamLabel { stream: s.stream };
            self.stream_messages
                .get_or_create(&label)
                .set(to_i64(s.messages));
            self.stream_bytes.get_or_create(&label).set(to_i64(s.bytes));
        }
        for c in &snapshot.consumers {
            let label = ConsumerLabel {
                stream: c.stream,
                consumer: c.consumer.clone(),
            };
            self.consumer_pending
                .get_or_create(&label)
                .set(to_i64(c.pending));
            self.consumer_ack_pending
                .get_or_create(&label)
                .set(to_i64(c.ack_pending));
            self.consumer_redelivered
                .get_or_create(&label)
                .set(to_i64(c.redelivered));
        }
    }

    fn set_alive(&self, tracker: &WorkerTracker, now: Instant) {
        for (component, count) in tracker.alive(now) {
            self.workers_alive
                .get_or_create(&ComponentLabel { component })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
}

/// Starts counting heartbeats and polling the queues every `poll`, until `shutdown`.
pub async fn start(
    ctx: ServiceContext,
    metrics: SystemMetrics,
    poll: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut beats = ctx
        .client
        .subscribe(ctx.namespace.heartbeat_wildcard())
        .await?;
    let tracker = Arc::new(Mutex::new(WorkerTracker::default()));
    let heartbeat_metrics = metrics.clone();
    let heartbeat_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ALIVE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = heartbeat_shutdown.cancelled() => break,
                message = beats.next() => {
                    let Some(message) = message else { break };
                    match codec::decode::<Heartbeat>(&message.payload) {
                        Ok(beat) => {
                            let now = Instant::now();
                            let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
                            t.observe(beat, now);
                            heartbeat_metrics.set_alive(&t, now);
                        }
                        Err(error) => {
                            tracing::debug!(%error, subject = %message.subject, "undecodable heartbeat ignored");
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
                    t.prune(now);
                    heartbeat_metrics.set_alive(&t, now);
                }
            }
        }
    });

    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Log the first failure of a run of failures, not every poll.
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match status::read_queues(&ctx.js, &ctx.topology).await {
                Ok(snapshot) => {
                    metrics.set_queues(&snapshot);
                    if failing {
                        tracing::info!("stream and consumer info readable again");
                    }
                    failing = false;
                }
                Err(error) => {
                    metrics.queue_poll_errors.inc();
                    if !failing {
                        tracing::warn!(%error, "cannot read stream and consumer info; queue gauges are stale");
                    }
                    failing = true;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxbridge_shared::status::{ConsumerState, StreamState};

    #[test]
    fn gauges_follow_the_snapshot_and_name_rules() {
        let mut registry = Registry::default();
        let m = SystemMetrics::register(&mut registry);
        m.set_queues(&QueueSnapshot {
            streams: vec![StreamState {
                stream: "DLQ",
                name: "T1_DLQ".into(),
                messages: 3,
                bytes: 300,
                consumers: 0,
            }],
            consumers: vec![ConsumerState {
                stream: "MT",
                consumer: "mt-workers".into(),
                pending: 7,
                ack_pending: 2,
                redelivered: 1,
                waiting: 0,
            }],
        });
        let text = voxbridge_shared::metrics::render(&registry);
        for line in [
            "voxbridge_edge_workers_alive{component=\"stt\"} 0",
            "voxbridge_edge_workers_alive{component=\"mt\"} 0",
            "voxbridge_edge_stream_messages{stream=\"DLQ\"} 3",
            "voxbridge_edge_stream_bytes{stream=\"DLQ\"} 300",
            "voxbridge_edge_consumer_pending_messages{stream=\"MT\",consumer=\"mt-workers\"} 7",
            "voxbridge_edge_consumer_ack_pending_messages{stream=\"MT\",consumer=\"mt-workers\"} 2",
            "voxbridge_edge_consumer_redelivered_messages{stream=\"MT\",consumer=\"mt-workers\"} 1",
            "voxbridge_edge_queue_poll_errors_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(
            voxbridge_shared::metrics::naming_violations(&text),
            Vec::<String>::new()
        );
    }
}
