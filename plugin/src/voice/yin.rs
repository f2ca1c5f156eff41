//! YIN (de Cheveigné and Kawahara, 2002), offline and careful: the reference f0 the pitch
//! model and the voice transform are measured against, and `refrain pitch`'s cross-check.
//!
//! Not the streaming pitch: that is the pitch model's job ([`super::pitch`]). This one looks
//! at a whole recording, takes its time (no decimation, parabolic refinement of the dip) and
//! says "unvoiced" rather than guess.

/// One f0 value per hop, in Hz, 0 where the frame has no clear period.
#[derive(Debug, Clone, Copy)]
pub struct YinSettings {
    /// Lowest and highest f0 searched, Hz.
    pub fmin: f32,
    pub fmax: f32,
    /// Frame hop, samples.
    pub hop: usize,
    /// The dip threshold of the cumulative-mean-normalised difference (0.1 in the paper; a
    /// frame whose best dip stays above 0.2 is called unvoiced).
    pub threshold: f32,
}

impl YinSettings {
    /// The settings for voices at `rate`: 50-1100 Hz (RVC's range), 10 ms hop.
    pub fn voice(rate: u32) -> YinSettings {
        YinSettings {
            fmin: 50.0,
            fmax: 1100.0,
            hop: (rate / 100) as usize,
            threshold: 0.1,
        }
    }
}

/// The f0 track of `x` at `rate`: frame `i` is centred on sample `i * hop`.
pub fn yin(x: &[f32], rate: u32, s: YinSettings) -> Vec<f32> {
    let max_lag = (rate as f32 / s.fmin).ceil() as usize;
    let min_lag = ((rate as f32 / s.fmax).floor() as usize).max(2);
    // The integration window: two of the longest periods.
    let w = max_lag;
    let frames = x.len() / s.hop + 1;
    let mut d = vec![0.0f32; max_lag + 2];
    let mut out = Vec::with_capacity(frames);
    for i in 0..frames {
        let centre = i * s.hop;
        let start = centre as isize - ((w + max_lag) / 2) as isize;
        if start < 0 || start as usize + w + max_lag + 1 >= x.len() {
            out.push(0.0);
            continue;
        }
        let seg = &x[start as usize..start as usize + w + max_lag + 2];
        let energy: f32 = seg[..w].iter().map(|v| v * v).sum();
        if energy / (w as f32) < 1e-8 {
            out.push(0.0);
            continue;
        }
        // Difference function, then its cumulative-mean normalisation.
        d[0] = 1.0;
        let mut running = 0.0f32;
        for tau in 1..=max_lag + 1 {
            // The two stretches compared are centred on the frame's centre for every lag (a
            // fixed start would centre long lags earlier than short ones: up to 10 ms here).
            let o = (max_lag + 1 - tau) / 2;
            let mut sum = 0.0f32;
            for j in o..o + w {
                let v = seg[j] - seg[j + tau];
                sum += v * v;
            }
            running += sum;
            d[tau] = if running > 0.0 {
                sum * tau as f32 / running
            } else {
                1.0
            };
        }
        // The first dip under the threshold, followed to its minimum; else the global minimum.
        let mut pick = None;
        let mut tau = min_lag;
        while tau <= max_lag {
            if d[tau] < s.threshold {
                while tau < max_lag && d[tau + 1] < d[tau] {
                    tau += 1;
                }
                pick = Some(tau);
                break;
            }
            tau += 1;
        }
        let tau = pick.unwrap_or_else(|| {
            (min_lag..=max_lag)
                .min_by(|&a, &b| d[a].total_cmp(&d[b]))
                .unwrap_or(min_lag)
        });
        if d[tau] > 2.0 * s.threshold {
            out.push(0.0);
            continue;
        }
        // Parabolic refinement of the dip.
        let (a, b, c) = (d[tau - 1], d[tau], d[tau + 1]);
        let denom = a - 2.0 * b + c;
        let shift = if denom.abs() > 1e-12 {
            (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        out.push(rate as f32 / (tau as f32 + shift));
    }
    out
}

/// The median of the voiced values of `track` (0 when none is voiced).
pub fn median_voiced(track: &[f32]) -> f32 {
    let mut v: Vec<f32> = track.iter().copied().filter(|&f| f > 0.0).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Distance between two frequencies in cents.
pub fn cents(a: f32, b: f32) -> f32 {
    1200.0 * (a / b).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_and_a_harmonic_tone_give_their_f0() {
        let rate = 48_000;
        for f0 in [82.4f32, 196.0, 440.0, 987.8] {
            let x: Vec<f32> = (0..rate)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    (1..6)
                        .map(|h| (std::f32::consts::TAU * f0 * h as f32 * t).sin() / h as f32)
                        .sum::<f32>()
                        * 0.3
                })
                .collect();
            let track = yin(&x, rate, YinSettings::voice(rate));
            let m = median_voiced(&track);
            assert!(cents(m, f0).abs() < 2.0, "{f0} Hz measured {m}");
        }
        let silence = vec![0.0; rate as usize];
        assert_eq!(
            median_voiced(&yin(&silence, rate, YinSettings::voice(rate))),
            0.0
        );
    }
}
