//! The latency sum, one named term per cause.
//!
//! Refrain's latency is fixed at activation and exact: an impulse at input sample `t` comes out
//! of the plugin at sample `t + total()`. The [`LatencyPlan`] is the single place that decides
//! it, from the model's contract, the host's rate and largest block, the mode and the measured
//! inference time.
//!
//! How the stream runs: host samples are resampled to the model's rate, the model runs one hop
//! at a time as soon as the hop's input is in, and its output is resampled back. Processed
//! frame `j` is the input delayed by the processing delay `P` (model latency plus the
//! resamplers' fractional delays, rounded up to a whole host sample by the output resampler's
//! phase), and the audio thread plays it at host sample `j + buffering()`.
//!
//! The total is `lookahead + inference budget + block adaptation + crossfade reserve`, where
//! the lookahead (model latency + one hop + resampler reach) is computed exactly from the
//! resamplers' integer geometry: the worst case over one period of the stream, not an estimate.
//! The floor the engine can reach is that sum without the block adaptation: the Live mode is
//! never more than one host block above it.

use super::resample::{FilterSpec, Geometry, ResampleError};
use crate::models::processor::StreamSpec;
use std::fmt;

/// Live mode's inference budget: the slowest warm-up pass times this factor...
pub const LIVE_BUDGET_FACTOR: f64 = 1.5;
/// ...plus this much for waking the worker and resampling, in seconds. A 10-minute soak under
/// full CPU load on the 2-core development VM, worker at real-time priority, underran 106
/// times with 1 ms (wake-ups delayed by the host machine, not slow hops: the slowest hop took
/// 0.45 ms); see README for the figure this margin gives.
pub const SCHEDULING_MARGIN_S: f64 = 0.003;
/// No budget is planned above one second: a model that slow is not real time here.
pub const MAX_BUDGET_S: f64 = 1.0;
/// The shortest crossfade between processed and dry audio, in seconds.
pub const CROSSFADE_S: f64 = 0.002;
/// Longest stream period the plan will scan for its worst case.
const MAX_PERIOD: u64 = 4_000_000;

/// The plugin's latency-quality setting (not automatable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Latency close to the floor: measured inference budget, short resampling filter.
    #[default]
    Live,
    /// Generous inference budget (one hop of time), the long resampling filter.
    Studio,
}

impl Mode {
    /// The resampling filter this mode uses.
    pub fn filter(self) -> FilterSpec {
        match self {
            Mode::Live => FilterSpec::LIVE,
            Mode::Studio => FilterSpec::STUDIO,
        }
    }

    /// The mode's name in logs, the editor and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Studio => "studio",
        }
    }

    /// Reads `live` or `studio`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "live" => Some(Mode::Live),
            "studio" => Some(Mode::Studio),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How long one hop of the model took in warm-up runs (measured once per model and kept, so
/// a reactivation reports the same latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InferenceTiming {
    /// Warm passes measured.
    pub passes: u32,
    /// The slowest pass, in nanoseconds.
    pub max_ns: u64,
    /// The median pass, in nanoseconds.
    pub median_ns: u64,
    /// The mean pass, in nanoseconds: what real time needs below the hop's duration (a
    /// separator's window runs on one hop in eight, so its slowest pass may be longer than a hop
    /// while it keeps up).
    pub mean_ns: u64,
}

impl InferenceTiming {
    /// Summarises pass durations (nanoseconds).
    pub fn from_passes(passes: &mut [u64]) -> InferenceTiming {
        passes.sort_unstable();
        InferenceTiming {
            passes: passes.len() as u32,
            max_ns: passes.last().copied().unwrap_or(0),
            median_ns: passes.get(passes.len() / 2).copied().unwrap_or(0),
            mean_ns: passes.iter().sum::<u64>() / passes.len().max(1) as u64,
        }
    }
}

/// Why a plan cannot be made for a rate pair or block size.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    /// The host rate is zero, fractional or absurd.
    BadHostRate(f32),
    /// The host promised no usable block size.
    BadBlockSize(usize),
    /// The rates cannot be resampled exactly.
    Resample(ResampleError),
    /// The hop and the rates line up so rarely that the plan would scan too long a period.
    PeriodTooLong { host: u32, model: u32, hop: usize },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::BadHostRate(r) => write!(
                f,
                "the host's sample rate of {r} Hz is not supported (use a whole number of Hz from 8 kHz to 384 kHz)"
            ),
            PlanError::BadBlockSize(n) => write!(
                f,
                "the host's maximum block size of {n} samples is not supported (1 to 65536)"
            ),
            PlanError::Resample(e) => e.fmt(f),
            PlanError::PeriodTooLong { host, model, hop } => write!(
                f,
                "a hop of {hop} samples at {model} Hz never lines up with {host} Hz; choose a common rate such as 44.1, 48 or 96 kHz"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Length of the crossfade between processed and dry audio at a host rate: 2 ms.
pub fn crossfade_len(host_rate: u32) -> usize {
    ((host_rate as f64 * CROSSFADE_S).ceil() as usize).max(16)
}

/// Every term of the reported latency, in host samples unless the name says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyPlan {
    /// Host sample rate in Hz.
    pub host_rate: u32,
    /// The model's contract.
    pub spec: StreamSpec,
    /// The latency-quality setting the plan was made for.
    pub mode: Mode,
    /// Host -> model resampler timing, when the rates differ.
    pub resample_in: Option<Geometry>,
    /// Model -> host resampler timing, when the rates differ.
    pub resample_out: Option<Geometry>,
    /// The processed stream's delay relative to the input: processed frame `j` is the model's
    /// response to input frame `j - processing_delay`.
    pub processing_delay: usize,
    /// The model's own latency but its look-ahead, in whole host samples (rounded down; the
    /// rest is in `resampling`).
    pub model: usize,
    /// The model's look-ahead ([`StreamSpec::lookahead`]: what a voice's pitch model and
    /// encoder hear past a sample), in whole host samples, named on its own.
    pub model_lookahead: usize,
    /// Collecting one hop of input before the model can run on it (rounded down likewise).
    pub hop_buffering: usize,
    /// What the resamplers' filters reach ahead, plus the rounding of the two terms above.
    pub resampling: usize,
    /// Time the worker is given to run a hop once its input is in.
    pub inference_budget: usize,
    /// Whether the budget comes from measured inference times (else it is provisional: one
    /// hop of time).
    pub budget_measured: bool,
    /// Host blocks are not aligned to hops: a block may need output up to `max_block - 1`
    /// samples after the hop it depends on was complete.
    pub block_adaptation: usize,
    /// The audio thread keeps this many processed samples in hand so that, when the worker is
    /// late, it can still fade from processed audio to dry audio without a click.
    pub crossfade_reserve: usize,
    /// The most host frames one hop can produce (buffer sizing).
    pub hop_host_max: usize,
    /// Studio with notes out: how long the note detector needs after the audio a note comes
    /// from, in host samples, and whether that audio is a stem (which comes out of the model
    /// `processing_delay` after its input). The total covers it (`notes_wait`).
    pub notes: Option<(usize, bool)>,
}

impl LatencyPlan {
    /// Plans the stream for a model contract at a host rate, maximum block size and mode, with
    /// the model's measured inference time when it is known.
    pub fn new(
        spec: StreamSpec,
        host_rate: f32,
        max_block: usize,
        mode: Mode,
        timing: Option<InferenceTiming>,
    ) -> Result<Self, PlanError> {
        if !(host_rate.is_finite() && (8_000.0..=384_000.0).contains(&host_rate))
            || host_rate.fract() != 0.0
        {
            return Err(PlanError::BadHostRate(host_rate));
        }
        if max_block == 0 || max_block > 1 << 16 {
            return Err(PlanError::BadBlockSize(max_block));
        }
        let host = host_rate as u32;
        let model = spec.sample_rate;
        let g = gcd(host as u64, model as u64);
        let (h, r) = (host as u64 / g, model as u64 / g);
        let hop = spec.hop as u64;
        let lat = spec.latency as u64;

        // P: the model's latency in host samples, rounded up; the output resampler's phase
        // absorbs the fraction, so the chain is a whole number of host samples.
        let processing_delay = (lat * h).div_ceil(r);
        let (resample_in, resample_out) = if host == model {
            (None, None)
        } else {
            let filter = mode.filter();
            let shift = (processing_delay * r - lat * h) as i64;
            (
                Some(Geometry::new(host, model, filter, 0).map_err(PlanError::Resample)?),
                Some(Geometry::new(model, host, filter, shift).map_err(PlanError::Resample)?),
            )
        };

        // The stream repeats every `period` host frames; the worst lookahead is found there.
        let period = lcm(h * hop, r) / r;
        if period > MAX_PERIOD {
            return Err(PlanError::PeriodTooLong {
                host,
                model,
                hop: spec.hop,
            });
        }
        let start = 8 * (hop * h / r + 64) + processing_delay;
        let mut worst = 0u64;
        for n in start..start + period {
            let need = host_input_needed(resample_in, resample_out, hop, n);
            worst = worst.max(need - n);
        }
        let lookahead = worst as usize + processing_delay as usize;
        let model_term = (lat * h / r) as usize;
        let lookahead_term = ((spec.lookahead.min(spec.latency) as u64) * h / r) as usize;
        let hop_term = (hop * h / r) as usize;
        let mut plan = LatencyPlan {
            host_rate: host,
            spec,
            mode,
            resample_in,
            resample_out,
            processing_delay: processing_delay as usize,
            model: model_term - lookahead_term,
            model_lookahead: lookahead_term,
            hop_buffering: hop_term,
            resampling: lookahead.saturating_sub(model_term + hop_term),
            inference_budget: 0,
            budget_measured: false,
            block_adaptation: max_block - 1,
            crossfade_reserve: crossfade_len(host),
            hop_host_max: (hop * h).div_ceil(r) as usize + 2,
            notes: None,
        };
        debug_assert!(lookahead >= model_term + hop_term, "{plan:?}");
        plan.set_budget(timing);
        Ok(plan)
    }

    /// The same plan with the inference budget for `timing` (or the provisional one).
    pub fn with_timing(mut self, timing: Option<InferenceTiming>) -> Self {
        self.set_budget(timing);
        self
    }

    fn set_budget(&mut self, timing: Option<InferenceTiming>) {
        let rate = self.host_rate as f64;
        let one_hop = (self.spec.hop as f64 * rate / self.spec.sample_rate as f64).ceil() as usize;
        let measured = timing.map(|t| {
            let seconds = (t.max_ns as f64 * 1e-9 * LIVE_BUDGET_FACTOR + SCHEDULING_MARGIN_S)
                .min(MAX_BUDGET_S);
            (seconds * rate).ceil() as usize
        });
        self.budget_measured = measured.is_some();
        self.inference_budget = match (self.mode, measured) {
            (Mode::Live, Some(m)) => m,
            // Studio keeps a generous budget: a whole hop of time, or more for a slow model.
            (Mode::Studio, Some(m)) => m.max(one_hop),
            (_, None) => one_hop,
        };
    }

    /// Model hops per second of host audio, as a fraction of real time the worker must keep.
    pub fn hop_seconds(&self) -> f64 {
        self.spec.hop as f64 / self.spec.sample_rate as f64
    }

    /// How far past input frame `j - processing_delay` the engine must have input before
    /// processed frame `j` exists: model latency + one hop + the resamplers' reach.
    pub fn lookahead(&self) -> usize {
        self.model + self.model_lookahead + self.hop_buffering + self.resampling
    }

    /// Samples of buffering between the worker's output stream and the host's output: the audio
    /// thread plays processed frame `j` at host sample `j + buffering()`.
    pub fn buffering(&self) -> usize {
        self.buffering_for_audio() + self.notes_wait()
    }

    fn buffering_for_audio(&self) -> usize {
        self.lookahead() - self.processing_delay
            + self.inference_budget
            + self.block_adaptation
            + self.crossfade_reserve
    }

    /// The same plan with notes out in Studio: `delay` host samples of detection after the
    /// audio a note comes from (from a stem when `from_stem`), covered by the total.
    pub fn with_notes(mut self, notes: Option<(usize, bool)>) -> Self {
        self.notes = notes;
        self
    }

    /// What the total adds so that a note leaves with the audio it came from (Studio with
    /// notes out): the detection delay past what the audio's latency already covers.
    pub fn notes_wait(&self) -> usize {
        match self.notes {
            Some((delay, from_stem)) => {
                let need = delay + if from_stem { self.processing_delay } else { 0 };
                need.saturating_sub(self.processing_delay + self.buffering_for_audio())
            }
            None => 0,
        }
    }

    /// The latency reported to the host, in host samples.
    pub fn total(&self) -> usize {
        self.processing_delay + self.buffering()
    }

    /// The lowest latency this model, rate, mode and measured inference time allow: its own
    /// latency, one hop, the resamplers, the inference budget and the crossfade reserve. The
    /// total is this plus the block adaptation, so never more than one host block above it.
    pub fn floor(&self) -> usize {
        self.total() - self.block_adaptation
    }

    /// The tail to report to the host: audio in flight plus the model's own tail.
    pub fn tail(&self) -> usize {
        let model_tail = (self.spec.tail as u64 * self.host_rate as u64)
            .div_ceil(self.spec.sample_rate as u64) as usize;
        self.total() + model_tail
    }

    /// Host input frames (from the stream's start) needed before processed frame `n` exists.
    pub fn input_needed(&self, n: u64) -> u64 {
        host_input_needed(self.resample_in, self.resample_out, self.spec.hop as u64, n)
    }

    /// One line per term, for logs, the CLI and the README.
    pub fn describe(&self) -> String {
        let ms = |s: usize| s as f64 * 1000.0 / self.host_rate as f64;
        format!(
            "{} mode: latency {} samples ({:.2} ms) = model {}{} + hop buffering {} + resampling {} + inference budget {}{} \
             + block adaptation {} + crossfade reserve {}{}; floor {} samples ({:.2} ms)",
            self.mode,
            self.total(),
            ms(self.total()),
            self.model,
            match self.model_lookahead {
                0 => String::new(),
                l => format!(" + look-ahead {l}"),
            },
            self.hop_buffering,
            self.resampling,
            self.inference_budget,
            if self.budget_measured { "" } else { " (provisional)" },
            self.block_adaptation,
            self.crossfade_reserve,
            match self.notes_wait() {
                0 => String::new(),
                w => format!(" + notes wait {w}"),
            },
            self.floor(),
            ms(self.floor()),
        )
    }
}

/// Host input frames needed before processed (host-rate) frame `n` can be computed.
fn host_input_needed(
    resample_in: Option<Geometry>,
    resample_out: Option<Geometry>,
    hop: u64,
    n: u64,
) -> u64 {
    // Model output samples the output resampler reads for frame n...
    let model_out = match resample_out {
        Some(g) => g.input_needed(n + 1),
        None => n + 1,
    };
    // ...which whole hops produce, each needing its input up to the hop's end...
    let model_in = model_out.div_ceil(hop) * hop;
    // ...which the input resampler makes from this much host input.
    match resample_in {
        Some(g) => g.input_needed(model_in),
        None => model_in,
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
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
            tail: 0,
            stems: 1,
            lookahead: 0,
        }
    }

    fn timing(us: u64) -> Option<InferenceTiming> {
        Some(InferenceTiming {
            passes: 50,
            max_ns: us * 1_000,
            median_ns: us * 500,
            mean_ns: us * 500,
        })
    }

    #[test]
    fn same_rate_is_model_latency_plus_one_hop_plus_budget() {
        let p = LatencyPlan::new(
            spec(48_000, 480, 32),
            48_000.0,
            128,
            Mode::Live,
            timing(100),
        )
        .unwrap();
        assert!(p.resample_in.is_none());
        assert_eq!(p.processing_delay, 32);
        assert_eq!((p.model, p.hop_buffering, p.resampling), (32, 480, 0));
        // 0.1 ms x 1.5 + 3 ms = 3.15 ms = 151.2 -> 152 samples.
        assert_eq!(p.inference_budget, 152);
        assert_eq!(p.crossfade_reserve, 96);
        assert_eq!(p.total(), 32 + 480 + 152 + 127 + 96);
        assert_eq!(p.floor(), 32 + 480 + 152 + 96);
    }

    #[test]
    fn a_models_look_ahead_is_a_term_of_its_own_and_changes_no_total() {
        let plain = spec(40_000, 8_000, 2_000);
        let ahead = StreamSpec {
            lookahead: 800,
            ..plain
        };
        for rate in [40_000.0, 44_100.0, 48_000.0] {
            let a = LatencyPlan::new(plain, rate, 256, Mode::Live, timing(1_000)).unwrap();
            let b = LatencyPlan::new(ahead, rate, 256, Mode::Live, timing(1_000)).unwrap();
            assert_eq!(a.total(), b.total(), "{rate}");
            assert_eq!(a.model, b.model + b.model_lookahead, "{rate}");
            // 20 ms of look-ahead at the host's rate, rounded down.
            assert_eq!(b.model_lookahead, (0.02 * rate) as usize, "{rate}");
            assert!(b
                .describe()
                .contains(&format!(" + look-ahead {} ", b.model_lookahead)));
            assert!(!a.describe().contains("look-ahead"));
        }
    }

    #[test]
    fn live_is_within_one_host_block_of_the_floor_everywhere() {
        for host in [44_100.0f32, 48_000.0, 96_000.0] {
            for block in [64usize, 128, 512, 1024] {
                for (model, hop, lat) in [
                    (48_000u32, 480usize, 64usize),
                    (44_100, 147, 0),
                    (16_000, 160, 40),
                ] {
                    let p = LatencyPlan::new(
                        spec(model, hop, lat),
                        host,
                        block,
                        Mode::Live,
                        timing(200),
                    )
                    .unwrap();
                    assert!(p.total() <= p.floor() + block, "{}", p.describe());
                    // The resamplers add at most 1.5 ms in Live mode (0.27 ms each way here).
                    assert!(
                        p.resampling as f64 / host as f64 <= 0.0015,
                        "{}",
                        p.describe()
                    );
                }
            }
        }
    }

    #[test]
    fn studio_keeps_a_whole_hop_of_budget_and_the_long_filter() {
        let live =
            LatencyPlan::new(spec(48_000, 480, 64), 44_100.0, 256, Mode::Live, timing(80)).unwrap();
        let studio = LatencyPlan::new(
            spec(48_000, 480, 64),
            44_100.0,
            256,
            Mode::Studio,
            timing(80),
        )
        .unwrap();
        assert_eq!(studio.inference_budget, 441);
        assert!(studio.resampling > live.resampling);
        assert!(studio.total() > live.total());
    }

    #[test]
    fn the_lookahead_covers_every_frame_of_the_period() {
        // Brute force over many frames: no processed frame needs input beyond the lookahead.
        for host in [44_100.0f32, 96_000.0, 22_050.0, 48_000.0] {
            for (model, hop, lat) in [
                (48_000u32, 480usize, 64usize),
                (16_000, 160, 7),
                (48_000, 256, 0),
            ] {
                let p =
                    LatencyPlan::new(spec(model, hop, lat), host, 64, Mode::Live, None).unwrap();
                for n in 0..20_000u64 {
                    let need = p.input_needed(n);
                    assert!(
                        need <= n + (p.lookahead() - p.processing_delay) as u64,
                        "host {host} model {model} hop {hop} n {n}: needs {need}; {}",
                        p.describe()
                    );
                }
            }
        }
    }

    #[test]
    fn without_a_measurement_the_budget_is_one_hop_and_says_so() {
        let p = LatencyPlan::new(spec(48_000, 480, 0), 48_000.0, 64, Mode::Live, None).unwrap();
        assert_eq!(p.inference_budget, 480);
        assert!(p.describe().contains("(provisional)"));
        let measured = p.with_timing(timing(50));
        assert!(measured.budget_measured && measured.total() < p.total());
    }

    #[test]
    fn bad_rates_and_blocks_are_refused() {
        let s = spec(48_000, 480, 0);
        assert_eq!(
            LatencyPlan::new(s, 0.0, 64, Mode::Live, None),
            Err(PlanError::BadHostRate(0.0))
        );
        assert!(LatencyPlan::new(s, f32::NAN, 64, Mode::Live, None).is_err());
        assert!(LatencyPlan::new(s, 44_100.5, 64, Mode::Live, None).is_err());
        assert_eq!(
            LatencyPlan::new(s, 48_000.0, 0, Mode::Live, None),
            Err(PlanError::BadBlockSize(0))
        );
        let err = LatencyPlan::new(s, 44_101.0, 64, Mode::Live, None).unwrap_err();
        assert!(err.to_string().contains("44101 Hz"), "{err}");
    }

    #[test]
    fn the_tail_adds_the_models_own_tail() {
        let mut s = spec(48_000, 480, 0);
        s.tail = 4_800;
        let p = LatencyPlan::new(s, 96_000.0, 64, Mode::Live, None).unwrap();
        assert_eq!(p.tail(), p.total() + 9_600);
    }

    #[test]
    fn crossfades_are_at_least_two_milliseconds() {
        assert_eq!(crossfade_len(48_000), 96);
        assert_eq!(crossfade_len(44_100), 89);
        assert_eq!(crossfade_len(96_000), 192);
    }
}
