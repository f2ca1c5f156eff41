//! The streaming separator: a stream in at the model's rate, each stem out, aligned with the
//! input sample for sample (the caller gets every stem sample of every input sample by the
//! end). Two schedules decide which frames the model sees when:
//!
//! - **Studio** ([`Schedule::studio`]): segments of 512 frames (Spleeter's), each overlapping
//!   the last by 64 frames whose masks are cross-faded, so there are no seams where Spleeter's
//!   own unoverlapped segments leave them. What `refrain separate` runs on files.
//! - **Live** ([`Schedule::live`]): every `pass` new frames, one run on the newest `window`
//!   frames; each frame's mask comes from the run in which it sits between `lookahead` and
//!   `lookahead + pass - 1` frames before the window's end (shared/MODELS.md §7: a 64-frame
//!   window every 8 frames keeps up with real time on this machine's CPU). What the plugin's
//!   Live mode will hear, with a latency of [`Schedule::lookahead_samples`].
//!
//! Stream in -> [`Analysis`] -> frames -> model runs ([`SeparatorModel`]) -> masks -> each stem's
//! [`Synthesis`] (through [`FourStems`] for drums, bass and other) -> stems out. Memory is one
//! segment or window, whatever the stream's length.

use super::four_stems::{self, FourStems, TimeMedian};
use super::model::SeparatorModel;
use super::overlap::Overlapped;
use super::stft::{Analysis, Framing, Synthesis};
use super::{SeparateError, StemStream};
use crate::models::manifest::KIND_STEM_MASKS;
use realfft::num_complex::Complex32;
use std::collections::VecDeque;

/// Spleeter's segment: 512 frames (11.9 s at 44.1 kHz).
pub const STUDIO_SEGMENT: usize = 512;
/// Frames each segment shares with the next, cross-faded (1.5 s).
pub const STUDIO_OVERLAP: usize = 64;
/// Live: frames per run, and new frames between runs.
pub const LIVE_WINDOW: usize = 64;
pub const LIVE_PASS: usize = 8;
/// Live: frames after a frame that its run sees, at the least (README: the look-ahead curve).
pub const LIVE_LOOKAHEAD: usize = 4;

/// Which frames the model sees when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Segments of `segment` frames overlapping by `overlap`, masks cross-faded.
    Segments { segment: usize, overlap: usize },
    /// A run over the newest `window` frames every `pass` frames; a frame is at least
    /// `lookahead` frames from its run's end. With four stems, the split's median over time
    /// is `split` ([`FourStems::new`]).
    Windows {
        window: usize,
        pass: usize,
        lookahead: usize,
        split: TimeMedian,
    },
}

impl Schedule {
    /// Spleeter's 512-frame segments, overlapped by 64.
    pub fn studio() -> Schedule {
        Schedule::Segments {
            segment: STUDIO_SEGMENT,
            overlap: STUDIO_OVERLAP,
        }
    }

    /// A 64-frame window every 8 frames with `lookahead` frames of look-ahead, and the
    /// four-stem split's Live median ([`four_stems::LIVE`]).
    pub fn live(lookahead: usize) -> Schedule {
        Schedule::Windows {
            window: LIVE_WINDOW,
            pass: LIVE_PASS,
            lookahead,
            split: four_stems::LIVE,
        }
    }

    /// The four-stem split's median over time on this schedule: centred on segments.
    pub fn split(&self) -> TimeMedian {
        match *self {
            Schedule::Segments { .. } => four_stems::CENTRED,
            Schedule::Windows { split, .. } => split,
        }
    }

    /// How far ahead of an output sample the input must reach, in samples at the model's
    /// rate, for a stream (Live): the worst frame waits `lookahead + pass - 1` frames, and a
    /// frame spans `fft` samples. Studio is for files, where it does not apply.
    pub fn lookahead_samples(&self, framing: Framing) -> Option<usize> {
        match *self {
            Schedule::Segments { .. } => None,
            Schedule::Windows {
                pass, lookahead, ..
            } => Some((lookahead + pass - 1) * framing.hop + framing.fft),
        }
    }

    fn check(&self, multiple: usize) -> Result<(), SeparateError> {
        let ok = match *self {
            Schedule::Segments { segment, overlap } => {
                segment > 0 && segment.is_multiple_of(multiple) && overlap < segment
            }
            Schedule::Windows {
                window,
                pass,
                lookahead,
                ..
            } => {
                window > 0
                    && window.is_multiple_of(multiple)
                    && pass > 0
                    && pass + lookahead <= window
            }
        };
        if ok {
            Ok(())
        } else {
            Err(SeparateError::Schedule {
                schedule: *self,
                multiple,
            })
        }
    }
}

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
    model: SeparatorModel,
    channels: usize,
    schedule: Schedule,
    analysis: Analysis,
    /// One per output stem ([`Self::stem_names`]).
    stems: Vec<Synthesis>,
    names: Vec<String>,
    /// With four stems: the model's accompaniment split by DSP into drums, bass and other.
    split: Option<Split>,
    /// Frames not yet emitted, oldest first.
    frames: VecDeque<Frame>,
    /// Studio: the overlapped segments (unused by Live windows).
    segments: Overlapped,
    /// Live: per frame from `window_base` on, the magnitude of each audio channel
    /// (`[channel][bin]` flattened), for the runs still to come.
    history: VecDeque<Vec<f32>>,
    window_base: usize,
    /// Frames made and emitted so far.
    made: usize,
    emitted: usize,
    spectra: Vec<Vec<Complex32>>,
    /// Which stem takes the bins above what the model sees.
    above: Option<usize>,
    framing: Framing,
    rate: u32,
    /// Live: the model does not run; windows reuse the last run's masks.
    skipping: bool,
    /// Live: the last run's masks and the frame its window started at.
    last: Option<(Vec<f32>, isize)>,
    /// Segments run so far.
    pub segments_run: u64,
}

impl Separator {
    /// A separator for `channels` audio channels (1 or 2) on `schedule`. With `four_stems`,
    /// the model's `accompaniment` is split by DSP into drums, bass and other
    /// ([`four_stems`]).
    pub fn new(
        model: SeparatorModel,
        channels: usize,
        schedule: Schedule,
        hop: usize,
        rate: u32,
        four_stems: bool,
    ) -> Result<Separator, SeparateError> {
        if model.kind != KIND_STEM_MASKS {
            return Err(SeparateError::NotASeparator {
                id: model.id.clone(),
                kind: model.kind.clone(),
            });
        }
        if !(1..=2).contains(&channels) {
            return Err(SeparateError::Channels { channels });
        }
        schedule.check(model.stems.frames_multiple)?;
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
                dsp: FourStems::new(
                    framing.bins(),
                    framing.fft,
                    rate,
                    channels,
                    schedule.split(),
                ),
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
            channels,
            schedule,
            frames: VecDeque::new(),
            segments: match schedule {
                Schedule::Segments { segment, overlap } => Overlapped::new(segment, overlap),
                Schedule::Windows { .. } => Overlapped::default(),
            },
            history: VecDeque::new(),
            window_base: 0,
            made: 0,
            emitted: 0,
            spectra: vec![Vec::new(); channels],
            above,
            framing,
            rate,
            skipping: false,
            last: None,
            segments_run: 0,
        })
    }

    /// [`StemStream::lag`] for a `stem-masks` stream on `schedule` fed a frame hop at a time:
    /// Live, the worst frame waits `lookahead + pass - 2` frames past the input's end (the
    /// stream's first frame is Spleeter's silent padding) and a frame spans `fft` samples; with
    /// four stems, the split holds its median's `ahead` frames more. Studio segments
    /// wait for `segment - 2` frames.
    pub fn lag_of(schedule: Schedule, framing: Framing, four_stems: bool) -> usize {
        let frames = match schedule {
            Schedule::Segments { segment, .. } => segment.saturating_sub(2),
            Schedule::Windows {
                pass, lookahead, ..
            } => (pass + lookahead).saturating_sub(2),
        };
        let split = if four_stems {
            schedule.split().bounded().ahead
        } else {
            0
        };
        (frames + split) * framing.hop + framing.fft
    }

    /// The stems, in output order.
    pub fn stem_names(&self) -> &[String] {
        &self.names
    }

    /// Feeds planar input; appends what is ready of each stem to `out[stem][channel]`.
    pub fn push(
        &mut self,
        planar: &[&[f32]],
        out: &mut [Vec<Vec<f32>>],
    ) -> Result<(), SeparateError> {
        self.analysis.push(planar);
        self.collect_frames();
        match self.schedule {
            Schedule::Segments { .. } => {
                while let Some(n) = self.segments.next_run(self.frames.len(), false) {
                    self.run_segment(n)?;
                    let leave = self.segments.ran(self.frames.len(), false);
                    self.emit(leave, out);
                }
            }
            Schedule::Windows {
                window,
                pass,
                lookahead,
                ..
            } => {
                // The next run ends `lookahead` frames after the next group of `pass`.
                while self.made > self.emitted + pass - 1 + lookahead {
                    self.run_window(window, pass, lookahead)?;
                    self.emit(pass, out);
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: the last segment or windows (padded with silence) and every sample
    /// still held. Each stem then has at least as many samples as went in (the caller cuts the
    /// rest).
    pub fn finish(&mut self, out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        self.analysis.finish();
        self.collect_frames();
        match self.schedule {
            Schedule::Segments { .. } => {
                while let Some(n) = self.segments.next_run(self.frames.len(), true) {
                    self.run_segment(n)?;
                    let leave = self.segments.ran(self.frames.len(), true);
                    self.emit(leave, out);
                }
                // What is left has its final masks.
                self.emit(self.frames.len(), out);
            }
            Schedule::Windows {
                window,
                pass,
                lookahead,
                ..
            } => {
                while !self.frames.is_empty() {
                    self.run_window(window, pass, lookahead)?;
                    self.emit(pass.min(self.frames.len()), out);
                }
            }
        }
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
        let live = matches!(self.schedule, Schedule::Windows { .. });
        while self.analysis.next_frame(&mut self.spectra) {
            self.made += 1;
            if live {
                self.history.push_back(
                    self.spectra
                        .iter()
                        .flat_map(|s| s[..self.model.stems.bins].iter().map(|c| c.norm()))
                        .collect(),
                );
            }
            self.frames.push_back(Frame {
                spectra: self.spectra.clone(),
                masks: None,
            });
        }
    }

    /// Runs the model on `magnitude` (`[audio channel][frame][bin]`, `n` frames) and returns
    /// the masks `[stem][audio channel][frame][bin]`. Frames are padded to the model's
    /// multiple; mono goes to a stereo model twice, stereo to a mono model one channel a run.
    fn infer(&mut self, magnitude: &[f32], n: usize) -> Result<Vec<f32>, SeparateError> {
        let bins = self.model.stems.bins;
        let multiple = self.model.stems.frames_multiple;
        let padded = n.div_ceil(multiple) * multiple;
        let mc = self.model.channels;
        let stems = self.model.stems.names.len();
        let runs = super::channel_runs(mc, self.channels);
        let mut masks = vec![0.0f32; stems * self.channels * n * bins];
        for run in &runs {
            let mut input = vec![0.0f32; mc * padded * bins];
            for (m, &c) in run.iter().enumerate() {
                input[m * padded * bins..][..n * bins]
                    .copy_from_slice(&magnitude[c * n * bins..(c + 1) * n * bins]);
            }
            let out = self.model.run(input, padded)?;
            self.segments_run += 1;
            // Each audio channel's mask: the mean over the model channels that carried it.
            for s in 0..stems {
                for c in 0..self.channels {
                    let carriers: Vec<usize> = (0..mc).filter(|&m| run[m] == c).collect();
                    if carriers.is_empty() {
                        continue;
                    }
                    let scale = 1.0 / carriers.len() as f32;
                    let dst = &mut masks[(s * self.channels + c) * n * bins..][..n * bins];
                    for &m in &carriers {
                        let src = &out[(s * mc + m) * padded * bins..][..n * bins];
                        for (d, &v) in dst.iter_mut().zip(src) {
                            *d += v * scale;
                        }
                    }
                }
            }
        }
        Ok(masks)
    }

    /// Frame `f` (of `n`) of `masks` from [`Self::infer`], as `[stem][channel][bin]`.
    fn frame_masks(&self, masks: &[f32], n: usize, f: usize) -> Vec<f32> {
        let bins = self.model.stems.bins;
        let stems = self.model.stems.names.len();
        let mut out = vec![0.0f32; stems * self.channels * bins];
        for s in 0..stems {
            for c in 0..self.channels {
                let row = s * self.channels + c;
                out[row * bins..][..bins].copy_from_slice(&masks[(row * n + f) * bins..][..bins]);
            }
        }
        out
    }

    /// Studio: runs the model on the first `n` frames held and stores their masks,
    /// cross-fading those that already had masks from the previous segment.
    fn run_segment(&mut self, n: usize) -> Result<(), SeparateError> {
        let bins = self.model.stems.bins;
        let mut magnitude = vec![0.0f32; self.channels * n * bins];
        for (f, frame) in self.frames.iter().take(n).enumerate() {
            for c in 0..self.channels {
                let row = &mut magnitude[(c * n + f) * bins..][..bins];
                for (o, s) in row.iter_mut().zip(&frame.spectra[c]) {
                    *o = s.norm();
                }
            }
        }
        let masks = self.infer(&magnitude, n)?;
        for f in 0..n {
            let mut new = self.frame_masks(&masks, n, f);
            let frame = &mut self.frames[f];
            if let (Some(old), Some(w)) = (&frame.masks, self.segments.fade(f)) {
                // Cross-fade from the previous segment's masks to this one's.
                for (nv, &ov) in new.iter_mut().zip(old) {
                    *nv = ov + (*nv - ov) * w;
                }
            }
            frame.masks = Some(new);
        }
        Ok(())
    }

    /// Live: the run for the next group of `pass` frames, over the `window` frames ending
    /// `lookahead` frames after the group (silence before the stream and after its end).
    fn run_window(
        &mut self,
        window: usize,
        pass: usize,
        lookahead: usize,
    ) -> Result<(), SeparateError> {
        let bins = self.model.stems.bins;
        let end = self.emitted + pass - 1 + lookahead;
        let start = end as isize + 1 - window as isize;
        let mut magnitude = vec![0.0f32; self.channels * window * bins];
        for w in 0..window {
            let f = start + w as isize;
            if f < self.window_base as isize {
                continue;
            }
            let Some(h) = self.history.get(f as usize - self.window_base) else {
                continue;
            };
            for c in 0..self.channels {
                magnitude[(c * window + w) * bins..][..bins]
                    .copy_from_slice(&h[c * bins..][..bins]);
            }
        }
        let (masks, from) = match self.last.take() {
            // Skipping: each frame takes the mask the last run found for it (or, past that
            // run's end, the last frame it saw).
            Some((masks, from)) if self.skipping => (masks, from),
            _ => (self.infer(&magnitude, window)?, start),
        };
        let group = pass.min(self.frames.len());
        for g in 0..group {
            let w = ((self.emitted + g) as isize - from).clamp(0, window as isize - 1);
            let m = self.frame_masks(&masks, window, w as usize);
            self.frames[g].masks = Some(m);
        }
        self.last = Some((masks, from));
        // The next run starts `pass` frames later: what it no longer needs goes.
        let next_start = (start + pass as isize).max(0) as usize;
        while self.window_base < next_start && !self.history.is_empty() {
            self.history.pop_front();
            self.window_base += 1;
        }
        Ok(())
    }

    /// Synthesises the first `n` frames held into every stem and drops them.
    fn emit(&mut self, n: usize, out: &mut [Vec<Vec<f32>>]) {
        let bins = self.model.stems.bins;
        let channels = self.channels;
        let model_stems = self.model.stems.names.len();
        self.emitted += n;
        for frame in self.frames.drain(..n) {
            let masks = frame.masks.expect("a run covered every frame emitted");
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
    }
}

impl StemStream for Separator {
    fn stem_names(&self) -> &[String] {
        Separator::stem_names(self)
    }

    fn push(&mut self, planar: &[&[f32]], out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        Separator::push(self, planar, out)
    }

    fn finish(&mut self, out: &mut [Vec<Vec<f32>>]) -> Result<(), SeparateError> {
        Separator::finish(self, out)
    }

    fn runs(&self) -> u64 {
        self.segments_run
    }

    fn device(&self) -> &str {
        &self.model.device
    }

    fn lag(&self) -> usize {
        Separator::lag_of(self.schedule, self.framing, self.split.is_some())
    }

    fn reset(&mut self) {
        let (framing, channels) = (self.framing, self.channels);
        self.analysis = Analysis::new(framing, channels);
        for s in &mut self.stems {
            *s = Synthesis::new(framing, channels);
        }
        if let Some(split) = &mut self.split {
            split.dsp = FourStems::new(
                framing.bins(),
                framing.fft,
                self.rate,
                channels,
                self.schedule.split(),
            );
        }
        self.frames.clear();
        if let Schedule::Segments { segment, overlap } = self.schedule {
            self.segments = Overlapped::new(segment, overlap);
        }
        self.history.clear();
        self.window_base = 0;
        self.made = 0;
        self.emitted = 0;
        self.last = None;
    }

    fn set_skipping(&mut self, skipping: bool) {
        self.skipping = skipping;
    }
}
