//! Stops a model run that does not finish: ONNX Runtime's run-termination flag, set from a
//! watchdog thread when a run passes its time limit (a graph with a `Loop` of 10^15 iterations
//! would otherwise hold the worker, and a bounce, forever).
//!
//! The worker pays two atomic stores per run; the watchdog thread polls the armed runs every
//! 20 ms. Nothing here runs on the audio thread.

use ort::session::RunOptions;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Environment variable: the longest one run of a model may take, in milliseconds.
pub const ENV_MAX_RUN_MS: &str = "REFRAIN_MAX_RUN_MS";
/// The longest one run may take by default: far beyond any real-time use, short enough that a
/// hung model fails a bounce quickly.
pub const DEFAULT_MAX_RUN: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// The longest one run may take: `REFRAIN_MAX_RUN_MS` or [`DEFAULT_MAX_RUN`].
pub fn max_run() -> Duration {
    std::env::var(ENV_MAX_RUN_MS)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_MAX_RUN)
}

/// One model's runs, watched.
pub struct Watched {
    run_options: RunOptions,
    /// Nanoseconds since the watchdog's epoch when the current run started; 0 when idle.
    started: AtomicU64,
    limit: Duration,
    fired: AtomicBool,
}

impl Watched {
    /// The run options every run of this model uses (the watchdog terminates through them).
    pub fn run_options(&self) -> &RunOptions {
        &self.run_options
    }

    /// Marks a run as started.
    pub fn begin(&self) {
        let now = epoch().elapsed().as_nanos() as u64;
        self.started.store(now.max(1), Ordering::Release);
    }

    /// Marks the run as over; true if the watchdog stopped it.
    pub fn end(&self) -> bool {
        self.started.store(0, Ordering::Release);
        self.fired.load(Ordering::Acquire)
    }

    /// The time limit of one run.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

static WATCHED: Mutex<Vec<Weak<Watched>>> = Mutex::new(Vec::new());
/// Wakes the watchdog thread when a model is watched again.
static WATCHING: Condvar = Condvar::new();

/// Watches the runs of one model (for as long as the returned handle lives).
pub fn watch(limit: Duration) -> Result<Arc<Watched>, String> {
    let run_options = RunOptions::new().map_err(|e| e.to_string())?;
    let w = Arc::new(Watched {
        run_options,
        started: AtomicU64::new(0),
        limit,
        fired: AtomicBool::new(false),
    });
    let mut list = WATCHED.lock();
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(&w));
    drop(list);
    start_thread();
    WATCHING.notify_one();
    Ok(w)
}

/// The watchdog thread lives as long as the process (the library is pinned first, so that a
/// host unloading the plugin never pulls its code from under it). With no model watched it
/// sleeps on a condition variable and costs nothing.
fn start_thread() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        crate::detach::pin_library();
        let _ = std::thread::Builder::new()
            .name("refrain-watchdog".into())
            .spawn(|| loop {
                {
                    let mut list = WATCHED.lock();
                    list.retain(|w| w.strong_count() > 0);
                    if list.is_empty() {
                        WATCHING.wait(&mut list);
                        continue;
                    }
                }
                std::thread::sleep(POLL);
                let now = epoch().elapsed().as_nanos() as u64;
                let live: Vec<Arc<Watched>> =
                    WATCHED.lock().iter().filter_map(Weak::upgrade).collect();
                for w in live {
                    let started = w.started.load(Ordering::Acquire);
                    if started != 0
                        && now.saturating_sub(started) > w.limit.as_nanos() as u64
                        && !w.fired.swap(true, Ordering::AcqRel)
                    {
                        let _ = w.run_options.terminate();
                    }
                }
            });
    });
}
