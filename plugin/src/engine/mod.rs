//! The host-agnostic real-time engine: the audio thread's side of the stream.
//!
//! `process()` copies the block into an SPSC ring to the worker, keeps a latency-aligned dry
//! copy, and reads processed frames from the return ring. Processed frame `j` is played at host
//! sample `j + plan.buffering()`; with the processing delay inside `j`, every input sample comes
//! out exactly `plan.total()` samples later. When the worker is late, the output crossfades to
//! the dry copy (never silence, never a repeated block) and back when it has caught up.

pub mod crossfade;
pub mod dry_delay;
pub mod latency;
pub mod pipeline;
pub mod resample;
pub mod status;
pub mod worker;

use crate::models::processor::HopProcessor;
use crossfade::Crossfade;
use dry_delay::DryDelay;
use latency::{LatencyPlan, PlanError, StreamSpec};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use status::{EngineState, EngineStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::{ModelLoader, StreamSync, Worker, WorkerOptions};

/// How long a bounce waits for a worker that makes no progress before it gives up on the
/// model for that block (the worker may still be loading a large model).
const OFFLINE_STALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What the host told us at activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Host sample rate in Hz.
    pub sample_rate: f32,
    /// Largest block the host will send.
    pub max_block: usize,
    /// Audio channels (the same in and out).
    pub channels: usize,
    /// Offline (bounce): the audio thread waits for the worker, so nothing is ever late.
    pub offline: bool,
}

/// Per-block controls from the parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Controls {
    /// Dry/wet balance inside the processed path, 0..1.
    pub mix: f32,
    /// Bypass: the latency-aligned dry signal, reached with the same crossfade.
    pub bypass: bool,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            mix: 1.0,
            bypass: false,
        }
    }
}

/// The audio thread's side of the engine. Built (and dropped) off the audio thread.
pub struct Engine {
    config: EngineConfig,
    plan: LatencyPlan,
    status: Arc<EngineStatus>,
    sync: Arc<StreamSync>,
    to_worker: HeapProd<f32>,
    from_worker: HeapCons<f32>,
    swaps: crossbeam_channel::Sender<Box<dyn HopProcessor>>,
    worker: Option<std::thread::JoinHandle<()>>,
    worker_thread: std::thread::Thread,
    dry: DryDelay,
    fade: Crossfade,
    /// Planar copy of the block's input (the host buffer is overwritten in place).
    input: Vec<Vec<f32>>,
    /// Planar dry output of the block.
    dry_out: Vec<Vec<f32>>,
    /// Interleaved scratch for the rings.
    interleaved: Vec<f32>,
    /// Interleaved processed frames of the block.
    wet: Vec<f32>,
    /// Host frames processed in this epoch.
    t: u64,
    /// Frames pushed to the worker over the ring's lifetime.
    pushed_total: u64,
    /// Frames popped from the worker over the ring's lifetime.
    popped_total: u64,
    /// The epoch this side is in; see [`StreamSync`].
    epoch: u32,
    /// Output stream index of the return ring's head, once synced with the worker's epoch.
    head: Option<u64>,
    /// After a reset the stream starts from silence, so processed frames before the stream's
    /// start are known to be silent; after a resync they are unknown (dry is used).
    prestart_is_silence: bool,
    /// The mix actually applied, ramped towards `Controls::mix` over each block.
    mix: f32,
}

impl Engine {
    /// Plans the stream for `spec`, allocates every buffer and starts the worker, which loads
    /// the model with `loader`. Until the model runs, dry audio passes at the planned latency.
    pub fn start(
        config: EngineConfig,
        spec: StreamSpec,
        loader: ModelLoader,
        options: WorkerOptions,
    ) -> Result<Self, PlanError> {
        let plan = LatencyPlan::new(spec, config.sample_rate, config.max_block)?;
        let ch = config.channels.max(1);
        let ring_frames =
            plan.total() + 4 * plan.chunk_host + config.max_block + plan.host_rate as usize / 2;
        let (to_worker, worker_in) = HeapRb::<f32>::new(ring_frames * ch).split();
        let (worker_out, from_worker) = HeapRb::<f32>::new(ring_frames * ch).split();
        let status = Arc::new(EngineStatus::default());
        let sync = Arc::new(StreamSync::default());
        let (swaps, swap_rx) = crossbeam_channel::bounded(2);
        let worker = Worker {
            plan,
            channels: ch,
            input: worker_in,
            output: worker_out,
            sync: sync.clone(),
            status: status.clone(),
            swaps: swap_rx,
            options,
        };
        let handle = std::thread::Builder::new()
            .name("refrain-worker".into())
            .spawn(move || worker.run(loader))
            .expect("spawning the worker thread");
        let worker_thread = handle.thread().clone();
        let total = plan.total();
        Ok(Engine {
            config,
            plan,
            status,
            sync,
            to_worker,
            from_worker,
            swaps,
            worker: Some(handle),
            worker_thread,
            dry: DryDelay::new(ch, total, config.max_block),
            fade: Crossfade::new(plan.crossfade_reserve, true),
            input: vec![vec![0.0; config.max_block]; ch],
            dry_out: vec![vec![0.0; config.max_block]; ch],
            interleaved: vec![0.0; config.max_block * ch],
            wet: vec![0.0; config.max_block * ch],
            t: 0,
            pushed_total: 0,
            popped_total: 0,
            epoch: 0,
            head: None,
            prestart_is_silence: true,
            mix: 1.0,
        })
    }

    /// The latency to report to the host, in samples.
    pub fn latency(&self) -> u32 {
        self.plan.total() as u32
    }

    /// Every term of the latency.
    pub fn plan(&self) -> &LatencyPlan {
        &self.plan
    }

    /// The configuration this engine was started with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Counters and state, for the editor and logs.
    pub fn status(&self) -> &Arc<EngineStatus> {
        &self.status
    }

    /// Hands a loaded model to the worker, which warms it up and crossfades it in. The model
    /// must have the same latency plan (else the plugin reactivates instead). Not for the audio
    /// thread. Returns the model back if the worker's queue is full.
    pub fn swap_model(
        &self,
        processor: Box<dyn HopProcessor>,
    ) -> Result<(), Box<dyn HopProcessor>> {
        self.swaps.try_send(processor).map_err(|e| e.into_inner())?;
        self.worker_thread.unpark();
        Ok(())
    }

    /// Clears all history (the host's reset, a transport jump). Real-time safe.
    pub fn reset(&mut self) {
        self.dry.reset();
        self.fade.jump(true);
        self.prestart_is_silence = true;
        self.start_epoch();
    }

    /// Starts a new stream epoch: the worker drops what it had and starts over at the next
    /// input frame, the audio side discards whatever the worker still sends from before.
    fn start_epoch(&mut self) {
        self.t = 0;
        self.head = None;
        self.epoch = self.epoch.wrapping_add(1);
        self.sync.audio_frames.store(0, Ordering::Relaxed);
        self.sync
            .reset_input_mark
            .store(self.pushed_total, Ordering::Release);
        self.sync.audio_epoch.store(self.epoch, Ordering::Release);
        self.worker_thread.unpark();
    }

    /// Brings `head` in line with the worker's epoch; false while the worker has not caught up.
    fn sync_return(&mut self) -> bool {
        let ch = self.config.channels.max(1);
        if self.sync.worker_epoch.load(Ordering::Acquire) != self.epoch {
            let n = self.from_worker.occupied_len() / ch * ch;
            self.popped_total += (self.from_worker.skip(n) / ch) as u64;
            return false;
        }
        if self.head.is_none() {
            let start = self.sync.worker_epoch_start.load(Ordering::Acquire) / ch as u64;
            if self.popped_total < start {
                let want = ((start - self.popped_total) as usize * ch)
                    .min(self.from_worker.occupied_len() / ch * ch);
                self.popped_total += (self.from_worker.skip(want) / ch) as u64;
            }
            if self.popped_total < start {
                return false;
            }
            self.head = Some(0);
        }
        true
    }

    /// [`Self::sync_return`], then drops processed frames older than stream index `first`
    /// (left behind by a late worker or a skipped chunk).
    fn sync_to(&mut self, first: u64) -> bool {
        if !self.sync_return() {
            return false;
        }
        let ch = self.config.channels.max(1);
        if let Some(head) = self.head.filter(|&h| h < first) {
            let k = ((first - head) as usize).min(self.ready_frames() as usize);
            self.popped_total += (self.from_worker.skip(k * ch) / ch) as u64;
            self.head = Some(head + k as u64);
        }
        true
    }

    /// Processed frames ready at the return ring's head.
    fn ready_frames(&self) -> u64 {
        (self.from_worker.occupied_len() / self.config.channels.max(1)) as u64
    }

    /// Processes a block in place: one slice per channel, all the same length. Never
    /// allocates, locks, logs or panics; waits for the worker only in offline mode.
    pub fn process(&mut self, io: &mut [&mut [f32]], controls: Controls) {
        let n_total = io.first().map_or(0, |c| c.len());
        let mut done = 0;
        // A host that sends more than it promised still gets correct audio, in pieces.
        while done < n_total {
            let n = (n_total - done).min(self.config.max_block);
            self.process_block(io, done, n, controls);
            done += n;
        }
    }

    fn process_block(
        &mut self,
        io: &mut [&mut [f32]],
        offset: usize,
        n: usize,
        controls: Controls,
    ) {
        let ch = self.config.channels.max(1);
        let io_ch = io.len().min(ch);

        // 1. Input: keep a planar copy, push interleaved frames to the worker.
        for c in 0..ch {
            let src = if c < io_ch {
                &io[c][offset..offset + n]
            } else {
                &io[0][offset..offset + n]
            };
            self.input[c][..n].copy_from_slice(src);
        }
        for f in 0..n {
            for c in 0..ch {
                self.interleaved[f * ch + c] = self.input[c][f];
            }
        }
        if self.to_worker.vacant_len() >= n * ch {
            self.to_worker.push_slice(&self.interleaved[..n * ch]);
            let before = self.pushed_total;
            self.pushed_total += n as u64;
            let chunk = self.plan.chunk_host as u64;
            if before / chunk != self.pushed_total / chunk {
                self.worker_thread.unpark();
            }
        } else {
            // The worker is stuck: start over once it moves again; dry audio meanwhile.
            self.status.overflows.fetch_add(1, Ordering::Relaxed);
            if !self.fade.is_dry() {
                self.status.underruns.fetch_add(1, Ordering::Relaxed);
            }
            self.fade.jump(false);
            self.prestart_is_silence = false;
            self.start_epoch();
        }

        // 2. The dry path, delayed by exactly the reported latency.
        self.dry.process(&self.input, &mut self.dry_out, n);

        // 3. Which processed frames this block needs: stream indices [q, q + n).
        let q = self.t as i64 - self.plan.buffering() as i64;
        let before_start = (-q).clamp(0, n as i64) as usize;
        let need = (n - before_start) as u64;
        let reserve = self.plan.crossfade_reserve as u64;
        let first = q.max(0) as u64;
        let mut synced = self.sync_to(first);
        let lookahead_end = (q + n as i64 + reserve as i64).max(0) as u64;
        let wanted = lookahead_end.saturating_sub(first);
        let available = |this: &Self| -> u64 {
            match this.head {
                Some(h) if h == first => this.ready_frames(),
                _ => 0,
            }
        };
        if self.config.offline && !controls.bypass && self.status.state() != EngineState::Failed {
            // A bounce: wait for the worker instead of falling back to dry.
            let mut last_progress = Instant::now();
            let mut last_ready = 0;
            loop {
                synced = self.sync_to(first);
                let ready = if synced { available(self) } else { 0 };
                let state = self.status.state();
                if (ready >= wanted && state == EngineState::Running)
                    || state == EngineState::Failed
                {
                    break;
                }
                if ready != last_ready {
                    last_ready = ready;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > OFFLINE_STALL_TIMEOUT {
                    break;
                }
                self.worker_thread.unpark();
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let running = self.status.state() == EngineState::Running;
        let ready = if synced { available(self) } else { 0 };
        let wet_ok = ready >= wanted && (need > 0 || self.prestart_is_silence);
        let target = wet_ok && running && !controls.bypass;
        if !wet_ok && running && !controls.bypass && !self.fade.is_dry() {
            self.status.underruns.fetch_add(1, Ordering::Relaxed);
        }

        // 4. Take the processed frames we have for this block.
        let got = need.min(ready) as usize;
        if got > 0 {
            self.from_worker.pop_slice(&mut self.wet[..got * ch]);
            self.popped_total += got as u64;
            self.head = self.head.map(|h| h + got as u64);
        }

        // 5. Mix, frame by frame, with the equal-power fade between processed and dry.
        let mix_start = self.mix;
        let mix_end = controls.mix.clamp(0.0, 1.0);
        for f in 0..n {
            let has_wet = if f < before_start {
                self.prestart_is_silence
            } else {
                f - before_start < got
            };
            if !has_wet && !self.fade.is_dry() {
                // Only reachable if the worker vanished mid-fade: better a jump than stale audio.
                self.fade.jump(false);
            }
            let (g_dry, g_wet) = self.fade.next(target && has_wet);
            let mix = mix_start + (mix_end - mix_start) * (f + 1) as f32 / n as f32;
            for (c, out) in io.iter_mut().enumerate().take(io_ch) {
                let dry = self.dry_out[c][f];
                let wet = if has_wet && f >= before_start {
                    self.wet[(f - before_start) * ch + c]
                } else {
                    0.0
                };
                let processed = dry * (1.0 - mix) + wet * mix;
                out[offset + f] = dry * g_dry + processed * g_wet;
            }
        }
        self.mix = mix_end;
        self.t += n as u64;
        self.sync.audio_frames.store(self.t, Ordering::Relaxed);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.sync.stop.store(true, Ordering::Release);
        self.worker_thread.unpark();
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
