//! Equal-power crossfade between the processed (wet) path and the latency-aligned dry path.

use std::f32::consts::FRAC_PI_2;

/// A per-sample ramp between dry (position 0) and wet (position 1). Gains follow the
/// equal-power law `dry = cos(p * pi/2)`, `wet = sin(p * pi/2)`.
#[derive(Debug, Clone)]
pub struct Crossfade {
    /// Where the fade stands, 0 = all dry, 1 = all wet.
    position: f32,
    /// Change of `position` per sample.
    step: f32,
}

impl Crossfade {
    /// A fade of `len` samples (at least one), starting fully wet or fully dry.
    pub fn new(len: usize, wet: bool) -> Self {
        Crossfade {
            position: if wet { 1.0 } else { 0.0 },
            step: 1.0 / len.max(1) as f32,
        }
    }

    /// Jumps to a side without fading (reset, or a missing wet sample we cannot hide).
    pub fn jump(&mut self, wet: bool) {
        self.position = if wet { 1.0 } else { 0.0 };
    }

    /// Whether the fade sits fully on the dry side.
    pub fn is_dry(&self) -> bool {
        self.position <= 0.0
    }

    /// Whether the fade sits fully on the wet side.
    pub fn is_wet(&self) -> bool {
        self.position >= 1.0
    }

    /// Advances one sample towards `wet` (or dry) and returns `(dry_gain, wet_gain)`.
    #[inline]
    pub fn next(&mut self, towards_wet: bool) -> (f32, f32) {
        self.position = if towards_wet {
            (self.position + self.step).min(1.0)
        } else {
            (self.position - self.step).max(0.0)
        };
        // The ends are exact, so a fully wet or fully dry signal passes bit for bit.
        if self.position >= 1.0 {
            return (0.0, 1.0);
        }
        if self.position <= 0.0 {
            return (1.0, 0.0);
        }
        let angle = self.position * FRAC_PI_2;
        (angle.cos(), angle.sin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fade_takes_exactly_len_samples_and_keeps_power() {
        let mut f = Crossfade::new(64, false);
        for i in 0..64 {
            let (d, w) = f.next(true);
            assert!((d * d + w * w - 1.0).abs() < 1e-5, "power at {i}");
            assert_eq!(f.is_wet(), i == 63, "sample {i}");
        }
        let (d, w) = f.next(true);
        assert_eq!((d, w), (0.0, 1.0));
    }

    #[test]
    fn fade_steps_are_small() {
        let mut f = Crossfade::new(64, true);
        let mut last = 1.0f32;
        for _ in 0..70 {
            let (_, w) = f.next(false);
            assert!(
                (last - w).abs() <= 2.0 / 64.0 * FRAC_PI_2,
                "step {}",
                last - w
            );
            last = w;
        }
        assert!(f.is_dry());
        assert_eq!(last, 0.0);
    }
}
