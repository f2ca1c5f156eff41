//! Joining a voice model's overlapping runs without a click: SOLA (synchronous overlap-add), as
//! RVC's realtime client does it (shared/MODELS.md §2).
//!
//! Each run re-synthesises the whole window, so consecutive runs disagree in phase where they
//! meet. The new run is slid by the offset (within a short search range) where it best
//! correlates with the tail the previous run left, normalised by the new segment's energy, and
//! the two are cross-faded with a raised-cosine (sin²) fade over the crossfade length.

/// The join state: the tail the previous run left, and the fades.
#[derive(Debug, Clone)]
pub struct Sola {
    hop: usize,
    crossfade: usize,
    search: usize,
    /// What the previous run produced just past the block it emitted: the next block fades
    /// in over it.
    tail: Vec<f32>,
    fade_in: Vec<f32>,
}

impl Sola {
    /// Joins blocks of `hop` samples with a `crossfade`-sample fade, searching `search`
    /// samples of offset.
    pub fn new(hop: usize, crossfade: usize, search: usize) -> Sola {
        let crossfade = crossfade.max(1);
        let fade_in = (0..crossfade)
            .map(|i| {
                let t = (i as f32 + 0.5) / crossfade as f32;
                (t * std::f32::consts::FRAC_PI_2).sin().powi(2)
            })
            .collect();
        Sola {
            hop,
            crossfade,
            search,
            tail: vec![0.0; crossfade],
            fade_in,
        }
    }

    /// The crossfade's length in samples.
    pub fn crossfade(&self) -> usize {
        self.crossfade
    }

    /// Samples of a run's end one join needs: the block, the crossfade and the search range.
    pub fn needed(&self) -> usize {
        self.hop + self.crossfade + self.search
    }

    /// Joins the newest run: `run` is its last [`Self::needed`] samples; writes one block of
    /// `hop` samples to `out`. Allocation-free.
    pub fn join(&mut self, run: &[f32], out: &mut [f32]) {
        debug_assert_eq!(run.len(), self.needed());
        let xf = self.crossfade;
        // Nothing to match when the tail is 30 dB below the new run (a phrase starting): stay
        // on the nominal timing rather than align to noise.
        let tail_energy: f32 = self.tail.iter().map(|x| x * x).sum();
        let nominal = self.search / 2;
        let run_energy: f32 = run[nominal..nominal + xf].iter().map(|x| x * x).sum();
        let offset = if tail_energy <= 1e-3 * run_energy || tail_energy < 1e-12 {
            nominal
        } else {
            // The best-correlating offset; a periodic voice correlates as well one period
            // further, so among offsets within 2% of the best, the one nearest the nominal
            // keeps the timing steady (no period skipped or repeated from block to block).
            let score = |o: usize| {
                let seg = &run[o..o + xf];
                let num: f32 = seg.iter().zip(&self.tail).map(|(a, b)| a * b).sum();
                let den = (seg.iter().map(|a| a * a).sum::<f32>() + 1e-8).sqrt();
                num / den
            };
            let best = (0..=self.search).map(score).fold(f32::MIN, f32::max);
            let good = |o: usize| {
                let s = score(o);
                s >= best - 0.02 * best.abs()
                    && (o == 0 || s >= score(o - 1))
                    && (o == self.search || s >= score(o + 1))
            };
            (0..=self.search)
                .filter(|&o| good(o))
                .min_by_key(|&o| o.abs_diff(nominal))
                .unwrap_or(nominal)
        };
        let block = &run[offset..offset + self.hop];
        out.copy_from_slice(block);
        for ((o, w), t) in out.iter_mut().zip(&self.fade_in).zip(&self.tail) {
            *o = *o * w + t * (1.0 - w);
        }
        self.tail
            .copy_from_slice(&run[offset + self.hop..offset + self.hop + xf]);
    }

    /// Forgets the tail: the next block fades in from silence.
    pub fn reset(&mut self) {
        self.tail.fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that re-synthesises a sine each run with a phase of its own (as a vocoder does):
    /// cut-and-paste would click at every block; SOLA finds the phase and the join is smooth.
    #[test]
    fn runs_with_their_own_phase_join_without_a_step() {
        let (hop, xf, search) = (480, 96, 480);
        let mut sola = Sola::new(hop, xf, search);
        let f = 220.0f32 / 48_000.0;
        let mut out = vec![0.0; hop];
        let mut all = Vec::new();
        for run_no in 0..20 {
            let phase = run_no as f32 * 1.7;
            let run: Vec<f32> = (0..sola.needed())
                .map(|i| (std::f32::consts::TAU * f * i as f32 + phase).sin() * 0.5)
                .collect();
            sola.join(&run, &mut out);
            all.extend_from_slice(&out);
        }
        // After the first fade-in, the largest step is the sine's own (2 pi f A = 0.0144).
        let steps = all[2 * hop..]
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            steps < 1.5 * std::f32::consts::TAU * f * 0.5 + 0.001,
            "step {steps}"
        );
    }
}
