//! The deployment-wide gauges the edge exports: workers alive (from heartbeats) and the state of
//! the streams and durable consumers (polled from JetStream), against a real NATS and a real MT
//! worker.

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::status::stale_after;
use voxbridge_shared::subjects::streams;
use voxbridge_tests::{TestEnv, metric_value, scrape, start_edge, start_mt_worker, wait_for};

/// Waits until the edge's `/metrics` has `series` at `value`.
async fn wait_for_value(addr: std::net::SocketAddr, series: &str, value: f64, timeout: Duration) {
    let what = format!("{series} = {value}");
    wait_for(&what, timeout, || async move {
        let metrics = scrape(addr).await;
        (metric_value(&metrics, series) == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_edge_counts_workers_from_heartbeats_and_exports_queue_state() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(&env, &["--queue-poll-s", "1"], shutdown.clone()).await;
    let stt_alive = "voxbridge_edge_workers_alive{component=\"stt\"}";
    let mt_alive = "voxbridge_edge_workers_alive{component=\"mt\"}";

    // No worker yet: both components are there, at 0 (an alert needs the series).
    let metrics = scrape(edge.addr).await;
    assert_eq!(metric_value(&metrics, stt_alive), Some(0.0), "{metrics}");
    assert_eq!(metric_value(&metrics, mt_alive), Some(0.0), "{metrics}");

    // A worker's first heartbeat goes out at start-up.
    let worker_shutdown = CancellationToken::new();
    let mt = start_mt_worker(&env, &[], worker_shutdown.clone()).await;
    wait_for_value(edge.addr, mt_alive, 1.0, Duration::from_secs(10)).await;

    // Queue state: an MT request nobody pulls yet would be taken by the worker, so use the
    // audio-job queue (no STT worker here) and the DLQ.
    let js = async_nats::jetstream::new(env.client().await);
    for subject in [
        env.namespace
            .job(voxbridge_shared::messages::JobKind::Audio),
        env.namespace
            .job(voxbridge_shared::messages::JobKind::Audio),
        env.namespace.dlq(streams::MT),
    ] {
        js.publish(subject, Bytes::from_static(b"x"))
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let pending =
        "voxbridge_edge_consumer_pending_messages{stream=\"JOBS\",consumer=\"jobs-audio\"}";
    wait_for_value(edge.addr, pending, 2.0, Duration::from_secs(10)).await;
    wait_for_value(
        edge.addr,
        "voxbridge_edge_stream_messages{stream=\"DLQ\"}",
        1.0,
        Duration::from_secs(10),
    )
    .await;
    let metrics = scrape(edge.addr).await;
    for series in [
        "voxbridge_edge_stream_messages{stream=\"JOBS\"} 2",
        "voxbridge_edge_consumer_pending_messages{stream=\"MT\",consumer=\"mt-workers\"} 0",
        "voxbridge_edge_consumer_ack_pending_messages{stream=\"JOBS\",consumer=\"jobs-audio\"} 0",
        "voxbridge_edge_consumer_redelivered_messages{stream=\"SESSIONS\",consumer=\"stt-sessions\"} 0",
        "voxbridge_edge_queue_poll_errors_total 0",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert!(
        metric_value(&metrics, "voxbridge_edge_stream_bytes{stream=\"DLQ\"}").unwrap_or(0.0) > 0.0
    );
    assert_eq!(metric_value(&metrics, stt_alive), Some(0.0));
    assert_eq!(
        voxbridge_shared::metrics::naming_violations(&metrics),
        Vec::<String>::new()
    );

    // A stopped worker stops beating and drops out after three heartbeat intervals.
    worker_shutdown.cancel();
    let _ = mt.task.await;
    wait_for_value(
        edge.addr,
        mt_alive,
        0.0,
        stale_after() + Duration::from_secs(5),
    )
    .await;
    shutdown.cancel();
}
