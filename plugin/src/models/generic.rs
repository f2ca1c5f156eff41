//! Contract v1: Refrain's generic streaming audio-to-audio model, `[1, C, context + hop]` in,
//! `[1, C, hop]` out, described by a [`Manifest`] and loaded from a checked
//! [`ModelPackage`] (its folder, read once; ONNX Runtime opens no file).

use super::manifest::{Manifest, ManifestError, TensorInfo};
use super::package::{Limits, ModelPackage, PackageError};
use super::processor::{HopProcessor, ProcessError, StreamSpec};
use super::runtime::{self, RuntimeError};
use super::watchdog::{self, Watched};
use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::{Tensor, TensorElementType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a model could not be loaded. Each message names the file, field or tensor at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Library(#[from] super::library::LibraryError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{path} is not a usable ONNX model: {reason}")]
    NotOnnx { path: PathBuf, reason: String },
    #[error("the model's {role} tensor does not match the manifest: {reason}")]
    Tensor { role: &'static str, reason: String },
    #[error("a test run of the model failed: {0}")]
    Probe(String),
    #[error("{id} is a `{kind}` model, not an audio-to-audio one: the plugin runs it through its own processor (a separator's stems on their outputs and `refrain separate` on files; a voice through the voice pipeline and `refrain render`)")]
    NotStreaming { id: String, kind: String },
    #[error("{id} is built into Refrain (signal processing, no ONNX model to load)")]
    BuiltIn { id: String },
    /// A protected model that could not be opened: no licence for it, a licence that does
    /// not allow it here, or files that do not decrypt.
    #[error("model `{id}` is protected and stays off: {reason}")]
    Protected { id: String, reason: String },
}

/// An ONNX model running contract v1, with its input and output tensors preallocated and
/// bound once (ONNX Runtime's IO binding): a hop writes the window into the bound input and
/// reads the bound output, with no tensor created per hop.
pub struct OnnxModel {
    session: Session,
    spec: StreamSpec,
    output_name: String,
    binding: IoBinding,
    input: Tensor<f32>,
    output: Tensor<f32>,
    /// Which device runs the session, in words.
    device: String,
    /// Every run is watched: one that outlasts its limit is stopped.
    watched: Arc<Watched>,
    /// The model's identity (one hash over its manifest and files).
    identity: String,
    /// The manifest's id, for messages.
    id: String,
}

impl OnnxModel {
    /// Loads a model from its manifest: its folder read and checked ([`ModelPackage`]), the
    /// session, tensor checks and one probe run.
    pub fn load(manifest_path: &Path) -> Result<Self, ModelError> {
        let package = ModelPackage::read(manifest_path, Limits::from_env())?;
        Self::from_package(&package)
    }

    /// Builds the session from a checked package and checks the graph against its manifest.
    pub fn from_package(package: &ModelPackage) -> Result<Self, ModelError> {
        let manifest = &package.manifest;
        if manifest.model.kind != super::manifest::KIND_AUDIO_TO_AUDIO {
            return Err(ModelError::NotStreaming {
                id: manifest.model.id.clone(),
                kind: manifest.model.kind.clone(),
            });
        }
        runtime::environment()?;
        let path = package.folder.join(&manifest.model.file);
        let runtime::DeviceSession { session, device } =
            runtime::session_for(package).map_err(|reason| ModelError::NotOnnx {
                path: path.clone(),
                reason,
            })?;
        check_tensors(&session, manifest)?;
        let spec = manifest.spec();
        let bind = |e: ort::Error| ModelError::Probe(format!("binding the tensors: {e}"));
        let allocator = Allocator::default();
        let input =
            Tensor::<f32>::new(&allocator, [1usize, spec.channels, spec.context + spec.hop])
                .map_err(bind)?;
        let mut output =
            Tensor::<f32>::new(&allocator, [1usize, spec.channels, spec.hop]).map_err(bind)?;
        let mut binding = session.create_binding().map_err(bind)?;
        binding
            .bind_output(manifest.output.name.as_str(), &mut output)
            .map_err(bind)?;
        let watched = watchdog::watch(watchdog::max_run()).map_err(ModelError::Probe)?;
        let mut model = OnnxModel {
            session,
            spec,
            output_name: manifest.output.name.clone(),
            binding,
            input,
            output,
            device,
            watched,
            identity: package.identity.clone(),
            id: manifest.model.id.clone(),
        };
        model
            .binding
            .bind_input(manifest.input.name.as_str(), &model.input)
            .map_err(bind)?;
        // A probe run catches graphs whose real output differs from what they declare (and one
        // that never finishes is stopped by the watchdog).
        let window = vec![0.0f32; spec.channels * (spec.context + spec.hop)];
        let mut out = vec![0.0f32; spec.channels * spec.hop];
        model
            .process(&window, &mut out)
            .map_err(|e| ModelError::Probe(e.to_string()))?;
        Ok(model)
    }
}

fn describe(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl OnnxModel {
    /// One run on the bound tensors, straight through ONNX Runtime's C API: `Session::
    /// run_binding` collects the outputs into new values on every call, and a hop should
    /// allocate nothing.
    fn run_bound(&mut self) -> Result<(), ProcessError> {
        use ort::AsPointer;
        let api = ort::api();
        // SAFETY: the session and the binding are alive and belong to this model; `&mut self`
        // gives the run exclusive use of both (RunWithBinding is not thread-safe).
        self.watched.begin();
        let status = unsafe {
            (api.RunWithBinding)(
                self.session.ptr_mut(),
                self.watched.run_options().ptr(),
                self.binding.ptr(),
            )
        };
        let stopped = self.watched.end();
        if status.0.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null status carries a message; it is released once read.
        let message = unsafe {
            let text = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (api.ReleaseStatus)(status.0);
            text
        };
        if stopped {
            return Err(ProcessError::Stopped {
                model: self.id.clone(),
                limit_s: self.watched.limit().as_secs_f64(),
            });
        }
        Err(run_error(&self.id, message))
    }
}

/// ONNX Runtime's message for a failed run, in words: the capped arena's refusal names the
/// model and the limit.
fn run_error(model: &str, message: String) -> ProcessError {
    // "... Available memory of 536870656 is smaller than requested bytes of 1920000000"
    const MARK: &str = "smaller than requested bytes of ";
    if let Some(at) = message.find(MARK) {
        let digits: String = message[at + MARK.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(bytes) = digits.parse::<u64>() {
            return ProcessError::OutOfMemory {
                model: model.to_owned(),
                requested_mb: bytes.div_ceil(1 << 20),
                limit_mb: super::package::Limits::from_env().memory >> 20,
            };
        }
    }
    ProcessError::Inference(message)
}

/// Checks that the graph has exactly the manifest's input and output, with its dtype and shape
/// (a dynamic dimension in the graph accepts the manifest's number).
pub(crate) fn check_tensors(session: &Session, manifest: &Manifest) -> Result<(), ModelError> {
    for (role, outlets, want) in [
        ("input", session.inputs(), &manifest.input),
        ("output", session.outputs(), &manifest.output),
    ] {
        let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
        let Some(outlet) = outlets.iter().find(|o| o.name() == want.name) else {
            return Err(ModelError::Tensor {
                role,
                reason: format!(
                    "the manifest names `{}`, the model has {}",
                    want.name,
                    describe(&names)
                ),
            });
        };
        if role == "input" && outlets.len() != 1 {
            return Err(ModelError::Tensor {
                role,
                reason: format!(
                    "contract v1 takes one input, the model has {}: {}",
                    outlets.len(),
                    describe(&names)
                ),
            });
        }
        check_one(
            role,
            outlet.dtype().tensor_type(),
            outlet.dtype().tensor_shape().map(|s| s.to_vec()),
            want,
        )?;
    }
    Ok(())
}

fn check_one(
    role: &'static str,
    ty: Option<TensorElementType>,
    shape: Option<Vec<i64>>,
    want: &TensorInfo,
) -> Result<(), ModelError> {
    let err = |reason: String| ModelError::Tensor { role, reason };
    match ty {
        Some(TensorElementType::Float32) => {}
        Some(other) => {
            return Err(err(format!(
                "`{}` is {other:?}, the manifest says float32",
                want.name
            )))
        }
        None => return Err(err(format!("`{}` is not a tensor", want.name))),
    }
    let shape = shape.unwrap_or_default();
    let fits = shape.len() == want.shape.len()
        && shape
            .iter()
            .zip(&want.shape)
            .all(|(&got, &w)| got < 0 || got == w);
    if !fits {
        return Err(err(format!(
            "`{}` has shape {shape:?}, the manifest says {:?}",
            want.name, want.shape
        )));
    }
    Ok(())
}

impl HopProcessor for OnnxModel {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError> {
        let (_, data) = self.input.extract_tensor_mut();
        if data.len() != window.len() {
            return Err(ProcessError::Inference(format!(
                "window of {} samples for an input of {}",
                window.len(),
                data.len()
            )));
        }
        data.copy_from_slice(window);
        self.run_bound()?;
        let (_, data) = self.output.extract_tensor();
        if data.len() != out.len() {
            return Err(ProcessError::OutputSize {
                name: self.output_name.clone(),
                got: data.len(),
                want: out.len(),
            });
        }
        out.copy_from_slice(data);
        Ok(())
    }

    fn device(&self) -> Option<String> {
        Some(self.device.clone())
    }

    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound input is read afresh on every run and the bound output is what comes back
    /// (needs ONNX Runtime: `cargo xtask setup`).
    #[test]
    fn bound_tensors_carry_each_hop() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test/gain/model.toml");
        let Ok(mut model) = OnnxModel::load(&dir) else {
            eprintln!("skipped: ONNX Runtime not set up");
            return;
        };
        let mut out = vec![0.0f32; 2 * 147];
        for level in [0.25f32, -0.5, 1.0] {
            let window = vec![level; 2 * 147];
            // A hop allocates nothing on the Rust side.
            nice_assert_no_alloc::assert_no_alloc(|| model.process(&window, &mut out)).unwrap();
            assert_eq!(out[0], 0.5 * level);
            assert_eq!(out[147], 2.0 * level);
        }
    }
}
