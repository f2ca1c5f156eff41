//! The background thread: pulls chunks from the input ring, runs the model, pushes results.
//!
//! It owns the model (and so the ONNX session): sessions are created, swapped and dropped here,
//! never on the audio thread. A panic or an error inside the model becomes a status the audio
//! thread reads; the worker keeps the stream's indices consistent so recovery is seamless.

use super::latency::LatencyPlan;
use super::pipeline::Pipeline;
use super::status::{EngineState, EngineStatus};
use crate::models::processor::HopProcessor;
use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Loads the model on the worker thread (so `activate()` returns at once).
pub type ModelLoader = Box<dyn FnOnce() -> Result<Box<dyn HopProcessor>, String> + Send>;

/// Chunks of input history kept to warm a swapped-in model before it is heard.
const HISTORY_CHUNKS: usize = 4;

/// State shared by the audio thread and the worker to keep the two streams aligned.
#[derive(Debug, Default)]
pub struct StreamSync {
    /// Bumped by the audio thread on reset or resync.
    pub audio_epoch: AtomicU32,
    /// Frames the audio thread had pushed (ring lifetime) when it bumped the epoch; the worker
    /// discards input up to here.
    pub reset_input_mark: AtomicU64,
    /// The epoch the worker has switched to.
    pub worker_epoch: AtomicU32,
    /// Frames the worker had pushed (ring lifetime) when it switched: the new epoch's output
    /// stream starts there.
    pub worker_epoch_start: AtomicU64,
    /// Host frames the audio thread has processed in the current epoch.
    pub audio_frames: AtomicU64,
    /// Tells the worker to finish.
    pub stop: AtomicBool,
}

/// Knobs for the worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Extra time spent on every chunk: fault injection for underrun tests and soak runs.
    pub extra_delay_per_chunk: Duration,
}

pub(crate) struct Worker {
    pub plan: LatencyPlan,
    pub channels: usize,
    pub input: HeapCons<f32>,
    pub output: HeapProd<f32>,
    pub sync: Arc<StreamSync>,
    pub status: Arc<EngineStatus>,
    pub swaps: crossbeam_channel::Receiver<Box<dyn HopProcessor>>,
    pub options: WorkerOptions,
}

impl Worker {
    pub fn run(mut self, loader: ModelLoader) {
        let mut pipeline = match catch_unwind(AssertUnwindSafe(loader)) {
            Ok(Ok(processor)) => match Pipeline::new(self.plan, self.channels, processor) {
                Ok(p) => {
                    self.status.set(EngineState::Running, "running");
                    Some(p)
                }
                Err(e) => {
                    self.status.set(EngineState::Failed, e.to_string());
                    None
                }
            },
            Ok(Err(message)) => {
                self.status.set(EngineState::Failed, message);
                None
            }
            Err(_) => {
                self.status
                    .set(EngineState::Failed, "the model loader crashed");
                None
            }
        };

        let ch = self.channels;
        let chunk = self.plan.chunk_host * ch;
        let mut input = vec![0.0f32; chunk];
        let mut output = vec![0.0f32; chunk];
        let mut history = vec![vec![0.0f32; chunk]; HISTORY_CHUNKS];
        let mut history_next = 0usize;
        let mut consumed: u64 = 0;
        let mut pushed: u64 = 0;
        let mut epoch = 0u32;
        // Output stream index (frames) of the next chunk in this epoch.
        let mut out_index: u64 = 0;
        let mut pending: Option<Box<dyn HopProcessor>> = None;

        while !self.sync.stop.load(Ordering::Acquire) {
            // A reset or resync from the audio thread: drop old input, restart the stream.
            let e = self.sync.audio_epoch.load(Ordering::Acquire);
            if e != epoch {
                let mark = self.sync.reset_input_mark.load(Ordering::Acquire);
                if self.sync.audio_epoch.load(Ordering::Acquire) != e {
                    continue;
                }
                while consumed < mark * ch as u64 && !self.sync.stop.load(Ordering::Acquire) {
                    let n = self.input.skip((mark * ch as u64 - consumed) as usize);
                    consumed += n as u64;
                    if n == 0 {
                        std::thread::park_timeout(Duration::from_micros(200));
                    }
                }
                if let Some(p) = &mut pipeline {
                    p.reset();
                }
                history.iter_mut().for_each(|h| h.fill(0.0));
                out_index = 0;
                self.sync
                    .worker_epoch_start
                    .store(pushed, Ordering::Release);
                self.sync.worker_epoch.store(e, Ordering::Release);
                epoch = e;
            }

            // A new model, loaded elsewhere: it waits for the next chunk, is warmed on the
            // chunks before it, and is crossfaded in over that chunk.
            if pending.is_none() {
                pending = self.swaps.try_recv().ok();
            }

            if self.input.occupied_len() < chunk || self.output.vacant_len() < chunk {
                std::thread::park_timeout(Duration::from_millis(2));
                continue;
            }
            let swap = pending.take();
            self.input.pop_slice(&mut input);
            consumed += chunk as u64;
            history[history_next].copy_from_slice(&input);
            history_next = (history_next + 1) % HISTORY_CHUNKS;

            let due = self
                .sync
                .audio_frames
                .load(Ordering::Relaxed)
                .saturating_sub(self.plan.buffering() as u64);
            let started = Instant::now();
            if out_index + self.plan.chunk_host as u64 <= due {
                // Already too late to be heard: skip the model, keep the indices.
                output.fill(0.0);
                if let Some(p) = &mut pipeline {
                    p.reset();
                }
                self.status.skipped_chunks.fetch_add(1, Ordering::Relaxed);
                pending = swap;
            } else if let Some(p) = &mut pipeline {
                match catch_unwind(AssertUnwindSafe(|| p.process_chunk(&input, &mut output))) {
                    Ok(Ok(bad)) => {
                        if bad > 0 {
                            self.status
                                .non_finite
                                .fetch_add(bad as u64, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) => {
                        self.status.set(EngineState::Failed, e.to_string());
                        pipeline = None;
                        output.fill(0.0);
                    }
                    Err(_) => {
                        self.status
                            .set(EngineState::Failed, "the model crashed while processing");
                        pipeline = None;
                        output.fill(0.0);
                    }
                }
                if let Some(processor) = swap {
                    self.install(
                        &mut pipeline,
                        processor,
                        &history,
                        history_next,
                        &input,
                        &mut output,
                    );
                }
                if !self.options.extra_delay_per_chunk.is_zero() {
                    std::thread::sleep(self.options.extra_delay_per_chunk);
                }
                self.status
                    .record_chunk(started.elapsed().as_nanos() as u64);
            } else {
                output.fill(0.0);
                if let Some(processor) = swap {
                    // Nothing was playing: the audio thread fades the new model in from dry.
                    self.install(
                        &mut pipeline,
                        processor,
                        &history,
                        history_next,
                        &input,
                        &mut output,
                    );
                }
            }
            self.output.push_slice(&output);
            pushed += chunk as u64;
            out_index += self.plan.chunk_host as u64;
        }
    }

    /// Puts `processor` in place of the running pipeline: the new model is warmed on the
    /// chunks before `current` (the chunk just processed by the old model, whose output is in
    /// `output`), run on `current`, and crossfaded in over it.
    fn install(
        &self,
        pipeline: &mut Option<Pipeline>,
        processor: Box<dyn HopProcessor>,
        history: &[Vec<f32>],
        history_next: usize,
        current: &[f32],
        output: &mut [f32],
    ) {
        let mut fresh = match Pipeline::new(self.plan, self.channels, processor) {
            Ok(p) => p,
            Err(e) => {
                self.status.set(EngineState::Failed, e.to_string());
                return;
            }
        };
        let ch = self.channels;
        let mut scratch = vec![0.0f32; output.len()];
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            // `history_next` is the oldest entry; the newest is `current` itself.
            for k in 0..HISTORY_CHUNKS - 1 {
                fresh
                    .process_chunk(&history[(history_next + k) % HISTORY_CHUNKS], &mut scratch)
                    .map_err(|e| e.to_string())?;
            }
            fresh
                .process_chunk(current, &mut scratch)
                .map_err(|e| e.to_string())?;
            let frames = output.len() / ch;
            let was_running = pipeline.is_some();
            for f in 0..frames {
                let angle = (f as f32 + 0.5) / frames as f32 * std::f32::consts::FRAC_PI_2;
                let (g_old, g_new) = if was_running {
                    (angle.cos(), angle.sin())
                } else {
                    (0.0, 1.0)
                };
                for c in 0..ch {
                    let i = f * ch + c;
                    output[i] = output[i] * g_old + scratch[i] * g_new;
                }
            }
            Ok(())
        }));
        match result {
            Ok(Ok(())) => {
                // The old pipeline (and its session) is dropped here, on the worker thread.
                *pipeline = Some(fresh);
                self.status.set(EngineState::Running, "running");
            }
            Ok(Err(e)) => self
                .status
                .set(EngineState::Failed, format!("the new model failed: {e}")),
            Err(_) => self.status.set(
                EngineState::Failed,
                "the new model crashed while warming up",
            ),
        }
    }
}
