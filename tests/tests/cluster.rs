//! A three-server NATS cluster from `nats/cluster/` on loopback: the topology is created with
//! three replicas, translations flow through it, and they keep flowing after one server is
//! killed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use voxbridge_shared::subjects::{Namespace, streams};
use voxbridge_tests::{
    TestEnv, nats_server_bin, start_edge, start_mt_worker, wait_for, workspace_root,
};

const CLIENT_PORTS: [u16; 3] = [14231, 14232, 14233];

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(i: usize, store: &Path) -> Server {
    let config = workspace_root().join(format!("nats/cluster/voxbridge-{i}.conf"));
    let child = Command::new(nats_server_bin())
        .arg("-c")
        .arg(&config)
        .arg("-sd")
        .arg(store.join(format!("n{i}")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", config.display()));
    Server(child)
}

async fn translate(url: &str) -> Option<Value> {
    let response = reqwest::Client::new()
        .post(url)
        .json(&json!({"q": ["Hello world.", "Where is the station?"], "source": "en", "target": "vi"}))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

#[tokio::test]
async fn a_three_server_cluster_keeps_translating_when_one_server_dies() {
    // Redis (and a NATS server this test does not use) from the usual harness.
    let base = TestEnv::new();
    let store = tempfile::tempdir().expect("store");
    let mut servers: Vec<Server> = (1..=3).map(|i| start_server(i, store.path())).collect();
    let urls: Vec<String> = CLIENT_PORTS
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let env = TestEnv {
        nats_url: urls.join(","),
        redis_url: base.redis_url.clone(),
        namespace: Namespace::unique_for_tests(),
        nats: None,
        redis: None,
        stream_replicas: 3,
    };
    let admin = async_nats::ConnectOptions::with_user_and_password(
        "admin".into(),
        "admin-dev-password".into(),
    );
    // The cluster is ready once JetStream has a meta leader and answers.
    let client = wait_for("cluster JetStream", Duration::from_secs(60), || {
        let admin = admin.clone();
        let urls = urls.clone();
        async move {
            let client = admin.connect(urls.clone()).await.ok()?;
            async_nats::jetstream::new(client.clone())
                .query_account()
                .await
                .ok()
                .map(|_| client)
        }
    })
    .await;

    let shutdown = CancellationToken::new();
    let auth = ["--nats-user", "mt", "--nats-password", "mt-dev-password"];
    let _mt = start_mt_worker(&env, &auth, shutdown.clone()).await;
    let auth = [
        "--nats-user",
        "edge",
        "--nats-password",
        "edge-dev-password",
    ];
    let edge = start_edge(&env, &auth, shutdown.clone()).await;

    // Every stream has three replicas.
    let js = async_nats::jetstream::new(client);
    for stream in streams::ALL {
        let mut s = js
            .get_stream(env.namespace.stream(stream))
            .await
            .expect("stream");
        let info = s.info().await.expect("info");
        assert_eq!(info.config.num_replicas, 3, "{stream}");
        let cluster = info.cluster.clone().expect("cluster info");
        assert_eq!(cluster.replicas.len(), 2, "{stream}: {cluster:?}");
    }

    let url = format!("http://{}/v1/translate", edge.addr);
    let before = translate(&url)
        .await
        .expect("a translation through the cluster");
    assert_eq!(
        before["results"][0]["translations"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Kill the server that leads the MT stream (the worst case), then translate again.
    let mut mt = js
        .get_stream(env.namespace.stream(streams::MT))
        .await
        .expect("MT stream");
    let leader = mt
        .info()
        .await
        .expect("info")
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("an MT stream leader");
    let victim = leader
        .trim_start_matches("voxbridge-")
        .parse::<usize>()
        .expect("server number");
    drop(servers.remove(victim - 1));
    println!("killed {leader}");
    let after = wait_for(
        "a translation after a server died",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            async move { translate(&url).await }
        },
    )
    .await;
    assert_eq!(
        after["results"][0]["translations"], before["results"][0]["translations"],
        "the same model answers the same way"
    );
    let leader_now = mt
        .info()
        .await
        .expect("info after failover")
        .cluster
        .clone()
        .and_then(|c| c.leader);
    assert!(
        leader_now.is_some_and(|l| l != leader),
        "a new leader was elected"
    );
    shutdown.cancel();
}
