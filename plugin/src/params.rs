//! Parameters and persisted state. Parameter ids are stable: hosts store automation by them.

use crate::engine::latency::Mode;
use crate::notes::tracker::NoteSource;
use nice_plug::prelude::*;
use parking_lot::RwLock;
use std::sync::Arc;

/// The latency-quality setting as a parameter (see [`Mode`]).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeParam {
    /// Latency close to the floor: for playing live and monitoring.
    #[id = "live"]
    #[name = "Live"]
    Live,
    /// A generous inference budget and the best resampler: for mixing.
    #[id = "studio"]
    #[name = "Studio"]
    Studio,
}

impl From<ModeParam> for Mode {
    fn from(m: ModeParam) -> Mode {
        match m {
            ModeParam::Live => Mode::Live,
            ModeParam::Studio => Mode::Studio,
        }
    }
}

/// One stem's controls in the remix on the main output (a separator's stems; other models
/// ignore them). Ids are `<stem>_gain`, `<stem>_mute`, `<stem>_solo`.
#[derive(Params)]
pub struct StemParams {
    /// The stem's level in the remix, smoothed (20 ms).
    #[id = "gain"]
    pub gain: FloatParam,
    #[id = "mute"]
    pub mute: BoolParam,
    /// Any stem soloed: only soloed stems are heard.
    #[id = "solo"]
    pub solo: BoolParam,
}

impl StemParams {
    fn new(stem: &str) -> StemParams {
        StemParams {
            gain: FloatParam::new(
                format!("{stem} Gain"),
                1.0,
                FloatRange::Skewed {
                    min: 0.0,
                    max: util::db_to_gain(12.0),
                    factor: FloatRange::gain_skew_factor(-60.0, 12.0),
                },
            )
            .with_smoother(SmoothingStyle::Linear(20.0))
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
            mute: BoolParam::new(format!("{stem} Mute"), false),
            solo: BoolParam::new(format!("{stem} Solo"), false),
        }
    }
}

/// Where the note output's notes come from.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotesParam {
    #[id = "off"]
    #[name = "Off"]
    Off,
    /// The plugin's input.
    #[id = "input"]
    #[name = "Input"]
    Input,
    /// A separator's stem (no notes with other models).
    #[id = "vocals"]
    #[name = "Vocals"]
    Vocals,
    #[id = "drums"]
    #[name = "Drums"]
    Drums,
    #[id = "bass"]
    #[name = "Bass"]
    Bass,
    #[id = "other"]
    #[name = "Other"]
    Other,
}

impl NotesParam {
    /// The note tracker's source, `None` when notes are off.
    pub fn source(self) -> Option<NoteSource> {
        match self {
            NotesParam::Off => None,
            NotesParam::Input => Some(NoteSource::Input),
            NotesParam::Vocals => Some(NoteSource::Stem(0)),
            NotesParam::Drums => Some(NoteSource::Stem(1)),
            NotesParam::Bass => Some(NoteSource::Stem(2)),
            NotesParam::Other => Some(NoteSource::Stem(3)),
        }
    }
}

/// The voice's controls (the built-in transform and voice models; other models ignore them).
/// Ids are `voice_<name>`. The worker glides between values, so automation never steps.
#[derive(Params)]
pub struct VoiceParams {
    /// Pitch shift, -24..+24 semitones; the formants stay.
    #[id = "pitch"]
    pub pitch: FloatParam,
    /// Formant shift, -12..+12 semitones (the built-in transform).
    #[id = "formant"]
    pub formant: FloatParam,
    /// How much of each frame comes from the voice's training features (a voice model with
    /// an index).
    #[id = "index_rate"]
    pub index_rate: FloatParam,
    /// Which speaker of a multi-speaker voice model.
    #[id = "speaker"]
    pub speaker: IntParam,
    /// The converted voice's level.
    #[id = "gain"]
    pub gain: FloatParam,
    /// Below this level the input counts as not singing unless the voice-activity model hears
    /// a voice; between phrases the converted voice fades out.
    #[id = "gate"]
    pub gate: FloatParam,
    /// How much of a voice model's own loudness envelope the voice keeps (RVC's volume
    /// envelope mix): at 0 it follows the singer's loudness.
    #[id = "envelope"]
    pub envelope: FloatParam,
}

impl Default for VoiceParams {
    fn default() -> Self {
        let semitones = |name: &str, range: f32| {
            FloatParam::new(
                name,
                0.0,
                FloatRange::Linear {
                    min: -range,
                    max: range,
                },
            )
            .with_step_size(0.01)
            .with_unit(" st")
        };
        VoiceParams {
            pitch: semitones("Voice Pitch", 24.0),
            formant: semitones("Voice Formant", 12.0),
            index_rate: FloatParam::new(
                "Voice Index Rate",
                0.5,
                FloatRange::Linear { min: 0.0, max: 1.0 },
            )
            .with_unit(" %")
            .with_value_to_string(formatters::v2s_f32_percentage(0))
            .with_string_to_value(formatters::s2v_f32_percentage()),
            speaker: IntParam::new("Voice Speaker", 0, IntRange::Linear { min: 0, max: 255 }),
            gain: FloatParam::new(
                "Voice Gain",
                0.0,
                FloatRange::Linear {
                    min: -24.0,
                    max: 12.0,
                },
            )
            .with_step_size(0.1)
            .with_unit(" dB"),
            gate: FloatParam::new(
                "Voice Gate",
                -50.0,
                FloatRange::Linear {
                    min: -90.0,
                    max: -20.0,
                },
            )
            .with_step_size(0.5)
            .with_unit(" dB"),
            envelope: FloatParam::new(
                "Voice Envelope",
                1.0,
                FloatRange::Linear { min: 0.0, max: 1.0 },
            )
            .with_unit(" %")
            .with_value_to_string(formatters::v2s_f32_percentage(0))
            .with_string_to_value(formatters::s2v_f32_percentage()),
        }
    }
}

impl VoiceParams {
    /// The settings the voice reads on the worker. Real-time safe.
    pub fn settings(&self) -> crate::voice::controls::VoiceSettings {
        crate::voice::controls::VoiceSettings {
            pitch_semitones: self.pitch.value(),
            formant_semitones: self.formant.value(),
            index_rate: self.index_rate.value(),
            speaker: self.speaker.value().max(0) as u32,
            output_gain_db: self.gain.value(),
            gate_threshold_db: self.gate.value(),
            envelope: self.envelope.value(),
        }
    }
}

#[derive(Params)]
pub struct RefrainParams {
    /// Balance between the latency-aligned dry signal and the model's output.
    #[id = "mix"]
    pub mix: FloatParam,
    /// Soft bypass: the latency-aligned dry signal, reached with the engine's crossfade so the
    /// host's delay compensation and the timing stay the same. The model stops running (its
    /// state keeps moving, cheaply) while bypassed.
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// Live or Studio. Not automatable: a change builds a new chain and reports the new
    /// latency to the host. Bounces use the selected mode.
    #[id = "mode"]
    pub mode: EnumParam<ModeParam>,
    /// Which model runs: `builtin:tone-shaper`, or a model in the models folder by id and
    /// identity (`id@identity`; projects saved earlier may hold a path to a `model.toml`).
    /// Saved with the project so it reopens with the same model on any machine that has it.
    #[persist = "model"]
    pub model: Arc<RwLock<String>>,
    /// The track loaded into this instance (its licence id, ISRC and title as JSON, see
    /// [`crate::licence::gate::LoadedTrack`]); saved with the project so it reopens with the
    /// same track and licence.
    #[persist = "track"]
    pub track: Arc<RwLock<String>>,
    /// Notes out as MIDI (Basic Pitch): off, from the input, or from a separator's stem. Not
    /// automatable: a change builds a new chain (in Studio the latency covers the detector).
    #[id = "notes"]
    pub notes: EnumParam<NotesParam>,
    /// How sure an onset must be (Basic Pitch's onset activation), 0.05..0.95. Not automatable.
    #[id = "note_onset"]
    pub note_onset: FloatParam,
    /// How long a note lasts: while its activation is at least this, 0.05..0.95 (Refrain's
    /// default 0.5; the reference's 0.3 turns strong harmonics into notes). Not automatable.
    #[id = "note_frame"]
    pub note_frame: FloatParam,
    /// Notes must be longer than this, in ms. Not automatable.
    #[id = "note_min_ms"]
    pub note_min_ms: FloatParam,
    /// Pitch bends follow each note's pitch (thirds of a semitone, 2-semitone range), each
    /// note on a MIDI channel of its own (MPE-style). Not automatable.
    #[id = "note_bends"]
    pub note_bends: BoolParam,
    /// A separator's stems, in the order of the stem outputs.
    #[nested(id_prefix = "vocals", group = "Vocals")]
    pub vocals: StemParams,
    #[nested(id_prefix = "drums", group = "Drums")]
    pub drums: StemParams,
    #[nested(id_prefix = "bass", group = "Bass")]
    pub bass: StemParams,
    #[nested(id_prefix = "other", group = "Other")]
    pub other: StemParams,
    /// The voice (the built-in transform or a voice model).
    #[nested(id_prefix = "voice", group = "Voice")]
    pub voice: VoiceParams,
}

impl RefrainParams {
    /// How notes out are found, from the note parameters.
    pub fn note_settings(&self) -> crate::notes::decode::Settings {
        crate::notes::decode::Settings {
            onset_threshold: self.note_onset.value(),
            frame_threshold: self.note_frame.value(),
            min_note_ms: self.note_min_ms.value() as f64,
            pitch_bends: self.note_bends.value(),
            ..Default::default()
        }
    }

    /// The stems' controls, in the order of the stem outputs
    /// ([`crate::separation::processor::PORTS`]).
    pub fn stems(&self) -> [&StemParams; 4] {
        [&self.vocals, &self.drums, &self.bass, &self.other]
    }
}

impl Default for RefrainParams {
    fn default() -> Self {
        RefrainParams {
            mix: FloatParam::new("Mix", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(0))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            mode: EnumParam::new("Mode", ModeParam::Live).non_automatable(),
            model: Arc::new(RwLock::new(crate::models::BUILTIN_ID.to_owned())),
            track: Arc::new(RwLock::new(String::new())),
            notes: EnumParam::new("Notes", NotesParam::Off).non_automatable(),
            note_onset: FloatParam::new(
                "Note Onset Threshold",
                0.5,
                FloatRange::Linear {
                    min: 0.05,
                    max: 0.95,
                },
            )
            .non_automatable(),
            note_frame: FloatParam::new(
                "Note Frame Threshold",
                0.5,
                FloatRange::Linear {
                    min: 0.05,
                    max: 0.95,
                },
            )
            .non_automatable(),
            note_min_ms: FloatParam::new(
                "Minimum Note Length",
                127.7,
                FloatRange::Linear {
                    min: 10.0,
                    max: 1000.0,
                },
            )
            .with_unit(" ms")
            .non_automatable(),
            note_bends: BoolParam::new("Note Pitch Bends", false).non_automatable(),
            vocals: StemParams::new("Vocals"),
            drums: StemParams::new("Drums"),
            bass: StemParams::new("Bass"),
            other: StemParams::new("Other"),
            voice: VoiceParams::default(),
        }
    }
}
