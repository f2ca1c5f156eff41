//! MDX-Net (Ultimate Vocal Remover's ONNX models, shared/MODELS.md §3): the complex
//! spectrogram of a segment of `frames` frames in (left real, left imaginary, right real, right
//! imaginary, `[1, 4, bins, frames]`), the target stem's spectrogram out in the same layout,
//! times the model's compensation gain. The second stem is the mix minus the target, so the two
//! sum to the mix. Segments overlap by a quarter and the target is cross-faded there.

use super::model::SeparatorModel;
use super::overlap::Overlapped;
use super::stft::{Analysis, Framing, Synthesis};
use super::{SeparateError, StemStream};
use realfft::num_complex::Complex32;
use std::collections::VecDeque;

struct Frame {
    spectra: Vec<Vec<Complex32>>,
    /// The target's spectra once a run covered the frame (bins the model sees).
    target: Option<Vec<Vec<Complex32>>>,
}

/// Separates a stream of 1 or 2 channels at the model's rate with an MDX-Net model.
pub struct MdxSeparator {
    model: SeparatorModel,
    analysis: Analysis,
    /// The target's and the rest's synthesis.
    out: [Synthesis; 2],
    names: Vec<String>,
    channels: usize,
    frames: VecDeque<Frame>,
    segments: Overlapped,
    /// Frames per run (`dim_t`).
    segment: usize,
    bins: usize,
    compensation: f32,
    spectra: Vec<Vec<Complex32>>,
    framing: Framing,
    runs: u64,
}

impl MdxSeparator {
    pub fn new(
        model: SeparatorModel,
        channels: usize,
        hop: usize,
    ) -> Result<MdxSeparator, SeparateError> {
        if !(1..=2).contains(&channels) {
            return Err(SeparateError::Channels { channels });
        }
        let framing = Framing {
            fft: model.stems.fft,
            hop,
        };
        let segment = model.stems.frames;
        Ok(MdxSeparator {
            analysis: Analysis::new(framing, channels),
            out: [
                Synthesis::new(framing, channels),
                Synthesis::new(framing, channels),
            ],
            names: model.stems.names.clone(),
            channels,
            frames: VecDeque::new(),
            segments: Overlapped::new(segment, segment / 4),
            segment,
            bins: model.stems.bins,
            compensation: model.stems.compensation.unwrap_or(1.0),
            spectra: vec![Vec::new(); channels],
            framing,
            runs: 0,
            model,
        })
    }

    /// [`StemStream::lag`] for segments of `segment` frames fed a frame hop at a time: a run
    /// waits for a whole segment, whose first frame is at most `segment - 2` frames before the
    /// input's end, and a frame spans `fft` samples.
    pub fn lag_of(segment: usize, framing: Framing) -> usize {
        segment.saturating_sub(2) * framing.hop + framing.fft
    }

    fn collect_frames(&mut self) {
        while self.analysis.next_frame(&mut self.spectra) {
            self.frames.push_back(Frame {
                spectra: self.spectra.clone(),
                target: None,
            });
        }
    }

    /// Runs the model on the first `n` frames held (padded with silence to a segment) and
    /// stores their target, cross-fading the frames the previous run covered.
    fn run(&mut self, n: usize) -> Result<(), SeparateError> {
        let (t, b) = (self.segment, self.bins);
        let mut input = vec![0.0f32; 4 * b * t];
        for (f, frame) in self.frames.iter().take(n).enumerate() {
            for m in 0..2 {
                let c = m.min(self.channels - 1);
                for k in 0..b {
                    let v = frame.spectra[c][k];
                    input[((2 * m) * b + k) * t + f] = v.re;
                    input[((2 * m + 1) * b + k) * t + f] = v.im;
                }
            }
        }
        let out = self.model.run_shaped(input, &[1, 4, b, t], &[1, 4, b, t])?;
        self.runs += 1;
        let g = self.compensation;
        for f in 0..n {
            let mut target = vec![vec![Complex32::default(); b]; self.channels];
            for (c, row) in target.iter_mut().enumerate() {
                // Mono audio went in as both channels: its target is their mean.
                let models: &[usize] = if self.channels == 1 { &[0, 1] } else { &[c] };
                for &m in models {
                    for (k, v) in row.iter_mut().enumerate() {
                        let re = out[((2 * m) * b + k) * t + f];
                        let im = out[((2 * m + 1) * b + k) * t + f];
                        *v += Complex32::new(re, im) * (g / models.len() as f32);
                    }
                }
            }
            let frame = &mut self.frames[f];
            if let (Some(old), Some(w)) = (&frame.target, self.segments.fade(f)) {
                for (new_c, old_c) in target.iter_mut().zip(old) {
                    for (nv, ov) in new_c.iter_mut().zip(old_c) {
                        *nv = ov + (*nv - ov) * w;
                    }
                }
            }
            frame.target = Some(target);
        }
        Ok(())
    }

    fn emit(&mut self, n: usize, out: &mut [Vec<Vec<f32>>]) {
        for frame in self.frames.drain(..n) {
            let target = frame.target.expect("a run covered every frame emitted");
            let full: Vec<Vec<Complex32>> = frame
                .spectra
                .iter()
                .zip(&target)
                .map(|(s, t)| {
                    (0..s.len())
                        .map(|k| t.get(k).copied().unwrap_or_default())
                        .collect()
                })
                .collect();
            let rest: Vec<Vec<Complex32>> = frame
                .spectra
                .iter()
                .zip(&full)
                .map(|(s, t)| s.iter().zip(t).map(|(a, b)| a - b).collect())
                .collect();
            self.out[0].add(&full, |_, _| 1.0);
            self.out[1].add(&rest, |_, _| 1.0);
            for (synthesis, o) in self.out.iter_mut().zip(out.iter_mut()) {
                synthesis.take(o, false);
            }
        }
    }
}

impl StemStream for MdxSeparator {
    fn stem_names(&self) -> &[String] {
        &self.names
    }

    fn push(&mut self, planar: &[&[f32]], out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        self.analysis.push(planar);
        self.collect_frames();
        while let Some(n) = self.segments.next_run(self.frames.len(), false) {
            self.run(n)?;
            let leave = self.segments.ran(self.frames.len(), false);
            self.emit(leave, out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        self.analysis.finish();
        self.collect_frames();
        while let Some(n) = self.segments.next_run(self.frames.len(), true) {
            self.run(n)?;
            let leave = self.segments.ran(self.frames.len(), true);
            self.emit(leave, out);
        }
        self.emit(self.frames.len(), out);
        for (synthesis, o) in self.out.iter_mut().zip(out.iter_mut()) {
            synthesis.take(o, true);
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
        MdxSeparator::lag_of(self.segment, self.framing)
    }

    fn reset(&mut self) {
        let (framing, channels) = (self.framing, self.channels);
        self.analysis = Analysis::new(framing, channels);
        self.out = [
            Synthesis::new(framing, channels),
            Synthesis::new(framing, channels),
        ];
        self.frames.clear();
        self.segments = Overlapped::new(self.segment, self.segment / 4);
    }
}
