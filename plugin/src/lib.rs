//! Refrain: a VST3/CLAP plugin that streams audio to a background ONNX worker and returns it
//! with exact, host-reported latency.
//!
//! This file is the thin glue between nice-plug and the host-agnostic [`engine`]: activation
//! plans the stream and reports latency, `process()` hands the host's buffers to the engine.

pub mod engine;
pub mod models;
pub mod params;
pub mod render;

use engine::worker::WorkerOptions;
use engine::{Controls, Engine, EngineConfig};
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
}

impl Default for Refrain {
    fn default() -> Self {
        Refrain {
            params: Arc::new(RefrainParams::default()),
            engine: None,
            poisoned: false,
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
        Err(e) => {
            let message = e.to_string();
            Engine::start(
                config,
                models::builtin_manifest().spec(),
                Box::new(move || Err(message)),
                options,
            )
        }
    }
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

    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
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
        self.poisoned = false;
        match start_engine(source.clone(), config, worker_options_from_env()) {
            Ok(engine) => {
                nice_log!(
                    "Refrain: model {}, {}",
                    source.to_state(),
                    engine.plan().describe()
                );
                context.set_latency_samples(engine.latency());
                self.engine = Some(engine);
            }
            Err(e) => {
                nice_error!("Refrain passes audio through unprocessed: {e}");
                context.set_latency_samples(0);
            }
        }
        true
    }

    fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.reset();
        }
    }

    fn deactivate(&mut self) {
        self.engine = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        _context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        if self.poisoned {
            return ProcessStatus::Normal;
        }
        let controls = Controls {
            mix: self.params.mix.value(),
            bypass: self.params.bypass.value(),
        };
        if let Some(engine) = &mut self.engine {
            let io = buffer.as_slice();
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
