//! Synthesised demo and test music: no copyrighted audio anywhere in the project.
//!
//! [`song`] renders a short song sketch (chords of soft saws, a bass line, a plucked melody and
//! hi-hat noise) whose key, progression, tempo and melody come from a seed, so two seeds give
//! two recognisably different "tracks" for the fingerprint tests and the licence demo.

use std::f64::consts::TAU;

/// A tiny deterministic generator (numerical recipes LCG); the same seed, the same song.
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.next_u32() as f32 / (1u64 << 31) as f32 - 1.0
    }
}

fn midi_hz(note: f64) -> f64 {
    440.0 * 2f64.powf((note - 69.0) / 12.0)
}

/// Stereo song sketch, planar, `seconds` long at `rate`. Peak level about -3 dBFS.
pub fn song(seed: u64, seconds: f64, rate: u32) -> Vec<Vec<f32>> {
    let mut rng = Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66);
    for _ in 0..4 {
        rng.next_u32();
    }
    // Key, tempo and a progression of eight chords (scale degrees of a major key).
    let key = 45.0 + (rng.next_u32() % 12) as f64;
    let bpm = 84.0 + (rng.next_u32() % 48) as f64;
    let degrees: [[f64; 3]; 7] = [
        [0.0, 4.0, 7.0],
        [2.0, 5.0, 9.0],
        [4.0, 7.0, 11.0],
        [5.0, 9.0, 12.0],
        [7.0, 11.0, 14.0],
        [9.0, 12.0, 16.0],
        [11.0, 14.0, 17.0],
    ];
    let progression: Vec<usize> = (0..8).map(|_| (rng.next_u32() % 7) as usize).collect();
    let scale = [0.0, 2.0, 4.0, 5.0, 7.0, 9.0, 11.0, 12.0];
    let melody: Vec<f64> = (0..32)
        .map(|_| scale[(rng.next_u32() % 8) as usize] + 12.0)
        .collect();

    let n = (seconds * rate as f64) as usize;
    let mut l = vec![0.0f32; n];
    let mut r = vec![0.0f32; n];
    let beat_s = 60.0 / bpm;
    let mut noise = Lcg(seed ^ 0xABCD);
    for i in 0..n {
        let t = i as f64 / rate as f64;
        let beat = t / beat_s;
        let bar = (beat / 4.0) as usize;
        let chord = degrees[progression[bar % 8]];
        let mut pad = 0.0f64;
        for (k, d) in chord.iter().enumerate() {
            let phase = (t * midi_hz(key + 12.0 + d)).fract();
            pad += (2.0 * phase - 1.0) * 0.07 * (1.0 + 0.15 * k as f64);
        }
        let bass = (TAU * t * midi_hz(key - 12.0 + chord[0])).sin() * 0.22;
        let step = (beat * 2.0) as usize;
        let in_step = (beat * 2.0).fract() * beat_s / 2.0;
        let lead_note = key + melody[step % 32];
        let lead = (TAU * t * midi_hz(lead_note)).sin() * 0.18 * (-in_step * 6.0).exp();
        let hat_pos = (beat * 2.0).fract();
        let hat = if hat_pos < 0.04 {
            noise.next_f32() as f64 * 0.12 * (1.0 - hat_pos / 0.04)
        } else {
            0.0
        };
        let s = pad + bass;
        l[i] = (s * 0.95 + lead * 1.1 + hat * 0.7) as f32;
        r[i] = (s * 1.05 + lead * 0.9 + hat) as f32;
    }
    vec![l, r]
}

/// A stereo sine, planar: left at `amp`, right at half the level and inverted (so a swapped or
/// summed channel shows). The tests' plain signal.
pub fn sine(len: usize, rate: f64, freq: f64, amp: f32) -> Vec<Vec<f32>> {
    let l: Vec<f32> = (0..len)
        .map(|i| amp * (TAU * freq * i as f64 / rate).sin() as f32)
        .collect();
    let r = l.iter().map(|x| -0.5 * x).collect();
    vec![l, r]
}

/// Silence with a unit impulse at `at` in every channel.
pub fn impulse(channels: usize, len: usize, at: usize) -> Vec<Vec<f32>> {
    let mut x = vec![vec![0.0f32; len]; channels];
    for c in x.iter_mut() {
        c[at] = 1.0;
    }
    x
}

/// The largest sample-to-sample step: what a click is made of.
pub fn max_step(x: &[f32]) -> f32 {
    x.windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

/// Index of the largest magnitude.
pub fn peak_index(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn songs_are_deterministic_different_and_in_range() {
        let a = song(1, 2.0, 48_000);
        let b = song(1, 2.0, 48_000);
        let c = song(2, 2.0, 48_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let peak = a.iter().flatten().fold(0.0f32, |m, &x| m.max(x.abs()));
        assert!(peak > 0.2 && peak < 1.0, "peak {peak}");
    }
}
