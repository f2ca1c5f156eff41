//! Offline rendering of a file through the same engine the plugin runs (`refrain render`).

use crate::chain::{Chain, ChainKey};
use crate::engine::latency::Mode;
use crate::engine::{Controls, EngineConfig};
use crate::licence::enforce::Setting;
use crate::models::ModelSource;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("the model did not run: {0}")]
    Model(String),
    #[error("{path} has {channels} channels; Refrain renders mono or stereo")]
    Channels { path: String, channels: usize },
    #[error("model `{model}` needs a licence: {reason}")]
    Unlicensed { model: String, reason: String },
}

/// What a render did.
#[derive(Debug, Clone)]
pub struct RenderReport {
    pub frames: usize,
    pub sample_rate: u32,
    pub latency: u32,
    pub latency_terms: String,
    pub seconds: f64,
    pub real_time_factor: f64,
    pub underruns: u64,
}

/// Reads a WAV file as planar f32.
pub fn read_wav(path: &Path) -> Result<(Vec<Vec<f32>>, u32), RenderError> {
    let err = |e: hound::Error| RenderError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut r = hound::WavReader::open(path).map_err(err)?;
    let spec = r.spec();
    let ch = spec.channels as usize;
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(err)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(err)?
        }
    };
    let mut out = vec![Vec::with_capacity(samples.len() / ch.max(1)); ch];
    for (i, s) in samples.into_iter().enumerate() {
        out[i % ch].push(s);
    }
    Ok((out, spec.sample_rate))
}

/// Writes planar f32 as a 32-bit float WAV.
pub fn write_wav(path: &Path, audio: &[Vec<f32>], rate: u32) -> Result<(), RenderError> {
    let err = |e: hound::Error| RenderError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: audio.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for i in 0..audio.first().map_or(0, |c| c.len()) {
        for c in audio {
            w.write_sample(c[i]).map_err(err)?;
        }
    }
    w.finalize().map_err(err)
}

/// `input` with `latency` samples of silence appended to each channel, so a
/// latency-compensated bounce gets the whole tail.
pub fn pad(input: &[Vec<f32>], latency: usize) -> Vec<Vec<f32>> {
    input
        .iter()
        .map(|c| {
            c.iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, latency))
                .collect()
        })
        .collect()
}

/// Checks the licence a render of `input` through `source` needs, with the check the plugin
/// runs: the licence (`track`) must cover the model and the use, and for a remix model the
/// input must match the licensed track's fingerprint. Returns the licence verdict, or `None`
/// when the model needs no licence.
pub fn check_licence(
    source: &ModelSource,
    track: Option<&crate::licence::gate::LoadedTrack>,
    input: &[Vec<f32>],
    sample_rate: u32,
) -> Result<Option<crate::licence::policy::Verdict>, RenderError> {
    use crate::licence::enforce::{self, Setting};
    use crate::licence::fingerprint::{LiveMatcher, TrackMatch};
    let Ok(manifest) = source.manifest() else {
        // The render reports the manifest's problem itself.
        return Ok(None);
    };
    let unlicensed = |reason: String| RenderError::Unlicensed {
        model: manifest.model.id.clone(),
        reason,
    };
    let Some((verdict, _)) = enforce::check(&manifest, track, Setting::Studio) else {
        return Ok(None);
    };
    if !verdict.state.allows() {
        return Err(unlicensed(verdict.reason));
    }
    let reference = verdict
        .claims
        .as_ref()
        .filter(|_| manifest.rights.licensed_track)
        .and_then(|c| c.reference_fingerprint().ok().flatten());
    if let Some(reference) = reference {
        let mut matcher = LiveMatcher::new(reference, sample_rate).map_err(unlicensed)?;
        let frames = input.first().map_or(0, Vec::len);
        let mut mono = vec![0.0f32; 4096];
        for start in (0..frames).step_by(4096) {
            let n = 4096.min(frames - start);
            for (i, m) in mono[..n].iter_mut().enumerate() {
                *m = input.iter().map(|c| c[start + i]).sum::<f32>() / input.len() as f32;
            }
            if matcher.push(&mono[..n]) == Some(TrackMatch::Mismatch) {
                return Err(unlicensed(format!(
                    "{} (from {:.0} s on)",
                    crate::licence::LicenceError::TrackMismatch,
                    start as f64 / sample_rate as f64
                )));
            }
        }
    }
    Ok(Some(verdict))
}

/// Renders `input` through `source` offline in `mode`, compensating the latency so the output
/// lines up with the input sample for sample. `progress` is called with the fraction done.
/// Models that need a licence are refused unless `track`'s licence covers them (see
/// [`check_licence`]).
pub fn render(
    source: &ModelSource,
    track: Option<&crate::licence::gate::LoadedTrack>,
    mode: Mode,
    input: &[Vec<f32>],
    sample_rate: u32,
    block: usize,
    mut progress: impl FnMut(f64),
) -> Result<(Vec<Vec<f32>>, RenderReport), RenderError> {
    check_licence(source, track, input, sample_rate)?;
    let key = ChainKey {
        model: source.to_state(),
        track: track.map(|t| t.to_state()).unwrap_or_default(),
        mode,
        config: EngineConfig {
            sample_rate: sample_rate as f32,
            max_block: block,
            channels: input.len(),
        },
        setting: Setting::Studio,
    };
    let mut chain = Chain::build(key, |_| {})?;
    // A render waits for the model and its measurement: the latency it compensates is final.
    chain.engine.wait_for_measurement(Duration::from_secs(600));
    let latency = chain.engine.latency() as usize;
    let frames = input.first().map_or(0, |c| c.len());
    let total = frames + latency;
    let mut io = pad(input, latency);
    let started = Instant::now();
    let mut t = 0;
    while t < total {
        let n = block.min(total - t);
        let mut slices: Vec<&mut [f32]> = io.iter_mut().map(|c| &mut c[t..t + n]).collect();
        chain.process(&mut slices, Controls::offline(), true);
        t += n;
        progress(t as f64 / total as f64);
    }
    let status = chain.engine.status().clone();
    if status.state() == crate::engine::status::EngineState::Failed {
        return Err(RenderError::Model(status.message()));
    }
    let seconds = started.elapsed().as_secs_f64();
    let out = io.into_iter().map(|c| c[latency..].to_vec()).collect();
    let report = RenderReport {
        frames,
        sample_rate,
        latency: latency as u32,
        latency_terms: chain.engine.plan().describe(),
        seconds,
        real_time_factor: seconds / (frames.max(1) as f64 / sample_rate as f64),
        underruns: status.underruns.load(std::sync::atomic::Ordering::Relaxed),
    };
    Ok((out, report))
}
