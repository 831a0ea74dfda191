//! Encoded samples of every wire type (`shared/fixtures/v1/*.msgpack`) must keep decoding to the
//! same values: a change that breaks an old payload fails here. Regenerate only for a deliberate
//! additive change: `VOXBRIDGE_BLESS=1 cargo test -p voxbridge-shared --test golden`, then
//! restore with git the fixtures of types that gained fields (keep their old bytes: they prove old
//! payloads still decode) and commit only the new ones.

use std::path::PathBuf;

use bytes::Bytes;
use voxbridge_shared::codec::{decode, encode};
use voxbridge_shared::messages::*;
use voxbridge_shared::{JobId, RequestId, SegmentId, SessionId};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1")
}

fn session() -> SessionId {
    "01JDZ5T6Q4N8X3V2B1C0A9S8R7".parse().expect("valid")
}
fn segment() -> SegmentId {
    "01JDZ5T6Q4N8X3V2B1C0A9S8R8".parse().expect("valid")
}
fn request() -> RequestId {
    "01JDZ5T6Q4N8X3V2B1C0A9S8R9".parse().expect("valid")
}
fn job() -> JobId {
    "01JDZ5T6Q4N8X3V2B1C0A9S8RA".parse().expect("valid")
}
const T: UnixMs = 1_764_000_000_000;

fn error_event() -> ErrorEvent {
    ErrorEvent {
        v: 1,
        session_id: Some(session()),
        job_id: None,
        error: ErrorInfo {
            code: "malformed_audio".into(),
            message: "odd number of PCM bytes".into(),
        },
        component: "stt".into(),
        emitted_at_ms: T,
    }
}

/// (fixture name, freshly encoded bytes, "do these bytes decode to the sample value?")
type Sample = (&'static str, Vec<u8>, Box<dyn Fn(&[u8]) -> bool>);

fn samples() -> Vec<Sample> {
    macro_rules! sample {
        ($name:literal, $ty:ty, $value:expr) => {{
            let value: $ty = $value;
            let bytes = encode(&value).expect("encode");
            let check: Box<dyn Fn(&[u8]) -> bool> = Box::new(move |b: &[u8]| {
                let decoded: $ty = decode(b).expect(concat!("decode ", $name));
                decoded == value
            });
            ($name, bytes, check)
        }};
    }
    vec![
        sample!(
            "session_open",
            SessionOpen,
            SessionOpen {
                v: 1,
                session_id: session(),
                source_lang: Some("eng_Latn".into()),
                target_langs: vec!["vie_Latn".into(), "fra_Latn".into()],
                sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
                opened_at_ms: T,
                client: Some("demo".into()),
                realtime: true,
            }
        ),
        sample!(
            "audio_chunk",
            AudioEvent,
            AudioEvent::Chunk(AudioChunk {
                v: 1,
                session_id: session(),
                seq: 3,
                offset_samples: 4800,
                sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
                pcm: Bytes::from_static(&[0, 0, 1, 0, 255, 127, 0, 128]),
                received_at_ms: T,
            })
        ),
        sample!(
            "session_close",
            AudioEvent,
            AudioEvent::Close(SessionClose {
                v: 1,
                session_id: session(),
                reason: CloseReason::ClientStop,
                final_offset_samples: 6400,
                closed_at_ms: T + 400,
            })
        ),
        sample!(
            "transcript_partial",
            TranscriptEvent,
            TranscriptEvent::Partial(TranscriptPartial {
                v: 1,
                session_id: session(),
                segment_id: segment(),
                revision: 2,
                stable_text: "And so my fellow".into(),
                unstable_text: "Americans ask".into(),
                start_ms: 0,
                end_ms: 2300,
                emitted_at_ms: T,
            })
        ),
        sample!(
            "transcript_final",
            TranscriptEvent,
            TranscriptEvent::Final(TranscriptFinal {
                v: 1,
                session_id: session(),
                segment_id: segment(),
                index: 0,
                text: "And so my fellow Americans, ask not.".into(),
                lang: Some("eng_Latn".into()),
                start_ms: 0,
                end_ms: 3100,
                words: vec![WordTiming {
                    word: "And".into(),
                    start_ms: 0,
                    end_ms: 220,
                    probability: Some(0.97)
                }],
                emitted_at_ms: T,
            })
        ),
        sample!(
            "transcript_error",
            TranscriptEvent,
            TranscriptEvent::Error(error_event())
        ),
        sample!(
            "session_ended",
            TranscriptEvent,
            TranscriptEvent::Ended(SessionEnded {
                v: 1,
                session_id: session(),
                reason: CloseReason::ClientStop,
                final_count: 3,
                audio_ms: 11_000,
                emitted_at_ms: T,
            })
        ),
        sample!(
            "session_claimed",
            TranscriptEvent,
            TranscriptEvent::Claimed(SessionClaimed {
                v: 1,
                session_id: session(),
                worker: "stt-1".into(),
                resumed_from_ms: 4_200,
                delivery: 2,
                emitted_at_ms: T,
            })
        ),
        sample!(
            "mt_request",
            MtRequest,
            MtRequest {
                v: 1,
                request_id: request(),
                texts: vec!["Hello world.".into(), "".into()],
                source_lang: "eng_Latn".into(),
                target_lang: "vie_Latn".into(),
                reply_subject: format!("vb.translation.{}", session()),
                session_id: Some(session()),
                segment_id: Some(segment()),
                deadline_ms: Some(T + 15_000),
                enqueued_at_ms: T,
            }
        ),
        sample!(
            "mt_result",
            MtResult,
            MtResult {
                v: 1,
                request_id: request(),
                session_id: Some(session()),
                segment_id: Some(segment()),
                source_lang: "eng_Latn".into(),
                target_lang: "vie_Latn".into(),
                translations: vec!["Xin chào thế giới.".into(), "".into()],
                error: None,
                model: Some("nllb-200-distilled-600M/int8".into()),
                cached: vec![false, true],
                completed_at_ms: T + 900,
            }
        ),
        sample!(
            "job_spec",
            JobSpec,
            JobSpec {
                v: 1,
                job_id: job(),
                kind: JobKind::Subtitles,
                input_object: "input/abc.srt".into(),
                file_name: "film.srt".into(),
                source_lang: Some("eng_Latn".into()),
                target_langs: vec!["vie_Latn".into()],
                output_format: Some(SubtitleFormat::Vtt),
                content_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                    .into(),
                submitted_at_ms: T,
            }
        ),
        sample!(
            "job_status",
            JobStatus,
            JobStatus {
                v: 1,
                job_id: job(),
                state: JobState::Running,
                progress: 0.25,
                message: Some("translating 120/480 sentences".into()),
                error: None,
                result_objects: vec![],
                updated_at_ms: T,
                kind: None,
                file_name: None,
                source_lang: None,
                target_langs: vec![],
                submitted_at_ms: None,
                results: vec![],
                attempts: 0,
            }
        ),
        sample!(
            "job_progress",
            JobProgress,
            JobProgress {
                v: 1,
                job_id: job(),
                done: 120,
                total: 480,
                stage: "translate".into(),
                emitted_at_ms: T,
            }
        ),
        sample!("error_event", ErrorEvent, error_event()),
        sample!(
            "dlq_record",
            DlqRecord,
            DlqRecord {
                v: 1,
                original_subject: "vb.mt.request.vie_Latn".into(),
                stream: Some("MT".into()),
                stream_sequence: Some(42),
                consumer: Some("mt-workers".into()),
                reason_code: "malformed_payload".into(),
                reason: "malformed mt.request payload (3 bytes)".into(),
                delivery_count: 1,
                payload: Bytes::from_static(b"\xc1\x00\xff"),
                component: "mt".into(),
                dead_lettered_at_ms: T,
            }
        ),
        sample!(
            "heartbeat",
            Heartbeat,
            Heartbeat {
                v: 1,
                component: "mt".into(),
                instance: "mt-01jdz5t6q4n8x3v2b1c0a9s8rb".into(),
                version: "0.1.0".into(),
                started_at_ms: T,
                emitted_at_ms: T + 5000,
                in_flight: 2,
            }
        ),
        sample!(
            "recording",
            Recording,
            Recording {
                v: 1,
                session_id: session(),
                file_name: "jfk.wav".into(),
                source: "en".into(),
                targets: vec!["vi".into()],
                audio_ms: 11_000,
                reference: Some("And so my fellow Americans".into()),
                reference_translations: [("vi".to_string(), "Và vì vậy".to_string())].into(),
                recorded_at_ms: T,
            }
        ),
    ]
}

#[test]
fn committed_fixtures_still_decode() {
    let bless = std::env::var_os("VOXBRIDGE_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(dir()).expect("mkdir");
    }
    let samples = samples();
    assert_eq!(samples.len(), 17);
    for (name, bytes, check) in samples {
        let path = dir().join(format!("{name}.msgpack"));
        if bless {
            std::fs::write(&path, &bytes).expect("write fixture");
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with VOXBRIDGE_BLESS=1)", path.display()));
        assert!(
            check(&committed),
            "{name}: committed fixture decodes to a different value"
        );
    }
}

#[test]
fn audio_bytes_are_msgpack_binary_not_an_array() {
    let chunk = AudioEvent::Chunk(AudioChunk {
        v: 1,
        session_id: session(),
        seq: 0,
        offset_samples: 0,
        sample_rate_hz: AUDIO_SAMPLE_RATE_HZ,
        pcm: Bytes::from(vec![7u8; 3200]),
        received_at_ms: T,
    });
    let bytes = encode(&chunk).expect("encode");
    // bin16 marker followed by the length 3200 = 0x0c80.
    assert!(bytes.windows(3).any(|w| w == [0xc5, 0x0c, 0x80]));
    assert!(bytes.len() < 3200 + 200, "{} bytes", bytes.len());
}

#[test]
fn newer_schema_versions_are_rejected_and_additive_fields_ignored() {
    // A v2 heartbeat must not be misread by a v1 reader.
    let mut beat = Heartbeat {
        v: 2,
        component: "mt".into(),
        instance: "x".into(),
        version: "9".into(),
        started_at_ms: 0,
        emitted_at_ms: 0,
        in_flight: 0,
    };
    let bytes = encode(&beat).expect("encode");
    let err = decode::<Heartbeat>(&bytes).expect_err("newer version");
    assert_eq!(err.code(), "unsupported_version");

    // An unknown extra field (a later additive change) is ignored.
    beat.v = 1;
    #[derive(serde::Serialize)]
    struct Extended<'a> {
        #[serde(flatten)]
        inner: &'a Heartbeat,
        cpu_load: f32,
    }
    let bytes = rmp_serde::to_vec_named(&Extended {
        inner: &beat,
        cpu_load: 0.5,
    })
    .expect("encode");
    assert_eq!(decode::<Heartbeat>(&bytes).expect("decode"), beat);
}

#[test]
fn garbage_is_a_typed_error_not_a_panic() {
    for garbage in [&b""[..], b"\xc1", b"{\"json\": true}", &[0x92, 0x01, 0x02]] {
        let err = decode::<MtRequest>(garbage).expect_err("garbage");
        assert_eq!(err.code(), "malformed_payload", "{err}");
    }
}
