//! What the engine tells the rest of the plugin (editor, logs, CLI): atomics only on the paths
//! the audio thread touches; the human-readable messages sit behind locks only the worker and
//! the GUI take.

use super::latency::InferenceTiming;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Quarter-octave buckets from 1 us: 80 of them reach beyond a second.
const HISTOGRAM_BUCKETS: usize = 80;

fn bucket(ns: u64) -> usize {
    let us = (ns as f64 / 1_000.0).max(1.0);
    ((us.log2() * 4.0) as usize).min(HISTOGRAM_BUCKETS - 1)
}

fn bucket_upper_ns(b: usize) -> u64 {
    (2f64.powf((b + 1) as f64 / 4.0) * 1_000.0) as u64
}

/// Where the worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EngineState {
    /// Loading the model; dry audio passes.
    Starting = 0,
    /// The model runs; processed audio passes.
    Running = 1,
    /// The model failed to load or run; dry audio passes and `message()` says why.
    Failed = 2,
}

/// Counters and state shared by the audio thread, the worker and the GUI.
#[derive(Debug)]
pub struct EngineStatus {
    state: AtomicU8,
    /// Times the processed stream was late and the output faded to dry.
    pub underruns: AtomicU64,
    /// Times the worker fell so far behind that the input ring filled up.
    pub overflows: AtomicU64,
    /// Model output samples that were NaN or infinite (replaced by silence).
    pub non_finite: AtomicU64,
    /// Hops the model has run.
    pub hops: AtomicU64,
    /// Hops skipped because they were already too late to be heard.
    pub late_hops: AtomicU64,
    /// Hops skipped because the output was bypassed (or unlicensed).
    pub bypassed_hops: AtomicU64,
    /// Worst time the model took for one hop, in nanoseconds.
    pub worst_hop_ns: AtomicU64,
    /// Sum of hop times in nanoseconds (for the real-time factor).
    pub total_hop_ns: AtomicU64,
    /// Hop times, quarter-octave buckets from 1 us (for percentiles).
    hop_histogram: [AtomicU64; HISTOGRAM_BUCKETS],
    /// Set by a bounce that waited too long for the worker (real-time safe to set).
    stalled: AtomicBool,
    /// Set once the warm-up timing is known.
    timing_ready: AtomicBool,
    timing: Mutex<Option<InferenceTiming>>,
    /// Why the state is what it is, for a person.
    message: Mutex<String>,
    /// Whether the worker runs at real-time priority, or why not.
    priority: Mutex<String>,
    /// Which device runs the model, and why a preferred one was not used.
    device: Mutex<String>,
    /// Each stem's peak level on its output since the editor last looked (an `f32`'s bits:
    /// for levels, which are never negative, their order is the numbers' order).
    stem_peaks: [AtomicU32; super::MAX_STEMS],
}

impl Default for EngineStatus {
    fn default() -> Self {
        EngineStatus {
            state: AtomicU8::new(EngineState::Starting as u8),
            underruns: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            non_finite: AtomicU64::new(0),
            hops: AtomicU64::new(0),
            late_hops: AtomicU64::new(0),
            bypassed_hops: AtomicU64::new(0),
            worst_hop_ns: AtomicU64::new(0),
            total_hop_ns: AtomicU64::new(0),
            hop_histogram: std::array::from_fn(|_| AtomicU64::new(0)),
            stalled: AtomicBool::new(false),
            timing_ready: AtomicBool::new(false),
            timing: Mutex::new(None),
            message: Mutex::new("loading the model".into()),
            priority: Mutex::new("normal priority (not started)".into()),
            device: Mutex::new(String::new()),
            stem_peaks: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl EngineStatus {
    /// Raises stem `s`'s peak to `level` (the audio thread, once per block). Real-time safe.
    pub fn note_stem_peak(&self, s: usize, level: f32) {
        if let Some(p) = self.stem_peaks.get(s) {
            if level.is_finite() && level > 0.0 {
                p.fetch_max(level.to_bits(), Ordering::Relaxed);
            }
        }
    }

    /// Stem `s`'s peak level since the last call (the editor's meter), and starts over.
    pub fn take_stem_peak(&self, s: usize) -> f32 {
        self.stem_peaks
            .get(s)
            .map_or(0.0, |p| f32::from_bits(p.swap(0, Ordering::Relaxed)))
    }

    /// The worker's state.
    pub fn state(&self) -> EngineState {
        if self.stalled.load(Ordering::Acquire) {
            return EngineState::Failed;
        }
        match self.state.load(Ordering::Acquire) {
            1 => EngineState::Running,
            2 => EngineState::Failed,
            _ => EngineState::Starting,
        }
    }

    /// Sets the state and its reason. Not for the audio thread (takes a lock).
    pub fn set(&self, state: EngineState, message: impl Into<String>) {
        *self.message.lock() = message.into();
        self.state.store(state as u8, Ordering::Release);
    }

    /// Why the state is what it is. Not for the audio thread.
    pub fn message(&self) -> String {
        if self.stalled.load(Ordering::Acquire) {
            return format!(
                "the model stopped responding during a bounce; the rest of the bounce is dry (last state: {})",
                self.message.lock()
            );
        }
        self.message.lock().clone()
    }

    /// Marks the model failed because a bounce waited too long for it. Real-time safe.
    pub fn mark_stalled(&self) {
        self.stalled.store(true, Ordering::Release);
    }

    /// Records how long one hop took.
    pub fn record_hop(&self, ns: u64) {
        self.hops.fetch_add(1, Ordering::Relaxed);
        self.total_hop_ns.fetch_add(ns, Ordering::Relaxed);
        self.worst_hop_ns.fetch_max(ns, Ordering::Relaxed);
        self.hop_histogram[bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// The hop time below which a fraction `q` of hops ran (an upper bound, to a quarter
    /// octave), in nanoseconds; 0 before any hop.
    pub fn hop_percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .hop_histogram
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (b, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return bucket_upper_ns(b).min(self.worst_hop_ns.load(Ordering::Relaxed));
            }
        }
        self.worst_hop_ns.load(Ordering::Relaxed)
    }

    /// Publishes the warm-up timing (worker).
    pub fn set_timing(&self, timing: InferenceTiming) {
        *self.timing.lock() = Some(timing);
        self.timing_ready.store(true, Ordering::Release);
    }

    /// Whether the warm-up timing is known. Real-time safe (an atomic load).
    pub fn timing_ready(&self) -> bool {
        self.timing_ready.load(Ordering::Acquire)
    }

    /// The warm-up timing, once known. Not for the audio thread.
    pub fn timing(&self) -> Option<InferenceTiming> {
        *self.timing.lock()
    }

    /// The warm-up timing without blocking: `None` if the worker holds the lock right now.
    /// Real-time safe.
    pub fn try_timing(&self) -> Option<InferenceTiming> {
        if !self.timing_ready() {
            return None;
        }
        self.timing.try_lock().and_then(|t| *t)
    }

    /// Records the worker's scheduling outcome.
    pub fn set_priority(&self, text: impl Into<String>) {
        *self.priority.lock() = text.into();
    }

    /// Whether the worker runs at real-time priority, or why not.
    pub fn priority(&self) -> String {
        self.priority.lock().clone()
    }

    /// Records which device runs the model.
    pub fn set_device(&self, text: impl Into<String>) {
        *self.device.lock() = text.into();
    }

    /// Which device runs the model (empty until the model is loaded).
    pub fn device(&self) -> String {
        self.device.lock().clone()
    }

    /// Mean real-time factor of the model's hops so far (time per hop / hop duration).
    pub fn real_time_factor(&self, hop_seconds: f64) -> f64 {
        let hops = self.hops.load(Ordering::Relaxed).max(1);
        self.total_hop_ns.load(Ordering::Relaxed) as f64 * 1e-9 / hops as f64 / hop_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let s = EngineStatus::default();
        for _ in 0..999 {
            s.record_hop(100_000);
        }
        s.record_hop(5_000_000);
        let p50 = s.hop_percentile(0.5);
        assert!((100_000..=120_000).contains(&p50), "{p50}");
        assert_eq!(s.hop_percentile(1.0), 5_000_000);
        assert!(s.hop_percentile(0.999) <= 120_000);
    }
}
