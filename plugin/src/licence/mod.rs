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

pub use issue::{SignError, SpecError};
pub use policy::{TermsError, VerifyError};
pub use store::{FileProblem, RevocationError, StoreError, UnreadableFile};
pub use token::{KeyFileError, TokenError};

/// Why a licence does not let a model run, in words a user can act on: the policy decision
/// ([`policy::evaluate`]) composes the error of the step that refused, and the fingerprint
/// check adds its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    #[error("no track is loaded: load the licence for the track you are covering or remixing")]
    NoTrackLoaded,
    /// The licence folder: the licence is not cached, or the clock was turned back.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token: signature, key, claims, revocation.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Time, model, use and territory.
    #[error(transparent)]
    Terms(#[from] TermsError),
    #[error("input does not match the licensed track")]
    TrackMismatch,
}

#[cfg(test)]
mod tests;
