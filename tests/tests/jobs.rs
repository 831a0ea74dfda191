//! Batch jobs end to end: files through `POST /v1/jobs`, `voxctl` and the JobStore, the JOBS
//! queue, real MT workers on `nllb-tiny` (meaningless words: assertions are on structure,
//! timing and counts), a real STT worker on whisper tiny.en for audio files, real NATS (Object
//! Store, KV) and Redis.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::JobId;
use voxbridge_shared::codec::decode;
use voxbridge_shared::eval::wer;
use voxbridge_shared::jobs::{JobStore, Submission};
use voxbridge_shared::messages::{DlqRecord, JobKind, JobState, JobStatus, SubtitleFormat};
use voxbridge_shared::subjects::streams;
use voxbridge_shared::subtitles::Subtitles;
use voxbridge_tests::{
    TestEnv, metric_value, scrape, start_edge, start_mt_worker, start_stt_worker, wait_for,
};

fn fixture(name: &str) -> PathBuf {
    voxbridge_tests::workspace_root()
        .join("tests/fixtures/subtitles")
        .join(name)
}

/// `voxctl` pointed at the test's NATS server and namespace.
fn voxctl(env: &TestEnv) -> Command {
    let mut command = Command::new(voxbridge_tests::bin_path("voxctl"));
    command
        .args(["--nats-url", &env.nats_url, "--namespace"])
        .arg(env.namespace.prefix());
    command
}

/// A multipart `POST /v1/jobs`; returns (status, JSON body).
async fn post_job(
    edge: std::net::SocketAddr,
    file_name: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let response = reqwest::Client::new()
        .post(format!("http://{edge}/v1/jobs"))
        .multipart(form)
        .send()
        .await
        .expect("POST /v1/jobs");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

async fn get_json(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /v1/jobs/{id}` until the job has finished.
async fn wait_job(edge: std::net::SocketAddr, id: &str, timeout: Duration) -> Value {
    wait_for(&format!("job {id} to finish"), timeout, || async move {
        let (_, job) = get_json(format!("http://{edge}/v1/jobs/{id}")).await;
        matches!(job["state"].as_str(), Some("succeeded" | "failed")).then_some(job)
    })
    .await
}

async fn download(edge: std::net::SocketAddr, id: &str, lang: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(format!("http://{edge}/v1/jobs/{id}/result?lang={lang}"))
        .await
        .expect("GET result");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// Every cue keeps its identifier and exact timing.
fn assert_same_cues(original: &Subtitles, translated: &Subtitles) {
    assert_eq!(original.cues().len(), translated.cues().len(), "cue count");
    for (a, b) in original.cues().iter().zip(translated.cues()) {
        assert_eq!(a.start_ms(), b.start_ms());
        assert_eq!(a.end_ms(), b.end_ms());
        if original.format() == translated.format() {
            assert_eq!(a.identifier(), b.identifier());
        }
    }
}

async fn job_store(env: &TestEnv) -> JobStore {
    let client = env.client().await;
    let js = jetstream::new(client.clone());
    JobStore::open(client, js, env.namespace.clone())
        .await
        .expect("job store")
}

/// A subtitle file of `n` cues, each a distinct sentence, with some sentences over two cues.
fn generated_srt(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let start = i as u64 * 2_500;
        let end = start + 2_000;
        let ts = |ms: u64| {
            format!(
                "{:02}:{:02}:{:02},{:03}",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            )
        };
        let text = if i % 5 == 3 {
            format!("Cue {i} begins a sentence that")
        } else if i % 5 == 4 {
            format!("ends in cue {i}, with <i>feeling</i>.")
        } else {
            format!("Line {i} says the ferry leaves at {} o'clock.", i % 12 + 1)
        };
        out.push_str(&format!(
            "{}\n{} --> {}\n{text}\n\n",
            i + 1,
            ts(start),
            ts(end)
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtitle_file_is_translated_into_every_target_with_cues_and_timings_kept() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let bytes = std::fs::read(fixture("film.srt")).expect("fixture");
    let original = Subtitles::parse(&bytes).expect("fixture parses");

    let (status, job) = post_job(edge.addr, "film.srt", bytes.clone(), &[("to", "vi,fr")]).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let job = wait_job(edge.addr, &id, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"], 1.0);
    let results = job["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{job}");
    for (lang, name) in [("vi", "film.vi.srt"), ("fr", "film.fr.srt")] {
        let (status, body) = download(edge.addr, &id, lang).await;
        assert_eq!(status, 200);
        let translated = Subtitles::parse(&body).expect("result parses");
        assert_eq!(translated.format(), SubtitleFormat::Srt);
        assert_same_cues(&original, &translated);
        assert!(
            results.iter().any(|r| r["file_name"] == name),
            "{name} in {results:?}"
        );
        let texts: usize = translated
            .cues()
            .iter()
            .filter(|c| !c.plain_text().trim().is_empty())
            .count();
        assert!(texts > 0, "translations were written into the cues");
        assert_ne!(body, bytes, "the text changed");
    }

    // True batch inference: fewer model calls than sentences.
    let metrics = scrape(mt.metrics_addr).await;
    let sentences = metric_value(&metrics, "voxbridge_mt_job_sentences_total").expect("sentences");
    let calls = metric_value(&metrics, "voxbridge_mt_batch_size_count").expect("batches");
    let texts = metric_value(&metrics, "voxbridge_mt_batch_size_sum").expect("texts");
    println!("{sentences} sentence units over 2 targets, {texts} texts in {calls} batches");
    assert!(sentences >= 2.0 * 10.0, "{sentences}");
    assert!(
        calls * 2.0 <= texts,
        "batches of at least 2 on average: {calls} calls, {texts} texts"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "voxbridge_mt_job_runs_total{outcome=\"succeeded\"}"
        ),
        Some(1.0)
    );

    // WebVTT in, SRT out on request; the listing has both jobs.
    let vtt = std::fs::read(fixture("lecture.vtt")).expect("fixture");
    let original = Subtitles::parse(&vtt).expect("parses");
    let (status, job) = post_job(
        edge.addr,
        "lecture.vtt",
        vtt,
        &[("to", "de"), ("from", "en"), ("format", "srt")],
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id2 = job["id"].as_str().expect("id").to_string();
    let job = wait_job(edge.addr, &id2, Duration::from_secs(120)).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let (status, body) = download(edge.addr, &id2, "de").await;
    assert_eq!(status, 200);
    let converted = Subtitles::parse(&body).expect("parses");
    assert_eq!(converted.format(), SubtitleFormat::Srt);
    assert_same_cues(&original, &converted);
    // With one result, `lang` may be left out.
    assert_eq!(download(edge.addr, &id2, "").await.0, 400);
    let (status, list) = get_json(format!("http://{}/v1/jobs", edge.addr)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids, [id2.as_str(), id.as_str()], "newest first");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_with_the_same_options_is_the_same_job() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    // No worker: the jobs stay queued, which is what de-duplication must handle.
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let bytes = std::fs::read(fixture("messy.srt")).expect("fixture");
    let (s1, first) = post_job(edge.addr, "messy.srt", bytes.clone(), &[("to", "vi,fr")]).await;
    let (s2, again) = post_job(edge.addr, "renamed.srt", bytes.clone(), &[("to", "fr, vi")]).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["deduplicated"], true);
    let (_, other) = post_job(edge.addr, "messy.srt", bytes.clone(), &[("to", "vi")]).await;
    assert_ne!(first["id"], other["id"], "other options: another job");
    let (_, vtt) = post_job(
        edge.addr,
        "messy.srt",
        bytes,
        &[("to", "vi,fr"), ("format", "vtt")],
    )
    .await;
    assert_ne!(first["id"], vtt["id"]);
    // One queued message per distinct job.
    let js = jetstream::new(env.client().await);
    let mut stream = js
        .get_stream(env.namespace.stream(streams::JOBS))
        .await
        .expect("JOBS");
    assert_eq!(stream.info().await.expect("info").state.messages, 3);

    // Bad requests get codes, not jobs.
    let (status, body) =
        post_job(edge.addr, "a.srt", b"1\n".to_vec(), &[("to", "xx-klingon")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "unknown_language");
    let (status, body) = post_job(edge.addr, "a.srt", b"1\n".to_vec(), &[]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_json(format!("http://{}/v1/jobs/not-a-ulid", edge.addr)).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_json(format!("http://{}/v1/jobs/{}", edge.addr, JobId::new())).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = get_json(format!(
        "http://{}/v1/jobs/{}/result?lang=vi",
        edge.addr,
        first["id"].as_str().expect("id")
    ))
    .await;
    assert_eq!(status, 409, "not finished yet: {body}");
    assert_eq!(body["error"]["code"], "job_not_finished");
    shutdown.cancel();

    // An edge with API keys wants one on every job route.
    let shutdown = CancellationToken::new();
    let keyed = start_edge(&env, &["--api-keys", "k1,k2"], shutdown.clone()).await;
    let srt = std::fs::read(fixture("messy.srt")).expect("fixture");
    let (status, body) = post_job(keyed.addr, "messy.srt", srt.clone(), &[("to", "vi,fr")]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = get_json(format!("http://{}/v1/jobs", keyed.addr)).await;
    assert_eq!(status, 401);
    let (status, _) = get_json(format!("http://{}/v1/jobs?api_key=wrong", keyed.addr)).await;
    assert_eq!(status, 401);
    let (status, list) = get_json(format!("http://{}/v1/jobs?api_key=k2", keyed.addr)).await;
    assert_eq!(status, 200, "{list}");
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/jobs", keyed.addr))
        .bearer_auth("k1")
        .multipart(
            reqwest::multipart::Form::new()
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(srt).file_name("messy.srt"),
                )
                .text("to", "vi,fr"),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(
        response.status().as_u16(),
        200,
        "same file and options as before: same job"
    );
    shutdown.cancel();

    // An upload over the edge's limit: 413 with a code.
    let shutdown = CancellationToken::new();
    let small = start_edge(&env, &["--max-job-bytes", "1000"], shutdown.clone()).await;
    let (status, body) = post_job(
        small.addr,
        "big.srt",
        generated_srt(100).into_bytes(),
        &[("to", "vi")],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_large");
    shutdown.cancel();

    // Uploads are streamed into the Object Store; duplicates, refused and oversized uploads
    // leave nothing behind: one stored file per job.
    let files = js
        .get_object_store(
            env.namespace
                .bucket(voxbridge_shared::subjects::buckets::FILES),
        )
        .await
        .expect("object store");
    let mut list = files.list().await.expect("list");
    let mut names = Vec::new();
    while let Some(info) = futures::StreamExt::next(&mut list).await {
        names.push(info.expect("info").name);
    }
    assert_eq!(names.len(), 3, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_files_fail_with_a_code_land_in_the_dlq_and_never_loop() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let mt = start_mt_worker(&env, &["--max-subtitle-bytes", "4000"], shutdown.clone()).await;
    let store = job_store(&env).await;
    let submit = |name: &str, bytes: Vec<u8>, target: &str| Submission {
        kind: JobKind::Subtitles,
        file_name: name.to_string(),
        bytes: bytes.into(),
        source_lang: Some("eng_Latn".into()),
        target_langs: vec![target.to_string()],
        output_format: None,
    };
    let garbage: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases = [
        (
            submit("garbage.srt", garbage, "vie_Latn"),
            "invalid_subtitles",
        ),
        (
            submit(
                "notes.srt",
                b"These are my notes, not subtitles.\n".to_vec(),
                "vie_Latn",
            ),
            "invalid_subtitles",
        ),
        (
            submit("big.srt", generated_srt(200).into_bytes(), "vie_Latn"),
            "file_too_large",
        ),
        (
            // A language the model does not have (Klingon is not among NLLB's 202).
            submit(
                "film.srt",
                std::fs::read(fixture("film.srt")).expect("fixture"),
                "tlh_Latn",
            ),
            "unsupported_language",
        ),
    ];
    let mut ids = Vec::new();
    for (submission, _) in &cases {
        ids.push(
            store
                .submit(submission.clone())
                .await
                .expect("submit")
                .status
                .job_id,
        );
    }
    for ((_, code), id) in cases.iter().zip(&ids) {
        let status = store
            .wait(id, Duration::from_secs(60))
            .await
            .expect("status");
        assert_eq!(status.state, JobState::Failed, "{status:?}");
        let error = status.error.expect("error");
        assert_eq!(error.code, *code, "{}", error.message);
        assert!(!error.message.is_empty());
        println!("{code}: {}", error.message);
    }
    // Each lands in the DLQ once, with the original job message.
    let js = jetstream::new(env.client().await);
    let dlq = js
        .get_stream(env.namespace.stream(streams::DLQ))
        .await
        .expect("DLQ");
    let records: Vec<DlqRecord> = wait_for("4 DLQ records", Duration::from_secs(20), || {
        let dlq = dlq.clone();
        async move {
            let mut out = Vec::new();
            for seq in 1..=4 {
                let raw = dlq.get_raw_message(seq).await.ok()?;
                out.push(decode::<DlqRecord>(&raw.payload).ok()?);
            }
            Some(out)
        }
    })
    .await;
    assert!(records.iter().all(|r| r.reason_code == "poison_input"));
    // Never loops: after several ack waits, nothing is redelivered or queued.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut jobs = js
        .get_stream(env.namespace.stream(streams::JOBS))
        .await
        .expect("JOBS");
    assert_eq!(jobs.info().await.expect("info").state.messages, 0);
    assert!(
        dlq.clone().get_raw_message(5).await.is_err(),
        "one record per job"
    );
    for id in &ids {
        let status = store.status(id).await.expect("status").expect("kept");
        assert_eq!(status.attempts, 1, "run once: {status:?}");
    }
    let metrics = scrape(mt.metrics_addr).await;
    assert_eq!(
        metric_value(&metrics, "voxbridge_mt_job_runs_total{outcome=\"failed\"}"),
        Some(4.0)
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_is_replaced_and_the_job_completes_once() {
    let env = TestEnv::new();
    let store = job_store_after_topology(&env).await;
    // The victim: a worker process translating one sentence per request, one at a time, so
    // the job is long enough to kill in the middle.
    let port = voxbridge_tests::free_port();
    let model = voxbridge_tests::nllb_tiny();
    let mut args = vec![
        "--metrics-addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--model".into(),
        model.to_string_lossy().into_owned(),
        "--max-decoding-length".into(),
        "16".into(),
        "--redis-url".into(),
        env.redis_url.clone(),
        "--job-chunk".into(),
        "1".into(),
        "--job-window".into(),
        "1".into(),
        // Each one-sentence request also waits 50 ms for a batch to fill: a slow job.
        "--max-wait-ms".into(),
        "50".into(),
    ];
    args.extend(TestEnv::topology_flags().iter().map(|s| s.to_string()));
    let mut victim = voxbridge_tests::spawn_healthy(&env, "voxbridge-mt", &args, port).await;

    let srt = generated_srt(500);
    let original = Subtitles::parse(srt.as_bytes()).expect("parses");
    let submitted = store
        .submit(Submission {
            kind: JobKind::Subtitles,
            file_name: "long.srt".into(),
            bytes: srt.into_bytes().into(),
            source_lang: Some("eng_Latn".into()),
            target_langs: vec!["vie_Latn".into()],
            output_format: None,
        })
        .await
        .expect("submit");
    let id = submitted.status.job_id;
    // Kill it once the job is well under way.
    wait_for("the job to be 10 % done", Duration::from_secs(120), || {
        let store = store.clone();
        async move {
            let s = store.status(&id).await.ok()??;
            (s.state == JobState::Running && s.progress >= 0.1).then_some(())
        }
    })
    .await;
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    let at_kill = store.status(&id).await.expect("status").expect("kept");
    println!("killed at {:.0} %", at_kill.progress * 100.0);
    assert_eq!(at_kill.state, JobState::Running);

    // A second worker takes over once the claim expires, and finishes.
    let shutdown = CancellationToken::new();
    let heir = start_mt_worker(&env, &[], shutdown.clone()).await;
    let done: JobStatus = store
        .wait(&id, Duration::from_secs(180))
        .await
        .expect("wait");
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2, "redelivered once");
    let result = &done.results[0];
    let bytes = store
        .get_file(&result.object, usize::MAX)
        .await
        .expect("get")
        .expect("stored");
    let translated = Subtitles::parse(&bytes).expect("parses");
    assert_same_cues(&original, &translated);
    assert_eq!(result.cues, 500);
    // Completed once: no further run, nothing left queued.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = scrape(heir.metrics_addr).await;
    assert_eq!(
        metric_value(
            &metrics,
            "voxbridge_mt_job_runs_total{outcome=\"succeeded\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "voxbridge_mt_job_runs_total{outcome=\"duplicate\"}"
        ),
        None
    );
    let js = jetstream::new(env.client().await);
    let mut jobs = js
        .get_stream(env.namespace.stream(streams::JOBS))
        .await
        .expect("JOBS");
    assert_eq!(jobs.info().await.expect("info").state.messages, 0);
    // The heir re-used the victim's work: cache hits for the sentences done before the kill.
    let hits = metric_value(&metrics, "voxbridge_mt_cache_hits_total").unwrap_or(0.0);
    println!("cache hits after takeover: {hits}");
    assert!(hits >= 1.0, "finished sentences were not translated again");
    shutdown.cancel();
}

/// Creates the topology (as any service would) and opens the job store.
async fn job_store_after_topology(env: &TestEnv) -> JobStore {
    let js = jetstream::new(env.client().await);
    let topology = voxbridge_shared::topology::Topology::new(&env.namespace, &env.settings());
    voxbridge_shared::topology::ensure_topology(&js, &topology)
        .await
        .expect("topology");
    job_store(env).await
}

/// jfk.wav rewritten as 44.1 kHz stereo 32-bit float: the job must convert it.
fn jfk_as_float_stereo_44k(dir: &std::path::Path) -> (PathBuf, String) {
    let source = voxbridge_tests::audio_dir().join("jfk.wav");
    let reference = voxbridge_tests::reference_text(&source);
    let samples = voxbridge_tests::read_wav(&source);
    let floats: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let up = voxbridge_shared::audio::resample(&floats, 16_000, 44_100).expect("resample");
    let path = dir.join("jfk-44k-stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(&path, spec).expect("create");
    for s in up {
        writer.write_sample(s).expect("write");
        writer.write_sample(s).expect("write");
    }
    writer.finalize().expect("finalize");
    (path, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxctl_transcribes_and_translates_an_audio_file() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (wav, reference) = jfk_as_float_stereo_44k(dir.path());
    let out = dir.path().join("out");

    let output = voxctl(&env)
        .arg("transcribe")
        .arg(&wav)
        .args([
            "--to",
            "vi",
            "--format",
            "vtt",
            "--json",
            "--timeout-s",
            "120",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run voxctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "voxctl failed: {stderr}");
    let job: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["source"], "en", "detected/forced language: {job}");

    let transcript = std::fs::read(out.join("jfk-44k-stereo.en.vtt")).expect("transcript written");
    let transcript = Subtitles::parse(&transcript).expect("transcript parses");
    assert_eq!(transcript.format(), SubtitleFormat::Vtt);
    let text: Vec<String> = transcript.cues().iter().map(|c| c.plain_text()).collect();
    let text = text.join(" ");
    let error = wer(&text, &reference);
    println!(
        "transcript ({} cues, WER {:.1} %): {text}",
        transcript.cues().len(),
        error * 100.0
    );
    assert!(error <= 0.10, "WER {error}");
    assert!(transcript.cues().len() >= 2, "11 s of speech in ≤ 7 s cues");
    for cue in transcript.cues() {
        assert!(cue.end_ms() - cue.start_ms() <= 7_000, "cue over 7 s");
        assert!(cue.end_ms() <= 11_100, "within the audio");
        assert!(cue.lines().len() <= 2);
        assert!(
            cue.lines().iter().all(|l| l.chars().count() <= 42),
            "{:?}",
            cue.lines()
        );
    }
    let translation =
        std::fs::read(out.join("jfk-44k-stereo.vi.vtt")).expect("translation written");
    let translation = Subtitles::parse(&translation).expect("translation parses");
    assert_same_cues(&transcript, &translation);

    // `voxctl jobs` lists it; `voxctl job ID` shows it.
    let list = voxctl(&env).arg("jobs").output().expect("voxctl jobs");
    let list = String::from_utf8_lossy(&list.stdout);
    let id = job["id"].as_str().expect("id");
    assert!(list.contains(id) && list.contains("succeeded"), "{list}");
    shutdown.cancel();
}

/// A compressed-audio fixture (`tests/fixtures/audio`, made from jfk.wav: see its README).
fn audio_fixture(name: &str) -> Vec<u8> {
    let path = voxbridge_tests::workspace_root()
        .join("tests/fixtures/audio")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_audio_posted_without_a_kind_is_transcribed() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let reference = voxbridge_tests::reference_text(&voxbridge_tests::audio_dir().join("jfk.wav"));

    // No `kind`: the edge tells audio by the first bytes. A 22.05 kHz mono MP3 with an ID3 tag
    // (symphonia), an Ogg Opus voice note (libopus).
    for (name, what) in [("jfk.mp3", "MP3"), ("jfk.opus", "Ogg Opus")] {
        let (status, job) = post_job(edge.addr, name, audio_fixture(name), &[]).await;
        assert_eq!(status, 202, "{name}: {job}");
        assert_eq!(job["kind"], "audio", "{name}: {job}");
        let id = job["id"].as_str().expect("id").to_string();
        let job = wait_job(edge.addr, &id, Duration::from_secs(120)).await;
        assert_eq!(job["state"], "succeeded", "{name}: {job}");
        let (status, body) = download(edge.addr, &id, "en").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let transcript = Subtitles::parse(&body).expect("transcript parses");
        let text: Vec<String> = transcript.cues().iter().map(|c| c.plain_text()).collect();
        let text = text.join(" ");
        let error = wer(&text, &reference);
        println!("{what} transcript (WER {:.1} %): {text}", error * 100.0);
        assert!(error <= 0.15, "{name}: WER {error}: {text}");
        let last_end = transcript.cues().last().map_or(0, |c| c.end_ms());
        assert!(
            last_end <= 11_100,
            "{name}: within the 11 s of audio: {last_end} ms"
        );
    }

    // An M4A holding ALAC is audio by its first bytes, but symphonia's ALAC decoder is not
    // built in: the job fails with `invalid_audio`, naming the codec, and the worker carries on.
    let (status, job) = post_job(
        edge.addr,
        "jfk-alac.m4a",
        audio_fixture("jfk-alac.m4a"),
        &[],
    )
    .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["kind"], "audio", "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let job = wait_job(edge.addr, &id, Duration::from_secs(60)).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "invalid_audio", "{job}");
    let message = job["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("ALAC"), "{message}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_audio_fails_the_audio_job_cleanly() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let store = job_store(&env).await;
    // An audio job of `bytes` named `file_name`: it fails, and its error is returned.
    let failed = |file_name: &'static str, bytes: &'static [u8]| {
        let store = store.clone();
        async move {
            let submitted = store
                .submit(Submission {
                    kind: JobKind::Audio,
                    file_name: file_name.into(),
                    bytes: bytes.to_vec().into(),
                    source_lang: None,
                    target_langs: vec![],
                    output_format: None,
                })
                .await
                .expect("submit");
            let status = store
                .wait(&submitted.status.job_id, Duration::from_secs(60))
                .await
                .expect("wait");
            assert_eq!(status.state, JobState::Failed, "{file_name}");
            status.error.expect("error")
        }
    };
    let error = failed("song.wav", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").await;
    assert_eq!(error.code, "invalid_audio");
    // Garbage behind another format's magic bytes (an ID3 tag, as MP3s start) too, with a
    // message that lists the formats audio jobs take.
    let error = failed(
        "song.mp3",
        b"ID3\x04\x00\x00\x00\x00\x00\x0ajunkjunkjunkjunk",
    )
    .await;
    assert_eq!(error.code, "invalid_audio");
    assert!(error.message.contains("MP3, FLAC"), "{}", error.message);
    // The worker is still healthy.
    let (code, _) = voxbridge_tests::http_get(&format!("http://{}/healthz", stt.metrics_addr))
        .await
        .expect("healthz");
    assert_eq!(code, 200);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_keeps_its_cues_timings_bom_and_line_endings_through_a_job() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let store = job_store(&env).await;
    for (name, source) in [
        ("bom_crlf.srt", "eng_Latn"),
        ("bom_crlf.vtt", "eng_Latn"),
        ("chinese.srt", "zho_Hans"),
        ("legacy_cr.srt", "eng_Latn"),
        ("messy.srt", "eng_Latn"),
        ("lecture.vtt", "eng_Latn"),
    ] {
        let bytes = std::fs::read(fixture(name)).expect("fixture");
        let original = Subtitles::parse(&bytes).expect("parses");
        let submitted = store
            .submit(Submission {
                kind: JobKind::Subtitles,
                file_name: name.into(),
                bytes: bytes.clone().into(),
                source_lang: Some(source.into()),
                target_langs: vec!["vie_Latn".into()],
                output_format: None,
            })
            .await
            .expect("submit");
        let status = store
            .wait(&submitted.status.job_id, Duration::from_secs(60))
            .await
            .expect("wait");
        assert_eq!(status.state, JobState::Succeeded, "{name}: {status:?}");
        let result = &status.results[0];
        let out = store
            .get_file(&result.object, usize::MAX)
            .await
            .expect("get")
            .expect("stored");
        let translated = Subtitles::parse(&out).expect("result parses");
        assert_same_cues(&original, &translated);
        assert_eq!(translated.format(), original.format(), "{name}");
        assert_eq!(translated.has_bom(), original.has_bom(), "{name}: BOM kept");
        assert_eq!(
            translated.line_ending(),
            original.line_ending(),
            "{name}: line endings kept"
        );
        println!(
            "{name}: {} cues, {} overlong after translation",
            result.cues, result.overlong_cues
        );
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxctl_translate_subs_writes_one_file_per_target_and_resubmission_is_the_same_job() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |extra: &[&str]| {
        voxctl(&env)
            .arg("translate-subs")
            .arg(fixture("film.srt"))
            .args(["--to", "vi,fr", "--json", "--timeout-s", "120"])
            .arg("--out")
            .arg(dir.path())
            .args(extra)
            .output()
            .expect("run voxctl")
    };
    let first = run(&[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let job: Value = serde_json::from_slice(&first.stdout).expect("JSON");
    let original =
        Subtitles::parse(&std::fs::read(fixture("film.srt")).expect("read")).expect("parse");
    for name in ["film.vi.srt", "film.fr.srt"] {
        let bytes = std::fs::read(dir.path().join(name)).expect("result written");
        assert_same_cues(&original, &Subtitles::parse(&bytes).expect("parses"));
    }
    let again = run(&[]);
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("submitted before"), "{stderr}");
    let job_again: Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(job["id"], job_again["id"]);
    // An unknown language is refused before anything is submitted.
    let bad = run(&["--to", "klingon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown language"));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxctl_translate_subs_takes_a_folder_and_one_bad_file_does_not_stop_the_others() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let folder = tempfile::tempdir().expect("tempdir");
    let f = folder.path();
    std::fs::create_dir(f.join("week2")).expect("mkdir");
    for (name, to) in [
        ("film.srt", "film.srt"),
        ("lecture.vtt", "week2/lecture.vtt"),
    ] {
        std::fs::copy(fixture(name), f.join(to)).expect("copy");
    }
    // Windows-1252, as many subtitles on the web are: converted, the result is UTF-8.
    let utf8 = std::fs::read(fixture("bom_crlf.srt")).expect("read");
    let text = std::str::from_utf8(&utf8[3..]).expect("UTF-8 after the BOM");
    let (windows_1252, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(std::str::from_utf8(&windows_1252).is_err(), "not UTF-8");
    std::fs::write(f.join("legacy.srt"), &windows_1252).expect("write");
    // Not subtitles at all, but named like them: that job fails, the others do not.
    std::fs::write(f.join("broken.srt"), b"These are my notes.\n").expect("write");
    // Refused by the job store before it is a job: reported, and the others go on.
    std::fs::write(f.join("blank.srt"), b"").expect("write");
    // What macOS leaves on shared drives: skipped, as hidden files are.
    std::fs::write(f.join("._film.srt"), b"\x00\x05\x16\x07").expect("write");
    std::fs::write(f.join("notes.txt"), b"not a subtitle file").expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let output = voxctl(&env)
        .arg("translate-subs")
        .arg(f)
        .args(["--recursive", "--to", "vi", "--json", "--timeout-s", "180"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run voxctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "a job failed: exit code 1\n{stderr}"
    );
    assert!(
        stderr.contains("5 files: 3 done, 2 failed, 0 still running"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(broken.srt) failed: [invalid_subtitles]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("blank.srt: [invalid_request] the file is empty"),
        "{stderr}"
    );
    let records: Vec<Value> = serde_json::from_slice(&output.stdout).expect("a JSON list");
    let states: Vec<&str> = records
        .iter()
        .map(|r| r["state"].as_str().expect("state"))
        .collect();
    // The jobs in path order: broken, film, legacy, week2/lecture (blank.srt is no job).
    assert_eq!(states, ["failed", "succeeded", "succeeded", "succeeded"]);
    let ids: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 4, "one job per file");
    // A subfolder's results go to the same subfolder under --out.
    for (input, result) in [
        ("film.srt", "film.vi.srt"),
        ("bom_crlf.srt", "legacy.vi.srt"),
        ("lecture.vtt", "week2/lecture.vi.vtt"),
    ] {
        let original =
            Subtitles::parse(&std::fs::read(fixture(input)).expect("read")).expect("parse");
        let bytes = std::fs::read(out.path().join(result)).expect("result written");
        assert_same_cues(&original, &Subtitles::parse(&bytes).expect("parses"));
    }
    let mut written: Vec<String> = std::fs::read_dir(out.path())
        .expect("read out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["film.vi.srt", "legacy.vi.srt", "week2"]);
    let legacy = std::fs::read(out.path().join("legacy.vi.srt")).expect("read");
    let legacy = Subtitles::parse(&legacy).expect("parses");
    assert_eq!(
        (legacy.source_encoding(), legacy.has_bom()),
        (None, true),
        "written as UTF-8 with a BOM"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxctl_translate_subs_follows_a_large_folder_to_the_end() {
    // Past 12 files one progress bar counts the jobs (the per-file bars are hidden).
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let folder = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read(fixture("film.srt")).expect("read");
    for i in 1..=15 {
        // Different bytes per file: identical files with identical options are one job.
        let mut bytes = original.clone();
        bytes.extend_from_slice(
            format!(
                "\n{}\n00:10:00,000 --> 00:10:01,000\nEpisode {i}.\n",
                1000 + i
            )
            .as_bytes(),
        );
        std::fs::write(folder.path().join(format!("episode{i:02}.srt")), bytes).expect("write");
    }
    let out = tempfile::tempdir().expect("tempdir");
    let output = voxctl(&env)
        .arg("translate-subs")
        .arg(folder.path())
        .args(["--to", "vi", "--timeout-s", "300"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run voxctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("15 files: 15 done, 0 failed, 0 still running"),
        "{stderr}"
    );
    for i in 1..=15 {
        let bytes = std::fs::read(out.path().join(format!("episode{i:02}.vi.srt")))
            .expect("result written");
        let source = Subtitles::parse(
            &std::fs::read(folder.path().join(format!("episode{i:02}.srt"))).expect("read"),
        )
        .expect("parse");
        assert_same_cues(&source, &Subtitles::parse(&bytes).expect("parses"));
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voxctl_transcribes_a_folder_and_refuses_only_its_file_that_is_not_audio() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let folder = tempfile::tempdir().expect("tempdir");
    for (name, copy) in [("jfk.opus", "voice-note.opus"), ("jfk.mp3", "podcast.mp3")] {
        std::fs::write(folder.path().join(copy), audio_fixture(name)).expect("write");
    }
    std::fs::write(folder.path().join("broken.mp3"), b"not audio at all").expect("write");
    std::fs::write(folder.path().join("podcast.txt"), b"show notes").expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let output = voxctl(&env)
        .arg("transcribe")
        .arg(folder.path())
        .args(["--from", "en", "--json", "--timeout-s", "240"])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run voxctl");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.mp3: [invalid_audio]"), "{stderr}");
    assert!(
        stderr.contains("3 files: 2 done, 1 failed, 0 still running"),
        "{stderr}"
    );
    let records: Vec<Value> = serde_json::from_slice(&output.stdout).expect("a JSON list");
    assert_eq!(records.len(), 2, "the refused file was never submitted");
    let reference =
        std::fs::read_to_string(voxbridge_tests::audio_dir().join("jfk.txt")).expect("reference");
    let mut written: Vec<String> = std::fs::read_dir(out.path())
        .expect("read out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["podcast.en.srt", "voice-note.en.srt"]);
    for name in &written {
        let transcript = Subtitles::parse(&std::fs::read(out.path().join(name)).expect("read"))
            .expect("transcript parses");
        let text: Vec<String> = transcript.cues().iter().map(|c| c.plain_text()).collect();
        let error = wer(&text.join(" "), &reference);
        println!("{name}: WER {:.1} %", error * 100.0);
        assert!(error <= 0.15, "{name}: WER {error}");
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_stt_worker_killed_mid_transcription_is_replaced_and_the_job_completes_once() {
    let env = TestEnv::new();
    let store = job_store_after_topology(&env).await;
    // About 100 s of speech: the recordings, three times over.
    let mut samples: Vec<i16> = Vec::new();
    for _ in 0..3 {
        for name in ["en_01", "en_02", "en_03", "en_04", "en_05", "jfk"] {
            samples.extend(voxbridge_tests::read_wav(
                &voxbridge_tests::audio_dir().join(format!("{name}.wav")),
            ));
            samples.extend(std::iter::repeat_n(0i16, 8_000)); // 0.5 s pause
        }
    }
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for s in &samples {
            writer.write_sample(*s).expect("write");
        }
        writer.finalize().expect("finalize");
    }
    let mut victim = voxbridge_tests::spawn_stt_process(&env, &[]).await;
    let submitted = store
        .submit(Submission {
            kind: JobKind::Audio,
            file_name: "long.wav".into(),
            bytes: cursor.into_inner().into(),
            source_lang: Some("eng_Latn".into()),
            target_langs: vec![],
            output_format: Some(SubtitleFormat::Srt),
        })
        .await
        .expect("submit");
    let id = submitted.status.job_id;
    wait_for("transcription to start", Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            let s = store.status(&id).await.ok()??;
            (s.state == JobState::Running).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_kill = store.status(&id).await.expect("status").expect("kept");
    assert_eq!(
        at_kill.state,
        JobState::Running,
        "still transcribing when killed"
    );
    victim.child.kill().expect("SIGKILL");
    let _ = victim.child.wait();
    println!("killed at {:?}", at_kill.message);

    let shutdown = CancellationToken::new();
    let _heir = start_stt_worker(&env, &[], shutdown.clone()).await;
    let done = store
        .wait(&id, Duration::from_secs(300))
        .await
        .expect("wait");
    assert_eq!(done.state, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2, "redelivered once");
    assert_eq!(done.results.len(), 1);
    let bytes = store
        .get_file(&done.results[0].object, usize::MAX)
        .await
        .expect("get")
        .expect("stored");
    let transcript = Subtitles::parse(&bytes).expect("parses");
    let last_end = transcript.cues().last().map(|c| c.end_ms()).unwrap_or(0);
    let audio_ms = samples.len() as u64 / 16;
    println!(
        "{} cues, last ends at {last_end} ms of {audio_ms} ms",
        transcript.cues().len()
    );
    assert!(transcript.cues().len() >= 18, "the whole file, not a part");
    assert!(last_end > audio_ms - 15_000 && last_end <= audio_ms + 500);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let js = jetstream::new(env.client().await);
    let mut jobs = js
        .get_stream(env.namespace.stream(streams::JOBS))
        .await
        .expect("JOBS");
    assert_eq!(
        jobs.info().await.expect("info").state.messages,
        0,
        "completed once"
    );
    shutdown.cancel();
}

/// `GET /v1/jobs/results.zip` builds archives in memory, so an edge builds at most
/// `MAX_ZIP_BUILDS` at once: with that many builds under way (their places held here) another
/// request gets 503 with `Retry-After` and code `unavailable`; as soon as a place is free the
/// same request gives the archive, and a request that fails (404) gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_zip_builds_at_most_two_archives_at_once() {
    use voxbridge_edge::jobs_api::{JobsState, MAX_ZIP_BUILDS, router};
    let env = TestEnv::new();
    let store = job_store_after_topology(&env).await;
    // A succeeded job with one result, written as a worker would.
    let submitted = store
        .submit(Submission {
            kind: JobKind::Subtitles,
            file_name: "film.srt".into(),
            bytes: std::fs::read(fixture("film.srt")).expect("fixture").into(),
            source_lang: Some("eng_Latn".into()),
            target_langs: vec!["vie_Latn".into()],
            output_format: None,
        })
        .await
        .expect("submit");
    let mut status = submitted.status;
    let object = format!("result/{}/vie_Latn", status.job_id);
    let body = b"1\n00:00:01,000 --> 00:00:02,000\nXin chao.\n\n";
    store.put_file(&object, body).await.expect("put result");
    status.state = JobState::Succeeded;
    status.results = vec![voxbridge_shared::messages::JobResult {
        lang: "vie_Latn".into(),
        transcript: false,
        object,
        file_name: "film.vi.srt".into(),
        format: SubtitleFormat::Srt,
        cues: 1,
        overlong_cues: 0,
    }];
    store.put_status(&status).await.expect("put status");

    let builds = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_ZIP_BUILDS));
    let app = router(JobsState {
        store,
        api_keys: Default::default(),
        max_bytes: 1 << 20,
        max_targets: 4,
        zip_builds: builds.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/v1/jobs/results.zip?ids={}", status.job_id);
    let missing = format!("http://{addr}/v1/jobs/results.zip?ids={}", JobId::new());

    // More failing requests than there are places, one after the other: each gives its back.
    for _ in 0..=MAX_ZIP_BUILDS {
        let response = reqwest::get(&missing).await.expect("GET");
        assert_eq!(response.status(), 404);
    }
    // Every place taken, as by builds under way: refused, with a code and a time to retry.
    let held = builds
        .clone()
        .try_acquire_many_owned(MAX_ZIP_BUILDS as u32)
        .expect("all places free after the failed requests");
    let refused = reqwest::get(&url).await.expect("GET");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let error: Value = refused.json().await.expect("a JSON error");
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
    // One build ends: the same request now gets the archive.
    drop(held);
    let _others = builds
        .clone()
        .try_acquire_many_owned(MAX_ZIP_BUILDS as u32 - 1)
        .expect("places");
    let archive = reqwest::get(&url).await.expect("GET");
    assert_eq!(archive.status(), 200);
    let archive = archive.bytes().await.expect("body");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a ZIP file");
    let mut entry = archive.by_index(0).expect("one entry");
    assert_eq!(entry.name().expect("its name"), "film.vi.srt");
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut content).expect("read");
    assert_eq!(content, body);
    server.abort();
}
