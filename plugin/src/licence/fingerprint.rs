//! Is the input the licensed recording? A Chromaprint fingerprint (`rusty-chromaprint`: 11,025
//! Hz, 4096-sample frames, 12 chroma bins, 32-bit sub-fingerprints) of the incoming audio is
//! compared over a rolling window with the reference fingerprint in the licence.
//!
//! The audio thread only splits each block into mid and side into a lock-free ring
//! ([`FingerprintTap`]); a background thread ([`FingerprintMonitor`]) fingerprints the mid and
//! matches. Decisions are made in audio time, one per second:
//! - a match at any offset of the reference (bit error rate under [`MATCH_BER`]) resets the
//!   count; [`MISMATCH_SECONDS`] of non-silent audio without a match switch the AI path off;
//! - silence is judged on mid *and* side, so anti-phase stereo (L = x, R = -x, whose downmix
//!   is silent) is loud audio that does not match, not silence;
//! - silence is relative to the reference's loudness when the licence states it (at most
//!   -60 dBFS, and 45 dB under the reference): a different track played quietly is not
//!   silence;
//! - a bounce (offline) is judged by its share of matching seconds ([`MIN_MATCH_SHARE`]), so
//!   a few seconds of the licensed track interleaved with another track do not carry it, and
//!   `refrain render` judges the whole file before writing ([`LiveMatcher::judge_whole`]).

use super::gate::LicenceGate;
use super::transforms::{self, Transform, TEMPO_STEPS};
use super::tuning;
use base64::Engine as _;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use rusty_chromaprint::{Configuration, Fingerprinter};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Seconds of audio per sub-fingerprint (1365 samples at 11,025 Hz).
pub const ITEM_SECONDS: f64 = 1365.0 / 11025.0;
/// Length of the rolling window compared with the reference (shared/DECISIONS.md §5: about
/// 20 s, 161 sub-fingerprints).
pub const WINDOW_SECONDS: f64 = 20.0;
/// Sub-fingerprints a streaming window needs before it is judged (about 12.4 s): DECISIONS
/// §5's overlap of at least 100 items. Shorter windows stay pending.
pub const MIN_WINDOW_ITEMS: usize = 100;
/// Sub-fingerprints an input judged whole, or a piece between transport jumps, needs (4 s of
/// them, from about 6 s of audio): a bounce or a render shorter than a streaming window is
/// judged on all of it; shorter pieces stay pending. Other real tracks' best windows of 3 s
/// and 5 s score 0.237 and 0.252 (README).
pub const MIN_WHOLE_ITEMS: usize = 32;
/// Bit error rate under which a window matches (unrelated audio sits near 0.5 on average).
/// Measured on real music (`plugin/tests/fingerprint_real.rs`, README): the licensed track as
/// it is and through MP3 at 128 kbit/s stays under 0.05 at every window length from 3 s to
/// 20 s; the best window of the other tracks, as they are, through MP3 and sped up or slowed
/// down by 1 and 2 semitones, is 0.252 at 5 s, 0.293 at 12.4 s and 0.326 at 20 s.
pub const MATCH_BER: f32 = 0.20;
/// Non-silent seconds without a match before the AI path is switched off.
pub const MISMATCH_SECONDS: f64 = 20.0;
/// A second whose RMS is under this (-60 dBFS) is silence, unless the reference is so quiet
/// that [`SILENCE_BELOW_REFERENCE_DB`] under it is lower.
pub const SILENCE_RMS: f32 = 0.001;
/// Only digital silence is under this (-180 dBFS): anything above it is a signal, and under
/// the silence threshold a quiet one ([`LiveMatcher::dry_when_quiet`]). Turning another track
/// down by 110 dB before the plugin (and up after it) loses nothing in floating point, so no
/// level of signal is let through unjudged.
pub const QUIET_SIGNAL_RMS: f32 = 1e-9;
/// Seconds of signal after the latest match during which quiet input still runs through the
/// model (the licensed track's quiet passages sound the same dry, so this is kept short).
pub const QUIET_GRACE_SECONDS: u32 = 3;
/// Silence is at least this far under the reference's loudness.
pub const SILENCE_BELOW_REFERENCE_DB: f32 = 45.0;
/// A bounce or a render needs at least this share of its judged seconds to match.
pub const MIN_MATCH_SHARE: f64 = 0.8;
/// Judged seconds a bounce needs before its share decides.
pub const BOUNCE_JUDGED_SECONDS: u32 = 5;
/// The mid at least this far (20 dB) under the side: the downmix of anti-phase stereo.
const ANTI_PHASE_RATIO: f32 = 0.1;

/// The silence threshold (RMS) for a reference whose non-silent seconds have RMS `dbfs`.
pub fn silence_rms(reference_dbfs: Option<i16>) -> f32 {
    match reference_dbfs {
        Some(db) => {
            let relative = 10f32.powf((f32::from(db) - SILENCE_BELOW_REFERENCE_DB) / 20.0);
            relative.min(SILENCE_RMS)
        }
        None => SILENCE_RMS,
    }
}

/// The loudness of a recording (planar): the RMS of its non-silent seconds, in whole dBFS.
pub fn loudness_dbfs(channels: &[Vec<f32>], rate: u32) -> Option<i16> {
    let n = channels.first().map_or(0, Vec::len);
    let second = rate.max(1) as usize;
    let (mut sum, mut count) = (0.0f64, 0usize);
    for start in (0..n).step_by(second) {
        let end = (start + second).min(n);
        let e: f64 = channels
            .iter()
            .flat_map(|c| c[start..end].iter())
            .map(|&x| f64::from(x) * f64::from(x))
            .sum();
        let frames = ((end - start) * channels.len()).max(1);
        if (e / frames as f64).sqrt() >= f64::from(SILENCE_RMS) {
            sum += e;
            count += frames;
        }
    }
    (count > 0).then(|| {
        (20.0 * (sum / count as f64).sqrt().log10())
            .round()
            .max(-120.0) as i16
    })
}

fn configuration() -> Configuration {
    Configuration::preset_test2()
}

/// Base64 (standard, padded) of the little-endian sub-fingerprints.
pub fn encode(fp: &[u32]) -> String {
    let bytes: Vec<u8> = fp.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`encode`].
pub fn decode(s: &str) -> Result<Vec<u32>, String> {
    if s.len() > super::claims::MAX_FINGERPRINT_ITEMS * 4 * 4 / 3 + 4 {
        return Err("is longer than 2 hours of audio".into());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| "is not base64".to_owned())?;
    if bytes.len() % 4 != 0 || bytes.is_empty() {
        return Err("is not a whole number of 32-bit sub-fingerprints".into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn to_i16(x: f32) -> i16 {
    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// The reference fingerprint of a recording (planar channels, downmixed).
pub fn compute(channels: &[Vec<f32>], rate: u32) -> Result<Vec<u32>, String> {
    let n = channels.first().map_or(0, Vec::len);
    if n == 0 {
        return Err("the audio is empty".into());
    }
    let mut fp = Fingerprinter::new(&configuration());
    fp.start(rate, 1)
        .map_err(|e| format!("cannot fingerprint at {rate} Hz: {e:?}"))?;
    let scale = 1.0 / channels.len() as f32;
    let mut buf = Vec::with_capacity(4096);
    for start in (0..n).step_by(4096) {
        buf.clear();
        for i in start..(start + 4096).min(n) {
            buf.push(to_i16(channels.iter().map(|c| c[i]).sum::<f32>() * scale));
        }
        fp.consume(&buf);
    }
    fp.finish();
    let out = fp.fingerprint().to_vec();
    if out.is_empty() {
        return Err("the audio is too short to fingerprint (a few seconds are needed)".into());
    }
    Ok(out)
}

/// Lowest bit error rate of `window` against `reference` over every alignment where the
/// window fits (or, for a reference shorter than the window, where the reference fits).
pub fn best_bit_error_rate(window: &[u32], reference: &[u32]) -> f32 {
    let (short, long) = if window.len() <= reference.len() {
        (window, reference)
    } else {
        (reference, window)
    };
    if short.is_empty() {
        return 1.0;
    }
    let bits = (short.len() * 32) as f32;
    (0..=long.len() - short.len())
        .map(|off| {
            short
                .iter()
                .zip(&long[off..])
                .map(|(a, b)| (a ^ b).count_ones())
                .sum::<u32>()
        })
        .min()
        .map_or(1.0, |e| e as f32 / bits)
}

/// Where the matcher charges pending seconds (shared/DECISIONS.md §5): loud seconds that have
/// not matched are charged as they play and refunded when the input then matches; with the
/// allowance spent, the AI path stays off until a match. The licence folder's book
/// ([`super::allowance::LicenceAllowance`]) outlives activations, bounces and reloads.
pub trait PendingBook: Send {
    /// Charges `seconds` (refunds them when negative); returns the seconds left today. A book
    /// that cannot be kept returns 0 (fail closed).
    fn spend(&mut self, seconds: i32) -> u32;

    /// Why the book cannot be kept, if it cannot (for the log).
    fn problem(&self) -> Option<String> {
        None
    }
}

/// A book in memory holding one day's allowance: a matcher on its own (`refrain render`
/// judges whole files and charges nothing; tests).
pub struct DailyAllowance(pub u32);

impl Default for DailyAllowance {
    fn default() -> Self {
        DailyAllowance(super::allowance::DAILY_SECONDS)
    }
}

impl PendingBook for DailyAllowance {
    fn spend(&mut self, seconds: i32) -> u32 {
        self.0 = (i64::from(self.0) - i64::from(seconds))
            .clamp(0, i64::from(super::allowance::DAILY_SECONDS)) as u32;
        self.0
    }
}

/// What the matcher currently believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackMatch {
    /// Not enough non-silent audio yet.
    Unknown,
    Match,
    /// Sustained mismatch: the AI path is off.
    Mismatch,
}

/// Moves the sub-fingerprints `fp` made since the last call (`taken` so far) into the rolling
/// `window` of `window_items`; restarts `fp` now and then so its own output does not grow
/// without bound (~8 items a second).
fn take_new_items(
    fp: &mut Fingerprinter,
    taken: &mut usize,
    window: &mut VecDeque<u32>,
    window_items: usize,
    rate: u32,
) {
    let all = fp.fingerprint();
    for &item in &all[(*taken).min(all.len())..] {
        if window.len() == window_items {
            window.pop_front();
        }
        window.push_back(item);
    }
    *taken = all.len();
    if *taken > 20_000 {
        let _ = fp.start(rate, 1);
        *taken = 0;
    }
}

/// The rolling window's best bit error rate against `reference`: the whole window's, or its
/// newest [`MIN_WINDOW_ITEMS`]' when lower, so that the licensed track that follows something
/// else matches once 12.4 s of it have played, whatever the window still holds.
fn window_ber(window: &VecDeque<u32>, reference: &[u32]) -> f32 {
    let w = window_items(window);
    let whole = best_bit_error_rate(&w, reference);
    if whole < MATCH_BER || w.len() <= MIN_WINDOW_ITEMS {
        return whole;
    }
    whole.min(best_bit_error_rate(
        &w[w.len() - MIN_WINDOW_ITEMS..],
        reference,
    ))
}

fn window_items(window: &VecDeque<u32>) -> Vec<u32> {
    let (a, b) = window.as_slices();
    let mut w = Vec::with_capacity(a.len() + b.len());
    w.extend_from_slice(a);
    w.extend_from_slice(b);
    w
}

/// The first of `order` under which `plain` (the sub-fingerprints of `audio`, mono at `rate`)
/// matches any of `references` with the change undone, and its bit error rate. A speed change and a
/// pitch shift by the same semitones share one fingerprint.
fn first_undo_that_matches(
    order: &[Transform],
    plain: &[u32],
    audio: &[f32],
    rate: u32,
    references: &[&[u32]],
) -> Option<(f32, Transform)> {
    let mut at_rate: Vec<(u32, Vec<u32>)> = Vec::new();
    for &t in order {
        let items = match t.declared_rate(rate) {
            None => plain.to_vec(),
            Some(r) => match at_rate.iter().find(|(x, _)| *x == r) {
                Some((_, items)) => items.clone(),
                None => {
                    let items = compute(&[audio.to_vec()], r).unwrap_or_default();
                    at_rate.push((r, items.clone()));
                    items
                }
            },
        };
        let query = transforms::respace(&items, t.item_step());
        if query.len() < MIN_WHOLE_ITEMS {
            continue;
        }
        let ber = references
            .iter()
            .map(|r| best_bit_error_rate(&query, r))
            .fold(1.0f32, f32::min);
        if ber < MATCH_BER {
            return Some((ber, t));
        }
    }
    None
}

/// The newest input (a window's worth and a second more), kept for retries: the mid and the
/// side at the host rate, 16-bit as the fingerprinter takes them.
struct Recent {
    mid: VecDeque<i16>,
    side: VecDeque<i16>,
    capacity: usize,
}

impl Recent {
    fn new(rate: u32) -> Recent {
        let capacity = ((WINDOW_SECONDS + 1.0) * f64::from(rate)) as usize;
        Recent {
            mid: VecDeque::with_capacity(capacity),
            side: VecDeque::new(),
            capacity,
        }
    }

    fn push(&mut self, mid: &[f32], side: &[f32]) {
        for (i, &m) in mid.iter().enumerate() {
            if self.mid.len() == self.capacity {
                self.mid.pop_front();
                self.side.pop_front();
            }
            self.mid.push_back(to_i16(m));
            self.side.push_back(side.get(i).map_or(0, |&d| to_i16(d)));
        }
    }

    fn clear(&mut self) {
        self.mid.clear();
        self.side.clear();
    }

    /// The mid, or a channel (`Some(true)`: left, `Some(false)`: right).
    fn audio(&self, channel: Option<bool>) -> Vec<f32> {
        let scale = 1.0 / 32767.0;
        self.mid
            .iter()
            .zip(&self.side)
            .map(|(&m, &d)| {
                let (m, d) = (f32::from(m) * scale, f32::from(d) * scale);
                match channel {
                    None => m,
                    Some(true) => m + d,
                    Some(false) => m - d,
                }
            })
            .collect()
    }
}

/// Seconds a match found by undoing a change holds before that change is tried again (a
/// window is 20 s; this keeps a matched remix under 1% of a core).
const UNDO_HOLD_SECONDS: u32 = 3;
/// The input's tuning is estimated on its newest seconds...
const TUNING_SECONDS: usize = 8;
/// ...once every this many retries.
const TUNING_EVERY: u32 = 5;

/// A stereo licence's left and right reference fingerprints.
pub type ChannelReferences = (Vec<u32>, Vec<u32>);

/// What a licence says the licensed track is: its reference fingerprints and loudness.
pub struct TrackReference {
    /// The downmix's.
    pub mid: Vec<u32>,
    /// Left and right (stereo licences).
    pub channels: Option<ChannelReferences>,
    /// The non-silent seconds' RMS, in dBFS (silence is judged against it).
    pub loudness: Option<i16>,
    /// A stem pack's references, one per stem.
    pub stems: Vec<Vec<u32>>,
    /// Its tuning in cents from the A440 grid ([`tuning::tuning_cents`]), when the licence
    /// states it: shifts between semitones are undone against it.
    pub tuning: Option<i8>,
    /// A cover's backing track, heard on the plugin's "Backing" sidechain input rather than
    /// its main input (the voice): silence there is never a licensed use
    /// ([`LiveMatcher::of_backing`]).
    pub backing: bool,
}

/// One input channel matched against its own reference (stereo licences).
struct ChannelMatch {
    reference: Vec<u32>,
    fp: Fingerprinter,
    taken: usize,
    window: VecDeque<u32>,
    energy: f64,
    samples: Vec<f32>,
    /// Loud seconds seen.
    loud: u32,
}

impl ChannelMatch {
    fn new(reference: Vec<u32>, rate: u32) -> Result<ChannelMatch, String> {
        let mut fp = Fingerprinter::new(&configuration());
        fp.start(rate, 1)
            .map_err(|e| format!("cannot fingerprint at {rate} Hz: {e:?}"))?;
        Ok(ChannelMatch {
            reference,
            fp,
            taken: 0,
            window: VecDeque::new(),
            energy: 0.0,
            samples: Vec::with_capacity(4096),
            loud: 0,
        })
    }

    fn consume(&mut self, scratch: &mut Vec<i16>) {
        scratch.clear();
        scratch.extend(self.samples.iter().map(|&x| to_i16(x)));
        self.fp.consume(scratch);
        self.energy += self
            .samples
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>();
    }

    /// The second's end: updates the window; whether the channel matches its reference
    /// (`None`: silent, or not enough of it yet to say).
    fn second_end(
        &mut self,
        frames: usize,
        silence: f32,
        window_items: usize,
        min_items: usize,
        rate: u32,
    ) -> Option<bool> {
        let rms = (self.energy / frames.max(1) as f64).sqrt() as f32;
        self.energy = 0.0;
        take_new_items(
            &mut self.fp,
            &mut self.taken,
            &mut self.window,
            window_items,
            rate,
        );
        if rms < silence {
            return None;
        }
        self.loud += 1;
        if self.window.len() < min_items {
            return None;
        }
        Some(window_ber(&self.window, &self.reference) < MATCH_BER)
    }

    /// A short input judged whole: whether the channel, if it was ever loud, matches its
    /// reference (`None`: silent throughout, or too short to say).
    fn judge_whole(&mut self, window_items: usize) -> Option<bool> {
        if self.loud == 0 {
            return None;
        }
        self.fp.finish();
        let all = self.fp.fingerprint();
        let items = &all[all.len().saturating_sub(window_items)..];
        (items.len() >= MIN_WHOLE_ITEMS)
            .then(|| best_bit_error_rate(items, &self.reference) < MATCH_BER)
    }

    /// Whether the channel's window (`audio`, mono at `rate`) matches its reference with `t`
    /// undone.
    fn matches_with(&self, t: Transform, audio: &[f32], rate: u32) -> bool {
        first_undo_that_matches(
            &[t],
            &window_items(&self.window),
            audio,
            rate,
            &[&self.reference],
        )
        .is_some()
    }

    fn restart(&mut self, rate: u32) {
        // A new fingerprinter: `start` keeps the last frame's samples (rusty-chromaprint
        // 0.3), which would open the new piece with the old one's end.
        self.fp = Fingerprinter::new(&configuration());
        let _ = self.fp.start(rate, 1);
        self.taken = 0;
        self.window.clear();
        self.energy = 0.0;
    }
}

/// The fingerprinting and decision logic, fed mono audio at the host rate. No threads here;
/// [`FingerprintMonitor`] runs it in the background.
pub struct LiveMatcher {
    reference: Vec<u32>,
    /// A label's stem pack: one reference per stem; the input matches when it matches the
    /// recording or any stem (shared/DECISIONS.md §5).
    stems: Vec<Vec<u32>>,
    rate: u32,
    fp: Fingerprinter,
    taken: usize,
    window: VecDeque<u32>,
    window_items: usize,
    scratch: Vec<i16>,
    second: usize,
    in_second: usize,
    energy: f64,
    side_energy: f64,
    silence: f32,
    /// Non-silent seconds since the last match.
    unmatched: f64,
    /// Non-silent seconds seen, judged seconds (a window to compare, or anti-phase), and the
    /// judged seconds that matched.
    loud: u32,
    judged: u32,
    matched: u32,
    /// Any sample above digital near-silence (-100 dBFS) was seen.
    any_signal: bool,
    /// A bounce: the share of matching seconds decides, and a mismatch is for the rest;
    /// whether the share has decided it (off for the rest of this bounce).
    bounce: bool,
    decided: bool,
    /// Left and right against their own references (a stereo licence).
    channels: Option<Box<[ChannelMatch; 2]>>,
    /// The pending allowance, the seconds left in it, and the seconds charged since the
    /// last match (refunded if the input matches before the stretch ends).
    book: Box<dyn PendingBook>,
    left: u32,
    pending: u32,
    /// The newest input, for windows retried with a change undone; the change that matched
    /// last, and the seconds its match still holds; the next semitones to try; whether to try
    /// every change at once (offline: a bounce or a render, where time is not short).
    recent: Recent,
    undone: Option<Transform>,
    hold: u32,
    next_semitones: usize,
    thorough: bool,
    held_ber: f32,
    /// The latest retry matched a stem's reference.
    stem_undone: bool,
    /// The input was split (jumps, loop wraps, gaps): windows are judged from
    /// [`MIN_WHOLE_ITEMS`] on.
    pieces: bool,
    /// Seconds with any signal since the last match, and whether the latest second was quiet
    /// (a signal, but under the silence threshold: not judged).
    since_match: u32,
    quiet_second: bool,
    /// A cover's backing ([`Self::of_backing`]): silence is not a licensed use.
    backing: bool,
    /// The reference's tuning (cents from the A440 grid; `None` when the licence does not say),
    /// the retries until the input's is estimated again, and the shifts that estimate gave.
    reference_tuning: Option<f32>,
    tuning_due: u32,
    shifts: Vec<i16>,
    state: TrackMatch,
    /// The bit error rate of the latest check.
    pub last_ber: f32,
}

impl LiveMatcher {
    pub fn new(reference: Vec<u32>, rate: u32) -> Result<LiveMatcher, String> {
        let mut fp = Fingerprinter::new(&configuration());
        fp.start(rate, 1)
            .map_err(|e| format!("cannot fingerprint at {rate} Hz: {e:?}"))?;
        let window_items = (WINDOW_SECONDS / ITEM_SECONDS).round() as usize;
        Ok(LiveMatcher {
            reference,
            stems: Vec::new(),
            rate,
            fp,
            taken: 0,
            window: VecDeque::with_capacity(window_items + 1),
            window_items,
            scratch: Vec::with_capacity(4096),
            second: rate.max(1) as usize,
            in_second: 0,
            energy: 0.0,
            side_energy: 0.0,
            silence: SILENCE_RMS,
            unmatched: 0.0,
            loud: 0,
            judged: 0,
            matched: 0,
            any_signal: false,
            bounce: false,
            decided: false,
            channels: None,
            book: Box::new(DailyAllowance::default()),
            left: super::allowance::DAILY_SECONDS,
            pending: 0,
            recent: Recent::new(rate),
            undone: None,
            hold: 0,
            next_semitones: 0,
            thorough: false,
            held_ber: 1.0,
            stem_undone: false,
            pieces: false,
            since_match: u32::MAX,
            quiet_second: false,
            backing: false,
            reference_tuning: None,
            tuning_due: 0,
            shifts: Vec::new(),
            state: TrackMatch::Unknown,
            last_ber: 1.0,
        })
    }

    /// Each non-silent channel must also match its own reference (`(left, right)`, a stereo
    /// licence's): the licensed track on one side does not carry another on the other.
    pub fn with_channel_references(
        mut self,
        channels: Option<ChannelReferences>,
    ) -> Result<LiveMatcher, String> {
        self.channels = match channels {
            Some((l, r)) => Some(Box::new([
                ChannelMatch::new(l, self.rate)?,
                ChannelMatch::new(r, self.rate)?,
            ])),
            None => None,
        };
        Ok(self)
    }

    /// Charges pending seconds to `book`. With nothing left in it, the matcher starts off:
    /// the AI path waits for a match.
    pub fn with_book(mut self, mut book: Box<dyn PendingBook>) -> LiveMatcher {
        self.left = book.spend(0);
        self.book = book;
        if self.left == 0 {
            self.state = TrackMatch::Mismatch;
        }
        self
    }

    /// Judges offline (`refrain render`): a window that misses is retried with every change
    /// at once, as in a bounce.
    pub fn offline(mut self) -> LiveMatcher {
        self.thorough = true;
        self
    }

    /// Matches a cover's backing track (shared/DECISIONS.md §5: the "Backing" sidechain must
    /// carry the track the cover licence names). The voice is the main input and is not
    /// matched; the backing under it is. Unrouted or silent, the backing is quiet input that has
    /// not matched ([`Self::dry_when_quiet`]) from the start, digital silence included: the
    /// voice stays dry until the licensed backing is heard (and [`QUIET_GRACE_SECONDS`] after
    /// the backing last matched, so a song's short breaks do not cut the singer off).
    pub fn of_backing(mut self) -> LiveMatcher {
        self.backing = true;
        self.quiet_second = true;
        self
    }

    /// The reference's tuning, as the licence states it ([`tuning::tuning_cents`]): a pitch
    /// shift between semitones is undone against it (without it, A440 is assumed).
    pub fn with_reference_tuning(mut self, cents: Option<i8>) -> LiveMatcher {
        self.reference_tuning = cents.map(f32::from);
        self
    }

    /// The pitch shifts to try undoing, most likely first ([`tuning::candidates`]), from how
    /// far the newest input's tuning sits from the reference's, estimated anew every
    /// [`TUNING_EVERY`] retries (about 5 ms on 8 s of input here). With the reference's tuning
    /// unknown (licences issued before it was stated), whole semitones always come first: an
    /// off-A440 recording must not lose them.
    fn shift_candidates(&mut self) -> &[i16] {
        if self.tuning_due == 0 || self.shifts.is_empty() {
            let audio = self.recent.audio(None);
            let tail = &audio[audio
                .len()
                .saturating_sub(TUNING_SECONDS * self.rate as usize)..];
            let reference = self.reference_tuning.unwrap_or(0.0);
            // The input's tuning against the reference's (A440 standing in for an unknown one).
            let offset = tuning::tuning_cents(tail, self.rate).map(|t| tuning::wrap(t - reference));
            let mut shifts = tuning::candidates(offset);
            if self.reference_tuning.is_none() {
                let whole = tuning::candidates(None);
                shifts.retain(|c| !whole.contains(c));
                shifts.splice(0..0, whole);
            }
            if shifts != self.shifts {
                // A new list is tried from its most likely shift.
                self.next_semitones = 0;
                self.shifts = shifts;
            }
            self.tuning_due = TUNING_EVERY;
        }
        self.tuning_due -= 1;
        &self.shifts
    }

    /// Whether this matches a cover's backing ([`Self::of_backing`]).
    pub fn is_backing(&self) -> bool {
        self.backing
    }

    /// The change undone for the latest match (`None`: it matched as it is).
    pub fn undone(&self) -> Option<Transform> {
        self.undone
    }

    /// Whether the AI path should give way to the dry signal because the input is quiet: the
    /// latest second had a signal (anything but digital silence) under the silence threshold,
    /// so it is not judged, and the input has not matched in the last [`QUIET_GRACE_SECONDS`]
    /// of signal.
    /// Another track played under -60 dBFS (to be turned up after the plugin) is never
    /// processed; the licensed track's quiet passages are, while its match is recent.
    pub fn dry_when_quiet(&self) -> bool {
        self.quiet_second
            && !(self.state == TrackMatch::Match && self.since_match <= QUIET_GRACE_SECONDS)
    }

    /// Why the allowance's book cannot be kept, if it cannot.
    pub fn book_problem(&self) -> Option<String> {
        self.book.problem()
    }

    /// Seconds left in the pending allowance.
    pub fn allowance_left(&self) -> u32 {
        self.left
    }

    /// A stem pack's references: the input matches when it matches any of them too (a stem
    /// has no channel references, so a stem's match is not checked channel by channel).
    pub fn with_stem_references(mut self, stems: Vec<Vec<u32>>) -> LiveMatcher {
        self.stems = stems;
        self
    }

    /// The best bit error rate of `score` over the recording's reference and, when that
    /// misses, each stem's; and whether a stem's was the one that matched.
    fn best_reference(&self, score: impl Fn(&[u32]) -> f32) -> (f32, bool) {
        let mix = score(&self.reference);
        if mix < MATCH_BER || self.stems.is_empty() {
            return (mix, false);
        }
        let stem = self.stems.iter().map(|r| score(r)).fold(1.0f32, f32::min);
        if stem < mix {
            (stem, stem < MATCH_BER)
        } else {
            (mix, false)
        }
    }

    /// Silence is judged against the reference's loudness ([`silence_rms`]).
    pub fn with_reference_loudness(mut self, dbfs: Option<i16>) -> LiveMatcher {
        self.silence = silence_rms(dbfs);
        self
    }

    /// Judges as a bounce: by the share of matching seconds, once [`BOUNCE_JUDGED_SECONDS`]
    /// are judged; a bounce that falls under it stays off for the rest.
    pub fn set_bounce(&mut self, bounce: bool) {
        if bounce && !self.bounce {
            // A bounce is judged on its own seconds, not on what played before it.
            self.judged = 0;
            self.matched = 0;
            self.decided = false;
            // ... but a spent allowance stays spent: the bounce waits for a match.
            if self.state == TrackMatch::Mismatch && self.left > 0 {
                self.state = TrackMatch::Unknown;
            }
        }
        self.bounce = bounce;
    }

    /// Sub-fingerprints a window needs to be judged.
    fn min_items(&self) -> usize {
        if self.pieces {
            MIN_WHOLE_ITEMS
        } else {
            MIN_WINDOW_ITEMS
        }
    }

    fn thorough(&self) -> bool {
        self.thorough || self.bounce
    }

    /// The share of judged seconds that matched (`None` before any was judged).
    pub fn share(&self) -> Option<f64> {
        (self.judged > 0).then(|| f64::from(self.matched) / f64::from(self.judged))
    }

    /// The verdict on a whole input (`refrain render`, after feeding all of it): at least
    /// [`MIN_MATCH_SHARE`] of its judged seconds match; an input with sound but too short to
    /// judge (under about 6 s, [`MIN_WHOLE_ITEMS`]) is refused, a silent one passes (there is nothing to remix).
    pub fn judge_whole(&mut self) -> Result<(), String> {
        if self.in_second > self.second / 2 {
            // The last part-second counts as one.
            self.second_end(self.in_second);
        }
        if self.judged == 0 && self.loud > 0 {
            // Shorter than the streaming judgement needs: the fingerprint of all of it, whole.
            self.fp.finish();
            let all = self.fp.fingerprint();
            let items = &all[all.len().saturating_sub(self.window_items)..];
            if items.len() >= MIN_WHOLE_ITEMS {
                let items = items.to_vec();
                let (ber, mut stem) = self.best_reference(|r| best_bit_error_rate(&items, r));
                self.last_ber = ber;
                self.judged = 1;
                let mut via = None;
                if self.last_ber >= MATCH_BER {
                    // Every change undone, as offline: the recording's reference, then the
                    // stems'.
                    self.tuning_due = 0;
                    let order: Vec<Transform> = TEMPO_STEPS
                        .into_iter()
                        .map(Transform::Tempo)
                        .chain(
                            self.shift_candidates()
                                .iter()
                                .flat_map(|&c| [Transform::Pitch(c), Transform::Speed(c)]),
                        )
                        .collect();
                    if let Some((ber, t, of_stem)) = self.undo_on_references(&order, &items) {
                        self.last_ber = ber;
                        via = Some(t);
                        self.undone = Some(t);
                        stem = of_stem;
                    }
                }
                // Each loud channel of a stereo licence against its own reference, too.
                let window_items = self.window_items;
                let rate = self.rate;
                let lr = [
                    self.recent.audio(Some(true)),
                    self.recent.audio(Some(false)),
                ];
                let channels_match = self.channels.as_mut().is_none_or(|channels| {
                    channels.iter_mut().zip(&lr).all(|(c, audio)| {
                        match (c.judge_whole(window_items), via) {
                            // A stem's match: stems have no channel references.
                            _ if stem => true,
                            (Some(false), Some(t)) => c.matches_with(t, audio, rate),
                            (verdict, _) => verdict != Some(false),
                        }
                    })
                });
                self.matched = u32::from(self.last_ber < MATCH_BER && channels_match);
            }
        }
        match self.share() {
            None if self.backing && self.loud == 0 => Err(
                "the backing is silent: this cover licence names a backing track, and the voice \
                 is licensed only over it"
                    .into(),
            ),
            None if self.loud > 0 => Err(
                "the input is too short to check against the licensed track (about 6 s of it are \
                 needed)"
                    .into(),
            ),
            // Sound kept under the silence threshold throughout (to be turned up afterwards).
            None if self.any_signal => Err(
                "the input is too quiet to check against the licensed track (under -60 dBFS \
                 throughout)"
                    .into(),
            ),
            None => Ok(()),
            Some(share) if share >= MIN_MATCH_SHARE => Ok(()),
            Some(share) => Err(format!(
                "only {:.0}% of the input matches the licensed track; {:.0}% is needed",
                share * 100.0,
                MIN_MATCH_SHARE * 100.0
            )),
        }
    }

    pub fn state(&self) -> TrackMatch {
        self.state
    }

    /// Non-silent seconds since the last match.
    pub fn unmatched_seconds(&self) -> f64 {
        self.unmatched
    }

    /// Starts the fingerprint over at a discontinuity (a transport jump, a loop's wrap, a gap
    /// in the input): what follows is a piece of its own, matched at its own offset and judged
    /// from [`MIN_WHOLE_ITEMS`] on (a producer looping eight bars still matches; pieces under
    /// about 6 s stay pending). The decision state is kept.
    pub fn restart(&mut self) {
        // The piece's last part-second is judged with it when it is more than half a second;
        // the new piece's seconds count from its start.
        if self.in_second > self.second / 2 {
            self.second_end(self.in_second);
        }
        self.in_second = 0;
        self.energy = 0.0;
        self.side_energy = 0.0;
        self.pieces = true;
        // The pending seconds before the split are not in any window the new piece can match:
        // their charge stands (the licensed track in 7 s pieces between stretches of another
        // track refunds nothing of those stretches).
        self.pending = 0;
        // A new fingerprinter, as for each channel.
        self.fp = Fingerprinter::new(&configuration());
        let _ = self.fp.start(self.rate, 1);
        self.taken = 0;
        self.window.clear();
        self.recent.clear();
        self.hold = 0;
        self.tuning_due = 0;
        if let Some(channels) = &mut self.channels {
            for c in channels.iter_mut() {
                c.restart(self.rate);
            }
        }
    }

    /// Feeds mono audio; returns the new state when it changed.
    pub fn push(&mut self, mono: &[f32]) -> Option<TrackMatch> {
        self.push_stereo(mono, &[])
    }

    /// Feeds the mid (the downmix, fingerprinted) and the side (`(L - R) / 2`, only its level
    /// counts; empty for mono input); returns the new state when it changed.
    pub fn push_stereo(&mut self, mid: &[f32], side: &[f32]) -> Option<TrackMatch> {
        let before = self.state;
        let mut at = 0;
        while at < mid.len() {
            let take = (mid.len() - at).min(self.second - self.in_second);
            let now = &mid[at..at + take];
            self.scratch.clear();
            self.scratch.extend(now.iter().map(|&x| to_i16(x)));
            self.fp.consume(&self.scratch);
            self.energy += now.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            self.any_signal = self.any_signal || now.iter().any(|x| x.abs() > QUIET_SIGNAL_RMS);
            self.recent
                .push(now, side.get(at..at + take).unwrap_or(&[]));
            if let Some(s) = side.get(at..at + take) {
                self.side_energy += s.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
                if let Some(channels) = &mut self.channels {
                    // L = mid + side, R = mid - side.
                    let [left, right] = &mut **channels;
                    left.samples.clear();
                    left.samples.extend(now.iter().zip(s).map(|(m, d)| m + d));
                    right.samples.clear();
                    right.samples.extend(now.iter().zip(s).map(|(m, d)| m - d));
                    left.consume(&mut self.scratch);
                    right.consume(&mut self.scratch);
                }
            }
            at += take;
            self.in_second += take;
            if self.in_second == self.second {
                self.second_end(self.second);
            }
        }
        (self.state != before).then_some(self.state)
    }

    fn second_end(&mut self, frames: usize) {
        let rms = (self.energy / frames.max(1) as f64).sqrt() as f32;
        let side = (self.side_energy / frames.max(1) as f64).sqrt() as f32;
        self.energy = 0.0;
        self.side_energy = 0.0;
        self.in_second = 0;
        // Each loud channel against its own reference: any that does not match (once it can
        // be judged) makes the second a mismatch, whatever the mid says.
        let mut channel_verdicts = [None, None];
        let min_items = self.min_items();
        if let Some(channels) = &mut self.channels {
            for (c, v) in channels.iter_mut().zip(&mut channel_verdicts) {
                *v = c.second_end(
                    frames,
                    self.silence,
                    self.window_items,
                    min_items,
                    self.rate,
                );
            }
        }
        take_new_items(
            &mut self.fp,
            &mut self.taken,
            &mut self.window,
            self.window_items,
            self.rate,
        );
        // A backing's silence counts as signal that has not matched: an unrouted sidechain is
        // not a licensed use.
        let signal = self.backing || rms.max(side) >= QUIET_SIGNAL_RMS;
        if signal {
            self.since_match = self.since_match.saturating_add(1);
        }
        self.quiet_second = signal && rms < self.silence && side < self.silence;
        if rms < self.silence && side < self.silence {
            return;
        }
        self.loud += 1;
        // Anti-phase: loud stereo whose downmix is (nearly) silent matches nothing.
        let anti_phase = side >= self.silence && rms < side * ANTI_PHASE_RATIO;
        if anti_phase {
            self.judged += 1;
            self.last_ber = 1.0;
        } else if self.window.len() >= self.min_items() {
            let (ber, stem) = self.best_reference(|r| window_ber(&self.window, r));
            self.last_ber = ber;
            self.judged += 1;
            let mut via = None;
            if self.last_ber < MATCH_BER {
                self.undone = None;
                self.stem_undone = false;
                self.hold = 0;
            } else if self.bounce && self.decided {
                // A bounce that fell under its share stays off for the rest: nothing to retry.
            } else if let Some(ber) = self.retry() {
                self.last_ber = ber;
                via = self.undone;
            }
            // A stem's match (as it is, or a retry's) is not checked channel by channel, nor is
            // a licence without channel references: there the side may not be louder than the
            // mid (L = s + x, R = s - x carries x past a check of the mid s alone).
            let unchecked = stem || self.stem_undone || self.channels.is_none();
            let channel_mismatch = if unchecked {
                side >= self.silence && side > rms
            } else {
                self.channel_mismatch(channel_verdicts, via)
            };
            if via.is_some() && channel_mismatch {
                // Found for the mid, not for every channel: nothing to hold.
                self.undone = None;
                self.hold = 0;
            }
            if self.last_ber < MATCH_BER && !channel_mismatch {
                self.matched += 1;
                self.unmatched = 0.0;
                self.since_match = 0;
                if self.pending > 0 {
                    // The pending stretch ended in a match: not charged.
                    self.left = self.book.spend(-(self.pending as i32));
                    self.pending = 0;
                }
                // A bounce the share has decided stays off; one that waits with the allowance
                // spent turns on at its first match.
                if !(self.bounce && self.decided) {
                    self.state = TrackMatch::Match;
                }
                self.bounce_share();
                return;
            }
        }
        self.unmatched += 1.0;
        self.charge_pending();
        if self.unmatched >= MISMATCH_SECONDS {
            // The stretch ended without a match: its charge stands.
            self.state = TrackMatch::Mismatch;
            self.pending = 0;
        }
        self.bounce_share();
    }

    /// A window that missed, compared again with a change undone: the change that matched
    /// last (its match holds [`UNDO_HOLD_SECONDS`] before it is recomputed), the tempo steps
    /// (free: they reuse the window's fingerprint), and one pair of semitones a second in real
    /// time, every pair offline. Returns the bit error rate of the first that matches.
    fn retry(&mut self) -> Option<f32> {
        if self.undone.is_some() && self.hold > 0 {
            self.hold -= 1;
            return Some(self.held_ber);
        }
        // Whole semitones while the input is on the reference's grid; the shifts that put it
        // back on the grid when it is not (tuning.rs).
        let thorough = self.thorough();
        let candidates = self.shift_candidates().to_vec();
        let shifts: Vec<i16> = if thorough {
            candidates
        } else {
            let c = candidates[self.next_semitones % candidates.len()];
            self.next_semitones += 1;
            vec![c]
        };
        let mut order: Vec<Transform> = self.undone.into_iter().collect();
        for t in TEMPO_STEPS.into_iter().map(Transform::Tempo).chain(
            shifts
                .into_iter()
                .flat_map(|c| [Transform::Pitch(c), Transform::Speed(c)]),
        ) {
            if !order.contains(&t) {
                order.push(t);
            }
        }
        let found = self.undo_on_references(&order, &window_items(&self.window));
        self.stem_undone = found.is_some_and(|(_, _, of_stem)| of_stem);
        match found {
            Some((ber, t, _)) => {
                self.undone = Some(t);
                self.hold = UNDO_HOLD_SECONDS;
                self.held_ber = ber;
                Some(ber)
            }
            None => {
                self.undone = None;
                None
            }
        }
    }

    /// The first of `order` under which `plain` (the sub-fingerprints of the newest input)
    /// matches with the change undone: the recording's reference first, then the stems'. The
    /// bit error rate, the change, and whether it was a stem's.
    fn undo_on_references(
        &self,
        order: &[Transform],
        plain: &[u32],
    ) -> Option<(f32, Transform, bool)> {
        let audio = self.recent.audio(None);
        let undo = |refs: &[&[u32]]| first_undo_that_matches(order, plain, &audio, self.rate, refs);
        if let Some((ber, t)) = undo(&[&self.reference]) {
            return Some((ber, t, false));
        }
        if self.stems.is_empty() {
            return None;
        }
        let stems: Vec<&[u32]> = self.stems.iter().map(Vec::as_slice).collect();
        undo(&stems).map(|(ber, t)| (ber, t, true))
    }

    /// Whether a loud channel that can be judged does not match its own reference: as it is,
    /// or with `via` undone when the mid matched that way.
    fn channel_mismatch(&self, verdicts: [Option<bool>; 2], via: Option<Transform>) -> bool {
        let Some(channels) = &self.channels else {
            return false;
        };
        match via {
            None => verdicts.contains(&Some(false)),
            // A held match keeps the channels' verdicts of when it was found.
            Some(_) if self.hold < UNDO_HOLD_SECONDS => false,
            Some(t) => channels
                .iter()
                .zip(verdicts)
                .zip([true, false])
                .any(|((c, v), left)| {
                    v.is_some() && !c.matches_with(t, &self.recent.audio(Some(left)), self.rate)
                }),
        }
    }

    /// A loud second that has not matched: charged to the allowance while the AI path is on;
    /// with the allowance spent, the path goes off until a match.
    fn charge_pending(&mut self) {
        if self.state == TrackMatch::Mismatch {
            return;
        }
        if self.left == 0 {
            // Off until a match, which still refunds the stretch so far.
            self.state = TrackMatch::Mismatch;
            return;
        }
        self.left = self.book.spend(1);
        self.pending += 1;
    }

    /// A bounce under [`MIN_MATCH_SHARE`] once judged enough: off for the rest of it (its
    /// pending charge stands).
    fn bounce_share(&mut self) {
        if self.bounce
            && self.judged >= BOUNCE_JUDGED_SECONDS
            && self.share().is_some_and(|s| s < MIN_MATCH_SHARE)
        {
            self.state = TrackMatch::Mismatch;
            self.decided = true;
            self.pending = 0;
        }
    }
}

/// The audio thread's end: splits each block into mid and side, interleaved into the ring.
/// Never blocks in real time (a full ring drops the block and marks a gap); waits in offline
/// bounces.
pub struct FingerprintTap {
    ring: HeapProd<f32>,
    /// (mid, side) pairs.
    pairs: Vec<f32>,
    shared: Arc<TapShared>,
    /// [`STALL_SECONDS`] of frames.
    stall_frames: u64,
}

/// How far the track check may fall behind the audio before the AI path stops: more than the
/// ring holds (4 s), so a bounce that waits for it never counts as stalled.
pub const STALL_SECONDS: u64 = 5;

#[derive(Debug, Default)]
struct TapShared {
    gap: AtomicBool,
    /// The host is bouncing (the latest block was offline).
    offline: AtomicBool,
    dropped: AtomicU64,
    /// Frames the tap was given (pushed or dropped), and frames the monitor took.
    offered: AtomicU64,
    taken: AtomicU64,
    stop: AtomicBool,
    /// The monitor thread is running (cleared when it ends, however it ends).
    alive: AtomicBool,
}

/// The longest a bounce waits for the monitor to make room, while the monitor runs: a bounce
/// never drops fingerprint audio because the machine is busy (a dropped block restarts the
/// matcher, so a starved monitor would otherwise never reach its verdict), yet never hangs.
const OFFLINE_ROOM_WAIT: Duration = Duration::from_secs(60);

/// Clears `alive` when the monitor thread ends, by return or by panic.
struct AliveGuard(Arc<TapShared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

impl FingerprintTap {
    /// Downmixes one block of `frames` into the ring (no channels, or channels shorter than
    /// `frames`: silence there, as an unrouted sidechain). Real-time safe unless `offline` (a
    /// bounce), where it waits for room while the monitor runs (at most
    /// [`OFFLINE_ROOM_WAIT`]) so nothing is lost however busy the machine is.
    pub fn push<C: AsRef<[f32]>>(&mut self, io: &[C], frames: usize, offline: bool) {
        self.shared.offline.store(offline, Ordering::Relaxed);
        let n = frames;
        let scale = 1.0 / io.len().max(1) as f32;
        let at = |c: &C, t: usize| c.as_ref().get(t).copied().unwrap_or(0.0);
        let mut done = 0;
        while done < n {
            let k = (n - done).min(self.pairs.len() / 2);
            for i in 0..k {
                let t = done + i;
                // Not a number is never audio here: it marks a split.
                let finite = |x: f32| if x.is_finite() { x } else { 0.0 };
                self.pairs[2 * i] = finite(io.iter().map(|c| at(c, t)).sum::<f32>() * scale);
                self.pairs[2 * i + 1] = match io {
                    [l, r] => finite((at(l, t) - at(r, t)) * 0.5),
                    _ => 0.0,
                };
            }
            let need = 2 * k;
            if offline {
                let t0 = std::time::Instant::now();
                while self.ring.vacant_len() < need
                    && self.shared.alive.load(Ordering::Acquire)
                    && t0.elapsed() < OFFLINE_ROOM_WAIT
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            if self.ring.vacant_len() >= need {
                self.ring.push_slice(&self.pairs[..need]);
            } else {
                self.shared.gap.store(true, Ordering::Release);
                self.shared.dropped.fetch_add(k as u64, Ordering::Relaxed);
            }
            self.shared.offered.fetch_add(k as u64, Ordering::Relaxed);
            done += k;
        }
    }

    /// Whether the track check has stopped keeping up: its thread ended, or it is more than
    /// [`STALL_SECONDS`] behind the audio (something holds it: a lock, a starved thread). Then
    /// nothing is being judged or charged, so the AI path must not run. Real-time safe.
    pub fn stalled(&self) -> bool {
        let behind = self
            .shared
            .offered
            .load(Ordering::Relaxed)
            .saturating_sub(self.shared.taken.load(Ordering::Relaxed));
        !self.shared.alive.load(Ordering::Acquire) || behind > self.stall_frames
    }

    /// Marks a discontinuity (a transport jump, a loop's wrap) at this point of the stream:
    /// the monitor starts a new piece there. Real-time safe (a full ring marks a gap, which
    /// starts a new piece too).
    pub fn split(&mut self) {
        if self.ring.vacant_len() >= 2 {
            self.ring.push_slice(&[f32::NAN, f32::NAN]);
        } else {
            self.shared.gap.store(true, Ordering::Release);
        }
    }
}

/// Why quiet input passes dry, for the editor and the log.
pub(crate) fn quiet_reason(backing: bool) -> &'static str {
    if backing {
        "the Backing input is silent or not routed: this cover licence names a backing track; \
         route it to Refrain's Backing sidechain input"
    } else {
        "the input is quiet and has not matched the licensed track recently"
    }
}

/// The background end: fingerprints, matches, and tells the gate.
pub struct FingerprintMonitor {
    shared: Arc<TapShared>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FingerprintMonitor {
    /// Starts matching against `reference` at `rate`; returns the audio thread's tap.
    /// `log` receives each change of decision.
    /// `loudness` is the reference's, as the licence states it (silence is judged against
    /// it).
    pub fn start(
        reference: TrackReference,
        book: Box<dyn PendingBook>,
        rate: u32,
        max_block: usize,
        gate: Arc<LicenceGate>,
        log: impl Fn(TrackMatch, f32, Option<Transform>) + Send + 'static,
    ) -> Result<(FingerprintMonitor, FingerprintTap), String> {
        // The fingerprinter is not `Send`: check the rate here, build it on the thread.
        drop(LiveMatcher::new(Vec::new(), rate)?);
        // Four seconds of (mid, side) pairs.
        let (prod, mut cons): (HeapProd<f32>, HeapCons<f32>) =
            HeapRb::<f32>::new(rate as usize * 8).split();
        let shared = Arc::new(TapShared::default());
        shared.alive.store(true, Ordering::Release);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("refrain-fingerprint".into())
            .spawn(move || {
                let _alive = AliveGuard(thread_shared.clone());
                let TrackReference {
                    mid: reference,
                    channels,
                    loudness,
                    stems,
                    tuning,
                    backing,
                } = reference;
                let matcher = LiveMatcher::new(reference, rate)
                    .and_then(|m| m.with_channel_references(channels));
                let Ok(matcher) = matcher else {
                    return;
                };
                let mut matcher = matcher
                    .with_reference_loudness(loudness)
                    .with_reference_tuning(tuning)
                    .with_stem_references(stems)
                    .with_book(book);
                if backing {
                    matcher = matcher.of_backing();
                }
                let tell = |matcher: &LiveMatcher, state: TrackMatch| {
                    let reason = match state {
                        TrackMatch::Mismatch if matcher.allowance_left() == 0 => {
                            super::allowance::spent_reason(matcher.book_problem())
                        }
                        TrackMatch::Mismatch => super::LicenceError::TrackMismatch.to_string(),
                        TrackMatch::Match => "input matches the licensed track".into(),
                        TrackMatch::Unknown => String::new(),
                    };
                    gate.set_track_mismatch(state == TrackMatch::Mismatch, &reason);
                };
                if matcher.state() == TrackMatch::Mismatch {
                    // Nothing left of the allowance: off until the input matches.
                    tell(&matcher, TrackMatch::Mismatch);
                    log(TrackMatch::Mismatch, 1.0, None);
                }
                // Quiet input that has not matched gives way to the dry signal, with its reason
                // (a cover's backing is quiet from the start, until it is heard).
                let mut quiet = matcher.dry_when_quiet();
                gate.set_quiet_unmatched(quiet);
                // (A spent allowance's reason stands: it says what the AI path waits for.)
                let spent = |m: &LiveMatcher| m.state() == TrackMatch::Mismatch;
                if quiet && !spent(&matcher) {
                    gate.set_track_reason(quiet_reason(backing));
                }
                let mut buf = vec![0.0f32; 8192];
                let (mut mid, mut side) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
                while !thread_shared.stop.load(Ordering::Acquire) {
                    if thread_shared.gap.swap(false, Ordering::AcqRel) {
                        matcher.restart();
                    }
                    let n = cons.pop_slice(&mut buf);
                    let frames = buf[..n].chunks_exact(2).filter(|p| !p[0].is_nan()).count();
                    thread_shared
                        .taken
                        .fetch_add(frames as u64, Ordering::Relaxed);
                    if n == 0 {
                        std::thread::park_timeout(Duration::from_millis(50));
                        continue;
                    }
                    matcher.set_bounce(thread_shared.offline.load(Ordering::Relaxed));
                    // Up to each split marker (a pair of NaNs), then a new piece.
                    let mut pairs = buf[..n].chunks_exact(2).peekable();
                    while pairs.peek().is_some() {
                        mid.clear();
                        side.clear();
                        let mut split = false;
                        for pair in pairs.by_ref() {
                            if pair[0].is_nan() {
                                split = true;
                                break;
                            }
                            mid.push(pair[0]);
                            side.push(pair[1]);
                        }
                        let changed = matcher.push_stereo(&mid, &side);
                        if let Some(state) = changed {
                            tell(&matcher, state);
                            log(state, matcher.last_ber, matcher.undone());
                        }
                        let now_quiet = matcher.dry_when_quiet();
                        gate.set_quiet_unmatched(now_quiet);
                        if now_quiet && (!quiet || changed.is_some()) && !spent(&matcher) {
                            gate.set_track_reason(quiet_reason(backing));
                        } else if quiet && !now_quiet && changed.is_none() {
                            tell(&matcher, matcher.state());
                        }
                        quiet = now_quiet;
                        if split {
                            matcher.restart();
                        }
                    }
                    if cons.is_empty() {
                        std::thread::park_timeout(Duration::from_millis(20));
                    }
                }
            })
            .map_err(|e| {
                shared.alive.store(false, Ordering::Release);
                format!("cannot start the fingerprint thread: {e}")
            })?;
        Ok((
            FingerprintMonitor {
                shared: shared.clone(),
                handle: Some(handle),
            },
            FingerprintTap {
                ring: prod,
                pairs: vec![0.0; 2 * max_block.clamp(1, 8192)],
                shared,
                stall_frames: STALL_SECONDS * u64::from(rate),
            },
        ))
    }

    /// Samples the tap dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for FingerprintMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
