//! What one plugin instance runs: the engine for the chosen model, track and mode, with the
//! licence enforcement around it.
//!
//! A [`Chain`] is built off the audio thread: at activation, by the loader when the user picks
//! another model, track or mode ([`crate::loader`]), and by `refrain render`. The audio thread
//! plays it through a [`ChainSlot`], which takes a new chain over from the old one without a
//! click (the old one fades out, the new one fades in from silence) and sends the old one back
//! to be dropped elsewhere.

use crate::engine::latency::{InferenceTiming, Mode};
use crate::engine::worker::{ModelLoader, WorkerOptions};
use crate::engine::{Controls, Engine, EngineConfig, EngineError, MAX_STEMS};
use crate::licence::enforce::{Licensing, Playhead, Setting};
use crate::licence::gate::LoadedTrack;
use crate::licence::policy::Verdict;
use crate::models::manifest::Manifest;
use crate::models::package::ModelPackage;
use crate::models::ModelSource;
use crate::notes::tracker::{NoteSource, NoteTracker};
use crate::voice::controls::VoiceControls;
use parking_lot::Mutex;
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Fault injection for tests and soak runs: milliseconds the worker sleeps per hop.
pub const ENV_WORKER_DELAY_MS: &str = "REFRAIN_FAULT_WORKER_DELAY_MS";
/// Fault injection for tests: milliseconds the model takes to load.
pub const ENV_LOAD_DELAY_MS: &str = "REFRAIN_FAULT_LOAD_DELAY_MS";
/// A fixed inference time per hop, in milliseconds, instead of the measured one: for a
/// performer who wants the same latency every night, and for tests that compare two builds.
pub const ENV_INFERENCE_MS: &str = "REFRAIN_INFERENCE_MS";

/// The inference time `REFRAIN_INFERENCE_MS` fixes, if it is set to a number.
fn fixed_timing() -> Option<InferenceTiming> {
    let ms: f64 = std::env::var(ENV_INFERENCE_MS).ok()?.trim().parse().ok()?;
    let ns = (ms.clamp(0.0, 1_000.0) * 1e6) as u64;
    Some(InferenceTiming {
        passes: 0,
        max_ns: ns,
        median_ns: ns,
        mean_ns: ns,
    })
}

/// How long building a chain waits for the model's inference time to be measured, so the
/// reported latency is final at once. A model slower to load than this starts with a
/// provisional budget and retimes once (a short fade) when the measurement arrives.
pub const MEASUREMENT_WAIT: Duration = Duration::from_millis(1500);

/// What a chain was built for. Two chains with equal keys sound the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainKey {
    /// The model, as persisted (`builtin:tone-shaper` or a manifest path).
    pub model: String,
    /// The loaded track, as persisted.
    pub track: String,
    pub mode: Mode,
    pub config: EngineConfig,
    pub setting: Setting,
    /// Notes out, and where they come from.
    pub notes: Option<NoteSource>,
    /// How notes out are found: onset and frame thresholds, minimum length.
    pub note_settings: crate::notes::decode::Settings,
}

/// An engine with its licence enforcement.
pub struct Chain {
    pub key: ChainKey,
    pub engine: Engine,
    pub licensing: Option<Licensing>,
    /// The model's name for people, or why its manifest is unreadable.
    pub model_name: String,
    /// The licence verdict at build time, when the model needs a licence.
    pub verdict: Option<Verdict>,
    /// Whether a separator's stems may leave on their own outputs: always for a public
    /// separator, with `stem-export` in the licence for a protected one.
    pub stems_may_leave: bool,
    /// The model is a separator: its stems go to the stem outputs, whatever the mix.
    separates: bool,
    /// The note tracker's thread, when notes are out (after the engine: the engine's worker
    /// feeds it and goes first).
    pub notes: Option<NoteTracker>,
    /// Where a voice model on the worker reads the performer's settings each hop.
    pub voice: Arc<VoiceControls>,
    /// `Some` when the model is a voice: `true` for the built-in transform, `false` for a
    /// voice model.
    pub voice_kind: Option<bool>,
    /// A Live voice planned on the default schedule because it was not yet measured on this
    /// machine ([`Chain::build_deferring`]): the loader builds it again once measured.
    pub provisional_schedule: bool,
}

/// When a Live voice's schedule is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Calibration {
    /// Before the chain is planned (the loader's thread, renders, tests).
    Now,
    /// Later, by the loader: the chain is provisional meanwhile.
    Defer,
}

/// Where notes out find Basic Pitch: `basic-pitch/nmp.onnx` in the models folder or in a folder
/// of `REFRAIN_MODEL_PATH` (set-up fetches it into `models/real/basic-pitch/`).
pub fn find_basic_pitch() -> Option<std::path::PathBuf> {
    crate::models::library::find_file("basic-pitch/nmp.onnx")
}

/// Loads Basic Pitch and starts the note tracker for notes from `source` (a stem needs a model
/// with `stems`).
fn start_notes(
    source: NoteSource,
    stems: usize,
    sample_rate: f32,
    settings: crate::notes::decode::Settings,
) -> Result<
    (
        NoteTracker,
        crate::notes::tracker::TrackerFeed,
        crate::notes::tracker::NoteEvents,
    ),
    String,
> {
    if let NoteSource::Stem(s) = source {
        if s >= stems {
            return Err("notes from a stem need a separator as the model".into());
        }
    }
    let path = find_basic_pitch().ok_or_else(|| {
        "Basic Pitch is not in the models folder (basic-pitch/nmp.onnx; `cargo xtask fetch-models` fetches it into models/real, which REFRAIN_MODEL_PATH can name)".to_string()
    })?;
    let model = crate::notes::basic_pitch::BasicPitch::load(&path).map_err(|e| e.to_string())?;
    settings.check().map_err(|e| e.to_string())?;
    NoteTracker::start(model, settings, sample_rate.round() as u32)
        .map_err(|e| format!("the note tracker did not start: {e}"))
}

/// Inference timings measured in this process, by model identity: a reactivation reports the
/// same latency as the activation before it (bit-identical bounces need that).
static TIMINGS: Mutex<Option<HashMap<String, InferenceTiming>>> = Mutex::new(None);

fn cached_timing(identity: &str) -> Option<InferenceTiming> {
    TIMINGS
        .lock()
        .as_ref()
        .and_then(|m| m.get(identity).copied())
}

fn cache_timing(identity: &str, timing: InferenceTiming) {
    TIMINGS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(identity.to_owned(), timing);
}

/// The identity a timing is cached under: the model (its identity hash) and the threads it
/// runs with.
fn timing_identity(package: &ModelPackage) -> String {
    format!(
        "{}#{}",
        package.identity,
        crate::models::runtime::settings_identity()
    )
}

/// Milliseconds from a fault-injection variable (0 when unset).
fn fault_ms(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Chain {
    /// Builds the chain for `key`: reads the model's folder (checked and hashed, once),
    /// checks the licence against the model's identity (a refused model is planned but never
    /// loaded), starts the engine and waits (bounded) for the inference time to be measured.
    /// `log` receives licence messages in words. Not for the audio thread.
    pub fn build(key: ChainKey, log: fn(&str)) -> Result<Chain, EngineError> {
        Chain::build_opts(key, log, Calibration::Now)
    }

    /// [`Self::build`] for the host's thread (an activation): a Live voice not yet measured on
    /// this machine is planned on the default Live schedule and marked
    /// [`Chain::provisional_schedule`], for the loader to measure it on its own thread and build
    /// it again (the measurement of a real-size voice takes seconds, which a host's activation
    /// must not wait for).
    pub fn build_deferring(key: ChainKey, log: fn(&str)) -> Result<Chain, EngineError> {
        Chain::build_opts(key, log, Calibration::Defer)
    }

    fn build_opts(
        key: ChainKey,
        log: fn(&str),
        calibration: Calibration,
    ) -> Result<Chain, EngineError> {
        let source = ModelSource::parse(&key.model);
        // A protected model opens only under the loaded track's licence.
        let track = LoadedTrack::parse(&key.track);
        let package = source
            .package_with(track.as_ref(), key.setting)
            .map_err(|e| (source.to_state(), e.to_string()));
        Chain::with_package_opts(key, package, log, calibration)
    }

    /// [`Self::build`] with the model's folder already read (or why it could not be: the
    /// model's name as persisted and the reason).
    pub fn with_package(
        key: ChainKey,
        package: Result<Arc<ModelPackage>, (String, String)>,
        log: fn(&str),
    ) -> Result<Chain, EngineError> {
        Chain::with_package_opts(key, package, log, Calibration::Now)
    }

    fn with_package_opts(
        key: ChainKey,
        package: Result<Arc<ModelPackage>, (String, String)>,
        log: fn(&str),
        calibration: Calibration,
    ) -> Result<Chain, EngineError> {
        let mut provisional_schedule = false;
        let voice = Arc::new(VoiceControls::default());
        let mut options = WorkerOptions {
            extra_delay_per_hop: Duration::from_millis(fault_ms(ENV_WORKER_DELAY_MS)),
            log: Some(log),
            ..WorkerOptions::default()
        };
        let (manifest, model_name, verdict, licensing, loader): (
            Manifest,
            String,
            Option<Verdict>,
            Option<Licensing>,
            ModelLoader,
        ) = match package {
            Ok(package) => {
                let track = LoadedTrack::parse(&key.track);
                let rate = key.config.sample_rate.round() as u32;
                let started = Licensing::start(
                    &package,
                    track,
                    key.setting,
                    rate,
                    key.config.max_block,
                    log,
                );
                let (licensing, verdict) = match started {
                    Some((l, v)) => (Some(l), Some(v)),
                    None => (None, None),
                };
                match &verdict {
                    Some(v) if v.state.allows() => log(&format!("Refrain licence: {}", v.reason)),
                    Some(v) => log(&format!(
                        "Refrain licence: the AI path is off, dry audio passes: {}",
                        v.reason
                    )),
                    None => {}
                }
                let refused = verdict
                    .as_ref()
                    .filter(|v| !v.state.allows())
                    .map(|v| format!("not loaded: {}", v.reason));
                let manifest = package.manifest.clone();
                let loader: ModelLoader = match refused {
                    // Not even loaded, until the licence allows it.
                    Some(reason) => Box::new(move || Err(reason)),
                    None => {
                        // A voice in Live is measured first (once per process): its block and
                        // context are the shortest this machine keeps up with, so the latency
                        // planned below is that one.
                        if key.mode == Mode::Live
                            && package.manifest.model.kind == crate::models::manifest::KIND_RVC
                        {
                            match calibration {
                                Calibration::Now => {
                                    match crate::voice::rvc::calibrate_live(&package) {
                                        Ok(Some(note)) => log(&format!("Refrain voice: {note}")),
                                        Ok(None) => {}
                                        Err(e) => log(&format!("Refrain voice: {e}")),
                                    }
                                }
                                Calibration::Defer => {
                                    provisional_schedule =
                                        !crate::voice::rvc::is_calibrated(&package);
                                }
                            }
                        }
                        let identity = timing_identity(&package);
                        options.timing = fixed_timing().or_else(|| cached_timing(&identity));
                        // A measurement that finishes after the wait below is kept too.
                        options.on_measured = Some(Box::new(move |t| cache_timing(&identity, t)));
                        let delay = fault_ms(ENV_LOAD_DELAY_MS);
                        let mode = key.mode;
                        let voice = voice.clone();
                        // The worker builds the session from the bytes read here; they are
                        // freed once it is built.
                        Box::new(move || {
                            std::thread::sleep(Duration::from_millis(delay));
                            crate::models::load_processor(&package, mode, &voice)
                        })
                    }
                };
                let name = manifest.model.name.clone();
                (manifest, name, verdict, licensing, loader)
            }
            Err((model, reason)) => {
                // Planned like the built-in model, so the host gets a sensible latency.
                let name = format!("{model} (unreadable: {reason})");
                (
                    crate::models::builtin_manifest(),
                    name,
                    None,
                    None,
                    Box::new(move || Err(reason)),
                )
            }
        };
        let spec = crate::models::stream_spec(&manifest, key.mode);
        let voice_kind = crate::voice::stream_spec(&manifest, key.mode)
            .map(|_| manifest.model.kind == crate::voice::KIND_VOICE_TRANSFORM);
        let mut notes = None;
        if let Some(source) = key.notes {
            match start_notes(
                source,
                spec.stems,
                key.config.sample_rate,
                key.note_settings,
            ) {
                Ok((tracker, feed, events)) => {
                    options.notes = Some((feed, source));
                    let delay = (crate::notes::tracker::detection_delay_s()
                        * key.config.sample_rate as f64)
                        .ceil() as usize;
                    options.notes_delay = Some((delay, matches!(source, NoteSource::Stem(_))));
                    notes = Some((tracker, events));
                }
                Err(e) => log(&format!("Refrain: notes are off: {e}")),
            }
        }
        let mut engine = Engine::start(key.config, key.mode, spec, loader, options)?;
        let tracker = notes.map(|(tracker, events)| {
            engine.attach_notes(events, key.note_settings.pitch_bends);
            tracker
        });
        engine.wait_for_measurement(MEASUREMENT_WAIT);
        // The latency reported from here on is the measured one.
        engine.take_latency_changed();
        let stems_may_leave = match &verdict {
            None => true,
            Some(v) => v
                .claims
                .as_ref()
                .is_some_and(|c| c.uses.contains(&crate::licence::claims::Use::StemExport)),
        };
        use crate::models::manifest::{KIND_DEMUCS, KIND_MDX_NET, KIND_STEM_MASKS};
        let separates =
            [KIND_STEM_MASKS, KIND_MDX_NET, KIND_DEMUCS].contains(&manifest.model.kind.as_str());
        Ok(Chain {
            key,
            engine,
            licensing,
            model_name,
            verdict,
            stems_may_leave,
            separates,
            notes: tracker,
            voice,
            voice_kind,
            provisional_schedule,
        })
    }

    /// Whether the licence kept the model from loading when this chain was built (a chain
    /// like this is rebuilt, not kept, once the licence allows the model).
    pub fn model_refused(&self) -> bool {
        self.verdict.as_ref().is_some_and(|v| !v.state.allows())
    }

    /// The engine of a chain running the built-in model (benchmarks, soak runs, tests).
    pub fn built_in(config: EngineConfig, mode: Mode) -> Result<Engine, EngineError> {
        let key = ChainKey {
            model: crate::models::BUILTIN_ID.to_owned(),
            track: String::new(),
            mode,
            config,
            setting: Setting::Studio,
            notes: None,
            note_settings: Default::default(),
        };
        Ok(Chain::build(key, |_| {})?.engine)
    }

    /// Processes one block in place, a separator's stems into `stems` (see
    /// [`Engine::process_stems`]). Unlicensed, the engine takes its bypass path (the
    /// latency-aligned dry signal, silent stems); a licence without `stem-export` keeps the
    /// stem outputs silent. Real-time safe.
    pub fn process(
        &mut self,
        io: &mut [&mut [f32]],
        stems: &mut [&mut [&mut [f32]]],
        controls: Controls,
        playhead: impl Into<Playhead>,
    ) {
        self.process_with_backing(io, &[], stems, controls, playhead);
    }

    /// [`Self::process`] with the block's "Backing" sidechain (its channels; none when the
    /// host did not route it), which a cover licence naming a backing track checks. Real-time
    /// safe.
    pub fn process_with_backing(
        &mut self,
        io: &mut [&mut [f32]],
        backing: &[&[f32]],
        stems: &mut [&mut [&mut [f32]]],
        controls: Controls,
        playhead: impl Into<Playhead>,
    ) {
        let mut controls = controls;
        if let Some(l) = &mut self.licensing {
            controls.bypass |=
                !l.allows_with_backing(io, backing, playhead.into(), controls.offline);
        }
        controls.stem_outputs &= self.stems_may_leave;
        if let Some(l) = &mut self.licensing {
            // A use for the ledger: the AI path heard, on the main output (a mix at 0 is the
            // dry signal there) or on the stem outputs (which take no mix).
            let stems_heard = self.separates && controls.stem_outputs && !stems.is_empty();
            l.count_use(!controls.bypass && (controls.mix > 0.0 || stems_heard));
        }
        self.voice.store(&controls.voice);
        self.engine.process_stems(io, stems, controls);
    }

    /// The host's reset. Real-time safe.
    pub fn reset(&mut self) {
        self.engine.reset();
        if let Some(l) = &mut self.licensing {
            // A reset is a stop or a jump: a new licence state takes effect here.
            l.relatch();
        }
    }
}

/// Most channels a chain is processed with (Refrain's layouts are mono and stereo).
const MAX_CHANNELS: usize = 8;

/// Frames `from..to` of every stem output's channels (those past a short or missing output
/// are empty).
macro_rules! stem_frames {
    ($stems:expr, $from:expr, $to:expr, $chans:ident, $views:ident) => {
        let mut $chans: [[&mut [f32]; MAX_CHANNELS]; MAX_STEMS] = Default::default();
        let mut counts = [0usize; MAX_STEMS];
        for ((stem, row), count) in $stems
            .iter_mut()
            .zip($chans.iter_mut())
            .zip(counts.iter_mut())
        {
            *count = stem.len().min(MAX_CHANNELS);
            for (c, ch) in row.iter_mut().zip(stem.iter_mut()) {
                let end = $to.min(ch.len());
                *c = &mut ch[$from.min(end)..end];
            }
        }
        let mut $views: [&mut [&mut [f32]]; MAX_STEMS] = Default::default();
        for ((v, row), &count) in $views.iter_mut().zip($chans.iter_mut()).zip(counts.iter()) {
            *v = &mut row[..count];
        }
    };
}

/// Frames `from..to` of each of `channels` (at most [`MAX_CHANNELS`]), and how many there are.
/// Real-time safe.
fn frames_of<'a>(
    channels: &[&'a [f32]],
    from: usize,
    to: usize,
) -> ([&'a [f32]; MAX_CHANNELS], usize) {
    let mut out: [&[f32]; MAX_CHANNELS] = [&[]; MAX_CHANNELS];
    let count = channels.len().min(MAX_CHANNELS);
    for (o, c) in out.iter_mut().zip(channels) {
        let end = to.min(c.len());
        *o = &c[from.min(end)..end];
    }
    (out, count)
}

/// The audio thread's hold on the running chain, and the handover to the next one.
pub struct ChainSlot {
    current: Option<Box<Chain>>,
    /// The chain being faded out, with the samples left of its fade.
    outgoing: Option<(Box<Chain>, usize)>,
    /// Samples left of the new chain's fade-in.
    fade_in: usize,
    fade_len: usize,
    /// New chains from the loader.
    incoming: HeapCons<Box<Chain>>,
    /// Old chains back to the loader, dropped there.
    returned: HeapProd<Box<Chain>>,
    /// An old chain the loader had no room for yet.
    parked: Option<Box<Chain>>,
    /// Set when the running chain's latency differs from what the host was last told.
    latency_changed: bool,
    /// Where in the last block the running chain started (`u32::MAX`: it did not run).
    notes_shift: u32,
}

/// The loader's ends of a [`ChainSlot`]'s rings.
pub struct SlotLink {
    pub to_audio: HeapProd<Box<Chain>>,
    pub returned: HeapCons<Box<Chain>>,
}

impl ChainSlot {
    /// An empty slot and the loader's ends of its rings.
    pub fn new() -> (ChainSlot, SlotLink) {
        let (to_audio, incoming) = HeapRb::<Box<Chain>>::new(2).split();
        let (returned_tx, returned) = HeapRb::<Box<Chain>>::new(8).split();
        (
            ChainSlot {
                current: None,
                outgoing: None,
                fade_in: 0,
                fade_len: 96,
                incoming,
                returned: returned_tx,
                parked: None,
                latency_changed: false,
                notes_shift: u32::MAX,
            },
            SlotLink { to_audio, returned },
        )
    }

    /// The note messages the running chain sent in the last `process()` call, and what to add
    /// to their offsets (the chain started that far into the block, after a handover).
    /// Real-time safe.
    pub fn notes_sent(&self) -> (u32, &[crate::engine::notes_out::NoteOut]) {
        match &self.current {
            Some(c) if self.notes_shift != u32::MAX => (self.notes_shift, c.engine.notes_sent()),
            _ => (0, &[]),
        }
    }

    /// The running chain.
    pub fn current(&self) -> Option<&Chain> {
        self.current.as_deref()
    }

    /// Installs `chain` at once (activation: nothing is playing). Returns the chains it
    /// replaced, for the caller to drop off the audio thread.
    pub fn install(&mut self, chain: Option<Box<Chain>>) -> Vec<Box<Chain>> {
        let mut old: Vec<Box<Chain>> = Vec::new();
        old.extend(self.current.take());
        old.extend(self.outgoing.take().map(|(c, _)| c));
        old.extend(self.parked.take());
        self.current = chain;
        self.fade_in = 0;
        self.latency_changed = false;
        old
    }

    /// Adopts the newest chain the loader sent while the plugin was inactive. Not for the
    /// audio thread (it may drop chains).
    pub fn settle(&mut self) -> Vec<Box<Chain>> {
        let mut newest = None;
        while let Some(c) = self.incoming.try_pop() {
            newest = Some(c);
        }
        match newest {
            Some(c) => self.install(Some(c)),
            None => {
                let current = self.current.take();
                self.install(current)
            }
        }
    }

    /// Whether the host must be told a new latency (and clears the flag). Real-time safe.
    pub fn take_latency_changed(&mut self) -> bool {
        let engine = self
            .current
            .as_mut()
            .is_some_and(|c| c.engine.take_latency_changed());
        std::mem::take(&mut self.latency_changed) || engine
    }

    /// The host's reset. Real-time safe.
    pub fn reset(&mut self) {
        if let Some(c) = &mut self.current {
            c.reset();
        }
    }

    /// Processes one block in place through the running chain (a separator's stems into
    /// `stems`, the "Backing" sidechain's channels in `backing`: none when the host did not
    /// route it), taking over a new one when the loader has sent it: the old chain fades out
    /// over 2 ms, the new one starts from silence with its input faded in. Real-time safe: the
    /// old chain goes back to the loader.
    pub fn process(
        &mut self,
        io: &mut [&mut [f32]],
        backing: &[&[f32]],
        stems: &mut [&mut [&mut [f32]]],
        controls: Controls,
        playhead: impl Into<Playhead>,
    ) {
        let playing: Playhead = playhead.into();
        let n = io.first().map_or(0, |c| c.len());
        // A chain that could not go back last time (the loader was behind) tries again.
        if let Some(old) = self.parked.take() {
            if let Err(old) = self.returned.try_push(old) {
                self.parked = Some(old);
            }
        }
        // One handover at a time.
        if self.outgoing.is_none() && self.parked.is_none() {
            if let Some(next) = self.incoming.try_pop() {
                let len = crate::engine::latency::crossfade_len(next.engine.plan().host_rate);
                self.fade_len = len;
                match self.current.take() {
                    Some(old) => self.outgoing = Some((old, len)),
                    None => self.fade_in = len,
                }
                self.current = Some(next);
                self.latency_changed = true;
            }
        }
        let ch = io.len().min(MAX_CHANNELS);
        let n_stems = stems.len().min(MAX_STEMS);
        let mut start = 0;
        if let Some((old, left)) = &mut self.outgoing {
            let k = (*left).min(n);
            let mut head: [&mut [f32]; MAX_CHANNELS] = Default::default();
            for (h, c) in head.iter_mut().zip(io.iter_mut()) {
                *h = &mut c[..k];
            }
            {
                stem_frames!(stems, 0, k, chans, views);
                let (side, sides) = frames_of(backing, 0, k);
                old.process_with_backing(
                    &mut head[..ch],
                    &side[..sides],
                    &mut views[..n_stems],
                    controls,
                    playing,
                );
            }
            let fade_len = self.fade_len as f32;
            let fade = |c: &mut [f32]| {
                for (i, s) in c.iter_mut().take(k).enumerate() {
                    *s *= (*left - i) as f32 / fade_len;
                }
            };
            io.iter_mut().for_each(|c| fade(c));
            stems
                .iter_mut()
                .flat_map(|s| s.iter_mut())
                .for_each(|c| fade(c));
            *left -= k;
            start = k;
            if *left == 0 {
                // The new chain starts right after, from silence.
                self.fade_in = self.fade_len;
                if let Some((old, _)) = self.outgoing.take() {
                    if let Err(old) = self.returned.try_push(old) {
                        self.parked = Some(old);
                    }
                }
            }
        }
        self.notes_shift = u32::MAX;
        if start >= n {
            return;
        }
        let Some(current) = &mut self.current else {
            return;
        };
        self.notes_shift = start as u32;
        let fade_in = self.fade_in.min(n - start);
        if fade_in > 0 {
            for c in io.iter_mut() {
                for (i, s) in c[start..start + fade_in].iter_mut().enumerate() {
                    *s *= (self.fade_len - self.fade_in + i) as f32 / self.fade_len as f32;
                }
            }
        }
        if start == 0 {
            current.process_with_backing(io, backing, stems, controls, playing);
        } else {
            let mut tail: [&mut [f32]; MAX_CHANNELS] = Default::default();
            for (t, c) in tail.iter_mut().zip(io.iter_mut()) {
                *t = &mut c[start..];
            }
            stem_frames!(stems, start, n, chans, views);
            let (side, sides) = frames_of(backing, start, n);
            current.process_with_backing(
                &mut tail[..ch],
                &side[..sides],
                &mut views[..n_stems],
                controls,
                playing,
            );
        }
        if fade_in > 0 {
            // The stems fade in with the input (their engine starts dry: they are silent at
            // first anyway).
            for c in stems.iter_mut().flat_map(|s| s.iter_mut()) {
                let end = (start + fade_in).min(c.len());
                for (i, s) in c[start.min(end)..end].iter_mut().enumerate() {
                    *s *= (self.fade_len - self.fade_in + i) as f32 / self.fade_len as f32;
                }
            }
            self.fade_in -= fade_in;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{frames_of, MAX_CHANNELS};

    /// A handover splits the block between the old chain and the new: each gets its own frames
    /// of the Backing sidechain; a channel shorter than the block gives what it has, and no
    /// more than MAX_CHANNELS channels are taken.
    #[test]
    fn each_chain_of_a_handover_gets_its_own_frames_of_the_backing() {
        let left: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let right: Vec<f32> = (0..8).map(|i| -(i as f32)).collect();
        let backing: [&[f32]; 2] = [&left, &right];
        let (old, n) = frames_of(&backing, 0, 3);
        assert_eq!(n, 2);
        assert_eq!(old[0], &[0.0, 1.0, 2.0]);
        assert_eq!(old[1], &[0.0, -1.0, -2.0]);
        let (new, _) = frames_of(&backing, 3, 8);
        assert_eq!(new[0], &[3.0, 4.0, 5.0, 6.0, 7.0]);
        let short: [&[f32]; 1] = [&left[..4]];
        let (tail, n) = frames_of(&short, 3, 8);
        assert_eq!((n, tail[0]), (1, &[3.0][..]));
        let (none, n) = frames_of(&[], 0, 8);
        assert_eq!(n, 0);
        assert!(none.iter().all(|c| c.is_empty()));
        let many = vec![&left[..]; MAX_CHANNELS + 2];
        assert_eq!(frames_of(&many, 0, 8).1, MAX_CHANNELS);
    }
}
