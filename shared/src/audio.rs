//! Audio input for audio-file jobs and the command-line client (`voxctl transcribe`, `live`,
//! `record`, `eval`): [`decode_audio_16k`] turns a whole file, in memory, into 16 kHz mono
//! samples in -1..1, and [`audio_duration_s`] tells its length cheaply first (to check a
//! duration limit before decoding; [`decode_audio_16k_limited`] enforces it while decoding too,
//! since a compressed file's stated length may be an estimate).
//!
//! Formats ([`SUPPORTED`]): WAV, MP3, FLAC, Ogg Vorbis, Ogg Opus, WebM/Opus, M4A/MP4 (AAC-LC)
//! and raw AAC (ADTS). WAV is read with `hound` (8/16/24/32-bit integer, 32-bit float, any
//! channel count); a WAV file hound cannot read (A-law, μ-law, 64-bit float) goes to
//! `symphonia`, which demuxes every other format and decodes all but Opus (pure Rust; the
//! workspace enables only these formats' features). Any channel count is down-mixed to mono,
//! any rate resampled to 16 kHz with `rubato` (band-limited sinc interpolation). Encoder delay
//! and padding are trimmed where the file states them (LAME/Xing headers, Ogg granule
//! positions, FLAC's exact length).
//!
//! Opus (phone voice notes in Ogg, browsers' MediaRecorder in WebM) has no symphonia decoder:
//! its packets, demuxed by symphonia, go to libopus (the `opus` crate), which decodes straight
//! to 16 kHz mono (no resampling; libopus down-mixes). The OpusHead's pre-skip is dropped and
//! its output gain applied; Ogg's end trimming (the last page's granule position) is honoured;
//! WebM states none (symphonia reads no `DiscardPadding`), so a WebM file keeps the encoder's
//! last-frame padding, at most 20 ms of silence at the end. Multistream Opus (surround,
//! channel mapping families 1 and 255 with several streams) is an unsupported codec.
//!
//! Errors: a file that is no supported format, that holds an unsupported codec (ALAC in an
//! M4A, say), or that cannot be read is an [`AudioError`] with code
//! `invalid_audio` and a message naming what was found and the supported formats; the message
//! reaches users (job status, `voxctl`). Garbage never panics: the symphonia path also runs
//! under `catch_unwind`, so a bug in a third-party parser on a hostile file is an error too.

use symphonia::core::codecs::audio::well_known as codec_ids;
use symphonia::core::codecs::audio::{
    AudioCodecId, AudioCodecParameters, AudioDecoder, AudioDecoderOptions,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{Duration as TbDuration, TimeBase};

/// Samples per second Whisper (and the wire format) uses.
pub const SAMPLE_RATE: u32 = 16_000;

/// The audio formats [`decode_audio_16k`] reads, as told to users.
pub const SUPPORTED: &str =
    "WAV, MP3, FLAC, Ogg Vorbis, Ogg Opus, WebM/Opus, M4A/MP4 (AAC-LC) or AAC (ADTS)";

/// File extensions of the [`SUPPORTED`] formats (lower case), for tools that pick audio files
/// out of a folder by name. Decoding goes by the content ([`AudioFormat::sniff`]), not the name.
pub const EXTENSIONS: [&str; 10] = [
    "wav", "mp3", "flac", "ogg", "oga", "opus", "webm", "m4a", "mp4", "aac",
];

/// Sample rates a file may state (outside: a corrupt header, not audio to resample).
const RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// Why audio could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// No supported format: `found` says what the file looks like.
    #[error("not a supported audio file ({found}); supported formats: {SUPPORTED}")]
    Unrecognised { found: String },
    /// A supported container holding a codec we cannot decode (ALAC, AC-3, ...).
    #[error(
        "{container} file with {codec} audio: {codec} is not supported; supported formats: {SUPPORTED}"
    )]
    UnsupportedCodec { container: String, codec: String },
    /// A supported format that cannot be read (corrupt, truncated before any audio, ...).
    #[error("unreadable {format} file: {detail} (supported formats: {SUPPORTED})")]
    Malformed { format: String, detail: String },
    /// A readable file without a single audio sample.
    #[error("{0} file has no audio samples")]
    Empty(String),
    /// Longer than the limit given to [`decode_audio_16k_limited`] (decoding stopped there).
    #[error("the audio is longer than the limit of {limit_s:.0} s")]
    TooLong { limit_s: f64 },
    #[error("resampling failed: {0}")]
    Resample(String),
}

impl AudioError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::Unrecognised { .. }
            | AudioError::UnsupportedCodec { .. }
            | AudioError::Malformed { .. }
            | AudioError::Empty(_) => "invalid_audio",
            AudioError::TooLong { .. } => "audio_too_long",
            AudioError::Resample(_) => "internal",
        }
    }
}

/// An audio format recognised by its first bytes ([`AudioFormat::sniff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// `RIFF....WAVE`.
    Wav,
    /// An ID3v2 tag, or an MPEG-1/2/2.5 Layer III frame header.
    Mp3,
    /// `fLaC`.
    Flac,
    /// `OggS` (Vorbis, Opus, or an unsupported codec such as Speex: known once read).
    Ogg,
    /// An EBML header, `1A 45 DF A3`: WebM or Matroska (Opus or Vorbis, say, as browsers'
    /// MediaRecorder writes; the codec is known once read).
    WebM,
    /// An ISO base media file: `ftyp` at offset 4 (M4A, MP4, 3GP, MOV).
    Mp4,
    /// Raw AAC in ADTS frames.
    Adts,
}

impl AudioFormat {
    /// Bytes [`AudioFormat::sniff`] needs to tell every format.
    pub const HEAD_LEN: usize = 12;

    /// The format `head` (a file's first bytes; [`AudioFormat::HEAD_LEN`] are enough) starts
    /// like, by its magic bytes alone; `None` for anything else (subtitles, text, unknown).
    pub fn sniff(head: &[u8]) -> Option<AudioFormat> {
        let at =
            |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
        let frame = |f: fn(u8, u8) -> bool| matches!(head, [0xFF, b1, b2, ..] if f(*b1, *b2));
        if at(0, b"RIFF") && at(8, b"WAVE") {
            Some(AudioFormat::Wav)
        } else if at(0, b"fLaC") {
            Some(AudioFormat::Flac)
        } else if at(0, b"OggS") {
            Some(AudioFormat::Ogg)
        } else if at(0, b"ID3") || frame(is_mp3_frame) {
            Some(AudioFormat::Mp3)
        } else if at(4, b"ftyp") {
            Some(AudioFormat::Mp4)
        } else if at(0, b"\x1a\x45\xdf\xa3") {
            Some(AudioFormat::WebM)
        } else if frame(is_adts_frame) {
            Some(AudioFormat::Adts)
        } else {
            None
        }
    }

    /// The name users know the format by.
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "WAV",
            AudioFormat::Mp3 => "MP3",
            AudioFormat::Flac => "FLAC",
            AudioFormat::Ogg => "Ogg",
            AudioFormat::Mp4 => "MP4/M4A",
            AudioFormat::WebM => "WebM",
            AudioFormat::Adts => "AAC (ADTS)",
        }
    }

    /// The usual file extension (a hint for symphonia's probe).
    fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Flac => "flac",
            AudioFormat::Ogg => "ogg",
            AudioFormat::Mp4 => "m4a",
            AudioFormat::WebM => "webm",
            AudioFormat::Adts => "aac",
        }
    }
}

/// Whether the bytes after a 0xFF are an MPEG audio Layer III frame header: 11 sync bits, a
/// defined version, layer III, a bitrate index neither free (0) nor bad (15), a defined
/// sampling rate. (Strict enough that a UTF-16 byte-order mark, FF FE, is not one.)
fn is_mp3_frame(b1: u8, b2: u8) -> bool {
    let sync = b1 & 0xE0 == 0xE0;
    let version = (b1 >> 3) & 0b11;
    let layer = (b1 >> 1) & 0b11;
    let bitrate = b2 >> 4;
    let rate = (b2 >> 2) & 0b11;
    sync && version != 0b01 && layer == 0b01 && bitrate != 0 && bitrate != 0x0F && rate != 0b11
}

/// Whether the bytes after a 0xFF are an ADTS header: 12 sync bits, layer 00, a defined
/// sampling-frequency index.
fn is_adts_frame(b1: u8, b2: u8) -> bool {
    b1 & 0xF6 == 0xF0 && (b2 >> 2) & 0x0F < 13
}

/// Whether a file starts like an audio file [`decode_audio_16k`] may read.
pub fn looks_like_audio(head: &[u8]) -> bool {
    AudioFormat::sniff(head).is_some()
}

/// The length of an audio file in seconds, cheaply: use it to check a duration limit before
/// decoding. WAV: from the header (hound). Other formats: the length the container states
/// (FLAC's STREAMINFO, MP4's `mdhd`/`stts`, the last Ogg page's granule position — plus the
/// length of every stream chained after the first —, an MP3's Xing/LAME or VBRI header); for an
/// MP3 without one, symphonia's estimate from the file size and the first frames' bitrate
/// (exact for constant-bitrate files; a variable-bitrate file without a header may be off, so
/// decode-time callers should check the decoded length too);
/// for a stream that states nothing (ADTS AAC), the sum of its packets' durations, read
/// without decoding; if they state none either (WebM, whose segment may state no length), by
/// decoding. Fails as [`decode_audio_16k`] would on an unknown format or an
/// unsupported codec (so `voxctl` can fail fast on an ALAC file).
pub fn audio_duration_s(bytes: &[u8]) -> Result<f64, AudioError> {
    let sniffed = AudioFormat::sniff(bytes);
    if sniffed == Some(AudioFormat::Wav) {
        match wav_duration_s(bytes) {
            Ok(d) => return Ok(d),
            // Not something hound reads: maybe symphonia does (A-law, 64-bit float, ...).
            Err(wav_error) => {
                return guarded(|| symphonia_duration(bytes, sniffed)).map_err(|_| wav_error);
            }
        }
    }
    guarded(|| symphonia_duration(bytes, sniffed))
}

/// Decodes an audio file ([`SUPPORTED`] formats, any rate, channel count and sample format) to
/// 16 kHz mono samples in -1..1. A file truncated mid-stream gives the audio before the cut;
/// packets the decoder rejects are skipped (as players do), but a file with no decodable audio
/// is an error.
pub fn decode_audio_16k(bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
    decode_audio_16k_limited(bytes, f64::INFINITY)
}

/// [`decode_audio_16k`], failing with [`AudioError::TooLong`] (code `audio_too_long`) as soon
/// as the decoded audio passes `limit_s` seconds: what a server wants after checking
/// [`audio_duration_s`], since a compressed file's stated length can be an estimate (or a lie)
/// and its decoded audio many times its size (a 16 kb/s MP3: 32×).
pub fn decode_audio_16k_limited(bytes: &[u8], limit_s: f64) -> Result<Vec<f32>, AudioError> {
    let sniffed = AudioFormat::sniff(bytes);
    let samples = match sniffed {
        Some(AudioFormat::Wav) => match decode_wav_16k(bytes) {
            Ok(samples) => samples,
            // hound could not read it; symphonia's WAV reader takes more codings (and its
            // errors, but for the length limit, say less than hound's).
            Err(AudioError::Malformed { format, detail }) => {
                match guarded(|| symphonia_decode_16k(bytes, sniffed, limit_s)) {
                    Ok(samples) => samples,
                    Err(e @ AudioError::TooLong { .. }) => return Err(e),
                    Err(_) => return Err(AudioError::Malformed { format, detail }),
                }
            }
            Err(other) => return Err(other),
        },
        _ => guarded(|| symphonia_decode_16k(bytes, sniffed, limit_s))?,
    };
    // (hound's WAV has the length its header states: checked here, after decoding.)
    if samples.len() as f64 > limit_s * f64::from(SAMPLE_RATE) {
        return Err(AudioError::TooLong { limit_s });
    }
    Ok(samples)
}

/// The duration of a WAV file, from its header alone (hound).
pub fn wav_duration_s(bytes: &[u8]) -> Result<f64, AudioError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(wav_error)?;
    let spec = reader.spec();
    Ok(f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1)))
}

/// Decodes a WAV file (hound: 8/16/24/32-bit integer, 32-bit float, any channel count) to
/// 16 kHz mono samples in -1..1. [`decode_audio_16k`] takes every format, WAV included.
pub fn decode_wav_16k(bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(wav_error)?;
    let spec = reader.spec();
    check_rate("WAV", spec.sample_rate)?;
    let channels = usize::from(spec.channels.max(1));
    let floats: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(wav_error)?,
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample.saturating_sub(1))) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(wav_error)?
        }
    };
    if floats.is_empty() {
        return Err(AudioError::Empty("WAV".into()));
    }
    let mono: Vec<f32> = floats
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    to_16k(mono, spec.sample_rate)
}

fn wav_error(e: hound::Error) -> AudioError {
    AudioError::Malformed {
        format: "WAV".into(),
        detail: e.to_string(),
    }
}

fn check_rate(format: &str, rate: u32) -> Result<(), AudioError> {
    if RATES.contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::Malformed {
            format: format.into(),
            detail: format!("a sample rate of {rate} Hz"),
        })
    }
}

fn to_16k(mono: Vec<f32>, rate: u32) -> Result<Vec<f32>, AudioError> {
    if rate == SAMPLE_RATE {
        Ok(mono)
    } else {
        resample(&mono, rate, SAMPLE_RATE)
    }
}

/// Runs a symphonia call, turning a panic in it into an `invalid_audio` error.
fn guarded<T>(f: impl FnOnce() -> Result<T, AudioError>) -> Result<T, AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(AudioError::Malformed {
            format: "audio".into(),
            detail: format!("the decoder failed on it ({what})"),
        })
    })
}

/// A file opened with symphonia, at its first audio track.
struct Opened<'a> {
    reader: Box<dyn FormatReader + 'a>,
    /// What to call the file in messages.
    format: String,
    track_id: u32,
    params: AudioCodecParameters,
    num_frames: Option<u64>,
    duration: Option<TbDuration>,
    time_base: Option<TimeBase>,
    /// Encoder delay in frames, as the container states it (Ogg Opus: the pre-skip).
    delay: Option<u32>,
}

fn open(bytes: &[u8], sniffed: Option<AudioFormat>) -> Result<Opened<'_>, AudioError> {
    let mss = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let mut hint = Hint::new();
    if let Some(f) = sniffed {
        hint.with_extension(f.extension());
    }
    let reader = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match sniffed {
            Some(f) => AudioError::Malformed {
                format: f.name().into(),
                detail: match e {
                    // "core (probe): no suitable format reader found", "isomp4: missing moov
                    // atom": the part after the module name.
                    SymphoniaError::Unsupported(what) => {
                        what.rsplit(": ").next().unwrap_or(what).to_string()
                    }
                    e => e.to_string(),
                },
            },
            None => AudioError::Unrecognised {
                found: describe_unknown(bytes),
            },
        })?;
    let format = sniffed.map_or_else(
        || reader.format_info().long_name.to_string(),
        |f| f.name().to_string(),
    );
    let Some(track) = reader.default_track(TrackType::Audio) else {
        return Err(AudioError::Malformed {
            format,
            detail: "no audio track".into(),
        });
    };
    let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()).cloned() else {
        return Err(AudioError::Malformed {
            format,
            detail: "the audio track's codec is not stated".into(),
        });
    };
    if params.codec != codec_ids::CODEC_ID_OPUS
        && symphonia::default::get_codecs()
            .get_audio_decoder(params.codec)
            .is_none()
    {
        return Err(AudioError::UnsupportedCodec {
            container: format,
            codec: codec_name(params.codec),
        });
    }
    Ok(Opened {
        track_id: track.id,
        num_frames: track.num_frames,
        duration: track.duration,
        time_base: track.time_base,
        delay: track.delay,
        params,
        reader,
        format,
    })
}

fn make_decoder(o: &Opened<'_>) -> Result<Box<dyn AudioDecoder>, AudioError> {
    symphonia::default::get_codecs()
        .make_audio_decoder(&o.params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) => AudioError::UnsupportedCodec {
                container: o.format.clone(),
                codec: format!("{} ({what})", codec_name(o.params.codec)),
            },
            e => AudioError::Malformed {
                format: o.format.clone(),
                detail: e.to_string(),
            },
        })
}

/// The reader's next packet; `None` at the end, including the early end of a truncated file
/// (whatever came before the cut is kept).
fn next_packet(
    reader: &mut (dyn FormatReader + '_),
) -> Result<Option<symphonia::core::packet::Packet>, SymphoniaError> {
    match reader.next_packet() {
        Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(None)
        }
        other => other,
    }
}

fn symphonia_duration(bytes: &[u8], sniffed: Option<AudioFormat>) -> Result<f64, AudioError> {
    if sniffed == Some(AudioFormat::Ogg) {
        return ogg_duration_s(bytes);
    }
    stream_duration_s(bytes, sniffed)
}

/// An Ogg file's length: its first logical stream's, plus that of every stream chained after
/// it (recordings joined end to end, which [`decode_audio_16k`] decodes whole). The streams
/// after the first are read packet by packet (demuxing only, no decoding), each counted in its
/// own time base.
fn ogg_duration_s(bytes: &[u8]) -> Result<f64, AudioError> {
    let mut total = stream_duration_s(bytes, Some(AudioFormat::Ogg))?;
    let mut o = open(bytes, Some(AudioFormat::Ogg))?;
    // Packets of the current chained stream (none until the first reset).
    let mut chained: Option<(u32, TimeBase, TbDuration)> = None;
    let add = |total: &mut f64, stream: Option<(u32, TimeBase, TbDuration)>| {
        if let Some((_, tb, d)) = stream
            && let Some(t) = tb.calc_duration(d)
        {
            *total += t.as_nanos() as f64 / 1e9;
        }
    };
    loop {
        match next_packet(o.reader.as_mut()) {
            Ok(Some(p)) => {
                if let Some((id, _, d)) = chained.as_mut()
                    && p.track_id == *id
                {
                    *d = d.saturating_add(p.dur);
                }
            }
            Ok(None) => break,
            Err(SymphoniaError::ResetRequired) => {
                add(&mut total, chained.take());
                let Some(track) = o.reader.default_track(TrackType::Audio) else {
                    break;
                };
                let Some(tb) = track.time_base else { break };
                chained = Some((track.id, tb, TbDuration::new(0)));
            }
            // Damage after the first stream: its length stands, as decoding keeps its audio.
            Err(_) => break,
        }
    }
    add(&mut total, chained);
    Ok(total)
}

/// The length the opened file's audio track states, or the sum of its packets' durations.
fn stream_duration_s(bytes: &[u8], sniffed: Option<AudioFormat>) -> Result<f64, AudioError> {
    let mut o = open(bytes, sniffed)?;
    // (A stated zero is no statement: symphonia's WebM reader says 0 when the segment does.)
    if let (Some(frames), Some(rate)) = (o.num_frames, o.params.sample_rate)
        && rate > 0
        && frames > 0
    {
        return Ok(frames as f64 / f64::from(rate));
    }
    if let (Some(duration), Some(tb)) = (o.duration, o.time_base)
        && duration.get() > 0
        && let Some(t) = tb.calc_duration(duration)
    {
        return Ok(t.as_nanos() as f64 / 1e9);
    }
    let Some(tb) = o.time_base else {
        // No time base to count packets in: decode.
        return Ok(decode_16k(o, f64::INFINITY)?.len() as f64 / f64::from(SAMPLE_RATE));
    };
    // Nothing stated: add up the packets' durations (demuxing only, no decoding).
    let mut total = TbDuration::new(0);
    loop {
        match next_packet(o.reader.as_mut()) {
            Ok(Some(p)) if p.track_id == o.track_id => total = total.saturating_add(p.dur),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                return Err(AudioError::Malformed {
                    format: o.format,
                    detail: e.to_string(),
                });
            }
        }
    }
    if total.is_zero() {
        // Packets without durations (WebM blocks may state none): decode.
        return Ok(
            decode_16k(open(bytes, sniffed)?, f64::INFINITY)?.len() as f64 / f64::from(SAMPLE_RATE),
        );
    }
    Ok(tb
        .calc_duration(total)
        .map_or(f64::INFINITY, |t| t.as_nanos() as f64 / 1e9))
}

fn symphonia_decode_16k(
    bytes: &[u8],
    sniffed: Option<AudioFormat>,
    limit_s: f64,
) -> Result<Vec<f32>, AudioError> {
    decode_16k(open(bytes, sniffed)?, limit_s)
}

/// Decodes the opened track to 16 kHz mono, resampling packet by packet as they are decoded (so
/// a long file at 44.1 kHz never holds its whole audio at that rate); stops with
/// [`AudioError::TooLong`] past `limit_s` seconds.
fn decode_16k(mut o: Opened<'_>, limit_s: f64) -> Result<Vec<f32>, AudioError> {
    let malformed = |format: &str, detail: String| AudioError::Malformed {
        format: format.to_string(),
        detail,
    };
    if o.params.codec == codec_ids::CODEC_ID_OPUS {
        return decode_opus_16k(o, limit_s);
    }
    let mut decoder = make_decoder(&o)?;
    // At 16 kHz: the output itself; at another rate: the resampler, which holds the output.
    let mut out: Vec<f32> = Vec::new();
    let mut resampling: Option<Resampling> = None;
    let mut rate: Option<u32> = None;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut mono: Vec<f32> = Vec::new();
    let mut frames: u64 = 0;
    let mut last_error: Option<String> = None;
    loop {
        let packet = match next_packet(o.reader.as_mut()) {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A new logical stream (chained Ogg): carry on with its audio track.
            Err(SymphoniaError::ResetRequired) => {
                let Some(track) = o.reader.default_track(TrackType::Audio) else {
                    break;
                };
                let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()) else {
                    break;
                };
                o.track_id = track.id;
                o.params = params.clone();
                decoder = make_decoder(&o)?;
                continue;
            }
            Err(e) => {
                if rate.is_none() {
                    return Err(malformed(&o.format, e.to_string()));
                }
                // Damage after the audio: keep what was read.
                break;
            }
        };
        if packet.track_id != o.track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // A damaged packet: skip it, as players do.
            Err(SymphoniaError::DecodeError(e)) => {
                last_error = Some(e.to_string());
                continue;
            }
            Err(SymphoniaError::IoError(e)) => {
                last_error = Some(e.to_string());
                continue;
            }
            Err(e) => return Err(malformed(&o.format, e.to_string())),
        };
        if buf.frames() == 0 {
            continue;
        }
        let spec = buf.spec();
        let this_rate = spec.rate();
        match rate {
            None => {
                check_rate(&o.format, this_rate)?;
                rate = Some(this_rate);
                if this_rate != SAMPLE_RATE {
                    resampling = Some(Resampling::new(this_rate, SAMPLE_RATE)?);
                }
            }
            Some(r) if r != this_rate => {
                return Err(malformed(
                    &o.format,
                    format!("the sample rate changes from {r} to {this_rate} Hz"),
                ));
            }
            Some(_) => {}
        }
        let channels = spec.channels().count().max(1);
        buf.copy_to_vec_interleaved(&mut interleaved);
        mono.clear();
        mono.extend(
            interleaved
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        frames += mono.len() as u64;
        if frames as f64 > limit_s * f64::from(this_rate) {
            return Err(AudioError::TooLong { limit_s });
        }
        match &mut resampling {
            Some(r) => r.push(&mono)?,
            None => out.extend_from_slice(&mono),
        }
    }
    if rate.is_none() {
        return Err(match last_error {
            Some(e) => malformed(&o.format, format!("no decodable audio ({e})")),
            None => AudioError::Empty(o.format),
        });
    }
    match resampling {
        Some(r) => r.finish(),
        None => Ok(out),
    }
}

/// What an Opus stream's identification header (RFC 7845 `OpusHead`, the codec's extra data
/// in Ogg and WebM alike) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpusHead {
    channels: u8,
    /// Frames at 48 kHz to drop from the start.
    pre_skip: u16,
    /// Output gain, Q7.8 dB.
    gain: i16,
    mapping_family: u8,
    /// Opus streams per packet (1 unless the mapping family is not 0).
    streams: u8,
}

impl OpusHead {
    fn parse(b: &[u8]) -> Option<OpusHead> {
        if b.len() < 19 || !b.starts_with(b"OpusHead") {
            return None;
        }
        let mapping_family = b[18];
        Some(OpusHead {
            channels: b[9],
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            gain: i16::from_le_bytes([b[16], b[17]]),
            mapping_family,
            streams: if mapping_family == 0 { 1 } else { *b.get(19)? },
        })
    }
}

/// Opus' own rate, of pre-skip and Ogg granule positions.
const OPUS_RATE: u64 = 48_000;

/// One Opus stream's decoder and the frames still to drop from its start (its pre-skip).
struct OpusStream {
    decoder: opus::Decoder,
    /// At 16 kHz.
    skip: usize,
    time_base: Option<TimeBase>,
}

impl OpusStream {
    /// Reads the stream's header (refusing multistream Opus) and applies its output gain.
    fn open(o: &Opened<'_>) -> Result<Self, AudioError> {
        let libopus = |e: opus::Error| AudioError::Malformed {
            format: o.format.clone(),
            detail: format!("libopus: {e}"),
        };
        let head = o.params.extra_data.as_deref().and_then(OpusHead::parse);
        if let Some(h) = head
            && h.streams != 1
        {
            return Err(AudioError::UnsupportedCodec {
                container: o.format.clone(),
                codec: format!(
                    "Opus (multistream: {} streams, {} channels)",
                    h.streams, h.channels
                ),
            });
        }
        let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).map_err(libopus)?;
        if let Some(h) = head
            && h.gain != 0
        {
            decoder.set_gain(i32::from(h.gain)).map_err(libopus)?;
        }
        let pre_skip = head
            .map(|h| u64::from(h.pre_skip))
            .or(o.delay.map(u64::from))
            .unwrap_or(0);
        Ok(Self {
            decoder,
            skip: usize::try_from(pre_skip * u64::from(SAMPLE_RATE) / OPUS_RATE).unwrap_or(0),
            time_base: o.time_base,
        })
    }

    /// A container duration (a trim) in 16 kHz frames.
    fn to_16k_frames(&self, d: TbDuration) -> usize {
        let d = d.get();
        let frames = match self.time_base {
            Some(tb) => {
                u128::from(d) * u128::from(SAMPLE_RATE) * u128::from(tb.numer.get())
                    / u128::from(tb.denom.get())
            }
            None => u128::from(d) * u128::from(SAMPLE_RATE) / u128::from(OPUS_RATE),
        };
        usize::try_from(frames).unwrap_or(usize::MAX)
    }
}

/// [`decode_16k`] for Opus: libopus decodes each packet straight to 16 kHz mono (it down-mixes
/// a stereo stream itself). Drops the pre-skip and the start and end trims the container gives
/// (Ogg: from granule positions), applies the header's output gain, skips packets libopus
/// rejects, goes on into the next stream of a chained Ogg file (each with its own header), and
/// stops with [`AudioError::TooLong`] past `limit_s` seconds.
fn decode_opus_16k(mut o: Opened<'_>, limit_s: f64) -> Result<Vec<f32>, AudioError> {
    /// The longest Opus packet: 120 ms.
    const MAX_PACKET: usize = SAMPLE_RATE as usize * 120 / 1000;
    let malformed = |format: &str, detail: String| AudioError::Malformed {
        format: format.to_string(),
        detail,
    };
    let mut stream = OpusStream::open(&o)?;
    let limit_frames = limit_s * f64::from(SAMPLE_RATE);
    let mut out: Vec<f32> = Vec::new();
    let mut pcm = vec![0f32; MAX_PACKET];
    let mut decoded_any = false;
    let mut last_error: Option<String> = None;
    loop {
        let packet = match next_packet(o.reader.as_mut()) {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A new logical stream (chained Ogg: recordings joined end to end): its own header,
            // pre-skip and decoder. A chained stream in another codec ends the audio here.
            Err(SymphoniaError::ResetRequired) => {
                let Some(track) = o.reader.default_track(TrackType::Audio) else {
                    break;
                };
                let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()) else {
                    break;
                };
                if params.codec != codec_ids::CODEC_ID_OPUS {
                    break;
                }
                (o.track_id, o.time_base, o.delay) = (track.id, track.time_base, track.delay);
                o.params = params.clone();
                stream = OpusStream::open(&o)?;
                continue;
            }
            Err(e) => {
                if !decoded_any {
                    return Err(malformed(&o.format, e.to_string()));
                }
                // Damage after the audio: keep what was read.
                break;
            }
        };
        if packet.track_id != o.track_id || packet.data.is_empty() {
            continue;
        }
        let n = match stream.decoder.decode_float(&packet.data, &mut pcm, false) {
            Ok(n) => n.min(pcm.len()),
            // A damaged packet: skip it, as players do.
            Err(e) => {
                last_error = Some(format!("libopus: {e}"));
                continue;
            }
        };
        decoded_any = true;
        let mut frames = &pcm[..n];
        let start = (stream.skip + stream.to_16k_frames(packet.trim_start)).min(frames.len());
        stream.skip = stream.skip.saturating_sub(frames.len());
        frames = &frames[start..];
        let end = frames
            .len()
            .saturating_sub(stream.to_16k_frames(packet.trim_end));
        out.extend_from_slice(&frames[..end]);
        if out.len() as f64 > limit_frames {
            return Err(AudioError::TooLong { limit_s });
        }
    }
    if !decoded_any {
        return Err(match last_error {
            Some(e) => malformed(&o.format, format!("no decodable audio ({e})")),
            None => AudioError::Empty(o.format),
        });
    }
    if out.is_empty() {
        return Err(AudioError::Empty(o.format));
    }
    Ok(out)
}

/// What a file of no supported format looks like, for the error message.
fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    if bytes.is_empty() {
        return "an empty file".into();
    }
    let known = [
        (&b"FORM"[..], "AIFF"),
        (b"caff", "Core Audio (CAF)"),
        (b"MThd", "MIDI"),
        (b"#!AMR", "AMR"),
        (b"wvpk", "WavPack"),
        (b"MAC ", "Monkey's Audio"),
        (b"0&\xb2\x75", "ASF/WMA"),
        (b"RIFF", "a RIFF file that is not WAVE"),
    ];
    if let Some((_, name)) = known.iter().find(|(magic, _)| head.starts_with(magic)) {
        return format!("{name} data");
    }
    let text = head
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        let shown: String = String::from_utf8_lossy(head)
            .chars()
            .map(|c| if c.is_ascii_whitespace() { ' ' } else { c })
            .collect();
        format!("text starting {:?}", shown.trim_end())
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("data starting {}", hex.join(" "))
    }
}

/// The name of a codec symphonia demuxes but we may not decode.
fn codec_name(id: AudioCodecId) -> String {
    let name = match id {
        codec_ids::CODEC_ID_OPUS => "Opus",
        codec_ids::CODEC_ID_SPEEX => "Speex",
        codec_ids::CODEC_ID_VORBIS => "Vorbis",
        codec_ids::CODEC_ID_FLAC => "FLAC",
        codec_ids::CODEC_ID_MP1 => "MPEG Layer I",
        codec_ids::CODEC_ID_MP2 => "MPEG Layer II",
        codec_ids::CODEC_ID_MP3 => "MP3",
        codec_ids::CODEC_ID_AAC => "AAC",
        codec_ids::CODEC_ID_AC3 => "AC-3",
        codec_ids::CODEC_ID_EAC3 => "E-AC-3",
        codec_ids::CODEC_ID_AC4 => "AC-4",
        codec_ids::CODEC_ID_DCA => "DTS",
        codec_ids::CODEC_ID_ALAC => "ALAC",
        codec_ids::CODEC_ID_WMA => "WMA",
        codec_ids::CODEC_ID_WAVPACK => "WavPack",
        codec_ids::CODEC_ID_MONKEYS_AUDIO => "Monkey's Audio",
        codec_ids::CODEC_ID_TRUEHD => "TrueHD",
        codec_ids::CODEC_ID_ADPCM_G722
        | codec_ids::CODEC_ID_ADPCM_G726
        | codec_ids::CODEC_ID_ADPCM_G726LE
        | codec_ids::CODEC_ID_ADPCM_MS
        | codec_ids::CODEC_ID_ADPCM_IMA_WAV
        | codec_ids::CODEC_ID_ADPCM_IMA_QT => "ADPCM",
        symphonia::core::codecs::audio::CODEC_ID_NULL_AUDIO => "unknown",
        other => return format!("codec {other}"),
    };
    name.to_string()
}

/// Converts samples in -1..1 to 16-bit PCM.
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect()
}

/// Band-limited resampling with rubato (sinc interpolation).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    let mut r = Resampling::new(from, to)?;
    r.push(input)?;
    r.finish()
}

/// [`resample`] of a stream pushed in pieces: the same output as on the whole, holding only the
/// output and less than one input chunk.
struct Resampling {
    inner: rubato::SincFixedIn<f32>,
    /// Input not yet a whole chunk.
    pending: Vec<f32>,
    out: Vec<f32>,
    frames_in: u64,
    from: u32,
    to: u32,
}

impl Resampling {
    /// Frames per rubato call.
    const CHUNK: usize = 4096;

    fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        use rubato::{
            SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
        };
        let params = SincInterpolationParameters {
            sinc_len: 128,
            f_cutoff: 0.95,
            interpolation: SincInterpolationType::Linear,
            oversampling_factor: 128,
            window: WindowFunction::BlackmanHarris2,
        };
        let ratio = f64::from(to) / f64::from(from);
        let inner = SincFixedIn::<f32>::new(ratio, 1.0, params, Self::CHUNK, 1)
            .map_err(|e| AudioError::Resample(e.to_string()))?;
        Ok(Resampling {
            inner,
            pending: Vec::with_capacity(Self::CHUNK),
            out: Vec::new(),
            frames_in: 0,
            from,
            to,
        })
    }

    fn push(&mut self, input: &[f32]) -> Result<(), AudioError> {
        use rubato::Resampler;
        self.frames_in += input.len() as u64;
        let mut input = input;
        while !input.is_empty() {
            let take = (Self::CHUNK - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == Self::CHUNK {
                let block = self
                    .inner
                    .process(&[&self.pending], None)
                    .map_err(|e| AudioError::Resample(e.to_string()))?;
                self.out.extend_from_slice(&block[0]);
                self.pending.clear();
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<f32>, AudioError> {
        use rubato::Resampler;
        let err = |e: rubato::ResampleError| AudioError::Resample(e.to_string());
        // Only with frames left: rubato takes an empty partial block for an inactive channel and
        // fails (so an input of a multiple of `CHUNK` frames used to fail here).
        if !self.pending.is_empty() {
            let block = self
                .inner
                .process_partial(Some(&[&self.pending]), None)
                .map_err(err)?;
            self.out.extend_from_slice(&block[0]);
        }
        // Flush the filter's delay.
        let block = self
            .inner
            .process_partial::<&[f32]>(None, None)
            .map_err(err)?;
        self.out.extend_from_slice(&block[0]);
        let delay = self.inner.output_delay().min(self.out.len());
        let expected = self.frames_in * u64::from(self.to) / u64::from(self.from);
        self.out.drain(..delay);
        self.out
            .truncate(usize::try_from(expected).unwrap_or(usize::MAX));
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(spec: hound::WavSpec, frames: usize, f: impl Fn(usize) -> f32) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cursor, spec).expect("writer");
            for i in 0..frames {
                for _ in 0..spec.channels {
                    match spec.sample_format {
                        hound::SampleFormat::Float => w.write_sample(f(i)).expect("w"),
                        hound::SampleFormat::Int => {
                            w.write_sample((f(i) * 32767.0) as i16).expect("w")
                        }
                    }
                }
            }
            w.finalize().expect("finalize");
        }
        cursor.into_inner()
    }

    #[test]
    fn stereo_float_44k_becomes_16k_mono_of_the_same_duration() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let tone = |i: usize| (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin() * 0.5;
        let bytes = wav(spec, 44_100, tone);
        assert!((wav_duration_s(&bytes).expect("dur") - 1.0).abs() < 1e-6);
        let out = decode_wav_16k(&bytes).expect("decode");
        assert_eq!(out.len(), 16_000);
        let peak = out[1000..15000].iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.02, "peak {peak}");
    }

    #[test]
    fn resampling_takes_any_length_whole_chunks_included() {
        for len in [0, 1, 4095, 4096, 8192, 44_100] {
            let input: Vec<f32> = (0..len).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
            let out = resample(&input, 44_100, 16_000).expect("resample");
            assert_eq!(out.len(), len * 16_000 / 44_100, "{len} frames");
        }
        // Pushed in pieces of any size (packets, as decoders give them): the same output.
        let input: Vec<f32> = (0..30_000)
            .map(|i| (i as f32 * 0.003).sin() * 0.5)
            .collect();
        let whole = resample(&input, 22_050, 16_000).expect("whole");
        let mut pieces = Resampling::new(22_050, 16_000).expect("new");
        for piece in input.chunks(1152) {
            pieces.push(piece).expect("push");
        }
        assert_eq!(pieces.finish().expect("finish"), whole);
    }

    #[test]
    fn garbage_and_empty_files_are_errors_not_panics() {
        let garbage = decode_audio_16k(b"definitely not RIFF").expect_err("garbage");
        assert!(
            matches!(garbage, AudioError::Unrecognised { .. }),
            "{garbage}"
        );
        assert_eq!(garbage.code(), "invalid_audio");
        assert!(
            garbage
                .to_string()
                .contains("text starting \"definitely not R")
                && garbage.to_string().contains(SUPPORTED),
            "{garbage}"
        );
        assert!(matches!(
            decode_wav_16k(b"definitely not RIFF"),
            Err(AudioError::Malformed { .. })
        ));
        // What tests/tests/jobs.rs submits as audio jobs that must fail.
        for junk in [
            &b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk"[..],
            b"ID3\x04\x00\x00\x00\x00\x00\x0ajunkjunkjunkjunk",
        ] {
            for e in [
                decode_audio_16k(junk).expect_err("junk decodes"),
                audio_duration_s(junk).expect_err("junk has a duration"),
            ] {
                assert_eq!(e.code(), "invalid_audio");
                assert!(e.to_string().contains(SUPPORTED), "{e}");
            }
        }
        let empty = decode_audio_16k(b"").expect_err("empty");
        assert!(empty.to_string().contains("an empty file"), "{empty}");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let silent = decode_audio_16k(&wav(spec, 0, |_| 0.0)).expect_err("no samples");
        assert!(matches!(silent, AudioError::Empty(_)), "{silent}");
        assert_eq!(silent.code(), "invalid_audio");
        let mut truncated = wav(spec, 1600, |_| 0.1);
        truncated.truncate(30);
        assert!(decode_wav_16k(&truncated).is_err());
        assert!(decode_audio_16k(&truncated).is_err());
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        let sniff = AudioFormat::sniff;
        assert_eq!(
            sniff(b"RIFF\x24\x00\x00\x00WAVEfmt "),
            Some(AudioFormat::Wav)
        );
        assert_eq!(sniff(b"RIFF"), None);
        assert_eq!(sniff(b"fLaC\x00\x00\x00\x22"), Some(AudioFormat::Flac));
        assert_eq!(sniff(b"OggS\x00\x02"), Some(AudioFormat::Ogg));
        assert_eq!(sniff(b"ID3\x04\x00"), Some(AudioFormat::Mp3));
        // MPEG-1 Layer III, 128 kb/s, 44.1 kHz; MPEG-2 Layer III, 40 kb/s, 22.05 kHz.
        assert_eq!(sniff(b"\xff\xfb\x90\x64"), Some(AudioFormat::Mp3));
        assert_eq!(sniff(b"\xff\xf3\x50\xc4"), Some(AudioFormat::Mp3));
        assert_eq!(sniff(b"\x00\x00\x00\x1cftypM4A "), Some(AudioFormat::Mp4));
        assert_eq!(sniff(b"\xff\xf1\x58\x40"), Some(AudioFormat::Adts));
        assert_eq!(sniff(b"\x1a\x45\xdf\xa3\x9f\x42"), Some(AudioFormat::WebM));
        // Subtitles, with and without a byte-order mark (UTF-16 LE's FF FE is no frame sync).
        assert_eq!(sniff(b"1\n00:00:01,000 --> 00:00:02,000\n"), None);
        assert_eq!(sniff(b"WEBVTT\n\n"), None);
        assert_eq!(sniff(b"\xef\xbb\xbf1\n00:00"), None);
        assert_eq!(sniff(b"\xff\xfe1\x00\n\x00"), None);
        assert_eq!(sniff(b"\xfe\xff\x001\x00\n"), None);
        assert_eq!(sniff(b""), None);
        assert!(looks_like_audio(b"fLaC") && !looks_like_audio(b"fLa"));
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/audio")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// jfk.wav, the source of every fixture, decoded by hound: from `VOXBRIDGE_AUDIO_DIR`, by
    /// default `../shared/audio` beside the workspace (as the integration tests find it).
    fn reference() -> Vec<f32> {
        let dir = std::env::var_os("VOXBRIDGE_AUDIO_DIR").map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/audio"),
            std::path::PathBuf::from,
        );
        let path = dir.join("jfk.wav");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        decode_wav_16k(&bytes).expect("jfk.wav")
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    /// RMS per 20 ms window.
    fn envelope(x: &[f32]) -> Vec<f32> {
        x.chunks(320).map(rms).collect()
    }

    /// Pearson correlation of two envelopes, `b` shifted by `lag` windows.
    fn correlation(a: &[f32], b: &[f32], lag: isize) -> f32 {
        let pairs: Vec<(f32, f32)> = (0..a.len())
            .filter_map(|i| {
                let j = i as isize + lag;
                (j >= 0 && (j as usize) < b.len()).then(|| (a[i], b[j as usize]))
            })
            .collect();
        let n = pairs.len() as f32;
        let (ma, mb) = pairs
            .iter()
            .fold((0.0, 0.0), |(x, y), (a, b)| (x + a / n, y + b / n));
        let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
        for (a, b) in &pairs {
            cov += (a - ma) * (b - mb);
            va += (a - ma) * (a - ma);
            vb += (b - mb) * (b - mb);
        }
        cov / (va * vb).sqrt().max(f32::MIN_POSITIVE)
    }

    /// Decodes a fixture and checks it is jfk: ≈11 s of 16 kHz audio, not silent, and its
    /// loudness envelope follows the WAV's (best over ±100 ms of encoder delay) closely.
    fn check_lossy(name: &str) {
        let bytes = fixture(name);
        let want = reference();
        let got = decode_audio_16k(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seconds = got.len() as f64 / f64::from(SAMPLE_RATE);
        assert!((seconds - 11.0).abs() <= 0.1, "{name}: {seconds} s");
        let stated = audio_duration_s(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!((stated - 11.0).abs() <= 0.1, "{name}: stated {stated} s");
        assert!(
            rms(&got) > 0.5 * rms(&want),
            "{name}: rms {} vs {}",
            rms(&got),
            rms(&want)
        );
        let (a, b) = (envelope(&want), envelope(&got));
        let (lag, best) = (-5..=5)
            .map(|lag| (lag, correlation(&a, &b, lag)))
            .fold((0, f32::MIN), |m, x| if x.1 > m.1 { x } else { m });
        assert!(
            best > 0.95,
            "{name}: envelope correlation {best} at lag {lag}"
        );
        // Sample by sample too, over 2 s of speech (after the envelope's alignment, to within
        // a window): lossy, but the same waveform.
        let shift = lag * 320;
        let (from, to) = (3 * SAMPLE_RATE as usize, 5 * SAMPLE_RATE as usize);
        let best_sample = (-320..=320)
            .map(|d: isize| {
                let (mut num, mut ea, mut eb) = (0.0f64, 0.0f64, 0.0f64);
                for (i, x) in want[from..to].iter().enumerate() {
                    let j = (from + i) as isize + shift + d;
                    let Some(y) = usize::try_from(j).ok().and_then(|j| got.get(j)) else {
                        continue;
                    };
                    num += f64::from(*x) * f64::from(*y);
                    ea += f64::from(*x) * f64::from(*x);
                    eb += f64::from(*y) * f64::from(*y);
                }
                num / (ea * eb).sqrt().max(f64::MIN_POSITIVE)
            })
            .fold(f64::MIN, f64::max);
        assert!(
            best_sample > 0.9,
            "{name}: waveform correlation {best_sample}"
        );
    }

    #[test]
    fn flac_decodes_to_the_wav_samples() {
        let bytes = fixture("jfk.flac");
        let want = reference();
        let got = decode_audio_16k(&bytes).expect("flac");
        assert_eq!(got.len(), want.len());
        assert_eq!(got.len(), 11 * SAMPLE_RATE as usize);
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "largest difference {worst}");
        assert!(rms(&got) > 0.01);
        assert!((audio_duration_s(&bytes).expect("duration") - 11.0).abs() < 1e-9);
    }

    #[test]
    fn mp3_decodes_to_jfk() {
        check_lossy("jfk.mp3");
    }

    #[test]
    fn ogg_vorbis_decodes_to_jfk() {
        check_lossy("jfk.ogg");
    }

    #[test]
    fn m4a_aac_decodes_to_jfk() {
        check_lossy("jfk.m4a");
    }

    #[test]
    fn adts_aac_decodes_to_jfk() {
        check_lossy("jfk.aac");
    }

    #[test]
    fn ogg_opus_decodes_to_jfk() {
        check_lossy("jfk.opus");
    }

    /// Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, initial value 0).
    fn ogg_crc(data: &[u8]) -> u32 {
        data.iter().fold(0u32, |crc, &b| {
            (0..8).fold(crc ^ (u32::from(b) << 24), |c, _| {
                if c & 0x8000_0000 != 0 {
                    (c << 1) ^ 0x04c1_1db7
                } else {
                    c << 1
                }
            })
        })
    }

    /// An Ogg file with every page's stream serial number set to `serial` (and its CRC redone):
    /// appended to another Ogg file, a second logical stream of a chained file.
    fn with_serial(bytes: &[u8], serial: u32) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let mut at = 0;
        while at < out.len() {
            assert_eq!(&out[at..at + 4], b"OggS", "a page at {at}");
            let segments = usize::from(out[at + 26]);
            let body: usize = out[at + 27..at + 27 + segments]
                .iter()
                .map(|&b| usize::from(b))
                .sum();
            let len = 27 + segments + body;
            out[at + 14..at + 18].copy_from_slice(&serial.to_le_bytes());
            out[at + 22..at + 26].fill(0);
            let crc = ogg_crc(&out[at..at + len]);
            out[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
            at += len;
        }
        out
    }

    #[test]
    fn every_stream_of_a_chained_ogg_file_is_decoded() {
        // The CRC is Ogg's: rewriting a page with its own serial number gives the same bytes.
        let opus = fixture("jfk.opus");
        let serial = u32::from_le_bytes(opus[14..18].try_into().expect("4 bytes"));
        assert_eq!(with_serial(&opus, serial), opus);
        for name in ["jfk.opus", "jfk.ogg"] {
            let one = fixture(name);
            let single = decode_audio_16k(&one).expect("one stream");
            let mut chained = one.clone();
            chained.extend(with_serial(&one, 0x5eed_0001));
            let got = decode_audio_16k(&chained).expect("chained");
            // Vorbis goes through one resampler for both streams: a few frames either way.
            assert!(
                got.len().abs_diff(2 * single.len()) <= 64,
                "{name}: {} frames from two streams of {}",
                got.len(),
                single.len()
            );
            assert_eq!(
                &got[..single.len() - 64],
                &single[..single.len() - 64],
                "{name}"
            );
            // The stated length counts both streams too (the up-front length check).
            let one_s = audio_duration_s(&one).expect("one stream's length");
            let both_s = audio_duration_s(&chained).expect("the chained length");
            assert!(
                (both_s - 2.0 * one_s).abs() < 0.05,
                "{name}: {both_s} s stated for two streams of {one_s} s"
            );
            if name == "jfk.opus" {
                // A fresh decoder and pre-skip for the second stream: the same samples again.
                assert_eq!(&got[single.len()..], &single[..], "{name}");
            }
        }
    }

    #[test]
    fn webm_opus_decodes_to_jfk() {
        check_lossy("jfk.webm");
    }

    #[test]
    fn an_unsupported_codec_is_an_invalid_audio_error_naming_it() {
        let bytes = fixture("jfk-alac.m4a");
        for e in [
            decode_audio_16k(&bytes).expect_err("alac decodes?"),
            audio_duration_s(&bytes).expect_err("alac has a duration?"),
        ] {
            assert!(matches!(e, AudioError::UnsupportedCodec { .. }), "{e}");
            assert_eq!(e.code(), "invalid_audio");
            let message = e.to_string();
            assert!(
                message.contains("MP4/M4A file with ALAC audio"),
                "{message}"
            );
            assert!(message.contains(SUPPORTED), "{message}");
        }
    }

    #[test]
    fn opus_headers_are_read() {
        let head = fixture("jfk.opus");
        let at = head
            .windows(8)
            .position(|w| w == b"OpusHead")
            .expect("OpusHead");
        let parsed = OpusHead::parse(&head[at..]).expect("parse");
        assert_eq!(
            (parsed.channels, parsed.mapping_family, parsed.streams),
            (1, 0, 1)
        );
        assert_eq!(parsed.pre_skip, 312);
        assert_eq!(OpusHead::parse(b"OpusHead"), None);
        assert_eq!(
            OpusHead::parse(b"OpusTags\x01\x01\x38\x01\x80\xbb\0\0\0\0\0"),
            None
        );
    }

    #[test]
    fn decoding_stops_with_audio_too_long_past_a_limit() {
        for name in ["jfk.mp3", "jfk.flac", "jfk.opus", "jfk.webm"] {
            let bytes = fixture(name);
            let e = decode_audio_16k_limited(&bytes, 5.0).expect_err("over 5 s");
            assert!(matches!(e, AudioError::TooLong { .. }), "{name}: {e}");
            assert_eq!(e.code(), "audio_too_long");
            assert!(decode_audio_16k_limited(&bytes, 12.0).is_ok(), "{name}");
        }
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let two_seconds = wav(spec, 16_000, |_| 0.1);
        let e = decode_audio_16k_limited(&two_seconds, 1.5).expect_err("over 1.5 s");
        assert_eq!(e.code(), "audio_too_long", "{e}");
        assert_eq!(
            decode_audio_16k_limited(&two_seconds, 2.0)
                .expect("2 s")
                .len(),
            32_000
        );
    }

    #[test]
    fn a_wav_hound_cannot_read_goes_to_symphonia() {
        // 64-bit float WAV (format tag 3): hound refuses it, symphonia reads it.
        let frames = 8_000u32;
        let mut bytes = Vec::new();
        let data_len = frames * 8;
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
        bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
        bytes.extend_from_slice(&8_000u32.to_le_bytes()); // 8 kHz
        bytes.extend_from_slice(&(8_000u32 * 8).to_le_bytes());
        bytes.extend_from_slice(&8u16.to_le_bytes());
        bytes.extend_from_slice(&64u16.to_le_bytes());
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..frames {
            let s = (f64::from(i) * 440.0 * std::f64::consts::TAU / 8_000.0).sin() * 0.5;
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        assert!(
            decode_wav_16k(&bytes).is_err(),
            "hound reads 64-bit float now"
        );
        assert!((audio_duration_s(&bytes).expect("duration") - 1.0).abs() < 1e-6);
        let out = decode_audio_16k(&bytes).expect("decode");
        assert_eq!(out.len(), 16_000);
        let peak = out[1000..15000].iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.02, "peak {peak}");
    }

    /// A small deterministic generator (xorshift64*), so the damage is the same every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn damaged_files_of_every_format_are_errors_or_audio_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let names = [
            "jfk.flac",
            "jfk.mp3",
            "jfk.ogg",
            "jfk.m4a",
            "jfk.aac",
            "jfk.opus",
            "jfk.webm",
            "jfk-alac.m4a",
        ];
        // (what, bytes, whether it holds no whole audio frame and so must be an error)
        let mut inputs: Vec<(String, Vec<u8>, bool)> = Vec::new();
        for name in names {
            let good = fixture(name);
            // Only the magic bytes, then random bytes: must be an error.
            for keep in [4usize, 8, 12] {
                let mut bytes = good[..keep].to_vec();
                bytes.extend((0..4096).map(|_| rng.next() as u8));
                inputs.push((format!("{name}: {keep} bytes + noise"), bytes, true));
            }
            // Truncated: the first bytes (headers cut), and at random points.
            for len in [1, 3, 16, 64, 200, 1000] {
                let cut = good[..len].to_vec();
                inputs.push((format!("{name}: first {len} bytes"), cut, len <= 16));
            }
            for _ in 0..6 {
                let len = rng.below(good.len());
                inputs.push((format!("{name}: cut at {len}"), good[..len].to_vec(), false));
            }
            // Corrupted: random bytes overwritten, in the headers and anywhere.
            for round in 0..24 {
                let mut bytes = good.clone();
                let span = if round % 2 == 0 {
                    512.min(bytes.len())
                } else {
                    bytes.len()
                };
                for _ in 0..1 + rng.below(16) {
                    let at = rng.below(span);
                    bytes[at] = rng.next() as u8;
                }
                inputs.push((format!("{name}: corrupted #{round}"), bytes, false));
            }
        }
        // Pure noise, and noise behind each sniffed magic.
        for magic in [
            &b""[..],
            b"ID3\x04",
            b"\xff\xfb\x90\x64",
            b"\xff\xf1\x58\x40",
            b"\x1a\x45\xdf\xa3",
            b"OggS",
        ] {
            let mut bytes = magic.to_vec();
            bytes.extend((0..8192).map(|_| rng.next() as u8));
            inputs.push((format!("noise after {magic:02x?}"), bytes, true));
        }
        for (what, bytes, noise_or_headers_only) in inputs {
            let decoded = std::panic::catch_unwind(|| {
                (
                    decode_audio_16k(&bytes).map(|s| s.len()),
                    audio_duration_s(&bytes),
                )
            });
            let Ok((decoded, duration)) = decoded else {
                panic!("{what}: panicked");
            };
            if let Err(e) = &decoded {
                assert_eq!(e.code(), "invalid_audio", "{what}: {e}");
            }
            if let Err(e) = &duration {
                assert_eq!(e.code(), "invalid_audio", "{what}: {e}");
            }
            if noise_or_headers_only {
                assert!(decoded.is_err(), "{what}: decoded {decoded:?}");
            }
        }
    }
}
