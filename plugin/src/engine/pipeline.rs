//! The worker's side of the stream, without threads: host frames in, host frames out.
//!
//! host frames -> resample to the model rate -> hops through the model (look-behind windows,
//! channel mapping) -> resample back -> host frames.
//!
//! A hop runs as soon as its input is in. Skipped hops (bypass, or too late to be heard) still
//! move the windows and resamplers on, so when the model runs again it starts from the real
//! recent input, not from a cold start; the frames that depend on skipped hops are marked not
//! audible until the output resampler has flushed them.

use super::latency::LatencyPlan;
use super::resample::{ResampleError, Resampler};
use crate::models::processor::{HopProcessor, ProcessError};

/// Why a pipeline could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the model takes {model} channel(s) but the track has {host}; Refrain maps mono models onto every channel and stereo models onto mono tracks, nothing else")]
    ChannelMismatch { model: usize, host: usize },
    #[error("the model's contract changed: the plan was made for {planned:?}, the model says {actual:?}")]
    SpecMismatch {
        planned: Box<crate::models::processor::StreamSpec>,
        actual: Box<crate::models::processor::StreamSpec>,
    },
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// One model run per hop: which host channel feeds each model channel, and the run's window.
struct Lane {
    /// Host channel index for every model channel.
    sources: Vec<usize>,
    /// Planar `[model channel][context + hop]`.
    window: Vec<f32>,
    /// Planar `[stem][model channel][hop]`.
    out: Vec<f32>,
    /// The incoming model's output during a hot swap.
    swap_out: Vec<f32>,
}

/// What one hop produced: host frames `[first, first + frames)` of the stream, audible from
/// `audible_from` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopOutput {
    pub first: u64,
    pub frames: usize,
    pub audible_from: u64,
    /// Non-finite samples the model produced (replaced by silence).
    pub non_finite: usize,
}

/// A model wrapped for streaming at the host rate.
pub struct Pipeline {
    plan: LatencyPlan,
    host_channels: usize,
    rs_in: Option<Resampler>,
    rs_out: Option<Resampler>,
    /// Interleaved model-rate input not yet consumed by a hop.
    model_in: Vec<f32>,
    model_in_frames: usize,
    /// Interleaved model-rate output of one hop: per frame, every stem's host channels.
    model_out: Vec<f32>,
    /// Interleaved host-rate output of one hop, laid out like `model_out`.
    host_out: Vec<f32>,
    /// Output values per frame: stems times host channels.
    width: usize,
    /// Weight of each lane's contribution to a host channel (1 / number of contributions).
    weights: Vec<f32>,
    lanes: Vec<Lane>,
    processor: Box<dyn HopProcessor>,
    /// A model waiting to be crossfaded in over the next hop the model runs.
    pending: Option<Box<dyn HopProcessor>>,
    /// Host input frames taken in this stream.
    host_in: u64,
    /// Hops run (or skipped) in this stream.
    hops: u64,
    /// Host output frames produced in this stream.
    host_out_total: u64,
    /// Model output samples before this index depend on skipped hops or unknown input (before
    /// a silent stream start, everything is known: it was silence).
    valid_from_model: i64,
    /// Most host frames [`Self::push_input`] takes at once.
    max_feed: usize,
}

impl Pipeline {
    /// Builds the pipeline for `processor` under `plan`; every buffer is allocated here.
    pub fn new(
        plan: LatencyPlan,
        host_channels: usize,
        processor: Box<dyn HopProcessor>,
    ) -> Result<Self, PipelineError> {
        let spec = processor.spec();
        if spec != plan.spec {
            return Err(PipelineError::SpecMismatch {
                planned: Box::new(plan.spec),
                actual: Box::new(spec),
            });
        }
        let mc = spec.channels;
        let lane_sources: Vec<Vec<usize>> = if mc == host_channels {
            vec![(0..mc).collect()]
        } else if mc == 1 {
            (0..host_channels).map(|c| vec![c]).collect()
        } else if host_channels == 1 {
            vec![vec![0; mc]]
        } else {
            return Err(PipelineError::ChannelMismatch {
                model: mc,
                host: host_channels,
            });
        };
        let mut counts = vec![0usize; host_channels];
        lane_sources.iter().flatten().for_each(|&c| counts[c] += 1);
        let weights = counts.iter().map(|&n| 1.0 / n.max(1) as f32).collect();
        let win = spec.context + spec.hop;
        let width = host_channels * spec.stems.max(1);
        let lanes = lane_sources
            .into_iter()
            .map(|sources| Lane {
                window: vec![0.0; mc * win],
                out: vec![0.0; spec.out_len()],
                swap_out: vec![0.0; spec.out_len()],
                sources,
            })
            .collect();
        let max_feed = plan.hop_host_max;
        let (rs_in, rs_out) = match (plan.resample_in, plan.resample_out) {
            (Some(gi), Some(go)) => {
                let filter = plan.mode.filter();
                (
                    Some(Resampler::new(
                        plan.host_rate,
                        spec.sample_rate,
                        filter,
                        gi.shift,
                        host_channels,
                        max_feed,
                    )?),
                    Some(Resampler::new(
                        spec.sample_rate,
                        plan.host_rate,
                        filter,
                        go.shift,
                        width,
                        spec.hop,
                    )?),
                )
            }
            _ => (None, None),
        };
        // A feed of `max_feed` host frames yields at most this many model frames.
        let feed_model = (max_feed as u64 * spec.sample_rate as u64).div_ceil(plan.host_rate as u64)
            as usize
            + 2;
        Ok(Pipeline {
            model_in: vec![0.0; (spec.hop + feed_model) * host_channels],
            model_in_frames: 0,
            model_out: vec![0.0; spec.hop * width],
            host_out: vec![0.0; plan.hop_host_max.max(spec.hop) * width],
            width,
            plan,
            host_channels,
            rs_in,
            rs_out,
            weights,
            lanes,
            processor,
            pending: None,
            host_in: 0,
            hops: 0,
            host_out_total: 0,
            valid_from_model: i64::MIN,
            max_feed,
        })
    }

    /// The plan this pipeline was built for.
    pub fn plan(&self) -> &LatencyPlan {
        &self.plan
    }

    /// Most host frames one [`Self::push_input`] may take.
    pub fn max_feed(&self) -> usize {
        self.max_feed
    }

    /// Starts a new stream. After a host reset the past was silence (`prestart_silent`); after
    /// lost input it is unknown, so output stays unheard until the windows hold real input.
    pub fn reset(&mut self, prestart_silent: bool) {
        self.model_in_frames = 0;
        for lane in &mut self.lanes {
            lane.window.fill(0.0);
        }
        if let Some(r) = &mut self.rs_in {
            r.reset();
        }
        if let Some(r) = &mut self.rs_out {
            r.reset();
        }
        self.processor.reset();
        self.host_in = 0;
        self.hops = 0;
        self.host_out_total = 0;
        self.valid_from_model = if prestart_silent {
            i64::MIN
        } else {
            // The input resampler's reach back and the model's context must be past the start.
            let spec = self.plan.spec;
            let reach = self.plan.resample_in.map_or(0, |g| {
                (g.half * spec.sample_rate as u64).div_ceil(self.plan.host_rate as u64)
            });
            ((reach + spec.context as u64).div_ceil(spec.hop as u64) * spec.hop as u64) as i64
        };
    }

    /// Swaps in another model with the same contract: it is crossfaded in over the next hop
    /// the model runs.
    pub fn install(&mut self, processor: Box<dyn HopProcessor>) -> Result<(), PipelineError> {
        let actual = processor.spec();
        if actual != self.plan.spec {
            return Err(PipelineError::SpecMismatch {
                planned: Box::new(self.plan.spec),
                actual: Box::new(actual),
            });
        }
        self.pending = Some(processor);
        Ok(())
    }

    /// Whether a whole hop of model-rate input is waiting.
    pub fn hop_ready(&self) -> bool {
        self.model_in_frames >= self.plan.spec.hop
    }

    /// Host input frames (from the stream's start) the next hop needs.
    pub fn input_needed_for_next_hop(&self) -> u64 {
        let model = (self.hops + 1) * self.plan.spec.hop as u64;
        match &self.rs_in {
            Some(r) => r.geometry().input_needed(model),
            None => model,
        }
    }

    /// The stream's host output frames `[first, end)` the next hop will produce.
    pub fn next_hop_outputs(&self) -> (u64, u64) {
        let model = (self.hops + 1) * self.plan.spec.hop as u64;
        let end = match &self.rs_out {
            Some(r) => r.geometry().outputs_for(model),
            None => model,
        };
        (self.host_out_total, end)
    }

    /// Takes host input frames (interleaved, at most [`Self::max_feed`]) while no hop is ready.
    pub fn push_input(&mut self, frames: &[f32]) {
        let ch = self.host_channels;
        debug_assert!(frames.len() / ch <= self.max_feed && !self.hop_ready());
        self.host_in += (frames.len() / ch) as u64;
        let free = &mut self.model_in[self.model_in_frames * ch..];
        let n = match &mut self.rs_in {
            Some(r) => {
                r.push(frames);
                r.produce(free)
            }
            None => {
                free[..frames.len()].copy_from_slice(frames);
                frames.len() / ch
            }
        };
        self.model_in_frames += n;
    }

    /// Runs the next hop (`run_model`) or skips it, and returns what it produced; the frames
    /// are in [`Self::output`].
    pub fn run_hop(&mut self, run_model: bool) -> Result<HopOutput, PipelineError> {
        let ch = self.host_channels;
        let spec = self.plan.spec;
        let (hop, win) = (spec.hop, spec.context + spec.hop);
        debug_assert!(self.hop_ready());

        self.model_out.fill(0.0);
        let crossfade = run_model && self.pending.is_some();
        for lane in &mut self.lanes {
            for (m, &src) in lane.sources.iter().enumerate() {
                let w = &mut lane.window[m * win..(m + 1) * win];
                w.copy_within(hop.., 0);
                for (i, s) in w[spec.context..].iter_mut().enumerate() {
                    *s = self.model_in[i * ch + src];
                }
            }
            if run_model {
                self.processor.process(&lane.window, &mut lane.out)?;
                if let Some(next) = &mut self.pending {
                    next.process(&lane.window, &mut lane.swap_out)?;
                    // Equal-power crossfade from the old model to the new one over this hop.
                    for m in 0..spec.channels * spec.stems.max(1) {
                        for i in 0..hop {
                            let a = (i as f32 + 0.5) / hop as f32 * std::f32::consts::FRAC_PI_2;
                            let k = m * hop + i;
                            lane.out[k] = lane.out[k] * a.cos() + lane.swap_out[k] * a.sin();
                        }
                    }
                }
            } else {
                self.processor.skip(&lane.window);
                if let Some(next) = &mut self.pending {
                    next.skip(&lane.window);
                }
                lane.out.fill(0.0);
            }
            let (mc, width) = (spec.channels, self.width);
            for s in 0..spec.stems.max(1) {
                for (m, &dst) in lane.sources.iter().enumerate() {
                    let weight = self.weights[dst];
                    let from = &lane.out[(s * mc + m) * hop..(s * mc + m + 1) * hop];
                    for (i, o) in from.iter().enumerate() {
                        self.model_out[i * width + s * ch + dst] += o * weight;
                    }
                }
            }
        }
        if crossfade {
            if let Some(next) = self.pending.take() {
                // The old model (and its session) is dropped here, on the worker thread.
                self.processor = next;
            }
        }
        let mut non_finite = 0;
        for s in self.model_out.iter_mut() {
            if !s.is_finite() {
                *s = 0.0;
                non_finite += 1;
            }
        }
        // The hop's input leaves the accumulator.
        self.model_in
            .copy_within(hop * ch..self.model_in_frames * ch, 0);
        self.model_in_frames -= hop;
        self.hops += 1;
        if !run_model {
            self.valid_from_model = (self.hops * hop as u64) as i64;
        }

        let first = self.host_out_total;
        let frames = match &mut self.rs_out {
            Some(r) => {
                r.push(&self.model_out);
                r.produce(&mut self.host_out)
            }
            None => {
                self.host_out[..hop * self.width].copy_from_slice(&self.model_out);
                hop
            }
        };
        self.host_out_total += frames as u64;
        // Frames whose model samples (and the output filter's reach) predate the valid index
        // are not heard.
        let valid = self.valid_from_model;
        let audible_from = match &self.rs_out {
            Some(r) => {
                let g = r.geometry();
                (first..first + frames as u64)
                    .find(|&n| g.position(n).0 - g.half as i64 + 1 >= valid)
                    .unwrap_or(first + frames as u64)
            }
            None => valid.clamp(first as i64, (first + frames as u64) as i64) as u64,
        };
        Ok(HopOutput {
            first,
            frames,
            audible_from,
            non_finite,
        })
    }

    /// The interleaved host frames the last hop produced: per frame, each stem's channels.
    pub fn output(&self, frames: usize) -> &[f32] {
        &self.host_out[..frames * self.width]
    }

    /// Output values per frame: stems times host channels.
    pub fn width(&self) -> usize {
        self.width
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::latency::Mode;
    use crate::models::processor::{DelayGain, StreamSpec};

    fn spec(rate: u32, channels: usize, hop: usize, context: usize, latency: usize) -> StreamSpec {
        StreamSpec {
            sample_rate: rate,
            channels,
            hop,
            context,
            latency,
            tail: 0,
            stems: 1,
            lookahead: 0,
        }
    }

    /// Streams `input` (planar) through a pipeline in feeds of odd sizes, returning planar
    /// output and whether each output frame was audible.
    fn stream(
        p: &mut Pipeline,
        input: &[Vec<f32>],
        skip_hops: &[u64],
    ) -> (Vec<Vec<f32>>, Vec<bool>) {
        let ch = input.len();
        let len = input[0].len();
        let mut out = vec![Vec::new(); ch];
        let mut audible = Vec::new();
        let mut t = 0;
        let mut hop_index = 0u64;
        let mut feed = 37usize;
        while t < len {
            while p.hop_ready() {
                let h = p.run_hop(!skip_hops.contains(&hop_index)).unwrap();
                hop_index += 1;
                let frames = p.output(h.frames);
                for f in 0..h.frames {
                    for c in 0..ch {
                        out[c].push(frames[f * ch + c]);
                    }
                    audible.push(h.first + f as u64 >= h.audible_from);
                }
            }
            let n = feed.min(p.max_feed()).min(len - t);
            let inter: Vec<f32> = (t..t + n)
                .flat_map(|i| input.iter().map(move |c| c[i]))
                .collect();
            p.push_input(&inter);
            t += n;
            feed = feed * 7 % 301 + 1;
        }
        (out, audible)
    }

    fn impulse_peak(
        host_rate: u32,
        s: StreamSpec,
        host_channels: usize,
        mode: Mode,
    ) -> (LatencyPlan, Vec<(usize, f32)>) {
        let plan = LatencyPlan::new(s, host_rate as f32, 64, mode, None).unwrap();
        let mut p = Pipeline::new(plan, host_channels, Box::new(DelayGain::new(s))).unwrap();
        let at = 3_001;
        let mut input = vec![vec![0.0f32; at + 20_000]; host_channels];
        for c in input.iter_mut() {
            c[at] = 1.0;
        }
        let (out, _) = stream(&mut p, &input, &[]);
        let peaks = out
            .iter()
            .map(|c| {
                let (i, v) = c
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .unwrap();
                (i - at, *v)
            })
            .collect();
        (plan, peaks)
    }

    #[test]
    fn impulse_lands_at_the_processing_delay_without_resampling() {
        let s = spec(48_000, 2, 480, 40, 33);
        let (plan, peaks) = impulse_peak(48_000, s, 2, Mode::Live);
        for (at, v) in peaks {
            assert_eq!(at, plan.processing_delay);
            assert_eq!(v, 1.0);
        }
    }

    #[test]
    fn impulse_lands_at_the_processing_delay_through_resamplers() {
        for mode in [Mode::Live, Mode::Studio] {
            for host in [44_100u32, 96_000, 32_000, 22_050] {
                for latency in [0usize, 33] {
                    let s = spec(48_000, 2, 480, 64, latency);
                    let (plan, peaks) = impulse_peak(host, s, 2, mode);
                    for (at, v) in peaks {
                        assert_eq!(
                            at, plan.processing_delay,
                            "host {host} latency {latency} {mode}"
                        );
                        assert!(v > 0.4, "peak {v} too low at {host} {mode}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_frame_is_computed_from_input_within_the_lookahead() {
        // Feed exactly the input the plan says frame n needs, and check frame n exists then.
        let s = spec(48_000, 1, 480, 64, 17);
        for host in [44_100u32, 48_000, 96_000] {
            let plan = LatencyPlan::new(s, host as f32, 64, Mode::Live, None).unwrap();
            let mut p = Pipeline::new(plan, 1, Box::new(DelayGain::new(s))).unwrap();
            let mut produced = 0u64;
            let mut fed = 0u64;
            let frame = [0.0f32; 1];
            for n in 0..5_000u64 {
                let need = plan.input_needed(n);
                while produced <= n {
                    if p.hop_ready() {
                        produced += p.run_hop(true).unwrap().frames as u64;
                    } else {
                        assert!(
                            fed < need,
                            "frame {n} not produced after {fed} inputs (needs {need})"
                        );
                        p.push_input(&frame);
                        fed += 1;
                    }
                }
                assert!(
                    fed <= need.max(1),
                    "host {host} frame {n}: fed {fed}, plan says {need}"
                );
            }
        }
    }

    #[test]
    fn skipped_hops_keep_the_stream_warm_and_are_marked() {
        let s = spec(48_000, 1, 480, 64, 0);
        let plan = LatencyPlan::new(s, 44_100.0, 64, Mode::Live, None).unwrap();
        let mut p = Pipeline::new(plan, 1, Box::new(DelayGain::with_gain(s, 0.5))).unwrap();
        let input: Vec<f32> = (0..44_100)
            .map(|i| (i as f32 * 110.0 * std::f32::consts::TAU / 44_100.0).sin() * 0.5)
            .collect();
        let (out, audible) = stream(&mut p, std::slice::from_ref(&input), &[20, 21, 22]);
        let d = plan.processing_delay;
        let mut unheard = 0;
        for (n, &y) in out[0].iter().enumerate().skip(d + 2_000) {
            if audible[n] {
                assert!(
                    (y - 0.5 * input[n - d]).abs() < 2e-3,
                    "frame {n}: {y} vs {}",
                    0.5 * input[n - d]
                );
            } else {
                unheard += 1;
            }
        }
        // Three skipped hops, plus the output filter's reach around them.
        assert!(
            (3 * 441..3 * 441 + 60).contains(&unheard),
            "{unheard} unheard frames"
        );
    }

    #[test]
    fn a_hot_swap_crossfades_over_one_hop() {
        let s = spec(48_000, 1, 480, 0, 0);
        let plan = LatencyPlan::new(s, 48_000.0, 64, Mode::Live, None).unwrap();
        let mut p = Pipeline::new(plan, 1, Box::new(DelayGain::with_gain(s, 1.0))).unwrap();
        p.push_input(&[0.5; 480]);
        p.run_hop(true).unwrap();
        p.install(Box::new(DelayGain::with_gain(s, -1.0))).unwrap();
        p.push_input(&[0.5; 480]);
        let h = p.run_hop(true).unwrap();
        let o = p.output(h.frames);
        assert!((o[0] - 0.5).abs() < 0.01 && (o[479] + 0.5).abs() < 0.01);
        p.push_input(&[0.5; 480]);
        let h = p.run_hop(true).unwrap();
        assert!(p.output(h.frames).iter().all(|&x| x == -0.5));
    }

    #[test]
    fn mono_models_run_per_channel_and_stereo_models_on_mono() {
        let (_, peaks) = impulse_peak(48_000, spec(48_000, 1, 128, 0, 0), 2, Mode::Live);
        assert_eq!(peaks.len(), 2);
        let (_, peaks) = impulse_peak(48_000, spec(48_000, 2, 128, 0, 0), 1, Mode::Live);
        assert_eq!(peaks[0].1, 1.0, "stereo model on mono: averaged, unity");
        let s = spec(48_000, 3, 128, 0, 0);
        let plan = LatencyPlan::new(s, 48_000.0, 64, Mode::Live, None).unwrap();
        let err = Pipeline::new(plan, 2, Box::new(DelayGain::new(s)))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("takes 3 channel(s) but the track has 2"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_output_becomes_silence_and_is_counted() {
        let s = spec(48_000, 1, 64, 0, 0);
        let plan = LatencyPlan::new(s, 48_000.0, 64, Mode::Live, None).unwrap();
        let mut p = Pipeline::new(plan, 1, Box::new(DelayGain::new(s))).unwrap();
        let mut input = vec![0.5; 64];
        input[3] = f32::NAN;
        input[9] = f32::INFINITY;
        p.push_input(&input);
        let h = p.run_hop(true).unwrap();
        assert_eq!(h.non_finite, 2);
        let o = p.output(h.frames);
        assert_eq!((o[3], o[9], o[4]), (0.0, 0.0, 0.5));
    }
}
