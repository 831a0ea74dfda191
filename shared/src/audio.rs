//! WAV input for audio-file jobs and the command-line client: any sample rate, channel count
//! and sample format (8/16/24/32-bit integer, 32-bit float) decoded with `hound`, down-mixed
//! to mono and resampled to 16 kHz with `rubato` (band-limited sinc interpolation).

/// Samples per second Whisper (and the wire format) uses.
pub const SAMPLE_RATE: u32 = 16_000;

/// Why audio could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("not a readable WAV file: {0}")]
    NotWav(String),
    #[error("WAV file has no audio samples")]
    Empty,
    #[error("resampling failed: {0}")]
    Resample(String),
}

impl AudioError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AudioError::NotWav(_) | AudioError::Empty => "invalid_audio",
            AudioError::Resample(_) => "internal",
        }
    }
}

/// The format of a WAV file, from its header alone (cheap: use it to check a duration limit
/// before decoding).
pub fn wav_duration_s(bytes: &[u8]) -> Result<f64, AudioError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| AudioError::NotWav(e.to_string()))?;
    let spec = reader.spec();
    Ok(f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1)))
}

/// Decodes a WAV file to 16 kHz mono samples in -1..1.
pub fn decode_wav_16k(bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| AudioError::NotWav(e.to_string()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let floats: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| AudioError::NotWav(e.to_string()))?,
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample.saturating_sub(1))) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| s as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(|e| AudioError::NotWav(e.to_string()))?
        }
    };
    if floats.is_empty() {
        return Err(AudioError::Empty);
    }
    let mono: Vec<f32> = floats
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if spec.sample_rate == SAMPLE_RATE {
        Ok(mono)
    } else {
        resample(&mono, spec.sample_rate, SAMPLE_RATE)
    }
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
    use rubato::{
        Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
    };
    let err = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
    let params = SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Linear,
        oversampling_factor: 128,
        window: WindowFunction::BlackmanHarris2,
    };
    let chunk = 4096;
    let mut resampler =
        SincFixedIn::<f32>::new(f64::from(to) / f64::from(from), 1.0, params, chunk, 1)
            .map_err(|e| err(&e))?;
    let mut out = Vec::with_capacity(input.len() * to as usize / from as usize + chunk);
    let mut pos = 0;
    while pos + chunk <= input.len() {
        let block = resampler
            .process(&[&input[pos..pos + chunk]], None)
            .map_err(|e| err(&e))?;
        out.extend_from_slice(&block[0]);
        pos += chunk;
    }
    let block = resampler
        .process_partial(Some(&[&input[pos..]]), None)
        .map_err(|e| err(&e))?;
    out.extend_from_slice(&block[0]);
    // Flush the filter's delay.
    let block = resampler
        .process_partial::<&[f32]>(None, None)
        .map_err(|e| err(&e))?;
    out.extend_from_slice(&block[0]);
    let delay = resampler.output_delay();
    let expected = input.len() * to as usize / from as usize;
    Ok(out.into_iter().skip(delay).take(expected).collect())
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
    fn garbage_and_empty_files_are_errors_not_panics() {
        assert!(matches!(
            decode_wav_16k(b"definitely not RIFF"),
            Err(AudioError::NotWav(_))
        ));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        assert!(matches!(
            decode_wav_16k(&wav(spec, 0, |_| 0.0)),
            Err(AudioError::Empty)
        ));
        let mut truncated = wav(spec, 1600, |_| 0.1);
        truncated.truncate(30);
        assert!(decode_wav_16k(&truncated).is_err());
    }
}
