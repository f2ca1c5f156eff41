//! Where licences meet the audio: what a model needs, the one check the plugin and `refrain
//! render` share, and the plugin's running enforcement (the gate the background checks write,
//! the audio thread's latch, and the fingerprint tap for remix models).

use super::claims::Use;
use super::fingerprint::{FingerprintMonitor, FingerprintTap, TrackMatch};
use super::gate::{Latch, LicenceGate, LicenceMonitor, LoadedTrack, MonitorSpec};
use super::policy::{self, Requirement, SystemClock, Verdict};
use super::store::Store;
use crate::models::manifest::Manifest;
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

/// What a licence must allow for `manifest`'s model; `None` when the model needs none
/// (Refrain's built-in processors and public models). Voice models need `cover`, remix models
/// `remix`, and public performance needs `live` as well.
pub fn requirement(manifest: &Manifest, setting: Setting) -> Option<Requirement> {
    let rights = manifest.rights;
    if !rights.licensed_voice && !rights.licensed_track {
        return None;
    }
    let mut uses = Vec::new();
    if rights.licensed_voice {
        uses.push(Use::Cover);
    }
    if rights.licensed_track {
        uses.push(Use::Remix);
    }
    if setting == Setting::PublicPerformance {
        uses.push(Use::Live);
    }
    Some(Requirement {
        model_id: manifest.model.id.clone(),
        model_sha256: manifest.model.sha256.to_ascii_lowercase(),
        uses,
    })
}

/// The licence check the plugin and `refrain render` share: `None` when the model needs no
/// licence; otherwise the verdict for `track`'s licence, with the requirement it was checked
/// against (a missing licence folder is a refusal, with its reason).
pub fn check(
    manifest: &Manifest,
    track: Option<&LoadedTrack>,
    setting: Setting,
) -> Option<(Verdict, Option<(Store, Requirement)>)> {
    let store = match Store::open_default() {
        Ok(s) => s,
        Err(e) => {
            requirement(manifest, setting)?;
            return Some((Verdict::invalid(e, None), None));
        }
    };
    let req = requirement(manifest, setting)?;
    let verdict = policy::evaluate(
        &store,
        track.map(|t| t.licence.as_str()),
        &req,
        &SystemClock,
    );
    Some((verdict, Some((store, req))))
}

/// A licensed model's running enforcement.
pub struct Licensing {
    pub gate: Arc<LicenceGate>,
    latch: Latch,
    tap: Option<FingerprintTap>,
    _monitor: Option<LicenceMonitor>,
    _fingerprint: Option<FingerprintMonitor>,
}

impl Licensing {
    /// Checks the licence for `manifest` now (off the audio thread) and starts the periodic
    /// re-check and, for remix models with a reference fingerprint, the track matcher.
    /// Returns `None` when the model needs no licence. `log` receives each change, in words.
    pub fn start(
        manifest: &Manifest,
        track: Option<LoadedTrack>,
        setting: Setting,
        sample_rate: u32,
        max_block: usize,
        log: fn(&str),
    ) -> Option<(Licensing, Verdict)> {
        let (verdict, checked) = check(manifest, track.as_ref(), setting)?;
        let gate = LicenceGate::new(&verdict);
        let Some((store, requirement)) = checked else {
            // No licence folder: the AI path stays off, with the reason.
            return Some((Licensing::fixed(gate), verdict));
        };
        let spec = MonitorSpec {
            store,
            licence_id: track.map(|t| t.licence),
            requirement,
            clock: Arc::new(SystemClock),
            period: MonitorSpec::period_from_env(),
        };
        let monitor = LicenceMonitor::start(spec, gate.clone(), move |v| {
            log(&format!("Refrain licence: {}", v.reason));
        });
        let reference = verdict
            .claims
            .as_ref()
            .filter(|_| manifest.rights.licensed_track && verdict.state.allows())
            .and_then(|c| c.reference_fingerprint().ok().flatten());
        let (fingerprint, tap) = match reference {
            Some(reference) => match FingerprintMonitor::start(
                reference,
                sample_rate,
                max_block,
                gate.clone(),
                move |state, ber| {
                    let verb = match state {
                        TrackMatch::Mismatch => "does not match",
                        TrackMatch::Match => "matches",
                        TrackMatch::Unknown => return,
                    };
                    log(&format!(
                        "Refrain licence: input {verb} the licensed track (bit error rate {ber:.2})"
                    ));
                },
            ) {
                Ok((m, t)) => (Some(m), Some(t)),
                Err(e) => {
                    log(&format!(
                        "Refrain licence: fingerprint matching is off: {e}"
                    ));
                    (None, None)
                }
            },
            None => (None, None),
        };
        Some((
            Licensing {
                latch: Latch::new(&gate),
                gate,
                tap,
                _monitor: Some(monitor),
                _fingerprint: fingerprint,
            },
            verdict,
        ))
    }

    /// Enforcement that never changes (no licence folder to re-check).
    fn fixed(gate: Arc<LicenceGate>) -> Licensing {
        Licensing {
            latch: Latch::new(&gate),
            gate,
            tap: None,
            _monitor: None,
            _fingerprint: None,
        }
    }

    /// Whether the AI path runs for this block; feeds the fingerprint. Real-time safe (waits
    /// for room in the fingerprint ring only in an offline bounce).
    pub fn allows(&mut self, io: &[&mut [f32]], playing: bool, offline: bool) -> bool {
        if let Some(tap) = &mut self.tap {
            tap.push(io, offline);
        }
        self.latch.allows(&self.gate, playing)
    }

    /// A reset (a stop, a jump): a new licence state takes effect here. Real-time safe.
    pub fn relatch(&mut self) {
        self.latch.relatch(&self.gate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_performance_needs_live_and_a_daw_does_not() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models/demo-remix/model.toml"),
        )
        .unwrap();
        let manifest = Manifest::parse(&text).unwrap();
        let studio = requirement(&manifest, Setting::Studio).unwrap();
        assert_eq!(studio.uses, vec![Use::Remix]);
        let stage = requirement(&manifest, Setting::PublicPerformance).unwrap();
        assert_eq!(stage.uses, vec![Use::Remix, Use::Live]);
        assert!(requirement(
            &crate::models::builtin_manifest(),
            Setting::PublicPerformance
        )
        .is_none());
    }
}
