//! How far a recording's pitches sit from the A440 semitone grid, in cents: what the
//! fingerprint gate needs to undo a pitch shift that is not a whole number of semitones
//! (shared/DECISIONS.md §5). Chromaprint's 12-bin chroma tolerates about 10 cents of pitch
//! error, so a remix shifted by +50 cents matches at no whole-semitone retry. Shifting a
//! recording by `s` cents moves its tuning by `s` modulo 100, so the input's tuning against
//! the reference's says `s` up to whole semitones, and the retries try those ([`candidates`]).
//!
//! The estimate: spectral peaks between 150 Hz and 2 kHz (Hann-windowed FFT of about a third of
//! a second, peaks within 10 dB of the frame's loudest, their frequency refined by a parabola
//! through the log magnitudes), each one's distance from the nearest equal-tempered semitone,
//! averaged on the circle (100 cents around) weighted by power. Measured on the game music the
//! real-music tests use (`plugin/tests/fingerprint_real.rs`): an excerpt's estimate moves with
//! a SoX pitch or speed change to within 10 cents of the change, and excerpts of one track
//! differ from the whole track's by up to about 10 cents, which [`candidates`] covers.

use realfft::RealFftPlanner;

/// The band whose peaks are read (below it bins are too coarse for cents, above it harmonics
/// that are off the grid weigh in).
const LOW_HZ: f32 = 150.0;
const HIGH_HZ: f32 = 2_000.0;
/// Peaks at least this share (-10 dB) of the frame's loudest in the band.
const PEAK_SHARE: f32 = 0.3;
/// An estimate needs at least this much agreement among its peaks (the length of their mean on
/// the circle): noise and drums spread all round it.
const MIN_AGREEMENT: f32 = 0.05;

/// The tuning of `audio` (mono at `rate`) in cents from the A440 grid, -50..50; `None` when
/// it is too short (under one frame) or has no pitches to speak of.
pub fn tuning_cents(audio: &[f32], rate: u32) -> Option<f32> {
    let n = ((rate as f32 / 3.0) as usize).next_power_of_two().max(1024);
    if audio.len() < n {
        return None;
    }
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let window: Vec<f32> = (0..n)
        .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / n as f32).cos())
        .collect();
    let mut frame = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut power = vec![0.0f32; spectrum.len()];
    let bin_hz = rate as f32 / n as f32;
    let (lo, hi) = (
        ((LOW_HZ / bin_hz) as usize).max(2),
        ((HIGH_HZ / bin_hz) as usize).min(power.len() - 3),
    );
    if lo >= hi {
        return None;
    }
    let (mut re, mut im, mut total) = (0.0f64, 0.0f64, 0.0f64);
    let mut at = 0;
    while at + n <= audio.len() {
        for ((f, &x), &w) in frame.iter_mut().zip(&audio[at..at + n]).zip(&window) {
            *f = x * w;
        }
        at += n / 2;
        if fft.process(&mut frame, &mut spectrum).is_err() {
            return None;
        }
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr() + 1e-20;
        }
        let loudest = power[lo..hi].iter().copied().fold(0.0f32, f32::max);
        if loudest <= 1e-12 {
            continue;
        }
        for k in lo..hi {
            let p = power[k];
            let peak = p > power[k - 1]
                && p >= power[k + 1]
                && p > power[k - 2]
                && p >= power[k + 2]
                && p.sqrt() > loudest.sqrt() * PEAK_SHARE;
            if !peak {
                continue;
            }
            // The parabola through the log magnitudes around the peak.
            let (a, b, c) = (
                0.5 * power[k - 1].ln(),
                0.5 * p.ln(),
                0.5 * power[k + 1].ln(),
            );
            let curve = a - 2.0 * b + c;
            let delta = if curve.abs() > 1e-12 {
                (0.5 * (a - c) / curve).clamp(-0.5, 0.5)
            } else {
                0.0
            };
            let hz = (k as f32 + delta) * bin_hz;
            let cents = 1200.0 * (hz / 440.0).log2();
            let off = cents - 100.0 * (cents / 100.0).round();
            let angle = f64::from(off) / 100.0 * std::f64::consts::TAU;
            let weight = f64::from(p);
            re += weight * angle.cos();
            im += weight * angle.sin();
            total += weight;
        }
    }
    if total <= 0.0 || ((re * re + im * im).sqrt() / total) < f64::from(MIN_AGREEMENT) {
        return None;
    }
    Some((im.atan2(re) / std::f64::consts::TAU * 100.0) as f32)
}

/// `cents` wrapped into -50..50.
pub fn wrap(cents: f32) -> f32 {
    cents - 100.0 * (cents / 100.0).round()
}

/// Off the grid by less than this, a shift is taken for whole semitones (Chromaprint's own
/// tolerance is about 10 cents).
pub const ON_GRID_CENTS: f32 = 10.0;
/// Off by at least this, no whole-semitone shift can explain it.
pub const OFF_GRID_CENTS: f32 = 25.0;
/// The estimate is off by up to about 10 cents: the neighbours this far either side of it are
/// tried too.
pub const SPREAD_CENTS: i16 = 15;

/// The pitch shifts (in cents) the gate tries undoing, most likely first, for input whose
/// tuning sits `offset` cents from the reference's (`None`: not known): whole semitones
/// (±1, ±2) while the input is on the reference's grid; the shifts that put it back on the grid
/// (the estimate and ±[`SPREAD_CENTS`] around it, plus 0, ±1 and ±2 semitones, within ±2.5
/// semitones) when it is off, first when it is clearly off.
pub fn candidates(offset: Option<f32>) -> Vec<i16> {
    let whole = vec![100, -100, 200, -200];
    let Some(offset) = offset.filter(|o| o.is_finite()) else {
        return whole;
    };
    let offset = wrap(offset);
    if offset.abs() < ON_GRID_CENTS {
        return whole;
    }
    let centre = offset.round() as i16;
    let mut fractional = Vec::new();
    for d in [0, -SPREAD_CENTS, SPREAD_CENTS] {
        let o = wrap(f32::from(centre + d)).round() as i16;
        if f32::from(o).abs() < ON_GRID_CENTS - 2.0 {
            continue;
        }
        for k in [0i16, 1, -1, 2, -2] {
            let c = o + 100 * k;
            if c.abs() <= 250 && !fractional.contains(&c) {
                fractional.push(c);
            }
        }
    }
    if offset.abs() >= OFF_GRID_CENTS {
        fractional
    } else {
        whole.into_iter().chain(fractional).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notes of the A440 grid with a few harmonics each, shifted by `cents`.
    fn chords(rate: u32, seconds: f32, cents: f32) -> Vec<f32> {
        let notes = [-9.0f32, -5.0, -2.0, 0.0, 3.0, 7.0];
        let shift = 2f32.powf(cents / 1200.0);
        (0..(seconds * rate as f32) as usize)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let note = notes[(t * 2.0) as usize % notes.len()];
                let f = 440.0 * 2f32.powf(note / 12.0) * shift;
                (1..=4)
                    .map(|h| (std::f32::consts::TAU * f * h as f32 * t).sin() * 0.2 / h as f32)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn a_shift_off_the_grid_moves_the_estimate_by_the_shift_modulo_a_semitone() {
        for rate in [44_100, 48_000] {
            for cents in [0.0f32, 30.0, 50.0, -150.0, 120.0] {
                let est = tuning_cents(&chords(rate, 8.0, cents), rate).unwrap();
                let want = wrap(cents);
                let err = wrap(est - want);
                assert!(err.abs() < 3.0, "{rate} Hz, {cents} cents: {est}");
            }
        }
        // Noise has no tuning; too short has none either.
        let mut seed = 1u32;
        let noise: Vec<f32> = (0..48_000 * 4)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        assert_eq!(tuning_cents(&noise, 48_000), None);
        assert_eq!(tuning_cents(&[0.1; 1000], 48_000), None);
        assert_eq!(tuning_cents(&vec![0.0; 48_000], 48_000), None);
    }

    #[test]
    fn the_candidates_put_the_input_back_on_the_reference_grid() {
        assert_eq!(candidates(None), vec![100, -100, 200, -200]);
        assert_eq!(candidates(Some(4.0)), vec![100, -100, 200, -200]);
        // Clearly off: the shifts that undo it, the estimate first.
        let c = candidates(Some(48.0));
        assert_eq!(c[..5], [48, 148, -52, 248, -152]);
        let near = |x: i16| c.iter().any(|&y| (y - x).abs() <= 5);
        assert!(near(-150) && near(50) && near(-50) && !near(100) && !near(0));
        assert!(c.iter().all(|c| c.abs() <= 250));
        // Somewhat off: whole semitones first, then the fractional ones.
        let c = candidates(Some(-18.0));
        assert_eq!(c[..4], [100, -100, 200, -200]);
        assert!(c.contains(&-18) && c.contains(&-118) && c.contains(&182));
        assert_eq!(wrap(130.0), 30.0);
        assert_eq!(wrap(-60.0), 40.0);
    }
}
