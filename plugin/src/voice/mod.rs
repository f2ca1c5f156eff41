//! AI covers and the built-in voice: everything that turns one voice into another.
//!
//! - [`controls`]: the performer's settings, from the audio thread to the worker (atomics).
//! - [`transform`]: the built-in voice transform (pitch and formant shift, no model): the
//!   default voice and the reference the tests measure.
//! - [`pitch`]: the pitch model (SwiftF0 by default) and the track cleaner.
//! - [`yin`]: the careful offline f0 the pitch model is checked against.

pub mod controls;
pub mod pitch;
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

/// How the engine streams a voice in `mode`: the built-in transform's framing. `None` when the
/// manifest is not a voice.
pub fn stream_spec(manifest: &Manifest, mode: Mode) -> Option<StreamSpec> {
    match manifest.model.kind.as_str() {
        KIND_VOICE_TRANSFORM => Some(transform::stream_spec(mode)),
        _ => None,
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
        _ => None,
    }
}
