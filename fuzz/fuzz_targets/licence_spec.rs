//! A licence description (TOML) as a rights holder writes it for `refrain licence issue`:
//! [`LicenceSpec::from_toml`], then [`LicenceSpec::to_claims`]. What becomes claims must sign
//! and verify back to the same claims. Files the description names (model manifests, the
//! licensed recording) are not followed: those readers have targets of their own, and a
//! fuzzer must not read this machine's files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refrain::licence::issue::{sign_licence, LicenceSpec, SignError};
use refrain::licence::policy;
use refrain::licence::revocation::Revoked;
use refrain_fuzz::{roots, signing_key, ISSUER, NOW};
use std::path::Path;

fuzz_target!(|text: &str| {
    let mut spec = match LicenceSpec::from_toml(text) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    spec.track.audio = None;
    for m in &mut spec.models {
        // A manifest stands for its model's id and hash.
        if m.manifest.take().is_some() {
            m.id.get_or_insert_with(|| "fuzz-model".into());
            m.sha256.get_or_insert_with(|| "0".repeat(64));
        }
    }
    let device = ["0123456789abcdef0123456789abcdef".to_owned()];
    let claims = match spec.to_claims(ISSUER, &device, Path::new("/nonexistent"), None, NOW) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // The fuzzing key's certificate covers the prefix GBAYE: other tracks are refused at
    // signing, as an issuer's tool refuses them.
    let token = match sign_licence(signing_key(), &claims) {
        Err(SignError::OutOfScope { .. }) => return,
        r => r.expect("issued claims sign"),
    };
    let verified = policy::verify(&token, roots(), &Revoked::default())
        .expect("an issued licence verifies");
    assert_eq!(verified, claims);
});
