//! Where licences meet the audio: what a model needs, the one check the plugin and `refrain
//! render` share, and the plugin's running enforcement (the gate the background checks write,
//! the audio thread's latch, and the fingerprint tap for remix models).

use super::allowance::{self, Allowances, LicenceAllowance};
use super::claims::Use;
use super::fingerprint::{
    DailyAllowance, FingerprintMonitor, FingerprintTap, PendingBook, TrackMatch, TrackReference,
};
use super::gate::{Latch, LicenceGate, LicenceMonitor, LoadedTrack, MonitorSpec};
use super::policy::{self, Requirement, SystemClock, Verdict};
use super::store::Store;
use super::usage::{Usage, UsageMeter, UsageTerms};
use crate::models::package::ModelPackage;
use std::sync::Arc;

/// Where the model runs, as far as the licence is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// In a DAW (playback or bounce) or `refrain render`: `remix` or `cover` is enough. A DAW
    /// set on stage cannot be told from a studio session, so public performance is not
    /// checked there (README says so).
    Studio,
    /// The standalone on stage: public performance, which needs `live` as well.
    PublicPerformance,
}

/// What a licence must allow for `package`'s model, named by its identity (one hash over its
/// manifest and all its files, so a swapped weight file is another model); `None` when the
/// model needs none (Refrain's built-in processors and public models). Voice models need
/// `cover`, remix models `remix`, and public performance needs `live` as well. A protected
/// (decrypted) model always needs a licence, whatever its manifest says: `cover` if it is a
/// voice, else `remix`.
pub fn requirement(package: &ModelPackage, setting: Setting) -> Option<Requirement> {
    let manifest = &package.manifest;
    let rights = manifest.rights;
    if !rights.licensed_voice && !rights.licensed_track && !package.protected {
        return None;
    }
    let uses = uses(rights.licensed_voice, checks_the_track(package), setting);
    Some(Requirement {
        model_id: manifest.model.id.clone(),
        model_sha256: package.identity.clone(),
        uses,
    })
}

/// Opens the protected model in `folder` ([`crate::models::protection`]) under `track`'s
/// licence: the licence must verify and allow the model (by the identity its header names) for
/// this use here and now, and carry its content key sealed to this device; the files are then
/// decrypted in memory and checked. Every refusal says why; nothing is loaded without all of
/// it.
pub fn unlock(
    folder: &std::path::Path,
    track: Option<&LoadedTrack>,
    setting: Setting,
) -> Result<ModelPackage, crate::models::generic::ModelError> {
    match Store::open_default() {
        Ok(store) => unlock_with(&store, folder, track, setting),
        Err(e) => Err(crate::models::generic::ModelError::Protected {
            id: folder.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// [`unlock`] with the licence folder `store`.
pub fn unlock_with(
    store: &Store,
    folder: &std::path::Path,
    track: Option<&LoadedTrack>,
    setting: Setting,
) -> Result<ModelPackage, crate::models::generic::ModelError> {
    use crate::models::generic::ModelError;
    use crate::models::protection;
    let refused = |id: &str, reason: String| ModelError::Protected {
        id: id.to_owned(),
        reason,
    };
    let header = protection::header(folder)
        .map_err(|e| refused(&folder.display().to_string(), e.to_string()))?
        .ok_or_else(|| refused(&folder.display().to_string(), "it has no header".into()))?;
    let req = Requirement {
        model_id: header.id.clone(),
        model_sha256: header.identity.clone(),
        uses: uses(header.voice, !header.voice, setting),
    };
    let verdict = policy::evaluate(
        store,
        track.map(|t| t.licence.as_str()),
        track.map(|t| t.key.as_str()),
        &req,
        &SystemClock,
    );
    if !verdict.state.allows() {
        return Err(refused(&header.id, verdict.reason));
    }
    // A verdict that allows always carries the claims it checked.
    let Some(claims) = verdict.claims else {
        return Err(refused(&header.id, verdict.reason));
    };
    let device = store
        .device()
        .map_err(|e| refused(&header.id, e.to_string()))?;
    let sealed = claims
        .sealed_keys
        .iter()
        .find(|k| k.device == device.id && k.model == header.identity)
        .ok_or_else(|| {
            refused(
                &header.id,
                format!(
                    "licence {} carries no key for this model sealed to this device ({})",
                    claims.jti, device.id
                ),
            )
        })?;
    let key = super::sealing::open(sealed, &device.id, device.x25519_secret())
        .map_err(|e| refused(&header.id, e.to_string()))?;
    protection::open(
        folder,
        &header,
        &key,
        crate::models::package::Limits::from_env(),
    )
    .map_err(|e| refused(&header.id, e.to_string()))
}

/// The uses a licence must allow: `cover` for a voice, `remix` for a model applied to a
/// licensed recording, and `live` as well for public performance.
fn uses(voice: bool, track: bool, setting: Setting) -> Vec<Use> {
    let mut uses = Vec::new();
    if voice {
        uses.push(Use::Cover);
    }
    if track {
        uses.push(Use::Remix);
    }
    if setting == Setting::PublicPerformance {
        uses.push(Use::Live);
    }
    uses
}

/// Whether `package`'s model is applied to a licensed recording, so its input must be that
/// recording: a remix model, and every protected model that is not a voice (a protected
/// model needs a `remix` licence whatever its manifest says, and so the track check).
pub fn checks_the_track(package: &ModelPackage) -> bool {
    let rights = package.manifest.rights;
    rights.licensed_track || (package.protected && !rights.licensed_voice)
}

/// Whether `package`'s model is a voice applied over a backing track: a cover licence that
/// carries a reference fingerprint names the backing, which the plugin's "Backing" sidechain
/// (and `refrain render --backing`) must carry (shared/DECISIONS.md §5). The voice itself is
/// not matched: Refrain cannot tell which words a person sings.
pub fn checks_the_backing(package: &ModelPackage) -> bool {
    !checks_the_track(package) && (package.manifest.rights.licensed_voice || package.protected)
}

/// The licence check the plugin and `refrain render` share: `None` when the model needs no
/// licence; otherwise the verdict for `track`'s licence, with the requirement it was checked
/// against (a missing licence folder is a refusal, with its reason).
pub fn check(
    package: &ModelPackage,
    track: Option<&LoadedTrack>,
    setting: Setting,
) -> Option<(Verdict, Option<(Store, Requirement)>)> {
    let store = match Store::open_default() {
        Ok(s) => s,
        Err(e) => {
            requirement(package, setting)?;
            return Some((Verdict::invalid(e, None), None));
        }
    };
    let req = requirement(package, setting)?;
    let verdict = policy::evaluate(
        &store,
        track.map(|t| t.licence.as_str()),
        track.map(|t| t.key.as_str()),
        &req,
        &SystemClock,
    );
    Some((verdict, Some((store, req))))
}

/// The host's transport, as the licence check needs it: whether it plays, and where (in
/// samples, when the host says).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Playhead {
    pub playing: bool,
    pub position: Option<i64>,
}

impl From<bool> for Playhead {
    /// Playing or not, with no position (a host without a timeline).
    fn from(playing: bool) -> Playhead {
        Playhead {
            playing,
            position: None,
        }
    }
}

/// A playing transport that lands this far (50 ms) from where the last block ended has jumped
/// (a seek, a loop's wrap); hosts whose positions wobble by a few samples have not.
const JUMP_SECONDS: f64 = 0.05;

/// A licensed model's running enforcement.
pub struct Licensing {
    pub gate: Arc<LicenceGate>,
    latch: Latch,
    tap: Option<FingerprintTap>,
    /// The track check listens to the "Backing" sidechain, not the main input (a cover).
    backing: bool,
    /// Where the transport will be after the last block, and a jump's least distance in
    /// samples.
    expected: Option<i64>,
    jump: u64,
    /// The licensed use being counted, with its terms (none without a licence that allows).
    usage: Option<(UsageMeter, UsageTerms)>,
    /// The latest block's frames, whether its input was silent and whether it was a bounce.
    last_block: (usize, bool, bool),
    log: fn(&str),
    _monitor: Option<LicenceMonitor>,
    _fingerprint: Option<FingerprintMonitor>,
}

impl Licensing {
    /// Checks the licence for `package`'s model now (off the audio thread) and starts the periodic
    /// re-check and, for remix models with a reference fingerprint, the track matcher (for a
    /// voice whose cover licence names a backing track, the matcher of the backing).
    /// Returns `None` when the model needs no licence. `log` receives each change, in words.
    pub fn start(
        package: &ModelPackage,
        track: Option<LoadedTrack>,
        setting: Setting,
        sample_rate: u32,
        max_block: usize,
        log: fn(&str),
    ) -> Option<(Licensing, Verdict)> {
        let (verdict, checked) = check(package, track.as_ref(), setting)?;
        let gate = LicenceGate::new(&verdict);
        let Some((store, requirement)) = checked else {
            // No licence folder: the AI path stays off, with the reason.
            return Some((Licensing::fixed(gate), verdict));
        };
        // The pending allowance's book, kept in the licence folder (none without the device
        // keys: fail closed).
        let mut book: Box<dyn PendingBook> = match (&verdict.claims, store.device()) {
            (Some(claims), Ok(device)) => Box::new(LicenceAllowance::new(
                Allowances::new(store.root(), device),
                allowance::licence_key(&claims.iss, &claims.jti),
            )),
            _ => Box::new(DailyAllowance(0)),
        };
        let spec = MonitorSpec {
            store,
            licence_key: track.as_ref().map(|t| t.key.clone()),
            licence_id: track.map(|t| t.licence),
            requirement,
            clock: Arc::new(SystemClock),
            period: MonitorSpec::period_from_env(),
        };
        let monitor = LicenceMonitor::start(spec, gate.clone(), move |v| {
            log(&format!("Refrain licence: {}", v.reason));
        });
        let backing = checks_the_backing(package);
        let claims = verdict
            .claims
            .as_ref()
            .filter(|_| (checks_the_track(package) || backing) && verdict.state.allows());
        let reference = claims.and_then(|c| c.reference_fingerprint().ok().flatten());
        let loudness = claims.and_then(|c| c.track.loudness_dbfs);
        let tuning = claims.and_then(|c| c.track.tuning_cents);
        let channels = claims.and_then(|c| c.channel_references().ok().flatten());
        let stems = claims
            .and_then(|c| c.stem_references().ok())
            .unwrap_or_default();
        if backing && reference.is_some() {
            // Dry from the first block until the backing is heard: the matcher says so too,
            // but its thread may start after the host's first blocks.
            gate.set_quiet_unmatched(true);
            gate.set_track_reason(super::fingerprint::quiet_reason(true));
        }
        if reference.is_some() && book.spend(0) == 0 {
            // The allowance is spent: dry from the first block until the input matches.
            let reason = allowance::spent_reason(book.problem());
            log(&format!("Refrain licence: the AI path is off: {reason}"));
            gate.set_track_mismatch(true, &reason);
        }
        let (fingerprint, tap) = match reference {
            Some(reference) => match FingerprintMonitor::start(
                TrackReference {
                    mid: reference,
                    channels,
                    loudness,
                    stems,
                    tuning,
                    backing,
                },
                book,
                sample_rate,
                max_block,
                gate.clone(),
                move |state, ber, undone| {
                    let verb = match state {
                        TrackMatch::Mismatch => "does not match",
                        TrackMatch::Match => "matches",
                        TrackMatch::Unknown => return,
                    };
                    let how =
                        undone.map_or(String::new(), |t| format!(", with {} undone", t.describe()));
                    let what = if backing {
                        "the Backing input"
                    } else {
                        "input"
                    };
                    log(&format!(
                        "Refrain licence: {what} {verb} the licensed track (bit error rate \
                         {ber:.2}{how})"
                    ));
                },
            ) {
                Ok((m, t)) => (Some(m), Some(t)),
                Err(e) => {
                    // No track check, no licensed use: fail closed.
                    let reason =
                        format!("the input cannot be checked against the licensed track: {e}");
                    log(&format!("Refrain licence: the AI path is off: {reason}"));
                    gate.set_track_mismatch(true, &reason);
                    (None, None)
                }
            },
            None => (None, None),
        };
        let usage = verdict
            .claims
            .as_ref()
            .filter(|_| verdict.state.allows())
            .map(|c| {
                (
                    UsageMeter::new(sample_rate),
                    UsageTerms::of(c, &package.identity),
                )
            });
        Some((
            Licensing {
                latch: Latch::new(&gate, f64::from(sample_rate)),
                gate,
                tap,
                backing,
                expected: None,
                jump: (JUMP_SECONDS * f64::from(sample_rate)) as u64,
                usage,
                last_block: (0, true, false),
                log,
                _monitor: Some(monitor),
                _fingerprint: fingerprint,
            },
            verdict,
        ))
    }

    /// Enforcement that never changes (no licence folder to re-check).
    fn fixed(gate: Arc<LicenceGate>) -> Licensing {
        Licensing {
            latch: Latch::new(&gate, 48_000.0),
            gate,
            tap: None,
            backing: false,
            expected: None,
            jump: 2_400,
            usage: None,
            last_block: (0, true, false),
            log: |_| {},
            _monitor: None,
            _fingerprint: None,
        }
    }

    /// Whether the AI path runs for this block; feeds the fingerprint. Real-time safe (waits
    /// for room in the fingerprint ring only in an offline bounce).
    /// A transport jump or a loop's wrap (the playhead away from where the last block ended)
    /// splits the track check's window there: the pieces are matched at their own offsets.
    pub fn allows(&mut self, io: &[&mut [f32]], playhead: Playhead, offline: bool) -> bool {
        self.allows_with_backing(io, &[], playhead, offline)
    }

    /// [`Self::allows`] with the block's "Backing" sidechain (`backing`: its channels, none
    /// when the host did not route it), which a cover licence naming a backing track checks
    /// instead of the main input. Real-time safe, as [`Self::allows`].
    pub fn allows_with_backing(
        &mut self,
        io: &[&mut [f32]],
        backing: &[&[f32]],
        playhead: Playhead,
        offline: bool,
    ) -> bool {
        let frames = io.first().map_or(0, |c| c.len());
        let playing = playhead.playing;
        if let (true, Some(at)) = (playing, playhead.position) {
            if let (Some(tap), Some(expected)) = (&mut self.tap, self.expected) {
                // Saturating: a host's position may be anything (a zero tempo gives i64::MAX).
                if at.abs_diff(expected) >= self.jump {
                    tap.split();
                }
            }
            self.expected = Some(at.saturating_add(frames as i64));
        }
        let mut stalled = false;
        if let Some(tap) = &mut self.tap {
            if self.backing {
                tap.push(backing, frames, offline);
            } else {
                tap.push(io, frames, offline);
            }
            stalled = tap.stalled();
        }
        let quiet = io
            .iter()
            .all(|c| c.iter().all(|x| x.abs() < super::gate::SILENCE_PEAK));
        let allows = self.latch.allows(&self.gate, playing, frames, quiet);
        self.gate.set_lapse_in(self.latch.lapse_in());
        self.last_block = (frames, quiet, offline);
        // A track check that stopped judging (and charging) lets nothing through.
        allows && !stalled
    }

    /// Counts the latest block ([`Self::allows`]'s) as licensed use when the AI path `ran` on
    /// it (the licence allowed it and the user did not bypass it). Real-time safe.
    pub fn count_use(&mut self, ran: bool) {
        let (frames, silent, offline) = self.last_block;
        if let Some((meter, _)) = &mut self.usage {
            meter.count(frames, silent, ran, offline);
        }
    }

    /// The finished uses so far, with the terms they ran under, the running one finished
    /// (not on the audio thread). Until the usage ledger lands (DECISIONS §6) they go to the
    /// log when the chain goes.
    pub fn take_usage(&mut self) -> Option<(Vec<Usage>, UsageTerms)> {
        let (meter, terms) = self.usage.as_mut()?;
        Some((meter.finish(), terms.clone()))
    }

    /// A reset (a stop, a jump): a new licence state takes effect here. Real-time safe.
    pub fn relatch(&mut self) {
        self.latch.relatch(&self.gate);
        // A stop, a jump or a new bounce ends the running use.
        if let Some((meter, _)) = &mut self.usage {
            meter.end();
        }
    }
}

impl Drop for Licensing {
    /// Logs the uses not yet taken (chains are dropped by the loader, never on the audio
    /// thread).
    fn drop(&mut self) {
        if let Some((uses, terms)) = self.take_usage() {
            for u in uses {
                (self.log)(&u.describe(&terms));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host's playhead may be anything (beats at a zero tempo come out as `i64::MAX`
    /// samples): the jump check saturates instead of overflowing on the audio thread.
    #[test]
    fn any_playhead_position_is_taken_without_overflow() {
        let gate = LicenceGate::new(&Verdict::not_required());
        let mut l = Licensing::fixed(gate);
        let mut block = vec![0.0f32; 256];
        for at in [i64::MAX, i64::MIN, 0, i64::MAX - 10] {
            let io = [block.as_mut_slice()];
            l.allows(
                &io,
                Playhead {
                    playing: true,
                    position: Some(at),
                },
                false,
            );
        }
        assert_eq!(l.expected, Some(i64::MAX));
    }

    #[test]
    fn a_licence_names_the_whole_model_so_a_swapped_weight_file_is_not_covered() {
        use crate::testkit::onnx::{self, Tensor};
        let dir = tempfile::tempdir().unwrap();
        let hop = 480;
        let gain =
            |g: f32| -> Vec<u8> { vec![g; hop].iter().flat_map(|v| v.to_le_bytes()).collect() };
        let (inputs, outputs) = onnx::contract_io(hop);
        let graph = onnx::graph_typed(
            vec![onnx::node(
                "Mul",
                &["audio_in", "gain"],
                &["audio_out"],
                vec![],
            )],
            vec![Tensor::external(
                "gain",
                &[1, 1, hop as i64],
                "gain.bin",
                4 * hop as u64,
            )],
            inputs,
            outputs,
        );
        let voice = |g: f32| {
            let folder =
                onnx::model_folder(dir.path(), hop, graph.clone(), &[("gain.bin", &gain(g))]);
            let manifest = folder.join("model.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            std::fs::write(&manifest, text + "[rights]\nlicensed_voice = true\n").unwrap();
            ModelPackage::read(&manifest, crate::models::package::Limits::from_env()).unwrap()
        };
        let licensed = voice(1.0);
        let req = requirement(&licensed, Setting::Studio).unwrap();
        let grant = crate::licence::claims::ModelGrant {
            id: req.model_id.clone(),
            sha256: req.model_sha256.clone(),
        };
        let claims =
            crate::licence::claims::Claims::example("Northern Records", "L-1", grant, 0, 1);
        assert!(claims.covers_model(&req.model_id, &req.model_sha256));
        // The same id and the same ONNX file, another weight file (its manifest entry updated,
        // as whoever swaps it would): another model, not the licensed one.
        let swapped = voice(3.0);
        assert_eq!(
            swapped.manifest.model.sha256,
            licensed.manifest.model.sha256
        );
        let req = requirement(&swapped, Setting::Studio).unwrap();
        assert_ne!(req.model_sha256, licensed.identity);
        assert!(!claims.covers_model(&req.model_id, &req.model_sha256));
    }

    #[test]
    fn public_performance_needs_live_and_a_daw_does_not() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/demo-remix/model.toml");
        let package =
            ModelPackage::read(&path, crate::models::package::Limits::from_env()).unwrap();
        let studio = requirement(&package, Setting::Studio).unwrap();
        assert_eq!(studio.uses, vec![Use::Remix]);
        assert_eq!(
            studio.model_sha256, package.identity,
            "named by its identity"
        );
        let stage = requirement(&package, Setting::PublicPerformance).unwrap();
        assert_eq!(stage.uses, vec![Use::Remix, Use::Live]);
        assert!(requirement(
            &crate::models::builtin_package().unwrap(),
            Setting::PublicPerformance
        )
        .is_none());
    }
}
