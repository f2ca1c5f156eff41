//! What the worker runs: anything that turns one hop of audio (with its look-behind) into
//! one hop of audio. ONNX models implement it ([`super::generic`]); so do the test processors.

use crate::engine::latency::StreamSpec;

/// Why one run of a model failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model returned {got} values for output `{name}`, expected {want}")]
    OutputSize {
        name: String,
        got: usize,
        want: usize,
    },
}

/// One model run per hop, on planar audio (`[channel][sample]` flattened, the layout of an
/// ONNX `[1, channels, samples]` tensor).
pub trait HopProcessor: Send {
    /// The streaming contract: rate, channels, hop, context, latency.
    fn spec(&self) -> StreamSpec;
    /// `window` holds `channels * (context + hop)` samples, oldest first within each channel;
    /// `out` receives `channels * hop` samples.
    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError>;
    /// Forgets any state kept between runs (most models keep none: the window is the state).
    fn reset(&mut self) {}
}

/// A pure-Rust processor for tests and benchmarks: the input delayed by `spec.latency` samples
/// and scaled per channel. It needs `context >= latency`.
#[derive(Debug, Clone)]
pub struct DelayGain {
    /// Contract reported to the pipeline.
    pub spec: StreamSpec,
    /// Gain per model channel.
    pub gains: Vec<f32>,
    /// Sleep per run, to play a model that is too slow for real time.
    pub sleep: std::time::Duration,
}

impl DelayGain {
    /// Unity gain, no sleep.
    pub fn new(spec: StreamSpec) -> Self {
        assert!(
            spec.context >= spec.latency,
            "DelayGain needs context >= latency"
        );
        DelayGain {
            gains: vec![1.0; spec.channels],
            spec,
            sleep: std::time::Duration::ZERO,
        }
    }
}

impl HopProcessor for DelayGain {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError> {
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep);
        }
        let (hop, win) = (self.spec.hop, self.spec.context + self.spec.hop);
        let start = self.spec.context - self.spec.latency;
        for (c, gain) in self.gains.iter().enumerate() {
            let src = &window[c * win + start..c * win + start + hop];
            for (o, s) in out[c * hop..(c + 1) * hop].iter_mut().zip(src) {
                *o = s * gain;
            }
        }
        Ok(())
    }
}
