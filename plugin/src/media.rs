//! Audio files in and out: WAV through `hound`, as planar f32.
//!
//! The only place Refrain reads or writes audio files; the CLI, licence issuing (the reference
//! fingerprint) and the tests all come here.

use std::path::Path;

/// Why an audio file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Reads a WAV file as planar f32.
pub fn read_wav(path: &Path) -> Result<(Vec<Vec<f32>>, u32), MediaError> {
    let err = |e: hound::Error| MediaError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut r = hound::WavReader::open(path).map_err(err)?;
    let spec = r.spec();
    let ch = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(err)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(err)?
        }
    };
    let mut out = vec![Vec::with_capacity(samples.len() / ch.max(1)); ch];
    for (i, s) in samples.into_iter().enumerate() {
        out[i % ch].push(s);
    }
    Ok((out, spec.sample_rate))
}

/// Writes planar f32 as a 32-bit float WAV.
pub fn write_wav(path: &Path, audio: &[Vec<f32>], rate: u32) -> Result<(), MediaError> {
    let err = |e: hound::Error| MediaError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: audio.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for i in 0..audio.first().map_or(0, |c| c.len()) {
        for c in audio {
            w.write_sample(c[i]).map_err(err)?;
        }
    }
    w.finalize().map_err(err)
}
