//! AI covers and the built-in voice: everything that turns one voice into another.
//!
//! - [`controls`]: the performer's settings, from the audio thread to the worker (atomics).
//! - [`transform`]: the built-in voice transform (pitch and formant shift, no model): the
//!   default voice and the reference the tests measure.
//! - [`rvc`]: RVC v1/v2 voices streamed on the worker (content encoder, pitch, generator),
//!   joined by [`sola`], blended with their training features by [`index`], quiet between
//!   phrases by [`gate`] (Silero VAD).
//! - [`pitch`]: the pitch model (SwiftF0 by default) and the track cleaner.
//! - [`yin`]: the careful offline f0 the pitch model is checked against.

pub mod controls;
pub mod crepe;
pub mod gate;
pub mod highpass;
pub mod index;
pub mod pitch;
pub mod rvc;
pub mod sola;
pub mod transform;
pub mod yin;

/// How the built-in voice transform is named in state and on the command line.
pub const BUILTIN_VOICE_ID: &str = "builtin:voice";

/// The built-in voice transform's identity (it has no files to hash; the version names it).
pub const BUILTIN_VOICE_IDENTITY: &str = "builtin-voice-transform-1";

/// The manifest kind of the built-in voice transform (never read from a file).
pub const KIND_VOICE_TRANSFORM: &str = "voice-transform";

use crate::engine::latency::Mode;
use crate::models::manifest::Manifest;
use crate::models::package::ModelPackage;
use crate::models::processor::{HopProcessor, StreamSpec};
use controls::VoiceControls;
use std::sync::Arc;

/// Ramps `gain` to `target` over `voice[start..start + len]` (held before, at the target
/// after), scaling `voice` by it, and writes the voice to both channels of `out`
/// (`[channel][hop]`). Allocation-free.
fn ramp_and_write(
    voice: &mut [f32],
    gain: &mut f32,
    target: f32,
    (start, len): (usize, usize),
    out: &mut [f32],
) {
    let step = (target - *gain) / len.max(1) as f32;
    for (i, v) in voice.iter_mut().enumerate() {
        if i >= start && i < start + len {
            *gain += step;
        }
        *v *= *gain;
    }
    *gain = target;
    let hop = voice.len();
    out[..hop].copy_from_slice(voice);
    out[hop..2 * hop].copy_from_slice(voice);
}

/// How the engine streams a voice in `mode`: the built-in transform's framing. `None` when the
/// manifest is not a voice.
pub fn stream_spec(manifest: &Manifest, mode: Mode) -> Option<StreamSpec> {
    match manifest.model.kind.as_str() {
        KIND_VOICE_TRANSFORM => Some(transform::stream_spec(mode)),
        _ => rvc::stream_spec(manifest, mode),
    }
}

/// Builds the voice in `package` for the worker, reading its settings from `controls`; `None`
/// when the package is not a voice.
pub fn load_processor(
    package: &ModelPackage,
    mode: Mode,
    controls: &Arc<VoiceControls>,
) -> Option<Result<Box<dyn HopProcessor>, String>> {
    match package.manifest.model.kind.as_str() {
        KIND_VOICE_TRANSFORM => Some(Ok(Box::new(transform::VoiceTransformProcessor::new(
            mode,
            controls.clone(),
        )))),
        crate::models::manifest::KIND_RVC => Some(load_rvc(package, mode, controls)),
        _ => None,
    }
}

/// An RVC voice with its own pitch model or SwiftF0 ([`pitch::for_voice`]) and Silero VAD in
/// its gate.
fn load_rvc(
    package: &ModelPackage,
    mode: Mode,
    controls: &Arc<VoiceControls>,
) -> Result<Box<dyn HopProcessor>, String> {
    let pitch = pitch::for_voice(package).map_err(|e| e.to_string())?;
    let gate = gate::VoiceGate::find();
    rvc::RvcVoice::load(package, mode, controls.clone(), pitch, gate)
        .map(|v| Box::new(v) as Box<dyn HopProcessor>)
        .map_err(|e| e.to_string())
}
