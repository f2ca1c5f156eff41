//! The model contract the engine streams through: [`StreamSpec`] says how a model consumes and
//! produces audio, [`HopProcessor`] runs one hop. ONNX models implement it
//! ([`super::generic`]); so do the test processors here.
//!
//! The spec belongs to the model, not to the engine: the engine plans its latency from it, and
//! the model side never needs to know how the engine streams.

/// The parts of a model's streaming contract that decide latency and framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// How long the model keeps sounding after its input goes silent (a reverb's decay), in
    /// model samples. Reported to the host as part of the tail.
    pub tail: usize,
    /// Signals the model returns per channel: 1 for an effect or a voice; a separator returns
    /// each stem (the engine sums them into the main output and plays each on its own).
    pub stems: usize,
    /// Of `latency`, the model samples it must hear past a sample before it gives it (a voice's
    /// pitch and content look-ahead): the latency plan names it on its own term.
    pub lookahead: usize,
}

impl StreamSpec {
    /// Model samples one run returns: every stem of every channel for one hop.
    pub fn out_len(&self) -> usize {
        self.stems.max(1) * self.channels * self.hop
    }
}

/// Why one run of a model failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProcessError {
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("one run of the model `{model}` took longer than {limit_s:.1} s and was stopped (REFRAIN_MAX_RUN_MS sets the limit)")]
    Stopped { model: String, limit_s: f64 },
    #[error("the model `{model}` asked for {requested_mb} MB at once; its memory limit is {limit_mb} MB (REFRAIN_MODEL_MEMORY_MB sets it)")]
    OutOfMemory {
        model: String,
        requested_mb: u64,
        limit_mb: u64,
    },
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
    /// `out` receives [`StreamSpec::out_len`] samples, `[stem][channel][hop]`.
    fn process(&mut self, window: &[f32], out: &mut [f32]) -> Result<(), ProcessError>;
    /// Forgets any state kept between runs (most models keep none: the window is the state).
    fn reset(&mut self) {}
    /// The engine skips this hop (bypassed, or too late to be heard): advance whatever state
    /// the model keeps, cheaply, without producing output. Stateless models do nothing.
    fn skip(&mut self, _window: &[f32]) {}
    /// Which device runs the model, in words (ONNX models: the execution provider, and why a
    /// preferred one was not used).
    fn device(&self) -> Option<String> {
        None
    }
    /// The model's identity: one hash over its manifest and all its files.
    fn identity(&self) -> Option<String> {
        None
    }
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

    /// The same delay with every channel scaled by `gain` (a polarity flip with -1.0), so tests
    /// can tell processed audio from the latency-aligned dry path.
    pub fn with_gain(spec: StreamSpec, gain: f32) -> Self {
        let mut p = DelayGain::new(spec);
        p.gains = vec![gain; spec.channels];
        p
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
