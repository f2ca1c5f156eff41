//! Offline rendering of a file through the same engine the plugin runs (`refrain render`).

use crate::chain::{Chain, ChainKey};
use crate::engine::latency::Mode;
use crate::engine::{Controls, EngineConfig};
use crate::licence::enforce::Setting;
use crate::models::package::ModelPackage;
use crate::models::ModelSource;
use std::sync::Arc;
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
    #[error(
        "model `{model}`'s cover licence names a backing track: give the backing the voice \
         sings over (`refrain render --backing FILE`)"
    )]
    NoBacking { model: String },
    #[error(
        "the backing {path} must be at the voice's sample rate ({want} Hz; it is {got} Hz) \
         and last as long as the voice ({need:.1} s; it is {has:.1} s)"
    )]
    Backing {
        path: String,
        want: u32,
        got: u32,
        need: f64,
        has: f64,
    },
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
    /// The licensed use the render made, one line each (licence, track, model, whether
    /// commercial, milliseconds), as the usage ledger will record it; empty for models that
    /// need no licence.
    pub usage: Vec<String>,
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

/// The licence a render needs, checked before any audio is processed; for a remix model the
/// input is then fed through, block by block, and must match the licensed track (for a voice
/// under a cover licence that names a backing track, the backing is fed and must match).
pub struct RenderLicence {
    pub verdict: crate::licence::policy::Verdict,
    model: String,
    matcher: Option<crate::licence::fingerprint::LiveMatcher>,
    mid: Vec<f32>,
    side: Vec<f32>,
    rate: u32,
}

impl RenderLicence {
    /// The licence check the plugin runs, for a render of `package`'s model at `sample_rate`;
    /// `None` when the model needs no licence.
    pub fn check(
        package: &ModelPackage,
        track: Option<&crate::licence::gate::LoadedTrack>,
        sample_rate: u32,
    ) -> Result<Option<RenderLicence>, RenderError> {
        use crate::licence::enforce::{self, Setting};
        use crate::licence::fingerprint::LiveMatcher;
        let manifest = &package.manifest;
        let unlicensed = |reason: String| RenderError::Unlicensed {
            model: manifest.model.id.clone(),
            reason,
        };
        let Some((verdict, _)) = enforce::check(package, track, Setting::Studio) else {
            return Ok(None);
        };
        if !verdict.state.allows() {
            return Err(unlicensed(verdict.reason));
        }
        let backing = enforce::checks_the_backing(package);
        let claims = verdict
            .claims
            .as_ref()
            .filter(|_| enforce::checks_the_track(package) || backing);
        let reference = claims.and_then(|c| c.reference_fingerprint().ok().flatten());
        let loudness = claims.and_then(|c| c.track.loudness_dbfs);
        let tuning = claims.and_then(|c| c.track.tuning_cents);
        let channels = claims.and_then(|c| c.channel_references().ok().flatten());
        let stems = claims
            .and_then(|c| c.stem_references().ok())
            .unwrap_or_default();
        let matcher = match reference {
            Some(r) => {
                let m = LiveMatcher::new(r, sample_rate)
                    .and_then(|m| m.with_channel_references(channels))
                    .map_err(unlicensed)?
                    .with_reference_loudness(loudness)
                    .with_reference_tuning(tuning)
                    .with_stem_references(stems)
                    .offline();
                Some(if backing { m.of_backing() } else { m })
            }
            None => None,
        };
        Ok(Some(RenderLicence {
            verdict,
            model: manifest.model.id.clone(),
            matcher,
            mid: Vec::new(),
            side: Vec::new(),
            rate: sample_rate,
        }))
    }

    /// The sample rate the input is checked at.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Whether the input must be fed through (a remix model with a reference fingerprint).
    pub fn needs_input(&self) -> bool {
        self.matcher.as_ref().is_some_and(|m| !m.is_backing())
    }

    /// Whether a backing track must be fed through instead (a voice whose cover licence names
    /// one).
    pub fn needs_backing(&self) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_backing())
    }

    /// Feeds planar input (all of it, before [`Self::finish`] judges it).
    pub fn feed(&mut self, planar: &[&[f32]]) -> Result<(), RenderError> {
        let Some(matcher) = &mut self.matcher else {
            return Ok(());
        };
        let n = planar.first().map_or(0, |c| c.len());
        self.mid.clear();
        self.mid
            .extend((0..n).map(|i| planar.iter().map(|c| c[i]).sum::<f32>() / planar.len() as f32));
        self.side.clear();
        if let [l, r] = planar {
            self.side.extend((0..n).map(|i| (l[i] - r[i]) * 0.5));
        }
        // The whole file decides ([`Self::finish`]), not its first minutes.
        matcher.push_stereo(&self.mid, &self.side);
        Ok(())
    }

    /// After the whole input was fed: the share of it that matches decides (a file shorter
    /// than the mismatch time is judged too, whole).
    pub fn finish(&mut self) -> Result<(), RenderError> {
        match &mut self.matcher {
            Some(m) => m.judge_whole().map_err(|reason| RenderError::Unlicensed {
                model: self.model.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// Feeds the backing at `path` to `licence` (a cover's: it must match the licensed track) for
/// as long as the input `reader` reads lasts, the span the voice sings over (more of it would
/// let the licensed track after the voice's end carry other music under the voice), and checks
/// it against the input: the same sample rate, and at least as long (a second's slack).
/// `reader` is read to its end.
fn check_backing(
    licence: &mut RenderLicence,
    path: &std::path::Path,
    reader: &mut crate::media::AudioReader,
    rate: u32,
) -> Result<(), RenderError> {
    let mut side = crate::media::AudioReader::open(path)?;
    let channels = side.channels();
    if channels > 2 {
        return Err(RenderError::Channels {
            path: path.display().to_string(),
            channels,
        });
    }
    let mut input_frames = 0u64;
    let mut buf = vec![Vec::new(); reader.channels()];
    loop {
        let n = reader.read(&mut buf, 1 << 14)?;
        if n == 0 {
            break;
        }
        input_frames += n as u64;
    }
    let mut side_frames = 0u64;
    if side.sample_rate() == rate {
        let mut buf = vec![Vec::new(); channels];
        while side_frames < input_frames {
            let want = (input_frames - side_frames).min(1 << 14) as usize;
            let n = side.read(&mut buf, want)?;
            if n == 0 {
                break;
            }
            side_frames += n as u64;
            let planes: Vec<&[f32]> = buf.iter().map(|c| &c[..n]).collect();
            licence.feed(&planes)?;
        }
    }
    if side.sample_rate() != rate || side_frames + u64::from(rate) < input_frames {
        return Err(RenderError::Backing {
            path: path.display().to_string(),
            want: rate,
            got: side.sample_rate(),
            need: input_frames as f64 / f64::from(rate),
            has: side_frames as f64 / f64::from(side.sample_rate().max(1)),
        });
    }
    licence.finish()
}

/// Checks the licence a render of `input` through `package`'s model needs (see [`RenderLicence`]).
/// Returns the licence verdict, or `None` when the model needs no licence.
pub fn check_licence(
    package: &ModelPackage,
    track: Option<&crate::licence::gate::LoadedTrack>,
    input: &[Vec<f32>],
    sample_rate: u32,
) -> Result<Option<crate::licence::policy::Verdict>, RenderError> {
    let Some(mut licence) = RenderLicence::check(package, track, sample_rate)? else {
        return Ok(None);
    };
    if licence.needs_backing() {
        return Err(RenderError::NoBacking {
            model: licence.model.clone(),
        });
    }
    let frames = input.first().map_or(0, Vec::len);
    for start in (0..frames).step_by(4096) {
        let end = (start + 4096).min(frames);
        let block: Vec<&[f32]> = input.iter().map(|c| &c[start..end]).collect();
        licence.feed(&block)?;
    }
    licence.finish()?;
    Ok(Some(licence.verdict))
}

/// The chain a render runs: `package`'s model (named `source` in the chain's key) in `mode` at
/// `sample_rate`, waiting for the model and its measurement so the latency it compensates is
/// final.
fn render_chain(
    source: &ModelSource,
    package: Arc<ModelPackage>,
    track: Option<&crate::licence::gate::LoadedTrack>,
    mode: Mode,
    sample_rate: u32,
    channels: usize,
    block: usize,
) -> Result<Chain, RenderError> {
    let key = ChainKey {
        model: source.to_state(),
        track: track.map(|t| t.to_state()).unwrap_or_default(),
        mode,
        config: EngineConfig {
            sample_rate: sample_rate as f32,
            max_block: block,
            channels,
        },
        setting: Setting::Studio,
        notes: None,
        note_settings: Default::default(),
    };
    let mut chain = Chain::with_package(key, Ok(package), |_| {})?;
    chain.engine.wait_for_measurement(Duration::from_secs(600));
    Ok(chain)
}

/// Fills planar blocks of at most the given frames; 0 at the end.
type ReadBlock<'a> = dyn FnMut(&mut [Vec<f32>], usize) -> Result<usize, RenderError> + 'a;
/// Takes planar output.
type WriteBlock<'a> = dyn FnMut(&[&[f32]]) -> Result<(), RenderError> + 'a;

/// Runs the chain over everything `read` gives (planar blocks of at most `block` frames; 0 at
/// the end) and hands `write` the output, compensated by the latency: output frame `t` is the
/// response to input frame `t`. Memory stays the same whatever the length. Returns the frames.
#[allow(clippy::too_many_arguments)]
fn run(
    chain: &mut Chain,
    channels: usize,
    block: usize,
    total: Option<u64>,
    read: &mut ReadBlock<'_>,
    mut backing: Option<&mut ReadBlock<'_>>,
    write: &mut WriteBlock<'_>,
    progress: &mut dyn FnMut(f64),
) -> Result<u64, RenderError> {
    let latency = chain.engine.latency() as u64;
    // The backing (a cover's: the chain's licence check listens to it), block by block beside
    // the input; silence past its end.
    let mut side: Vec<Vec<f32>> = (0..2).map(|_| Vec::with_capacity(block)).collect();
    let mut input = vec![Vec::with_capacity(block); channels];
    let mut io = vec![vec![0.0f32; block]; channels];
    // Frames read from the input; frames fed to the engine (the input, then silence).
    let (mut frames_in, mut pushed) = (0u64, 0u64);
    let mut ended = false;
    loop {
        let n = if ended { 0 } else { read(&mut input, block)? };
        ended |= n == 0;
        // After the input, silence until the last input frame's response is out.
        let k = if n > 0 {
            n
        } else {
            (frames_in + latency - pushed).min(block as u64) as usize
        };
        if k == 0 {
            break;
        }
        for (buf, src) in io.iter_mut().zip(&input) {
            if n > 0 {
                buf[..k].copy_from_slice(&src[..k]);
            } else {
                buf[..k].fill(0.0);
            }
        }
        let mut sides = 0;
        if let Some(read_backing) = backing.as_mut() {
            // Stereo (a mono backing on both sides), as much as is left of it.
            read_backing(&mut side, k)?;
            for c in side.iter_mut() {
                c.resize(k, 0.0);
            }
            sides = side.len();
        }
        {
            let mut slices: Vec<&mut [f32]> = io.iter_mut().map(|c| &mut c[..k]).collect();
            let controls = Controls {
                voice: chain.voice.load(),
                ..Controls::offline()
            };
            let beside: Vec<&[f32]> = side[..sides].iter().map(|c| &c[..k]).collect();
            chain.process_with_backing(&mut slices, &beside, &mut [], controls, true);
        }
        // The engine's first `latency` output frames come before any input's response.
        let skip = (latency.max(pushed).min(pushed + k as u64) - pushed) as usize;
        if skip < k {
            let planes: Vec<&[f32]> = io.iter().map(|c| &c[skip..k]).collect();
            write(&planes)?;
        }
        pushed += k as u64;
        frames_in += n as u64;
        if let Some(total) = total.filter(|&t| t > 0) {
            progress((pushed.saturating_sub(latency) as f64 / total as f64).min(1.0));
        }
    }
    Ok(frames_in)
}

fn report(
    chain: &mut Chain,
    frames: u64,
    sample_rate: u32,
    started: Instant,
) -> Result<RenderReport, RenderError> {
    let usage = chain
        .licensing
        .as_mut()
        .and_then(|l| l.take_usage())
        .map(|(uses, terms)| uses.iter().map(|u| u.describe(&terms)).collect())
        .unwrap_or_default();
    let status = chain.engine.status();
    if status.state() == crate::engine::status::EngineState::Failed {
        return Err(RenderError::Model(status.message()));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RenderReport {
        frames: frames as usize,
        sample_rate,
        latency: chain.engine.latency(),
        latency_terms: chain.engine.plan().describe(),
        seconds,
        real_time_factor: seconds / (frames.max(1) as f64 / sample_rate as f64),
        underruns: status.underruns.load(std::sync::atomic::Ordering::Relaxed),
        usage,
    })
}

/// How a render runs: the mode, the block size fed to the engine, and the voice's settings.
#[derive(Debug, Clone, Copy)]
pub struct RenderSettings {
    pub mode: Mode,
    pub block: usize,
    pub voice: crate::voice::controls::VoiceSettings,
}

impl RenderSettings {
    /// `mode` in blocks of `block` frames, the voice at its defaults.
    pub fn new(mode: Mode, block: usize) -> RenderSettings {
        RenderSettings {
            mode,
            block,
            voice: Default::default(),
        }
    }
}

/// Renders the audio file `input` through `source` offline in `mode` into a 32-bit float WAV at
/// `output`, in blocks: memory does not grow with the file's length. The output appears only
/// when the render succeeds, so it may be the input itself. A model that needs a licence is
/// refused unless `track`'s licence covers it; for a remix model the input is checked against
/// the licensed track first (a pass over the whole file, before anything is written).
pub fn render_file(
    source: &ModelSource,
    track: Option<&crate::licence::gate::LoadedTrack>,
    settings: RenderSettings,
    input: &std::path::Path,
    output: &std::path::Path,
    progress: impl FnMut(f64),
) -> Result<RenderReport, RenderError> {
    render_file_over(source, track, settings, input, None, output, progress)
}

/// [`render_file`] with `backing`, the backing track a cover's voice sings over (an audio
/// file at the input's sample rate, mono or stereo, at least as long as the input). A voice
/// whose cover licence names a backing track needs it (shared/DECISIONS.md §5): the whole
/// backing must match the licensed track before anything is written, and the render's own
/// licence check listens to it block by block, as the plugin's listens to its "Backing"
/// sidechain. Other models ignore it.
pub fn render_file_over(
    source: &ModelSource,
    track: Option<&crate::licence::gate::LoadedTrack>,
    settings: RenderSettings,
    input: &std::path::Path,
    backing: Option<&std::path::Path>,
    output: &std::path::Path,
    mut progress: impl FnMut(f64),
) -> Result<RenderReport, RenderError> {
    use crate::media::{AudioReader, WavWriter};
    let RenderSettings { mode, block, voice } = settings;
    let mut reader = AudioReader::open(input)?;
    let (channels, rate) = (reader.channels(), reader.sample_rate());
    if channels > 2 {
        return Err(RenderError::Channels {
            path: input.display().to_string(),
            channels,
        });
    }
    let mut side: Option<AudioReader> = None;
    // The model's folder is read once: the licence names what runs.
    let package = source
        .package_with(track, crate::licence::enforce::Setting::Studio)
        .map_err(|e| RenderError::Model(e.to_string()))?;
    if let Some(mut licence) = RenderLicence::check(&package, track, rate)? {
        if licence.needs_input() {
            let mut buf = vec![Vec::new(); channels];
            while reader.read(&mut buf, 1 << 14)? > 0 {
                let planes: Vec<&[f32]> = buf.iter().map(|c| c.as_slice()).collect();
                licence.feed(&planes)?;
            }
            licence.finish()?;
            reader = AudioReader::open(input)?;
        }
        if licence.needs_backing() {
            let path = backing.ok_or_else(|| RenderError::NoBacking {
                model: licence.model.clone(),
            })?;
            check_backing(&mut licence, path, &mut reader, rate)?;
            reader = AudioReader::open(input)?;
            side = Some(AudioReader::open(path)?);
        }
    }
    let mut chain = render_chain(source, package, track, mode, rate, channels, block)?;
    chain.voice.store(&voice);
    let mut writer = WavWriter::create(output, channels, rate)?;
    let started = Instant::now();
    let total = reader.frames();
    let has_side = side.is_some();
    let mut side_block = vec![Vec::new(); side.as_ref().map_or(1, AudioReader::channels)];
    let mut read_side = |buf: &mut [Vec<f32>], max: usize| -> Result<usize, RenderError> {
        let n = match side.as_mut() {
            Some(r) => r.read(&mut side_block, max)?,
            None => 0,
        };
        // Stereo: a mono backing on both sides.
        for (i, c) in buf.iter_mut().enumerate() {
            c.clear();
            c.extend_from_slice(&side_block[i.min(side_block.len() - 1)][..n]);
        }
        Ok(n)
    };
    let frames = run(
        &mut chain,
        channels,
        block,
        total,
        &mut |buf, max| Ok(reader.read(buf, max)?),
        has_side.then_some(&mut read_side as &mut ReadBlock<'_>),
        &mut |planes| Ok(writer.write(planes)?),
        &mut progress,
    )?;
    let report = report(&mut chain, frames, rate, started)?;
    writer.finish()?;
    Ok(report)
}

/// [`render_file`] for audio in memory: `input` (planar) through `source` offline in `mode`,
/// latency-compensated. `progress` is called with the fraction done.
pub fn render(
    source: &ModelSource,
    track: Option<&crate::licence::gate::LoadedTrack>,
    settings: RenderSettings,
    input: &[Vec<f32>],
    sample_rate: u32,
    mut progress: impl FnMut(f64),
) -> Result<(Vec<Vec<f32>>, RenderReport), RenderError> {
    let RenderSettings { mode, block, voice } = settings;
    let package = source
        .package_with(track, crate::licence::enforce::Setting::Studio)
        .map_err(|e| RenderError::Model(e.to_string()))?;
    check_licence(&package, track, input, sample_rate)?;
    let channels = input.len();
    let mut chain = render_chain(source, package, track, mode, sample_rate, channels, block)?;
    chain.voice.store(&voice);
    let frames = input.first().map_or(0, Vec::len);
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(frames); channels];
    let mut at = 0;
    let started = Instant::now();
    let done = run(
        &mut chain,
        channels,
        block,
        Some(frames as u64),
        &mut |buf, max| {
            let n = max.min(frames - at);
            for (b, c) in buf.iter_mut().zip(input) {
                b.clear();
                b.extend_from_slice(&c[at..at + n]);
            }
            at += n;
            Ok(n)
        },
        None,
        &mut |planes| {
            for (o, p) in out.iter_mut().zip(planes) {
                o.extend_from_slice(p);
            }
            Ok(())
        },
        &mut progress,
    )?;
    let report = report(&mut chain, done, sample_rate, started)?;
    Ok((out, report))
}
