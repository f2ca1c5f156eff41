//! Stem separation: a `stem-masks` model (Spleeter 2-stems, shared/MODELS.md §7) on the STFT of
//! the audio, its ratio masks applied to the complex spectrum and inverted.
//!
//! The files, in the order audio goes through them: [`stft`] (Spleeter's framing, both ways),
//! [`model`] (a separator's session: Spleeter's masks, MDX-Net's spectrogram, Demucs's
//! waveforms), [`separator`] (a stream separated
//! on a Studio schedule of overlapped, cross-faded segments or a Live one of sliding windows), [`four_stems`] (drums, bass and other out of
//! the accompaniment by DSP), [`mdx`] and [`demucs`] (the formats users bring), [`overlap`] (Studio's overlapped
//! segments, shared), [`file`] (a whole file, streamed, into one
//! WAV per stem: what `refrain separate` runs), [`processor`] (a separator as the engine's hop
//! processor: what the plugin runs, every stem on its own output).

pub mod demucs;
pub mod file;
pub mod four_stems;
pub mod mdx;
pub mod model;
pub mod overlap;
pub mod processor;
pub mod separator;
pub mod stft;

use crate::media::MediaError;
use crate::models::generic::ModelError;

/// A stream being separated, whatever the model's format: audio in at the model's rate, each
/// stem out (`out[stem][channel]`, in [`Self::stem_names`] order), aligned with the input.
pub trait StemStream {
    /// The stems, in output order.
    fn stem_names(&self) -> &[String];
    /// Feeds planar input; appends what is ready of each stem to `out`.
    fn push(&mut self, planar: &[&[f32]], out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError>;
    /// Ends the stream: every stem then has at least as many samples as went in.
    fn finish(&mut self, out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError>;
    /// Model runs so far.
    fn runs(&self) -> u64;
    /// Where the model runs, in words.
    fn device(&self) -> &str;
    /// The most input samples the output can trail by, fed `hop` samples at a time (the hop
    /// [`processor::StemProcessor`] feeds it): the latency a stream of it reports.
    fn lag(&self) -> usize;
    /// Forgets the stream (a new one starts), keeping the model.
    fn reset(&mut self);
    /// While set, the model does not run: the stream moves on with the masks of its last run
    /// (the engine skips hops when bypassed or late; what comes out then is not heard).
    /// Separators that cannot do that run as usual.
    fn set_skipping(&mut self, _skipping: bool) {}
}

/// Which audio channel feeds each model channel, one list per run: the same channels in one
/// run; mono audio to a stereo model twice; stereo audio to a mono model one channel a run.
/// Each audio channel's result is then the mean over the model channels that carried it.
pub fn channel_runs(model_channels: usize, audio_channels: usize) -> Vec<Vec<usize>> {
    if model_channels == audio_channels {
        vec![(0..model_channels).collect()]
    } else if model_channels == 2 {
        vec![vec![0, 0]]
    } else {
        (0..audio_channels).map(|c| vec![c]).collect()
    }
}

/// Why a separation could not run. Each message names the model, file or setting at fault and
/// what is valid.
#[derive(Debug, thiserror::Error)]
pub enum SeparateError {
    /// A separator that needs a licence, on an input the licence does not cover.
    #[error("{reason}")]
    Unlicensed { reason: String },
    #[error("{id} is not a stem separator (its kind is `{kind}`; separators are `stem-masks`, `mdx-net` and `demucs`)")]
    NotASeparator { id: String, kind: String },
    #[error("the separator {id} failed: {reason}")]
    Model { id: String, reason: String },
    #[error("four stems split the accompaniment of a `stem-masks` model, and {id} has none (its stems: {stems})")]
    NoAccompaniment { id: String, stems: String },
    #[error("{id} is a `{kind}` model: it runs on files in Studio mode; Live windows are for `stem-masks` models")]
    NotLive { id: String, kind: String },
    #[error("separation takes mono or stereo audio; this has {channels} channels")]
    Channels { channels: usize },
    #[error("{schedule:?}: a segment or window is a positive multiple of {multiple} frames, longer than its overlap, and holds a pass and its look-ahead")]
    Schedule {
        schedule: separator::Schedule,
        multiple: usize,
    },
    #[error(transparent)]
    Load(#[from] ModelError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("cannot resample {from} Hz to {to} Hz: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    #[error("cannot create the output folder {path}: {reason}")]
    OutDir { path: String, reason: String },
}
