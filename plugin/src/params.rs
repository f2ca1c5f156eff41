//! Parameters and persisted state. Parameter ids are stable: hosts store automation by them.

use crate::engine::latency::Mode;
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
        }
    }
}
