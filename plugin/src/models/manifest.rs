//! `model.toml`: what a model is, what it needs, and the tensors it must have.
//!
//! The manifest is parsed and checked before the ONNX file is touched, so a typo gets a message
//! that names the field; the ONNX file is then checked against it (see [`super::generic`]).

use super::processor::StreamSpec;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The manifest format this build reads.
pub const FORMAT: u32 = 1;

/// Refrain's generic streaming audio-to-audio contract (shared/MODELS.md §1): what the plugin's
/// engine runs.
pub const KIND_AUDIO_TO_AUDIO: &str = "audio-to-audio";

/// A stem separator on the magnitude spectrogram (Spleeter's contract, shared/MODELS.md §7):
/// magnitude `[1, channels, frames, bins]` in, one ratio mask per stem
/// `[1, stems, channels, frames, bins]` out; see [`crate::separation`].
pub const KIND_STEM_MASKS: &str = "stem-masks";

/// Ultimate Vocal Remover's MDX-Net (shared/MODELS.md §3): the complex spectrogram in (left
/// real, left imaginary, right real, right imaginary: `[1, 4, bins, frames]`), the target
/// stem's out in the same shape; the second stem is the mix minus the target.
pub const KIND_MDX_NET: &str = "mdx-net";

/// Demucs / HTDemucs exported with the STFT inside (shared/MODELS.md §4): a waveform segment
/// in (`[1, channels, samples]`), each stem's out (`[1, stems, channels, samples]`).
pub const KIND_DEMUCS: &str = "demucs";

/// An RVC v1/v2 voice exported to ONNX (shared/MODELS.md §2): the generator is `model.file`
/// (`phone`, `phone_lengths`, `pitch`, `pitchf`, `ds`, `rnd` -> `audio`), the content encoder
/// and any training features are listed in `files` and named in `[voice]`; see
/// [`crate::voice::rvc`].
pub const KIND_RVC: &str = "rvc";

/// The kinds this build reads.
pub const KINDS: [&str; 5] = [
    KIND_AUDIO_TO_AUDIO,
    KIND_STEM_MASKS,
    KIND_MDX_NET,
    KIND_DEMUCS,
    KIND_RVC,
];

/// The separator kinds (everything but the streaming contract).
pub const SEPARATOR_KINDS: [&str; 3] = [KIND_STEM_MASKS, KIND_MDX_NET, KIND_DEMUCS];

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    pub model: ModelInfo,
    pub stream: StreamInfo,
    pub input: TensorInfo,
    pub output: TensorInfo,
    #[serde(default)]
    pub rights: RightsInfo,
    /// Every other file the model uses (external weights, a retrieval index, configs), each
    /// with its own hash. A model is its folder: nothing outside it is ever read.
    #[serde(default)]
    pub files: Vec<ModelFile>,
    /// The spectrogram framing and the stems of a `stem-masks` model (absent for other kinds).
    #[serde(default)]
    pub stems: Option<StemsInfo>,
    /// An `rvc` voice's version, content encoder, speakers and training features.
    #[serde(default)]
    pub voice: Option<VoiceInfo>,
}

/// What an RVC voice is made of, besides its generator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceInfo {
    /// `v1` (256-channel features: HuBERT layer 9 + final projection) or `v2` (768: layer 12).
    pub version: String,
    /// The content encoder's ONNX file (HuBERT / ContentVec), listed in `files`.
    pub encoder: String,
    /// Speakers the generator knows (`ds` is 0..speakers).
    #[serde(default = "one")]
    pub speakers: u32,
    /// The voice's training features (`[rows, channels]` float32 `.npy`, RVC's index
    /// exported), listed in `files`; with it the index rate blends each frame with its nearest
    /// training features.
    #[serde(default)]
    pub index: Option<String>,
    /// The voice's own f0 model instead of SwiftF0 (`[voice.pitch]`), listed in `files`.
    #[serde(default)]
    pub pitch: Option<PitchInfo>,
}

/// An f0 model a voice brings (`[voice.pitch]`): RVC users convert with the pitch model they
/// trust. See [`crate::voice::crepe`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitchInfo {
    /// `crepe`: CREPE's contract (any size: tiny to full).
    pub format: String,
    /// Its ONNX file, listed in `files`.
    pub file: String,
    /// A frame is voiced when its strongest bin is at least this (0..1; CREPE's default 0.3).
    #[serde(default)]
    pub threshold: Option<f32>,
}

/// The pitch model formats a voice may bring.
pub const PITCH_FORMATS: [&str; 1] = ["crepe"];

fn one() -> u32 {
    1
}

impl VoiceInfo {
    /// Feature channels of the version: 256 for v1, 768 for v2.
    pub fn channels(&self) -> usize {
        if self.version == "v1" {
            256
        } else {
            768
        }
    }
}

/// How a separator sees audio and what it gives back. Spectrogram kinds (`stem-masks`,
/// `mdx-net`) use an STFT of `fft` points every `stream.hop` samples (periodic Hann,
/// unnormalised) and its lowest `bins` bins; `demucs` uses waveform segments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemsInfo {
    /// The stems, in the order of the output's stem axis (`mdx-net`: the target, then the
    /// rest of the mix).
    pub names: Vec<String>,
    /// STFT length (and window length).
    #[serde(default)]
    pub fft: usize,
    /// Bins the model sees, from 0 Hz up.
    #[serde(default)]
    pub bins: usize,
    /// `stem-masks`: the frame count of a run must be a multiple of this (the U-Net's
    /// downsampling).
    #[serde(default)]
    pub frames_multiple: usize,
    /// `stem-masks`: which stem takes the bins above `bins` (so the stems sum to the mix), or
    /// `none`.
    #[serde(default)]
    pub above_bins: String,
    /// `mdx-net`: frames per run (UVR's `dim_t`).
    #[serde(default)]
    pub frames: usize,
    /// `mdx-net`: the gain the target is multiplied by (UVR's per-model compensation).
    #[serde(default)]
    pub compensation: Option<f32>,
    /// `demucs`: samples per run (Demucs: about 7.8 s).
    #[serde(default)]
    pub segment: usize,
    /// `demucs`: the fraction of a segment shared with the next, cross-faded (0.25).
    #[serde(default)]
    pub overlap: Option<f32>,
}

/// Most stems a separator may have.
pub const MAX_STEMS: usize = 8;

/// A file of the model besides its ONNX graph.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Relative to the manifest's folder, `/`-separated, inside the folder.
    pub path: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// What it is for (`external-data`, `index`, `config`); informational.
    #[serde(default)]
    pub role: String,
}

/// Most files a manifest may list.
pub const MAX_FILES: usize = 256;

/// Checks a path a manifest names: relative, `/`-separated, staying inside the model's folder
/// (no `..`, no absolute path, no drive letter, no control characters).
pub fn check_relative_path(field: &'static str, path: &str) -> Result<(), ManifestError> {
    let bad = |reason: &str| Err(invalid(field, format!("{path:?}"), reason));
    if path.is_empty() || path.len() > 255 {
        return bad("name a file inside the model's folder (1 to 255 characters)");
    }
    if path.chars().any(|c| c.is_control()) {
        return bad("control characters are not allowed in a path");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return bad("use a path relative to the model's folder, with `/` between folders");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("a path stays inside the model's folder: no `..`, `.` or empty parts");
    }
    Ok(())
}

/// Identity of the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Stable identifier (licences name models by it).
    pub id: String,
    /// Name shown to people.
    pub name: String,
    pub version: String,
    /// The tensor contract; `audio-to-audio` here.
    pub kind: String,
    /// ONNX file, relative to the manifest.
    pub file: String,
    /// Hex SHA-256 of the ONNX file.
    pub sha256: String,
    #[serde(default)]
    pub description: String,
}

/// The streaming contract (shared/MODELS.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamInfo {
    pub sample_rate: u32,
    pub channels: usize,
    /// Samples per run (an `rvc` voice has none of its own: the mode sets it).
    #[serde(default)]
    pub hop: usize,
    #[serde(default)]
    pub context: usize,
    #[serde(default)]
    pub lookahead: usize,
    #[serde(default)]
    pub latency: usize,
    /// How long the model keeps sounding after its input stops (model samples).
    #[serde(default)]
    pub tail: usize,
}

/// One tensor of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// What rights the model touches (licences are checked by the licence system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightsInfo {
    /// The model carries an artist's voice.
    #[serde(default)]
    pub licensed_voice: bool,
    /// The model is applied to a licensed recording.
    #[serde(default)]
    pub licensed_track: bool,
}

/// Why a manifest is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the model manifest {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the model manifest {path} is not valid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("the model manifest says `{field}` = {value}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(field: &'static str, value: impl ToString, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Manifest {
    /// Reads (at most [`MAX_MANIFEST_BYTES`], a regular file only) and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = crate::files::read_text_bounded(path, MAX_MANIFEST_BYTES).map_err(|e| {
            ManifestError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Self::parse(&text).map_err(|e| match e {
            ManifestError::Parse { reason, .. } => ManifestError::Parse {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Parses and validates manifest text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: PathBuf::new(),
            reason: e.message().to_owned(),
        })?;
        m.validate()?;
        Ok(m)
    }

    /// The streaming contract as the engine sees it.
    pub fn spec(&self) -> StreamSpec {
        let s = self.stream;
        StreamSpec {
            sample_rate: s.sample_rate,
            channels: s.channels,
            hop: s.hop,
            context: s.context,
            latency: s.latency,
            tail: s.tail,
            stems: 1,
            lookahead: 0,
        }
    }

    /// The input shape the contract implies: `[1, channels, context + hop]`.
    pub fn expected_input_shape(&self) -> [i64; 3] {
        [
            1,
            self.stream.channels as i64,
            (self.stream.context + self.stream.hop) as i64,
        ]
    }

    /// The output shape the contract implies: `[1, channels, hop]`.
    pub fn expected_output_shape(&self) -> [i64; 3] {
        [1, self.stream.channels as i64, self.stream.hop as i64]
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT {
            return Err(invalid(
                "format",
                self.format,
                format!("this Refrain reads format {FORMAT}"),
            ));
        }
        let m = &self.model;
        if m.id.is_empty()
            || !m
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "model.id",
                &m.id,
                "use letters, digits, '-', '_' or '.'",
            ));
        }
        if !KINDS.contains(&m.kind.as_str()) {
            return Err(invalid(
                "model.kind",
                &m.kind,
                format!(
                    "this Refrain runs {}",
                    KINDS.map(|k| format!("`{k}`")).join(", ")
                ),
            ));
        }
        check_relative_path("model.file", &m.file)?;
        if self.files.len() > MAX_FILES {
            return Err(invalid(
                "files",
                self.files.len(),
                format!("at most {MAX_FILES} files"),
            ));
        }
        for (i, f) in self.files.iter().enumerate() {
            check_relative_path("files.path", &f.path)?;
            if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid("files.sha256", &f.sha256, "expected 64 hex digits"));
            }
            if f.path == m.file || self.files[..i].iter().any(|g| g.path == f.path) {
                return Err(invalid("files.path", &f.path, "each file is listed once"));
            }
        }
        if m.sha256.len() != 64 || !m.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid("model.sha256", &m.sha256, "expected 64 hex digits"));
        }
        if m.kind == KIND_RVC {
            return self.validate_voice();
        }
        if self.voice.is_some() {
            return Err(invalid(
                "voice",
                "a table",
                "only voices (`rvc`) have a [voice] table",
            ));
        }
        let s = &self.stream;
        if !(8_000..=192_000).contains(&s.sample_rate) {
            return Err(invalid(
                "stream.sample_rate",
                s.sample_rate,
                "expected 8000 to 192000 Hz",
            ));
        }
        if !(1..=8).contains(&s.channels) {
            return Err(invalid("stream.channels", s.channels, "expected 1 to 8"));
        }
        if s.hop == 0 || s.hop > s.sample_rate as usize {
            return Err(invalid(
                "stream.hop",
                s.hop,
                "expected 1 sample to one second",
            ));
        }
        if s.context > 10 * s.sample_rate as usize {
            return Err(invalid(
                "stream.context",
                s.context,
                "expected at most ten seconds",
            ));
        }
        if s.latency < s.lookahead {
            return Err(invalid(
                "stream.latency",
                s.latency,
                format!("must include the lookahead of {}", s.lookahead),
            ));
        }
        if s.latency > 10 * s.sample_rate as usize {
            return Err(invalid(
                "stream.latency",
                s.latency,
                "expected at most ten seconds",
            ));
        }
        if s.tail > 60 * s.sample_rate as usize {
            return Err(invalid(
                "stream.tail",
                s.tail,
                "expected at most sixty seconds",
            ));
        }
        if SEPARATOR_KINDS.contains(&m.kind.as_str()) {
            return self.validate_stems();
        }
        if self.stems.is_some() {
            return Err(invalid(
                "stems",
                "a table",
                "only separators (`stem-masks`, `mdx-net`, `demucs`) have stems",
            ));
        }
        for (field, t, want) in [
            ("input", &self.input, self.expected_input_shape()),
            ("output", &self.output, self.expected_output_shape()),
        ] {
            if t.name.is_empty() {
                return Err(invalid(
                    if field == "input" {
                        "input.name"
                    } else {
                        "output.name"
                    },
                    "\"\"",
                    "name the tensor",
                ));
            }
            if t.dtype != "float32" {
                return Err(invalid(
                    if field == "input" {
                        "input.dtype"
                    } else {
                        "output.dtype"
                    },
                    &t.dtype,
                    "audio tensors are float32",
                ));
            }
            if t.shape != want {
                return Err(invalid(
                    if field == "input" {
                        "input.shape"
                    } else {
                        "output.shape"
                    },
                    format!("{:?}", t.shape),
                    format!("the stream section implies {want:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The checks of an RVC voice: its rate, the files its `[voice]` table names, and the
    /// generator tensors the manifest declares.
    fn validate_voice(&self) -> Result<(), ManifestError> {
        let Some(v) = &self.voice else {
            return Err(invalid(
                "voice",
                "nothing",
                "an `rvc` model needs a [voice] table (version, encoder)",
            ));
        };
        let s = &self.stream;
        if ![32_000, 40_000, 48_000].contains(&s.sample_rate) {
            return Err(invalid(
                "stream.sample_rate",
                s.sample_rate,
                "an RVC generator runs at 32000, 40000 or 48000 Hz",
            ));
        }
        if s.channels != 1 {
            return Err(invalid(
                "stream.channels",
                s.channels,
                "an RVC voice is mono (1)",
            ));
        }
        if v.version != "v1" && v.version != "v2" {
            return Err(invalid(
                "voice.version",
                format!("{:?}", v.version),
                "\"v1\" (256-channel features) or \"v2\" (768)",
            ));
        }
        if !(1..=1024).contains(&v.speakers) {
            return Err(invalid("voice.speakers", v.speakers, "1 to 1024"));
        }
        if let Some(p) = &v.pitch {
            if !PITCH_FORMATS.contains(&p.format.as_str()) {
                return Err(invalid(
                    "voice.pitch.format",
                    format!("{:?}", p.format),
                    "\"crepe\" (CREPE's [N, 1024] frames in, [N, 360] bins out)",
                ));
            }
            if let Some(t) = p.threshold {
                if !(t > 0.0 && t < 1.0) {
                    return Err(invalid(
                        "voice.pitch.threshold",
                        t,
                        "between 0 and 1 (exclusive)",
                    ));
                }
            }
        }
        for (field, path) in [
            ("voice.encoder", Some(&v.encoder)),
            ("voice.index", v.index.as_ref()),
            ("voice.pitch.file", v.pitch.as_ref().map(|p| &p.file)),
        ] {
            let Some(path) = path else { continue };
            check_relative_path(field, path)?;
            if !self.files.iter().any(|f| &f.path == path) {
                return Err(invalid(
                    field,
                    format!("{path:?}"),
                    "list it under [[files]] with its sha256",
                ));
            }
        }
        let c = v.channels() as i64;
        for (field, t, name, want) in [
            ("input", &self.input, "phone", vec![1, -1, c]),
            ("output", &self.output, "audio", vec![1, 1, -1]),
        ] {
            if t.name != name || t.dtype != "float32" || t.shape != want {
                return Err(invalid(
                    field,
                    format!("{} {} {:?}", t.name, t.dtype, t.shape),
                    format!(
                        "an RVC {} generator's {field} is `{name}` float32 {want:?}",
                        v.version
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The checks of a separator: its framing, its stems and the shapes they imply (a
    /// spectrogram's frame axis is `-1` for `stem-masks`: any multiple of `frames_multiple`).
    fn validate_stems(&self) -> Result<(), ManifestError> {
        let kind = self.model.kind.as_str();
        let Some(st) = &self.stems else {
            return Err(invalid(
                "stems",
                "nothing",
                format!("a `{kind}` model needs a [stems] table"),
            ));
        };
        let s = &self.stream;
        if !(1..=2).contains(&s.channels) {
            return Err(invalid(
                "stream.channels",
                s.channels,
                "a separator takes 1 or 2",
            ));
        }
        let (min_stems, max_stems) = if kind == KIND_MDX_NET {
            (2, 2)
        } else {
            (2, MAX_STEMS)
        };
        if !(min_stems..=max_stems).contains(&st.names.len()) {
            return Err(invalid(
                "stems.names",
                st.names.len(),
                if kind == KIND_MDX_NET {
                    "an MDX-Net model has 2: its target, then the rest of the mix".to_string()
                } else {
                    format!("2 to {MAX_STEMS} stems")
                },
            ));
        }
        for (i, n) in st.names.iter().enumerate() {
            let ok = !n.is_empty()
                && n.len() <= 32
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok || n == "none" {
                return Err(invalid(
                    "stems.names",
                    format!("{n:?}"),
                    "lowercase letters, digits and '-' (a file is named after each stem)",
                ));
            }
            if st.names[..i].contains(n) {
                return Err(invalid("stems.names", format!("{n:?}"), "each stem once"));
            }
        }
        let c = s.channels as i64;
        let stems = st.names.len() as i64;
        let (want_in, want_out) = if kind == KIND_DEMUCS {
            let max = 60 * s.sample_rate as usize;
            if !(1024..=max).contains(&st.segment) {
                return Err(invalid(
                    "stems.segment",
                    st.segment,
                    "1024 samples to 60 seconds",
                ));
            }
            let overlap = st.overlap.unwrap_or(0.25);
            if !(0.0..=0.9).contains(&overlap) {
                return Err(invalid("stems.overlap", overlap, "0 to 0.9 of a segment"));
            }
            let n = st.segment as i64;
            (vec![1, c, n], vec![1, stems, c, n])
        } else {
            if st.fft % 2 != 0 || !(256..=16_384).contains(&st.fft) {
                return Err(invalid(
                    "stems.fft",
                    st.fft,
                    "an even number from 256 to 16384",
                ));
            }
            if s.hop > st.fft / 2 {
                return Err(invalid(
                    "stream.hop",
                    s.hop,
                    format!("at most half of stems.fft ({}), so frames overlap", st.fft),
                ));
            }
            if st.bins == 0 || st.bins > st.fft / 2 + 1 {
                return Err(invalid(
                    "stems.bins",
                    st.bins,
                    format!("1 to {}", st.fft / 2 + 1),
                ));
            }
            let b = st.bins as i64;
            if kind == KIND_MDX_NET {
                if s.channels != 2 {
                    return Err(invalid(
                        "stream.channels",
                        s.channels,
                        "MDX-Net is stereo: 2",
                    ));
                }
                if !(1..=4096).contains(&st.frames) {
                    return Err(invalid(
                        "stems.frames",
                        st.frames,
                        "1 to 4096 frames per run",
                    ));
                }
                let g = st.compensation.unwrap_or(1.0);
                if !(g > 0.0 && g <= 10.0) {
                    return Err(invalid(
                        "stems.compensation",
                        g,
                        "a gain above 0, at most 10",
                    ));
                }
                let t = st.frames as i64;
                (vec![1, 4, b, t], vec![1, 4, b, t])
            } else {
                if !(1..=4096).contains(&st.frames_multiple) {
                    return Err(invalid(
                        "stems.frames_multiple",
                        st.frames_multiple,
                        "1 to 4096",
                    ));
                }
                if st.above_bins != "none" && !st.names.contains(&st.above_bins) {
                    return Err(invalid(
                        "stems.above_bins",
                        format!("{:?}", st.above_bins),
                        "one of the stems, or \"none\"",
                    ));
                }
                (vec![1, c, -1, b], vec![1, stems, c, -1, b])
            }
        };
        for (field, t, want) in [
            ("input.shape", &self.input, want_in),
            ("output.shape", &self.output, want_out),
        ] {
            if t.name.is_empty() {
                return Err(invalid(field, "\"\"", "name the tensor"));
            }
            if t.dtype != "float32" {
                return Err(invalid(field, &t.dtype, "separator tensors are float32"));
            }
            if t.shape != want {
                return Err(invalid(
                    field,
                    format!("{:?}", t.shape),
                    format!("[stream] and [stems] imply {want:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
format = 1
[model]
id = "fir-lowpass"
name = "FIR lowpass"
version = "1.0.0"
kind = "audio-to-audio"
file = "fir.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[stream]
sample_rate = 48000
channels = 1
hop = 256
context = 32
latency = 16
[input]
name = "audio_in"
dtype = "float32"
shape = [1, 1, 288]
[output]
name = "audio_out"
dtype = "float32"
shape = [1, 1, 256]
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(
            m.spec(),
            StreamSpec {
                sample_rate: 48_000,
                channels: 1,
                hop: 256,
                context: 32,
                latency: 16,
                tail: 0,
                stems: 1,
                lookahead: 0,
            }
        );
        assert!(!m.rights.licensed_voice);
    }

    fn err(from: &str, to: &str) -> String {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "replacement {from:?} did not apply");
        Manifest::parse(&text).unwrap_err().to_string()
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(err("format = 1", "format = 2").contains("`format`"));
        assert!(err("id = \"fir-lowpass\"", "id = \"fir lowpass\"").contains("model.id"));
        assert!(err("kind = \"audio-to-audio\"", "kind = \"vocoder\"").contains("model.kind"));
        // A voice needs its [voice] table, and only a voice has one.
        assert!(err("kind = \"audio-to-audio\"", "kind = \"rvc\"").contains("[voice] table"));
        assert!(err(
            "format = 1",
            "format = 1\n[voice]\nversion = \"v2\"\nencoder = \"e.onnx\""
        )
        .contains("`voice`"));
        assert!(err("sha256 = \"0000", "sha256 = \"zz00").contains("model.sha256"));
        assert!(err("sample_rate = 48000", "sample_rate = 100").contains("stream.sample_rate"));
        assert!(err("channels = 1", "channels = 0").contains("stream.channels"));
        assert!(err("hop = 256", "hop = 0").contains("stream.hop"));
        assert!(err("latency = 16", "latency = 16\nlookahead = 20").contains("stream.latency"));
        assert!(err("shape = [1, 1, 288]", "shape = [1, 1, 256]").contains("input.shape"));
        assert!(err("shape = [1, 1, 256]", "shape = [1, 2, 256]").contains("output.shape"));
        assert!(err(
            "dtype = \"float32\"\nshape = [1, 1, 288]",
            "dtype = \"float64\"\nshape = [1, 1, 288]"
        )
        .contains("input.dtype"));
        assert!(err("name = \"audio_in\"", "name = \"\"").contains("input.name"));
    }

    #[test]
    fn a_voices_own_pitch_model_is_checked_field_by_field() {
        let voice = include_str!("../../../models/test/rvc-v2/model.toml");
        let with = |table: &str| {
            format!("{voice}\n[[files]]\npath = \"crepe.onnx\"\nsha256 = \"{}\"\n\n[voice.pitch]\n{table}\n", "0".repeat(64))
        };
        let ok = Manifest::parse(&with("format = \"crepe\"\nfile = \"crepe.onnx\"")).unwrap();
        let pitch = ok.voice.unwrap().pitch.unwrap();
        assert_eq!((pitch.format.as_str(), pitch.threshold), ("crepe", None));
        for (table, field) in [
            (
                "format = \"rmvpe\"\nfile = \"crepe.onnx\"",
                "voice.pitch.format",
            ),
            (
                "format = \"crepe\"\nfile = \"other.onnx\"",
                "voice.pitch.file",
            ),
            (
                "format = \"crepe\"\nfile = \"../crepe.onnx\"",
                "voice.pitch.file",
            ),
            (
                "format = \"crepe\"\nfile = \"crepe.onnx\"\nthreshold = 1.5",
                "voice.pitch.threshold",
            ),
        ] {
            let e = Manifest::parse(&with(table)).unwrap_err().to_string();
            assert!(e.contains(field), "{table}: {e}");
        }
    }

    #[test]
    fn paths_must_stay_inside_the_models_folder() {
        for bad in [
            "/etc/passwd",
            "../secret.toml",
            "weights/../../x",
            "./a.bin",
            "C:/x",
            "a//b",
            "",
        ] {
            let e = err("file = \"fir.onnx\"", &format!("file = {bad:?}"));
            assert!(e.contains("model.file"), "{bad}: {e}");
        }
        let listed = GOOD.replace(
            "[input]",
            "[[files]]\npath = \"../weights.bin\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000aa\"\n\n[input]",
        );
        let e = Manifest::parse(&listed).unwrap_err().to_string();
        assert!(e.contains("files.path"), "{e}");
        assert!(check_relative_path("files.path", "weights/part-1.bin").is_ok());
    }

    #[test]
    fn syntax_errors_and_unknown_fields_are_parse_errors() {
        assert!(matches!(
            Manifest::parse("format = "),
            Err(ManifestError::Parse { .. })
        ));
        let e = Manifest::parse(&GOOD.replace("hop = 256", "hop = 256\nhops = 3")).unwrap_err();
        assert!(e.to_string().contains("hops"), "{e}");
        let e = Manifest::load(Path::new("/nonexistent/model.toml")).unwrap_err();
        assert!(matches!(e, ManifestError::Read { .. }), "{e}");
    }

    const STEMS: &str = r#"
format = 1
[model]
id = "spleeter"
name = "Spleeter"
version = "1"
kind = "stem-masks"
file = "s.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[stream]
sample_rate = 44100
channels = 2
hop = 1024
[input]
name = "magnitude"
dtype = "float32"
shape = [1, 2, -1, 1024]
[output]
name = "masks"
dtype = "float32"
shape = [1, 2, 2, -1, 1024]
[stems]
names = ["vocals", "accompaniment"]
fft = 4096
bins = 1024
frames_multiple = 64
above_bins = "accompaniment"
"#;

    #[test]
    fn a_separator_manifest_reads_and_each_mistake_names_its_field() {
        let m = Manifest::parse(STEMS).unwrap();
        assert_eq!(m.stems.as_ref().unwrap().names, ["vocals", "accompaniment"]);
        for (from, to, field) in [
            (
                "shape = [1, 2, 2, -1, 1024]",
                "shape = [1, 3, 2, -1, 1024]",
                "output.shape",
            ),
            (
                "shape = [1, 2, -1, 1024]",
                "shape = [1, 2, 512, 1024]",
                "input.shape",
            ),
            (
                "above_bins = \"accompaniment\"",
                "above_bins = \"drums\"",
                "stems.above_bins",
            ),
            ("fft = 4096", "fft = 4095", "stems.fft"),
            ("hop = 1024", "hop = 3000", "stream.hop"),
            ("bins = 1024", "bins = 4000", "stems.bins"),
            (
                "\"vocals\", \"accompaniment\"",
                "\"vocals\", \"vocals\"",
                "stems.names",
            ),
            (
                "\"vocals\", \"accompaniment\"",
                "\"../x\", \"accompaniment\"",
                "stems.names",
            ),
            ("\"vocals\", \"accompaniment\"", "\"vocals\"", "stems.names"),
            ("channels = 2", "channels = 3", "stream.channels"),
        ] {
            let text = STEMS.replace(from, to);
            assert_ne!(text, STEMS, "{from}");
            match Manifest::parse(&text) {
                Err(ManifestError::Invalid { field: f, .. }) => assert_eq!(f, field, "{to}"),
                other => panic!("{to}: {other:?}"),
            }
        }
        // A separator needs its [stems]; a streaming model has none.
        let cut = &STEMS[..STEMS.find("[stems]").unwrap()];
        assert!(matches!(
            Manifest::parse(cut),
            Err(ManifestError::Invalid { field: "stems", .. })
        ));
        let streaming_with_stems = format!("{GOOD}\n{}", &STEMS[STEMS.find("[stems]").unwrap()..]);
        assert!(matches!(
            Manifest::parse(&streaming_with_stems),
            Err(ManifestError::Invalid { field: "stems", .. })
        ));
    }
}
