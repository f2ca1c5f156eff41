//! What the fuzz targets share: the issuer key that signed the `licence_token` seeds, certified
//! by the development root (so a mutated token can get as far as its signature check, and a
//! fuzzed payload can be signed and go through verification whole), the roots that trust it, a
//! fixed clock, and a scratch file for the readers that take a path.

use refrain::licence::certificate::{self, Certificate, Party, Scope};
use refrain::licence::roots::Roots;
use refrain::licence::token::{KeyFile, SigningKey};
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

/// The fuzzing key, read once per process, with its certificate from the development root
/// (for the ISRC prefix GBAYE, valid 2026-01-01 to 2028-12-31; a fixed certificate id, so the
/// certificate, and the seeds that carry it, are the same on every run).
pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SigningKey::from_file(&key_file()).expect("the fuzzing key reads");
        let cert = Certificate {
            cid: "fuzz-certificate-1".into(),
            party: Party {
                name: ISSUER.into(),
                ipi: vec![],
                isni: vec![],
            },
            key: key.issuer_key().to_file().public,
            scope: Scope {
                isrc_prefixes: vec!["GBAYE".into()],
                ..Scope::default()
            },
            iat: "2026-01-01T00:00:00Z".into(),
            nbf: "2026-01-01T00:00:00Z".into(),
            exp: "2028-12-31T00:00:00Z".into(),
        };
        let root = refrain::licence::registry::development_root_key().expect("the root");
        let cert = certificate::sign_certificate(&root, &cert).expect("certifies");
        key.with_certificate(&cert)
    })
}

/// The development root, as the one root this machine trusts.
pub fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let root = refrain::licence::registry::development_root_key().expect("the root");
        Roots::with(vec![root.issuer_key()])
    })
}

/// Writes `bytes` to this process's scratch file `name` and returns its path. One file per
/// process and name, rewritten for every input, so parallel runs never share one.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("refrain-fuzz-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("the scratch file is writable");
    path
}
