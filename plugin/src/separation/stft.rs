//! Spleeter's spectrogram framing, streamed: analysis of a stream into frames of complex spectra,
//! and overlap-add synthesis back to samples (shared/MODELS.md §7).
//!
//! Exactly as Spleeter frames audio, because the network depends on it: `fft` zeros before the
//! first sample, frames not centred, a periodic Hann window, an **unnormalised** forward FFT
//! (an orthonormal one, or int16-scaled samples, ruins the masks), and on the way back the
//! windowed overlap-add times `hop / sum(w^2)` (2/3 for Hann 4096 / hop 1024), dropping the
//! `fft` samples of padding. With every mask at 1 the output is the input to rounding.

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// The STFT geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub fft: usize,
    pub hop: usize,
}

impl Framing {
    /// Spectrum length: `fft / 2 + 1` bins.
    pub fn bins(&self) -> usize {
        self.fft / 2 + 1
    }

    /// Frames that cover `samples` input samples: every frame overlapping one of them.
    pub fn frames_for(&self, samples: u64) -> u64 {
        (self.fft as u64 + samples).div_ceil(self.hop as u64)
    }
}

/// The periodic Hann window of `n` points.
pub fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos()) as f32)
        .collect()
}

/// Cuts a multichannel stream into frames of spectra.
pub struct Analysis {
    framing: Framing,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    scratch: Vec<Complex32>,
    frame_in: Vec<f32>,
    /// Per channel, the padded stream from the next frame's first sample on.
    pending: Vec<Vec<f32>>,
    /// Input samples received (without the padding).
    received: u64,
    /// Frames made so far.
    made: u64,
}

impl Analysis {
    pub fn new(framing: Framing, channels: usize) -> Analysis {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(framing.fft);
        Analysis {
            framing,
            window: hann(framing.fft),
            scratch: fft.make_scratch_vec(),
            frame_in: vec![0.0; framing.fft],
            fft,
            // Spleeter's `fft` zeros before the first sample.
            pending: vec![vec![0.0; framing.fft]; channels],
            received: 0,
            made: 0,
        }
    }

    /// Appends planar samples (every channel the same length).
    pub fn push(&mut self, planar: &[&[f32]]) {
        for (p, x) in self.pending.iter_mut().zip(planar) {
            p.extend_from_slice(x);
        }
        self.received += planar.first().map_or(0, |c| c.len()) as u64;
    }

    /// Frames still to come once the stream has ended: every frame that overlaps an input
    /// sample, less those made.
    pub fn frames_left_at_end(&self) -> u64 {
        self.framing.frames_for(self.received) - self.made
    }

    /// The next complete frame's spectra, one per channel, into `out` (`bins()` each); false
    /// when there is not a whole frame yet. At the end of the stream, [`Self::finish`] pads.
    pub fn next_frame(&mut self, out: &mut [Vec<Complex32>]) -> bool {
        let n = self.framing.fft;
        if self.pending.first().is_none_or(|p| p.len() < n) {
            return false;
        }
        for (p, spectrum) in self.pending.iter_mut().zip(out.iter_mut()) {
            for ((f, &x), &w) in self.frame_in.iter_mut().zip(&p[..n]).zip(&self.window) {
                *f = x * w;
            }
            spectrum.resize(self.framing.bins(), Complex32::default());
            self.fft
                .process_with_scratch(&mut self.frame_in, spectrum, &mut self.scratch)
                .expect("buffer lengths come from the plan");
            p.drain(..self.framing.hop);
        }
        self.made += 1;
        true
    }

    /// Pads the ended stream with zeros so that the frames still to come are whole.
    pub fn finish(&mut self) {
        let left = self.frames_left_at_end() as usize;
        if left == 0 {
            return;
        }
        let want = (left - 1) * self.framing.hop + self.framing.fft;
        for p in &mut self.pending {
            if p.len() < want {
                p.resize(want, 0.0);
            }
        }
    }
}

/// Overlap-adds frames of spectra back into a stream.
pub struct Synthesis {
    framing: Framing,
    ifft: Arc<dyn ComplexToReal<f32>>,
    scratch: Vec<Complex32>,
    spectrum: Vec<Complex32>,
    frame_out: Vec<f32>,
    /// The synthesis window times the normalisation: the inverse FFT's `1 / fft` and, at each
    /// offset, one over the sum of the squared windows overlapping there (`2/3` everywhere for
    /// Hann 4096 / hop 1024; any hop up to half the window reconstructs exactly).
    weighted: Vec<f32>,
    /// Per channel, the sum of frames from padded sample `start` on.
    acc: Vec<Vec<f32>>,
    start: u64,
    /// Frames added so far.
    added: u64,
}

impl Synthesis {
    pub fn new(framing: Framing, channels: usize) -> Synthesis {
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(framing.fft);
        let window = hann(framing.fft);
        let envelope: Vec<f64> = (0..framing.hop)
            .map(|r| {
                (r..framing.fft)
                    .step_by(framing.hop)
                    .map(|i| window[i] as f64 * window[i] as f64)
                    .sum()
            })
            .collect();
        let weighted = (0..framing.fft)
            .map(|i| (window[i] as f64 / (envelope[i % framing.hop] * framing.fft as f64)) as f32)
            .collect();
        Synthesis {
            framing,
            weighted,
            scratch: ifft.make_scratch_vec(),
            spectrum: vec![Complex32::default(); framing.bins()],
            frame_out: vec![0.0; framing.fft],
            ifft,
            acc: vec![Vec::new(); channels],
            start: 0,
            added: 0,
        }
    }

    /// Adds the next frame: for each channel, its spectrum times `mask(channel, bin)`.
    pub fn add(&mut self, spectra: &[Vec<Complex32>], mask: impl Fn(usize, usize) -> f32) {
        let n = self.framing.fft;
        let at = (self.added * self.framing.hop as u64 - self.start) as usize;
        for (c, (spectrum, acc)) in spectra.iter().zip(self.acc.iter_mut()).enumerate() {
            for (k, (o, s)) in self.spectrum.iter_mut().zip(spectrum).enumerate() {
                *o = s * mask(c, k);
            }
            // A real signal's spectrum is real at 0 Hz and at Nyquist.
            self.spectrum[0].im = 0.0;
            if let Some(last) = self.spectrum.last_mut() {
                last.im = 0.0;
            }
            self.ifft
                .process_with_scratch(&mut self.spectrum, &mut self.frame_out, &mut self.scratch)
                .expect("buffer lengths come from the plan");
            if acc.len() < at + n {
                acc.resize(at + n, 0.0);
            }
            for ((a, &y), &w) in acc[at..at + n]
                .iter_mut()
                .zip(&self.frame_out)
                .zip(&self.weighted)
            {
                *a += y * w;
            }
        }
        self.added += 1;
    }

    /// Moves out the samples no later frame touches, without the leading padding: appends to
    /// `out` (per channel) and returns how many. With `all`, everything added (the stream
    /// ended).
    pub fn take(&mut self, out: &mut [Vec<f32>], all: bool) -> usize {
        let done_until = if all {
            self.start + self.acc.first().map_or(0, |a| a.len()) as u64
        } else {
            self.added * self.framing.hop as u64
        };
        let k = (done_until.saturating_sub(self.start)) as usize;
        let skip = (self.framing.fft as u64)
            .saturating_sub(self.start)
            .min(k as u64) as usize;
        for (acc, o) in self.acc.iter_mut().zip(out.iter_mut()) {
            let k = k.min(acc.len());
            o.extend_from_slice(&acc[skip..k]);
            acc.drain(..k);
        }
        self.start += k as u64;
        k - skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framing: Framing, input: &[Vec<f32>], block: usize) -> Vec<Vec<f32>> {
        let ch = input.len();
        let mut a = Analysis::new(framing, ch);
        let mut s = Synthesis::new(framing, ch);
        let mut spectra = vec![Vec::new(); ch];
        let mut out = vec![Vec::new(); ch];
        let len = input[0].len();
        for start in (0..len).step_by(block) {
            let end = (start + block).min(len);
            let planes: Vec<&[f32]> = input.iter().map(|c| &c[start..end]).collect();
            a.push(&planes);
            while a.next_frame(&mut spectra) {
                s.add(&spectra, |_, _| 1.0);
                s.take(&mut out, false);
            }
        }
        a.finish();
        while a.next_frame(&mut spectra) {
            s.add(&spectra, |_, _| 1.0);
        }
        s.take(&mut out, true);
        for o in &mut out {
            o.truncate(len);
        }
        out
    }

    #[test]
    fn unit_masks_give_the_input_back_in_any_block_size() {
        let framing = Framing {
            fft: 4096,
            hop: 1024,
        };
        let x: Vec<f32> = (0..30_011)
            .map(|i| ((i as f32 * 0.013).sin() + (i as f32 * 0.31).cos() * 0.3) * 0.5)
            .collect();
        let input = vec![x.clone(), x.iter().map(|v| -v).collect()];
        for block in [1, 333, 1024, 40_000] {
            let out = run(framing, &input, block);
            assert_eq!(out[0].len(), x.len());
            let err = out
                .iter()
                .zip(&input)
                .flat_map(|(o, i)| o.iter().zip(i).map(|(a, b)| (a - b).abs()))
                .fold(0.0f32, f32::max);
            assert!(err < 1e-5, "block {block}: error {err}");
        }
    }

    #[test]
    fn hops_that_do_not_divide_the_window_reconstruct_too() {
        // MDX-Net models use n_fft 7680 with hop 1024.
        let x: Vec<f32> = (0..20_000)
            .map(|i| (i as f32 * 0.021).sin() * 0.5)
            .collect();
        for (fft, hop) in [(7680, 1024), (6144, 1024), (1000, 300)] {
            let out = run(Framing { fft, hop }, std::slice::from_ref(&x), 777);
            let err = out[0]
                .iter()
                .zip(&x)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{fft}/{hop}: error {err}");
        }
    }

    #[test]
    fn frames_cover_every_sample() {
        let f = Framing {
            fft: 4096,
            hop: 1024,
        };
        // The padding alone takes 4 frames; one sample more needs a 5th.
        assert_eq!(f.frames_for(0), 4);
        assert_eq!(f.frames_for(1), 5);
        assert_eq!(f.frames_for(1024), 5);
        assert_eq!(f.frames_for(1025), 6);
    }

    #[test]
    fn the_window_is_periodic() {
        let w = hann(8);
        assert_eq!(w[0], 0.0);
        assert!((w[4] - 1.0).abs() < 1e-7);
        assert!((w[2] - w[6]).abs() < 1e-7);
    }
}
