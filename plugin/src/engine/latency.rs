//! The latency sum, one named term per cause.
//!
//! Refrain's latency is fixed at activation and exact: an impulse at input sample `t` comes out
//! of the plugin at sample `t + total()`. Every term below is a whole number of host samples,
//! so the sum is exact; the [`LatencyPlan`] is the single place that decides them all.
//!
//! The stream is cut into *chunks*: `chunk_host` host samples become `chunk_model` model samples
//! (a whole number of model hops), the model runs on them, and they come back as `chunk_host`
//! host samples. Chunk boundaries are the only place the worker touches the stream, which is why
//! the terms are simple and exact.

use std::fmt;

/// Largest chunk (in model samples) we accept before calling a rate pair unsupported.
/// Half a second: beyond that the latency would be useless on stage anyway.
const MAX_CHUNK_SECONDS_DIV: usize = 2;

/// The parts of a model's streaming contract that decide latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    /// The rate the model runs at, in Hz.
    pub sample_rate: u32,
    /// Audio channels the model takes and returns.
    pub channels: usize,
    /// Model samples consumed and produced per run.
    pub hop: usize,
    /// Look-behind samples fed again in front of each hop.
    pub context: usize,
    /// The model's own latency in model samples (includes any lookahead).
    pub latency: usize,
}

/// Why a plan cannot be made for a rate pair or block size.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    /// The host rate is zero or absurd.
    BadHostRate(f32),
    /// The host promised no block size to plan for.
    BadBlockSize(usize),
    /// The rates share so few factors that one chunk would be longer than half a second.
    RatePairTooCoarse {
        host: u32,
        model: u32,
        chunk_model: usize,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::BadHostRate(r) => {
                write!(f, "the host's sample rate of {r} Hz is not supported (use 8 kHz to 384 kHz)")
            }
            PlanError::BadBlockSize(n) => write!(f, "the host's maximum block size of {n} samples is not supported"),
            PlanError::RatePairTooCoarse { host, model, chunk_model } => write!(
                f,
                "resampling between the host's {host} Hz and the model's {model} Hz would need chunks of \
                 {chunk_model} samples; choose a common rate such as 44.1, 48 or 96 kHz"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Every term of the reported latency, in host samples unless the name says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyPlan {
    /// Host sample rate in Hz (integer: the plan only supports integer rates).
    pub host_rate: u32,
    /// The model's contract.
    pub spec: StreamSpec,
    /// Host samples per chunk.
    pub chunk_host: usize,
    /// Model samples per chunk (a whole number of hops).
    pub chunk_model: usize,
    /// Whether host and model rates differ (resamplers in and out).
    pub resampling: bool,
    /// Delay of the host->model resampler, in model samples.
    pub resampler_in_delay_model: usize,
    /// Zeros inserted at the model rate so that the model-rate delays sum to whole host samples.
    pub alignment_pad_model: usize,
    /// Delay of the model->host resampler, in host samples.
    pub resampler_out_delay_host: usize,
    /// Collecting one chunk of input before the worker can start on it.
    pub hop_buffering: usize,
    /// Time the worker is given to run the model on a chunk (one chunk: real-time factor 1).
    pub inference_budget: usize,
    /// Host blocks are not aligned to chunks: a block may need output up to `max_block - 1`
    /// samples after the chunk it depends on was complete.
    pub block_adaptation: usize,
    /// The audio thread keeps this many processed samples in hand so that, when the worker is
    /// late, it can still fade from processed audio to dry audio without a click.
    pub crossfade_reserve: usize,
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Length of the equal-power crossfade between processed and dry audio at a host rate:
/// about 2.7 ms, never under 64 samples.
pub fn crossfade_len(host_rate: u32) -> usize {
    ((host_rate as usize * 128) / 48_000).max(64)
}

impl LatencyPlan {
    /// Plans the stream for a model contract at a host rate and maximum block size.
    pub fn new(spec: StreamSpec, host_rate: f32, max_block: usize) -> Result<Self, PlanError> {
        if !(host_rate.is_finite() && (8_000.0..=384_000.0).contains(&host_rate))
            || host_rate.fract() != 0.0
        {
            return Err(PlanError::BadHostRate(host_rate));
        }
        if max_block == 0 || max_block > 1 << 16 {
            return Err(PlanError::BadBlockSize(max_block));
        }
        let host = host_rate as usize;
        let model = spec.sample_rate as usize;
        let g = gcd(host, model);
        let (unit_host, unit_model) = (host / g, model / g);
        let resampling = host != model;

        // A chunk is a whole number of hops and a whole number of resampling units. The FFT
        // resamplers' delays are half a chunk on each side, so both chunk lengths must be even
        // for those halves to be whole samples.
        let mut chunk_model = lcm(spec.hop, unit_model);
        if resampling {
            while !chunk_model.is_multiple_of(2)
                || !(chunk_model / unit_model * unit_host).is_multiple_of(2)
            {
                chunk_model *= 2;
            }
        }
        if chunk_model > model / MAX_CHUNK_SECONDS_DIV && chunk_model > spec.hop {
            return Err(PlanError::RatePairTooCoarse {
                host: host as u32,
                model: spec.sample_rate,
                chunk_model,
            });
        }
        let chunk_host = chunk_model / unit_model * unit_host;

        let (resampler_in_delay_model, resampler_out_delay_host, alignment_pad_model) =
            if resampling {
                let d_in = chunk_model / 2;
                // Model-rate delays must add up to a whole number of host samples.
                let model_delay = d_in + spec.latency;
                let pad = (unit_model - model_delay % unit_model) % unit_model;
                (d_in, chunk_host / 2, pad)
            } else {
                (0, 0, 0)
            };

        Ok(LatencyPlan {
            host_rate: host as u32,
            spec,
            chunk_host,
            chunk_model,
            resampling,
            resampler_in_delay_model,
            alignment_pad_model,
            resampler_out_delay_host,
            hop_buffering: chunk_host,
            inference_budget: chunk_host,
            block_adaptation: max_block - 1,
            crossfade_reserve: crossfade_len(host as u32),
        })
    }

    /// Model hops per chunk.
    pub fn hops_per_chunk(&self) -> usize {
        self.chunk_model / self.spec.hop
    }

    /// The model's own latency, in host samples, including the resamplers around it and the
    /// alignment pad: the delay of the processed stream relative to the input stream.
    pub fn processing_delay(&self) -> usize {
        let model_side =
            self.resampler_in_delay_model + self.spec.latency + self.alignment_pad_model;
        // Exact: `model_side` is a multiple of the model-rate unit when resampling.
        model_side * self.host_rate as usize / self.spec.sample_rate as usize
            + self.resampler_out_delay_host
    }

    /// Samples of buffering between the worker's output stream and the host's output: the audio
    /// thread plays processed sample `j` at host sample `j + buffering()`.
    pub fn buffering(&self) -> usize {
        self.hop_buffering + self.inference_budget + self.block_adaptation + self.crossfade_reserve
    }

    /// The latency reported to the host, in host samples.
    pub fn total(&self) -> usize {
        self.processing_delay() + self.buffering()
    }

    /// One line per term, for logs, the CLI and the README.
    pub fn describe(&self) -> String {
        let ms = |s: usize| s as f64 * 1000.0 / self.host_rate as f64;
        format!(
            "latency {} samples ({:.2} ms) = model {} + resampling {} + hop buffering {} + inference budget {} \
             + block adaptation {} + crossfade reserve {}",
            self.total(),
            ms(self.total()),
            self.spec.latency * self.host_rate as usize / self.spec.sample_rate as usize,
            self.processing_delay() - self.spec.latency * self.host_rate as usize / self.spec.sample_rate as usize,
            self.hop_buffering,
            self.inference_budget,
            self.block_adaptation,
            self.crossfade_reserve
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: u32, hop: usize, latency: usize) -> StreamSpec {
        StreamSpec {
            sample_rate: rate,
            channels: 2,
            hop,
            context: 0,
            latency,
        }
    }

    #[test]
    fn same_rate_is_model_latency_plus_buffering() {
        let p = LatencyPlan::new(spec(48_000, 480, 32), 48_000.0, 128).unwrap();
        assert!(!p.resampling);
        assert_eq!(p.chunk_host, 480);
        assert_eq!(p.processing_delay(), 32);
        assert_eq!(p.total(), 32 + 480 + 480 + 127 + 128);
    }

    #[test]
    fn resampled_delays_are_whole_host_samples() {
        for host in [
            8_000u32, 11_025, 22_050, 32_000, 44_100, 88_200, 96_000, 176_400, 192_000,
        ] {
            for (hop, lat) in [(480usize, 0usize), (480, 17), (512, 64), (160, 1)] {
                let p = LatencyPlan::new(spec(48_000, hop, lat), host as f32, 512).unwrap();
                let model_side = p.resampler_in_delay_model + lat + p.alignment_pad_model;
                assert_eq!(
                    (model_side * host as usize) % 48_000,
                    0,
                    "host {host} hop {hop} lat {lat}"
                );
                assert_eq!(p.chunk_model % hop, 0);
                assert_eq!(p.chunk_host * 48_000, p.chunk_model * host as usize);
                assert_eq!(p.chunk_host % 2, 0);
            }
        }
    }

    #[test]
    fn chunk_at_44k1_is_a_whole_hop_pair() {
        let p = LatencyPlan::new(spec(48_000, 480, 0), 44_100.0, 64).unwrap();
        assert_eq!((p.chunk_model, p.chunk_host), (960, 882));
        assert_eq!(p.resampler_in_delay_model, 480);
        assert_eq!(p.resampler_out_delay_host, 441);
    }

    #[test]
    fn bad_rates_and_blocks_are_refused() {
        assert_eq!(
            LatencyPlan::new(spec(48_000, 480, 0), 0.0, 64),
            Err(PlanError::BadHostRate(0.0))
        );
        assert!(LatencyPlan::new(spec(48_000, 480, 0), f32::NAN, 64).is_err());
        assert!(LatencyPlan::new(spec(48_000, 480, 0), 44_100.5, 64).is_err());
        assert_eq!(
            LatencyPlan::new(spec(48_000, 480, 0), 48_000.0, 0),
            Err(PlanError::BadBlockSize(0))
        );
        // 44,101 Hz shares no useful factor with 48 kHz: one chunk would be a second long.
        let err = LatencyPlan::new(spec(48_000, 480, 0), 44_101.0, 64).unwrap_err();
        assert!(err.to_string().contains("44101 Hz"), "{err}");
    }

    #[test]
    fn crossfade_is_never_shorter_than_64() {
        assert_eq!(crossfade_len(8_000), 64);
        assert_eq!(crossfade_len(48_000), 128);
        assert_eq!(crossfade_len(96_000), 256);
    }
}
