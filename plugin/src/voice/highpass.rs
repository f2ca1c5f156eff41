//! RVC's input high-pass: a 5th-order Butterworth at 48 Hz on the 16 kHz audio the content
//! encoder and the pitch model hear (shared/MODELS.md §2; RVC's `signal.butter(N=5, Wn=48,
//! btype="high", fs=16000)`), so rumble and DC do not become features or pitch.
//!
//! RVC filters a whole file forwards and backwards (zero phase, scipy's `filtfilt`). Refrain
//! does the same on each run's window ([`HighPass::filtfilt`]: a mirror extension at each end
//! and each pass started from the steady state of its first sample, as `filtfilt` does), so the pitch model hears the harmonics in their own phases: the filter run forwards
//! only leads 220 Hz by about 60 degrees and 440 Hz by 30, and CREPE tiny then reads a sung
//! 220 Hz "oo" two octaves up (measured). The design is the bilinear transform with the
//! cut-off prewarped, as scipy's `butter` makes it: two biquads (Q 1.618 and 0.618) and a
//! first-order section.

/// The cut-off, in Hz, and the filter's order.
pub const CUTOFF_HZ: f64 = 48.0;
pub const ORDER: usize = 5;
/// The extension at each end of a window for [`HighPass::filtfilt`]: 100 ms at 16 kHz, in
/// which the filter's start settles.
pub const PAD: usize = 1_600;

/// One section: `y = b0 x + b1 x1 + b2 x2 - a1 y1 - a2 y2` (a0 = 1), transposed direct form II.
#[derive(Debug, Clone, Copy)]
struct Section {
    b: [f64; 3],
    a: [f64; 2],
    s: [f64; 2],
}

impl Section {
    fn run(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.s[0];
        self.s[0] = self.b[1] * x - self.a[0] * y + self.s[1];
        self.s[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// The streaming high-pass.
#[derive(Debug, Clone)]
pub struct HighPass {
    sections: [Section; 3],
}

impl HighPass {
    /// RVC's 48 Hz high-pass for audio at `rate` Hz.
    pub fn rvc(rate: u32) -> HighPass {
        let w0 = std::f64::consts::TAU * CUTOFF_HZ / rate as f64;
        let (sin, cos) = w0.sin_cos();
        let biquad = |q: f64| {
            let alpha = sin / (2.0 * q);
            let a0 = 1.0 + alpha;
            let b = (1.0 + cos) / 2.0 / a0;
            Section {
                b: [b, -2.0 * b, b],
                a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
                s: [0.0; 2],
            }
        };
        // Butterworth's second-order factors: Q = 1 / (2 sin((2k - 1) pi / 2N)), k = 1, 2.
        let q = |k: usize| {
            1.0 / (2.0 * (((2 * k - 1) as f64) * std::f64::consts::PI / (2 * ORDER) as f64).sin())
        };
        let k = (w0 / 2.0).tan();
        let first = Section {
            b: [1.0 / (1.0 + k), -1.0 / (1.0 + k), 0.0],
            a: [(k - 1.0) / (k + 1.0), 0.0],
            s: [0.0; 2],
        };
        HighPass {
            sections: [biquad(q(1)), biquad(q(2)), first],
        }
    }

    /// Filters `x` in place, carrying the state on from the last call. Real-time safe.
    pub fn run(&mut self, x: &mut [f32]) {
        for v in x {
            let mut y = *v as f64;
            for s in &mut self.sections {
                y = s.run(y);
            }
            *v = y as f32;
        }
    }

    /// Forgets the past (a new stream).
    pub fn reset(&mut self) {
        for s in &mut self.sections {
            s.s = [0.0; 2];
        }
    }

    /// Starts the filter as if `x0` had always been its input: the first section's state for a
    /// constant input (a high-pass gives 0 for it), the others' at rest (scipy's `lfilter_zi`).
    fn settle_on(&mut self, x0: f64) {
        self.reset();
        let first = &mut self.sections[0];
        first.s = [(first.b[1] + first.b[2]) * x0, first.b[2] * x0];
    }

    /// Filters `x` forwards and backwards, zero phase, as scipy's `filtfilt` does but with an
    /// even extension (`padtype="even"`) of [`PAD`] samples. A window's ends are cuts in a
    /// stream, not a file's ends: the default odd extension (18 samples) assumes the signal
    /// goes on around its edge value, so a voice cut mid-cycle came out with its edge value
    /// taken off and the newest samples' peak doubled (measured); a mirror goes on around the
    /// signal's own mean. Each call stands alone.
    pub fn filtfilt(&mut self, x: &mut [f32]) {
        if x.len() < 2 {
            return;
        }
        let pad = PAD.min(x.len() - 1);
        let n = x.len();
        // Even extension (a mirror at each end): x[pad..0], x, x[n-2..n-2-pad].
        let mut ext: Vec<f64> = Vec::with_capacity(n + 2 * pad);
        ext.extend((1..=pad).rev().map(|i| x[i] as f64));
        ext.extend(x.iter().map(|&v| v as f64));
        ext.extend((1..=pad).map(|i| x[n - 1 - i] as f64));
        for _ in 0..2 {
            self.settle_on(ext[0]);
            for v in ext.iter_mut() {
                let mut y = *v;
                for s in &mut self.sections {
                    y = s.run(y);
                }
                *v = y;
            }
            ext.reverse();
        }
        for (o, v) in x.iter_mut().zip(&ext[pad..pad + n]) {
            *o = *v as f32;
        }
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter's gain at `hz`, in dB, measured on a steady sine at 16 kHz.
    fn gain_db(hz: f64) -> f64 {
        let rate = 16_000u32;
        let mut f = HighPass::rvc(rate);
        let n = 16_000 * 4;
        let mut x: Vec<f32> = (0..n)
            .map(|i| (std::f64::consts::TAU * hz * i as f64 / rate as f64).sin() as f32)
            .collect();
        f.run(&mut x);
        // The last second, after the transient; a sine's RMS is 1/sqrt(2).
        let tail = &x[n - 16_000..];
        let rms =
            (tail.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / tail.len() as f64).sqrt();
        20.0 * (rms * 2f64.sqrt()).log10()
    }

    #[test]
    fn it_is_a_fifth_order_butterworth_at_48_hz() {
        // -3 dB at the cut-off; 30 dB an octave under it (6 dB x 5 per octave), 60 dB two.
        assert!((gain_db(48.0) + 3.01).abs() < 0.05, "{}", gain_db(48.0));
        assert!((gain_db(24.0) + 30.1).abs() < 0.5, "{}", gain_db(24.0));
        assert!((gain_db(12.0) + 60.2).abs() < 0.5, "{}", gain_db(12.0));
        // Flat in the voice's range.
        for hz in [110.0, 220.0, 1_000.0, 4_000.0] {
            assert!(gain_db(hz).abs() < 0.05, "{hz}: {}", gain_db(hz));
        }
    }

    #[test]
    fn forwards_and_backwards_it_keeps_every_harmonics_phase() {
        // 220 Hz and its harmonics come out where they went in (zero phase), at the filter's
        // gain squared; 20 Hz goes.
        let n = 16_000;
        let tone = |hz: f64, i: usize| (std::f64::consts::TAU * hz * i as f64 / 16_000.0).sin();
        let mut x: Vec<f32> = (0..n)
            .map(|i| (tone(220.0, i) + 0.5 * tone(440.0, i) + tone(20.0, i)) as f32)
            .collect();
        HighPass::rvc(16_000).filtfilt(&mut x);
        let want: Vec<f32> = (0..n)
            .map(|i| (tone(220.0, i) + 0.5 * tone(440.0, i)) as f32)
            .collect();
        let err = x[2_000..14_000]
            .iter()
            .zip(&want[2_000..14_000])
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 0.01, "{err}");
        // A window cut mid-cycle keeps its edges: the newest samples are what the pitch model
        // is least sure of already.
        let cut: Vec<f32> = (0..6_401).map(|i| tone(110.0, i + 37) as f32).collect();
        let mut y = cut.clone();
        HighPass::rvc(16_000).filtfilt(&mut y);
        let edge = cut
            .iter()
            .zip(&y)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(edge < 0.03, "{edge}");
    }

    #[test]
    fn its_state_carries_over_so_blocks_filter_as_one_stream() {
        let x: Vec<f32> = (0..4_000)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let mut whole = x.clone();
        HighPass::rvc(16_000).run(&mut whole);
        let mut f = HighPass::rvc(16_000);
        let mut blocks = x.clone();
        for b in blocks.chunks_mut(333) {
            f.run(b);
        }
        assert_eq!(whole, blocks);
        // DC goes.
        let mut dc = vec![0.5f32; 32_000];
        HighPass::rvc(16_000).run(&mut dc);
        assert!(dc[31_000..].iter().all(|v| v.abs() < 1e-4));
    }
}
