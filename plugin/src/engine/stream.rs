//! The stream between the audio thread and the worker: host -> ring -> worker -> ring -> host.
//!
//! Positions come from lifetime counters, never from reading one side's state and then
//! another's:
//!
//! - **Input**: the audio thread pushes interleaved frames into an SPSC ring and counts them
//!   (`pushed`). Whatever changes how those frames map to host time (a reset, a block dropped
//!   because the ring was full) or how they are to be processed (bypass) goes into a second
//!   SPSC ring as a [`Mark`] that names the input frame it applies from. The audio thread
//!   pushes a mark before the frames it precedes; the worker reads how many frames are in the
//!   input ring *first*, then the marks, and never pops input past the next mark, so a mark is
//!   always seen before the frames it applies to.
//! - **Output**: the worker pushes processed frames, then a [`Chunk`] header saying which host
//!   time they belong to. The audio thread reads headers (then frames), so every processed
//!   frame carries its own timestamp: stale frames are dropped by comparing times, gaps are
//!   seen as gaps, and nothing depends on an epoch read racing a ring length.
//!
//! Host time is the audio thread's lifetime sample count since activation; processed frame `j`
//! is the model's response to input frame `j - processing_delay` and is played at `j +
//! buffering`. All audio-side functions here are real-time safe: no allocation, no lock, no
//! blocking.

use super::wake::Wake;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Something the worker must apply at a given input frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The input frame (ring lifetime count) this applies from.
    pub at: u64,
    /// The host time of that frame.
    pub host: u64,
    pub kind: MarkKind,
}

/// What a [`Mark`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A new stream starts here: the worker forgets all history. After a host reset the audio
    /// before the start was silence (`prestart_silent`); after dropped input it is unknown.
    Start { prestart_silent: bool },
    /// From here the output is not heard (bypass, or an unlicensed protected model): the
    /// worker keeps its state moving but does not run the model.
    Bypass(bool),
}

/// A run of processed frames, as the worker pushed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Host time (processed-frame index) of the first frame.
    pub start: u64,
    /// Frames in the run.
    pub frames: u32,
    /// False for frames the model did not (fully) compute: skipped hops, and what depends on
    /// them until the pipeline is warm again. They keep the stream's timing but are never
    /// faded into.
    pub audible: bool,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.frames as u64
    }
}

/// [`Shared::host_priority`] before the host's first callback.
pub const HOST_PRIORITY_UNKNOWN: u32 = u32::MAX;

/// What both sides share besides the rings: atomics and the wake-up signal.
pub struct Shared {
    /// The audio thread's host time at the end of its last block (the worker's clock for
    /// deciding that a hop is too late to be heard).
    pub audio_time: AtomicU64,
    /// The input frame count (lifetime) the worker waits for; the audio thread wakes it when
    /// its pushes reach it. `u64::MAX`: the worker is busy, no wake-up needed.
    pub wake_at: AtomicU64,
    /// The worker should finish.
    pub stop: AtomicBool,
    /// The host audio thread's scheduling, read at its first callback (see `priority`);
    /// [`HOST_PRIORITY_UNKNOWN`] until then.
    pub host_priority: AtomicU32,
    /// The audio thread's current `buffering()` (it changes once the inference time is
    /// measured), for the worker's lateness check.
    pub buffering: AtomicU64,
    /// Whether the host currently processes in real time (not an offline bounce).
    pub realtime: AtomicBool,
    /// Wakes the worker.
    pub wake: Wake,
}

impl Shared {
    fn new(wake: Wake) -> Shared {
        Shared {
            audio_time: AtomicU64::new(0),
            wake_at: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            host_priority: AtomicU32::new(HOST_PRIORITY_UNKNOWN),
            buffering: AtomicU64::new(0),
            realtime: AtomicBool::new(true),
            wake,
        }
    }
}

/// Ring sizes, in frames and chunk headers.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Input channels.
    pub channels: usize,
    /// Values per processed frame: the stems times the channels.
    pub out_width: usize,
    pub input_frames: usize,
    pub output_frames: usize,
    pub chunks: usize,
    pub marks: usize,
}

/// Builds both ends of a stream.
pub fn stream(sizing: Sizing, wake: Wake) -> (AudioEnd, WorkerEnd, Arc<Shared>) {
    let ch = sizing.channels.max(1);
    let width = sizing.out_width.max(1);
    let (input_tx, input_rx) = HeapRb::<f32>::new(sizing.input_frames * ch).split();
    let (marks_tx, marks_rx) = HeapRb::<Mark>::new(sizing.marks).split();
    let (output_tx, output_rx) = HeapRb::<f32>::new(sizing.output_frames * width).split();
    let (chunks_tx, chunks_rx) = HeapRb::<Chunk>::new(sizing.chunks).split();
    let shared = Arc::new(Shared::new(wake));
    (
        AudioEnd {
            input: input_tx,
            marks: marks_tx,
            output: output_rx,
            chunks: chunks_rx,
            channels: ch,
            width,
            pushed: 0,
            head: None,
            shared: shared.clone(),
        },
        WorkerEnd {
            input: input_rx,
            marks: marks_rx,
            output: output_tx,
            chunks: chunks_tx,
            channels: ch,
            width,
            consumed: 0,
        },
        shared,
    )
}

/// The head chunk being read, with how many of its frames are gone.
#[derive(Debug, Clone, Copy)]
struct Head {
    chunk: Chunk,
    taken: u32,
}

impl Head {
    fn position(&self) -> u64 {
        self.chunk.start + self.taken as u64
    }
}

/// What is known about a range of processed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Availability {
    /// Frames from the start of the range that the worker has decided (computed, skipped, or
    /// known to be missing because later frames exist).
    pub resolved: u64,
    /// Frames from the start of the range that are in the ring, contiguous and audible.
    pub audible: u64,
}

/// The audio thread's end. Every method is real-time safe.
pub struct AudioEnd {
    input: HeapProd<f32>,
    marks: HeapProd<Mark>,
    output: HeapCons<f32>,
    chunks: HeapCons<Chunk>,
    /// Input channels, and values per processed frame.
    channels: usize,
    width: usize,
    /// Input frames pushed since activation.
    pushed: u64,
    head: Option<Head>,
    shared: Arc<Shared>,
}

impl AudioEnd {
    /// Input frames pushed since activation.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Queues a mark for the next input frame. False if the mark ring is full (the worker is
    /// stuck); the caller retries later.
    pub fn push_mark(&mut self, host: u64, kind: MarkKind) -> bool {
        let ok = self
            .marks
            .try_push(Mark {
                at: self.pushed,
                host,
                kind,
            })
            .is_ok();
        if ok {
            self.shared.wake.notify();
        }
        ok
    }

    /// Pushes interleaved frames if they all fit; false (nothing pushed) if not.
    pub fn push_frames(&mut self, interleaved: &[f32]) -> bool {
        if self.input.vacant_len() < interleaved.len() {
            return false;
        }
        self.input.push_slice(interleaved);
        self.pushed += (interleaved.len() / self.channels) as u64;
        // Pairs with the worker's store of `wake_at` and its fence: one of the two sides
        // always sees the other, so a wake-up is never lost.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.pushed >= self.shared.wake_at.load(Ordering::SeqCst) {
            self.shared.wake.notify();
        }
        true
    }

    fn load_head(&mut self) -> bool {
        if self.head.is_none() {
            self.head = self.chunks.try_pop().map(|chunk| Head { chunk, taken: 0 });
        }
        self.head.is_some()
    }

    /// Drops every processed frame before host time `j`.
    pub fn discard_before(&mut self, j: u64) {
        let ch = self.width;
        while self.load_head() {
            let Some(head) = self.head.as_mut() else {
                return;
            };
            if head.chunk.end() <= j {
                let rest = (head.chunk.frames - head.taken) as usize;
                self.output.skip(rest * ch);
                self.head = None;
                continue;
            }
            if head.position() < j {
                let k = (j - head.position()) as usize;
                self.output.skip(k * ch);
                head.taken += k as u32;
            }
            return;
        }
    }

    /// What is known of processed frames `[j, j + want)`; call [`Self::discard_before`]`(j)`
    /// first.
    pub fn availability(&mut self, j: u64, want: u64) -> Availability {
        let end = j + want;
        let mut pos = j;
        let mut audible_until = j;
        let mut contiguous = true;
        self.load_head();
        let head = self.head.map(|h| Chunk {
            start: h.position(),
            frames: h.chunk.frames - h.taken,
            audible: h.chunk.audible,
        });
        for chunk in head.into_iter().chain(self.chunks.iter().copied()) {
            if pos >= end {
                break;
            }
            if chunk.end() <= pos {
                continue;
            }
            if chunk.start > pos {
                // A gap: those frames will never come.
                contiguous = false;
                pos = chunk.start.min(end);
                if pos >= end {
                    break;
                }
            }
            let stop = chunk.end().min(end);
            if contiguous && chunk.audible {
                audible_until = stop;
            } else {
                contiguous = false;
            }
            pos = stop;
        }
        Availability {
            resolved: pos - j,
            audible: audible_until - j,
        }
    }

    /// Pops processed frames `[j, j + n)` into `out` (interleaved); they must be available
    /// (see [`Self::availability`]). Returns the frames copied.
    pub fn take(&mut self, j: u64, n: usize, out: &mut [f32]) -> usize {
        let ch = self.width;
        self.discard_before(j);
        let mut done = 0;
        while done < n && self.load_head() {
            let Some(head) = self.head.as_mut() else {
                break;
            };
            if head.position() != j + done as u64 {
                break;
            }
            let k = ((head.chunk.frames - head.taken) as usize).min(n - done);
            let got = self.output.pop_slice(&mut out[done * ch..(done + k) * ch]) / ch;
            head.taken += got as u32;
            done += got;
            if head.taken == head.chunk.frames {
                self.head = None;
            }
            if got < k {
                break;
            }
        }
        done
    }
}

/// The worker's end.
pub struct WorkerEnd {
    input: HeapCons<f32>,
    marks: HeapCons<Mark>,
    output: HeapProd<f32>,
    chunks: HeapProd<Chunk>,
    /// Input channels, and values per processed frame.
    channels: usize,
    width: usize,
    /// Input frames popped since activation.
    consumed: u64,
}

impl WorkerEnd {
    /// Input frames popped since activation.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next mark due at or before the input the worker can see, and how many input frames
    /// it may pop before it. The input count is read first, so any mark pushed before those
    /// frames is visible.
    pub fn poll(&mut self) -> (Option<Mark>, u64) {
        let available = (self.input.occupied_len() / self.channels) as u64;
        match self.marks.first().copied() {
            Some(m) if m.at <= self.consumed + available => {
                (Some(m), m.at.saturating_sub(self.consumed))
            }
            _ => (None, available),
        }
    }

    /// Removes the mark [`Self::poll`] returned (once the input before it is consumed).
    pub fn take_mark(&mut self) -> Option<Mark> {
        self.marks.try_pop()
    }

    /// Pops up to `out.len() / channels` input frames; returns how many.
    pub fn pop_input(&mut self, out: &mut [f32]) -> usize {
        let n = self.input.pop_slice(out) / self.channels;
        self.consumed += n as u64;
        n
    }

    /// Room for processed frames (and a header) right now.
    pub fn output_room(&self) -> usize {
        if self.chunks.is_full() {
            0
        } else {
            self.output.vacant_len() / self.width
        }
    }

    /// Pushes a run of processed frames; false (nothing pushed) if they do not fit.
    pub fn push_chunk(&mut self, start: u64, frames: &[f32], audible: bool) -> bool {
        let n = frames.len() / self.width;
        if n == 0 {
            return true;
        }
        if self.output_room() < n {
            return false;
        }
        self.output.push_slice(frames);
        // The header goes last: the audio thread sees it only once its frames are in.
        let _ = self.chunks.try_push(Chunk {
            start,
            frames: n as u32,
            audible,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (AudioEnd, WorkerEnd, Arc<Shared>) {
        stream(
            Sizing {
                channels: 1,
                out_width: 1,
                input_frames: 64,
                output_frames: 64,
                chunks: 8,
                marks: 4,
            },
            Wake::new().unwrap(),
        )
    }

    #[test]
    fn a_mark_is_seen_before_the_frames_it_precedes() {
        let (mut audio, mut worker, _) = pair();
        assert!(audio.push_frames(&[1.0; 10]));
        assert!(audio.push_mark(10, MarkKind::Bypass(true)));
        assert!(audio.push_frames(&[2.0; 5]));
        let (mark, before) = worker.poll();
        assert_eq!(mark.map(|m| m.at), Some(10));
        assert_eq!(before, 10);
        let mut buf = [0.0; 10];
        assert_eq!(worker.pop_input(&mut buf), 10);
        assert_eq!(
            worker.take_mark().map(|m| m.kind),
            Some(MarkKind::Bypass(true))
        );
        let (mark, before) = worker.poll();
        assert_eq!((mark, before), (None, 5));
    }

    #[test]
    fn chunks_carry_their_time_and_gaps_are_gaps() {
        let (mut audio, mut worker, _) = pair();
        assert!(worker.push_chunk(100, &[1.0; 10], true));
        assert!(worker.push_chunk(110, &[2.0; 5], false));
        assert!(worker.push_chunk(120, &[3.0; 10], true));
        audio.discard_before(103);
        let a = audio.availability(103, 30);
        assert_eq!(
            a,
            Availability {
                resolved: 27,
                audible: 7
            }
        );
        let mut out = [0.0; 7];
        assert_eq!(audio.take(103, 7, &mut out), 7);
        assert_eq!(out, [1.0; 7]);
        // The unheard run and the gap after it: resolved, not audible.
        let a = audio.availability(110, 10);
        assert_eq!(
            a,
            Availability {
                resolved: 10,
                audible: 0
            }
        );
        audio.discard_before(121);
        assert_eq!(audio.availability(121, 9).audible, 9);
    }

    #[test]
    fn a_full_ring_pushes_nothing() {
        let (mut audio, _worker, _) = pair();
        assert!(audio.push_frames(&[0.5; 60]));
        assert!(!audio.push_frames(&[0.5; 10]));
        assert_eq!(audio.pushed(), 60);
    }
}
