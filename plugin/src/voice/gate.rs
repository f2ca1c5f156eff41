//! The voice gate: is someone singing? Between phrases a voice model turns breaths and room
//! noise into artefacts, so the converted voice fades out there and comes back (ramped, no
//! click) at the next phrase.
//!
//! Silero VAD (real weights, MIT, shared/MODELS.md §6) hears speech; a sung note it may not
//! call speech is caught by the pitch model (a voiced f0 is singing). The input must also be
//! above the performer's gate threshold. Live opens on the first Silero chunk over 0.5 (no
//! 250 ms minimum, per DECISIONS 4) and closes after 100 ms below the exit threshold 0.35.

use crate::files;
use crate::models::runtime;
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};

/// Silero VAD 6.2.3's `silero_vad.onnx`, by its sha256.
pub const SILERO_SHA256: &str = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3";
/// New samples per Silero chunk at 16 kHz, and the previous chunk's samples fed before them.
const CHUNK: usize = 512;
const CONTEXT: usize = 64;
/// Silero's speech threshold, and the lower one it must fall under to end speech.
const ENTER: f32 = 0.5;
const EXIT: f32 = 0.35;
/// Chunks (32 ms each) below the exit threshold before the gate closes: about 100 ms.
const HOLD_CHUNKS: u32 = 3;

/// Where Silero VAD is looked for: `silero-vad/silero_vad.onnx` in the models folder or a
/// folder of `REFRAIN_MODEL_PATH` (set-up fetches it into `models/real/silero-vad/`).
pub fn find_silero() -> Option<PathBuf> {
    crate::models::library::find_file("silero-vad/silero_vad.onnx")
}

/// Silero VAD on ONNX Runtime, streaming with its state.
pub struct Silero {
    session: Session,
    state: Vec<f32>,
    input: Vec<f32>,
}

impl Silero {
    /// Loads Silero VAD from `path` (checked by sha256).
    pub fn load(path: &Path) -> Result<Silero, String> {
        let bytes = files::read_pinned(path, 8 << 20, SILERO_SHA256).map_err(|e| match e {
            files::PinnedError::Read(e) => format!("cannot read {}: {e}", path.display()),
            files::PinnedError::Other { sha256 } => format!(
                "{} is not Silero VAD 6.2.3's silero_vad.onnx (sha256 {sha256}, expected {SILERO_SHA256})",
                path.display()
            ),
        })?;
        runtime::environment().map_err(|e| e.to_string())?;
        let session = runtime::session_from_memory(&bytes)?.session;
        Ok(Silero {
            session,
            state: vec![0.0; 2 * 128],
            input: vec![0.0; CONTEXT + CHUNK],
        })
    }

    /// The speech probability of the next 512 samples (16 kHz), the previous chunk's last 64
    /// samples in front as the model needs.
    pub fn chunk(&mut self, samples: &[f32]) -> Result<f32, String> {
        debug_assert_eq!(samples.len(), CHUNK);
        self.input.copy_within(CHUNK.., 0);
        self.input[CONTEXT..].copy_from_slice(samples);
        let e = |e: ort::Error| e.to_string();
        let outputs = self
            .session
            .run(ort::inputs![
                "input" => Tensor::from_array(([1usize, CONTEXT + CHUNK], self.input.clone())).map_err(e)?,
                "state" => Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(e)?,
                "sr" => Tensor::from_array(([0usize; 0], vec![16_000i64])).map_err(e)?,
            ])
            .map_err(e)?;
        let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(e)?;
        let (_, s) = outputs["stateN"].try_extract_tensor::<f32>().map_err(e)?;
        if s.len() == self.state.len() {
            self.state.copy_from_slice(s);
        }
        Ok(p.first().copied().unwrap_or(0.0))
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.state.fill(0.0);
        self.input.fill(0.0);
    }
}

/// The gate's state over a 16 kHz stream.
pub struct VoiceGate {
    vad: Option<Silero>,
    pending: Vec<f32>,
    /// Whether Silero hears speech now (with its hysteresis and hold).
    speech: bool,
    below: u32,
    /// The loudest chunk level (dBFS, RMS) of the last few chunks.
    levels: [f32; 4],
    /// Why Silero VAD is not there, when it was looked for and not found.
    without_vad: Option<String>,
}

impl VoiceGate {
    /// A gate with Silero VAD, or by level and pitch alone when `vad` is `None`.
    pub fn new(vad: Option<Silero>) -> VoiceGate {
        VoiceGate {
            vad,
            pending: Vec::with_capacity(4 * CHUNK),
            speech: false,
            below: 0,
            levels: [-120.0; 4],
            without_vad: None,
        }
    }

    /// A gate with Silero VAD from the models folder (level and pitch alone when it is not
    /// there, with the reason in [`Self::describe`]).
    pub fn find() -> VoiceGate {
        let (vad, why) = match find_silero().map(|p| Silero::load(&p)) {
            Some(Ok(vad)) => (Some(vad), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, Some("Silero VAD is not in the models folder (silero-vad/silero_vad.onnx; `cargo xtask fetch-models`)".to_owned())),
        };
        VoiceGate {
            without_vad: why,
            ..VoiceGate::new(vad)
        }
    }

    /// What the gate goes by, in words (for the device line the worker logs).
    pub fn describe(&self) -> String {
        match (&self.vad, &self.without_vad) {
            (Some(_), _) => "gate Silero VAD".to_owned(),
            (None, Some(why)) => format!("gate by level and pitch: {why}"),
            (None, None) => "gate by level and pitch".to_owned(),
        }
    }

    /// Listens to the next 16 kHz samples.
    pub fn push(&mut self, samples: &[f32]) {
        self.pending.extend_from_slice(samples);
        while self.pending.len() >= CHUNK {
            let chunk = &self.pending[..CHUNK];
            let rms = (chunk.iter().map(|x| x * x).sum::<f32>() / CHUNK as f32).sqrt();
            self.levels.rotate_right(1);
            self.levels[0] = 20.0 * rms.max(1e-6).log10();
            if let Some(vad) = &mut self.vad {
                match vad.chunk(chunk) {
                    Ok(p) => {
                        if p > ENTER {
                            self.speech = true;
                            self.below = 0;
                        } else if p < EXIT {
                            self.below += 1;
                            if self.below >= HOLD_CHUNKS {
                                self.speech = false;
                            }
                        }
                    }
                    // A failed model is dropped: the gate goes by level and pitch alone.
                    Err(_) => self.vad = None,
                }
            }
            self.pending.drain(..CHUNK);
        }
    }

    /// Whether the voice should sound: the input is above `threshold_db` and either Silero
    /// hears speech or the pitch model hears a sung note (`pitched`).
    pub fn open(&self, threshold_db: f32, pitched: bool) -> bool {
        let loud = self.levels.iter().copied().fold(f32::MIN, f32::max) > threshold_db;
        loud && (self.speech || pitched)
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        if let Some(v) = &mut self.vad {
            v.reset();
        }
        self.pending.clear();
        self.speech = false;
        self.below = 0;
        self.levels = [-120.0; 4];
    }
}
