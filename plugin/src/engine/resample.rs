//! Host rate <-> model rate: a streaming polyphase FIR with exact rational timing.
//!
//! Output sample `k` is the input evaluated at position `(k * down - shift) / up` input
//! samples, computed with integers only, so the timing never drifts and every delay is an exact
//! rational number of samples. That exactness is what lets the latency plan
//! ([`super::latency`]) pick the shift that makes the whole host -> model -> host chain a whole
//! number of host samples, with no alignment padding.
//!
//! Two filters: [`FilterSpec::LIVE`] (12 taps each side: 0.27 ms of lookahead per direction at
//! 44.1 kHz) and [`FilterSpec::STUDIO`] (48 taps each side, stopband below -100 dB). Both are
//! Kaiser-windowed sincs, each phase normalised to unity gain at DC.
//!
//! Rubato's synchronous FFT resampler needs chunks of whole rate units and adds half a chunk of
//! delay; its asynchronous sinc resampler tracks time in floating point. Neither gives exact,
//! short, chunk-free timing, which the Live mode needs.

use std::fmt;

/// The anti-aliasing filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterSpec {
    /// Taps on each side of the interpolation point, in samples of the lower of the two rates.
    pub half_width: usize,
    /// Kaiser window shape (higher: lower sidelobes, wider transition).
    pub beta: f64,
    /// Passband edge as a fraction of the lower rate's Nyquist frequency.
    pub rolloff: f64,
}

impl FilterSpec {
    /// Short filter for the Live mode: about -70 dB stopband, passband to 86% of Nyquist.
    pub const LIVE: FilterSpec = FilterSpec {
        half_width: 12,
        beta: 7.0,
        rolloff: 0.86,
    };
    /// Long filter for the Studio mode: stopband below -100 dB, passband to 94% of Nyquist.
    pub const STUDIO: FilterSpec = FilterSpec {
        half_width: 48,
        beta: 10.5,
        rolloff: 0.94,
    };
}

/// Why a resampler cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResampleError {
    /// A rate of zero.
    ZeroRate { from: u32, to: u32 },
    /// The rates share too few factors: the phase table would be too large.
    RatesTooCoarse { from: u32, to: u32, phases: u64 },
}

impl fmt::Display for ResampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResampleError::ZeroRate { from, to } => {
                write!(
                    f,
                    "cannot resample {from} Hz -> {to} Hz: rates must be above zero"
                )
            }
            ResampleError::RatesTooCoarse { from, to, phases } => write!(
                f,
                "resampling {from} Hz -> {to} Hz would need {phases} filter phases (at most \
                 {MAX_PHASES}); use a common rate such as 44.1, 48 or 96 kHz"
            ),
        }
    }
}

impl std::error::Error for ResampleError {}

/// Largest phase count (the output rate's share of the rates' gcd) accepted.
pub const MAX_PHASES: u64 = 2_000;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The timing of a resampler, without its filter: pure integer arithmetic that the latency
/// plan and the streaming resampler share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Output rate / gcd of the rates (the number of filter phases).
    pub up: u64,
    /// Input rate / gcd of the rates.
    pub down: u64,
    /// Input samples the filter reaches on each side of the interpolation point.
    pub half: u64,
    /// Output `k` sits at input position `(k * down - shift) / up`.
    pub shift: i64,
}

impl Geometry {
    /// The geometry for `from` -> `to` Hz with `filter` and `shift`.
    pub fn new(from: u32, to: u32, filter: FilterSpec, shift: i64) -> Result<Self, ResampleError> {
        if from == 0 || to == 0 {
            return Err(ResampleError::ZeroRate { from, to });
        }
        let g = gcd(from as u64, to as u64);
        let (up, down) = (to as u64 / g, from as u64 / g);
        if up > MAX_PHASES || down > MAX_PHASES {
            return Err(ResampleError::RatesTooCoarse {
                from,
                to,
                phases: up.max(down),
            });
        }
        // The filter is `half_width` samples of the lower rate wide; in input samples that is
        // more when the input is the higher rate (downsampling).
        let half = (filter.half_width as u64 * down).div_ceil(up.min(down));
        Ok(Geometry {
            up,
            down,
            half: half.max(1),
            shift,
        })
    }

    /// `(base, phase)`: output `k` lies `phase / up` samples after input sample `base`.
    pub fn position(&self, k: u64) -> (i64, u64) {
        let num = k as i128 * self.down as i128 - self.shift as i128;
        let up = self.up as i128;
        (num.div_euclid(up) as i64, num.rem_euclid(up) as u64)
    }

    /// Input frames needed (a count from the stream's start) to compute outputs `0..outputs`.
    pub fn input_needed(&self, outputs: u64) -> u64 {
        if outputs == 0 {
            return 0;
        }
        let (base, _) = self.position(outputs - 1);
        (base + self.half as i64 + 1).max(0) as u64
    }

    /// How many outputs (a count from the stream's start) `inputs` input frames allow.
    pub fn outputs_for(&self, inputs: u64) -> u64 {
        // Output k is computable when floor((k*down - shift)/up) + half + 1 <= inputs, i.e.
        // k*down < (inputs - half)*up + shift.
        let x = (inputs as i128 - self.half as i128) * self.up as i128 + self.shift as i128;
        if x <= 0 {
            return 0;
        }
        ((x + self.down as i128 - 1) / self.down as i128) as u64
    }
}

/// Modified Bessel function of the first kind, order zero (for the Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        term *= half / k as f64;
        sum += term * term;
        if term * term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// A streaming resampler over interleaved frames. Built off the audio thread; `push` and
/// `produce` never allocate.
pub struct Resampler {
    geometry: Geometry,
    /// `[phase][tap]`, `2 * half` taps per phase, oldest input first.
    table: Vec<f32>,
    taps: usize,
    channels: usize,
    /// Input history, interleaved, written twice (at `i` and `i + cap`) so any window of up to
    /// `cap` frames is one contiguous slice.
    ring: Vec<f32>,
    cap: usize,
    /// Input frames received since the stream started.
    received: u64,
    /// Output frames produced since the stream started.
    produced: u64,
}

impl Resampler {
    /// A resampler from `from` to `to` Hz for `channels` channels, taking at most `max_push`
    /// frames per [`Self::push`].
    pub fn new(
        from: u32,
        to: u32,
        filter: FilterSpec,
        shift: i64,
        channels: usize,
        max_push: usize,
    ) -> Result<Self, ResampleError> {
        let geometry = Geometry::new(from, to, filter, shift)?;
        let half = geometry.half as usize;
        let taps = 2 * half;
        // Cut-off in cycles per input sample, below the lower rate's Nyquist frequency.
        let nu = 0.5 * filter.rolloff * (geometry.up as f64 / geometry.down as f64).min(1.0);
        let up = geometry.up as usize;
        let mut table = vec![0.0f32; up * taps];
        for p in 0..up {
            let frac = p as f64 / up as f64;
            let row = &mut table[p * taps..(p + 1) * taps];
            let mut sum = 0.0f64;
            let mut values = vec![0.0f64; taps];
            for (j, v) in values.iter_mut().enumerate() {
                // Distance from input sample (base - half + 1 + j) to the point base + frac.
                let tau = (half as f64 - 1.0 - j as f64) + frac;
                let ratio = tau / half as f64;
                let window = if ratio.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(filter.beta * (1.0 - ratio * ratio).sqrt()) / bessel_i0(filter.beta)
                };
                let x = 2.0 * nu * tau;
                let sinc = if x.abs() < 1e-12 {
                    1.0
                } else {
                    (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
                };
                *v = 2.0 * nu * sinc * window;
                sum += *v;
            }
            for (t, v) in row.iter_mut().zip(&values) {
                *t = (v / sum) as f32;
            }
        }
        let cap = max_push + taps + (geometry.down / geometry.up) as usize + 8;
        Ok(Resampler {
            geometry,
            table,
            taps,
            channels,
            ring: vec![0.0; 2 * cap * channels],
            cap,
            received: 0,
            produced: 0,
        })
    }

    /// The timing this resampler follows.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Frames received and produced since the stream started.
    pub fn counts(&self) -> (u64, u64) {
        (self.received, self.produced)
    }

    /// Starts a new stream: the history is silence again.
    pub fn reset(&mut self) {
        self.ring.fill(0.0);
        self.received = 0;
        self.produced = 0;
    }

    /// Appends interleaved input frames (at most `max_push` at a time; produce between pushes).
    pub fn push(&mut self, input: &[f32]) {
        let ch = self.channels;
        for frame in input.chunks_exact(ch) {
            let slot = (self.received % self.cap as u64) as usize;
            self.ring[slot * ch..(slot + 1) * ch].copy_from_slice(frame);
            let mirror = slot + self.cap;
            self.ring[mirror * ch..(mirror + 1) * ch].copy_from_slice(frame);
            self.received += 1;
        }
    }

    /// Output frames that can be computed now.
    pub fn ready(&self) -> usize {
        (self.geometry.outputs_for(self.received) - self.produced) as usize
    }

    /// Computes up to `out.len() / channels` ready frames into `out`; returns how many.
    pub fn produce(&mut self, out: &mut [f32]) -> usize {
        let ch = self.channels;
        let n = self.ready().min(out.len() / ch);
        let half = self.geometry.half as i64;
        for f in 0..n {
            let (base, phase) = self.geometry.position(self.produced);
            let first = base - half + 1;
            let coeffs = &self.table[phase as usize * self.taps..(phase as usize + 1) * self.taps];
            // Samples before the stream's start are silence: the ring still holds zeros there
            // until the stream has run for `cap` frames, after which no output reaches back.
            let slot = first.rem_euclid(self.cap as i64) as usize;
            let window = &self.ring[slot * ch..(slot + self.taps) * ch];
            let o = &mut out[f * ch..(f + 1) * ch];
            o.fill(0.0);
            for (t, &c) in coeffs.iter().enumerate() {
                let frame = &window[t * ch..(t + 1) * ch];
                for (acc, &x) in o.iter_mut().zip(frame) {
                    *acc += c * x;
                }
            }
            self.produced += 1;
        }
        n
    }
}

/// Frames a [`RateChange`] resamples at a time.
const RATE_CHANGE_BLOCK: usize = 8192;

/// A whole stream's rate change for files (off the audio thread: it allocates), planar in and
/// out, exact in length: `to` samples for every `from` (rounded up) once [`Self::finish`] has
/// run, with the Studio filter and no delay. `refrain separate` and `refrain notes` use it.
pub struct RateChange {
    resampler: Option<Resampler>,
    channels: usize,
    from: u32,
    to: u32,
    interleaved: Vec<f32>,
    produced: Vec<f32>,
}

impl RateChange {
    pub fn new(from: u32, to: u32, channels: usize) -> Result<RateChange, ResampleError> {
        let resampler = if from == to {
            None
        } else {
            Some(Resampler::new(
                from,
                to,
                FilterSpec::STUDIO,
                0,
                channels,
                RATE_CHANGE_BLOCK,
            )?)
        };
        Ok(RateChange {
            resampler,
            channels,
            from,
            to,
            interleaved: Vec::new(),
            produced: Vec::new(),
        })
    }

    /// Appends the rate-changed `planar` to `out` (per channel), as far as it can be computed.
    pub fn push(&mut self, planar: &[&[f32]], out: &mut [Vec<f32>]) {
        let Some(r) = &mut self.resampler else {
            for (o, p) in out.iter_mut().zip(planar) {
                o.extend_from_slice(p);
            }
            return;
        };
        let n = planar.first().map_or(0, |c| c.len());
        for start in (0..n).step_by(RATE_CHANGE_BLOCK) {
            let end = (start + RATE_CHANGE_BLOCK).min(n);
            self.interleaved.clear();
            for i in start..end {
                self.interleaved.extend(planar.iter().map(|c| c[i]));
            }
            r.push(&self.interleaved);
            Self::drain(r, self.channels, &mut self.produced, out, usize::MAX);
        }
    }

    /// Ends the stream: the outputs still owed, up to `to/from` of every input frame.
    pub fn finish(&mut self, out: &mut [Vec<f32>]) {
        let Some(r) = &mut self.resampler else {
            return;
        };
        let g = r.geometry();
        let (received, _) = r.counts();
        // Output k lies at input k * from / to: every one before the end of the input.
        let owed = (received as u128 * self.to as u128).div_ceil(self.from as u128) as u64;
        let zeros = vec![0.0f32; RATE_CHANGE_BLOCK * self.channels];
        loop {
            let (got_in, produced) = r.counts();
            let want = owed.saturating_sub(produced) as usize;
            if want == 0 {
                break;
            }
            if r.ready() == 0 {
                let need = g.input_needed(owed).saturating_sub(got_in) as usize;
                let k = need.clamp(1, RATE_CHANGE_BLOCK);
                r.push(&zeros[..k * self.channels]);
            }
            Self::drain(r, self.channels, &mut self.produced, out, want);
        }
    }

    fn drain(
        r: &mut Resampler,
        channels: usize,
        buf: &mut Vec<f32>,
        out: &mut [Vec<f32>],
        max: usize,
    ) {
        let k = r.ready().min(max);
        buf.resize(k * channels, 0.0);
        let n = r.produce(buf);
        for frame in buf[..n * channels].chunks_exact(channels) {
            for (o, &x) in out.iter_mut().zip(frame) {
                o.push(x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(len: usize, rate: f64, f: f64) -> Vec<f32> {
        (0..len)
            .map(|i| (std::f64::consts::TAU * f * i as f64 / rate).sin() as f32 * 0.5)
            .collect()
    }

    /// Runs `input` (mono) through a resampler in pieces of `piece` frames.
    fn run(r: &mut Resampler, input: &[f32], piece: usize) -> Vec<f32> {
        let mut out = Vec::new();
        let mut buf = vec![0.0f32; 4096];
        for chunk in input.chunks(piece) {
            r.push(chunk);
            loop {
                let n = r.produce(&mut buf);
                out.extend_from_slice(&buf[..n]);
                if n == 0 {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn counts_follow_the_geometry_exactly() {
        for (from, to) in [
            (44_100, 48_000),
            (48_000, 44_100),
            (48_000, 16_000),
            (22_050, 48_000),
        ] {
            for shift in [0i64, 7, 333] {
                let g = Geometry::new(from, to, FilterSpec::LIVE, shift).unwrap();
                for inputs in 0..2_000u64 {
                    let c = g.outputs_for(inputs);
                    if c > 0 {
                        assert!(
                            g.input_needed(c) <= inputs,
                            "{from}->{to} shift {shift} in {inputs}"
                        );
                    }
                    assert!(
                        g.input_needed(c + 1) > inputs,
                        "{from}->{to} shift {shift} in {inputs}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_long_stream_keeps_the_exact_ratio() {
        // 10 minutes at 44.1 kHz in odd pieces: exactly the rational number of outputs.
        let g = Geometry::new(44_100, 48_000, FilterSpec::LIVE, 0).unwrap();
        let inputs = 44_100u64 * 600 + 17;
        let outputs = g.outputs_for(inputs);
        let exact = (inputs - g.half) * 160 / 147;
        assert!(outputs.abs_diff(exact) <= 1, "{outputs} vs {exact}");
    }

    #[test]
    fn a_sine_survives_the_round_trip_at_the_predicted_delay() {
        for (filter, limit_db) in [(FilterSpec::LIVE, -45.0), (FilterSpec::STUDIO, -80.0)] {
            for (host, model) in [(44_100u32, 48_000u32), (96_000, 48_000), (48_000, 16_000)] {
                let mut up = Resampler::new(host, model, filter, 0, 1, 1024).unwrap();
                let mut down = Resampler::new(model, host, filter, 0, 1, 1024).unwrap();
                let input = sine(host as usize, host as f64, 1_000.0);
                let mid = run(&mut up, &input, 317);
                let back = run(&mut down, &mid, 301);
                // Output n sits at model position n*model/host, which is input position n: the
                // round trip has no delay at all, only lookahead.
                let skip = 2_000;
                let (mut err, mut sig) = (0.0f64, 0.0f64);
                for n in skip..back.len() - 10 {
                    err += ((back[n] - input[n]) as f64).powi(2);
                    sig += (input[n] as f64).powi(2);
                }
                let db = 10.0 * (err / sig).log10();
                assert!(
                    db < limit_db,
                    "{host}<->{model} {filter:?}: error {db:.1} dB"
                );
            }
        }
    }

    #[test]
    fn a_shift_delays_by_exactly_that_fraction() {
        // 48 kHz -> 44.1 kHz with shift 160*3: output k is input at (k*160 - 480)/147.
        let mut r = Resampler::new(48_000, 44_100, FilterSpec::STUDIO, 480, 1, 1024).unwrap();
        let input = sine(48_000, 48_000.0, 500.0);
        let out = run(&mut r, &input, 1000);
        for k in [2_000usize, 5_000, 9_999] {
            let t = (k as f64 * 160.0 - 480.0) / 147.0;
            let want = (std::f64::consts::TAU * 500.0 * t / 48_000.0).sin() * 0.5;
            assert!(
                (out[k] as f64 - want).abs() < 1e-4,
                "k {k}: {} vs {want}",
                out[k]
            );
        }
    }

    #[test]
    fn images_and_aliases_are_suppressed() {
        // 20 kHz at 48 kHz down to 16 kHz must vanish (it is above the new Nyquist).
        let mut r = Resampler::new(48_000, 16_000, FilterSpec::LIVE, 0, 1, 1024).unwrap();
        let out = run(&mut r, &sine(48_000, 48_000.0, 20_000.0), 1000);
        let rms =
            (out[1000..].iter().map(|x| x * x).sum::<f32>() / (out.len() - 1000) as f32).sqrt();
        assert!(20.0 * (rms / 0.3536).log10() < -60.0, "alias rms {rms}");
    }

    #[test]
    fn coarse_rates_are_refused_with_a_reason() {
        let e = Geometry::new(44_101, 48_000, FilterSpec::LIVE, 0).unwrap_err();
        assert!(e.to_string().contains("44101 Hz"), "{e}");
    }

    #[test]
    fn stereo_frames_stay_paired() {
        let mut r = Resampler::new(44_100, 48_000, FilterSpec::LIVE, 0, 2, 512).unwrap();
        let mono = sine(8_000, 44_100.0, 700.0);
        let stereo: Vec<f32> = mono.iter().flat_map(|&x| [x, -2.0 * x]).collect();
        let mut out = vec![0.0f32; 20_000];
        let mut n = 0;
        for chunk in stereo.chunks(2 * 500) {
            r.push(chunk);
            n += r.produce(&mut out[n * 2..]);
        }
        for f in 0..n {
            assert!((out[2 * f + 1] + 2.0 * out[2 * f]).abs() < 1e-5);
        }
    }
}
