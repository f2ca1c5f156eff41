//! Basic Pitch (Spotify, ICASSP 2022, Apache-2.0) as the reference runs it (shared/MODELS.md §5):
//! mono at 22,050 Hz, 3,840 zeros in front, windows of 43,844 samples every 36,164, 15 frames
//! dropped at both ends of each window's 172. The windows' 142 kept frames do not tile evenly
//! (36,164 samples are 141.27 frames), so each kept frame carries its own exact time instead of
//! the reference's drifting grid.

use super::NotesError;
use crate::files;
use crate::models::{runtime, watchdog};
use ort::session::Session;
use ort::value::Tensor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The model's sample rate.
pub const RATE: u32 = 22_050;
/// Samples per window (2 s less one hop).
pub const WINDOW: usize = 43_844;
/// Samples between window starts.
pub const ADVANCE: usize = 36_164;
/// Zeros before the audio.
pub const FRONT_PAD: usize = 3_840;
/// Samples per frame.
pub const FRAME_HOP: usize = 256;
/// Frames a window gives, dropped at each end, kept.
pub const WINDOW_FRAMES: usize = 172;
pub const DROPPED: usize = 15;
pub const KEPT: usize = WINDOW_FRAMES - 2 * DROPPED;
/// Keys, from MIDI 21 (A0).
pub const KEYS: usize = 88;
/// Pitch contour bins: three per semitone from A0 (27.5 Hz).
pub const CONTOUR_BINS: usize = 264;
pub const LOWEST_KEY: u8 = 21;
/// The ONNX file in PyPI's `basic-pitch==0.4.0` (`saved_models/icassp_2022/nmp.onnx`).
pub const SHA256: &str = "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec";
/// The largest file read as the model (it is 230 KB).
const MAX_BYTES: u64 = 16 << 20;
const INPUT: &str = "serving_default_input_2:0";
const NOTE: &str = "StatefulPartitionedCall:1";
const ONSET: &str = "StatefulPartitionedCall:2";
const CONTOUR: &str = "StatefulPartitionedCall:0";

/// One window's outputs, each `[frame][bin]` flattened: notes, onsets, contours.
type WindowOutputs = (Vec<f32>, Vec<f32>, Vec<f32>);

/// The model's view of a stream: per frame, its time and the note and onset activations.
#[derive(Debug, Clone, Default)]
pub struct Posteriorgram {
    /// Seconds from the start of the input, per frame.
    pub times: Vec<f64>,
    pub notes: Vec<[f32; KEYS]>,
    pub onsets: Vec<[f32; KEYS]>,
    /// The pitch contour, for pitch bends.
    pub contours: Vec<[f32; CONTOUR_BINS]>,
}

impl Posteriorgram {
    /// Drops the frames at or after `seconds` (the end of the audio).
    pub fn keep_before(&mut self, seconds: f64) {
        let n = self.times.iter().take_while(|&&t| t < seconds).count();
        self.times.truncate(n);
        self.notes.truncate(n);
        self.onsets.truncate(n);
        self.contours.truncate(n);
    }

    /// Drops the first `n` frames.
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.times.len());
        self.times.drain(..n);
        self.notes.drain(..n);
        self.onsets.drain(..n);
        self.contours.drain(..n);
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// Basic Pitch, loaded.
pub struct BasicPitch {
    session: Session,
    watched: Arc<watchdog::Watched>,
    /// Where it runs, in words.
    pub device: String,
}

impl BasicPitch {
    /// Reads `path` (bounded, a regular file), checks it is Basic Pitch 0.4.0 by its sha256 (the
    /// decoder is for that model's outputs) and builds the session.
    pub fn load(path: &Path) -> Result<BasicPitch, NotesError> {
        let bytes = files::read_pinned(path, MAX_BYTES, SHA256).map_err(|e| match e {
            files::PinnedError::Read(e) => NotesError::ModelRead {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
            files::PinnedError::Other { sha256 } => NotesError::NotBasicPitch {
                path: path.display().to_string(),
                sha256,
                expected: SHA256,
            },
        })?;
        runtime::environment().map_err(|e| NotesError::Model(e.to_string()))?;
        let runtime::DeviceSession { session, device } =
            runtime::session_from_memory(&bytes).map_err(NotesError::Model)?;
        Ok(BasicPitch {
            session,
            watched: watchdog::watch(Duration::from_secs(30)).map_err(NotesError::Model)?,
            device,
        })
    }

    /// Runs every window over `audio` (mono, 22,050 Hz) and returns the frames that fall
    /// inside it, each at its exact time. (Streams go window by window: [`Self::window_frames`].)
    pub fn run(&mut self, audio: &[f32]) -> Result<Posteriorgram, NotesError> {
        let padded = FRONT_PAD + audio.len();
        let mut out = Posteriorgram::default();
        let mut window = vec![0.0f32; WINDOW];
        let mut start = 0;
        while start < padded {
            // Window samples [start, start + WINDOW) of the padded stream.
            for (i, w) in window.iter_mut().enumerate() {
                let p = start + i;
                *w = if p >= FRONT_PAD && p < padded {
                    audio[p - FRONT_PAD]
                } else {
                    0.0
                };
            }
            self.window_frames(start, &window, &mut out)?;
            start += ADVANCE;
        }
        out.keep_before(audio.len() as f64 / RATE as f64);
        Ok(out)
    }

    /// Runs the window that starts at sample `start` of the padded stream (a multiple of
    /// [`ADVANCE`]) and appends its kept frames to `out`.
    pub fn window_frames(
        &mut self,
        start: usize,
        window: &[f32],
        out: &mut Posteriorgram,
    ) -> Result<(), NotesError> {
        let (notes, onsets, contours) = self.run_window(window)?;
        for k in 0..KEPT {
            // Kept frame k sits at padded sample start + (k + 15) * 256, i.e. at
            // start + k * 256 of the audio.
            let j = DROPPED + k;
            let mut n = [0.0f32; KEYS];
            let mut o = [0.0f32; KEYS];
            n.copy_from_slice(&notes[j * KEYS..(j + 1) * KEYS]);
            o.copy_from_slice(&onsets[j * KEYS..(j + 1) * KEYS]);
            let mut c = [0.0f32; CONTOUR_BINS];
            c.copy_from_slice(&contours[j * CONTOUR_BINS..(j + 1) * CONTOUR_BINS]);
            out.times.push((start + k * FRAME_HOP) as f64 / RATE as f64);
            out.notes.push(n);
            out.onsets.push(o);
            out.contours.push(c);
        }
        Ok(())
    }

    /// One window's note, onset and contour activations, flattened.
    fn run_window(&mut self, window: &[f32]) -> Result<WindowOutputs, NotesError> {
        let err = |e: ort::Error| NotesError::Model(e.to_string());
        let input = Tensor::from_array(([1usize, WINDOW, 1], window.to_vec())).map_err(err)?;
        self.watched.begin();
        let result = self
            .session
            .run_with_options(ort::inputs![INPUT => input], self.watched.run_options());
        if self.watched.end() {
            return Err(NotesError::Model(
                "a window ran over 30 s and was stopped".into(),
            ));
        }
        let outputs = result.map_err(err)?;
        let take = |name: &str, width: usize| -> Result<Vec<f32>, NotesError> {
            let (shape, data) = outputs[name].try_extract_tensor::<f32>().map_err(err)?;
            if shape[..] != [1, WINDOW_FRAMES as i64, width as i64] {
                return Err(NotesError::Model(format!(
                    "its output `{name}` has shape {:?}, expected [1, 172, {width}]",
                    &shape[..]
                )));
            }
            Ok(data.to_vec())
        };
        Ok((
            take(NOTE, KEYS)?,
            take(ONSET, KEYS)?,
            take(CONTOUR, CONTOUR_BINS)?,
        ))
    }
}
