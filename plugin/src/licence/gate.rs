//! Enforcement. A background monitor verifies the licence at activation and then periodically
//! and publishes the verdict in one atomic; the audio thread reads it through a [`Latch`] that
//! only takes a new verdict at a transport stop, a reset or a reactivation, so a licence that
//! lapses mid-performance never cuts it. The fingerprint monitor's "input does not match" is
//! a second atomic, applied (with the engine's crossfade) as soon as it is sustained.

use super::policy::{self, Clock, LicenceState, Requirement, Verdict};
use super::store::Store;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable: milliseconds between periodic re-checks (default one minute).
pub const ENV_RECHECK_MS: &str = "REFRAIN_LICENCE_RECHECK_MS";
const DEFAULT_RECHECK: Duration = Duration::from_secs(60);
const MIN_RECHECK: Duration = Duration::from_millis(50);

/// The track loaded into a plugin instance, saved in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedTrack {
    /// The licence id (`jti`), looked up in the licence folder.
    pub licence: String,
    /// The id of the issuer key that signed it (empty in projects saved before keys were
    /// recorded: then each cached licence with the id is tried).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default)]
    pub isrc: String,
    #[serde(default)]
    pub title: String,
}

impl LoadedTrack {
    /// Reads the persisted form: JSON, or a bare licence id. Empty: no track.
    pub fn parse(s: &str) -> Option<LoadedTrack> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        serde_json::from_str(s).ok().or_else(|| {
            Some(LoadedTrack {
                licence: s.to_owned(),
                ..Default::default()
            })
        })
    }

    pub fn to_state(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The track of licence `id` whose token is `token_text` (ISRC and title read from the
    /// token without trusting it: they are labels; the licence is verified where it is used).
    /// Claims that do not validate give no labels, so a title with a bidi override is never
    /// shown.
    pub fn from_token(id: &str, token_text: &str) -> LoadedTrack {
        let claims: Option<super::claims::Claims> = super::token::parse(token_text)
            .ok()
            .and_then(|u| serde_json::from_slice(u.untrusted_payload()).ok())
            .filter(|c: &super::claims::Claims| c.validate().is_ok());
        LoadedTrack {
            licence: id.to_owned(),
            key: super::token::parse(token_text)
                .map(|u| u.kid)
                .unwrap_or_default(),
            isrc: claims
                .as_ref()
                .map(|c| c.track.isrc.clone())
                .unwrap_or_default(),
            title: claims.map(|c| c.track.title).unwrap_or_default(),
        }
    }

    /// The track of the cached licence `id` (labels empty if it is not cached).
    pub fn from_cache(store: &Store, id: &str) -> LoadedTrack {
        let text = store.licence_token(id).unwrap_or_default();
        LoadedTrack::from_token(id, &text)
    }

    /// Loads a licence file: caches it in `store` and names it.
    pub fn load_file(store: &Store, path: &std::path::Path) -> Result<LoadedTrack, String> {
        let text = super::store::read_token_file(path).map_err(|e| e.to_string())?;
        let cached = store.install_licence(&text).map_err(|e| e.to_string())?;
        Ok(LoadedTrack::from_token(&cached.id, &cached.text))
    }
}

/// What the background threads tell the audio thread, and the editor.
#[derive(Debug)]
pub struct LicenceGate {
    state: AtomicU8,
    track_mismatch: AtomicBool,
    /// The input is quiet (under the track check's silence, so not judged) and has not
    /// matched recently: the AI path gives way to the dry signal.
    quiet_unmatched: AtomicBool,
    /// Milliseconds until a known lapse takes effect at the latest, as the audio thread's
    /// latch counts them (`u64::MAX`: none pending); the editor's countdown.
    lapse_ms: AtomicU64,
    reason: Mutex<String>,
    track_reason: Mutex<String>,
}

impl LicenceGate {
    pub fn new(verdict: &Verdict) -> Arc<LicenceGate> {
        Arc::new(LicenceGate {
            state: AtomicU8::new(verdict.state as u8),
            track_mismatch: AtomicBool::new(false),
            quiet_unmatched: AtomicBool::new(false),
            lapse_ms: AtomicU64::new(u64::MAX),
            reason: Mutex::new(verdict.reason.clone()),
            track_reason: Mutex::new(String::new()),
        })
    }

    /// Publishes a new verdict (monitor thread). Returns whether the state changed.
    pub fn publish(&self, verdict: &Verdict) -> bool {
        *self.reason.lock() = verdict.reason.clone();
        self.state.swap(verdict.state as u8, Ordering::AcqRel) != verdict.state as u8
    }

    /// Publishes the latch's countdown (audio thread; real-time safe).
    pub fn set_lapse_in(&self, seconds: Option<f64>) {
        let ms = seconds.map_or(u64::MAX, |s| (s * 1000.0) as u64);
        self.lapse_ms.store(ms, Ordering::Relaxed);
    }

    /// Seconds until a known lapse ends the AI path at the latest (`None`: none pending).
    pub fn lapse_in(&self) -> Option<f64> {
        let ms = self.lapse_ms.load(Ordering::Relaxed);
        (ms != u64::MAX).then(|| ms as f64 / 1000.0)
    }

    /// The latest verdict's state (not latched).
    pub fn state(&self) -> LicenceState {
        LicenceState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Fingerprint monitor: the input does (not) match the licensed track.
    pub fn set_track_mismatch(&self, mismatch: bool, reason: &str) {
        *self.track_reason.lock() = reason.to_owned();
        self.track_mismatch.store(mismatch, Ordering::Release);
    }

    /// Fingerprint monitor: why the track check holds the AI path off now (quiet input),
    /// leaving the mismatch flag as it is.
    pub fn set_track_reason(&self, reason: &str) {
        *self.track_reason.lock() = reason.to_owned();
    }

    /// Fingerprint monitor: the input is quiet and has not matched recently.
    pub fn set_quiet_unmatched(&self, quiet: bool) {
        self.quiet_unmatched.store(quiet, Ordering::Release);
    }

    pub fn quiet_unmatched(&self) -> bool {
        self.quiet_unmatched.load(Ordering::Acquire)
    }

    pub fn track_mismatch(&self) -> bool {
        self.track_mismatch.load(Ordering::Acquire)
    }

    /// The reason in words (for the editor and the log; never called on the audio thread).
    pub fn reason(&self) -> String {
        let r = self.reason.lock().clone();
        let t = self.track_reason.lock().clone();
        if t.is_empty() || !self.state().allows() {
            r
        } else {
            format!("{r}; {t}")
        }
    }
}

/// A licence that lapses while the AI path runs ends at the next stretch of silence this long
/// (DECISIONS 5)...
pub const LAPSE_SILENCE_S: f64 = 2.0;
/// ...and at most this long after the lapse is known (expiry past grace, a revocation), even
/// on a live input whose transport never stops.
pub const LAPSE_MAX_S: f64 = 300.0;
/// Input under this peak (-60 dBFS) counts as silence.
pub const SILENCE_PEAK: f32 = 0.001;

/// The audio thread's view of the gate.
#[derive(Debug, Clone, Copy)]
pub struct Latch {
    state: LicenceState,
    was_playing: bool,
    rate: f64,
    /// Frames since the gate stopped allowing what the latch still allows.
    lapsed_frames: u64,
    /// Consecutive silent input frames.
    quiet_frames: u64,
}

impl Latch {
    /// Latches the gate's current state (activation), for audio at `sample_rate`.
    pub fn new(gate: &LicenceGate, sample_rate: f64) -> Latch {
        Latch {
            state: gate.state(),
            was_playing: false,
            rate: sample_rate.max(1.0),
            lapsed_frames: 0,
            quiet_frames: 0,
        }
    }

    /// Takes the gate's current state now (the host's reset: a stop, a jump).
    pub fn relatch(&mut self, gate: &LicenceGate) {
        self.state = gate.state();
        self.lapsed_frames = 0;
    }

    /// Whether the AI path runs for this block of `frames` (`quiet`: its input is silent). A
    /// new licence state is taken when the transport goes from playing to stopped. A lapse
    /// (the gate no longer allowing what the latch does) is taken at the next
    /// [`LAPSE_SILENCE_S`] of silence, and at most [`LAPSE_MAX_S`] after it is known, playing
    /// or not: a performance is never cut mid-phrase, and never runs on for ever either. A
    /// track mismatch applies at once. Real-time safe.
    pub fn allows(
        &mut self,
        gate: &LicenceGate,
        playing: bool,
        frames: usize,
        quiet: bool,
    ) -> bool {
        let now = gate.state();
        if self.was_playing && !playing {
            self.state = now;
        }
        self.was_playing = playing;
        self.quiet_frames = if quiet {
            self.quiet_frames.saturating_add(frames as u64)
        } else {
            0
        };
        if self.state.allows() && !now.allows() {
            self.lapsed_frames = self.lapsed_frames.saturating_add(frames as u64);
            let quiet_long = self.quiet_frames as f64 >= LAPSE_SILENCE_S * self.rate;
            let too_long = self.lapsed_frames as f64 >= LAPSE_MAX_S * self.rate;
            if quiet_long || too_long {
                self.state = now;
                self.lapsed_frames = 0;
            }
        } else {
            self.lapsed_frames = 0;
        }
        self.state.allows() && !gate.track_mismatch() && !gate.quiet_unmatched()
    }

    /// Seconds until a known lapse takes effect at the latest (`None`: no lapse pending), for
    /// the editor's countdown.
    pub fn lapse_in(&self) -> Option<f64> {
        (self.lapsed_frames > 0)
            .then(|| (LAPSE_MAX_S - self.lapsed_frames as f64 / self.rate).max(0.0))
    }
}

/// What the monitor checks.
pub struct MonitorSpec {
    pub store: Store,
    pub licence_id: Option<String>,
    /// The key that signed the loaded licence (several keys may issue the same id).
    pub licence_key: Option<String>,
    pub requirement: Requirement,
    pub clock: Arc<dyn Clock>,
    /// Time between periodic checks.
    pub period: Duration,
}

impl MonitorSpec {
    /// The recheck period: `$REFRAIN_LICENCE_RECHECK_MS` or one minute.
    pub fn period_from_env() -> Duration {
        std::env::var(ENV_RECHECK_MS)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_RECHECK)
            // Never longer than the default: a huge value must not stop the re-checks (a
            // lapse or a revocation would never take effect).
            .clamp(MIN_RECHECK, DEFAULT_RECHECK)
    }

    pub fn evaluate(&self) -> Verdict {
        policy::evaluate(
            &self.store,
            self.licence_id.as_deref(),
            self.licence_key.as_deref(),
            &self.requirement,
            self.clock.as_ref(),
        )
    }
}

/// The periodic re-check thread. Dropping it stops the thread.
pub struct LicenceMonitor {
    stop: Option<crossbeam_channel::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl LicenceMonitor {
    /// Starts re-checking `spec` every `spec.period`, publishing to `gate`. `log` receives
    /// each change of state with its reason.
    pub fn start(
        spec: MonitorSpec,
        gate: Arc<LicenceGate>,
        log: impl Fn(&Verdict) + Send + 'static,
    ) -> LicenceMonitor {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let handle = std::thread::Builder::new()
            .name("refrain-licence".into())
            .spawn(move || loop {
                match stopped.recv_timeout(spec.period) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let verdict = spec.evaluate();
                let before = gate.reason.lock().clone();
                if gate.publish(&verdict) || before != verdict.reason {
                    log(&verdict);
                }
            })
            .ok();
        LicenceMonitor {
            stop: Some(stop),
            handle,
        }
    }
}

impl Drop for LicenceMonitor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
