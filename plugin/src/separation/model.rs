//! A separator model as the separators run it: `stem-masks` (Spleeter's contract, shared/
//! MODELS.md §7: the magnitude of a segment of frames in, each stem's ratio mask out),
//! `mdx-net` and `demucs` (§3, §4). One session, watched, its tensors checked against the
//! manifest; a run checks the shape that comes back.

use super::SeparateError;
use crate::models::manifest::{StemsInfo, SEPARATOR_KINDS};
use crate::models::package::ModelPackage;
use crate::models::{generic, runtime, watchdog};
use ort::session::Session;
use ort::value::Tensor;
use std::sync::Arc;
use std::time::Duration;

/// The longest one segment may run before the watchdog stops it: a 512-frame Spleeter pass
/// takes about 0.4 s on one core here.
pub const MAX_SEGMENT_RUN: Duration = Duration::from_secs(60);

/// A loaded separator model.
pub struct SeparatorModel {
    session: Session,
    watched: Arc<watchdog::Watched>,
    input: String,
    output: String,
    /// Model channels.
    pub channels: usize,
    pub stems: StemsInfo,
    /// The manifest's `model.kind`.
    pub kind: String,
    pub id: String,
    pub identity: String,
    /// Where it runs, in words.
    pub device: String,
}

impl SeparatorModel {
    /// Builds the session from a checked package and checks its tensors against the manifest.
    pub fn from_package(package: &ModelPackage) -> Result<SeparatorModel, SeparateError> {
        let m = &package.manifest;
        let Some(stems) = m
            .stems
            .clone()
            .filter(|_| SEPARATOR_KINDS.contains(&m.model.kind.as_str()))
        else {
            return Err(SeparateError::NotASeparator {
                id: m.model.id.clone(),
                kind: m.model.kind.clone(),
            });
        };
        let model_err = |reason: String| SeparateError::Model {
            id: m.model.id.clone(),
            reason,
        };
        runtime::environment().map_err(|e| model_err(e.to_string()))?;
        let runtime::DeviceSession { session, device } =
            runtime::session_for(package).map_err(model_err)?;
        generic::check_tensors(&session, m).map_err(|e| model_err(e.to_string()))?;
        let watched = watchdog::watch(MAX_SEGMENT_RUN).map_err(model_err)?;
        Ok(SeparatorModel {
            session,
            watched,
            input: m.input.name.clone(),
            output: m.output.name.clone(),
            channels: m.stream.channels,
            stems,
            kind: m.model.kind.clone(),
            id: m.model.id.clone(),
            identity: package.identity.clone(),
            device,
        })
    }

    /// `stem-masks`: runs on `magnitude` (`[channels][frames][bins]`, flattened; `frames` a
    /// multiple of `frames_multiple`) and returns the masks `[stems][channels][frames][bins]`.
    pub fn run(&mut self, magnitude: Vec<f32>, frames: usize) -> Result<Vec<f32>, SeparateError> {
        let (c, s, b) = (self.channels, self.stems.names.len(), self.stems.bins);
        self.run_shaped(magnitude, &[1, c, frames, b], &[1, s, c, frames, b])
    }

    /// One run on `input` of shape `shape`; the output must have shape `want`.
    pub fn run_shaped(
        &mut self,
        input: Vec<f32>,
        shape: &[usize],
        want: &[usize],
    ) -> Result<Vec<f32>, SeparateError> {
        let err = |reason: String| SeparateError::Model {
            id: self.id.clone(),
            reason,
        };
        let input = Tensor::from_array((shape.to_vec(), input)).map_err(|e| err(e.to_string()))?;
        self.watched.begin();
        let result = self.session.run_with_options(
            ort::inputs![self.input.as_str() => input],
            self.watched.run_options(),
        );
        let stopped = self.watched.end();
        let outputs = match result {
            Ok(o) => o,
            Err(_) if stopped => {
                return Err(err(format!(
                    "a segment ran longer than {} s and was stopped",
                    MAX_SEGMENT_RUN.as_secs()
                )))
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let (got, data) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(format!("its output `{}`: {e}", self.output)))?;
        let want: Vec<i64> = want.iter().map(|&d| d as i64).collect();
        if got[..] != want[..] {
            return Err(err(format!(
                "its output `{}` has shape {:?}, the manifest implies {want:?}",
                self.output,
                &got[..]
            )));
        }
        Ok(data.to_vec())
    }
}
