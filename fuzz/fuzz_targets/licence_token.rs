//! A licence or revocation token as it arrives from a file, the data folder or the host's
//! saved state: its structure and footer, the claims read without trusting them (the labels the
//! editor shows, `refrain licence show`), certificate and signature verification against the
//! roots, claim
//! validation and the terms. Text that starts like JSON is also signed with the trusted key as a
//! payload, so claims the fuzzer writes go through verification, validation and the terms whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use refrain::licence::claims::{Claims, Use};
use refrain::licence::gate::LoadedTrack;
use refrain::licence::policy::{self, Requirement};
use refrain::licence::revocation::{self, Revoked};
use refrain::licence::token::{self, Kind};
use refrain_fuzz::{roots, signing_key, NOW};
use std::sync::OnceLock;

/// What the seeds' model needs: the `test-half` model, for remix and live use.
fn requirement() -> Requirement {
    Requirement {
        model_id: "test-half".into(),
        model_sha256: "001748f598fa87dce75389407f70b6b69de1d4fe2304f951329ff59869b6f6a9".into(),
        uses: vec![Use::Remix, Use::Live],
    }
}

/// The seeds' revocation list: the cover licence withdrawn by the key that signed it.
fn revoked() -> &'static Revoked {
    static REVOKED: OnceLock<Revoked> = OnceLock::new();
    REVOKED.get_or_init(|| {
        let mut r = Revoked::default();
        r.licences
            .insert((signing_key().kid.clone(), "fuzz-cover-1".into()));
        r
    })
}

/// The whole check on verified claims: they validate, and the terms give a verdict.
fn check_verified(claims: &Claims) {
    claims
        .validate()
        .expect("verified claims have been validated");
    let verdict = policy::check_terms(claims, &requirement(), NOW);
    assert!(!verdict.reason.is_empty());
    let _ = claims.describe();
}

fuzz_target!(|text: &str| {
    let keys = roots();
    // Unverified: what `refrain licence show` and the editor's labels read.
    if let Ok(unverified) = token::parse(text) {
        if let Ok(claims) = serde_json::from_slice::<Claims>(unverified.untrusted_payload()) {
            let _ = claims.validate();
            let _ = claims.describe();
        }
    }
    let _ = LoadedTrack::from_token("fuzz", text);
    let _ = LoadedTrack::parse(text);
    match policy::verify(text, keys, revoked()) {
        Ok(claims) => check_verified(&claims),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(signed) = revocation::verify_revocations(text, keys) {
        Revoked::default().add(&signed);
    }

    // A payload the trusted key signed: only the claims and the terms stand in the way.
    if !text.trim_start().starts_with('{') {
        return;
    }
    let key = signing_key();
    let licence = key
        .sign(Kind::Licence, text.as_bytes())
        .expect("any payload signs");
    match policy::verify(&licence, keys, revoked()) {
        Ok(claims) => check_verified(&claims),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The kinds are bound into the signature: a licence never passes for a revocation list.
    assert!(revocation::verify_revocations(&licence, keys).is_err());
    let list = key
        .sign(Kind::Revocations, text.as_bytes())
        .expect("any payload signs");
    if let Ok(signed) = revocation::verify_revocations(&list, keys) {
        assert_eq!(signed.kid, key.kid);
        Revoked::default().add(&signed);
    }
});
