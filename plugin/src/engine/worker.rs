//! The background thread: pulls input from the stream, runs the model hop by hop, pushes
//! processed chunks back.
//!
//! It owns the model (and so the ONNX session): sessions are created, warmed up, swapped and
//! dropped here, never on the audio thread. It blocks between hops on the stream's wake-up
//! signal; the audio thread wakes it exactly when the input for the next hop is in. A panic or
//! an error inside the model becomes a status the audio thread reads, and the audio passes dry
//! and aligned.

use super::latency::{InferenceTiming, LatencyPlan, Mode};
use super::pipeline::Pipeline;
use super::priority;
use super::status::{EngineState, EngineStatus};
use super::stream::{MarkKind, Shared, WorkerEnd};
use crate::models::processor::{HopProcessor, StreamSpec};
use crate::notes::tracker::{NoteSource, TrackerFeed};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loads the model on the worker thread (so activation returns at once).
pub type ModelLoader = Box<dyn FnOnce() -> Result<Box<dyn HopProcessor>, String> + Send>;

/// Warm-up passes before the inference time counts as measured.
pub const WARMUP_MIN_PASSES: usize = 50;
/// Sleep between warm-up passes.
const WARMUP_SPACING: Duration = Duration::from_millis(2);
/// Passes run before the measured ones (they pay for allocation and cold caches).
const COLD_PASSES: usize = 5;
/// Warm-up passes at most.
const WARMUP_MAX_PASSES: usize = 400;
/// Warm-up stops after this long even if the time has not settled.
const WARMUP_MAX_TIME: Duration = Duration::from_secs(4);
/// How long the idle worker sleeps before it checks for a stop on its own.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// Knobs for the worker.
#[derive(Default)]
pub struct WorkerOptions {
    /// Extra time spent on every hop: fault injection for underrun tests and soak runs.
    pub extra_delay_per_hop: Duration,
    /// The model's warm-up timing when it is already known (no second measurement).
    pub timing: Option<InferenceTiming>,
    /// Told the timing once the worker has measured it (the chain keeps it for the model, so
    /// every later instance plans the same latency).
    pub on_measured: Option<Box<dyn FnOnce(InferenceTiming) + Send>>,
    /// Where the worker says, in words, which device runs the model and how it is scheduled.
    pub log: Option<fn(&str)>,
    /// Notes out: where the worker sends the audio the note tracker listens to (the input, or
    /// one stem of a separator's output).
    pub notes: Option<(TrackerFeed, NoteSource)>,
    /// Notes out in Studio: how long the note detector needs after the audio a note comes from
    /// (host samples), and whether that audio is a stem. The engine's latency covers it.
    pub notes_delay: Option<(usize, bool)>,
}

/// Times at least [`WARMUP_MIN_PASSES`] hops of `processor` on low-level noise, until the
/// slowest pass stops growing, then resets it. The loader thread and the worker both use it.
pub fn measure(processor: &mut dyn HopProcessor) -> Result<InferenceTiming, String> {
    let spec: StreamSpec = processor.spec();
    let mut window = vec![0.0f32; spec.channels * (spec.context + spec.hop)];
    let mut out = vec![0.0f32; spec.out_len()];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut passes: Vec<u64> = Vec::with_capacity(WARMUP_MAX_PASSES);
    let started = Instant::now();
    let mut settled_max = 0u64;
    while passes.len() < WARMUP_MAX_PASSES && started.elapsed() < WARMUP_MAX_TIME {
        for s in window.iter_mut() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *s = ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
        }
        let t = Instant::now();
        processor
            .process(&window, &mut out)
            .map_err(|e| format!("the model failed while warming up: {e}"))?;
        passes.push(t.elapsed().as_nanos() as u64);
        // Streaming runs one hop at a time with the worker asleep in between (cold caches, a
        // slower clock): space the passes the same way, or back-to-back passes flatter it.
        std::thread::sleep(WARMUP_SPACING);
        // Settled: a batch of 25 passes with no new maximum, after the minimum.
        if passes.len().is_multiple_of(25) {
            let max = passes[COLD_PASSES.min(passes.len())..]
                .iter()
                .copied()
                .max()
                .unwrap_or(0);
            if passes.len() >= WARMUP_MIN_PASSES + COLD_PASSES && max == settled_max {
                break;
            }
            settled_max = max;
        }
    }
    processor.reset();
    // The first passes pay for allocation and caches; they are not what streaming costs.
    let skip = COLD_PASSES.min(passes.len().saturating_sub(1));
    Ok(InferenceTiming::from_passes(&mut passes[skip..]))
}

/// The running state's message: plain "running", or a warning when the model cannot keep up
/// in real time on this machine: its hops take longer than the audio they cover on average, or
/// its slowest is over the longest budget there is.
pub fn running_message(plan: &LatencyPlan, timing: Option<InferenceTiming>) -> String {
    let hop = plan.hop_seconds();
    match timing {
        Some(t)
            if t.mean_ns as f64 * 1e-9 > hop
                || t.max_ns as f64 * 1e-9 > super::latency::MAX_BUDGET_S =>
        {
            format!(
                "running, but not real time on this machine: a hop takes {:.1} ms on average (at most {:.1} ms) for {:.1} ms of audio; \
                 use Studio mode, a bounce or a remote server",
                t.mean_ns as f64 * 1e-6,
                t.max_ns as f64 * 1e-6,
                hop * 1e3
            )
        }
        _ => "running".into(),
    }
}

pub(crate) struct Worker {
    pub plan: LatencyPlan,
    pub channels: usize,
    pub end: WorkerEnd,
    pub shared: Arc<Shared>,
    pub status: Arc<EngineStatus>,
    pub swaps: crossbeam_channel::Receiver<Box<dyn HopProcessor>>,
    pub options: WorkerOptions,
    /// Dropped when the thread ends: the engine waits on it (with a bound) when it is dropped.
    pub done: crossbeam_channel::Sender<()>,
}

/// Where the worker's current stream sits in host time and in the input ring.
#[derive(Debug, Clone, Copy, Default)]
struct Origin {
    /// Host time of the stream's first frame.
    host: u64,
    /// Input ring lifetime count at the stream's first frame.
    ring: u64,
}

impl Worker {
    pub fn run(mut self, loader: ModelLoader) {
        priority::flush_denormals();
        self.shared.wake.bind_waiter();
        let mut pipeline = self.load(loader);
        let ch = self.channels;
        let mut scratch = vec![0.0f32; self.plan.hop_host_max.max(1) * ch];
        let mut origin = Origin::default();
        let mut bypassed = false;
        let mut priority_asked = false;

        while !self.shared.stop.load(Ordering::Acquire) {
            if !priority_asked {
                priority_asked = self.maybe_raise_priority();
            }
            if let Some(p) = &mut pipeline {
                if let Ok(next) = self.swaps.try_recv() {
                    if let Err(e) = p.install(next) {
                        self.status
                            .set(EngineState::Failed, format!("the new model: {e}"));
                    } else {
                        self.status.set(EngineState::Running, "running");
                    }
                }
            }

            // 1. A hop whose input is in: run it (or skip it) and push what it made.
            if let Some(p) = pipeline.as_mut().filter(|p| p.hop_ready()) {
                let (first, end) = p.next_hop_outputs();
                if self.end.output_room() < (end - first) as usize {
                    // The audio thread has not played enough yet.
                    self.idle(Duration::from_millis(1));
                    continue;
                }
                let realtime = self.shared.realtime.load(Ordering::Relaxed);
                let due = self.shared.audio_time.load(Ordering::Acquire);
                let buffering = self.shared.buffering.load(Ordering::Relaxed);
                let late = realtime && origin.host + end + buffering <= due;
                let run_model = !bypassed && !late;
                let started = Instant::now();
                let result = catch_unwind(AssertUnwindSafe(|| p.run_hop(run_model)));
                let hop = match result {
                    Ok(Ok(hop)) => hop,
                    Ok(Err(e)) => {
                        self.status.set(EngineState::Failed, e.to_string());
                        pipeline = None;
                        continue;
                    }
                    Err(_) => {
                        self.status
                            .set(EngineState::Failed, "the model crashed while processing");
                        pipeline = None;
                        continue;
                    }
                };
                if run_model {
                    if !self.options.extra_delay_per_hop.is_zero() {
                        std::thread::sleep(self.options.extra_delay_per_hop);
                    }
                    self.status.record_hop(started.elapsed().as_nanos() as u64);
                } else if late {
                    self.status.late_hops.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.status.bypassed_hops.fetch_add(1, Ordering::Relaxed);
                }
                if hop.non_finite > 0 {
                    self.status
                        .non_finite
                        .fetch_add(hop.non_finite as u64, Ordering::Relaxed);
                }
                let frames = p.output(hop.frames);
                let width = p.width();
                if let Some((feed, NoteSource::Stem(s))) = &mut self.options.notes {
                    // Output frame j is the model's answer to input frame j - P.
                    // (Frames before P answer input from before the stream: not sent.)
                    let p_delay = self.plan.processing_delay as u64;
                    let stem = *s;
                    let end = hop.first + hop.frames as u64;
                    if end > p_delay && stem < p.plan().spec.stems.max(1) {
                        let skip = p_delay.saturating_sub(hop.first) as usize;
                        let at = origin.host + hop.first + skip as u64 - p_delay;
                        feed.push_frames(at, &frames[skip * width..], width, stem * ch, ch);
                    }
                }
                let cold = (hop.audible_from - hop.first) as usize;
                self.end
                    .push_chunk(origin.host + hop.first, &frames[..cold * width], false);
                self.end.push_chunk(
                    origin.host + hop.audible_from,
                    &frames[cold * width..],
                    true,
                );
                continue;
            }

            // 2. More input, up to the next mark.
            let (mark, available) = self.end.poll();
            if available > 0 {
                let max = pipeline
                    .as_ref()
                    .map_or(scratch.len() / ch, |p| p.max_feed());
                let n = (available as usize).min(max);
                let at = origin.host + self.end.consumed() - origin.ring;
                let got = self.end.pop_input(&mut scratch[..n * ch]);
                if let Some((feed, NoteSource::Input)) = &mut self.options.notes {
                    feed.push_frames(at, &scratch[..got * ch], ch, 0, ch);
                }
                if let Some(p) = &mut pipeline {
                    p.push_input(&scratch[..got * ch]);
                }
                continue;
            }
            // 3. The mark the input has reached.
            if let Some(mark) = mark {
                self.end.take_mark();
                match mark.kind {
                    MarkKind::Start { prestart_silent } => {
                        origin = Origin {
                            host: mark.host,
                            ring: mark.at,
                        };
                        if let Some((feed, _)) = &mut self.options.notes {
                            feed.start_stream(mark.host);
                        }
                        if let Some(p) = &mut pipeline {
                            p.reset(prestart_silent);
                        }
                    }
                    MarkKind::Bypass(b) => bypassed = b,
                }
                continue;
            }
            // 4. Nothing to do until the next hop's input is in: say how much that is, check
            // once more (the audio thread may have pushed meanwhile), then block.
            let wake_at = match &pipeline {
                Some(p) => origin.ring + p.input_needed_for_next_hop(),
                None => self.end.consumed() + 1,
            };
            self.shared.wake_at.store(wake_at, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let (mark, available) = self.end.poll();
            if mark.is_none() && available == 0 {
                self.idle(IDLE_WAIT);
            }
            self.shared.wake_at.store(u64::MAX, Ordering::SeqCst);
        }
        drop(pipeline);
        drop(self.done);
    }

    fn idle(&self, timeout: Duration) {
        self.shared.wake.wait(timeout);
    }

    /// Loads and warms up the model; `None` (with the status saying why) if it fails.
    fn load(&mut self, loader: ModelLoader) -> Option<Pipeline> {
        let mut processor = match catch_unwind(AssertUnwindSafe(loader)) {
            Ok(Ok(p)) => p,
            Ok(Err(message)) => {
                self.status.set(EngineState::Failed, message);
                return None;
            }
            Err(_) => {
                self.status
                    .set(EngineState::Failed, "the model loader crashed");
                return None;
            }
        };
        let timing = match self.options.timing {
            Some(t) => Ok(t),
            None => catch_unwind(AssertUnwindSafe(|| measure(processor.as_mut())))
                .unwrap_or_else(|_| Err("the model crashed while warming up".into())),
        };
        let device = processor
            .device()
            .unwrap_or_else(|| "CPU (built-in processor)".into());
        if let Some(log) = self.options.log {
            log(&format!("Refrain: the model runs on {device}"));
        }
        self.status.set_device(device);
        if let (Ok(t), Some(tell)) = (&timing, self.options.on_measured.take()) {
            if self.options.timing.is_none() {
                tell(*t);
            }
        }
        match &timing {
            Ok(t) => self.status.set_timing(*t),
            Err(e) => {
                self.status.set(EngineState::Failed, e.clone());
                return None;
            }
        }
        match Pipeline::new(self.plan, self.channels, processor) {
            Ok(p) => {
                self.status.set(
                    EngineState::Running,
                    running_message(&self.plan, timing.ok()),
                );
                Some(p)
            }
            Err(e) => {
                self.status.set(EngineState::Failed, e.to_string());
                None
            }
        }
    }

    /// In Live mode and real time, once the host's audio thread has said how it is scheduled,
    /// asks for the priority one below it. Returns whether the question is settled.
    fn maybe_raise_priority(&self) -> bool {
        if self.plan.mode != Mode::Live {
            self.status
                .set_priority("normal priority: Studio mode does not ask for real-time priority");
            return true;
        }
        if !self.shared.realtime.load(Ordering::Relaxed) {
            return false;
        }
        let host = self.shared.host_priority.load(Ordering::Acquire);
        if host == super::stream::HOST_PRIORITY_UNKNOWN {
            return false;
        }
        let outcome = priority::raise_below(host).to_string();
        if let Some(log) = self.options.log {
            log(&format!("Refrain: the worker runs at {outcome}"));
        }
        self.status.set_priority(outcome);
        true
    }
}
