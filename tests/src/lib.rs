//! The real-service test harness. Tests talk to a real NATS server with JetStream and a real
//! Redis: the URLs from `VOXBRIDGE_TEST_NATS_URL` / `VOXBRIDGE_TEST_REDIS_URL` when set, otherwise
//! private `nats-server` / `redis-server` processes on free loopback ports, stopped when their
//! guard is dropped. Every test gets its own [`Namespace`], so tests can share a server and run
//! in parallel.
//!
//! The nats-server binary is `VOXBRIDGE_NATS_SERVER_BIN`, else `.tools/bin/nats-server` (a
//! current release installed by `scripts/setup`), else `nats-server` on `PATH`.

pub mod live;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voxbridge_shared::config::NatsConfig;
use voxbridge_shared::subjects::Namespace;
use voxbridge_shared::topology::TopologySettings;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The model mirror (`VOXBRIDGE_MODEL_MIRROR`, default `../shared/models` beside the checkout).
pub fn model_mirror() -> PathBuf {
    std::env::var_os("VOXBRIDGE_MODEL_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/models"))
}

/// The recordings with reference texts (`VOXBRIDGE_AUDIO_DIR`, default `../shared/audio`).
pub fn audio_dir() -> PathBuf {
    std::env::var_os("VOXBRIDGE_AUDIO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/audio"))
}

/// The random-weight NLLB test model (int8).
pub fn nllb_tiny() -> PathBuf {
    model_mirror().join("nllb-tiny/int8")
}

/// The fast English Whisper model.
pub fn whisper_tiny_en() -> PathBuf {
    model_mirror().join("whisper/ggml-tiny.en.bin")
}

/// A free TCP port on 127.0.0.1 (the OS picks; a tiny race with other processes is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(100),
    )
    .is_ok()
}

/// Path of the nats-server binary the harness runs.
pub fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VOXBRIDGE_NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let tools = workspace_root().join(".tools/bin/nats-server");
    if tools.exists() {
        return tools;
    }
    PathBuf::from("nats-server")
}

/// A private nats-server, killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    pub port: u16,
    pub url: String,
    child: Option<Child>,
    store: tempfile::TempDir,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port(), None)
    }

    /// Starts a server with `config` (e.g. `nats/nats-server.conf`), on a free port.
    pub fn start_with_config(config: &Path) -> Self {
        Self::start_on(free_port(), Some(config.to_path_buf()))
    }

    fn start_on(port: u16, config: Option<PathBuf>) -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        let mut server = Self {
            port,
            url: format!("nats://127.0.0.1:{port}"),
            child: None,
            store,
            config,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(nats_server_bin());
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(self.store.path())
        .args(["-m", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {:?}: {e} (run scripts/setup)",
                nats_server_bin()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL), keeping its store, to test reconnects.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while port_open(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private redis-server, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    pub url: String,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server on a free port, without persistence.
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Self {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server (run scripts/setup)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_open(self.port) {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one test runs against.
#[derive(Debug)]
pub struct TestEnv {
    pub nats_url: String,
    pub redis_url: String,
    pub namespace: Namespace,
    /// Present when the harness started its own servers.
    pub nats: Option<NatsServer>,
    pub redis: Option<RedisServer>,
    /// Stream replicas in [`TestEnv::settings`] (3 against a cluster).
    pub stream_replicas: usize,
}

impl TestEnv {
    /// NATS and Redis from env URLs or private servers, and a unique namespace.
    pub fn new() -> Self {
        voxbridge_shared::telemetry::init_for_tests();
        let (nats_url, nats) = match std::env::var("VOXBRIDGE_TEST_NATS_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let server = NatsServer::start();
                (server.url.clone(), Some(server))
            }
        };
        let (redis_url, redis) = match std::env::var("VOXBRIDGE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let server = RedisServer::start();
                (server.url.clone(), Some(server))
            }
        };
        Self {
            nats_url,
            redis_url,
            namespace: Namespace::unique_for_tests(),
            nats,
            redis,
            stream_replicas: 1,
        }
    }

    /// A private NATS server is always used (tests that stop and restart it).
    pub fn with_private_nats() -> Self {
        voxbridge_shared::telemetry::init_for_tests();
        let server = NatsServer::start();
        Self {
            nats_url: server.url.clone(),
            redis_url: String::new(),
            namespace: Namespace::unique_for_tests(),
            nats: Some(server),
            redis: None,
            stream_replicas: 1,
        }
    }

    /// NATS client config for a service in this test's namespace.
    pub fn nats_config(&self) -> NatsConfig {
        NatsConfig::for_url(&self.nats_url, &self.namespace)
    }

    /// A plain client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.nats_url)
            .await
            .expect("connect to test NATS")
    }

    /// Topology settings for tests: memory storage and short ack waits so redelivery is quick.
    pub fn settings(&self) -> TopologySettings {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            topology: voxbridge_shared::config::TopologyConfig,
        }
        let mut args = vec!["flags".to_string()];
        args.extend(Self::topology_flags().iter().map(|s| s.to_string()));
        let mut settings = Flags::try_parse_from(args)
            .expect("test topology flags")
            .topology
            .settings();
        settings.replicas = self.stream_replicas;
        settings
    }

    /// The command-line flags that give a binary the same topology as [`TestEnv::settings`].
    pub fn topology_flags() -> [&'static str; 8] {
        [
            "--stream-storage",
            "memory",
            "--session-ack-wait-s",
            "2",
            "--mt-ack-wait-s",
            "2",
            "--job-ack-wait-s",
            "2",
        ]
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes (then panics with `what`).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GETs `url` and returns (status, body).
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The value of one sample line (`name{labels} value`) in a Prometheus exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Path of a workspace binary built next to the test executable (`cargo build --bins`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// The flags every in-process service of `env` gets, followed by `extra`.
fn service_args<'a>(
    env: &'a TestEnv,
    bin: &'a str,
    own: &[&'a str],
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        bin,
        "--nats-url",
        &env.nats_url,
        "--namespace",
        env.namespace.prefix(),
    ];
    args.extend_from_slice(own);
    args.extend_from_slice(extra);
    args
}

/// Starts an in-process MT worker on `nllb-tiny` in `env`'s namespace, with `extra` flags.
pub async fn start_mt_worker(
    env: &TestEnv,
    extra: &[&str],
    shutdown: tokio_util::sync::CancellationToken,
) -> voxbridge_mt::Running {
    use clap::Parser;
    let model = nllb_tiny();
    let model = model.to_str().expect("utf-8 model path");
    let own = [
        "--metrics-addr",
        "127.0.0.1:0",
        "--model",
        model,
        "--max-decoding-length",
        "16",
        "--redis-url",
        &env.redis_url,
    ];
    let args = service_args(env, "voxbridge-mt", &own, extra);
    let config = voxbridge_mt::Config::try_parse_from(args).expect("mt config");
    voxbridge_mt::start(config, Some(env.settings()), shutdown)
        .await
        .expect("MT worker starts")
}

/// Starts an in-process edge on a free port in `env`'s namespace, with `extra` flags.
pub async fn start_edge(
    env: &TestEnv,
    extra: &[&str],
    shutdown: tokio_util::sync::CancellationToken,
) -> voxbridge_edge::Running {
    use clap::Parser;
    let args = service_args(env, "voxbridge-edge", &["--listen", "127.0.0.1:0"], extra);
    let config = voxbridge_edge::Config::try_parse_from(args).expect("edge config");
    voxbridge_edge::start(config, Some(env.settings()), shutdown)
        .await
        .expect("edge starts")
}

/// Scrapes `/metrics` at `addr`.
pub async fn scrape(addr: std::net::SocketAddr) -> String {
    http_get(&format!("http://{addr}/metrics"))
        .await
        .map(|(_, body)| body)
        .expect("scrape /metrics")
}

/// 16 kHz mono s16 samples of a WAV file (the recordings in `../shared/audio` are this format).
pub fn read_wav(path: &Path) -> Vec<i16> {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16),
        "{}",
        path.display()
    );
    reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect()
}

/// The reference transcript beside a recording.
pub fn reference_text(wav: &Path) -> String {
    std::fs::read_to_string(wav.with_extension("txt")).expect("reference .txt beside the .wav")
}

/// Publishes a live session the way the edge does: the claim on `vb.session.open`, then the
/// audio in `chunk_ms` chunks, then the close marker. With `realtime`, chunks are paced at
/// real-time speed. The session is marked as not real-time (`SessionOpen::realtime` false), so
/// the worker recognises every step and the transcript does not depend on timing.
pub async fn stream_session(
    env: &TestEnv,
    session: voxbridge_shared::SessionId,
    source_lang: Option<&str>,
    targets: &[&str],
    samples: &[i16],
    chunk_ms: usize,
    realtime: bool,
) {
    let open = session_open(session, source_lang, targets, false);
    publish_session(env, &open, samples, chunk_ms, realtime).await;
}

/// The open message of a test session (16 kHz, client "test"); `realtime` marks a session whose
/// audio arrives at the pace of speech (a worker behind it catches up and counts it as behind).
pub fn session_open(
    session: voxbridge_shared::SessionId,
    source_lang: Option<&str>,
    targets: &[&str],
    realtime: bool,
) -> voxbridge_shared::messages::SessionOpen {
    use voxbridge_shared::messages::*;
    SessionOpen {
        v: 1,
        session_id: session,
        source_lang: source_lang.map(str::to_string),
        target_langs: targets.iter().map(|s| s.to_string()).collect(),
        sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
        opened_at_ms: now_unix_ms(),
        client: Some("test".into()),
        realtime,
    }
}

/// [`stream_session`] with the session's open message as given.
pub async fn publish_session(
    env: &TestEnv,
    open: &voxbridge_shared::messages::SessionOpen,
    samples: &[i16],
    chunk_ms: usize,
    realtime: bool,
) {
    use voxbridge_shared::codec::encode;
    use voxbridge_shared::messages::*;
    let js = async_nats::jetstream::new(env.client().await);
    let ns = &env.namespace;
    let session = open.session_id;
    let publish = |subject: String, payload: Vec<u8>| {
        let js = js.clone();
        async move {
            js.publish(subject, payload.into())
                .await
                .expect("publish")
                .await
                .expect("stored")
        }
    };
    publish(ns.session_open(), encode(open).expect("encode")).await;
    let per_chunk = 16 * chunk_ms;
    let started = tokio::time::Instant::now();
    for (seq, chunk) in samples.chunks(per_chunk).enumerate() {
        let pcm: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let event = AudioEvent::Chunk(AudioChunk {
            v: 1,
            session_id: session,
            seq: seq as u64,
            offset_samples: (seq * per_chunk) as u64,
            sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
            pcm: pcm.into(),
            received_at_ms: now_unix_ms(),
        });
        publish(ns.audio(&session), encode(&event).expect("encode")).await;
        if realtime {
            tokio::time::sleep_until(
                started + Duration::from_millis(((seq + 1) * chunk_ms) as u64),
            )
            .await;
        }
    }
    let close = AudioEvent::Close(SessionClose {
        v: 1,
        session_id: session,
        reason: CloseReason::ClientStop,
        final_offset_samples: samples.len() as u64,
        closed_at_ms: now_unix_ms(),
    });
    publish(ns.audio(&session), encode(&close).expect("encode")).await;
}

/// The transcript subject of `session`, from its first event on (an ordered consumer).
pub async fn transcript_messages(
    env: &TestEnv,
    session: voxbridge_shared::SessionId,
) -> async_nats::jetstream::consumer::pull::Ordered {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let js = async_nats::jetstream::new(env.client().await);
    let stream = js
        .get_stream(
            env.namespace
                .stream(voxbridge_shared::subjects::streams::TRANSCRIPTS),
        )
        .await
        .expect("transcripts stream");
    stream
        .create_consumer(OrderedConfig {
            filter_subject: env.namespace.transcript(&session),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("ordered consumer")
        .messages()
        .await
        .expect("messages")
}

/// Every transcript event of `session`, up to and including `session.ended` (or until
/// `timeout`, then panics).
pub async fn transcript_events(
    env: &TestEnv,
    session: voxbridge_shared::SessionId,
    timeout: Duration,
) -> Vec<voxbridge_shared::messages::TranscriptEvent> {
    use futures::StreamExt;
    use voxbridge_shared::messages::TranscriptEvent;
    let mut messages = transcript_messages(env, session).await;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no session.ended within {timeout:?}; got {} events",
                    events.len()
                )
            })
            .expect("stream open")
            .expect("message");
        let event: TranscriptEvent =
            voxbridge_shared::codec::decode(&next.payload).expect("decode event");
        let ended = matches!(event, TranscriptEvent::Ended(_));
        events.push(event);
        if ended {
            return events;
        }
    }
}

/// The finals' texts, in index order, checking indices are 0..n without gap or duplicate.
pub fn final_texts(events: &[voxbridge_shared::messages::TranscriptEvent]) -> Vec<String> {
    use voxbridge_shared::messages::TranscriptEvent;
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::Final(f) => Some((f.index, f.text.clone())),
            _ => None,
        })
        .collect();
    for (i, (index, _)) in finals.iter().enumerate() {
        assert_eq!(
            *index, i as u64,
            "final indices must be 0..n in order: {finals:?}"
        );
    }
    finals.into_iter().map(|(_, t)| t).collect()
}

/// Starts an in-process STT worker on whisper tiny.en in `env`'s namespace.
pub async fn start_stt_worker(
    env: &TestEnv,
    extra: &[&str],
    shutdown: tokio_util::sync::CancellationToken,
) -> voxbridge_stt::Running {
    use clap::Parser;
    let model = whisper_tiny_en();
    let model = model.to_str().expect("utf-8 model path");
    let own = ["--metrics-addr", "127.0.0.1:0", "--model", model];
    let args = service_args(env, "voxbridge-stt", &own, extra);
    let config = voxbridge_stt::Config::try_parse_from(args).expect("stt config");
    voxbridge_stt::start(config, Some(env.settings()), shutdown)
        .await
        .expect("STT worker starts")
}

/// An STT worker *process* (whisper tiny.en, the tests' topology flags, then `extra`), healthy:
/// for tests that kill it.
pub async fn spawn_stt_process(env: &TestEnv, extra: &[&str]) -> SttProcess {
    let port = free_port();
    let mut args = vec![
        "--metrics-addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--model".to_string(),
        whisper_tiny_en().to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(TestEnv::topology_flags().iter().map(|s| s.to_string()));
    SttProcess {
        child: spawn_healthy(env, "voxbridge-stt", &args, port).await,
        metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// A running STT worker process ([`spawn_stt_process`]), killed when dropped (also a stopped
/// one, and when a test fails half-way).
#[derive(Debug)]
pub struct SttProcess {
    pub child: Child,
    /// Where it serves `/metrics` and `/healthz`.
    pub metrics_addr: std::net::SocketAddr,
}

impl SttProcess {
    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.child.id()))
            .status()
            .expect("sh");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for SttProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns a workspace binary in `env`'s namespace and waits until `/healthz` on `port` is 200.
pub async fn spawn_healthy(env: &TestEnv, bin: &str, args: &[String], port: u16) -> Child {
    let child = Command::new(bin_path(bin))
        .args(args)
        .env("VOXBRIDGE_NATS_URL", &env.nats_url)
        .env("VOXBRIDGE_NAMESPACE", env.namespace.prefix())
        .env("VOXBRIDGE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_for(&format!("{bin} healthy"), Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            http_get(&url)
                .await
                .and_then(|(s, _)| (s == 200).then_some(()))
        }
    })
    .await;
    child
}
