//! Refrain: a VST3/CLAP plugin that streams audio to a background ONNX worker and returns it
//! with exact, host-reported latency.
//!
//! This file is the thin glue between nice-plug and the host-agnostic [`engine`]: activation
//! plans the stream and reports latency, `process()` hands the host's buffers to the engine.

pub mod editor;
pub mod engine;
pub mod licence;
pub mod models;
pub mod params;
pub mod render;
pub mod synth;

use engine::worker::WorkerOptions;
use engine::{Controls, Engine, EngineConfig};
use licence::claims::Use;
use licence::fingerprint::{FingerprintMonitor, FingerprintTap, TrackMatch};
use licence::gate::{Latch, LicenceGate, LicenceMonitor, LoadedTrack, MonitorSpec};
use licence::policy::{Requirement, SystemClock, Verdict};
use licence::store::Store;
use models::manifest::Manifest;
use models::ModelSource;
use nice_plug::prelude::*;
use params::RefrainParams;
use std::sync::Arc;
use std::time::Duration;

/// Fault injection for tests and soak runs: milliseconds the worker sleeps per chunk.
pub const ENV_WORKER_DELAY_MS: &str = "REFRAIN_FAULT_WORKER_DELAY_MS";

/// One plugin instance.
pub struct Refrain {
    params: Arc<RefrainParams>,
    /// The running engine; `None` when the host's configuration cannot be served (the audio
    /// then passes through untouched, with zero latency reported).
    engine: Option<Engine>,
    /// Set if the engine ever panicked: from then on audio passes through untouched.
    poisoned: bool,
    /// Licence enforcement for models that need one; `None` for those that do not.
    licensing: Option<Licensing>,
    /// What the editor shows.
    shared: Arc<editor::EditorShared>,
    /// The editor's size.
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
}

/// What a licence must allow for `manifest`'s model; `None` when the model needs none
/// (Refrain's built-in processors and utility models). Voice models need `cover`, remix
/// models `remix`, and real-time use (not an offline bounce) needs `live` as well.
pub fn licence_requirement(
    manifest: &Manifest,
    offline: bool,
    territory: Option<String>,
) -> Option<Requirement> {
    let rights = manifest.rights;
    if !rights.licensed_voice && !rights.licensed_track {
        return None;
    }
    let mut uses = Vec::new();
    if rights.licensed_voice {
        uses.push(Use::Cover);
    }
    if rights.licensed_track {
        uses.push(Use::Remix);
    }
    if !offline {
        uses.push(Use::Live);
    }
    Some(Requirement {
        model_id: manifest.model.id.clone(),
        model_sha256: manifest.model.sha256.to_ascii_lowercase(),
        uses,
        territory,
    })
}

/// A licensed model's enforcement: the gate the background checks write, the audio thread's
/// latch, and the fingerprint tap for remix models.
pub struct Licensing {
    pub gate: Arc<LicenceGate>,
    latch: Latch,
    tap: Option<FingerprintTap>,
    _monitor: Option<LicenceMonitor>,
    _fingerprint: Option<FingerprintMonitor>,
}

impl Licensing {
    /// Checks the licence for `manifest` now (off the audio thread) and starts the periodic
    /// re-check and, for remix models with a reference fingerprint, the track matcher.
    /// Returns `None` when the model needs no licence.
    pub fn start(
        manifest: &Manifest,
        track: Option<LoadedTrack>,
        config: &EngineConfig,
    ) -> Option<(Licensing, Verdict)> {
        let rights = manifest.rights;
        let store = match Store::open_default() {
            Ok(s) => s,
            Err(e) => {
                licence_requirement(manifest, config.offline, None)?;
                // No licence folder: the AI path stays off, with the reason.
                let verdict = Verdict::invalid(&e, None);
                let gate = LicenceGate::new(&verdict);
                return Some((
                    Licensing {
                        latch: Latch::new(&gate),
                        gate,
                        tap: None,
                        _monitor: None,
                        _fingerprint: None,
                    },
                    verdict,
                ));
            }
        };
        let requirement = licence_requirement(manifest, config.offline, store.territory())?;
        let spec = MonitorSpec {
            store,
            licence_id: track.map(|t| t.licence),
            requirement,
            clock: Arc::new(SystemClock),
            period: MonitorSpec::period_from_env(),
        };
        let verdict = spec.evaluate();
        let gate = LicenceGate::new(&verdict);
        let monitor = LicenceMonitor::start(spec, gate.clone(), |v| {
            nice_log!("Refrain licence: {}", v.reason);
        });
        let reference = verdict
            .claims
            .as_ref()
            .filter(|_| rights.licensed_track && verdict.state.allows())
            .and_then(|c| c.reference_fingerprint().ok().flatten());
        let (fingerprint, tap) = match reference {
            Some(reference) => match FingerprintMonitor::start(
                reference,
                config.sample_rate.round() as u32,
                config.max_block,
                config.offline,
                gate.clone(),
                |state, ber| {
                    let verb = match state {
                        TrackMatch::Mismatch => "does not match",
                        TrackMatch::Match => "matches",
                        TrackMatch::Unknown => return,
                    };
                    nice_log!("Refrain licence: input {verb} the licensed track (bit error rate {ber:.2})");
                },
            ) {
                Ok((m, t)) => (Some(m), Some(t)),
                Err(e) => {
                    nice_error!("Refrain licence: fingerprint matching is off: {e}");
                    (None, None)
                }
            },
            None => (None, None),
        };
        Some((
            Licensing {
                latch: Latch::new(&gate),
                gate,
                tap,
                _monitor: Some(monitor),
                _fingerprint: fingerprint,
            },
            verdict,
        ))
    }

    /// Audio thread: whether the AI path runs for this block (and feeds the fingerprint).
    fn allows(&mut self, io: &[&mut [f32]], playing: bool) -> bool {
        if let Some(tap) = &mut self.tap {
            tap.push(io);
        }
        self.latch.allows(&self.gate, playing)
    }
}

impl Default for Refrain {
    fn default() -> Self {
        Refrain {
            params: Arc::new(RefrainParams::default()),
            engine: None,
            poisoned: false,
            licensing: None,
            shared: Arc::new(editor::EditorShared::default()),
            editor_state: editor::default_state(),
        }
    }
}

/// Worker options from the environment (fault injection only).
pub fn worker_options_from_env() -> WorkerOptions {
    let ms = std::env::var(ENV_WORKER_DELAY_MS)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    WorkerOptions {
        extra_delay_per_chunk: Duration::from_millis(ms),
    }
}

/// Starts an engine for `source`: a model whose manifest cannot be read still gets an engine
/// (planned like the built-in model) that passes latency-aligned dry audio and says why.
pub fn start_engine(
    source: ModelSource,
    config: EngineConfig,
    options: WorkerOptions,
) -> Result<Engine, engine::latency::PlanError> {
    match source.manifest() {
        Ok(manifest) => {
            let spec = manifest.spec();
            Engine::start(
                config,
                spec,
                Box::new(move || source.load_processor()),
                options,
            )
        }
        // Planned like the built-in model, so the host gets a sensible latency.
        Err(e) => start_engine_without_model(&models::builtin_manifest(), config, e.to_string()),
    }
}

/// An engine planned for `manifest`'s model that never loads it: latency-aligned dry audio at
/// the model's latency, with `reason` as the status message. Used when the licence refuses
/// the model at activation, so an unlicensed model is never run, not only never heard.
pub fn start_engine_without_model(
    manifest: &Manifest,
    config: EngineConfig,
    reason: String,
) -> Result<Engine, engine::latency::PlanError> {
    Engine::start(
        config,
        manifest.spec(),
        Box::new(move || Err(reason)),
        WorkerOptions::default(),
    )
}

impl Plugin for Refrain {
    const NAME: &'static str = "Refrain";
    const VENDOR: &'static str = "Refrain";
    const URL: &'static str = "https://refrain.audio";
    const EMAIL: &'static str = "support@refrain.audio";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    type Editor = nice_plug_egui::EguiEditor<editor::RefrainEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(
            self.params.clone(),
            self.shared.clone(),
            self.editor_state.clone(),
        )
    }

    fn activate(
        &mut self,
        layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let config = EngineConfig {
            sample_rate: buffer_config.sample_rate,
            max_block: buffer_config.max_buffer_size.max(1) as usize,
            channels: layout.main_output_channels.map_or(2, |c| c.get() as usize),
            offline: buffer_config.process_mode == ProcessMode::Offline,
        };
        let source = ModelSource::parse(&self.params.model.read());
        // The old engine (and its worker and session) goes here, on the main thread.
        self.engine = None;
        self.licensing = None;
        self.poisoned = false;
        *self.shared.gate.lock() = None;
        *self.shared.status.lock() = None;
        self.shared.sample_rate.store(
            buffer_config.sample_rate.round() as u32,
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut refused = None;
        match source.manifest() {
            Ok(manifest) => {
                *self.shared.model_name.lock() = manifest.model.name.clone();
                let track = LoadedTrack::parse(&self.params.track.read());
                if let Some((licensing, verdict)) = Licensing::start(&manifest, track, &config) {
                    if verdict.state.allows() {
                        nice_log!("Refrain licence: {}", verdict.reason);
                    } else {
                        nice_error!(
                            "Refrain licence: the AI path is off, dry audio passes: {}",
                            verdict.reason
                        );
                        // Not even loaded, until a reactivation with a valid licence.
                        refused =
                            Some((manifest.clone(), format!("not loaded: {}", verdict.reason)));
                    }
                    *self.shared.gate.lock() = Some(licensing.gate.clone());
                    self.licensing = Some(licensing);
                }
            }
            Err(e) => {
                *self.shared.model_name.lock() = format!("{} (unreadable: {e})", source.to_state());
            }
        }
        let started = match refused {
            Some((manifest, reason)) => start_engine_without_model(&manifest, config, reason),
            None => start_engine(source.clone(), config, worker_options_from_env()),
        };
        match started {
            Ok(engine) => {
                nice_log!(
                    "Refrain: model {}, {}",
                    source.to_state(),
                    engine.plan().describe()
                );
                context.set_latency_samples(engine.latency());
                self.shared
                    .latency
                    .store(engine.latency(), std::sync::atomic::Ordering::Relaxed);
                *self.shared.status.lock() = Some(engine.status().clone());
                self.engine = Some(engine);
            }
            Err(e) => {
                nice_error!("Refrain passes audio through unprocessed: {e}");
                context.set_latency_samples(0);
                self.shared
                    .latency
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
        true
    }

    fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.reset();
        }
        // A reset is a stop or a jump: a new licence state takes effect here.
        if let Some(l) = &mut self.licensing {
            l.latch.relatch(&l.gate);
        }
    }

    fn deactivate(&mut self) {
        if let Some(engine) = &self.engine {
            let s = engine.status();
            let r = std::sync::atomic::Ordering::Relaxed;
            nice_log!(
                "Refrain: stopped; model {:?} ({}), {} chunks, {} underruns, {} skipped chunks",
                s.state(),
                s.message(),
                s.chunks.load(r),
                s.underruns.load(r),
                s.skipped_chunks.load(r)
            );
        }
        self.engine = None;
        self.licensing = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        if self.poisoned {
            return ProcessStatus::Normal;
        }
        let playing = context.transport().playing;
        let mut controls = Controls {
            mix: self.params.mix.value(),
            bypass: self.params.bypass.value(),
        };
        if let Some(engine) = &mut self.engine {
            let io = buffer.as_slice();
            if let Some(l) = &mut self.licensing {
                // Unlicensed: the engine's bypass path, the latency-aligned dry signal.
                controls.bypass |= !l.allows(io, playing);
            }
            // Nothing in the engine panics by design; if it ever did, the host must not die.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.process(io, controls)
            }))
            .is_ok();
            self.poisoned = !ok;
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Refrain {
    const CLAP_ID: &'static str = "audio.refrain.refrain";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Licensed AI covers and remixes in real time");
    const CLAP_MANUAL_URL: Option<&'static str> = Some(Self::URL);
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Stereo,
        ClapFeature::Mono,
    ];
}

impl Vst3Plugin for Refrain {
    const VST3_CLASS_ID: [u8; 16] = *b"RefrainAIPlugin1";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

nice_export_clap!(Refrain);
nice_export_vst3!(Refrain);
