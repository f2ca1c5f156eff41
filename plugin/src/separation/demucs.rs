//! Demucs / HTDemucs exported with the STFT inside (shared/MODELS.md §4): waveform segments of
//! `segment` samples in (`[1, channels, segment]`), every stem's waveform out
//! (`[1, stems, channels, segment]`). Segments overlap by the model's fraction (0.25) and are
//! cross-faded with Demucs's own triangular weights, normalised by their sum, so any overlap
//! joins without a bump.

use super::model::SeparatorModel;
use super::{SeparateError, StemStream};

/// The overlap of segments when the manifest does not say (Demucs's own).
pub const DEFAULT_OVERLAP: f32 = 0.25;

/// Separates a stream of 1 or 2 channels at the model's rate with a Demucs model.
pub struct DemucsSeparator {
    model: SeparatorModel,
    names: Vec<String>,
    channels: usize,
    segment: usize,
    stride: usize,
    /// Demucs's weights: a triangle over the segment, peak 1.
    weights: Vec<f32>,
    /// Per channel, the input from sample `start` on.
    input: Vec<Vec<f32>>,
    start: u64,
    /// `[stem][channel]`, weighted sums from sample `start` on, and the weights' sum.
    acc: Vec<Vec<Vec<f32>>>,
    weight_sum: Vec<f32>,
    received: u64,
    runs: u64,
    /// The lag when fed the manifest's hop at a time.
    lag: usize,
}

impl DemucsSeparator {
    pub fn new(
        model: SeparatorModel,
        channels: usize,
        hop: usize,
    ) -> Result<DemucsSeparator, SeparateError> {
        if !(1..=2).contains(&channels) {
            return Err(SeparateError::Channels { channels });
        }
        let segment = model.stems.segment;
        let overlap = model.stems.overlap.unwrap_or(DEFAULT_OVERLAP);
        let stride = Self::stride(segment, overlap);
        let half = segment / 2;
        let weights: Vec<f32> = (1..=half)
            .chain((1..=segment - half).rev())
            .map(|w| w as f32 / (segment - half).max(half) as f32)
            .collect();
        let stems = model.stems.names.len();
        Ok(DemucsSeparator {
            names: model.stems.names.clone(),
            channels,
            segment,
            stride,
            weights,
            input: vec![Vec::new(); channels],
            start: 0,
            acc: vec![vec![Vec::new(); channels]; stems],
            weight_sum: Vec::new(),
            received: 0,
            runs: 0,
            lag: Self::lag_of(segment, overlap, hop),
            model,
        })
    }

    /// [`StemStream::lag`] fed `hop` samples at a time: a run waits for a whole segment of
    /// input and lets `stride` samples go, so the output trails by the most input it holds,
    /// which is less than a segment; which value below it is reached depends on how hops and
    /// strides fall, so it is counted (the pattern repeats after `stride / gcd(hop, stride)`
    /// hops).
    pub fn lag_of(segment: usize, overlap: f32, hop: usize) -> usize {
        let stride = Self::stride(segment, overlap);
        let hop = hop.max(1);
        let (mut a, mut b) = (hop, stride);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        let pushes = stride / a + segment / hop + 2;
        let (mut held, mut most) = (0usize, 0usize);
        for _ in 0..pushes {
            held += hop;
            while held >= segment {
                held -= stride;
            }
            most = most.max(held);
        }
        most
    }

    /// Samples between one segment's start and the next's.
    fn stride(segment: usize, overlap: f32) -> usize {
        ((segment as f64 * (1.0 - overlap as f64)) as usize).max(1)
    }

    /// Runs the segment at `start` (the input is at least a segment long) and adds it in.
    fn run(&mut self) -> Result<(), SeparateError> {
        let (n, mc, stems) = (self.segment, self.model.channels, self.names.len());
        let runs = super::channel_runs(mc, self.channels);
        let mut sources = vec![vec![vec![0.0f32; n]; self.channels]; stems];
        for run in &runs {
            let mut x = vec![0.0f32; mc * n];
            for (m, &c) in run.iter().enumerate() {
                x[m * n..(m + 1) * n].copy_from_slice(&self.input[c][..n]);
            }
            let out = self.model.run_shaped(x, &[1, mc, n], &[1, stems, mc, n])?;
            self.runs += 1;
            for (s, source) in sources.iter_mut().enumerate() {
                for (m, &c) in run.iter().enumerate() {
                    let share = 1.0 / run.iter().filter(|&&d| d == c).count() as f32;
                    for (o, &v) in source[c].iter_mut().zip(&out[(s * mc + m) * n..][..n]) {
                        *o += v * share;
                    }
                }
            }
        }
        if self.weight_sum.len() < n {
            self.weight_sum.resize(n, 0.0);
        }
        for (w, &v) in self.weight_sum.iter_mut().zip(&self.weights) {
            *w += v;
        }
        for (acc, source) in self.acc.iter_mut().zip(&sources) {
            for (a, src) in acc.iter_mut().zip(source) {
                if a.len() < n {
                    a.resize(n, 0.0);
                }
                for ((o, &v), &w) in a.iter_mut().zip(src).zip(&self.weights) {
                    *o += v * w;
                }
            }
        }
        Ok(())
    }

    /// Moves the first `k` samples (no later segment adds to them) out, normalised.
    fn emit(&mut self, k: usize, out: &mut [Vec<Vec<f32>>]) {
        for (acc, o) in self.acc.iter_mut().zip(out.iter_mut()) {
            for (a, oc) in acc.iter_mut().zip(o.iter_mut()) {
                oc.extend(a[..k].iter().zip(&self.weight_sum).map(|(&v, &w)| {
                    if w > 0.0 {
                        v / w
                    } else {
                        0.0
                    }
                }));
                a.drain(..k);
            }
        }
        self.weight_sum.drain(..k);
        for c in &mut self.input {
            c.drain(..k.min(c.len()));
        }
        self.start += k as u64;
    }
}

impl StemStream for DemucsSeparator {
    fn stem_names(&self) -> &[String] {
        &self.names
    }

    fn push(&mut self, planar: &[&[f32]], out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        for (i, p) in self.input.iter_mut().zip(planar) {
            i.extend_from_slice(p);
        }
        self.received += planar.first().map_or(0, |c| c.len()) as u64;
        while self.input[0].len() >= self.segment {
            self.run()?;
            self.emit(self.stride, out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        while self.start < self.received {
            for c in &mut self.input {
                c.resize(self.segment, 0.0);
            }
            self.run()?;
            let left = (self.received - self.start) as usize;
            self.emit(self.stride.min(left), out);
        }
        Ok(())
    }

    fn runs(&self) -> u64 {
        self.runs
    }

    fn device(&self) -> &str {
        &self.model.device
    }

    fn lag(&self) -> usize {
        self.lag
    }

    fn reset(&mut self) {
        for c in &mut self.input {
            c.clear();
        }
        self.start = 0;
        for stem in &mut self.acc {
            for c in stem.iter_mut() {
                c.clear();
            }
        }
        self.weight_sum.clear();
        self.received = 0;
    }
}
