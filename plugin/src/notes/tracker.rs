//! Notes found while the audio plays, for the plugin's note output: Basic Pitch on the input or
//! on one stem, on a thread of its own.
//!
//! worker (input or a stem, mono, with its input time) -> [`TrackerFeed`] -> this thread
//! (22,050 Hz, Basic Pitch windows, the reference decoder) -> [`NoteEvents`] (a lock-free ring)
//! -> the audio thread, which sends each note at the sample where the audio it came from leaves
//! the plugin (input time plus the reported latency), or as soon as it is known when that sample
//! has passed (Live; shared/DECISIONS.md §4).
//!
//! Streaming the reference: a 2 s window every [`WINDOW_EVERY`] samples (0.37 s, not the
//! reference's 1.64 s), each giving the frames the last one did not; the decoder runs over the
//! recent frames and a note is sent once it is confirmed: its onset [`CONFIRM_FRAMES`] frames
//! old (more than the minimum length plus the decoder's 15 frames of right context). From its
//! onset a note is followed as the decoder follows it, until its activation has stayed below
//! the frame threshold for more than `energy_tol` frames; then its note-off goes out, at the end
//! the decoder would have given it.

use super::basic_pitch::{
    BasicPitch, Posteriorgram, FRAME_HOP, FRONT_PAD, KEPT, LOWEST_KEY, RATE, WINDOW,
};
use super::decode::{self, Settings};
use crate::engine::resample::RateChange;
use parking_lot::Mutex;
use ringbuf::traits::{Consumer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Samples (at 22,050 Hz) between window starts: 32 frames.
pub const WINDOW_EVERY: usize = 32 * FRAME_HOP;
/// A note is sent once its onset is this many frames old (302 ms): the minimum length (11
/// frames) and the decoder's right context (15 frames), and no more.
pub const CONFIRM_FRAMES: usize = 26;
/// Zeros before a stream beyond the reference's [`FRONT_PAD`], so that the first window's new
/// frames are due as soon as every later window's.
const LEAD_IN: usize = WINDOW - FRONT_PAD - WINDOW_EVERY;
/// Frames the decoder looks back over (7 s): notes found there are not found again.
const HISTORY_FRAMES: usize = 600;
/// Note events the ring to the audio thread holds.
pub const EVENT_CAPACITY: usize = 1024;
/// Chunks of audio the worker may queue before the tracker drops them (it is far behind).
const FEED_CAPACITY: usize = 4096;

/// Where the notes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteSource {
    /// The plugin's input.
    Input,
    /// A separator's stem, by output ([`crate::separation::processor::PORTS`]).
    Stem(usize),
}

/// What happens to a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteChange {
    /// It starts, at this velocity (1..127).
    On { velocity: u8 },
    /// It ends.
    Off,
    /// Its pitch moves to this many thirds of a semitone from its key (with pitch bends on: a
    /// bend at its onset, then one wherever it moves).
    Bend(i8),
}

/// A note starting, ending or bending, at the input time of the audio it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteEvent {
    /// Host input time, in samples since activation.
    pub at: u64,
    pub key: u8,
    pub change: NoteChange,
}

impl NoteEvent {
    /// Whether it starts a note.
    pub fn is_on(&self) -> bool {
        matches!(self.change, NoteChange::On { .. })
    }

    /// Whether it ends one.
    pub fn is_off(&self) -> bool {
        self.change == NoteChange::Off
    }
}

/// How far a note's detection trails its audio at worst, in seconds at the input: the wait for
/// the window that gives its onset frame, the confirmation, and a margin for running the window
/// and for the worker's hops. Studio plans its latency to cover this.
pub fn detection_delay_s() -> f64 {
    // The first new frame of a window sits this far before the window's end.
    let wait = WINDOW - FRONT_PAD - (KEPT * FRAME_HOP - WINDOW_EVERY);
    (wait + CONFIRM_FRAMES * FRAME_HOP) as f64 / RATE as f64 + 0.25
}

/// What the tracker shares with the plugin: progress, the editor's figures and failures. (The
/// tracker's thread writes it; the audio thread only reads `decided` and adds lateness.)
#[derive(Default)]
pub struct TrackerShared {
    /// Input time up to which every event is out (a bounce waits for it).
    pub decided: AtomicU64,
    /// Set when Basic Pitch failed: no more notes (audio goes on).
    pub failed: AtomicBool,
    /// Notes sent, and how many left after their aligned sample, by how much at most (samples).
    pub notes_sent: AtomicU64,
    pub late_notes: AtomicU64,
    pub worst_late: AtomicU64,
    message: Mutex<String>,
    stop: AtomicBool,
    /// The keys of the last notes found, newest last (the editor shows them).
    recent: Mutex<std::collections::VecDeque<u8>>,
}

/// Notes the editor lists.
const RECENT: usize = 8;

impl TrackerShared {
    /// What the tracker says, in words.
    pub fn message(&self) -> String {
        self.message.lock().clone()
    }

    /// The keys of the last notes found, oldest first.
    pub fn recent(&self) -> Vec<u8> {
        self.recent.lock().iter().copied().collect()
    }

    fn fail(&self, why: String) {
        *self.message.lock() = why;
        self.failed.store(true, Ordering::Release);
    }
}

/// The worker's end: audio to track.
pub struct TrackerFeed {
    tx: crossbeam_channel::Sender<(u64, Vec<f32>)>,
    /// The next input time the tracker expects (a gap restarts it).
    next: u64,
}

impl TrackerFeed {
    /// Sends mono audio whose first sample has input time `at`. Not for the audio thread (it
    /// allocates); the worker calls it.
    pub fn push(&mut self, at: u64, mono: &[f32]) {
        if mono.is_empty() {
            return;
        }
        self.next = at + mono.len() as u64;
        let _ = self.tx.try_send((at, mono.to_vec()));
    }

    /// A new stream starts at input time `at` (a reset or a transport jump): the tracker starts
    /// over there, even if the times run on.
    pub fn start_stream(&mut self, at: u64) {
        self.next = at;
        let _ = self.tx.try_send((at, Vec::new()));
    }

    /// Sends the mean of values `first..first + count` of each interleaved frame of `frames`
    /// (`width` values a frame), the first frame at input time `at`.
    pub fn push_frames(
        &mut self,
        at: u64,
        frames: &[f32],
        width: usize,
        first: usize,
        count: usize,
    ) {
        let width = width.max(1);
        let count = count.clamp(1, width - first.min(width - 1));
        let scale = 1.0 / count as f32;
        let mono: Vec<f32> = frames
            .chunks_exact(width)
            .map(|f| f[first..first + count].iter().sum::<f32>() * scale)
            .collect();
        self.push(at, &mono);
    }

    /// The input time after the last sample sent.
    pub fn next(&self) -> u64 {
        self.next
    }
}

/// The audio thread's end: note events as they are decided.
pub struct NoteEvents {
    rx: HeapCons<NoteEvent>,
    pub shared: Arc<TrackerShared>,
}

impl NoteEvents {
    /// A ring of `capacity` events and its producing end, for a note source other than the
    /// tracker (tests feed one by hand).
    pub fn ring(capacity: usize) -> (HeapProd<NoteEvent>, NoteEvents) {
        let (tx, rx) = HeapRb::<NoteEvent>::new(capacity).split();
        (
            tx,
            NoteEvents {
                rx,
                shared: Arc::new(TrackerShared::default()),
            },
        )
    }

    /// The next event, if one is out. Real-time safe.
    pub fn pop(&mut self) -> Option<NoteEvent> {
        self.rx.try_pop()
    }
}

/// The tracker's thread; stops when dropped.
pub struct NoteTracker {
    shared: Arc<TrackerShared>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for NoteTracker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl NoteTracker {
    /// Starts tracking with `model` for a stream at `host_rate` Hz.
    pub fn start(
        model: BasicPitch,
        settings: Settings,
        host_rate: u32,
    ) -> std::io::Result<(NoteTracker, TrackerFeed, NoteEvents)> {
        let shared = Arc::new(TrackerShared::default());
        let (tx, rx) = crossbeam_channel::bounded::<(u64, Vec<f32>)>(FEED_CAPACITY);
        let (events_tx, events_rx) = HeapRb::<NoteEvent>::new(EVENT_CAPACITY).split();
        let mut state = Tracking::new(model, settings, host_rate, events_tx, shared.clone());
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("refrain-notes".into())
            .spawn(move || {
                while !thread_shared.stop.load(Ordering::Acquire) {
                    match rx.recv_timeout(Duration::from_millis(20)) {
                        Ok((at, mono)) => {
                            if thread_shared.failed.load(Ordering::Acquire) {
                                continue;
                            }
                            if let Err(e) = state.push(at, &mono) {
                                thread_shared.fail(format!("notes are off: {e}"));
                            }
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })?;
        Ok((
            NoteTracker {
                shared: shared.clone(),
                handle: Some(handle),
            },
            TrackerFeed { tx, next: 0 },
            NoteEvents {
                rx: events_rx,
                shared,
            },
        ))
    }

    pub fn shared(&self) -> &Arc<TrackerShared> {
        &self.shared
    }
}

/// A note sent and not yet ended.
#[derive(Debug, Clone, Copy)]
struct Sounding {
    /// Key index (0 = A0), onset frame, and the last frame at or above the frame threshold,
    /// in absolute frames of the stream.
    key: usize,
    start: u64,
    last_above: u64,
    /// The last bend sent (with pitch bends on).
    bend: i8,
}

/// The tracker's state for one stream.
struct Tracking {
    model: BasicPitch,
    settings: Settings,
    host_rate: u32,
    events: HeapProd<NoteEvent>,
    shared: Arc<TrackerShared>,
    /// Input time of the stream's first sample, and the next one expected.
    origin: u64,
    next: u64,
    to_rate: RateChange,
    /// The padded stream at 22,050 Hz from sample `start` (the next window's) on.
    padded: Vec<f32>,
    start: usize,
    /// Recent frames, the first of them absolute frame `base`.
    frames: Posteriorgram,
    base: u64,
    /// Absolute frames made so far; the time of the last one.
    made: u64,
    last_time: f64,
    /// Onsets before this absolute frame have been decided.
    boundary: u64,
    sounding: Vec<Sounding>,
    /// Notes sent that ended, still inside the recent frames: (key, start, end).
    ended: Vec<(usize, u64, u64)>,
    /// Frames of the sounding notes followed so far.
    followed: u64,
}

impl Tracking {
    fn new(
        model: BasicPitch,
        settings: Settings,
        host_rate: u32,
        events: HeapProd<NoteEvent>,
        shared: Arc<TrackerShared>,
    ) -> Tracking {
        Tracking {
            model,
            settings,
            host_rate,
            events,
            shared,
            origin: 0,
            next: u64::MAX,
            to_rate: RateChange::new(host_rate, RATE, 1).expect("rates checked by the plan"),
            padded: Vec::new(),
            start: 0,
            frames: Posteriorgram::default(),
            base: 0,
            made: 0,
            last_time: f64::NEG_INFINITY,
            boundary: 0,
            sounding: Vec::new(),
            ended: Vec::new(),
            followed: 0,
        }
    }

    /// A new stream from input time `at`: notes still sounding end at once.
    fn restart(&mut self, at: u64) {
        let now = self.next.min(at);
        for s in std::mem::take(&mut self.sounding) {
            self.send(NoteEvent {
                at: now,
                key: LOWEST_KEY + s.key as u8,
                change: NoteChange::Off,
            });
        }
        self.origin = at;
        // Nothing before the new stream is still to come.
        self.shared.decided.store(at, Ordering::Release);
        self.to_rate = RateChange::new(self.host_rate, RATE, 1).expect("rates checked");
        // Silence before the stream (the reference's 3,840 zeros and more), so the first window
        // is due after `WINDOW_EVERY` samples like every other, not after 2 s.
        self.padded = vec![0.0; FRONT_PAD + LEAD_IN];
        self.start = 0;
        self.frames = Posteriorgram::default();
        self.base = 0;
        self.made = 0;
        // Frames before the stream's start are not kept.
        self.last_time = -1e-6;
        self.boundary = 0;
        self.ended.clear();
        self.followed = 0;
    }

    fn push(&mut self, at: u64, mono: &[f32]) -> Result<(), super::NotesError> {
        if at != self.next || mono.is_empty() {
            self.restart(at);
        }
        self.next = at + mono.len() as u64;
        self.to_rate
            .push(&[mono], std::slice::from_mut(&mut self.padded));
        while self.padded.len() >= WINDOW {
            let mut more = Posteriorgram::default();
            self.model
                .window_frames(self.start, &self.padded[..WINDOW], &mut more)?;
            self.padded.drain(..WINDOW_EVERY);
            self.start += WINDOW_EVERY;
            let lead_in = LEAD_IN as f64 / RATE as f64;
            more.times.iter_mut().for_each(|t| *t -= lead_in);
            // Only the frames the last window did not give.
            let fresh = more
                .times
                .iter()
                .position(|&t| t > self.last_time + 1e-9)
                .unwrap_or(more.len());
            more.drop_front(fresh);
            if let Some(&t) = more.times.last() {
                self.last_time = t;
            }
            self.made += more.len() as u64;
            self.frames.times.append(&mut more.times);
            self.frames.notes.append(&mut more.notes);
            self.frames.onsets.append(&mut more.onsets);
            self.frames.contours.append(&mut more.contours);
            self.decide();
        }
        Ok(())
    }

    /// Input time of absolute frame `f`.
    fn time_of(&self, f: u64) -> u64 {
        let i = (f - self.base) as usize;
        let t = self.frames.times[i.min(self.frames.len() - 1)];
        self.origin + (t * self.host_rate as f64).round().max(0.0) as u64
    }

    fn send(&mut self, e: NoteEvent) {
        if self.events.try_push(e).is_ok() && e.is_on() {
            self.shared.notes_sent.fetch_add(1, Ordering::Relaxed);
            let mut recent = self.shared.recent.lock();
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(e.key);
        }
    }

    /// Sends a bend of sounding note `i` at absolute frame `f` where its pitch moved.
    fn follow_bend(&mut self, i: usize, f: u64) {
        let n = self.sounding[i];
        let bend = decode::bend_at(&self.frames, n.key, (f - self.base) as usize);
        if bend != n.bend {
            self.sounding[i].bend = bend;
            let at = self.time_of(f);
            self.send(NoteEvent {
                at,
                key: LOWEST_KEY + n.key as u8,
                change: NoteChange::Bend(bend),
            });
        }
    }

    /// Sends the notes confirmed by the frames made so far, and the ends of notes that ended.
    fn decide(&mut self) {
        let Some(confirmed) = self.made.checked_sub(CONFIRM_FRAMES as u64) else {
            return;
        };
        let s = self.settings;
        // 1. Sounding notes: followed frame by frame, as the decoder follows a note.
        let threshold = s.frame_threshold;
        for f in self.followed.max(self.base)..self.made {
            let row = self.frames.notes[(f - self.base) as usize];
            let mut i = 0;
            while i < self.sounding.len() {
                let n = &mut self.sounding[i];
                if f <= n.start {
                    i += 1;
                    continue;
                }
                let above = row[n.key] >= threshold;
                if above {
                    n.last_above = f;
                } else if f - n.last_above > s.energy_tol as u64 {
                    let n = self.sounding.swap_remove(i);
                    let end = n.last_above + 1;
                    let at = self.time_of(end);
                    self.send(NoteEvent {
                        at,
                        key: LOWEST_KEY + n.key as u8,
                        change: NoteChange::Off,
                    });
                    self.ended.push((n.key, n.start, end));
                    continue;
                }
                // Bends only where it sounds (its end is its last frame above the threshold).
                if s.pitch_bends && above {
                    self.follow_bend(i, f);
                }
                i += 1;
            }
        }
        self.followed = self.made;

        // 2. New notes, found by the reference decoder over the recent frames with every note
        // already sent taken out, whose onsets are confirmed and not decided before.
        let rel = |f: u64, base: u64| f.saturating_sub(base) as usize;
        let taken: Vec<(usize, usize, usize)> = self
            .ended
            .iter()
            .map(|&(k, a, b)| (k, rel(a, self.base), rel(b, self.base)))
            .chain(
                self.sounding
                    .iter()
                    .map(|n| (n.key, rel(n.start, self.base), self.frames.len())),
            )
            .collect();
        let mut found: Vec<decode::Found> = decode::decode(&self.frames, &s, &taken)
            .into_iter()
            .filter(|f| {
                let start = self.base + f.start as u64;
                start >= self.boundary && start <= confirmed
            })
            .collect();
        found.sort_by_key(|f| (f.start, f.key));
        for f in found {
            let note = f.note(&self.frames, false);
            let start = self.base + f.start as u64;
            let at = self.time_of(start);
            // With pitch bends, the note starts at its onset's bend (a bend before the note-on,
            // as in a MIDI file), then follows its pitch over the frames already in.
            let bend = if s.pitch_bends {
                let bend = decode::bend_at(&self.frames, f.key, f.start);
                self.send(NoteEvent {
                    at,
                    key: note.key,
                    change: NoteChange::Bend(bend),
                });
                bend
            } else {
                0
            };
            self.send(NoteEvent {
                at,
                key: note.key,
                change: NoteChange::On {
                    velocity: note.velocity,
                },
            });
            // Followed from here on (the frames after its onset that are already in count).
            let last_above = (start..self.made)
                .filter(|&g| self.frames.notes[(g - self.base) as usize][f.key] >= threshold)
                .max()
                .unwrap_or(start);
            self.sounding.push(Sounding {
                key: f.key,
                start,
                last_above,
                bend,
            });
            if s.pitch_bends {
                let i = self.sounding.len() - 1;
                for g in start + 1..=last_above {
                    self.follow_bend(i, g);
                }
            }
        }
        self.boundary = self.boundary.max(confirmed + 1);
        // Every event before the confirmed frame is out: a sounding note ends no earlier than
        // `energy_tol + 1` frames before the newest frame.
        let decided = self.time_of(confirmed);
        self.shared.decided.store(decided, Ordering::Release);

        // 3. Forget what the decoder no longer needs.
        if self.frames.len() > HISTORY_FRAMES {
            let drop = self.frames.len() - HISTORY_FRAMES;
            self.frames.drop_front(drop);
            self.base += drop as u64;
            let base = self.base;
            self.ended.retain(|&(_, _, end)| end > base);
        }
    }
}

/// A MIDI key's name: 60 is C4.
pub fn key_name(key: u8) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    format!("{}{}", NAMES[key as usize % 12], key as i32 / 12 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_as_musicians_name_them() {
        assert_eq!(key_name(60), "C4");
        assert_eq!(key_name(21), "A0");
        assert_eq!(key_name(73), "C#5");
    }

    #[test]
    fn the_detection_delay_covers_the_window_and_the_confirmation() {
        // The first new frame of a window waits 11,844 samples (0.54 s) for the window's end,
        // then 26 frames (0.30 s); 0.25 s of margin.
        let d = detection_delay_s();
        assert!(
            (d - (11_844.0 + 6_656.0) / 22_050.0 - 0.25).abs() < 1e-9,
            "{d}"
        );
    }
}
