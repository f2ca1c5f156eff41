//! Refrain: a VST3/CLAP plugin that streams audio to a background ONNX worker and returns it
//! with exact, host-reported latency.
//!
//! This file is the glue between nice-plug and the rest: activation builds (or keeps) the
//! [`chain::Chain`] for the chosen model, track and mode and reports its latency; `process()`
//! hands the host's buffers to the [`chain::ChainSlot`]; the [`loader`] keeps the chain in step
//! with the user's choices while the plugin runs.
//!
//! The audio path, by file: host -> `chain.rs` -> `engine/mod.rs` -> `engine/stream.rs` (ring)
//! -> `engine/worker.rs` -> `engine/pipeline.rs` (`resample.rs`, the model) -> `engine/stream.rs`
//! (ring) -> `engine/mod.rs` -> host.

pub mod chain;
pub mod detach;
pub mod editor;
pub mod engine;
pub mod files;
pub mod licence;
pub mod loader;
pub mod media;
pub mod models;
pub mod notes;
pub mod params;
pub mod render;
pub mod separation;
pub mod stem_mix;
pub mod synth;
#[doc(hidden)]
pub mod testkit;
pub mod voice;

use chain::{Chain, ChainSlot, SlotLink};
use engine::Controls;
use licence::enforce::Setting;
use loader::Loader;
use nice_plug::prelude::*;
use params::RefrainParams;
use std::sync::Arc;

/// One plugin instance.
pub struct Refrain {
    params: Arc<RefrainParams>,
    /// The running chain, and the handover to the next.
    slot: ChainSlot,
    /// The loader's ends of the slot's rings, until the loader starts.
    link: Option<SlotLink>,
    loader: Option<Loader>,
    /// What the editor shows.
    shared: Arc<editor::EditorShared>,
    /// The editor's size.
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
    /// The stems' gains in the remix, smoothed.
    stem_mix: stem_mix::StemMix,
    sample_rate: f32,
}

impl Default for Refrain {
    fn default() -> Self {
        let (slot, link) = ChainSlot::new();
        Refrain {
            params: Arc::new(RefrainParams::default()),
            slot,
            link: Some(link),
            loader: None,
            shared: Arc::new(editor::EditorShared::default()),
            editor_state: editor::default_state(),
            stem_mix: stem_mix::StemMix::default(),
            sample_rate: 48_000.0,
        }
    }
}

/// Log lines from the chain, the licence checks and the loader.
fn log_line(line: &str) {
    nice_log!("{line}");
}

/// Builds that trust the development root (`dev-root`: tests and the demo) have their own name
/// and plugin ids, so a DAW never mistakes one for the release or loads it in its place.
#[cfg(not(feature = "dev-root"))]
mod identity {
    pub const NAME: &str = "Refrain";
    pub const CLAP_ID: &str = "audio.refrain.refrain";
    pub const VST3_CLASS_ID: [u8; 16] = *b"RefrainAIPlugin1";
}
#[cfg(feature = "dev-root")]
mod identity {
    pub const NAME: &str = "Refrain (development root)";
    pub const CLAP_ID: &str = "audio.refrain.refrain-development-root";
    pub const VST3_CLASS_ID: [u8; 16] = *b"RefrainDevRoot01";
}

impl Plugin for Refrain {
    const NAME: &'static str = identity::NAME;
    const VENDOR: &'static str = "Refrain";
    const URL: &'static str = "https://refrain.audio";
    const EMAIL: &'static str = "support@refrain.audio";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // Stereo with the covers' "Backing" sidechain and a separator's four stems on their own
    // outputs first (what a DAW offers by default), the same without the sidechain (a VST3
    // host that offers no sidechain asks for this one), then plain stereo and mono for hosts
    // that route no extra ports. The main ports are both "Main": nice-plug 0.4.2 names the
    // main output after the main input.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[new_nonzero_u32(2)],
            aux_output_ports: &[new_nonzero_u32(2); 4],
            names: PortNames {
                layout: Some("Stereo with backing and stems"),
                main_input: Some("Main"),
                main_output: Some("Main"),
                aux_inputs: &["Backing"],
                aux_outputs: &["Vocals", "Drums", "Bass", "Other"],
            },
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            aux_output_ports: &[new_nonzero_u32(2); 4],
            names: PortNames {
                layout: Some("Stereo with stems"),
                main_input: Some("Main"),
                main_output: Some("Main"),
                aux_inputs: &[],
                aux_outputs: &["Vocals", "Drums", "Bass", "Other"],
            },
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            names: PortNames {
                layout: Some("Stereo"),
                main_input: Some("Main"),
                main_output: Some("Main"),
                aux_inputs: &[],
                aux_outputs: &[],
            },
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            names: PortNames {
                layout: Some("Mono"),
                main_input: Some("Main"),
                main_output: Some("Main"),
                aux_inputs: &[],
                aux_outputs: &[],
            },
            ..AudioIOLayout::const_default()
        },
    ];

    // Notes out (Basic Pitch) as MIDI note events.
    // Notes, and pitch bends on their channels (a bend is a MIDI message, MidiCCs and up).
    const MIDI_OUTPUT: MidiConfig = MidiConfig::MidiCCs;

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
        self.sample_rate = buffer_config.sample_rate;
        self.stem_mix.settle(&self.params);
        let config = engine::EngineConfig {
            sample_rate: buffer_config.sample_rate,
            max_block: buffer_config.max_buffer_size.max(1) as usize,
            channels: layout.main_output_channels.map_or(2, |c| c.get() as usize),
        };
        let setting = if context.plugin_api() == PluginApi::Standalone {
            Setting::PublicPerformance
        } else {
            Setting::Studio
        };
        if self.loader.is_none() {
            if let Some(link) = self.link.take() {
                match Loader::start(self.params.clone(), self.shared.clone(), link, log_line) {
                    Ok(l) => self.loader = Some(l),
                    Err(e) => nice_error!("Refrain: the model loader did not start ({e}); models load at activation only"),
                }
            }
        }
        // Whatever the loader sent while inactive is adopted now, before the comparison.
        drop(self.slot.settle());
        let key = loader::desired_key(&self.params, config, setting);
        if let Some(l) = &self.loader {
            l.shared.state.lock().generation += 1;
        }
        // A restart with the same choices (a host honouring a latency change, a render-mode
        // switch) keeps the running chain: no reload, the same measured latency.
        let keep = self
            .slot
            .current()
            .is_some_and(|c| c.key == key && !c.model_refused());
        if keep {
            self.slot.reset();
        } else {
            // With a loader, a Live voice's measurement (seconds for a real-size voice) is the
            // loader's to do, not the host's activation's.
            let built = if self.loader.is_some() {
                Chain::build_deferring(key, log_line)
            } else {
                Chain::build(key, log_line)
            };
            let chain = match built {
                Ok(c) => Some(Box::new(c)),
                Err(e) => {
                    nice_error!("Refrain passes audio through unprocessed: {e}");
                    None
                }
            };
            drop(self.slot.install(chain));
        }
        if let Some(l) = &self.loader {
            let mut state = l.shared.state.lock();
            state.active = Some((config, setting));
            match self.slot.current() {
                Some(c) => state.set_running(c),
                None => state.running = Some(loader::desired_key(&self.params, config, setting)),
            }
        }
        let latency = match self.slot.current() {
            Some(c) => {
                nice_log!(
                    "Refrain: model {}, {}",
                    c.key.model,
                    c.engine.plan().describe()
                );
                self.shared.show_chain(c);
                c.engine.latency()
            }
            None => {
                self.shared.clear();
                0
            }
        };
        // The standalone has no host to compensate latency.
        if setting == Setting::Studio {
            context.set_latency_samples(latency);
        }
        true
    }

    fn reset(&mut self) {
        self.slot.reset();
    }

    fn deactivate(&mut self) {
        if let Some(c) = self.slot.current() {
            let s = c.engine.status();
            let r = std::sync::atomic::Ordering::Relaxed;
            nice_log!(
                "Refrain: stopped; model {:?} ({}), {} hops, {} underruns, {} late hops, {}",
                s.state(),
                s.message(),
                s.hops.load(r),
                s.underruns.load(r),
                s.late_hops.load(r),
                s.priority()
            );
        }
        // The chain stays: a reactivation with the same choices keeps it.
        if let Some(l) = &self.loader {
            let mut state = l.shared.state.lock();
            state.active = None;
            state.generation += 1;
        }
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let n = buffer.samples();
        let controls = Controls {
            mix: self.params.mix.value(),
            bypass: self.params.bypass.value(),
            offline: nice_plug::wrapper::render_mode::current() == Some(ProcessMode::Offline),
            stem_gains: self.stem_mix.next_block(&self.params, n, self.sample_rate),
            stem_outputs: true,
            voice: self.params.voice.settings(),
        };
        let transport = context.transport();
        let playhead = licence::enforce::Playhead {
            playing: transport.playing,
            position: transport.pos_samples(),
        };
        // The stem outputs (when the host connected them): silent unless a separator fills them.
        let n_stems = aux.outputs.len().min(engine::MAX_STEMS);
        let mut stems: [&mut [&mut [f32]]; engine::MAX_STEMS] = Default::default();
        for (s, out) in stems.iter_mut().zip(aux.outputs.iter_mut()) {
            *s = out.as_slice();
            s.iter_mut().for_each(|c| c.fill(0.0));
        }
        // The "Backing" sidechain (a cover's backing track), when the layout has it; an
        // unrouted one reads as silence.
        let mut backing: [&[f32]; 2] = [&[], &[]];
        let mut n_backing = 0;
        if let Some(input) = aux.inputs.first() {
            for (b, c) in backing.iter_mut().zip(input.as_slice_immutable()) {
                *b = c;
                n_backing += 1;
            }
        }
        self.slot.process(
            buffer.as_slice(),
            &backing[..n_backing],
            &mut stems[..n_stems],
            controls,
            playhead,
        );
        let (shift, notes) = self.slot.notes_sent();
        for note in notes {
            use nice_plug::midi::{Channel, Key, VoiceID};
            use notes::midi::bend_value;
            use notes::tracker::NoteChange;
            let timing = (shift + note.offset).min(n.saturating_sub(1) as u32);
            let (voice_id, channel, key) = (
                VoiceID::Wildcard,
                Channel::Number(note.channel),
                Key::Number(note.key),
            );
            // A full host buffer drops the message; the audio is never held up for it.
            let _ = context.try_send_event(match note.change {
                NoteChange::On { velocity } => NoteEvent::NoteOn {
                    timing,
                    voice_id,
                    channel,
                    key,
                    velocity: velocity as f32 / 127.0,
                },
                NoteChange::Off => NoteEvent::NoteOff {
                    timing,
                    voice_id,
                    channel,
                    key,
                    velocity: 0.0,
                },
                NoteChange::Bend(thirds) => NoteEvent::MidiPitchBend {
                    timing,
                    channel: note.channel,
                    value: bend_value(thirds) as f32 / 16_383.0,
                },
            });
        }
        let Some(current) = self.slot.current() else {
            return ProcessStatus::Normal;
        };
        let (latency, tail) = (current.engine.latency(), current.engine.tail());
        if self.slot.take_latency_changed() && context.plugin_api() != PluginApi::Standalone {
            context.set_latency_samples(latency);
        }
        ProcessStatus::Tail(tail)
    }
}

impl ClapPlugin for Refrain {
    const CLAP_ID: &'static str = identity::CLAP_ID;
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
    const VST3_CLASS_ID: [u8; 16] = identity::VST3_CLASS_ID;
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

nice_export_clap!(Refrain);
nice_export_vst3!(Refrain);
