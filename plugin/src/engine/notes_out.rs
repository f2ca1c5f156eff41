//! Notes leaving the plugin: the audio thread's end of the note tracker
//! ([`crate::notes::tracker`]). A note found in audio of input time `t` is sent at host sample
//! `t + latency`, where that audio leaves the plugin; a note decided after that sample has
//! passed (Live, where the latency does not cover the detector) is sent at the start of the
//! next block, and counted as late with how late it was. Notes go out only while the model's
//! output is heard (not bypassed, licensed); notes sounding when it stops, or at a reset, end
//! at once. Every method here is real-time safe: fixed buffers, no locks.

use crate::notes::tracker::{NoteEvent, NoteEvents, TrackerShared};
use std::sync::atomic::Ordering;

/// Events decided but not yet due, at most.
const PENDING: usize = 256;
/// Note messages one `process()` call can send, at most.
pub const MAX_NOTES_PER_CALL: usize = 512;

/// A note message for the host, at a sample of the current `process()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoteOut {
    /// Sample offset in the host's block.
    pub offset: u32,
    pub key: u8,
    /// 1..127 for a note-on, 0 for a note-off.
    pub velocity: u8,
    pub on: bool,
}

/// The audio thread's note timing.
pub struct NotesOut {
    events: NoteEvents,
    pending: [NoteEvent; PENDING],
    pending_len: usize,
    /// Note-ons sent and not yet ended, per key.
    sounding: [u8; 128],
    out: [NoteOut; MAX_NOTES_PER_CALL],
    out_len: usize,
    /// End every sounding note at the next block (a reset).
    flush: bool,
}

impl NotesOut {
    pub fn new(events: NoteEvents) -> NotesOut {
        NotesOut {
            events,
            pending: [NoteEvent {
                at: 0,
                key: 0,
                velocity: 0,
                on: false,
            }; PENDING],
            pending_len: 0,
            sounding: [0; 128],
            out: [NoteOut::default(); MAX_NOTES_PER_CALL],
            out_len: 0,
            flush: false,
        }
    }

    /// Input time up to which the tracker has decided every note, and whether it failed.
    pub fn decided(&self) -> (u64, bool) {
        let s = &self.events.shared;
        (
            s.decided.load(Ordering::Acquire),
            s.failed.load(Ordering::Acquire),
        )
    }

    /// The tracker's shared state (the editor's figures).
    pub fn shared(&self) -> &std::sync::Arc<TrackerShared> {
        &self.events.shared
    }

    /// Forgets what this call sent (at the start of a `process()` call). Real-time safe.
    pub fn begin_call(&mut self) {
        self.out_len = 0;
    }

    /// What this `process()` call sends, in order. Real-time safe.
    pub fn sent(&self) -> &[NoteOut] {
        &self.out[..self.out_len]
    }

    /// A reset (transport jump): every sounding note ends at the next block, and notes not yet
    /// due are dropped. Real-time safe.
    pub fn reset(&mut self) {
        self.flush = true;
        self.pending_len = 0;
    }

    fn emit(&mut self, offset: usize, key: u8, velocity: u8, on: bool) {
        if self.out_len == MAX_NOTES_PER_CALL {
            return;
        }
        let k = key as usize & 127;
        if on {
            self.sounding[k] = self.sounding[k].saturating_add(1);
        } else if self.sounding[k] == 0 {
            return;
        } else {
            self.sounding[k] -= 1;
        }
        self.out[self.out_len] = NoteOut {
            offset: offset as u32,
            key,
            velocity: if on { velocity.max(1) } else { 0 },
            on,
        };
        self.out_len += 1;
    }

    fn end_all(&mut self, offset: usize) {
        for key in 0..128u8 {
            while self.sounding[key as usize] > 0 {
                self.emit(offset, key, 0, false);
            }
        }
    }

    /// The block of `n` host samples from host time `host_t`, at `offset` in the `process()`
    /// call: sends the notes due in it when `heard`, each at input time + `latency`. Real-time
    /// safe.
    pub fn block(&mut self, host_t: u64, n: usize, offset: usize, latency: u64, heard: bool) {
        if std::mem::take(&mut self.flush) {
            self.end_all(offset);
        }
        while self.pending_len < PENDING {
            match self.events.pop() {
                Some(e) => {
                    self.pending[self.pending_len] = e;
                    self.pending_len += 1;
                }
                None => break,
            }
        }
        if !heard {
            self.end_all(offset);
        }
        let end = host_t + n as u64;
        let (mut late, mut worst) = (0u64, 0u64);
        let mut i = 0;
        while i < self.pending_len {
            let e = self.pending[i];
            let due = e.at + latency;
            if due >= end {
                i += 1;
                continue;
            }
            // Due in this block, or already past: out now, the rest keep their order.
            self.pending.copy_within(i + 1..self.pending_len, i);
            self.pending_len -= 1;
            if !heard {
                continue;
            }
            let at = due.saturating_sub(host_t) as usize;
            if e.on && due < host_t {
                late += 1;
                worst = worst.max(host_t - due);
            }
            self.emit(
                offset + at.min(n.saturating_sub(1)),
                e.key,
                e.velocity,
                e.on,
            );
        }
        if late > 0 {
            let shared = &self.events.shared;
            shared.late_notes.fetch_add(late, Ordering::Relaxed);
            shared.worst_late.fetch_max(worst, Ordering::Relaxed);
        }
    }
}
