//! The four binaries as services: they start, connect, ensure the topology, serve `/metrics` and
//! `/healthz` (ready only while NATS is connected), dead-letter malformed input and keep running,
//! and shut down cleanly on SIGTERM.

use std::process::Command;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::RequestId;
use voxbridge_shared::codec::{decode, encode};
use voxbridge_shared::messages::*;
use voxbridge_shared::metrics::naming_violations;
use voxbridge_shared::subjects::streams;
use voxbridge_tests::{TestEnv, http_get, metric_value, wait_for};

async fn dlq_records(js: &jetstream::Context, env: &TestEnv, want: usize) -> Vec<DlqRecord> {
    let stream = js
        .get_stream(env.namespace.stream(streams::DLQ))
        .await
        .expect("dlq stream");
    wait_for("DLQ records", Duration::from_secs(30), || {
        let mut stream = stream.clone();
        async move {
            let n = stream.info().await.ok()?.state.messages as usize;
            (n >= want).then_some(())
        }
    })
    .await;
    let mut records = Vec::new();
    for seq in 1..=want as u64 {
        let raw = stream.get_raw_message(seq).await.expect("dlq message");
        records.push(decode::<DlqRecord>(&raw.payload).expect("DLQ record decodes"));
    }
    records
}

#[tokio::test]
async fn malformed_payloads_are_dead_lettered_counted_and_the_workers_keep_running() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let mt = voxbridge_tests::start_mt_worker(&env, &[], shutdown.clone()).await;
    let stt = voxbridge_tests::start_stt_worker(&env, &[], shutdown.clone()).await;
    let js = jetstream::new(env.client().await);
    let ns = &env.namespace;

    let garbage: [(&str, String, &[u8]); 3] = [
        ("MT", ns.mt_request("vie_Latn"), b"\xc1 not msgpack"),
        (
            "SESSIONS",
            ns.session_open(),
            b"{\"json\":\"is not the wire format\"}",
        ),
        ("JOBS", ns.job(JobKind::Audio), b"\x93\x01\x02\x03"),
    ];
    for (_, subject, payload) in &garbage {
        js.publish(subject.clone(), Bytes::copy_from_slice(payload))
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let records = dlq_records(&js, &env, 3).await;
    for (stream, subject, payload) in &garbage {
        let record = records
            .iter()
            .find(|r| &r.original_subject == subject)
            .unwrap_or_else(|| panic!("no DLQ record for {subject}: {records:?}"));
        assert_eq!(record.reason_code, "malformed_payload", "{record:?}");
        assert!(!record.reason.is_empty());
        assert_eq!(
            record.payload.as_ref(),
            *payload,
            "payload kept byte for byte"
        );
        assert_eq!(record.stream.as_deref(), Some(ns.stream(stream).as_str()));
        assert_eq!(
            record.delivery_count, 1,
            "terminated on first delivery, not looped"
        );
    }

    // Counted in the metrics, with conforming names.
    let (_, mt_metrics) = http_get(&format!("http://{}/metrics", mt.metrics_addr))
        .await
        .expect("scrape mt");
    assert_eq!(
        metric_value(
            &mt_metrics,
            "voxbridge_mt_malformed_messages_total{stream=\"MT\"}"
        ),
        Some(1.0),
        "{mt_metrics}"
    );
    assert_eq!(
        metric_value(
            &mt_metrics,
            "voxbridge_mt_dlq_messages_total{reason=\"malformed_payload\"}"
        ),
        Some(1.0)
    );
    assert_eq!(naming_violations(&mt_metrics), Vec::<String>::new());
    let (_, stt_metrics) = http_get(&format!("http://{}/metrics", stt.metrics_addr))
        .await
        .expect("scrape stt");
    assert_eq!(
        metric_value(
            &stt_metrics,
            "voxbridge_stt_malformed_messages_total{stream=\"SESSIONS\"}"
        ),
        Some(1.0),
        "{stt_metrics}"
    );
    assert_eq!(
        metric_value(
            &stt_metrics,
            "voxbridge_stt_malformed_messages_total{stream=\"JOBS\"}"
        ),
        Some(1.0)
    );
    assert_eq!(naming_violations(&stt_metrics), Vec::<String>::new());

    // The queues are empty again: nothing loops.
    for base in [streams::MT, streams::SESSIONS] {
        let mut stream = js.get_stream(ns.stream(base)).await.expect("stream");
        wait_for("work queue drained", Duration::from_secs(10), || {
            let mut stream = stream.clone();
            async move { (stream.info().await.ok()?.state.messages == 0).then_some(()) }
        })
        .await;
        let _ = stream.info().await;
    }

    // Still alive: healthy, and the MT worker answers a valid request after the garbage.
    for addr in [mt.metrics_addr, stt.metrics_addr] {
        let (status, _) = http_get(&format!("http://{addr}/healthz"))
            .await
            .expect("healthz");
        assert_eq!(status, 200);
    }
    let client = env.client().await;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribe");
    let request = MtRequest {
        v: 1,
        request_id: RequestId::new(),
        texts: vec!["Hello world.".into()],
        source_lang: "eng_Latn".into(),
        target_lang: "vie_Latn".into(),
        reply_subject: inbox,
        session_id: None,
        segment_id: None,
        deadline_ms: None,
        enqueued_at_ms: now_unix_ms(),
    };
    js.publish(
        ns.mt_request("vie_Latn"),
        encode(&request).expect("enc").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let reply = tokio::time::timeout(Duration::from_secs(60), replies.next())
        .await
        .expect("a reply within 60 s")
        .expect("reply");
    let result: MtResult = decode(&reply.payload).expect("result decodes");
    assert_eq!(result.request_id, request.request_id);
    assert_eq!(result.error, None);
    assert_eq!(result.translations.len(), 1);

    shutdown.cancel();
    mt.task.await.expect("join").expect("mt drained cleanly");
    stt.task.await.expect("join").expect("stt drained cleanly");
}

#[tokio::test]
async fn healthz_is_ready_only_while_nats_is_connected() {
    let mut env = TestEnv::with_private_nats();
    let shutdown = CancellationToken::new();
    let edge = voxbridge_tests::start_edge(&env, &[], shutdown.clone()).await;
    let healthz = format!("http://{}/healthz", edge.addr);
    let status = |want: u16| {
        let url = healthz.clone();
        move || {
            let url = url.clone();
            async move {
                http_get(&url)
                    .await
                    .and_then(|(s, body)| (s == want).then_some(body))
            }
        }
    };
    wait_for("ready", Duration::from_secs(10), status(200)).await;

    let server = env.nats.as_mut().expect("private server");
    server.stop();
    let body = wait_for(
        "not ready while NATS is down",
        Duration::from_secs(15),
        status(503),
    )
    .await;
    assert!(body.contains("NATS"), "{body}");

    server.restart();
    wait_for(
        "ready again after reconnect",
        Duration::from_secs(30),
        status(200),
    )
    .await;
    let (_, metrics) = http_get(&format!("http://{}/metrics", edge.addr))
        .await
        .expect("metrics");
    assert!(
        metric_value(
            &metrics,
            "voxbridge_edge_nats_events_total{event=\"disconnected\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    assert_eq!(naming_violations(&metrics), Vec::<String>::new());

    shutdown.cancel();
    edge.task.await.expect("join").expect("edge stops cleanly");
}

/// Starts a binary, waits until it is healthy, sends SIGTERM and expects a clean exit.
async fn sigterm_exits_cleanly(env: &TestEnv, bin: &str, args: &[&str], port: u16) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut child = voxbridge_tests::spawn_healthy(env, bin, &args, port).await;
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(naming_violations(&metrics), Vec::<String>::new(), "{bin}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = wait_for(
        &format!("{bin} exits after SIGTERM"),
        Duration::from_secs(30),
        || {
            let result = child.try_wait().expect("try_wait");
            async move { result }
        },
    )
    .await;
    assert!(exit.success(), "{bin} exited with {exit} after SIGTERM");
}

#[tokio::test]
async fn every_binary_serves_health_and_metrics_and_exits_cleanly_on_sigterm() {
    let env = TestEnv::new();
    let edge_port = voxbridge_tests::free_port();
    let listen = format!("127.0.0.1:{edge_port}");
    sigterm_exits_cleanly(&env, "voxbridge-edge", &["--listen", &listen], edge_port).await;

    let mt_port = voxbridge_tests::free_port();
    let addr = format!("127.0.0.1:{mt_port}");
    let model = voxbridge_tests::nllb_tiny();
    sigterm_exits_cleanly(
        &env,
        "voxbridge-mt",
        &[
            "--metrics-addr",
            &addr,
            "--model",
            model.to_str().expect("utf-8"),
        ],
        mt_port,
    )
    .await;

    let stt_port = voxbridge_tests::free_port();
    let addr = format!("127.0.0.1:{stt_port}");
    let model = voxbridge_tests::whisper_tiny_en();
    sigterm_exits_cleanly(
        &env,
        "voxbridge-stt",
        &[
            "--metrics-addr",
            &addr,
            "--model",
            model.to_str().expect("utf-8"),
        ],
        stt_port,
    )
    .await;
}
