//! Notes out of audio: Spotify's Basic Pitch (real trained weights, Apache-2.0; shared/MODELS.md
//! §5) and the reference's note decoder, to a standard MIDI file.
//!
//! The files, in the order audio goes through them: [`basic_pitch`] (the model and its exact
//! 2 s windowing at 22,050 Hz: the posteriorgrams and the time of every frame), [`decode`]
//! (onsets and note activations into notes, as `note_creation.py` does it), [`midi`] (notes
//! into a standard MIDI file, written atomically). [`notes_of_file`] is `refrain notes`.

pub mod basic_pitch;
pub mod decode;
pub mod midi;

use crate::engine::resample::{FilterSpec, Resampler};
use crate::media::{AudioReader, MediaError};
use std::path::Path;

/// One note found in the audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    /// Seconds from the start of the input.
    pub start: f64,
    pub end: f64,
    /// MIDI key (21 = A0 .. 108 = C8).
    pub key: u8,
    /// MIDI velocity, from the mean note activation (as the reference does).
    pub velocity: u8,
}

/// Why notes could not be found or written. Each message names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("cannot read the note model {path}: {reason}")]
    ModelRead { path: String, reason: String },
    #[error("{path} is not Basic Pitch 0.4.0 (ICASSP 2022): its sha256 is {sha256}, Refrain's decoder is for {expected}")]
    NotBasicPitch {
        path: String,
        sha256: String,
        expected: &'static str,
    },
    #[error("Basic Pitch failed: {0}")]
    Model(String),
    #[error("{name} = {value}: {valid}")]
    Setting {
        name: &'static str,
        value: f64,
        valid: &'static str,
    },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Reads `input` (any format [`crate::media`] reads, any rate and channel count), mixes it to
/// mono, resamples it to 22,050 Hz and finds its notes.
pub fn notes_of_file(
    input: &Path,
    model: &mut basic_pitch::BasicPitch,
    settings: &decode::Settings,
) -> Result<Vec<Note>, NotesError> {
    settings.check()?;
    let mut reader = AudioReader::open(input)?;
    let channels = reader.channels();
    let rate = reader.sample_rate();
    let mut mono = Vec::new();
    let mut block = vec![Vec::new(); channels];
    let mut resampler = (rate != basic_pitch::RATE)
        .then(|| Resampler::new(rate, basic_pitch::RATE, FilterSpec::STUDIO, 0, 1, 1 << 16))
        .transpose()
        .map_err(|e| NotesError::Model(format!("resampling {rate} Hz to 22050 Hz: {e}")))?;
    let mut downmixed = Vec::new();
    let mut out = vec![0.0f32; 1 << 16];
    let mut frames: u64 = 0;
    loop {
        let n = reader.read(&mut block, 1 << 15)?;
        downmixed.clear();
        downmixed.extend((0..n).map(|i| block.iter().map(|c| c[i]).sum::<f32>() / channels as f32));
        frames += n as u64;
        match &mut resampler {
            None => mono.extend_from_slice(&downmixed),
            Some(r) => {
                if n == 0 {
                    // The end: outputs up to the last input sample.
                    let owed =
                        (frames as u128 * basic_pitch::RATE as u128).div_ceil(rate as u128) as u64;
                    let zeros = vec![0.0f32; 1 << 12];
                    while r.counts().1 < owed {
                        if r.ready() == 0 {
                            r.push(&zeros);
                        }
                        let want = ((owed - r.counts().1) as usize).min(out.len());
                        let k = r.produce(&mut out[..want.min(r.ready())]);
                        mono.extend_from_slice(&out[..k]);
                    }
                } else {
                    r.push(&downmixed);
                    while r.ready() > 0 {
                        let k = r.produce(&mut out);
                        mono.extend_from_slice(&out[..k]);
                    }
                }
            }
        }
        if n == 0 {
            break;
        }
    }
    let posteriorgram = model.run(&mono)?;
    Ok(decode::notes(&posteriorgram, settings))
}
