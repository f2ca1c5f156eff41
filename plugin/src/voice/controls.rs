//! The voice settings the performer moves, from the audio thread to the worker.
//!
//! The plugin's parameters arrive with each block on the audio thread; the voice runs on the
//! worker. [`VoiceControls`] is a handful of atomics between the two: the audio thread stores
//! (real-time safe), the worker loads once per hop and smooths what is continuous itself.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The voice settings, as the plugin's parameters hold them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoiceSettings {
    /// Pitch shift in semitones, -24..+24 (the formants stay where they are).
    pub pitch_semitones: f32,
    /// Formant shift in semitones, -12..+12 (the built-in transform; RVC models ignore it).
    pub formant_semitones: f32,
    /// How much of each content frame comes from the voice's training features, 0..1 (RVC's
    /// `index_rate`; only for a voice model that ships its features).
    pub index_rate: f32,
    /// Which speaker of a multi-speaker voice model.
    pub speaker: u32,
    /// The converted voice's level, dB (-24..+12).
    pub output_gain_db: f32,
    /// Below this input level (dBFS) the voice gate treats the input as not singing, unless
    /// the voice-activity model hears a voice.
    pub gate_threshold_db: f32,
    /// How much of a voice model's own loudness envelope the converted voice keeps, 0..1 (RVC's
    /// `rms_mix_rate`): 1 keeps the model's, 0 gives it the singer's (the input's).
    pub envelope: f32,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            pitch_semitones: 0.0,
            formant_semitones: 0.0,
            index_rate: 0.5,
            speaker: 0,
            output_gain_db: 0.0,
            gate_threshold_db: -50.0,
            envelope: 1.0,
        }
    }
}

impl VoiceSettings {
    /// The pitch shift as a frequency ratio.
    pub fn pitch_ratio(&self) -> f32 {
        2f32.powf(self.pitch_semitones.clamp(-24.0, 24.0) / 12.0)
    }

    /// The output gain as a factor.
    pub fn output_gain(&self) -> f32 {
        10f32.powf(self.output_gain_db.clamp(-24.0, 12.0) / 20.0)
    }

    /// The formant shift as a frequency ratio.
    pub fn formant_ratio(&self) -> f32 {
        2f32.powf(self.formant_semitones.clamp(-12.0, 12.0) / 12.0)
    }
}

/// [`VoiceSettings`] shared between the audio thread (stores) and the worker (loads), and what
/// the voice reports back for the editor (the pitch it hears, whether the gate is open).
#[derive(Debug)]
pub struct VoiceControls {
    heard_pitch: AtomicU32,
    gate_open: AtomicBool,
    pitch: AtomicU32,
    formant: AtomicU32,
    index_rate: AtomicU32,
    speaker: AtomicU32,
    gain: AtomicU32,
    gate: AtomicU32,
    envelope: AtomicU32,
}

impl Default for VoiceControls {
    fn default() -> Self {
        VoiceControls::new(VoiceSettings::default())
    }
}

impl VoiceControls {
    pub fn new(s: VoiceSettings) -> VoiceControls {
        let c = VoiceControls {
            heard_pitch: AtomicU32::new(0),
            gate_open: AtomicBool::new(false),
            pitch: AtomicU32::new(0),
            formant: AtomicU32::new(0),
            index_rate: AtomicU32::new(0),
            speaker: AtomicU32::new(0),
            gain: AtomicU32::new(0),
            gate: AtomicU32::new(0),
            envelope: AtomicU32::new(0),
        };
        c.store(&s);
        c
    }

    /// Publishes new settings. Real-time safe (relaxed atomic stores).
    pub fn store(&self, s: &VoiceSettings) {
        let put = |a: &AtomicU32, v: f32| a.store(v.to_bits(), Ordering::Relaxed);
        put(&self.pitch, s.pitch_semitones);
        put(&self.formant, s.formant_semitones);
        put(&self.index_rate, s.index_rate);
        self.speaker.store(s.speaker, Ordering::Relaxed);
        put(&self.gain, s.output_gain_db);
        put(&self.gate, s.gate_threshold_db);
        put(&self.envelope, s.envelope);
    }

    /// The voice reports the singer's pitch (Hz, 0 when unvoiced). Real-time safe.
    pub fn report_pitch(&self, hz: f32) {
        self.heard_pitch.store(hz.to_bits(), Ordering::Relaxed);
    }

    /// The voice reports whether its gate is open. Real-time safe.
    pub fn report_gate(&self, open: bool) {
        self.gate_open.store(open, Ordering::Relaxed);
    }

    /// The singer's pitch the voice last heard (Hz, 0 when unvoiced) and whether its gate is
    /// open.
    pub fn heard(&self) -> (f32, bool) {
        (
            f32::from_bits(self.heard_pitch.load(Ordering::Relaxed)),
            self.gate_open.load(Ordering::Relaxed),
        )
    }

    /// The settings now. Real-time safe.
    pub fn load(&self) -> VoiceSettings {
        let get = |a: &AtomicU32| f32::from_bits(a.load(Ordering::Relaxed));
        VoiceSettings {
            pitch_semitones: get(&self.pitch),
            formant_semitones: get(&self.formant),
            index_rate: get(&self.index_rate),
            speaker: self.speaker.load(Ordering::Relaxed),
            output_gain_db: get(&self.gain),
            gate_threshold_db: get(&self.gate),
            envelope: get(&self.envelope),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_ratios_are_clamped() {
        let s = VoiceSettings {
            pitch_semitones: 7.0,
            formant_semitones: -3.0,
            index_rate: 0.75,
            speaker: 3,
            output_gain_db: -6.0,
            gate_threshold_db: -40.0,
            envelope: 0.25,
        };
        let c = VoiceControls::new(s);
        assert_eq!(c.load(), s);
        assert!((s.pitch_ratio() - 1.498_307).abs() < 1e-5);
        let wild = VoiceSettings {
            pitch_semitones: 99.0,
            ..s
        };
        assert!((wild.pitch_ratio() - 4.0).abs() < 1e-5);
    }
}
