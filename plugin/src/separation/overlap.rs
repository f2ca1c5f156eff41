//! Studio's schedule of overlapped segments, shared by the separators that run one (Spleeter's
//! masks in [`super::separator`], MDX-Net's targets in [`super::mdx`]): which frames a run
//! covers, which leave after it, and how the frames a run shares with the one before are
//! cross-faded.

/// Segments of `segment` frames, each sharing its first `overlap` frames with the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overlapped {
    segment: usize,
    overlap: usize,
    /// Frames at the front of those held that the last run covered and did not let go.
    carried: usize,
}

impl Overlapped {
    pub fn new(segment: usize, overlap: usize) -> Overlapped {
        Overlapped {
            segment,
            overlap,
            carried: 0,
        }
    }

    /// The frames the next run covers from the front of the `held` ones, if it is due: a whole
    /// segment while the stream goes on; at its `ended`, what is left (at most a segment) as
    /// long as some of it has not been run yet.
    pub fn next_run(&self, held: usize, ended: bool) -> Option<usize> {
        if ended {
            (held > self.carried).then(|| held.min(self.segment))
        } else {
            (held >= self.segment).then_some(self.segment)
        }
    }

    /// The cross-fade weight of the new run's result for frame `f` of it, where the previous run
    /// also covered it (from the old result at 0 towards the new one at 1).
    pub fn fade(&self, f: usize) -> Option<f32> {
        (f < self.carried).then(|| (f + 1) as f32 / (self.carried + 1) as f32)
    }

    /// After a run over the `held` frames: how many leave now. The overlap stays for the next
    /// run to fade into; at the end, a last short run keeps everything until the caller lets
    /// it all go.
    pub fn ran(&mut self, held: usize, ended: bool) -> usize {
        if !ended || held > self.segment {
            self.carried = self.overlap;
            self.segment - self.overlap
        } else {
            self.carried = held;
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_is_run_and_leaves_once_and_shared_frames_are_faded() {
        for total in [0, 1, 63, 64, 65, 100, 129, 1000] {
            let mut s = Overlapped::new(64, 16);
            let (mut held, mut left, mut fed) = (0usize, 0usize, 0usize);
            let mut runs = 0;
            // Frames arrive ten at a time, then the stream ends.
            loop {
                let ended = fed == total;
                while let Some(n) = s.next_run(held, ended) {
                    assert!(n <= held && n <= 64);
                    if runs > 0 && !ended {
                        assert_eq!(s.fade(0), Some(1.0 / 17.0));
                    }
                    runs += 1;
                    let leave = s.ran(held, ended);
                    held -= leave;
                    left += leave;
                }
                if ended {
                    break;
                }
                let k = 10.min(total - fed);
                fed += k;
                held += k;
            }
            left += held;
            assert_eq!(left, total, "{total} frames");
            assert!(
                runs >= total.div_ceil(48).min(1),
                "{total} frames, {runs} runs"
            );
        }
    }
}
