//! Is the input the licensed recording? A Chromaprint fingerprint (`rusty-chromaprint`: 11,025
//! Hz, 4096-sample frames, 12 chroma bins, 32-bit sub-fingerprints) of the incoming audio is
//! compared over a rolling window with the reference fingerprint in the licence.
//!
//! The audio thread only downmixes into a lock-free ring ([`FingerprintTap`]); a background
//! thread ([`FingerprintMonitor`]) fingerprints and matches. Decisions are made in audio time:
//! a match at any offset of the reference (bit error rate under [`MATCH_BER`]) resets the
//! count; [`MISMATCH_SECONDS`] of non-silent audio without a match switch the AI path off;
//! silent seconds count neither way.

use super::gate::LicenceGate;
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
/// Length of the rolling window compared with the reference.
pub const WINDOW_SECONDS: f64 = 10.0;
/// Sub-fingerprints a window needs before it can match.
pub const MIN_WINDOW_ITEMS: usize = 24;
/// Bit error rate under which a window matches (unrelated audio sits near 0.5).
pub const MATCH_BER: f32 = 0.30;
/// Non-silent seconds without a match before the AI path is switched off.
pub const MISMATCH_SECONDS: f64 = 20.0;
/// A second whose RMS is under this (-50 dBFS) is silence.
pub const SILENCE_RMS: f32 = 0.003_162;

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

/// What the matcher currently believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackMatch {
    /// Not enough non-silent audio yet.
    Unknown,
    Match,
    /// Sustained mismatch: the AI path is off.
    Mismatch,
}

/// The fingerprinting and decision logic, fed mono audio at the host rate. No threads here;
/// [`FingerprintMonitor`] runs it in the background.
pub struct LiveMatcher {
    reference: Vec<u32>,
    rate: u32,
    fp: Fingerprinter,
    taken: usize,
    window: VecDeque<u32>,
    window_items: usize,
    scratch: Vec<i16>,
    second: usize,
    in_second: usize,
    energy: f64,
    /// Non-silent seconds since the last match.
    unmatched: f64,
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
            rate,
            fp,
            taken: 0,
            window: VecDeque::with_capacity(window_items + 1),
            window_items,
            scratch: Vec::with_capacity(4096),
            second: rate.max(1) as usize,
            in_second: 0,
            energy: 0.0,
            unmatched: 0.0,
            state: TrackMatch::Unknown,
            last_ber: 1.0,
        })
    }

    pub fn state(&self) -> TrackMatch {
        self.state
    }

    /// Non-silent seconds since the last match.
    pub fn unmatched_seconds(&self) -> f64 {
        self.unmatched
    }

    /// Starts the fingerprint over (after a gap in the input); the decision state is kept.
    pub fn restart(&mut self) {
        let _ = self.fp.start(self.rate, 1);
        self.taken = 0;
        self.window.clear();
    }

    /// Feeds mono audio; returns the new state when it changed.
    pub fn push(&mut self, mono: &[f32]) -> Option<TrackMatch> {
        let before = self.state;
        let mut rest = mono;
        while !rest.is_empty() {
            let take = rest.len().min(self.second - self.in_second);
            let (now, later) = rest.split_at(take);
            rest = later;
            self.scratch.clear();
            self.scratch.extend(now.iter().map(|&x| to_i16(x)));
            self.fp.consume(&self.scratch);
            self.energy += now.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            self.in_second += take;
            if self.in_second == self.second {
                self.end_of_second();
            }
        }
        (self.state != before).then_some(self.state)
    }

    fn end_of_second(&mut self) {
        let rms = (self.energy / self.second as f64).sqrt() as f32;
        self.energy = 0.0;
        self.in_second = 0;
        let all = self.fp.fingerprint();
        for &item in &all[self.taken.min(all.len())..] {
            if self.window.len() == self.window_items {
                self.window.pop_front();
            }
            self.window.push_back(item);
        }
        self.taken = all.len();
        // Keep the fingerprinter's own output from growing without bound (~8 items/s).
        if self.taken > 20_000 {
            let _ = self.fp.start(self.rate, 1);
            self.taken = 0;
        }
        if rms < SILENCE_RMS {
            return;
        }
        if self.window.len() >= MIN_WINDOW_ITEMS {
            let (a, b) = self.window.as_slices();
            let mut w = Vec::with_capacity(a.len() + b.len());
            w.extend_from_slice(a);
            w.extend_from_slice(b);
            self.last_ber = best_bit_error_rate(&w, &self.reference);
            if self.last_ber < MATCH_BER {
                self.unmatched = 0.0;
                self.state = TrackMatch::Match;
                return;
            }
        }
        self.unmatched += 1.0;
        if self.unmatched >= MISMATCH_SECONDS {
            self.state = TrackMatch::Mismatch;
        }
    }
}

/// The audio thread's end: downmixes each block into the ring. Never blocks in real time
/// (a full ring drops the block and marks a gap); waits in offline bounces.
pub struct FingerprintTap {
    ring: HeapProd<f32>,
    mono: Vec<f32>,
    shared: Arc<TapShared>,
}

#[derive(Debug, Default)]
struct TapShared {
    gap: AtomicBool,
    dropped: AtomicU64,
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
    /// Downmixes one block into the ring. Real-time safe unless `offline` (a bounce), where it
    /// waits for room while the monitor runs (at most [`OFFLINE_ROOM_WAIT`]) so nothing is
    /// lost however busy the machine is.
    pub fn push(&mut self, io: &[&mut [f32]], offline: bool) {
        let n = io.first().map_or(0, |c| c.len());
        let scale = 1.0 / io.len().max(1) as f32;
        let mut done = 0;
        while done < n {
            let k = (n - done).min(self.mono.len());
            for (i, m) in self.mono[..k].iter_mut().enumerate() {
                *m = io.iter().map(|c| c[done + i]).sum::<f32>() * scale;
            }
            if offline {
                let t0 = std::time::Instant::now();
                while self.ring.vacant_len() < k
                    && self.shared.alive.load(Ordering::Acquire)
                    && t0.elapsed() < OFFLINE_ROOM_WAIT
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            if self.ring.vacant_len() >= k {
                self.ring.push_slice(&self.mono[..k]);
            } else {
                self.shared.gap.store(true, Ordering::Release);
                self.shared.dropped.fetch_add(k as u64, Ordering::Relaxed);
            }
            done += k;
        }
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
    pub fn start(
        reference: Vec<u32>,
        rate: u32,
        max_block: usize,
        gate: Arc<LicenceGate>,
        log: impl Fn(TrackMatch, f32) + Send + 'static,
    ) -> Result<(FingerprintMonitor, FingerprintTap), String> {
        // The fingerprinter is not `Send`: check the rate here, build it on the thread.
        drop(LiveMatcher::new(Vec::new(), rate)?);
        let (prod, mut cons): (HeapProd<f32>, HeapCons<f32>) =
            HeapRb::<f32>::new(rate as usize * 4).split();
        let shared = Arc::new(TapShared::default());
        shared.alive.store(true, Ordering::Release);
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("refrain-fingerprint".into())
            .spawn(move || {
                let _alive = AliveGuard(thread_shared.clone());
                let Ok(mut matcher) = LiveMatcher::new(reference, rate) else {
                    return;
                };
                let mut buf = vec![0.0f32; 8192];
                while !thread_shared.stop.load(Ordering::Acquire) {
                    if thread_shared.gap.swap(false, Ordering::AcqRel) {
                        matcher.restart();
                    }
                    let n = cons.pop_slice(&mut buf);
                    if n == 0 {
                        std::thread::park_timeout(Duration::from_millis(50));
                        continue;
                    }
                    if let Some(state) = matcher.push(&buf[..n]) {
                        let mismatch = state == TrackMatch::Mismatch;
                        let reason = match state {
                            TrackMatch::Mismatch => super::LicenceError::TrackMismatch.to_string(),
                            TrackMatch::Match => "input matches the licensed track".into(),
                            TrackMatch::Unknown => String::new(),
                        };
                        gate.set_track_mismatch(mismatch, &reason);
                        log(state, matcher.last_ber);
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
                mono: vec![0.0; max_block.clamp(1, 8192)],
                shared,
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
