//! RVC v1/v2 voices on the worker, streamed (shared/MODELS.md §2): AI covers.
//!
//! Per hop, on the newest window of 16 kHz mono audio (context + hop + crossfade + search):
//! the user's content encoder (HuBERT / ContentVec) gives 50 features a second, the last
//! repeated once and every one twice (100 a second); the pitch model gives f0 on the same
//! 10 ms grid, shifted by the performer's semitones and quantised to RVC's coarse pitch; the
//! generator sings the window at its own rate (32, 40 or 48 kHz); the newest block is joined
//! to the previous one by SOLA ([`super::sola`]). The engine resamples that rate to the
//! host's.
//!
//! Timing is exact: the 16 kHz window always ends a fixed `lag` before the newest input
//! sample (the 16 kHz resampler's reach, rounded to its rate ratio), so the reported latency
//! is `lag + lookahead + crossfade + search / 2` model samples, give or take SOLA's offset
//! (within half the search range, 5 ms).

use super::controls::VoiceControls;
use super::gate::VoiceGate;
use super::highpass::HighPass;
use super::index::FeatureIndex;
use super::pitch::{PitchModel, FRAME as FRAME_16K, RATE as RATE_16K};
use super::sola::Sola;
use crate::engine::latency::Mode;
use crate::engine::resample::{Geometry, Resampler};
use crate::models::manifest::{Manifest, VoiceInfo, KIND_RVC};
use crate::models::package::ModelPackage;
use crate::models::processor::{HopProcessor, ProcessError, StreamSpec};
use crate::models::{runtime, watchdog};
use ort::session::Session;
use ort::value::Tensor;
use std::sync::Arc;
use std::time::Duration;

/// Noise channels of the generator's `rnd` input.
const NOISE_CHANNELS: usize = 192;
/// The scale of `rnd`: what RVC's PyTorch inference uses.
const NOISE_SCALE: f32 = 0.66666;
/// RVC's protect: unvoiced frames keep this much of the retrieved features (consonants and
/// breaths stay the singer's).
const PROTECT: f32 = 0.33;
/// The generator inputs, in order.
pub const GENERATOR_INPUTS: [&str; 6] = ["phone", "phone_lengths", "pitch", "pitchf", "ds", "rnd"];

/// How a mode streams a voice, in 10 ms frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Frames emitted per run.
    pub hop: usize,
    /// Frames of look-behind the models see again each run (the main cost: an ONNX export
    /// decodes the whole window).
    pub context: usize,
    /// Frames cross-faded between runs.
    pub crossfade: usize,
    /// Frames of SOLA offset searched.
    pub search: usize,
    /// Frames after the join region that only the pitch model and the encoder hear: SwiftF0
    /// is sure of a frame once it has heard 160 ms after it (Studio waits for that; Live
    /// takes 20 ms and lives with the rest, per DECISIONS 4).
    pub lookahead: usize,
}

impl Schedule {
    /// The schedule of `mode`.
    pub fn of(mode: Mode) -> Schedule {
        match mode {
            // 60 ms blocks over 300 ms of context; 10 ms crossfade and search.
            Mode::Live => Schedule {
                hop: 6,
                context: 30,
                crossfade: 1,
                search: 1,
                lookahead: 2,
            },
            // 200 ms blocks over 1.5 s of context (RVC's realtime default is 2.5 s); a 40 ms
            // crossfade, RVC's longest.
            Mode::Studio => Schedule {
                hop: 20,
                context: 150,
                crossfade: 4,
                search: 2,
                lookahead: 16,
            },
        }
    }

    /// Frames in one run's window (even: the encoder's frames are two of ours).
    pub fn window(&self) -> usize {
        self.context + self.hop + self.crossfade + self.search + self.lookahead
    }

    /// The Live schedule with the lowest latency a voice that costs `ms_per_frame` per 10 ms
    /// frame of window can keep up with: the shortest hop (40 ms up) whose run takes at most
    /// [`LIVE_LOAD`] of the hop, with as much context as that allows (300, 200, then 100 ms).
    /// `None` when even a 500 ms hop over 100 ms of context is too slow.
    pub fn live_for(ms_per_frame: f64) -> Option<Schedule> {
        let base = Schedule::of(Mode::Live);
        (4..=50).step_by(2).find_map(|hop| {
            [30, 20, 10].into_iter().find_map(|context| {
                let s = Schedule {
                    hop,
                    context,
                    ..base
                };
                (ms_per_frame * s.window() as f64 <= LIVE_LOAD * hop as f64 * 10.0).then_some(s)
            })
        })
    }
}

/// The share of a hop a Live voice's run may take: the rest is for the host, the DAW's own
/// plugins and the spread of run times. At 0.6 a real-size RVC v2 soaked 10 minutes here with
/// one underrun; the bar on stage is none.
pub const LIVE_LOAD: f64 = 0.5;

/// Live schedules chosen for voices in this process, by the voice's files and the runtime's
/// settings: every later chain with the same voice reports the same latency.
static LIVE_SCHEDULES: parking_lot::Mutex<Option<std::collections::HashMap<String, Schedule>>> =
    parking_lot::Mutex::new(None);

/// What a Live schedule is cached under: the generator's and the encoder's hashes and the
/// runtime's threads and device.
fn schedule_key(manifest: &Manifest) -> String {
    let encoder = manifest
        .voice
        .as_ref()
        .and_then(|v| manifest.files.iter().find(|f| f.path == v.encoder))
        .map_or("", |f| f.sha256.as_str());
    format!(
        "{}:{encoder}#{}",
        manifest.model.sha256,
        runtime::settings_identity()
    )
}

/// The schedule a voice streams with in `mode`: Studio's, or the Live one measured for this
/// voice on this machine ([`calibrate_live`]), else the default Live one.
pub fn schedule_for(manifest: &Manifest, mode: Mode) -> Schedule {
    if mode == Mode::Studio {
        return Schedule::of(mode);
    }
    LIVE_SCHEDULES
        .lock()
        .as_ref()
        .and_then(|m| m.get(&schedule_key(manifest)).copied())
        .unwrap_or(Schedule::of(mode))
}

/// Whether the voice in `package` has its Live schedule for this process (measured, or fixed by
/// `REFRAIN_INFERENCE_MS`): [`calibrate_live`] has nothing left to do.
pub fn is_calibrated(package: &ModelPackage) -> bool {
    std::env::var_os(crate::chain::ENV_INFERENCE_MS).is_some()
        || LIVE_SCHEDULES
            .lock()
            .as_ref()
            .is_some_and(|c| c.contains_key(&schedule_key(&package.manifest)))
}

/// Measures the voice in `package` on this machine (once per process and voice) and picks the
/// Live schedule with the lowest latency it keeps up with ([`Schedule::live_for`]); a voice
/// too slow for any keeps the default one, and the engine then says it is not real time here.
/// Returns a sentence for the log when it measured. With `REFRAIN_INFERENCE_MS` set (a fixed
/// latency for tests and performers), nothing is measured: the default schedule stays.
pub fn calibrate_live(package: &ModelPackage) -> Result<Option<String>, RvcError> {
    let m = &package.manifest;
    let key = schedule_key(m);
    if is_calibrated(package) {
        return Ok(None);
    }
    let default = Schedule::of(Mode::Live);
    let pitch = super::pitch::for_voice(package)?;
    let controls = Arc::new(VoiceControls::default());
    let mut voice = RvcVoice::load(package, Mode::Live, controls, pitch, VoiceGate::new(None))?;
    let hop = voice.spec.hop;
    let mut window = vec![0.0f32; 2 * hop];
    let mut out = vec![0.0f32; 2 * hop];
    let mut times = Vec::new();
    // The first runs pay for allocation and cold caches: four untimed, seven timed.
    for run in 0..11 {
        for (i, w) in window.iter_mut().enumerate() {
            *w = 0.1 * ((i as f32 * 0.0628 * (1.0 + run as f32 * 0.01)).sin());
        }
        let t = std::time::Instant::now();
        voice
            .process(&window, &mut out)
            .map_err(|e| RvcError::Session {
                file: m.model.file.clone(),
                reason: e.to_string(),
            })?;
        if run >= 4 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let per_frame = times[times.len() / 2] / default.window() as f64;
    let (schedule, note) = match Schedule::live_for(per_frame) {
        Some(s) => (
            s,
            format!(
                "Live voice on this machine: {} ms blocks over {} ms of context ({per_frame:.2} ms of inference per 10 ms of window)",
                s.hop * 10,
                s.context * 10
            ),
        ),
        None => (
            default,
            format!(
                "this voice is not real time on this machine in Live ({per_frame:.2} ms of inference per 10 ms of window): use Studio, a bounce or a faster device"
            ),
        ),
    };
    LIVE_SCHEDULES
        .lock()
        .get_or_insert_with(Default::default)
        .insert(key, schedule);
    Ok(Some(note))
}

/// The streaming resampler to 16 kHz for a voice at `rate`, and the fixed lag (model samples)
/// the 16 kHz window keeps behind the newest input: the filter's reach, rounded up to whole
/// rate-ratio periods so the window's end is always an exact 16 kHz sample.
fn to_16k(rate: u32, mode: Mode, hop: usize) -> Result<(Resampler, Geometry, usize), String> {
    let filter = mode.filter();
    let r = Resampler::new(rate, RATE_16K, filter, 0, 1, hop).map_err(|e| e.to_string())?;
    let g = r.geometry();
    let reach = g.half as usize + 2;
    let down = g.down as usize;
    Ok((r, g, reach.div_ceil(down) * down))
}

/// How the engine streams the voice in `manifest` in `mode`; `None` for other models.
pub fn stream_spec(manifest: &Manifest, mode: Mode) -> Option<StreamSpec> {
    if manifest.model.kind != KIND_RVC {
        return None;
    }
    let rate = manifest.stream.sample_rate;
    let upp = (rate / 100) as usize;
    let s = schedule_for(manifest, mode);
    let hop = s.hop * upp;
    let lag = to_16k(rate, mode, hop).map_or(0, |(_, _, lag)| lag);
    Some(StreamSpec {
        sample_rate: rate,
        channels: 2,
        hop,
        context: 0,
        latency: lag + (s.lookahead + s.crossfade) * upp + s.search * upp / 2,
        tail: (s.crossfade + s.search) * upp,
        stems: 1,
        // What the pitch model and the encoder hear past the block (DECISIONS §4: a named term).
        lookahead: s.lookahead * upp,
    })
}

/// Why a voice could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RvcError {
    #[error("the model is not an RVC voice (no [voice] table)")]
    NotAVoice,
    #[error("{file} is not in the model's folder")]
    MissingFile { file: String },
    #[error("{file}: {reason}")]
    Session { file: String, reason: String },
    #[error("{file}: the generator's inputs are {got}; an RVC generator takes `phone`, `phone_lengths`, `pitch`, `pitchf`, `ds` and `rnd`")]
    GeneratorInputs { file: String, got: String },
    #[error("{file}: `{tensor}` {reason}")]
    Tensor {
        file: String,
        tensor: String,
        reason: String,
    },
    #[error("{encoder} gives {got}-channel features (`{tensor}`), but the {version} generator {generator} takes `phone` with {want} channels: use the content encoder the voice was trained with (v1: 256, v2: 768)")]
    EncoderChannels {
        encoder: String,
        tensor: String,
        got: usize,
        generator: String,
        version: String,
        want: usize,
    },
    #[error(transparent)]
    Index(#[from] super::index::IndexError),
    #[error(transparent)]
    Pitch(#[from] super::pitch::PitchError),
}

/// The longest one run of the encoder or the generator may take before the watchdog stops it.
const MAX_RUN: Duration = Duration::from_secs(30);

/// One ONNX session with the watchdog that stops a run gone wrong.
struct Net {
    session: Session,
    watched: Arc<watchdog::Watched>,
    device: String,
}

impl Net {
    /// A session from `made` (the runtime's answer for `file`).
    fn new(
        made: impl FnOnce() -> Result<runtime::DeviceSession, String>,
        file: &str,
    ) -> Result<Net, RvcError> {
        let err = |reason: String| RvcError::Session {
            file: file.to_owned(),
            reason,
        };
        runtime::environment().map_err(|e| err(e.to_string()))?;
        let ds = made().map_err(err)?;
        Ok(Net {
            session: ds.session,
            watched: watchdog::watch(MAX_RUN).map_err(err)?,
            device: ds.device,
        })
    }
}

/// A loaded voice, streaming.
pub struct RvcVoice {
    encoder: Net,
    encoder_io: (String, String),
    generator: Net,
    pitch: Box<dyn PitchModel>,
    index: Option<FeatureIndex>,
    info: VoiceInfo,
    controls: Arc<VoiceControls>,
    gate: VoiceGate,
    spec: StreamSpec,
    schedule: Schedule,
    /// Generator samples per 10 ms frame.
    upp: usize,
    /// Feature channels (256 or 768).
    channels: usize,
    resampler: Resampler,
    /// RVC's 48 Hz high-pass on the 16 kHz audio ([`super::highpass`]).
    highpass: HighPass,
    geometry: Geometry,
    lag: usize,
    /// Model-rate input samples received.
    received: u64,
    /// 16 kHz samples produced, and the newest of them (`history[i]` is sample
    /// `produced - history.len() + i`).
    produced: u64,
    history: Vec<f32>,
    // Scratch, sized once.
    mono: Vec<f32>,
    fresh: Vec<f32>,
    window: Vec<f32>,
    f0: Vec<f32>,
    features: Vec<f32>,
    neighbours: Vec<(f32, usize)>,
    voice: Vec<f32>,
    /// The newest block, crossfade and search region of the last generator run.
    voice_run: Vec<f32>,
    sola: Sola,
    /// The pitch ratio and the output gain (the gate's, times the control's) in use.
    ratio: f32,
    gain: f32,
    seed: u64,
    identity: String,
    /// The last run's time in each stage, ns: content encoder, pitch, generator (the voice
    /// benchmark reads them).
    pub stage_ns: [u64; 3],
}

/// The noise seed every voice starts from: the same input gives the same bounce.
const SEED: u64 = 0x005E_ED0F_C0DE;

impl RvcVoice {
    /// Loads the voice in `package` for `mode`, with `pitch` as its f0 model: sessions for the
    /// encoder and the generator (from the bytes the package read, checked against the
    /// manifest's hashes), their tensors checked by a probe run, the training features parsed.
    pub fn load(
        package: &ModelPackage,
        mode: Mode,
        controls: Arc<VoiceControls>,
        pitch: Box<dyn PitchModel>,
        gate: VoiceGate,
    ) -> Result<RvcVoice, RvcError> {
        let m = &package.manifest;
        let info = m.voice.clone().ok_or(RvcError::NotAVoice)?;
        let file_bytes = |path: &str| {
            package
                .others
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, b)| b.clone())
                .ok_or_else(|| RvcError::MissingFile {
                    file: path.to_owned(),
                })
        };
        let encoder_bytes = file_bytes(&info.encoder)?;
        let encoder = Net::new(
            || runtime::session_from_memory(&encoder_bytes),
            &info.encoder,
        )?;
        let generator = Net::new(|| runtime::session_for(package), &m.model.file)?;
        let got: Vec<&str> = generator
            .session
            .inputs()
            .iter()
            .map(|o| o.name())
            .collect();
        if got.len() != GENERATOR_INPUTS.len() || GENERATOR_INPUTS.iter().any(|n| !got.contains(n))
        {
            return Err(RvcError::GeneratorInputs {
                file: m.model.file.clone(),
                got: format!("{got:?}"),
            });
        }
        if generator.session.outputs().is_empty() {
            return Err(RvcError::Tensor {
                file: m.model.file.clone(),
                tensor: "audio".into(),
                reason: "is missing: the generator has no output".into(),
            });
        }
        let enc_in = encoder
            .session
            .inputs()
            .first()
            .map(|o| o.name().to_owned());
        let enc_out = encoder
            .session
            .outputs()
            .first()
            .map(|o| o.name().to_owned());
        let (Some(enc_in), Some(enc_out)) = (enc_in, enc_out) else {
            return Err(RvcError::Tensor {
                file: info.encoder.clone(),
                tensor: "source".into(),
                reason: "is missing: a content encoder takes audio and gives features".into(),
            });
        };
        let index = match &info.index {
            Some(path) => Some(FeatureIndex::parse(
                &file_bytes(path)?,
                info.channels(),
                path,
                &info.version,
            )?),
            None => None,
        };
        let rate = m.stream.sample_rate;
        let upp = (rate / 100) as usize;
        let schedule = schedule_for(m, mode);
        let spec = stream_spec(m, mode).ok_or(RvcError::NotAVoice)?;
        let (resampler, geometry, lag) =
            to_16k(rate, mode, spec.hop).map_err(|e| RvcError::Session {
                file: m.model.file.clone(),
                reason: e,
            })?;
        let frames = schedule.window();
        let settings = controls.load();
        let mut voice = RvcVoice {
            encoder,
            encoder_io: (enc_in, enc_out),
            generator,
            pitch,
            index,
            channels: info.channels(),
            info,
            gate,
            spec,
            schedule,
            upp,
            resampler,
            highpass: HighPass::rvc(RATE_16K),
            geometry,
            lag,
            received: 0,
            produced: 0,
            history: Vec::with_capacity(frames * FRAME_16K * 2 + 4096),
            mono: vec![0.0; spec.hop],
            fresh: vec![0.0; spec.hop],
            window: vec![0.0; frames * FRAME_16K],
            f0: Vec::with_capacity(frames),
            features: Vec::new(),
            neighbours: Vec::with_capacity(super::index::K + 1),
            voice: vec![0.0; spec.hop],
            voice_run: vec![0.0; spec.hop + (schedule.crossfade + schedule.search) * upp],
            sola: Sola::new(spec.hop, schedule.crossfade * upp, schedule.search * upp),
            ratio: settings.pitch_ratio(),
            // The gate starts closed: nothing sounds until someone sings.
            gain: 0.0,
            seed: SEED,
            identity: package.identity.clone(),
            stage_ns: [0; 3],
            controls,
        };
        voice.probe(&m.model.file)?;
        Ok(voice)
    }

    /// One run on silence: the encoder's feature width and the generator's output length are
    /// what the voice's version and rate say, or the load fails naming the file and tensor.
    fn probe(&mut self, generator_file: &str) -> Result<(), RvcError> {
        let frames = self.schedule.window();
        self.window.fill(0.0);
        let (feat_frames, width) = self.encode().map_err(|e| RvcError::Tensor {
            file: self.info.encoder.clone(),
            tensor: self.encoder_io.0.clone(),
            reason: e,
        })?;
        if width != self.channels {
            return Err(RvcError::EncoderChannels {
                encoder: self.info.encoder.clone(),
                tensor: self.encoder_io.1.clone(),
                got: width,
                generator: generator_file.to_owned(),
                version: self.info.version.clone(),
                want: self.channels,
            });
        }
        if feat_frames + 1 < frames / 2 {
            return Err(RvcError::Tensor {
                file: self.info.encoder.clone(),
                tensor: self.encoder_io.1.clone(),
                reason: format!(
                    "has {feat_frames} frames for {} samples; a content encoder gives one per 320 (50 a second)",
                    self.window.len()
                ),
            });
        }
        self.f0.clear();
        self.f0.resize(frames, 0.0);
        let n = self.generate().map_err(|e| RvcError::Tensor {
            file: generator_file.to_owned(),
            tensor: "audio".into(),
            reason: e,
        })?;
        if n != frames * self.upp {
            return Err(RvcError::Tensor {
                file: generator_file.to_owned(),
                tensor: "audio".into(),
                reason: format!(
                    "has {n} samples for {frames} frames; at {} Hz it must have {} ({} per frame)",
                    self.spec.sample_rate,
                    frames * self.upp,
                    self.upp
                ),
            });
        }
        self.reset_stream();
        Ok(())
    }

    /// Runs the content encoder on `self.window` into `self.features` (`[frames][channels]` at
    /// 50 a second, the last repeated once); returns the encoder's frames and width.
    fn encode(&mut self) -> Result<(usize, usize), String> {
        let n = self.window.len();
        let input =
            Tensor::from_array(([1usize, 1, n], self.window.clone())).map_err(|e| e.to_string())?;
        let net = &mut self.encoder;
        net.watched.begin();
        let result = net.session.run_with_options(
            ort::inputs![self.encoder_io.0.as_str() => input],
            net.watched.run_options(),
        );
        if net.watched.end() {
            return Err(format!(
                "the content encoder ran over {} s and was stopped",
                MAX_RUN.as_secs()
            ));
        }
        let outputs = result.map_err(|e| e.to_string())?;
        let (shape, data) = outputs[self.encoder_io.1.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("is not float32 features: {e}"))?;
        if shape.len() != 3 || shape[0] != 1 {
            return Err(format!(
                "has shape {:?}, expected [1, frames, channels]",
                &shape[..]
            ));
        }
        let (frames, width) = (shape[1] as usize, shape[2] as usize);
        self.features.clear();
        self.features.extend_from_slice(data);
        // The realtime client appends a copy of the last frame (F = N / 320 - 1 -> N / 320).
        if frames > 0 {
            let last = data[(frames - 1) * width..].to_vec();
            self.features.extend_from_slice(&last);
        }
        Ok((frames, width))
    }

    /// Runs the generator on `self.features` (repeated to 100 frames a second) and
    /// `self.f0` (Hz, already shifted); keeps the heard part in `self.voice_run` and returns
    /// the samples the generator gave.
    fn generate(&mut self) -> Result<usize, String> {
        let frames = self.schedule.window();
        let c = self.channels;
        let have = self.features.len() / c.max(1);
        let mut phone = vec![0.0f32; frames * c];
        for j in 0..frames {
            let src = (j / 2).min(have.saturating_sub(1));
            if have > 0 {
                phone[j * c..(j + 1) * c].copy_from_slice(&self.features[src * c..(src + 1) * c]);
            }
        }
        let coarse: Vec<i64> = self.f0.iter().map(|&f| coarse_pitch(f)).collect();
        let noise = self.noise(frames);
        let speaker = self.controls.load().speaker.min(self.info.speakers - 1) as i64;
        let e = |e: ort::Error| e.to_string();
        let inputs = ort::inputs![
            "phone" => Tensor::from_array(([1usize, frames, c], phone)).map_err(e)?,
            "phone_lengths" => Tensor::from_array(([1usize], vec![frames as i64])).map_err(e)?,
            "pitch" => Tensor::from_array(([1usize, frames], coarse)).map_err(e)?,
            "pitchf" => Tensor::from_array(([1usize, frames], self.f0.clone())).map_err(e)?,
            "ds" => Tensor::from_array(([1usize], vec![speaker])).map_err(e)?,
            "rnd" => Tensor::from_array(([1usize, NOISE_CHANNELS, frames], noise)).map_err(e)?,
        ];
        let net = &mut self.generator;
        net.watched.begin();
        let result = net
            .session
            .run_with_options(inputs, net.watched.run_options());
        if net.watched.end() {
            return Err(format!(
                "the generator ran over {} s and was stopped",
                MAX_RUN.as_secs()
            ));
        }
        let outputs = result.map_err(|e| e.to_string())?;
        let (_, audio) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("is not float32 audio: {e}"))?;
        let need = self.sola.needed();
        let ahead = self.schedule.lookahead * self.upp;
        if audio.len() >= need + ahead {
            // Only the block, crossfade and search region before the look-ahead are heard.
            let end = audio.len() - ahead;
            self.voice_run.clear();
            self.voice_run.extend_from_slice(&audio[end - need..end]);
            let keep = self.controls.load().envelope.clamp(0.0, 1.0);
            if keep < 1.0 {
                mix_envelope(
                    &self.window,
                    audio,
                    self.upp,
                    end - need,
                    &mut self.voice_run,
                    keep,
                );
            }
        }
        Ok(audio.len())
    }

    /// `rnd` for one run: standard normal x 0.66666 from the voice's own seeded stream.
    fn noise(&mut self, frames: usize) -> Vec<f32> {
        let n = NOISE_CHANNELS * frames;
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let (a, b) = (next_unit(&mut self.seed), next_unit(&mut self.seed));
            let r = (-2.0 * a.max(1e-12).ln()).sqrt();
            let t = std::f64::consts::TAU * b;
            out.push((r * t.cos()) as f32 * NOISE_SCALE);
            out.push((r * t.sin()) as f32 * NOISE_SCALE);
        }
        out.truncate(n);
        out
    }

    /// Takes in one hop of the model-rate input (planar stereo), summed to mono, through to
    /// the 16 kHz history.
    fn take_input(&mut self, window: &[f32]) {
        let hop = self.spec.hop;
        for (i, m) in self.mono.iter_mut().enumerate() {
            *m = 0.5 * (window[i] + window[hop + i]);
        }
        self.resampler.push(&self.mono);
        let n = self.resampler.produce(&mut self.fresh);
        self.received += hop as u64;
        self.produced += n as u64;
        let keep = self.window.len() + 4096;
        if self.history.len() + n > self.history.capacity() {
            let drop = self.history.len() + n - keep.min(self.history.capacity() - n);
            self.history.drain(..drop.min(self.history.len()));
        }
        self.history.extend_from_slice(&self.fresh[..n]);
        self.gate.push(&self.fresh[..n]);
    }

    /// Fills `self.window` with the 16 kHz audio ending exactly `lag` model samples before
    /// the newest input (zeros before the stream began), high-passed at 48 Hz as RVC does
    /// (zero phase, over the window: [`HighPass::filtfilt`]).
    fn fill_window(&mut self) {
        let g = self.geometry;
        let end_model = self.received as i64 - self.lag as i64;
        // The lag is a whole number of rate-ratio periods, so this is exact.
        let end = (end_model * g.up as i64).div_euclid(g.down as i64);
        let first_held = self.produced as i64 - self.history.len() as i64;
        let n = self.window.len() as i64;
        for (i, w) in self.window.iter_mut().enumerate() {
            let k = end - n + i as i64;
            *w = if k >= first_held && k < self.produced as i64 {
                self.history[(k - first_held) as usize]
            } else {
                0.0
            };
        }
        self.highpass.filtfilt(&mut self.window);
    }

    fn reset_stream(&mut self) {
        self.resampler.reset();
        self.received = 0;
        self.produced = 0;
        self.history.clear();
        self.sola.reset();
        self.gate.reset();
        self.seed = SEED;
        let s = self.controls.load();
        self.ratio = s.pitch_ratio();
        self.gain = 0.0;
    }
}

/// RVC's volume envelope mix (`rms_mix_rate` = `keep`) on `out`, the heard part of a run's
/// `audio` from sample `from` on: each sample scaled by `(input RMS / output RMS)^(1 - keep)`,
/// as RVC's realtime client does it: RMS over 40 ms every 10 ms (librosa's centred frames; the
/// input at 16 kHz, the output at `upp` samples a frame, the output's at least 1e-3), each
/// linearly interpolated to the sample. `input` is the run's 16 kHz window, which `audio`
/// covers frame for frame.
fn mix_envelope(input: &[f32], audio: &[f32], upp: usize, from: usize, out: &mut [f32], keep: f32) {
    // The RMS of the 4-frame span centred on frame boundary `t` of `x` (`hop` samples a frame).
    let rms_at = |x: &[f32], hop: usize, t: usize| -> f32 {
        let (a, z) = (
            (t * hop).saturating_sub(2 * hop),
            (t * hop + 2 * hop).min(x.len()),
        );
        let sum: f32 = x.get(a..z).map_or(0.0, |s| s.iter().map(|v| v * v).sum());
        (sum / (4 * hop) as f32).sqrt()
    };
    let power = 1.0 - keep;
    let (mut cached, mut rms) = (usize::MAX, [(0.0f32, 0.0f32); 2]);
    for (i, o) in out.iter_mut().enumerate() {
        let k = from + i;
        let t = k / upp;
        if t != cached {
            let at = |t: usize| (rms_at(input, FRAME_16K, t), rms_at(audio, upp, t));
            rms = [at(t), at(t + 1)];
            cached = t;
        }
        let f = (k - t * upp) as f32 / upp as f32;
        let lerp = |a: f32, b: f32| a + (b - a) * f;
        let (heard, sung) = (lerp(rms[0].0, rms[1].0), lerp(rms[0].1, rms[1].1).max(1e-3));
        *o *= (heard / sung).powf(power);
    }
}

/// One uniform number in (0, 1] from a SplitMix64 stream.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// RVC's coarse pitch of `f0` Hz: the mel scale from 50 to 1100 Hz on 1..255, rounded;
/// unvoiced (0) is 1.
pub fn coarse_pitch(f0: f32) -> i64 {
    let mel = |f: f32| 1127.0 * (1.0 + f / 700.0).ln();
    let (lo, hi) = (mel(50.0), mel(1100.0));
    let m = mel(f0.max(0.0));
    let v = if m > 0.0 {
        (m - lo) * 254.0 / (hi - lo) + 1.0
    } else {
        m
    };
    v.clamp(1.0, 255.0).round() as i64
}

impl HopProcessor for RvcVoice {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError> {
        let hop = self.spec.hop;
        self.take_input(window);
        self.fill_window();
        let settings = self.controls.load();
        // Pitch and gain glide over about three runs.
        self.ratio += (settings.pitch_ratio() - self.ratio) * 0.5;
        let fail = |e: String| ProcessError::Inference(e);
        let t0 = std::time::Instant::now();
        let (_, width) = self.encode().map_err(fail)?;
        let t1 = std::time::Instant::now();
        if width != self.channels {
            return Err(fail(format!("the content encoder gave {width} channels")));
        }
        self.f0.clear();
        self.pitch
            .track(&self.window, &mut self.f0)
            .map_err(|e| fail(e.to_string()))?;
        self.f0.resize(self.schedule.window(), 0.0);
        super::pitch::clean(&mut self.f0);
        let t2 = std::time::Instant::now();
        self.controls.report_pitch(self.newest_f0());
        if let Some(index) = &self.index {
            blend_features(
                index,
                &mut self.features,
                self.channels,
                &self.f0,
                settings.index_rate,
                self.schedule.context / 2,
                &mut self.neighbours,
            );
        }
        let ratio = self.ratio;
        self.f0.iter_mut().for_each(|f| *f *= ratio);
        let t3 = std::time::Instant::now();
        self.generate().map_err(fail)?;
        self.stage_ns = [
            (t1 - t0).as_nanos() as u64,
            (t2 - t1).as_nanos() as u64,
            t3.elapsed().as_nanos() as u64,
        ];
        self.sola.join(&self.voice_run, &mut self.voice);
        // The gate: the converted voice fades out between phrases (over the block) and comes
        // back at the next (over the crossfade, from the frame before the first voiced one,
        // so the phrase's start is not ramped away). The pitch it goes by includes the
        // crossfade and search frames past the block: a little look-ahead.
        let s = self.schedule;
        let ahead = self.f0[s.context..].iter().any(|f| *f > 0.0);
        let open = self.gate.open(settings.gate_threshold_db, ahead);
        self.controls.report_gate(open);
        let target = if open { settings.output_gain() } else { 0.0 };
        let (start, len) = if target > self.gain {
            let first = (0..s.hop)
                .find(|&k| self.f0[s.context + k] > 0.0)
                .unwrap_or(0);
            (
                first.saturating_sub(1) * self.upp,
                self.sola.crossfade().max(1),
            )
        } else {
            (0, hop)
        };
        super::ramp_and_write(&mut self.voice, &mut self.gain, target, (start, len), out);
        Ok(())
    }

    fn reset(&mut self) {
        self.reset_stream();
    }

    fn skip(&mut self, window: &[f32]) {
        self.take_input(window);
        self.sola.reset();
    }

    fn device(&self) -> Option<String> {
        Some(format!(
            "{} (content encoder {}, pitch {}, {})",
            self.generator.device,
            self.encoder.device,
            self.pitch.name(),
            self.gate.describe()
        ))
    }

    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }
}

impl RvcVoice {
    /// The pitch the singer is singing now: the last voiced f0 from the emitted block on (the
    /// frames the gate goes by).
    fn newest_f0(&self) -> f32 {
        let s = self.schedule;
        self.f0[s.context..]
            .iter()
            .rev()
            .find(|f| **f > 0.0)
            .copied()
            .unwrap_or(0.0)
    }
}

/// Feature retrieval on the frames past `skip` (the context was blended in earlier runs; RVC
/// skips it too), with RVC's protect on unvoiced frames.
fn blend_features(
    index: &FeatureIndex,
    features: &mut [f32],
    channels: usize,
    f0: &[f32],
    rate: f32,
    skip: usize,
    scratch: &mut Vec<(f32, usize)>,
) {
    if rate <= 0.0 {
        return;
    }
    for (i, frame) in features.chunks_exact_mut(channels).enumerate().skip(skip) {
        let raw: Vec<f32> = frame.to_vec();
        index.blend(frame, rate, scratch);
        // Each feature frame spans two pitch frames; protect where both are unvoiced.
        let voiced =
            f0.get(2 * i).is_some_and(|f| *f > 0.0) || f0.get(2 * i + 1).is_some_and(|f| *f > 0.0);
        if !voiced {
            for (v, r) in frame.iter_mut().zip(&raw) {
                *v = PROTECT * *v + (1.0 - PROTECT) * r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_pitch_is_rvcs() {
        assert_eq!(coarse_pitch(0.0), 1);
        assert_eq!(coarse_pitch(50.0), 1);
        assert_eq!(coarse_pitch(1100.0), 255);
        assert_eq!(coarse_pitch(5000.0), 255);
        // 220 Hz: mel 307.6; (307.6 - 77.8) * 254 / (1064.4 - 77.8) + 1 = 60.2 -> 60.
        assert_eq!(coarse_pitch(220.0), 60);
    }

    #[test]
    fn schedules_fill_whole_encoder_frames() {
        for mode in [Mode::Live, Mode::Studio] {
            assert_eq!(Schedule::of(mode).window() % 2, 0, "{mode:?}");
        }
        for cost in [0.01, 0.5, 1.0, 2.0, 3.4, 3.9] {
            let s = Schedule::live_for(cost).unwrap();
            assert_eq!(s.window() % 2, 0, "{cost}: {s:?}");
        }
    }

    #[test]
    fn the_live_schedule_is_the_shortest_block_the_voice_keeps_up_with() {
        // A small voice: the shortest block, the most context.
        let s = Schedule::live_for(0.05).unwrap();
        assert_eq!((s.hop, s.context), (4, 30));
        // RVC v2 at its real sizes on two threads here (3.4 ms per 10 ms of window): a
        // 300 ms block over 100 ms of context (149.6 ms of 150 allowed).
        let s = Schedule::live_for(3.4).unwrap();
        assert_eq!((s.hop, s.context), (30, 10));
        assert!(3.4 * s.window() as f64 <= LIVE_LOAD * s.hop as f64 * 10.0);
        // One thread (6.2 ms): nothing keeps up.
        assert_eq!(Schedule::live_for(6.2), None);
    }
}
