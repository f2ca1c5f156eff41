//! Notes leaving the plugin: the audio thread's end of the note tracker
//! ([`crate::notes::tracker`]). A note found in audio of input time `t` is sent at host sample
//! `t + latency`, where that audio leaves the plugin; a note decided after that sample has
//! passed (Live, where the latency does not cover the detector) is sent at the start of the
//! next block, and counted as late with how late it was. Notes go out only while the model's
//! output is heard (not bypassed, licensed); notes sounding when it stops, or at a reset, end
//! at once. A call's messages go out in time order, as hosts require.
//!
//! Channels: without pitch bends every note is on channel 1. With them each note gets a channel
//! of its own (MPE-style, so one note's bend never bends another), as `refrain notes
//! --pitch-bends` writes a file: channels 1-16 but 10 (drums), the one free longest, with its
//! bend set before the note starts. Every method here is real-time safe: fixed buffers, no
//! locks.

use crate::notes::tracker::{NoteChange, NoteEvent, NoteEvents, TrackerShared};
use std::sync::atomic::Ordering;

/// Events decided but not yet due, at most.
const PENDING: usize = 256;
/// Note messages one `process()` call can send, at most.
pub const MAX_NOTES_PER_CALL: usize = 512;

/// A note message for the host, at a sample of the current `process()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteOut {
    /// Sample offset in the host's block.
    pub offset: u32,
    pub key: u8,
    /// MIDI channel, 0-based (0 = channel 1).
    pub channel: u8,
    pub change: NoteChange,
}

impl NoteOut {
    const NONE: NoteOut = NoteOut {
        offset: 0,
        key: 0,
        channel: 0,
        change: NoteChange::Off,
    };
}

/// MIDI channels a note may take with pitch bends (0-based): all but the drums' (10).
const NOTE_CHANNELS: [u8; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15];

/// The audio thread's note timing.
pub struct NotesOut {
    events: NoteEvents,
    pending: [NoteEvent; PENDING],
    pending_len: usize,
    /// Note-ons sent and not yet ended, per key.
    sounding: [u8; 128],
    /// A channel per note (pitch bends), else channel 1 for all.
    per_note_channels: bool,
    /// Per key, the channel of its sounding note.
    channel_of: [u8; 128],
    /// Per channel, the notes on it, and when it was last freed (a count of frees).
    channel_notes: [u8; 16],
    freed_at: [u64; 16],
    frees: u64,
    /// Per key, the bend waiting for its note-on (a bend comes before its note).
    bend_before: [Option<i8>; 128],
    out: [NoteOut; MAX_NOTES_PER_CALL],
    out_len: usize,
    /// End every sounding note at the next block (a reset).
    flush: bool,
}

impl NotesOut {
    /// Notes from `events`; with `per_note_channels` (pitch bends), each note on a channel of
    /// its own.
    pub fn new(events: NoteEvents, per_note_channels: bool) -> NotesOut {
        NotesOut {
            events,
            pending: [NoteEvent {
                at: 0,
                key: 0,
                change: NoteChange::Off,
            }; PENDING],
            pending_len: 0,
            sounding: [0; 128],
            per_note_channels,
            channel_of: [0; 128],
            channel_notes: [0; 16],
            freed_at: [0; 16],
            frees: 0,
            bend_before: [None; 128],
            out: [NoteOut::NONE; MAX_NOTES_PER_CALL],
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
        self.bend_before = [None; 128];
    }

    fn push_out(&mut self, offset: usize, key: u8, channel: u8, change: NoteChange) {
        if self.out_len < MAX_NOTES_PER_CALL {
            self.out[self.out_len] = NoteOut {
                offset: offset as u32,
                key,
                channel,
                change,
            };
            self.out_len += 1;
        }
    }

    /// The channel free longest (with per-note channels; the first when all are taken).
    fn free_channel(&self) -> u8 {
        NOTE_CHANNELS
            .iter()
            .copied()
            .min_by_key(|&c| {
                (
                    self.channel_notes[c as usize] > 0,
                    self.freed_at[c as usize],
                )
            })
            .unwrap_or(0)
    }

    fn emit(&mut self, offset: usize, key: u8, change: NoteChange) {
        // Room for a note-on and the bend before it, so a note never starts without its bend;
        // a note-off or a bend needs one place.
        let room = if matches!(change, NoteChange::On { .. }) {
            2
        } else {
            1
        };
        if self.out_len + room > MAX_NOTES_PER_CALL {
            return;
        }
        let k = key as usize & 127;
        match change {
            NoteChange::On { velocity } => {
                let channel = if self.per_note_channels {
                    if self.sounding[k] > 0 {
                        // One note per key on its channel: the earlier one ends first.
                        self.emit(offset, key, NoteChange::Off);
                    }
                    self.free_channel()
                } else {
                    0
                };
                if let Some(bend) = self.bend_before[k].take() {
                    self.push_out(offset, key, channel, NoteChange::Bend(bend));
                }
                self.sounding[k] = self.sounding[k].saturating_add(1);
                self.channel_of[k] = channel;
                self.channel_notes[channel as usize] =
                    self.channel_notes[channel as usize].saturating_add(1);
                let velocity = velocity.max(1);
                self.push_out(offset, key, channel, NoteChange::On { velocity });
            }
            NoteChange::Off => {
                if self.sounding[k] == 0 {
                    return;
                }
                self.sounding[k] -= 1;
                let channel = self.channel_of[k];
                let c = channel as usize;
                self.channel_notes[c] = self.channel_notes[c].saturating_sub(1);
                self.frees += 1;
                self.freed_at[c] = self.frees;
                self.push_out(offset, key, channel, NoteChange::Off);
            }
            NoteChange::Bend(bend) => {
                if !self.per_note_channels {
                    return;
                }
                if self.sounding[k] == 0 {
                    // Its note starts next: the bend goes with it.
                    self.bend_before[k] = Some(bend);
                } else {
                    self.push_out(offset, key, self.channel_of[k], NoteChange::Bend(bend));
                }
            }
        }
    }

    fn end_all(&mut self, offset: usize) {
        for key in 0..128u8 {
            while self.sounding[key as usize] > 0 {
                self.emit(offset, key, NoteChange::Off);
            }
        }
    }

    /// The block of `n` host samples from host time `host_t`, at `offset` in the `process()`
    /// call: sends the notes due in it when `heard`, each at input time + `latency`. Real-time
    /// safe.
    pub fn block(&mut self, host_t: u64, n: usize, offset: usize, latency: u64, heard: bool) {
        let first = self.out_len;
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
            if e.is_on() && due < host_t {
                late += 1;
                worst = worst.max(host_t - due);
            }
            self.emit(offset + at.min(n.saturating_sub(1)), e.key, e.change);
        }
        // In time order (the ring holds a window's note-ons after later note-offs); equal times
        // keep their order, so a bend stays before its note.
        sort_by_offset(&mut self.out[first..self.out_len]);
        if late > 0 {
            let shared = &self.events.shared;
            shared.late_notes.fetch_add(late, Ordering::Relaxed);
            shared.worst_late.fetch_max(worst, Ordering::Relaxed);
        }
    }
}

/// A stable insertion sort by offset (a block's few messages, nearly in order). Real-time safe.
fn sort_by_offset(out: &mut [NoteOut]) {
    for i in 1..out.len() {
        let mut j = i;
        while j > 0 && out[j - 1].offset > out[j].offset {
            out.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbuf::traits::Producer;

    fn ev(at: u64, key: u8, change: NoteChange) -> NoteEvent {
        NoteEvent { at, key, change }
    }

    const ON: NoteChange = NoteChange::On { velocity: 100 };

    /// `events` through a `NotesOut` in blocks of 64 from host time 0 with `latency`, heard.
    fn run(events: &[NoteEvent], per_note_channels: bool, latency: u64) -> Vec<(u64, NoteOut)> {
        let (mut tx, rx) = NoteEvents::ring(64);
        for e in events {
            tx.try_push(*e).unwrap();
        }
        let mut out = NotesOut::new(rx, per_note_channels);
        let mut sent = Vec::new();
        for b in 0..64u64 {
            out.begin_call();
            out.block(b * 64, 64, 0, latency, true);
            sent.extend(out.sent().iter().map(|n| (b * 64 + n.offset as u64, *n)));
        }
        sent
    }

    #[test]
    fn without_pitch_bends_every_note_is_on_channel_one_and_bends_are_not_sent() {
        let sent = run(
            &[
                ev(10, 60, NoteChange::Bend(1)),
                ev(10, 60, ON),
                ev(20, 64, ON),
                ev(30, 60, NoteChange::Bend(2)),
                ev(40, 60, NoteChange::Off),
                ev(50, 64, NoteChange::Off),
            ],
            false,
            100,
        );
        let changes: Vec<_> = sent.iter().map(|(t, n)| (*t, n.key, n.change)).collect();
        assert_eq!(
            changes,
            [
                (110, 60, ON),
                (120, 64, ON),
                (140, 60, NoteChange::Off),
                (150, 64, NoteChange::Off)
            ]
        );
        assert!(sent.iter().all(|(_, n)| n.channel == 0));
    }

    #[test]
    fn with_pitch_bends_each_sounding_note_has_a_channel_of_its_own_with_its_bend_first() {
        let sent = run(
            &[
                ev(10, 60, NoteChange::Bend(1)),
                ev(10, 60, ON),
                ev(20, 64, NoteChange::Bend(0)),
                ev(20, 64, ON),
                ev(30, 60, NoteChange::Bend(2)),
                ev(40, 60, NoteChange::Off),
                ev(50, 67, NoteChange::Bend(-1)),
                ev(50, 67, ON),
                ev(60, 64, NoteChange::Off),
                ev(70, 67, NoteChange::Off),
            ],
            true,
            100,
        );
        let on = |key: u8| {
            sent.iter()
                .position(|(_, n)| n.key == key && n.change == ON)
        };
        for (key, bend) in [(60, 1), (64, 0), (67, -1)] {
            let i = on(key).unwrap();
            // The bend goes first, at the same sample, on the note's channel.
            assert_eq!(sent[i - 1].1.change, NoteChange::Bend(bend), "{key}");
            assert_eq!(sent[i - 1].0, sent[i].0);
            assert_eq!(sent[i - 1].1.channel, sent[i].1.channel);
        }
        let channel = |key: u8| sent[on(key).unwrap()].1.channel;
        // C4 and E4 sound together: two channels. G4 starts after C4 ended, but takes a channel
        // free longer than C4's (a release tail on C4's channel is not bent).
        assert_ne!(channel(60), channel(64));
        assert_ne!(channel(67), channel(60));
        assert_ne!(channel(67), channel(64));
        assert!(
            sent.iter().all(|(_, n)| n.channel != 9),
            "never the drums' channel"
        );
        // C4's later bend is on its channel; every note ends on its channel.
        let bend2 = sent
            .iter()
            .find(|(_, n)| n.change == NoteChange::Bend(2))
            .unwrap();
        assert_eq!((bend2.0, bend2.1.channel), (130, channel(60)));
        for key in [60, 64, 67] {
            let off = sent
                .iter()
                .find(|(_, n)| n.key == key && n.change == NoteChange::Off)
                .unwrap();
            assert_eq!(off.1.channel, channel(key));
        }
    }

    #[test]
    fn a_blocks_messages_go_out_in_time_order_even_when_decided_out_of_order() {
        // The tracker decides a note-off before a note-on of an earlier onset (one window).
        let sent = run(
            &[
                ev(50, 64, ON),
                ev(60, 64, NoteChange::Off),
                ev(30, 60, ON),
                ev(90, 60, NoteChange::Off),
            ],
            true,
            0,
        );
        let times: Vec<u64> = sent.iter().map(|s| s.0).collect();
        assert_eq!(times, [30, 50, 60, 90]);
    }
}
