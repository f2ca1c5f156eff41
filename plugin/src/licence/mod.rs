//! Licences: signed permission from a rights holder to run an AI model on their track.
//!
//! - [`claims`]: what a licence says, and the validation of every field.
//! - [`token`]: PASETO v4.public signing and verification, keys and key ids.
//! - [`roots`]: the registry roots compiled into the build (the only trust there is).
//! - [`certificate`]: the registry's certificates of rights holders' keys, and their scope.
//! - [`revocation`]: the registry's and the issuers' revocation lists, with sequences.
//! - [`freshness`]: the registry's signed receipts that keep deletable state honest.
//! - [`device`]: this machine's key pairs; licences are bound to devices.
//! - [`registry`]: what the registry runs: its root, certifying, revoking, receipts.
//! - [`store`]: the user's data folder (device keys, cached licences, revocations, receipt,
//!   clock).
//! - [`policy`]: the decision, with its reason in words.
//! - [`gate`]: enforcement: a background monitor writes one atomic the audio thread reads,
//!   latched so a lapse only takes effect at a transport stop or reactivation.
//! - [`enforce`]: what a model needs, the one check the plugin and `refrain render` share,
//!   and the plugin's running enforcement.
//! - [`fingerprint`]: is the input the licensed recording? (Chromaprint, on a background
//!   thread.)
//! - [`allowance`]: the pending allowance: unmatched input a licence lets through a day,
//!   in a book signed with the device key.
//! - [`transforms`]: the pitch, tempo and speed changes the track check undoes before it gives
//!   up on a window.
//! - [`issue`]: what rights holders run: key generation, issuing, revocation.

pub mod allowance;
pub mod certificate;
pub mod claims;
pub mod device;
pub mod enforce;
pub mod fingerprint;
pub mod freshness;
pub mod gate;
pub mod issue;
pub mod policy;
pub mod registry;
pub mod revocation;
pub mod roots;
pub mod sealing;
pub mod store;
pub mod token;
pub mod transforms;
pub mod tuning;
pub mod usage;

pub use certificate::CertificateError;
pub use device::DeviceError;
pub use freshness::{FreshnessError, ReceiptError};
pub use issue::{SignError, SpecError};
pub use policy::{TermsError, VerifyError};
pub use revocation::RevocationError;
pub use store::{FileProblem, StoreError, UnreadableFile};
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
    #[error(
        "input does not match the licensed track, and this licence's allowance for unmatched \
         input ({seconds} s a day) is spent: play the licensed track"
    )]
    AllowanceSpent { seconds: u32 },
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
