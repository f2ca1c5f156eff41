//! The host-agnostic real-time engine: the audio thread's side of the stream.
//!
//! The audio path reads off the file names: the host's block enters [`Engine::process`] (this
//! file), goes through the [`stream`] rings to the [`worker`], which runs the [`pipeline`]
//! ([`resample`] -> model hops -> [`resample`]) and pushes processed chunks back through the
//! [`stream`]; this file plays them [`latency`]-aligned against the [`dry_delay`] path with a
//! [`crossfade`] when the worker is late.
//!
//! `process()` copies the block into the input ring, keeps a latency-aligned dry copy, and plays
//! processed frame `j` at host sample `j + plan.buffering()`; with the processing delay inside
//! `j`, every input sample comes out exactly `plan.total()` samples later. When processed
//! frames are missing, the output crossfades to the dry copy (never silence, never a repeated
//! block) using the processed frames it keeps in reserve, and back once the worker has caught
//! up.

pub mod crossfade;
pub mod dry_delay;
pub mod latency;
pub mod notes_out;
pub mod pipeline;
pub mod priority;
pub mod resample;
pub mod status;
pub mod stream;
pub mod wake;
pub mod worker;

use crate::models::processor::{HopProcessor, StreamSpec};
use crossfade::Crossfade;
use dry_delay::DryDelay;
use latency::{LatencyPlan, Mode, PlanError};
use status::{EngineState, EngineStatus};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::{AudioEnd, MarkKind, Shared, Sizing};
use worker::{ModelLoader, Worker, WorkerOptions};

/// How long a bounce waits for a worker that makes no progress before it gives up on the
/// model for the rest of the bounce (once, not per block).
pub const OFFLINE_STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a bounce waits for a model that is still loading.
const OFFLINE_LOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long dropping an engine waits for its worker before leaving it to finish on its own.
pub const WORKER_JOIN_TIMEOUT: Duration = crate::detach::JOIN_WAIT;

/// Most stems a model returns (the plugin's stem outputs: vocals, drums, bass, other).
pub const MAX_STEMS: usize = 4;

/// What the host told us at activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Host sample rate in Hz.
    pub sample_rate: f32,
    /// Largest block the host will send.
    pub max_block: usize,
    /// Audio channels (the same in and out).
    pub channels: usize,
}

/// Per-block controls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Controls {
    /// Dry/wet balance inside the processed path, 0..1.
    pub mix: f32,
    /// Bypass: the latency-aligned dry signal, reached with the same crossfade. The worker
    /// stops running the model (cheaply keeping its state moving) while bypassed.
    pub bypass: bool,
    /// The host is bouncing offline: wait for the worker instead of falling back to dry.
    pub offline: bool,
    /// A separator's gain per stem in the main output (mute and solo applied), ramped over
    /// each block.
    pub stem_gains: [f32; MAX_STEMS],
    /// Whether the stems may leave on their own outputs (a protected separator's licence says
    /// `stem-export`); when not, those outputs are silent and the main output still mixes.
    pub stem_outputs: bool,
    /// The voice settings (pitch, formants, index rate, speaker, gate): the chain passes them
    /// to a voice model through its [`crate::voice::controls::VoiceControls`].
    pub voice: crate::voice::controls::VoiceSettings,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            mix: 1.0,
            bypass: false,
            offline: false,
            stem_gains: [1.0; MAX_STEMS],
            stem_outputs: true,
            voice: Default::default(),
        }
    }
}

impl Controls {
    /// Default controls for an offline bounce.
    pub fn offline() -> Self {
        Controls {
            offline: true,
            ..Controls::default()
        }
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("the worker thread could not be started: {0}")]
    Spawn(std::io::Error),
    #[error("the worker's wake-up signal could not be created: {0}")]
    Wake(std::io::Error),
}

/// Hands models to a running engine's worker from another thread (the loader).
#[derive(Clone)]
pub struct ModelSwapper {
    tx: crossbeam_channel::Sender<Box<dyn HopProcessor>>,
    shared: Arc<Shared>,
}

impl ModelSwapper {
    /// Queues `processor` (same contract) to be crossfaded in over the next hop. Gives it back
    /// if one is already queued.
    pub fn swap(&self, processor: Box<dyn HopProcessor>) -> Result<(), Box<dyn HopProcessor>> {
        self.tx.try_send(processor).map_err(|e| e.into_inner())?;
        self.shared.wake.notify();
        Ok(())
    }
}

/// A one-time fade of the whole output around a change of timing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Retime {
    Steady,
    /// Fading out; the new plan is applied at the bottom.
    Out {
        plan: LatencyPlan,
        left: usize,
    },
    /// Silent until the next block, where the new plan takes over (the dry path and the
    /// playback position move together at a block boundary).
    Switch {
        plan: LatencyPlan,
    },
    /// Fading back in.
    In {
        done: usize,
    },
}

/// The audio thread's side of the engine. Built (and dropped) off the audio thread.
pub struct Engine {
    config: EngineConfig,
    plan: LatencyPlan,
    status: Arc<EngineStatus>,
    shared: Arc<Shared>,
    audio: AudioEnd,
    swaps: crossbeam_channel::Sender<Box<dyn HopProcessor>>,
    worker: Option<std::thread::JoinHandle<()>>,
    /// Disconnects when the worker thread ends.
    worker_done: crossbeam_channel::Receiver<()>,
    dry: DryDelay,
    fade: Crossfade,
    /// Planar copy of the block's input (the host buffer is overwritten in place).
    input: Vec<Vec<f32>>,
    /// Planar dry output of the block.
    dry_out: Vec<Vec<f32>>,
    /// Interleaved scratch for the input ring.
    interleaved: Vec<f32>,
    /// Interleaved processed frames of the block: per frame, each stem's channels.
    wet: Vec<f32>,
    /// Stems per processed frame (1 unless the model is a separator).
    stems: usize,
    /// The stem gains actually applied, ramped towards `Controls::stem_gains` over each block.
    stem_gain: [f32; MAX_STEMS],
    /// Per channel, what the separator left of the current frame's input (the last stem's).
    rest: Vec<f32>,
    /// Host frames processed since activation (host time).
    host_t: u64,
    /// Host time at which the current stream started, and whether the audio before it was
    /// silence (a reset) or is unknown (input was lost).
    stream_start: u64,
    prestart_silent: bool,
    /// A stream start still to be announced to the worker (`Some(prestart_silent)`).
    pending_start: Option<bool>,
    /// The bypass state the worker was last told.
    bypass_sent: bool,
    /// Whether the last block had processed audio ready (to count underruns once each).
    was_ready: bool,
    /// The mix actually applied, ramped towards `Controls::mix` over each block.
    mix: f32,
    /// The host thread's scheduling has been read (at the first callback).
    host_priority_read: bool,
    /// A bounce gave up waiting for a stalled worker; never wait again.
    gave_up_waiting: bool,
    /// How long a bounce waits for a worker that makes no progress.
    stall_timeout: Duration,
    retime: Retime,
    /// Set when the reported latency changed; the plugin tells the host.
    latency_changed: bool,
    /// A panic happened inside `process`: from then on, the aligned dry signal only.
    poisoned: bool,
    /// Notes out, when the plugin sends them.
    notes: Option<notes_out::NotesOut>,
    /// A bounce stopped waiting for the note detector (it stalled).
    notes_gave_up: bool,
    /// Set once per block: the input copy and the dry path are done (for the panic fallback).
    input_taken: bool,
    dry_done: bool,
    #[cfg(test)]
    panic_at: Option<u64>,
}

impl Engine {
    /// Plans the stream for `spec` in `mode`, allocates every buffer and starts the worker,
    /// which loads the model with `loader`. Until the model runs, dry audio passes at the
    /// planned latency.
    pub fn start(
        config: EngineConfig,
        mode: Mode,
        spec: StreamSpec,
        loader: ModelLoader,
        options: WorkerOptions,
    ) -> Result<Self, EngineError> {
        let notes = match mode {
            Mode::Studio => options.notes_delay,
            Mode::Live => None,
        };
        let plan = LatencyPlan::new(
            spec,
            config.sample_rate,
            config.max_block,
            mode,
            options.timing,
        )?
        .with_notes(notes);
        let ch = config.channels.max(1);
        let stems = spec.stems.clamp(1, MAX_STEMS);
        let rate = plan.host_rate as usize;
        // The largest latency a measured budget can lead to (see `latency::MAX_BUDGET_S`); the
        // notes' wait only ever fills up to what the detector needs.
        let max_total = (plan.total() - plan.notes_wait() - plan.inference_budget
            + (latency::MAX_BUDGET_S * rate as f64).ceil() as usize)
            .max(plan.total());
        let ring_frames = max_total + 8 * plan.hop_host_max + config.max_block + rate / 2;
        let sizing = Sizing {
            channels: ch,
            out_width: ch * stems,
            input_frames: ring_frames,
            output_frames: ring_frames,
            chunks: 2 * ring_frames / plan.hop_buffering.max(1) + 64,
            marks: 256,
        };
        let wake = wake::Wake::new().map_err(EngineError::Wake)?;
        let (audio, worker_end, shared) = stream::stream(sizing, wake);
        shared
            .buffering
            .store(plan.buffering() as u64, Ordering::Relaxed);
        let status = Arc::new(EngineStatus::default());
        let (swaps, swap_rx) = crossbeam_channel::bounded(1);
        let (done_tx, worker_done) = crossbeam_channel::bounded::<()>(0);
        let worker = Worker {
            plan,
            channels: ch,
            end: worker_end,
            shared: shared.clone(),
            status: status.clone(),
            swaps: swap_rx,
            options,
            done: done_tx,
        };
        let handle = std::thread::Builder::new()
            .name("refrain-worker".into())
            .spawn(move || worker.run(loader))
            .map_err(EngineError::Spawn)?;
        let total = plan.total();
        Ok(Engine {
            config,
            plan,
            status,
            shared,
            audio,
            swaps,
            worker: Some(handle),
            worker_done,
            dry: DryDelay::with_max_delay(ch, total, max_total, config.max_block),
            fade: Crossfade::new(plan.crossfade_reserve, true),
            input: vec![vec![0.0; config.max_block]; ch],
            dry_out: vec![vec![0.0; config.max_block]; ch],
            interleaved: vec![0.0; config.max_block * ch],
            wet: vec![0.0; config.max_block * ch * stems],
            stems,
            stem_gain: [1.0; MAX_STEMS],
            rest: vec![0.0; ch],
            host_t: 0,
            stream_start: 0,
            prestart_silent: true,
            pending_start: Some(true),
            bypass_sent: false,
            was_ready: false,
            mix: 1.0,
            host_priority_read: false,
            gave_up_waiting: false,
            stall_timeout: OFFLINE_STALL_TIMEOUT,
            retime: Retime::Steady,
            latency_changed: false,
            poisoned: false,
            notes: None,
            notes_gave_up: false,
            input_taken: false,
            dry_done: false,
            #[cfg(test)]
            panic_at: None,
        })
    }

    /// The latency to report to the host, in samples.
    pub fn latency(&self) -> u32 {
        self.plan.total() as u32
    }

    /// The tail to report to the host: audio in flight plus the model's own tail.
    pub fn tail(&self) -> u32 {
        self.plan.tail() as u32
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

    /// A handle that queues models for a hot swap (same contract, same plan) from another
    /// thread.
    pub fn swapper(&self) -> ModelSwapper {
        ModelSwapper {
            tx: self.swaps.clone(),
            shared: self.shared.clone(),
        }
    }

    /// Sends notes from the note tracker's `events` (before processing starts). In Studio the
    /// latency covers the detector ([`WorkerOptions::notes_delay`]), so notes leave with
    /// their audio; in Live they leave with it or as soon as they are known.
    pub fn attach_notes(
        &mut self,
        events: crate::notes::tracker::NoteEvents,
        per_note_channels: bool,
    ) {
        self.notes = Some(notes_out::NotesOut::new(events, per_note_channels));
    }

    /// The note messages the last `process()` call sent, each at a sample of its block.
    /// Real-time safe.
    pub fn notes_sent(&self) -> &[notes_out::NoteOut] {
        self.notes.as_ref().map_or(&[], |n| n.sent())
    }

    /// The note tracker's figures (notes sent, late), when notes are on.
    pub fn notes_status(&self) -> Option<&Arc<crate::notes::tracker::TrackerShared>> {
        self.notes.as_ref().map(|n| n.shared())
    }

    /// Whether the reported latency changed since the last call (the plugin then tells the
    /// host). Real-time safe.
    pub fn take_latency_changed(&mut self) -> bool {
        std::mem::take(&mut self.latency_changed)
    }

    /// Waits (off the audio thread, before processing starts) until the worker has measured the
    /// model's inference time, up to `timeout`, and adopts the measured plan at once. Returns
    /// whether the plan is now measured.
    pub fn wait_for_measurement(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while !self.status.timing_ready()
            && self.status.state() != EngineState::Failed
            && start.elapsed() < timeout
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(timing) = self.status.timing() {
            let plan = self.plan.with_timing(Some(timing));
            self.apply_plan(plan);
        }
        self.plan.budget_measured
    }

    fn apply_plan(&mut self, plan: LatencyPlan) {
        if plan.total() != self.plan.total() {
            self.latency_changed = true;
        }
        self.plan = plan;
        self.dry.set_delay(plan.total());
        self.shared
            .buffering
            .store(plan.buffering() as u64, Ordering::Relaxed);
    }

    /// How long a bounce waits for a worker that makes no progress before it gives up on the
    /// model for the rest of the bounce (default [`OFFLINE_STALL_TIMEOUT`]).
    pub fn set_stall_timeout(&mut self, timeout: Duration) {
        self.stall_timeout = timeout;
    }

    /// Clears all history (the host's reset, a transport jump). Real-time safe.
    pub fn reset(&mut self) {
        if let Some(n) = &mut self.notes {
            n.reset();
        }
        self.dry.reset();
        self.fade.jump(true);
        self.pending_start = Some(true);
        self.was_ready = false;
    }

    /// Processes a block in place: one slice per channel, all the same length. Never
    /// allocates, locks, logs or panics across this call; waits for the worker only in an
    /// offline bounce. Real-time safe.
    pub fn process(&mut self, io: &mut [&mut [f32]], controls: Controls) {
        self.process_stems(io, &mut [], controls);
    }

    /// [`Self::process`], and each stem of a separator on its own output: `stems[s]` is stem
    /// `s`'s channels (as many as the main output or fewer; a stereo stem of a mono stream
    /// gets the channel twice), the block's length each. Stems play at the same latency as
    /// the main output and fade with the model's output: silent when the main output is the
    /// aligned dry signal (no model yet, bypass, a late worker, a refused licence). Outputs for
    /// stems the model does not have are silent. The last stem (a separator's `other`) also
    /// carries what the separator left of the input, so the stems always sum to the aligned
    /// input and the remix at unity gains is the input. Real-time safe.
    pub fn process_stems(
        &mut self,
        io: &mut [&mut [f32]],
        stems: &mut [&mut [&mut [f32]]],
        controls: Controls,
    ) {
        let n_total = io.first().map_or(0, |c| c.len());
        let mut done = 0;
        if let Some(n) = &mut self.notes {
            n.begin_call();
        }
        // A host that sends more than it promised still gets correct audio, in pieces.
        while done < n_total {
            let n = (n_total - done).min(self.config.max_block);
            self.input_taken = false;
            self.dry_done = false;
            if !self.poisoned {
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.process_block(io, stems, done, n, controls)
                }))
                .is_ok();
                self.poisoned = !ok;
            }
            if self.poisoned {
                self.dry_fallback(io, stems, done, n);
            }
            done += n;
        }
    }

    /// After a panic: the latency-aligned dry signal, from the same delay line, and silent
    /// stems. Real-time safe.
    fn dry_fallback(
        &mut self,
        io: &mut [&mut [f32]],
        stems: &mut [&mut [&mut [f32]]],
        offset: usize,
        n: usize,
    ) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !self.input_taken {
                self.take_input(io, offset, n);
            }
            if !self.dry_done {
                self.dry.process(&self.input, &mut self.dry_out, n);
            }
            for (c, out) in io.iter_mut().enumerate() {
                let src = &self.dry_out[c.min(self.dry_out.len() - 1)][..n];
                out[offset..offset + n].copy_from_slice(src);
            }
            for stem in stems.iter_mut() {
                for out in stem.iter_mut() {
                    let end = (offset + n).min(out.len());
                    out[offset.min(end)..end].fill(0.0);
                }
            }
            self.host_t += n as u64;
        }));
    }

    fn take_input(&mut self, io: &[&mut [f32]], offset: usize, n: usize) {
        let ch = self.config.channels.max(1);
        let io_ch = io.len().min(ch);
        for c in 0..ch {
            let src = if c < io_ch {
                &io[c][offset..offset + n]
            } else {
                &io[0][offset..offset + n]
            };
            self.input[c][..n].copy_from_slice(src);
        }
        self.input_taken = true;
    }

    fn process_block(
        &mut self,
        io: &mut [&mut [f32]],
        stem_outs: &mut [&mut [&mut [f32]]],
        offset: usize,
        n: usize,
        controls: Controls,
    ) {
        let ch = self.config.channels.max(1);
        let io_ch = io.len().min(ch);
        if !self.host_priority_read {
            // The host's audio thread, as scheduled by the host: the worker's reference.
            self.shared
                .host_priority
                .store(priority::current(), Ordering::Release);
            self.host_priority_read = true;
        }
        self.shared
            .realtime
            .store(!controls.offline, Ordering::Relaxed);

        // 1. Input: keep a planar copy, push interleaved frames to the worker, with whatever
        // marks must precede them.
        self.take_input(io, offset, n);
        #[cfg(test)]
        if self.panic_at.is_some_and(|t| self.host_t >= t) {
            panic!("injected");
        }
        for f in 0..n {
            for c in 0..ch {
                self.interleaved[f * ch + c] = self.input[c][f];
            }
        }
        if let Some(silent) = self.pending_start {
            if self.audio.push_mark(
                self.host_t,
                MarkKind::Start {
                    prestart_silent: silent,
                },
            ) {
                self.pending_start = None;
                self.stream_start = self.host_t;
                self.prestart_silent = silent;
                // The worker's bypass state starts over with the stream.
                self.bypass_sent = !controls.bypass;
            }
        }
        if self.pending_start.is_none()
            && controls.bypass != self.bypass_sent
            && self
                .audio
                .push_mark(self.host_t, MarkKind::Bypass(controls.bypass))
        {
            self.bypass_sent = controls.bypass;
        }
        let pushed =
            self.pending_start.is_none() && self.audio.push_frames(&self.interleaved[..n * ch]);
        if !pushed {
            // The worker is stuck: these frames are lost, so a new stream starts once it moves
            // again; meanwhile the output fades to dry on the frames kept in reserve.
            self.status.overflows.fetch_add(1, Ordering::Relaxed);
            if self.pending_start.is_none() {
                self.pending_start = Some(false);
            }
        }

        // 2. The dry path, delayed by exactly the reported latency (which a retime moves
        // here, at a block boundary, while the output is silent).
        if let Retime::Switch { plan } = self.retime {
            self.apply_plan(plan);
            self.fade.jump(false);
            self.retime = Retime::In { done: 0 };
        }
        self.dry.process(&self.input, &mut self.dry_out, n);
        self.dry_done = true;

        // 3. A measured inference time that changes the plan: fade out, retime, fade in. Not
        // during a bounce: the host compensates the latency it was told at the start, and a
        // bounce is correct with any budget (it waits for the worker).
        if !controls.offline {
            self.check_retime();
        }

        // 4. Which processed frames this block needs: [q, q + n) in host time.
        let q = self.host_t as i64 - self.plan.buffering() as i64;
        let before_start = (self.stream_start as i64 - q).clamp(0, n as i64) as usize;
        let first = (q.max(self.stream_start as i64)) as u64;
        let need = (n - before_start) as u64;
        // The block's frames plus the reserve after them (none of it before the stream start).
        let end = q + (n + self.plan.crossfade_reserve) as i64;
        let want = (end - first as i64).max(0) as u64;
        self.audio.discard_before(first);
        if controls.offline && !self.gave_up_waiting {
            self.wait_for_worker(first, want);
        }
        let running = self.status.state() == EngineState::Running;
        let avail = self.audio.availability(first, want);
        let prestart_ok = before_start == 0 || self.prestart_silent;
        let ready = running && prestart_ok && avail.audible >= want;
        if self.was_ready && !ready && !controls.bypass && !self.fade.is_dry() {
            self.status.underruns.fetch_add(1, Ordering::Relaxed);
        }
        self.was_ready = ready;
        let target = ready && !controls.bypass;

        // 5. Take the processed frames there are for this block.
        // Even a model that just failed leaves good frames to fade out on.
        let k = need.min(avail.audible) as usize;
        let width = ch * self.stems;
        let got = self.audio.take(first, k, &mut self.wet[..k * width]);

        // 6. Mix, frame by frame, with the equal-power fade between processed and dry; a
        // separator's stems are summed with their gains, and each plays on its own output.
        let mix_start = self.mix;
        let mix_end = controls.mix.clamp(0.0, 1.0);
        let stems = self.stems;
        let gain_start = self.stem_gain;
        let mut gain_end = [1.0f32; MAX_STEMS];
        for (g, c) in gain_end.iter_mut().zip(controls.stem_gains) {
            *g = if c.is_finite() {
                c.clamp(0.0, 16.0)
            } else {
                0.0
            };
        }
        let stems_heard = controls.stem_outputs && stems > 1;
        let mut gains = [1.0f32; MAX_STEMS];
        let mut peaks = [0.0f32; MAX_STEMS];
        for f in 0..n {
            let has_wet = if f < before_start {
                self.prestart_silent
            } else {
                f - before_start < got
            };
            if !has_wet && !self.fade.is_dry() {
                // Only reachable if the worker vanished mid-fade: better a jump than stale audio.
                self.fade.jump(false);
            }
            let (g_dry, g_wet) = self.fade.next(target && has_wet);
            let gain = self.retime_gain();
            let ramp = (f + 1) as f32 / n as f32;
            let mix = mix_start + (mix_end - mix_start) * ramp;
            let frame = if has_wet && f >= before_start {
                Some(&self.wet[(f - before_start) * width..][..width])
            } else {
                None
            };
            if stems > 1 {
                for s in 0..stems {
                    gains[s] = gain_start[s] + (gain_end[s] - gain_start[s]) * ramp;
                }
                // The last stem also takes what the separator left of the input (the band
                // above the model's rate, rounding): the stems sum to the aligned input, and
                // with every gain at 1 the remix is that input itself.
                if let Some(w) = frame {
                    for (c, rest) in self.rest.iter_mut().enumerate() {
                        *rest = self.dry_out[c][f] - (0..stems).map(|s| w[s * ch + c]).sum::<f32>();
                    }
                }
            }
            for (c, out) in io.iter_mut().enumerate().take(io_ch) {
                let dry = self.dry_out[c][f];
                let wet = match frame {
                    Some(w) if stems > 1 => {
                        (0..stems).map(|s| w[s * ch + c] * gains[s]).sum::<f32>()
                            + self.rest[c] * gains[stems - 1]
                    }
                    Some(w) => w[c],
                    None => 0.0,
                };
                let processed = dry * (1.0 - mix) + wet * mix;
                out[offset + f] = (dry * g_dry + processed * g_wet) * gain;
            }
            for (s, stem) in stem_outs.iter_mut().enumerate() {
                for (c, out) in stem.iter_mut().enumerate() {
                    let Some(o) = out.get_mut(offset + f) else {
                        continue;
                    };
                    let c = c.min(ch - 1);
                    *o = match frame {
                        Some(w) if stems_heard && s < stems => {
                            let rest = if s == stems - 1 { self.rest[c] } else { 0.0 };
                            (w[s * ch + c] + rest) * g_wet * gain
                        }
                        _ => 0.0,
                    };
                    peaks[s] = peaks[s].max(o.abs());
                }
            }
        }
        // 7. Notes due in this block, at the samples where their audio leaves.
        if let Some(notes) = &mut self.notes {
            let total = self.plan.total() as u64;
            if controls.offline && self.plan.notes.is_some() && !self.notes_gave_up {
                // A bounce waits for the detector as it waits for the worker; one that stalls
                // is not waited for again.
                // (Only this stream's notes: the audio before its start was another stream.)
                let need = (self.host_t + n as u64).saturating_sub(total);
                let need = if need > self.stream_start { need } else { 0 };
                let started = Instant::now();
                loop {
                    let (decided, failed) = notes.decided();
                    if failed || decided >= need {
                        break;
                    }
                    if started.elapsed() > self.stall_timeout {
                        self.notes_gave_up = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            // Heard unless bypassed (or unlicensed: the chain bypasses then); the notes do not
            // depend on the model's own output.
            notes.block(self.host_t, n, offset, total, !controls.bypass);
        }
        self.mix = mix_end;
        if stems > 1 {
            self.stem_gain = gain_end;
            for (s, &p) in peaks.iter().enumerate().take(stems) {
                self.status.note_stem_peak(s, p);
            }
        }
        self.host_t += n as u64;
        self.shared.audio_time.store(self.host_t, Ordering::Release);
    }

    /// A bounce: wait until the worker has decided every frame this block needs, or the model
    /// failed. A worker that makes no progress for [`OFFLINE_STALL_TIMEOUT`] fails the model
    /// once; the rest of the bounce is dry and never waits again.
    fn wait_for_worker(&mut self, first: u64, want: u64) {
        let mut last = u64::MAX;
        let mut since = Instant::now();
        loop {
            let state = self.status.state();
            if state == EngineState::Failed {
                return;
            }
            let resolved = self.audio.availability(first, want).resolved;
            if resolved >= want && state == EngineState::Running {
                return;
            }
            if resolved != last {
                last = resolved;
                since = Instant::now();
            }
            let limit = if state == EngineState::Starting {
                OFFLINE_LOAD_TIMEOUT.max(self.stall_timeout)
            } else {
                self.stall_timeout
            };
            if since.elapsed() > limit {
                self.status.mark_stalled();
                self.gave_up_waiting = true;
                return;
            }
            self.shared.wake.notify();
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Starts the retime fade when the worker has measured a timing that changes the plan.
    fn check_retime(&mut self) {
        if self.plan.budget_measured || self.retime != Retime::Steady {
            return;
        }
        if let Some(timing) = self.status.try_timing() {
            let plan = self.plan.with_timing(Some(timing));
            if plan.total() == self.plan.total() {
                self.plan = plan;
            } else {
                self.retime = Retime::Out {
                    plan,
                    left: self.plan.crossfade_reserve,
                };
            }
        }
    }

    /// The whole output's gain for the next frame of a retime (1 when steady).
    fn retime_gain(&mut self) -> f32 {
        let len = self.plan.crossfade_reserve.max(1);
        match self.retime {
            Retime::Steady => 1.0,
            Retime::Switch { .. } => 0.0,
            Retime::Out { plan, left } => {
                if left == 0 {
                    self.retime = Retime::Switch { plan };
                    0.0
                } else {
                    self.retime = Retime::Out {
                        plan,
                        left: left - 1,
                    };
                    left as f32 / len as f32
                }
            }
            Retime::In { done } => {
                if done >= len {
                    self.retime = Retime::Steady;
                    1.0
                } else {
                    self.retime = Retime::In { done: done + 1 };
                    done as f32 / len as f32
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify();
        // A worker stuck in a model load or a hung run is not waited for past the bound: it is
        // left to finish on its own (it drops its model when it does), its model marked failed.
        if !crate::detach::join_or_leave(self.worker.take(), &self.worker_done) {
            self.status.set(
                EngineState::Failed,
                "the model stopped responding and was left to finish on its own",
            );
        }
    }
}

#[cfg(test)]
mod tests;
