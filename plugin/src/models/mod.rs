//! What runs on the worker: model manifests, ONNX Runtime, the contract-v1 runner, and the
//! built-in demo model.

pub mod generic;
pub mod library;
pub mod manifest;
pub mod onnx_scan;
pub mod package;
pub mod processor;
pub mod protection;
pub mod runtime;
pub mod watchdog;

use crate::engine::latency::Mode;
use generic::{ModelError, OnnxModel};
use manifest::Manifest;
use processor::HopProcessor;
use std::path::PathBuf;
use std::sync::Arc;

/// The built-in model's manifest, embedded so Refrain works with no files beside it.
const BUILTIN_MANIFEST: &str = include_str!("../../../models/tone-shaper/model.toml");
/// The built-in model's ONNX bytes.
const BUILTIN_ONNX: &[u8] = include_bytes!("../../../models/tone-shaper/tone_shaper.onnx");
/// How the built-in model is named in state and on the command line.
pub const BUILTIN_ID: &str = "builtin:tone-shaper";

/// Which model a plugin instance runs, as persisted in its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The embedded demo model.
    Builtin,
    /// The built-in voice transform (pitch and formant shift; DSP, no ONNX).
    Voice,
    /// A model in the models folder, by id and identity (what a project saves).
    Library(library::ModelRef),
    /// A `model.toml` on disk (or a folder holding one): the command line, and projects saved
    /// before models were named by identity.
    Manifest(PathBuf),
}

impl ModelSource {
    /// Reads the persisted form: empty or `builtin:tone-shaper` for the built-in model, else a path.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if text.is_empty() || text == BUILTIN_ID || text == "builtin" {
            return ModelSource::Builtin;
        }
        if text == crate::voice::BUILTIN_VOICE_ID {
            return ModelSource::Voice;
        }
        if let Some(reference) = library::ModelRef::parse(text) {
            return ModelSource::Library(reference);
        }
        let path = PathBuf::from(text);
        if path.is_dir() {
            ModelSource::Manifest(path.join("model.toml"))
        } else {
            ModelSource::Manifest(path)
        }
    }

    /// The persisted form.
    pub fn to_state(&self) -> String {
        match self {
            ModelSource::Builtin => BUILTIN_ID.to_owned(),
            ModelSource::Voice => crate::voice::BUILTIN_VOICE_ID.to_owned(),
            ModelSource::Library(r) => r.to_state(),
            ModelSource::Manifest(p) => p.display().to_string(),
        }
    }

    /// The manifest alone (no ONNX Runtime; a model in the models folder is found by its
    /// identity, which reads its files).
    pub fn manifest(&self) -> Result<Manifest, ModelError> {
        match self {
            ModelSource::Builtin => Ok(builtin_manifest()),
            ModelSource::Voice => Ok(crate::voice::transform::manifest()),
            ModelSource::Library(r) => Ok(library::find(r)?.manifest),
            ModelSource::Manifest(p) => Ok(Manifest::load(p)?),
        }
    }

    /// Reads the model's folder once, checked and hashed, into memory: what runs is exactly
    /// what [`package::ModelPackage::identity`] names (no file is read a second time).
    pub fn package(&self) -> Result<Arc<package::ModelPackage>, ModelError> {
        Ok(Arc::new(match self {
            ModelSource::Builtin => builtin_package()?,
            ModelSource::Voice => crate::voice::transform::package(),
            ModelSource::Library(r) => library::find(r)?,
            ModelSource::Manifest(p) => {
                if let Some(folder) = self.protected_folder() {
                    let id = protection::header(&folder)
                        .ok()
                        .flatten()
                        .map_or_else(|| folder.display().to_string(), |h| h.id);
                    return Err(ModelError::Protected {
                        id,
                        reason: "it opens only under a licence for it: load the licence".into(),
                    });
                }
                package::ModelPackage::read(p, package::Limits::from_env())?
            }
        }))
    }

    /// The folder of the protected model this names, if it is one.
    pub fn protected_folder(&self) -> Option<PathBuf> {
        match self {
            ModelSource::Library(r) => library::find_protected(r),
            // A header of any kind (even an unreadable one) makes the folder protected: it
            // fails closed rather than falling back to a plain model.
            ModelSource::Manifest(p) => {
                let folder = p.parent().unwrap_or(std::path::Path::new("."));
                std::fs::symlink_metadata(folder.join(protection::HEADER))
                    .is_ok()
                    .then(|| folder.to_owned())
            }
            _ => None,
        }
    }

    /// [`Self::package`], opening a protected model under `track`'s licence (its content key,
    /// sealed to this device, is in the licence): no licence, no model.
    pub fn package_with(
        &self,
        track: Option<&crate::licence::gate::LoadedTrack>,
        setting: crate::licence::enforce::Setting,
    ) -> Result<Arc<package::ModelPackage>, ModelError> {
        match self.protected_folder() {
            Some(folder) => Ok(Arc::new(crate::licence::enforce::unlock(
                &folder, track, setting,
            )?)),
            None => self.package(),
        }
    }

    /// Loads the model fully: folder, hashes, session, tensor checks, probe run.
    pub fn load(&self) -> Result<OnnxModel, ModelError> {
        if let ModelSource::Voice = self {
            return Err(ModelError::BuiltIn {
                id: self.to_state(),
            });
        }
        OnnxModel::from_package(&*self.package()?)
    }
}

/// How the engine streams the model in `manifest` in `mode`: a separator's contract comes
/// from its schedule ([`crate::separation::processor::stream_spec`]), a voice's from the mode
/// ([`crate::voice::stream_spec`]), every other model's from its manifest.
pub fn stream_spec(manifest: &Manifest, mode: Mode) -> processor::StreamSpec {
    crate::separation::processor::stream_spec(manifest, mode)
        .or_else(|| crate::voice::stream_spec(manifest, mode))
        .unwrap_or_else(|| manifest.spec())
}

/// Builds the model in `package` for the worker in `mode` (session, tensor checks, probe run;
/// a separator as a [`crate::separation::processor::StemProcessor`], a voice reading its
/// settings from `voice`), the error as text.
pub fn load_processor(
    package: &package::ModelPackage,
    mode: Mode,
    voice: &Arc<crate::voice::controls::VoiceControls>,
) -> Result<Box<dyn HopProcessor>, String> {
    if let Some(p) = crate::voice::load_processor(package, mode, voice) {
        return p;
    }
    if manifest::SEPARATOR_KINDS.contains(&package.manifest.model.kind.as_str()) {
        return crate::separation::processor::StemProcessor::load(package, mode)
            .map(|p| Box::new(p) as Box<dyn HopProcessor>)
            .map_err(|e| e.to_string());
    }
    OnnxModel::from_package(package)
        .map(|m| Box::new(m) as Box<dyn HopProcessor>)
        .map_err(|e| e.to_string())
}

/// The built-in model as a checked package.
pub fn builtin_package() -> Result<package::ModelPackage, ModelError> {
    Ok(package::ModelPackage::embedded(
        BUILTIN_ID,
        BUILTIN_MANIFEST,
        BUILTIN_ONNX,
    )?)
}

/// The built-in model's manifest.
pub fn builtin_manifest() -> Manifest {
    Manifest::parse(BUILTIN_MANIFEST).expect("the embedded manifest is checked by the test suite")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn builtin_manifest_matches_embedded_bytes() {
        let m = builtin_manifest();
        assert_eq!(hex::encode(Sha256::digest(BUILTIN_ONNX)), m.model.sha256);
        assert_eq!(m.model.id, "tone-shaper");
    }

    #[test]
    fn sources_round_trip_through_state() {
        assert_eq!(ModelSource::parse(""), ModelSource::Builtin);
        assert_eq!(ModelSource::parse(BUILTIN_ID), ModelSource::Builtin);
        let p = ModelSource::parse("/x/model.toml");
        assert_eq!(ModelSource::parse(&p.to_state()), p);
        let r = ModelSource::parse(&format!("night-drive@{}", "0f".repeat(32)));
        assert!(matches!(r, ModelSource::Library(_)));
        assert_eq!(ModelSource::parse(&r.to_state()), r);
    }
}
