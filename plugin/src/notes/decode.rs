//! Basic Pitch's posteriorgrams into notes, as the reference decoder (`note_creation.py`,
//! `output_to_notes_polyphonic`) does it: onsets inferred from rises in the note activations,
//! each onset peak above the onset threshold followed until its note activation stays below the
//! frame threshold for `energy_tol` frames, then the "melodia trick" (notes without an onset,
//! grown both ways from the strongest activation left). Notes must be strictly longer than the
//! minimum length. Refrain's frame threshold defaults to 0.5, not the reference's 0.3, which
//! turns strong harmonics into extra notes (shared/MODELS.md §5, DECISIONS.md §4).

use super::basic_pitch::{Posteriorgram, CONTOUR_BINS, KEYS, LOWEST_KEY};
use super::{Note, NotesError};

/// How notes are found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// An onset peak must exceed this (0..1).
    pub onset_threshold: f32,
    /// A note lasts while its activation is at least this (0..1).
    pub frame_threshold: f32,
    /// Notes must be longer than this.
    pub min_note_ms: f64,
    /// Frames below the frame threshold a note may bridge.
    pub energy_tol: usize,
    /// Also find notes without a clear onset.
    pub melodia_trick: bool,
    /// Treat rises in the note activation as onsets too.
    pub infer_onsets: bool,
    /// Follow each note's pitch in the contour (thirds of a semitone, within 25 of its key).
    pub pitch_bends: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            onset_threshold: 0.5,
            frame_threshold: 0.5,
            min_note_ms: 127.7,
            energy_tol: 11,
            melodia_trick: true,
            infer_onsets: true,
            pitch_bends: false,
        }
    }
}

impl Settings {
    /// Checks every setting, naming what is valid.
    pub fn check(&self) -> Result<(), NotesError> {
        for (name, v) in [
            ("onset threshold", self.onset_threshold),
            ("frame threshold", self.frame_threshold),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(NotesError::Setting {
                    name,
                    value: v as f64,
                    valid: "between 0 and 1 (exclusive)",
                });
            }
        }
        if !(0.0..=10_000.0).contains(&self.min_note_ms) {
            return Err(NotesError::Setting {
                name: "minimum note length (ms)",
                value: self.min_note_ms,
                valid: "0 to 10000 ms",
            });
        }
        Ok(())
    }

    /// The minimum length in frames (86.13 frames per second), as the reference rounds it.
    pub fn min_note_frames(&self) -> usize {
        (self.min_note_ms / 1000.0 * 22_050.0 / 256.0).round() as usize
    }
}

// Frames and keys are indexed as the reference indexes them, across several arrays at once.
#[allow(clippy::needless_range_loop)]
/// The reference's inferred onsets: where the note activation rises over one and two frames
/// (the smaller rise), scaled to the onsets' peak, and the larger of that and the onsets.
fn inferred_onsets(p: &Posteriorgram) -> Vec<[f32; KEYS]> {
    let n = p.notes.len();
    let mut diff = vec![[0.0f32; KEYS]; n];
    let mut max_diff = 0.0f32;
    for t in 2..n {
        for k in 0..KEYS {
            let d1 = p.notes[t][k] - p.notes[t - 1][k];
            let d2 = p.notes[t][k] - p.notes[t - 2][k];
            let d = d1.min(d2).max(0.0);
            diff[t][k] = d;
            max_diff = max_diff.max(d);
        }
    }
    let max_onset = p
        .onsets
        .iter()
        .flat_map(|f| f.iter())
        .fold(0.0f32, |a, &b| a.max(b));
    let scale = if max_diff > 0.0 {
        max_onset / max_diff
    } else {
        0.0
    };
    p.onsets
        .iter()
        .zip(&diff)
        .map(|(o, d)| {
            let mut f = [0.0f32; KEYS];
            for k in 0..KEYS {
                f[k] = o[k].max(d[k] * scale);
            }
            f
        })
        .collect()
}

/// A note as the decoder finds it, in frames of the posteriorgram it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    pub start: usize,
    /// One past the last frame.
    pub end: usize,
    /// Key index (0 = A0).
    pub key: usize,
    /// Mean note activation over the note.
    pub amplitude: f32,
}

/// Contour bins on each side of a note's key that a bend may reach, and the width of the
/// Gaussian that favours the key (the reference's `n_bins_tolerance` and `std`).
const BEND_REACH: usize = 25;
const BEND_SIGMA: f32 = 5.0;

impl Found {
    /// The note, with `p`'s times (and, with `bends`, its pitch bends).
    pub fn note(&self, p: &Posteriorgram, bends: bool) -> Note {
        let last = p.times.len().saturating_sub(1);
        Note {
            start: p.times[self.start.min(last)],
            end: p.times[self.end.min(last)],
            key: LOWEST_KEY + self.key as u8,
            velocity: (self.amplitude * 127.0).round().clamp(1.0, 127.0) as u8,
            bends: if bends { self.bends(p) } else { Vec::new() },
        }
    }

    /// Per frame, the contour bin nearest the key that is strongest once weighted by a
    /// Gaussian around the key, as an offset from the key in thirds of a semitone.
    ///
    /// The key's bin is the middle one of its three (`3 * key + 1`), not the reference's
    /// `3 * key`: an in-tune C4 through the real model peaks one bin above the reference's
    /// centre, so the reference bends every in-tune note a third of a semitone sharp (the test
    /// `pitch_bends_follow_a_note_sung_a_third_of_a_semitone_sharp` measures both).
    fn bends(&self, p: &Posteriorgram) -> Vec<(f64, i8)> {
        (self.start..self.end.min(p.contours.len()))
            .map(|f| (p.times[f], bend_at(p, self.key, f)))
            .collect()
    }
}

/// The bend of a note of key index `key` at frame `f` of `p` ([`Found::bends`]), in thirds of
/// a semitone.
pub fn bend_at(p: &Posteriorgram, key: usize, f: usize) -> i8 {
    let centre = 3 * key + 1;
    let lo = centre.saturating_sub(BEND_REACH);
    let hi = (centre + BEND_REACH + 1).min(CONTOUR_BINS);
    let Some(row) = p.contours.get(f) else {
        return 0;
    };
    let best = (lo..hi)
        .max_by(|&a, &b| {
            let w = |i: usize| {
                let d = (i as f32 - centre as f32) / BEND_SIGMA;
                row[i] * (-0.5 * d * d).exp()
            };
            // The first of equal values, as numpy's argmax.
            w(a).total_cmp(&w(b)).then(b.cmp(&a))
        })
        .unwrap_or(centre);
    (best as i64 - centre as i64) as i8
}

/// Notes in `p`, ordered by start time then key.
pub fn notes(p: &Posteriorgram, s: &Settings) -> Vec<Note> {
    let mut out: Vec<Note> = decode(p, s, &[])
        .iter()
        .map(|f| f.note(p, s.pitch_bends))
        .collect();
    out.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.key.cmp(&b.key)));
    out
}

/// The reference decoder over `p`. `taken` are notes found before (key index, first frame,
/// end frame, in `p`'s frames): their key and its neighbours are taken out of the energy first,
/// as the decoder does with the notes it finds, so a note that runs on from an earlier part of
/// a stream is not found again.
pub fn decode(p: &Posteriorgram, s: &Settings, taken: &[(usize, usize, usize)]) -> Vec<Found> {
    let n = p.notes.len();
    if n < 3 {
        return Vec::new();
    }
    let onsets = if s.infer_onsets {
        inferred_onsets(p)
    } else {
        p.onsets.clone()
    };
    let min_len = s.min_note_frames();
    let tol = s.energy_tol;
    let thresh = s.frame_threshold;
    let mut remaining = p.notes.clone();
    for &(k, from, to) in taken {
        for row in &mut remaining[from.min(n)..to.min(n)] {
            take_out(row, k);
        }
    }
    // (start frame, end frame, key index, mean activation)
    let mut found: Vec<(usize, usize, usize, f32)> = Vec::new();
    // Onset peaks: strict local maxima in time above the threshold, latest first (and, at one
    // time, highest key first), as the reference iterates them.
    let mut peaks = Vec::new();
    for (t, w) in onsets.windows(3).enumerate() {
        for (k, &v) in w[1].iter().enumerate() {
            if v > w[0][k] && v > w[2][k] && v >= s.onset_threshold {
                peaks.push((t + 1, k));
            }
        }
    }
    for &(start, k) in peaks.iter().rev() {
        if start >= n - 1 {
            continue;
        }
        let mut i = start + 1;
        let mut below = 0;
        while i < n - 1 && below < tol {
            if remaining[i][k] < thresh {
                below += 1;
            } else {
                below = 0;
            }
            i += 1;
        }
        i -= below;
        if i - start <= min_len {
            continue;
        }
        for row in &mut remaining[start..i] {
            take_out(row, k);
        }
        found.push((start, i, k, mean(p, start, i, k)));
    }
    if s.melodia_trick {
        loop {
            // The strongest activation left (the first, in time-major order, on a tie).
            let mut best = (0usize, 0usize);
            let mut best_v = f32::NEG_INFINITY;
            for (t, row) in remaining.iter().enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    if v > best_v {
                        best_v = v;
                        best = (t, k);
                    }
                }
            }
            if best_v <= thresh {
                break;
            }
            let (mid, k) = best;
            remaining[mid][k] = 0.0;
            // Forward.
            let mut i = mid + 1;
            let mut below = 0;
            while i < n - 1 && below < tol {
                if remaining[i][k] < thresh {
                    below += 1;
                } else {
                    below = 0;
                }
                take_out(&mut remaining[i], k);
                i += 1;
            }
            let end = i - 1 - below;
            // Backward.
            let mut i = mid as isize - 1;
            let mut below = 0;
            while i > 0 && below < tol {
                if remaining[i as usize][k] < thresh {
                    below += 1;
                } else {
                    below = 0;
                }
                take_out(&mut remaining[i as usize], k);
                i -= 1;
            }
            let start = (i + 1 + below as isize).max(0) as usize;
            if end <= start || end - start <= min_len {
                continue;
            }
            found.push((start, end, k, mean(p, start, end, k)));
        }
    }
    found
        .into_iter()
        .map(|(start, end, key, amplitude)| Found {
            start,
            end,
            key,
            amplitude,
        })
        .collect()
}

/// Takes key `k` and its two neighbours out of a frame's remaining energy, as the reference
/// does for every note it finds.
fn take_out(row: &mut [f32; KEYS], k: usize) {
    row[k] = 0.0;
    if k + 1 < KEYS {
        row[k + 1] = 0.0;
    }
    if k > 0 {
        row[k - 1] = 0.0;
    }
}

fn mean(p: &Posteriorgram, start: usize, end: usize, k: usize) -> f32 {
    let span = &p.notes[start..end.max(start + 1).min(p.notes.len())];
    span.iter().map(|f| f[k]).sum::<f32>() / span.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A posteriorgram of `n` frames at 86.13 per second with one note drawn in.
    fn drawn(n: usize, key: usize, on: usize, off: usize, onset: bool) -> Posteriorgram {
        let mut p = Posteriorgram {
            times: (0..n).map(|i| i as f64 * 256.0 / 22_050.0).collect(),
            notes: vec![[0.0; KEYS]; n],
            onsets: vec![[0.0; KEYS]; n],
            contours: vec![[0.0; CONTOUR_BINS]; n],
        };
        for f in on..off {
            p.notes[f][key] = 0.9;
        }
        if onset {
            p.onsets[on][key] = 0.95;
        }
        p
    }

    #[test]
    fn a_drawn_note_comes_out_with_its_key_and_frames() {
        let p = drawn(200, 39, 50, 100, true);
        let notes = notes(&p, &Settings::default());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].key, 60);
        assert!((notes[0].start - p.times[50]).abs() < 1e-9);
        assert!((notes[0].end - p.times[100]).abs() < 1e-9);
    }

    #[test]
    fn a_note_with_no_onset_is_found_by_the_melodia_trick_only() {
        let p = drawn(200, 39, 50, 100, false);
        let s = Settings {
            infer_onsets: false,
            ..Settings::default()
        };
        assert_eq!(notes(&p, &s).len(), 1);
        let without = Settings {
            melodia_trick: false,
            ..s
        };
        assert!(notes(&p, &without).is_empty());
    }

    #[test]
    fn notes_no_longer_than_the_minimum_are_dropped() {
        // 11 frames is the minimum: a note must be strictly longer.
        let p = drawn(200, 39, 50, 61, true);
        assert!(notes(&p, &Settings::default()).is_empty());
        let p = drawn(200, 39, 50, 62, true);
        assert_eq!(notes(&p, &Settings::default()).len(), 1);
    }

    #[test]
    fn settings_outside_their_range_name_what_is_valid() {
        let bad = Settings {
            frame_threshold: 1.5,
            ..Settings::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(
            e.contains("frame threshold") && e.contains("between 0 and 1"),
            "{e}"
        );
    }
}
