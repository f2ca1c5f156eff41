//! The built-in voice transform: pitch shift that keeps the formants, and a separate formant
//! shift, with no model at all. It is what a voice chain runs when no voice model is loaded,
//! and the reference the voice tests measure against.
//!
//! A phase vocoder on realfft with spectral-envelope correction. Each analysis frame's
//! magnitude spectrum is split into its envelope (the vocal tract: a "true envelope", the
//! cepstrally smoothed spectrum iterated until it rides on the harmonic peaks) and the flat
//! excitation (the harmonics). The partials move by the pitch ratio as Laroche and Dolson
//! shift them: each spectral peak carries its region of bins, whole, so every lobe keeps its
//! shape, and its phase runs on at the shifted frequency. The envelope is then laid back on,
//! read at `bin / formant_ratio`: at ratio 1 the formants stay where the singer's were (no
//! chipmunk), above 1 they rise (a smaller head), below 1 they fall.
//!
//! Streaming: one frame per hop, overlap-added. Studio uses periodic Hann windows both ways
//! and lags by `fft - hop`. Live keeps the long analysis frame (its frequency resolution
//! separates a low voice's harmonics) but synthesises with Mauler and Martin's asymmetric pair:
//! the synthesis window covers only the frame's last 1024 samples, so the output lags by
//! `1024 - hop` (16 ms) instead of 37 ms. Because the shifted lobes keep their shape, the
//! frames keep their time envelope and the short synthesis window still sums to one.

use super::controls::{VoiceControls, VoiceSettings};
use crate::engine::latency::Mode;
use crate::models::manifest::Manifest;
use crate::models::package::ModelPackage;
use crate::models::processor::{HopProcessor, ProcessError, StreamSpec};
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::f32::consts::TAU;
use std::sync::Arc;

/// The rate the transform runs at (the engine resamples the host's to it).
pub const RATE: u32 = 48_000;

/// The frame geometry of a mode: FFT length and hop at [`RATE`] (at least eight frames overlap,
/// which the phase vocoder needs for clean partials).
pub fn framing(mode: Mode) -> (usize, usize) {
    match mode {
        // 42.7 ms frames: the main lobe of a Hann window this long (94 Hz) is narrower than
        // the harmonic spacing of a low male voice (about 100 Hz), which the phase vocoder
        // needs to move each harmonic on its own. Shorter frames smear low voices.
        Mode::Live => (2048, 256),
        // The same frames, twice the overlap: cleaner partials; what bounces use.
        Mode::Studio => (2048, 128),
    }
}

/// The transform's streaming contract in `mode`: stereo in and out at 48 kHz (the input is
/// summed to mono, the voice returns on both channels), latency `fft - hop`.
pub fn stream_spec(mode: Mode) -> StreamSpec {
    let (fft, hop) = framing(mode);
    StreamSpec {
        sample_rate: RATE,
        channels: 2,
        hop,
        context: 0,
        latency: synthesis_span(mode, fft) - hop,
        tail: fft,
        stems: 1,
        lookahead: 0,
    }
}

/// How much of each frame's end the synthesis window covers: the whole frame in Studio; in
/// Live the last `2 * LOW_LATENCY_HALF` samples (Mauler and Martin's asymmetric windows: a long
/// analysis window for the frequency resolution, a short synthesis window for the latency).
fn synthesis_span(mode: Mode, fft: usize) -> usize {
    match mode {
        Mode::Live => (2 * LOW_LATENCY_HALF).min(fft),
        Mode::Studio => fft,
    }
}

/// Half the Live synthesis window: 512 samples (10.7 ms) at 48 kHz.
pub const LOW_LATENCY_HALF: usize = 512;

/// The analysis and synthesis windows for frames of `fft` samples whose synthesis covers the
/// last `span`: with `span == fft`, periodic Hann both ways; shorter, Mauler and Martin's pair
/// (the analysis window rises as the square root of a long Hann and falls as the square root
/// of a short one; analysis times synthesis is a Hann of `span` at the frame's end).
fn windows(fft: usize, span: usize) -> (Vec<f32>, Vec<f32>) {
    if span >= fft {
        let w = crate::separation::stft::hann(fft);
        return (w.clone(), w);
    }
    let m = span / 2;
    let hann = |n: usize, len: usize| {
        (0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / len as f64).cos()) as f32
    };
    let mut analysis = vec![0.0f32; fft];
    let mut synthesis = vec![0.0f32; fft];
    for n in 0..fft {
        analysis[n] = if n < fft - m {
            hann(n, 2 * (fft - m)).sqrt()
        } else {
            hann(n - (fft - span), span).sqrt()
        };
        if n >= fft - span {
            let product = hann(n - (fft - span), span);
            synthesis[n] = if n < fft - m {
                product / analysis[n].max(1e-6)
            } else {
                product.sqrt()
            };
        }
    }
    (analysis, synthesis)
}

/// The built-in voice transform described as a model, so the chain, the editor and the CLI
/// treat it like any other (it is never read from a file: no ONNX, nothing to hash).
pub fn manifest() -> Manifest {
    use crate::models::manifest::{ModelInfo, RightsInfo, StreamInfo, TensorInfo, FORMAT};
    let spec = stream_spec(Mode::Live);
    let audio = |name: &str| TensorInfo {
        name: name.into(),
        dtype: "float32".into(),
        shape: vec![1, 2, spec.hop as i64],
    };
    Manifest {
        format: FORMAT,
        model: ModelInfo {
            id: "voice".into(),
            name: "Voice (built-in pitch and formant shift)".into(),
            version: "1.0.0".into(),
            kind: super::KIND_VOICE_TRANSFORM.into(),
            file: String::new(),
            sha256: String::new(),
            description: "pitch shift that keeps the formants, and a formant shift: a phase \
                          vocoder with spectral-envelope correction, no model"
                .into(),
        },
        stream: StreamInfo {
            sample_rate: RATE,
            channels: 2,
            hop: spec.hop,
            context: 0,
            lookahead: 0,
            latency: spec.latency,
            tail: spec.tail,
        },
        input: audio("audio_in"),
        output: audio("audio_out"),
        rights: RightsInfo::default(),
        files: Vec::new(),
        stems: None,
        voice: None,
    }
}

/// The built-in voice transform as a package (nothing read from disk).
pub fn package() -> ModelPackage {
    ModelPackage {
        folder: super::BUILTIN_VOICE_ID.into(),
        manifest: manifest(),
        onnx: Arc::from(&[][..]),
        external: Vec::new(),
        others: Vec::new(),
        identity: super::BUILTIN_VOICE_IDENTITY.into(),
        facts: Default::default(),
        protected: false,
    }
}

/// Lowest and highest f0 the envelope's order is chosen for, in Hz.
const F0_RANGE: (f32, f32) = (70.0, 800.0);
/// True-envelope iterations: the envelope climbs onto the harmonic peaks in about this many
/// rounds (6 left a narrow first formant 4-5% off after a shift, 12 under 4%).
const ENVELOPE_ROUNDS: usize = 12;
/// How fast the pitch and formant ratios follow the controls: a time constant of about 30 ms,
/// so a moved knob glides instead of stepping.
const SMOOTHING_S: f32 = 0.03;

/// The phase vocoder's state for one mono voice.
pub struct VoiceTransform {
    fft_len: usize,
    hop: usize,
    mode: Mode,
    controls: Arc<VoiceControls>,
    window: Vec<f32>,
    /// The synthesis window (the analysis one in Studio; short, at the frame's end, in Live).
    synthesis: Vec<f32>,
    /// Where in the overlap-add buffer the next finished hop starts (`fft - span`).
    emit_from: usize,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    /// The last `fft_len` input samples, oldest first.
    input: Vec<f32>,
    /// Overlap-add accumulator: `fft_len` samples, the first `hop` are complete each frame.
    ola: Vec<f32>,
    /// Each bin's phase in the previous analysis frame (kept for the next frame's frequency
    /// estimate, and as `last_phase_of` for this frame's partials), and in this one.
    last_phase: Vec<f32>,
    last_phase_of: Vec<f32>,
    phase: Vec<f32>,
    /// This frame's spectral peaks (bins), and each partial's (source bin, synthesis phase)
    /// in the previous frame and this one.
    peaks: Vec<usize>,
    previous: Vec<(usize, f32)>,
    current: Vec<(usize, f32)>,
    // Scratch, sized once.
    frame: Vec<f32>,
    spectrum: Vec<Complex32>,
    magnitude: Vec<f32>,
    frequency: Vec<f32>,
    envelope: Vec<f32>,
    out_magnitude: Vec<f32>,
    cepstrum: Vec<f32>,
    log_spectrum: Vec<Complex32>,
    fft_scratch: Vec<Complex32>,
    /// The analysis window's own autocorrelation: dividing a frame's by it undoes the window's
    /// taper (Boersma), so a periodic frame scores close to 1 at its period.
    window_ac: Vec<f32>,
    /// The overlap-add gain that makes analysis x synthesis windows sum to one.
    ola_gain: f32,
    /// The ratios in use (smoothed towards the controls).
    pitch_ratio: f32,
    formant_ratio: f32,
    /// The last settings read, and the smoothing coefficient per frame.
    glide: f32,
}

impl VoiceTransform {
    /// A transform for `mode` that reads its pitch and formant shift from `controls`.
    pub fn new(mode: Mode, controls: Arc<VoiceControls>) -> VoiceTransform {
        let (fft_len, hop) = framing(mode);
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(fft_len);
        let inverse = planner.plan_fft_inverse(fft_len);
        let bins = fft_len / 2 + 1;
        let span = synthesis_span(mode, fft_len);
        let (window, synthesis) = windows(fft_len, span);
        // Analysis x synthesis summed over the overlapping frames: the same at every sample.
        let w2: f32 = window
            .iter()
            .zip(&synthesis)
            .map(|(a, b)| a * b)
            .sum::<f32>()
            / hop as f32;
        let scratch = forward
            .get_scratch_len()
            .max(inverse.get_scratch_len())
            .max(1);
        let settings = controls.load();
        let glide = 1.0 - (-(hop as f32) / (SMOOTHING_S * RATE as f32)).exp();
        let window_ac = (0..fft_len / 2)
            .map(|lag| (lag..fft_len).map(|i| window[i] * window[i - lag]).sum())
            .collect();
        VoiceTransform {
            window_ac,
            fft_len,
            hop,
            mode,
            controls,
            window,
            synthesis,
            emit_from: fft_len - span,
            forward,
            inverse,
            input: vec![0.0; fft_len],
            ola: vec![0.0; fft_len],
            last_phase: vec![0.0; bins],
            last_phase_of: vec![0.0; bins],
            phase: vec![0.0; bins],
            peaks: Vec::with_capacity(bins),
            previous: Vec::with_capacity(bins),
            current: Vec::with_capacity(bins),
            frame: vec![0.0; fft_len],
            spectrum: vec![Complex32::default(); bins],
            magnitude: vec![0.0; bins],
            frequency: vec![0.0; bins],
            envelope: vec![0.0; bins],
            out_magnitude: vec![0.0; bins],
            cepstrum: vec![0.0; fft_len],
            log_spectrum: vec![Complex32::default(); bins],
            fft_scratch: vec![Complex32::default(); scratch],
            ola_gain: 1.0 / (w2 * fft_len as f32),
            pitch_ratio: settings.pitch_ratio(),
            formant_ratio: settings.formant_ratio(),
            glide,
        }
    }

    /// Feeds one hop of mono input and writes one hop of output. Allocation-free.
    pub fn process_hop(&mut self, input: &[f32], out: &mut [f32]) {
        debug_assert_eq!(input.len(), self.hop);
        let settings: VoiceSettings = self.controls.load();
        self.pitch_ratio += (settings.pitch_ratio() - self.pitch_ratio) * self.glide;
        self.formant_ratio += (settings.formant_ratio() - self.formant_ratio) * self.glide;
        self.input.copy_within(self.hop.., 0);
        let n = self.fft_len;
        self.input[n - self.hop..].copy_from_slice(input);
        self.frame_step();
        // The samples no later frame reaches: the first `hop` the synthesis window covers.
        let from = self.emit_from;
        out.copy_from_slice(&self.ola[from..from + self.hop]);
        self.ola.copy_within(self.hop.., 0);
        self.ola[n - self.hop..].fill(0.0);
    }

    /// One analysis, modification and synthesis frame over `self.input`.
    fn frame_step(&mut self) {
        let n = self.fft_len;
        let bins = n / 2 + 1;
        for ((f, x), w) in self.frame.iter_mut().zip(&self.input).zip(&self.window) {
            *f = x * w;
        }
        let energy: f32 = self.frame.iter().map(|x| x * x).sum();
        if energy < 1e-12 {
            // Silence: nothing to shift; keep the phases from running wild on noise floors.
            self.controls.report_pitch(0.0);
            self.last_phase.fill(0.0);
            self.previous.clear();
            return;
        }
        let _ = self.forward.process_with_scratch(
            &mut self.frame,
            &mut self.spectrum,
            &mut self.fft_scratch,
        );
        // Analysis: magnitude and each bin's true frequency (in bins) from the phase advance.
        let expected = TAU * self.hop as f32 / n as f32;
        self.last_phase_of.copy_from_slice(&self.last_phase);
        for k in 0..bins {
            let c = self.spectrum[k];
            let phase = c.arg();
            let mut delta = phase - self.last_phase[k] - k as f32 * expected;
            self.last_phase[k] = phase;
            delta -= TAU * (delta / TAU).round();
            self.magnitude[k] = c.norm();
            self.phase[k] = phase;
            self.frequency[k] = k as f32 + delta / expected;
        }
        self.true_envelope();
        self.shift_peaks(expected);
        // The DC and Nyquist bins of a real signal have no imaginary part.
        self.spectrum[0].im = 0.0;
        self.spectrum[bins - 1].im = 0.0;
        let _ = self.inverse.process_with_scratch(
            &mut self.spectrum,
            &mut self.frame,
            &mut self.fft_scratch,
        );
        let g = self.ola_gain;
        for ((o, x), w) in self.ola.iter_mut().zip(&self.frame).zip(&self.synthesis) {
            *o += x * w * g;
        }
    }

    /// Moves each partial by the pitch ratio as Laroche and Dolson do: every spectral peak
    /// takes its region (the bins down to the minima on either side) with it, shifted whole by
    /// a whole number of bins, so the lobe keeps its shape and the frame its time envelope
    /// (the asymmetric Live windows need that); its phase runs on at the shifted frequency from
    /// the previous frame's nearest peak, and the region's bins keep their phases relative to
    /// the peak. The flattened magnitudes move; the envelope, read at `bin / formant ratio`, is
    /// laid back on after. Writes the synthesis spectrum into `self.spectrum`.
    fn shift_peaks(&mut self, expected: f32) {
        let bins = self.magnitude.len();
        let r = self.pitch_ratio;
        let loudest = self.magnitude.iter().copied().fold(0.0f32, f32::max);
        self.peaks.clear();
        for k in 1..bins - 1 {
            let m = self.magnitude[k];
            if m > self.magnitude[k - 1] && m >= self.magnitude[k + 1] && m > loudest * 1e-5 {
                self.peaks.push(k);
            }
        }
        for c in self.spectrum.iter_mut() {
            *c = Complex32::default();
        }
        self.current.clear();
        let mut lower = 0;
        for (i, &p) in self.peaks.iter().enumerate() {
            // The region ends at the lowest bin between this peak and the next.
            let upper = match self.peaks.get(i + 1) {
                Some(&q) => (p..q)
                    .min_by(|&a, &b| self.magnitude[a].total_cmp(&self.magnitude[b]))
                    .map_or(q, |m| m + 1),
                None => bins,
            };
            let target = self.frequency[p] * r;
            let shift = (target - self.frequency[p]).round() as isize;
            let to = p as isize + shift;
            if to <= 0 || to >= bins as isize - 1 {
                lower = upper;
                continue;
            }
            // The partial's phase: on from the previous frame's peak nearest this one.
            let previous = self
                .previous
                .iter()
                .filter(|(q, _)| q.abs_diff(p) <= 2)
                .min_by_key(|(q, _)| q.abs_diff(p));
            let mut theta = match previous {
                // The partial moved from bin q to p: its phase advanced by the phase
                // difference across the two bins, unwrapped around the expected advance of
                // their mean frequency; the shifted partial advances r times that.
                Some(&(q, before)) => {
                    let mean = expected * (p + q) as f32 / 2.0;
                    let mut advance = self.phase[p] - self.last_phase_of[q] - mean;
                    advance -= TAU * (advance / TAU).round();
                    before + r * (advance + mean)
                }
                None => self.phase[p],
            };
            theta -= TAU * (theta / TAU).floor();
            self.current.push((p, theta));
            let rotate = theta - self.phase[p];
            for k in lower..upper {
                let t = k as isize + shift;
                if t <= 0 || t >= bins as isize - 1 {
                    continue;
                }
                let flat = self.magnitude[k] / self.envelope[k].max(1e-9);
                self.spectrum[t as usize] += Complex32::from_polar(flat, self.phase[k] + rotate);
            }
            lower = upper;
        }
        std::mem::swap(&mut self.previous, &mut self.current);
        let f = self.formant_ratio;
        for (k, c) in self.spectrum.iter_mut().enumerate() {
            *c *= interpolate(&self.envelope, k as f32 / f);
        }
    }

    /// The true envelope of `self.magnitude` into `self.envelope` (linear): the log spectrum's
    /// low quefrencies, raised to the spectrum wherever the spectrum is above, a few rounds.
    /// The cepstral order follows the frame's f0 (fs / 1.6 f0: a little above Röbel's fs / 2f0,
    /// which measured a 2-4% pull on a narrow first formant), so the envelope never resolves
    /// single harmonics yet keeps the formants apart.
    fn true_envelope(&mut self) {
        let n = self.fft_len;
        let bins = n / 2 + 1;
        let order = self.envelope_order();
        for k in 0..bins {
            self.envelope[k] = (self.magnitude[k] + 1e-9).ln();
        }
        // `out_magnitude` holds the target log spectrum across the rounds.
        self.out_magnitude.copy_from_slice(&self.envelope);
        for round in 0..ENVELOPE_ROUNDS {
            for k in 0..bins {
                self.log_spectrum[k] = Complex32::new(self.out_magnitude[k], 0.0);
            }
            let _ = self.inverse.process_with_scratch(
                &mut self.log_spectrum,
                &mut self.cepstrum,
                &mut self.fft_scratch,
            );
            // Keep quefrencies below the order (both ends: the cepstrum is symmetric).
            for (q, c) in self.cepstrum.iter_mut().enumerate() {
                let lag = q.min(n - q);
                if lag > order {
                    *c = 0.0;
                } else if lag == order {
                    *c *= 0.5;
                }
            }
            let _ = self.forward.process_with_scratch(
                &mut self.cepstrum,
                &mut self.log_spectrum,
                &mut self.fft_scratch,
            );
            let scale = 1.0 / n as f32;
            for k in 0..bins {
                let smooth = self.log_spectrum[k].re * scale;
                self.envelope[k] = smooth;
                if round + 1 < ENVELOPE_ROUNDS {
                    self.out_magnitude[k] = self.out_magnitude[k].max(smooth);
                }
            }
        }
        for e in self.envelope.iter_mut() {
            *e = e.exp();
        }
    }

    /// The cepstral order for this frame: `fs / (2 f0)` from the frame's autocorrelation peak
    /// (a rough f0 is enough), or the order for 200 Hz when the frame has no clear pitch.
    /// Allocation-free: it borrows the cepstrum buffers.
    fn envelope_order(&mut self) -> usize {
        let n = self.fft_len;
        let bins = n / 2 + 1;
        for k in 0..bins {
            self.log_spectrum[k] = Complex32::new(self.magnitude[k] * self.magnitude[k], 0.0);
        }
        let _ = self.inverse.process_with_scratch(
            &mut self.log_spectrum,
            &mut self.cepstrum,
            &mut self.fft_scratch,
        );
        let ac = &self.cepstrum;
        let (lo, hi) = (
            (RATE as f32 / F0_RANGE.1) as usize,
            ((RATE as f32 / F0_RANGE.0) as usize).min(n / 2),
        );
        if ac[0] <= 0.0 {
            return (RATE as f32 / 400.0) as usize;
        }
        // The frame's normalised autocorrelation; its period is the shortest lag scoring
        // within 10% of the best (longer lags repeat it: sub-octaves score as high).
        let score = |lag: usize| ac[lag] / ac[0] * self.window_ac[0] / self.window_ac[lag];
        let best = (lo..hi).map(score).fold(0.0f32, f32::max);
        let heard = if best > 0.5 {
            let mut lag = (lo..hi).find(|&l| score(l) >= 0.9 * best).unwrap_or(lo);
            while lag + 1 < hi && score(lag + 1) > score(lag) {
                lag += 1;
            }
            RATE as f32 / lag as f32
        } else {
            0.0
        };
        // The editor shows the pitch the singer is singing.
        self.controls.report_pitch(heard);
        let f0 = if heard > 0.0 { heard } else { 200.0 };
        ((RATE as f32 / (1.6 * f0)) as usize).clamp(16, n / 4)
    }

    /// Forgets everything: the next input starts from silence.
    pub fn clear(&mut self) {
        self.input.fill(0.0);
        self.ola.fill(0.0);
        self.last_phase.fill(0.0);
        self.previous.clear();
        let s = self.controls.load();
        self.pitch_ratio = s.pitch_ratio();
        self.formant_ratio = s.formant_ratio();
    }

    /// The mode it was built for.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Linear interpolation of `v` at fractional index `x` (held at the ends).
fn interpolate(v: &[f32], x: f32) -> f32 {
    if x <= 0.0 {
        return v[0];
    }
    let i = x as usize;
    if i + 1 >= v.len() {
        return v[v.len() - 1];
    }
    let t = x - i as f32;
    v[i] * (1.0 - t) + v[i + 1] * t
}

/// The transform as the engine streams it: stereo summed to mono, the voice on both channels.
pub struct VoiceTransformProcessor {
    transform: VoiceTransform,
    mono: Vec<f32>,
    voice: Vec<f32>,
    /// The output gain in use, ramped across each hop to the control's.
    gain: f32,
}

impl VoiceTransformProcessor {
    pub fn new(mode: Mode, controls: Arc<VoiceControls>) -> Self {
        let hop = framing(mode).1;
        VoiceTransformProcessor {
            gain: controls.load().output_gain(),
            transform: VoiceTransform::new(mode, controls),
            mono: vec![0.0; hop],
            voice: vec![0.0; hop],
        }
    }
}

impl HopProcessor for VoiceTransformProcessor {
    fn spec(&self) -> StreamSpec {
        stream_spec(self.transform.mode())
    }

    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError> {
        let hop = self.mono.len();
        for (i, m) in self.mono.iter_mut().enumerate() {
            *m = 0.5 * (window[i] + window[hop + i]);
        }
        self.transform.process_hop(&self.mono, &mut self.voice);
        let target = self.transform.controls.load().output_gain();
        super::ramp_and_write(&mut self.voice, &mut self.gain, target, (0, hop), out);
        Ok(())
    }

    fn reset(&mut self) {
        self.transform.clear();
    }

    fn skip(&mut self, window: &[f32]) {
        // Keep the input history moving so un-bypassing starts from the current audio.
        let hop = self.mono.len();
        for (i, m) in self.mono.iter_mut().enumerate() {
            *m = 0.5 * (window[i] + window[hop + i]);
        }
        let t = &mut self.transform;
        t.input.copy_within(hop.., 0);
        let n = t.fft_len;
        t.input[n - hop..].copy_from_slice(&self.mono);
    }

    fn device(&self) -> Option<String> {
        Some("built-in DSP on the CPU".into())
    }

    fn identity(&self) -> Option<String> {
        Some(super::BUILTIN_VOICE_IDENTITY.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::voice::yin::{cents, median_voiced, yin, YinSettings};

    fn vowel(f0: f32, formants: &[(f32, f32)], seconds: f32) -> Vec<f32> {
        crate::testkit::vowel(RATE, f0, formants, seconds)
    }

    fn envelope(f: f32, formants: &[(f32, f32)]) -> f32 {
        crate::testkit::vowel_envelope(f, formants)
    }

    fn run(mode: Mode, settings: VoiceSettings, x: &[f32]) -> Vec<f32> {
        let controls = Arc::new(VoiceControls::new(settings));
        let mut t = VoiceTransform::new(mode, controls);
        let hop = framing(mode).1;
        let mut out = vec![0.0; x.len()];
        for (i, o) in x.chunks_exact(hop).zip(out.chunks_exact_mut(hop)) {
            t.process_hop(i, o);
        }
        out
    }

    /// Where the envelope the output's harmonics trace sits, relative to the vowel's own, near
    /// each of its first two formants: the stretch `s` for which the vowel's envelope read at
    /// `f / s` fits the output's harmonic amplitudes best (log domain, any overall gain), over
    /// the harmonics within an octave-wide band around each formant. 1 = the formants stayed;
    /// 1.19 = they rose by 19%. It needs no formant tracker, so it does not care that a
    /// high voice's harmonics sample the envelope sparsely.
    fn formant_stretch(y: &[f32], f0: f32, formants: &[(f32, f32)]) -> (f32, f32) {
        // One second of the steady part, Hann-windowed: 1 Hz bins.
        let n = RATE as usize;
        let mid = &y[y.len() / 2 - n / 2..y.len() / 2 + n / 2];
        let mut frame: Vec<f32> = mid
            .iter()
            .enumerate()
            .map(|(i, v)| v * (0.5 - 0.5 * (TAU * i as f32 / n as f32).cos()))
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        let mut spec = fft.make_output_vec();
        fft.process(&mut frame, &mut spec).unwrap();
        let harmonics: Vec<(f32, f32)> = (1..)
            .map(|h| h as f32 * f0)
            .take_while(|&f| f < 3500.0)
            .map(|f| {
                let bin = f.round() as usize;
                let amp = (bin - 4..=bin + 4)
                    .map(|b| spec[b].norm())
                    .fold(0.0, f32::max);
                (f, amp.max(1e-9).ln())
            })
            .collect();
        let fit = |centre: f32| {
            let band: Vec<&(f32, f32)> = harmonics
                .iter()
                .filter(|(f, _)| *f > centre / 2.2 && *f < centre * 1.8)
                .collect();
            assert!(band.len() >= 3, "too few harmonics near {centre} Hz");
            let err = |s: f32| {
                let d: Vec<f32> = band
                    .iter()
                    .map(|(f, a)| a - envelope(f / s, formants).ln())
                    .collect();
                let c = d.iter().sum::<f32>() / d.len() as f32;
                d.iter().map(|x| (x - c) * (x - c)).sum::<f32>()
            };
            (700..=1500)
                .map(|i| i as f32 / 1000.0)
                .min_by(|&a, &b| err(a).total_cmp(&err(b)))
                .unwrap()
        };
        (fit(formants[0].0), fit(formants[1].0))
    }

    /// A neutral vowel (schwa), formants apart enough for a 10th-order LPC to see each.
    const AH: [(f32, f32); 3] = [(500.0, 120.0), (1500.0, 150.0), (2500.0, 200.0)];

    #[test]
    fn the_formant_measure_sees_a_vowel_with_moved_formants() {
        let x = vowel(110.0, &AH, 2.0);
        let (s1, s2) = formant_stretch(&x, 110.0, &AH);
        assert!(
            (s1 - 1.0).abs() < 0.01 && (s2 - 1.0).abs() < 0.01,
            "{s1} {s2}"
        );
        let moved: Vec<(f32, f32)> = AH.iter().map(|&(f, b)| (f * 1.1, b * 1.1)).collect();
        let (s1, s2) = formant_stretch(&vowel(110.0, &moved, 2.0), 110.0, &AH);
        assert!(
            (s1 - 1.1).abs() < 0.02 && (s2 - 1.1).abs() < 0.02,
            "{s1} {s2}"
        );
    }

    #[test]
    fn twelve_semitones_up_doubles_f0_within_ten_cents() {
        for mode in [Mode::Live, Mode::Studio] {
            let x = vowel(110.0, &AH, 2.0);
            let settings = VoiceSettings {
                pitch_semitones: 12.0,
                ..VoiceSettings::default()
            };
            let y = run(mode, settings, &x);
            let steady = &y[RATE as usize / 2..RATE as usize * 3 / 2];
            let f = median_voiced(&yin(steady, RATE, YinSettings::voice(RATE)));
            assert!(cents(f, 220.0).abs() < 10.0, "{mode:?}: {f} Hz");
        }
    }

    #[test]
    fn pitch_shift_keeps_the_formants_within_five_percent() {
        let x = vowel(110.0, &AH, 2.0);
        for mode in [Mode::Live, Mode::Studio] {
            for semitones in [5.0, -5.0, 12.0] {
                let settings = VoiceSettings {
                    pitch_semitones: semitones,
                    ..VoiceSettings::default()
                };
                let y = run(mode, settings, &x);
                let want = 110.0 * 2f32.powf(semitones / 12.0);
                let f = median_voiced(&yin(
                    &y[RATE as usize / 2..],
                    RATE,
                    YinSettings::voice(RATE),
                ));
                assert!(cents(f, want).abs() < 10.0, "{semitones}: f0 {f}");
                let (s1, s2) = formant_stretch(&y, want, &AH);
                assert!(
                    (s1 - 1.0).abs() < 0.05 && (s2 - 1.0).abs() < 0.05,
                    "{mode:?} {semitones} st: F1 moved x{s1}, F2 x{s2}"
                );
            }
        }
    }

    #[test]
    fn a_formant_shift_of_three_semitones_moves_them_by_nineteen_percent() {
        let x = vowel(110.0, &AH, 2.0);
        let settings = VoiceSettings {
            formant_semitones: 3.0,
            ..VoiceSettings::default()
        };
        let y = run(Mode::Studio, settings, &x);
        let (s1, s2) = formant_stretch(&y, 110.0, &AH);
        for s in [s1, s2] {
            assert!((s - 1.19).abs() < 0.03, "moved x{s1}, x{s2}");
        }
        // And the pitch stays.
        let f = median_voiced(&yin(
            &y[RATE as usize / 2..],
            RATE,
            YinSettings::voice(RATE),
        ));
        assert!(cents(f, 110.0).abs() < 10.0, "f0 {f}");
    }

    #[test]
    fn a_shifted_voice_keeps_its_level_and_has_no_hop_rate_flutter() {
        // The same envelope sampled by harmonics r times as far apart carries 1/r of the
        // energy: that, within 1 dB, and an output whose 20 ms level varies no more than
        // 2.5 dB (the input's own: 1.1 dB).
        let x = vowel(110.0, &AH, 2.0);
        let rms = |s: &[f32]| (s.iter().map(|v| v * v).sum::<f32>() / s.len() as f32).sqrt();
        let steady = |s: &[f32]| s[RATE as usize / 2..RATE as usize * 3 / 2].to_vec();
        let level_in = rms(&steady(&x));
        for mode in [Mode::Live, Mode::Studio] {
            for semitones in [5.0f32, 12.0, -7.0] {
                let settings = VoiceSettings {
                    pitch_semitones: semitones,
                    ..VoiceSettings::default()
                };
                let y = steady(&run(mode, settings, &x));
                let r = 2f32.powf(semitones / 12.0);
                let db = 20.0 * (rms(&y) / (level_in / r.sqrt())).log10();
                assert!(
                    db.abs() < 1.0,
                    "{mode:?} {semitones} st: level {db:+.2} dB off"
                );
                let blocks: Vec<f32> = y.chunks_exact(960).map(rms).collect();
                let (lo, hi) = blocks
                    .iter()
                    .fold((f32::MAX, 0.0f32), |(l, h), v| (l.min(*v), h.max(*v)));
                let spread = 20.0 * (hi / lo).log10();
                assert!(
                    spread < 2.5,
                    "{mode:?} {semitones} st: 20 ms level spread {spread:.2} dB"
                );
            }
        }
    }

    #[test]
    fn the_output_lags_by_exactly_the_reported_latency_at_unity() {
        for mode in [Mode::Live, Mode::Studio] {
            let mut x = vec![0.0f32; RATE as usize / 2];
            // A short tone burst: at unity the vocoder returns it, delayed by fft - hop.
            let at = 9_000;
            for i in 0..2_000 {
                let w = (std::f32::consts::PI * i as f32 / 2_000.0).sin().powi(2);
                x[at + i] = 0.5 * w * (TAU * 440.0 * i as f32 / RATE as f32).sin();
            }
            let y = run(mode, VoiceSettings::default(), &x);
            let latency = stream_spec(mode).latency;
            let err: f32 = (0..x.len() - latency)
                .map(|i| (y[i + latency] - x[i]).abs())
                .fold(0.0, f32::max);
            assert!(err < 0.02, "{mode:?}: largest difference {err}");
        }
    }
}
