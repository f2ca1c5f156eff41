//! Drums, bass and other out of the accompaniment, by DSP: harmonic/percussive separation by
//! median filtering (Fitzgerald 2010) with soft masks, then the harmonic part below ~250 Hz is
//! the bass. Drums = accompaniment x percussive mask; bass = accompaniment x harmonic mask x
//! low band; other = the rest. The three masks sum to 1 in every bin, so drums + bass + other is
//! the accompaniment exactly, and with the vocals the four stems sum to the mix.
//!
//! A frame's harmonic part is the median over time of its bin ([`TimeMedian`]: some frames
//! before it, the frame, some after it), so a frame leaves `ahead` frames after it came in.
//! Files and Studio centre a 17-frame median on the frame ([`CENTRED`]); Live looks one frame
//! ahead and six behind ([`LIVE`]), chosen from the measured curve in README: a long median
//! that cannot look ahead takes a note's first frames for drums, a short one keeps up.

use realfft::num_complex::Complex32;
use std::collections::VecDeque;

/// The frames of the median over time (harmonic: sustained in time) around its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeMedian {
    /// Frames before the frame.
    pub behind: usize,
    /// Frames after it: the split's delay.
    pub ahead: usize,
}

impl TimeMedian {
    /// Frames in the median.
    pub fn frames(&self) -> usize {
        self.behind + 1 + self.ahead
    }

    /// Cut to [`MAX_TIME_MEDIAN`] frames, `ahead` kept first.
    pub fn bounded(self) -> TimeMedian {
        let ahead = self.ahead.min(MAX_TIME_MEDIAN - 1);
        TimeMedian {
            ahead,
            behind: self.behind.min(MAX_TIME_MEDIAN - 1 - ahead),
        }
    }
}

/// Files and Studio: 17 frames (0.39 s at 44.1 kHz) centred on the frame, 8 ahead (186 ms).
pub const CENTRED: TimeMedian = TimeMedian {
    behind: 8,
    ahead: 8,
};
/// Live: 6 frames behind and 1 ahead (23 ms; README: the split's look-ahead curve).
pub const LIVE: TimeMedian = TimeMedian {
    behind: 6,
    ahead: 1,
};
/// The most frames a median may span (a bound on what a frame holds back).
pub const MAX_TIME_MEDIAN: usize = 65;
/// Bins in the median over frequency (percussive: broadband in a frame), odd: 17 bins = 183 Hz.
pub const FREQ_MEDIAN: usize = 17;
/// Where the bass band ends, and how wide its crossover is (raised cosine), in Hz.
pub const BASS_EDGE_HZ: f32 = 250.0;
pub const BASS_CROSSOVER_HZ: f32 = 60.0;
/// The soft masks' exponent (Wiener-like).
const POWER: i32 = 2;

/// The three DSP stems, in output order.
pub const NAMES: [&str; 3] = ["drums", "bass", "other"];

/// One frame of the accompaniment waiting for its neighbours.
struct Held {
    spectra: Vec<Vec<Complex32>>,
    /// Per channel, the magnitude of every bin.
    magnitude: Vec<Vec<f32>>,
}

/// Splits a stream of accompaniment frames into drums, bass and other.
pub struct FourStems {
    bins: usize,
    channels: usize,
    /// The low band's weight per bin (1 below the edge, 0 above, a raised cosine between).
    low: Vec<f32>,
    held: VecDeque<Held>,
    /// The median over time.
    time: TimeMedian,
    /// Frames pushed and emitted.
    pushed: usize,
    emitted: usize,
    sort: Vec<f32>,
}

impl FourStems {
    /// For spectra of `bins` bins at `rate` Hz with an FFT of `fft` points, with the median
    /// over time `time` ([`TimeMedian::bounded`]).
    pub fn new(bins: usize, fft: usize, rate: u32, channels: usize, time: TimeMedian) -> FourStems {
        let time = time.bounded();
        let hz_per_bin = rate as f32 / fft as f32;
        let low = (0..bins)
            .map(|k| {
                let f = k as f32 * hz_per_bin;
                let x = (f - (BASS_EDGE_HZ - BASS_CROSSOVER_HZ / 2.0)) / BASS_CROSSOVER_HZ;
                if x <= 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    0.5 + 0.5 * (std::f32::consts::PI * x).cos()
                }
            })
            .collect();
        FourStems {
            bins,
            channels,
            low,
            held: VecDeque::new(),
            time,
            pushed: 0,
            emitted: 0,
            sort: Vec::with_capacity(time.frames().max(FREQ_MEDIAN)),
        }
    }

    /// Frames of delay: a frame leaves this many frames after it came in.
    pub fn delay(&self) -> usize {
        self.time.ahead
    }

    /// Takes the next accompaniment frame (per channel, its complex spectrum) and, once its
    /// neighbours are in, hands the drums, bass and other spectra of an earlier frame to
    /// `out(stem, spectra)`.
    pub fn push(
        &mut self,
        spectra: Vec<Vec<Complex32>>,
        out: &mut impl FnMut(usize, &[Vec<Complex32>]),
    ) {
        let magnitude = spectra
            .iter()
            .map(|s| s.iter().map(|c| c.norm()).collect())
            .collect();
        self.held.push_back(Held { spectra, magnitude });
        self.pushed += 1;
        while self.pushed - self.emitted > self.delay() {
            self.emit_next(out);
        }
    }

    /// The stream ended: every frame still held, its medians over what there is.
    pub fn finish(&mut self, out: &mut impl FnMut(usize, &[Vec<Complex32>])) {
        while self.emitted < self.pushed {
            self.emit_next(out);
        }
    }

    // Channels and bins index the held frames, the masks and the three stems at once.
    #[allow(clippy::needless_range_loop)]
    fn emit_next(&mut self, out: &mut impl FnMut(usize, &[Vec<Complex32>])) {
        // `held` starts at frame emitted - (frames kept behind it).
        let first = self.pushed - self.held.len();
        let centre = self.emitted - first;
        let lo = centre.saturating_sub(self.time.behind);
        let hi = (centre + self.time.ahead + 1).min(self.held.len());
        let mut stems = vec![vec![vec![Complex32::default(); self.bins]; self.channels]; 3];
        let fh = FREQ_MEDIAN / 2;
        for c in 0..self.channels {
            let frame = &self.held[centre];
            let mag = &frame.magnitude[c];
            for k in 0..self.bins {
                self.sort.clear();
                self.sort
                    .extend((lo..hi).map(|f| self.held[f].magnitude[c][k]));
                let h = median(&mut self.sort);
                self.sort.clear();
                let (a, b) = (k.saturating_sub(fh), (k + fh + 1).min(self.bins));
                self.sort.extend_from_slice(&mag[a..b]);
                let p = median(&mut self.sort);
                let (hp, pp) = (h.powi(POWER), p.powi(POWER));
                let percussive = if hp + pp > 0.0 { pp / (hp + pp) } else { 0.5 };
                let harmonic = 1.0 - percussive;
                let s = frame.spectra[c][k];
                stems[0][c][k] = s * percussive;
                stems[1][c][k] = s * (harmonic * self.low[k]);
                stems[2][c][k] = s * (harmonic * (1.0 - self.low[k]));
            }
        }
        for (i, spectra) in stems.iter().enumerate() {
            out(i, spectra);
        }
        self.emitted += 1;
        // Keep the frames the next one's median still needs.
        while self.emitted - (self.pushed - self.held.len()) > self.time.behind {
            self.held.pop_front();
        }
    }
}

fn median(v: &mut [f32]) -> f32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINS: usize = 2049;
    const RATE: u32 = 44_100;
    const FFT: usize = 4096;

    /// Energy each stem gets of a stream of `frames` frames drawn by `draw(frame, bin)`.
    fn energies(frames: usize, time: TimeMedian, draw: impl Fn(usize, usize) -> f32) -> [f64; 3] {
        let mut split = FourStems::new(BINS, FFT, RATE, 1, time);
        let mut e = [0.0f64; 3];
        let mut out = |stem: usize, spectra: &[Vec<Complex32>]| {
            e[stem] += spectra[0].iter().map(|c| c.norm_sqr() as f64).sum::<f64>();
        };
        for f in 0..frames {
            let spectrum = (0..BINS).map(|k| Complex32::new(draw(f, k), 0.0)).collect();
            split.push(vec![spectrum], &mut out);
        }
        split.finish(&mut out);
        e
    }

    fn db(a: f64, b: f64) -> f64 {
        10.0 * (a / b.max(1e-30)).log10()
    }

    #[test]
    fn a_sustained_low_tone_is_bass_a_sustained_high_tone_is_other_and_clicks_are_drums() {
        let hz = RATE as f32 / FFT as f32;
        let bin = |f: f32| (f / hz).round() as usize;
        let causal = TimeMedian {
            behind: 8,
            ahead: 0,
        };
        for ahead in [causal, LIVE, CENTRED] {
            // 60 Hz held for the whole stream.
            let bass = energies(80, ahead, |_, k| if k == bin(60.0) { 1.0 } else { 0.0 });
            assert!(db(bass[1], bass[0] + bass[2]) > 30.0, "{ahead:?}: {bass:?}");
            // 1 kHz held.
            let other = energies(80, ahead, |_, k| if k == bin(1_000.0) { 1.0 } else { 0.0 });
            assert!(
                db(other[2], other[0] + other[1]) > 30.0,
                "{ahead:?}: {other:?}"
            );
            // A broadband click every 20 frames.
            let drums = energies(80, ahead, |f, _| if f % 20 == 10 { 1.0 } else { 0.0 });
            assert!(
                db(drums[0], drums[1] + drums[2]) > 30.0,
                "{ahead:?}: {drums:?}"
            );
        }
    }

    #[test]
    fn the_three_stems_sum_to_the_accompaniment_and_every_frame_comes_out_once() {
        for (behind, ahead) in [(8, 0), (6, 1), (8, 8), (0, 16), (100, 100)] {
            sums_for(TimeMedian { behind, ahead });
        }
    }

    fn sums_for(time: TimeMedian) {
        let mut split = FourStems::new(BINS, FFT, RATE, 2, time);
        let ahead = time.bounded().ahead;
        let frames = 40;
        let input: Vec<Vec<Vec<Complex32>>> = (0..frames)
            .map(|f| {
                (0..2)
                    .map(|c| {
                        (0..BINS)
                            .map(|k| {
                                let x = ((f * 31 + k * 7 + c * 3) % 97) as f32 / 97.0 - 0.5;
                                Complex32::new(x, x * 0.3)
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut sums: Vec<Vec<Vec<Complex32>>> = Vec::new();
        let mut counts = [0usize; 3];
        let mut out = |stem: usize, spectra: &[Vec<Complex32>]| {
            let i = counts[stem];
            counts[stem] += 1;
            if sums.len() <= i {
                sums.push(vec![vec![Complex32::default(); BINS]; 2]);
            }
            for (acc, s) in sums[i].iter_mut().zip(spectra) {
                for (a, v) in acc.iter_mut().zip(s) {
                    *a += v;
                }
            }
        };
        let mut emitted = Vec::new();
        for frame in &input {
            split.push(frame.clone(), &mut out);
            emitted.push(split.emitted);
        }
        split.finish(&mut out);
        assert_eq!(counts, [frames; 3]);
        // A frame leaves exactly `ahead` frames after it came in.
        for (pushed, e) in emitted.iter().enumerate() {
            assert_eq!(*e, (pushed + 1).saturating_sub(ahead), "{time:?}");
        }
        for (sum, x) in sums.iter().zip(&input) {
            for (s, x) in sum.iter().zip(x) {
                for (a, b) in s.iter().zip(x) {
                    assert!((a - b).norm() < 1e-5);
                }
            }
        }
    }
}
