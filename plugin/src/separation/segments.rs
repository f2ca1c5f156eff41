//! Studio separation of a stream: the model sees segments of frames (Spleeter's 512), each
//! overlapping the last by a few frames whose masks are cross-faded, so there are no seams
//! where Spleeter's own unoverlapped segments leave them. Memory is one segment, whatever the
//! stream's length.
//!
//! Stream in at the model's rate -> [`Analysis`] -> frames -> segment -> [`MaskModel`] ->
//! masks (cross-faded in the overlap) -> each stem's [`Synthesis`] -> stems out, aligned with
//! the input sample for sample (no delay: the caller gets every stem sample of every input
//! sample by the end).

use super::four_stems::{self, FourStems};
use super::masks::MaskModel;
use super::stft::{Analysis, Framing, Synthesis};
use super::SeparateError;
use realfft::num_complex::Complex32;
use std::collections::VecDeque;

/// Spleeter's segment: 512 frames (11.9 s at 44.1 kHz).
pub const STUDIO_SEGMENT: usize = 512;
/// Frames each segment shares with the next, cross-faded (1.5 s).
pub const STUDIO_OVERLAP: usize = 64;

/// A frame on its way through: the spectra of the audio channels and, once a segment has
/// covered it, its masks (`[stem][audio channel][bin]`, flattened).
struct Frame {
    spectra: Vec<Vec<Complex32>>,
    masks: Option<Vec<f32>>,
}

/// The accompaniment's split into drums, bass and other.
struct Split {
    /// The model's accompaniment stem.
    from: usize,
    /// The output index of drums (bass and other follow).
    first: usize,
    dsp: FourStems,
}

/// Separates a stream of 1 or 2 channels at the model's rate into its stems.
pub struct Separator {
    model: MaskModel,
    framing: Framing,
    channels: usize,
    segment: usize,
    overlap: usize,
    analysis: Analysis,
    /// One per output stem ([`Self::stem_names`]).
    stems: Vec<Synthesis>,
    names: Vec<String>,
    /// With four stems: the model's accompaniment split by DSP into drums, bass and other.
    split: Option<Split>,
    /// Frames not yet emitted, oldest first; the first `carried` have masks from the previous
    /// segment.
    frames: VecDeque<Frame>,
    carried: usize,
    spectra: Vec<Vec<Complex32>>,
    /// Which stem takes the bins above what the model sees.
    above: Option<usize>,
    /// Segments run so far.
    pub segments_run: u64,
}

impl Separator {
    /// A separator for `channels` audio channels (1 or 2) in segments of `segment` frames that
    /// overlap by `overlap`. With `four_stems`, the model's `accompaniment` is split by DSP
    /// into drums, bass and other ([`four_stems`]).
    pub fn new(
        model: MaskModel,
        channels: usize,
        segment: usize,
        overlap: usize,
        hop: usize,
        rate: u32,
        four_stems: bool,
    ) -> Result<Separator, SeparateError> {
        if !(1..=2).contains(&channels) {
            return Err(SeparateError::Channels { channels });
        }
        let multiple = model.stems.frames_multiple;
        if segment == 0 || !segment.is_multiple_of(multiple) || overlap >= segment {
            return Err(SeparateError::Segment {
                segment,
                overlap,
                multiple,
            });
        }
        let framing = Framing {
            fft: model.stems.fft,
            hop,
        };
        let above = model
            .stems
            .names
            .iter()
            .position(|n| *n == model.stems.above_bins);
        let mut names = model.stems.names.clone();
        let split = if four_stems {
            let Some(from) = names.iter().position(|n| n == "accompaniment") else {
                return Err(SeparateError::NoAccompaniment {
                    id: model.id.clone(),
                    stems: names.join(", "),
                });
            };
            names.remove(from);
            let first = names.len();
            names.extend(four_stems::NAMES.iter().map(|n| n.to_string()));
            Some(Split {
                from,
                first,
                dsp: FourStems::new(framing.bins(), framing.fft, rate, channels),
            })
        } else {
            None
        };
        Ok(Separator {
            analysis: Analysis::new(framing, channels),
            stems: (0..names.len())
                .map(|_| Synthesis::new(framing, channels))
                .collect(),
            names,
            split,
            model,
            framing,
            channels,
            segment,
            overlap,
            frames: VecDeque::new(),
            carried: 0,
            spectra: vec![Vec::new(); channels],
            above,
            segments_run: 0,
        })
    }

    /// The stems, in output order.
    pub fn stem_names(&self) -> &[String] {
        &self.names
    }

    pub fn model(&self) -> &MaskModel {
        &self.model
    }

    /// Feeds planar input; appends what is ready of each stem to `out[stem][channel]`.
    pub fn push(
        &mut self,
        planar: &[&[f32]],
        out: &mut [Vec<Vec<f32>>],
    ) -> Result<(), SeparateError> {
        self.analysis.push(planar);
        self.collect_frames();
        while self.frames.len() >= self.segment {
            self.run_segment(self.segment)?;
            self.emit(self.segment - self.overlap, out);
            self.carried = self.overlap;
        }
        Ok(())
    }

    /// Ends the stream: the last segment (shorter, padded to the model's multiple) and every
    /// sample still held. Each stem then has at least as many samples as went in (the caller
    /// cuts the rest).
    pub fn finish(&mut self, out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        self.analysis.finish();
        self.collect_frames();
        while self.frames.len() > self.carried {
            let n = self.frames.len().min(self.segment);
            self.run_segment(n)?;
            if self.frames.len() > self.segment {
                self.emit(self.segment - self.overlap, out);
                self.carried = self.overlap;
            } else {
                self.carried = self.frames.len();
            }
        }
        // What is left has its final masks.
        self.emit(self.frames.len(), out);
        if let Some(split) = &mut self.split {
            let stems = &mut self.stems;
            split.dsp.finish(&mut |i, spectra| {
                stems[split.first + i].add(spectra, |_, _| 1.0);
            });
        }
        for (synthesis, o) in self.stems.iter_mut().zip(out.iter_mut()) {
            synthesis.take(o, true);
        }
        Ok(())
    }

    fn collect_frames(&mut self) {
        while self.analysis.next_frame(&mut self.spectra) {
            self.frames.push_back(Frame {
                spectra: self.spectra.clone(),
                masks: None,
            });
        }
    }

    /// Runs the model on the first `n` frames held and stores their masks, cross-fading those
    /// that already had masks from the previous segment.
    fn run_segment(&mut self, n: usize) -> Result<(), SeparateError> {
        let bins = self.model.stems.bins;
        let multiple = self.model.stems.frames_multiple;
        let padded = n.div_ceil(multiple) * multiple;
        let mc = self.model.channels;
        let stems = self.model.stems.names.len();
        // The model's channels from the audio's: mono is given to a stereo model twice; a
        // mono model takes each channel of stereo audio in its own run.
        let runs: Vec<Vec<usize>> = if mc == self.channels {
            vec![(0..mc).collect()]
        } else if mc == 2 {
            vec![vec![0, 0]]
        } else {
            (0..self.channels).map(|c| vec![c]).collect()
        };
        // masks[stem][audio channel][frame][bin]
        let mut masks = vec![0.0f32; stems * self.channels * n * bins];
        for run in &runs {
            let mut magnitude = vec![0.0f32; mc * padded * bins];
            for (m, &c) in run.iter().enumerate() {
                for (f, frame) in self.frames.iter().take(n).enumerate() {
                    let row = &mut magnitude[(m * padded + f) * bins..][..bins];
                    for (o, s) in row.iter_mut().zip(&frame.spectra[c]) {
                        *o = s.norm();
                    }
                }
            }
            let out = self.model.run(magnitude, padded)?;
            self.segments_run += 1;
            // Each audio channel's mask: the mean over the model channels that carried it.
            for s in 0..stems {
                for c in 0..self.channels {
                    let carriers: Vec<usize> = (0..mc).filter(|&m| run[m] == c).collect();
                    if carriers.is_empty() {
                        continue;
                    }
                    let scale = 1.0 / carriers.len() as f32;
                    for f in 0..n {
                        let dst = &mut masks[((s * self.channels + c) * n + f) * bins..][..bins];
                        for &m in &carriers {
                            let src = &out[((s * mc + m) * padded + f) * bins..][..bins];
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d += v * scale;
                            }
                        }
                    }
                }
            }
        }
        let per_frame = stems * self.channels * bins;
        for (f, frame) in self.frames.iter_mut().take(n).enumerate() {
            let mut new = vec![0.0f32; per_frame];
            for s in 0..stems {
                for c in 0..self.channels {
                    new[(s * self.channels + c) * bins..][..bins].copy_from_slice(
                        &masks[((s * self.channels + c) * n + f) * bins..][..bins],
                    );
                }
            }
            if let (Some(old), true) = (&frame.masks, f < self.carried) {
                // Cross-fade from the previous segment's masks to this one's.
                let w = (f + 1) as f32 / (self.carried + 1) as f32;
                for (nv, &ov) in new.iter_mut().zip(old) {
                    *nv = ov + (*nv - ov) * w;
                }
            }
            frame.masks = Some(new);
        }
        Ok(())
    }

    /// Synthesises the first `n` frames held into every stem and drops them.
    fn emit(&mut self, n: usize, out: &mut [Vec<Vec<f32>>]) {
        let bins = self.model.stems.bins;
        let channels = self.channels;
        let model_stems = self.model.stems.names.len();
        for frame in self.frames.drain(..n) {
            let masks = frame.masks.expect("a segment ran over every frame emitted");
            let mut output = 0;
            for s in 0..model_stems {
                let above = if self.above == Some(s) { 1.0 } else { 0.0 };
                let m = &masks[s * channels * bins..(s + 1) * channels * bins];
                let mask = |c: usize, k: usize| if k < bins { m[c * bins + k] } else { above };
                match &mut self.split {
                    Some(split) if split.from == s => {
                        let masked: Vec<Vec<Complex32>> = frame
                            .spectra
                            .iter()
                            .enumerate()
                            .map(|(c, sp)| {
                                sp.iter().enumerate().map(|(k, v)| v * mask(c, k)).collect()
                            })
                            .collect();
                        let (stems, first) = (&mut self.stems, split.first);
                        split.dsp.push(masked, &mut |i, spectra| {
                            stems[first + i].add(spectra, |_, _| 1.0);
                            stems[first + i].take(&mut out[first + i], false);
                        });
                    }
                    _ => {
                        self.stems[output].add(&frame.spectra, mask);
                        self.stems[output].take(&mut out[output], false);
                        output += 1;
                    }
                }
            }
        }
        self.carried = self.carried.saturating_sub(n);
    }

    /// The STFT geometry.
    pub fn framing(&self) -> Framing {
        self.framing
    }
}
