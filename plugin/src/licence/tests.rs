//! Licence tests: claims, tokens, the store, the policy, the gate and the fingerprint.

use super::claims::{self, Claims, ModelGrant, Share, Track, Use, AUDIENCE};
use super::fingerprint::{self, LiveMatcher, TrackMatch};
use super::gate::{Latch, LicenceGate, LicenceMonitor, LoadedTrack, MonitorSpec};
use super::issue::{self, LicenceSpec};
use super::policy::{self, LicenceState, ManualClock, Requirement, Verdict};
use super::registry::Registry;
use super::revocation::{IgnoredRevocation, RevocationError, RevocationList};
use super::store::{FileProblem, Store, StoreError};
use super::token::{self, KeyFileError, Kind, SigningKey, TokenError};
use super::{LicenceError, UnreadableFile, VerifyError};
use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-21T00:00:00Z
pub(super) const NOW: i64 = 1_795_219_200;
pub(super) const DAY: i64 = 86_400;
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub(super) fn claims_for(issuer: &str) -> Claims {
    Claims {
        iss: issuer.into(),
        sub: "DJ Example".into(),
        aud: AUDIENCE.into(),
        jti: "lic-0001".into(),
        iat: claims::format_time(NOW - DAY),
        nbf: claims::format_time(NOW - DAY),
        exp: claims::format_time(NOW + 30 * DAY),
        grace_days: 7,
        track: Track {
            isrc: "GBAYE2600001".into(),
            title: "Northern Lights".into(),
            artists: vec!["Aurora Vale".into()],
            release: "Northern Lights (Single)".into(),
            iswc: Some("T-034.524.680-1".into()),
            fingerprint: Some(fingerprint::encode(&(1..=40).collect::<Vec<u32>>())),
            loudness_dbfs: None,
            tuning_cents: None,
            fingerprint_left: None,
            fingerprint_right: None,
            stems: Vec::new(),
        },
        uses: vec![Use::Remix, Use::Live],
        models: vec![ModelGrant {
            id: "refrain.remix".into(),
            sha256: SHA.into(),
        }],
        territories: vec!["WORLD".into()],
        licensee_territory: None,
        split: vec![
            Share {
                party: "Aurora Vale".into(),
                role: "artist".into(),
                ipi: Some("00123456789".into()),
                share_bp: 6_000,
            },
            Share {
                party: "Northern Records".into(),
                role: "label".into(),
                ipi: None,
                share_bp: 4_000,
            },
        ],
        devices: vec![DEVICE.into()],
        max_offline_days: None,
        sealed_keys: vec![],
    }
}

/// The fixture's device (its key file is written into every fixture's store, so licences can
/// be bound to it before the store exists).
pub(super) const DEVICE: &str = "43078701e18fef369f7294920d0ef6e2";
const DEVICE_FILE: &str = r#"id = "43078701e18fef369f7294920d0ef6e2"
ed25519_secret = "k4.secret.jjRq01CG3QtFY0lz0JFGLB7tuP22VdJ_9irlQ26rQLMAXLSPUDVhWy49qPUnNhej4Jwr8FiGPu4AaydWrusIJQ"
x25519_secret = "f47857388a29d04b5ba1cc4bd5784d18eaeecc93044528f7a5851e493fd5010d"
"#;

pub(super) fn requirement() -> Requirement {
    Requirement {
        model_id: "refrain.remix".into(),
        model_sha256: SHA.into(),
        uses: vec![Use::Remix],
    }
}

/// A licence folder that trusts the development root (whatever this build's feature), the
/// development registry, and Northern Records certified by it for its prefix GBAYE.
pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) store: Store,
    pub(super) key: SigningKey,
    pub(super) registry: Registry,
}

impl Fixture {
    /// A key for `name`, certified by the fixture's registry for ISRC prefix `prefix`.
    pub(super) fn certified(&self, name: &str, prefix: &str) -> SigningKey {
        certified_with(&self.registry, name, prefix)
    }
}

pub(super) fn certified_with(registry: &Registry, name: &str, prefix: &str) -> SigningKey {
    crate::testkit::certified_issuer(registry, name, prefix, NOW)
}

pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, registry) = crate::testkit::development_store(dir.path());
    std::fs::create_dir_all(store.root().join("device")).unwrap();
    std::fs::write(store.root().join("device/device.toml"), DEVICE_FILE).unwrap();
    assert_eq!(store.device().unwrap().id, DEVICE);
    let key = certified_with(&registry, "Northern Records", "GBAYE");
    Fixture {
        _dir: dir,
        store,
        key,
        registry,
    }
}

pub(super) fn sign(key: &SigningKey, c: &Claims) -> String {
    issue::sign_licence(key, c).unwrap()
}

pub(super) fn verify_with(f: &Fixture, token: &str) -> Result<Claims, VerifyError> {
    let (revoked, problems) = f.store.revoked();
    assert!(problems.is_empty(), "{problems:?}");
    policy::verify(token, f.store.roots(), &revoked)
}

#[test]
fn a_signed_licence_verifies_and_keeps_every_claim() {
    let f = fixture();
    let c = claims_for("Northern Records");
    let t = sign(&f.key, &c);
    assert!(t.starts_with("v4.public."));
    assert_eq!(verify_with(&f, &t).unwrap(), c);
    let v = policy::check_terms(&c, &requirement(), NOW);
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
    assert!(v.reason.contains("Northern Lights"), "{}", v.reason);
}

#[test]
fn every_claim_is_validated() {
    let good = claims_for("I");
    good.validate().unwrap();
    type Edit = fn(&mut Claims);
    let cases: Vec<(&str, Edit)> = vec![
        ("iss", |c| c.iss = " ".into()),
        ("sub", |c| c.sub = String::new()),
        ("jti", |c| c.jti = "../etc".into()),
        ("iat", |c| c.iat = "yesterday".into()),
        ("nbf", |c| c.nbf = c.exp.clone()),
        ("iat", |c| c.iat = claims::format_time(NOW + 400 * DAY)),
        ("grace_days", |c| c.grace_days = 400),
        ("track.isrc", |c| c.track.isrc = "GB-AYE-26-00001".into()),
        ("track.isrc", |c| c.track.isrc = "gbaye2600001".into()),
        ("track.isrc", |c| c.track.isrc = "GBAYE26000A1".into()),
        ("track.title", |c| c.track.title = String::new()),
        ("track.artists", |c| c.track.artists.clear()),
        ("track.iswc", |c| {
            c.track.iswc = Some("T-034.524.680-2".into())
        }),
        ("track.iswc", |c| c.track.iswc = Some("T-0345246801".into())),
        ("track.fingerprint", |c| {
            c.track.fingerprint = Some("not base64!".into())
        }),
        ("track.fingerprint", |c| {
            c.track.fingerprint = Some("AAA=".into())
        }),
        ("uses", |c| c.uses.clear()),
        ("models", |c| c.models.clear()),
        ("models[0].sha256", |c| c.models[0].sha256 = "abc".into()),
        ("models[0].sha256", |c| {
            c.models[0].sha256 = SHA.to_uppercase()
        }),
        ("territories", |c| c.territories = vec!["gb".into()]),
        ("territories", |c| c.territories.clear()),
        ("split[0].role", |c| c.split[0].role = "manager".into()),
        ("split[0].ipi", |c| c.split[0].ipi = Some("12AB".into())),
        ("split[0].share_bp", |c| {
            c.split[0].share_bp = 0;
            c.split[1].share_bp = 10_000;
        }),
        ("split", |c| c.split[0].share_bp = 5_999),
        ("split", |c| c.split[0].share_bp = u32::MAX),
        ("split", |c| c.split.clear()),
    ];
    for (field, edit) in cases {
        let mut c = good.clone();
        edit(&mut c);
        let err = c.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
    assert_eq!(claims::normalise_isrc("gb-aye-26-00001"), "GBAYE2600001");
    claims::check_iswc("T-034.524.680-1").unwrap();
}

#[test]
fn time_not_before_valid_grace_and_expired() {
    let c = claims_for("I");
    let req = requirement();
    let exp = c.expires().unwrap();
    let at = |t: i64| policy::check_terms(&c, &req, t);
    let early = at(NOW - 2 * DAY);
    assert_eq!(early.state, LicenceState::Invalid);
    assert!(early
        .reason
        .starts_with("the licence is not valid until 2026-11-20"));
    assert_eq!(at(NOW).state, LicenceState::Valid);
    assert!(at(exp - 3 * DAY).reason.contains("expires in 3 days"));
    let grace = at(exp + DAY);
    assert_eq!(grace.state, LicenceState::Grace);
    assert!(grace.state.allows());
    assert!(
        grace.reason.contains("expired on 2026-12-21"),
        "{}",
        grace.reason
    );
    let lapsed = at(exp + 7 * DAY);
    assert_eq!(lapsed.state, LicenceState::Invalid);
    assert_eq!(lapsed.reason, "expired on 2026-12-21");
}

#[test]
fn model_and_use_are_enforced() {
    let c = claims_for("I");
    let mut req = requirement();
    req.model_sha256 = SHA.replace('0', "f");
    assert_eq!(
        policy::check_terms(&c, &req, NOW).reason,
        "model `refrain.remix` is not covered by the licence"
    );
    let mut req = requirement();
    req.uses = vec![Use::Cover];
    assert_eq!(
        policy::check_terms(&c, &req, NOW).reason,
        "the licence does not allow `cover` use"
    );
    let mut c2 = c.clone();
    c2.uses = vec![Use::Remix];
    let mut req = requirement();
    req.uses = vec![Use::Remix, Use::Live];
    assert_eq!(
        policy::check_terms(&c2, &req, NOW).reason,
        "the licence does not allow `live` use"
    );
}

/// The territory is the issuer's signed statement of where the licensee is: the decision has
/// no territory input (`Requirement` carries none) and reads nothing from the machine, so
/// `REFRAIN_TERRITORY`, settings.toml or the locale cannot change it (the CLI test
/// `the_environment_does_not_decide_the_territory` runs the binary with them set).
#[test]
fn a_territory_limit_is_checked_against_the_licensee_territory_the_issuer_signed() {
    let req = requirement();
    let mut c = claims_for("I");
    // Worldwide: no licensee territory needed.
    assert_eq!(c.licensee_territory, None);
    assert!(policy::check_terms(&c, &req, NOW).state.allows());

    c.territories = vec!["GB".into(), "IE".into()];
    let v = policy::check_terms(&c, &req, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
    assert_eq!(
        v.reason,
        "the licence is limited to GB, IE but names no licensee territory, so its territory \
         limit cannot be checked; ask the issuer to state it"
    );
    c.licensee_territory = Some("GB".into());
    c.validate().unwrap();
    let v = policy::check_terms(&c, &req, NOW);
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
    c.licensee_territory = Some("US".into());
    let v = policy::check_terms(&c, &req, NOW);
    assert_eq!(v.state, LicenceState::Invalid);
    assert_eq!(
        v.reason,
        "the licence is limited to GB, IE; its licensee is in US"
    );

    for bad in ["gb", "WORLD", "GBR", ""] {
        c.licensee_territory = Some(bad.into());
        assert_eq!(c.validate().expect_err(bad).field, "licensee_territory");
    }
}

#[test]
fn the_clock_turned_back_does_not_extend_a_licence() {
    let f = fixture();
    let t = sign(&f.key, &claims_for("Northern Records"));
    let id = f.store.install_licence(&t).unwrap().id;
    let clock = ManualClock::at(NOW + 20 * DAY);
    let v = policy::evaluate(&f.store, Some(&id), None, &requirement(), &clock);
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
    // Small corrections are tolerated.
    clock.set(NOW + 20 * DAY - 60);
    assert!(
        policy::evaluate(&f.store, Some(&id), None, &requirement(), &clock)
            .state
            .allows()
    );
    // Turned back ten days: refused, and the last time seen does not move back.
    clock.set(NOW + 10 * DAY);
    let v = policy::evaluate(&f.store, Some(&id), None, &requirement(), &clock);
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(
        v.reason.contains("clock has been turned back"),
        "{}",
        v.reason
    );
    assert!(v.reason.contains("2026-12-11"), "{}", v.reason);
    assert!(f.store.check_clock(NOW + 10 * DAY).is_err());
    clock.set(NOW + 21 * DAY);
    assert!(
        policy::evaluate(&f.store, Some(&id), None, &requirement(), &clock)
            .state
            .allows()
    );
}

#[test]
fn revocation_of_a_key_and_of_a_licence() {
    let f = fixture();
    let t = sign(&f.key, &claims_for("Northern Records"));
    verify_with(&f, &t).unwrap();

    let list = RevocationList {
        iss: "Northern Records".into(),
        seq: 1,
        iat: claims::format_time(NOW),
        revoked_keys: vec![],
        revoked_licences: vec!["lic-0001".into()],
    };
    let signed = issue::sign_revocations(&f.key, &list).unwrap();
    f.store.install_revocations(&signed).unwrap();
    assert_eq!(
        verify_with(&f, &t).unwrap_err(),
        VerifyError::LicenceRevoked {
            id: "lic-0001".into()
        }
    );

    // A list with a higher sequence that withdraws the key itself replaces the older one.
    let list2 = RevocationList {
        seq: 2,
        iat: claims::format_time(NOW + 60),
        revoked_keys: vec![f.key.kid.clone()],
        revoked_licences: vec![],
        ..list.clone()
    };
    f.store
        .install_revocations(&issue::sign_revocations(&f.key, &list2).unwrap())
        .unwrap();
    assert_eq!(
        verify_with(&f, &t).unwrap_err(),
        VerifyError::KeyRevoked {
            kid: f.key.kid.clone()
        }
    );
    // The older list is refused now, and so is another list reusing sequence 2.
    assert_eq!(
        f.store.install_revocations(&signed).unwrap_err(),
        StoreError::NewerRevocations {
            installed: 2,
            offered: 1
        }
    );
    let reuse = RevocationList {
        revoked_keys: vec![],
        ..list2
    };
    assert_eq!(
        f.store
            .install_revocations(&issue::sign_revocations(&f.key, &reuse).unwrap())
            .unwrap_err(),
        StoreError::SameSequence { seq: 2 }
    );
}

#[test]
fn an_issuer_cannot_revoke_another_issuers_key_or_licences() {
    let f = fixture();
    let other = f.certified("Other Label", "USXYZ");
    let t = sign(&f.key, &claims_for("Northern Records"));
    let list = RevocationList {
        iss: "Other Label".into(),
        seq: 1,
        iat: claims::format_time(NOW),
        revoked_keys: vec![f.key.kid.clone()],
        revoked_licences: vec!["lic-0001".into()],
    };
    // The issuer's tool refuses to sign another key's withdrawal; signed anyway, it is ignored.
    assert!(matches!(
        issue::sign_revocations(&other, &list),
        Err(issue::SignError::OtherKey { .. })
    ));
    f.store
        .install_revocations(
            &other
                .sign(Kind::Revocations, &serde_json::to_vec(&list).unwrap())
                .unwrap(),
        )
        .unwrap();
    verify_with(&f, &t).unwrap();
    // A list claiming to be from Northern Records but signed by Other Label is refused.
    let forged = RevocationList {
        iss: "Northern Records".into(),
        ..list
    };
    let forged = other
        .sign(Kind::Revocations, &serde_json::to_vec(&forged).unwrap())
        .unwrap();
    assert!(matches!(
        f.store.install_revocations(&forged),
        Err(StoreError::Revocations(
            RevocationError::IssuerMismatch { .. }
        ))
    ));
}

#[test]
fn wrong_audience_and_issuer_mismatch() {
    let f = fixture();
    let mut c = claims_for("Northern Records");
    c.aud = "another-plugin".into();
    let t = sign(&f.key, &c);
    assert_eq!(
        verify_with(&f, &t).unwrap_err(),
        VerifyError::WrongAudience {
            aud: "another-plugin".into()
        }
    );

    // A certified party signing in another's name: refused by the tool, and where it is
    // signed anyway, by every verifier.
    let other = f.certified("Other Label", "GBAYE");
    assert!(matches!(
        issue::sign_licence(&other, &claims_for("Northern Records")),
        Err(issue::SignError::IssuerMismatch { .. })
    ));
    let payload = serde_json::to_vec(&claims_for("Northern Records")).unwrap();
    let t = other.sign(Kind::Licence, &payload).unwrap();
    assert!(matches!(
        verify_with(&f, &t),
        Err(VerifyError::IssuerMismatch { .. })
    ));
}

fn body(token: &str) -> (Vec<u8>, &str) {
    let parts: Vec<&str> = token.splitn(4, '.').collect();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    (b, parts[3])
}

fn rebuild(b: &[u8], footer: &str) -> String {
    format!(
        "v4.public.{}.{footer}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

#[test]
fn a_payload_edited_by_one_byte_does_not_verify() {
    let f = fixture();
    let t = sign(&f.key, &claims_for("Northern Records"));
    let (b, footer) = body(&t);
    assert_eq!(rebuild(&b, footer), t);
    // Every byte of the payload and the signature, one at a time.
    for i in (0..b.len()).step_by(7) {
        let mut edited = b.clone();
        edited[i] ^= 0x01;
        let e = verify_with(&f, &rebuild(&edited, footer)).unwrap_err();
        assert_eq!(e, VerifyError::Token(TokenError::BadSignature), "byte {i}");
    }
    // The share edited in the JSON, as someone would try.
    let at = b
        .windows(4)
        .position(|w| w == b"6000")
        .expect("share in payload");
    let mut forged = b.clone();
    forged[at] = b'9';
    assert_eq!(
        verify_with(&f, &rebuild(&forged, footer)).unwrap_err(),
        VerifyError::Token(TokenError::BadSignature)
    );
    assert!(
        LicenceError::from(VerifyError::Token(TokenError::BadSignature))
            .to_string()
            .starts_with("signature does not verify")
    );
}

#[test]
fn a_revocation_list_never_passes_for_a_licence() {
    let f = fixture();
    let payload = serde_json::to_vec(&claims_for("Northern Records")).unwrap();
    let t = f.key.sign(Kind::Revocations, &payload).unwrap();
    assert_eq!(
        verify_with(&f, &t).unwrap_err(),
        VerifyError::Token(TokenError::BadSignature)
    );
}

#[test]
fn truncated_huge_and_random_tokens_are_refused_cleanly() {
    let f = fixture();
    let t = sign(&f.key, &claims_for("Northern Records"));
    for n in (0..t.len()).step_by(3) {
        assert!(verify_with(&f, &t[..n]).is_err(), "prefix {n}");
    }
    let huge = format!("v4.public.{}", "A".repeat(10 * 1024 * 1024));
    let e = verify_with(&f, &huge).unwrap_err();
    assert_eq!(
        e,
        VerifyError::Token(TokenError::TooLarge {
            bytes: 10_485_770,
            max: token::MAX_TOKEN_BYTES
        })
    );
    assert!(e.to_string().contains("10485770 bytes"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.paseto");
    std::fs::write(&p, &huge).unwrap();
    assert!(matches!(
        super::store::read_token_file(&p),
        Err(StoreError::TokenTooLarge {
            bytes: 10_485_770,
            ..
        })
    ));
    for junk in [
        "",
        "v4.public.",
        "v4.public..",
        "v3.public.AAAA",
        "v4.local.AAAA.BBBB",
    ] {
        assert!(verify_with(&f, junk).is_err(), "{junk}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> &'static (Fixture, String) {
        static F: std::sync::OnceLock<(Fixture, String)> = std::sync::OnceLock::new();
        F.get_or_init(|| {
            let f = fixture();
            let t = sign(&f.key, &claims_for("Northern Records"));
            (f, t)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn random_bytes_never_panic_or_verify(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (f, _) = keys();
            let s = String::from_utf8_lossy(&bytes);
            prop_assert!(verify_with(f, &s).is_err());
            let prefixed = format!("v4.public.{s}");
            prop_assert!(verify_with(f, &prefixed).is_err());
            let _ = f.store.install_licence(&prefixed);
            let _ = LoadedTrack::parse(&s);
        }

        #[test]
        fn any_mutation_of_a_valid_token_is_refused(pos in 0usize..4096, ch in any::<char>()) {
            let (f, t) = keys();
            let mut chars: Vec<char> = t.chars().collect();
            let i = pos % chars.len();
            prop_assume!(chars[i] != ch);
            chars[i] = ch;
            let m: String = chars.into_iter().collect();
            prop_assert!(verify_with(f, &m).is_err());
        }

        #[test]
        fn random_payloads_signed_by_a_trusted_key_never_panic(json in "\\PC{0,400}") {
            let (f, _) = keys();
            if let Ok(t) = f.key.sign(Kind::Licence, json.as_bytes()) {
                prop_assert!(verify_with(f, &t).is_err());
            }
        }
    }
}

#[test]
fn the_store_caches_verified_licences_by_key_and_id() {
    let f = fixture();
    let t = sign(&f.key, &claims_for("Northern Records"));
    let cached = f.store.install_licence(&t).unwrap();
    assert_eq!(
        (cached.id.as_str(), cached.kid.as_str()),
        ("lic-0001", f.key.kid.as_str())
    );
    assert_eq!(f.store.licence_token("lic-0001").unwrap(), t);
    assert_eq!(f.store.licence_ids(), vec!["lic-0001".to_owned()]);
    assert_eq!(
        f.store.licence_token("lic-0002").unwrap_err(),
        StoreError::NotFound {
            id: "lic-0002".into()
        }
    );
    assert!(f.store.licence_token("../keys/x").is_err());
    let clock = ManualClock::at(NOW);
    let v = policy::evaluate(&f.store, None, None, &requirement(), &clock);
    assert_eq!(v.reason, LicenceError::NoTrackLoaded.to_string());
    let v = policy::evaluate(&f.store, Some("lic-0001"), None, &requirement(), &clock);
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
}

/// Finding 7 of the consent issue: the cache was keyed by licence id alone and cached tokens
/// before verifying them, so an untrusted token with the same id replaced a valid licence.
#[test]
fn a_token_with_the_same_id_never_replaces_a_valid_licence() {
    let f = fixture();
    let valid = sign(&f.key, &claims_for("Northern Records"));
    f.store.install_licence(&valid).unwrap();
    let clock = ManualClock::at(NOW);
    let allowed = |kid: Option<&str>| {
        policy::evaluate(&f.store, Some("lic-0001"), kid, &requirement(), &clock)
            .state
            .allows()
    };

    // An uncertified key's token with the same id is refused before it is cached.
    let stranger = SigningKey::generate("Northern Records").unwrap();
    let payload = serde_json::to_vec(&claims_for("Northern Records")).unwrap();
    let forged = stranger.sign(Kind::Licence, &payload).unwrap();
    assert!(matches!(
        f.store.install_licence(&forged),
        Err(StoreError::Verify(VerifyError::Certificate(_)))
    ));
    // A tampered copy of the valid token too.
    let tampered = format!("{}A", &valid[..valid.len() - 1]);
    assert!(f.store.install_licence(&tampered).is_err());
    assert_eq!(f.store.licence_token("lic-0001").unwrap(), valid);
    assert!(allowed(None));

    // Another certified label may use the same id for its own licence (ids are the issuer's
    // to choose): both are kept, each under its key, and neither replaces the other.
    let other = f.certified("Other Label", "GBAYE");
    let mut c = claims_for("Other Label");
    c.models[0].sha256 = "f".repeat(64);
    let theirs = sign(&other, &c);
    f.store.install_licence(&theirs).unwrap();
    let cached = f.store.licence_tokens("lic-0001", None).unwrap();
    assert_eq!(cached.len(), 2);
    assert_eq!(
        f.store
            .licence_tokens("lic-0001", Some(&f.key.kid))
            .unwrap()[0]
            .text,
        valid
    );
    // The project names the key: the other label's licence (for another model) is not used.
    assert!(allowed(Some(&f.key.kid)));
    assert!(!allowed(Some(&other.kid)));
    // An old project without the key: the licence that allows the model is found.
    assert!(allowed(None));
}

/// Finding 8 for licences installed from a file: the store keeps a licence only if this device
/// is one it is bound to.
#[test]
fn a_licence_bound_to_another_device_is_not_cached_and_not_valid_here() {
    let f = fixture();
    let mut c = claims_for("Northern Records");
    c.devices = vec!["0123456789abcdef0123456789abcdef".into()];
    let t = sign(&f.key, &c);
    let e = f.store.install_licence(&t).unwrap_err();
    assert!(matches!(e, StoreError::OtherDevice { .. }));
    assert!(e.to_string().contains(DEVICE), "{e}");
    let v = policy::evaluate_token(&f.store, &t, &requirement(), &ManualClock::at(NOW));
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(v.reason.contains("bound to device"), "{}", v.reason);
    // A licence bound to this device and a backup rig is valid here.
    c.devices.push(DEVICE.into());
    let t = sign(&f.key, &c);
    f.store.install_licence(&t).unwrap();
    let v = policy::evaluate_token(&f.store, &t, &requirement(), &ManualClock::at(NOW));
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
}

#[test]
fn garbage_revocation_lists_are_reported_with_their_path() {
    let f = fixture();
    f.store
        .install_licence(&sign(&f.key, &claims_for("Northern Records")))
        .unwrap();
    let root = f.store.root();
    std::fs::create_dir_all(root.join("revocations")).unwrap();
    let bad_list = root.join("revocations/garbage.paseto");
    std::fs::write(&bad_list, "v4.public.AAAA").unwrap();

    let (revoked, unreadable_lists) = f.store.revoked();
    assert!(revoked.keys.is_empty() && revoked.licences.is_empty());
    assert_eq!(
        unreadable_lists,
        vec![UnreadableFile {
            path: bad_list.clone(),
            problem: FileProblem::Revocations(RevocationError::Token(TokenError::NotPaseto)),
        }]
    );
    // The words `refrain licence list` prints name the file and say what is wrong with it.
    let line = unreadable_lists[0].to_string();
    assert!(line.starts_with(&bad_list.display().to_string()), "{line}");
    assert!(line.contains("damaged or truncated"), "{line}");

    // The listing reports it; the licence is still usable and the verdict unchanged.
    let listing = policy::listing(&f.store);
    let paths: Vec<_> = listing.unreadable.iter().map(|u| &u.path).collect();
    assert_eq!(paths, vec![&bad_list]);
    assert_eq!(listing.licences, policy::cached_licences(&f.store));
    assert_eq!(listing.licences.len(), 1);
    assert!(listing.licences[0].usable, "{}", listing.licences[0].text);
    assert!(
        listing.licences[0]
            .text
            .contains("issued by Northern Records"),
        "{}",
        listing.licences[0].text
    );
    let v = policy::evaluate(
        &f.store,
        Some("lic-0001"),
        None,
        &requirement(),
        &ManualClock::at(NOW),
    );
    assert_eq!(v.state, LicenceState::Valid, "{}", v.reason);
}

#[test]
fn key_files_round_trip_and_mismatched_halves_are_refused() {
    let key = SigningKey::generate("Aurora Vale").unwrap();
    let file = key.to_file();
    let back = SigningKey::from_file(&file).unwrap();
    assert_eq!(back.kid, key.kid);
    assert!(back.kid.starts_with("k4.pid."));
    let other = SigningKey::generate("Aurora Vale").unwrap().to_file();
    let mixed = token::KeyFile {
        secret: other.secret,
        ..key.to_file()
    };
    assert!(SigningKey::from_file(&mixed).is_err());
    let public_only = key.issuer_key().to_file();
    assert!(public_only.secret.is_none());
    assert!(SigningKey::from_file(&public_only).is_err());
    let wrong_kid = token::KeyFile {
        kid: other.kid,
        ..public_only
    };
    assert!(token::IssuerKey::from_file(&wrong_kid).is_err());
    assert!(SigningKey::generate(" ").is_err());
}

#[test]
fn a_licence_description_becomes_valid_claims() {
    let dir = tempfile::tempdir().unwrap();
    let song = crate::synth::song(1, 8.0, 48_000);
    crate::media::write_wav(&dir.path().join("track.wav"), &song, 48_000).unwrap();
    let spec = format!(
        r#"
licensee = "DJ Example"
valid_days = 30
grace_days = 14
uses = ["remix", "live"]
territories = ["gb", "IE"]
licensee_territory = "gb"

[track]
isrc = "gb-aye-26-00001"
title = "Northern Lights"
artists = ["Aurora Vale"]
release = "Northern Lights (Single)"
audio = "track.wav"

[[models]]
id = "refrain.remix"
sha256 = "{}"

[[split]]
party = "Aurora Vale"
role = "artist"
share_percent = 62.5

[[split]]
party = "Northern Records"
role = "label"
share_bp = 3750
"#,
        SHA.to_uppercase()
    );
    let s = LicenceSpec::from_toml(&spec).unwrap();
    let c = s
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .unwrap();
    assert_eq!(c.track.isrc, "GBAYE2600001");
    assert_eq!(c.territories, vec!["GB", "IE"]);
    assert_eq!(c.licensee_territory.as_deref(), Some("GB"));
    assert_eq!(c.split[0].share_bp, 6_250);
    assert_eq!(c.exp, "2026-12-21T00:00:00Z");
    assert_eq!(c.models[0].sha256, SHA);
    assert!(c.reference_fingerprint().unwrap().unwrap().len() > 20);
    assert_eq!(uuid::Uuid::parse_str(&c.jti).unwrap().get_version_num(), 4);

    let bad = spec.replace("share_bp = 3750", "share_bp = 3700");
    let e = LicenceSpec::from_toml(&bad)
        .unwrap()
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .unwrap_err();
    assert!(e.to_string().contains("9950 basis points"), "{e}");
    let bad = spec.replace("\"remix\", \"live\"", "\"remix\", \"karaoke\"");
    assert!(LicenceSpec::from_toml(&bad)
        .unwrap()
        .to_claims("N", &[DEVICE.into()], dir.path(), None, NOW)
        .is_err());
    let missing = spec.replace("track.wav", "nope.wav");
    let e = LicenceSpec::from_toml(&missing)
        .unwrap()
        .to_claims("N", &[DEVICE.into()], dir.path(), None, NOW)
        .unwrap_err();
    assert!(e.to_string().contains("nope.wav"), "{e}");
}

#[test]
fn loaded_track_state_parses_json_or_a_bare_id() {
    let t = LoadedTrack {
        key: String::new(),
        licence: "lic-1".into(),
        isrc: "GBAYE2600001".into(),
        title: "T".into(),
    };
    assert_eq!(LoadedTrack::parse(&t.to_state()), Some(t));
    assert_eq!(LoadedTrack::parse("lic-2").unwrap().licence, "lic-2");
    assert_eq!(LoadedTrack::parse("  "), None);
}

fn verdict(state: LicenceState) -> Verdict {
    Verdict {
        state,
        reason: format!("{state:?}"),
        claims: None,
    }
}

#[test]
fn the_latch_takes_a_new_state_at_a_stop_or_a_reset() {
    let gate = LicenceGate::new(&verdict(LicenceState::Valid));
    let mut latch = Latch::new(&gate, 48_000.0);
    let allows = |l: &mut Latch, playing| l.allows(&gate, playing, 128, false);
    assert!(allows(&mut latch, true));
    gate.publish(&verdict(LicenceState::Invalid));
    for _ in 0..10 {
        assert!(allows(&mut latch, true), "lapse applied while playing");
    }
    assert!(!allows(&mut latch, false), "not applied at the stop");
    gate.publish(&verdict(LicenceState::Grace));
    assert!(!allows(&mut latch, false));
    assert!(!allows(&mut latch, true));
    latch.relatch(&gate);
    assert!(allows(&mut latch, true));
    // A track mismatch applies at once, and lifts at once.
    gate.set_track_mismatch(true, "input does not match the licensed track");
    assert!(!allows(&mut latch, true));
    assert!(gate.reason().contains("does not match"));
    gate.set_track_mismatch(false, "");
    assert!(allows(&mut latch, true));
}

/// Finding 9: a licence valid at activation ran for ever on a live input whose transport never
/// plays. A lapse now ends the AI path at the next 2 s of silence, and at most 5 minutes after
/// it is known; a licence renewed in between changes nothing.
#[test]
fn a_lapse_on_a_live_input_ends_at_the_next_silence_or_after_five_minutes() {
    let rate = 1_000.0;
    let block = 100;
    let seconds = |s: f64| (s * rate) as usize / block;
    let gate = LicenceGate::new(&verdict(LicenceState::Valid));

    // Music, then silence: the lapse waits for 2 s of silence.
    let mut latch = Latch::new(&gate, rate);
    gate.publish(&verdict(LicenceState::Invalid));
    for _ in 0..seconds(60.0) {
        assert!(latch.allows(&gate, false, block, false), "cut mid-phrase");
    }
    assert!((latch.lapse_in().unwrap() - 240.0).abs() < 0.2);
    // The editor's countdown, as the audio thread publishes it.
    gate.set_lapse_in(latch.lapse_in());
    assert!((gate.lapse_in().unwrap() - 240.0).abs() < 0.2);
    // A 1.5 s breath is not the end of the song.
    for _ in 0..seconds(1.5) {
        assert!(latch.allows(&gate, false, block, true));
    }
    assert!(latch.allows(&gate, false, block, false));
    for _ in 0..seconds(2.0) - 1 {
        assert!(latch.allows(&gate, false, block, true));
    }
    assert!(
        !latch.allows(&gate, false, block, true),
        "2 s of silence ends it"
    );
    assert!(
        !latch.allows(&gate, false, block, false),
        "and it stays off"
    );

    // No silence at all: off 5 minutes after the lapse was known.
    gate.publish(&verdict(LicenceState::Valid));
    let mut latch = Latch::new(&gate, rate);
    gate.publish(&verdict(LicenceState::Invalid));
    for _ in 0..seconds(300.0) - 1 {
        assert!(latch.allows(&gate, true, block, false));
    }
    assert!(
        !latch.allows(&gate, true, block, false),
        "5 minutes is the most"
    );

    // Renewed within the 5 minutes: nothing happens.
    gate.publish(&verdict(LicenceState::Valid));
    let mut latch = Latch::new(&gate, rate);
    gate.publish(&verdict(LicenceState::Invalid));
    for _ in 0..seconds(200.0) {
        assert!(latch.allows(&gate, true, block, false));
    }
    gate.publish(&verdict(LicenceState::Valid));
    for _ in 0..seconds(400.0) {
        assert!(latch.allows(&gate, true, block, true));
    }
    assert_eq!(latch.lapse_in(), None);
}

#[test]
fn the_monitor_rechecks_periodically() {
    let f = fixture();
    let t = sign(&f.key, &claims_for("Northern Records"));
    let id = f.store.install_licence(&t).unwrap().id;
    let clock = Arc::new(ManualClock::at(NOW));
    let spec = MonitorSpec {
        licence_key: None,
        store: f.store.clone(),
        licence_id: Some(id),
        requirement: requirement(),
        clock: clock.clone(),
        period: Duration::from_millis(20),
    };
    let first = spec.evaluate();
    assert_eq!(first.state, LicenceState::Valid);
    let gate = LicenceGate::new(&first);
    let (tx, rx) = crossbeam_channel::unbounded();
    let monitor = LicenceMonitor::start(spec, gate.clone(), move |v| {
        let _ = tx.send(v.state);
    });
    clock.set(NOW + 60 * DAY);
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, LicenceState::Invalid);
    assert_eq!(gate.state(), LicenceState::Invalid);
    assert_eq!(gate.reason(), "expired on 2026-12-21");
    drop(monitor);
}

// ---- fingerprint ----

const RATE: u32 = 48_000;

fn mono(song: &[Vec<f32>]) -> Vec<f32> {
    (0..song[0].len())
        .map(|i| song.iter().map(|c| c[i]).sum::<f32>() / song.len() as f32)
        .collect()
}

/// Feeds `audio` in 512-sample blocks; returns the states seen after each second.
fn run(m: &mut LiveMatcher, audio: &[f32], rate: u32) -> Vec<TrackMatch> {
    let mut states = Vec::new();
    for (k, block) in audio.chunks(512).enumerate() {
        m.push(block);
        if ((k + 1) * 512) % (rate as usize) < 512 {
            states.push(m.state());
        }
    }
    states
}

fn reference() -> Vec<u32> {
    fingerprint::compute(&crate::synth::song(1, 60.0, RATE), RATE).unwrap()
}

fn first_match(states: &[TrackMatch]) -> Option<usize> {
    states.iter().position(|s| *s == TrackMatch::Match)
}

#[test]
fn the_licensed_track_matches_after_gain_resampling_and_eq() {
    let reference = reference();
    assert!(reference.len() > 400, "{}", reference.len());
    // Start 7.3 s in: the live stream never lines up with the reference's frames.
    let track = mono(&crate::synth::song(1, 60.0, RATE));
    let live = &track[(7.3 * RATE as f64) as usize..];

    let quieter: Vec<f32> = live.iter().map(|x| x * 0.5).collect();
    let mut m = LiveMatcher::new(reference.clone(), RATE).unwrap();
    let states = run(&mut m, &quieter, RATE);
    let at = first_match(&states).expect("-6 dB: no match");
    // A window is judged from 100 sub-fingerprints on (12.4 s, and 2 s before the first).
    assert!(at < 17, "-6 dB matched only after {at} s");
    assert!(!states.contains(&TrackMatch::Mismatch));
    assert!(m.last_ber < fingerprint::MATCH_BER, "{}", m.last_ber);

    // Resampled to 44.1 kHz with the engine's resampler.
    let mut rs = crate::engine::resample::Resampler::new(
        RATE,
        44_100,
        crate::engine::resample::FilterSpec::STUDIO,
        0,
        1,
        480,
    )
    .unwrap();
    let mut resampled = Vec::new();
    let mut out = vec![0.0; 1024];
    for chunk in live.chunks_exact(480) {
        rs.push(chunk);
        let n = rs.produce(&mut out);
        resampled.extend_from_slice(&out[..n]);
    }
    let mut m = LiveMatcher::new(reference.clone(), 44_100).unwrap();
    let states = run(&mut m, &resampled, 44_100);
    let at = first_match(&states).expect("44.1 kHz: no match");
    assert!(at < 17, "44.1 kHz matched only after {at} s");
    assert!(!states.contains(&TrackMatch::Mismatch));

    // Light EQ: +3 dB low shelf (one-pole) and a gentle high cut.
    let (mut lp, mut hc) = (0.0f32, 0.0f32);
    let a_lp = (-std::f32::consts::TAU * 200.0 / RATE as f32).exp();
    let a_hc = (-std::f32::consts::TAU * 9_000.0 / RATE as f32).exp();
    let eq: Vec<f32> = live
        .iter()
        .map(|&x| {
            lp = a_lp * lp + (1.0 - a_lp) * x;
            let shelf = x + 0.41 * lp;
            hc = a_hc * hc + (1.0 - a_hc) * shelf;
            hc * 0.8
        })
        .collect();
    let mut m = LiveMatcher::new(reference, RATE).unwrap();
    let states = run(&mut m, &eq, RATE);
    let at = first_match(&states).expect("EQ: no match");
    assert!(at < 17, "EQ matched only after {at} s");
    assert!(!states.contains(&TrackMatch::Mismatch));
}

#[test]
fn a_different_track_never_matches_and_is_switched_off_after_20_seconds() {
    let other = mono(&crate::synth::song(2, 40.0, RATE));
    let mut m = LiveMatcher::new(reference(), RATE).unwrap();
    let states = run(&mut m, &other, RATE);
    assert_eq!(first_match(&states), None, "best BER {}", m.last_ber);
    let off = states
        .iter()
        .position(|s| *s == TrackMatch::Mismatch)
        .expect("never switched off");
    assert_eq!(
        off + 1,
        fingerprint::MISMATCH_SECONDS as usize,
        "{states:?}"
    );
    assert!(m.last_ber > fingerprint::MATCH_BER + 0.05, "{}", m.last_ber);
}

#[test]
fn silence_is_neither_match_nor_mismatch() {
    let mut m = LiveMatcher::new(reference(), RATE).unwrap();
    let mut rng = crate::synth::Lcg(5);
    // A minute of silence with -80 dBFS noise.
    let quiet: Vec<f32> = (0..60 * RATE).map(|_| rng.next_f32() * 1e-4).collect();
    let states = run(&mut m, &quiet, RATE);
    assert!(states.iter().all(|s| *s == TrackMatch::Unknown));
    assert_eq!(m.unmatched_seconds(), 0.0);
    // Silence in the middle of a mismatch neither resets nor extends it.
    let other = mono(&crate::synth::song(2, 10.0, RATE));
    run(&mut m, &other, RATE);
    let before = m.unmatched_seconds();
    assert!(before >= 9.0, "{before}");
    run(&mut m, &quiet[..30 * RATE as usize], RATE);
    assert_eq!(m.unmatched_seconds(), before);
    assert_eq!(m.state(), TrackMatch::Unknown);
}

#[test]
fn fingerprints_encode_and_decode() {
    let fp = vec![0, 1, u32::MAX, 0xDEAD_BEEF];
    assert_eq!(fingerprint::decode(&fingerprint::encode(&fp)).unwrap(), fp);
    assert!(fingerprint::decode("").is_err());
    assert!(fingerprint::compute(&[vec![0.0; 100]], 48_000).is_err());
    assert!(fingerprint::compute(&[vec![]], 48_000).is_err());
}

// ---- the edges of issue "Untrusted models and media" ----

/// Two keys of the same rights holder (the same issuer name): a list signed by one names the
/// other key and a licence the other key signed. Neither counts; each key can withdraw itself
/// and the licences it signed.
#[test]
fn a_revocation_counts_only_from_the_key_it_withdraws_or_that_signed_the_licence() {
    let f = fixture();
    let b = &f.key;
    // Another key certified under the same name (a label's second key, or an impostor the
    // registry certified for another catalogue): the name gives it no standing over B.
    let a = f.certified("Northern Records", "GBAYE");
    let licence = sign(b, &claims_for("Northern Records"));
    f.store.install_licence(&licence).unwrap();

    // Key A names key B and B's licence: ignored, and B's licence still verifies.
    let by_a = RevocationList {
        iss: "Northern Records".into(),
        seq: 1,
        iat: claims::format_time(NOW),
        revoked_keys: vec![b.kid.clone()],
        revoked_licences: vec!["lic-0001".into()],
    };
    let signed = a
        .sign(Kind::Revocations, &serde_json::to_vec(&by_a).unwrap())
        .unwrap();
    let installed = f.store.install_revocations(&signed).unwrap();
    assert_eq!(installed.signed.signer(), a.kid);
    assert_eq!(
        installed.ignored,
        vec![
            IgnoredRevocation::Key {
                signed_by: a.kid.clone(),
                kid: b.kid.clone()
            },
            IgnoredRevocation::Licence {
                signed_by: a.kid.clone(),
                id: "lic-0001".into(),
                licence_key: b.kid.clone()
            },
        ]
    );
    assert!(installed.ignored[0]
        .to_string()
        .contains("a key can only withdraw itself"));
    verify_with(&f, &licence).unwrap();
    // `refrain licence list` shows the licence usable and both entries as ignored.
    let listing = policy::listing(&f.store);
    assert!(listing.licences[0].usable, "{}", listing.licences[0].text);
    assert_eq!(listing.ignored, installed.ignored);

    // Key B withdraws its own licence: it counts.
    let by_b = RevocationList {
        revoked_keys: vec![],
        ..by_a.clone()
    };
    f.store
        .install_revocations(&issue::sign_revocations(b, &by_b).unwrap())
        .unwrap();
    assert_eq!(
        verify_with(&f, &licence).unwrap_err(),
        VerifyError::LicenceRevoked {
            id: "lic-0001".into()
        }
    );
    // Key B withdraws itself (a newer list from B): it counts.
    let self_withdrawn = RevocationList {
        seq: 2,
        iat: claims::format_time(NOW + 60),
        revoked_keys: vec![b.kid.clone()],
        revoked_licences: vec![],
        ..by_a
    };
    f.store
        .install_revocations(&issue::sign_revocations(b, &self_withdrawn).unwrap())
        .unwrap();
    assert_eq!(
        verify_with(&f, &licence).unwrap_err(),
        VerifyError::KeyRevoked { kid: b.kid.clone() }
    );
    // Key A's own licences were never touched.
    let mut from_a = claims_for("Northern Records");
    from_a.jti = "lic-from-a".into();
    verify_with(&f, &sign(&a, &from_a)).unwrap();
}

/// U+202E (right-to-left override) showed a licensee's name reversed; every displayed text
/// field refuses format (Cf) and control (Cc) characters, naming the field and the code point.
#[test]
fn format_and_bidi_characters_are_refused_in_every_text_field() {
    let good = claims_for("I");
    type Edit = fn(&mut Claims);
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("sub", "U+202E", |c| c.sub = "DJ \u{202E}elpmaxE".into()),
        ("iss", "U+2066", |c| {
            c.iss = "Northern \u{2066}Records".into()
        }),
        ("track.title", "U+200B", |c| {
            c.track.title = "Northern\u{200B}Lights".into()
        }),
        ("track.artists", "U+FEFF", |c| {
            c.track.artists = vec!["\u{FEFF}Aurora Vale".into()]
        }),
        ("track.release", "U+00AD", |c| {
            c.track.release = "Sin\u{AD}gle".into()
        }),
        ("split[1].party", "U+200F", |c| {
            c.split[1].party = "Northern Records\u{200F}".into()
        }),
        ("models[0].id", "U+2060", |c| {
            c.models[0].id = "refrain\u{2060}.remix".into()
        }),
        ("sub", "U+0007", |c| c.sub = "DJ\u{7}Example".into()),
    ];
    for (field, code_point, edit) in cases {
        let mut c = good.clone();
        edit(&mut c);
        let err = c.validate().expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains(code_point), "{err}");
    }
    // Letters of any script are fine.
    let mut c = good.clone();
    c.sub = "Ольга Ødegård 林 (מוזיקה)".into();
    c.validate().unwrap();
    // The issuer's name in a key file too.
    assert!(SigningKey::generate("Northern\u{202E}Records").is_err());
    let mut file = SigningKey::generate("Northern Records")
        .unwrap()
        .issuer_key()
        .to_file();
    file.issuer = "Northern\u{202E}Records".into();
    assert!(token::IssuerKey::from_file(&file).is_err());
}

/// DECISIONS 5: a remix licence must carry a reference fingerprint; without one it would
/// match any recording.
/// A remix licence's description, with `track_extra` at the end of its `[track]` table.
fn description(track_extra: &str) -> String {
    format!(
        r#"
licensee = "DJ Example"
valid_days = 30
uses = ["remix"]
[track]
isrc = "GBAYE2600001"
title = "Northern Lights"
artists = ["Aurora Vale"]
release = "Northern Lights (Single)"
{track_extra}
[[models]]
id = "refrain.remix"
sha256 = "{SHA}"
[[split]]
party = "Aurora Vale"
role = "artist"
share_bp = 10000
"#
    )
}

/// A stem pack's description (`[[track.stems]]`) gives each stem its reference; the claims
/// refuse a stem pack without the recording's reference, a name listed twice, more than
/// `MAX_STEMS` stems and a stem fingerprint that does not decode.
#[test]
fn a_stem_pack_licence_carries_a_reference_per_stem() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 48_000;
    for (name, seed) in [("track", 1), ("vocals", 3), ("drums", 4)] {
        crate::media::write_wav(
            &dir.path().join(format!("{name}.wav")),
            &crate::synth::song(seed, 20.0, rate),
            rate,
        )
        .unwrap();
    }
    let spec = description(
        r#"audio = "track.wav"
[[track.stems]]
name = "vocals"
audio = "vocals.wav"
[[track.stems]]
name = "drums"
audio = "drums.wav""#,
    );
    let c = LicenceSpec::from_toml(&spec)
        .unwrap()
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .unwrap();
    c.validate().unwrap();
    let stems = c.stem_references().unwrap();
    assert_eq!(stems.len(), 2);
    assert_eq!(
        stems[0],
        fingerprint::compute(&crate::synth::song(3, 20.0, rate), rate).unwrap()
    );
    assert!(c.describe().contains("stem pack:"), "{}", c.describe());
    assert!(c.describe().contains("vocals, drums"), "{}", c.describe());

    let mut twice = c.clone();
    twice.track.stems[1].name = "vocals".into();
    assert_eq!(twice.validate().unwrap_err().field, "track.stems.name");
    let mut bad = c.clone();
    bad.track.stems[0].fingerprint = "not base64!".into();
    assert_eq!(bad.validate().unwrap_err().field, "track.stems.fingerprint");
    let mut many = c.clone();
    many.track.stems = (0..=claims::MAX_STEMS)
        .map(|i| claims::StemReference {
            name: format!("stem {i}"),
            fingerprint: c.track.stems[0].fingerprint.clone(),
        })
        .collect();
    assert_eq!(many.validate().unwrap_err().field, "track.stems");
    let mut alone = c.clone();
    alone.uses = vec![Use::Cover];
    alone.track.iswc = Some("T-034.524.680-1".into());
    alone.track.fingerprint = None;
    assert_eq!(alone.validate().unwrap_err().field, "track.stems");
}

#[test]
fn a_remix_licence_without_a_reference_fingerprint_is_refused() {
    let mut c = claims_for("Northern Records");
    c.track.fingerprint = None;
    let err = c.validate().expect_err("remix without a fingerprint");
    assert_eq!(err.field, "track.fingerprint", "{err}");
    // A cover licence needs none.
    c.uses = vec![Use::Cover];
    c.validate().unwrap();

    // `licence issue` from a description without `track.audio` or `--audio`.
    let dir = tempfile::tempdir().unwrap();
    let spec = description("");
    let e = LicenceSpec::from_toml(&spec)
        .unwrap()
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .expect_err("remix without audio");
    assert!(
        e.to_string()
            .contains("a remix licence needs the licensed recording"),
        "{e}"
    );
    // A cover licence must name the work (finding 5: cover licences bound nothing the plugin
    // checks).
    let cover = spec.replace("[\"remix\"]", "[\"cover\"]");
    let e = LicenceSpec::from_toml(&cover)
        .unwrap()
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .expect_err("a cover licence without its work");
    assert!(
        e.to_string().contains("must name the work it covers"),
        "{e}"
    );
    let cover = cover.replace("release =", "iswc = \"T-034.524.680-1\"\nrelease =");
    let c = LicenceSpec::from_toml(&cover)
        .unwrap()
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .unwrap();
    assert!(c
        .describe()
        .contains("voice unlocked for any material while this licence lasts"));
    assert!(!c.describe().contains("backing:"), "no backing named");
    // A cover licence with a reference: the backing track the voice must sing over.
    let rate = 48_000;
    crate::media::write_wav(
        &dir.path().join("backing.wav"),
        &crate::synth::song(1, 8.0, rate),
        rate,
    )
    .unwrap();
    let with_backing = cover.replace("release =", "audio = \"backing.wav\"\nrelease =");
    let c = LicenceSpec::from_toml(&with_backing)
        .unwrap()
        .to_claims("Northern Records", &[DEVICE.into()], dir.path(), None, NOW)
        .unwrap();
    assert!(c.track.fingerprint.is_some());
    // Its tuning, for shifts between semitones: the synthesised song is on the A440 grid.
    assert!(
        c.track.tuning_cents.is_some_and(|t| t.abs() <= 5),
        "{:?}",
        c.track.tuning_cents
    );
    let mut off = c.clone();
    off.track.tuning_cents = Some(80);
    assert_eq!(off.validate().unwrap_err().field, "track.tuning_cents");
    assert!(
        c.describe().contains("Backing sidechain"),
        "{}",
        c.describe()
    );
}

/// U+200C and U+200D are letters' business in Persian, Arabic and Indic scripts and in emoji
/// sequences; between two ASCII letters, or at either end, they only make a look-alike.
#[test]
fn zero_width_joiners_are_allowed_only_between_two_non_ascii_characters() {
    let good = claims_for("Northern Records");
    for name in [
        "می\u{200C}خواهم",            // Persian: ZWNJ keeps the two parts of the verb apart
        "\u{1F469}\u{200D}\u{1F3A4}", // woman singer: an emoji ZWJ sequence
        "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}", // rainbow flag: a variation selector, then ZWJ
        "क्\u{200D}ष",                 // Devanagari: ZWJ asks for the half form
        "DJ می\u{200C}خواهم",
    ] {
        let mut c = good.clone();
        c.sub = name.into();
        c.validate()
            .unwrap_or_else(|e| panic!("{name:?} should be accepted: {e}"));
    }
    for (name, code_point) in [
        ("Art\u{200D}ist", "U+200D"),
        ("Art\u{200C}ist", "U+200C"),
        ("\u{200D}\u{1F469}", "U+200D"),
        ("\u{1F469}\u{200D}", "U+200D"),
        ("می\u{200C}", "U+200C"),
        ("\u{200C}می", "U+200C"),
        ("a\u{200D}\u{1F3A4}", "U+200D"),
        ("\u{1F469}\u{200D}b", "U+200D"),
        ("\u{1F469}\u{200D}\u{200D}\u{1F3A4}", "U+200D"),
        ("می\u{200C} خواهم", "U+200C"),
        // Bidi controls stay refused, between non-ASCII letters too.
        ("می\u{200F}خواهم", "U+200F"),
        ("می\u{061C}خواهم", "U+061C"),
        ("می\u{202E}خواهم", "U+202E"),
        ("می\u{2067}خواهم", "U+2067"),
        ("Ольга\u{200E}Ø", "U+200E"),
        ("林\u{200B}林", "U+200B"),
    ] {
        let mut c = good.clone();
        c.sub = name.into();
        let err = c.validate().expect_err(name);
        assert_eq!(err.field, "sub", "{err}");
        assert!(err.to_string().contains(code_point), "{name:?}: {err}");
    }
    // The issuer's name in a key follows the same rule.
    SigningKey::generate("می\u{200C}خواهم Records").unwrap();
    assert!(SigningKey::generate("Northern\u{200D}Records").is_err());
}

/// Runs `f` on its own thread and fails the test if it does not return within `secs`: a read
/// that blocks on a named pipe would otherwise hang the whole test run.
pub(super) fn returns_within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(handle.join().expect_err("no result"))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {secs} s (blocked on a pipe or a device?)")
        }
    }
}

#[cfg(unix)]
pub(super) fn mkfifo(path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A sparse file of `bytes` (no disk space, but reading it whole would take that much memory).
fn sparse(path: &std::path::Path, bytes: u64) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

const TWO_GIB: u64 = 2 << 30;

/// Named pipes and devices in the licence folder (as key files, licences, revocation lists and
/// the clock) are reported as not regular files; nothing blocks on them, and the good licence
/// is still listed and valid.
#[cfg(unix)]
#[test]
fn pipes_and_devices_in_the_licence_folder_are_reported_and_never_block() {
    let f = fixture();
    f.store
        .install_licence(&sign(&f.key, &claims_for("Northern Records")))
        .unwrap();
    let root = f.store.root().to_owned();
    let licences = format!("licences/{}", super::store::key_tag(&f.key.kid));
    for p in [
        format!("{licences}/pipe.paseto"),
        "revocations/pipe.paseto".into(),
        "receipt.paseto".into(),
        "device/device.toml.pipe".into(),
        "clock".into(),
    ] {
        mkfifo(&root.join(p));
    }
    for p in [
        format!("{licences}/zero.paseto"),
        "revocations/zero.paseto".into(),
    ] {
        std::os::unix::fs::symlink("/dev/zero", root.join(p)).unwrap();
    }
    let store = f.store.clone();
    let (listing, verdict, clock_after) = returns_within(20, "the licence folder", move || {
        let listing = policy::listing(&store);
        let verdict = policy::evaluate(
            &store,
            Some("lic-0001"),
            None,
            &requirement(),
            &ManualClock::at(NOW),
        );
        let clock = std::fs::symlink_metadata(store.root().join("clock")).unwrap();
        (listing, verdict, clock.file_type().is_file())
    });
    assert_eq!(verdict.state, LicenceState::Valid, "{}", verdict.reason);
    // The clock that was a pipe is replaced by the time seen.
    assert!(clock_after, "the clock is a regular file again");

    let problems: Vec<(std::path::PathBuf, FileProblem)> = listing
        .unreadable
        .iter()
        .map(|u| (u.path.clone(), u.problem.clone()))
        .collect();
    let pipe = FileProblem::NotAFile {
        what: "a named pipe",
    };
    let device = FileProblem::NotAFile {
        what: "a character device",
    };
    assert_eq!(
        problems,
        vec![
            (root.join("revocations/pipe.paseto"), pipe),
            (root.join("revocations/zero.paseto"), device),
        ]
    );
    let line = listing.unreadable[0].to_string();
    assert!(
        line.contains("pipe.paseto") && line.contains("not a regular file"),
        "{line}"
    );
    let rows: Vec<(&str, bool, &str)> = listing
        .licences
        .iter()
        .map(|l| (l.id.as_str(), l.usable, l.text.as_str()))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].1), ("lic-0001", true), "{rows:?}");
    assert_eq!((rows[1].0, rows[1].1), ("pipe", false), "{rows:?}");
    assert!(
        rows[1].2.contains("a named pipe, not a regular file"),
        "{rows:?}"
    );
    assert_eq!((rows[2].0, rows[2].1), ("zero", false), "{rows:?}");
    assert!(
        rows[2].2.contains("a character device, not a regular file"),
        "{rows:?}"
    );

    // A licence id that names a pipe is refused with the reason, at once.
    let store = f.store.clone();
    let v = returns_within(20, "a licence that is a pipe", move || {
        policy::evaluate(
            &store,
            Some("pipe"),
            None,
            &requirement(),
            &ManualClock::at(NOW),
        )
    });
    assert_eq!(v.state, LicenceState::Invalid);
    assert!(v.reason.contains("not a regular file"), "{}", v.reason);
}

/// Huge (sparse) files in the licence folder are refused by their size before a byte is read:
/// they cost no memory, and the good licence is still listed and valid.
#[test]
fn huge_files_in_the_licence_folder_are_refused_by_their_size() {
    let f = fixture();
    f.store
        .install_licence(&sign(&f.key, &claims_for("Northern Records")))
        .unwrap();
    let root = f.store.root().to_owned();
    for p in [
        format!("licences/{}/huge.paseto", super::store::key_tag(&f.key.kid)),
        "revocations/huge.paseto".into(),
        "receipt.paseto".into(),
        "clock".into(),
    ] {
        sparse(&root.join(p), TWO_GIB);
    }
    let store = f.store.clone();
    let (listing, verdict) = returns_within(20, "the licence folder", move || {
        let listing = policy::listing(&store);
        let verdict = policy::evaluate(
            &store,
            Some("lic-0001"),
            None,
            &requirement(),
            &ManualClock::at(NOW),
        );
        (listing, verdict)
    });
    assert_eq!(verdict.state, LicenceState::Valid, "{}", verdict.reason);
    assert_eq!(
        listing.unreadable,
        vec![UnreadableFile {
            path: root.join("revocations/huge.paseto"),
            problem: FileProblem::TooLarge {
                bytes: TWO_GIB,
                max: super::store::MAX_REVOCATION_LIST_BYTES,
            },
        },]
    );
    let line = listing.unreadable[0].to_string();
    assert!(
        line.contains("2147483648 bytes; the limit for this file is 524288 bytes"),
        "{line}"
    );
    assert_eq!(listing.licences.len(), 2);
    assert!(listing.licences[1].usable, "{:?}", listing.licences);
    assert_eq!(listing.licences[0].id, "huge");
    assert!(
        listing.licences[0].text.contains("2147483648 bytes"),
        "{}",
        listing.licences[0].text
    );
    // The clock that was huge is replaced by the time seen.
    assert!(std::fs::metadata(root.join("clock")).unwrap().len() < 32);
}

/// Key files come in through the bounded reader, and a new key never replaces a file: a pipe,
/// a device or a huge file is refused at once, a secret key is readable by its owner only from
/// the moment it exists, and an existing file (or a link planted at the name) stays as it was.
#[cfg(unix)]
#[test]
fn key_files_are_read_bounded_and_written_exclusively() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    mkfifo(&d.join("pipe.toml"));
    sparse(&d.join("huge.toml"), TWO_GIB);
    let (pipe, zero, huge) = returns_within(20, "reading key files", move || {
        (
            issue::read_key_file(&d.join("pipe.toml")),
            issue::read_key_file(std::path::Path::new("/dev/zero")),
            issue::read_key_file(&d.join("huge.toml")),
        )
    });
    let pipe = pipe.unwrap_err();
    assert!(
        pipe.to_string()
            .contains("is a named pipe, not a regular file"),
        "{pipe}"
    );
    let zero = zero.unwrap_err();
    assert!(
        zero.to_string()
            .contains("is a character device, not a regular file"),
        "{zero}"
    );
    let huge = huge.unwrap_err();
    assert!(
        huge.to_string().contains(&format!(
            "2147483648 bytes; the limit for this file is {}",
            token::MAX_KEY_FILE_BYTES
        )),
        "{huge}"
    );

    let d = dir.path();
    let key = SigningKey::generate("Northern Records").unwrap();
    let secret = d.join("k/n.secret.toml");
    issue::write_key_file(&secret, &key.to_file()).unwrap();
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let back = SigningKey::from_file(&issue::read_key_file(&secret).unwrap()).unwrap();
    assert_eq!(back.kid, key.kid);
    let before = std::fs::read(&secret).unwrap();
    let other = SigningKey::generate("Northern Records").unwrap();
    assert_eq!(
        issue::write_key_file(&secret, &other.to_file()).unwrap_err(),
        KeyFileError::Exists {
            path: secret.clone()
        }
    );
    assert_eq!(std::fs::read(&secret).unwrap(), before, "never replaced");
    // A link planted where the key is to go is not followed.
    let elsewhere = d.join("elsewhere.toml");
    let planted = d.join("k/planted.secret.toml");
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    assert!(matches!(
        issue::write_key_file(&planted, &other.to_file()),
        Err(KeyFileError::Exists { .. })
    ));
    assert!(!elsewhere.exists(), "the link was followed");
}

/// A track check with an empty reference (nothing ever matches) and a day's allowance.
fn silent_monitor(
    rate: u32,
    block: usize,
    gate: std::sync::Arc<LicenceGate>,
) -> (fingerprint::FingerprintMonitor, fingerprint::FingerprintTap) {
    fingerprint::FingerprintMonitor::start(
        fingerprint::TrackReference {
            mid: Vec::new(),
            channels: None,
            loudness: None,
            stems: Vec::new(),
            tuning: None,
            backing: false,
        },
        Box::new(fingerprint::DailyAllowance::default()),
        rate,
        block,
        gate,
        |_, _, _| {},
    )
    .unwrap()
}

/// A track check that stopped (its thread ended, or it fell more than `STALL_SECONDS` behind)
/// judges and charges nothing, so the tap reports it stalled and the AI path stops.
#[test]
fn a_stopped_track_check_is_seen_by_the_audio_thread() {
    let rate = 48_000u32;
    let gate = LicenceGate::new(&verdict(LicenceState::Valid));
    let (monitor, mut tap) = silent_monitor(rate, 512, gate);
    let mut block = vec![0.0f32; 512];
    for _ in 0..20 {
        tap.push(&[&mut block], 512, false);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!tap.stalled());
    drop(monitor);
    assert!(tap.stalled(), "the monitor ended");
}

#[test]
fn a_bounce_feeds_the_fingerprint_without_dropping_audio_and_never_waits_on_a_dead_monitor() {
    let rate = 48_000u32;
    let block = 4096;
    let gate = LicenceGate::new(&verdict(LicenceState::Valid));
    let (monitor, mut tap) = silent_monitor(rate, block, gate.clone());
    let mut left = vec![0.0f32; block];
    let mut right = vec![0.0f32; block];
    // 20 s offline, as fast as the bounce can go: the ring (4 s) fills, the tap waits for the
    // monitor, nothing is dropped.
    for b in 0..(20 * rate as usize / block) {
        for (i, (l, r)) in left.iter_mut().zip(right.iter_mut()).enumerate() {
            let t = (b * block + i) as f32 / rate as f32;
            *l = (t * 440.0 * std::f32::consts::TAU).sin() * 0.3;
            *r = *l;
        }
        let io: [&mut [f32]; 2] = [&mut left, &mut right];
        tap.push(&io, block, true);
    }
    assert_eq!(monitor.dropped(), 0, "a bounce dropped fingerprint audio");
    // With the monitor gone, an offline push does not wait for room that never comes.
    drop(monitor);
    let started = std::time::Instant::now();
    for _ in 0..(10 * rate as usize / block) {
        let io: [&mut [f32]; 2] = [&mut left, &mut right];
        tap.push(&io, block, true);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?} waiting on a dead monitor",
        started.elapsed()
    );
}
