//! Licences: signed permission from a rights holder to run an AI model on their track.
//!
//! - [`claims`]: what a licence says, and the validation of every field.
//! - [`token`]: PASETO v4.public signing and verification, keys and key ids.
//! - [`store`]: the user's data folder (trusted keys, cached licences, revocations, clock).
//! - [`policy`]: the decision, with its reason in words.
//! - [`gate`]: enforcement: a background monitor writes one atomic the audio thread reads,
//!   latched so a lapse only takes effect at a transport stop or reactivation.
//! - [`enforce`]: what a model needs, the one check the plugin and `refrain render` share,
//!   and the plugin's running enforcement.
//! - [`fingerprint`]: is the input the licensed recording? (Chromaprint, on a background
//!   thread.)
//! - [`issue`]: what rights holders run: key generation, issuing, revocation.

pub mod claims;
pub mod enforce;
pub mod fingerprint;
pub mod gate;
pub mod issue;
pub mod policy;
pub mod store;
pub mod token;

use claims::{format_date, ClaimError, Use};

/// Every way a licence can fail, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    #[error("no track is loaded: load the licence for the track you are covering or remixing")]
    NoTrackLoaded,
    #[error("licence `{0}` is not in this machine's licence folder")]
    NotFound(String),
    #[error("the licence is unreadable: {0}")]
    Malformed(String),
    #[error("the licence is signed by a key this machine does not trust ({0})")]
    UnknownKey(String),
    #[error("signature does not verify: the licence was altered or not signed by its issuer")]
    BadSignature,
    #[error("the licence's contents are unreadable: {0}")]
    Payload(String),
    #[error("the licence has an invalid field: {0}")]
    Claims(ClaimError),
    #[error("the licence is for `{0}`, not for Refrain")]
    WrongAudience(String),
    #[error("the licence names issuer `{claimed}` but is signed by the key of `{key_issuer}`")]
    IssuerMismatch { claimed: String, key_issuer: String },
    #[error("the issuer's signing key {0} has been revoked")]
    KeyRevoked(String),
    #[error("licence {0} has been revoked by its issuer")]
    LicenceRevoked(String),
    #[error("the licence is not valid until {}", format_date(*from))]
    NotYetValid { from: i64 },
    #[error("expired on {}", format_date(*on))]
    Expired { on: i64 },
    #[error("model `{0}` is not covered by the licence")]
    ModelNotCovered(String),
    #[error("the licence does not allow `{0}` use")]
    UseNotAllowed(Use),
    #[error("the licence is limited to {allowed}; {}", match here { Some(t) => format!("this machine is set to {t}"), None => "set your territory (REFRAIN_TERRITORY or settings.toml)".to_owned() })]
    Territory {
        here: Option<String>,
        allowed: String,
    },
    #[error("the clock has been turned back (Refrain last saw {}); set it right to use licences", claims::format_time(*last_seen))]
    ClockTurnedBack { last_seen: i64 },
    #[error("input does not match the licensed track")]
    TrackMismatch,
    #[error("key: {0}")]
    Key(String),
    #[error("licence folder: {0}")]
    Store(String),
}

impl From<ClaimError> for LicenceError {
    fn from(e: ClaimError) -> Self {
        LicenceError::Claims(e)
    }
}

#[cfg(test)]
mod tests;
