//! The editor (egui): what runs, how late it comes back, and under which licence.
//!
//! - The model: name, state, the engine's message, the reported latency and the underruns;
//!   another model (a `model.toml` path) is loaded through the plugin state, so the host sees a
//!   normal state change and the plugin reactivates with the new latency.
//! - Mix, mode, notes out (off, from the input or a stem) and bypass; how many notes went
//!   out and how many after their audio.
//! - With a separator: each stem (vocals, drums, bass, other) with its gain, mute and solo in
//!   the remix on the main output, and a level meter of its own output.
//! - The track and its licence: the loaded track, the licence state and its reason in words,
//!   the licences cached on this machine with a button to load each, and a field to load a
//!   licence file. Loading a track goes through the plugin state too, so it is saved with the
//!   project and the licence is verified at once (on the reactivation that follows).
//!
//! Everything the editor shows comes from [`EditorShared`], written by the plugin at activation
//! on the main thread; the audio thread never touches it.

use crate::chain::Chain;
use crate::engine::latency::LatencyPlan;
use crate::engine::status::{EngineState, EngineStatus};
use crate::licence::gate::{LicenceGate, LoadedTrack};
use crate::licence::policy::{self, CachedLicence, LicenceState};
use crate::licence::store::Store;
use crate::params::RefrainParams;
use nice_plug::context::gui::GuiContext;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the plugin publishes for the editor: written off the audio thread (activation, the
/// loader) whenever a chain is built; the audio thread never touches it.
#[derive(Default)]
pub struct EditorShared {
    /// The running engine's status, while active.
    pub status: Mutex<Option<Arc<EngineStatus>>>,
    /// The running engine's latency plan.
    pub plan: Mutex<Option<LatencyPlan>>,
    /// The model's display name.
    pub model_name: Mutex<String>,
    /// The licence gate, when the model needs a licence.
    pub gate: Mutex<Option<Arc<LicenceGate>>>,
    /// The note tracker, when notes are out.
    pub notes: Mutex<Option<Arc<crate::notes::tracker::TrackerShared>>>,
    /// A voice's controls (what it hears: pitch, gate), when the model is a voice, and
    /// whether it is the built-in transform (no gate, no index, no speakers).
    pub voice: Mutex<Option<(Arc<crate::voice::controls::VoiceControls>, bool)>>,
}

impl EditorShared {
    /// Shows `chain` (built, about to run).
    pub fn show_chain(&self, chain: &Chain) {
        *self.status.lock() = Some(chain.engine.status().clone());
        *self.plan.lock() = Some(*chain.engine.plan());
        *self.model_name.lock() = chain.model_name.clone();
        *self.gate.lock() = chain.licensing.as_ref().map(|l| l.gate.clone());
        *self.notes.lock() = chain.engine.notes_status().cloned();
        *self.voice.lock() = chain
            .voice_kind
            .map(|built_in| (chain.voice.clone(), built_in));
    }

    /// Nothing runs.
    pub fn clear(&self) {
        *self.status.lock() = None;
        *self.plan.lock() = None;
        *self.gate.lock() = None;
        *self.notes.lock() = None;
        *self.voice.lock() = None;
    }
}

/// The editor's size when first opened.
pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(620.0, 640.0), 1.0)
}

/// Builds the editor.
pub fn create(
    params: Arc<RefrainParams>,
    shared: Arc<EditorShared>,
    state: Arc<EguiEditorState>,
) -> Option<EguiEditor<RefrainEditor>> {
    nice_plug_egui::create_egui_editor(
        state,
        nice_plug_egui::RepaintNotifier::new(),
        EguiNiceSettings::new()
            .with_tile("Refrain")
            .with_repaint_poll_interval(Duration::from_millis(250)),
        RefrainEditor {
            params,
            shared,
            gui: None,
            store: Store::open_default().ok(),
            rows: Vec::new(),
            licence_path: String::new(),
            model_path: String::new(),
            error: String::new(),
        },
    )
}

/// The editor's own state.
pub struct RefrainEditor {
    params: Arc<RefrainParams>,
    shared: Arc<EditorShared>,
    gui: Option<GuiContext>,
    store: Option<Store>,
    rows: Vec<CachedLicence>,
    licence_path: String,
    model_path: String,
    error: String,
}

impl RefrainEditor {
    fn refresh(&mut self) {
        self.rows = self
            .store
            .as_ref()
            .map(policy::cached_licences)
            .unwrap_or_default();
    }

    /// Loads a track: the persisted field changes (the project saves it) and the loader builds
    /// the chain for it, verifying the licence, off the audio thread.
    fn load_track(&mut self, track: Option<LoadedTrack>) {
        *self.params.track.write() = track.map(|t| t.to_state()).unwrap_or_default();
        self.error.clear();
    }

    /// Loads a model the same way (the loader loads it, measures it and fades it in). A model
    /// from a folder is imported into the models folder first: the project names it by id and
    /// identity, so it opens on another machine that has the model.
    fn load_model(&mut self, model: &str) {
        use crate::models::ModelSource;
        let state = match ModelSource::parse(model) {
            ModelSource::Manifest(path) => crate::models::library::import(&path)
                .map(|(reference, _)| reference.to_state())
                .map_err(|e| e.to_string()),
            other => other
                .manifest()
                .map(|_| other.to_state())
                .map_err(|e| e.to_string()),
        };
        match state {
            Ok(state) => {
                *self.params.model.write() = state;
                self.error.clear();
            }
            Err(e) => self.error = format!("{model}: {e}"),
        }
    }

    fn model_section(&mut self, ui: &mut egui::Ui) {
        let status = self.shared.status.lock().clone();
        let name = self.shared.model_name.lock().clone();
        let plan = *self.shared.plan.lock();
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Model").strong());
            ui.label(if name.is_empty() { "-".into() } else { name });
        });
        match status {
            Some(s) => {
                let (colour, word) = match s.state() {
                    EngineState::Running => (egui::Color32::from_rgb(90, 190, 110), "running"),
                    EngineState::Starting => (egui::Color32::from_rgb(220, 180, 60), "starting"),
                    EngineState::Failed => (egui::Color32::from_rgb(230, 90, 80), "failed"),
                };
                let message = s.message();
                ui.horizontal(|ui| {
                    ui.label(egui::RichText::new(word).color(colour));
                    if message != word {
                        ui.label(message);
                    }
                });
                if let Some(plan) = plan {
                    let ms = |n: usize| n as f64 * 1000.0 / plan.host_rate as f64;
                    ui.label(format!(
                        "{} mode: latency {} samples ({:.1} ms), floor {:.1} ms, underruns {}",
                        if plan.mode == crate::engine::latency::Mode::Live {
                            "Live"
                        } else {
                            "Studio"
                        },
                        plan.total(),
                        ms(plan.total()),
                        ms(plan.floor()),
                        s.underruns.load(Ordering::Relaxed)
                    ))
                    .on_hover_text(plan.describe());
                    ui.label(
                        egui::RichText::new("Bounces use this mode; Studio sounds best.")
                            .small()
                            .weak(),
                    );
                }
                let device = s.device();
                if !device.is_empty() {
                    ui.label(format!("device: {device}"));
                }
                ui.label(format!("worker: {}", s.priority()));
            }
            None => {
                ui.label("not active");
            }
        }
    }

    /// The two loading rows, first in the window so they never move.
    fn load_rows(&mut self, ui: &mut egui::Ui) {
        egui::Grid::new("load").num_columns(3).show(ui, |ui| {
            ui.label("Model file");
            ui.add_sized(
                [320.0, 20.0],
                egui::TextEdit::singleline(&mut self.model_path),
            );
            ui.horizontal(|ui| {
                if ui.button("Load model").clicked() {
                    let m = self.model_path.trim().to_owned();
                    self.load_model(&m);
                }
                if ui.button("Built-in").clicked() {
                    self.load_model(crate::models::BUILTIN_ID);
                }
                if ui
                    .button("Voice")
                    .on_hover_text("the built-in voice: pitch and formant shift, no model")
                    .clicked()
                {
                    self.load_model(crate::voice::BUILTIN_VOICE_ID);
                }
            });
            ui.end_row();
            ui.label("Licence file");
            ui.add_sized(
                [320.0, 20.0],
                egui::TextEdit::singleline(&mut self.licence_path),
            );
            if ui.button("Load licence").clicked() {
                self.load_licence_file();
            }
            ui.end_row();
        });
    }

    fn load_licence_file(&mut self) {
        let path = std::path::PathBuf::from(self.licence_path.trim());
        match &self.store {
            Some(store) => match LoadedTrack::load_file(store, &path) {
                Ok(track) => {
                    self.load_track(Some(track));
                    self.refresh();
                }
                Err(e) => self.error = format!("{}: {e}", path.display()),
            },
            None => self.error = "no licence folder on this system".into(),
        }
    }

    fn licence_section(&mut self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new("Track and licence").strong());
        let track = LoadedTrack::parse(&self.params.track.read());
        ui.horizontal(|ui| {
            match &track {
                Some(t) => ui.label(format!(
                    "loaded: {} {} (licence {})",
                    t.title, t.isrc, t.licence
                )),
                None => ui.label("no track loaded"),
            };
            if track.is_some() && ui.button("Unload").clicked() {
                self.load_track(None);
            }
        });
        match self.shared.gate.lock().clone() {
            Some(gate) => {
                let colour = match gate.state() {
                    LicenceState::Valid | LicenceState::NotRequired => {
                        egui::Color32::from_rgb(90, 190, 110)
                    }
                    LicenceState::Grace => egui::Color32::from_rgb(220, 180, 60),
                    LicenceState::Invalid => egui::Color32::from_rgb(230, 90, 80),
                };
                let prefix = match gate.lapse_in() {
                    // Lapsed while running: it ends at the next silence, or at the latest then.
                    Some(left) => format!(
                        "the AI path ends at the next 2 s of silence, at the latest in {}:{:02}: ",
                        (left / 60.0) as u64,
                        (left % 60.0) as u64
                    ),
                    None if gate.state().allows()
                        && !gate.track_mismatch()
                        && !gate.quiet_unmatched() =>
                    {
                        String::new()
                    }
                    None => "AI path off, dry signal: ".into(),
                };
                ui.label(egui::RichText::new(format!("{prefix}{}", gate.reason())).color(colour));
            }
            None => {
                ui.label("this model needs no licence");
            }
        }
        ui.horizontal(|ui| {
            ui.label("Cached licences");
            if ui.button("Refresh").clicked() {
                self.refresh();
            }
        });
        let mut load = None;
        egui::ScrollArea::vertical()
            .max_height(160.0)
            .show(ui, |ui| {
                if self.rows.is_empty() {
                    ui.label(match &self.store {
                        Some(s) => format!("none in {}", s.root().display()),
                        None => "no licence folder on this system".into(),
                    });
                }
                for row in &self.rows {
                    ui.horizontal(|ui| {
                        if ui
                            .add_enabled(row.usable, egui::Button::new("Load"))
                            .clicked()
                        {
                            load = Some(row.id.clone());
                        }
                        ui.label(&row.text);
                    });
                }
            });
        if let (Some(id), Some(store)) = (load, &self.store) {
            let track = LoadedTrack::from_cache(store, &id);
            self.load_track(Some(track));
        }
    }
}

impl NiceEguiApp for RefrainEditor {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui);
        self.refresh();
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        egui::Frame::new()
            .inner_margin(12.0)
            .show(ui, |ui| self.contents(ui));
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}

impl RefrainEditor {
    fn contents(&mut self, ui: &mut egui::Ui) {
        ui.heading("Refrain");
        ui.separator();
        self.load_rows(ui);
        if !self.error.is_empty() {
            ui.label(egui::RichText::new(&self.error).color(egui::Color32::from_rgb(230, 90, 80)));
        }
        ui.separator();
        self.model_section(ui);
        ui.separator();
        if let Some(gui) = self.gui.clone() {
            let setter = gui.param_setter();
            ui.horizontal(|ui| {
                ui.label("Mix");
                ui.add(ParamSlider::for_param(&self.params.mix, &setter).with_width(180.0));
                ui.label("Mode");
                ui.add(ParamSlider::for_param(&self.params.mode, &setter).with_width(90.0));
            });
            ui.horizontal(|ui| {
                ui.label("Notes out");
                ui.add(ParamSlider::for_param(&self.params.notes, &setter).with_width(90.0));
                let mut bends = self.params.note_bends.value();
                if ui
                    .checkbox(&mut bends, "Pitch bends")
                    .on_hover_text("each note on a MIDI channel of its own, bent to its pitch (2-semitone range)")
                    .changed()
                {
                    setter.begin_set_parameter(&self.params.note_bends);
                    setter.set_parameter(&self.params.note_bends, bends);
                    setter.end_set_parameter(&self.params.note_bends);
                }
                let mut bypass = self.params.bypass.value();
                if ui.checkbox(&mut bypass, "Bypass").changed() {
                    setter.begin_set_parameter(&self.params.bypass);
                    setter.set_parameter(&self.params.bypass, bypass);
                    setter.end_set_parameter(&self.params.bypass);
                }
            });
        }
        if let Some(gui) = self.gui.clone() {
            let setter = gui.param_setter();
            ui.horizontal(|ui| {
                ui.label("Note onset");
                ui.add(ParamSlider::for_param(&self.params.note_onset, &setter).with_width(70.0));
                ui.label("frame");
                ui.add(ParamSlider::for_param(&self.params.note_frame, &setter).with_width(70.0));
                ui.label("min length");
                ui.add(ParamSlider::for_param(&self.params.note_min_ms, &setter).with_width(80.0));
            });
        }
        if let Some(n) = self.shared.notes.lock().clone() {
            let r = Ordering::Relaxed;
            let rate = self.shared.plan.lock().map_or(48_000, |p| p.host_rate) as f64;
            let failed = n.failed.load(Ordering::Acquire);
            let recent: Vec<String> = n
                .recent()
                .into_iter()
                .map(crate::notes::tracker::key_name)
                .collect();
            ui.label(if failed {
                n.message()
            } else {
                format!(
                    "notes out: {} sent, {} after their audio (at most {:.0} ms later); last: {}",
                    n.notes_sent.load(r),
                    n.late_notes.load(r),
                    n.worst_late.load(r) as f64 * 1000.0 / rate,
                    if recent.is_empty() {
                        "-".to_owned()
                    } else {
                        recent.join(" ")
                    }
                )
            })
            .on_hover_text(
                "Studio: each note leaves with the audio it came from. Live: with it, or as soon \
                 as it is confirmed (about 0.3 to 0.8 s after its onset).",
            );
        }
        if self.shared.plan.lock().is_some_and(|p| p.spec.stems > 1) {
            ui.separator();
            self.stems_section(ui);
        }
        let voice = self.shared.voice.lock().clone();
        if let Some((voice, built_in)) = voice {
            ui.separator();
            self.voice_section(ui, &voice, built_in);
        }
        ui.separator();
        self.licence_section(ui);
    }

    /// The voice: its controls, the pitch it hears and whether its gate is open.
    fn voice_section(
        &mut self,
        ui: &mut egui::Ui,
        voice: &crate::voice::controls::VoiceControls,
        built_in: bool,
    ) {
        let Some(gui) = self.gui.clone() else {
            return;
        };
        let setter = gui.param_setter();
        let v = &self.params.voice;
        let (hz, open) = voice.heard();
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Voice").strong());
            ui.label(if hz > 0.0 {
                format!("hears {hz:.1} Hz ({})", note_name(hz))
            } else {
                "hears no pitch".to_owned()
            });
            if !built_in {
                let (colour, word) = if open {
                    (egui::Color32::from_rgb(90, 190, 110), "singing")
                } else {
                    (egui::Color32::from_gray(140), "gate closed")
                };
                ui.label(egui::RichText::new(word).color(colour))
                    .on_hover_text("between phrases the converted voice fades out");
            }
        });
        egui::Grid::new("voice").num_columns(4).show(ui, |ui| {
            ui.label("Pitch");
            ui.add(ParamSlider::for_param(&v.pitch, &setter).with_width(150.0));
            if built_in {
                ui.label("Formant");
                ui.add(ParamSlider::for_param(&v.formant, &setter).with_width(150.0));
            } else {
                ui.label("Index rate");
                ui.add(ParamSlider::for_param(&v.index_rate, &setter).with_width(150.0));
            }
            ui.end_row();
            ui.label("Gain");
            ui.add(ParamSlider::for_param(&v.gain, &setter).with_width(150.0));
            if !built_in {
                ui.label("Gate");
                ui.add(ParamSlider::for_param(&v.gate, &setter).with_width(150.0));
                ui.end_row();
                ui.label("Speaker");
                ui.add(ParamSlider::for_param(&v.speaker, &setter).with_width(150.0));
                ui.label("Envelope").on_hover_text(
                    "how much of the voice model's own loudness it keeps; at 0 it follows yours",
                );
                ui.add(ParamSlider::for_param(&v.envelope, &setter).with_width(150.0));
            }
            ui.end_row();
        });
    }

    /// The stems: gain, mute and solo in the remix, and each stem output's level.
    fn stems_section(&mut self, ui: &mut egui::Ui) {
        let Some(gui) = self.gui.clone() else {
            return;
        };
        let setter = gui.param_setter();
        let status = self.shared.status.lock().clone();
        ui.label(egui::RichText::new("Stems").strong())
            .on_hover_text("each stem plays on its own output; the main output is the remix");
        egui::Grid::new("stems").num_columns(5).show(ui, |ui| {
            for (s, (stem, name)) in self
                .params
                .stems()
                .into_iter()
                .zip(crate::separation::processor::PORTS)
                .enumerate()
            {
                let mut title = name.to_owned();
                title[..1].make_ascii_uppercase();
                ui.label(title);
                ui.add(ParamSlider::for_param(&stem.gain, &setter).with_width(150.0));
                for (param, word) in [(&stem.mute, "Mute"), (&stem.solo, "Solo")] {
                    let mut on = param.value();
                    if ui.checkbox(&mut on, word).changed() {
                        setter.begin_set_parameter(param);
                        setter.set_parameter(param, on);
                        setter.end_set_parameter(param);
                    }
                }
                let peak = status.as_ref().map_or(0.0, |st| st.take_stem_peak(s));
                let db = 20.0 * peak.max(1e-6).log10();
                let fill = ((db + 60.0) / 60.0).clamp(0.0, 1.0);
                ui.add(
                    egui::ProgressBar::new(fill)
                        .desired_width(120.0)
                        .text(if peak > 1e-6 {
                            format!("{db:.0} dB")
                        } else {
                            "-inf".into()
                        }),
                );
                ui.end_row();
            }
        });
    }
}

/// A frequency as the nearest note and its distance in cents (A4 = 440 Hz).
fn note_name(hz: f32) -> String {
    let midi = 69.0 + 12.0 * (hz / 440.0).log2();
    let key = midi.round();
    let cents = ((midi - key) * 100.0).round() as i32;
    format!(
        "{} {cents:+} ct",
        crate::notes::tracker::key_name(key.clamp(0.0, 127.0) as u8)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::licence::claims::{Claims, ModelGrant};

    fn claims(id: &str, title: &str) -> Claims {
        let now = 1_795_219_200 + 86_400;
        let model = ModelGrant {
            id: "m".into(),
            sha256: "ab".repeat(32),
        };
        let mut c = Claims::example(
            "Northern Records",
            id,
            model,
            now,
            now - 86_400 + 30 * 86_400,
        );
        c.track.title = title.into();
        c
    }

    #[test]
    fn the_editor_lists_cached_licences_and_marks_unusable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (store, registry) = crate::testkit::development_store(dir.path());
        let now = 1_795_219_200 + 86_400;
        let key = crate::testkit::certified_issuer(&registry, "Northern Records", "GBAYE", now);
        let device = store.device().unwrap().id;
        let sign = |id: &str, title: &str| {
            let mut c = claims(id, title);
            c.devices = vec![device.clone()];
            crate::licence::issue::sign_licence(&key, &c).unwrap()
        };
        store.install_licence(&sign("a-good", "Song A")).unwrap();
        store.install_licence(&sign("b-bad", "Song B")).unwrap();
        // The registry withdraws the second after it was cached.
        let (_, list) = registry
            .revoke(
                &[],
                &[],
                &[crate::licence::revocation::RevokedLicence {
                    key: key.kid.clone(),
                    id: "b-bad".into(),
                }],
                now,
            )
            .unwrap();
        store.install_revocations(&list).unwrap();
        let rows = policy::listing_at(&store, now).licences;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "a-good");
        assert!(rows[0].usable);
        assert!(
            rows[0].text.starts_with(
                "Aurora Vale - Song A (GBAYE2600001), until 2026-12-21 (29 days left), uses \
                 remix, live; issued by Northern Records: ISRC prefixes GBAYE"
            ),
            "{}",
            rows[0].text
        );
        assert!(!rows[1].usable);
        assert!(
            rows[1].text.contains("has been revoked"),
            "{}",
            rows[1].text
        );

        let t = LoadedTrack::from_cache(&store, "a-good");
        assert_eq!(
            (t.isrc.as_str(), t.title.as_str()),
            ("GBAYE2600001", "Song A")
        );
        assert_eq!(LoadedTrack::from_cache(&store, "missing").title, "");
    }
}
