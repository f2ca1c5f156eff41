//! The changes remixers make that the fingerprint gate undoes before it gives up on a window
//! (shared/DECISIONS.md §5): the licensed track played faster or slower (pitch and tempo
//! together), its tempo changed with the pitch kept, or its pitch shifted with the tempo kept.
//!
//! Chromaprint tolerates none of them: a 20 s window of the licensed track one semitone up
//! scores a bit error rate near 0.42, like another track, and 8% faster near 0.31. A window
//! that misses is therefore compared again with a change undone:
//! - **pitch** is undone by telling the fingerprinter the audio's rate is other than it is
//!   (at `rate / f` a recording `f` times higher is heard at its own pitch, and `f` times
//!   longer);
//! - **time** is undone on the sub-fingerprints themselves, by reading them at another spacing
//!   ([`respace`]): a 20 s window of a recording 8% faster drifts 1.6 s (13 items) against the
//!   reference, which is what ruins the match, while each item changes little.
//!
//! So a tempo change costs no new fingerprint, and a speed change and a pitch shift by the same
//! cents share one ([`Transform::declared_rate`]). Shifts are in cents: whole semitones while
//! the input sits on the reference's tuning grid, the fractional shifts its tuning says when it
//! does not ([`super::tuning`]). Measured on real music
//! (`plugin/tests/fingerprint_real.rs`, changed by SoX): every change here brings the licensed
//! track's worst 20 s window under 0.18, and no undoing brings another track under 0.31.

use super::fingerprint;

/// A change the matcher undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Played faster (higher) or slower (lower) by this many cents: pitch and tempo together,
    /// as a turntable or a resampler changes them.
    Speed(i16),
    /// Tempo changed by this many percent (faster when positive), pitch kept.
    Tempo(i8),
    /// Pitch shifted by this many cents (up when positive), tempo kept.
    Pitch(i16),
}

/// The tempo changes tried on a window's own sub-fingerprints (tempo steps in between match
/// within about 2% of one of them).
pub const TEMPO_STEPS: [i8; 4] = [4, -4, 8, -8];
/// The whole semitones tried (in cents), each as a speed change and as a pitch shift; shifts
/// between semitones come from the input's tuning ([`super::tuning::candidates`]).
pub const SEMITONES: [i16; 4] = [100, -100, 200, -200];

impl Transform {
    /// Every change the matcher undoes for input whose tuning sits `offset` cents from the
    /// reference's ([`super::tuning::candidates`]): the tempo steps, then each candidate
    /// shift as a pitch shift and as a speed change.
    pub fn all_for(offset: Option<f32>) -> impl Iterator<Item = Transform> {
        TEMPO_STEPS.into_iter().map(Transform::Tempo).chain(
            super::tuning::candidates(offset)
                .into_iter()
                .flat_map(|c| [Transform::Pitch(c), Transform::Speed(c)]),
        )
    }

    /// [`Self::all_for`] input on the reference's grid: tempo steps and whole semitones.
    pub fn all() -> impl Iterator<Item = Transform> {
        Self::all_for(None)
    }

    fn factor(cents: i16) -> f64 {
        2f64.powf(f64::from(cents) / 1200.0)
    }

    /// The rate to tell the fingerprinter audio recorded at `rate` is at, to hear it at its
    /// own pitch (`None`: as it is, for a tempo change).
    pub fn declared_rate(self, rate: u32) -> Option<u32> {
        match self {
            Transform::Speed(k) | Transform::Pitch(k) => {
                Some((f64::from(rate) / Transform::factor(k)).round() as u32)
            }
            Transform::Tempo(_) => None,
        }
    }

    /// The spacing to read the sub-fingerprints at (those of the audio at its declared rate)
    /// for the original's time axis.
    pub fn item_step(self) -> f64 {
        match self {
            // Heard at the declared rate, it is the original's speed again.
            Transform::Speed(_) => 1.0,
            // Faster by (1 + p/100): item m of the original is item m / (1 + p/100).
            Transform::Tempo(p) => 1.0 / (1.0 + f64::from(p) / 100.0),
            // At the declared rate it lasts f times longer than the original.
            Transform::Pitch(k) => Transform::factor(k),
        }
    }

    /// The sub-fingerprints of `audio` (mono, at `rate`) with the change undone; `plain` is
    /// their fingerprint as it is (reused for a tempo change).
    pub fn undo(self, audio: &[f32], rate: u32, plain: &[u32]) -> Result<Vec<u32>, String> {
        let items = match self.declared_rate(rate) {
            Some(r) => fingerprint::compute(&[audio.to_vec()], r)?,
            None => plain.to_vec(),
        };
        Ok(respace(&items, self.item_step()))
    }

    /// In words, for the log and README ("tempo +4%", "pitch -1 st", "speed +0.5 st").
    pub fn describe(self) -> String {
        let st = |c: i16| {
            if c % 100 == 0 {
                format!("{:+} st", c / 100)
            } else {
                format!("{:+.2} st", f64::from(c) / 100.0)
            }
        };
        match self {
            Transform::Speed(c) => format!("speed {}", st(c)),
            Transform::Tempo(p) => format!("tempo {p:+}%"),
            Transform::Pitch(c) => format!("pitch {}", st(c)),
        }
    }
}

/// `items` read `step` items apart (item `m` of the result is item `m * step`, the nearest):
/// a fingerprint's time axis scaled by `1 / step`.
pub fn respace(items: &[u32], step: f64) -> Vec<u32> {
    if !(step.is_finite() && step > 0.0) {
        return items.to_vec();
    }
    (0..)
        .map(|m| (m as f64 * step).round() as usize)
        .take_while(|&i| i < items.len())
        .map(|i| items[i])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respacing_reads_the_items_at_the_step() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(respace(&items, 1.0), items);
        assert_eq!(respace(&items, 2.0), vec![0, 2, 4, 6, 8]);
        assert_eq!(respace(&items, 0.5).len(), 19);
        assert_eq!(respace(&items, 0.5)[..5], [0, 1, 1, 2, 2]);
        assert_eq!(respace(&items, f64::NAN), items);
    }

    #[test]
    fn each_undo_gives_the_original_pitch_and_time_axis() {
        // A change by `t` of a recording, then heard at the declared rate and read at the item
        // step: its pitch and its length (in the original's items) come back.
        for t in Transform::all() {
            let (pitch, speed) = match t {
                Transform::Speed(k) => (Transform::factor(k), Transform::factor(k)),
                Transform::Tempo(p) => (1.0, 1.0 + f64::from(p) / 100.0),
                Transform::Pitch(k) => (Transform::factor(k), 1.0),
            };
            let rate = 48_000u32;
            let heard = f64::from(t.declared_rate(rate).unwrap_or(rate)) / f64::from(rate);
            // Pitch as heard: the change times the declared rate's.
            assert!(
                (pitch * heard - 1.0).abs() < 1e-4,
                "{t:?}: pitch {}",
                pitch * heard
            );
            // Length: the original's 1 s lasts 1/speed as changed, 1/(speed * heard) as heard,
            // and the step brings that back to 1.
            let length = 1.0 / (speed * heard) / t.item_step();
            assert!((length - 1.0).abs() < 1e-4, "{t:?}: length {length}");
        }
        assert_eq!(Transform::all().count(), 12);
        // Between semitones as well.
        for t in [Transform::Pitch(50), Transform::Speed(-150)] {
            let rate = 44_100u32;
            let heard = f64::from(t.declared_rate(rate).unwrap()) / f64::from(rate);
            let shift = match t {
                Transform::Pitch(c) | Transform::Speed(c) => Transform::factor(c),
                Transform::Tempo(_) => unreachable!(),
            };
            assert!((shift * heard - 1.0).abs() < 1e-4, "{t:?}");
        }
        assert_eq!(Transform::Pitch(50).describe(), "pitch +0.50 st");
        assert_eq!(Transform::Speed(-200).describe(), "speed -2 st");
        assert!(Transform::all_for(Some(50.0)).any(|t| t == Transform::Speed(-150)));
    }
}
