//! What the fuzz targets share: the issuer key that signed the `licence_token` seeds (so a
//! mutated token can get as far as its signature check, and a fuzzed payload can be signed and
//! go through verification whole), a fixed clock, and a scratch file for the readers that
//! take a path.

use refrain::licence::token::{IssuerKey, KeyFile, SigningKey};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The issuer the fuzzing key belongs to.
pub const ISSUER: &str = "Fuzz Issuer";

/// "Now" for every target (2026-12-01): seeds stay inside their validity, and a crash
/// reproduces on any day.
pub const NOW: i64 = 1_796_083_200;

/// A key made for fuzzing (`refrain licence keygen --issuer "Fuzz Issuer"`); it signs nothing
/// but the seeds under `corpus/licence_token/`.
fn key_file() -> KeyFile {
    KeyFile {
        issuer: ISSUER.into(),
        kid: "k4.pid.PXIaHvnD5lmnSGnMSNJHyKuCtKQSk5WNTn8fF8RSt985".into(),
        public: "k4.public.bhe9kZOLK2Nc6Df6JR32mTaGKsyWQhxO9PSJ9iS1j88".into(),
        secret: Some(
            "k4.secret.qFMfmNobzzsQAFt7PdmNmCiWQBVDG0i5lvWMApSMjFNuF72Rk4srY1zoN_olHfaZNoYqzJZCHE709In2JLWPzw"
                .into(),
        ),
    }
}

/// The fuzzing key, read once per process.
pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_file(&key_file()).expect("the fuzzing key reads"))
}

/// The fuzzing key as the one key this machine trusts.
pub fn trusted_keys() -> &'static [IssuerKey] {
    static KEYS: OnceLock<[IssuerKey; 1]> = OnceLock::new();
    KEYS.get_or_init(|| [signing_key().issuer_key()])
}

/// Writes `bytes` to this process's scratch file `name` and returns its path. One file per
/// process and name, rewritten for every input, so parallel runs never share one.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("refrain-fuzz-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("the scratch file is writable");
    path
}
