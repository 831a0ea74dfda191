//! The JetStream topology against a real server: creation is idempotent, every message type goes
//! through its real stream and decodes, work queues deliver once, unacked work comes back.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use bytes::Bytes;
use futures::StreamExt;
use voxbridge_shared::codec::{decode, encode};
use voxbridge_shared::messages::*;
use voxbridge_shared::subjects::{buckets, consumers, streams};
use voxbridge_shared::topology::{Topology, ensure_topology};
use voxbridge_shared::{JobId, RequestId, SegmentId, SessionId};
use voxbridge_tests::TestEnv;

async fn setup(env: &TestEnv) -> (jetstream::Context, Topology) {
    let js = jetstream::new(env.client().await);
    let topology = Topology::new(&env.namespace, &env.settings());
    ensure_topology(&js, &topology)
        .await
        .expect("ensure topology");
    (js, topology)
}

#[tokio::test]
async fn topology_creation_is_idempotent() {
    let env = TestEnv::new();
    let (js, topology) = setup(&env).await;
    // Twice more, including from a second connection: no error, nothing duplicated or reset.
    ensure_topology(&js, &topology)
        .await
        .expect("second ensure");
    let js2 = jetstream::new(env.client().await);
    ensure_topology(&js2, &topology)
        .await
        .expect("third ensure");

    for base in streams::ALL {
        let name = env.namespace.stream(base);
        let mut stream = js.get_stream(&name).await.expect("stream exists");
        let info = stream.info().await.expect("info");
        assert_eq!(
            info.config.subjects,
            vec![env.namespace.stream_subject(base)]
        );
    }
    let mut names = Vec::new();
    for def in &topology.consumers {
        let stream = js
            .get_stream(env.namespace.stream(def.stream))
            .await
            .expect("stream");
        let mut consumer: PullConsumer = stream
            .get_consumer(def.config.durable_name.as_deref().expect("durable"))
            .await
            .expect("consumer exists");
        let info = consumer.info().await.expect("consumer info");
        assert_eq!(info.config.ack_wait, def.config.ack_wait);
        assert_eq!(info.config.max_deliver, def.config.max_deliver);
        names.push(info.name.clone());
    }
    assert_eq!(names.len(), 4);
    js.get_key_value(env.namespace.bucket(buckets::JOBS))
        .await
        .expect("jobs KV");
    js.get_key_value(env.namespace.bucket(buckets::STT_CHECKPOINTS))
        .await
        .expect("checkpoint KV");
    js.get_key_value(env.namespace.bucket(buckets::RECORDINGS))
        .await
        .expect("recordings KV");
    js.get_object_store(env.namespace.bucket(buckets::FILES))
        .await
        .expect("object store");

    // A stored message survives a re-ensure (no stream was recreated).
    let subject = env.namespace.audio(&SessionId::new());
    js.publish(subject, Bytes::from_static(b"x"))
        .await
        .expect("publish")
        .await
        .expect("ack");
    ensure_topology(&js, &topology)
        .await
        .expect("fourth ensure");
    let mut audio = js
        .get_stream(env.namespace.stream(streams::AUDIO))
        .await
        .expect("audio");
    assert_eq!(audio.info().await.expect("info").state.messages, 1);
}

/// Publishes `payload` on `subject` and reads it back from the stream by sequence.
async fn round_trip(
    js: &jetstream::Context,
    stream: &str,
    subject: String,
    payload: Vec<u8>,
) -> Bytes {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        ulid::Ulid::new().to_string().as_str(),
    );
    let ack = js
        .publish_with_headers(subject.clone(), headers, payload.into())
        .await
        .expect("publish")
        .await
        .unwrap_or_else(|e| panic!("no stream took {subject}: {e}"));
    assert_eq!(ack.stream, stream, "{subject} landed in the wrong stream");
    let stream = js.get_stream(stream).await.expect("stream");
    let stored = stream
        .get_raw_message(ack.sequence)
        .await
        .expect("stored message");
    assert_eq!(stored.subject.as_str(), subject);
    stored.payload
}

#[tokio::test]
async fn every_message_type_goes_through_its_stream_and_decodes() {
    let env = TestEnv::new();
    let (js, _) = setup(&env).await;
    let ns = &env.namespace;
    let session = SessionId::new();
    let now = now_unix_ms();

    let open = SessionOpen {
        v: 1,
        session_id: session,
        source_lang: Some("eng_Latn".into()),
        target_langs: vec!["vie_Latn".into()],
        sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
        opened_at_ms: now,
        client: None,
        realtime: true,
    };
    let got = round_trip(
        &js,
        &ns.stream(streams::SESSIONS),
        ns.session_open(),
        encode(&open).expect("enc"),
    )
    .await;
    assert_eq!(decode::<SessionOpen>(&got).expect("dec"), open);

    let chunk = AudioEvent::Chunk(AudioChunk {
        v: 1,
        session_id: session,
        seq: 0,
        offset_samples: 0,
        sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
        pcm: Bytes::from(vec![1u8; 3200]),
        received_at_ms: now,
    });
    let close = AudioEvent::Close(SessionClose {
        v: 1,
        session_id: session,
        reason: CloseReason::ClientStop,
        final_offset_samples: 1600,
        closed_at_ms: now,
    });
    for event in [chunk, close] {
        let got = round_trip(
            &js,
            &ns.stream(streams::AUDIO),
            ns.audio(&session),
            encode(&event).expect("enc"),
        )
        .await;
        assert_eq!(decode::<AudioEvent>(&got).expect("dec"), event);
    }

    let segment = SegmentId::new();
    let partial = TranscriptEvent::Partial(TranscriptPartial {
        v: 1,
        session_id: session,
        segment_id: segment,
        revision: 0,
        stable_text: "hello".into(),
        unstable_text: "wor".into(),
        start_ms: 0,
        end_ms: 900,
        emitted_at_ms: now,
    });
    let fin = TranscriptEvent::Final(TranscriptFinal {
        v: 1,
        session_id: session,
        segment_id: segment,
        index: 0,
        text: "hello world".into(),
        lang: Some("eng_Latn".into()),
        start_ms: 0,
        end_ms: 1200,
        words: vec![],
        emitted_at_ms: now,
    });
    let error = ErrorEvent {
        v: 1,
        session_id: Some(session),
        job_id: None,
        error: ErrorInfo {
            code: "malformed_audio".into(),
            message: "odd length".into(),
        },
        component: "stt".into(),
        emitted_at_ms: now,
    };
    for event in [partial, fin, TranscriptEvent::Error(error.clone())] {
        let got = round_trip(
            &js,
            &ns.stream(streams::TRANSCRIPTS),
            ns.transcript(&session),
            encode(&event).expect("enc"),
        )
        .await;
        assert_eq!(decode::<TranscriptEvent>(&got).expect("dec"), event);
    }

    let request = MtRequest {
        v: 1,
        request_id: RequestId::new(),
        texts: vec!["hello world".into()],
        source_lang: "eng_Latn".into(),
        target_lang: "vie_Latn".into(),
        reply_subject: ns.translation(&session),
        session_id: Some(session),
        segment_id: Some(segment),
        deadline_ms: None,
        enqueued_at_ms: now,
    };
    let got = round_trip(
        &js,
        &ns.stream(streams::MT),
        ns.mt_request("vie_Latn"),
        encode(&request).expect("enc"),
    )
    .await;
    assert_eq!(decode::<MtRequest>(&got).expect("dec"), request);

    let result = MtResult {
        v: 1,
        request_id: request.request_id,
        session_id: Some(session),
        segment_id: Some(segment),
        source_lang: "eng_Latn".into(),
        target_lang: "vie_Latn".into(),
        translations: vec!["xin chào".into()],
        error: None,
        model: None,
        cached: vec![false],
        completed_at_ms: now,
    };
    let got = round_trip(
        &js,
        &ns.stream(streams::TRANSLATIONS),
        ns.translation(&session),
        encode(&result).expect("enc"),
    )
    .await;
    assert_eq!(decode::<MtResult>(&got).expect("dec"), result);

    let job = JobSpec {
        v: 1,
        job_id: JobId::new(),
        kind: JobKind::Subtitles,
        input_object: "in/x.srt".into(),
        file_name: "x.srt".into(),
        source_lang: None,
        target_langs: vec!["vie_Latn".into()],
        output_format: None,
        content_hash: "abc".into(),
        submitted_at_ms: now,
    };
    let got = round_trip(
        &js,
        &ns.stream(streams::JOBS),
        ns.job(JobKind::Subtitles),
        encode(&job).expect("enc"),
    )
    .await;
    assert_eq!(decode::<JobSpec>(&got).expect("dec"), job);

    // Job status lives in the KV bucket; progress is a core-NATS event.
    let status = JobStatus {
        v: 1,
        job_id: job.job_id,
        state: JobState::Queued,
        progress: 0.0,
        message: None,
        error: None,
        result_objects: vec![],
        updated_at_ms: now,
        kind: None,
        file_name: None,
        source_lang: None,
        target_langs: vec![],
        submitted_at_ms: None,
        results: vec![],
        attempts: 0,
    };
    let kv = js
        .get_key_value(ns.bucket(buckets::JOBS))
        .await
        .expect("kv");
    kv.put(job.job_id.to_string(), encode(&status).expect("enc").into())
        .await
        .expect("put");
    let stored = kv
        .get(job.job_id.to_string())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(decode::<JobStatus>(&stored).expect("dec"), status);

    let client = env.client().await;
    let mut sub = client
        .subscribe(ns.job_progress(&job.job_id))
        .await
        .expect("sub");
    let progress = JobProgress {
        v: 1,
        job_id: job.job_id,
        done: 1,
        total: 2,
        stage: "translate".into(),
        emitted_at_ms: now,
    };
    client
        .publish(
            ns.job_progress(&job.job_id),
            encode(&progress).expect("enc").into(),
        )
        .await
        .expect("pub");
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("progress")
        .expect("msg");
    assert_eq!(decode::<JobProgress>(&got.payload).expect("dec"), progress);

    let record = DlqRecord {
        v: 1,
        original_subject: ns.mt_request("vie_Latn"),
        stream: Some(ns.stream(streams::MT)),
        stream_sequence: Some(1),
        consumer: Some(consumers::MT_WORKERS.into()),
        reason_code: "malformed_payload".into(),
        reason: "test".into(),
        delivery_count: 1,
        payload: Bytes::from_static(b"\xc1"),
        component: "mt".into(),
        dead_lettered_at_ms: now,
    };
    let got = round_trip(
        &js,
        &ns.stream(streams::DLQ),
        ns.dlq(streams::MT),
        encode(&record).expect("enc"),
    )
    .await;
    assert_eq!(decode::<DlqRecord>(&got).expect("dec"), record);
}

fn mt_request(i: usize) -> MtRequest {
    MtRequest {
        v: 1,
        request_id: RequestId::new(),
        texts: vec![format!("sentence {i}")],
        source_lang: "eng_Latn".into(),
        target_lang: "vie_Latn".into(),
        reply_subject: "_INBOX.unused".into(),
        session_id: None,
        segment_id: None,
        deadline_ms: None,
        enqueued_at_ms: now_unix_ms(),
    }
}

#[tokio::test]
async fn a_work_queue_consumer_shared_by_two_workers_delivers_each_message_once() {
    let env = TestEnv::new();
    let (js, _) = setup(&env).await;
    const N: usize = 60;
    let mut sent = HashSet::new();
    for i in 0..N {
        let request = mt_request(i);
        sent.insert(request.request_id);
        js.publish(
            env.namespace.mt_request("vie_Latn"),
            encode(&request).expect("enc").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    }
    let mut workers = Vec::new();
    for _ in 0..2 {
        let js = jetstream::new(env.client().await);
        let stream_name = env.namespace.stream(streams::MT);
        workers.push(tokio::spawn(async move {
            let stream = js.get_stream(stream_name).await.expect("stream");
            let consumer: PullConsumer = stream
                .get_consumer(consumers::MT_WORKERS)
                .await
                .expect("consumer");
            let mut got = Vec::new();
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(3)
                .messages()
                .await
                .expect("messages");
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_secs(2), messages.next()).await
            {
                let request: MtRequest = decode(&message.payload).expect("decode");
                // Simulated work, so both workers get a share.
                tokio::time::sleep(Duration::from_millis(5)).await;
                message.ack_with(AckKind::Ack).await.expect("ack");
                got.push(request.request_id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    let mut per_worker = Vec::new();
    for worker in workers {
        let got = worker.await.expect("worker");
        per_worker.push(got.len());
        all.extend(got);
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        N,
        "delivered {} for {N} sent (duplicates?)",
        all.len()
    );
    assert_eq!(unique, sent, "some message was lost");
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "one worker got nothing: {per_worker:?}"
    );
    // Work queue: acked messages are gone from the stream.
    let mut stream = js
        .get_stream(env.namespace.stream(streams::MT))
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
}

#[tokio::test]
async fn an_unacked_message_is_redelivered_after_ack_wait() {
    let env = TestEnv::new();
    let (js, topology) = setup(&env).await;
    let ack_wait = topology
        .consumers
        .iter()
        .find(|c| c.stream == streams::MT)
        .expect("mt consumer")
        .config
        .ack_wait;
    let request = mt_request(0);
    js.publish(
        env.namespace.mt_request("vie_Latn"),
        encode(&request).expect("enc").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    let stream = js
        .get_stream(env.namespace.stream(streams::MT))
        .await
        .expect("stream");
    let consumer: PullConsumer = stream
        .get_consumer(consumers::MT_WORKERS)
        .await
        .expect("consumer");

    // A worker takes it and dies without acking.
    let first = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch")
        .next()
        .await
        .expect("one")
        .expect("ok");
    let first_info = first.info().expect("info").delivered;
    drop(first);
    let taken_at = std::time::Instant::now();

    // Nothing is offered before ack_wait...
    let early = consumer
        .fetch()
        .max_messages(1)
        .expires(ack_wait / 4)
        .messages()
        .await
        .expect("fetch")
        .next()
        .await;
    assert!(early.is_none(), "redelivered before ack_wait");

    // ...and the same message comes back after it, marked as a redelivery.
    let again = voxbridge_tests::wait_for("redelivery", ack_wait * 5, || {
        let consumer = consumer.clone();
        async move {
            let mut batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .ok()?;
            batch.next().await.and_then(Result::ok)
        }
    })
    .await;
    assert!(
        taken_at.elapsed() >= ack_wait,
        "came back after {:?} < {ack_wait:?}",
        taken_at.elapsed()
    );
    let decoded: MtRequest = decode(&again.payload).expect("decode");
    assert_eq!(decoded.request_id, request.request_id);
    assert_eq!(first_info, 1);
    assert_eq!(again.info().expect("info").delivered, 2);
    again.ack().await.expect("ack");
}
