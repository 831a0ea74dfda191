//! `voxctl status`: one screen with the deployment's state — streams (messages, bytes),
//! durable consumers (lag, ack pending, redelivered), workers alive per component, batch jobs in
//! flight and the DLQ — read straight from NATS, so it works without the edge (also when the
//! edge is the thing that is down).
//!
//! Workers are counted from their heartbeats, listened to for [`DEFAULT_LISTEN`]: a worker beats
//! every [`HEARTBEAT_INTERVAL`], so a shorter window would miss some; reading the count the edge
//! exports instead would need the edge's address and a running edge. Streams and consumers come
//! from JetStream's info ([`voxbridge_shared::status::read_queues`], the same reader behind the
//! edge's `voxbridge_edge_stream_*` and `voxbridge_edge_consumer_*` gauges), jobs from the
//! `vb-jobs` KV bucket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use voxbridge_shared::codec;
use voxbridge_shared::config::NatsConfig;
use voxbridge_shared::jobs::{JobStore, JobView};
use voxbridge_shared::messages::{Heartbeat, JobState};
use voxbridge_shared::service::HEARTBEAT_INTERVAL;
use voxbridge_shared::status::{
    ConsumerState, StreamState, WorkerTracker, WorkerView, dlq_by_source, read_queues,
};
use voxbridge_shared::topology::{Topology, TopologySettings};

/// How long heartbeats are listened to: one interval and a margin, so every live worker is heard.
pub const DEFAULT_LISTEN: Duration = Duration::from_secs(HEARTBEAT_INTERVAL.as_secs() + 1);

/// `voxctl status`
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to listen for worker heartbeats (workers beat every 5 s).
    #[arg(long, default_value_t = DEFAULT_LISTEN.as_secs())]
    pub listen_s: u64,
}

/// Everything `voxctl status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub namespace: String,
    pub server_version: String,
    pub streams: Vec<StreamState>,
    pub consumers: Vec<ConsumerState>,
    pub workers: WorkersReport,
    pub jobs: JobsReport,
    pub dlq: DlqReport,
}

/// Workers heard during the listening window.
#[derive(Debug, Clone, Serialize)]
pub struct WorkersReport {
    pub listened_s: u64,
    /// Live instances per component (`stt`, `mt`; 0 when none).
    pub alive: BTreeMap<&'static str, usize>,
    pub instances: Vec<WorkerView>,
}

/// Batch jobs in the `vb-jobs` bucket.
#[derive(Debug, Clone, Serialize)]
pub struct JobsReport {
    /// Queued plus running.
    pub in_flight: usize,
    pub queued: usize,
    pub running: usize,
    /// Succeeded or failed, still kept.
    pub finished: usize,
    /// The queued and running jobs, newest first.
    pub active: Vec<JobView>,
}

/// The dead-letter stream.
#[derive(Debug, Clone, Serialize)]
pub struct DlqReport {
    pub messages: u64,
    /// By source stream (`mt`, `jobs`, `sessions`, …).
    pub by_source: BTreeMap<String, u64>,
}

/// Reads the status, listening to heartbeats for `listen` (the other reads happen meanwhile).
pub async fn gather(nats: &NatsConfig, listen: Duration) -> anyhow::Result<StatusReport> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let client = voxbridge_shared::nats::connect(nats, "voxctl-status", None, &shutdown).await?;
    let namespace = nats.namespace()?;
    let js = async_nats::jetstream::new(client.clone());
    // Consumer names do not depend on the settings; only the names are used here.
    let topology = Topology::new(&namespace, &TopologySettings::default());
    let started = tokio::time::Instant::now();
    let mut beats = client.subscribe(namespace.heartbeat_wildcard()).await?;

    let missing = "is the topology created? (any Voxbridge service creates it at start-up; \
                   `voxctl topology ensure` does too)";
    let (queues, dlq, jobs) = tokio::join!(
        read_queues(&js, &topology),
        dlq_by_source(&js, &topology),
        async {
            let store = JobStore::open(client.clone(), js.clone(), namespace.clone()).await?;
            store.list().await
        }
    );
    let queues = queues.context(missing)?;
    let by_source = dlq.context(missing)?;
    let jobs = jobs.context("reading the job bucket")?;

    let mut tracker = WorkerTracker::default();
    let deadline = started + listen;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            message = beats.next() => {
                let Some(message) = message else { break };
                match codec::decode::<Heartbeat>(&message.payload) {
                    Ok(beat) => tracker.observe(beat, Instant::now()),
                    Err(error) => tracing::debug!(%error, "undecodable heartbeat ignored"),
                }
            }
        }
    }
    let now = Instant::now();

    let count = |state: JobState| jobs.iter().filter(|j| j.state == state).count();
    let (queued, running) = (count(JobState::Queued), count(JobState::Running));
    let active: Vec<JobView> = jobs
        .iter()
        .filter(|j| matches!(j.state, JobState::Queued | JobState::Running))
        .map(|j| JobView::from_status(j, false))
        .collect();
    Ok(StatusReport {
        namespace: namespace.prefix().to_string(),
        server_version: client.server_info().version,
        dlq: DlqReport {
            messages: queues.dlq_messages(),
            by_source,
        },
        streams: queues.streams,
        consumers: queues.consumers,
        workers: WorkersReport {
            listened_s: listen.as_secs(),
            alive: tracker.alive(now),
            instances: tracker.workers(now),
        },
        jobs: JobsReport {
            in_flight: queued + running,
            queued,
            running,
            finished: jobs.len() - queued - running,
            active,
        },
    })
}

/// `voxctl status [--json]`
pub async fn run(nats: &NatsConfig, args: &StatusArgs) -> anyhow::Result<i32> {
    let report = gather(nats, Duration::from_secs(args.listen_s)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

/// Most in-flight jobs listed by name on the screen (all are counted).
const JOBS_SHOWN: usize = 10;

/// The one-screen text form.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let ns = if r.namespace.is_empty() {
        String::new()
    } else {
        format!(", namespace {}", r.namespace)
    };
    let _ = writeln!(
        out,
        "Voxbridge status (nats-server {}{ns})",
        r.server_version
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>11} {:>9}",
        "STREAM", "MESSAGES", "BYTES", "CONSUMERS"
    );
    for s in &r.streams {
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>11} {:>9}",
            s.stream,
            s.messages,
            human_bytes(s.bytes),
            s.consumers
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<26} {:>11} {:>11} {:>11} {:>7}",
        "CONSUMER", "LAG", "ACK PENDING", "REDELIVERED", "WAITING"
    );
    for c in &r.consumers {
        let _ = writeln!(
            out,
            "{:<26} {:>11} {:>11} {:>11} {:>7}",
            format!("{}/{}", c.stream, c.consumer),
            c.pending,
            c.ack_pending,
            c.redelivered,
            c.waiting
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "WORKERS (heartbeats heard in {} s)",
        r.workers.listened_s
    );
    for (component, alive) in &r.workers.alive {
        let warn = if *alive == 0 {
            match *component {
                "stt" => "   <- none: live sessions and audio jobs wait",
                "mt" => "   <- none: translations and subtitle jobs wait",
                _ => "   <- none",
            }
        } else {
            ""
        };
        let _ = writeln!(out, "  {component:<4} {alive} alive{warn}");
        for w in r
            .workers
            .instances
            .iter()
            .filter(|w| w.component == *component)
        {
            let _ = writeln!(
                out,
                "       {}  v{}  up {}  in flight {}",
                w.instance,
                w.version,
                human_duration(w.uptime_s),
                w.in_flight
            );
        }
    }
    let _ = writeln!(out);
    let j = &r.jobs;
    let _ = writeln!(
        out,
        "JOBS  {} in flight ({} queued, {} running), {} finished kept",
        j.in_flight, j.queued, j.running, j.finished
    );
    for job in j.active.iter().take(JOBS_SHOWN) {
        let kind = match job.kind {
            Some(voxbridge_shared::messages::JobKind::Audio) => "audio",
            Some(voxbridge_shared::messages::JobKind::Subtitles) => "subtitles",
            None => "-",
        };
        let state = if job.state == JobState::Running {
            "running"
        } else {
            "queued"
        };
        let _ = writeln!(
            out,
            "       {}  {:<7} {:>3.0}%  {:<9}  {}",
            job.id,
            state,
            job.progress * 100.0,
            kind,
            job.file_name.as_deref().unwrap_or("-")
        );
    }
    if j.active.len() > JOBS_SHOWN {
        let _ = writeln!(
            out,
            "       … {} more (voxctl jobs)",
            j.active.len() - JOBS_SHOWN
        );
    }
    let _ = writeln!(out);
    let sources: Vec<String> = r
        .dlq
        .by_source
        .iter()
        .map(|(source, n)| format!("{source} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "DLQ   {} message(s){}",
        r.dlq.messages,
        if sources.is_empty() {
            String::new()
        } else {
            format!(" ({})", sources.join(", "))
        }
    );
    out
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(600), "10 min");
        assert_eq!(human_duration(3 * 3600), "3 h");
    }
}
