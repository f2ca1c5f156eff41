//! The decision: does this licence let this model run, here, now, for this use?
//!
//! [`verify`] checks a token against a set of trusted keys and revocations (pure, fast: the
//! figure in README's performance table); [`evaluate`] adds the data folder and the clock and
//! turns every outcome into a [`Verdict`] with the reason in words.

use super::claims::{self, Claims, Use, AUDIENCE};
use super::store::{Revoked, Store};
use super::token::{self, IssuerKey, Kind};
use super::LicenceError;

/// Where the time comes from (tests control it).
pub trait Clock: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that says what it is told.
#[derive(Debug, Default)]
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn at(t: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(t))
    }

    pub fn set(&self, t: i64) {
        self.0.store(t, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What the loaded model needs from a licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub model_id: String,
    pub model_sha256: String,
    /// Uses the situation needs (`cover` for a voice model, `remix` for a remix model, `live`
    /// in real time).
    pub uses: Vec<Use>,
    /// Where the user is, if known.
    pub territory: Option<String>,
}

/// The licence state the audio thread acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LicenceState {
    /// The model needs no licence (built-in processors, utility models).
    NotRequired = 0,
    Valid = 1,
    /// Past expiry, within the grace period: runs, with a warning.
    Grace = 2,
    /// The AI path is off; the latency-aligned dry signal passes.
    Invalid = 3,
}

impl LicenceState {
    pub fn from_u8(v: u8) -> LicenceState {
        match v {
            0 => LicenceState::NotRequired,
            1 => LicenceState::Valid,
            2 => LicenceState::Grace,
            _ => LicenceState::Invalid,
        }
    }

    /// Whether the AI path may run.
    pub fn allows(self) -> bool {
        self != LicenceState::Invalid
    }
}

/// The outcome of a check, with the text the editor and the log show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: LicenceState,
    pub reason: String,
    /// The licence's claims, once its signature verified.
    pub claims: Option<Claims>,
}

impl Verdict {
    pub fn not_required() -> Verdict {
        Verdict {
            state: LicenceState::NotRequired,
            reason: "this model needs no licence".into(),
            claims: None,
        }
    }

    pub fn invalid(e: &LicenceError, claims: Option<Claims>) -> Verdict {
        Verdict {
            state: LicenceState::Invalid,
            reason: e.to_string(),
            claims,
        }
    }
}

/// Verifies a licence token's signature and claims: the key must be trusted and not revoked,
/// the payload must parse and every claim must validate, the audience must be Refrain's, the
/// issuer must be the key's owner, and the licence must not be revoked. No clock, no use.
pub fn verify(
    token_text: &str,
    keys: &[IssuerKey],
    revoked: &Revoked,
) -> Result<Claims, LicenceError> {
    let (key, payload) = token::verify_signed(token_text, keys, Kind::Licence)?;
    if revoked.keys.contains(&key.kid) {
        return Err(LicenceError::KeyRevoked(key.kid.clone()));
    }
    let claims: Claims =
        serde_json::from_slice(&payload).map_err(|e| LicenceError::Payload(e.to_string()))?;
    if claims.aud != AUDIENCE {
        return Err(LicenceError::WrongAudience(claims.aud));
    }
    if claims.iss != key.issuer {
        return Err(LicenceError::IssuerMismatch {
            claimed: claims.iss,
            key_issuer: key.issuer.clone(),
        });
    }
    claims.validate().map_err(LicenceError::Claims)?;
    if revoked
        .licences
        .contains(&(claims.iss.clone(), claims.jti.clone()))
    {
        return Err(LicenceError::LicenceRevoked(claims.jti));
    }
    Ok(claims)
}

/// Applies time, model, use and territory to verified claims.
pub fn check_terms(claims: &Claims, req: &Requirement, now: i64) -> Verdict {
    let fail = |e: LicenceError| Verdict::invalid(&e, Some(claims.clone()));
    // `validate` already parsed these.
    let (Ok(nbf), Ok(exp), Ok(grace_end)) =
        (claims.not_before(), claims.expires(), claims.grace_end())
    else {
        return fail(LicenceError::Payload("unreadable dates".into()));
    };
    if now < nbf {
        return fail(LicenceError::NotYetValid { from: nbf });
    }
    if now >= grace_end {
        return fail(LicenceError::Expired { on: exp });
    }
    if !claims.covers_model(&req.model_id, &req.model_sha256) {
        return fail(LicenceError::ModelNotCovered(req.model_id.clone()));
    }
    for u in &req.uses {
        if !claims.uses.contains(u) {
            return fail(LicenceError::UseNotAllowed(*u));
        }
    }
    if !claims.covers_territory(req.territory.as_deref()) {
        return fail(LicenceError::Territory {
            here: req.territory.clone(),
            allowed: claims.territories.join(", "),
        });
    }
    let track = format!(
        "{} - {} ({})",
        claims.track.artists.join(", "),
        claims.track.title,
        claims.track.isrc
    );
    if now >= exp {
        Verdict {
            state: LicenceState::Grace,
            reason: format!(
                "licence {} expired on {}; grace period until {}: renew it",
                claims.jti,
                claims::format_date(exp),
                claims::format_date(grace_end)
            ),
            claims: Some(claims.clone()),
        }
    } else {
        let days = (exp - now) / 86_400;
        let warn = if days < 14 {
            format!(" (expires in {days} days)")
        } else {
            String::new()
        };
        Verdict {
            state: LicenceState::Valid,
            reason: format!(
                "licensed: {track}, licence {} until {}{warn}",
                claims.jti,
                claims::format_date(exp)
            ),
            claims: Some(claims.clone()),
        }
    }
}

/// The whole check, as the plugin runs it: licence `licence_id` from the store, verified with
/// the store's keys and revocations, the clock checked against the last time seen, then the
/// terms.
pub fn evaluate(
    store: &Store,
    licence_id: Option<&str>,
    req: &Requirement,
    clock: &dyn Clock,
) -> Verdict {
    let Some(id) = licence_id.filter(|s| !s.is_empty()) else {
        return Verdict::invalid(&LicenceError::NoTrackLoaded, None);
    };
    let token_text = match store.licence_token(id) {
        Ok(t) => t,
        Err(e) => return Verdict::invalid(&e, None),
    };
    evaluate_token(store, &token_text, req, clock)
}

/// [`evaluate`] for a token in hand (the `refrain licence verify` command).
pub fn evaluate_token(
    store: &Store,
    token_text: &str,
    req: &Requirement,
    clock: &dyn Clock,
) -> Verdict {
    let (keys, _) = store.trusted_keys();
    let (revoked, _) = store.revoked(&keys);
    let claims = match verify(token_text, &keys, &revoked) {
        Ok(c) => c,
        Err(e) => return Verdict::invalid(&e, None),
    };
    let now = clock.now();
    if let Err(e) = store.check_clock(now) {
        return Verdict::invalid(&e, Some(claims));
    }
    check_terms(&claims, req, now)
}

/// One cached licence, as the editor and `refrain licence list` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedLicence {
    pub id: String,
    /// `Artist - Title (ISRC), until 2027-11-21, uses remix, live`, or why it is unusable.
    pub text: String,
    pub usable: bool,
}

/// Every licence in the store, verified (signature, claims, revocation; not the terms, which
/// depend on the model and the situation).
pub fn cached_licences(store: &Store) -> Vec<CachedLicence> {
    let (keys, _) = store.trusted_keys();
    let (revoked, _) = store.revoked(&keys);
    store
        .licence_ids()
        .into_iter()
        .map(|id| {
            match store
                .licence_token(&id)
                .and_then(|t| verify(&t, &keys, &revoked))
            {
                Ok(c) => CachedLicence {
                    text: format!(
                        "{} - {} ({}), until {}, uses {}",
                        c.track.artists.join(", "),
                        c.track.title,
                        c.track.isrc,
                        c.exp.get(..10).unwrap_or(&c.exp),
                        c.uses
                            .iter()
                            .map(|u| u.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    id,
                    usable: true,
                },
                Err(e) => CachedLicence {
                    text: format!("unusable: {e}"),
                    id,
                    usable: false,
                },
            }
        })
        .collect()
}
