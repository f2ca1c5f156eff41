//! The voice's f0: what RVC's generator sings at, and what the pitch display shows.
//!
//! [`PitchModel`] is the interface: 16 kHz mono in, one f0 per 10 ms out (RVC's frame grid,
//! frame `j` at sample `j * 160`), 0 where unvoiced. [`SwiftF0`] is the default (real weights,
//! MIT, from PyPI's `swift-f0==0.3.0`, shared/MODELS.md §8); a voice may bring its own
//! ([`crate::voice::crepe`], named in its manifest: [`for_voice`]). [`clean`] cleans any model's raw track: octave errors folded
//! back onto the running pitch, single-frame glitches removed.

use crate::files;
use crate::models::{runtime, watchdog};
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The rate every pitch model here listens at.
pub const RATE: u32 = 16_000;
/// Samples per f0 frame at [`RATE`] (10 ms): RVC's grid.
pub const FRAME: usize = 160;
/// The f0 range searched, Hz (RVC's 50..1100, inside SwiftF0's 46.875..2093.75).
pub const F0_MIN: f32 = 50.0;
pub const F0_MAX: f32 = 1100.0;

/// Why the pitch model could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PitchError {
    #[error("cannot read the pitch model {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} is not SwiftF0 0.3.0's model.onnx (sha256 {sha256}, expected {expected}): `cargo xtask fetch-models` fetches it into models/real/swift-f0/")]
    NotSwiftF0 {
        path: String,
        sha256: String,
        expected: &'static str,
    },
    #[error("the pitch model failed: {0}")]
    Model(String),
    #[error("{file} is not a pitch model of its format: {reason}")]
    Contract { file: String, reason: String },
    #[error("SwiftF0 is not in the models folder (swift-f0/model.onnx; `cargo xtask fetch-models` fetches it into models/real, which REFRAIN_MODEL_PATH can name)")]
    Missing,
}

/// An f0 estimator on 16 kHz mono audio.
pub trait PitchModel: Send {
    /// Appends to `f0` one value per [`FRAME`] samples of `audio` (frame `j` is samples
    /// `j * FRAME .. (j + 1) * FRAME`, `audio.len() / FRAME` frames), in Hz, 0 where unvoiced.
    fn track(&mut self, audio: &[f32], f0: &mut Vec<f32>) -> Result<(), PitchError>;
    /// The model's name, for the editor and logs.
    fn name(&self) -> &str;
}

/// The pitch model of the voice in `package`: the one its manifest names (`[voice.pitch]`, from
/// the bytes the package read and checked), else SwiftF0 from the models folder.
pub fn for_voice(
    package: &crate::models::package::ModelPackage,
) -> Result<Box<dyn PitchModel>, PitchError> {
    let own = package
        .manifest
        .voice
        .as_ref()
        .and_then(|v| v.pitch.as_ref());
    let Some(own) = own else {
        return Ok(Box::new(SwiftF0::find()?));
    };
    let bytes = package
        .others
        .iter()
        .find(|(p, _)| *p == own.file)
        .map(|(_, b)| b)
        .ok_or_else(|| PitchError::Read {
            path: own.file.clone(),
            reason: "it is not among the model's files".into(),
        })?;
    // PITCH_FORMATS has one format: CREPE's.
    Ok(Box::new(super::crepe::Crepe::from_bytes(
        bytes,
        &own.file,
        own.threshold,
    )?))
}

/// SwiftF0 0.3.0's `model.onnx`, by its sha256 (shared/MODELS.md §8).
pub const SWIFT_F0_SHA256: &str =
    "6385e8c2ebc3872e82c9ff5946228de44cd3be77a750ea53698b7dbfe94b0a22";
/// SwiftF0's frame hop at 16 kHz.
const SWIFT_HOP: usize = 256;
/// Its wrapper's voicing threshold on the confidence output.
const SWIFT_VOICED: f32 = 0.5;
/// Hops whose peak is below this are silence, whatever the model says (it calls ~3% of
/// digital-silence frames voiced).
pub(crate) const SILENCE_PEAK: f32 = 1e-3;

/// Where SwiftF0 is looked for: `swift-f0/model.onnx` in the models folder or a folder of
/// `REFRAIN_MODEL_PATH` (set-up fetches it into `models/real/swift-f0/`).
pub fn find_swift_f0() -> Option<PathBuf> {
    crate::models::library::find_file("swift-f0/model.onnx")
}

/// SwiftF0 on ONNX Runtime.
pub struct SwiftF0 {
    session: Session,
    watched: Arc<watchdog::Watched>,
    /// Which device runs it.
    pub device: String,
    /// Per-SwiftF0-frame pitch (0 where unvoiced) of the last call (reused).
    frames: Vec<f32>,
    /// The model's own pitch and confidence per frame of the last call, before voicing.
    pub pitch: Vec<f32>,
    pub confidence: Vec<f32>,
    /// Each frame's peak level (its hop of audio).
    peaks: Vec<f32>,
}

impl SwiftF0 {
    /// Loads SwiftF0 from `path` (checked by sha256: another file is refused).
    pub fn load(path: &Path) -> Result<SwiftF0, PitchError> {
        let path_text = path.display().to_string();
        let bytes = files::read_pinned(path, 4 << 20, SWIFT_F0_SHA256).map_err(|e| match e {
            files::PinnedError::Read(e) => PitchError::Read {
                path: path_text.clone(),
                reason: e.to_string(),
            },
            files::PinnedError::Other { sha256 } => PitchError::NotSwiftF0 {
                path: path_text.clone(),
                sha256,
                expected: SWIFT_F0_SHA256,
            },
        })?;
        runtime::environment().map_err(|e| PitchError::Model(e.to_string()))?;
        let runtime::DeviceSession { session, device } =
            runtime::session_from_memory(&bytes).map_err(PitchError::Model)?;
        Ok(SwiftF0 {
            session,
            watched: watchdog::watch(Duration::from_secs(10)).map_err(PitchError::Model)?,
            device,
            frames: Vec::new(),
            pitch: Vec::new(),
            confidence: Vec::new(),
            peaks: Vec::new(),
        })
    }

    /// Loads SwiftF0 from the models folder.
    pub fn find() -> Result<SwiftF0, PitchError> {
        SwiftF0::load(&find_swift_f0().ok_or(PitchError::Missing)?)
    }

    /// SwiftF0's own frames over `audio`: one per 256 samples, frame `i` centred on sample
    /// `i * 256`, in Hz, 0 where unvoiced (confidence under 0.5, or a silent hop).
    pub fn raw(&mut self, audio: &[f32]) -> Result<&[f32], PitchError> {
        let err = |e: ort::Error| PitchError::Model(e.to_string());
        let n = audio.len().max(SWIFT_HOP);
        let mut samples = audio.to_vec();
        samples.resize(n, 0.0);
        let input = Tensor::from_array(([1usize, n], samples)).map_err(err)?;
        let fmin = Tensor::from_array(([0usize; 0], vec![F0_MIN])).map_err(err)?;
        let fmax = Tensor::from_array(([0usize; 0], vec![F0_MAX])).map_err(err)?;
        self.watched.begin();
        let result = self.session.run_with_options(
            ort::inputs!["audio" => input, "fmin" => fmin, "fmax" => fmax],
            self.watched.run_options(),
        );
        if self.watched.end() {
            return Err(PitchError::Model(
                "a call ran over 10 s and was stopped".into(),
            ));
        }
        let outputs = result.map_err(err)?;
        let (_, pitch) = outputs["pitch"].try_extract_tensor::<f64>().map_err(err)?;
        let (_, confidence) = outputs["confidence"]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        let frames = (n / SWIFT_HOP).max(1);
        if pitch.len() != frames || confidence.len() != frames {
            return Err(PitchError::Model(format!(
                "SwiftF0 returned {} pitch and {} confidence values for {n} samples, expected {frames}",
                pitch.len(),
                confidence.len()
            )));
        }
        self.frames.clear();
        self.pitch.clear();
        self.confidence.clear();
        self.peaks.clear();
        for i in 0..frames {
            let lo = (i * SWIFT_HOP).saturating_sub(SWIFT_HOP / 2);
            let hi = (i * SWIFT_HOP + SWIFT_HOP / 2).min(audio.len());
            let peak = audio
                .get(lo..hi)
                .map_or(0.0, |h| h.iter().fold(0.0f32, |m, x| m.max(x.abs())));
            let voiced = confidence[i] >= SWIFT_VOICED && peak >= SILENCE_PEAK;
            self.frames.push(if voiced { pitch[i] as f32 } else { 0.0 });
            self.pitch.push(pitch[i] as f32);
            self.peaks.push(peak);
            self.confidence.push(if peak >= SILENCE_PEAK {
                confidence[i]
            } else {
                0.0
            });
        }
        drop(outputs);
        self.continue_to_edge();
        Ok(&self.frames)
    }
}

impl SwiftF0 {
    /// SwiftF0 is sure of a frame once it has heard ~160 ms after it; a window's newest frames
    /// come back with low confidence even in a steady note, though their pitch is right
    /// (measured: a 200 -> 300 Hz step read 297-300 Hz at confidence 0-0.19 in the last three
    /// frames). A frame after the last sure one is voiced at the model's pitch while the audio
    /// stays within 10 dB of the sure frame's peak and either the model gives it some
    /// confidence ([`EDGE_CONFIDENCE`]) or it is one of the last [`EDGE_FRAMES`], and its pitch
    /// is within [`EDGE_STEP_CENTS`] of the frame before (a wild value at the very edge, seen
    /// at 967 Hz in a 250 Hz note, ends the continuation): the note goes on to the window's
    /// edge. A new note there is heard one run later, when it is sure.
    fn continue_to_edge(&mut self) {
        self.bridge_gaps();
        let Some(last) = self.frames.iter().rposition(|f| *f > 0.0) else {
            return;
        };
        let n = self.frames.len();
        let level = self.peaks[last];
        for i in last + 1..n {
            let sure_enough = self.confidence[i] >= EDGE_CONFIDENCE || i + EDGE_FRAMES >= n;
            let reference = self.frames[i - 1];
            let near = (1200.0 * (self.pitch[i] / reference).log2()).abs() <= EDGE_STEP_CENTS;
            if !sure_enough || !near || self.peaks[i] < 0.316 * level || self.pitch[i] <= 0.0 {
                break;
            }
            self.frames[i] = self.pitch[i];
        }
    }
}

impl SwiftF0 {
    /// A change of note makes SwiftF0 unsure for a few frames in the middle of a phrase too
    /// (its pitch there is still right). A gap of at most [`MAX_GAP`] frames between voiced
    /// ones, with the audio within 10 dB of both sides, takes the model's pitch where it lies
    /// between the two notes (two semitones of slack), else the line between them.
    fn bridge_gaps(&mut self) {
        let n = self.frames.len();
        let mut i = 0;
        while i < n {
            if self.frames[i] > 0.0 {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && self.frames[i] == 0.0 {
                i += 1;
            }
            if start == 0 || i == n || i - start > MAX_GAP {
                continue;
            }
            let floor = 0.316 * self.peaks[start - 1].min(self.peaks[i]);
            let (a, b) = (self.frames[start - 1], self.frames[i]);
            // Between the two notes, give or take two semitones.
            let (lo, hi) = (a.min(b) / 1.1225, a.max(b) * 1.1225);
            if (start..i).all(|j| self.peaks[j] >= floor) {
                for j in start..i {
                    let p = self.pitch[j];
                    self.frames[j] = if p >= lo && p <= hi {
                        p
                    } else {
                        // A wild value: the line between the two notes instead.
                        let t = (j + 1 - start) as f32 / (i + 1 - start) as f32;
                        (a.ln() * (1.0 - t) + b.ln() * t).exp()
                    };
                }
            }
        }
    }
}

/// The longest unsure stretch inside a phrase that is bridged: 6 frames, 96 ms.
const MAX_GAP: usize = 6;

/// The confidence a window's newest frames need to continue a sure note.
const EDGE_CONFIDENCE: f32 = 0.15;
/// The newest frames (16 ms each) whose pitch counts on its own when it continues a note.
const EDGE_FRAMES: usize = 3;
/// How far one edge frame may move from the one before and still continue the note.
const EDGE_STEP_CENTS: f32 = 100.0;

impl PitchModel for SwiftF0 {
    fn track(&mut self, audio: &[f32], f0: &mut Vec<f32>) -> Result<(), PitchError> {
        self.raw(audio)?;
        regrid(&self.frames, SWIFT_HOP, audio.len() / FRAME, f0);
        Ok(())
    }

    fn name(&self) -> &str {
        "SwiftF0"
    }
}

/// Reads a track with frames every `hop` samples onto the 10 ms grid (`count` frames):
/// between two voiced frames, interpolated in log frequency; next to one, that one; else 0.
/// Past the last frame (the newest audio of a window) the last frame holds.
pub fn regrid(frames: &[f32], hop: usize, count: usize, out: &mut Vec<f32>) {
    let last = frames.len().saturating_sub(1);
    for j in 0..count {
        // Frame j's pitch is the pitch in the middle of its 10 ms: the generator sings it over
        // samples [j, j + 1) x its frame length.
        let pos = (j * FRAME + FRAME / 2) as f32 / hop as f32;
        let i = (pos.floor() as usize).min(last);
        let t = (pos - i as f32).min(1.0);
        let a = frames.get(i).copied().unwrap_or(0.0);
        let b = frames.get(i + 1).copied().unwrap_or(a);
        out.push(match (a > 0.0, b > 0.0) {
            (true, true) => (a.ln() * (1.0 - t) + b.ln() * t).exp(),
            (true, false) if t <= 0.5 => a,
            (false, true) if t >= 0.5 => b,
            _ => 0.0,
        });
    }
}

/// Cleans a window's f0 track in place (a voice's run sees its window at once, so the median
/// can look both ways and a phrase's first voiced frame is not held back a frame): a frame an
/// octave (or a twelfth) away from the pitch the track has been following is folded back onto
/// it, then a centred 3-frame median smooths the rest, dropping a voiced frame alone between
/// unvoiced ones.
pub fn clean(f0: &mut [f32]) {
    // The pitch followed, slowly, so one wrong frame cannot drag the reference.
    let mut running = 0.0f32;
    for f in f0.iter_mut().filter(|f| **f > 0.0) {
        if running > 0.0 {
            for k in [2.0f32, 0.5, 3.0, 1.0 / 3.0] {
                if (1200.0 * (*f / (running * k)).log2()).abs() < 80.0 {
                    *f /= k;
                    break;
                }
            }
            running = (running.ln() * 0.7 + f.ln() * 0.3).exp();
        } else {
            running = *f;
        }
    }
    let (mut before, mut here) = (0.0f32, f0.first().copied().unwrap_or(0.0));
    for i in 0..f0.len() {
        let after = f0.get(i + 1).copied().unwrap_or(here);
        // The median of the voiced values among the three; unvoiced when most are not.
        let (mut v, mut n) = ([0.0f32; 3], 0);
        for x in [before, here, after].into_iter().filter(|x| *x > 0.0) {
            v[n] = x;
            n += 1;
        }
        before = here;
        here = after;
        f0[i] = match n {
            0 | 1 => 0.0,
            2 => (v[0] + v[1]) / 2.0,
            _ => {
                v.sort_by(f32::total_cmp);
                v[1]
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regrid_interpolates_between_voiced_frames_and_stops_at_unvoiced_ones() {
        let frames = [200.0, 400.0, 0.0, 0.0, 300.0];
        let mut out = Vec::new();
        regrid(&frames, 256, 8, &mut out);
        // Frame 1's middle (240) lies 15/16 of the way from 200 to 400 Hz, in log frequency.
        assert!(
            (out[1] - 200.0 * 2f32.powf(15.0 / 16.0)).abs() < 0.5,
            "{out:?}"
        );
        // 560 = 2.19 frames: frame 2 unvoiced, frame 3 too -> 0.
        assert_eq!(out[3], 0.0);
        assert!((out[0] - 200.0 * 2f32.powf(80.0 / 256.0)).abs() < 0.5);
        // Past the last frame (1200 / 256 = 4.7), the last frame holds.
        assert!((out[7] - 300.0).abs() < 1e-3, "{out:?}");
    }

    #[test]
    fn the_cleaner_folds_octave_jumps_and_drops_lone_frames() {
        let mut f0 = vec![
            220.0, 220.0, 221.0, 442.0, 222.0, 223.0, 0.0, 0.0, 0.0, 500.0, 0.0, 0.0,
        ];
        clean(&mut f0);
        // The octave error came back to ~221 Hz.
        assert!((f0[3] - 221.0).abs() < 2.0, "{f0:?}");
        assert!(f0[4..6].iter().all(|&f| (f - 222.0).abs() < 2.0), "{f0:?}");
        // The lone 500 Hz frame among unvoiced ones is gone.
        assert!(f0[9..].iter().all(|&f| f == 0.0), "{f0:?}");
    }
}
