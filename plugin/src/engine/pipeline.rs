//! The worker's side of the stream, without threads: one host-rate chunk in, one out.
//!
//! host chunk -> resample to the model rate -> alignment pad -> hops through the model (with
//! look-behind windows, channel mapping) -> resample back -> host chunk.
//! Output chunk `k` always corresponds to input chunk `k`: that is what makes the latency exact.

use super::latency::LatencyPlan;
use super::resample::{ChunkResampler, ResampleError};
use crate::models::processor::{HopProcessor, ProcessError};

/// Why a pipeline could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the model takes {model} channel(s) but the track has {host}; Refrain maps mono models onto every channel and stereo models onto mono tracks, nothing else")]
    ChannelMismatch { model: usize, host: usize },
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
    /// Planar `[model channel][hop]`.
    out: Vec<f32>,
}

/// A model wrapped for streaming at the host rate.
pub struct Pipeline {
    plan: LatencyPlan,
    host_channels: usize,
    rs_in: Option<ChunkResampler>,
    rs_out: Option<ChunkResampler>,
    /// Interleaved model-rate input, the alignment pad in front: `(pad + chunk_model) * channels`.
    model_in: Vec<f32>,
    /// Interleaved model-rate output of one chunk.
    model_out: Vec<f32>,
    /// Weight of each lane's contribution to a host channel (1 / number of contributions).
    weights: Vec<f32>,
    lanes: Vec<Lane>,
    processor: Box<dyn HopProcessor>,
}

impl Pipeline {
    /// Builds the pipeline for `processor` under `plan`; every buffer is allocated here.
    pub fn new(
        plan: LatencyPlan,
        host_channels: usize,
        processor: Box<dyn HopProcessor>,
    ) -> Result<Self, PipelineError> {
        let spec = processor.spec();
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
        let lanes = lane_sources
            .into_iter()
            .map(|sources| Lane {
                window: vec![0.0; mc * win],
                out: vec![0.0; mc * spec.hop],
                sources,
            })
            .collect();
        let (rs_in, rs_out) = if plan.resampling {
            let rin = ChunkResampler::new(
                plan.host_rate,
                spec.sample_rate,
                plan.chunk_host,
                plan.chunk_model,
                host_channels,
            )?;
            let rout = ChunkResampler::new(
                spec.sample_rate,
                plan.host_rate,
                plan.chunk_model,
                plan.chunk_host,
                host_channels,
            )?;
            debug_assert_eq!(rin.delay(), plan.resampler_in_delay_model);
            debug_assert_eq!(rout.delay(), plan.resampler_out_delay_host);
            (Some(rin), Some(rout))
        } else {
            (None, None)
        };
        Ok(Pipeline {
            model_in: vec![0.0; (plan.alignment_pad_model + plan.chunk_model) * host_channels],
            model_out: vec![0.0; plan.chunk_model * host_channels],
            plan,
            host_channels,
            rs_in,
            rs_out,
            weights,
            lanes,
            processor,
        })
    }

    /// The plan this pipeline was built for.
    pub fn plan(&self) -> &LatencyPlan {
        &self.plan
    }

    /// Forgets all history: windows, resamplers, the pad, the model's own state.
    pub fn reset(&mut self) {
        self.model_in.fill(0.0);
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
    }

    /// Processes one interleaved chunk of `chunk_host` frames. Returns how many non-finite
    /// samples the model produced (they are replaced by silence).
    pub fn process_chunk(
        &mut self,
        input: &[f32],
        output: &mut [f32],
    ) -> Result<usize, PipelineError> {
        let ch = self.host_channels;
        let spec = self.processor.spec();
        let (hop, win) = (spec.hop, spec.context + spec.hop);
        let pad = self.plan.alignment_pad_model;
        let cm = self.plan.chunk_model;

        // The pad's tail from the last chunk moves to the front, then the new chunk follows it.
        self.model_in.copy_within(cm * ch.., 0);
        let fresh = &mut self.model_in[pad * ch..];
        match &mut self.rs_in {
            Some(r) => r.process(input, fresh)?,
            None => fresh.copy_from_slice(input),
        }

        self.model_out.fill(0.0);
        for h in 0..self.plan.hops_per_chunk() {
            for lane in &mut self.lanes {
                for (m, &src) in lane.sources.iter().enumerate() {
                    let w = &mut lane.window[m * win..(m + 1) * win];
                    w.copy_within(hop.., 0);
                    for (i, s) in w[spec.context..].iter_mut().enumerate() {
                        *s = self.model_in[(h * hop + i) * ch + src];
                    }
                }
                self.processor.process(&lane.window, &mut lane.out)?;
                for (m, &dst) in lane.sources.iter().enumerate() {
                    let weight = self.weights[dst];
                    for (i, o) in lane.out[m * hop..(m + 1) * hop].iter().enumerate() {
                        self.model_out[(h * hop + i) * ch + dst] += o * weight;
                    }
                }
            }
        }

        match &mut self.rs_out {
            Some(r) => r.process(&self.model_out, output)?,
            None => output.copy_from_slice(&self.model_out),
        }
        let mut bad = 0;
        for s in output.iter_mut() {
            if !s.is_finite() {
                *s = 0.0;
                bad += 1;
            }
        }
        Ok(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::latency::StreamSpec;
    use crate::models::processor::DelayGain;

    fn run_impulse(
        host_rate: u32,
        spec: StreamSpec,
        host_channels: usize,
    ) -> (LatencyPlan, Vec<Vec<f32>>) {
        let plan = LatencyPlan::new(spec, host_rate as f32, 64).unwrap();
        let mut p = Pipeline::new(plan, host_channels, Box::new(DelayGain::new(spec))).unwrap();
        let chunks = (plan.processing_delay() / plan.chunk_host) + 4;
        let at = plan.chunk_host + 3;
        let mut out = vec![Vec::new(); host_channels];
        let mut buf_out = vec![0.0; plan.chunk_host * host_channels];
        for k in 0..chunks {
            let input: Vec<f32> = (0..plan.chunk_host * host_channels)
                .map(|i| {
                    if k * plan.chunk_host + i / host_channels == at {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            p.process_chunk(&input, &mut buf_out).unwrap();
            for (i, s) in buf_out.iter().enumerate() {
                out[i % host_channels].push(*s);
            }
        }
        let peaks = out
            .iter()
            .map(|c| {
                let p = c
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .unwrap()
                    .0;
                vec![(p as f32) - at as f32, c[p]]
            })
            .collect();
        (plan, peaks)
    }

    #[test]
    fn impulse_lands_at_processing_delay_without_resampling() {
        let spec = StreamSpec {
            sample_rate: 48_000,
            channels: 2,
            hop: 480,
            context: 40,
            latency: 33,
        };
        let (plan, peaks) = run_impulse(48_000, spec, 2);
        for p in peaks {
            assert_eq!(p[0] as usize, plan.processing_delay());
            assert_eq!(p[1], 1.0);
        }
    }

    #[test]
    fn impulse_lands_at_processing_delay_through_resamplers() {
        for host in [44_100u32, 96_000, 32_000, 22_050] {
            for latency in [0usize, 33] {
                let spec = StreamSpec {
                    sample_rate: 48_000,
                    channels: 2,
                    hop: 480,
                    context: 64,
                    latency,
                };
                let (plan, peaks) = run_impulse(host, spec, 2);
                for p in peaks {
                    assert_eq!(
                        p[0] as usize,
                        plan.processing_delay(),
                        "host {host} latency {latency}: {plan:?}"
                    );
                    // Band-limited by the round trip (at 96 kHz the model's 48 kHz halves the bandwidth).
                    assert!(p[1] > 0.4, "peak {} too low at {host}", p[1]);
                }
            }
        }
    }

    #[test]
    fn mono_model_runs_on_each_channel_and_stereo_model_on_mono() {
        let spec = StreamSpec {
            sample_rate: 48_000,
            channels: 1,
            hop: 128,
            context: 0,
            latency: 0,
        };
        let (_, peaks) = run_impulse(48_000, spec, 2);
        assert_eq!(peaks.len(), 2);
        let spec = StreamSpec {
            sample_rate: 48_000,
            channels: 2,
            hop: 128,
            context: 0,
            latency: 0,
        };
        let (_, peaks) = run_impulse(48_000, spec, 1);
        assert_eq!(peaks[0][1], 1.0, "stereo model on mono: averaged, unity");
        let spec = StreamSpec {
            sample_rate: 48_000,
            channels: 3,
            hop: 128,
            context: 0,
            latency: 0,
        };
        let plan = LatencyPlan::new(spec, 48_000.0, 64).unwrap();
        let err = Pipeline::new(plan, 2, Box::new(DelayGain::new(spec)))
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
        let spec = StreamSpec {
            sample_rate: 48_000,
            channels: 1,
            hop: 64,
            context: 0,
            latency: 0,
        };
        let plan = LatencyPlan::new(spec, 48_000.0, 64).unwrap();
        let mut p = Pipeline::new(plan, 1, Box::new(DelayGain::new(spec))).unwrap();
        let mut input = vec![0.5; 64];
        input[3] = f32::NAN;
        input[9] = f32::INFINITY;
        let mut out = vec![0.0; 64];
        assert_eq!(p.process_chunk(&input, &mut out).unwrap(), 2);
        assert_eq!((out[3], out[9], out[4]), (0.0, 0.0, 0.5));
    }
}
