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
}
