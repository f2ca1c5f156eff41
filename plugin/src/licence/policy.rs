//! The decision: does this licence let this model run, now, for this use, where the issuer
//! says the licensee is?
//!
//! [`verify`] checks a token against a set of trusted keys and revocations (pure, fast: the
//! figure in README's performance table); [`evaluate`] adds the data folder and the clock and
//! turns every outcome into a [`Verdict`] with the reason in words.

use super::certificate::{self, CertificateError, CertifiedKey};
use super::claims::{self, format_date, ClaimError, Claims, Use, AUDIENCE};
use super::freshness::{self, FreshnessError};
use super::revocation::{IgnoredRevocation, Revoked};
use super::roots::Roots;
use super::store::{Store, UnreadableFile};
use super::token::{Kind, TokenError};
use super::LicenceError;

/// Why a licence token does not verify: its signature, its key, its claims or a revocation
/// (the terms come after, in [`TermsError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The chain to a root: a missing, unknown-root, altered or invalid certificate.
    #[error(transparent)]
    Certificate(CertificateError),
    #[error("the registry has withdrawn the certificate of `{party}` ({cid})")]
    CertificateRevoked { party: String, cid: String },
    #[error("the issuer's signing key {kid} has been revoked")]
    KeyRevoked { kid: String },
    #[error(
        "`{party}` is not certified for this track ({isrc}{iswc}): its certificate covers {scope}"
    )]
    OutOfScope {
        party: String,
        isrc: String,
        iswc: String,
        scope: String,
    },
    #[error("the licence's contents are unreadable: {reason}")]
    Payload { reason: String },
    #[error("the licence is for `{aud}`, not for Refrain")]
    WrongAudience { aud: String },
    #[error("the licence names issuer `{claimed}` but is signed by the key of `{key_issuer}`")]
    IssuerMismatch { claimed: String, key_issuer: String },
    #[error("the licence has an invalid field: {0}")]
    Claims(#[from] ClaimError),
    #[error("licence {id} has been revoked by its issuer")]
    LicenceRevoked { id: String },
}

/// Why verified claims do not allow this model, here, now, for this use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    /// Verified claims always have readable dates; kept so a bug refuses rather than panics.
    #[error("the licence's contents are unreadable: unreadable dates ({0})")]
    Dates(ClaimError),
    #[error("the licence is not valid until {}", format_date(*from))]
    NotYetValid { from: i64 },
    #[error("expired on {}", format_date(*on))]
    Expired { on: i64 },
    #[error("model `{model}` is not covered by the licence")]
    ModelNotCovered { model: String },
    #[error("the licence does not allow `{0}` use")]
    UseNotAllowed(Use),
    /// A licence limited to some territories that does not say where its licensee is. The
    /// machine's own settings are no evidence (the user sets them), so only the issuer can
    /// mend it.
    #[error("the licence is limited to {allowed} but names no licensee territory, so its territory limit cannot be checked; ask the issuer to state it")]
    NoLicenseeTerritory { allowed: String },
    #[error("the licence is limited to {allowed}; its licensee is in {licensee}")]
    Territory { licensee: String, allowed: String },
    #[error("the issuer's certificate ({party}) expired on {}: the issuer must renew it with the registry", format_date(*on))]
    CertificateExpired { party: String, on: i64 },
    #[error("the issuer's certificate ({party}) is not valid until {}", format_date(*from))]
    CertificateNotYetValid { party: String, from: i64 },
    #[error(
        "the licence is bound to device(s) {devices}; this machine is device {this} (send \
         `refrain device export` to the issuer for a licence bound to it)"
    )]
    OtherDevice { devices: String, this: String },
    #[error(transparent)]
    Freshness(FreshnessError),
    #[error("`{party}` is not certified for the voice `{model}`: only a party the registry certified for a voice (or one that holds a protected voice's key) can license it")]
    VoiceNotInScope { party: String, model: String },
}

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
    /// The model's identity: one hash over its manifest and all its files.
    pub model_sha256: String,
    /// Uses the situation needs (`cover` for a voice model, `remix` for a remix model, `live`
    /// in real time).
    pub uses: Vec<Use>,
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

    pub fn invalid(e: impl Into<LicenceError>, claims: Option<Claims>) -> Verdict {
        Verdict {
            state: LicenceState::Invalid,
            reason: e.into().to_string(),
            claims,
        }
    }
}

/// Verifies a licence token: the issuer's certificate in its footer chains to one of `roots`
/// and has not been withdrawn; the licence is signed by the certified key, which has not been
/// withdrawn; the payload parses and every claim validates; the audience is Refrain's; the
/// issuer is the certified party; the certificate's scope covers the licensed track; and no
/// revocation withdraws the licence. No clock, no device, no use.
pub fn verify(token_text: &str, roots: &Roots, revoked: &Revoked) -> Result<Claims, VerifyError> {
    verify_signed_by(token_text, roots, revoked).map(|(claims, _)| claims)
}

/// [`verify`], with the certified key that signed the licence.
pub fn verify_signed_by(
    token_text: &str,
    roots: &Roots,
    revoked: &Revoked,
) -> Result<(Claims, CertifiedKey), VerifyError> {
    let (certified, payload) = certificate::verify_issued(token_text, roots, Kind::Licence)
        .map_err(|e| match e {
            CertificateError::Token(t) => VerifyError::Token(t),
            e => VerifyError::Certificate(e),
        })?;
    let cert = &certified.certificate;
    if revoked.certificate(&cert.cid) {
        return Err(VerifyError::CertificateRevoked {
            party: cert.party.name.clone(),
            cid: cert.cid.clone(),
        });
    }
    if revoked.key(&certified.key.kid) {
        return Err(VerifyError::KeyRevoked {
            kid: certified.key.kid.clone(),
        });
    }
    let claims: Claims = serde_json::from_slice(&payload).map_err(|e| VerifyError::Payload {
        reason: e.to_string(),
    })?;
    if claims.aud != AUDIENCE {
        return Err(VerifyError::WrongAudience { aud: claims.aud });
    }
    if claims.iss != certified.key.issuer {
        return Err(VerifyError::IssuerMismatch {
            claimed: claims.iss,
            key_issuer: certified.key.issuer.clone(),
        });
    }
    claims.validate()?;
    if !cert.covers(&claims) {
        let scope = cert.describe();
        return Err(VerifyError::OutOfScope {
            party: cert.party.name.clone(),
            isrc: claims.track.isrc.clone(),
            iswc: claims
                .track
                .iswc
                .as_deref()
                .map(|w| format!(", {w}"))
                .unwrap_or_default(),
            scope: scope
                .split_once(": ")
                .map_or(scope.clone(), |(_, s)| s.to_owned()),
        });
    }
    if revoked.licence(&certified.key.kid, &claims.jti) {
        return Err(VerifyError::LicenceRevoked { id: claims.jti });
    }
    Ok((claims, certified))
}

/// Time, model, use and territory against verified claims; the expiry and the end of the
/// grace period when they allow the model. Everything here comes from the signed claims and
/// `req`: nothing from the machine (environment, settings, locale) but the clock.
fn terms(claims: &Claims, req: &Requirement, now: i64) -> Result<(i64, i64), TermsError> {
    // `validate` already parsed these.
    let dates = claims
        .not_before()
        .and_then(|nbf| Ok((nbf, claims.expires()?, claims.grace_end()?)));
    let (nbf, exp, grace_end) = dates.map_err(TermsError::Dates)?;
    if now < nbf {
        return Err(TermsError::NotYetValid { from: nbf });
    }
    if now >= grace_end {
        return Err(TermsError::Expired { on: exp });
    }
    if !claims.covers_model(&req.model_id, &req.model_sha256) {
        return Err(TermsError::ModelNotCovered {
            model: req.model_id.clone(),
        });
    }
    for u in &req.uses {
        if !claims.uses.contains(u) {
            return Err(TermsError::UseNotAllowed(*u));
        }
    }
    if !claims.covers_licensee() {
        let allowed = claims.territories.join(", ");
        return Err(match &claims.licensee_territory {
            None => TermsError::NoLicenseeTerritory { allowed },
            Some(t) => TermsError::Territory {
                licensee: t.clone(),
                allowed,
            },
        });
    }
    Ok((exp, grace_end))
}

/// Applies time, model, use and territory (the licence's own `licensee_territory`) to verified
/// claims.
pub fn check_terms(claims: &Claims, req: &Requirement, now: i64) -> Verdict {
    let (exp, grace_end) = match terms(claims, req, now) {
        Ok(dates) => dates,
        Err(e) => return Verdict::invalid(e, Some(claims.clone())),
    };
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
/// The whole check, as the plugin runs it: licence `licence_id` from the store (of the key
/// `kid` when the project names it; otherwise each cached licence with that id, the first that
/// allows the model winning), then [`evaluate_token`].
pub fn evaluate(
    store: &Store,
    licence_id: Option<&str>,
    kid: Option<&str>,
    req: &Requirement,
    clock: &dyn Clock,
) -> Verdict {
    let Some(id) = licence_id.filter(|s| !s.is_empty()) else {
        return Verdict::invalid(LicenceError::NoTrackLoaded, None);
    };
    let candidates = match store.licence_tokens(id, kid.filter(|k| !k.is_empty())) {
        Ok(t) => t,
        Err(e) => return Verdict::invalid(e, None),
    };
    let mut first = None;
    for token in candidates {
        let verdict = evaluate_token(store, &token.text, req, clock);
        if verdict.state.allows() {
            return verdict;
        }
        first.get_or_insert(verdict);
    }
    first.unwrap_or_else(|| Verdict::invalid(LicenceError::NoTrackLoaded, None))
}

/// [`evaluate`] for a token in hand (the `refrain licence verify` command): [`verify`] with the
/// store's roots and revocations, the clock against the last time seen, the issuer's
/// certificate dates, the device binding, freshness (for a licence that asks for it), then the
/// terms.
pub fn evaluate_token(
    store: &Store,
    token_text: &str,
    req: &Requirement,
    clock: &dyn Clock,
) -> Verdict {
    // Skipped files only mean fewer revocations; `refrain licence list` names them. A licence
    // that asks for freshness notices missing lists through its receipt.
    let (revoked, _) = store.revoked();
    let (claims, certified) = match verify_signed_by(token_text, store.roots(), &revoked) {
        Ok(c) => c,
        Err(e) => return Verdict::invalid(e, None),
    };
    let now = clock.now();
    // Read before the check writes it: a deleted clock file must be seen as deleted.
    let clock_present = store.last_seen().is_some();
    if let Err(e) = store.check_clock(now) {
        return Verdict::invalid(e, Some(claims));
    }
    if let Err(e) = chain_and_device(store, &claims, &certified, &revoked, clock_present, now) {
        return Verdict::invalid(e, Some(claims));
    }
    if let Err(e) = voice_consent(&claims, &certified, req) {
        return Verdict::invalid(e, Some(claims));
    }
    check_terms(&claims, req, now)
}

/// A voice is the artist's: a cover licence for a voice model counts only from a party the
/// registry certified for that voice, or one that sealed the protected voice's key into the
/// licence (it holds the model's key, so the rights holder gave it).
fn voice_consent(
    claims: &Claims,
    certified: &CertifiedKey,
    req: &Requirement,
) -> Result<(), TermsError> {
    if !req.uses.contains(&Use::Cover) {
        return Ok(());
    }
    let sealed = claims
        .sealed_keys
        .iter()
        .any(|k| k.model.eq_ignore_ascii_case(&req.model_sha256));
    if sealed || certified.certificate.covers_voice(&req.model_sha256) {
        Ok(())
    } else {
        Err(TermsError::VoiceNotInScope {
            party: certified.certificate.party.name.clone(),
            model: req.model_id.clone(),
        })
    }
}

/// The certificate's dates, the device binding and freshness.
fn chain_and_device(
    store: &Store,
    claims: &Claims,
    certified: &CertifiedKey,
    revoked: &Revoked,
    clock_present: bool,
    now: i64,
) -> Result<(), LicenceError> {
    let cert = &certified.certificate;
    let party = cert.party.name.clone();
    let dates = cert.not_before().and_then(|n| Ok((n, cert.expires()?)));
    let (nbf, exp) = dates.map_err(TermsError::Dates)?;
    if now < nbf {
        return Err(TermsError::CertificateNotYetValid { party, from: nbf }.into());
    }
    if now >= exp {
        return Err(TermsError::CertificateExpired { party, on: exp }.into());
    }
    let device = store.device()?;
    if !claims.devices.contains(&device.id) {
        return Err(TermsError::OtherDevice {
            devices: claims.devices.join(", "),
            this: device.id,
        }
        .into());
    }
    if let Some(days) = claims.max_offline_days {
        freshness::check(
            days,
            &certified.root,
            store.receipt().as_ref(),
            revoked.registry_seq(&certified.root),
            clock_present,
            now,
        )
        .map_err(TermsError::Freshness)?;
    }
    Ok(())
}

/// One cached licence, as the editor and `refrain licence list` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedLicence {
    pub id: String,
    /// `Artist - Title (ISRC), until 2027-11-21, uses remix, live`, or why it is unusable.
    pub text: String,
    pub usable: bool,
}

/// The licence folder as `refrain licence list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// See [`cached_licences`].
    pub licences: Vec<CachedLicence>,
    /// Key files and revocation lists that were skipped: a licence they would have verified
    /// (or withdrawn) is judged without them.
    pub unreadable: Vec<UnreadableFile>,
    /// Revocation entries that do not count: a list naming another key, or a cached licence
    /// that another key signed.
    pub ignored: Vec<IgnoredRevocation>,
}

/// Every licence in the store, verified (signature, claims, revocation; not the terms, which
/// depend on the model and the situation).
pub fn cached_licences(store: &Store) -> Vec<CachedLicence> {
    listing(store).licences
}

/// [`cached_licences`], with the files of the licence folder that could not be used.
pub fn listing(store: &Store) -> Listing {
    listing_at(store, SystemClock.now())
}

/// [`listing`], with the days left counted from `now`.
pub fn listing_at(store: &Store, now: i64) -> Listing {
    let (revoked, unreadable) = store.revoked();
    let mut ignored = revoked.ignored.clone();
    let mut ids = store.licence_ids();
    ids.dedup();
    let mut licences = Vec::new();
    for id in ids {
        let tokens = match store.licence_tokens(&id, None) {
            Ok(t) => t,
            Err(e) => {
                licences.push(CachedLicence {
                    text: format!("unusable: {e}"),
                    id,
                    usable: false,
                });
                continue;
            }
        };
        for token in tokens {
            let entry = match verify_signed_by(&token.text, store.roots(), &revoked) {
                Ok((c, certified)) => {
                    ignored.extend(revoked.ignored_for_licence(&certified.key.kid, &c.jti));
                    let days = c.expires().map_or(0, |exp| (exp - now).div_euclid(86_400));
                    let left = match days {
                        d if d < 0 => " (expired)".to_owned(),
                        d if d <= 7 => format!(" ({d} days left: renew it)"),
                        d => format!(" ({d} days left)"),
                    };
                    CachedLicence {
                        text: format!(
                            "{} - {} ({}), until {}{left}, uses {}; issued by {}",
                            c.track.artists.join(", "),
                            c.track.title,
                            c.track.isrc,
                            c.exp.get(..10).unwrap_or(&c.exp),
                            c.uses
                                .iter()
                                .map(|u| u.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            certified.certificate.describe()
                        ),
                        id: id.clone(),
                        usable: true,
                    }
                }
                Err(e) => CachedLicence {
                    text: format!("unusable: {e}"),
                    id: id.clone(),
                    usable: false,
                },
            };
            licences.push(entry);
        }
    }
    Listing {
        licences,
        unreadable,
        ignored,
    }
}
