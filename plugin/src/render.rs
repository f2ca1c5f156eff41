//! Offline rendering of a file through the same engine the plugin runs (`refrain render`).

use crate::chain::{Chain, ChainKey};
use crate::engine::latency::Mode;
use crate::engine::{Controls, EngineConfig};
use crate::licence::enforce::Setting;
use crate::models::ModelSource;
use std::time::{Duration, Instant};

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
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
