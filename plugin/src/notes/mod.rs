//! Notes out of audio: Spotify's Basic Pitch (real trained weights, Apache-2.0; shared/MODELS.md
//! §5) and the reference's note decoder, to a standard MIDI file.
//!
//! The files, in the order audio goes through them: [`basic_pitch`] (the model and its exact
//! 2 s windowing at 22,050 Hz: the posteriorgrams and the time of every frame), [`decode`]
//! (onsets and note activations into notes, as `note_creation.py` does it), [`midi`] (notes
//! into a standard MIDI file, written atomically), [`tracker`] (the same while the audio plays:
//! the plugin's note output). [`notes_of_file`] is `refrain notes`.

pub mod basic_pitch;
pub mod decode;
pub mod midi;
pub mod tracker;

use crate::engine::resample::RateChange;
use crate::media::{AudioReader, MediaError};
use std::path::Path;

/// One note found in the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Seconds from the start of the input.
    pub start: f64,
    pub end: f64,
    /// MIDI key (21 = A0 .. 108 = C8).
    pub key: u8,
    /// MIDI velocity, from the mean note activation (as the reference does).
    pub velocity: u8,
    /// With pitch bends on: (seconds, bend in thirds of a semitone) for each frame of the note,
    /// from Basic Pitch's pitch contour (as the reference's `get_pitch_bends`).
    pub bends: Vec<(f64, i8)>,
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

/// Frames decoded at once (30 s), and the frames after them the decoder also sees (10 s) so a
/// note near the end of a chunk is followed to its end. A note longer than that is split.
pub const CHUNK_FRAMES: usize = 2_584;
pub const MARGIN_FRAMES: usize = 861;
/// Frames before a chunk kept for the onset peaks and inferred onsets (which look back 2).
const CONTEXT_FRAMES: usize = 2;

/// Notes decoded chunk by chunk as frames arrive, so memory does not grow with the input's
/// length (a posteriorgram is 704 bytes a frame, 61 KB a second).
struct ChunkedDecoder {
    settings: decode::Settings,
    /// Frames from `base` on (the first `CONTEXT_FRAMES` of them before the chunk, once past
    /// the start).
    frames: basic_pitch::Posteriorgram,
    base: usize,
    /// Notes already out that run on past what was decoded: (key index, start, end), in
    /// absolute frames.
    running: Vec<(usize, usize, usize)>,
    found: Vec<Note>,
}

impl ChunkedDecoder {
    fn push(&mut self, more: &mut basic_pitch::Posteriorgram) {
        self.frames.times.append(&mut more.times);
        self.frames.notes.append(&mut more.notes);
        self.frames.onsets.append(&mut more.onsets);
        self.frames.contours.append(&mut more.contours);
        while self.frames.len() >= self.context() + CHUNK_FRAMES + MARGIN_FRAMES {
            self.decode(false);
        }
    }

    fn context(&self) -> usize {
        CONTEXT_FRAMES.min(self.base)
    }

    /// Decodes the next chunk (or, at the end, everything left).
    fn decode(&mut self, last: bool) {
        let ctx = self.context();
        let keep_end = if last {
            self.frames.len()
        } else {
            ctx + CHUNK_FRAMES
        };
        let taken: Vec<(usize, usize, usize)> = self
            .running
            .iter()
            .map(|&(k, from, to)| {
                let shift = self.base - ctx;
                (k, from.saturating_sub(shift), to.saturating_sub(shift))
            })
            .collect();
        for f in decode::decode(&self.frames, &self.settings, &taken) {
            if f.start < ctx || f.start >= keep_end {
                continue;
            }
            self.found
                .push(f.note(&self.frames, self.settings.pitch_bends));
            let abs = self.base - ctx;
            if f.end > keep_end {
                self.running.push((f.key, abs + f.start, abs + f.end));
            }
        }
        if last {
            return;
        }
        // The next chunk starts at the end of this one, with its context before it.
        let next_base = self.base - ctx + keep_end;
        self.frames.drop_front(keep_end - CONTEXT_FRAMES);
        self.base = next_base;
        self.running
            .retain(|&(_, _, end)| end > next_base - CONTEXT_FRAMES);
    }
}

/// Reads `input` (any format [`crate::media`] reads, any rate and channel count), mixes it to
/// mono, resamples it to 22,050 Hz and finds its notes, window by window and chunk by chunk:
/// memory stays the same whatever the input's length.
pub fn notes_of_file(
    input: &Path,
    model: &mut basic_pitch::BasicPitch,
    settings: &decode::Settings,
) -> Result<Vec<Note>, NotesError> {
    use basic_pitch::{ADVANCE, FRONT_PAD, RATE, WINDOW};
    settings.check()?;
    let mut reader = AudioReader::open(input)?;
    let channels = reader.channels();
    let rate = reader.sample_rate();
    let mut to_rate = RateChange::new(rate, RATE, 1)
        .map_err(|e| NotesError::Model(format!("resampling {rate} Hz to 22050 Hz: {e}")))?;
    let mut decoder = ChunkedDecoder {
        settings: *settings,
        frames: Default::default(),
        base: 0,
        running: Vec::new(),
        found: Vec::new(),
    };
    // The padded stream from sample `start` (the next window's) on: FRONT_PAD zeros, then the
    // audio at 22,050 Hz.
    let mut padded = vec![0.0f32; FRONT_PAD];
    let mut start = 0usize;
    let mut received = 0u64;
    let mut block = vec![Vec::new(); channels];
    let mut downmixed = Vec::new();
    let mut more = basic_pitch::Posteriorgram::default();
    loop {
        let n = reader.read(&mut block, 1 << 15)?;
        downmixed.clear();
        downmixed.extend((0..n).map(|i| block.iter().map(|c| c[i]).sum::<f32>() / channels as f32));
        let before = padded.len();
        if n > 0 {
            to_rate.push(&[&downmixed], std::slice::from_mut(&mut padded));
        } else {
            to_rate.finish(std::slice::from_mut(&mut padded));
        }
        received += (padded.len() - before) as u64;
        let ended = n == 0;
        // Every window whose samples are all in (at the end: every window that starts inside
        // the padded stream, zeros after it).
        let total = FRONT_PAD as u64 + received;
        while (start as u64) < total && (ended || (start + WINDOW) as u64 <= total) {
            let mut window = vec![0.0f32; WINDOW];
            let have = padded.len().min(WINDOW);
            window[..have].copy_from_slice(&padded[..have]);
            model.window_frames(start, &window, &mut more)?;
            if ended {
                more.keep_before(received as f64 / RATE as f64);
            }
            decoder.push(&mut more);
            padded.drain(..ADVANCE.min(padded.len()));
            start += ADVANCE;
        }
        if ended {
            break;
        }
    }
    decoder.decode(true);
    let mut found = decoder.found;
    found.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.key.cmp(&b.key)));
    Ok(found)
}
