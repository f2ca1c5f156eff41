//! The remix on the main output: each stem's gain, mute and solo (the parameters in
//! [`crate::params::StemParams`]) turned into the gain the engine applies to it, smoothed so
//! that neither automation nor a mute or solo click. The engine ramps each gain linearly across
//! a block from the last block's value; this file moves the values block by block: the gain with
//! its parameter smoother, a mute or solo as a 20 ms linear fade.

use crate::engine::MAX_STEMS;
use crate::params::RefrainParams;

/// How long a mute or solo takes to fade a stem out or in.
pub const SWITCH_FADE_S: f32 = 0.02;

/// Where each stem's mute/solo fade stands (1: heard, 0: silent).
#[derive(Debug, Clone, Copy)]
pub struct StemMix {
    heard: [f32; MAX_STEMS],
}

impl Default for StemMix {
    fn default() -> Self {
        StemMix {
            heard: [1.0; MAX_STEMS],
        }
    }
}

/// Whether each stem is heard under `mute` and `solo`: not muted, and soloed when any is.
pub fn heard(mute: [bool; MAX_STEMS], solo: [bool; MAX_STEMS]) -> [bool; MAX_STEMS] {
    let any_solo = solo.iter().any(|&s| s);
    std::array::from_fn(|s| !mute[s] && (!any_solo || solo[s]))
}

impl StemMix {
    /// The stem gains at the end of a block of `n` samples at `sample_rate`. Real-time safe.
    pub fn next_block(
        &mut self,
        params: &RefrainParams,
        n: usize,
        sample_rate: f32,
    ) -> [f32; MAX_STEMS] {
        let stems = params.stems();
        let gains = std::array::from_fn(|s| stems[s].gain.smoothed.next_step(n as u32));
        let mute = std::array::from_fn(|s| stems[s].mute.value());
        let solo = std::array::from_fn(|s| stems[s].solo.value());
        self.step(gains, heard(mute, solo), n, sample_rate)
    }

    /// Moves each stem's mute/solo fade `n` samples towards `heard` and returns the gains.
    /// Real-time safe.
    pub fn step(
        &mut self,
        gains: [f32; MAX_STEMS],
        heard: [bool; MAX_STEMS],
        n: usize,
        sample_rate: f32,
    ) -> [f32; MAX_STEMS] {
        let step = n as f32 / (SWITCH_FADE_S * sample_rate.max(1.0));
        std::array::from_fn(|s| {
            let target = if heard[s] { 1.0 } else { 0.0 };
            let h = &mut self.heard[s];
            *h = if (*h - target).abs() <= step * 1.001 {
                target
            } else if *h < target {
                *h + step
            } else {
                *h - step
            };
            gains[s] * *h
        })
    }

    /// Jumps to the parameters' values (activation, a reset): nothing fades in.
    pub fn settle(&mut self, params: &RefrainParams) {
        let stems = params.stems();
        let mute = std::array::from_fn(|s| stems[s].mute.value());
        let solo = std::array::from_fn(|s| stems[s].solo.value());
        for (h, t) in self.heard.iter_mut().zip(heard(mute, solo)) {
            *h = if t { 1.0 } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solo_wins_over_the_rest_and_mute_over_solo() {
        let none = [false; MAX_STEMS];
        assert_eq!(heard(none, none), [true; MAX_STEMS]);
        assert_eq!(
            heard(none, [false, true, false, false]),
            [false, true, false, false]
        );
        assert_eq!(
            heard([false, true, false, false], [false, true, true, false]),
            [false, false, true, false]
        );
    }

    #[test]
    fn a_mute_fades_out_over_twenty_milliseconds_and_back_in() {
        let mut mix = StemMix::default();
        let unity = [0.5, 1.0, 1.0, 2.0];
        assert_eq!(mix.step(unity, [true; 4], 64, 48_000.0), unity);
        // Vocals muted: 960 samples at 48 kHz, 15 blocks of 64.
        let muted = [false, true, true, true];
        let fades: Vec<f32> = (0..16)
            .map(|_| mix.step(unity, muted, 64, 48_000.0)[0])
            .collect();
        assert!(fades.windows(2).all(|w| w[1] < w[0] || w[1] == 0.0));
        assert!(fades[13] > 0.0 && fades[14] == 0.0, "{fades:?}");
        assert_eq!(mix.step(unity, muted, 64, 48_000.0)[3], 2.0);
        let back = mix.step(unity, [true; 4], 480, 48_000.0)[0];
        assert!((back - 0.25).abs() < 1e-6, "half-way back in: {back}");
    }
}
