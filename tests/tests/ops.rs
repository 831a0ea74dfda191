//! `voxctl doctor` and the NATS server configuration in `nats/`.

use std::process::Command;

use async_nats::ConnectOptions;
use bytes::Bytes;
use voxbridge_shared::subjects::Namespace;
use voxbridge_shared::topology::{Topology, TopologySettings, ensure_topology};
use voxbridge_tests::{NatsServer, TestEnv, bin_path, model_mirror, workspace_root};

#[test]
fn doctor_passes_on_a_working_installation() {
    let env = TestEnv::new();
    let out = Command::new(bin_path("voxctl"))
        .args([
            "--nats-url",
            &env.nats_url,
            "doctor",
            "--redis-url",
            &env.redis_url,
            "--models",
        ])
        .arg(model_mirror())
        .env("VOXBRIDGE_LOG", "error")
        .output()
        .expect("run voxctl doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    // The harness' NATS is a current release (scripts/setup) unless an external URL was given.
    if env.nats.is_some() {
        assert!(out.status.success(), "doctor failed:\n{text}");
        assert!(text.contains("all checks passed"), "{text}");
    }
    for check in ["nats", "jetstream", "redis", "whisper", "mt-model"] {
        assert!(
            text.contains(check),
            "doctor did not check {check}:\n{text}"
        );
    }
    assert!(text.contains("ggml-tiny.en.bin"), "{text}");
    assert!(text.contains("nllb-tiny/int8"), "{text}");
}

#[test]
fn doctor_names_each_problem_with_a_fix() {
    let dead_port = voxbridge_tests::free_port();
    let out = Command::new(bin_path("voxctl"))
        .args([
            "--nats-url",
            &format!("nats://127.0.0.1:{dead_port}"),
            "doctor",
        ])
        .args([
            "--redis-url",
            &format!("redis://127.0.0.1:{dead_port}"),
            "--models",
            "/nonexistent/models",
        ])
        .env("VOXBRIDGE_LOG", "error")
        .output()
        .expect("run voxctl doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("[FAIL]").count(), 3, "{text}");
    assert_eq!(text.matches("fix:").count(), 3, "{text}");
    assert!(text.contains("3 problem(s) found"), "{text}");
}

#[test]
fn topology_export_reproduces_the_committed_definitions() {
    let dir = tempfile::tempdir().expect("tmp");
    let status = Command::new(bin_path("voxctl"))
        .args(["topology", "export", "--dir"])
        .arg(dir.path())
        .env("VOXBRIDGE_LOG", "error")
        .env_remove("VOXBRIDGE_NAMESPACE")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("export");
    assert!(status.success());
    let committed = workspace_root().join("nats/jetstream");
    let mut n = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read") {
        let entry = entry.expect("entry");
        let exported: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.path()).expect("read")).expect("json");
        let on_disk: serde_json::Value = serde_json::from_slice(
            &std::fs::read(committed.join(entry.file_name())).expect("committed file exists"),
        )
        .expect("json");
        assert_eq!(exported, on_disk, "{:?}", entry.file_name());
        n += 1;
    }
    assert_eq!(n, std::fs::read_dir(&committed).expect("dir").count());
}

async fn connect_as(server: &NatsServer, user: &str) -> async_nats::Client {
    ConnectOptions::new()
        .user_and_password(user.into(), format!("{user}-dev-password"))
        .connect(&server.url)
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
}

#[tokio::test]
async fn each_service_user_can_do_its_job_and_no_more() {
    let server = NatsServer::start_with_config(&workspace_root().join("nats/nats-server.conf"));
    // Anonymous clients are refused.
    assert!(
        async_nats::connect(&server.url).await.is_err(),
        "anonymous connect must fail"
    );
    let ns = Namespace::default();
    let topology = Topology::new(
        &ns,
        &TopologySettings {
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..TopologySettings::default()
        },
    );
    // Every service can ensure the topology with its own user.
    for user in ["edge", "stt", "mt", "admin"] {
        let js = async_nats::jetstream::new(connect_as(&server, user).await);
        ensure_topology(&js, &topology)
            .await
            .unwrap_or_else(|e| panic!("{user} cannot ensure the topology: {e}"));
    }
    let session = voxbridge_shared::SessionId::new();
    let allowed = [
        ("edge", ns.audio(&session)),
        ("edge", ns.session_open()),
        ("stt", ns.transcript(&session)),
        ("stt", ns.mt_request("vie_Latn")),
        ("mt", ns.translation(&session)),
    ];
    for (user, subject) in allowed {
        let js = async_nats::jetstream::new(connect_as(&server, user).await);
        js.publish(subject.clone(), Bytes::from_static(b"x"))
            .await
            .expect("publish")
            .await
            .unwrap_or_else(|e| panic!("{user} must be allowed to publish {subject}: {e}"));
    }
    let denied = [
        ("edge", ns.translation(&session)),
        ("edge", ns.transcript(&session)),
        ("stt", ns.translation(&session)),
        ("mt", ns.audio(&session)),
        ("mt", ns.session_open()),
    ];
    for (user, subject) in denied {
        let js = async_nats::jetstream::new(connect_as(&server, user).await);
        let result = async {
            js.publish(subject.clone(), Bytes::from_static(b"x"))
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), result).await;
        assert!(
            !matches!(outcome, Ok(Ok(_))),
            "{user} must not be able to publish {subject}"
        );
    }
    // The edge asks an STT worker whether it is there (live sessions' recogniser_lost): the
    // worker may answer, and the edge may ask. Without these permissions every session would
    // be reported lost.
    for ns in [
        Namespace::default(),
        Namespace::new("t1").expect("namespace"),
    ] {
        let subject = ns.presence("stt-01abc");
        let stt = connect_as(&server, "stt").await;
        let mut requests = stt.subscribe(subject.clone()).await.expect("subscribe");
        stt.flush().await.expect("flush");
        let answer = tokio::spawn(async move {
            use futures::StreamExt;
            let request = requests.next().await.expect("a presence request");
            stt.publish(request.reply.expect("reply subject"), Bytes::new())
                .await
                .expect("reply");
            stt.flush().await.expect("flush");
        });
        let edge = connect_as(&server, "edge").await;
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            edge.request(subject.clone(), Bytes::new()),
        )
        .await
        .unwrap_or_else(|_| panic!("no presence answer on {subject} within 5 s"))
        .unwrap_or_else(|e| panic!("the edge must be able to ask {subject}: {e}"));
        answer.await.expect("answered");
    }
}

/// `voxctl status` against a real NATS with the topology, one MT worker, a queued audio job (no
/// STT worker to take it) and a dead letter.
#[tokio::test]
async fn status_shows_streams_consumers_workers_jobs_and_the_dlq() {
    use voxbridge_shared::JobId;
    use voxbridge_shared::jobs::{JobStore, status_for};
    use voxbridge_shared::messages::{JobKind, JobSpec, JobState, now_unix_ms};
    use voxbridge_shared::subjects::streams;

    let env = TestEnv::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _mt = voxbridge_tests::start_mt_worker(&env, &[], shutdown.clone()).await;
    let client = env.client().await;
    let js = async_nats::jetstream::new(client.clone());
    let store = JobStore::open(client.clone(), js.clone(), env.namespace.clone())
        .await
        .expect("job store (the worker created the topology)");
    let spec = JobSpec {
        v: 1,
        job_id: JobId::new(),
        kind: JobKind::Audio,
        input_object: "input".into(),
        file_name: "talk.wav".into(),
        source_lang: None,
        target_langs: vec![],
        output_format: None,
        content_hash: "status-test".into(),
        submitted_at_ms: now_unix_ms(),
    };
    store
        .put_status(&status_for(&spec, JobState::Queued, now_unix_ms()))
        .await
        .expect("job status");
    store.enqueue(&spec, "").await.expect("job queued");
    js.publish(
        env.namespace.dlq(streams::MT),
        Bytes::from_static(b"poison"),
    )
    .await
    .expect("publish")
    .await
    .expect("dead letter stored");

    let listen = voxctl::status::DEFAULT_LISTEN;
    let report = voxctl::status::gather(&env.nats_config(), listen)
        .await
        .expect("status");
    let stream = |base: &str| {
        report
            .streams
            .iter()
            .find(|s| s.stream == base)
            .unwrap_or_else(|| panic!("no stream {base} in {report:#?}"))
    };
    assert_eq!(report.streams.len(), streams::ALL.len());
    assert_eq!(stream(streams::DLQ).messages, 1);
    assert_eq!(stream(streams::JOBS).messages, 1);
    assert!(stream(streams::DLQ).bytes > 0);
    let consumer = |name: &str| {
        report
            .consumers
            .iter()
            .find(|c| c.consumer == name)
            .unwrap_or_else(|| panic!("no consumer {name} in {report:#?}"))
    };
    assert_eq!(report.consumers.len(), 4);
    assert_eq!(consumer("jobs-audio").pending, 1, "the audio job waits");
    assert_eq!(consumer("jobs-audio").ack_pending, 0);
    assert_eq!(consumer("mt-workers").pending, 0);
    assert_eq!(report.workers.alive.get("mt"), Some(&1), "{report:#?}");
    assert_eq!(report.workers.alive.get("stt"), Some(&0));
    assert!(report.workers.instances[0].instance.starts_with("mt-"));
    assert_eq!(
        (
            report.jobs.in_flight,
            report.jobs.queued,
            report.jobs.running
        ),
        (1, 1, 0)
    );
    assert_eq!(report.jobs.active[0].file_name.as_deref(), Some("talk.wav"));
    assert_eq!(report.dlq.messages, 1);
    assert_eq!(report.dlq.by_source.get("mt"), Some(&1));

    let screen = voxctl::status::render(&report);
    println!("{screen}");
    for line in [
        "STREAM",
        "JOBS/jobs-audio",
        "mt   1 alive",
        "stt  0 alive   <- none",
        "JOBS  1 in flight (1 queued, 0 running), 0 finished kept",
        "talk.wav",
        "DLQ   1 message(s) (mt 1)",
    ] {
        assert!(
            screen.contains(line),
            "{line:?} not on the screen:\n{screen}"
        );
    }

    // The binary's --json is the same report. (tokio's Command: a blocking wait would stall this
    // runtime, and with it the in-process worker's heartbeats.)
    let out = tokio::process::Command::new(bin_path("voxctl"))
        .args(["--nats-url", &env.nats_url, "--namespace"])
        .arg(env.namespace.prefix())
        .args(["status", "--json", "--listen-s"])
        .arg(listen.as_secs().to_string())
        .env("VOXBRIDGE_LOG", "error")
        .output()
        .await
        .expect("run voxctl status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(json["workers"]["alive"]["mt"], 1, "{json:#}");
    assert_eq!(json["workers"]["alive"]["stt"], 0);
    assert_eq!(json["jobs"]["in_flight"], 1);
    assert_eq!(json["dlq"]["messages"], 1);
    assert_eq!(json["dlq"]["by_source"]["mt"], 1);
    let audio = json["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .find(|c| c["consumer"] == "jobs-audio")
        .expect("jobs-audio")
        .clone();
    assert_eq!(audio["pending"], 1);
    assert_eq!(audio["stream"], "JOBS");
    shutdown.cancel();
}
