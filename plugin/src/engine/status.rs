//! What the engine tells the rest of the plugin (editor, logs, CLI): atomics only on the paths
//! the audio thread touches; the human-readable message sits behind a lock only the worker and
//! the GUI take.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

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
    /// Chunks the model has processed.
    pub chunks: AtomicU64,
    /// Chunks skipped because they were already too late to be heard.
    pub skipped_chunks: AtomicU64,
    /// Worst time the model took for one chunk, in nanoseconds.
    pub worst_chunk_ns: AtomicU64,
    /// Sum of chunk times in nanoseconds (for the real-time factor).
    pub total_chunk_ns: AtomicU64,
    /// Why the state is what it is, for a person.
    message: Mutex<String>,
}

impl Default for EngineStatus {
    fn default() -> Self {
        EngineStatus {
            state: AtomicU8::new(EngineState::Starting as u8),
            underruns: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            non_finite: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            skipped_chunks: AtomicU64::new(0),
            worst_chunk_ns: AtomicU64::new(0),
            total_chunk_ns: AtomicU64::new(0),
            message: Mutex::new("loading the model".into()),
        }
    }
}

impl EngineStatus {
    /// The worker's state.
    pub fn state(&self) -> EngineState {
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
        self.message.lock().clone()
    }

    /// Records how long one chunk took.
    pub fn record_chunk(&self, ns: u64) {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.total_chunk_ns.fetch_add(ns, Ordering::Relaxed);
        self.worst_chunk_ns.fetch_max(ns, Ordering::Relaxed);
    }
}
