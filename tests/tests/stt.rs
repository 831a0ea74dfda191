//! Live transcription with the real whisper tiny.en model on the real recordings of
//! `../shared/audio`, streamed in 100 ms chunks through real NATS.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use voxbridge_shared::SessionId;
use voxbridge_shared::eval::wer;
use voxbridge_shared::messages::{AudioChunk, AudioEvent, TranscriptEvent, now_unix_ms};
use voxbridge_tests::{
    TestEnv, audio_dir, final_texts, metric_value, read_wav, reference_text, scrape,
    start_stt_worker, stream_session, transcript_events,
};

const ENGLISH: [&str; 6] = ["en_01", "en_02", "en_03", "en_04", "en_05", "jfk"];

/// Stable text of a segment only grows, and its final extends the last stable text.
fn assert_committed_text_never_changes(events: &[TranscriptEvent]) {
    let mut stable: HashMap<_, String> = HashMap::new();
    let mut finals = HashMap::new();
    for event in events {
        match event {
            TranscriptEvent::Partial(p) => {
                assert!(
                    !finals.contains_key(&p.segment_id),
                    "a partial after its segment's final: {p:?}"
                );
                let before = stable.entry(p.segment_id).or_default();
                assert!(
                    p.stable_text.starts_with(before.as_str()),
                    "committed text changed: {before:?} -> {:?}",
                    p.stable_text
                );
                *before = p.stable_text.clone();
            }
            TranscriptEvent::Final(f) => {
                let before = stable.get(&f.segment_id).cloned().unwrap_or_default();
                assert!(
                    f.text.starts_with(&before),
                    "final {:?} does not extend committed {before:?}",
                    f.text
                );
                finals.insert(f.segment_id, f.text.clone());
            }
            _ => {}
        }
    }
}

/// WER of one offline pass of the same model over the whole file (what streaming can at best
/// reach), with the worker's default decoding settings.
fn offline_wer(wav: &std::path::Path) -> f64 {
    use voxbridge_stt::transcriber::{TranscribeOptions, Transcriber};
    let t = Transcriber::load(&voxbridge_tests::whisper_tiny_en()).expect("model");
    let samples: Vec<f32> = read_wav(wav)
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();
    let segments = t
        .transcribe(
            &samples,
            &TranscribeOptions {
                threads: 1,
                language: Some("en".into()),
                prompt: None,
                audio_ctx: None,
                beam_size: 5,
                temperature_fallback: true,
                max_tokens: None,
                single_segment: false,
            },
        )
        .expect("offline transcription");
    let text: Vec<String> = segments.into_iter().map(|s| s.text).collect();
    wer(&text.join(" "), &reference_text(wav))
}

/// The quick first step's decode (greedy, token cap, one segment) stops at its budget on the
/// real model, where the uncapped decode of the same audio goes on: the cap is what bounds a
/// quick step caught in a repetition loop.
#[test]
fn a_capped_quick_decode_stops_at_its_token_budget() {
    use voxbridge_stt::transcriber::{QuickDecoding, TranscribeOptions, Transcriber};
    let t = Transcriber::load(&voxbridge_tests::whisper_tiny_en()).expect("model");
    let samples: Vec<f32> = read_wav(&audio_dir().join("jfk.wav"))
        .iter()
        .map(|s| f32::from(*s) / 32768.0)
        .collect();
    let words = |max_tokens| {
        let options = TranscribeOptions {
            threads: 1,
            language: Some("en".into()),
            prompt: None,
            audio_ctx: None,
            beam_size: 1,
            temperature_fallback: false,
            max_tokens,
            single_segment: true,
        };
        let segments = t.transcribe(&samples, &options).expect("transcription");
        let n = segments.iter().map(|s| s.words.len()).sum::<usize>();
        (segments.len(), n)
    };
    let (_, uncapped) = words(None);
    // 11 s of speech: about 22 words uncapped.
    assert!(uncapped > 15, "uncapped decode heard only {uncapped} words");
    let quick = QuickDecoding {
        beam_size: 1,
        tokens_per_s: 8.0,
    };
    // A budget for 0.5 s of audio: 4 + 4 = 8 tokens, the first a timestamp.
    let budget = quick.max_tokens(0.5).expect("a cap");
    assert_eq!(budget, 8);
    let (segments, capped) = words(Some(budget));
    assert_eq!(segments, 1, "a capped decode is one segment");
    assert!(
        (1..=budget as usize).contains(&capped),
        "capped at {budget} tokens, heard {capped} words"
    );
    let uncapped_quick = QuickDecoding {
        beam_size: 5,
        tokens_per_s: 0.0,
    };
    assert_eq!(uncapped_quick.max_tokens(3.0), None);
}

/// Per-file WER ≤ 10 %, or no worse than one offline pass of the same model over the whole file
/// where the model itself cannot reach 10 % (en_01: tiny.en hears "jumped" for "jumps" even
/// offline, and one word in nine is 11.1 %).
#[tokio::test]
async fn english_recordings_are_transcribed_within_10_percent_wer() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let worker = start_stt_worker(&env, &["--max-sessions", "2"], shutdown.clone()).await;
    let mut report = Vec::new();
    for name in ENGLISH {
        let wav = audio_dir().join(format!("{name}.wav"));
        let session = SessionId::new();
        let samples = read_wav(&wav);
        stream_session(
            &env,
            session,
            Some("eng_Latn"),
            &["vie_Latn"],
            &samples,
            100,
            false,
        )
        .await;
        let events = transcript_events(&env, session, Duration::from_secs(600)).await;
        assert_committed_text_never_changes(&events);
        let text = final_texts(&events).join(" ");
        let reference = reference_text(&wav);
        let w = wer(&text, &reference);
        println!("{name}: WER {:.1}%  hyp={text:?}", w * 100.0);
        report.push((name, w));
        let partials = events
            .iter()
            .filter(|e| matches!(e, TranscriptEvent::Partial(_)))
            .count();
        assert!(partials > 0, "{name}: no partial before the final");
    }
    for (name, w) in &report {
        let wav = audio_dir().join(format!("{name}.wav"));
        let offline = offline_wer(&wav);
        println!(
            "{name}: streaming WER {:.1}%, offline single pass {:.1}%",
            w * 100.0,
            offline * 100.0
        );
        assert!(
            *w <= 0.10_f64.max(offline) + 1e-9,
            "{name}: WER {:.1}% > max(10%, offline {:.1}%)",
            w * 100.0,
            offline * 100.0
        );
    }
    let metrics = scrape(worker.metrics_addr).await;
    assert!(
        metric_value(&metrics, "voxbridge_stt_inference_seconds_count").unwrap_or(0.0) > 0.0,
        "{metrics}"
    );
    assert_eq!(
        voxbridge_shared::metrics::naming_violations(&metrics),
        Vec::<String>::new()
    );
    shutdown.cancel();
}

/// A real-time session whose audio is all waiting when the worker gets to it (a worker far
/// behind): the worker catches up by recognising several steps' audio at once — far fewer
/// whisper runs than steps — and the transcript is still complete and committed text still
/// never changes.
#[tokio::test]
async fn a_worker_behind_real_time_catches_up() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let worker = start_stt_worker(&env, &[], shutdown.clone()).await;
    let wav = audio_dir().join("jfk.wav");
    let samples = read_wav(&wav);
    let session = SessionId::new();
    let open = voxbridge_tests::session_open(session, Some("eng_Latn"), &[], true);
    // All audio is stored before the worker reads the first chunk.
    voxbridge_tests::publish_session(&env, &open, &samples, 100, false).await;
    let events = transcript_events(&env, session, Duration::from_secs(600)).await;
    assert_committed_text_never_changes(&events);
    let text = final_texts(&events).join(" ");
    let w = wer(&text, &reference_text(&wav));
    println!("jfk caught up: WER {:.1}% {text:?}", w * 100.0);
    assert!(w <= 0.10, "WER {:.1}%: {text:?}", w * 100.0);

    let metrics = scrape(worker.metrics_addr).await;
    let caught_up =
        metric_value(&metrics, "voxbridge_stt_catch_up_audio_seconds_total").unwrap_or(0.0);
    let runs = metric_value(&metrics, "voxbridge_stt_inference_seconds_count").unwrap_or(0.0);
    let steps = samples.len() as f64 / 16_000.0;
    println!("{caught_up:.1} s of audio caught up; {runs} whisper runs for {steps:.1} s");
    assert!(caught_up >= steps / 2.0, "{metrics}");
    assert!(
        runs > 0.0 && runs < steps / 2.0,
        "{runs} runs for {steps:.1} s of audio"
    );
    shutdown.cancel();
}

/// Admission: a worker behind real time leaves a new session to a worker that keeps up, and
/// still takes it itself, after its grace period, when no other worker does.
#[tokio::test]
async fn a_worker_behind_real_time_leaves_new_sessions_to_a_worker_that_keeps_up() {
    let env = std::sync::Arc::new(TestEnv::new());
    let open =
        |session, realtime| voxbridge_tests::session_open(session, Some("eng_Latn"), &[], realtime);
    let active = |metrics: &str| metric_value(metrics, "voxbridge_stt_active_sessions");
    // A counts as behind as soon as its session has any lag.
    let a_down = CancellationToken::new();
    // (Both workers size the encoder to the audio, so that A keeps up and the two share the
    // cores without starving each other.)
    let a = start_stt_worker(
        &env,
        &[
            "--admit-behind-ms",
            "0",
            "--admit-grace-ms",
            "8000",
            "--audio-ctx-margin",
            "128",
        ],
        a_down.clone(),
    )
    .await;
    // Session 1, 44 s in real time, is A's.
    let jfk = read_wav(&audio_dir().join("jfk.wav"));
    let long: Vec<i16> = [&jfk, &jfk, &jfk, &jfk]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let t0 = tokio::time::Instant::now();
    let first = open(SessionId::new(), true);
    let feeder = tokio::spawn({
        let env = env.clone();
        let first = first.clone();
        async move { voxbridge_tests::publish_session(&env, &first, &long, 100, true).await }
    });
    voxbridge_tests::wait_for("A processes session 1", Duration::from_secs(60), || async {
        let m = scrape(a.metrics_addr).await;
        (metric_value(&m, "voxbridge_stt_audio_lag_seconds_count").unwrap_or(0.0) > 0.0)
            .then_some(())
    })
    .await;
    // Let the fetch A issued before it was behind expire (2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let short = read_wav(&audio_dir().join("en_01.wav"));
    let second = open(SessionId::new(), false);
    voxbridge_tests::publish_session(&env, &second, &short, 100, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = scrape(a.metrics_addr).await;
    assert_eq!(active(&m), Some(1.0), "A, behind, claimed session 2: {m}");
    assert!(
        metric_value(&m, "voxbridge_stt_claims_deferred_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    // B keeps up (no session yet): it takes session 2.
    let b_down = CancellationToken::new();
    let b = start_stt_worker(&env, &["--audio-ctx-margin", "128"], b_down.clone()).await;
    let events = transcript_events(&env, second.session_id, Duration::from_secs(120)).await;
    assert!(!final_texts(&events).is_empty());
    let mb = scrape(b.metrics_addr).await;
    assert!(
        metric_value(&mb, "voxbridge_stt_inference_seconds_count").unwrap_or(0.0) > 0.0,
        "B did not serve session 2: {mb}"
    );
    assert_eq!(active(&scrape(a.metrics_addr).await), Some(1.0));
    println!("session 2 served by B at {:?}", t0.elapsed());
    b_down.cancel();
    b.task.await.expect("B joins").expect("B drains");
    // B's last fetch (2 s) may outlive it: a claim it would take is lost to it until the
    // claim's ack wait ends.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A alone: it takes session 3 after the grace period although still behind, without
    // making it wait for session 1 to end.
    let third = open(SessionId::new(), false);
    voxbridge_tests::publish_session(&env, &third, &short, 100, false).await;
    let events = transcript_events(&env, third.session_id, Duration::from_secs(120)).await;
    assert!(!final_texts(&events).is_empty());
    println!("session 3 served by A at {:?}", t0.elapsed());
    assert!(
        !feeder.is_finished(),
        "session 3 waited for session 1's audio to end"
    );
    feeder.await.expect("feeder");
    let events = transcript_events(&env, first.session_id, Duration::from_secs(300)).await;
    assert_committed_text_never_changes(&events);
    assert!(!final_texts(&events).is_empty());
    a_down.cancel();
}

#[tokio::test]
async fn every_final_becomes_a_translation_request_per_target() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _worker = start_stt_worker(&env, &[], shutdown.clone()).await;
    let session = SessionId::new();
    let samples = read_wav(&audio_dir().join("en_01.wav"));
    stream_session(
        &env,
        session,
        Some("eng_Latn"),
        &["vie_Latn", "fra_Latn"],
        &samples,
        100,
        false,
    )
    .await;
    let events = transcript_events(&env, session, Duration::from_secs(600)).await;
    let finals = final_texts(&events);
    assert!(!finals.is_empty());
    let js = async_nats::jetstream::new(env.client().await);
    let mut mt = js
        .get_stream(
            env.namespace
                .stream(voxbridge_shared::subjects::streams::MT),
        )
        .await
        .expect("mt stream");
    let queued = mt.info().await.expect("info").state.messages as usize;
    assert_eq!(queued, finals.len() * 2, "one request per final and target");
    shutdown.cancel();
}

#[tokio::test]
async fn silence_yields_no_text() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let worker = start_stt_worker(&env, &[], shutdown.clone()).await;
    let session = SessionId::new();
    // Four seconds of digital silence, then four of low noise.
    let mut samples = vec![0i16; 16_000 * 4];
    let mut x: u32 = 12345;
    samples.extend((0..16_000 * 4).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        ((x >> 16) as i16) / 200
    }));
    stream_session(&env, session, Some("eng_Latn"), &[], &samples, 100, false).await;
    let events = transcript_events(&env, session, Duration::from_secs(600)).await;
    for event in &events {
        match event {
            TranscriptEvent::Partial(p) => panic!("text from silence: {p:?}"),
            TranscriptEvent::Final(f) => panic!("text from silence: {f:?}"),
            TranscriptEvent::Ended(e) => assert_eq!(e.final_count, 0),
            TranscriptEvent::Error(e) => panic!("unexpected error {e:?}"),
            TranscriptEvent::Claimed(c) => assert_eq!(c.delivery, 1),
        }
    }
    let metrics = scrape(worker.metrics_addr).await;
    assert_eq!(
        metric_value(&metrics, "voxbridge_stt_inference_seconds_count"),
        Some(0.0),
        "whisper ran on silence"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn malformed_audio_gives_error_events_and_the_session_survives() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let worker = start_stt_worker(&env, &[], shutdown.clone()).await;
    let session = SessionId::new();
    let js = async_nats::jetstream::new(env.client().await);
    // Garbage and an odd-length chunk arrive before the real audio.
    let subject = env.namespace.audio(&session);
    js.publish(subject.clone(), "not audio at all".into())
        .await
        .expect("pub")
        .await
        .expect("ack");
    let odd = AudioEvent::Chunk(AudioChunk {
        v: 1,
        session_id: session,
        seq: 0,
        offset_samples: 0,
        sample_rate_hz: 16_000,
        pcm: vec![1u8, 2, 3].into(),
        received_at_ms: now_unix_ms(),
    });
    js.publish(
        subject.clone(),
        voxbridge_shared::codec::encode(&odd).expect("enc").into(),
    )
    .await
    .expect("pub")
    .await
    .expect("ack");
    let wav = audio_dir().join("en_03.wav");
    stream_session(
        &env,
        session,
        Some("eng_Latn"),
        &[],
        &read_wav(&wav),
        100,
        false,
    )
    .await;
    let events = transcript_events(&env, session, Duration::from_secs(600)).await;
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::Error(e) => Some(e.error.code.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec!["malformed_audio", "malformed_audio"]);
    let text = final_texts(&events).join(" ");
    assert!(wer(&text, &reference_text(&wav)) <= 0.10, "{text:?}");
    let (status, _) = voxbridge_tests::http_get(&format!("http://{}/healthz", worker.metrics_addr))
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    let metrics = scrape(worker.metrics_addr).await;
    assert_eq!(
        metric_value(
            &metrics,
            "voxbridge_stt_malformed_messages_total{stream=\"AUDIO\"}"
        ),
        Some(1.0)
    );
    shutdown.cancel();
}

/// en_01, en_02 and en_03 with a second of silence between: three sentences.
fn three_sentences() -> Vec<i16> {
    let mut samples = Vec::new();
    for name in ["en_01", "en_02", "en_03"] {
        samples.extend(read_wav(&audio_dir().join(format!("{name}.wav"))));
        samples.extend(vec![0i16; 16_000]);
    }
    samples
}

/// Finals of `samples` streamed (faster than real time) to one in-process worker started with
/// `args`, uninterrupted: what a failover run must equal.
async fn uninterrupted_finals(env: &TestEnv, samples: &[i16], args: &[&str]) -> Vec<String> {
    let shutdown = CancellationToken::new();
    let steady = start_stt_worker(env, args, shutdown.clone()).await;
    let session = SessionId::new();
    stream_session(env, session, Some("eng_Latn"), &[], samples, 100, false).await;
    let finals = final_texts(&transcript_events(env, session, Duration::from_secs(600)).await);
    assert!(
        finals.len() >= 2,
        "need several finals to test failover: {finals:?}"
    );
    shutdown.cancel();
    let _ = steady.task.await;
    finals
}

/// Streams `samples` as `session` in real time (100 ms chunks) in a task of its own.
fn stream_in_background(
    env: &TestEnv,
    session: SessionId,
    samples: &[i16],
) -> tokio::task::JoinHandle<()> {
    let env = TestEnv {
        nats_url: env.nats_url.clone(),
        redis_url: String::new(),
        namespace: env.namespace.clone(),
        nats: None,
        redis: None,
        stream_replicas: 1,
    };
    let samples = samples.to_vec();
    tokio::spawn(async move {
        stream_session(&env, session, Some("eng_Latn"), &[], &samples, 100, true).await;
    })
}

/// Waits (up to 180 s) for the first transcript event of `session` that `wanted` accepts.
async fn wait_for_event(
    env: &TestEnv,
    session: SessionId,
    what: &str,
    wanted: impl Fn(&TranscriptEvent) -> bool,
) {
    use futures::StreamExt;
    let mut messages = voxbridge_tests::transcript_messages(env, session).await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(180), messages.next())
            .await
            .unwrap_or_else(|_| panic!("{what} within 180 s"))
            .expect("open")
            .expect("message");
        let event: TranscriptEvent = voxbridge_shared::codec::decode(&m.payload).expect("decode");
        if wanted(&event) {
            return;
        }
    }
}

/// (delivery, resumed from ms) of each `session.claimed` event.
fn claims(events: &[TranscriptEvent]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::Claimed(c) => Some((c.delivery, c.resumed_from_ms)),
            _ => None,
        })
        .collect()
}

/// What a failover run left: the worker process it interrupted, the worker that resumed the
/// session, and the session's events.
struct Failover {
    interrupted: voxbridge_tests::SttProcess,
    rescuer: voxbridge_stt::Running,
    shutdown: CancellationToken,
    events: Vec<TranscriptEvent>,
}

/// A failover run: a worker process takes a session of three sentences; after its first final
/// `interrupt` is applied to it; a second (in-process) worker resumes the session once the
/// claim expires, and then `resumed` is applied to the first. Asserts the finals equal an
/// uninterrupted run's — no gap, no duplicate — and that an undecodable message ahead of the
/// audio was reported once.
async fn failover(
    env: &TestEnv,
    interrupt: impl FnOnce(&mut voxbridge_tests::SttProcess),
    resumed: impl FnOnce(&mut voxbridge_tests::SttProcess),
) -> Failover {
    let samples = three_sentences();
    // What is tested is failover, not accuracy: the reduced encoder context keeps each run
    // cheap enough for slow CPUs (a full-window tiny.en run costs up to 10 s of a core there).
    let fast = ["--audio-ctx-margin", "128"];
    let reference = uninterrupted_finals(env, &samples, &fast).await;

    let mut first = voxbridge_tests::spawn_stt_process(env, &fast).await;
    let session = SessionId::new();
    // An undecodable message ahead of the audio: reported once, however many workers read it.
    let js = async_nats::jetstream::new(env.client().await);
    js.publish(env.namespace.audio(&session), "not audio".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let streamer = stream_in_background(env, session, &samples);
    wait_for_event(env, session, "a final", |e| {
        matches!(e, TranscriptEvent::Final(_))
    })
    .await;
    interrupt(&mut first);
    let interrupted_at = std::time::Instant::now();

    let shutdown = CancellationToken::new();
    let rescuer = start_stt_worker(env, &fast, shutdown.clone()).await;
    wait_for_event(
        env,
        session,
        "the rescuer's claim",
        |e| matches!(e, TranscriptEvent::Claimed(c) if c.delivery >= 2),
    )
    .await;
    println!(
        "resumed {:.1} s after the interruption (session ack wait here: 2 s)",
        interrupted_at.elapsed().as_secs_f64()
    );
    resumed(&mut first);

    streamer.await.expect("streamer");
    let events = transcript_events(env, session, Duration::from_secs(600)).await;
    let finals = final_texts(&events);
    println!("uninterrupted: {reference:?}\nwith failover: {finals:?}");
    assert_eq!(
        finals, reference,
        "the failover run must have no gap and no duplicate"
    );
    println!("claims (delivery, resumed from ms): {:?}", claims(&events));
    let errors = events
        .iter()
        .filter(|e| matches!(e, TranscriptEvent::Error(e) if e.error.code == "malformed_audio"))
        .count();
    assert_eq!(errors, 1, "the bad message was reported once");
    Failover {
        interrupted: first,
        rescuer,
        shutdown,
        events,
    }
}

#[tokio::test]
async fn a_killed_worker_is_replaced_without_losing_or_repeating_text() {
    let env = TestEnv::new();
    let run = failover(
        &env,
        |victim| {
            victim.child.kill().expect("SIGKILL");
            victim.child.wait().expect("reap");
        },
        |_| {},
    )
    .await;
    // Each claim told the session's clients who has it: the victim's first, the rescuer's on
    // a redelivery.
    let claims = claims(&run.events);
    assert_eq!(claims.first().map(|c| c.0), Some(1), "{claims:?}");
    assert!(claims.iter().any(|c| c.0 >= 2), "{claims:?}");
    // The rescuer read the session's audio on from where its checkpoint's buffer starts (a
    // stream sequence past the bad message), not from the start.
    let rescuer = scrape(run.rescuer.metrics_addr).await;
    let malformed = r#"voxbridge_stt_malformed_messages_total{stream="AUDIO"}"#;
    assert_eq!(metric_value(&rescuer, malformed).unwrap_or(0.0), 0.0);
    run.shutdown.cancel();
}

/// A worker that stops answering for longer than the session ack wait (here SIGSTOP: in real
/// life a stall, or a network cut) loses its claim to another worker. When it runs again it
/// still holds the session's state and would go on recognising and publishing beside its
/// successor; fencing (every checkpoint write names the revision the writer last wrote) makes
/// it give the session up at its next write instead, before publishing anything. The transcript
/// is then the same as an uninterrupted run's (checked by [`failover`]).
#[tokio::test]
async fn a_paused_worker_whose_session_was_taken_over_gives_it_up() {
    let env = TestEnv::new();
    let run = failover(
        &env,
        |worker| worker.signal("STOP"),
        |worker| worker.signal("CONT"),
    )
    .await;
    // The paused worker gave the session up (counted) and serves on.
    let paused = run.interrupted.metrics_addr;
    let given_up = voxbridge_tests::wait_for(
        "the paused worker to give the session up",
        Duration::from_secs(120),
        || async move {
            let metrics = scrape(paused).await;
            let taken = metric_value(&metrics, "voxbridge_stt_sessions_taken_over_total")?;
            let active = metric_value(&metrics, "voxbridge_stt_active_sessions")?;
            (taken >= 1.0 && active == 0.0).then_some(taken)
        },
    )
    .await;
    assert_eq!(given_up, 1.0);
    let mut interrupted = run.interrupted;
    assert!(
        interrupted.child.try_wait().expect("status").is_none(),
        "the paused worker must survive"
    );
    // (The rescuer normally keeps the session; if the paused worker's own fetch had been
    // handed the redelivered claim, it may take it back by the same rule: either is correct.)
    let rescued = scrape(run.rescuer.metrics_addr).await;
    println!(
        "sessions taken over from the rescuer: {:?}",
        metric_value(&rescued, "voxbridge_stt_sessions_taken_over_total")
    );
    run.shutdown.cancel();
}

/// A session that names no language: the multilingual base model detects it, the finals carry
/// it and the translation requests use it as their source.
#[tokio::test]
async fn the_language_is_detected_when_the_session_names_none() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let base = voxbridge_tests::model_mirror().join("whisper/ggml-base-q8_0.bin");
    let base = base.to_str().expect("utf-8 path");
    let _worker = start_stt_worker(&env, &["--model", base], shutdown.clone()).await;
    let session = SessionId::new();
    let samples = read_wav(&audio_dir().join("en_02.wav"));
    stream_session(&env, session, None, &["vie_Latn"], &samples, 100, false).await;
    let events = transcript_events(&env, session, Duration::from_secs(600)).await;
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TranscriptEvent::Final(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(!finals.is_empty(), "{events:?}");
    for f in &finals {
        assert_eq!(f.lang.as_deref(), Some("eng_Latn"), "{f:?}");
    }
    // The MT requests name the detected language as their source.
    let js = async_nats::jetstream::new(env.client().await);
    let stream = js
        .get_stream(
            env.namespace
                .stream(voxbridge_shared::subjects::streams::MT),
        )
        .await
        .expect("mt stream");
    let last = stream
        .get_last_raw_message_by_subject(&env.namespace.mt_request("vie_Latn"))
        .await
        .expect("an MT request");
    let request: voxbridge_shared::messages::MtRequest =
        voxbridge_shared::codec::decode(&last.payload).expect("request");
    assert_eq!(request.source_lang, "eng_Latn");
    shutdown.cancel();
}
