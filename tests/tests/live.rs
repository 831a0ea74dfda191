//! Live sessions through the edge's WebSocket (`/v1/live`), with real NATS, the real STT worker
//! (whisper tiny.en) and the real MT worker (nllb-tiny), on the recordings of `../shared/audio`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use voxbridge_shared::eval::wer;
use voxbridge_tests::live::{LiveClient, Received, final_texts};
use voxbridge_tests::{
    TestEnv, audio_dir, metric_value, read_wav, reference_text, scrape, start_edge,
    start_mt_worker, start_stt_worker, wait_for,
};

const LONG: Duration = Duration::from_secs(240);

/// An event without what differs between connections (numbering).
fn content(event: &Value) -> Value {
    let mut e = event.clone();
    if let Value::Object(map) = &mut e {
        map.remove("seq");
        map.remove("cursor");
    }
    e
}

/// Events split into (transcript events, translation events), each in its order.
fn by_stream(events: &[Value]) -> (Vec<Value>, Vec<Value>) {
    events
        .iter()
        .cloned()
        .partition(|e| e["type"] != "translation")
}

/// Partials of a segment only extend their stable text; a final extends the last stable text.
fn assert_committed_text_never_changes(events: &[Value]) {
    let mut stable = std::collections::HashMap::<String, String>::new();
    for e in events {
        let segment = e["segment_id"].as_str().unwrap_or_default().to_string();
        match e["type"].as_str() {
            Some("transcript.partial") => {
                let now = e["stable"].as_str().unwrap_or_default();
                let before = stable.entry(segment).or_default();
                assert!(
                    now.starts_with(before.as_str()),
                    "stable text changed: {before:?} -> {now:?}"
                );
                *before = now.to_string();
            }
            Some("transcript.final") => {
                let text = e["text"].as_str().unwrap_or_default();
                let before = stable.get(&segment).cloned().unwrap_or_default();
                assert!(
                    text.starts_with(&before),
                    "final {text:?} drops committed {before:?}"
                );
            }
            _ => {}
        }
    }
}

fn assert_numbered_from_one(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i + 1), "events numbered 1, 2, 3, …: {e}");
    }
}

/// Every final has exactly one translation per target.
fn assert_translation_per_final(events: &[Value], targets: &[&str]) {
    let finals: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "transcript.final")
        .collect();
    assert!(!finals.is_empty(), "no final: {events:#?}");
    for f in &finals {
        for target in targets {
            let n = events
                .iter()
                .filter(|e| {
                    e["type"] == "translation"
                        && e["segment_id"] == f["segment_id"]
                        && e["target"] == *target
                })
                .count();
            assert_eq!(n, 1, "translations into {target} of final {f}: {n}");
        }
    }
    for t in events.iter().filter(|e| e["type"] == "translation") {
        assert!(
            !t["text"].as_str().unwrap_or_default().is_empty(),
            "empty translation {t}"
        );
        assert!(
            t["index"].is_u64(),
            "translation without its final's index: {t}"
        );
    }
}

#[tokio::test]
async fn a_live_session_is_transcribed_and_every_final_translated() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &[], shutdown.clone()).await;

    let wav = audio_dir().join("jfk.wav");
    let samples = read_wav(&wav);
    let mut speaker = LiveClient::connect(edge.addr, None).await;
    speaker.start("en", &["vi", "fr"]).await;
    let ready = speaker.wait_for("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["role"], "speaker");
    assert_eq!(ready["targets"], json!(["vi", "fr"]));
    let listen_token = ready["listen_token"]
        .as_str()
        .expect("listen token")
        .to_string();

    // The other party joins while the speaker talks.
    let mut listener = LiveClient::connect(edge.addr, None).await;
    listener
        .send_json(json!({"type": "listen", "listen_token": listen_token}))
        .await;
    assert_eq!(
        listener.wait_for("ready", Duration::from_secs(10)).await["role"],
        "listener"
    );

    speaker.send_audio(&samples, 100, false).await;
    speaker.stop().await;
    let close = speaker.read_to_close(LONG).await;
    assert_eq!(close.as_ref().map(|c| c.0), Some(1000), "{close:?}");
    let listener_close = listener.read_to_close(LONG).await;
    assert_eq!(listener_close.map(|c| c.0), Some(1000));

    let events = &speaker.events;
    assert_numbered_from_one(events);
    assert_eq!(events.last().map(|e| e["type"].clone()), Some(json!("end")));
    assert!(speaker.of_type("error").is_empty(), "{events:#?}");
    assert!(
        !speaker.of_type("transcript.partial").is_empty(),
        "no partials"
    );
    assert_committed_text_never_changes(events);
    let text = final_texts(events).join(" ");
    let w = wer(&text, &reference_text(&wav));
    println!("jfk over /v1/live: WER {:.1}% {text:?}", w * 100.0);
    assert!(w <= 0.10, "WER {:.1}% > 10%: {text:?}", w * 100.0);
    assert_translation_per_final(events, &["vi", "fr"]);
    // The speaker was told it waits for a recogniser (right after `ready`), then that one took
    // the session, before any transcript.
    let states: Vec<(usize, &str)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["type"] == "status")
        .map(|(i, e)| (i, e["state"].as_str().unwrap_or_default()))
        .collect();
    let first_transcript = events
        .iter()
        .position(|e| e["type"] == "transcript.partial")
        .expect("a partial");
    assert_eq!(states.first(), Some(&(1, "waiting")), "{events:#?}");
    assert!(
        states
            .iter()
            .any(|&(i, state)| state == "recognising" && i < first_transcript),
        "{events:#?}"
    );
    // Its recogniser stayed: the edge, asking every second, never found it gone.
    assert!(
        events.iter().all(|e| e["reason"] != "recogniser_lost"),
        "{events:#?}"
    );

    // The listener saw the same session: the same finals and translations.
    let pick = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["type"] == "transcript.final" || e["type"] == "translation")
            .map(content)
            .collect()
    };
    assert_eq!(pick(&listener.events), pick(events));

    let metrics = scrape(edge.addr).await;
    for series in [
        "voxbridge_edge_live_first_partial_seconds_count",
        "voxbridge_edge_live_translation_latency_seconds_count",
        "voxbridge_edge_live_claim_wait_seconds_count",
    ] {
        assert!(
            metric_value(&metrics, series).unwrap_or(0.0) > 0.0,
            "{series}: {metrics}"
        );
    }
    assert_eq!(
        voxbridge_shared::metrics::naming_violations(&metrics),
        Vec::<String>::new()
    );
    shutdown.cancel();
}

/// A dropped connection resumed with its token and cursor loses no event and repeats none: the
/// speaker's events over both connections equal a full replay to a listener afterwards.
#[tokio::test]
async fn a_resumed_session_loses_and_repeats_nothing() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &["--token-secret", "resume-test"], shutdown.clone()).await;

    let samples = read_wav(&audio_dir().join("jfk.wav"));
    let (first, second) = samples.split_at(samples.len() / 2);
    let mut a = LiveClient::connect(edge.addr, None).await;
    a.start("en", &["vi"]).await;
    let ready = a.wait_for("ready", Duration::from_secs(10)).await;
    let resume_token = ready["resume_token"]
        .as_str()
        .expect("resume token")
        .to_string();
    let listen_token = ready["listen_token"]
        .as_str()
        .expect("listen token")
        .to_string();
    a.send_audio(first, 100, false).await;
    // Drop the connection once some transcript has arrived, without a close handshake.
    a.wait_for("transcript.partial", LONG).await;
    a.drain_ready().await;
    let cursor = a.cursor().expect("a cursor");
    let before = a.events.clone();
    a.abort();

    let mut b = LiveClient::connect(edge.addr, None).await;
    b.send_json(json!({"type": "start", "resume_token": resume_token, "cursor": cursor}))
        .await;
    let ready = b.wait_for("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["resumed"], true);
    assert_eq!(ready["session_id"], before[0]["session_id"]);
    assert!(ready["audio_ms"].as_u64().unwrap_or(0) > 0, "{ready}");
    b.send_audio(second, 100, false).await;
    b.stop().await;
    assert_eq!(b.read_to_close(LONG).await.map(|c| c.0), Some(1000));

    // Numbering continues across the reconnect.
    let all: Vec<Value> = before.iter().chain(b.events.iter()).cloned().collect();
    assert_numbered_from_one(&all);
    // `ready` and the "waiting for a recogniser" status belong to the connection, not the
    // session's stored events.
    let speaker: Vec<Value> = all
        .iter()
        .filter(|e| e["type"] != "ready" && e["state"] != "waiting")
        .map(content)
        .collect();

    let mut replay = LiveClient::connect(edge.addr, None).await;
    replay
        .send_json(json!({"type": "listen", "listen_token": listen_token}))
        .await;
    assert_eq!(replay.read_to_close(LONG).await.map(|c| c.0), Some(1000));
    let full: Vec<Value> = replay
        .events
        .iter()
        .filter(|e| e["type"] != "ready")
        .map(content)
        .collect();
    // Transcripts and translations are two streams: each is in order, but how a translation
    // interleaves with later partials depends on when it was made.
    assert_eq!(
        by_stream(&speaker),
        by_stream(&full),
        "the speaker's events differ from a full replay"
    );
    assert!(!final_texts(&full).is_empty());
    assert_translation_per_final(&replay.events, &["vi"]);
    shutdown.cancel();
}

/// With no recogniser running, a new session is told it waits, and its audio is kept: a
/// recogniser started later claims it, says so, and transcribes all of it.
#[tokio::test]
async fn a_session_waits_for_a_recogniser_and_its_audio_is_kept() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(&env, &[], shutdown.clone()).await;

    let wav = audio_dir().join("jfk.wav");
    let mut speaker = LiveClient::connect(edge.addr, None).await;
    speaker
        .send_json(json!({"type": "start", "source": "en", "targets": [], "realtime": false}))
        .await;
    speaker.wait_for("ready", Duration::from_secs(10)).await;
    let status = speaker.wait_for("status", Duration::from_secs(10)).await;
    assert_eq!(status["state"], "waiting", "{status}");
    speaker.send_audio(&read_wav(&wav), 100, false).await;
    // Nobody claims it: no news for a while.
    assert!(
        speaker.next(Duration::from_secs(2)).await.is_none(),
        "{:#?}",
        speaker.events
    );

    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let status = speaker.wait_for("status", Duration::from_secs(30)).await;
    assert_eq!(status["state"], "recognising", "{status}");
    assert_eq!(status["resumed_from_ms"], 0);
    assert_eq!(status["delivery"], 1);
    speaker.stop().await;
    assert_eq!(speaker.read_to_close(LONG).await.map(|c| c.0), Some(1000));
    let text = final_texts(&speaker.events).join(" ");
    let w = wer(&text, &reference_text(&wav));
    assert!(w <= 0.10, "WER {:.1}% > 10%: {text:?}", w * 100.0);

    let metrics = scrape(edge.addr).await;
    let waited = metric_value(&metrics, "voxbridge_edge_live_claim_wait_seconds_sum");
    assert!(waited.is_some_and(|s| s >= 2.0), "{waited:?}");
    shutdown.cancel();
}

/// A session of jfk.wav through `edge`, its recogniser a worker process; returns once the
/// first final arrived (the test then interrupts the worker).
async fn speaker_past_its_first_final(
    env: &TestEnv,
    edge: std::net::SocketAddr,
) -> (voxbridge_tests::SttProcess, LiveClient) {
    let victim = voxbridge_tests::spawn_stt_process(env, &[]).await;
    let mut speaker = LiveClient::connect(edge, None).await;
    speaker.start("en", &[]).await;
    speaker.wait_for("ready", Duration::from_secs(10)).await;
    speaker
        .send_audio(&read_wav(&audio_dir().join("jfk.wav")), 100, false)
        .await;
    speaker.wait_for("transcript.final", LONG).await;
    (victim, speaker)
}

/// Stops the session and asserts it got all of jfk's words: losing one of its four sentences
/// costs at least 30 % WER; that the text equals an uninterrupted run's exactly is the STT
/// failover test's (tests/stt.rs).
async fn assert_all_words(mut speaker: LiveClient, what: &str) {
    speaker.stop().await;
    assert_eq!(speaker.read_to_close(LONG).await.map(|c| c.0), Some(1000));
    let text = final_texts(&speaker.events).join(" ");
    let w = wer(&text, &reference_text(&audio_dir().join("jfk.wav")));
    println!("{what}: {text:?} (WER {:.1}%)", w * 100.0);
    assert!(w <= 0.20, "WER {:.1}% > 20%: {text:?}", w * 100.0);
}

/// A recogniser process killed mid-session: its speaker is told at once that the session waits
/// again (before any other recogniser has it: none runs), then that another one resumed it, and
/// gets all its words.
#[tokio::test]
async fn the_speaker_is_told_when_its_recogniser_dies_and_when_another_resumes() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let (mut victim, mut speaker) = speaker_past_its_first_final(&env, edge.addr).await;
    victim.child.kill().expect("SIGKILL");
    victim.child.wait().expect("reap");

    let lost = speaker.wait_for("status", Duration::from_secs(60)).await;
    assert_eq!(lost["state"], "waiting", "{lost}");
    assert_eq!(lost["reason"], "recogniser_lost", "{lost}");
    assert_eq!(lost["delivery"], 1, "{lost}");
    let metrics = scrape(edge.addr).await;
    assert_eq!(
        metric_value(&metrics, "voxbridge_edge_live_recognisers_lost_total"),
        Some(1.0)
    );

    let _rescuer = start_stt_worker(&env, &[], shutdown.clone()).await;
    let resumed = speaker.wait_for("status", Duration::from_secs(60)).await;
    assert_eq!(resumed["state"], "recognising", "{resumed}");
    assert_eq!(resumed["delivery"], 2, "{resumed}");
    assert_all_words(speaker, "with failover").await;
    shutdown.cancel();
}

/// A recogniser process that stops answering (SIGSTOP: in real life a stall or a network cut
/// that leaves its connection open) is not gone — NATS still routes to it — but its speaker is
/// told within seconds that it does not answer, and again when it answers (or another resumes)
/// and the session gets all its words.
#[tokio::test]
async fn the_speaker_is_told_when_its_recogniser_stops_answering() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let (victim, mut speaker) = speaker_past_its_first_final(&env, edge.addr).await;
    victim.signal("STOP");

    let stalled = speaker.wait_for("status", Duration::from_secs(30)).await;
    victim.signal("CONT");
    assert_eq!(stalled["state"], "waiting", "{stalled}");
    assert_eq!(stalled["reason"], "recogniser_unresponsive", "{stalled}");
    let metrics = scrape(edge.addr).await;
    for (counter, value) in [
        ("voxbridge_edge_live_recognisers_unresponsive_total", 1.0),
        ("voxbridge_edge_live_recognisers_lost_total", 0.0),
    ] {
        assert_eq!(metric_value(&metrics, counter), Some(value), "{counter}");
    }

    // It answers again, or has been given the session again (its claim lapsed meanwhile).
    let back = speaker.wait_for("status", Duration::from_secs(30)).await;
    assert_eq!(back["state"], "recognising", "{back}");
    assert_all_words(speaker, "with a stall").await;
    shutdown.cancel();
}

/// The last audio event the edge stored for `session`.
async fn last_audio_event(
    env: &TestEnv,
    session: voxbridge_shared::SessionId,
) -> voxbridge_shared::messages::AudioEvent {
    let js = async_nats::jetstream::new(env.client().await);
    let stream = js
        .get_stream(
            env.namespace
                .stream(voxbridge_shared::subjects::streams::AUDIO),
        )
        .await
        .expect("audio stream");
    let last = stream
        .get_last_raw_message_by_subject(&env.namespace.audio(&session))
        .await
        .expect("audio stored");
    voxbridge_shared::codec::decode(&last.payload).expect("audio event")
}

/// Bad input gets error events and the session goes on; auth and limits refuse cleanly.
#[tokio::test]
async fn bad_frames_errors_and_limits() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(
        &env,
        &[
            "--api-keys",
            "k1,k2",
            "--max-sessions-per-key",
            "1",
            "--max-frame-bytes",
            "3200",
        ],
        shutdown.clone(),
    )
    .await;

    // No key, a wrong key.
    for key in [None, Some("nope")] {
        let mut c = LiveClient::connect(edge.addr, key).await;
        c.start("en", &["vi"]).await;
        let error = c.wait_for("error", Duration::from_secs(10)).await;
        assert_eq!(error["code"], "unauthorized");
        assert_eq!(error["fatal"], true);
        assert_eq!(
            c.read_to_close(Duration::from_secs(10)).await.map(|c| c.0),
            Some(1008)
        );
    }
    // Unknown language.
    let mut c = LiveClient::connect(edge.addr, Some("k2")).await;
    c.start("en", &["xx-Nope"]).await;
    assert_eq!(
        c.wait_for("error", Duration::from_secs(10)).await["code"],
        "unknown_language"
    );
    assert_eq!(
        c.read_to_close(Duration::from_secs(10)).await.map(|c| c.0),
        Some(1008)
    );

    // A good session with a key, and bad frames inside it.
    let mut s = LiveClient::connect(edge.addr, Some("k1")).await;
    s.start("en", &["vi"]).await;
    let ready = s.wait_for("ready", Duration::from_secs(10)).await;
    assert_eq!(ready["max_frame_bytes"], 3200);
    let session = ready["session_id"].as_str().expect("id").to_string();
    s.send_binary(vec![0u8; 320]).await; // 10 ms: fine
    s.send_binary(vec![0u8; 321]).await; // odd length
    s.send_binary(vec![0u8; 4000]).await; // too large
    s.send_json(json!({"type": "dance"})).await;
    s.send_binary(b"not json".to_vec()).await; // even length: accepted as audio
    s.send_json(json!({"type": "start", "source": "en"})).await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(s.wait_for("error", Duration::from_secs(10)).await["code"].clone());
    }
    assert_eq!(
        codes,
        [
            json!("bad_frame"),
            json!("frame_too_large"),
            json!("bad_frame"),
            json!("protocol")
        ]
    );
    assert!(s.of_type("error").iter().all(|e| e["fatal"] == false));

    // The key's one session is taken.
    let mut t = LiveClient::connect(edge.addr, Some("k1")).await;
    t.start("en", &[]).await;
    assert_eq!(
        t.wait_for("error", Duration::from_secs(10)).await["code"],
        "too_many_sessions"
    );
    assert_eq!(
        t.read_to_close(Duration::from_secs(10)).await.map(|c| c.0),
        Some(1008)
    );

    // Only the two good frames reached the audio stream, contiguous.
    match last_audio_event(&env, session.parse().expect("session id")).await {
        voxbridge_shared::messages::AudioEvent::Chunk(c) => {
            assert_eq!((c.seq, c.offset_samples, c.samples()), (1, 160, 4));
        }
        other => panic!("{other:?}"),
    }

    // A listener cannot send audio; a forged or wrong-role token is refused.
    let listen_token = ready["listen_token"].as_str().expect("token").to_string();
    let mut l = LiveClient::connect(edge.addr, None).await;
    l.send_json(json!({"type": "listen", "listen_token": listen_token}))
        .await;
    l.wait_for("ready", Duration::from_secs(10)).await;
    l.send_binary(vec![0u8; 320]).await;
    assert_eq!(
        l.wait_for("error", Duration::from_secs(10)).await["code"],
        "protocol"
    );
    let mut r = LiveClient::connect(edge.addr, Some("k2")).await;
    r.send_json(json!({"type": "start", "resume_token": listen_token}))
        .await;
    assert_eq!(
        r.wait_for("error", Duration::from_secs(10)).await["code"],
        "unauthorized"
    );

    // Closing the session frees the key's slot.
    drop(s);
    let addr = edge.addr;
    wait_for("slot freed", Duration::from_secs(10), move || async move {
        let mut c = LiveClient::connect(addr, Some("k1")).await;
        c.start("en", &[]).await;
        match c.next(Duration::from_secs(5)).await {
            Some(Received::Event(e)) if e["type"] == "ready" => Some(()),
            _ => None,
        }
    })
    .await;
    shutdown.cancel();
}

/// A client that does not read its events is closed with 1013 once its queue is full; other
/// connections are unaffected.
#[tokio::test]
async fn a_client_too_slow_to_read_is_closed_with_1013() {
    use voxbridge_edge::tokens::{Claims, Role, TokenKey};
    use voxbridge_shared::messages::{TranscriptEvent, TranscriptPartial, now_unix_ms};
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(
        &env,
        &["--token-secret", "slow", "--send-queue", "32"],
        shutdown.clone(),
    )
    .await;
    // A session with far more (and bigger) events than socket buffers hold.
    let session = voxbridge_shared::SessionId::new();
    let js = async_nats::jetstream::new(env.client().await);
    let segment = voxbridge_shared::SegmentId::new();
    let filler = "word ".repeat(400);
    let mut acks = Vec::new();
    for revision in 0..20_000u32 {
        let event = TranscriptEvent::Partial(TranscriptPartial {
            v: 1,
            session_id: session,
            segment_id: segment,
            revision,
            stable_text: String::new(),
            unstable_text: filler.clone(),
            start_ms: 0,
            end_ms: 1000,
            emitted_at_ms: now_unix_ms(),
        });
        let payload = voxbridge_shared::codec::encode(&event).expect("encode");
        acks.push(
            js.publish(env.namespace.transcript(&session), payload.into())
                .await
                .expect("publish"),
        );
        if acks.len() >= 512 {
            for ack in acks.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored");
    }
    let token = TokenKey::new(b"slow").sign(&Claims {
        session_id: session,
        role: Role::Listener,
        source: Some("en".into()),
        targets: vec![],
    });
    let mut slow = LiveClient::connect(edge.addr, None).await;
    slow.send_json(json!({"type": "listen", "listen_token": token}))
        .await;
    // Do not read for a while.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let close = slow.read_to_close(Duration::from_secs(60)).await;
    assert_eq!(close.as_ref().map(|c| c.0), Some(1013), "{close:?}");
    assert!(
        slow.events.len() < 20_000,
        "every event fitted; the test proves nothing"
    );
    let metrics = scrape(edge.addr).await;
    assert_eq!(
        metric_value(&metrics, "voxbridge_edge_live_slow_client_closes_total"),
        Some(1.0)
    );
    // The edge still serves others.
    let mut other = LiveClient::connect(edge.addr, None).await;
    other.start("en", &[]).await;
    other.wait_for("ready", Duration::from_secs(10)).await;
    shutdown.cancel();
}

/// On shutdown every live connection is closed with 1001 (resume elsewhere).
#[tokio::test]
async fn shutdown_closes_sessions_with_1001() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = LiveClient::connect(edge.addr, None).await;
        c.start("en", &["vi"]).await;
        c.wait_for("ready", Duration::from_secs(10)).await;
        c.send_binary(vec![0u8; 3200]).await;
        clients.push(c);
    }
    shutdown.cancel();
    for mut c in clients {
        let close = c.read_to_close(Duration::from_secs(20)).await;
        assert_eq!(close.as_ref().map(|c| c.0), Some(1001), "{close:?}");
    }
    tokio::time::timeout(Duration::from_secs(20), edge.task)
        .await
        .expect("edge stops")
        .expect("join")
        .expect("clean exit");
}

/// A session over its maximum length ends: the close marker is stored with the reason, the
/// client is told, and further audio is refused.
#[tokio::test]
async fn a_session_over_its_maximum_length_ends() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let edge = start_edge(&env, &["--max-session-s", "1"], shutdown.clone()).await;
    let mut c = LiveClient::connect(edge.addr, None).await;
    c.start("en", &[]).await;
    let ready = c.wait_for("ready", Duration::from_secs(10)).await;
    let session: voxbridge_shared::SessionId = ready["session_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("session id");
    // Two frames of 0.5 s fit in 1 s, a third does not.
    for _ in 0..3 {
        c.send_binary(vec![0u8; 16_000]).await;
    }
    let error = c.wait_for("error", Duration::from_secs(10)).await;
    assert_eq!(error["code"], "session_too_long");
    c.send_binary(vec![0u8; 320]).await;
    assert_eq!(
        c.wait_for("error", Duration::from_secs(10)).await["code"],
        "protocol"
    );
    match last_audio_event(&env, session).await {
        voxbridge_shared::messages::AudioEvent::Close(close) => {
            assert_eq!(
                close.reason,
                voxbridge_shared::messages::CloseReason::MaxDuration
            );
            assert_eq!(close.final_offset_samples, 16_000);
        }
        other => panic!("{other:?}"),
    }
    shutdown.cancel();
}

/// `voxctl record` keeps a session's references beside its audio; `voxctl replay` streams that
/// audio back through the workers as a new session and gets the same final transcript (the STT
/// policy is deterministic in audio time); `--from` replays a part only; an unknown session is
/// a clear error.
#[tokio::test]
async fn a_recorded_session_replays_to_the_same_final_transcript() {
    use voxctl::live::Speed;
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let url = format!("ws://{}/v1/live", edge.addr);
    let nats = env.nats_config();
    let wav = audio_dir().join("jfk.wav");

    let record = voxctl::record::RecordArgs {
        file: wav.clone(),
        reference: Some(wav.with_extension("txt")),
        ref_translations: Vec::new(),
        edge: voxctl::live::EdgeArgs {
            url: url.clone(),
            api_key: None,
        },
        source: "en".into(),
        targets: vec!["vi".into()],
        speed: Speed::Max,
        json: false,
    };
    let recorded = voxctl::record::record(&nats, &record)
        .await
        .expect("record");
    assert_eq!(recorded.exit_code, 0, "{recorded:?}");
    assert!(!recorded.finals.is_empty(), "{recorded:?}");
    let wer = recorded.wer.expect("a reference was given");
    assert!(wer <= 10.0, "WER {wer:.1} %: {recorded:?}");
    let kv = voxctl::record::recordings_bucket(&nats).await.expect("kv");
    let stored = voxctl::record::load(&kv, recorded.session_id)
        .await
        .expect("read")
        .expect("recording stored");
    assert_eq!(stored.file_name, "jfk.wav");
    assert_eq!(stored.targets, vec!["vi".to_string()]);
    assert_eq!(stored.reference.as_deref(), Some(&*reference_text(&wav)));
    assert_eq!(stored.audio_ms, read_wav(&wav).len() as u64 / 16);

    let mut replay = voxctl::replay::ReplayArgs {
        session: recorded.session_id,
        speed: Speed::Max,
        from: None,
        edge: voxctl::live::EdgeArgs {
            url: url.clone(),
            api_key: None,
        },
        source: None,
        targets: None,
        expect_same: true,
        json: false,
    };
    let replayed = voxctl::replay::replay(&nats, &replay)
        .await
        .expect("replay");
    assert_eq!(replayed.exit_code, 0, "{replayed:?}");
    assert!(replayed.original_closed);
    assert_eq!(replayed.gap_ms, 0);
    assert_eq!(replayed.audio_ms, stored.audio_ms);
    assert_ne!(replayed.replay_session, Some(recorded.session_id));
    assert_eq!(replayed.original_finals, recorded.finals);
    assert_eq!(replayed.finals, recorded.finals, "{replayed:?}");
    assert_eq!(replayed.same_as_original, Some(true));
    assert_eq!(replayed.replay_wer, replayed.original_wer);

    // A part, through the command line.
    let out = tokio::process::Command::new(voxbridge_tests::bin_path("voxctl"))
        .args(["--nats-url", &env.nats_url, "--namespace"])
        .arg(env.namespace.prefix())
        .args(["replay", &recorded.session_id.to_string(), "--from", "0:05"])
        .args(["--speed", "max", "--json", "--url", &url])
        .output()
        .await
        .expect("run voxctl replay");
    assert!(out.status.success(), "{out:?}");
    let part: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(part["from_ms"], 5000);
    assert_eq!(part["audio_ms"], stored.audio_ms - 5000);
    assert_eq!(part["same_as_original"], Value::Null);
    let part_finals = part["finals"].as_array().expect("finals").len();
    assert!(part_finals > 0, "{part}");

    replay.session = voxbridge_shared::SessionId::new();
    let error = voxctl::replay::replay(&nats, &replay)
        .await
        .expect_err("unknown session");
    assert!(error.to_string().contains("no audio stored"), "{error:#}");
    shutdown.cancel();
}

/// `voxctl eval` on a set of two recordings with reference transcripts and Vietnamese reference
/// translations, through the real pipeline at full speed: the report's numbers are the shared
/// metrics applied to what the sessions produced, the three files are written, and `--compare`
/// passes against itself and fails against a report that was better.
#[tokio::test]
async fn eval_reports_a_set_and_compares_with_an_earlier_report() {
    let env = TestEnv::new();
    let shutdown = CancellationToken::new();
    let _stt = start_stt_worker(&env, &[], shutdown.clone()).await;
    let _mt = start_mt_worker(&env, &[], shutdown.clone()).await;
    let edge = start_edge(&env, &[], shutdown.clone()).await;
    let url = format!("ws://{}/v1/live", edge.addr);
    let set = tempfile::tempdir().expect("tmp");
    let references = voxbridge_tests::workspace_root().join("tests/fixtures/eval-set");
    for name in ["jfk", "en_02"] {
        for (from, to) in [
            (
                audio_dir().join(format!("{name}.wav")),
                format!("{name}.wav"),
            ),
            (
                audio_dir().join(format!("{name}.txt")),
                format!("{name}.txt"),
            ),
            (
                references.join(format!("{name}.vi.txt")),
                format!("{name}.vi.txt"),
            ),
        ] {
            std::fs::copy(&from, set.path().join(to)).expect("copy case file");
        }
    }
    let out = tempfile::tempdir().expect("tmp");
    let eval = |dir: &str, extra: &[&str]| {
        let mut command = tokio::process::Command::new(voxbridge_tests::bin_path("voxctl"));
        command
            .arg("eval")
            .arg(set.path())
            .args(["--url", &url, "--speed", "max", "--out"])
            .arg(out.path().join(dir))
            .args(extra);
        command
    };
    let first = eval("first", &[]).output().await.expect("run voxctl eval");
    assert!(first.status.success(), "{first:?}");
    let report: Value = serde_json::from_slice(
        &std::fs::read(out.path().join("first/report.json")).expect("report.json"),
    )
    .expect("json");
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let hypothesis = case["hypothesis"].as_str().expect("hypothesis");
        let reference = case["reference"].as_str().expect("reference");
        assert!(!hypothesis.is_empty(), "{case}");
        let expected = wer(hypothesis, reference);
        assert!((case["wer"].as_f64().expect("wer") - expected).abs() < 1e-9);
        assert!(expected <= 0.10, "{case}");
        let vi = &case["translations"]["vi"];
        assert!(
            !vi["hypothesis"].as_str().unwrap_or_default().is_empty(),
            "{case}"
        );
        assert!(vi["bleu"].as_f64().is_some() && vi["chrf_plus_plus"].as_f64().is_some());
        assert!(case["final_latency"]["p50"].as_f64().is_some(), "{case}");
    }
    assert!(report["overall"]["translations"]["vi"]["bleu"].is_number());
    let markdown = std::fs::read_to_string(out.path().join("first/report.md")).expect("md");
    assert!(
        markdown.contains("jfk") && markdown.contains("en_02"),
        "{markdown}"
    );
    let svg = std::fs::read_to_string(out.path().join("first/latency.svg")).expect("svg");
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg"),
        "not an SVG"
    );

    // The same system again: no regression (latency on a shared CI machine is not the point).
    let old = out.path().join("first/report.json");
    let old = old.to_str().expect("utf-8");
    let again = eval(
        "again",
        &["--compare", old, "--max-latency-increase", "100"],
    )
    .output()
    .await
    .expect("run voxctl eval --compare");
    assert_eq!(again.status.code(), Some(0), "{again:?}");

    // Against a report whose chrF++ was 30 points higher: a regression, exit code 2.
    let mut better = report.clone();
    let chrf = better["overall"]["translations"]["vi"]["chrf_plus_plus"]
        .as_f64()
        .expect("chrF++");
    better["overall"]["translations"]["vi"]["chrf_plus_plus"] = json!(chrf + 30.0);
    let better_path = out.path().join("better.json");
    std::fs::write(&better_path, serde_json::to_vec(&better).expect("json")).expect("write");
    let worse = eval(
        "worse",
        &[
            "--compare",
            better_path.to_str().expect("utf-8"),
            "--max-latency-increase",
            "100",
        ],
    )
    .output()
    .await
    .expect("run voxctl eval --compare");
    assert_eq!(worse.status.code(), Some(2), "{worse:?}");
    shutdown.cancel();
}
