//! A whole file into one WAV per stem, streamed: decode a block, resample it to the model's
//! rate, separate, resample each stem back, write. Memory is a segment and a block, whatever the
//! file's length; each stem has exactly the input's length, rate and channels, aligned sample
//! for sample; the stem files appear only when all of them are complete.

use super::demucs::DemucsSeparator;
use super::mdx::MdxSeparator;
use super::model::SeparatorModel;
use super::separator::{Schedule, Separator};
use super::{SeparateError, StemStream};
use crate::engine::resample::RateChange;
use crate::media::{AudioReader, WavWriter};
use crate::models::manifest::{KIND_DEMUCS, KIND_MDX_NET};
use crate::models::package::ModelPackage;
use crate::render::RenderLicence;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Frames decoded per block.
const BLOCK: usize = 8192;

/// How a file is separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeparateOptions {
    /// Studio (the default for files) or Live (what the plugin's Live mode hears).
    pub schedule: Schedule,
    /// Vocals, drums, bass, other (the accompaniment split by DSP) instead of the model's own
    /// stems.
    pub four_stems: bool,
}

impl SeparateOptions {
    /// Studio, with or without the four-stem split.
    pub fn studio(four_stems: bool) -> SeparateOptions {
        SeparateOptions {
            schedule: Schedule::studio(),
            four_stems,
        }
    }
}

/// What a separation did.
#[derive(Debug, Clone)]
pub struct SeparationReport {
    /// Each stem's name and file.
    pub stems: Vec<(String, PathBuf)>,
    pub frames: u64,
    pub sample_rate: u32,
    pub channels: usize,
    pub seconds_taken: f64,
    pub segments_run: u64,
    /// Where the model ran.
    pub device: String,
}

/// A file's rate change, its error in separation's words.
fn rate_change(from: u32, to: u32, channels: usize) -> Result<RateChange, SeparateError> {
    RateChange::new(from, to, channels).map_err(|e| SeparateError::Resample {
        from,
        to,
        reason: e.to_string(),
    })
}

/// Each stem on its way from the separator to its file.
struct StemOutputs {
    back: Vec<RateChange>,
    writers: Vec<WavWriter>,
    /// `[stem][channel]`: what the separator gave, at the model's rate.
    at_model_rate: Vec<Vec<Vec<f32>>>,
    at_file_rate: Vec<Vec<Vec<f32>>>,
    /// Per stem, samples taken from the separator and frames written.
    from_model: Vec<u64>,
    written: Vec<u64>,
}

impl StemOutputs {
    /// Resamples and writes what the separator gave. `ended` = (samples at the model's rate
    /// that went in, frames of the file): the stream is over, so each stem is cut to exactly
    /// that length.
    fn forward(&mut self, ended: Option<(u64, u64)>) -> Result<(), SeparateError> {
        for s in 0..self.writers.len() {
            let model_limit = ended.map_or(u64::MAX, |(m, _)| m);
            let have = self.at_model_rate[s][0].len() as u64;
            let keep = model_limit.saturating_sub(self.from_model[s]).min(have) as usize;
            let planes: Vec<&[f32]> = self.at_model_rate[s].iter().map(|c| &c[..keep]).collect();
            self.back[s].push(&planes, &mut self.at_file_rate[s]);
            self.from_model[s] += keep as u64;
            for c in &mut self.at_model_rate[s] {
                c.clear();
            }
            if ended.is_some() {
                self.back[s].finish(&mut self.at_file_rate[s]);
            }
            let file_limit = ended.map_or(u64::MAX, |(_, f)| f);
            let have = self.at_file_rate[s][0].len() as u64;
            let k = file_limit.saturating_sub(self.written[s]).min(have) as usize;
            let planes: Vec<&[f32]> = self.at_file_rate[s].iter().map(|c| &c[..k]).collect();
            self.writers[s].write(&planes)?;
            self.written[s] += k as u64;
            for c in &mut self.at_file_rate[s] {
                c.clear();
            }
        }
        Ok(())
    }
}

/// Separates `input` (WAV, AIFF, FLAC, MP3, Ogg Vorbis; mono or stereo) with the separator in
/// `package` into `out_dir/<stem>.wav` (32-bit float, the input's rate and channels), Studio
/// on `options.schedule` (Studio: Spleeter's 512-frame segments, overlapped and cross-faded).
/// With `four_stems` the accompaniment is split into drums, bass and other
/// ([`super::four_stems`]). `progress` hears the fraction done (when the file states its
/// length).
pub fn separate_file(
    input: &Path,
    out_dir: &Path,
    package: &ModelPackage,
    options: SeparateOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<SeparationReport, SeparateError> {
    separate_file_checked(input, out_dir, package, options, None, progress)
}

/// [`separate_file`] under a licence check: every block separated is fed to `licence` as it
/// is read (so the bytes checked are the bytes separated, whatever happens to the file), and
/// no stem is put in place unless the whole input passes ([`RenderLicence::finish`]).
pub fn separate_file_checked(
    input: &Path,
    out_dir: &Path,
    package: &ModelPackage,
    options: SeparateOptions,
    mut licence: Option<&mut RenderLicence>,
    progress: &mut dyn FnMut(f64),
) -> Result<SeparationReport, SeparateError> {
    let started = Instant::now();
    let mut reader = AudioReader::open(input)?;
    let channels = reader.channels();
    if channels > 2 {
        return Err(SeparateError::Channels { channels });
    }
    let rate = reader.sample_rate();
    let unlicensed = |e: crate::render::RenderError| SeparateError::Unlicensed {
        reason: e.to_string(),
    };
    if let Some(l) = &licence {
        if l.sample_rate() != rate {
            return Err(SeparateError::Unlicensed {
                reason: format!(
                    "the input changed while it was being checked ({} Hz, then {rate} Hz)",
                    l.sample_rate()
                ),
            });
        }
    }
    let model = SeparatorModel::from_package(package)?;
    let model_rate = package.manifest.stream.sample_rate;
    let device = model.device.clone();
    let hop = package.manifest.stream.hop;
    let live = matches!(options.schedule, Schedule::Windows { .. });
    let kind = package.manifest.model.kind.as_str();
    if live && (kind == KIND_MDX_NET || kind == KIND_DEMUCS) {
        return Err(SeparateError::NotLive {
            id: model.id.clone(),
            kind: kind.to_owned(),
        });
    }
    let mut separator: Box<dyn StemStream> = match kind {
        KIND_MDX_NET | KIND_DEMUCS if options.four_stems => {
            return Err(SeparateError::NoAccompaniment {
                id: model.id.clone(),
                stems: model.stems.names.join(", "),
            })
        }
        KIND_MDX_NET => Box::new(MdxSeparator::new(model, channels, hop)?),
        KIND_DEMUCS => Box::new(DemucsSeparator::new(model, channels, hop)?),
        _ => Box::new(Separator::new(
            model,
            channels,
            options.schedule,
            hop,
            model_rate,
            options.four_stems,
        )?),
    };
    std::fs::create_dir_all(out_dir).map_err(|e| SeparateError::OutDir {
        path: out_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let names: Vec<String> = separator.stem_names().to_vec();
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| out_dir.join(format!("{n}.wav")))
        .collect();
    let writers = paths
        .iter()
        .map(|p| WavWriter::create(p, channels, rate))
        .collect::<Result<Vec<_>, _>>()?;
    let mut to_model = rate_change(rate, model_rate, channels)?;
    let mut outputs = StemOutputs {
        back: names
            .iter()
            .map(|_| rate_change(model_rate, rate, channels))
            .collect::<Result<_, _>>()?,
        writers,
        at_model_rate: vec![vec![Vec::new(); channels]; names.len()],
        at_file_rate: vec![vec![Vec::new(); channels]; names.len()],
        from_model: vec![0; names.len()],
        written: vec![0; names.len()],
    };
    let mut block = vec![Vec::new(); channels];
    let mut at_model_rate = vec![Vec::new(); channels];
    // Samples at the model's rate that went in (each stem is cut to as many).
    let mut model_in: u64 = 0;
    let mut frames: u64 = 0;
    let total = reader.frames();
    let mut ended = false;
    while !ended {
        let n = reader.read(&mut block, BLOCK)?;
        frames += n as u64;
        if n == 0 {
            to_model.finish(&mut at_model_rate);
            ended = true;
        } else {
            let planes: Vec<&[f32]> = block.iter().map(|c| c.as_slice()).collect();
            if let Some(l) = licence.as_deref_mut() {
                l.feed(&planes).map_err(unlicensed)?;
            }
            to_model.push(&planes, &mut at_model_rate);
        }
        model_in += at_model_rate[0].len() as u64;
        let planes: Vec<&[f32]> = at_model_rate.iter().map(|c| c.as_slice()).collect();
        separator.push(&planes, &mut outputs.at_model_rate)?;
        for c in &mut at_model_rate {
            c.clear();
        }
        if ended {
            separator.finish(&mut outputs.at_model_rate)?;
            outputs.forward(Some((model_in, frames)))?;
        } else {
            outputs.forward(None)?;
            if let Some(t) = total.filter(|&t| t > 0) {
                progress((frames as f64 / t as f64).min(1.0));
            }
        }
    }
    for (name, w) in names.iter().zip(&outputs.written) {
        if *w != frames {
            return Err(SeparateError::Model {
                id: package.manifest.model.id.clone(),
                reason: format!("the stem {name} came out {w} frames long, the input is {frames}"),
            });
        }
    }
    if let Some(l) = licence {
        l.finish().map_err(unlicensed)?;
    }
    let writers = outputs.writers;
    // Every stem is complete (and the input licensed): put them in place.
    for w in writers {
        w.finish()?;
    }
    progress(1.0);
    Ok(SeparationReport {
        stems: names.into_iter().zip(paths).collect(),
        frames,
        sample_rate: rate,
        channels,
        seconds_taken: started.elapsed().as_secs_f64(),
        segments_run: separator.runs(),
        device,
    })
}
